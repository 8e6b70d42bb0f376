//! The server under load: does `/healthz` stay fast, and do ingest acknowledgements, while
//! gateways ingest without pause (flushes every second) and while analysts list sessions on
//! a store of over a million events?
//!
//! `cargo bench -p app --bench serve` (release) runs a real server in this process on a
//! temporary data directory, its clients on threads of their own (they would be other hosts),
//! and prints a table: each figure, its target and whether it was met. Under `cargo test`
//! (`--bench` not given) it runs a few seconds on a small store, as a smoke test.
//! `TW_BENCH_KEEP=DIR` keeps the store in DIR (a new directory) to query it afterwards.
//!
//! Loads:
//! - `ingest`: one gateway posting batches of 500 events as fast as they are acknowledged
//!   (durable: WAL and fsync), the store flushing every second; a prober asks `/healthz`
//!   every 20 ms.
//! - `queries`: the store first holds `EVENTS` events (half of them logins, so there are
//!   sessions to list); four analysts list sessions (`/api/v1/sessions`) back to back while a
//!   gateway posts a batch every 100 ms and the prober asks `/healthz`.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use model::{
    Auth, AuthMethod, Endpoint, Event, EventBody, EventId, Identities, IkeSaEvent, IngestBatch,
    Observer, Outcome, Peer, SaChange,
};

/// The `/healthz` and acknowledgement target (P99).
const TARGET_MS: f64 = 10.0;
const BATCH: u64 = 500;
const TOKEN: &str = "bench-token";

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (phase_secs, events) = if full { (20, 1_100_000) } else { (2, 20_000) };
    let data = tempfile::tempdir().unwrap();
    // TW_BENCH_KEEP=DIR: the store in DIR (which must not exist yet), kept for a look after.
    #[allow(clippy::disallowed_methods)]
    let kept = std::env::var_os("TW_BENCH_KEEP").map(std::path::PathBuf::from);
    let data_dir = kept.unwrap_or_else(|| data.path().to_owned());
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tw-server")
        .enable_all()
        .build()
        .unwrap();
    let settings = app::server::ServerSettings {
        store: store::Config {
            flush_interval_secs: 1,
            ..store::Config::for_dir(&data_dir)
        },
        collector: collector::Config::default(),
        ingest_token: Some(TOKEN.to_owned()),
        tls: None,
        client_certificates: false,
        // The analysts' reads go without credentials here (what is measured is serving).
        access: dashboards::access::Settings {
            anonymous_role: Some(dashboards::access::Role::Analyst),
            ..dashboards::access::Settings::default()
        },
        allow_unauthenticated_ingest: false,
        alerting: alerting::Config::default(),
    };
    let server = server_runtime.block_on(async {
        let listener = app::server::bind("127.0.0.1:0").await.unwrap();
        app::server::RunningServer::start(settings, listener)
            .await
            .unwrap()
    });
    let base = format!("http://{}", server.addr);
    let mut rows = Vec::new();

    // Ingest without pause.
    let cpu = Cpu::start();
    let load = Load::new();
    let prober = load.probe_healthz(&base);
    let ingest = load.ingest(&base, "bench-gw1", None);
    std::thread::sleep(Duration::from_secs(phase_secs));
    load.stop();
    let healthz = prober.join().unwrap();
    let (acks, n_events) = ingest.join().unwrap();
    let rate = n_events as f64 / phase_secs as f64;
    rows.push(row("ingest", "events acknowledged per second", rate, None));
    rows.push(retried_row("ingest"));
    rows.extend(latency_rows("ingest", "/healthz", &healthz));
    rows.extend(latency_rows("ingest", "ingest acknowledgement", &acks));
    let mut profiles = vec![("ingest", cpu.stop())];

    // Fill the store, then list sessions from four analysts.
    let started = Instant::now();
    fill(&base, events);
    println!(
        "stored {events} more events in {:.0} s ({} batches refused and posted again)",
        started.elapsed().as_secs_f64(),
        RETRIED.swap(0, Ordering::Relaxed)
    );
    let cpu = Cpu::start();
    let load = Load::new();
    let prober = load.probe_healthz(&base);
    let ingest = load.ingest(&base, "bench-gw3", Some(Duration::from_millis(100)));
    let analysts: Vec<_> = (0..4).map(|_| load.list_sessions(&base)).collect();
    std::thread::sleep(Duration::from_secs(phase_secs));
    load.stop();
    let healthz = prober.join().unwrap();
    let (acks, _) = ingest.join().unwrap();
    let mut lists = Vec::new();
    let mut refused = 0;
    for analyst in analysts {
        let (done, busy) = analyst.join().unwrap();
        lists.extend(done);
        refused += busy;
    }
    profiles.push(("queries", cpu.stop()));
    rows.push(row(
        "queries",
        "session lists per second (4 analysts)",
        lists.len() as f64 / phase_secs as f64,
        None,
    ));
    rows.push(row("queries", "lists refused (503)", refused as f64, None));
    rows.push(retried_row("queries"));
    rows.extend(latency_rows("queries", "/healthz", &healthz));
    rows.extend(latency_rows("queries", "ingest acknowledgement", &acks));
    rows.extend(
        latency_rows("queries", "session list", &lists)
            .into_iter()
            .map(|mut row| {
                row.target = None;
                row
            }),
    );

    println!(
        "\n{:<8} {:<42} {:>12} {:>10}  verdict",
        "load", "figure", "value", "target"
    );
    for row in &rows {
        let (target, verdict) = match row.target {
            Some(target) if row.value <= target => (format!("{target:.0} ms"), "met"),
            Some(target) => (format!("{target:.0} ms"), "MISSED"),
            None => (String::new(), ""),
        };
        println!(
            "{:<8} {:<42} {:>12.1} {:>10}  {verdict}",
            row.load, row.figure, row.value, target
        );
    }
    // Where the two cores went: CPU seconds per group of threads (named by the product:
    // tw-server is the HTTP and ingest runtime, tw-query DataFusion's, thrd-tantivy the
    // index writer's; bench-client the load's own clients).
    println!(
        "\n{:<8} {:<42} {:>12} {:>10}",
        "load", "threads", "CPU s", "of 2 cores"
    );
    for (load, (wall, groups)) in &profiles {
        for (group, cpu) in groups {
            let share = cpu / (2.0 * wall) * 100.0;
            println!("{load:<8} {group:<42} {cpu:>12.1} {share:>9.0}%");
        }
    }
    server_runtime.block_on(server.shutdown()).unwrap();
}

struct Row {
    load: &'static str,
    figure: String,
    value: f64,
    target: Option<f64>,
}

fn row(load: &'static str, figure: &str, value: f64, target: Option<f64>) -> Row {
    Row {
        load,
        figure: figure.to_owned(),
        value,
        target,
    }
}

/// P50, P99 and the maximum of `samples` (milliseconds); the P99 has the target.
fn latency_rows(load: &'static str, what: &str, samples: &[Duration]) -> Vec<Row> {
    let mut ms: Vec<f64> = samples
        .iter()
        .map(|sample| sample.as_secs_f64() * 1000.0)
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[((ms.len() - 1) as f64 * q).round() as usize]
        }
    };
    vec![
        row(
            load,
            &format!("{what} P50 (ms, n={})", ms.len()),
            at(0.5),
            None,
        ),
        row(load, &format!("{what} P99 (ms)"), at(0.99), Some(TARGET_MS)),
        row(load, &format!("{what} max (ms)"), at(1.0), None),
    ]
}

/// The clients of one load, each on a thread of its own with its own runtime.
struct Load {
    stop: Arc<AtomicBool>,
}

impl Load {
    fn new() -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    fn probe_healthz(&self, base: &str) -> std::thread::JoinHandle<Vec<Duration>> {
        let url = format!("{base}/healthz");
        let stop = self.stop.clone();
        client_thread(move |client| async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let response = client.get(&url).send().await.unwrap();
                assert!(response.status().is_success());
                response.bytes().await.unwrap();
                samples.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            samples
        })
    }

    /// Posts batches (the next one when the last was acknowledged, or every `pace`);
    /// returns the acknowledgement times and how many events were stored.
    fn ingest(
        &self,
        base: &str,
        gateway: &'static str,
        pace: Option<Duration>,
    ) -> std::thread::JoinHandle<(Vec<Duration>, u64)> {
        let url = format!("{base}{}", model::wire::INGEST_PATH);
        let stop = self.stop.clone();
        let first = 0;
        client_thread(move |client| async move {
            let mut acks = Vec::new();
            let mut next = first;
            while !stop.load(Ordering::Relaxed) {
                let batch = batch(gateway, next, BATCH);
                let started = Instant::now();
                post(&client, &url, &batch).await;
                acks.push(started.elapsed());
                next += BATCH;
                if let Some(pace) = pace {
                    tokio::time::sleep(pace).await;
                }
            }
            (acks, next - first)
        })
    }

    /// Lists sessions back to back; returns how long each list took and how many were
    /// refused.
    fn list_sessions(&self, base: &str) -> std::thread::JoinHandle<(Vec<Duration>, u64)> {
        let url = format!("{base}/api/v1/sessions?limit=100");
        let stop = self.stop.clone();
        client_thread(move |client| async move {
            let mut done = Vec::new();
            let mut refused = 0;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let response = client.get(&url).send().await.unwrap();
                let status = response.status();
                response.bytes().await.unwrap();
                if status.as_u16() == 503 {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                } else {
                    assert!(status.is_success(), "{status}");
                    done.push(started.elapsed());
                }
            }
            (done, refused)
        })
    }
}

/// CPU time by group of threads over a phase, from `/proc/self/task/*/stat` (Linux).
struct Cpu {
    started: Instant,
    before: Threads,
}

/// The process's CPU seconds so far, and each live thread's (id, name, seconds).
struct Threads {
    process: f64,
    threads: std::collections::BTreeMap<String, (String, f64)>,
}

impl Cpu {
    fn start() -> Cpu {
        Cpu {
            started: Instant::now(),
            before: threads(),
        }
    }

    /// The phase's wall seconds and CPU seconds per group of threads (a name with its
    /// digits dropped), busiest first. What threads that ended during the phase used (the
    /// load's clients, tantivy's indexing threads, tokio's blocking pool) is "ended".
    fn stop(self) -> (f64, Vec<(String, f64)>) {
        let wall = self.started.elapsed().as_secs_f64();
        let now = threads();
        let mut groups = std::collections::BTreeMap::<String, f64>::new();
        let mut live = 0.0;
        for (id, (name, cpu)) in &now.threads {
            let before = self.before.threads.get(id).map_or(0.0, |(_, cpu)| *cpu);
            let group: String = name.chars().filter(|c| !c.is_ascii_digit()).collect();
            let group = group.trim_end_matches(['-', '_']).to_owned();
            *groups.entry(group).or_default() += cpu - before;
            live += cpu - before;
        }
        let ended = now.process - self.before.process - live;
        groups.insert("ended during the phase".to_owned(), ended);
        let mut used: Vec<(String, f64)> = groups
            .into_iter()
            .filter(|(_, used)| *used >= 0.05)
            .collect();
        used.sort_by(|a, b| b.1.total_cmp(&a.1));
        (wall, used)
    }
}

fn threads() -> Threads {
    // utime and stime in clock ticks (USER_HZ, 100 on Linux), after the name's parenthesis.
    let times = |stat: &str| -> Option<(String, f64)> {
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((stat[open + 1..close].to_owned(), (utime + stime) / 100.0))
    };
    let mut threads = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(stat) = std::fs::read_to_string(task.path().join("stat"))
            && let Some(times) = times(&stat)
        {
            threads.insert(task.file_name().to_string_lossy().into_owned(), times);
        }
    }
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| times(&stat))
        .map_or(0.0, |(_, cpu)| cpu);
    Threads { process, threads }
}

fn client_thread<T, F, Fut>(work: F) -> std::thread::JoinHandle<T>
where
    T: Send + 'static,
    F: FnOnce(reqwest::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    std::thread::Builder::new()
        .name("bench-client".to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            // reqwest is built without a default crypto provider (as in the product).
            let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            runtime.block_on(work(client))
        })
        .unwrap()
}

/// Posts a batch until it is acknowledged: a 503 (the store's buffer is full while a flush
/// runs) is retried after the `Retry-After` it names, as the gateway does. The time this
/// takes, retries included, is the acknowledgement's.
async fn post(client: &reqwest::Client, url: &str, batch: &IngestBatch) {
    loop {
        let response = client
            .post(url)
            .bearer_auth(TOKEN)
            .json(batch)
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status.as_u16() == 503 {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse().ok())
                .unwrap_or(1);
            RETRIED.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        assert!(status.is_success(), "{status}");
        return;
    }
}

/// The batches refused and posted again since the last call, as a row of `load`.
fn retried_row(load: &'static str) -> Row {
    let retried = RETRIED.swap(0, Ordering::Relaxed) as f64;
    row(
        load,
        "batches refused (503) and posted again",
        retried,
        None,
    )
}

/// Batches refused with a 503 and posted again.
static RETRIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Adds `n` events to the store (a gateway of their own), in big batches.
fn fill(base: &str, n: u64) {
    let url = format!("{base}{}", model::wire::INGEST_PATH);
    client_thread(move |client| async move {
        let mut next = 0;
        while next < n {
            post(&client, &url, &batch("bench-gw2", next, 5_000)).await;
            next += 5_000;
        }
    })
    .join()
    .unwrap();
}

/// `n` events from position `first` on: logins of a thousand users, each an
/// authentication, its IKE_SA established and, a few minutes later, deleted (so sessions,
/// nearly all of them closed), three seconds apart: a store of a million events holds five
/// weeks of a busy gateway.
fn batch(gateway: &str, first: u64, n: u64) -> IngestBatch {
    let epoch = jiff::Timestamp::now().as_second() - 40 * 24 * 3600;
    let events = (first..first + n)
        .map(|seq| {
            let login = seq / 3;
            let peer = Peer {
                connection: Some("rw-psk".to_owned()),
                ike_sa_id: Some(login),
                client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
                server: Endpoint::default(),
                identities: Identities {
                    ike_id: Some(format!("user{}@bench.test", login % 1000)),
                    ..Identities::default()
                },
            };
            let (body, second) = match seq % 3 {
                0 => (
                    EventBody::Auth(Auth {
                        peer,
                        method: AuthMethod::Psk,
                        outcome: Outcome::Success,
                        failure: None,
                    }),
                    login * 9,
                ),
                1 => (
                    EventBody::IkeSa(IkeSaEvent {
                        peer,
                        change: SaChange::Established,
                        new_ike_sa_id: None,
                        cause: None,
                        proposal: None,
                    }),
                    login * 9,
                ),
                _ => (
                    EventBody::IkeSa(IkeSaEvent {
                        peer,
                        change: SaChange::Deleted,
                        new_ike_sa_id: None,
                        cause: Some(model::TerminateCause::UserRequest),
                        proposal: None,
                    }),
                    login * 9 + 300,
                ),
            };
            Event {
                id: EventId::new(format!("{gateway}/charon@1"), seq, 0),
                timestamp: jiff::Timestamp::from_second(epoch + i64::try_from(second).unwrap_or(0))
                    .unwrap(),
                dataset: "strongswan.charon".to_owned(),
                observer: Observer {
                    hostname: Some(gateway.to_owned()),
                    product: Some("strongswan".to_owned()),
                },
                original: format!("bench line {seq}"),
                session_id: None,
                source_geo: None,
                body,
            }
        })
        .collect();
    IngestBatch {
        gateway: gateway.to_owned(),
        events,
    }
}
