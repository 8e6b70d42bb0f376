//! Parsing throughput on real charon captures (every `.log` in testdata/charon, both
//! `ike_name` variants and the syslog format), one core.
//!
//! `cargo bench -p gateway --bench parse`

use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::parse::{Format, LogClock, ParseOptions, Parser};

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/charon");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata/charon")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    names.sort();
    let mut lines = Vec::new();
    for path in names {
        let text = std::fs::read(&path).expect("fixture");
        lines.extend(
            text.split(|&byte| byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    lines
}

fn bench(c: &mut Criterion) {
    let lines = corpus();
    let now = jiff::Timestamp::now();
    let mut group = c.benchmark_group("charon");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("parse_lines", |b| {
        let mut events = Vec::with_capacity(lines.len());
        b.iter(|| {
            let options = ParseOptions::new(
                "bench/charon",
                LogClock::new(jiff::tz::TimeZone::UTC, Some(2026), now),
            );
            let mut parser = Parser::new(Format::Charon, options);
            events.clear();
            for (seq, line) in lines.iter().enumerate() {
                parser.parse_line(line, seq as u64, now, &mut events);
            }
            std::hint::black_box(events.len())
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
