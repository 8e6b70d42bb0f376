use expect_test::expect;

use super::*;
use crate::parse::Format;
use crate::parse::tests::{check, now, parser};

#[test]
fn prefixes() {
    let cases = [
        (
            "\"l2tp-psk\"[7] 198.51.100.23 #27: msg",
            (
                Some("l2tp-psk"),
                Some("7"),
                Some("198.51.100.23"),
                Some(27),
                "msg",
            ),
        ),
        (
            "\"c\" #2: msg: more",
            (Some("c"), None, None, Some(2), "msg: more"),
        ),
        ("\"c\": msg", (Some("c"), None, None, None, "msg")),
        (
            "\"p#192.0.2.0/24\"[3] ...192.0.2.51 #3: m",
            (
                Some("p#192.0.2.0/24"),
                Some("3"),
                Some("192.0.2.51"),
                Some(3),
                "m",
            ),
        ),
        ("#6:  msg", (None, None, None, Some(6), " msg")),
        (
            "packet from 192.0.2.9:500: m",
            (None, None, Some("192.0.2.9"), None, "m"),
        ),
        (
            "\"c\"[1] 2001:db8::1 #4: m",
            (Some("c"), Some("1"), Some("2001:db8::1"), Some(4), "m"),
        ),
        (
            "plain text: here",
            (None, None, None, None, "plain text: here"),
        ),
        ("\"unterminated", (None, None, None, None, "\"unterminated")),
        (
            "\"c\"[1] 198.51.100.23:",
            (Some("c"), Some("1"), Some("198.51.100.23"), None, ""),
        ),
    ];
    for (text, (connection, instance, client, serial, message)) in cases {
        let (prefix, rest) = split_prefix(text);
        assert_eq!(
            (
                prefix.connection,
                prefix.instance,
                prefix
                    .client
                    .and_then(|client| client.ip)
                    .map(|ip| ip.to_string()),
                prefix.serial,
                rest
            ),
            (
                connection,
                instance,
                client.map(str::to_owned),
                serial,
                message
            ),
            "{text:?}"
        );
    }
}

#[test]
fn byte_amounts() {
    assert_eq!(byte_amount("84B"), Some(84));
    assert_eq!(byte_amount("2KB"), Some(2048));
    assert_eq!(byte_amount("7MB"), Some(7 << 20));
    assert_eq!(byte_amount("99999999999999999999GB"), None);
    assert_eq!(byte_amount("3XB"), None);
}

#[test]
fn ikev1_quick_mode_belongs_to_the_newest_ike_sa_of_its_instance() {
    check(
        Format::Pluto,
        "\"rw\"[1] 192.0.2.11 #1: STATE_MAIN_R3: sent MR3, ISAKMP SA established {auth=RSA_SIG cipher=aes_256 integ=sha2_256 group=MODP2048}\n\
         \"rw\"[2] 192.0.2.12 #2: STATE_MAIN_R3: sent MR3, ISAKMP SA established {auth=PRESHARED_KEY cipher=aes_256 integ=sha2_256 group=MODP2048}\n\
         \"rw\"[1] 192.0.2.11 #3: STATE_QUICK_R2: IPsec SA established tunnel mode {ESP=>0x01 <0x02 xfrm=AES_CBC-HMAC_SHA1 NATOA=none NATD=none DPD=passive}\n",
        expect![[r#"
            {"body":{"method":"cert","outcome":"success","peer":{"client":{"ip":"192.0.2.11","port":null},"connection":"rw","identities":{},"ike_sa_id":1},"type":"auth"},"dataset":"libreswan.pluto","id":{"seq":0,"source":"gw1/pluto"},"observer":{"hostname":"gw1","product":"libreswan"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"change":"established","peer":{"client":{"ip":"192.0.2.11","port":null},"connection":"rw","identities":{},"ike_sa_id":1},"type":"ike_sa"},"dataset":"libreswan.pluto","id":{"part":1,"seq":0,"source":"gw1/pluto"},"observer":{"hostname":"gw1","product":"libreswan"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"method":"psk","outcome":"success","peer":{"client":{"ip":"192.0.2.12","port":null},"connection":"rw","identities":{},"ike_sa_id":2},"type":"auth"},"dataset":"libreswan.pluto","id":{"seq":1,"source":"gw1/pluto"},"observer":{"hostname":"gw1","product":"libreswan"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"change":"established","peer":{"client":{"ip":"192.0.2.12","port":null},"connection":"rw","identities":{},"ike_sa_id":2},"type":"ike_sa"},"dataset":"libreswan.pluto","id":{"part":1,"seq":1,"source":"gw1/pluto"},"observer":{"hostname":"gw1","product":"libreswan"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"change":"established","child_sa_id":3,"name":"rw","peer":{"client":{"ip":"192.0.2.11","port":null},"connection":"rw","identities":{},"ike_sa_id":1},"spi_in":"02","spi_out":"01","type":"child_sa"},"dataset":"libreswan.pluto","id":{"seq":2,"source":"gw1/pluto"},"observer":{"hostname":"gw1","product":"libreswan"},"timestamp":"2026-11-25T12:00:00Z"}
            # 3 lines: 5 events, 0 ignored, 0 rejected
        "#]],
    );
}

#[test]
fn a_failure_is_reported_once_per_state_but_every_xauth_attempt_counts() {
    check(
        Format::Pluto,
        "\"c\"[1] 192.0.2.11 #1: probable authentication failure (mismatch of preshared secrets?): malformed payload in packet\n\
         \"c\"[1] 192.0.2.11 #1: sending notification INVALID_HASH_INFORMATION AUTHENTICATION_FAILED to 192.0.2.11:500\n\
         \"c\"[1] 192.0.2.11 #2: XAUTH: User bob: Authentication Failed: Incorrect Username or Password\n\
         \"c\"[1] 192.0.2.11 #2: XAUTH: User bob: Authentication Failed (retry 1)\n",
        expect![[r#"
            {"body":{"failure":{"code":"psk_mismatch","reason":"probable authentication failure (mismatch of preshared secrets?): malformed payload in packet"},"method":"psk","outcome":"failure","peer":{"client":{"ip":"192.0.2.11","port":null},"connection":"c","identities":{},"ike_sa_id":1},"type":"auth"},"dataset":"libreswan.pluto","id":{"seq":0,"source":"gw1/pluto"},"observer":{"hostname":"gw1","product":"libreswan"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"failure":{"code":"other","reason":"XAUTH: User bob: Authentication Failed: Incorrect Username or Password"},"method":"xauth","outcome":"failure","peer":{"client":{"ip":"192.0.2.11","port":null},"connection":"c","identities":{"xauth_id":"bob"},"ike_sa_id":2},"type":"auth"},"dataset":"libreswan.pluto","id":{"seq":2,"source":"gw1/pluto"},"observer":{"hostname":"gw1","product":"libreswan"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"failure":{"code":"other","reason":"XAUTH: User bob: Authentication Failed (retry 1)"},"method":"xauth","outcome":"failure","peer":{"client":{"ip":"192.0.2.11","port":null},"connection":"c","identities":{"xauth_id":"bob"},"ike_sa_id":2},"type":"auth"},"dataset":"libreswan.pluto","id":{"seq":3,"source":"gw1/pluto"},"observer":{"hostname":"gw1","product":"libreswan"},"timestamp":"2026-11-25T12:00:00Z"}
            # 4 lines: 3 events, 0 ignored, 0 rejected
        "#]],
    );
}

#[test]
fn other_programs_and_unknown_messages_are_ignored() {
    check(
        Format::Pluto,
        "Nov 25 08:00:00 gw sshd[1]: Accepted publickey for root\n\
         Nov 25 08:00:00 gw pluto[1]: NSS initialized\n\
         garbage that is not pluto\n",
        expect![[r#"
            # 3 lines: 0 events, 3 ignored, 0 rejected
        "#]],
    );
}

#[test]
fn tracked_states_are_bounded() {
    let mut parser = parser(Format::Pluto);
    let mut events = Vec::new();
    for serial in 0..(MAX_TRACKED_STATES as u64 + 10_000) {
        let line = format!(
            "\"rw\"[{serial}] 192.0.2.7 #{serial}: responding to Main Mode from unknown peer 192.0.2.7:500"
        );
        parser.parse_line(line.as_bytes(), serial, now(), &mut events);
        events.clear();
    }
    assert!(parser.pluto.states.len() <= MAX_TRACKED_STATES + 1);
    assert!(parser.pluto.newest_ike.len() <= MAX_TRACKED_STATES + 1);
}
