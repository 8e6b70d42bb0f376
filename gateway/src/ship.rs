//! Sending spooled events to the server: one HTTP POST per batch, retried with backoff until
//! the server acknowledges it. Nothing is dropped: a batch leaves the spool only after the
//! server said it is durable.
//!
//! An `https://` server is reached over TLS (rustls with ring; TLS 1.2 and 1.3), trusting
//! either the system's CA store or only the CAs of the gateway's `tls_ca_file`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use model::Event;
use model::wire::{INGEST_PATH, IngestAck};

use crate::{Error, Result};

/// An HTTP client for one server.
#[derive(Debug, Clone)]
pub struct Shipper {
    client: reqwest::Client,
    url: String,
    token: Option<String>,
    gateway: String,
}

/// What the server's refusal of a batch means for it. Only this module reads HTTP statuses:
/// a refusal is a 4xx other than 408 (timeout) and 429 (too many requests), which only say
/// "later" (a 5xx likewise, an [`Error::Server`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 413: the batch is too large; its halves may pass.
    TooLarge,
    /// 401, 403: the agent's token is wrong or missing; the batch is fine, and goes once the
    /// server takes the token.
    Unauthorized,
    /// Any other 4xx: the batch is invalid; sending the same bytes again cannot help.
    Invalid,
}

impl Refusal {
    fn of(status: reqwest::StatusCode) -> Option<Refusal> {
        if !status.is_client_error() || matches!(status.as_u16(), 408 | 429) {
            return None;
        }
        Some(match status.as_u16() {
            413 => Refusal::TooLarge,
            401 | 403 => Refusal::Unauthorized,
            _ => Refusal::Invalid,
        })
    }
}

/// Which certificate authorities the agent trusts for an `https://` server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's trust store (e.g. `/etc/ssl/certs`).
    System,
    /// Only the CA certificates in this PEM text, read from `path`.
    Pem { path: PathBuf, pem: Vec<u8> },
}

/// The client certificate the agent presents under mutual TLS (`tls_client_cert_file`,
/// `tls_client_key_file`): PEM texts and where they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert_path: PathBuf,
    pub chain_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl Shipper {
    pub fn new(
        server_url: &str,
        token: Option<String>,
        gateway: &str,
        trust: &Trust,
        identity: Option<&ClientIdentity>,
    ) -> Result<Shipper> {
        // reqwest is built without a default crypto provider: it always gets this config.
        // A plain `http://` server never uses it, so the system store is not even read then.
        let roots = if server_url.starts_with("https://") {
            root_store(trust)?
        } else {
            rustls::RootCertStore::empty()
        };
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Internal(format!("cannot set up TLS: {error}")))?
        .with_root_certificates(roots);
        let tls = match identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                let where_ = identity.cert_path.display();
                let chain = CertificateDer::pem_slice_iter(&identity.chain_pem)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|error| {
                        Error::Config(format!(
                            "tls_client_cert_file {where_} is not valid PEM: {error}"
                        ))
                    })?;
                if chain.is_empty() {
                    return Err(Error::Config(format!(
                        "tls_client_cert_file {where_} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
                    )));
                }
                let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&identity.key_pem)
                    .map_err(|error| {
                        Error::Config(format!(
                            "tls_client_key_file holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {error}"
                        ))
                    })?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    Error::Config(format!(
                        "tls_client_cert_file {where_} and tls_client_key_file do not go together: {error}"
                    ))
                })?
            }
        };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| Error::Internal(format!("cannot build the HTTP client: {error}")))?;
        Ok(Shipper {
            client,
            url: format!("{}{INGEST_PATH}", server_url.trim_end_matches('/')),
            token,
            gateway: gateway.to_owned(),
        })
    }

    /// Sends one batch and waits for the server's acknowledgement.
    pub async fn send(&self, events: &[Event]) -> Result<IngestAck> {
        let batch = BatchRef {
            gateway: &self.gateway,
            events,
        };
        let body = serde_json::to_vec(&batch).map_err(|error| Error::Server {
            url: self.url.clone(),
            detail: error.to_string(),
        })?;
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let server_error = |detail: String| Error::Server {
            url: self.url.clone(),
            detail,
        };
        let response = request
            .send()
            .await
            .map_err(|error| server_error(describe(&error)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| server_error(describe(&error)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
            if let Some(refusal) = Refusal::of(status) {
                return Err(Error::Rejected {
                    url: self.url.clone(),
                    status: status.as_u16(),
                    refusal,
                    detail: text,
                });
            }
            return Err(server_error(format!("HTTP {status}: {text}")));
        }
        serde_json::from_slice(&bytes)
            .map_err(|error| server_error(format!("unreadable acknowledgement: {error}")))
    }
}

/// The CA certificates an `https://` server's certificate must chain to.
fn root_store(trust: &Trust) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    match trust {
        Trust::Pem { path, pem } => {
            let where_ = path.display();
            for (index, certificate) in CertificateDer::pem_slice_iter(pem).enumerate() {
                let certificate = certificate.map_err(|error| {
                    Error::Config(format!(
                        "tls_ca_file {where_}: certificate {} is not valid PEM: {error}",
                        index + 1
                    ))
                })?;
                roots.add(certificate).map_err(|error| {
                    Error::Config(format!(
                        "tls_ca_file {where_}: certificate {} is not a usable CA certificate: {error}",
                        index + 1
                    ))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::Config(format!(
                    "tls_ca_file {where_} holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)"
                )));
            }
        }
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "could not read part of the system trust store");
            }
            let (n_added, n_ignored) = roots.add_parsable_certificates(found.certs);
            if n_ignored > 0 {
                tracing::warn!(
                    n_ignored,
                    "ignored unusable certificates in the system trust store"
                );
            }
            if n_added == 0 {
                return Err(Error::Config(
                    "server_url is https:// but the system trust store has no CA certificates; set tls_ca_file".to_owned(),
                ));
            }
        }
    }
    Ok(roots)
}

/// The wire form of [`model::IngestBatch`], without copying the events.
#[derive(serde::Serialize)]
struct BatchRef<'a> {
    gateway: &'a str,
    events: &'a [Event],
}

fn describe(error: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Exponential backoff from 250 ms to 30 s.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new() -> Backoff {
        Backoff { attempt: 0 }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let millis = 250u64.saturating_mul(1 << self.attempt.min(7)).min(30_000);
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_millis(millis)
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 413 halves a batch, 401/403 keep it for a later try, any other 4xx sets it aside as a
    /// dead letter; 408, 429, 5xx (and success) are no refusal.
    #[test]
    fn a_refusal_is_a_4xx_that_says_more_than_later() {
        for (status, refusal) in [
            (413, Some(Refusal::TooLarge)),
            (401, Some(Refusal::Unauthorized)),
            (403, Some(Refusal::Unauthorized)),
            (400, Some(Refusal::Invalid)),
            (422, Some(Refusal::Invalid)),
            (408, None),
            (429, None),
            (500, None),
            (503, None),
            (200, None),
        ] {
            let status = reqwest::StatusCode::from_u16(status).unwrap();
            assert_eq!(Refusal::of(status), refusal, "{status}");
        }
    }

    #[test]
    fn the_borrowed_batch_is_an_ingest_batch_on_the_wire() {
        let batch = model::IngestBatch {
            gateway: "gw".to_owned(),
            events: Vec::new(),
        };
        let borrowed = BatchRef {
            gateway: "gw",
            events: &[],
        };
        let decoded: model::IngestBatch =
            serde_json::from_slice(&serde_json::to_vec(&borrowed).unwrap()).unwrap();
        assert_eq!(decoded, batch);
    }

    #[test]
    fn backoff_grows_and_caps() {
        let mut backoff = Backoff::new();
        let delays: Vec<u64> = (0..10)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(
            delays,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(250));
    }
}
