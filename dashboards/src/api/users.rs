//! `GET /api/v1/users/{name}/activity?from=&to=&limit=`: what one VPN user touched in a time
//! window: their sessions, and the flows and API requests the collector joined to them,
//! counted per destination and per API path.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;

use crate::{ApiError, AppState};

/// The longest user name accepted (the same bound as the `user` filters).
const MAX_USER_NAME_BYTES: usize = 1024;

/// The window when the request names none: the last day.
const DEFAULT_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// The widest window one request may ask for: the flow tables are the largest there are, and
/// a clear refusal beats a query that runs into the store's time limit.
const MAX_WINDOW: jiff::SignedDuration = jiff::SignedDuration::from_hours(31 * 24);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    /// RFC 3339; default `to` minus a day.
    from: Option<String>,
    /// RFC 3339, exclusive; default now.
    to: Option<String>,
    /// Rows per list (sessions, destinations, API paths); default 100, at most 10,000.
    limit: Option<u32>,
}

const SESSION_COLUMNS: &[&str] = &[
    "session_id",
    "user_name",
    "source_ip",
    "source_port",
    "source_geo_country_iso_code",
    "source_as_organization_name",
    "vpn_virtual_ip",
    "vpn_auth_method",
    "event_start",
    "event_end",
    "vpn_state",
    "vpn_terminate_cause",
    "source_bytes",
    "destination_bytes",
    "observer_hostname",
];

const DESTINATION_COLUMNS: &[&str] = &[
    "destination_ip",
    "destination_port",
    "network_transport",
    "flows",
    "sessions",
    "source_bytes",
    "destination_bytes",
    "packets",
    "first_seen",
    "last_seen",
];

const API_PATH_COLUMNS: &[&str] = &[
    "url_domain",
    "http_request_method",
    "url_path",
    "requests",
    "errors",
    "sessions",
    "response_bytes",
    "first_seen",
    "last_seen",
];

pub async fn activity(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<ActivityQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = super::path_param(path, "user name")?;
    if name.is_empty() || name.len() > MAX_USER_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "a user name is 1 to {MAX_USER_NAME_BYTES} bytes"
        )));
    }
    let (from, to) = window(
        super::timestamp("from", query.from.as_deref())?,
        super::timestamp("to", query.to.as_deref())?,
        jiff::Timestamp::now(),
    )?;
    let limit = super::limit(query.limit);
    let user = super::sql_literal(&name);
    let (from_sql, to_sql) = (super::sql_timestamp(from), super::sql_timestamp(to));
    let rows_in_window =
        format!("user_name = {user} AND timestamp >= {from_sql} AND timestamp < {to_sql}");
    let fetch = u64::from(limit) + 1;

    // Sessions that overlap the window, newest first; `total` counts them all.
    let sessions_sql = format!(
        "SELECT {}, count(*) OVER () AS total FROM sessions \
         WHERE user_name = {user} AND event_start < {to_sql} AND (event_end IS NULL OR event_end >= {from_sql}) \
         ORDER BY event_start DESC, session_id LIMIT {fetch}",
        SESSION_COLUMNS.join(", ")
    );
    let destinations_sql = format!(
        "SELECT destination_ip, destination_port, network_transport, count(*) AS flows, \
           count(DISTINCT session_id) AS sessions, sum(source_bytes) AS source_bytes, \
           sum(destination_bytes) AS destination_bytes, \
           sum(coalesce(source_packets, 0) + coalesce(destination_packets, 0)) AS packets, \
           min(event_start) AS first_seen, max(event_end) AS last_seen, \
           count(*) OVER () AS total, sum(count(*)) OVER () AS total_rows \
         FROM flows WHERE {rows_in_window} \
         GROUP BY destination_ip, destination_port, network_transport \
         ORDER BY flows DESC, destination_bytes DESC, destination_ip, destination_port, network_transport \
         LIMIT {fetch}"
    );
    let api_paths_sql = format!(
        "SELECT url_domain, http_request_method, url_path, count(*) AS requests, \
           sum(CASE WHEN http_response_status_code >= 400 THEN 1 ELSE 0 END) AS errors, \
           count(DISTINCT session_id) AS sessions, sum(http_response_bytes) AS response_bytes, \
           min(timestamp) AS first_seen, max(timestamp) AS last_seen, \
           count(*) OVER () AS total, sum(count(*)) OVER () AS total_rows \
         FROM api_requests WHERE {rows_in_window} \
         GROUP BY url_domain, http_request_method, url_path \
         ORDER BY requests DESC, url_domain, url_path, http_request_method \
         LIMIT {fetch}"
    );
    let per_session_sql = format!(
        "SELECT session_id, 'flows' AS counted, count(*) AS n FROM flows WHERE {rows_in_window} GROUP BY session_id \
         UNION ALL \
         SELECT session_id, 'api_requests' AS counted, count(*) AS n FROM api_requests WHERE {rows_in_window} GROUP BY session_id"
    );
    let (sessions, destinations, api_paths, per_session) = futures::try_join!(
        state.store.query_json(&sessions_sql),
        state.store.query_json(&destinations_sql),
        state.store.query_json(&api_paths_sql),
        state.store.query_json(&per_session_sql),
    )?;

    let sessions = List::new(sessions, SESSION_COLUMNS, limit);
    let destinations = List::new(destinations, DESTINATION_COLUMNS, limit);
    let api_paths = List::new(api_paths, API_PATH_COLUMNS, limit);
    let count_of = |session_id: &serde_json::Value, counted: &str| -> i64 {
        per_session
            .iter()
            .filter(|row| row.get("session_id") == Some(session_id))
            .filter(|row| row.get("counted").and_then(serde_json::Value::as_str) == Some(counted))
            .filter_map(|row| row.get("n").and_then(serde_json::Value::as_i64))
            .sum()
    };
    let session_rows: Vec<serde_json::Value> = sessions
        .rows
        .iter()
        .map(|row| {
            let mut row = row.clone();
            let id = row.get("session_id").cloned().unwrap_or_default();
            row.insert("flows".to_owned(), count_of(&id, "flows").into());
            row.insert(
                "api_requests".to_owned(),
                count_of(&id, "api_requests").into(),
            );
            serde_json::Value::Object(row)
        })
        .collect();
    Ok(Json(serde_json::json!({
        "user_name": name,
        "from": from.to_string(),
        "to": to.to_string(),
        "limit": limit,
        "totals": {
            "sessions": sessions.total,
            "flows": destinations.total_rows,
            "api_requests": api_paths.total_rows,
            "destinations": destinations.total,
            "api_paths": api_paths.total,
        },
        "truncated": {
            "sessions": sessions.truncated,
            "destinations": destinations.truncated,
            "api_paths": api_paths.truncated,
        },
        "sessions": session_rows,
        "destinations": destinations.rows,
        "api_paths": api_paths.rows,
    })))
}

/// `[from, to)` from the request, defaulting to the day before `now`.
fn window(
    from: Option<jiff::Timestamp>,
    to: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
) -> Result<(jiff::Timestamp, jiff::Timestamp), ApiError> {
    let to = to.unwrap_or(now);
    let from = match from {
        Some(from) => from,
        None => to
            .checked_sub(DEFAULT_WINDOW)
            .map_err(|error| ApiError::bad_request(format!("to is too early: {error}")))?,
    };
    if from >= to {
        return Err(ApiError::bad_request(format!(
            "from ({from}) must be before to ({to})"
        )));
    }
    if to.duration_since(from) > MAX_WINDOW {
        return Err(ApiError::bad_request(format!(
            "the window from {from} to {to} is longer than {} days; ask for less",
            MAX_WINDOW.as_hours() / 24
        )));
    }
    Ok((from, to))
}

/// One list of the answer: its first `limit` rows, whether more exist, and the totals the
/// window functions counted over all of them.
struct List {
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
    truncated: bool,
    /// Rows (groups) in all.
    total: i64,
    /// Flows or API requests in all the groups.
    total_rows: i64,
}

impl List {
    fn new(
        mut rows: Vec<serde_json::Map<String, serde_json::Value>>,
        columns: &[&str],
        limit: u32,
    ) -> List {
        let number = |rows: &[serde_json::Map<String, serde_json::Value>], column: &str| {
            rows.first()
                .and_then(|row| row.get(column))
                .and_then(number_of)
                .unwrap_or(0)
        };
        let total = number(&rows, "total");
        let total_rows = number(&rows, "total_rows");
        let truncated = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let rows = rows
            .into_iter()
            .map(|mut row| {
                row.remove("total");
                row.remove("total_rows");
                super::with_nulls(row, columns)
            })
            .collect();
        List {
            rows,
            truncated,
            total,
            total_rows,
        }
    }
}

/// An integer cell (Arrow writes 64-bit sums and counts as numbers; be lenient with strings).
fn number_of(value: &serde_json::Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
}
