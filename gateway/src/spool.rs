//! The on-disk spool between the sources and the shipper: a [`durable::Spool`] of event
//! batches (one record per batch, a JSON array of events) with one cursor, [`SHIP`].
//!
//! Sources append batches, fsynced before a tailer moves its checkpoint or a live source
//! acknowledges; the shipper peeks from the cursor and commits it only after the server
//! acknowledged the events, and the segments behind it are deleted. So events survive a
//! restart of either side, and a server that is away for a while only makes the spool grow,
//! up to `spool_max_bytes`; then sources pause (the log files keep the lines, senders
//! retransmit). A torn record at the end (a crash during an append) is cut off when the spool
//! opens: it was never acknowledged to anyone, and the tailer's checkpoint still points
//! before it. `durable` keeps the format of this spool from before it (segments, records,
//! `cursor.json` read as the `ship` cursor's position).

use std::path::Path;

use model::Event;

use crate::Result;

/// The shipper's cursor.
pub const SHIP: &str = "ship";

/// The gateway's spool: batches of events, read by the shipper.
#[derive(Debug)]
pub struct Spool {
    batches: durable::Spool<Vec<Event>>,
}

/// Events read from the spool, and the position after them.
#[derive(Debug)]
pub struct Peeked {
    pub events: Vec<Event>,
    pub next: durable::Position,
}

impl Spool {
    /// Opens `STATE/spool`: one agent per state directory (its `LOCK`).
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool> {
        let batches = durable::Spool::open(dir, &[SHIP], durable::Limits::new(max_bytes))?;
        Ok(Spool { batches })
    }

    /// Bytes waiting to be shipped (approximately: whole segments count until deleted).
    pub fn used_bytes(&self) -> u64 {
        self.batches.used_bytes()
    }

    pub fn n_corrupt(&self) -> u64 {
        self.batches.n_corrupt()
    }

    /// Appends events as one record and makes it durable. Fails with
    /// [`crate::Error::SpoolFull`] (and writes nothing) when the spool would exceed its bound.
    pub fn append(&mut self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        Ok(self.batches.append(events)?)
    }

    /// Reads whole records from the cursor until at least `max_events` events or
    /// `max_bytes` of records, or the end. Does not move the cursor: call [`Spool::commit`]
    /// once the events are acknowledged.
    pub fn peek(&mut self, max_events: usize, max_bytes: usize) -> Result<Option<Peeked>> {
        let Some(peeked) = self
            .batches
            .peek_weighted(SHIP, max_events, max_bytes, Vec::len)?
        else {
            return Ok(None);
        };
        for damage in &peeked.damage {
            tracing::error!(%damage, "skipping what cannot be read in the spool");
        }
        Ok(Some(Peeked {
            events: peeked.records.into_iter().flatten().collect(),
            next: peeked.next,
        }))
    }

    /// Moves the cursor past acknowledged records and deletes finished segments.
    pub fn commit(&mut self, next: durable::Position) -> Result<()> {
        Ok(self.batches.commit(SHIP, next)?)
    }
}

#[cfg(test)]
mod tests;
