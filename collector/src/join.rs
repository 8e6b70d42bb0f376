//! Joining flows and API requests to the VPN session behind their client address: the
//! [`Joiner`].
//!
//! Virtual IPs come from a pool and are handed to the next user when a session ends, so the
//! join is an interval lookup: the session whose virtual IP was the address *at the time of
//! the event*. Each address has a list of leases (session, start, end or open) built from
//! session snapshots. An event at `t` joins the lease that contains `t`, else the nearest
//! one within the clock-skew tolerance; several containing leases (the sources disagree by
//! a little) are decided for the one that started last. The answer depends only on the set
//! of leases, never on the order in which they arrived.
//!
//! Sessions can arrive after the events they explain (another agent, an outage). An event
//! that found no session, or whose answer a session still to come could change (it lies
//! within the tolerance of a lease's end, or inside an open lease), is remembered as
//! pending. When a session arrives or changes, the pending events of its address are looked
//! up again and every changed answer becomes a [`SessionJoinUpdate`] for the store. Pending
//! events are forgotten once no late session can change them any more: matched ones when the
//! newest event time is four tolerances past them, unmatched ones after `late_join_secs`.
//! The number pending is bounded (`max_pending`): matched events are forgotten before
//! unmatched ones, the oldest first, and counted.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;
use model::{Event, EventBody, JoinTarget, Session, SessionJoin, SessionJoinUpdate};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// `[collector.join]` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JoinConfig {
    /// How far apart the clocks of the VPN gateway and the API's log may be: an event this
    /// much before a session's start or after its end still joins it.
    pub clock_skew_secs: u64,
    /// The VPN's virtual IP pools. Addresses outside them are marked `not_vpn` and not looked
    /// up. Empty: any address may be a virtual IP.
    pub vpn_pool: Vec<IpNet>,
    /// How long an unmatched event waits for its session to arrive late (event time).
    pub late_join_secs: u64,
    /// How long an ended session's lease is kept for events that arrive late (event time).
    pub lease_retention_secs: u64,
    /// Events remembered for a late join, at most.
    pub max_pending: usize,
}

impl Default for JoinConfig {
    fn default() -> JoinConfig {
        JoinConfig {
            clock_skew_secs: 5,
            vpn_pool: Vec::new(),
            late_join_secs: 3600,
            lease_retention_secs: 24 * 3600,
            max_pending: 500_000,
        }
    }
}

impl JoinConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.clock_skew_secs > 3600 {
            return Err(format!(
                "clock_skew_secs = {} is more than an hour: virtual IPs would be confused across users",
                self.clock_skew_secs
            ));
        }
        if self.max_pending == 0 {
            return Err("max_pending must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Counts of what the joiner decided, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JoinStats {
    pub matched: u64,
    pub unmatched: u64,
    pub not_vpn: u64,
    /// Corrections sent to the store (late sessions, better fits).
    pub late_updates: u64,
    /// Pending events forgotten because `max_pending` was reached (matched events that a
    /// late session might still have taken go first).
    pub pending_dropped: u64,
    /// Of those, unmatched events: no late session can join them any more.
    pub unmatched_dropped: u64,
    /// Pending events now.
    pub pending: u64,
    /// Leases (sessions with a virtual IP) known now.
    pub leases: u64,
    /// Stored unmatched events not taken back at a restart: an unreadable event id, or no
    /// address in the VPN pool (the pool changed).
    pub restore_skipped: u64,
}

#[derive(Debug, Clone)]
struct Lease {
    start: i64,
    /// `i64::MAX` while the session is open.
    end: i64,
    session_id: Arc<str>,
    user_name: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
struct Pending {
    at: i64,
    /// The event's id, formatted only if a correction is sent.
    source: Arc<str>,
    seq: u64,
    part: u16,
    target: JoinTarget,
    timestamp: Timestamp,
    /// The session it is joined to now, if any.
    current: Option<Arc<str>>,
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The session an event joined: its id and user name.
type Joined = (Arc<str>, Option<Arc<str>>);

/// Everything about one address: its leases (sorted by start) and the events on it that a
/// late session could still change, in arrival order. One hash lookup per event.
#[derive(Debug, Default)]
struct Address {
    /// Most addresses have had one session lately: keep it inline (one cache miss less).
    leases: SmallVec<[Lease; 1]>,
    /// Matched events a late session could still take (they wait a few tolerances).
    tentative: VecDeque<Pending>,
    /// Events that found no session (they wait `late_join_secs`).
    unmatched: VecDeque<Pending>,
}

impl Address {
    fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.tentative.is_empty() && self.unmatched.is_empty()
    }

    /// Forgets pending events older than the thresholds (from the front: arrival order is
    /// close to time order; a straggler behind a newer entry waits for its turn). Returns
    /// how many were forgotten.
    fn forget_settled(&mut self, tentative_before: i64, unmatched_before: i64) -> (usize, usize) {
        let mut forgotten = (0, 0);
        while self
            .tentative
            .front()
            .is_some_and(|p| p.at < tentative_before)
        {
            self.tentative.pop_front();
            forgotten.0 += 1;
        }
        while self
            .unmatched
            .front()
            .is_some_and(|p| p.at < unmatched_before)
        {
            self.unmatched.pop_front();
            forgotten.1 += 1;
        }
        forgotten
    }

    /// The lease at `at`: the containing one that started last, else the nearest within
    /// the tolerance `skew` (ties: the one that started last).
    fn lookup(&self, skew: i64, at: i64) -> Option<&Lease> {
        let list = &self.leases[..];
        // Leases starting after `at + skew` cannot qualify.
        let upto = list.partition_point(|lease| lease.start.saturating_sub(skew) <= at);
        let mut best: Option<(&Lease, i64)> = None;
        for lease in list[..upto].iter().rev() {
            let distance = if at < lease.start {
                lease.start - at
            } else if at > lease.end {
                at - lease.end
            } else {
                0
            };
            if distance > skew {
                continue;
            }
            // Walking backwards: a later start was seen first and wins ties.
            if best.is_none_or(|(_, best_distance)| distance < best_distance) {
                best = Some((lease, distance));
            }
            if distance == 0 {
                break;
            }
        }
        best.map(|(lease, _)| lease)
    }

    /// Whether a session still to come could change the answer `current` for `at`.
    fn may_change(&self, skew: i64, at: i64, current: Option<&Lease>) -> bool {
        let Some(lease) = current else {
            return true;
        };
        // Deep inside a closed lease, nothing can take the event away; near its edges, or in
        // an open lease (whose end is still to come), a later session might.
        lease.end == i64::MAX
            || at < lease.start.saturating_add(skew)
            || at > lease.end.saturating_sub(skew)
    }
}

/// How often (event time) all addresses are swept, and leases expired.
const SWEEP_NS: i64 = 60_000_000_000;
const LEASE_SWEEP_NS: i64 = 60_000_000_000;

/// The interval join. See the module docs.
#[derive(Debug)]
pub struct Joiner {
    config: JoinConfig,
    skew_ns: i64,
    addresses: Map<IpAddr, Address>,
    /// Where each session's lease is, to move or update it.
    lease_of: Map<Arc<str>, IpAddr>,
    n_tentative: usize,
    n_unmatched: usize,
    /// The newest event time seen.
    high_water: i64,
    last_sweep: i64,
    last_lease_sweep: i64,
    last_source: Option<Arc<str>>,
    stats: JoinStats,
}

impl Joiner {
    /// Starts with the sessions known at start-up (open ones, and recently closed ones).
    pub fn new(config: JoinConfig, sessions: &[Session]) -> Joiner {
        let skew_ns = secs(config.clock_skew_secs);
        let mut joiner = Joiner {
            config,
            skew_ns,
            addresses: Map::default(),
            lease_of: Map::default(),
            n_tentative: 0,
            n_unmatched: 0,
            high_water: i64::MIN,
            last_sweep: i64::MIN,
            last_lease_sweep: i64::MIN,
            last_source: None,
            stats: JoinStats::default(),
        };
        joiner.update_sessions(sessions, Timestamp::UNIX_EPOCH);
        joiner
    }

    pub fn stats(&self) -> JoinStats {
        let mut stats = self.stats.clone();
        stats.pending = (self.n_tentative + self.n_unmatched) as u64;
        stats.leases = self.lease_of.len() as u64;
        stats
    }

    /// Takes in new session snapshots; returns corrections for pending events whose answer
    /// changed. `decided` stamps the corrections (the newest one wins in the store).
    pub fn update_sessions(
        &mut self,
        sessions: &[Session],
        decided: Timestamp,
    ) -> Vec<SessionJoinUpdate> {
        let mut touched: Vec<IpAddr> = Vec::new();
        for session in sessions {
            let session_id: Arc<str> = Arc::from(session.session_id.as_str());
            // Remove the old lease of this session (its address or times may have changed).
            if let Some(old_ip) = self.lease_of.remove(&session_id) {
                if let Some(address) = self.addresses.get_mut(&old_ip) {
                    address
                        .leases
                        .retain(|lease| lease.session_id != session_id);
                }
                touched.push(old_ip);
            }
            let Some(ip) = session.virtual_ip else {
                continue;
            };
            let user_name = session.user_name().map(Arc::from);
            touched.push(self.insert_lease(session_id, user_name, ip, session.start, session.end));
        }
        self.rejoin_all(touched, decided)
    }

    /// After a restart: the leases and the unmatched events the store kept (see
    /// [`model::JoinRestart`]), so that late events still find sessions that ended before the
    /// restart, and sessions that arrive after it still claim the events stored before. Leases
    /// of sessions this joiner already knows (it started with them) are left alone. Returns
    /// the corrections due already: an unmatched event a restored lease covers.
    pub fn restore(
        &mut self,
        restart: model::JoinRestart,
        decided: Timestamp,
    ) -> Vec<SessionJoinUpdate> {
        let mut touched: Vec<IpAddr> = Vec::new();
        for lease in restart.leases {
            let session_id: Arc<str> = Arc::from(lease.session_id.as_str());
            if self.lease_of.contains_key(&session_id) {
                continue;
            }
            let user_name = lease.user_name.as_deref().map(Arc::from);
            touched.push(self.insert_lease(
                session_id,
                user_name,
                lease.virtual_ip,
                lease.start,
                lease.end,
            ));
        }
        for stored in restart.unmatched {
            let Some(id) = model::EventId::parse(&stored.event_id) else {
                self.stats.restore_skipped += 1;
                continue;
            };
            let pool = &self.config.vpn_pool;
            let Some(ip) = stored
                .addresses
                .into_iter()
                .flatten()
                .map(canonical)
                .find(|ip| pool.is_empty() || pool.iter().any(|net| net.contains(ip)))
            else {
                self.stats.restore_skipped += 1;
                continue;
            };
            let at = nanos(stored.at);
            self.high_water = self.high_water.max(at);
            let source = self.interned_source(&id.source);
            self.addresses
                .entry(ip)
                .or_default()
                .unmatched
                .push_back(Pending {
                    at,
                    source,
                    seq: id.seq,
                    part: id.part,
                    target: stored.target,
                    timestamp: stored.timestamp,
                    current: None,
                });
            self.n_unmatched += 1;
            touched.push(ip);
        }
        let updates = self.rejoin_all(touched, decided);
        if self.n_tentative + self.n_unmatched > self.config.max_pending {
            self.shed();
        }
        updates
    }

    /// Adds a session's lease of `ip`; returns the (canonical) address.
    fn insert_lease(
        &mut self,
        session_id: Arc<str>,
        user_name: Option<Arc<str>>,
        ip: IpAddr,
        start: Timestamp,
        end: Option<Timestamp>,
    ) -> IpAddr {
        let ip = canonical(ip);
        let start = nanos(start);
        let end = end.map_or(i64::MAX, end_of_logged_second).max(start);
        let lease = Lease {
            start,
            end,
            session_id: session_id.clone(),
            user_name,
        };
        let list = &mut self.addresses.entry(ip).or_default().leases;
        let at =
            list.partition_point(|other| (other.start, &*other.session_id) < (start, &*session_id));
        list.insert(at, lease);
        self.lease_of.insert(session_id, ip);
        ip
    }

    fn rejoin_all(
        &mut self,
        mut touched: Vec<IpAddr>,
        decided: Timestamp,
    ) -> Vec<SessionJoinUpdate> {
        touched.sort();
        touched.dedup();
        let mut updates = Vec::new();
        for ip in touched {
            self.rejoin(ip, decided, &mut updates);
        }
        updates
    }

    /// Joins every flow and API request in `events` (other events are left alone).
    pub fn join_events(&mut self, events: &mut [Event]) {
        for event in events.iter_mut() {
            let (target, at, candidates) = match &event.body {
                EventBody::Flow(flow) => (
                    JoinTarget::Flows,
                    nanos(flow.start),
                    [flow.source.ip, flow.destination.ip],
                ),
                EventBody::ApiRequest(request) => (
                    JoinTarget::ApiRequests,
                    nanos(event.timestamp),
                    [request.client_ip, None],
                ),
                _ => continue,
            };
            self.high_water = self.high_water.max(at);
            let (join, lease) = self.join_one(candidates, at, &event.id, target, event.timestamp);
            match join {
                SessionJoin::Matched => self.stats.matched += 1,
                SessionJoin::Unmatched => self.stats.unmatched += 1,
                SessionJoin::NotVpn => self.stats.not_vpn += 1,
                SessionJoin::Late => {}
            }
            let (session_id, user_name) = match lease {
                Some((session_id, user_name)) => (
                    Some(String::from(&*session_id)),
                    user_name.as_deref().map(str::to_owned),
                ),
                None => (None, None),
            };
            event.session_id = session_id;
            match &mut event.body {
                EventBody::Flow(flow) => {
                    flow.user_name = user_name;
                    flow.session_join = Some(join);
                }
                EventBody::ApiRequest(request) => {
                    request.user_name = user_name;
                    request.session_join = Some(join);
                }
                _ => {}
            }
        }
        self.sweep();
    }

    /// Decides one event: which of its addresses is the VPN's, the lease, and whether to
    /// remember it for a late join. One hash lookup when the address has a session.
    fn join_one(
        &mut self,
        candidates: [Option<IpAddr>; 2],
        at: i64,
        id: &model::EventId,
        target: JoinTarget,
        timestamp: Timestamp,
    ) -> (SessionJoin, Option<Joined>) {
        let skew = self.skew_ns;
        let source = self.interned_source(&id.source);
        let pending = |current: Option<Arc<str>>| Pending {
            at,
            source,
            seq: id.seq,
            part: id.part,
            target,
            timestamp,
            current,
        };
        let mut first_vpn = None;
        let mut matched = None;
        for ip in candidates.into_iter().flatten() {
            let ip = canonical(ip);
            let pool = &self.config.vpn_pool;
            if !pool.is_empty() && !pool.iter().any(|net| net.contains(&ip)) {
                continue;
            }
            first_vpn.get_or_insert(ip);
            if let Some(address) = self.addresses.get_mut(&ip)
                && let Some(lease) = address.lookup(skew, at)
            {
                let joined: Joined = (lease.session_id.clone(), lease.user_name.clone());
                let wait = address.may_change(skew, at, Some(lease));
                matched = Some((ip, joined, wait));
                break;
            }
        }
        let (ip, join, joined, wait) = match matched {
            Some((ip, joined, wait)) => (ip, SessionJoin::Matched, Some(joined), wait),
            None => match first_vpn {
                Some(ip) => (ip, SessionJoin::Unmatched, None, true),
                None => return (SessionJoin::NotVpn, None),
            },
        };
        if !wait {
            return (join, joined);
        }
        let address = self.addresses.entry(ip).or_default();
        match &joined {
            Some((session_id, _)) => {
                address
                    .tentative
                    .push_back(pending(Some(session_id.clone())));
                self.n_tentative += 1;
            }
            None => {
                address.unmatched.push_back(pending(None));
                self.n_unmatched += 1;
            }
        }
        // Keep a busy address's queues short as it goes (the periodic sweep does the rest;
        // looking at the front of every queue on every event costs a cache miss).
        if address.tentative.len() + address.unmatched.len() >= 16 {
            let (tentative, unmatched) = address.forget_settled(
                self.high_water.saturating_sub(4 * skew),
                self.high_water
                    .saturating_sub(secs(self.config.late_join_secs)),
            );
            self.n_tentative -= tentative;
            self.n_unmatched -= unmatched;
        }
        if self.n_tentative + self.n_unmatched > self.config.max_pending {
            self.shed();
        }
        (join, joined)
    }

    /// The source name as a shared string: consecutive events share their source.
    fn interned_source(&mut self, source: &str) -> Arc<str> {
        match &self.last_source {
            Some(last) if &**last == source => last.clone(),
            _ => {
                let interned: Arc<str> = Arc::from(source);
                self.last_source = Some(interned.clone());
                interned
            }
        }
    }

    /// Over `max_pending`: forget what is settled everywhere, then the older half of what
    /// still waits (counted).
    fn shed(&mut self) {
        self.sweep_addresses(false);
        if self.n_tentative + self.n_unmatched <= self.config.max_pending {
            return;
        }
        // Matched events that a late session merely might still take go first; unmatched
        // ones, which only a late session can ever join, only if that was not enough. Half
        // of each address's queue, oldest first, so that shedding is not needed again soon.
        for unmatched in [false, true] {
            if self.n_tentative + self.n_unmatched <= self.config.max_pending {
                break;
            }
            let mut dropped = 0;
            for address in self.addresses.values_mut() {
                let queue = if unmatched {
                    &mut address.unmatched
                } else {
                    &mut address.tentative
                };
                let n = queue.len().div_ceil(2);
                queue.drain(..n);
                dropped += n as u64;
            }
            self.stats.pending_dropped += dropped;
            if unmatched {
                self.stats.unmatched_dropped += dropped;
            }
            self.recount();
        }
    }

    fn recount(&mut self) {
        self.n_tentative = self.addresses.values().map(|a| a.tentative.len()).sum();
        self.n_unmatched = self.addresses.values().map(|a| a.unmatched.len()).sum();
    }

    /// Looks the pending events of `ip` up again; changed answers become updates.
    fn rejoin(&mut self, ip: IpAddr, decided: Timestamp, updates: &mut Vec<SessionJoinUpdate>) {
        let skew = self.skew_ns;
        let Some(address) = self.addresses.get_mut(&ip) else {
            return;
        };
        let Address {
            leases,
            tentative,
            unmatched,
        } = address;
        let lookup = Address {
            leases: std::mem::take(leases),
            ..Address::default()
        };
        for pending in tentative.iter_mut().chain(unmatched.iter_mut()) {
            let lease = lookup.lookup(skew, pending.at);
            let now = lease.map(|lease| lease.session_id.clone());
            if now == pending.current {
                continue;
            }
            let user_name = lease.and_then(|lease| lease.user_name.as_deref().map(str::to_owned));
            updates.push(SessionJoinUpdate {
                target: pending.target,
                event_id: model::EventId::new(&*pending.source, pending.seq, pending.part)
                    .to_string(),
                timestamp: pending.timestamp,
                session_id: now.as_deref().map(str::to_owned),
                user_name,
                join: if now.is_some() {
                    SessionJoin::Late
                } else {
                    SessionJoin::Unmatched
                },
                decided,
            });
            self.stats.late_updates += 1;
            pending.current = now;
        }
        *leases = lookup.leases;
        if address.is_empty() {
            self.addresses.remove(&ip);
        }
    }

    /// Every `SWEEP_NS` of event time: forgets what no late session can change any more on
    /// every address; every `LEASE_SWEEP_NS` also leases long ended.
    fn sweep(&mut self) {
        if self.high_water < self.last_sweep.saturating_add(SWEEP_NS) {
            return;
        }
        self.last_sweep = self.high_water;
        let leases_too = self.high_water >= self.last_lease_sweep.saturating_add(LEASE_SWEEP_NS);
        if leases_too {
            self.last_lease_sweep = self.high_water;
        }
        self.sweep_addresses(leases_too);
    }

    fn sweep_addresses(&mut self, leases_too: bool) {
        // A session that could still change a matched event's answer starts within the
        // tolerance of it and arrives (like everything) at most the tolerance late, while the
        // newest event may itself be early by the tolerance: four tolerances cover it.
        let tentative_before = self.high_water.saturating_sub(4 * self.skew_ns);
        let unmatched_before = self
            .high_water
            .saturating_sub(secs(self.config.late_join_secs));
        let horizon = self
            .high_water
            .saturating_sub(secs(self.config.lease_retention_secs));
        let lease_of = &mut self.lease_of;
        let (mut n_tentative, mut n_unmatched) = (0, 0);
        self.addresses.retain(|_, address| {
            let (tentative, unmatched) = address.forget_settled(tentative_before, unmatched_before);
            n_tentative += tentative;
            n_unmatched += unmatched;
            if leases_too {
                address.leases.retain(|lease| {
                    let keep = lease.end >= horizon;
                    if !keep {
                        lease_of.remove(&lease.session_id);
                    }
                    keep
                });
            }
            !address.is_empty()
        });
        self.n_tentative -= n_tentative;
        self.n_unmatched -= n_unmatched;
    }
}

/// A session end as a log line states it: most VPN logs (charon's, syslog's) have whole
/// seconds, so `09:33:16` means some time before `09:33:17`. An end without a fraction holds
/// until the end of its second; otherwise an event in the last fraction of that second
/// would be nearer to the next user's session, whose start is rounded down the same way.
fn end_of_logged_second(end: Timestamp) -> i64 {
    let at = nanos(end);
    if end.subsec_nanosecond() == 0 {
        at.saturating_add(999_999_999)
    } else {
        at
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.5`, as dual-stack servers log them) are the
/// IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn nanos(timestamp: Timestamp) -> i64 {
    i64::try_from(timestamp.as_nanosecond()).unwrap_or(if timestamp.as_second() < 0 {
        i64::MIN
    } else {
        i64::MAX
    })
}

fn secs(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
