use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use model::{EventBody, EventId, Observer, PipelineError, RejectReason};

use super::*;
use crate::Error;

fn event(seq: u64) -> Event {
    Event {
        id: EventId::new("gw/test", seq, 0),
        timestamp: jiff::Timestamp::UNIX_EPOCH,
        dataset: "test".to_owned(),
        observer: Observer::default(),
        original: format!("line {seq}"),
        session_id: None,
        source_geo: None,
        body: EventBody::PipelineError(PipelineError {
            reason: RejectReason::Malformed,
            message: String::new(),
            original_len: 6,
        }),
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|event| event.id.seq).collect()
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("seg-{segment:020}.log"))
}

#[test]
fn append_peek_commit_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    assert!(spool.peek(10, usize::MAX).unwrap().is_none());
    spool.append(&[event(0), event(1)]).unwrap();
    spool.append(&[event(2)]).unwrap();
    let peeked = spool.peek(2, usize::MAX).unwrap().unwrap();
    assert_eq!(seqs(&peeked.events), [0, 1]);
    // Not committed: a reopen sees everything again.
    drop(spool);
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    let peeked = spool.peek(100, usize::MAX).unwrap().unwrap();
    assert_eq!(seqs(&peeked.events), [0, 1, 2]);
    let first = spool.peek(1, usize::MAX).unwrap().unwrap();
    spool.commit(first.next).unwrap();
    drop(spool);
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(
        seqs(&spool.peek(100, usize::MAX).unwrap().unwrap().events),
        [2]
    );
    let rest = spool.peek(100, usize::MAX).unwrap().unwrap();
    spool.commit(rest.next).unwrap();
    assert!(spool.peek(100, usize::MAX).unwrap().is_none());
    assert_eq!(spool.used_bytes(), 0);
}

#[test]
fn a_torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    spool.append(&[event(0)]).unwrap();
    drop(spool);
    let segment = segment_path(dir.path(), 1);
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    file.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap(); // header of a record that never finished
    drop(file);
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    spool.append(&[event(1)]).unwrap();
    assert_eq!(
        seqs(&spool.peek(100, usize::MAX).unwrap().unwrap().events),
        [0, 1]
    );
}

#[test]
fn a_full_spool_refuses_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 300).unwrap();
    spool.append(&[event(0)]).unwrap();
    let error = spool.append(&[event(1), event(2), event(3)]).unwrap_err();
    assert!(matches!(error, Error::SpoolFull { .. }), "{error}");
    assert!(
        error.to_string().starts_with("the spool is full ("),
        "{error}"
    );
    assert_eq!(
        seqs(&spool.peek(100, usize::MAX).unwrap().unwrap().events),
        [0]
    );
    let all = spool.peek(100, usize::MAX).unwrap().unwrap();
    spool.commit(all.next).unwrap();
    spool.append(&[event(1), event(2), event(3)]).unwrap();
}

#[test]
fn one_agent_per_spool_and_shipped_segments_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 30).unwrap();
    let error = Spool::open(dir.path(), 1 << 30).unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
    assert_eq!(
        error.to_string(),
        format!(
            "invalid gateway configuration: {} is in use by another tunnelwatch gateway (pid {}); give each agent its own state_dir",
            dir.path().display(),
            std::process::id()
        )
    );
    drop(spool);
    // A crash after the cursor moved but before the old segment was deleted.
    std::fs::write(segment_path(dir.path(), 1), b"").unwrap();
    std::fs::write(segment_path(dir.path(), 2), b"").unwrap();
    std::fs::write(
        dir.path().join("cursor.json"),
        br#"{"segment":2,"offset":0}"#,
    )
    .unwrap();
    let spool = Spool::open(dir.path(), 1 << 30).unwrap();
    assert!(std::fs::metadata(segment_path(dir.path(), 1)).is_err());
    assert_eq!(spool.used_bytes(), 0);
}

#[test]
fn corrupt_records_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    spool.append(&[event(0)]).unwrap();
    spool.append(&[event(1)]).unwrap();
    // Flip a payload byte of the first record.
    let segment = segment_path(dir.path(), 1);
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    // The corrupt record makes the rest of its segment unreadable: skipped and counted,
    // never a panic or a stuck spool.
    let peeked = spool.peek(100, usize::MAX).unwrap().unwrap();
    assert!(peeked.events.is_empty());
    assert_eq!(spool.n_corrupt(), 1);
    spool.commit(peeked.next).unwrap();
    spool.append(&[event(2)]).unwrap();
    assert_eq!(
        seqs(&spool.peek(100, usize::MAX).unwrap().unwrap().events),
        [2]
    );
}

/// `testdata/spool-v1`: what the spool of the previous version (before `durable`) left in
/// `STATE/spool`, written by that code (see its README): three records of charon events,
/// the first shipped, and the torn tail of a fourth append.
fn previous_version_spool(with_cursor: bool) -> tempfile::TempDir {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/spool-v1");
    let dir = tempfile::tempdir().unwrap();
    for name in ["LOCK", "cursor.json", "seg-00000000000000000001.log"] {
        if name == "cursor.json" && !with_cursor {
            continue;
        }
        std::fs::copy(fixture.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

fn ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|event| format!("{}:{}:{}", event.id.source, event.id.seq, event.id.part))
        .collect()
}

#[test]
fn a_spool_written_by_the_previous_version_is_read_as_it_is() {
    let dir = previous_version_spool(true);
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    let peeked = spool.peek(10_000, usize::MAX).unwrap().unwrap();
    // The second and third records: the first was shipped, the fourth never finished.
    assert_eq!(
        ids(&peeked.events),
        [25, 26, 30, 36, 45, 48].map(|seq| format!("gw1/charon@fixture:{seq}:0"))
    );
    assert!(
        peeked
            .events
            .iter()
            .all(|event| event.dataset == "strongswan.charon"
                && event.observer.product.as_deref() == Some("strongswan")),
        "{:?}",
        peeked.events
    );
    assert_eq!(spool.n_corrupt(), 0);
    // The old cursor is now the ship cursor's file.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["LOCK", "cursor-ship.json", "seg-00000000000000000001.log"]
    );
    // Appends go on after the last whole record; shipping goes on from the cursor.
    spool.append(&[event(100)]).unwrap();
    let all = spool.peek(10_000, usize::MAX).unwrap().unwrap();
    assert_eq!(all.events.len(), 7);
    assert_eq!(all.events[6].id.seq, 100);
    spool.commit(peeked.next).unwrap();
    drop(spool);
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    assert_eq!(
        seqs(&spool.peek(10_000, usize::MAX).unwrap().unwrap().events),
        [100]
    );

    // Before anything was shipped (no cursor yet): every whole record, from the first.
    let dir = previous_version_spool(false);
    let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
    let peeked = spool.peek(10_000, usize::MAX).unwrap().unwrap();
    assert_eq!(
        ids(&peeked.events),
        [2, 19, 25, 26, 30, 36, 45, 48].map(|seq| format!("gw1/charon@fixture:{seq}:0"))
    );
}
