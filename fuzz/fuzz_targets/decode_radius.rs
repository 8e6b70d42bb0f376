#![no_main]

//! The RADIUS accounting decoder on arbitrary datagrams. Most random bytes fail the Request
//! Authenticator check, so each input is tried twice: as received, and with its
//! authenticator recomputed for the test secret, which lets the fuzzer reach the attribute
//! decoder and the mapping to events behind the check.

use gateway::radius::accounting::{self, Record};
use gateway::radius::packet::{self, HEADER_LEN, Header, request_authenticator};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use model::{EventId, Observer};

const SECRET: &[u8] = b"fuzz-secret";

fn handle(datagram: &[u8]) {
    let Ok(header) = Header::decode(datagram) else {
        return;
    };
    if !header.verify_request(datagram, SECRET) {
        return;
    }
    let received_at = Timestamp::from_second(1_795_600_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let observer = Observer {
        hostname: Some("fuzz".to_owned()),
        product: None,
    };
    let packet_bytes = header.packet_bytes(datagram);
    let proxy_states: Vec<_> = packet::attributes(packet_bytes)
        .map_while(Result::ok)
        .filter(|attribute| attribute.kind == packet::PROXY_STATE)
        .collect();
    match packet::decode(datagram) {
        Ok(decoded) => {
            let accounted = accounting::account(&decoded, received_at);
            if !matches!(accounted.record, Record::NotTracked { .. }) {
                let event = accounted.into_event(
                    EventId::new("fuzz/radius", 1, 0),
                    observer,
                    packet_bytes.len(),
                );
                if let Some(event) = event {
                    assert!(event.original.len() <= 16 * packet::MAX_PACKET_LEN);
                }
            }
        }
        Err(error) => {
            let event = accounting::malformed_event(
                packet_bytes,
                &error,
                EventId::new("fuzz/radius", 1, 0),
                observer,
                received_at,
            );
            assert!(event.original.len() <= 16 * packet::MAX_PACKET_LEN);
        }
    }
    let response = packet::encode_response(&header, &proxy_states, SECRET);
    assert!(response.len() <= packet::MAX_PACKET_LEN);
    assert_eq!(response[0], packet::ACCOUNTING_RESPONSE);
}

fuzz_target!(|data: &[u8]| {
    handle(data);
    if data.len() >= HEADER_LEN && data.len() <= packet::MAX_PACKET_LEN {
        let mut signed = data.to_vec();
        signed[0] = packet::ACCOUNTING_REQUEST;
        let length = u16::from_be_bytes([signed[2], signed[3]]);
        let end = usize::from(length).clamp(HEADER_LEN, signed.len());
        let authenticator = request_authenticator(
            signed[0],
            signed[1],
            length,
            &signed[HEADER_LEN..end],
            SECRET,
        );
        signed[4..HEADER_LEN].copy_from_slice(&authenticator);
        handle(&signed);
    }
});
