//! Grouped pages against a real SMTP server (aiosmtpd): a storm of alerts of one rule is a
//! couple of digests, not hundreds of mails; a group that was just paged waits its interval
//! without holding up another group; nothing is lost on the way.

mod notify_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use alerting::notify::email::{EmailConfig, TlsMode};
use alerting::notify::outbox::{Delivery, Grouping, Outbox, RetryPolicy};
use alerting::notify::{Notification, Notifier};
use notify_support::{SmtpOptions, SmtpServer, eventually, free_port, notification};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(30);

fn mail_to(port: u16) -> Arc<dyn Notifier> {
    let config = EmailConfig {
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port: Some(port),
        tls: TlsMode::None,
        username: None,
        password_file: None,
        from: "alerts@tw.example.org".to_owned(),
        to: vec!["soc@example.org".to_owned()],
        ca_file: None,
        timeout_secs: 5,
    };
    Arc::new(config.build().expect("build"))
}

fn page(id: &str, rule: &str, user: &str) -> Notification {
    let mut page = notification(id);
    page.alert_id = id.to_owned();
    page.rule_id = rule.to_owned();
    page.rule_name = format!("Rule {rule}");
    page.user = Some(user.to_owned());
    page.summary = format!("10 failed logins of {user}");
    page.labels = [("user.name".to_owned(), user.to_owned())].into();
    page
}

/// The grouped delivery loop, stopped when the returned sender is dropped or fires.
fn run(outbox: &Outbox, port: u16, grouping: Grouping) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let outbox = outbox.clone();
    tokio::spawn(async move {
        outbox
            .run_grouped(
                vec![(
                    "mail".to_owned(),
                    mail_to(port),
                    Delivery {
                        grouping: Some(grouping),
                        mute: Vec::new(),
                    },
                )],
                RetryPolicy::default(),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("run");
    });
    stop
}

#[tokio::test]
async fn a_storm_of_one_rule_is_a_digest_not_a_mail_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = SmtpServer::start(dir.path(), port, &SmtpOptions::default());
    let outbox = Outbox::open(&dir.path().join("outbox"), &["mail"]).expect("open");
    let _stop = run(
        &outbox,
        port,
        Grouping {
            by: vec!["rule".to_owned()],
            wait: Duration::from_secs(1),
            interval: Duration::from_secs(2),
        },
    );
    // Every user failing at once: 120 alerts of one rule within a moment, then 30 more
    // while the first digest is out.
    for n in 0..120 {
        let user = format!("user{n:03}");
        outbox
            .enqueue(&page(&format!("a{n}:1"), "spike", &user), &["mail"])
            .await
            .expect("enqueue");
    }
    let first = server.wait_for(1, WAIT).await;
    for n in 120..150 {
        let user = format!("user{n:03}");
        outbox
            .enqueue(&page(&format!("a{n}:1"), "spike", &user), &["mail"])
            .await
            .expect("enqueue");
    }
    eventually("everything paged", WAIT, || {
        outbox.counters()[0].queued == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mails = server.mails();
    assert!(
        (2..=3).contains(&mails.len()),
        "{} mails for 150 alerts: {:?}",
        mails.len(),
        mails.iter().map(|mail| &mail.subject).collect::<Vec<_>>()
    );
    assert!(
        first[0].subject.contains("Rule spike") && first[0].subject.contains("alerts: user"),
        "{}",
        first[0].subject
    );
    // Every alert is in a digest: named, or counted in "… and N more".
    let mut named = 0;
    let mut counted = 0;
    for mail in &mails {
        let text = mail.text.clone().unwrap_or_default();
        named += text.matches("10 failed logins of user").count();
        if let Some(rest) = text.split("… and ").nth(1) {
            counted += rest
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
        }
    }
    assert_eq!(named + counted, 150, "{mails:#?}");
    assert_eq!(outbox.counters()[0].sent as usize, mails.len());
}

#[tokio::test]
async fn a_group_in_its_interval_does_not_hold_up_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = SmtpServer::start(dir.path(), port, &SmtpOptions::default());
    let outbox = Outbox::open(&dir.path().join("outbox"), &["mail"]).expect("open");
    let _stop = run(
        &outbox,
        port,
        Grouping {
            by: vec!["rule".to_owned()],
            wait: Duration::ZERO,
            interval: Duration::from_secs(4),
        },
    );
    outbox
        .enqueue(&page("s1:1", "spike", "alice"), &["mail"])
        .await
        .expect("enqueue");
    server.wait_for(1, WAIT).await;
    // The spike group was just paged: its next waits 4 s; the travel alert goes at once.
    let queued = Instant::now();
    outbox
        .enqueue(&page("s2:1", "spike", "bob"), &["mail"])
        .await
        .expect("enqueue");
    outbox
        .enqueue(&page("t1:1", "travel", "carol"), &["mail"])
        .await
        .expect("enqueue");
    let two = server.wait_for(2, WAIT).await;
    assert!(
        two[1].subject.contains("Rule travel"),
        "{:?}",
        two.iter().map(|mail| &mail.subject).collect::<Vec<_>>()
    );
    assert!(
        queued.elapsed() < Duration::from_secs(3),
        "{:?}",
        queued.elapsed()
    );
    let three = server.wait_for(3, WAIT).await;
    assert!(
        three[2].subject.contains("Rule spike"),
        "{}",
        three[2].subject
    );
    assert!(
        queued.elapsed() >= Duration::from_millis(3500),
        "the spike group's interval was not kept: {:?}",
        queued.elapsed()
    );
    eventually("nothing waits", WAIT, || outbox.counters()[0].queued == 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.mails().len(), 3);
}

#[tokio::test]
async fn grouped_pages_waiting_at_a_restart_are_sent_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let outbox_dir = dir.path().join("outbox");
    let grouping = Grouping {
        by: vec!["rule".to_owned()],
        wait: Duration::from_secs(60),
        interval: Duration::from_secs(60),
    };
    {
        let outbox = Outbox::open(&outbox_dir, &["mail"]).expect("open");
        let stop = run(&outbox, port, grouping.clone());
        for n in 0..3 {
            outbox
                .enqueue(&page(&format!("r{n}:1"), "spike", "dave"), &["mail"])
                .await
                .expect("enqueue");
        }
        // Stopped while the group waits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = stop.send(());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let server = SmtpServer::start(dir.path(), port, &SmtpOptions::default());
    let outbox = Outbox::open(&outbox_dir, &["mail"]).expect("reopen");
    assert_eq!(outbox.counters()[0].queued, 3);
    // The new loop waits half a second: the three pages from before go as one digest.
    let _stop = run(
        &outbox,
        port,
        Grouping {
            wait: Duration::from_millis(500),
            ..grouping
        },
    );
    let mails = server.wait_for(1, WAIT).await;
    assert!(
        mails[0].subject.contains("3 alerts"),
        "{}",
        mails[0].subject
    );
    eventually("nothing waits", WAIT, || outbox.counters()[0].queued == 0).await;
}

/// A receiver in a mute time holds its pages in the outbox and delivers them when it ends
/// (here: a mute time from this minute to the next, in UTC).
#[tokio::test]
async fn a_mute_time_holds_pages_until_it_ends() {
    use alerting::notify::mute::MuteTimeConfig;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = SmtpServer::start(dir.path(), port, &SmtpOptions::default());
    // At least 5 s of mute left: this minute, or the next one.
    let mut now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    if now.second() >= 55 {
        tokio::time::sleep(Duration::from_secs(6)).await;
        now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    }
    let minute = |zoned: &jiff::ZonedDateTime| format!("{:02}:{:02}", zoned.hour(), zoned.minute());
    let next = now
        .checked_add(jiff::SignedDuration::from_mins(1))
        .expect("next minute");
    let mute = MuteTimeConfig {
        weekdays: Vec::new(),
        start: Some(minute(&now)),
        end: Some(if next.hour() == 0 && next.minute() == 0 {
            "24:00".to_owned()
        } else {
            minute(&next)
        }),
        timezone: None,
    }
    .check()
    .expect("a mute time");
    let ends =
        alerting::notify::mute::muted_until(std::slice::from_ref(&mute), jiff::Timestamp::now())
            .expect("muted now");
    let outbox = Outbox::open(&dir.path().join("outbox"), &["mail"]).expect("open");
    let (stop, stopped) = oneshot::channel::<()>();
    let running = outbox.clone();
    tokio::spawn(async move {
        running
            .run_grouped(
                vec![(
                    "mail".to_owned(),
                    mail_to(port),
                    Delivery {
                        grouping: None,
                        mute: vec![mute],
                    },
                )],
                RetryPolicy::default(),
                async {
                    let _ = stopped.await;
                },
            )
            .await
            .expect("run");
    });
    outbox
        .enqueue(&page("m1:1", "spike", "ivy"), &["mail"])
        .await
        .expect("enqueue");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(server.mails().is_empty(), "a page went out in a mute time");
    assert_eq!(outbox.counters()[0].queued, 1);
    let mails = server.wait_for(1, Duration::from_secs(75)).await;
    assert!(
        jiff::Timestamp::now() >= ends,
        "delivered at {} before the mute time ended at {ends}",
        jiff::Timestamp::now()
    );
    assert!(
        mails[0].subject.contains("Rule spike"),
        "{}",
        mails[0].subject
    );
    let _ = stop.send(());
}
