//! `GET /api/v1/sessions?state=&user=&session_id=&limit=`: VPN sessions, newest first.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsQuery {
    limit: Option<u32>,
    /// `active`, `closed` or `lost`.
    state: Option<String>,
    user: Option<String>,
    /// One session by its id (search hits link here).
    session_id: Option<String>,
}

const COLUMNS: &str = "session_id, user_name, source_ip, source_port, source_geo_country_iso_code, vpn_virtual_ip, \
    event_start, event_end, event_duration, source_bytes, destination_bytes, network_bytes, vpn_state, vpn_terminate_cause, \
    vpn_connection, vpn_auth_method, vpn_rekey_count, observer_hostname";

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<SessionsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut filters = super::Filters::default();
    filters.one_of(
        "vpn_state",
        query.state.as_deref(),
        &["active", "closed", "lost"],
    )?;
    filters.equals("user_name", query.user.as_deref())?;
    filters.equals("session_id", query.session_id.as_deref())?;
    let filter = filters.clause();
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions {filter} ORDER BY event_start DESC LIMIT {}",
        super::limit(query.limit)
    );
    let rows = state.store.query_json(&sql).await?;
    Ok(Json(
        serde_json::json!({ "count": rows.len(), "sessions": rows }),
    ))
}
