//! xl2tpd log lines (syslog, or its stderr `xl2tpd[pid]: …` when run with `-D`), xl2tpd 1.2
//! to 1.3: L2TP tunnels and calls coming up and going down, as [`L2tpEvent`]s.
//!
//! A tunnel is known by our tunnel id (`Local:`) and the peer's (`Remote:`), a call likewise.
//! The parser remembers tunnels and calls (bounded) to fill in what a line leaves out: a call's
//! tunnel and peer, and which call a `pppd exited for call N` line (which names the *peer's*
//! call id) means. A close is reported once per call, by whichever of `pppd exited` and
//! `call_close` comes first. The text of the last `result_code_avp` line becomes the reason of
//! the next close.

use std::collections::HashMap;
use std::net::IpAddr;

use model::{Endpoint, Event, EventBody, L2tpChange, L2tpEvent, Peer};

use super::Format;
use super::message::{DaemonParser, Message, Origin, quarter_cut};
use super::text::ShortStr;

/// How many tunnels and how many calls the parser remembers.
const MAX_TRACKED: usize = 65_536;

const PRODUCT: &str = "xl2tpd";

#[derive(Debug, Clone, Default)]
struct Tunnel {
    client: Endpoint,
    lns: Option<String>,
    peer_tunnel: Option<u16>,
    closed: bool,
    last_seq: u64,
}

#[derive(Debug, Clone, Default)]
struct Call {
    tunnel: Option<u16>,
    peer_call: Option<u16>,
    client: Endpoint,
    closed: bool,
    last_seq: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Xl2tpdParser {
    /// By our tunnel id.
    tunnels: HashMap<u16, Tunnel>,
    /// By our call id.
    calls: HashMap<u16, Call>,
    /// Indexes into the two maps above: the newest tunnel to a peer address, our tunnel id
    /// for a peer's (address, tunnel id), our call id for a peer's call id.
    newest_tunnel: HashMap<IpAddr, u16>,
    tunnel_by_peer: HashMap<(IpAddr, u16), u16>,
    call_by_peer: HashMap<u16, u16>,
    /// The words of the last `result_code_avp` line, for the next close.
    pending_reason: Option<String>,
}

impl DaemonParser for Xl2tpdParser {
    fn is_own_program(program: &str) -> bool {
        program == "xl2tpd"
    }

    fn is_message_start(text: &str) -> bool {
        starts_with_function_name(text)
    }

    fn read_message(&mut self, message: &Message<'_>, source: &str, out: &mut Vec<Event>) -> bool {
        let origin = Origin {
            source,
            dataset: Format::Xl2tpd.dataset(),
            product: PRODUCT,
        };
        // Under systemd, `xl2tpd -D` writes `xl2tpd[pid]: ` itself, inside the journal's own.
        let text = strip_own_tag(message.text.trim_end());
        self.handle(message, &origin, text, out)
    }

    fn evict(&mut self, seq: u64) {
        if self.tunnels.len() > MAX_TRACKED
            || self.newest_tunnel.len() > MAX_TRACKED
            || self.tunnel_by_peer.len() > MAX_TRACKED
        {
            let cut = quarter_cut(self.tunnels.values().map(|tunnel| tunnel.last_seq), seq);
            self.tunnels.retain(|_, tunnel| tunnel.last_seq > cut);
            // Keep only index entries that still describe their tunnel, so the indexes are
            // never larger than the map.
            let tunnels = &self.tunnels;
            self.newest_tunnel.retain(|ip, id| {
                tunnels
                    .get(id)
                    .is_some_and(|tunnel| tunnel.client.ip == Some(*ip))
            });
            self.tunnel_by_peer.retain(|(ip, remote), id| {
                tunnels.get(id).is_some_and(|tunnel| {
                    tunnel.client.ip == Some(*ip) && tunnel.peer_tunnel == Some(*remote)
                })
            });
        }
        if self.calls.len() > MAX_TRACKED || self.call_by_peer.len() > MAX_TRACKED {
            let cut = quarter_cut(self.calls.values().map(|call| call.last_seq), seq);
            self.calls.retain(|_, call| call.last_seq > cut);
            let calls = &self.calls;
            self.call_by_peer.retain(|remote, id| {
                calls
                    .get(id)
                    .is_some_and(|call| call.peer_call == Some(*remote))
            });
        }
    }
}

impl Xl2tpdParser {
    fn handle(
        &mut self,
        message: &Message<'_>,
        origin: &Origin<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        let seq = message.seq;
        if let Some(rest) = text.strip_prefix("Connection established to ") {
            // 192.0.2.11, 1701.  Local: 12345, Remote: 1 (ref=0/0).  LNS session is 'default'
            let Some((address, rest)) = rest.split_once_short(", ") else {
                return false;
            };
            let Ok(ip) = address.parse::<IpAddr>() else {
                return false;
            };
            let port = leading_number(rest).and_then(|port| u16::try_from(port).ok());
            let local = field(rest, "Local: ");
            let remote = field(rest, "Remote: ");
            let lns = rest
                .split_once_short("LNS session is '")
                .and_then(|(_, name)| name.split_once('\''))
                .map(|(name, _)| name.to_owned());
            let client = Endpoint::new(ip, port);
            if let Some(local) = local {
                self.tunnels.insert(
                    local,
                    Tunnel {
                        client,
                        lns: lns.clone(),
                        peer_tunnel: remote,
                        closed: false,
                        last_seq: seq,
                    },
                );
                self.newest_tunnel.insert(ip, local);
                if let Some(remote) = remote {
                    self.tunnel_by_peer.insert((ip, remote), local);
                }
            }
            let event = L2tpEvent {
                peer: peer(client, lns),
                change: L2tpChange::TunnelEstablished,
                tunnel_id: local,
                peer_tunnel_id: remote,
                call_id: None,
                peer_call_id: None,
                reason: None,
            };
            message.push(origin, out, EventBody::L2tp(event));
            return true;
        }
        if let Some(rest) = text.strip_prefix("Call established with ") {
            // 192.0.2.11, [PID: 1234, ]Local: 5678, Remote: 1, Serial: 1 (ref=0/0)
            let Some((address, rest)) = rest.split_once_short(", ") else {
                return false;
            };
            let Ok(ip) = address.parse::<IpAddr>() else {
                return false;
            };
            let local = field(rest, "Local: ");
            let remote = field(rest, "Remote: ");
            // The call's tunnel: the newest open tunnel with this peer.
            let tunnel = self.newest_tunnel.get(&ip).and_then(|id| {
                self.tunnels
                    .get(id)
                    .filter(|tunnel| !tunnel.closed)
                    .map(|tunnel| (*id, tunnel.clone()))
            });
            let (client, lns, tunnel_id, peer_tunnel) = match tunnel {
                Some((id, tunnel)) => (tunnel.client, tunnel.lns, Some(id), tunnel.peer_tunnel),
                None => (Endpoint::new(ip, None), None, None, None),
            };
            if let Some(local) = local {
                self.calls.insert(
                    local,
                    Call {
                        tunnel: tunnel_id,
                        peer_call: remote,
                        client,
                        closed: false,
                        last_seq: seq,
                    },
                );
                if let Some(remote) = remote {
                    self.call_by_peer.insert(remote, local);
                }
            }
            let event = L2tpEvent {
                peer: peer(client, lns),
                change: L2tpChange::CallEstablished,
                tunnel_id,
                peer_tunnel_id: peer_tunnel,
                call_id: local,
                peer_call_id: remote,
                reason: None,
            };
            message.push(origin, out, EventBody::L2tp(event));
            return true;
        }
        if let Some(rest) = text.strip_prefix("result_code_avp: ") {
            // peer closing for reason 1 (General request to clear control connection), error = 0 ()
            if rest.contains_short("closing for reason") || rest.contains_short("result code is") {
                self.pending_reason = Some(rest.to_owned());
                return true;
            }
            return false;
        }
        if let Some(rest) = text
            .strip_prefix("child_handler : ")
            .or_else(|| text.strip_prefix("child_handler: "))
        {
            // pppd exited for call 1 with code 4 / pppd terminated for call 1 by signal 15
            let Some((_, after)) = rest.split_once_short(" for call ") else {
                return false;
            };
            let Some(peer_call) = leading_number(after).and_then(|id| u16::try_from(id).ok())
            else {
                return false;
            };
            let reason = after
                .split_once(' ')
                .map(|(_, how)| format!("pppd {} {how}", verb_of(rest)));
            let local = self
                .call_by_peer
                .get(&peer_call)
                .copied()
                .filter(|local| self.calls.contains_key(local));
            match local {
                Some(local) => self.close_call(message, origin, local, reason, out),
                None => {
                    let event = L2tpEvent {
                        peer: Peer::default(),
                        change: L2tpChange::CallClosed,
                        tunnel_id: None,
                        peer_tunnel_id: None,
                        call_id: None,
                        peer_call_id: Some(peer_call),
                        reason: self.pending_reason.take().or(reason),
                    };
                    message.push(origin, out, EventBody::L2tp(event));
                }
            }
            return true;
        }
        if let Some(rest) = text
            .strip_prefix("call_close: Call ")
            .or_else(|| text.strip_prefix("call_close : Call "))
        {
            // call_close: Call 5678 to 192.0.2.11 disconnected
            let Some(local) = leading_number(rest).and_then(|id| u16::try_from(id).ok()) else {
                return false;
            };
            self.calls.entry(local).or_insert_with(|| {
                let ip = rest
                    .split_once_short(" to ")
                    .and_then(|(_, rest)| rest.split(' ').next())
                    .and_then(|ip| ip.parse::<IpAddr>().ok());
                Call {
                    client: ip.map(|ip| Endpoint::new(ip, None)).unwrap_or_default(),
                    last_seq: seq,
                    ..Call::default()
                }
            });
            self.close_call(message, origin, local, None, out);
            return true;
        }
        if let Some(rest) = text
            .strip_prefix("control_finish: Connection closed to ")
            .or_else(|| text.strip_prefix("Connection closed to "))
        {
            // 192.0.2.11, port 1701 (Goodbye!), Local: 12345, Remote: 1
            let why = between(rest, " (", ")");
            let local = field(rest, "Local: ");
            let remote = field(rest, "Remote: ");
            let ip = rest
                .split_once(',')
                .and_then(|(ip, _)| ip.parse::<IpAddr>().ok());
            self.close_tunnel(message, origin, local, remote, ip, why, out);
            return true;
        }
        if let Some(rest) = text.strip_prefix("Connection ")
            && let Some((remote, rest)) = rest.split_once_short(" closed to ")
        {
            // xl2tpd 1.2: Connection 1 closed to 192.0.2.11, port 1701 (Goodbye!)
            let remote = remote.parse::<u16>().ok();
            let ip = rest
                .split_once(',')
                .and_then(|(ip, _)| ip.parse::<IpAddr>().ok());
            let why = between(rest, " (", ")");
            let local = match (ip, remote) {
                (Some(ip), Some(remote)) => self.tunnel_by_peer.get(&(ip, remote)).copied(),
                _ => None,
            };
            self.close_tunnel(message, origin, local, remote, ip, why, out);
            return true;
        }
        text.starts_with("Terminating pppd: sending TERM signal to pid ")
            || text.starts_with("Disconnecting from ")
    }

    fn close_call(
        &mut self,
        message: &Message<'_>,
        origin: &Origin<'_>,
        local: u16,
        reason: Option<String>,
        out: &mut Vec<Event>,
    ) {
        let Some(call) = self.calls.get_mut(&local) else {
            return;
        };
        call.last_seq = message.seq;
        if call.closed {
            return;
        }
        call.closed = true;
        let call = call.clone();
        let tunnel = call.tunnel.and_then(|id| self.tunnels.get(&id));
        let event = L2tpEvent {
            peer: peer(call.client, tunnel.and_then(|tunnel| tunnel.lns.clone())),
            change: L2tpChange::CallClosed,
            tunnel_id: call.tunnel,
            peer_tunnel_id: tunnel.and_then(|tunnel| tunnel.peer_tunnel),
            call_id: Some(local),
            peer_call_id: call.peer_call,
            reason: self.pending_reason.take().or(reason),
        };
        message.push(origin, out, EventBody::L2tp(event));
    }

    #[allow(clippy::too_many_arguments)]
    fn close_tunnel(
        &mut self,
        message: &Message<'_>,
        origin: &Origin<'_>,
        local: Option<u16>,
        remote: Option<u16>,
        ip: Option<IpAddr>,
        why: Option<&str>,
        out: &mut Vec<Event>,
    ) {
        let known = local.and_then(|id| self.tunnels.get_mut(&id));
        let (client, lns, peer_tunnel) = match known {
            Some(tunnel) => {
                if tunnel.closed {
                    return;
                }
                tunnel.closed = true;
                tunnel.last_seq = message.seq;
                (
                    tunnel.client,
                    tunnel.lns.clone(),
                    tunnel.peer_tunnel.or(remote),
                )
            }
            None => (
                ip.map(|ip| Endpoint::new(ip, None)).unwrap_or_default(),
                None,
                remote,
            ),
        };
        let reason = self
            .pending_reason
            .take()
            .or_else(|| why.map(str::to_owned));
        let event = L2tpEvent {
            peer: peer(client, lns),
            change: L2tpChange::TunnelClosed,
            tunnel_id: local,
            peer_tunnel_id: peer_tunnel,
            call_id: None,
            peer_call_id: None,
            reason,
        };
        message.push(origin, out, EventBody::L2tp(event));
    }
}

fn peer(client: Endpoint, lns: Option<String>) -> Peer {
    Peer {
        connection: lns,
        client,
        ..Peer::default()
    }
}

/// Whether a line without envelope starts with one of xl2tpd's `function_name: ` prefixes
/// (`call_close:`, `control_finish:`), which would otherwise pass for a syslog tag.
fn starts_with_function_name(text: &str) -> bool {
    let word = text.split(' ').next().unwrap_or("");
    word.ends_with(':') && word.contains('_') && !word.contains('[')
}

/// `xl2tpd[1234]: Call established …` → `Call established …`.
fn strip_own_tag(text: &str) -> &str {
    if let Some(rest) = text.strip_prefix("xl2tpd[")
        && let Some((pid, message)) = rest.split_once_short("]: ")
        && !pid.is_empty()
        && pid.bytes().all(|byte| byte.is_ascii_digit())
    {
        return message;
    }
    text
}

/// `pppd exited for call …` → `exited`.
fn verb_of(text: &str) -> &str {
    text.strip_prefix("pppd ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("ended")
}

/// The number after `name` (`Local: 12345,` → 12345).
fn field(text: &str, name: &str) -> Option<u16> {
    let (_, rest) = text.split_once(name)?;
    leading_number(rest).and_then(|value| u16::try_from(value).ok())
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let (_, rest) = text.split_once(open)?;
    let (inside, _) = rest.split_once(close)?;
    Some(inside)
}

fn leading_number(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text.get(..digits)?.parse().ok()
}

#[cfg(test)]
mod tests;
