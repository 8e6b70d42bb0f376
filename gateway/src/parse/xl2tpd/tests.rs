use expect_test::expect;

use super::*;
use crate::parse::Format;
use crate::parse::tests::{check, now, parser};

#[test]
fn a_call_closes_once_and_keeps_its_tunnel() {
    check(
        Format::Xl2tpd,
        "Connection established to 192.0.2.11, 1701.  Local: 100, Remote: 1 (ref=0/0).  LNS session is 'default'\n\
         Call established with 192.0.2.11, Local: 200, Remote: 2, Serial: 1 (ref=0/0)\n\
         child_handler : pppd terminated for call 2 by signal 15\n\
         call_close: Call 200 to 192.0.2.11 disconnected\n\
         child_handler : pppd exited for call 99 with code 1\n",
        expect![[r#"
            {"body":{"change":"tunnel_established","peer":{"client":{"ip":"192.0.2.11","port":1701},"connection":"default","identities":{}},"peer_tunnel_id":1,"tunnel_id":100,"type":"l2tp"},"dataset":"xl2tpd.log","id":{"seq":0,"source":"gw1/xl2tpd"},"observer":{"hostname":"gw1","product":"xl2tpd"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"call_id":200,"change":"call_established","peer":{"client":{"ip":"192.0.2.11","port":1701},"connection":"default","identities":{}},"peer_call_id":2,"peer_tunnel_id":1,"tunnel_id":100,"type":"l2tp"},"dataset":"xl2tpd.log","id":{"seq":1,"source":"gw1/xl2tpd"},"observer":{"hostname":"gw1","product":"xl2tpd"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"call_id":200,"change":"call_closed","peer":{"client":{"ip":"192.0.2.11","port":1701},"connection":"default","identities":{}},"peer_call_id":2,"peer_tunnel_id":1,"reason":"pppd terminated by signal 15","tunnel_id":100,"type":"l2tp"},"dataset":"xl2tpd.log","id":{"seq":2,"source":"gw1/xl2tpd"},"observer":{"hostname":"gw1","product":"xl2tpd"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"change":"call_closed","peer":{"identities":{}},"peer_call_id":99,"reason":"pppd exited with code 1","type":"l2tp"},"dataset":"xl2tpd.log","id":{"seq":4,"source":"gw1/xl2tpd"},"observer":{"hostname":"gw1","product":"xl2tpd"},"timestamp":"2026-11-25T12:00:00Z"}
            # 5 lines: 4 events, 0 ignored, 0 rejected
        "#]],
    );
}

#[test]
fn malformed_numbers_do_not_make_events() {
    check(
        Format::Xl2tpd,
        "Connection established to not-an-ip, 1701.  Local: 1, Remote: 2\n\
         Call established with 192.0.2.11, Local: 99999999, Remote: x, Serial: 1\n\
         call_close: Call x to y disconnected\n",
        expect![[r#"
            {"body":{"change":"call_established","peer":{"client":{"ip":"192.0.2.11","port":null},"identities":{}},"type":"l2tp"},"dataset":"xl2tpd.log","id":{"seq":1,"source":"gw1/xl2tpd"},"observer":{"hostname":"gw1","product":"xl2tpd"},"timestamp":"2026-11-25T12:00:00Z"}
            # 3 lines: 1 events, 2 ignored, 0 rejected
        "#]],
    );
}

#[test]
fn tracked_tunnels_and_calls_are_bounded() {
    let mut parser = parser(Format::Xl2tpd);
    let mut events = Vec::new();
    for idx in 0..(MAX_TRACKED as u64 + 10_000) {
        let id = idx % 65_536;
        let tunnel = format!(
            "Connection established to 192.0.2.7, 1701.  Local: {id}, Remote: 1 (ref=0/0)."
        );
        let call = format!("Call established with 192.0.2.7, Local: {id}, Remote: 2, Serial: 1");
        parser.parse_line(tunnel.as_bytes(), 2 * idx, now(), &mut events);
        parser.parse_line(call.as_bytes(), 2 * idx + 1, now(), &mut events);
        events.clear();
    }
    assert!(parser.xl2tpd.tunnels.len() <= MAX_TRACKED + 1);
    assert!(parser.xl2tpd.calls.len() <= MAX_TRACKED + 1);
}
