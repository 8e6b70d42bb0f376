#![allow(clippy::unwrap_used)]
//! IKEv1 sessions in the charon log beyond the login: a reauthentication and a dead peer. The
//! real capture `ikev1-quick-mode-failed.log` with its quick mode made successful (as
//! `an_ikev1_login_counts_with_its_first_child_sa` does), then what strongSwan 5.9 logs for an
//! IKEv1 reauthentication and for an IKEv1 dead peer. Those lines are written by hand from
//! strongSwan's sources (`ike_sa_manager.c` `adopt_children_and_vips`, `dpd_timeout_job.c`):
//! this machine's kernel cannot carry the IKEv1 CHILD_SA such a session needs.

use std::path::Path;

use gateway::parse::{Format, LogClock, ParseOptions, Parser};
use jiff::tz::TimeZone;
use model::{Event, EventBody, Outcome, SaChange};

fn now() -> jiff::Timestamp {
    "2026-12-25T12:00:00Z".parse().unwrap()
}

fn parse(text: &str) -> Vec<Event> {
    let clock = LogClock::new(TimeZone::UTC, Some(2026), now());
    let mut options = ParseOptions::new("gw1/charon", clock);
    options.hostname = Some("gw1".to_owned());
    let mut parser = Parser::new(Format::Charon, options);
    let mut events = Vec::new();
    for (seq, line) in text.lines().enumerate() {
        parser.parse_line(line.as_bytes(), seq as u64, now(), &mut events);
    }
    events
}

/// The real capture with a successful quick mode: a login on IKE_SA 2 with one CHILD_SA.
fn login() -> String {
    let capture = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/charon/ikev1-quick-mode-failed.log"),
    )
    .unwrap();
    let mut text = String::new();
    for line in capture.lines() {
        if line.contains("INFORMATIONAL_V1")
            || line.contains("NO_PROPOSAL_CHOSEN")
            || line.contains("DELETE")
            || line.contains("deleting")
            || line.contains("(92 bytes)")
            || line.contains("(108 bytes)") && line.contains("10[NET]")
        {
            continue;
        }
        text.push_str(line);
        text.push('\n');
        if line.contains("generating QUICK_MODE response") {
            text.push_str("Dec  7 10:53:30 14[IKE] <l2tp-psk|2> CHILD_SA l2tp-psk{1} established with SPIs c1a2b3c4_i c4b3a2c1_o and TS 192.0.2.1/32[udp/l2f] === 192.0.2.12/32[udp/l2f]\n");
        }
    }
    text
}

fn summary(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| match &event.body {
            EventBody::Auth(auth) => format!(
                "{} auth {:?} ike {:?}",
                event.timestamp, auth.outcome, auth.peer.ike_sa_id
            ),
            EventBody::IkeSa(ike) => format!(
                "{} ike {:?} ike {:?}",
                event.timestamp, ike.change, ike.peer.ike_sa_id
            ),
            EventBody::ChildSa(child) => format!(
                "{} child {:?} ike {:?}",
                event.timestamp, child.change, child.peer.ike_sa_id
            ),
            other => format!("{} {other:?}", event.timestamp),
        })
        .collect()
}

/// The client reauthenticates (a new Main Mode; Windows does every 8 h): charon adopts the
/// CHILD_SA into the new IKE_SA 3, logs no `CHILD_SA … established` for it, and deletes the
/// old IKE_SA 2 ten seconds later. The session goes on in IKE_SA 3 (a rekey), and ends with
/// the user's real logout an hour later, not as a failed login.
#[test]
fn an_ikev1_reauthentication_is_not_a_logout_and_a_failed_login() {
    let mut text = login();
    text.push_str(
        "Dec  7 11:53:30 16[NET] <3> received packet: from 192.0.2.12[4500] to 192.0.2.1[4500] (204 bytes)
Dec  7 11:53:30 16[IKE] <3> 192.0.2.12 is initiating a Main Mode IKE_SA
Dec  7 11:53:30 11[CFG] <3> looking for pre-shared key peer configs matching 192.0.2.1...192.0.2.12[192.0.2.12]
Dec  7 11:53:30 11[CFG] <3> selected peer config \"l2tp-psk\"
Dec  7 11:53:30 11[IKE] <l2tp-psk|3> IKE_SA l2tp-psk[3] established between 192.0.2.1[192.0.2.1]...192.0.2.12[192.0.2.12]
Dec  7 11:53:30 11[IKE] <l2tp-psk|3> detected reauth of existing IKE_SA, adopting 1 children, 0 child tasks, and 0 virtual IPs
Dec  7 11:53:40 05[IKE] <l2tp-psk|2> deleting IKE_SA l2tp-psk[2] between 192.0.2.1[192.0.2.1]...192.0.2.12[192.0.2.12]
Dec  7 12:53:30 10[IKE] <l2tp-psk|3> received DELETE for IKE_SA l2tp-psk[3]
Dec  7 12:53:30 10[IKE] <l2tp-psk|3> deleting IKE_SA l2tp-psk[3] between 192.0.2.1[192.0.2.1]...192.0.2.12[192.0.2.12]
",
    );
    let events = parse(&text);
    let summary = summary(&events);
    let failures = events
        .iter()
        .filter(|event| matches!(&event.body, EventBody::Auth(auth) if auth.outcome == Outcome::Failure))
        .count();
    assert_eq!(failures, 0, "{summary:#?}");
    let last_end = events
        .iter()
        .rfind(
            |event| matches!(&event.body, EventBody::IkeSa(ike) if ike.change == SaChange::Deleted),
        )
        .map(|event| event.timestamp.to_string());
    assert_eq!(
        last_end.as_deref(),
        Some("2026-12-07T12:53:30Z"),
        "{summary:#?}"
    );
}

/// An IKEv1 peer that goes away is found by DPD (`dpd_timeout_job.c`: `DPD check timed out,
/// enforcing DPD action`, then the IKE_SA is destroyed with no `deleting IKE_SA` and no
/// `IKE_SA deleted` line): the session ends there, lost.
#[test]
fn an_ikev1_dead_peer_ends_its_session() {
    let mut text = login();
    text.push_str(
        "Dec  7 11:00:00 05[JOB] <l2tp-psk|2> DPD check timed out, enforcing DPD action\n",
    );
    let events = parse(&text);
    let summary = summary(&events);
    assert!(
        events.iter().any(|event| matches!(&event.body, EventBody::IkeSa(ike) if matches!(ike.change, SaChange::Lost | SaChange::Deleted))),
        "{summary:#?}"
    );
}
