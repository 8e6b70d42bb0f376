#![no_main]

use gateway::parse::{Format, parse_syslog_envelope};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The whole input as one network message (what a syslog receiver hands the envelope parser)…
    if let Ok(message) = parse_syslog_envelope(data) {
        // The message is a part of the input.
        let start = data.as_ptr() as usize;
        let at = message.message.as_ptr() as usize;
        assert!(at >= start && at + message.message.len() <= start + data.len());
        assert!(message.facility.is_none_or(|facility| facility < 24));
        assert!(message.severity.is_none_or(|severity| severity < 8));
    }
    // …and as a syslog file.
    tunnelwatch_fuzz::parse_lines(Format::Syslog, data);
});
