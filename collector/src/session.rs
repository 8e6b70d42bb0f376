//! Rebuilding VPN sessions from SA, auth and lease events: the [`Sessionizer`].
//!
//! A session begins when an IKE_SA is established and ends when the last IKE_SA of it is
//! deleted or lost. Rekeys replace the IKE_SA (with a new unique id) without ending the
//! session. Every event that belongs to a session gets its `session_id`, including the
//! successful auth that preceded the establishment.
//!
//! Several sources report the same session, and a session is one row whatever reports it:
//! RADIUS accounting (Start, Interim-Update, Stop) and pppd's own session lines fold into the
//! session the VPN's events built, found by the Acct-Session-Id, the IKE_SA id (strongSwan's
//! NAS-Port), or the virtual IP it held at that time, in any order of arrival. A candidate
//! that contradicts the accounting (another virtual IP, no user name in common: pppd's
//! NAS-Port is the PPP unit, not an IKE_SA) is not its session. What only accounting or pppd
//! reports (L2TP/PPP behind RADIUS) becomes a session of its own, keyed by the
//! Acct-Session-Id or the PPP address. Counters are the larger of the CHILD_SA sum and
//! accounting's totals; the VPN's terminate cause wins over accounting's.
//!
//! The sessionizer is pure and idempotent: applying an event twice (a batch the store could
//! not take and that came again) leaves the same sessions, because every change sets a value
//! rather than adding to one (byte counters are kept per CHILD_SA and summed).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;

use jiff::Timestamp;
use model::{
    AuthMethod, Counters, Event, EventBody, Identities, LeaseChange, Outcome, Peer, SaChange,
    Session, SessionState, TerminateCause,
};

/// How long a closed session stays in memory (in event time) for late events such as the
/// lease release that follows a delete.
const CLOSED_GRACE_SECS: i64 = 10 * 60;
/// How far accounting's times may be from the VPN's for the same session (RADIUS timestamps
/// are the NAS's clock or the receive time minus Acct-Delay-Time).
const ACCOUNTING_SLACK_SECS: i64 = 120;
/// How long an IKE_SA may stay half-open (in event time) before it is forgotten.
const PENDING_TTL_SECS: i64 = 60 * 60;

/// Which IKE_SA an event is about: its unique id, or only the client address when the log
/// did not say (charon without `ike_name`, before the id appeared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

/// An IKE_SA that is negotiating: no session yet.
#[derive(Debug, Clone)]
struct Pending {
    first_seen: Timestamp,
    identities: Identities,
    method: Option<AuthMethod>,
    client: model::Endpoint,
    virtual_ip: Option<IpAddr>,
    connection: Option<String>,
}

/// Session state kept beside the [`Session`] record.
#[derive(Debug, Clone, Default)]
struct Tracked {
    /// A session restored from a state file of an earlier version, which kept no counters
    /// per CHILD_SA: the counters it had, which the CHILD_SAs reported later add to.
    baseline: Option<Counters>,
    /// A restored session's counters: never shown less (accounting's totals, which the
    /// state does not keep apart, are in them).
    floor: Option<Counters>,
    /// The newest totals RADIUS accounting reported; the session shows, per counter, the
    /// larger of these and the CHILD_SA sum (both count the same traffic).
    accounting: Option<Counters>,
    /// Made by accounting and not (yet) seen by the VPN's own events: an IKE_SA connecting
    /// with its id is this session's own, not a sign that the daemon restarted.
    accounting_only: bool,
    /// Accounting said Stop (a second one is a repeat; the VPN's own end is not).
    accounting_stopped: bool,
    /// The VPN's events said the last IKE_SA went (deleted or lost).
    vpn_ended: bool,
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
}

/// Folds events into sessions.
#[derive(Debug, Default)]
pub struct Sessionizer {
    sessions: HashMap<String, (Session, Tracked)>,
    by_sa: HashMap<SaKey, String>,
    /// RADIUS Acct-Session-Id (per gateway) to session: kept across rekeys.
    by_accounting: HashMap<(Option<String>, String), String>,
    pending: HashMap<SaKey, Pending>,
    /// The newest event time seen, for eviction.
    high_water: Option<Timestamp>,
    stats: SessionStats,
}

impl Sessionizer {
    /// Starts from the sessions the store kept when the process last stopped: the open ones,
    /// which go on, and recently closed ones, which late and resent events (a RADIUS Stop, a
    /// lease release, accounting a gateway sends again) still find instead of starting a
    /// session of their own.
    pub fn new(known_sessions: Vec<Session>) -> Sessionizer {
        let mut sessionizer = Sessionizer::default();
        for session in known_sessions {
            for ike_sa_id in &session.ike_sa_ids {
                sessionizer.by_sa.insert(
                    (session.gateway.clone(), SaRef::Id(*ike_sa_id)),
                    session.session_id.clone(),
                );
            }
            if let Some(accounting_id) = &session.accounting_id {
                sessionizer.by_accounting.insert(
                    (session.gateway.clone(), accounting_id.clone()),
                    session.session_id.clone(),
                );
                if session.ike_sa_ids.is_empty() {
                    let hash = model::hash::fnv1a(accounting_id.as_bytes());
                    sessionizer.by_sa.insert(
                        (session.gateway.clone(), SaRef::Accounting(hash)),
                        session.session_id.clone(),
                    );
                }
            }
            // A CHILD_SA reported again replaces its counts; what the session counted stays.
            let mut tracked = Tracked::default();
            if session.child_sa_counters.is_empty() {
                tracked.baseline = Some(session.counters);
            } else {
                tracked.floor = Some(session.counters);
            }
            // Only accounting knows it if no authentication of the VPN's own was seen.
            tracked.accounting_only = session.accounting_id.is_some() && session.method.is_none();
            sessionizer.high_water = sessionizer.high_water.max(Some(session.updated));
            sessionizer
                .sessions
                .insert(session.session_id.clone(), (session, tracked));
        }
        sessionizer
    }

    /// Sessions in memory (open ones and recently closed ones).
    pub fn n_sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            sessions: self.sessions.len() as u64,
            ..self.stats.clone()
        }
    }

    /// Applies events in order, stamping each with its session id; returns a snapshot of
    /// every session that changed, each once.
    pub fn apply(&mut self, events: &mut [Event]) -> Vec<Session> {
        let mut changed: Vec<String> = Vec::new();
        for event in events.iter_mut() {
            if self
                .high_water
                .is_none_or(|high_water| event.timestamp > high_water)
            {
                self.high_water = Some(event.timestamp);
            }
            if let Some(session_id) = self.apply_one(event)
                && !changed.contains(&session_id)
            {
                changed.push(session_id);
            }
            if event.session_id.is_none() && about_a_session(&event.body) {
                self.stats.orphan_events += 1;
            }
        }
        let mut snapshots = Vec::with_capacity(changed.len());
        for session_id in &changed {
            if let Some((session, _)) = self.sessions.get_mut(session_id) {
                session.version += 1;
                snapshots.push(session.clone());
            }
        }
        self.evict();
        snapshots
    }

    /// Applies one event; returns the id of the session it changed, if any.
    fn apply_one(&mut self, event: &mut Event) -> Option<String> {
        let gateway = event.observer.hostname.clone();
        let timestamp = event.timestamp;
        match &event.body {
            EventBody::Auth(auth) => {
                let key = sa_key(&gateway, &auth.peer)?;
                if auth.outcome == Outcome::Failure {
                    return None;
                }
                let pending = self
                    .pending
                    .entry(key.clone())
                    .or_insert_with(|| Pending::new(timestamp, &auth.peer));
                pending.absorb(&auth.peer);
                pending.method = Some(auth.method);
                // The session is not there yet, but its id is already known.
                let session_id = session_id_for(&key, pending.first_seen);
                event.session_id = Some(session_id);
                None
            }
            EventBody::IkeSa(ike) => {
                let key = sa_key(&gateway, &ike.peer)?;
                match ike.change {
                    SaChange::Connecting => {
                        // Accounting (which can arrive first, even complete) already made
                        // this IKE_SA's session: it is not a new one.
                        let made_by_accounting = self
                            .by_sa
                            .get(&key)
                            .and_then(|session_id| self.sessions.get(session_id))
                            .is_some_and(|(session, tracked)| {
                                tracked.accounting_only
                                    && session.end.is_none_or(|end| timestamp <= end)
                                    && timestamp
                                        >= session.start - jiff::SignedDuration::from_secs(60)
                            });
                        if made_by_accounting {
                            return None;
                        }
                        // A new IKE_SA with the id of a session that is still open: the daemon
                        // restarted (it counts ids from 1 again) without saying goodbye to
                        // that session, which therefore ended by now.
                        let stale = match key.1 {
                            SaRef::Id(_) => self.open_session_of_key(&key).cloned().filter(|id| {
                                self.sessions
                                    .get(id)
                                    .is_some_and(|(_, tracked)| !tracked.accounting_only)
                            }),
                            SaRef::Client(_) | SaRef::Accounting(_) | SaRef::VirtualIp(_) => None,
                        };
                        if let Some(stale_id) = &stale
                            && let Some((session, _)) = self.sessions.get_mut(stale_id)
                        {
                            session.state = SessionState::Lost;
                            session.cause = Some(TerminateCause::Other);
                            session.end = Some(timestamp.max(session.start));
                            session.updated = session.updated.max(timestamp);
                        }
                        if stale.is_some() || self.open_session_of_key(&key).is_none() {
                            self.by_sa.remove(&key);
                            self.pending.insert(key, Pending::new(timestamp, &ike.peer));
                        }
                        stale
                    }
                    SaChange::Established => {
                        let session_id = self.establish(key, &ike.peer, timestamp);
                        event.session_id = Some(session_id.clone());
                        Some(session_id)
                    }
                    SaChange::Rekeyed => {
                        let session_id = self.by_sa.get(&key)?.clone();
                        event.session_id = Some(session_id.clone());
                        let new_id = ike.new_ike_sa_id?;
                        self.by_sa
                            .insert((gateway, SaRef::Id(new_id)), session_id.clone());
                        let (session, _) = self.sessions.get_mut(&session_id)?;
                        if !session.ike_sa_ids.contains(&new_id) {
                            session.ike_sa_ids.push(new_id);
                            session.rekey_count += 1;
                        }
                        session.updated = session.updated.max(timestamp);
                        Some(session_id)
                    }
                    SaChange::Deleted | SaChange::Lost => {
                        let Some(session_id) = self.by_sa.get(&key).cloned() else {
                            self.pending.remove(&key);
                            return None;
                        };
                        event.session_id = Some(session_id.clone());
                        let (session, tracked) = self.sessions.get_mut(&session_id)?;
                        // Deleting an IKE_SA that a rekey replaced does not end the session.
                        if let SaRef::Id(id) = key.1
                            && session.ike_sa_ids.last() != Some(&id)
                        {
                            return None;
                        }
                        if tracked.vpn_ended {
                            self.stats.repeated_ends += 1;
                        }
                        tracked.vpn_ended = true;
                        if ike.change == SaChange::Lost {
                            session.state = SessionState::Lost;
                            session.cause = Some(ike.cause.unwrap_or(TerminateCause::LostService));
                        } else {
                            session.state = SessionState::Closed;
                            session.cause = ike.cause.or(session.cause);
                        }
                        session.end = Some(session.end.map_or(timestamp, |end| end.min(timestamp)));
                        session.updated = session.updated.max(timestamp);
                        Some(session_id)
                    }
                }
            }
            EventBody::ChildSa(child) => {
                let session_id = self.session_of(&gateway, &child.peer)?;
                event.session_id = Some(session_id.clone());
                let (session, tracked) = self.sessions.get_mut(&session_id)?;
                if let (Some(child_id), Some(counters)) = (child.child_sa_id, child.counters) {
                    session.child_sa_counters.insert(child_id, counters);
                    session.counters = tracked.counters(session);
                    session.updated = session.updated.max(timestamp);
                    return Some(session_id);
                }
                None
            }
            EventBody::VirtualIp(vip) => {
                if vip.change == LeaseChange::Assigned
                    && let Some(key) = sa_key(&gateway, &vip.peer)
                    && let Some(pending) = self.pending.get_mut(&key)
                {
                    pending.virtual_ip = Some(vip.ip);
                    pending.absorb(&vip.peer);
                    event.session_id = Some(session_id_for(&key, pending.first_seen));
                    return None;
                }
                let session_id = self
                    .session_of(&gateway, &vip.peer)
                    .or_else(|| self.session_by_virtual_ip(&gateway, vip.ip))?;
                event.session_id = Some(session_id.clone());
                let (session, _) = self.sessions.get_mut(&session_id)?;
                if vip.change == LeaseChange::Assigned && session.virtual_ip != Some(vip.ip) {
                    session.virtual_ip = Some(vip.ip);
                    session.updated = session.updated.max(timestamp);
                    return Some(session_id);
                }
                None
            }
            EventBody::Session(accounting) => {
                let session_id = self.account(&gateway, accounting, timestamp)?;
                event.session_id = Some(session_id.clone());
                Some(session_id)
            }
            EventBody::L2tp(_)
            | EventBody::Flow(_)
            | EventBody::ApiRequest(_)
            | EventBody::PipelineError(_) => None,
        }
    }

    /// RADIUS accounting (Start, Interim-Update, Stop) for a session: folded into the session
    /// the VPN's own events built when there is one (same gateway and IKE_SA id, strongSwan's
    /// NAS-Port; else the open session holding the framed address), so a session is one row
    /// whichever sources report it. Otherwise accounting makes the session itself (pppd/L2TP
    /// behind RADIUS), and the VPN's events, if they come later, join it by the same key.
    fn account(
        &mut self,
        gateway: &Option<String>,
        accounting: &model::SessionEvent,
        timestamp: Timestamp,
    ) -> Option<String> {
        let by_accounting_id = accounting
            .accounting_id
            .as_ref()
            .map(|accounting_id| (gateway.clone(), accounting_id.clone()));
        // A key of the accounting's own: its Acct-Session-Id, else (pppd's log) the PPP
        // link's address, unique among the gateway's open sessions.
        let own_key = match (&accounting.accounting_id, accounting.virtual_ip) {
            (Some(accounting_id), _) => Some((
                gateway.clone(),
                SaRef::Accounting(model::hash::fnv1a(accounting_id.as_bytes())),
            )),
            (None, Some(ip)) => Some((gateway.clone(), SaRef::VirtualIp(ip))),
            (None, None) => None,
        };
        // A session is this accounting's unless it contradicts it, or the accounting starts
        // after it ended (IKE_SA ids restart with the daemon; addresses go back to the pool).
        let fits = |session_id: &String| {
            self.sessions.get(session_id).is_some_and(|(session, _)| {
                agrees(session, accounting)
                    && !(accounting.change == model::SessionChange::Start
                        && session.end.is_some_and(|end| end < timestamp))
            })
        };
        // NAS-Port is the IKE_SA's unique id for strongSwan; pppd's RADIUS plugin puts the
        // PPP unit there, which may equal an unrelated IKE_SA's id: `fits` tells them apart.
        let id_key = accounting
            .peer
            .ike_sa_id
            .map(|id| (gateway.clone(), SaRef::Id(id)));
        let by_id = id_key.as_ref().and_then(|key| self.by_sa.get(key)).cloned();
        let existing = by_accounting_id
            .as_ref()
            .and_then(|id| self.by_accounting.get(id).cloned())
            .filter(|session_id| fits(session_id))
            .or_else(|| by_id.clone().filter(|session_id| fits(session_id)))
            .or_else(|| {
                own_key
                    .as_ref()
                    .and_then(|key| self.by_sa.get(key).cloned())
                    .filter(|session_id| fits(session_id))
            })
            .or_else(|| {
                // The session holding the framed address at that time: an open one, or one
                // that ended after it (the VPN said so first), or moments before it for an
                // update or a stop.
                let ip = accounting.virtual_ip?;
                let session_id = self.session_by_virtual_ip(gateway, ip)?;
                let (session, _) = self.sessions.get(&session_id)?;
                let slack = jiff::SignedDuration::from_secs(ACCOUNTING_SLACK_SECS);
                let after = match accounting.change {
                    model::SessionChange::Start => jiff::SignedDuration::ZERO,
                    _ => slack,
                };
                let covers = session.state.is_open()
                    || (timestamp >= session.start - slack
                        && session.end.is_some_and(|end| timestamp <= end + after));
                (covers && agrees(session, accounting)).then_some(session_id)
            });
        // The key a new session is found by: the IKE_SA id unless another session holds it
        // now (one that ended before is a daemon restart's reuse: the id is free again).
        let id_free = by_id.as_ref().is_none_or(|session_id| {
            self.sessions
                .get(session_id)
                .is_none_or(|(session, _)| session.end.is_some_and(|end| end < timestamp))
        });
        let key = match (id_key, own_key) {
            (Some(id_key), _) if id_free => id_key,
            (_, Some(own_key)) => own_key,
            (Some(id_key), None) => id_key,
            (None, None) => sa_key(gateway, &accounting.peer)?,
        };
        let session_id = match existing {
            Some(session_id) => session_id,
            None => {
                // Accounting counts from the session's start.
                let start = accounting
                    .duration_secs
                    .and_then(|secs| i64::try_from(secs).ok())
                    .map_or(timestamp, |secs| {
                        timestamp
                            .checked_sub(jiff::SignedDuration::from_secs(secs))
                            .unwrap_or(timestamp)
                    });
                let session_id = session_id_for(&key, start);
                let session = Session {
                    connection: accounting.peer.connection.clone(),
                    identities: accounting.peer.identities.clone(),
                    client: accounting.peer.client,
                    virtual_ip: accounting.virtual_ip,
                    version: self
                        .sessions
                        .get(&session_id)
                        .map_or(0, |(previous, _)| previous.version),
                    updated: timestamp,
                    ..opened(&key, session_id.clone(), start)
                };
                let tracked = Tracked {
                    accounting_only: true,
                    ..Tracked::default()
                };
                self.sessions.insert(session_id.clone(), (session, tracked));
                self.by_sa.insert(key.clone(), session_id.clone());
                session_id
            }
        };
        self.by_sa.entry(key).or_insert_with(|| session_id.clone());
        if let Some(by_accounting_id) = by_accounting_id {
            self.by_accounting
                .entry(by_accounting_id)
                .or_insert_with(|| session_id.clone());
        }
        let (session, tracked) = self.sessions.get_mut(&session_id)?;
        if session.accounting_id.is_none() {
            session.accounting_id.clone_from(&accounting.accounting_id);
        }
        session.identities.merge_from(&accounting.peer.identities);
        session.virtual_ip = session.virtual_ip.or(accounting.virtual_ip);
        if session.client.ip.is_none() {
            session.client = accounting.peer.client;
        }
        if let Some(counters) = accounting.counters {
            tracked.accounting = Some(counters);
            session.counters = tracked.counters(session);
        }
        if accounting.change == model::SessionChange::Stop {
            if tracked.accounting_stopped {
                self.stats.repeated_ends += 1;
            }
            tracked.accounting_stopped = true;
            session.cause = session.cause.or(accounting.cause);
            if session.state.is_open() {
                session.state = SessionState::Closed;
            }
            session.end = Some(session.end.map_or(timestamp, |end| end.min(timestamp)));
        }
        session.updated = session.updated.max(timestamp);
        Some(session_id)
    }

    fn open_session_of_key(&self, key: &SaKey) -> Option<&String> {
        self.by_sa.get(key).filter(|session_id| {
            self.sessions
                .get(*session_id)
                .is_some_and(|(session, _)| session.state.is_open())
        })
    }

    fn establish(&mut self, key: SaKey, peer: &Peer, timestamp: Timestamp) -> String {
        if let Some(session_id) = self.by_sa.get(&key) {
            // Established again (a replayed event) or an id reused after a restart.
            let reused = self
                .sessions
                .get(session_id)
                .is_some_and(|(session, _)| session.end.is_some_and(|end| end < timestamp));
            if !reused {
                let session_id = session_id.clone();
                // Accounting may have made it first: add what the VPN knows.
                let pending = self.pending.remove(&key);
                if let Some((session, tracked)) = self.sessions.get_mut(&session_id) {
                    tracked.accounting_only = false;
                    session.identities.merge_from(&peer.identities);
                    if session.connection.is_none() {
                        session.connection.clone_from(&peer.connection);
                    }
                    if session.client.ip.is_none() {
                        session.client = peer.client;
                    }
                    if let Some(pending) = pending {
                        session.identities.merge_from(&pending.identities);
                        session.method = session.method.or(pending.method);
                        session.virtual_ip = session.virtual_ip.or(pending.virtual_ip);
                    }
                }
                return session_id;
            }
            self.by_sa.remove(&key);
        }
        // The auth and lease lines may have been keyed by the client address only.
        let client_key = peer.client.ip.map(|ip| (key.0.clone(), SaRef::Client(ip)));
        let mut pending = self.pending.remove(&key);
        if let Some(client_key) = &client_key
            && let Some(by_client) = self.pending.remove(client_key)
        {
            match &mut pending {
                Some(pending) => pending.merge(by_client),
                None => pending = Some(by_client),
            }
        }
        let pending = pending.unwrap_or_else(|| Pending::new(timestamp, peer));
        let session_id = session_id_for(&key, pending.first_seen);
        let mut identities = peer.identities.clone();
        identities.merge_from(&pending.identities);
        let mut session = Session {
            connection: peer.connection.clone().or(pending.connection),
            identities,
            method: pending.method,
            client: if peer.client.ip.is_some() {
                peer.client
            } else {
                pending.client
            },
            virtual_ip: pending.virtual_ip,
            ..opened(&key, session_id.clone(), timestamp)
        };
        // Re-establishing an id this sessionizer already had (a replay): versions go on.
        if let Some((previous, _)) = self.sessions.get(&session_id) {
            session.version = previous.version;
        }
        self.by_sa.insert(key, session_id.clone());
        if let Some(client_key) = client_key {
            self.by_sa
                .entry(client_key)
                .or_insert_with(|| session_id.clone());
        }
        self.sessions
            .insert(session_id.clone(), (session, Tracked::default()));
        session_id
    }

    fn session_of(&self, gateway: &Option<String>, peer: &Peer) -> Option<String> {
        let key = sa_key(gateway, peer)?;
        self.by_sa.get(&key).cloned()
    }

    /// The open session holding a virtual IP on a gateway (the newest, if several).
    fn session_by_virtual_ip(&self, gateway: &Option<String>, ip: IpAddr) -> Option<String> {
        self.sessions
            .values()
            .filter(|(session, _)| &session.gateway == gateway && session.virtual_ip == Some(ip))
            .max_by_key(|(session, _)| (session.state.is_open(), session.start))
            .map(|(session, _)| session.session_id.clone())
    }

    fn evict(&mut self) {
        let Some(high_water) = self.high_water else {
            return;
        };
        let closed_before = high_water.as_second() - CLOSED_GRACE_SECS;
        let evicted: HashSet<String> = self
            .sessions
            .values()
            .filter(|(session, _)| {
                session
                    .end
                    .is_some_and(|end| end.as_second() < closed_before)
            })
            .map(|(session, _)| session.session_id.clone())
            .collect();
        if !evicted.is_empty() {
            for session_id in &evicted {
                self.sessions.remove(session_id);
            }
            self.by_sa
                .retain(|_, session_id| !evicted.contains(session_id));
            self.by_accounting
                .retain(|_, session_id| !evicted.contains(session_id));
        }
        let pending_before = high_water.as_second() - PENDING_TTL_SECS;
        self.pending
            .retain(|_, pending| pending.first_seen.as_second() >= pending_before);
    }
}

impl Pending {
    fn new(first_seen: Timestamp, peer: &Peer) -> Pending {
        Pending {
            first_seen,
            identities: peer.identities.clone(),
            method: None,
            client: peer.client,
            virtual_ip: None,
            connection: peer.connection.clone(),
        }
    }

    fn absorb(&mut self, peer: &Peer) {
        self.identities.merge_from(&peer.identities);
        if peer.client.ip.is_some() {
            self.client = peer.client;
        }
        if self.connection.is_none() {
            self.connection.clone_from(&peer.connection);
        }
    }

    fn merge(&mut self, other: Pending) {
        self.first_seen = self.first_seen.min(other.first_seen);
        self.identities.merge_from(&other.identities);
        self.method = self.method.or(other.method);
        self.virtual_ip = self.virtual_ip.or(other.virtual_ip);
        if self.client.ip.is_none() {
            self.client = other.client;
        }
        if self.connection.is_none() {
            self.connection = other.connection;
        }
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
        | EventBody::PipelineError(_) => false,
    }
}

/// Whether accounting can be about this session: the same virtual IP when both know one,
/// else a user name the session knows (or no names to compare).
fn agrees(session: &Session, accounting: &model::SessionEvent) -> bool {
    if let (Some(ours), Some(theirs)) = (session.virtual_ip, accounting.virtual_ip) {
        return ours == theirs;
    }
    fn names(ids: &Identities) -> [Option<&str>; 3] {
        [
            ids.ike_id.as_deref(),
            ids.eap_id.as_deref(),
            ids.xauth_id.as_deref(),
        ]
    }
    let ours = names(&session.identities);
    let theirs = names(&accounting.peer.identities);
    let known = |all: &[Option<&str>; 3]| all.iter().any(Option::is_some);
    !known(&ours)
        || !known(&theirs)
        || theirs
            .iter()
            .flatten()
            .any(|name| ours.iter().flatten().any(|our| our == name))
}

impl Tracked {
    /// What `session` counted: the CHILD_SAs' sum (on top of a baseline from an older state
    /// file), or accounting's totals or the restored counters where those are larger.
    fn counters(&self, session: &Session) -> Counters {
        let mut children = sum_counters(session.child_sa_counters.values());
        if let Some(baseline) = self.baseline {
            children = sum_counters([children, baseline].iter());
        }
        larger(larger(children, self.accounting), self.floor)
    }
}

/// Per counter, the larger of the two.
fn larger(one: Counters, other: Option<Counters>) -> Counters {
    let Some(other) = other else {
        return one;
    };
    let max = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Counters {
        bytes_in: one.bytes_in.max(other.bytes_in),
        bytes_out: one.bytes_out.max(other.bytes_out),
        packets_in: max(one.packets_in, other.packets_in),
        packets_out: max(one.packets_out, other.packets_out),
    }
}

fn sum_counters<'a>(all: impl Iterator<Item = &'a Counters>) -> Counters {
    let mut total = Counters::default();
    for counters in all {
        total.bytes_in += counters.bytes_in;
        total.bytes_out += counters.bytes_out;
        total.packets_in = add_optional(total.packets_in, counters.packets_in);
        total.packets_out = add_optional(total.packets_out, counters.packets_out);
    }
    total
}

fn add_optional(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// A session that opened at `start`, found by `key`, with nothing else known yet.
fn opened(key: &SaKey, session_id: String, start: Timestamp) -> Session {
    Session {
        session_id,
        gateway: key.0.clone(),
        connection: None,
        ike_sa_ids: match key.1 {
            SaRef::Id(id) => vec![id],
            SaRef::Client(_) | SaRef::Accounting(_) | SaRef::VirtualIp(_) => Vec::new(),
        },
        identities: Identities::default(),
        method: None,
        client: model::Endpoint::default(),
        client_geo: None,
        virtual_ip: None,
        start,
        end: None,
        state: SessionState::Active,
        cause: None,
        counters: Counters::default(),
        child_sa_counters: BTreeMap::new(),
        rekey_count: 0,
        accounting_id: None,
        version: 0,
        updated: start,
    }
}

/// A session id that is the same whenever the same events are replayed: a hash of the
/// gateway, the first IKE_SA and when it was first seen (unique ids restart with charon).
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

#[cfg(test)]
mod tests;
