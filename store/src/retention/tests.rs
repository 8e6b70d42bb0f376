use std::collections::BTreeMap;

use model::{AuditDraft, Outcome};

use crate::tests::{auth_event, config, count, wal_files};
use crate::{Config, SearchOptions, Store, Table, segment};

/// An auth event `hours_ago` hours before `now`.
fn event_at(seq: u64, now: jiff::Timestamp, hours_ago: i64) -> model::Event {
    let mut event = auth_event(seq, "alice", Outcome::Success);
    event.timestamp = now - jiff::SignedDuration::from_hours(hours_ago);
    event
}

fn keeping(dir: &std::path::Path, days: &[(&str, u32)]) -> Config {
    let mut config = config(dir);
    config.retention = days
        .iter()
        .map(|(table, days)| ((*table).to_owned(), *days))
        .collect::<BTreeMap<_, _>>();
    config
}

fn draft(message: &str) -> AuditDraft {
    AuditDraft {
        action: "test.note".to_owned(),
        outcome: Some("success".to_owned()),
        actor: Some("tester".to_owned()),
        target: None,
        source_ip: Some("192.0.2.7".parse().unwrap()),
        message: message.to_owned(),
        role: None,
        details: None,
    }
}

#[tokio::test]
async fn expired_hours_are_deleted_whole_and_each_deletion_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let settings = keeping(dir.path(), &[("auth_events", 1), ("events", 2)]);
    let store = Store::open(&settings).unwrap();
    store
        .append(
            vec![
                event_at(1, now, 24 * 3),
                event_at(2, now, 24 * 3),
                event_at(3, now, 30),
                event_at(4, now, 1),
            ],
            vec![],
        )
        .unwrap();
    store.flush().unwrap();
    assert_eq!(
        store.search("", &SearchOptions::default()).unwrap().total,
        4
    );

    let deleted = store.apply_retention(now).unwrap();
    let summary: Vec<(Table, usize, u64)> = deleted
        .iter()
        .map(|partition| (partition.table, partition.files, partition.rows))
        .collect();
    // events keep 2 days (the 30-hour-old row stays), auth_events 1 day.
    assert_eq!(
        summary,
        [
            (Table::Events, 1, 2),
            (Table::AuthEvents, 1, 2),
            (Table::AuthEvents, 1, 1)
        ]
    );
    assert_eq!(count(&store, "select count(*) from events").await, 2);
    assert_eq!(count(&store, "select count(*) from auth_events").await, 1);
    assert_eq!(
        store.search("", &SearchOptions::default()).unwrap().total,
        2
    );
    // Gone from disk, empty directories too.
    let left = segment::list_local(dir.path(), "auth_events").unwrap();
    assert_eq!(left.len(), 1);
    let date_dirs = std::fs::read_dir(dir.path().join("tables/auth_events"))
        .unwrap()
        .count();
    assert!(date_dirs <= 2, "{date_dirs} date directories left");
    // Nothing more to do.
    assert!(store.apply_retention(now).unwrap().is_empty());

    // Each deletion is an audit entry, queryable at once.
    let rows = store
        .query_json(
            "select event_id, event_action, user_name, user_target_name, message from audit_log order by event_id",
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["event_id"], "audit:1");
    assert_eq!(rows[0]["event_action"], "retention.delete");
    assert_eq!(rows[0]["user_name"], "policy:retention");
    let message = rows[1]["message"].as_str().unwrap();
    assert!(message.contains("2 row(s) of auth_events"), "{message}");
    assert!(
        message.contains("[store.retention] auth_events = 1"),
        "{message}"
    );
    assert!(
        rows[1]["user_target_name"]
            .as_str()
            .unwrap()
            .starts_with("auth_events/date=")
    );

    // The chain goes on across a restart and verifies.
    store.flush().unwrap();
    drop(store);
    let store = Store::open(&settings).unwrap();
    let entry = store.record_audit(draft("after the restart")).unwrap();
    assert_eq!(entry.id, "audit:4");
    let report = store.verify(false).unwrap();
    assert_eq!(
        (report.audit_entries, report.audit_break.clone()),
        (4, None)
    );
    assert!(report.is_healthy(), "{report:?}");
}

#[tokio::test]
async fn a_replayed_wal_does_not_repeat_audit_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store.record_audit(draft("one")).unwrap();
    store.record_audit(draft("two")).unwrap();
    let wal_copy = wal_files(dir.path());
    store.flush().unwrap();
    drop(store);
    // As if the process died after writing Parquet and before removing the WAL.
    for (path, bytes) in wal_copy {
        std::fs::write(path, bytes).unwrap();
    }
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(count(&store, "select count(*) from audit_log").await, 2);
    assert_eq!(store.record_audit(draft("three")).unwrap().id, "audit:3");
    assert_eq!(store.verify(false).unwrap().audit_break, None);
}

#[tokio::test]
async fn a_removed_audit_segment_breaks_the_chain_for_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    for message in ["first", "second", "third"] {
        store.record_audit(draft(message)).unwrap();
        store.flush().unwrap();
    }
    let files = segment::list_local(dir.path(), "audit_log").unwrap();
    assert_eq!(files.len(), 3);
    drop(store);
    std::fs::remove_file(&files[1].path).unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let report = store.verify(false).unwrap();
    assert_eq!(report.audit_entries, 2);
    assert_eq!(
        report.audit_break.as_deref(),
        Some("audit entry audit:3 does not follow the entry before it")
    );
    assert!(!report.is_healthy());
}

#[test]
fn retention_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for (settings, expected) in [
        (vec![("flow", 3)], "[store.retention] names no table `flow`"),
        (vec![("flows", 0)], "keep a table at least 1 day"),
        (
            vec![("audit_log", 30)],
            "audit_log = 30 is below the compliance minimum of 365 days",
        ),
    ] {
        let error = keeping(dir.path(), &settings).validate().unwrap_err();
        assert!(error.to_string().contains(expected), "{error}");
    }
    assert!(
        keeping(dir.path(), &[("flows", 90), ("audit_log", 3650)])
            .validate()
            .is_ok()
    );
    // A reader cannot apply retention.
    drop(Store::open(&config(dir.path())).unwrap());
    let reader = Store::open_read_only(&keeping(dir.path(), &[("flows", 1)])).unwrap();
    assert!(reader.apply_retention(jiff::Timestamp::now()).is_err());
}

#[test]
fn late_join_corrections_follow_the_rows_they_correct() {
    let dir = tempfile::tempdir().unwrap();
    let policy =
        |settings: &[(&str, u32)]| keeping(dir.path(), settings).retention_policy().unwrap();
    assert_eq!(
        policy(&[("flows", 30), ("api_requests", 90)]).get(&Table::SessionJoins),
        Some(&90)
    );
    // Either table kept forever: so are its corrections.
    assert_eq!(policy(&[("flows", 30)]).get(&Table::SessionJoins), None);
    // Named: as named.
    assert_eq!(
        policy(&[("flows", 30), ("api_requests", 90), ("session_joins", 7)])
            .get(&Table::SessionJoins),
        Some(&7)
    );
}

#[test]
fn retention_deletes_only_sealed_audit_entries_and_the_trail_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let config = keeping(dir.path(), &[("audit_log", 365)]);
    let store = Store::open(&config).unwrap();
    for message in ["first", "second", "third"] {
        store.record_audit(draft(message)).unwrap();
    }
    store.flush().unwrap();
    let later = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 400);
    // Nothing sealed yet: the trail's hours stay, however old.
    assert_eq!(store.apply_retention(later).unwrap(), vec![]);
    store.seal_audit().unwrap();
    store.flush().unwrap();
    let deleted = store.apply_retention(later).unwrap();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    store.seal_audit().unwrap();
    let key = crate::parse_public_key(&store.seal_public_key().unwrap()).unwrap();
    let entries = store.audit_entries().unwrap();
    // The trail now starts with the record of the deletion, right after what it deleted.
    assert_eq!(entries[0].draft.action, "retention.delete");
    assert!(
        entries[0]
            .draft
            .details
            .as_deref()
            .unwrap()
            .contains(r#""audit_through":4"#)
    );
    let summary = crate::verify_trail(entries.clone(), &key).unwrap();
    assert_eq!((summary.first, summary.last), (5, 6));
    // Removing that record as well is found.
    let error = crate::verify_trail(entries[1..].to_vec(), &key).unwrap_err();
    assert!(
        error.to_string().contains("the trail starts at audit:6"),
        "{error}"
    );
}
