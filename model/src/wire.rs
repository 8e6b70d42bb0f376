//! The contract between a gateway and the server: an [`IngestBatch`] goes in, an
//! [`IngestAck`] comes back. The server answers only after the batch is durable.

use serde::{Deserialize, Serialize};

use crate::event::Event;

/// Path of the ingest endpoint, relative to the server's base URL.
pub const INGEST_PATH: &str = "/api/v1/ingest";

/// The largest body a server accepts on [`INGEST_PATH`]; gateways split batches below it.
pub const MAX_INGEST_BODY_BYTES: usize = 16 * 1024 * 1024;

/// A batch of events from one gateway, in source order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestBatch {
    /// The sending gateway's name.
    pub gateway: String,
    pub events: Vec<Event>,
}

/// The server's answer once the batch is durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAck {
    /// Events stored now.
    pub accepted: u64,
    /// Events the server already had (a resend); not stored again.
    pub duplicates: u64,
}
