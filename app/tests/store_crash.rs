//! `kill -9` the server again and again while a client keeps sending event batches, the way
//! a gateway does (a batch is resent until it is acknowledged). At the end every acknowledged
//! event is in the store exactly once, and each restart was ready within seconds.
//! Runs the real binary on loopback.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use model::{
    Auth, AuthMethod, Endpoint, Event, EventBody, EventId, Identities, IngestBatch, Observer,
    Outcome, Peer,
};
use support::Daemon;

const BATCH: u64 = 250;
const ROUNDS: usize = 8;

fn event(seq: u64) -> Event {
    Event {
        id: EventId::new("crash-gw/charon@1", seq, 0),
        timestamp: jiff::Timestamp::from_second(1_795_000_000 + seq as i64).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("crash-gw".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: format!(
            "authentication of 'user{}' with pre-shared key successful",
            seq % 97
        ),
        session_id: None,
        source_geo: None,
        body: EventBody::Auth(Auth {
            peer: Peer {
                connection: Some("rw-psk".to_owned()),
                ike_sa_id: Some(seq),
                client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
                server: Endpoint::default(),
                identities: Identities {
                    ike_id: Some(format!("user{}", seq % 97)),
                    ..Identities::default()
                },
            },
            method: AuthMethod::Psk,
            outcome: Outcome::Success,
            failure: None,
        }),
    }
}

/// Sends batch `index` once: `true` when the server acknowledged it as durable.
fn send(
    client: &reqwest::Client,
    runtime: &tokio::runtime::Runtime,
    url: &str,
    index: u64,
) -> bool {
    let batch = IngestBatch {
        gateway: "crash-gw".to_owned(),
        events: (index * BATCH..(index + 1) * BATCH).map(event).collect(),
    };
    runtime.block_on(async {
        match client
            .post(url)
            .bearer_auth("crash-token")
            .json(&batch)
            .send()
            .await
        {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    })
}

fn sigkill(daemon: &mut Daemon) {
    let pid = daemon.child.id().to_string();
    Command::new("kill")
        .args(["-KILL", &pid])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    let _ = daemon.child.wait();
}

#[test]
fn kill_9_in_a_loop_loses_and_duplicates_no_acknowledged_event() {
    let work = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let token = work.path().join("token");
    std::fs::write(&token, "crash-token\n").unwrap();
    let data = work.path().join("data");
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{}\"\nflush_interval_secs = 1\nmax_buffered_rows = 2000\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\nanonymous_role = \"analyst\"\ningest_token_file = \"{}\"\n",
            data.display(),
            token.display()
        ),
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{port}{}", model::wire::INGEST_PATH);
    let health = format!("http://127.0.0.1:{port}/healthz");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = support::http_client(None);
    let mut next_batch = 0u64;
    let mut slowest_start = Duration::ZERO;
    for round in 0..ROUNDS {
        let started = Instant::now();
        let mut server = Daemon::spawn(
            "server",
            &["server", "--config", config.to_str().unwrap()],
            &work.path().join(format!("server-{round}.log")),
        );
        support::wait_for("the server to answer", Duration::from_secs(30), || {
            support::get_json(&health)
        });
        slowest_start = slowest_start.max(started.elapsed());
        // Send for a while (each round a different length, so kills land in appends,
        // flushes and idle moments alike), resending a batch until it is acknowledged.
        let deadline = Instant::now() + Duration::from_millis(300 + 170 * round as u64);
        while Instant::now() < deadline {
            if send(&client, &runtime, &url, next_batch) {
                next_batch += 1;
            }
        }
        // Kill it while the last batch may be in flight: send one on another thread.
        let in_flight = {
            let url = url.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                send(&support::http_client(None), &runtime, &url, next_batch)
            })
        };
        std::thread::sleep(Duration::from_millis(3 * round as u64));
        sigkill(&mut server);
        if in_flight.join().unwrap() {
            next_batch += 1;
        }
    }
    // One last clean run delivers nothing new: every batch up to `next_batch` was acknowledged.
    let server = Daemon::spawn(
        "server",
        &["server", "--config", config.to_str().unwrap()],
        &work.path().join("server-final.log"),
    );
    support::wait_for("the server to answer", Duration::from_secs(30), || {
        support::get_json(&health)
    });
    server.stop();
    let acknowledged = next_batch * BATCH;
    assert!(
        acknowledged >= 2_000,
        "only {acknowledged} events were acknowledged"
    );
    let csv = support::sql_csv(
        &data,
        "select count(*) as n, count(distinct event_id) as distinct_ids, max(vpn_ike_sa_id) as top from auth_events",
    );
    // The in-flight batch of the last kill may have been stored without its answer
    // arriving: then it is stored once, and nothing beyond it.
    let stored_once = format!(
        "n,distinct_ids,top\n{acknowledged},{acknowledged},{}\n",
        acknowledged - 1
    );
    let with_unanswered = format!(
        "n,distinct_ids,top\n{n},{n},{}\n",
        acknowledged + BATCH - 1,
        n = acknowledged + BATCH
    );
    assert!(
        csv == stored_once || csv == with_unanswered,
        "after {ROUNDS} kills, expected {acknowledged} events once, got:\n{csv}"
    );
    assert!(
        slowest_start < Duration::from_secs(5),
        "a restart took {slowest_start:?} to answer"
    );
}
