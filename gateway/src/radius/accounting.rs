//! What an Accounting-Request says, as a [`model::SessionEvent`]. Pure: no IO, no clock (the
//! receive time is an argument).
//!
//! [`account`] maps an authentic, well-formed [`Packet`]:
//!
//! | RADIUS attribute | event field |
//! |---|---|
//! | Acct-Status-Type Start / Interim-Update / Stop | `change` start / update / stop |
//! | Acct-Status-Type anything else (Accounting-On/Off, tunnel records, Failed) | no event: [`Record::NotTracked`], answered and counted as ignored |
//! | User-Name | `peer.identities.ike_id` (see below) |
//! | Framed-IP-Address, else Framed-IPv6-Address | `virtual_ip` |
//! | Calling-Station-Id `192.0.2.12[4500]`, `192.0.2.12`, `[2001:db8::1]:4500` | `peer.client` ip and port |
//! | NAS-IP-Address, else NAS-IPv6-Address; port from Called-Station-Id of the same address | `peer.server` |
//! | NAS-Port-Id | `peer.connection` |
//! | NAS-Port (strongSwan: the IKE_SA unique id) | `peer.ike_sa_id` |
//! | Acct-Session-Id | `accounting_id` |
//! | Acct-{Input,Output}-{Octets,Gigawords,Packets} | `counters` (bytes = gigawords << 32 + octets) |
//! | Acct-Session-Time | `duration_secs` |
//! | Acct-Terminate-Cause | `cause` |
//! | Event-Timestamp, else receive time − Acct-Delay-Time | `@timestamp` |
//!
//! Direction: RADIUS *input* is what the NAS received from the user (RFC 2866 §5.3; strongSwan
//! puts the bytes it received from the client there), which is what the client sent: our
//! `bytes_in` (`source.bytes`). *Output* is `bytes_out`.
//!
//! User-Name: strongSwan sends the EAP identity when there was one, else the IKE identity, and
//! RADIUS does not say which. It goes to `ike_id`, where [`model::Identities::user_name`] finds it
//! when nothing more specific is known; claiming `eap_id` would be wrong for every PSK and
//! certificate session.
//!
//! A Calling-Station-Id that is no address (a MAC address, a phone number) leaves
//! `peer.client` empty; its raw text stays in `event.original`.
//!
//! `event.original` is a one-line rendering of all attributes in packet order
//! (`Acct-Status-Type=Start User-Name="carol" NAS-Port=7 …`). Attribute values are hostile
//! input: text is quoted, with `"` and `\` escaped, control characters, invalid UTF-8 and
//! bidirectional-text controls shown as `\xNN` or `\u{NNNN}`; octets are hex; unknown types
//! are `Attr-N=0x…`. Structured fields keep text as sent (control characters included,
//! invalid UTF-8 bytes as `\xNN`), like the log parsers: every output escapes them.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use jiff::{SignedDuration, Timestamp};
use model::{
    Counters, Endpoint, Event, EventBody, EventId, Identities, Observer, Peer, PipelineError,
    RejectReason, SessionChange, SessionEvent, TerminateCause,
};

use super::dictionary::{self, ValueKind};
use super::packet::{self, Packet, PacketError};

/// `event.dataset` of every event the receiver makes.
pub const DATASET: &str = "radius.accounting";

/// What an authentic, well-formed Accounting-Request says.
#[derive(Debug, Clone, PartialEq)]
pub struct Accounted {
    pub record: Record,
    /// `@timestamp`: Event-Timestamp, else the receive time less Acct-Delay-Time.
    pub timestamp: Timestamp,
    /// `event.original`: every attribute, rendered and escaped.
    pub original: String,
    /// Attributes of types tunnelwatch does not know by name; ignored.
    pub n_unknown_attributes: u32,
    /// Known attributes whose value has the wrong size for their type; ignored.
    pub n_invalid_values: u32,
}

/// The gist of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Start, Interim-Update or Stop.
    Session(Box<SessionEvent>),
    /// Well-formed but about nothing tunnelwatch tracks (Accounting-On/Off, tunnel records).
    NotTracked { status_type: u32 },
    /// Authentic but unusable (no Acct-Status-Type): kept as a pipeline error.
    Invalid { message: String },
}

impl Accounted {
    /// The event to spool, if any. `original_len` is the packet's length in bytes.
    pub fn into_event(self, id: EventId, observer: Observer, original_len: usize) -> Option<Event> {
        let body = match self.record {
            Record::Session(session) => EventBody::Session(*session),
            Record::NotTracked { .. } => return None,
            Record::Invalid { message } => EventBody::PipelineError(PipelineError {
                reason: RejectReason::Malformed,
                message,
                original_len: original_len as u64,
            }),
        };
        Some(Event {
            id,
            timestamp: self.timestamp,
            dataset: DATASET.to_owned(),
            observer,
            original: self.original,
            session_id: None,
            source_geo: None,
            body,
        })
    }
}

/// Maps an authentic, well-formed Accounting-Request received at `received_at`.
pub fn account(packet: &Packet<'_>, received_at: Timestamp) -> Accounted {
    let mut original = String::new();
    let mut n_unknown_attributes = 0;
    let mut n_invalid_values = 0;
    for attribute in &packet.attributes {
        if !original.is_empty() {
            original.push(' ');
        }
        match render_attribute(&mut original, attribute.kind, attribute.value) {
            Rendered::Known => {}
            Rendered::Unknown => n_unknown_attributes += 1,
            Rendered::Invalid => n_invalid_values += 1,
        }
    }
    let attributes = Lookup(packet);
    let timestamp = match attributes
        .integer(dictionary::EVENT_TIMESTAMP)
        .and_then(|seconds| Timestamp::from_second(i64::from(seconds)).ok())
    {
        Some(timestamp) => timestamp,
        None => {
            let delay = attributes.integer(dictionary::ACCT_DELAY_TIME).unwrap_or(0);
            received_at
                .checked_sub(SignedDuration::from_secs(i64::from(delay)))
                .unwrap_or(received_at)
        }
    };
    let record = match packet.first(dictionary::ACCT_STATUS_TYPE).map(integer) {
        None => Record::Invalid {
            message: "accounting request without Acct-Status-Type".to_owned(),
        },
        Some(None) => Record::Invalid {
            message: "Acct-Status-Type is not a 4-octet integer".to_owned(),
        },
        Some(Some(status_type)) => match status_type {
            1 => Record::Session(Box::new(session_event(&attributes, SessionChange::Start))),
            2 => Record::Session(Box::new(session_event(&attributes, SessionChange::Stop))),
            3 => Record::Session(Box::new(session_event(&attributes, SessionChange::Update))),
            status_type => Record::NotTracked { status_type },
        },
    };
    Accounted {
        record,
        timestamp,
        original,
        n_unknown_attributes,
        n_invalid_values,
    }
}

/// The pipeline error for an authentic packet whose attributes could not be split:
/// `event.original` renders the attributes before the broken one, the error, and the rest of
/// the packet in hex. `packet` is the packet without padding.
pub fn malformed_event(
    packet: &[u8],
    error: &PacketError,
    id: EventId,
    observer: Observer,
    received_at: Timestamp,
) -> Event {
    let mut original = String::new();
    for attribute in packet::attributes(packet).map_while(Result::ok) {
        let _ = render_attribute(&mut original, attribute.kind, attribute.value);
        original.push(' ');
    }
    let rest = error
        .attribute_offset()
        .and_then(|offset| packet.get(offset..))
        .unwrap_or_default();
    let _ = write!(original, "[malformed: {error}] ");
    push_hex(&mut original, rest);
    Event {
        id,
        timestamp: received_at,
        dataset: DATASET.to_owned(),
        observer,
        original,
        session_id: None,
        source_geo: None,
        body: EventBody::PipelineError(PipelineError {
            reason: RejectReason::Malformed,
            message: format!("malformed accounting request: {error}"),
            original_len: packet.len() as u64,
        }),
    }
}

/// The name of an Acct-Status-Type value, for logs.
pub fn status_type_name(status_type: u32) -> Option<&'static str> {
    dictionary::value_name(dictionary::STATUS_TYPES, status_type)
}

fn session_event(attributes: &Lookup<'_, '_>, change: SessionChange) -> SessionEvent {
    let client = attributes
        .text(dictionary::CALLING_STATION_ID)
        .and_then(|text| parse_endpoint(&text))
        .unwrap_or_default();
    let nas_ip = attributes
        .ipv4(dictionary::NAS_IP_ADDRESS)
        .map(IpAddr::V4)
        .or_else(|| {
            attributes
                .ipv6(dictionary::NAS_IPV6_ADDRESS)
                .map(IpAddr::V6)
        });
    let called = attributes
        .text(dictionary::CALLED_STATION_ID)
        .and_then(|text| parse_endpoint(&text));
    let server = match (nas_ip, called) {
        (Some(ip), Some(called)) if called.ip == Some(ip) => called,
        (Some(ip), _) => Endpoint::new(ip, None),
        (None, Some(called)) => called,
        (None, None) => Endpoint::default(),
    };
    let peer = Peer {
        connection: attributes
            .text(dictionary::NAS_PORT_ID)
            .map(Cow::into_owned),
        ike_sa_id: attributes.integer(dictionary::NAS_PORT).map(u64::from),
        client,
        server,
        identities: Identities {
            ike_id: attributes.text(dictionary::USER_NAME).map(Cow::into_owned),
            ..Identities::default()
        },
    };
    let virtual_ip = attributes
        .ipv4(dictionary::FRAMED_IP_ADDRESS)
        .map(IpAddr::V4)
        .or_else(|| {
            attributes
                .ipv6(dictionary::FRAMED_IPV6_ADDRESS)
                .map(IpAddr::V6)
        });
    SessionEvent {
        peer,
        change,
        virtual_ip,
        accounting_id: attributes
            .text(dictionary::ACCT_SESSION_ID)
            .map(Cow::into_owned),
        counters: counters(attributes),
        duration_secs: attributes
            .integer(dictionary::ACCT_SESSION_TIME)
            .map(u64::from),
        cause: attributes
            .integer(dictionary::ACCT_TERMINATE_CAUSE)
            .map(terminate_cause),
    }
}

/// Counters when the request carries any; bytes = (gigawords << 32) + octets.
fn counters(attributes: &Lookup<'_, '_>) -> Option<Counters> {
    let input_octets = attributes.integer(dictionary::ACCT_INPUT_OCTETS);
    let output_octets = attributes.integer(dictionary::ACCT_OUTPUT_OCTETS);
    let input_gigawords = attributes.integer(dictionary::ACCT_INPUT_GIGAWORDS);
    let output_gigawords = attributes.integer(dictionary::ACCT_OUTPUT_GIGAWORDS);
    let packets_in = attributes.integer(dictionary::ACCT_INPUT_PACKETS);
    let packets_out = attributes.integer(dictionary::ACCT_OUTPUT_PACKETS);
    let any = [
        input_octets,
        output_octets,
        input_gigawords,
        output_gigawords,
        packets_in,
        packets_out,
    ]
    .iter()
    .any(Option::is_some);
    let bytes = |gigawords: Option<u32>, octets: Option<u32>| {
        (u64::from(gigawords.unwrap_or(0)) << 32) + u64::from(octets.unwrap_or(0))
    };
    any.then(|| Counters {
        bytes_in: bytes(input_gigawords, input_octets),
        bytes_out: bytes(output_gigawords, output_octets),
        packets_in: packets_in.map(u64::from),
        packets_out: packets_out.map(u64::from),
    })
}

/// Acct-Terminate-Cause (RFC 2866 §5.10) to the model's coarser causes.
fn terminate_cause(cause: u32) -> TerminateCause {
    match cause {
        // User-Request
        1 => TerminateCause::UserRequest,
        // Lost-Carrier, Lost-Service (strongSwan: dead peer)
        2 | 3 => TerminateCause::LostService,
        // Idle-Timeout, Session-Timeout
        4 | 5 => TerminateCause::Timeout,
        // Admin-Reset, Admin-Reboot, NAS-Request (the gateway chose to end it)
        6 | 7 | 10 => TerminateCause::AdminReset,
        _ => TerminateCause::Other,
    }
}

/// `192.0.2.12[4500]` (strongSwan's `%H`), `2001:db8::1[4500]`, `192.0.2.12:4500`,
/// `[2001:db8::1]:4500` or a bare address.
fn parse_endpoint(text: &str) -> Option<Endpoint> {
    if let Some(inner) = text.strip_suffix(']')
        && let Some((ip, port)) = inner.rsplit_once('[')
        && let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>())
    {
        return Some(Endpoint::new(ip, Some(port)));
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Some(Endpoint::new(socket.ip(), Some(socket.port())));
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| Endpoint::new(ip, None))
}

/// Typed access to the first attribute of each type; values of the wrong size read as absent.
struct Lookup<'p, 'a>(&'p Packet<'a>);

impl<'a> Lookup<'_, 'a> {
    fn integer(&self, kind: u8) -> Option<u32> {
        self.0.first(kind).and_then(integer)
    }

    fn ipv4(&self, kind: u8) -> Option<Ipv4Addr> {
        let octets: [u8; 4] = self.0.first(kind)?.try_into().ok()?;
        Some(Ipv4Addr::from(octets))
    }

    fn ipv6(&self, kind: u8) -> Option<Ipv6Addr> {
        let octets: [u8; 16] = self.0.first(kind)?.try_into().ok()?;
        Some(Ipv6Addr::from(octets))
    }

    /// Non-empty text, invalid UTF-8 bytes as `\xNN`.
    fn text(&self, kind: u8) -> Option<Cow<'a, str>> {
        self.0
            .first(kind)
            .filter(|value| !value.is_empty())
            .map(decode_text)
    }
}

fn integer(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

/// UTF-8 text with every invalid byte kept visible as `\xNN`.
fn decode_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => {
            let mut text = String::with_capacity(bytes.len() + 16);
            for chunk in bytes.utf8_chunks() {
                text.push_str(chunk.valid());
                for byte in chunk.invalid() {
                    let _ = write!(text, "\\x{byte:02x}");
                }
            }
            Cow::Owned(text)
        }
    }
}

enum Rendered {
    Known,
    Unknown,
    Invalid,
}

/// Appends `Name=value`.
fn render_attribute(out: &mut String, kind: u8, value: &[u8]) -> Rendered {
    let Some((name, value_kind)) = dictionary::lookup(kind) else {
        let _ = write!(out, "Attr-{kind}=");
        push_hex(out, value);
        return Rendered::Unknown;
    };
    out.push_str(name);
    out.push('=');
    let rendered = match value_kind {
        ValueKind::Text => {
            push_quoted(out, value);
            true
        }
        ValueKind::Octets | ValueKind::VendorSpecific => {
            push_hex(out, value);
            true
        }
        ValueKind::Integer => integer(value).is_some_and(|number| {
            let _ = write!(out, "{number}");
            true
        }),
        ValueKind::Enumerated(names) => integer(value).is_some_and(|number| {
            match dictionary::value_name(names, number) {
                Some(name) => out.push_str(name),
                None => {
                    let _ = write!(out, "{number}");
                }
            }
            true
        }),
        ValueKind::Time => integer(value).is_some_and(|seconds| {
            match Timestamp::from_second(i64::from(seconds)) {
                Ok(timestamp) => {
                    let _ = write!(out, "{timestamp}");
                }
                Err(_) => {
                    let _ = write!(out, "{seconds}");
                }
            }
            true
        }),
        ValueKind::Ipv4 => <[u8; 4]>::try_from(value).is_ok_and(|octets| {
            let _ = write!(out, "{}", Ipv4Addr::from(octets));
            true
        }),
        ValueKind::Ipv6 => <[u8; 16]>::try_from(value).is_ok_and(|octets| {
            let _ = write!(out, "{}", Ipv6Addr::from(octets));
            true
        }),
    };
    if rendered {
        Rendered::Known
    } else {
        push_hex(out, value);
        Rendered::Invalid
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    out.push_str("0x");
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
}

/// Appends `"text"`, escaping what could break the line or fool a terminal or reader.
fn push_quoted(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for character in chunk.valid().chars() {
            match character {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0'..='\x1f' | '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", u32::from(character));
                }
                character if character.is_control() || is_invisible_format(character) => {
                    let _ = write!(out, "\\u{{{:04x}}}", u32::from(character));
                }
                character => out.push(character),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out.push('"');
}

/// Format characters that reorder or hide text (bidi controls, zero-width characters, BOM).
fn is_invisible_format(character: char) -> bool {
    matches!(
        character,
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests;
