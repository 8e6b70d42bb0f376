//! schemathesis (PyPI) against the real server with its own OpenAPI document and an admin
//! token: no 500, no answer that contradicts the document (status codes, content types,
//! response shapes, headers), no schema-violating request accepted, and every route that
//! needs a credential refusing the request without one. `scripts/test.sh` installs
//! schemathesis into a virtualenv and sets `TW_SCHEMATHESIS`; without it, `schemathesis` must
//! be on `PATH`. A missing schemathesis is a failure that says so, never a skip.
//!
//! One check is left out: `positive_data_acceptance` expects every schema-valid request to
//! succeed, but some refusals are about meaning, not shape (a user-activity window over 31
//! days, a wrong setup token, an empty SQL statement); those answer 400 with a reason.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

#[test]
fn schemathesis_finds_nothing_against_the_openapi_document() {
    #[allow(clippy::disallowed_methods)]
    let program = std::env::var("TW_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".to_owned());
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    let token = support::run(&[
        "token",
        "create",
        "schemathesis",
        "--role",
        "admin",
        "--data",
        data_arg,
    ]);
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    // Some sessions and logins to read.
    let ingest = support::run(&[
        "ingest",
        "--data",
        data_arg,
        "--year",
        "2026",
        &format!(
            "charon:{}",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../gateway/testdata/charon/psk-ok.log")
                .display()
        ),
    ]);
    assert!(
        ingest.status.success(),
        "{}",
        String::from_utf8_lossy(&ingest.stderr)
    );
    let port = support::free_port();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{data_arg}\"\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    )
    .unwrap();
    let _server = support::start_server(&config, port, &work.path().join("server.log"));
    let base = format!("http://127.0.0.1:{port}");
    // A refusal is a refusal whatever its 4xx: too large (413), not JSON (415), throttled (429).
    let settings = work.path().join("schemathesis.toml");
    std::fs::write(
        &settings,
        "[checks.negative_data_rejection]\nexpected-statuses = [400, 401, 403, 404, 405, 406, 413, 415, 422, 429]\n",
    )
    .unwrap();
    let output = Command::new(&program)
        .args([
            "--config-file",
            settings.to_str().unwrap(),
            "run",
            &format!("{base}/api/v1/openapi.json"),
            "-H",
            &format!("Authorization: Bearer {token}"),
            "--exclude-checks",
            "positive_data_acceptance",
            "--max-examples",
            "15",
            "--seed",
            "20261207",
            "--request-timeout",
            "30",
            "--no-color",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run `{program}` ({error}): this test needs schemathesis from PyPI; scripts/test.sh installs it and sets TW_SCHEMATHESIS"
            )
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}"
    );
    // Every operation of the document was exercised.
    let number_after = |label: &str| -> usize {
        report
            .split(label)
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(0)
    };
    let (selected, tested) = (number_after("Selected:"), number_after("Tested:"));
    assert!(selected >= 20 && tested == selected, "{report}");
    let log = std::fs::read_to_string(work.path().join("server.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}
