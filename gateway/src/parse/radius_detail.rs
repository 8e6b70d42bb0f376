//! FreeRADIUS `detail` files (`radacct/<nas>/detail-YYYYMMDD`, written by `rlm_detail`):
//! accounting records as [`SessionEvent`]s.
//!
//! A record is a header line with the time it was written (`Wed Nov 25 09:33:12 2026`, the
//! server's local time), then one indented `Attribute = value` line per attribute, then a
//! blank line:
//!
//! ```text
//! Wed Nov 25 09:33:12 2026
//!         Acct-Status-Type = Stop
//!         User-Name = "alice"
//!         …
//!         Timestamp = 1795604323
//!
//! ```
//!
//! Lines arrive one at a time, so the parser collects a record and emits its event when the
//! record ends: at the blank line, at the next header line, or at [`super::Parser::flush`]
//! (end of input). The event's id is the position of the line that ended the record (for
//! `flush`, the position the next line would have), so reading the same file again, or reading
//! on after a tailer caught up with a half-written record, gives the same id, and the store
//! keeps the record once. Only the attributes tunnelwatch maps are kept, and the raw record
//! (kept as `event.original`) is capped at the line limit, so a record cannot grow without bound.
//!
//! Attributes, mapped as the live accounting receiver maps them (`gateway::radius`):
//! `Acct-Status-Type` (Start, Interim-Update, Stop; other records, such as Accounting-On, are
//! ignored), `User-Name` (→ `vpn.ike_id`: strongSwan sends the EAP identity when there was one,
//! else the IKE identity, and RADIUS does not say which), `Calling-Station-Id`
//! (`192.0.2.12[4500]` → client address and port), `Framed-IP-Address`, `Acct-Session-Id`,
//! `NAS-Port` (→ `vpn.ike_sa_id`: strongSwan's IKE_SA unique id, so that the record meets the
//! VPN's own events of that IKE_SA), `NAS-Port-Id` (→ connection), `NAS-IP-Address`
//! (→ server), octets with gigawords, packets,
//! `Acct-Session-Time`, `Acct-Terminate-Cause`. The time is `Event-Timestamp` (when the NAS saw
//! the event), else `Timestamp` (when the record was written), else the header line.

use std::net::IpAddr;

use jiff::Timestamp;
use model::{
    Counters, Endpoint, Event, EventBody, Peer, RejectReason, SessionChange, SessionEvent,
    TerminateCause,
};

use super::clock::LocalStamp;
use super::message::{Message, Origin};
use super::{Format, LineOutcome, LogClock, ParseOptions};

const PRODUCT: &str = "freeradius";
/// Bytes reserved up front for a record's raw text.
const RECORD_CAPACITY: usize = 1024;

/// The attributes of a record that tunnelwatch maps.
#[derive(Debug, Default, Clone)]
struct Attributes {
    status: Option<String>,
    user_name: Option<String>,
    calling_station: Option<String>,
    framed_ip: Option<IpAddr>,
    session_id: Option<String>,
    nas_port_id: Option<String>,
    nas_port: Option<u64>,
    nas_ip: Option<IpAddr>,
    input_octets: Option<u64>,
    output_octets: Option<u64>,
    input_gigawords: Option<u64>,
    output_gigawords: Option<u64>,
    input_packets: Option<u64>,
    output_packets: Option<u64>,
    session_time: Option<u64>,
    terminate_cause: Option<String>,
    event_timestamp: Option<String>,
    timestamp: Option<i64>,
}

/// A record being collected.
#[derive(Debug, Clone)]
struct Record {
    /// The header's time (server local time), if the record had a valid header.
    header_time: Option<Timestamp>,
    attributes: Attributes,
    /// The raw lines, joined by `\n`, at most `max_line_bytes` long.
    original: String,
}

#[derive(Debug, Default)]
pub(crate) struct DetailParser {
    record: Option<Record>,
}

impl DetailParser {
    /// Reads one non-blank line of a detail file. A header line ends the previous record
    /// (emitted at this line's position) and starts a new one.
    pub(crate) fn parse(
        &mut self,
        text: &str,
        seq: u64,
        now: Timestamp,
        options: &mut ParseOptions,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let max_bytes = options.max_line_bytes;
        if matches!(text.as_bytes().first(), Some(b' ' | b'\t')) {
            let Some((name, value)) = split_attribute(text) else {
                return LineOutcome::Rejected(
                    RejectReason::Malformed,
                    "not a detail attribute line: no ` = `".to_owned(),
                );
            };
            // Attributes without a header: the record's start was lost (a tailer that started
            // mid-record). Keep what is there rather than dropping it.
            let record = self.record.get_or_insert_with(|| Record {
                header_time: None,
                attributes: Attributes::default(),
                original: String::new(),
            });
            record.attributes.set(name, value);
            append_capped(&mut record.original, text, max_bytes);
            return LineOutcome::Parsed;
        }
        let Some(stamp) = header_stamp(text) else {
            return LineOutcome::Rejected(
                RejectReason::Malformed,
                "not a detail record line: neither a header nor an indented attribute".to_owned(),
            );
        };
        // A header: the previous record ends here.
        self.end_record(seq, now, options, out);
        let Some(header_time) = options.clock.resolve(stamp) else {
            return LineOutcome::Rejected(
                RejectReason::BadTimestamp,
                "timestamp names no existing instant".to_owned(),
            );
        };
        // A typical record is 15-25 lines of ~40 bytes: one allocation instead of a few.
        let mut original = String::with_capacity(RECORD_CAPACITY.min(max_bytes));
        append_capped(&mut original, text, max_bytes);
        self.record = Some(Record {
            header_time: Some(header_time),
            attributes: Attributes::default(),
            original,
        });
        LineOutcome::Parsed
    }

    /// Ends the record being collected, if any, and emits its event at position `seq`.
    pub(crate) fn end_record(
        &mut self,
        seq: u64,
        now: Timestamp,
        options: &mut ParseOptions,
        out: &mut Vec<Event>,
    ) {
        let Some(record) = self.record.take() else {
            return;
        };
        let attributes = &record.attributes;
        let change = match attributes.status.as_deref() {
            Some("Start" | "1") => SessionChange::Start,
            Some("Interim-Update" | "Alive" | "3") => SessionChange::Update,
            Some("Stop" | "2") => SessionChange::Stop,
            // Accounting-On/Off, authentication detail logs, …: nothing tunnelwatch tracks.
            _ => return,
        };
        let timestamp = attributes
            .event_timestamp
            .as_deref()
            .and_then(|value| date_value(value, &mut options.clock))
            .or_else(|| {
                attributes
                    .timestamp
                    .and_then(|secs| Timestamp::from_second(secs).ok())
            })
            .or(record.header_time)
            .unwrap_or(now);
        let session = SessionEvent {
            peer: attributes.peer(),
            change,
            virtual_ip: attributes.framed_ip,
            accounting_id: attributes.session_id.clone(),
            counters: attributes.counters(),
            duration_secs: attributes.session_time,
            cause: match change {
                SessionChange::Stop => Some(terminate_cause(
                    attributes.terminate_cause.as_deref().unwrap_or(""),
                )),
                _ => None,
            },
        };
        let message = Message {
            seq,
            timestamp,
            hostname: options.hostname.as_deref(),
            pid: None,
            text: "",
            original: "",
        };
        let origin = Origin {
            source: &options.source,
            dataset: Format::RadiusDetail.dataset(),
            product: PRODUCT,
        };
        message.push_with_original(&origin, out, EventBody::Session(session), record.original);
    }
}

impl Attributes {
    fn set(&mut self, name: &str, value: &str) {
        let text = || unquote(value).to_owned();
        let number = || unquote(value).parse::<u64>().ok();
        match name {
            "Acct-Status-Type" => self.status = Some(text()),
            "User-Name" => self.user_name = Some(text()),
            "Calling-Station-Id" => self.calling_station = Some(text()),
            "Framed-IP-Address" => self.framed_ip = unquote(value).parse().ok(),
            "Acct-Session-Id" => self.session_id = Some(text()),
            "NAS-Port-Id" => self.nas_port_id = Some(text()),
            "NAS-Port" => self.nas_port = number(),
            "NAS-IP-Address" => self.nas_ip = unquote(value).parse().ok(),
            "Acct-Input-Octets" => self.input_octets = number(),
            "Acct-Output-Octets" => self.output_octets = number(),
            "Acct-Input-Gigawords" => self.input_gigawords = number(),
            "Acct-Output-Gigawords" => self.output_gigawords = number(),
            "Acct-Input-Packets" => self.input_packets = number(),
            "Acct-Output-Packets" => self.output_packets = number(),
            "Acct-Session-Time" => self.session_time = number(),
            "Acct-Terminate-Cause" => self.terminate_cause = Some(text()),
            "Event-Timestamp" => self.event_timestamp = Some(text()),
            "Timestamp" => self.timestamp = unquote(value).parse().ok(),
            _ => {}
        }
    }

    fn peer(&self) -> Peer {
        let mut peer = Peer {
            connection: self.nas_port_id.clone(),
            ike_sa_id: self.nas_port,
            client: self
                .calling_station
                .as_deref()
                .and_then(calling_station_endpoint)
                .unwrap_or_default(),
            server: self
                .nas_ip
                .map(|ip| Endpoint::new(ip, None))
                .unwrap_or_default(),
            ..Peer::default()
        };
        peer.identities.ike_id.clone_from(&self.user_name);
        peer
    }

    /// RADIUS counts from the NAS's side: input is what the client sent (`bytes_in`).
    /// `Acct-*-Gigawords` count the 2^32 overflows of the octet counters.
    fn counters(&self) -> Option<Counters> {
        if self.input_octets.is_none() && self.output_octets.is_none() {
            return None;
        }
        let total = |octets: Option<u64>, gigawords: Option<u64>| {
            let gigawords = gigawords.unwrap_or(0);
            let overflow = if gigawords > u64::from(u32::MAX) {
                u64::MAX
            } else {
                gigawords << 32
            };
            overflow.saturating_add(octets.unwrap_or(0))
        };
        Some(Counters {
            bytes_in: total(self.input_octets, self.input_gigawords),
            bytes_out: total(self.output_octets, self.output_gigawords),
            packets_in: self.input_packets,
            packets_out: self.output_packets,
        })
    }
}

/// `Acct-Terminate-Cause` (RFC 2866 names) → the model's cause.
fn terminate_cause(value: &str) -> TerminateCause {
    match value {
        "User-Request" => TerminateCause::UserRequest,
        "Admin-Reset" | "Admin-Reboot" | "NAS-Request" | "NAS-Reboot" | "Port-Preempted" => {
            TerminateCause::AdminReset
        }
        "Lost-Carrier" | "Lost-Service" | "Port-Error" | "NAS-Error" | "Service-Unavailable" => {
            TerminateCause::LostService
        }
        "Idle-Timeout" | "Session-Timeout" => TerminateCause::Timeout,
        _ => TerminateCause::Other,
    }
}

/// `192.0.2.12[4500]` (strongSwan), `192.0.2.12` (pppd, xl2tpd) → the endpoint; MAC addresses
/// and phone numbers are not addresses.
pub(crate) fn calling_station_endpoint(value: &str) -> Option<Endpoint> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(Endpoint::new(ip, None));
    }
    let (ip, port) = value.strip_suffix(']')?.split_once('[')?;
    Some(Endpoint::new(ip.parse().ok()?, port.parse().ok()))
}

/// `\tUser-Name = "alice"` → (`User-Name`, `"alice"`): the name before the first ` = `, the
/// value after it, both without surrounding blanks. (A hand-written search: `split_once(" = ")`
/// builds a substring searcher per line, a measurable cost at millions of lines a second.)
fn split_attribute(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    let mut from = 0;
    loop {
        let at = from + bytes.get(from..)?.iter().position(|&byte| byte == b'=')?;
        if at > 0 && bytes[at - 1] == b' ' && bytes.get(at + 1) == Some(&b' ') {
            return Some((line[..at - 1].trim_ascii(), line[at + 2..].trim_ascii()));
        }
        from = at + 1;
    }
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(value)
}

/// Appends a line to a record's raw text, never beyond `max_bytes` (cut at a char boundary).
fn append_capped(original: &mut String, line: &str, max_bytes: usize) {
    if !original.is_empty() && original.len() < max_bytes {
        original.push('\n');
    }
    let room = max_bytes.saturating_sub(original.len());
    let mut end = line.len().min(room);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    original.push_str(&line[..end]);
}

/// The header of a record: `Wed Nov 25 09:33:12 2026` (ctime, the server's local time).
fn header_stamp(line: &str) -> Option<LocalStamp> {
    let line = line.trim_end();
    let weekday = line.get(..4)?;
    if !weekday.ends_with(' ') || !weekday[..3].bytes().all(|byte| byte.is_ascii_alphabetic()) {
        return None;
    }
    civil_stamp(&line[4..], false)
}

/// `Nov 25 09:33:12 2026` (header, year last) or `Nov 25 2026 09:33:12` (dates in
/// attributes, year before the time) → the stamp, without zone.
fn civil_stamp(text: &str, year_before_time: bool) -> Option<LocalStamp> {
    let mut words = text.split(' ').filter(|word| !word.is_empty());
    let month = month_number(words.next()?)?;
    let day: i8 = words.next()?.parse().ok()?;
    let (time, year) = if year_before_time {
        let year = words.next()?;
        (words.next()?, year)
    } else {
        let time = words.next()?;
        (time, words.next()?)
    };
    if !year_before_time && words.next().is_some() {
        return None;
    }
    let year: i16 = year.parse().ok()?;
    let mut parts = time.split(':');
    let hour: i8 = parts.next()?.parse().ok()?;
    let minute: i8 = parts.next()?.parse().ok()?;
    let second: i8 = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(LocalStamp {
        year: Some(year),
        month,
        day,
        hour,
        minute,
        second,
        nanosecond: 0,
        offset_secs: None,
    })
}

/// A RADIUS date value as FreeRADIUS prints it: `Nov 25 2026 09:33:12 UTC`, or seconds since
/// the epoch. A zone other than UTC/GMT is an abbreviation that names no offset; the date is
/// then read in the configured time zone.
fn date_value(value: &str, clock: &mut LogClock) -> Option<Timestamp> {
    if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
        return Timestamp::from_second(value.parse().ok()?).ok();
    }
    let mut stamp = civil_stamp(value, true)?;
    if matches!(value.rsplit(' ').next(), Some("UTC" | "GMT")) {
        stamp.offset_secs = Some(0);
    }
    clock.resolve(stamp)
}

fn month_number(name: &str) -> Option<i8> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let idx = MONTHS.iter().position(|month| *month == name)?;
    i8::try_from(idx + 1).ok()
}

#[cfg(test)]
mod tests;
