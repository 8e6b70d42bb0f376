//! The agent restarts (or reconnects) while users stay connected: the reconcile reports
//! what changed while nobody listened, and nothing else. The snapshots are the real
//! `list-sa` messages of the captures; the start times are what `swanctl --stats` printed
//! for one charon here, 30 calls in a row: `Dec 07 10:42:35 2026` six times in seven, else
//! `Dec 07 10:42:36 2026` (charon computes it as the wall clock minus its monotonic uptime,
//! each in whole seconds). Taking that jitter for a charon restart was what re-reported
//! every connected user's login after an agent restart, one time in seven.

use super::*;

const SINCE: &str = "Dec 07 10:42:35 2026";
/// The same charon, a second later (the jitter).
const SINCE_JITTERED: &str = "Dec 07 10:42:36 2026";
/// The same charon after the clock stepped (NTP, a suspended VM).
const SINCE_STEPPED: &str = "Dec 07 11:12:35 2026";
/// Another charon.
const SINCE_RESTARTED: &str = "Dec 07 11:20:02 2026";

fn later(minutes: i64) -> Timestamp {
    t0() + SignedDuration::from_mins(minutes)
}

/// The agent persists its state and starts again from it.
fn restart(tracker: &Tracker) -> Tracker {
    let state = serde_json::to_string(tracker.state()).unwrap();
    Tracker::new(serde_json::from_str(&state).unwrap())
}

/// A tracker that reconciled `reconnect-snapshot`'s two users (bob on rw-eap #15, client1 on
/// rw-psk #14) with charon started at `SINCE`.
fn two_users() -> (Tracker, Vec<Message>) {
    let (snapshot, _) = load("reconnect-snapshot");
    assert_eq!(snapshot.len(), 2);
    let mut tracker = Tracker::default();
    let mut out = Vec::new();
    tracker.reconcile(Some(SINCE.to_owned()), &snapshot, t0(), &mut out);
    assert_eq!(count(&out).logins, 2, "{}", render(&out));
    (restart(&tracker), snapshot)
}

#[test]
fn sas_still_up_are_not_reported_again_whatever_the_start_time_says() {
    for since in [SINCE, SINCE_JITTERED, SINCE_STEPPED] {
        let (mut tracker, snapshot) = two_users();
        let before = tracker.state().sas.clone();
        let mut out = Vec::new();
        tracker.reconcile(Some(since.to_owned()), &snapshot, later(5), &mut out);
        assert_eq!(render(&out), "", "{since}");
        assert_eq!(tracker.state().sas, before, "{since}");
    }
}

#[test]
fn a_state_without_spis_tolerates_the_jitter() {
    // A state file of the version before SPIs were kept: the start time alone decides.
    let (tracker, snapshot) = two_users();
    let mut state = serde_json::to_value(tracker.state()).unwrap();
    for sa in state["sas"].as_object_mut().unwrap().values_mut() {
        sa.as_object_mut().unwrap().remove("ike_spis").unwrap();
    }
    let mut tracker = Tracker::new(serde_json::from_value(state).unwrap());
    let mut out = Vec::new();
    tracker.reconcile(
        Some(SINCE_JITTERED.to_owned()),
        &snapshot,
        later(5),
        &mut out,
    );
    assert_eq!(render(&out), "");
}

#[test]
fn an_sa_that_went_away_meanwhile_ends_as_lost() {
    let (mut tracker, snapshot) = two_users();
    // client1 (#14) left while the agent was down; bob stays.
    let remaining: Vec<Message> = snapshot
        .into_iter()
        .filter(|message| {
            message
                .sections()
                .next()
                .is_some_and(|(name, _)| name == "rw-eap")
        })
        .collect();
    let mut out = Vec::new();
    tracker.reconcile(
        Some(SINCE_JITTERED.to_owned()),
        &remaining,
        later(5),
        &mut out,
    );
    assert_eq!(
        kinds(&out),
        ["ike Deleted #14", "vip Released 10.99.0.1 #14"]
    );
    let EventBody::IkeSa(ike) = &out[0].body else {
        unreachable!()
    };
    assert_eq!(ike.cause, Some(TerminateCause::Lost));
    assert_eq!(
        out[0].original,
        "vici reconcile: IKE_SA #14 is no longer listed by charon"
    );
    assert_eq!(tracker.state().sas.keys().collect::<Vec<_>>(), [&15]);
}

#[test]
fn a_charon_restart_ends_the_old_sas_as_lost() {
    let (mut tracker, _) = two_users();
    // The restarted charon counts from 1 again: restart-after's client1 login is #1.
    let (after, _) = load("gateway-terminate-by-conn");
    let mut out = Vec::new();
    tracker.reconcile(Some(SINCE_RESTARTED.to_owned()), &after, later(5), &mut out);
    let ends: Vec<_> = out
        .iter()
        .filter_map(|event| match &event.body {
            EventBody::IkeSa(ike) if ike.change == SaChange::Deleted => {
                Some((ike.peer.ike_sa_id, ike.cause, event.original.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        ends,
        [
            (
                Some(14),
                Some(TerminateCause::Lost),
                "vici reconcile: IKE_SA #14 is no longer listed by charon (charon restarted)"
            ),
            (
                Some(15),
                Some(TerminateCause::Lost),
                "vici reconcile: IKE_SA #15 is no longer listed by charon (charon restarted)"
            )
        ]
    );
    // The new daemon's SAs are new logins.
    assert_eq!(count(&out).logins, 2, "{}", render(&out));
}

#[test]
fn a_rekey_while_nobody_listened_continues_the_session() {
    // rekey: client2's IKE_SA #10 is up (with its CHILD_SA) when the agent stops; the
    // gateway rekeys it into #11 meanwhile; the agent comes back to a charon whose start
    // time jittered. The listing of #11 is the real ike-rekey's `new` section with the
    // CHILD_SA of the real child-updown (charon moves CHILD_SAs to the new IKE_SA).
    let (_, events) = load("rekey");
    let rekey_at = events
        .iter()
        .position(|event| event.name == "ike-rekey")
        .unwrap();
    let mut tracker = Tracker::default();
    let mut out = Vec::new();
    tracker.reconcile(Some(SINCE.to_owned()), &[], t0(), &mut out);
    let mut now = t0();
    let mut child_sas = None;
    for event in &events[..rekey_at] {
        now += SignedDuration::from_millis(10);
        if event.name == "child-updown" {
            child_sas = event
                .message
                .sections()
                .next()
                .and_then(|(_, section)| section.get("child-sas").cloned());
        }
        tracker.on_event(event.clone(), now, &mut out);
    }
    tracker.flush(&mut out);
    assert_eq!(count(&out).logins, 1);
    let mut tracker = restart(&tracker);

    let rekey = &events[rekey_at].message;
    let (connection, section) = rekey.sections().next().unwrap();
    let mut new = section.section("new").unwrap().clone();
    new.entries
        .push(("child-sas".to_owned(), child_sas.unwrap()));
    let listed = Message {
        entries: vec![(connection.to_owned(), Value::Section(new))],
    };
    let mut out = Vec::new();
    tracker.reconcile(
        Some(SINCE_JITTERED.to_owned()),
        &[listed],
        later(5),
        &mut out,
    );
    assert_eq!(kinds(&out), ["ike Rekeyed #10"]);
    assert_eq!(tracker.state().sas.keys().collect::<Vec<_>>(), [&11]);
}

#[test]
fn the_start_time_moves_only_beyond_its_jitter() {
    assert!(!since_moved(Some(SINCE), Some(SINCE_JITTERED)));
    assert!(!since_moved(Some(SINCE_JITTERED), Some(SINCE)));
    assert!(since_moved(Some(SINCE), Some(SINCE_STEPPED)));
    assert!(since_moved(Some(SINCE), Some(SINCE_RESTARTED)));
    assert!(!since_moved(None, Some(SINCE)));
    assert!(!since_moved(Some("charon-1"), Some("charon-1")));
    assert!(since_moved(Some("charon-1"), Some("charon-2")));
}
