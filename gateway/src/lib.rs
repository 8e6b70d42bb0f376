//! The tunnelwatch gateway agent: it runs on the VPN host, turns what the VPN says into
//! [`model::Event`]s and ships them to the server without losing any.
//!
//! The front door is [`run`]: given a [`Config`], it follows every configured log source with
//! a [`tail::FileTailer`], parses lines with a [`parse::Parser`], appends the events to the
//! on-disk [`spool::Spool`] (fsync) before moving the source's [`tail::Checkpoint`], and ships
//! spooled batches to the server with a [`ship::Shipper`], moving the spool's cursor only
//! after the server acknowledged a batch as durable. Every event carries a (source, sequence)
//! id, so the server stores a resent batch once.
//!
//! The parsers are pure and also used on their own: `tunnelwatch parse` and `tunnelwatch
//! ingest` call [`parse::Parser`] directly.
//!
//! This crate never links Arrow, DataFusion or tantivy: it is what runs on the VPN host.

mod config;
mod error;
mod fsutil;
pub mod parse;
pub mod ship;
pub mod spool;
pub mod tail;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::{Notify, watch};

pub use config::{Config, SourceConfig, StartAt};
pub use error::{Error, ErrorKind, Result};

use parse::{LogClock, ParseOptions, Parser};
use ship::{Backoff, Shipper};
use spool::Spool;
use tail::{Checkpoint, FileTailer, TailOptions};

/// Runs the agent until `shutdown` resolves. `token` is the bearer token for the server
/// (read from `token_file` by the caller).
pub async fn run(
    config: &Config,
    gateway_name: &str,
    token: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    config.validate()?;
    let tz = TimeZone::get(&config.timezone)
        .map_err(|error| Error::Config(format!("time zone `{}`: {error}", config.timezone)))?;
    fsutil::create_dir_all(&config.state_dir.join("checkpoints"))?;
    let spool = Spool::open(&config.state_dir.join("spool"), config.spool_max_bytes)?;
    let spool = Arc::new(Mutex::new(spool));
    let spooled = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut tasks = tokio::task::JoinSet::new();
    for source in &config.sources {
        let SourceConfig::File {
            format,
            path,
            start_at,
            ..
        } = source;
        let mut parse_options = ParseOptions::new(
            String::new(),
            LogClock::new(tz.clone(), None, Timestamp::now()),
        );
        parse_options.hostname = Some(gateway_name.to_owned());
        parse_options.max_line_bytes = config.max_line_bytes;
        let follower = Follower {
            source_name: format!("{gateway_name}/{}", source.name()),
            path: path.clone(),
            checkpoint_path: config
                .state_dir
                .join("checkpoints")
                .join(format!("{}.json", source.name())),
            tail_options: TailOptions {
                from_end: *start_at == StartAt::End,
                max_line_bytes: config.max_line_bytes,
                rotate_grace: Duration::from_millis(config.rotate_grace_ms),
            },
            format: *format,
            parse_options,
            batch_max_events: config.batch_max_events,
            poll_interval: Duration::from_millis(config.poll_interval_ms),
        };
        tasks.spawn(follower.run(Arc::clone(&spool), Arc::clone(&spooled), stop_rx.clone()));
    }
    let shipper = Shipper::new(&config.server_url, token, gateway_name)?;
    let shipping = Shipping {
        shipper,
        batch_max_events: config.batch_max_events,
        batch_max_wait: Duration::from_millis(config.batch_max_wait_ms),
        dead_letter_dir: config.state_dir.join("dead-letter"),
    };
    tasks.spawn(shipping.run(Arc::clone(&spool), spooled, stop_rx));

    tokio::select! {
        () = shutdown => {}
        Some(joined) = tasks.join_next() => {
            // A task only ends early on an error it cannot get past (e.g. the state
            // directory became unwritable).
            let _ = stop_tx.send(true);
            return match joined {
                Ok(result) => result,
                Err(join_error) => Err(Error::Config(format!("gateway task failed: {join_error}"))),
            };
        }
    }
    let _ = stop_tx.send(true);
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(error)) = joined {
            tracing::warn!(%error, "gateway task ended with an error during shutdown");
        }
    }
    Ok(())
}

/// Follows one file: tail, parse, spool, checkpoint.
struct Follower {
    /// `<gateway>/<source>`; the tailer's epoch is appended to make the source id.
    source_name: String,
    path: PathBuf,
    checkpoint_path: PathBuf,
    tail_options: TailOptions,
    format: parse::Format,
    parse_options: ParseOptions,
    batch_max_events: usize,
    poll_interval: Duration,
}

/// Events per spool record are also bounded by size, so that a batch stays well below the
/// server's body limit even when lines are long.
const SPOOL_RECORD_MAX_BYTES: usize = model::wire::MAX_INGEST_BODY_BYTES / 8;

impl Follower {
    async fn run(
        self,
        spool: Arc<Mutex<Spool>>,
        spooled: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let checkpoint = Checkpoint::load(&self.checkpoint_path)?;
        let had_checkpoint = checkpoint.is_some();
        let (mut tailer, notices) = FileTailer::open(&self.path, checkpoint, self.tail_options)?;
        for notice in notices {
            tracing::warn!(source = %self.source_name, "{notice}");
        }
        if !had_checkpoint {
            // The epoch must be on disk before any event of it is spooled: otherwise a crash
            // would restart the sequence under a new epoch and store those lines twice.
            tailer.checkpoint().store(&self.checkpoint_path)?;
        }
        let source_id = format!("{}@{}", self.source_name, tailer.epoch());
        let mut parse_options = self.parse_options.clone();
        parse_options.source.clone_from(&source_id);
        let mut parser = Parser::new(self.format, parse_options);
        tracing::info!(source = %source_id, path = %self.path.display(), "following log file");
        let mut n_reported_rejects = 0;
        loop {
            let (returned_tailer, polled) = tokio::task::spawn_blocking(move || {
                let polled = tailer.poll();
                (tailer, polled)
            })
            .await
            .map_err(|join_error| Error::Config(format!("tail task failed: {join_error}")))?;
            tailer = returned_tailer;
            let polled = polled?;
            for notice in &polled.notices {
                tracing::info!(source = %source_id, "{notice}");
            }
            let had_lines = !polled.lines.is_empty();
            if had_lines || !polled.notices.is_empty() {
                let now = Timestamp::now();
                parser.set_now(now);
                let mut events = Vec::with_capacity(polled.lines.len());
                for line in &polled.lines {
                    if line.len > line.bytes.len() {
                        parser.parse_oversized(&line.bytes, line.len, line.seq, now, &mut events);
                    } else {
                        parser.parse_line(&line.bytes, line.seq, now, &mut events);
                    }
                }
                let n_rejected = parser.stats().n_rejected();
                if n_rejected > n_reported_rejects {
                    tracing::warn!(source = %source_id, n_rejected, stats = %parser.stats(), "rejected log lines (kept as pipeline errors)");
                    n_reported_rejects = n_rejected;
                }
                let checkpoint = tailer.checkpoint();
                if !self.spool_all(events, &spool, &mut stop).await? {
                    return Ok(());
                }
                let checkpoint_path = self.checkpoint_path.clone();
                tokio::task::spawn_blocking(move || checkpoint.store(&checkpoint_path))
                    .await
                    .map_err(|join_error| {
                        Error::Config(format!("checkpoint task failed: {join_error}"))
                    })??;
                spooled.notify_one();
            }
            if !had_lines && polled.n_bytes == 0 {
                tokio::select! {
                    () = tokio::time::sleep(self.poll_interval) => {}
                    _ = stop.changed() => return Ok(()),
                }
            } else if *stop.borrow() {
                return Ok(());
            }
        }
    }

    /// Appends events to the spool in batches, waiting while it is full. Returns false if
    /// asked to stop meanwhile (the checkpoint then stays before the unspooled lines).
    async fn spool_all(
        &self,
        events: Vec<model::Event>,
        spool: &Arc<Mutex<Spool>>,
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
            let batch = remaining;
            remaining = rest;
            let mut backoff = Backoff::new();
            loop {
                let batch_for_task = batch.clone();
                let appended = with_spool(spool, move |spool| spool.append(&batch_for_task)).await;
                match appended {
                    Ok(()) => break,
                    Err(error @ Error::SpoolFull { .. }) => {
                        tracing::warn!(source = %self.source_name, %error, "pausing");
                        tokio::select! {
                            () = tokio::time::sleep(backoff.next_delay()) => {}
                            _ = stop.changed() => return Ok(false),
                        }
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(true)
    }
}

/// Runs `work` on the spool on a blocking thread (spool IO fsyncs).
async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    work: impl FnOnce(&mut Spool) -> Result<T> + Send + 'static,
) -> Result<T> {
    let spool = Arc::clone(spool);
    tokio::task::spawn_blocking(move || {
        let mut spool = spool
            .lock()
            .map_err(|_| Error::Config("spool lock poisoned".to_owned()))?;
        work(&mut spool)
    })
    .await
    .map_err(|join_error| Error::Config(format!("spool task failed: {join_error}")))?
}

/// Ships spooled batches until stopped.
struct Shipping {
    shipper: Shipper,
    batch_max_events: usize,
    batch_max_wait: Duration,
    /// Batches the server refused as invalid (4xx other than auth) are kept here, never
    /// dropped, so that one bad batch cannot stop delivery of everything behind it.
    dead_letter_dir: PathBuf,
}

impl Shipping {
    async fn run(
        self,
        spool: Arc<Mutex<Spool>>,
        spooled: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let mut backoff = Backoff::new();
        let mut failing_since: Option<Timestamp> = None;
        let batch_max_events = self.batch_max_events;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let peeked = with_spool(&spool, move |spool| {
                spool.peek(batch_max_events, model::wire::MAX_INGEST_BODY_BYTES / 4)
            })
            .await?;
            let Some(peeked) = peeked else {
                tokio::select! {
                    () = spooled.notified() => {}
                    () = tokio::time::sleep(self.batch_max_wait) => {}
                    _ = stop.changed() => return Ok(()),
                }
                continue;
            };
            let n_events = peeked.events.len();
            let result = tokio::select! {
                result = self.deliver(peeked.events) => result,
                _ = stop.changed() => return Ok(()),
            };
            match result {
                Ok(ack) => {
                    with_spool(&spool, move |spool| spool.commit(peeked.next)).await?;
                    if let Some(since) = failing_since.take() {
                        tracing::info!(%since, "server reachable again");
                    }
                    tracing::debug!(
                        n_events,
                        accepted = ack.accepted,
                        duplicates = ack.duplicates,
                        "batch shipped"
                    );
                    backoff.reset();
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    if failing_since.is_none() {
                        failing_since = Some(Timestamp::now());
                    }
                    tracing::warn!(%error, n_events, retry_in_ms = delay.as_millis() as u64, "shipping failed; events stay spooled");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return Ok(()),
                    }
                }
            }
        }
    }

    /// Sends events, halving a batch the server finds too large and setting aside one it
    /// refuses as invalid. An error means "retry all of it later" (the server drops resends).
    async fn deliver(&self, events: Vec<model::Event>) -> Result<model::IngestAck> {
        let mut total = model::IngestAck::default();
        let mut pending = vec![events];
        while let Some(mut chunk) = pending.pop() {
            match self.shipper.send(&chunk).await {
                Ok(ack) => {
                    total.accepted += ack.accepted;
                    total.duplicates += ack.duplicates;
                }
                Err(Error::Rejected { status: 413, .. }) if chunk.len() > 1 => {
                    let second_half = chunk.split_off(chunk.len() / 2);
                    pending.push(second_half);
                    pending.push(chunk);
                }
                Err(error @ Error::Rejected { status, .. }) if status != 401 && status != 403 => {
                    let path = self.dead_letter(&chunk, &error)?;
                    tracing::error!(%error, n_events = chunk.len(), path = %path.display(), "the server refused a batch; kept it as a dead letter and went on");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(total)
    }

    fn dead_letter(&self, events: &[model::Event], error: &Error) -> Result<PathBuf> {
        fsutil::create_dir_all(&self.dead_letter_dir)?;
        let path = self
            .dead_letter_dir
            .join(format!("{}.json", Timestamp::now().as_microsecond()));
        let body = serde_json::json!({ "error": error.to_string(), "events": events });
        let bytes = serde_json::to_vec(&body)
            .map_err(|error| Error::Config(format!("cannot encode a dead letter: {error}")))?;
        fsutil::write_atomic(&path, &bytes)?;
        Ok(path)
    }
}
