//! Syslog envelopes: [`parse_syslog_envelope`] splits one syslog message into its header fields
//! and the message text. It is pure (no clock: a year-less timestamp comes back as a
//! [`SyslogTimestamp`] that the caller resolves with its [`LogClock`]), so the `syslog` log
//! format and a network receiver share it.
//!
//! Accepted shapes:
//!
//! - RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`, with
//!   `-` for absent fields, structured data with escaped `\"`, `\\` and `\]`, and an optional
//!   UTF-8 BOM before the message.
//! - RFC 3164: `<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG`, also without `<PRI>` (as rsyslog
//!   writes files), with rsyslog's RFC 3339 "high precision" timestamp instead of `Mmm dd`, and
//!   without host or tag (the message is then everything after the timestamp or host).

use jiff::Timestamp;
use model::RejectReason;

use super::LogClock;
use super::clock::{LocalStamp, read_stamp};
use super::envelope::tag_of;

/// Longest RFC 5424 header fields (section 6).
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;
const MAX_PROCID: usize = 128;
const MAX_MSGID: usize = 32;

/// One syslog message, split. Text fields borrow from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage<'a> {
    /// Facility and severity from `<PRI>` (`PRI = facility * 8 + severity`); `None` when the
    /// line had no `<PRI>` (syslog files).
    pub facility: Option<u8>,
    pub severity: Option<u8>,
    /// `None` for the RFC 5424 NILVALUE or an RFC 3164 line without timestamp.
    pub timestamp: Option<SyslogTimestamp>,
    pub hostname: Option<&'a str>,
    /// RFC 5424 APP-NAME, or the RFC 3164 tag without its `[pid]`.
    pub app_name: Option<&'a str>,
    /// RFC 5424 PROCID, or the RFC 3164 `[pid]`.
    pub procid: Option<&'a str>,
    /// RFC 5424 only.
    pub msgid: Option<&'a str>,
    /// RFC 5424 structured data, raw (`[id k="v"][id2 …]`, escapes untouched).
    pub structured_data: Option<&'a str>,
    /// The message, without a leading BOM. Bytes, since RFC 3164 promises no encoding.
    pub message: &'a [u8],
}

/// A timestamp as the envelope spelled it. RFC 3164 stamps carry neither year nor zone; resolve
/// them with the stream's [`LogClock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyslogTimestamp(LocalStamp);

impl SyslogTimestamp {
    /// The instant, or `None` if the stamp names none (Feb 30, a DST gap).
    pub fn resolve(&self, clock: &mut LogClock) -> Option<Timestamp> {
        clock.resolve(self.0)
    }
}

/// Why [`parse_syslog_envelope`] could not split a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SyslogError {
    #[error("empty syslog message")]
    Empty,
    #[error("invalid syslog priority")]
    BadPriority,
    #[error("invalid syslog timestamp")]
    BadTimestamp,
    #[error("syslog header field {0} is missing, too long or not printable ascii")]
    BadHeader(&'static str),
    #[error("invalid syslog structured data")]
    BadStructuredData,
}

impl SyslogError {
    /// How a parser counts a line it cannot split.
    pub fn reject_reason(&self) -> RejectReason {
        match self {
            SyslogError::BadTimestamp => RejectReason::BadTimestamp,
            _ => RejectReason::Malformed,
        }
    }
}

/// Splits one syslog message (RFC 5424 or RFC 3164; see the module docs) into its header
/// fields and message. A trailing newline is ignored. Never panics; malformed input is an error.
pub fn parse_syslog_envelope(input: &[u8]) -> Result<SyslogMessage<'_>, SyslogError> {
    let input = input.strip_suffix(b"\n").unwrap_or(input);
    let input = input.strip_suffix(b"\r").unwrap_or(input);
    if input.is_empty() {
        return Err(SyslogError::Empty);
    }
    let (pri, rest) = priority(input)?;
    let (facility, severity) = match pri {
        Some(pri) => (Some(pri / 8), Some(pri % 8)),
        None => (None, None),
    };
    match rest.strip_prefix(b"1 ") {
        Some(after_version) if rfc5424_follows(after_version) => {
            rfc5424(after_version, facility, severity)
        }
        _ => Ok(rfc3164(rest, facility, severity)),
    }
}

/// `<PRI>` at the start: 1 to 3 digits, at most 191.
fn priority(input: &[u8]) -> Result<(Option<u8>, &[u8]), SyslogError> {
    let Some(rest) = input.strip_prefix(b"<") else {
        return Ok((None, input));
    };
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    if !(1..=3).contains(&digits) || rest.get(digits) != Some(&b'>') {
        return Err(SyslogError::BadPriority);
    }
    let mut value = 0u16;
    for &digit in &rest[..digits] {
        value = value * 10 + u16::from(digit - b'0');
    }
    let pri = u8::try_from(value)
        .ok()
        .filter(|pri| *pri <= 191)
        .ok_or(SyslogError::BadPriority)?;
    Ok((Some(pri), &rest[digits + 1..]))
}

/// After `1 `: an RFC 3339 timestamp or `-`, which never start an RFC 3164 line.
fn rfc5424_follows(rest: &[u8]) -> bool {
    matches!(rest.first(), Some(b'-'))
        || (rest.len() >= 5 && rest[4] == b'-' && rest[..4].iter().all(u8::is_ascii_digit))
}

fn rfc5424(
    rest: &[u8],
    facility: Option<u8>,
    severity: Option<u8>,
) -> Result<SyslogMessage<'_>, SyslogError> {
    let (stamp_field, rest) = header_field(rest, "timestamp", usize::MAX)?;
    let timestamp = match stamp_field {
        None => None,
        Some(field) => match read_stamp(field.as_bytes()) {
            Some((stamp, len)) if len == field.len() && stamp.year.is_some() => {
                Some(SyslogTimestamp(stamp))
            }
            _ => return Err(SyslogError::BadTimestamp),
        },
    };
    let (hostname, rest) = header_field(rest, "hostname", MAX_HOSTNAME)?;
    let (app_name, rest) = header_field(rest, "app-name", MAX_APP_NAME)?;
    let (procid, rest) = header_field(rest, "procid", MAX_PROCID)?;
    let (msgid, rest) = header_field(rest, "msgid", MAX_MSGID)?;
    let (structured_data, rest) = structured_data(rest)?;
    let message = match rest {
        [] => rest,
        [b' ', message @ ..] => message.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(message),
        _ => return Err(SyslogError::BadStructuredData),
    };
    Ok(SyslogMessage {
        facility,
        severity,
        timestamp,
        hostname,
        app_name,
        procid,
        msgid,
        structured_data,
        message,
    })
}

/// One space-terminated RFC 5424 header field: `-` (absent) or 1 to `max` printable ASCII.
fn header_field<'a>(
    input: &'a [u8],
    name: &'static str,
    max: usize,
) -> Result<(Option<&'a str>, &'a [u8]), SyslogError> {
    let end = input
        .iter()
        .position(|byte| *byte == b' ')
        .ok_or(SyslogError::BadHeader(name))?;
    let field = header_word(&input[..end], max).ok_or(SyslogError::BadHeader(name))?;
    let value = (field != "-").then_some(field);
    Ok((value, &input[end + 1..]))
}

/// `-` or one or more `[SD-ID *(SP PARAM="VALUE")]`, where VALUE escapes `"`, `\` and `]`
/// with a backslash. Returns the raw text and what follows it.
fn structured_data(input: &[u8]) -> Result<(Option<&str>, &[u8]), SyslogError> {
    if let Some(rest) = input.strip_prefix(b"-") {
        return Ok((None, rest));
    }
    let mut at = 0;
    while input.get(at) == Some(&b'[') {
        at += 1;
        let mut in_value = false;
        loop {
            match input.get(at) {
                None => return Err(SyslogError::BadStructuredData),
                Some(b'\\') if in_value => at += 2,
                Some(b'"') => {
                    in_value = !in_value;
                    at += 1;
                }
                Some(b']') if !in_value => {
                    at += 1;
                    break;
                }
                Some(_) => at += 1,
            }
        }
    }
    if at == 0 {
        return Err(SyslogError::BadStructuredData);
    }
    let raw = input.get(..at).ok_or(SyslogError::BadStructuredData)?;
    let raw = std::str::from_utf8(raw).map_err(|_| SyslogError::BadStructuredData)?;
    Ok((Some(raw), &input[at..]))
}

/// RFC 3164 and the file variants: never fails; what cannot be read as a header is message.
fn rfc3164(rest: &[u8], facility: Option<u8>, severity: Option<u8>) -> SyslogMessage<'_> {
    let mut message = SyslogMessage {
        facility,
        severity,
        timestamp: None,
        hostname: None,
        app_name: None,
        procid: None,
        msgid: None,
        structured_data: None,
        message: rest,
    };
    let rest = match read_stamp(rest) {
        Some((stamp, len)) => {
            message.timestamp = Some(SyslogTimestamp(stamp));
            trim_spaces(&rest[len..])
        }
        None => rest,
    };
    message.message = rest;
    let (first, after_first) = split_word(rest);
    if let Some((app, procid)) = tag(first) {
        message.app_name = Some(app);
        message.procid = procid;
        message.message = after_first;
        return message;
    }
    let Some(host) = header_word(first, MAX_HOSTNAME) else {
        return message;
    };
    let (second, after_second) = split_word(after_first);
    let second_tag = tag(second);
    if message.timestamp.is_none() && second_tag.is_none() {
        // Without a timestamp the first word is only a host if a tag follows.
        return message;
    }
    message.hostname = (host != "-").then_some(host);
    message.message = after_first;
    if let Some((app, procid)) = second_tag {
        message.app_name = Some(app);
        message.procid = procid;
        message.message = after_second;
    }
    message
}

/// `prog[123]:` → (`prog`, Some(`123`)); `prog:` → (`prog`, None). Also `prog[123]` without
/// colon, as rsyslog writes the tag of a message it received as RFC 5424.
fn tag(word: &[u8]) -> Option<(&str, Option<&str>)> {
    let word = header_word(word, MAX_APP_NAME + MAX_PROCID + 3)?;
    if let Some((program, pid)) = tag_of(word) {
        let procid = match pid {
            Some(_) => {
                let open = word.find('[')?;
                Some(word.get(open + 1..word.len().checked_sub(2)?)?)
            }
            None => None,
        };
        return Some((program, procid));
    }
    let (program, pid) = word.strip_suffix(']')?.split_once('[')?;
    let valid = !program.is_empty()
        && !pid.is_empty()
        && pid.len() <= MAX_PROCID
        && pid.bytes().all(|byte| byte.is_ascii_digit());
    valid.then_some((program, Some(pid)))
}

/// A word that can be a header field: 1 to `max` bytes of printable ASCII.
fn header_word(word: &[u8], max: usize) -> Option<&str> {
    if word.is_empty() || word.len() > max || !word.iter().all(|byte| (33..=126).contains(byte)) {
        return None;
    }
    // Printable ASCII is UTF-8.
    std::str::from_utf8(word).ok()
}

/// The first space-separated word and the rest (an empty rest still points into `text`).
fn split_word(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|byte| *byte == b' ') {
        Some(at) => (&text[..at], trim_spaces(&text[at + 1..])),
        None => (text, &text[text.len()..]),
    }
}

fn trim_spaces(text: &[u8]) -> &[u8] {
    let n_spaces = text.iter().take_while(|byte| **byte == b' ').count();
    &text[n_spaces..]
}

#[cfg(test)]
mod tests;
