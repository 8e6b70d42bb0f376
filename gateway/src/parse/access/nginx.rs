//! nginx's `combined` access-log format:
//!
//! ```text
//! $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! ```
//!
//! Also read: the `common` format (the same without referer and user agent), Apache's
//! `combined` and `common` (same layout; `"` escaped as `\"`, a `-` byte count), and, after
//! the user agent, any number of extra fields, quoted or not, of which these are understood:
//!
//! - `$request_time`: a bare decimal number with a fraction (`0.005`), or `rt=0.005` /
//!   `request_time=0.005` → the duration (seconds);
//! - `$request_id`: 32 hex digits (nginx's own ids) or a UUID, bare or quoted, or
//!   `rid=…` / `request_id=…` / `req_id=…` → the request id.
//!
//! Other extra fields (`"$http_x_forwarded_for"`, `$request_length`, upstream timings) are
//! left alone. nginx escapes `"`, `\`, control characters and bytes ≥ 0x7f in strings as
//! `\xHH`; they are decoded, invalid UTF-8 shown as `\xNN` as everywhere else.

use jiff::Timestamp;
use jiff::civil::DateTime;
use model::Event;

use super::super::text::ShortStr;
use super::super::{Format, LineOutcome, ParseOptions};
use super::{
    AccessOrigin, Fields, address_of, bad_timestamp, count_of, duration_of, malformed, push,
    request_line, shown, status_of, unescape,
};
use crate::parse::access::DurationUnit;

/// Parses one line of a `combined` (or `common`) access log.
pub(crate) fn parse(
    text: &str,
    seq: u64,
    _now: Timestamp,
    options: &mut ParseOptions,
    out: &mut Vec<Event>,
) -> LineOutcome {
    match read(text) {
        Ok((timestamp, fields)) => {
            let origin = AccessOrigin::of(Format::Nginx);
            push(
                origin,
                options,
                seq,
                timestamp,
                fields.into_request(),
                text,
                out,
            );
            LineOutcome::Parsed
        }
        Err(outcome) => outcome,
    }
}

fn read(text: &str) -> Result<(Timestamp, Fields), LineOutcome> {
    let mut fields = Fields::default();
    let (address, rest) = text
        .split_once(' ')
        .ok_or_else(|| malformed("not an access-log line (no client address)".to_owned()))?;
    fields.client_ip = address_of(address)
        .map_err(|reason| malformed(format!("client address: {reason}")))?
        .map(|(ip, _)| ip);
    let (timestamp, rest) = time_field(rest)?;
    let mut cursor = Cursor { rest };
    let request = cursor
        .quoted()
        .ok_or_else(|| malformed("no quoted request line after the time".to_owned()))?;
    let request = unescape(request);
    if let Some((method, host, path)) = request_line(&request) {
        fields.method = method;
        fields.host = host;
        fields.path = path;
    }
    let status = cursor
        .word()
        .ok_or_else(|| malformed("no status after the request line".to_owned()))?;
    fields.status = status_of(status).map_err(malformed)?;
    let bytes = cursor
        .word()
        .ok_or_else(|| malformed("no byte count after the status".to_owned()))?;
    fields.response_bytes = Some(count_of(bytes, "body_bytes_sent").map_err(malformed)?);
    // `"$http_referer" "$http_user_agent"` (absent in the `common` format), then extras.
    for _ in 0..2 {
        if cursor.at_end() {
            break;
        }
        cursor.quoted().ok_or_else(|| {
            malformed(format!(
                "expected a quoted field at {}",
                shown(cursor.rest.trim_start())
            ))
        })?;
    }
    while !cursor.at_end() {
        let token = if cursor.rest.trim_start().starts_with('"') {
            cursor.quoted().ok_or_else(|| {
                malformed(format!(
                    "unterminated quoted field at {}",
                    shown(cursor.rest.trim_start())
                ))
            })?
        } else {
            cursor.word().unwrap_or_default()
        };
        extra(token, &mut fields)?;
    }
    Ok((timestamp, fields))
}

/// `- $remote_user [$time_local] ` → the time and what follows it. nginx does not escape
/// spaces or brackets in the user name (it comes from the client's Basic credentials), so
/// the time is the first ` [` that a well-formed `$time_local` and `] ` follow.
fn time_field(rest: &str) -> Result<(Timestamp, &str), LineOutcome> {
    const LEN: usize = "29/Nov/2026:19:16:58 +0000".len();
    let mut from = 0;
    let mut first = None;
    while let Some(at) = rest[from..].find_short(" [").map(|at| from + at) {
        let time_at = at + 2;
        first.get_or_insert(time_at);
        if let Some(time) = rest.get(time_at..time_at + LEN)
            && rest[time_at + LEN..].starts_with("] ")
            && let Some(timestamp) = time_local(time)
        {
            return Ok((timestamp, &rest[time_at + LEN + 2..]));
        }
        from = time_at;
    }
    // No well-formed time: say what is wrong with the first candidate.
    let Some(time_at) = first else {
        return Err(malformed("no [time] after the client address".to_owned()));
    };
    match rest[time_at..].split_once_short("] ") {
        Some((time, _)) => Err(bad_timestamp(time)),
        None => Err(malformed("the [time] is not closed".to_owned())),
    }
}

/// One extra field after the user agent (see the module docs).
fn extra(token: &str, fields: &mut Fields) -> Result<(), LineOutcome> {
    let (name, value) = match token.split_once('=') {
        Some((name, value)) if !name.is_empty() && name.bytes().all(is_name_byte) => {
            (Some(name), value.trim_matches('"'))
        }
        _ => (None, token),
    };
    match name {
        Some("rt" | "request_time") if value != "-" => {
            fields.duration_us = Some(
                duration_of(value, DurationUnit::Seconds)
                    .map_err(|reason| malformed(format!("request_time: {reason}")))?,
            );
        }
        Some("rid" | "request_id" | "req_id") if !value.is_empty() && value != "-" => {
            fields.request_id = Some(value.to_owned());
        }
        Some(_) => {}
        None if fields.duration_us.is_none() && is_seconds(value) => {
            fields.duration_us = duration_of(value, DurationUnit::Seconds).ok();
        }
        None if fields.request_id.is_none() && is_request_id(value) => {
            fields.request_id = Some(value.to_owned());
        }
        None => {}
    }
    Ok(())
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// `0.005`, `12.345`: nginx's `$request_time` (always with three decimals).
fn is_seconds(text: &str) -> bool {
    match text.split_once('.') {
        Some((whole, fraction)) => {
            !whole.is_empty()
                && !fraction.is_empty()
                && whole.bytes().all(|byte| byte.is_ascii_digit())
                && fraction.bytes().all(|byte| byte.is_ascii_digit())
        }
        None => false,
    }
}

/// nginx's `$request_id` (32 hex digits) or a UUID (`8-4-4-4-12` hex digits).
fn is_request_id(text: &str) -> bool {
    let hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|byte| byte.is_ascii_hexdigit())
    };
    if hex(text, 32) {
        return true;
    }
    let parts: Vec<&str> = text.split('-').collect();
    matches!(parts.as_slice(), [a, b, c, d, e]
        if hex(a, 8) && hex(b, 4) && hex(c, 4) && hex(d, 4) && hex(e, 12))
}

/// nginx's `$time_local`, `29/Nov/2026:19:16:58 +0000` (and Apache's `%t`, the same).
pub(crate) fn time_local(text: &str) -> Option<Timestamp> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let bytes = text.as_bytes();
    if bytes.len() != 26
        || bytes[2] != b'/'
        || bytes[6] != b'/'
        || bytes[11] != b':'
        || bytes[14] != b':'
        || bytes[17] != b':'
        || bytes[20] != b' '
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i32> {
        let digits = text.get(range)?;
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let day = number(0..2)?;
    let month = MONTHS
        .iter()
        .position(|name| text.get(3..6) == Some(*name))?
        + 1;
    let year = number(7..11)?;
    let (hour, minute, second) = (number(12..14)?, number(15..17)?, number(18..20)?);
    let sign = match bytes[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * (number(22..24)? * 3600 + number(24..26)? * 60);
    let datetime = DateTime::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    jiff::tz::Offset::from_seconds(offset)
        .ok()?
        .to_timestamp(datetime)
        .ok()
}

/// Reads fields separated by spaces from the rest of a line.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.rest.trim_start_matches(' ').is_empty()
    }

    /// The next space-separated word.
    fn word(&mut self) -> Option<&'a str> {
        let rest = self.rest.trim_start_matches(' ');
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(' ').unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }

    /// The next `"…"` field, without its quotes and still escaped. A `"` inside is `\x22`
    /// (nginx) or `\"` (Apache); `\\` is a backslash. `None` if it is not there or not closed.
    fn quoted(&mut self) -> Option<&'a str> {
        let rest = self.rest.trim_start_matches(' ');
        let inner = rest.strip_prefix('"')?;
        let bytes = inner.as_bytes();
        let mut at = 0;
        while at < bytes.len() {
            match bytes[at] {
                b'\\' => at += 2,
                b'"' => {
                    self.rest = &inner[at + 1..];
                    return Some(&inner[..at]);
                }
                _ => at += 1,
            }
        }
        None
    }
}
