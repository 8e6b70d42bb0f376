//! `POST /api/v1/ingest`: gateways deliver event batches here. The answer comes after the
//! batch is durable; 503 means "keep it and retry", 400 means the request itself is wrong.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use crate::{ApiError, AppState, IngestError};

/// More events than this in one request is refused (gateways send far fewer).
const MAX_EVENTS_PER_BATCH: usize = 100_000;

pub async fn ingest(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<model::IngestBatch>, JsonRejection>,
) -> Result<Json<model::IngestAck>, ApiError> {
    if let Some(expected) = &state.ingest_token {
        let given = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        if !given.is_some_and(|given| constant_time_eq(given.as_bytes(), expected.as_bytes())) {
            return Err(ApiError::unauthorized("missing or wrong bearer token"));
        }
    }
    let Json(batch) = body.map_err(|rejection| {
        let status = if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            rejection.status()
        } else {
            axum::http::StatusCode::BAD_REQUEST
        };
        ApiError {
            status,
            message: format!("unreadable batch: {}", rejection.body_text()),
        }
    })?;
    if batch.events.len() > MAX_EVENTS_PER_BATCH {
        return Err(ApiError::bad_request(format!(
            "{} events in one batch; at most {MAX_EVENTS_PER_BATCH}",
            batch.events.len()
        )));
    }
    match state.ingest.ingest(batch).await {
        Ok(ack) => Ok(Json(ack)),
        Err(IngestError::Unavailable(message)) => Err(ApiError::unavailable(message)),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}
