//! `GET /api/v1/accounts` and `GET /api/v1/tokens` (admin): who may sign in, and which
//! tokens exist (never their secrets). Changes are made with `tunnelwatch user` and
//! `tunnelwatch token`.

use axum::Json;
use axum::extract::State;

use crate::AppState;

pub async fn users(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "accounts": state.access.users() }))
}

pub async fn tokens(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "tokens": state.access.tokens() }))
}
