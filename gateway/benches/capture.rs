//! Live capture throughput: pnet's per-packet AF_PACKET receive on a veth pair, through the
//! decoder and the flow table, as the gateway runs it.
//!
//! `cargo bench -p gateway --bench capture` (root: it creates two network namespaces joined
//! by a veth pair, re-runs itself in each, and deletes them). A sender process in one
//! namespace sends 60-byte UDP frames (AF_PACKET) from 1,000 source ports as fast as one core allows
//! for five seconds; this process captures them on the other end of the pair. It prints the
//! offered rate, what was captured, what the kernel and the channel dropped, and the packets
//! per CPU-second of the capturing process (capture thread plus flow table): the per-core
//! capacity. Under `cargo test` (no `--bench`) it is a one-second smoke run.

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::print_stderr)]

use std::process::Command;
use std::time::{Duration, Instant};

use gateway::flow::capture::{Capture, CaptureOptions};
use gateway::flow::{FlowConfig, FlowTable};

const ROLE: &str = "TW_CAPTURE_BENCH_ROLE";
const SECS: &str = "TW_CAPTURE_BENCH_SECS";

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("iproute2");
    assert!(
        status.success(),
        "ip {} failed (the capture benchmark needs root)",
        args.join(" ")
    );
}

/// User and system CPU time of this process.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Sends prebuilt Ethernet/IPv4/UDP frames through pnet's AF_PACKET sender (no socket or
/// routing work per packet), cycling over 1,000 source ports.
/// The benchmark's own roles and settings travel in the environment between its processes
/// (a benchmark is not library code: the rule that only `app` reads it is about the crates).
#[allow(clippy::disallowed_methods)]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn send(secs: u64) {
    use pnet::datalink::{self, Channel};
    let interface = datalink::interfaces()
        .into_iter()
        .find(|interface| interface.name == "tw-bench-a")
        .unwrap();
    let source_mac = interface.mac.unwrap().octets();
    let dest_mac: Vec<u8> = env("TW_CAPTURE_BENCH_MAC")
        .unwrap()
        .split(':')
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect();
    let Ok(Channel::Ethernet(mut tx, _rx)) =
        datalink::channel(&interface, datalink::Config::default())
    else {
        panic!("no AF_PACKET channel on tw-bench-a");
    };
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
    frame.extend_from_slice(&[0, 0, 0, 9, 0, 26, 0, 0]);
    frame.extend_from_slice(&[0u8; 18]);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut sent: u64 = 0;
    while Instant::now() < deadline {
        for port in 20_000u16..21_000 {
            frame[34..36].copy_from_slice(&port.to_be_bytes());
            if let Some(Ok(())) = tx.send_to(&frame, None) {
                sent += 1;
            }
        }
    }
    println!("{sent}");
}

fn capture(secs: u64, namespace_a: &str) {
    let (capture, mut packets) = Capture::start(&CaptureOptions {
        interface: "tw-bench-b".to_owned(),
        link: None,
        read_buffer_bytes: 256 * 1024,
        queue_batches: 4096,
        socket_buffer_bytes: 64 * 1024 * 1024,
    })
    .unwrap();
    let counters = std::sync::Arc::clone(&capture.counters);
    std::thread::sleep(Duration::from_millis(200));
    let cpu_before = cpu_time();
    let started = Instant::now();
    let mac = pnet::datalink::interfaces()
        .into_iter()
        .find(|interface| interface.name == "tw-bench-b")
        .and_then(|interface| interface.mac)
        .unwrap()
        .to_string();
    let sender = Command::new("ip")
        .args(["netns", "exec", namespace_a])
        .arg(std::env::current_exe().unwrap())
        .arg("--bench")
        .env(ROLE, "send")
        .env("TW_CAPTURE_BENCH_MAC", mac)
        .env(SECS, secs.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut table = FlowTable::new(FlowConfig::default());
    let mut records = Vec::new();
    let mut observed: u64 = 0;
    let until = Instant::now() + Duration::from_secs(secs) + Duration::from_millis(500);
    while Instant::now() < until {
        if let Ok(batch) = packets.try_recv() {
            observed += batch.len() as u64;
            for (at, packet) in &batch {
                table.observe(packet, *at, &mut records);
            }
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let output = sender.wait_with_output().unwrap();
    let sent: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    capture.stop();
    while let Ok(batch) = packets.try_recv() {
        observed += batch.len() as u64;
        for (at, packet) in &batch {
            table.observe(packet, *at, &mut records);
        }
    }
    let cpu = cpu_time().saturating_sub(cpu_before);
    let wall = started.elapsed();
    table.drain(&mut records);
    let snapshot = counters.snapshot();
    let per_cpu = observed as f64 / cpu.as_secs_f64().max(1e-9);
    let udp_flows = records.iter().filter(|r| r.protocol == 17).count();
    println!("| measure | value | target | verdict |");
    println!("|---|---|---|---|");
    println!(
        "| offered (one sender core, AF_PACKET, 60-byte UDP frames) | {:.0} packets/s | | |",
        sent as f64 / secs as f64
    );
    println!(
        "| captured frames | {} of {} sent | all | {} |",
        snapshot.frames,
        sent,
        if snapshot.frames >= sent {
            "ok"
        } else {
            "lost some"
        }
    );
    println!(
        "| kernel drops (PACKET_STATISTICS) | {} | 0 | {} |",
        snapshot.kernel_drops,
        if snapshot.kernel_drops == 0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "| channel drops | {} | 0 | {} |",
        snapshot.channel_drops,
        if snapshot.channel_drops == 0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "| packets per CPU-second of the capturing process (pnet per-packet receive + decode + flow table) | {:.0} (wall {:.1} s, CPU {:.1} s) | ≥ 1,000,000 per core | {} |",
        per_cpu,
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        if per_cpu >= 1_000_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "| UDP flows | {udp_flows} | 1,000 | {} |",
        if udp_flows == 1_000 { "ok" } else { "check" }
    );
}

fn main() {
    let secs: u64 = env(SECS).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        if std::env::args().any(|arg| arg == "--bench") {
            5
        } else {
            1
        }
    });
    match env(ROLE).as_deref() {
        Some("send") => return send(secs),
        Some(namespace_a) if namespace_a.starts_with("capture:") => {
            return capture(secs, &namespace_a["capture:".len()..]);
        }
        _ => {}
    }
    if !std::env::args().any(|arg| arg == "--bench") {
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
    ip(&["-n", &a, "addr", "add", "10.79.0.1/24", "dev", "tw-bench-a"]);
    ip(&["-n", &b, "addr", "add", "10.79.0.2/24", "dev", "tw-bench-b"]);
    for (ns, dev) in [(&a, "tw-bench-a"), (&b, "tw-bench-b")] {
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
    }
    // No ARP on the clock: the sender knows the receiver's MAC from the start.
    let status = Command::new("ip")
        .args(["netns", "exec", &b])
        .arg(std::env::current_exe().unwrap())
        .arg("--bench")
        .env(ROLE, format!("capture:{a}"))
        .env(SECS, secs.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "the capture side failed");
}
