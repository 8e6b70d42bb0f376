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
use crate::vici::wire::{Message, Value};

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
    // 1 after charon restarted, and client2 in gateway-terminate-by-conn's snapshot.
    // Failures: a wrong PSK, EAP and RADIUS password, and the IKEv1 IKE_SA whose quick mode
    // failed. Deleted: 7 live deletes (two after rekeys), client1 leaving in
    // reconnect-snapshot, bob's SA when charon went away, and the two SAs of the terminated
    // connection. Lost: the dead peer.
    assert_eq!(
        count(&all),
        Counts {
            logins: 12,
            failures: 4,
            established: 12,
            rekeyed: 2,
            deleted: 11,
            lost: 1,
        },
        "{}",
        render(&all)
    );
    // Nothing is left open: the terminated connection held the last two.
    assert!(tracker.state().sas.is_empty());
}

/// The real IKEv1 `ike-updown` of `ikev1-quick-mode-failed` (main mode done, `up`), and the
/// log events before it.
fn ikev1_up() -> (Vec<ViciEvent>, serde_json::Value) {
    let (_, events) = load("ikev1-quick-mode-failed");
    let mut before = Vec::new();
    for event in events {
        if event.name == "ike-updown" {
            return (before, event.message.to_json());
        }
        before.push(event);
    }
    panic!("no ike-updown in ikev1-quick-mode-failed");
}

/// A CHILD_SA on the IKE_SA of `ike_updown`: charon cannot make an IKEv1 one here (libipsec
/// has no transport mode), so it is written by hand, shaped like the real IKEv2 ones.
fn with_child(ike_updown: &serde_json::Value) -> Message {
    let mut json = ike_updown.clone();
    let section = json["l2tp-psk"].as_object_mut().unwrap();
    section.insert(
        "child-sas".to_owned(),
        serde_json::json!({"l2tp-7": {
            "name": "l2tp", "uniqueid": "7", "reqid": "7", "state": "INSTALLED",
            "mode": "TRANSPORT", "protocol": "ESP", "encap": "yes",
            "spi-in": "c1a2b3c4", "spi-out": "d1e2f3a4",
            "bytes-in": "0", "bytes-out": "0", "packets-in": "0", "packets-out": "0",
            "local-ts": ["192.0.2.1/32[udp/l2f]"], "remote-ts": ["192.0.2.12/32[udp/l2f]"],
        }}),
    );
    json.as_object_mut().unwrap().remove("up");
    Message::from_json(&json).unwrap()
}

fn kinds(produced: &[Produced]) -> Vec<String> {
    produced
        .iter()
        .map(|event| match &event.body {
            EventBody::Auth(auth) => format!(
                "auth {:?} {} #{}",
                auth.outcome,
                auth.method,
                auth.peer.ike_sa_id.unwrap_or(0)
            ),
            EventBody::IkeSa(ike) => {
                format!("ike {:?} #{}", ike.change, ike.peer.ike_sa_id.unwrap_or(0))
            }
            EventBody::VirtualIp(vip) => {
                format!(
                    "vip {:?} {} #{}",
                    vip.change,
                    vip.ip,
                    vip.peer.ike_sa_id.unwrap_or(0)
                )
            }
            EventBody::ChildSa(child) => {
                format!(
                    "child {:?} #{}",
                    child.change,
                    child.child_sa_id.unwrap_or(0)
                )
            }
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn an_ikev1_login_is_reported_when_its_first_child_sa_comes_up() {
    let (logs, up) = ikev1_up();
    let mut tracker = Tracker::default();
    let mut out = Vec::new();
    let mut now = t0();
    for event in logs {
        tracker.on_event(event, now, &mut out);
    }
    let up_message = Message::from_json(&up).unwrap();
    tracker.on_event(
        ViciEvent {
            name: "ike-updown".to_owned(),
            message: up_message,
        },
        now,
        &mut out,
    );
    now += SignedDuration::from_secs(5);
    tracker.tick(now, &mut out);
    assert_eq!(kinds(&out), Vec::<String>::new());
    assert!(tracker.state().sas.is_empty());
    assert_eq!(
        tracker.state().awaiting_child.keys().collect::<Vec<_>>(),
        [&2]
    );

    let mut child_up = with_child(&up);
    child_up
        .entries
        .push(("up".to_owned(), Value::Str(b"yes".to_vec())));
    tracker.on_event(
        ViciEvent {
            name: "child-updown".to_owned(),
            message: child_up,
        },
        now,
        &mut out,
    );
    tracker.tick(now + SignedDuration::from_secs(5), &mut out);
    // The login, at the time the CHILD_SA came up; the method from the main mode's log.
    assert_eq!(
        kinds(&out),
        [
            "auth Success psk #2",
            "ike Established #2",
            "child Established #7"
        ]
    );
    assert!(out.iter().all(|event| event.timestamp == now));
    assert!(tracker.state().awaiting_child.is_empty());
    assert!(tracker.state().sas.contains_key(&2));
}

#[test]
fn an_ikev1_sa_waiting_for_quick_mode_across_an_agent_restart() {
    let (_, up) = ikev1_up();
    let waiting = || {
        let mut tracker = Tracker::default();
        let mut out = Vec::new();
        tracker.reconcile(Some("charon-1".to_owned()), &[], t0(), &mut out);
        tracker.on_event(
            ViciEvent {
                name: "ike-updown".to_owned(),
                message: Message::from_json(&up).unwrap(),
            },
            t0(),
            &mut out,
        );
        tracker.flush(&mut out);
        assert_eq!(kinds(&out), Vec::<String>::new());
        // The agent persists its state and starts again from it.
        let state = serde_json::to_string(tracker.state()).unwrap();
        Tracker::new(serde_json::from_str(&state).unwrap())
    };
    let later = t0() + SignedDuration::from_secs(60);
    let listed = |message: Message| {
        let section = message.sections().next().unwrap().1.clone();
        Message {
            entries: vec![("l2tp-psk".to_owned(), Value::Section(section))],
        }
    };

    // Still listed without a CHILD_SA: nothing yet.
    let mut tracker = waiting();
    let mut out = Vec::new();
    let without_child = listed(Message::from_json(&up).unwrap());
    tracker.reconcile(
        Some("charon-1".to_owned()),
        std::slice::from_ref(&without_child),
        later,
        &mut out,
    );
    assert_eq!(kinds(&out), Vec::<String>::new());
    assert_eq!(tracker.state().awaiting_child.len(), 1);

    // Listed with its CHILD_SA: the login is complete.
    let mut tracker = waiting();
    let mut out = Vec::new();
    tracker.reconcile(
        Some("charon-1".to_owned()),
        &[listed(with_child(&up))],
        later,
        &mut out,
    );
    assert_eq!(
        kinds(&out),
        [
            "auth Success unknown #2",
            "ike Established #2",
            "child Established #7"
        ]
    );

    // Gone without one, or charon restarted (its #2 is another IKE_SA, with other SPIs,
    // waiting in turn): a failed login, no session.
    let mut other_json = up.clone();
    other_json["l2tp-psk"]["initiator-spi"] = serde_json::json!("0123456789abcdef");
    let other_sa = listed(Message::from_json(&other_json).unwrap());
    for (charon, snapshot, n_waiting) in
        [("charon-1", Vec::new(), 0), ("charon-2", vec![other_sa], 1)]
    {
        let mut tracker = waiting();
        let mut out = Vec::new();
        tracker.reconcile(Some(charon.to_owned()), &snapshot, later, &mut out);
        assert_eq!(kinds(&out), ["auth Failure unknown #2"], "{charon}");
        let EventBody::Auth(auth) = &out[0].body else {
            unreachable!()
        };
        assert_eq!(
            auth.failure.as_ref().map(|failure| failure.reason.as_str()),
            Some(NO_CHILD_REASON)
        );
        assert_eq!(tracker.state().awaiting_child.len(), n_waiting, "{charon}");
        assert!(tracker.state().sas.is_empty());
    }
}

/// Random messages built from the keys charon uses: the tracker never panics, and what it
/// holds stays bounded by what it was told.
mod hostile {
    use proptest::prelude::*;

    use super::*;

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
            Just("version"),
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
            prop_assert!(tracker.state().awaiting_child.is_empty());
        }
    }
}

mod restart;
