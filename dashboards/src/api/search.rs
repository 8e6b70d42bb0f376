//! `GET /api/v1/search?q=…&from=…&to=…&limit=…`: full-text search over every event, newest
//! first (the query language is `store::search`'s). Each hit carries its `event_id` and
//! `session_id`, and `links.events` / `links.session`: SQL-free ways to see the event's row
//! and its session (with its timeline).

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;

use crate::{ApiError, AppState};

/// The longest search text accepted.
const MAX_QUERY_BYTES: usize = 4096;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    q: Option<String>,
    /// RFC 3339.
    from: Option<String>,
    /// RFC 3339.
    to: Option<String>,
    limit: Option<u32>,
}

pub async fn search(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::routes::Caller>,
    Query(query): Query<SearchQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let text = query.q.unwrap_or_default();
    if text.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "the search is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    super::audit::record(
        &state,
        &caller,
        "search.query",
        "search",
        format!("{} searched: {text}", caller.actor().name),
    )
    .await?;
    let options = store::SearchOptions {
        from: super::timestamp("from", query.from.as_deref())?,
        to: super::timestamp("to", query.to.as_deref())?,
        limit: Some(super::limit(query.limit) as usize),
    };
    let store = state.store.clone();
    let result = tokio::task::spawn_blocking(move || store.search(&text, &options))
        .await
        .map_err(|error| ApiError::internal(format!("search task failed: {error}")))??;
    let hits: Vec<serde_json::Value> = result
        .hits
        .into_iter()
        .map(|hit| {
            let mut links = serde_json::Map::new();
            links.insert(
                "events".to_owned(),
                format!("/api/v1/search?q=id:%22{}%22", encode(&hit.event_id)).into(),
            );
            if let Some(session) = &hit.session_id {
                links.insert(
                    "session".to_owned(),
                    format!("/api/v1/sessions/{}", encode(session)).into(),
                );
            }
            let mut value = serde_json::to_value(&hit).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("links".to_owned(), links.into());
            }
            value
        })
        .collect();
    Ok(Json(serde_json::json!({
        "total": result.total,
        "count": hits.len(),
        "hits": hits,
    })))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
