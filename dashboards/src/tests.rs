//! Router tests with `oneshot`: no server, no network. The ingest seam is a direct store
//! append here (the collector is tested on its own and end to end in `app/tests`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use model::{
    Auth, AuthFailure, AuthMethod, Endpoint, Event, EventBody, EventId, FailureCode, Identities,
    IngestAck, IngestBatch, Observer, Outcome, Peer,
};
use tower::ServiceExt;

use super::*;

struct DirectIngest(store::Store);

impl Ingest for DirectIngest {
    fn ingest(
        &self,
        batch: IngestBatch,
    ) -> Pin<Box<dyn Future<Output = Result<IngestAck, IngestError>> + Send>> {
        let store = self.0.clone();
        Box::pin(async move {
            let receipt = store
                .append(batch.events, Vec::new())
                .map_err(|error| IngestError::Unavailable(error.to_string()))?;
            Ok(IngestAck {
                accepted: receipt.accepted,
                duplicates: receipt.duplicates,
            })
        })
    }
}

/// A state whose callers without credentials browse as analysts, and which takes events
/// without a credential unless `token` is the shared ingest token: the tests of what the
/// API answers. Access itself is tested in `routes::tests` and `access::tests`.
pub(crate) fn state(dir: &std::path::Path, token: Option<&str>) -> AppState {
    let store = store::Store::open(&store::Config::for_dir(dir)).unwrap();
    state_of(store, dir, token)
}

pub(crate) fn state_of(
    store: store::Store,
    dir: &std::path::Path,
    token: Option<&str>,
) -> AppState {
    let settings = access::Settings {
        anonymous_role: Some(access::Role::Analyst),
        ..access::Settings::default()
    };
    AppState {
        store: store.clone(),
        ingest: Arc::new(DirectIngest(store.clone())),
        ingest_token: token.map(str::to_owned),
        access: access::Access::open(dir, settings, store).unwrap(),
        web: WebSettings {
            secure_cookies: false,
            allow_unauthenticated_ingest: token.is_none(),
        },
        collector: None,
        alerting: None,
    }
}

fn failure_event(seq: u64, user: &str) -> Event {
    Event {
        id: EventId::new("gw1/charon", seq, 0),
        timestamp: jiff::Timestamp::from_second(1_795_000_000 + seq as i64).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("gw1".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: format!("tried 1 shared key for 'gw' - '{user}', but MAC mismatched"),
        session_id: None,
        source_geo: None,
        body: EventBody::Auth(Auth {
            peer: Peer {
                client: Endpoint::new("192.0.2.12".parse().unwrap(), Some(4500)),
                identities: Identities {
                    ike_id: Some(user.to_owned()),
                    ..Identities::default()
                },
                ..Peer::default()
            },
            method: AuthMethod::Psk,
            outcome: Outcome::Failure,
            failure: Some(AuthFailure {
                code: FailureCode::PskMismatch,
                reason: "MAC mismatched".to_owned(),
            }),
        }),
    }
}

async fn call(state: &AppState, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
    });
    (status, value)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn post_batch(body: impl Into<Body>, token: Option<&str>) -> Request<Body> {
    let mut request = Request::post("/api/v1/ingest").header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request.body(body.into()).unwrap()
}

#[tokio::test]
async fn console_health_and_empty_lists() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    let (status, page) = call(&state, get("/")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.as_str()
            .unwrap()
            .contains("<title>tunnelwatch</title>")
    );
    let (status, _) = call(&state, get("/assets/app.js")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&state, get("/assets/../../etc/passwd")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = call(&state, get("/healthz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = call(&state, get("/api/v1/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["problems"], serde_json::json!([]));
    assert_eq!(body["store"]["quarantined_segments"], 0);
    let (status, body) = call(&state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(
        text.contains("# TYPE tunnelwatch_store_quarantined_segments gauge\ntunnelwatch_store_quarantined_segments 0\n"),
        "{text}"
    );
    let (status, body) = call(&state, get("/api/v1/sessions")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 0);
    let (status, body) = call(&state, get("/api/v1/stats")).await;
    assert_eq!(
        (status, body["auth_failures"].as_i64()),
        (StatusCode::OK, Some(0))
    );
}

#[tokio::test]
async fn ingest_requires_the_token_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), Some("s3cret"));
    let batch = serde_json::to_vec(&IngestBatch {
        gateway: "gw1".to_owned(),
        events: vec![failure_event(1, "mallory"), failure_event(2, "eve")],
    })
    .unwrap();
    let (status, _) = call(&state, post_batch(batch.clone(), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(&state, post_batch(batch.clone(), Some("wrong"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, ack) = call(&state, post_batch(batch.clone(), Some("s3cret"))).await;
    assert_eq!(status, StatusCode::OK, "{ack}");
    assert_eq!(ack, serde_json::json!({"accepted": 2, "duplicates": 0}));
    let (_, ack) = call(&state, post_batch(batch, Some("s3cret"))).await;
    assert_eq!(ack, serde_json::json!({"accepted": 0, "duplicates": 2}));
    let (status, body) = call(&state, get("/api/v1/auth-events?outcome=failure")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 2);
    assert_eq!(body["auth_events"][0]["user_name"], "eve");
    assert_eq!(body["auth_events"][0]["vpn_auth_failure"], "psk_mismatch");
}

#[tokio::test]
async fn bad_requests_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    for (body, needle) in [
        (&b"{not json"[..], "unreadable batch"),
        (&b"{\"gateway\":\"gw\"}"[..], "events"),
        (&b"\xff\xfe"[..], "unreadable batch"),
        (
            &b"{\"gateway\":\"gw\",\"events\":[{\"id\":1}]}"[..],
            "unreadable batch",
        ),
    ] {
        let (status, error) = call(&state, post_batch(body.to_vec(), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert!(
            error["message"].as_str().unwrap().contains(needle),
            "{error}"
        );
    }
    let oversized = vec![b' '; model::wire::MAX_INGEST_BODY_BYTES + 1];
    let (status, _) = call(&state, post_batch(oversized, None)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, error) = call(&state, get("/api/v1/sessions?state=bogus")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("vpn_state must be one of active, closed, lost")
    );
    let (status, _) = call(&state, get("/api/v1/sessions?colour=blue")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(&state, get("/api/v1/sessions?limit=-1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn filters_are_data_not_sql() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    state
        .store
        .append(vec![failure_event(1, "o'brien")], Vec::new())
        .unwrap();
    let (status, body) = call(&state, get("/api/v1/auth-events?user=o%27brien")).await;
    assert_eq!((status, body["count"].as_i64()), (StatusCode::OK, Some(1)));
    let (status, body) = call(
        &state,
        get("/api/v1/auth-events?user=x%27%20OR%20%271%27%3D%271"),
    )
    .await;
    assert_eq!((status, body["count"].as_i64()), (StatusCode::OK, Some(0)));
}

#[tokio::test]
async fn search_finds_flushed_events_and_refuses_bad_searches() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path(), None);
    let batch = serde_json::to_vec(&IngestBatch {
        gateway: "gw1".to_owned(),
        events: vec![failure_event(1, "mallory"), failure_event(2, "eve")],
    })
    .unwrap();
    let (status, _) = call(&state, post_batch(batch, None)).await;
    assert_eq!(status, StatusCode::OK);
    state.store.flush().unwrap();
    let (status, body) = call(&state, get("/api/v1/search?q=mallory%20AND%20mismatched")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["total"], 1);
    assert_eq!(body["hits"][0]["event_id"], "gw1/charon:1");
    assert_eq!(body["hits"][0]["user_name"], "mallory");
    assert_eq!(
        body["hits"][0]["links"]["events"],
        "/api/v1/search?q=id:%22gw1%2Fcharon%3A1%22"
    );
    let (_, body) = call(
        &state,
        get("/api/v1/search?q=outcome:failure&from=2026-11-18T11:06:42Z&limit=5"),
    )
    .await;
    assert_eq!(body["total"], 1, "{body}");
    assert_eq!(body["hits"][0]["user_name"], "eve");
    let (_, body) = call(&state, get("/api/v1/search?q=outcome:failure&limit=1")).await;
    assert_eq!(
        (body["total"].as_u64(), body["count"].as_u64()),
        (Some(2), Some(1))
    );
    for (uri, needle) in [
        ("/api/v1/search?q=%22unbalanced", "cannot read the search"),
        ("/api/v1/search?q=nosuch:field", "nosuch"),
        ("/api/v1/search?q=x&from=yesterday", "RFC 3339"),
        ("/api/v1/search?q=x&colour=blue", "unknown field"),
    ] {
        let (status, error) = call(&state, get(uri)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {error}");
        assert!(error.to_string().contains(needle), "{uri}: {error}");
    }
    let long = format!("/api/v1/search?q={}", "a".repeat(5000));
    let (status, _) = call(&state, get(&long)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

fn post_sql(body: serde_json::Value) -> Request<Body> {
    Request::post("/api/v1/sql")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// Status, content type and the raw body.
async fn call_raw(state: &AppState, request: Request<Body>) -> (StatusCode, String, String) {
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn sql_streams_rows_and_refuses_what_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = store::Config::for_dir(dir.path());
    config.query_timeout_secs = 1;
    let store = store::Store::open(&config).unwrap();
    let state = state_of(store.clone(), dir.path(), None);
    store
        .append(
            vec![failure_event(1, "mallory"), failure_event(2, "eve")],
            vec![],
        )
        .unwrap();
    store.flush().unwrap();
    store
        .append(vec![failure_event(3, "trudy")], vec![])
        .unwrap();

    let (status, content_type, body) = call_raw(
        &state,
        post_sql(serde_json::json!({
            "sql": "select user_name from auth_events order by timestamp"
        })),
    )
    .await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/x-ndjson")
    );
    assert_eq!(
        body,
        "{\"user_name\":\"mallory\"}\n{\"user_name\":\"eve\"}\n{\"user_name\":\"trudy\"}\n"
    );
    let (status, content_type, body) = call_raw(
        &state,
        post_sql(serde_json::json!({
            "sql": "select user_name, event_outcome from auth_events order by timestamp desc limit 1",
            "format": "csv"
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/csv"));
    assert_eq!(body, "user_name,event_outcome\ntrudy,failure\n");
    // No rows: nothing in JSON lines, the header in CSV.
    let (_, _, body) = call_raw(
        &state,
        post_sql(serde_json::json!({"sql": "select user_name from auth_events where false"})),
    )
    .await;
    assert_eq!(body, "");
    let (_, _, body) = call_raw(
        &state,
        post_sql(serde_json::json!({"sql": "select user_name from auth_events where false", "format": "csv"})),
    )
    .await;
    assert_eq!(body, "user_name\n");

    for (request, expected_status, needle) in [
        (
            serde_json::json!({"sql": "select nope from auth_events"}),
            StatusCode::BAD_REQUEST,
            "nope",
        ),
        (
            serde_json::json!({"sql": "drop table auth_events"}),
            StatusCode::BAD_REQUEST,
            "DDL",
        ),
        (
            serde_json::json!({"sql": "copy auth_events to '/tmp/x.csv'"}),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            serde_json::json!({"sql": "select 1", "format": "xml"}),
            StatusCode::BAD_REQUEST,
            "format",
        ),
        (
            serde_json::json!({"sql": format!("select 1 -- {}", "x".repeat(65_600))}),
            StatusCode::BAD_REQUEST,
            "longer than",
        ),
        (
            serde_json::json!({"sql": "select count(*) from generate_series(1, 100000000000)"}),
            StatusCode::SERVICE_UNAVAILABLE,
            "cancelled",
        ),
    ] {
        let (status, body) = call(&state, post_sql(request.clone())).await;
        let what: String = request.to_string().chars().take(120).collect();
        assert_eq!(status, expected_status, "{what}: {body}");
        assert!(body.to_string().contains(needle), "{what}: {body}");
    }
    // Far too big for the body limit.
    let huge = serde_json::json!({"sql": format!("select 1 -- {}", "x".repeat(200_000))});
    let (status, _, _) = call_raw(&state, post_sql(huge)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A body that is not the request.
    let (status, _, _) = call_raw(
        &state,
        Request::post("/api/v1/sql")
            .header("content-type", "application/json")
            .body(Body::from("{\"query\": 1}"))
            .unwrap(),
    )
    .await;
    assert!(status.is_client_error());
}

#[tokio::test]
async fn health_details_and_metrics_say_what_was_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    {
        let state = state(dir.path(), None);
        state
            .store
            .append(vec![failure_event(1, "mallory")], vec![])
            .unwrap();
        state.store.flush().unwrap();
    }
    // Damage the auth_events segment while the server is down.
    let mut stack = vec![dir.path().join("tables/auth_events")];
    let mut damaged = 0;
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "parquet") {
                std::fs::write(&path, b"PAR1 not really").unwrap();
                damaged += 1;
            }
        }
    }
    assert_eq!(damaged, 1);
    let state = state(dir.path(), None);
    let (status, body) = call(&state, get("/healthz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("degraded"))
    );
    let (_, body) = call(&state, get("/api/v1/health")).await;
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["store"]["quarantined_segments"], 1);
    let problem = body["problems"][0].as_str().unwrap();
    assert!(problem.contains("DATA/quarantine/"), "{problem}");
    let (_, body) = call(&state, get("/metrics")).await;
    assert!(
        body.as_str()
            .unwrap()
            .contains("\ntunnelwatch_store_quarantined_segments 1\n"),
        "{body}"
    );
}

mod activity;

/// A stand-in for the collector's report (the app's `Pipeline` is the real one, checked end
/// to end in app/tests/vpn_sources_e2e.rs).
struct FixedCollector;

impl crate::HealthSource for FixedCollector {
    fn problems(&self) -> Vec<String> {
        Vec::new()
    }

    fn detail(&self) -> serde_json::Value {
        serde_json::json!({ "join": { "matched": 7 } })
    }

    fn metrics(&self) -> Vec<crate::Metric> {
        vec![
            crate::Metric {
                name: "tunnelwatch_join_matched_total",
                help: "Joined",
                kind: crate::MetricKind::Counter,
                value: 7,
            },
            crate::Metric {
                name: "tunnelwatch_join_pending",
                help: "Waiting",
                kind: crate::MetricKind::Gauge,
                value: 2,
            },
        ]
    }
}

#[tokio::test]
async fn metrics_add_the_collectors_figures_after_the_stores() {
    let dir = tempfile::tempdir().unwrap();
    let mut state = state(dir.path(), None);
    let (_, body) = call(&state, get("/metrics")).await;
    assert!(
        !body.as_str().unwrap().contains("tunnelwatch_join"),
        "{body}"
    );
    state.collector = Some(Arc::new(FixedCollector));
    let (status, body) = call(&state, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let text = body.as_str().unwrap();
    assert!(
        text.contains(
            "# HELP tunnelwatch_join_matched_total Joined\n\
             # TYPE tunnelwatch_join_matched_total counter\n\
             tunnelwatch_join_matched_total 7\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("# TYPE tunnelwatch_join_pending gauge\ntunnelwatch_join_pending 2\n"),
        "{text}"
    );
    assert!(
        text.find("tunnelwatch_store_segments") < text.find("tunnelwatch_join_matched_total"),
        "{text}"
    );
    let (_, body) = call(&state, get("/api/v1/health")).await;
    assert_eq!(body["collector"]["join"]["matched"], 7);
}

/// Every 503 says when to come back (busy with queries, a failing flush, a full disk).
#[test]
fn unavailable_answers_say_when_to_retry() {
    use axum::response::IntoResponse;
    let response = crate::ApiError::unavailable("3 queries are running already").into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()),
        Some("2")
    );
    let response = crate::ApiError::bad_request("no").into_response();
    assert!(
        response
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .is_none()
    );
}
