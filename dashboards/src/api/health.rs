//! `GET /healthz` and `GET /api/v1/stats`.

use axum::Json;
use axum::extract::State;

use crate::{ApiError, AppState};

pub async fn healthz(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = state.store.stats()?;
    let degraded = stats.quarantined_segments > 0 || stats.corrupt_wal_records > 0;
    Ok(Json(serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "quarantined_segments": stats.quarantined_segments,
        "corrupt_wal_records": stats.corrupt_wal_records,
    })))
}

pub async fn stats(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let stats = state.store.stats()?;
    let counts = state
        .store
        .query_json(
            "SELECT \
               (SELECT count(*) FROM sessions WHERE vpn_state = 'active') AS active_sessions, \
               (SELECT count(*) FROM sessions) AS sessions, \
               (SELECT count(*) FROM auth_events WHERE event_outcome = 'failure') AS auth_failures, \
               (SELECT count(*) FROM auth_events WHERE event_outcome = 'success') AS auth_successes, \
               (SELECT count(*) FROM events WHERE event_kind = 'pipeline_error') AS rejected_lines",
        )
        .await?;
    let mut body = counts.into_iter().next().unwrap_or_default();
    body.insert("buffered_events".to_owned(), stats.buffered_events.into());
    body.insert("segments".to_owned(), stats.segments.into());
    Ok(Json(serde_json::Value::Object(body)))
}
