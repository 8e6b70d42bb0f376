//! The `capture` source ([`run_source`]): the flow task that owns the flow table, and the
//! capture of its interface, which it opens, and opens again whenever the interface comes
//! back after it was lost (kernel-libipsec's `ipsec0` across charon restarts).
//!
//! The flow table lives as long as the source, not as long as one capture: a flow whose
//! packets arrive before and after the interface came back is one flow, and flows go on being
//! expired by their timeouts while the interface is away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{
    Capture, CaptureCounters, CaptureError, CaptureOptions, CaptureSnapshot, PacketBatches,
};
use crate::flow::{FlowConfig, FlowSource, FlowStats, FlowTable};

/// The first wait for a missing or lost interface; each look that does not find it doubles
/// the wait, up to [`WAIT_MAX`].
const WAIT_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two looks for the interface.
const WAIT_MAX: Duration = Duration::from_secs(2);
/// A capture that ran at least this long before its interface was lost starts the back-off
/// afresh; one lost sooner goes on with it, so that an interface that keeps vanishing is not
/// opened in a tight loop.
const SETTLED: Duration = Duration::from_secs(10);

/// Waits between looks for the interface: bounded, doubling from [`WAIT_FIRST`] to
/// [`WAIT_MAX`].
#[derive(Debug)]
struct BackOff {
    next: Duration,
}

impl BackOff {
    fn new() -> BackOff {
        BackOff { next: WAIT_FIRST }
    }

    fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(WAIT_MAX);
        wait
    }

    fn reset(&mut self) {
        self.next = WAIT_FIRST;
    }
}

/// The capture while the interface is there.
struct Live {
    capture: Capture,
    packets: PacketBatches,
    since: std::time::Instant,
}

/// The next batch of the live capture; `None` once its thread has ended by itself (the
/// interface is lost). Never resolves while there is no capture.
async fn next_batch(live: &mut Option<Live>) -> Option<Vec<(i64, crate::flow::decode::Packet)>> {
    match live {
        Some(live) => live.packets.recv().await,
        None => std::future::pending().await,
    }
}

/// A `capture` source: captures the interface and runs its packets through a flow table into
/// the spool. Expires flows every second (wall time), logs the capture's counters every
/// minute (a warning when the kernel or the channel dropped packets), and exports every flow
/// at shutdown.
///
/// An interface that does not exist yet (kernel-libipsec creates `ipsec0` when charon starts)
/// is waited for, with one warning and a bounded back-off; so is an interface that is lost
/// while it is captured (removed, or removed and created again): the loss is counted in
/// `counters.interface_lost` and logged, the interface is captured again by name as soon as
/// it is back (`counters.reopens`), and the flow table carries on. Any other failure to open
/// it the first time (no CAP_NET_RAW, a ring the kernel will not allocate) stops the agent
/// with the step that failed; after a loss, such a failure is logged and retried.
pub async fn run_source(
    options: CaptureOptions,
    config: FlowConfig,
    observer: model::Observer,
    sink: crate::sink::Sink,
    counters: Arc<CaptureCounters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> crate::Result<()> {
    // The flow source numbers the events; the sink only spools them.
    let mut source = FlowSource::new(sink.source_id(), observer, sink.next_seq());
    let mut table = FlowTable::new(config);
    let mut records = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = std::time::Instant::now();
    let mut reported = counters.snapshot();
    let mut live: Option<Live> = None;
    let mut back_off = BackOff::new();
    // The first look is at once.
    let mut look_at = tokio::time::Instant::now();
    let mut n_opened = 0u64;
    // One warning per wait, for a missing interface and for one that cannot be opened.
    let mut warned_missing = false;
    let mut warned_failing = false;
    loop {
        tokio::select! {
            batch = next_batch(&mut live) => match batch {
                Some(batch) => {
                    for (at, packet) in &batch {
                        table.observe(packet, *at, &mut records);
                    }
                }
                None => {
                    // Every batch is in: the capture thread has ended by itself.
                    if let Some(ended) = live.take() {
                        match ended.capture.stop() {
                            Some(lost) => {
                                counters.interface_lost.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(
                                    source = %sink.source_id(),
                                    interface = %options.interface,
                                    reason = %lost.reason,
                                    error = lost.error.as_ref().map(tracing::field::display),
                                    "capture lost its interface: socket closed, waiting for the interface to come back"
                                );
                            }
                            None => {
                                tracing::error!(source = %sink.source_id(), interface = %options.interface, "the capture thread ended unexpectedly: capturing again");
                            }
                        }
                        if ended.since.elapsed() >= SETTLED {
                            back_off.reset();
                        }
                        look_at = tokio::time::Instant::now() + back_off.next_wait();
                        // The warning above said it: waiting for the interface.
                        warned_missing = true;
                        warned_failing = false;
                    }
                }
            },
            () = tokio::time::sleep_until(look_at), if live.is_none() => {
                match Capture::start_counting(&options, Arc::clone(&counters)) {
                    Ok((capture, packets)) => {
                        if n_opened == 0 {
                            tracing::info!(source = %sink.source_id(), interface = %options.interface, link = %capture.link, "capturing flows");
                        } else {
                            let reopens = counters.reopens.fetch_add(1, Ordering::Relaxed) + 1;
                            tracing::info!(source = %sink.source_id(), interface = %options.interface, link = %capture.link, reopens, "capturing flows again: the interface is back");
                        }
                        n_opened += 1;
                        warned_missing = false;
                        warned_failing = false;
                        live = Some(Live {
                            capture,
                            packets,
                            since: std::time::Instant::now(),
                        });
                    }
                    Err(error @ CaptureError::NoInterface(..)) => {
                        if !warned_missing {
                            tracing::warn!(source = %sink.source_id(), %error, "waiting for the interface to appear (checked every 2 s at most)");
                            warned_missing = true;
                        }
                        look_at = tokio::time::Instant::now() + back_off.next_wait();
                    }
                    Err(error) if n_opened == 0 => return Err(error.into()),
                    Err(error) => {
                        if !warned_failing {
                            tracing::warn!(source = %sink.source_id(), %error, "cannot capture the interface again: retrying");
                            warned_failing = true;
                        }
                        look_at = tokio::time::Instant::now() + back_off.next_wait();
                    }
                }
            }
            _ = tick.tick() => {
                table.expire(super::reader::now_ns(), &mut records);
                if last_report.elapsed() >= Duration::from_secs(60) {
                    last_report = std::time::Instant::now();
                    let now = counters.snapshot();
                    report(&now, &reported, table.stats());
                    reported = now;
                }
            }
            _ = stop.changed() => break,
        }
        if !records.is_empty() {
            let events = source.events(&records);
            records.clear();
            if !sink.append(events, &mut stop).await? {
                break;
            }
        }
    }
    let mut last = Vec::new();
    if let Some(Live {
        capture,
        mut packets,
        ..
    }) = live.take()
    {
        capture.stop();
        while let Ok(batch) = packets.try_recv() {
            for (at, packet) in &batch {
                table.observe(packet, *at, &mut last);
            }
        }
    }
    table.drain(&mut last);
    let events = source.events(&last);
    let n_final = events.len();
    // At shutdown: if the spool is full, these cannot wait for room.
    let (_, mut stopped) = tokio::sync::watch::channel(true);
    if !sink.append(events, &mut stopped).await? {
        tracing::warn!(
            flows = n_final,
            "the spool is full at shutdown: the last flows were not spooled"
        );
    }
    Ok(())
}

fn report(now: &CaptureSnapshot, before: &CaptureSnapshot, flows: &FlowStats) {
    let kernel_drops = now.kernel_drops - before.kernel_drops;
    let channel_drops = now.channel_drops - before.channel_drops;
    let cut = now.cut - before.cut;
    let unreadable = now.unreadable - before.unreadable;
    if kernel_drops > 0 || channel_drops > 0 || unreadable > 0 {
        tracing::warn!(
            frames = now.frames - before.frames,
            kernel_drops,
            ring_full = now.ring_full - before.ring_full,
            channel_drops,
            unreadable,
            "capture dropped packets: flows undercount bytes (raise the ring or socket buffer, or capture less with vpn_pool/api_subnets)"
        );
    } else {
        tracing::info!(
            frames = now.frames - before.frames,
            undecodable = now.undecodable - before.undecodable,
            interface_lost = now.interface_lost - before.interface_lost,
            reopens = now.reopens - before.reopens,
            flows_exported = flows.flows_exported,
            flows_evicted = flows.flows_evicted,
            "capture"
        );
    }
    if cut > 0 {
        tracing::warn!(
            cut,
            "capture cut frames longer than a ring block: their bytes count whole, but some lack ports"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_for_the_interface_doubles_up_to_its_bound_and_starts_afresh() {
        let mut back_off = BackOff::new();
        let waits: Vec<Duration> = (0..8).map(|_| back_off.next_wait()).collect();
        let millis: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        back_off.reset();
        assert_eq!(back_off.next_wait(), WAIT_FIRST);
    }
}
