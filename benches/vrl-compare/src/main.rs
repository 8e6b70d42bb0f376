//! Side-by-side parsing throughput, one core: tunnelwatch's `gateway::parse` against Vector's
//! VRL (`parse_syslog` + `parse_regex`, as a Vector `remap` transform would parse the same
//! lines), on the project's real samples:
//!
//! - `charon`: every strongSwan `charon.filelog` capture in `gateway/testdata/charon`;
//! - `syslog`: the syslog captures (rsyslog RFC 3164/5424 files, network envelopes, charon in
//!   syslog format, xl2tpd, pppd, pluto) in `gateway/testdata/{syslog,charon}`;
//! - `radius-detail`: FreeRADIUS accounting `detail` files in `gateway/testdata/radius-detail`.
//!
//! Both sides get the same lines, one event per line, single-threaded. tunnelwatch produces
//! typed events (with per-IKE_SA state, identities, failure classes); the VRL programs only
//! extract fields with regexes, which is less work, so the ratio is conservative.
//!
//! Run it with `cargo run --release --manifest-path benches/vrl-compare/Cargo.toml`
//! (`CORPUS=charon` runs one corpus, `MIN_TIME_MS=N` sets each timed run's length; each
//! side's rate is the best of five runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gateway::parse::{Format, LogClock, ParseOptions, Parser};
use vrl::compiler::runtime::Runtime;
use vrl::compiler::state::RuntimeState;
use vrl::compiler::{Program, TargetValue, TimeZone};
use vrl::value::{Secrets, Value};

/// The charon message classifier shared by the `charon` and `syslog` programs: the events
/// an analyst needs, one regex each, tried in turn.
const CHARON_MESSAGE: &str = r#"
msg = string!(.charon.msg)
.event = parse_regex(msg, r'^IKE_SA (?P<conn>[^\[]+)\[(?P<ike_id>\d+)\] established between (?P<local_ip>[^\[]+)\[(?P<local_id>[^\]]*)\]\.\.\.(?P<remote_ip>[^\[]+)\[(?P<remote_id>[^\]]*)\]') ??
    parse_regex(msg, r'^authentication of \'(?P<identity>[^\']*)\' with (?P<method>.+) successful$') ??
    parse_regex(msg, r'^tried (?P<n_keys>\d+) shared keys? for \'(?P<local_id>[^\']*)\' - \'(?P<remote_id>[^\']*)\', but MAC mismatched$') ??
    parse_regex(msg, r'^EAP method (?P<eap_method>\S+) failed for peer (?P<peer>\S+)$') ??
    parse_regex(msg, r'^RADIUS authentication of \'(?P<user>[^\']*)\' failed$') ??
    parse_regex(msg, r'^received EAP identity \'(?P<eap_identity>[^\']*)\'$') ??
    parse_regex(msg, r'^assigning virtual IP (?P<vip>\S+) to peer \'(?P<peer>[^\']*)\'$') ??
    parse_regex(msg, r'^lease (?P<vip>\S+) by \'(?P<peer>[^\']*)\' went offline$') ??
    parse_regex(msg, r'^CHILD_SA (?P<child>[^\{]+)\{(?P<child_id>\d+)\} established with SPIs (?P<spi_in>\w+)_i (?P<spi_out>\w+)_o and TS (?P<ts_local>.+) === (?P<ts_remote>.+)$') ??
    parse_regex(msg, r'^(?P<action>received DELETE for|deleting) IKE_SA (?P<conn>[^\[]+)\[(?P<ike_id>\d+)\]') ??
    parse_regex(msg, r'^IKE_SA (?P<conn>[^\[]+)\[(?P<ike_id>\d+)\] (?P<action>rekeyed|state change).*$') ??
    parse_regex(msg, r'^giving up after (?P<n_retransmits>\d+) retransmits$') ??
    parse_regex(msg, r'^(?P<remote_ip>\S+) is initiating an IKE_SA$') ??
    parse_regex(msg, r'^received (?P<notify>\w+) notify error$') ??
    {}
"#;

/// charon's own log file: `Nov 25 09:33:12 08[IKE] <rw-psk|1> message`.
fn charon_program() -> String {
    format!(
        r#"
.charon = parse_regex!(.message, r'^(?P<ts>\w{{3}} [ \d]\d \d\d:\d\d:\d\d) (?P<thread>\d+)\[(?P<subsystem>\w+)\] (?:<(?:(?P<ike_name>[^|>]*)\|)?(?P<ike_id>\d+)> )?(?P<msg>.*)$')
.timestamp = parse_timestamp(.charon.ts, "%b %e %T") ?? now()
.thread = to_int!(.charon.thread)
{CHARON_MESSAGE}
"#
    )
}

/// A syslog stream: the envelope, then the daemon's message by program name.
fn syslog_program() -> String {
    format!(
        r#"
. = parse_syslog!(.message)
app = string(.appname) ?? ""
if app == "charon" {{
    .charon = parse_regex!(.message, r'^(?P<thread>\d+)\[(?P<subsystem>\w+)\] (?:<(?:(?P<ike_name>[^|>]*)\|)?(?P<ike_id>\d+)> )?(?P<msg>.*)$')
    {CHARON_MESSAGE}
}} else if app == "pppd" {{
    m = string!(.message)
    .event = parse_regex(m, r'^(?P<method>CHAP|PAP) authentication (?P<outcome>succeeded|failed)(?: for (?P<user>.*))?$') ??
        parse_regex(m, r'^(?P<side>local|remote)\s+IP address (?P<ip>\S+)$') ??
        parse_regex(m, r'^Connect time (?P<minutes>[\d.]+) minutes\.$') ??
        parse_regex(m, r'^Sent (?P<sent>\d+) bytes, received (?P<received>\d+) bytes\.$') ??
        parse_regex(m, r'^peer from calling number (?P<calling>\S+) authorized$') ??
        parse_regex(m, r'^Connect: (?P<ifname>\S+) <--> (?P<tty>\S+)$') ??
        {{}}
}} else if app == "xl2tpd" {{
    m = string!(.message)
    .event = parse_regex(m, r'^Connection established to (?P<peer>[^,]+), (?P<port>\d+)\.\s+Local: (?P<local>\d+), Remote: (?P<remote>\d+)') ??
        parse_regex(m, r'^Call established with (?P<peer>[^,]+), Local: (?P<local>\d+), Remote: (?P<remote>\d+), Serial: (?P<serial>\d+)') ??
        parse_regex(m, r'^Connection (?P<tunnel>\d+) closed to (?P<peer>[^,]+), port (?P<port>\d+) \(Result Code: (?P<code>\d+)\)') ??
        parse_regex(m, r'^call_close: Call (?P<call>\d+) to (?P<peer>\S+) disconnected') ??
        {{}}
}} else if app == "pluto" {{
    m = string!(.message)
    .event = parse_regex(m, r'^"(?P<conn>[^"]+)"(?:\[(?P<inst>\d+)\])? (?P<peer>\S+) #(?P<sa>\d+): (?P<text>.*)$') ?? {{}}
}}
"#
    )
}

/// FreeRADIUS `detail`: a timestamp line, then `\tAttribute = value` lines.
const RADIUS_DETAIL_PROGRAM: &str = r#"
.attribute = parse_regex(.message, r'^\t(?P<name>[A-Za-z0-9-]+) = "?(?P<value>.*?)"?$') ??
    parse_regex(.message, r'^(?P<ts>\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})$') ??
    {}
if exists(.attribute.ts) {
    .timestamp = parse_timestamp(.attribute.ts, "%a %b %e %T %Y") ?? null
}
"#;

struct Corpus {
    name: &'static str,
    format: Format,
    program: String,
    lines: Vec<Vec<u8>>,
}

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gateway/testdata")
}

/// Lines of every `.log` file in `dir` whose name passes `keep`.
fn lines_of(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "log")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(&keep)
        })
        .collect();
    paths.sort();
    let mut lines = Vec::new();
    for path in paths {
        let text =
            std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        lines.extend(
            text.split(|&byte| byte == b'\n')
                .filter(|line| !line.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    lines
}

fn corpora() -> Vec<Corpus> {
    let testdata = testdata();
    let mut syslog = lines_of(&testdata.join("syslog"), |_| true);
    syslog.extend(lines_of(&testdata.join("charon"), |name| {
        name.starts_with("syslog-format")
    }));
    vec![
        Corpus {
            name: "charon",
            format: Format::Charon,
            program: charon_program(),
            lines: lines_of(&testdata.join("charon"), |name| {
                !name.starts_with("syslog-format")
            }),
        },
        Corpus {
            name: "syslog",
            format: Format::Syslog,
            program: syslog_program(),
            lines: syslog,
        },
        Corpus {
            name: "radius-detail",
            format: Format::RadiusDetail,
            program: RADIUS_DETAIL_PROGRAM.to_owned(),
            lines: lines_of(&testdata.join("radius-detail"), |_| true),
        },
    ]
}

/// One pass of tunnelwatch's parser over `lines`; returns the number of events.
fn tunnelwatch_pass(format: Format, lines: &[Vec<u8>], now: jiff::Timestamp) -> usize {
    let options = ParseOptions::new(
        "bench/compare",
        LogClock::new(jiff::tz::TimeZone::UTC, Some(2026), now),
    );
    let mut parser = Parser::new(format, options);
    let mut events = Vec::with_capacity(lines.len());
    for (seq, line) in lines.iter().enumerate() {
        parser.parse_line(line, seq as u64, now, &mut events);
    }
    parser.flush(now, &mut events);
    events.len()
}

/// One pass of the VRL program over `lines`, one Vector event per line; returns the number
/// of lines the program parsed without an error.
fn vrl_pass(program: &Program, lines: &[Vec<u8>], runtime: &mut Runtime, tz: &TimeZone) -> usize {
    let mut n_ok = 0;
    for line in lines {
        let mut event = BTreeMap::new();
        event.insert(
            "message".into(),
            Value::Bytes(bytes::Bytes::copy_from_slice(line)),
        );
        let mut target = TargetValue {
            value: Value::Object(event),
            metadata: Value::Object(BTreeMap::new()),
            secrets: Secrets::default(),
        };
        if runtime.resolve(&mut target, program, tz).is_ok() {
            n_ok += 1;
        }
        runtime.clear();
        std::hint::black_box(&target.value);
    }
    n_ok
}

/// Lines per second: the best of `rounds` timed runs of `pass` over `n_lines` lines, each
/// repeated until it took at least `min_time`.
fn measure(n_lines: usize, rounds: usize, min_time: Duration, mut pass: impl FnMut()) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..rounds {
        let started = Instant::now();
        let mut n_passes = 0u64;
        while started.elapsed() < min_time {
            pass();
            n_passes += 1;
        }
        let rate = (n_lines as f64 * n_passes as f64) / started.elapsed().as_secs_f64();
        best = best.max(rate);
    }
    best
}

fn main() {
    let functions = vrl::stdlib::all();
    let tz = TimeZone::default();
    let now = jiff::Timestamp::now();
    let min_time = Duration::from_millis(
        std::env::var("MIN_TIME_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(1000),
    );
    println!(
        "{:<14} {:>6} {:>7} {:>9} {:>16} {:>14} {:>7}  target",
        "corpus", "lines", "events", "vrl ok", "tunnelwatch l/s", "vrl l/s", "ratio"
    );
    let only = std::env::var("CORPUS").ok();
    let mut all_met = true;
    for corpus in corpora() {
        if only.as_deref().is_some_and(|only| only != corpus.name) {
            continue;
        }
        let compiled =
            vrl::compiler::compile(&corpus.program, &functions).unwrap_or_else(|errors| {
                panic!(
                    "the {} VRL program does not compile: {errors:?}",
                    corpus.name
                )
            });
        let program = compiled.program;
        let n_events = tunnelwatch_pass(corpus.format, &corpus.lines, now);
        let mut runtime = Runtime::new(RuntimeState::default());
        let n_vrl_ok = vrl_pass(&program, &corpus.lines, &mut runtime, &tz);
        let ours = measure(corpus.lines.len(), 5, min_time, || {
            std::hint::black_box(tunnelwatch_pass(corpus.format, &corpus.lines, now));
        });
        let theirs = measure(corpus.lines.len(), 5, min_time, || {
            std::hint::black_box(vrl_pass(&program, &corpus.lines, &mut runtime, &tz));
        });
        let ratio = ours / theirs;
        let mut targets = vec![format!(
            "≥10× vrl: {}",
            if ratio >= 10.0 { "met" } else { "MISSED" }
        )];
        all_met &= ratio >= 10.0;
        if corpus.name == "charon" {
            let met = ours >= 1_000_000.0;
            all_met &= met;
            targets.push(format!("≥1M l/s: {}", if met { "met" } else { "MISSED" }));
        }
        println!(
            "{:<14} {:>6} {:>7} {:>9} {:>16.0} {:>14.0} {:>6.1}×  {}",
            corpus.name,
            corpus.lines.len(),
            n_events,
            n_vrl_ok,
            ours,
            theirs,
            ratio,
            targets.join(", ")
        );
    }
    if !all_met {
        std::process::exit(1);
    }
}
