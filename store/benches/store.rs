//! The store's benchmarks (issue 4), printed as a table:
//!
//! 1. durable ingest, flows (not indexed) and auth events (full-text indexed): events per
//!    second and per CPU-second, through `Store::append` (WAL + fsync per batch) and
//!    `Store::flush` (Parquet), as the server does;
//! 2. bytes on disk per flow and per auth event after compaction;
//! 3. cold start: opening the store and answering a first query;
//! 4. latency (P50/P99) of "a session's flows by virtual IP and time window" and of a
//!    full-text term search;
//! 5. ten typical analyst queries, side by side with DuckDB on the same Parquet files
//!    (`benches/duckdb_compare.py`, needs `pip install duckdb`).
//!
//! The data is generated: thousands of users, a /16 virtual IP pool, hundreds of API
//! endpoints, flows spread over 30 days. Size and place:
//! `TW_BENCH_FLOWS` (default 100,000,000), `TW_BENCH_DIR` (default
//! /var/tmp/tunnelwatch-bench; reused if it already holds that many flows),
//! `TW_BENCH_PYTHON` (a python with duckdb; default `python3`).
//!
//! `cargo bench -p store --bench store`

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use model::{
    Auth, AuthMethod, Endpoint, Event, EventBody, EventId, Flow, Identities, Observer, Outcome,
    Peer,
};
use store::{Config, SearchOptions, Store};

const USERS: u64 = 5_000;
const API_ENDPOINTS: u64 = 300;
const DAYS: i64 = 30;
const BATCH: usize = 10_000;

/// xorshift64*: deterministic, fast, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn start() -> jiff::Timestamp {
    jiff::Timestamp::from_second(1_793_491_200).expect("a valid time") // 2026-11-01
}

/// The virtual IP user `user` has: one per user in 10.99.0.0/16.
fn vip(user: u64) -> String {
    format!("10.99.{}.{}", user / 250, 1 + user % 250)
}

fn flow(seq: u64, n_total: u64, rng: &mut Rng) -> Event {
    let span = DAYS * 86_400_000_000;
    let at = start()
        + jiff::SignedDuration::from_micros(
            (seq as i128 * span as i128 / n_total.max(1) as i128) as i64,
        );
    let user = rng.below(USERS);
    let endpoint = rng.below(API_ENDPOINTS);
    let duration_ms = rng.below(30_000) as i64;
    Event {
        id: EventId::new("gw1/flows@1", seq, 0),
        timestamp: at,
        dataset: "tunnelwatch.flows".to_owned(),
        observer: Observer {
            hostname: Some(format!("gw{}", 1 + seq % 2)),
            product: Some("tunnelwatch".to_owned()),
        },
        original: String::new(),
        session_id: Some(format!("s-{user:05}-{}", seq / 2_000_000)),
        source_geo: None,
        body: EventBody::Flow(Flow {
            source: Endpoint::new(
                vip(user).parse().expect("ip"),
                Some(32_768 + rng.below(28_000) as u16),
            ),
            destination: Endpoint::new(
                format!("198.51.100.{}", 1 + endpoint % 250)
                    .parse()
                    .expect("ip"),
                Some([443, 8443, 8080, 5432][(endpoint % 4) as usize]),
            ),
            transport: "tcp".to_owned(),
            start: at,
            end: at + jiff::SignedDuration::from_millis(duration_ms),
            source_bytes: 200 + rng.below(20_000),
            destination_bytes: 500 + rng.below(2_000_000),
            source_packets: 3 + rng.below(50),
            destination_packets: 3 + rng.below(2_000),
            tcp_flags: Some(0x1b),
            end_reason: Some(model::FlowEnd::TcpEnd),
            session_join: Some(model::SessionJoin::Matched),
            user_name: Some(format!("user{user:05}")),
        }),
    }
}

fn auth(seq: u64, n_total: u64, rng: &mut Rng) -> Event {
    let span = DAYS * 86_400_000_000;
    let at = start()
        + jiff::SignedDuration::from_micros(
            (seq as i128 * span as i128 / n_total.max(1) as i128) as i64,
        );
    let user = rng.below(USERS);
    let failed = rng.below(20) == 0;
    let name = format!("user{user:05}@corp.example");
    Event {
        id: EventId::new("gw1/charon@1", seq, 0),
        timestamp: at,
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("gw1".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: if failed {
            format!("tried 1 shared key for 'gw.corp.example' - '{name}', but MAC mismatched")
        } else {
            format!("authentication of '{name}' with EAP successful")
        },
        session_id: None,
        source_geo: None,
        body: EventBody::Auth(Auth {
            peer: Peer {
                connection: Some("rw-eap".to_owned()),
                ike_sa_id: Some(seq),
                client: Endpoint::new(
                    format!("203.0.113.{}", 1 + rng.below(250))
                        .parse()
                        .expect("ip"),
                    Some(4500),
                ),
                server: Endpoint::default(),
                identities: Identities {
                    eap_id: Some(name),
                    ..Identities::default()
                },
            },
            method: AuthMethod::EapMschapv2,
            outcome: if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            failure: failed.then(|| model::AuthFailure {
                code: model::FailureCode::PskMismatch,
                reason: "MAC mismatched".to_owned(),
            }),
        }),
    }
}

/// User and system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the name: indices 11 and 12 here.
    let ticks: u64 = fields
        .get(11)
        .and_then(|utime| utime.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|stime| stime.parse::<u64>().ok())
            .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

struct Ingest {
    events: u64,
    wall: Duration,
    cpu: Duration,
}

/// Appends `n` events made by `make` in batches, flushing every 500,000 rows, as the server's
/// pipeline does; the final flush is included.
fn ingest(
    store: &Store,
    from: u64,
    n: u64,
    total: u64,
    make: fn(u64, u64, &mut Rng) -> Event,
) -> Ingest {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ from);
    let mut ingested = Ingest {
        events: n,
        wall: Duration::ZERO,
        cpu: Duration::ZERO,
    };
    // Made ahead, a few million events at a time, so that generating them (formatting and
    // parsing addresses) is not counted as the store's time.
    const CHUNK: u64 = 5_000_000;
    let mut seq = from;
    let mut since_flush = 0;
    while seq < from + n {
        let chunk_end = (seq + CHUNK).min(from + n);
        let batches: Vec<Vec<Event>> = (seq..chunk_end)
            .step_by(BATCH)
            .map(|start| {
                let end = (start + BATCH as u64).min(chunk_end);
                (start..end).map(|seq| make(seq, total, &mut rng)).collect()
            })
            .collect();
        let started = Instant::now();
        let cpu_before = cpu_time();
        for batch in batches {
            since_flush += batch.len();
            store.append(batch, Vec::new()).expect("append");
            if since_flush >= 500_000 {
                store.flush().expect("flush");
                since_flush = 0;
            }
        }
        if chunk_end == from + n {
            store.flush().expect("flush");
        }
        ingested.wall += started.elapsed();
        ingested.cpu += cpu_time() - cpu_before;
        seq = chunk_end;
    }
    ingested
}

fn table_bytes(dir: &Path, table: &str) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.join("tables").join(table)];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(path),
                Ok(_) if path.extension().is_some_and(|ext| ext == "parquet") => {
                    total += entry.metadata().map(|m| m.len()).unwrap_or(0);
                }
                _ => {}
            }
        }
    }
    total
}

/// "met", or how far short of a minimum the value is.
fn at_least(value: f64, target: f64) -> String {
    if value >= target {
        "met".to_owned()
    } else {
        format!("GAP: {:.0} % short", (1.0 - value / target) * 100.0)
    }
}

/// "met", or how far over a maximum the value is.
fn at_most(value: f64, target: f64) -> String {
    if value <= target {
        "met".to_owned()
    } else {
        format!("GAP: {:.0} % over", (value / target - 1.0) * 100.0)
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx.min(samples.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Ten queries an analyst runs, in SQL both engines understand; `{flows}`/`{auth}` are the
/// table references.
const ANALYST_QUERIES: [(&str, &str); 10] = [
    (
        "flows per destination port",
        "SELECT destination_port, count(*) AS n FROM {flows} GROUP BY destination_port ORDER BY n DESC",
    ),
    (
        "top 10 users by bytes",
        "SELECT user_name, sum(destination_bytes) AS b FROM {flows} GROUP BY user_name ORDER BY b DESC LIMIT 10",
    ),
    (
        "one user's flows, one day",
        "SELECT count(*) FROM {flows} WHERE user_name = 'user00042' AND timestamp >= TIMESTAMP '2026-11-10T00:00:00Z' AND timestamp < TIMESTAMP '2026-11-11T00:00:00Z'",
    ),
    (
        "one virtual IP, one hour",
        "SELECT timestamp, destination_ip, destination_port, destination_bytes FROM {flows} WHERE source_ip = '10.99.3.17' AND timestamp >= TIMESTAMP '2026-11-20T10:00:00Z' AND timestamp < TIMESTAMP '2026-11-20T11:00:00Z' ORDER BY timestamp",
    ),
    (
        "distinct users per day",
        "SELECT date_trunc('day', timestamp) AS d, count(DISTINCT user_name) FROM {flows} GROUP BY d ORDER BY d",
    ),
    (
        "bytes per hour, last week",
        "SELECT date_trunc('hour', timestamp) AS h, sum(source_bytes + destination_bytes) FROM {flows} WHERE timestamp >= TIMESTAMP '2026-11-24T00:00:00Z' GROUP BY h ORDER BY h",
    ),
    (
        "endpoints touched by a user",
        "SELECT DISTINCT destination_ip, destination_port FROM {flows} WHERE user_name = 'user01234'",
    ),
    (
        "failures per user",
        "SELECT user_name, count(*) AS n FROM {auth} WHERE event_outcome = 'failure' GROUP BY user_name ORDER BY n DESC LIMIT 20",
    ),
    (
        "long flows",
        "SELECT count(*) FROM {flows} WHERE event_end - event_start > INTERVAL '25 seconds'",
    ),
    (
        "flows of failing users",
        "SELECT count(*) FROM {flows} f JOIN (SELECT DISTINCT vpn_eap_id FROM {auth} WHERE event_outcome = 'failure' AND timestamp < TIMESTAMP '2026-11-02T00:00:00Z') a ON f.user_name || '@corp.example' = a.vpn_eap_id WHERE f.timestamp < TIMESTAMP '2026-11-02T00:00:00Z'",
    ),
];

fn main() {
    #[allow(clippy::disallowed_methods)]
    let env = |name: &str| std::env::var(name).ok();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this too, without it:
    // then a smoke run (20,000 flows in a fresh temp directory, seconds in a debug build)
    // only checks that the benchmark works, and its numbers mean nothing.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let n_flows: u64 = if smoke {
        20_000
    } else {
        env("TW_BENCH_FLOWS")
            .and_then(|n| n.replace('_', "").parse().ok())
            .unwrap_or(100_000_000)
    };
    let n_auth: u64 = (n_flows / 100).max(10_000);
    let smoke_dir = smoke.then(|| tempfile::tempdir().expect("temp dir"));
    let dir = match &smoke_dir {
        Some(temp) => temp.path().to_owned(),
        None => PathBuf::from(
            env("TW_BENCH_DIR").unwrap_or_else(|| "/var/tmp/tunnelwatch-bench".to_owned()),
        ),
    };
    if smoke {
        eprintln!(
            "smoke run (not `cargo bench`): {n_flows} flows in {}",
            dir.display()
        );
    }
    let python = env("TW_BENCH_PYTHON").unwrap_or_else(|| "python3".to_owned());
    let data = dir.join(format!("data-{n_flows}"));
    let mut rows: Vec<(String, String, String, String)> = Vec::new();
    let mut config = Config::for_dir(&data);
    config.query_timeout_secs = 600;

    // 1. Ingest (a fresh directory, unless a complete one is there from an earlier run).
    let complete = data.join("COMPLETE");
    if std::fs::metadata(&complete).is_err() {
        let _ = std::fs::remove_dir_all(&data);
        let store = Store::open(&config).expect("open");
        let sample = n_flows.min(5_000_000);
        let flows = ingest(&store, 0, sample, n_flows, flow);
        let per_s = flows.events as f64 / flows.wall.as_secs_f64();
        let per_cpu_s = flows.events as f64 / flows.cpu.as_secs_f64().max(1e-9);
        rows.push((
            format!("durable ingest, flows, no text index ({sample} events)"),
            format!("{per_s:.0} events/s wall, {per_cpu_s:.0} per CPU-second"),
            "≥ 250,000 per core".to_owned(),
            at_least(per_cpu_s, 250_000.0),
        ));
        let sample_auth = n_auth.min(1_000_000);
        let auths = ingest(&store, 0, sample_auth, n_auth, auth);
        let per_s = auths.events as f64 / auths.wall.as_secs_f64();
        let per_cpu_s = auths.events as f64 / auths.cpu.as_secs_f64().max(1e-9);
        rows.push((
            format!("durable ingest, auth events, full-text indexed ({sample_auth} events)"),
            format!("{per_s:.0} events/s wall, {per_cpu_s:.0} per CPU-second"),
            "≥ 50,000 per core".to_owned(),
            at_least(per_cpu_s, 50_000.0),
        ));
        eprintln!("loading the rest of the {n_flows} flows …");
        if n_flows > sample {
            ingest(&store, sample, n_flows - sample, n_flows, flow);
        }
        if n_auth > sample_auth {
            ingest(&store, sample_auth, n_auth - sample_auth, n_auth, auth);
        }
        let far_future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 365);
        store.compact(far_future).expect("compact");
        drop(store);
        // The files compaction replaced are deleted at the next open (a running store keeps
        // them for a grace period, for queries that may read them): count what stays.
        drop(Store::open(&config).expect("reopen"));
        std::fs::write(&complete, b"").expect("mark complete");
    } else {
        eprintln!(
            "reusing {} (delete it to measure ingest again)",
            data.display()
        );
    }

    // 2. Bytes on disk.
    let flow_bytes = table_bytes(&data, "flows") as f64 / n_flows as f64;
    let auth_bytes = table_bytes(&data, "auth_events") as f64 / n_auth as f64;
    rows.push((
        "bytes per flow on disk (Parquet, compacted)".to_owned(),
        format!("{flow_bytes:.1} B"),
        "≤ 30 B".to_owned(),
        at_most(flow_bytes, 30.0),
    ));
    rows.push((
        "bytes per auth event on disk (auth_events table)".to_owned(),
        format!("{auth_bytes:.1} B"),
        "≤ 30 B".to_owned(),
        at_most(auth_bytes, 30.0),
    ));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // 3. Cold start: open and first query (the OS page cache is not dropped).
    let started = Instant::now();
    let store = Store::open(&config).expect("open");
    let first = runtime
        .block_on(store.query("SELECT count(*) FROM flows WHERE source_ip = '10.99.1.1' AND timestamp >= TIMESTAMP '2026-11-15T00:00:00Z' AND timestamp < TIMESTAMP '2026-11-15T01:00:00Z'"))
        .expect("first query");
    let cold = started.elapsed();
    assert_eq!(first.num_rows(), 1);
    rows.push((
        "open + first query after a restart".to_owned(),
        ms(cold),
        "< 2 s".to_owned(),
        at_most(cold.as_secs_f64(), 2.0),
    ));

    // 4. Latency.
    let mut rng = Rng(42);
    let mut session_lookups = Vec::new();
    for _ in 0..200 {
        let user = rng.below(USERS);
        let hour = rng.below(DAYS as u64 * 24) as i64;
        let from = start() + jiff::SignedDuration::from_hours(hour);
        let to = from + jiff::SignedDuration::from_hours(1);
        let sql = format!(
            "SELECT timestamp, destination_ip, destination_port, source_bytes, destination_bytes FROM flows WHERE source_ip = '{}' AND timestamp >= TIMESTAMP '{from}' AND timestamp < TIMESTAMP '{to}' ORDER BY timestamp",
            vip(user)
        );
        let started = Instant::now();
        runtime.block_on(store.query(&sql)).expect("session query");
        session_lookups.push(started.elapsed());
    }
    let p50 = percentile(&mut session_lookups, 0.5);
    let p99 = percentile(&mut session_lookups, 0.99);
    rows.push((
        format!("a session's flows by virtual IP and hour, {n_flows} flows"),
        format!("P50 {}, P99 {}", ms(p50), ms(p99)),
        "P99 < 100 ms".to_owned(),
        at_most(p99.as_secs_f64(), 0.1),
    ));
    let mut searches = Vec::new();
    for _ in 0..200 {
        let user = rng.below(USERS);
        let query = format!("raw:user{user:05} AND raw:mismatched");
        let started = Instant::now();
        store
            .search(&query, &SearchOptions::default())
            .expect("search");
        searches.push(started.elapsed());
    }
    let p50 = percentile(&mut searches, 0.5);
    let p99 = percentile(&mut searches, 0.99);
    rows.push((
        format!("full-text term search, {n_auth} indexed events"),
        format!("P50 {}, P99 {}", ms(p50), ms(p99)),
        "P99 < 300 ms".to_owned(),
        at_most(p99.as_secs_f64(), 0.3),
    ));

    // 5. Ten analyst queries, then the same in DuckDB.
    // As for DuckDB: one warm-up run, then the best of three.
    let mut ours = Vec::new();
    for (name, sql) in ANALYST_QUERIES {
        let sql = sql
            .replace("{flows}", "flows")
            .replace("{auth}", "auth_events");
        runtime
            .block_on(store.query(&sql))
            .unwrap_or_else(|error| panic!("{name}: {error}"));
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let started = Instant::now();
            runtime
                .block_on(store.query(&sql))
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            best = best.min(started.elapsed());
        }
        ours.push(best);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_compare.py");
    let queries_json = serde_json::to_string(
        &ANALYST_QUERIES
            .iter()
            .map(|(name, sql)| serde_json::json!({"name": name, "sql": sql}))
            .collect::<Vec<_>>(),
    )
    .expect("json");
    let duck = if smoke {
        Err(std::io::Error::other("not in a smoke run"))
    } else {
        std::process::Command::new(&python)
            .arg(&script)
            .arg(&data)
            .arg(&queries_json)
            .output()
    };
    let duck_times: Option<Vec<f64>> = match &duck {
        Ok(output) if output.status.success() => serde_json::from_slice(&output.stdout).ok(),
        Ok(output) => {
            eprintln!(
                "duckdb comparison failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            None
        }
        Err(error) => {
            eprintln!("cannot run {python}: {error}");
            None
        }
    };

    println!();
    if smoke {
        println!(
            "(smoke run: the numbers below mean nothing; use `cargo bench -p store --bench store`)"
        );
    }
    println!("{:<66} {:<44} {:<20} verdict", "what", "result", "target");
    for (what, result, target, verdict) in &rows {
        println!("{what:<66} {result:<44} {target:<20} {verdict}");
    }
    println!();
    println!(
        "{:<32} {:>12} {:>12} {:>8}",
        "analyst query", "tunnelwatch", "duckdb", "ratio"
    );
    let mut ratios = Vec::new();
    for (idx, (name, _)) in ANALYST_QUERIES.iter().enumerate() {
        let ours_ms = ours[idx].as_secs_f64() * 1000.0;
        match duck_times.as_ref().and_then(|times| times.get(idx)) {
            Some(duck_ms) => {
                let ratio = ours_ms / duck_ms;
                ratios.push(ratio);
                println!("{name:<32} {ours_ms:>9.1} ms {duck_ms:>9.1} ms {ratio:>7.2}×");
            }
            None => println!("{name:<32} {ours_ms:>9.1} ms {:>12} {:>8}", "n/a", ""),
        }
    }
    if !ratios.is_empty() {
        let geomean =
            (ratios.iter().map(|ratio| ratio.ln()).sum::<f64>() / ratios.len() as f64).exp();
        println!(
            "geometric mean of tunnelwatch/duckdb: {geomean:.2}× (lower is faster for tunnelwatch)"
        );
    }
}
