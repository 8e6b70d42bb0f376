//! The route table: every route of the server with the least it takes to call it, and the
//! one middleware ([`guard`]) that enforces it on every request.
//!
//! The router is built from this table ([`crate::router`]), so a route cannot exist without a
//! rule; the guard refuses any matched route the table does not name (deny by default), and
//! the role matrix test walks the table against every kind of caller. The guard also checks
//! CSRF for cookie sessions and sets the security headers on every response.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};

use crate::access::{Credential, Grant, Principal, Role, secret::constant_time_eq};
use crate::{ApiError, AppState, api, assets};

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone: the login page, the console's static files, liveness, signing in.
    Public,
    /// A signed-in operator, a token or anonymous access with at least this role.
    Role(Role),
    /// A gateway's credential (a gateway-bound token or the shared ingest token), or nothing
    /// when the configuration opens ingest by name.
    Ingest,
}

/// One row of the table.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub need: Need,
    /// The largest request body taken.
    pub body_limit: usize,
    pub summary: &'static str,
    pub(crate) handler: MethodRouter<AppState>,
}

/// Bodies of requests that carry little (logins, filters).
const SMALL_BODY: usize = 16 * 1024;

fn route(
    method: Method,
    path: &'static str,
    need: Need,
    summary: &'static str,
    handler: MethodRouter<AppState>,
) -> Route {
    Route {
        method,
        path,
        need,
        body_limit: SMALL_BODY,
        summary,
        handler,
    }
}

/// Every route of the server.
pub fn table() -> Vec<Route> {
    use Need::{Ingest, Public};
    use Role::{Admin, Analyst, Responder, Viewer};
    let viewer = Need::Role(Viewer);
    let analyst = Need::Role(Analyst);
    let admin = Need::Role(Admin);
    let responder = Need::Role(Responder);
    vec![
        route(Method::GET, "/", Public, "the console", get(assets::index)),
        route(
            Method::GET,
            "/login",
            Public,
            "the sign-in page",
            get(assets::login),
        ),
        route(
            Method::GET,
            "/assets/{name}",
            Public,
            "the console's files",
            get(assets::asset),
        ),
        route(
            Method::GET,
            "/healthz",
            Public,
            "liveness and the store's status",
            get(api::health::healthz),
        ),
        route(
            Method::GET,
            "/metrics",
            viewer,
            "Prometheus metrics",
            get(api::health::metrics),
        ),
        route(
            Method::POST,
            "/api/v1/auth/login",
            Public,
            "sign in (name, password, TOTP code)",
            post(api::auth::login),
        ),
        route(
            Method::POST,
            "/api/v1/auth/logout",
            Public,
            "sign out (ends the session server-side)",
            post(api::auth::logout),
        ),
        route(
            Method::GET,
            "/api/v1/auth/me",
            Public,
            "who the caller is, their role and CSRF token",
            get(api::auth::me),
        ),
        route(
            Method::POST,
            "/api/v1/auth/setup",
            Public,
            "create the first admin with the setup token",
            post(api::auth::setup),
        ),
        route(
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            "this API's OpenAPI document",
            get(crate::openapi::serve),
        ),
        route(
            Method::GET,
            "/api/v1/sessions",
            viewer,
            "VPN sessions, newest first",
            get(api::sessions::list),
        ),
        route(
            Method::GET,
            "/api/v1/sessions/{id}",
            viewer,
            "one session and its timeline",
            get(api::sessions::show),
        ),
        route(
            Method::GET,
            "/api/v1/users/{name}/activity",
            viewer,
            "what one user touched in a window",
            get(api::users::activity),
        ),
        route(
            Method::GET,
            "/api/v1/auth-events",
            viewer,
            "authentication events",
            get(api::auth_events::list),
        ),
        route(
            Method::GET,
            "/api/v1/stats",
            viewer,
            "counts for the overview",
            get(api::health::stats),
        ),
        route(
            Method::GET,
            "/api/v1/health",
            viewer,
            "health with every detail",
            get(api::health::detail),
        ),
        route(
            Method::GET,
            "/api/v1/search",
            analyst,
            "full-text search over events",
            get(api::search::search),
        ),
        Route {
            body_limit: api::sql::MAX_SQL_BYTES + 1024,
            ..route(
                Method::POST,
                "/api/v1/sql",
                analyst,
                "a read-only SQL query",
                post(api::sql::sql),
            )
        },
        route(
            Method::GET,
            "/api/v1/audit",
            analyst,
            "the audit trail, newest first",
            get(api::audit::list),
        ),
        route(
            Method::GET,
            "/api/v1/alerts",
            viewer,
            "alerts, each in its current state, newest change first",
            get(api::alerts::list),
        ),
        route(
            Method::GET,
            "/api/v1/alerts/{id}",
            viewer,
            "one alert: its history and evidence",
            get(api::alerts::show),
        ),
        route(
            Method::POST,
            "/api/v1/alerts/{id}/ack",
            analyst,
            "acknowledge an alert (audited)",
            post(api::alerts::ack),
        ),
        route(
            Method::POST,
            "/api/v1/alerts/{id}/assign",
            analyst,
            "assign an alert to someone (audited)",
            post(api::alerts::assign),
        ),
        route(
            Method::POST,
            "/api/v1/alerts/{id}/resolve",
            analyst,
            "resolve an alert (audited)",
            post(api::alerts::resolve),
        ),
        route(
            Method::GET,
            "/api/v1/silences",
            viewer,
            "silences: active, pending and expired",
            get(api::alerts::silences),
        ),
        route(
            Method::POST,
            "/api/v1/silences",
            responder,
            "silence matching alerts for a while (audited)",
            post(api::alerts::add_silence),
        ),
        route(
            Method::DELETE,
            "/api/v1/silences/{id}",
            responder,
            "expire a silence now (audited)",
            delete(api::alerts::expire_silence),
        ),
        route(
            Method::GET,
            "/api/v1/rules",
            viewer,
            "the alert rules loaded",
            get(api::alerts::rules),
        ),
        route(
            Method::GET,
            "/api/v1/accounts",
            admin,
            "operator accounts",
            get(api::accounts::users),
        ),
        route(
            Method::GET,
            "/api/v1/tokens",
            admin,
            "API tokens (never the secrets)",
            get(api::accounts::tokens),
        ),
        Route {
            body_limit: model::wire::MAX_INGEST_BODY_BYTES,
            ..route(
                Method::POST,
                "/api/v1/ingest",
                Ingest,
                "a gateway's batch of events",
                post(api::ingest::ingest),
            )
        },
    ]
}

/// The table's rule for a request, if the table has one (`HEAD` follows `GET`).
fn rule(method: &Method, path: &str) -> Option<Need> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    RULES
        .get_or_init(|| {
            table()
                .into_iter()
                .map(|route| ((route.method, route.path), route.need))
                .collect()
        })
        .get(&(method.clone(), path))
        .copied()
}

static RULES: std::sync::OnceLock<std::collections::HashMap<(Method, &'static str), Need>> =
    std::sync::OnceLock::new();

/// Who made a request, for handlers that record or check it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub source_ip: Option<IpAddr>,
}

impl Caller {
    /// The audit trail's actor.
    pub fn actor(&self) -> crate::access::Actor {
        match &self.principal {
            Some(principal) => principal.actor(self.source_ip),
            None => crate::access::Actor {
                name: "anonymous".to_owned(),
                role: None,
                source_ip: self.source_ip,
            },
        }
    }
}

/// The name of the session cookie: `__Host-` under TLS (only this host, only HTTPS, path /).
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-tw_session"
    } else {
        "tw_session"
    }
}

/// The session cookie's value, if the request has one.
pub(crate) fn session_cookie(headers: &HeaderMap, secure: bool) -> Option<&str> {
    let name = cookie_name(secure);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| Some(token.trim()))
        .ok_or_else(|| ApiError::unauthorized("the Authorization header is not `Bearer <token>`"))
}

/// The peer's address: from the connection (`ConnectInfo`), absent in tests without one.
pub(crate) fn source_ip(request: &Request) -> Option<IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
        .or_else(|| {
            extensions
                .get::<ConnectInfo<crate::tls::TlsPeer>>()
                .map(|ConnectInfo(peer)| peer.addr.ip())
        })
}

/// The subject of the client certificate the connection presented (mutual TLS only).
fn client_subject(request: &Request) -> Option<&crate::access::subject::Subject> {
    request
        .extensions()
        .get::<ConnectInfo<crate::tls::TlsPeer>>()
        .and_then(|ConnectInfo(peer)| peer.client_subject.as_deref())
}

/// The middleware of every request: look up the route's rule, authenticate, authorise,
/// check CSRF, and add the security headers to whatever the answer is.
pub(crate) async fn guard(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let mut response = match admit(&state, &mut request) {
        Ok(()) => as_json_error(next.run(request).await).await,
        Err(error) => {
            if matches!(error.status.as_u16(), 401 | 403) {
                state
                    .access
                    .counters()
                    .denied_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            error.into_response()
        }
    };
    security_headers(response.headers_mut());
    response
}

fn admit(state: &AppState, request: &mut Request) -> Result<(), ApiError> {
    let Some(path) = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
    else {
        // No route matched: the fallback answers 404.
        return Ok(());
    };
    let Some(need) = rule(request.method(), &path) else {
        if table().iter().any(|route| route.path == path) {
            // A known path with another method: the router answers 405, no handler runs.
            return Ok(());
        }
        tracing::error!(method = %request.method(), path, "a route without a rule in the route table was refused");
        return Err(ApiError::forbidden(
            "this route has no access rule, so it is refused",
        ));
    };
    let source_ip = source_ip(request);
    let headers = request.headers();
    let now = jiff::Timestamp::now();
    let access = &state.access;
    let secure = state.web.secure_cookies;
    let principal = match (bearer(headers)?, session_cookie(headers, secure)) {
        (Some(token), _) => match access.authenticate(Credential::Bearer(token), now) {
            Some(principal) => Some(principal),
            // The shared ingest token of one-gateway set-ups: the ingest endpoint only.
            None if need == Need::Ingest
                && state.ingest_token.as_deref().is_some_and(|expected| {
                    constant_time_eq(expected.as_bytes(), token.as_bytes())
                }) =>
            {
                Some(Principal::SharedIngestToken)
            }
            None => return Err(ApiError::unauthorized("unknown, expired or revoked token")),
        },
        (None, Some(cookie)) => match access.authenticate(Credential::Cookie(cookie), now) {
            Some(principal) => Some(principal),
            // A public route works without a session; a stale cookie is no reason to refuse it.
            None if need == Need::Public => None,
            None => {
                return Err(ApiError::unauthorized(
                    "the session has ended (signed out, timed out or the account was disabled): sign in again",
                ));
            }
        },
        (None, None) => access
            .settings()
            .anonymous_role
            .filter(|_| need != Need::Ingest)
            .map(|role| Principal::Anonymous { role }),
    };
    if let Some(Principal::User { session, .. }) = &principal
        && !is_safe(request.method())
    {
        check_csrf(headers, &session.csrf_token)?;
    }
    if need == Need::Public && !is_safe(request.method()) {
        check_same_origin(headers)?;
    }
    match need {
        Need::Public => {}
        Need::Role(least) => match principal.as_ref().map(Principal::role) {
            None => {
                return Err(ApiError::unauthorized(
                    "sign in, or send an API token as `Authorization: Bearer`",
                ));
            }
            Some(None) => {
                return Err(ApiError::forbidden(
                    "a gateway credential reaches only /api/v1/ingest",
                ));
            }
            Some(Some(role)) if role < least => {
                return Err(ApiError::forbidden(format!(
                    "this needs the {least} role; you have {role}"
                )));
            }
            Some(Some(_)) => {}
        },
        Need::Ingest => match &principal {
            Some(Principal::Token {
                grant:
                    Grant::Gateway {
                        client_subject: Some(bound),
                        gateway,
                    },
                ..
            }) => check_client_subject(bound, gateway, client_subject(request))?,
            Some(
                Principal::Token {
                    grant: Grant::Gateway { .. },
                    ..
                }
                | Principal::SharedIngestToken,
            ) => {}
            Some(_) => {
                return Err(ApiError::forbidden(
                    "only a gateway credential may send events (tunnelwatch token create NAME --gateway)",
                ));
            }
            None if state.web.allow_unauthenticated_ingest => {}
            None => {
                return Err(ApiError::unauthorized(
                    "send the gateway's token as `Authorization: Bearer` (tunnelwatch token create NAME --gateway)",
                ));
            }
        },
    }
    request.extensions_mut().insert(Caller {
        principal,
        source_ip,
    });
    Ok(())
}

/// A gateway token bound to a client certificate works only over a connection that
/// presented that certificate (verified against `tls_client_ca_file` in the handshake).
fn check_client_subject(
    bound: &str,
    gateway: &str,
    presented: Option<&crate::access::subject::Subject>,
) -> Result<(), ApiError> {
    let refuse = |what: String| {
        tracing::warn!(gateway, bound, presented = %what, "a gateway token was refused: wrong or no client certificate");
        Err(ApiError::forbidden(format!(
            "the token of gateway {gateway} is bound to the client certificate `{bound}`; this connection presented {what}"
        )))
    };
    // Stored canonical at `token create`; one that no longer parses matches nothing.
    let Ok(bound_subject) = crate::access::subject::Subject::parse(bound) else {
        return refuse("a certificate, but the binding cannot be read".to_owned());
    };
    match presented {
        Some(subject) if bound_subject.matches(subject) => Ok(()),
        Some(subject) => refuse(format!("`{subject}`")),
        None => refuse("none (is tls_client_ca_file set on the server, and the gateway's tls_client_cert_file?)".to_owned()),
    }
}

/// A refusal the framework wrote as plain text (an unreadable query string, a wrong method,
/// a body too large) becomes the JSON error every other refusal is.
async fn as_json_error(response: Response) -> Response {
    let status = response.status();
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_none_or(|value| value.as_bytes().starts_with(b"text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !is_text {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&bytes).trim().to_owned();
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        message
    };
    let mut json = ApiError::new(status, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The header a signed-in browser sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn check_csrf(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    check_same_origin(headers)?;
    let given = headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        return Err(ApiError::forbidden(
            "missing or wrong CSRF token (send the session's token in X-CSRF-Token)",
        ));
    }
    Ok(())
}

/// A browser's state-changing request must come from this origin: `Sec-Fetch-Site` when the
/// browser sends it, else `Origin` against `Host`. Clients that send neither (scripts) pass.
fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && !matches!(site, "same-origin" | "none")
    {
        return Err(ApiError::forbidden(format!(
            "cross-site request refused (Sec-Fetch-Site: {site})"
        )));
    }
    if let Some(origin) = text(header::ORIGIN) {
        let host = text(header::HOST).unwrap_or("");
        let origin_host = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .unwrap_or("");
        if origin_host.is_empty() || origin_host != host {
            return Err(ApiError::forbidden(format!(
                "cross-origin request refused (Origin: {origin})"
            )));
        }
    }
    Ok(())
}

/// The Content-Security-Policy of every answer: only this origin's scripts and styles, no
/// inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn security_headers(headers: &mut HeaderMap) {
    let mut set = |name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::REFERRER_POLICY, "no-referrer");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
}

#[cfg(test)]
mod tests;
