//! The engine over hand-made events: thresholds, dedup, late events, sequences (done and
//! absent), auto-resolve, operators' changes, and a restart.

use std::net::IpAddr;

use model::{
    Auth, AuthFailure, AuthMethod, Endpoint, Event, EventBody, EventId, FailureCode, Identities,
    Observer, Outcome, Peer, SaChange,
};

use super::*;
use crate::{Config, load_rules};

pub(crate) fn auth(seq: u64, second: i64, user: &str, source: &str, outcome: Outcome) -> Event {
    let failure = (outcome == Outcome::Failure).then(|| AuthFailure {
        code: FailureCode::PskMismatch,
        reason: "MAC mismatched".to_owned(),
    });
    Event {
        id: EventId::new("gw1/charon", seq, 0),
        timestamp: Timestamp::from_second(1_795_000_000 + second).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("gw1".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: format!("line {seq}"),
        session_id: None,
        source_geo: None,
        body: EventBody::Auth(Auth {
            peer: Peer {
                connection: Some("rw".to_owned()),
                ike_sa_id: Some(seq),
                client: Endpoint::new(source.parse::<IpAddr>().unwrap(), Some(4500)),
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

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_795_000_000 + second).unwrap()
}

fn shipped() -> Engine {
    let rules = load_rules(&Config::default())
        .unwrap()
        .into_iter()
        .map(|(rule, _)| rule)
        .collect();
    Engine::new(rules, Limits::default())
}

fn fired(rows: &[AlertRecord]) -> Vec<&str> {
    rows.iter()
        .filter(|row| row.action == action::FIRED)
        .map(|row| row.rule_id.as_str())
        .collect()
}

#[test]
fn ten_failures_of_one_user_in_a_minute_fire_once() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=9 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64 * 5,
            "alice",
            "192.0.2.1",
            Outcome::Failure,
        )));
    }
    assert!(fired(&rows).is_empty(), "{rows:?}");
    rows.extend(engine.observe(&auth(10, 50, "alice", "192.0.2.1", Outcome::Failure)));
    assert_eq!(fired(&rows), ["auth-failure-spike-user"]);
    let alert = rows.iter().find(|row| row.action == action::FIRED).unwrap();
    assert_eq!(alert.count, 10);
    assert_eq!(alert.user.as_deref(), Some("alice"));
    assert_eq!(alert.evidence.len(), 10);
    assert_eq!(alert.first, at(5));
    assert_eq!(alert.mitre, ["T1110", "T1110.001"]);
    assert_eq!(alert.labels["user.name"], "alice");
    // More failures: the same alert grows, nothing fires again.
    let mut more = Vec::new();
    for seq in 11..=30 {
        more.extend(engine.observe(&auth(
            seq,
            50 + seq as i64,
            "alice",
            "192.0.2.1",
            Outcome::Failure,
        )));
    }
    let mine: Vec<_> = more
        .iter()
        .filter(|row| row.rule_id == "auth-failure-spike-user")
        .collect();
    assert!(
        mine.iter()
            .all(|row| row.alert_id == alert.alert_id && row.action == action::UPDATED)
    );
    assert!(!mine.is_empty());
    let open: Vec<_> = engine
        .open_alerts()
        .filter(|row| row.rule_id == "auth-failure-spike-user")
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].count, 30);
}

#[test]
fn failures_spread_wider_than_the_window_do_not_fire() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=30 {
        // One failure every 7 s: at most 9 in any minute.
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64 * 7,
            "bob",
            "192.0.2.2",
            Outcome::Failure,
        )));
    }
    assert!(
        !fired(&rows).contains(&"auth-failure-spike-user"),
        "{rows:?}"
    );
}

#[test]
fn a_late_event_counts_in_the_window_it_belongs_to() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    // Nine failures within a minute arrive, then much later events of the same user…
    for seq in 1..=9 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64,
            "carol",
            "192.0.2.3",
            Outcome::Failure,
        )));
    }
    rows.extend(engine.observe(&auth(20, 200, "carol", "192.0.2.3", Outcome::Failure)));
    assert!(fired(&rows).is_empty(), "{rows:?}");
    // …and the tenth, late (its time is inside the first minute).
    rows.extend(engine.observe(&auth(10, 30, "carol", "192.0.2.3", Outcome::Failure)));
    assert_eq!(fired(&rows), ["auth-failure-spike-user"]);
}

#[test]
fn failures_then_a_success_fire_the_brute_force_sequence() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=5 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64 * 20,
            "dave",
            "192.0.2.4",
            Outcome::Failure,
        )));
    }
    assert!(fired(&rows).is_empty());
    rows.extend(engine.observe(&auth(6, 200, "dave", "192.0.2.4", Outcome::Success)));
    assert_eq!(fired(&rows), ["brute-force-then-success"]);
    let alert = rows.iter().find(|row| row.action == action::FIRED).unwrap();
    assert_eq!(alert.count, 6);
    assert_eq!(alert.severity, model::Severity::Critical);
    // A success of another user, or after the span, does not.
    let mut other = shipped();
    let mut rows = Vec::new();
    for seq in 1..=5 {
        rows.extend(other.observe(&auth(
            seq,
            seq as i64,
            "erin",
            "192.0.2.5",
            Outcome::Failure,
        )));
    }
    rows.extend(other.observe(&auth(6, 10, "frank", "192.0.2.5", Outcome::Success)));
    rows.extend(other.observe(&auth(7, 11 + 601, "erin", "192.0.2.5", Outcome::Success)));
    assert!(
        !fired(&rows).contains(&"brute-force-then-success"),
        "{rows:?}"
    );
}

#[test]
fn spraying_counts_distinct_users_from_one_address() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    // The same user many times: not spraying.
    for seq in 1..=8 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64 * 30,
            "gina",
            "198.51.100.9",
            Outcome::Failure,
        )));
    }
    assert!(!fired(&rows).contains(&"password-spraying"));
    for (n, user) in ["u1", "u2", "u3", "u4"].iter().enumerate() {
        rows.extend(engine.observe(&auth(
            100 + n as u64,
            300 + n as i64,
            user,
            "198.51.100.9",
            Outcome::Failure,
        )));
    }
    assert_eq!(
        fired(&rows)
            .iter()
            .filter(|id| **id == "password-spraying")
            .count(),
        1,
        "{rows:?}"
    );
}

#[test]
fn a_login_without_a_session_fires_once_its_span_has_passed() {
    let mut engine = shipped();
    let rows = engine.observe(&auth(1, 0, "hank", "192.0.2.8", Outcome::Success));
    assert!(fired(&rows).is_empty());
    assert!(fired(&engine.tick(at(100))).is_empty());
    let rows = engine.tick(at(121));
    assert_eq!(fired(&rows), ["login-without-session"]);
    assert_eq!(rows[0].user.as_deref(), Some("hank"));
}

#[test]
fn an_idle_alert_resolves_by_itself_and_a_new_burst_is_a_new_alert() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=10 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64,
            "ivan",
            "192.0.2.9",
            Outcome::Failure,
        )));
    }
    let first = rows
        .iter()
        .find(|row| row.action == action::FIRED)
        .unwrap()
        .clone();
    // resolve_after is 10 minutes for this rule.
    assert!(
        engine
            .tick(at(10 + 599))
            .iter()
            .all(|row| row.action != action::AUTO_RESOLVED)
    );
    let resolved = engine.tick(at(10 + 601));
    let row = resolved
        .iter()
        .find(|row| row.action == action::AUTO_RESOLVED)
        .expect("auto-resolved");
    assert_eq!(row.alert_id, first.alert_id);
    assert_eq!(row.status, AlertStatus::Resolved);
    assert_eq!(engine.open_alerts().count(), 0);
    let mut again = Vec::new();
    for seq in 11..=20 {
        again.extend(engine.observe(&auth(
            seq,
            2000 + seq as i64,
            "ivan",
            "192.0.2.9",
            Outcome::Failure,
        )));
    }
    let second = again
        .iter()
        .find(|row| row.action == action::FIRED)
        .unwrap();
    assert_ne!(second.alert_id, first.alert_id);
    assert_eq!(second.fingerprint, first.fingerprint);
}

#[test]
fn operators_changes_are_planned_then_applied() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=10 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64,
            "judy",
            "192.0.2.10",
            Outcome::Failure,
        )));
    }
    let alert = rows
        .iter()
        .find(|row| row.action == action::FIRED)
        .unwrap()
        .clone();
    let ack = engine
        .plan_change(
            &alert.alert_id,
            &Change::Acknowledge,
            "oncall",
            Some("on it".to_owned()),
            at(20),
        )
        .unwrap();
    assert_eq!(ack.revision, 2);
    assert_eq!(ack.status, AlertStatus::Acknowledged);
    assert_eq!(ack.actor, "oncall");
    assert_eq!(ack.reason.as_deref(), Some("on it"));
    // Planned, not applied: still firing.
    assert_eq!(
        engine.open_alerts().next().unwrap().status,
        AlertStatus::Firing
    );
    engine.apply(&ack);
    assert_eq!(
        engine.plan_change(
            &alert.alert_id,
            &Change::Acknowledge,
            "oncall",
            None,
            at(21)
        ),
        Err(ChangeError::AlreadyAcknowledged(alert.alert_id.clone()))
    );
    let assign = engine
        .plan_change(
            &alert.alert_id,
            &Change::Assign("alice".to_owned()),
            "oncall",
            None,
            at(22),
        )
        .unwrap();
    engine.apply(&assign);
    assert_eq!(assign.assignee.as_deref(), Some("alice"));
    assert_eq!(assign.status, AlertStatus::Acknowledged);
    let resolve = engine
        .plan_change(&alert.alert_id, &Change::Resolve, "oncall", None, at(23))
        .unwrap();
    engine.apply(&resolve);
    assert_eq!(resolve.revision, 4);
    assert_eq!(engine.open_alerts().count(), 0);
    assert_eq!(
        engine.plan_change(&alert.alert_id, &Change::Resolve, "oncall", None, at(24)),
        Err(ChangeError::NotOpen(alert.alert_id.clone()))
    );
    assert!(
        engine
            .plan_change("al-nope", &Change::Resolve, "x", None, at(24))
            .is_err()
    );
}

#[test]
fn after_a_restart_an_open_alert_is_not_fired_again() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=10 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64,
            "kim",
            "192.0.2.11",
            Outcome::Failure,
        )));
    }
    assert_eq!(fired(&rows).len(), 1);
    // A new process: the windows are empty, the open alert comes back from the rows.
    let mut restarted = shipped();
    restarted.restore(&rows);
    assert_eq!(restarted.open_alerts().count(), 1);
    let mut after = Vec::new();
    for seq in 11..=25 {
        after.extend(restarted.observe(&auth(
            seq,
            10 + seq as i64,
            "kim",
            "192.0.2.11",
            Outcome::Failure,
        )));
    }
    assert!(fired(&after).is_empty(), "{after:?}");
    // A resolved alert does not come back.
    let mut resolved_rows = rows.clone();
    let open = restarted.open_alerts().next().unwrap().clone();
    let resolve = restarted
        .plan_change(&open.alert_id, &Change::Resolve, "x", None, at(60))
        .unwrap();
    resolved_rows.push(resolve);
    let mut again = shipped();
    again.restore(&resolved_rows);
    assert_eq!(again.open_alerts().count(), 0);
}

#[test]
fn groups_beyond_the_limit_are_evicted_and_counted() {
    let rules = load_rules(&Config::default())
        .unwrap()
        .into_iter()
        .map(|(rule, _)| rule)
        .filter(|rule| rule.id == "auth-failure-spike-user")
        .collect();
    let mut engine = Engine::new(
        rules,
        Limits {
            max_groups_per_rule: 100,
        },
    );
    for seq in 0..1000 {
        engine.observe(&auth(
            seq,
            seq as i64 / 100,
            &format!("user{seq}"),
            "192.0.2.1",
            Outcome::Failure,
        ));
    }
    engine.tick(at(11));
    assert_eq!(engine.counters().evicted_groups, 900);
}

/// A row of a fired alert (ten failures of one user), for other modules' tests.
pub(crate) fn fired_row() -> AlertRecord {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=10 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64,
            "zoe",
            "192.0.2.20",
            Outcome::Failure,
        )));
    }
    rows.into_iter()
        .find(|row| row.action == action::FIRED)
        .unwrap()
}

#[test]
fn a_group_that_fires_again_after_a_resolve_is_a_new_alert() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=10 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64,
            "uma",
            "192.0.2.30",
            Outcome::Failure,
        )));
    }
    let first = rows
        .iter()
        .find(|row| row.action == action::FIRED)
        .unwrap()
        .clone();
    let resolve = engine
        .plan_change(&first.alert_id, &Change::Resolve, "oncall", None, at(12))
        .unwrap();
    engine.apply(&resolve);
    // The failures go on, within the same window: a new alert, with an id of its own.
    let again = engine.observe(&auth(11, 13, "uma", "192.0.2.30", Outcome::Failure));
    let second = again
        .iter()
        .find(|row| row.action == action::FIRED && row.rule_id == first.rule_id)
        .expect("fires again");
    assert_ne!(second.alert_id, first.alert_id);
    assert_ne!(second.id, first.id);
    // After a restart from these rows, the second is open and the first is not.
    let mut all = rows.clone();
    all.push(resolve);
    all.extend(again.iter().cloned());
    let mut restarted = shipped();
    restarted.restore(&all);
    let open: Vec<_> = restarted
        .open_alerts()
        .filter(|row| row.rule_id == first.rule_id)
        .map(|row| row.alert_id.clone())
        .collect();
    assert_eq!(open, std::slice::from_ref(&second.alert_id));
}

#[test]
fn a_late_event_in_the_middle_of_a_window_completes_it() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    // Four failures at 0..3 s and five at 56..60 s: nine in the minute [0, 60].
    for (seq, second) in [
        (1, 0),
        (2, 1),
        (3, 2),
        (4, 3),
        (5, 56),
        (6, 57),
        (7, 58),
        (8, 59),
        (9, 60),
    ] {
        rows.extend(engine.observe(&auth(seq, second, "vic", "192.0.2.31", Outcome::Failure)));
    }
    assert!(!fired(&rows).contains(&"auth-failure-spike-user"));
    // The tenth arrives late, dated 30 s: neither the minute ending at it nor the one
    // starting at it holds ten, the minute [0, 60] does.
    let late = engine.observe(&auth(10, 30, "vic", "192.0.2.31", Outcome::Failure));
    assert_eq!(fired(&late), ["auth-failure-spike-user"]);
    let alert = late.iter().find(|row| row.action == action::FIRED).unwrap();
    assert_eq!(alert.count, 10);
    assert_eq!(alert.first, at(0));
}

#[test]
fn growing_alerts_are_written_at_most_every_ten_seconds_of_event_time() {
    let mut engine = shipped();
    for seq in 1..=10 {
        engine.observe(&auth(
            seq,
            seq as i64,
            "walt",
            "192.0.2.32",
            Outcome::Failure,
        ));
    }
    engine.observe(&auth(11, 11, "walt", "192.0.2.32", Outcome::Failure));
    // Ticks a second apart: one update row once ten seconds have passed, not one per tick.
    let mut updates = 0;
    for second in 12..=40 {
        updates += engine
            .tick(at(second))
            .iter()
            .filter(|row| row.action == action::UPDATED && row.rule_id == "auth-failure-spike-user")
            .count();
    }
    assert_eq!(updates, 1);
}

#[test]
fn the_end_of_a_history_resolves_what_is_open_as_of_its_last_event() {
    let mut engine = shipped();
    for seq in 1..=10 {
        engine.observe(&auth(
            seq,
            seq as i64,
            "xena",
            "192.0.2.33",
            Outcome::Failure,
        ));
    }
    let rows = engine.end_of_history();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|row| row.action == action::AUTO_RESOLVED));
    let spike = rows
        .iter()
        .find(|row| row.rule_id == "auth-failure-spike-user")
        .unwrap();
    // Its last event at 10 s, resolve_after 10 minutes.
    assert_eq!(spike.timestamp, at(10 + 600));
    assert_eq!(engine.open_alerts().count(), 0);
}

/// A successful login of `user` from a located address.
fn located(seq: u64, second: i64, user: &str, ip: &str, place: (&str, &str, f64, f64)) -> Event {
    let mut event = auth(seq, second, user, ip, Outcome::Success);
    event.source_geo = Some(model::Geo {
        country_iso_code: Some(place.0.to_owned()),
        city_name: Some(place.1.to_owned()),
        lat: Some(place.2),
        lon: Some(place.3),
        as_number: Some(64_500),
        ..model::Geo::default()
    });
    event
}

const BERLIN: (&str, &str, f64, f64) = ("DE", "Berlin", 52.52, 13.40);
const POTSDAM: (&str, &str, f64, f64) = ("DE", "Potsdam", 52.39, 13.06);
const SYDNEY: (&str, &str, f64, f64) = ("AU", "Sydney", -33.87, 151.21);
const PARIS: (&str, &str, f64, f64) = ("FR", "Paris", 48.86, 2.35);

#[test]
fn berlin_then_sydney_an_hour_later_is_impossible_travel() {
    let mut engine = shipped();
    let mut rows = engine.observe(&located(1, 0, "ana", "81.2.69.142", BERLIN));
    // Near by, soon after: possible (and within the accuracy allowance).
    rows.extend(engine.observe(&located(2, 600, "ana", "81.2.69.143", POTSDAM)));
    assert!(!fired(&rows).contains(&"impossible-travel"), "{rows:?}");
    rows.extend(engine.observe(&located(3, 3600, "ana", "175.16.199.10", SYDNEY)));
    assert_eq!(
        fired(&rows)
            .iter()
            .filter(|id| **id == "impossible-travel")
            .count(),
        1,
        "{rows:?}"
    );
    let alert = rows
        .iter()
        .find(|row| row.rule_id == "impossible-travel")
        .unwrap();
    let reason = alert.reason.as_deref().unwrap();
    assert!(reason.contains("Potsdam (DE) to Sydney (AU)"), "{reason}");
    assert!(reason.contains("km/h"), "{reason}");
    assert_eq!(alert.evidence.len(), 2);
    // Another user's logins are theirs alone; a slow journey is fine.
    let mut other = shipped();
    let mut rows = other.observe(&located(1, 0, "ben", "81.2.69.142", BERLIN));
    rows.extend(other.observe(&located(2, 30 * 3600, "ben", "175.16.199.10", SYDNEY)));
    assert!(!fired(&rows).contains(&"impossible-travel"), "{rows:?}");
}

#[test]
fn a_new_country_fires_after_the_first_login_has_taught() {
    let mut engine = shipped();
    let mut rows = engine.observe(&located(1, 0, "cleo", "81.2.69.142", BERLIN));
    rows.extend(engine.observe(&located(2, 86_400, "cleo", "81.2.69.142", BERLIN)));
    assert!(!fired(&rows).contains(&"new-country"), "{rows:?}");
    rows.extend(engine.observe(&located(3, 2 * 86_400, "cleo", "89.160.20.128", PARIS)));
    let alert = rows
        .iter()
        .find(|row| row.rule_id == "new-country")
        .expect("fired");
    assert!(
        alert
            .reason
            .as_deref()
            .unwrap()
            .contains("first login from FR"),
        "{alert:?}"
    );
    // Seen now: no second alert for France.
    let later = engine.observe(&located(4, 10 * 86_400, "cleo", "89.160.20.128", PARIS));
    assert!(!fired(&later).contains(&"new-country"));
}

#[test]
fn own_egress_ranges_and_denied_countries() {
    let rule = |extra: &str| {
        let text = format!(
            "id = \"g\"\nname = \"G\"\nkind = \"geo\"\ngroup_by = [\"user.name\"]\n{extra}\n"
        );
        crate::rule::Rule::compile(&toml::from_str(&text).unwrap())
    };
    let travel = rule("check = \"impossible_travel\"\nallow_cidrs = [\"175.16.0.0/16\"]").unwrap();
    let mut engine = Engine::new(vec![travel], Limits::default());
    engine.observe(&located(1, 0, "dan", "81.2.69.142", BERLIN));
    let rows = engine.observe(&located(2, 60, "dan", "175.16.199.10", SYDNEY));
    assert!(
        rows.is_empty(),
        "an own egress range is not judged: {rows:?}"
    );
    let denied = rule("check = \"denied_country\"\ndenied_countries = [\"AU\"]").unwrap();
    let mut engine = Engine::new(vec![denied], Limits::default());
    assert!(
        engine
            .observe(&located(1, 0, "eve", "81.2.69.142", BERLIN))
            .is_empty()
    );
    let rows = engine.observe(&located(2, 60, "eve", "175.16.199.10", SYDNEY));
    assert_eq!(fired(&rows), ["g"]);
    for (extra, expected) in [
        ("check = \"teleport\"", "is not impossible_travel"),
        ("check = \"denied_country\"", "needs denied_countries"),
        (
            "check = \"denied_country\"\ndenied_countries = [\"germany\"]",
            "ISO 3166",
        ),
        (
            "check = \"impossible_travel\"\nmax_speed_kmh = 0.0",
            "max_speed_kmh",
        ),
        (
            "check = \"impossible_travel\"\nallow_cidrs = [\"10.0.0.0/99\"]",
            "allow_cidrs",
        ),
    ] {
        let error = rule(extra).unwrap_err().to_string();
        assert!(error.contains(expected), "{extra}: {error}");
    }
}

#[test]
fn distances_are_great_circles() {
    let km = crate::rule::geo::distance_km(BERLIN.2, BERLIN.3, SYDNEY.2, SYDNEY.3);
    assert!((16_000.0..16_200.0).contains(&km), "{km}");
    assert!(crate::rule::geo::distance_km(1.0, 2.0, 1.0, 2.0).abs() < 1e-9);
}

fn ike(seq: u64, second: i64, user: &str, gateway: &str, change: SaChange) -> Event {
    let mut event = auth(seq, second, user, "192.0.2.1", Outcome::Success);
    let EventBody::Auth(auth) = event.body else {
        unreachable!()
    };
    event.observer.hostname = Some(gateway.to_owned());
    event.body = EventBody::IkeSa(model::IkeSaEvent {
        peer: auth.peer,
        change,
        new_ike_sa_id: None,
        cause: None,
        proposal: None,
    });
    event
}

fn with_proposal(mut event: Event, proposal: &str) -> Event {
    if let EventBody::IkeSa(ike) = &mut event.body {
        ike.proposal = Some(proposal.to_owned());
    }
    event
}

#[test]
fn a_weak_proposal_fires_and_a_strong_one_does_not() {
    let mut engine = shipped();
    let strong = with_proposal(
        ike(1, 0, "alice", "gw1", SaChange::Established),
        "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519",
    );
    assert!(fired(&engine.observe(&strong)).is_empty());
    let weak = with_proposal(
        ike(2, 10, "bob", "gw1", SaChange::Established),
        "IKE:3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024",
    );
    let rows = engine.observe(&weak);
    assert_eq!(fired(&rows), ["weak-crypto"]);
    let reason = rows[0].reason.as_deref().unwrap_or_default();
    for algorithm in ["3DES_CBC", "HMAC_SHA1_96", "PRF_HMAC_SHA1", "MODP_1024"] {
        assert!(reason.contains(algorithm), "{reason}");
    }
    assert!(!reason.contains("AES"), "{reason}");
    // The same user again: the open alert grows, nothing fires.
    let again = with_proposal(
        ike(3, 20, "bob", "gw1", SaChange::Established),
        "IKE:3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/MODP_1024",
    );
    assert!(fired(&engine.observe(&again)).is_empty());
}

#[test]
fn weak_algorithms_are_data_the_rule_may_replace() {
    let weak = |list: &[&str]| {
        list.iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>()
    };
    let found = state::weak_in(
        "ESP:AES_CBC_128/HMAC_SHA1_96/MODP_2048/NO_EXT_SEQ",
        &weak(&["HMAC_SHA1*"]),
    );
    assert_eq!(found, ["HMAC_SHA1_96"]);
    assert!(
        state::weak_in(
            "ESP:AES_GCM_16_128/NO_EXT_SEQ",
            &weak(state::DEFAULT_WEAK_ALGORITHMS)
        )
        .is_empty()
    );
    assert_eq!(
        state::weak_in(
            "IKE:AES_CBC_256/HMAC_MD5_96/PRF_HMAC_MD5/MODP_1536",
            &weak(state::DEFAULT_WEAK_ALGORITHMS)
        ),
        ["HMAC_MD5_96", "PRF_HMAC_MD5", "MODP_1536"]
    );
}

#[test]
fn more_sessions_at_once_than_the_limit_fire_and_ended_ones_do_not_count() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    // Three sessions of carol on two gateways: at the limit.
    rows.extend(engine.observe(&ike(1, 0, "carol", "gw1", SaChange::Established)));
    rows.extend(engine.observe(&ike(2, 5, "carol", "gw2", SaChange::Established)));
    rows.extend(engine.observe(&ike(3, 10, "carol", "gw1", SaChange::Established)));
    assert!(fired(&rows).is_empty());
    // One ends, one is rekeyed into another id: still three up with a new one.
    rows.extend(engine.observe(&ike(1, 20, "carol", "gw1", SaChange::Deleted)));
    let mut rekey = ike(2, 25, "carol", "gw2", SaChange::Rekeyed);
    if let EventBody::IkeSa(ike) = &mut rekey.body {
        ike.new_ike_sa_id = Some(20);
    }
    rows.extend(engine.observe(&rekey));
    rows.extend(engine.observe(&ike(4, 30, "carol", "gw2", SaChange::Established)));
    assert!(fired(&rows).is_empty(), "{rows:?}");
    // The rekeyed SA is deleted under its new id: two up; then two more make four.
    let mut gone = ike(20, 40, "carol", "gw2", SaChange::Deleted);
    if let EventBody::IkeSa(ike) = &mut gone.body {
        ike.peer.ike_sa_id = Some(20);
    }
    rows.extend(engine.observe(&gone));
    rows.extend(engine.observe(&ike(5, 50, "carol", "gw1", SaChange::Established)));
    assert!(fired(&rows).is_empty(), "{rows:?}");
    let more = engine.observe(&ike(6, 55, "carol", "gw3", SaChange::Established));
    assert_eq!(fired(&more), ["concurrent-sessions"]);
    let reason = more[0].reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("4 sessions at once (at most 3)"),
        "{reason}"
    );
    assert!(reason.contains("gw3 ×1"), "{reason}");
    assert_eq!(more[0].evidence.len(), 4);
}

#[test]
fn sessions_whose_end_was_never_seen_stop_counting_after_max_session_age() {
    let mut engine = shipped();
    for seq in 1..=3 {
        engine.observe(&ike(seq, seq as i64, "dave", "gw1", SaChange::Established));
    }
    engine.tick(at(2 * 86_400));
    let rows = engine.observe(&ike(
        9,
        2 * 86_400 + 5,
        "dave",
        "gw1",
        SaChange::Established,
    ));
    assert!(fired(&rows).is_empty(), "{rows:?}");
}

#[test]
fn unacknowledged_alerts_escalate_step_by_step_and_acknowledged_ones_do_not() {
    let mut engine = shipped();
    let mut rows = Vec::new();
    for seq in 1..=10 {
        rows.extend(engine.observe(&auth(
            seq,
            seq as i64,
            "erin",
            "192.0.2.9",
            Outcome::Failure,
        )));
        rows.extend(engine.observe(&auth(
            100 + seq,
            seq as i64,
            "frank",
            "192.0.2.8",
            Outcome::Failure,
        )));
    }
    let fired: Vec<AlertRecord> = rows
        .iter()
        .filter(|row| row.action == action::FIRED)
        .cloned()
        .collect();
    assert_eq!(fired.len(), 2);
    let (erin, frank) = (&fired[0], &fired[1]);
    // frank's is acknowledged in time.
    let ack = engine
        .plan_change(&frank.alert_id, &Change::Acknowledge, "ann", None, at(60))
        .unwrap();
    engine.apply(&ack);
    let steps = [Duration::from_secs(300), Duration::from_secs(900)];
    assert!(engine.escalate(&steps, at(200)).is_empty());
    let first = engine.escalate(&steps, at(320));
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].alert_id, erin.alert_id);
    assert_eq!(first[0].action, action::ESCALATED);
    assert_eq!(first[0].status, AlertStatus::Firing);
    assert_eq!(escalation_step(&first[0]), Some(0));
    // Each step once.
    assert!(engine.escalate(&steps, at(400)).is_empty());
    let second = engine.escalate(&steps, at(920));
    assert_eq!(escalation_step(&second[0]), Some(1));
    assert!(engine.escalate(&steps, at(5000)).is_empty());
    // After a restart, what escalated already does not again.
    let mut all = rows.clone();
    all.push(ack);
    all.extend(first);
    all.extend(second);
    let mut restarted = shipped();
    restarted.restore(&all);
    assert!(restarted.escalate(&steps, at(6000)).is_empty());
    let mut without_second = all.clone();
    without_second.pop();
    let mut restarted = shipped();
    restarted.restore(&without_second);
    let again = restarted.escalate(&steps, at(6000));
    assert_eq!(again.len(), 1);
    assert_eq!(escalation_step(&again[0]), Some(1));
}

#[test]
fn what_baselines_learnt_survives_a_restart_of_the_same_shape_only() {
    let mut engine = shipped();
    for seq in 1..=50 {
        engine.observe(&auth(
            seq,
            seq as i64 * 60,
            "gina",
            "192.0.2.7",
            Outcome::Failure,
        ));
    }
    engine.tick(at(4000));
    let snapshots: Vec<Snapshot> = engine
        .learnt()
        .into_iter()
        .filter(|snapshot| snapshot.rule == "auth-failure-baseline-gateway")
        .collect();
    assert_eq!(snapshots.len(), 1);
    let Learnt::Baseline(groups) = &snapshots[0].learnt else {
        panic!("not a baseline: {:?}", snapshots[0]);
    };
    assert!(groups.contains_key("gw1"), "{:?}", groups.keys());
    let json = serde_json::to_string(&snapshots).unwrap();
    let mut restarted = shipped();
    let back: Vec<Snapshot> = serde_json::from_str(&json).unwrap();
    assert_eq!(restarted.restore_learnt(back.clone()), 1);
    let again: Vec<Snapshot> = restarted
        .learnt()
        .into_iter()
        .filter(|snapshot| snapshot.rule == "auth-failure-baseline-gateway")
        .collect();
    assert_eq!(again, snapshots);
    // Another bucket size is another thing learnt: not taken back.
    let mut other = back;
    other[0].shape = other[0].shape.replace("bucket=300s", "bucket=60s");
    assert_eq!(shipped().restore_learnt(other), 0);
}

fn new_terms_engine(extra: &str) -> Engine {
    let text = format!(
        "id = \"new-source\"\nname = \"New address\"\nkind = \"new_terms\"\ngroup_by = [\"user.name\"]\nfields = [\"source.ip\"]\nfilter = {{ \"event.action\" = \"auth-success\" }}\n{extra}"
    );
    let config: crate::RuleConfig = toml::from_str(&text).unwrap();
    Engine::new(vec![Rule::compile(&config).unwrap()], Limits::default())
}

#[test]
fn a_term_new_to_its_group_fires_after_the_group_was_learnt() {
    let mut engine = new_terms_engine("history = \"30d\"\nlearn = \"1d\"\n");
    let day = 86_400;
    let mut rows = Vec::new();
    // The first day teaches: two addresses, nothing fires.
    rows.extend(engine.observe(&auth(1, 10, "alice", "192.0.2.1", Outcome::Success)));
    rows.extend(engine.observe(&auth(2, 20, "alice", "192.0.2.2", Outcome::Success)));
    assert!(fired(&rows).is_empty(), "{rows:?}");
    // Later: a known address is nothing; a new one fires, naming it; bob's first is learning.
    assert!(
        fired(&engine.observe(&auth(3, 2 * day, "alice", "192.0.2.1", Outcome::Success)))
            .is_empty()
    );
    let new = engine.observe(&auth(
        4,
        2 * day + 5,
        "alice",
        "192.0.2.3",
        Outcome::Success,
    ));
    assert_eq!(fired(&new), ["new-source"]);
    assert!(
        new[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("source.ip = 192.0.2.3"),
        "{new:?}"
    );
    assert!(
        fired(&engine.observe(&auth(5, 2 * day, "bob", "192.0.2.3", Outcome::Success))).is_empty()
    );
    // Failures are not the filter's: nothing.
    assert!(
        fired(&engine.observe(&auth(6, 2 * day, "alice", "192.0.2.9", Outcome::Failure)))
            .is_empty()
    );
    // Past its history, a term is new again (the alert from before resolved meanwhile).
    engine.tick(at(20 * day));
    let again = engine.observe(&auth(7, 40 * day, "alice", "192.0.2.2", Outcome::Success));
    assert_eq!(fired(&again), ["new-source"], "{again:?}");
}

#[test]
fn what_new_terms_and_geo_learnt_is_kept_across_a_restart() {
    let mut engine = new_terms_engine("learn = \"1h\"\n");
    engine.observe(&auth(1, 0, "alice", "192.0.2.1", Outcome::Success));
    let json = serde_json::to_string(&engine.learnt()).unwrap();
    let mut restarted = new_terms_engine("learn = \"1h\"\n");
    assert_eq!(
        restarted.restore_learnt(serde_json::from_str(&json).unwrap()),
        1
    );
    // The address is known after the restart; another is new.
    assert!(
        fired(&restarted.observe(&auth(2, 7200, "alice", "192.0.2.1", Outcome::Success)))
            .is_empty()
    );
    assert_eq!(
        fired(&restarted.observe(&auth(3, 7300, "alice", "192.0.2.5", Outcome::Success))),
        ["new-source"]
    );
    // Geo history too: the shipped new-country rule remembers where a user was.
    let mut geo = shipped();
    geo.observe(&located(
        1,
        0,
        "zoe",
        "81.2.69.142",
        ("GB", "London", 51.5, -0.1),
    ));
    let json = serde_json::to_string(&geo.learnt()).unwrap();
    let mut restarted = shipped();
    assert!(restarted.restore_learnt(serde_json::from_str(&json).unwrap()) >= 2);
    let rows = restarted.observe(&located(
        2,
        30 * 86_400,
        "zoe",
        "175.16.199.1",
        ("CN", "Changchun", 43.9, 125.3),
    ));
    assert!(fired(&rows).contains(&"new-country"), "{rows:?}");
}

#[test]
fn bad_new_terms_rules_are_refused() {
    for (extra, expected) in [
        ("fields = []", "1 to 4 fields"),
        ("fields = [\"no.such\"]", "fields"),
        ("fields = [\"source.ip\"]\nhistory = \"1y\"", "history"),
        ("fields = [\"source.ip\"]\nlearn = \"x\"", "learn"),
    ] {
        let text = format!("id = \"n\"\nname = \"N\"\nkind = \"new_terms\"\n{extra}\n");
        let config: crate::RuleConfig = toml::from_str(&text).unwrap();
        let error = Rule::compile(&config).unwrap_err().to_string();
        assert!(error.contains(expected), "{extra}: {error}");
    }
}

#[test]
fn a_window_half_full_at_a_restart_fills_after_it() {
    let mut engine = shipped();
    for seq in 1..=6 {
        assert!(
            fired(&engine.observe(&auth(
                seq,
                seq as i64,
                "hank",
                "192.0.2.4",
                Outcome::Failure
            )))
            .is_empty()
        );
    }
    let json = serde_json::to_string(&engine.learnt()).unwrap();
    let mut restarted = shipped();
    assert!(restarted.restore_learnt(serde_json::from_str(&json).unwrap()) >= 3);
    let mut rows = Vec::new();
    for seq in 7..=10 {
        rows.extend(restarted.observe(&auth(
            seq,
            seq as i64,
            "hank",
            "192.0.2.4",
            Outcome::Failure,
        )));
    }
    assert_eq!(fired(&rows), ["auth-failure-spike-user"]);
    assert_eq!(rows[0].count, 10);
    // The brute force's first step was half done too: the success completes it.
    let success = restarted.observe(&auth(11, 12, "hank", "192.0.2.4", Outcome::Success));
    assert!(
        fired(&success).contains(&"brute-force-then-success"),
        "{success:?}"
    );
}

#[test]
fn certificates_alert_within_their_days_and_once_expired() {
    let mut engine = shipped();
    let certificate = |seq: u64, serial: &str, not_after: i64| {
        let mut event = auth(seq, 0, "x", "192.0.2.1", Outcome::Success);
        event.body = EventBody::Certificate(model::CertificateEvent {
            peer: Peer {
                identities: Identities {
                    cert_subject: Some(format!("CN={serial}")),
                    cert_serial: Some(serial.to_owned()),
                    ..Identities::default()
                },
                ..Peer::default()
            },
            issuer: None,
            not_before: at(-86_400),
            not_after: at(not_after),
            location: Some("/etc/swanctl/x509/c.pem".to_owned()),
        });
        event
    };
    let day = 86_400;
    assert!(fired(&engine.observe(&certificate(1, "aa", 60 * day))).is_empty());
    let soon = engine.observe(&certificate(2, "bb", 10 * day + 60));
    assert_eq!(fired(&soon), ["cert-expiry"]);
    assert!(
        soon[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("CN=bb expires in 10 days"),
        "{soon:?}"
    );
    let gone = engine.observe(&certificate(3, "cc", -3 * day));
    assert!(
        gone[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("expired 3 days ago"),
        "{gone:?}"
    );
    // The next scan of the same certificate grows its alert.
    assert!(fired(&engine.observe(&certificate(4, "bb", 10 * day + 60))).is_empty());
}
