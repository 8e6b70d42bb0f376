//! Webhooks: [`WebhookConfig`] builds a [`WebhookNotifier`], which POSTs a [`Notification`]
//! as JSON (tunnelwatch's own shape, Slack's, or Alertmanager's webhook v4 payload), signed
//! with HMAC-SHA256, to one URL.
//!
//! Rendering and the status classification are pure ([`render`], [`classify_status`]). The
//! SSRF guard ([`refusal`]) is too: before each send the host is resolved, every address
//! checked, and the request pinned to the checked address (`notify::http`, shared with the
//! Alertmanager channel), so a second DNS answer cannot move it; redirects are not
//! followed, and no proxy is used.

mod payload;
pub(crate) mod ssrf;

use std::path::PathBuf;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use jiff::Timestamp;
use reqwest::Url;
use serde::Deserialize;

use super::http_client;
use super::{DeliveryError, Failure, Notification, Notifier, Result};
pub use payload::render_body;
pub use ssrf::refusal;

/// The header that carries `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Tunnelwatch-Signature";
/// The header that carries the signing time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Tunnelwatch-Timestamp";
/// The header that carries [`Notification::id`].
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// `[[alerting.receivers]] type = "webhook"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://…` (or `http://…`). It may hold a secret (a Slack URL does): it is never
    /// logged whole, only its host.
    pub url: String,
    /// The HMAC-SHA256 key, alone in this file (a trailing newline is ignored). Without it
    /// requests are not signed.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub format: Format,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Allow loopback, private, link-local and other internal addresses (off: the SSRF
    /// guard refuses them).
    #[serde(default)]
    pub allow_private: bool,
    /// Trust only the CA certificates in this PEM file; without it, the Mozilla roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_timeout_secs() -> u64 {
    10
}

/// The body's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The [`Notification`] as JSON.
    #[default]
    Generic,
    /// A Slack incoming-webhook message (`text` in Slack's markup, escaped).
    Slack,
    /// Alertmanager's webhook payload, version 4, for receivers written for it.
    Alertmanager,
}

impl WebhookConfig {
    /// Checks what needs no file and no DNS: the URL, the timeout, an address literal the
    /// guard refuses.
    pub fn validate(&self) -> Result<Url> {
        let url = http_client::check_url(&self.url, self.allow_private, "secret_file")?;
        http_client::check_timeout(self.timeout_secs)?;
        Ok(url)
    }

    /// Reads `secret_file` and `ca_file` and builds the notifier (no connection yet).
    pub fn build(&self, receiver: &str) -> Result<WebhookNotifier> {
        let url = self.validate()?;
        let secret = match &self.secret_file {
            Some(path) => Some(http_client::read_secret("secret_file", path)?),
            None => None,
        };
        let tls = http_client::tls_config(self.ca_file.as_deref())?;
        Ok(WebhookNotifier {
            receiver: receiver.to_owned(),
            url,
            secret,
            format: self.format,
            timeout: Duration::from_secs(self.timeout_secs),
            allow_private: self.allow_private,
            tls,
        })
    }
}

/// POSTs notifications to one URL.
#[derive(Clone)]
pub struct WebhookNotifier {
    receiver: String,
    url: Url,
    secret: Option<Vec<u8>>,
    format: Format,
    timeout: Duration,
    allow_private: bool,
    tls: rustls::ClientConfig,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("receiver", &self.receiver)
            .field("host", &self.url.host_str())
            .field("format", &self.format)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// One request, ready to send: its body and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// The request for `notification`, signed with `secret` at `now`. Pure.
pub fn render(
    notification: &Notification,
    format: Format,
    receiver: &str,
    secret: Option<&[u8]>,
    now: Timestamp,
) -> std::result::Result<Rendered, serde_json::Error> {
    let body = render_body(notification, format, receiver)?;
    let timestamp = now.as_second().to_string();
    let mut headers = vec![
        ("Content-Type", "application/json".to_owned()),
        (TIMESTAMP_HEADER, timestamp.clone()),
        (IDEMPOTENCY_HEADER, header_value(&notification.id)),
    ];
    if let Some(secret) = secret {
        headers.push((
            SIGNATURE_HEADER,
            format!("sha256={}", signature(secret, &timestamp, &body)),
        ));
    }
    Ok(Rendered { body, headers })
}

/// Hex HMAC-SHA256 of `"<timestamp>.<body>"` under `secret`: what a receiver recomputes.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC accepts keys of every length")
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    model::hex::encode(&mac.finalize().into_bytes())
}

/// A header value from a string that may hold anything: visible ASCII kept, every other
/// byte as `%XX`, bounded.
fn header_value(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes().take(256) {
        if byte.is_ascii_graphic() && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// 2xx is delivered; 408, 429 and 5xx are worth retrying; a redirect (not followed) and
/// every other status are not.
pub fn classify_status(status: u16) -> Option<Failure> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(Failure::Transient),
        _ => Some(Failure::Permanent),
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    async fn send(&self, notification: &Notification) -> std::result::Result<(), DeliveryError> {
        let host = self.url.host_str().unwrap_or("").to_owned();
        let client =
            http_client::guarded_client(&self.url, self.allow_private, self.timeout, &self.tls)
                .await?;
        let rendered = render(
            notification,
            self.format,
            &self.receiver,
            self.secret.as_deref(),
            Timestamp::now(),
        )
        .map_err(|error| DeliveryError::permanent(format!("cannot encode the body: {error}")))?;
        let mut request = client.post(self.url.clone()).body(rendered.body);
        for (name, value) in rendered.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|error| {
            // Connecting, a timeout, a broken connection: all worth another try. Without
            // the URL, which may hold a secret.
            DeliveryError::transient(format!(
                "webhook {host}: {}",
                http_client::describe(&error.without_url())
            ))
        })?;
        let status = response.status();
        match classify_status(status.as_u16()) {
            None => {
                tracing::debug!(
                    receiver = %self.receiver,
                    %host,
                    notification = %notification.id,
                    status = status.as_u16(),
                    "webhook accepted"
                );
                Ok(())
            }
            Some(failure) => {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .map(|location| super::escape::one_line(location, 200));
                let detail = match location {
                    Some(location) if status.is_redirection() => format!(
                        "webhook {host}: HTTP {status}, a redirect to {location} (not followed)"
                    ),
                    _ => format!("webhook {host}: HTTP {status}"),
                };
                Err(DeliveryError { failure, detail })
            }
        }
    }
}

#[cfg(test)]
mod tests;
