//! `tunnelwatch search`, `store verify [--repair]` and `store rebuild-index` as a user runs
//! them on a data directory made from real captures: searches find exactly the expected
//! events, a corrupt segment is found, quarantined and the index rebuilt from what is intact.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::run;

fn fixture(dir: &str, name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/testdata")
        .join(dir)
        .join(name)
        .display()
        .to_string()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn search(data: &Path, query: &str, extra: &[&str]) -> Output {
    let mut args = vec!["search", query, "--data", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

/// The `user_name` of each hit of `query`, newest first.
fn users(data: &Path, query: &str) -> Vec<String> {
    let output = search(data, query, &["--format", "json"]);
    assert!(output.status.success(), "{query}: {}", stderr(&output));
    stdout(&output)
        .lines()
        .map(|line| {
            let hit: serde_json::Value = serde_json::from_str(line).unwrap();
            hit["user_name"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "parquet") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn search_verify_repair_and_rebuild_on_real_captures() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let ingest = run(&[
        "ingest",
        "--data",
        data.to_str().unwrap(),
        "--year",
        "2026",
        &format!("charon:{}", fixture("charon", "psk-ok.log")),
        &format!("charon:{}", fixture("charon", "psk-wrong.log")),
        &format!("charon:{}", fixture("charon", "radius-wrong.log")),
        &format!("pppd:{}", fixture("pppd", "pap-and-failures.log")),
    ]);
    assert!(ingest.status.success(), "{}", stderr(&ingest));

    // The failures, newest first, and the words of one line.
    let failures = users(&data, "outcome:failure");
    assert!(
        failures.contains(&"client2@psk.vpn.test".to_owned()),
        "{failures:?}"
    );
    assert!(failures.contains(&"carol".to_owned()), "{failures:?}");
    assert_eq!(
        users(&data, "raw:\"MAC mismatched\""),
        ["client2@psk.vpn.test"]
    );
    assert_eq!(
        users(&data, "raw:\"RADIUS authentication of\" AND raw:failed"),
        ["carol"]
    );
    // Keyword fields: whole values, any case; a partial value is no match.
    let client1 = users(
        &data,
        "user:CLIENT1@psk.vpn.test AND dataset:strongswan.charon",
    );
    assert!(!client1.is_empty());
    assert!(
        client1.iter().all(|user| user == "client1@psk.vpn.test"),
        "{client1:?}"
    );
    assert!(users(&data, "user:client1").is_empty());
    // The table output and its summary.
    let table = search(&data, "raw:mismatched", &[]);
    assert!(table.status.success());
    assert!(stdout(&table).contains("client2@psk.vpn.test"));
    assert!(
        stderr(&table).contains("1 of 1 matching events"),
        "{}",
        stderr(&table)
    );
    // A hostile search gets a clear error that cannot drive the terminal.
    let hostile = search(&data, "\u{1b}[2J\"broken", &[]);
    assert!(!hostile.status.success());
    assert!(
        stderr(&hostile).contains("cannot read the search"),
        "{}",
        stderr(&hostile)
    );
    assert!(!stderr(&hostile).contains('\u{1b}'));
    let bad_time = search(&data, "x", &["--from", "yesterday"]);
    assert!(!bad_time.status.success());

    // Healthy to begin with.
    let verify = run(&["store", "verify", "--data", data.to_str().unwrap()]);
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );
    assert!(
        stdout(&verify).trim_end().ends_with("ok"),
        "{}",
        stdout(&verify)
    );
    let n_events_before: usize = search(&data, "", &["--format", "json", "--limit", "10000"])
        .stdout
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .count();

    // Damage a page in the middle of the biggest `events` segment (its footer stays intact).
    let victim = segments(&data.join("tables/events"))
        .into_iter()
        .max_by_key(|path| std::fs::metadata(path).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 3;
    for byte in &mut bytes[middle..middle + 64] {
        *byte = 0xA5;
    }
    std::fs::write(&victim, bytes).unwrap();
    let verify = run(&["store", "verify", "--data", data.to_str().unwrap()]);
    assert!(!verify.status.success());
    assert!(
        stdout(&verify).contains(&format!("corrupt segment: {}", victim.display())),
        "{}",
        stdout(&verify)
    );
    assert!(
        stdout(&verify).contains("store verify --repair"),
        "{}",
        stdout(&verify)
    );

    // Repair: the segment goes to quarantine, the index is rebuilt from what is intact.
    let repair = run(&[
        "store",
        "verify",
        "--repair",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert!(
        repair.status.success(),
        "{}{}",
        stdout(&repair),
        stderr(&repair)
    );
    assert!(
        stdout(&repair).contains("quarantined:"),
        "{}",
        stdout(&repair)
    );
    assert!(stdout(&repair).contains("rebuilt the search index"));
    assert!(std::fs::metadata(&victim).is_err());
    let verify = run(&["store", "verify", "--data", data.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", stdout(&verify));
    assert!(
        stdout(&verify).contains("1 segment(s) in"),
        "{}",
        stdout(&verify)
    );
    let n_events_after: usize = search(&data, "", &["--format", "json", "--limit", "10000"])
        .stdout
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .count();
    assert!(
        n_events_after < n_events_before,
        "{n_events_after} < {n_events_before}"
    );
    let sql = run(&[
        "sql",
        "select count(*) as n from events",
        "--data",
        data.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    assert_eq!(stdout(&sql), format!("n\n{n_events_after}\n"));

    // A lost index: verify says so, rebuild-index brings every event back.
    std::fs::remove_dir_all(data.join("index")).unwrap();
    let verify = run(&["store", "verify", "--data", data.to_str().unwrap()]);
    assert!(!verify.status.success());
    assert!(
        stdout(&verify).contains("not in the search index"),
        "{}",
        stdout(&verify)
    );
    let rebuild = run(&["store", "rebuild-index", "--data", data.to_str().unwrap()]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    assert!(
        stdout(&rebuild).contains(&format!("indexed {n_events_after} events")),
        "{}",
        stdout(&rebuild)
    );
    let n_searchable: usize = search(&data, "", &["--format", "json", "--limit", "10000"])
        .stdout
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .count();
    assert_eq!(n_searchable, n_events_after);
}
