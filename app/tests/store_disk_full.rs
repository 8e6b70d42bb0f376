//! A disk that fills up: the server refuses batches with 503 (the gateway keeps them
//! spooled), never acknowledges what it could not write, and takes batches again once space
//! returns. The data directory is on a small tmpfs the test mounts (and grows); needs root.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use model::{Endpoint, Event, EventBody, EventId, IngestBatch, Observer};
use support::Daemon;
use testbed::tmpfs::{Tmpfs, fill};

fn event(seq: u64) -> Event {
    Event {
        id: EventId::new("full-gw/charon@1", seq, 0),
        timestamp: jiff::Timestamp::from_second(1_795_000_000 + seq as i64).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("full-gw".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        // Incompressible enough to fill the disk quickly.
        original: (0..2_000)
            .map(|idx| char::from(b'a' + ((seq * 31 + idx * 7) % 26) as u8))
            .collect(),
        session_id: None,
        source_geo: None,
        body: EventBody::VirtualIp(model::VirtualIpEvent {
            peer: model::Peer {
                client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
                ..model::Peer::default()
            },
            change: model::LeaseChange::Assigned,
            ip: "10.99.0.1".parse().unwrap(),
        }),
    }
}

#[test]
fn a_full_disk_refuses_with_503_and_resumes_when_space_returns() {
    let work = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&work.path().join("disk"), "6m").unwrap();
    let data = disk.path().join("data");
    let port = support::free_port();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{}\"\nflush_interval_secs = 1\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\nanonymous_role = \"analyst\"\nallow_unauthenticated_ingest = true\n",
            data.display()
        ),
    )
    .unwrap();
    let server = Daemon::spawn(
        "server",
        &["server", "--config", config.to_str().unwrap()],
        &work.path().join("server.log"),
    );
    let health = format!("http://127.0.0.1:{port}/healthz");
    support::wait_for("the server", Duration::from_secs(30), || {
        support::get_json(&health)
    });
    let url = format!("http://127.0.0.1:{port}{}", model::wire::INGEST_PATH);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = support::http_client(None);
    let send = |from: u64| -> (u16, String) {
        let batch = IngestBatch {
            gateway: "full-gw".to_owned(),
            events: (from..from + 50).map(event).collect(),
        };
        runtime.block_on(async {
            let response = client.post(&url).json(&batch).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    };

    // Fill the disk: batches are acknowledged until one is refused.
    let mut next = 0;
    let refusal = loop {
        let (status, body) = send(next);
        if status == 200 {
            next += 50;
            assert!(next < 100_000, "the disk never filled up");
            continue;
        }
        break (status, body);
    };
    assert_eq!(refusal.0, 503, "{}", refusal.1);
    assert!(
        refusal.1.contains("No space left") || refusal.1.contains("storage full"),
        "{}",
        refusal.1
    );
    let acknowledged = next;
    // Flushing turns the write-ahead log into smaller Parquet and may free space, so take
    // whatever is left with a filler file: now flushes fail too, and nothing may be lost.
    let filler = disk.path().join("filler");
    fill(&filler).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = send(next);
    assert_eq!(status, 503, "{body}");

    // Space returns: the same batch is taken, and more after it.
    std::fs::remove_file(&filler).unwrap();
    disk.resize("256m").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = send(next);
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after space returned: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    next += 50;
    assert_eq!(send(next).0, 200);
    next += 50;
    server.stop();

    let csv = support::sql_csv(
        &data,
        "select count(*) as n, count(distinct event_id) as ids from events",
    );
    assert!(acknowledged > 0);
    assert_eq!(csv, format!("n,ids\n{next},{next}\n"));
}
