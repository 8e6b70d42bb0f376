use expect_test::{Expect, expect};
use model::EventId;
use proptest::prelude::*;

use super::*;
use crate::radius::packet;

const START: &[u8] = &[0, 0, 0, 1];
const STOP: &[u8] = &[0, 0, 0, 2];
const INTERIM: &[u8] = &[0, 0, 0, 3];

fn received_at() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// An Accounting-Request (the authenticator does not matter to the mapping).
fn datagram(attributes: &[(u8, &[u8])]) -> Vec<u8> {
    let mut datagram = vec![4, 1, 0, 0];
    datagram.extend_from_slice(&[0; 16]);
    for (kind, value) in attributes {
        datagram.push(*kind);
        datagram.push(u8::try_from(value.len() + 2).unwrap());
        datagram.extend_from_slice(value);
    }
    let length = u16::try_from(datagram.len()).unwrap().to_be_bytes();
    datagram[2..4].copy_from_slice(&length);
    datagram
}

fn account_attributes(attributes: &[(u8, &[u8])]) -> Accounted {
    let datagram = datagram(attributes);
    account(&packet::decode(&datagram).unwrap(), received_at())
}

/// Renders what the mapping made: the original, the record as JSON, the timestamp and counts.
#[track_caller]
fn check(attributes: &[(u8, &[u8])], expect: Expect) {
    let accounted = account_attributes(attributes);
    let record = match &accounted.record {
        Record::Session(session) => serde_json::to_string(session).unwrap(),
        other => format!("{other:?}"),
    };
    expect.assert_eq(&format!(
        "{}\n{record}\n@{} unknown={} invalid={}",
        accounted.original,
        accounted.timestamp,
        accounted.n_unknown_attributes,
        accounted.n_invalid_values
    ));
}

#[test]
fn a_strongswan_start() {
    check(
        &[
            (40, START),
            (1, b"carol"),
            (44, b"5"),
            (8, &[10, 99, 0, 1]),
            (31, b"192.0.2.12[4500]"),
            (30, b"192.0.2.1[4500]"),
            (5, &[0, 0, 0, 7]),
            (87, b"rw-eap"),
            (4, &[192, 0, 2, 1]),
            (32, b"strongSwan"),
            (61, &[0, 0, 0, 5]),
            (6, &[0, 0, 0, 2]),
        ],
        expect![[r#"
            Acct-Status-Type=Start User-Name="carol" Acct-Session-Id="5" Framed-IP-Address=10.99.0.1 Calling-Station-Id="192.0.2.12[4500]" Called-Station-Id="192.0.2.1[4500]" NAS-Port=7 NAS-Port-Id="rw-eap" NAS-IP-Address=192.0.2.1 NAS-Identifier="strongSwan" NAS-Port-Type=Virtual Service-Type=Framed-User
            {"peer":{"connection":"rw-eap","ike_sa_id":7,"client":{"ip":"192.0.2.12","port":4500},"server":{"ip":"192.0.2.1","port":4500},"identities":{"ike_id":"carol"}},"change":"start","virtual_ip":"10.99.0.1","accounting_id":"5"}
            @2026-01-01T00:00:00Z unknown=0 invalid=0"#]],
    );
}

#[test]
fn an_interim_update_with_gigawords() {
    check(
        &[
            (40, INTERIM),
            (1, b"carol"),
            (44, b"5"),
            (42, &[0, 0, 0x03, 0xe8]),
            (52, &[0, 0, 0, 2]),
            (43, &[0xff, 0xff, 0xff, 0xff]),
            (47, &[0, 0, 0, 10]),
            (48, &[0, 0, 0, 12]),
            (46, &[0, 0, 0, 60]),
            (55, &[0x65, 0x53, 0xf1, 0x00]),
        ],
        expect![[r#"
            Acct-Status-Type=Interim-Update User-Name="carol" Acct-Session-Id="5" Acct-Input-Octets=1000 Acct-Input-Gigawords=2 Acct-Output-Octets=4294967295 Acct-Input-Packets=10 Acct-Output-Packets=12 Acct-Session-Time=60 Event-Timestamp=2023-11-14T22:13:20Z
            {"peer":{"identities":{"ike_id":"carol"}},"change":"update","accounting_id":"5","counters":{"bytes_in":8589935592,"bytes_out":4294967295,"packets_in":10,"packets_out":12},"duration_secs":60}
            @2023-11-14T22:13:20Z unknown=0 invalid=0"#]],
    );
}

#[test]
fn a_stop_after_dead_peer_detection() {
    check(
        &[
            (40, STOP),
            (1, b"client1@psk.vpn.test"),
            (44, b"1"),
            (43, &[0, 0, 0x10, 0]),
            (53, &[0, 0, 0, 1]),
            (46, &[0, 0, 0x0e, 0x10]),
            (49, &[0, 0, 0, 3]),
            (
                95,
                &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            ),
            (31, b"2001:db8::12[4500]"),
            (41, &[0, 0, 0, 5]),
        ],
        expect![[r#"
            Acct-Status-Type=Stop User-Name="client1@psk.vpn.test" Acct-Session-Id="1" Acct-Output-Octets=4096 Acct-Output-Gigawords=1 Acct-Session-Time=3600 Acct-Terminate-Cause=Lost-Service NAS-IPv6-Address=2001:db8::1 Calling-Station-Id="2001:db8::12[4500]" Acct-Delay-Time=5
            {"peer":{"client":{"ip":"2001:db8::12","port":4500},"server":{"ip":"2001:db8::1","port":null},"identities":{"ike_id":"client1@psk.vpn.test"}},"change":"stop","accounting_id":"1","counters":{"bytes_in":0,"bytes_out":4294971392},"duration_secs":3600,"cause":"lost_service"}
            @2025-12-31T23:59:55Z unknown=0 invalid=0"#]],
    );
}

#[test]
fn terminate_causes() {
    let causes: Vec<String> = (0..=19)
        .map(|cause| {
            let accounted = account_attributes(&[(40, STOP), (49, &u32::to_be_bytes(cause))]);
            let Record::Session(session) = accounted.record else {
                panic!("not a session: {accounted:?}");
            };
            format!("{cause}:{}", session.cause.unwrap().as_str())
        })
        .collect();
    expect![[r#"0:other 1:user_request 2:lost_service 3:lost_service 4:timeout 5:timeout 6:admin_reset 7:admin_reset 8:other 9:other 10:admin_reset 11:other 12:other 13:other 14:other 15:other 16:other 17:other 18:other 19:other"#]]
        .assert_eq(&causes.join(" "));
}

#[test]
fn calling_station_ids() {
    let clients: Vec<String> = [
        &b"192.0.2.12[4500]"[..],
        b"192.0.2.12",
        b"192.0.2.12:500",
        b"[2001:db8::1]:4500",
        b"2001:db8::1",
        b"00-11-22-33-44-55",
        b"192.0.2.12[x]",
        b"",
    ]
    .iter()
    .map(|calling| {
        let accounted = account_attributes(&[(40, START), (31, calling)]);
        let Record::Session(session) = accounted.record else {
            panic!("not a session");
        };
        serde_json::to_string(&session.peer.client).unwrap()
    })
    .collect();
    expect![[r#"
        {"ip":"192.0.2.12","port":4500}
        {"ip":"192.0.2.12","port":null}
        {"ip":"192.0.2.12","port":500}
        {"ip":"2001:db8::1","port":4500}
        {"ip":"2001:db8::1","port":null}
        {"ip":null,"port":null}
        {"ip":null,"port":null}
        {"ip":null,"port":null}"#]]
    .assert_eq(&clients.join("\n"));
}

#[test]
fn the_server_port_comes_from_the_called_station_id_of_the_same_address() {
    let server = |attributes: &[(u8, &[u8])]| {
        let Record::Session(session) = account_attributes(attributes).record else {
            panic!("not a session");
        };
        serde_json::to_string(&session.peer.server).unwrap()
    };
    assert_eq!(
        server(&[(40, START), (4, &[192, 0, 2, 1]), (30, b"192.0.2.9[4500]")]),
        r#"{"ip":"192.0.2.1","port":null}"#
    );
    assert_eq!(
        server(&[(40, START), (30, b"192.0.2.9[4500]")]),
        r#"{"ip":"192.0.2.9","port":4500}"#
    );
    assert_eq!(server(&[(40, START)]), r#"{"ip":null,"port":null}"#);
}

#[test]
fn what_is_not_a_session() {
    check(
        &[(40, &[0, 0, 0, 7]), (4, &[192, 0, 2, 1])],
        expect![[r#"
            Acct-Status-Type=Accounting-On NAS-IP-Address=192.0.2.1
            NotTracked { status_type: 7 }
            @2026-01-01T00:00:00Z unknown=0 invalid=0"#]],
    );
    check(
        &[(40, &[0, 0, 0, 99])],
        expect![[r#"
            Acct-Status-Type=99
            NotTracked { status_type: 99 }
            @2026-01-01T00:00:00Z unknown=0 invalid=0"#]],
    );
    check(
        &[(1, b"carol")],
        expect![[r#"
            User-Name="carol"
            Invalid { message: "accounting request without Acct-Status-Type" }
            @2026-01-01T00:00:00Z unknown=0 invalid=0"#]],
    );
    check(
        &[(40, &[1])],
        expect![[r#"
            Acct-Status-Type=0x01
            Invalid { message: "Acct-Status-Type is not a 4-octet integer" }
            @2026-01-01T00:00:00Z unknown=0 invalid=1"#]],
    );
}

#[test]
fn unknown_attributes_and_values_of_the_wrong_size_are_counted_and_kept() {
    check(
        &[
            (40, START),
            (200, b"\x01\x02"),
            (26, &[0, 0, 0x37, 0x0b, 1, 4, 0xde, 0xad]),
            (8, &[10, 99, 0]),
            (5, &[0, 0, 0, 0, 1]),
            (55, &[0xff, 0xff, 0xff, 0xff]),
            (25, b"\x00class"),
        ],
        expect![[r#"
            Acct-Status-Type=Start Attr-200=0x0102 Vendor-Specific=0x0000370b0104dead Framed-IP-Address=0x0a6300 NAS-Port=0x0000000001 Event-Timestamp=2106-02-07T06:28:15Z Class=0x00636c617373
            {"peer":{"identities":{}},"change":"start"}
            @2106-02-07T06:28:15Z unknown=1 invalid=2"#]],
    );
}

#[test]
fn hostile_values_are_escaped_in_the_original() {
    check(
        &[
            (40, START),
            (1, b"a\r\nb\x1b[31mred\x07\"q\"\\"),
            (87, b"x\xffy\xc3"),
        ],
        expect![[r#"
            Acct-Status-Type=Start User-Name="a\r\nb\x1b[31mred\x07\"q\"\\" NAS-Port-Id="x\xffy\xc3"
            {"peer":{"connection":"x\\xffy\\xc3","identities":{"ike_id":"a\r\nb\u001b[31mred\u0007\"q\"\\"}},"change":"start"}
            @2026-01-01T00:00:00Z unknown=0 invalid=0"#]],
    );
    // Bidirectional overrides, zero-width and C1 characters are shown, not obeyed.
    let accounted = account_attributes(&[(44, "\u{202e}gnp.exe\u{200b}\u{85}".as_bytes())]);
    assert_eq!(
        accounted.original,
        r#"Acct-Session-Id="\u{202e}gnp.exe\u{200b}\u{0085}""#
    );
}

#[test]
fn events_carry_dataset_ids_and_the_original() {
    let accounted = account_attributes(&[(40, START), (1, b"carol")]);
    let event = accounted
        .into_event(
            EventId::new("gw1/radius@1", 4, 0),
            Observer {
                hostname: Some("gw1".to_owned()),
                product: None,
            },
            33,
        )
        .unwrap();
    expect![[r#"{"id":{"source":"gw1/radius@1","seq":4},"timestamp":"2026-01-01T00:00:00Z","dataset":"radius.accounting","observer":{"hostname":"gw1","product":null},"original":"Acct-Status-Type=Start User-Name=\"carol\"","body":{"type":"session","peer":{"identities":{"ike_id":"carol"}},"change":"start"}}"#]]
        .assert_eq(&serde_json::to_string(&event).unwrap());

    let ignored = account_attributes(&[(40, &[0, 0, 0, 8])]);
    assert!(
        ignored
            .into_event(EventId::new("s", 0, 0), Observer::default(), 26)
            .is_none()
    );

    let invalid = account_attributes(&[(1, b"carol")]);
    let event = invalid
        .into_event(EventId::new("s", 0, 0), Observer::default(), 27)
        .unwrap();
    assert_eq!(event.body.action(), "rejected-malformed");
}

#[test]
fn malformed_attributes_keep_what_was_readable_and_the_rest_in_hex() {
    let mut bytes = datagram(&[(40, START), (1, b"carol\n")]);
    bytes.extend_from_slice(&[44, 9, b'1']);
    let length = u16::try_from(bytes.len()).unwrap().to_be_bytes();
    bytes[2..4].copy_from_slice(&length);
    let error = packet::decode(&bytes).unwrap_err();
    let event = malformed_event(
        &bytes,
        &error,
        EventId::new("gw1/radius@1", 0, 0),
        Observer::default(),
        received_at(),
    );
    expect![[r#"Acct-Status-Type=Start User-Name="carol\n" [malformed: attribute 44 at offset 34 has length 9 but only 3 bytes remain] 0x2c0931"#]]
        .assert_eq(&event.original);
    expect![[r#"{"type":"pipeline_error","reason":"malformed","message":"malformed accounting request: attribute 44 at offset 34 has length 9 but only 3 bytes remain","original_len":37}"#]]
        .assert_eq(&serde_json::to_string(&event.body).unwrap());
}

fn is_hostile(character: char) -> bool {
    character.is_control() || is_invisible_format(character)
}

proptest! {
    #[test]
    fn the_original_is_one_line_without_control_characters(
        attributes in proptest::collection::vec(
            (
                prop_oneof![Just(1u8), Just(31), Just(40), Just(44), Just(87), any::<u8>()],
                proptest::collection::vec(any::<u8>(), 0..=40),
            ),
            0..10,
        ),
    ) {
        let borrowed: Vec<(u8, &[u8])> = attributes
            .iter()
            .map(|(kind, value)| (*kind, value.as_slice()))
            .collect();
        let accounted = account_attributes(&borrowed);
        prop_assert!(!accounted.original.chars().any(is_hostile), "{}", accounted.original);
    }
}
