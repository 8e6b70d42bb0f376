//! The tracker against real VICI captures (`gateway/testdata/vici`, see its README): each
//! capture's events are replayed through a fresh tracker and the produced events compared
//! with the golden `.expected` file beside it (`UPDATE_EXPECT=1` rewrites them). A second
//! test replays all captures through ONE tracker, as an agent that reconnects before every
//! capture would see them, and counts the result exactly.

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use model::{EventBody, Outcome, SaChange};

use super::*;
use crate::vici::client::ViciEvent;
use crate::vici::wire::Message;

const CAPTURES: [&str; 16] = [
    "psk-ok",
    "psk-wrong",
    "cert-ok",
    "eap-mschapv2-ok",
    "eap-mschapv2-wrong",
    "radius-ok",
    "radius-wrong",
    "gateway-terminate",
    "dpd-lost",
    "rekey",
    "rekey-by-client",
    "reconnect-snapshot",
    "restart-before",
    "restart-after",
    "ikev1-quick-mode-failed",
    "gateway-terminate-by-conn",
];

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/vici")
}

/// A capture: the `list-sa` snapshot it opened with, then its events.
fn load(name: &str) -> (Vec<Message>, Vec<ViciEvent>) {
    let text = std::fs::read_to_string(testdata().join(format!("{name}.jsonl"))).unwrap();
    let mut snapshot = Vec::new();
    let mut events = Vec::new();
    for line in text.lines() {
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = json["event"].as_str().unwrap().to_owned();
        let message = Message::from_json(&json["message"]).unwrap();
        if name == "list-sa" {
            snapshot.push(message);
        } else {
            events.push(ViciEvent { name, message });
        }
    }
    (snapshot, events)
}

fn t0() -> Timestamp {
    "2026-11-25T10:00:00Z".parse().unwrap()
}

/// Replays one capture; events are 10 ms apart, the tracker ticks after each, and after
/// the last one time moves on by 5 s (or the socket closes, for `restart-before`).
fn replay(tracker: &mut Tracker, name: &str, start: Timestamp) -> Vec<Produced> {
    let (snapshot, events) = load(name);
    let mut out = Vec::new();
    tracker.reconcile(Some("charon-1".to_owned()), &snapshot, start, &mut out);
    let mut now = start;
    for event in events {
        now += SignedDuration::from_millis(10);
        tracker.on_event(event, now, &mut out);
    }
    if name == "restart-before" {
        tracker.on_disconnect(&mut out);
    } else {
        tracker.tick(now + SignedDuration::from_secs(5), &mut out);
    }
    out
}

fn render(produced: &[Produced]) -> String {
    let mut text = String::new();
    for event in produced {
        let json = serde_json::json!({ "timestamp": event.timestamp, "body": event.body });
        text.push_str(&json.to_string());
        text.push('\n');
    }
    text
}

#[test]
fn captures_match_their_golden_events() {
    for name in CAPTURES {
        let mut tracker = Tracker::default();
        let produced = replay(&mut tracker, name, t0());
        let expected = testdata().join(format!("{name}.expected"));
        expect_test::expect_file![expected].assert_eq(&render(&produced));
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    logins: usize,
    failures: usize,
    established: usize,
    rekeyed: usize,
    deleted: usize,
    lost: usize,
}

fn count(produced: &[Produced]) -> Counts {
    let mut counts = Counts::default();
    for event in produced {
        match &event.body {
            EventBody::Auth(auth) if auth.outcome == Outcome::Success => counts.logins += 1,
            EventBody::Auth(_) => counts.failures += 1,
            EventBody::IkeSa(ike) => match ike.change {
                SaChange::Established => counts.established += 1,
                SaChange::Rekeyed => counts.rekeyed += 1,
                SaChange::Deleted => counts.deleted += 1,
                SaChange::Lost => counts.lost += 1,
                SaChange::Connecting => {}
            },
            _ => {}
        }
    }
    counts
}

#[test]
fn one_agent_across_all_captures_reports_each_login_once() {
    let mut tracker = Tracker::default();
    let mut all = Vec::new();
    let mut start = t0();
    let mut charon = "charon-1";
    for name in CAPTURES {
        // The captures from restart-after on come from the restarted daemon.
        if name == "restart-after" {
            charon = "charon-2";
        }
        let (snapshot, events) = load(name);
        let mut out = Vec::new();
        tracker.reconcile(Some(charon.to_owned()), &snapshot, start, &mut out);
        let mut now = start;
        for event in events {
            now += SignedDuration::from_millis(10);
            tracker.on_event(event, now, &mut out);
        }
        if name == "restart-before" {
            tracker.on_disconnect(&mut out);
        }
        now += SignedDuration::from_secs(5);
        tracker.tick(now, &mut out);
        all.extend(out);
        start = now + SignedDuration::from_secs(60);
        // The agent persists its state and starts again from it.
        let state = serde_json::to_string(tracker.state()).unwrap();
        tracker = Tracker::new(serde_json::from_str(&state).unwrap());
    }
    // Logins: 8 seen live (psk, cert, eap, radius, terminate, dpd, rekey, rekey-by-client),
    // 2 found by reconcile (reconnect-snapshot opens with two users who connected while no
    // agent listened; restart-before's snapshot holds one of them again and adds nothing),
    // 1 after charon restarted, the IKEv1 IKE_SA whose quick mode failed (counted as a
    // login for now), and client2 in gateway-terminate-by-conn's snapshot. Deleted: 7 live
    // deletes (two after rekeys), client1 leaving in reconnect-snapshot, bob's SA when
    // charon went away, the IKEv1 IKE_SA, and the two SAs of the terminated connection.
    // Lost: the dead peer.
    assert_eq!(
        count(&all),
        Counts {
            logins: 13,
            failures: 3,
            established: 13,
            rekeyed: 2,
            deleted: 12,
            lost: 1,
        },
        "{}",
        render(&all)
    );
    // Nothing is left open: the terminated connection held the last two.
    assert!(tracker.state().sas.is_empty());
}

/// Random messages built from the keys charon uses: the tracker never panics, and what it
/// holds stays bounded by what it was told.
mod hostile {
    use proptest::prelude::*;

    use super::*;
    use crate::vici::wire::Value;

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"1".to_vec()),
            Just(b"2".to_vec()),
            Just(b"yes".to_vec()),
            Just(b"ESTABLISHED".to_vec()),
            Just(b"CONNECTING".to_vec()),
            Just(b"DELETING".to_vec()),
            Just(b"192.0.2.11".to_vec()),
            Just(b"18446744073709551616".to_vec()),
            Just(b"\x1b[31m\r\n\xff".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("uniqueid"),
            Just("state"),
            Just("up"),
            Just("remote-host"),
            Just("remote-port"),
            Just("remote-id"),
            Just("remote-vips"),
            Just("established"),
            Just("msg"),
            Just("ikesa-uniqueid"),
            Just("child-sas"),
            Just("old"),
            Just("new"),
            Just("rw-psk"),
        ]
        .prop_map(str::to_owned)
    }

    fn message() -> impl Strategy<Value = Message> {
        let leaf = proptest::collection::vec(
            (
                key(),
                prop_oneof![
                    value().prop_map(Value::Str),
                    proptest::collection::vec(value(), 0..3).prop_map(Value::List),
                ],
            ),
            0..6,
        )
        .prop_map(|entries| Message { entries });
        leaf.prop_recursive(3, 32, 6, |inner| {
            proptest::collection::vec((key(), inner.prop_map(Value::Section)), 0..4)
                .prop_map(|entries| Message { entries })
        })
    }

    fn event_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("ike-updown"),
            Just("child-updown"),
            Just("ike-rekey"),
            Just("child-rekey"),
            Just("ike-update"),
            Just("log"),
            Just("unknown-event"),
        ]
        .prop_map(str::to_owned)
    }

    proptest! {
        #[test]
        fn arbitrary_events_never_panic(
            events in proptest::collection::vec((event_name(), message()), 0..40),
            snapshot in proptest::collection::vec(message(), 0..4),
        ) {
            let mut tracker = Tracker::default();
            let mut out = Vec::new();
            tracker.reconcile(Some("a".to_owned()), &snapshot, t0(), &mut out);
            let mut now = t0();
            for (name, message) in events {
                now += SignedDuration::from_millis(300);
                tracker.on_event(ViciEvent { name, message }, now, &mut out);
            }
            tracker.on_disconnect(&mut out);
            tracker.reconcile(Some("b".to_owned()), &[], now, &mut out);
            // After a charon restart with nothing listed, nothing is believed open.
            prop_assert!(tracker.state().sas.is_empty());
        }
    }
}
