//! API gateway and reverse proxy access logs: one line, one HTTP request, one
//! [`ApiRequest`] event (`event.timestamp` is the request's time from the log,
//! `event.original` the line).
//!
//! Four formats share this module:
//!
//! - [`Format::Nginx`] ([`nginx`]): nginx's `combined` log format (and Apache's, which has the
//!   same layout), with the extensions listed there;
//! - [`Format::NginxJson`], [`Format::Envoy`] and [`Format::Json`] ([`json`]): one JSON object
//!   per line, read through a [`JsonMapping`] of keys to fields. `nginx-json` and `envoy` have
//!   built-in mappings ([`JsonMapping::nginx`], [`JsonMapping::envoy`]); `json` takes one from
//!   the configuration (`json_mapping` on a gateway source, `--json-mapping FILE`), by default
//!   [`JsonMapping::default`], ECS field names.
//!
//! What every format does alike:
//!
//! - `url.path` is the request target's path; the query string (and a fragment) is not kept
//!   in any field (it often carries tokens), only in `event.original`. An absolute target
//!   (`GET http://api.test/x`) gives the host too.
//! - `url.domain` loses its port (`api.test:8443` → `api.test`; `[::1]:80` → `[::1]`).
//! - The client address may carry a port (`10.0.0.1:5000`, `[2001:db8::1]:5000`) and may be a
//!   comma-separated `X-Forwarded-For` list, of which the last entry counts (the one the
//!   nearest proxy saw: the first ones are whatever the client claimed). IPv4-mapped IPv6
//!   addresses become IPv4. A Unix socket peer (`unix:…`) has no address. Anything else that
//!   is not an IP address rejects the line.
//! - The status must be 0 (no response was sent: Envoy's `response_code` 0, nginx's `000`) or
//!   100 to 599; byte counts and durations must be non-negative numbers that fit in 64 bits
//!   (durations may have a fraction). Anything else rejects the line: a field that does not
//!   hold what its name says means the line is not what the parser takes it for.
//! - `-`, an empty string and JSON `null` mean "not logged".
//! - A request the server could not read (nginx logs `"-"`, `""` or the garbage itself as the
//!   request line, with status 400) is kept with an empty method and path, so that a scanner's
//!   probes are seen too.
//! - Text fields keep what the client sent, control characters (ESC, CR, LF) included, as the
//!   VPN parsers do: outputs escape them (JSON lines, `tunnelwatch sql` tables).

pub(crate) mod json;
mod mapping;
pub(crate) mod nginx;

use std::borrow::Cow;
use std::net::IpAddr;

use jiff::Timestamp;
use model::{ApiRequest, Endpoint, Event, EventBody, EventId, Observer, RejectReason};

use super::message::next_part;
use super::{Format, LineOutcome, ParseOptions};

pub use mapping::{DurationUnit, JsonMapping, Keys, TimestampFormat};

/// Where the events of one access-log format come from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccessOrigin {
    pub dataset: &'static str,
    /// `observer.product`; none for the generic `json` format.
    pub product: Option<&'static str>,
}

impl AccessOrigin {
    pub(crate) fn of(format: Format) -> AccessOrigin {
        let product = match format {
            Format::Nginx | Format::NginxJson => Some("nginx"),
            Format::Envoy => Some("envoy"),
            _ => None,
        };
        AccessOrigin {
            dataset: format.dataset(),
            product,
        }
    }
}

/// Appends the event of one request.
fn push(
    origin: AccessOrigin,
    options: &ParseOptions,
    seq: u64,
    timestamp: Timestamp,
    request: ApiRequest,
    original: &str,
    out: &mut Vec<Event>,
) {
    let part = next_part(out, &options.source, seq);
    out.push(Event {
        id: EventId::new(options.source.clone(), seq, part),
        timestamp,
        dataset: origin.dataset.to_owned(),
        observer: Observer {
            hostname: options.hostname.clone(),
            product: origin.product.map(str::to_owned),
        },
        original: original.to_owned(),
        session_id: None,
        source_geo: None,
        body: EventBody::ApiRequest(request),
    });
}

/// The fields of a request as read from a line, before they become an [`ApiRequest`].
#[derive(Debug, Default)]
struct Fields {
    client_ip: Option<IpAddr>,
    destination: Endpoint,
    method: String,
    host: Option<String>,
    path: String,
    status: u16,
    response_bytes: Option<u64>,
    duration_us: Option<u64>,
    request_id: Option<String>,
}

impl Fields {
    fn into_request(self) -> ApiRequest {
        ApiRequest {
            client_ip: self.client_ip,
            destination: self.destination,
            method: self.method,
            host: self.host,
            path: self.path,
            status: self.status,
            response_bytes: self.response_bytes,
            duration_us: self.duration_us,
            request_id: self.request_id,
            session_join: None,
            user_name: None,
        }
    }
}

fn malformed(message: String) -> LineOutcome {
    LineOutcome::Rejected(RejectReason::Malformed, message)
}

fn bad_timestamp(text: &str) -> LineOutcome {
    LineOutcome::Rejected(
        RejectReason::BadTimestamp,
        format!("cannot read the timestamp {}", shown(text)),
    )
}

/// `text` quoted for an error message: control characters escaped, at most 64 characters.
fn shown(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{:?}…", &text[..end]),
        None => format!("{text:?}"),
    }
}

/// An HTTP status: 0 (no response sent) or 100 to 599.
fn status_of(text: &str) -> Result<u16, String> {
    let status = text
        .parse::<u16>()
        .ok()
        .filter(|_| text.bytes().all(|byte| byte.is_ascii_digit()));
    match status {
        Some(status) if status == 0 || (100..=599).contains(&status) => Ok(status),
        _ => Err(format!(
            "status {} is not an HTTP status code (0 or 100 to 599)",
            shown(text)
        )),
    }
}

/// A byte count: ASCII digits that fit in a `u64`. Apache's `-` (no body) is 0.
fn count_of(text: &str, what: &str) -> Result<u64, String> {
    if text == "-" {
        return Ok(0);
    }
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("{what} {} is not a byte count", shown(text)));
    }
    text.parse::<u64>()
        .map_err(|_| format!("{what} {} is too large", shown(text)))
}

/// A non-negative decimal number (`12`, `0.005`, `1.5e3`) times `10^scale`, truncated to an
/// integer: `decimal("0.005", 6)` is 5000. `None` if it is not such a number or does not fit.
fn decimal(text: &str, scale: i32) -> Option<u64> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // Digits beyond the 30th cannot matter for a u64 result: drop them (truncation).
    let digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes())
        .map(|byte| byte - b'0')
        .collect();
    let leading_zeros = digits.iter().take_while(|digit| **digit == 0).count();
    let significant = &digits[leading_zeros..];
    let kept = significant.len().min(30);
    let dropped = i32::try_from(significant.len() - kept).ok()?;
    let mut value: u128 = 0;
    for &digit in &significant[..kept] {
        value = value * 10 + u128::from(digit);
    }
    let fraction_len = i32::try_from(fraction.len()).ok()?;
    let shift = scale
        .checked_add(exponent)?
        .checked_sub(fraction_len)?
        .checked_add(dropped)?;
    if value == 0 {
        return Some(0);
    }
    let value = if shift >= 0 {
        let factor = 10u128.checked_pow(u32::try_from(shift).ok()?)?;
        value.checked_mul(factor)?
    } else {
        let divisor = 10u128.checked_pow(u32::try_from(-shift).ok()?);
        // A divisor beyond u128 leaves nothing of the value.
        divisor.map_or(0, |divisor| value / divisor)
    };
    u64::try_from(value).ok()
}

/// A duration in `unit` (`0.005` seconds, `12` ms) → microseconds.
fn duration_of(text: &str, unit: DurationUnit) -> Result<u64, String> {
    decimal(text, unit.micros_exponent())
        .ok_or_else(|| format!("duration {} is not a number of {unit}", shown(text)))
}

/// A client or server address: an IP address, optionally with a port (`1.2.3.4:5`,
/// `[::1]:5`) or an IPv6 zone; the last entry of a comma-separated list. `Ok(None)` for a
/// Unix socket peer or an empty entry.
fn address_of(text: &str) -> Result<Option<(IpAddr, Option<u16>)>, String> {
    let entry = text.rsplit(',').next().unwrap_or(text).trim();
    if entry.is_empty()
        || entry == "-"
        || entry.starts_with("unix:")
        || entry.starts_with('/')
        || entry.starts_with('@')
        || entry.starts_with("envoy://")
    {
        return Ok(None);
    }
    let bad = || format!("{} is not an IP address", shown(text));
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse::<u16>().map_err(|_| bad())?),
            None if after.is_empty() => None,
            None => return Err(bad()),
        };
        (host, port)
    } else if entry.matches(':').count() == 1 {
        let (host, port) = entry.split_once(':').ok_or_else(bad)?;
        (host, Some(port.parse::<u16>().map_err(|_| bad())?))
    } else {
        (entry, None)
    };
    // fe80::1%eth0: the zone names an interface of the logging host; the address is enough.
    let host = host.split_once('%').map_or(host, |(address, _)| address);
    let ip = host.parse::<IpAddr>().map_err(|_| bad())?;
    Ok(Some((ip.to_canonical(), port)))
}

/// `url.domain`: a Host/authority value without its port (and without user info).
fn host_of(text: &str) -> Option<String> {
    let host = text.rsplit_once('@').map_or(text, |(_, host)| host);
    let host = if host.starts_with('[') {
        // [2001:db8::1]:443 → [2001:db8::1]
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|byte| byte.is_ascii_digit()) => name,
            _ => host,
        }
    };
    (!host.is_empty() && host != "-").then(|| host.to_owned())
}

/// A request target → its host (absolute form only) and its path (without query or
/// fragment). `*` (`OPTIONS *`) stays `*`.
fn split_target(target: &str) -> (Option<String>, String) {
    let has_prefix = |prefix: &str| {
        target
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    };
    let scheme_len = if has_prefix("http://") {
        Some(7)
    } else if has_prefix("https://") {
        Some(8)
    } else {
        None
    };
    let (host, rest) = match scheme_len {
        Some(len) => {
            let after = &target[len..];
            let end = after.find(['/', '?', '#']).unwrap_or(after.len());
            (host_of(&after[..end]), &after[end..])
        }
        None => (None, target),
    };
    let path = rest.split(['?', '#']).next().unwrap_or("");
    let path = if path.is_empty() && scheme_len.is_some() {
        "/"
    } else {
        path
    };
    (host, path.to_owned())
}

/// RFC 9110 `token` characters: what a method is made of.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// `GET /path?q HTTP/1.1` (or HTTP/0.9's `GET /path`) → method, host of an absolute target,
/// path. `None` when it is not a request line (garbage, `-`, a TLS handshake…).
fn request_line(text: &str) -> Option<(String, Option<String>, String)> {
    let (method, rest) = text.split_once(' ')?;
    if !is_token(method) {
        return None;
    }
    let target = match rest.rsplit_once(' ') {
        Some((target, protocol)) if protocol.starts_with("HTTP/") => target,
        _ => rest,
    };
    if target.is_empty() {
        return None;
    }
    let (host, path) = split_target(target);
    Some((method.to_owned(), host, path))
}

/// Text from a log, with invalid UTF-8 shown as `\xNN` (as [`super::decode_lossless`]).
fn lossless(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => super::decode_lossless(error.as_bytes()).into_owned(),
    }
}

/// Undoes nginx's escaping of logged strings (`\xHH` for `"`, `\`, control and non-ASCII
/// bytes) and Apache's (`\"`, `\\`, `\xHH`, `\n`, `\t`…).
fn unescape(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte != b'\\' || at + 1 == bytes.len() {
            out.push(byte);
            at += 1;
            continue;
        }
        let hex = |offset: usize| {
            bytes
                .get(at + offset)
                .and_then(|digit| (*digit as char).to_digit(16))
        };
        let (decoded, len) = match bytes[at + 1] {
            b'x' => match (hex(2), hex(3)) {
                (Some(high), Some(low)) => (Some((high * 16 + low) as u8), 4),
                _ => (None, 1),
            },
            b'"' => (Some(b'"'), 2),
            b'\\' => (Some(b'\\'), 2),
            b'n' => (Some(b'\n'), 2),
            b'r' => (Some(b'\r'), 2),
            b't' => (Some(b'\t'), 2),
            _ => (None, 1),
        };
        out.push(decoded.unwrap_or(b'\\'));
        at += len;
    }
    Cow::Owned(lossless(out))
}

#[cfg(test)]
mod tests;
