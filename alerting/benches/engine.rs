//! The rule engine's costs (issue 15), printed as a table: `cargo bench -p alerting --bench
//! engine`. `cargo test --all-targets` runs it once without `--bench`: a smoke run.
//!
//! - evaluation: a stream of VPN logins (a fifth of them failures) of 10,000 users from
//!   2,000 addresses over the shipped rules, per event and per event and rule;
//! - memory: one million distinct users failing once each in the per-user failure window
//!   (the resident set before and after).

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use alerting::engine::Limits;
use alerting::{Config, Engine, load_rules};
use jiff::Timestamp;
use model::{
    Auth, AuthFailure, AuthMethod, Endpoint, Event, EventBody, EventId, FailureCode, Identities,
    Observer, Outcome, Peer,
};

fn auth(seq: u64, micros: i64, user: &str, source: IpAddr, outcome: Outcome) -> Event {
    let failure = (outcome == Outcome::Failure).then(|| AuthFailure {
        code: FailureCode::PskMismatch,
        reason: "MAC mismatched".to_owned(),
    });
    Event {
        id: EventId::new("gw1/charon@1", seq, 0),
        timestamp: Timestamp::from_microsecond(1_795_000_000_000_000 + micros).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("gw1".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: String::new(),
        session_id: None,
        source_geo: None,
        body: EventBody::Auth(Auth {
            peer: Peer {
                connection: Some("rw".to_owned()),
                ike_sa_id: Some(seq),
                client: Endpoint::new(source, Some(4500)),
                server: Endpoint::default(),
                identities: Identities {
                    ike_id: Some(user.to_owned()),
                    ..Identities::default()
                },
            },
            method: AuthMethod::Psk,
            outcome,
            failure,
        }),
    }
}

/// Resident memory of this process, bytes.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (n_events, n_users_memory) = if full {
        (1_000_000u64, 1_000_000u64)
    } else {
        (20_000, 20_000)
    };
    let shipped: Vec<_> = load_rules(&Config::default())
        .unwrap()
        .into_iter()
        .map(|(rule, _)| rule)
        .collect();
    let n_rules = shipped.len();
    println!("| what | measured | target |");
    println!("|---|---|---|");

    // A day's logins at 100,000 a second of event time: 10 µs apart.
    let users: Vec<String> = (0..10_000)
        .map(|n| format!("user{n}@corp.example"))
        .collect();
    let events: Vec<Event> = (0..n_events)
        .map(|seq| {
            let user = &users[(seq * 7919 % 10_000) as usize];
            let source = IpAddr::V4(Ipv4Addr::from(0xC633_6400 + (seq * 104_729 % 2000) as u32));
            let outcome = if seq % 5 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            auth(seq + 1, seq as i64 * 10, user, source, outcome)
        })
        .collect();
    let mut engine = Engine::new(shipped.clone(), Limits::default());
    let start = Instant::now();
    let mut n_rows = 0usize;
    for event in &events {
        n_rows += engine.observe(event).len();
    }
    let elapsed = start.elapsed();
    let per_event = elapsed.as_secs_f64() * 1e6 / n_events as f64;
    println!(
        "| {n_rules} shipped rules over {n_events} login events (10,000 users, 2,000 addresses, 20 % failures; {n_rows} alert rows) | {per_event:.2} µs per event, {:.2} µs per event and rule ({:.0} events/s on one core) | under 2 µs per event and rule |",
        per_event / n_rules as f64,
        n_events as f64 / elapsed.as_secs_f64()
    );

    // Memory: one million distinct users, each failing once, in the per-user window.
    let spike: Vec<_> = shipped
        .into_iter()
        .filter(|rule| rule.id == "auth-failure-spike-user")
        .collect();
    let mut engine = Engine::new(spike, Limits::default());
    let before = resident_bytes();
    let source = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    for n in 0..n_users_memory {
        let event = auth(
            n + 1,
            n as i64,
            &format!("u{n}@corp.example"),
            source,
            Outcome::Failure,
        );
        engine.observe(&event);
    }
    let after = resident_bytes();
    println!(
        "| {n_users_memory} distinct users in the per-user failure window | {:.0} MiB resident ({:.0} bytes per user) | under 500 MiB for 1 million |",
        after.saturating_sub(before) as f64 / (1 << 20) as f64,
        after.saturating_sub(before) as f64 / n_users_memory as f64
    );
    assert!(engine.counters().events == n_users_memory);
}
