//! `POST /api/v1/ingest`: gateways deliver event batches here. The answer comes after the
//! batch is durable; 503 means "keep it and retry", 400 and 422 mean the request itself is
//! wrong (the gateway sets it aside).
//!
//! A gateway-bound credential (`tunnelwatch token create NAME --gateway`) may send only in
//! its gateway's name: the batch's `gateway` and every event's source (`<gateway>/<name>@…`)
//! must be that gateway's. No credential may move a source's sequence more than
//! [`MAX_SEQUENCE_JUMP`] past what is stored: that would make every later event of the
//! source look like a resend, silencing it.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::{Extension, Json};

use crate::access::{Grant, Principal};
use crate::routes::Caller;
use crate::{ApiError, AppState, IngestError};

/// More events than this in one request is refused (gateways send far fewer).
const MAX_EVENTS_PER_BATCH: usize = 100_000;

/// How far past the stored sequence of a source (or past 0 for a new one) a batch may go.
/// Sequences are line numbers of logs, so gaps of skipped lines are normal; a hundred
/// million lines between two events of one source is not.
pub const MAX_SEQUENCE_JUMP: u64 = 100_000_000;

pub async fn ingest(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<model::IngestBatch>, JsonRejection>,
) -> Result<Json<model::IngestAck>, ApiError> {
    let batch = super::auth::json_body(body).map_err(|mut error| {
        error.message = error
            .message
            .replacen("unreadable request", "unreadable batch", 1);
        error
    })?;
    if batch.events.len() > MAX_EVENTS_PER_BATCH {
        return Err(ApiError::bad_request(format!(
            "{} events in one batch; at most {MAX_EVENTS_PER_BATCH}",
            batch.events.len()
        )));
    }
    let refused = |reason: &'static str, error: ApiError| {
        let counters = state.access.counters();
        let counter = match reason {
            "gateway_mismatch" => &counters.ingest_refused_identity,
            _ => &counters.ingest_refused_sequence,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            credential = %caller.actor().name,
            gateway = %batch.gateway.chars().take(64).collect::<String>(),
            source_ip = ?caller.source_ip,
            reason,
            error = %error.message,
            "refused an ingest batch"
        );
        error.with_code(reason)
    };
    if let Some(Principal::Token {
        grant: Grant::Gateway { gateway, .. },
        name,
    }) = &caller.principal
        && let Err(error) = check_identity(&batch, gateway, name)
    {
        return Err(refused("gateway_mismatch", error));
    }
    if matches!(caller.principal, Some(Principal::SharedIngestToken))
        && let Some(gateways) = state.access.note_shared_token_gateway(&batch.gateway)
    {
        tracing::warn!(
            gateways = %gateways.join(", "),
            "several gateways send with the shared ingest_token_file: whoever holds it can send in any gateway's name; give each gateway its own credential (tunnelwatch token create NAME --gateway)"
        );
    }
    if let Err(error) = check_sequences(&state.store, &batch) {
        return Err(refused("sequence_jump", error));
    }
    match state.ingest.ingest(batch).await {
        Ok(ack) => Ok(Json(ack)),
        Err(IngestError::Unavailable(message)) => Err(ApiError::unavailable(message)),
    }
}

/// The batch and every event in it are the credential's gateway's.
fn check_identity(batch: &model::IngestBatch, gateway: &str, token: &str) -> Result<(), ApiError> {
    if !batch.gateway.eq_ignore_ascii_case(gateway) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "token {token} sends for gateway {gateway}, not {:?}",
                batch.gateway.chars().take(64).collect::<String>()
            ),
        ));
    }
    if let Some(event) = batch.events.iter().find(|event| {
        !event
            .id
            .source
            .split_once('/')
            .is_some_and(|(owner, _)| owner.eq_ignore_ascii_case(gateway))
    }) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "event {} is from source {:?}, which is not gateway {gateway}'s",
                event.id.seq,
                event.id.source.chars().take(128).collect::<String>()
            ),
        ));
    }
    Ok(())
}

/// No event leaps more than [`MAX_SEQUENCE_JUMP`] past its source's stored sequence (or the
/// event of the same source before it in the batch).
fn check_sequences(store: &store::Store, batch: &model::IngestBatch) -> Result<(), ApiError> {
    let mut sources: Vec<&str> = batch
        .events
        .iter()
        .map(|event| event.id.source.as_str())
        .collect();
    sources.sort_unstable();
    sources.dedup();
    let stored = store.stored_sequences(&sources)?;
    let mut floor: std::collections::HashMap<&str, u64> = sources
        .iter()
        .zip(stored)
        .map(|(source, seq)| (*source, seq.unwrap_or(0)))
        .collect();
    for event in &batch.events {
        let source = event.id.source.as_str();
        let Some(before) = floor.get_mut(source) else {
            continue;
        };
        if event.id.seq > before.saturating_add(MAX_SEQUENCE_JUMP) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "event {} of source {:?} is more than {MAX_SEQUENCE_JUMP} past the last stored ({before}): refused, so that the source is not silenced",
                    event.id.seq,
                    source.chars().take(128).collect::<String>()
                ),
            ));
        }
        *before = (*before).max(event.id.seq);
    }
    Ok(())
}
