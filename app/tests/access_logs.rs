//! API access logs as a user handles them: `tunnelwatch parse` and `ingest` of the real nginx
//! captures and the Envoy and ECS fixtures, the rows they leave in `api_requests` (`sql`),
//! `--json-mapping`, a gateway source with a `json_mapping` table (`check-config`), and bad
//! input counted and kept.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use support::run;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/testdata/access")
        .join(name)
}

fn ok(args: &[&str]) -> (String, String) {
    let output = run(args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{args:?}: {stderr}");
    (String::from_utf8(output.stdout).unwrap(), stderr)
}

fn fails(args: &[&str]) -> String {
    let output = run(args);
    assert!(!output.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sql(data: &Path, query: &str, format: &str) -> String {
    ok(&[
        "sql",
        query,
        "--data",
        data.to_str().unwrap(),
        "--format",
        format,
    ])
    .0
}

#[test]
fn parse_prints_one_request_per_line() {
    let path = fixture("nginx-combined-ext.log");
    let (stdout, stderr) = ok(&["parse", "--format", "nginx", path.to_str().unwrap()]);
    assert!(
        stderr.contains("29 lines: 29 events, 0 ignored, 0 rejected"),
        "{stderr}"
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), 29);
    // The ANSI user agent and the CR/LF path stay escaped inside their JSON lines.
    assert!(!stdout.contains('\u{1b}') && !stdout.contains('\r'));
    let post = &events[2];
    assert_eq!(post["dataset"], "nginx.access");
    assert_eq!(post["body"]["type"], "api_request");
    assert_eq!(post["body"]["method"], "POST");
    assert_eq!(post["body"]["path"], "/api/v1/sessions");
    assert_eq!(post["body"]["status"], 200);
    assert!(post["body"]["request_id"].as_str().unwrap().len() == 32);
    let download = events
        .iter()
        .find(|event| event["body"]["path"] == "/download")
        .unwrap();
    assert!(download["body"]["duration_us"].as_u64().unwrap() >= 1_000_000);
}

/// Every format into one data directory, then SQL over `api_requests`: the counts, one
/// request field by field, and the hostile path escaped in the table output.
#[test]
fn ingested_requests_are_rows_of_api_requests() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hostile = dir.path().join("hostile.log");
    std::fs::write(
        &hostile,
        b"10.99.0.7 - - [25/Nov/2026:09:41:07 +0000] \"GET /a\\x1B[2Jb HTTP/1.1\" 200 1 \"-\" \"-\"\n\
          Nov 25 08:25:08 09[IKE] <rw|1> authentication of 'alice' with pre-shared key successful\n\
          10.99.0.7 - - [25/Nov/2026:09:41:08 +0000] \"GET /x HTTP/1.1\" 999 1 \"-\" \"-\"\n\
          10.99.0.7 - - [25/Nov/2026:09:41:09 +0000] \"GET /\xff HTTP/1.1\" 200 1 \"-\" \"-\"\n",
    )
    .unwrap();
    let inputs = [
        format!("nginx:{}", fixture("nginx-combined.log").display()),
        format!("nginx-json:{}", fixture("nginx-json.log").display()),
        format!("envoy:{}", fixture("envoy-istio.log").display()),
        format!("envoy:{}", fixture("envoy-gateway.log").display()),
        format!("json:{}", fixture("ecs.log").display()),
        format!("nginx:{}", hostile.display()),
    ];
    let mut args = vec!["ingest", "--data", data.to_str().unwrap()];
    args.extend(inputs.iter().map(String::as_str));
    let (summary, _) = ok(&args);
    assert!(
        summary.contains("nginx-json.log: 29 lines: 29 events"),
        "{summary}"
    );
    assert!(
        summary.contains("envoy-istio.log: 5 lines: 4 events, 1 ignored"),
        "{summary}"
    );
    assert!(
        summary.contains("hostile.log: 4 lines: 2 events, 0 ignored, 2 rejected (malformed: 2), 1 with invalid UTF-8"),
        "{summary}"
    );

    // 29 + 29 nginx, 4 + 2 Envoy, 3 ECS, 2 hostile lines that are still requests.
    assert_eq!(
        sql(
            &data,
            "select count(*) as n, count(distinct http_request_method) as methods, \
             sum(case when http_response_status_code = 0 then 1 else 0 end) as no_response \
             from api_requests",
            "csv"
        ),
        "n,methods,no_response\n69,8,1\n"
    );
    assert_eq!(
        sql(
            &data,
            "select source_ip, destination_ip, destination_port, http_request_method, url_domain, url_path, \
             http_response_status_code, http_response_bytes, event_duration, http_request_id \
             from api_requests where http_request_id = '5f2d8e4a-0c1b-4f7e-9a55-3b8c2d1e6f70'",
            "csv"
        ),
        "source_ip,destination_ip,destination_port,http_request_method,url_domain,url_path,http_response_status_code,http_response_bytes,event_duration,http_request_id\n\
         10.99.0.7,10.20.0.5,8443,GET,api.internal,/api/v1/users/42,200,1532,12000000,5f2d8e4a-0c1b-4f7e-9a55-3b8c2d1e6f70\n"
    );
    // The request time of the log is the row's timestamp; the raw line is kept.
    assert_eq!(
        sql(
            &data,
            "select cast(timestamp as varchar) as t, event_original like '%expand=roles%' as raw from api_requests where http_request_id = '5f2d8e4a-0c1b-4f7e-9a55-3b8c2d1e6f70'",
            "csv"
        ),
        "t,raw\n2026-11-25T09:41:07.123Z,true\n"
    );
    // The rejected lines are pipeline errors in `events`, with their text.
    assert_eq!(
        sql(
            &data,
            "select event_dataset, error_message from events where event_kind = 'pipeline_error' order by error_message",
            "csv"
        ),
        "event_dataset,error_message\nnginx.access,\"client address: \"\"Nov\"\" is not an IP address\"\nnginx.access,\"status \"\"999\"\" is not an HTTP status code (0 or 100 to 599)\"\n"
    );
    // A terminal never sees the ESC of the hostile path.
    let table = sql(
        &data,
        "select url_path from api_requests where url_path like '/a%b'",
        "table",
    );
    assert!(table.contains(r"/a\u{1b}[2Jb"), "{table}");
    assert!(!table.contains('\u{1b}'), "{table}");
    let invalid = sql(
        &data,
        "select url_path from api_requests where url_path = '/\\xff'",
        "csv",
    );
    assert_eq!(invalid, "url_path\n/\\xff\n");
    // A second import stores nothing new.
    let (again, _) = ok(&args);
    assert!(
        again.contains("stored 0 events (29 already there)"),
        "{again}"
    );
}

#[test]
fn a_json_mapping_file_tells_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        concat!(
            r#"{"time":"25/Nov/2026:10:41:07 +0100","peer":"10.99.0.7:5123","req":{"verb":"GET","uri":"/v1/users?id=1"},"code":"200","took":0.25}"#,
            "\n",
            r#"{"time":"25/Nov/2026:10:41:08 +0100","msg":"not a request"}"#,
            "\n",
        ),
    )
    .unwrap();
    let mapping = dir.path().join("mapping.toml");
    std::fs::write(
        &mapping,
        r#"
timestamp = "time"
timestamp_format = "%d/%b/%Y:%H:%M:%S %z"
client_ip = "peer"
method = "req.verb"
path = "req.uri"
status = "code"
duration = "took"
duration_unit = "s"
"#,
    )
    .unwrap();
    let args = |format: &'static str| -> Vec<String> {
        vec![
            "parse".to_owned(),
            "--format".to_owned(),
            format.to_owned(),
            "--json-mapping".to_owned(),
            mapping.display().to_string(),
            log.display().to_string(),
        ]
    };
    let json_args = args("json");
    let (stdout, stderr) = ok(&json_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        stderr.contains("2 lines: 1 events, 1 ignored, 0 rejected"),
        "{stderr}"
    );
    let event: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(event["timestamp"], "2026-11-25T09:41:07Z");
    assert_eq!(event["dataset"], "json.access");
    assert_eq!(event["body"]["client_ip"], "10.99.0.7");
    assert_eq!(event["body"]["method"], "GET");
    assert_eq!(event["body"]["path"], "/v1/users");
    assert_eq!(event["body"]["duration_us"], 250_000);

    // Without the mapping, nothing in these lines has an ECS name: no request.
    let (stdout, stderr) = ok(&["parse", "--format", "json", log.to_str().unwrap()]);
    assert!(
        stdout.is_empty() && stderr.contains("2 lines: 0 events, 2 ignored"),
        "{stderr}"
    );

    // Mistakes.
    let nginx_args = args("nginx");
    let error = fails(&nginx_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        error.contains("--json-mapping is read only with --format json"),
        "{error}"
    );
    std::fs::write(&mapping, "methd = \"verb\"\n").unwrap();
    let error = fails(&json_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        error.contains("invalid json mapping") && error.contains("unknown field `methd`"),
        "{error}"
    );
    std::fs::write(&mapping, "timestamp_format = \"%H:%M\"\n").unwrap();
    let error = fails(&json_args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        error.contains("timestamp_format: `%H:%M` must contain a date"),
        "{error}"
    );
    let data = dir.path().join("data");
    let error = fails(&[
        "ingest",
        "--data",
        data.to_str().unwrap(),
        "--json-mapping",
        mapping.to_str().unwrap(),
        &format!("nginx:{}", log.display()),
    ]);
    assert!(error.contains("only for json:FILE inputs"), "{error}");
    let error = fails(&["parse", "--format", "nginx-jsn", log.to_str().unwrap()]);
    assert!(
        error.contains("nginx-json") && error.contains("envoy"),
        "{error}"
    );
}

#[test]
fn a_gateway_source_carries_its_json_mapping() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let check = |text: &str| {
        std::fs::write(&config, text).unwrap();
        run(&["check-config", config.to_str().unwrap()])
    };
    let source =
        "[gateway]\n[[gateway.sources]]\ntype = \"file\"\npath = \"/var/log/app/access.json\"\n";
    let output = check(&format!(
        "{source}format = \"json\"\n[gateway.sources.json_mapping]\nmethod = \"req.verb\"\nstatus = [\"code\", \"status\"]\n"
    ));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("json log file /var/log/app/access.json (json_mapping: timestamp @timestamp | timestamp (rfc3339), client_ip source.ip | client.ip | source.address, method req.verb, path url.path, status code | status)"),
        "{stdout}"
    );
    for (extra, needle) in [
        (
            "format = \"nginx\"\n[gateway.sources.json_mapping]\nmethod = \"m\"\n",
            "source `nginx` has a json_mapping, which only format = \"json\" reads",
        ),
        (
            "format = \"json\"\n[gateway.sources.json_mapping]\nstatus = []\n",
            "source `json`: json_mapping: status needs at least one key",
        ),
        (
            "format = \"json\"\n[gateway.sources.json_mapping]\nstatuz = \"s\"\n",
            "unknown field `statuz`",
        ),
        ("format = \"nginx-jsn\"\n", "nginx-json"),
    ] {
        let output = check(&format!("{source}{extra}"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra}");
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}
