//! Access's costs (issue 14), printed as a table: `cargo bench -p dashboards --bench access`.
//!
//! - a sign-in's Argon2id verification (m=64 MiB, t=3) (target 50 to 250 ms: strong, not a denial of service),
//!   and the whole sign-in with its audit entry (fsync);
//! - checking a bearer token (1,000 tokens) and a session cookie on a
//!   request (target under 20 µs; the session map is a hash map, so its size barely counts:
//!   200 sessions, each made by a real sign-in);
//! - the rate of `GET /api/v1/sessions` through the whole router with a token against the
//!   same without credentials (anonymous access), alternating rounds (target: within 10 %).

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use dashboards::access::{Access, Actor, Credential, Grant, Role, Settings, secret};
use tower::ServiceExt;

struct NoIngest;

impl dashboards::Ingest for NoIngest {
    fn ingest(
        &self,
        _batch: model::IngestBatch,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<model::IngestAck, dashboards::IngestError>> + Send>,
    > {
        Box::pin(async { Err(dashboards::IngestError::Unavailable("benchmark".to_owned())) })
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn row(what: &str, value: String, target: &str) {
    println!("| {what} | {value} | {target} |");
}

fn main() {
    // `cargo test --all-targets` runs this once without `--bench`: a smoke run, small counts.
    let full = std::env::args().any(|arg| arg == "--bench");
    let (n_argon, n_tokens, n_sessions, n_requests, n_rounds) = if full {
        (20, 1000, 200, 400, 5)
    } else {
        (2, 20, 5, 5, 1)
    };
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&store::Config::for_dir(dir.path())).unwrap();
    let access = Access::open(
        dir.path(),
        Settings {
            anonymous_role: Some(Role::Analyst),
            ..Settings::default()
        },
        store.clone(),
    )
    .unwrap();
    let cli = Actor::cli("bench");
    let password = "a long enough benchmark password";
    access
        .add_user(&cli, "alice", Role::Analyst, password)
        .unwrap();
    println!("| what | measured | target |");
    println!("|---|---|---|");

    // Argon2id alone, then the whole sign-in (throttle, Argon2, audit entry with fsync, session).
    let hash = secret::hash_password(password).unwrap();
    let mut argon: Vec<Duration> = (0..n_argon)
        .map(|_| {
            let start = Instant::now();
            assert!(secret::verify_password(password, &hash));
            start.elapsed()
        })
        .collect();
    argon.sort();
    row(
        "Argon2id verification (m=64 MiB, t=3), 20 runs",
        format!(
            "median {:.1} ms, min {:.1}, max {:.1}",
            percentile(&argon, 0.5).as_secs_f64() * 1e3,
            argon[0].as_secs_f64() * 1e3,
            argon[argon.len() - 1].as_secs_f64() * 1e3
        ),
        "50 to 250 ms",
    );
    let mut logins: Vec<Duration> = (0..n_argon)
        .map(|_| {
            let start = Instant::now();
            access
                .login("alice", password, None, None, jiff::Timestamp::now())
                .unwrap();
            start.elapsed()
        })
        .collect();
    logins.sort();
    row(
        "whole sign-in (Argon2id + audit entry + session), 20 runs",
        format!(
            "median {:.1} ms",
            percentile(&logins, 0.5).as_secs_f64() * 1e3
        ),
        "",
    );

    // Token and cookie checks among many.
    let mut tokens = Vec::new();
    for n in 0..n_tokens {
        tokens.push(
            access
                .create_token(
                    &cli,
                    &format!("t{n}"),
                    Grant::Role { role: Role::Viewer },
                    None,
                )
                .unwrap(),
        );
    }
    let mut cookies = Vec::new();
    let now = jiff::Timestamp::now();
    for _ in 0..n_sessions {
        let (cookie, _) = access.login("alice", password, None, None, now).unwrap();
        cookies.push(cookie);
    }
    for (what, credentials) in [
        (
            "bearer token check (1,000 tokens)",
            tokens
                .iter()
                .map(|t| Credential::Bearer(t))
                .collect::<Vec<_>>(),
        ),
        (
            "session cookie check (200 sessions)",
            cookies.iter().map(|c| Credential::Cookie(c)).collect(),
        ),
    ] {
        let mut batches = Vec::new();
        let per_batch = 1000;
        for batch in 0..(if full { 200 } else { 2 }) {
            let start = Instant::now();
            for index in 0..per_batch {
                let credential = credentials[(batch * per_batch + index) % credentials.len()];
                assert!(access.authenticate(credential, now).is_some());
            }
            batches.push(start.elapsed() / per_batch as u32);
        }
        batches.sort();
        row(
            what,
            format!(
                "median {:.2} µs, P99 of 1,000-check batches {:.2} µs",
                percentile(&batches, 0.5).as_secs_f64() * 1e6,
                percentile(&batches, 0.99).as_secs_f64() * 1e6
            ),
            "under 20 µs",
        );
    }

    // The read rate with and without a credential, through the whole router.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = dashboards::AppState {
        store: store.clone(),
        ingest: Arc::new(NoIngest),
        ingest_token: None,
        access: access.clone(),
        web: dashboards::WebSettings::default(),
        collector: None,
        alerting: None,
    };
    let router = dashboards::router(state);
    let token = tokens[0].clone();
    let rate = |authenticated: bool| -> f64 {
        runtime.block_on(async {
            let n = n_requests;
            let start = Instant::now();
            for _ in 0..n {
                let mut request = Request::get("/api/v1/sessions?limit=10");
                if authenticated {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let response = router
                    .clone()
                    .oneshot(request.body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
    };
    let _ = rate(false);
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for _ in 0..n_rounds {
        without.push(rate(false));
        with.push(rate(true));
    }
    with.sort_by(f64::total_cmp);
    without.sort_by(f64::total_cmp);
    let (with, without) = (with[n_rounds / 2], without[n_rounds / 2]);
    row(
        "GET /api/v1/sessions, requests/s (median of 5 rounds of 400)",
        format!(
            "with a token {with:.0}, without {without:.0}: {:+.1} %",
            (with / without - 1.0) * 100.0
        ),
        "within 10 %",
    );
}
