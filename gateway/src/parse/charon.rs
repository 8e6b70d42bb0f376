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
//!
//! A message is read by the first of the message families in [`FAMILIES`] that knows it: the
//! packets (`received packet: from`), the IKE_SA's life (initiating, established, rekeyed,
//! deleted), its CHILD_SAs, how the peer identified and authenticated, EAP and RADIUS, the
//! failures, the virtual IP leases, the deletes and dead peers, and IKEv1's own lines
//! (module `ikev1`). Each family has its module: `sa` (the SAs, leases and ends), `auth`
//! (identities, methods, failures) and `ikev1`.

use std::collections::HashMap;
use std::net::IpAddr;

use model::{
    Auth, AuthFailure, AuthMethod, Endpoint, Event, EventBody, Identities, IkeSaEvent, LeaseChange,
    Peer, RejectReason, SaChange, TerminateCause, VirtualIpEvent,
};

use super::message::{DaemonParser, Message, Origin, quarter_cut};
use super::text::ShortStr;
use super::{Format, LineOutcome};

mod auth;
mod ikev1;
mod sa;

/// How many IKE_SAs the parser remembers before it forgets the least recently seen.
const MAX_TRACKED_SAS: usize = 65_536;

/// The thread of messages without `NN[GRP]` tag (only through the `syslog` format).
const UNKNOWN_THREAD: u16 = u16::MAX;

const PRODUCT: &str = "strongswan";

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
    /// The last `selected proposal: IKE:…` and `ESP:…`/`AH:…`, for the events that bring
    /// the IKE_SA and its next CHILD_SA up.
    ike_proposal: Option<String>,
    child_proposal: Option<String>,
    last_seq: u64,
}

/// Longest `selected proposal` kept (a real one is under 100 characters).
const MAX_PROPOSAL_LEN: usize = 256;

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
    message: &'a Message<'a>,
    origin: Origin<'a>,
    key: Option<SaKey>,
    /// The line named its connection in its context (`<rw-psk|3>`, not `<3>`).
    named_context: bool,
}

/// A family of messages: reads `text` (the message after its context) and returns
/// `Some(understood)` if the message is one of the family's, `None` to leave it to the next.
type Family = fn(&mut CharonParser, &Line<'_>, &str, &mut Vec<Event>) -> Option<bool>;

/// The message families, in the order they are tried: roughly by how often each appears in a
/// busy gateway's log. No message is of two families (their prefixes differ), except that
/// an IKEv1 quick mode failure (`received … error notify`) is only looked for once no other
/// family took the message.
const FAMILIES: [Family; 10] = [
    CharonParser::packet,
    CharonParser::ike_sa,
    CharonParser::child_sa,
    CharonParser::identity,
    CharonParser::eap_radius,
    CharonParser::failure,
    CharonParser::lease,
    CharonParser::end,
    CharonParser::proposal,
    CharonParser::ikev1,
];

impl DaemonParser for CharonParser {
    /// `charon`, `charon-systemd`, `charon-cmd`.
    fn is_own_program(program: &str) -> bool {
        program.starts_with("charon")
    }

    fn is_message_start(text: &str) -> bool {
        thread_tag(text).is_some()
    }

    /// A line of a charon log file has a `NN[GRP]` thread tag.
    fn file_message(text: &str) -> Result<&str, LineOutcome> {
        match thread_tag(text) {
            Some(_) => Ok(text),
            None => Err(LineOutcome::Rejected(
                RejectReason::Malformed,
                "not a charon log line: no `NN[GRP]` thread tag".to_owned(),
            )),
        }
    }

    /// A message without `NN[GRP]` thread tag (charon-systemd writes none to the journal,
    /// read through the `syslog` format) is read as if all such messages came from one thread.
    fn read_message(&mut self, message: &Message<'_>, source: &str, out: &mut Vec<Event>) -> bool {
        let (thread, rest) = thread_tag(message.text).unwrap_or((UNKNOWN_THREAD, message.text));
        let (context, text) = line_context(rest);
        let key = self.resolve_key(thread, &context, text);
        if let Some(key) = key {
            let state = self.sas.entry(key).or_default();
            state.last_seq = message.seq;
            if let Some(connection) = context.connection
                && state.connection.as_deref() != Some(connection)
            {
                state.connection = Some(connection.to_owned());
            }
        }
        let line = Line {
            message,
            origin: Origin {
                source,
                dataset: Format::Charon.dataset(),
                product: PRODUCT,
            },
            key,
            named_context: context.connection.is_some(),
        };
        self.handle(&line, text, out)
    }

    /// Forgets the least recently seen IKE_SAs once too many are tracked, so that a gateway
    /// with millions of short connections does not grow the parser without bound.
    fn evict(&mut self, seq: u64) {
        if self.sas.len() <= MAX_TRACKED_SAS {
            return;
        }
        let cut = quarter_cut(self.sas.values().map(|state| state.last_seq), seq);
        self.sas.retain(|_, state| state.last_seq > cut);
        let sas = &self.sas;
        self.threads.retain(|_, key| sas.contains_key(key));
        self.client_ids
            .retain(|_, id| sas.contains_key(&SaKey::Id(*id)));
    }
}

impl CharonParser {
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

    /// Reads the message with the first family that knows it; returns whether one did.
    fn handle(&mut self, line: &Line<'_>, text: &str, out: &mut Vec<Event>) -> bool {
        FAMILIES
            .iter()
            .find_map(|family| family(self, line, text, out))
            .unwrap_or(false)
    }

    /// `selected proposal: IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519`
    /// (and `ESP:…`, `AH:…`): kept for the event that brings the SA up.
    fn proposal(&mut self, line: &Line<'_>, text: &str, _: &mut Vec<Event>) -> Option<bool> {
        let proposal = text.strip_prefix("selected proposal: ")?.trim();
        let Some((protocol, algorithms)) = proposal.split_once(':') else {
            return Some(false);
        };
        if algorithms.is_empty() || proposal.len() > MAX_PROPOSAL_LEN {
            return Some(false);
        }
        let Some(state) = self.state(line) else {
            return Some(false);
        };
        match protocol {
            "IKE" => state.ike_proposal = Some(proposal.to_owned()),
            "ESP" | "AH" => state.child_proposal = Some(proposal.to_owned()),
            _ => return Some(false),
        }
        Some(true)
    }

    /// `received packet: from 192.0.2.11[4500] to 192.0.2.1[4500] (…)`: both endpoints.
    fn packet(&mut self, line: &Line<'_>, text: &str, _: &mut Vec<Event>) -> Option<bool> {
        let rest = text.strip_prefix("received packet: from ")?;
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
        Some(true)
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
        change: SaChange,
        cause: Option<TerminateCause>,
        new_ike_sa_id: Option<u64>,
        out: &mut Vec<Event>,
    ) {
        let proposal = match change {
            SaChange::Established => self
                .state(line)
                .and_then(|state| state.ike_proposal.clone()),
            _ => None,
        };
        let body = EventBody::IkeSa(IkeSaEvent {
            peer: self.peer(line),
            change,
            new_ike_sa_id,
            cause,
            proposal,
        });
        self.push(line, out, body);
    }

    fn push_vip(&mut self, line: &Line<'_>, ip: IpAddr, change: LeaseChange, out: &mut Vec<Event>) {
        let body = EventBody::VirtualIp(VirtualIpEvent {
            peer: self.peer(line),
            ip,
            change,
        });
        self.push(line, out, body);
    }

    fn push_auth(
        &mut self,
        line: &Line<'_>,
        method: AuthMethod,
        failure: Option<AuthFailure>,
        out: &mut Vec<Event>,
    ) {
        let body = EventBody::Auth(Auth::attempt(self.peer(line), method, failure));
        self.push(line, out, body);
    }

    /// Emits an auth failure unless one was already emitted for this IKE_SA: charon often
    /// logs a failure in several lines (RADIUS reject, EAP method failed, AUTH_FAILED sent),
    /// and the first one is the most specific.
    fn push_failure(
        &mut self,
        line: &Line<'_>,
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
        self.push_auth(line, method, Some(failure), out);
    }

    fn push(&self, line: &Line<'_>, out: &mut Vec<Event>, body: EventBody) {
        line.message.push(&line.origin, out, body);
    }
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

#[cfg(test)]
mod tests;
