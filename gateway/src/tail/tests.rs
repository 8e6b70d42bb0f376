use std::io::Write;

use std::time::Duration;

use super::*;

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

fn texts(poll: &Poll) -> Vec<(u64, String)> {
    poll.lines
        .iter()
        .map(|line| (line.seq, String::from_utf8_lossy(&line.bytes).into_owned()))
        .collect()
}

fn options(max_line_bytes: usize) -> TailOptions {
    TailOptions {
        from_end: false,
        max_line_bytes,
        rotate_grace: Duration::ZERO,
    }
}

/// Polls until nothing more comes, collecting lines and notices.
fn drain(tailer: &mut FileTailer) -> (Vec<(u64, String)>, Vec<String>) {
    let mut seen = Vec::new();
    let mut notices = Vec::new();
    for _ in 0..10 {
        let poll = tailer.poll().unwrap();
        seen.extend(texts(&poll));
        notices.extend(poll.notices);
    }
    (seen, notices)
}

fn lines(items: &[(u64, &str)]) -> Vec<(u64, String)> {
    items
        .iter()
        .map(|(seq, text)| (*seq, (*text).to_owned()))
        .collect()
}

#[test]
fn partial_lines_wait_for_their_newline() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "one\ntw");
    let (mut tailer, _) = FileTailer::open(&path, None, options(1024)).unwrap();
    assert_eq!(texts(&tailer.poll().unwrap()), lines(&[(0, "one")]));
    // The checkpoint stays before the incomplete line.
    assert_eq!(tailer.checkpoint().offset, 4);
    append(&path, "o\r\nthree\n");
    assert_eq!(
        texts(&tailer.poll().unwrap()),
        lines(&[(1, "two\r"), (2, "three")])
    );
    assert_eq!(tailer.checkpoint().offset, 15);
    assert_eq!(tailer.checkpoint().next_seq, 3);
}

#[test]
fn resumes_from_a_checkpoint_with_the_same_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "a\nb\n");
    let (mut tailer, _) = FileTailer::open(&path, None, options(1024)).unwrap();
    tailer.poll().unwrap();
    let checkpoint = tailer.checkpoint();
    append(&path, "c\n");
    let (mut resumed, notices) = FileTailer::open(&path, Some(checkpoint), options(1024)).unwrap();
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(texts(&resumed.poll().unwrap()), lines(&[(2, "c")]));
}

#[test]
fn rotation_by_rename_reads_the_old_file_to_its_end_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "a\n");
    let (mut tailer, _) = FileTailer::open(&path, None, options(1024)).unwrap();
    assert_eq!(texts(&tailer.poll().unwrap()), lines(&[(0, "a")]));
    append(&path, "b\nunterminated");
    std::fs::rename(&path, dir.path().join("charon.log.1")).unwrap();
    append(&path, "c\n");
    let (seen, notices) = drain(&mut tailer);
    assert_eq!(seen, lines(&[(1, "b"), (2, "unterminated"), (3, "c")]));
    assert!(
        notices.iter().any(|notice| notice.contains("rotated")),
        "{notices:?}"
    );
}

#[test]
fn rotation_while_stopped_is_found_among_the_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "a\n");
    let (mut tailer, _) = FileTailer::open(&path, None, options(1024)).unwrap();
    tailer.poll().unwrap();
    let checkpoint = tailer.checkpoint();
    drop(tailer);
    // While the agent is down: more lines, then logrotate.
    append(&path, "b\n");
    std::fs::rename(&path, dir.path().join("charon.log-20261125")).unwrap();
    append(&path, "c\n");
    let (mut tailer, notices) = FileTailer::open(&path, Some(checkpoint), options(1024)).unwrap();
    assert!(
        notices
            .iter()
            .any(|notice| notice.contains("charon.log-20261125")),
        "{notices:?}"
    );
    let (seen, _) = drain(&mut tailer);
    assert_eq!(seen, lines(&[(1, "b"), (2, "c")]));
}

#[test]
fn truncation_restarts_at_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "first line\nsecond line\n");
    let (mut tailer, _) = FileTailer::open(&path, None, options(1024)).unwrap();
    tailer.poll().unwrap();
    std::fs::write(&path, "new\n").unwrap(); // copytruncate, then a new line
    let poll = tailer.poll().unwrap();
    assert_eq!(texts(&poll), lines(&[(2, "new")]));
    assert!(
        poll.notices
            .iter()
            .any(|notice| notice.contains("truncated")),
        "{:?}",
        poll.notices
    );
}

#[test]
fn start_at_end_skips_existing_lines_and_a_missing_file_is_picked_up_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "old\n");
    let (mut tailer, _) = FileTailer::open(
        &path,
        None,
        TailOptions {
            from_end: true,
            ..options(1024)
        },
    )
    .unwrap();
    append(&path, "new\n");
    assert_eq!(texts(&tailer.poll().unwrap()), lines(&[(0, "new")]));

    let later = dir.path().join("later.log");
    let (mut tailer, _) = FileTailer::open(&later, None, options(1024)).unwrap();
    assert!(tailer.poll().unwrap().lines.is_empty());
    append(&later, "hello\n");
    assert_eq!(texts(&tailer.poll().unwrap()), lines(&[(0, "hello")]));
}

#[test]
fn huge_lines_are_cut_but_their_length_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    let huge = "x".repeat(3 * 1024 * 1024);
    append(&path, &format!("{huge}\nafter\n"));
    let (mut tailer, _) = FileTailer::open(&path, None, options(1000)).unwrap();
    let mut all = Vec::new();
    for _ in 0..5 {
        all.extend(tailer.poll().unwrap().lines);
    }
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].len, huge.len());
    assert_eq!(all[0].bytes.len(), 1001);
    assert_eq!(all[1].bytes, b"after");
    assert_eq!(tailer.checkpoint().offset, (huge.len() + 7) as u64);
}

#[test]
fn checkpoint_round_trips_and_corrupt_checkpoints_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cp.json");
    assert_eq!(Checkpoint::load(&path).unwrap(), None);
    let checkpoint = Checkpoint {
        dev: 1,
        ino: 2,
        offset: 3,
        next_seq: 4,
        epoch: "e".to_owned(),
        fingerprint: Some((5, 6)),
    };
    checkpoint.store(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), Some(checkpoint));
    // Checkpoints written before epochs and fingerprints existed still load.
    std::fs::write(&path, br#"{"dev":1,"ino":2,"offset":3,"next_seq":4}"#).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap().unwrap().epoch, "");
    std::fs::write(&path, b"{\"dev\":").unwrap();
    let error = Checkpoint::load(&path).unwrap_err();
    assert!(
        error.to_string().starts_with("corrupt checkpoint"),
        "{error}"
    );
}

#[test]
fn a_renamed_file_still_written_by_the_daemon_is_read_until_idle() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "a\n");
    let grace = TailOptions {
        rotate_grace: Duration::from_millis(300),
        ..options(1024)
    };
    let (mut tailer, _) = FileTailer::open(&path, None, grace).unwrap();
    tailer.poll().unwrap();
    let rotated = dir.path().join("charon.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    append(&path, "new file\n");
    tailer.poll().unwrap();
    // The daemon has not reopened its log yet: it still writes to the renamed file.
    append(&rotated, "late line\n");
    let first = texts(&tailer.poll().unwrap());
    assert_eq!(first, lines(&[(1, "late line")]));
    assert!(
        tailer.poll().unwrap().lines.is_empty(),
        "the new file waits for the grace period"
    );
    std::thread::sleep(Duration::from_millis(350));
    let (seen, _) = drain(&mut tailer);
    assert_eq!(seen, lines(&[(2, "new file")]));
}

#[test]
fn a_new_file_on_a_reused_inode_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "old content line one\nold content line two\n");
    let (mut tailer, _) = FileTailer::open(&path, None, options(1024)).unwrap();
    tailer.poll().unwrap();
    let mut checkpoint = tailer.checkpoint();
    assert_eq!(checkpoint.next_seq, 2);
    // Same inode (rewritten in place), different content: the fingerprint tells them apart.
    std::fs::write(
        &path,
        "brand new file with more bytes than before\nsecond\n",
    )
    .unwrap();
    let (mut resumed, _) =
        FileTailer::open(&path, Some(checkpoint.clone()), options(1024)).unwrap();
    assert_eq!(
        texts(&resumed.poll().unwrap())[0].1,
        "brand new file with more bytes than before"
    );
    // Same content: resumes where it was.
    std::fs::write(&path, "old content line one\nold content line two\nthird\n").unwrap();
    checkpoint.next_seq = 2;
    let (mut resumed, _) = FileTailer::open(&path, Some(checkpoint), options(1024)).unwrap();
    assert_eq!(texts(&resumed.poll().unwrap()), lines(&[(2, "third")]));
}

#[test]
fn the_epoch_is_kept_across_checkpoints_and_new_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "a\n");
    let (first, _) = FileTailer::open(&path, None, options(1024)).unwrap();
    assert_eq!(first.epoch().len(), 16);
    let (resumed, _) = FileTailer::open(&path, Some(first.checkpoint()), options(1024)).unwrap();
    assert_eq!(resumed.epoch(), first.epoch());
    let (fresh, _) = FileTailer::open(&path, None, options(1024)).unwrap();
    assert_ne!(fresh.epoch(), first.epoch());
}
