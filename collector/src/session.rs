//! Rebuilding VPN sessions from what every source says: the [`Sessionizer`].
//!
//! A session is one login. It begins when an IKE_SA is established (or, for a source that
//! only reports sessions, when pppd or RADIUS accounting says so), survives rekeys (the
//! IKE_SA gets a new unique id), and ends when its newest IKE_SA is deleted or lost, or when
//! accounting says Stop. Every event of a login carries its `session_id`, including the
//! successful authentication and the lease that came before the IKE_SA was up.
//!
//! Several sources report the same login, in any order: the VPN's own events (charon or
//! pluto log lines, VICI, their syslog copies) and RADIUS accounting (the live receiver or a
//! FreeRADIUS detail file). They meet in one *record* per login, found by any of its keys:
//! the IKE_SA's unique id (strongSwan's NAS-Port is that id), the client address (log lines
//! before the id is known), the Acct-Session-Id, or the virtual IP at that time. The record
//! keeps what each side said apart and shows a session with fixed precedence (the VPN's
//! start, identities, address and end cause; per counter the larger of the CHILD_SAs' sum and
//! accounting's totals; the earlier end), so the order of arrival does not change it.
//!
//! The first event of a login fixes its id, and every later event of that login, from any
//! source, finds the same record. A record becomes a row of `sessions` only when it is one:
//! - *negotiating*: the VPN's events before the IKE_SA is established (a login that fails
//!   after all leaves no session);
//! - *held*: RADIUS accounting that no VPN event explains yet waits
//!   `[collector.sessions] accounting_hold_secs` (wall clock) for them, and becomes a session
//!   of its own only then (a NAS that reports nothing else); `tunnelwatch ingest` holds it to
//!   the end of its input ([`Sessionizer::finish`]);
//! - *shown*: a row of `sessions`, with a new snapshot whenever it changes.
//!
//! When two records turn out to be one login (the log named the client before the IKE_SA
//! id; accounting named the IKE_SA a rekey made) or a negotiating one never becomes a session,
//! the events stamped with the record that goes get a correction ([`JoinTarget::Events`]), so
//! that every stored `session_id` names a session. Negotiating and held records are the
//! collector's checkpoint ([`Sessionizer::checkpoint`]), stored with the batch that changed
//! them, so a restart neither loses nor splits them.
//!
//! `record` is one login and how it shows as a session; `accounting` is how accounting and
//! pppd's lines find their login.
//!
//! The sessionizer is pure and idempotent: applying an event twice (a batch the store could
//! not take and that came again, a syslog copy of a log line) leaves the same sessions,
//! because every change sets a value rather than adding to one (byte counters are kept per
//! CHILD_SA and summed).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use model::{
    CollectorCheckpoint, Event, EventBody, JoinTarget, Peer, SaChange, Session, SessionJoin,
    SessionJoinUpdate,
};
use serde::{Deserialize, Serialize};

#[cfg(test)]
use record::larger;
use record::{Record, Stamp, later_by};

/// How long a closed session stays in memory (in event time, behind the newest event seen)
/// for late events: the lease release that follows a delete, and the other sources' reports
/// of it. This is how far sources may lag each other: a report of a login that closed longer
/// ago than this before the newest event finds no session (counted as an orphan, or for
/// accounting, held and then shown on its own).
const CLOSED_GRACE_SECS: i64 = 10 * 60;
/// How far accounting's times may be from the VPN's for the same session (RADIUS timestamps
/// are the NAS's clock or the receive time minus Acct-Delay-Time).
const ACCOUNTING_SLACK_SECS: i64 = 120;
/// How long a login may stay negotiating (in event time) before it is forgotten: IKE_AUTH
/// takes seconds, and each login still negotiating is in every checkpoint.
const PENDING_TTL_SECS: i64 = 5 * 60;
/// Two reports of an IKE_SA starting to negotiate this close together are the same one (a
/// syslog copy of the log, a resent batch), not the daemon reusing the id after a restart.
const SAME_ATTEMPT_SECS: i64 = 2;
/// IKE_SAs remembered as negotiating without a login yet, at most (a flood of half-open
/// attempts stays bounded).
const MAX_CONNECTING: usize = 65_536;
/// How far past the wall clock an event's time may move the sessionizer's sense of "now".
const FUTURE_TOLERANCE_SECS: i64 = 3600;
/// The version of the checkpoint's layout.
const CHECKPOINT_VERSION: u32 = 1;

/// `[collector.sessions]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// How long (wall clock) RADIUS accounting that no VPN event explains yet waits for them
    /// before it becomes a session of its own. The VPN's events of the same login arrive
    /// within seconds when they come at all (the agent holds VICI events for a second, a log
    /// tailer polls); 0 shows accounting-only sessions at once.
    pub accounting_hold_secs: u64,
    /// The input ends ([`Sessionizer::finish`]: `tunnelwatch ingest`): accounting is held to
    /// the end of it, not for a time, and there is no checkpoint (a rerun applies the same
    /// files again and rebuilds what was being assembled). Not a configuration key.
    #[serde(skip)]
    pub until_end_of_input: bool,
}

impl Default for SessionConfig {
    fn default() -> SessionConfig {
        SessionConfig {
            accounting_hold_secs: 30,
            until_end_of_input: false,
        }
    }
}

impl SessionConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.accounting_hold_secs > 24 * 3600 {
            return Err(format!(
                "accounting_hold_secs = {} is more than a day: accounting-only sessions would stay invisible that long",
                self.accounting_hold_secs
            ));
        }
        Ok(())
    }
}

/// Which IKE_SA an event is about: its unique id, or only the client address when the log
/// did not say (charon without `ike_name`, before the id appeared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
enum SaRef {
    Id(u64),
    Client(IpAddr),
    /// A session only accounting names (pppd behind RADIUS, a NAS without IKE_SA ids): a
    /// hash of its Acct-Session-Id.
    Accounting(u64),
    /// A session only pppd's log names: the PPP link's (virtual) address.
    VirtualIp(IpAddr),
}

type SaKey = (Option<String>, SaRef);

/// Where a login is on its way to becoming a row of `sessions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "phase")]
enum Phase {
    /// The VPN's events of a login (authentication, lease) before its IKE_SA is established.
    Negotiating,
    /// RADIUS accounting that no VPN event explains yet, held since `since` (wall clock).
    Held { since: Timestamp },
    /// A row of `sessions`.
    Shown,
}

/// What the checkpoint holds: the records that are not shown.
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    records: Vec<Record>,
    /// The newest correction's decision time: a later process decides after it.
    #[serde(default)]
    last_decided: Option<Timestamp>,
}

/// What the sessionizer counted, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionStats {
    /// Events about a session never seen to begin (an IKE_SA deleted, lost or rekeyed, a
    /// CHILD_SA, a lease, accounting that no session or key fits): stored, without a session.
    pub orphan_events: u64,
    /// Ends of a session that had ended already (an IKE_SA deleted twice, a second
    /// accounting Stop, or a resend).
    pub repeated_ends: u64,
    /// Sessions in memory (open, and closed ones kept for late events).
    pub sessions: u64,
    /// Logins being assembled: negotiating, or accounting held for the VPN's events.
    pub pending: u64,
    /// Accounting that no VPN event explained within the hold: sessions of their own.
    pub accounting_only: u64,
    /// Logins that never became a session (failed after authenticating, or forgotten after
    /// an hour of negotiating): their events were corrected to no session.
    pub abandoned: u64,
    /// A checkpoint that could not be read at start (its logins are lost, said in the log).
    pub checkpoint_unreadable: u64,
}

/// Folds events into sessions.
#[derive(Debug, Default)]
pub struct Sessionizer {
    config: SessionConfig,
    records: HashMap<String, Record>,
    by_sa: HashMap<SaKey, String>,
    /// RADIUS Acct-Session-Id (per gateway) to record: kept across rekeys.
    by_accounting: HashMap<(Option<String>, String), String>,
    /// IKE_SAs negotiating with no login yet, and since when (a session starts there).
    connecting: HashMap<SaKey, Timestamp>,
    /// Per gateway, the newest event time seen (no later than an hour past the wall clock:
    /// one event from a wrong clock does not age everything else), for eviction.
    high_water: HashMap<Option<String>, Timestamp>,
    /// Records changed since the last snapshots were taken, in order (and as a set).
    changed: Vec<String>,
    changed_set: HashSet<String>,
    /// Corrections of stored events not yet handed out.
    corrections: Vec<SessionJoinUpdate>,
    /// The newest correction's decision time (each later one is later still).
    last_decided: Option<Timestamp>,
    /// The records that are not shown changed since the last checkpoint.
    dirty: bool,
    stats: SessionStats,
}

impl Sessionizer {
    /// A sessionizer with the default configuration, starting from `known_sessions`.
    pub fn new(known_sessions: Vec<Session>) -> Sessionizer {
        Sessionizer::restore(
            SessionConfig::default(),
            known_sessions,
            None,
            Timestamp::UNIX_EPOCH,
        )
    }

    /// Starts from what the store kept when the process last stopped: the open sessions,
    /// which go on, and recently closed ones, which late and resent events (a RADIUS Stop, a
    /// lease release, accounting a gateway sends again) still find instead of starting a
    /// session of their own; and the checkpoint, the logins being assembled (held accounting
    /// waits again from `now`).
    pub fn restore(
        config: SessionConfig,
        known_sessions: Vec<Session>,
        checkpoint: Option<&CollectorCheckpoint>,
        now: Timestamp,
    ) -> Sessionizer {
        let mut sessionizer = Sessionizer {
            config,
            ..Sessionizer::default()
        };
        for session in known_sessions {
            sessionizer.seen(&session.gateway, session.updated);
            let mut record = Record::restored(session);
            record.keys = record.restored_keys();
            sessionizer.insert(record);
        }
        if let Some(checkpoint) = checkpoint {
            match serde_json::from_value::<Checkpoint>(checkpoint.0.clone()) {
                Ok(checkpoint) if checkpoint.version == CHECKPOINT_VERSION => {
                    sessionizer.last_decided = checkpoint.last_decided;
                    for mut record in checkpoint.records {
                        // A session the store shows already is further along than any
                        // checkpoint of it (one stored before a failed write, say).
                        if sessionizer.records.contains_key(&record.session_id) {
                            continue;
                        }
                        if let Phase::Held { since } = &mut record.phase {
                            *since = now;
                        }
                        sessionizer.seen(&record.gateway, record.updated);
                        sessionizer.insert(record);
                    }
                }
                Ok(checkpoint) => {
                    sessionizer.stats.checkpoint_unreadable += 1;
                    tracing::error!(
                        version = checkpoint.version,
                        "the collector's checkpoint is of an unknown version; the logins it held are lost"
                    );
                }
                Err(error) => {
                    sessionizer.stats.checkpoint_unreadable += 1;
                    tracing::error!(%error, "the collector's checkpoint is unreadable; the logins it held are lost");
                }
            }
        }
        sessionizer
    }

    fn insert(&mut self, record: Record) {
        for key in &record.keys {
            self.by_sa.insert(key.clone(), record.session_id.clone());
        }
        if let Some(accounting_id) = &record.accounting.accounting_id {
            self.by_accounting.insert(
                (record.gateway.clone(), accounting_id.clone()),
                record.session_id.clone(),
            );
        }
        self.records.insert(record.session_id.clone(), record);
    }

    /// Sessions in memory (open ones and recently closed ones).
    pub fn n_sessions(&self) -> usize {
        self.records
            .values()
            .filter(|record| record.shown())
            .count()
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            sessions: self.n_sessions() as u64,
            pending: self
                .records
                .values()
                .filter(|record| !record.shown())
                .count() as u64,
            ..self.stats.clone()
        }
    }

    /// Applies events in order, stamping each with its session id; returns a snapshot of
    /// every session that changed, each once. `now` is the wall clock (accounting's hold and
    /// the time of corrections).
    pub fn apply(&mut self, events: &mut [Event], now: Timestamp) -> Vec<Session> {
        let ceiling = later_by(now, SignedDuration::from_secs(FUTURE_TOLERANCE_SECS));
        for event in events.iter_mut() {
            self.seen(&event.observer.hostname, event.timestamp.min(ceiling));
            self.apply_one(event, now);
            if event.session_id.is_none() && about_a_session(&event.body) {
                self.stats.orphan_events += 1;
            }
        }
        // A login negotiating too long is settled first (shown if accounting saw it), so
        // that its snapshot goes out with this batch's: a restart before the next batch
        // would otherwise lose it, being in no checkpoint once shown. Snapshots come before
        // eviction: a session that began and ended within a batch that spans more than the
        // grace (a long log read at once) is still shown.
        self.settle_stale(now);
        let snapshots = self.snapshots();
        self.evict();
        snapshots
    }

    /// Moves `gateway`'s high water to `at`.
    fn seen(&mut self, gateway: &Option<String>, at: Timestamp) {
        match self.high_water.get_mut(gateway) {
            Some(high_water) => *high_water = (*high_water).max(at),
            None => {
                self.high_water.insert(gateway.clone(), at);
            }
        }
    }

    /// Shows the held accounting whose hold has passed at `now`; returns the snapshots.
    pub fn expire(&mut self, now: Timestamp) -> Vec<Session> {
        if self.config.until_end_of_input {
            return Vec::new();
        }
        let hold = SignedDuration::from_secs(
            i64::try_from(self.config.accounting_hold_secs).unwrap_or(i64::MAX / 2),
        );
        let due: Vec<String> = self
            .records
            .values()
            .filter(|record| match record.phase {
                Phase::Held { since } => since.checked_add(hold).is_ok_and(|at| at <= now),
                Phase::Negotiating | Phase::Shown => false,
            })
            .map(|record| record.session_id.clone())
            .collect();
        for session_id in due {
            self.show(&session_id);
            self.stats.accounting_only += 1;
        }
        self.snapshots()
    }

    /// The end of the input (`tunnelwatch ingest`): held accounting is shown now, and logins
    /// still negotiating never became sessions.
    pub fn finish(&mut self, now: Timestamp) -> Vec<Session> {
        let pending: Vec<(String, Phase, bool)> = self
            .records
            .values()
            .filter(|record| !record.shown())
            .map(|record| {
                (
                    record.session_id.clone(),
                    record.phase,
                    record.accounting.seen,
                )
            })
            .collect();
        for (session_id, phase, accounted) in pending {
            match phase {
                Phase::Held { .. } => {
                    self.show(&session_id);
                    self.stats.accounting_only += 1;
                }
                Phase::Negotiating if accounted => self.show(&session_id),
                Phase::Negotiating => self.abandon(&session_id, now),
                Phase::Shown => {}
            }
        }
        self.snapshots()
    }

    /// Corrections of stored events decided since the last call.
    pub fn take_corrections(&mut self) -> Vec<SessionJoinUpdate> {
        std::mem::take(&mut self.corrections)
    }

    /// The logins being assembled, if they changed since the last call: to be stored with
    /// the batch that changed them, and handed to [`Sessionizer::restore`] after a restart.
    pub fn checkpoint(&mut self) -> Option<CollectorCheckpoint> {
        if !std::mem::take(&mut self.dirty) || self.config.until_end_of_input {
            return None;
        }
        let mut records: Vec<Record> = self
            .records
            .values()
            .filter(|record| !record.shown())
            .cloned()
            .collect();
        records.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            records,
            last_decided: self.last_decided,
        };
        match serde_json::to_value(&checkpoint) {
            Ok(value) => Some(CollectorCheckpoint(value)),
            Err(error) => {
                // Not expected (plain data); the next change tries again.
                tracing::error!(%error, "cannot encode the collector's checkpoint");
                self.dirty = true;
                None
            }
        }
    }

    fn snapshots(&mut self) -> Vec<Session> {
        let mut snapshots = Vec::new();
        self.changed_set.clear();
        for session_id in std::mem::take(&mut self.changed) {
            if let Some(record) = self.records.get_mut(&session_id)
                && record.shown()
            {
                record.version += 1;
                snapshots.push(record.session());
            }
        }
        snapshots
    }

    /// Applies one event and stamps it with its session id, if it has one.
    fn apply_one(&mut self, event: &mut Event, now: Timestamp) {
        let gateway = event.observer.hostname.clone();
        let at = event.timestamp;
        let session_id = match &event.body {
            EventBody::Auth(auth) => self.on_auth(&gateway, auth, at, now),
            EventBody::IkeSa(ike) => self.on_ike(&gateway, ike, at, now),
            EventBody::ChildSa(child) => self.on_child(&gateway, child, at),
            EventBody::VirtualIp(lease) => self.on_lease(&gateway, lease, at, now),
            EventBody::Session(accounting) => self.on_accounting(&gateway, accounting, at, now),
            EventBody::L2tp(_)
            | EventBody::Flow(_)
            | EventBody::ApiRequest(_)
            | EventBody::Certificate(_)
            | EventBody::PipelineError(_) => None,
        };
        if let Some(session_id) = &session_id
            && let Some(record) = self.records.get_mut(session_id)
        {
            record.stamp(event.id.to_string(), at);
        }
        event.session_id = session_id;
    }

    fn mark_changed(&mut self, session_id: &str) {
        if self.changed_set.insert(session_id.to_owned()) {
            self.changed.push(session_id.to_owned());
        }
    }

    /// Marks a record changed at event time `at`.
    fn touch(&mut self, session_id: &str, at: Timestamp) {
        if let Some(record) = self.records.get_mut(session_id) {
            record.updated = record.updated.max(at);
            if !record.shown() {
                self.dirty = true;
            }
            self.mark_changed(session_id);
        }
    }

    /// Lets `key` find `session_id` from now on.
    fn register(&mut self, session_id: &str, key: SaKey) {
        if let Some(record) = self.records.get_mut(session_id)
            && !record.keys.contains(&key)
        {
            record.keys.push(key.clone());
            if !record.shown() {
                self.dirty = true;
            }
        }
        self.by_sa.insert(key, session_id.to_owned());
    }

    /// `session_id` becomes (or stays) a row of `sessions`.
    fn show(&mut self, session_id: &str) {
        if let Some(record) = self.records.get_mut(session_id)
            && !record.shown()
        {
            record.phase = Phase::Shown;
            record.stamped.clear();
            self.dirty = true;
            self.mark_changed(session_id);
        }
    }

    /// Two records of one login become one: the shown one, else the VPN's, else `first`
    /// stays; what the other said and found it by moves over, and its stamped events are
    /// corrected. Returns the id that stays.
    fn merge(&mut self, first: String, second: String, now: Timestamp) -> String {
        let rank = |record: Option<&Record>| {
            record.map_or((false, false), |record| (record.shown(), record.vpn_made()))
        };
        let (keep, gone) = if rank(self.records.get(&second)) > rank(self.records.get(&first)) {
            (second, first)
        } else {
            (first, second)
        };
        let Some(gone_record) = self.records.remove(&gone) else {
            return keep;
        };
        if gone_record.shown() {
            // Not expected (only records not shown are merged): keep both rather than lose one.
            tracing::warn!(session_id = %gone, into = %keep, "two shown sessions of one login; kept apart");
            self.records.insert(gone.clone(), gone_record);
            return keep;
        }
        for key in &gone_record.keys {
            if self.by_sa.get(key) == Some(&gone) {
                self.register(&keep, key.clone());
            }
        }
        for session_id in self.by_accounting.values_mut() {
            if *session_id == gone {
                session_id.clone_from(&keep);
            }
        }
        self.correct(&gone_record.stamped, Some(&keep), now);
        if let Some(record) = self.records.get_mut(&keep) {
            record.vpn.merge(gone_record.vpn);
            record.accounting.merge(gone_record.accounting);
            record.version = record.version.max(gone_record.version);
            record.updated = record.updated.max(gone_record.updated);
            if !record.shown() {
                for stamp in gone_record.stamped {
                    record.stamp(stamp.event_id, stamp.timestamp);
                }
            }
        }
        self.dirty = true;
        let updated = self
            .records
            .get(&keep)
            .map_or(Timestamp::UNIX_EPOCH, |record| record.updated);
        self.touch(&keep, updated);
        keep
    }

    /// A login that never became a session goes; its stamped events are corrected to none.
    fn abandon(&mut self, session_id: &str, now: Timestamp) {
        let Some(record) = self.records.remove(session_id) else {
            return;
        };
        self.by_sa.retain(|_, holder| holder != session_id);
        self.by_accounting.retain(|_, holder| holder != session_id);
        self.correct(&record.stamped, None, now);
        if self.changed_set.remove(session_id) {
            self.changed.retain(|changed| changed != session_id);
        }
        self.stats.abandoned += 1;
        self.dirty = true;
    }

    fn correct(&mut self, stamped: &[Stamp], session_id: Option<&str>, now: Timestamp) {
        for stamp in stamped {
            // Strictly later than every earlier decision: the newest one wins in queries.
            let decided = match self.last_decided {
                Some(last) if last >= now => later_by(last, SignedDuration::from_micros(1)),
                _ => now,
            };
            self.last_decided = Some(decided);
            self.corrections.push(SessionJoinUpdate {
                target: JoinTarget::Events,
                event_id: stamp.event_id.clone(),
                timestamp: stamp.timestamp,
                session_id: session_id.map(str::to_owned),
                user_name: None,
                join: if session_id.is_some() {
                    SessionJoin::Late
                } else {
                    SessionJoin::Unmatched
                },
                decided,
            });
        }
    }

    /// Logins negotiating longer than [`PENDING_TTL_SECS`] (in their gateway's event time):
    /// shown if accounting reported them, else abandoned.
    fn settle_stale(&mut self, now: Timestamp) {
        let stale: Vec<(String, bool)> = self
            .records
            .values()
            .filter(|record| record.phase == Phase::Negotiating)
            .filter(|record| {
                self.high_water
                    .get(&record.gateway)
                    .is_some_and(|high_water| {
                        let began = record.vpn.first_seen.unwrap_or_else(|| record.start());
                        began.as_second() < high_water.as_second() - PENDING_TTL_SECS
                    })
            })
            .map(|record| (record.session_id.clone(), record.accounting.seen))
            .collect();
        for (session_id, accounted) in stale {
            if accounted {
                self.show(&session_id);
            } else {
                self.abandon(&session_id, now);
            }
        }
    }

    /// Forgets shown sessions ended longer than [`CLOSED_GRACE_SECS`] ago (in their
    /// gateway's event time), and IKE_SAs negotiating longer than [`PENDING_TTL_SECS`].
    fn evict(&mut self) {
        let evicted: HashSet<String> = self
            .records
            .values()
            .filter(|record| record.phase == Phase::Shown)
            .filter(|record| {
                self.high_water
                    .get(&record.gateway)
                    .is_some_and(|high_water| {
                        record.end().is_some_and(|end| {
                            end.as_second() < high_water.as_second() - CLOSED_GRACE_SECS
                        })
                    })
            })
            .map(|record| record.session_id.clone())
            .collect();
        if !evicted.is_empty() {
            self.records
                .retain(|session_id, _| !evicted.contains(session_id));
            self.by_sa
                .retain(|_, session_id| !evicted.contains(session_id));
            self.by_accounting
                .retain(|_, session_id| !evicted.contains(session_id));
        }
        let high_water = &self.high_water;
        self.connecting.retain(|key, since| {
            high_water.get(&key.0).is_none_or(|high_water| {
                since.as_second() >= high_water.as_second() - PENDING_TTL_SECS
            })
        });
    }
}

fn sa_key(gateway: &Option<String>, peer: &Peer) -> Option<SaKey> {
    let sa = match (peer.ike_sa_id, peer.client.ip) {
        (Some(id), _) => SaRef::Id(id),
        (None, Some(ip)) => SaRef::Client(ip),
        (None, None) => return None,
    };
    Some((gateway.clone(), sa))
}

/// Whether the event is about a session that must already exist (not a login or an IKE_SA
/// coming up, which start one).
fn about_a_session(body: &EventBody) -> bool {
    match body {
        EventBody::IkeSa(ike) => matches!(
            ike.change,
            SaChange::Rekeyed | SaChange::Deleted | SaChange::Lost
        ),
        EventBody::ChildSa(_) | EventBody::VirtualIp(_) | EventBody::Session(_) => true,
        EventBody::Auth(_)
        | EventBody::L2tp(_)
        | EventBody::Flow(_)
        | EventBody::ApiRequest(_)
        | EventBody::Certificate(_)
        | EventBody::PipelineError(_) => false,
    }
}

/// A session id that is the same whenever the same events are replayed: a hash of the
/// gateway, the key that first found the login and when it began (unique ids restart with
/// charon).
fn session_id_for(key: &SaKey, first_seen: Timestamp) -> String {
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(key.0.as_deref().unwrap_or("").as_bytes());
    bytes.push(0);
    match key.1 {
        SaRef::Id(id) => bytes.extend_from_slice(format!("id:{id}").as_bytes()),
        SaRef::Client(ip) => bytes.extend_from_slice(format!("client:{ip}").as_bytes()),
        SaRef::Accounting(hash) => bytes.extend_from_slice(format!("acct:{hash:016x}").as_bytes()),
        SaRef::VirtualIp(ip) => bytes.extend_from_slice(format!("vip:{ip}").as_bytes()),
    }
    bytes.push(0);
    bytes.extend_from_slice(&first_seen.as_microsecond().to_le_bytes());
    format!("s-{:016x}", model::hash::fnv1a(&bytes))
}

mod accounting;
mod record;
mod vpn;

#[cfg(test)]
mod tests;
