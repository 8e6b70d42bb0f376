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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    pub name: Option<String>,
    pub spi_in: Option<String>,
    pub spi_out: Option<String>,
    pub local_ts: Option<String>,
    pub remote_ts: Option<String>,
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

    /// Compares what charon lists now (`list-sa` messages) with what the tracker believed,
    /// and reports the difference: SAs that came up or went down (or were rekeyed) while
    /// nobody was listening. `charon_since` identifies the daemon instance.
    pub fn reconcile(
        &mut self,
        charon_since: Option<String>,
        listed: &[Message],
        now: Timestamp,
        out: &mut Vec<Produced>,
    ) {
        let since_moved = since_moved(self.state.charon_since.as_deref(), charon_since.as_deref());
        self.state.charon_since = charon_since;
        let mut current: BTreeMap<u64, (String, &Message)> = BTreeMap::new();
        for message in listed {
            if let Some((connection, section)) = message.sections().next()
                && let Some(id) = section.str("uniqueid").and_then(|id| id.parse().ok())
            {
                current.insert(id, (connection.to_owned(), section));
            }
        }
        // An IKE_SA listed under its id with its IKE SPIs is the one the tracker knows: the
        // SPIs are random 64-bit numbers, and a restarted charon counts ids from 1 again
        // but never lists the old SPIs. Without SPIs (state of an earlier version) charon's
        // start time decides.
        let still_listed = |id: u64, info: &SaInfo| {
            current
                .get(&id)
                .is_some_and(|(_, section)| match &info.ike_spis {
                    Some(spis) => ike_spis(section).as_ref() == Some(spis),
                    None => !since_moved,
                })
        };
        let n_still_listed = self
            .state
            .sas
            .iter()
            .chain(&self.state.awaiting_child)
            .filter(|(id, info)| still_listed(**id, info))
            .count();
        let restarted = since_moved && n_still_listed == 0;
        let gone: BTreeSet<u64> = self
            .state
            .sas
            .iter()
            .filter(|(id, info)| !still_listed(**id, info))
            .map(|(id, _)| *id)
            .collect();
        let waited: Vec<(u64, bool)> = self
            .state
            .awaiting_child
            .iter()
            .map(|(id, info)| (*id, still_listed(*id, info)))
            .collect();
        let restart_note = if restarted { " (charon restarted)" } else { "" };
        // IKEv1 IKE_SAs that were waiting for their first CHILD_SA: gone without one is a
        // failed login; listed with one, the login is complete now.
        for (id, is_listed) in waited {
            let listed = is_listed.then(|| current.get(&id)).flatten();
            match listed {
                None => {
                    if let Some(info) = self.state.awaiting_child.remove(&id) {
                        let original = format!(
                            "vici reconcile: IKE_SA #{id} is no longer listed by charon{restart_note}"
                        );
                        self.report_no_child(id, info, now, &original, out);
                    }
                }
                Some((connection, section)) => {
                    let children = sa_info(connection, section).children;
                    if !children.is_empty()
                        && let Some(mut info) = self.state.awaiting_child.remove(&id)
                    {
                        info.children = children;
                        if info.method.is_none() {
                            info.method = Some(method_without_log(&info.identities));
                        }
                        let original = format!("vici list-sa {}", section.to_json());
                        self.open(id, info, now, &original, out);
                    }
                }
            }
        }
        let mut new: Vec<u64> = current
            .keys()
            .copied()
            .filter(|id| {
                !(self.state.awaiting_child.contains_key(id)
                    || (self.state.sas.contains_key(id) && !gone.contains(id)))
            })
            .collect();
        for old_id in gone {
            // An IKE_SA replaced by one with the same peer, identity and virtual IPs was
            // rekeyed while we were away: the session goes on.
            let successor = (!restarted)
                .then(|| {
                    let old = self.state.sas.get(&old_id)?;
                    // A rekey always gives a new id: the same id is another IKE_SA.
                    new.iter().copied().find(|new_id| {
                        *new_id != old_id
                            && current.get(new_id).is_some_and(|(connection, section)| {
                                let candidate = sa_info(connection, section);
                                candidate.connection == old.connection
                                    && candidate.client.ip == old.client.ip
                                    && candidate.identities.ike_id == old.identities.ike_id
                                    && candidate.virtual_ips == old.virtual_ips
                            })
                    })
                })
                .flatten();
            let original = format!(
                "vici reconcile: IKE_SA #{old_id} is no longer listed by charon{restart_note}"
            );
            if let Some(new_id) = successor {
                new.retain(|id| *id != new_id);
                if let Some(mut info) = self.state.sas.remove(&old_id) {
                    let peer = peer_of(old_id, &info);
                    if let Some((connection, section)) = current.get(&new_id) {
                        let fresh = sa_info(connection, section);
                        info.client = fresh.client;
                        info.ike_spis = fresh.ike_spis;
                        info.identities.merge_from(&fresh.identities);
                        info.children = fresh.children;
                    }
                    self.state.sas.insert(new_id, info);
                    out.push(Produced {
                        timestamp: now,
                        original: format!(
                            "vici reconcile: IKE_SA #{old_id} was rekeyed into #{new_id}"
                        ),
                        body: EventBody::IkeSa(IkeSaEvent {
                            peer,
                            change: SaChange::Rekeyed,
                            new_ike_sa_id: Some(new_id),
                            cause: None,
                        }),
                    });
                }
                continue;
            }
            // It ended while nobody listened (or charon restarted): when and why are unknown.
            self.close(
                old_id,
                SaChange::Deleted,
                TerminateCause::Lost,
                now,
                &original,
                out,
            );
        }
        for id in new {
            let Some((connection, section)) = current.get(&id) else {
                continue;
            };
            let established_secs: i64 = section
                .str("established")
                .and_then(|secs| secs.parse().ok())
                .unwrap_or(0);
            let since = now
                .checked_sub(SignedDuration::from_secs(established_secs.max(0)))
                .unwrap_or(now);
            let original = format!("vici list-sa {}", section.to_json());
            let mut info = sa_info(connection, section);
            if is_ikev1(section) && info.children.is_empty() {
                // Up while nobody listened, quick mode not done: wait for a CHILD_SA.
                self.state.awaiting_child.insert(id, info);
                continue;
            }
            info.method = Some(method_without_log(&info.identities));
            self.open(id, info, since, &original, out);
        }
        for (id, (connection, section)) in &current {
            // Known SAs: children that came or went while away.
            let Some(info) = self.state.sas.get_mut(id) else {
                continue;
            };
            let listed_children = sa_info(connection, section).children;
            let peer = peer_of(*id, info);
            let original = format!("vici list-sa {}", section.to_json());
            let gone: Vec<u64> = info
                .children
                .keys()
                .filter(|child_id| !listed_children.contains_key(child_id))
                .copied()
                .collect();
            for child_id in gone {
                if let Some(child) = info.children.remove(&child_id) {
                    out.push(child_event(
                        &peer,
                        child_id,
                        &child,
                        SaChange::Deleted,
                        None,
                        now,
                        &original,
                    ));
                }
            }
            for (child_id, child) in listed_children {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    info.children.entry(child_id)
                {
                    out.push(child_event(
                        &peer,
                        child_id,
                        &child,
                        SaChange::Established,
                        None,
                        now,
                        &original,
                    ));
                    slot.insert(child);
                }
            }
        }
    }

    fn hints(&mut self, id: u64) -> &mut Hints {
        self.hint_clock += 1;
        if self.hints.len() >= MAX_HINTS && !self.hints.contains_key(&id) {
            let oldest = self
                .hints
                .iter()
                .min_by_key(|(_, hints)| hints.touched)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.hints.remove(&oldest);
            }
        }
        let clock = self.hint_clock;
        let hints = self.hints.entry(id).or_default();
        hints.touched = clock;
        hints
    }

    fn on_log(&mut self, message: &Message, now: Timestamp, out: &mut Vec<Produced>) {
        let Some(id) = message
            .str("ikesa-uniqueid")
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        let Some(text) = message.str("msg") else {
            return;
        };
        let text = text.as_str();
        let original = format!("vici log {}", message.to_json());
        let hints = self.hints(id);
        if let Some(rest) = text.strip_prefix("authentication of '")
            && let Some((who, how)) = rest.split_once("' ")
            && !how.starts_with("(myself)")
            && how.ends_with(" successful")
        {
            hints
                .identities
                .ike_id
                .get_or_insert_with(|| who.to_owned());
            if how.starts_with("with pre-shared key") {
                hints.method = Some(AuthMethod::Psk);
            } else if how.contains("signature")
                || how.contains("RSA")
                || how.contains("ECDSA")
                || how.contains("ED25519")
            {
                hints.method = Some(AuthMethod::Cert);
            }
            return;
        }
        if let Some(id_text) = text
            .strip_prefix("received EAP identity '")
            .and_then(|rest| rest.strip_suffix('\''))
        {
            hints.identities.eap_id = Some(id_text.to_owned());
            return;
        }
        if let Some(subject) = text
            .strip_prefix("received end entity cert \"")
            .and_then(|rest| rest.strip_suffix('"'))
        {
            hints.identities.cert_subject = Some(subject.to_owned());
            return;
        }
        // IKEv1 main mode logs no "authentication of ... successful" for a PSK; the
        // responder looks the key up by the peer's address first.
        if text.starts_with("looking for pre-shared key peer configs matching") {
            hints.method.get_or_insert(AuthMethod::Psk);
            return;
        }
        if is_child_failure(text) {
            hints.child_failure.get_or_insert_with(|| text.to_owned());
            return;
        }
        if text.starts_with("sending RADIUS Access-Request") {
            hints.radius = true;
            return;
        }
        if let Some(rest) = text.strip_prefix("EAP method ") {
            let (eap_method, verdict) = rest.split_once(' ').unwrap_or((rest, ""));
            let method = if hints.radius {
                AuthMethod::EapRadius
            } else if eap_method == "EAP_MSCHAPV2" {
                AuthMethod::EapMschapv2
            } else {
                AuthMethod::Eap
            };
            if verdict.starts_with("succeeded") {
                hints.method = Some(method);
            } else if verdict.starts_with("failed") {
                let code = if hints.radius {
                    FailureCode::RadiusReject
                } else {
                    FailureCode::EapFailure
                };
                set_failure(hints, method, code, text);
            }
            return;
        }
        if let Some(rest) = text.strip_prefix("RADIUS authentication of '") {
            hints.radius = true;
            if let Some((user, verdict)) = rest.split_once("' ") {
                hints
                    .identities
                    .eap_id
                    .get_or_insert_with(|| user.to_owned());
                if verdict == "failed" {
                    set_failure(
                        hints,
                        AuthMethod::EapRadius,
                        FailureCode::RadiusReject,
                        text,
                    );
                } else {
                    hints.method = Some(AuthMethod::EapRadius);
                }
            }
            return;
        }
        if text.starts_with("tried ") && text.ends_with("but MAC mismatched") {
            if let Some(peer_id) = text
                .strip_suffix("', but MAC mismatched")
                .and_then(|rest| rest.rsplit_once(" - '"))
                .map(|(_, peer_id)| peer_id)
            {
                hints.identities.ike_id = Some(peer_id.to_owned());
            }
            set_failure(hints, AuthMethod::Psk, FailureCode::PskMismatch, text);
            return;
        }
        if text.starts_with("EAP-MS-CHAPv2 verification failed") {
            set_failure(
                hints,
                AuthMethod::EapMschapv2,
                FailureCode::EapFailure,
                text,
            );
            return;
        }
        if (text.starts_with("no trusted ") && text.contains("public key found for"))
            || text.starts_with("constraint check failed")
            || text.contains("certificate was revoked")
            || text.starts_with("certificate status is REVOKED")
        {
            set_failure(hints, AuthMethod::Cert, FailureCode::CertInvalid, text);
            return;
        }
        if text == "no matching peer config found" || text.starts_with("no peer config found") {
            set_failure(
                hints,
                AuthMethod::Unknown,
                FailureCode::NoMatchingConfig,
                text,
            );
            return;
        }
        if text.starts_with("received AUTHENTICATION_FAILED notify error") {
            set_failure(hints, AuthMethod::Unknown, FailureCode::PeerRejected, text);
            return;
        }
        if let Some(rest) = text.strip_prefix("received packet: from ")
            && let Some((from, _)) = rest.split_once(" to ")
            && let Some(endpoint) = parse_endpoint(from)
        {
            hints.client = endpoint;
            return;
        }
        if text.starts_with("sending DELETE for IKE_SA") {
            hints.sent_delete = true;
            return;
        }
        if text.starts_with("destroying duplicate IKE_SA") {
            hints.duplicate = true;
            return;
        }
        if text.starts_with("giving up after") {
            hints.dead_peer = true;
            return;
        }
        if text.starts_with("received DELETE for IKE_SA") {
            hints.received_delete = true;
            return;
        }
        // The client gave up (it tells us so), or charon dropped the half-open IKE_SA: the
        // login failed even though no ike-updown will say so.
        let peer_gave_up =
            text.starts_with("parsed INFORMATIONAL request") && text.contains("N(AUTH_FAILED)");
        if (peer_gave_up || text.starts_with("deleting half open IKE_SA"))
            && !self.state.sas.contains_key(&id)
            && !self.state.awaiting_child.contains_key(&id)
        {
            self.report_failure(id, None, now, &original, out);
        }
    }

    /// Emits the failed login of IKE_SA `id` once, with what the log said about it.
    fn report_failure(
        &mut self,
        id: u64,
        section: Option<(&str, &Message)>,
        now: Timestamp,
        original: &str,
        out: &mut Vec<Produced>,
    ) {
        let hints = self.hints(id);
        if hints.failure_reported {
            return;
        }
        hints.failure_reported = true;
        let (method, failure) = hints.failure.clone().unwrap_or_else(|| {
            (
                hints.method.unwrap_or(AuthMethod::Unknown),
                AuthFailure {
                    code: FailureCode::Other,
                    reason: "the IKE_SA failed before it was established".to_owned(),
                },
            )
        });
        let mut info = match section {
            Some((connection, section)) => sa_info(connection, section),
            None => SaInfo::default(),
        };
        let hints = self.hints(id);
        info.identities.merge_from(&hints.identities);
        if info.client.ip.is_none() {
            info.client = hints.client;
        }
        out.push(Produced {
            timestamp: now,
            original: original.to_owned(),
            body: EventBody::Auth(Auth {
                peer: peer_of(id, &info),
                method,
                outcome: Outcome::Failure,
                failure: Some(failure),
            }),
        });
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
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    info.children.entry(child_id)
                {
                    out.push(child_event(
                        &peer,
                        child_id,
                        &child,
                        SaChange::Established,
                        None,
                        now,
                        &original,
                    ));
                    slot.insert(child);
                }
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

fn set_failure(hints: &mut Hints, method: AuthMethod, code: FailureCode, text: &str) {
    // A specific reason is not replaced by a later, vaguer one (the RADIUS reject comes
    // before the generic "EAP method failed").
    let weak = matches!(
        hints.failure,
        None | Some((
            _,
            AuthFailure {
                code: FailureCode::PeerRejected | FailureCode::Other,
                ..
            }
        ))
    );
    if weak {
        hints.failure = Some((
            method,
            AuthFailure {
                code,
                reason: text.to_owned(),
            },
        ));
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

/// Log lines that say why a CHILD_SA (IKEv1: quick mode) failed.
fn is_child_failure(text: &str) -> bool {
    // IKEv1 notifies read "received NO_PROPOSAL_CHOSEN error notify"; IKEv2's read
    // "received ... notify error" and are handled as authentication failures.
    (text.starts_with("received ") && text.ends_with(" error notify"))
        || text.starts_with("unable to install ")
        || text.starts_with("IPsec SA: unsupported mode")
        || text == "no matching CHILD_SA config found"
        || text.starts_with("no acceptable proposal found")
        || text.starts_with("failed to establish CHILD_SA")
}

/// The method when the log did not say: EAP if the peer has an EAP identity.
fn method_without_log(identities: &Identities) -> AuthMethod {
    if identities.eap_id.is_some() {
        AuthMethod::Eap
    } else {
        AuthMethod::Unknown
    }
}

fn parse_endpoint(text: &str) -> Option<Endpoint> {
    let (ip, port) = text.strip_suffix(']')?.split_once('[')?;
    Some(Endpoint {
        ip: Some(ip.parse().ok()?),
        port: port.parse().ok(),
    })
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
    }
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
        }),
    }
}

#[cfg(test)]
mod tests;
