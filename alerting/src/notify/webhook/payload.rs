//! The webhook bodies: tunnelwatch's own (the [`Notification`] as JSON), Slack's incoming
//! webhook message, and Alertmanager's webhook payload, version 4 (`prometheus/alertmanager`
//! `notify/webhook`: `template.Data` plus `version`, `groupKey` and `truncatedAlerts`), for
//! receivers written for Alertmanager. Pure.
//!
//! JSON escapes what JSON must; the Slack text is also escaped for Slack's markup (`&`, `<`,
//! `>`) and stripped of control characters, since Slack renders it.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::Digest;

use super::Format;
use crate::notify::Notification;
use crate::notify::escape::{self, MAX_NAME_CHARS, MAX_SUMMARY_CHARS};

/// The body for `notification` in `format`; `receiver` is the receiver's name (the
/// Alertmanager payload carries it).
pub fn render_body(
    notification: &Notification,
    format: Format,
    receiver: &str,
) -> Result<Vec<u8>, serde_json::Error> {
    match format {
        Format::Generic => serde_json::to_vec(notification),
        Format::Slack => serde_json::to_vec(&SlackMessage {
            text: slack_text(notification),
        }),
        Format::Alertmanager => serde_json::to_vec(&alertmanager(notification, receiver)),
    }
}

#[derive(Serialize)]
struct SlackMessage {
    text: String,
}

/// Slack's markup escapes: `&`, `<`, `>` (after [`escape::text`]).
fn slack_escape(input: &str, max_chars: usize) -> String {
    escape::text(input, max_chars)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack_text(notification: &Notification) -> String {
    let name = |value: &str| slack_escape(value, MAX_NAME_CHARS);
    let mut text = format!(
        "*[{} {}] {}*: {}\n",
        notification.status_word(),
        name(&notification.severity),
        name(&notification.rule_name),
        slack_escape(&notification.summary, MAX_SUMMARY_CHARS),
    );
    if let Some(user) = &notification.user {
        text.push_str(&format!("User: {}\n", name(user)));
    }
    text.push_str(&format!(
        "Source addresses: {}\nCountries: {}\nEvents: {} ({} to {})\n",
        escape::list(&notification.source_ips, "(none)", name),
        escape::list(&notification.countries, "(none)", name),
        notification.count,
        notification.first_event,
        notification.last_event,
    ));
    if let Some(url) = notification.console_url.as_deref().and_then(escape::link) {
        text.push_str(&format!("<{}|Open in the console>\n", slack_url(url)));
    }
    if let Some(url) = notification.revoke_url.as_deref().and_then(escape::link) {
        text.push_str(&format!(
            "<{}|Revoke access> (opens a confirmation page)\n",
            slack_url(url)
        ));
    }
    text
}

/// A URL inside Slack's `<url|label>`: `|` and `>` would end it early.
fn slack_url(url: &str) -> String {
    url.replace('&', "&amp;")
        .replace('<', "%3C")
        .replace('>', "%3E")
        .replace('|', "%7C")
}

/// Alertmanager's webhook message, version 4.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AlertmanagerMessage {
    pub version: &'static str,
    pub group_key: String,
    pub truncated_alerts: u64,
    pub status: String,
    pub receiver: String,
    pub group_labels: BTreeMap<String, String>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<AlertmanagerAlert>,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AlertmanagerAlert {
    pub status: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    /// Alertmanager's zero time (`0001-01-01T00:00:00Z`) while firing.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// Alertmanager's spelling of "no end yet".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) fn alertmanager(notification: &Notification, receiver: &str) -> AlertmanagerMessage {
    let status = if notification.status == "resolved" {
        "resolved"
    } else {
        "firing"
    };
    // The rule's group values, then the names Alertmanager receivers look for.
    let mut labels = notification.labels.clone();
    labels.insert("alertname".to_owned(), notification.rule_name.clone());
    labels.insert("severity".to_owned(), notification.severity.clone());
    labels.insert("rule_id".to_owned(), notification.rule_id.clone());
    labels.insert("alert_id".to_owned(), notification.alert_id.clone());
    if let Some(user) = &notification.user {
        labels.insert("user".to_owned(), user.clone());
    }
    let mut annotations = BTreeMap::from([
        ("summary".to_owned(), notification.summary.clone()),
        ("description".to_owned(), notification.description.clone()),
        ("count".to_owned(), notification.count.to_string()),
    ]);
    if !notification.source_ips.is_empty() {
        annotations.insert("source_ips".to_owned(), notification.source_ips.join(", "));
    }
    if !notification.countries.is_empty() {
        annotations.insert("countries".to_owned(), notification.countries.join(", "));
    }
    if let Some(url) = &notification.revoke_url {
        annotations.insert("revoke_url".to_owned(), url.clone());
    }
    let generator_url = notification.console_url.clone().unwrap_or_default();
    let external_url = origin(&generator_url);
    let group_labels = BTreeMap::from([("alertname".to_owned(), notification.rule_name.clone())]);
    let group_key = format!(
        "{{}}:{{alertname={:?}, alert_id={:?}}}",
        notification.rule_name, notification.alert_id
    );
    let fingerprint =
        model::hex::encode(&sha2::Sha256::digest(notification.alert_id.as_bytes())[..8]);
    let ends_at = if status == "resolved" {
        notification.last_event.to_string()
    } else {
        ZERO_TIME.to_owned()
    };
    AlertmanagerMessage {
        version: "4",
        group_key,
        truncated_alerts: 0,
        status: status.to_owned(),
        receiver: receiver.to_owned(),
        group_labels,
        common_labels: labels.clone(),
        common_annotations: annotations.clone(),
        external_url,
        alerts: vec![AlertmanagerAlert {
            status: status.to_owned(),
            labels,
            annotations,
            starts_at: notification.first_event.to_string(),
            ends_at,
            generator_url,
            fingerprint,
        }],
    }
}

/// `scheme://host[:port]` of `url`, or empty.
fn origin(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .map(|url| url.origin().ascii_serialization())
        .unwrap_or_default()
}
