//! Alerting end to end with the real binary: real strongSwan (charon) log lines of a wrong
//! and a right pre-shared key, repeated into an attack (ten failures of one account within a
//! minute, then its success, each under its own IKE_SA number), through
//!
//! - `tunnelwatch ingest` (the rules in event time: the alerts it prints, and `alerts list`
//!   and `alerts show` reading them back), and
//! - a running server fed the same lines with today's timestamps over the ingest API: the
//!   alert API lists them, analysts acknowledge and resolve (each in the audit trail, a viewer
//!   refused), resent batches do not count twice, and a restart does not fire them again.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Smtp, free_port, mails, start_server, wait_for};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/testdata/charon")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// The captured lines of one login, moved to IKE_SA number `sa` and to `stamp`.
fn login(template: &str, template_sa: u32, sa: u32, stamp: &str) -> String {
    template
        .lines()
        .map(|line| {
            // "Nov 25 09:33:14 12[NET] <2> …": the first 15 bytes are the time.
            let rest = &line[15..];
            let rest = rest
                .replace(&format!("<{template_sa}>"), &format!("<{sa}>"))
                .replace(&format!("|{template_sa}>"), &format!("|{sa}>"))
                .replace(&format!("[{template_sa}]"), &format!("[{sa}]"))
                .replace("client1@psk", "client2@psk")
                .replace("192.0.2.11", "192.0.2.12");
            format!("{stamp}{rest}\n")
        })
        .collect()
}

/// Ten failures of client2 within 30 s, then its success: `stamp(i)` gives the time of the
/// i-th login (0..=10).
fn attack(stamp: impl Fn(u32) -> String) -> String {
    let wrong = fixture("psk-wrong.log");
    let ok = fixture("psk-ok.log");
    let mut log = String::new();
    for i in 0..10 {
        log.push_str(&login(&wrong, 2, 100 + i, &stamp(i)));
    }
    log.push_str(&login(&ok, 1, 200, &stamp(10)));
    log
}

fn run_ok(args: &[&str]) -> String {
    let output = support::run(args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn ingest_finds_the_brute_force_and_the_cli_shows_it() {
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("attack.log");
    std::fs::write(&log, attack(|i| format!("Nov 25 09:33:{:02}", 14 + i * 3))).unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    let out = run_ok(&[
        "ingest",
        "--data",
        data_arg,
        "--year",
        "2025",
        &format!("charon:{}", log.display()),
    ]);
    assert!(out.contains("alerts: 2 fired"), "{out}");
    assert!(out.contains("auth-failure-spike-user"), "{out}");
    assert!(out.contains("brute-force-then-success"), "{out}");
    // The quiet samples fire nothing.
    let quiet = run_ok(&[
        "ingest",
        "--data",
        work.path().join("quiet").to_str().unwrap(),
        "--year",
        "2025",
        &format!(
            "charon:{}",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../gateway/testdata/charon/psk-ok.log")
                .display()
        ),
    ]);
    assert!(quiet.contains("alerts: none fired"), "{quiet}");
    // Importing the same file again stores nothing new and fires nothing.
    let again = run_ok(&[
        "ingest",
        "--data",
        data_arg,
        "--year",
        "2025",
        &format!("charon:{}", log.display()),
    ]);
    assert!(again.contains("alerts: none fired"), "{again}");

    let list = run_ok(&["alerts", "list", "--data", data_arg]);
    assert_eq!(list.lines().count(), 3, "{list}");
    // The history ended: each alert resolved as of its last event (none is left open for a
    // server to resolve and page later).
    assert!(
        list.contains("resolved") && !list.contains("firing"),
        "{list}"
    );
    let open = run_ok(&["alerts", "list", "--data", data_arg, "--status", "open"]);
    assert_eq!(open.lines().count(), 1, "{open}");
    let json = run_ok(&["alerts", "list", "--data", data_arg, "--format", "json"]);
    let alerts: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let spike = alerts
        .iter()
        .find(|alert| alert["rule_id"] == "auth-failure-spike-user")
        .unwrap();
    assert_eq!(spike["user"], "client2@psk.vpn.test");
    assert_eq!(spike["source_ip"], "192.0.2.12");
    assert_eq!(spike["count"], 10);
    assert_eq!(spike["severity"], "high");
    let show = run_ok(&[
        "alerts",
        "show",
        spike["alert_id"].as_str().unwrap(),
        "--data",
        data_arg,
    ]);
    assert!(show.contains("T1110"), "{show}");
    assert!(show.contains("#1 fired by tunnelwatch"), "{show}");
    assert!(show.contains("auto_resolved by tunnelwatch"), "{show}");
    // The alerts table answers SQL like every other.
    let rows = support::sql_rows(
        &data,
        "SELECT rule_id, vpn_alert_status FROM alerts ORDER BY rule_id",
    );
    assert!(
        rows.iter()
            .any(|row| row.contains("brute-force-then-success")),
        "{rows:?}"
    );
    let missing = support::run(&["alerts", "show", "al-nope", "--data", data_arg]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no alert"));
}

/// The attack with timestamps from a minute ago to now (so that the server's wall clock keeps
/// its alerts open), parsed by `tunnelwatch parse` and made gateway gw1's.
fn live_attack(dir: &Path) -> Vec<serde_json::Value> {
    let start = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    let log = dir.join("attack.log");
    std::fs::write(
        &log,
        attack(|i| {
            let at = start + jiff::SignedDuration::from_secs(i64::from(i) * 3);
            at.strftime("%b %e %H:%M:%S").to_string()
        }),
    )
    .unwrap();
    let parsed = run_ok(&[
        "parse",
        "--format",
        "charon",
        "--hostname",
        "gw1",
        log.to_str().unwrap(),
    ]);
    // As gateway gw1's agent would send them: from its own source.
    let events: Vec<serde_json::Value> = parsed
        .lines()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
            event["id"]["source"] = "gw1/charon@1".into();
            event
        })
        .collect();
    assert!(events.len() >= 11, "{parsed}");
    events
}

struct Api {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    base: String,
}

impl Api {
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.runtime.block_on(async {
            let mut request = self
                .client
                .request(method, format!("{}{path}", self.base))
                .header("authorization", format!("Bearer {token}"));
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        })
    }

    fn get(&self, path: &str, token: &str) -> serde_json::Value {
        let (status, body) = self.call(reqwest::Method::GET, path, token, None);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

fn open_alerts(api: &Api, token: &str) -> Vec<serde_json::Value> {
    api.get("/api/v1/alerts?status=open", token)["alerts"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_live_server_alerts_once_and_analysts_work_the_alerts() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let token = |name: &str, role: &str| {
        run_ok(&["token", "create", name, "--role", role, "--data", data_arg])
            .trim()
            .to_owned()
    };
    let analyst = token("oncall", "analyst");
    let viewer = token("wall", "viewer");
    let gateway = run_ok(&["token", "create", "gw1", "--gateway", "--data", data_arg])
        .trim()
        .to_owned();
    let events = live_attack(dir);
    let port = free_port();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{data_arg}\"\nflush_interval_secs = 1\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let server = start_server(&config, port, &dir.join("server-1.log"));
    let api = Api {
        client: support::http_client(None),
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let batch = serde_json::json!({"gateway": "gw1", "events": events});
    let (status, ack) = api.call(
        reqwest::Method::POST,
        "/api/v1/ingest",
        &gateway,
        Some(batch.clone()),
    );
    assert_eq!(status, 200, "{ack}");
    let alerts = wait_for("two open alerts", Duration::from_secs(20), || {
        let alerts = open_alerts(&api, &viewer);
        (alerts.len() == 2).then_some(alerts)
    });
    // The gateway resends the batch (its acknowledgement was lost): nothing counts twice.
    let (status, ack) = api.call(
        reqwest::Method::POST,
        "/api/v1/ingest",
        &gateway,
        Some(batch),
    );
    assert_eq!(status, 200);
    assert_eq!(ack["accepted"], 0, "{ack}");
    std::thread::sleep(Duration::from_secs(2));
    let spike = alerts
        .iter()
        .find(|alert| alert["rule_id"] == "auth-failure-spike-user")
        .unwrap()
        .clone();
    let id = spike["alert_id"].as_str().unwrap().to_owned();
    let now = open_alerts(&api, &viewer);
    let spike_now = now
        .iter()
        .find(|alert| alert["alert_id"] == id.as_str())
        .unwrap();
    assert_eq!(spike_now["count"], 10, "{spike_now}");

    // Its evidence: the stored failures, each with its raw line.
    let shown = api.get(&format!("/api/v1/alerts/{id}"), &viewer);
    let evidence = shown["evidence"].as_array().unwrap();
    assert_eq!(evidence.len(), 10, "{shown}");
    assert!(
        evidence
            .iter()
            .all(|event| event["event_action"] == "auth-failure")
    );
    assert!(
        evidence[0]["event_original"]
            .as_str()
            .unwrap()
            .contains("MAC mismatched")
    );
    let rules = api.get("/api/v1/rules", &viewer);
    assert!(rules["rules"].as_array().unwrap().len() >= 14, "{rules}");

    // A viewer may look, not act; an analyst acknowledges, assigns and resolves.
    let (status, _) = api.call(
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/ack"),
        &viewer,
        None,
    );
    assert_eq!(status, 403);
    let (status, acked) = api.call(
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/ack"),
        &analyst,
        Some(serde_json::json!({"comment": "looking\r\nBcc: x"})),
    );
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    assert_eq!(acked["actor"], "token:oncall");
    let (status, again) = api.call(
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/ack"),
        &analyst,
        None,
    );
    assert_eq!(status, 400, "{again}");
    let (status, assigned) = api.call(
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/assign"),
        &analyst,
        Some(serde_json::json!({"assignee": "alice"})),
    );
    assert_eq!(status, 200, "{assigned}");
    assert_eq!(assigned["assignee"], "alice");
    let (status, bad) = api.call(
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/assign"),
        &analyst,
        Some(serde_json::json!({"assignee": "x", "sneaky": 1})),
    );
    assert!(status == 400 || status == 422, "{status} {bad}");
    let (status, _) = api.call(
        reqwest::Method::POST,
        "/api/v1/alerts/al-nope/resolve",
        &analyst,
        None,
    );
    assert_eq!(status, 404);
    let audit = api.get("/api/v1/audit?action=alert.ack", &analyst);
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["target"], id.as_str());

    // A restart: the open alerts come back from the store, and nothing fires again.
    server.stop();
    let _server = start_server(&config, port, &dir.join("server-2.log"));
    let after = open_alerts(&api, &viewer);
    assert_eq!(after.len(), 2, "{after:?}");
    let spike_after = after
        .iter()
        .find(|alert| alert["alert_id"] == id.as_str())
        .unwrap();
    assert_eq!(spike_after["status"], "acknowledged");
    assert_eq!(spike_after["assignee"], "alice");
    let (status, resolved) = api.call(
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/resolve"),
        &analyst,
        Some(serde_json::json!({"comment": "password reset"})),
    );
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(open_alerts(&api, &viewer).len(), 1);
    let all = api.get("/api/v1/alerts", &viewer);
    assert_eq!(all["total"], 2, "{all}");
    let history = api.get(&format!("/api/v1/alerts/{id}"), &viewer);
    let actions: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"fired"));
    assert!(actions.contains(&"acknowledged") && actions.contains(&"assigned"));
    assert_eq!(actions.last(), Some(&"resolved"));
}

/// Pages through a real SMTP server that is down when the alerts fire: they wait in the
/// outbox, survive a kill -9 of the server, and arrive once each when the relay is back.
#[test]
fn pages_wait_out_a_dead_smtp_server_and_a_killed_server_and_arrive_once() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let viewer = run_ok(&[
        "token", "create", "wall", "--role", "viewer", "--data", data_arg,
    ])
    .trim()
    .to_owned();
    let gateway = run_ok(&["token", "create", "gw1", "--gateway", "--data", data_arg])
        .trim()
        .to_owned();
    let events = live_attack(dir);
    let port = free_port();
    let smtp_port = free_port();
    let maildir = dir.join("mail");
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
data_dir = "{data_arg}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"

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
"#
        ),
    )
    .unwrap();
    let check = support::run(&["check-config", config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let server = start_server(&config, port, &dir.join("server-1.log"));
    let api = Api {
        client: support::http_client(None),
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let batch = serde_json::json!({"gateway": "gw1", "events": events});
    let (status, ack) = api.call(
        reqwest::Method::POST,
        "/api/v1/ingest",
        &gateway,
        Some(batch),
    );
    assert_eq!(status, 200, "{ack}");
    wait_for("two open alerts", Duration::from_secs(20), || {
        (open_alerts(&api, &viewer).len() == 2).then_some(())
    });
    // The relay is down: the pages wait, the failures are counted.
    let metrics = wait_for("a failed delivery", Duration::from_secs(20), || {
        let (status, _) = api.call(reqwest::Method::GET, "/metrics", &viewer, None);
        assert_eq!(status, 200);
        let text = api.runtime.block_on(async {
            api.client
                .get(format!("{}/metrics", api.base))
                .header("authorization", format!("Bearer {viewer}"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        text.lines()
            .any(|line| {
                line.starts_with("tunnelwatch_notifications_failed_total{receiver=\"oncall\"}")
                    && !line.ends_with(" 0")
            })
            .then_some(text)
    });
    assert!(
        metrics.contains("tunnelwatch_notifications_queued{receiver=\"oncall\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tunnelwatch_alerts_open{severity=\"critical\"} 1"),
        "{metrics}"
    );
    // kill -9 of the server with the pages in the outbox; the relay comes back; a new server.
    drop(server);
    let _smtp = Smtp::start(smtp_port, &maildir);
    let _server = start_server(&config, port, &dir.join("server-2.log"));
    let arrived = wait_for("two mails", Duration::from_secs(60), || {
        let mails = mails(&maildir);
        (mails.len() >= 2).then_some(mails)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(mails(&maildir).len(), 2, "each page once");
    let subjects: Vec<&str> = arrived
        .iter()
        .filter_map(|mail| mail.lines().find(|line| line.starts_with("Subject: ")))
        .collect();
    assert!(
        subjects
            .iter()
            .any(|subject| subject.contains("Failed logins of one user")),
        "{subjects:?}"
    );
    assert!(
        subjects
            .iter()
            .any(|subject| subject.contains("Failed logins, then a success")),
        "{subjects:?}"
    );
    let brute = arrived
        .iter()
        .find(|mail| mail.contains("Failed logins, then a success"))
        .unwrap();
    assert!(brute.contains("client2@psk.vpn.test"), "{brute}");
    assert!(
        brute.contains("https://tunnelwatch.example.org/#/alerts/al-"),
        "{brute}"
    );
    assert!(brute.contains("Message-ID: <"), "{brute}");
    // No page for what was already paged: the restarted server fired nothing again.
    assert_eq!(open_alerts(&api, &viewer).len(), 2);
}

/// `rules check` and `rules test` on the shipped rules, a rule of one's own, and bad input.
#[test]
fn rules_are_checked_and_tested_before_they_run() {
    let work = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerting/rules");
    let shipped = shipped.to_str().unwrap();
    let checked = run_ok(&["rules", "check", shipped]);
    assert!(checked.contains("14 rules are valid"), "{checked}");
    assert!(checked.contains("brute-force-then-success"), "{checked}");

    let log = work.path().join("attack.log");
    std::fs::write(&log, attack(|i| format!("Nov 25 09:33:{:02}", 14 + i * 3))).unwrap();
    let events = work.path().join("events.jsonl");
    let parsed = run_ok(&[
        "parse",
        "--format",
        "charon",
        "--year",
        "2025",
        log.to_str().unwrap(),
    ]);
    std::fs::write(&events, &parsed).unwrap();
    let tested = run_ok(&["rules", "test", shipped, events.to_str().unwrap()]);
    assert!(tested.contains("2 alerts would fire"), "{tested}");
    assert!(
        tested.contains("FIRE auth-failure-spike-user [high]"),
        "{tested}"
    );
    assert!(
        tested.contains("FIRE brute-force-then-success [critical]"),
        "{tested}"
    );

    // One rule of one's own: three failures from one address.
    let mine = work.path().join("mine.toml");
    std::fs::write(
        &mine,
        "id = \"three-from-one\"\nname = \"Three failures from one address\"\nkind = \"threshold\"\ngroup_by = [\"source.ip\"]\nfilter = { \"event.action\" = \"auth-failure\" }\nwindow = \"1m\"\nthreshold = 3\n",
    )
    .unwrap();
    let tested = run_ok(&[
        "rules",
        "test",
        mine.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert!(tested.contains("1 alerts would fire"), "{tested}");
    assert!(tested.contains("(192.0.2.12)"), "{tested}");

    // A bad rule, and events that are not events: refused, naming what and where.
    let bad = work.path().join("bad.toml");
    std::fs::write(
        &bad,
        "id = \"bad\"\nname = \"Bad\"\nkind = \"threshold\"\nfilter = { \"user.nmae\" = \"x\" }\nwindow = \"1m\"\nthreshold = 3\n",
    )
    .unwrap();
    let refused = support::run(&["rules", "check", bad.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("rule `bad`") && stderr.contains("user.nmae"),
        "{stderr}"
    );
    let garbage = work.path().join("garbage.jsonl");
    std::fs::write(
        &garbage,
        format!(
            "{}\n{{\"not\": \"an event\"}}\n",
            parsed.lines().next().unwrap()
        ),
    )
    .unwrap();
    let refused = support::run(&["rules", "test", shipped, garbage.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("line 2 is not an event"), "{stderr}");
}

const SIGMA_FAILURES: &str = r#"title: Failed VPN login
id: 6a1f3c1e-0000-4000-8000-000000000001
name: vpn_failed_login
status: test
logsource:
  product: strongswan
detection:
  selection:
    event.action: auth-failure
  condition: selection
level: low
---
title: Many failed VPN logins of one user
id: 6a1f3c1e-0000-4000-8000-000000000002
status: test
correlation:
  type: event_count
  rules:
    - vpn_failed_login
  group-by:
    - user.name
  timespan: 1m
  condition:
    gte: 5
level: high
tags:
  - attack.t1110
"#;

/// Sigma rules: imported into TOML rules (printed, or a rules_dir), checked and tested as
/// they are, loaded from a sigma_dir by check-config; what is not supported is named.
#[test]
fn sigma_rules_are_imported_checked_and_tested() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let sigma = dir.join("failures.yml");
    std::fs::write(&sigma, SIGMA_FAILURES).unwrap();
    let printed = run_ok(&["rules", "import-sigma", sigma.to_str().unwrap()]);
    assert!(
        printed.contains("id = \"6a1f3c1e-0000-4000-8000-000000000002\"")
            && printed.contains("kind = \"threshold\"")
            && printed.contains("threshold = 5")
            && printed.contains("T1110"),
        "{printed}"
    );
    // Into a rules directory: each rule a TOML file that `rules check` accepts.
    let rules_dir = dir.join("rules");
    let written = run_ok(&[
        "rules",
        "import-sigma",
        sigma.to_str().unwrap(),
        "--out",
        rules_dir.to_str().unwrap(),
    ]);
    assert!(
        written.contains("6a1f3c1e-0000-4000-8000-000000000002.toml"),
        "{written}"
    );
    let checked = run_ok(&["rules", "check", rules_dir.to_str().unwrap()]);
    assert!(checked.contains("1 rules are valid"), "{checked}");
    // Never over a file.
    let again = support::run(&[
        "rules",
        "import-sigma",
        sigma.to_str().unwrap(),
        "--out",
        rules_dir.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    // `rules test` takes the Sigma file as it is.
    let log = dir.join("attack.log");
    std::fs::write(&log, attack(|i| format!("Nov 25 09:33:{:02}", 14 + i * 3))).unwrap();
    let events = dir.join("events.jsonl");
    let parsed = run_ok(&[
        "parse",
        "--format",
        "charon",
        "--year",
        "2025",
        log.to_str().unwrap(),
    ]);
    std::fs::write(&events, &parsed).unwrap();
    let tested = run_ok(&[
        "rules",
        "test",
        sigma.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert!(
        tested.contains("FIRE 6a1f3c1e-0000-4000-8000-000000000002 [high]"),
        "{tested}"
    );
    assert!(tested.contains("1 alerts would fire"), "{tested}");
    // A feature tunnelwatch does not support is named, with the rule; the good file still
    // prints, and the command fails.
    let unsupported = dir.join("encoded.yml");
    std::fs::write(
        &unsupported,
        "title: Encoded\nid: enc-1\nlogsource:\n  product: strongswan\ndetection:\n  selection:\n    message|base64: secret\n  condition: selection\n",
    )
    .unwrap();
    let mixed = support::run(&[
        "rules",
        "import-sigma",
        sigma.to_str().unwrap(),
        unsupported.to_str().unwrap(),
    ]);
    assert!(!mixed.status.success());
    let stderr = String::from_utf8_lossy(&mixed.stderr);
    assert!(
        stderr.contains("enc-1") && stderr.contains("base64") && stderr.contains("encoded.yml"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&mixed.stdout).contains("threshold = 5"));
    // The server's configuration: sigma_dir is loaded and checked like the rest.
    let sigma_dir = dir.join("sigma");
    std::fs::create_dir(&sigma_dir).unwrap();
    std::fs::copy(&sigma, sigma_dir.join("failures.yml")).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = {:?}\n\n[alerting]\nsigma_dir = {:?}\n",
            dir.join("data"),
            sigma_dir
        ),
    )
    .unwrap();
    let check = support::run(&["check-config", config.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    std::fs::copy(&unsupported, sigma_dir.join("encoded.yml")).unwrap();
    let check = support::run(&["check-config", config.to_str().unwrap()]);
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("encoded.yml") && stderr.contains("base64"),
        "{stderr}"
    );
}

/// A responder silences one user's alerts: they still fire and are stored, and no mail goes
/// out; silencing needs the responder role, is in the audit trail, survives a restart, and
/// can be expired.
#[test]
fn a_silence_mutes_the_pages_of_what_it_matches() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let token = |name: &str, role: &str| {
        run_ok(&["token", "create", name, "--role", role, "--data", data_arg])
            .trim()
            .to_owned()
    };
    let responder = token("ir", "responder");
    let analyst = token("soc", "analyst");
    let viewer = token("wall", "viewer");
    let gateway = run_ok(&["token", "create", "gw1", "--gateway", "--data", data_arg])
        .trim()
        .to_owned();
    let events = live_attack(dir);
    let port = free_port();
    let smtp_port = free_port();
    let maildir = dir.join("mail");
    let _smtp = Smtp::start(smtp_port, &maildir);
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{data_arg}\"\nflush_interval_secs = 1\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\n\n[[alerting.receivers]]\nname = \"oncall\"\ntype = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\ntls = \"none\"\nfrom = \"alerts@example.org\"\nto = [\"oncall@example.org\"]\n"
        ),
    )
    .unwrap();
    let server = start_server(&config, port, &dir.join("server-1.log"));
    let api = Api {
        client: support::http_client(None),
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let ends = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    let silence = serde_json::json!({
        "matchers": [{"name": "user", "value": "client2@psk.vpn.test"}],
        "comment": "pen test of client2's account, ticket SEC-42",
        "ends": ends,
    });
    for (who, status) in [(&viewer, 403), (&analyst, 403)] {
        let (got, body) = api.call(
            reqwest::Method::POST,
            "/api/v1/silences",
            who,
            Some(silence.clone()),
        );
        assert_eq!(got, status, "{body}");
    }
    let (status, bad) = api.call(
        reqwest::Method::POST,
        "/api/v1/silences",
        &responder,
        Some(serde_json::json!({"matchers": [], "comment": "all", "ends": ends})),
    );
    assert_eq!(status, 400, "{bad}");
    let (status, created) = api.call(
        reqwest::Method::POST,
        "/api/v1/silences",
        &responder,
        Some(silence),
    );
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();

    let batch = serde_json::json!({"gateway": "gw1", "events": events});
    let (status, ack) = api.call(
        reqwest::Method::POST,
        "/api/v1/ingest",
        &gateway,
        Some(batch),
    );
    assert_eq!(status, 200, "{ack}");
    wait_for("two open alerts", Duration::from_secs(20), || {
        (open_alerts(&api, &viewer).len() == 2).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(mails(&maildir).is_empty(), "a silenced alert paged");
    let metrics = api.runtime.block_on(async {
        api.client
            .get(format!("{}/metrics", api.base))
            .header("authorization", format!("Bearer {viewer}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains("tunnelwatch_notifications_silenced_total 2"),
        "{metrics}"
    );

    // In the audit trail, kept across a restart, and expired by a responder.
    let audit = api.get("/api/v1/audit?action=silence.add", &analyst);
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");
    assert!(
        audit["entries"][0]["message"]
            .as_str()
            .unwrap()
            .contains("SEC-42")
    );
    server.stop();
    let _server = start_server(&config, port, &dir.join("server-2.log"));
    let listed = api.get("/api/v1/silences", &viewer);
    assert_eq!(listed["silences"][0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed["silences"][0]["state"], "active", "{listed}");
    let (status, _) = api.call(
        reqwest::Method::DELETE,
        &format!("/api/v1/silences/{id}"),
        &analyst,
        None,
    );
    assert_eq!(status, 403);
    let (status, expired) = api.call(
        reqwest::Method::DELETE,
        &format!("/api/v1/silences/{id}"),
        &responder,
        None,
    );
    assert_eq!(status, 200, "{expired}");
    assert_eq!(expired["expired_by"], "token:ir");
    let listed = api.get("/api/v1/silences", &viewer);
    assert_eq!(listed["silences"][0]["state"], "expired", "{listed}");
    let (status, _) = api.call(
        reqwest::Method::DELETE,
        "/api/v1/silences/si-nope",
        &responder,
        None,
    );
    assert_eq!(status, 404);

    // The same from the command line, through the running server (its user is trusted).
    let added = run_ok(&[
        "silence",
        "add",
        "--match",
        "rule=brute-force-then-success",
        "--comment",
        "known test account",
        "--for",
        "2h",
        "--data",
        data_arg,
    ]);
    let cli_id = added.split_whitespace().next().unwrap().to_owned();
    assert!(cli_id.starts_with("si-"), "{added}");
    let listed = run_ok(&["silence", "list", "--data", data_arg]);
    assert!(
        listed.contains(&cli_id) && listed.contains("active"),
        "{listed}"
    );
    assert!(run_ok(&["silence", "expire", &cli_id, "--data", data_arg]).contains("expired"));
    let bad = support::run(&[
        "silence",
        "add",
        "--match",
        "user",
        "--comment",
        "x",
        "--for",
        "1h",
        "--data",
        data_arg,
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NAME=VALUE"));
    let open = open_alerts(&api, &viewer);
    let id = open[0]["alert_id"].as_str().unwrap().to_owned();
    let acked = run_ok(&[
        "alerts",
        "ack",
        &id,
        "--comment",
        "on it",
        "--data",
        data_arg,
    ]);
    assert!(acked.contains("acknowledged"), "{acked}");
    let assigned = run_ok(&["alerts", "assign", &id, "--to", "dana", "--data", data_arg]);
    assert!(assigned.contains("assigned"), "{assigned}");
    let shown = api.get(&format!("/api/v1/alerts/{id}"), &viewer);
    assert_eq!(shown["alert"]["assignee"], "dana", "{shown}");
    let hostile = support::run(&[
        "alerts",
        "assign",
        &id,
        "--to",
        "x\u{1b}[31m",
        "--data",
        data_arg,
    ]);
    assert!(!hostile.status.success());
    assert!(run_ok(&["alerts", "resolve", &id, "--data", data_arg]).contains("resolved"));
    let audit = api.get("/api/v1/audit?action=alert.resolve", &analyst);
    assert_eq!(audit["entries"][0]["target"], id.as_str(), "{audit}");
    assert!(
        audit["entries"][0]["actor"]
            .as_str()
            .unwrap()
            .starts_with("cli:"),
        "{audit}"
    );
}

/// Without a server, alerts and silences cannot change: the command says so.
#[test]
fn alert_commands_need_a_running_server() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    run_ok(&[
        "token", "create", "x", "--role", "viewer", "--data", data_arg,
    ]);
    for args in [
        vec!["alerts", "ack", "al-1", "--data", data_arg],
        vec!["silence", "list", "--data", data_arg],
    ] {
        let output = support::run(&args);
        assert!(!output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("only through a running server"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Escalation and inhibition through a real server and a real SMTP server: the brute force,
/// acknowledged at once, never escalates; the spike nobody acknowledges pages the duty
/// manager after its step's wait, once; an inhibit rule mutes the pages of what an open
/// alert covers, and the muted alert is still stored.
#[test]
fn unacknowledged_alerts_escalate_and_covered_ones_are_inhibited() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let analyst = run_ok(&[
        "token", "create", "oncall", "--role", "analyst", "--data", data_arg,
    ])
    .trim()
    .to_owned();
    let gateway = run_ok(&["token", "create", "gw1", "--gateway", "--data", data_arg])
        .trim()
        .to_owned();
    let events = live_attack(dir);
    let port = free_port();
    let smtp_port = free_port();
    let maildir = dir.join("mail");
    let _smtp = Smtp::start(smtp_port, &maildir);
    let receiver = |name: &str, to: &str, escalation_only: bool| {
        format!(
            "[[alerting.receivers]]\nname = \"{name}\"\ntype = \"email\"\nmin_severity = \"high\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {smtp_port}\ntls = \"none\"\nfrom = \"tunnelwatch <alerts@example.org>\"\nto = [\"{to}\"]\ntimeout_secs = 5\ngroup_wait = \"0s\"\nescalation_only = {escalation_only}\n"
        )
    };
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
data_dir = "{data_arg}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"

[alerting]
console_url = "https://tunnelwatch.example.org"

[[alerting.escalations]]
after = "6s"
to = ["manager"]

# While the user's failure spike is open, the sequence of the same failures pages nobody.
[[alerting.inhibit]]
source = {{ rule = "auth-failure-spike-user" }}
target = {{ rule = "brute-force-then-success" }}
equal = ["user.name"]

{}
{}"#,
            receiver("oncall", "oncall@example.org", false),
            receiver("manager", "duty-manager@example.org", true),
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
    let api = Api {
        client: support::http_client(None),
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let batch = serde_json::json!({"gateway": "gw1", "events": events});
    let (status, ack) = api.call(
        reqwest::Method::POST,
        "/api/v1/ingest",
        &gateway,
        Some(batch),
    );
    assert_eq!(status, 200, "{ack}");
    let open = wait_for("two open alerts", Duration::from_secs(20), || {
        let open = open_alerts(&api, &analyst);
        (open.len() == 2).then_some(open)
    });
    // The brute force is acknowledged at once: it never escalates.
    let brute = open
        .iter()
        .find(|alert| alert["rule_id"] == "brute-force-then-success")
        .unwrap();
    let id = brute["alert_id"].as_str().unwrap();
    let (status, acked) = api.call(
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/ack"),
        &analyst,
        None,
    );
    assert_eq!(status, 200, "{acked}");
    // The spike pages on-call; the brute force is inhibited by it (stored, not paged).
    let first = wait_for("on-call's page", Duration::from_secs(20), || {
        let mails = mails(&maildir);
        (!mails.is_empty()).then_some(mails)
    });
    assert!(first[0].contains("To: oncall@example.org"), "{}", first[0]);
    assert!(
        first[0].contains("Failed logins of one user"),
        "{}",
        first[0]
    );
    // After its step's wait, the spike nobody acknowledged pages the duty manager, once.
    let escalated = wait_for("the escalation's page", Duration::from_secs(30), || {
        mails(&maildir)
            .into_iter()
            .find(|mail| mail.contains("To: duty-manager@example.org"))
    });
    assert!(
        escalated.contains("not acknowledged after 6s")
            && escalated.contains("Failed logins of one user"),
        "{escalated}"
    );
    std::thread::sleep(Duration::from_secs(8));
    let all = mails(&maildir);
    assert_eq!(all.len(), 2, "{all:#?}");
    assert!(
        all.iter()
            .all(|mail| !mail.contains("Failed logins, then a success"))
    );
    let metrics = api.runtime.block_on(async {
        api.client
            .get(format!("{}/metrics", api.base))
            .header("authorization", format!("Bearer {analyst}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains("tunnelwatch_notifications_inhibited_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tunnelwatch_alerting_escalations_total 1"),
        "{metrics}"
    );
    // The escalation is in the spike's history.
    let spike = open
        .iter()
        .find(|alert| alert["rule_id"] == "auth-failure-spike-user")
        .unwrap();
    let shown = api.get(
        &format!("/api/v1/alerts/{}", spike["alert_id"].as_str().unwrap()),
        &analyst,
    );
    let actions: Vec<&str> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"escalated"), "{actions:?}");
}

/// Rules follow their files while the server runs: a new rule is in force within seconds,
/// an invalid file is refused (the previous rules stay, the health report says why), and
/// fixing it clears the report.
#[test]
fn rules_reload_while_the_server_runs_and_bad_ones_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let viewer = run_ok(&[
        "token", "create", "wall", "--role", "viewer", "--data", data_arg,
    ])
    .trim()
    .to_owned();
    let rules_dir = dir.join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    let rule = |id: &str, threshold: &str| {
        format!(
            "id = \"{id}\"\nname = \"Rule {id}\"\nkind = \"threshold\"\nfilter = {{ \"event.action\" = \"auth-failure\" }}\nwindow = \"1m\"\nthreshold = {threshold}\n"
        )
    };
    std::fs::write(rules_dir.join("first.toml"), rule("first", "3")).unwrap();
    let port = free_port();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{data_arg}\"\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\n\n[alerting]\ndefault_rules = false\nrules_dir = {:?}\n",
            rules_dir
        ),
    )
    .unwrap();
    let _server = start_server(&config, port, &dir.join("server.log"));
    let api = Api {
        client: support::http_client(None),
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let ids = |api: &Api| -> Vec<String> {
        api.get("/api/v1/rules", &viewer)["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rule| rule["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&api), ["first"]);
    std::fs::write(rules_dir.join("second.toml"), rule("second", "5")).unwrap();
    wait_for("the new rule", Duration::from_secs(20), || {
        (ids(&api) == ["first", "second"]).then_some(())
    });
    // An invalid file: refused, the rules in force stay, the health report says why.
    std::fs::write(rules_dir.join("third.toml"), rule("third", "0")).unwrap();
    let health = wait_for(
        "the refusal in the health report",
        Duration::from_secs(20),
        || {
            let health = api.get("/api/v1/health", &viewer);
            health["alerting"]["rules_reload_error"]
                .as_str()
                .is_some()
                .then_some(health)
        },
    );
    assert_eq!(health["status"], "degraded", "{health:#}");
    let error = health["alerting"]["rules_reload_error"].as_str().unwrap();
    assert!(
        error.contains("third.toml") && error.contains("at least 1"),
        "{error}"
    );
    assert!(
        health["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|problem| problem
                .as_str()
                .unwrap()
                .contains("previous ones stay in force")),
        "{health:#}"
    );
    assert_eq!(ids(&api), ["first", "second"]);
    // Fixed: in force, and the report is clear.
    std::fs::write(rules_dir.join("third.toml"), rule("third", "7")).unwrap();
    wait_for("the fixed rule", Duration::from_secs(20), || {
        (ids(&api) == ["first", "second", "third"]).then_some(())
    });
    let health = api.get("/api/v1/health", &viewer);
    assert!(
        health["alerting"]["rules_reload_error"].is_null(),
        "{health:#}"
    );
    assert_eq!(health["alerting"]["rules"], 3);
}

/// A detection written in SQL: run by the server every interval over its window, each row an
/// alert of its group; a statement that fails is counted and reported, never fatal; one that
/// would write is refused at load.
#[test]
fn query_rules_run_sql_over_the_store_and_their_rows_alert() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let viewer = run_ok(&[
        "token", "create", "wall", "--role", "viewer", "--data", data_arg,
    ])
    .trim()
    .to_owned();
    let gateway = run_ok(&["token", "create", "gw1", "--gateway", "--data", data_arg])
        .trim()
        .to_owned();
    let events = live_attack(dir);
    let port = free_port();
    let rules = r#"
[[alerting.rules]]
id = "sql-failures"
name = "Failures found by SQL"
kind = "query"
severity = "high"
interval = "10s"
window = "1h"
group_by = ["user.name"]
sql = """
SELECT user_name, count(*) AS count FROM auth_events
WHERE timestamp >= $from AND timestamp < $to AND event_outcome = 'failure'
GROUP BY user_name HAVING count(*) >= 5
"""

[[alerting.rules]]
id = "sql-broken"
name = "A table that is not there"
kind = "query"
interval = "10s"
sql = "SELECT user_name FROM no_such_table WHERE timestamp >= $from"
"#;
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{data_arg}\"\nflush_interval_secs = 1\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\n\n[alerting]\ndefault_rules = false\n{rules}"
        ),
    )
    .unwrap();
    let checked = support::run(&["check-config", config.to_str().unwrap()]);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // A statement that writes is refused before anything runs.
    let writing = dir.join("writing.toml");
    std::fs::write(
        &writing,
        format!(
            "[store]\ndata_dir = \"{data_arg}\"\n\n[alerting]\n{}",
            rules.replace(
                "SELECT user_name FROM no_such_table WHERE timestamp >= $from",
                "DELETE FROM events WHERE timestamp >= $from",
            )
        ),
    )
    .unwrap();
    let refused = support::run(&["check-config", writing.to_str().unwrap()]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("rule `sql-broken`") && stderr.contains("SELECT"),
        "{stderr}"
    );

    let _server = start_server(&config, port, &dir.join("server.log"));
    let api = Api {
        client: support::http_client(None),
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let batch = serde_json::json!({"gateway": "gw1", "events": events});
    let (status, ack) = api.call(
        reqwest::Method::POST,
        "/api/v1/ingest",
        &gateway,
        Some(batch),
    );
    assert_eq!(status, 200, "{ack}");
    let alert = wait_for("the SQL rule's alert", Duration::from_secs(40), || {
        open_alerts(&api, &viewer)
            .into_iter()
            .find(|alert| alert["rule_id"] == "sql-failures")
    });
    assert_eq!(alert["user"], "client2@psk.vpn.test", "{alert:#}");
    assert!(alert["count"].as_u64().unwrap() >= 5, "{alert:#}");
    assert_eq!(open_alerts(&api, &viewer).len(), 1);
    let health = api.get("/api/v1/health", &viewer);
    let error = health["alerting"]["query_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("sql-broken") && error.contains("no_such_table"),
        "{health:#}"
    );
    assert!(
        health["alerting"]["query_runs"].as_u64().unwrap() >= 2,
        "{health:#}"
    );
}

/// `ingest --config --notify`: the server's own rules over old logs, and their pages through
/// a real SMTP server; without --notify nobody is paged; --notify without receivers is refused.
#[test]
fn ingest_runs_the_servers_rules_and_pages_only_when_asked() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let log = dir.join("attack.log");
    std::fs::write(&log, attack(|i| format!("Nov 25 09:33:{:02}", 14 + i * 3))).unwrap();
    let input = format!("charon:{}", log.display());
    let smtp_port = free_port();
    let maildir = dir.join("mail");
    let _smtp = Smtp::start(smtp_port, &maildir);
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[alerting]
default_rules = false

[[alerting.rules]]
id = "three-failures"
name = "Three failures of one user"
kind = "threshold"
severity = "high"
group_by = ["user.name"]
filter = {{ "event.action" = "auth-failure" }}
window = "1m"
threshold = 3

[[alerting.receivers]]
name = "oncall"
type = "email"
min_severity = "high"
send_resolved = false
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
tls = "none"
from = "tunnelwatch <alerts@example.org>"
to = ["oncall@example.org"]
group_wait = "0s"
"#
        ),
    )
    .unwrap();
    let quiet = run_ok(&[
        "ingest",
        "--data",
        dir.join("a").to_str().unwrap(),
        "--year",
        "2025",
        "--config",
        config.to_str().unwrap(),
        &input,
    ]);
    assert!(
        quiet.contains("alerts: 1 fired") && quiet.contains("three-failures"),
        "{quiet}"
    );
    assert!(!quiet.contains("brute-force"), "{quiet}");
    assert!(mails(&maildir).is_empty());
    let paged = run_ok(&[
        "ingest",
        "--data",
        dir.join("b").to_str().unwrap(),
        "--year",
        "2025",
        "--config",
        config.to_str().unwrap(),
        "--notify",
        &input,
    ]);
    assert!(paged.contains("three-failures"), "{paged}");
    // ingest waits for its pages before it returns.
    let mails = mails(&maildir);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(
        mails[0].contains("Three failures of one user"),
        "{}",
        mails[0]
    );
    let refused = support::run(&[
        "ingest",
        "--data",
        dir.join("c").to_str().unwrap(),
        "--notify",
        &input,
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--notify needs --config"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// strongSwan's `pki` (installed by scripts/test.sh through the testbed) makes a certificate
/// that ends in 10 days and one that ends in 400; the agent's certificates source reads the
/// directory and the shipped cert-expiry rule alerts for the first only.
#[test]
fn a_certificate_near_its_end_on_a_gateway_alerts() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let certs = dir.join("x509");
    std::fs::create_dir(&certs).unwrap();
    let pki = |args: &[&str], out: &Path| {
        let output = std::process::Command::new("pki")
            .args(args)
            .output()
            .unwrap_or_else(|error| {
                panic!("cannot run strongSwan's pki ({error}): scripts/test.sh installs it (strongswan-pki)")
            });
        assert!(
            output.status.success(),
            "pki {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(out, output.stdout).unwrap();
    };
    let key = dir.join("key.pem");
    pki(
        &[
            "--gen",
            "--type",
            "ecdsa",
            "--size",
            "256",
            "--outform",
            "pem",
        ],
        &key,
    );
    let key_arg = key.to_str().unwrap();
    for (name, days) in [("soon", "10"), ("later", "400")] {
        pki(
            &[
                "--self",
                "--in",
                key_arg,
                "--type",
                "ecdsa",
                "--dn",
                &format!("CN={name}.vpn.test"),
                "--lifetime",
                days,
                "--outform",
                "pem",
            ],
            &certs.join(format!("{name}.pem")),
        );
    }
    let port = free_port();
    let token = dir.join("ingest.token");
    std::fs::write(&token, "cert-token\n").unwrap();
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[gateway]
name = "gw-certs"
server_url = "http://127.0.0.1:{port}"
token_file = "{token}"
state_dir = "{state}"
batch_max_wait_ms = 100

[[gateway.sources]]
type = "certificates"
dir = "{certs}"
every_secs = 60

[store]
data_dir = "{data}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"
anonymous_role = "analyst"
ingest_token_file = "{token}"
"#,
            token = token.display(),
            state = dir.join("gateway-state").display(),
            certs = certs.display(),
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
    let _gateway = support::Daemon::spawn(
        "gateway",
        &["gateway", "--config", config.to_str().unwrap()],
        &dir.join("gateway.log"),
    );
    let alert = wait_for("the expiry alert", Duration::from_secs(30), || {
        let body = support::get_json(&format!(
            "http://127.0.0.1:{port}/api/v1/alerts?rule=cert-expiry"
        ))?;
        body["alerts"].as_array()?.first().cloned()
    });
    let reason = alert["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("CN=soon.vpn.test")
            && (reason.contains("expires in 9 days") || reason.contains("expires in 10 days")),
        "{alert:#}"
    );
    assert!(reason.contains("soon.pem"), "{alert:#}");
    std::thread::sleep(Duration::from_secs(2));
    let all = support::get_json(&format!(
        "http://127.0.0.1:{port}/api/v1/alerts?rule=cert-expiry"
    ))
    .unwrap();
    assert_eq!(all["alerts"].as_array().unwrap().len(), 1, "{all:#}");
    // The certificate is in the store as an event, with its expiry.
    let stored = support::sql_csv(
        &dir.join("data"),
        "select vpn_cert_subject, event_action from events where event_dataset = 'tunnelwatch.certificates' order by vpn_cert_subject",
    );
    assert_eq!(
        stored,
        "vpn_cert_subject,event_action\nCN=later.vpn.test,certificate-seen\nCN=soon.vpn.test,certificate-seen\n"
    );
}

/// `repeat_interval`: a firing alert nobody acknowledges is paged again every interval; one
/// acknowledged is not.
#[test]
fn unacknowledged_alerts_are_paged_again_every_repeat_interval() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();
    let analyst = run_ok(&[
        "token", "create", "oncall", "--role", "analyst", "--data", data_arg,
    ])
    .trim()
    .to_owned();
    let gateway = run_ok(&["token", "create", "gw1", "--gateway", "--data", data_arg])
        .trim()
        .to_owned();
    let events = live_attack(dir);
    let port = free_port();
    let smtp_port = free_port();
    let maildir = dir.join("mail");
    let _smtp = Smtp::start(smtp_port, &maildir);
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[store]
data_dir = "{data_arg}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"

[[alerting.receivers]]
name = "oncall"
type = "email"
min_severity = "high"
smtp_host = "127.0.0.1"
smtp_port = {smtp_port}
tls = "none"
from = "tunnelwatch <alerts@example.org>"
to = ["oncall@example.org"]
group_wait = "0s"
group_interval = "0s"
repeat_interval = "10s"
"#
        ),
    )
    .unwrap();
    let _server = start_server(&config, port, &dir.join("server.log"));
    let api = Api {
        client: support::http_client(None),
        runtime: tokio::runtime::Runtime::new().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let batch = serde_json::json!({"gateway": "gw1", "events": events});
    let (status, ack) = api.call(
        reqwest::Method::POST,
        "/api/v1/ingest",
        &gateway,
        Some(batch),
    );
    assert_eq!(status, 200, "{ack}");
    let open = wait_for("two open alerts", Duration::from_secs(20), || {
        let open = open_alerts(&api, &analyst);
        (open.len() == 2).then_some(open)
    });
    let brute = open
        .iter()
        .find(|alert| alert["rule_id"] == "brute-force-then-success")
        .unwrap();
    let id = brute["alert_id"].as_str().unwrap();
    let (status, acked) = api.call(
        reqwest::Method::POST,
        &format!("/api/v1/alerts/{id}/ack"),
        &analyst,
        None,
    );
    assert_eq!(status, 200, "{acked}");
    let repeated = wait_for("a repeated page", Duration::from_secs(30), || {
        mails(&maildir)
            .into_iter()
            .find(|mail| mail.contains("still firing, not acknowledged after"))
    });
    assert!(repeated.contains("Failed logins of one user"), "{repeated}");
    std::thread::sleep(Duration::from_secs(3));
    let all = mails(&maildir);
    assert!(
        all.iter()
            .filter(|mail| mail.contains("still firing"))
            .all(|mail| !mail.contains("Failed logins, then a success")),
        "the acknowledged alert was repeated: {all:#?}"
    );
}
