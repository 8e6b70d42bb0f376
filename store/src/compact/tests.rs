use model::Outcome;

use crate::tests::{auth_event, config, count};
use crate::{SearchOptions, Store, segment};

fn event_at(seq: u64, at: jiff::Timestamp) -> model::Event {
    let mut event = auth_event(seq, "alice", Outcome::Success);
    event.timestamp = at;
    event
}

fn files(dir: &std::path::Path, table: &str) -> Vec<std::path::PathBuf> {
    segment::list_local(dir, table)
        .unwrap()
        .into_iter()
        .map(|found| found.path)
        .collect()
}

#[tokio::test]
async fn settled_hours_become_one_file_and_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let two_hours_ago = now - jiff::SignedDuration::from_hours(2);
    let store = Store::open(&config(dir.path())).unwrap();
    // Five flushes into the same settled hour, one into the current hour.
    for seq in 1..=5 {
        store
            .append(vec![event_at(seq, two_hours_ago)], vec![])
            .unwrap();
        store.flush().unwrap();
    }
    store.append(vec![event_at(6, now)], vec![]).unwrap();
    store.flush().unwrap();
    store.append(vec![event_at(7, now)], vec![]).unwrap();
    store.flush().unwrap();
    assert_eq!(files(dir.path(), "auth_events").len(), 7);

    let report = store.compact(now).unwrap();
    // events and auth_events: 5 files each into 1; the current hour waits.
    assert_eq!(
        (report.files_merged, report.files_written, report.rows),
        (10, 2, 10)
    );
    assert_eq!(count(&store, "select count(*) from auth_events").await, 7);
    assert_eq!(
        count(&store, "select count(distinct event_id) from events").await,
        7
    );
    assert_eq!(
        store.search("", &SearchOptions::default()).unwrap().total,
        7
    );
    // Resent events are still known: the merged footer kept the watermarks.
    let resent = store
        .append(vec![event_at(3, two_hours_ago)], vec![])
        .unwrap();
    assert_eq!(resent.duplicates, 1);
    // Nothing left to do.
    assert_eq!(store.compact(now).unwrap().files_written, 0);

    // The replaced files stay on disk during their grace period (a query may be reading
    // them); a restart ignores and removes them.
    assert_eq!(files(dir.path(), "auth_events").len(), 8);
    drop(store);
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(files(dir.path(), "auth_events").len(), 3);
    assert_eq!(count(&store, "select count(*) from auth_events").await, 7);
    assert_eq!(
        store.search("", &SearchOptions::default()).unwrap().total,
        7
    );
    let report = store.verify(false).unwrap();
    assert!(report.is_healthy(), "{report:?}");
}

#[tokio::test]
async fn a_busy_current_hour_is_compacted_too() {
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let store = Store::open(&config(dir.path())).unwrap();
    for seq in 1..=32 {
        store.append(vec![event_at(seq, now)], vec![]).unwrap();
        store.flush().unwrap();
    }
    let report = store.compact(now).unwrap();
    assert_eq!(report.files_written, 2);
    assert_eq!(count(&store, "select count(*) from events").await, 32);
    let merged = files(dir.path(), "events")
        .into_iter()
        .filter(|path| path.to_string_lossy().contains("-compacted-"))
        .count();
    assert_eq!(merged, 1);
}
