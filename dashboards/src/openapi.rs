//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document, generated from the route table
//! ([`crate::routes::table`]): every route with its least role (`x-tunnelwatch-role`), its
//! credentials, parameters, request body and the answers it can give, errors as the one
//! `Error` shape. Built as `utoipa`'s OpenAPI types, so the document is well-formed by
//! construction.

use axum::Json;
use axum::http::Method;
use serde_json::{Value, json};

use crate::routes::{Need, Route, table};

/// A query parameter of a route.
pub struct Param {
    pub name: &'static str,
    /// A JSON Schema.
    pub schema: fn() -> Value,
    pub description: &'static str,
}

fn string() -> Value {
    json!({"type": "string", "maxLength": 1024})
}

fn limit() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": 4294967295u64, "description": "taken as 1 to 10,000"})
}

fn search_text() -> Value {
    json!({"type": "string", "maxLength": 4096})
}

fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}

/// The query parameters of each route (none for routes not named).
fn query_params(path: &str) -> Vec<Param> {
    let param = |name, schema, description| Param {
        name,
        schema,
        description,
    };
    match path {
        "/api/v1/sessions" => vec![
            param("limit", limit, "sessions at most (default 100)"),
            param(
                "state",
                || json!({"type": "string", "enum": ["active", "closed", "lost"]}),
                "only sessions in this state",
            ),
            param("user", string, "only this user's sessions"),
            param("session_id", string, "one session by its id"),
        ],
        "/api/v1/sessions/{id}" => vec![param(
            "limit",
            limit,
            "timeline items at most (default 1000)",
        )],
        "/api/v1/users/{name}/activity" => vec![
            param(
                "from",
                time,
                "the window's start (default: a day before `to`)",
            ),
            param("to", time, "the window's end (default: now)"),
            param("limit", limit, "rows per list at most"),
        ],
        "/api/v1/auth-events" => vec![
            param("limit", limit, "events at most (default 100)"),
            param(
                "outcome",
                || json!({"type": "string", "enum": ["success", "failure"]}),
                "only this outcome",
            ),
            param("user", string, "only this user's attempts"),
        ],
        "/api/v1/search" => vec![
            param(
                "q",
                search_text,
                "the query (field:value, phrases, AND/OR/NOT, ranges)",
            ),
            param("from", time, "only events at or after this time"),
            param("to", time, "only events before this time"),
            param("limit", limit, "hits at most (default 100)"),
        ],
        "/api/v1/alerts" => vec![
            param("limit", limit, "alerts at most (default 100)"),
            param(
                "offset",
                || json!({"type": "integer", "minimum": 0, "maximum": 4294967295u64}),
                "alerts to skip (paging)",
            ),
            param(
                "status",
                || json!({"type": "string", "enum": ["open", "firing", "acknowledged", "resolved"]}),
                "only alerts in this state (`open`: firing or acknowledged)",
            ),
            param(
                "severity",
                || json!({"type": "string", "enum": ["info", "low", "medium", "high", "critical"]}),
                "only alerts at least this severe",
            ),
            param("rule", string, "only this rule's alerts"),
            param("user", string, "only alerts about this VPN user"),
        ],
        "/api/v1/audit" => vec![
            param("limit", limit, "entries at most (default 100)"),
            param("actor", string, "only entries whose actor starts with this"),
            param("action", string, "only entries with this action"),
        ],
        _ => Vec::new(),
    }
}

/// The JSON body a route takes, if any.
fn request_body(path: &str) -> Option<Value> {
    let object = |properties: Value, required: &[&str]| json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false});
    let text = |max: usize| json!({"type": "string", "maxLength": max});
    Some(match path {
        "/api/v1/auth/login" => object(
            json!({"name": text(64), "password": text(1024), "totp": text(8)}),
            &["name", "password"],
        ),
        "/api/v1/auth/setup" => object(
            json!({"setup_token": text(128), "name": text(64), "password": text(1024)}),
            &["setup_token", "name", "password"],
        ),
        "/api/v1/sql" => object(
            json!({"sql": text(crate::api::sql::MAX_SQL_BYTES), "format": {"type": "string", "enum": ["json", "csv"]}}),
            &["sql"],
        ),
        "/api/v1/alerts/{id}/ack" | "/api/v1/alerts/{id}/resolve" => {
            return Some(
                json!({"type": "object", "properties": {"comment": text(crate::api::alerts::MAX_COMMENT_BYTES)}, "additionalProperties": false}),
            );
        }
        "/api/v1/alerts/{id}/assign" => object(
            json!({"assignee": text(64), "comment": text(crate::api::alerts::MAX_COMMENT_BYTES)}),
            &["assignee"],
        ),
        "/api/v1/silences" => object(
            json!({
                "matchers": {"type": "array", "minItems": 1, "maxItems": 16, "items": object(
                    json!({"name": text(64), "value": text(1024)}),
                    &["name", "value"],
                )},
                "comment": text(2048),
                "starts": {"type": "string", "format": "date-time"},
                "ends": {"type": "string", "format": "date-time"},
            }),
            &["matchers", "comment", "ends"],
        ),
        "/api/v1/ingest" => json!({
            "type": "object",
            "properties": {
                "gateway": {"type": "string"},
                "events": {"type": "array", "items": {"type": "object"}, "description": "model::Event, as the gateway agent sends them"}
            },
            "required": ["gateway", "events"]
        }),
        _ => return None,
    })
}

/// What a successful answer is.
fn success(route: &Route) -> (&'static str, Value) {
    match route.path {
        "/" | "/login" => ("text/html", json!({"type": "string"})),
        "/assets/{name}" => ("text/javascript", json!({"type": "string"})),
        "/metrics" => ("text/plain", json!({"type": "string"})),
        "/api/v1/sql" => ("application/x-ndjson", json!({"type": "string"})),
        _ => ("application/json", json!({"type": "object"})),
    }
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let schema = if name == "id" {
                json!({"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"})
            } else {
                json!({"type": "string", "minLength": 1, "maxLength": 1024})
            };
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    parameters.extend(query_params(route.path).into_iter().map(|param| {
        json!({"name": param.name, "in": "query", "required": false, "schema": (param.schema)(), "description": param.description})
    }));
    let (content_type, schema) = success(route);
    let mut responses = serde_json::Map::new();
    let ok_status = match route.path {
        "/api/v1/auth/logout" => "204",
        "/api/v1/auth/setup" => "201",
        _ => "200",
    };
    let ok = if ok_status == "204" {
        json!({"description": "done"})
    } else {
        json!({"description": "the answer", "content": {content_type: {"schema": schema}}})
    };
    responses.insert(ok_status.to_owned(), ok);
    let mut errors = vec![("400", "a malformed request"), ("404", "nothing there")];
    match route.need {
        Need::Public => {
            if route.path.starts_with("/api/v1/auth/") {
                errors.push(("401", "not signed in, or wrong credentials"));
                errors.push((
                    "403",
                    "refused: a cross-site request, or a second factor is required",
                ));
                errors.push(("413", "the body is too large"));
                errors.push(("415", "the body is not JSON"));
                errors.push(("429", "too many failed sign-ins: wait (Retry-After)"));
                errors.push(("503", "the audit trail cannot record it"));
            } else {
                errors.push(("401", "a credential that is not valid"));
            }
        }
        Need::Role(_) => {
            errors.push(("401", "no credential, or one that is not valid"));
            errors.push((
                "403",
                "the role is not enough, or the CSRF token is missing",
            ));
            errors.push(("413", "the body is too large"));
            errors.push(("415", "the body is not JSON"));
            errors.push((
                "503",
                "busy or unable now (Retry-After), or the audit trail cannot record it",
            ));
        }
        Need::Ingest => {
            errors.push(("401", "no gateway credential"));
            errors.push(("403", "a credential that may not send events"));
            errors.push(("413", "the batch is too large"));
            errors.push(("415", "the body is not JSON"));
            errors.push((
                "422",
                "sent in another gateway's name, or leaping a sequence",
            ));
            errors.push((
                "503",
                "cannot store it now: keep it and retry (Retry-After)",
            ));
        }
    }
    errors.push(("405", "another method"));
    for (status, description) in errors {
        responses.insert(status.to_owned(), error_response(description));
    }
    let security = match route.need {
        Need::Public => json!([]),
        Need::Role(_) => json!([{"bearer": []}, {"session": []}]),
        Need::Ingest => json!([{"bearer": []}]),
    };
    let role = match route.need {
        Need::Public => "public".to_owned(),
        Need::Role(role) => role.to_string(),
        Need::Ingest => "gateway".to_owned(),
    };
    let mut operation = json!({
        "summary": route.summary,
        "operationId": format!("{} {}", route.method, route.path),
        "parameters": parameters,
        "responses": responses,
        "security": security,
        "x-tunnelwatch-role": role,
    });
    if let Some(body) = request_body(route.path).filter(|_| route.method != Method::GET) {
        operation["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": body}}});
    }
    operation
}

/// The document (its JSON).
pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for route in table() {
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| json!({}));
        entry[route.method.as_str().to_ascii_lowercase()] = operation(&route);
    }
    let document = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "tunnelwatch",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The console's and scripts' API. Every route names its least role in x-tunnelwatch-role (viewer < analyst < responder < admin; gateway: a gateway credential). Errors are {code, message}."
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["code", "message"]
                }
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an API token (tunnelwatch token create)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "tw_session", "description": "a signed-in browser (__Host-tw_session under TLS); state-changing requests also send X-CSRF-Token"}
            }
        }
    });
    // Through utoipa's types: what does not fit the OpenAPI model fails the tests here.
    match serde_json::from_value::<utoipa::openapi::OpenApi>(document.clone()) {
        Ok(typed) => serde_json::to_value(typed).unwrap_or(document),
        Err(error) => {
            tracing::error!(%error, "the OpenAPI document does not fit the OpenAPI model");
            document
        }
    }
}

pub async fn serve() -> Json<Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_with_its_role_and_errors() {
        let raw = document();
        // The document fits utoipa's model (else `document` would have logged and fallen back).
        let typed: utoipa::openapi::OpenApi = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(typed.paths.paths.len(), {
            let mut paths: Vec<&str> = table().iter().map(|route| route.path).collect();
            paths.dedup();
            paths.len()
        });
        for route in table() {
            let operation = &raw["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert!(
                operation.is_object(),
                "{} {} missing",
                route.method,
                route.path
            );
            let role = operation["x-tunnelwatch-role"].as_str().unwrap();
            match route.need {
                Need::Role(least) => {
                    assert_eq!(role, least.as_str());
                    assert!(operation["responses"]["401"].is_object());
                    assert!(operation["responses"]["403"].is_object());
                }
                Need::Public => assert_eq!(role, "public"),
                Need::Ingest => assert_eq!(role, "gateway"),
            }
            for placeholder in route.path.split('/').filter(|s| s.starts_with('{')) {
                let name = placeholder.trim_matches(['{', '}']);
                assert!(
                    operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|param| param["name"] == name && param["in"] == "path"),
                    "{} {name}",
                    route.path
                );
            }
        }
    }
}
