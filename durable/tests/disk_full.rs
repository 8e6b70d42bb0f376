//! A disk that fills up under a spool: appends and cursor moves fail with the OS's error and
//! leave nothing of themselves behind (no part of a record, no temp file), what was
//! acknowledged stays readable, and both go on once space returns. The spool is on a small
//! tmpfs the test mounts; needs root.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use durable::{Error, Limits, Spool};
use testbed::tmpfs::{Tmpfs, fill};

const ENOSPC: i32 = 28;

/// Temp files left in `dir` (`write_atomic` writes `<file>.tmp`).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tmp"))
        .collect()
}

fn is_no_space(error: &Error) -> bool {
    matches!(error, Error::File(durable::FileError::Io { source, .. }) if source.raw_os_error() == Some(ENOSPC))
}

/// Larger than a page, so that it needs space a full disk does not have.
fn record(id: usize) -> String {
    format!("{id}:{}", "r".repeat(6000))
}

fn read_all(spool: &mut Spool<String>, cursor: &str) -> Vec<String> {
    spool
        .peek(cursor, usize::MAX, usize::MAX)
        .unwrap()
        .map(|peeked| peeked.records)
        .unwrap_or_default()
}

#[test]
fn a_full_disk_fails_appends_and_cursor_moves_without_a_trace_until_space_returns() {
    let work = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount(&work.path().join("disk"), "1m").unwrap();
    let dir = disk.path().join("spool");
    let limits = Limits::new(1 << 30);
    let mut spool: Spool<String> = Spool::open(&dir, &["email", "webhook"], limits).unwrap();
    spool.append(&record(0)).unwrap();
    let mut acknowledged = vec![record(0)];
    let first = spool.peek("email", 1, usize::MAX).unwrap().unwrap();
    let state = disk.path().join("state.json");
    durable::write_atomic(&state, b"old").unwrap();

    let filler = disk.path().join("filler");
    fill(&filler).unwrap();
    let mut next_id = 1;
    let error = loop {
        match spool.append(&record(next_id)) {
            Ok(()) => acknowledged.push(record(next_id)),
            Err(error) => break error,
        }
        next_id += 1;
        assert!(next_id < 1000, "the disk never filled up");
    };
    assert!(is_no_space(&error), "{error}");
    assert!(
        error.to_string().starts_with("failed to append to "),
        "{error}"
    );
    // Nothing of the failed record stays in its segment.
    let end = spool.end();
    let segment = dir.join(format!("seg-{:020}.log", end.segment));
    assert_eq!(std::fs::metadata(segment).unwrap().len(), end.offset);
    assert_eq!(read_all(&mut spool, "webhook"), acknowledged);

    // A cursor's new position cannot be written: it stays, and no temp file is left.
    let error = spool.commit("email", first.next).unwrap_err();
    assert!(is_no_space(&error), "{error}");
    assert_eq!(spool.position("webhook"), spool.position("email"));
    assert_eq!(temp_files(&dir), [] as [PathBuf; 0]);
    let error = durable::write_atomic(&state, &[b'n'; 8192]).unwrap_err();
    assert!(is_no_space(&error), "{error}");
    assert_eq!(std::fs::read(&state).unwrap(), b"old");
    assert_eq!(temp_files(disk.path()), [] as [PathBuf; 0]);

    // Space returns: both go on, and a reopen reads exactly what was acknowledged.
    std::fs::remove_file(&filler).unwrap();
    spool.append(&record(next_id)).unwrap();
    acknowledged.push(record(next_id));
    spool.commit("email", first.next).unwrap();
    durable::write_atomic(&state, b"new").unwrap();
    drop(spool);
    let mut spool: Spool<String> = Spool::open(&dir, &["email", "webhook"], limits).unwrap();
    assert_eq!(read_all(&mut spool, "email"), acknowledged[1..]);
    assert_eq!(read_all(&mut spool, "webhook"), acknowledged);
    assert_eq!(spool.n_corrupt(), 0);
}
