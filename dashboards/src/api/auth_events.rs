//! `GET /api/v1/auth-events`: authentication attempts, newest first.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthEventsQuery {
    limit: Option<u32>,
    /// `success` or `failure`.
    outcome: Option<String>,
    user: Option<String>,
}

const COLUMNS: &str = "timestamp, event_id, event_outcome, vpn_auth_method, vpn_auth_failure, event_reason, user_name, \
    vpn_ike_id, vpn_eap_id, source_ip, source_port, source_geo_country_iso_code, vpn_connection, session_id, observer_hostname";

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<AuthEventsQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut filters = super::Filters::default();
    filters.one_of(
        "event_outcome",
        query.outcome.as_deref(),
        &["success", "failure"],
    )?;
    filters.equals("user_name", query.user.as_deref())?;
    let filter = filters.clause();
    let sql = format!(
        "SELECT {COLUMNS} FROM auth_events {filter} ORDER BY timestamp DESC, event_id DESC LIMIT {}",
        super::limit(query.limit)
    );
    let rows = state.store.query_json(&sql).await?;
    Ok(Json(
        serde_json::json!({ "count": rows.len(), "auth_events": rows }),
    ))
}
