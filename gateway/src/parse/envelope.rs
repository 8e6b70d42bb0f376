//! The part of a log line before the message: timestamp, and for syslog lines the host,
//! program and pid (`Nov 25 08:25:08 gw charon[123]: …`).

use super::clock::{LocalStamp, read_stamp};

/// A line split into its envelope and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub stamp: Option<LocalStamp>,
    pub host: Option<&'a str>,
    pub program: Option<&'a str>,
    pub pid: Option<u32>,
    pub message: &'a str,
}

/// Splits a line. `is_message_start` tells whether the text after the timestamp already is
/// the message (a file log without host and program, such as charon's filelog), so that a
/// message is never mistaken for a host name.
pub(crate) fn split<'a>(line: &'a str, is_message_start: impl Fn(&str) -> bool) -> Envelope<'a> {
    let (stamp, rest) = match read_stamp(line.as_bytes()) {
        Some((stamp, len)) => (Some(stamp), line[len..].trim_start_matches(' ')),
        None => (None, line),
    };
    let mut envelope = Envelope {
        stamp,
        host: None,
        program: None,
        pid: None,
        message: rest,
    };
    if is_message_start(rest) {
        return envelope;
    }
    // `host program[pid]: message`, `host program: message`, or without the host.
    let (first, after_first) = split_word(rest);
    let (host, tag, message) = match tag_of(first) {
        Some(_) => (None, first, after_first),
        None => {
            let (second, after_second) = split_word(after_first);
            if tag_of(second).is_none() {
                return envelope;
            }
            (Some(first), second, after_second)
        }
    };
    if let Some((program, pid)) = tag_of(tag) {
        envelope.host = host.filter(|host| !host.is_empty() && *host != "-");
        envelope.program = Some(program);
        envelope.pid = pid;
        envelope.message = message;
    }
    envelope
}

fn split_word(text: &str) -> (&str, &str) {
    match text.find(' ') {
        Some(at) => (&text[..at], text[at + 1..].trim_start_matches(' ')),
        None => (text, ""),
    }
}

/// `charon[123]:` → (`charon`, Some(123)); `charon:` → (`charon`, None).
pub(crate) fn tag_of(word: &str) -> Option<(&str, Option<u32>)> {
    let tag = word.strip_suffix(':')?;
    if let Some(open) = tag.find('[') {
        let pid = tag[open + 1..].strip_suffix(']')?.parse().ok()?;
        let program = &tag[..open];
        return (!program.is_empty()).then_some((program, Some(pid)));
    }
    let valid = !tag.is_empty()
        && tag
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'/'));
    valid.then_some((tag, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never(_: &str) -> bool {
        false
    }

    #[track_caller]
    fn check(
        line: &str,
        host: Option<&str>,
        program: Option<&str>,
        pid: Option<u32>,
        message: &str,
    ) {
        let envelope = split(line, |rest| rest.starts_with("13["));
        assert_eq!(
            (
                envelope.host,
                envelope.program,
                envelope.pid,
                envelope.message
            ),
            (host, program, pid, message),
            "line: {line:?}"
        );
    }

    #[test]
    fn syslog_and_file_envelopes() {
        check(
            "Nov 25 08:25:08 gw charon[123]: 09[IKE] <rw-psk|3> hi",
            Some("gw"),
            Some("charon"),
            Some(123),
            "09[IKE] <rw-psk|3> hi",
        );
        check(
            "Nov 25 08:25:08 gw charon: 09[IKE] x",
            Some("gw"),
            Some("charon"),
            None,
            "09[IKE] x",
        );
        check(
            "Nov 25 08:25:08 charon[7]: 09[IKE] x",
            None,
            Some("charon"),
            Some(7),
            "09[IKE] x",
        );
        check(
            "Nov  5 08:25:48 13[IKE] <rw-psk|1> x",
            None,
            None,
            None,
            "13[IKE] <rw-psk|1> x",
        );
        check(
            "2026-11-25T08:25:08.123456+00:00 gw charon[1]: 09[NET] y",
            Some("gw"),
            Some("charon"),
            Some(1),
            "09[NET] y",
        );
        check("13[IKE] no time", None, None, None, "13[IKE] no time");
        check(
            "garbage without structure",
            None,
            None,
            None,
            "garbage without structure",
        );
        check(
            "Nov 25 08:25:08 gw charon[x]: y",
            None,
            None,
            None,
            "gw charon[x]: y",
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        for line in [
            "",
            " ",
            ":",
            "[]:",
            "a [",
            "Nov 25 08:25:08",
            "Nov 25 08:25:08 ",
            "\u{1b}[31m: x",
            "é[1]: x",
        ] {
            let _ = split(line, never);
        }
    }
}
