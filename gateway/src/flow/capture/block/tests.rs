//! The block walker against hand-built blocks: well-formed as the kernel writes them, cut,
//! and malformed in every way a descriptor or frame header can be.

use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;

/// Where the kernel puts an Ethernet frame's first byte on a SOCK_RAW socket:
/// `TPACKET_ALIGN(TPACKET3_HDRLEN + 16) - 14`.
const MAC: u16 = 82;

/// One frame as the test writes it into a block.
struct Frame {
    sec: u32,
    nsec: u32,
    captured: Vec<u8>,
    wire_len: u32,
}

fn frame(sec: u32, nsec: u32, captured: &[u8], wire_len: u32) -> Frame {
    Frame {
        sec,
        nsec,
        captured: captured.to_vec(),
        wire_len,
    }
}

fn put32(block: &mut [u8], offset: usize, value: u32) {
    block[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
}

/// A block laid out as the kernel does: descriptor, then frames 8-byte aligned, each with
/// its data `MAC` bytes after its header; the last frame's next offset is 0.
fn block(size: usize, frames: &[Frame]) -> Vec<u8> {
    let mut block = vec![0u8; size];
    put32(&mut block, 0, 3);
    put32(&mut block, 8, 1);
    put32(&mut block, NUM_PKTS, frames.len() as u32);
    put32(&mut block, OFFSET_TO_FIRST_PKT, BLOCK_HEADER_LEN as u32);
    let mut offset = BLOCK_HEADER_LEN;
    for (idx, frame) in frames.iter().enumerate() {
        let len = usize::from(MAC) + frame.captured.len();
        let step = len.div_ceil(8) * 8;
        let next = if idx + 1 == frames.len() { 0 } else { step };
        put32(&mut block, offset + TP_NEXT_OFFSET, next as u32);
        put32(&mut block, offset + TP_SEC, frame.sec);
        put32(&mut block, offset + TP_NSEC, frame.nsec);
        put32(&mut block, offset + TP_SNAPLEN, frame.captured.len() as u32);
        put32(&mut block, offset + TP_LEN, frame.wire_len);
        put32(&mut block, offset + 20, 1);
        block[offset + TP_MAC..offset + TP_MAC + 2].copy_from_slice(&MAC.to_ne_bytes());
        block[offset + 26..offset + 28].copy_from_slice(&(MAC + 14).to_ne_bytes());
        let data = offset + usize::from(MAC);
        block[data..data + frame.captured.len()].copy_from_slice(&frame.captured);
        offset += step;
    }
    put32(&mut block, BLK_LEN, offset as u32);
    block
}

fn offset_of_frame(block: &[u8], idx: usize) -> usize {
    let mut offset = u32_at(block, OFFSET_TO_FIRST_PKT).unwrap() as usize;
    for _ in 0..idx {
        offset += u32_at(block, offset).unwrap() as usize;
    }
    offset
}

#[track_caller]
fn check(block: &[u8], expect: expect_test::Expect) {
    let mut out = String::new();
    let counts = walk(block, |frame| {
        writeln!(
            out,
            "at {} captured {} wire {} first {:?}",
            frame.at_ns,
            frame.data.len(),
            frame.wire_len,
            frame.data.first()
        )
        .unwrap();
    });
    writeln!(
        out,
        "frames {} cut {} unreadable {}",
        counts.frames, counts.cut, counts.unreadable
    )
    .unwrap();
    expect.assert_eq(&out);
}

fn three() -> Vec<u8> {
    block(
        4096,
        &[
            frame(1, 5, &[0xaa; 60], 60),
            frame(2, 999_999_999, &[0xbb; 1000], 1000),
            frame(3, 0, &[0xcc; 14], 14),
        ],
    )
}

#[test]
fn the_layout_is_the_kernels() {
    assert_eq!(std::mem::size_of::<libc::tpacket3_hdr>(), FRAME_HEADER_LEN);
    assert_eq!(
        std::mem::size_of::<libc::tpacket_block_desc>(),
        BLOCK_HEADER_LEN
    );
    let bh1 = std::mem::offset_of!(libc::tpacket_block_desc, hdr);
    assert_eq!(bh1, 8);
    assert_eq!(
        bh1 + std::mem::offset_of!(libc::tpacket_hdr_v1, num_pkts),
        NUM_PKTS
    );
    assert_eq!(
        bh1 + std::mem::offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt),
        OFFSET_TO_FIRST_PKT
    );
    assert_eq!(
        bh1 + std::mem::offset_of!(libc::tpacket_hdr_v1, blk_len),
        BLK_LEN
    );
    assert_eq!(std::mem::offset_of!(libc::tpacket3_hdr, tp_sec), TP_SEC);
    assert_eq!(std::mem::offset_of!(libc::tpacket3_hdr, tp_nsec), TP_NSEC);
    assert_eq!(
        std::mem::offset_of!(libc::tpacket3_hdr, tp_snaplen),
        TP_SNAPLEN
    );
    assert_eq!(std::mem::offset_of!(libc::tpacket3_hdr, tp_len), TP_LEN);
    assert_eq!(std::mem::offset_of!(libc::tpacket3_hdr, tp_mac), TP_MAC);
    // The kernel puts an Ethernet frame's first byte here on a SOCK_RAW socket.
    let netoff = (libc::TPACKET3_HDRLEN + 16).div_ceil(16) * 16;
    assert_eq!(netoff - 14, usize::from(MAC));
}

#[test]
fn frames_come_out_in_order_with_times_and_lengths() {
    check(
        &three(),
        expect_test::expect![[r#"
            at 1000000005 captured 60 wire 60 first Some(170)
            at 2999999999 captured 1000 wire 1000 first Some(187)
            at 3000000000 captured 14 wire 14 first Some(204)
            frames 3 cut 0 unreadable 0
        "#]],
    );
}

#[test]
fn an_empty_block_has_no_frames() {
    check(
        &block(4096, &[]),
        expect_test::expect![[r#"
            frames 0 cut 0 unreadable 0
        "#]],
    );
}

#[test]
fn a_cut_frame_is_counted_and_keeps_its_wire_length() {
    check(
        &block(
            4096,
            &[
                frame(1, 0, &[0x60; 1500], 196_000),
                frame(1, 1, &[1; 60], 60),
            ],
        ),
        expect_test::expect![[r#"
            at 1000000000 captured 1500 wire 196000 first Some(96)
            at 1000000001 captured 60 wire 60 first Some(1)
            frames 2 cut 1 unreadable 0
        "#]],
    );
}

#[test]
fn a_next_offset_of_zero_before_the_last_frame_stops_the_walk() {
    let mut block = three();
    let offset = offset_of_frame(&block, 0);
    put32(&mut block, offset, 0);
    check(
        &block,
        expect_test::expect![[r#"
            at 1000000005 captured 60 wire 60 first Some(170)
            frames 1 cut 0 unreadable 2
        "#]],
    );
}

#[test]
fn a_next_offset_shorter_than_a_header_stops_the_walk() {
    let mut block = three();
    let offset = offset_of_frame(&block, 1);
    put32(&mut block, offset, 8);
    check(
        &block,
        expect_test::expect![[r#"
            at 1000000005 captured 60 wire 60 first Some(170)
            at 2999999999 captured 1000 wire 1000 first Some(187)
            frames 2 cut 0 unreadable 1
        "#]],
    );
}

#[test]
fn a_next_offset_past_the_end_is_unreadable() {
    let mut block = three();
    let offset = offset_of_frame(&block, 1);
    put32(&mut block, offset, u32::MAX);
    check(
        &block,
        expect_test::expect![[r#"
            at 1000000005 captured 60 wire 60 first Some(170)
            at 2999999999 captured 1000 wire 1000 first Some(187)
            frames 2 cut 0 unreadable 1
        "#]],
    );
}

#[test]
fn captured_bytes_past_the_end_of_the_block_are_unreadable() {
    let mut block = three();
    let second = offset_of_frame(&block, 1);
    put32(&mut block, second + TP_SNAPLEN, 5000);
    check(
        &block,
        expect_test::expect![[r#"
            at 1000000005 captured 60 wire 60 first Some(170)
            frames 1 cut 0 unreadable 2
        "#]],
    );
    // Past the used length (blk_len) counts as past the end, too.
    let mut block = three();
    let used = u32_at(&block, BLK_LEN).unwrap();
    put32(&mut block, BLK_LEN, used - 8);
    check(
        &block,
        expect_test::expect![[r#"
            at 1000000005 captured 60 wire 60 first Some(170)
            at 2999999999 captured 1000 wire 1000 first Some(187)
            frames 2 cut 0 unreadable 1
        "#]],
    );
}

#[test]
fn data_inside_the_frame_header_is_unreadable() {
    let mut block = three();
    block[BLOCK_HEADER_LEN + TP_MAC..BLOCK_HEADER_LEN + TP_MAC + 2]
        .copy_from_slice(&4u16.to_ne_bytes());
    check(
        &block,
        expect_test::expect![[r#"
            frames 0 cut 0 unreadable 3
        "#]],
    );
}

#[test]
fn a_first_frame_outside_the_block_is_unreadable() {
    for first in [0, 8, 4096, u32::MAX] {
        let mut block = three();
        put32(&mut block, OFFSET_TO_FIRST_PKT, first);
        let counts = walk(&block, |_| {});
        assert_eq!(
            counts,
            BlockCounts {
                frames: 0,
                cut: 0,
                unreadable: 3
            },
            "first frame at {first}"
        );
    }
}

#[test]
fn more_frames_announced_than_written_are_unreadable() {
    let mut block = three();
    put32(&mut block, NUM_PKTS, u32::MAX);
    let counts = walk(&block, |_| {});
    assert_eq!(counts.frames, 3);
    assert_eq!(counts.unreadable, u64::from(u32::MAX) - 3);
}

#[test]
fn a_block_shorter_than_its_descriptor_counts_once() {
    for len in [0, 1, 23, 47] {
        let counts = walk(&three()[..len], |_| panic!("no frame in {len} bytes"));
        assert_eq!(counts.unreadable, 1, "{len} bytes");
        assert_eq!(counts.frames, 0);
    }
}

proptest! {
    /// Whatever the bytes, the walk stays inside them and accounts for every frame it
    /// reads: no panic, no slice outside the block.
    #[test]
    fn walking_arbitrary_bytes_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        num_pkts in 0u32..64,
        first in 0u32..256,
    ) {
        let mut block = bytes;
        if block.len() >= BLOCK_HEADER_LEN {
            put32(&mut block, NUM_PKTS, num_pkts);
            put32(&mut block, OFFSET_TO_FIRST_PKT, first);
        }
        let range = block.as_ptr_range();
        let mut n_frames = 0;
        let counts = walk(&block, |frame| {
            n_frames += 1;
            let inner = frame.data.as_ptr_range();
            assert!(range.start <= inner.start && inner.end <= range.end);
            assert!(frame.wire_len >= frame.data.len());
        });
        prop_assert_eq!(counts.frames, n_frames);
        prop_assert!(counts.cut <= counts.frames);
        if block.len() >= BLOCK_HEADER_LEN {
            prop_assert_eq!(counts.frames + counts.unreadable, u64::from(num_pkts));
        }
    }

    /// Frames written as the kernel writes them all come back, whole or counted as cut.
    #[test]
    fn kernel_shaped_blocks_come_back_whole(
        sizes in proptest::collection::vec((1usize..300, 0u32..400), 0..20),
    ) {
        let frames: Vec<Frame> = sizes
            .iter()
            .enumerate()
            .map(|(idx, &(captured, extra))| {
                frame(idx as u32, 7, &vec![idx as u8; captured], captured as u32 + extra)
            })
            .collect();
        let block = block(16 * 1024, &frames);
        let mut back = Vec::new();
        let counts = walk(&block, |frame| back.push((frame.data.to_vec(), frame.wire_len)));
        prop_assert_eq!(counts.unreadable, 0);
        prop_assert_eq!(counts.cut, sizes.iter().filter(|(_, extra)| *extra > 0).count() as u64);
        let expected: Vec<(Vec<u8>, usize)> = frames
            .iter()
            .map(|frame| (frame.captured.clone(), frame.wire_len as usize))
            .collect();
        prop_assert_eq!(back, expected);
    }
}
