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
//!
//! The capture comes back with its interface: kernel-libipsec removes `ipsec0` when charon
//! stops and creates a new one (with a new index) when it starts again, and a socket bound to
//! the old one would stay silent for ever. The capture thread notices the loss (a read error,
//! or, checked twice a second, no interface of that name or one with another index), reads
//! what the kernel still holds for it, closes the socket and ends, saying why
//! ([`InterfaceLost`]). [`run_source`] counts and logs the loss, waits for the interface as it
//! does at start (with a bounded back-off) and captures it again by name, into the same flow
//! table: flows in progress continue, or end by their timeouts.

mod block;
mod reader;
mod source;
mod sys;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pnet::datalink::{self, Channel};
use serde::{Deserialize, Serialize};

use super::decode::{LinkType, Packet};
use reader::Reader;

pub use source::run_source;
pub use sys::OpenStep;

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

/// How often the capture thread reads the kernel's counters and checks that its interface is
/// still the one it bound to.
const CHECK_EVERY: Duration = Duration::from_millis(500);

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
    /// Times the captured interface went away (removed, or removed and created again) and its
    /// socket was closed. Frames that arrive before it is captured again are not seen.
    pub interface_lost: AtomicU64,
    /// Times the interface was captured again after it was lost.
    pub reopens: AtomicU64,
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
            interface_lost: self.interface_lost.load(Ordering::Relaxed),
            reopens: self.reopens.load(Ordering::Relaxed),
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
    pub interface_lost: u64,
    pub reopens: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no interface named {0:?} (interfaces here: {1})")]
    NoInterface(String, String),
    /// A step of opening the socket failed: the message names the step and the OS's error,
    /// and mentions privileges only when they are what is missing.
    #[error("cannot capture on {interface}: {step} failed: {source}{}", privilege_hint(.source))]
    Open {
        interface: String,
        step: OpenStep,
        #[source]
        source: std::io::Error,
    },
}

/// What to add to an open error: a hint at privileges for `EPERM` and `EACCES` only (an
/// `ENOMEM` or `EINVAL` is not cured by root).
fn privilege_hint(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::PermissionDenied {
        " (capturing needs root or CAP_NET_RAW)"
    } else {
        ""
    }
}

/// Why a capture thread ended by itself: the interface it was bound to is gone.
#[derive(Debug)]
pub struct InterfaceLost {
    pub reason: LostReason,
    /// The read error that revealed the loss; `None` when the periodic check found it.
    pub error: Option<std::io::Error>,
}

/// How the captured interface went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// No interface has the name any more.
    Removed,
    /// The name belongs to another interface now: the captured one was removed and a new
    /// one created (kernel-libipsec's `ipsec0` when charon restarts).
    Replaced { old_index: u32, new_index: u32 },
}

impl LostReason {
    /// The loss, if the interface bound at `bound_index` now has `current_index`.
    fn of(bound_index: u32, current_index: Option<u32>) -> Option<LostReason> {
        match current_index {
            None => Some(LostReason::Removed),
            Some(new_index) if new_index != bound_index => Some(LostReason::Replaced {
                old_index: bound_index,
                new_index,
            }),
            Some(_) => None,
        }
    }
}

impl std::fmt::Display for LostReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LostReason::Removed => f.write_str("the interface was removed"),
            LostReason::Replaced {
                old_index,
                new_index,
            } => write!(
                f,
                "the interface was replaced (index {old_index}, now {new_index})"
            ),
        }
    }
}

/// A running capture thread. Dropping it stops the thread (within the read timeout; the
/// ring's last block is waited for, at most twice its retire time). The thread also ends by
/// itself when its interface is lost, which closes the channel.
#[derive(Debug)]
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<InterfaceLost>>>,
    pub counters: Arc<CaptureCounters>,
    pub link: LinkType,
    pub ring: CaptureRing,
}

impl Capture {
    /// Opens the interface and starts the capture thread; batches of `(time in ns since
    /// the epoch, packet)` arrive on the returned channel.
    pub fn start(options: &CaptureOptions) -> Result<(Capture, PacketBatches), CaptureError> {
        Capture::start_counting(options, Arc::default())
    }

    /// [`Capture::start`], counting into `counters` (which outlive one capture of the
    /// interface).
    pub fn start_counting(
        options: &CaptureOptions,
        counters: Arc<CaptureCounters>,
    ) -> Result<(Capture, PacketBatches), CaptureError> {
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
        let open_error = |sys::SetupError { step, source }| CaptureError::Open {
            interface: options.interface.clone(),
            step,
            source,
        };
        let step_error = |step| move |source| open_error(sys::SetupError { step, source });
        let (tx, rx) = tokio::sync::mpsc::channel(options.queue_batches.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = Reader {
            link,
            interface: options.interface.clone(),
            ifindex: interface.index,
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
                    sys::ignore_outgoing(fd).map_err(step_error(OpenStep::IgnoreOutgoing))?;
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
                let channel_error = step_error(OpenStep::Channel);
                let receiver = match datalink::channel(&interface, config) {
                    Ok(Channel::Ethernet(_, receiver)) => receiver,
                    Ok(_) => {
                        return Err(channel_error(std::io::Error::other(
                            "not an Ethernet channel",
                        )));
                    }
                    Err(error) => return Err(channel_error(error)),
                };
                thread.spawn(move || reader.read_pnet(receiver, fd))
            }
        }
        .map_err(step_error(OpenStep::Thread))?;
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

    /// Stops the thread and waits for it (at most the read timeout). Says why the thread
    /// ended if it had ended by itself, its interface lost.
    pub fn stop(mut self) -> Option<InterfaceLost> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Option<InterfaceLost> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take()?;
        match thread.join() {
            Ok(lost) => lost,
            Err(_) => {
                tracing::error!("the capture thread panicked");
                None
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
