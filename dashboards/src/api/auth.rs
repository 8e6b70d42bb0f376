//! Signing in and out: `POST /api/v1/auth/login`, `POST /api/v1/auth/logout`,
//! `GET /api/v1/auth/me` and `POST /api/v1/auth/setup` (the first admin, with the one-time
//! setup token the server prints while no account exists).

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::access::{LoginRefusal, Principal};
use crate::routes::{Caller, cookie_name, session_cookie};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub totp: Option<String>,
}

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(|rejection| {
        let status = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            rejection.status()
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(
            status,
            format!("unreadable request: {}", rejection.body_text()),
        )
    })
}

/// The cookie of a new session (HttpOnly, SameSite=Strict; Secure and `__Host-` under TLS;
/// no Max-Age, so it ends with the browser as well as on the server).
fn session_set_cookie(id: &str, secure: bool) -> String {
    let name = cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={id}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

fn clear_cookie(secure: bool) -> String {
    let name = cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

pub async fn login(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = json_body(body)?;
    let _turn = state
        .access
        .login_gate()
        .acquire()
        .await
        .map_err(|_| ApiError::unavailable("the server is stopping"))?;
    let access = state.access.clone();
    let source_ip = caller.source_ip;
    let outcome = tokio::task::spawn_blocking(move || {
        access.login(
            &request.name,
            &request.password,
            request.totp.as_deref().filter(|code| !code.is_empty()),
            source_ip,
            jiff::Timestamp::now(),
        )
    })
    .await
    .map_err(|error| ApiError::internal(format!("the login check failed: {error}")))?;
    let (id, session) = match outcome {
        Ok(signed_in) => signed_in,
        Err(refusal) => return Err(refused(refusal)),
    };
    let role = state
        .access
        .users()
        .into_iter()
        .find(|user| user.name == session.user)
        .map(|user| user.role);
    let mut response = Json(serde_json::json!({
        "name": session.user,
        "role": role,
        "csrf_token": session.csrf_token,
    }))
    .into_response();
    let cookie = session_set_cookie(&id, state.web.secure_cookies);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn refused(refusal: LoginRefusal) -> ApiError {
    match refusal {
        LoginRefusal::Throttled(wait) => ApiError {
            retry_after: Some(wait.retry_after.as_secs().max(1)),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                if wait.locked {
                    format!(
                        "too many failed sign-ins: locked for {} more seconds",
                        wait.retry_after.as_secs().max(1)
                    )
                } else {
                    format!(
                        "too many failed sign-ins: wait {} seconds",
                        wait.retry_after.as_secs().max(1)
                    )
                },
            )
            .with_code("throttled")
        },
        LoginRefusal::BadCredentials => {
            ApiError::unauthorized("wrong name or password").with_code("bad_credentials")
        }
        LoginRefusal::TotpNeeded { wrong_code } => ApiError::unauthorized(if wrong_code {
            "wrong or already used authenticator code"
        } else {
            "enter the code of your authenticator app"
        })
        .with_code("totp_required"),
        LoginRefusal::TotpNotEnrolled => ApiError::forbidden(
            "your role requires a second factor: ask an admin to run `tunnelwatch user totp NAME`",
        )
        .with_code("totp_not_enrolled"),
        LoginRefusal::Unavailable(message) => ApiError::unavailable(message),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let secure = state.web.secure_cookies;
    let Some(cookie) = session_cookie(&headers, secure).map(str::to_owned) else {
        return Err(ApiError::unauthorized("not signed in"));
    };
    if !matches!(caller.principal, Some(Principal::User { .. })) {
        return Err(ApiError::unauthorized("the session has already ended"));
    }
    let access = state.access.clone();
    let source_ip = caller.source_ip;
    tokio::task::spawn_blocking(move || access.logout(&cookie, source_ip))
        .await
        .map_err(|error| ApiError::internal(format!("sign-out failed: {error}")))??;
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&clear_cookie(secure)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Who the caller is: 401 when nobody (the console then shows the sign-in page).
pub async fn me(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let setup = state.access.setup_token().is_some();
    match &caller.principal {
        Some(Principal::User { name, role, session }) => Ok(Json(serde_json::json!({
            "name": name,
            "role": role,
            "kind": "user",
            "csrf_token": session.csrf_token,
        }))),
        Some(Principal::Anonymous { role }) => Ok(Json(serde_json::json!({
            "name": null,
            "role": role,
            "kind": "anonymous",
            "csrf_token": null,
            "setup_needed": setup,
        }))),
        Some(Principal::Token { name, grant }) => Ok(Json(serde_json::json!({
            "name": name,
            "role": caller.principal.as_ref().and_then(Principal::role),
            "kind": "token",
            "grant": grant,
            "csrf_token": null,
        }))),
        Some(Principal::SharedIngestToken) | None => Err(ApiError::unauthorized(if setup {
            "no account exists yet: create the first admin with the setup token from the server's log"
        } else {
            "not signed in"
        })
        .with_code(if setup { "setup_needed" } else { "unauthorized" })),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    pub setup_token: String,
    pub name: String,
    pub password: String,
}

pub async fn setup(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<SetupRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let request = json_body(body)?;
    let access = state.access.clone();
    let source_ip = caller.source_ip;
    tokio::task::spawn_blocking(move || {
        access.setup_first_admin(
            &request.setup_token,
            &request.name,
            &request.password,
            source_ip,
        )
    })
    .await
    .map_err(|error| ApiError::internal(format!("setup failed: {error}")))??;
    Ok(StatusCode::CREATED)
}
