//! HTTPS for the console, the API and the ingest endpoint (rustls with ring, TLS 1.2 and 1.3).
//!
//! [`server_config`] turns a PEM certificate chain and private key into a rustls config,
//! optionally asking clients for a certificate from a client CA (mutual TLS: gateways whose
//! token is bound to a certificate subject; browsers and scripts without one still connect);
//! [`serve_tls`] serves the router over it. Handshakes run concurrently on their own tasks
//! (a slow or silent client cannot hold up the others), each with a time limit, and at most
//! [`MAX_HANDSHAKES`] at once; a failed handshake is logged and costs nothing else.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{AppState, router};

/// Handshakes in progress at most; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;
/// How long a client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the TLS certificate file holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")]
    NoCertificate,
    #[error("the TLS certificate file is not valid PEM: {0}")]
    BadCertificate(String),
    #[error("the TLS key file holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {0}")]
    BadKey(String),
    #[error("the TLS certificate and key do not go together: {0}")]
    Mismatch(String),
    #[error("the client CA file (tls_client_ca_file) holds no usable CA certificate: {0}")]
    BadClientCa(String),
}

/// A server config from a PEM certificate chain (the server's certificate first) and its
/// PEM private key; with `client_ca_pem`, clients may present a certificate, which must be
/// signed by one of those CAs (one that is not fails the handshake). A client without one is
/// served as before: the routes decide (a gateway token bound to a subject is refused).
pub fn server_config(
    certificate_chain_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(certificate_chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::BadCertificate(error.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|error| TlsError::BadKey(error.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Mismatch(error.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(pem) {
                let certificate =
                    certificate.map_err(|error| TlsError::BadClientCa(error.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|error| TlsError::BadClientCa(error.to_string()))?;
            }
            if roots.is_empty() {
                return Err(TlsError::BadClientCa(
                    "no PEM certificate (`-----BEGIN CERTIFICATE-----`)".to_owned(),
                ));
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .map_err(|error| TlsError::BadClientCa(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Mismatch(error.to_string()))?;
    Ok(Arc::new(config))
}

/// Like [`crate::serve`], over TLS.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = TlsListener::new(listener, tls)?;
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<TlsPeer>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Accepts TCP connections and hands out those whose TLS handshake succeeded.
struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, tls: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local_addr = listener.local_addr()?;
        let (ready_tx, ready) = mpsc::channel(64);
        let acceptor_task = tokio::spawn(accept_loop(listener, TlsAcceptor::from(tls), ready_tx));
        Ok(TlsListener {
            local_addr,
            ready,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(%error, "cannot accept a TLS connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let _ = ready.send((tls_stream, peer)).await;
                }
                Ok(Err(error)) => {
                    tracing::info!(%peer, %error, "TLS handshake failed");
                }
                Err(_) => {
                    tracing::info!(%peer, timeout_s = HANDSHAKE_TIMEOUT.as_secs(), "TLS handshake timed out");
                }
            }
        });
    }
}

/// The peer of a TLS connection, for `ConnectInfo`: the source address of audit entries
/// and login throttling, and the subject of the client certificate it presented, if any
/// (verified against the client CA in the handshake).
#[derive(Debug, Clone)]
pub(crate) struct TlsPeer {
    pub addr: SocketAddr,
    pub client_subject: Option<Arc<crate::access::subject::Subject>>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for TlsPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> TlsPeer {
        let client_subject = stream
            .io()
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| crate::access::subject::Subject::of_certificate(leaf))
            .map(Arc::new);
        TlsPeer {
            addr: *stream.remote_addr(),
            client_subject,
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop never ends while the listener exists; if it somehow did, there
            // is nothing more to accept.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests;
