//! The frames of one TPACKET_V3 block, read from its bytes: pure and bounds-checked, so that
//! the ring's layout is tested with hand-built blocks, malformed ones included, without a
//! socket (and [`sys`](super::sys) only lends out the bytes).
//!
//! A block (`struct tpacket_block_desc`, `<linux/if_packet.h>`) starts with a 48-byte
//! descriptor: `num_pkts` frames begin `offset_to_first_pkt` bytes in, and `blk_len` bytes of
//! the block are in use. Each frame starts with a 48-byte `struct tpacket3_hdr`:
//! `tp_next_offset` leads to the next frame (0 on the last), `tp_mac` is where the captured
//! bytes start (the link header, or the IP header on a device without one, such as a TUN),
//! `tp_snaplen` how many were captured and `tp_len` how long the frame was. A frame longer
//! than a block is cut (`tp_snaplen < tp_len`): it is counted, and its wire length is handed
//! on so that the decoder, which takes byte counts from the IP header, still counts it whole.
//! A VLAN tag that the device took off the frame (offload) is not in the bytes; tags still in
//! the frame are skipped by the decoder.
//!
//! A block the kernel wrote is never malformed; if one were (a kernel or ABI mismatch), its
//! unreadable frames are counted, never read out of bounds.

/// `sizeof(struct tpacket_block_desc)`.
const BLOCK_HEADER_LEN: usize = 48;
/// `sizeof(struct tpacket3_hdr)`.
const FRAME_HEADER_LEN: usize = 48;

// Offsets in the block descriptor (`hdr.bh1` starts at 8).
const NUM_PKTS: usize = 12;
const OFFSET_TO_FIRST_PKT: usize = 16;
const BLK_LEN: usize = 20;

// Offsets in a frame header.
const TP_NEXT_OFFSET: usize = 0;
const TP_SEC: usize = 4;
const TP_NSEC: usize = 8;
const TP_SNAPLEN: usize = 12;
const TP_LEN: usize = 16;
const TP_MAC: usize = 24;

/// One frame of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFrame<'a> {
    /// The frame from its link header (from its IP header on a device without one), as far as
    /// it was captured.
    pub data: &'a [u8],
    /// Its length on the wire (`tp_len`): more than `data.len()` when it was cut.
    pub wire_len: usize,
    /// When the kernel received it, in ns since the epoch.
    pub at_ns: i64,
}

/// What one block held.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlockCounts {
    /// Frames handed on.
    pub frames: u64,
    /// Of those, frames cut to fit the block (`tp_snaplen < tp_len`).
    pub cut: u64,
    /// Frames the block announced that could not be read (a header or frame past the end of
    /// the block, a next offset that does not move forward); a block too short for its own
    /// descriptor counts as one.
    pub unreadable: u64,
}

/// Hands every frame of `block` to `each`, in order, and counts them.
pub fn walk<'a>(block: &'a [u8], mut each: impl FnMut(RingFrame<'a>)) -> BlockCounts {
    let mut counts = BlockCounts::default();
    let (Some(announced), Some(first), Some(used)) = (
        u32_at(block, NUM_PKTS),
        u32_at(block, OFFSET_TO_FIRST_PKT),
        u32_at(block, BLK_LEN),
    ) else {
        counts.unreadable = 1;
        return counts;
    };
    if block.len() < BLOCK_HEADER_LEN {
        // The counts above were read, but the descriptor itself is cut.
        counts.unreadable = 1;
        return counts;
    }
    let announced = u64::from(announced);
    let end = usize::try_from(used).map_or(block.len(), |used| used.min(block.len()));
    let mut offset = usize::try_from(first).unwrap_or(usize::MAX);
    let mut seen: u64 = 0;
    while seen < announced {
        let Some(frame) = frame_at(block, offset, end) else {
            break;
        };
        seen += 1;
        counts.frames += 1;
        if frame.data.len() < frame.wire_len {
            counts.cut += 1;
        }
        each(frame);
        if seen == announced {
            break;
        }
        // The header was read whole above, so this is in bounds.
        let next = u32_at(block, offset + TP_NEXT_OFFSET)
            .and_then(|next| usize::try_from(next).ok())
            .unwrap_or(0);
        // Each frame takes at least its header: a shorter step is corrupt (and would loop).
        if next < FRAME_HEADER_LEN {
            break;
        }
        let Some(next_offset) = offset.checked_add(next) else {
            break;
        };
        offset = next_offset;
    }
    counts.unreadable = announced - seen;
    counts
}

/// The frame whose header starts at `offset`, if header and captured bytes lie before `end`.
fn frame_at(block: &[u8], offset: usize, end: usize) -> Option<RingFrame<'_>> {
    if offset < BLOCK_HEADER_LEN || offset.checked_add(FRAME_HEADER_LEN)? > end {
        return None;
    }
    let header = block.get(offset..offset + FRAME_HEADER_LEN)?;
    let snaplen = usize::try_from(u32_at(header, TP_SNAPLEN)?).ok()?;
    let wire_len = usize::try_from(u32_at(header, TP_LEN)?).ok()?;
    let mac = usize::from(u16_at(header, TP_MAC)?);
    // The captured bytes follow the header (and the `sockaddr_ll` the kernel puts after it).
    if mac < FRAME_HEADER_LEN {
        return None;
    }
    let start = offset.checked_add(mac)?;
    let stop = start.checked_add(snaplen)?;
    if stop > end {
        return None;
    }
    let data = block.get(start..stop)?;
    let at_ns =
        i64::from(u32_at(header, TP_SEC)?) * 1_000_000_000 + i64::from(u32_at(header, TP_NSEC)?);
    Some(RingFrame {
        data,
        // A frame is never shorter on the wire than what was captured of it.
        wire_len: wire_len.max(snaplen),
        at_ns,
    })
}

/// A native-endian `u32` at `offset` (the ring is shared with the kernel of this machine).
fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_ne_bytes([word[0], word[1], word[2], word[3]]))
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    let word = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_ne_bytes([word[0], word[1]]))
}

#[cfg(test)]
mod tests;
