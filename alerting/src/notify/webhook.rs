//! Webhooks: [`WebhookConfig`] builds a [`WebhookNotifier`], which POSTs a [`Notification`]
//! as JSON (tunnelwatch's own shape, Slack's, or Alertmanager's webhook v4 payload), signed
//! with HMAC-SHA256, to one URL.
//!
//! Rendering and the status classification are pure ([`render`], [`classify_status`]). The
//! SSRF guard ([`refusal`]) is too: before each send the host is resolved here, every
//! address checked, and the request pinned to the checked address (reqwest's `resolve`),
//! so a second DNS answer cannot move it; redirects are not followed, and no proxy is used.

mod payload;
mod ssrf;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use jiff::Timestamp;
use reqwest::Url;
use serde::Deserialize;

use super::{DeliveryError, Error, Failure, Notification, Notifier, Result};
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
        let url = Url::parse(&self.url)
            .map_err(|error| Error::Notifier(format!("url is not a URL: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Notifier(format!(
                "url must be http:// or https://, not {}://",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::Notifier("url has no host".to_owned()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Notifier(
                "url must not hold a user or password (use secret_file)".to_owned(),
            ));
        }
        if let Some(ip) = ssrf::literal(&url)
            && !self.allow_private
            && let Some(reason) = refusal(ip)
        {
            return Err(Error::Notifier(format!(
                "url points at {ip}, a {reason} address; set allow_private = true if that is intended"
            )));
        }
        if !(1..=600).contains(&self.timeout_secs) {
            return Err(Error::Notifier(format!(
                "timeout_secs {} is not between 1 and 600",
                self.timeout_secs
            )));
        }
        Ok(url)
    }

    /// Reads `secret_file` and `ca_file` and builds the notifier (no connection yet).
    pub fn build(&self, receiver: &str) -> Result<WebhookNotifier> {
        let url = self.validate()?;
        let secret = match &self.secret_file {
            Some(path) => {
                let mut key = super::read_file("secret_file", path)?;
                if key.last() == Some(&b'\n') {
                    key.pop();
                }
                if key.last() == Some(&b'\r') {
                    key.pop();
                }
                if key.is_empty() {
                    return Err(Error::Notifier(format!(
                        "secret_file {} is empty",
                        path.display()
                    )));
                }
                Some(key)
            }
            None => None,
        };
        let ca = match &self.ca_file {
            Some(path) => Some((path.as_path(), super::read_file("ca_file", path)?)),
            None => None,
        };
        let roots = super::root_store(ca.as_ref().map(|(path, pem)| (*path, pem.as_slice())))?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Internal(format!("cannot set up TLS: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
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

impl WebhookNotifier {
    /// The addresses this send may connect to: none to pin for an address literal (checked
    /// here), else the host's name and every address it resolves to that the guard
    /// allows (some of them refused is fine: only the allowed ones are pinned).
    async fn target(
        &self,
    ) -> std::result::Result<Option<(String, Vec<SocketAddr>)>, DeliveryError> {
        let port = self.url.port_or_known_default().unwrap_or(443);
        if let Some(ip) = ssrf::literal(&self.url) {
            if !self.allow_private
                && let Some(reason) = refusal(ip)
            {
                return Err(DeliveryError::permanent(format!(
                    "refused to connect to {ip}, a {reason} address (allow_private is off)"
                )));
            }
            return Ok(None);
        }
        let domain = self.url.host_str().unwrap_or("").to_owned();
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((domain.as_str(), port))
            .await
            .map_err(|error| DeliveryError::transient(format!("cannot resolve {domain}: {error}")))?
            .collect();
        if addresses.is_empty() {
            return Err(DeliveryError::transient(format!("{domain} has no address")));
        }
        let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
            .into_iter()
            .partition(|address| self.allow_private || refusal(address.ip()).is_none());
        if allowed.is_empty() {
            let refused: Vec<String> = refused
                .iter()
                .map(|address| {
                    let reason = refusal(address.ip()).unwrap_or("internal");
                    format!("{} ({reason})", address.ip())
                })
                .collect();
            return Err(DeliveryError::permanent(format!(
                "refused to connect to {domain}: it resolves only to internal addresses {} (allow_private is off)",
                refused.join(", ")
            )));
        }
        Ok(Some((domain, allowed)))
    }
}

#[async_trait::async_trait]
impl Notifier for WebhookNotifier {
    async fn send(&self, notification: &Notification) -> std::result::Result<(), DeliveryError> {
        let host = self.url.host_str().unwrap_or("").to_owned();
        let pinned = self.target().await?;
        let rendered = render(
            notification,
            self.format,
            &self.receiver,
            self.secret.as_deref(),
            Timestamp::now(),
        )
        .map_err(|error| DeliveryError::permanent(format!("cannot encode the body: {error}")))?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(self.tls.clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.timeout)
            .timeout(self.timeout);
        // The checked address, and no DNS of reqwest's own: a name it would look up
        // itself (one the override missed) fails instead of reaching an unchecked address.
        builder = builder.dns_resolver(Arc::new(NoDns));
        if let Some((domain, addresses)) = &pinned {
            builder = builder.resolve_to_addrs(domain, addresses);
        }
        let client = builder.build().map_err(|error| {
            DeliveryError::permanent(format!("cannot build the HTTP client: {error}"))
        })?;
        let mut request = client.post(self.url.clone()).body(rendered.body);
        for (name, value) in rendered.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.map_err(|error| {
            // Connecting, a timeout, a broken connection: all worth another try. Without
            // the URL, which may hold a secret.
            DeliveryError::transient(format!(
                "webhook {host}: {}",
                describe(&error.without_url())
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

/// A resolver that resolves nothing: every name a webhook reaches was resolved and checked
/// by [`WebhookNotifier::target`] and handed to reqwest pinned.
struct NoDns;

impl reqwest::dns::Resolve for NoDns {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let name = name.as_str().to_owned();
        Box::pin(async move {
            Err(format!("{name} was not resolved and checked by the SSRF guard").into())
        })
    }
}

/// reqwest's error with its causes (its own message is often only "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
