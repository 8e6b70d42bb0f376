//! The running service: a task around the pure [`Engine`], fed through a bounded channel,
//! storing what it decides through an [`AlertSink`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use model::{AlertRecord, Event};
use tokio::sync::mpsc;

use crate::engine::{Change, Engine, Limits};
use crate::notify::outbox::Outbox;
use crate::route::ReceiverConfig;
use crate::silence::{Silence, SilenceRequest};

/// The silences' file in the alerting state directory.
pub const SILENCES_FILE: &str = "silences.json";
/// What the rules learnt (baselines, where users log in from, terms), in the alerting state
/// directory ([`crate::engine::Snapshot`]).
pub const LEARNT_FILE: &str = "learnt.json";
/// How often what the rules learnt is written (and at every flush).
pub const SAVE_LEARNT_EVERY: Duration = Duration::from_secs(60);
use crate::{Config, Error, Origin, Result, Rule};

/// How far ahead of the wall clock an event may be dated and still be evaluated (live): a
/// gateway whose clock is off, or a crafted year, must not blind a rule's window.
pub const MAX_FUTURE: Duration = Duration::from_secs(300);

/// Where alert rows are kept (the store): durable when `append` returns `Ok`.
pub trait AlertSink: Send + Sync + 'static {
    fn append(&self, rows: Vec<AlertRecord>) -> std::result::Result<(), String>;
    /// Every stored row, oldest first.
    fn load(&self) -> std::result::Result<Vec<AlertRecord>, String>;
}

/// The rows of a query, as JSON objects keyed by column name, or why there are none.
pub type QueryRows = std::result::Result<Vec<serde_json::Map<String, serde_json::Value>>, String>;

/// Runs the read-only SQL of `query` rules: the app's is the store (its time and memory
/// limits apply).
pub trait QuerySource: Send + Sync + 'static {
    fn query<'a>(
        &'a self,
        sql: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = QueryRows> + Send + 'a>>;
}

/// Which clock moves the engine's time on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The wall clock, every second (the server).
    Wall,
    /// The newest event time (a replay of history: `tunnelwatch ingest`).
    EventTime,
}

/// What the service counted, for `/metrics` and the health report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub fired: u64,
    pub rows_written: u64,
    /// Rows waiting to be stored again after a failed append.
    pub rows_pending: u64,
    pub append_failures: u64,
    /// Events not evaluated because the engine's queue was full.
    pub events_shed: u64,
    pub evicted_groups: u64,
    /// How long the newest batch waited for the engine (ms).
    pub lag_ms: u64,
    pub open_alerts: u64,
    /// Open alerts by severity (`info` … `critical`).
    pub open_by_severity: Vec<(model::Severity, u64)>,
    pub rules: u64,
    /// Per receiver: sent, failed attempts, dead-lettered, queued.
    pub notifications: Vec<crate::notify::outbox::Counters>,
    /// Pages that could not be queued (the outbox full or failing): their rows wait too.
    pub enqueue_failures: u64,
    /// Events dated too far ahead of the wall clock to be evaluated.
    pub events_future: u64,
    /// Pages a silence muted.
    pub pages_silenced: u64,
    /// Pages an open alert that covers them muted (inhibition).
    pub pages_inhibited: u64,
    /// Escalation rows written (a firing alert not acknowledged in time).
    pub escalations: u64,
    /// Pages sent again for firing alerts nobody acknowledged (`repeat_interval`).
    pub repeats: u64,
    /// The rule set in force: when it was last loaded, and why the newest files were not
    /// taken (`None`: they were, or nothing changed).
    pub rules_loaded_at: Option<Timestamp>,
    pub rules_reload_error: Option<String>,
    /// Runs of `query` rules, those that failed, and the newest failure (cleared by a run
    /// of the same rule that works).
    pub query_runs: u64,
    pub query_failures: u64,
    pub query_error: Option<String>,
}

/// What a rules reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The rules are as they were.
    Unchanged,
    /// A new rule set is in force: how many rules.
    Changed(usize),
}

enum Feed {
    Events(Instant, Vec<Event>),
    /// Everything before it is evaluated and stored: answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

struct Shared {
    engine: Mutex<Engine>,
    sink: Arc<dyn AlertSink>,
    /// Pages go here before their rows are stored (`None`: no receivers).
    outbox: Option<Outbox>,
    receivers: Vec<ReceiverConfig>,
    console_url: Option<String>,
    enqueue_failures: AtomicU64,
    /// Row ids whose page is queued while the row itself waits to be stored: a retry does
    /// not queue them again.
    paged: Mutex<std::collections::HashSet<String>>,
    /// Events dated further ahead of the wall clock than [`MAX_FUTURE`], not evaluated.
    events_future: AtomicU64,
    silences: Mutex<Vec<Silence>>,
    silences_path: Option<std::path::PathBuf>,
    learnt_path: Option<std::path::PathBuf>,
    pages_silenced: AtomicU64,
    pages_inhibited: AtomicU64,
    escalations: Vec<crate::route::EscalationConfig>,
    escalation_waits: Vec<Duration>,
    n_escalations: AtomicU64,
    inhibit: Vec<crate::inhibit::InhibitConfig>,
    /// Per alert and receiver: how many repeats of its page went out.
    repeats: Mutex<std::collections::HashMap<(String, String), u64>>,
    n_repeats: AtomicU64,
    clock: Clock,
    /// Rows the sink refused, kept for the next attempt (never dropped).
    pending: Mutex<Vec<AlertRecord>>,
    origins: Mutex<Vec<(String, Origin)>>,
    /// The newest reload's refusal (the previous rule set stays in force), and when the rule
    /// set in force was loaded.
    reload_error: Mutex<Option<String>>,
    query_runs: AtomicU64,
    query_failures: AtomicU64,
    /// The failing query rules and why.
    query_errors: Mutex<std::collections::BTreeMap<String, String>>,
    loaded_at: Mutex<Option<Timestamp>>,
    events_shed: AtomicU64,
    rows_written: AtomicU64,
    append_failures: AtomicU64,
    lag_ms: AtomicU64,
}

/// The running alerting service (cheap to clone).
#[derive(Clone)]
pub struct Alerting {
    shared: Arc<Shared>,
    feed: mpsc::Sender<Feed>,
}

impl std::fmt::Debug for Alerting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerting").finish_non_exhaustive()
    }
}

impl Alerting {
    /// Loads the rules, restores the open alerts from the sink, and starts the engine's
    /// task. The task ends when every handle (and tap) is dropped.
    /// `state_dir` holds the silences (`silences.json`); `None`: silences are refused.
    pub fn start(
        config: &Config,
        sink: Arc<dyn AlertSink>,
        clock: Clock,
        outbox: Option<Outbox>,
        state_dir: Option<&std::path::Path>,
    ) -> Result<(Alerting, tokio::task::JoinHandle<()>)> {
        let silences_path = state_dir.map(|dir| dir.join(SILENCES_FILE));
        let silences: Vec<Silence> = match &silences_path {
            Some(path) => durable::read_json(path, "silences")?.unwrap_or_default(),
            None => Vec::new(),
        };
        let loaded = crate::load_rules(config)?;
        crate::route::check_receivers(&config.receivers)?;
        let escalation_waits =
            crate::route::check_escalations(&config.escalations, &config.receivers)?;
        let inhibit = crate::inhibit_rules(config)?;
        let origins = loaded
            .iter()
            .map(|(rule, origin)| (rule.id.clone(), origin.clone()))
            .collect();
        let rules: Vec<Rule> = loaded.into_iter().map(|(rule, _)| rule).collect();
        let mut engine = Engine::new(
            rules,
            Limits {
                max_groups_per_rule: config.max_groups_per_rule,
            },
        );
        engine.restore(&sink.load().map_err(Error::Sink)?);
        let learnt_path = state_dir.map(|dir| dir.join(LEARNT_FILE));
        if let Some(path) = &learnt_path {
            match durable::read_json::<Vec<crate::engine::Snapshot>>(path, "what the rules learnt")
            {
                Ok(Some(snapshots)) => {
                    let n = engine.restore_learnt(snapshots);
                    tracing::info!(n_rules = n, "what the rules learnt before taken back");
                }
                Ok(None) => {}
                // A damaged file costs the learning, never the start.
                Err(error) => {
                    tracing::warn!(%error, "cannot read what the rules learnt; they learn again")
                }
            }
        }
        let shared = Arc::new(Shared {
            engine: Mutex::new(engine),
            sink,
            outbox,
            receivers: config.receivers.clone(),
            console_url: config.console_url.clone(),
            enqueue_failures: AtomicU64::new(0),
            paged: Mutex::new(std::collections::HashSet::new()),
            silences: Mutex::new(silences),
            silences_path,
            learnt_path,
            pages_silenced: AtomicU64::new(0),
            pages_inhibited: AtomicU64::new(0),
            escalations: config.escalations.clone(),
            escalation_waits,
            n_escalations: AtomicU64::new(0),
            inhibit,
            repeats: Mutex::new(std::collections::HashMap::new()),
            n_repeats: AtomicU64::new(0),
            events_future: AtomicU64::new(0),
            clock,
            pending: Mutex::new(Vec::new()),
            origins: Mutex::new(origins),
            reload_error: Mutex::new(None),
            query_runs: AtomicU64::new(0),
            query_failures: AtomicU64::new(0),
            query_errors: Mutex::new(std::collections::BTreeMap::new()),
            loaded_at: Mutex::new(Some(Timestamp::now())),
            events_shed: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            append_failures: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
        });
        let (feed, rx) = mpsc::channel(config.queue_batches.max(1));
        let task = tokio::spawn(run(shared.clone(), rx, clock));
        Ok((Alerting { shared, feed }, task))
    }

    /// What the store calls with every accepted batch. Live, it hands a copy on without
    /// waiting: a full queue sheds the batch (counted, and said in `/metrics`). A replay
    /// (`Clock::EventTime`, called from a blocking thread) waits for the engine instead.
    pub fn tap(&self) -> impl Fn(&[Event], &[model::Session]) + Send + Sync + 'static {
        let feed = self.feed.clone();
        let shared = self.shared.clone();
        move |events, _sessions| {
            if events.is_empty() {
                return;
            }
            if shared.clock == Clock::EventTime {
                if feed
                    .blocking_send(Feed::Events(Instant::now(), events.to_vec()))
                    .is_err()
                {
                    shared
                        .events_shed
                        .fetch_add(events.len() as u64, Ordering::Relaxed);
                }
                return;
            }
            if let Err(error) = feed.try_send(Feed::Events(Instant::now(), events.to_vec())) {
                let n = events.len() as u64;
                shared.events_shed.fetch_add(n, Ordering::Relaxed);
                if matches!(error, mpsc::error::TrySendError::Full(_)) {
                    tracing::warn!(
                        n_events = n,
                        "the alerting engine is behind: a batch was not evaluated"
                    );
                }
            }
        }
    }

    /// Waits until everything handed over so far is evaluated and its rows stored (or kept
    /// for a retry).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.feed.send(Feed::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The end of a replayed history: what was handed over is evaluated, then every open
    /// alert resolves as of its last event ([`Engine::end_of_history`]) and the rows are
    /// stored.
    pub async fn end_of_history(&self) {
        self.flush().await;
        let rows = lock(&self.shared.engine).end_of_history();
        store(&self.shared, rows).await;
    }

    /// An operator's change: planned (refused here if it cannot be made), then `before`
    /// runs with the row (the audit entry: when it fails, nothing changes), then the row is
    /// stored, and only then does the alert change. Blocking (fsyncs): call it from a
    /// blocking thread.
    pub fn change<E: From<Error>>(
        &self,
        alert_id: &str,
        change: &Change,
        actor: &str,
        comment: Option<String>,
        before: impl FnOnce(&AlertRecord) -> std::result::Result<(), E>,
    ) -> std::result::Result<AlertRecord, E> {
        let mut engine = lock(&self.shared.engine);
        let row = engine
            .plan_change(alert_id, change, actor, comment, Timestamp::now())
            .map_err(Error::from)?;
        before(&row)?;
        self.shared
            .sink
            .append(vec![row.clone()])
            .map_err(Error::Sink)?;
        if let (Some(outbox), Some((page, to))) = (&self.shared.outbox, self.shared.route(&row)) {
            // Stored already: a page that cannot be queued is counted and logged, the change
            // stands. (Called on a blocking thread of the runtime: wait for the fsync here.)
            if let Err(error) =
                tokio::runtime::Handle::current().block_on(outbox.enqueue(&page, &to))
            {
                self.shared.enqueue_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, alert = %row.alert_id, "cannot queue the page of an operator's change");
            }
        }
        self.shared.rows_written.fetch_add(1, Ordering::Relaxed);
        engine.apply(&row);
        Ok(row)
    }

    /// Every silence kept (in force, to come, and ended), newest first.
    pub fn silences(&self) -> Vec<Silence> {
        let mut silences = lock(&self.shared.silences).clone();
        silences.sort_by_key(|silence| std::cmp::Reverse(silence.created));
        silences
    }

    /// Adds a silence: checked, `before` runs with it (the audit entry: when it fails,
    /// nothing changes), written to disk, then in force. Blocking (an fsync).
    pub fn add_silence<E: From<Error>>(
        &self,
        request: SilenceRequest,
        author: &str,
        before: impl FnOnce(&Silence) -> std::result::Result<(), E>,
    ) -> std::result::Result<Silence, E> {
        let now = Timestamp::now();
        let mut id_bytes = [0u8; 8];
        getrandom::fill(&mut id_bytes).map_err(|error| Error::Internal(error.to_string()))?;
        let silence =
            request.into_silence(format!("si-{}", model::hex::encode(&id_bytes)), author, now)?;
        let mut silences = lock(&self.shared.silences);
        let mut new = silences.clone();
        // Ended ones beyond the bound go, oldest first.
        while new.len() >= crate::silence::MAX_SILENCES {
            let Some(oldest) = new
                .iter()
                .enumerate()
                .filter(|(_, kept)| !kept.active(now) && kept.starts <= now)
                .min_by_key(|(_, kept)| kept.ends)
                .map(|(index, _)| index)
            else {
                return Err(Error::Config(format!(
                    "{} silences are in force or to come: expire some first",
                    new.len()
                ))
                .into());
            };
            new.remove(oldest);
        }
        new.push(silence.clone());
        before(&silence)?;
        self.shared.save_silences(&mut silences, new)?;
        Ok(silence)
    }

    /// Ends a silence now. Same order as [`Alerting::add_silence`].
    pub fn expire_silence<E: From<Error>>(
        &self,
        id: &str,
        actor: &str,
        before: impl FnOnce(&Silence) -> std::result::Result<(), E>,
    ) -> std::result::Result<Silence, E> {
        let now = Timestamp::now();
        let mut silences = lock(&self.shared.silences);
        let mut new = silences.clone();
        let Some(silence) = new.iter_mut().find(|silence| silence.id == id) else {
            return Err(Error::SilenceNotFound(id.to_owned()).into());
        };
        if silence.ends <= now {
            return Err(Error::Config(format!("silence {id} has ended already")).into());
        }
        silence.ends = now.max(silence.starts);
        silence.expired_by = Some(actor.to_owned());
        let expired = silence.clone();
        before(&expired)?;
        self.shared.save_silences(&mut silences, new)?;
        Ok(expired)
    }

    /// Loads the rules of `config` again (its `[[alerting.rules]]`, `rules_dir`, `sigma_dir`
    /// and the shipped ones) and, when they differ from those in force, swaps them in:
    /// windows of unchanged rules and open alerts stay. An invalid rule set changes nothing:
    /// the previous one stays in force, and the error is kept for the health report until a
    /// reload succeeds. (Receivers, escalations and inhibit rules are read at start.)
    pub fn reload(&self, config: &Config) -> Result<Reload> {
        let loaded = match crate::load_rules(config) {
            Ok(loaded) => loaded,
            Err(error) => {
                let text = error.to_string();
                let mut kept = lock(&self.shared.reload_error);
                if kept.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %text, "the changed rules are invalid: the previous rules stay in force");
                }
                *kept = Some(text);
                return Err(error);
            }
        };
        *lock(&self.shared.reload_error) = None;
        let mut engine = lock(&self.shared.engine);
        let now: Vec<String> = engine
            .rules()
            .iter()
            .map(|rule| format!("{rule:?}"))
            .collect();
        let new: Vec<String> = loaded.iter().map(|(rule, _)| format!("{rule:?}")).collect();
        if now == new {
            return Ok(Reload::Unchanged);
        }
        let n = loaded.len();
        *lock(&self.shared.origins) = loaded
            .iter()
            .map(|(rule, origin)| (rule.id.clone(), origin.clone()))
            .collect();
        engine.replace_rules(loaded.into_iter().map(|(rule, _)| rule).collect());
        *lock(&self.shared.loaded_at) = Some(Timestamp::now());
        tracing::info!(n_rules = n, "rules reloaded");
        Ok(Reload::Changed(n))
    }

    /// Reloads the rules every `every` from what `source` reads (the configuration file,
    /// again), until the service's handles are gone. A source that cannot be read is kept as
    /// the reload error, like an invalid rule.
    pub fn watch_rules(
        &self,
        every: Duration,
        source: impl Fn() -> std::result::Result<Config, String> + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.shared);
        let feed = self.feed.downgrade();
        let source = Arc::new(source);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let (Some(shared), Some(feed)) = (weak.upgrade(), feed.upgrade()) else {
                    return;
                };
                let service = Alerting { shared, feed };
                let source = Arc::clone(&source);
                let _ = tokio::task::spawn_blocking(move || match source() {
                    Ok(config) => {
                        let _ = service.reload(&config);
                    }
                    Err(error) => {
                        let mut kept = lock(&service.shared.reload_error);
                        if kept.as_deref() != Some(error.as_str()) {
                            tracing::error!(%error, "cannot read the configuration to reload the rules: the previous rules stay in force");
                        }
                        *kept = Some(error);
                    }
                })
                .await;
            }
        })
    }

    /// Runs the `query` rules through `source`, each every `interval` over its `window`, until
    /// the service's handles are gone. Each run's rows become hits of the rule's groups; a
    /// failing run is counted, logged once, and kept for the health report.
    pub fn run_queries(&self, source: Arc<dyn QuerySource>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut last_run: std::collections::HashMap<String, Instant> =
                std::collections::HashMap::new();
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let Some(shared) = weak.upgrade() else {
                    return;
                };
                let due: Vec<(
                    String,
                    crate::rule::query::Query,
                    Vec<&'static model::fields::Field>,
                )> = {
                    let engine = lock(&shared.engine);
                    engine
                        .rules()
                        .iter()
                        .filter_map(|rule| match &rule.kind {
                            crate::rule::Kind::Query(query) => {
                                Some((rule.id.clone(), query.clone(), rule.group_by.clone()))
                            }
                            _ => None,
                        })
                        .filter(|(id, query, _)| {
                            last_run
                                .get(id)
                                .is_none_or(|ran| ran.elapsed() >= query.interval)
                        })
                        .collect()
                };
                for (id, query, group_by) in due {
                    last_run.insert(id.clone(), Instant::now());
                    let now = Timestamp::now();
                    shared.query_runs.fetch_add(1, Ordering::Relaxed);
                    let found = source
                        .query(&query.statement(now))
                        .await
                        .and_then(|result| query.rows(&group_by, &result));
                    match found {
                        Ok(found) => {
                            lock(&shared.query_errors).remove(&id);
                            let rows = lock(&shared.engine).query_hits(&id, found, now);
                            store(&shared, rows).await;
                        }
                        Err(error) => {
                            shared.query_failures.fetch_add(1, Ordering::Relaxed);
                            let mut errors = lock(&shared.query_errors);
                            if errors.get(&id) != Some(&error) {
                                tracing::warn!(rule = %id, %error, "a query rule failed");
                            }
                            errors.insert(id, error);
                        }
                    }
                }
            }
        })
    }

    /// The loaded rules and where each came from.
    pub fn rules(&self) -> Vec<(Rule, Origin)> {
        let engine = lock(&self.shared.engine);
        let origins = lock(&self.shared.origins);
        engine
            .rules()
            .iter()
            .map(|rule| {
                let origin = origins
                    .iter()
                    .find(|(id, _)| *id == rule.id)
                    .map_or(Origin::Config, |(_, origin)| origin.clone());
                (rule.clone(), origin)
            })
            .collect()
    }

    /// Every stored alert row, oldest first (from the sink), plus rows still waiting.
    pub fn rows(&self) -> Result<Vec<AlertRecord>> {
        let mut rows = self.shared.sink.load().map_err(Error::Sink)?;
        rows.extend(lock(&self.shared.pending).iter().cloned());
        Ok(rows)
    }

    pub fn stats(&self) -> Stats {
        let engine = lock(&self.shared.engine);
        let counters = engine.counters();
        let open_by_severity = model::Severity::ALL
            .into_iter()
            .map(|severity| {
                let n = engine
                    .open_alerts()
                    .filter(|row| row.severity == severity)
                    .count() as u64;
                (severity, n)
            })
            .collect();
        Stats {
            events: counters.events,
            fired: counters.fired,
            rows_written: self.shared.rows_written.load(Ordering::Relaxed),
            rows_pending: lock(&self.shared.pending).len() as u64,
            append_failures: self.shared.append_failures.load(Ordering::Relaxed),
            events_shed: self.shared.events_shed.load(Ordering::Relaxed),
            evicted_groups: counters.evicted_groups,
            lag_ms: self.shared.lag_ms.load(Ordering::Relaxed),
            open_alerts: engine.open_alerts().count() as u64,
            open_by_severity,
            rules: engine.rules().len() as u64,
            notifications: self
                .shared
                .outbox
                .as_ref()
                .map(Outbox::counters)
                .unwrap_or_default(),
            enqueue_failures: self.shared.enqueue_failures.load(Ordering::Relaxed),
            events_future: self.shared.events_future.load(Ordering::Relaxed),
            pages_silenced: self.shared.pages_silenced.load(Ordering::Relaxed),
            pages_inhibited: self.shared.pages_inhibited.load(Ordering::Relaxed),
            escalations: self.shared.n_escalations.load(Ordering::Relaxed),
            repeats: self.shared.n_repeats.load(Ordering::Relaxed),
            rules_loaded_at: *lock(&self.shared.loaded_at),
            rules_reload_error: lock(&self.shared.reload_error).clone(),
            query_runs: self.shared.query_runs.load(Ordering::Relaxed),
            query_failures: self.shared.query_failures.load(Ordering::Relaxed),
            query_error: lock(&self.shared.query_errors)
                .iter()
                .next()
                .map(|(rule, error)| format!("rule {rule}: {error}")),
        }
    }
}

impl Shared {
    /// The page a row causes and its receivers: an escalation goes to its step's receivers,
    /// the rest as [`crate::route::route`] says.
    fn route(&self, row: &AlertRecord) -> Option<(crate::notify::Notification, Vec<&str>)> {
        if row.action == model::alert::action::ESCALATED {
            crate::route::route_escalation(
                row,
                &self.escalations,
                &self.receivers,
                self.console_url.as_deref(),
            )
        } else {
            crate::route::route(row, &self.receivers, self.console_url.as_deref())
        }
    }

    /// Whether an open alert that covers this row mutes its page (counted).
    fn inhibited(&self, row: &AlertRecord) -> bool {
        if self.inhibit.is_empty() {
            return false;
        }
        let source = {
            let engine = lock(&self.engine);
            let open: Vec<&AlertRecord> = engine.open_alerts().collect();
            crate::inhibit::inhibited_by(&self.inhibit, row, open.into_iter())
        };
        match source {
            Some(source) => {
                self.pages_inhibited.fetch_add(1, Ordering::Relaxed);
                tracing::info!(alert = %row.alert_id, rule = %row.rule_id, by = %source, "a page was inhibited by an open alert that covers it");
                true
            }
            None => false,
        }
    }

    /// Whether a silence in force mutes this row's page (counted).
    fn silenced(&self, row: &AlertRecord) -> bool {
        let now = Timestamp::now();
        let muted = lock(&self.silences)
            .iter()
            .any(|silence| silence.mutes(row, now));
        if muted {
            self.pages_silenced.fetch_add(1, Ordering::Relaxed);
            tracing::info!(alert = %row.alert_id, rule = %row.rule_id, "a page was silenced");
        }
        muted
    }

    /// Writes `silences` to the file, then keeps them: durable before in force.
    fn save_silences(
        &self,
        silences: &mut MutexGuard<'_, Vec<Silence>>,
        new: Vec<Silence>,
    ) -> Result<()> {
        let Some(path) = &self.silences_path else {
            return Err(Error::Config(
                "this alerting service keeps no silences".to_owned(),
            ));
        };
        durable::write_json(path, "silences", &new)?;
        **silences = new;
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the engine left whole values behind: go on with them.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Pages again the firing alerts nobody acknowledged, for receivers with a
/// `repeat_interval`: the n-th repeat once n intervals have passed since the alert fired. The
/// count starts from what has passed at the first look (after a restart, no burst of the
/// repeats that were due while it was down).
async fn repeat_pages(shared: &Arc<Shared>) {
    let Some(outbox) = &shared.outbox else {
        return;
    };
    let receivers: Vec<(&str, Duration)> = shared
        .receivers
        .iter()
        .filter_map(|receiver| Some((receiver.name.as_str(), receiver.repeat_every().ok()??)))
        .collect();
    if receivers.is_empty() {
        return;
    }
    let now = Timestamp::now();
    let firing: Vec<(AlertRecord, Timestamp)> = lock(&shared.engine)
        .firing()
        .into_iter()
        .map(|(row, fired)| (row.clone(), fired))
        .collect();
    // (the page, its receivers, (alert, receiver), the repeat's number)
    type Due = (
        crate::notify::Notification,
        Vec<String>,
        (String, String),
        u64,
    );
    let mut due: Vec<Due> = Vec::new();
    {
        let mut repeats = lock(&shared.repeats);
        repeats.retain(|(alert, _), _| firing.iter().any(|(row, _)| row.alert_id == *alert));
        for (row, fired) in &firing {
            let elapsed = now.duration_since(*fired).as_secs().max(0) as u64;
            for (name, every) in &receivers {
                let Some(receiver) = shared.receivers.iter().find(|r| r.name == *name) else {
                    continue;
                };
                if !receiver.repeats(row) {
                    continue;
                }
                let n = elapsed / every.as_secs().max(1);
                let key = (row.alert_id.clone(), (*name).to_owned());
                let sent = *repeats.entry(key.clone()).or_insert(n);
                if n > sent {
                    let mut page = crate::route::notification(row, shared.console_url.as_deref());
                    page.id = format!("{}:repeat:{n}:{name}", row.alert_id);
                    page.summary = format!(
                        "still firing, not acknowledged after {}: {}",
                        crate::engine::show_duration(*every * n as u32),
                        page.summary
                    );
                    due.push((page, vec![(*name).to_owned()], key, n));
                }
            }
        }
    }
    for (page, to, key, n) in due {
        let row = firing
            .iter()
            .find(|(row, _)| row.alert_id == key.0)
            .map(|(row, _)| row);
        if row.is_some_and(|row| shared.silenced(row) || shared.inhibited(row)) {
            lock(&shared.repeats).insert(key, n);
            continue;
        }
        let names: Vec<&str> = to.iter().map(String::as_str).collect();
        match outbox.enqueue(&page, &names).await {
            Ok(()) => {
                shared.n_repeats.fetch_add(1, Ordering::Relaxed);
                lock(&shared.repeats).insert(key, n);
            }
            Err(error) => {
                shared.enqueue_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, alert = %key.0, "cannot queue a repeated page; tried again");
            }
        }
    }
}

/// Writes what the rules learnt (when there is a state directory and a rule that learns).
async fn save_learnt(shared: &Arc<Shared>) {
    let Some(path) = shared.learnt_path.clone() else {
        return;
    };
    let snapshots = lock(&shared.engine).learnt();
    if snapshots.is_empty() {
        return;
    }
    let written = tokio::task::spawn_blocking(move || {
        durable::write_json(&path, "what the rules learnt", &snapshots)
            .map_err(|error| error.to_string())
    })
    .await
    .unwrap_or_else(|error| Err(error.to_string()));
    if let Err(error) = written {
        tracing::warn!(%error, "cannot write what the rules learnt; trying again later");
    }
}

async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Feed>, clock: Clock) {
    let mut saved = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            feed = rx.recv() => match feed {
                Some(Feed::Events(sent, events)) => {
                    shared.lag_ms.store(
                        u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX),
                        Ordering::Relaxed,
                    );
                    let rows = {
                        let horizon = match clock {
                            Clock::Wall => Timestamp::now()
                                .checked_add(MAX_FUTURE)
                                .unwrap_or(Timestamp::MAX),
                            Clock::EventTime => Timestamp::MAX,
                        };
                        let mut engine = lock(&shared.engine);
                        let mut rows = Vec::new();
                        for event in &events {
                            if event.timestamp > horizon {
                                shared.events_future.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            rows.extend(engine.observe(event));
                        }
                        if clock == Clock::EventTime
                            && let Some(newest) = events.iter().map(|event| event.timestamp).max()
                        {
                            rows.extend(engine.tick(newest));
                        }
                        rows
                    };
                    store(&shared, rows).await;
                }
                Some(Feed::Flush(done)) => {
                    store(&shared, Vec::new()).await;
                    save_learnt(&shared).await;
                    let _ = done.send(());
                }
                None => {
                    store(&shared, Vec::new()).await;
                    save_learnt(&shared).await;
                    return;
                }
            },
            _ = ticker.tick() => {
                let rows = match clock {
                    Clock::Wall => {
                        let now = Timestamp::now();
                        let mut engine = lock(&shared.engine);
                        let mut rows = engine.tick(now);
                        if !shared.escalation_waits.is_empty() {
                            let escalated = engine.escalate(&shared.escalation_waits, now);
                            shared
                                .n_escalations
                                .fetch_add(escalated.len() as u64, Ordering::Relaxed);
                            rows.extend(escalated);
                        }
                        rows
                    }
                    Clock::EventTime => Vec::new(),
                };
                store(&shared, rows).await;
                if clock == Clock::Wall {
                    repeat_pages(&shared).await;
                }
                if saved.elapsed() >= SAVE_LEARNT_EVERY {
                    saved = Instant::now();
                    save_learnt(&shared).await;
                }
            }
        }
    }
}

/// Stores `rows` after any kept from a failed append; what fails is kept for next time.
async fn store(shared: &Arc<Shared>, rows: Vec<AlertRecord>) {
    let batch: Vec<AlertRecord> = {
        let mut pending = lock(&shared.pending);
        pending.extend(rows);
        if pending.is_empty() {
            return;
        }
        std::mem::take(&mut *pending)
    };
    // The pages these rows cause go to the outbox (fsynced) before the rows are stored: a
    // row is never stored without its page. A crash between the two can page for a row
    // that is then not stored (the receivers see the idempotency key).
    if let Some(outbox) = &shared.outbox {
        for row in &batch {
            if lock(&shared.paged).contains(&row.id) {
                continue;
            }
            let Some((page, to)) = shared.route(row) else {
                continue;
            };
            if shared.silenced(row) || shared.inhibited(row) {
                continue;
            }
            match outbox.enqueue(&page, &to).await {
                Ok(()) => {
                    lock(&shared.paged).insert(row.id.clone());
                }
                Err(error) => {
                    shared.enqueue_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, alert = %row.alert_id, "cannot queue a page; the alert rows wait and it is tried again");
                    let mut pending = lock(&shared.pending);
                    let newer = std::mem::take(&mut *pending);
                    *pending = batch;
                    pending.extend(newer);
                    return;
                }
            }
        }
    }
    let for_task = shared.clone();
    let n = batch.len() as u64;
    let kept = batch.clone();
    let result = tokio::task::spawn_blocking(move || for_task.sink.append(batch))
        .await
        .unwrap_or_else(|error| Err(format!("the append panicked: {error}")));
    match result {
        Ok(()) => {
            shared.rows_written.fetch_add(n, Ordering::Relaxed);
            let mut paged = lock(&shared.paged);
            for row in &kept {
                paged.remove(&row.id);
            }
        }
        Err(error) => {
            shared.append_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(%error, n_rows = n, "cannot store alert rows; kept for the next try");
            let mut pending = lock(&shared.pending);
            let newer = std::mem::take(&mut *pending);
            *pending = kept;
            pending.extend(newer);
        }
    }
}
