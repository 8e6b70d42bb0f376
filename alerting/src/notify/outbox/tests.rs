use super::*;
use crate::notify::sample_notification;

fn policy() -> RetryPolicy {
    RetryPolicy::default()
}

#[track_caller]
fn check(n_failures: u32, elapsed_secs: u64, jitter: f64, expect: Step) {
    assert_eq!(
        policy().next_step(n_failures, Duration::from_secs(elapsed_secs), jitter),
        expect
    );
}

fn after_ms(ms: u64) -> Step {
    Step::RetryAfter(Duration::from_millis(ms))
}

#[test]
fn backoff_doubles_from_one_second_to_five_minutes() {
    check(1, 0, 1.0, after_ms(1_000));
    check(2, 0, 1.0, after_ms(2_000));
    check(3, 0, 1.0, after_ms(4_000));
    check(9, 0, 1.0, after_ms(256_000));
    check(10, 0, 1.0, after_ms(300_000));
    check(1_000, 0, 1.0, after_ms(300_000));
    check(u32::MAX, 0, 1.0, after_ms(300_000));
}

#[test]
fn jitter_spreads_the_upper_half() {
    check(1, 0, 0.0, after_ms(500));
    check(1, 0, 0.5, after_ms(750));
    check(3, 0, 0.0, after_ms(2_000));
    check(10, 0, 0.0, after_ms(150_000));
    check(1, 0, -3.0, after_ms(500));
    check(1, 0, 7.0, after_ms(1_000));
    check(1, 0, f64::NAN, after_ms(750));
}

#[test]
fn transient_failures_are_given_up_after_a_day() {
    check(50, 24 * 3600 - 1, 1.0, after_ms(300_000));
    check(50, 24 * 3600, 1.0, Step::GiveUp);
    check(1, 10 * 24 * 3600, 0.0, Step::GiveUp);
}

#[test]
fn random_units_are_in_range() {
    for _ in 0..1000 {
        let unit = random_unit();
        assert!((0.0..1.0).contains(&unit), "{unit}");
    }
}

#[test]
fn dead_letters_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DEAD_LETTER_FILE);
    assert_eq!(read_dead_letters(&path).expect("none"), Vec::new());
    let letter = DeadLetter {
        at: Timestamp::UNIX_EPOCH,
        receiver: "ops".to_owned(),
        failure: Failure::Permanent,
        error: "550 no such user".to_owned(),
        n_attempts: 1,
        notification: sample_notification(),
    };
    append_dead_letter(&path, &letter).expect("write");
    append_dead_letter(&path, &letter).expect("write again");
    assert_eq!(
        read_dead_letters(&path).expect("read"),
        vec![letter.clone(), letter]
    );
}

#[tokio::test]
async fn enqueue_refuses_unknown_receivers_and_counts_the_queue_across_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox = Outbox::open(dir.path(), &["mail", "hook"]).expect("open");
    let notification = sample_notification();
    let error = outbox
        .enqueue(&notification, &["pager"])
        .await
        .expect_err("unknown receiver");
    assert_eq!(error.to_string(), "unknown notification receiver \"pager\"");
    assert!(outbox.enqueue(&notification, &[]).await.is_err());
    outbox
        .enqueue(&notification, &["mail"])
        .await
        .expect("enqueue");
    outbox
        .enqueue(&notification, &["mail", "hook", "mail"])
        .await
        .expect("enqueue");
    let queued = |outbox: &Outbox| -> Vec<(String, u64)> {
        outbox
            .counters()
            .into_iter()
            .map(|counters| (counters.receiver, counters.queued))
            .collect()
    };
    assert_eq!(
        queued(&outbox),
        [("mail".to_owned(), 2), ("hook".to_owned(), 1)]
    );
    drop(outbox);
    let reopened = Outbox::open(dir.path(), &["mail", "hook"]).expect("reopen");
    assert_eq!(
        queued(&reopened),
        [("mail".to_owned(), 2), ("hook".to_owned(), 1)]
    );
}

#[tokio::test]
async fn one_process_per_outbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _outbox = Outbox::open(dir.path(), &["mail"]).expect("open");
    let error = Outbox::open(dir.path(), &["mail"]).expect_err("second open");
    assert!(
        error.to_string().contains("in use by another process"),
        "{error}"
    );
    assert_eq!(error.kind(), model::ErrorKind::Unavailable);
}

#[tokio::test]
async fn a_receiver_name_that_cannot_be_a_cursor_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let error = Outbox::open(dir.path(), &["Ops Team"]).expect_err("bad name");
    assert!(error.to_string().contains("\"Ops Team\""), "{error}");
}
