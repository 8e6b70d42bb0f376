//! Live capture against the real kernel: AF_PACKET through pnet on loopback (Ethernet
//! framing, 64 KiB frames: far beyond pnet's default 4096-byte buffer) and on a TUN device
//! (bare IP frames, like kernel-libipsec's `ipsec0`), inside a network namespace this test
//! creates. The flows must carry exactly the packets and bytes that were sent.
//!
//! Needs root (network namespaces, AF_PACKET). The test re-runs itself inside the namespace.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use gateway::flow::capture::{Capture, CaptureOptions};
use gateway::flow::decode::LinkType;
use gateway::flow::{FlowConfig, FlowRecord, FlowTable};

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

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn live_capture_counts_loopback_and_tun_traffic_exactly() {
    if std::env::var_os(INNER).is_some() {
        inside_the_namespace();
        return;
    }
    let ns = Namespace(format!("tw-cap-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    ip(&["-n", &ns.0, "tuntap", "add", "dev", TUN, "mode", "tun"]);
    ip(&["-n", &ns.0, "addr", "add", "10.78.0.1/24", "dev", TUN]);
    ip(&["-n", &ns.0, "link", "set", TUN, "up"]);
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "live_capture_counts_loopback_and_tun_traffic_exactly",
            "--nocapture",
        ])
        .env(INNER, "1")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "the capture test inside the namespace failed"
    );
}

fn capture(
    interface: &str,
) -> (
    Capture,
    tokio::sync::mpsc::Receiver<Vec<(i64, gateway::flow::decode::Packet)>>,
) {
    Capture::start(&CaptureOptions {
        interface: interface.to_owned(),
        link: None,
        read_buffer_bytes: 256 * 1024,
        queue_batches: 1024,
        socket_buffer_bytes: 32 * 1024 * 1024,
    })
    .unwrap_or_else(|error| panic!("{error}"))
}

fn flows_of(
    capture: Capture,
    mut packets: tokio::sync::mpsc::Receiver<Vec<(i64, gateway::flow::decode::Packet)>>,
) -> (Vec<FlowRecord>, gateway::flow::capture::CaptureSnapshot) {
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

fn inside_the_namespace() {
    let (lo, lo_packets) = capture("lo");
    assert_eq!(lo.link, LinkType::Ethernet);
    let (tun, tun_packets) = capture(TUN);
    assert_eq!(
        tun.link,
        LinkType::RawIp,
        "a TUN device has no MAC: bare IP frames"
    );
    std::thread::sleep(Duration::from_millis(200));

    // One TCP connection on loopback: 4 MB down, 1000 bytes up, closed by both sides.
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
    eprintln!("lo: {counters:?}");
    assert_eq!(counters.kernel_drops, 0, "{counters:?}");
    assert_eq!(counters.channel_drops, 0, "{counters:?}");
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
    assert!(
        (4_000_000..4_040_000).contains(&flow.destination_bytes),
        "bytes from the server: {}",
        flow.destination_bytes
    );
    // Up: 1000 bytes of payload, and 40 bytes of headers plus up to 20 of TCP options per
    // packet (SYN, ACKs with timestamps).
    assert!(
        (1_000 + 40 * flow.source_packets..=1_000 + 60 * flow.source_packets)
            .contains(&flow.source_bytes),
        "{flow:?}"
    );
    assert!(
        flow.destination_packets < 1_000,
        "large frames, not 4 KiB pieces: {flow:?}"
    );

    let (records, counters) = flows_of(tun, tun_packets);
    eprintln!("{TUN}: {counters:?}");
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
        CaptureOptions {
            interface: "tw-nope0".to_owned(),
            link: None,
            read_buffer_bytes: 65_536,
            queue_batches: 16,
            socket_buffer_bytes: 1 << 20,
        },
        FlowConfig::default(),
        model::Observer::default(),
        sink,
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
