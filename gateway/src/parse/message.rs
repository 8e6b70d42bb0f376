//! A log message with its envelope already split off: what every format parser works on.
//!
//! A line reaches a daemon's parser (a [`DaemonParser`]) either straight from a file of that
//! format ([`parse_file_line`] splits the envelope) or through the `syslog` format, which splits
//! the envelope with [`super::parse_syslog_envelope`] and hands the message to the parser that
//! the program name selects ([`parse_message`]). Either way the parser sees a [`Message`].

use jiff::Timestamp;
use model::{Event, EventBody, EventId, Observer, RejectReason};

use super::envelope;
use super::{LineOutcome, ParseOptions};

/// One message and what its envelope said.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Message<'a> {
    /// The line's sequence number within its source.
    pub seq: u64,
    /// When it happened: the envelope's timestamp, or when it was read.
    pub timestamp: Timestamp,
    /// The envelope's host, else the configured one.
    pub hostname: Option<&'a str>,
    /// The syslog pid, when the envelope had one.
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

/// A parser of one daemon's messages (charon, pluto, xl2tpd, pppd). It reads a line of the
/// daemon's own log file through [`parse_file_line`] and a message the `syslog` format split
/// off through [`parse_message`]; it only says what its lines look like and reads messages.
pub(crate) trait DaemonParser {
    /// Whether `program`, a line's syslog tag, is this daemon: the lines of other programs in
    /// its file are ignored.
    fn is_own_program(program: &str) -> bool;

    /// Whether the text after a line's timestamp already is the message (a file log without
    /// host and program), so that a message is never mistaken for a host name (see
    /// [`envelope::split`]).
    fn is_message_start(text: &str) -> bool;

    /// The message of a line of the daemon's file, from the text after its envelope, or the
    /// outcome of a line that is no message of the daemon's. By default, the text itself.
    fn file_message(text: &str) -> Result<&str, LineOutcome> {
        Ok(text)
    }

    /// Reads one message, appending its events; returns whether it was one the parser
    /// understands (a message that only updated state is one).
    fn read_message(&mut self, message: &Message<'_>, source: &str, out: &mut Vec<Event>) -> bool;

    /// Forgets the least recently seen state once the parser keeps too much, so that hostile
    /// input cannot grow it without bound; `seq` is the line just read.
    fn evict(&mut self, seq: u64);
}

/// For [`DaemonParser::evict`]: the sequence number at or below which a quarter of the entries
/// were last seen (at most `seq`, the line just read), so that keeping only the entries seen
/// after it forgets the least recently seen quarter.
pub(crate) fn quarter_cut(last_seqs: impl Iterator<Item = u64>, seq: u64) -> u64 {
    let mut last_seqs: Vec<u64> = last_seqs.collect();
    if last_seqs.is_empty() {
        return 0;
    }
    let cut_idx = last_seqs.len() / 4;
    let (_, cut, _) = last_seqs.select_nth_unstable(cut_idx);
    (*cut).min(seq)
}

/// Reads a message whose envelope is already split (by [`parse_file_line`] or by the `syslog`
/// format): parsed if the parser understood it or it yielded events, else ignored.
pub(crate) fn parse_message<P: DaemonParser>(
    parser: &mut P,
    message: &Message<'_>,
    source: &str,
    out: &mut Vec<Event>,
) -> LineOutcome {
    let before = out.len();
    let handled = parser.read_message(message, source, out);
    parser.evict(message.seq);
    if handled || out.len() > before {
        LineOutcome::Parsed
    } else {
        LineOutcome::Ignored
    }
}

/// Reads a line of a daemon's log file (its own file, or a syslog file): splits the envelope,
/// ignores the lines of other programs, takes the message ([`DaemonParser::file_message`]),
/// resolves the timestamp with the clock (the read time `now` when the line has none; a
/// timestamp that names no instant rejects the line) and hands the [`Message`] to
/// [`parse_message`]. The host is the envelope's, else the configured one.
pub(crate) fn parse_file_line<P: DaemonParser>(
    parser: &mut P,
    text: &str,
    seq: u64,
    now: Timestamp,
    options: &mut ParseOptions,
    out: &mut Vec<Event>,
) -> LineOutcome {
    let envelope = envelope::split(text, P::is_message_start);
    if let Some(program) = envelope.program
        && !P::is_own_program(program)
    {
        return LineOutcome::Ignored;
    }
    let body = match P::file_message(envelope.message) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let timestamp = match envelope.stamp {
        Some(stamp) => match options.clock.resolve(stamp) {
            Some(timestamp) => timestamp,
            None => return bad_timestamp(),
        },
        None => now,
    };
    let message = Message {
        seq,
        timestamp,
        hostname: envelope.host.or(options.hostname.as_deref()),
        pid: envelope.pid,
        text: body,
        original: text,
    };
    parse_message(parser, &message, &options.source, out)
}

/// The outcome of a line whose timestamp names no instant (Feb 30, a DST gap).
pub(crate) fn bad_timestamp() -> LineOutcome {
    LineOutcome::Rejected(
        RejectReason::BadTimestamp,
        "timestamp names no existing instant".to_owned(),
    )
}
