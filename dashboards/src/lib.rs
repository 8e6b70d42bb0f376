//! The web console and REST API of tunnelwatch, built with axum.
//!
//! The front doors are [`router`], which builds the whole `Router` from an [`AppState`]
//! (tests call it with `oneshot`, no server needed), and [`serve`], which runs it on a
//! listener the caller bound ([`tls::serve_tls`] for HTTPS). Routes are grouped by resource under [`api`]; the console's
//! assets are embedded in the binary (no CDN: gateways and SOC networks are often offline).
//!
//! This is the only crate that knows HTTP status codes and JSON response shapes: domain
//! errors arrive with a `kind()`, and [`error::ApiError`] maps it to a status in one place.

pub mod access;
pub mod api;
mod assets;
mod error;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde::Deserialize;
use tokio::net::TcpListener;

pub use error::ApiError;

/// `[dashboards]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the console, the API and the ingest endpoint listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// File holding the bearer token gateways must send to the ingest endpoint. Without
    /// one, ingest is open to anyone who can reach the listen address.
    #[serde(default)]
    pub ingest_token_file: Option<std::path::PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first)…
    #[serde(default)]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// …and this PEM private key. Both or neither.
    #[serde(default)]
    pub tls_key_file: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: default_listen(),
            ingest_token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

/// Why an ingest request was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    /// The server cannot store it now (store failing, shutting down): the gateway retries.
    Unavailable(String),
}

/// Where ingested batches go: `app` connects this to the collector and the store. The future
/// resolves once the batch is durable (or failed).
pub trait Ingest: Send + Sync + 'static {
    fn ingest(
        &self,
        batch: model::IngestBatch,
    ) -> Pin<Box<dyn Future<Output = Result<model::IngestAck, IngestError>> + Send>>;
}

/// Everything the handlers need.
#[derive(Clone)]
pub struct AppState {
    pub store: store::Store,
    pub ingest: Arc<dyn Ingest>,
    /// The bearer token of the ingest endpoint, if one is required.
    pub ingest_token: Option<String>,
    /// The rest of the server's say in `/api/v1/health` (the collector's GeoIP databases).
    pub collector: Option<Arc<dyn HealthSource>>,
}

/// What a part of the server other than the store reports to `/api/v1/health`.
pub trait HealthSource: Send + Sync {
    /// One sentence per problem, saying what to do; any problem makes the status "degraded".
    fn problems(&self) -> Vec<String>;
    /// Details, shown under `collector`.
    fn detail(&self) -> serde_json::Value;
    /// Figures for `/metrics`, after the store's.
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }
}

/// One Prometheus metric of a [`HealthSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// `tunnelwatch_…`, in Prometheus' name syntax.
    pub name: &'static str,
    pub help: &'static str,
    /// `counter` (only grows while the process runs) or `gauge`.
    pub kind: MetricKind,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::asset))
        .route("/healthz", get(api::health::healthz))
        .route("/metrics", get(api::health::metrics))
        .nest("/api/v1", api::router())
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
