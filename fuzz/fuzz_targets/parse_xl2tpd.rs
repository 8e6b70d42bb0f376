#![no_main]

use gateway::parse::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tunnelwatch_fuzz::parse_lines(Format::Xl2tpd, data);
});
