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
//! The number pending is bounded (`max_pending`); the oldest are forgotten first and counted.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use jiff::Timestamp;
use model::{Event, EventBody, JoinTarget, Session, SessionJoin, SessionJoinUpdate};
use serde::{Deserialize, Serialize};

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
    /// Pending events forgotten because `max_pending` was reached.
    pub pending_dropped: u64,
    /// Pending events now.
    pub pending: u64,
    /// Leases (sessions with a virtual IP) known now.
    pub leases: u64,
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
    event_id: Arc<str>,
    target: JoinTarget,
    timestamp: Timestamp,
    /// The session it is joined to now, if any.
    current: Option<Arc<str>>,
}

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The interval join. See the module docs.
#[derive(Debug)]
pub struct Joiner {
    config: JoinConfig,
    skew_ns: i64,
    leases: Map<IpAddr, Vec<Lease>>,
    /// Where each session's lease is, to move or update it.
    lease_of: Map<Arc<str>, IpAddr>,
    pending: Map<IpAddr, Vec<Pending>>,
    /// Insertion order of pending events, for the bound.
    pending_order: VecDeque<(IpAddr, Arc<str>)>,
    n_pending: usize,
    /// The newest event time seen.
    high_water: i64,
    last_sweep: i64,
    stats: JoinStats,
}

impl Joiner {
    /// Starts with the sessions known at start-up (open ones, and recently closed ones).
    pub fn new(config: JoinConfig, sessions: &[Session]) -> Joiner {
        let skew_ns = secs(config.clock_skew_secs);
        let mut joiner = Joiner {
            config,
            skew_ns,
            leases: Map::default(),
            lease_of: Map::default(),
            pending: Map::default(),
            pending_order: VecDeque::new(),
            n_pending: 0,
            high_water: i64::MIN,
            last_sweep: i64::MIN,
            stats: JoinStats::default(),
        };
        joiner.update_sessions(sessions, Timestamp::UNIX_EPOCH);
        joiner
    }

    pub fn stats(&self) -> JoinStats {
        let mut stats = self.stats.clone();
        stats.pending = self.n_pending as u64;
        stats.leases = self.lease_of.len() as u64;
        stats
    }

    /// Takes in new session snapshots; returns corrections for pending events whose answer
    /// changed. `decided` stamps the corrections (the newest one wins in the store).
    pub fn update_sessions(&mut self, sessions: &[Session], decided: Timestamp) -> Vec<SessionJoinUpdate> {
        let mut touched: Vec<IpAddr> = Vec::new();
        for session in sessions {
            let session_id: Arc<str> = Arc::from(session.session_id.as_str());
            // Remove the old lease of this session (its address or times may have changed).
            if let Some(old_ip) = self.lease_of.remove(&session_id) {
                if let Some(list) = self.leases.get_mut(&old_ip) {
                    list.retain(|lease| lease.session_id != session_id);
                    if list.is_empty() {
                        self.leases.remove(&old_ip);
                    }
                }
                touched.push(old_ip);
            }
            let Some(ip) = session.virtual_ip.map(canonical) else {
                continue;
            };
            let start = nanos(session.start);
            let end = session.end.map_or(i64::MAX, nanos).max(start);
            let lease = Lease {
                start,
                end,
                session_id: session_id.clone(),
                user_name: session.user_name().map(Arc::from),
            };
            let list = self.leases.entry(ip).or_default();
            let at = list.partition_point(|other| (other.start, &*other.session_id) < (start, &*session_id));
            list.insert(at, lease);
            self.lease_of.insert(session_id, ip);
            touched.push(ip);
        }
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
            let (ip, join, lease) = self.decide(candidates, at);
            let (session_id, user_name) = match lease {
                Some(lease) => (
                    Some(lease.session_id.to_string()),
                    lease.user_name.as_deref().map(str::to_owned),
                ),
                None => (None, None),
            };
            match join {
                SessionJoin::Matched => self.stats.matched += 1,
                SessionJoin::Unmatched => self.stats.unmatched += 1,
                SessionJoin::NotVpn => self.stats.not_vpn += 1,
                SessionJoin::Late => {}
            }
            if let Some(ip) = ip
                && join != SessionJoin::NotVpn
                && self.may_change(ip, at, session_id.as_deref())
            {
                self.remember(
                    ip,
                    Pending {
                        at,
                        event_id: Arc::from(event.id.to_string()),
                        target,
                        timestamp: event.timestamp,
                        current: session_id.as_deref().map(Arc::from),
                    },
                );
            }
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

    /// Which address of the event to join on, and the answer.
    fn decide(&self, candidates: [Option<IpAddr>; 2], at: i64) -> (Option<IpAddr>, SessionJoin, Option<&Lease>) {
        let pool = &self.config.vpn_pool;
        let mut first_vpn = None;
        for ip in candidates.into_iter().flatten() {
            let ip = canonical(ip);
            if !pool.is_empty() && !pool.iter().any(|net| net.contains(&ip)) {
                continue;
            }
            first_vpn.get_or_insert(ip);
            if let Some(lease) = self.lookup(ip, at) {
                return (Some(ip), SessionJoin::Matched, Some(lease));
            }
        }
        match first_vpn {
            Some(ip) => (Some(ip), SessionJoin::Unmatched, None),
            None => (None, SessionJoin::NotVpn, None),
        }
    }

    /// The lease of `ip` at `at`: the containing one that started last, else the nearest
    /// within the tolerance (ties: the one that started last).
    fn lookup(&self, ip: IpAddr, at: i64) -> Option<&Lease> {
        let list = self.leases.get(&ip)?;
        let skew = self.skew_ns;
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

    /// Whether a session still to come could change the answer for `ip` at `at`.
    fn may_change(&self, ip: IpAddr, at: i64, current: Option<&str>) -> bool {
        let Some(current) = current else {
            return true;
        };
        let Some(lease) = self
            .leases
            .get(&ip)
            .and_then(|list| list.iter().find(|lease| &*lease.session_id == current))
        else {
            return true;
        };
        // Deep inside a closed lease, nothing can take the event away; near its edges, or in
        // an open lease (whose end is still to come), a later session might.
        lease.end == i64::MAX
            || at < lease.start.saturating_add(self.skew_ns)
            || at > lease.end.saturating_sub(self.skew_ns)
    }

    fn remember(&mut self, ip: IpAddr, pending: Pending) {
        let list = self.pending.entry(ip).or_default();
        // A resent batch: the event is pending already.
        if let Some(existing) = list.iter_mut().find(|p| p.event_id == pending.event_id) {
            existing.current = pending.current;
            return;
        }
        self.pending_order.push_back((ip, pending.event_id.clone()));
        list.push(pending);
        self.n_pending += 1;
        while self.n_pending > self.config.max_pending {
            let Some((ip, event_id)) = self.pending_order.pop_front() else {
                break;
            };
            if self.forget(ip, &event_id) {
                self.stats.pending_dropped += 1;
            }
        }
    }

    fn forget(&mut self, ip: IpAddr, event_id: &str) -> bool {
        let Some(list) = self.pending.get_mut(&ip) else {
            return false;
        };
        let before = list.len();
        list.retain(|p| &*p.event_id != event_id);
        let removed = before != list.len();
        if list.is_empty() {
            self.pending.remove(&ip);
        }
        if removed {
            self.n_pending -= 1;
        }
        removed
    }

    /// Looks the pending events of `ip` up again; changed answers become updates.
    fn rejoin(&mut self, ip: IpAddr, decided: Timestamp, updates: &mut Vec<SessionJoinUpdate>) {
        let Some(mut list) = self.pending.remove(&ip) else {
            return;
        };
        for pending in &mut list {
            let lease = self.lookup(ip, pending.at);
            let now = lease.map(|lease| lease.session_id.clone());
            if now == pending.current {
                continue;
            }
            let user_name = lease.and_then(|lease| lease.user_name.as_deref().map(str::to_owned));
            updates.push(SessionJoinUpdate {
                target: pending.target,
                event_id: pending.event_id.to_string(),
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
        self.pending.insert(ip, list);
    }

    /// Forgets what no late session can change any more, and leases long ended. Runs at most
    /// once per second of event time.
    fn sweep(&mut self) {
        if self.high_water < self.last_sweep.saturating_add(1_000_000_000) {
            return;
        }
        self.last_sweep = self.high_water;
        // A session that could still change a matched event's answer starts within the
        // tolerance of it and arrives (like everything) at most the tolerance late, while the
        // newest event may itself be early by the tolerance: four tolerances cover it.
        let settled = self.high_water.saturating_sub(4 * self.skew_ns);
        let expired = self.high_water.saturating_sub(secs(self.config.late_join_secs));
        let mut n_removed = 0;
        self.pending.retain(|_, list| {
            let before = list.len();
            list.retain(|p| {
                if p.current.is_some() {
                    p.at >= settled
                } else {
                    p.at >= expired
                }
            });
            n_removed += before - list.len();
            !list.is_empty()
        });
        self.n_pending -= n_removed;
        if n_removed > 0 {
            let pending = &self.pending;
            self.pending_order.retain(|(ip, event_id)| {
                pending
                    .get(ip)
                    .is_some_and(|list| list.iter().any(|p| &p.event_id == event_id))
            });
        }
        let horizon = self.high_water.saturating_sub(secs(self.config.lease_retention_secs));
        let lease_of = &mut self.lease_of;
        self.leases.retain(|_, list| {
            list.retain(|lease| {
                let keep = lease.end >= horizon;
                if !keep {
                    lease_of.remove(&lease.session_id);
                }
                keep
            });
            !list.is_empty()
        });
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
