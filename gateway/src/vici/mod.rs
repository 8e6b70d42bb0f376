//! strongSwan's VICI interface: the [`wire`] codec, an async [`client`], and the
//! [`tracker`] that turns charon's events into [`model::Event`]s.
//!
//! [`run`] is the source the agent runs for a `type = "vici"` source: it connects to
//! charon's socket, subscribes to the events, reconciles with `list-sas` on every
//! (re)connect, and spools what the tracker produces, persisting the tracker's state after
//! each append. When charon goes away it reconnects with backoff.

pub mod client;
pub mod tracker;
pub mod wire;

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use model::{Event, Observer};
use tokio::sync::watch;

use crate::ship::Backoff;
use crate::sink::Sink;
use crate::{Error, Result};
use client::Client;
use tracker::{Produced, Tracker, TrackerState};
use wire::Message;

/// The events the source subscribes to.
pub const EVENTS: [&str; 6] = [
    "ike-updown",
    "child-updown",
    "ike-rekey",
    "child-rekey",
    "ike-update",
    "log",
];

/// `event.dataset` of VICI events.
pub const DATASET: &str = "strongswan.vici";

/// What the VICI source needs.
#[derive(Debug, Clone)]
pub struct ViciSource {
    pub socket: PathBuf,
    /// Where the tracker's state is kept between runs.
    pub state_path: PathBuf,
    /// `observer.hostname` of the events (the gateway's name).
    pub hostname: String,
}

impl ViciSource {
    /// Runs until `stop` turns true. Errors only when state cannot be written; charon being
    /// away is retried forever.
    pub async fn run(self, mut sink: Sink, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut tracker = Tracker::new(load_state(&self.state_path)?);
        let mut backoff = Backoff::new();
        let mut down_since: Option<Timestamp> = None;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let session = self.session(&mut tracker, &mut sink, &mut stop).await;
            let mut out = Vec::new();
            tracker.on_disconnect(&mut out);
            if !self.spool(out, &tracker, &mut sink, &mut stop).await? {
                return Ok(());
            }
            let error = match session {
                Ok(SessionEnd::Stopped) => return Ok(()),
                Ok(SessionEnd::Lost(error)) => {
                    // It worked until now: start the backoff over.
                    backoff.reset();
                    down_since = None;
                    error
                }
                Err(error @ Error::Vici { .. }) => error,
                Err(error) => return Err(error),
            };
            let delay = backoff.next_delay();
            if down_since.is_none() {
                down_since = Some(Timestamp::now());
                tracing::warn!(socket = %self.socket.display(), %error, retry_in_ms = delay.as_millis() as u64, "VICI connection lost or refused; reconnecting");
            } else {
                tracing::debug!(socket = %self.socket.display(), %error, retry_in_ms = delay.as_millis() as u64, "VICI still unreachable");
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = stop.changed() => return Ok(()),
            }
        }
    }

    /// One connection: subscribe, reconcile, then follow events until the socket fails.
    async fn session(
        &self,
        tracker: &mut Tracker,
        sink: &mut Sink,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd> {
        let mut client = Client::connect(&self.socket).await?;
        // Subscribe first, then list: whatever happens in between arrives as an event and
        // is matched against the snapshot, so nothing falls between the two.
        for event in EVENTS {
            client.register(event).await?;
        }
        let stats = client.request("stats", &Message::new()).await?;
        let charon_since = stats
            .section("uptime")
            .and_then(|uptime| uptime.str("since"));
        let (listed, _) = client
            .streamed("list-sas", "list-sa", &Message::new())
            .await?;
        let mut out = Vec::new();
        tracker.reconcile(charon_since.clone(), &listed, Timestamp::now(), &mut out);
        tracing::info!(socket = %self.socket.display(), charon_since = charon_since.as_deref().unwrap_or("?"), n_sas = listed.len(), n_reconciled = out.len(), "following charon over VICI");
        if !self.spool(out, tracker, sink, stop).await? {
            return Ok(SessionEnd::Stopped);
        }
        loop {
            let mut out = Vec::new();
            let tick = if tracker.has_queued() {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(3600)
            };
            let received = tokio::select! {
                received = client.next_event() => Some(received),
                () = tokio::time::sleep(tick) => None,
                _ = stop.changed() => {
                    tracker.flush(&mut out);
                    self.spool(out, tracker, sink, stop).await?;
                    return Ok(SessionEnd::Stopped);
                }
            };
            match received {
                Some(Ok(event)) => tracker.on_event(event, Timestamp::now(), &mut out),
                Some(Err(error)) => {
                    if !out.is_empty() {
                        self.spool(out, tracker, sink, stop).await?;
                    }
                    return Ok(SessionEnd::Lost(error));
                }
                None => tracker.tick(Timestamp::now(), &mut out),
            }
            if !out.is_empty() && !self.spool(out, tracker, sink, stop).await? {
                return Ok(SessionEnd::Stopped);
            }
        }
    }

    /// Spools produced events, then persists the tracker's state (so a restart neither
    /// repeats nor misses them; a crash between the two fsyncs can repeat one batch). With
    /// nothing produced the state is persisted all the same: a reconcile that reported
    /// nothing may still have learnt charon's start time or the SAs' SPIs.
    async fn spool(
        &self,
        produced: Vec<Produced>,
        tracker: &Tracker,
        sink: &mut Sink,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<bool> {
        if produced.is_empty() {
            store_state(&self.state_path, tracker.state())?;
            return Ok(true);
        }
        let events: Vec<Event> = produced
            .into_iter()
            .map(|produced| Event {
                id: sink.next_id(),
                timestamp: produced.timestamp,
                dataset: DATASET.to_owned(),
                observer: Observer {
                    hostname: Some(self.hostname.clone()),
                    product: Some("strongswan".to_owned()),
                },
                original: produced.original,
                session_id: None,
                source_geo: None,
                body: produced.body,
            })
            .collect();
        if !sink.append(events, stop).await? {
            return Ok(false);
        }
        store_state(&self.state_path, tracker.state())?;
        Ok(true)
    }
}

/// How a connection ended.
enum SessionEnd {
    Stopped,
    /// The socket failed after the connection was set up; reconnect.
    Lost(Error),
}

fn load_state(path: &Path) -> Result<TrackerState> {
    Ok(durable::read_json(path, "VICI tracker state")?.unwrap_or_default())
}

fn store_state(path: &Path, state: &TrackerState) -> Result<()> {
    Ok(durable::write_json(path, "VICI tracker state", state)?)
}
