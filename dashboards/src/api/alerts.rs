//! Alerts and rules: `GET /api/v1/alerts` (each alert's current state), `GET
//! /api/v1/alerts/{id}` (its history and evidence, the events linked to their sessions),
//! `POST /api/v1/alerts/{id}/ack|assign|resolve` (written to the audit trail first, then
//! stored, then applied), `GET /api/v1/rules`.

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use model::{AlertRecord, AlertStatus};
use serde::Deserialize;

use super::sql_literal;
use crate::routes::Caller;
use crate::{ApiError, AppState};

/// Longest comment on a change.
pub const MAX_COMMENT_BYTES: usize = 2048;

fn alerting(state: &AppState) -> Result<&alerting::Alerting, ApiError> {
    state
        .alerting
        .as_ref()
        .ok_or_else(|| ApiError::unavailable("alerting is not running on this server"))
}

fn from_alerting(error: alerting::Error) -> ApiError {
    ApiError::new(crate::error::status_of(error.kind()), error.to_string())
}

impl From<alerting::Error> for ApiError {
    fn from(error: alerting::Error) -> ApiError {
        from_alerting(error)
    }
}

async fn all_rows(state: &AppState) -> Result<Vec<AlertRecord>, ApiError> {
    let alerting = alerting(state)?.clone();
    tokio::task::spawn_blocking(move || alerting.rows())
        .await
        .map_err(|error| ApiError::internal(format!("reading alerts failed: {error}")))?
        .map_err(from_alerting)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub offset: Option<u32>,
    /// `open` (firing or acknowledged), `firing`, `acknowledged` or `resolved`.
    pub status: Option<String>,
    /// At least this severity.
    pub severity: Option<String>,
    pub rule: Option<String>,
    pub user: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query.map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
    let status = match query.status.as_deref() {
        None => None,
        Some("open") => Some(vec![AlertStatus::Firing, AlertStatus::Acknowledged]),
        Some(text) => Some(vec![AlertStatus::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status must be one of open, firing, acknowledged, resolved, not {text:?}"
            ))
        })?]),
    };
    let severity = query
        .severity
        .as_deref()
        .map(str::parse::<model::Severity>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    for (name, value) in [("rule", &query.rule), ("user", &query.user)] {
        if value.as_ref().is_some_and(|text| text.len() > 1024) {
            return Err(ApiError::bad_request(format!(
                "the {name} filter is longer than 1024 bytes"
            )));
        }
    }
    let mut alerts: Vec<AlertRecord> = alerting::histories(all_rows(&state).await?)
        .into_values()
        .filter_map(|mut history| history.pop())
        .filter(|row| {
            status
                .as_ref()
                .is_none_or(|wanted| wanted.contains(&row.status))
        })
        .filter(|row| severity.is_none_or(|least| row.severity >= least))
        .filter(|row| query.rule.as_deref().is_none_or(|rule| row.rule_id == rule))
        .filter(|row| {
            query
                .user
                .as_deref()
                .is_none_or(|user| row.user.as_deref() == Some(user))
        })
        .collect();
    // Newest change first.
    alerts.sort_by(|a, b| {
        b.timestamp
            .cmp(&a.timestamp)
            .then(a.alert_id.cmp(&b.alert_id))
    });
    let total = alerts.len();
    let offset = query.offset.unwrap_or(0) as usize;
    let page: Vec<_> = alerts
        .into_iter()
        .skip(offset)
        .take(super::limit(query.limit) as usize)
        .collect();
    Ok(Json(serde_json::json!({
        "alerts": page,
        "total": total,
        "offset": offset,
    })))
}

pub async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut by_alert = alerting::histories(all_rows(&state).await?);
    let history = by_alert
        .remove(&id)
        .ok_or_else(|| ApiError::not_found(format!("no alert {id:?}")))?;
    let Some(alert) = history.last().cloned() else {
        return Err(ApiError::not_found(format!("no alert {id:?}")));
    };
    let evidence = if alert.evidence.is_empty() {
        Vec::new()
    } else {
        let ids = alert
            .evidence
            .iter()
            .map(|id| sql_literal(id))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT timestamp, event_id, event_action, event_outcome, user_name, source_ip, \
             source_geo_country_iso_code, session_id, observer_hostname, event_original \
             FROM events WHERE event_id IN ({ids}) ORDER BY timestamp"
        );
        state.store.query_json(&sql).await?
    };
    Ok(Json(serde_json::json!({
        "alert": alert,
        "history": history,
        "evidence": evidence,
    })))
}

/// The body of `ack` and `resolve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeBody {
    pub comment: Option<String>,
}

/// The body of `assign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    pub assignee: String,
    pub comment: Option<String>,
}

/// An optional JSON body: none (empty) is the default; anything else must be the object.
fn optional_body(body: &[u8]) -> Result<ChangeBody, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ChangeBody::default());
    }
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("unreadable request: {error}")))
}

pub async fn ack(
    state: State<AppState>,
    caller: Extension<Caller>,
    id: Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AlertRecord>, ApiError> {
    let comment = optional_body(&body)?.comment;
    change(state, caller, id, alerting::Change::Acknowledge, comment).await
}

pub async fn resolve(
    state: State<AppState>,
    caller: Extension<Caller>,
    id: Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<AlertRecord>, ApiError> {
    let comment = optional_body(&body)?.comment;
    change(state, caller, id, alerting::Change::Resolve, comment).await
}

pub async fn assign(
    state: State<AppState>,
    caller: Extension<Caller>,
    id: Path<String>,
    body: Result<Json<AssignBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<AlertRecord>, ApiError> {
    let body = super::auth::json_body(body)?;
    let assignee = body.assignee.trim().to_owned();
    if assignee.is_empty() || assignee.len() > 64 || assignee.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "assignee must be 1 to 64 characters without control characters",
        ));
    }
    change(
        state,
        caller,
        id,
        alerting::Change::Assign(assignee),
        body.comment,
    )
    .await
}

async fn change(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    change: alerting::Change,
    comment: Option<String>,
) -> Result<Json<AlertRecord>, ApiError> {
    if comment
        .as_ref()
        .is_some_and(|text| text.len() > MAX_COMMENT_BYTES)
    {
        return Err(ApiError::bad_request(format!(
            "the comment is longer than {MAX_COMMENT_BYTES} bytes"
        )));
    }
    let alerting = alerting(&state)?.clone();
    let action = change.audit_action();
    let actor = caller.actor();
    let access = state.access.clone();
    let name = actor.name.clone();
    let message = change.audit_message(&name, &id, comment.as_deref());
    tokio::task::spawn_blocking(move || {
        alerting.change(&id, &change, &name, comment, |row| {
            // The audit entry before the change is stored; refused when the trail cannot
            // take it.
            access
                .record(&actor, action, &row.alert_id, message)
                .map(|_| ())
                .map_err(ApiError::from)
        })
    })
    .await
    .map_err(|error| ApiError::internal(format!("the change failed: {error}")))?
    .map(Json)
}

pub async fn rules(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let alerting = alerting(&state)?;
    let rules: Vec<serde_json::Value> = alerting
        .rules()
        .into_iter()
        .map(|(rule, origin)| {
            let kind = rule.kind.name();
            let origin = match origin {
                alerting::Origin::Shipped(name) => format!("shipped: {name}"),
                alerting::Origin::Config => "configuration".to_owned(),
                alerting::Origin::File(path) => path.display().to_string(),
                alerting::Origin::Sigma(path) => format!("sigma: {}", path.display()),
            };
            serde_json::json!({
                "id": rule.id,
                "name": rule.name,
                "kind": kind,
                "severity": rule.severity,
                "description": rule.description,
                "mitre": rule.mitre,
                "group_by": rule.group_by.iter().map(|field| field.name).collect::<Vec<_>>(),
                "playbook": rule.playbook,
                "origin": origin,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "rules": rules })))
}

pub async fn silences(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let alerting = alerting(&state)?;
    let now = jiff::Timestamp::now();
    let silences: Vec<serde_json::Value> = alerting
        .silences()
        .into_iter()
        .map(|silence| {
            let mut value = serde_json::to_value(&silence).unwrap_or_default();
            value["state"] = silence.state(now).into();
            value
        })
        .collect();
    Ok(Json(serde_json::json!({ "silences": silences })))
}

pub async fn add_silence(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<alerting::silence::SilenceRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<alerting::silence::Silence>, ApiError> {
    let request = super::auth::json_body(body)?;
    let alerting = alerting(&state)?.clone();
    let actor = caller.actor();
    let access = state.access.clone();
    tokio::task::spawn_blocking(move || {
        let author = actor.name.clone();
        alerting.add_silence(request, &author, |silence| {
            let message = silence.added_message(&actor.name);
            access
                .record(&actor, "silence.add", &silence.id, message)
                .map(|_| ())
                .map_err(ApiError::from)
        })
    })
    .await
    .map_err(|error| ApiError::internal(format!("the silence failed: {error}")))?
    .map(Json)
}

pub async fn expire_silence(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<alerting::silence::Silence>, ApiError> {
    let alerting = alerting(&state)?.clone();
    let actor = caller.actor();
    let access = state.access.clone();
    tokio::task::spawn_blocking(move || {
        let name = actor.name.clone();
        alerting.expire_silence(&id, &name, |silence| {
            let message = format!("{} expired silence {}", actor.name, silence.id);
            access
                .record(&actor, "silence.expire", &silence.id, message)
                .map(|_| ())
                .map_err(ApiError::from)
        })
    })
    .await
    .map_err(|error| ApiError::internal(format!("the expiry failed: {error}")))?
    .map(Json)
}
