//! The whole path against real software: a strongSwan gateway and clients in network
//! namespaces (userspace ESP), the real `tunnelwatch gateway` tailing the gateway's charon log
//! and shipping to the real `tunnelwatch server`; one good and one bad login must show up,
//! exactly, through the HTTP API, and the session must end when the client disconnects.
//!
//! Needs root (network namespaces) and Debian's strongSwan packages; the testbed installs
//! missing packages and fails with a clear message when it cannot.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Daemon, get_json, wait_for};
use testbed::{Client, Credential, Options, Testbed};

#[test]
fn good_and_bad_login_reach_the_api() {
    let testbed = Testbed::up(Options::default())
        .unwrap_or_else(|error| panic!("the strongSwan testbed did not come up: {error}"));
    let work = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let token_file = work.path().join("ingest.token");
    std::fs::write(&token_file, "e2e-token\n").unwrap();
    let config = format!(
        r#"
[gateway]
name = "gw-e2e"
server_url = "http://127.0.0.1:{port}"
token_file = "{token}"
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
ingest_token_file = "{token}"
"#,
        token = token_file.display(),
        state = work.path().join("gateway-state").display(),
        log = testbed.gateway_log().display(),
        data = work.path().join("data").display(),
    );
    let config_path = work.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.to_str().unwrap();
    let check = support::run(&["check-config", config_arg]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let server = Daemon::spawn(
        "server",
        &["server", "--config", config_arg],
        &work.path().join("server.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for(
        "the server to answer /healthz",
        Duration::from_secs(20),
        || get_json(&format!("{base}/healthz")),
    );
    let gateway = Daemon::spawn(
        "gateway",
        &["gateway", "--config", config_arg],
        &work.path().join("gateway.log"),
    );

    assert!(
        testbed
            .connect(Client::Client1, "rw-psk", Credential::Correct)
            .unwrap(),
        "client1 should log in"
    );
    assert!(
        !testbed
            .connect(
                Client::Client2,
                "rw-psk",
                Credential::WrongPsk("not-the-key".to_owned())
            )
            .unwrap(),
        "client2 must be refused"
    );

    let auth = wait_for(
        "two auth events in the API",
        Duration::from_secs(30),
        || {
            let body = get_json(&format!("{base}/api/v1/auth-events"))?;
            (body["count"] == 2).then_some(body)
        },
    );
    let events = auth["auth_events"].as_array().unwrap();
    let success: Vec<_> = events
        .iter()
        .filter(|event| event["event_outcome"] == "success")
        .collect();
    let failure: Vec<_> = events
        .iter()
        .filter(|event| event["event_outcome"] == "failure")
        .collect();
    assert_eq!(success.len(), 1, "{auth:#}");
    assert_eq!(failure.len(), 1, "{auth:#}");
    assert_eq!(success[0]["user_name"], "client1@psk.vpn.test");
    assert_eq!(success[0]["vpn_auth_method"], "psk");
    assert_eq!(success[0]["source_ip"], Client::Client1.address());
    assert_eq!(success[0]["observer_hostname"], "gw-e2e");
    assert!(
        success[0]["session_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("s-")),
        "{auth:#}"
    );
    assert_eq!(failure[0]["user_name"], "client2@psk.vpn.test");
    assert_eq!(failure[0]["vpn_auth_failure"], "psk_mismatch");
    assert_eq!(failure[0]["source_ip"], Client::Client2.address());

    let sessions = wait_for("the active session", Duration::from_secs(30), || {
        let body = get_json(&format!("{base}/api/v1/sessions"))?;
        (body["count"] == 1 && body["sessions"][0]["vpn_state"] == "active").then_some(body)
    });
    let session = &sessions["sessions"][0];
    assert_eq!(session["user_name"], "client1@psk.vpn.test");
    assert!(
        session["vpn_virtual_ip"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.99.0.")),
        "{sessions:#}"
    );
    assert_eq!(session["session_id"], success[0]["session_id"]);

    testbed.curl(Client::Client1).unwrap();
    testbed.disconnect(Client::Client1).unwrap();
    let closed = wait_for("the session to close", Duration::from_secs(30), || {
        let body = get_json(&format!("{base}/api/v1/sessions"))?;
        (body["sessions"][0]["vpn_state"] == "closed").then_some(body)
    });
    let session = &closed["sessions"][0];
    assert_eq!(session["vpn_terminate_cause"], "user_request");
    assert!(
        session["source_bytes"].as_i64().unwrap() > 0,
        "the HTTP request moved bytes: {closed:#}"
    );
    assert!(session["event_end"].is_string());

    gateway.stop();
    server.stop();
    // After a clean stop everything is in Parquet; `tunnelwatch sql` reads it.
    let data = work.path().join("data");
    let csv = support::sql_csv(
        &data,
        "select event_outcome, count(*) as n from auth_events group by event_outcome order by event_outcome",
    );
    assert_eq!(csv, "event_outcome,n\nfailure,1\nsuccess,1\n");
    testbed.down().unwrap();
}
