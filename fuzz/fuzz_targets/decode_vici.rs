#![no_main]

//! The VICI decoder on arbitrary bytes: the stream framing (length prefixes, a packet split
//! across reads), the packet decoder, a decoded packet encoded again, and every decoded event
//! fed to the tracker that turns them into model events.

use gateway::vici::client::ViciEvent;
use gateway::vici::tracker::Tracker;
use gateway::vici::wire::{
    FrameReader, MAX_PACKET_BYTES, PacketType, decode_packet, encode_packet,
};
use jiff::{SignedDuration, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The input as one packet.
    if let Ok(packet) = decode_packet(data) {
        // What decodes encodes again, to something that decodes to the same packet.
        if let Ok(bytes) = encode_packet(packet.kind, packet.name.as_deref(), &packet.message) {
            let again = decode_packet(&bytes[4..]).expect("re-encoded packet decodes");
            assert_eq!(again, packet);
        }
    }
    // The input as a stream, fed in uneven reads.
    let mut frames = FrameReader::default();
    let mut tracker = Tracker::default();
    let mut now = Timestamp::from_second(1_795_600_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut out = Vec::new();
    for chunk in data.chunks(7) {
        frames.push(chunk);
        loop {
            match frames.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX_PACKET_BYTES);
                    if let Ok(packet) = decode_packet(&frame)
                        && packet.kind == PacketType::Event
                        && let Some(name) = packet.name
                    {
                        now += SignedDuration::from_millis(400);
                        tracker.on_event(
                            ViciEvent {
                                name,
                                message: packet.message,
                            },
                            now,
                            &mut out,
                        );
                    }
                }
                Ok(None) => break,
                // An oversized announcement closes the stream.
                Err(_) => return,
            }
        }
    }
    tracker.on_disconnect(&mut out);
    tracker.reconcile(Some("restarted".to_owned()), &[], now, &mut out);
    assert!(tracker.state().sas.is_empty());
});
