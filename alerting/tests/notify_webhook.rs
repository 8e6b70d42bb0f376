//! Webhooks against a hand-written HTTP/1.1 receiver on loopback: signatures, the status
//! classification, redirects not followed, and the SSRF guard.

mod notify_support;

use std::time::Duration;

use alerting::notify::webhook::{Format, WebhookConfig, signature};
use alerting::notify::{Failure, Notification, Notifier};
use notify_support::{HttpReceiver, notification};

fn config(url: &str) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        secret_file: None,
        format: Format::Generic,
        timeout_secs: 5,
        allow_private: true,
        ca_file: None,
    }
}

async fn send(config: &WebhookConfig) -> Result<(), alerting::notify::DeliveryError> {
    config
        .build("hook")
        .expect("build")
        .send(&notification("alert-7:1"))
        .await
}

#[tokio::test]
async fn a_generic_post_carries_the_notification_signed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("hook.key");
    std::fs::write(&key, "k3y").expect("key");
    let receiver = HttpReceiver::start(vec![204]).await;
    let config = WebhookConfig {
        secret_file: Some(key),
        ..config(&receiver.url("/in"))
    };
    send(&config).await.expect("delivered");
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.headers["content-type"], "application/json");
    let timestamp: i64 = request.headers["x-tunnelwatch-timestamp"]
        .parse()
        .expect("seconds");
    assert!((jiff::Timestamp::now().as_second() - timestamp).abs() < 60);
    let expect = format!(
        "sha256={}",
        signature(b"k3y", &timestamp.to_string(), &request.body)
    );
    assert_eq!(request.headers["x-tunnelwatch-signature"], expect);
    let forged = format!(
        "sha256={}",
        signature(b"other", &timestamp.to_string(), &request.body)
    );
    assert_ne!(request.headers["x-tunnelwatch-signature"], forged);
    let body: Notification = serde_json::from_slice(&request.body).expect("a notification");
    assert_eq!(body, notification("alert-7:1"));
}

#[tokio::test]
async fn statuses_decide_retry_or_not() {
    for (status, expect) in [
        (500, Some(Failure::Transient)),
        (503, Some(Failure::Transient)),
        (429, Some(Failure::Transient)),
        (408, Some(Failure::Transient)),
        (404, Some(Failure::Permanent)),
        (401, Some(Failure::Permanent)),
        (200, None),
    ] {
        let receiver = HttpReceiver::start(vec![status]).await;
        let outcome = send(&config(&receiver.url("/"))).await;
        assert_eq!(
            outcome.as_ref().err().map(|error| error.failure),
            expect,
            "{status}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let receiver = HttpReceiver::start(vec![302, 200]).await;
    let error = send(&config(&receiver.url("/")))
        .await
        .expect_err("302 accepted");
    assert_eq!(error.failure, Failure::Permanent);
    assert!(error.detail.contains("not followed"), "{error}");
    assert!(error.detail.contains("/elsewhere"), "{error}");
    assert_eq!(receiver.requests().len(), 1, "the redirect was followed");
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowed() {
    let receiver = HttpReceiver::start(vec![200]).await;
    let guarded = WebhookConfig {
        allow_private: false,
        ..config(&receiver.url("/"))
    };
    let error = guarded.build("hook").expect_err("loopback accepted");
    assert!(
        error
            .to_string()
            .contains("url points at 127.0.0.1, a loopback address"),
        "{error}"
    );

    let metadata = WebhookConfig {
        allow_private: false,
        ..config("http://169.254.169.254/latest/meta-data/")
    };
    let error = metadata.build("hook").expect_err("metadata accepted");
    assert!(
        error.to_string().contains("169.254.169.254, a link-local"),
        "{error}"
    );

    // A name that resolves to loopback: refused when resolved, before any connection.
    let by_name = WebhookConfig {
        allow_private: false,
        ..config(&format!("http://localhost:{}/", receiver.address.port()))
    };
    let error = send(&by_name).await.expect_err("localhost accepted");
    assert_eq!(error.failure, Failure::Permanent);
    assert!(
        error.detail.contains("refused to connect to localhost"),
        "{error}"
    );
    assert!(
        error.detail.contains("127.0.0.1 (loopback)") || error.detail.contains("::1 (loopback)"),
        "{error}"
    );
    assert!(receiver.requests().is_empty());

    // Allowed, the same name reaches the receiver through the address it was pinned to.
    let allowed = WebhookConfig {
        allow_private: true,
        ..by_name
    };
    send(&allowed).await.expect("delivered by name");
    assert_eq!(receiver.requests().len(), 1);
}

#[tokio::test]
async fn the_alertmanager_payload_arrives() {
    let receiver = HttpReceiver::start(vec![200]).await;
    let config = WebhookConfig {
        format: Format::Alertmanager,
        ..config(&receiver.url("/am"))
    };
    send(&config).await.expect("delivered");
    let request = &receiver.requests()[0];
    let value: serde_json::Value = serde_json::from_slice(&request.body).expect("json");
    assert_eq!(value["version"], "4");
    assert_eq!(value["receiver"], "hook");
    assert_eq!(value["alerts"][0]["labels"]["alertname"], "Brute force");
    assert_eq!(request.headers["idempotency-key"], "alert-7:1");
}

#[tokio::test]
async fn silence_and_refusal_are_transient() {
    // Accepted by the kernel's backlog, never answered: a timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent = WebhookConfig {
        timeout_secs: 1,
        ..config(&format!(
            "http://{}/",
            listener.local_addr().expect("address")
        ))
    };
    let started = std::time::Instant::now();
    let error = send(&silent).await.expect_err("silence accepted");
    assert_eq!(error.failure, Failure::Transient, "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);

    let port = notify_support::free_port();
    let refused = config(&format!("http://127.0.0.1:{port}/"));
    let error = send(&refused).await.expect_err("nobody listens");
    assert_eq!(error.failure, Failure::Transient, "{error}");
}

#[test]
fn bad_configs_are_refused_with_their_reason() {
    let error = serde_json::from_str::<WebhookConfig>(r#"{"url":"https://x.example/","hmac":"k"}"#)
        .expect_err("unknown key");
    assert!(
        error.to_string().contains("unknown field `hmac`"),
        "{error}"
    );
    let error = WebhookConfig {
        secret_file: Some("/nonexistent/hook.key".into()),
        ..config("https://hooks.example.org/x")
    }
    .build("hook")
    .expect_err("missing secret");
    assert_eq!(
        error.to_string(),
        "cannot read secret_file /nonexistent/hook.key"
    );
}
