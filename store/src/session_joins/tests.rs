use model::{
    ApiRequest, Endpoint, Event, EventBody, EventId, JoinTarget, Observer, SessionJoin,
    SessionJoinUpdate, SessionState,
};
use serde_json::{Value, json};

use super::*;
use crate::tests::{auth_event, config, count, flow_event};
use crate::{Store, segment};

/// 2026-11-18T11:33:20Z; flows of the tests are at `BASE + seconds`.
const BASE: i64 = 1_795_000_000;

fn at(seconds: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_second(BASE + seconds).unwrap()
}

/// A flow the collector could not join when it was stored.
fn unmatched_flow(seq: u64, seconds: i64) -> Event {
    let mut event = flow_event(seq, "10.99.0.7", at(seconds));
    if let EventBody::Flow(flow) = &mut event.body {
        flow.session_join = Some(SessionJoin::Unmatched);
    }
    event
}

fn api_request(seq: u64, seconds: i64) -> Event {
    Event {
        id: EventId::new("gw1/nginx", seq, 0),
        timestamp: at(seconds),
        dataset: "nginx.access".to_owned(),
        observer: Observer {
            hostname: Some("api1".to_owned()),
            product: Some("nginx".to_owned()),
        },
        original: format!("GET /v1/things/{seq}"),
        session_id: None,
        source_geo: None,
        body: EventBody::ApiRequest(ApiRequest {
            client_ip: Some("10.99.0.7".parse().unwrap()),
            destination: Endpoint::new("198.51.100.20".parse().unwrap(), Some(443)),
            method: "GET".to_owned(),
            host: Some("api.corp.example".to_owned()),
            path: format!("/v1/things/{seq}"),
            status: 200,
            response_bytes: Some(512),
            duration_us: Some(900),
            request_id: None,
            session_join: Some(SessionJoin::Unmatched),
            user_name: None,
        }),
    }
}

/// A correction of `event`: now joined to `session` (of `user`, or to none), decided at
/// `decided` seconds after [`BASE`].
fn correction(event: &Event, session: Option<&str>, decided: i64) -> SessionJoinUpdate {
    let target = match event.body {
        EventBody::ApiRequest(_) => JoinTarget::ApiRequests,
        _ => JoinTarget::Flows,
    };
    SessionJoinUpdate {
        target,
        event_id: event.id.to_string(),
        timestamp: event.timestamp,
        session_id: session.map(str::to_owned),
        user_name: session.map(|session| format!("user-of-{session}")),
        join: if session.is_some() {
            SessionJoin::Late
        } else {
            SessionJoin::Unmatched
        },
        decided: at(decided),
    }
}

/// `(event_id, session_id, user_name, vpn_session_join)` of every row of `table`.
async fn joins_of(store: &Store, table: &str) -> Vec<(String, Value, Value, Value)> {
    store
        .query_json(&format!(
            "SELECT event_id, session_id, user_name, vpn_session_join FROM {table} ORDER BY event_id"
        ))
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            let get = |name: &str| row.get(name).cloned().unwrap_or(Value::Null);
            (
                get("event_id").as_str().unwrap().to_owned(),
                get("session_id"),
                get("user_name"),
                get("vpn_session_join"),
            )
        })
        .collect()
}

fn joined(event: &Event, session: &str) -> (String, Value, Value, Value) {
    (
        event.id.to_string(),
        json!(session),
        json!(format!("user-of-{session}")),
        json!("late"),
    )
}

fn unjoined(event: &Event) -> (String, Value, Value, Value) {
    (
        event.id.to_string(),
        Value::Null,
        Value::Null,
        json!("unmatched"),
    )
}

fn store_corrections(store: &Store, updates: Vec<SessionJoinUpdate>) {
    let receipts = store.append_group_with_joins(vec![], updates).unwrap();
    assert!(receipts.is_empty());
}

/// The physical plan of `sql`.
async fn plan_of(store: &Store, sql: &str) -> String {
    store
        .query(&format!("EXPLAIN {sql}"))
        .await
        .unwrap()
        .render(crate::OutputFormat::Csv)
        .unwrap()
}

#[tokio::test]
async fn a_late_join_shows_in_flows_before_and_after_flush_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let late = unmatched_flow(1, 10);
    let alone = unmatched_flow(2, 20);
    store
        .append(vec![late.clone(), alone.clone()], vec![])
        .unwrap();
    assert_eq!(
        joins_of(&store, "flows").await,
        [unjoined(&late), unjoined(&alone)]
    );
    // In memory.
    store_corrections(&store, vec![correction(&late, Some("s-1"), 100)]);
    let expected = [joined(&late, "s-1"), unjoined(&alone)];
    assert_eq!(joins_of(&store, "flows").await, expected);
    // In Parquet, in the hour of the corrected row.
    store.flush().unwrap();
    let corrections = segment::list_local(dir.path(), "session_joins").unwrap();
    assert_eq!(corrections.len(), 1);
    assert_eq!(
        corrections[0].hour,
        segment::list_local(dir.path(), "flows").unwrap()[0].hour
    );
    assert_eq!(joins_of(&store, "flows").await, expected);
    // The view has the table's columns, in order, with the corrected values in place.
    let all = store.query("SELECT * FROM flows").await.unwrap();
    let names: Vec<&str> = all
        .schema
        .fields()
        .iter()
        .map(|field| field.name().as_str())
        .collect();
    assert_eq!(names, Table::Flows.column_names());
    assert_eq!(all.num_rows(), 2);
    // A second flush leaves a second file per table in the hour; the newer correction is in
    // the WAL only when the store restarts.
    let later = unmatched_flow(3, 30);
    store.append(vec![later.clone()], vec![]).unwrap();
    store.flush().unwrap();
    store_corrections(&store, vec![correction(&later, Some("s-2"), 200)]);
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    let expected = [
        joined(&late, "s-1"),
        unjoined(&alone),
        joined(&later, "s-2"),
    ];
    assert_eq!(joins_of(&store, "flows").await, expected);
    store.flush().unwrap();
    assert_eq!(
        segment::list_local(dir.path(), "session_joins")
            .unwrap()
            .len(),
        2
    );
    let report = store.compact(at(86_400)).unwrap();
    assert!(report.files_written >= 2, "{report:?}");
    assert_eq!(
        segment::list_local(dir.path(), "session_joins")
            .unwrap()
            .len()
            + segment::list_local(dir.path(), "flows").unwrap().len(),
        // The replaced files wait for the grace period; the merged ones are new.
        2 + 2 + 2
    );
    assert_eq!(joins_of(&store, "flows").await, expected);
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(
        segment::list_local(dir.path(), "session_joins")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(joins_of(&store, "flows").await, expected);
    assert_eq!(count(&store, "SELECT count(*) FROM session_joins").await, 2);
    // `events` knows nothing of flows, and verify reads the new table like any other.
    assert!(store.verify(false).unwrap().is_healthy());
}

#[tokio::test]
async fn the_newest_correction_wins_whatever_the_arrival_order() {
    let flow = unmatched_flow(1, 10);
    let first = correction(&flow, Some("s-1"), 100);
    let second = correction(&flow, Some("s-2"), 200);
    // Decided at the same instant: the smaller session id, in either order.
    let tie_a = correction(&flow, Some("s-3"), 300);
    let tie_b = correction(&flow, Some("s-4"), 300);
    for (updates, winner) in [
        (vec![first.clone(), second.clone()], "s-2"),
        (vec![second.clone(), first.clone()], "s-2"),
        (vec![tie_b.clone(), tie_a.clone(), first.clone()], "s-3"),
        (vec![tie_a.clone(), second.clone(), tie_b.clone()], "s-3"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&config(dir.path())).unwrap();
        store.append(vec![flow.clone()], vec![]).unwrap();
        // One at a time, with a flush between, so that they are in different places.
        for (update_idx, update) in updates.iter().enumerate() {
            store_corrections(&store, vec![update.clone()]);
            if update_idx == 0 {
                store.flush().unwrap();
            }
        }
        assert_eq!(
            joins_of(&store, "flows").await,
            [joined(&flow, winner)],
            "{updates:?}"
        );
        // Resending them all (a retransmit, a replayed WAL) changes nothing.
        store_corrections(&store, updates.clone());
        store.flush().unwrap();
        store_corrections(&store, updates.clone());
        assert_eq!(joins_of(&store, "flows").await, [joined(&flow, winner)]);
        assert_eq!(count(&store, "SELECT count(*) FROM flows").await, 1);
    }
    // A newer decision may also take the session away again.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store.append(vec![flow.clone()], vec![]).unwrap();
    store_corrections(
        &store,
        vec![correction(&flow, None, 400), second.clone(), first.clone()],
    );
    assert_eq!(joins_of(&store, "flows").await, [unjoined(&flow)]);
}

#[tokio::test]
async fn a_correction_applies_to_its_own_table_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let flow = unmatched_flow(1, 10);
    let request = api_request(1, 10);
    store
        .append(vec![flow.clone(), request.clone()], vec![])
        .unwrap();
    // A correction for the API request, and one that names the flow's id but the other table.
    let mut wrong_table = correction(&flow, Some("s-9"), 100);
    wrong_table.target = JoinTarget::ApiRequests;
    store_corrections(
        &store,
        vec![correction(&request, Some("s-1"), 100), wrong_table],
    );
    for reopen in [false, true] {
        let store = if reopen {
            store.flush().unwrap();
            Store::open_read_only(&config(dir.path())).unwrap()
        } else {
            store.clone()
        };
        assert_eq!(joins_of(&store, "flows").await, [unjoined(&flow)]);
        assert_eq!(
            joins_of(&store, "api_requests").await,
            [joined(&request, "s-1")]
        );
        // With nothing to correct, `flows` stays the plain union (no join to pay for), from
        // memory as from the footers of the segments.
        assert!(
            !plan_of(&store, "SELECT * FROM flows")
                .await
                .contains("HashJoinExec")
        );
        assert!(
            plan_of(&store, "SELECT * FROM api_requests")
                .await
                .contains("HashJoinExec")
        );
    }
}

#[tokio::test]
async fn corrections_of_unknown_events_or_repeated_ones_add_and_change_no_rows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let flows: Vec<Event> = (1..=5)
        .map(|seq| unmatched_flow(seq, seq as i64 * 600))
        .collect();
    store.append(flows.clone(), vec![]).unwrap();
    let mut nowhere = correction(&flows[0], Some("s-1"), 100);
    nowhere.event_id = "gw1/flows:999".to_owned();
    let mut updates = vec![nowhere];
    // The same correction many times, and two for another flow, in memory and in Parquet.
    for decided in [100, 100, 100, 200] {
        updates.push(correction(&flows[1], Some("s-2"), decided));
    }
    store_corrections(&store, updates.clone());
    store.flush().unwrap();
    store_corrections(&store, updates);
    let expected: Vec<_> = flows
        .iter()
        .enumerate()
        .map(|(flow_idx, flow)| {
            if flow_idx == 1 {
                joined(flow, "s-2")
            } else {
                unjoined(flow)
            }
        })
        .collect();
    assert_eq!(joins_of(&store, "flows").await, expected);
    assert_eq!(count(&store, "SELECT count(*) FROM flows").await, 5);
    assert_eq!(
        count(&store, "SELECT count(DISTINCT event_id) FROM flows").await,
        5
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM flows WHERE event_id = 'gw1/flows:999'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM flows WHERE session_id = 's-2'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&store, "SELECT count(*) FROM session_joins").await,
        10
    );
}

#[tokio::test]
async fn a_time_predicate_still_prunes_flows_through_the_correction_join() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    // Three hours of flows, corrections in two of them.
    let flows = [
        unmatched_flow(1, 0),
        unmatched_flow(2, 3_600),
        unmatched_flow(3, 7_200),
    ];
    store.append(flows.to_vec(), vec![]).unwrap();
    store_corrections(
        &store,
        vec![
            correction(&flows[0], Some("s-1"), 8_000),
            correction(&flows[2], Some("s-3"), 8_000),
        ],
    );
    store.flush().unwrap();
    assert_eq!(segment::list_local(dir.path(), "flows").unwrap().len(), 3);
    /// The `flows` files the plan of `sql` opens.
    async fn flow_files(store: &Store, sql: &str) -> usize {
        plan_of(store, sql).await.matches("flows/date=").count()
    }
    let last_hour = format!(
        "SELECT session_id FROM flows WHERE timestamp >= TIMESTAMP '{}'",
        at(7_200)
    );
    assert_eq!(flow_files(&store, &last_hour).await, 1);
    assert_eq!(
        store.query_json(&last_hour).await.unwrap(),
        [json!({"session_id": "s-3"}).as_object().unwrap().clone()]
    );
    let middle_hour = format!(
        "SELECT count(*) FROM flows WHERE timestamp BETWEEN TIMESTAMP '{}' AND TIMESTAMP '{}' AND session_id IS NULL",
        at(3_600),
        at(3_700)
    );
    assert_eq!(flow_files(&store, &middle_hour).await, 1);
    assert_eq!(count(&store, &middle_hour).await, 1);
    let all = "SELECT count(*) FROM flows WHERE session_id IS NOT NULL";
    assert_eq!(flow_files(&store, all).await, 3);
    assert_eq!(count(&store, all).await, 2);
    // The corrections are the build side of the join; the flows stream past them.
    let plan = plan_of(&store, &last_hour).await;
    assert!(plan.contains("HashJoinExec"), "{plan}");
}

#[tokio::test]
async fn wal_records_from_before_corrections_still_replay() {
    let dir = tempfile::tempdir().unwrap();
    let flow = unmatched_flow(1, 10);
    // A record as written before `session_joins` existed.
    let old_record = json!({ "events": [flow], "sessions": [] });
    let payload = serde_json::to_vec(&old_record).unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    std::fs::write(dir.path().join("wal").join(format!("{:020}.wal", 1)), bytes).unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(joins_of(&store, "flows").await, [unjoined(&flow)]);
    // And a record without corrections is still written without the field.
    store.append(vec![unmatched_flow(2, 20)], vec![]).unwrap();
    let (records, n_corrupt) = crate::wal::read_all(&dir.path().join("wal")).unwrap();
    assert_eq!((records.len(), n_corrupt), (2, 0));
    let encoded = serde_json::to_string(&records[1]).unwrap();
    assert!(!encoded.contains("session_joins"), "{encoded}");
    store_corrections(&store, vec![correction(&flow, Some("s-1"), 100)]);
    drop(store);
    let (records, _) = crate::wal::read_all(&dir.path().join("wal")).unwrap();
    assert_eq!(records[2].session_joins.len(), 1);
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(joins_of(&store, "flows").await[0], joined(&flow, "s-1"));
}

#[tokio::test]
async fn corrections_expire_with_their_hour_under_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = config(dir.path());
    settings.retention.insert("session_joins".to_owned(), 1);
    let store = Store::open(&settings).unwrap();
    let flow = unmatched_flow(1, 10);
    store.append(vec![flow.clone()], vec![]).unwrap();
    store_corrections(&store, vec![correction(&flow, Some("s-1"), 100)]);
    store.flush().unwrap();
    assert_eq!(joins_of(&store, "flows").await, [joined(&flow, "s-1")]);
    let deleted = store.apply_retention(at(3 * 86_400)).unwrap();
    assert_eq!(
        deleted
            .iter()
            .map(|partition| (partition.table, partition.rows))
            .collect::<Vec<_>>(),
        [(Table::SessionJoins, 1)]
    );
    assert_eq!(joins_of(&store, "flows").await, [unjoined(&flow)]);
    assert!(
        !plan_of(&store, "SELECT * FROM flows")
            .await
            .contains("HashJoinExec")
    );
}

#[test]
fn the_tables_a_segment_corrects_come_from_its_statistics() {
    let update = |target| SessionJoinUpdate {
        target,
        event_id: "x:1".to_owned(),
        timestamp: at(0),
        session_id: None,
        user_name: None,
        join: SessionJoin::Unmatched,
        decided: at(1),
    };
    let dir = tempfile::tempdir().unwrap();
    let storage =
        crate::storage::Storage::open(dir.path(), None, &Default::default(), true).unwrap();
    // The tables the rows name (exact), and those the footer's statistics allow (a range:
    // `events` lies between `api_requests` and `flows`, so a query of `events` then takes
    // the corrections of such a segment into account too; they change none of its rows).
    let all = vec![
        Table::Flows,
        Table::ApiRequests,
        Table::Events,
        Table::AuthEvents,
    ];
    for (targets, expected, in_footer) in [
        (
            vec![JoinTarget::Flows],
            vec![Table::Flows],
            vec![Table::Flows],
        ),
        (
            vec![JoinTarget::ApiRequests],
            vec![Table::ApiRequests],
            vec![Table::ApiRequests],
        ),
        (
            vec![JoinTarget::ApiRequests, JoinTarget::Flows],
            vec![Table::Flows, Table::ApiRequests],
            all.clone(),
        ),
        // One correction of a login serves both tables that hold it.
        (
            vec![JoinTarget::Events],
            vec![Table::Events, Table::AuthEvents],
            vec![Table::Events, Table::AuthEvents],
        ),
    ] {
        let updates: Vec<SessionJoinUpdate> = targets.into_iter().map(update).collect();
        let batch =
            crate::schema::session_joins_batch(&updates.iter().collect::<Vec<_>>()).unwrap();
        let expected: BTreeSet<Table> = expected.into_iter().collect();
        assert_eq!(tables_in_batch(&batch), expected);
        let key = segment::write(
            &storage,
            "session_joins/date=2026-11-18/hour=11",
            "part-test",
            &batch,
            Table::SessionJoins.sort_key(),
            None,
            &[],
        )
        .unwrap();
        let footer = segment::read_footer(&storage, &key).unwrap();
        assert_eq!(footer.join_tables, Some(in_footer.into_iter().collect()));
        storage.delete(&key).unwrap();
    }
    let flows = segment::write(
        &storage,
        "flows/date=2026-11-18/hour=11",
        "part-test",
        &Table::Flows.events_batch(&[&unmatched_flow(1, 0)]).unwrap(),
        Table::Flows.sort_key(),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(
        segment::read_footer(&storage, &flows).unwrap().join_tables,
        None
    );
}

#[tokio::test]
async fn a_restart_reads_back_the_leases_and_the_still_unmatched_events_of_the_windows() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let session = |id: &str, vip: &str, start: i64, end: Option<i64>| {
        let mut session = crate::tests::session(
            id,
            1,
            end.map_or(SessionState::Active, |_| SessionState::Closed),
        );
        session.virtual_ip = vip.parse().ok();
        session.start = at(start);
        session.end = end.map(at);
        session.updated = at(end.unwrap_or(start));
        session
    };
    let (old_flow, flow, joined_later, request) = (
        unmatched_flow(1, 0),
        unmatched_flow(2, 9_000),
        unmatched_flow(3, 9_100),
        api_request(4, 9_200),
    );
    store
        .append(
            vec![
                old_flow,
                flow.clone(),
                joined_later.clone(),
                request.clone(),
            ],
            vec![
                // Ended before the lease retention (counted back from the newest session).
                session("s-gone", "10.99.0.1", 0, Some(10)),
                session("s-ended", "10.99.0.2", 5_000, Some(8_000)),
                session("s-open", "10.99.0.3", 10_000, None),
            ],
        )
        .unwrap();
    store.flush().unwrap();
    store_corrections(
        &store,
        vec![correction(&joined_later, Some("s-open"), 9_300)],
    );

    let restart = store
        .join_restart(Duration::from_secs(3_600), Duration::from_secs(3_600))
        .await
        .unwrap();
    let mut leases: Vec<(String, String, Option<i64>)> = restart
        .leases
        .iter()
        .map(|lease| {
            (
                lease.session_id.clone(),
                lease.virtual_ip.to_string(),
                lease.end.map(|end| end.as_second() - BASE),
            )
        })
        .collect();
    leases.sort();
    assert_eq!(
        leases,
        [
            ("s-ended".to_owned(), "10.99.0.2".to_owned(), Some(8_000)),
            ("s-open".to_owned(), "10.99.0.3".to_owned(), None),
        ]
    );
    let mut unmatched: Vec<(JoinTarget, String, i64)> = restart
        .unmatched
        .iter()
        .map(|stored| {
            (
                stored.target,
                stored.event_id.clone(),
                stored.at.as_second() - BASE,
            )
        })
        .collect();
    unmatched.sort_by_key(|row| row.1.clone());
    // The old flow is past the late-join window; the corrected one is not unmatched.
    assert_eq!(
        unmatched,
        [
            (JoinTarget::Flows, flow.id.to_string(), 9_000),
            (JoinTarget::ApiRequests, request.id.to_string(), 9_200),
        ]
    );
    assert!(
        restart
            .unmatched
            .iter()
            .all(|stored| stored.addresses[0] == "10.99.0.7".parse().ok())
    );
}

#[tokio::test]
async fn an_empty_store_restarts_with_nothing_to_take_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let restart = store
        .join_restart(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(restart, model::JoinRestart::default());
}

/// The sessionizer stamped two logins with a login it was assembling; one turned out to be
/// part of another session, the other never became one. `events` and `auth_events` show the
/// corrected `session_id` (the rest of each row as stored), in memory, after a flush, after
/// a reopen, whatever order the corrections came in.
#[tokio::test]
async fn a_login_stamped_with_a_login_that_went_is_corrected_in_events_and_auth_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let mut merged = auth_event(1, "alice", model::Outcome::Success);
    merged.session_id = Some("s-gone".to_owned());
    let mut abandoned = auth_event(2, "bob", model::Outcome::Success);
    abandoned.session_id = Some("s-never".to_owned());
    let mut kept = auth_event(3, "carol", model::Outcome::Success);
    kept.session_id = Some("s-kept".to_owned());
    store
        .append(
            vec![merged.clone(), abandoned.clone(), kept.clone()],
            vec![],
        )
        .unwrap();
    let fix = |event: &Event, session: Option<&str>, decided: i64| SessionJoinUpdate {
        target: JoinTarget::Events,
        event_id: event.id.to_string(),
        timestamp: event.timestamp,
        session_id: session.map(str::to_owned),
        user_name: None,
        join: if session.is_some() {
            SessionJoin::Late
        } else {
            SessionJoin::Unmatched
        },
        decided: at(decided),
    };
    // The newest decision wins: `merged` went to s-other first, then to s-final.
    store_corrections(
        &store,
        vec![
            fix(&merged, Some("s-final"), 30),
            fix(&abandoned, None, 10),
            fix(&merged, Some("s-other"), 20),
        ],
    );
    let expected = json!([
        {"event_id": merged.id.to_string(), "session_id": "s-final", "user_name": "alice"},
        // No session: JSON rows leave the null out.
        {"event_id": abandoned.id.to_string(), "user_name": "bob"},
        {"event_id": kept.id.to_string(), "session_id": "s-kept", "user_name": "carol"},
    ]);
    let rows = |store: &Store, table: &'static str| {
        let store = store.clone();
        async move {
            let rows = store
                .query_json(&format!(
                    "SELECT event_id, session_id, user_name FROM {table} ORDER BY event_id"
                ))
                .await
                .unwrap();
            Value::Array(rows.into_iter().map(Value::Object).collect())
        }
    };
    for table in ["events", "auth_events"] {
        assert_eq!(rows(&store, table).await, expected, "{table} in memory");
    }
    store.flush().unwrap();
    for table in ["events", "auth_events"] {
        assert_eq!(rows(&store, table).await, expected, "{table} after a flush");
    }
    // Flows stay a plain table (no correction of theirs).
    assert!(
        !plan_of(&store, "SELECT * FROM flows")
            .await
            .contains("HashJoin")
    );
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    for table in ["events", "auth_events"] {
        assert_eq!(
            rows(&store, table).await,
            expected,
            "{table} after a reopen"
        );
    }
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM events WHERE event_original LIKE 'line %'"
        )
        .await,
        3
    );
}
