//! The JSON API under `/api/v1`, one module per resource.

pub mod auth_events;
pub mod health;
pub mod ingest;
pub mod sessions;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(sessions::list))
        .route("/auth-events", get(auth_events::list))
        .route("/stats", get(health::stats))
        .route(
            "/ingest",
            post(ingest::ingest).layer(axum::extract::DefaultBodyLimit::max(
                model::wire::MAX_INGEST_BODY_BYTES,
            )),
        )
}

/// Clamps a `limit` query parameter.
pub(crate) fn limit(requested: Option<u32>) -> u32 {
    requested.unwrap_or(100).clamp(1, 10_000)
}

/// A SQL string literal for a value the user supplied.
pub(crate) fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
