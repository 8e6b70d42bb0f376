use expect_test::expect;

use super::*;
use crate::parse::Format;
use crate::parse::tests::{check, now, parser};

#[test]
fn state_is_per_pid() {
    check(
        Format::Pppd,
        "Nov 25 08:00:00 gw pppd[1]: PAP peer authentication succeeded for alice\n\
         Nov 25 08:00:00 gw pppd[2]: CHAP peer authentication succeeded for bob\n\
         Nov 25 08:00:01 gw pppd[1]: remote IP address 10.0.0.2\n\
         Nov 25 08:00:01 gw pppd[2]: remote IP address 10.0.0.3\n\
         Nov 25 08:00:02 gw pppd[1]: Connection terminated.\n\
         Nov 25 08:00:03 gw pppd[2]: Exit.\n",
        expect![[r#"
            {"body":{"method":"pap","outcome":"success","peer":{"identities":{"xauth_id":"alice"}},"type":"auth"},"dataset":"ppp.pppd","id":{"seq":0,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:00Z"}
            {"body":{"method":"chap","outcome":"success","peer":{"identities":{"xauth_id":"bob"}},"type":"auth"},"dataset":"ppp.pppd","id":{"seq":1,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:00Z"}
            {"body":{"change":"assigned","ip":"10.0.0.2","peer":{"identities":{"xauth_id":"alice"}},"type":"virtual_ip"},"dataset":"ppp.pppd","id":{"seq":2,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:01Z"}
            {"body":{"change":"start","peer":{"identities":{"xauth_id":"alice"}},"type":"session","virtual_ip":"10.0.0.2"},"dataset":"ppp.pppd","id":{"part":1,"seq":2,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:01Z"}
            {"body":{"change":"assigned","ip":"10.0.0.3","peer":{"identities":{"xauth_id":"bob"}},"type":"virtual_ip"},"dataset":"ppp.pppd","id":{"seq":3,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:01Z"}
            {"body":{"change":"start","peer":{"identities":{"xauth_id":"bob"}},"type":"session","virtual_ip":"10.0.0.3"},"dataset":"ppp.pppd","id":{"part":1,"seq":3,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:01Z"}
            {"body":{"cause":"other","change":"stop","peer":{"identities":{"xauth_id":"alice"}},"type":"session","virtual_ip":"10.0.0.2"},"dataset":"ppp.pppd","id":{"seq":4,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:02Z"}
            {"body":{"change":"released","ip":"10.0.0.2","peer":{"identities":{"xauth_id":"alice"}},"type":"virtual_ip"},"dataset":"ppp.pppd","id":{"part":1,"seq":4,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:02Z"}
            {"body":{"cause":"other","change":"stop","peer":{"identities":{"xauth_id":"bob"}},"type":"session","virtual_ip":"10.0.0.3"},"dataset":"ppp.pppd","id":{"seq":5,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:03Z"}
            {"body":{"change":"released","ip":"10.0.0.3","peer":{"identities":{"xauth_id":"bob"}},"type":"virtual_ip"},"dataset":"ppp.pppd","id":{"part":1,"seq":5,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:03Z"}
            # 6 lines: 10 events, 0 ignored, 0 rejected
        "#]],
    );
}

#[test]
fn connect_time_is_read_in_tenths_of_minutes() {
    assert_eq!(tenths_of_minutes("12.3"), Some(738));
    assert_eq!(tenths_of_minutes("0.1"), Some(6));
    assert_eq!(tenths_of_minutes("5"), Some(300));
    assert_eq!(tenths_of_minutes("1.23"), None);
    assert_eq!(tenths_of_minutes("99999999999999999999.9"), None);
    assert_eq!(tenths_of_minutes("-1.0"), None);
}

#[test]
fn tracked_links_are_bounded() {
    let mut parser = parser(Format::Pppd);
    let mut events = Vec::new();
    for pid in 0..(MAX_TRACKED_LINKS as u64 + 10_000) {
        let line = format!("Nov 25 08:00:00 gw pppd[{pid}]: Using interface ppp0");
        parser.parse_line(line.as_bytes(), pid, now(), &mut events);
        events.clear();
    }
    assert!(parser.pppd.links.len() <= MAX_TRACKED_LINKS + 1);
}

#[test]
fn debug_dumps_show_the_chap_logins_pppd_otherwise_keeps_quiet_about() {
    // pppd 2.4.x with `debug`: the Response names the user, the Success accepts it. A Failure
    // is reported by pppd's own `Peer … failed` line, not by the dump; a Success nobody
    // asked for, a Response without a name, and a name with quotes are handled.
    check(
        Format::Pppd,
        "Nov 25 08:00:00 gw pppd[7]: rcvd [CHAP Response id=0x1 <00ff>, name = \"alice\"]\n\
         Nov 25 08:00:00 gw pppd[7]: sent [CHAP Success id=0x1 \"S=0011 M=Access granted\"]\n\
         Nov 25 08:00:01 gw pppd[8]: rcvd [CHAP Response id=0x2 <00ff>, name = \"mallory\"]\n\
         Nov 25 08:00:01 gw pppd[8]: sent [CHAP Failure id=0x2 \"E=691 R=1 C=00 V=0 M=Access denied\"]\n\
         Nov 25 08:00:01 gw pppd[8]: Peer mallory failed CHAP authentication\n\
         Nov 25 08:00:02 gw pppd[9]: sent [CHAP Success id=0x3 \"S=0011 M=Access granted\"]\n\
         Nov 25 08:00:03 gw pppd[10]: rcvd [CHAP Response id=0x4 <00ff>]\n\
         Nov 25 08:00:03 gw pppd[10]: rcvd [CHAP Response id=0x5 <00ff>, name = \"eve\\\"\\x1b[31m\"]\n\
         Nov 25 08:00:03 gw pppd[10]: sent [CHAP Success id=0x5 \"S=0011 M=Access granted\"]\n",
        expect![[r#"
            {"body":{"method":"chap","outcome":"success","peer":{"identities":{"xauth_id":"alice"}},"type":"auth"},"dataset":"ppp.pppd","id":{"seq":1,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:00Z"}
            {"body":{"failure":{"code":"other","reason":"Peer mallory failed CHAP authentication"},"method":"chap","outcome":"failure","peer":{"identities":{"xauth_id":"mallory"}},"type":"auth"},"dataset":"ppp.pppd","id":{"seq":4,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:01Z"}
            {"body":{"method":"chap","outcome":"success","peer":{"identities":{"xauth_id":"eve\\\"\\x1b[31m"}},"type":"auth"},"dataset":"ppp.pppd","id":{"seq":8,"source":"gw1/pppd"},"observer":{"hostname":"gw","product":"ppp"},"timestamp":"2026-11-25T08:00:03Z"}
            # 9 lines: 3 events, 2 ignored, 0 rejected
        "#]],
    );
}
