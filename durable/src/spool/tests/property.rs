//! Records in are records out, per cursor: each cursor reads every acknowledged record once,
//! in order, whatever the other cursors do, across reopens and crashes in the middle of an
//! append, with segments rolling and the spool filling up.

use proptest::prelude::*;

use super::*;

const CURSORS: [&str; 3] = ["email", "webhook", "pager"];

#[derive(Debug, Clone)]
enum Op {
    Append {
        text_len: usize,
    },
    Read {
        cursor: usize,
        max: usize,
        commit: bool,
    },
    Reopen,
    /// The process dies `kept` bytes into writing a record (into a new segment if `rolled`).
    CrashMidAppend {
        text_len: usize,
        kept_permille: u64,
        rolled: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..80).prop_map(|text_len| Op::Append { text_len }),
        5 => (0..CURSORS.len(), 1usize..6, prop::bool::weighted(0.8))
            .prop_map(|(cursor, max, commit)| Op::Read { cursor, max, commit }),
        1 => Just(Op::Reopen),
        1 => (0usize..80, 0u64..1000, any::<bool>()).prop_map(|(text_len, kept_permille, rolled)| {
            Op::CrashMidAppend { text_len, kept_permille, rolled }
        }),
    ]
}

fn open_with(dir: &Path, limits: Limits) -> Spool<Note> {
    Spool::open(dir, &CURSORS, limits).unwrap()
}

/// No segment is left behind the slowest cursor.
fn assert_nothing_behind_the_slowest(dir: &Path, spool: &Spool<Note>) {
    let slowest = CURSORS
        .iter()
        .filter_map(|name| spool.position(name))
        .min()
        .unwrap();
    let on_disk = segments(dir);
    assert!(
        on_disk
            .first()
            .is_none_or(|first| *first >= slowest.segment),
        "{on_disk:?} behind {slowest:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn records_in_are_records_out_per_cursor_across_reopens_and_crashes(
        ops in prop::collection::vec(op(), 1..60),
        segment_bytes in 40u64..400,
        max_bytes in 100u64..2_000,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { max_bytes, segment_bytes };
        let mut spool = open_with(dir.path(), limits);
        let mut appended: Vec<u64> = Vec::new();
        let mut read: Vec<Vec<u64>> = vec![Vec::new(); CURSORS.len()];
        let mut next_id = 0;
        for op in ops {
            match op {
                Op::Append { text_len } => {
                    let record = Note { id: next_id, text: "x".repeat(text_len) };
                    next_id += 1;
                    match spool.append(&record) {
                        Ok(()) => appended.push(record.id),
                        Err(Error::Full { used, limit, .. }) => {
                            prop_assert!(used > 0 && limit == max_bytes);
                        }
                        Err(error) => panic!("{error}"),
                    }
                }
                Op::Read { cursor, max, commit } => {
                    let name = CURSORS[cursor];
                    let unread = &appended[read[cursor].len()..];
                    match spool.peek(name, max, usize::MAX).unwrap() {
                        Some(peeked) => {
                            prop_assert!(peeked.damage.is_empty(), "{:?}", peeked.damage);
                            let got = ids(&peeked.records);
                            prop_assert_eq!(&got[..], &unread[..got.len().min(unread.len())]);
                            prop_assert_eq!(got.len(), max.min(unread.len()));
                            if commit {
                                spool.commit(name, peeked.next).unwrap();
                                read[cursor].extend(got);
                            }
                        }
                        None => prop_assert!(unread.is_empty(), "{name} missed {unread:?}"),
                    }
                }
                Op::Reopen => {
                    drop(spool);
                    spool = open_with(dir.path(), limits);
                }
                Op::CrashMidAppend { text_len, kept_permille, rolled } => {
                    let record = Note { id: next_id, text: "x".repeat(text_len) };
                    next_id += 1;
                    let payload = serde_json::to_vec(&record).unwrap();
                    let bytes = segment::encode(&payload, u32::try_from(payload.len()).unwrap());
                    let kept = (bytes.len() as u64 - 1) * kept_permille / 1000;
                    let end = spool.end();
                    drop(spool);
                    let segment = if rolled { end.segment + 1 } else { end.segment };
                    let path = segment::path(dir.path(), segment);
                    let mut file = OpenOptions::new().create(true).append(true).open(&path).unwrap();
                    file.write_all(&bytes[..kept as usize]).unwrap();
                    drop(file);
                    spool = open_with(dir.path(), limits);
                }
            }
            assert_nothing_behind_the_slowest(dir.path(), &spool);
        }
        drop(spool);
        let mut spool = open_with(dir.path(), limits);
        for (cursor, name) in CURSORS.iter().enumerate() {
            while let Some(peeked) = spool.peek(name, 3, usize::MAX).unwrap() {
                prop_assert!(peeked.damage.is_empty(), "{:?}", peeked.damage);
                read[cursor].extend(ids(&peeked.records));
                spool.commit(name, peeked.next).unwrap();
            }
            prop_assert_eq!(&read[cursor], &appended, "cursor {}", name);
        }
        prop_assert_eq!(spool.used_bytes(), 0);
        prop_assert_eq!(segments(dir.path()), vec![spool.end().segment]);
        prop_assert_eq!(spool.n_corrupt(), 0);
    }
}
