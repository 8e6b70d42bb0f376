//! Hazards a review of the sessionizer found (each test failed before its fix): ids reused
//! within a second, accounting from before a daemon restart, times from a wrong clock or at
//! the end of time, checkpoints lost or stale, restarts of accounting-only sessions, and the
//! cost of checkpoints during an import. Helpers are those of `session::tests`.

use model::SessionChange::{Start, Stop};

use super::*;

/// The final session id of every event: its stamp, then the corrections in decision order.
fn final_stamps(
    events: &[Event],
    corrections: &[SessionJoinUpdate],
) -> BTreeMap<String, Option<String>> {
    let mut stamps: BTreeMap<String, Option<String>> = events
        .iter()
        .map(|event| (event.id.to_string(), event.session_id.clone()))
        .collect();
    let mut corrections = corrections.to_vec();
    corrections.sort_by_key(|correction| correction.decided);
    for correction in corrections {
        stamps.insert(correction.event_id, correction.session_id);
    }
    stamps
}

fn on_gateway(mut event: Event, gateway: &str) -> Event {
    event.observer.hostname = Some(gateway.to_owned());
    event
}

/// charon restarted without a word (unique ids count from 1 again) and bob's login takes id 1
/// with IKE_SA_INIT, IKE_AUTH and the lease in the same second, as a PSK login does: the
/// connecting line closes alice's session as `lost` at that second, and `begin` then finds
/// that session again (`end >= at`), so bob's auth, lease and IKE_SA are folded into alice's
/// closed session and bob has no session at all.
#[test]
fn a_login_reusing_an_ike_sa_id_within_the_same_second_gets_its_own_session() {
    let alice = peer(1, "alice", "192.0.2.11");
    let bob = peer(1, "bob", "192.0.2.12");
    let mut events = vec![
        event(1, 0, ike(alice.clone(), SaChange::Connecting, None, None)),
        event(2, 0, auth(alice.clone(), Outcome::Success)),
        event(3, 1, ike(alice, SaChange::Established, None, None)),
        event(4, 100, ike(bob.clone(), SaChange::Connecting, None, None)),
        event(5, 100, auth(bob.clone(), Outcome::Success)),
        event(6, 100, vip(bob.clone(), "10.99.0.9", LeaseChange::Assigned)),
        event(7, 100, ike(bob, SaChange::Established, None, None)),
    ];
    let mut sessionizer = Sessionizer::new(Vec::new());
    let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
    assert_eq!(
        sessions.len(),
        2,
        "bob has no session of his own: {sessions:#?}"
    );
    assert_ne!(events[1].session_id, events[4].session_id);
}

/// `high_water` is one for all gateways and moves with any event (a flow, an API request, a
/// line with a wrong clock or a crafted RFC 5424 year through the syslog listener). One event
/// two hours ahead makes `evict` abandon every login still negotiating everywhere: the
/// stamped login is corrected to no session, and the login then comes up as another record,
/// so the successful auth is not on its session's timeline.
#[test]
fn one_event_from_the_future_does_not_take_logins_off_their_sessions() {
    let alice = peer(1, "alice", "192.0.2.11");
    let mut first = vec![
        event(1, 0, ike(alice.clone(), SaChange::Connecting, None, None)),
        event(2, 1, auth(alice.clone(), Outcome::Success)),
    ];
    let stranger = peer(77, "stranger", "198.51.100.7");
    let mut future = vec![on_gateway(
        event(
            3,
            2 * 3_600,
            ike(stranger, SaChange::Connecting, None, None),
        ),
        "gw2",
    )];
    let mut rest = vec![
        event(4, 1, vip(alice.clone(), "10.99.0.1", LeaseChange::Assigned)),
        event(5, 2, ike(alice, SaChange::Established, None, None)),
    ];
    let mut sessionizer = Sessionizer::new(Vec::new());
    let mut snapshots = Vec::new();
    for batch in [&mut first, &mut future, &mut rest] {
        snapshots.extend(sessionizer.apply(batch, now()));
    }
    let sessions = final_sessions(&snapshots);
    let corrections = sessionizer.take_corrections();
    let all: Vec<Event> = first.iter().chain(&rest).cloned().collect();
    let stamps = final_stamps(&all, &corrections);
    let session_id = rest[1].session_id.clone().expect("alice's session");
    assert!(sessions.contains_key(&session_id));
    assert_eq!(
        stamps[&first[1].id.to_string()],
        Some(session_id),
        "alice's login is not on her session: {corrections:#?}"
    );
}

/// charon restarted (ids from 1 again, the pool from its first address again): alice had id 1
/// and 10.99.0.1 before, bob has both after. Accounting of alice's login arrives after the
/// log (the detail file read last by `ingest`, or a lagging receiver). `on_accounting` looks
/// the NAS-Port up in `by_sa` (now bob's) and `fits` checks only the address and, for a
/// Start, an end before it, never that the session started after the accounting: alice's
/// Start and Stop land on bob's open session, which shows alice's accounting id and closes
/// 50 s before it began.
#[test]
fn late_accounting_from_before_a_charon_restart_stays_with_its_login() {
    let alice = peer(1, "alice", "192.0.2.11");
    let bob = peer(1, "bob", "192.0.2.12");
    let log = vec![
        event(1, 0, ike(alice.clone(), SaChange::Connecting, None, None)),
        event(2, 1, auth(alice.clone(), Outcome::Success)),
        event(3, 1, vip(alice.clone(), "10.99.0.1", LeaseChange::Assigned)),
        event(4, 1, ike(alice.clone(), SaChange::Established, None, None)),
        event(
            5,
            50,
            ike(
                alice.clone(),
                SaChange::Deleted,
                Some(TerminateCause::UserRequest),
                None,
            ),
        ),
        event(6, 50, vip(alice, "10.99.0.1", LeaseChange::Released)),
        // charon restarted.
        event(7, 100, ike(bob.clone(), SaChange::Connecting, None, None)),
        event(8, 101, auth(bob.clone(), Outcome::Success)),
        event(9, 101, vip(bob.clone(), "10.99.0.1", LeaseChange::Assigned)),
        event(10, 101, ike(bob, SaChange::Established, None, None)),
    ];
    let radius = vec![
        accounting(101, 2, Some(1), "acct-alice", Start, None),
        accounting(102, 50, Some(1), "acct-alice", Stop, Some((5_000, 9_000))),
    ];
    let mut sessionizer = Sessionizer::new(Vec::new());
    let mut snapshots = Vec::new();
    for mut file in [log, radius] {
        snapshots.extend(sessionizer.apply(&mut file, now()));
    }
    snapshots.extend(sessionizer.finish(now()));
    let sessions = final_sessions(&snapshots);
    let by_user: BTreeMap<&str, &Session> = sessions
        .values()
        .map(|session| (session.user_name().unwrap_or("?"), session))
        .collect();
    assert_eq!(
        by_user["bob"].state,
        SessionState::Active,
        "{:#?}",
        by_user["bob"]
    );
    assert_eq!(by_user["bob"].accounting_id, None);
    assert_eq!(
        by_user["alice"].accounting_id.as_deref(),
        Some("acct-alice")
    );
}

/// An accounting-only session (its hold passed) is found by its NAS-Port while the process
/// lives, so the VPN's events arriving later join it (`accounting_alone_becomes_a_session_
/// when_its_hold_passes`). `restore` registers only `ike_sa_ids` and the Acct-Session-Id hash,
/// not the NAS-Ports it had (`accounting.nas_ports`): after a restart the same late events
/// make a second session. The property test never lets a hold pass before the end.
#[test]
fn a_restart_does_not_split_an_accounting_only_session_from_its_late_vpn_events() {
    let mut results = Vec::new();
    for restart in [false, true] {
        let mut sessionizer = Sessionizer::new(Vec::new());
        let mut radius = vec![accounting(101, 1, Some(1), "acct-1", Start, None)];
        let mut snapshots = sessionizer.apply(&mut radius, now());
        snapshots.extend(sessionizer.expire(now() + jiff::SignedDuration::from_secs(31)));
        assert_eq!(final_sessions(&snapshots).len(), 1);
        if restart {
            let shown: Vec<Session> = final_sessions(&snapshots).into_values().collect();
            let checkpoint = sessionizer.checkpoint();
            sessionizer =
                Sessionizer::restore(SessionConfig::default(), shown, checkpoint.as_ref(), now());
        }
        let mut log = scenario();
        snapshots.extend(settled(&mut sessionizer, &mut log));
        let sessions = final_sessions(&snapshots);
        results.push(sessions.len());
    }
    assert_eq!(results, [1, 1], "without / with a restart");
}

/// The collector's state moves on when it hands a batch over, whether or not the store takes
/// it. A group append that fails (disk full: the gateway resends) loses the checkpoint that
/// came with it, and the resent batch makes none (`dirty` was cleared): the store keeps the
/// older checkpoint, in which this login is still negotiating. After a restart `restore`
/// inserts that record over the shown session of the same id; the IKE_SA's delete then
/// abandons it: the session stays `active` forever and its events are corrected to none.
#[test]
fn after_a_lost_checkpoint_and_a_restart_the_delete_closes_the_session() {
    let alice = peer(1, "alice", "192.0.2.11");
    let mut sessionizer = Sessionizer::new(Vec::new());
    let mut first = vec![
        event(1, 0, ike(alice.clone(), SaChange::Connecting, None, None)),
        event(2, 1, auth(alice.clone(), Outcome::Success)),
    ];
    sessionizer.apply(&mut first, now());
    let mut stored_checkpoint = sessionizer.checkpoint();
    let second = vec![
        event(3, 1, vip(alice.clone(), "10.99.0.1", LeaseChange::Assigned)),
        event(4, 2, ike(alice.clone(), SaChange::Established, None, None)),
    ];
    let _ = sessionizer.apply(&mut second.clone(), now());
    let _ = sessionizer.take_corrections();
    let _ = sessionizer.checkpoint();
    let mut resent = second.clone();
    let stored = sessionizer.apply(&mut resent, now());
    if let Some(newer) = sessionizer.checkpoint() {
        stored_checkpoint = Some(newer);
    }
    let session_id = resent[1].session_id.clone().unwrap();
    let mut restarted = Sessionizer::restore(
        SessionConfig::default(),
        stored,
        stored_checkpoint.as_ref(),
        now(),
    );
    let mut end = vec![event(
        5,
        60,
        ike(
            alice,
            SaChange::Deleted,
            Some(TerminateCause::UserRequest),
            None,
        ),
    )];
    let after = final_sessions(&restarted.apply(&mut end, now()));
    let corrections = restarted.take_corrections();
    assert!(
        corrections
            .iter()
            .all(|correction| correction.session_id.is_some()),
        "events of a shown session corrected to none: {corrections:#?}"
    );
    assert_eq!(
        after.get(&session_id).map(|session| session.state),
        Some(SessionState::Closed),
        "the session is never closed"
    );
}

/// Timestamps are input (a detail file's `Timestamp = 253402300790`, an RFC 5424 year through
/// the syslog listener). `holding` adds 120 s to a record's end with `+`, which panics past
/// jiff's last instant: two accounting Stops for one framed address near 9999-12-31 kill the
/// collector task (and with it the server's ingest).
#[test]
fn timestamps_at_the_end_of_time_do_not_panic() {
    let last = Timestamp::MAX - jiff::SignedDuration::from_secs(30);
    let stop = |seq: u64, id: &str| {
        let mut event = accounting(seq, 0, None, id, Stop, Some((1, 2)));
        event.timestamp = last;
        if let EventBody::Session(session) = &mut event.body {
            session.duration_secs = Some(10);
        }
        event
    };
    let mut events = vec![stop(1, "x-1"), stop(2, "x-2")];
    let mut sessionizer = Sessionizer::new(Vec::new());
    sessionizer.apply(&mut events, now());
}

/// `ingest` holds accounting to the end of its input; had every batch that touches a held
/// record re-serialised the whole checkpoint into its WAL record, a detail file of
/// accounting-only sessions (a NAS that sends nothing else) would cost O(n²) in CPU and WAL
/// bytes. An import makes no checkpoint (a rerun rebuilds what it assembles).
#[test]
fn the_checkpoints_of_an_ingest_grow_linearly_with_its_input() {
    let mut sessionizer = Sessionizer::restore(
        SessionConfig {
            until_end_of_input: true,
            ..SessionConfig::default()
        },
        Vec::new(),
        None,
        now(),
    );
    let mut total_checkpoint_bytes = 0usize;
    let mut total_event_bytes = 0usize;
    let mut seq = 0;
    for batch_idx in 0..100i64 {
        let mut batch = Vec::new();
        for login in 0..4i64 {
            let idx = batch_idx * 4 + login;
            let id = format!("ppp-{idx}");
            for (change, second) in [(Start, idx * 10 + 1), (Stop, idx * 10 + 5)] {
                seq += 1;
                let mut event = accounting(seq, second, None, &id, change, Some((1, 2)));
                if let EventBody::Session(session) = &mut event.body {
                    session.virtual_ip =
                        Some(format!("10.{}.{}.1", idx / 250, idx % 250).parse().unwrap());
                }
                batch.push(event);
            }
        }
        total_event_bytes += serde_json::to_vec(&batch).unwrap().len();
        sessionizer.apply(&mut batch, now());
        if let Some(checkpoint) = sessionizer.checkpoint() {
            total_checkpoint_bytes += serde_json::to_vec(&checkpoint).unwrap().len();
        }
    }
    assert!(
        total_checkpoint_bytes < 4 * total_event_bytes,
        "checkpoints {total_checkpoint_bytes} bytes for {total_event_bytes} bytes of events"
    );
}
