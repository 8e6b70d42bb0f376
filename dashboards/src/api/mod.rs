//! The JSON API under `/api/v1`, one module per resource.

pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod auth_events;
pub mod health;
pub mod ingest;
pub mod search;
pub mod sessions;
pub mod sql;
pub mod users;

use crate::ApiError;

/// Clamps a `limit` query parameter.
pub(crate) fn limit(requested: Option<u32>) -> u32 {
    requested.unwrap_or(100).clamp(1, 10_000)
}

/// A `WHERE` clause built from validated query parameters: values become SQL string
/// literals, never SQL.
#[derive(Debug, Default)]
pub(crate) struct Filters(Vec<String>);

impl Filters {
    /// `column = 'value'` where `value` must be one of `allowed`.
    pub(crate) fn one_of(
        &mut self,
        column: &str,
        value: Option<&str>,
        allowed: &[&str],
    ) -> Result<(), ApiError> {
        let Some(value) = value else { return Ok(()) };
        if !allowed.contains(&value) {
            return Err(ApiError::bad_request(format!(
                "{column} must be one of {}, not {value:?}",
                allowed.join(", ")
            )));
        }
        self.0.push(format!("{column} = {}", sql_literal(value)));
        Ok(())
    }

    /// `column = 'value'` for free text of at most 1 KiB.
    pub(crate) fn equals(&mut self, column: &str, value: Option<&str>) -> Result<(), ApiError> {
        let Some(value) = value else { return Ok(()) };
        if value.len() > 1024 {
            return Err(ApiError::bad_request(format!(
                "the {column} filter is longer than 1024 bytes"
            )));
        }
        self.0.push(format!("{column} = {}", sql_literal(value)));
        Ok(())
    }

    pub(crate) fn clause(&self) -> String {
        if self.0.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.0.join(" AND "))
        }
    }
}

/// A SQL string literal for a value the user supplied. The store takes SQL text only (no
/// bound parameters), so every value from a request reaches SQL through here, after its own
/// validation (length, and for ids the characters allowed).
pub(crate) fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A SQL timestamp literal (RFC 3339, UTC), in the form the store's partition pruning reads.
pub(crate) fn sql_timestamp(at: jiff::Timestamp) -> String {
    format!("'{at}'")
}

/// An optional RFC 3339 query parameter, between 1970 and 2262 (what every layer below holds:
/// tantivy keeps nanoseconds in an i64).
pub(crate) fn timestamp(
    name: &str,
    value: Option<&str>,
) -> Result<Option<jiff::Timestamp>, ApiError> {
    let Some(text) = value else { return Ok(None) };
    let at: jiff::Timestamp = text.parse().map_err(|error| {
        ApiError::bad_request(format!(
            "{name} must be an RFC 3339 time such as 2026-11-25T08:00:00Z: {error}"
        ))
    })?;
    let lowest = jiff::Timestamp::UNIX_EPOCH;
    let highest = jiff::Timestamp::from_second(9_200_000_000).unwrap_or(jiff::Timestamp::MAX);
    if at < lowest || at > highest {
        return Err(ApiError::bad_request(format!(
            "{name} must be between 1970 and 2261, not {at}"
        )));
    }
    Ok(Some(at))
}

/// The one path parameter of a route, or a JSON 400 (not axum's plain-text rejection) when
/// it is not valid UTF-8 after percent-decoding.
pub(crate) fn path_param(
    path: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
    what: &str,
) -> Result<String, ApiError> {
    path.map(|axum::extract::Path(value)| value)
        .map_err(|rejection| {
            ApiError::bad_request(format!("unreadable {what}: {}", rejection.body_text()))
        })
}

/// Query rows as JSON objects with every one of `columns` present (the store leaves out
/// nulls), so that each kind of object always has the same keys.
pub(crate) fn with_nulls(
    mut row: serde_json::Map<String, serde_json::Value>,
    columns: &[&str],
) -> serde_json::Map<String, serde_json::Value> {
    for column in columns {
        row.entry(*column).or_insert(serde_json::Value::Null);
    }
    row
}
