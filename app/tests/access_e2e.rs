//! Accounts, tokens, sessions and gateway credentials against the real binary: a server
//! process on loopback, the `user` and `token` commands run beside it (through its control
//! socket) and without it (on the data directory), and a real gateway agent.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{Daemon, wait_for};

const PASSWORD: &str = "a long enough password";

fn cli(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(support::binary())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

#[track_caller]
fn cli_ok(args: &[&str], stdin: Option<&str>) -> String {
    let output = cli(args, stdin);
    assert!(
        output.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[track_caller]
fn cli_err(args: &[&str], stdin: Option<&str>, needle: &str) {
    let output = cli(args, stdin);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
}

fn config(work: &Path, port: u16, extra: &str) -> String {
    let path = work.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\ndata_dir = \"{}\"\nflush_interval_secs = 1\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\n{extra}",
            work.join("data").display()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

struct Http {
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    base: String,
}

impl Http {
    fn new(port: u16) -> Http {
        Http {
            client: support::http_client(None),
            runtime: tokio::runtime::Runtime::new().unwrap(),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// (status, headers, JSON body or null).
    fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        self.runtime.block_on(async {
            let mut request = self.client.request(method, format!("{}{path}", self.base));
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.unwrap();
            (
                status,
                headers,
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            )
        })
    }

    /// A text answer (the Prometheus metrics) with a bearer token; it must be a 200.
    fn text(&self, path: &str, token: &str) -> String {
        self.runtime.block_on(async {
            let response = self
                .client
                .get(format!("{}{path}", self.base))
                .header("authorization", bearer(token))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "{path}");
            response.text().await.unwrap()
        })
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let (status, _, body) = self.send(reqwest::Method::GET, path, headers, None);
        (status, body)
    }

    /// Signs in; returns (cookie header, CSRF token).
    fn login(&self, name: &str, password: &str) -> Result<(String, String), serde_json::Value> {
        let (status, headers, body) = self.send(
            reqwest::Method::POST,
            "/api/v1/auth/login",
            &[],
            Some(serde_json::json!({"name": name, "password": password}).to_string()),
        );
        if status != 200 {
            return Err(body);
        }
        let cookie = headers["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        Ok((cookie, body["csrf_token"].as_str().unwrap().to_owned()))
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[test]
fn accounts_tokens_and_sessions_against_a_running_server() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    let port = support::free_port();
    let config = config(work.path(), port, "");
    let server_log = work.path().join("server.log");
    let server = support::start_server(Path::new(&config), port, &server_log);
    let http = Http::new(port);

    // No account yet: nothing is readable, and the log says how to create the first admin.
    let (status, body) = http.get("/api/v1/sessions", &[]);
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthorized");
    let log = std::fs::read_to_string(&server_log).unwrap();
    let setup_token = log
        .split("one-time setup token ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no setup token in the log: {log}"))
        .to_owned();
    let setup = |token: &str| {
        http.send(
            reqwest::Method::POST,
            "/api/v1/auth/setup",
            &[],
            Some(
                serde_json::json!({"setup_token": token, "name": "root-admin", "password": PASSWORD})
                    .to_string(),
            ),
        )
        .0
    };
    assert_eq!(setup("tw_wrong"), 400);
    assert_eq!(setup(&setup_token), 201);
    assert_eq!(setup(&setup_token), 400, "the setup token works once");

    // The command line while the server runs (through its control socket).
    let added = cli_ok(
        &[
            "user",
            "add",
            "alice",
            "--role",
            "analyst",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(added.trim(), "added alice with role analyst");
    cli_err(
        &[
            "user",
            "add",
            "ALICE",
            "--role",
            "viewer",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
        "an account named alice exists",
    );
    cli_err(
        &[
            "user",
            "add",
            "bob",
            "--role",
            "superuser",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
        "unknown role",
    );
    cli_err(
        &[
            "user",
            "add",
            "bob",
            "--role",
            "viewer",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some("short\n"),
        "shorter than 10",
    );
    cli_err(
        &[
            "user",
            "add",
            "b\u{f6}b",
            "--role",
            "viewer",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
        "use ASCII letters",
    );
    let list = cli_ok(&["user", "list", "--data", data_arg], None);
    assert!(
        list.contains("alice") && list.contains("root-admin"),
        "{list}"
    );
    assert!(!list.contains("argon2"), "{list}");

    // Alice signs in and reads; she may not administer.
    let (cookie, _csrf) = http.login("alice", PASSWORD).unwrap();
    let (status, body) = http.get("/api/v1/sessions", &[("cookie", &cookie)]);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http.get("/api/v1/accounts", &[("cookie", &cookie)]);
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    // Disabled while signed in: the next request is refused.
    cli_ok(&["user", "disable", "alice", "--data", data_arg], None);
    let (status, _) = http.get("/api/v1/sessions", &[("cookie", &cookie)]);
    assert_eq!(status, 401);
    assert_eq!(
        http.login("alice", PASSWORD).unwrap_err()["code"],
        "bad_credentials"
    );

    // Tokens: printed once, work until revoked.
    let token = cli_ok(
        &[
            "token",
            "create",
            "ci",
            "--role",
            "viewer",
            "--expires-days",
            "1",
            "--data",
            data_arg,
        ],
        None,
    )
    .trim()
    .to_owned();
    assert!(token.starts_with("tw_"), "{token}");
    let (status, _) = http.get("/api/v1/sessions", &[("authorization", &bearer(&token))]);
    assert_eq!(status, 200);
    let (status, _, body) = http.send(
        reqwest::Method::POST,
        "/api/v1/sql",
        &[("authorization", &bearer(&token))],
        Some(r#"{"sql":"select 1"}"#.to_owned()),
    );
    assert_eq!(status, 403, "a viewer may not run SQL: {body}");
    let tokens = cli_ok(&["token", "list", "--data", data_arg], None);
    assert!(tokens.contains("ci") && tokens.contains("role viewer") && !tokens.contains(&token));
    cli_ok(&["token", "revoke", "ci", "--data", data_arg], None);
    let (status, body) = http.get("/api/v1/sessions", &[("authorization", &bearer(&token))]);
    assert_eq!(status, 401, "{body}");
    cli_err(
        &["token", "create", "x", "--data", data_arg],
        None,
        "--role",
    );
    // Ingest without a credential is refused.
    let (status, _, body) = http.send(
        reqwest::Method::POST,
        "/api/v1/ingest",
        &[],
        Some(r#"{"gateway":"gw","events":[]}"#.to_owned()),
    );
    assert_eq!(status, 401, "{body}");
    // The seal key's public half, as an operator would publish it while the server runs.
    let published = work.path().join("published-seal.pub");
    std::fs::copy(data.join("audit/seal.pub"), &published).unwrap();
    // The admin's view: metrics count the refusals.
    let admin = cli_ok(
        &[
            "token", "create", "ops", "--role", "admin", "--data", data_arg,
        ],
        None,
    )
    .trim()
    .to_owned();
    let metrics = http.text("/metrics", &admin);
    assert!(
        metrics.contains("tunnelwatch_logins_succeeded_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tunnelwatch_logins_failed_total 1"),
        "{metrics}"
    );
    server.stop();

    // Without a server, the commands open the data directory themselves.
    cli_ok(
        &[
            "user",
            "add",
            "carol",
            "--role",
            "viewer",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    // Every change and sign-in is in the audit trail, with who did it.
    let audit = support::sql_csv(
        &data,
        "select event_action, event_outcome, user_name, user_roles, user_target_name from audit_log order by event_id",
    );
    for needle in [
        "account.add,success,setup,,root-admin",
        "account.add,success,cli:root,admin,alice",
        "login,success,alice,analyst,alice",
        "account.disable,success,cli:root,admin,alice",
        "login,failure,alice,analyst,alice",
        "token.create,success,cli:root,admin,ci",
        "token.revoke,success,cli:root,admin,ci",
        "account.add,success,cli:root,admin,carol",
    ] {
        assert!(audit.contains(needle), "{needle} not in\n{audit}");
    }

    // Sealed at shutdown: the trail verifies against the published key, not against another.
    let verified = cli_ok(
        &[
            "audit",
            "verify",
            "--data",
            data_arg,
            "--public-key",
            published.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        verified.starts_with("the audit trail verifies: "),
        "{verified}"
    );
    let other = work.path().join("other.pub");
    std::fs::write(
        &other,
        format!(
            "{}\n",
            "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
        ),
    )
    .unwrap();
    cli_err(
        &[
            "audit",
            "verify",
            "--data",
            data_arg,
            "--public-key",
            other.to_str().unwrap(),
        ],
        None,
        "signed by another key",
    );
    let shown = cli_ok(
        &["audit", "show", "--data", data_arg, "--actor", "cli:root"],
        None,
    );
    assert!(
        shown.contains("account.disable") && !shown.contains("login "),
        "{shown}"
    );
    let json = cli_ok(
        &["audit", "show", "--data", data_arg, "--format", "json"],
        None,
    );
    assert!(
        json.lines()
            .all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok())
    );
    assert!(json.contains("\"action\":\"audit.seal\""), "{json}");

    // A damaged accounts file stops the server at start, saying which file.
    std::fs::write(data.join("access/accounts.json"), "{\"version\":1,").unwrap();
    let output = support::run(&["server", "--config", &config]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("corrupt accounts file"), "{stderr}");
}

fn batch(gateway: &str, source: &str, seq: u64) -> String {
    serde_json::json!({
        "gateway": gateway,
        "events": [{
            "id": {"source": source, "seq": seq},
            "timestamp": "2026-11-25T08:00:00Z",
            "dataset": "strongswan.charon",
            "observer": {"hostname": gateway},
            "original": "a line",
            "body": {"type": "pipeline_error", "reason": "malformed", "message": "test", "original_len": 6}
        }]
    })
    .to_string()
}

#[test]
fn a_gateway_credential_speaks_only_for_its_own_gateway() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    // Credentials made before the server starts (on the data directory itself).
    let token_a = cli_ok(
        &["token", "create", "gw-a", "--gateway", "--data", data_arg],
        None,
    )
    .trim()
    .to_owned();
    let token_b = cli_ok(
        &["token", "create", "gw-b", "--gateway", "--data", data_arg],
        None,
    )
    .trim()
    .to_owned();
    let reader = cli_ok(
        &[
            "token", "create", "reader", "--role", "admin", "--data", data_arg,
        ],
        None,
    )
    .trim()
    .to_owned();
    let port = support::free_port();
    let log = work.path().join("charon.log");
    std::fs::write(
        &log,
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/testdata/charon/psk-ok.log"),
        )
        .unwrap(),
    )
    .unwrap();
    let token_file = work.path().join("gw-a.token");
    std::fs::write(&token_file, format!("{token_a}\n")).unwrap();
    let config = config(
        work.path(),
        port,
        &format!(
            "\n[gateway]\nname = \"gw-a\"\nserver_url = \"http://127.0.0.1:{port}\"\nstate_dir = \"{}\"\ntoken_file = \"{}\"\npoll_interval_ms = 100\nbatch_max_wait_ms = 100\n\n[[gateway.sources]]\ntype = \"file\"\nformat = \"charon\"\npath = \"{}\"\n",
            work.path().join("state").display(),
            token_file.display(),
            log.display()
        ),
    );
    let _server = support::start_server(Path::new(&config), port, &work.path().join("server.log"));
    let _agent = Daemon::spawn(
        "gateway",
        &["gateway", "--config", &config],
        &work.path().join("gateway.log"),
    );
    let http = Http::new(port);
    // The real agent's events arrive under its own credential.
    let auth = bearer(&reader);
    wait_for("gw-a's events", Duration::from_secs(60), || {
        let (status, body) = http.get("/api/v1/stats", &[("authorization", &auth)]);
        (status == 200 && body["auth_successes"].as_i64().unwrap_or(0) > 0).then_some(())
    });
    // gw-a's credential cannot speak for gw-b, send gw-b's sources, or leap a sequence.
    let post = |token: &str, body: String| {
        http.send(
            reqwest::Method::POST,
            "/api/v1/ingest",
            &[("authorization", &bearer(token))],
            Some(body),
        )
    };
    for (body, code) in [
        (batch("gw-b", "gw-b/charon@1", 1), "gateway_mismatch"),
        (batch("gw-a", "gw-b/charon@1", 1), "gateway_mismatch"),
        (batch("gw-a", "gw-a/charon@1", u64::MAX), "sequence_jump"),
    ] {
        let (status, _, answer) = post(&token_a, body);
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["code"], code, "{answer}");
    }
    // A read credential cannot send events at all.
    let (status, _, _) = post(&reader, batch("gw-a", "gw-a/x@1", 1));
    assert_eq!(status, 403);
    // gw-b's own events still flow.
    let (status, _, answer) = post(&token_b, batch("gw-b", "gw-b/charon@1", 1));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 1);
    let metrics = http.text("/metrics", &reader);
    assert!(
        metrics.contains("tunnelwatch_ingest_refused_identity_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tunnelwatch_ingest_refused_sequence_total 1"),
        "{metrics}"
    );
    let server_log = std::fs::read_to_string(work.path().join("server.log")).unwrap();
    assert!(
        server_log.contains("refused an ingest batch"),
        "{server_log}"
    );
}

#[test]
fn an_account_change_the_audit_trail_cannot_take_is_refused_and_nothing_changes() {
    let work = tempfile::tempdir().unwrap();
    let disk = testbed::tmpfs::Tmpfs::mount(&work.path().join("disk"), "64m").unwrap();
    let data = disk.path().join("data");
    let data_arg = data.to_str().unwrap();
    cli_ok(
        &[
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    let port = support::free_port();
    let config_path = work.path().join("config.toml");
    std::fs::write(
        &config_path,
        format!(
            "[store]\ndata_dir = \"{data_arg}\"\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let _server = support::start_server(&config_path, port, &work.path().join("server.log"));
    let before = std::fs::read(data.join("access/accounts.json")).unwrap();
    // The disk fills up: the audit trail cannot take an entry, so the change is refused.
    testbed::tmpfs::fill(&disk.path().join("filler")).unwrap();
    let output = cli(
        &[
            "user",
            "add",
            "mallory",
            "--role",
            "admin",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the audit trail cannot record this, so it was refused"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(data.join("access/accounts.json")).unwrap(),
        before
    );
    // A sign-in that cannot be recorded does not happen either (503, not a session).
    let http = Http::new(port);
    assert_eq!(
        http.login("alice", PASSWORD).unwrap_err()["code"],
        "unavailable"
    );
    // With room again, the same change goes through.
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    cli_ok(
        &[
            "user",
            "add",
            "mallory",
            "--role",
            "viewer",
            "--password-stdin",
            "--data",
            data_arg,
        ],
        Some(&format!("{PASSWORD}\n")),
    );
}
