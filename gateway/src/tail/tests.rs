use std::io::Write;

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
    let (mut tailer, _) = FileTailer::open(&path, None, false, 1024).unwrap();
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
    let (mut tailer, _) = FileTailer::open(&path, None, false, 1024).unwrap();
    tailer.poll().unwrap();
    let checkpoint = tailer.checkpoint();
    append(&path, "c\n");
    let (mut resumed, notices) = FileTailer::open(&path, Some(checkpoint), false, 1024).unwrap();
    assert!(notices.is_empty(), "{notices:?}");
    assert_eq!(texts(&resumed.poll().unwrap()), lines(&[(2, "c")]));
}

#[test]
fn rotation_by_rename_reads_the_old_file_to_its_end_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "a\n");
    let (mut tailer, _) = FileTailer::open(&path, None, false, 1024).unwrap();
    assert_eq!(texts(&tailer.poll().unwrap()), lines(&[(0, "a")]));
    append(&path, "b\nunterminated");
    std::fs::rename(&path, dir.path().join("charon.log.1")).unwrap();
    append(&path, "c\n");
    let poll = tailer.poll().unwrap();
    assert_eq!(
        texts(&poll),
        lines(&[(1, "b"), (2, "unterminated"), (3, "c")])
    );
    assert!(
        poll.notices.iter().any(|notice| notice.contains("rotated")),
        "{:?}",
        poll.notices
    );
}

#[test]
fn rotation_while_stopped_is_found_among_the_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "a\n");
    let (mut tailer, _) = FileTailer::open(&path, None, false, 1024).unwrap();
    tailer.poll().unwrap();
    let checkpoint = tailer.checkpoint();
    drop(tailer);
    // While the agent is down: more lines, then logrotate.
    append(&path, "b\n");
    std::fs::rename(&path, dir.path().join("charon.log-20261125")).unwrap();
    append(&path, "c\n");
    let (mut tailer, notices) = FileTailer::open(&path, Some(checkpoint), false, 1024).unwrap();
    assert!(
        notices
            .iter()
            .any(|notice| notice.contains("charon.log-20261125")),
        "{notices:?}"
    );
    let mut seen = texts(&tailer.poll().unwrap());
    seen.extend(texts(&tailer.poll().unwrap()));
    assert_eq!(seen, lines(&[(1, "b"), (2, "c")]));
}

#[test]
fn truncation_restarts_at_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("charon.log");
    append(&path, "first line\nsecond line\n");
    let (mut tailer, _) = FileTailer::open(&path, None, false, 1024).unwrap();
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
    let (mut tailer, _) = FileTailer::open(&path, None, true, 1024).unwrap();
    append(&path, "new\n");
    assert_eq!(texts(&tailer.poll().unwrap()), lines(&[(0, "new")]));

    let later = dir.path().join("later.log");
    let (mut tailer, _) = FileTailer::open(&later, None, false, 1024).unwrap();
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
    let (mut tailer, _) = FileTailer::open(&path, None, false, 1000).unwrap();
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
    };
    checkpoint.store(&path).unwrap();
    assert_eq!(Checkpoint::load(&path).unwrap(), Some(checkpoint));
    std::fs::write(&path, b"{\"dev\":").unwrap();
    let error = Checkpoint::load(&path).unwrap_err();
    assert!(
        error.to_string().starts_with("corrupt checkpoint"),
        "{error}"
    );
}
