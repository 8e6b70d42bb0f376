//! `GET /api/v1/sessions/{id}` (the timeline) and `GET /api/v1/users/{name}/activity`,
//! against a real store: rows in Parquet and rows still in memory, joined to sessions the way
//! the collector stamps them.

use model::{
    ApiRequest, Auth, AuthMethod, Counters, Endpoint, Event, EventBody, EventId, Flow, FlowEnd,
    Identities, LeaseChange, Observer, Outcome, Peer, Session, SessionJoin, SessionState,
    VirtualIpEvent,
};

use super::*;

/// 2026-11-18T11:06:40Z.
const T0: i64 = 1_795_000_000;
const ALICE: &str = "s-00000000000000aa";
const BOB: &str = "s-00000000000000bb";
/// Everything an access log can carry that a console must not interpret.
const HOSTILE_PATH: &str = "/v1/<script>alert(1)</script>\r\nX-Injected: 1\u{1b}[31m";

fn at(offset: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(T0 + offset).unwrap()
}

fn observer() -> Observer {
    Observer {
        hostname: Some("gw1".to_owned()),
        product: Some("strongswan".to_owned()),
    }
}

fn event(source: &str, seq: u64, offset: i64, session: Option<&str>, body: EventBody) -> Event {
    Event {
        id: EventId::new(source, seq, 0),
        timestamp: at(offset),
        dataset: "test".to_owned(),
        observer: observer(),
        original: format!("{source} line {seq}"),
        session_id: session.map(str::to_owned),
        source_geo: None,
        body,
    }
}

fn peer(user: &str) -> Peer {
    Peer {
        connection: Some("rw-psk".to_owned()),
        ike_sa_id: Some(7),
        client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
        server: Endpoint::default(),
        identities: Identities {
            ike_id: Some(user.to_owned()),
            ..Identities::default()
        },
    }
}

fn login(seq: u64, offset: i64, session: &str, user: &str) -> Event {
    event(
        "gw1/charon",
        seq,
        offset,
        Some(session),
        EventBody::Auth(Auth {
            peer: peer(user),
            method: AuthMethod::Psk,
            outcome: Outcome::Success,
            failure: None,
        }),
    )
}

fn lease(seq: u64, offset: i64, session: &str, user: &str, vip: &str) -> Event {
    event(
        "gw1/charon",
        seq,
        offset,
        Some(session),
        EventBody::VirtualIp(VirtualIpEvent {
            peer: peer(user),
            ip: vip.parse().unwrap(),
            change: LeaseChange::Assigned,
        }),
    )
}

#[allow(clippy::too_many_arguments)]
fn flow(
    seq: u64,
    offset: i64,
    joined: Option<(&str, &str)>,
    vip: &str,
    destination: &str,
    port: u16,
    transport: &str,
    bytes: (u64, u64),
) -> Event {
    event(
        "gw1/flows",
        seq,
        offset,
        joined.map(|(session, _)| session),
        EventBody::Flow(Flow {
            source: Endpoint::new(vip.parse().unwrap(), Some(40_000 + seq as u16)),
            destination: Endpoint::new(destination.parse().unwrap(), Some(port)),
            transport: transport.to_owned(),
            start: at(offset),
            end: at(offset + 5),
            source_bytes: bytes.0,
            destination_bytes: bytes.1,
            source_packets: 3,
            destination_packets: 4,
            tcp_flags: (transport == "tcp").then_some(0x1b),
            end_reason: Some(FlowEnd::TcpEnd),
            session_join: Some(if joined.is_some() {
                SessionJoin::Matched
            } else {
                SessionJoin::Unmatched
            }),
            user_name: joined.map(|(_, user)| user.to_owned()),
        }),
    )
}

fn request(
    seq: u64,
    offset: i64,
    joined: Option<(&str, &str)>,
    method: &str,
    path: &str,
    status: u16,
) -> Event {
    event(
        "gw1/nginx",
        seq,
        offset,
        joined.map(|(session, _)| session),
        EventBody::ApiRequest(ApiRequest {
            client_ip: Some("10.99.0.1".parse().unwrap()),
            destination: Endpoint::new("198.51.100.10".parse().unwrap(), Some(443)),
            method: method.to_owned(),
            host: Some("api.example.test".to_owned()),
            path: path.to_owned(),
            status,
            response_bytes: Some(1_000),
            duration_us: Some(12_000),
            request_id: Some(format!("req-{seq}")),
            session_join: Some(if joined.is_some() {
                SessionJoin::Matched
            } else {
                SessionJoin::Unmatched
            }),
            user_name: joined.map(|(_, user)| user.to_owned()),
        }),
    )
}

fn session(id: &str, user: &str, vip: &str, start: i64, end: Option<i64>, version: u64) -> Session {
    Session {
        session_id: id.to_owned(),
        gateway: Some("gw1".to_owned()),
        connection: Some("rw-psk".to_owned()),
        ike_sa_ids: vec![7],
        identities: Identities {
            ike_id: Some(user.to_owned()),
            ..Identities::default()
        },
        method: Some(AuthMethod::Psk),
        client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
        client_geo: Some(model::Geo {
            country_iso_code: Some("DE".to_owned()),
            as_number: Some(64_500),
            as_organization: Some("Example Net".to_owned()),
            ..model::Geo::default()
        }),
        virtual_ip: Some(vip.parse().unwrap()),
        start: at(start),
        end: end.map(at),
        state: if end.is_some() {
            SessionState::Closed
        } else {
            SessionState::Active
        },
        cause: None,
        counters: Counters {
            bytes_in: 1_000 * version,
            bytes_out: 2_000,
            packets_in: None,
            packets_out: None,
        },
        child_sa_counters: Default::default(),
        rekey_count: u32::try_from(version).unwrap() - 1,
        accounting_id: None,
        version,
        updated: at(start + version as i64),
        sources: None,
    }
}

/// Alice's session (10.99.0.1, T0 to T0+600) and then Bob's, who gets the same virtual IP;
/// the first half is flushed to Parquet, the rest stays in memory.
fn fill(store: &store::Store) {
    let alice = Some((ALICE, "alice"));
    let bob = Some((BOB, "bob"));
    store
        .append(
            vec![
                login(1, -1, ALICE, "alice"),
                lease(2, 0, ALICE, "alice", "10.99.0.1"),
                flow(
                    1,
                    10,
                    alice,
                    "10.99.0.1",
                    "198.51.100.10",
                    443,
                    "tcp",
                    (100, 2_000),
                ),
                // The same instant as a flow: flows come before API requests.
                request(1, 10, alice, "GET", "/v1/orders", 200),
                flow(
                    2,
                    20,
                    alice,
                    "10.99.0.1",
                    "198.51.100.10",
                    443,
                    "tcp",
                    (300, 4_000),
                ),
            ],
            vec![session(ALICE, "alice", "10.99.0.1", 0, None, 1)],
        )
        .unwrap();
    store.flush().unwrap();
    store
        .append(
            vec![
                request(2, 25, alice, "POST", "/v1/orders", 500),
                flow(
                    3,
                    30,
                    alice,
                    "10.99.0.1",
                    "203.0.113.53",
                    53,
                    "udp",
                    (60, 120),
                ),
                request(3, 35, alice, "GET", HOSTILE_PATH, 404),
                request(4, 40, alice, "GET", "/v1/orders", 200),
                // Not joined: no session held the address.
                flow(
                    4,
                    650,
                    None,
                    "10.99.0.1",
                    "198.51.100.10",
                    443,
                    "tcp",
                    (1, 1),
                ),
                // Bob, later, with Alice's old address.
                login(3, 700, BOB, "bob"),
                flow(
                    5,
                    710,
                    bob,
                    "10.99.0.1",
                    "198.51.100.99",
                    8443,
                    "tcp",
                    (5, 5),
                ),
                request(5, 720, bob, "DELETE", "/v1/orders/1", 204),
            ],
            vec![
                session(ALICE, "alice", "10.99.0.1", 0, Some(600), 2),
                session(BOB, "bob", "10.99.0.1", 700, None, 1),
            ],
        )
        .unwrap();
}

fn kinds(timeline: &serde_json::Value) -> Vec<String> {
    timeline
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}:{}",
                item["kind"].as_str().unwrap(),
                item["event_id"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn a_session_timeline_merges_logins_events_flows_and_api_requests_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    fill(&state.store);
    let (status, body) = call(&state, get(&format!("/api/v1/sessions/{ALICE}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The newest snapshot, with every field present (null when unknown).
    let session = &body["session"];
    assert_eq!(session["session_id"], ALICE);
    assert_eq!(session["user_name"], "alice");
    assert_eq!(session["vpn_ike_id"], "alice");
    assert_eq!(session["vpn_state"], "closed");
    assert_eq!(session["vpn_session_version"], 2);
    assert_eq!(session["vpn_rekey_count"], 1);
    assert_eq!(session["source_bytes"], 2_000);
    assert_eq!(session["source_ip"], "192.0.2.11");
    assert_eq!(session["source_port"], 4500);
    assert_eq!(session["source_geo_country_iso_code"], "DE");
    assert_eq!(session["source_as_number"], 64_500);
    assert_eq!(session["source_as_organization_name"], "Example Net");
    assert_eq!(session["vpn_virtual_ip"], "10.99.0.1");
    assert_eq!(session["observer_hostname"], "gw1");
    assert!(
        session["event_end"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-18T11:16:40"),
        "{session}"
    );
    assert!(session["vpn_terminate_cause"].is_null());
    assert!(
        session
            .as_object()
            .unwrap()
            .contains_key("vpn_terminate_cause")
    );

    // Login once (not again from `events`), then in time order; the unjoined flow and
    // Bob's rows are not there.
    assert_eq!(
        kinds(&body["timeline"]),
        [
            "auth:gw1/charon:1",
            "event:gw1/charon:2",
            "flow:gw1/flows:1",
            "api_request:gw1/nginx:1",
            "flow:gw1/flows:2",
            "api_request:gw1/nginx:2",
            "flow:gw1/flows:3",
            "api_request:gw1/nginx:3",
            "api_request:gw1/nginx:4",
        ]
    );
    assert_eq!(
        (body["count"].as_u64(), body["truncated"].as_bool()),
        (Some(9), Some(false))
    );
    assert_eq!(body["limit"], 1000);

    let timeline = body["timeline"].as_array().unwrap();
    let login = &timeline[0];
    assert_eq!(login["event_outcome"], "success");
    assert_eq!(login["vpn_auth_method"], "psk");
    assert_eq!(login["user_name"], "alice");
    assert_eq!(login["event_original"], "gw1/charon line 1");
    assert!(
        login.get("url_path").is_none(),
        "only the login's own fields: {login}"
    );
    assert_eq!(timeline[1]["event_action"], "virtual-ip-assigned");
    assert_eq!(timeline[1]["vpn_virtual_ip"], "10.99.0.1");

    let flow = &timeline[6];
    assert_eq!(flow["network_transport"], "udp");
    assert_eq!(flow["destination_ip"], "203.0.113.53");
    assert_eq!(flow["destination_port"], 53);
    assert_eq!(
        (
            flow["source_bytes"].as_i64(),
            flow["destination_bytes"].as_i64()
        ),
        (Some(60), Some(120))
    );
    assert_eq!(
        (
            flow["source_packets"].as_i64(),
            flow["destination_packets"].as_i64()
        ),
        (Some(3), Some(4))
    );
    assert_eq!(flow["vpn_flow_end"], "tcp_end");
    assert_eq!(flow["vpn_session_join"], "matched");
    assert!(
        flow["event_start"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-18T11:07:10"),
        "{flow}"
    );
    assert!(
        flow["event_end"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-18T11:07:15"),
        "{flow}"
    );
    assert!(flow["vpn_tcp_flags"].is_null());
    assert!(flow.get("http_request_method").is_none());

    let request = &timeline[5];
    assert_eq!(request["http_request_method"], "POST");
    assert_eq!(request["url_domain"], "api.example.test");
    assert_eq!(request["url_path"], "/v1/orders");
    assert_eq!(request["http_response_status_code"], 500);
    assert_eq!(request["http_response_bytes"], 1_000);
    // ECS `event.duration` is in nanoseconds.
    assert_eq!(request["event_duration"], 12_000_000);
    assert_eq!(request["http_request_id"], "req-2");
    assert!(request.get("destination_bytes").is_none());

    // Hostile text is data: the JSON carries it unchanged, for the console to show as text.
    assert_eq!(timeline[7]["url_path"], HOSTILE_PATH);

    // Bob's session has Bob's rows only, although the address was Alice's before.
    let (status, body) = call(&state, get(&format!("/api/v1/sessions/{BOB}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["session"]["vpn_state"], "active");
    assert!(body["session"]["event_end"].is_null());
    assert_eq!(
        kinds(&body["timeline"]),
        [
            "auth:gw1/charon:3",
            "flow:gw1/flows:5",
            "api_request:gw1/nginx:5"
        ]
    );
}

#[tokio::test]
async fn the_timeline_limit_applies_and_says_when_it_cut() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    fill(&state.store);
    let (status, body) = call(&state, get(&format!("/api/v1/sessions/{ALICE}?limit=3"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        kinds(&body["timeline"]),
        [
            "auth:gw1/charon:1",
            "event:gw1/charon:2",
            "flow:gw1/flows:1"
        ]
    );
    assert_eq!(
        (body["count"].as_u64(), body["truncated"].as_bool()),
        (Some(3), Some(true))
    );
    let (_, body) = call(&state, get(&format!("/api/v1/sessions/{ALICE}?limit=9"))).await;
    assert_eq!(
        (body["count"].as_u64(), body["truncated"].as_bool()),
        (Some(9), Some(false))
    );
    // Out of range is clamped, like every other limit; not a number is refused.
    let (_, body) = call(&state, get(&format!("/api/v1/sessions/{ALICE}?limit=0"))).await;
    assert_eq!(
        (body["count"].as_u64(), body["limit"].as_u64()),
        (Some(1), Some(1))
    );
    let (_, body) = call(
        &state,
        get(&format!("/api/v1/sessions/{ALICE}?limit=4000000000")),
    )
    .await;
    assert_eq!(body["limit"], 10_000);
    for uri in [
        format!("/api/v1/sessions/{ALICE}?limit=-1"),
        format!("/api/v1/sessions/{ALICE}?limit=many"),
        format!("/api/v1/sessions/{ALICE}?colour=blue"),
    ] {
        let (status, _) = call(&state, get(&uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
    }
}

#[tokio::test]
async fn unknown_sessions_are_404_and_hostile_ids_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    fill(&state.store);
    let (status, body) = call(&state, get("/api/v1/sessions/s-0123456789abcdef")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["message"], "no session with id \"s-0123456789abcdef\"");

    let long = "a".repeat(10 * 1024);
    for id in [
        "%27%3B%20DROP%20TABLE%20sessions%3B%20--",
        "s-1%27%20OR%20%271%27%3D%271",
        "..%2F..%2Fetc%2Fpasswd",
        "..%2F",
        "%00",
        "s-00000000000000aa%00",
        "s-1%0D%0AX-Injected:%201",
        "%1B%5B31m",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "%FF%FE",
        "%20",
        long.as_str(),
    ] {
        let (status, body) = call(&state, get(&format!("/api/v1/sessions/{id}"))).await;
        let what: String = id.chars().take(40).collect();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert!(
            body["message"].is_string(),
            "{what}: a JSON error, not {body}"
        );
    }
    // 128 allowed characters are an id (unknown), 129 are not.
    let (status, _) = call(
        &state,
        get(&format!("/api/v1/sessions/{}", "a".repeat(128))),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(
        &state,
        get(&format!("/api/v1/sessions/{}", "a".repeat(129))),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // The store is untouched.
    let (_, body) = call(&state, get("/api/v1/sessions")).await;
    assert_eq!(body["count"], 2);
}

fn window() -> String {
    // T0 - 1 h to T0 + 1 h: all of Alice's session and Bob's login.
    format!("from={}&to={}", at(-3600), at(3600))
}

#[tokio::test]
async fn user_activity_counts_what_the_user_touched() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    fill(&state.store);
    let (status, body) = call(
        &state,
        get(&format!("/api/v1/users/alice/activity?{}", window())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_name"], "alice");
    assert_eq!(body["from"], "2026-11-18T10:06:40Z");
    assert_eq!(body["to"], "2026-11-18T12:06:40Z");
    assert_eq!(
        body["totals"],
        serde_json::json!({"sessions": 1, "flows": 3, "api_requests": 4, "destinations": 2, "api_paths": 3})
    );
    assert_eq!(
        body["truncated"],
        serde_json::json!({"sessions": false, "destinations": false, "api_paths": false})
    );
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["session_id"], ALICE);
    assert_eq!(
        (
            sessions[0]["flows"].as_i64(),
            sessions[0]["api_requests"].as_i64()
        ),
        (Some(3), Some(4))
    );
    assert_eq!(sessions[0]["vpn_state"], "closed");

    // Most used destination first, with the bytes both ways added up.
    let destinations = body["destinations"].as_array().unwrap();
    assert_eq!(destinations.len(), 2);
    assert_eq!(
        (
            &destinations[0]["destination_ip"],
            &destinations[0]["destination_port"],
            &destinations[0]["network_transport"]
        ),
        (
            &serde_json::json!("198.51.100.10"),
            &serde_json::json!(443),
            &serde_json::json!("tcp")
        )
    );
    assert_eq!(destinations[0]["flows"], 2);
    assert_eq!(destinations[0]["sessions"], 1);
    assert_eq!(destinations[0]["source_bytes"], 400);
    assert_eq!(destinations[0]["destination_bytes"], 6_000);
    assert_eq!(destinations[0]["packets"], 14);
    assert!(
        destinations[0]["first_seen"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-18T11:06:50")
    );
    assert!(
        destinations[0]["last_seen"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-18T11:07:05")
    );
    assert_eq!(destinations[1]["destination_ip"], "203.0.113.53");
    assert_eq!(destinations[1]["flows"], 1);

    let paths = body["api_paths"].as_array().unwrap();
    assert_eq!(paths.len(), 3);
    assert_eq!(
        (&paths[0]["http_request_method"], &paths[0]["url_path"]),
        (&serde_json::json!("GET"), &serde_json::json!("/v1/orders"))
    );
    assert_eq!(
        (paths[0]["requests"].as_i64(), paths[0]["errors"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(paths[0]["url_domain"], "api.example.test");
    assert_eq!(paths[0]["response_bytes"], 2_000);
    let posts: Vec<_> = paths
        .iter()
        .filter(|path| path["http_request_method"] == "POST")
        .collect();
    assert_eq!(
        (posts[0]["requests"].as_i64(), posts[0]["errors"].as_i64()),
        (Some(1), Some(1))
    );
    assert!(paths.iter().any(|path| path["url_path"] == HOSTILE_PATH));

    // Bob touched something else, through the same virtual IP.
    let (_, body) = call(
        &state,
        get(&format!("/api/v1/users/bob/activity?{}", window())),
    )
    .await;
    assert_eq!(
        body["totals"],
        serde_json::json!({"sessions": 1, "flows": 1, "api_requests": 1, "destinations": 1, "api_paths": 1})
    );
    assert_eq!(body["destinations"][0]["destination_port"], 8443);
    assert_eq!(body["api_paths"][0]["http_request_method"], "DELETE");

    // A window that ends before Bob arrived: Alice only, and only her first ten seconds.
    let (_, body) = call(
        &state,
        get(&format!(
            "/api/v1/users/alice/activity?from={}&to={}",
            at(0),
            at(20)
        )),
    )
    .await;
    assert_eq!(
        body["totals"],
        serde_json::json!({"sessions": 1, "flows": 1, "api_requests": 1, "destinations": 1, "api_paths": 1})
    );
    let (_, body) = call(
        &state,
        get(&format!(
            "/api/v1/users/bob/activity?from={}&to={}",
            at(0),
            at(600)
        )),
    )
    .await;
    assert_eq!(body["totals"]["sessions"], 0);
    assert_eq!(body["sessions"], serde_json::json!([]));

    // Nobody.
    let (status, body) = call(
        &state,
        get(&format!("/api/v1/users/mallory/activity?{}", window())),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["totals"],
        serde_json::json!({"sessions": 0, "flows": 0, "api_requests": 0, "destinations": 0, "api_paths": 0})
    );
}

#[tokio::test]
async fn user_activity_windows_limits_and_hostile_names() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    fill(&state.store);

    let (_, body) = call(
        &state,
        get(&format!(
            "/api/v1/users/alice/activity?{}&limit=1",
            window()
        )),
    )
    .await;
    assert_eq!(body["destinations"].as_array().unwrap().len(), 1);
    assert_eq!(body["api_paths"].as_array().unwrap().len(), 1);
    assert_eq!(
        body["truncated"],
        serde_json::json!({"sessions": false, "destinations": true, "api_paths": true})
    );
    // Totals count everything, not just what fits.
    assert_eq!(body["totals"]["api_requests"], 4);
    assert_eq!(body["totals"]["api_paths"], 3);

    // The default window is the day before now.
    let (status, body) = call(&state, get("/api/v1/users/alice/activity")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let from: jiff::Timestamp = body["from"].as_str().unwrap().parse().unwrap();
    let to: jiff::Timestamp = body["to"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        to.duration_since(from),
        jiff::SignedDuration::from_hours(24)
    );
    let (_, body) = call(
        &state,
        get(&format!("/api/v1/users/alice/activity?to={}", at(30))),
    )
    .await;
    assert_eq!(body["from"], "2026-11-17T11:07:10Z");
    assert_eq!(body["totals"]["flows"], 2);

    let too_long = "u".repeat(1025);
    for (uri, needle) in [
        (
            "/api/v1/users/alice/activity?from=yesterday".to_owned(),
            "from must be an RFC 3339 time",
        ),
        (
            "/api/v1/users/alice/activity?to=2026-13-01T00:00:00Z".to_owned(),
            "to must be an RFC 3339 time",
        ),
        (
            format!("/api/v1/users/alice/activity?from={}&to={}", at(10), at(10)),
            "must be before",
        ),
        (
            format!("/api/v1/users/alice/activity?from={}&to={}", at(10), at(0)),
            "must be before",
        ),
        (
            "/api/v1/users/alice/activity?from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z"
                .to_owned(),
            "longer than 31 days",
        ),
        ("/api/v1/users/alice/activity?limit=-5".to_owned(), ""),
        (
            "/api/v1/users/alice/activity?user=bob".to_owned(),
            "unknown field",
        ),
        (
            format!("/api/v1/users/{too_long}/activity"),
            "1 to 1024 bytes",
        ),
        (
            "/api/v1/users/%FF/activity".to_owned(),
            "unreadable user name",
        ),
    ] {
        let (status, body) = call(&state, get(&uri)).await;
        let what: String = uri.chars().take(80).collect();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert!(body.to_string().contains(needle), "{what}: {body}");
    }

    // Names are data, whatever they hold: quotes, markup, CR/LF, ESC, NUL.
    for name in [
        "o%27brien",
        "x%27%20OR%20%271%27%3D%271",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "a%0D%0Ab%1B%5B31m",
        "%00",
        "..%2F..%2Fetc",
    ] {
        let (status, body) = call(
            &state,
            get(&format!("/api/v1/users/{name}/activity?{}", window())),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        assert_eq!(body["totals"]["sessions"], 0, "{name}: {body}");
    }
}

#[tokio::test]
async fn a_hostile_user_comes_back_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    let user = "<img src=x onerror=alert(1)>\r\n\u{1b}[2J'; DROP TABLE flows; --";
    let joined = Some(("s-0000000000000bad", user));
    state
        .store
        .append(
            vec![
                login(1, 0, "s-0000000000000bad", user),
                flow(
                    1,
                    5,
                    joined,
                    "10.99.0.9",
                    "198.51.100.10",
                    443,
                    "tcp",
                    (1, 2),
                ),
                request(1, 6, joined, "GET", HOSTILE_PATH, 200),
            ],
            vec![session("s-0000000000000bad", user, "10.99.0.9", 0, None, 1)],
        )
        .unwrap();
    let encoded: String = user.bytes().map(|byte| format!("%{byte:02X}")).collect();
    let response = router(state.clone())
        .oneshot(get(&format!(
            "/api/v1/users/{encoded}/activity?{}",
            window()
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    // Control characters are JSON escapes, never raw bytes in the answer.
    assert!(!text.chars().any(|ch| ch.is_control()), "{text:?}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["user_name"], user);
    assert_eq!(body["sessions"][0]["user_name"], user);
    assert_eq!(body["totals"]["flows"], 1);
    assert_eq!(body["api_paths"][0]["url_path"], HOSTILE_PATH);
    let (_, body) = call(&state, get("/api/v1/sessions/s-0000000000000bad")).await;
    assert_eq!(body["session"]["user_name"], user);
    assert_eq!(body["timeline"].as_array().unwrap().len(), 3);
}

/// The console builds its DOM from values with `textContent` and properties only: no API
/// string is ever parsed as HTML or code. (app/tests/console_chromium.rs and
/// dashboards/tests/console_chromium.rs check the rendered page in a browser.)
#[test]
fn the_console_never_parses_strings_as_html() {
    let script = include_str!("../../assets/app.js");
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setAttribute(\"on",
        "createContextualFragment",
    ] {
        assert!(!script.contains(sink), "app.js uses {sink}");
    }
}
