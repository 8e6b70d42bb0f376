//! [`JsonMapping`]: which keys of a JSON access-log line give which field of an API request.
//!
//! Each field names one key or a list of keys (the first that the line has, with a value
//! other than `null`, `""` or `"-"`, counts; an empty list turns the field off). A key is a
//! dotted path: `http.request.method` is found as that literal key (`{"http.request.method":
//! …}`, as flattening loggers write) or nested (`{"http": {"request": {"method": …}}}`), or any
//! mix of the two. In TOML:
//!
//! ```toml
//! timestamp = "@timestamp"
//! timestamp_format = "rfc3339"   # unix_seconds, unix_millis, unix_micros, unix_nanos,
//!                                # or a strftime pattern such as "%d/%b/%Y:%H:%M:%S %z"
//! client_ip = ["source.ip", "client.ip"]
//! method = "http.request.method"
//! path = "url.path"
//! duration = "event.duration"
//! duration_unit = "ns"           # s, ms, us or ns
//! ```
//!
//! Fields left out keep the default mapping's keys ([`JsonMapping::default`], ECS names).

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The keys of each field of a JSON access-log line (see the module docs). The `json` format
/// takes it from the configuration; `nginx-json` and `envoy` use [`JsonMapping::nginx`] and
/// [`JsonMapping::envoy`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonMapping {
    /// `@timestamp`: when the request was made; without it, the time the line was read.
    pub timestamp: Keys,
    pub timestamp_format: TimestampFormat,
    /// `source.ip`: the client's address (a port, a comma list: see [`super`]).
    pub client_ip: Keys,
    /// `http.request.method`
    pub method: Keys,
    /// `url.domain` (a port is dropped).
    pub host: Keys,
    /// `url.path` (a query string is dropped).
    pub path: Keys,
    /// A URL or request target to take the path (and host) from when `path` finds nothing.
    pub url: Keys,
    /// A whole request line (`GET /x HTTP/1.1`), for method and path when the keys above
    /// find nothing.
    pub request_line: Keys,
    /// `http.response.status_code` (required: a line without one is not a request).
    pub status: Keys,
    /// `http.response.bytes`
    pub bytes: Keys,
    /// `event.duration`, in `duration_unit`.
    pub duration: Keys,
    pub duration_unit: DurationUnit,
    /// `http.request.id`
    pub request_id: Keys,
    /// `destination.ip` (may carry the port: `10.0.0.1:443`).
    pub destination_ip: Keys,
    /// `destination.port`
    pub destination_port: Keys,
}

impl Default for JsonMapping {
    /// ECS field names, as Elastic's and OpenTelemetry-style JSON loggers write them.
    fn default() -> JsonMapping {
        JsonMapping {
            timestamp: Keys::of(&["@timestamp", "timestamp"]),
            timestamp_format: TimestampFormat::Rfc3339,
            client_ip: Keys::of(&["source.ip", "client.ip", "source.address"]),
            method: Keys::of(&["http.request.method"]),
            host: Keys::of(&["url.domain", "destination.domain"]),
            path: Keys::of(&["url.path"]),
            url: Keys::of(&["url.original", "url.full"]),
            request_line: Keys::of(&[]),
            status: Keys::of(&["http.response.status_code"]),
            bytes: Keys::of(&["http.response.body.bytes", "http.response.bytes"]),
            duration: Keys::of(&["event.duration"]),
            duration_unit: DurationUnit::Nanos,
            request_id: Keys::of(&["http.request.id"]),
            destination_ip: Keys::of(&["destination.ip", "server.ip"]),
            destination_port: Keys::of(&["destination.port", "server.port"]),
        }
    }
}

impl JsonMapping {
    /// nginx `log_format … escape=json` with nginx's variable names as keys (`time_iso8601`,
    /// `remote_addr`, `request_method`, `request_uri`, `status`, `body_bytes_sent`,
    /// `request_time`, `request_id`, `server_addr`, `server_port`…). `time_local` and `msec`
    /// are read too, by [`super::json`] (they differ from `time_iso8601` in format).
    pub fn nginx() -> JsonMapping {
        JsonMapping {
            timestamp: Keys::of(&["time_iso8601"]),
            timestamp_format: TimestampFormat::Rfc3339,
            client_ip: Keys::of(&["remote_addr"]),
            method: Keys::of(&["request_method"]),
            host: Keys::of(&["host", "http_host", "server_name"]),
            path: Keys::of(&["request_uri", "uri"]),
            url: Keys::of(&[]),
            request_line: Keys::of(&["request"]),
            status: Keys::of(&["status"]),
            bytes: Keys::of(&["body_bytes_sent", "bytes_sent"]),
            duration: Keys::of(&["request_time"]),
            duration_unit: DurationUnit::Seconds,
            request_id: Keys::of(&["request_id", "http_x_request_id"]),
            destination_ip: Keys::of(&["server_addr"]),
            destination_port: Keys::of(&["server_port"]),
        }
    }

    /// Envoy JSON access logs: the keys of Istio's default JSON format (`start_time`,
    /// `method`, `path`, `response_code`, `bytes_sent`, `duration` in ms, `request_id`,
    /// `authority`, `downstream_remote_address`, `x_forwarded_for`…) and of Envoy Gateway's
    /// (`:authority`, `x-envoy-origin-path`, `x-forwarded-for`, `x-request-id`).
    pub fn envoy() -> JsonMapping {
        JsonMapping {
            timestamp: Keys::of(&["start_time"]),
            timestamp_format: TimestampFormat::Rfc3339,
            client_ip: Keys::of(&[
                "downstream_remote_address",
                "x_forwarded_for",
                "x-forwarded-for",
            ]),
            method: Keys::of(&["method", ":method"]),
            host: Keys::of(&["authority", ":authority"]),
            path: Keys::of(&["path", "x-envoy-origin-path", "x_envoy_origin_path"]),
            url: Keys::of(&[]),
            request_line: Keys::of(&[]),
            status: Keys::of(&["response_code"]),
            bytes: Keys::of(&["bytes_sent"]),
            duration: Keys::of(&["duration"]),
            duration_unit: DurationUnit::Millis,
            request_id: Keys::of(&["request_id", "x_request_id", "x-request-id"]),
            destination_ip: Keys::of(&["downstream_local_address"]),
            destination_port: Keys::of(&[]),
        }
    }

    /// Checks what serde cannot: well-formed keys, a usable timestamp pattern, a status key
    /// and a key for the method or path. The message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let fields = [
            ("timestamp", &self.timestamp),
            ("client_ip", &self.client_ip),
            ("method", &self.method),
            ("host", &self.host),
            ("path", &self.path),
            ("url", &self.url),
            ("request_line", &self.request_line),
            ("status", &self.status),
            ("bytes", &self.bytes),
            ("duration", &self.duration),
            ("request_id", &self.request_id),
            ("destination_ip", &self.destination_ip),
            ("destination_port", &self.destination_port),
        ];
        for (field, keys) in fields {
            for key in &keys.0 {
                if key.is_empty() || key.split('.').any(str::is_empty) {
                    return Err(format!(
                        "{field}: `{key}` is not a key (a name, or names joined by dots)"
                    ));
                }
            }
        }
        if self.status.0.is_empty() {
            return Err("status needs at least one key".to_owned());
        }
        if self.method.0.is_empty()
            && self.path.0.is_empty()
            && self.url.0.is_empty()
            && self.request_line.0.is_empty()
        {
            return Err(
                "method, path, url and request_line are all empty: no line could be read"
                    .to_owned(),
            );
        }
        if let TimestampFormat::Strftime(pattern) = &self.timestamp_format {
            check_pattern(pattern).map_err(|reason| format!("timestamp_format: {reason}"))?;
        }
        Ok(())
    }

    /// A one-line summary for `check-config`: the keys of the main fields.
    pub fn describe(&self) -> String {
        format!(
            "timestamp {} ({}), client_ip {}, method {}, path {}, status {}",
            self.timestamp,
            self.timestamp_format,
            self.client_ip,
            self.method,
            self.path,
            self.status
        )
    }
}

/// A strftime pattern must name the date and the time of day, and jiff must know each of
/// its directives.
fn check_pattern(pattern: &str) -> Result<(), String> {
    let sample = jiff::civil::date(2026, 11, 25)
        .at(12, 34, 56, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map_err(|error| error.to_string())?;
    let rendered = jiff::fmt::strtime::format(pattern, &sample)
        .map_err(|error| format!("`{pattern}` is not a strftime pattern: {error}"))?;
    let parsed = jiff::fmt::strtime::parse(pattern, &rendered)
        .map_err(|error| format!("`{pattern}` cannot be read back: {error}"))?;
    let has_date = parsed.to_date().is_ok() || (parsed.month().is_some() && parsed.day().is_some());
    if !has_date || parsed.hour().is_none() {
        return Err(format!(
            "`{pattern}` must contain a date and a time of day (e.g. %Y-%m-%d %H:%M:%S)"
        ));
    }
    Ok(())
}

/// One key or a list of keys (TOML: `"a.b"` or `["a.b", "c"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Keys(pub Vec<String>);

impl Keys {
    pub fn of(keys: &[&str]) -> Keys {
        Keys(keys.iter().map(|key| (*key).to_owned()).collect())
    }
}

impl fmt::Display for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("(none)"),
            [key] => f.write_str(key),
            keys => write!(f, "{}", keys.join(" | ")),
        }
    }
}

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Keys, D::Error> {
        struct KeysVisitor;

        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key or a list of keys")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Keys, E> {
                Ok(Keys(vec![key.to_owned()]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some(key) = seq.next_element::<String>()? {
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }

        deserializer.deserialize_any(KeysVisitor)
    }
}

/// How a timestamp is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampFormat {
    /// RFC 3339 / ISO 8601 with an offset: `2026-11-25T12:00:00.123Z`, `…+01:00`.
    Rfc3339,
    /// Seconds since the Unix epoch, a fraction allowed (`1795979799.865`, nginx's `msec`).
    UnixSeconds,
    UnixMillis,
    UnixMicros,
    UnixNanos,
    /// A strftime pattern (`%d/%b/%Y:%H:%M:%S %z`); without `%z`/`%Z` the time is in the
    /// stream's time zone (`--tz`, the gateway's `timezone`).
    Strftime(String),
}

impl TimestampFormat {
    fn name(&self) -> &str {
        match self {
            TimestampFormat::Rfc3339 => "rfc3339",
            TimestampFormat::UnixSeconds => "unix_seconds",
            TimestampFormat::UnixMillis => "unix_millis",
            TimestampFormat::UnixMicros => "unix_micros",
            TimestampFormat::UnixNanos => "unix_nanos",
            TimestampFormat::Strftime(pattern) => pattern,
        }
    }
}

impl fmt::Display for TimestampFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for TimestampFormat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimestampFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<TimestampFormat, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(match name.as_str() {
            "rfc3339" => TimestampFormat::Rfc3339,
            "unix_seconds" => TimestampFormat::UnixSeconds,
            "unix_millis" => TimestampFormat::UnixMillis,
            "unix_micros" => TimestampFormat::UnixMicros,
            "unix_nanos" => TimestampFormat::UnixNanos,
            _ if name.contains('%') => TimestampFormat::Strftime(name),
            _ => {
                return Err(de::Error::custom(format!(
                    "unknown timestamp_format `{name}` (rfc3339, unix_seconds, unix_millis, unix_micros, unix_nanos, or a strftime pattern such as \"%d/%b/%Y:%H:%M:%S %z\")"
                )));
            }
        })
    }
}

/// The unit of a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DurationUnit {
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "ms")]
    Millis,
    #[serde(rename = "us")]
    Micros,
    #[serde(rename = "ns")]
    Nanos,
}

impl DurationUnit {
    /// The power of ten that turns this unit into microseconds.
    pub(crate) fn micros_exponent(self) -> i32 {
        match self {
            DurationUnit::Seconds => 6,
            DurationUnit::Millis => 3,
            DurationUnit::Micros => 0,
            DurationUnit::Nanos => -3,
        }
    }
}

impl fmt::Display for DurationUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DurationUnit::Seconds => "seconds",
            DurationUnit::Millis => "milliseconds",
            DurationUnit::Micros => "microseconds",
            DurationUnit::Nanos => "nanoseconds",
        })
    }
}
