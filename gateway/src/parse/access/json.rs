//! The JSON access-log formats: `nginx-json`, `envoy` and `json`, one JSON object per line,
//! read through a [`JsonMapping`].
//!
//! Numbers may be JSON numbers or strings (nginx writes every value as a string; Envoy types
//! them). A line is rejected when it is not JSON, not an object, nested deeper than
//! serde_json's limit (128 levels; the parser never recurses deeper), or has a key twice
//! (readers disagree on which one counts, so neither is trusted). An object that has none of
//! the request's keys (no method, path, request line, and no status other than 0) is not a
//! request, e.g. an Envoy TCP proxy record or a server's own log line, and is ignored.
//!
//! Invalid UTF-8 (nginx writes bytes ≥ 0x80 of strings as they came) is read, the bytes shown
//! as `\xNN` in the values as in `event.original`.

use std::borrow::Cow;
use std::fmt;

use jiff::Timestamp;
use model::{Endpoint, Event};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::super::clock::LocalStamp;
use super::super::{Format, LineOutcome, LogClock, ParseOptions};
use super::mapping::{DurationUnit, JsonMapping, TimestampFormat};
use super::{
    AccessOrigin, Fields, address_of, bad_timestamp, count_of, decimal, duration_of, host_of,
    malformed, push, request_line, shown, split_target, status_of,
};

/// nginx's `$time_local`.
const NGINX_TIME_LOCAL: &str = "%d/%b/%Y:%H:%M:%S %z";

/// A dotted key, ready for lookup: `a.b.c` is tried as the literal key `a.b.c`, then as `b.c`
/// inside `a`, and so on.
#[derive(Debug, Clone)]
struct KeyPath {
    /// `suffixes[i]`: the segments from `i` on, joined by dots (`suffixes[0]` is the key).
    suffixes: Vec<String>,
    segments: Vec<String>,
}

impl KeyPath {
    fn new(key: &str) -> KeyPath {
        let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
        let suffixes = (0..segments.len())
            .map(|at| segments[at..].join("."))
            .collect();
        KeyPath { suffixes, segments }
    }

    fn find<'v>(&self, object: &'v Map<String, Value>) -> Option<&'v Value> {
        self.find_from(object, 0)
    }

    fn find_from<'v>(&self, object: &'v Map<String, Value>, at: usize) -> Option<&'v Value> {
        if let Some(value) = object.get(&self.suffixes[at]) {
            return Some(value);
        }
        if at + 1 < self.segments.len()
            && let Some(Value::Object(inner)) = object.get(&self.segments[at])
        {
            return self.find_from(inner, at + 1);
        }
        None
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.suffixes[0])
    }
}

/// A [`JsonMapping`] with its keys split, and each timestamp key with its format.
#[derive(Debug, Clone)]
pub(crate) struct JsonParser {
    origin: AccessOrigin,
    timestamp: Vec<(KeyPath, TimestampFormat)>,
    client_ip: Vec<KeyPath>,
    method: Vec<KeyPath>,
    host: Vec<KeyPath>,
    path: Vec<KeyPath>,
    url: Vec<KeyPath>,
    request_line: Vec<KeyPath>,
    status: Vec<KeyPath>,
    bytes: Vec<KeyPath>,
    duration: Vec<KeyPath>,
    duration_unit: DurationUnit,
    request_id: Vec<KeyPath>,
    destination_ip: Vec<KeyPath>,
    destination_port: Vec<KeyPath>,
}

impl JsonParser {
    /// The parser of a JSON format: `nginx-json` and `envoy` use their built-in mappings,
    /// `json` the configured one.
    pub(crate) fn new(format: Format, configured: &JsonMapping) -> JsonParser {
        let builtin;
        let mapping = match format {
            Format::NginxJson => {
                builtin = JsonMapping::nginx();
                &builtin
            }
            Format::Envoy => {
                builtin = JsonMapping::envoy();
                &builtin
            }
            _ => configured,
        };
        let keys = |keys: &super::Keys| keys.0.iter().map(|key| KeyPath::new(key)).collect();
        let mut timestamp: Vec<(KeyPath, TimestampFormat)> = mapping
            .timestamp
            .0
            .iter()
            .map(|key| (KeyPath::new(key), mapping.timestamp_format.clone()))
            .collect();
        if format == Format::NginxJson {
            timestamp.push((
                KeyPath::new("time_local"),
                TimestampFormat::Strftime(NGINX_TIME_LOCAL.to_owned()),
            ));
            timestamp.push((KeyPath::new("msec"), TimestampFormat::UnixSeconds));
        }
        JsonParser {
            origin: AccessOrigin::of(format),
            timestamp,
            client_ip: keys(&mapping.client_ip),
            method: keys(&mapping.method),
            host: keys(&mapping.host),
            path: keys(&mapping.path),
            url: keys(&mapping.url),
            request_line: keys(&mapping.request_line),
            status: keys(&mapping.status),
            bytes: keys(&mapping.bytes),
            duration: keys(&mapping.duration),
            duration_unit: mapping.duration_unit,
            request_id: keys(&mapping.request_id),
            destination_ip: keys(&mapping.destination_ip),
            destination_port: keys(&mapping.destination_port),
        }
    }

    /// Parses one line: `line` the raw bytes, `text` the same decoded (kept as the original).
    pub(crate) fn parse(
        &self,
        line: &[u8],
        text: &str,
        seq: u64,
        now: Timestamp,
        options: &mut ParseOptions,
        out: &mut Vec<Event>,
    ) -> LineOutcome {
        let json = json_text(line);
        let object = match parse_object(&json) {
            Ok(object) => object,
            Err(outcome) => return outcome,
        };
        match self.read(&object, now, &mut options.clock) {
            Ok(Some((timestamp, fields))) => {
                push(
                    self.origin,
                    options,
                    seq,
                    timestamp,
                    fields.into_request(),
                    text,
                    out,
                );
                LineOutcome::Parsed
            }
            Ok(None) => LineOutcome::Ignored,
            Err(outcome) => outcome,
        }
    }

    /// The request of one object; `None` if the object is not a request.
    fn read(
        &self,
        object: &Map<String, Value>,
        now: Timestamp,
        clock: &mut LogClock,
    ) -> Result<Option<(Timestamp, Fields)>, LineOutcome> {
        let mut fields = Fields::default();
        let (mut method, mut path) = (None, None);
        if let Some((_, text)) = first(object, &self.method)? {
            method = Some(text.into_owned());
        }
        if let Some((_, text)) = first(object, &self.path)? {
            path = Some(split_target(&text));
        } else if let Some((_, text)) = first(object, &self.url)? {
            path = Some(split_target(&text));
        }
        if (method.is_none() || path.is_none())
            && let Some((_, text)) = first(object, &self.request_line)?
            && let Some((line_method, line_host, line_path)) = request_line(&text)
        {
            method.get_or_insert(line_method);
            path.get_or_insert((line_host, line_path));
        }
        let status = match first(object, &self.status)? {
            Some((key, text)) => {
                Some(status_of(&text).map_err(|reason| malformed(format!("{key}: {reason}")))?)
            }
            None => None,
        };
        let is_request = method.is_some() || path.is_some();
        match status {
            None if !is_request => return Ok(None),
            Some(0) if !is_request => return Ok(None),
            None => {
                let keys = self
                    .status
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>();
                return Err(malformed(format!("no status ({})", keys.join(", "))));
            }
            Some(status) => fields.status = status,
        }
        fields.method = method.unwrap_or_default();
        let (target_host, path) = path.unwrap_or_default();
        fields.path = path;
        fields.host = match first(object, &self.host)? {
            Some((_, text)) => host_of(&text),
            None => target_host,
        };
        if let Some((key, text)) = first(object, &self.client_ip)? {
            fields.client_ip = address_of(&text)
                .map_err(|reason| malformed(format!("{key}: {reason}")))?
                .map(|(ip, _)| ip);
        }
        if let Some((key, text)) = first(object, &self.destination_ip)?
            && let Some((ip, port)) =
                address_of(&text).map_err(|reason| malformed(format!("{key}: {reason}")))?
        {
            fields.destination = Endpoint::new(ip, port);
        }
        if let Some((key, text)) = first(object, &self.destination_port)? {
            let port = text
                .parse::<u16>()
                .map_err(|_| malformed(format!("{key}: {} is not a port number", shown(&text))))?;
            fields.destination.port = Some(port);
        }
        if let Some((key, text)) = first(object, &self.bytes)? {
            fields.response_bytes = Some(count_of(&text, &key.to_string()).map_err(malformed)?);
        }
        if let Some((key, text)) = first(object, &self.duration)? {
            fields.duration_us = Some(
                duration_of(&text, self.duration_unit)
                    .map_err(|reason| malformed(format!("{key}: {reason}")))?,
            );
        }
        if let Some((_, text)) = first(object, &self.request_id)? {
            fields.request_id = Some(text.into_owned());
        }
        let timestamp = self.timestamp(object, clock)?.unwrap_or(now);
        Ok(Some((timestamp, fields)))
    }

    fn timestamp(
        &self,
        object: &Map<String, Value>,
        clock: &mut LogClock,
    ) -> Result<Option<Timestamp>, LineOutcome> {
        for (key, format) in &self.timestamp {
            let Some(value) = key.find(object) else {
                continue;
            };
            let Some(text) = text_of(key, value)? else {
                continue;
            };
            return timestamp_of(&text, format, clock)
                .map(Some)
                .ok_or_else(|| bad_timestamp(&text));
        }
        Ok(None)
    }
}

/// The first of `keys` that the object has with a value, as text. A number is its JSON
/// spelling; `null`, `""` and `"-"` are no value; an array, object or boolean rejects the line.
fn first<'v, 'k>(
    object: &'v Map<String, Value>,
    keys: &'k [KeyPath],
) -> Result<Option<(&'k KeyPath, Cow<'v, str>)>, LineOutcome> {
    for key in keys {
        if let Some(value) = key.find(object)
            && let Some(text) = text_of(key, value)?
        {
            return Ok(Some((key, text)));
        }
    }
    Ok(None)
}

fn text_of<'v>(key: &KeyPath, value: &'v Value) -> Result<Option<Cow<'v, str>>, LineOutcome> {
    match value {
        Value::Null => Ok(None),
        Value::String(text) if text.is_empty() || text == "-" => Ok(None),
        Value::String(text) => Ok(Some(Cow::Borrowed(text))),
        Value::Number(number) => Ok(Some(Cow::Owned(number.to_string()))),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => Err(malformed(format!(
            "{key}: expected a string or a number, found {}",
            match value {
                Value::Bool(_) => "a boolean",
                Value::Array(_) => "an array",
                _ => "an object",
            }
        ))),
    }
}

/// Reads a timestamp in `format`; `None` if it is not one.
fn timestamp_of(text: &str, format: &TimestampFormat, clock: &mut LogClock) -> Option<Timestamp> {
    let text = text.trim();
    let unix = |scale: i32| -> Option<Timestamp> {
        let nanos = decimal(text, scale)?;
        Timestamp::from_nanosecond(i128::from(nanos)).ok()
    };
    match format {
        TimestampFormat::Rfc3339 => text.parse::<Timestamp>().ok(),
        TimestampFormat::UnixSeconds => unix(9),
        TimestampFormat::UnixMillis => unix(6),
        TimestampFormat::UnixMicros => unix(3),
        TimestampFormat::UnixNanos => unix(0),
        TimestampFormat::Strftime(pattern) if pattern == NGINX_TIME_LOCAL => {
            super::nginx::time_local(text)
        }
        TimestampFormat::Strftime(pattern) => {
            let parsed = jiff::fmt::strtime::parse(pattern, text).ok()?;
            if let Ok(timestamp) = parsed.to_timestamp() {
                return Some(timestamp);
            }
            // No offset in the pattern: the stream's zone (and, without a year, its year).
            let stamp = LocalStamp {
                year: parsed.year(),
                month: parsed.month()?,
                day: parsed.day()?,
                hour: parsed.hour()?,
                minute: parsed.minute().unwrap_or(0),
                second: parsed.second().unwrap_or(0),
                nanosecond: parsed.subsec_nanosecond().unwrap_or(0),
                offset_secs: None,
            };
            clock.resolve(stamp)
        }
    }
}

/// The line as JSON text: invalid UTF-8 bytes become `\\xNN`, which inside a JSON string
/// reads as the text `\xNN` (as [`super::super::decode_lossless`] shows them), and outside
/// one is a syntax error, as the raw byte would have been.
fn json_text(line: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(line) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => {
            let mut text = String::with_capacity(line.len() + 16);
            for chunk in line.utf8_chunks() {
                text.push_str(chunk.valid());
                for byte in chunk.invalid() {
                    text.push_str(&format!("\\\\x{byte:02x}"));
                }
            }
            Cow::Owned(text)
        }
    }
}

fn parse_object(json: &str) -> Result<Map<String, Value>, LineOutcome> {
    let trimmed = json.trim_start();
    if !trimmed.starts_with('{') {
        return Err(malformed(if trimmed.starts_with(['[', '"']) {
            "the line is JSON but not an object".to_owned()
        } else {
            "the line is not a JSON object".to_owned()
        }));
    }
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let value = Strict::deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| malformed(format!("not valid JSON: {error}")))?;
    match value.0 {
        Value::Object(object) => Ok(object),
        _ => Err(malformed("the line is JSON but not an object".to_owned())),
    }
}

/// A JSON value that refuses objects with a key twice. serde_json's recursion limit still
/// applies: every level goes back through its `deserialize_any`.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut values = Vec::new();
        while let Some(Strict(value)) = seq.next_element()? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {}", shown(&key))));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}
