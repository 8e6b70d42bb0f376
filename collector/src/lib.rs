//! The collector: turns the events gateways send into what the store keeps.
//!
//! The front door is [`run`]: it takes [`Batch`]es of [`model::Event`]s from a channel,
//! rebuilds VPN sessions with the [`Sessionizer`] (stamping every event with its
//! `session_id`), and sends an [`Output`] (the events and the sessions that changed) on. The
//! caller connects that output to the store, which acknowledges each batch only once it is
//! durable; the reply travels with the output for that purpose. The collector does not depend
//! on the store (ARCHITECTURE.md), so sessionizing is tested without Parquet.
//!
//! [`GeoIp`] adds where clients connect from (`source_geo` of events, `client_geo` of
//! sessions) from the GeoIP databases of `[collector.geoip]`.

mod error;
pub mod geoip;
mod join;
mod session;

use std::sync::{Arc, PoisonError, RwLock};

use model::{CollectorCheckpoint, Event, IngestAck, Session, SessionJoinUpdate};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

pub use error::{Error, Result};
pub use geoip::{GeoIp, GeoIpConfig, GeoIpStatus};
pub use join::{JoinConfig, JoinStats, Joiner};
pub use session::{SessionConfig, SessionStats, Sessionizer};

/// `[collector]` configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[collector.geoip]`: where client addresses are located.
    #[serde(default)]
    pub geoip: GeoIpConfig,
    /// `[collector.join]`: how flows and API requests find their session.
    #[serde(default)]
    pub join: JoinConfig,
    /// `[collector.sessions]`: how the sources of one login become one session.
    #[serde(default)]
    pub sessions: SessionConfig,
}

/// Where the answer for a batch goes: the ingest endpoint waits on it.
pub type Reply = oneshot::Sender<std::result::Result<IngestAck, String>>;

/// Events from one gateway request (or one file of `tunnelwatch ingest`), in source order.
#[derive(Debug)]
pub struct Batch {
    pub events: Vec<Event>,
    pub reply: Option<Reply>,
    /// The last batch of a finite input (`tunnelwatch ingest`): accounting still held for the
    /// VPN's events becomes sessions of its own, and logins still negotiating never will.
    pub end_of_input: bool,
}

/// What the store must write for one batch.
#[derive(Debug)]
pub struct Output {
    pub events: Vec<Event>,
    /// New snapshots of the sessions the batch changed.
    pub sessions: Vec<Session>,
    /// Corrections of flows and API requests stored earlier, whose session arrived now, and
    /// of VPN events whose login turned out to be part of another session (or none).
    pub joins: Vec<SessionJoinUpdate>,
    /// The logins the collector is still assembling, when they changed: stored with this
    /// output, and handed back in [`Restart::checkpoint`] after a restart.
    pub checkpoint: Option<CollectorCheckpoint>,
    pub reply: Option<Reply>,
}

/// What the collector counted, for metrics: the join's and the sessionizer's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CollectorStats {
    pub join: JoinStats,
    pub sessions: SessionStats,
}

/// A shared view of [`CollectorStats`] that stays current (after every batch) while the
/// collector runs in its task.
#[derive(Debug, Clone, Default)]
pub struct StatsHandle(Arc<RwLock<CollectorStats>>);

impl StatsHandle {
    pub fn get(&self) -> CollectorStats {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, stats: CollectorStats) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = stats;
    }
}

/// What the collector starts from after a restart, read back from the store.
#[derive(Debug, Clone, Default)]
pub struct Restart {
    /// Open and recently closed sessions (the store's `recent_sessions`).
    pub sessions: Vec<Session>,
    /// Leases of sessions ended within `lease_retention_secs` and the unmatched flows and API
    /// requests of the last `late_join_secs` (the store's `join_restart`).
    pub join: model::JoinRestart,
    /// The newest checkpoint the collector stored (the store's `collector_checkpoint`).
    pub checkpoint: Option<CollectorCheckpoint>,
}

/// Runs until `input` closes, then returns once every output was handed on.
pub async fn run(
    config: &Config,
    restart: Restart,
    input: mpsc::Receiver<Batch>,
    output: mpsc::Sender<Output>,
) -> Result<()> {
    run_with_geoip(
        config,
        GeoIp::new(&config.geoip),
        restart,
        StatsHandle::default(),
        input,
        output,
    )
    .await
}

/// [`run`] with a [`GeoIp`] the caller made, so that it can keep its
/// [`GeoIp::status_handle`], and a [`StatsHandle`] it keeps too (for the health endpoints).
pub async fn run_with_geoip(
    config: &Config,
    mut geoip: GeoIp,
    restart: Restart,
    stats: StatsHandle,
    mut input: mpsc::Receiver<Batch>,
    output: mpsc::Sender<Output>,
) -> Result<()> {
    let mut joiner = Joiner::new(config.join.clone(), &restart.sessions);
    let (n_leases, n_unmatched) = (restart.join.leases.len(), restart.join.unmatched.len());
    // Corrections a crash kept from being stored go out first.
    let joins = joiner.restore(restart.join, jiff::Timestamp::now());
    let mut sessionizer = Sessionizer::restore(
        config.sessions.clone(),
        restart.sessions,
        restart.checkpoint.as_ref(),
        jiff::Timestamp::now(),
    );
    geoip.refresh().await;
    let session_stats = sessionizer.stats();
    tracing::info!(
        n_sessions = session_stats.sessions,
        n_pending = session_stats.pending,
        n_leases,
        n_unmatched,
        n_corrections = joins.len(),
        restore_skipped = joiner.stats().restore_skipped,
        "collector started"
    );
    stats.set(CollectorStats {
        join: joiner.stats(),
        sessions: session_stats,
    });
    if !joins.is_empty() {
        let out = Output {
            events: Vec::new(),
            sessions: Vec::new(),
            joins,
            checkpoint: None,
            reply: None,
        };
        if output.send(out).await.is_err() {
            return Err(Error::OutputClosed);
        }
    }
    // Held accounting is shown when its hold passes, batches or not.
    let mut ticker = tokio::time::interval(EXPIRE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = jiff::Timestamp::now();
        let (mut events, mut sessions, reply) = tokio::select! {
            batch = input.recv() => {
                let Some(mut batch) = batch else { break };
                geoip.refresh().await;
                geoip.enrich_events(&mut batch.events);
                let mut sessions = sessionizer.apply(&mut batch.events, now);
                if batch.end_of_input {
                    sessions.extend(sessionizer.finish(now));
                }
                (batch.events, sessions, batch.reply)
            }
            _ = ticker.tick() => {
                let sessions = sessionizer.expire(now);
                (Vec::new(), sessions, None)
            }
        };
        let corrections = sessionizer.take_corrections();
        let checkpoint = sessionizer.checkpoint();
        let nothing = events.is_empty()
            && reply.is_none()
            && sessions.is_empty()
            && corrections.is_empty()
            && checkpoint.is_none();
        if nothing {
            continue;
        }
        geoip.enrich_sessions(&mut sessions);
        // Sessions first: a flow may come in the same batch as the session it belongs to.
        let mut joins = joiner.update_sessions(&sessions, now);
        joiner.join_events(&mut events);
        joins.extend(corrections);
        stats.set(CollectorStats {
            join: joiner.stats(),
            sessions: sessionizer.stats(),
        });
        let out = Output {
            events,
            sessions,
            joins,
            checkpoint,
            reply,
        };
        if output.send(out).await.is_err() {
            return Err(Error::OutputClosed);
        }
    }
    Ok(())
}

/// How often held accounting is checked for a passed hold.
const EXPIRE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
