//! Notifications: what one alert's page says ([`Notification`]), the channels that carry it
//! (e-mail, webhooks, a push to Alertmanager) and the durable outbox that delivers each once.
//!
//! The seam is [`Notifier`]: one channel that sends one [`Notification`] and says whether a
//! failure is worth retrying ([`DeliveryError`], [`Failure`]). [`email::EmailConfig`],
//! [`webhook::WebhookConfig`] and [`alertmanager::AlertmanagerConfig`] each build one
//! (config → build → running thing), and [`outbox::Outbox`] writes every notification to
//! disk before any channel sees it, then runs one delivery loop per receiver that retries,
//! dead-letters and commits.
//!
//! Everything in a notification that came from the VPN (user names, countries, the rule's
//! group values) is hostile until escaped for the medium that carries it; `escape` holds
//! the one set of rules every channel uses.

pub mod alertmanager;
pub mod email;
mod escape;
mod http_client;
pub mod mute;
pub mod outbox;
pub mod webhook;

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One page about one alert: written to the outbox before it is sent, and sent to every
/// receiver it was routed to. `id` is the idempotency key: the same for every retry and
/// every receiver (the webhook header, the mail's Message-ID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key: unique per alert transition (`<alert id>:<transition number>`).
    pub id: String,
    /// The alert (stable across its state changes).
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// One line for people, e.g. "12 failed logins for alice in 1m".
    pub summary: String,
    pub description: String,
    /// The rule's group values (`user.name = alice`, …).
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub source_ips: Vec<String>,
    pub countries: Vec<String>,
    /// Events behind the alert.
    pub count: u64,
    pub first_event: Timestamp,
    pub last_event: Timestamp,
    /// The alert in the console.
    pub console_url: Option<String>,
    /// The confirmation page of a revoke (a page that asks, never an action on GET).
    pub revoke_url: Option<String>,
}

impl Notification {
    /// The status as the subject line and the payloads spell it: `FIRING` or `RESOLVED`
    /// (anything else, upper-cased and bounded).
    pub fn status_word(&self) -> String {
        escape::one_line(&self.status, escape::MAX_WORD_CHARS).to_uppercase()
    }
}

/// Most alerts a digest names one by one (the rest are counted).
pub const MAX_DIGEST_LINES: usize = 50;

/// One page for several notifications of one group (same status): what they share, a line
/// each in the description, their counts added up. One notification is its own digest. The
/// id is derived from the members' ids, so the same group is the same message.
pub fn digest(members: &[Notification]) -> Notification {
    use sha2::Digest as _;
    let Some(first) = members.first() else {
        return Notification {
            id: "empty".to_owned(),
            alert_id: String::new(),
            rule_id: String::new(),
            rule_name: String::new(),
            severity: String::new(),
            status: String::new(),
            summary: String::new(),
            description: String::new(),
            labels: BTreeMap::new(),
            user: None,
            source_ips: Vec::new(),
            countries: Vec::new(),
            count: 0,
            first_event: Timestamp::UNIX_EPOCH,
            last_event: Timestamp::UNIX_EPOCH,
            console_url: None,
            revoke_url: None,
        };
    };
    if members.len() == 1 {
        return first.clone();
    }
    let same = |get: &dyn Fn(&Notification) -> &str| {
        members
            .iter()
            .all(|member| get(member) == get(first))
            .then(|| get(first).to_owned())
    };
    let mut hasher = sha2::Sha256::new();
    for member in members {
        hasher.update(member.id.as_bytes());
        hasher.update([0]);
    }
    let id = format!("digest-{}", &model::hex::encode(&hasher.finalize())[..32]);
    let severity = members
        .iter()
        .map(|member| member.severity.as_str())
        .max_by_key(|severity| severity_rank(severity))
        .unwrap_or("info")
        .to_owned();
    let rule_name = same(&|member| member.rule_name.as_str())
        .unwrap_or_else(|| format!("{} rules", distinct(members, |member| &member.rule_id)));
    let who: Vec<&str> = members
        .iter()
        .filter_map(|member| member.user.as_deref())
        .collect();
    let summary = if who.is_empty() {
        format!("{} alerts", members.len())
    } else {
        let mut names: Vec<&str> = who.iter().take(5).copied().collect();
        names.dedup();
        let more = if who.len() > 5 { ", …" } else { "" };
        format!("{} alerts: {}{more}", members.len(), names.join(", "))
    };
    let mut description: Vec<String> = members
        .iter()
        .take(MAX_DIGEST_LINES)
        .map(|member| {
            let user = member
                .user
                .as_deref()
                .map(|user| format!(" [{user}]"))
                .unwrap_or_default();
            format!("- {}{user}: {}", member.rule_name, member.summary)
        })
        .collect();
    if members.len() > MAX_DIGEST_LINES {
        description.push(format!("… and {} more", members.len() - MAX_DIGEST_LINES));
    }
    let labels = first
        .labels
        .iter()
        .filter(|(name, value)| {
            members
                .iter()
                .all(|member| member.labels.get(*name) == Some(*value))
        })
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let union = |get: &dyn Fn(&Notification) -> &Vec<String>| {
        let mut all: Vec<String> = members
            .iter()
            .flat_map(|member| get(member).clone())
            .collect();
        all.sort();
        all.dedup();
        all.truncate(MAX_DIGEST_LINES);
        all
    };
    let user = same(&|member| member.user.as_deref().unwrap_or("")).filter(|user| !user.is_empty());
    Notification {
        id,
        alert_id: first.alert_id.clone(),
        rule_id: same(&|member| member.rule_id.as_str()).unwrap_or_default(),
        rule_name,
        severity,
        status: first.status.clone(),
        summary,
        description: description.join("\n"),
        labels,
        revoke_url: user.as_ref().and(first.revoke_url.clone()),
        user,
        source_ips: union(&|member| &member.source_ips),
        countries: union(&|member| &member.countries),
        count: members.iter().map(|member| member.count).sum(),
        first_event: members
            .iter()
            .map(|member| member.first_event)
            .min()
            .unwrap_or(first.first_event),
        last_event: members
            .iter()
            .map(|member| member.last_event)
            .max()
            .unwrap_or(first.last_event),
        // The console's alert list rather than one of them.
        console_url: first.console_url.as_deref().map(|url| {
            url.find("/#/alerts/")
                .map_or(url, |at| &url[..at + "/#/alerts".len()])
                .to_owned()
        }),
    }
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 5,
        "high" => 4,
        "medium" => 3,
        "low" => 2,
        _ => 1,
    }
}

fn distinct(members: &[Notification], get: impl Fn(&Notification) -> &String) -> usize {
    members
        .iter()
        .map(get)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

/// One channel that carries notifications: an SMTP relay, a webhook. Built from its config
/// ([`email::EmailConfig::build`], [`webhook::WebhookConfig::build`]) and driven by the
/// [`outbox::Outbox`], which retries a [`Failure::Transient`] failure and dead-letters a
/// [`Failure::Permanent`] one.
///
/// A notification may be sent twice (a crash between the send and the outbox's commit):
/// every channel marks it with [`Notification::id`] (the mail's `Message-ID`, the
/// webhook's `Idempotency-Key`) so that the receiving end can tell.
#[async_trait::async_trait]
pub trait Notifier: Send + Sync + std::fmt::Debug {
    /// Sends one notification; returns once the other end has accepted it.
    async fn send(&self, notification: &Notification) -> std::result::Result<(), DeliveryError>;
}

/// Whether a failed delivery is worth trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Failure {
    /// The other end may accept it later: a 4xx SMTP reply, an HTTP 5xx, 408 or 429, a
    /// refused connection, a timeout.
    Transient,
    /// Asking again the same way fails the same way: a 5xx SMTP reply, an HTTP 4xx, a
    /// redirect, an address the SSRF guard refuses.
    Permanent,
}

/// A delivery that failed, and whether to retry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{failure:?} delivery failure: {detail}")]
pub struct DeliveryError {
    pub failure: Failure,
    pub detail: String,
}

impl DeliveryError {
    pub fn transient(detail: impl Into<String>) -> DeliveryError {
        DeliveryError {
            failure: Failure::Transient,
            detail: detail.into(),
        }
    }

    pub fn permanent(detail: impl Into<String>) -> DeliveryError {
        DeliveryError {
            failure: Failure::Permanent,
            detail: detail.into(),
        }
    }
}

pub use crate::error::{Error, Result};

/// Reads a secret or a CA file named in the configuration.
pub(crate) fn read_file(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        what,
        path: path.to_owned(),
        source,
    })
}

/// The roots a TLS client trusts: only the CAs in `ca_pem` (from `ca_file`, named `path`),
/// else the Mozilla roots of `webpki-roots`.
pub(crate) fn root_store(ca: Option<(&std::path::Path, &[u8])>) -> Result<rustls::RootCertStore> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    let Some((path, pem)) = ca else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    for (index, certificate) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let certificate = certificate.map_err(|error| {
            Error::Notifier(format!(
                "ca_file {}: certificate {} is not valid PEM: {error}",
                path.display(),
                index + 1
            ))
        })?;
        roots.add(certificate).map_err(|error| {
            Error::Notifier(format!(
                "ca_file {}: certificate {} is not a usable CA certificate: {error}",
                path.display(),
                index + 1
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(Error::Notifier(format!(
            "ca_file {} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        )));
    }
    Ok(roots)
}

/// A notification with every field set, for the channels' tests.
#[cfg(test)]
pub(crate) fn sample_notification() -> Notification {
    Notification {
        id: "alert-7:1".to_owned(),
        alert_id: "alert-7".to_owned(),
        rule_id: "brute-force".to_owned(),
        rule_name: "Brute force".to_owned(),
        severity: "high".to_owned(),
        status: "firing".to_owned(),
        summary: "12 failed logins for alice in 1m".to_owned(),
        description: "Many failed logins from one address.".to_owned(),
        labels: BTreeMap::from([("user.name".to_owned(), "alice".to_owned())]),
        user: Some("alice".to_owned()),
        source_ips: vec!["203.0.113.7".to_owned()],
        countries: vec!["NL".to_owned()],
        count: 12,
        first_event: Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH),
        last_event: Timestamp::from_second(1_800_000_060).unwrap_or(Timestamp::UNIX_EPOCH),
        console_url: Some("https://tw.example.org/alerts/alert-7".to_owned()),
        revoke_url: Some("https://tw.example.org/revoke/alert-7?user=alice".to_owned()),
    }
}
