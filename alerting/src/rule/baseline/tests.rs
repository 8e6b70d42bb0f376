//! Baselines over weeks of made-up traffic: usual rates are learnt per hour of the week, an
//! unusual bucket fires once, nothing fires while learning.

use model::{Event, Outcome};

use super::*;
use crate::engine::tests::auth;
use crate::rule::{Kind, Rule, RuleConfig};

fn rule(extra: &str) -> Baseline {
    let text = format!(
        "id = \"b\"\nname = \"B\"\nkind = \"baseline\"\ngroup_by = [\"observer.hostname\"]\nfilter = {{ \"event.action\" = \"auth-failure\" }}\n{extra}"
    );
    let config: RuleConfig = toml::from_str(&text).unwrap();
    let Kind::Baseline(baseline) = Rule::compile(&config).unwrap().kind else {
        panic!("not a baseline")
    };
    baseline
}

/// `n` failures spread over the 5-minute bucket that starts `second` seconds after the base.
fn bucket_events(seq: &mut u64, second: i64, n: u64) -> Vec<Event> {
    (0..n)
        .map(|k| {
            *seq += 1;
            auth(
                *seq,
                second + (k as i64 * 290) / n.max(1) as i64,
                "alice",
                "192.0.2.1",
                Outcome::Failure,
            )
        })
        .collect()
}

/// Feeds `days` days of traffic: `usual(second_of_week)` failures per 5-minute bucket;
/// returns what fired.
fn feed(
    baseline: &Baseline,
    state: &mut State,
    seq: &mut u64,
    from_day: i64,
    days: i64,
    usual: impl Fn(i64) -> u64,
) -> Vec<Found> {
    let mut found = Vec::new();
    for bucket in (from_day * 288)..((from_day + days) * 288) {
        let second = bucket * 300;
        for event in bucket_events(seq, second, usual(second)) {
            found.extend(baseline.observe(state, "gw1".to_owned(), &event));
        }
    }
    found
}

/// The base time's bucket start, so that buckets line up with the test's 5-minute grid.
fn aligned(baseline: &Baseline) -> i64 {
    let base = auth(0, 0, "x", "192.0.2.1", Outcome::Failure)
        .timestamp
        .as_microsecond();
    (base - baseline.bucket_of(base)) / 1_000_000
}

#[test]
fn an_unusual_bucket_fires_once_and_a_usual_one_does_not() {
    let baseline = rule("seasonality = \"none\"\nwarmup = \"1d\"\nmin_count = 10\n");
    assert_eq!(aligned(&baseline) % 300, aligned(&baseline));
    let shift = -aligned(&baseline);
    let mut state = State::default();
    let mut seq = 0;
    // Two days of 4 to 6 failures per bucket: learnt, nothing fires.
    let quiet = feed(&baseline, &mut state, &mut seq, 0, 2, |second| {
        4 + ((second / 300) % 3) as u64
    });
    assert!(quiet.is_empty(), "{quiet:?}");
    let start = 2 * 86_400 + shift;
    // A usual bucket: nothing.
    let mut fired = Vec::new();
    for event in bucket_events(&mut seq, start, 6) {
        fired.extend(baseline.observe(&mut state, "gw1".to_owned(), &event));
    }
    assert!(fired.is_empty(), "{fired:?}");
    // Sixty in the next: fires once, when the count passes the limit, not at every event.
    for event in bucket_events(&mut seq, start + 300, 60) {
        fired.extend(baseline.observe(&mut state, "gw1".to_owned(), &event));
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(
        fired[0].count >= 10 && fired[0].count < 60,
        "{:?}",
        fired[0]
    );
    assert!(fired[0].reason.contains("are usual"), "{}", fired[0].reason);
    assert!(!fired[0].evidence.is_empty());
}

#[test]
fn nothing_fires_while_a_group_is_learnt() {
    let baseline = rule("seasonality = \"none\"\nwarmup = \"1d\"\n");
    let mut state = State::default();
    let mut seq = 0;
    // A new gateway's first hours are busy: it is learning, so no page.
    let found = feed(&baseline, &mut state, &mut seq, 0, 1, |second| {
        if second < 3600 { 200 } else { 5 }
    });
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn each_hour_of_the_week_has_its_own_usual() {
    let baseline = rule("warmup = \"7d\"\n");
    let mut state = State::default();
    let mut seq = 0;
    // Three weeks: one busy hour a day (the base's first hour of each day), quiet otherwise.
    let busy = |second: i64| second.rem_euclid(86_400) < 3600;
    let found = feed(&baseline, &mut state, &mut seq, 0, 21, |second| {
        if busy(second) {
            50 + ((second / 300) % 5) as u64
        } else {
            2
        }
    });
    // The warm-up covers the first week; by then every slot has seen its buckets.
    assert!(found.is_empty(), "{found:?}");
    // The busy hour as busy as usual: nothing. The same count at a quiet hour: fires.
    let day = 21 * 86_400 - aligned(&baseline);
    let mut at_busy = Vec::new();
    for event in bucket_events(&mut seq, day, 52) {
        at_busy.extend(baseline.observe(&mut state, "gw1".to_owned(), &event));
    }
    assert!(at_busy.is_empty(), "{at_busy:?}");
    let mut at_quiet = Vec::new();
    for event in bucket_events(&mut seq, day + 6 * 3600, 52) {
        at_quiet.extend(baseline.observe(&mut state, "gw1".to_owned(), &event));
    }
    assert_eq!(at_quiet.len(), 1, "{at_quiet:?}");
}

#[test]
fn quiet_time_teaches_zeros_and_sweeping_closes_buckets() {
    let baseline = rule("seasonality = \"none\"\nwarmup = \"1h\"\n");
    let mut state = State::default();
    let mut seq = 0;
    feed(&baseline, &mut state, &mut seq, 0, 1, |_| 30);
    let learnt = &state.groups["gw1"];
    let before = learnt.slots[0].mean;
    assert!((before - 30.0).abs() < 1.0, "{before}");
    // A day of silence, seen by the sweep only: the usual falls.
    let later = auth(0, 2 * 86_400, "x", "192.0.2.1", Outcome::Failure).timestamp;
    baseline.sweep(&mut state, later);
    let after = state.groups["gw1"].slots[0].mean;
    assert!(after < 1.0, "{after}");
    // Four weeks of silence: forgotten.
    let much_later = auth(0, 40 * 86_400, "x", "192.0.2.1", Outcome::Failure).timestamp;
    baseline.sweep(&mut state, much_later);
    assert!(state.groups.is_empty());
}

#[test]
fn bad_baselines_are_refused_with_the_reason() {
    for (extra, expected) in [
        ("bucket = \"1s\"", "10s to 1d"),
        ("bucket = \"2h\"", "at most 1h"),
        ("seasonality = \"monthly\"", "not hour_of_week"),
        ("alpha = 0.0", "alpha"),
        ("alpha = 1.5", "alpha"),
        ("sigmas = 0.1", "sigmas"),
        ("min_count = 0", "min_count"),
        ("warmup = \"forever\"", "warmup"),
    ] {
        let text = format!("id = \"b\"\nname = \"B\"\nkind = \"baseline\"\n{extra}\n");
        let config: RuleConfig = toml::from_str(&text).unwrap();
        let error = Rule::compile(&config).unwrap_err().to_string();
        assert!(error.contains(expected), "{extra}: {error}");
        assert!(error.contains("rule `b`"), "{error}");
    }
}
