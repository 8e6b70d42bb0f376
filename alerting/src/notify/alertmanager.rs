//! Alertmanager: [`AlertmanagerConfig`] builds an [`AlertmanagerNotifier`], which pushes each
//! [`Notification`] to a Prometheus Alertmanager as one alert of its API v2
//! (`POST <url>/api/v2/alerts`, a JSON array of `postableAlert`s: `labels`, `annotations`,
//! `startsAt`, `endsAt`, `generatorURL`), so that Alertmanager groups, silences, inhibits and
//! routes tunnelwatch's alerts with everyone else's.
//!
//! Identity: Alertmanager identifies an alert by its label set, so the labels are the same
//! for an alert's firing and resolved notifications (`alertname` = the rule id, `severity`,
//! `tunnelwatch_alert_id` and the rule's group values); everything that changes goes in the
//! annotations. A firing alert carries `endsAt` = its last event plus [`FIRING_TTL`] (without
//! one, Alertmanager would end it after its `resolve_timeout`, 5 minutes by default, since a
//! page is sent once); an alert still open a day after its last event is resolved there by
//! itself. A resolved one carries `endsAt` = its last event, which resolves it.
//!
//! What came from the VPN is hostile: label names are rewritten to Alertmanager's syntax
//! (`[a-zA-Z_][a-zA-Z0-9_]*`, [`label_name`]), values made one line without control or
//! bidirectional characters and bounded, and only a plain `http(s)` URL becomes a link.
//!
//! Rendering ([`postable_alert`], [`render_body`]) is pure. The HTTP side is the webhook's:
//! the SSRF guard with pinned addresses, no redirects followed, no proxy (`notify::http`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::{Deserialize, Serialize};

use super::escape::{self, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_SUMMARY_CHARS};
// The webhook's: 2xx is delivered (Alertmanager answers 200); 408, 429 and 5xx are worth
// retrying; 400 (an alert Alertmanager refuses), 422 (a body its schema refuses), a
// redirect (not followed) and every other status are not.
use super::webhook::classify_status;
use super::{DeliveryError, Error, Notification, Notifier, Result, http_client};

/// The API path under the configured base URL.
pub const ALERTS_PATH: &str = "/api/v2/alerts";
/// The label that carries [`Notification::alert_id`].
pub const ALERT_ID_LABEL: &str = "tunnelwatch_alert_id";
/// The longest label name sent (longer ones are cut).
pub const MAX_LABEL_NAME_CHARS: usize = 128;
/// How much of an error response is kept for the error's detail.
const MAX_ERROR_BODY_BYTES: usize = 1024;

/// `[[alerting.receivers]] type = "alertmanager"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL (`http://alertmanager.example.org:9093`, with its
    /// `--web.route-prefix` if it has one); `/api/v2/alerts` is appended.
    pub url: String,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Allow loopback, private, link-local and other internal addresses (off: the SSRF
    /// guard refuses them).
    #[serde(default)]
    pub allow_private: bool,
    /// Trust only the CA certificates in this PEM file; without it, the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A bearer token, alone in this file (a trailing newline is ignored), sent as
    /// `Authorization: Bearer …` (for an Alertmanager behind an authenticating proxy or
    /// with `--web.config.file`).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
}

fn default_timeout_secs() -> u64 {
    10
}

impl AlertmanagerConfig {
    /// Checks what needs no file and no DNS (the URL, the timeout, an address literal the
    /// guard refuses) and returns the URL alerts are posted to.
    pub fn validate(&self) -> Result<Url> {
        let base = http_client::check_url(&self.url, self.allow_private, "bearer_token_file")?;
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Error::Notifier(
                "url must be Alertmanager's base URL, without a query or fragment".to_owned(),
            ));
        }
        let path = base.path().trim_end_matches('/');
        if path.ends_with(ALERTS_PATH) || path.ends_with("/api/v1/alerts") {
            return Err(Error::Notifier(format!(
                "url must be Alertmanager's base URL; {ALERTS_PATH} is appended to it"
            )));
        }
        http_client::check_timeout(self.timeout_secs)?;
        let mut endpoint = base.clone();
        endpoint.set_path(&format!("{path}{ALERTS_PATH}"));
        Ok(endpoint)
    }

    /// Reads `bearer_token_file` and `ca_file` and builds the notifier (no connection yet).
    pub fn build(&self, receiver: &str) -> Result<AlertmanagerNotifier> {
        let endpoint = self.validate()?;
        let authorization = match &self.bearer_token_file {
            Some(path) => {
                let token = http_client::read_secret("bearer_token_file", path)?;
                // Visible ASCII only: nothing that could end the header or start another.
                if !token.iter().all(u8::is_ascii_graphic) {
                    return Err(Error::Notifier(format!(
                        "bearer_token_file {} holds white space or characters a header cannot carry",
                        path.display()
                    )));
                }
                let value = [b"Bearer ".as_slice(), &token].concat();
                let mut header = HeaderValue::from_bytes(&value).map_err(|error| {
                    Error::Notifier(format!(
                        "bearer_token_file {}: not a header value: {error}",
                        path.display()
                    ))
                })?;
                header.set_sensitive(true);
                Some(header)
            }
            None => None,
        };
        let tls = http_client::tls_config(self.ca_file.as_deref())?;
        Ok(AlertmanagerNotifier {
            receiver: receiver.to_owned(),
            endpoint,
            authorization,
            timeout: Duration::from_secs(self.timeout_secs),
            allow_private: self.allow_private,
            tls,
        })
    }
}

/// Pushes notifications to one Alertmanager.
#[derive(Clone)]
pub struct AlertmanagerNotifier {
    receiver: String,
    endpoint: Url,
    authorization: Option<HeaderValue>,
    timeout: Duration,
    allow_private: bool,
    tls: rustls::ClientConfig,
}

impl std::fmt::Debug for AlertmanagerNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertmanagerNotifier")
            .field("receiver", &self.receiver)
            .field("host", &self.endpoint.host_str())
            .field("authenticated", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

/// One alert of Alertmanager's API v2 (`postableAlert` in `api/v2/openapi.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339; only when resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// The alert `notification` becomes. Pure.
pub fn postable_alert(notification: &Notification) -> PostableAlert {
    let value = |value: &str| escape::one_line(value, MAX_NAME_CHARS);
    // Fixed names first, so that a group value cannot take their place.
    let mut labels = BTreeMap::from([
        ("alertname".to_owned(), value(&notification.rule_id)),
        ("severity".to_owned(), value(&notification.severity)),
        (ALERT_ID_LABEL.to_owned(), value(&notification.alert_id)),
    ]);
    for (name, group_value) in &notification.labels {
        let name = label_name(name);
        let name = unique_name(&labels, name);
        labels.insert(name, value(group_value));
    }

    let mut annotations = BTreeMap::new();
    let mut annotate = |name: &str, text: String| {
        if !text.is_empty() {
            annotations.insert(name.to_owned(), text);
        }
    };
    annotate(
        "summary",
        escape::one_line(&notification.summary, MAX_SUMMARY_CHARS),
    );
    annotate(
        "description",
        escape::text(&notification.description, MAX_DESCRIPTION_CHARS),
    );
    annotate("rule_name", value(&notification.rule_name));
    annotate("count", notification.count.to_string());
    if let Some(user) = &notification.user {
        annotate("user", value(user));
    }
    annotate(
        "source_ips",
        escape::list(&notification.source_ips, "", value),
    );
    annotate(
        "countries",
        escape::list(&notification.countries, "", value),
    );
    let console_url = notification.console_url.as_deref().and_then(uri);
    if let Some(url) = &console_url {
        annotate("console_url", url.clone());
    }
    if let Some(url) = notification.revoke_url.as_deref().and_then(uri) {
        annotate("revoke_url", url);
    }

    let resolved = notification.status == "resolved";
    PostableAlert {
        labels,
        annotations,
        starts_at: notification.first_event.to_string(),
        ends_at: Some(if resolved {
            notification.last_event.to_string()
        } else {
            notification
                .last_event
                .max(notification.first_event)
                .saturating_add(FIRING_TTL)
                .map_or_else(
                    |_| notification.last_event.to_string(),
                    |end| end.to_string(),
                )
        }),
        generator_url: console_url,
    }
}

/// How long after its last event a firing alert stays active in Alertmanager unless resolved.
pub const FIRING_TTL: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The request body for `notification`: a JSON array of one [`PostableAlert`]. Pure.
pub fn render_body(notification: &Notification) -> std::result::Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&[postable_alert(notification)])
}

/// `name` in Alertmanager's label-name syntax `[a-zA-Z_][a-zA-Z0-9_]*`: every other
/// character becomes `_` (`user.name` → `user_name`), a leading digit or an empty name gets
/// a `_` in front, and the result is cut at [`MAX_LABEL_NAME_CHARS`]. Pure.
pub fn label_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len().min(MAX_LABEL_NAME_CHARS));
    if name.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.push('_');
    }
    for c in name.chars() {
        if out.len() >= MAX_LABEL_NAME_CHARS {
            break;
        }
        out.push(if c.is_ascii_alphanumeric() { c } else { '_' });
    }
    out
}

/// `name`, or `name_2`, `name_3`, … if `labels` already has it (two group names that
/// rewrite to the same one, a group named `severity`).
fn unique_name(labels: &BTreeMap<String, String>, name: String) -> String {
    if !labels.contains_key(&name) {
        return name;
    }
    let stem: String = name.chars().take(MAX_LABEL_NAME_CHARS - 8).collect();
    (2..)
        .map(|suffix| format!("{stem}_{suffix}"))
        .find(|candidate| !labels.contains_key(candidate))
        .unwrap_or(stem)
}

/// `url` if Alertmanager takes it as a URI and people may follow it: a plain `http(s)`
/// link ([`escape::link`]) that parses.
fn uri(url: &str) -> Option<String> {
    escape::link(url)
        .and_then(|url| Url::parse(url).ok())
        .map(String::from)
}

#[async_trait::async_trait]
impl Notifier for AlertmanagerNotifier {
    async fn send(&self, notification: &Notification) -> std::result::Result<(), DeliveryError> {
        let host = self.endpoint.host_str().unwrap_or("").to_owned();
        let client = http_client::guarded_client(
            &self.endpoint,
            self.allow_private,
            self.timeout,
            &self.tls,
        )
        .await?;
        let body = render_body(notification).map_err(|error| {
            DeliveryError::permanent(format!("cannot encode the alert: {error}"))
        })?;
        let mut request = client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let mut response = request.send().await.map_err(|error| {
            DeliveryError::transient(format!(
                "alertmanager {host}: {}",
                http_client::describe(&error.without_url())
            ))
        })?;
        let status = response.status();
        let Some(failure) = classify_status(status.as_u16()) else {
            tracing::debug!(
                receiver = %self.receiver,
                %host,
                notification = %notification.id,
                alert = %notification.alert_id,
                status = status.as_u16(),
                "alertmanager accepted the alert"
            );
            return Ok(());
        };
        let detail = if status.is_redirection() {
            format!("alertmanager {host}: HTTP {status}, a redirect (not followed)")
        } else {
            let said = error_body(&mut response).await;
            if said.is_empty() {
                format!("alertmanager {host}: HTTP {status}")
            } else {
                format!("alertmanager {host}: HTTP {status}: {said}")
            }
        };
        Err(DeliveryError { failure, detail })
    }
}

/// What an error response says (Alertmanager: a JSON string such as `"invalid label set:
/// …"`), read up to [`MAX_ERROR_BODY_BYTES`], one line.
async fn error_body(response: &mut reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_ERROR_BODY_BYTES);
    let text = String::from_utf8_lossy(&bytes);
    let text = serde_json::from_str::<String>(&text).unwrap_or_else(|_| text.into_owned());
    escape::one_line(&text, 300)
}

#[cfg(test)]
mod tests;
