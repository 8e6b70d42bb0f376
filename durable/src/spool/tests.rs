use std::fs::OpenOptions;
use std::io::Write;

use serde::{Deserialize, Serialize};

use super::*;
use crate::tests::file_names;

mod property;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Note {
    id: u64,
    text: String,
}

fn note(id: u64) -> Note {
    Note {
        id,
        text: format!("note {id}"),
    }
}

const BIG: u64 = 1 << 30;

fn open(dir: &Path, cursors: &[&str]) -> Spool<Note> {
    Spool::open(dir, cursors, Limits::new(BIG)).unwrap()
}

/// Segments of `segment_bytes`: a few records each.
fn open_small(dir: &Path, cursors: &[&str], segment_bytes: u64) -> Spool<Note> {
    let limits = Limits {
        max_bytes: BIG,
        segment_bytes,
    };
    Spool::open(dir, cursors, limits).unwrap()
}

fn ids(records: &[Note]) -> Vec<u64> {
    records.iter().map(|note| note.id).collect()
}

/// Everything `cursor` has still to read, without moving it.
fn unread(spool: &mut Spool<Note>, cursor: &str) -> Vec<u64> {
    spool
        .peek(cursor, usize::MAX, usize::MAX)
        .unwrap()
        .map(|peeked| ids(&peeked.records))
        .unwrap_or_default()
}

/// Reads up to `n` records through `cursor` and commits them.
fn take(spool: &mut Spool<Note>, cursor: &str, n: usize) -> Vec<u64> {
    let Some(peeked) = spool.peek(cursor, n, usize::MAX).unwrap() else {
        return Vec::new();
    };
    spool.commit(cursor, peeked.next).unwrap();
    ids(&peeked.records)
}

fn segments(dir: &Path) -> Vec<u64> {
    segment::list(dir).unwrap()
}

/// A record as the gateway's spool wrote it before this crate: `[u32 length][u32
/// crc32fast][JSON]`.
fn old_record(payload: &[u8]) -> Vec<u8> {
    let mut record = Vec::new();
    record.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(path).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn append_peek_commit_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), &["ship"]);
    assert!(spool.peek("ship", 10, usize::MAX).unwrap().is_none());
    spool.append(&note(0)).unwrap();
    spool.append(&note(1)).unwrap();
    spool.append(&note(2)).unwrap();
    let peeked = spool.peek("ship", 2, usize::MAX).unwrap().unwrap();
    assert_eq!(ids(&peeked.records), [0, 1]);
    assert!(peeked.damage.is_empty());
    // Not committed: a reopen sees everything again.
    drop(spool);
    let mut spool = open(dir.path(), &["ship"]);
    assert_eq!(unread(&mut spool, "ship"), [0, 1, 2]);
    assert_eq!(take(&mut spool, "ship", 1), [0]);
    drop(spool);
    let mut spool = open(dir.path(), &["ship"]);
    assert_eq!(unread(&mut spool, "ship"), [1, 2]);
    assert_eq!(take(&mut spool, "ship", 100), [1, 2]);
    assert!(spool.peek("ship", 100, usize::MAX).unwrap().is_none());
    assert_eq!(spool.used_bytes(), 0);
    assert_eq!(spool.position("ship"), Some(spool.end()));
    assert_eq!(
        file_names(dir.path()),
        ["LOCK", "cursor-ship.json", "seg-00000000000000000001.log"]
    );
}

#[test]
fn cursors_move_at_their_own_speed_and_segments_go_behind_the_slowest() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open_small(dir.path(), &["email", "webhook"], 100);
    for id in 0..10 {
        spool.append(&note(id)).unwrap();
    }
    let n_segments = segments(dir.path()).len();
    assert!(n_segments >= 4, "{n_segments} segments");
    assert_eq!(take(&mut spool, "email", 100), (0..10).collect::<Vec<_>>());
    // The webhook has read nothing: every segment stays.
    assert_eq!(segments(dir.path()).len(), n_segments);
    let used_before = spool.used_bytes();
    assert_eq!(take(&mut spool, "webhook", 3), [0, 1, 2]);
    let webhook = spool.position("webhook").unwrap();
    assert_eq!(segments(dir.path()).first().copied(), Some(webhook.segment));
    assert!(spool.used_bytes() < used_before);
    drop(spool);

    let mut spool = open_small(dir.path(), &["email", "webhook"], 100);
    assert!(spool.peek("email", 100, usize::MAX).unwrap().is_none());
    assert_eq!(take(&mut spool, "webhook", 2), [3, 4]);
    spool.append(&note(10)).unwrap();
    assert_eq!(take(&mut spool, "email", 100), [10]);
    assert_eq!(take(&mut spool, "webhook", 100), [5, 6, 7, 8, 9, 10]);
    assert_eq!(segments(dir.path()), [spool.end().segment]);
    assert_eq!(spool.used_bytes(), 0);
}

#[test]
fn a_torn_tail_is_cut_at_any_length_and_appends_go_on() {
    let record_len = segment::encode(&serde_json::to_vec(&note(1)).unwrap(), 0).len();
    for committed in [false, true] {
        for cut in 1..record_len {
            let dir = tempfile::tempdir().unwrap();
            let mut spool = open(dir.path(), &["ship"]);
            spool.append(&note(0)).unwrap();
            if committed {
                assert_eq!(take(&mut spool, "ship", 1), [0]);
            }
            spool.append(&note(1)).unwrap();
            drop(spool);
            // A crash `cut` bytes before the end of the second append.
            let path = segment::path(dir.path(), 1);
            let len = std::fs::metadata(&path).unwrap().len();
            OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(len - cut as u64)
                .unwrap();
            let mut spool = open(dir.path(), &["ship"]);
            let expected: &[u64] = if committed { &[] } else { &[0] };
            assert_eq!(unread(&mut spool, "ship"), expected, "cut {cut}");
            spool.append(&note(2)).unwrap();
            let expected: &[u64] = if committed { &[2] } else { &[0, 2] };
            assert_eq!(unread(&mut spool, "ship"), expected, "cut {cut}");
            assert_eq!(spool.n_corrupt(), 0);
            drop(spool);
            let mut spool = open(dir.path(), &["ship"]);
            assert_eq!(unread(&mut spool, "ship"), expected, "cut {cut}");
        }
    }
}

#[test]
fn the_header_of_a_record_that_never_finished_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), &["ship"]);
    spool.append(&note(0)).unwrap();
    drop(spool);
    append_bytes(&segment::path(dir.path(), 1), &[200, 0, 0, 0, 1, 2, 3]);
    let mut spool = open(dir.path(), &["ship"]);
    spool.append(&note(1)).unwrap();
    assert_eq!(unread(&mut spool, "ship"), [0, 1]);
}

/// The ids of the records in a segment, and where each ends.
fn records_in(path: &Path) -> Vec<(u64, u64)> {
    let mut offset = 0;
    let mut records = Vec::new();
    while let Some(Record::Valid(payload)) = segment::read_record(path, offset).unwrap() {
        offset += HEADER_BYTES + payload.len() as u64;
        let note: Note = serde_json::from_slice(&payload).unwrap();
        records.push((note.id, offset));
    }
    records
}

#[test]
fn a_segment_cut_short_loses_only_what_was_cut() {
    for mid_record in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open_small(dir.path(), &["ship"], 100);
        for id in 0..9 {
            spool.append(&note(id)).unwrap();
        }
        drop(spool);
        let all = segments(dir.path());
        assert!(all.len() >= 3, "{all:?}");
        // Damage to a closed segment: cut within its second record, or after its first.
        let path = segment::path(dir.path(), all[1]);
        let records = records_in(&path);
        assert!(records.len() >= 2, "{records:?}");
        let keep = if mid_record {
            records[1].1 - 5
        } else {
            records[0].1
        };
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..keep as usize]).unwrap();
        let lost: Vec<u64> = records[1..].iter().map(|(id, _)| *id).collect();
        let expected: Vec<u64> = (0..9).filter(|id| !lost.contains(id)).collect();

        let mut spool = open_small(dir.path(), &["ship"], 100);
        let peeked = spool.peek("ship", usize::MAX, usize::MAX).unwrap().unwrap();
        assert_eq!(ids(&peeked.records), expected);
        if mid_record {
            // The cut record's header promises more than there is: the rest is skipped.
            assert_eq!(
                peeked.damage,
                [Damage::Corrupt {
                    path: path.clone(),
                    offset: records[0].1
                }]
            );
            assert_eq!(spool.n_corrupt(), 1);
        } else {
            assert!(peeked.damage.is_empty(), "{:?}", peeked.damage);
        }
        spool.commit("ship", peeked.next).unwrap();
        spool.append(&note(9)).unwrap();
        assert_eq!(unread(&mut spool, "ship"), [9]);
    }
}

#[test]
fn a_flipped_bit_skips_the_rest_of_its_segment_and_new_records_land_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), &["email", "webhook"]);
    spool.append(&note(0)).unwrap();
    spool.append(&note(1)).unwrap();
    // Flip a payload byte of the first record.
    let path = segment::path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let peeked = spool.peek("email", 100, usize::MAX).unwrap().unwrap();
    assert!(peeked.records.is_empty());
    assert_eq!(
        peeked.damage,
        [Damage::Corrupt {
            path: path.clone(),
            offset: 0
        }]
    );
    assert_eq!(
        peeked.damage[0].to_string(),
        format!(
            "corrupt spool record at {}:0; skipping the rest of the segment",
            path.display()
        )
    );
    assert_eq!(spool.n_corrupt(), 1);
    spool.commit("email", peeked.next).unwrap();
    spool.append(&note(2)).unwrap();
    assert_eq!(unread(&mut spool, "email"), [2]);
    // The other cursor meets the same damage and goes on to the same record.
    let peeked = spool.peek("webhook", 100, usize::MAX).unwrap().unwrap();
    assert_eq!(ids(&peeked.records), [2]);
    assert_eq!(peeked.damage.len(), 1);
    spool.commit("webhook", peeked.next).unwrap();
    assert_eq!(segments(dir.path()), [2]);
}

#[test]
fn a_record_of_another_type_is_skipped_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), &["ship"]);
    spool.append(&note(0)).unwrap();
    drop(spool);
    let mut strings: Spool<String> = Spool::open(dir.path(), &["ship"], Limits::new(BIG)).unwrap();
    strings.append("not a note").unwrap();
    drop(strings);
    let mut spool = open(dir.path(), &["ship"]);
    spool.append(&note(2)).unwrap();
    let peeked = spool.peek("ship", 100, usize::MAX).unwrap().unwrap();
    assert_eq!(ids(&peeked.records), [0, 2]);
    assert!(
        matches!(&peeked.damage[..], [Damage::Undecodable { error, .. }] if error.contains("expected struct Note")),
        "{:?}",
        peeked.damage
    );
    assert_eq!(spool.n_corrupt(), 1);
}

#[test]
fn a_garbage_cursor_file_is_an_error_naming_it_and_changes_nothing() {
    for (file, garbage) in [
        ("cursor-webhook.json", &b"{\"segment\":2,\"off"[..]),
        ("cursor-webhook.json", b""),
        ("cursor-webhook.json", b"\x00\x00\x00\x00"),
        ("cursor.json", b"{\"segment\":\"one\"}"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = open_small(dir.path(), &["email", "webhook"], 100);
        for id in 0..6 {
            spool.append(&note(id)).unwrap();
        }
        take(&mut spool, "email", 4);
        take(&mut spool, "webhook", 4);
        drop(spool);
        let path = dir.path().join(file);
        std::fs::write(&path, garbage).unwrap();
        let names = file_names(dir.path());
        let error =
            Spool::<Note>::open(dir.path(), &["email", "webhook"], Limits::new(BIG)).unwrap_err();
        match &error {
            Error::File(crate::FileError::Corrupt {
                what: "spool cursor",
                path: named,
                ..
            }) => assert_eq!(*named, path),
            other => panic!("{other}"),
        }
        assert!(
            error
                .to_string()
                .starts_with(&format!("corrupt spool cursor {}: ", path.display())),
            "{error}"
        );
        assert_eq!(file_names(dir.path()), names, "{file}");
        // Put right, the spool opens where it was.
        std::fs::remove_file(&path).unwrap();
        let mut spool = open_small(dir.path(), &["email", "webhook"], 100);
        assert_eq!(unread(&mut spool, "email"), [4, 5]);
    }
}

#[test]
fn a_spool_written_before_cursors_had_names_is_read_as_it_is() {
    // The gateway's spool before this crate: one segment of records, `cursor.json` after the
    // first, and the torn tail of a fourth append.
    let dir = tempfile::tempdir().unwrap();
    let payloads: Vec<Vec<u8>> = (0..3)
        .map(|id| serde_json::to_vec(&note(id)).unwrap())
        .collect();
    let mut bytes = Vec::new();
    for payload in &payloads {
        bytes.extend(old_record(payload));
    }
    let after_first = old_record(&payloads[0]).len();
    let whole = bytes.len();
    bytes.extend(&old_record(&serde_json::to_vec(&note(3)).unwrap())[..11]);
    std::fs::write(dir.path().join("seg-00000000000000000001.log"), &bytes).unwrap();
    std::fs::write(
        dir.path().join("cursor.json"),
        format!(r#"{{"segment":1,"offset":{after_first}}}"#),
    )
    .unwrap();
    std::fs::write(dir.path().join("LOCK"), b"4242").unwrap();
    let before = dir.path().to_owned();

    let mut spool = open(&before, &["ship"]);
    assert_eq!(
        file_names(dir.path()),
        ["LOCK", "cursor-ship.json", "seg-00000000000000000001.log"]
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cursor-ship.json")).unwrap(),
        format!(r#"{{"segment":1,"offset":{after_first}}}"#)
    );
    assert_eq!(spool.end().offset, whole as u64);
    assert_eq!(unread(&mut spool, "ship"), [1, 2]);
    spool.append(&note(4)).unwrap();
    assert_eq!(take(&mut spool, "ship", 1), [1]);
    drop(spool);
    let mut spool = open(dir.path(), &["ship"]);
    assert_eq!(unread(&mut spool, "ship"), [2, 4]);
    drop(spool);

    // Read by several cursors: each starts where the one unnamed cursor stood.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seg-00000000000000000001.log"), &bytes).unwrap();
    std::fs::write(
        dir.path().join("cursor.json"),
        format!(r#"{{"segment":1,"offset":{after_first}}}"#),
    )
    .unwrap();
    let mut spool = open(dir.path(), &["email", "webhook"]);
    assert_eq!(unread(&mut spool, "email"), [1, 2]);
    assert_eq!(unread(&mut spool, "webhook"), [1, 2]);
    drop(spool);

    // Never shipped (no cursor yet): from the first record.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seg-00000000000000000001.log"), &bytes).unwrap();
    let mut spool = open(dir.path(), &["ship"]);
    assert_eq!(unread(&mut spool, "ship"), [0, 1, 2]);
}

#[test]
fn an_older_version_that_ran_after_this_one_moves_the_cursor_it_knew() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), &["ship"]);
    for id in 0..4 {
        spool.append(&note(id)).unwrap();
    }
    assert_eq!(take(&mut spool, "ship", 1), [0]);
    let after_first = spool.position("ship").unwrap();
    let after_second = spool.peek("ship", 1, usize::MAX).unwrap().unwrap().next;
    drop(spool);
    // The older version shipped one more record and wrote its own cursor.json.
    let legacy = dir.path().join("cursor.json");
    std::fs::write(&legacy, serde_json::to_vec(&after_second).unwrap()).unwrap();
    let mut spool = open(dir.path(), &["ship"]);
    assert_eq!(spool.position("ship"), Some(after_second));
    assert_eq!(unread(&mut spool, "ship"), [2, 3]);
    assert!(std::fs::metadata(&legacy).is_err(), "cursor.json is gone");
    drop(spool);
    // A cursor.json behind the cursor's file moves nothing back.
    std::fs::write(&legacy, serde_json::to_vec(&after_first).unwrap()).unwrap();
    let mut spool = open(dir.path(), &["ship"]);
    assert_eq!(unread(&mut spool, "ship"), [2, 3]);
}

#[test]
fn one_process_per_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), &["ship"]);
    let error = Spool::<Note>::open(dir.path(), &["ship"], Limits::new(BIG)).unwrap_err();
    assert!(
        matches!(&error, Error::InUse { pid, .. } if *pid == std::process::id().to_string()),
        "{error}"
    );
    drop(spool);
    open(dir.path(), &["ship"]);
}

#[test]
fn a_full_spool_refuses_writes_nothing_and_the_slowest_cursor_frees_room() {
    let dir = tempfile::tempdir().unwrap();
    let record_len = segment::encode(&serde_json::to_vec(&note(0)).unwrap(), 0).len() as u64;
    let limits = Limits {
        max_bytes: 3 * record_len,
        segment_bytes: record_len,
    };
    let mut spool: Spool<Note> = Spool::open(dir.path(), &["fast", "slow"], limits).unwrap();
    for id in 0..3 {
        spool.append(&note(id)).unwrap();
    }
    let end = spool.end();
    let error = spool.append(&note(3)).unwrap_err();
    assert!(
        matches!(error, Error::Full { used, limit, .. } if used == 3 * record_len && limit == 3 * record_len),
        "{error}"
    );
    assert_eq!(spool.end(), end, "nothing written");
    // The fast cursor reading everything frees nothing: the slow one still needs it.
    assert_eq!(take(&mut spool, "fast", 100), [0, 1, 2]);
    assert!(matches!(spool.append(&note(3)), Err(Error::Full { .. })));
    assert_eq!(take(&mut spool, "slow", 1), [0]);
    spool.append(&note(3)).unwrap();
    assert_eq!(take(&mut spool, "fast", 100), [3]);
    assert_eq!(take(&mut spool, "slow", 100), [1, 2, 3]);

    // One record always fits in an empty spool, however large.
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 10,
        segment_bytes: 10,
    };
    let mut spool: Spool<Note> = Spool::open(dir.path(), &["ship"], limits).unwrap();
    spool.append(&note(0)).unwrap();
    assert!(matches!(spool.append(&note(1)), Err(Error::Full { .. })));
    assert_eq!(take(&mut spool, "ship", 1), [0]);
    spool.append(&note(1)).unwrap();
}

#[test]
fn a_new_cursor_starts_at_the_slowest_and_a_dropped_one_stops_holding_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open_small(dir.path(), &["a", "b"], 100);
    for id in 0..8 {
        spool.append(&note(id)).unwrap();
    }
    take(&mut spool, "a", 6);
    take(&mut spool, "b", 2);
    drop(spool);
    let mut spool = open_small(dir.path(), &["a", "b", "c"], 100);
    assert_eq!(spool.position("c"), spool.position("b"));
    assert!(
        file_names(dir.path()).contains(&"cursor-c.json".to_owned()),
        "written at once"
    );
    assert_eq!(unread(&mut spool, "c"), [2, 3, 4, 5, 6, 7]);
    drop(spool);
    // b and c are no longer named: their files go, and so do the segments only they held.
    let mut spool = open_small(dir.path(), &["a"], 100);
    let names = file_names(dir.path());
    assert!(
        !names
            .iter()
            .any(|name| name == "cursor-b.json" || name == "cursor-c.json")
    );
    assert_eq!(
        segments(dir.path()).first().copied(),
        Some(spool.position("a").unwrap().segment)
    );
    assert_eq!(unread(&mut spool, "a"), [6, 7]);
    drop(spool);
    // Named again later, b starts over where a stands.
    let mut spool = open_small(dir.path(), &["a", "b"], 100);
    assert_eq!(unread(&mut spool, "b"), [6, 7]);
}

#[test]
fn segments_left_behind_by_a_crash_after_a_commit_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    // A crash after the cursors moved but before the old segment was deleted.
    std::fs::write(segment::path(dir.path(), 1), b"").unwrap();
    std::fs::write(segment::path(dir.path(), 2), b"").unwrap();
    for name in ["cursor-email.json", "cursor-webhook.json"] {
        std::fs::write(dir.path().join(name), br#"{"segment":2,"offset":0}"#).unwrap();
    }
    let spool = open(dir.path(), &["email", "webhook"]);
    assert_eq!(segments(dir.path()), [2]);
    assert_eq!(spool.used_bytes(), 0);
}

#[test]
fn cursor_names_and_positions_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    for names in [
        &[][..],
        &[""],
        &["Email"],
        &["a/b"],
        &["../x"],
        &["a.b"],
        &["a", "a"],
    ] {
        let error = Spool::<Note>::open(dir.path(), names, Limits::new(BIG)).unwrap_err();
        assert!(matches!(error, Error::Invalid { .. }), "{names:?}: {error}");
    }
    let long = "x".repeat(65);
    assert!(Spool::<Note>::open(dir.path(), &[&long], Limits::new(BIG)).is_err());
    let mut spool = open(dir.path(), &["email", "web-hook_2"]);
    spool.append(&note(0)).unwrap();
    assert!(matches!(
        spool.peek("sms", 1, usize::MAX),
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        spool.commit("sms", spool.end()),
        Err(Error::Invalid { .. })
    ));
    let past = Position {
        segment: spool.end().segment,
        offset: spool.end().offset + 1,
    };
    let error = spool.commit("email", past).unwrap_err();
    assert!(error.to_string().contains("past the end"), "{error}");
    assert_eq!(take(&mut spool, "email", 1), [0]);
    // Moving back is ignored.
    spool.commit("email", Position::default()).unwrap();
    assert_eq!(spool.position("email"), Some(spool.end()));
}

#[test]
fn a_peek_stops_at_the_first_record_that_reaches_its_weight_or_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool: Spool<Vec<u64>> = Spool::open(dir.path(), &["ship"], Limits::new(BIG)).unwrap();
    spool.append(&[1, 2, 3][..]).unwrap();
    spool.append(&vec![4]).unwrap();
    spool.append(&[5, 6][..]).unwrap();
    let by_weight = |spool: &mut Spool<Vec<u64>>, max: usize| {
        spool
            .peek_weighted("ship", max, usize::MAX, Vec::len)
            .unwrap()
            .unwrap()
            .records
    };
    assert_eq!(by_weight(&mut spool, 1), [vec![1, 2, 3]]);
    assert_eq!(by_weight(&mut spool, 4), [vec![1, 2, 3], vec![4]]);
    assert_eq!(by_weight(&mut spool, 5).len(), 3);
    let by_bytes = spool.peek("ship", usize::MAX, 8).unwrap().unwrap();
    assert_eq!(by_bytes.records, [vec![1, 2, 3], vec![4]]);
}
