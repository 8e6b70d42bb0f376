use super::*;
use crate::notify::sample_notification;

const HOSTILE_USER: &str = "alice\r\nBcc: evil@x\r\n<script>alert(1)</script>\x1b[31m";

fn config() -> EmailConfig {
    EmailConfig {
        smtp_host: "smtp.example.org".to_owned(),
        smtp_port: None,
        tls: TlsMode::Starttls,
        username: None,
        password_file: None,
        from: "Tunnelwatch <alerts@example.org>".to_owned(),
        to: vec!["soc@example.org".to_owned()],
        ca_file: None,
        timeout_secs: 30,
    }
}

#[track_caller]
fn check_invalid(config: EmailConfig, expect: &str) {
    let error = config.validate().expect_err("invalid config accepted");
    assert!(error.to_string().contains(expect), "{error}");
    assert_eq!(error.kind(), model::ErrorKind::Invalid);
}

#[test]
fn config_parses_and_refuses_unknown_keys() {
    let parsed: EmailConfig = toml_like(
        r#"{"smtp_host":"smtp.example.org","smtp_port":587,"tls":"starttls","username":"tw","password_file":"/etc/tunnelwatch/smtp.pw","from":"alerts@example.org","to":["a@example.org"],"ca_file":"/etc/ca.pem","timeout_secs":10}"#,
    )
    .expect("valid config");
    assert_eq!(parsed.tls, TlsMode::Starttls);
    assert_eq!(parsed.smtp_port, Some(587));
    let error = toml_like::<EmailConfig>(
        r#"{"smtp_host":"h","from":"a@b.c","to":["a@b.c"],"password":"hunter2"}"#,
    )
    .expect_err("inline password accepted");
    assert!(error.contains("unknown field `password`"), "{error}");
    let error = toml_like::<EmailConfig>(r#"{"smtp_host":"h","from":"a@b.c","to":[],"tls":"ssl"}"#)
        .expect_err("tls = ssl accepted");
    assert!(error.contains("unknown variant `ssl`"), "{error}");
}

fn toml_like<T: serde::de::DeserializeOwned>(json: &str) -> std::result::Result<T, String> {
    serde_json::from_str(json).map_err(|error| error.to_string())
}

#[test]
fn clear_text_only_to_loopback() {
    let mut plain = config();
    plain.tls = TlsMode::None;
    check_invalid(plain.clone(), "only allowed to a relay on loopback");
    for host in ["localhost", "127.0.0.1", "127.9.9.9", "::1", "[::1]"] {
        plain.smtp_host = host.to_owned();
        plain.validate().expect(host);
    }
}

#[test]
fn bad_settings_are_named() {
    check_invalid(
        EmailConfig {
            to: vec![],
            ..config()
        },
        "to names no recipient",
    );
    check_invalid(
        EmailConfig {
            from: "not an address".to_owned(),
            ..config()
        },
        "from \"not an address\" is not a mail address",
    );
    check_invalid(
        EmailConfig {
            username: Some("tw".to_owned()),
            ..config()
        },
        "username is set without password_file",
    );
    check_invalid(
        EmailConfig {
            timeout_secs: 0,
            ..config()
        },
        "timeout_secs 0",
    );
    check_invalid(
        EmailConfig {
            smtp_host: "smtp.example.org\r\nRCPT TO:<x>".to_owned(),
            ..config()
        },
        "is not a host name",
    );
}

#[test]
fn a_missing_password_file_is_named() {
    let missing = std::path::PathBuf::from("/nonexistent/tunnelwatch/smtp.pw");
    let error = EmailConfig {
        username: Some("tw".to_owned()),
        password_file: Some(missing),
        ..config()
    }
    .build()
    .expect_err("missing password file accepted");
    assert_eq!(
        error.to_string(),
        "cannot read password_file /nonexistent/tunnelwatch/smtp.pw"
    );
    assert_eq!(error.kind(), model::ErrorKind::NotFound);
}

#[test]
fn subject_is_one_bounded_line() {
    let mut notification = sample_notification();
    assert_eq!(
        subject(&notification),
        "[FIRING high] Brute force: 12 failed logins for alice in 1m"
    );
    notification.rule_name = HOSTILE_USER.to_owned();
    notification.summary = "x".repeat(10_000);
    let hostile = subject(&notification);
    assert!(!hostile.contains(['\r', '\n', '\x1b']), "{hostile:?}");
    assert_eq!(hostile.chars().count(), MAX_SUBJECT_CHARS);
    assert!(hostile.starts_with("[FIRING high] alice Bcc: evil@x <script>"));
}

#[test]
fn message_id_follows_the_notification() {
    let notification = sample_notification();
    assert_eq!(
        message_id(&notification, "example.org"),
        "<tw.alert-7=3A1@example.org>"
    );
    let mut hostile = sample_notification();
    hostile.id = format!("a>\r\nBcc: x{}", "y".repeat(200));
    let id = message_id(&hostile, "bad domain>");
    assert!(
        id.starts_with("<tw.") && id.ends_with("@tunnelwatch>"),
        "{id}"
    );
    assert_eq!(id.len(), "<tw.@tunnelwatch>".len() + 64);
}

#[test]
fn bodies_escape_per_medium_and_carry_the_links() {
    let mut notification = sample_notification();
    notification.user = Some(HOSTILE_USER.to_owned());
    notification.countries = vec!["<b>NL</b>".to_owned()];
    let text = text_body(&notification);
    assert!(
        text.contains("User: alice\\r\\nBcc: evil@x\\r\\n<script>alert(1)</script>\\u{1b}[31m\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b') && !text.contains('\r'));
    assert!(!text.lines().any(|line| line.starts_with("Bcc:")));
    assert!(text.contains("Open in the console: https://tw.example.org/alerts/alert-7\n"));
    assert!(text.contains("opens a confirmation page"));
    assert!(text.contains("https://tw.example.org/revoke/alert-7?user=alice"));
    assert!(text.contains("Events: 12\n"));
    assert!(text.contains("Source addresses: 203.0.113.7\n"));

    let html = html_body(&notification);
    assert!(
        !html.contains("<script>") && !html.contains("<b>NL"),
        "{html}"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\u{1b}[31m"));
    assert!(html.contains("&lt;b&gt;NL&lt;/b&gt;"));
    assert!(html.contains(
        "<a href=\"https://tw.example.org/revoke/alert-7?user=alice\">Revoke this user&#39;s access</a> (opens a confirmation page"
    ) || html.contains("<a href=\"https://tw.example.org/revoke/alert-7?user=alice\">Revoke this user's access</a> (opens a confirmation page"));
}

#[test]
fn a_link_that_is_not_http_is_not_rendered() {
    let mut notification = sample_notification();
    notification.console_url = Some("javascript:alert(1)".to_owned());
    notification.revoke_url = Some("https://x/\"><script>".to_owned());
    let html = html_body(&notification);
    assert!(!html.contains("javascript:"), "{html}");
    assert!(!html.contains("<script>"), "{html}");
    assert!(text_body(&notification).contains("(no link configured)"));
}

#[test]
fn the_mail_is_multipart_with_the_headers_set() {
    let notification = sample_notification();
    let from: Mailbox = "Tunnelwatch <alerts@example.org>".parse().expect("from");
    let to: Mailbox = "soc@example.org".parse().expect("to");
    let message = render(&notification, &from, &[to], SystemTime::UNIX_EPOCH).expect("render");
    let formatted = String::from_utf8(message.formatted()).expect("utf-8");
    assert!(
        formatted.contains("Message-ID: <tw.alert-7=3A1@example.org>\r\n"),
        "{formatted}"
    );
    assert!(
        formatted
            .contains("Subject: [FIRING high] Brute force: 12 failed logins for alice in 1m\r\n")
    );
    assert!(formatted.contains("multipart/alternative"));
    assert!(formatted.contains("text/plain"));
    assert!(formatted.contains("text/html"));
    assert_eq!(message.envelope().to().len(), 1);
}

#[test]
fn replies_are_classified() {
    assert_eq!(
        classify_parts(Some(Severity::PermanentNegativeCompletion), false),
        Failure::Permanent
    );
    assert_eq!(
        classify_parts(Some(Severity::TransientNegativeCompletion), false),
        Failure::Transient
    );
    assert_eq!(classify_parts(None, false), Failure::Transient);
    assert_eq!(classify_parts(None, true), Failure::Permanent);
}
