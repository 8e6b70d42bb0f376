//! Helpers shared by the end-to-end tests: the real binary, free ports, HTTP polling.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `tunnelwatch` binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tunnelwatch")
}

pub fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run tunnelwatch")
}

/// `tunnelwatch sql QUERY --data DATA --format csv`: the CSV (header included), or `None`
/// when the command failed (for polling a store another process is writing).
pub fn try_sql_csv(data: &Path, query: &str) -> Option<String> {
    let output = run(&["sql", query, "--data", data.to_str()?, "--format", "csv"]);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Like [`try_sql_csv`], failing the test (with the command's error) when it fails.
pub fn sql_csv(data: &Path, query: &str) -> String {
    let output = run(&[
        "sql",
        query,
        "--data",
        data.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert!(
        output.status.success(),
        "{query}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The rows of [`sql_csv`] without the header line.
pub fn sql_rows(data: &Path, query: &str) -> Vec<String> {
    sql_csv(data, query)
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// A child process killed (by its pid) when dropped.
pub struct Daemon {
    pub child: Child,
    pub name: &'static str,
}

impl Daemon {
    pub fn spawn(name: &'static str, args: &[&str], log: &Path) -> Daemon {
        let log_file = std::fs::File::create(log).expect("create daemon log");
        let child = Command::new(binary())
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn tunnelwatch");
        Daemon { child, name }
    }

    /// Spawns a prepared command (e.g. the binary inside a network namespace through
    /// `ip netns exec`, which execs it: the child's pid is the binary's own).
    pub fn spawn_command(name: &'static str, mut command: Command, log: &Path) -> Daemon {
        let log_file = std::fs::File::create(log).expect("create daemon log");
        let child = command
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn tunnelwatch");
        Daemon { child, name }
    }

    /// Stops it with SIGTERM (graceful) and waits.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not stop within 20 s of SIGTERM", self.name);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tunnelwatch server --config CONFIG` listening on 127.0.0.1:`port`, its log in `log`;
/// returns once `/healthz` answers.
pub fn start_server(config: &Path, port: u16, log: &Path) -> Daemon {
    let server = Daemon::spawn(
        "server",
        &["server", "--config", config.to_str().expect("utf-8 path")],
        log,
    );
    wait_for("the server", Duration::from_secs(30), || {
        get_json(&format!("http://127.0.0.1:{port}/healthz"))
    });
    server
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// GETs a JSON document, `None` while the server is not answering.
pub fn get_json(url: &str) -> Option<serde_json::Value> {
    get_json_trusting(url, None)
}

/// An HTTP(S) client; for `https://`, it trusts only the CA certificates in `ca_pem` (the
/// product's reqwest is built without a default crypto provider: rustls with ring it is).
pub fn http_client(ca_pem: Option<&str>) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem.unwrap_or_default().as_bytes()) {
        roots.add(certificate.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Like [`get_json`], over HTTPS trusting `ca_pem` when given.
pub fn get_json_trusting(url: &str, ca_pem: Option<&str>) -> Option<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let response = http_client(ca_pem).get(url).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    })
}

/// Polls until `check` returns Some, or panics with `what` and the last value after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The configuration of a server and an agent on a testbed gateway (both run in its
/// namespace, on 127.0.0.1:`port`): the agent follows `vpn_source` (a `[[gateway.sources]]`
/// body) and receives charon's RADIUS accounting on 127.0.0.1:`acct_port` (the testbed's
/// secret); the store is `WORK/data`, the agent's state `WORK/gateway-state`. Written to
/// `WORK/config.toml` and checked with `check-config`.
pub fn live_agent_config(work: &Path, vpn_source: &str, port: u16, acct_port: u16) -> PathBuf {
    let token_file = work.join("ingest.token");
    std::fs::write(&token_file, "e2e-token\n").expect("write token");
    // The testbed's RADIUS secret (vpn-testbed.sh RADIUS_SECRET).
    let radius_secret = work.join("radius.secret");
    std::fs::write(&radius_secret, "radius-shared-secret\n").expect("write secret");
    let config = format!(
        r#"
[gateway]
name = "gw-live"
server_url = "http://127.0.0.1:{port}"
token_file = "{token}"
state_dir = "{state}"
batch_max_wait_ms = 100

[[gateway.sources]]
{vpn_source}

[[gateway.sources]]
type = "radius"
listen = "127.0.0.1:{acct_port}"
secret_file = "{radius_secret}"
clients = ["127.0.0.1"]

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
        state = work.join("gateway-state").display(),
        radius_secret = radius_secret.display(),
        data = work.join("data").display(),
    );
    let config_path = work.join("config.toml");
    std::fs::write(&config_path, config).expect("write config");
    let check = run(&["check-config", config_path.to_str().expect("utf-8 path")]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    config_path
}

/// A real SMTP server (PyPI aiosmtpd, its Mailbox handler) on loopback, killed on drop.
pub struct Smtp {
    child: std::process::Child,
}

impl Smtp {
    pub fn start(port: u16, maildir: &Path) -> Smtp {
        // The test harness's setting, as for schemathesis: scripts/test.sh sets it.
        #[allow(clippy::disallowed_methods)]
        let python = std::env::var("TW_AIOSMTPD_PYTHON").unwrap_or_else(|_| {
            panic!("TW_AIOSMTPD_PYTHON is not set: run the tests through scripts/test.sh, which installs aiosmtpd")
        });
        let child = std::process::Command::new(&python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
                maildir.to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start aiosmtpd with {python}: {error}"));
        wait_for("aiosmtpd", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Smtp { child }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The mails in a maildir's `new/`, as text.
pub fn mails(maildir: &Path) -> Vec<String> {
    std::fs::read_dir(maildir.join("new"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| std::fs::read_to_string(entry.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// A GeoIP2-Enterprise-shaped record: the place, and the AS under `traits`.
pub fn geo_record(
    iso: &str,
    country: &str,
    city: &str,
    lat: f64,
    lon: f64,
    asn: u32,
    org: &str,
) -> mmdb_writer::Value {
    use mmdb_writer::Value;
    let names = |en: &str| Value::map([("en", Value::from(en)), ("de", Value::from("-"))]);
    Value::map([
        ("city", Value::map([("names", names(city))])),
        (
            "country",
            Value::map([("iso_code", Value::from(iso)), ("names", names(country))]),
        ),
        (
            "location",
            Value::map([
                ("latitude", Value::from(lat)),
                ("longitude", Value::from(lon)),
            ]),
        ),
        (
            "traits",
            Value::map([
                ("autonomous_system_number", Value::from(asn)),
                ("autonomous_system_organization", Value::from(org)),
            ]),
        ),
    ])
}
