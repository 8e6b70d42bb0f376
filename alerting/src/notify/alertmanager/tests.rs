use super::*;
use crate::notify::sample_notification;

fn config(url: &str) -> AlertmanagerConfig {
    AlertmanagerConfig {
        url: url.to_owned(),
        timeout_secs: 10,
        allow_private: false,
        ca_file: None,
        bearer_token_file: None,
    }
}

fn resolved() -> Notification {
    Notification {
        id: "alert-7:2".to_owned(),
        status: "resolved".to_owned(),
        ..sample_notification()
    }
}

#[track_caller]
fn check_label_name(input: &str, expect: &str) {
    assert_eq!(label_name(input), expect, "{input:?}");
}

#[track_caller]
fn check_invalid(config: AlertmanagerConfig, expect: &str) {
    let error = config.validate().expect_err("invalid config accepted");
    assert!(error.to_string().contains(expect), "{error}");
}

/// Alertmanager's label-name syntax: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[test]
fn label_names_are_rewritten_to_alertmanager_syntax() {
    check_label_name("user.name", "user_name");
    check_label_name("source.ip", "source_ip");
    check_label_name("already_fine", "already_fine");
    check_label_name("CamelCase9", "CamelCase9");
    check_label_name("9lives", "_9lives");
    check_label_name("", "_");
    check_label_name("a-b c/d", "a_b_c_d");
    check_label_name("ünïcode", "_n_code");
    check_label_name("x\"}{y\n", "x___y_");
    let long = "n".repeat(1000);
    assert_eq!(label_name(&long).len(), MAX_LABEL_NAME_CHARS);
    assert_eq!(label_name(&"9".repeat(1000)).len(), MAX_LABEL_NAME_CHARS);
    for input in ["", "1", ".", "é", "__x", "a.b.c", "\u{202e}x", "9.9"] {
        assert!(is_label_name(&label_name(input)), "{input:?}");
    }
}

#[test]
fn a_firing_alert_has_labels_annotations_and_ends_a_day_after_its_last_event() {
    let alert = postable_alert(&sample_notification());
    let labels: Vec<(&str, &str)> = alert
        .labels
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("alertname", "brute-force"),
            ("severity", "high"),
            ("tunnelwatch_alert_id", "alert-7"),
            ("user_name", "alice"),
        ]
    );
    assert_eq!(
        alert.annotations["summary"],
        "12 failed logins for alice in 1m"
    );
    assert_eq!(
        alert.annotations["description"],
        "Many failed logins from one address."
    );
    assert_eq!(alert.annotations["user"], "alice");
    assert_eq!(alert.annotations["source_ips"], "203.0.113.7");
    assert_eq!(alert.annotations["rule_name"], "Brute force");
    assert_eq!(
        alert.annotations["console_url"],
        "https://tw.example.org/alerts/alert-7"
    );
    assert_eq!(
        alert.annotations["revoke_url"],
        "https://tw.example.org/revoke/alert-7?user=alice"
    );
    assert_eq!(alert.starts_at, "2027-01-15T08:00:00Z");
    // A day after its last event (08:01), unless resolved before.
    assert_eq!(alert.ends_at.as_deref(), Some("2027-01-16T08:01:00Z"));
    assert_eq!(
        alert.generator_url.as_deref(),
        Some("https://tw.example.org/alerts/alert-7")
    );
    let json: serde_json::Value =
        serde_json::from_slice(&render_body(&sample_notification()).expect("json")).expect("json");
    let first = &json[0];
    assert_eq!(json.as_array().map(Vec::len), Some(1));
    assert_eq!(first["endsAt"], "2027-01-16T08:01:00Z", "{json}");
    assert_eq!(first["startsAt"], "2027-01-15T08:00:00Z");
    assert_eq!(
        first["generatorURL"],
        "https://tw.example.org/alerts/alert-7"
    );
    assert_eq!(first["labels"]["user_name"], "alice");
}

#[test]
fn a_resolved_alert_ends_at_its_last_event_with_the_same_labels() {
    let firing = postable_alert(&sample_notification());
    let resolved = postable_alert(&resolved());
    assert_eq!(resolved.labels, firing.labels, "the identity changed");
    assert_eq!(resolved.starts_at, "2027-01-15T08:00:00Z");
    assert_eq!(resolved.ends_at.as_deref(), Some("2027-01-15T08:01:00Z"));
    let json: serde_json::Value =
        serde_json::from_slice(&render_body(&self::resolved()).expect("json")).expect("json");
    assert_eq!(json[0]["endsAt"], "2027-01-15T08:01:00Z");
    // Any other status is sent as firing.
    let odd = Notification {
        status: "Resolved\r\n".to_owned(),
        ..sample_notification()
    };
    assert_eq!(
        postable_alert(&odd).ends_at.as_deref(),
        Some("2027-01-16T08:01:00Z")
    );
}

#[test]
fn hostile_values_are_one_line_and_bounded() {
    let hostile = "alice\r\nseverity=\"none\"\u{202e}\u{1b}[31m\"}";
    let notification = Notification {
        rule_id: "brute\nforce".to_owned(),
        severity: "high\u{0}".to_owned(),
        user: Some(hostile.to_owned()),
        summary: "x".repeat(10_000),
        description: "line one\nline two\u{7}".to_owned(),
        labels: BTreeMap::from([
            ("user.name".to_owned(), hostile.to_owned()),
            ("long".to_owned(), "v".repeat(100_000)),
        ]),
        console_url: Some("javascript:alert(1)".to_owned()),
        revoke_url: Some("https://x/\r\nrevoke".to_owned()),
        ..sample_notification()
    };
    let alert = postable_alert(&notification);
    assert_eq!(alert.labels["alertname"], "brute force");
    assert_eq!(alert.labels["severity"], "high");
    assert_eq!(alert.labels["user_name"], "alice severity=\"none\" [31m\"}");
    assert_eq!(alert.annotations["user"], alert.labels["user_name"]);
    assert_eq!(
        alert.labels["long"].chars().count(),
        crate::notify::escape::MAX_NAME_CHARS
    );
    assert!(alert.labels["long"].ends_with('…'));
    assert_eq!(
        alert.annotations["summary"].chars().count(),
        crate::notify::escape::MAX_SUMMARY_CHARS
    );
    assert_eq!(
        alert.annotations["description"],
        "line one\\nline two\\u{7}"
    );
    for value in alert.labels.values().chain(alert.annotations.values()) {
        assert!(!value.chars().any(char::is_control), "{value:?}");
        assert!(!value.contains('\u{202e}'), "{value:?}");
    }
    assert_eq!(alert.generator_url, None);
    assert!(!alert.annotations.contains_key("console_url"));
    assert!(!alert.annotations.contains_key("revoke_url"));
    // Whatever the values, the body is one valid JSON array.
    let body = render_body(&notification).expect("json");
    let json: serde_json::Value = serde_json::from_slice(&body).expect("valid json");
    assert_eq!(json[0]["labels"]["user_name"], alert.labels["user_name"]);
}

#[test]
fn group_labels_cannot_take_the_fixed_names_or_each_other() {
    let notification = Notification {
        labels: BTreeMap::from([
            ("severity".to_owned(), "none".to_owned()),
            ("alertname".to_owned(), "other".to_owned()),
            ("tunnelwatch.alert_id".to_owned(), "forged".to_owned()),
            ("user.name".to_owned(), "alice".to_owned()),
            ("user_name".to_owned(), "bob".to_owned()),
        ]),
        ..sample_notification()
    };
    let alert = postable_alert(&notification);
    assert_eq!(alert.labels["alertname"], "brute-force");
    assert_eq!(alert.labels["severity"], "high");
    assert_eq!(alert.labels["tunnelwatch_alert_id"], "alert-7");
    assert_eq!(alert.labels["alertname_2"], "other");
    assert_eq!(alert.labels["severity_2"], "none");
    assert_eq!(alert.labels["tunnelwatch_alert_id_2"], "forged");
    assert_eq!(alert.labels["user_name"], "alice");
    assert_eq!(alert.labels["user_name_2"], "bob");
    assert!(alert.labels.keys().all(|name| is_label_name(name)));
    // The same notification, the same labels (Alertmanager's identity).
    assert_eq!(postable_alert(&notification).labels, alert.labels);
}

#[test]
fn empty_optional_fields_are_left_out() {
    let notification = Notification {
        user: None,
        source_ips: Vec::new(),
        countries: Vec::new(),
        description: String::new(),
        console_url: None,
        revoke_url: None,
        labels: BTreeMap::new(),
        ..sample_notification()
    };
    let alert = postable_alert(&notification);
    let names: Vec<&str> = alert.annotations.keys().map(String::as_str).collect();
    assert_eq!(names, ["count", "rule_name", "summary"]);
    assert_eq!(alert.labels.len(), 3);
    let json: serde_json::Value =
        serde_json::from_slice(&render_body(&notification).expect("json")).expect("json");
    assert!(json[0].get("generatorURL").is_none(), "{json}");
}

#[test]
fn the_endpoint_is_the_base_url_plus_the_api_path() {
    let endpoint = |url: &str| config(url).validate().expect("valid").to_string();
    assert_eq!(
        endpoint("https://am.example.org:9093"),
        "https://am.example.org:9093/api/v2/alerts"
    );
    assert_eq!(
        endpoint("https://am.example.org/"),
        "https://am.example.org/api/v2/alerts"
    );
    assert_eq!(
        endpoint("https://example.org/alertmanager/"),
        "https://example.org/alertmanager/api/v2/alerts"
    );
}

#[test]
fn bad_configs_are_refused_with_their_reason() {
    check_invalid(
        config("http://127.0.0.1:9093"),
        "url points at 127.0.0.1, a loopback address; set allow_private = true",
    );
    check_invalid(config("http://10.0.0.5:9093"), "10.0.0.5, a private");
    check_invalid(
        config("https://am.example.org/api/v2/alerts"),
        "base URL; /api/v2/alerts is appended",
    );
    check_invalid(config("https://am.example.org/?x=1"), "without a query");
    check_invalid(
        config("https://u:p@am.example.org/"),
        "must not hold a user or password (use bearer_token_file)",
    );
    check_invalid(
        config("ftp://am.example.org/"),
        "must be http:// or https://",
    );
    check_invalid(
        AlertmanagerConfig {
            timeout_secs: 0,
            ..config("https://am.example.org/")
        },
        "timeout_secs 0 is not between 1 and 600",
    );
    AlertmanagerConfig {
        allow_private: true,
        ..config("http://127.0.0.1:9093")
    }
    .validate()
    .expect("allow_private");
}

#[test]
fn config_parses_as_a_receiver_and_refuses_unknown_keys() {
    #[derive(Debug, Deserialize)]
    struct Wrapper {
        receivers: Vec<crate::route::ReceiverConfig>,
    }
    let text = r#"
[[receivers]]
name = "am"
type = "alertmanager"
url = "https://am.example.org:9093"
bearer_token_file = "/etc/tunnelwatch/am.token"
"#;
    let wrapper: Wrapper = toml::from_str(text).expect("valid");
    let receiver = &wrapper.receivers[0];
    let crate::route::ChannelConfig::Alertmanager(parsed) = &receiver.channel else {
        panic!("not an alertmanager receiver: {receiver:?}");
    };
    assert_eq!(parsed.timeout_secs, 10);
    assert!(!parsed.allow_private);
    assert_eq!(
        parsed.bearer_token_file.as_deref(),
        Some(std::path::Path::new("/etc/tunnelwatch/am.token"))
    );
    receiver.validate().expect("valid receiver");
    let error = toml::from_str::<Wrapper>(&format!("{text}bearer_token = \"t\"\n"))
        .expect_err("inline token accepted");
    assert!(error.to_string().contains("bearer_token"), "{error}");
}

#[test]
fn the_bearer_token_file_is_read_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("am.token");
    let with_token = |path: &std::path::Path| AlertmanagerConfig {
        bearer_token_file: Some(path.to_owned()),
        ..config("https://am.example.org/")
    };
    std::fs::write(&token, "s3cr3t-token\n").expect("write");
    let notifier = with_token(&token).build("am").expect("build");
    let header = notifier.authorization.as_ref().expect("a header");
    assert_eq!(header.as_bytes(), b"Bearer s3cr3t-token");
    assert!(header.is_sensitive());
    assert!(!format!("{notifier:?}").contains("s3cr3t"));

    std::fs::write(&token, "two words\n").expect("write");
    let error = with_token(&token).build("am").expect_err("white space");
    assert!(error.to_string().contains("white space"), "{error}");
    std::fs::write(&token, "tok\r\nX-Injected: 1").expect("write");
    with_token(&token)
        .build("am")
        .expect_err("a header injection");
    std::fs::write(&token, "\n").expect("write");
    let error = with_token(&token).build("am").expect_err("empty");
    assert!(error.to_string().contains("is empty"), "{error}");
    let error = with_token(&dir.path().join("missing"))
        .build("am")
        .expect_err("missing");
    assert!(
        error
            .to_string()
            .starts_with("cannot read bearer_token_file"),
        "{error}"
    );
}
