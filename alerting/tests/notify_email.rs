//! E-mail against a real SMTP server: aiosmtpd on loopback with STARTTLS (a throwaway CA)
//! and AUTH. The received mail is read back with Python's own e-mail parser.

mod notify_support;

use std::time::Duration;

use alerting::notify::email::{EmailConfig, TlsMode};
use alerting::notify::{Failure, Notifier};
use notify_support::{SmtpOptions, SmtpServer, free_port, notification};

const HOSTILE_USER: &str = "alice\r\nBcc: evil@x\r\n<script>alert(1)</script>\x1b[31m";

struct Relay {
    _dir: tempfile::TempDir,
    server: SmtpServer,
    config: EmailConfig,
}

/// aiosmtpd with STARTTLS and AUTH, and a config for it.
fn relay(options: impl FnOnce(&mut SmtpOptions)) -> Relay {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki =
        testbed::pki::server_certificate("tunnelwatch test mail CA", &["localhost", "127.0.0.1"]);
    let mut smtp_options = SmtpOptions {
        tls: Some((pki.chain_pem.clone(), pki.key_pem.clone())),
        auth: Some(("tw".to_owned(), "s3cret pass".to_owned())),
        ..SmtpOptions::default()
    };
    options(&mut smtp_options);
    let server = SmtpServer::start(dir.path(), free_port(), &smtp_options);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).expect("ca");
    let password_file = dir.path().join("smtp.pw");
    std::fs::write(&password_file, "s3cret pass\n").expect("password");
    let config = EmailConfig {
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port: Some(server.port),
        tls: TlsMode::Starttls,
        username: Some("tw".to_owned()),
        password_file: Some(password_file),
        from: "Tunnelwatch <alerts@tw.example.org>".to_owned(),
        to: vec!["soc@example.org".to_owned()],
        ca_file: Some(ca_file),
        timeout_secs: 10,
    };
    Relay {
        _dir: dir,
        server,
        config,
    }
}

#[tokio::test]
async fn a_hostile_alert_arrives_over_starttls_escaped_with_its_links() {
    let relay = relay(|_| {});
    let notifier = relay.config.build().expect("build");
    let mut hostile = notification("alert-7:1");
    hostile.user = Some(HOSTILE_USER.to_owned());
    hostile.rule_name = format!("Brute force {HOSTILE_USER}");
    notifier.send(&hostile).await.expect("sent");
    // A resend (after a crash before the outbox's commit) is the same message.
    notifier.send(&hostile).await.expect("sent again");

    let mails = relay.server.wait_for(2, Duration::from_secs(20)).await;
    let mail = &mails[0];
    assert!(mail.tls, "not over STARTTLS");
    assert!(mail.authenticated, "not authenticated");
    assert_eq!(mail.mail_from, "alerts@tw.example.org");
    assert_eq!(mail.rcpt_tos, ["soc@example.org"]);
    assert!(
        !mail.header_names().contains(&"bcc".to_owned()),
        "{:?}",
        mail.headers
    );
    let header_section = mail.raw.split("\r\n\r\n").next().expect("headers");
    assert!(
        !header_section
            .lines()
            .any(|line| line.to_ascii_lowercase().starts_with("bcc:")),
        "{header_section}"
    );
    assert!(
        !mail.subject.contains(['\r', '\n', '\x1b']),
        "{:?}",
        mail.subject
    );
    assert!(
        mail.subject
            .starts_with("[FIRING high] Brute force alice Bcc: evil@x <script>alert(1)</script> [31m: 12 failed logins"),
        "{:?}",
        mail.subject
    );
    assert_eq!(mail.message_id, "<tw.alert-7=3A1@tw.example.org>");
    assert_eq!(mails[1].message_id, mail.message_id);

    // The line ends are the wire's (CRLF); every CR or LF from the VPN was escaped.
    let text = mail
        .text
        .as_deref()
        .expect("a text part")
        .replace("\r\n", "\n");
    assert!(!text.contains('\r'), "{text:?}");
    assert!(
        text.contains("User: alice\\r\\nBcc: evil@x\\r\\n<script>alert(1)</script>\\u{1b}[31m\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'));
    assert!(!text.lines().any(|line| line.starts_with("Bcc:")));
    assert!(
        text.contains("Source addresses: 203.0.113.7, 198.51.100.9\n"),
        "{text}"
    );
    assert!(text.contains("Countries: NL, BR\n"));
    assert!(text.contains("Events: 12\n"));
    assert!(
        text.contains("First event: 2027-01-15T08:00:00Z\n"),
        "{text}"
    );
    assert!(text.contains("Last event: 2027-01-15T08:01:00Z\n"));
    assert!(text.contains("https://tw.example.org/alerts/alert-7"));
    assert!(text.contains("https://tw.example.org/revoke/alert-7?user=alice"));
    assert!(text.contains("opens a confirmation page"));

    let html = mail.html.as_deref().expect("an html part");
    assert!(!html.contains("<script>"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(html.contains("<a href=\"https://tw.example.org/alerts/alert-7\">"));
    assert!(html.contains("<a href=\"https://tw.example.org/revoke/alert-7?user=alice\">"));
    assert!(html.contains("opens a confirmation page"));
}

#[tokio::test]
async fn an_oversized_alert_is_bounded() {
    let relay = relay(|_| {});
    let notifier = relay.config.build().expect("build");
    let mut huge = notification("alert-8:1");
    huge.summary = "s".repeat(1_000_000);
    huge.description = "d\r\n".repeat(300_000);
    huge.source_ips = (0..10_000)
        .map(|index| format!("10.0.{}.{}", index / 256, index % 256))
        .collect();
    huge.user = Some("u".repeat(100_000));
    notifier.send(&huge).await.expect("sent");
    let mails = relay.server.wait_for(1, Duration::from_secs(20)).await;
    let mail = &mails[0];
    assert!(
        mail.subject.chars().count() <= 200,
        "{}",
        mail.subject.len()
    );
    let text = mail.text.as_deref().expect("text");
    assert!(text.len() < 40_000, "{}", text.len());
    assert!(text.contains("and 9980 more"));
    assert!(mail.raw.len() < 200_000, "{}", mail.raw.len());
}

#[tokio::test]
async fn a_wrong_password_is_permanent() {
    let relay = relay(|_| {});
    let password_file = relay.config.password_file.clone().expect("password file");
    std::fs::write(&password_file, "wrong").expect("password");
    let error = relay
        .config
        .build()
        .expect("build")
        .send(&notification("alert-7:1"))
        .await
        .expect_err("wrong password accepted");
    assert_eq!(error.failure, Failure::Permanent, "{error}");
    assert!(error.detail.contains("535"), "{error}");
    assert!(relay.server.mails().is_empty());
}

#[tokio::test]
async fn a_relay_with_a_certificate_from_another_ca_is_refused() {
    let relay = relay(|_| {});
    let other = testbed::pki::server_certificate("some other CA", &["127.0.0.1"]);
    let ca_file = relay.config.ca_file.clone().expect("ca file");
    std::fs::write(&ca_file, other.ca_pem).expect("ca");
    let error = relay
        .config
        .build()
        .expect("build")
        .send(&notification("alert-7:1"))
        .await
        .expect_err("untrusted certificate accepted");
    assert!(
        error.detail.to_ascii_lowercase().contains("certificate"),
        "{error}"
    );
    assert!(relay.server.mails().is_empty());
}

#[tokio::test]
async fn a_relay_that_is_down_is_transient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EmailConfig {
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port: Some(free_port()),
        tls: TlsMode::None,
        username: None,
        password_file: None,
        from: "alerts@tw.example.org".to_owned(),
        to: vec!["soc@example.org".to_owned()],
        ca_file: None,
        timeout_secs: 5,
    };
    let error = config
        .build()
        .expect("build")
        .send(&notification("alert-7:1"))
        .await
        .expect_err("nobody listens");
    assert_eq!(error.failure, Failure::Transient, "{error}");
    drop(dir);
}

#[test]
fn bad_configs_are_refused_with_their_reason() {
    let base =
        r#"{"smtp_host":"smtp.example.org","from":"alerts@example.org","to":["soc@example.org"]"#;
    let parse = |extra: &str| serde_json::from_str::<EmailConfig>(&format!("{base}{extra}}}"));
    let error = parse(r#","smtp_password":"x""#).expect_err("unknown key");
    assert!(
        error.to_string().contains("unknown field `smtp_password`"),
        "{error}"
    );
    let error = parse(r#","tls":"none""#)
        .expect("parses")
        .build()
        .expect_err("clear text off-host");
    assert!(
        error
            .to_string()
            .contains("only allowed to a relay on loopback"),
        "{error}"
    );
    let error = parse(r#","username":"tw","password_file":"/nonexistent/smtp.pw""#)
        .expect("parses")
        .build()
        .expect_err("missing password file");
    assert_eq!(
        error.to_string(),
        "cannot read password_file /nonexistent/smtp.pw"
    );
}
