#![allow(clippy::unwrap_used)]
//! The RADIUS accounting receiver against a real client: FreeRADIUS's `radclient` (Debian
//! package freeradius-utils) sends Start, Interim-Update and Stop to the receiver on
//! 127.0.0.1:0; the events must be in the spool exactly once, and a client with the wrong
//! secret must get no answer and make no event. Retransmits and backpressure are driven from
//! a plain UDP socket with requests built here, independently of the crate's codec.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use expect_test::expect;
use gateway::radius::{ClientNet, RadiusConfig, RadiusReceiver, RadiusStats, RadiusStatsSnapshot};
use gateway::sink::{SharedSpool, Sink};
use gateway::spool::Spool;
use md5::{Digest, Md5};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SECRET: &str = "s3cret";

/// A receiver serving on loopback with a spool in a temporary directory.
struct Harness {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    stats: Arc<RadiusStats>,
    spool: SharedSpool,
    stop: watch::Sender<bool>,
    task: JoinHandle<gateway::Result<()>>,
}

impl Harness {
    async fn start(clients: Option<Vec<ClientNet>>, spool_max_bytes: u64) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("radius-secret");
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        let config = RadiusConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            secret_file,
            clients,
        };
        let receiver = RadiusReceiver::bind(&config).await.unwrap();
        let addr = receiver.local_addr();
        let stats = receiver.stats();
        let spool =
            SharedSpool::new(Spool::open(&dir.path().join("spool"), spool_max_bytes).unwrap());
        let sink = Sink::new(spool.clone(), "gw1/radius@1".to_owned(), 0, 100);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(receiver.run(sink, stop_rx));
        Harness {
            _dir: dir,
            addr,
            stats,
            spool,
            stop,
            task,
        }
    }

    /// Every spooled event as one JSON line each.
    async fn spooled(&self) -> String {
        let peeked = self
            .spool
            .with(|spool| spool.peek(1000, usize::MAX))
            .await
            .unwrap();
        let events = peeked.map(|peeked| peeked.events).unwrap_or_default();
        let lines: Vec<String> = events
            .iter()
            .map(|event| serde_json::to_string(event).unwrap())
            .collect();
        lines.join("\n")
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the receiver stops when told")
            .unwrap()
            .unwrap();
    }
}

/// Runs `radclient -x -t 1 -r 1 ADDR acct SECRET` with `attributes` on stdin.
async fn radclient(addr: SocketAddr, secret: &str, attributes: &str) -> Output {
    let secret = secret.to_owned();
    let attributes = attributes.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = match Command::new("radclient")
            .args([
                "-x",
                "-t",
                "1",
                "-r",
                "1",
                &addr.to_string(),
                "acct",
                &secret,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "`radclient` is not installed: this test needs FreeRADIUS's real client; \
                 install it with `apt-get install freeradius-utils`"
            ),
            Err(error) => panic!("cannot run radclient: {error}"),
        };
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(attributes.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

#[track_caller]
fn assert_answered(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("Received Accounting-Response"),
        "radclient got no valid answer: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An Accounting-Request signed with MD5 here, not with the crate's codec.
fn request(identifier: u8, attributes: &[(u8, &[u8])], secret: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, value) in attributes {
        body.push(*kind);
        body.push(u8::try_from(value.len() + 2).unwrap());
        body.extend_from_slice(value);
    }
    let length = u16::try_from(20 + body.len()).unwrap().to_be_bytes();
    let mut hasher = Md5::new();
    hasher.update([4, identifier, length[0], length[1]]);
    hasher.update([0; 16]);
    hasher.update(&body);
    hasher.update(secret.as_bytes());
    let mut packet = vec![4, identifier, length[0], length[1]];
    packet.extend_from_slice(&hasher.finalize());
    packet.extend_from_slice(&body);
    packet
}

/// Checks a response's code, identifier and Response Authenticator against its request.
#[track_caller]
fn assert_valid_response(response: &[u8], request: &[u8], secret: &str) {
    assert_eq!(response.len(), 20, "no attributes expected");
    assert_eq!(response[..2], [5, request[1]]);
    let mut hasher = Md5::new();
    hasher.update(&response[..4]);
    hasher.update(&request[4..20]);
    hasher.update(secret.as_bytes());
    assert_eq!(response[4..20], hasher.finalize()[..]);
}

async fn exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
    wait: Duration,
) -> Option<Vec<u8>> {
    socket.send_to(datagram, to).await.unwrap();
    let mut buffer = [0u8; 4096];
    let received = tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await;
    received.ok().map(|result| {
        let (len, _) = result.unwrap();
        buffer[..len].to_vec()
    })
}

const START: &str = r#"Acct-Status-Type = Start
User-Name = "carol"
Acct-Session-Id = "5"
Framed-IP-Address = 10.99.0.1
Calling-Station-Id = "192.0.2.12[4500]"
Called-Station-Id = "192.0.2.1[4500]"
NAS-Port = 7
NAS-Port-Id = "rw-eap"
NAS-IP-Address = 192.0.2.1
NAS-Identifier = "strongSwan"
Event-Timestamp = 1700000000
"#;

const INTERIM: &str = r#"Acct-Status-Type = Interim-Update
User-Name = "carol"
Acct-Session-Id = "5"
Framed-IP-Address = 10.99.0.1
Calling-Station-Id = "192.0.2.12[4500]"
NAS-Port = 7
NAS-Port-Id = "rw-eap"
NAS-IP-Address = 192.0.2.1
Acct-Input-Octets = 1000
Acct-Input-Gigawords = 2
Acct-Output-Octets = 123456
Acct-Input-Packets = 10
Acct-Output-Packets = 12
Acct-Session-Time = 60
Event-Timestamp = 1700000060
"#;

const STOP: &str = r#"Acct-Status-Type = Stop
User-Name = "carol"
Acct-Session-Id = "5"
Framed-IP-Address = 10.99.0.1
Calling-Station-Id = "192.0.2.12[4500]"
NAS-Port = 7
NAS-Port-Id = "rw-eap"
NAS-IP-Address = 192.0.2.1
Acct-Input-Octets = 2000
Acct-Input-Gigawords = 2
Acct-Output-Octets = 234567
Acct-Session-Time = 120
Acct-Terminate-Cause = User-Request
Event-Timestamp = 1700000120
"#;

/// Control characters and invalid UTF-8 in values, as radclient sends them.
const HOSTILE: &str = r#"Acct-Status-Type = Start
User-Name = "mallory\r\nAcct-Status-Type=Stop \033[31m\377"
Acct-Session-Id = "9"
Event-Timestamp = 1700000300
"#;

const ACCOUNTING_ON: &str = "Acct-Status-Type = Accounting-On\nNAS-IP-Address = 192.0.2.1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_start_interim_stop_retransmit_and_a_wrong_secret() {
    let harness = Harness::start(None, 1 << 20).await;

    for attributes in [START, INTERIM, STOP] {
        assert_answered(&radclient(harness.addr, SECRET, attributes).await);
    }

    // A retransmit (same source port, identifier and authenticator) is answered again with the
    // same response, and stored once.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let interim = request(
        42,
        &[
            (40, &3u32.to_be_bytes()),
            (1, b"dave"),
            (44, b"6"),
            (5, &8u32.to_be_bytes()),
            (43, &77u32.to_be_bytes()),
            (55, &1_700_000_200u32.to_be_bytes()),
        ],
        SECRET,
    );
    let wait = Duration::from_secs(5);
    let first = exchange(&socket, harness.addr, &interim, wait)
        .await
        .unwrap();
    let second = exchange(&socket, harness.addr, &interim, wait)
        .await
        .unwrap();
    assert_valid_response(&first, &interim, SECRET);
    assert_eq!(first, second);

    // Another secret: the authenticator does not verify, so no answer and no event.
    let output = radclient(harness.addr, "not-the-secret", START).await;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{printed}");
    assert!(printed.contains("No reply from server"), "{printed}");

    assert_answered(&radclient(harness.addr, SECRET, HOSTILE).await);
    assert_answered(&radclient(harness.addr, SECRET, ACCOUNTING_ON).await);

    expect![[r#"
        {"id":{"source":"gw1/radius@1","seq":0},"timestamp":"2023-11-14T22:13:20Z","dataset":"radius.accounting","observer":{"hostname":"gw1","product":null},"original":"Acct-Status-Type=Start User-Name=\"carol\" Acct-Session-Id=\"5\" Framed-IP-Address=10.99.0.1 Calling-Station-Id=\"192.0.2.12[4500]\" Called-Station-Id=\"192.0.2.1[4500]\" NAS-Port=7 NAS-Port-Id=\"rw-eap\" NAS-IP-Address=192.0.2.1 NAS-Identifier=\"strongSwan\" Event-Timestamp=2023-11-14T22:13:20Z","body":{"type":"session","peer":{"connection":"rw-eap","ike_sa_id":7,"client":{"ip":"192.0.2.12","port":4500},"server":{"ip":"192.0.2.1","port":4500},"identities":{"ike_id":"carol"}},"change":"start","virtual_ip":"10.99.0.1","accounting_id":"5"}}
        {"id":{"source":"gw1/radius@1","seq":1},"timestamp":"2023-11-14T22:14:20Z","dataset":"radius.accounting","observer":{"hostname":"gw1","product":null},"original":"Acct-Status-Type=Interim-Update User-Name=\"carol\" Acct-Session-Id=\"5\" Framed-IP-Address=10.99.0.1 Calling-Station-Id=\"192.0.2.12[4500]\" NAS-Port=7 NAS-Port-Id=\"rw-eap\" NAS-IP-Address=192.0.2.1 Acct-Input-Octets=1000 Acct-Input-Gigawords=2 Acct-Output-Octets=123456 Acct-Input-Packets=10 Acct-Output-Packets=12 Acct-Session-Time=60 Event-Timestamp=2023-11-14T22:14:20Z","body":{"type":"session","peer":{"connection":"rw-eap","ike_sa_id":7,"client":{"ip":"192.0.2.12","port":4500},"server":{"ip":"192.0.2.1","port":null},"identities":{"ike_id":"carol"}},"change":"update","virtual_ip":"10.99.0.1","accounting_id":"5","counters":{"bytes_in":8589935592,"bytes_out":123456,"packets_in":10,"packets_out":12},"duration_secs":60}}
        {"id":{"source":"gw1/radius@1","seq":2},"timestamp":"2023-11-14T22:15:20Z","dataset":"radius.accounting","observer":{"hostname":"gw1","product":null},"original":"Acct-Status-Type=Stop User-Name=\"carol\" Acct-Session-Id=\"5\" Framed-IP-Address=10.99.0.1 Calling-Station-Id=\"192.0.2.12[4500]\" NAS-Port=7 NAS-Port-Id=\"rw-eap\" NAS-IP-Address=192.0.2.1 Acct-Input-Octets=2000 Acct-Input-Gigawords=2 Acct-Output-Octets=234567 Acct-Session-Time=120 Acct-Terminate-Cause=User-Request Event-Timestamp=2023-11-14T22:15:20Z","body":{"type":"session","peer":{"connection":"rw-eap","ike_sa_id":7,"client":{"ip":"192.0.2.12","port":4500},"server":{"ip":"192.0.2.1","port":null},"identities":{"ike_id":"carol"}},"change":"stop","virtual_ip":"10.99.0.1","accounting_id":"5","counters":{"bytes_in":8589936592,"bytes_out":234567},"duration_secs":120,"cause":"user_request"}}
        {"id":{"source":"gw1/radius@1","seq":3},"timestamp":"2023-11-14T22:16:40Z","dataset":"radius.accounting","observer":{"hostname":"gw1","product":null},"original":"Acct-Status-Type=Interim-Update User-Name=\"dave\" Acct-Session-Id=\"6\" NAS-Port=8 Acct-Output-Octets=77 Event-Timestamp=2023-11-14T22:16:40Z","body":{"type":"session","peer":{"ike_sa_id":8,"identities":{"ike_id":"dave"}},"change":"update","accounting_id":"6","counters":{"bytes_in":0,"bytes_out":77}}}
        {"id":{"source":"gw1/radius@1","seq":4},"timestamp":"2023-11-14T22:18:20Z","dataset":"radius.accounting","observer":{"hostname":"gw1","product":null},"original":"Acct-Status-Type=Start User-Name=\"mallory\\r\\nAcct-Status-Type=Stop \\x1b[31m\\xff\" Acct-Session-Id=\"9\" Event-Timestamp=2023-11-14T22:18:20Z","body":{"type":"session","peer":{"identities":{"ike_id":"mallory\r\nAcct-Status-Type=Stop \u001b[31m\\xff"}},"change":"start","accounting_id":"9"}}"#]]
    .assert_eq(&harness.spooled().await);
    settled(
        &harness.stats,
        RadiusStatsSnapshot {
            datagrams: 8,
            sessions: 5,
            ignored: 1,
            duplicates: 1,
            bad_authenticator: 1,
            responses: 7,
            ..RadiusStatsSnapshot::default()
        },
    )
    .await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_clients_and_oversized_datagrams_get_no_answer() {
    let harness = Harness::start(Some(vec!["192.0.2.0/24".parse().unwrap()]), 1 << 20).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = request(1, &[(40, &1u32.to_be_bytes()), (1, b"carol")], SECRET);
    let wait = Duration::from_millis(300);
    assert_eq!(exchange(&socket, harness.addr, &start, wait).await, None);
    settled(
        &harness.stats,
        RadiusStatsSnapshot {
            datagrams: 1,
            unknown_client: 1,
            ..RadiusStatsSnapshot::default()
        },
    )
    .await;
    harness.stop().await;

    let harness = Harness::start(None, 1 << 20).await;
    let mut oversized = request(2, &[(40, &1u32.to_be_bytes())], SECRET);
    oversized.resize(9000, 0);
    assert_eq!(
        exchange(&socket, harness.addr, &oversized, wait).await,
        None
    );
    // Answered normally afterwards.
    let answer = exchange(&socket, harness.addr, &start, Duration::from_secs(5)).await;
    assert_valid_response(&answer.unwrap(), &start, SECRET);
    settled(
        &harness.stats,
        RadiusStatsSnapshot {
            datagrams: 2,
            sessions: 1,
            oversized: 1,
            responses: 1,
            ..RadiusStatsSnapshot::default()
        },
    )
    .await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_before_the_event_is_spooled() {
    // A spool that is full: the first record fills it, the next append waits.
    let harness = Harness::start(None, 1).await;
    let filler = model::Event {
        id: model::EventId::new("gw1/other@1", 0, 0),
        timestamp: jiff::Timestamp::UNIX_EPOCH,
        dataset: "test".to_owned(),
        observer: model::Observer::default(),
        original: "filler".to_owned(),
        session_id: None,
        source_geo: None,
        body: model::EventBody::PipelineError(model::PipelineError {
            reason: model::RejectReason::Malformed,
            message: String::new(),
            original_len: 6,
        }),
    };
    harness
        .spool
        .with(move |spool| spool.append(&[filler]))
        .await
        .unwrap();

    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let start = request(3, &[(40, &1u32.to_be_bytes()), (1, b"erin")], SECRET);
    assert_eq!(
        exchange(&socket, harness.addr, &start, Duration::from_millis(600)).await,
        None,
        "answered although the event could not be spooled"
    );
    // The client retransmits while the spool is full; the shipper then frees the spool.
    socket.send_to(&start, harness.addr).await.unwrap();
    harness
        .spool
        .with(|spool| {
            let peeked = spool.peek(10, usize::MAX)?.unwrap();
            spool.commit(peeked.next)
        })
        .await
        .unwrap();
    let mut buffer = [0u8; 64];
    for _ in 0..2 {
        let (len, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer))
            .await
            .expect("answered once the spool had room")
            .unwrap();
        assert_valid_response(&buffer[..len], &start, SECRET);
    }
    let spooled = harness.spooled().await;
    assert_eq!(spooled.lines().count(), 1, "{spooled}");
    assert!(spooled.contains(r#""ike_id":"erin""#), "{spooled}");
    // The counters move just after the datagram goes out: give them a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stats = harness.stats.snapshot();
        let found = (stats.sessions, stats.duplicates, stats.responses);
        if found == (1, 1, 2) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{found:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_spooled_in_order_and_every_request_answered() {
    let harness = Harness::start(None, 1 << 20).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let requests: Vec<Vec<u8>> = (0..100u32)
        .map(|n| {
            let session_id = n.to_string();
            request(
                u8::try_from(n % 256).unwrap(),
                &[(40, &3u32.to_be_bytes()), (44, session_id.as_bytes())],
                SECRET,
            )
        })
        .collect();
    for request in &requests {
        socket.send_to(request, harness.addr).await.unwrap();
    }
    let mut buffer = [0u8; 64];
    let mut n_answered = 0;
    while n_answered < requests.len() {
        let (len, _) = tokio::time::timeout(Duration::from_secs(10), socket.recv_from(&mut buffer))
            .await
            .expect("every request is answered")
            .unwrap();
        let request = requests
            .iter()
            .find(|request| request[1] == buffer[1])
            .unwrap();
        assert_valid_response(&buffer[..len], request, SECRET);
        n_answered += 1;
    }
    let spooled = harness.spooled().await;
    let session_ids: Vec<String> = spooled
        .lines()
        .map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["body"]["accounting_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let expected: Vec<String> = (0..100).map(|n: u32| n.to_string()).collect();
    assert_eq!(session_ids, expected);
    assert_eq!(harness.stats.snapshot().sessions, 100);
    harness.stop().await;
}

/// Waits (up to 5 s) for the counters to reach `expected`: a response is counted just after
/// it is sent, so the client may read it a moment before the counter moves.
async fn settled(stats: &RadiusStats, expected: RadiusStatsSnapshot) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let found = stats.snapshot();
        if found == expected || std::time::Instant::now() >= deadline {
            assert_eq!(found, expected);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
