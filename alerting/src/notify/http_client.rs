//! What the HTTP channels share ([`super::webhook`], [`super::alertmanager`]): the checks on a
//! configured URL, the TLS settings, and the client of one send, which reaches only addresses
//! the SSRF guard ([`super::webhook::refusal`]) allowed.
//!
//! Before each send the host is resolved here, every address checked, and the request
//! pinned to the checked addresses (reqwest's `resolve_to_addrs`, with a resolver that
//! resolves nothing else), so a second DNS answer cannot move it. Redirects are not
//! followed, and no proxy is used.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::webhook::ssrf;
use super::{DeliveryError, Error, Result};

/// Checks a channel's URL without DNS: `http(s)://`, a host, no user or password (the
/// error says to use `credentials_file` instead), no address literal the guard refuses
/// unless `allow_private`.
pub(crate) fn check_url(raw: &str, allow_private: bool, credentials_file: &str) -> Result<Url> {
    let url =
        Url::parse(raw).map_err(|error| Error::Notifier(format!("url is not a URL: {error}")))?;
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
        return Err(Error::Notifier(format!(
            "url must not hold a user or password (use {credentials_file})"
        )));
    }
    if let Some(ip) = ssrf::literal(&url)
        && !allow_private
        && let Some(reason) = ssrf::refusal(ip)
    {
        return Err(Error::Notifier(format!(
            "url points at {ip}, a {reason} address; set allow_private = true if that is intended"
        )));
    }
    Ok(url)
}

/// Checks `timeout_secs`: 1 to 600.
pub(crate) fn check_timeout(timeout_secs: u64) -> Result<()> {
    if !(1..=600).contains(&timeout_secs) {
        return Err(Error::Notifier(format!(
            "timeout_secs {timeout_secs} is not between 1 and 600"
        )));
    }
    Ok(())
}

/// Reads a secret file (an HMAC key, a bearer token): its bytes without one trailing line
/// break, refused when empty.
pub(crate) fn read_secret(what: &'static str, path: &Path) -> Result<Vec<u8>> {
    let mut secret = super::read_file(what, path)?;
    if secret.last() == Some(&b'\n') {
        secret.pop();
    }
    if secret.last() == Some(&b'\r') {
        secret.pop();
    }
    if secret.is_empty() {
        return Err(Error::Notifier(format!(
            "{what} {} is empty",
            path.display()
        )));
    }
    Ok(secret)
}

/// The TLS client settings: rustls with ring, trusting only the CAs of `ca_file` when set,
/// else the Mozilla roots.
pub(crate) fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    let ca = match ca_file {
        Some(path) => Some((path, super::read_file("ca_file", path)?)),
        None => None,
    };
    let roots = super::root_store(ca.as_ref().map(|(path, pem)| (*path, pem.as_slice())))?;
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| Error::Internal(format!("cannot set up TLS: {error}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The client for one send to `url`: its host resolved and checked now (unless
/// `allow_private`), pinned to the allowed addresses, no redirects, no proxy, `timeout` to
/// connect and for the whole exchange.
pub(crate) async fn guarded_client(
    url: &Url,
    allow_private: bool,
    timeout: Duration,
    tls: &rustls::ClientConfig,
) -> std::result::Result<reqwest::Client, DeliveryError> {
    let pinned = target(url, allow_private).await?;
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls.clone())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout);
    // The checked address, and no DNS of reqwest's own: a name it would look up itself
    // (one the override missed) fails instead of reaching an unchecked address.
    builder = builder.dns_resolver(Arc::new(NoDns));
    if let Some((domain, addresses)) = &pinned {
        builder = builder.resolve_to_addrs(domain, addresses);
    }
    builder
        .build()
        .map_err(|error| DeliveryError::permanent(format!("cannot build the HTTP client: {error}")))
}

/// The addresses a send to `url` may connect to: none to pin for an address literal
/// (checked here), else the host's name and every address it resolves to that the guard
/// allows (some of them refused is fine: only the allowed ones are pinned).
async fn target(
    url: &Url,
    allow_private: bool,
) -> std::result::Result<Option<(String, Vec<SocketAddr>)>, DeliveryError> {
    let port = url.port_or_known_default().unwrap_or(443);
    if let Some(ip) = ssrf::literal(url) {
        if !allow_private && let Some(reason) = ssrf::refusal(ip) {
            return Err(DeliveryError::permanent(format!(
                "refused to connect to {ip}, a {reason} address (allow_private is off)"
            )));
        }
        return Ok(None);
    }
    let domain = url.host_str().unwrap_or("").to_owned();
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((domain.as_str(), port))
        .await
        .map_err(|error| DeliveryError::transient(format!("cannot resolve {domain}: {error}")))?
        .collect();
    if addresses.is_empty() {
        return Err(DeliveryError::transient(format!("{domain} has no address")));
    }
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
        .into_iter()
        .partition(|address| allow_private || ssrf::refusal(address.ip()).is_none());
    if allowed.is_empty() {
        let refused: Vec<String> = refused
            .iter()
            .map(|address| {
                let reason = ssrf::refusal(address.ip()).unwrap_or("internal");
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

/// A resolver that resolves nothing: every name an HTTP channel reaches was resolved and
/// checked by [`target`] and handed to reqwest pinned.
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
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
