//! "Who called which API", against real software: a strongSwan gateway with userspace ESP
//! and two clients in network namespaces, nginx as the API behind the gateway, tcpdump on
//! the gateway's decrypted side (kernel-libipsec's TUN `ipsec0`, bare IP frames). The pool
//! holds one address, so bob gets the virtual IP alice released. Then the gateway's charon
//! log, the capture and nginx's JSON access log go through `tunnelwatch ingest`, and every
//! API call and flow must be joined to exactly the session of the user who made it, both
//! when the sessions come first, when they come last (late joins), and when they come in a
//! later process (the join reads the unmatched rows back from the store). Live, the real gateway
//! captures on `ipsec0` and ships to the real server, and headless Chromium (in the gateway's
//! namespace) renders each user's session page: their own calls and flows, no one else's.
//!
//! Needs root (network namespaces) and Debian's strongSwan, nginx, tcpdump and chromium
//! packages; the
//! testbed installs missing packages and fails with a clear message when it cannot.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use testbed::{Client, Credential, Options, Testbed};

/// tcpdump on the gateway's `ipsec0`, stopped (and its pid reaped) when dropped.
struct Capture(std::process::Child);

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ingest(data: &Path, inputs: &[String]) {
    let mut args = vec!["ingest", "--data", data.to_str().unwrap()];
    args.extend(inputs.iter().map(String::as_str));
    let output = support::run(&args);
    assert!(
        output.status.success(),
        "ingest failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A testbed whose pool holds one address, with nginx as the API.
fn one_address_pool_with_nginx() -> Testbed {
    Testbed::up(Options {
        pool: Some("10.99.0.1-10.99.0.1".to_owned()),
        nginx: true,
        ..Options::default()
    })
    .unwrap_or_else(|error| panic!("the strongSwan testbed did not come up: {error}"))
}

/// alice logs in, makes two calls and leaves; a second later bob gets her address and makes
/// one call.
fn alice_then_bob_call_the_api(testbed: &Testbed) {
    assert!(
        testbed
            .connect(Client::Client1, "rw-eap", Credential::Correct)
            .unwrap()
    );
    testbed
        .curl_path(Client::Client1, "/v1/orders?user=alice")
        .unwrap();
    testbed.curl_path(Client::Client1, "/v1/orders/17").unwrap();
    testbed.disconnect(Client::Client1).unwrap();
    // The next second: the sessions' edges are a second apart in charon's log.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(
        testbed
            .connect(Client::Client2, "rw-eap", Credential::Correct)
            .unwrap()
    );
    testbed.curl_path(Client::Client2, "/v1/invoices").unwrap();
    testbed.disconnect(Client::Client2).unwrap();
}

#[test]
fn api_calls_and_flows_join_the_session_of_the_user_who_held_the_virtual_ip() {
    let testbed = one_address_pool_with_nginx();
    let work = tempfile::tempdir().unwrap();
    let pcap = work.path().join("ipsec0.pcap");
    let mut tcpdump = testbed.gateway_command(Path::new("/usr/bin/tcpdump"));
    tcpdump
        .args(["-i", "ipsec0", "-U", "-w"])
        .arg(&pcap)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let capture = Capture(
        tcpdump
            .spawn()
            .expect("tcpdump runs in the gateway namespace"),
    );
    support::wait_for(
        "tcpdump to write its file header",
        Duration::from_secs(10),
        || std::fs::metadata(&pcap).ok().filter(|m| m.len() >= 24),
    );

    alice_then_bob_call_the_api(&testbed);
    std::thread::sleep(Duration::from_millis(500));
    drop(capture);

    let charon = format!("charon:{}", testbed.gateway_log().display());
    let flows = format!("pcap:{}", pcap.display());
    let api = format!("nginx-json:{}", testbed.api_access_json().display());
    let log = std::fs::read_to_string(testbed.gateway_log()).unwrap();
    assert_eq!(
        log.matches("assigning virtual IP 10.99.0.1").count(),
        2,
        "both clients got the one pool address:\n{log}"
    );

    // Sessions first (the usual order), and sessions last (late joins).
    let in_order = work.path().join("in-order");
    ingest(&in_order, &[charon.clone(), flows.clone(), api.clone()]);
    let late = work.path().join("late");
    ingest(&late, &[api.clone(), flows.clone(), charon.clone()]);
    // The sessions come in another process, after a restart: the join takes the stored
    // unmatched calls and flows back from the store.
    let restarted = work.path().join("restarted");
    ingest(&restarted, &[api, flows]);
    ingest(&restarted, &[charon]);

    for data in [&in_order, &late, &restarted] {
        let calls = support::sql_rows(
            data,
            "SELECT a.url_path, a.user_name, s.user_name, a.source_ip \
             FROM api_requests a LEFT JOIN sessions s ON a.session_id = s.session_id \
             ORDER BY a.timestamp, a.url_path",
        );
        assert_eq!(
            calls,
            [
                "/v1/orders,alice,alice,10.99.0.1",
                "/v1/orders/17,alice,alice,10.99.0.1",
                "/v1/invoices,bob,bob,10.99.0.1",
            ],
            "{}",
            data.display()
        );
        let flows_by_user = support::sql_rows(
            data,
            "SELECT f.user_name, count(*), count(DISTINCT f.session_id) \
             FROM flows f JOIN sessions s ON f.session_id = s.session_id AND f.user_name = s.user_name \
             WHERE f.destination_port = 8080 GROUP BY f.user_name ORDER BY f.user_name",
        );
        let dump = || {
            let sessions = support::sql_rows(
                data,
                "SELECT session_id, user_name, vpn_virtual_ip, event_start, event_end FROM sessions ORDER BY event_start",
            );
            let flows = support::sql_rows(
                data,
                "SELECT event_start, event_end, source_ip, source_port, destination_port, session_id, user_name, vpn_session_join FROM flows ORDER BY event_start",
            );
            let corrections = support::sql_rows(data, "SELECT * FROM session_joins");
            format!(
                "{}\nsessions:\n{}\nflows:\n{}\ncorrections:\n{}",
                data.display(),
                sessions.join("\n"),
                flows.join("\n"),
                corrections.join("\n")
            )
        };
        assert_eq!(flows_by_user, ["alice,2,1", "bob,1,1"], "{}", dump());
        let unjoined = support::sql_rows(
            data,
            "SELECT count(*) FROM flows WHERE destination_port = 8080 AND session_id IS NULL",
        );
        assert_eq!(unjoined, ["0"], "{}", data.display());
    }
    let joins = support::sql_rows(
        &late,
        "SELECT vpn_session_join, count(*) FROM api_requests GROUP BY vpn_session_join",
    );
    assert_eq!(joins, ["late,3"]);
    let joins = support::sql_rows(
        &restarted,
        "SELECT vpn_session_join, count(*) FROM api_requests GROUP BY vpn_session_join",
    );
    assert_eq!(joins, ["late,3"]);
    let joins = support::sql_rows(
        &in_order,
        "SELECT vpn_session_join, count(*) FROM api_requests GROUP BY vpn_session_join",
    );
    assert_eq!(joins, ["matched,3"]);
    testbed.down().unwrap();
}

/// The same story live: the real `tunnelwatch gateway` in the gateway's namespace tails the
/// charon log and nginx's JSON log and captures flows on `ipsec0` itself (the decrypted side
/// of kernel-libipsec), shipping to the real server; the flows and calls of each user come out
/// joined to that user's session.
#[test]
fn the_live_capture_on_ipsec0_joins_each_users_flows_to_their_session() {
    let testbed = one_address_pool_with_nginx();
    let work = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let config = format!(
        r#"
[gateway]
name = "gw-live"
server_url = "http://127.0.0.1:{port}"
state_dir = "{state}"
poll_interval_ms = 100
batch_max_wait_ms = 100

[[gateway.sources]]
type = "file"
format = "charon"
path = "{charon}"

[[gateway.sources]]
type = "file"
format = "nginx-json"
path = "{api}"
name = "api"

[[gateway.sources]]
type = "capture"
interface = "ipsec0"
vpn_pool = ["10.99.0.0/24"]
api_subnets = ["198.51.100.0/24"]
idle_timeout_secs = 2
active_timeout_secs = 30

[store]
data_dir = "{data}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"
# This test is about its own subject: anonymous callers read as analysts (access is tested in access_e2e.rs).
anonymous_role = "analyst"
allow_unauthenticated_ingest = true
"#,
        state = work.path().join("gateway-state").display(),
        charon = testbed.gateway_log().display(),
        api = testbed.api_access_json().display(),
        data = work.path().join("data").display(),
    );
    let config_path = work.path().join("config.toml");
    std::fs::write(&config_path, config).unwrap();
    let config_arg = config_path.to_str().unwrap();
    let binary = Path::new(support::binary());
    let mut server = testbed.gateway_command(binary);
    server.args(["server", "--config", config_arg]);
    let server = support::Daemon::spawn_command("server", server, &work.path().join("server.log"));
    let mut gateway = testbed.gateway_command(binary);
    gateway.args(["gateway", "--config", config_arg]);
    let gateway =
        support::Daemon::spawn_command("gateway", gateway, &work.path().join("gateway.log"));
    support::wait_for(
        "the gateway to capture on ipsec0",
        Duration::from_secs(20),
        || {
            std::fs::read_to_string(work.path().join("gateway.log"))
                .ok()
                .filter(|log| log.contains("capturing flows"))
        },
    );

    alice_then_bob_call_the_api(&testbed);

    let data = work.path().join("data");
    let flows = "SELECT f.user_name, count(*), count(DISTINCT f.session_id), min(f.destination_bytes) > 0 \
                 FROM flows f JOIN sessions s ON f.session_id = s.session_id AND f.user_name = s.user_name \
                 WHERE f.destination_port = 8080 GROUP BY f.user_name ORDER BY f.user_name";
    let calls = "SELECT a.url_path, a.user_name, s.user_name FROM api_requests a \
                 LEFT JOIN sessions s ON a.session_id = s.session_id ORDER BY a.timestamp, a.url_path";
    let mut last = (Vec::new(), Vec::new());
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    while std::time::Instant::now() < deadline {
        last = (
            support::sql_rows(&data, flows),
            support::sql_rows(&data, calls),
        );
        if last.0 == ["alice,2,1,true", "bob,1,1,true"] && last.1.len() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        last.0,
        ["alice,2,1,true", "bob,1,1,true"],
        "flows captured live on ipsec0\ngateway log:\n{}",
        std::fs::read_to_string(work.path().join("gateway.log")).unwrap_or_default()
    );
    assert_eq!(
        last.1,
        [
            "/v1/orders,alice,alice",
            "/v1/orders/17,alice,alice",
            "/v1/invoices,bob,bob",
        ]
    );

    // The console's session page, in a real browser, shows each user's own calls and flows.
    let session_of = |user: &str| {
        let ids = support::sql_rows(
            &data,
            &format!("SELECT session_id FROM sessions WHERE user_name = '{user}'"),
        );
        assert_eq!(ids.len(), 1, "{user}: {ids:?}");
        ids[0].clone()
    };
    for (user, own, others) in [
        (
            "alice",
            &["/v1/orders<", "/v1/orders/17<"][..],
            "/v1/invoices",
        ),
        ("bob", &["/v1/invoices<"][..], "/v1/orders"),
    ] {
        let url = format!("http://127.0.0.1:{port}/#/sessions/{}", session_of(user));
        let mut chromium = testbed.gateway_command(Path::new(testbed::chromium::binary()));
        chromium.args(testbed::chromium::dump_dom_args(
            &work.path().join(format!("profile-{user}")),
            &url,
        ));
        let dom = testbed::chromium::dom_of(chromium);
        let facts = testbed::chromium::element(&dom, "session-facts");
        assert!(facts.contains(user), "{user}: {facts}");
        assert!(facts.contains("10.99.0.1"), "{user}: {facts}");
        let timeline = testbed::chromium::element(&dom, "timeline");
        for path in own {
            assert!(timeline.contains(path), "{user}: no {path} in\n{timeline}");
        }
        assert!(
            timeline.contains(">flow<"),
            "{user}: no flow in\n{timeline}"
        );
        assert!(
            !timeline.contains(others),
            "{user}: another user's call in\n{timeline}"
        );
    }
    gateway.stop();
    server.stop();
    testbed.down().unwrap();
}
