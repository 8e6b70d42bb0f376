//! Tests every format shares: names, golden fixtures, and hostile input (NUL bytes, invalid
//! UTF-8, CR inside lines, ANSI escapes, truncated and oversized lines, garbage).
//! The charon parser keeps its own goldens in `charon/tests.rs`.

use std::path::{Path, PathBuf};

use expect_test::expect_file;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use model::{EventBody, RejectReason};
use proptest::prelude::*;

use super::*;

pub(crate) fn now() -> Timestamp {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

pub(crate) fn parser(format: Format) -> Parser {
    let clock = LogClock::new(TimeZone::UTC, Some(2026), now());
    let mut options = ParseOptions::new(format!("gw1/{format}"), clock);
    options.hostname = Some("gw1".to_owned());
    Parser::new(format, options)
}

/// Splits input into lines as a tailer does (a trailing `\r` stays for the parser to drop).
fn lines_of(text: &[u8]) -> Vec<&[u8]> {
    let mut lines: Vec<&[u8]> = text.split(|&byte| byte == b'\n').collect();
    if lines.last().is_some_and(|line| line.is_empty()) {
        lines.pop();
    }
    lines
}

/// Parses text (then flushes) and renders each event as one JSON line without
/// `event.original`, followed by the stats. The original is checked instead: it is the line
/// (or, for a multi-line record, the record's lines), truncated at most to the line limit.
pub(crate) fn render(format: Format, text: &[u8]) -> (String, ParseStats) {
    let mut parser = parser(format);
    let mut events = Vec::new();
    let lines = lines_of(text);
    for (seq, line) in lines.iter().enumerate() {
        parser.parse_line(line, seq as u64, now(), &mut events);
    }
    parser.flush(now(), &mut events);
    let decoded: Vec<String> = lines
        .iter()
        .map(|line| decode_lossless(line).trim_end_matches('\r').to_owned())
        .collect();
    let mut rendered = String::new();
    for event in &events {
        check_original(&decoded, event);
        let mut value = serde_json::to_value(event).unwrap();
        value.as_object_mut().unwrap().remove("original");
        rendered.push_str(&serde_json::to_string(&value).unwrap());
        rendered.push('\n');
    }
    rendered.push_str(&format!("# {}\n", parser.stats()));
    (rendered, parser.stats().clone())
}

#[track_caller]
fn check_original(lines: &[String], event: &Event) {
    let max = DEFAULT_MAX_LINE_BYTES;
    match lines.get(event.id.seq as usize) {
        Some(line) if line.starts_with(&event.original) => {
            assert!(
                event.original.len() == line.len() || event.original.len() == max,
                "original of {}",
                event.id
            );
        }
        // A `detail` record: its lines, ending before the line that ended it.
        _ => {
            let first = event.original.split('\n').next().unwrap_or("");
            assert!(
                lines[..(event.id.seq as usize).min(lines.len())]
                    .iter()
                    .any(|line| line.starts_with(first)),
                "original of {} is not from the input: {:?}",
                event.id,
                event.original
            );
            assert!(event.original.len() <= max, "original of {}", event.id);
        }
    }
}

#[track_caller]
pub(crate) fn check(format: Format, input: &str, expect: expect_test::Expect) {
    let (rendered, _) = render(format, input.as_bytes());
    expect.assert_eq(&rendered);
}

fn testdata(format: Format) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(format.as_str())
}

/// The fixture files of a format, sorted.
fn fixtures(format: Format) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(testdata(format))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().and_then(|ext| ext.to_str()) == Some("log"))
        .collect();
    paths.sort();
    paths
}

/// The formats with fixtures here (charon's live in `charon/tests.rs`).
const FIXTURE_FORMATS: [Format; 5] = [
    Format::Pluto,
    Format::Xl2tpd,
    Format::Pppd,
    Format::RadiusDetail,
    Format::Syslog,
];

/// Every fixture in `testdata/<format>/` has its golden `.expected` beside it. Regenerate with
/// `UPDATE_EXPECT=1 cargo test -p gateway --lib parse`.
#[test]
fn golden_fixtures() {
    for format in FIXTURE_FORMATS {
        let paths = fixtures(format);
        assert!(paths.len() >= 2, "fixtures of {format}");
        for path in paths {
            let (rendered, stats) = render(format, &std::fs::read(&path).unwrap());
            assert_eq!(
                stats.n_rejected(),
                0,
                "{}: fixture lines must not be rejected\n{rendered}",
                path.display()
            );
            assert!(stats.events > 0, "{}: no events", path.display());
            expect_file![path.with_extension("expected")].assert_eq(&rendered);
        }
    }
}

#[test]
fn format_names_round_trip() {
    for format in Format::ALL {
        assert_eq!(format.as_str().parse::<Format>(), Ok(format));
        assert_eq!(format.to_string(), format.as_str());
        let json = serde_json::to_string(&format).unwrap();
        assert_eq!(json, format!("\"{}\"", format.as_str()));
    }
    let error = "pluto2".parse::<Format>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown log format `pluto2` (known: charon, pluto, xl2tpd, pppd, radius-detail, syslog, nginx, nginx-json, envoy, json)"
    );
    let datasets: Vec<&str> = Format::ALL.iter().map(|format| format.dataset()).collect();
    assert_eq!(
        datasets,
        [
            "strongswan.charon",
            "libreswan.pluto",
            "xl2tpd.log",
            "ppp.pppd",
            "freeradius.detail",
            "syslog",
            "nginx.access",
            "nginx.access",
            "envoy.access",
            "json.access"
        ]
    );
}

/// The envelope path every daemon's format shares (`message::parse_file_line`): a line of
/// another program is ignored, whatever its timestamp; one of the daemon's own with a date
/// that does not exist is rejected and kept; the host is the envelope's, else the configured
/// one.
#[test]
fn daemon_files_share_one_envelope_path() {
    for (format, own) in [
        (
            Format::Charon,
            "charon[7]: 09[IKE] <rw|1> received DELETE for IKE_SA rw[1]",
        ),
        (
            Format::Pluto,
            "pluto[7]: \"rw\"[1] 192.0.2.11 #1: deleting state",
        ),
        (
            Format::Xl2tpd,
            "xl2tpd[7]: Connection established to 192.0.2.11, 1701.  Local: 1, Remote: 2 (ref=0/0).  LNS session is 'default'",
        ),
        (Format::Pppd, "pppd[7]: Connection terminated."),
    ] {
        let input = format!(
            "Nov 25 08:25:08 gw sshd[99]: Accepted publickey for root\n\
             Nov 31 08:25:08 gw sshd[99]: Accepted publickey for root\n\
             Nov 31 08:25:08 gw {own}\n\
             Nov 25 08:25:08 gw {own}\n"
        );
        let mut parser = parser(format);
        let mut events = Vec::new();
        for (seq, line) in lines_of(input.as_bytes()).into_iter().enumerate() {
            parser.parse_line(line, seq as u64, now(), &mut events);
        }
        let stats = parser.stats();
        assert_eq!(
            (stats.lines, stats.ignored, stats.n_rejected()),
            (4, 2, 1),
            "{format}: {stats}"
        );
        assert_eq!(
            stats.rejected.get(&RejectReason::BadTimestamp),
            Some(&1),
            "{format}"
        );
        let rejected = &events[0];
        assert_eq!(
            (rejected.id.seq, rejected.observer.hostname.as_deref()),
            (2, Some("gw1"))
        );
        for event in &events[1..] {
            assert_eq!(event.id.seq, 3, "{format}");
            assert_eq!(event.observer.hostname.as_deref(), Some("gw"), "{format}");
            assert_eq!(
                event.timestamp,
                "2026-11-25T08:25:08Z".parse().unwrap(),
                "{format}"
            );
        }
    }
}

#[test]
fn invalid_utf8_is_kept_visible() {
    assert_eq!(decode_lossless(b"ok \xff\xfe end"), "ok \\xff\\xfe end");
    assert_eq!(decode_lossless("é".as_bytes()), "é");
}

#[test]
fn truncation_respects_char_boundaries() {
    let text = "aé".as_bytes(); // a, 0xC3, 0xA9
    assert_eq!(truncate_at_char(text, 2), b"a");
    assert_eq!(truncate_at_char(text, 3), text);
    assert_eq!(truncate_at_char(text, 10), text);
}

/// One real line per format, to damage in the hostile-input tests: split inside its user name.
fn sample_line(format: Format) -> (&'static str, &'static str) {
    match format {
        Format::Charon => (
            "Nov 25 08:25:08 09[IKE] <rw|1> authentication of 'al",
            "ice' with pre-shared key successful",
        ),
        Format::Pluto => (
            "Nov 25 09:29:41 vpn pluto[2146]: \"l2tp-psk\"[7] 198.51.100.23 #27: XAUTH: User al",
            "ice: Authentication Successful",
        ),
        Format::Xl2tpd => (
            "Nov 25 16:58:21 gw xl2tpd[2643]: Connection established to 198.51.100.23, 1701.  Local: 42132, Remote: 7 (ref=0/0).  LNS session is 'def",
            "ault'",
        ),
        Format::Pppd => (
            "Nov 25 16:58:24 gw pppd[3801]: MSCHAP-v2 peer authentication succeeded for al",
            "ice",
        ),
        Format::RadiusDetail => ("\tUser-Name = \"al", "ice\""),
        Format::Syslog => (
            "<86>1 2026-11-25T16:58:24Z gw pppd 3801 - [x@1 a=\"b\"] MSCHAP-v2 peer authentication succeeded for al",
            "ice",
        ),
        Format::Nginx => (
            "10.99.0.7 - - [25/Nov/2026:16:58:24 +0000] \"GET /api/v1/us",
            "ers HTTP/1.1\" 200 12 \"-\" \"curl/7.88.1\"",
        ),
        Format::NginxJson => (
            "{\"time_iso8601\":\"2026-11-25T16:58:24+00:00\",\"remote_addr\":\"10.99.0.7\",\"request_method\":\"GET\",\"request_uri\":\"/api/v1/us",
            "ers\",\"status\":\"200\",\"body_bytes_sent\":\"12\"}",
        ),
        Format::Envoy => (
            "{\"start_time\":\"2026-11-25T16:58:24.310Z\",\"method\":\"GET\",\"path\":\"/api/v1/us",
            "ers\",\"response_code\":200,\"downstream_remote_address\":\"10.99.0.7:51000\"}",
        ),
        Format::Json => (
            "{\"@timestamp\":\"2026-11-25T16:58:24Z\",\"source\":{\"ip\":\"10.99.0.7\"},\"http.request.method\":\"GET\",\"url.path\":\"/api/v1/us",
            "ers\",\"http.response.status_code\":200}",
        ),
    }
}

/// Parses lines with a fresh parser of `format`, flushes, and checks the accounting.
fn parse_all(format: Format, lines: &[Vec<u8>]) -> (Vec<Event>, ParseStats) {
    let mut parser = parser(format);
    let mut events = Vec::new();
    for (seq, line) in lines.iter().enumerate() {
        parser.parse_line(line, seq as u64, now(), &mut events);
    }
    parser.flush(now(), &mut events);
    let stats = parser.stats().clone();
    assert_eq!(stats.lines, lines.len() as u64, "{format}");
    let mut seqs: Vec<u64> = events.iter().map(|event| event.id.seq).collect();
    seqs.dedup();
    assert!(
        stats.ignored + seqs.len() as u64 <= stats.lines + 1,
        "{format}: a line counted twice: {stats}"
    );
    assert!(
        events
            .windows(2)
            .all(|pair| pair[0].id.position() < pair[1].id.position()),
        "{format}: event ids repeat or go backwards"
    );
    (events, stats)
}

#[test]
fn hostile_bytes_never_panic_and_are_kept() {
    for format in Format::ALL {
        let (head, tail) = sample_line(format);
        let sample = format!("{head}{tail}");
        let mut lines: Vec<Vec<u8>> = vec![
            format!("{head}\0{tail}").into_bytes(),
            [head.as_bytes(), b"\xff\xfe\xc3", tail.as_bytes()].concat(),
            format!("{head}\r{tail}").into_bytes(),
            format!("{sample}\r").into_bytes(),
            format!("{head}\u{1b}[31m\u{1b}]0;title\u{7}{tail}").into_bytes(),
            b"\x1b[2J\x1b[H garbage".to_vec(),
            vec![0u8; 64],
            vec![0xffu8; 64],
            b"\t= = =".to_vec(),
            b"<999>1 - - - - - -".to_vec(),
            b"<13>1 2026-02-30T00:00:00Z h a p m - x".to_vec(),
            Vec::new(),
            b"   ".to_vec(),
        ];
        lines.push(sample.as_bytes().to_vec());
        let (events, stats) = parse_all(format, &lines);
        // The ANSI sequences are kept in the stored original, never interpreted.
        assert!(
            events
                .iter()
                .any(|event| event.original.contains("\u{1b}[31m\u{1b}]0;title\u{7}"))
                || format == Format::RadiusDetail,
            "{format}: ANSI line not kept: {events:?}"
        );
        assert!(stats.invalid_utf8 >= 2, "{format}: {stats}");
    }
}

#[test]
fn ansi_escapes_survive_in_events_of_every_format() {
    let cases = [
        (
            Format::Pluto,
            "Nov 25 09:29:41 vpn pluto[2146]: \"l2tp-psk\"[7] 198.51.100.23 #27: XAUTH: User \u{1b}[31mroot\u{1b}[0m: Authentication Successful",
        ),
        (
            Format::Pppd,
            "Nov 25 16:58:24 gw pppd[3801]: PAP peer authentication succeeded for \u{1b}[31mroot\u{1b}[0m",
        ),
        (
            Format::Syslog,
            "Nov 25 16:58:24 gw pppd[3801]: PAP peer authentication succeeded for \u{1b}[31mroot\u{1b}[0m",
        ),
        (
            Format::RadiusDetail,
            "Wed Nov 25 09:33:12 2026\n\tAcct-Status-Type = Start\n\tUser-Name = \"\u{1b}[31mroot\u{1b}[0m\"",
        ),
    ];
    for (format, line) in cases {
        let lines: Vec<Vec<u8>> = line
            .split('\n')
            .map(|line| line.as_bytes().to_vec())
            .collect();
        let (events, _) = parse_all(format, &lines);
        let peer = match &events[0].body {
            EventBody::Auth(auth) => &auth.peer,
            EventBody::Session(session) => &session.peer,
            _ => panic!("{format}: {events:?}"),
        };
        assert_eq!(peer.identities.user_name(), Some("\u{1b}[31mroot\u{1b}[0m"));
        assert_eq!(events[0].original, line);
    }
}

#[test]
fn every_prefix_of_every_fixture_line_parses() {
    for format in FIXTURE_FORMATS {
        let mut parser = parser(format);
        let mut events = Vec::new();
        let mut seq = 0;
        for path in fixtures(format) {
            let text = std::fs::read(&path).unwrap();
            for line in lines_of(&text) {
                for end in 0..=line.len() {
                    parser.parse_line(&line[..end], seq, now(), &mut events);
                    seq += 1;
                }
                events.clear();
            }
        }
        parser.flush(now(), &mut events);
        assert_eq!(parser.stats().lines, seq, "{format}");
    }
}

#[test]
fn mebibyte_lines_are_rejected_as_oversized() {
    for format in Format::ALL {
        let (head, tail) = sample_line(format);
        let mut line = format!("{head}{tail}").into_bytes();
        line.resize(1024 * 1024, b'A');
        let (events, stats) = parse_all(format, &[line]);
        assert_eq!(stats.rejected.get(&RejectReason::Oversized), Some(&1));
        let [event] = events.as_slice() else {
            panic!("{format}: {events:?}");
        };
        assert_eq!(event.original.len(), DEFAULT_MAX_LINE_BYTES);
        let EventBody::PipelineError(error) = &event.body else {
            panic!("{format}: {event:?}");
        };
        assert_eq!(error.original_len, 1024 * 1024);
        assert_eq!(event.dataset, format.dataset());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Parsing never panics, every line is accounted for once, and ids never go backwards.
    #[test]
    fn every_line_is_accounted_for_in_every_format(
        format_idx in 0..Format::ALL.len(),
        lines in proptest::collection::vec(arbitrary_line(), 1..40),
    ) {
        parse_all(Format::ALL[format_idx], &lines);
    }
}

/// Lines built from real fragments of every format, shuffled and damaged.
fn arbitrary_line() -> impl Strategy<Value = Vec<u8>> {
    let fragments = prop_oneof![
        Just("Nov 25 09:33:12 ".to_owned()),
        Just("2026-11-25T09:33:12.5+01:00 gw ".to_owned()),
        Just("<86>1 2026-11-25T09:33:12Z gw ".to_owned()),
        Just("<13>".to_owned()),
        Just("pluto[1]: ".to_owned()),
        Just("xl2tpd[2]: ".to_owned()),
        Just("pppd[3]: ".to_owned()),
        Just("radiusd[4]: ".to_owned()),
        Just("pppd 4 - [a b=\"\\]\"] ".to_owned()),
        Just("\"l2tp-psk\"[7] 198.51.100.23 #27: ".to_owned()),
        Just("#28: ".to_owned()),
        Just("STATE_MAIN_R3: sent MR3, ISAKMP SA established {auth=PRESHARED_KEY}".to_owned()),
        Just("STATE_QUICK_R2: IPsec SA established tunnel mode {ESP=>0x1 <0x2 NATD=1.2.3.4:4500 username=a}".to_owned()),
        Just("established Child SA using #27; IPsec tunnel [a] -> [b] {ESP=>0x1 <0x2}".to_owned()),
        Just("deleting other state #28 (STATE_QUICK_R2)".to_owned()),
        Just("deleting state (STATE_MAIN_R3)".to_owned()),
        Just("ESP traffic information: in=1KB out=99999999999999999999GB".to_owned()),
        Just("XAUTH: User a: Authentication Failed".to_owned()),
        Just("DPD: No response from peer - declaring peer dead".to_owned()),
        Just("| new lease 10.0.0.1 from addresspool x thatid 'a'".to_owned()),
        Just("Connection established to 192.0.2.11, 1701.  Local: 5, Remote: 6 (ref=0/0).  LNS session is 'x'".to_owned()),
        Just("Call established with 192.0.2.11, Local: 7, Remote: 8, Serial: 1".to_owned()),
        Just("child_handler : pppd exited for call 8 with code 4".to_owned()),
        Just("call_close: Call 7 to 192.0.2.11 disconnected".to_owned()),
        Just("control_finish: Connection closed to 192.0.2.11, port 1701 (Bye), Local: 5, Remote: 6".to_owned()),
        Just("result_code_avp: peer closing for reason 1 (x), error = 0 ()".to_owned()),
        Just("pppd 2.4.9 started by root, uid 0".to_owned()),
        Just("CHAP peer authentication succeeded for a".to_owned()),
        Just("remote IP address 10.0.0.2".to_owned()),
        Just("Connect time 99999999999999999999.9 minutes.".to_owned()),
        Just("Sent 1 bytes, received 2 bytes.".to_owned()),
        Just("Connection terminated.".to_owned()),
        Just("Exit.".to_owned()),
        Just("Wed Nov 25 09:33:12 2026".to_owned()),
        Just("\tAcct-Status-Type = Stop".to_owned()),
        Just("\tAcct-Input-Gigawords = 4294967296".to_owned()),
        Just("\tEvent-Timestamp = \"Feb 30 2026 09:33:12 UTC\"".to_owned()),
        Just("(0) Login OK: [a/b] (from client x port 0 cli 1.2.3.4[5])".to_owned()),
        Just("09[IKE] <rw|1> ".to_owned()),
        Just("10.99.0.7 - - [25/Nov/2026:09:33:12 +0000] ".to_owned()),
        Just("\"GET /api/v1/x?y=1 HTTP/1.1\" 200 12 \"-\" \"curl\\x22\" 0.005 \"5f2d8e4a0c1b4f7e9a553b8c2d1e6f70\"".to_owned()),
        Just("\"-\" 999 -1".to_owned()),
        Just("{\"remote_addr\":\"::1\",\"request_method\":\"GET\",\"request_uri\":\"/a\",".to_owned()),
        Just("\"status\":\"200\",\"request_time\":\"0.001\"}".to_owned()),
        Just("{\"start_time\":\"2026-11-25T09:33:12Z\",\"method\":\"GET\",\"path\":\"/\",\"response_code\":0}".to_owned()),
        Just("{\"http\":{\"request\":{\"method\":\"GET\"}},\"url.path\":\"/\",\"http.response.status_code\":200,".to_owned()),
        Just("\"a\":[[[{\"a\":1,\"a\":2}]]]}".to_owned()),
        "[ -~]{0,20}",
    ];
    (
        proptest::collection::vec(fragments, 0..5),
        proptest::collection::vec(any::<u8>(), 0..4),
    )
        .prop_map(|(parts, noise)| {
            let mut line = parts.concat().into_bytes();
            if !noise.is_empty() {
                let at = (noise[0] as usize) % (line.len() + 1);
                line.splice(at..at, noise.iter().copied().filter(|byte| *byte != b'\n'));
            }
            line
        })
}
