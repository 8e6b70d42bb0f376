use super::*;

fn clock() -> LogClock {
    LogClock::new(
        jiff::tz::TimeZone::UTC,
        Some(2026),
        "2026-11-25T12:00:00Z".parse().unwrap(),
    )
}

/// Renders the split fields compactly: `fac sev time host app procid msgid sd | message`.
fn show(input: &[u8]) -> String {
    match parse_syslog_envelope(input) {
        Err(error) => format!("error: {error}"),
        Ok(message) => {
            let time = message
                .timestamp
                .map(|stamp| match stamp.resolve(&mut clock()) {
                    Some(time) => time.to_string(),
                    None => "invalid".to_owned(),
                });
            let field = |value: Option<&str>| value.unwrap_or("-").to_owned();
            format!(
                "{:?} {:?} {} {} {} {} {} {} | {}",
                message.facility,
                message.severity,
                time.unwrap_or_else(|| "-".to_owned()),
                field(message.hostname),
                field(message.app_name),
                field(message.procid),
                field(message.msgid),
                field(message.structured_data),
                String::from_utf8_lossy(message.message)
            )
        }
    }
}

#[track_caller]
fn check(input: &str, expect: expect_test::Expect) {
    expect.assert_eq(&show(input.as_bytes()));
}

#[test]
fn rfc5424_examples_from_the_rfc() {
    // RFC 5424 section 6.5, examples 1 to 4.
    check(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8",
        expect_test::expect![[
            r#"Some(4) Some(2) 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - | 'su root' failed for lonvick on /dev/pts/8"#
        ]],
    );
    check(
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts.",
        expect_test::expect![[
            r#"Some(20) Some(5) 2003-08-24T12:14:15.000003Z 192.0.2.1 myproc 8710 - - | %% It's time to make the do-nuts."#
        ]],
    );
    check(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"] \u{feff}An application event log entry...",
        expect_test::expect![[
            r#"Some(20) Some(5) 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] | An application event log entry..."#
        ]],
    );
    check(
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"1011\"][examplePriority@32473 class=\"high\"]",
        expect_test::expect![[
            r#"Some(20) Some(5) 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"] | "#
        ]],
    );
}

#[test]
fn rfc5424_escapes_and_nil_values() {
    check(
        r#"<85>1 2026-11-25T11:07:00.334558+00:00 vm pluto 2146 IKE [timeQuality tzKnown="1"][tw@32473 note="a \"quoted\" [bracket\] and \\ backslash"] msg ] here"#,
        expect_test::expect![[
            r#"Some(10) Some(5) 2026-11-25T11:07:00.334558Z vm pluto 2146 IKE [timeQuality tzKnown="1"][tw@32473 note="a \"quoted\" [bracket\] and \\ backslash"] | msg ] here"#
        ]],
    );
    check(
        "<30>1 - - - - - -",
        expect_test::expect!["Some(3) Some(6) - - - - - - | "],
    );
    check(
        "<30>1 - - - - - - ",
        expect_test::expect!["Some(3) Some(6) - - - - - - | "],
    );
    // rsyslog writes the 3164 message's leading space after the NILVALUE structured data.
    check(
        "<30>1 2026-11-25T11:07:00.324618+00:00 vm charon 1042 - -  09[IKE] x",
        expect_test::expect![
            "Some(3) Some(6) 2026-11-25T11:07:00.324618Z vm charon 1042 - - |  09[IKE] x"
        ],
    );
}

#[test]
fn rfc5424_errors() {
    for (input, expect) in [
        (
            "<30>1 2026-11-25T11:07:00Z host app",
            "syslog header field app-name is missing, too long or not printable ascii",
        ),
        ("<30>1 2026-11-25 h a p m - x", "invalid syslog timestamp"),
        (
            "<30>1 - h a p m [unterminated x",
            "invalid syslog structured data",
        ),
        (
            "<30>1 - h a p m [a b=\"\\\"] x",
            "invalid syslog structured data",
        ),
        ("<30>1 - h a p m x", "invalid syslog structured data"),
        ("<30>1 - h a p m -x", "invalid syslog structured data"),
        (
            "<30>1 - h\u{e9} a p m - x",
            "syslog header field hostname is missing, too long or not printable ascii",
        ),
        ("<192>1 - - - - - -", "invalid syslog priority"),
        ("<1234>x", "invalid syslog priority"),
        ("<>x", "invalid syslog priority"),
        ("<13", "invalid syslog priority"),
        ("", "empty syslog message"),
        ("\n", "empty syslog message"),
    ] {
        assert_eq!(
            show(input.as_bytes()),
            format!("error: {expect}"),
            "{input:?}"
        );
    }
    // A month 13 splits; it only fails to resolve (and the line is then rejected).
    assert_eq!(
        show(b"<30>1 2026-13-25T11:07:00Z h a p m - x"),
        "Some(3) Some(6) invalid h a p m - | x"
    );
    let long_app = format!("<30>1 - h {} p m - x", "a".repeat(49));
    assert!(show(long_app.as_bytes()).starts_with("error: syslog header field app-name"));
}

#[test]
fn rfc3164_network_and_file_shapes() {
    check(
        "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
        expect_test::expect![
            "Some(4) Some(2) 2026-10-11T22:14:15Z mymachine su - - - | 'su root' failed for lonvick on /dev/pts/8"
        ],
    );
    check(
        "Nov 25 16:58:24 gw pppd[3801]: MSCHAP-v2 peer authentication succeeded for alice",
        expect_test::expect![
            "None None 2026-11-25T16:58:24Z gw pppd 3801 - - | MSCHAP-v2 peer authentication succeeded for alice"
        ],
    );
    check(
        "2026-11-25T11:07:00.328118+01:00 vm xl2tpd[755]: Call established",
        expect_test::expect![
            "None None 2026-11-25T10:07:00.328118Z vm xl2tpd 755 - - | Call established"
        ],
    );
    // Without host (as sent to /dev/log), without tag, without anything.
    check(
        "<13>Nov  5 08:00:00 pppd[7]: Exit.",
        expect_test::expect!["Some(1) Some(5) 2026-11-05T08:00:00Z - pppd 7 - - | Exit."],
    );
    check(
        "Nov 25 08:00:00 gw free text: no tag here",
        expect_test::expect!["None None 2026-11-25T08:00:00Z gw - - - - | free text: no tag here"],
    );
    check(
        "<13>just a message",
        expect_test::expect!["Some(1) Some(5) - - - - - - | just a message"],
    );
    check(
        "gw pluto[2146]: no timestamp",
        expect_test::expect!["None None - gw pluto 2146 - - | no timestamp"],
    );
    // rsyslog writes `tag[pid]` without colon for messages it received as RFC 5424.
    check(
        "Nov 25 11:07:00 vm pluto[2146] \"l2tp-psk\"[7] #29: x",
        expect_test::expect![[
            r#"None None 2026-11-25T11:07:00Z vm pluto 2146 - - | "l2tp-psk"[7] #29: x"#
        ]],
    );
    // A date that does not exist still splits; it only fails to resolve.
    check(
        "<13>Feb 30 08:00:00 gw a: b",
        expect_test::expect!["Some(1) Some(5) invalid gw a - - - | b"],
    );
}

#[test]
fn bytes_that_are_not_utf8_stay_in_the_message() {
    let message = parse_syslog_envelope(b"<13>Nov 25 08:00:00 gw a[1]: caf\xe9\r\n").unwrap();
    assert_eq!(message.message, b"caf\xe9");
    assert_eq!(message.app_name, Some("a"));
    let message = parse_syslog_envelope(b"<13>1 - h\xff a p m - x");
    assert_eq!(message, Err(SyslogError::BadHeader("hostname")));
}

#[test]
fn reject_reasons() {
    assert_eq!(
        SyslogError::BadTimestamp.reject_reason(),
        RejectReason::BadTimestamp
    );
    assert_eq!(SyslogError::Empty.reject_reason(), RejectReason::Malformed);
}
