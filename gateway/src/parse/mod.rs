//! Log parsers: bytes in, [`model::Event`]s out.
//!
//! The entry type is [`Parser`]: built for one [`Format`] and one source, it takes lines one
//! at a time ([`Parser::parse_line`]) and appends the events each produced. It is pure and
//! synchronous (no IO, no clock of its own: time comes from the [`LogClock`] it was given), so
//! the same parser runs in the live tailer, in `tunnelwatch parse` and in `tunnelwatch ingest`.
//!
//! Parsing never fails. A line that cannot be read becomes a [`model::PipelineError`] event that
//! keeps the raw text, and is counted in [`ParseStats`] by [`model::RejectReason`]. Lines that
//! are well-formed but say nothing tunnelwatch tracks are counted as ignored.
//!
//! Each format has a module: [`Format::Charon`] (strongSwan), [`Format::Pluto`] (Libreswan),
//! [`Format::Xl2tpd`], [`Format::Pppd`], [`Format::RadiusDetail`] (FreeRADIUS `detail` files,
//! multi-line records: see [`Parser::flush`]) and [`Format::Syslog`], which splits each line's
//! envelope with [`parse_syslog_envelope`] and hands the message to the parser its program
//! name selects. The parsers that keep state between lines bound it (least recently seen
//! entries are forgotten), so hostile input cannot grow them without limit.
//!
//! The API access logs ([`Format::Nginx`], [`Format::NginxJson`], [`Format::Envoy`],
//! [`Format::Json`], module `access`) turn each request line into a [`model::ApiRequest`]
//! event; `json` reads its keys through the [`JsonMapping`] in [`ParseOptions::json_mapping`].

mod access;
mod charon;
mod clock;
mod envelope;
mod message;
mod pluto;
mod pppd;
mod radius_detail;
mod radiusd;
mod syslog;
mod text;
mod xl2tpd;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use jiff::Timestamp;
use model::{Event, EventBody, EventId, Observer, PipelineError, RejectReason};
use serde::{Deserialize, Serialize};

pub use access::{DurationUnit, JsonMapping, Keys, TimestampFormat};
pub use clock::LogClock;
pub use syslog::{SyslogError, SyslogMessage, SyslogTimestamp, parse_syslog_envelope};

use message::{Message, next_part, parse_file_line, parse_message};

/// Longest line a parser looks at, by default. Longer lines are rejected as
/// [`RejectReason::Oversized`] and kept truncated to this length.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// The log formats tunnelwatch reads. The names (`charon`, `pluto`, `xl2tpd`, `pppd`,
/// `radius-detail`, `syslog`, `nginx`, `nginx-json`, `envoy`, `json`) are what `--format`,
/// `ingest FORMAT:FILE` and the gateway configuration accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// strongSwan charon: `charon.filelog` lines or syslog lines from charon.
    Charon,
    /// Libreswan pluto: its `logfile=` lines, or syslog lines from pluto.
    Pluto,
    /// xl2tpd: syslog lines, or its stderr (`xl2tpd[pid]: …`) when run with `-D`.
    Xl2tpd,
    /// pppd: syslog lines (per-pid state), or its `logfile` lines.
    Pppd,
    /// FreeRADIUS accounting `detail` files (`radacct/<nas>/detail-YYYYMMDD`).
    RadiusDetail,
    /// A syslog file or stream (RFC 3164 or RFC 5424) of any of the daemons above, each message
    /// parsed by the parser its program names; other programs are ignored.
    Syslog,
    /// nginx access log, `log_format combined` (or `common`, or Apache's), with an optional
    /// `$request_time` and `$request_id` at the end: one API request per line.
    Nginx,
    /// nginx access log written by a `log_format … escape=json` whose keys are nginx's
    /// variable names (`remote_addr`, `time_iso8601`, `request_uri`, `status`…).
    NginxJson,
    /// Envoy JSON access logs (Istio's and Envoy Gateway's default keys).
    Envoy,
    /// JSON lines with the keys given by a [`JsonMapping`] (default: ECS names).
    Json,
}

impl Format {
    pub const ALL: [Format; 10] = [
        Format::Charon,
        Format::Pluto,
        Format::Xl2tpd,
        Format::Pppd,
        Format::RadiusDetail,
        Format::Syslog,
        Format::Nginx,
        Format::NginxJson,
        Format::Envoy,
        Format::Json,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Charon => "charon",
            Format::Pluto => "pluto",
            Format::Xl2tpd => "xl2tpd",
            Format::Pppd => "pppd",
            Format::RadiusDetail => "radius-detail",
            Format::Syslog => "syslog",
            Format::Nginx => "nginx",
            Format::NginxJson => "nginx-json",
            Format::Envoy => "envoy",
            Format::Json => "json",
        }
    }

    /// `event.dataset` of the events this format produces. A `syslog` event carries the
    /// dataset of the parser that read its message; only lines no parser read carry `syslog`.
    pub fn dataset(self) -> &'static str {
        match self {
            Format::Charon => "strongswan.charon",
            Format::Pluto => "libreswan.pluto",
            Format::Xl2tpd => "xl2tpd.log",
            Format::Pppd => "ppp.pppd",
            Format::RadiusDetail => "freeradius.detail",
            Format::Syslog => "syslog",
            Format::Nginx | Format::NginxJson => "nginx.access",
            Format::Envoy => "envoy.access",
            Format::Json => "json.access",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of [`Format::from_str`]: names the unknown format and lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format `{0}` (known: {known})", known = Format::ALL.map(Format::as_str).join(", "))]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(name: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|format| format.as_str() == name)
            .ok_or_else(|| UnknownFormat(name.to_owned()))
    }
}

/// Counts of what a parser did with its lines.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParseStats {
    pub lines: u64,
    pub events: u64,
    /// Well-formed lines that carry nothing tunnelwatch tracks.
    pub ignored: u64,
    /// Lines turned into pipeline errors, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// Lines that were not valid UTF-8 but could still be parsed (invalid bytes kept as `\xNN`).
    pub invalid_utf8: u64,
}

impl ParseStats {
    pub fn n_rejected(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn add(&mut self, other: &ParseStats) {
        self.lines += other.lines;
        self.events += other.events;
        self.ignored += other.ignored;
        self.invalid_utf8 += other.invalid_utf8;
        for (reason, count) in &other.rejected {
            *self.rejected.entry(*reason).or_default() += count;
        }
    }
}

impl fmt::Display for ParseStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} lines: {} events, {} ignored, {} rejected",
            self.lines,
            self.events,
            self.ignored,
            self.n_rejected()
        )?;
        if !self.rejected.is_empty() {
            let reasons: Vec<String> = self
                .rejected
                .iter()
                .map(|(reason, count)| format!("{reason}: {count}"))
                .collect();
            write!(f, " ({})", reasons.join(", "))?;
        }
        if self.invalid_utf8 > 0 {
            write!(f, ", {} with invalid UTF-8", self.invalid_utf8)?;
        }
        Ok(())
    }
}

/// What a parser needs besides the lines themselves.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// The source id that prefixes every [`EventId`], e.g. `gw1/charon`.
    pub source: String,
    /// `observer.hostname` when the line itself does not name a host (file logs).
    pub hostname: Option<String>,
    pub clock: LogClock,
    /// Lines longer than this are rejected as oversized.
    pub max_line_bytes: usize,
    /// The keys the `json` format reads (other formats ignore it).
    pub json_mapping: Arc<JsonMapping>,
}

impl ParseOptions {
    pub fn new(source: impl Into<String>, clock: LogClock) -> ParseOptions {
        ParseOptions {
            source: source.into(),
            hostname: None,
            clock,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            json_mapping: Arc::new(JsonMapping::default()),
        }
    }
}

/// A parser for one stream of lines in one format.
#[derive(Debug)]
pub struct Parser {
    format: Format,
    options: ParseOptions,
    stats: ParseStats,
    charon: charon::CharonParser,
    pluto: pluto::PlutoParser,
    xl2tpd: xl2tpd::Xl2tpdParser,
    pppd: pppd::PppdParser,
    radius_detail: radius_detail::DetailParser,
    /// The JSON access-log formats' keys (unused by the other formats).
    json: access::json::JsonParser,
    /// The sequence number of the last line seen (for [`Parser::flush`]).
    last_seq: Option<u64>,
}

impl Parser {
    pub fn new(format: Format, options: ParseOptions) -> Parser {
        let json = access::json::JsonParser::new(format, &options.json_mapping);
        Parser {
            format,
            options,
            stats: ParseStats::default(),
            charon: charon::CharonParser::default(),
            pluto: pluto::PlutoParser::default(),
            xl2tpd: xl2tpd::Xl2tpdParser::default(),
            pppd: pppd::PppdParser::default(),
            radius_detail: radius_detail::DetailParser::default(),
            json,
            last_seq: None,
        }
    }

    pub fn stats(&self) -> &ParseStats {
        &self.stats
    }

    /// Moves the reference instant of the clock (used for lines without a year or timestamp).
    pub fn set_now(&mut self, now: Timestamp) {
        self.options.clock.set_now(now);
    }

    /// Parses one line (without its line terminator; a trailing `\r` is dropped). `seq` is the
    /// line's sequence number within the source; `now` is when it was read, used only if the
    /// line has no timestamp. Appends zero or more events to `out`.
    pub fn parse_line(&mut self, line: &[u8], seq: u64, now: Timestamp, out: &mut Vec<Event>) {
        self.last_seq = Some(seq);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.options.max_line_bytes {
            self.parse_oversized(line, line.len(), seq, now, out);
            return;
        }
        self.stats.lines += 1;
        let before = out.len();
        if line.iter().all(u8::is_ascii_whitespace) {
            // A blank line ends a `detail` record; elsewhere it says nothing.
            if self.format == Format::RadiusDetail {
                self.radius_detail
                    .end_record(seq, now, &mut self.options, out);
            }
            if out.len() > before {
                self.stats.events += (out.len() - before) as u64;
            } else {
                self.stats.ignored += 1;
            }
            return;
        }
        let text = decode_lossless(line);
        if matches!(text, Cow::Owned(_)) {
            self.stats.invalid_utf8 += 1;
        }
        let options = &mut self.options;
        let (outcome, dataset) = match self.format {
            Format::Charon => {
                let outcome = parse_file_line(&mut self.charon, &text, seq, now, options, out);
                (outcome, None)
            }
            Format::Pluto => {
                let outcome = parse_file_line(&mut self.pluto, &text, seq, now, options, out);
                (outcome, None)
            }
            Format::Xl2tpd => {
                let outcome = parse_file_line(&mut self.xl2tpd, &text, seq, now, options, out);
                (outcome, None)
            }
            Format::Pppd => {
                let outcome = parse_file_line(&mut self.pppd, &text, seq, now, options, out);
                (outcome, None)
            }
            Format::RadiusDetail => {
                let outcome = self.radius_detail.parse(&text, seq, now, options, out);
                (outcome, None)
            }
            Format::Syslog => self.parse_syslog(&text, seq, now, out),
            Format::Nginx => (access::nginx::parse(&text, seq, now, options, out), None),
            Format::NginxJson | Format::Envoy | Format::Json => {
                let outcome = self.json.parse(line, &text, seq, now, options, out);
                (outcome, None)
            }
        };
        // A line may also have finished an earlier record (radius-detail).
        self.stats.events += (out.len() - before) as u64;
        match outcome {
            LineOutcome::Parsed => {}
            LineOutcome::Ignored => self.stats.ignored += 1,
            LineOutcome::Rejected(reason, message) => {
                let dataset = dataset.unwrap_or(self.format.dataset());
                let original = text.into_owned();
                self.reject(
                    reason,
                    message,
                    original,
                    line.len(),
                    seq,
                    now,
                    dataset,
                    out,
                );
            }
        }
    }

    /// Emits what the parser still holds at the end of the input: the last record of a
    /// `radius-detail` file that did not end with a blank line. Its event gets the sequence
    /// number the next line would have had, so a later read that finds the record finished by
    /// a blank line at that position yields the same event id (stored once). `now` is the time
    /// used if the record names none.
    ///
    /// Call this when a file has been read to its end for good (`tunnelwatch parse`,
    /// `ingest`), never when a tailer merely caught up with a file that is still being
    /// written: the record's end is still to come, and it is emitted when it comes.
    pub fn flush(&mut self, now: Timestamp, out: &mut Vec<Event>) {
        let Some(last_seq) = self.last_seq else {
            return;
        };
        let before = out.len();
        let seq = last_seq.saturating_add(1);
        self.radius_detail
            .end_record(seq, now, &mut self.options, out);
        self.stats.events += (out.len() - before) as u64;
    }

    /// The `syslog` format: split the envelope, then let the program's parser read the message.
    /// Returns the outcome and, when a parser read the message, that parser's dataset.
    fn parse_syslog(
        &mut self,
        text: &str,
        seq: u64,
        now: Timestamp,
        out: &mut Vec<Event>,
    ) -> (LineOutcome, Option<&'static str>) {
        let envelope = match parse_syslog_envelope(text.as_bytes()) {
            Ok(envelope) => envelope,
            Err(error) => {
                return (
                    LineOutcome::Rejected(error.reject_reason(), error.to_string()),
                    None,
                );
            }
        };
        let Some(program) = envelope.app_name.and_then(Program::of) else {
            return (LineOutcome::Ignored, None);
        };
        let dataset = Some(program.dataset());
        let timestamp = match envelope.timestamp {
            Some(stamp) => match stamp.resolve(&mut self.options.clock) {
                Some(timestamp) => timestamp,
                None => return (message::bad_timestamp(), dataset),
            },
            None => now,
        };
        // The envelope was split from valid UTF-8 at ASCII boundaries, so this cannot fail.
        let Ok(body) = std::str::from_utf8(envelope.message.trim_ascii_start()) else {
            let reason = "syslog message is not utf-8".to_owned();
            return (
                LineOutcome::Rejected(RejectReason::Malformed, reason),
                dataset,
            );
        };
        let message = Message {
            seq,
            timestamp,
            hostname: envelope.hostname.or(self.options.hostname.as_deref()),
            pid: envelope.procid.and_then(|procid| procid.parse().ok()),
            text: body,
            original: text,
        };
        let source = self.options.source.as_str();
        let outcome = match program {
            Program::Charon => parse_message(&mut self.charon, &message, source, out),
            Program::Pluto => parse_message(&mut self.pluto, &message, source, out),
            Program::Xl2tpd => parse_message(&mut self.xl2tpd, &message, source, out),
            Program::Pppd => parse_message(&mut self.pppd, &message, source, out),
            Program::Radiusd => radiusd::parse_message(&message, source, out),
        };
        (outcome, dataset)
    }

    /// Records a line that was longer than the limit: `prefix` is what was kept of it (a
    /// tailer keeps only the first `max_line_bytes + 1` bytes), `full_len` its real length.
    pub fn parse_oversized(
        &mut self,
        prefix: &[u8],
        full_len: usize,
        seq: u64,
        now: Timestamp,
        out: &mut Vec<Event>,
    ) {
        self.last_seq = Some(seq);
        self.stats.lines += 1;
        let kept =
            decode_lossless(truncate_at_char(prefix, self.options.max_line_bytes)).into_owned();
        let message = format!(
            "line of {full_len} bytes exceeds the limit of {} bytes",
            self.options.max_line_bytes
        );
        let dataset = self.format.dataset();
        self.reject(
            RejectReason::Oversized,
            message,
            kept,
            full_len,
            seq,
            now,
            dataset,
            out,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn reject(
        &mut self,
        reason: RejectReason,
        message: String,
        original: String,
        original_len: usize,
        seq: u64,
        now: Timestamp,
        dataset: &str,
        out: &mut Vec<Event>,
    ) {
        *self.stats.rejected.entry(reason).or_default() += 1;
        // The line may already have produced an event (it finished a `detail` record).
        let part = next_part(out, &self.options.source, seq);
        out.push(Event {
            id: EventId::new(self.options.source.clone(), seq, part),
            timestamp: now,
            dataset: dataset.to_owned(),
            observer: Observer {
                hostname: self.options.hostname.clone(),
                product: None,
            },
            original,
            session_id: None,
            source_geo: None,
            body: EventBody::PipelineError(PipelineError {
                reason,
                message,
                original_len: original_len as u64,
            }),
        });
    }
}

/// The daemons whose syslog messages the `syslog` format reads, by program name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Charon,
    Pluto,
    Xl2tpd,
    Pppd,
    /// FreeRADIUS's own log lines (`Login OK`, `Login incorrect`).
    Radiusd,
}

impl Program {
    fn of(name: &str) -> Option<Program> {
        match name {
            "charon" | "charon-systemd" | "charon-cmd" | "ipsec" => Some(Program::Charon),
            "pluto" => Some(Program::Pluto),
            "xl2tpd" => Some(Program::Xl2tpd),
            "pppd" => Some(Program::Pppd),
            "radiusd" | "freeradius" => Some(Program::Radiusd),
            _ => None,
        }
    }

    fn dataset(self) -> &'static str {
        match self {
            Program::Charon => Format::Charon.dataset(),
            Program::Pluto => Format::Pluto.dataset(),
            Program::Xl2tpd => Format::Xl2tpd.dataset(),
            Program::Pppd => Format::Pppd.dataset(),
            Program::Radiusd => radiusd::DATASET,
        }
    }
}

/// What a format parser did with one line.
pub(crate) enum LineOutcome {
    /// Zero or more events were appended (zero: the line only updated state).
    Parsed,
    Ignored,
    Rejected(RejectReason, String),
}

/// Decodes UTF-8, keeping every invalid byte visible as `\xNN` so the raw line survives.
pub fn decode_lossless(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => {
            let mut text = String::with_capacity(bytes.len() + 16);
            for chunk in bytes.utf8_chunks() {
                text.push_str(chunk.valid());
                for byte in chunk.invalid() {
                    text.push_str(&format!("\\x{byte:02x}"));
                }
            }
            Cow::Owned(text)
        }
    }
}

/// The longest prefix of `bytes` not longer than `max` that does not split a UTF-8 sequence.
fn truncate_at_char(bytes: &[u8], max: usize) -> &[u8] {
    let mut end = max.min(bytes.len());
    // Step back over continuation bytes (0b10xx_xxxx) so a multi-byte char is not cut.
    while end > 0 && end < bytes.len() && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &bytes[..end]
}

#[cfg(test)]
mod tests;
