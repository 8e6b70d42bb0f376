//! The durable outbox: every notification is on disk before any channel sees it, and each
//! receiver gets it once.
//!
//! The principal type is [`Outbox`], a [`durable::Spool`] of [`Queued`] records with one
//! cursor per receiver. [`Outbox::enqueue`] returns once the record is fsynced; then one
//! delivery loop per receiver ([`Outbox::run`]) peeks the next record addressed to it,
//! sends it, and commits its cursor past it only once it was delivered or dead-lettered.
//!
//! **Delivered once, or twice after a crash.** A notification whose cursor was committed is
//! never sent again, across restarts. A crash (or a shutdown mid-send) between a send and
//! its commit sends it again at the next start: that is why each channel marks it with
//! [`Notification::id`] (the mail's `Message-ID`, the webhook's `Idempotency-Key`), so the
//! receiving end can drop the second copy.
//!
//! Transient failures are retried with exponential backoff and jitter
//! ([`RetryPolicy::next_step`], a pure function of the attempt, the time since the first
//! failure and a random number), in order: a receiver's later notifications wait behind
//! one it is retrying. A permanent failure, or a transient one that outlasts
//! [`RetryPolicy::give_up_after`], goes to the dead-letter file (`dead-letter.jsonl`, one
//! JSON object a line, fsynced), is counted and logged, and the loop moves on: nothing is
//! dropped silently. A failing spool or dead-letter file (a full disk) stops nothing
//! either: the loop logs it and tries again.
//!
//! **Grouped, not a storm.** A receiver with a [`Grouping`] ([`Outbox::run_grouped`]) sends
//! the notifications of one group (same status and the same values of its `group_by`: rule,
//! severity, user or a label) as one digest ([`super::digest`]): the group's first waits
//! [`Grouping::wait`] for others to join it, and a group that was just paged waits
//! [`Grouping::interval`] before its next digest. Other groups are not held up by a waiting
//! one: what was sent beyond the cursor is remembered, and the cursor moves past every
//! notification dealt with in order. (After a crash, those sent beyond the cursor are sent
//! again, possibly in other digests.)
//!
//! Layout: `<dir>/spool/` (the spool, `cursor-<receiver>.json` per receiver) and
//! `<dir>/dead-letter.jsonl`.

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::{DeliveryError, Error, Failure, Notification, Notifier, Result};

/// The spool's bound: past it, [`Outbox::enqueue`] fails (the slowest receiver holds it).
/// Opening reads what is queued once, to count it: this bounds that too.
pub const MAX_SPOOL_BYTES: u64 = 64 * 1024 * 1024;
/// The dead-letter file, in the outbox's directory.
pub const DEAD_LETTER_FILE: &str = "dead-letter.jsonl";

/// One spooled notification and the receivers it goes to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    pub receivers: Vec<String>,
    pub notification: Notification,
    /// When it was queued (absent in records of older versions: long ago).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<Timestamp>,
}

/// How one receiver bundles its notifications (Alertmanager's `group_by`, `group_wait`,
/// `group_interval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// What makes a group besides the status: `rule`, `severity`, `user`, or a label name
    /// (`user.name`, `source.ip`, …). Empty: one group per status.
    pub by: Vec<String>,
    /// How long a group's first notification waits for others.
    pub wait: Duration,
    /// How long after a group's digest its next one may go.
    pub interval: Duration,
}

/// How a receiver's loop delivers: bundled by group or one by one, and not in its mute times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    pub grouping: Option<Grouping>,
    pub mute: Vec<super::mute::MuteTime>,
}

/// Most notifications looked at (and put in one digest) at a time.
pub const MAX_GROUPED: usize = 500;

impl Grouping {
    /// The group of a notification: its status and the values of `by`.
    pub fn key(&self, notification: &Notification) -> String {
        let mut key = notification.status.clone();
        for name in &self.by {
            let value = match name.as_str() {
                "rule" => Some(notification.rule_id.as_str()),
                "severity" => Some(notification.severity.as_str()),
                "user" => notification.user.as_deref(),
                label => notification.labels.get(label).map(String::as_str),
            };
            key.push('\u{1f}');
            key.push_str(value.unwrap_or(""));
        }
        key
    }
}

/// One line of the dead-letter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub at: Timestamp,
    pub receiver: String,
    pub failure: Failure,
    pub error: String,
    pub n_attempts: u32,
    pub notification: Notification,
}

/// When to try again after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failure (before jitter).
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A notification still failing this long after its first failure is dead-lettered.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// What to do after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// After `n_failures` failures (1 after the first), `elapsed` since the first of them:
    /// retry after `initial · 2^(n_failures-1)`, capped at `max`, of which the upper half
    /// is scaled by `jitter` (in `[0, 1]`, clamped); or give up once `elapsed` reaches
    /// `give_up_after`. Pure.
    pub fn next_step(&self, n_failures: u32, elapsed: Duration, jitter: f64) -> Step {
        if elapsed >= self.give_up_after {
            return Step::GiveUp;
        }
        let exponent = n_failures.saturating_sub(1).min(32);
        let base = self
            .initial
            .saturating_mul(1u32 << exponent.min(31))
            .min(self.max);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let half = base / 2;
        Step::RetryAfter(half + half.mul_f64(jitter))
    }
}

/// A uniform number in `[0, 1)` from the OS (0.5 if it has none to give).
fn random_unit() -> f64 {
    getrandom::u64().map_or(0.5, |bits| (bits >> 11) as f64 / (1u64 << 53) as f64)
}

/// Per-receiver counters, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub receiver: String,
    /// Notifications delivered since open.
    pub sent: u64,
    /// Failed attempts since open (each retried or dead-lettered).
    pub failed: u64,
    /// Notifications dead-lettered since open.
    pub dead_lettered: u64,
    /// Notifications waiting for this receiver (on disk, not yet delivered).
    pub queued: u64,
}

#[derive(Debug, Default)]
struct AtomicCounters {
    sent: AtomicU64,
    failed: AtomicU64,
    dead_lettered: AtomicU64,
    queued: AtomicU64,
}

#[derive(Debug)]
struct Receiver {
    name: String,
    counters: AtomicCounters,
    /// Woken by each enqueue for this receiver (a permit is kept if the loop is busy).
    wake: Notify,
}

#[derive(Debug)]
struct Shared {
    spool: Mutex<durable::Spool<Queued>>,
    dead_letter_path: PathBuf,
    receivers: Vec<Receiver>,
}

/// The durable outbox; cheap to clone (every clone is the same outbox).
#[derive(Debug, Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` for these receivers (each name 1 to 64 of
    /// `a-z 0-9 - _`). A new receiver starts at the slowest one's place; a receiver no
    /// longer named loses what was queued for it. Blocks on the disk: call at start.
    pub fn open(dir: &Path, receivers: &[&str]) -> Result<Outbox> {
        let mut spool: durable::Spool<Queued> = durable::Spool::open(
            &dir.join("spool"),
            receivers,
            durable::Limits::new(MAX_SPOOL_BYTES),
        )?;
        let mut shared_receivers = Vec::with_capacity(receivers.len());
        for name in receivers {
            // Whatever is behind the cursor is waiting: count what is addressed here.
            let n_queued = match spool.peek(name, usize::MAX, usize::MAX)? {
                Some(peeked) => peeked
                    .records
                    .iter()
                    .filter(|queued| queued.receivers.iter().any(|receiver| receiver == name))
                    .count() as u64,
                None => 0,
            };
            let receiver = Receiver {
                name: (*name).to_owned(),
                counters: AtomicCounters::default(),
                wake: Notify::new(),
            };
            receiver.counters.queued.store(n_queued, Ordering::Relaxed);
            if n_queued > 0 {
                tracing::info!(receiver = %name, n_queued, "notifications waiting from before");
            }
            shared_receivers.push(receiver);
        }
        Ok(Outbox {
            shared: Arc::new(Shared {
                spool: Mutex::new(spool),
                dead_letter_path: dir.join(DEAD_LETTER_FILE),
                receivers: shared_receivers,
            }),
        })
    }

    /// Writes `notification` for `receivers` and returns once it is fsynced: only then may
    /// it be considered sent. Fails, writing nothing, for an unknown or no receiver and
    /// when the spool is full.
    pub async fn enqueue(&self, notification: &Notification, receivers: &[&str]) -> Result<()> {
        if receivers.is_empty() {
            return Err(Error::Notifier(format!(
                "notification {} is routed to no receiver",
                notification.id
            )));
        }
        for name in receivers {
            self.receiver(name)?;
        }
        let mut names: Vec<String> = receivers.iter().map(|name| (*name).to_owned()).collect();
        names.sort();
        names.dedup();
        let queued = Queued {
            receivers: names,
            notification: notification.clone(),
            queued_at: Some(Timestamp::now()),
        };
        let shared = Arc::clone(&self.shared);
        let record = queued.clone();
        tokio::task::spawn_blocking(move || lock(&shared.spool).append(&record))
            .await
            .map_err(|error| {
                Error::Internal(format!("the outbox's write task failed: {error}"))
            })??;
        for name in &queued.receivers {
            let receiver = self.receiver(name)?;
            receiver.counters.queued.fetch_add(1, Ordering::Relaxed);
            receiver.wake.notify_one();
        }
        tracing::debug!(notification = %notification.id, receivers = ?queued.receivers, "notification queued");
        Ok(())
    }

    /// The counters of every receiver, in the order given at open.
    pub fn counters(&self) -> Vec<Counters> {
        self.shared
            .receivers
            .iter()
            .map(|receiver| Counters {
                receiver: receiver.name.clone(),
                sent: receiver.counters.sent.load(Ordering::Relaxed),
                failed: receiver.counters.failed.load(Ordering::Relaxed),
                dead_lettered: receiver.counters.dead_lettered.load(Ordering::Relaxed),
                queued: receiver.counters.queued.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The dead-letter file's path.
    pub fn dead_letter_path(&self) -> &Path {
        &self.shared.dead_letter_path
    }

    /// Runs one delivery loop per receiver until `shutdown` resolves. Every receiver the
    /// outbox was opened with needs a notifier, and only those. A send in flight at
    /// shutdown is abandoned uncommitted: it is sent again at the next start.
    pub async fn run(
        &self,
        notifiers: Vec<(String, Arc<dyn Notifier>)>,
        policy: RetryPolicy,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        for (name, _) in &notifiers {
            self.receiver(name)?;
        }
        for receiver in &self.shared.receivers {
            if !notifiers.iter().any(|(name, _)| *name == receiver.name) {
                return Err(Error::Notifier(format!(
                    "receiver {:?} has no notifier",
                    receiver.name
                )));
            }
        }
        let (stop_sender, stop) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for (name, notifier) in notifiers {
            let outbox = self.clone();
            let stop = stop.clone();
            tasks
                .spawn(async move { outbox.deliver(&name, notifier.as_ref(), policy, stop).await });
        }
        shutdown.await;
        let _ = stop_sender.send(true);
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "an outbox delivery task failed");
            }
        }
        Ok(())
    }

    /// [`Outbox::run`] with receivers that bundle their notifications ([`Grouping`]) or keep
    /// mute times: each with its [`Delivery`].
    pub async fn run_grouped(
        &self,
        notifiers: Vec<(String, Arc<dyn Notifier>, Delivery)>,
        policy: RetryPolicy,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        for (name, _, _) in &notifiers {
            self.receiver(name)?;
        }
        for receiver in &self.shared.receivers {
            if !notifiers.iter().any(|(name, _, _)| *name == receiver.name) {
                return Err(Error::Notifier(format!(
                    "receiver {:?} has no notifier",
                    receiver.name
                )));
            }
        }
        let (stop_sender, stop) = watch::channel(false);
        let mut tasks = tokio::task::JoinSet::new();
        for (name, notifier, delivery) in notifiers {
            let outbox = self.clone();
            let stop = stop.clone();
            tasks.spawn(async move {
                let grouping = delivery.grouping.clone().unwrap_or(Grouping {
                    by: Vec::new(),
                    wait: Duration::ZERO,
                    interval: Duration::ZERO,
                });
                if delivery.grouping.is_none() && delivery.mute.is_empty() {
                    outbox.deliver(&name, notifier.as_ref(), policy, stop).await;
                } else {
                    outbox
                        .deliver_grouped(
                            &name,
                            notifier.as_ref(),
                            &grouping,
                            delivery.grouping.is_some(),
                            &delivery.mute,
                            policy,
                            stop,
                        )
                        .await;
                }
            });
        }
        shutdown.await;
        let _ = stop_sender.send(true);
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "an outbox delivery task failed");
            }
        }
        Ok(())
    }

    /// One grouping receiver's loop: look at what waits, send each group whose time has
    /// come as one digest, move the cursor past what was dealt with in order, sleep until the
    /// next group is due or something new arrives.
    #[allow(clippy::too_many_arguments)]
    async fn deliver_grouped(
        &self,
        name: &str,
        notifier: &dyn Notifier,
        grouping: &Grouping,
        bundle: bool,
        mute: &[super::mute::MuteTime],
        policy: RetryPolicy,
        mut stop: watch::Receiver<bool>,
    ) {
        let Ok(receiver) = self.receiver(name) else {
            return;
        };
        // Notification ids sent beyond the cursor, and when each group was last paged.
        let mut sent: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut last_paged: std::collections::HashMap<String, Instant> =
            std::collections::HashMap::new();
        let mut n_disk_failures = 0u32;
        loop {
            if *stop.borrow() {
                return;
            }
            let peeked = match self.peek_n(name, MAX_GROUPED).await {
                Ok(peeked) => peeked,
                Err(error) => {
                    n_disk_failures += 1;
                    tracing::error!(receiver = %name, %error, "cannot read the outbox; retrying");
                    if !pause(&policy, n_disk_failures, &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(peeked) = peeked else {
                tokio::select! {
                    () = receiver.wake.notified() => {}
                    _ = stop.changed() => return,
                }
                continue;
            };
            let addressed = |queued: &Queued| queued.receivers.iter().any(|to| to == name);
            // A mute time holds the pages (in the outbox) until it ends.
            if let Some(until) = super::mute::muted_until(mute, Timestamp::now())
                && peeked
                    .records
                    .iter()
                    .any(|queued| addressed(queued) && !sent.contains(&queued.notification.id))
            {
                let wait: Duration = until
                    .duration_since(Timestamp::now())
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                tracing::info!(receiver = %name, until = %until, "pages wait for the end of a mute time");
                tokio::select! {
                    () = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            // The waiting notifications by group (each its own group without bundling), in
            // the order they came.
            let mut groups: Vec<(String, Vec<&Queued>)> = Vec::new();
            for queued in peeked.records.iter() {
                if !addressed(queued) || sent.contains(&queued.notification.id) {
                    continue;
                }
                let key = if bundle {
                    grouping.key(&queued.notification)
                } else {
                    queued.notification.id.clone()
                };
                match groups.iter_mut().find(|(known, _)| *known == key) {
                    Some((_, members)) => members.push(queued),
                    None => groups.push((key, vec![queued])),
                }
            }
            let now = Timestamp::now();
            let mut next_due: Option<Duration> = None;
            for (key, members) in groups {
                let first = members
                    .iter()
                    .filter_map(|queued| queued.queued_at)
                    .min()
                    .unwrap_or(Timestamp::UNIX_EPOCH);
                let waited = now
                    .duration_since(first)
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                let mut left = grouping.wait.saturating_sub(waited);
                if let Some(paged) = last_paged.get(&key) {
                    left = left.max(grouping.interval.saturating_sub(paged.elapsed()));
                }
                if !left.is_zero() {
                    next_due = Some(next_due.map_or(left, |due| due.min(left)));
                    continue;
                }
                let notifications: Vec<Notification> = members
                    .iter()
                    .map(|queued| queued.notification.clone())
                    .collect();
                let page = super::digest(&notifications);
                if !self
                    .attempt(receiver, notifier, &page, policy, &mut stop)
                    .await
                {
                    return; // stopped: not committed, sent again at the next start
                }
                if notifications.len() > 1 {
                    tracing::info!(receiver = %name, digest = %page.id, n_notifications = notifications.len(), "notifications sent as one digest");
                }
                last_paged.insert(key, Instant::now());
                for notification in &notifications {
                    sent.insert(notification.id.clone());
                }
                let _ = receiver.counters.queued.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |queued| Some(queued.saturating_sub(notifications.len() as u64)),
                );
            }
            // The cursor moves past what was dealt with, in order.
            let done = peeked
                .records
                .iter()
                .take_while(|queued| !addressed(queued) || sent.contains(&queued.notification.id))
                .count();
            if done > 0 {
                let committed = match self.peek_n(name, done).await {
                    Ok(Some(prefix)) => self.commit(name, prefix.next).await,
                    Ok(None) => Ok(()),
                    Err(error) => Err(error),
                };
                match committed {
                    Ok(()) => {
                        n_disk_failures = 0;
                        for queued in peeked.records.iter().take(done) {
                            sent.remove(&queued.notification.id);
                        }
                    }
                    Err(error) => {
                        n_disk_failures += 1;
                        tracing::error!(receiver = %name, %error, "cannot move the outbox cursor; retrying");
                        if !pause(&policy, n_disk_failures, &mut stop).await {
                            return;
                        }
                    }
                }
                continue;
            }
            // Nothing to do until a group is due or something new arrives.
            let due = next_due.unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                () = tokio::time::sleep(due) => {}
                () = receiver.wake.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    async fn peek_n(&self, name: &str, n: usize) -> Result<Option<durable::Peeked<Queued>>> {
        let shared = Arc::clone(&self.shared);
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || lock(&shared.spool).peek(&name, n, usize::MAX))
            .await
            .map_err(|error| Error::Internal(format!("the outbox's read task failed: {error}")))?
            .map_err(Error::from)
    }

    fn receiver(&self, name: &str) -> Result<&Receiver> {
        self.shared
            .receivers
            .iter()
            .find(|receiver| receiver.name == name)
            .ok_or_else(|| Error::UnknownReceiver(name.to_owned()))
    }

    /// One receiver's loop: peek, send (retrying), commit; wait when there is nothing.
    async fn deliver(
        &self,
        name: &str,
        notifier: &dyn Notifier,
        policy: RetryPolicy,
        mut stop: watch::Receiver<bool>,
    ) {
        let Ok(receiver) = self.receiver(name) else {
            return;
        };
        let mut n_disk_failures = 0u32;
        loop {
            if *stop.borrow() {
                return;
            }
            let peeked = match self.peek(name).await {
                Ok(peeked) => peeked,
                Err(error) => {
                    n_disk_failures += 1;
                    tracing::error!(receiver = %name, %error, "cannot read the outbox; retrying");
                    if !pause(&policy, n_disk_failures, &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            let Some(peeked) = peeked else {
                tokio::select! {
                    () = receiver.wake.notified() => {}
                    _ = stop.changed() => return,
                }
                continue;
            };
            for damage in &peeked.damage {
                tracing::error!(receiver = %name, %damage, "skipped a damaged outbox record");
            }
            let mut addressed = false;
            if let Some(queued) = peeked.records.first()
                && queued.receivers.iter().any(|receiver| receiver == name)
            {
                addressed = true;
                let delivered = self
                    .attempt(receiver, notifier, &queued.notification, policy, &mut stop)
                    .await;
                if !delivered {
                    return; // stopped: not committed, sent again at the next start
                }
            }
            loop {
                match self.commit(name, peeked.next).await {
                    Ok(()) => break,
                    Err(error) => {
                        n_disk_failures += 1;
                        tracing::error!(receiver = %name, %error, "cannot move the outbox cursor; retrying");
                        if !pause(&policy, n_disk_failures, &mut stop).await {
                            return;
                        }
                    }
                }
            }
            n_disk_failures = 0;
            if addressed {
                let _ = receiver.counters.queued.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |queued| Some(queued.saturating_sub(1)),
                );
            }
        }
    }

    /// Sends until delivered or dead-lettered (`true`), or until stopped (`false`).
    async fn attempt(
        &self,
        receiver: &Receiver,
        notifier: &dyn Notifier,
        notification: &Notification,
        policy: RetryPolicy,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let name = receiver.name.as_str();
        let mut n_failures = 0u32;
        let mut first_failure: Option<Instant> = None;
        loop {
            let sent = tokio::select! {
                sent = notifier.send(notification) => sent,
                _ = stop.changed() => return false,
            };
            let error = match sent {
                Ok(()) => {
                    receiver.counters.sent.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(receiver = %name, notification = %notification.id, n_failures, "notification delivered");
                    return true;
                }
                Err(error) => error,
            };
            n_failures += 1;
            receiver.counters.failed.fetch_add(1, Ordering::Relaxed);
            let since = *first_failure.get_or_insert_with(Instant::now);
            let step = match error.failure {
                Failure::Permanent => Step::GiveUp,
                Failure::Transient => policy.next_step(n_failures, since.elapsed(), random_unit()),
            };
            match step {
                Step::RetryAfter(delay) => {
                    tracing::warn!(
                        receiver = %name,
                        notification = %notification.id,
                        error = %error.detail,
                        n_failures,
                        retry_in_ms = delay.as_millis() as u64,
                        "notification not delivered; retrying"
                    );
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return false,
                    }
                }
                Step::GiveUp => {
                    return self
                        .dead_letter(receiver, notification, &error, n_failures, policy, stop)
                        .await;
                }
            }
        }
    }

    /// Writes the dead letter (retrying a failing disk until stopped) and counts it.
    async fn dead_letter(
        &self,
        receiver: &Receiver,
        notification: &Notification,
        error: &DeliveryError,
        n_attempts: u32,
        policy: RetryPolicy,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let letter = DeadLetter {
            at: Timestamp::now(),
            receiver: receiver.name.clone(),
            failure: error.failure,
            error: error.detail.clone(),
            n_attempts,
            notification: notification.clone(),
        };
        let mut n_disk_failures = 0;
        loop {
            let path = self.shared.dead_letter_path.clone();
            let line = letter.clone();
            let written = tokio::task::spawn_blocking(move || append_dead_letter(&path, &line))
                .await
                .map_err(|error| Error::Internal(format!("the dead-letter task failed: {error}")))
                .and_then(|written| written);
            match written {
                Ok(()) => break,
                Err(disk_error) => {
                    n_disk_failures += 1;
                    tracing::error!(receiver = %receiver.name, error = %disk_error, "cannot write a dead letter; retrying");
                    if !pause(&policy, n_disk_failures, stop).await {
                        return false;
                    }
                }
            }
        }
        receiver
            .counters
            .dead_lettered
            .fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            receiver = %receiver.name,
            notification = %notification.id,
            failure = ?error.failure,
            error = %error.detail,
            n_attempts,
            path = %self.shared.dead_letter_path.display(),
            "notification dead-lettered"
        );
        true
    }

    async fn peek(&self, name: &str) -> Result<Option<durable::Peeked<Queued>>> {
        let shared = Arc::clone(&self.shared);
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || lock(&shared.spool).peek(&name, 1, usize::MAX))
            .await
            .map_err(|error| Error::Internal(format!("the outbox's read task failed: {error}")))?
            .map_err(Error::from)
    }

    async fn commit(&self, name: &str, next: durable::Position) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || lock(&shared.spool).commit(&name, next))
            .await
            .map_err(|error| Error::Internal(format!("the outbox's commit task failed: {error}")))?
            .map_err(Error::from)
    }
}

/// The spool, even if a task panicked holding it (the spool's state is on disk).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits the backoff for `n_failures` disk failures; `false` if stopped meanwhile.
async fn pause(policy: &RetryPolicy, n_failures: u32, stop: &mut watch::Receiver<bool>) -> bool {
    let delay = match policy.next_step(n_failures, Duration::ZERO, random_unit()) {
        Step::RetryAfter(delay) => delay,
        Step::GiveUp => policy.max,
    };
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        _ = stop.changed() => false,
    }
}

/// Appends one line to the dead-letter file and fsyncs it (creating the file, and making
/// its directory entry durable, the first time).
fn append_dead_letter(path: &Path, letter: &DeadLetter) -> Result<()> {
    let failed = |source: std::io::Error| Error::DeadLetter {
        path: path.to_owned(),
        source,
    };
    let mut line = serde_json::to_vec(letter)
        .map_err(|error| Error::Internal(format!("cannot encode a dead letter: {error}")))?;
    line.push(b'\n');
    let existed = std::fs::metadata(path).is_ok();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(failed)?;
    file.write_all(&line).map_err(failed)?;
    file.sync_data().map_err(failed)?;
    if !existed && let Some(dir) = path.parent() {
        durable::sync_dir(dir)?;
    }
    Ok(())
}

/// Reads the dead-letter file (for tests and tools); a missing file is no letters.
pub fn read_dead_letters(path: &Path) -> Result<Vec<DeadLetter>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::ReadFile {
                what: "dead-letter file",
                path: path.to_owned(),
                source,
            });
        }
    };
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line).map_err(|error| {
                Error::Internal(format!("{}: bad dead letter: {error}", path.display()))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
