//! Access logs: golden fixtures (real nginx captures, Envoy lines in the documented formats,
//! ECS JSON), the field rules, and bad input of every kind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use expect_test::{expect, expect_file};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use model::{ApiRequest, Event, EventBody, RejectReason};
use proptest::prelude::*;

use super::*;
use crate::parse::tests::{check, now, parser, render};
use crate::parse::{LogClock, ParseOptions, ParseStats, Parser, decode_lossless};

/// The fixtures of `testdata/access/` and their formats.
const FIXTURES: [(&str, Format); 6] = [
    ("nginx-combined", Format::Nginx),
    ("nginx-combined-ext", Format::Nginx),
    ("nginx-json", Format::NginxJson),
    ("envoy-istio", Format::Envoy),
    ("envoy-gateway", Format::Envoy),
    ("ecs", Format::Json),
];

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/access")
        .join(format!("{name}.log"))
}

fn fixture_lines(name: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read(fixture_path(name)).unwrap();
    text.split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Parses lines with a fresh parser, each line once; returns the events and the stats.
fn parse_with(mut parser: Parser, lines: &[&[u8]]) -> (Vec<Event>, ParseStats) {
    let mut events = Vec::new();
    for (seq, line) in lines.iter().enumerate() {
        parser.parse_line(line, seq as u64, now(), &mut events);
    }
    (events, parser.stats().clone())
}

fn parse(format: Format, lines: &[&[u8]]) -> (Vec<Event>, ParseStats) {
    parse_with(parser(format), lines)
}

/// The request of a line that must parse.
#[track_caller]
fn request(format: Format, line: impl AsRef<[u8]>) -> (Event, ApiRequest) {
    let (events, stats) = parse(format, &[line.as_ref()]);
    match events.as_slice() {
        [event] => match &event.body {
            EventBody::ApiRequest(request) => (event.clone(), request.clone()),
            _ => panic!("{format}: not a request: {event:?}"),
        },
        _ => panic!("{format}: {stats}: {events:?}"),
    }
}

/// The reason a line is rejected with; the event must keep the line.
#[track_caller]
fn rejected(format: Format, line: &[u8]) -> (RejectReason, String) {
    let (events, stats) = parse(format, &[line]);
    assert_eq!(stats.n_rejected(), 1, "{format}: {stats}: {events:?}");
    let [event] = events.as_slice() else {
        panic!("{format}: {events:?}");
    };
    assert_eq!(event.original, decode_lossless(line));
    assert_eq!(event.dataset, format.dataset());
    match &event.body {
        EventBody::PipelineError(error) => (error.reason, error.message.clone()),
        body => panic!("{format}: {body:?}"),
    }
}

/// Every capture in `testdata/access/` against its golden `.expected`; real captures have
/// no line that is rejected. `UPDATE_EXPECT=1 cargo test -p gateway --lib parse::access`.
#[test]
fn golden_fixtures() {
    for (name, format) in FIXTURES {
        let path = fixture_path(name);
        let (rendered, stats) = render(format, &std::fs::read(&path).unwrap());
        assert_eq!(stats.n_rejected(), 0, "{name}: {rendered}");
        assert!(stats.events >= 2, "{name}: {stats}");
        assert_eq!(stats.events + stats.ignored, stats.lines, "{name}: {stats}");
        expect_file![path.with_extension("expected")].assert_eq(&rendered);
    }
}

/// The same nginx requests, logged three ways, give the same requests (the JSON log also
/// knows the host and the server address; only the `-ext` and JSON logs have durations).
#[test]
fn nginx_formats_agree() {
    let requests = |name: &str, format: Format| -> Vec<ApiRequest> {
        let lines = fixture_lines(name);
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        parse(format, &lines)
            .0
            .into_iter()
            .map(|event| match event.body {
                EventBody::ApiRequest(request) => request,
                body => panic!("{name}: {body:?}"),
            })
            .collect()
    };
    let combined = requests("nginx-combined", Format::Nginx);
    let ext = requests("nginx-combined-ext", Format::Nginx);
    let json = requests("nginx-json", Format::NginxJson);
    assert_eq!(combined.len(), 29);
    assert_eq!(ext.len(), 29);
    assert_eq!(json.len(), 29);
    for ((combined, ext), json) in combined.iter().zip(&ext).zip(&json) {
        assert_eq!(combined.client_ip, json.client_ip);
        assert_eq!(combined.status, json.status);
        assert_eq!(combined.response_bytes, json.response_bytes);
        assert_eq!(ext.duration_us, json.duration_us);
        assert_eq!(ext.request_id, json.request_id);
        assert!(json.request_id.is_some());
        assert!(combined.duration_us.is_none() && combined.request_id.is_none());
        if !json.method.is_empty() {
            assert_eq!(combined.method, json.method, "{json:?}");
        }
        // nginx logs a raw byte ≥ 0x80 of a target as \xHH in `combined`, raw in JSON: both
        // read the same.
        if json.path.starts_with("/api/v1/raw") {
            assert_eq!(combined.path, json.path);
        }
    }
}

#[test]
fn nginx_lines() {
    check(
        Format::Nginx,
        r#"10.99.0.7 - alice [25/Nov/2026:09:41:07 +0100] "GET /api/v1/users/42?token=s3cret HTTP/1.1" 200 1532 "https://console.example/" "curl/8.5.0"
2001:db8:99::7 - - [25/Nov/2026:09:41:08 -0500] "POST http://API.internal:8080/api/v1/sessions HTTP/1.1" 201 87 "-" "-" 0.012 "5f2d8e4a0c1b4f7e9a553b8c2d1e6f70"
10.99.0.8 - - [25/Nov/2026:09:41:09 +0000] "OPTIONS * HTTP/1.1" 204 0 "-" "-" rt=1.500 rid=abc-1 uct="0.000"
::ffff:10.99.0.9 - - [25/Nov/2026:09:41:10 +0000] "-" 400 0 "-" "-"
10.99.0.9 - - [25/Nov/2026:09:41:11 +0000] "GET /api/v1/ping HTTP/1.0" 200 -
unix: - a [b] c [25/Nov/2026:09:41:12 +0000] "GET /a\x22b\x5C\x1B[31m HTTP/1.1" 000 0 "-" "\"apache\" \\ escaped"
"#,
        expect![[r#"
            {"body":{"client_ip":"10.99.0.7","destination":{"ip":null,"port":null},"method":"GET","path":"/api/v1/users/42","response_bytes":1532,"status":200,"type":"api_request"},"dataset":"nginx.access","id":{"seq":0,"source":"gw1/nginx"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-25T08:41:07Z"}
            {"body":{"client_ip":"2001:db8:99::7","destination":{"ip":null,"port":null},"duration_us":12000,"host":"API.internal","method":"POST","path":"/api/v1/sessions","request_id":"5f2d8e4a0c1b4f7e9a553b8c2d1e6f70","response_bytes":87,"status":201,"type":"api_request"},"dataset":"nginx.access","id":{"seq":1,"source":"gw1/nginx"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-25T14:41:08Z"}
            {"body":{"client_ip":"10.99.0.8","destination":{"ip":null,"port":null},"duration_us":1500000,"method":"OPTIONS","path":"*","request_id":"abc-1","response_bytes":0,"status":204,"type":"api_request"},"dataset":"nginx.access","id":{"seq":2,"source":"gw1/nginx"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-25T09:41:09Z"}
            {"body":{"client_ip":"10.99.0.9","destination":{"ip":null,"port":null},"method":"","path":"","response_bytes":0,"status":400,"type":"api_request"},"dataset":"nginx.access","id":{"seq":3,"source":"gw1/nginx"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-25T09:41:10Z"}
            {"body":{"client_ip":"10.99.0.9","destination":{"ip":null,"port":null},"method":"GET","path":"/api/v1/ping","response_bytes":0,"status":200,"type":"api_request"},"dataset":"nginx.access","id":{"seq":4,"source":"gw1/nginx"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-25T09:41:11Z"}
            {"body":{"client_ip":null,"destination":{"ip":null,"port":null},"method":"GET","path":"/a\"b\\\u001b[31m","response_bytes":0,"status":0,"type":"api_request"},"dataset":"nginx.access","id":{"seq":5,"source":"gw1/nginx"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-25T09:41:12Z"}
            # 6 lines: 6 events, 0 ignored, 0 rejected
        "#]],
    );
}

#[test]
fn json_lines() {
    check(
        Format::NginxJson,
        r#"{"time_local":"25/Nov/2026:09:41:07 +0100","remote_addr":"10.99.0.7","request_method":"GET","uri":"/api/v1/users/42","http_host":"api.internal:8443","status":"200","bytes_sent":1532,"request_time":0.012}
{"msec":"1795979800.081","remote_addr":"10.99.0.7","request":"PUT /api/v1/x?y=1 HTTP/1.1","status":404,"body_bytes_sent":"0","server_addr":"10.20.0.5","server_port":"443"}
{"time_iso8601":"2026-11-25T09:41:09+00:00","remote_addr":"10.99.0.8","request":"\u0016\u0003\u0001","request_method":"","request_uri":"","status":"400","body_bytes_sent":"157"}
"#,
        expect![[r#"
            {"body":{"client_ip":"10.99.0.7","destination":{"ip":null,"port":null},"duration_us":12000,"host":"api.internal","method":"GET","path":"/api/v1/users/42","response_bytes":1532,"status":200,"type":"api_request"},"dataset":"nginx.access","id":{"seq":0,"source":"gw1/nginx-json"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-25T08:41:07Z"}
            {"body":{"client_ip":"10.99.0.7","destination":{"ip":"10.20.0.5","port":443},"method":"PUT","path":"/api/v1/x","response_bytes":0,"status":404,"type":"api_request"},"dataset":"nginx.access","id":{"seq":1,"source":"gw1/nginx-json"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-29T19:16:40.081Z"}
            {"body":{"client_ip":"10.99.0.8","destination":{"ip":null,"port":null},"method":"","path":"","response_bytes":157,"status":400,"type":"api_request"},"dataset":"nginx.access","id":{"seq":2,"source":"gw1/nginx-json"},"observer":{"hostname":"gw1","product":"nginx"},"timestamp":"2026-11-25T09:41:09Z"}
            # 3 lines: 3 events, 0 ignored, 0 rejected
        "#]],
    );
    check(
        Format::Envoy,
        r#"{"start_time":"2026-11-25T09:41:07.123Z","method":"GET","path":"/x","response_code":"200","x-forwarded-for":"203.0.113.9, 10.99.0.7","duration":"1.5"}
{"start_time":"2026-11-25T09:41:08Z","method":"GET","response_code":0,"downstream_remote_address":"/var/run/envoy.sock"}
{"start_time":"2026-11-25T09:41:09Z","method":null,"path":null,"response_code":0,"bytes_sent":4410}
{"start_time":"2026-11-25T09:41:10Z","response_code":503}
"#,
        expect![[r#"
            {"body":{"client_ip":"10.99.0.7","destination":{"ip":null,"port":null},"duration_us":1500,"method":"GET","path":"/x","status":200,"type":"api_request"},"dataset":"envoy.access","id":{"seq":0,"source":"gw1/envoy"},"observer":{"hostname":"gw1","product":"envoy"},"timestamp":"2026-11-25T09:41:07.123Z"}
            {"body":{"client_ip":null,"destination":{"ip":null,"port":null},"method":"GET","path":"","status":0,"type":"api_request"},"dataset":"envoy.access","id":{"seq":1,"source":"gw1/envoy"},"observer":{"hostname":"gw1","product":"envoy"},"timestamp":"2026-11-25T09:41:08Z"}
            {"body":{"client_ip":null,"destination":{"ip":null,"port":null},"method":"","path":"","status":503,"type":"api_request"},"dataset":"envoy.access","id":{"seq":3,"source":"gw1/envoy"},"observer":{"hostname":"gw1","product":"envoy"},"timestamp":"2026-11-25T09:41:10Z"}
            # 4 lines: 3 events, 1 ignored, 0 rejected
        "#]],
    );
}

/// The mapping of the `json` format comes from the options; dotted keys find nested and
/// flattened objects alike.
#[test]
fn a_configured_mapping_is_used() {
    // The same as TOML (`tunnelwatch … --json-mapping FILE`, the gateway's `json_mapping`).
    let mapping: JsonMapping = serde_json::from_str(
        r#"{
            "timestamp": "ts",
            "timestamp_format": "%Y-%m-%d %H:%M:%S",
            "client_ip": ["req.remote", "peer"],
            "method": "req.method",
            "path": [],
            "url": "req.url",
            "status": "res.code",
            "bytes": "res.size",
            "duration": "took_ms",
            "duration_unit": "ms",
            "request_id": "trace.id"
        }"#,
    )
    .unwrap();
    mapping.validate().unwrap();
    let clock = LogClock::new(TimeZone::get("Europe/Berlin").unwrap(), None, now());
    let mut options = ParseOptions::new("gw1/app", clock);
    options.json_mapping = Arc::new(mapping);
    let line = r#"{"ts":"2026-11-25 10:41:07","req":{"remote":"10.99.0.7:5000","method":"GET","url":"https://api.internal/v1/users?id=1"},"res.code":200,"res":{"size":"12"},"took_ms":2.5,"trace.id":"t-1","url.path":"/ignored"}"#;
    let (events, stats) = parse_with(Parser::new(Format::Json, options), &[line.as_bytes()]);
    assert_eq!(stats.events, 1, "{stats}: {events:?}");
    assert_eq!(
        events[0].timestamp,
        "2026-11-25T09:41:07Z".parse::<Timestamp>().unwrap()
    );
    assert_eq!(events[0].dataset, "json.access");
    assert_eq!(events[0].observer.product, None);
    let EventBody::ApiRequest(request) = &events[0].body else {
        panic!("{events:?}");
    };
    assert_eq!(request.client_ip, Some("10.99.0.7".parse().unwrap()));
    assert_eq!(request.method, "GET");
    assert_eq!(request.host.as_deref(), Some("api.internal"));
    assert_eq!(request.path, "/v1/users");
    assert_eq!(request.status, 200);
    assert_eq!(request.response_bytes, Some(12));
    assert_eq!(request.duration_us, Some(2500));
    assert_eq!(request.request_id.as_deref(), Some("t-1"));
    assert_eq!(request.user_name, None);
}

#[test]
fn mappings_are_checked_when_loaded() {
    let error = |json: &str| -> String {
        match serde_json::from_str::<JsonMapping>(json) {
            Ok(mapping) => mapping.validate().unwrap_err(),
            Err(error) => error.to_string(),
        }
    };
    assert!(error(r#"{"methd": "m"}"#).contains("unknown field `methd`"));
    assert!(error(r#"{"timestamp_format": "iso"}"#).contains("unknown timestamp_format `iso`"));
    assert_eq!(
        error(r#"{"timestamp_format": "%H:%M"}"#),
        "timestamp_format: `%H:%M` must contain a date and a time of day (e.g. %Y-%m-%d %H:%M:%S)"
    );
    let unknown = error(r#"{"timestamp_format": "%Y-%m-%d %H:%M:%S %!"}"#);
    assert!(
        unknown.starts_with("timestamp_format: `%Y-%m-%d %H:%M:%S %!` is not"),
        "{unknown}"
    );
    assert_eq!(
        error(r#"{"path": "url..path"}"#),
        "path: `url..path` is not a key (a name, or names joined by dots)"
    );
    assert_eq!(error(r#"{"status": []}"#), "status needs at least one key");
    assert_eq!(
        error(r#"{"method": [], "path": [], "url": []}"#),
        "method, path, url and request_line are all empty: no line could be read"
    );
    assert!(error(r#"{"duration_unit": "h"}"#).contains("unknown variant `h`"));
    assert!(error(r#"{"method": 3}"#).contains("a key or a list of keys"));
    // Each built-in mapping passes its own checks; a field left out keeps the default.
    for mapping in [
        JsonMapping::default(),
        JsonMapping::nginx(),
        JsonMapping::envoy(),
    ] {
        mapping.validate().unwrap();
    }
    let mapping: JsonMapping = serde_json::from_str(r#"{"status": "code"}"#).unwrap();
    assert_eq!(mapping.status, Keys::of(&["code"]));
    assert_eq!(mapping.method, JsonMapping::default().method);
}

#[test]
fn fields_follow_the_rules() {
    assert_eq!(decimal("0.005", 6), Some(5000));
    assert_eq!(decimal("12", 3), Some(12_000));
    assert_eq!(decimal("1.5e3", 0), Some(1500));
    assert_eq!(decimal("2.5E-1", 3), Some(250));
    assert_eq!(decimal("1234567", -3), Some(1234));
    assert_eq!(decimal("0.0000001", 6), Some(0));
    assert_eq!(decimal("18446744073709551615", 0), Some(u64::MAX));
    assert_eq!(decimal("18446744073709551616", 0), None);
    assert_eq!(decimal("1e400", 0), None);
    assert_eq!(decimal("1e-400", 0), Some(0));
    for bad in [
        "", ".", "-1", "+1", "1.2.3", "1e", "abc", "0x10", "NaN", "inf", " 1",
    ] {
        assert_eq!(decimal(bad, 6), None, "{bad:?}");
    }
    assert_eq!(status_of("000"), Ok(0));
    assert_eq!(status_of("599"), Ok(599));
    for bad in ["999", "99", "600", "abc", "-1", "+200", "2000", "", "200 "] {
        assert!(status_of(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        status_of("999").unwrap_err(),
        "status \"999\" is not an HTTP status code (0 or 100 to 599)"
    );
    assert_eq!(count_of("-", "b"), Ok(0));
    assert!(count_of("-5", "b").is_err());
    assert_eq!(
        count_of("99999999999999999999", "b").unwrap_err(),
        "b \"99999999999999999999\" is too large"
    );
    let address =
        |text: &str| address_of(text).map(|found| found.map(|(ip, port)| (ip.to_string(), port)));
    assert_eq!(address("10.0.0.1"), Ok(Some(("10.0.0.1".to_owned(), None))));
    assert_eq!(
        address("10.0.0.1:443"),
        Ok(Some(("10.0.0.1".to_owned(), Some(443))))
    );
    assert_eq!(
        address("[2001:db8::1]:443"),
        Ok(Some(("2001:db8::1".to_owned(), Some(443))))
    );
    assert_eq!(
        address("2001:db8::1"),
        Ok(Some(("2001:db8::1".to_owned(), None)))
    );
    assert_eq!(
        address("fe80::1%eth0"),
        Ok(Some(("fe80::1".to_owned(), None)))
    );
    assert_eq!(
        address("::ffff:10.0.0.1"),
        Ok(Some(("10.0.0.1".to_owned(), None)))
    );
    assert_eq!(
        address("203.0.113.1, 10.0.0.1"),
        Ok(Some(("10.0.0.1".to_owned(), None)))
    );
    assert_eq!(address("unix:"), Ok(None));
    assert_eq!(address("/run/envoy.sock"), Ok(None));
    for bad in [
        "999.1.1.1",
        "localhost",
        "10.0.0.1:99999",
        "[::1",
        "[::1]x",
        "1.2.3.4.5",
        "10.0.0.1,",
    ] {
        assert!(address(bad).is_err() || bad == "10.0.0.1,", "{bad:?}");
    }
    assert_eq!(host_of("api.test:8443").as_deref(), Some("api.test"));
    assert_eq!(host_of("[::1]:80").as_deref(), Some("[::1]"));
    assert_eq!(host_of("user:pw@api.test").as_deref(), Some("api.test"));
    assert_eq!(host_of("-"), None);
    assert_eq!(split_target("/a/b?c=d#e"), (None, "/a/b".to_owned()));
    assert_eq!(
        split_target("HTTPS://Api.Test:443?x"),
        (Some("Api.Test".to_owned()), "/".to_owned())
    );
    assert_eq!(
        request_line("GET /x"),
        Some(("GET".to_owned(), None, "/x".to_owned()))
    );
    assert_eq!(
        request_line("GET /x y HTTP/1.1").map(|line| line.2),
        Some("/x y".to_owned())
    );
    for garbage in [
        "-",
        "",
        "GARBAGE",
        "\u{16}\u{3}\u{1} x",
        "GET  HTTP/1.1",
        "G(T / HTTP/1.1",
    ] {
        assert_eq!(request_line(garbage), None, "{garbage:?}");
    }
    assert_eq!(
        unescape(r#"a\x22b\x5Cc\x1Bd\"e\\f\q\x4"#),
        "a\"b\\c\u{1b}d\"e\\f\\q\\x4"
    );
    assert_eq!(unescape(r"caf\xC3\xA9 \xFF"), "café \\xff");
    assert_eq!(
        nginx::time_local("29/Nov/2026:19:16:58 +0530"),
        Some("2026-11-29T13:46:58Z".parse().unwrap())
    );
    for bad in [
        "30/Feb/2026:00:00:00 +0000",
        "29/Nev/2026:19:16:58 +0000",
        "29/Nov/2026:25:16:58 +0000",
        "29/Nov/2026:19:16:58 0000",
        "29/Nov/2026:19:16:58",
    ] {
        assert_eq!(nginx::time_local(bad), None, "{bad:?}");
    }
}

/// Unknown formats, broken and hostile lines: each is rejected with a reason that names the
/// problem, and kept.
#[test]
fn bad_lines_are_rejected_and_kept() {
    let charon =
        b"Nov 25 08:25:08 09[IKE] <rw|1> authentication of 'alice' with pre-shared key successful";
    let nginx_line =
        br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 200 12 "-" "curl""#;
    let cases: Vec<(Format, Vec<u8>, RejectReason, &str)> = vec![
        // A line of another format.
        (Format::Nginx, charon.to_vec(), RejectReason::Malformed, "client address: \"Nov\" is not an IP address"),
        (Format::NginxJson, charon.to_vec(), RejectReason::Malformed, "not a JSON object"),
        (Format::Envoy, nginx_line.to_vec(), RejectReason::Malformed, "not a JSON object"),
        (Format::Nginx, br#"{"status":"200"}"#.to_vec(), RejectReason::Malformed, "not an access-log line"),
        // Truncated.
        (Format::Nginx, br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1"#.to_vec(), RejectReason::Malformed, "no quoted request line"),
        (Format::Nginx, br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 200"#.to_vec(), RejectReason::Malformed, "no byte count"),
        (Format::Nginx, br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 200 12 "-" "cu"#.to_vec(), RejectReason::Malformed, "expected a quoted field"),
        (Format::Json, br#"{"http.response.status_code":200,"url.path":"/x""#.to_vec(), RejectReason::Malformed, "EOF while parsing"),
        // Bad values.
        (Format::Nginx, br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 999 12"#.to_vec(), RejectReason::Malformed, "status \"999\""),
        (Format::Nginx, br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" abc 12"#.to_vec(), RejectReason::Malformed, "status \"abc\""),
        (Format::Nginx, br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 200 -12"#.to_vec(), RejectReason::Malformed, "\"-12\" is not a byte count"),
        (Format::Nginx, br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 200 184467440737095516160"#.to_vec(), RejectReason::Malformed, "is too large"),
        (Format::Nginx, br#"10.999.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 200 1"#.to_vec(), RejectReason::Malformed, "client address: \"10.999.0.7\" is not an IP address"),
        (Format::Nginx, br#"10.99.0.7 - - [31/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 200 1"#.to_vec(), RejectReason::BadTimestamp, "cannot read the timestamp"),
        (Format::Nginx, br#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /x HTTP/1.1" 200 1 "-" "-" rt=-1.0"#.to_vec(), RejectReason::Malformed, "request_time: duration \"-1.0\""),
        (Format::Envoy, br#"{"method":"GET","path":"/","response_code":"abc"}"#.to_vec(), RejectReason::Malformed, "response_code: status \"abc\""),
        (Format::Envoy, br#"{"method":"GET","path":"/","response_code":99999}"#.to_vec(), RejectReason::Malformed, "status \"99999\""),
        (Format::Envoy, br#"{"method":"GET","path":"/","response_code":200,"bytes_sent":-1}"#.to_vec(), RejectReason::Malformed, "bytes_sent \"-1\" is not a byte count"),
        (Format::Envoy, br#"{"method":"GET","path":"/","response_code":200,"bytes_sent":1e30}"#.to_vec(), RejectReason::Malformed, "bytes_sent \"1e+30\" is not a byte count"),
        (Format::Envoy, br#"{"method":"GET","path":"/","response_code":200,"duration":-3}"#.to_vec(), RejectReason::Malformed, "duration: duration \"-3\""),
        (Format::Envoy, br#"{"method":"GET","path":"/","response_code":200,"downstream_remote_address":"evil"}"#.to_vec(), RejectReason::Malformed, "downstream_remote_address: \"evil\" is not an IP address"),
        (Format::Envoy, br#"{"method":"GET","path":"/","response_code":200,"start_time":"yesterday"}"#.to_vec(), RejectReason::BadTimestamp, "\"yesterday\""),
        (Format::NginxJson, br#"{"request_method":"GET","request_uri":"/","status":"200","server_port":"70000"}"#.to_vec(), RejectReason::Malformed, "server_port: \"70000\" is not a port number"),
        (Format::NginxJson, br#"{"request_method":"GET","request_uri":"/","status":true}"#.to_vec(), RejectReason::Malformed, "status: expected a string or a number, found a boolean"),
        (Format::NginxJson, br#"{"request_method":"GET","request_uri":{"a":1},"status":"200"}"#.to_vec(), RejectReason::Malformed, "request_uri: expected a string or a number, found an object"),
        (Format::Json, br#"{"http":{"request":{"method":"GET"}},"url.path":"/"}"#.to_vec(), RejectReason::Malformed, "no status (http.response.status_code)"),
        // JSON that is not an object, or not one object, or one with a key twice.
        (Format::Json, b"[1, 2]".to_vec(), RejectReason::Malformed, "JSON but not an object"),
        (Format::Json, b"\"GET /\"".to_vec(), RejectReason::Malformed, "JSON but not an object"),
        (Format::Json, b"42".to_vec(), RejectReason::Malformed, "not a JSON object"),
        (Format::Json, b"{} {}".to_vec(), RejectReason::Malformed, "trailing characters"),
        (Format::Envoy, br#"{"method":"GET","path":"/","response_code":200,"response_code":500}"#.to_vec(), RejectReason::Malformed, "duplicate key \"response_code\""),
        (Format::Json, br#"{"a":{"b":1,"b":2}}"#.to_vec(), RejectReason::Malformed, "duplicate key \"b\""),
        // Raw control characters and invalid UTF-8 outside strings are not JSON.
        (Format::Envoy, b"{\"method\":\"GET\",\"path\":\"/\x1b[31m\n\",\"response_code\":200}".to_vec(), RejectReason::Malformed, "control character"),
        (Format::Envoy, b"{\"method\":\"GET\",\"response_code\":200}\xff".to_vec(), RejectReason::Malformed, "not valid JSON"),
    ];
    let mut wrong = Vec::new();
    for (format, line, reason, message) in cases {
        let (found, found_message) = rejected(format, &line);
        if found != reason || !found_message.contains(message) {
            wrong.push(format!(
                "{format} {}: {found} {found_message:?}, expected {reason} {message:?}",
                decode_lossless(&line)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// serde_json stops at 128 levels: a line of a million brackets is rejected, not a stack
/// overflow.
#[test]
fn deep_nesting_is_rejected_without_recursing() {
    for format in [Format::NginxJson, Format::Envoy, Format::Json] {
        for (open, close) in [("[", "]"), ("{\"a\":", "}")] {
            let depth = 1_000_000 / open.len();
            let mut line = format!(
                "{{\"method\":\"GET\",\"path\":\"/\",\"x\":{}",
                open.repeat(depth)
            );
            line.push_str(&close.repeat(depth));
            line.push('}');
            let mut parser = parser(format);
            let mut events = Vec::new();
            // Over the default line limit: the parser must reject it as oversized...
            parser.parse_line(line.as_bytes(), 0, now(), &mut events);
            assert_eq!(
                parser.stats().rejected.get(&RejectReason::Oversized),
                Some(&1)
            );
            // ...and, with no limit, as too deeply nested.
            let mut options =
                ParseOptions::new("gw1/deep", LogClock::new(TimeZone::UTC, None, now()));
            options.max_line_bytes = usize::MAX;
            let (reason, message) = {
                let (events, _) = parse_with(Parser::new(format, options), &[line.as_bytes()]);
                match &events[0].body {
                    EventBody::PipelineError(error) => (error.reason, error.message.clone()),
                    body => panic!("{body:?}"),
                }
            };
            assert_eq!(reason, RejectReason::Malformed);
            assert!(message.contains("recursion limit exceeded"), "{message}");
        }
    }
    // 100 levels are fine: the value is there, just not used.
    let line = format!(
        "{{\"method\":\"GET\",\"path\":\"/\",\"response_code\":200,\"x\":{}{}}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    let (_, request) = request(Format::Envoy, &line);
    assert_eq!(request.status, 200);
}

/// CR, LF, ESC and invalid UTF-8 from the client stay in the fields as sent (and the raw
/// line in `event.original`), and no output lets them through raw: every event is one JSON
/// line without control characters.
#[test]
fn control_characters_and_invalid_utf8_stay_inside_the_fields() {
    let (event, nginx) = request(
        Format::Nginx,
        r#"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] "GET /a\x0D\x0ASet-Cookie:\x1B[2J\xFF HTTP/1.1" 200 1 "-" "\x1B]0;pwned\x07""#,
    );
    assert_eq!(nginx.path, "/a\r\nSet-Cookie:\u{1b}[2J\\xff");
    let (_, json) = request(
        Format::NginxJson,
        b"{\"request_method\":\"GET\",\"request_uri\":\"/a\\r\\nSet-Cookie:\\u001b[2J\xff\",\"status\":\"200\",\"request_id\":\"\\u001b]0;x\\u0007\"}",
    );
    assert_eq!(json.path, "/a\r\nSet-Cookie:\u{1b}[2J\\xff");
    assert_eq!(json.request_id.as_deref(), Some("\u{1b}]0;x\u{7}"));
    let serialized = serde_json::to_string(&event).unwrap();
    assert!(!serialized.chars().any(char::is_control), "{serialized}");
    assert!(
        serialized.contains(r"\r\nSet-Cookie:\u001b[2J"),
        "{serialized}"
    );
    // The real nginx captures too.
    for (name, format) in FIXTURES {
        let lines = fixture_lines(name);
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        for event in parse(format, &lines).0 {
            let serialized = serde_json::to_string(&event).unwrap();
            assert!(
                !serialized.chars().any(char::is_control),
                "{name}: {serialized}"
            );
        }
    }
}

/// Every prefix of every fixture line is parsed (a prefix can still be a whole `common`
/// line) or rejected and kept: never ignored (unless blank), never lost, never a panic.
#[test]
fn every_prefix_of_every_fixture_line_is_parsed_or_kept() {
    for (name, format) in FIXTURES {
        let mut parser = parser(format);
        let mut events = Vec::new();
        let mut seq = 0;
        for line in fixture_lines(name) {
            for end in 0..=line.len() {
                check_prefix(&mut parser, format, &line[..end], seq, &mut events);
                seq += 1;
            }
        }
        assert_eq!(parser.stats().lines, seq, "{name}");
    }
}

#[track_caller]
fn check_prefix(
    parser: &mut Parser,
    format: Format,
    prefix: &[u8],
    seq: u64,
    events: &mut Vec<Event>,
) {
    events.clear();
    let ignored_before = parser.stats().ignored;
    parser.parse_line(prefix, seq, now(), events);
    let text = decode_lossless(prefix.strip_suffix(b"\r").unwrap_or(prefix));
    if parser.stats().ignored > ignored_before {
        // Blank, or a whole JSON object that is not a request (an Envoy TCP record).
        assert!(
            text.trim().is_empty() || text.trim_end().ends_with('}'),
            "{format}: ignored {text:?}"
        );
        assert!(events.is_empty());
        return;
    }
    let [event] = events.as_slice() else {
        panic!("{format}: {text:?} → {events:?}");
    };
    assert_eq!(event.original, text, "{format}");
    assert!(
        matches!(
            event.body,
            EventBody::ApiRequest(_) | EventBody::PipelineError(_)
        ),
        "{format}: {event:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A fixture line cut anywhere, with bytes spliced in, in any access format: parsed or
    /// rejected and kept, and every line accounted for.
    #[test]
    fn damaged_lines_are_parsed_or_kept(
        fixture in 0..FIXTURES.len(),
        format in 0..4usize,
        line_at in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        noise in proptest::collection::vec(any::<u8>(), 0..4),
        noise_at in any::<prop::sample::Index>(),
    ) {
        let format = [Format::Nginx, Format::NginxJson, Format::Envoy, Format::Json][format];
        let lines = fixture_lines(FIXTURES[fixture].0);
        let line = line_at.get(&lines);
        let mut damaged = line[..cut.index(line.len() + 1)].to_vec();
        let at = noise_at.index(damaged.len() + 1);
        damaged.splice(at..at, noise.iter().copied().filter(|byte| *byte != b'\n'));
        let mut parser = parser(format);
        let mut events = Vec::new();
        check_prefix(&mut parser, format, &damaged, 0, &mut events);
        prop_assert_eq!(parser.stats().lines, 1);
    }
}
