//! The outbox against real receivers: aiosmtpd (down, then up; answering 451, then
//! accepting; refusing a recipient) and an HTTP receiver answering 500, then 200. Each
//! notification arrives once, across a restart.

mod notify_support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use alerting::notify::email::{EmailConfig, TlsMode};
use alerting::notify::outbox::{Counters, Outbox, RetryPolicy, read_dead_letters};
use alerting::notify::webhook::{Format, WebhookConfig, signature};
use alerting::notify::{Failure, Notifier};
use notify_support::{HttpReceiver, SmtpOptions, SmtpServer, eventually, free_port, notification};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        give_up_after: Duration::from_secs(600),
    }
}

/// A plain-SMTP notifier for a relay on loopback `port`.
fn mail_to(port: u16, to: &str) -> Arc<dyn Notifier> {
    let config = EmailConfig {
        smtp_host: "127.0.0.1".to_owned(),
        smtp_port: Some(port),
        tls: TlsMode::None,
        username: None,
        password_file: None,
        from: "alerts@tw.example.org".to_owned(),
        to: vec![to.to_owned()],
        ca_file: None,
        timeout_secs: 5,
    };
    Arc::new(config.build().expect("build"))
}

/// The outbox's delivery loops, running until dropped or [`Running::stop`]ped.
struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    fn start(outbox: &Outbox, notifiers: Vec<(&str, Arc<dyn Notifier>)>) -> Running {
        let (stop, stopped) = oneshot::channel::<()>();
        let outbox = outbox.clone();
        let notifiers = notifiers
            .into_iter()
            .map(|(name, notifier)| (name.to_owned(), notifier))
            .collect();
        let task = tokio::spawn(async move {
            outbox
                .run(notifiers, fast_retries(), async {
                    let _ = stopped.await;
                })
                .await
                .expect("run");
        });
        Running {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("outbox task");
    }
}

fn counters(outbox: &Outbox, receiver: &str) -> Counters {
    outbox
        .counters()
        .into_iter()
        .find(|counters| counters.receiver == receiver)
        .expect("a receiver")
}

async fn settle() {
    // Long enough for a wrong second delivery to show up.
    tokio::time::sleep(Duration::from_millis(600)).await;
}

#[tokio::test]
async fn a_relay_that_is_down_then_up_gets_the_mail_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let outbox = Outbox::open(&dir.path().join("outbox"), &["mail"]).expect("open");
    let running = Running::start(&outbox, vec![("mail", mail_to(port, "soc@example.org"))]);
    outbox
        .enqueue(&notification("alert-7:1"), &["mail"])
        .await
        .expect("enqueue");
    eventually("two failed attempts", WAIT, || {
        counters(&outbox, "mail").failed >= 2
    })
    .await;
    assert_eq!(counters(&outbox, "mail").queued, 1);

    let server = SmtpServer::start(dir.path(), port, &SmtpOptions::default());
    let mails = server.wait_for(1, WAIT).await;
    assert_eq!(mails[0].message_id, "<tw.alert-7=3A1@tw.example.org>");
    eventually("sent counted", WAIT, || counters(&outbox, "mail").sent == 1).await;
    settle().await;
    assert_eq!(server.mails().len(), 1);
    let counted = counters(&outbox, "mail");
    assert_eq!(
        (counted.sent, counted.queued, counted.dead_lettered),
        (1, 0, 0)
    );
    running.stop().await;
}

#[tokio::test]
async fn a_relay_answering_451_first_gets_the_mail_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = SmtpServer::start(
        dir.path(),
        free_port(),
        &SmtpOptions {
            fail_first: 2,
            ..SmtpOptions::default()
        },
    );
    let outbox = Outbox::open(&dir.path().join("outbox"), &["mail"]).expect("open");
    let running = Running::start(
        &outbox,
        vec![("mail", mail_to(server.port, "soc@example.org"))],
    );
    outbox
        .enqueue(&notification("alert-7:1"), &["mail"])
        .await
        .expect("enqueue");
    server.wait_for(1, WAIT).await;
    eventually("sent counted", WAIT, || counters(&outbox, "mail").sent == 1).await;
    settle().await;
    assert_eq!(server.mails().len(), 1);
    let counted = counters(&outbox, "mail");
    assert_eq!((counted.sent, counted.failed, counted.queued), (1, 2, 0));
    running.stop().await;
}

#[tokio::test]
async fn pending_notifications_survive_a_restart_and_delivered_ones_are_not_resent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outbox_dir = dir.path().join("outbox");
    let outbox = Outbox::open(&outbox_dir, &["mail"]).expect("open");
    outbox
        .enqueue(&notification("alert-7:1"), &["mail"])
        .await
        .expect("enqueue");
    outbox
        .enqueue(&notification("alert-7:2"), &["mail"])
        .await
        .expect("enqueue");
    drop(outbox); // the process ends before any delivery

    let server = SmtpServer::start(dir.path(), free_port(), &SmtpOptions::default());
    let outbox = Outbox::open(&outbox_dir, &["mail"]).expect("reopen");
    assert_eq!(counters(&outbox, "mail").queued, 2);
    let running = Running::start(
        &outbox,
        vec![("mail", mail_to(server.port, "soc@example.org"))],
    );
    let mails = server.wait_for(2, WAIT).await;
    let ids: Vec<&str> = mails.iter().map(|mail| mail.message_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "<tw.alert-7=3A1@tw.example.org>",
            "<tw.alert-7=3A2@tw.example.org>"
        ]
    );
    eventually("both committed", WAIT, || {
        counters(&outbox, "mail").queued == 0
    })
    .await;
    running.stop().await;
    drop(outbox);

    let outbox = Outbox::open(&outbox_dir, &["mail"]).expect("reopen again");
    assert_eq!(counters(&outbox, "mail").queued, 0);
    let running = Running::start(
        &outbox,
        vec![("mail", mail_to(server.port, "soc@example.org"))],
    );
    settle().await;
    assert_eq!(
        server.mails().len(),
        2,
        "a delivered notification was sent again"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_refused_recipient_is_dead_lettered_and_the_queue_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = SmtpServer::start(
        dir.path(),
        free_port(),
        &SmtpOptions {
            reject_rcpt: Some("nobody@example.org".to_owned()),
            ..SmtpOptions::default()
        },
    );
    let outbox = Outbox::open(&dir.path().join("outbox"), &["bad", "good"]).expect("open");
    let running = Running::start(
        &outbox,
        vec![
            ("bad", mail_to(server.port, "nobody@example.org")),
            ("good", mail_to(server.port, "soc@example.org")),
        ],
    );
    outbox
        .enqueue(&notification("alert-7:1"), &["bad", "good"])
        .await
        .expect("enqueue");
    outbox
        .enqueue(&notification("alert-7:2"), &["bad"])
        .await
        .expect("enqueue");
    eventually("two dead letters", WAIT, || {
        counters(&outbox, "bad").dead_lettered == 2
    })
    .await;
    server.wait_for(1, WAIT).await;
    settle().await;
    assert_eq!(server.mails().len(), 1);
    let bad = counters(&outbox, "bad");
    assert_eq!((bad.sent, bad.failed, bad.queued), (0, 2, 0));
    let letters = read_dead_letters(outbox.dead_letter_path()).expect("dead letters");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0].receiver, "bad");
    assert_eq!(letters[0].failure, Failure::Permanent);
    assert!(letters[0].error.contains("550"), "{}", letters[0].error);
    assert_eq!(letters[1].notification.id, "alert-7:2");
    running.stop().await;
}

fn secret_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("hook.key");
    std::fs::write(&path, "hook secret\n").expect("secret");
    path
}

#[tokio::test]
async fn a_webhook_answering_500_then_200_gets_it_once_signed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = HttpReceiver::start(vec![500, 200]).await;
    let webhook: Arc<dyn Notifier> = Arc::new(
        WebhookConfig {
            url: receiver.url("/hooks/tunnelwatch"),
            secret_file: Some(secret_file(dir.path())),
            format: Format::Generic,
            timeout_secs: 5,
            allow_private: true,
            ca_file: None,
        }
        .build("hook")
        .expect("build"),
    );
    let outbox = Outbox::open(&dir.path().join("outbox"), &["hook"]).expect("open");
    let running = Running::start(&outbox, vec![("hook", webhook)]);
    outbox
        .enqueue(&notification("alert-7:1"), &["hook"])
        .await
        .expect("enqueue");
    eventually("sent counted", WAIT, || counters(&outbox, "hook").sent == 1).await;
    settle().await;
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "one failed attempt and one delivery");
    for request in &requests {
        assert_eq!(request.request_line, "POST /hooks/tunnelwatch HTTP/1.1");
        assert_eq!(request.headers["idempotency-key"], "alert-7:1");
        let timestamp = &request.headers["x-tunnelwatch-timestamp"];
        let expect = format!(
            "sha256={}",
            signature(b"hook secret", timestamp, &request.body)
        );
        assert_eq!(request.headers["x-tunnelwatch-signature"], expect);
    }
    let counted = counters(&outbox, "hook");
    assert_eq!((counted.sent, counted.failed, counted.queued), (1, 1, 0));
    running.stop().await;
}
