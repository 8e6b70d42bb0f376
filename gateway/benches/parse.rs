//! Parsing throughput on real samples, one core:
//!
//! - `charon/parse_lines`: every charon capture in testdata/charon (both `ike_name`
//!   variants and the syslog format) into typed events;
//! - `syslog/parse_lines`: the syslog fixtures (RFC 3164 and 5424 envelopes of charon,
//!   pluto, xl2tpd, pppd, radiusd);
//! - `radius-detail/parse_lines`: FreeRADIUS `detail` files;
//! - `nginx/parse_lines` and `nginx-json/parse_lines`: the real nginx access logs of
//!   testdata/access (`combined` with and without `$request_time "$request_id"`, and
//!   `escape=json`; hostile lines included) into API request events;
//! - `radius-accounting/decode_verify_map`: a real Accounting-Request (sent by FreeRADIUS's
//!   radclient) checked against its shared secret, decoded and mapped to an event, as the
//!   RADIUS receiver does per datagram.
//!
//! `cargo bench -p gateway --bench parse`. The side-by-side comparison with Vector's VRL
//! is `benches/vrl-compare` (its own workspace).

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::parse::{Format, LogClock, ParseOptions, Parser};
use gateway::radius::{accounting, packet};
use model::{EventId, Observer};

fn lines_of(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(dir);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "log")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(&keep)
        })
        .collect();
    paths.sort();
    let mut lines = Vec::new();
    for path in paths {
        let text = std::fs::read(&path).expect("fixture");
        lines.extend(
            text.split(|&byte| byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    lines
}

fn bench_lines(c: &mut Criterion, name: &str, format: Format, lines: &[Vec<u8>]) {
    let now = jiff::Timestamp::now();
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse_lines", |b| {
        let mut events = Vec::with_capacity(lines.len());
        b.iter(|| {
            let options = ParseOptions::new(
                "bench/parse",
                LogClock::new(jiff::tz::TimeZone::UTC, Some(2026), now),
            );
            let mut parser = Parser::new(format, options);
            events.clear();
            for (seq, line) in lines.iter().enumerate() {
                parser.parse_line(line, seq as u64, now, &mut events);
            }
            parser.flush(now, &mut events);
            std::hint::black_box(events.len())
        });
    });
    group.finish();
}

/// An Accounting-Request Start that FreeRADIUS's radclient 3.2.1 sent (secret `s3cret`),
/// as in `src/radius/packet/tests.rs`.
const RADCLIENT_START: &str = "04d4005ca3cea711008122fb2d94ffc7dd410d9928060000000101076361726f6c2c033508060a6300011f123139322e302e322e31325b343530305d050600000007570872772d6561700406c000020134060000000137066553f100";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex"))
        .collect()
}

fn bench_radius(c: &mut Criterion) {
    let datagram = hex(RADCLIENT_START);
    let received_at = jiff::Timestamp::now();
    let mut group = c.benchmark_group("radius-accounting");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_verify_map", |b| {
        let mut seq = 0u64;
        b.iter(|| {
            let header = packet::Header::decode(&datagram).expect("header");
            assert!(header.verify_request(&datagram, b"s3cret"));
            let decoded = packet::decode(&datagram).expect("packet");
            let accounted = accounting::account(&decoded, received_at);
            seq += 1;
            let event = accounted.into_event(
                EventId::new("bench/radius", seq, 0),
                Observer::default(),
                datagram.len(),
            );
            let response = packet::encode_response(&header, &[], b"s3cret");
            std::hint::black_box((event, response))
        });
    });
    group.finish();
}

fn bench(c: &mut Criterion) {
    bench_lines(c, "charon", Format::Charon, &lines_of("charon", |_| true));
    bench_lines(c, "syslog", Format::Syslog, &lines_of("syslog", |_| true));
    bench_lines(
        c,
        "radius-detail",
        Format::RadiusDetail,
        &lines_of("radius-detail", |_| true),
    );
    bench_lines(
        c,
        "nginx",
        Format::Nginx,
        &lines_of("access", |name| name.starts_with("nginx-combined")),
    );
    bench_lines(
        c,
        "nginx-json",
        Format::NginxJson,
        &lines_of("access", |name| name == "nginx-json.log"),
    );
    bench_radius(c);
}

criterion_group!(benches, bench);
criterion_main!(benches);
