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
use tail::{Checkpoint, FileTailer};

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
        let source_id = format!("{gateway_name}/{}", source.name());
        let mut options = ParseOptions::new(
            source_id.clone(),
            LogClock::new(tz.clone(), None, Timestamp::now()),
        );
        options.hostname = Some(gateway_name.to_owned());
        options.max_line_bytes = config.max_line_bytes;
        let follower = Follower {
            source_id,
            path: path.clone(),
            checkpoint_path: config
                .state_dir
                .join("checkpoints")
                .join(format!("{}.json", source.name())),
            from_end: *start_at == StartAt::End,
            parser: Parser::new(*format, options),
            batch_max_events: config.batch_max_events,
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            max_line_bytes: config.max_line_bytes,
        };
        tasks.spawn(follower.run(Arc::clone(&spool), Arc::clone(&spooled), stop_rx.clone()));
    }
    let shipper = Shipper::new(&config.server_url, token, gateway_name)?;
    let batch_max_wait = Duration::from_millis(config.batch_max_wait_ms);
    tasks.spawn(ship_loop(
        shipper,
        Arc::clone(&spool),
        spooled,
        config.batch_max_events,
        batch_max_wait,
        stop_rx,
    ));

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
    source_id: String,
    path: PathBuf,
    checkpoint_path: PathBuf,
    from_end: bool,
    parser: Parser,
    batch_max_events: usize,
    poll_interval: Duration,
    max_line_bytes: usize,
}

impl Follower {
    async fn run(
        mut self,
        spool: Arc<Mutex<Spool>>,
        spooled: Arc<Notify>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let checkpoint = Checkpoint::load(&self.checkpoint_path)?;
        let (mut tailer, notices) =
            FileTailer::open(&self.path, checkpoint, self.from_end, self.max_line_bytes)?;
        for notice in notices {
            tracing::warn!(source = %self.source_id, "{notice}");
        }
        tracing::info!(source = %self.source_id, path = %self.path.display(), "following log file");
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
                tracing::info!(source = %self.source_id, "{notice}");
            }
            let had_lines = !polled.lines.is_empty();
            if had_lines {
                let now = Timestamp::now();
                self.parser.set_now(now);
                let mut events = Vec::with_capacity(polled.lines.len());
                for line in &polled.lines {
                    if line.len > line.bytes.len() {
                        self.parser.parse_oversized(
                            &line.bytes,
                            line.len,
                            line.seq,
                            now,
                            &mut events,
                        );
                    } else {
                        self.parser
                            .parse_line(&line.bytes, line.seq, now, &mut events);
                    }
                }
                let n_rejected = self.parser.stats().n_rejected();
                if n_rejected > n_reported_rejects {
                    tracing::warn!(source = %self.source_id, n_rejected, stats = %self.parser.stats(), "rejected log lines (kept as pipeline errors)");
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
            let rest = remaining.split_off(remaining.len().min(self.batch_max_events));
            let batch = remaining;
            remaining = rest;
            let mut backoff = Backoff::new();
            loop {
                let spool_for_task = Arc::clone(spool);
                let batch_for_task = batch.clone();
                let appended = tokio::task::spawn_blocking(move || {
                    let mut spool = spool_for_task
                        .lock()
                        .map_err(|_| Error::Config("spool lock poisoned".to_owned()))?;
                    spool.append(&batch_for_task)
                })
                .await
                .map_err(|join_error| Error::Config(format!("spool task failed: {join_error}")))?;
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
        }
        Ok(true)
    }
}

/// Ships spooled batches until stopped.
async fn ship_loop(
    shipper: Shipper,
    spool: Arc<Mutex<Spool>>,
    spooled: Arc<Notify>,
    batch_max_events: usize,
    batch_max_wait: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut backoff = Backoff::new();
    let mut failing_since: Option<Timestamp> = None;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let spool_for_task = Arc::clone(&spool);
        let peeked = tokio::task::spawn_blocking(move || {
            let mut spool = spool_for_task
                .lock()
                .map_err(|_| Error::Config("spool lock poisoned".to_owned()))?;
            spool.peek(batch_max_events)
        })
        .await
        .map_err(|join_error| Error::Config(format!("spool task failed: {join_error}")))??;
        let Some(peeked) = peeked else {
            tokio::select! {
                () = spooled.notified() => {}
                () = tokio::time::sleep(batch_max_wait) => {}
                _ = stop.changed() => return Ok(()),
            }
            continue;
        };
        let n_events = peeked.events.len();
        let result = if peeked.events.is_empty() {
            Ok(model::IngestAck::default())
        } else {
            tokio::select! {
                result = shipper.send(peeked.events) => result,
                _ = stop.changed() => return Ok(()),
            }
        };
        match result {
            Ok(ack) => {
                let spool_for_task = Arc::clone(&spool);
                tokio::task::spawn_blocking(move || {
                    let mut spool = spool_for_task
                        .lock()
                        .map_err(|_| Error::Config("spool lock poisoned".to_owned()))?;
                    spool.commit(peeked.next)
                })
                .await
                .map_err(|join_error| {
                    Error::Config(format!("spool task failed: {join_error}"))
                })??;
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
