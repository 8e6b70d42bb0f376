//! One login, several sources: the VPN's own events (a charon log, its syslog copy, VICI)
//! and RADIUS accounting, in every order of arrival.

use std::collections::{BTreeMap, HashMap};

use model::{
    Auth, AuthMethod, ChildSaEvent, Counters, Endpoint, Event, EventBody, EventId, Identities,
    IkeSaEvent, LeaseChange, Observer, Outcome, Peer, SaChange, Session, SessionChange,
    SessionEvent, SessionState, TerminateCause, VirtualIpEvent,
};
use proptest::prelude::*;

use super::super::*;
use super::{now, settled};

const T0: i64 = 1_796_000_000;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(T0 + second).unwrap()
}

/// The login an event of the generator belongs to (its `original` says).
fn owner(event: &Event) -> u64 {
    event
        .original
        .rsplit_once(" login ")
        .and_then(|(_, login)| login.parse().ok())
        .unwrap_or(u64::MAX)
}

fn observed(source: &str, seq: u64, second: i64, dataset: &str, body: EventBody) -> Event {
    Event {
        id: EventId::new(source, seq, 0),
        timestamp: at(second),
        dataset: dataset.to_owned(),
        observer: Observer {
            hostname: Some("gw".to_owned()),
            product: None,
        },
        original: format!("{source} {seq}"),
        session_id: None,
        source_geo: None,
        body,
    }
}

/// How a login ends, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    ByClient,
    ByGateway,
    DeadPeer,
    StillUp,
}

/// One login as the generator makes it.
#[derive(Debug, Clone)]
struct Login {
    idx: u64,
    /// When it begins to negotiate (seconds after T0), and how long it is up.
    t0: i64,
    up: i64,
    /// Every login is one user's, from one client, with the pool's one address.
    shared: bool,
    eap: bool,
    rekey: bool,
    ending: Ending,
    /// The VPN's own events report CHILD_SA byte counts (VICI on child-updown; a charon log
    /// only when the client deletes its CHILD_SA first).
    vpn_bytes: bool,
    /// RADIUS accounting reports this login.
    accounting: bool,
}

impl Login {
    fn start(&self) -> i64 {
        self.t0
    }
    /// The user's index: one user for all logins when they are `shared`.
    fn who(&self) -> u64 {
        if self.shared { 0 } else { self.idx }
    }
    fn rekey_at(&self) -> i64 {
        self.t0 + 1 + (self.up - 1) / 2
    }
    fn end_at(&self) -> i64 {
        self.t0 + 1 + self.up
    }
    fn ike(&self) -> u64 {
        self.idx + 1
    }
    fn rekeyed_ike(&self) -> u64 {
        self.idx + 1_000
    }
    fn newest_ike(&self) -> u64 {
        if self.rekey {
            self.rekeyed_ike()
        } else {
            self.ike()
        }
    }
    fn user(&self) -> String {
        format!("user{}", self.who())
    }
    fn virtual_ip(&self) -> std::net::IpAddr {
        format!("10.99.0.{}", self.who() + 1).parse().unwrap()
    }
    fn peer(&self, ike: u64) -> Peer {
        Peer {
            connection: Some(if self.eap { "rw-eap" } else { "rw-psk" }.to_owned()),
            ike_sa_id: Some(ike),
            client: Endpoint::new(
                format!("192.0.2.{}", 10 + self.who()).parse().unwrap(),
                Some(4500),
            ),
            server: Endpoint::new("192.0.2.1".parse().unwrap(), Some(4500)),
            identities: Identities {
                ike_id: Some(format!("client{}@vpn.test", self.who())),
                eap_id: self.eap.then(|| self.user()),
                ..Identities::default()
            },
        }
    }
    fn user_name(&self) -> String {
        if self.eap {
            self.user()
        } else {
            format!("client{}@vpn.test", self.who())
        }
    }
    fn vpn_counters(&self) -> Counters {
        Counters {
            bytes_in: 1_000 + self.idx,
            bytes_out: 2_000 + self.idx,
            packets_in: Some(10),
            packets_out: Some(20),
        }
    }
    fn accounting_counters(&self) -> Counters {
        Counters {
            bytes_in: 1_500 + self.idx,
            bytes_out: 1_800 + self.idx,
            packets_in: Some(15),
            packets_out: Some(18),
        }
    }

    /// What charon's log says, in its order (`source` names the log or its syslog copy).
    fn vpn_events(&self, source: &str, seq: &mut u64) -> Vec<Event> {
        let t = self.start();
        let mut bodies: Vec<(i64, EventBody)> = vec![
            (
                t,
                ike(self.peer(self.ike()), SaChange::Connecting, None, None),
            ),
            (
                t + 1,
                EventBody::Auth(Auth {
                    peer: self.peer(self.ike()),
                    method: if self.eap {
                        AuthMethod::EapMschapv2
                    } else {
                        AuthMethod::Psk
                    },
                    outcome: Outcome::Success,
                    failure: None,
                }),
            ),
            (
                t + 1,
                EventBody::VirtualIp(VirtualIpEvent {
                    peer: self.peer(self.ike()),
                    ip: self.virtual_ip(),
                    change: LeaseChange::Assigned,
                }),
            ),
            (
                t + 1,
                ike(self.peer(self.ike()), SaChange::Established, None, None),
            ),
        ];
        if self.rekey {
            bodies.push((
                self.rekey_at(),
                ike(
                    self.peer(self.ike()),
                    SaChange::Rekeyed,
                    None,
                    Some(self.rekeyed_ike()),
                ),
            ));
        }
        let newest = self.peer(self.newest_ike());
        if self.ending != Ending::StillUp {
            if self.vpn_bytes {
                bodies.push((
                    self.end_at(),
                    EventBody::ChildSa(ChildSaEvent {
                        peer: newest.clone(),
                        change: SaChange::Deleted,
                        name: Some("net".to_owned()),
                        child_sa_id: Some(self.idx * 10 + 1),
                        spi_in: None,
                        spi_out: None,
                        local_ts: None,
                        remote_ts: None,
                        counters: Some(self.vpn_counters()),
                        proposal: None,
                    }),
                ));
            }
            let (change, cause) = match self.ending {
                Ending::ByClient => (SaChange::Deleted, TerminateCause::UserRequest),
                Ending::ByGateway => (SaChange::Deleted, TerminateCause::AdminReset),
                Ending::DeadPeer | Ending::StillUp => (SaChange::Lost, TerminateCause::LostService),
            };
            bodies.push((
                self.end_at(),
                ike(newest.clone(), change, Some(cause), None),
            ));
            bodies.push((
                self.end_at(),
                EventBody::VirtualIp(VirtualIpEvent {
                    peer: newest,
                    ip: self.virtual_ip(),
                    change: LeaseChange::Released,
                }),
            ));
        }
        bodies
            .into_iter()
            .map(|(second, body)| {
                *seq += 1;
                let mut event = observed(source, *seq, second, "strongswan.charon", body);
                event.original.push_str(&format!(" login {}", self.idx));
                event
            })
            .collect()
    }

    /// What the agent's VICI source reports: no negotiation, the login at the instant the
    /// IKE_SA is up (auth, lease, IKE_SA at once), the rest as the log has it.
    fn vici_events(&self, seq: &mut u64) -> Vec<Event> {
        self.vpn_events("gw/vici@1", seq)
            .into_iter()
            .filter(|event| {
                !matches!(&event.body, EventBody::IkeSa(ike) if ike.change == SaChange::Connecting)
            })
            .map(|mut event| {
                event.timestamp = event.timestamp.max(at(self.start() + 1));
                event
            })
            .collect()
    }

    /// What charon's eap-radius accounting says: Start, an Interim-Update after the rekey,
    /// Stop (always User-Request, whoever ended it).
    fn accounting_events(&self, seq: &mut u64) -> Vec<Event> {
        if !self.accounting {
            return Vec::new();
        }
        let t = self.start();
        let record = |second: i64, change: SessionChange, ike: u64, counters: Option<Counters>| {
            EventBody::Session(SessionEvent {
                peer: Peer {
                    connection: self.peer(ike).connection,
                    ike_sa_id: Some(ike),
                    client: self.peer(ike).client,
                    server: Endpoint::default(),
                    identities: Identities {
                        // User-Name: the EAP identity when there was one, else the IKE id.
                        ike_id: Some(self.user_name()),
                        ..Identities::default()
                    },
                },
                change,
                virtual_ip: Some(self.virtual_ip()),
                accounting_id: Some(format!("1796000000-{}", self.ike())),
                counters,
                duration_secs: Some(u64::try_from(second - (t + 1)).unwrap()),
                cause: (change == SessionChange::Stop).then_some(match self.ending {
                    Ending::DeadPeer => TerminateCause::LostService,
                    _ => TerminateCause::UserRequest,
                }),
            })
        };
        let mut bodies = vec![(t + 1, record(t + 1, SessionChange::Start, self.ike(), None))];
        let half = Counters {
            bytes_in: 10,
            bytes_out: 20,
            packets_in: Some(1),
            packets_out: Some(2),
        };
        bodies.push((
            self.rekey_at(),
            record(
                self.rekey_at(),
                SessionChange::Update,
                self.newest_ike(),
                Some(half),
            ),
        ));
        if self.ending != Ending::StillUp {
            bodies.push((
                self.end_at(),
                record(
                    self.end_at(),
                    SessionChange::Stop,
                    self.newest_ike(),
                    Some(self.accounting_counters()),
                ),
            ));
        }
        bodies
            .into_iter()
            .map(|(second, body)| {
                *seq += 1;
                let mut event = observed("gw/radius@1", *seq, second, "radius.accounting", body);
                event.original.push_str(&format!(" login {}", self.idx));
                event
            })
            .collect()
    }

    /// The session this login must be, whatever the order (its id aside).
    fn expected(&self) -> Summary {
        let (state, cause) = match self.ending {
            Ending::ByClient => (SessionState::Closed, Some(TerminateCause::UserRequest)),
            Ending::ByGateway => (SessionState::Closed, Some(TerminateCause::AdminReset)),
            Ending::DeadPeer => (SessionState::Lost, Some(TerminateCause::LostService)),
            Ending::StillUp => (SessionState::Active, None),
        };
        let mut counters = Counters::default();
        if self.vpn_bytes && self.ending != Ending::StillUp {
            counters = self.vpn_counters();
        }
        if self.accounting {
            let accounting = if self.ending == Ending::StillUp {
                Counters {
                    bytes_in: 10,
                    bytes_out: 20,
                    packets_in: Some(1),
                    packets_out: Some(2),
                }
            } else {
                self.accounting_counters()
            };
            counters = larger(counters, Some(accounting));
        }
        let mut ike_sa_ids = vec![self.ike()];
        if self.rekey {
            ike_sa_ids.push(self.rekeyed_ike());
        }
        Summary {
            user: Some(self.user_name()),
            virtual_ip: Some(self.virtual_ip()),
            start: at(self.start() + 1),
            end: (self.ending != Ending::StillUp).then(|| at(self.end_at())),
            state: state.as_str(),
            cause: cause.map(TerminateCause::as_str),
            ike_sa_ids,
            rekey_count: u32::from(self.rekey),
            accounting_id: self
                .accounting
                .then(|| format!("1796000000-{}", self.ike())),
            method: Some(
                if self.eap {
                    AuthMethod::EapMschapv2
                } else {
                    AuthMethod::Psk
                }
                .as_str(),
            ),
            bytes: (counters.bytes_in, counters.bytes_out),
        }
    }
}

fn ike(
    peer: Peer,
    change: SaChange,
    cause: Option<TerminateCause>,
    new_ike_sa_id: Option<u64>,
) -> EventBody {
    EventBody::IkeSa(IkeSaEvent {
        peer,
        change,
        new_ike_sa_id,
        cause,
        proposal: None,
    })
}

/// A session as an analyst reads it, its id and version aside.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Summary {
    user: Option<String>,
    virtual_ip: Option<std::net::IpAddr>,
    start: Timestamp,
    end: Option<Timestamp>,
    state: &'static str,
    cause: Option<&'static str>,
    ike_sa_ids: Vec<u64>,
    rekey_count: u32,
    accounting_id: Option<String>,
    method: Option<&'static str>,
    bytes: (u64, u64),
}

impl Summary {
    fn of(session: &Session) -> Summary {
        Summary {
            user: session.user_name().map(str::to_owned),
            virtual_ip: session.virtual_ip,
            start: session.start,
            end: session.end,
            state: session.state.as_str(),
            cause: session.cause.map(TerminateCause::as_str),
            ike_sa_ids: session.ike_sa_ids.clone(),
            rekey_count: session.rekey_count,
            accounting_id: session.accounting_id.clone(),
            method: session.method.map(AuthMethod::as_str),
            bytes: (session.counters.bytes_in, session.counters.bytes_out),
        }
    }
}

/// What a run leaves: the sessions, and the session id of every event after the corrections.
struct Outcome2 {
    sessions: BTreeMap<String, Session>,
    stamps: HashMap<String, Option<String>>,
}

/// Feeds `batches` in order (each at the wall clock `now`), then ends the input.
fn run(batches: Vec<Vec<Event>>) -> Outcome2 {
    run_with_restart(batches, None)
}

/// [`run`], with the process restarting before batch `restart` (if there is one): the new
/// sessionizer starts from the sessions shown so far and the last checkpoint, as the store
/// hands them back.
fn run_with_restart(batches: Vec<Vec<Event>>, restart: Option<usize>) -> Outcome2 {
    let mut sessionizer = Sessionizer::new(Vec::new());
    let mut sessions = BTreeMap::new();
    let mut stamps = HashMap::new();
    let mut corrections = Vec::new();
    let mut checkpoint = None;
    for (idx, mut batch) in batches.into_iter().enumerate() {
        if restart == Some(idx) {
            sessionizer = Sessionizer::restore(
                SessionConfig::default(),
                sessions.values().cloned().collect(),
                checkpoint.as_ref(),
                now(),
            );
        }
        for session in sessionizer.apply(&mut batch, now()) {
            sessions.insert(session.session_id.clone(), session);
        }
        for event in &batch {
            stamps.insert(event.id.to_string(), event.session_id.clone());
        }
        corrections.extend(sessionizer.take_corrections());
        if let Some(newer) = sessionizer.checkpoint() {
            checkpoint = Some(newer);
        }
    }
    for session in sessionizer.finish(now()) {
        sessions.insert(session.session_id.clone(), session);
    }
    corrections.extend(sessionizer.take_corrections());
    corrections.sort_by_key(|correction| correction.decided);
    for correction in corrections {
        assert_eq!(correction.target, JoinTarget::Events);
        stamps.insert(correction.event_id, correction.session_id);
    }
    Outcome2 { sessions, stamps }
}

/// Merges streams in the order `picks` says (an index into the streams still not empty),
/// keeping each stream's own order.
fn merge(mut streams: Vec<Vec<Event>>, picks: &[usize]) -> Vec<Event> {
    for stream in &mut streams {
        stream.reverse();
    }
    let mut merged = Vec::new();
    let mut picks = picks.iter().cycle();
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|idx| !streams[*idx].is_empty())
            .collect();
        if open.is_empty() {
            break;
        }
        let pick = picks.next().copied().unwrap_or(0) % open.len();
        if let Some(event) = streams[open[pick]].pop() {
            merged.push(event);
        }
    }
    merged
}

/// Cuts events into batches after the positions in `cuts`.
fn cut(merged: Vec<Event>, cuts: &[usize]) -> Vec<Vec<Event>> {
    let mut batches = Vec::new();
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (merged.len() + 1)).collect();
    cuts.sort_unstable();
    let mut rest = merged;
    let mut taken = 0;
    for cut in cuts {
        let tail = rest.split_off(cut - taken);
        taken = cut;
        batches.push(std::mem::replace(&mut rest, tail));
    }
    batches.push(rest);
    batches
}

fn check(logins: &[Login], outcome: &Outcome2, all: &[Event]) -> Result<(), TestCaseError> {
    let mut got: Vec<Summary> = outcome.sessions.values().map(Summary::of).collect();
    got.sort();
    let mut expected: Vec<Summary> = logins.iter().map(Login::expected).collect();
    expected.sort();
    prop_assert_eq!(&got, &expected, "one session per login, whatever the order");
    // Every event of a login carries its session's id; the session exists.
    for event in all {
        let stamped = outcome.stamps.get(&event.id.to_string()).cloned().flatten();
        let Some(stamped) = stamped else {
            prop_assert!(
                matches!(&event.body, EventBody::IkeSa(ike) if ike.change == SaChange::Connecting),
                "event {} has no session",
                event.id
            );
            continue;
        };
        let session = outcome.sessions.get(&stamped);
        prop_assert!(
            session.is_some(),
            "event {} names no session: {stamped}",
            event.id
        );
    }
    // And all events of one login name one session, another one than any other login's.
    let mut by_login: BTreeMap<u64, std::collections::BTreeSet<String>> = BTreeMap::new();
    for event in all {
        if let Some(Some(stamped)) = outcome.stamps.get(&event.id.to_string()) {
            let login = owner(event);
            by_login.entry(login).or_default().insert(stamped.clone());
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for (login, ids) in by_login {
        prop_assert_eq!(
            ids.len(),
            1,
            "login {} has events in several sessions: {:?}",
            login,
            ids
        );
        prop_assert!(
            seen.insert(ids.into_iter().next()),
            "two logins share a session"
        );
    }
    Ok(())
}

fn logins() -> impl Strategy<Value = Vec<Login>> {
    let ending = prop_oneof![
        Just(Ending::ByClient),
        Just(Ending::ByGateway),
        Just(Ending::DeadPeer),
        Just(Ending::StillUp),
    ];
    (
        proptest::collection::vec(
            (
                any::<bool>(),
                any::<bool>(),
                ending,
                any::<bool>(),
                proptest::bool::weighted(0.8),
            ),
            1..4,
        ),
        // Seconds between logins: some in one breath (logs have whole seconds), some apart,
        // some longer apart than closed sessions are kept (a batch may span them all).
        prop_oneof![Just(3i64), Just(100i64), Just(700i64)],
        any::<bool>(),
    )
        .prop_map(|(logins, gap, shared)| {
            let n = logins.len();
            logins
                .into_iter()
                .enumerate()
                .map(|(idx, (eap, rekey, ending, vpn_bytes, accounting))| Login {
                    idx: idx as u64,
                    t0: idx as i64 * gap,
                    up: gap - 2,
                    shared,
                    // One user and one address: every login but the last ends before the
                    // next (an address has one holder at a time).
                    ending: if shared && idx + 1 < n && ending == Ending::StillUp {
                        Ending::ByClient
                    } else {
                        ending
                    },
                    eap,
                    rekey,
                    vpn_bytes,
                    accounting,
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The charon log (or what VICI reports), a syslog copy of it (other event ids, the same
    /// lines) and RADIUS accounting, interleaved in any order, cut into any batches, with a
    /// restart of the collector between two of them: one session per login,
    /// each with its virtual IP, end cause, rekey count, IKE_SA ids, accounting id and bytes
    /// from whichever source reports them, and every event on its session.
    #[test]
    fn every_interleaving_of_the_sources_gives_one_session_per_login(
        logins in logins(),
        vici in any::<bool>(),
        syslog_copy in any::<bool>(),
        picks in proptest::collection::vec(0usize..3, 1..64),
        cuts in proptest::collection::vec(0usize..200, 0..6),
        restart in proptest::option::of(0usize..7),
    ) {
        let (mut log_seq, mut copy_seq, mut radius_seq) = (0, 0, 0);
        // Each login's events as each source reports them.
        let per_login: Vec<Vec<Vec<Event>>> = logins
            .iter()
            .map(|login| {
                let mut streams = vec![
                    if vici {
                        login.vici_events(&mut log_seq)
                    } else {
                        login.vpn_events("gw/charon@1", &mut log_seq)
                    },
                    login.accounting_events(&mut radius_seq),
                ];
                if syslog_copy {
                    streams.push(login.vpn_events("gw/syslog@1", &mut copy_seq));
                }
                streams
            })
            .collect();
        let all: Vec<Event> = per_login.iter().flatten().flatten().cloned().collect();
        let span = logins.iter().map(Login::end_at).max().unwrap_or(0);
        // Sources lag each other by at most the grace closed sessions are kept (in event
        // time): within it, in any order; beyond it, each login's sources in any order.
        let merged = if span < CLOSED_GRACE_SECS {
            let mut streams = vec![Vec::new(); per_login[0].len()];
            for login in per_login {
                for (stream, events) in streams.iter_mut().zip(login) {
                    stream.extend(events);
                }
            }
            merge(streams, &picks)
        } else {
            per_login
                .into_iter()
                .flat_map(|streams| merge(streams, &picks))
                .collect()
        };
        let outcome = run_with_restart(cut(merged, &cuts), restart);
        check(&logins, &outcome, &all)?;
    }
}

#[test]
fn accounting_first_waits_for_the_vpn_and_is_one_session_with_it() {
    let login = Login {
        idx: 0,
        t0: 0,
        up: 49,
        shared: false,
        eap: true,
        rekey: true,
        ending: Ending::ByGateway,
        vpn_bytes: false,
        accounting: true,
    };
    let (mut vpn_seq, mut radius_seq) = (0, 0);
    let radius = login.accounting_events(&mut radius_seq);
    let vpn = login.vpn_events("gw/charon@1", &mut vpn_seq);
    let mut sessionizer = Sessionizer::new(Vec::new());
    // Accounting alone: held, no session yet, but its id is known and kept.
    let mut first = vec![radius[0].clone()];
    assert!(sessionizer.apply(&mut first, now()).is_empty());
    assert_eq!(sessionizer.stats().pending, 1);
    let held_id = first[0]
        .session_id
        .clone()
        .expect("held accounting has an id");
    assert!(
        sessionizer
            .expire(now() + SignedDuration::from_secs(29))
            .is_empty()
    );
    // The VPN's events within the hold: the same login, the same id; nothing to correct.
    let mut rest: Vec<Event> = vpn.iter().chain(&radius[1..]).cloned().collect();
    let sessions = super::final_sessions(&sessionizer.apply(&mut rest, now()));
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let session = &sessions[&held_id];
    assert_eq!(Summary::of(session), login.expected());
    assert!(
        rest.iter()
            .filter(|event| !matches!(&event.body, EventBody::IkeSa(ike) if ike.change == SaChange::Connecting))
            .all(|event| event.session_id.as_deref() == Some(held_id.as_str()))
    );
    assert!(sessionizer.take_corrections().is_empty());
    assert_eq!(sessionizer.stats().pending, 0);
    assert!(
        sessionizer
            .expire(now() + SignedDuration::from_hours(1))
            .is_empty()
    );
}

#[test]
fn accounting_alone_becomes_a_session_when_its_hold_passes() {
    let login = Login {
        idx: 3,
        t0: 300,
        up: 49,
        shared: false,
        eap: false,
        rekey: false,
        ending: Ending::ByClient,
        vpn_bytes: false,
        accounting: true,
    };
    let mut events = login.accounting_events(&mut 0);
    let mut sessionizer = Sessionizer::restore(
        SessionConfig {
            accounting_hold_secs: 30,
            ..SessionConfig::default()
        },
        Vec::new(),
        None,
        now(),
    );
    assert!(sessionizer.apply(&mut events, now()).is_empty());
    assert!(
        sessionizer
            .expire(now() + SignedDuration::from_secs(29))
            .is_empty()
    );
    let sessions = sessionizer.expire(now() + SignedDuration::from_secs(30));
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!(session.accounting_id.as_deref(), Some("1796000000-4"));
    assert_eq!(session.state, SessionState::Closed);
    assert_eq!(session.start, at(login.start() + 1));
    assert_eq!(session.end, Some(at(login.start() + 50)));
    assert!(
        events
            .iter()
            .all(|event| event.session_id.as_deref() == Some(session.session_id.as_str()))
    );
    assert_eq!(sessionizer.stats().accounting_only, 1);
    // The VPN's events after all (a log read much later): they join that session.
    let mut vpn = login.vpn_events("gw/charon@1", &mut 0);
    let later = super::final_sessions(&sessionizer.apply(&mut vpn, now()));
    assert_eq!(later.keys().collect::<Vec<_>>(), [&session.session_id]);
    assert_eq!(later[&session.session_id].method, Some(AuthMethod::Psk));
}

/// VICI reports a login as auth, lease, IKE_SA and CHILD_SA at one instant, a second after
/// RADIUS accounting's Start (the agent holds VICI events for their log lines).
#[test]
fn vici_after_accounting_puts_the_login_and_lease_on_the_session() {
    let login = Login {
        idx: 1,
        t0: 100,
        up: 49,
        shared: false,
        eap: false,
        rekey: false,
        ending: Ending::StillUp,
        vpn_bytes: false,
        accounting: true,
    };
    let mut radius = login.accounting_events(&mut 0);
    radius.truncate(1);
    let vici: Vec<Event> = login
        .vpn_events("gw/vici@1", &mut 0)
        .into_iter()
        .filter(|event| !matches!(&event.body, EventBody::IkeSa(ike) if ike.change == SaChange::Connecting))
        .map(|mut event| {
            event.timestamp = at(login.start() + 2);
            event
        })
        .collect();
    let mut events: Vec<Event> = radius.into_iter().chain(vici).collect();
    let mut sessionizer = Sessionizer::new(Vec::new());
    let sessions = super::final_sessions(&settled(&mut sessionizer, &mut events));
    assert_eq!(sessions.len(), 1);
    let session_id = sessions.keys().next().unwrap();
    for event in &events {
        assert_eq!(
            event.session_id.as_ref(),
            Some(session_id),
            "{}",
            event.original
        );
    }
}

/// A charon log without `ike_name`: the login's lines before the IKE_SA was up are keyed by
/// the client address; accounting, first, by the IKE_SA id. One session, and the accounting
/// event stamped before the two met is corrected.
#[test]
fn a_log_without_ids_and_accounting_first_meet_in_one_session_with_corrections() {
    let login = Login {
        idx: 2,
        t0: 200,
        up: 49,
        shared: false,
        eap: false,
        rekey: false,
        ending: Ending::ByClient,
        vpn_bytes: true,
        accounting: true,
    };
    let mut radius = login.accounting_events(&mut 0);
    let mut vpn = login.vpn_events("gw/charon@1", &mut 0);
    for event in &mut vpn {
        // Only the establishment names the IKE_SA.
        let established =
            matches!(&event.body, EventBody::IkeSa(ike) if ike.change == SaChange::Established);
        if !established && let Some(peer) = peer_mut(&mut event.body) {
            peer.ike_sa_id = None;
        }
    }
    let mut sessionizer = Sessionizer::new(Vec::new());
    let mut start = vec![radius.remove(0)];
    sessionizer.apply(&mut start, now());
    let held = start[0].session_id.clone().unwrap();
    let mut rest: Vec<Event> = vpn.into_iter().chain(radius).collect();
    let sessions = super::final_sessions(&settled(&mut sessionizer, &mut rest));
    assert_eq!(sessions.len(), 1, "{sessions:#?}");
    let (session_id, session) = sessions.iter().next().unwrap();
    assert_eq!(Summary::of(session), login.expected());
    let corrections = sessionizer.take_corrections();
    if *session_id != held {
        assert_eq!(corrections.len(), 1, "{corrections:#?}");
        assert_eq!(corrections[0].event_id, start[0].id.to_string());
        assert_eq!(corrections[0].session_id.as_ref(), Some(session_id));
        assert_eq!(corrections[0].target, JoinTarget::Events);
    }
}

fn peer_mut(body: &mut EventBody) -> Option<&mut Peer> {
    match body {
        EventBody::Auth(auth) => Some(&mut auth.peer),
        EventBody::IkeSa(ike) => Some(&mut ike.peer),
        EventBody::ChildSa(child) => Some(&mut child.peer),
        EventBody::VirtualIp(lease) => Some(&mut lease.peer),
        EventBody::Session(session) => Some(&mut session.peer),
        _ => None,
    }
}

/// An IKE_SA that authenticated and then went away before it was established (a CHILD_SA
/// the gateway refused): no session; the login event stamped meanwhile is corrected to none.
#[test]
fn a_login_that_never_comes_up_leaves_no_session_and_no_dangling_id() {
    let login = Login {
        idx: 4,
        t0: 400,
        up: 49,
        shared: false,
        eap: false,
        rekey: false,
        ending: Ending::ByClient,
        vpn_bytes: false,
        accounting: false,
    };
    let mut events: Vec<Event> = login
        .vpn_events("gw/charon@1", &mut 0)
        .into_iter()
        .filter(|event| !matches!(&event.body, EventBody::IkeSa(ike) if ike.change == SaChange::Established))
        .collect();
    let mut sessionizer = Sessionizer::new(Vec::new());
    assert!(settled(&mut sessionizer, &mut events).is_empty());
    let corrections = sessionizer.take_corrections();
    let stamped: Vec<String> = events
        .iter()
        .filter(|event| event.session_id.is_some())
        .map(|event| event.id.to_string())
        .collect();
    assert!(!stamped.is_empty());
    for event_id in &stamped {
        assert!(
            corrections
                .iter()
                .any(|correction| &correction.event_id == event_id
                    && correction.session_id.is_none()),
            "{event_id} is not corrected: {corrections:#?}"
        );
    }
    assert_eq!(sessionizer.stats().abandoned, 1);
    assert_eq!(sessionizer.stats().pending, 0);
}

/// A restart between any two batches (the checkpoint and the shown sessions read back, as the
/// store keeps them) gives exactly what one process gives, ids included.
#[test]
fn a_restart_between_any_two_events_changes_nothing() {
    let logins: Vec<Login> = (0..3)
        .map(|idx| Login {
            idx,
            t0: i64::try_from(idx).unwrap() * 100,
            up: 49,
            shared: false,
            eap: idx == 1,
            rekey: idx == 2,
            ending: [Ending::ByGateway, Ending::StillUp, Ending::DeadPeer][idx as usize],
            vpn_bytes: idx == 0,
            accounting: true,
        })
        .collect();
    let (mut vpn_seq, mut radius_seq) = (0, 0);
    // Accounting first, then the log: the hardest order for a restart.
    let events: Vec<Event> = logins
        .iter()
        .flat_map(|login| login.accounting_events(&mut radius_seq))
        .chain(
            logins
                .iter()
                .flat_map(|login| login.vpn_events("gw/charon@1", &mut vpn_seq)),
        )
        .collect();
    let whole = run(vec![events.clone()]);
    for cut in 1..events.len() {
        let mut first = Sessionizer::new(Vec::new());
        let mut head = events[..cut].to_vec();
        let mut shown: BTreeMap<String, Session> = BTreeMap::new();
        for session in first.apply(&mut head, now()) {
            shown.insert(session.session_id.clone(), session);
        }
        let checkpoint = first.checkpoint();
        let mut corrections = first.take_corrections();
        let mut second = Sessionizer::restore(
            SessionConfig::default(),
            shown.values().cloned().collect(),
            checkpoint.as_ref(),
            now(),
        );
        let mut tail = events[cut..].to_vec();
        for session in second.apply(&mut tail, now()) {
            shown.insert(session.session_id.clone(), session);
        }
        for session in second.finish(now()) {
            shown.insert(session.session_id.clone(), session);
        }
        corrections.extend(second.take_corrections());
        let mut stamps: HashMap<String, Option<String>> = head
            .iter()
            .chain(&tail)
            .map(|event| (event.id.to_string(), event.session_id.clone()))
            .collect();
        corrections.sort_by_key(|correction| correction.decided);
        for correction in corrections {
            stamps.insert(correction.event_id, correction.session_id);
        }
        let summaries = |sessions: &BTreeMap<String, Session>| -> BTreeMap<String, Summary> {
            sessions
                .iter()
                .map(|(id, session)| (id.clone(), Summary::of(session)))
                .collect()
        };
        assert_eq!(
            summaries(&shown),
            summaries(&whole.sessions),
            "restart after event {cut}"
        );
        assert_eq!(stamps, whole.stamps, "restart after event {cut}");
    }
}

#[test]
fn an_unreadable_checkpoint_is_counted_and_the_rest_goes_on() {
    let garbage = CollectorCheckpoint(serde_json::json!({"version": 1, "records": "no"}));
    let sessionizer =
        Sessionizer::restore(SessionConfig::default(), Vec::new(), Some(&garbage), now());
    assert_eq!(sessionizer.stats().checkpoint_unreadable, 1);
    let future = CollectorCheckpoint(serde_json::json!({"version": 99, "records": []}));
    let sessionizer =
        Sessionizer::restore(SessionConfig::default(), Vec::new(), Some(&future), now());
    assert_eq!(sessionizer.stats().checkpoint_unreadable, 1);
}

/// The agent was down when the user left: the VICI reconcile can only say the IKE_SA is gone
/// (`lost`); charon's accounting Stop, if it got through, says why.
#[test]
fn accounting_says_why_a_session_found_gone_ended() {
    let login = Login {
        idx: 5,
        t0: 500,
        up: 49,
        shared: false,
        eap: false,
        rekey: false,
        ending: Ending::ByClient,
        vpn_bytes: false,
        accounting: true,
    };
    let found_gone = |mut events: Vec<Event>| -> Vec<Event> {
        for event in &mut events {
            if let EventBody::IkeSa(ike) = &mut event.body
                && ike.change == SaChange::Deleted
            {
                ike.cause = Some(TerminateCause::Lost);
                event.timestamp = at(login.end_at() + 30);
            }
        }
        events
    };
    let vpn = found_gone(login.vpn_events("gw/vici@1", &mut 0));
    for with_stop in [true, false] {
        let mut radius = login.accounting_events(&mut 0);
        if !with_stop {
            radius.pop();
        }
        let mut events: Vec<Event> = vpn.iter().cloned().chain(radius).collect();
        let mut sessionizer = Sessionizer::new(Vec::new());
        let sessions = super::final_sessions(&settled(&mut sessionizer, &mut events));
        let session = sessions.values().next().unwrap();
        assert_eq!(session.state, SessionState::Closed);
        if with_stop {
            assert_eq!(session.cause, Some(TerminateCause::UserRequest));
            assert_eq!(session.end, Some(at(login.end_at())));
        } else {
            assert_eq!(session.cause, Some(TerminateCause::Lost));
            assert_eq!(session.end, Some(at(login.end_at() + 30)));
        }
    }
}

/// A log read at once (`ingest`, a backlog after an outage) puts hours into one batch: a
/// session that began and ended early in it is shown, although it is already older than
/// the time closed sessions are kept when the batch ends.
#[test]
fn a_session_over_long_before_the_end_of_its_batch_is_still_shown() {
    let early = Login {
        idx: 0,
        t0: 0,
        up: 49,
        shared: false,
        eap: false,
        rekey: true,
        ending: Ending::ByClient,
        vpn_bytes: true,
        accounting: true,
    };
    let late = Login {
        idx: 1,
        t0: 3 * 3600,
        ..early.clone()
    };
    let (mut vpn_seq, mut radius_seq) = (0, 0);
    let mut events: Vec<Event> = [&early, &late]
        .iter()
        .flat_map(|login| login.vpn_events("gw/charon@1", &mut vpn_seq))
        .chain(
            [&early, &late]
                .iter()
                .flat_map(|login| login.accounting_events(&mut radius_seq)),
        )
        .collect();
    let outcome = run(vec![std::mem::take(&mut events)]);
    let all: Vec<Event> = [&early, &late]
        .iter()
        .flat_map(|login| login.vpn_events("gw/charon@1", &mut 0))
        .collect();
    assert_eq!(outcome.sessions.len(), 2, "{:#?}", outcome.sessions);
    for event in &all {
        if let Some(Some(session_id)) = outcome.stamps.get(&event.id.to_string()) {
            assert!(outcome.sessions.contains_key(session_id), "{}", event.id);
        }
    }
}
