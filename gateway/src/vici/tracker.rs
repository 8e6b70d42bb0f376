//! Turns charon's VICI events into [`model`] events: a pure state machine, no IO.
//!
//! charon reports outcomes, not reasons. An `ike-updown` without `up` in state `CONNECTING`
//! is a failed login, but why it failed is only in the `log` events of that IKE_SA; so the
//! tracker keeps, per `ikesa-uniqueid`, what the log said (method, identities, failure,
//! who deleted) and uses it when the outcome arrives. Some failures never get an
//! `ike-updown` at all (a wrong EAP password leaves a half-open IKE_SA that charon deletes
//! after its timeout): the log decides those.
//!
//! charon sends its `log` events asynchronously: the log lines of an exchange usually
//! arrive *after* that exchange's `ike-updown`. So the tracker applies log events at once
//! but holds every other event for [`SETTLE`] before acting on it, by which time the log
//! has caught up (the event keeps the time it arrived).
//!
//! Down events: `DELETING` is an orderly delete (by the gateway if it sent the DELETE,
//! otherwise by the client, which charon logs only after the event), `ESTABLISHED` is a
//! dead peer (or a duplicate replaced after INITIAL_CONTACT). A rekey (`ike-rekey`) gives
//! the IKE_SA a new unique id; the tracker moves its state to the new id and reports a
//! rekey, so the session stays one.
//!
//! IKEv1 (`version` 1) reports its IKE_SA `up` once main mode is done, before quick mode
//! has made any CHILD_SA: a login is not complete then. So the tracker holds an IKEv1
//! IKE_SA back ([`TrackerState::awaiting_child`]) and reports its login (auth success,
//! virtual IPs, the IKE_SA, its children) when its first CHILD_SA comes up; if the IKE_SA
//! goes down first (a quick mode that failed, e.g. an L2TP/IPsec client whose transport
//! mode SA was refused), it reports a failed login with the log's reason and no session.
//!
//! The established IKE_SAs are the tracker's [`TrackerState`]: the agent persists it, and on
//! every (re)connect [`Tracker::reconcile`] compares it with `list-sas`, so an SA that came
//! or went while the socket was away is reported once, and one seen already is not
//! reported again. An SA is the one seen already when charon lists it under the same
//! unique id with the same IKE SPIs; one no longer listed ended while nobody listened
//! (cause `lost`). charon's start time (`stats`) tells a restarted daemon, whose ids start
//! at 1 again, but it jitters by a second between calls and moves with the wall clock, so
//! it only decides for SAs persisted without SPIs, and only beyond `SINCE_JITTER`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use model::{
    Auth, AuthFailure, AuthMethod, ChildSaEvent, Counters, Endpoint, EventBody, FailureCode,
    Identities, IkeSaEvent, LeaseChange, Outcome, Peer, SaChange, TerminateCause, VirtualIpEvent,
};
use serde::{Deserialize, Serialize};

use super::client::ViciEvent;
use super::wire::Message;

mod hints;
mod reconcile;

/// IKE_SAs whose log hints are remembered at most (the oldest are forgotten first).
const MAX_HINTS: usize = 16_384;
/// How long a closed IKE_SA is kept to attribute its CHILD_SAs' late down events.
const CLOSED_RETENTION: SignedDuration = SignedDuration::from_secs(60);
/// How long an event waits for the log lines that explain it.
pub const SETTLE: SignedDuration = SignedDuration::from_millis(1000);
/// Events held at most; beyond this they are acted on at once (bounded memory).
const MAX_QUEUED: usize = 100_000;

/// One event the tracker produced, before it gets its id.
#[derive(Debug, Clone, PartialEq)]
pub struct Produced {
    pub timestamp: Timestamp,
    /// What charon said, as text: `vici <event> <message as JSON>`.
    pub original: String,
    pub body: EventBody,
}

/// What the tracker knows about one established IKE_SA. Persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SaInfo {
    pub connection: Option<String>,
    /// The IKE SPIs (initiator, responder) in hex: with the unique id, what tells this
    /// IKE_SA from another under the same id after a charon restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_spis: Option<(String, String)>,
    pub client: Endpoint,
    pub server: Endpoint,
    pub identities: Identities,
    pub method: Option<AuthMethod>,
    pub virtual_ips: Vec<IpAddr>,
    /// CHILD_SAs by unique id.
    pub children: BTreeMap<u64, ChildInfo>,
    /// The negotiated algorithms, as charon logs them (`vpn.proposal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    pub name: Option<String>,
    pub spi_in: Option<String>,
    pub spi_out: Option<String>,
    pub local_ts: Option<String>,
    pub remote_ts: Option<String>,
    /// The negotiated algorithms, as charon logs them (`vpn.proposal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
}

/// The persisted part of the tracker: which charon it watched and its established IKE_SAs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrackerState {
    /// charon's start time (`stats` → `uptime.since`), to recognise a restarted daemon
    /// (unique ids start again at 1).
    pub charon_since: Option<String>,
    pub sas: BTreeMap<u64, SaInfo>,
    /// IKEv1 IKE_SAs up without a CHILD_SA yet: not reported (see the module docs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub awaiting_child: BTreeMap<u64, SaInfo>,
}

/// What the log said about one IKE_SA.
#[derive(Debug, Default)]
struct Hints {
    method: Option<AuthMethod>,
    radius: bool,
    identities: Identities,
    failure: Option<(AuthMethod, AuthFailure)>,
    failure_reported: bool,
    /// Why a CHILD_SA (IKEv1: quick mode) failed, the first reason the log gave.
    child_failure: Option<String>,
    sent_delete: bool,
    received_delete: bool,
    duplicate: bool,
    dead_peer: bool,
    client: Endpoint,
    touched: u64,
}

#[derive(Debug, Default)]
pub struct Tracker {
    state: TrackerState,
    hints: HashMap<u64, Hints>,
    hint_clock: u64,
    /// Events waiting for their log lines, with the time they arrived.
    queue: std::collections::VecDeque<(Timestamp, ViciEvent)>,
    /// The socket closed: deletes without a known initiator were charon going away.
    disconnecting: bool,
    /// IKE_SAs reported down whose CHILD_SA down events may still come.
    closed: HashMap<u64, (Timestamp, SaInfo)>,
}

impl Tracker {
    pub fn new(state: TrackerState) -> Tracker {
        Tracker {
            state,
            ..Tracker::default()
        }
    }

    pub fn state(&self) -> &TrackerState {
        &self.state
    }

    /// Takes one event received at `now`; log events are applied at once, the others after
    /// [`SETTLE`] (on a later call or [`Tracker::tick`]).
    pub fn on_event(&mut self, event: ViciEvent, now: Timestamp, out: &mut Vec<Produced>) {
        if event.name == "log" {
            self.on_log(&event.message, now, out);
        } else {
            self.queue.push_back((now, event));
        }
        self.tick(now, out);
    }

    /// Acts on the events that have waited long enough; forgets closed IKE_SAs.
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<Produced>) {
        while let Some((arrived, _)) = self.queue.front() {
            if now.duration_since(*arrived) < SETTLE && self.queue.len() <= MAX_QUEUED {
                break;
            }
            if let Some((arrived, event)) = self.queue.pop_front() {
                self.apply(&event, arrived, out);
            }
        }
        self.closed
            .retain(|_, (closed_at, _)| now.duration_since(*closed_at) < CLOSED_RETENTION);
    }

    /// Whether events are waiting (the caller should tick again within [`SETTLE`]).
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The socket closed: acts on every waiting event now; a delete whose initiator the log
    /// did not name was part of charon going away.
    pub fn on_disconnect(&mut self, out: &mut Vec<Produced>) {
        self.disconnecting = true;
        while let Some((arrived, event)) = self.queue.pop_front() {
            self.apply(&event, arrived, out);
        }
        self.disconnecting = false;
    }

    /// Acts on every waiting event now (the agent is stopping).
    pub fn flush(&mut self, out: &mut Vec<Produced>) {
        while let Some((arrived, event)) = self.queue.pop_front() {
            self.apply(&event, arrived, out);
        }
    }

    fn apply(&mut self, event: &ViciEvent, now: Timestamp, out: &mut Vec<Produced>) {
        match event.name.as_str() {
            "ike-updown" => self.on_ike_updown(event, now, out),
            "child-updown" => self.on_child_updown(event, now, out),
            "ike-rekey" => self.on_ike_rekey(event, now, out),
            "child-rekey" => self.on_child_rekey(event, now, out),
            "ike-update" => self.on_ike_update(&event.message),
            _ => {}
        }
    }

    fn on_ike_updown(&mut self, event: &ViciEvent, now: Timestamp, out: &mut Vec<Produced>) {
        let Some((connection, section)) = event.message.sections().next() else {
            return;
        };
        let Some(id) = section
            .str("uniqueid")
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        let original = format!("vici {} {}", event.name, event.message.to_json());
        let up = event.message.str("up").as_deref() == Some("yes");
        let state = section.str("state").unwrap_or_default();
        if up {
            if let Some(info) = self
                .state
                .sas
                .get_mut(&id)
                .or_else(|| self.state.awaiting_child.get_mut(&id))
            {
                // Known already (by reconcile): refresh what we know, report nothing.
                let fresh = sa_info(connection, section);
                info.identities.merge_from(&fresh.identities);
                return;
            }
            let mut info = sa_info(connection, section);
            let hints = self.hints(id);
            info.identities.merge_from(&hints.identities);
            info.method = hints.method;
            if is_ikev1(section) && info.children.is_empty() {
                // Main mode is done, quick mode is not: the login waits for a CHILD_SA.
                self.state.awaiting_child.insert(id, info);
                return;
            }
            info.method = Some(
                info.method
                    .unwrap_or_else(|| method_without_log(&info.identities)),
            );
            self.open(id, info, now, &original, out);
            return;
        }
        if let Some(info) = self.state.awaiting_child.remove(&id) {
            self.report_no_child(id, info, now, &original, out);
            return;
        }
        if !self.state.sas.contains_key(&id) {
            if state == "CONNECTING" {
                self.report_failure(id, Some((connection, section)), now, &original, out);
            }
            return;
        }
        let disconnecting = self.disconnecting;
        let hints = self.hints(id);
        let (change, cause) = match state.as_str() {
            "DELETING" if hints.received_delete => (SaChange::Deleted, TerminateCause::UserRequest),
            "DELETING" if hints.sent_delete => (SaChange::Deleted, TerminateCause::AdminReset),
            // No DELETE in either direction and the socket closed: charon went away.
            "DELETING" if disconnecting => (SaChange::Deleted, TerminateCause::Other),
            "DELETING" => (SaChange::Deleted, TerminateCause::UserRequest),
            // Replaced by a new login of the same peer (INITIAL_CONTACT).
            "ESTABLISHED" if hints.duplicate => (SaChange::Deleted, TerminateCause::Other),
            // Down while established: the peer stopped answering (DPD).
            "ESTABLISHED" => (SaChange::Lost, TerminateCause::LostService),
            _ => (SaChange::Deleted, TerminateCause::Other),
        };
        self.close(id, change, cause, now, &original, out);
    }

    fn on_child_updown(&mut self, event: &ViciEvent, now: Timestamp, out: &mut Vec<Produced>) {
        let Some((connection, section)) = event.message.sections().next() else {
            return;
        };
        let Some(id) = section
            .str("uniqueid")
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        let original = format!("vici {} {}", event.name, event.message.to_json());
        let up = event.message.str("up").as_deref() == Some("yes");
        let listed = sa_info(connection, section).children;
        let counters: HashMap<u64, Counters> = section
            .section("child-sas")
            .map(|children| {
                children
                    .sections()
                    .filter_map(|(_, child)| {
                        let child_id = child.str("uniqueid")?.parse().ok()?;
                        Some((child_id, child_counters(child)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if up && let Some(mut info) = self.state.awaiting_child.remove(&id) {
            // The first CHILD_SA of an IKEv1 IKE_SA: now the login is complete.
            info.children = listed;
            let hints = self.hints(id);
            info.identities.merge_from(&hints.identities);
            info.method = Some(
                hints
                    .method
                    .or(info.method)
                    .unwrap_or_else(|| method_without_log(&info.identities)),
            );
            self.open(id, info, now, &original, out);
            return;
        }
        let info = match self.state.sas.get_mut(&id) {
            Some(info) => info,
            None => match self.closed.get_mut(&id) {
                Some((_, info)) => info,
                None => return,
            },
        };
        let peer = peer_of(id, info);
        for (child_id, child) in listed {
            if up {
                child_up(info, &peer, child_id, child, now, &original, out);
            } else if info.children.remove(&child_id).is_some() {
                let counters = counters.get(&child_id).copied();
                out.push(child_event(
                    &peer,
                    child_id,
                    &child,
                    SaChange::Deleted,
                    counters,
                    now,
                    &original,
                ));
            }
        }
    }

    fn on_ike_rekey(&mut self, event: &ViciEvent, now: Timestamp, out: &mut Vec<Produced>) {
        let Some((connection, section)) = event.message.sections().next() else {
            return;
        };
        let (Some(old), Some(new)) = (section.section("old"), section.section("new")) else {
            return;
        };
        let (Some(old_id), Some(new_id)) = (
            old.str("uniqueid").and_then(|id| id.parse::<u64>().ok()),
            new.str("uniqueid").and_then(|id| id.parse::<u64>().ok()),
        ) else {
            return;
        };
        let original = format!("vici {} {}", event.name, event.message.to_json());
        if let Some(mut info) = self.state.awaiting_child.remove(&old_id) {
            // Still no CHILD_SA: the new IKE_SA waits in its place.
            let fresh = sa_info(connection, new);
            info.client = fresh.client;
            info.ike_spis = fresh.ike_spis;
            info.identities.merge_from(&fresh.identities);
            self.state.awaiting_child.insert(new_id, info);
            return;
        }
        let Some(mut info) = self.state.sas.remove(&old_id) else {
            if !self.state.sas.contains_key(&new_id) {
                let mut info = sa_info(connection, new);
                info.method = Some(method_without_log(&info.identities));
                self.open(new_id, info, now, &original, out);
            }
            return;
        };
        let peer = peer_of(old_id, &info);
        let fresh = sa_info(connection, new);
        info.client = fresh.client;
        info.ike_spis = fresh.ike_spis;
        info.identities.merge_from(&fresh.identities);
        self.state.sas.insert(new_id, info);
        out.push(Produced {
            timestamp: now,
            original,
            body: EventBody::IkeSa(IkeSaEvent {
                peer,
                change: SaChange::Rekeyed,
                new_ike_sa_id: Some(new_id),
                cause: None,
                proposal: None,
            }),
        });
    }

    fn on_child_rekey(&mut self, event: &ViciEvent, now: Timestamp, out: &mut Vec<Produced>) {
        let Some((_, section)) = event.message.sections().next() else {
            return;
        };
        let Some(id) = section
            .str("uniqueid")
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        let original = format!("vici {} {}", event.name, event.message.to_json());
        let Some(info) = self.state.sas.get_mut(&id) else {
            return;
        };
        let peer = peer_of(id, info);
        let Some(children) = section.section("child-sas") else {
            return;
        };
        for (_, child) in children.sections() {
            let (Some(old), Some(new)) = (child.section("old"), child.section("new")) else {
                continue;
            };
            let (Some(old_id), Some(new_id)) = (
                old.str("uniqueid").and_then(|id| id.parse::<u64>().ok()),
                new.str("uniqueid").and_then(|id| id.parse::<u64>().ok()),
            ) else {
                continue;
            };
            let old_info = info
                .children
                .remove(&old_id)
                .unwrap_or_else(|| child_info(old));
            out.push(child_event(
                &peer,
                old_id,
                &old_info,
                SaChange::Rekeyed,
                Some(child_counters(old)),
                now,
                &original,
            ));
            info.children.insert(new_id, child_info(new));
        }
    }

    fn on_ike_update(&mut self, message: &Message) {
        let Some((_, section)) = message.sections().next() else {
            return;
        };
        let Some(id) = section
            .str("uniqueid")
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        let client = Endpoint {
            ip: message.str("remote-host").and_then(|ip| ip.parse().ok()),
            port: message
                .str("remote-port")
                .and_then(|port| port.parse().ok()),
        };
        if let Some(info) = self
            .state
            .sas
            .get_mut(&id)
            .or_else(|| self.state.awaiting_child.get_mut(&id))
        {
            info.client = client;
        } else {
            self.hints(id).client = client;
        }
    }

    /// An IKEv1 IKE_SA went down before any CHILD_SA came up: a failed login, with the
    /// reason the log gave, and no session.
    fn report_no_child(
        &mut self,
        id: u64,
        mut info: SaInfo,
        now: Timestamp,
        original: &str,
        out: &mut Vec<Produced>,
    ) {
        let hints = self.hints(id);
        hints.failure_reported = true;
        info.identities.merge_from(&hints.identities);
        let method = hints.method.or(info.method).unwrap_or(AuthMethod::Unknown);
        let reason = hints
            .child_failure
            .clone()
            .unwrap_or_else(|| NO_CHILD_REASON.to_owned());
        self.hints.remove(&id);
        out.push(Produced {
            timestamp: now,
            original: original.to_owned(),
            body: EventBody::Auth(Auth {
                peer: peer_of(id, &info),
                method,
                outcome: Outcome::Failure,
                failure: Some(AuthFailure {
                    code: FailureCode::Other,
                    reason,
                }),
            }),
        });
    }

    /// Reports an IKE_SA as established: the login, its virtual IPs, the SA, its children.
    fn open(
        &mut self,
        id: u64,
        info: SaInfo,
        timestamp: Timestamp,
        original: &str,
        out: &mut Vec<Produced>,
    ) {
        let peer = peer_of(id, &info);
        out.push(Produced {
            timestamp,
            original: original.to_owned(),
            body: EventBody::Auth(Auth {
                peer: peer.clone(),
                method: info.method.unwrap_or(AuthMethod::Unknown),
                outcome: Outcome::Success,
                failure: None,
            }),
        });
        for ip in &info.virtual_ips {
            out.push(Produced {
                timestamp,
                original: original.to_owned(),
                body: EventBody::VirtualIp(VirtualIpEvent {
                    peer: peer.clone(),
                    ip: *ip,
                    change: LeaseChange::Assigned,
                }),
            });
        }
        out.push(Produced {
            timestamp,
            original: original.to_owned(),
            body: EventBody::IkeSa(IkeSaEvent {
                peer: peer.clone(),
                change: SaChange::Established,
                new_ike_sa_id: None,
                cause: None,
                proposal: info.proposal.clone(),
            }),
        });
        for (child_id, child) in &info.children {
            out.push(child_event(
                &peer,
                *child_id,
                child,
                SaChange::Established,
                None,
                timestamp,
                original,
            ));
        }
        // The hints stay: log lines about this IKE_SA (who deletes it) may already be in.

        self.state.sas.insert(id, info);
    }

    /// Reports an IKE_SA as gone, with its virtual IPs released.
    fn close(
        &mut self,
        id: u64,
        change: SaChange,
        cause: TerminateCause,
        timestamp: Timestamp,
        original: &str,
        out: &mut Vec<Produced>,
    ) {
        let Some(info) = self.state.sas.remove(&id) else {
            return;
        };
        self.hints.remove(&id);
        let peer = peer_of(id, &info);
        out.push(Produced {
            timestamp,
            original: original.to_owned(),
            body: EventBody::IkeSa(IkeSaEvent {
                peer: peer.clone(),
                change,
                new_ike_sa_id: None,
                cause: Some(cause),
                proposal: None,
            }),
        });
        for ip in &info.virtual_ips {
            out.push(Produced {
                timestamp,
                original: original.to_owned(),
                body: EventBody::VirtualIp(VirtualIpEvent {
                    peer: peer.clone(),
                    ip: *ip,
                    change: LeaseChange::Released,
                }),
            });
        }
        self.closed.insert(id, (timestamp, info));
    }
}

/// The reason of a failed IKEv1 login whose log named none.
const NO_CHILD_REASON: &str = "IKEv1 IKE_SA ended before quick mode established a CHILD_SA";

/// The IKE SPIs of an IKE_SA section.
fn ike_spis(section: &Message) -> Option<(String, String)> {
    Some((section.str("initiator-spi")?, section.str("responder-spi")?))
}

/// How far charon's start time may move between two `stats` without charon having
/// restarted: charon computes it as the wall clock minus its monotonic uptime, each cut to
/// whole seconds, so it jitters by a second (about one call in seven here).
const SINCE_JITTER: SignedDuration = SignedDuration::from_secs(2);

/// Whether charon's start time (`stats` → `uptime.since`, e.g. `Dec 07 10:42:35 2026` in
/// charon's local time) moved by more than its jitter: charon restarted, or the clock
/// stepped. Unknown on either side is no move; text that does not parse must be equal.
fn since_moved(before: Option<&str>, after: Option<&str>) -> bool {
    let (Some(before), Some(after)) = (before, after) else {
        return false;
    };
    let parse = |text: &str| {
        jiff::fmt::strtime::parse("%b %d %H:%M:%S %Y", text)
            .and_then(|parsed| parsed.to_datetime())
            .ok()
    };
    match (parse(before), parse(after)) {
        (Some(before), Some(after)) => after.duration_since(before).abs() > SINCE_JITTER,
        _ => before != after,
    }
}

/// Whether an IKE_SA section is IKEv1 (`version` 1).
fn is_ikev1(section: &Message) -> bool {
    section.str("version").as_deref() == Some("1")
}

/// The method when the log did not say: EAP if the peer has an EAP identity.
fn method_without_log(identities: &Identities) -> AuthMethod {
    if identities.eap_id.is_some() {
        AuthMethod::Eap
    } else {
        AuthMethod::Unknown
    }
}

fn non_placeholder(id: Option<String>) -> Option<String> {
    id.filter(|id| !id.is_empty() && id != "%any")
}

/// What an IKE_SA section of an event or `list-sa` says.
fn sa_info(connection: &str, section: &Message) -> SaInfo {
    let identities = Identities {
        ike_id: non_placeholder(section.str("remote-id")),
        eap_id: non_placeholder(section.str("remote-eap-id")),
        xauth_id: non_placeholder(section.str("remote-xauth-id")),
        cert_subject: None,
        cert_serial: None,
    };
    let children = section
        .section("child-sas")
        .map(|children| {
            children
                .sections()
                .filter_map(|(_, child)| {
                    Some((child.str("uniqueid")?.parse().ok()?, child_info(child)))
                })
                .collect()
        })
        .unwrap_or_default();
    SaInfo {
        connection: (connection != "(unnamed)").then(|| connection.to_owned()),
        ike_spis: ike_spis(section),
        client: Endpoint {
            ip: section.str("remote-host").and_then(|ip| ip.parse().ok()),
            port: section
                .str("remote-port")
                .and_then(|port| port.parse().ok()),
        },
        server: Endpoint {
            ip: section.str("local-host").and_then(|ip| ip.parse().ok()),
            port: section.str("local-port").and_then(|port| port.parse().ok()),
        },
        identities,
        method: None,
        virtual_ips: section
            .list("remote-vips")
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .collect(),
        children,
        proposal: proposal(section, "IKE"),
    }
}

fn child_info(child: &Message) -> ChildInfo {
    let joined = |key: &str| {
        let items = child.list(key);
        (!items.is_empty()).then(|| items.join(" "))
    };
    ChildInfo {
        name: child.str("name"),
        spi_in: child.str("spi-in"),
        spi_out: child.str("spi-out"),
        local_ts: joined("local-ts"),
        remote_ts: joined("remote-ts"),
        proposal: proposal(child, child.str("protocol").as_deref().unwrap_or("ESP")),
    }
}

/// The negotiated algorithms of an SA section of `list-sas` or an updown event, spelled as
/// charon's `selected proposal:` line does (`IKE:AES_CBC_128/HMAC_SHA2_256_128/
/// PRF_HMAC_SHA2_256/CURVE_25519`, `ESP:AES_GCM_16_128/NO_EXT_SEQ`), so that rules read one
/// spelling whichever source saw the SA.
/// Longest proposal kept (a real one is under 100 characters).
const MAX_PROPOSAL_LEN: usize = 256;

fn proposal(section: &Message, protocol: &str) -> Option<String> {
    let encryption = section.str("encr-alg")?;
    let mut parts = vec![match section.str("encr-keysize") {
        Some(bits) => format!("{encryption}_{bits}"),
        None => encryption,
    }];
    parts.extend(section.str("integ-alg"));
    parts.extend(section.str("prf-alg"));
    parts.extend(section.str("dh-group"));
    if protocol != "IKE" {
        parts.push(
            if section.str("esn").as_deref() == Some("1") {
                "EXT_SEQ"
            } else {
                "NO_EXT_SEQ"
            }
            .to_owned(),
        );
    }
    let proposal = format!("{protocol}:{}", parts.join("/"));
    (proposal.len() <= MAX_PROPOSAL_LEN).then_some(proposal)
}

fn child_counters(child: &Message) -> Counters {
    let number = |key: &str| child.str(key).and_then(|value| value.parse::<u64>().ok());
    Counters {
        bytes_in: number("bytes-in").unwrap_or(0),
        bytes_out: number("bytes-out").unwrap_or(0),
        packets_in: number("packets-in"),
        packets_out: number("packets-out"),
    }
}

fn peer_of(id: u64, info: &SaInfo) -> Peer {
    Peer {
        connection: info.connection.clone(),
        ike_sa_id: Some(id),
        client: info.client,
        server: info.server,
        identities: info.identities.clone(),
    }
}

/// A CHILD_SA of `info` is up: reported once, the first time it is seen.
fn child_up(
    info: &mut SaInfo,
    peer: &Peer,
    child_id: u64,
    child: ChildInfo,
    now: Timestamp,
    original: &str,
    out: &mut Vec<Produced>,
) {
    if let std::collections::btree_map::Entry::Vacant(slot) = info.children.entry(child_id) {
        out.push(child_event(
            peer,
            child_id,
            &child,
            SaChange::Established,
            None,
            now,
            original,
        ));
        slot.insert(child);
    }
}

fn child_event(
    peer: &Peer,
    child_id: u64,
    child: &ChildInfo,
    change: SaChange,
    counters: Option<Counters>,
    timestamp: Timestamp,
    original: &str,
) -> Produced {
    Produced {
        timestamp,
        original: original.to_owned(),
        body: EventBody::ChildSa(ChildSaEvent {
            peer: peer.clone(),
            change,
            name: child.name.clone(),
            child_sa_id: Some(child_id),
            spi_in: child.spi_in.clone(),
            spi_out: child.spi_out.clone(),
            local_ts: child.local_ts.clone(),
            remote_ts: child.remote_ts.clone(),
            counters,
            proposal: match change {
                SaChange::Established => child.proposal.clone(),
                _ => None,
            },
        }),
    }
}

#[cfg(test)]
mod tests;
