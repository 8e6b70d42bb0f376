//! The server-side path of every event: collector, then store. Used by `server`, `demo` and
//! `ingest`, so a forensic import goes through exactly what live ingest goes through.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use model::{Event, IngestAck, IngestBatch};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// A handle to submit events; the pipeline stops (after a final flush) when every handle
/// is dropped.
#[derive(Clone, Debug)]
pub struct Pipeline {
    batches: mpsc::Sender<collector::Batch>,
    geoip: collector::geoip::StatusHandle,
    stats: collector::StatsHandle,
}

impl Pipeline {
    /// Starts the collector and the store writer. The returned task ends after the last
    /// handle is dropped and everything accepted is flushed to Parquet.
    pub fn start(
        store: store::Store,
        store_config: &store::Config,
        collector_config: &collector::Config,
    ) -> anyhow::Result<(Pipeline, JoinHandle<anyhow::Result<()>>)> {
        let known_sessions = store
            .recent_sessions()
            .context("cannot read the sessions kept for a restart")?;
        let checkpoint = store
            .collector_checkpoint()
            .context("cannot read the collector's checkpoint")?;
        let (batch_tx, batch_rx) = mpsc::channel::<collector::Batch>(64);
        let (output_tx, output_rx) = mpsc::channel::<collector::Output>(64);
        let collector_config = collector_config.clone();
        let geoip = collector::GeoIp::new(&collector_config.geoip);
        let geoip_status = geoip.status_handle();
        let stats = collector::StatsHandle::default();
        let stats_for_task = stats.clone();
        let store_for_restart = store.clone();
        let collector_task = tokio::spawn(async move {
            let join = &collector_config.join;
            let join = store_for_restart
                .join_restart(
                    Duration::from_secs(join.lease_retention_secs),
                    Duration::from_secs(join.late_join_secs),
                )
                .await
                .unwrap_or_else(|error| {
                    // The join starts without them: late events for sessions before the
                    // restart stay unmatched (marked so), nothing is lost.
                    tracing::error!(%error, "cannot read the join's leases and unmatched events back");
                    model::JoinRestart::default()
                });
            let restart = collector::Restart {
                sessions: known_sessions,
                join,
                checkpoint,
            };
            collector::run_with_geoip(
                &collector_config,
                geoip,
                restart,
                stats_for_task,
                batch_rx,
                output_tx,
            )
            .await
        });
        let flush_interval = Duration::from_secs(store_config.flush_interval_secs);
        let max_buffered_rows = store_config.max_buffered_rows;
        let writer_task = tokio::spawn(write_loop(
            store,
            output_rx,
            flush_interval,
            max_buffered_rows,
        ));
        let task = tokio::spawn(async move {
            let written = writer_task.await.context("the store writer panicked")?;
            let collected = collector_task.await.context("the collector panicked")?;
            written?;
            collected.context("the collector failed")?;
            Ok(())
        });
        Ok((
            Pipeline {
                batches: batch_tx,
                geoip: geoip_status,
                stats,
            },
            task,
        ))
    }

    /// Submits events and waits until they are durable.
    pub async fn submit(&self, events: Vec<Event>) -> Result<IngestAck, String> {
        self.submit_batch(events, false).await
    }

    /// Says that the input is complete (`tunnelwatch ingest`, after its last file): accounting
    /// still held for the VPN's events becomes sessions of its own. Waits until that is durable.
    pub async fn end_of_input(&self) -> Result<IngestAck, String> {
        self.submit_batch(Vec::new(), true).await
    }

    async fn submit_batch(
        &self,
        events: Vec<Event>,
        end_of_input: bool,
    ) -> Result<IngestAck, String> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.batches
            .send(collector::Batch {
                events,
                reply: Some(reply_tx),
                end_of_input,
            })
            .await
            .map_err(|_| "the server is shutting down".to_owned())?;
        reply_rx
            .await
            .map_err(|_| "the server is shutting down".to_owned())?
    }
}

/// The collector's part of `/api/v1/health` and `/metrics`: the GeoIP databases, the join
/// and the sessions.
impl dashboards::HealthSource for Pipeline {
    fn problems(&self) -> Vec<String> {
        self.geoip.get().problems()
    }

    fn detail(&self) -> serde_json::Value {
        let stats = self.stats.get();
        serde_json::json!({
            "geoip": self.geoip.get(),
            "join": stats.join,
            "sessions": stats.sessions,
        })
    }

    fn metrics(&self) -> Vec<dashboards::Metric> {
        use dashboards::MetricKind::{Counter, Gauge};
        let collector::CollectorStats { join, sessions } = self.stats.get();
        let metric = |name, help, kind, value| dashboards::Metric {
            name,
            help,
            kind,
            value,
        };
        vec![
            metric(
                "tunnelwatch_join_matched_total",
                "Flows and API requests joined to a session when they arrived",
                Counter,
                join.matched,
            ),
            metric(
                "tunnelwatch_join_unmatched_total",
                "Flows and API requests no session held the address for when they arrived",
                Counter,
                join.unmatched,
            ),
            metric(
                "tunnelwatch_join_not_vpn_total",
                "Flows and API requests from outside the VPN pool",
                Counter,
                join.not_vpn,
            ),
            metric(
                "tunnelwatch_join_late_updates_total",
                "Corrections of stored flows and API requests (late sessions)",
                Counter,
                join.late_updates,
            ),
            metric(
                "tunnelwatch_join_pending_dropped_total",
                "Events forgotten for a late join because max_pending was reached",
                Counter,
                join.pending_dropped,
            ),
            metric(
                "tunnelwatch_join_unmatched_dropped_total",
                "Of those, unmatched events: no late session can join them any more",
                Counter,
                join.unmatched_dropped,
            ),
            metric(
                "tunnelwatch_join_restore_skipped_total",
                "Stored unmatched events not taken back at start (unreadable, outside the pool)",
                Counter,
                join.restore_skipped,
            ),
            metric(
                "tunnelwatch_join_pending",
                "Events waiting for a late session",
                Gauge,
                join.pending,
            ),
            metric(
                "tunnelwatch_join_leases",
                "Virtual IP leases the join knows",
                Gauge,
                join.leases,
            ),
            metric(
                "tunnelwatch_sessions_orphan_events_total",
                "Events about a session never seen to begin (stored without a session)",
                Counter,
                sessions.orphan_events,
            ),
            metric(
                "tunnelwatch_sessions_repeated_ends_total",
                "Session ends said again (a second delete or accounting Stop, or a resend)",
                Counter,
                sessions.repeated_ends,
            ),
            metric(
                "tunnelwatch_sessions_in_memory",
                "Sessions the collector holds (open, and closed ones kept for late events)",
                Gauge,
                sessions.sessions,
            ),
            metric(
                "tunnelwatch_sessions_pending",
                "Logins being assembled: negotiating, or RADIUS accounting held for the VPN's events",
                Gauge,
                sessions.pending,
            ),
            metric(
                "tunnelwatch_sessions_accounting_only_total",
                "RADIUS accounting no VPN event explained within the hold: sessions of their own",
                Counter,
                sessions.accounting_only,
            ),
            metric(
                "tunnelwatch_sessions_abandoned_total",
                "Logins that never became a session (their events were corrected to none)",
                Counter,
                sessions.abandoned,
            ),
            metric(
                "tunnelwatch_sessions_checkpoint_unreadable_total",
                "Collector checkpoints that could not be read at start (their logins were lost)",
                Counter,
                sessions.checkpoint_unreadable,
            ),
        ]
    }
}

impl dashboards::Ingest for Pipeline {
    fn ingest(
        &self,
        batch: IngestBatch,
    ) -> Pin<Box<dyn Future<Output = Result<IngestAck, dashboards::IngestError>> + Send>> {
        let pipeline = self.clone();
        Box::pin(async move {
            let n_events = batch.events.len();
            let result = pipeline.submit(batch.events).await;
            match &result {
                Ok(ack) if ack.duplicates > 0 => {
                    tracing::info!(gateway = %batch.gateway, n_events, accepted = ack.accepted, duplicates = ack.duplicates, "a resend: some events were already stored")
                }
                Ok(ack) => {
                    tracing::debug!(gateway = %batch.gateway, n_events, accepted = ack.accepted, duplicates = ack.duplicates, "ingested")
                }
                Err(error) => {
                    tracing::warn!(gateway = %batch.gateway, n_events, %error, "ingest refused")
                }
            }
            result.map_err(dashboards::IngestError::Unavailable)
        })
    }
}

/// Appends each collector output to the store (WAL + fsync), then answers the batch;
/// flushes to Parquet on a timer, when much is buffered, and at the end.
async fn write_loop(
    store: store::Store,
    mut outputs: mpsc::Receiver<collector::Output>,
    flush_interval: Duration,
    max_buffered_rows: usize,
) -> anyhow::Result<()> {
    // Flushes, compaction and retention run beside the appends (`maintain`): acknowledgements
    // never wait for them.
    let full = Arc::new(tokio::sync::Notify::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let maintenance = tokio::spawn(maintain(
        store.clone(),
        flush_interval,
        full.clone(),
        stop_rx,
    ));
    // What a failed append held that nobody sends again: written with the next one.
    let mut unstored = Unstored::default();
    while let Some(output) = outputs.recv().await {
        // Group commit: whatever else is already waiting goes into the same WAL
        // record and fsync.
        let mut group = vec![output];
        while group.len() < MAX_GROUP {
            match outputs.try_recv() {
                Ok(more) => group.push(more),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(group.len());
        let mut joins = Vec::new();
        let mut checkpoint = None;
        let mut batches: Vec<_> = group
            .into_iter()
            .map(|output| {
                replies.push(output.reply);
                joins.extend(output.joins);
                // The collector's newest checkpoint as of the group's last batch.
                if output.checkpoint.is_some() {
                    checkpoint = output.checkpoint;
                }
                (output.events, output.sessions)
            })
            .collect();
        // What an earlier failed append held goes first (the group is newer).
        let carried = std::mem::take(&mut unstored);
        if !carried.is_empty() {
            batches.insert(
                0,
                (carried.events, carried.sessions.into_values().collect()),
            );
            replies.insert(0, None);
            joins.splice(0..0, carried.joins);
            checkpoint = checkpoint.or(carried.checkpoint);
        }
        let attempt = Unstored::of_group(&batches, &replies, &joins, checkpoint.as_ref());
        let store_for_task = store.clone();
        // Late session joins and the collector's checkpoint travel in the same WAL
        // record as the batches that caused them.
        let appended = tokio::task::spawn_blocking(move || {
            store_for_task.append_collected(batches, joins, checkpoint)
        })
        .await
        .context("store append panicked")?;
        match appended {
            Ok(receipts) => {
                for (reply, receipt) in replies.into_iter().zip(receipts) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(IngestAck {
                            accepted: receipt.accepted,
                            duplicates: receipt.duplicates,
                        }));
                    }
                }
            }
            Err(error) => {
                // The senders resend their events; the collector's side of them (and
                // events nobody resends) is kept for the next append.
                unstored = attempt;
                tracing::error!(%error, n_batches = replies.len(), "cannot store batches; the senders will retry");
                // The whole chain, so that the gateway's log says why ("No space
                // left on device").
                let answer = format!("cannot store the batch: {}", error_chain(&error));
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(answer.clone()));
                }
            }
        }
        if store.buffered_rows().unwrap_or(0) >= max_buffered_rows {
            full.notify_one();
        }
    }
    // Everything is appended: the maintenance stops, then one last flush.
    let _ = stop_tx.send(true);
    maintenance
        .await
        .context("the store's maintenance panicked")?;
    let store_for_task = store.clone();
    tokio::task::spawn_blocking(move || {
        // Sealed at shutdown: a stopped server leaves a trail `audit verify` passes.
        if let Err(error) = store_for_task.seal_audit() {
            tracing::error!(%error, "sealing the audit trail at shutdown failed");
        }
        store_for_task.flush()
    })
    .await
    .context("final flush panicked")?
    .context("final flush failed")?;
    Ok(())
}

/// Signs the audit trail's head when entries have waited `audit_seal_interval_secs`.
async fn seal_if_due(store: &store::Store) {
    let store_for_task = store.clone();
    match tokio::task::spawn_blocking(move || store_for_task.seal_audit_if_due()).await {
        Ok(Ok(Some(seal))) => tracing::debug!(seal = %seal.id, "sealed the audit trail"),
        Ok(Ok(None)) => {}
        Ok(Err(error)) => {
            tracing::error!(%error, "sealing the audit trail failed; retried at the next tick")
        }
        Err(error) => tracing::error!(%error, "the audit seal task panicked"),
    }
}

/// Flushes to Parquet on a timer and when `full` says much is buffered; compacts and applies
/// retention on theirs. One at a time, each on a blocking thread, until `stop`.
async fn maintain(
    store: store::Store,
    flush_interval: Duration,
    full: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Retention at start and then every ten minutes (partitions are hours).
    let mut retention = tokio::time::interval(RETENTION_INTERVAL);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut compaction = tokio::time::interval(COMPACTION_INTERVAL);
    compaction.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                flush(&store).await;
                seal_if_due(&store).await;
            }
            () = full.notified() => flush(&store).await,
            _ = retention.tick() => apply_retention(&store).await,
            _ = compaction.tick() => compact(&store).await,
            _ = stop.changed() => return,
        }
    }
}

/// What a failed append held that its senders do not send again: the collector's session
/// snapshots (newest version of each), its corrections and its newest checkpoint, and the
/// events of outputs that had no sender (none today but tests). Written with the next append
/// (and kept again, with that append's own, if it fails too); bounded by the sessions and
/// corrections there are, not by how often the append fails.
#[derive(Debug, Default)]
struct Unstored {
    events: Vec<model::Event>,
    sessions: std::collections::BTreeMap<String, model::Session>,
    joins: Vec<model::SessionJoinUpdate>,
    checkpoint: Option<model::CollectorCheckpoint>,
}

impl Unstored {
    /// The collector's side of a group about to be appended (`replies[i]` is batch `i`'s).
    fn of_group(
        batches: &[(Vec<model::Event>, Vec<model::Session>)],
        replies: &[Option<collector::Reply>],
        joins: &[model::SessionJoinUpdate],
        checkpoint: Option<&model::CollectorCheckpoint>,
    ) -> Unstored {
        let mut unstored = Unstored {
            joins: joins.to_vec(),
            checkpoint: checkpoint.cloned(),
            ..Unstored::default()
        };
        for ((events, sessions), reply) in batches.iter().zip(replies) {
            if reply.is_none() {
                unstored.events.extend(events.iter().cloned());
            }
            for session in sessions {
                unstored.keep_session(session.clone());
            }
        }
        unstored
    }

    fn keep_session(&mut self, session: model::Session) {
        let newer = self
            .sessions
            .get(&session.session_id)
            .is_none_or(|kept| session.version >= kept.version);
        if newer {
            self.sessions.insert(session.session_id.clone(), session);
        }
    }

    fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.sessions.is_empty()
            && self.joins.is_empty()
            && self.checkpoint.is_none()
    }
}

/// An error and its sources, joined by ": ".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How often small segments are merged.
const COMPACTION_INTERVAL: Duration = Duration::from_secs(60);

/// At most this many waiting batches share one WAL record (group commit).
const MAX_GROUP: usize = 64;

async fn compact(store: &store::Store) {
    let store_for_task = store.clone();
    match tokio::task::spawn_blocking(move || store_for_task.compact(jiff::Timestamp::now())).await
    {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => tracing::error!(%error, "compaction failed; retried later"),
        Err(error) => tracing::error!(%error, "compaction task panicked"),
    }
}

/// How often the retention policy is applied.
const RETENTION_INTERVAL: Duration = Duration::from_secs(600);

async fn apply_retention(store: &store::Store) {
    let store_for_task = store.clone();
    match tokio::task::spawn_blocking(move || {
        store_for_task.apply_retention(jiff::Timestamp::now())
    })
    .await
    {
        Ok(Ok(deleted)) => {
            for partition in deleted {
                tracing::info!(table = partition.table.name(), partition = %partition.partition, rows = partition.rows, audit = %partition.audit_id, "retention deleted an expired partition");
            }
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "applying the retention policy failed; retried later")
        }
        Err(error) => tracing::error!(%error, "retention task panicked"),
    }
}

async fn flush(store: &store::Store) {
    let store_for_task = store.clone();
    match tokio::task::spawn_blocking(move || store_for_task.flush()).await {
        Ok(Ok(report)) if !report.rows.is_empty() => {
            tracing::debug!(rows = ?report.rows, "flushed to parquet")
        }
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            tracing::error!(%error, "flush to parquet failed; rows stay in the WAL and are retried")
        }
        Err(error) => tracing::error!(%error, "flush task panicked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, version: u64) -> model::Session {
        let at = jiff::Timestamp::from_second(1_796_000_000).unwrap();
        model::Session {
            session_id: id.to_owned(),
            gateway: None,
            connection: None,
            ike_sa_ids: Vec::new(),
            identities: model::Identities::default(),
            method: None,
            client: model::Endpoint::default(),
            client_geo: None,
            virtual_ip: None,
            start: at,
            end: None,
            state: model::SessionState::Active,
            cause: None,
            counters: model::Counters::default(),
            child_sa_counters: std::collections::BTreeMap::new(),
            rekey_count: 0,
            accounting_id: None,
            version,
            updated: at,
            sources: None,
        }
    }

    /// A failed group keeps what its senders will not send again, the newest session
    /// snapshots only, and nothing of the events a sender resends.
    #[test]
    fn a_failed_group_keeps_what_nobody_sends_again() {
        let event = |seq| model::Event {
            id: model::EventId::new("gw/x", seq, 0),
            timestamp: jiff::Timestamp::from_second(1_796_000_000).unwrap(),
            dataset: "test".to_owned(),
            observer: model::Observer::default(),
            original: String::new(),
            session_id: None,
            source_geo: None,
            body: model::EventBody::PipelineError(model::PipelineError {
                reason: model::RejectReason::Malformed,
                message: String::new(),
                original_len: 0,
            }),
        };
        let (reply, _answer) = tokio::sync::oneshot::channel();
        let batches = vec![
            (vec![event(1)], vec![session("s-a", 1), session("s-b", 1)]),
            (vec![event(2)], vec![session("s-a", 2)]),
        ];
        let replies = vec![Some(reply), None];
        let join = model::SessionJoinUpdate {
            target: model::JoinTarget::Events,
            event_id: "gw/x:1".to_owned(),
            timestamp: jiff::Timestamp::from_second(1_796_000_000).unwrap(),
            session_id: None,
            user_name: None,
            join: model::SessionJoin::Unmatched,
            decided: jiff::Timestamp::from_second(1_796_000_001).unwrap(),
        };
        let checkpoint = model::CollectorCheckpoint(serde_json::json!({"n": 1}));
        let kept = Unstored::of_group(
            &batches,
            &replies,
            std::slice::from_ref(&join),
            Some(&checkpoint),
        );
        // The first batch's sender resends its events; the second had none.
        let ids: Vec<String> = kept
            .events
            .iter()
            .map(|event| event.id.to_string())
            .collect();
        assert_eq!(ids, ["gw/x:2"]);
        let versions: Vec<(String, u64)> = kept
            .sessions
            .values()
            .map(|session| (session.session_id.clone(), session.version))
            .collect();
        assert_eq!(versions, [("s-a".to_owned(), 2), ("s-b".to_owned(), 1)]);
        assert_eq!(kept.joins, [join]);
        assert_eq!(kept.checkpoint, Some(checkpoint));
        assert!(!kept.is_empty());
        assert!(Unstored::default().is_empty());
    }
}
