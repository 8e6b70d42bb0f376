//! Where every source puts its events: the durable [`Spool`], shared by all sources.
//!
//! A [`Sink`] belongs to one source. It names the source (`<gateway>/<name>@<epoch>`), hands
//! out its sequence numbers, and appends events to the spool, returning only once they are
//! fsynced. Live sources (VICI, RADIUS accounting, the syslog receiver) acknowledge what they
//! received only after [`Sink::append`] returned, so an event is either spooled or still held
//! by its sender (a RADIUS client retransmits, a TCP syslog sender resends).

use std::sync::{Arc, Mutex};

use model::{Event, EventId};
use tokio::sync::{Notify, watch};

use crate::ship::Backoff;
use crate::spool::Spool;
use crate::{Error, Result};

/// Events per spool record are also bounded by size, so that a batch stays well below the
/// server's body limit even when lines are long.
const SPOOL_RECORD_MAX_BYTES: usize = model::wire::MAX_INGEST_BODY_BYTES / 8;

/// The spool, shared by every source and the shipper, and the signal that it grew.
#[derive(Debug, Clone)]
pub struct SharedSpool {
    spool: Arc<Mutex<Spool>>,
    spooled: Arc<Notify>,
}

impl SharedSpool {
    pub fn new(spool: Spool) -> SharedSpool {
        SharedSpool {
            spool: Arc::new(Mutex::new(spool)),
            spooled: Arc::new(Notify::new()),
        }
    }

    /// Runs `work` on the spool on a blocking thread (spool IO fsyncs).
    pub async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Spool) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let spool = Arc::clone(&self.spool);
        tokio::task::spawn_blocking(move || {
            let mut spool = spool
                .lock()
                .map_err(|_| Error::Internal("spool lock poisoned".to_owned()))?;
            work(&mut spool)
        })
        .await
        .map_err(|join_error| Error::task_failed("spool", join_error))?
    }

    /// Resolves when a source appended events since the last call.
    pub async fn spooled(&self) {
        self.spooled.notified().await;
    }
}

/// One source's way into the spool.
#[derive(Debug)]
pub struct Sink {
    source_id: String,
    next_seq: u64,
    batch_max_events: usize,
    shared: SharedSpool,
}

impl Sink {
    /// `source_id` is the full id (`<gateway>/<name>@<epoch>`); sequence numbers start at
    /// `next_seq`.
    pub fn new(
        shared: SharedSpool,
        source_id: String,
        next_seq: u64,
        batch_max_events: usize,
    ) -> Sink {
        Sink {
            source_id,
            next_seq,
            batch_max_events: batch_max_events.max(1),
            shared,
        }
    }

    pub fn source_id(&self) -> &str {
        &self.source_id
    }

    /// The sequence number the next event gets from [`Sink::next_id`].
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A fresh id for an event of this source.
    pub fn next_id(&mut self) -> EventId {
        let id = EventId::new(self.source_id.clone(), self.next_seq, 0);
        self.next_seq += 1;
        id
    }

    /// Takes `n` sequence numbers (e.g. for lines a parser numbers itself) and returns the first.
    pub fn reserve(&mut self, n: u64) -> u64 {
        let first = self.next_seq;
        self.next_seq += n;
        first
    }

    /// Appends events to the spool in records, waiting while it is full. Returns `Ok(true)`
    /// once every event is fsynced, `Ok(false)` if asked to stop before that (the caller then
    /// must not acknowledge them).
    pub async fn append(
        &self,
        events: Vec<Event>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        let mut remaining = events;
        while !remaining.is_empty() {
            let mut n_take = 0;
            let mut n_bytes = 0;
            while n_take < remaining.len()
                && n_take < self.batch_max_events
                && (n_take == 0 || n_bytes < SPOOL_RECORD_MAX_BYTES)
            {
                n_bytes += remaining[n_take].original.len() + 512;
                n_take += 1;
            }
            let rest = remaining.split_off(n_take);
            let batch = Arc::new(remaining);
            remaining = rest;
            let mut backoff = Backoff::new();
            loop {
                let batch_for_task = Arc::clone(&batch);
                let appended = self
                    .shared
                    .with(move |spool| spool.append(&batch_for_task))
                    .await;
                match appended {
                    Ok(()) => break,
                    Err(error @ Error::SpoolFull { .. }) => {
                        tracing::warn!(source = %self.source_id, %error, "pausing");
                        tokio::select! {
                            () = tokio::time::sleep(backoff.next_delay()) => {}
                            _ = stop.changed() => return Ok(false),
                        }
                    }
                    Err(error) => return Err(error),
                }
            }
            self.shared.spooled.notify_one();
        }
        Ok(true)
    }
}
