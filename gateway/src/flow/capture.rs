//! Live capture: frames from an interface through pnet's AF_PACKET channel, on a thread of
//! their own, into the [`FlowTable`](super::FlowTable).
//!
//! The capture thread only reads and decodes: it hands batches of [`Packet`]s over a
//! bounded channel to the flow task, which owns the table, expires flows once a second and
//! spools their events. Nothing is lost silently: frames the kernel dropped because the
//! socket buffer was full (`PACKET_STATISTICS`), batches dropped because the flow task fell
//! behind (the channel was full), and frames that did not decode are all counted in
//! [`CaptureCounters`] and logged.
//!
//! Frames are read into a 256 KiB buffer, so GRO super-frames on a veth are never cut, and
//! byte counts come from the IP header in any case. A TUN device (kernel-libipsec's
//! `ipsec0`) hands over bare IP frames although pnet calls every channel Ethernet: an
//! interface without a MAC address, or a point-to-point one, is read as raw IP.

mod sys;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pnet::datalink::{self, Channel};
use serde::{Deserialize, Serialize};

use super::decode::{self, DecodeError, LinkType, Packet};

/// How a capture source reads its interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureOptions {
    /// e.g. `ipsec0` (kernel-libipsec's TUN) or the gateway's inside NIC.
    pub interface: String,
    /// `ethernet` or `raw`; default: raw for interfaces without a MAC address or
    /// point-to-point ones, Ethernet otherwise.
    #[serde(default)]
    pub link: Option<LinkType>,
    /// Bytes read per frame at most (GRO frames reach 64 KiB).
    #[serde(default = "default_read_buffer")]
    pub read_buffer_bytes: usize,
    /// Packet batches queued between the capture thread and the flow task.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// The socket's receive buffer, where bursts wait for the capture thread.
    #[serde(default = "default_socket_buffer")]
    pub socket_buffer_bytes: usize,
}

fn default_socket_buffer() -> usize {
    32 * 1024 * 1024
}

fn default_read_buffer() -> usize {
    256 * 1024
}

fn default_queue_batches() -> usize {
    256
}

/// Batches of `(time in ns since the epoch, packet)` from the capture thread.
pub type PacketBatches = tokio::sync::mpsc::Receiver<Vec<(i64, Packet)>>;

/// Packets per batch on the channel.
pub const BATCH_PACKETS: usize = 512;

/// Counters of one capture, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct CaptureCounters {
    pub frames: AtomicU64,
    /// Frames the kernel delivered to the socket (`tp_packets`).
    pub kernel_packets: AtomicU64,
    /// Frames the kernel dropped: the socket buffer was full (`tp_drops`).
    pub kernel_drops: AtomicU64,
    /// Packets dropped because the flow task did not keep up (the channel was full).
    pub channel_drops: AtomicU64,
    pub not_ip: AtomicU64,
    pub truncated: AtomicU64,
    pub malformed: AtomicU64,
    pub read_errors: AtomicU64,
}

impl CaptureCounters {
    fn count_decode_error(&self, error: DecodeError) {
        let counter = match error {
            DecodeError::NotIp => &self.not_ip,
            DecodeError::Truncated => &self.truncated,
            DecodeError::Malformed => &self.malformed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A one-line summary for logs.
    pub fn snapshot(&self) -> CaptureSnapshot {
        CaptureSnapshot {
            frames: self.frames.load(Ordering::Relaxed),
            kernel_packets: self.kernel_packets.load(Ordering::Relaxed),
            kernel_drops: self.kernel_drops.load(Ordering::Relaxed),
            channel_drops: self.channel_drops.load(Ordering::Relaxed),
            undecodable: self.not_ip.load(Ordering::Relaxed)
                + self.truncated.load(Ordering::Relaxed)
                + self.malformed.load(Ordering::Relaxed),
            read_errors: self.read_errors.load(Ordering::Relaxed),
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CaptureSnapshot {
    pub frames: u64,
    pub kernel_packets: u64,
    pub kernel_drops: u64,
    pub channel_drops: u64,
    pub undecodable: u64,
    pub read_errors: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no interface named {0:?} (interfaces here: {1})")]
    NoInterface(String, String),
    #[error("cannot capture on {interface}: {source} (capturing needs root or CAP_NET_RAW)")]
    Open {
        interface: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running capture thread. Dropping it stops the thread (within the read timeout).
#[derive(Debug)]
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<CaptureCounters>,
    pub link: LinkType,
}

impl Capture {
    /// Opens the interface and starts the capture thread; batches of `(time in ns since
    /// the epoch, packet)` arrive on the returned channel.
    pub fn start(options: &CaptureOptions) -> Result<(Capture, PacketBatches), CaptureError> {
        let interfaces = datalink::interfaces();
        let Some(interface) = interfaces
            .iter()
            .find(|interface| interface.name == options.interface)
            .cloned()
        else {
            let names: Vec<String> = interfaces.into_iter().map(|i| i.name).collect();
            return Err(CaptureError::NoInterface(
                options.interface.clone(),
                names.join(", "),
            ));
        };
        let link = options.link.unwrap_or_else(|| {
            let no_mac = interface
                .mac
                .is_none_or(|mac| mac.is_zero() && !interface.is_loopback());
            if no_mac || interface.is_point_to_point() {
                LinkType::RawIp
            } else {
                LinkType::Ethernet
            }
        });
        let open_error = |source| CaptureError::Open {
            interface: options.interface.clone(),
            source,
        };
        let socket = sys::packet_socket().map_err(open_error)?;
        let fd = sys::raw(&socket);
        if interface.is_loopback() {
            sys::ignore_outgoing(fd).map_err(open_error)?;
        }
        if let Err(error) = sys::set_receive_buffer(fd, options.socket_buffer_bytes) {
            tracing::warn!(interface = %options.interface, %error, "cannot enlarge the capture socket's buffer: bursts may be dropped (and counted)");
        }
        let config = datalink::Config {
            read_buffer_size: options.read_buffer_bytes.max(2048),
            read_timeout: Some(Duration::from_millis(100)),
            promiscuous: false,
            socket_fd: Some(std::os::fd::IntoRawFd::into_raw_fd(socket)),
            ..datalink::Config::default()
        };
        let mut receiver = match datalink::channel(&interface, config) {
            Ok(Channel::Ethernet(_, receiver)) => receiver,
            Ok(_) => {
                return Err(open_error(std::io::Error::other("not an Ethernet channel")));
            }
            Err(error) => return Err(open_error(error)),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(options.queue_batches.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(CaptureCounters::default());
        let thread_stop = Arc::clone(&stop);
        let thread_counters = Arc::clone(&counters);
        let name = options.interface.clone();
        let thread = std::thread::Builder::new()
            .name(format!("capture-{name}"))
            .spawn(move || {
                let mut batch = Vec::with_capacity(BATCH_PACKETS);
                let mut last_stats = std::time::Instant::now();
                let send = |batch: &mut Vec<(i64, Packet)>| {
                    if batch.is_empty() {
                        return;
                    }
                    let full = std::mem::replace(batch, Vec::with_capacity(BATCH_PACKETS));
                    let n = full.len() as u64;
                    if tx.try_send(full).is_err() {
                        thread_counters.channel_drops.fetch_add(n, Ordering::Relaxed);
                    }
                };
                while !thread_stop.load(Ordering::Relaxed) {
                    match receiver.next() {
                        Ok(frame) => {
                            thread_counters.frames.fetch_add(1, Ordering::Relaxed);
                            match decode::decode(link, frame, frame.len()) {
                                Ok(packet) => batch.push((now_ns(), packet)),
                                Err(error) => thread_counters.count_decode_error(error),
                            }
                            if batch.len() >= BATCH_PACKETS {
                                send(&mut batch);
                            }
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                            send(&mut batch);
                        }
                        Err(error) => {
                            thread_counters.read_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(interface = %name, %error, "capture read failed");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    if last_stats.elapsed() >= Duration::from_millis(500) {
                        send(&mut batch);
                        last_stats = std::time::Instant::now();
                        match sys::packet_statistics(fd) {
                            Ok((packets, drops)) => {
                                thread_counters
                                    .kernel_packets
                                    .fetch_add(packets, Ordering::Relaxed);
                                thread_counters.kernel_drops.fetch_add(drops, Ordering::Relaxed);
                            }
                            Err(error) => {
                                tracing::warn!(interface = %name, %error, "cannot read PACKET_STATISTICS")
                            }
                        }
                    }
                }
                send(&mut batch);
                // The final counts (the receiver, and with it the socket, is dropped after).
                if let Ok((packets, drops)) = sys::packet_statistics(fd) {
                    thread_counters.kernel_packets.fetch_add(packets, Ordering::Relaxed);
                    thread_counters.kernel_drops.fetch_add(drops, Ordering::Relaxed);
                }
                drop(receiver);
            })
            .map_err(open_error)?;
        Ok((
            Capture {
                stop,
                thread: Some(thread),
                counters,
                link,
            },
            rx,
        ))
    }

    /// Stops the thread and waits for it (at most the read timeout).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}

/// A `capture` source: opens the interface and runs [`run_flows`]. An interface that does
/// not exist yet (kernel-libipsec creates `ipsec0` when charon starts) is waited for, with one
/// warning; any other failure to open it (no CAP_NET_RAW) stops the agent with the reason.
pub async fn run_source(
    options: CaptureOptions,
    config: super::FlowConfig,
    observer: model::Observer,
    sink: crate::sink::Sink,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> crate::Result<()> {
    let mut warned = false;
    loop {
        match Capture::start(&options) {
            Ok((capture, packets)) => {
                tracing::info!(source = %sink.source_id(), interface = %options.interface, link = %capture.link, "capturing flows");
                return run_flows(capture, packets, config, observer, sink, stop).await;
            }
            Err(error @ CaptureError::NoInterface(..)) => {
                if !warned {
                    tracing::warn!(source = %sink.source_id(), %error, "waiting for the interface to appear (checked every 5 s)");
                    warned = true;
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stop.changed() => return Ok(()),
                }
            }
            Err(error) => return Err(crate::Error::Config(error.to_string())),
        }
    }
}

/// The flow task of a live capture: packets in, flows out to the spool. Expires flows
/// every second (wall time), logs the capture's counters every minute (a warning when the
/// kernel or the channel dropped packets), and exports every flow at shutdown.
pub async fn run_flows(
    capture: Capture,
    mut packets: PacketBatches,
    config: super::FlowConfig,
    observer: model::Observer,
    sink: crate::sink::Sink,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> crate::Result<()> {
    // The flow source numbers the events; the sink only spools them.
    let mut source = super::FlowSource::new(sink.source_id(), observer, sink.next_seq());
    let mut table = super::FlowTable::new(config);
    let mut records = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = std::time::Instant::now();
    let mut reported = CaptureSnapshot::default();
    loop {
        tokio::select! {
            batch = packets.recv() => {
                let Some(batch) = batch else { break };
                for (at, packet) in &batch {
                    table.observe(packet, *at, &mut records);
                }
            }
            _ = tick.tick() => {
                table.expire(now_ns(), &mut records);
                if last_report.elapsed() >= Duration::from_secs(60) {
                    last_report = std::time::Instant::now();
                    let now = capture.counters.snapshot();
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
    capture.stop();
    let mut last = Vec::new();
    while let Ok(batch) = packets.try_recv() {
        for (at, packet) in &batch {
            table.observe(packet, *at, &mut last);
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

fn report(now: &CaptureSnapshot, before: &CaptureSnapshot, flows: &super::FlowStats) {
    let kernel_drops = now.kernel_drops - before.kernel_drops;
    let channel_drops = now.channel_drops - before.channel_drops;
    if kernel_drops > 0 || channel_drops > 0 {
        tracing::warn!(
            frames = now.frames - before.frames,
            kernel_drops,
            channel_drops,
            "capture dropped packets: flows undercount bytes (raise the socket buffer, or capture less with vpn_pool/api_subnets)"
        );
    } else {
        tracing::info!(
            frames = now.frames - before.frames,
            undecodable = now.undecodable - before.undecodable,
            flows_exported = flows.flows_exported,
            flows_evicted = flows.flows_evicted,
            "capture"
        );
    }
}
