//! `GET /api/v1/sessions?state=&user=&session_id=&limit=`: VPN sessions, newest first.
//! `GET /api/v1/sessions/{id}?limit=`: one session and its timeline.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
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

/// The longest session id accepted; the collector's are `s-` and 16 hex digits.
const MAX_SESSION_ID_BYTES: usize = 128;

/// Timeline items returned when the request names no `limit`, and the most it may ask for.
const DEFAULT_TIMELINE_LIMIT: u32 = 1000;
const MAX_TIMELINE_LIMIT: u32 = 10_000;

/// How far outside the session's start and end the timeline looks for its rows. Every row
/// carries its `session_id`, so this only bounds the hour partitions read (the store prunes
/// by `timestamp`); it must exceed the collector's clock-skew tolerance and the gap between a
/// session's first event and its establishment, which are seconds to minutes.
const TIMELINE_MARGIN: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// The columns of one session, newest snapshot (the `sessions` view keeps only that).
const DETAIL_COLUMNS: &[&str] = &[
    "session_id",
    "user_name",
    "vpn_ike_id",
    "vpn_eap_id",
    "vpn_xauth_id",
    "vpn_cert_subject",
    "vpn_cert_serial",
    "vpn_auth_method",
    "vpn_connection",
    "source_ip",
    "source_port",
    "source_geo_country_iso_code",
    "source_geo_city_name",
    "source_as_number",
    "source_as_organization_name",
    "vpn_virtual_ip",
    "observer_hostname",
    "event_start",
    "event_end",
    "event_duration",
    "vpn_state",
    "vpn_terminate_cause",
    "source_bytes",
    "destination_bytes",
    "network_bytes",
    "source_packets",
    "destination_packets",
    "vpn_rekey_count",
    "vpn_ike_sa_ids",
    "vpn_session_version",
    "timestamp",
];

/// One kind of timeline item: where its rows come from and which columns it shows.
struct TimelineKind {
    kind: &'static str,
    table: &'static str,
    /// Beyond `session_id` and the time window.
    filter: &'static str,
    columns: &'static [&'static str],
}

/// Items at the same instant are listed in this order (then by event id).
const TIMELINE_KINDS: [TimelineKind; 4] = [
    TimelineKind {
        kind: "auth",
        table: "auth_events",
        filter: "",
        columns: &[
            "event_outcome",
            "vpn_auth_method",
            "vpn_auth_failure",
            "event_reason",
            "user_name",
            "vpn_ike_id",
            "vpn_eap_id",
            "source_ip",
            "source_port",
            "source_geo_country_iso_code",
            "vpn_connection",
            "observer_hostname",
            "event_original",
        ],
    },
    TimelineKind {
        kind: "event",
        // Logins are in `events` too: they are listed once, as `auth`.
        table: "events",
        filter: "AND event_category <> 'authentication'",
        columns: &[
            "event_action",
            "event_kind",
            "event_outcome",
            "event_reason",
            "vpn_ike_sa_id",
            "vpn_virtual_ip",
            "vpn_terminate_cause",
            "error_message",
            "source_ip",
            "source_port",
            "destination_ip",
            "destination_port",
            "vpn_connection",
            "observer_hostname",
            "event_original",
        ],
    },
    TimelineKind {
        kind: "flow",
        table: "flows",
        filter: "",
        columns: &[
            "network_transport",
            "source_ip",
            "source_port",
            "destination_ip",
            "destination_port",
            "source_bytes",
            "destination_bytes",
            "source_packets",
            "destination_packets",
            "event_start",
            "event_end",
            "vpn_flow_end",
            "vpn_tcp_flags",
            "vpn_session_join",
            "user_name",
            "observer_hostname",
        ],
    },
    TimelineKind {
        kind: "api_request",
        table: "api_requests",
        filter: "",
        columns: &[
            "http_request_method",
            "url_domain",
            "url_path",
            "http_response_status_code",
            "http_response_bytes",
            "event_duration",
            "http_request_id",
            "source_ip",
            "destination_ip",
            "destination_port",
            "vpn_session_join",
            "user_name",
            "observer_hostname",
            "event_original",
        ],
    },
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    /// Timeline items at most (default 1000, at most 10,000).
    limit: Option<u32>,
}

/// `GET /api/v1/sessions/{id}?limit=`: the session (newest snapshot) and its `timeline`: its
/// logins, other events, flows and API requests, oldest first, each with a `kind` (`auth`,
/// `event`, `flow`, `api_request`). `truncated` says whether items beyond `limit` exist.
pub async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<ShowQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = super::path_param(path, "session id")?;
    let id = valid_session_id(&id)?;
    let limit = query
        .limit
        .unwrap_or(DEFAULT_TIMELINE_LIMIT)
        .clamp(1, MAX_TIMELINE_LIMIT);
    let sql = format!(
        "SELECT {} FROM sessions WHERE session_id = {}",
        DETAIL_COLUMNS.join(", "),
        super::sql_literal(id)
    );
    let Some(session) = state.store.query_json(&sql).await?.into_iter().next() else {
        return Err(ApiError::not_found(format!("no session with id {id:?}")));
    };
    let window = TimeWindow {
        from: row_time(&session, "event_start")
            .and_then(|start| start.checked_sub(TIMELINE_MARGIN).ok()),
        to: row_time(&session, "event_end").and_then(|end| end.checked_add(TIMELINE_MARGIN).ok()),
    };
    let sql = timeline_sql(id, &window, limit);
    let mut rows = state.store.query_json(&sql).await?;
    let truncated = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let timeline: Vec<serde_json::Value> = rows.into_iter().map(timeline_item).collect();
    Ok(Json(serde_json::json!({
        "session": super::with_nulls(session, DETAIL_COLUMNS),
        "count": timeline.len(),
        "limit": limit,
        "truncated": truncated,
        "timeline": timeline,
    })))
}

/// A session id from a URL: `A-Z a-z 0-9 - _ . :`, at most [`MAX_SESSION_ID_BYTES`]. Ids are
/// made by the collector, so anything else cannot name a session and is refused before it
/// comes near SQL (where it would be a quoted literal anyway).
fn valid_session_id(id: &str) -> Result<&str, ApiError> {
    let allowed =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':');
    if id.is_empty() || id.len() > MAX_SESSION_ID_BYTES || !id.bytes().all(allowed) {
        return Err(ApiError::bad_request(format!(
            "a session id is 1 to {MAX_SESSION_ID_BYTES} characters of A-Z, a-z, 0-9, '-', '_', '.' and ':'"
        )));
    }
    Ok(id)
}

/// Bounds on `timestamp` (either may be open).
struct TimeWindow {
    from: Option<jiff::Timestamp>,
    to: Option<jiff::Timestamp>,
}

impl TimeWindow {
    fn sql(&self) -> String {
        let mut clause = String::new();
        if let Some(from) = self.from {
            clause.push_str(&format!(" AND timestamp >= {}", super::sql_timestamp(from)));
        }
        if let Some(to) = self.to {
            clause.push_str(&format!(" AND timestamp <= {}", super::sql_timestamp(to)));
        }
        clause
    }
}

/// A time column of a query row.
fn row_time(
    row: &serde_json::Map<String, serde_json::Value>,
    column: &str,
) -> Option<jiff::Timestamp> {
    row.get(column)?.as_str()?.parse().ok()
}

/// One statement for the whole timeline: each kind's rows with every kind's columns (NULL
/// where a kind has none), so that the store sorts and limits them together. One row more
/// than `limit` tells whether there are more.
fn timeline_sql(id: &str, window: &TimeWindow, limit: u32) -> String {
    let mut all_columns: Vec<&str> = Vec::new();
    for kind in &TIMELINE_KINDS {
        for column in kind.columns {
            if !all_columns.contains(column) {
                all_columns.push(column);
            }
        }
    }
    let id = super::sql_literal(id);
    let window = window.sql();
    let branches: Vec<String> = TIMELINE_KINDS
        .iter()
        .enumerate()
        .map(|(rank, kind)| {
            let columns: Vec<String> = all_columns
                .iter()
                .map(|column| {
                    if kind.columns.contains(column) {
                        (*column).to_owned()
                    } else {
                        format!("NULL AS {column}")
                    }
                })
                .collect();
            format!(
                "SELECT '{}' AS kind, {rank} AS kind_rank, timestamp, event_id, {} FROM {} WHERE session_id = {id}{window} {}",
                kind.kind,
                columns.join(", "),
                kind.table,
                kind.filter,
            )
        })
        .collect();
    format!(
        "SELECT * FROM ({}) ORDER BY timestamp, kind_rank, event_id LIMIT {}",
        branches.join(" UNION ALL "),
        u64::from(limit) + 1
    )
}

/// A timeline row as the API shows it: `kind`, `timestamp`, `event_id` and its kind's
/// columns (null when empty), nothing of the other kinds.
fn timeline_item(mut row: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
    let kind = row
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .and_then(|name| TIMELINE_KINDS.iter().find(|kind| kind.kind == name));
    let mut item = serde_json::Map::new();
    for key in ["kind", "timestamp", "event_id"] {
        item.insert(key.to_owned(), row.remove(key).unwrap_or_default());
    }
    if let Some(kind) = kind {
        for column in kind.columns {
            item.insert(
                (*column).to_owned(),
                row.remove(*column).unwrap_or_default(),
            );
        }
    }
    serde_json::Value::Object(item)
}
