use super::*;
use crate::notify::sample_notification;

fn config(url: &str) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        secret_file: None,
        format: Format::Generic,
        timeout_secs: 10,
        allow_private: false,
        ca_file: None,
    }
}

#[track_caller]
fn check_invalid(config: WebhookConfig, expect: &str) {
    let error = config.validate().expect_err("invalid config accepted");
    assert!(error.to_string().contains(expect), "{error}");
}

#[test]
fn config_parses_and_refuses_unknown_keys() {
    let parsed: WebhookConfig = serde_json::from_str(
        r#"{"url":"https://hooks.example.org/x","secret_file":"/etc/tw/hook.key","format":"alertmanager","timeout_secs":5,"allow_private":false}"#,
    )
    .expect("valid");
    assert_eq!(parsed.format, Format::Alertmanager);
    let error = serde_json::from_str::<WebhookConfig>(r#"{"url":"https://x/","secret":"s"}"#)
        .expect_err("inline secret accepted");
    assert!(
        error.to_string().contains("unknown field `secret`"),
        "{error}"
    );
}

#[test]
fn internal_literals_are_refused_at_build() {
    check_invalid(
        config("http://127.0.0.1:9/"),
        "url points at 127.0.0.1, a loopback address",
    );
    check_invalid(
        config("http://169.254.169.254/latest/meta-data/"),
        "169.254.169.254, a link-local",
    );
    check_invalid(
        config("http://[::ffff:10.0.0.1]/"),
        "::ffff:10.0.0.1, a private",
    );
    check_invalid(config("http://0x7f.1/"), "127.0.0.1, a loopback");
    check_invalid(
        config("ftp://hooks.example.org/"),
        "must be http:// or https://",
    );
    check_invalid(
        config("https://user:pw@hooks.example.org/"),
        "must not hold a user",
    );
    check_invalid(config("not a url"), "url is not a URL");
    let allowed = WebhookConfig {
        allow_private: true,
        ..config("http://127.0.0.1:9/")
    };
    allowed.validate().expect("allow_private");
    config("https://hooks.example.org/x")
        .validate()
        .expect("public host");
}

#[test]
fn a_missing_secret_file_is_named() {
    let error = WebhookConfig {
        secret_file: Some("/nonexistent/tw/hook.key".into()),
        ..config("https://hooks.example.org/x")
    }
    .build("ops")
    .expect_err("missing secret file");
    assert_eq!(
        error.to_string(),
        "cannot read secret_file /nonexistent/tw/hook.key"
    );
}

#[test]
fn statuses_are_classified() {
    assert_eq!(classify_status(200), None);
    assert_eq!(classify_status(204), None);
    assert_eq!(classify_status(302), Some(Failure::Permanent));
    assert_eq!(classify_status(400), Some(Failure::Permanent));
    assert_eq!(classify_status(404), Some(Failure::Permanent));
    assert_eq!(classify_status(408), Some(Failure::Transient));
    assert_eq!(classify_status(429), Some(Failure::Transient));
    assert_eq!(classify_status(500), Some(Failure::Transient));
    assert_eq!(classify_status(503), Some(Failure::Transient));
    assert_eq!(classify_status(101), Some(Failure::Permanent));
}

#[test]
fn generic_requests_are_signed_over_timestamp_and_body() {
    let notification = sample_notification();
    let now = Timestamp::from_second(1_800_000_100).expect("time");
    let rendered =
        render(&notification, Format::Generic, "ops", Some(b"key"), now).expect("render");
    let header = |name: &str| {
        rendered
            .headers
            .iter()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(header(TIMESTAMP_HEADER).as_deref(), Some("1800000100"));
    assert_eq!(header(IDEMPOTENCY_HEADER).as_deref(), Some("alert-7:1"));
    let expect = format!("sha256={}", signature(b"key", "1800000100", &rendered.body));
    assert_eq!(header(SIGNATURE_HEADER), Some(expect));
    let body: Notification = serde_json::from_slice(&rendered.body).expect("the notification");
    assert_eq!(body, notification);
    let unsigned = render(&notification, Format::Generic, "ops", None, now).expect("render");
    assert!(
        !unsigned
            .headers
            .iter()
            .any(|(name, _)| *name == SIGNATURE_HEADER)
    );
}

#[test]
fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
    // Python: hmac.new(b"Jefe", b'1800000100.{"a":1}', hashlib.sha256).hexdigest()
    assert_eq!(
        signature(b"Jefe", "1800000100", br#"{"a":1}"#),
        "19a5ebf0520be37cad2c89d107bda612dc75229a351689771230a458a178e0ac"
    );
}

#[test]
fn a_hostile_id_cannot_add_a_header() {
    let mut notification = sample_notification();
    notification.id = "x\r\nX-Evil: 1 %".to_owned();
    let rendered = render(
        &notification,
        Format::Generic,
        "ops",
        None,
        Timestamp::UNIX_EPOCH,
    )
    .expect("render");
    let key = rendered
        .headers
        .iter()
        .find(|(name, _)| *name == IDEMPOTENCY_HEADER)
        .map(|(_, value)| value.as_str());
    assert_eq!(key, Some("x%0D%0AX-Evil:%201%20%25"));
}

#[test]
fn the_alertmanager_payload_has_the_v4_shape() {
    let notification = sample_notification();
    let body = render_body(&notification, Format::Alertmanager, "ops").expect("render");
    let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let object = value.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "alerts",
            "commonAnnotations",
            "commonLabels",
            "externalURL",
            "groupKey",
            "groupLabels",
            "receiver",
            "status",
            "truncatedAlerts",
            "version"
        ]
    );
    assert_eq!(value["version"], "4");
    assert_eq!(value["status"], "firing");
    assert_eq!(value["receiver"], "ops");
    assert_eq!(value["externalURL"], "https://tw.example.org");
    assert_eq!(value["groupLabels"]["alertname"], "Brute force");
    let alert = &value["alerts"][0];
    let mut alert_keys: Vec<&str> = alert
        .as_object()
        .expect("an alert")
        .keys()
        .map(String::as_str)
        .collect();
    alert_keys.sort_unstable();
    assert_eq!(
        alert_keys,
        [
            "annotations",
            "endsAt",
            "fingerprint",
            "generatorURL",
            "labels",
            "startsAt",
            "status"
        ]
    );
    assert_eq!(alert["labels"]["alertname"], "Brute force");
    assert_eq!(alert["labels"]["severity"], "high");
    assert_eq!(alert["labels"]["user.name"], "alice");
    assert_eq!(
        alert["annotations"]["summary"],
        "12 failed logins for alice in 1m"
    );
    assert_eq!(alert["startsAt"], "2027-01-15T08:00:00Z");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        alert["generatorURL"],
        "https://tw.example.org/alerts/alert-7"
    );
    assert_eq!(alert["fingerprint"].as_str().map(str::len), Some(16));

    let mut resolved = notification;
    resolved.status = "resolved".to_owned();
    let value: serde_json::Value = serde_json::from_slice(
        &render_body(&resolved, Format::Alertmanager, "ops").expect("render"),
    )
    .expect("json");
    assert_eq!(value["status"], "resolved");
    assert_eq!(value["alerts"][0]["endsAt"], "2027-01-15T08:01:00Z");
}

#[test]
fn the_slack_text_is_escaped_for_slack() {
    let mut notification = sample_notification();
    notification.user = Some("<!channel> alice\r\n&".to_owned());
    notification.revoke_url = Some("https://tw.example.org/revoke?a=1|b>".to_owned());
    let body = render_body(&notification, Format::Slack, "ops").expect("render");
    let value: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let text = value["text"].as_str().expect("text");
    assert!(
        text.contains("User: &lt;!channel&gt; alice\\r\\n&amp;\n"),
        "{text}"
    );
    assert!(!text.contains("<!channel>"));
    assert!(
        text.contains(
            "<https://tw.example.org/revoke?a=1%7Cb%3E|Revoke access> (opens a confirmation page)"
        ),
        "{text}"
    );
}
