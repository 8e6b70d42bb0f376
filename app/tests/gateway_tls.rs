//! Shipping over HTTPS: the server serves TLS with a certificate from a (throwaway) company
//! CA, the agent trusts that CA through `tls_ca_file`, and events arrive with the bearer
//! token. An agent that does not trust the server's certificate sends nothing, says why, and
//! keeps its events spooled until it is given the right CA. Runs the real binaries on
//! loopback.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{Daemon, get_json_trusting, wait_for};
use testbed::pki::server_certificate;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/testdata/charon")
        .join(name)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// The auth events the server holds, by outcome: (successes, failures).
fn auth_counts(base: &str, ca_pem: &str) -> Option<(i64, i64)> {
    get_json_trusting(&format!("{base}/api/v1/stats"), Some(ca_pem)).map(|stats| {
        (
            stats["auth_successes"].as_i64().unwrap_or(-1),
            stats["auth_failures"].as_i64().unwrap_or(-1),
        )
    })
}

fn gateway_config(port: u16, work: &Path, name: &str, ca_file: &str, log: &Path) -> String {
    format!(
        r#"
[gateway]
name = "{name}"
server_url = "https://localhost:{port}"
token_file = "{token}"
tls_ca_file = "{ca_file}"
state_dir = "{state}"
poll_interval_ms = 100
batch_max_wait_ms = 100

[[gateway.sources]]
type = "file"
format = "charon"
path = "{log}"
"#,
        token = work.join("ingest.token").display(),
        state = work.join(format!("{name}-state")).display(),
        log = log.display(),
    )
}

#[test]
fn events_travel_over_tls_to_a_trusted_server_only() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let port = support::free_port();
    let pki = server_certificate("Example Corp Internal CA", &["localhost", "127.0.0.1"]);
    let impostor = server_certificate("Someone Else's CA", &["localhost"]);
    let ca_file = write(dir, "ca.pem", &pki.ca_pem);
    let wrong_ca_file = write(dir, "wrong-ca.pem", &impostor.ca_pem);
    write(dir, "ingest.token", "tls-token\n");
    let server_config = format!(
        r#"
[store]
data_dir = "{data}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"
# This test is about its own subject: anonymous callers read as analysts (access is tested in access_e2e.rs).
anonymous_role = "analyst"
ingest_token_file = "{token}"
tls_cert_file = "{cert}"
tls_key_file = "{key}"
"#,
        data = dir.join("data").display(),
        token = dir.join("ingest.token").display(),
        cert = write(dir, "server.pem", &pki.chain_pem),
        key = write(dir, "server.key", &pki.key_pem),
    );
    let server_config = write(dir, "server.toml", &server_config);
    let _server = Daemon::spawn(
        "server",
        &["server", "--config", &server_config],
        &dir.join("server.log"),
    );
    let base = format!("https://localhost:{port}");
    wait_for("the HTTPS server", Duration::from_secs(30), || {
        auth_counts(&base, &pki.ca_pem)
    });
    // Plain HTTP on the HTTPS port gets nothing.
    assert!(support::get_json(&format!("http://127.0.0.1:{port}/healthz")).is_none());

    // An agent that trusts another CA refuses the server and keeps its events.
    let wrong_config = gateway_config(
        port,
        dir,
        "gw-wrong",
        &wrong_ca_file,
        &fixture("psk-wrong.log"),
    );
    let wrong_config = write(dir, "gw-wrong.toml", &wrong_config);
    let wrong = Daemon::spawn(
        "gateway",
        &["gateway", "--config", &wrong_config],
        &dir.join("gw-wrong-1.log"),
    );
    wait_for(
        "the agent to refuse the certificate",
        Duration::from_secs(30),
        || {
            std::fs::read_to_string(dir.join("gw-wrong-1.log"))
                .ok()
                .filter(|log| log.contains("UnknownIssuer"))
        },
    );
    assert_eq!(auth_counts(&base, &pki.ca_pem), Some((0, 0)));
    wrong.stop();

    // The trusting agent delivers.
    let good_config = gateway_config(port, dir, "gw-good", &ca_file, &fixture("psk-ok.log"));
    let good_config = write(dir, "gw-good.toml", &good_config);
    let check = support::run(&["check-config", &good_config]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _good = Daemon::spawn(
        "gateway",
        &["gateway", "--config", &good_config],
        &dir.join("gw-good.log"),
    );
    wait_for("the login over TLS", Duration::from_secs(30), || {
        auth_counts(&base, &pki.ca_pem).filter(|counts| *counts == (1, 0))
    });

    // Given the right CA, the first agent delivers what it kept, once.
    let fixed = gateway_config(port, dir, "gw-wrong", &ca_file, &fixture("psk-wrong.log"));
    std::fs::write(&wrong_config, fixed).unwrap();
    let _fixed = Daemon::spawn(
        "gateway",
        &["gateway", "--config", &wrong_config],
        &dir.join("gw-wrong-2.log"),
    );
    wait_for(
        "the spooled failure over TLS",
        Duration::from_secs(30),
        || auth_counts(&base, &pki.ca_pem).filter(|counts| *counts == (1, 1)),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(auth_counts(&base, &pki.ca_pem), Some((1, 1)));
}

#[test]
fn tls_mistakes_in_the_configuration_are_named() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let check = |name: &str, text: &str, expected: &str| {
        let path = write(dir, name, text);
        let output = support::run(&["check-config", &path]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name} was accepted");
        assert!(
            stderr.contains(expected),
            "{name}: expected `{expected}` in:\n{stderr}"
        );
    };
    check(
        "clear-text.toml",
        "[gateway]\nserver_url = \"http://collector:8080\"\ntls_ca_file = \"/etc/ca.pem\"\n",
        "is not https://",
    );
    check(
        "half.toml",
        "[dashboards]\ntls_cert_file = \"/etc/cert.pem\"\n",
        "tls_cert_file and tls_key_file go together",
    );
    check(
        "client-ca-without-tls.toml",
        "[dashboards]\ntls_client_ca_file = \"/etc/ca.pem\"\n",
        "tls_client_ca_file needs tls_cert_file",
    );
    check(
        "half-client.toml",
        "[gateway]\nserver_url = \"https://collector:8443\"\ntls_client_cert_file = \"/etc/gw.pem\"\n",
        "tls_client_cert_file and tls_client_key_file go together",
    );
    check(
        "client-cert-clear-text.toml",
        "[gateway]\nserver_url = \"http://collector:8080\"\ntls_client_cert_file = \"/etc/gw.pem\"\ntls_client_key_file = \"/etc/gw.key\"\n",
        "client certificates exist only over TLS",
    );

    // Files that are not what they claim to be stop the server at start, with the reason.
    let pki = server_certificate("CA", &["localhost"]);
    let cert = write(dir, "cert.pem", &pki.chain_pem);
    let not_a_key = write(dir, "not-a-key.pem", "\x1b[31mhello\r\n");
    let config = format!(
        "[store]\ndata_dir = \"{}\"\n[dashboards]\nlisten = \"127.0.0.1:0\"\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{not_a_key}\"\n",
        dir.join("data").display()
    );
    let config = write(dir, "bad-key.toml", &config);
    let output = support::run(&["server", "--config", &config]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("no usable private key"), "{stderr}");

    let gateway = format!(
        "[gateway]\nserver_url = \"https://localhost:1\"\ntls_ca_file = \"{not_a_key}\"\nstate_dir = \"{}\"\n",
        dir.join("state").display()
    );
    let gateway = write(dir, "bad-ca.toml", &gateway);
    let output = support::run(&["gateway", "--config", &gateway]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
}

/// Mutual TLS: a gateway token bound to a client certificate's subject works only over a
/// connection that presented that certificate. The same token without a certificate, or with
/// another gateway's certificate, is refused and nothing of it is stored; a certificate from
/// a CA the server does not trust fails the handshake.
#[test]
fn a_gateway_token_bound_to_a_client_certificate_needs_that_certificate() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let port = support::free_port();
    let pki = server_certificate("Example Corp Internal CA", &["localhost", "127.0.0.1"]);
    let stranger = server_certificate("Someone Else's CA", &["localhost"]);
    let ca_file = write(dir, "ca.pem", &pki.ca_pem);
    let gw_a = pki.client_certificate("gw-a", Some("Example Corp"));
    let gw_a_cert = write(dir, "gw-a.pem", &gw_a.chain_pem);
    let gw_a_key = write(dir, "gw-a.key", &gw_a.key_pem);
    let foreign = stranger.client_certificate("gw-b", None);
    let foreign_cert = write(dir, "foreign.pem", &foreign.chain_pem);
    let foreign_key = write(dir, "foreign.key", &foreign.key_pem);
    let data = dir.join("data");
    let data_arg = data.to_str().unwrap();

    // Tokens made before the server starts; the subject as `openssl x509 -subject` prints it.
    let create = |name: &str, subject: &str| {
        let output = support::run(&[
            "token",
            "create",
            name,
            "--gateway",
            "--client-subject",
            subject,
            "--data",
            data_arg,
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    write(
        dir,
        "gw-a.token",
        &create("gw-a", "CN = gw-a, O = Example Corp"),
    );
    write(dir, "gw-b.token", &create("gw-b", "CN=gw-b"));
    // A subject that is no subject is refused by name.
    let bad = support::run(&[
        "token",
        "create",
        "gw-c",
        "--gateway",
        "--client-subject",
        "gw-c",
        "--data",
        data_arg,
    ]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not TYPE=value"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let list = support::run(&["token", "list", "--data", data_arg]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("client certificate CN=gw-a, O=Example Corp"),
        "{list}"
    );

    let server_config = format!(
        r#"
[store]
data_dir = "{data}"
flush_interval_secs = 1

[dashboards]
listen = "127.0.0.1:{port}"
anonymous_role = "analyst"
tls_cert_file = "{cert}"
tls_key_file = "{key}"
tls_client_ca_file = "{ca_file}"
"#,
        data = data.display(),
        cert = write(dir, "server.pem", &pki.chain_pem),
        key = write(dir, "server.key", &pki.key_pem),
    );
    let server_config = write(dir, "server.toml", &server_config);
    let _server = Daemon::spawn(
        "server",
        &["server", "--config", &server_config],
        &dir.join("server.log"),
    );
    let base = format!("https://localhost:{port}");
    // A browser or script without a client certificate still reads.
    wait_for("the HTTPS server", Duration::from_secs(30), || {
        auth_counts(&base, &pki.ca_pem)
    });

    let agent = |name: &str, log: &str, identity: Option<(&str, &str)>| {
        let mut config = gateway_config(port, dir, name, &ca_file, &fixture(log)).replace(
            &format!("{}", dir.join("ingest.token").display()),
            &format!("{}", dir.join(format!("{name}.token")).display()),
        );
        if let Some((cert, key)) = identity {
            config = config.replace(
                "state_dir",
                &format!(
                    "tls_client_cert_file = \"{cert}\"\ntls_client_key_file = \"{key}\"\nstate_dir"
                ),
            );
        }
        write(dir, &format!("{name}.toml"), &config)
    };
    let log_has = |log: &Path, text: &str| {
        std::fs::read_to_string(log)
            .ok()
            .filter(|log| log.contains(text))
    };

    // gw-b's token without a certificate: refused, its failure is not stored.
    let b_config = agent("gw-b", "psk-wrong.log", None);
    let b_log = dir.join("gw-b-1.log");
    let b = Daemon::spawn("gateway", &["gateway", "--config", &b_config], &b_log);
    wait_for(
        "gw-b refused without a certificate",
        Duration::from_secs(30),
        || log_has(&b_log, "presented none"),
    );
    b.stop();
    // gw-b's token with gw-a's certificate (trusted CA, wrong subject): refused.
    let b_config = agent("gw-b", "psk-wrong.log", Some((&gw_a_cert, &gw_a_key)));
    let b_log = dir.join("gw-b-2.log");
    let b = Daemon::spawn("gateway", &["gateway", "--config", &b_config], &b_log);
    wait_for(
        "gw-b refused with gw-a's certificate",
        Duration::from_secs(30),
        || log_has(&b_log, "presented `CN=gw-a, O=Example Corp`"),
    );
    b.stop();
    // gw-b's token with a certificate from a CA the server does not trust: no handshake.
    let b_config = agent("gw-b", "psk-wrong.log", Some((&foreign_cert, &foreign_key)));
    let b_log = dir.join("gw-b-3.log");
    let b = Daemon::spawn("gateway", &["gateway", "--config", &b_config], &b_log);
    wait_for(
        "the server to refuse the foreign certificate",
        Duration::from_secs(30),
        || log_has(&dir.join("server.log"), "TLS handshake failed"),
    );
    b.stop();
    assert_eq!(auth_counts(&base, &pki.ca_pem), Some((0, 0)));

    // gw-a with its own certificate delivers.
    let a_config = agent("gw-a", "psk-ok.log", Some((&gw_a_cert, &gw_a_key)));
    let _a = Daemon::spawn(
        "gateway",
        &["gateway", "--config", &a_config],
        &dir.join("gw-a.log"),
    );
    wait_for(
        "gw-a's login over mutual TLS",
        Duration::from_secs(30),
        || auth_counts(&base, &pki.ca_pem).filter(|counts| *counts == (1, 0)),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(auth_counts(&base, &pki.ca_pem), Some((1, 0)));
}
