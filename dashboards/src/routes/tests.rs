//! The route table against every kind of caller, CSRF, and the headers of every answer.
//! The matrix is generated from [`table`], so a route added later is checked too.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::*;
use crate::access::{Access, Actor, Settings};
use crate::tests::state_of;

struct World {
    _dir: tempfile::TempDir,
    state: AppState,
    /// Role tokens, one per role.
    role_tokens: Vec<(Role, String)>,
    /// Signed-in sessions (cookie, CSRF token), one per role.
    sessions: Vec<(Role, String, String)>,
    gateway_token: String,
    expired_token: String,
    revoked_token: String,
    /// The cookie of an account disabled after it signed in.
    disabled_cookie: String,
}

const PASSWORD: &str = "a long enough password";

fn world(anonymous_role: Option<Role>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&store::Config::for_dir(dir.path())).unwrap();
    let mut state = state_of(store.clone(), dir.path(), Some("shared-ingest-secret"));
    state.access = Access::open(
        dir.path(),
        Settings {
            anonymous_role,
            ..Settings::default()
        },
        store,
    )
    .unwrap();
    let access = &state.access;
    let cli = Actor::cli("root");
    let now = jiff::Timestamp::now();
    let mut role_tokens = Vec::new();
    let mut sessions = Vec::new();
    for role in Role::ALL {
        let name = format!("op-{role}");
        access.add_user(&cli, &name, role, PASSWORD).unwrap();
        let (cookie, session) = access.login(&name, PASSWORD, None, None, now).unwrap();
        sessions.push((role, cookie, session.csrf_token));
        let token = access
            .create_token(&cli, &format!("t-{role}"), Grant::Role { role }, None)
            .unwrap();
        role_tokens.push((role, token));
    }
    let gateway_token = access
        .create_token(
            &cli,
            "gw-a",
            Grant::Gateway {
                gateway: "gw-a".to_owned(),
                client_subject: None,
            },
            None,
        )
        .unwrap();
    let expired_token = access
        .create_token(&cli, "soon", Grant::Role { role: Role::Admin }, Some(1))
        .unwrap();
    let revoked_token = access
        .create_token(&cli, "gone", Grant::Role { role: Role::Admin }, None)
        .unwrap();
    access.revoke_token(&cli, "gone").unwrap();
    access
        .add_user(&cli, "leaver", Role::Admin, PASSWORD)
        .unwrap();
    let (disabled_cookie, _) = access.login("leaver", PASSWORD, None, None, now).unwrap();
    access.set_disabled(&cli, "leaver", true).unwrap();
    World {
        _dir: dir,
        state,
        role_tokens,
        sessions,
        gateway_token,
        expired_token,
        revoked_token,
        disabled_cookie,
    }
}

#[derive(Debug, Clone)]
#[allow(dead_code)] // the fields are read through Debug, in failure messages
enum Who {
    Nobody,
    Token(Option<Role>, String),
    Session(Role, String, String),
    Gateway(String),
    SharedIngest,
    Dead(&'static str, Credential2),
}

#[derive(Debug, Clone)]
enum Credential2 {
    Bearer(String),
    Cookie(String),
}

fn callers(world: &World) -> Vec<Who> {
    let mut callers = vec![Who::Nobody];
    for (role, token) in &world.role_tokens {
        callers.push(Who::Token(Some(*role), token.clone()));
    }
    for (role, cookie, csrf) in &world.sessions {
        callers.push(Who::Session(*role, cookie.clone(), csrf.clone()));
    }
    callers.push(Who::Gateway(world.gateway_token.clone()));
    callers.push(Who::SharedIngest);
    callers.push(Who::Dead(
        "revoked token",
        Credential2::Bearer(world.revoked_token.clone()),
    ));
    callers.push(Who::Dead(
        "disabled account's session",
        Credential2::Cookie(world.disabled_cookie.clone()),
    ));
    callers.push(Who::Dead(
        "cookie of another server",
        Credential2::Cookie("ab".repeat(32)),
    ));
    callers.push(Who::Dead(
        "malformed bearer",
        Credential2::Bearer("tw_short".to_owned()),
    ));
    callers
}

fn request(route: &Route, who: &Who) -> Request<Body> {
    let path = route
        .path
        .replace("{id}", "s-unknown")
        .replace("{name}", "alice");
    let path = if path == "/assets/{name}" {
        "/assets/app.js".to_owned()
    } else {
        path
    };
    let mut builder = Request::builder().method(route.method.clone()).uri(path);
    match who {
        Who::Nobody => {}
        Who::Token(_, token) | Who::Gateway(token) => {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        Who::SharedIngest => {
            builder = builder.header("authorization", "Bearer shared-ingest-secret");
        }
        Who::Session(_, cookie, csrf) => {
            builder = builder
                .header("cookie", format!("tw_session={cookie}"))
                .header(CSRF_HEADER, csrf.as_str());
        }
        Who::Dead(_, Credential2::Bearer(token)) => {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        Who::Dead(_, Credential2::Cookie(cookie)) => {
            builder = builder.header("cookie", format!("tw_session={cookie}"));
        }
    }
    if route.method == Method::POST {
        builder
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap()
    } else {
        builder.body(Body::empty()).unwrap()
    }
}

/// What the guard must answer: `None` lets the request through to the handler.
fn expected(need: Need, who: &Who, anonymous: Option<Role>) -> Option<StatusCode> {
    let role = match who {
        Who::Nobody => anonymous,
        Who::Token(role, _) => *role,
        Who::Session(role, ..) => Some(*role),
        Who::Gateway(_) | Who::SharedIngest => None,
        Who::Dead(..) => None,
    };
    match (need, who) {
        (Need::Public, Who::Dead(_, Credential2::Bearer(_))) => Some(StatusCode::UNAUTHORIZED),
        (Need::Public, Who::SharedIngest) => Some(StatusCode::UNAUTHORIZED),
        (Need::Public, _) => None,
        (_, Who::Dead(..)) => Some(StatusCode::UNAUTHORIZED),
        (Need::Ingest, Who::Gateway(_) | Who::SharedIngest) => None,
        (Need::Ingest, Who::Nobody) => Some(StatusCode::UNAUTHORIZED),
        (Need::Ingest, _) => Some(StatusCode::FORBIDDEN),
        (Need::Role(_), Who::SharedIngest) => Some(StatusCode::UNAUTHORIZED),
        (Need::Role(_), Who::Gateway(_)) => Some(StatusCode::FORBIDDEN),
        (Need::Role(least), _) => match role {
            None => Some(StatusCode::UNAUTHORIZED),
            Some(role) if role < least => Some(StatusCode::FORBIDDEN),
            Some(_) => None,
        },
    }
}

async fn run_matrix(anonymous: Option<Role>) {
    let world = world(anonymous);
    let router = crate::router(world.state.clone());
    let mut checked = 0;
    // Signing out ends the sessions the other rows use: last.
    let mut routes = table();
    routes.sort_by_key(|route| route.path == "/api/v1/auth/logout");
    for route in routes {
        for who in callers(&world) {
            let response = router.clone().oneshot(request(&route, &who)).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let context = format!(
                "{} {} as {who:?} (anonymous {anonymous:?}): {status} {}",
                route.method,
                route.path,
                String::from_utf8_lossy(&body)
            );
            match expected(route.need, &who, anonymous) {
                Some(want) => assert_eq!(status, want, "{context}"),
                None => {
                    assert_ne!(status, StatusCode::FORBIDDEN, "{context}");
                    // Only sign-in routes may say "not signed in" for their own reasons.
                    if status == StatusCode::UNAUTHORIZED {
                        assert!(route.path.starts_with("/api/v1/auth/"), "{context}");
                    }
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{context}");
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 200, "{checked}");
    // The expired token: a day from now it is refused everywhere but public routes.
    let tomorrow = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(25))
        .unwrap();
    assert!(
        world
            .state
            .access
            .authenticate(Credential::Bearer(&world.expired_token), tomorrow)
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_against_every_caller() {
    run_matrix(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_against_every_caller_with_anonymous_viewers() {
    run_matrix(Some(Role::Viewer)).await;
}

#[test]
fn the_table_names_each_route_once_with_a_rule() {
    let mut seen = std::collections::HashSet::new();
    for route in table() {
        assert!(
            seen.insert((route.method.clone(), route.path)),
            "{} {} twice",
            route.method,
            route.path
        );
        assert!(route.path.starts_with('/'));
        assert!(!route.summary.is_empty());
        assert!(rule(&route.method, route.path).is_some());
    }
    // Writing the audit trail, accounts and tokens takes an admin; reading data a viewer.
    assert_eq!(
        rule(&Method::GET, "/api/v1/accounts"),
        Some(Need::Role(Role::Admin))
    );
    assert_eq!(
        rule(&Method::POST, "/api/v1/sql"),
        Some(Need::Role(Role::Analyst))
    );
    assert_eq!(
        rule(&Method::HEAD, "/api/v1/sessions"),
        Some(Need::Role(Role::Viewer))
    );
    assert_eq!(rule(&Method::DELETE, "/api/v1/sessions"), None);
}

#[tokio::test]
async fn a_route_outside_the_table_is_refused() {
    let world = world(Some(Role::Analyst));
    let handled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = handled.clone();
    let router = axum::Router::new()
        .route(
            "/api/v1/forgotten",
            axum::routing::get(move || async move {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                "secret"
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            world.state.clone(),
            guard,
        ))
        .with_state(world.state.clone());
    let (_, token) = world.role_tokens.last().unwrap().clone();
    let response = router
        .oneshot(
            Request::get("/api/v1/forgotten")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        !handled.load(std::sync::atomic::Ordering::SeqCst),
        "the handler never ran"
    );
}

async fn send(
    state: &AppState,
    request: Request<Body>,
) -> (StatusCode, HeaderMap, serde_json::Value) {
    let response = crate::router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

fn sql(cookie: &str, csrf: Option<&str>) -> axum::http::request::Builder {
    let mut builder = Request::post("/api/v1/sql")
        .header("content-type", "application/json")
        .header("host", "console.example")
        .header("cookie", format!("tw_session={cookie}"));
    if let Some(csrf) = csrf {
        builder = builder.header(CSRF_HEADER, csrf);
    }
    builder
}

const SQL: &str = r#"{"sql":"select 1 as one"}"#;

#[tokio::test]
async fn sign_in_then_csrf_guards_every_change_and_sign_out_ends_the_cookie() {
    let world = world(None);
    let state = &world.state;
    let (status, headers, body) = send(
        state,
        Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"name":"OP-ANALYST","password":"{PASSWORD}"}}"#
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["name"], "op-analyst");
    assert_eq!(body["role"], "analyst");
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let cookie = set_cookie
        .strip_prefix("tw_session=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();

    // Reads need no CSRF token.
    let (status, _, body) = send(
        state,
        Request::get("/api/v1/auth/me")
            .header("cookie", format!("tw_session={cookie}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["csrf_token"], csrf.as_str());

    // A POST without the token, with a wrong one, or from another site is refused.
    for (request, why) in [
        (
            sql(&cookie, None).body(Body::from(SQL)).unwrap(),
            "no token",
        ),
        (
            sql(&cookie, Some("0123")).body(Body::from(SQL)).unwrap(),
            "wrong token",
        ),
        (
            sql(&cookie, Some(&csrf))
                .header("origin", "https://evil.example")
                .body(Body::from(SQL))
                .unwrap(),
            "cross-origin fetch",
        ),
        (
            sql(&cookie, Some(&csrf))
                .header("sec-fetch-site", "cross-site")
                .body(Body::from(SQL))
                .unwrap(),
            "cross-site form post",
        ),
    ] {
        let (status, _, body) = send(state, request).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{why}: {body}");
        assert_eq!(body["code"], "forbidden");
    }
    // The same request with the token, from the console's own origin, passes.
    let (status, _, body) = send(
        state,
        sql(&cookie, Some(&csrf))
            .header("origin", "http://console.example")
            .header("sec-fetch-site", "same-origin")
            .body(Body::from(SQL))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A bearer token needs no CSRF token.
    let (_, analyst_token) = world.role_tokens[1].clone();
    let (status, _, _) = send(
        state,
        Request::post("/api/v1/sql")
            .header("authorization", format!("Bearer {analyst_token}"))
            .header("content-type", "application/json")
            .body(Body::from(SQL))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Sign out: the cookie is worthless afterwards, even if it was stolen.
    let (status, headers, _) = send(
        state,
        Request::post("/api/v1/auth/logout")
            .header("cookie", format!("tw_session={cookie}"))
            .header(CSRF_HEADER, csrf.as_str())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (status, _, body) = send(
        state,
        Request::get("/api/v1/sessions")
            .header("cookie", format!("tw_session={cookie}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // Every login and logout is in the audit trail.
    let actions: Vec<String> = state
        .store
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|entry| {
            entry.draft.actor.as_deref() == Some("op-analyst")
                || entry.draft.target.as_deref() == Some("op-analyst")
        })
        .map(|entry| {
            format!(
                "{} {}",
                entry.draft.action,
                entry.draft.outcome.unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "account.add success",
            "login success",
            "login success",
            "sql.query success",
            "logout success"
        ]
    );
    let entries = state.store.audit_entries().unwrap();
    let query = entries
        .iter()
        .find(|entry| entry.draft.action == "sql.query")
        .unwrap();
    assert_eq!(query.draft.message, "op-analyst ran SQL: select 1 as one");
}

#[tokio::test]
async fn a_login_form_posted_from_another_site_is_refused() {
    let world = world(None);
    let (status, _, body) = send(
        &world.state,
        Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .header("origin", "https://evil.example")
            .header("host", "console.example")
            .body(Body::from(format!(
                r#"{{"name":"op-admin","password":"{PASSWORD}"}}"#
            )))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn wrong_passwords_answer_401_then_429_with_retry_after() {
    let world = world(None);
    let login = |password: &str| {
        Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"name":"op-viewer","password":"{password}"}}"#
            )))
            .unwrap()
    };
    for _ in 0..4 {
        let (status, _, body) = send(&world.state, login("not the password")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], "bad_credentials");
    }
    let (status, headers, body) = send(&world.state, login(PASSWORD)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "throttled");
    assert!(headers.contains_key(header::RETRY_AFTER));
    // Oversized and malformed bodies are refused before any hashing.
    let huge = format!(r#"{{"name":"x","password":"{}"}}"#, "p".repeat(20_000));
    let (status, _, _) = send(
        &world.state,
        Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(huge))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    for body in [
        &b"{"[..],
        b"{\"name\":1}",
        b"\xff",
        b"{\"name\":\"a\",\"password\":\"b\",\"admin\":true}",
    ] {
        let (status, _, answer) = send(
            &world.state,
            Request::post("/api/v1/auth/login")
                .header("content-type", "application/json")
                .body(Body::from(body.to_vec()))
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["code"], "bad_request");
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let world = world(None);
    for (path, status) in [
        ("/", StatusCode::OK),
        ("/login", StatusCode::OK),
        ("/api/v1/sessions", StatusCode::UNAUTHORIZED),
        ("/no/such/page", StatusCode::NOT_FOUND),
    ] {
        let (got, headers, _) = send(
            &world.state,
            Request::get(path).body(Body::empty()).unwrap(),
        )
        .await;
        assert_eq!(got, status, "{path}");
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    }
}

fn batch(gateway: &str, source: &str, seq: u64) -> Vec<u8> {
    let mut event: model::Event = serde_json::from_value(serde_json::json!({
        "id": {"source": source, "seq": seq},
        "timestamp": "2026-11-25T08:00:00Z",
        "dataset": "strongswan.charon",
        "observer": {"hostname": gateway},
        "original": "line",
        "body": {"type": "pipeline_error", "reason": "malformed", "message": "test", "original_len": 4}
    }))
    .unwrap_or_else(|error| panic!("{error}"));
    event.id.seq = seq;
    serde_json::to_vec(&model::IngestBatch {
        gateway: gateway.to_owned(),
        events: vec![event],
    })
    .unwrap()
}

#[tokio::test]
async fn a_gateway_credential_sends_only_in_its_own_name_and_cannot_leap_a_sequence() {
    let world = world(None);
    let post = |token: &str, body: Vec<u8>| {
        Request::post("/api/v1/ingest")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let token = world.gateway_token.clone();
    let (status, _, body) = send(
        &world.state,
        post(&token, batch("GW-A", "gw-a/charon@1", 1)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    for (bad, code) in [
        (batch("gw-b", "gw-b/charon@1", 1), "gateway_mismatch"),
        (batch("gw-a", "gw-b/charon@1", 1), "gateway_mismatch"),
        (batch("gw-a", "charon@1", 1), "gateway_mismatch"),
        (
            batch("gw-a", "gw-a/charon@1", 1 + 100_000_001),
            "sequence_jump",
        ),
        (batch("gw-a", "gw-a/new@1", u64::MAX), "sequence_jump"),
    ] {
        let (status, _, body) = send(&world.state, post(&token, bad)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["code"], code, "{body}");
    }
    let counters = world.state.access.counters();
    assert_eq!(
        counters
            .ingest_refused_identity
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert_eq!(
        counters
            .ingest_refused_sequence
            .load(std::sync::atomic::Ordering::Relaxed),
        1 + 1
    );
    // The watermark did not move: the next line of the source is still taken.
    let (status, _, body) = send(
        &world.state,
        post(&token, batch("gw-a", "gw-a/charon@1", 2)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);
    // The shared ingest token may send in any name (one-gateway set-ups), never leap.
    let (status, _, body) = send(
        &world.state,
        post("shared-ingest-secret", batch("gw-b", "gw-b/charon@1", 5)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A second gateway on the shared token is noticed, once (the handler saw gw-b).
    assert_eq!(world.state.access.note_shared_token_gateway("gw-b"), None);
    assert_eq!(
        world.state.access.note_shared_token_gateway("gw-c"),
        Some(vec!["gw-b".to_owned(), "gw-c".to_owned()])
    );
    assert_eq!(world.state.access.note_shared_token_gateway("gw-d"), None);
    let (status, _, _) = send(
        &world.state,
        post(
            "shared-ingest-secret",
            batch("gw-b", "gw-b/charon@1", u64::MAX),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_query_the_audit_trail_cannot_record_is_refused() {
    let world = world(None);
    let (_, token) = world.role_tokens[1].clone();
    // The same accounts over a store that cannot write: the audit trail is unavailable.
    let dir = world._dir.path();
    let read_only = store::Store::open_read_only(&store::Config::for_dir(dir)).unwrap();
    let mut state = world.state.clone();
    state.access = Access::open(dir, Settings::default(), read_only).unwrap();
    let (status, _, body) = send(
        &state,
        Request::post("/api/v1/sql")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(SQL))
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("the audit trail cannot record this"),
        "{body}"
    );
}
