use std::net::IpAddr;

use model::{
    Auth, AuthFailure, AuthMethod, ChildSaEvent, Counters, Endpoint, Event, EventBody, EventId,
    FailureCode, Identities, IkeSaEvent, LeaseChange, Observer, Outcome, Peer, SaChange,
    SessionState, TerminateCause, VirtualIpEvent,
};
use proptest::prelude::*;

use super::*;

fn peer(ike: u64, user: &str, client: &str) -> Peer {
    Peer {
        connection: Some("rw-psk".to_owned()),
        ike_sa_id: Some(ike),
        client: Endpoint::new(client.parse().unwrap(), Some(4500)),
        server: Endpoint::new("192.0.2.1".parse().unwrap(), Some(4500)),
        identities: Identities {
            ike_id: Some(user.to_owned()),
            ..Identities::default()
        },
    }
}

fn event(seq: u64, second: i64, body: EventBody) -> Event {
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
        body,
    }
}

fn ike(
    peer: Peer,
    change: SaChange,
    cause: Option<TerminateCause>,
    new_id: Option<u64>,
) -> EventBody {
    EventBody::IkeSa(IkeSaEvent {
        peer,
        change,
        new_ike_sa_id: new_id,
        cause,
    })
}

fn auth(peer: Peer, outcome: Outcome) -> EventBody {
    let failure = (outcome == Outcome::Failure).then(|| AuthFailure {
        code: FailureCode::PskMismatch,
        reason: "MAC mismatched".to_owned(),
    });
    EventBody::Auth(Auth {
        peer,
        method: AuthMethod::Psk,
        outcome,
        failure,
    })
}

fn vip(peer: Peer, ip: &str, change: LeaseChange) -> EventBody {
    EventBody::VirtualIp(VirtualIpEvent {
        peer,
        ip: ip.parse().unwrap(),
        change,
    })
}

fn child_closed(peer: Peer, child: u64, bytes_in: u64, bytes_out: u64) -> EventBody {
    EventBody::ChildSa(ChildSaEvent {
        peer,
        change: SaChange::Deleted,
        name: Some("net".to_owned()),
        child_sa_id: Some(child),
        spi_in: None,
        spi_out: None,
        local_ts: None,
        remote_ts: None,
        counters: Some(Counters {
            bytes_in,
            bytes_out,
            packets_in: None,
            packets_out: None,
        }),
    })
}

/// One user logs in, rekeys, moves bytes over two CHILD_SAs and logs out; another fails.
fn scenario() -> Vec<Event> {
    let alice = |ike| peer(ike, "alice", "192.0.2.11");
    vec![
        event(1, 0, ike(alice(1), SaChange::Connecting, None, None)),
        event(2, 1, auth(alice(1), Outcome::Success)),
        event(3, 1, vip(alice(1), "10.99.0.1", LeaseChange::Assigned)),
        event(4, 1, ike(alice(1), SaChange::Established, None, None)),
        event(
            5,
            2,
            auth(peer(2, "mallory", "203.0.113.9"), Outcome::Failure),
        ),
        event(6, 50, ike(alice(1), SaChange::Rekeyed, None, Some(3))),
        event(
            7,
            51,
            ike(
                alice(1),
                SaChange::Deleted,
                Some(TerminateCause::AdminReset),
                None,
            ),
        ),
        event(8, 60, child_closed(alice(3), 1, 100, 200)),
        event(9, 90, child_closed(alice(3), 2, 1000, 2000)),
        event(
            10,
            91,
            ike(
                alice(3),
                SaChange::Deleted,
                Some(TerminateCause::UserRequest),
                None,
            ),
        ),
        event(11, 91, vip(alice(3), "10.99.0.1", LeaseChange::Released)),
    ]
}

fn final_sessions(snapshots: &[Session]) -> BTreeMap<String, Session> {
    let mut latest = BTreeMap::new();
    for snapshot in snapshots {
        latest.insert(snapshot.session_id.clone(), snapshot.clone());
    }
    latest
}

#[test]
fn a_session_survives_a_rekey_and_sums_its_child_sas() {
    let mut sessionizer = Sessionizer::new(Vec::new());
    let mut events = scenario();
    let snapshots = sessionizer.apply(&mut events);
    let sessions = final_sessions(&snapshots);
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let session = sessions.values().next().unwrap();
    assert_eq!(session.user_name(), Some("alice"));
    assert_eq!(
        session.virtual_ip,
        Some("10.99.0.1".parse::<IpAddr>().unwrap())
    );
    assert_eq!(session.ike_sa_ids, [1, 3]);
    assert_eq!(session.rekey_count, 1);
    assert_eq!(session.state, SessionState::Closed);
    assert_eq!(session.cause, Some(TerminateCause::UserRequest));
    assert_eq!(session.counters.bytes_in, 1100);
    assert_eq!(session.counters.bytes_out, 2200);
    assert_eq!(session.method, Some(AuthMethod::Psk));
    assert_eq!(session.start, events[3].timestamp);
    assert_eq!(session.end, Some(events[9].timestamp));
    // Every alice event carries the session id; the failed login carries none.
    for event in &events {
        let expected = if event.id.seq == 5 || event.id.seq == 1 {
            None
        } else {
            Some(session.session_id.as_str())
        };
        assert_eq!(event.session_id.as_deref(), expected, "event {}", event.id);
    }
}

#[test]
fn a_dead_peer_ends_the_session_as_lost() {
    let mut sessionizer = Sessionizer::new(Vec::new());
    let bob = peer(7, "bob", "192.0.2.12");
    let mut events = vec![
        event(1, 0, ike(bob.clone(), SaChange::Established, None, None)),
        event(
            2,
            30,
            ike(bob, SaChange::Lost, Some(TerminateCause::LostService), None),
        ),
    ];
    let sessions = final_sessions(&sessionizer.apply(&mut events));
    let session = sessions.values().next().unwrap();
    assert_eq!(session.state, SessionState::Lost);
    assert_eq!(session.cause, Some(TerminateCause::LostService));
}

#[test]
fn open_sessions_continue_after_a_restart() {
    let mut first = Sessionizer::new(Vec::new());
    let mut events = scenario();
    let (head, tail) = events.split_at_mut(6);
    let open: Vec<Session> = final_sessions(&first.apply(head)).into_values().collect();
    assert!(open[0].state.is_open());
    let mut restarted = Sessionizer::new(open.clone());
    let after = final_sessions(&restarted.apply(tail));
    assert_eq!(after[&open[0].session_id].state, SessionState::Closed);
    assert_eq!(after[&open[0].session_id].counters.bytes_in, 1100);
    assert!(after[&open[0].session_id].version > open[0].version);
}

#[test]
fn the_same_ike_sa_id_after_a_charon_restart_is_a_new_session() {
    let mut sessionizer = Sessionizer::new(Vec::new());
    let carol = peer(1, "carol", "192.0.2.13");
    let mut events = vec![
        event(1, 0, ike(carol.clone(), SaChange::Connecting, None, None)),
        event(2, 0, ike(carol.clone(), SaChange::Established, None, None)),
        event(
            3,
            10,
            ike(
                carol.clone(),
                SaChange::Deleted,
                Some(TerminateCause::UserRequest),
                None,
            ),
        ),
        event(4, 20, ike(carol.clone(), SaChange::Connecting, None, None)),
        event(5, 20, ike(carol, SaChange::Established, None, None)),
    ];
    let sessions = final_sessions(&sessionizer.apply(&mut events));
    assert_eq!(sessions.len(), 2);
}

proptest! {
    /// Splitting the stream into batches anywhere, and replaying any batch once more (a
    /// resend after a failed store write), gives the same final sessions.
    #[test]
    fn batching_and_replays_do_not_change_sessions(cuts in proptest::collection::vec(0usize..12, 0..5), replay in proptest::option::of(0usize..6)) {
        let mut reference = Sessionizer::new(Vec::new());
        let mut all = scenario();
        let expected = final_sessions(&reference.apply(&mut all));

        let mut cuts = cuts;
        cuts.push(0);
        cuts.push(scenario().len());
        cuts.sort_unstable();
        cuts.dedup();
        let events = scenario();
        let mut sessionizer = Sessionizer::new(Vec::new());
        let mut snapshots = Vec::new();
        for (batch_idx, window) in cuts.windows(2).enumerate() {
            let mut batch = events[window[0]..window[1]].to_vec();
            snapshots.extend(sessionizer.apply(&mut batch));
            if replay == Some(batch_idx) {
                let mut again = events[window[0]..window[1]].to_vec();
                snapshots.extend(sessionizer.apply(&mut again));
            }
        }
        let actual = final_sessions(&snapshots);
        prop_assert_eq!(actual.len(), expected.len());
        for (session_id, session) in &expected {
            let other = &actual[session_id];
            prop_assert_eq!((&other.state, &other.counters, &other.ike_sa_ids, other.rekey_count, &other.end), (&session.state, &session.counters, &session.ike_sa_ids, session.rekey_count, &session.end));
        }
    }
}

#[test]
fn a_reused_id_after_a_silent_daemon_restart_closes_the_stale_session() {
    let mut sessionizer = Sessionizer::new(Vec::new());
    let alice = peer(1, "alice", "192.0.2.11");
    let bob = peer(1, "bob", "192.0.2.12");
    let mut events = vec![
        event(1, 0, ike(alice.clone(), SaChange::Established, None, None)),
        // charon was killed; after its restart bob gets IKE_SA id 1.
        event(2, 100, ike(bob.clone(), SaChange::Connecting, None, None)),
        event(3, 101, auth(bob.clone(), Outcome::Success)),
        event(4, 101, ike(bob, SaChange::Established, None, None)),
    ];
    let sessions = final_sessions(&sessionizer.apply(&mut events));
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    let by_user: BTreeMap<&str, &Session> = sessions
        .values()
        .map(|session| (session.user_name().unwrap(), session))
        .collect();
    assert_eq!(by_user["alice"].state, SessionState::Lost);
    assert_eq!(by_user["alice"].end, Some(events[1].timestamp));
    assert_eq!(by_user["bob"].state, SessionState::Active);
    assert_eq!(
        events[2].session_id.as_deref(),
        Some(by_user["bob"].session_id.as_str())
    );
}

#[test]
fn restored_sessions_keep_their_byte_counts() {
    let mut first = Sessionizer::new(Vec::new());
    let alice = peer(5, "alice", "192.0.2.11");
    let mut head = vec![
        event(1, 0, ike(alice.clone(), SaChange::Established, None, None)),
        event(2, 10, child_closed(alice.clone(), 1, 100, 200)),
    ];
    let open: Vec<Session> = final_sessions(&first.apply(&mut head))
        .into_values()
        .collect();
    let mut restarted = Sessionizer::new(open);
    let mut tail = vec![event(3, 20, child_closed(alice, 2, 1000, 2000))];
    let after = final_sessions(&restarted.apply(&mut tail));
    let session = after.values().next().unwrap();
    assert_eq!(
        (session.counters.bytes_in, session.counters.bytes_out),
        (1100, 2200)
    );
}
