//! Live capture against the real kernel, through both ways of reading frames (the TPACKET_V3
//! ring, the default, and pnet), inside network namespaces each test creates:
//! - loopback (Ethernet framing, 64 KiB frames: far beyond pnet's default 4096-byte buffer)
//!   and a TUN device (bare IP frames, like kernel-libipsec's `ipsec0`);
//! - a veth pair carrying IPv6 BIG TCP, frames of about 192 KiB (GRO/GSO super-frames whose
//!   IPv6 header carries no length): counted whole, and still counted right (the cut counted)
//!   by a ring whose blocks are too small for them;
//! - a TUN device that vanishes and comes back with a new index, as kernel-libipsec's `ipsec0`
//!   does across charon restarts: the capture source captures it again, into the same flows.
//!
//! The flows must carry exactly the packets and bytes that were sent.
//!
//! Needs root (network namespaces, AF_PACKET). Each test re-runs itself inside its namespace.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use gateway::flow::capture::{
    Capture, CaptureCounters, CaptureOptions, CaptureRing, CaptureSnapshot, LostReason,
};
use gateway::flow::decode::{LinkType, Packet};
use gateway::flow::{FlowConfig, FlowRecord, FlowTable};

/// Set (to a role) when a test runs inside its namespace.
const INNER: &str = "TW_CAPTURE_INNER";
const TUN: &str = "tw-tun0";

fn ip(args: &[&str]) {
    let status = Command::new("ip")
        .args(args)
        .status()
        .expect("iproute2 is installed");
    assert!(
        status.success(),
        "ip {} failed (this test needs root)",
        args.join(" ")
    );
}

struct Namespace(String);

impl Namespace {
    /// A new namespace with its loopback up, named uniquely for this process and `tag`.
    fn new(tag: &str) -> Namespace {
        let ns = Namespace(format!("tw-{tag}-{}", std::process::id()));
        ip(&["netns", "add", &ns.0]);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn rerun(&self, test: &str, role: &str) -> Command {
        rerun_in(&self.0, test, role)
    }

    /// Runs `test` again inside this namespace (its `capture` role) and fails if it fails.
    fn run_inside(&self, test: &str) {
        let status = self.rerun(test, "capture").status().unwrap();
        assert!(
            status.success(),
            "{test}: the part inside {} failed",
            self.0
        );
    }
}

/// This test binary, running only `test`, inside `namespace` with `role` in [`INNER`].
fn rerun_in(namespace: &str, test: &str, role: &str) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", namespace])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(INNER, role);
    command
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The role this run of the test has: `None` outside the namespaces.
#[allow(clippy::disallowed_methods)]
fn role() -> Option<String> {
    std::env::var(INNER).ok()
}

#[test]
fn the_ring_counts_loopback_and_tun_traffic_exactly() {
    loopback_and_tun(
        "the_ring_counts_loopback_and_tun_traffic_exactly",
        CaptureRing::TpacketV3,
    );
}

#[test]
fn pnet_is_still_selectable_and_counts_loopback_and_tun_traffic_exactly() {
    loopback_and_tun(
        "pnet_is_still_selectable_and_counts_loopback_and_tun_traffic_exactly",
        CaptureRing::Pnet,
    );
}

fn loopback_and_tun(test: &str, ring: CaptureRing) {
    if role().is_some() {
        inside_the_namespace(ring);
        return;
    }
    let ns = Namespace::new(&format!("cap-{ring}"));
    ip(&["-n", &ns.0, "tuntap", "add", "dev", TUN, "mode", "tun"]);
    ip(&["-n", &ns.0, "addr", "add", "10.78.0.1/24", "dev", TUN]);
    ip(&["-n", &ns.0, "link", "set", TUN, "up"]);
    ns.run_inside(test);
}

type Batches = tokio::sync::mpsc::Receiver<Vec<(i64, Packet)>>;

fn capture(options: CaptureOptions) -> (Capture, Batches) {
    Capture::start(&options).unwrap_or_else(|error| panic!("{error}"))
}

fn flows_of(capture: Capture, mut packets: Batches) -> (Vec<FlowRecord>, CaptureSnapshot) {
    let counters = std::sync::Arc::clone(&capture.counters);
    capture.stop();
    let mut table = FlowTable::new(FlowConfig::default());
    let mut records = Vec::new();
    while let Some(batch) = packets.blocking_recv() {
        for (at, packet) in &batch {
            table.observe(packet, *at, &mut records);
        }
    }
    table.drain(&mut records);
    (records, counters.snapshot())
}

fn inside_the_namespace(ring: CaptureRing) {
    let options = |interface: &str| CaptureOptions {
        ring,
        ..CaptureOptions::new(interface)
    };
    let (lo, lo_packets) = capture(options("lo"));
    assert_eq!(lo.link, LinkType::Ethernet);
    assert_eq!(lo.ring, ring);
    let (tun, tun_packets) = capture(options(TUN));
    assert_eq!(
        tun.link,
        LinkType::RawIp,
        "a TUN device has no MAC: bare IP frames"
    );
    std::thread::sleep(Duration::from_millis(200));

    // One TCP connection on loopback: 4 MB down, 1000 bytes up, closed by both sides.
    let retransmitted_before = tcp_retransmissions();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 1000];
        stream.read_exact(&mut request).unwrap();
        stream.write_all(&vec![7u8; 4_000_000]).unwrap();
    });
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let client_port = client.local_addr().unwrap().port();
    client.write_all(&[1u8; 1000]).unwrap();
    let mut body = Vec::new();
    client.read_to_end(&mut body).unwrap();
    assert_eq!(body.len(), 4_000_000);
    drop(client);
    server.join().unwrap();
    // A loaded machine's loopback drops segments too (its backlog is bounded): what TCP sent
    // again is on the wire again, up to a 64 KiB segment each time.
    let retransmitted = tcp_retransmissions() - retransmitted_before;

    // Three datagrams out of the TUN device. A peer process holds the device, like
    // kernel-libipsec does, and answers each datagram by writing the reply into it: the
    // reply arrives on the TUN as a decrypted packet would.
    let mut peer = Command::new("python3")
        .args(["-c", TUN_PEER, TUN])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the TUN peer");
    let mut ready = [0u8; 6];
    peer.stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    assert_eq!(&ready, b"ready\n");
    ready_to_transmit(TUN);
    let udp = UdpSocket::bind("10.78.0.1:40000").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for size in [100, 200, 300] {
        udp.send_to(&vec![0u8; size], "10.78.0.2:9999").unwrap();
        let mut reply = [0u8; 512];
        let (n, from) = udp.recv_from(&mut reply).expect("the TUN peer answers");
        assert_eq!((n, from.port()), (size, 9999));
    }
    let _ = peer.kill();
    let _ = peer.wait();
    std::thread::sleep(Duration::from_millis(400));

    let (records, counters) = flows_of(lo, lo_packets);
    eprintln!("lo ({ring}): {counters:?}");
    assert_eq!(counters.kernel_drops, 0, "{counters:?}");
    assert_eq!(counters.channel_drops, 0, "{counters:?}");
    assert_eq!((counters.cut, counters.unreadable), (0, 0), "{counters:?}");
    let tcp: Vec<&FlowRecord> = records
        .iter()
        .filter(|r| {
            r.protocol == 6 && (r.source.1 == client_port || r.destination.1 == client_port)
        })
        .collect();
    assert_eq!(tcp.len(), 1, "{records:?}");
    let flow = tcp[0];
    assert_eq!(flow.source.1, client_port, "the client opened it");
    assert_eq!(flow.destination.1, port);
    // Payload plus 40-52 bytes of headers per segment: loopback segments are up to 64 KiB,
    // so headers add well under 1 %; a 4096-byte capture buffer would count a fraction.
    let resent = 65_536 * retransmitted;
    assert!(
        (4_000_000 + 40 * flow.destination_packets
            ..=4_000_000 + 60 * flow.destination_packets + resent)
            .contains(&flow.destination_bytes),
        "bytes from the server ({retransmitted} segments retransmitted): {flow:?}"
    );
    // Up: 1000 bytes of payload, and 40 bytes of headers plus up to 20 of TCP options per
    // packet (SYN, ACKs with timestamps).
    assert!(
        (1_000 + 40 * flow.source_packets..=1_000 + 60 * flow.source_packets + resent)
            .contains(&flow.source_bytes),
        "{flow:?}"
    );
    if retransmitted == 0 {
        assert!(
            flow.destination_packets < 1_000,
            "large frames, not 4 KiB pieces: {flow:?}"
        );
    }

    let (records, counters) = flows_of(tun, tun_packets);
    eprintln!("{TUN} ({ring}): {counters:?}");
    let udp: Vec<&FlowRecord> = records.iter().filter(|r| r.protocol == 17).collect();
    assert_eq!(udp.len(), 1, "{records:?}");
    assert_eq!((udp[0].source_packets, udp[0].destination_packets), (3, 3));
    assert_eq!(udp[0].source_bytes, 600 + 3 * 28);
    assert_eq!(udp[0].destination_bytes, 600 + 3 * 28);
    assert_eq!(udp[0].destination.1, 9999);
}

/// Holds the TUN device (TUNSETIFF, no packet information header) and answers every UDP
/// datagram that leaves through it with the same payload, addresses and ports swapped.
const TUN_PEER: &str = r#"
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", sys.argv[1].encode(), 0x0001 | 0x1000))
sys.stdout.write("ready\n"); sys.stdout.flush()
def checksum(header):
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return ~total & 0xffff
while True:
    packet = os.read(fd, 65536)
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        continue
    ihl = (packet[0] & 15) * 4
    src, dst = packet[12:16], packet[16:20]
    sport, dport = packet[ihl:ihl + 2], packet[ihl + 2:ihl + 4]
    header = bytearray(packet[:ihl])
    header[12:16], header[16:20] = dst, src
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", checksum(bytes(header[:20])))
    udp = bytearray(packet[ihl:])
    udp[0:2], udp[2:4] = dport, sport
    udp[6:8] = b"\0\0"
    os.write(fd, bytes(header) + bytes(udp))
"#;

const VLAN_TEST: &str = "vlan_tagged_frames_are_counted_through_both_readers";

/// 802.1Q-tagged frames on a veth pair (this kernel has no VLAN devices: the test writes the
/// tagged frames itself). The sending end's capture sees the tag in the frame; the receiving
/// kernel takes it off before its capture taps and hands it beside the frame (`tp_mac` then
/// points at plain Ethernet). Both readers count the datagrams exactly at both ends.
#[test]
fn vlan_tagged_frames_are_counted_through_both_readers() {
    if role().is_some() {
        vlan_inside();
        return;
    }
    let ns = Namespace::new("vlan");
    ip(&[
        "-n", &ns.0, "link", "add", "tw-vl-h", "type", "veth", "peer", "name", "tw-vl-p",
    ]);
    for dev in ["tw-vl-h", "tw-vl-p"] {
        ip(&["-n", &ns.0, "link", "set", dev, "up"]);
    }
    ns.run_inside(VLAN_TEST);
}

/// An Ethernet frame tagged with VLAN 10 carrying a UDP datagram of `payload` bytes from
/// 10.77.10.2:40010 to 10.77.10.1:9.
fn tagged_udp(destination: [u8; 6], source: [u8; 6], payload: usize) -> Vec<u8> {
    let ip_len = u16::try_from(20 + 8 + payload).unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&[0x81, 0x00, 0x00, 10, 0x08, 0x00]);
    frame.extend_from_slice(&[0x45, 0]);
    frame.extend_from_slice(&ip_len.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0, 10, 77, 10, 2, 10, 77, 10, 1]);
    frame.extend_from_slice(&40010u16.to_be_bytes());
    frame.extend_from_slice(&9u16.to_be_bytes());
    frame.extend_from_slice(&(ip_len - 20).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend(std::iter::repeat_n(0u8, payload));
    frame
}

fn vlan_inside() {
    use pnet::datalink::{self, Channel};
    let interfaces = datalink::interfaces();
    let mac = |name: &str| {
        interfaces
            .iter()
            .find(|interface| interface.name == name)
            .and_then(|interface| interface.mac)
            .unwrap()
            .octets()
    };
    let captures = [
        ("tpacket_v3 sending end", CaptureRing::TpacketV3, "tw-vl-h"),
        ("pnet sending end", CaptureRing::Pnet, "tw-vl-h"),
        (
            "tpacket_v3 receiving end",
            CaptureRing::TpacketV3,
            "tw-vl-p",
        ),
        ("pnet receiving end", CaptureRing::Pnet, "tw-vl-p"),
    ]
    .map(|(name, ring, interface)| {
        (
            name,
            capture(CaptureOptions {
                ring,
                ..CaptureOptions::new(interface)
            }),
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let sender = interfaces
        .iter()
        .find(|interface| interface.name == "tw-vl-h")
        .unwrap();
    let Ok(Channel::Ethernet(mut tx, _rx)) = datalink::channel(sender, datalink::Config::default())
    else {
        panic!("no AF_PACKET channel on tw-vl-h");
    };
    for payload in [100, 200, 300] {
        let frame = tagged_udp(mac("tw-vl-p"), mac("tw-vl-h"), payload);
        tx.send_to(&frame, None).unwrap().unwrap();
    }
    std::thread::sleep(Duration::from_millis(400));
    for (name, (capture, packets)) in captures {
        let (records, counters) = flows_of(capture, packets);
        eprintln!("{name}: {counters:?}");
        assert_eq!(counters.undecodable, 0, "{name}: {counters:?}");
        let udp: Vec<&FlowRecord> = records.iter().filter(|r| r.protocol == 17).collect();
        assert_eq!(udp.len(), 1, "{name}: {records:?}");
        assert_eq!(
            (udp[0].source.1, udp[0].destination.1),
            (40010, 9),
            "{name}"
        );
        assert_eq!(
            (udp[0].source_packets, udp[0].source_bytes),
            (3, 600 + 3 * 28),
            "{name}"
        );
    }
}

const GONE_TEST: &str = "an_interface_that_vanishes_is_reported_and_not_spun_on";

/// An interface that goes away while it is captured (kernel-libipsec removes `ipsec0` when
/// charon stops) is reported as a read error, through both readers, and the capture thread
/// does not spin on it: it closes its socket and ends, saying why, whether the interface was
/// removed while up (the read error tells) or first set down and then removed (no error
/// comes: the thread's periodic check tells).
#[test]
fn an_interface_that_vanishes_is_reported_and_not_spun_on() {
    if role().is_some() {
        vanishing_interfaces();
        return;
    }
    let ns = Namespace::new("gone");
    ns.run_inside(GONE_TEST);
}

/// CPU time of the capture thread named `name` (as the kernel keeps it: 15 bytes).
fn thread_cpu(name: &str) -> Duration {
    let name = &name[..name.len().min(15)];
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
            let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            ticks += [11, 12]
                .iter()
                .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
                .sum::<u64>();
        }
    }
    Duration::from_millis(ticks * 10)
}

fn vanishing_interfaces() {
    for (ring, down_first) in [
        (CaptureRing::TpacketV3, false),
        (CaptureRing::Pnet, false),
        (CaptureRing::TpacketV3, true),
        (CaptureRing::Pnet, true),
    ] {
        let case = if down_first {
            format!("{ring}, down then removed")
        } else {
            format!("{ring}, removed while up")
        };
        ip(&[
            "link",
            "add",
            "tw-gone-a",
            "type",
            "veth",
            "peer",
            "name",
            "tw-gone-b",
        ]);
        ip(&["link", "set", "tw-gone-a", "up"]);
        let (capture, packets) = capture(CaptureOptions {
            ring,
            ..CaptureOptions::new("tw-gone-a")
        });
        std::thread::sleep(Duration::from_millis(200));
        if down_first {
            // Down: a read error, but the interface is still there and the socket is kept
            // (the kernel hooks it in again when the interface comes up). Removed while down,
            // the socket hears nothing: the capture thread's periodic check finds the loss.
            ip(&["link", "set", "tw-gone-a", "down"]);
            std::thread::sleep(Duration::from_millis(300));
            assert_eq!(
                threads_named("capture-tw-gone-a"),
                1,
                "{case}: a capture whose interface is down goes on"
            );
        }
        ip(&["link", "del", "tw-gone-a"]);
        std::thread::sleep(Duration::from_millis(100));
        let before = thread_cpu("capture-tw-gone-a");
        std::thread::sleep(Duration::from_millis(1000));
        // The thread may have ended in between (it ends by itself once the interface is gone).
        let spent = thread_cpu("capture-tw-gone-a").saturating_sub(before);
        assert_eq!(
            threads_named("capture-tw-gone-a"),
            0,
            "{case}: the capture thread ends by itself"
        );
        let counters = std::sync::Arc::clone(&capture.counters);
        let lost = capture.stop();
        drop(packets);
        let counters = counters.snapshot();
        eprintln!("{case}: {counters:?}, {spent:?} of CPU in the second after, {lost:?}");
        assert!(counters.read_errors >= 1, "{case}: {counters:?}");
        let lost = lost.unwrap_or_else(|| panic!("{case}: the capture thread says why it ended"));
        assert_eq!(lost.reason, LostReason::Removed, "{case}");
        // Removed while up, the read error (ENETDOWN) tells; while down, the check.
        assert_eq!(lost.error.is_some(), !down_first, "{case}: {lost:?}");
        assert!(
            spent <= Duration::from_millis(100),
            "{case}: the capture thread spun on the vanished interface ({spent:?} of CPU in a second)"
        );
    }
}

/// An interface that is not there yet is waited for (kernel-libipsec creates `ipsec0` only
/// when charon starts), and the wait ends cleanly when the agent stops.
#[tokio::test]
async fn a_missing_interface_is_waited_for_until_the_agent_stops() {
    let dir = tempfile::tempdir().unwrap();
    let spool = gateway::spool::Spool::open(&dir.path().join("spool"), 64 * 1024 * 1024).unwrap();
    let shared = gateway::sink::SharedSpool::new(spool);
    let sink = gateway::sink::Sink::new(shared, "gw/capture-nope0@1".to_owned(), 0, 100);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let source = tokio::spawn(gateway::flow::capture::run_source(
        CaptureOptions::new("tw-nope0"),
        FlowConfig::default(),
        model::Observer::default(),
        sink,
        std::sync::Arc::default(),
        stop_rx,
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !source.is_finished(),
        "a missing interface must not stop the agent"
    );
    stop_tx.send(true).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), source)
        .await
        .unwrap()
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

const BACK_TEST: &str = "a_capture_comes_back_with_its_interface_through_both_readers";
const BACK_TUN: &str = "tw-back0";

/// kernel-libipsec removes `ipsec0` when charon stops and creates a new one, with a new index,
/// when charon starts again. Here a process holds a TUN device as kernel-libipsec does (the
/// device goes when the process does), and two capture sources watch it, one through each
/// reader. Three datagrams go out and are answered; the holder ends, taking the TUN with it;
/// a new holder creates it again; three more datagrams, from the same address and port, go
/// out and are answered. Each source counts the loss and the reopening once, and exports one
/// flow with all twelve packets and their bytes: the flow table kept the flow across the
/// reopening.
#[test]
fn a_capture_comes_back_with_its_interface_through_both_readers() {
    if role().is_some() {
        interface_comes_back();
        return;
    }
    let ns = Namespace::new("back");
    ns.run_inside(BACK_TEST);
}

/// Waits until `done` holds, for at most `limit`.
#[track_caller]
fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process holding a TUN device (created by it, gone with it) that answers UDP; killed
/// when dropped, so that a failing test leaves no process behind.
struct TunHolder(std::process::Child);

impl Drop for TunHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A [`TunHolder`] of [`BACK_TUN`], the device configured and up.
fn hold_tun() -> TunHolder {
    let mut peer = Command::new("python3")
        .args(["-c", TUN_PEER, BACK_TUN])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs the TUN peer");
    let mut ready = [0u8; 6];
    peer.stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut ready)
        .unwrap();
    assert_eq!(&ready, b"ready\n");
    let peer = TunHolder(peer);
    ip(&["addr", "add", "10.79.0.1/24", "dev", BACK_TUN]);
    ip(&["link", "set", BACK_TUN, "up"]);
    ready_to_transmit(BACK_TUN);
    peer
}

/// TCP segments this network namespace retransmitted so far (`RetransSegs`).
fn tcp_retransmissions() -> u64 {
    retransmissions_of(&std::fs::read_to_string("/proc/net/snmp").unwrap())
}

/// TCP segments `namespace` retransmitted so far.
fn tcp_retransmissions_in(namespace: &str) -> u64 {
    let output = Command::new("ip")
        .args(["netns", "exec", namespace, "cat", "/proc/net/snmp"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    retransmissions_of(&String::from_utf8(output.stdout).unwrap())
}

fn retransmissions_of(snmp: &str) -> u64 {
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|name| name == "RetransSegs")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// Waits until the kernel has taken note that a TUN device's holder attached: until then
/// (the link watch runs in a work queue, late on a loaded machine) the device has no carrier
/// and what is sent into it is dropped before any capture sees it, without an error.
fn ready_to_transmit(device: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let output = Command::new("ip")
            .args(["-o", "link", "show", "dev", device])
            .output()
            .expect("iproute2 is installed");
        let link = String::from_utf8_lossy(&output.stdout);
        // Carrier (LOWER_UP) and the link watch's verdict: UP, or UNKNOWN for a device that
        // had its carrier from the start.
        if link.contains("LOWER_UP")
            && (link.contains(" state UP ") || link.contains(" state UNKNOWN "))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{device} never came up: {link}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Datagrams of `sizes` bytes from 10.79.0.1:40000 to 10.79.0.2:9999 through the TUN, each
/// answered by its holder.
fn exchange(sizes: &[usize]) {
    let udp = UdpSocket::bind("10.79.0.1:40000").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for &size in sizes {
        udp.send_to(&vec![0u8; size], "10.79.0.2:9999").unwrap();
        let mut reply = [0u8; 1024];
        let (n, from) = udp.recv_from(&mut reply).expect("the TUN peer answers");
        assert_eq!((n, from.port()), (size, 9999));
    }
}

/// Threads named `name` (as the kernel keeps it: its first 15 bytes).
fn threads_named(name: &str) -> usize {
    let name = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .count()
}

fn interface_comes_back() {
    // No IPv6 on the TUN: its router solicitations would only add frames to wait through.
    std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let peer = hold_tun();
    let first_index =
        std::fs::read_to_string(format!("/sys/class/net/{BACK_TUN}/ifindex")).unwrap();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let dir = tempfile::tempdir().unwrap();
    let sources = [CaptureRing::TpacketV3, CaptureRing::Pnet].map(|ring| {
        let spool =
            gateway::spool::Spool::open(&dir.path().join(ring.as_str()), 64 * 1024 * 1024).unwrap();
        let shared = gateway::sink::SharedSpool::new(spool);
        let sink = gateway::sink::Sink::new(shared.clone(), format!("gw/{ring}@1"), 0, 100);
        let counters = std::sync::Arc::new(CaptureCounters::default());
        let task = runtime.spawn(gateway::flow::capture::run_source(
            CaptureOptions {
                ring,
                ..CaptureOptions::new(BACK_TUN)
            },
            FlowConfig::default(),
            model::Observer::default(),
            sink,
            std::sync::Arc::clone(&counters),
            stop_rx.clone(),
        ));
        (ring, shared, counters, task)
    });
    let snapshots = || {
        sources
            .each_ref()
            .map(|(_, _, counters, _)| counters.snapshot())
    };
    let thread = format!("capture-{BACK_TUN}");
    wait_for("both captures running", Duration::from_secs(10), || {
        threads_named(&thread) == 2
    });

    exchange(&[100, 200, 300]);
    wait_for(
        "6 frames through both readers",
        Duration::from_secs(10),
        || snapshots().iter().all(|counters| counters.frames >= 6),
    );

    // charon stops: its TUN goes with it.
    drop(peer);
    wait_for(
        "the loss counted by both sources",
        Duration::from_secs(10),
        || {
            snapshots()
                .iter()
                .all(|counters| counters.interface_lost == 1)
        },
    );
    assert_eq!(threads_named(&thread), 0, "the lost captures are closed");

    // charon starts again: a new TUN of the same name.
    let peer = hold_tun();
    let second_index =
        std::fs::read_to_string(format!("/sys/class/net/{BACK_TUN}/ifindex")).unwrap();
    assert_ne!(first_index, second_index, "a new interface, a new index");
    wait_for(
        "both sources capturing again",
        Duration::from_secs(10),
        || snapshots().iter().all(|counters| counters.reopens == 1),
    );
    exchange(&[400, 500, 600]);
    wait_for(
        "12 frames through both readers",
        Duration::from_secs(10),
        || snapshots().iter().all(|counters| counters.frames >= 12),
    );
    std::thread::sleep(Duration::from_millis(300));

    stop_tx.send(true).unwrap();
    for (ring, shared, counters, task) in sources {
        let result = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await })
            .unwrap()
            .unwrap();
        assert!(result.is_ok(), "{ring}: {result:?}");
        let counters = counters.snapshot();
        eprintln!("{ring}: {counters:?}");
        assert_eq!(
            (counters.interface_lost, counters.reopens),
            (1, 1),
            "{ring}: {counters:?}"
        );
        assert_eq!(counters.kernel_drops, 0, "{ring}: {counters:?}");
        assert_eq!(counters.channel_drops, 0, "{ring}: {counters:?}");
        let events = runtime
            .block_on(shared.with(|spool| spool.peek(10_000, usize::MAX)))
            .unwrap()
            .map(|peeked| peeked.events)
            .unwrap_or_default();
        let flows: Vec<&model::Flow> = events
            .iter()
            .filter_map(|event| match &event.body {
                model::EventBody::Flow(flow) => Some(flow),
                _ => None,
            })
            .filter(|flow| flow.transport == "udp" && flow.destination.port == Some(9999))
            .collect();
        assert_eq!(
            flows.len(),
            1,
            "{ring}: one flow across the reopening: {flows:?}"
        );
        let flow = flows[0];
        assert_eq!(flow.source.port, Some(40000), "{ring}");
        assert_eq!(
            (flow.source_packets, flow.destination_packets),
            (6, 6),
            "{ring}: {flow:?}"
        );
        let bytes = 100 + 200 + 300 + 400 + 500 + 600 + 6 * 28;
        assert_eq!(
            (flow.source_bytes, flow.destination_bytes),
            (bytes, bytes),
            "{ring}: {flow:?}"
        );
    }
    drop(peer);
}

const BIG_TEST: &str = "frames_beyond_64_kib_on_a_veth_are_counted_whole_or_counted_as_cut";
/// IPv6 BIG TCP: the sender's veth may hand on TCP super-frames of up to this many bytes.
const GSO_MAX: &str = "196608";
const BIG_PAYLOAD: usize = 24_000_000;

/// A veth pair between two namespaces; the sender's side sends IPv6 BIG TCP frames of about
/// 192 KiB (the IPv6 header's length field is 0: only the frame's length tells). Three
/// captures watch the same connection on the receiving side: the ring as the gateway runs it
/// (frames whole), a ring whose 64 KiB blocks are too small for the frames (cut, counted, and
/// still counted whole from their wire length), and pnet (256 KiB reads). All three give the
/// same flow, with every byte.
#[test]
fn frames_beyond_64_kib_on_a_veth_are_counted_whole_or_counted_as_cut() {
    match role().as_deref() {
        Some(role) if role.starts_with("send:") => return send_big(&role["send:".len()..]),
        Some(role) if role.starts_with("receive:") => {
            return receive_big(&role["receive:".len()..]);
        }
        _ => {}
    }
    let sender = Namespace::new("big-s");
    let receiver = Namespace::new("big-r");
    ip(&[
        "-n",
        &sender.0,
        "link",
        "add",
        "tw-big-s",
        "type",
        "veth",
        "peer",
        "name",
        "tw-big-r",
        "netns",
        &receiver.0,
    ]);
    ip(&[
        "-n",
        &sender.0,
        "link",
        "set",
        "tw-big-s",
        "gso_max_size",
        GSO_MAX,
    ]);
    ip(&[
        "-n",
        &receiver.0,
        "link",
        "set",
        "tw-big-r",
        "gro_max_size",
        GSO_MAX,
    ]);
    for (ns, dev, address) in [
        (&sender, "tw-big-s", "fd00:7a::1/64"),
        (&receiver, "tw-big-r", "fd00:7a::2/64"),
    ] {
        ip(&["-n", &ns.0, "addr", "add", address, "dev", dev, "nodad"]);
        ip(&["-n", &ns.0, "link", "set", dev, "up"]);
    }
    let status = receiver
        .rerun(BIG_TEST, &format!("receive:{}", sender.0))
        .status()
        .unwrap();
    assert!(status.success(), "the receiving side failed");
}

fn send_big(to: &str) {
    let mut stream = TcpStream::connect(to).unwrap();
    stream.write_all(&vec![7u8; BIG_PAYLOAD]).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
}

fn receive_big(sender_ns: &str) {
    let whole = capture(CaptureOptions::new("tw-big-r"));
    let cut = capture(CaptureOptions {
        ring_block_bytes: 64 * 1024,
        ring_blocks: 1024,
        ..CaptureOptions::new("tw-big-r")
    });
    let pnet = capture(CaptureOptions {
        ring: CaptureRing::Pnet,
        ..CaptureOptions::new("tw-big-r")
    });
    std::thread::sleep(Duration::from_millis(200));

    let listener = TcpListener::bind("[fd00:7a::2]:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let retransmitted_before = tcp_retransmissions_in(sender_ns);
    let mut sender = rerun_in(sender_ns, BIG_TEST, &format!("send:[fd00:7a::2]:{port}"))
        .spawn()
        .unwrap();
    let (mut stream, peer) = listener.accept().unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).unwrap();
    drop(stream);
    assert!(sender.wait().unwrap().success(), "the sender failed");
    assert_eq!(received.len(), BIG_PAYLOAD);
    // A loaded machine drops segments here too; what the sender sent again is on the wire
    // again. Retransmissions are counted in MSS-sized segments, each at most one 1500-byte
    // frame of the veth's MTU, even when a retransmitted super-frame carried many.
    let retransmitted = tcp_retransmissions_in(sender_ns) - retransmitted_before;
    let resent = 1_500 * retransmitted;
    eprintln!("the sender retransmitted {retransmitted} segments");
    std::thread::sleep(Duration::from_millis(400));

    let mut seen = Vec::new();
    for (name, (capture, packets)) in [("whole", whole), ("cut", cut), ("pnet", pnet)] {
        let (records, counters) = flows_of(capture, packets);
        eprintln!("{name}: {counters:?}");
        assert_eq!(counters.kernel_drops, 0, "{name}: {counters:?}");
        assert_eq!(counters.channel_drops, 0, "{name}: {counters:?}");
        assert_eq!(counters.unreadable, 0, "{name}: {counters:?}");
        let tcp: Vec<&FlowRecord> = records
            .iter()
            .filter(|r| r.protocol == 6 && r.source.1 == peer.port())
            .collect();
        assert_eq!(tcp.len(), 1, "{name}: {records:?}");
        let flow = tcp[0].clone();
        assert_eq!(flow.destination.1, port);
        // Every data segment carries at least 72 bytes of headers (IPv6, TCP with
        // timestamps) and at most 100 (TCP options such as SACK blocks, under load): a cut
        // frame would come out far short of the payload.
        let packets = flow.source_packets;
        assert!(
            (BIG_PAYLOAD as u64 + 72 * packets..=BIG_PAYLOAD as u64 + 100 * packets + resent)
                .contains(&flow.source_bytes),
            "{name} ({retransmitted} segments retransmitted): {flow:?}"
        );
        assert!(
            flow.source_bytes / packets > 65_536,
            "{name}: frames of BIG TCP beyond 64 KiB on average: {flow:?}"
        );
        match name {
            "cut" => assert!(counters.cut > 0, "{counters:?}"),
            _ => assert_eq!(counters.cut, 0, "{name}: {counters:?}"),
        }
        seen.push((name, flow));
    }
    let (_, first) = &seen[0];
    for (name, flow) in &seen[1..] {
        assert_eq!(
            (
                flow.source_packets,
                flow.source_bytes,
                flow.destination_packets,
                flow.destination_bytes
            ),
            (
                first.source_packets,
                first.source_bytes,
                first.destination_packets,
                first.destination_bytes
            ),
            "{name} and whole disagree"
        );
    }
}
