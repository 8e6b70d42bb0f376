//! The session and user pages in a real browser: a server on 127.0.0.1:0 over a store
//! filled with one session (a login, flows and API requests, one with a hostile path), and
//! headless Chromium loading `#/sessions/ID`, `#/users/NAME` and the overview. The rendered
//! DOM must show the timeline in order, the links between the views, and every hostile
//! string as text (markup escaped, control characters shown as escapes).
//!
//! Needs Debian's `chromium` (scripts/test.sh installs it); app/tests/console_chromium.rs
//! does the same for the overview over real captures.

#![allow(clippy::unwrap_used)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use testbed::chromium::{element, rendered};

use model::{
    ApiRequest, Auth, AuthMethod, Counters, Endpoint, Event, EventBody, EventId, Flow, FlowEnd,
    Identities, Observer, Outcome, Peer, Session, SessionJoin, SessionState,
};

const SESSION: &str = "s-00000000c0ffee00";
const USER: &str = "alice<img src=x onerror=alert(1)>";
const HOSTILE_PATH: &str = "/v1/<script>alert(1)</script>\r\nX-Injected: 1\u{1b}[31m";

/// Ingest is not used here.
struct NoIngest;

/// Alert rows kept in the test's store (the server's sink is the same two calls).
struct StoreSink(store::Store);

impl alerting::AlertSink for StoreSink {
    fn append(&self, rows: Vec<model::AlertRecord>) -> Result<(), String> {
        self.0
            .append_alerts(rows)
            .map_err(|error| error.to_string())
    }
    fn load(&self) -> Result<Vec<model::AlertRecord>, String> {
        self.0.alert_records().map_err(|error| error.to_string())
    }
}

/// An open alert about a user whose name and summary carry markup and control characters.
fn hostile_alert() -> model::AlertRecord {
    model::AlertRecord {
        id: "al-chromium:1".to_owned(),
        timestamp: at(30),
        alert_id: "al-chromium".to_owned(),
        revision: 1,
        fingerprint: "fp-chromium".to_owned(),
        rule_id: "auth-failure-spike-user".to_owned(),
        rule_name: "Failed logins of one user".to_owned(),
        severity: model::Severity::High,
        action: "fired".to_owned(),
        status: model::AlertStatus::Firing,
        reason: None,
        message: "12 failures for <script>alert(1)</script>\r\nX-Injected: 1\u{1b}[31m".to_owned(),
        user: Some("alice<img src=x onerror=alert(1)>".to_owned()),
        source_ip: Some("192.0.2.11".parse().unwrap()),
        session_id: None,
        first: at(0),
        last: at(30),
        count: 12,
        labels: Default::default(),
        evidence: Vec::new(),
        mitre: vec!["T1110".to_owned()],
        actor: "tunnelwatch".to_owned(),
        assignee: None,
    }
}

impl dashboards::Ingest for NoIngest {
    fn ingest(
        &self,
        _batch: model::IngestBatch,
    ) -> Pin<Box<dyn Future<Output = Result<model::IngestAck, dashboards::IngestError>> + Send>>
    {
        Box::pin(async {
            Err(dashboards::IngestError::Unavailable(
                "not in this test".to_owned(),
            ))
        })
    }
}

fn at(offset: i64) -> jiff::Timestamp {
    jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(30))
        .unwrap()
        + jiff::SignedDuration::from_secs(offset)
}

fn event(source: &str, seq: u64, offset: i64, body: EventBody) -> Event {
    Event {
        id: EventId::new(source, seq, 0),
        timestamp: at(offset),
        dataset: "test".to_owned(),
        observer: Observer {
            hostname: Some("gw-chromium".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: format!("{source} line {seq}"),
        session_id: Some(SESSION.to_owned()),
        source_geo: None,
        body,
    }
}

fn events() -> Vec<Event> {
    let login = event(
        "gw/charon",
        1,
        0,
        EventBody::Auth(Auth {
            peer: Peer {
                connection: Some("rw-psk".to_owned()),
                ike_sa_id: Some(1),
                client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
                server: Endpoint::default(),
                identities: Identities {
                    ike_id: Some(USER.to_owned()),
                    ..Identities::default()
                },
            },
            method: AuthMethod::Psk,
            outcome: Outcome::Success,
            failure: None,
        }),
    );
    let flow = event(
        "gw/flows",
        1,
        10,
        EventBody::Flow(Flow {
            source: Endpoint::new("10.99.0.1".parse().unwrap(), Some(40_001)),
            destination: Endpoint::new("198.51.100.77".parse().unwrap(), Some(8443)),
            transport: "tcp".to_owned(),
            start: at(10),
            end: at(12),
            source_bytes: 1_500,
            destination_bytes: 64_000,
            source_packets: 10,
            destination_packets: 50,
            tcp_flags: Some(0x1b),
            end_reason: Some(FlowEnd::TcpEnd),
            session_join: Some(SessionJoin::Matched),
            user_name: Some(USER.to_owned()),
        }),
    );
    let request = |seq: u64, offset: i64, path: &str, status: u16| {
        event(
            "gw/nginx",
            seq,
            offset,
            EventBody::ApiRequest(ApiRequest {
                client_ip: Some("10.99.0.1".parse().unwrap()),
                destination: Endpoint::new("198.51.100.77".parse().unwrap(), Some(8443)),
                method: "GET".to_owned(),
                host: Some("api.example.test".to_owned()),
                path: path.to_owned(),
                status,
                response_bytes: Some(512),
                duration_us: Some(3_000),
                request_id: Some(format!("req-{seq}")),
                session_join: Some(SessionJoin::Matched),
                user_name: Some(USER.to_owned()),
            }),
        )
    };
    vec![
        login,
        flow,
        request(1, 11, "/v1/invoices/2026", 200),
        request(2, 20, HOSTILE_PATH, 404),
    ]
}

fn session() -> Session {
    Session {
        session_id: SESSION.to_owned(),
        gateway: Some("gw-chromium".to_owned()),
        connection: Some("rw-psk".to_owned()),
        ike_sa_ids: vec![1],
        identities: Identities {
            ike_id: Some(USER.to_owned()),
            ..Identities::default()
        },
        method: Some(AuthMethod::Psk),
        client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
        client_geo: None,
        virtual_ip: Some("10.99.0.1".parse().unwrap()),
        start: at(0),
        end: None,
        state: SessionState::Active,
        cause: None,
        counters: Counters::default(),
        child_sa_counters: Default::default(),
        rekey_count: 0,
        accounting_id: None,
        version: 1,
        updated: at(0),
        sources: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_page_shows_the_timeline_and_hostile_text_as_text() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let store = store::Store::open(&store::Config::for_dir(&data)).unwrap();
    store.append(events(), vec![session()]).unwrap();
    store.append_alerts(vec![hostile_alert()]).unwrap();
    let (alerting, _alerting_task) = alerting::Alerting::start(
        &alerting::Config::default(),
        Arc::new(StoreSink(store.clone())),
        alerting::Clock::EventTime,
        None,
        None,
    )
    .unwrap();
    // Anonymous visitors browse as viewers here, as in the demo; signing in is tested in
    // login_chromium.rs.
    let settings = dashboards::access::Settings {
        anonymous_role: Some(dashboards::access::Role::Viewer),
        ..dashboards::access::Settings::default()
    };
    let state = dashboards::AppState {
        store: store.clone(),
        ingest: Arc::new(NoIngest),
        ingest_token: None,
        access: dashboards::access::Access::open(&data, settings, store).unwrap(),
        web: dashboards::WebSettings::default(),
        collector: None,
        alerting: Some(alerting),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dashboards::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let profile = work.path().join("profile");
    let session_url = format!("{base}/#/sessions/{SESSION}");
    let users_url = format!("{base}/#/users/alice%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E");
    let overview_url = format!("{base}/");
    let (session_dom, user_dom, overview_dom) = tokio::task::spawn_blocking(move || {
        (
            rendered(&profile, &session_url),
            rendered(&profile, &users_url),
            rendered(&profile, &overview_url),
        )
    })
    .await
    .unwrap();
    let _ = stop.send(());
    server.await.unwrap().unwrap();

    // The session page: the header and the timeline, oldest first.
    assert!(
        session_dom.contains("live · updated"),
        "the page reached the API:\n{session_dom}"
    );
    let facts = element(&session_dom, "session-facts");
    assert!(facts.contains("192.0.2.11:4500"), "{facts}");
    assert!(facts.contains("10.99.0.1"), "{facts}");
    assert!(facts.contains("gw-chromium"), "{facts}");
    assert!(facts.contains(">open<"), "{facts}");
    let timeline = element(&session_dom, "timeline");
    let order: Vec<usize> = [
        ">auth<",
        ">flow<",
        "GET api.example.test/v1/invoices/2026",
        "GET api.example.test/v1/&lt;script&gt;",
    ]
    .iter()
    .map(|needle| {
        timeline
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} is not in the timeline:\n{timeline}"))
    })
    .collect();
    assert!(order.is_sorted(), "out of order: {order:?}\n{timeline}");
    assert!(timeline.contains("198.51.100.77:8443"), "{timeline}");
    assert!(timeline.contains("↑ 1.5 KiB / ↓ 62.5 KiB"), "{timeline}");
    assert!(timeline.contains(">404<"), "{timeline}");
    assert!(session_dom.contains(">4 items<"), "{session_dom}");
    // Hostile text arrives as text: markup escaped, CR/LF and ESC visible as escapes.
    assert!(
        timeline.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\r\\nX-Injected: 1\\x1b[31m"),
        "{timeline}"
    );
    for dom in [&session_dom, &user_dom, &overview_dom] {
        assert!(
            !dom.contains("<script>alert"),
            "markup from the data reached the DOM:\n{dom}"
        );
        assert!(
            !dom.contains("<img src=\"x\""),
            "markup from the data reached the DOM:\n{dom}"
        );
        assert!(
            !dom.contains('\u{1b}'),
            "a raw escape character reached the DOM:\n{dom}"
        );
    }
    // The open alert on the overview, its hostile text as text.
    let alerts = element(&overview_dom, "alerts");
    assert!(alerts.contains("Failed logins of one user"), "{alerts}");
    assert!(
        alerts.contains(">firing<") && alerts.contains(">high<"),
        "{alerts}"
    );
    assert!(
        alerts.contains(
            "12 failures for &lt;script&gt;alert(1)&lt;/script&gt;\\r\\nX-Injected: 1\\x1b[31m"
        ),
        "{alerts}"
    );
    assert!(overview_dom.contains(">1 open alert<"), "{overview_dom}");
    // The user is a link to their activity, and the name is text.
    assert!(
        facts.contains("href=\"#/users/alice%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E\""),
        "{facts}"
    );
    assert!(
        facts.contains("alice&lt;img src=x onerror=alert(1)&gt;"),
        "{facts}"
    );

    // The user page: the session, the destination and both API paths, counted.
    assert!(user_dom.contains("live · updated"), "{user_dom}");
    let sessions = element(&user_dom, "user-sessions");
    assert!(
        sessions.contains(&format!("href=\"#/sessions/{SESSION}\"")),
        "{sessions}"
    );
    let destinations = element(&user_dom, "user-destinations");
    assert!(
        destinations.contains("198.51.100.77:8443"),
        "{destinations}"
    );
    let paths = element(&user_dom, "user-api-paths");
    assert!(paths.contains("/v1/invoices/2026"), "{paths}");
    assert!(
        paths.contains("/v1/&lt;script&gt;alert(1)&lt;/script&gt;\\r\\nX-Injected: 1\\x1b[31m"),
        "{paths}"
    );
    assert!(
        user_dom.contains("1 session, 1 flow, 2 API requests"),
        "{user_dom}"
    );

    // The overview links each session to its page and each user to their activity.
    let overview = element(&overview_dom, "sessions");
    assert!(
        overview.contains(&format!("href=\"#/sessions/{SESSION}\"")),
        "{overview}"
    );
    assert!(
        overview.contains("href=\"#/users/alice%3Cimg"),
        "{overview}"
    );
}
