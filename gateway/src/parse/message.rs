//! A log message with its envelope already split off: what every format parser works on.
//!
//! A line reaches a format parser either straight from a file of that format (the parser splits
//! the envelope itself, see [`from_file_line`]) or through the `syslog` format, which splits the
//! envelope with [`super::parse_syslog_envelope`] and hands the message to the parser that the
//! program name selects. Either way the parser sees a [`Message`].

use jiff::Timestamp;
use model::{Event, EventBody, EventId, Observer, RejectReason};

use super::envelope;
use super::{LineOutcome, LogClock};

/// One message and what its envelope said.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    /// The line's sequence number within its source.
    pub seq: u64,
    /// When it happened: the envelope's timestamp, or when it was read.
    pub timestamp: Timestamp,
    /// The envelope's host, else the configured one.
    pub hostname: Option<&'a str>,
    /// The syslog program (tag) and pid, when the envelope had them.
    pub program: Option<&'a str>,
    pub pid: Option<u32>,
    /// The message after the envelope.
    pub text: &'a str,
    /// The whole line, kept as `event.original`.
    pub original: &'a str,
}

/// Where events of one parser come from: the source id, `event.dataset`, `observer.product`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub source: &'a str,
    pub dataset: &'static str,
    pub product: &'static str,
}

impl Message<'_> {
    /// Appends an event of this message. Its `part` counts the events the same line produced
    /// before it, so one line may yield several events with distinct ids.
    pub fn push(&self, origin: &Origin<'_>, out: &mut Vec<Event>, body: EventBody) {
        self.push_with_original(origin, out, body, self.original.to_owned());
    }

    /// Like [`Message::push`], with `event.original` given (e.g. a multi-line record the
    /// parser already collected), so that it is moved rather than copied.
    pub fn push_with_original(
        &self,
        origin: &Origin<'_>,
        out: &mut Vec<Event>,
        body: EventBody,
        original: String,
    ) {
        let part = next_part(out, origin.source, self.seq);
        out.push(Event {
            id: EventId::new(origin.source, self.seq, part),
            timestamp: self.timestamp,
            dataset: origin.dataset.to_owned(),
            observer: Observer {
                hostname: self.hostname.map(str::to_owned),
                product: Some(origin.product.to_owned()),
            },
            original,
            session_id: None,
            source_geo: None,
            body,
        });
    }
}

/// The `part` the next event of line `seq` gets: how many events of that line are already at
/// the end of `out`.
pub(crate) fn next_part(out: &[Event], source: &str, seq: u64) -> u16 {
    let part = out
        .iter()
        .rev()
        .take_while(|event| event.id.seq == seq && event.id.source == source)
        .count();
    u16::try_from(part).unwrap_or(u16::MAX)
}

/// Splits a line of a log file (a daemon's own log file, or a syslog file) into a [`Message`]:
/// timestamp (resolved with the clock; the read time when the line has none), host (else
/// `fallback_host`), program and pid. `is_message_start` tells whether the text after the
/// timestamp already is the message (see [`envelope::split`]).
pub(crate) fn from_file_line<'a>(
    text: &'a str,
    seq: u64,
    now: Timestamp,
    clock: &mut LogClock,
    fallback_host: Option<&'a str>,
    is_message_start: impl Fn(&str) -> bool,
) -> Result<Message<'a>, LineOutcome> {
    let envelope = envelope::split(text, is_message_start);
    let timestamp = match envelope.stamp {
        Some(stamp) => clock.resolve(stamp).ok_or_else(bad_timestamp)?,
        None => now,
    };
    Ok(Message {
        seq,
        timestamp,
        hostname: envelope.host.or(fallback_host),
        program: envelope.program,
        pid: envelope.pid,
        text: envelope.message,
        original: text,
    })
}

/// The outcome of a line whose timestamp names no instant (Feb 30, a DST gap).
pub(crate) fn bad_timestamp() -> LineOutcome {
    LineOutcome::Rejected(
        RejectReason::BadTimestamp,
        "timestamp names no existing instant".to_owned(),
    )
}
