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
pub mod openapi;
pub mod routes;
pub mod tls;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;

pub use error::{ApiError, Error};

/// `[dashboards]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the console, the API and the ingest endpoint listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// File holding one bearer token that any gateway may send to the ingest endpoint (for
    /// one-gateway set-ups; several gateways should each have their own, `tunnelwatch token
    /// create NAME --gateway`).
    #[serde(default)]
    pub ingest_token_file: Option<std::path::PathBuf>,
    /// Take events without any credential. Off unless named here (the demo turns it on, on
    /// loopback only).
    #[serde(default)]
    pub allow_unauthenticated_ingest: bool,
    /// Requests without credentials browse as this role (`viewer` or `analyst`); by
    /// default they are refused.
    #[serde(default)]
    pub anonymous_role: Option<access::Role>,
    /// Accounts of this role and above must have a TOTP second factor to sign in.
    #[serde(default)]
    pub require_totp_for: Option<access::Role>,
    /// A signed-in session ends after this long without a request…
    #[serde(default = "default_session_idle_secs")]
    pub session_idle_secs: u64,
    /// …and after this long whatever happens.
    #[serde(default = "default_session_absolute_secs")]
    pub session_absolute_secs: u64,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first)…
    #[serde(default)]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// …and this PEM private key. Both or neither.
    #[serde(default)]
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Mutual TLS: clients may present a certificate signed by one of these PEM CAs (gateways
    /// whose token is bound with `--client-subject`); browsers without one still connect.
    #[serde(default)]
    pub tls_client_ca_file: Option<std::path::PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: default_listen(),
            ingest_token_file: None,
            allow_unauthenticated_ingest: false,
            anonymous_role: None,
            require_totp_for: None,
            session_idle_secs: default_session_idle_secs(),
            session_absolute_secs: default_session_absolute_secs(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}

fn default_session_idle_secs() -> u64 {
    30 * 60
}

fn default_session_absolute_secs() -> u64 {
    12 * 3600
}

impl Config {
    /// Checks what serde cannot: anonymous access is for reading only, timeouts are sane.
    pub fn check(&self) -> std::result::Result<(), String> {
        if let Some(role) = self.anonymous_role
            && role > access::Role::Analyst
        {
            return Err(format!(
                "anonymous_role = \"{role}\" would let anyone change things unaudited by name; at most \"analyst\""
            ));
        }
        if self.session_idle_secs == 0 || self.session_absolute_secs == 0 {
            return Err("session_idle_secs and session_absolute_secs must be above 0".to_owned());
        }
        if self.session_idle_secs > self.session_absolute_secs {
            return Err("session_idle_secs is longer than session_absolute_secs".to_owned());
        }
        Ok(())
    }

    /// The settings of [`access::Access`] this configuration asks for.
    pub fn access_settings(&self) -> access::Settings {
        let defaults = access::Settings::default();
        access::Settings {
            anonymous_role: self.anonymous_role,
            require_totp_for: self.require_totp_for,
            sessions: access::SessionLimits {
                idle: std::time::Duration::from_secs(self.session_idle_secs),
                absolute: std::time::Duration::from_secs(self.session_absolute_secs),
                ..defaults.sessions
            },
            ..defaults
        }
    }
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
    /// The shared bearer token of the ingest endpoint (`ingest_token_file`), if any.
    pub ingest_token: Option<String>,
    /// Accounts, tokens and sessions.
    pub access: access::Access,
    pub web: WebSettings,
    /// The rest of the server's say in `/api/v1/health` (the collector's GeoIP databases).
    pub collector: Option<Arc<dyn HealthSource>>,
    /// The alerting service (`None`: the alert routes answer 503).
    pub alerting: Option<alerting::Alerting>,
}

/// How the HTTP side behaves beyond access itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebSettings {
    /// Served over TLS: cookies are `Secure` and `__Host-` prefixed.
    pub secure_cookies: bool,
    /// `[dashboards] allow_unauthenticated_ingest`.
    pub allow_unauthenticated_ingest: bool,
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

/// The whole HTTP surface, built from the route table ([`routes::table`]): a route exists
/// only with its rule, and [`routes::guard`] enforces the rule on every request.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes::table() {
        router = router.route(
            route.path,
            route
                .handler
                .layer(axum::extract::DefaultBodyLimit::max(route.body_limit)),
        );
    }
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::guard,
        ))
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError::not_found(format!("no route {path:?}"))
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests;
