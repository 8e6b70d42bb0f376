//! The Alertmanager channel against a real Alertmanager (`$TW_ALERTMANAGER`, Debian's
//! `prometheus-alertmanager`; scripts/test.sh installs it), each test with its own on a free
//! loopback port with its own storage, clustering off, killed by its pid when dropped: an
//! alert that fires is listed by Alertmanager with its labels, its resolve ends it; the SSRF
//! guard; refusals are permanent, an Alertmanager that is down is transient.

mod notify_support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alerting::notify::alertmanager::AlertmanagerConfig;
use alerting::notify::{DeliveryError, Failure, Notification, Notifier};
use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = "route:\n  receiver: null-receiver\nreceivers:\n  - name: null-receiver\n";

/// `$TW_ALERTMANAGER`, which must be there: scripts/test.sh installs Debian's
/// prometheus-alertmanager and sets it.
fn alertmanager_binary() -> PathBuf {
    let Some(binary) = std::env::var_os("TW_ALERTMANAGER") else {
        panic!(
            "TW_ALERTMANAGER is not set: the Alertmanager tests need a real Alertmanager; run \
             scripts/test.sh (it installs Debian's prometheus-alertmanager), or \
             `apt-get install prometheus-alertmanager` and set TW_ALERTMANAGER=/usr/bin/prometheus-alertmanager"
        )
    };
    let binary = PathBuf::from(binary);
    let executable = std::fs::metadata(&binary).is_ok_and(|metadata| {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    });
    assert!(
        executable,
        "TW_ALERTMANAGER={} is not an executable file (run scripts/test.sh to install prometheus-alertmanager)",
        binary.display()
    );
    binary
}

/// A running Alertmanager; killed (by its pid) when dropped.
struct Alertmanager {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager on a free loopback port and waits until `/-/ready` answers 200.
    async fn start() -> Alertmanager {
        let binary = alertmanager_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(&config, CONFIG).expect("write the config");
        let port = notify_support::free_port();
        let log = dir.path().join("alertmanager.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: it would listen on 0.0.0.0:9094 and meet the other tests'.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let mut alertmanager = Alertmanager {
            child,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = alertmanager.child.try_wait().expect("wait") {
                panic!(
                    "alertmanager exited ({status}) before it was ready:\n{}",
                    alertmanager.log()
                );
            }
            if let Ok((200, _)) = alertmanager.get("/-/ready").await {
                return alertmanager;
            }
            assert!(
                Instant::now() < deadline,
                "alertmanager not ready on port {port} after 30 s:\n{}",
                alertmanager.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `GET path` over HTTP/1.0 (no chunked body): the status and the body.
    async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .unwrap_or(0);
        Ok((status, body.to_owned()))
    }

    /// `GET /api/v2/alerts` (Alertmanager's defaults: active, silenced, inhibited and
    /// unprocessed alerts; never one whose end has passed).
    async fn alerts(&self) -> Vec<serde_json::Value> {
        let (status, body) = self
            .get("/api/v2/alerts")
            .await
            .expect("GET /api/v2/alerts");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|error| panic!("{error}: {body}"))
    }

    /// The listed alert with `tunnelwatch_alert_id = alert_id`, if any.
    async fn alert(&self, alert_id: &str) -> Option<serde_json::Value> {
        self.alerts()
            .await
            .into_iter()
            .find(|alert| alert["labels"]["tunnelwatch_alert_id"] == alert_id)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(url: &str) -> AlertmanagerConfig {
    AlertmanagerConfig {
        url: url.to_owned(),
        timeout_secs: 5,
        allow_private: true,
        ca_file: None,
        bearer_token_file: None,
    }
}

async fn send(
    config: &AlertmanagerConfig,
    notification: &Notification,
) -> Result<(), DeliveryError> {
    config.build("am").expect("build").send(notification).await
}

fn ago(minutes: i64) -> Timestamp {
    Timestamp::now()
        .checked_sub(SignedDuration::from_mins(minutes))
        .expect("a time")
}

/// A notification about `alert_id`, its events between 10 and 1 minutes ago.
fn firing(alert_id: &str) -> Notification {
    Notification {
        id: format!("{alert_id}:1"),
        alert_id: alert_id.to_owned(),
        first_event: ago(10),
        last_event: ago(1),
        ..notify_support::notification("unused")
    }
}

fn resolved(firing: &Notification) -> Notification {
    Notification {
        id: format!("{}:2", firing.alert_id),
        status: "resolved".to_owned(),
        ..firing.clone()
    }
}

#[tokio::test]
async fn a_firing_alert_is_listed_and_its_resolve_ends_it() {
    let alertmanager = Alertmanager::start().await;
    let config = config(&alertmanager.url());
    let brute_force = firing("alert-am-1");
    let other = firing("alert-am-2");
    send(&config, &brute_force).await.expect("firing delivered");
    send(&config, &other).await.expect("other delivered");

    let listed = alertmanager.alert("alert-am-1").await.expect("listed");
    let labels = &listed["labels"];
    assert_eq!(labels["alertname"], "brute-force", "{listed}");
    assert_eq!(labels["severity"], "high", "{listed}");
    assert_eq!(labels["user_name"], "alice", "{listed}");
    assert_eq!(labels["tunnelwatch_alert_id"], "alert-am-1", "{listed}");
    assert_eq!(listed["status"]["state"], "active", "{listed}");
    assert_eq!(listed["receivers"][0]["name"], "null-receiver", "{listed}");
    assert_eq!(
        listed["annotations"]["summary"], "12 failed logins for alice in 1m",
        "{listed}"
    );
    assert_eq!(
        listed["annotations"]["revoke_url"], "https://tw.example.org/revoke/alert-7?user=alice",
        "{listed}"
    );
    assert_eq!(
        listed["generatorURL"], "https://tw.example.org/alerts/alert-7",
        "{listed}"
    );
    let timestamp = |field: &str| -> Timestamp {
        listed[field]
            .as_str()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| panic!("{field} is not a time: {listed}"))
    };
    assert_eq!(
        timestamp("startsAt").as_millisecond(),
        brute_force.first_event.as_millisecond()
    );
    // Without an endsAt, Alertmanager ends a firing alert itself after its resolve_timeout
    // (5 minutes by default) unless it is sent again.
    assert!(timestamp("endsAt") > Timestamp::now(), "{listed}");

    // Sent twice (a crash before the outbox's commit): still one alert.
    send(&config, &brute_force).await.expect("again");
    let n_listed = alertmanager
        .alerts()
        .await
        .iter()
        .filter(|alert| alert["labels"]["tunnelwatch_alert_id"] == "alert-am-1")
        .count();
    assert_eq!(n_listed, 1);

    // The resolve: endsAt = the last event, which has passed. Alertmanager lists no alert
    // whose end has passed, whatever the filters.
    send(&config, &resolved(&brute_force))
        .await
        .expect("resolve delivered");
    assert_eq!(alertmanager.alert("alert-am-1").await, None, "still listed");
    let (status, body) = alertmanager
        .get("/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true")
        .await
        .expect("GET");
    assert_eq!(status, 200);
    assert!(!body.contains("alert-am-1"), "{body}");
    // The other alert is untouched.
    let other_listed = alertmanager
        .alert("alert-am-2")
        .await
        .expect("other listed");
    assert_eq!(other_listed["status"]["state"], "active");
    // A resolve sent again is accepted and changes nothing.
    send(&config, &resolved(&brute_force))
        .await
        .expect("resolve again");
    assert_eq!(alertmanager.alert("alert-am-1").await, None);
}

#[tokio::test]
async fn hostile_label_names_and_values_are_accepted_as_rewritten() {
    let alertmanager = Alertmanager::start().await;
    let notification = Notification {
        labels: [
            (
                "user.name".to_owned(),
                "mallory\r\n\"}{x=\"y\u{202e}".to_owned(),
            ),
            ("9.source ip".to_owned(), "198.51.100.9".to_owned()),
            ("severity".to_owned(), "none".to_owned()),
        ]
        .into(),
        ..firing("alert-am-hostile")
    };
    send(&config(&alertmanager.url()), &notification)
        .await
        .expect("delivered");
    let listed = alertmanager
        .alert("alert-am-hostile")
        .await
        .expect("listed");
    let labels = &listed["labels"];
    assert_eq!(labels["user_name"], "mallory \"}{x=\"y", "{listed}");
    assert_eq!(labels["_9_source_ip"], "198.51.100.9", "{listed}");
    assert_eq!(labels["severity"], "high", "{listed}");
    assert_eq!(labels["severity_2"], "none", "{listed}");
}

#[tokio::test]
async fn the_ssrf_guard_refuses_loopback_unless_allowed() {
    let alertmanager = Alertmanager::start().await;
    let guarded = AlertmanagerConfig {
        allow_private: false,
        ..config(&alertmanager.url())
    };
    let error = guarded.build("am").expect_err("loopback accepted");
    assert!(
        error
            .to_string()
            .contains("url points at 127.0.0.1, a loopback address"),
        "{error}"
    );

    // A name that resolves to loopback: refused when resolved, before any connection.
    let by_name = AlertmanagerConfig {
        allow_private: false,
        ..config(&format!("http://localhost:{}", alertmanager.port))
    };
    let error = send(&by_name, &firing("alert-am-ssrf"))
        .await
        .expect_err("localhost accepted");
    assert_eq!(error.failure, Failure::Permanent, "{error}");
    assert!(
        error.detail.contains("refused to connect to localhost"),
        "{error}"
    );
    assert!(alertmanager.alerts().await.is_empty());

    // Allowed, the same name reaches Alertmanager through the address it was pinned to.
    let allowed = AlertmanagerConfig {
        allow_private: true,
        ..by_name
    };
    send(&allowed, &firing("alert-am-ssrf"))
        .await
        .expect("delivered by name");
    assert!(alertmanager.alert("alert-am-ssrf").await.is_some());
}

#[tokio::test]
async fn refusals_are_permanent_and_a_down_alertmanager_is_transient() {
    let alertmanager = Alertmanager::start().await;
    let config = config(&alertmanager.url());

    // An alert that ends before it starts: Alertmanager answers 400, and says why.
    let backwards = Notification {
        status: "resolved".to_owned(),
        first_event: ago(1),
        last_event: ago(10),
        ..firing("alert-am-backwards")
    };
    let error = send(&config, &backwards).await.expect_err("400 accepted");
    assert_eq!(error.failure, Failure::Permanent, "{error}");
    assert!(error.detail.contains("HTTP 400"), "{error}");
    assert!(
        error.detail.contains("start time must be before end time"),
        "{error}"
    );

    // A wrong route prefix: 404.
    let wrong_prefix = AlertmanagerConfig {
        url: format!("{}/not-alertmanager", alertmanager.url()),
        ..config.clone()
    };
    let error = send(&wrong_prefix, &firing("alert-am-404"))
        .await
        .expect_err("404 accepted");
    assert_eq!(error.failure, Failure::Permanent, "{error}");
    assert!(error.detail.contains("HTTP 404"), "{error}");
    assert!(alertmanager.alerts().await.is_empty());

    // Down: a refused connection is worth another try.
    drop(alertmanager);
    let error = send(&config, &firing("alert-am-down"))
        .await
        .expect_err("nobody listens");
    assert_eq!(error.failure, Failure::Transient, "{error}");
    assert!(error.detail.contains("alertmanager 127.0.0.1"), "{error}");
}
