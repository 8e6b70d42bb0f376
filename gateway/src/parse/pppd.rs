//! pppd log lines (syslog, or its `logfile`), pppd 2.4 to 2.5: PPP authentication and the PPP
//! session it opens, as behind xl2tpd on an L2TP/IPsec gateway.
//!
//! One pppd process serves one link, and a link's story is spread over many lines, so the
//! parser keeps a state per pid (`pppd[1234]`; lines without pid share one state), bounded:
//!
//! - `PAP peer authentication succeeded for alice` (and `… failed for …`, `Peer bob failed
//!   CHAP authentication`) → an [`Auth`] event; the user is kept. pppd 2.4.x says nothing
//!   when it *accepts* a CHAP or MS-CHAP peer; only with `debug` does the login show, as
//!   `rcvd [CHAP Response id=0x5e <…>, name = "alice"]` then `sent [CHAP Success id=0x5e …]`,
//!   which the parser reads. Without `debug`, a CHAP session still gets its lease and
//!   session from the lines below, without a user (RADIUS accounting or VICI supply it).
//!   The `CHAP peer authentication succeeded for alice` wording of pppd 2.4.1 and earlier is
//!   read too.
//! - `peer from calling number 192.0.2.11 authorized` → the client's address (with an xl2tpd
//!   that passes the LAC's address to pppd as the calling number; stock xl2tpd 1.3 does not).
//! - `remote IP address 10.0.0.2` → a [`VirtualIpEvent`] lease and a session start.
//! - `LCP terminated by peer`, `Modem hangup`, `Terminating on signal 15`, `No response to 4
//!   echo-requests`, idle and connect-time limits → the terminate cause;
//!   `Connect time 12.3 minutes.` and `Sent 1234 bytes, received 5678 bytes.` → duration and
//!   counters; `Connection terminated.` (or `Exit.` if that never came) → the session stop and
//!   the lease's release.
//!
//! The PPP user name goes to `vpn.xauth_id`, the model's slot for a user checked inside an
//! established tunnel; `vpn.auth_method` (`chap`, `pap`) tells it from IKEv1 XAuth.

use std::collections::HashMap;
use std::net::IpAddr;

use model::{
    Auth, AuthFailure, AuthMethod, Counters, Endpoint, Event, EventBody, FailureCode, LeaseChange,
    Peer, SessionChange, SessionEvent, TerminateCause, VirtualIpEvent,
};

use super::Format;
use super::message::{DaemonParser, Message, Origin, quarter_cut};
use super::text::ShortStr;

/// How many pppd processes the parser remembers.
const MAX_TRACKED_LINKS: usize = 65_536;

const PRODUCT: &str = "ppp";

/// What the parser knows about one pppd process.
#[derive(Debug, Default, Clone)]
struct Link {
    user: Option<String>,
    client: Endpoint,
    remote_ip: Option<IpAddr>,
    started: bool,
    stopped: bool,
    connect_secs: Option<u64>,
    counters: Option<Counters>,
    cause: Option<TerminateCause>,
    /// The name of the last CHAP Response (debug dumps), until the answer to it.
    chap_response: Option<String>,
    last_seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct PppdParser {
    /// By pid (`None`: lines that name no pid, as in pppd's own `logfile`).
    links: HashMap<Option<u32>, Link>,
}

impl DaemonParser for PppdParser {
    fn is_own_program(program: &str) -> bool {
        program == "pppd"
    }

    fn is_message_start(_: &str) -> bool {
        false
    }

    fn read_message(&mut self, message: &Message<'_>, source: &str, out: &mut Vec<Event>) -> bool {
        let origin = Origin {
            source,
            dataset: Format::Pppd.dataset(),
            product: PRODUCT,
        };
        self.handle(message, &origin, message.text.trim_end(), out)
    }

    fn evict(&mut self, seq: u64) {
        if self.links.len() <= MAX_TRACKED_LINKS {
            return;
        }
        let cut = quarter_cut(self.links.values().map(|link| link.last_seq), seq);
        self.links.retain(|_, link| link.last_seq > cut);
    }
}

impl PppdParser {
    fn link(&mut self, message: &Message<'_>) -> &mut Link {
        let link = self.links.entry(message.pid).or_default();
        link.last_seq = message.seq;
        link
    }

    fn handle(
        &mut self,
        message: &Message<'_>,
        origin: &Origin<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        if text.starts_with("pppd ") && text.contains_short(" started by ") {
            // A new pppd process with this pid (pids are reused): start afresh.
            self.links.insert(
                message.pid,
                Link {
                    last_seq: message.seq,
                    ..Link::default()
                },
            );
            return true;
        }
        if let Some((protocol, rest)) = text.split_once_short(" peer authentication ")
            && let Some(method) = method_of(protocol)
        {
            // CHAP peer authentication succeeded for alice
            // CHAP peer authentication failed for remote host bob
            // PAP peer authentication failed for bob
            if let Some(user) = rest.strip_prefix("succeeded for ") {
                self.link(message).user = Some(user.to_owned());
                self.push_auth(message, origin, method, None, out);
                return true;
            }
            if let Some(failed) = rest.strip_prefix("failed") {
                let user = failed
                    .strip_prefix(" for remote host ")
                    .or_else(|| failed.strip_prefix(" for "));
                if let Some(user) = user {
                    self.link(message).user = Some(user.to_owned());
                }
                self.push_failure(message, origin, method, text, out);
                return true;
            }
            return false;
        }
        if let Some(packet) = text
            .strip_prefix("rcvd [CHAP Response ")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            // With `debug`, the only place pppd 2.4.x names a CHAP user it accepts:
            // rcvd [CHAP Response id=0x5e <1f7d…00>, name = "alice"]
            if let Some(name) = packet
                .split_once_short(">, name = ")
                .map(|(_, name)| unquote(name))
            {
                self.link(message).chap_response = Some(name.to_owned());
            }
            return true;
        }
        if text.starts_with("sent [CHAP Success ") && text.ends_with(']') {
            // sent [CHAP Success id=0x5e "S=A1B2… M=Access granted"]: pppd 2.4.x logs
            // nothing else on a CHAP (or MS-CHAP) login it accepts.
            let link = self.link(message);
            let Some(user) = link.chap_response.take() else {
                return false;
            };
            link.user = Some(user);
            self.push_auth(message, origin, AuthMethod::Chap, None, out);
            return true;
        }
        if let Some(rest) = text.strip_prefix("Peer ")
            && let Some((user, how)) = rest.rsplit_once_short(" failed ")
            && how.ends_with(" authentication")
        {
            // Peer bob failed CHAP authentication
            let method = how
                .strip_suffix(" authentication")
                .and_then(method_of)
                .unwrap_or(AuthMethod::Chap);
            self.link(message).user = Some(user.to_owned());
            self.push_failure(message, origin, method, text, out);
            return true;
        }
        if let Some(protocol) = text.strip_suffix(" authentication succeeded").or_else(|| {
            text.split_once_short(" authentication succeeded: ")
                .map(|(protocol, _)| protocol)
        }) && let Some(method) = method_of(protocol)
        {
            // We authenticated ourselves to the peer (the client side of a link).
            self.push_auth(message, origin, method, None, out);
            return true;
        }
        if let Some(protocol) = text.strip_suffix(" authentication failed").or_else(|| {
            text.split_once_short(" authentication failed: ")
                .map(|(protocol, _)| protocol)
        }) && let Some(method) = method_of(protocol)
        {
            self.push_failure(message, origin, method, text, out);
            return true;
        }
        if let Some(number) = text
            .strip_prefix("peer from calling number ")
            .and_then(|rest| rest.strip_suffix(" authorized"))
        {
            if let Ok(ip) = number.parse::<IpAddr>() {
                self.link(message).client = Endpoint::new(ip, None);
            }
            return true;
        }
        if let Some(ip) = text.strip_prefix("remote IP address ") {
            let Ok(ip) = ip.trim().parse::<IpAddr>() else {
                return false;
            };
            let link = self.link(message);
            link.remote_ip = Some(ip);
            let first = !std::mem::replace(&mut link.started, true);
            let peer = peer_of(link);
            let vip = VirtualIpEvent {
                peer: peer.clone(),
                ip,
                change: LeaseChange::Assigned,
            };
            message.push(origin, out, EventBody::VirtualIp(vip));
            if first {
                let session = SessionEvent {
                    peer,
                    change: SessionChange::Start,
                    virtual_ip: Some(ip),
                    accounting_id: None,
                    counters: None,
                    duration_secs: None,
                    cause: None,
                };
                message.push(origin, out, EventBody::Session(session));
            }
            return true;
        }
        if text.starts_with("local  IP address ") || text.starts_with("local IP address ") {
            return true;
        }
        if let Some(minutes) = text
            .strip_prefix("Connect time ")
            .and_then(|rest| rest.strip_suffix(" minutes."))
        {
            if let Some(secs) = tenths_of_minutes(minutes) {
                self.link(message).connect_secs = Some(secs);
            }
            return true;
        }
        if let Some(rest) = text.strip_prefix("Sent ") {
            // Sent 1234 bytes, received 5678 bytes.  (pppd's view: received = client sent)
            let Some((sent, received)) = rest.split_once_short(" bytes, received ") else {
                return false;
            };
            let (Ok(sent), Some(Ok(received))) = (
                sent.parse::<u64>(),
                received
                    .strip_suffix(" bytes.")
                    .map(|received| received.parse::<u64>()),
            ) else {
                return false;
            };
            self.link(message).counters = Some(Counters {
                bytes_in: received,
                bytes_out: sent,
                packets_in: None,
                packets_out: None,
            });
            return true;
        }
        if let Some(cause) = cause_of(text) {
            let link = self.link(message);
            // The first reason wins: `LCP terminated by peer` comes before `Modem hangup`.
            link.cause.get_or_insert(cause);
            return true;
        }
        if text == "Connection terminated." {
            self.stop(message, origin, out);
            return true;
        }
        if text == "Exit." {
            self.stop(message, origin, out);
            self.links.remove(&message.pid);
            return true;
        }
        false
    }

    /// Emits the session stop (once, and only for a session that started) and the release of
    /// its address.
    fn stop(&mut self, message: &Message<'_>, origin: &Origin<'_>, out: &mut Vec<Event>) {
        let link = self.link(message);
        if !link.started || std::mem::replace(&mut link.stopped, true) {
            return;
        }
        let peer = peer_of(link);
        let session = SessionEvent {
            peer: peer.clone(),
            change: SessionChange::Stop,
            virtual_ip: link.remote_ip,
            accounting_id: None,
            counters: link.counters,
            duration_secs: link.connect_secs,
            cause: Some(link.cause.unwrap_or(TerminateCause::Other)),
        };
        let remote_ip = link.remote_ip;
        message.push(origin, out, EventBody::Session(session));
        if let Some(ip) = remote_ip {
            let vip = VirtualIpEvent {
                peer,
                ip,
                change: LeaseChange::Released,
            };
            message.push(origin, out, EventBody::VirtualIp(vip));
        }
    }

    fn push_auth(
        &mut self,
        message: &Message<'_>,
        origin: &Origin<'_>,
        method: AuthMethod,
        failure: Option<AuthFailure>,
        out: &mut Vec<Event>,
    ) {
        let auth = Auth::attempt(peer_of(self.link(message)), method, failure);
        message.push(origin, out, EventBody::Auth(auth));
    }

    fn push_failure(
        &mut self,
        message: &Message<'_>,
        origin: &Origin<'_>,
        method: AuthMethod,
        reason: &str,
        out: &mut Vec<Event>,
    ) {
        let failure = AuthFailure {
            code: FailureCode::Other,
            reason: reason.to_owned(),
        };
        self.push_auth(message, origin, method, Some(failure), out);
    }
}

fn peer_of(link: &Link) -> Peer {
    let mut peer = Peer {
        client: link.client,
        ..Peer::default()
    };
    peer.identities.xauth_id.clone_from(&link.user);
    peer
}

/// `CHAP`, `MS-CHAP`, `MSCHAP-v2`, `MS-CHAP-V2`, `PAP`, `EAP` → the method.
/// `"alice"` → `alice` (pppd's `%q` quoting; a name it escaped stays escaped).
fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(text)
}

fn method_of(protocol: &str) -> Option<AuthMethod> {
    let normalized = protocol.to_ascii_uppercase().replace('-', "");
    match normalized.as_str() {
        "PAP" => Some(AuthMethod::Pap),
        "CHAP" | "MSCHAP" | "MSCHAPV2" => Some(AuthMethod::Chap),
        "EAP" => Some(AuthMethod::Eap),
        _ => None,
    }
}

/// Lines that say why the link goes down.
fn cause_of(text: &str) -> Option<TerminateCause> {
    if text.starts_with("LCP terminated by peer") {
        return Some(TerminateCause::UserRequest);
    }
    if text.starts_with("Terminating on signal") {
        return Some(TerminateCause::AdminReset);
    }
    if text == "Modem hangup"
        || text == "Hangup (SIGHUP)"
        || text.starts_with("No response to ")
        || text.starts_with("Serial link appears to be disconnected")
    {
        return Some(TerminateCause::LostService);
    }
    if text.starts_with("Terminating connection due to lack of activity")
        || text.starts_with("Connect time expired")
    {
        return Some(TerminateCause::Timeout);
    }
    None
}

/// `12.3` (minutes, one decimal as pppd prints it) → 738 seconds.
fn tenths_of_minutes(text: &str) -> Option<u64> {
    let (minutes, tenths) = text.split_once('.').unwrap_or((text, "0"));
    let minutes: u64 = minutes.parse().ok()?;
    let tenths: u64 = tenths.parse().ok().filter(|tenths| *tenths < 10)?;
    minutes.checked_mul(60)?.checked_add(tenths * 6)
}

#[cfg(test)]
mod tests;
