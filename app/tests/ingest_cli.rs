//! `tunnelwatch ingest`, `parse` and `sql` as a user runs them: real charon captures in,
//! exact counts out, a second import adds nothing, bad input gets a clear error.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};

use support::{run, sql_csv};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/testdata/charon")
        .join(name)
}

fn ingest(data: &Path, specs: &[String], extra: &[&str]) -> String {
    let mut args = vec!["ingest", "--data", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend(specs.iter().map(String::as_str));
    let output = run(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn forensic_import_of_real_captures() {
    let data = tempfile::tempdir().unwrap();
    let names = [
        "psk-ok",
        "psk-wrong",
        "cert-ok",
        "eap-mschapv2-ok",
        "eap-mschapv2-wrong",
        "radius-ok",
        "radius-wrong",
        "gateway-terminate",
        "dpd-lost",
        "rekey",
        "rekey-by-client",
    ];
    let specs: Vec<String> = names
        .iter()
        .map(|name| format!("charon:{}", fixture(&format!("{name}.log")).display()))
        .collect();
    let summary = ingest(
        data.path(),
        &specs,
        &["--year", "2025", "--hostname", "gw-lab"],
    );
    assert!(summary.contains("psk-ok.log: 42 lines"), "{summary}");

    assert_eq!(
        sql_csv(
            data.path(),
            "select event_outcome, vpn_auth_failure, count(*) as n from auth_events group by 1, 2 order by 1, 2"
        ),
        "event_outcome,vpn_auth_failure,n\nfailure,eap_failure,1\nfailure,psk_mismatch,1\nfailure,radius_reject,1\nsuccess,,8\n"
    );
    assert_eq!(
        sql_csv(
            data.path(),
            "select vpn_state, vpn_terminate_cause, count(*) as n from sessions group by 1, 2 order by 1, 2"
        ),
        "vpn_state,vpn_terminate_cause,n\nclosed,admin_reset,1\nclosed,user_request,6\nlost,lost_service,1\n"
    );
    assert_eq!(
        sql_csv(
            data.path(),
            "select sum(vpn_rekey_count) as rekeys from sessions"
        ),
        "rekeys\n2\n"
    );
    assert_eq!(
        sql_csv(
            data.path(),
            "select distinct vpn_auth_method from sessions order by 1"
        ),
        "vpn_auth_method\ncert\neap-mschapv2\neap-radius\npsk\n"
    );
    // Syslog timestamps carry no year: --year 2025 put them in 2025.
    assert_eq!(
        sql_csv(
            data.path(),
            "select count(*) as n from events where extract(year from timestamp) <> 2025"
        ),
        "n\n0\n"
    );
    assert_eq!(
        sql_csv(
            data.path(),
            "select distinct observer_hostname from sessions"
        ),
        "observer_hostname\ngw-lab\n"
    );
    // Every successful auth and every session line up.
    assert_eq!(
        sql_csv(
            data.path(),
            "select count(*) as n from auth_events a join sessions s on a.session_id = s.session_id where a.event_outcome = 'success'"
        ),
        "n\n8\n"
    );

    // The same files again: nothing new.
    let again = ingest(
        data.path(),
        &specs,
        &["--year", "2025", "--hostname", "gw-lab"],
    );
    assert!(again.contains("stored 0 events"), "{again}");
    assert_eq!(
        sql_csv(data.path(), "select count(*) as n from auth_events"),
        "n\n11\n"
    );
}

#[test]
fn time_zones_and_years() {
    let data = tempfile::tempdir().unwrap();
    let spec = format!("charon:{}", fixture("psk-wrong.log").display());
    ingest(
        data.path(),
        &[spec],
        &["--year", "2019", "--tz", "America/New_York"],
    );
    // 09:33:14 in New York in November is 14:33:14 UTC.
    assert_eq!(
        sql_csv(
            data.path(),
            "select cast(timestamp as varchar) as t from auth_events"
        ),
        "t\n2019-11-25T14:33:14Z\n"
    );
}

#[test]
fn hostile_input_is_counted_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hostile.log");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"Nov 25 09:33:12 09[IKE] <rw-psk|1> authentication of 'x\x1b[2J\xff' with pre-shared key successful\r\n");
    bytes.extend_from_slice(b"not a charon line at all\n");
    bytes.extend_from_slice(&vec![b'Z'; 2 * 1024 * 1024]);
    bytes.extend_from_slice(b"\n\0\0\0\nNov 25 09:33:13 09[IKE] <rw-psk|1> IKE_SA rw-psk[1] established between 192.0.2.1[gw]...192.0.2.9[x]");
    std::fs::write(&log, &bytes).unwrap();
    let data = dir.path().join("data");
    let summary = ingest(&data, &[format!("charon:{}", log.display())], &[]);
    assert!(summary.contains("5 lines: 2 events, 0 ignored, 3 rejected (malformed: 2, oversized: 1), 1 with invalid UTF-8"), "{summary}");
    assert_eq!(
        sql_csv(
            &data,
            "select event_action, error_message, length(event_original) as len from events where event_kind = 'pipeline_error' order by len"
        ),
        "event_action,error_message,len\nrejected-malformed,not a charon log line: no `NN[GRP]` thread tag,3\nrejected-malformed,not a charon log line: no `NN[GRP]` thread tag,24\nrejected-oversized,line of 2097152 bytes exceeds the limit of 65536 bytes,65536\n"
    );
    let table = run(&[
        "sql",
        "select user_name from auth_events",
        "--data",
        data.to_str().unwrap(),
    ]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.contains("x\\u{1b}[2J\\xff"), "{table}");
    assert!(
        !table.contains('\u{1b}'),
        "the terminal must not see raw escapes: {table}"
    );
    // parse prints the same events as JSON lines.
    let parsed = run(&["parse", "--format", "charon", log.to_str().unwrap()]);
    assert!(parsed.status.success());
    assert_eq!(String::from_utf8(parsed.stdout).unwrap().lines().count(), 5);
}

#[test]
fn mistakes_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &["ingest", "--data", data, "pluto9:/x"],
            "unknown log format `pluto9`",
        ),
        (
            &["ingest", "--data", data, "/var/log/charon.log"],
            "is not FORMAT:FILE",
        ),
        (
            &["ingest", "--data", data, "charon:/does/not/exist.log"],
            "cannot read /does/not/exist.log",
        ),
        (
            &[
                "ingest",
                "--data",
                data,
                "--tz",
                "Mars/Base",
                "charon:/dev/null",
            ],
            "unknown time zone",
        ),
        (
            &["sql", "select 1", "--data", "/does/not/exist"],
            "no tunnelwatch data directory",
        ),
        (
            &["parse", "--format", "charon", "/does/not/exist.log"],
            "cannot read /does/not/exist.log",
        ),
        (
            &["check-config", "/does/not/exist.toml"],
            "cannot read configuration file",
        ),
    ];
    for (args, needle) in cases {
        let output = run(args);
        assert!(!output.status.success(), "{args:?} should fail");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
    // A valid store, an invalid query.
    let data_dir = dir.path().join("data");
    ingest(
        &data_dir,
        &[format!("charon:{}", fixture("psk-ok.log").display())],
        &[],
    );
    let output = run(&[
        "sql",
        "select nope from sessions",
        "--data",
        data_dir.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("nope"));
    let output = run(&[
        "sql",
        "COPY (select 1) TO '/tmp/x.csv'",
        "--data",
        data_dir.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
}

#[test]
fn a_different_file_at_the_same_path_is_not_taken_for_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("charon.log");
    std::fs::copy(fixture("psk-ok.log"), &log).unwrap();
    ingest(&data, &[format!("charon:{}", log.display())], &[]);
    // logrotate: the path now holds a different, shorter file.
    std::fs::copy(fixture("psk-wrong.log"), &log).unwrap();
    let summary = ingest(&data, &[format!("charon:{}", log.display())], &[]);
    assert!(
        summary.contains("stored 2 events (0 already there)"),
        "{summary}"
    );
    assert_eq!(
        sql_csv(&data, "select count(*) as n from auth_events"),
        "n\n2\n"
    );
}
