//! The agent keeps events while the server is away and delivers each exactly once when it
//! is back, across restarts of either side. Runs the real binaries on loopback.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use support::{Daemon, get_json, wait_for};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../gateway/testdata/charon")
            .join(name),
    )
    .unwrap()
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn auth_count(base: &str) -> Option<i64> {
    get_json(&format!("{base}/api/v1/stats")).map(|stats| {
        stats["auth_failures"].as_i64().unwrap_or(0) + stats["auth_successes"].as_i64().unwrap_or(0)
    })
}

#[test]
fn events_survive_a_server_outage_and_restarts_exactly_once() {
    let work = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let log = work.path().join("charon.log");
    let config = format!(
        r#"
[gateway]
name = "gw-outage"
server_url = "http://127.0.0.1:{port}"
state_dir = "{state}"
poll_interval_ms = 100
batch_max_wait_ms = 100

[[gateway.sources]]
type = "file"
format = "charon"
path = "{log}"

[store]
data_dir = "{data}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"
# This test is about its own subject: anonymous callers read as analysts (access is tested in access_e2e.rs).
anonymous_role = "analyst"
allow_unauthenticated_ingest = true
"#,
        state = work.path().join("state").display(),
        log = log.display(),
        data = work.path().join("data").display(),
    );
    let config_path = work.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.to_str().unwrap();
    let base = format!("http://127.0.0.1:{port}");

    // The server is down: the gateway reads and spools.
    append(&log, &fixture("psk-ok.log"));
    let gateway = Daemon::spawn(
        "gateway",
        &["gateway", "--config", config_arg],
        &work.path().join("gateway-1.log"),
    );
    wait_for("the spool to fill", Duration::from_secs(20), || {
        let spool = std::fs::read_dir(work.path().join("state/spool")).ok()?;
        let bytes: u64 = spool
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("seg-"))
            .filter_map(|entry| entry.metadata().ok())
            .map(|metadata| metadata.len())
            .sum();
        (bytes > 0).then_some(())
    });
    append(&log, &fixture("psk-wrong.log"));
    std::thread::sleep(Duration::from_millis(500));
    // Restart the gateway while the server is still down.
    gateway.stop();
    let gateway = Daemon::spawn(
        "gateway",
        &["gateway", "--config", config_arg],
        &work.path().join("gateway-2.log"),
    );
    append(&log, &fixture("cert-ok.log"));

    // The server comes up and gets everything.
    let server = Daemon::spawn(
        "server",
        &["server", "--config", config_arg],
        &work.path().join("server-1.log"),
    );
    wait_for("three auth events", Duration::from_secs(30), || {
        (auth_count(&base)? == 3).then_some(())
    });

    // The server restarts; lines written meanwhile arrive once, the old ones are not repeated.
    server.stop();
    append(&log, &fixture("eap-mschapv2-ok.log"));
    // A rotation while the server is away.
    std::fs::rename(&log, work.path().join("charon.log.1")).unwrap();
    append(&log, &fixture("radius-wrong.log"));
    std::thread::sleep(Duration::from_secs(1));
    let server = Daemon::spawn(
        "server",
        &["server", "--config", config_arg],
        &work.path().join("server-2.log"),
    );
    wait_for("five auth events", Duration::from_secs(30), || {
        (auth_count(&base)? == 5).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(auth_count(&base), Some(5), "nothing may arrive twice");
    gateway.stop();
    server.stop();
    let output = support::run(&[
        "sql",
        "select count(*) as n, count(distinct event_id) as ids from events",
        "--data",
        work.path().join("data").to_str().unwrap(),
        "--format",
        "csv",
    ]);
    let csv = String::from_utf8(output.stdout).unwrap();
    let counts: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(counts[0], counts[1], "every event exactly once: {csv}");
}
