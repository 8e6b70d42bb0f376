//! E-mail: [`EmailConfig`] builds an [`EmailNotifier`], which renders a [`Notification`] as
//! a multipart (text and HTML) mail and hands it to an SMTP relay with lettre over rustls.
//!
//! Rendering is pure ([`render`]): the subject, both bodies and the `Message-ID` come from
//! the notification alone (and the date given), so a resend is the same message. Every
//! VPN-derived string goes through [`super::escape`] for its medium.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lettre::message::{Mailbox, Message, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::transport::smtp::response::Severity;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use sha2::Digest;

use super::escape::{self, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_SUMMARY_CHARS};
use super::{DeliveryError, Error, Failure, Notification, Notifier, Result};

/// The longest subject line, in characters.
const MAX_SUBJECT_CHARS: usize = 200;

/// `[[alerting.receivers]] type = "email"`: an SMTP relay and who gets the mail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: String,
    /// Defaults to 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    /// SMTP AUTH user; with `password_file`, or neither.
    #[serde(default)]
    pub username: Option<String>,
    /// The SMTP password, alone in this file (a trailing newline is ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// `Tunnelwatch <alerts@example.org>` or `alerts@example.org`.
    pub from: String,
    pub to: Vec<String>,
    /// Trust only the CA certificates in this PEM file; without it, the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// For each SMTP command (connect, each reply); the whole send gets four times this.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_timeout_secs() -> u64 {
    30
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS, which must succeed (submission, port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No TLS: only to a relay on this host (loopback), else a configuration error.
    None,
}

impl EmailConfig {
    /// Checks what needs no file: addresses, the port, TLS to a host off this machine.
    pub fn validate(&self) -> Result<()> {
        let host = self.smtp_host.trim();
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::Notifier(format!(
                "smtp_host {:?} is not a host name or address",
                self.smtp_host
            )));
        }
        if self.tls == TlsMode::None && !is_loopback_host(host) {
            return Err(Error::Notifier(format!(
                "tls = \"none\" sends the password and the alerts in clear text: only allowed to a relay on loopback (localhost, 127.0.0.1, ::1), not {host}"
            )));
        }
        if self.smtp_port == Some(0) {
            return Err(Error::Notifier("smtp_port must not be 0".to_owned()));
        }
        match (&self.username, &self.password_file) {
            (Some(_), None) => {
                return Err(Error::Notifier(
                    "username is set without password_file".to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::Notifier(
                    "password_file is set without username".to_owned(),
                ));
            }
            _ => {}
        }
        parse_mailbox("from", &self.from)?;
        if self.to.is_empty() {
            return Err(Error::Notifier("to names no recipient".to_owned()));
        }
        for to in &self.to {
            parse_mailbox("to", to)?;
        }
        if !(1..=600).contains(&self.timeout_secs) {
            return Err(Error::Notifier(format!(
                "timeout_secs {} is not between 1 and 600",
                self.timeout_secs
            )));
        }
        Ok(())
    }

    /// Reads `password_file` and `ca_file` and builds the notifier (no connection yet).
    pub fn build(&self) -> Result<EmailNotifier> {
        self.validate()?;
        let host = self.smtp_host.trim().to_owned();
        let port = self.smtp_port.unwrap_or(match self.tls {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        });
        let timeout = Duration::from_secs(self.timeout_secs);
        let tls = match self.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(self.tls_parameters(&host)?),
            TlsMode::Tls => Tls::Wrapper(self.tls_parameters(&host)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
            .port(port)
            .tls(tls)
            .timeout(Some(timeout));
        if let (Some(username), Some(password_file)) = (&self.username, &self.password_file) {
            let password = read_password(password_file)?;
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        let from = parse_mailbox("from", &self.from)?;
        let to = self
            .to
            .iter()
            .map(|to| parse_mailbox("to", to))
            .collect::<Result<Vec<_>>>()?;
        Ok(EmailNotifier {
            transport: builder.build(),
            relay: format!("{host}:{port}"),
            from,
            to,
            send_timeout: timeout * 4,
        })
    }

    fn tls_parameters(&self, host: &str) -> Result<TlsParameters> {
        let mut builder = TlsParameters::builder(host.to_owned());
        match &self.ca_file {
            Some(path) => {
                let pem = super::read_file("ca_file", path)?;
                // Checked the same way as for webhooks, for the same words on a bad file.
                super::root_store(Some((path, &pem)))?;
                let certificate = Certificate::from_pem(&pem).map_err(|error| {
                    Error::Notifier(format!("ca_file {}: {error}", path.display()))
                })?;
                builder = builder
                    .certificate_store(CertificateStore::None)
                    .add_root_certificate(certificate);
            }
            None => builder = builder.certificate_store(CertificateStore::WebpkiRoots),
        }
        builder
            .build_rustls()
            .map_err(|error| Error::Notifier(format!("cannot set up TLS for {host}: {error}")))
    }
}

fn read_password(path: &Path) -> Result<String> {
    let bytes = super::read_file("password_file", path)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Notifier(format!("password_file {} is not UTF-8", path.display())))?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(Error::Notifier(format!(
            "password_file {} is empty",
            path.display()
        )));
    }
    Ok(password.to_owned())
}

fn parse_mailbox(key: &str, address: &str) -> Result<Mailbox> {
    address.parse::<Mailbox>().map_err(|error| {
        Error::Notifier(format!("{key} {address:?} is not a mail address: {error}"))
    })
}

/// `localhost`, `127.0.0.0/8`, `::1` (and `[::1]`).
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Sends notifications as mail through one SMTP relay (connections pooled by lettre).
#[derive(Clone)]
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    relay: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    send_timeout: Duration,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("relay", &self.relay)
            .field("from", &self.from.to_string())
            .field("n_to", &self.to.len())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Notifier for EmailNotifier {
    async fn send(&self, notification: &Notification) -> std::result::Result<(), DeliveryError> {
        let message = render(notification, &self.from, &self.to, SystemTime::now())
            .map_err(|error| DeliveryError::permanent(format!("cannot build the mail: {error}")))?;
        let sent = tokio::time::timeout(self.send_timeout, self.transport.send(message)).await;
        match sent {
            Ok(Ok(response)) => {
                tracing::debug!(
                    relay = %self.relay,
                    notification = %notification.id,
                    code = %response.code(),
                    "mail accepted by the relay"
                );
                Ok(())
            }
            Ok(Err(error)) => Err(DeliveryError {
                failure: classify(&error),
                detail: format!("smtp relay {}: {error}", self.relay),
            }),
            Err(_elapsed) => Err(DeliveryError::transient(format!(
                "smtp relay {}: no answer within {} s",
                self.relay,
                self.send_timeout.as_secs()
            ))),
        }
    }
}

/// Permanent for a 5xx reply and for the client's own errors (no AUTH mechanism in common,
/// a message it cannot send); transient for a 4xx reply, a refused or broken connection, a
/// timeout, a failed TLS handshake (often a relay restarting; given up on after the
/// outbox's retry window like any transient failure).
pub fn classify(error: &lettre::transport::smtp::Error) -> Failure {
    let severity = error.status().map(|code| code.severity);
    classify_parts(severity, error.is_client())
}

fn classify_parts(severity: Option<Severity>, is_client: bool) -> Failure {
    match severity {
        Some(Severity::PermanentNegativeCompletion) => Failure::Permanent,
        Some(Severity::TransientNegativeCompletion) => Failure::Transient,
        _ if is_client => Failure::Permanent,
        _ => Failure::Transient,
    }
}

/// The mail for `notification`: subject, `Message-ID`, text and HTML bodies. Pure (the
/// `Date` header is `date`).
pub fn render(
    notification: &Notification,
    from: &Mailbox,
    to: &[Mailbox],
    date: SystemTime,
) -> std::result::Result<Message, lettre::error::Error> {
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(subject(notification))
        .message_id(Some(message_id(notification, from.email.domain())))
        .date(date);
    for recipient in to {
        builder = builder.to(recipient.clone());
    }
    builder.multipart(MultiPart::alternative_plain_html(
        text_body(notification),
        html_body(notification),
    ))
}

/// `[FIRING high] <rule name>: <summary>`: one line, no control characters, bounded.
pub fn subject(notification: &Notification) -> String {
    let line = format!(
        "[{} {}] {}: {}",
        notification.status_word(),
        escape::one_line(&notification.severity, escape::MAX_WORD_CHARS),
        escape::one_line(&notification.rule_name, MAX_NAME_CHARS),
        escape::one_line(&notification.summary, MAX_SUMMARY_CHARS),
    );
    escape::one_line(&line, MAX_SUBJECT_CHARS)
}

/// `<tw.<id>@<domain>>`: the id with every byte but `A-Z a-z 0-9 - _` as `=XX`, or, if
/// that would be long, the SHA-256 of the id. The same notification is the same message.
pub fn message_id(notification: &Notification, domain: &str) -> String {
    let mut local = String::new();
    for byte in notification.id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            local.push(char::from(byte));
        } else {
            local.push_str(&format!("={byte:02X}"));
        }
    }
    if local.is_empty() || local.len() > 128 {
        local = model::hex::encode(&sha2::Sha256::digest(notification.id.as_bytes()));
    }
    let domain_ok = !domain.is_empty()
        && domain
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-.".contains(&byte));
    let domain = if domain_ok { domain } else { "tunnelwatch" };
    format!("<tw.{local}@{domain}>")
}

/// The facts both bodies show, each escaped with `escape` (per medium).
fn facts(
    notification: &Notification,
    escape: &dyn Fn(&str, usize) -> String,
) -> Vec<(&'static str, String)> {
    let name = |value: &str| escape(value, MAX_NAME_CHARS);
    let mut facts = vec![
        ("Rule", name(&notification.rule_name)),
        (
            "Severity",
            escape(&notification.severity, escape::MAX_WORD_CHARS),
        ),
        (
            "Status",
            escape(&notification.status, escape::MAX_WORD_CHARS),
        ),
        (
            "User",
            notification
                .user
                .as_deref()
                .map_or_else(|| "(none)".to_owned(), name),
        ),
        (
            "Source addresses",
            escape::list(&notification.source_ips, "(none)", name),
        ),
        (
            "Countries",
            escape::list(&notification.countries, "(none)", name),
        ),
        ("Events", notification.count.to_string()),
        ("First event", notification.first_event.to_string()),
        ("Last event", notification.last_event.to_string()),
    ];
    let labels: Vec<String> = notification
        .labels
        .iter()
        .map(|(key, value)| format!("{} = {}", name(key), name(value)))
        .collect();
    if !labels.is_empty() {
        facts.push((
            "Labels",
            escape::list(&labels, "", |label| label.to_owned()),
        ));
    }
    facts.push(("Alert", name(&notification.alert_id)));
    facts
}

/// The plain-text body.
pub fn text_body(notification: &Notification) -> String {
    let mut body = format!(
        "{}\n\n",
        escape::text(&notification.summary, MAX_SUMMARY_CHARS)
    );
    for (label, value) in facts(notification, &escape::text) {
        body.push_str(&format!("{label}: {value}\n"));
    }
    if !notification.description.is_empty() {
        body.push_str(&format!(
            "\n{}\n",
            escape::text(&notification.description, MAX_DESCRIPTION_CHARS)
        ));
    }
    body.push('\n');
    match notification.console_url.as_deref().and_then(escape::link) {
        Some(url) => body.push_str(&format!("Open in the console: {url}\n")),
        None => body.push_str("Open in the console: (no link configured)\n"),
    }
    if let Some(url) = notification.revoke_url.as_deref().and_then(escape::link) {
        body.push_str(&format!(
            "Revoke this user's access (opens a confirmation page, nothing happens until you confirm): {url}\n"
        ));
    }
    body.push_str(&format!(
        "\n-- \ntunnelwatch notification {}\n",
        escape::text(&notification.id, MAX_NAME_CHARS)
    ));
    body
}

/// The HTML body: the same facts as the text body, HTML-escaped.
pub fn html_body(notification: &Notification) -> String {
    let title = escape::html(&subject(notification), MAX_SUBJECT_CHARS);
    let mut body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head><body>\n<p><strong>{}</strong></p>\n<table>\n",
        escape::html(&notification.summary, MAX_SUMMARY_CHARS)
    );
    for (label, value) in facts(notification, &escape::html) {
        body.push_str(&format!(
            "<tr><th align=\"left\">{label}</th><td>{value}</td></tr>\n"
        ));
    }
    body.push_str("</table>\n");
    if !notification.description.is_empty() {
        body.push_str(&format!(
            "<p>{}</p>\n",
            escape::html(&notification.description, MAX_DESCRIPTION_CHARS)
        ));
    }
    if let Some(url) = notification.console_url.as_deref().and_then(escape::link) {
        body.push_str(&format!(
            "<p><a href=\"{}\">Open in the console</a></p>\n",
            escape::html_href(url)
        ));
    }
    if let Some(url) = notification.revoke_url.as_deref().and_then(escape::link) {
        body.push_str(&format!(
            "<p><a href=\"{}\">Revoke this user's access</a> (opens a confirmation page; nothing happens until you confirm)</p>\n",
            escape::html_href(url)
        ));
    }
    body.push_str(&format!(
        "<p><small>tunnelwatch notification {}</small></p>\n</body></html>\n",
        escape::html(&notification.id, MAX_NAME_CHARS)
    ));
    body
}

#[cfg(test)]
mod tests;
