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

mod charon;
mod clock;
mod envelope;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use model::{Event, EventBody, EventId, Observer, PipelineError, RejectReason};
use serde::{Deserialize, Serialize};

pub use clock::LogClock;

/// Longest line a parser looks at, by default. Longer lines are rejected as
/// [`RejectReason::Oversized`] and kept truncated to this length.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024;

/// The log formats tunnelwatch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// strongSwan charon: `charon.filelog` lines or syslog lines from charon.
    Charon,
}

impl Format {
    pub const ALL: [Format; 1] = [Format::Charon];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Charon => "charon",
        }
    }

    /// `event.dataset` of the events this format produces.
    pub fn dataset(self) -> &'static str {
        match self {
            Format::Charon => "strongswan.charon",
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
}

impl ParseOptions {
    pub fn new(source: impl Into<String>, clock: LogClock) -> ParseOptions {
        ParseOptions {
            source: source.into(),
            hostname: None,
            clock,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
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
}

impl Parser {
    pub fn new(format: Format, options: ParseOptions) -> Parser {
        Parser {
            format,
            options,
            stats: ParseStats::default(),
            charon: charon::CharonParser::default(),
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
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.options.max_line_bytes {
            self.parse_oversized(line, line.len(), seq, now, out);
            return;
        }
        self.stats.lines += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            self.stats.ignored += 1;
            return;
        }
        let text = decode_lossless(line);
        if matches!(text, Cow::Owned(_)) {
            self.stats.invalid_utf8 += 1;
        }
        let before = out.len();
        let outcome = match self.format {
            Format::Charon => self.charon.parse(&text, seq, now, &mut self.options, out),
        };
        match outcome {
            LineOutcome::Parsed => self.stats.events += (out.len() - before) as u64,
            LineOutcome::Ignored => self.stats.ignored += 1,
            LineOutcome::Rejected(reason, message) => {
                self.reject(
                    reason,
                    message,
                    text.into_owned(),
                    line.len(),
                    seq,
                    now,
                    out,
                );
            }
        }
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
        self.stats.lines += 1;
        let kept =
            decode_lossless(truncate_at_char(prefix, self.options.max_line_bytes)).into_owned();
        let message = format!(
            "line of {full_len} bytes exceeds the limit of {} bytes",
            self.options.max_line_bytes
        );
        self.reject(
            RejectReason::Oversized,
            message,
            kept,
            full_len,
            seq,
            now,
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
        out: &mut Vec<Event>,
    ) {
        *self.stats.rejected.entry(reason).or_default() += 1;
        out.push(Event {
            id: EventId::new(self.options.source.clone(), seq, 0),
            timestamp: now,
            dataset: self.format.dataset().to_owned(),
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
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.as_str().parse::<Format>(), Ok(format));
        }
        let error = "pluto2".parse::<Format>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown log format `pluto2` (known: charon)"
        );
    }

    #[test]
    fn invalid_utf8_is_kept_visible() {
        assert_eq!(decode_lossless(b"ok \xff\xfe end"), "ok \\xff\\xfe end");
        assert_eq!(decode_lossless("é".as_bytes()), "é");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "aé".as_bytes(); // a, 0xC3, 0xA9
        assert_eq!(truncate_at_char(text, 2), b"a");
        assert_eq!(truncate_at_char(text, 3), text);
        assert_eq!(truncate_at_char(text, 10), text);
    }
}
