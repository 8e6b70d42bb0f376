use proptest::prelude::*;

use super::*;

/// The example message of strongSwan's VICI README, encoded by hand byte for byte.
fn readme_example_bytes() -> Vec<u8> {
    let mut bytes = vec![7, 5];
    bytes.extend_from_slice(b"event");
    // key1 = value1
    bytes.extend_from_slice(&[3, 4]);
    bytes.extend_from_slice(b"key1");
    bytes.extend_from_slice(&[0, 6]);
    bytes.extend_from_slice(b"value1");
    // section1 {
    bytes.extend_from_slice(&[1, 8]);
    bytes.extend_from_slice(b"section1");
    //   sub-section { key2 = value2 }
    bytes.extend_from_slice(&[1, 11]);
    bytes.extend_from_slice(b"sub-section");
    bytes.extend_from_slice(&[3, 4]);
    bytes.extend_from_slice(b"key2");
    bytes.extend_from_slice(&[0, 6]);
    bytes.extend_from_slice(b"value2");
    bytes.push(2);
    //   list1 = [ item1, item2 ]
    bytes.extend_from_slice(&[4, 5]);
    bytes.extend_from_slice(b"list1");
    bytes.extend_from_slice(&[5, 0, 5]);
    bytes.extend_from_slice(b"item1");
    bytes.extend_from_slice(&[5, 0, 5]);
    bytes.extend_from_slice(b"item2");
    bytes.push(6);
    // }
    bytes.push(2);
    bytes
}

#[test]
fn decodes_the_readme_example() {
    let packet = decode_packet(&readme_example_bytes()).unwrap();
    assert_eq!(packet.kind, PacketType::Event);
    assert_eq!(packet.name.as_deref(), Some("event"));
    let message = &packet.message;
    assert_eq!(message.str("key1").as_deref(), Some("value1"));
    let section = message.section("section1").unwrap();
    assert_eq!(
        section
            .section("sub-section")
            .unwrap()
            .str("key2")
            .as_deref(),
        Some("value2")
    );
    assert_eq!(section.list("list1"), vec!["item1", "item2"]);
    assert_eq!(
        message.to_json(),
        serde_json::json!({"key1": "value1", "section1": {"sub-section": {"key2": "value2"}, "list1": ["item1", "item2"]}})
    );
}

#[test]
fn encoding_round_trips() {
    let packet = decode_packet(&readme_example_bytes()).unwrap();
    let encoded = encode_packet(packet.kind, packet.name.as_deref(), &packet.message).unwrap();
    assert_eq!(&encoded[..4], &(encoded.len() as u32 - 4).to_be_bytes());
    assert_eq!(&encoded[4..], readme_example_bytes().as_slice());
    let json = packet.message.to_json();
    assert_eq!(Message::from_json(&json).unwrap().to_json(), json);
}

#[test]
fn unnamed_packets_have_no_name() {
    let packet = decode_packet(&[1, 3, 1, b'k', 0, 1, b'v']).unwrap();
    assert_eq!(packet.kind, PacketType::CmdResponse);
    assert_eq!(packet.name, None);
    assert_eq!(packet.message.str("k").as_deref(), Some("v"));
    assert_eq!(decode_packet(&[5]).unwrap().kind, PacketType::EventConfirm);
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = readme_example_bytes();
    for len in 0..bytes.len() {
        let result = decode_packet(&bytes[..len]);
        // A cut right after a complete element at top level can still be a valid message;
        // everything else is an error that names an offset inside the input.
        if let Err(error) = result {
            assert!(error.offset <= len, "{error}");
        }
    }
    assert!(decode_packet(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn malformed_structures_are_named() {
    let cases: &[(&[u8], &str)] = &[
        (&[], "truncated before the packet type"),
        (&[9], "unknown packet type 9"),
        (&[1, 2], "section end without a section"),
        (&[1, 5, 0, 1], "list element type 5 outside a list"),
        (&[1, 6], "list element type 6 outside a list"),
        (&[1, 8], "unknown element type 8"),
        (&[1, 1, 1, b's'], "section `s` is not closed"),
        (&[1, 4, 1, b'l', 5, 0, 0], "list `l` is not closed"),
        (&[1, 4, 1, b'l', 3], "element type 3 inside a list"),
        (&[1, 3, 200, b'k'], "key of 200 bytes runs past the end"),
        (
            &[1, 3, 1, b'k', 0xff, 0xff, b'v'],
            "value of 65535 bytes runs past the end",
        ),
        (&[0, 10, b'x'], "packet name of 10 bytes runs past the end"),
    ];
    for (bytes, expected) in cases {
        let error = decode_packet(bytes).unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "{bytes:?}: got `{error}`, expected `{expected}`"
        );
    }
}

#[test]
fn nesting_is_bounded() {
    let mut bytes = vec![1];
    for _ in 0..=MAX_DEPTH {
        bytes.extend_from_slice(&[1, 1, b's']);
    }
    let error = decode_packet(&bytes).unwrap_err();
    assert!(
        error.to_string().contains("nested deeper than 32"),
        "{error}"
    );
}

#[test]
fn hostile_bytes_stay_visible() {
    // A value with an ANSI escape, CR/LF and invalid UTF-8 is kept, with the invalid byte
    // visible, never interpreted.
    let mut bytes = vec![1, 3, 2, b'i', b'd'];
    let value = b"\x1b[31mevil\r\nuser\xff";
    bytes.extend_from_slice(&(value.len() as u16).to_be_bytes());
    bytes.extend_from_slice(value);
    let packet = decode_packet(&bytes).unwrap();
    assert_eq!(
        packet.message.str("id").as_deref(),
        Some("\u{1b}[31mevil\r\nuser\\xff")
    );
}

#[test]
fn oversized_packets_are_refused() {
    let bytes = vec![1; MAX_PACKET_BYTES + 1];
    assert!(
        decode_packet(&bytes)
            .unwrap_err()
            .to_string()
            .contains("exceeds")
    );
    let mut frames = FrameReader::default();
    frames.push(&(MAX_PACKET_BYTES as u32 + 1).to_be_bytes());
    assert_eq!(
        frames.next_frame(),
        Err(FrameTooLarge(MAX_PACKET_BYTES as u64 + 1))
    );
    let huge = Message::new().with("k", vec![b'x'; 70_000]);
    assert!(matches!(
        encode_packet(PacketType::CmdRequest, Some("x"), &huge),
        Err(EncodeError::ValueTooLong { .. })
    ));
}

#[test]
fn frames_are_split_across_reads() {
    let packet = encode_packet(PacketType::EventConfirm, None, &Message::new()).unwrap();
    let mut stream = packet.clone();
    stream.extend_from_slice(&packet);
    let mut frames = FrameReader::default();
    let mut n_frames = 0;
    for byte in &stream {
        frames.push(std::slice::from_ref(byte));
        while let Some(frame) = frames.next_frame().unwrap() {
            assert_eq!(frame, vec![5]);
            n_frames += 1;
        }
    }
    assert_eq!(n_frames, 2);
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_packet(&bytes);
        let mut frames = FrameReader::default();
        frames.push(&bytes);
        while let Ok(Some(frame)) = frames.next_frame() {
            let _ = decode_packet(&frame);
        }
    }

    #[test]
    fn mutated_valid_packets_never_panic(index in 0usize..80, byte in any::<u8>()) {
        let mut bytes = readme_example_bytes();
        let index = index % bytes.len();
        bytes[index] = byte;
        let _ = decode_packet(&bytes);
    }
}
