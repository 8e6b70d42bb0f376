//! One login as the sessionizer assembles it: a [`Record`] keeps what the VPN's own events
//! ([`VpnSide`]) and RADIUS accounting ([`AccountingSide`]) said apart, and shows the session
//! with fixed precedence ([`Record::session`]), so the order of arrival changes nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use model::{AuthMethod, Counters, Geo, Identities, Peer, Session, SessionState, TerminateCause};
use serde::{Deserialize, Serialize};

use super::{Phase, SaKey, SaRef};

/// How one side said the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct End {
    pub(super) at: Timestamp,
    pub(super) state: SessionState,
    pub(super) cause: Option<TerminateCause>,
}

impl End {
    /// The earlier end; the first cause given stays.
    pub(super) fn merge(existing: Option<End>, new: End) -> End {
        match existing {
            None => new,
            Some(old) => End {
                at: old.at.min(new.at),
                state: old.state,
                cause: old.cause.or(new.cause),
            },
        }
    }
}

/// What the VPN's own events (charon, pluto, VICI) said about a login.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct VpnSide {
    /// When the IKE_SA began to negotiate; `None` while the VPN said nothing of this login.
    pub(super) first_seen: Option<Timestamp>,
    /// When it was established: the session's start.
    pub(super) established: Option<Timestamp>,
    pub(super) connection: Option<String>,
    pub(super) identities: Identities,
    pub(super) method: Option<AuthMethod>,
    pub(super) client: model::Endpoint,
    pub(super) virtual_ip: Option<IpAddr>,
    pub(super) ike_sa_ids: Vec<u64>,
    pub(super) rekey_count: u32,
    /// Counters of each CHILD_SA, as last reported.
    pub(super) children: BTreeMap<u64, Counters>,
    pub(super) end: Option<End>,
}

impl VpnSide {
    pub(super) fn absorb(&mut self, peer: &Peer) {
        self.identities.merge_from(&peer.identities);
        if peer.client.ip.is_some() {
            self.client = peer.client;
        }
        if self.connection.is_none() {
            self.connection.clone_from(&peer.connection);
        }
    }

    pub(super) fn merge(&mut self, other: VpnSide) {
        self.first_seen = earlier(self.first_seen, other.first_seen);
        self.established = earlier(self.established, other.established);
        if self.connection.is_none() {
            self.connection = other.connection;
        }
        self.identities.merge_from(&other.identities);
        self.method = self.method.or(other.method);
        if self.client.ip.is_none() {
            self.client = other.client;
        }
        self.virtual_ip = self.virtual_ip.or(other.virtual_ip);
        for id in other.ike_sa_ids {
            if !self.ike_sa_ids.contains(&id) {
                self.ike_sa_ids.push(id);
            }
        }
        self.rekey_count = self.rekey_count.max(other.rekey_count);
        for (child, counters) in other.children {
            self.children.entry(child).or_insert(counters);
        }
        if let Some(end) = other.end {
            self.end = Some(End::merge(self.end, end));
        }
    }
}

/// What RADIUS accounting (or pppd's own session lines) said about a login.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct AccountingSide {
    pub(super) seen: bool,
    pub(super) accounting_id: Option<String>,
    /// The NAS-Ports it named (strongSwan: the IKE_SA unique ids, one more per rekey).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) nas_ports: Vec<u64>,
    pub(super) connection: Option<String>,
    pub(super) identities: Identities,
    pub(super) client: model::Endpoint,
    pub(super) virtual_ip: Option<IpAddr>,
    /// When it started, as accounting counts (the record's time minus Acct-Session-Time).
    pub(super) start: Option<Timestamp>,
    /// The largest totals reported (per counter).
    pub(super) counters: Option<Counters>,
    pub(super) stop: Option<End>,
}

impl AccountingSide {
    /// Takes what one accounting record says (the session begun at `start`, reported at
    /// `at`). Returns whether it is a Stop of a session accounting had stopped already.
    pub(super) fn fold(
        &mut self,
        accounting: &model::SessionEvent,
        start: Timestamp,
        at: Timestamp,
    ) -> bool {
        self.seen = true;
        if self.accounting_id.is_none() {
            self.accounting_id.clone_from(&accounting.accounting_id);
        }
        if let Some(port) = accounting.peer.ike_sa_id
            && !self.nas_ports.contains(&port)
        {
            self.nas_ports.push(port);
        }
        self.identities.merge_from(&accounting.peer.identities);
        if self.client.ip.is_none() {
            self.client = accounting.peer.client;
        }
        if self.connection.is_none() {
            self.connection.clone_from(&accounting.peer.connection);
        }
        self.virtual_ip = self.virtual_ip.or(accounting.virtual_ip);
        self.start = Some(self.start.map_or(start, |known| known.min(start)));
        if let Some(counters) = accounting.counters {
            self.counters = Some(larger(counters, self.counters));
        }
        if accounting.change != model::SessionChange::Stop {
            return false;
        }
        let repeated = self.stop.is_some();
        self.stop = Some(End::merge(
            self.stop,
            End {
                at,
                state: SessionState::Closed,
                cause: accounting.cause,
            },
        ));
        repeated
    }

    pub(super) fn merge(&mut self, other: AccountingSide) {
        self.seen |= other.seen;
        if self.accounting_id.is_none() {
            self.accounting_id = other.accounting_id;
        }
        for port in other.nas_ports {
            if !self.nas_ports.contains(&port) {
                self.nas_ports.push(port);
            }
        }
        if self.connection.is_none() {
            self.connection = other.connection;
        }
        self.identities.merge_from(&other.identities);
        if self.client.ip.is_none() {
            self.client = other.client;
        }
        self.virtual_ip = self.virtual_ip.or(other.virtual_ip);
        self.start = earlier(self.start, other.start);
        if let Some(counters) = other.counters {
            self.counters = Some(larger(counters, self.counters));
        }
        if let Some(stop) = other.stop {
            self.stop = Some(End::merge(self.stop, stop));
        }
    }
}

/// What a session restored from an earlier process's snapshot had, which its sides cannot
/// tell apart any more.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Restored {
    /// A state file of an earlier version kept no counters per CHILD_SA: the counters it had,
    /// which the CHILD_SAs reported later add to.
    pub(super) baseline: Option<Counters>,
    /// The counters it showed: never shown less (accounting's totals are in them).
    pub(super) floor: Option<Counters>,
}

/// What a session's snapshot carries of its sources ([`Session::sources`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Sources {
    pub(super) vpn: VpnSide,
    pub(super) accounting: AccountingSide,
    #[serde(default)]
    pub(super) restored: Restored,
}

/// A stored event stamped with a record's id while that record was not (yet) a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stamp {
    pub(super) event_id: String,
    pub(super) timestamp: Timestamp,
}

/// One login.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) session_id: String,
    pub(super) gateway: Option<String>,
    #[serde(flatten)]
    pub(super) phase: Phase,
    pub(super) vpn: VpnSide,
    pub(super) accounting: AccountingSide,
    #[serde(default)]
    pub(super) restored: Restored,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) client_geo: Option<Geo>,
    pub(super) version: u64,
    pub(super) updated: Timestamp,
    /// The keys that found this record (removed with it).
    pub(super) keys: Vec<SaKey>,
    /// Events stamped with this record's id while it was not shown: corrected if it goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) stamped: Vec<Stamp>,
}

impl Record {
    pub(super) fn new(
        session_id: String,
        gateway: Option<String>,
        phase: Phase,
        at: Timestamp,
    ) -> Record {
        Record {
            session_id,
            gateway,
            phase,
            vpn: VpnSide::default(),
            accounting: AccountingSide::default(),
            restored: Restored::default(),
            client_geo: None,
            version: 0,
            updated: at,
            keys: Vec::new(),
            stamped: Vec::new(),
        }
    }

    /// A session an earlier process showed, read back from the store: its sources as they
    /// were, or (a snapshot of an earlier version) as far as the session tells them.
    pub(super) fn restored(session: Session) -> Record {
        let mut record = Record::new(
            session.session_id.clone(),
            session.gateway.clone(),
            Phase::Shown,
            session.updated,
        );
        record.version = session.version;
        record.client_geo = session.client_geo.clone();
        let sources = session
            .sources
            .as_ref()
            .and_then(|sources| serde_json::from_value::<Sources>(sources.0.clone()).ok());
        if let Some(sources) = sources {
            record.vpn = sources.vpn;
            record.accounting = sources.accounting;
            record.restored = sources.restored;
            return record;
        }
        let vpn_made = session.method.is_some() || !session.ike_sa_ids.is_empty();
        let end = session.end.map(|at| End {
            at,
            state: session.state,
            cause: session.cause,
        });
        record.restored = if session.child_sa_counters.is_empty() {
            Restored {
                baseline: Some(session.counters),
                floor: None,
            }
        } else {
            Restored {
                baseline: None,
                floor: Some(session.counters),
            }
        };
        if vpn_made {
            record.vpn = VpnSide {
                first_seen: Some(session.start),
                established: Some(session.start),
                connection: session.connection.clone(),
                identities: session.identities.clone(),
                method: session.method,
                client: session.client,
                virtual_ip: session.virtual_ip,
                ike_sa_ids: session.ike_sa_ids.clone(),
                rekey_count: session.rekey_count,
                children: session.child_sa_counters.clone(),
                end,
            };
        }
        if session.accounting_id.is_some() || !vpn_made {
            record.accounting = AccountingSide {
                seen: true,
                accounting_id: session.accounting_id.clone(),
                nas_ports: Vec::new(),
                connection: session.connection.clone(),
                identities: session.identities.clone(),
                client: session.client,
                virtual_ip: session.virtual_ip,
                start: Some(session.start),
                counters: None,
                stop: if vpn_made { None } else { end },
            };
        }
        record
    }

    /// The keys a shown session restored after a restart is found by: its IKE_SAs, its
    /// Acct-Session-Id, and for what only accounting or pppd reported, the NAS-Ports it named
    /// or the PPP link's address.
    pub(super) fn restored_keys(&self) -> Vec<SaKey> {
        let gateway = &self.gateway;
        let mut keys: Vec<SaKey> = self
            .vpn
            .ike_sa_ids
            .iter()
            .map(|id| (gateway.clone(), SaRef::Id(*id)))
            .collect();
        if let Some(accounting_id) = &self.accounting.accounting_id {
            let hash = model::hash::fnv1a(accounting_id.as_bytes());
            keys.push((gateway.clone(), SaRef::Accounting(hash)));
        }
        if !self.vpn_made() {
            keys.extend(
                self.accounting
                    .nas_ports
                    .iter()
                    .map(|port| (gateway.clone(), SaRef::Id(*port))),
            );
            if self.accounting.accounting_id.is_none()
                && let Some(ip) = self.accounting.virtual_ip
            {
                keys.push((gateway.clone(), SaRef::VirtualIp(ip)));
            }
        }
        keys
    }

    pub(super) fn vpn_made(&self) -> bool {
        self.vpn.first_seen.is_some()
    }

    pub(super) fn shown(&self) -> bool {
        self.phase == Phase::Shown
    }

    /// When it ended, as the earlier of both sides says.
    pub(super) fn end(&self) -> Option<Timestamp> {
        match (self.vpn.end, self.accounting.stop) {
            (Some(a), Some(b)) => Some(a.at.min(b.at)),
            (a, b) => a.or(b).map(|end| end.at),
        }
    }

    /// When the session started: the IKE_SA's establishment, else accounting's start, else
    /// (still negotiating) when the IKE_SA began to.
    pub(super) fn start(&self) -> Timestamp {
        self.vpn
            .established
            .or(self.accounting.start)
            .or(self.vpn.first_seen)
            .unwrap_or(self.updated)
    }

    pub(super) fn virtual_ip(&self) -> Option<IpAddr> {
        self.vpn.virtual_ip.or(self.accounting.virtual_ip)
    }

    pub(super) fn identities(&self) -> &Identities {
        if has_names(&self.vpn.identities) || self.vpn_made() {
            &self.vpn.identities
        } else {
            &self.accounting.identities
        }
    }

    pub(super) fn counters(&self) -> Counters {
        let mut children = sum_counters(self.vpn.children.values());
        if let Some(baseline) = self.restored.baseline {
            children = sum_counters([children, baseline].iter());
        }
        larger(
            larger(children, self.accounting.counters),
            self.restored.floor,
        )
    }

    /// The row of `sessions` this record shows.
    pub(super) fn session(&self) -> Session {
        let (state, cause) = match (self.vpn.end, self.accounting.stop) {
            // `lost`: it ended while the agent was not listening, why is unknown; accounting
            // may know (charon's own Acct-Terminate-Cause).
            (Some(vpn), Some(stop))
                if vpn.cause == Some(TerminateCause::Lost) && stop.cause.is_some() =>
            {
                (vpn.state, stop.cause)
            }
            (Some(vpn), stop) => (vpn.state, vpn.cause.or(stop.and_then(|stop| stop.cause))),
            (None, Some(stop)) => (SessionState::Closed, stop.cause),
            (None, None) => (SessionState::Active, None),
        };
        let client = if self.vpn.client.ip.is_some() {
            self.vpn.client
        } else {
            self.accounting.client
        };
        Session {
            session_id: self.session_id.clone(),
            gateway: self.gateway.clone(),
            connection: self
                .vpn
                .connection
                .clone()
                .or_else(|| self.accounting.connection.clone()),
            ike_sa_ids: self.vpn.ike_sa_ids.clone(),
            identities: self.identities().clone(),
            method: self.vpn.method,
            client,
            client_geo: self.client_geo.clone(),
            virtual_ip: self.virtual_ip(),
            start: self.start(),
            end: self.end(),
            state,
            cause,
            counters: self.counters(),
            child_sa_counters: self.vpn.children.clone(),
            rekey_count: self.vpn.rekey_count,
            accounting_id: self.accounting.accounting_id.clone(),
            version: self.version,
            updated: self.updated,
            sources: serde_json::to_value(Sources {
                vpn: self.vpn.clone(),
                accounting: self.accounting.clone(),
                restored: self.restored.clone(),
            })
            .ok()
            .map(model::SessionSources),
        }
    }

    pub(super) fn stamp(&mut self, event_id: String, timestamp: Timestamp) {
        if !self.shown() && !self.stamped.iter().any(|stamp| stamp.event_id == event_id) {
            self.stamped.push(Stamp {
                event_id,
                timestamp,
            });
        }
    }
}

pub(super) fn names(ids: &Identities) -> [Option<&str>; 3] {
    [
        ids.ike_id.as_deref(),
        ids.eap_id.as_deref(),
        ids.xauth_id.as_deref(),
    ]
}

pub(super) fn has_names(ids: &Identities) -> bool {
    names(ids).iter().any(Option::is_some)
}

/// Whether two sets of identities can be one user's: a name in common, or nothing to compare.
pub(super) fn same_user(ours: &Identities, theirs: &Identities) -> bool {
    let (ours, theirs) = (names(ours), names(theirs));
    let known = |all: &[Option<&str>; 3]| all.iter().any(Option::is_some);
    !known(&ours)
        || !known(&theirs)
        || theirs
            .iter()
            .flatten()
            .any(|name| ours.iter().flatten().any(|our| our == name))
}

pub(super) fn earlier(one: Option<Timestamp>, other: Option<Timestamp>) -> Option<Timestamp> {
    match (one, other) {
        (Some(one), Some(other)) => Some(one.min(other)),
        (one, other) => one.or(other),
    }
}

/// Per counter, the larger of the two.
pub(super) fn larger(one: Counters, other: Option<Counters>) -> Counters {
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

pub(super) fn sum_counters<'a>(all: impl Iterator<Item = &'a Counters>) -> Counters {
    let mut total = Counters::default();
    for counters in all {
        total.bytes_in += counters.bytes_in;
        total.bytes_out += counters.bytes_out;
        total.packets_in = add_optional(total.packets_in, counters.packets_in);
        total.packets_out = add_optional(total.packets_out, counters.packets_out);
    }
    total
}

pub(super) fn add_optional(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    }
}

/// `at` plus `by`, or the last instant there is (times come from input and may be anything).
pub(super) fn later_by(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.saturating_add(by).unwrap_or(at)
}

/// `at` minus `by`, or the first instant there is.
pub(super) fn earlier_by(at: Timestamp, by: SignedDuration) -> Timestamp {
    at.saturating_sub(by).unwrap_or(at)
}
