//! strongSwan charon log lines: `charon.filelog` and syslog format, with and without
//! `ike_name`.
//!
//! A charon line is `[timestamp] [host charon[pid]: ]NN[GRP] [<conn|id> ]message`. One line
//! rarely says everything about an event (the client's address is on one line, its identity
//! on another), so the parser keeps a small state per IKE_SA, keyed by its unique id, and
//! stamps every event with what is known about that IKE_SA so far.
//!
//! Without `ike_name` the lines carry no IKE_SA context. The parser then uses the
//! `name[id]` that many messages contain, and otherwise the IKE_SA that the same charon
//! thread last worked on (a thread handles one message at a time, from `received packet`
//! to the reply). Before the unique id of a new IKE_SA has been printed, its state is keyed
//! by the client's address; such events carry no `vpn.ike_sa_id`.

use std::collections::HashMap;
use std::net::IpAddr;

use jiff::Timestamp;
use model::{
    Auth, AuthFailure, AuthMethod, ChildSaEvent, Counters, Endpoint, Event, EventBody, EventId,
    FailureCode, Identities, IkeSaEvent, LeaseChange, Observer, Outcome, Peer, RejectReason,
    SaChange, TerminateCause, VirtualIpEvent,
};

use super::envelope;
use super::message::{self, Message};
use super::text::ShortStr;
use super::{LineOutcome, ParseOptions};

/// How many IKE_SAs the parser remembers before it forgets the least recently seen.
const MAX_TRACKED_SAS: usize = 65_536;

/// The thread of messages without `NN[GRP]` tag (only through the `syslog` format).
const UNKNOWN_THREAD: u16 = u16::MAX;

/// Key of the per-IKE_SA state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SaKey {
    /// The IKE_SA's unique id, as charon printed it.
    Id(u64),
    /// Only the client's address is known so far (logs without `ike_name`).
    Client(IpAddr),
}

#[derive(Debug, Default, Clone)]
struct SaState {
    connection: Option<String>,
    client: Endpoint,
    server: Endpoint,
    identities: Identities,
    /// The EAP method in use (`EAP_MSCHAPV2`), and whether it was relayed to RADIUS.
    eap_method: Option<String>,
    radius: bool,
    /// An auth event (success or failure) was emitted for the peer already.
    auth_reported: bool,
    established: bool,
    delete_cause: Option<TerminateCause>,
    /// The IKE_SA was replaced by this one in a rekey.
    rekeyed_into: Option<u64>,
    /// IKEv1 (Main or Aggressive Mode): its IKE_SA is up before quick mode, which may still
    /// fail, so the login is reported only with its first CHILD_SA.
    ikev1: bool,
    /// IKEv1: the IKE_SA is up, no CHILD_SA yet.
    v1_waiting: bool,
    /// IKEv1: how the peer authenticated (PSK, XAuth), from the lines that say so.
    v1_method: Option<AuthMethod>,
    /// IKEv1: the first reason quick mode failed, in charon's words.
    child_failure: Option<String>,
    /// The end was reported (IKEv1 has no `IKE_SA deleted` line).
    end_reported: bool,
    last_seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct CharonParser {
    sas: HashMap<SaKey, SaState>,
    /// charon thread number → the IKE_SA it last worked on (for lines without `ike_name`).
    threads: HashMap<u16, SaKey>,
    /// client address → IKE_SA id, learnt when the id of a `Client`-keyed SA appears.
    client_ids: HashMap<IpAddr, u64>,
}

/// The context prefix of a line: `<rw-psk|3>` or `<3>`.
struct LineContext<'a> {
    connection: Option<&'a str>,
    id: Option<u64>,
}

/// The pieces of one line that every handler needs.
struct Line<'a> {
    seq: u64,
    timestamp: Timestamp,
    hostname: Option<&'a str>,
    original: &'a str,
    key: Option<SaKey>,
    /// The line named its connection in its context (`<rw-psk|3>`, not `<3>`).
    named_context: bool,
}

impl CharonParser {
    /// Parses a line of a charon log file (`charon.filelog` or syslog); lines of other
    /// programs in a syslog file are ignored.
    pub(crate) fn parse(
        &mut self,
        text: &str,
        seq: u64,
        now: Timestamp,
        options: &mut ParseOptions,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let envelope = envelope::split(text, starts_with_thread_tag);
        if let Some(program) = envelope.program
            && !program.starts_with("charon")
        {
            return LineOutcome::Ignored;
        }
        if thread_tag(envelope.message).is_none() {
            return LineOutcome::Rejected(
                RejectReason::Malformed,
                "not a charon log line: no `NN[GRP]` thread tag".to_owned(),
            );
        }
        let timestamp = match envelope.stamp {
            Some(stamp) => match options.clock.resolve(stamp) {
                Some(timestamp) => timestamp,
                None => return message::bad_timestamp(),
            },
            None => now,
        };
        let message = Message {
            seq,
            timestamp,
            hostname: envelope.host.or(options.hostname.as_deref()),
            program: envelope.program,
            pid: envelope.pid,
            text: envelope.message,
            original: text,
        };
        self.parse_message(&message, &options.source, out)
    }

    /// Parses a message whose envelope is already split (by the caller or by the `syslog`
    /// format). A message without `NN[GRP]` thread tag (charon-systemd writes none to the
    /// journal) is read as if all such messages came from one thread.
    pub(crate) fn parse_message(
        &mut self,
        message: &Message<'_>,
        source: &str,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let (thread, rest) = thread_tag(message.text).unwrap_or((UNKNOWN_THREAD, message.text));
        let (context, text) = line_context(rest);
        let mut line = Line {
            seq: message.seq,
            timestamp: message.timestamp,
            hostname: message.hostname,
            original: message.original,
            key: None,
            named_context: context.connection.is_some(),
        };
        line.key = self.resolve_key(thread, &context, text);
        if let Some(key) = line.key {
            let state = self.sas.entry(key).or_default();
            state.last_seq = message.seq;
            if let Some(connection) = context.connection
                && state.connection.as_deref() != Some(connection)
            {
                state.connection = Some(connection.to_owned());
            }
        }
        let before = out.len();
        let handled = self.handle(&line, text, source, out);
        self.evict(message.seq);
        if handled || out.len() > before {
            LineOutcome::Parsed
        } else {
            LineOutcome::Ignored
        }
    }

    /// Which IKE_SA a line is about, and remembers it for the thread.
    fn resolve_key(
        &mut self,
        thread: u16,
        context: &LineContext<'_>,
        message: &str,
    ) -> Option<SaKey> {
        let explicit = context
            .id
            .or_else(|| ike_sa_ref_in(message).map(|(_, id)| id));
        let key = if let Some(id) = explicit {
            Some(SaKey::Id(id))
        } else if let Some(ip) = initiating_client(message) {
            // A new IKE_SA from this address: start from a clean state.
            self.client_ids.remove(&ip);
            self.sas.remove(&SaKey::Client(ip));
            Some(SaKey::Client(ip))
        } else if let Some(client) = packet_from(message).and_then(|endpoint| endpoint.ip) {
            Some(self.key_for_client(client))
        } else {
            self.threads.get(&thread).copied()
        };
        // A `Client`-keyed SA whose id just appeared: move its state to the id.
        if let (Some(SaKey::Id(id)), Some(SaKey::Client(ip))) =
            (key, self.threads.get(&thread).copied())
            && !self.sas.contains_key(&SaKey::Id(id))
            && let Some(state) = self.sas.remove(&SaKey::Client(ip))
        {
            self.sas.insert(SaKey::Id(id), state);
            self.client_ids.insert(ip, id);
        }
        if let Some(key) = key {
            self.threads.insert(thread, key);
        }
        key
    }

    fn key_for_client(&self, ip: IpAddr) -> SaKey {
        match self.client_ids.get(&ip) {
            Some(&id) if self.sas.contains_key(&SaKey::Id(id)) => SaKey::Id(id),
            _ => SaKey::Client(ip),
        }
    }

    fn state(&mut self, line: &Line<'_>) -> Option<&mut SaState> {
        line.key.and_then(|key| self.sas.get_mut(&key))
    }

    /// Handles the message; returns whether it was one the parser understands.
    fn handle(
        &mut self,
        line: &Line<'_>,
        message: &str,
        source: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        // Ordered roughly by how often each appears in a busy gateway's log.
        if let Some(rest) = message.strip_prefix("received packet: from ") {
            if let (Some(client), Some(server)) = (
                rest.split(' ').next().and_then(endpoint_with_port),
                rest.split(" to ")
                    .nth(1)
                    .and_then(|to| to.split(' ').next())
                    .and_then(endpoint_with_port),
            ) && let Some(state) = self.state(line)
            {
                state.client = client;
                state.server = server;
            }
            return true;
        }
        if let Some(ip) = initiating_client(message) {
            // An established SA's peer "initiating an IKE_SA" under that SA's name is rekeying
            // it (CREATE_CHILD_SA; a `rekeyed` line follows). A new IKE_SA_INIT has no config
            // yet (`<3>`): if its id names an established SA, charon restarted and reuses ids.
            if line.named_context && self.state(line).is_some_and(|state| state.established) {
                return true;
            }
            let ikev1 =
                message.contains_short("Main Mode") || message.contains_short("Aggressive Mode");
            if let Some(state) = self.state(line) {
                // A new IKE_SA: forget what a previous SA with the same key said.
                *state = SaState {
                    last_seq: state.last_seq,
                    connection: state.connection.take(),
                    ..SaState::default()
                };
                state.client = Endpoint::new(ip, None);
                state.ikev1 = ikev1;
            }
            self.push_ike(line, source, SaChange::Connecting, None, None, out);
            return true;
        }
        if let Some(rest) =
            message.strip_prefix("looking for pre-shared key peer configs matching ")
        {
            // IKEv1 main mode with a PSK: charon logs no `authentication of … successful`.
            if let Some(state) = self.state(line) {
                state.ikev1 = true;
                state.v1_method = Some(AuthMethod::Psk);
                if let Some((_, remote)) = endpoint_pair(rest)
                    && let Some(id) = remote.1.filter(|id| *id != "%any")
                {
                    state.identities.ike_id = Some(id.to_owned());
                }
            }
            return true;
        }
        if let Some(rest) = message.strip_prefix("XAuth authentication of '") {
            let Some((user, verdict)) = rest.split_once_short("' ") else {
                return false;
            };
            if let Some(state) = self.state(line) {
                state.identities.xauth_id = Some(user.to_owned());
            }
            if verdict == "successful" {
                if let Some(state) = self.state(line) {
                    state.v1_method = Some(AuthMethod::Xauth);
                }
            } else if verdict == "failed" {
                let failure = AuthFailure {
                    code: FailureCode::Other,
                    reason: message.to_owned(),
                };
                self.push_failure(line, source, AuthMethod::Xauth, failure, out);
            }
            return true;
        }
        if let Some(rest) = message.strip_prefix("looking for peer configs matching ") {
            if let Some((local, remote)) = endpoint_pair(rest)
                && let Some(state) = self.state(line)
            {
                state.server.ip = local.0.or(state.server.ip);
                if let Some(id) = remote.1.filter(|id| *id != "%any") {
                    state.identities.ike_id = Some(id.to_owned());
                }
                if remote.0.is_some() && state.client.ip != remote.0 {
                    state.client = Endpoint {
                        ip: remote.0,
                        port: None,
                    };
                }
            }
            return true;
        }
        // IKEv2 quotes the name with ', IKEv1 with ".
        if let Some(name) = message
            .strip_prefix("selected peer config '")
            .and_then(|rest| rest.strip_suffix('\''))
            .or_else(|| {
                message
                    .strip_prefix("selected peer config \"")
                    .and_then(|rest| rest.strip_suffix('"'))
            })
        {
            if let Some(state) = self.state(line) {
                state.connection = Some(name.to_owned());
            }
            return true;
        }
        if let Some(rest) = message.strip_prefix("authentication of '") {
            let Some((id, how)) = rest.split_once_short("' ") else {
                return false;
            };
            if how.starts_with("(myself)") {
                return true;
            }
            let Some(method) = how
                .strip_prefix("with ")
                .and_then(|how| how.strip_suffix(" successful"))
            else {
                return false;
            };
            let Some(state) = self.state(line) else {
                return false;
            };
            let method = match method {
                "pre-shared key" => AuthMethod::Psk,
                "EAP" if state.radius => AuthMethod::EapRadius,
                "EAP" if state.eap_method.as_deref() == Some("EAP_MSCHAPV2") => {
                    AuthMethod::EapMschapv2
                }
                "EAP" => AuthMethod::Eap,
                _ => AuthMethod::Cert,
            };
            if state.identities.ike_id.is_none() {
                state.identities.ike_id = Some(id.to_owned());
            }
            if state.ikev1 {
                // Reported with the first CHILD_SA (quick mode may still fail).
                state.v1_method.get_or_insert(method);
                return true;
            }
            state.auth_reported = true;
            self.push_auth(line, source, method, None, out);
            return true;
        }
        if let Some(rest) = message.strip_prefix("tried ") {
            // tried 1 shared key for 'gw.vpn.test' - 'client2@psk.vpn.test', but MAC mismatched
            let Some(peer_id) = rest
                .strip_suffix("', but MAC mismatched")
                .and_then(|rest| rest.rsplit_once_short(" - '"))
                .map(|(_, peer_id)| peer_id)
            else {
                return false;
            };
            if let Some(state) = self.state(line) {
                state.identities.ike_id = Some(peer_id.to_owned());
            }
            let failure = AuthFailure {
                code: FailureCode::PskMismatch,
                reason: message.to_owned(),
            };
            self.push_failure(line, source, AuthMethod::Psk, failure, out);
            return true;
        }
        if let Some(subject) = message
            .strip_prefix("received end entity cert \"")
            .and_then(|rest| rest.strip_suffix('"'))
        {
            if let Some(state) = self.state(line) {
                state.identities.cert_subject = Some(subject.to_owned());
            }
            return true;
        }
        if let Some(id) = message
            .strip_prefix("received EAP identity '")
            .and_then(|rest| rest.strip_suffix('\''))
        {
            if let Some(state) = self.state(line) {
                state.identities.eap_id = Some(id.to_owned());
            }
            return true;
        }
        if message.starts_with("received RADIUS Access-Reject")
            || message.starts_with("sending RADIUS Access-Request")
        {
            if let Some(state) = self.state(line) {
                state.radius = true;
            }
            return true;
        }
        if let Some(rest) = message.strip_prefix("RADIUS authentication of '") {
            let Some((id, verdict)) = rest.split_once_short("' ") else {
                return false;
            };
            if let Some(state) = self.state(line) {
                state.radius = true;
                state.identities.eap_id.get_or_insert_with(|| id.to_owned());
            }
            if verdict == "failed" {
                let failure = AuthFailure {
                    code: FailureCode::RadiusReject,
                    reason: message.to_owned(),
                };
                self.push_failure(line, source, AuthMethod::EapRadius, failure, out);
            }
            return true;
        }
        if let Some(rest) = message.strip_prefix("EAP method ") {
            let Some((eap_method, verdict)) = rest.split_once(' ') else {
                return false;
            };
            if let Some(state) = self.state(line) {
                state.eap_method = Some(eap_method.to_owned());
            }
            if verdict.starts_with("failed for peer ") {
                let radius = self.state(line).is_some_and(|state| state.radius);
                let (method, code) = if radius {
                    (AuthMethod::EapRadius, FailureCode::RadiusReject)
                } else if eap_method == "EAP_MSCHAPV2" {
                    (AuthMethod::EapMschapv2, FailureCode::EapFailure)
                } else {
                    (AuthMethod::Eap, FailureCode::EapFailure)
                };
                let failure = AuthFailure {
                    code,
                    reason: message.to_owned(),
                };
                self.push_failure(line, source, method, failure, out);
            }
            return true;
        }
        if let Some(rest) = message.strip_prefix("no trusted ") {
            if let Some(id) = rest
                .split_once_short(" public key found for '")
                .and_then(|(_, id)| id.strip_suffix('\''))
            {
                if let Some(state) = self.state(line) {
                    state
                        .identities
                        .cert_subject
                        .get_or_insert_with(|| id.to_owned());
                }
                let failure = AuthFailure {
                    code: FailureCode::CertInvalid,
                    reason: message.to_owned(),
                };
                self.push_failure(line, source, AuthMethod::Cert, failure, out);
                return true;
            }
            return false;
        }
        if message == "no matching peer config found" || message.starts_with("no peer config found")
        {
            let failure = AuthFailure {
                code: FailureCode::NoMatchingConfig,
                reason: message.to_owned(),
            };
            self.push_failure(line, source, AuthMethod::Unknown, failure, out);
            return true;
        }
        if message.starts_with("generating ") && message.contains_short("N(AUTH_FAILED)") {
            let failure = AuthFailure {
                code: FailureCode::Other,
                reason: "authentication failed (AUTH_FAILED sent to the peer)".to_owned(),
            };
            self.push_failure(line, source, AuthMethod::Unknown, failure, out);
            return true;
        }
        if message.starts_with("EAP-MS-CHAPv2 verification failed") {
            // Every wrong password counts (MSCHAPv2 allows retries within one IKE_SA), so this
            // is not deduplicated like the other failure lines.
            let failure = AuthFailure {
                code: FailureCode::EapFailure,
                reason: message.to_owned(),
            };
            if let Some(state) = self.state(line) {
                state.auth_reported = true;
            }
            self.push_auth(line, source, AuthMethod::EapMschapv2, Some(failure), out);
            return true;
        }
        if message.starts_with("parsed ") && message.contains_short("N(AUTH_FAILED)") {
            let failure = AuthFailure {
                code: FailureCode::PeerRejected,
                reason: "the peer sent AUTH_FAILED".to_owned(),
            };
            self.push_failure(line, source, AuthMethod::Unknown, failure, out);
            return true;
        }
        if message.starts_with("deleting half open IKE_SA") {
            self.push_ike(
                line,
                source,
                SaChange::Deleted,
                Some(TerminateCause::Timeout),
                None,
                out,
            );
            return true;
        }
        if message.starts_with("received AUTHENTICATION_FAILED notify error") {
            let failure = AuthFailure {
                code: FailureCode::PeerRejected,
                reason: message.to_owned(),
            };
            self.push_failure(line, source, AuthMethod::Unknown, failure, out);
            return true;
        }
        if let Some(rest) = message.strip_prefix("assigning virtual IP ") {
            let Some((ip, peer)) = rest.split_once_short(" to peer '") else {
                return false;
            };
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return false;
            };
            if let Some(state) = self.state(line)
                && let Some(id) = peer.strip_suffix('\'')
                && state.identities.user_name().is_none()
            {
                state.identities.ike_id = Some(id.to_owned());
            }
            self.push_vip(line, source, ip, LeaseChange::Assigned, out);
            return true;
        }
        if let Some(rest) = message.strip_prefix("IKE_SA ") {
            return self.handle_ike_sa(line, rest, source, out);
        }
        if let Some(rest) = message.strip_prefix("CHILD_SA ") {
            // CHILD_SA net{1} established with SPIs c1a2b3c4_i c4b3a2c1_o and TS 198.51.100.0/24 === 10.99.0.1/32
            let Some((name, child_id, rest)) = child_ref(rest) else {
                return false;
            };
            let Some(rest) = rest.strip_prefix(" established with SPIs ") else {
                return false;
            };
            let (spis, ts) = rest.split_once_short(" and TS ").unwrap_or((rest, ""));
            let mut spis = spis.split(' ');
            let spi_in = spis.next().and_then(|spi| spi.strip_suffix("_i"));
            let spi_out = spis.next().and_then(|spi| spi.strip_suffix("_o"));
            let (local_ts, remote_ts) = ts.split_once_short(" === ").unwrap_or((ts, ""));
            self.report_v1_login(line, source, out);
            let child = ChildSaEvent {
                peer: self.peer(line),
                change: SaChange::Established,
                name: Some(name.to_owned()),
                child_sa_id: Some(child_id),
                spi_in: spi_in.map(str::to_owned),
                spi_out: spi_out.map(str::to_owned),
                local_ts: non_empty(local_ts),
                remote_ts: non_empty(remote_ts),
                counters: None,
            };
            self.push(line, source, out, EventBody::ChildSa(child));
            return true;
        }
        if let Some(rest) = message.strip_prefix("closing CHILD_SA ") {
            // closing CHILD_SA net{1} with SPIs c1_i (84 bytes) c2_o (84 bytes) and TS a === b
            let Some((name, child_id, rest)) = child_ref(rest) else {
                return false;
            };
            let Some(rest) = rest.strip_prefix(" with SPIs ") else {
                return false;
            };
            let (spis, ts) = rest.split_once_short(" and TS ").unwrap_or((rest, ""));
            let (in_part, out_part) = spis.split_once_short(") ").unwrap_or((spis, ""));
            let (spi_in, bytes_in) = spi_and_bytes(in_part, "_i");
            let (spi_out, bytes_out) = spi_and_bytes(out_part.trim_end_matches(')'), "_o");
            let (local_ts, remote_ts) = ts.split_once_short(" === ").unwrap_or((ts, ""));
            let counters = match (bytes_in, bytes_out) {
                (Some(bytes_in), Some(bytes_out)) => Some(Counters {
                    bytes_in,
                    bytes_out,
                    packets_in: None,
                    packets_out: None,
                }),
                _ => None,
            };
            let child = ChildSaEvent {
                peer: self.peer(line),
                change: SaChange::Deleted,
                name: Some(name.to_owned()),
                child_sa_id: Some(child_id),
                spi_in,
                spi_out,
                local_ts: non_empty(local_ts),
                remote_ts: non_empty(remote_ts),
                counters,
            };
            self.push(line, source, out, EventBody::ChildSa(child));
            return true;
        }
        if let Some(rest) = message.strip_prefix("received DELETE for IKE_SA ") {
            let _ = rest;
            if let Some(state) = self.state(line) {
                state
                    .delete_cause
                    .get_or_insert(TerminateCause::UserRequest);
            }
            return true;
        }
        if message.starts_with("deleting IKE_SA ") {
            let Some(state) = self.state(line) else {
                return true;
            };
            let cause = *state.delete_cause.get_or_insert(TerminateCause::AdminReset);
            // IKEv1 logs no `IKE_SA deleted`: this is its end.
            if state.ikev1 && !state.end_reported {
                state.end_reported = true;
                if std::mem::take(&mut state.v1_waiting) {
                    self.report_v1_failure(line, source, out);
                } else if state.established {
                    state.established = false;
                    // A reauthentication's old IKE_SA going is not the session's end.
                    if state.rekeyed_into.is_none() {
                        self.push_ike(line, source, SaChange::Deleted, Some(cause), None, out);
                    }
                }
            }
            return true;
        }
        if let Some(state) = self.state(line)
            && state.v1_waiting
            && state.child_failure.is_none()
            && ikev1::quick_mode_failure(message)
        {
            state.child_failure = Some(message.to_owned());
            return true;
        }
        // The peer stopped answering: IKEv2 gives up after its retransmits, IKEv1's dead peer
        // detection times out (and charon destroys the IKE_SA without another line).
        if (message.starts_with("giving up after ") && message.ends_with(" retransmits"))
            || message.starts_with("DPD check timed out")
        {
            self.peer_gone(line, source, message, out);
            return true;
        }
        if message.starts_with("detected reauth of existing IKE_SA") {
            return self.handle_v1_reauth(line, source, out);
        }
        if let Some(rest) = message.strip_prefix("lease ") {
            // lease 10.99.0.1 by 'client1@psk.vpn.test' went offline
            let Some((ip, rest)) = rest.split_once_short(" by '") else {
                return false;
            };
            let Some(id) = rest.strip_suffix("' went offline") else {
                return false;
            };
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return false;
            };
            let mut peer = self.peer(line);
            // The lease line is the last word on an IKE_SA that may already be gone.
            if peer.identities.user_name().is_none() {
                peer.identities.ike_id = Some(id.to_owned());
            }
            let vip = VirtualIpEvent {
                peer,
                ip,
                change: LeaseChange::Released,
            };
            self.push(line, source, out, EventBody::VirtualIp(vip));
            return true;
        }
        false
    }

    /// `IKE_SA rw-psk[1] established between …`, `IKE_SA deleted`, `IKE_SA rw[2] rekeyed …`.
    fn handle_ike_sa(
        &mut self,
        line: &Line<'_>,
        rest: &str,
        source: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        if rest == "deleted" {
            let Some(key) = line.key else { return false };
            let Some(state) = self.sas.get(&key) else {
                return false;
            };
            if state.rekeyed_into.is_none() && !state.end_reported {
                let cause = state.delete_cause.unwrap_or(TerminateCause::Other);
                self.push_ike(line, source, SaChange::Deleted, Some(cause), None, out);
            }
            // Keep the state a little longer: a `lease … went offline` line may follow.
            if let Some(state) = self.sas.get_mut(&key) {
                state.established = false;
            }
            return true;
        }
        let Some((name_and_id, tail)) = rest.split_once(' ') else {
            return false;
        };
        let Some((name, id)) = ike_sa_ref(name_and_id) else {
            return false;
        };
        if let Some(between) = tail.strip_prefix("established between ") {
            let Some(state) = self.state(line) else {
                return false;
            };
            state.connection = Some(name.to_owned());
            if let Some((local, remote)) = endpoint_pair(between) {
                state.server.ip = local.0.or(state.server.ip);
                if remote.0.is_some() && state.client.ip != remote.0 {
                    state.client = Endpoint {
                        ip: remote.0,
                        port: None,
                    };
                }
                if let Some(remote_id) = remote.1 {
                    state.identities.ike_id = Some(remote_id.to_owned());
                }
            }
            if state.ikev1 {
                // Main mode is done; the login is reported with the first CHILD_SA.
                state.v1_waiting = true;
                return true;
            }
            state.established = true;
            self.push_ike(line, source, SaChange::Established, None, None, out);
            return true;
        }
        if tail.starts_with("rekeyed between ") {
            // Logged in the context of the old IKE_SA, naming the new one. Without that
            // context (no `ike_name`), the old one is the established SA with the same client.
            let client_ip = tail
                .strip_prefix("rekeyed between ")
                .and_then(endpoint_pair)
                .and_then(|(_, remote)| remote.0);
            let old_key = line.key.filter(|key| *key != SaKey::Id(id)).or_else(|| {
                self.sas
                    .iter()
                    .filter(|(key, state)| {
                        **key != SaKey::Id(id)
                            && state.established
                            && state.client.ip.is_some()
                            && state.client.ip == client_ip
                    })
                    .max_by_key(|(_, state)| state.last_seq)
                    .map(|(key, _)| *key)
            });
            let Some(old_key) = old_key else { return false };
            let Some(old) = self.sas.get_mut(&old_key) else {
                return false;
            };
            old.rekeyed_into = Some(id);
            let mut successor = old.clone();
            successor.rekeyed_into = None;
            successor.delete_cause = None;
            successor.connection = Some(name.to_owned());
            self.sas.insert(SaKey::Id(id), successor);
            let body = EventBody::IkeSa(IkeSaEvent {
                peer: self.peer_for(Some(old_key)),
                change: SaChange::Rekeyed,
                new_ike_sa_id: Some(id),
                cause: None,
            });
            self.push(line, source, out, body);
            return true;
        }
        false
    }

    /// The peer of an IKE_SA stopped answering: a session ends as lost, a login still
    /// negotiating (or an IKEv1 one waiting for quick mode) failed.
    fn peer_gone(&mut self, line: &Line<'_>, source: &str, message: &str, out: &mut Vec<Event>) {
        let (waiting, established) = match self.state(line) {
            Some(state) if state.end_reported => return,
            Some(state) => {
                let waiting = std::mem::take(&mut state.v1_waiting);
                let established = state.established;
                if waiting {
                    state
                        .child_failure
                        .get_or_insert_with(|| message.to_owned());
                }
                // Keep the state a little longer: a `lease … went offline` line follows.
                state.established = false;
                state.end_reported = waiting || established;
                (waiting, established)
            }
            None => (false, false),
        };
        if waiting {
            self.report_v1_failure(line, source, out);
        } else if established {
            self.push_ike(
                line,
                source,
                SaChange::Lost,
                Some(TerminateCause::LostService),
                None,
                out,
            );
        } else {
            let failure = AuthFailure {
                code: FailureCode::Timeout,
                reason: message.to_owned(),
            };
            self.push_failure(line, source, AuthMethod::Unknown, failure, out);
        }
    }

    fn peer(&self, line: &Line<'_>) -> Peer {
        self.peer_for(line.key)
    }

    fn peer_for(&self, key: Option<SaKey>) -> Peer {
        let ike_sa_id = match key {
            Some(SaKey::Id(id)) => Some(id),
            _ => None,
        };
        match key.and_then(|key| self.sas.get(&key)) {
            Some(state) => Peer {
                connection: state.connection.clone(),
                ike_sa_id,
                client: state.client,
                server: state.server,
                identities: state.identities.clone(),
            },
            None => Peer {
                ike_sa_id,
                ..Peer::default()
            },
        }
    }

    fn push_ike(
        &mut self,
        line: &Line<'_>,
        source: &str,
        change: SaChange,
        cause: Option<TerminateCause>,
        new_ike_sa_id: Option<u64>,
        out: &mut Vec<Event>,
    ) {
        let body = EventBody::IkeSa(IkeSaEvent {
            peer: self.peer(line),
            change,
            new_ike_sa_id,
            cause,
        });
        self.push(line, source, out, body);
    }

    fn push_vip(
        &mut self,
        line: &Line<'_>,
        source: &str,
        ip: IpAddr,
        change: LeaseChange,
        out: &mut Vec<Event>,
    ) {
        let body = EventBody::VirtualIp(VirtualIpEvent {
            peer: self.peer(line),
            ip,
            change,
        });
        self.push(line, source, out, body);
    }

    fn push_auth(
        &mut self,
        line: &Line<'_>,
        source: &str,
        method: AuthMethod,
        failure: Option<AuthFailure>,
        out: &mut Vec<Event>,
    ) {
        let outcome = if failure.is_some() {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let body = EventBody::Auth(Auth {
            peer: self.peer(line),
            method,
            outcome,
            failure,
        });
        self.push(line, source, out, body);
    }

    /// Emits an auth failure unless one was already emitted for this IKE_SA: charon often
    /// logs a failure in several lines (RADIUS reject, EAP method failed, AUTH_FAILED sent),
    /// and the first one is the most specific.
    fn push_failure(
        &mut self,
        line: &Line<'_>,
        source: &str,
        method: AuthMethod,
        failure: AuthFailure,
        out: &mut Vec<Event>,
    ) {
        let method = match self.state(line) {
            Some(state) if state.auth_reported => return,
            Some(state) => {
                state.auth_reported = true;
                if method == AuthMethod::Unknown && state.radius {
                    AuthMethod::EapRadius
                } else {
                    method
                }
            }
            None => method,
        };
        self.push_auth(line, source, method, Some(failure), out);
    }

    fn push(&self, line: &Line<'_>, source: &str, out: &mut Vec<Event>, body: EventBody) {
        let part = out
            .iter()
            .rev()
            .take_while(|event| event.id.seq == line.seq && event.id.source == source)
            .count();
        out.push(Event {
            id: EventId::new(source, line.seq, u16::try_from(part).unwrap_or(u16::MAX)),
            timestamp: line.timestamp,
            dataset: super::Format::Charon.dataset().to_owned(),
            observer: Observer {
                hostname: line.hostname.map(str::to_owned),
                product: Some("strongswan".to_owned()),
            },
            original: line.original.to_owned(),
            session_id: None,
            source_geo: None,
            body,
        });
    }

    /// Forgets the least recently seen IKE_SAs once too many are tracked, so that a gateway
    /// with millions of short connections does not grow the parser without bound.
    fn evict(&mut self, seq: u64) {
        if self.sas.len() <= MAX_TRACKED_SAS {
            return;
        }
        let mut last_seqs: Vec<u64> = self.sas.values().map(|state| state.last_seq).collect();
        let cut_idx = last_seqs.len() / 4;
        let (_, cut, _) = last_seqs.select_nth_unstable(cut_idx);
        let cut = (*cut).min(seq);
        self.sas.retain(|_, state| state.last_seq > cut);
        let sas = &self.sas;
        self.threads.retain(|_, key| sas.contains_key(key));
        self.client_ids
            .retain(|_, id| sas.contains_key(&SaKey::Id(*id)));
    }
}

fn starts_with_thread_tag(text: &str) -> bool {
    thread_tag(text).is_some()
}

/// `13[IKE] rest` (or `13[IKE1]` with `log_level = yes`) → (13, "rest").
fn thread_tag(text: &str) -> Option<(u16, &str)> {
    let bytes = text.as_bytes();
    let digits = bytes
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 || digits > 5 || bytes.get(digits) != Some(&b'[') {
        return None;
    }
    let close = text[digits..].find(']')? + digits;
    let group = &text[digits + 1..close];
    if group.is_empty()
        || group.len() > 8
        || !group.bytes().all(|byte| byte.is_ascii_alphanumeric())
    {
        return None;
    }
    let thread = text[..digits].parse().ok()?;
    let rest = text[close + 1..]
        .strip_prefix(' ')
        .unwrap_or(&text[close + 1..]);
    Some((thread, rest))
}

/// `<rw-psk|3> rest` → (conn, 3); `<3> rest` → (none, 3); otherwise no context.
fn line_context(text: &str) -> (LineContext<'_>, &str) {
    let none = LineContext {
        connection: None,
        id: None,
    };
    let Some(inner_and_rest) = text.strip_prefix('<') else {
        return (none, text);
    };
    let Some((inner, rest)) = inner_and_rest.split_once_short("> ") else {
        return (none, text);
    };
    let (connection, id) = match inner.rsplit_once('|') {
        Some((connection, id)) => (Some(connection), id),
        None => (None, inner),
    };
    match id.parse::<u64>() {
        Ok(id) => (
            LineContext {
                connection,
                id: Some(id),
            },
            rest,
        ),
        Err(_) => (none, text),
    }
}

/// `rw-psk[12]` → ("rw-psk", 12).
fn ike_sa_ref(text: &str) -> Option<(&str, u64)> {
    let (name, id) = text.strip_suffix(']')?.rsplit_once('[')?;
    Some((name, id.parse().ok()?))
}

/// The first `name[id]` IKE_SA reference in a message that names one (`received DELETE for
/// IKE_SA rw-psk[1]`, `IKE_SA rw-psk[1] established …`, `deleting IKE_SA rw[1] between …`).
fn ike_sa_ref_in(message: &str) -> Option<(&str, u64)> {
    let at = message.find_short("IKE_SA ")?;
    let word = message[at + 7..].split(' ').next()?;
    ike_sa_ref(word)
}

/// `net{3} rest` → ("net", 3, " rest").
fn child_ref(text: &str) -> Option<(&str, u64, &str)> {
    let open = text.find('{')?;
    let close = open + text[open..].find('}')?;
    let id = text[open + 1..close].parse().ok()?;
    Some((&text[..open], id, &text[close + 1..]))
}

/// `192.0.2.11[4500]` → endpoint with port.
fn endpoint_with_port(text: &str) -> Option<Endpoint> {
    let (ip, port) = text.strip_suffix(']')?.split_once('[')?;
    Some(Endpoint::new(ip.parse().ok()?, Some(port.parse().ok()?)))
}

/// An address with an identity in brackets: `192.0.2.1[gw.vpn.test]`.
type AddrId<'a> = (Option<IpAddr>, Option<&'a str>);

/// `192.0.2.1[gw.vpn.test]...192.0.2.11[client1@psk.vpn.test]` → both sides.
fn endpoint_pair(text: &str) -> Option<(AddrId<'_>, AddrId<'_>)> {
    let (local, remote) = text.split_once_short("]...")?;
    let (local_ip, local_id) = local.split_once('[')?;
    let remote = remote.strip_suffix(']').unwrap_or(remote);
    let (remote_ip, remote_id) = remote.split_once('[')?;
    Some((
        (local_ip.parse().ok(), Some(local_id)),
        (remote_ip.parse().ok(), Some(remote_id)),
    ))
}

/// `c1a2b3c4_i (84 bytes` → (Some("c1a2b3c4"), Some(84)).
fn spi_and_bytes(text: &str, suffix: &str) -> (Option<String>, Option<u64>) {
    let (spi, bytes) = text.split_once_short(" (").unwrap_or((text, ""));
    let spi = spi.strip_suffix(suffix).map(str::to_owned);
    let bytes = bytes
        .strip_suffix(" bytes")
        .and_then(|bytes| bytes.parse().ok());
    (spi, bytes)
}

/// `192.0.2.11 is initiating an IKE_SA` (IKEv2), `… is initiating a Main Mode IKE_SA` (IKEv1).
fn initiating_client(message: &str) -> Option<IpAddr> {
    if !message.ends_with("IKE_SA") {
        return None;
    }
    let (ip, what) = message.split_once_short(" is initiating a")?;
    if !what.ends_with("IKE_SA") {
        return None;
    }
    ip.parse().ok()
}

/// The client address of `received packet: from 192.0.2.11[500] to …`.
fn packet_from(message: &str) -> Option<Endpoint> {
    let rest = message.strip_prefix("received packet: from ")?;
    endpoint_with_port(rest.split(' ').next()?)
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

mod ikev1;

#[cfg(test)]
mod tests;
