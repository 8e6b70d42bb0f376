use model::{ErrorKind, Event, Outcome};

use crate::tests::{auth_event, config};
use crate::{SearchOptions, Store};

/// An auth event of `user` from `ip` whose raw line is `line`, `seq` seconds after the base.
fn event(seq: u64, user: &str, ip: &str, outcome: Outcome, line: &str) -> Event {
    let mut event = auth_event(seq, user, outcome);
    event.original = line.to_owned();
    if let model::EventBody::Auth(auth) = &mut event.body {
        auth.peer.client = model::Endpoint::new(ip.parse().unwrap(), Some(4500));
    }
    event
}

fn sample() -> Vec<Event> {
    vec![
        event(
            1,
            "alice@corp.example",
            "192.0.2.11",
            Outcome::Success,
            "authentication of 'alice@corp.example' with pre-shared key successful",
        ),
        event(
            2,
            "bob",
            "192.0.2.12",
            Outcome::Failure,
            "tried 1 shared key for 'gw.vpn.test' - 'bob', but MAC mismatched",
        ),
        event(
            3_700,
            "Carol",
            "2001:db8::7",
            Outcome::Failure,
            "RADIUS authentication of 'Carol' failed",
        ),
        event(
            3_800,
            "alice@corp.example",
            "198.51.100.23",
            Outcome::Success,
            "authentication of 'alice@corp.example' with EAP successful \u{1b}[31m",
        ),
    ]
}

fn users(store: &Store, query: &str) -> Vec<String> {
    users_with(store, query, &SearchOptions::default())
}

fn users_with(store: &Store, query: &str, options: &SearchOptions) -> Vec<String> {
    store
        .search(query, options)
        .unwrap_or_else(|error| panic!("{query}: {error}"))
        .hits
        .into_iter()
        .map(|hit| hit.user_name.unwrap_or_default())
        .collect()
}

#[test]
fn field_terms_phrases_booleans_ranges_and_time_windows() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store.append(sample(), vec![]).unwrap();
    // Not flushed yet: not searchable.
    assert_eq!(
        store
            .search("alice", &SearchOptions::default())
            .unwrap()
            .total,
        0
    );
    store.flush().unwrap();

    // Newest first.
    assert_eq!(
        users(&store, "authentication"),
        ["alice@corp.example", "Carol", "alice@corp.example"]
    );
    assert_eq!(
        users(&store, "user:alice@corp.example"),
        ["alice@corp.example", "alice@corp.example"]
    );
    // Keyword fields match whole values in any case.
    assert_eq!(users(&store, "user:carol"), ["Carol"]);
    assert_eq!(users(&store, "user:ali"), Vec::<String>::new());
    assert_eq!(users(&store, "raw:\"MAC mismatched\""), ["bob"]);
    assert_eq!(
        users(&store, "raw:\"mismatched MAC\""),
        Vec::<String>::new()
    );
    // Bare words search the line, identities and the reason (Carol's reason says it too).
    assert_eq!(users(&store, "\"MAC mismatched\""), ["Carol", "bob"]);
    assert_eq!(users(&store, "outcome:failure"), ["Carol", "bob"]);
    assert_eq!(users(&store, "outcome:failure AND NOT radius"), ["bob"]);
    assert_eq!(users(&store, "outcome:failure -radius"), ["bob"]);
    assert_eq!(users(&store, "NOT authentication"), ["bob"]);
    assert_eq!(
        users(&store, "radius OR NOT outcome:failure"),
        ["alice@corp.example", "Carol", "alice@corp.example"]
    );
    assert_eq!(users(&store, "radius OR raw:mismatched"), ["Carol", "bob"]);
    assert_eq!(users(&store, "ip:192.0.2.12"), ["bob"]);
    assert_eq!(
        users(&store, "ip:[192.0.2.0 TO 192.0.2.255]"),
        ["bob", "alice@corp.example"]
    );
    assert_eq!(users(&store, "ip:\"2001:db8::7\""), ["Carol"]);
    assert_eq!(users(&store, "dataset:STRONGSWAN.CHARON").len(), 4);
    let first = store
        .search("id:\"gw1/charon:2\"", &SearchOptions::default())
        .unwrap();
    assert_eq!(first.total, 1);
    assert_eq!(first.hits[0].ips, ["192.0.2.12"]);
    assert_eq!(
        first.hits[0].original.as_deref(),
        Some("tried 1 shared key for 'gw.vpn.test' - 'bob', but MAC mismatched")
    );
    // Time: in the query, or as a window.
    let base = jiff::Timestamp::from_second(1_795_000_000).unwrap();
    let at = |seconds: i64| base + jiff::SignedDuration::from_secs(seconds);
    assert_eq!(
        users(
            &store,
            &format!("timestamp:[{} TO {}]", at(3_000), at(4_000))
        ),
        ["alice@corp.example", "Carol"]
    );
    let window = SearchOptions {
        from: Some(at(2)),
        to: Some(at(3_800)),
        limit: None,
    };
    assert_eq!(users_with(&store, "", &window), ["Carol", "bob"]);
    let limited = SearchOptions {
        limit: Some(1),
        ..SearchOptions::default()
    };
    let result = store.search("authentication", &limited).unwrap();
    assert_eq!((result.total, result.hits.len()), (3, 1));
}

#[test]
fn mistakes_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store.append(sample(), vec![]).unwrap();
    store.flush().unwrap();
    for (query, expected) in [
        ("nosuchfield:x", "nosuchfield"),
        ("\"unbalanced", "cannot read the search"),
        ("ip:not-an-address", "cannot read the search"),
        ("timestamp:[yesterday TO today]", "cannot read the search"),
        ("a AND (b", "cannot read the search"),
        ("\u{1b}[31mx\r\nfield:y", "\\u{1b}"),
    ] {
        let error = store.search(query, &SearchOptions::default()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Invalid, "{query}");
        assert!(error.to_string().contains(expected), "{query}: {error}");
        assert!(!error.to_string().contains('\u{1b}'), "{query}: {error}");
    }
    for limit in [0, super::MAX_LIMIT + 1] {
        let options = SearchOptions {
            limit: Some(limit),
            ..SearchOptions::default()
        };
        assert_eq!(
            store.search("x", &options).unwrap_err().kind(),
            ErrorKind::Invalid
        );
    }
    // Times tantivy cannot hold (beyond 2262, before 1678) are the ends of its range, never
    // an overflow: as options and inside the query.
    for (from, to) in [
        ("2480-06-20T08:29:49Z", None),
        ("1000-01-01T00:00:00Z", Some("9999-12-30T00:00:00Z")),
    ] {
        let options = SearchOptions {
            from: Some(from.parse().unwrap()),
            to: to.map(|to| to.parse().unwrap()),
            ..SearchOptions::default()
        };
        assert!(store.search("alice", &options).is_ok(), "{from}");
    }
    let far = store.search(
        "timestamp:[2480-06-20T08:29:49Z TO *]",
        &SearchOptions::default(),
    );
    assert!(far.is_ok() || far.unwrap_err().kind() == ErrorKind::Invalid);
    // Hostile but valid: a huge query of words is just a query.
    let huge = "alice ".repeat(10_000);
    assert!(store.search(&huge, &SearchOptions::default()).is_ok());
}

#[test]
fn the_index_catches_up_after_a_crash_and_rebuilds_when_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    store.append(sample(), vec![]).unwrap();
    store.flush().unwrap();
    drop(store);
    // As if the process died after writing Parquet and before committing the index.
    std::fs::remove_dir_all(dir.path().join("index")).unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(store.stats().unwrap().indexed_events, 4);
    assert_eq!(users(&store, "raw:mismatched"), ["bob"]);
    // Indexing a segment again replaces its documents: no duplicates.
    assert_eq!(store.rebuild_index().unwrap(), 4);
    assert_eq!(store.rebuild_index().unwrap(), 4);
    assert_eq!(
        store.search("", &SearchOptions::default()).unwrap().total,
        4
    );
    drop(store);
    // An index whose files are garbage is moved aside and rebuilt from Parquet.
    std::fs::write(dir.path().join("index/meta.json"), b"{ not json \x1b[2J").unwrap();
    let store = Store::open(&config(dir.path())).unwrap();
    let stats = store.stats().unwrap();
    assert!(stats.quarantined_index);
    assert_eq!(stats.indexed_events, 4);
    assert_eq!(users(&store, "user:bob"), ["bob"]);
    let quarantined = std::fs::read_dir(dir.path().join("quarantine"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("index-")
        })
        .count();
    assert_eq!(quarantined, 1);
}

#[test]
fn a_reader_in_another_process_sees_what_the_writer_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(&config(dir.path())).unwrap();
    writer.append(sample()[..2].to_vec(), vec![]).unwrap();
    writer.flush().unwrap();
    let reader = Store::open_read_only(&config(dir.path())).unwrap();
    assert_eq!(users(&reader, "raw:mismatched"), ["bob"]);
    writer.append(sample()[2..].to_vec(), vec![]).unwrap();
    writer.flush().unwrap();
    assert_eq!(users(&reader, "radius"), ["Carol"]);
    assert!(reader.rebuild_index().is_err());
}
