//! Shared driver of the parser fuzz targets: the input is split into lines as a tailer splits
//! a file, every line goes through [`gateway::parse::Parser::parse_line`], and the parser is
//! flushed at the end. Besides "no panic", it checks what the parser promises: every line is
//! counted once, and event ids only grow.

use gateway::parse::{Format, LogClock, ParseOptions, Parser};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Feeds `data`, split at `\n`, to a parser of `format`.
pub fn parse_lines(format: Format, data: &[u8]) {
    let now = Timestamp::from_second(1_795_600_000).unwrap_or(Timestamp::UNIX_EPOCH);
    let clock = LogClock::new(TimeZone::UTC, None, now);
    let mut options = ParseOptions::new("fuzz/source", clock);
    options.hostname = Some("fuzz".to_owned());
    // A small limit, so that the oversized path is reached too.
    options.max_line_bytes = 4096;
    let mut parser = Parser::new(format, options);
    let mut events = Vec::new();
    let mut n_lines = 0u64;
    for (seq, line) in data.split(|&byte| byte == b'\n').enumerate() {
        parser.parse_line(line, seq as u64, now, &mut events);
        n_lines += 1;
    }
    parser.flush(now, &mut events);
    assert_eq!(parser.stats().lines, n_lines);
    for pair in events.windows(2) {
        assert!(
            pair[0].id.position() < pair[1].id.position(),
            "event ids must grow: {} then {}",
            pair[0].id,
            pair[1].id
        );
    }
    for event in &events {
        assert!(event.original.len() <= 4096 * 4, "original too long");
    }
}
