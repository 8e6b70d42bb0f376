//! Live capture: frames from an interface, on a thread of their own, into the
//! [`FlowTable`](super::FlowTable).
//!
//! Frames come from the kernel one of two ways ([`CaptureRing`]): by default through a
//! TPACKET_V3 ring mapped into the process ([`sys::Ring`]), where the kernel fills blocks of
//! frames and the capture thread wakes once per block, reading its frames in place
//! ([`block::walk`]); or through pnet's AF_PACKET channel, one `poll` and `recvfrom` per frame.
//!
//! The capture thread only reads and decodes: it hands batches of [`Packet`]s over a
//! bounded channel to the flow task, which owns the table, expires flows once a second and
//! spools their events. Nothing is lost silently: frames the kernel dropped because the
//! ring or socket buffer was full (`PACKET_STATISTICS`), batches dropped because the flow
//! task fell behind (the channel was full), frames the ring had to cut, and frames that did
//! not decode are all counted in [`CaptureCounters`] and logged.
//!
//! Frames up to 256 KiB are read whole (ring blocks are 4 MiB; pnet reads into a 256 KiB
//! buffer), so GRO super-frames on a veth are never cut, and byte counts come from the IP
//! header in any case (from the frame's wire length when the header has none, as under BIG
//! TCP). A TUN device (kernel-libipsec's `ipsec0`) hands over bare IP frames although pnet
//! calls every channel Ethernet: an interface without a MAC address, or a point-to-point
//! one, is read as raw IP.

mod block;
mod sys;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pnet::datalink::{self, Channel};
use serde::{Deserialize, Serialize};

use super::decode::{self, DecodeError, LinkType, Packet};

/// How frames get from the kernel to the capture thread: `ring = "tpacket_v3"` (the default)
/// or `ring = "pnet"` in a `capture` source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureRing {
    /// A TPACKET_V3 receive ring mapped into the process: the kernel fills blocks of frames,
    /// the capture thread wakes once per block and reads the frames in place.
    #[default]
    TpacketV3,
    /// pnet's AF_PACKET channel: one `poll` and one `recvfrom` per frame.
    Pnet,
}

impl CaptureRing {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureRing::TpacketV3 => "tpacket_v3",
            CaptureRing::Pnet => "pnet",
        }
    }
}

impl std::fmt::Display for CaptureRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// How frames get from the kernel to the capture thread.
    #[serde(default)]
    pub ring: CaptureRing,
    /// pnet: bytes read per frame at most (GRO frames reach 64 KiB, BIG TCP more).
    #[serde(default = "default_read_buffer")]
    pub read_buffer_bytes: usize,
    /// Packet batches queued between the capture thread and the flow task.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// pnet: the socket's receive buffer, where bursts wait for the capture thread.
    #[serde(default = "default_socket_buffer")]
    pub socket_buffer_bytes: usize,
    /// TPACKET_V3: bytes per ring block (rounded up to whole pages). A frame longer than a
    /// block, less about 100 bytes of headers, is cut (and counted).
    #[serde(default = "default_ring_block")]
    pub ring_block_bytes: usize,
    /// TPACKET_V3: blocks in the ring, where bursts wait for the capture thread.
    #[serde(default = "default_ring_blocks")]
    pub ring_blocks: usize,
}

impl CaptureOptions {
    /// The defaults for `interface`: a TPACKET_V3 ring of 16 blocks of 4 MiB, 256 batches
    /// queued for the flow task.
    pub fn new(interface: &str) -> CaptureOptions {
        CaptureOptions {
            interface: interface.to_owned(),
            link: None,
            ring: CaptureRing::default(),
            read_buffer_bytes: default_read_buffer(),
            queue_batches: default_queue_batches(),
            socket_buffer_bytes: default_socket_buffer(),
            ring_block_bytes: default_ring_block(),
            ring_blocks: default_ring_blocks(),
        }
    }
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

fn default_ring_block() -> usize {
    4 * 1024 * 1024
}

fn default_ring_blocks() -> usize {
    16
}

/// How long the kernel keeps a ring block that is not full before handing it over: the
/// longest a packet waits in the ring on a quiet link (twice this, at worst).
const RING_RETIRE: Duration = Duration::from_millis(50);

/// How long the capture thread waits for a frame or a block before it checks whether it
/// should stop.
const READ_TIMEOUT: Duration = Duration::from_millis(100);

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
    /// TPACKET_V3: frames longer than a ring block, captured in part. Their bytes still
    /// count whole (from the IP header, or the wire length), but their ports may be missing.
    pub cut: AtomicU64,
    /// TPACKET_V3: frames a block announced but whose headers or bytes lay outside it (never
    /// seen from a real kernel).
    pub unreadable: AtomicU64,
    /// TPACKET_V3: times the ring was full, every block waiting for the capture thread
    /// (`tp_freeze_q_cnt`); frames that arrive then are kernel drops.
    pub ring_full: AtomicU64,
}

impl CaptureCounters {
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
            cut: self.cut.load(Ordering::Relaxed),
            unreadable: self.unreadable.load(Ordering::Relaxed),
            ring_full: self.ring_full.load(Ordering::Relaxed),
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
    pub cut: u64,
    pub unreadable: u64,
    pub ring_full: u64,
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

/// A running capture thread. Dropping it stops the thread (within the read timeout; the
/// ring's last block is waited for, at most twice its retire time).
#[derive(Debug)]
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub counters: Arc<CaptureCounters>,
    pub link: LinkType,
    pub ring: CaptureRing,
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
        let (tx, rx) = tokio::sync::mpsc::channel(options.queue_batches.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(CaptureCounters::default());
        let reader = Reader {
            link,
            interface: options.interface.clone(),
            tx,
            stop: Arc::clone(&stop),
            counters: Arc::clone(&counters),
        };
        let thread = std::thread::Builder::new().name(format!("capture-{}", options.interface));
        let thread = match options.ring {
            CaptureRing::TpacketV3 => {
                let page = sys::page_size();
                let shape = sys::RingShape {
                    block_bytes: options.ring_block_bytes.max(1).div_ceil(page) * page,
                    block_count: options.ring_blocks.max(1),
                    retire_after: RING_RETIRE,
                };
                let ring = sys::Ring::open(interface.index, shape, interface.is_loopback())
                    .map_err(open_error)?;
                thread.spawn(move || reader.read_ring(ring))
            }
            CaptureRing::Pnet => {
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
                    read_timeout: Some(READ_TIMEOUT),
                    promiscuous: false,
                    socket_fd: Some(std::os::fd::IntoRawFd::into_raw_fd(socket)),
                    ..datalink::Config::default()
                };
                let receiver = match datalink::channel(&interface, config) {
                    Ok(Channel::Ethernet(_, receiver)) => receiver,
                    Ok(_) => {
                        return Err(open_error(std::io::Error::other("not an Ethernet channel")));
                    }
                    Err(error) => return Err(open_error(error)),
                };
                thread.spawn(move || reader.read_pnet(receiver, fd))
            }
        }
        .map_err(open_error)?;
        Ok((
            Capture {
                stop,
                thread: Some(thread),
                counters,
                link,
                ring: options.ring,
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

/// The capture thread's side: where packets go and what is counted.
struct Reader {
    link: LinkType,
    interface: String,
    tx: tokio::sync::mpsc::Sender<Vec<(i64, Packet)>>,
    stop: Arc<AtomicBool>,
    counters: Arc<CaptureCounters>,
}

/// Decode outcomes of a run of frames, added to the shared counters once per run.
#[derive(Default)]
struct Tally {
    frames: u64,
    not_ip: u64,
    truncated: u64,
    malformed: u64,
}

impl Tally {
    fn decode(&mut self, link: LinkType, frame: &[u8], wire_len: usize) -> Option<Packet> {
        self.frames += 1;
        match decode::decode(link, frame, wire_len) {
            Ok(packet) => Some(packet),
            Err(DecodeError::NotIp) => {
                self.not_ip += 1;
                None
            }
            Err(DecodeError::Truncated) => {
                self.truncated += 1;
                None
            }
            Err(DecodeError::Malformed) => {
                self.malformed += 1;
                None
            }
        }
    }
}

impl Reader {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Hands a batch to the flow task, or counts its packets as dropped if the channel is
    /// full.
    fn send(&self, batch: &mut Vec<(i64, Packet)>) {
        if batch.is_empty() {
            return;
        }
        let full = std::mem::replace(batch, Vec::with_capacity(BATCH_PACKETS));
        let n_packets = full.len() as u64;
        if self.tx.try_send(full).is_err() {
            self.counters
                .channel_drops
                .fetch_add(n_packets, Ordering::Relaxed);
        }
    }

    fn add(&self, tally: &Tally) {
        let counters = &self.counters;
        counters.frames.fetch_add(tally.frames, Ordering::Relaxed);
        counters.not_ip.fetch_add(tally.not_ip, Ordering::Relaxed);
        counters
            .truncated
            .fetch_add(tally.truncated, Ordering::Relaxed);
        counters
            .malformed
            .fetch_add(tally.malformed, Ordering::Relaxed);
    }

    fn add_kernel_counts(&self, packets: u64, drops: u64) {
        self.counters
            .kernel_packets
            .fetch_add(packets, Ordering::Relaxed);
        self.counters
            .kernel_drops
            .fetch_add(drops, Ordering::Relaxed);
    }

    /// The TPACKET_V3 loop: one wakeup per block; its frames are decoded in place and sent
    /// on in batches, and the block goes back to the kernel.
    fn read_ring(self, mut ring: sys::Ring) {
        let mut batch = Vec::with_capacity(BATCH_PACKETS);
        let mut last_stats = std::time::Instant::now();
        let mut drain: Option<(std::time::Instant, usize)> = None;
        loop {
            let timeout = match drain {
                None => READ_TIMEOUT,
                Some((until, _)) => until.saturating_duration_since(std::time::Instant::now()),
            };
            match ring.next_block(timeout) {
                Ok(Some(block)) => {
                    let mut tally = Tally::default();
                    let counts = block::walk(block.bytes(), |frame| {
                        if let Some(packet) = tally.decode(self.link, frame.data, frame.wire_len) {
                            batch.push((frame.at_ns, packet));
                            if batch.len() >= BATCH_PACKETS {
                                self.send(&mut batch);
                            }
                        }
                    });
                    drop(block);
                    self.send(&mut batch);
                    self.add(&tally);
                    if counts.cut > 0 {
                        self.counters.cut.fetch_add(counts.cut, Ordering::Relaxed);
                    }
                    if counts.unreadable > 0 {
                        self.counters
                            .unreadable
                            .fetch_add(counts.unreadable, Ordering::Relaxed);
                        tracing::warn!(interface = %self.interface, n_frames = counts.unreadable, "a ring block held frames outside its bounds: skipped");
                    }
                    if let Some((_, blocks_left)) = &mut drain {
                        *blocks_left = blocks_left.saturating_sub(1);
                    }
                }
                Ok(None) => {}
                Err(error) => {
                    self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(interface = %self.interface, %error, "capture ring poll failed");
                    std::thread::sleep(READ_TIMEOUT);
                }
            }
            if last_stats.elapsed() >= Duration::from_millis(500) {
                last_stats = std::time::Instant::now();
                self.ring_statistics(&ring);
            }
            match drain {
                // Stopping: the block the kernel is filling is handed over within twice its
                // retire time; wait that long for it (but read at most one ring's worth).
                None if self.stopping() => {
                    drain = Some((
                        std::time::Instant::now() + 2 * RING_RETIRE + Duration::from_millis(20),
                        ring.block_count(),
                    ));
                }
                Some((until, blocks_left))
                    if blocks_left == 0 || std::time::Instant::now() >= until =>
                {
                    break;
                }
                _ => {}
            }
        }
        // The final counts (the ring, and with it the socket, is dropped after).
        self.ring_statistics(&ring);
    }

    fn ring_statistics(&self, ring: &sys::Ring) {
        match ring.statistics() {
            Ok(stats) => {
                self.add_kernel_counts(stats.packets, stats.drops);
                self.counters
                    .ring_full
                    .fetch_add(stats.freezes, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(interface = %self.interface, %error, "cannot read PACKET_STATISTICS");
            }
        }
    }

    /// The pnet loop: one `poll` and `recvfrom` per frame.
    fn read_pnet(self, mut receiver: Box<dyn datalink::DataLinkReceiver>, fd: std::os::fd::RawFd) {
        let mut batch = Vec::with_capacity(BATCH_PACKETS);
        let mut tally = Tally::default();
        let mut last_stats = std::time::Instant::now();
        while !self.stopping() {
            match receiver.next() {
                Ok(frame) => {
                    if let Some(packet) = tally.decode(self.link, frame, frame.len()) {
                        batch.push((now_ns(), packet));
                    }
                    if batch.len() >= BATCH_PACKETS {
                        self.send(&mut batch);
                        self.add(&std::mem::take(&mut tally));
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::TimedOut => {
                    self.send(&mut batch);
                    self.add(&std::mem::take(&mut tally));
                }
                Err(error) => {
                    self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(interface = %self.interface, %error, "capture read failed");
                    std::thread::sleep(READ_TIMEOUT);
                }
            }
            if last_stats.elapsed() >= Duration::from_millis(500) {
                self.send(&mut batch);
                self.add(&std::mem::take(&mut tally));
                last_stats = std::time::Instant::now();
                match sys::packet_statistics(fd) {
                    Ok((packets, drops)) => self.add_kernel_counts(packets, drops),
                    Err(error) => {
                        tracing::warn!(interface = %self.interface, %error, "cannot read PACKET_STATISTICS");
                    }
                }
            }
        }
        self.send(&mut batch);
        self.add(&tally);
        // The final counts (the receiver, and with it the socket, is dropped after).
        if let Ok((packets, drops)) = sys::packet_statistics(fd) {
            self.add_kernel_counts(packets, drops);
        }
        drop(receiver);
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
