use std::collections::BTreeMap;

use jiff::Timestamp;
use model::{
    ApiRequest, Counters, Endpoint, Event, EventBody, EventId, Flow, Identities, Observer, Session,
    SessionState,
};
use proptest::prelude::*;

use super::*;

const VIP: &str = "10.10.0.5";

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("in range")
}

fn session(id: &str, user: &str, vip: &str, start: i64, end: Option<i64>) -> Session {
    Session {
        session_id: id.to_owned(),
        gateway: Some("gw1".to_owned()),
        connection: Some("rw".to_owned()),
        ike_sa_ids: vec![1],
        identities: Identities {
            eap_id: Some(user.to_owned()),
            ..Identities::default()
        },
        method: None,
        client: Endpoint::default(),
        client_geo: None,
        virtual_ip: Some(vip.parse().expect("ip")),
        start: at(start),
        end: end.map(at),
        state: if end.is_some() {
            SessionState::Closed
        } else {
            SessionState::Active
        },
        cause: None,
        counters: Counters::default(),
        child_sa_counters: Default::default(),
        rekey_count: 0,
        accounting_id: None,
        version: 1,
        updated: at(end.unwrap_or(start)),
        sources: None,
    }
}

fn flow(seq: u64, src: &str, secs: i64) -> Event {
    Event {
        id: EventId::new("gw1/capture", seq, 0),
        timestamp: at(secs),
        dataset: "tunnelwatch.flow".to_owned(),
        observer: Observer::default(),
        original: String::new(),
        session_id: None,
        source_geo: None,
        body: EventBody::Flow(Flow {
            source: Endpoint::new(src.parse().expect("ip"), Some(40_000)),
            destination: Endpoint::new("172.16.0.10".parse().expect("ip"), Some(443)),
            transport: "tcp".to_owned(),
            start: at(secs),
            end: at(secs + 1),
            source_bytes: 1,
            destination_bytes: 1,
            source_packets: 1,
            destination_packets: 1,
            tcp_flags: None,
            end_reason: None,
            session_join: None,
            user_name: None,
        }),
    }
}

fn request(seq: u64, client: &str, secs: i64) -> Event {
    Event {
        id: EventId::new("api/nginx", seq, 0),
        timestamp: at(secs),
        dataset: "nginx.access".to_owned(),
        observer: Observer::default(),
        original: String::new(),
        session_id: None,
        source_geo: None,
        body: EventBody::ApiRequest(ApiRequest {
            client_ip: Some(client.parse().expect("ip")),
            destination: Endpoint::default(),
            method: "GET".to_owned(),
            host: None,
            path: "/v1/orders".to_owned(),
            status: 200,
            response_bytes: None,
            duration_us: None,
            request_id: None,
            session_join: None,
            user_name: None,
        }),
    }
}

fn joined(event: &Event) -> (Option<&str>, Option<&str>, Option<SessionJoin>) {
    match &event.body {
        EventBody::Flow(flow) => (
            event.session_id.as_deref(),
            flow.user_name.as_deref(),
            flow.session_join,
        ),
        EventBody::ApiRequest(request) => (
            event.session_id.as_deref(),
            request.user_name.as_deref(),
            request.session_join,
        ),
        _ => (None, None, None),
    }
}

#[test]
fn a_reused_virtual_ip_joins_each_event_to_the_user_who_held_it_then() {
    let mut joiner = Joiner::new(
        JoinConfig::default(),
        &[
            session("s-alice", "alice", VIP, 0, Some(100)),
            session("s-bob", "bob", VIP, 110, None),
        ],
    );
    let mut events = vec![
        flow(1, VIP, 50),
        flow(2, VIP, 100),
        flow(3, VIP, 103),
        // Nearer to alice's last second (ended "at 100", so before 101) than to bob's start.
        flow(4, VIP, 105),
        request(5, VIP, 120),
        request(6, "::ffff:10.10.0.5", 130),
        // Beyond the tolerance of both.
        flow(7, VIP, -30),
    ];
    joiner.join_events(&mut events);
    let answers: Vec<_> = events.iter().map(joined).collect();
    use SessionJoin::{Matched, Unmatched};
    assert_eq!(
        answers,
        [
            (Some("s-alice"), Some("alice"), Some(Matched)),
            (Some("s-alice"), Some("alice"), Some(Matched)),
            (Some("s-alice"), Some("alice"), Some(Matched)),
            (Some("s-alice"), Some("alice"), Some(Matched)),
            (Some("s-bob"), Some("bob"), Some(Matched)),
            (Some("s-bob"), Some("bob"), Some(Matched)),
            (None, None, Some(Unmatched)),
        ]
    );
}

#[test]
fn a_session_logged_in_whole_seconds_holds_its_address_to_the_end_of_its_last_second() {
    // charon logs whole seconds: alice's session "ended at 100" ended before 101; bob's
    // "started at 101" started at or after 101.
    let mut joiner = Joiner::new(
        JoinConfig::default(),
        &[
            session("s-alice", "alice", VIP, 0, Some(100)),
            session("s-bob", "bob", VIP, 101, None),
        ],
    );
    let mut late_in_alices_last_second = flow(1, VIP, 100);
    if let EventBody::Flow(f) = &mut late_in_alices_last_second.body {
        f.start = at(100) + jiff::SignedDuration::from_millis(900);
    }
    let mut events = vec![late_in_alices_last_second, flow(2, VIP, 101)];
    joiner.join_events(&mut events);
    assert_eq!(joined(&events[0]).1, Some("alice"));
    assert_eq!(joined(&events[1]).1, Some("bob"));
}

#[test]
fn addresses_outside_the_pool_are_not_looked_up_and_the_vpn_side_of_a_flow_is_used() {
    let config = JoinConfig {
        vpn_pool: vec!["10.10.0.0/16".parse().expect("net")],
        ..JoinConfig::default()
    };
    let mut joiner = Joiner::new(config, &[session("s-alice", "alice", VIP, 0, None)]);
    // A flow the API server opened towards the client: the client is the destination.
    let mut reverse = flow(1, "172.16.0.10", 10);
    if let EventBody::Flow(f) = &mut reverse.body {
        f.destination = Endpoint::new(VIP.parse().expect("ip"), Some(5000));
    }
    let mut events = vec![reverse, request(2, "192.0.2.7", 10)];
    joiner.join_events(&mut events);
    assert_eq!(
        joined(&events[0]),
        (Some("s-alice"), Some("alice"), Some(SessionJoin::Matched))
    );
    assert_eq!(joined(&events[1]), (None, None, Some(SessionJoin::NotVpn)));
    assert_eq!(joiner.stats().not_vpn, 1);
}

#[test]
fn an_event_before_its_session_is_joined_when_the_session_arrives() {
    let mut joiner = Joiner::new(JoinConfig::default(), &[]);
    let mut events = vec![request(1, VIP, 50), flow(2, VIP, 60)];
    joiner.join_events(&mut events);
    assert_eq!(joined(&events[0]).2, Some(SessionJoin::Unmatched));
    let updates = joiner.update_sessions(&[session("s-alice", "alice", VIP, 40, None)], at(70));
    let mut got: Vec<_> = updates
        .into_iter()
        .map(|u| (u.event_id, u.target, u.session_id, u.user_name, u.join))
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        [
            (
                "api/nginx:1".to_owned(),
                JoinTarget::ApiRequests,
                Some("s-alice".to_owned()),
                Some("alice".to_owned()),
                SessionJoin::Late
            ),
            (
                "gw1/capture:2".to_owned(),
                JoinTarget::Flows,
                Some("s-alice".to_owned()),
                Some("alice".to_owned()),
                SessionJoin::Late
            ),
        ]
    );
    // Nothing changes the second time.
    assert!(
        joiner
            .update_sessions(&[session("s-alice", "alice", VIP, 40, None)], at(71))
            .is_empty()
    );
}

#[test]
fn pending_events_are_bounded_and_the_dropped_are_counted() {
    let config = JoinConfig {
        max_pending: 10,
        ..JoinConfig::default()
    };
    let mut joiner = Joiner::new(config, &[]);
    let mut events: Vec<Event> = (0..25).map(|i| request(i, VIP, 0)).collect();
    joiner.join_events(&mut events);
    let stats = joiner.stats();
    assert!(stats.pending <= 10, "{stats:?}");
    assert!(stats.pending_dropped > 0, "{stats:?}");
    // Every event is either still pending or counted as dropped.
    assert_eq!(stats.pending + stats.pending_dropped, 25, "{stats:?}");
    assert_eq!(stats.unmatched, 25);
    // A resent batch is bounded the same way.
    let mut again: Vec<Event> = (15..25).map(|i| request(i, VIP, 0)).collect();
    joiner.join_events(&mut again);
    let stats = joiner.stats();
    assert!(stats.pending <= 10, "{stats:?}");
    assert_eq!(stats.pending + stats.pending_dropped, 35, "{stats:?}");
}

/// Over the bound, matched events that a late session merely might take are forgotten
/// before unmatched ones, which only a late session can ever join.
#[test]
fn unmatched_events_outlive_tentative_ones_when_pending_overflows() {
    let config = JoinConfig {
        max_pending: 10,
        ..JoinConfig::default()
    };
    let mut joiner = Joiner::new(config, &[session("s-alice", "alice", VIP, 0, None)]);
    const OTHER: &str = "10.10.0.6";
    let mut unmatched: Vec<Event> = (0..4).map(|i| request(i, OTHER, 10)).collect();
    // Inside alice's open session: matched, and kept for a late session that might take them.
    let mut tentative: Vec<Event> = (4..30).map(|i| request(i, VIP, 10)).collect();
    joiner.join_events(&mut unmatched);
    joiner.join_events(&mut tentative);
    let stats = joiner.stats();
    assert!(stats.pending <= 10, "{stats:?}");
    assert_eq!(stats.pending + stats.pending_dropped, 30, "{stats:?}");
    assert_eq!(stats.unmatched_dropped, 0, "{stats:?}");
    let updates = joiner.update_sessions(&[session("s-bob", "bob", OTHER, 5, None)], at(20));
    assert_eq!(updates.len(), 4, "{updates:?}");

    // Only unmatched events left: they go too, and are counted as such.
    let mut more: Vec<Event> = (30..60).map(|i| request(i, "10.10.0.7", 10)).collect();
    joiner.join_events(&mut more);
    let stats = joiner.stats();
    assert!(stats.pending <= 10, "{stats:?}");
    assert!(stats.unmatched_dropped > 0, "{stats:?}");
}

#[test]
fn settled_events_and_old_leases_are_forgotten() {
    let config = JoinConfig {
        late_join_secs: 300,
        lease_retention_secs: 600,
        ..JoinConfig::default()
    };
    let mut joiner = Joiner::new(config, &[session("s-alice", "alice", VIP, 0, Some(100))]);
    let mut events = vec![flow(1, "10.10.0.9", 10), flow(2, VIP, 99)];
    joiner.join_events(&mut events);
    assert_eq!(joiner.stats().pending, 2);
    let mut later = vec![flow(3, "10.10.0.77", 2000)];
    joiner.join_events(&mut later);
    let stats = joiner.stats();
    assert_eq!((stats.pending, stats.leases), (1, 0), "{stats:?}");
}

/// One thing that arrives at the collector: a session snapshot or an event.
#[derive(Debug, Clone)]
enum Arrival {
    Session(Session),
    Event(Event),
}

/// A random world: a few virtual IPs, each handed to users one after another (with gaps,
/// sometimes none), and events at random times.
fn world() -> impl Strategy<Value = (Vec<Session>, Vec<(u8, i64)>)> {
    let leases = proptest::collection::vec((0u8..3, 1i64..40, 0i64..15), 1..12);
    let events = proptest::collection::vec((0u8..3, 0i64..400), 1..60);
    (leases, events).prop_map(|(leases, events)| {
        let mut next_start = [0i64; 3];
        let mut sessions = Vec::new();
        for (i, (vip, length, gap)) in leases.into_iter().enumerate() {
            let start = next_start[vip as usize] + gap;
            let end = start + length;
            next_start[vip as usize] = end;
            sessions.push(session(
                &format!("s{i:02}"),
                &format!("user{i}"),
                &format!("10.10.0.{vip}"),
                start,
                Some(end),
            ));
        }
        (sessions, events)
    })
}

/// The answer with every session known: the containing lease that started last, else the
/// nearest within the tolerance (ties: the later start).
fn oracle(sessions: &[Session], vip: &str, t: i64, skew: i64) -> Option<String> {
    sessions
        .iter()
        .filter(|s| s.virtual_ip == vip.parse().ok())
        .filter_map(|s| {
            // In nanoseconds; an end in whole seconds holds to the end of that second.
            const NS: i64 = 1_000_000_000;
            let t = t * NS;
            let start = (s.start.as_second() - 1_800_000_000) * NS;
            let end = s
                .end
                .map_or(i64::MAX, |e| (e.as_second() - 1_800_000_000) * NS + NS - 1);
            let distance = if t < start {
                start - t
            } else if t > end {
                t - end
            } else {
                0
            };
            (distance <= skew * NS).then_some((
                std::cmp::Reverse(distance),
                start,
                s.session_id.clone(),
            ))
        })
        .max()
        .map(|(_, _, id)| id)
}

proptest! {
    /// Whatever the arrival order within the clock-skew window (sessions open, then close;
    /// everything displaced by up to the tolerance), every event ends up joined to the same
    /// session as if all sessions had been known first; no event is lost or joined twice.
    #[test]
    fn the_join_does_not_depend_on_arrival_order_within_the_skew_window(
        (sessions, events) in world(),
        jitter in proptest::collection::vec(-5i64..=5, 200),
    ) {
        let skew = 5;
        let mut arrivals: Vec<(i64, usize, Arrival)> = Vec::new();
        let mut jitter = jitter.into_iter().cycle();
        let mut order = 0;
        let mut push = |time: i64, arrival: Arrival, jitter: &mut dyn Iterator<Item = i64>| {
            order += 1;
            arrivals.push((time + jitter.next().unwrap_or(0), order, arrival));
        };
        for s in &sessions {
            let mut open = s.clone();
            open.end = None;
            open.state = SessionState::Active;
            let start = s.start.as_second() - 1_800_000_000;
            let end = s.end.map_or(start, |e| e.as_second() - 1_800_000_000);
            push(start, Arrival::Session(open), &mut jitter);
            push(end, Arrival::Session(s.clone()), &mut jitter);
        }
        for (seq, (vip, t)) in events.iter().enumerate() {
            push(*t, Arrival::Event(flow(seq as u64, &format!("10.10.0.{vip}"), *t)), &mut jitter);
        }
        arrivals.sort_by_key(|(time, order, _)| (*time, *order));
        // A session's close never overtakes its own opening.
        let mut seen_open = std::collections::HashSet::new();
        let mut fixed: Vec<Arrival> = Vec::new();
        let mut deferred: Vec<Session> = Vec::new();
        for (_, _, arrival) in arrivals {
            match arrival {
                Arrival::Session(s) if s.end.is_some() && !seen_open.contains(&s.session_id) => deferred.push(s),
                Arrival::Session(s) => {
                    if s.end.is_none() {
                        seen_open.insert(s.session_id.clone());
                        if let Some(i) = deferred.iter().position(|d| d.session_id == s.session_id) {
                            let closed = deferred.remove(i);
                            fixed.push(Arrival::Session(s));
                            fixed.push(Arrival::Session(closed));
                            continue;
                        }
                    }
                    fixed.push(Arrival::Session(s));
                }
                event => fixed.push(event),
            }
        }
        let config = JoinConfig { clock_skew_secs: skew as u64, ..JoinConfig::default() };
        let mut joiner = Joiner::new(config, &[]);
        let mut answers: BTreeMap<String, Option<String>> = BTreeMap::new();
        for arrival in fixed {
            match arrival {
                Arrival::Session(s) => {
                    for update in joiner.update_sessions(&[s], at(0)) {
                        prop_assert!(answers.contains_key(&update.event_id), "update for an unknown event");
                        answers.insert(update.event_id, update.session_id);
                    }
                }
                Arrival::Event(mut event) => {
                    let id = event.id.to_string();
                    joiner.join_events(std::slice::from_mut(&mut event));
                    prop_assert!(answers.insert(id, event.session_id.clone()).is_none(), "joined twice");
                }
            }
        }
        prop_assert_eq!(answers.len(), events.len());
        for (seq, (vip, t)) in events.iter().enumerate() {
            let id = format!("gw1/capture:{seq}");
            let expected = oracle(&sessions, &format!("10.10.0.{vip}"), *t, skew);
            prop_assert_eq!(answers.get(&id).cloned().flatten(), expected, "event {} at {} on .{}", id, t, vip);
        }
    }
}

fn stored_flow(seq: u64, src: &str, secs: i64) -> model::StoredUnmatched {
    model::StoredUnmatched {
        target: JoinTarget::Flows,
        event_id: EventId::new("gw1/capture", seq, 0).to_string(),
        timestamp: at(secs),
        at: at(secs),
        addresses: [src.parse().ok(), "172.16.0.10".parse().ok()],
    }
}

#[test]
fn after_a_restart_stored_unmatched_events_are_claimed_by_their_late_session() {
    let config = JoinConfig {
        vpn_pool: vec!["10.10.0.0/16".parse().expect("net")],
        ..JoinConfig::default()
    };
    let mut joiner = Joiner::new(config, &[]);
    let restart = model::JoinRestart {
        leases: Vec::new(),
        unmatched: vec![
            stored_flow(1, VIP, 100),
            // A stored id that does not read, and a row outside the pool: counted, skipped.
            model::StoredUnmatched {
                event_id: "garbage".to_owned(),
                ..stored_flow(2, VIP, 100)
            },
            model::StoredUnmatched {
                addresses: ["192.0.2.1".parse().ok(), None],
                ..stored_flow(3, VIP, 100)
            },
        ],
    };
    assert!(joiner.restore(restart, at(500)).is_empty());
    assert_eq!(joiner.stats().restore_skipped, 2);
    assert_eq!(joiner.stats().pending, 1);
    let updates =
        joiner.update_sessions(&[session("s-late", "alice", VIP, 90, Some(200))], at(600));
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].event_id, "gw1/capture:1");
    assert_eq!(updates[0].session_id.as_deref(), Some("s-late"));
    assert_eq!(updates[0].user_name.as_deref(), Some("alice"));
    assert_eq!(updates[0].join, SessionJoin::Late);
    assert_eq!(updates[0].timestamp, at(100));
}

#[test]
fn restored_leases_join_late_events_and_settle_what_a_crash_left_unmatched() {
    let open = session("s-open", "bob", "10.10.0.9", 0, None);
    let mut joiner = Joiner::new(JoinConfig::default(), std::slice::from_ref(&open));
    let restart = model::JoinRestart {
        leases: vec![
            model::StoredLease {
                session_id: "s-ended".to_owned(),
                user_name: Some("alice".to_owned()),
                virtual_ip: VIP.parse().expect("ip"),
                start: at(0),
                end: Some(at(100)),
            },
            // Known already (the joiner started with it): the newer snapshot stays.
            model::StoredLease {
                session_id: "s-open".to_owned(),
                user_name: Some("mallory".to_owned()),
                virtual_ip: "10.10.0.99".parse().expect("ip"),
                start: at(0),
                end: Some(at(1)),
            },
        ],
        // Stored unmatched, although the ended session covers it: its correction was lost.
        unmatched: vec![stored_flow(7, VIP, 50)],
    };
    let updates = joiner.restore(restart, at(1_000));
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0].session_id.as_deref(), Some("s-ended"));
    assert_eq!(updates[0].event_id, "gw1/capture:7");

    let mut events = vec![flow(8, VIP, 60), flow(9, "10.10.0.9", 60)];
    joiner.join_events(&mut events);
    let joined: Vec<(Option<&str>, Option<SessionJoin>)> = events
        .iter()
        .map(|event| match &event.body {
            EventBody::Flow(flow) => (event.session_id.as_deref(), flow.session_join),
            _ => (None, None),
        })
        .collect();
    assert_eq!(
        joined,
        [
            (Some("s-ended"), Some(SessionJoin::Matched)),
            (Some("s-open"), Some(SessionJoin::Matched)),
        ]
    );
}
