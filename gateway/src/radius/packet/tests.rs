use expect_test::{Expect, expect};
use proptest::prelude::*;

use super::*;

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|idx| u8::from_str_radix(&text[idx..idx + 2], 16).unwrap())
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Sent by FreeRADIUS 3.2.1 `radclient acct` with secret `s3cret` (captured on a plain UDP
/// socket): Start for carol with Gigawords and Event-Timestamp. The answer below was computed
/// with Python's hashlib, independently of this crate.
const RADCLIENT_START: &str = "04d4005ca3cea711008122fb2d94ffc7dd410d9928060000000101076361726f6c2c033508060a6300011f123139322e302e322e31325b343530305d050600000007570872772d6561700406c000020134060000000137066553f100";
const RADCLIENT_START_RESPONSE: &str = "05d4001453592ab1f7c1264ed90b9488a4ad2eb0";
/// Hand-built, secret `testing123`: Acct-Status-Type=Start only.
const MINIMAL: &str = "0401001ac26ec973e08c228c41e82569b20e9fa5280600000001";
const MINIMAL_RESPONSE: &str = "050100148ecf06a767c8b326c41f4dbab60b1038";
/// Hand-built, secret `testing123`: Start plus Proxy-State "abc", which the answer echoes.
const WITH_PROXY_STATE: &str = "0402001f00bed01d7c0e6b7385caff963aa149c32806000000012105616263";
const WITH_PROXY_STATE_RESPONSE: &str = "050200198072e11ba978c46fcc04b6dd3064a2752105616263";

/// Builds an Accounting-Request with a correct authenticator.
pub(crate) fn request(identifier: u8, attributes: &[(u8, &[u8])], secret: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, value) in attributes {
        body.push(*kind);
        body.push(u8::try_from(value.len() + 2).unwrap());
        body.extend_from_slice(value);
    }
    let length = u16::try_from(HEADER_LEN + body.len()).unwrap();
    let authenticator =
        request_authenticator(ACCOUNTING_REQUEST, identifier, length, &body, secret);
    let mut packet = vec![ACCOUNTING_REQUEST, identifier];
    packet.extend_from_slice(&length.to_be_bytes());
    packet.extend_from_slice(&authenticator);
    packet.extend_from_slice(&body);
    packet
}

#[track_caller]
fn check_error(datagram: &[u8], expect: Expect) {
    let error = decode(datagram).unwrap_err();
    expect.assert_eq(&format!("{error:?}: {error}"));
}

#[test]
fn a_radclient_packet_decodes_and_verifies() {
    let datagram = hex(RADCLIENT_START);
    let packet = decode(&datagram).unwrap();
    assert_eq!(packet.header.code, ACCOUNTING_REQUEST);
    assert_eq!(packet.header.identifier, 0xd4);
    assert_eq!(usize::from(packet.header.length), datagram.len());
    let kinds: Vec<u8> = packet
        .attributes
        .iter()
        .map(|attribute| attribute.kind)
        .collect();
    assert_eq!(kinds, [40, 1, 44, 8, 31, 5, 87, 4, 52, 55]);
    assert_eq!(packet.first(1), Some(&b"carol"[..]));
    assert_eq!(packet.first(31), Some(&b"192.0.2.12[4500]"[..]));
    assert!(packet.header.verify_request(&datagram, b"s3cret"));
    assert!(!packet.header.verify_request(&datagram, b"s3creT"));
    assert!(!packet.header.verify_request(&datagram, b"s3cret\n"));
    let response = encode_response(&packet.header, &[], b"s3cret");
    assert_eq!(to_hex(&response), RADCLIENT_START_RESPONSE);
}

#[test]
fn hand_built_vectors_verify_and_answer() {
    let datagram = hex(MINIMAL);
    let packet = decode(&datagram).unwrap();
    assert!(packet.header.verify_request(&datagram, b"testing123"));
    assert_eq!(
        to_hex(&encode_response(&packet.header, &[], b"testing123")),
        MINIMAL_RESPONSE
    );
    assert_eq!(datagram, request(1, &[(40, &[0, 0, 0, 1])], b"testing123"));

    let datagram = hex(WITH_PROXY_STATE);
    let packet = decode(&datagram).unwrap();
    assert!(packet.header.verify_request(&datagram, b"testing123"));
    let proxy_states: Vec<Attribute<'_>> = packet
        .attributes
        .iter()
        .copied()
        .filter(|attribute| attribute.kind == PROXY_STATE)
        .collect();
    assert_eq!(
        to_hex(&encode_response(
            &packet.header,
            &proxy_states,
            b"testing123"
        )),
        WITH_PROXY_STATE_RESPONSE
    );
}

#[test]
fn every_bit_of_a_packet_is_covered_by_the_authenticator() {
    let datagram = hex(RADCLIENT_START);
    for byte_idx in 0..datagram.len() {
        let mut forged = datagram.clone();
        forged[byte_idx] ^= 0x01;
        let verified = Header::decode(&forged)
            .map(|header| header.verify_request(&forged, b"s3cret"))
            .unwrap_or(false);
        assert!(!verified, "flipping byte {byte_idx} went unnoticed");
    }
}

#[test]
fn every_truncation_is_rejected_with_its_reason() {
    let datagram = hex(RADCLIENT_START);
    for len in 0..datagram.len() {
        let error = decode(&datagram[..len]).unwrap_err();
        let expected = if len < HEADER_LEN {
            PacketError::TooShort { len }
        } else {
            PacketError::Truncated {
                length: 92,
                datagram_len: len,
            }
        };
        assert_eq!(error, expected, "prefix of {len} bytes");
    }
}

#[test]
fn bytes_after_the_length_field_are_padding() {
    let mut datagram = hex(RADCLIENT_START);
    let packet_len = datagram.len();
    datagram.extend_from_slice(&[0xff; 30]);
    let packet = decode(&datagram).unwrap();
    assert_eq!(packet.attributes.len(), 10);
    assert!(packet.header.verify_request(&datagram, b"s3cret"));
    assert_eq!(packet.header.packet_bytes(&datagram).len(), packet_len);
}

#[test]
fn header_errors() {
    let mut datagram = hex(MINIMAL);
    datagram[3] = 19;
    check_error(
        &datagram,
        expect![[r#"LengthTooSmall { length: 19 }: length field 19 is below the 20-byte minimum"#]],
    );
    datagram[2..4].copy_from_slice(&4097u16.to_be_bytes());
    check_error(
        &datagram,
        expect![[
            r#"LengthTooLarge { length: 4097 }: length field 4097 is above the 4096-byte maximum"#
        ]],
    );
    datagram[2..4].copy_from_slice(&27u16.to_be_bytes());
    check_error(
        &datagram,
        expect![[
            r#"Truncated { length: 27, datagram_len: 26 }: length field 27 is larger than the 26-byte datagram"#
        ]],
    );
    for code in [1, 2, 3, 5, 40, 255] {
        let mut datagram = hex(MINIMAL);
        datagram[0] = code;
        assert_eq!(decode(&datagram), Err(PacketError::WrongCode { code }));
    }
    check_error(
        &[1, 2, 3],
        expect![[r#"TooShort { len: 3 }: datagram of 3 bytes is shorter than the 20-byte header"#]],
    );
}

#[test]
fn oversized_datagrams_are_rejected_and_the_largest_packet_is_not() {
    let value = [b'x'; 253];
    let mut attributes = vec![(1u8, &value[..]); 15];
    // 20 + 15 * 255 = 3845; fill up to exactly 4096 with one more attribute.
    let filler = [b'y'; 4096 - 3845 - 2];
    attributes.push((2, &filler[..]));
    let datagram = request(9, &attributes, b"secret");
    assert_eq!(datagram.len(), MAX_PACKET_LEN);
    let packet = decode(&datagram).unwrap();
    assert!(packet.header.verify_request(&datagram, b"secret"));
    let mut oversized = datagram.clone();
    oversized.push(0);
    check_error(
        &oversized,
        expect![[
            r#"Oversized { len: 4097 }: datagram of 4097 bytes is larger than the 4096-byte maximum"#
        ]],
    );
}

#[test]
fn attribute_errors_keep_the_header_verifiable() {
    // Attribute length 0, length 1, overrun, and a type without a length octet; each packet
    // has a correct authenticator, so the receiver can keep it as a pipeline error.
    let cases: [(&[u8], Expect); 4] = [
        (
            &[40, 6, 0, 0, 0, 1, 1, 0],
            expect![[
                r#"AttributeTooShort { offset: 26, kind: 1, length: 0 }: attribute 1 at offset 26 has length 0, below the minimum of 2"#
            ]],
        ),
        (
            &[1, 1, 40, 6, 0, 0, 0, 1],
            expect![[
                r#"AttributeTooShort { offset: 20, kind: 1, length: 1 }: attribute 1 at offset 20 has length 1, below the minimum of 2"#
            ]],
        ),
        (
            &[40, 6, 0, 0, 0, 1, 1, 9, b'c', b'a'],
            expect![[
                r#"AttributeOverrun { offset: 26, kind: 1, length: 9, remaining: 4 }: attribute 1 at offset 26 has length 9 but only 4 bytes remain"#
            ]],
        ),
        (
            &[40, 6, 0, 0, 0, 1, 44],
            expect![[
                r#"AttributeCutOff { offset: 26, kind: 44 }: attribute 44 at offset 26 is cut off before its length octet"#
            ]],
        ),
    ];
    for (body, expect) in cases {
        let length = u16::try_from(HEADER_LEN + body.len()).unwrap();
        let authenticator = request_authenticator(4, 7, length, body, b"secret");
        let mut datagram = vec![4, 7];
        datagram.extend_from_slice(&length.to_be_bytes());
        datagram.extend_from_slice(&authenticator);
        datagram.extend_from_slice(body);
        let header = Header::decode(&datagram).unwrap();
        assert!(header.verify_request(&datagram, b"secret"));
        let error = decode(&datagram).unwrap_err();
        assert!(error.attribute_offset().is_some());
        check_error(&datagram, expect);
    }
}

#[test]
fn unknown_and_vendor_specific_attributes_are_kept_raw() {
    let vsa = [0, 0, 0x37, 0x0b, 1, 4, 0xde, 0xad];
    let datagram = request(
        3,
        &[
            (40, &[0, 0, 0, 3]),
            (200, b"\x00\x01"),
            (26, &vsa),
            (241, b""),
        ],
        b"secret",
    );
    let packet = decode(&datagram).unwrap();
    assert_eq!(
        format!("{:?}", packet.attributes),
        "[Attribute(40, 0x00000003), Attribute(200, 0x0001), Attribute(26, 0x0000370b0104dead), Attribute(241, 0x)]"
    );
}

#[test]
fn responses_stay_within_the_maximum_size() {
    let value = [7u8; 253];
    let header = Header::decode(&hex(MINIMAL)).unwrap();
    let proxy_states = vec![
        Attribute {
            kind: PROXY_STATE,
            value: &value,
        };
        20
    ];
    let response = encode_response(&header, &proxy_states, b"secret");
    // 16 would make 4100 bytes: the 16th is left out.
    assert_eq!(response.len(), HEADER_LEN + 15 * 255);
    assert_eq!(
        usize::from(u16::from_be_bytes([response[2], response[3]])),
        response.len()
    );
}

proptest! {
    #[test]
    fn decoding_never_panics(datagram in proptest::collection::vec(any::<u8>(), 0..4200)) {
        if let Ok(header) = Header::decode(&datagram) {
            let _ = header.verify_request(&datagram, b"secret");
        }
        let _ = decode(&datagram);
    }

    #[test]
    fn decoding_never_panics_on_sound_headers(
        identifier in any::<u8>(),
        body in proptest::collection::vec(any::<u8>(), 0..600),
        padding in proptest::collection::vec(any::<u8>(), 0..8),
    ) {
        let length = u16::try_from(HEADER_LEN + body.len()).unwrap();
        let authenticator = request_authenticator(4, identifier, length, &body, b"secret");
        let mut datagram = vec![4, identifier];
        datagram.extend_from_slice(&length.to_be_bytes());
        datagram.extend_from_slice(&authenticator);
        datagram.extend_from_slice(&body);
        datagram.extend_from_slice(&padding);
        let header = Header::decode(&datagram).unwrap();
        prop_assert!(header.verify_request(&datagram, b"secret"));
        let _ = decode(&datagram);
    }

    #[test]
    fn well_formed_requests_round_trip(
        identifier in any::<u8>(),
        attributes in proptest::collection::vec(
            (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..=253)),
            0..12,
        ),
    ) {
        let borrowed: Vec<(u8, &[u8])> = attributes
            .iter()
            .map(|(kind, value)| (*kind, value.as_slice()))
            .collect();
        let datagram = request(identifier, &borrowed, b"secret");
        let packet = decode(&datagram).unwrap();
        prop_assert!(packet.header.verify_request(&datagram, b"secret"));
        let decoded: Vec<(u8, &[u8])> = packet
            .attributes
            .iter()
            .map(|attribute| (attribute.kind, attribute.value))
            .collect();
        prop_assert_eq!(decoded, borrowed);
    }
}
