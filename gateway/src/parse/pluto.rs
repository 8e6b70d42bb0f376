//! Libreswan pluto log lines (its `logfile=`, or syslog lines of `pluto`), Libreswan 3.x to 5.x.
//!
//! A line names the connection, its instance, the peer and the state serial:
//! `"l2tp-psk"[3] 203.0.113.5 #7: STATE_MAIN_R3: sent MR3, ISAKMP SA established {…}`. Every
//! pluto state, IKE SA (ISAKMP SA in IKEv1) or Child SA (IPsec SA), has its own serial, so the
//! parser keeps a small state per serial: its kind, its IKE SA (a Child SA's parent), the peer's
//! address and identities. IKEv1 does not name the parent of a Quick Mode state; it is the
//! newest IKE SA of the same connection instance.
//!
//! What becomes an event: IKE SAs connecting, established (with an [`Auth`] success for the
//! method that `auth=` / `authenticated … using` names), deleted or lost (DPD); Child SAs
//! established and deleted (with the `ESP traffic information` counters that follow the
//! delete); XAUTH results; authentication failures; and address-pool leases, which pluto only
//! logs at debug level (`| new lease 192.0.2.10 from addresspool …`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use model::{
    Auth, AuthFailure, AuthMethod, ChildSaEvent, Counters, Endpoint, Event, EventBody, FailureCode,
    Identities, IkeSaEvent, LeaseChange, Outcome, Peer, SaChange, TerminateCause, VirtualIpEvent,
};

use super::message::{DaemonParser, Message, Origin, quarter_cut};
use super::text::ShortStr;
use super::{Format, LineOutcome};

/// How many pluto states the parser remembers before it forgets the least recently seen.
const MAX_TRACKED_STATES: usize = 65_536;

const PRODUCT: &str = "libreswan";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ike,
    Child,
}

/// What the parser knows about one pluto state (`#N`).
#[derive(Debug, Default, Clone)]
struct State {
    kind: Option<Kind>,
    /// For a Child SA: the serial of its IKE SA.
    parent: Option<u64>,
    connection: Option<String>,
    /// `"conn"[3]`: the instance, for finding the newest IKE SA of an IKEv1 Quick Mode.
    instance: Option<String>,
    client: Endpoint,
    identities: Identities,
    method: Option<AuthMethod>,
    local_ts: Option<String>,
    remote_ts: Option<String>,
    connecting_reported: bool,
    auth_reported: bool,
    established: bool,
    /// A delete of this established Child SA was logged; its counters line comes next.
    deleting: bool,
    /// The SA is gone (deleted or lost); later lines about it emit nothing more.
    ended: bool,
    delete_cause: Option<TerminateCause>,
    last_seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct PlutoParser {
    states: HashMap<u64, State>,
    /// Connection instance → the newest IKE SA serial seen on it.
    newest_ike: HashMap<String, u64>,
}

/// The prefix of a pluto message: `"conn"[3] 203.0.113.5 #7: `.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Prefix<'a> {
    connection: Option<&'a str>,
    instance: Option<&'a str>,
    client: Option<Endpoint>,
    serial: Option<u64>,
}

/// The pieces of one line that every handler needs.
struct Line<'a, 'm> {
    message: &'m Message<'a>,
    origin: Origin<'m>,
    prefix: Prefix<'m>,
}

impl DaemonParser for PlutoParser {
    fn is_own_program(program: &str) -> bool {
        program == "pluto"
    }

    fn is_message_start(text: &str) -> bool {
        starts_like_pluto(text)
    }

    /// pluto's own logfile separates its timestamp with a colon: `Nov 25 09:33:12.123: …`.
    fn file_message(text: &str) -> Result<&str, LineOutcome> {
        Ok(text.strip_prefix(": ").unwrap_or(text))
    }

    fn read_message(&mut self, message: &Message<'_>, source: &str, out: &mut Vec<Event>) -> bool {
        let (prefix, text) = split_prefix(message.text);
        let line = Line {
            message,
            origin: Origin {
                source,
                dataset: Format::Pluto.dataset(),
                product: PRODUCT,
            },
            prefix,
        };
        if let Some(serial) = prefix.serial {
            self.touch(serial, &prefix, message.seq);
        }
        self.handle(&line, text.trim_start(), out)
    }

    fn evict(&mut self, seq: u64) {
        if self.states.len() <= MAX_TRACKED_STATES && self.newest_ike.len() <= MAX_TRACKED_STATES {
            return;
        }
        let cut = quarter_cut(self.states.values().map(|state| state.last_seq), seq);
        self.states.retain(|_, state| state.last_seq > cut);
        let states = &self.states;
        self.newest_ike.retain(|instance, serial| {
            states
                .get(serial)
                .is_some_and(|state| state.instance.as_deref() == Some(instance.as_str()))
        });
    }
}

impl PlutoParser {
    /// Creates or updates the state a line names with what its prefix says.
    fn touch(&mut self, serial: u64, prefix: &Prefix<'_>, seq: u64) {
        let state = self.states.entry(serial).or_default();
        state.last_seq = seq;
        if let Some(connection) = prefix.connection
            && state.connection.as_deref() != Some(connection)
        {
            state.connection = Some(connection.to_owned());
        }
        if let (Some(connection), Some(instance)) = (prefix.connection, prefix.instance) {
            let key = format!("\"{connection}\"[{instance}]");
            if state.instance.as_deref() != Some(key.as_str()) {
                state.instance = Some(key);
            }
        }
        if let Some(client) = prefix.client
            && client.ip.is_some()
            && client.ip != state.client.ip
        {
            state.client = client;
        }
    }

    fn state(&mut self, line: &Line<'_, '_>) -> Option<&mut State> {
        line.prefix
            .serial
            .and_then(|serial| self.states.get_mut(&serial))
    }

    fn set_kind(&mut self, serial: Option<u64>, kind: Kind) {
        let Some(serial) = serial else { return };
        let Some(state) = self.states.get_mut(&serial) else {
            return;
        };
        state.kind = Some(kind);
        if kind == Kind::Ike
            && let Some(instance) = state.instance.clone()
        {
            self.newest_ike.insert(instance, serial);
        }
        if kind == Kind::Child && state.parent.is_none() {
            let parent = state
                .instance
                .as_ref()
                .and_then(|instance| self.newest_ike.get(instance))
                .copied();
            if let Some(state) = self.states.get_mut(&serial) {
                state.parent = parent;
            }
        }
    }

    /// Handles the message; returns whether it was one the parser understands.
    fn handle(&mut self, line: &Line<'_, '_>, text: &str, out: &mut Vec<Event>) -> bool {
        if let Some(debug) = text.strip_prefix("| ") {
            return self.handle_debug(line, debug, out);
        }
        // Libreswan 3.x prefixes state transitions: `STATE_MAIN_R3: sent MR3, ISAKMP SA …`.
        let (state_name, body) = match text.split_once_short(": ") {
            Some((name, body)) if name.starts_with("STATE_") && !name.contains(' ') => {
                (Some(name), body)
            }
            _ => (None, text),
        };
        if let Some(name) = state_name {
            if name.contains_short("QUICK") || name.contains_short("CHILD") {
                self.set_kind(line.prefix.serial, Kind::Child);
            } else if name.contains_short("MAIN")
                || name.contains_short("AGGR")
                || name.contains_short("PARENT")
            {
                self.set_kind(line.prefix.serial, Kind::Ike);
            }
        }
        if body.contains_short("ISAKMP SA established") || body.contains_short("established IKE SA")
        {
            self.set_kind(line.prefix.serial, Kind::Ike);
            self.note_method(line, body);
            self.established_ike(line, out);
            return true;
        }
        if body.contains_short("IPsec SA established")
            || body.contains_short("established Child SA")
        {
            self.established_child(line, body, out);
            return true;
        }
        if body.starts_with("responding to Main Mode")
            || body.starts_with("responding to Aggressive Mode")
            || body.starts_with("initiating IKEv1")
            || body.starts_with("initiating Main Mode")
            || body.starts_with("initiating Aggressive Mode")
            || body.starts_with("initiating IKEv2")
            || body.starts_with("initiating v2 parent SA")
            || state_name.is_some_and(|name| name == "STATE_PARENT_R1")
        {
            self.set_kind(line.prefix.serial, Kind::Ike);
            if let Some(client) = unknown_peer(body)
                && let Some(state) = self.state(line)
                && state.client.ip == client.ip
            {
                state.client = client;
            }
            let first = self
                .state(line)
                .is_some_and(|state| !std::mem::replace(&mut state.connecting_reported, true));
            if first || line.prefix.serial.is_none() {
                self.push_ike(line, SaChange::Connecting, None, out);
            }
            return true;
        }
        if body.starts_with("responding to Quick Mode") {
            self.set_kind(line.prefix.serial, Kind::Child);
            return true;
        }
        if let Some(ts) = body.strip_prefix("us: ") {
            if let Some(state) = self.state(line) {
                state.local_ts = Some(ts.trim().to_owned());
            }
            return true;
        }
        if let Some(ts) = body.strip_prefix("them: ") {
            if let Some(state) = self.state(line) {
                state.remote_ts = Some(ts.trim().to_owned());
            }
            return true;
        }
        if let Some(id) = body
            .strip_prefix("Peer ID is ")
            .or_else(|| body.strip_prefix("IKEv2 mode peer ID is "))
        {
            // Peer ID is ID_FQDN: '@road'
            if let Some(id) = quoted(id)
                && let Some(state) = self.state(line)
            {
                state.identities.ike_id = Some(id.to_owned());
            }
            return true;
        }
        if body.starts_with("authenticated peer ")
            || body.starts_with("Authenticated using ")
            || body.starts_with("authenticated using ")
        {
            self.note_method(line, body);
            return true;
        }
        if let Some(rest) = body.strip_prefix("XAUTH: User ") {
            return self.handle_xauth(line, rest, out);
        }
        if body.starts_with("DPD: No response from peer")
            || (body.contains_short("liveness")
                && (body.contains_short("no response") || body.contains_short("timed out")))
        {
            self.lost(line, out);
            return true;
        }
        if body.starts_with("received Delete SA") || body.starts_with("received Delete payload") {
            // received Delete SA(0xf2cdd2ca) payload: deleting IPSEC State #29
            let target = last_serial(body).or(line.prefix.serial);
            if let Some(state) = target.and_then(|serial| self.states.get_mut(&serial)) {
                state
                    .delete_cause
                    .get_or_insert(TerminateCause::UserRequest);
            }
            return true;
        }
        if let Some(rest) = body.strip_prefix("deleting ") {
            return self.deleting(line, rest, out);
        }
        if let Some(rest) = body.strip_prefix("ESP traffic information: ") {
            self.traffic(line, rest, out);
            return true;
        }
        if let Some(failure) = failure_of(body) {
            let (method, code) = failure;
            let failure = AuthFailure {
                code,
                reason: body.to_owned(),
            };
            self.push_failure(line, method, failure, out);
            return true;
        }
        false
    }

    /// Remembers the authentication method an established/authenticated line names.
    fn note_method(&mut self, line: &Line<'_, '_>, body: &str) {
        let method = method_of(body);
        let id = body
            .split_once_short(" and ID_")
            .and_then(|(_, rest)| quoted(rest))
            .map(str::to_owned);
        let certificate = body
            .split_once_short("certificate '")
            .and_then(|(_, rest)| rest.split_once('\''))
            .map(|(name, _)| name.to_owned());
        if let Some(state) = self.state(line) {
            if method.is_some() {
                state.method = method;
            }
            if id.is_some() {
                state.identities.ike_id = id;
            }
            if certificate.is_some() {
                state.identities.cert_subject = certificate;
            }
        }
    }

    fn established_ike(&mut self, line: &Line<'_, '_>, out: &mut Vec<Event>) {
        let Some(state) = self.state(line) else {
            // No serial: still say what happened.
            self.push_ike(line, SaChange::Established, None, out);
            return;
        };
        // Libreswan 3.x logs `ISAKMP SA established` again after XAUTH and ModeCfg.
        if state.established {
            return;
        }
        state.established = true;
        if !state.auth_reported {
            state.auth_reported = true;
            let method = state.method.unwrap_or(AuthMethod::Unknown);
            self.push_auth(line, method, None, out);
        }
        self.push_ike(line, SaChange::Established, None, out);
    }

    fn established_child(&mut self, line: &Line<'_, '_>, body: &str, out: &mut Vec<Event>) {
        self.set_kind(line.prefix.serial, Kind::Child);
        // IKEv2: `established Child SA using #1; IPsec tunnel [a] -> [b] {ESP=>0x… <0x… …}`
        let parent = body
            .split_once_short(" using #")
            .and_then(|(_, rest)| leading_number(rest));
        let (local_ts, remote_ts) = match body.split_once_short(" [") {
            Some((_, rest)) => match rest.split_once_short("] -> [") {
                Some((local, rest)) => (
                    Some(local.to_owned()),
                    rest.split_once(']').map(|(remote, _)| remote.to_owned()),
                ),
                None => (None, None),
            },
            None => (None, None),
        };
        let details = body.split_once('{').map_or("", |(_, rest)| rest);
        let details = details.strip_suffix('}').unwrap_or(details);
        let mut spi_in = None;
        let mut spi_out = None;
        let mut nat_client = None;
        let mut username = None;
        for word in details.split(' ') {
            if let Some((_, spi)) = word.split_once_short("=>0x") {
                spi_out = Some(spi.to_owned());
            } else if let Some(spi) = word.strip_prefix("<0x") {
                spi_in = Some(spi.to_owned());
            } else if let Some(natd) = word.strip_prefix("NATD=") {
                nat_client = natd.parse::<SocketAddr>().ok();
            } else if let Some(user) = word.strip_prefix("username=") {
                username = Some(user.to_owned());
            }
        }
        let Some(state) = self.state(line) else {
            let child = ChildSaEvent {
                peer: self.peer(line, None),
                change: SaChange::Established,
                name: line.prefix.connection.map(str::to_owned),
                child_sa_id: None,
                spi_in,
                spi_out,
                local_ts,
                remote_ts,
                counters: None,
                proposal: None,
            };
            line.message
                .push(&line.origin, out, EventBody::ChildSa(child));
            return;
        };
        if state.established {
            return;
        }
        state.established = true;
        if parent.is_some() {
            state.parent = parent;
        }
        if let Some(client) = nat_client
            && state.client.ip.is_none_or(|ip| ip == client.ip())
        {
            state.client = Endpoint::new(client.ip(), Some(client.port()));
        }
        if let Some(user) = username {
            state.identities.xauth_id = Some(user);
        }
        let local_ts = local_ts.or_else(|| state.local_ts.clone());
        let remote_ts = remote_ts.or_else(|| state.remote_ts.clone());
        let name = state.connection.clone();
        let child = ChildSaEvent {
            peer: self.peer(line, line.prefix.serial),
            change: SaChange::Established,
            name,
            child_sa_id: line.prefix.serial,
            spi_in,
            spi_out,
            local_ts,
            remote_ts,
            counters: None,
            proposal: None,
        };
        line.message
            .push(&line.origin, out, EventBody::ChildSa(child));
    }

    /// `XAUTH: User alice: Authentication Successful` / `…: Authentication Failed: …`.
    fn handle_xauth(&mut self, line: &Line<'_, '_>, rest: &str, out: &mut Vec<Event>) -> bool {
        let Some((user, verdict)) = rest.split_once_short(": Authentication ") else {
            return false;
        };
        if let Some(state) = self.state(line) {
            state.identities.xauth_id = Some(user.to_owned());
        }
        if verdict.starts_with("Successful") {
            let peer = self.peer_with_user(line, user);
            let auth = Auth {
                peer,
                method: AuthMethod::Xauth,
                outcome: Outcome::Success,
                failure: None,
            };
            line.message.push(&line.origin, out, EventBody::Auth(auth));
            return true;
        }
        if verdict.starts_with("Failed") {
            // Every failed XAUTH attempt counts: XAUTH allows retries within one IKE SA.
            let peer = self.peer_with_user(line, user);
            let auth = Auth {
                peer,
                method: AuthMethod::Xauth,
                outcome: Outcome::Failure,
                failure: Some(AuthFailure {
                    code: FailureCode::Other,
                    reason: format!("XAUTH: User {rest}"),
                }),
            };
            line.message.push(&line.origin, out, EventBody::Auth(auth));
            return true;
        }
        false
    }

    fn peer_with_user(&self, line: &Line<'_, '_>, user: &str) -> Peer {
        let mut peer = self.peer(line, line.prefix.serial);
        peer.identities.xauth_id = Some(user.to_owned());
        peer
    }

    /// DPD gave up: the IKE SA (and its children) are lost.
    fn lost(&mut self, line: &Line<'_, '_>, out: &mut Vec<Event>) {
        let serial = line.prefix.serial;
        let ike_serial = match serial.and_then(|serial| self.states.get(&serial)) {
            Some(state) if state.kind == Some(Kind::Child) => state.parent.or(serial),
            _ => serial,
        };
        if let Some(state) = ike_serial.and_then(|serial| self.states.get_mut(&serial)) {
            if state.ended {
                return;
            }
            state.ended = true;
            state.delete_cause = Some(TerminateCause::LostService);
        }
        let body = EventBody::IkeSa(IkeSaEvent {
            peer: self.peer(line, ike_serial),
            change: SaChange::Lost,
            new_ike_sa_id: None,
            cause: Some(TerminateCause::LostService),
            proposal: None,
        });
        line.message.push(&line.origin, out, body);
    }

    /// `deleting state (STATE_MAIN_R3) aged 3.1s and sending notification`,
    /// `deleting other state #29 (STATE_QUICK_R2) and sending notification`,
    /// `deleting IKE SA (…)`, `deleting connection "…" instance …`.
    fn deleting(&mut self, line: &Line<'_, '_>, rest: &str, out: &mut Vec<Event>) -> bool {
        if rest.starts_with("connection") || rest.starts_with("non-instance") {
            return true;
        }
        let serial = if rest.starts_with("other state #") {
            leading_number(rest.trim_start_matches("other state #"))
        } else {
            line.prefix.serial
        };
        let Some(serial) = serial else { return false };
        let what = rest.split_once('(').map_or(rest, |(_, what)| what);
        let Some(state) = self.states.get_mut(&serial) else {
            return true;
        };
        if state.kind.is_none() {
            state.kind = kind_of_state_name(rest);
        }
        let established = state.established || names_established_state(what);
        if state.ended {
            return true;
        }
        match state.kind {
            Some(Kind::Child) => {
                if established {
                    // The counters line (`ESP traffic information`) follows; emit there.
                    state.deleting = true;
                } else {
                    state.ended = true;
                }
            }
            Some(Kind::Ike) => {
                state.ended = true;
                let cause = if established {
                    state.delete_cause.unwrap_or(TerminateCause::AdminReset)
                } else {
                    // A half-open IKE SA that timed out or was given up.
                    TerminateCause::Timeout
                };
                let body = EventBody::IkeSa(IkeSaEvent {
                    peer: self.peer(line, Some(serial)),
                    change: SaChange::Deleted,
                    new_ike_sa_id: None,
                    cause: Some(cause),
                    proposal: None,
                });
                line.message.push(&line.origin, out, body);
            }
            None => {}
        }
        true
    }

    /// `ESP traffic information: in=84B out=2KB [XAUTHuser=alice]`: the counters of a Child SA
    /// that is being deleted; this is where its delete is emitted.
    fn traffic(&mut self, line: &Line<'_, '_>, rest: &str, out: &mut Vec<Event>) {
        let mut bytes_in = None;
        let mut bytes_out = None;
        for word in rest.split(' ') {
            if let Some(amount) = word.strip_prefix("in=") {
                bytes_in = byte_amount(amount);
            } else if let Some(amount) = word.strip_prefix("out=") {
                bytes_out = byte_amount(amount);
            }
        }
        let Some(serial) = line.prefix.serial else {
            return;
        };
        let Some(state) = self.states.get_mut(&serial) else {
            return;
        };
        if state.ended {
            return;
        }
        state.ended = true;
        state.deleting = false;
        let name = state.connection.clone();
        let local_ts = state.local_ts.clone();
        let remote_ts = state.remote_ts.clone();
        // pluto counts from its own point of view: `in` is what the client sent.
        let counters = Counters::of_bytes(bytes_in, bytes_out);
        let child = ChildSaEvent {
            peer: self.peer(line, Some(serial)),
            change: SaChange::Deleted,
            name,
            child_sa_id: Some(serial),
            spi_in: None,
            spi_out: None,
            local_ts,
            remote_ts,
            counters,
            proposal: None,
        };
        line.message
            .push(&line.origin, out, EventBody::ChildSa(child));
    }

    /// Address-pool leases, logged at debug level only:
    /// `new lease 192.0.2.10 from addresspool 192.0.2.10-192.0.2.99. index 0 … thatid '@road'`.
    fn handle_debug(&mut self, line: &Line<'_, '_>, debug: &str, out: &mut Vec<Event>) -> bool {
        let Some(rest) = debug
            .strip_prefix("new lease ")
            .or_else(|| debug.strip_prefix("re-use lease "))
        else {
            return false;
        };
        let Some(ip) = rest
            .split(' ')
            .next()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
        else {
            return false;
        };
        let mut peer = self.peer(line, line.prefix.serial);
        if let Some(id) = rest
            .split_once_short("thatid ")
            .and_then(|(_, id)| quoted(id))
        {
            peer.identities.ike_id = Some(id.to_owned());
        }
        let vip = VirtualIpEvent {
            peer,
            ip,
            change: LeaseChange::Assigned,
        };
        line.message
            .push(&line.origin, out, EventBody::VirtualIp(vip));
        true
    }

    /// The peer of a state: a Child SA reports its IKE SA's id and identities.
    fn peer(&self, line: &Line<'_, '_>, serial: Option<u64>) -> Peer {
        let mut peer = Peer {
            connection: line.prefix.connection.map(str::to_owned),
            client: line.prefix.client.unwrap_or_default(),
            ..Peer::default()
        };
        let Some(serial) = serial else { return peer };
        let Some(state) = self.states.get(&serial) else {
            peer.ike_sa_id = Some(serial);
            return peer;
        };
        let ike_serial = match state.kind {
            Some(Kind::Child) => state.parent,
            _ => Some(serial),
        };
        peer.ike_sa_id = ike_serial;
        if state.connection.is_some() {
            peer.connection.clone_from(&state.connection);
        }
        if !state.client.is_empty() {
            peer.client = state.client;
        }
        peer.identities = state.identities.clone();
        if let Some(parent) = ike_serial
            .filter(|ike| *ike != serial)
            .and_then(|ike| self.states.get(&ike))
        {
            peer.identities.merge_from(&parent.identities);
            if peer.client.port.is_none() && parent.client.ip == peer.client.ip {
                peer.client.port = parent.client.port;
            }
        }
        peer
    }

    fn push_ike(
        &mut self,
        line: &Line<'_, '_>,
        change: SaChange,
        cause: Option<TerminateCause>,
        out: &mut Vec<Event>,
    ) {
        let body = EventBody::IkeSa(IkeSaEvent {
            peer: self.peer(line, line.prefix.serial),
            change,
            new_ike_sa_id: None,
            cause,
            proposal: None,
        });
        line.message.push(&line.origin, out, body);
    }

    fn push_auth(
        &mut self,
        line: &Line<'_, '_>,
        method: AuthMethod,
        failure: Option<AuthFailure>,
        out: &mut Vec<Event>,
    ) {
        let peer = self.peer(line, line.prefix.serial);
        let body = EventBody::Auth(Auth::attempt(peer, method, failure));
        line.message.push(&line.origin, out, body);
    }

    /// Emits an auth failure unless one was already emitted for this state: pluto often logs
    /// one failure in several lines, and the first is the most specific.
    fn push_failure(
        &mut self,
        line: &Line<'_, '_>,
        method: AuthMethod,
        failure: AuthFailure,
        out: &mut Vec<Event>,
    ) {
        let method = match self.state(line) {
            Some(state) if state.auth_reported => return,
            Some(state) => {
                state.auth_reported = true;
                match (method, state.method) {
                    (AuthMethod::Unknown, Some(known)) => known,
                    _ => method,
                }
            }
            None => method,
        };
        self.push_auth(line, method, Some(failure), out);
    }
}

/// Whether the text after a file timestamp is already a pluto message.
fn starts_like_pluto(text: &str) -> bool {
    text.starts_with(": ")
        || text.starts_with('"')
        || text.starts_with('#')
        || text.starts_with("| ")
        || text.starts_with("packet from ")
}

/// Splits `"conn"[3] 203.0.113.5 #7: message` (also `"conn" #7:`, `#7:`, `packet from
/// 203.0.113.5:500:`) into its prefix and the message.
fn split_prefix(text: &str) -> (Prefix<'_>, &str) {
    let mut prefix = Prefix::default();
    if let Some(rest) = text.strip_prefix("packet from ") {
        if let Some((address, message)) = rest.split_once_short(": ")
            && let Ok(address) = address.parse::<SocketAddr>()
        {
            prefix.client = Some(Endpoint::new(address.ip(), Some(address.port())));
            return (prefix, message);
        }
        return (prefix, text);
    }
    let header_end = if let Some(quoted) = text.strip_prefix('"') {
        let Some((connection, _)) = quoted.split_once('"') else {
            return (prefix, text);
        };
        prefix.connection = Some(connection);
        connection.len() + 2
    } else if text.starts_with('#') {
        0
    } else {
        return (prefix, text);
    };
    let rest = &text[header_end..];
    let Some((header, message)) = rest.split_once_short(": ").or_else(|| {
        // A prefix with nothing after it: `"conn"[3] 203.0.113.5:`
        rest.strip_suffix(':').map(|header| (header, ""))
    }) else {
        return (Prefix::default(), text);
    };
    let mut words = header.split(' ').filter(|word| !word.is_empty()).peekable();
    if let Some(first) = words.peek()
        && let Some(instance) = first
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
    {
        prefix.instance = Some(instance);
        words.next();
    }
    for word in words {
        if let Some(serial) = word.strip_prefix('#') {
            prefix.serial = serial.parse().ok();
        } else {
            let address = word.trim_start_matches("...");
            if let Ok(ip) = address.parse::<IpAddr>() {
                prefix.client = Some(Endpoint::new(ip, None));
            } else if let Ok(socket) = address.parse::<SocketAddr>() {
                prefix.client = Some(Endpoint::new(socket.ip(), Some(socket.port())));
            }
        }
    }
    (prefix, message)
}

/// `responding to Main Mode from unknown peer 203.0.113.5:500` (Libreswan 4+) or `… peer
/// 203.0.113.5 on port 500` (3.x) → the peer with its port.
fn unknown_peer(body: &str) -> Option<Endpoint> {
    let (_, rest) = body.split_once_short("from unknown peer ")?;
    let mut words = rest.split(' ');
    let address = words.next()?;
    if let Ok(socket) = address.parse::<SocketAddr>() {
        return Some(Endpoint::new(socket.ip(), Some(socket.port())));
    }
    let ip = address.parse::<IpAddr>().ok()?;
    let port = match (words.next(), words.next(), words.next()) {
        (Some("on"), Some("port"), Some(port)) => port.parse().ok(),
        _ => None,
    };
    Some(Endpoint::new(ip, port))
}

/// The authentication method an established or authenticated line names.
fn method_of(body: &str) -> Option<AuthMethod> {
    if let Some((_, auth)) = body.split_once_short("auth=") {
        // IKEv1: {auth=PRESHARED_KEY cipher=…}, {auth=RSA_SIG …}, {auth=XAUTHRespPreShared …}
        let auth = auth.split([' ', '}']).next().unwrap_or("");
        if auth.contains_short("PRESHARED") || auth.contains_short("PreShared") {
            return Some(AuthMethod::Psk);
        }
        if auth.contains_short("RSA") || auth.contains_short("ECDSA") || auth.contains_short("SIG")
        {
            return Some(AuthMethod::Cert);
        }
    }
    if body.contains_short("authby=secret") || body.contains_short("PRESHARED") {
        return Some(AuthMethod::Psk);
    }
    if body.contains_short("EAP") {
        return Some(AuthMethod::Eap);
    }
    if body.contains_short("signature")
        || body.contains_short("certificate")
        || body.contains_short("authby=rsa")
    {
        return Some(AuthMethod::Cert);
    }
    None
}

/// An authentication failure and its class, if the message is one.
fn failure_of(body: &str) -> Option<(AuthMethod, FailureCode)> {
    let lower = body.to_ascii_lowercase();
    if lower.contains_short("mismatch of preshared secrets")
        || ((lower.contains_short("authentication failed")
            || lower.contains_short("auth mismatch"))
            && (lower.contains_short("psk")
                || lower.contains_short("pre-shared")
                || lower.contains_short("preshared")
                || lower.contains_short("secret")))
    {
        return Some((AuthMethod::Psk, FailureCode::PskMismatch));
    }
    if (lower.contains_short("signature")
        && (lower.contains_short("failed") || lower.contains_short("invalid")))
        || (lower.contains_short("certificate")
            && (lower.contains_short("invalid")
                || lower.contains_short("expired")
                || lower.contains_short("rejected")
                || lower.contains_short("failed")
                || lower.contains_short("not valid")))
    {
        return Some((AuthMethod::Cert, FailureCode::CertInvalid));
    }
    if body.contains_short("AUTHENTICATION_FAILED") {
        let code = if lower.contains_short("rejected by peer") || lower.starts_with("received") {
            FailureCode::PeerRejected
        } else {
            FailureCode::Other
        };
        return Some((AuthMethod::Unknown, code));
    }
    if lower.contains_short("no suitable connection")
        || lower.contains_short("no connection has been authorized")
        || lower.contains_short("no connection is known")
        || lower.contains_short("no matching connection")
    {
        return Some((AuthMethod::Unknown, FailureCode::NoMatchingConfig));
    }
    None
}

/// Whether a state name (`STATE_MAIN_R3`, `established IKE SA`) is an established one.
fn names_established_state(what: &str) -> bool {
    [
        "MAIN_R3",
        "MAIN_I4",
        "AGGR_R2",
        "AGGR_I2",
        "QUICK_R2",
        "QUICK_I2",
        "PARENT_R2",
        "PARENT_I3",
        "ESTABLISHED",
        "established",
    ]
    .iter()
    .any(|name| what.contains(name))
}

/// The SA kind a `deleting …` line names, for states seen first at their deletion.
fn kind_of_state_name(text: &str) -> Option<Kind> {
    if text.contains_short("QUICK")
        || text.contains_short("CHILD")
        || text.contains_short("Child SA")
    {
        Some(Kind::Child)
    } else if text.contains_short("MAIN")
        || text.contains_short("AGGR")
        || text.contains_short("PARENT")
        || text.contains_short("IKE_SA")
        || text.contains_short("IKE SA")
        || text.contains_short("ISAKMP")
    {
        Some(Kind::Ike)
    } else {
        None
    }
}

/// `ID_FQDN: '@road'` → `@road`: the text between the first pair of single quotes.
fn quoted(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once('\'')?;
    let (inside, _) = rest.split_once('\'')?;
    Some(inside)
}

/// The number of the last `#N` in a text.
fn last_serial(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once('#')?;
    leading_number(rest)
}

fn leading_number(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text.get(..digits)?.parse().ok()
}

/// `84B`, `2KB`, `3MB`, `1GB` (pluto rounds to whole units) → bytes.
fn byte_amount(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let value: u64 = text.get(..digits)?.parse().ok()?;
    let scale: u64 = match text.get(digits..)? {
        "B" | "" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    value.checked_mul(scale)
}

#[cfg(test)]
mod tests;
