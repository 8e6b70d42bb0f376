use expect_test::expect;

use super::*;
use crate::parse::tests::{check, now, parser, render};

const START: &str = "Wed Nov 25 09:33:12 2026\n\
    \tAcct-Status-Type = Start\n\
    \tUser-Name = \"alice\"\n\
    \tAcct-Session-Id = \"s1\"\n\
    \tCalling-Station-Id = \"192.0.2.12[4500]\"\n\
    \tTimestamp = 1795599192\n";

#[test]
fn a_record_ends_at_a_blank_line_the_next_header_or_the_flush() {
    let with_blank = format!("{START}\n");
    let (at_blank, _) = render(Format::RadiusDetail, with_blank.as_bytes());
    let (at_flush, _) = render(Format::RadiusDetail, START.as_bytes());
    // The blank line is line 6, where the flush puts a record that lacks one: same id.
    let id = r#""id":{"seq":6,"source":"gw1/radius-detail"}"#;
    assert!(at_blank.contains(id), "{at_blank}");
    assert!(at_flush.contains(id), "{at_flush}");
    let event = |rendered: &str| rendered.lines().next().unwrap().to_owned();
    assert_eq!(event(&at_blank), event(&at_flush));
    let two = format!("{START}{START}");
    let (rendered, stats) = render(Format::RadiusDetail, two.as_bytes());
    assert_eq!(stats.events, 2, "{rendered}");
    assert!(rendered.contains(r#""seq":6,"#) && rendered.contains(r#""seq":12,"#));
}

#[test]
fn a_half_written_record_is_emitted_once_when_its_end_arrives() {
    // A tailer reads the first lines, catches up (no flush), and reads on later.
    let mut parser = parser(Format::RadiusDetail);
    let mut events = Vec::new();
    let lines: Vec<&str> = START
        .lines()
        .chain(["", "Wed Nov 25 09:40:00 2026"])
        .collect();
    for (seq, line) in lines.iter().enumerate().take(3) {
        parser.parse_line(line.as_bytes(), seq as u64, now(), &mut events);
    }
    assert!(events.is_empty());
    for (seq, line) in lines.iter().enumerate().skip(3) {
        parser.parse_line(line.as_bytes(), seq as u64, now(), &mut events);
    }
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id.seq, 6);
    assert!(
        events[0]
            .original
            .starts_with("Wed Nov 25 09:33:12 2026\n\tAcct-Status-Type")
    );
}

#[test]
fn counters_time_and_cause() {
    check(
        Format::RadiusDetail,
        "Wed Nov 25 09:33:12 2026\n\
         \tAcct-Status-Type = Stop\n\
         \tUser-Name = \"bob\"\n\
         \tAcct-Input-Octets = 5\n\
         \tAcct-Input-Gigawords = 2\n\
         \tAcct-Output-Gigawords = 99999999999\n\
         \tAcct-Terminate-Cause = Lost-Carrier\n\
         \tEvent-Timestamp = \"Nov 25 2026 08:00:00 CET\"\n\
         \n\
         Wed Nov 25 09:33:13 2026\n\
         \tAcct-Status-Type = Interim-Update\n\
         \tEvent-Timestamp = 1795600000\n\
         \tFramed-IP-Address = 10.0.0.9\n\
         \tCalling-Station-Id = \"00-11-22-33-44-55\"\n",
        expect![[r#"
            {"body":{"cause":"lost_service","change":"stop","counters":{"bytes_in":8589934597,"bytes_out":18446744073709551615},"peer":{"identities":{"ike_id":"bob"}},"type":"session"},"dataset":"freeradius.detail","id":{"seq":8,"source":"gw1/radius-detail"},"observer":{"hostname":"gw1","product":"freeradius"},"timestamp":"2026-11-25T08:00:00Z"}
            {"body":{"change":"update","peer":{"identities":{}},"type":"session","virtual_ip":"10.0.0.9"},"dataset":"freeradius.detail","id":{"seq":14,"source":"gw1/radius-detail"},"observer":{"hostname":"gw1","product":"freeradius"},"timestamp":"2026-11-25T09:46:40Z"}
            # 14 lines: 2 events, 0 ignored, 0 rejected
        "#]],
    );
}

#[test]
fn malformed_lines_are_rejected_and_records_without_header_are_kept() {
    check(
        Format::RadiusDetail,
        "\tAcct-Status-Type = Start\n\
         \tno equals sign\n\
         not a header\n\
         Wed Feb 30 09:33:12 2026\n\
         \tAcct-Status-Type = Stop\n",
        expect![[r#"
            {"body":{"message":"not a detail attribute line: no ` = `","original_len":15,"reason":"malformed","type":"pipeline_error"},"dataset":"freeradius.detail","id":{"seq":1,"source":"gw1/radius-detail"},"observer":{"hostname":"gw1","product":null},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"message":"not a detail record line: neither a header nor an indented attribute","original_len":12,"reason":"malformed","type":"pipeline_error"},"dataset":"freeradius.detail","id":{"seq":2,"source":"gw1/radius-detail"},"observer":{"hostname":"gw1","product":null},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"change":"start","peer":{"identities":{}},"type":"session"},"dataset":"freeradius.detail","id":{"seq":3,"source":"gw1/radius-detail"},"observer":{"hostname":"gw1","product":"freeradius"},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"message":"timestamp names no existing instant","original_len":24,"reason":"bad_timestamp","type":"pipeline_error"},"dataset":"freeradius.detail","id":{"part":1,"seq":3,"source":"gw1/radius-detail"},"observer":{"hostname":"gw1","product":null},"timestamp":"2026-11-25T12:00:00Z"}
            {"body":{"cause":"other","change":"stop","peer":{"identities":{}},"type":"session"},"dataset":"freeradius.detail","id":{"seq":5,"source":"gw1/radius-detail"},"observer":{"hostname":"gw1","product":"freeradius"},"timestamp":"2026-11-25T12:00:00Z"}
            # 5 lines: 2 events, 0 ignored, 3 rejected (malformed: 2, bad_timestamp: 1)
        "#]],
    );
}

#[test]
fn the_raw_record_is_capped() {
    let mut parser = parser(Format::RadiusDetail);
    let mut events = Vec::new();
    parser.parse_line(b"Wed Nov 25 09:33:12 2026", 0, now(), &mut events);
    parser.parse_line(b"\tAcct-Status-Type = Start", 1, now(), &mut events);
    let line = format!("\tClass = \"{}\"", "x".repeat(60_000));
    for seq in 2..100 {
        parser.parse_line(line.as_bytes(), seq, now(), &mut events);
    }
    parser.flush(now(), &mut events);
    assert_eq!(events.len(), 1);
    assert!(events[0].original.len() <= crate::parse::DEFAULT_MAX_LINE_BYTES);
}
