use std::path::Path;

use model::{
    Auth, AuthFailure, AuthMethod, Counters, Endpoint, ErrorKind, Event, EventBody, EventId,
    FailureCode, Identities, Observer, Outcome, Peer, Session, SessionState,
};

use super::*;

pub(crate) fn auth_event(seq: u64, user: &str, outcome: Outcome) -> Event {
    let failure = (outcome == Outcome::Failure).then(|| AuthFailure {
        code: FailureCode::PskMismatch,
        reason: "MAC mismatched".to_owned(),
    });
    Event {
        id: EventId::new("gw1/charon", seq, 0),
        timestamp: jiff::Timestamp::from_second(1_795_000_000 + seq as i64).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("gw1".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: format!("line {seq} \u{1b}[31m"),
        session_id: None,
        source_geo: None,
        body: EventBody::Auth(Auth {
            peer: Peer {
                connection: Some("rw-psk".to_owned()),
                ike_sa_id: Some(seq),
                client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
                server: Endpoint::default(),
                identities: Identities {
                    ike_id: Some(user.to_owned()),
                    ..Identities::default()
                },
            },
            method: AuthMethod::Psk,
            outcome,
            failure,
        }),
    }
}

/// Every WAL generation file with its bytes, to put back later as a crash would have left
/// them.
pub(crate) fn wal_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

pub(crate) fn session(id: &str, version: u64, state: SessionState) -> Session {
    Session {
        session_id: id.to_owned(),
        gateway: Some("gw1".to_owned()),
        connection: Some("rw-psk".to_owned()),
        ike_sa_ids: vec![1],
        identities: Identities {
            ike_id: Some("alice".to_owned()),
            ..Identities::default()
        },
        method: Some(AuthMethod::Psk),
        client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
        client_geo: None,
        virtual_ip: Some("10.99.0.1".parse().unwrap()),
        start: jiff::Timestamp::from_second(1_795_000_000).unwrap(),
        end: (!state.is_open()).then(|| jiff::Timestamp::from_second(1_795_000_100).unwrap()),
        state,
        cause: None,
        counters: Counters {
            bytes_in: 10 * version,
            bytes_out: 20,
            packets_in: None,
            packets_out: None,
        },
        // The state file keeps them (the table does not).
        child_sa_counters: [(
            7,
            Counters {
                bytes_in: 10 * version,
                bytes_out: 20,
                packets_in: None,
                packets_out: None,
            },
        )]
        .into(),
        rekey_count: 0,
        accounting_id: None,
        version,
        updated: jiff::Timestamp::from_second(1_795_000_000 + version as i64).unwrap(),
        sources: None,
    }
}

pub(crate) fn config(dir: &Path) -> Config {
    Config::for_dir(dir)
}

pub(crate) async fn count(store: &Store, sql: &str) -> i64 {
    let rows = store.query_json(sql).await.unwrap();
    rows[0]
        .values()
        .next()
        .and_then(serde_json::Value::as_i64)
        .unwrap()
}

#[tokio::test]
async fn appended_rows_are_visible_before_and_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let receipt = store
        .append(
            vec![
                auth_event(1, "alice", Outcome::Success),
                auth_event(2, "mallory", Outcome::Failure),
            ],
            vec![session("s-1", 1, SessionState::Active)],
        )
        .unwrap();
    assert_eq!(
        receipt,
        AppendReceipt {
            accepted: 2,
            duplicates: 0
        }
    );
    assert_eq!(
        count(
            &store,
            "select count(*) from auth_events where event_outcome = 'failure'"
        )
        .await,
        1
    );
    store.flush().unwrap();
    assert_eq!(store.buffered_rows().unwrap(), 0);
    store
        .append(
            vec![auth_event(3, "alice", Outcome::Success)],
            vec![session("s-1", 2, SessionState::Closed)],
        )
        .unwrap();
    assert_eq!(count(&store, "select count(*) from auth_events").await, 3);
    assert_eq!(count(&store, "select count(*) from events").await, 3);
    // The newest snapshot of a session wins.
    let rows = store
        .query_json("select vpn_state, source_bytes from sessions")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["vpn_state"], "closed");
    assert_eq!(rows[0]["source_bytes"], 20);
    for table in Table::ALL {
        store
            .query(&format!("select * from {}", table.name()))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn resent_events_are_stored_once_even_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store
        .append(
            vec![
                auth_event(1, "a", Outcome::Success),
                auth_event(2, "b", Outcome::Success),
            ],
            vec![],
        )
        .unwrap();
    let again = store
        .append(
            vec![
                auth_event(2, "b", Outcome::Success),
                auth_event(3, "c", Outcome::Success),
            ],
            vec![],
        )
        .unwrap();
    assert_eq!(
        again,
        AppendReceipt {
            accepted: 1,
            duplicates: 1
        }
    );
    drop(store);
    // Restart without a flush: the WAL brings everything back, and resends are still known.
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(count(&store, "select count(*) from auth_events").await, 3);
    let again = store
        .append(vec![auth_event(1, "a", Outcome::Success)], vec![])
        .unwrap();
    assert_eq!(again.duplicates, 1);
    store.flush().unwrap();
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(count(&store, "select count(*) from auth_events").await, 3);
    assert_eq!(
        store
            .append(vec![auth_event(3, "c", Outcome::Success)], vec![])
            .unwrap()
            .duplicates,
        1
    );
}

#[tokio::test]
async fn a_crash_between_parquet_and_wal_removal_does_not_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store
        .append(vec![auth_event(1, "a", Outcome::Success)], vec![])
        .unwrap();
    let wal_copy = wal_files(dir.path());
    store.flush().unwrap();
    drop(store);
    // Put the old WAL generation back, as if the process died before deleting it.
    for (path, bytes) in wal_copy {
        std::fs::write(path, bytes).unwrap();
    }
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(count(&store, "select count(*) from auth_events").await, 1);
}

#[tokio::test]
async fn a_torn_wal_tail_is_cut_and_a_corrupt_segment_is_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store
        .append(vec![auth_event(1, "a", Outcome::Success)], vec![])
        .unwrap();
    store.flush().unwrap();
    store
        .append(vec![auth_event(2, "b", Outcome::Success)], vec![])
        .unwrap();
    drop(store);
    let wal_file = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&wal_file).unwrap();
    bytes.extend_from_slice(&[9, 0, 0, 0, 1, 2]);
    std::fs::write(&wal_file, bytes).unwrap();
    let corrupt = segment::list_local(dir.path(), "events").unwrap();
    let corrupt = &corrupt[0].path;
    std::fs::write(corrupt, b"PAR1 this is not parquet").unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.quarantined_segments, 1);
    // Moved aside under a name that says where it was.
    let quarantined: Vec<String> = std::fs::read_dir(dir.path().join("quarantine"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(quarantined.len(), 1);
    assert!(
        quarantined[0].starts_with("events-date_2026-11-18-hour_11-part-"),
        "{quarantined:?}"
    );
    assert!(std::fs::metadata(corrupt).is_err());
    assert_eq!(count(&store, "select count(*) from auth_events").await, 2);
    assert_eq!(count(&store, "select count(*) from events").await, 1);
    store
        .append(vec![auth_event(3, "c", Outcome::Success)], vec![])
        .unwrap();
    assert_eq!(count(&store, "select count(*) from auth_events").await, 3);
}

#[tokio::test]
async fn a_read_only_reader_sees_the_writers_data_and_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(&config(dir.path())).unwrap();
    writer
        .append(vec![auth_event(1, "a", Outcome::Success)], vec![])
        .unwrap();
    writer.flush().unwrap();
    writer
        .append(vec![auth_event(2, "b", Outcome::Failure)], vec![])
        .unwrap();
    let reader = Store::open_read_only(&config(dir.path())).unwrap();
    assert_eq!(count(&reader, "select count(*) from auth_events").await, 2);
    assert!(matches!(
        reader.append(vec![], vec![]),
        Err(Error::ReadOnly(_))
    ));
    let missing = Store::open_read_only(&config(&dir.path().join("nope"))).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("no tunnelwatch data directory"),
        "{missing}"
    );
}

#[tokio::test]
async fn user_sql_may_only_read_and_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    for statement in [
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (select 1) TO '/tmp/tw-should-not-exist.csv'",
        "DROP VIEW auth_events",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let error = store.query(statement).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid, "{statement}: {error}");
    }
    let error = store
        .query("select nope from auth_events")
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid);
    assert!(error.to_string().contains("nope"), "{error}");
    let error = store.query("selec 1").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid);
}

#[tokio::test]
async fn table_output_escapes_terminal_control_characters() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store
        .append(
            vec![auth_event(
                1,
                "evil\u{1b}]0;pwned\u{7}\r\nx",
                Outcome::Success,
            )],
            vec![],
        )
        .unwrap();
    let result = store
        .query("select user_name, event_original from auth_events")
        .await
        .unwrap();
    let table = result.render(OutputFormat::Table).unwrap();
    assert!(
        !table.contains('\u{1b}') && !table.contains('\u{7}'),
        "{table}"
    );
    assert!(
        table.contains("evil\\u{1b}]0;pwned\\u{7}\\r\\nx"),
        "{table}"
    );
    let json = result.render(OutputFormat::Json).unwrap();
    let row: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(row["user_name"], "evil\u{1b}]0;pwned\u{7}\r\nx");
    let csv = result.render(OutputFormat::Csv).unwrap();
    assert!(csv.starts_with("user_name,event_original\n"), "{csv}");
    let empty = store
        .query("select * from flows")
        .await
        .unwrap()
        .render(OutputFormat::Csv)
        .unwrap();
    assert!(
        empty.starts_with("timestamp,event_id,session_id"),
        "{empty}"
    );
}

#[tokio::test]
async fn open_sessions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store
        .append(
            vec![],
            vec![
                session("s-1", 1, SessionState::Active),
                session("s-2", 1, SessionState::Active),
            ],
        )
        .unwrap();
    store.flush().unwrap();
    store
        .append(vec![], vec![session("s-2", 2, SessionState::Closed)])
        .unwrap();
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    let open: Vec<String> = store
        .open_sessions()
        .unwrap()
        .into_iter()
        .map(|session| session.session_id)
        .collect();
    assert_eq!(open, ["s-1"]);
}

#[tokio::test]
async fn recently_closed_sessions_survive_a_restart_and_old_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let at = |second: i64| jiff::Timestamp::from_second(1_795_000_000 + second).unwrap();
    let closed = |id: &str, end: i64| {
        let mut closed = session(id, 1, SessionState::Closed);
        closed.end = Some(at(end));
        closed.updated = at(end);
        closed
    };
    let mut open = session("open", 1, SessionState::Active);
    open.updated = at(2_000);
    store
        .append(
            vec![],
            vec![
                open,
                // Closed 1,000 s before the newest change: long enough ago to forget.
                closed("long-ago", 1_000),
                // Within the window: kept for late and resent events.
                closed("recent", 2_000 - crate::RECENTLY_CLOSED_SECS + 1),
            ],
        )
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    let ids = |sessions: Vec<Session>| -> Vec<String> {
        sessions
            .into_iter()
            .map(|session| session.session_id)
            .collect()
    };
    assert_eq!(ids(store.open_sessions().unwrap()), ["open"]);
    let mut recent = ids(store.recent_sessions().unwrap());
    recent.sort();
    assert_eq!(recent, ["open", "recent"]);
    assert_eq!(store.stats().unwrap().open_sessions, 1);
}

#[test]
fn the_open_sessions_file_of_an_earlier_version_is_read_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(&config(dir.path())).unwrap());
    let state = dir.path().join("state");
    let old = vec![session("s-1", 3, SessionState::Active)];
    std::fs::write(
        state.join("open_sessions.json"),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(store.open_sessions().unwrap(), old);
    store
        .append(vec![], vec![session("s-2", 1, SessionState::Active)])
        .unwrap();
    store.flush().unwrap();
    assert!(std::fs::metadata(state.join("open_sessions.json")).is_err());
    assert!(std::fs::metadata(state.join("sessions.json")).is_ok());
}

#[test]
fn a_corrupt_sessions_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(&config(dir.path())).unwrap());
    std::fs::write(
        dir.path().join("state/sessions.json"),
        b"[{\"session_id\": ",
    )
    .unwrap();
    let error = Store::open(&config(dir.path())).unwrap_err().to_string();
    assert!(error.contains("sessions state file"), "{error}");
    assert!(error.contains("sessions.json"), "{error}");
}

#[tokio::test]
async fn one_writer_per_directory_but_readers_are_welcome() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(&config(dir.path())).unwrap();
    let error = Store::open(&config(dir.path())).unwrap_err();
    assert!(matches!(error, Error::InUse { .. }), "{error}");
    assert!(
        error.to_string().contains(&std::process::id().to_string()),
        "{error}"
    );
    Store::open_read_only(&config(dir.path())).unwrap();
    drop(writer);
    Store::open(&config(dir.path())).unwrap();
}

#[tokio::test]
async fn a_failed_flush_leaves_nothing_behind_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    settings.max_buffered_rows = 1;
    let store = Store::open(&settings).unwrap();
    store
        .append(
            vec![auth_event(1, "a", Outcome::Success)],
            vec![session("s-1", 1, SessionState::Active)],
        )
        .unwrap();
    // The sessions table cannot be written (a file where its directory should be); events
    // and auth_events come first in a flush and must not stay behind alone.
    let blocker = dir.path().join("tables/sessions");
    std::fs::write(&blocker, b"in the way").unwrap();
    assert!(store.flush().is_err());
    assert_eq!(segment::list_local(dir.path(), "events").unwrap().len(), 0);
    assert_eq!(count(&store, "select count(*) from auth_events").await, 1);
    // Rows pile up while flushes fail; past the hard limit appends are refused (503).
    let mut refused = None;
    for seq in 2..20 {
        if let Err(error) = store.append(vec![auth_event(seq, "b", Outcome::Failure)], vec![]) {
            refused = Some(error);
            break;
        }
    }
    let refused = refused.expect("appends must be refused while flushes fail");
    assert_eq!(refused.kind(), ErrorKind::Unavailable, "{refused}");
    std::fs::remove_file(&blocker).unwrap();
    store.flush().unwrap();
    drop(store);
    let store = Store::open(&settings).unwrap();
    let n = count(&store, "select count(*) from auth_events").await;
    assert_eq!(
        count(&store, "select count(distinct event_id) from auth_events").await,
        n
    );
    assert_eq!(count(&store, "select count(*) from sessions").await, 1);
}

#[tokio::test]
async fn files_of_other_schema_versions_are_read_or_set_aside_with_a_reason() {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store
        .append(vec![auth_event(1, "a", Outcome::Success)], vec![])
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let storage =
        crate::storage::Storage::open(dir.path(), None, &Default::default(), false).unwrap();
    let found = segment::list(&storage, "auth_events", false).unwrap();
    let partition = segment::dir_of(&found[0].key).to_owned();
    let rows = segment::read_all(&storage, &found[0].key)
        .unwrap()
        .remove(0);

    // An older version's file: without a column added since (optional), other rows.
    let older_schema = Arc::new(Schema::new(
        rows.schema()
            .fields()
            .iter()
            .filter(|field| field.name() != "source_geo_country_iso_code")
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let older_columns: Vec<ArrayRef> = older_schema
        .fields()
        .iter()
        .map(|field| rows.column_by_name(field.name()).unwrap().clone())
        .collect();
    let mut older = RecordBatch::try_new(older_schema, older_columns).unwrap();
    // A different event id, so that it is a row of its own.
    let ids: ArrayRef = Arc::new(datafusion::arrow::array::StringArray::from(vec!["old:1"]));
    let id_idx = older.schema().index_of("event_id").unwrap();
    let mut columns = older.columns().to_vec();
    columns[id_idx] = ids;
    older = RecordBatch::try_new(older.schema(), columns).unwrap();
    segment::write(
        &storage,
        &partition,
        "part-older",
        &older,
        &["timestamp"],
        None,
        &[],
    )
    .unwrap();

    // A file whose `user_name` is a number: a conflict, never misread.
    let conflicting_schema = Arc::new(Schema::new(
        rows.schema()
            .fields()
            .iter()
            .map(|field| {
                if field.name() == "user_name" {
                    Arc::new(Field::new("user_name", DataType::Int64, true))
                } else {
                    field.clone()
                }
            })
            .collect::<Vec<_>>(),
    ));
    let conflicting_columns: Vec<ArrayRef> = conflicting_schema
        .fields()
        .iter()
        .map(|field| {
            if field.name() == "user_name" {
                Arc::new(Int64Array::from(vec![Some(7)])) as ArrayRef
            } else {
                rows.column_by_name(field.name()).unwrap().clone()
            }
        })
        .collect();
    let conflicting = RecordBatch::try_new(conflicting_schema, conflicting_columns).unwrap();
    let conflicting_key = segment::write(
        &storage,
        &partition,
        "part-conflict",
        &conflicting,
        &["timestamp"],
        None,
        &[],
    )
    .unwrap();

    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(store.stats().unwrap().quarantined_segments, 1);
    assert!(std::fs::metadata(storage.describe(&conflicting_key)).is_err());
    let rows = store
        .query_json(
            "select event_id, source_geo_country_iso_code as country from auth_events order by event_id",
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[1]["event_id"], "old:1");
    assert!(
        rows[1]
            .get("country")
            .is_none_or(serde_json::Value::is_null)
    );
    // The reason is in the footer check, for the log.
    let footer_error = segment::read_footer(&storage, &found[0].key)
        .unwrap()
        .check_against(&Schema::new(vec![Field::new(
            "user_name",
            DataType::Int64,
            true,
        )]))
        .unwrap_err();
    assert_eq!(
        footer_error,
        "column `user_name` is Utf8 in the file but Int64 in this version of the table"
    );
}

pub(crate) fn flow_event(seq: u64, source: &str, at: jiff::Timestamp) -> Event {
    Event {
        id: EventId::new("gw1/flows", seq, 0),
        timestamp: at,
        dataset: "tunnelwatch.flows".to_owned(),
        observer: Observer {
            hostname: Some("gw1".to_owned()),
            product: Some("tunnelwatch".to_owned()),
        },
        original: String::new(),
        session_id: None,
        source_geo: None,
        body: EventBody::Flow(model::Flow {
            source: Endpoint::new(source.parse().unwrap(), Some(40_000)),
            destination: Endpoint::new("198.51.100.10".parse().unwrap(), Some(443)),
            transport: "tcp".to_owned(),
            start: at,
            end: at,
            source_bytes: 100,
            destination_bytes: 2_000,
            source_packets: 3,
            destination_packets: 4,
            tcp_flags: None,
            end_reason: None,
            session_join: None,
            user_name: None,
        }),
    }
}

#[tokio::test]
async fn flows_go_to_their_table_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let at = jiff::Timestamp::from_second(1_795_000_000).unwrap();
    store
        .append(
            vec![
                flow_event(1, "10.99.0.1", at),
                auth_event(2, "alice", Outcome::Success),
            ],
            vec![],
        )
        .unwrap();
    store.flush().unwrap();
    assert_eq!(count(&store, "select count(*) from flows").await, 1);
    assert_eq!(count(&store, "select count(*) from events").await, 1);
    assert_eq!(
        store.search("", &SearchOptions::default()).unwrap().total,
        1
    );
}

#[tokio::test]
async fn a_group_commit_is_one_wal_record_with_a_receipt_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store
        .append(vec![auth_event(1, "a", Outcome::Success)], vec![])
        .unwrap();
    let receipts = store
        .append_group(vec![
            // One already stored, one new.
            (
                vec![
                    auth_event(1, "a", Outcome::Success),
                    auth_event(2, "b", Outcome::Success),
                ],
                vec![],
            ),
            // A retransmit of the first batch of the group, plus one more, and a session.
            (
                vec![
                    auth_event(2, "b", Outcome::Success),
                    auth_event(3, "c", Outcome::Failure),
                ],
                vec![session("s-1", 1, SessionState::Active)],
            ),
            (vec![], vec![]),
        ])
        .unwrap();
    assert_eq!(
        receipts,
        [
            AppendReceipt {
                accepted: 1,
                duplicates: 1
            },
            AppendReceipt {
                accepted: 1,
                duplicates: 1
            },
            AppendReceipt::default(),
        ]
    );
    // Two appends, two WAL records (one fsync each), whatever the number of batches.
    let (records, n_corrupt) = wal::read_all(&dir.path().join("wal")).unwrap();
    assert_eq!((records.len(), n_corrupt), (2, 0));
    assert_eq!(records[1].events.len(), 2);
    assert_eq!(records[1].sessions.len(), 1);
    assert_eq!(count(&store, "select count(*) from auth_events").await, 3);
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(count(&store, "select count(*) from auth_events").await, 3);
    assert_eq!(store.open_sessions().unwrap().len(), 1);
}

/// The collector's checkpoint is durable with the batch it came with: the newest one comes
/// back after a crash (WAL replay), after a flush (the state file) and after both; an empty
/// one after a flush leaves no file behind; a torn state file is an error, not a guess.
#[test]
fn the_collector_checkpoint_comes_back_after_replay_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = |n: u64| model::CollectorCheckpoint(serde_json::json!({"n": n}));
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(store.collector_checkpoint().unwrap(), None);
    store
        .append_collected(
            vec![(vec![auth_event(1, "alice", Outcome::Success)], vec![])],
            vec![],
            Some(checkpoint(1)),
        )
        .unwrap();
    // A batch without a checkpoint keeps the last one; a checkpoint alone is stored too.
    store
        .append_collected(
            vec![(vec![auth_event(2, "bob", Outcome::Success)], vec![])],
            vec![],
            None,
        )
        .unwrap();
    store
        .append_collected(vec![], vec![], Some(checkpoint(2)))
        .unwrap();
    assert_eq!(store.collector_checkpoint().unwrap(), Some(checkpoint(2)));
    drop(store);
    // Replayed from the WAL.
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(store.collector_checkpoint().unwrap(), Some(checkpoint(2)));
    store.flush().unwrap();
    assert!(std::fs::metadata(dir.path().join("state/collector.json")).is_ok());
    store
        .append_collected(
            vec![(vec![auth_event(3, "carol", Outcome::Success)], vec![])],
            vec![],
            Some(checkpoint(3)),
        )
        .unwrap();
    drop(store);
    // The file (2) and the WAL after it (3): the WAL's is newer.
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(store.collector_checkpoint().unwrap(), Some(checkpoint(3)));
    store.flush().unwrap();
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(store.collector_checkpoint().unwrap(), Some(checkpoint(3)));
    drop(store);
    std::fs::write(dir.path().join("state/collector.json"), b"{\"n\": ").unwrap();
    let error = Store::open(&config(dir.path())).unwrap_err().to_string();
    assert!(error.contains("collector state file"), "{error}");
}

/// Readers never wait for a writer: while an append holds the WAL (its fsync) or a flush
/// rotates it, `stats` (what `/healthz` reads) and queries answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_answer_while_the_wal_is_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store
        .append(vec![auth_event(1, "alice", Outcome::Success)], vec![])
        .unwrap();
    // A writer in the middle of its fsync, on a thread of its own.
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer_store = store.clone();
    let writer = std::thread::spawn(move || {
        let _wal = writer_store.writer().unwrap();
        held_tx.send(()).unwrap();
        let _ = done_rx.recv_timeout(std::time::Duration::from_secs(30));
    });
    held_rx.recv().unwrap();
    let reader = store.clone();
    let answered = tokio::time::timeout(std::time::Duration::from_secs(5), async move {
        let stats = reader.stats().unwrap();
        let n = count(&reader, "SELECT count(*) FROM auth_events").await;
        (stats.buffered_events, n)
    })
    .await
    .expect("a reader waited for the writer");
    assert_eq!(answered, (1, 1));
    done_tx.send(()).unwrap();
    writer.join().unwrap();
}

/// `/healthz` and `/metrics` (`stats`) and the pipeline's "is the buffer full"
/// (`buffered_rows`) never wait for the state lock, which a flush or a query may hold, and
/// what they report is what the state was when it was last let go.
#[test]
fn health_figures_answer_while_the_state_is_locked_and_follow_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let figures = |store: &Store| {
        let stats = store.stats().unwrap();
        (
            stats.buffered_events,
            stats.buffered_sessions,
            stats.open_sessions,
            stats.segments,
            store.buffered_rows().unwrap(),
        )
    };
    assert_eq!(figures(&store), (0, 0, 0, 0, 0));
    store
        .append(
            vec![auth_event(1, "alice", Outcome::Success)],
            vec![session("s-alice", 1, SessionState::Active)],
        )
        .unwrap();
    assert_eq!(figures(&store), (1, 1, 1, 0, 2));
    // The state lock held elsewhere (a flush taking its buffer, a query's snapshot): the
    // figures answer at once. A std Mutex taken twice would never answer, hence a thread.
    let held = store.inner.lock().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = store.clone();
    std::thread::spawn(move || tx.send(figures(&reader)));
    let answered = rx.recv_timeout(std::time::Duration::from_secs(30));
    drop(held);
    assert_eq!(
        answered.expect("stats waited for the state lock"),
        (1, 1, 1, 0, 2)
    );
    // A session that ends is no longer open; a flush empties the buffer into segments.
    store
        .append(vec![], vec![session("s-alice", 2, SessionState::Closed)])
        .unwrap();
    assert_eq!(figures(&store).2, 0);
    store.flush().unwrap();
    let (events, sessions, open, segments, rows) = figures(&store);
    assert_eq!((events, sessions, open, rows), (0, 0, 0, 0));
    assert!(segments >= 2, "{segments} segments after a flush");
    // Reopened, the figures are the state's from the start.
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(figures(&store), (0, 0, 0, segments, 0));
}

/// At most `max_concurrent_queries` run at once; one more is refused at once (and counted),
/// and a place comes free when a query's stream is dropped.
#[tokio::test]
async fn queries_beyond_the_limit_are_refused_at_once_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&Config {
        max_concurrent_queries: 1,
        ..config(dir.path())
    })
    .unwrap();
    let running = store.query_stream("SELECT 1").await.unwrap();
    assert_eq!(store.stats().unwrap().running_queries, 1);
    let error = store.query_stream("SELECT 2").await.unwrap_err();
    assert!(matches!(error, Error::Busy(1)), "{error}");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    assert_eq!(store.stats().unwrap().refused_queries, 1);
    drop(running);
    let result = store.query("SELECT 3 AS n").await.unwrap();
    assert_eq!(result.batches[0].num_rows(), 1);
    assert_eq!(store.stats().unwrap().running_queries, 0);
    // Zero is not a limit.
    let error = Store::open(&Config {
        max_concurrent_queries: 0,
        ..config(tempfile::tempdir().unwrap().path())
    })
    .unwrap_err();
    assert!(
        error.to_string().contains("max_concurrent_queries"),
        "{error}"
    );
}

/// On a runtime of their own, queries give the same answers (and their streams stop when
/// dropped).
#[test]
fn queries_run_on_the_runtime_they_are_given() {
    let dir = tempfile::tempdir().unwrap();
    let queries = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Store::open(&config(dir.path()))
        .unwrap()
        .with_query_runtime(queries.handle().clone());
    store
        .append(
            (1..=50)
                .map(|seq| auth_event(seq, "alice", Outcome::Success))
                .collect(),
            vec![],
        )
        .unwrap();
    server.block_on(async {
        assert_eq!(count(&store, "SELECT count(*) FROM auth_events").await, 50);
        let error = store
            .query("SELECT nope FROM auth_events")
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
        let mut stream = store
            .query_stream("SELECT * FROM generate_series(1, 100000000)")
            .await
            .unwrap();
        assert!(stream.next_batch().await.is_some());
        drop(stream);
        assert_eq!(store.stats().unwrap().running_queries, 0);
    });
    queries.shutdown_background();
}

/// A crash between two files of one flush (here: its rows fall in two hours, and the crash
/// came after the first `auth_events` file, before the WAL generations went): the files of
/// that unfinished flush are set aside at the next open and its rows come back from the
/// WAL, once. Without the flush manifest the first file's watermarks covered the second
/// file's rows, which were lost.
#[tokio::test]
async fn a_crash_between_the_files_of_a_flush_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    // 11:33:21 and 12:40:00: two hour partitions.
    let events = vec![
        auth_event(1, "alice", Outcome::Success),
        auth_event(4_000, "bob", Outcome::Success),
    ];
    store.append(events, vec![]).unwrap();
    let wal = dir.path().join("wal");
    let saved = wal_files(dir.path());
    store.flush().unwrap();
    drop(store);
    // What the disk held at the crash: the flush's first auth_events file only, no manifest
    // entry, the WAL as before the flush.
    let auth_files = segment::list_local(dir.path(), "auth_events").unwrap();
    assert_eq!(auth_files.len(), 2, "{auth_files:?}");
    std::fs::remove_file(&auth_files[1].path).unwrap();
    std::fs::write(dir.path().join("state/flushes.json"), b"[]").unwrap();
    for entry in std::fs::read_dir(&wal).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for (path, bytes) in &saved {
        std::fs::write(path, bytes).unwrap();
    }
    let store = Store::open(&config(dir.path())).unwrap();
    let query = "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM auth_events";
    let rows = store.query_json(query).await.unwrap();
    assert_eq!(
        (rows[0]["n"].as_i64(), rows[0]["ids"].as_i64()),
        (Some(2), Some(2)),
        "in memory"
    );
    // The unfinished flush's remaining file is gone; the next flush writes both rows.
    assert!(std::fs::metadata(&auth_files[0].path).is_err());
    store.flush().unwrap();
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    for table in ["auth_events", "events"] {
        let rows = store
            .query_json(&format!(
                "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM {table}"
            ))
            .await
            .unwrap();
        assert_eq!(
            (rows[0]["n"].as_i64(), rows[0]["ids"].as_i64()),
            (Some(2), Some(2)),
            "{table} after the next flush"
        );
    }
}

/// A flush forgets the sessions that closed more than `RECENTLY_CLOSED_SECS` before the
/// newest change and hands them back (to be freed outside the state lock); open ones and
/// recently closed ones stay, and the open count follows.
#[test]
fn prune_hands_back_exactly_the_sessions_closed_long_before_the_newest_change() {
    let at = |second: i64| jiff::Timestamp::from_second(1_795_000_000 + second).unwrap();
    let snapshot = |id: &str, state: SessionState, end: Option<i64>, updated: i64| Session {
        end: end.map(at),
        updated: at(updated),
        ..session(id, 1, state)
    };
    let mut recent = recent_sessions::RecentSessions::default();
    recent.track(&snapshot("old", SessionState::Closed, Some(0), 0));
    recent.track(&snapshot(
        "edge",
        SessionState::Closed,
        Some(10_000 - RECENTLY_CLOSED_SECS),
        9_000,
    ));
    recent.track(&snapshot("open-long", SessionState::Active, None, 100));
    recent.track(&snapshot("newest", SessionState::Active, None, 10_000));
    assert_eq!(recent.n_open(), 2);
    let forgotten: Vec<String> = recent
        .prune()
        .into_iter()
        .map(|session| session.session_id)
        .collect();
    assert_eq!(forgotten, ["old"]);
    let mut kept: Vec<String> = recent.all().into_iter().map(|s| s.session_id).collect();
    kept.sort();
    assert_eq!(kept, ["edge", "newest", "open-long"]);
    assert_eq!(recent.n_open(), 2);
    assert!(
        recent.prune().is_empty(),
        "a second prune forgets nothing more"
    );
}
