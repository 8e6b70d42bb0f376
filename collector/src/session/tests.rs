use std::collections::BTreeMap;
use std::net::IpAddr;

use model::{
    Auth, AuthFailure, AuthMethod, ChildSaEvent, Counters, Endpoint, Event, EventBody, EventId,
    FailureCode, Identities, IkeSaEvent, LeaseChange, Observer, Outcome, Peer, SaChange,
    SessionState, TerminateCause, VirtualIpEvent,
};
use proptest::prelude::*;

use super::*;

mod hazards;
mod sources;

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
        proposal: None,
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
        proposal: None,
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

/// The wall clock of the tests.
fn now() -> Timestamp {
    Timestamp::from_second(1_796_000_000).unwrap()
}

/// Applies `events` at [`now`], then lets a day pass on the wall clock, so that accounting
/// held for the VPN's events becomes sessions of its own.
fn settled(sessionizer: &mut Sessionizer, events: &mut [Event]) -> Vec<Session> {
    let mut snapshots = sessionizer.apply(events, now());
    snapshots.extend(sessionizer.expire(now() + jiff::SignedDuration::from_hours(24)));
    snapshots
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
    let snapshots = settled(&mut sessionizer, &mut events);
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
    let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
    let session = sessions.values().next().unwrap();
    assert_eq!(session.state, SessionState::Lost);
    assert_eq!(session.cause, Some(TerminateCause::LostService));
}

#[test]
fn open_sessions_continue_after_a_restart() {
    let mut first = Sessionizer::new(Vec::new());
    let mut events = scenario();
    let (head, tail) = events.split_at_mut(6);
    let open: Vec<Session> = final_sessions(&settled(&mut first, head))
        .into_values()
        .collect();
    assert!(open[0].state.is_open());
    let mut restarted = Sessionizer::new(open.clone());
    let after = final_sessions(&settled(&mut restarted, tail));
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
    let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
    assert_eq!(sessions.len(), 2);
}

proptest! {
    /// Splitting the stream into batches anywhere, and replaying any batch once more (a
    /// resend after a failed store write), gives the same final sessions.
    #[test]
    fn batching_and_replays_do_not_change_sessions(cuts in proptest::collection::vec(0usize..12, 0..5), replay in proptest::option::of(0usize..6)) {
        let mut reference = Sessionizer::new(Vec::new());
        let mut all = scenario();
        let expected = final_sessions(&settled(&mut reference, &mut all));

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
            snapshots.extend(settled(&mut sessionizer, &mut batch));
            if replay == Some(batch_idx) {
                let mut again = events[window[0]..window[1]].to_vec();
                snapshots.extend(settled(&mut sessionizer, &mut again));
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
    let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    let by_user: BTreeMap<&str, &Session> = sessions
        .values()
        .map(|session| (session.user_name().unwrap(), session))
        .collect();
    // It ended while nobody said so: closed, cause `lost` (as the VICI reconcile has it).
    assert_eq!(by_user["alice"].state, SessionState::Closed);
    assert_eq!(by_user["alice"].cause, Some(TerminateCause::Lost));
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
    let open: Vec<Session> = final_sessions(&settled(&mut first, &mut head))
        .into_values()
        .collect();
    let mut restarted = Sessionizer::new(open);
    let mut tail = vec![event(3, 20, child_closed(alice, 2, 1000, 2000))];
    let after = final_sessions(&settled(&mut restarted, &mut tail));
    let session = after.values().next().unwrap();
    assert_eq!(
        (session.counters.bytes_in, session.counters.bytes_out),
        (1100, 2200)
    );
}

/// Delivery is at least once: a batch the collector took before it stopped can come again
/// after. Counters of a CHILD_SA it already had replace, not add to, what the session counted.
#[test]
fn a_child_sa_resent_after_a_restart_is_not_counted_twice() {
    let mut first = Sessionizer::new(Vec::new());
    let alice = peer(5, "alice", "192.0.2.11");
    let resent = event(2, 10, child_closed(alice.clone(), 1, 100, 200));
    let mut head = vec![
        event(1, 0, ike(alice.clone(), SaChange::Established, None, None)),
        resent.clone(),
    ];
    let stored: Vec<Session> = final_sessions(&settled(&mut first, &mut head))
        .into_values()
        .collect();
    // What the store's state file gives back.
    let json = serde_json::to_vec(&stored).unwrap();
    let stored: Vec<Session> = serde_json::from_slice(&json).unwrap();
    let mut restarted = Sessionizer::new(stored);
    let mut tail = vec![
        resent,
        event(3, 20, child_closed(alice.clone(), 1, 150, 260)),
        event(4, 30, child_closed(alice, 2, 1000, 2000)),
    ];
    let after = final_sessions(&settled(&mut restarted, &mut tail));
    let session = after.values().next().unwrap();
    assert_eq!(
        (session.counters.bytes_in, session.counters.bytes_out),
        (1150, 2260)
    );
    assert_eq!(session.child_sa_counters.len(), 2);
}

/// A restored session's counters never go down, whether accounting's totals (which the state
/// file does not keep apart) or a state file of an earlier version (no counters per CHILD_SA:
/// what CHILD_SAs report later adds to what the session had) made them.
#[test]
fn restored_counters_never_go_down_and_older_state_files_add_up() {
    let mut first = Sessionizer::new(Vec::new());
    let alice = peer(5, "alice", "192.0.2.11");
    let mut head = vec![
        event(1, 0, ike(alice.clone(), SaChange::Established, None, None)),
        event(2, 10, child_closed(alice.clone(), 1, 100, 200)),
        accounting(
            3,
            15,
            Some(5),
            "acct-1",
            model::SessionChange::Update,
            Some((5000, 6000)),
        ),
    ];
    let stored: Vec<Session> = final_sessions(&settled(&mut first, &mut head))
        .into_values()
        .collect();
    assert_eq!(stored[0].counters.bytes_in, 5000);
    let mut restarted = Sessionizer::new(stored.clone());
    let mut tail = vec![event(4, 20, child_closed(alice.clone(), 1, 150, 260))];
    let after = final_sessions(&settled(&mut restarted, &mut tail));
    let session = after.values().next().unwrap();
    assert_eq!(
        (session.counters.bytes_in, session.counters.bytes_out),
        (5000, 6000)
    );

    // A state file of an earlier version: no sources, no counters per CHILD_SA.
    let mut older = stored;
    older[0].sources = None;
    older[0].child_sa_counters.clear();
    older[0].counters.bytes_in = 100;
    older[0].counters.bytes_out = 200;
    let mut restarted = Sessionizer::new(older);
    let mut tail = vec![event(4, 20, child_closed(alice, 2, 1000, 2000))];
    let after = final_sessions(&settled(&mut restarted, &mut tail));
    let session = after.values().next().unwrap();
    assert_eq!(
        (session.counters.bytes_in, session.counters.bytes_out),
        (1100, 2200)
    );
}

/// RADIUS accounting as strongSwan's eap-radius sends it: NAS-Port is the IKE_SA's unique id.
fn accounting(
    seq: u64,
    second: i64,
    ike_sa_id: Option<u64>,
    accounting_id: &str,
    change: model::SessionChange,
    bytes: Option<(u64, u64)>,
) -> Event {
    let mut accounting = event(
        seq,
        second,
        EventBody::Session(model::SessionEvent {
            peer: Peer {
                connection: None,
                ike_sa_id,
                client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
                server: Endpoint::default(),
                identities: Identities {
                    ike_id: Some("alice".to_owned()),
                    ..Identities::default()
                },
            },
            change,
            virtual_ip: Some("10.99.0.1".parse().unwrap()),
            accounting_id: Some(accounting_id.to_owned()),
            counters: bytes.map(|(bytes_in, bytes_out)| Counters {
                bytes_in,
                bytes_out,
                packets_in: Some(10),
                packets_out: Some(20),
            }),
            // Acct-Session-Time: 0 in a Start; the others here leave it out.
            duration_secs: (change == model::SessionChange::Start).then_some(0),
            cause: (change == model::SessionChange::Stop).then_some(TerminateCause::UserRequest),
        }),
    );
    accounting.id = EventId::new("gw1/radius", seq, 0);
    accounting.dataset = "radius.accounting".to_owned();
    accounting
}

#[test]
fn accounting_and_the_vpn_report_one_session_in_either_order() {
    use model::SessionChange::{Start, Stop};
    let vpn = scenario();
    let radius = [
        accounting(101, 1, Some(1), "acct-1", Start, None),
        // After the rekey charon keeps the Acct-Session-Id; the Stop names the new IKE_SA.
        accounting(102, 91, Some(3), "acct-1", Stop, Some((5_000, 9_000))),
    ];
    for radius_first in [false, true] {
        let mut sessionizer = Sessionizer::new(Vec::new());
        let mut events: Vec<Event> = if radius_first {
            radius.iter().chain(vpn.iter()).cloned().collect()
        } else {
            vpn.iter().chain(radius.iter()).cloned().collect()
        };
        let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
        assert_eq!(
            sessions.len(),
            1,
            "radius first: {radius_first}: {sessions:#?}"
        );
        let session = sessions.values().next().unwrap();
        assert_eq!(session.accounting_id.as_deref(), Some("acct-1"));
        assert_eq!(session.ike_sa_ids, [1, 3], "radius first: {radius_first}");
        assert_eq!(session.virtual_ip, "10.99.0.1".parse().ok());
        assert_eq!(session.state, SessionState::Closed);
        // The VPN's cause wins; accounting fills only what is missing.
        assert_eq!(session.cause, Some(TerminateCause::UserRequest));
        // Accounting's totals are larger than the CHILD_SAs the log showed: they count too.
        assert_eq!(
            (session.counters.bytes_in, session.counters.bytes_out),
            (5_000, 9_000)
        );
        assert_eq!(session.user_name(), Some("alice"));
        assert!(
            events
                .iter()
                .filter(|e| e.dataset == "radius.accounting")
                .all(|e| e.session_id.as_deref() == Some(session.session_id.as_str())),
            "accounting events carry the session id"
        );
    }
}

#[test]
fn accounting_alone_makes_a_session_from_start_to_stop() {
    use model::SessionChange::{Start, Stop, Update};
    // A NAS without IKE_SA ids (pppd behind RADIUS): the Acct-Session-Id is the key.
    let mut events = vec![
        accounting(1, 100, None, "ppp-7", Start, None),
        accounting(2, 160, None, "ppp-7", Update, Some((100, 200))),
        accounting(3, 220, None, "ppp-7", Stop, Some((300, 400))),
    ];
    let mut sessionizer = Sessionizer::new(Vec::new());
    let snapshots = settled(&mut sessionizer, &mut events);
    let sessions = final_sessions(&snapshots);
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let session = sessions.values().next().unwrap();
    assert!(session.ike_sa_ids.is_empty());
    assert_eq!(
        session.start,
        Timestamp::from_second(1_795_000_100).unwrap()
    );
    assert_eq!(
        session.end,
        Some(Timestamp::from_second(1_795_000_220).unwrap())
    );
    assert_eq!(session.state, SessionState::Closed);
    assert_eq!(session.cause, Some(TerminateCause::UserRequest));
    assert_eq!(
        (session.counters.bytes_in, session.counters.bytes_out),
        (300, 400)
    );
    // Replayed: the same session, nothing new.
    let mut again = events.clone();
    let replayed = final_sessions(&settled(&mut sessionizer, &mut again));
    assert_eq!(
        replayed.keys().collect::<Vec<_>>(),
        sessions.keys().collect::<Vec<_>>()
    );
    assert_eq!(replayed.values().next().unwrap().counters, session.counters);
}

#[test]
fn accounting_resent_after_a_restart_finds_the_session_that_closed_before_it() {
    use model::SessionChange::{Start, Stop};
    let mut events: Vec<Event> = scenario()
        .into_iter()
        .chain([
            accounting(101, 1, Some(1), "acct-1", Start, None),
            accounting(102, 91, Some(3), "acct-1", Stop, Some((5_000, 9_000))),
        ])
        .collect();
    let mut first = Sessionizer::new(Vec::new());
    let before = final_sessions(&settled(&mut first, &mut events));
    assert_eq!(before.len(), 1);
    let closed = before.values().next().unwrap().clone();
    assert_eq!(closed.state, SessionState::Closed);

    // What the store kept for the restart: the session closed moments ago.
    let mut restarted = Sessionizer::new(vec![closed.clone()]);
    // The gateway sends its RADIUS accounting again (and a resend of the log's tail).
    let mut resent: Vec<Event> = events
        .iter()
        .filter(|event| event.dataset == "radius.accounting")
        .cloned()
        .collect();
    let after = final_sessions(&settled(&mut restarted, &mut resent));
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        [&closed.session_id],
        "no second session: {after:#?}"
    );
    let session = &after[&closed.session_id];
    assert_eq!(session.state, SessionState::Closed);
    assert_eq!(session.end, closed.end);
    assert_eq!(
        (session.counters.bytes_in, session.counters.bytes_out),
        (5_000, 9_000)
    );
    assert!(
        resent
            .iter()
            .all(|event| event.session_id.as_deref() == Some(closed.session_id.as_str()))
    );
}

#[test]
fn an_accounting_only_session_restored_after_a_restart_takes_its_stop() {
    use model::SessionChange::{Start, Stop};
    let mut first = Sessionizer::new(Vec::new());
    let mut start = vec![accounting(1, 100, None, "ppp-9", Start, None)];
    let open = final_sessions(&settled(&mut first, &mut start));
    let open: Vec<Session> = open.into_values().collect();
    let mut restarted = Sessionizer::new(open.clone());
    let mut stop = vec![accounting(2, 200, None, "ppp-9", Stop, Some((1, 2)))];
    let after = final_sessions(&settled(&mut restarted, &mut stop));
    assert_eq!(after.len(), 1);
    let session = &after[&open[0].session_id];
    assert_eq!(session.state, SessionState::Closed);
    assert_eq!(session.start, open[0].start);
}

/// The events the gateway's pppd parser makes of a real log (its golden file).
fn pppd_fixture(name: &str) -> Vec<Event> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/testdata/pppd")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            // The golden files leave out the original line.
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["original"] = serde_json::Value::from(line);
            serde_json::from_value(value).unwrap()
        })
        .collect()
}

/// User, virtual IP, state, cause, bytes in.
type Summary<'a> = (
    Option<&'a str>,
    Option<IpAddr>,
    SessionState,
    Option<TerminateCause>,
    u64,
);

#[test]
fn pppd_alone_makes_one_session_per_link() {
    let mut events = pppd_fixture("pap-and-failures.expected");
    let mut sessionizer = Sessionizer::new(Vec::new());
    let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
    let mut summary: Vec<Summary<'_>> = sessions
        .values()
        .map(|session| {
            (
                session.user_name(),
                session.virtual_ip,
                session.state,
                session.cause,
                session.counters.bytes_in,
            )
        })
        .collect();
    summary.sort_by_key(|row| row.0.map(str::to_owned));
    // Two PPP links came up; bob's and mallory's failed logins made none.
    assert_eq!(
        summary,
        [
            (
                Some("carol"),
                "192.168.42.11".parse().ok(),
                SessionState::Closed,
                Some(TerminateCause::AdminReset),
                78
            ),
            (
                Some("dave.example.net"),
                "172.17.3.1".parse().ok(),
                SessionState::Closed,
                Some(TerminateCause::LostService),
                3400
            ),
        ]
    );
}

#[test]
fn pppd_and_its_radius_accounting_are_one_session_beside_the_ipsec_transport_sa() {
    use model::SessionChange::{Start, Stop};
    // L2TP/IPsec: charon's transport-mode IKE_SA (unique id 1, no virtual IP, the client's
    // PSK identity) carries the L2TP tunnel; pppd's RADIUS plugin reports the PPP session
    // with NAS-Port 1 (the PPP unit, ppp1), which is not that IKE_SA.
    let gateway_event = |mut event: Event| {
        event.observer.hostname = Some("gw".to_owned());
        event
    };
    let transport = peer(1, "198.51.100.23", "198.51.100.23");
    let events = vec![
        gateway_event(event(
            1,
            0,
            ike(transport.clone(), SaChange::Connecting, None, None),
        )),
        gateway_event(event(2, 0, auth(transport.clone(), Outcome::Success))),
        gateway_event(event(
            3,
            1,
            ike(transport, SaChange::Established, None, None),
        )),
    ];
    let ppp = pppd_fixture("l2tp-lns-mschapv2.expected");
    let (start, stop) = (ppp[0].timestamp, ppp[ppp.len() - 1].timestamp);
    let to_seconds = |at: Timestamp| at.as_second() - 1_795_000_000;
    let radius = |seq, at, change, bytes| {
        let mut event = gateway_event(accounting(
            seq,
            to_seconds(at),
            Some(1),
            "5F3A2B1C00000001",
            change,
            bytes,
        ));
        if let EventBody::Session(session) = &mut event.body {
            session.virtual_ip = "192.168.42.10".parse().ok();
            session.duration_secs = (change == Stop).then_some(1998);
        }
        event
    };
    let accounting_events = [
        radius(101, start, Start, None),
        radius(102, stop, Stop, Some((1_048_576, 6_291_456))),
    ];
    for radius_first in [false, true] {
        let mut events = events.clone();
        if radius_first {
            events.extend(accounting_events.iter().cloned());
            events.extend(ppp.iter().cloned());
        } else {
            events.extend(ppp.iter().cloned());
            events.extend(accounting_events.iter().cloned());
        }
        let mut sessionizer = Sessionizer::new(Vec::new());
        let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
        check_l2tp_sessions(&sessions, radius_first);
    }
}

fn check_l2tp_sessions(sessions: &BTreeMap<String, Session>, radius_first: bool) {
    assert_eq!(
        sessions.len(),
        2,
        "radius first: {radius_first}: {sessions:#?}"
    );
    let ipsec = sessions
        .values()
        .find(|session| session.ike_sa_ids == [1])
        .expect("the IKE_SA's own session");
    assert!(ipsec.state.is_open());
    assert_eq!(ipsec.accounting_id, None);
    assert_eq!(ipsec.virtual_ip, None);
    let ppp = sessions
        .values()
        .find(|session| session.ike_sa_ids.is_empty())
        .expect("the PPP session");
    assert_eq!(ppp.user_name(), Some("alice"));
    assert_eq!(ppp.accounting_id.as_deref(), Some("5F3A2B1C00000001"));
    assert_eq!(ppp.virtual_ip, "192.168.42.10".parse().ok());
    assert_eq!(ppp.state, SessionState::Closed);
    assert_eq!(ppp.counters.bytes_in, 1_048_576);
}

#[test]
fn a_ppp_address_handed_out_again_is_a_new_session() {
    let mut first = pppd_fixture("l2tp-lns-mschapv2.expected");
    let last = first[first.len() - 1].timestamp;
    // The same link again an hour later: the pool gives the same address.
    let mut second = first.clone();
    for event in &mut second {
        event.timestamp += jiff::SignedDuration::from_hours(1);
        event.id = EventId::new("gw1/pppd", event.id.seq + 1_000, event.id.part);
    }
    assert!(second[0].timestamp > last);
    let mut sessionizer = Sessionizer::new(Vec::new());
    let mut sessions = final_sessions(&settled(&mut sessionizer, &mut first));
    sessions.extend(final_sessions(&settled(&mut sessionizer, &mut second)));
    assert_eq!(sessions.len(), 2, "{sessions:#?}");
    assert!(
        sessions
            .values()
            .all(|session| session.state == SessionState::Closed)
    );
}

#[test]
fn accounting_first_for_an_ike_sa_id_reused_after_a_charon_restart_is_one_new_session() {
    use model::SessionChange::{Start, Stop};
    let carol = peer(1, "carol", "192.0.2.13");
    let dave = peer(1, "dave", "192.0.2.14");
    let with_vip = |mut event: Event, ip: &str| {
        if let EventBody::Session(session) = &mut event.body {
            session.virtual_ip = ip.parse().ok();
            session.peer.identities.ike_id = Some("dave".to_owned());
        }
        event
    };
    let mut events = vec![
        event(1, 0, ike(carol.clone(), SaChange::Connecting, None, None)),
        event(2, 0, vip(carol.clone(), "10.99.0.1", LeaseChange::Assigned)),
        event(3, 0, ike(carol.clone(), SaChange::Established, None, None)),
        event(
            4,
            10,
            ike(
                carol,
                SaChange::Deleted,
                Some(TerminateCause::UserRequest),
                None,
            ),
        ),
        // charon restarted: dave gets IKE_SA 1 and the same address. RADIUS is faster
        // than the log.
        with_vip(
            accounting(101, 20, Some(1), "1795990054-1", Start, None),
            "10.99.0.1",
        ),
        event(5, 20, ike(dave.clone(), SaChange::Connecting, None, None)),
        event(6, 20, vip(dave.clone(), "10.99.0.1", LeaseChange::Assigned)),
        event(7, 20, ike(dave.clone(), SaChange::Established, None, None)),
        event(
            8,
            30,
            ike(
                dave,
                SaChange::Deleted,
                Some(TerminateCause::UserRequest),
                None,
            ),
        ),
        with_vip(
            accounting(102, 30, Some(1), "1795990054-1", Stop, Some((1, 2))),
            "10.99.0.1",
        ),
    ];
    let mut sessionizer = Sessionizer::new(Vec::new());
    let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
    let mut users: Vec<(Option<&str>, Vec<u64>, Option<&str>)> = sessions
        .values()
        .map(|session| {
            (
                session.user_name(),
                session.ike_sa_ids.clone(),
                session.accounting_id.as_deref(),
            )
        })
        .collect();
    users.sort();
    assert_eq!(
        users,
        [
            (Some("carol"), vec![1], None),
            (Some("dave"), vec![1], Some("1795990054-1")),
        ]
    );
}

#[test]
fn events_of_sessions_never_started_and_repeated_ends_are_counted() {
    use model::SessionChange::{Start, Stop};
    let ghost = peer(42, "ghost", "192.0.2.42");
    let mut events = vec![
        // Nothing began these: kept without a session, counted.
        event(1, 0, ike(ghost.clone(), SaChange::Deleted, None, None)),
        event(2, 0, child_closed(ghost, 1, 10, 20)),
        // A failed login and an IKE_SA coming up are no orphans.
        event(
            3,
            0,
            auth(peer(43, "mallory", "192.0.2.43"), Outcome::Failure),
        ),
    ];
    // A whole session, its end said twice by the VPN and twice by accounting.
    let mut scenario = scenario();
    let end = scenario
        .iter()
        .rev()
        .find(|e| matches!(&e.body, EventBody::IkeSa(ike) if ike.change == SaChange::Deleted))
        .cloned()
        .unwrap();
    scenario.push(end);
    scenario.push(accounting(101, 1, Some(1), "acct-1", Start, None));
    scenario.push(accounting(102, 91, Some(3), "acct-1", Stop, Some((1, 2))));
    scenario.push(accounting(103, 92, Some(3), "acct-1", Stop, Some((1, 2))));
    events.extend(scenario);
    let mut sessionizer = Sessionizer::new(Vec::new());
    let sessions = final_sessions(&settled(&mut sessionizer, &mut events));
    assert_eq!(sessions.len(), 1);
    let stats = sessionizer.stats();
    assert_eq!(stats.orphan_events, 2, "{stats:?}");
    assert_eq!(stats.repeated_ends, 2, "{stats:?}");
    assert_eq!(stats.sessions, 1);
}
