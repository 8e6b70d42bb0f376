//! The server with its segments in S3-compatible storage (moto's real S3 server on
//! loopback), as an operator runs it: the root and endpoint in the configuration file,
//! the credentials only in `AWS_*` environment variables; `tunnelwatch sql --data` then
//! finds the segments through what the data directory recorded.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use model::{Endpoint, Event, EventBody, EventId, IngestBatch, Observer};
use support::Daemon;
use testbed::s3::{ACCESS_KEY_ID, REGION, S3Server, SECRET_ACCESS_KEY};

const BUCKET: &str = "soc-archive";

fn event(seq: u64) -> Event {
    Event {
        id: EventId::new("s3-gw/charon@1", seq, 0),
        timestamp: jiff::Timestamp::from_second(1_795_000_000 + seq as i64 * 600).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("s3-gw".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: format!("assigned virtual IP to peer {seq}"),
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

fn with_credentials(command: &mut Command) -> &mut Command {
    command
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env_remove("RUST_LOG")
}

#[test]
fn a_server_keeps_its_segments_in_s3_and_the_cli_reads_them() {
    let s3 = S3Server::start().unwrap_or_else(|error| panic!("{error}"));
    s3.create_bucket(BUCKET).unwrap();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let port = support::free_port();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{}\"\nflush_interval_secs = 1\nroot = \"s3://{BUCKET}/tunnelwatch\"\n\n\
             [store.root_options]\naws_endpoint = \"{}\"\naws_allow_http = \"true\"\naws_region = \"{REGION}\"\n\
             # no instance metadata service here: keep credential lookups on loopback\n\
             aws_metadata_endpoint = \"http://127.0.0.1:9\"\n\n\
             [dashboards]\nlisten = \"127.0.0.1:{port}\"\nanonymous_role = \"analyst\"\nallow_unauthenticated_ingest = true\n",
            data.display(),
            s3.endpoint()
        ),
    )
    .unwrap();
    let checked = support::run(&["check-config", config.to_str().unwrap()]);
    let checked = String::from_utf8_lossy(&checked.stdout).into_owned();
    assert!(
        checked.contains("Parquet segments at s3://soc-archive/tunnelwatch"),
        "{checked}"
    );

    let mut command = Command::new(support::binary());
    command.args(["server", "--config", config.to_str().unwrap()]);
    with_credentials(&mut command);
    let server = Daemon::spawn_command("server", command, &work.path().join("server.log"));
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
    let batch = IngestBatch {
        gateway: "s3-gw".to_owned(),
        events: (0..20).map(event).collect(),
    };
    let status = runtime.block_on(async {
        client
            .post(&url)
            .json(&batch)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 200);
    // The flush reaches the bucket.
    let keys = support::wait_for("segments in the bucket", Duration::from_secs(30), || {
        let keys: Vec<String> = s3
            .list(BUCKET)
            .unwrap()
            .into_iter()
            .filter(|key| key.starts_with("tunnelwatch/events/date="))
            .collect();
        (!keys.is_empty()).then_some(keys)
    });
    assert!(keys.iter().all(|key| key.ends_with(".parquet")), "{keys:?}");
    server.stop();

    // No segment is local, and the credentials were written nowhere in the data directory.
    let tables = data.join("tables");
    assert!(
        std::fs::read_dir(&tables).map_or(true, |mut entries| entries.next().is_none()),
        "local segments in {}",
        tables.display()
    );
    let record = std::fs::read_to_string(data.join("state/storage.json")).unwrap();
    assert!(!record.contains(SECRET_ACCESS_KEY), "{record}");

    // A reader with only --data and the environment.
    let output = with_credentials(Command::new(support::binary()).args([
        "sql",
        "select count(*) as n from events",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "csv",
    ]))
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout), "n\n20\n");

    // Without credentials the reader fails and says so (no silent empty result).
    let output = Command::new(support::binary())
        .args([
            "sql",
            "select count(*) as n from events",
            "--data",
            data.to_str().unwrap(),
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("s3://soc-archive/tunnelwatch"), "{stderr}");
}
