//! `POST /api/v1/sql`: one read-only SQL statement over every table, rows streamed as they
//! are computed.
//!
//! Body: `{"sql": "SELECT …", "format": "json" | "csv"}` (JSON lines by default). A statement
//! that is wrong, refused (anything but reading) or too slow before its first row gets a
//! 400 or 503 with `{"code": …, "message": …}`. Once rows flow the status is 200; if the query fails
//! later, the stream ends with an error line (`{"error": …}` in JSON lines, `# error: …` in
//! CSV). A client that goes away cancels the query.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;

use crate::routes::Caller;
use crate::{ApiError, AppState};

/// The largest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

pub async fn sql(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<SqlRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = super::auth::json_body(body)?;
    if request.sql.len() > MAX_SQL_BYTES {
        return Err(ApiError::bad_request(format!(
            "the statement is longer than {MAX_SQL_BYTES} bytes"
        )));
    }
    // Who looked at what: the statement's text, before it runs.
    super::audit::record(
        &state,
        &caller,
        "sql.query",
        "sql",
        format!("{} ran SQL: {}", caller.actor().name, request.sql),
    )
    .await?;
    let (format, content_type) = match request.format.as_deref().unwrap_or("json") {
        "json" => (store::OutputFormat::Json, "application/x-ndjson"),
        "csv" => (store::OutputFormat::Csv, "text/csv; charset=utf-8"),
        other => {
            return Err(ApiError::bad_request(format!(
                "format must be json or csv, not {other:?}"
            )));
        }
    };
    let mut rows = state.store.query_stream(&request.sql).await?;
    // The first batch decides the status: an error before any row is an error answer.
    let first = match rows.next_batch().await {
        Some(Ok(batch)) => Some(batch),
        Some(Err(error)) => return Err(error.into()),
        None => None,
    };
    let mut head = Vec::new();
    let mut header_done = false;
    match &first {
        Some(batch) => {
            head = store::render_batch(batch, format, true)?;
            header_done = true;
        }
        None if format == store::OutputFormat::Csv => {
            // An empty result still has its header line.
            let empty = store::QueryResult {
                schema: rows.schema(),
                batches: Vec::new(),
            };
            head = empty.render(format)?.into_bytes();
            header_done = true;
        }
        None => {}
    }
    let state = StreamState {
        rows: Some(rows),
        format,
        header_done,
    };
    let rest = futures::stream::unfold(state, next_chunk);
    let body = futures::StreamExt::chain(
        futures::stream::iter([Ok::<Bytes, std::io::Error>(Bytes::from(head))]),
        rest,
    );
    let mut response = Body::from_stream(body).into_response();
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

struct StreamState {
    /// `None` once the stream ended (after an error line).
    rows: Option<store::QueryStream>,
    format: store::OutputFormat,
    header_done: bool,
}

async fn next_chunk(
    mut state: StreamState,
) -> Option<(Result<Bytes, std::io::Error>, StreamState)> {
    let rows = state.rows.as_mut()?;
    let chunk = match rows.next_batch().await {
        None => return None,
        Some(Ok(batch)) => match store::render_batch(&batch, state.format, !state.header_done) {
            Ok(bytes) => {
                state.header_done = true;
                bytes
            }
            Err(error) => error_line(state.format, &error.to_string(), &mut state),
        },
        Some(Err(error)) => error_line(state.format, &error.to_string(), &mut state),
    };
    Some((Ok(Bytes::from(chunk)), state))
}

/// The last line of a stream whose query failed midway; ends the stream.
fn error_line(format: store::OutputFormat, message: &str, state: &mut StreamState) -> Vec<u8> {
    state.rows = None;
    tracing::warn!(
        error = message,
        "a streamed SQL query failed after its first rows"
    );
    match format {
        store::OutputFormat::Csv => {
            format!("# error: {}\n", message.replace(['\r', '\n'], " ")).into_bytes()
        }
        _ => {
            let mut line = serde_json::json!({ "error": message }).to_string();
            line.push('\n');
            line.into_bytes()
        }
    }
}
