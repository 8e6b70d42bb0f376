//! The capture thread's side of a [`Capture`](super::Capture): reading frames from the ring
//! or from pnet, decoding them, handing batches to the flow task and counting what happened,
//! and noticing when the interface is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pnet::datalink;

use super::{
    BATCH_PACKETS, CHECK_EVERY, CaptureCounters, InterfaceLost, LostReason, READ_TIMEOUT,
    RING_RETIRE, block, sys,
};
use crate::flow::decode::{self, DecodeError, LinkType, Packet};

/// The capture thread's side: where packets go and what is counted.
pub(super) struct Reader {
    pub(super) link: LinkType,
    pub(super) interface: String,
    /// The index of the interface the socket is bound to.
    pub(super) ifindex: u32,
    pub(super) tx: tokio::sync::mpsc::Sender<Vec<(i64, Packet)>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) counters: Arc<CaptureCounters>,
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

    /// Whether the interface the socket is bound to is gone: no interface has its name, or
    /// one with another index does. `None` also when the lookup itself failed (the
    /// socket is kept: a wrong answer would close a working capture).
    fn interface_lost(&self) -> Option<LostReason> {
        match sys::interface_index(&self.interface) {
            Ok(current_index) => LostReason::of(self.ifindex, current_index),
            Err(error) => {
                tracing::debug!(interface = %self.interface, %error, "cannot look up the interface's index");
                None
            }
        }
    }

    /// A read failed: counted, and the loss of the interface if that is what it means
    /// (ENETDOWN and the like; the caller then closes the socket). Otherwise the error
    /// is logged and the thread waits a read timeout, not to spin on an error that stays.
    fn read_failed(&self, error: std::io::Error, what: &str) -> Option<InterfaceLost> {
        self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
        if let Some(reason) = self.interface_lost() {
            return Some(InterfaceLost {
                reason,
                error: Some(error),
            });
        }
        tracing::warn!(interface = %self.interface, %error, "{what}");
        std::thread::sleep(READ_TIMEOUT);
        None
    }

    /// The TPACKET_V3 loop: one wakeup per block; its frames are decoded in place and sent
    /// on in batches, and the block goes back to the kernel. Ends when asked to, or when the
    /// interface is lost (then says why); either way after the blocks the kernel still
    /// hands over.
    pub(super) fn read_ring(self, mut ring: sys::Ring) -> Option<InterfaceLost> {
        let mut batch = Vec::with_capacity(BATCH_PACKETS);
        let mut last_check = std::time::Instant::now();
        let mut drain: Option<(std::time::Instant, usize)> = None;
        let mut lost: Option<InterfaceLost> = None;
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
                Err(error) if lost.is_none() => {
                    lost = self.read_failed(error, "capture ring poll failed");
                }
                Err(_) => {}
            }
            if last_check.elapsed() >= CHECK_EVERY {
                last_check = std::time::Instant::now();
                self.ring_statistics(&ring);
                if lost.is_none() {
                    lost = self.interface_lost().map(|reason| InterfaceLost {
                        reason,
                        error: None,
                    });
                }
            }
            match drain {
                // Stopping, or the interface is gone: the block the kernel is filling is
                // handed over within twice its retire time; wait that long for it (but read
                // at most one ring's worth).
                None if self.stopping() || lost.is_some() => {
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
        lost
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

    /// The pnet loop: one `poll` and `recvfrom` per frame. Ends when asked to, or when the
    /// interface is lost (then says why) once the socket has no frame left.
    pub(super) fn read_pnet(
        self,
        mut receiver: Box<dyn datalink::DataLinkReceiver>,
        fd: std::os::fd::RawFd,
    ) -> Option<InterfaceLost> {
        let mut batch = Vec::with_capacity(BATCH_PACKETS);
        let mut tally = Tally::default();
        let mut last_check = std::time::Instant::now();
        let mut lost: Option<InterfaceLost> = None;
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
                    // The interface is gone and the socket holds nothing more.
                    if lost.is_some() {
                        break;
                    }
                }
                Err(error) if lost.is_none() => {
                    // pnet's poll saw POLLERR: the socket's own error says what it is, and
                    // reading it clears it (else every poll fails at once while the interface
                    // is down).
                    let error = sys::take_error(fd).ok().flatten().unwrap_or(error);
                    lost = self.read_failed(error, "capture read failed");
                }
                Err(_) => break,
            }
            if last_check.elapsed() >= CHECK_EVERY {
                self.send(&mut batch);
                self.add(&std::mem::take(&mut tally));
                last_check = std::time::Instant::now();
                match sys::packet_statistics(fd) {
                    Ok((packets, drops)) => self.add_kernel_counts(packets, drops),
                    Err(error) => {
                        tracing::warn!(interface = %self.interface, %error, "cannot read PACKET_STATISTICS");
                    }
                }
                if lost.is_none() {
                    lost = self.interface_lost().map(|reason| InterfaceLost {
                        reason,
                        error: None,
                    });
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
        lost
    }
}

pub(super) fn now_ns() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}
