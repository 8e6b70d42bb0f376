//! Live capture throughput on a veth pair, through the decoder and the flow table as the
//! gateway runs them, for both ways of reading frames: the TPACKET_V3 ring (the default) and
//! pnet (one `poll` + `recvfrom` per frame).
//!
//! `cargo bench -p gateway --bench capture` (root: it creates two network namespaces joined
//! by a veth pair, re-runs itself in each, and deletes them). The captured pair is
//! `tw-bench-a` → `tw-bench-b`; this process captures on `tw-bench-b`. The traffic is
//! 60-byte Ethernet/IPv4/UDP frames from 1,000 source ports, made in the other namespace:
//! two sender processes (one per core) write them, prebuilt, with `sendmmsg(2)` on an
//! AF_PACKET socket (1,000 frames per system call) into a second veth pair, `tw-gen-a` →
//! `tw-gen-b`, whose ingress filter (tc `mirred`) sends each frame on into `tw-bench-a`
//! [`COPIES`] times, the way pktgen's `clone_skb` repeats a frame (this kernel has no pktgen).
//! Two cores could not offer a million frames per second otherwise: on this VM a frame costs
//! the kernel about two microseconds from `sendmmsg` through the veth to the capture tap
//! (about 500,000 frames per second per core with nobody capturing), a repeated copy a
//! fraction of that.
//!
//! Each run sends for five seconds, as fast as the senders go or paced, and reports the
//! frames that arrived on `tw-bench-b` (its `rx_packets`: the offered rate), what was
//! captured, what the kernel and the channel dropped, and the CPU time of the capture thread
//! (read, decode, batch) and of the whole capturing process (plus the flow table), with
//! packets per CPU-second of each: the per-core capacity of the capture path. A reader that
//! drops at the full rate is run again at lower paced rates until one drops nothing. Under
//! `cargo test` (no `--bench`) it is a one-second smoke run of each reader at full rate.
//!
//! The frames are addressed to another host's MAC address, so the receiving kernel drops them
//! right after the capture taps (as a gateway's inside NIC would see traffic it forwards)
//! instead of running each through UDP and ICMP: that work is not the capture's, and on two
//! cores it would be taken from the senders. The kernel's copy into the ring or the socket
//! buffer happens in the senders' softirq, on their cores, for both readers alike: it is in
//! neither CPU figure of the capturing process.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::print_stderr)]

use std::io::IoSlice;
use std::process::Command;
use std::time::{Duration, Instant};

use gateway::flow::capture::{Capture, CaptureOptions, CaptureRing};
use gateway::flow::{FlowConfig, FlowTable};

const ROLE: &str = "TW_CAPTURE_BENCH_ROLE";
const SECS: &str = "TW_CAPTURE_BENCH_SECS";
const RATE: &str = "TW_CAPTURE_BENCH_RATE";
const RING: &str = "TW_CAPTURE_BENCH_RING";
/// How many times the generator pair's tc filter repeats each frame into `tw-bench-a` (32
/// actions is the most a filter takes).
const COPIES: u64 = 32;
/// Sender processes, one per core: the kernel's work for a frame happens on its sender's core.
const SENDERS: u64 = 2;
/// Paced rates tried, highest first, when the full rate drops packets.
const PACED_RATES: [u64; 6] = [1_500_000, 1_000_000, 500_000, 250_000, 200_000, 100_000];

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("iproute2");
    assert!(
        status.success(),
        "ip {} failed (the capture benchmark needs root)",
        args.join(" ")
    );
}

fn tc(args: &[&str]) {
    let status = Command::new("tc")
        .args(args)
        .status()
        .expect("iproute2's tc");
    assert!(status.success(), "tc {} failed", args.join(" "));
}

/// The benchmark's own roles and settings travel in the environment between its processes
/// (a benchmark is not library code: the rule that only `app` reads it is about the crates).
#[allow(clippy::disallowed_methods)]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// User plus system CPU time from a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> Duration {
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// CPU time of this whole process.
fn process_cpu() -> Duration {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU time of the calling thread.
fn main_thread_cpu() -> Duration {
    stat_cpu(&std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default())
}

/// CPU time of this process's capture thread, named `capture-<interface>` (cut to the 15
/// bytes a thread name keeps; the benchmark's own binary is named `capture-<hash>`).
fn capture_thread_cpu() -> Duration {
    let name = &"capture-tw-bench-b"[..15];
    let mut total = Duration::ZERO;
    let mut n_threads = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            n_threads += 1;
            total +=
                stat_cpu(&std::fs::read_to_string(task.path().join("stat")).unwrap_or_default());
        }
    }
    assert_eq!(n_threads, 1, "one capture thread named {name}");
    total
}

/// A 60-byte Ethernet/IPv4/UDP frame from `port` to port 9.
fn frame(dest_mac: [u8; 6], source_mac: [u8; 6], port: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(60);
    frame.extend_from_slice(&dest_mac);
    frame.extend_from_slice(&source_mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    // IPv4, 20-byte header, total 46 bytes (18 bytes of UDP payload), TTL 64, UDP.
    let mut header = [
        0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 79, 0, 1, 10, 79, 0, 2,
    ];
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let checksum = !(sum as u16);
    header[10..12].copy_from_slice(&checksum.to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&[0, 9, 0, 26, 0, 0]);
    frame.extend_from_slice(&[0u8; 18]);
    frame
}

/// Sends 1,000 prebuilt frames (one per source port) over and over with `sendmmsg(2)` on an
/// AF_PACKET socket bound to `tw-gen-a` (protocol 0: it receives nothing, not even its own
/// frames), unpaced or at `rate` frames per second (each becomes [`COPIES`] on the captured
/// pair). pnet binds the socket; rustix sends. Prints how many it sent.
fn send(secs: u64, rate: u64) {
    use pnet::datalink::{self, Channel, ChannelType};
    use rustix::net::{AddressFamily, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketFlags};

    let interface = datalink::interfaces()
        .into_iter()
        .find(|interface| interface.name == "tw-gen-a")
        .unwrap();
    let source_mac = interface.mac.unwrap().octets();
    // Another host on the link: the receiver drops the frames after its capture taps.
    let dest_mac = [0x02, 0x00, 0x00, 0x00, 0x79, 0x02];
    let socket = rustix::net::socket_with(
        AddressFamily::PACKET,
        rustix::net::SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let sender = socket.try_clone().unwrap();
    let config = datalink::Config {
        channel_type: ChannelType::Layer3(0),
        promiscuous: false,
        socket_fd: Some(std::os::fd::IntoRawFd::into_raw_fd(socket)),
        ..datalink::Config::default()
    };
    let Ok(Channel::Ethernet(_tx, _rx)) = datalink::channel(&interface, config) else {
        panic!("cannot bind an AF_PACKET socket to tw-gen-a");
    };
    let frames: Vec<Vec<u8>> = (20_000u16..21_000)
        .map(|port| frame(dest_mac, source_mac, port))
        .collect();
    let slices: Vec<[IoSlice<'_>; 1]> = frames.iter().map(|f| [IoSlice::new(f)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = (0..frames.len())
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<MMsgHdr<'_>> = slices
        .iter()
        .zip(controls.iter_mut())
        .map(|(iov, control)| MMsgHdr::new(iov, control))
        .collect();
    // Paced runs send about a millisecond's worth at a time.
    let chunk = if rate == 0 {
        messages.len()
    } else {
        (rate / 1000).clamp(1, messages.len() as u64) as usize
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut sent: u64 = 0;
    let mut next: usize = 0;
    let mut errors: u64 = 0;
    while Instant::now() < deadline {
        let end = (next + chunk).min(messages.len());
        match rustix::net::sendmmsg(&sender, &mut messages[next..end], SendFlags::empty()) {
            Ok(n) => {
                sent += n as u64;
                next = (next + n) % messages.len();
            }
            Err(_) => errors += 1,
        }
        if rate > 0 {
            let due = started + Duration::from_secs_f64(sent as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
    if errors > 0 {
        eprintln!("sender: {errors} failed sendmmsg calls");
    }
    println!("{sent}");
}

/// Frames received on the captured interface so far (this process is in its namespace).
fn rx_packets() -> u64 {
    std::fs::read_to_string("/sys/class/net/tw-bench-b/statistics/rx_packets")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// One run's numbers, as the capturing process reports them to the orchestrator.
#[derive(Debug, Clone, Copy)]
struct Run {
    ring: CaptureRing,
    /// 0: as fast as the sender goes.
    rate: u64,
    secs: u64,
    /// Frames the sender wrote (each repeated [`COPIES`] times).
    sent: u64,
    /// Frames that arrived on the captured interface.
    arrived: u64,
    frames: u64,
    observed: u64,
    kernel_drops: u64,
    channel_drops: u64,
    thread_cpu: f64,
    /// The thread that feeds the flow table (this benchmark's main thread).
    table_cpu: f64,
    process_cpu: f64,
    udp_flows: usize,
}

impl Run {
    fn line(&self) -> String {
        format!(
            "RUN {} {} {} {} {} {} {} {} {} {} {} {} {}",
            self.ring,
            self.rate,
            self.secs,
            self.sent,
            self.arrived,
            self.frames,
            self.observed,
            self.kernel_drops,
            self.channel_drops,
            self.thread_cpu,
            self.table_cpu,
            self.process_cpu,
            self.udp_flows
        )
    }

    fn parse(line: &str) -> Option<Run> {
        let mut fields = line.strip_prefix("RUN ")?.split_whitespace();
        let ring = match fields.next()? {
            "pnet" => CaptureRing::Pnet,
            _ => CaptureRing::TpacketV3,
        };
        let mut number = || fields.next()?.parse::<f64>().ok();
        Some(Run {
            ring,
            rate: number()? as u64,
            secs: number()? as u64,
            sent: number()? as u64,
            arrived: number()? as u64,
            frames: number()? as u64,
            observed: number()? as u64,
            kernel_drops: number()? as u64,
            channel_drops: number()? as u64,
            thread_cpu: number()?,
            table_cpu: number()?,
            process_cpu: number()?,
            udp_flows: number()? as usize,
        })
    }

    fn offered(&self) -> f64 {
        self.arrived as f64 / self.secs as f64
    }

    fn lossless(&self) -> bool {
        self.kernel_drops == 0 && self.channel_drops == 0 && self.frames >= self.arrived
    }

    fn row(&self) -> String {
        let per = |cpu: f64| self.observed as f64 / cpu.max(1e-9);
        format!(
            "| {} | {} | {:.0} | {} of {} ({} sent) | {} | {} | {:.2} | {:.0} | {:.2} | {:.2} | {:.0} | {} |",
            self.ring,
            if self.rate == 0 {
                "full".to_owned()
            } else {
                format!("{}", self.rate)
            },
            self.offered(),
            self.frames,
            self.arrived,
            self.sent * COPIES,
            self.kernel_drops,
            self.channel_drops,
            self.thread_cpu,
            per(self.thread_cpu),
            self.table_cpu,
            self.process_cpu,
            per(self.process_cpu),
            self.udp_flows,
        )
    }
}

/// The capturing side of one run, in the receiving namespace: starts the capture, runs the
/// sender in the other namespace, feeds the flow table, and prints a `RUN` line.
fn capture(secs: u64, namespace_a: &str, ring: CaptureRing, rate: u64) {
    let (capture, mut packets) = Capture::start(&CaptureOptions {
        ring,
        ..CaptureOptions::new("tw-bench-b")
    })
    .unwrap();
    let counters = std::sync::Arc::clone(&capture.counters);
    std::thread::sleep(Duration::from_millis(200));
    let thread_before = capture_thread_cpu();
    let process_before = process_cpu();
    let main_before = main_thread_cpu();
    let arrived_before = rx_packets();
    let senders: Vec<std::process::Child> = (0..SENDERS)
        .map(|_| {
            Command::new("ip")
                .args(["netns", "exec", namespace_a])
                .arg(std::env::current_exe().unwrap())
                .arg("--bench")
                .env(ROLE, "send")
                .env(SECS, secs.to_string())
                .env(RATE, (rate / COPIES / SENDERS).to_string())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut table = FlowTable::new(FlowConfig::default());
    let mut records = Vec::new();
    let mut observed: u64 = 0;
    let mut observe = |batch: Vec<(i64, gateway::flow::decode::Packet)>,
                       records: &mut Vec<gateway::flow::FlowRecord>| {
        observed += batch.len() as u64;
        for (at, packet) in &batch {
            table.observe(packet, *at, records);
        }
    };
    // Until the sender is done and the ring's last block is in (twice its retire time).
    let until = Instant::now() + Duration::from_secs(secs) + Duration::from_millis(500);
    while Instant::now() < until {
        match packets.try_recv() {
            Ok(batch) => observe(batch, &mut records),
            Err(_) => std::thread::sleep(Duration::from_micros(100)),
        }
    }
    let sent: u64 = senders
        .into_iter()
        .map(|sender| {
            let output = sender.wait_with_output().unwrap();
            String::from_utf8_lossy(&output.stdout)
                .trim()
                .parse::<u64>()
                .unwrap_or(0)
        })
        .sum();
    let arrived = rx_packets() - arrived_before;
    let thread_cpu = capture_thread_cpu().saturating_sub(thread_before);
    capture.stop();
    while let Ok(batch) = packets.try_recv() {
        observe(batch, &mut records);
    }
    let process_cpu = process_cpu().saturating_sub(process_before);
    let table_cpu = main_thread_cpu().saturating_sub(main_before);
    let mut table_records = Vec::new();
    table.drain(&mut table_records);
    records.extend(table_records);
    let snapshot = counters.snapshot();
    let udp_flows = records
        .iter()
        .filter(|r| r.protocol == 17)
        .map(|r| r.source.1)
        .collect::<std::collections::BTreeSet<u16>>()
        .len();
    let run = Run {
        ring,
        rate,
        secs,
        sent,
        arrived,
        frames: snapshot.frames,
        observed,
        kernel_drops: snapshot.kernel_drops,
        channel_drops: snapshot.channel_drops,
        thread_cpu: thread_cpu.as_secs_f64(),
        table_cpu: table_cpu.as_secs_f64(),
        process_cpu: process_cpu.as_secs_f64(),
        udp_flows,
    };
    println!("{}", run.line());
}

/// Runs one capture in namespace `b` (the sender in `a`) and returns its numbers.
fn run(a: &str, b: &str, secs: u64, ring: CaptureRing, rate: u64) -> Run {
    let output = Command::new("ip")
        .args(["netns", "exec", b])
        .arg(std::env::current_exe().unwrap())
        .arg("--bench")
        .env(ROLE, format!("capture:{a}"))
        .env(SECS, secs.to_string())
        .env(RATE, rate.to_string())
        .env(RING, ring.as_str())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the capture side failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = stdout
        .lines()
        .find_map(Run::parse)
        .unwrap_or_else(|| panic!("no RUN line in {stdout}"));
    println!("{}", run.row());
    run
}

fn main() {
    let bench = std::env::args().any(|arg| arg == "--bench");
    let secs: u64 = env(SECS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 5 } else { 1 });
    let rate: u64 = env(RATE).and_then(|v| v.parse().ok()).unwrap_or(0);
    match env(ROLE).as_deref() {
        Some("send") => return send(secs, rate),
        Some(namespace_a) if namespace_a.starts_with("capture:") => {
            let ring = match env(RING).as_deref() {
                Some("pnet") => CaptureRing::Pnet,
                _ => CaptureRing::TpacketV3,
            };
            return capture(secs, &namespace_a["capture:".len()..], ring, rate);
        }
        _ => {}
    }
    if !bench {
        println!(
            "(smoke run: the numbers below mean nothing; use `cargo bench -p gateway --bench capture`)"
        );
    }
    let a = format!("tw-bench-a{}", std::process::id());
    let b = format!("tw-bench-b{}", std::process::id());
    struct Cleanup(Vec<String>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for ns in &self.0 {
                let _ = Command::new("ip").args(["netns", "del", ns]).status();
            }
        }
    }
    let _cleanup = Cleanup(vec![a.clone(), b.clone()]);
    ip(&["netns", "add", &a]);
    ip(&["netns", "add", &b]);
    ip(&[
        "-n",
        &a,
        "link",
        "add",
        "tw-bench-a",
        "type",
        "veth",
        "peer",
        "name",
        "tw-bench-b",
        "netns",
        &b,
    ]);
    ip(&[
        "-n", &a, "link", "add", "tw-gen-a", "type", "veth", "peer", "name", "tw-gen-b",
    ]);
    for (ns, dev) in [
        (&a, "tw-bench-a"),
        (&b, "tw-bench-b"),
        (&a, "tw-gen-a"),
        (&a, "tw-gen-b"),
    ] {
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        // No IPv6 on the pairs: no neighbour discovery frames among the counted ones.
        ip(&[
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
        ]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    // Every frame that arrives on tw-gen-b leaves through tw-bench-a COPIES times.
    let mut filter: Vec<String> = [
        "-n", &a, "filter", "add", "dev", "tw-gen-b", "ingress", "protocol", "all", "u32", "match",
        "u32", "0", "0",
    ]
    .iter()
    .map(|arg| (*arg).to_owned())
    .collect();
    for copy in 1..=COPIES {
        let how = if copy == COPIES { "redirect" } else { "mirror" };
        filter.extend(["action", "mirred", "egress", how, "dev", "tw-bench-a"].map(str::to_owned));
    }
    tc(&["-n", &a, "qdisc", "add", "dev", "tw-gen-b", "clsact"]);
    tc(&filter.iter().map(String::as_str).collect::<Vec<&str>>());
    println!(
        "| ring | paced to (packets/s) | offered (packets/s arriving) | captured frames of arrived | kernel drops | channel drops | capture thread CPU s | packets per capture-thread CPU-second | flow table thread CPU s | process CPU s | packets per process CPU-second | UDP flows |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut runs = Vec::new();
    for ring in [CaptureRing::Pnet, CaptureRing::TpacketV3] {
        let full = run(&a, &b, secs, ring, 0);
        runs.push(full);
        if !bench || full.lossless() {
            continue;
        }
        for paced in PACED_RATES {
            if (paced as f64) >= full.offered() {
                continue;
            }
            let paced_run = run(&a, &b, secs, ring, paced);
            runs.push(paced_run);
            if paced_run.lossless() {
                break;
            }
        }
    }
    println!();
    for ring in [CaptureRing::Pnet, CaptureRing::TpacketV3] {
        let best = runs
            .iter()
            .filter(|run| run.ring == ring && run.lossless())
            .max_by(|x, y| x.offered().total_cmp(&y.offered()));
        let per_thread = |run: &Run| run.observed as f64 / run.thread_cpu.max(1e-9);
        match best {
            Some(run) => println!(
                "{ring}: lossless at {:.0} packets/s offered; {:.0} packets per capture-thread CPU-second, {:.0} per process CPU-second (target ≥ 1,000,000 per core with zero kernel drops: {})",
                run.offered(),
                per_thread(run),
                run.observed as f64 / run.process_cpu.max(1e-9),
                if per_thread(run) >= 1_000_000.0 {
                    "met"
                } else {
                    "NOT met"
                }
            ),
            None => println!("{ring}: no run without drops"),
        }
    }
}
