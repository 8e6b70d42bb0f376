#![allow(clippy::unwrap_used)]
//! The syslog server against a real sender: util-linux `logger --server` sends a real
//! charon login (the messages of `testdata/charon/psk-ok.log`) over UDP (RFC 3164), TCP with
//! octet counting (RFC 5424) and TCP with line feeds (RFC 3164); each run must come out of the
//! spool as exactly one message per line and one successful login. A 1 MiB message is
//! rejected as oversized, kept truncated, and the stream goes on.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use gateway::parse::{LogClock, ParseOptions};
use gateway::sink::{SharedSpool, Sink};
use gateway::spool::Spool;
use gateway::syslog_server::{SyslogServer, SyslogServerConfig};
use model::{EventBody, Outcome, RejectReason};
use tokio::sync::watch;

/// The charon messages of a real PSK login, without the filelog's timestamp.
fn charon_messages(dir: &std::path::Path) -> (std::path::PathBuf, usize) {
    let log = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/charon/psk-ok.log"),
    )
    .unwrap();
    // "Nov 25 09:33:12 09[IKE] <rw-psk|1> message" -> "09[IKE] <rw-psk|1> message"
    let messages: Vec<&str> = log
        .lines()
        .filter_map(|line| line.get(16..))
        .filter(|message| !message.trim().is_empty())
        .collect();
    let path = dir.join("messages.txt");
    std::fs::write(&path, messages.join("\n") + "\n").unwrap();
    (path, messages.len())
}

fn logger(args: &[&str]) {
    let output = Command::new("logger")
        .args(args)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run `logger` (util-linux, Debian package bsdutils): {error}")
        });
    assert!(
        output.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn drain(spool: &SharedSpool, expected: usize) -> Vec<model::Event> {
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while events.len() < expected && tokio::time::Instant::now() < deadline {
        let peeked = spool
            .with(|spool| spool.peek(10_000, 64 << 20))
            .await
            .unwrap();
        match peeked {
            Some(peeked) => {
                events.extend(peeked.events);
                let next = peeked.next;
                spool.with(move |spool| spool.commit(next)).await.unwrap();
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logger_over_udp_and_tcp_reaches_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (messages, n_messages) = charon_messages(dir.path());
    let server = SyslogServer::bind(&SyslogServerConfig {
        udp: Some("127.0.0.1:0".parse().unwrap()),
        tcp: Some("127.0.0.1:0".parse().unwrap()),
        max_connections: 8,
    })
    .await
    .unwrap();
    let (udp, tcp): (Option<SocketAddr>, Option<SocketAddr>) = server.local_addrs();
    let (udp, tcp) = (udp.unwrap(), tcp.unwrap());
    let spool = SharedSpool::new(Spool::open(&dir.path().join("spool"), 64 << 20).unwrap());
    let sink = Sink::new(spool.clone(), "gw1/syslog@1".to_owned(), 0, 1000);
    let mut options = ParseOptions::new(
        String::new(),
        LogClock::new(jiff::tz::TimeZone::UTC, None, jiff::Timestamp::now()),
    );
    options.max_line_bytes = 64 * 1024;
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(server.run(sink, options, stop_rx));
    let messages = messages.to_str().unwrap();

    let runs: [(&str, Vec<String>); 3] = [
        (
            "UDP RFC 3164",
            vec![
                "--udp".into(),
                "--rfc3164".into(),
                "--port".into(),
                udp.port().to_string(),
            ],
        ),
        (
            "TCP RFC 5424 octet counting",
            vec![
                "--tcp".into(),
                "--rfc5424".into(),
                "--octet-count".into(),
                "--port".into(),
                tcp.port().to_string(),
            ],
        ),
        (
            "TCP RFC 3164 line feeds",
            vec![
                "--tcp".into(),
                "--rfc3164".into(),
                "--port".into(),
                tcp.port().to_string(),
            ],
        ),
    ];
    for (what, transport) in runs {
        let mut args: Vec<&str> = vec!["--server", "127.0.0.1", "-t", "charon", "-f", messages];
        args.extend(transport.iter().map(String::as_str));
        tokio::task::spawn_blocking({
            let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
            move || logger(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        let events = drain(&spool, 1).await;
        // Wait for the whole run: the login's IKE_SA is deleted at the end.
        let mut events = events;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !events.iter().any(|event| {
            matches!(&event.body, EventBody::VirtualIp(vip) if vip.change == model::LeaseChange::Released)
        }) && tokio::time::Instant::now() < deadline
        {
            events.extend(drain(&spool, 1).await);
        }
        let logins: Vec<_> = events
            .iter()
            .filter_map(|event| match &event.body {
                EventBody::Auth(auth) => Some(auth),
                _ => None,
            })
            .collect();
        assert_eq!(logins.len(), 1, "{what}: {events:#?}");
        assert_eq!(logins[0].outcome, Outcome::Success, "{what}");
        assert_eq!(
            logins[0].peer.identities.user_name(),
            Some("client1@psk.vpn.test"),
            "{what}"
        );
        assert!(
            events
                .iter()
                .all(|event| !matches!(event.body, EventBody::PipelineError(_))),
            "{what}: {events:#?}"
        );
        // Every message got its own sequence number: ids are unique.
        let mut ids: Vec<_> = events.iter().map(|event| event.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), events.len(), "{what}");
        assert!(n_messages > 30);
    }

    // A 1 MiB message over TCP (octet counting), then a normal one on the same stream.
    let huge = "x".repeat(1024 * 1024);
    let mut stream = tokio::net::TcpStream::connect(tcp).await.unwrap();
    let body = format!("<13>1 2026-11-25T10:00:00Z gw charon - - - {huge}");
    let after = "<13>1 2026-11-25T10:00:01Z gw charon - - - 09[IKE] <rw-psk|9> 192.0.2.11 is initiating an IKE_SA";
    let frame = format!("{} {body}{} {after}", body.len(), after.len());
    tokio::io::AsyncWriteExt::write_all(&mut stream, frame.as_bytes())
        .await
        .unwrap();
    drop(stream);
    let events = drain(&spool, 2).await;
    let rejected: Vec<_> = events
        .iter()
        .filter_map(|event| match &event.body {
            EventBody::PipelineError(error) => Some((error, event.original.len())),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1, "{events:#?}");
    assert_eq!(rejected[0].0.reason, RejectReason::Oversized);
    assert_eq!(rejected[0].0.original_len, body.len() as u64);
    assert!(rejected[0].1 <= 64 * 1024);
    assert!(
        events
            .iter()
            .any(|event| matches!(&event.body, EventBody::IkeSa(_))),
        "the message after the oversized one was parsed: {events:#?}"
    );

    stop.send(true).unwrap();
    task.await.unwrap().unwrap();
}
