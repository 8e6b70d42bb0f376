//! The tunnelwatch store: events and sessions as Parquet (in a local data directory or
//! object storage), queried with DataFusion SQL and searched with tantivy.
//!
//! The principal type is [`Store`]. [`Store::append`] takes the events and session snapshots
//! of one collector batch, drops events it already has (by their [`model::EventId`]: per
//! source, everything up to the highest stored position), writes the rest to the write-ahead
//! log and fsyncs, and only then returns: the caller acknowledges the batch to the gateway
//! after that. [`Store::flush`] moves what the WAL holds into Parquet segments, one per table
//! (see [`schema::Table`]). [`Store::query`] runs SQL over Parquet and the not-yet-flushed rows
//! together, so nothing waits for a flush to become visible.
//!
//! [`Store::append_group_with_joins`] also stores the collector's late session join
//! corrections ([`model::SessionJoinUpdate`]) in the `session_joins` table; queries of `flows`,
//! `api_requests`, `events` and `auth_events` show the newest correction of each row (see
//! `session_joins`). [`Store::append_collected`] adds the collector's checkpoint, which
//! [`Store::collector_checkpoint`] hands back after a restart.
//!
//! A second process may open the same directory with [`Store::open_read_only`] (that is what
//! `tunnelwatch sql` does while a server runs): it reads the segments and the WAL and never
//! writes.
//!
//! Layout of a data directory:
//!
//! ```text
//! DATA/tables/<table>/date=YYYY-MM-DD/hour=HH/part-<micros>-<n>-<i>.parquet
//!                                                 flushed rows of that hour (UTC), sorted
//!                                                 by time, then the table's key
//! DATA/wal/<generation>.wal                       accepted, not yet flushed
//! DATA/state/sessions.json                        sessions open at the last flush, and
//!                                                 recently closed ones (`recent_sessions`)
//! DATA/state/storage.json                         the storage root, if not DATA/tables
//! DATA/state/flushes.json                         the flushes that wrote all their segments
//! DATA/state/collector.json                       the collector's checkpoint at the last
//!                                                 flush (logins it was assembling)
//! ```
//!
//! With `[store] root = "s3://bucket/prefix"` the `tables/` tree lives in that bucket
//! instead (the `storage` module); everything else stays in `DATA`.

mod alerts;
mod audit;
mod collector_state;
mod compact;
mod error;
mod flushes;
mod health;
mod join_restart;
mod prune;
mod query;
mod recent_sessions;
mod retention;
pub mod schema;
pub mod search;
mod segment;
mod session_joins;
mod storage;
mod wal;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use model::{AuditEntry, Event, Session, SessionJoinUpdate};
use serde::Deserialize;

pub use audit::{
    SealKey, TrailBreak, TrailSummary, parse_public_key, public_key_hex, verify_trail,
};
pub use compact::CompactReport;
pub use error::{Error, Result};
pub use health::VerifyReport;
pub use query::{OutputFormat, QueryResult, QueryStream, render_batch};
pub use recent_sessions::RECENTLY_CLOSED_SECS;
pub use retention::DeletedPartition;
pub use schema::Table;
pub use search::{Hit, SearchOptions, SearchResult};
pub use wal::WalRecord;

use audit::audit_head_in;
use health::{count_quarantined, index_missing, open_search, quarantine};
use recent_sessions::RecentSessions;
use search::SearchIndex;
use segment::{Segment, Watermarks};
use storage::Storage;
use wal::Wal;

/// `[store]` configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The data directory.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// How often accepted rows are written to Parquet.
    #[serde(default = "default_flush_interval_secs")]
    pub flush_interval_secs: u64,
    /// Flush early once this many rows wait in memory.
    #[serde(default = "default_max_buffered_rows")]
    pub max_buffered_rows: usize,
    /// A query running longer is cancelled.
    #[serde(default = "default_query_timeout_secs")]
    pub query_timeout_secs: u64,
    /// Memory one query may use for sorts, joins and aggregations.
    #[serde(default = "default_query_memory_bytes")]
    pub query_memory_bytes: usize,
    /// Queries that may run at once; one more is refused at once (503 with `Retry-After`,
    /// counted), so that analysts cannot starve ingest and health checks.
    #[serde(default = "default_max_concurrent_queries")]
    pub max_concurrent_queries: usize,
    /// Days to keep each table (`[store.retention]`, e.g. `flows = 90`); tables not named are
    /// kept forever, except `session_joins`, which follows the later of `flows` and
    /// `api_requests` when both are named. Whole hour partitions older than this are deleted, each deletion
    /// recorded in `audit_log`.
    #[serde(default)]
    pub retention: BTreeMap<String, u32>,
    /// Where the Parquet segments live, as a URL: `file:///path` or `s3://bucket/prefix`
    /// (the `storage` module); by default `DATA/tables`. The WAL, index and state stay in
    /// `data_dir`, which records the root for readers.
    #[serde(default)]
    pub root: Option<String>,
    /// Options of the object store (`[store.root_options]`: `aws_endpoint`, `aws_region`,
    /// `aws_allow_http`, …; credentials preferably from the environment).
    #[serde(default)]
    pub root_options: BTreeMap<String, String>,
    /// Sign the audit trail's head after this many entries…
    #[serde(default = "default_audit_seal_every")]
    pub audit_seal_every: u64,
    /// …and at least this often while entries wait (and at shutdown).
    #[serde(default = "default_audit_seal_interval_secs")]
    pub audit_seal_interval_secs: u64,
    /// The Ed25519 key that signs seals; by default `DATA/audit/seal.key`, made at the first
    /// start (0600), its public half in `seal.pub` beside it.
    #[serde(default)]
    pub audit_seal_key_file: Option<PathBuf>,
}

fn default_audit_seal_every() -> u64 {
    100
}

fn default_audit_seal_interval_secs() -> u64 {
    60
}

/// The least `[store.retention] audit_log` a configuration may ask for: a year, what
/// compliance regimes commonly require of audit records.
pub const AUDIT_LOG_MIN_RETENTION_DAYS: u32 = 365;

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: default_data_dir(),
            flush_interval_secs: default_flush_interval_secs(),
            max_buffered_rows: default_max_buffered_rows(),
            query_timeout_secs: default_query_timeout_secs(),
            query_memory_bytes: default_query_memory_bytes(),
            max_concurrent_queries: default_max_concurrent_queries(),
            retention: BTreeMap::new(),
            root: None,
            root_options: BTreeMap::new(),
            audit_seal_every: default_audit_seal_every(),
            audit_seal_interval_secs: default_audit_seal_interval_secs(),
            audit_seal_key_file: None,
        }
    }
}

impl Config {
    /// A configuration for a data directory with every other setting at its default.
    pub fn for_dir(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            ..Config::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.flush_interval_secs == 0 || self.query_timeout_secs == 0 {
            return Err(Error::Config(
                "flush_interval_secs and query_timeout_secs must be at least 1".to_owned(),
            ));
        }
        if self.max_concurrent_queries == 0 {
            return Err(Error::Config(
                "max_concurrent_queries must be at least 1".to_owned(),
            ));
        }
        if self.query_memory_bytes < 16 * 1024 * 1024 {
            return Err(Error::Config(
                "query_memory_bytes must be at least 16 MiB".to_owned(),
            ));
        }
        self.retention_policy()?;
        if let Some(days) = self.retention.get("audit_log")
            && *days < AUDIT_LOG_MIN_RETENTION_DAYS
        {
            return Err(Error::Config(format!(
                "[store.retention] audit_log = {days} is below the compliance minimum of {AUDIT_LOG_MIN_RETENTION_DAYS} days"
            )));
        }
        if self.audit_seal_every == 0 || self.audit_seal_interval_secs == 0 {
            return Err(Error::Config(
                "audit_seal_every and audit_seal_interval_secs must be at least 1".to_owned(),
            ));
        }
        if let Some(root) = &self.root {
            if root.starts_with("file:") && !self.root_options.is_empty() {
                return Err(Error::Config(
                    "[store.root_options] apply to object storage (s3://…), not to a file:// root"
                        .to_owned(),
                ));
            }
            storage::check_root(root, &self.root_options)?;
        }
        Ok(())
    }

    /// `[store.retention]` by table, checked: known tables, at least one day.
    pub fn retention_policy(&self) -> Result<BTreeMap<Table, u32>> {
        let mut policy = BTreeMap::new();
        for (name, days) in &self.retention {
            let Some(table) = Table::ALL.into_iter().find(|table| table.name() == name) else {
                return Err(Error::Config(format!(
                    "[store.retention] names no table `{name}` (tables: {})",
                    Table::ALL.map(Table::name).join(", ")
                )));
            };
            if *days == 0 {
                return Err(Error::Config(format!(
                    "[store.retention] {name} = 0: keep a table at least 1 day (remove the line to keep it forever)"
                )));
            }
            policy.insert(table, *days);
        }
        // Late join corrections matter as long as the rows they correct: unless named, they
        // go with the later of `flows` and `api_requests` (kept forever if either is).
        if !policy.contains_key(&Table::SessionJoins)
            && let (Some(&flows), Some(&requests)) =
                (policy.get(&Table::Flows), policy.get(&Table::ApiRequests))
        {
            policy.insert(Table::SessionJoins, flows.max(requests));
        }
        Ok(policy)
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/tunnelwatch/data")
}
fn default_flush_interval_secs() -> u64 {
    5
}
fn default_max_buffered_rows() -> usize {
    200_000
}
fn default_query_timeout_secs() -> u64 {
    30
}
fn default_query_memory_bytes() -> usize {
    1024 * 1024 * 1024
}

fn default_max_concurrent_queries() -> usize {
    4
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppendReceipt {
    pub accepted: u64,
    pub duplicates: u64,
}

/// What [`Store::flush`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub rows: BTreeMap<&'static str, usize>,
}

/// Health and size figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub buffered_events: usize,
    pub buffered_sessions: usize,
    pub segments: usize,
    pub open_sessions: usize,
    pub corrupt_wal_records: u64,
    pub quarantined_segments: usize,
    /// Events in the full-text index.
    pub indexed_events: u64,
    /// Flushed segments whose indexing failed (searchable again after a restart or
    /// `tunnelwatch store rebuild-index`).
    pub index_failures: u64,
    /// The index was unreadable at open and was moved to quarantine and rebuilt.
    pub quarantined_index: bool,
    /// Queries running now.
    pub running_queries: usize,
    /// Queries refused since the start because `max_concurrent_queries` ran already.
    pub refused_queries: u64,
}

/// The store of one data directory.
#[derive(Debug, Clone)]
pub struct Store {
    /// Everything queries and health read; held only for short in-memory work, never across
    /// a disk write, an fsync or indexing, so readers never wait for those.
    inner: Arc<Mutex<Inner>>,
    /// The figures of `inner` as of the last time it was unlocked: `/healthz`, `/metrics`
    /// and the pipeline's "is the buffer full" read these and never wait for `inner`.
    figures: Arc<RwLock<Figures>>,
    /// The write-ahead log, `None` when opened read-only: held by whoever appends (across the
    /// fsync) or rotates it, so writers go one at a time. Taken before `inner`, never after.
    writer: Arc<Mutex<Option<Wal>>>,
    /// One flush at a time (its tail writes state files and indexes without other locks).
    flushing: Arc<Mutex<()>>,
    search: Arc<SearchIndex>,
    storage: Arc<Storage>,
    dir: PathBuf,
    retention: BTreeMap<Table, u32>,
    query_timeout: Duration,
    query_memory_bytes: usize,
    /// The queries allowed to run at once (`max_concurrent_queries`).
    admission: Arc<tokio::sync::Semaphore>,
    max_concurrent_queries: usize,
    /// Queries refused because that many ran already.
    refused_queries: Arc<std::sync::atomic::AtomicU64>,
    /// Where queries run, when the caller gave a runtime of their own
    /// ([`Store::with_query_runtime`]); else on the caller's.
    query_runtime: Option<tokio::runtime::Handle>,
    /// Signs the audit trail's head (`None` when opened read-only).
    sealer: Option<Arc<audit::Sealer>>,
    /// Told of every event and session the store accepted as new ([`Store::set_accepted_tap`]).
    tap: Arc<std::sync::OnceLock<AcceptedTap>>,
}

/// What [`Store::set_accepted_tap`] calls after each append: the events the store accepted
/// as new (never a resend it dropped) and the session snapshots, durable already, in the
/// order of the WAL. It runs under the writer lock: it must only hand them on (a bounded
/// channel's `try_send`), never wait.
#[derive(Clone)]
pub struct AcceptedTap(pub Arc<TapFn>);

/// The function an [`AcceptedTap`] calls.
pub type TapFn = dyn Fn(&[Event], &[Session]) + Send + Sync;

impl std::fmt::Debug for AcceptedTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptedTap")
    }
}

/// Rows accepted since the last flush, in the chunks they arrived in: a query takes a
/// snapshot by cloning the chunk list (cheap) and converts it to Arrow outside the lock.
#[derive(Debug, Clone, Default)]
pub(crate) struct Buffer {
    pub(crate) events: Vec<Arc<Vec<Event>>>,
    pub(crate) sessions: Vec<Arc<Vec<Session>>>,
    pub(crate) audit: Vec<Arc<Vec<AuditEntry>>>,
    pub(crate) joins: Vec<Arc<Vec<SessionJoinUpdate>>>,
    pub(crate) alerts: Vec<Arc<Vec<model::AlertRecord>>>,
    n_rows: usize,
}

impl Buffer {
    fn push(&mut self, events: Vec<Event>, sessions: Vec<Session>) {
        self.n_rows += events.len() + sessions.len();
        if !events.is_empty() {
            self.events.push(Arc::new(events));
        }
        if !sessions.is_empty() {
            self.sessions.push(Arc::new(sessions));
        }
    }

    fn push_audit(&mut self, entries: Vec<AuditEntry>) {
        self.n_rows += entries.len();
        if !entries.is_empty() {
            self.audit.push(Arc::new(entries));
        }
    }

    fn push_joins(&mut self, joins: Vec<SessionJoinUpdate>) {
        self.n_rows += joins.len();
        if !joins.is_empty() {
            self.joins.push(Arc::new(joins));
        }
    }

    fn push_alerts(&mut self, alerts: Vec<model::AlertRecord>) {
        self.n_rows += alerts.len();
        if !alerts.is_empty() {
            self.alerts.push(Arc::new(alerts));
        }
    }

    pub(crate) fn all_alerts(&self) -> impl Iterator<Item = &model::AlertRecord> {
        self.alerts.iter().flat_map(|chunk| chunk.iter())
    }

    pub(crate) fn all_joins(&self) -> impl Iterator<Item = &SessionJoinUpdate> {
        self.joins.iter().flat_map(|chunk| chunk.iter())
    }

    pub(crate) fn all_audit(&self) -> impl Iterator<Item = &AuditEntry> {
        self.audit.iter().flat_map(|chunk| chunk.iter())
    }

    fn is_empty(&self) -> bool {
        self.n_rows == 0
    }

    fn n_events(&self) -> usize {
        self.events.iter().map(|chunk| chunk.len()).sum()
    }

    fn n_sessions(&self) -> usize {
        self.sessions.iter().map(|chunk| chunk.len()).sum()
    }

    pub(crate) fn all_events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().flat_map(|chunk| chunk.iter())
    }

    pub(crate) fn all_sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.iter().flat_map(|chunk| chunk.iter())
    }

    /// `self` followed by `later`.
    fn extend(&mut self, later: Buffer) {
        self.events.extend(later.events);
        self.sessions.extend(later.sessions);
        self.audit.extend(later.audit);
        self.joins.extend(later.joins);
        self.alerts.extend(later.alerts);
        self.n_rows += later.n_rows;
    }
}

/// What [`Store::stats`] reports of [`Inner`], published whenever the state lock is let go.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    buffered_events: usize,
    buffered_sessions: usize,
    buffered_rows: usize,
    segments: usize,
    open_sessions: usize,
    corrupt_wal_records: u64,
    quarantined_segments: usize,
    index_failures: u64,
    quarantined_index: bool,
}

/// The state lock held: [`Inner`], whose figures are published when it is let go.
struct State<'a> {
    guard: MutexGuard<'a, Inner>,
    figures: &'a RwLock<Figures>,
}

impl std::ops::Deref for State<'_> {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.guard
    }
}

impl std::ops::DerefMut for State<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.guard
    }
}

impl Drop for State<'_> {
    fn drop(&mut self) {
        let figures = self.guard.figures();
        match self.figures.write() {
            Ok(mut published) => *published = figures,
            Err(poisoned) => *poisoned.into_inner() = figures,
        }
    }
}

#[derive(Debug)]
struct Inner {
    buffer: Buffer,
    /// Rows taken by a flush in progress: still visible to queries until their files exist.
    flushing: Option<Buffer>,
    /// Highest stored position per source (Parquet or WAL).
    watermarks: Watermarks,
    segments: BTreeMap<Table, Vec<Segment>>,
    recent_sessions: RecentSessions,
    /// The newest collector checkpoint (WAL, else `state/collector.json`).
    collector_checkpoint: Option<model::CollectorCheckpoint>,
    /// Flushes that wrote all their segments (`flushes`); `None` for a reader of a directory
    /// from before the manifest existed (everything there is complete).
    complete_flushes: Option<BTreeSet<String>>,
    /// Per table, the highest event position per source in its Parquet segments: a table
    /// never takes an event at or below it.
    table_watermarks: BTreeMap<Table, Watermarks>,
    next_segment: u64,
    corrupt_wal_records: u64,
    quarantined_segments: usize,
    index_failures: u64,
    quarantined_index: bool,
    /// The newest entry of the audit trail: its number and hash.
    audit_head: (u64, String),
    /// Per `session_joins` segment (by key), the tables its corrections apply to: a query
    /// joins a table to its corrections only if some segment or buffered row has one.
    join_tables: HashMap<String, BTreeSet<Table>>,
    /// Segments a compaction replaced, deleted after the deadline (queries may read them).
    replaced: Vec<(std::time::Instant, String)>,
    /// Above this many buffered rows (flushes are failing), appends are refused.
    max_buffered_rows: usize,
    /// Held by a writer: one writing process per data directory.
    _lock: Option<durable::DirLock>,
}

impl Inner {
    fn figures(&self) -> Figures {
        Figures {
            buffered_events: self.buffer.n_events(),
            buffered_sessions: self.buffer.n_sessions(),
            buffered_rows: self.buffer.n_rows,
            segments: self.segments.values().map(Vec::len).sum(),
            open_sessions: self.recent_sessions.n_open(),
            corrupt_wal_records: self.corrupt_wal_records,
            quarantined_segments: self.quarantined_segments,
            index_failures: self.index_failures,
            quarantined_index: self.quarantined_index,
        }
    }
}

impl Store {
    /// Opens (creating if needed) a data directory for writing, replaying its WAL.
    pub fn open(config: &Config) -> Result<Store> {
        config.validate()?;
        let dir = &config.data_dir;
        for sub in ["tables", "wal", "state", "quarantine"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|error| Error::io("create directory", &path, error))?;
        }
        let lock = durable::lock_dir(dir)?;
        let wal = Wal::open(&dir.join("wal"))?;
        let mut store = Store::load(config, Some((wal, lock)))?;
        let key_path = config
            .audit_seal_key_file
            .clone()
            .unwrap_or_else(|| audit::default_seal_key_path(dir));
        let key = audit::SealKey::load_or_create(&key_path)?;
        let last_seal = store
            .audit_entries()?
            .iter()
            .filter(|entry| entry.draft.action == model::audit::SEAL_ACTION)
            .filter_map(AuditEntry::number)
            .max()
            .unwrap_or(0);
        store.sealer = Some(Arc::new(audit::Sealer {
            key,
            every: config.audit_seal_every,
            interval: Duration::from_secs(config.audit_seal_interval_secs),
            last: Mutex::new((last_seal, std::time::Instant::now())),
        }));
        Ok(store)
    }

    /// Opens an existing data directory for reading only; never writes to it.
    pub fn open_read_only(config: &Config) -> Result<Store> {
        let is_store = ["tables", "wal"]
            .iter()
            .any(|sub| std::fs::metadata(config.data_dir.join(sub)).is_ok_and(|m| m.is_dir()));
        if !is_store {
            return Err(Error::NotAStore(config.data_dir.clone()));
        }
        Store::load(config, None)
    }

    fn load(config: &Config, writer: Option<(Wal, durable::DirLock)>) -> Result<Store> {
        let dir = config.data_dir.clone();
        let writable = writer.is_some();
        let storage = Arc::new(Storage::open(
            &dir,
            config.root.as_deref(),
            &config.root_options,
            writable,
        )?);
        let (wal, lock) = match writer {
            Some((wal, lock)) => (Some(wal), Some(lock)),
            None => (None, None),
        };
        // The WAL before the segments: a reader racing a flush then sees the rows either in
        // the WAL or in a segment (overlaps are removed below), never in neither.
        let (records, n_corrupt) = wal::read_all(&dir.join("wal"))?;
        let mut segments = BTreeMap::new();
        let mut table_watermarks: BTreeMap<Table, Watermarks> = BTreeMap::new();
        // What earlier opens moved aside stays reported (health says "degraded") until an
        // operator deals with `DATA/quarantine/`.
        let (mut quarantined_segments, quarantined_index) = count_quarantined(&dir)?;
        let mut next_segment = 0;
        let mut join_tables = HashMap::new();
        let complete_flushes = flushes::load(&dir)?;
        for table in Table::ALL {
            let mut files = Vec::new();
            let mut replaced = std::collections::HashSet::new();
            for found in segment::list(&storage, table.name(), writable)? {
                // A file of a flush that did not finish: its rows are still in the WAL.
                if let (Some(complete), Some(flush)) =
                    (&complete_flushes, flushes::flush_of(&found.key))
                    && !complete.contains(flush)
                {
                    if writable {
                        tracing::warn!(key = %found.key, "removed a segment of a flush that did not finish (its rows are replayed from the write-ahead log)");
                        storage.delete(&found.key)?;
                    }
                    continue;
                }
                match segment::read_footer(&storage, &found.key).and_then(|footer| {
                    // Schema evolution: a file of another version is read if its columns
                    // fit; one whose types conflict is set aside, never misread.
                    footer
                        .check_against(&table.schema())
                        .map(|()| footer)
                        .map_err(|detail| {
                            Error::corrupt(
                                "segment of an incompatible schema",
                                storage.describe(&found.key),
                                detail,
                            )
                        })
                }) {
                    Ok(footer) => {
                        segment::merge(
                            table_watermarks.entry(table).or_default(),
                            &footer.watermarks,
                        );
                        let dir = segment::dir_of(&found.key);
                        replaced.extend(footer.replaces.iter().map(|name| format!("{dir}/{name}")));
                        if let Some(tables) = footer.join_tables {
                            join_tables.insert(found.key.clone(), tables);
                        }
                        files.push(found);
                    }
                    Err(error @ Error::File(durable::FileError::Corrupt { .. })) => {
                        tracing::error!(key = %found.key, %error, "unreadable parquet segment");
                        quarantined_segments += 1;
                        if writable {
                            quarantine(&dir, &storage, &found.key)?;
                        }
                    }
                    // Not the file's fault (permissions, too many open files): do not guess.
                    Err(error) => return Err(error),
                }
            }
            // Files a compaction replaced: their rows are in the replacing segment.
            files.retain(|found| !replaced.contains(&found.key));
            if writable {
                for key in &replaced {
                    storage.delete(key)?;
                    tracing::debug!(key, "removed a segment a compaction replaced");
                }
            }
            next_segment += files.len() as u64;
            segments.insert(table, files);
        }
        let mut inner = Inner {
            buffer: Buffer::default(),
            flushing: None,
            watermarks: Watermarks::new(),
            segments,
            recent_sessions: RecentSessions::load(&dir)?,
            collector_checkpoint: collector_state::load(&dir)?,
            complete_flushes: None,
            table_watermarks: table_watermarks.clone(),
            next_segment,
            corrupt_wal_records: 0,
            quarantined_segments,
            index_failures: 0,
            quarantined_index,
            audit_head: (0, model::audit::GENESIS.to_owned()),
            join_tables,
            replaced: Vec::new(),
            max_buffered_rows: config.max_buffered_rows.saturating_mul(4),
            _lock: lock,
        };
        for watermarks in table_watermarks.values() {
            segment::merge(&mut inner.watermarks, watermarks);
        }
        // The flushes whose files are here (all of them complete now; in a directory from
        // before the manifest, every one).
        let present = present_flushes(&inner.segments);
        inner.complete_flushes = match complete_flushes {
            Some(complete) => Some(complete.intersection(&present).cloned().collect()),
            None if writable => Some(present),
            None => None,
        };
        if writable && let Some(complete) = &inner.complete_flushes {
            flushes::store(&dir, complete)?;
        }
        // Replay the WAL: an event goes back into memory unless every table that takes it
        // already has it in Parquet; flushes and queries then give it only to the tables that
        // lack it (a crash may come between the segments of one flush).
        inner.corrupt_wal_records = n_corrupt;
        let mut n_replayed = 0;
        // The audit trail goes on from its newest entry; entries the WAL holds that a flush
        // already wrote (a crash before the WAL was removed) are not taken twice.
        let audit_segments = inner
            .segments
            .get(&Table::AuditLog)
            .cloned()
            .unwrap_or_default();
        inner.audit_head = audit_head_in(&storage, &audit_segments)?;
        let flushed_audit = inner.audit_head.0;
        for record in records {
            let audit: Vec<AuditEntry> = record
                .audit
                .into_iter()
                .filter(|entry| entry.number().is_some_and(|n| n > flushed_audit))
                .collect();
            if let Some(newest) = audit.iter().max_by_key(|entry| entry.number()) {
                inner.audit_head = (newest.number().unwrap_or(0), newest.hash.clone());
            }
            inner.buffer.push_audit(audit);
            // Corrections are idempotent (the newest per event wins in every query), so one
            // that a flush already wrote may come back without changing any result.
            inner.buffer.push_joins(record.session_joins);
            // Alert rows a flush already wrote are read once ([`Store::alert_records`]).
            inner.buffer.push_alerts(record.alerts);
            let mut events = Vec::with_capacity(record.events.len());
            for event in record.events {
                let missing_somewhere = Table::ALL.iter().any(|table| {
                    table.takes(&event) && !covered(&table_watermarks, *table, &event)
                });
                if missing_somewhere {
                    bump(&mut inner.watermarks, &event);
                    events.push(event);
                    n_replayed += 1;
                }
            }
            for session in &record.sessions {
                inner.recent_sessions.track(session);
            }
            if record.collector.is_some() {
                inner.collector_checkpoint = record.collector;
            }
            inner.buffer.push(events, record.sessions);
        }
        if n_replayed > 0 && writable {
            tracing::info!(n_replayed, "replayed events from the write-ahead log");
        }
        let search = open_search(&dir, writable, &mut inner)?;
        if writable {
            let events = inner
                .segments
                .get(&Table::Events)
                .cloned()
                .unwrap_or_default();
            index_missing(&storage, &search, &events)?;
        }
        Ok(Store {
            figures: Arc::new(RwLock::new(inner.figures())),
            inner: Arc::new(Mutex::new(inner)),
            writer: Arc::new(Mutex::new(wal)),
            flushing: Arc::new(Mutex::new(())),
            search: Arc::new(search),
            storage,
            retention: config.retention_policy()?,
            dir,
            query_timeout: Duration::from_secs(config.query_timeout_secs),
            query_memory_bytes: config.query_memory_bytes,
            admission: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_queries)),
            max_concurrent_queries: config.max_concurrent_queries,
            refused_queries: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            query_runtime: None,
            sealer: None,
            tap: Arc::new(std::sync::OnceLock::new()),
        })
    }

    fn lock(&self) -> Result<State<'_>> {
        let guard = self
            .inner
            .lock()
            .map_err(|_| Error::Internal("store lock poisoned".to_owned()))?;
        Ok(State {
            guard,
            figures: &self.figures,
        })
    }

    /// The figures as of the last unlock (never waits for the state lock).
    fn figures(&self) -> Figures {
        match self.figures.read() {
            Ok(figures) => *figures,
            // A panic while publishing left a whole `Copy` value: still the newest.
            Err(poisoned) => **poisoned.get_ref(),
        }
    }

    /// The write-ahead log, for a writer (appends, rotation): taken before [`Store::lock`].
    fn writer(&self) -> Result<MutexGuard<'_, Option<Wal>>> {
        self.writer
            .lock()
            .map_err(|_| Error::Internal("store writer lock poisoned".to_owned()))
    }

    /// Whether this store may write (it holds the data directory's lock and its WAL).
    pub(crate) fn writable(&self) -> Result<bool> {
        Ok(self.writer()?.is_some())
    }

    /// Stores a batch durably: after this returns `Ok`, a crash does not lose it. Events
    /// the store already has are counted as duplicates and not stored again.
    pub fn append(&self, events: Vec<Event>, sessions: Vec<Session>) -> Result<AppendReceipt> {
        let mut receipts = self.append_group(vec![(events, sessions)])?;
        receipts
            .pop()
            .ok_or_else(|| Error::Internal("a group of one gave no receipt".to_owned()))
    }

    /// Group commit: stores several batches (from different senders) with one WAL record and
    /// one fsync, all or none, and returns a receipt per batch, in order. An event that an
    /// earlier batch of the group already carries counts as a duplicate in the later one.
    pub fn append_group(
        &self,
        batches: Vec<(Vec<Event>, Vec<Session>)>,
    ) -> Result<Vec<AppendReceipt>> {
        self.append_group_with_joins(batches, Vec::new())
    }

    /// [`Store::append_group`] plus late session join corrections ([`SessionJoinUpdate`]), in
    /// the same WAL record and fsync. Corrections are not deduplicated: storing one twice
    /// changes no query result, since `flows` and `api_requests` show the newest correction
    /// of each event (the one decided last; equal times are ordered by session id).
    pub fn append_group_with_joins(
        &self,
        batches: Vec<(Vec<Event>, Vec<Session>)>,
        joins: Vec<SessionJoinUpdate>,
    ) -> Result<Vec<AppendReceipt>> {
        self.append_collected(batches, joins, None)
    }

    /// [`Store::append_group_with_joins`] plus the collector's checkpoint as of these batches
    /// (what it was still assembling), in the same WAL record: durable exactly when the
    /// batches are. [`Store::collector_checkpoint`] hands the newest one back after a restart.
    pub fn append_collected(
        &self,
        batches: Vec<(Vec<Event>, Vec<Session>)>,
        joins: Vec<SessionJoinUpdate>,
        checkpoint: Option<model::CollectorCheckpoint>,
    ) -> Result<Vec<AppendReceipt>> {
        // Writers one at a time; readers only wait for the short in-memory parts.
        let mut writer = self.writer()?;
        let Some(wal) = writer.as_mut() else {
            return Err(Error::ReadOnly(self.dir.clone()));
        };
        let inner = self.lock()?;
        let mut receipts = Vec::with_capacity(batches.len());
        let mut accepted = Vec::new();
        let mut all_sessions = Vec::new();
        let mut positions = Watermarks::new();
        for (events, sessions) in batches {
            let n_offered = events.len() as u64;
            let n_before = accepted.len();
            for event in events {
                let floor = positions
                    .get(&event.id.source)
                    .or_else(|| inner.watermarks.get(&event.id.source));
                if floor.is_none_or(|stored| event.id.position() > *stored) {
                    bump(&mut positions, &event);
                    accepted.push(event);
                }
            }
            let n_accepted = (accepted.len() - n_before) as u64;
            receipts.push(AppendReceipt {
                accepted: n_accepted,
                duplicates: n_offered - n_accepted,
            });
            all_sessions.extend(sessions);
        }
        if accepted.is_empty()
            && all_sessions.is_empty()
            && joins.is_empty()
            && checkpoint.is_none()
        {
            return Ok(receipts);
        }
        let n_buffered = inner.buffer.n_rows
            + inner
                .flushing
                .as_ref()
                .map_or(0, |flushing| flushing.n_rows);
        if n_buffered >= inner.max_buffered_rows {
            return Err(Error::Overloaded(n_buffered));
        }
        drop(inner);
        let record = WalRecord {
            events: accepted,
            sessions: all_sessions,
            audit: Vec::new(),
            session_joins: joins,
            collector: checkpoint,
            alerts: Vec::new(),
        };
        // The fsync, with no reader waiting on it (the writer lock keeps other appends and
        // flushes' rotations out, so the positions checked above still hold).
        wal.append(&record)?;
        if let Some(AcceptedTap(tap)) = self.tap.get() {
            tap(&record.events, &record.sessions);
        }
        let mut inner = self.lock()?;
        // Durable now: only from here on does a resend count as a duplicate.
        segment::merge(&mut inner.watermarks, &positions);
        for session in &record.sessions {
            inner.recent_sessions.track(session);
        }
        if record.collector.is_some() {
            inner.collector_checkpoint = record.collector;
        }
        inner.buffer.push(record.events, record.sessions);
        inner.buffer.push_joins(record.session_joins);
        Ok(receipts)
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Sets what is told of every accepted event and session from now on (the alerting
    /// engine's feed); once per store. `false` when one was set already.
    pub fn set_accepted_tap(&self, tap: AcceptedTap) -> bool {
        self.tap.set(tap).is_ok()
    }

    /// The highest stored sequence number of each of `sources` (`None`: nothing stored yet),
    /// for the ingest endpoint's check that a batch does not leap far ahead of them.
    pub fn stored_sequences(&self, sources: &[&str]) -> Result<Vec<Option<u64>>> {
        let inner = self.lock()?;
        Ok(sources
            .iter()
            .map(|source| inner.watermarks.get(*source).map(|(seq, _)| *seq))
            .collect())
    }

    /// Rows waiting in memory (and the WAL) for the next flush.
    pub fn buffered_rows(&self) -> Result<usize> {
        Ok(self.figures().buffered_rows)
    }

    /// Writes every buffered row to Parquet and drops the WAL generations that held them.
    /// Appends and queries go on meanwhile: the rows being flushed stay visible until their
    /// segments are in place, and the state files and the search index are written without
    /// holding anything a reader needs.
    pub fn flush(&self) -> Result<FlushReport> {
        let _one_flush = self
            .flushing
            .lock()
            .map_err(|_| Error::Internal("store flush lock poisoned".to_owned()))?;
        let (taken, old_generations, segment_base, table_watermarks) = {
            let mut writer = self.writer()?;
            let Some(wal) = writer.as_mut() else {
                return Err(Error::ReadOnly(self.dir.clone()));
            };
            // Rows reach the buffer only under the writer lock, which this holds: it stays
            // as it is while the WAL rotates (a file created and synced, with no reader
            // waiting on it), and its rows are exactly those of the old generations.
            if self.lock()?.buffer.is_empty() {
                return Ok(FlushReport::default());
            }
            let old_generations = wal.rotate()?;
            let mut guard = self.lock()?;
            let inner = &mut *guard;
            let taken = std::mem::take(&mut inner.buffer);
            inner.flushing = Some(taken.clone());
            let segment_base = inner.next_segment;
            inner.next_segment += 1;
            (
                taken,
                old_generations,
                segment_base,
                inner.table_watermarks.clone(),
            )
        };
        let written = self.write_segments(&taken, segment_base, &table_watermarks);
        let (report, to_index, recent_sessions, checkpoint, complete, forgotten) = {
            let mut inner = self.lock()?;
            inner.flushing = None;
            let written = match written {
                Ok(written) => written,
                Err(error) => {
                    // Keep the rows (they are still in the old WAL generations) for the next
                    // try, ahead of what arrived meanwhile.
                    let arrived = std::mem::take(&mut inner.buffer);
                    inner.buffer = taken;
                    inner.buffer.extend(arrived);
                    return Err(error);
                }
            };
            let mut flushed = Watermarks::new();
            for event in taken.all_events() {
                bump(&mut flushed, event);
            }
            for table in Table::ALL.into_iter().filter(|table| table.from_events()) {
                segment::merge(inner.table_watermarks.entry(table).or_default(), &flushed);
            }
            let flush_id = written
                .first()
                .and_then(|(_, written_segment, _, _)| flushes::flush_of(&written_segment.key))
                .map(str::to_owned);
            let mut report = FlushReport::default();
            let mut to_index = Vec::new();
            for (table, written_segment, n_rows, rows) in written {
                match (table, rows) {
                    (Table::Events, Some(rows)) => {
                        to_index.push((written_segment.key.clone(), rows));
                    }
                    (Table::SessionJoins, Some(rows)) => {
                        inner.join_tables.insert(
                            written_segment.key.clone(),
                            session_joins::tables_in_batch(&rows),
                        );
                    }
                    _ => {}
                }
                inner
                    .segments
                    .entry(table)
                    .or_default()
                    .push(written_segment);
                *report.rows.entry(table.name()).or_default() += n_rows;
            }
            let forgotten = inner.recent_sessions.prune();
            // Every file of this flush is in place: it is complete (before the WAL that
            // holds its rows goes).
            let present = present_flushes(&inner.segments);
            let complete = {
                let complete = inner.complete_flushes.get_or_insert_with(BTreeSet::new);
                complete.extend(flush_id);
                complete.retain(|id| present.contains(id));
                complete.clone()
            };
            (
                report,
                to_index,
                inner.recent_sessions.clone(),
                inner.collector_checkpoint.clone(),
                complete,
                forgotten,
            )
        };
        drop(forgotten);
        flushes::store(&self.dir, &complete)?;
        // The state as of the rows just flushed (or newer), then the WAL generations that
        // held them: a crash in between replays them, which is harmless.
        recent_sessions.store(&self.dir)?;
        // Before the old WAL generations go: they may hold the newest checkpoint.
        collector_state::store(&self.dir, checkpoint.as_ref())?;
        if let Some(wal) = self.writer()?.as_ref() {
            wal.remove(&old_generations)?;
        }
        // The index is derived data: a failure here loses nothing (the segments are in
        // place, and the next open indexes what the index lacks).
        if let Err(error) = self.index_flushed(&to_index) {
            self.lock()?.index_failures += to_index.len() as u64;
            tracing::error!(%error, n_segments = to_index.len(), "cannot index flushed segments; they are searchable after a restart or `store rebuild-index`");
        }
        Ok(report)
    }

    /// Writes one segment per table, all or nothing: if one fails, the ones already written
    /// are removed again, so a retry cannot store rows twice.
    fn write_segments(
        &self,
        taken: &Buffer,
        segment_base: u64,
        table_watermarks: &BTreeMap<Table, Watermarks>,
    ) -> Result<Vec<Written>> {
        let mut written = Vec::new();
        let result = self.write_segments_into(taken, segment_base, table_watermarks, &mut written);
        if let Err(error) = result {
            for (_, written_segment, _, _) in &written {
                let key = &written_segment.key;
                if let Err(remove_error) = self.storage.delete(key) {
                    tracing::error!(key, %remove_error, "cannot remove a segment of a failed flush");
                }
            }
            return Err(error);
        }
        Ok(written)
    }

    fn write_segments_into(
        &self,
        taken: &Buffer,
        segment_base: u64,
        table_watermarks: &BTreeMap<Table, Watermarks>,
        written: &mut Vec<Written>,
    ) -> Result<()> {
        let mut watermarks = Watermarks::new();
        for event in taken.all_events() {
            bump(&mut watermarks, event);
        }
        let stamp = jiff::Timestamp::now().as_microsecond();
        let mut file_idx = 0;
        for table in Table::ALL {
            let batch = if table == Table::Sessions {
                schema::sessions_batch(&taken.all_sessions().collect::<Vec<_>>())?
            } else if table == Table::AuditLog {
                schema::audit_batch(&taken.all_audit().collect::<Vec<_>>())?
            } else if table == Table::SessionJoins {
                schema::session_joins_batch(&taken.all_joins().collect::<Vec<_>>())?
            } else if table == Table::Alerts {
                alerts::alerts_batch(&taken.all_alerts().collect::<Vec<_>>())?
            } else if table.from_events() {
                let rows: Vec<&Event> = taken
                    .all_events()
                    .filter(|event| table.takes(event) && !covered(table_watermarks, table, event))
                    .collect();
                table.events_batch(&rows)?
            } else {
                continue;
            };
            if batch.num_rows() == 0 {
                continue;
            }
            for (hour, rows) in segment::split_by_hour(&batch)? {
                let stem = format!("{}-{file_idx:04}", flushes::flush_id(stamp, segment_base));
                file_idx += 1;
                let key = segment::write(
                    &self.storage,
                    &format!("{}/{}", table.name(), segment::partition_dir(hour)?),
                    &stem,
                    &rows,
                    table.sort_key(),
                    table.from_events().then_some(&watermarks),
                    &[],
                )?;
                let n_rows = rows.num_rows();
                written.push((
                    table,
                    Segment {
                        hour: Some(hour),
                        key,
                    },
                    n_rows,
                    matches!(table, Table::Events | Table::SessionJoins).then_some(rows),
                ));
            }
        }
        Ok(())
    }

    fn index_flushed(
        &self,
        segments: &[(String, datafusion::arrow::array::RecordBatch)],
    ) -> Result<()> {
        if segments.is_empty() {
            return Ok(());
        }
        for (key, rows) in segments {
            self.search.index_segment(key, std::slice::from_ref(rows))?;
        }
        self.search.commit()
    }

    /// Searches the full-text index (see [`search`] for the query language). Events are
    /// searchable once flushed.
    pub fn search(&self, text: &str, options: &SearchOptions) -> Result<SearchResult> {
        if !self.writable()? {
            // A reader in another process: see what the writer committed since.
            self.search.refresh()?;
        }
        self.search.search(text, options)
    }

    /// The sessions that were open at the newest snapshot (for the collector after a restart).
    pub fn open_sessions(&self) -> Result<Vec<Session>> {
        Ok(self.lock()?.recent_sessions.open())
    }

    /// The open sessions and the ones closed shortly before the newest session change (see
    /// [`RECENTLY_CLOSED_SECS`]): what the collector starts from after a restart, so that
    /// late and resent events still find their session.
    pub fn recent_sessions(&self) -> Result<Vec<Session>> {
        Ok(self.lock()?.recent_sessions.all())
    }

    /// The newest checkpoint the collector stored with a batch ([`Store::append_collected`]),
    /// for it to start from after a restart.
    pub fn collector_checkpoint(&self) -> Result<Option<model::CollectorCheckpoint>> {
        Ok(self.lock()?.collector_checkpoint.clone())
    }

    /// The store's figures, as of the last change: it never waits for a writer or a query
    /// (health checks and `/metrics` call it).
    pub fn stats(&self) -> Result<StoreStats> {
        let figures = self.figures();
        Ok(StoreStats {
            buffered_events: figures.buffered_events,
            buffered_sessions: figures.buffered_sessions,
            segments: figures.segments,
            open_sessions: figures.open_sessions,
            corrupt_wal_records: figures.corrupt_wal_records,
            quarantined_segments: figures.quarantined_segments,
            indexed_events: self.search.num_docs(),
            index_failures: figures.index_failures,
            quarantined_index: figures.quarantined_index,
            running_queries: self.running_queries(),
            refused_queries: self
                .refused_queries
                .load(std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Runs queries on `runtime` from now on (the caller's own, beside the one that serves
    /// ingest and health checks), so that a heavy query does not hold up their tasks.
    pub fn with_query_runtime(mut self, runtime: tokio::runtime::Handle) -> Store {
        self.query_runtime = Some(runtime);
        self
    }

    /// Runs one read-only SQL statement over every table.
    pub async fn query(&self, sql: &str) -> Result<QueryResult> {
        self.query_stream(sql).await?.collect().await
    }

    /// Starts one read-only SQL statement and returns its rows as they are computed (see
    /// [`QueryStream`]); errors in the statement come back here, before any row.
    pub async fn query_stream(&self, sql: &str) -> Result<QueryStream> {
        let Ok(admission) = self.admission.clone().try_acquire_owned() else {
            self.refused_queries
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Error::Busy(self.max_concurrent_queries));
        };
        let (segments, rows, table_watermarks, corrected) = {
            let inner = self.lock()?;
            // Rows being flushed were taken from the buffer: they come first.
            let mut rows = inner.flushing.clone().unwrap_or_default();
            rows.extend(inner.buffer.clone());
            let corrected = session_joins::tables_in_segments(
                inner
                    .segments
                    .get(&Table::SessionJoins)
                    .into_iter()
                    .flatten(),
                &inner.join_tables,
            );
            (
                inner.segments.clone(),
                rows,
                inner.table_watermarks.clone(),
                corrected,
            )
        };
        let storage = self.storage.clone();
        let snapshot = tokio::task::spawn_blocking(move || {
            query::Snapshot::take(storage, segments, &rows, corrected, &|table, event| {
                covered(&table_watermarks, table, event)
            })
        })
        .await
        .map_err(|error| Error::Internal(format!("query snapshot task failed: {error}")))??;
        let stream = match &self.query_runtime {
            Some(runtime) => {
                // Planned and run there; only the batches come back here.
                let sql = sql.to_owned();
                let (timeout, memory) = (self.query_timeout, self.query_memory_bytes);
                let query_runtime = runtime.clone();
                runtime
                    .spawn(async move {
                        query::stream(snapshot, &sql, timeout, memory)
                            .await
                            .map(|stream| stream.run_on(&query_runtime))
                    })
                    .await
                    .map_err(|error| Error::Internal(format!("query task failed: {error}")))??
            }
            None => {
                query::stream(snapshot, sql, self.query_timeout, self.query_memory_bytes).await?
            }
        };
        Ok(stream.admitted(admission))
    }

    /// Queries running now.
    pub fn running_queries(&self) -> usize {
        self.max_concurrent_queries - self.admission.available_permits()
    }

    /// Runs a query and returns its rows as JSON objects keyed by column name.
    pub async fn query_json(
        &self,
        sql: &str,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
        let result = self.query(sql).await?;
        query::to_json_rows(&result.batches)
    }
}

/// A segment a flush wrote: its table, where, how many rows, and (for `events`) the rows to
/// index or (for `session_joins`) the rows whose tables to note.
type Written = (
    Table,
    Segment,
    usize,
    Option<datafusion::arrow::array::RecordBatch>,
);

/// The flushes whose (uncompacted) files are among `segments`.
fn present_flushes(segments: &BTreeMap<Table, Vec<Segment>>) -> BTreeSet<String> {
    segments
        .values()
        .flatten()
        .filter_map(|found| flushes::flush_of(&found.key))
        .map(str::to_owned)
        .collect()
}

/// Whether `table` already has `event` in Parquet.
fn covered(table_watermarks: &BTreeMap<Table, Watermarks>, table: Table, event: &Event) -> bool {
    table_watermarks
        .get(&table)
        .and_then(|watermarks| watermarks.get(&event.id.source))
        .is_some_and(|stored| event.id.position() <= *stored)
}

fn bump(watermarks: &mut Watermarks, event: &Event) {
    let position = event.id.position();
    // The source is almost always known: look it up without allocating its name.
    match watermarks.get_mut(&event.id.source) {
        Some(slot) => {
            if position > *slot {
                *slot = position;
            }
        }
        None => {
            watermarks.insert(event.id.source.clone(), position);
        }
    }
}

#[cfg(test)]
mod tests;
