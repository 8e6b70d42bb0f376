//! The storage root on a real S3-compatible server (moto's `moto_server`, on loopback):
//! segments go to the bucket, the WAL and index stay local, and everything the store does
//! with files (flush, reopen and dedup, read-only readers, compaction, retention, verify and
//! quarantine, an outage of the object store) works the same there.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use model::{
    Auth, AuthFailure, AuthMethod, Endpoint, ErrorKind, Event, EventBody, EventId, FailureCode,
    Identities, Observer, Outcome, Peer,
};
use store::{Config, SearchOptions, Store};
use testbed::s3::{ACCESS_KEY_ID, REGION, S3Server, SECRET_ACCESS_KEY};

const BUCKET: &str = "tunnelwatch-test";
/// 2026-11-18T00:00:00Z: rows go to hours from there.
const BASE: i64 = 1_794_960_000;

fn auth_event(seq: u64, user: &str) -> Event {
    let failure = seq.is_multiple_of(3);
    Event {
        id: EventId::new("gw-s3/charon", seq, 0),
        // Two rows per hour.
        timestamp: jiff::Timestamp::from_second(BASE + (seq as i64 / 2) * 3600).unwrap(),
        dataset: "strongswan.charon".to_owned(),
        observer: Observer {
            hostname: Some("gw-s3".to_owned()),
            product: Some("strongswan".to_owned()),
        },
        original: format!("{user} line {seq}"),
        session_id: None,
        source_geo: None,
        body: EventBody::Auth(Auth {
            peer: Peer {
                connection: Some("rw".to_owned()),
                ike_sa_id: Some(seq),
                client: Endpoint::new("192.0.2.11".parse().unwrap(), Some(4500)),
                server: Endpoint::default(),
                identities: Identities {
                    ike_id: Some(user.to_owned()),
                    ..Identities::default()
                },
            },
            method: AuthMethod::Psk,
            outcome: if failure {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            failure: failure.then(|| AuthFailure {
                code: FailureCode::PskMismatch,
                reason: "MAC mismatched".to_owned(),
            }),
        }),
    }
}

fn options(server: &S3Server, with_secrets: bool) -> BTreeMap<String, String> {
    let mut options = BTreeMap::from([
        ("aws_endpoint".to_owned(), server.endpoint()),
        ("aws_allow_http".to_owned(), "true".to_owned()),
        ("aws_region".to_owned(), REGION.to_owned()),
    ]);
    if with_secrets {
        options.insert("aws_access_key_id".to_owned(), ACCESS_KEY_ID.to_owned());
        options.insert(
            "aws_secret_access_key".to_owned(),
            SECRET_ACCESS_KEY.to_owned(),
        );
    }
    options
}

fn config(data: &Path, server: &S3Server) -> Config {
    let mut config = Config::for_dir(data);
    config.root = Some(format!("s3://{BUCKET}/prod"));
    config.root_options = options(server, true);
    config.retention = BTreeMap::from([("auth_events".to_owned(), 30)]);
    config
}

fn start() -> S3Server {
    let server = S3Server::start().unwrap_or_else(|error| panic!("{error}"));
    server.create_bucket(BUCKET).unwrap();
    server
}

fn parquet_keys(server: &S3Server, table: &str) -> Vec<String> {
    server
        .list(BUCKET)
        .unwrap()
        .into_iter()
        .filter(|key| key.starts_with(&format!("prod/{table}/")) && key.ends_with(".parquet"))
        .collect()
}

/// Overwrites an object behind the store's back (a signed PUT with the test's credentials).
async fn damage(server: &S3Server, key: &str) {
    use object_store::ObjectStoreExt;
    let mut builder = object_store::aws::AmazonS3Builder::new().with_bucket_name(BUCKET);
    for (key, value) in options(server, true) {
        builder = builder.with_config(key.parse().unwrap(), value);
    }
    builder
        .build()
        .unwrap()
        .put(
            &object_store::path::Path::from(key),
            object_store::PutPayload::from_static(b"not parquet"),
        )
        .await
        .unwrap();
}

async fn count(store: &Store, sql: &str) -> i64 {
    let rows = store.query_json(sql).await.unwrap();
    rows[0].values().next().unwrap().as_i64().unwrap()
}

fn local_parquet_files(dir: &Path) -> usize {
    fn walk(dir: &Path, n: &mut usize) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, n);
            } else if path.extension().is_some_and(|ext| ext == "parquet") {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(dir, &mut n);
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_live_in_the_bucket_and_everything_works_there() {
    let server = start();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let config = config(&data, &server);

    // Flush to the bucket: partitioned keys under the prefix, nothing local but WAL/index.
    let store = Store::open(&config).unwrap();
    let first: Vec<Event> = (1..=8).map(|seq| auth_event(seq, "alice")).collect();
    store.append(first.clone(), vec![]).unwrap();
    tokio::task::block_in_place(|| store.flush()).unwrap();
    let keys = parquet_keys(&server, "auth_events");
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert!(
        keys.iter()
            .any(|key| key.starts_with("prod/auth_events/date=2026-11-18/hour=01/part-")),
        "{keys:?}"
    );
    assert_eq!(local_parquet_files(&data), 0);
    assert_eq!(count(&store, "select count(*) from auth_events").await, 8);
    // Pruning works on object storage too: an hour's query scans one file.
    let plan = store
        .query(
            "explain select count(*) from auth_events where timestamp >= timestamp '2026-11-18T01:00:00Z' and timestamp < timestamp '2026-11-18T02:00:00Z'",
        )
        .await
        .unwrap()
        .render(store::OutputFormat::Csv)
        .unwrap();
    assert_eq!(plan.matches(".parquet").count(), 1, "{plan}");
    assert!(
        plan.contains("prod/auth_events/date=2026-11-18/hour=01/"),
        "{plan}"
    );
    let hits =
        tokio::task::block_in_place(|| store.search("user:alice", &SearchOptions::default()))
            .unwrap();
    assert_eq!(hits.total, 8);
    // The data directory records the root, never the secrets.
    let record = std::fs::read_to_string(data.join("state/storage.json")).unwrap();
    assert!(record.contains("s3://tunnelwatch-test/prod"), "{record}");
    assert!(
        !record.contains(SECRET_ACCESS_KEY) && !record.contains(ACCESS_KEY_ID),
        "{record}"
    );

    // A reader without the root configured finds it (credentials it must bring itself).
    let mut reader_config = Config::for_dir(&data);
    reader_config.root_options = BTreeMap::from([
        ("aws_access_key_id".to_owned(), ACCESS_KEY_ID.to_owned()),
        (
            "aws_secret_access_key".to_owned(),
            SECRET_ACCESS_KEY.to_owned(),
        ),
    ]);
    let reader = Store::open_read_only(&reader_config).unwrap();
    assert_eq!(count(&reader, "select count(*) from auth_events").await, 8);
    drop(reader);

    // Reopen: watermarks come from the footers in the bucket, so resends are duplicates.
    drop(store);
    let store = Store::open(&config).unwrap();
    let receipt = store.append(first, vec![]).unwrap();
    assert_eq!((receipt.accepted, receipt.duplicates), (0, 8));
    assert_eq!(count(&store, "select count(*) from auth_events").await, 8);

    // A second flush into the same hours, then compaction merges each hour's two files.
    store
        .append((9..=10).map(|seq| auth_event(seq, "bob")).collect(), vec![])
        .unwrap();
    store
        .append(
            vec![{
                let mut late = auth_event(11, "carol");
                late.timestamp = jiff::Timestamp::from_second(BASE + 3600 + 60).unwrap();
                late
            }],
            vec![],
        )
        .unwrap();
    tokio::task::block_in_place(|| store.flush()).unwrap();
    let far_future = jiff::Timestamp::from_second(BASE + 24 * 3600).unwrap();
    let compacted = tokio::task::block_in_place(|| store.compact(far_future)).unwrap();
    // Hours 01 and 04 of `auth_events` and of `events` (which has every event too).
    assert_eq!(
        (compacted.files_merged, compacted.files_written),
        (8, 4),
        "{compacted:?}"
    );
    assert_eq!(count(&store, "select count(*) from auth_events").await, 11);
    // The replaced files go at the next open (no query can be reading them then).
    drop(store);
    let store = Store::open(&config).unwrap();
    assert_eq!(parquet_keys(&server, "auth_events").len(), 6);
    assert_eq!(count(&store, "select count(*) from auth_events").await, 11);

    // Verify reads every object back; a damaged one is quarantined locally and deleted.
    let report = tokio::task::block_in_place(|| store.verify(false)).unwrap();
    assert!(report.is_healthy(), "{report:?}");
    let victim = parquet_keys(&server, "auth_events")
        .into_iter()
        .find(|key| key.contains("hour=03"))
        .unwrap();
    damage(&server, &victim).await;
    let report = tokio::task::block_in_place(|| store.verify(true)).unwrap();
    assert_eq!(report.corrupt_segments.len(), 1, "{report:?}");
    assert!(
        report.corrupt_segments[0]
            .to_string_lossy()
            .starts_with("s3://tunnelwatch-test/prod/auth_events/date=2026-11-18/hour=03/"),
        "{report:?}"
    );
    assert!(!parquet_keys(&server, "auth_events").contains(&victim));
    let quarantined: Vec<_> = std::fs::read_dir(data.join("quarantine"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert_eq!(
        std::fs::read(data.join("quarantine").join(&quarantined[0])).unwrap(),
        b"not parquet"
    );
    assert_eq!(count(&store, "select count(*) from auth_events").await, 9);

    // Retention deletes whole hours from the bucket, audited (audit_log lives there too).
    let later = jiff::Timestamp::from_second(BASE + 30 * 24 * 3600 + 2 * 3600 + 1).unwrap();
    let deleted = tokio::task::block_in_place(|| store.apply_retention(later)).unwrap();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert_eq!(count(&store, "select count(*) from auth_events").await, 5);
    assert!(
        parquet_keys(&server, "auth_events")
            .iter()
            .all(|key| !key.contains("hour=00/") && !key.contains("hour=01/"))
    );
    tokio::task::block_in_place(|| store.flush()).unwrap();
    assert!(!parquet_keys(&server, "audit_log").is_empty());
    assert_eq!(
        count(
            &store,
            "select count(*) from audit_log where event_action = 'retention.delete'"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_fails_flushes_without_losing_rows() {
    let server = start();
    let port = server.port();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let config = config(&data, &server);
    let store = Store::open(&config).unwrap();
    server.stop();

    // Appends only need the local WAL: they go on. Flushes fail, clearly, and keep the rows.
    store
        .append((1..=4).map(|seq| auth_event(seq, "dave")).collect(), vec![])
        .unwrap();
    let error = tokio::task::block_in_place(|| store.flush()).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let message = format!("{error}");
    assert!(
        message.starts_with("failed to write s3://tunnelwatch-test/prod/"),
        "{message}"
    );
    assert_eq!(count(&store, "select count(*) from auth_events").await, 4);

    // The server is back (an empty one, on the same port): the next flush writes everything.
    let server = S3Server::start_on(port).unwrap();
    server.create_bucket(BUCKET).unwrap();
    tokio::task::block_in_place(|| store.flush()).unwrap();
    assert_eq!(parquet_keys(&server, "auth_events").len(), 3);
    drop(store);
    let store = Store::open(&config).unwrap();
    assert_eq!(count(&store, "select count(*) from auth_events").await, 4);
    assert_eq!(store.stats().unwrap().buffered_events, 0);
}

#[test]
fn a_data_directory_is_not_reopened_with_another_root() {
    let server = start();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    drop(Store::open(&config(&data, &server)).unwrap());
    let mut other = config(&data, &server);
    other.root = Some(format!("s3://{BUCKET}/elsewhere"));
    let error = Store::open(&other).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Invalid);
    assert!(
        error
            .to_string()
            .contains("keeps its tables at s3://tunnelwatch-test/prod"),
        "{error}"
    );
}
