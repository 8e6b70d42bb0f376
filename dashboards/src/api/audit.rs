//! `GET /api/v1/audit`: the audit trail, newest first.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use crate::routes::Caller;
use crate::{ApiError, AppState};

/// Records what a caller is about to do (a query, a search) in the audit trail, durably,
/// before it is done; when the trail cannot take it, the request is refused (503).
pub(crate) async fn record(
    state: &AppState,
    caller: &Caller,
    action: &'static str,
    target: &'static str,
    message: String,
) -> Result<(), ApiError> {
    let access = state.access.clone();
    let actor = caller.actor();
    tokio::task::spawn_blocking(move || access.record(&actor, action, target, message))
        .await
        .map_err(|error| ApiError::internal(format!("the audit record failed: {error}")))??;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub limit: Option<u32>,
    /// Only entries whose actor starts with this.
    pub actor: Option<String>,
    /// Only entries with this action (`login`, `account.add`, …).
    pub action: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    for (name, value) in [("actor", &query.actor), ("action", &query.action)] {
        if value.as_ref().is_some_and(|text| text.len() > 1024) {
            return Err(ApiError::bad_request(format!(
                "the {name} filter is longer than 1024 bytes"
            )));
        }
    }
    let limit = super::limit(query.limit) as usize;
    let store = state.store.clone();
    let entries = tokio::task::spawn_blocking(move || store.audit_entries())
        .await
        .map_err(|error| {
            ApiError::internal(format!("reading the audit trail failed: {error}"))
        })??;
    let n_entries = entries.len();
    let rows: Vec<_> = entries
        .into_iter()
        .rev()
        .filter(|entry| {
            query.actor.as_deref().is_none_or(|actor| {
                entry
                    .draft
                    .actor
                    .as_deref()
                    .is_some_and(|name| name.starts_with(actor))
            }) && query
                .action
                .as_deref()
                .is_none_or(|action| entry.draft.action == action)
        })
        .take(limit)
        .collect();
    Ok(Json(
        serde_json::json!({ "entries": rows, "total": n_entries }),
    ))
}
