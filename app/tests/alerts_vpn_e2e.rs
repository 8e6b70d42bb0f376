//! The shipped rules against real logins: a strongSwan gateway and clients in network
//! namespaces, the real agent tailing charon's log, the real server with a City database the
//! test writes, and a real SMTP server (PyPI aiosmtpd) for the pages.
//!
//! - 10 wrong EAP passwords of one user within a minute fire exactly one auth-spike alert and
//!   exactly one e-mail; the user's next, successful login fires brute-force-then-success.
//! - The same user logging in from Hamburg, then from Sydney seconds later, fires impossible
//!   travel (the client is moved to an address the database places in Australia).
//! - A client that proposes only 3DES/SHA-1/MODP_1024, which the gateway allows, fires weak
//!   crypto, with the algorithms in the reason.
//!
//! Needs root (network namespaces), Debian's strongSwan packages (the testbed installs them)
//! and aiosmtpd (scripts/test.sh installs it and sets TW_AIOSMTPD_PYTHON).

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use mmdb_writer::Writer;
use mmdb_writer::ipnet::IpNet;
use support::{Daemon, Smtp, free_port, geo_record, get_json, mails, start_server, wait_for};
use testbed::{Client, Credential, Options, Testbed};

/// Where client1 logs in from: an address the database places in Hamburg, then one in Sydney.
const HAMBURG: &str = "45.67.89.10";
const SYDNEY: &str = "1.128.0.10";

fn city_database(path: &Path) {
    let mut writer = Writer::new("GeoIP2-Enterprise");
    for (net, record) in [
        (
            "45.67.89.0/24",
            geo_record(
                "DE",
                "Germany",
                "Hamburg",
                53.55,
                9.99,
                64_500,
                "Example Transit",
            ),
        ),
        (
            "1.128.0.0/16",
            geo_record(
                "AU",
                "Australia",
                "Sydney",
                -33.87,
                151.21,
                64_502,
                "Example Mobile",
            ),
        ),
    ] {
        writer
            .insert_value(net.parse::<IpNet>().unwrap(), record)
            .unwrap();
    }
    std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
}

/// The alerts of the API (newest state of each), with a status filter.
fn alerts(base: &str, query: &str) -> Vec<serde_json::Value> {
    get_json(&format!("{base}/api/v1/alerts?{query}"))
        .and_then(|body| body["alerts"].as_array().cloned())
        .unwrap_or_default()
}

fn of_rule<'a>(alerts: &'a [serde_json::Value], rule: &str) -> Vec<&'a serde_json::Value> {
    alerts
        .iter()
        .filter(|alert| alert["rule_id"] == rule)
        .collect()
}

#[test]
fn real_logins_fire_the_shipped_rules_and_page_once() {
    let testbed = Testbed::up(Options {
        weak_crypto: true,
        ..Options::default()
    })
    .unwrap_or_else(|error| panic!("the strongSwan testbed did not come up: {error}"));
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let database = dir.join("city.mmdb");
    city_database(&database);
    let port = free_port();
    let smtp_port = free_port();
    let maildir = dir.join("mail");
    let _smtp = Smtp::start(smtp_port, &maildir);
    let token_file = dir.join("ingest.token");
    std::fs::write(&token_file, "e2e-token\n").unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
name = "gw-alerts"
server_url = "http://127.0.0.1:{port}"
token_file = "{token}"
state_dir = "{state}"
poll_interval_ms = 100
batch_max_wait_ms = 100

[[gateway.sources]]
type = "file"
format = "charon"
path = "{log}"

[[gateway.sources]]
type = "certificates"
vici = "{vici}"
every_secs = 60

[collector.geoip]
city_db = "{database}"

[store]
data_dir = "{data}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"
# This test is about alerts: anonymous callers read as analysts (access is tested in access_e2e.rs).
anonymous_role = "analyst"
ingest_token_file = "{token}"

[alerting]
console_url = "https://tunnelwatch.example.org"

[[alerting.receivers]]
name = "oncall"
type = "email"
min_severity = "high"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
tls = "none"
from = "tunnelwatch <alerts@example.org>"
to = ["oncall@example.org"]
timeout_secs = 5
"#,
            token = token_file.display(),
            state = dir.join("gateway-state").display(),
            log = testbed.gateway_log().display(),
            vici = testbed.vici_socket().display(),
            database = database.display(),
            data = dir.join("data").display(),
        ),
    )
    .unwrap();
    let check = support::run(&["check-config", config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _server = start_server(&config, port, &dir.join("server.log"));
    let _gateway = Daemon::spawn(
        "gateway",
        &["gateway", "--config", config.to_str().unwrap()],
        &dir.join("gateway.log"),
    );
    let base = format!("http://127.0.0.1:{port}");

    // Ten wrong EAP passwords of alice (client1's EAP user) from Hamburg, within a minute.
    testbed.move_client(Client::Client1, HAMBURG).unwrap();
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let login = testbed
            .connect(
                Client::Client1,
                "rw-eap",
                Credential::WrongEapPassword("not-alices-password".to_owned()),
            )
            .unwrap();
        assert!(!login, "a wrong EAP password was accepted");
    }
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "ten failed logins took {:?}: too slow for a one-minute window",
        started.elapsed()
    );
    let spike = wait_for("the auth-spike alert", Duration::from_secs(30), || {
        let open = alerts(&base, "status=open");
        let spikes = of_rule(&open, "auth-failure-spike-user");
        (!spikes.is_empty()).then(|| (*spikes[0]).clone())
    });
    assert_eq!(spike["user"], "alice", "{spike:#}");
    let spike_mail = wait_for("the spike's e-mail", Duration::from_secs(30), || {
        mails(&maildir).into_iter().next()
    });
    assert!(
        spike_mail.contains("Failed logins of one user") && spike_mail.contains("alice"),
        "{spike_mail}"
    );
    assert!(spike_mail.contains(HAMBURG), "{spike_mail}");

    // The right password: the brute force may have worked.
    assert!(
        testbed
            .connect(Client::Client1, "rw-eap", Credential::Correct)
            .unwrap(),
        "alice's own password was refused"
    );
    let brute = wait_for("brute-force-then-success", Duration::from_secs(30), || {
        let open = alerts(&base, "status=open");
        of_rule(&open, "brute-force-then-success")
            .first()
            .map(|alert| (*alert).clone())
    });
    assert_eq!(brute["user"], "alice", "{brute:#}");

    // Seconds later, alice from Sydney: impossible travel.
    testbed.disconnect(Client::Client1).unwrap();
    testbed.move_client(Client::Client1, SYDNEY).unwrap();
    assert!(
        testbed
            .connect(Client::Client1, "rw-eap", Credential::Correct)
            .unwrap(),
        "alice's login from Sydney was refused"
    );
    let travel = wait_for("impossible travel", Duration::from_secs(30), || {
        let open = alerts(&base, "status=open");
        of_rule(&open, "impossible-travel")
            .first()
            .map(|alert| (*alert).clone())
    });
    assert_eq!(travel["user"], "alice", "{travel:#}");
    let reason = travel["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Hamburg (DE)") && reason.contains("Sydney (AU)"),
        "{travel:#}"
    );

    // client2 proposes only 3DES/SHA-1/MODP_1024, which the gateway's rw-psk allows.
    assert!(
        testbed
            .connect(Client::Client2, "rw-weak", Credential::Correct)
            .unwrap(),
        "the weak proposal was refused"
    );
    let weak = wait_for("weak crypto", Duration::from_secs(30), || {
        let open = alerts(&base, "status=open");
        of_rule(&open, "weak-crypto")
            .first()
            .map(|alert| (*alert).clone())
    });
    assert_eq!(weak["user"], "client2@psk.vpn.test", "{weak:#}");
    let reason = weak["reason"].as_str().unwrap_or_default();
    for algorithm in ["3DES_CBC", "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_1024"] {
        assert!(reason.contains(algorithm), "{weak:#}");
    }
    // The certificates charon loaded (VICI list-certs) are in the store, with their expiry.
    let certificates = support::sql_csv(
        &dir.join("data"),
        "select vpn_cert_subject from events where event_action = 'certificate-seen' order by 1",
    );
    assert!(
        certificates.contains("CN=gw.vpn.test") && certificates.contains("CN=testbed CA"),
        "{certificates}"
    );
    // alice's strong logins never looked weak.
    let all = alerts(&base, "");
    assert_eq!(of_rule(&all, "weak-crypto").len(), 1, "{all:#?}");

    // One alert and one page per finding: the spike once (ten failures, one alert), the
    // brute force and the travel once each (high and above page; weak crypto is medium).
    assert_eq!(
        of_rule(&all, "auth-failure-spike-user").len(),
        1,
        "{all:#?}"
    );
    assert_eq!(of_rule(&all, "brute-force-then-success").len(), 1);
    assert_eq!(of_rule(&all, "impossible-travel").len(), 1);
    wait_for("three e-mails", Duration::from_secs(30), || {
        (mails(&maildir).len() >= 3).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let mails = mails(&maildir);
    let subjects: Vec<&str> = mails
        .iter()
        .filter_map(|mail| mail.lines().find(|line| line.starts_with("Subject: ")))
        .collect();
    assert_eq!(mails.len(), 3, "{subjects:?}");
    for name in [
        "Failed logins of one user",
        "Failed logins, then a success",
        "Impossible travel",
    ] {
        assert_eq!(
            subjects
                .iter()
                .filter(|subject| subject.contains(name))
                .count(),
            1,
            "{name}: {subjects:?}"
        );
    }
}
