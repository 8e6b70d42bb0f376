use std::io::Cursor;
use std::net::IpAddr;

use proptest::prelude::*;

use super::decode::{DecodeError, Fragment, LinkType, decode};
use super::pcap::{PcapError, PcapReader};
use super::*;

const SEC: i64 = 1_000_000_000;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

// ---- frame builders (RFC 791 / 8200 / 793 layouts) ----

fn ipv4(src: [u8; 4], dst: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut header = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        0x12,
        0x34,
        0x40,
        0,
        64,
        protocol,
        0,
        0,
    ];
    header.extend_from_slice(&src);
    header.extend_from_slice(&dst);
    header.extend_from_slice(payload);
    header
}

fn ipv6(src: &str, dst: &str, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut header = vec![0x60, 0, 0, 0];
    header.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    header.extend_from_slice(&[next, 64]);
    let (IpAddr::V6(src), IpAddr::V6(dst)) = (ip(src), ip(dst)) else {
        panic!("v6 addresses");
    };
    header.extend_from_slice(&src.octets());
    header.extend_from_slice(&dst.octets());
    header.extend_from_slice(payload);
    header
}

fn tcp(src_port: u16, dst_port: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut segment = Vec::new();
    segment.extend_from_slice(&src_port.to_be_bytes());
    segment.extend_from_slice(&dst_port.to_be_bytes());
    segment.extend_from_slice(&[0; 8]);
    segment.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    segment.extend_from_slice(body);
    segment
}

fn udp(src_port: u16, dst_port: u16, body: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::new();
    datagram.extend_from_slice(&src_port.to_be_bytes());
    datagram.extend_from_slice(&dst_port.to_be_bytes());
    datagram.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(body);
    datagram
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

fn client_syn() -> Vec<u8> {
    ipv4(
        [10, 10, 0, 5],
        [172, 16, 0, 10],
        6,
        &tcp(40000, 443, 0x02, b""),
    )
}

// ---- decoding ----

#[test]
fn every_link_type_yields_the_same_packet() {
    let datagram = client_syn();
    let mut vlan = vec![
        2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x81, 0x00, 0x00, 0x07, 0x08, 0x00,
    ];
    vlan.extend_from_slice(&datagram);
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&datagram);
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 3, 0xff, 0xfe, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    sll2.extend_from_slice(&datagram);
    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&datagram);
    let frames = [
        (LinkType::RawIp, datagram.clone()),
        (LinkType::Ethernet, ethernet(0x0800, &datagram)),
        (LinkType::Ethernet, vlan),
        (LinkType::LinuxSll, sll),
        (LinkType::LinuxSll2, sll2),
        (LinkType::Null, null),
    ];
    for (link, frame) in frames {
        let packet = decode(link, &frame, frame.len()).unwrap_or_else(|e| panic!("{link}: {e}"));
        assert_eq!(packet.src, ip("10.10.0.5"), "{link}");
        assert_eq!(packet.dst, ip("172.16.0.10"));
        assert_eq!((packet.src_port, packet.dst_port), (40000, 443));
        assert_eq!(packet.protocol, 6);
        assert_eq!(packet.tcp_flags, 0x02);
        assert_eq!(packet.ip_len, 40);
        assert_eq!(packet.fragment, Fragment::Whole);
    }
}

#[test]
fn ipv6_extension_headers_are_walked_to_the_transport() {
    // Hop-by-hop (8 bytes) → destination options (16 bytes) → UDP.
    let mut chain = vec![60, 0, 1, 4, 0, 0, 0, 0];
    chain.extend_from_slice(&[17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    chain.extend_from_slice(&udp(5353, 53, b"query"));
    let datagram = ipv6("fd00::5", "fd00::53", 0, &chain);
    let packet = decode(LinkType::RawIp, &datagram, datagram.len()).expect("decodes");
    assert_eq!(packet.protocol, 17);
    assert_eq!((packet.src_port, packet.dst_port), (5353, 53));
    assert_eq!(packet.ip_len as usize, datagram.len());

    // A first fragment carries the ports; a later one does not.
    let mut first = vec![6, 0, 0, 1, 0, 0, 0, 42];
    first.extend_from_slice(&tcp(50000, 8443, 0x18, b"x"));
    let packet =
        decode(LinkType::RawIp, &ipv6("fd00::5", "fd00::1", 44, &first), 0).expect("first");
    assert_eq!(packet.fragment, Fragment::First { id: 42 });
    assert_eq!(packet.dst_port, 8443);
    let later = [6, 0, 0x05, 0x00, 0, 0, 0, 42, 1, 2, 3, 4];
    let packet =
        decode(LinkType::RawIp, &ipv6("fd00::5", "fd00::1", 44, &later), 0).expect("later");
    assert_eq!(packet.fragment, Fragment::Later { id: 42 });
    assert_eq!(packet.dst_port, 0);
}

#[test]
fn lengths_come_from_the_ip_header_not_the_capture() {
    // A GRO super-frame of 60,000 bytes of which a 4096-byte buffer held the start.
    let mut datagram = ipv4(
        [10, 10, 0, 5],
        [172, 16, 0, 10],
        6,
        &tcp(40000, 443, 0x10, &[0; 4000]),
    );
    datagram[2..4].copy_from_slice(&60_000u16.to_be_bytes());
    let frame = ethernet(0x0800, &datagram);
    let packet =
        decode(LinkType::Ethernet, &frame[..4096.min(frame.len())], 60_014).expect("decodes");
    assert_eq!(packet.ip_len, 60_000);
    // TSO: a length field of 0 means "as long as the frame".
    datagram[2..4].copy_from_slice(&[0, 0]);
    let packet = decode(LinkType::RawIp, &datagram, 64_000).expect("decodes");
    assert_eq!(packet.ip_len, 64_000);
    // Ethernet padding after a short datagram is not counted.
    let mut padded = ethernet(0x0800, &client_syn());
    padded.extend_from_slice(&[0; 6]);
    assert_eq!(
        decode(LinkType::Ethernet, &padded, padded.len())
            .expect("decodes")
            .ip_len,
        40
    );
}

#[test]
fn bad_frames_are_classified() {
    let arp = ethernet(0x0806, &[0; 28]);
    assert_eq!(
        decode(LinkType::Ethernet, &arp, 42),
        Err(DecodeError::NotIp)
    );
    assert_eq!(
        decode(LinkType::Ethernet, &arp[..10], 10),
        Err(DecodeError::Truncated)
    );
    let syn = client_syn();
    assert_eq!(
        decode(LinkType::RawIp, &syn[..19], 19),
        Err(DecodeError::Truncated)
    );
    let mut bad_ihl = syn.clone();
    bad_ihl[0] = 0x43;
    assert_eq!(
        decode(LinkType::RawIp, &bad_ihl, 40),
        Err(DecodeError::Malformed)
    );
    let mut bad_len = syn.clone();
    bad_len[2..4].copy_from_slice(&10u16.to_be_bytes());
    assert_eq!(
        decode(LinkType::RawIp, &bad_len, 40),
        Err(DecodeError::Malformed)
    );
    // IPv4 ethertype, IPv6 inside.
    let lying = ethernet(0x0800, &ipv6("fd00::1", "fd00::2", 59, b""));
    assert_eq!(
        decode(LinkType::Ethernet, &lying, lying.len()),
        Err(DecodeError::Malformed)
    );
    assert_eq!(
        decode(LinkType::RawIp, &[0x00, 1, 2], 3),
        Err(DecodeError::Malformed)
    );
    assert_eq!(decode(LinkType::RawIp, &[], 0), Err(DecodeError::Truncated));
    // A transport header cut short still counts the datagram, without ports.
    let cut = &syn[..22];
    let packet = decode(LinkType::RawIp, cut, 40).expect("ip header is whole");
    assert_eq!((packet.src_port, packet.ip_len), (0, 40));
}

proptest! {
    #[test]
    fn decoding_arbitrary_frames_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        wire_len in 0usize..100_000,
    ) {
        for link in [LinkType::Ethernet, LinkType::RawIp, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Null] {
            if let Ok(packet) = decode(link, &bytes, wire_len) {
                prop_assert!(packet.ip_len >= 20);
            }
        }
    }

    #[test]
    fn every_prefix_of_a_frame_decodes_or_is_classified(cut in 0usize..80) {
        let frame = ethernet(0x86dd, &ipv6("fd00::5", "fd00::10", 6, &tcp(1, 2, 2, b"abc")));
        let cut = cut.min(frame.len());
        let _ = decode(LinkType::Ethernet, &frame[..cut], frame.len());
    }
}

// ---- the flow table ----

fn packet(src: &str, sport: u16, dst: &str, dport: u16, flags: u8, len: u32) -> decode::Packet {
    decode::Packet {
        src: ip(src),
        dst: ip(dst),
        protocol: 6,
        src_port: sport,
        dst_port: dport,
        ip_len: len,
        tcp_flags: flags,
        fragment: Fragment::Whole,
    }
}

fn run(config: FlowConfig, packets: &[(i64, decode::Packet)]) -> (Vec<FlowRecord>, FlowStats) {
    let mut table = FlowTable::new(config);
    let mut out = Vec::new();
    for (at, packet) in packets {
        table.observe(packet, *at, &mut out);
    }
    table.drain(&mut out);
    (out, table.stats().clone())
}

#[test]
fn a_tcp_connection_is_one_flow_oriented_from_its_syn() {
    let c = "10.10.0.5";
    let s = "172.16.0.10";
    let packets = [
        (0, packet(c, 40000, s, 443, 0x02, 60)),
        (SEC / 100, packet(s, 443, c, 40000, 0x12, 60)),
        (2 * SEC / 100, packet(c, 40000, s, 443, 0x10, 52)),
        (3 * SEC / 100, packet(c, 40000, s, 443, 0x18, 300)),
        (4 * SEC / 100, packet(s, 443, c, 40000, 0x18, 1500)),
        (5 * SEC / 100, packet(c, 40000, s, 443, 0x11, 52)),
        (6 * SEC / 100, packet(s, 443, c, 40000, 0x11, 52)),
        // The closing ACK, then time passes: exported as tcp_end, not idle.
        (7 * SEC / 100, packet(c, 40000, s, 443, 0x10, 52)),
        (5 * SEC, packet("10.10.0.6", 1, s, 2, 0x10, 40)),
    ];
    let (records, stats) = run(FlowConfig::default(), &packets);
    let flow = &records[0];
    assert_eq!(flow.source, (ip(c), 40000));
    assert_eq!(flow.destination, (ip(s), 443));
    assert_eq!((flow.source_packets, flow.destination_packets), (5, 3));
    assert_eq!((flow.source_bytes, flow.destination_bytes), (516, 1612));
    assert_eq!(flow.tcp_flags, 0x1b);
    assert_eq!(flow.end, FlowEnd::TcpEnd);
    assert_eq!(flow.end_ns - flow.start_ns, 7 * SEC / 100);
    assert_eq!(stats.packets, 9);
    assert_eq!(stats.flows_exported, 2);
}

#[test]
fn a_flow_seen_mid_stream_is_oriented_by_its_ports() {
    let (records, _) = run(
        FlowConfig::default(),
        &[(
            0,
            packet("172.16.0.10", 443, "10.10.0.5", 40000, 0x10, 1500),
        )],
    );
    assert_eq!(records[0].source, (ip("10.10.0.5"), 40000));
    assert_eq!(records[0].destination_bytes, 1500);
}

#[test]
fn timeouts_export_idle_long_lived_and_reused_flows() {
    let c = "10.10.0.5";
    let s = "172.16.0.10";
    let config = FlowConfig {
        idle_timeout_secs: 10,
        active_timeout_secs: 30,
        ..FlowConfig::default()
    };
    // A packet every 5 s for 100 s: partial records every 30 s, counters add up.
    let mut packets: Vec<(i64, decode::Packet)> = (0..=20)
        .map(|i| (i * 5 * SEC, packet(c, 50000, s, 8443, 0x10, 100)))
        .collect();
    // Then silence, and the same 5-tuple reused by a new connection after a RST.
    packets.push((101 * SEC, packet(c, 50001, s, 8443, 0x04, 40)));
    packets.push((101 * SEC + 1, packet(c, 50001, s, 8443, 0x02, 60)));
    packets.push((200 * SEC, packet(c, 1, s, 1, 0x10, 40)));
    let (records, stats) = run(config, &packets);
    let long: Vec<&FlowRecord> = records.iter().filter(|r| r.source.1 == 50000).collect();
    assert_eq!(
        long.iter().map(|r| r.end).collect::<Vec<_>>(),
        [
            FlowEnd::Active,
            FlowEnd::Active,
            FlowEnd::Active,
            FlowEnd::Idle
        ]
    );
    assert_eq!(long.iter().map(|r| r.source_packets).sum::<u64>(), 21);
    let reused: Vec<&FlowRecord> = records.iter().filter(|r| r.source.1 == 50001).collect();
    assert_eq!(reused.len(), 2, "{reused:?}");
    assert_eq!(reused[0].end, FlowEnd::TcpEnd);
    assert_eq!(reused[1].source_bytes, 60);
    let bytes: u64 = records
        .iter()
        .map(|r| r.source_bytes + r.destination_bytes)
        .sum();
    assert_eq!(bytes, stats.bytes);
}

#[test]
fn a_full_table_exports_early_and_counts_it() {
    let config = FlowConfig {
        max_flows: 16,
        ..FlowConfig::default()
    };
    let packets: Vec<(i64, decode::Packet)> = (0..100)
        .map(|i| {
            (
                i,
                packet("10.10.0.5", 10_000 + i as u16, "172.16.0.10", 443, 0x02, 60),
            )
        })
        .collect();
    let (records, stats) = run(config, &packets);
    assert_eq!(records.len(), 100);
    assert!(stats.flows_evicted > 0);
    assert_eq!(
        records.iter().filter(|r| r.end == FlowEnd::Evicted).count() as u64,
        stats.flows_evicted
    );
}

#[test]
fn fragments_count_in_their_flow_and_strays_are_counted() {
    let mut first = packet("10.10.0.5", 40000, "172.16.0.10", 53, 0, 1500);
    first.protocol = 17;
    first.fragment = Fragment::First { id: 7 };
    let mut later = first;
    later.src_port = 0;
    later.dst_port = 0;
    later.fragment = Fragment::Later { id: 7 };
    later.ip_len = 700;
    let mut stray = later;
    stray.fragment = Fragment::Later { id: 8 };
    let (records, stats) = run(FlowConfig::default(), &[(0, first), (1, later), (2, stray)]);
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].source_bytes, 2200);
    assert_eq!(stats.fragments_unmatched, 1);
}

#[test]
fn the_pool_and_api_filters_keep_vpn_to_api_traffic_only() {
    let config = FlowConfig {
        vpn_pool: vec!["10.10.0.0/24".parse().expect("net")],
        api_subnets: vec!["172.16.0.0/24".parse().expect("net")],
        ..FlowConfig::default()
    };
    let (records, stats) = run(
        config,
        &[
            (0, packet("10.10.0.5", 1000, "172.16.0.10", 443, 2, 60)),
            (1, packet("10.10.0.5", 1001, "8.8.8.8", 443, 2, 60)),
            (2, packet("192.168.1.1", 1002, "172.16.0.10", 443, 2, 60)),
        ],
    );
    assert_eq!(records.len(), 1);
    assert_eq!(stats.filtered, 2);
}

#[test]
fn icmp_echo_and_reply_are_one_flow() {
    let mut request = packet("10.10.0.5", 0, "172.16.0.10", 8 << 8, 0, 84);
    request.protocol = 1;
    let mut reply = packet("172.16.0.10", 0, "10.10.0.5", 0, 0, 84);
    reply.protocol = 1;
    let (records, _) = run(
        FlowConfig::default(),
        &[(0, reply), (1, request), (2, reply)],
    );
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].source.0, ip("10.10.0.5"));
    assert_eq!(
        (records[0].source_packets, records[0].destination_packets),
        (1, 2)
    );
}

fn arbitrary_packet() -> impl Strategy<Value = (i64, decode::Packet)> {
    (0i64..300, 0u8..4, 0u8..4, 0u16..3, any::<u8>(), 20u32..2000).prop_map(
        |(t, a, b, port, flags, len)| {
            let mut p = packet(
                &format!("10.10.0.{a}"),
                1000 + port,
                &format!("172.16.0.{b}"),
                443,
                flags,
                len,
            );
            if a % 2 == 1 {
                std::mem::swap(&mut p.src, &mut p.dst);
                std::mem::swap(&mut p.src_port, &mut p.dst_port);
            }
            (t * SEC / 3, p)
        },
    )
}

proptest! {
    /// No packet is lost or counted twice, whatever the timeouts, table size and order.
    #[test]
    fn every_packet_and_byte_is_in_exactly_one_record(
        mut packets in proptest::collection::vec(arbitrary_packet(), 1..200),
        max_flows in 1usize..8,
        idle in 1u64..20,
        active_extra in 0u64..40,
    ) {
        packets.sort_by_key(|(t, _)| *t);
        let config = FlowConfig { max_flows, idle_timeout_secs: idle, active_timeout_secs: idle + active_extra, ..FlowConfig::default() };
        let (records, stats) = run(config, &packets);
        let n: u64 = records.iter().map(|r| r.source_packets + r.destination_packets).sum();
        let bytes: u64 = records.iter().map(|r| r.source_bytes + r.destination_bytes).sum();
        prop_assert_eq!(n, packets.len() as u64);
        prop_assert_eq!(bytes, packets.iter().map(|(_, p)| u64::from(p.ip_len)).sum::<u64>());
        prop_assert_eq!(stats.flows_exported, records.len() as u64);
        for record in &records {
            prop_assert!(record.end_ns >= record.start_ns);
        }
    }
}

// ---- capture files ----

const ETH_PCAP: &[u8] = include_bytes!("../../testdata/pcap/eth.pcap");
const ANY_PCAP: &[u8] = include_bytes!("../../testdata/pcap/any-nano.pcap");

fn flows_of(file: &[u8]) -> (Vec<FlowRecord>, FlowStats) {
    let mut reader = PcapReader::new(Cursor::new(file)).expect("header");
    let mut table = FlowTable::new(FlowConfig::default());
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame().expect("frame") {
        table.observe_frame(
            frame.link,
            frame.data,
            frame.wire_len,
            frame.timestamp_ns,
            &mut out,
        );
    }
    table.drain(&mut out);
    (out, table.stats().clone())
}

/// The flows as a comparable summary: endpoints and counters (times differ by precision).
fn summary(records: &[FlowRecord]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {}:{} -> {}:{} {}/{} pkts {}/{} bytes {}",
                transport_name(r.protocol),
                r.source.0,
                r.source.1,
                r.destination.0,
                r.destination.1,
                r.source_packets,
                r.destination_packets,
                r.source_bytes,
                r.destination_bytes,
                r.end.as_str()
            )
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn real_captures_on_two_link_types_give_the_same_flows() {
    let (eth, eth_stats) = flows_of(ETH_PCAP);
    let (any, any_stats) = flows_of(ANY_PCAP);
    assert_eq!(summary(&eth), summary(&any));
    let lines = summary(&eth).join("\n");
    // Three HTTP connections over IPv4 and one over IPv6, from the client to port 8080.
    let http = |line: &&str| line.starts_with("tcp ") && line.contains(":8080 ");
    assert_eq!(lines.lines().filter(http).count(), 4, "{lines}");
    assert!(
        lines
            .lines()
            .filter(http)
            .all(|line| line.contains("10.99.0.5:") || line.contains("fd99::5:")),
        "{lines}"
    );
    // Each closed with FIN both ways before the capture ended.
    assert!(
        lines
            .lines()
            .filter(http)
            .all(|line| line.ends_with("tcp_end")),
        "{lines}"
    );
    // The 200 kB download came back to the client.
    let download = eth.iter().map(|r| r.destination_bytes).max().unwrap_or(0);
    assert!(download > 200_000, "{lines}");
    assert!(
        lines.contains("udp 10.99.0.5:40001 -> 10.99.0.10:5353 1/1 pkts"),
        "{lines}"
    );
    assert!(lines.contains("icmp 10.99.0.5:"), "{lines}");
    // The fragmented ping (4000 bytes of payload) is one flow with all of its bytes.
    assert_eq!(eth_stats.fragments_unmatched, 0);
    assert!(
        eth.iter()
            .any(|r| r.protocol == 1 && r.source_bytes >= 4028),
        "{lines}"
    );
    assert_eq!(eth_stats.packets, any_stats.packets);
    assert_eq!(eth_stats.bytes, any_stats.bytes);
    assert_eq!(
        eth_stats.frames,
        eth_stats.packets
            + eth_stats.n_decode_errors()
            + eth_stats.unsupported_link
            + eth_stats.filtered
    );
}

/// Writes the frames of a pcap file as pcapng (section, interface with nanosecond
/// resolution, enhanced packet blocks), in the given byte order, per the pcapng draft.
fn to_pcapng(pcap: &[u8], big_endian: bool) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let total = 12 + body.len().div_ceil(4) * 4;
        out.extend_from_slice(&u32b(kind));
        out.extend_from_slice(&u32b(total as u32));
        out.extend_from_slice(body);
        out.resize(out.len() + (total - 12 - body.len()), 0);
        out.extend_from_slice(&u32b(total as u32));
    };
    let mut out = Vec::new();
    let mut shb = u32b(0x1a2b_3c4d).to_vec();
    shb.extend_from_slice(&u16b(1));
    shb.extend_from_slice(&u16b(0));
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = u16b(1).to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&u32b(262_144));
    idb.extend_from_slice(&u16b(9));
    idb.extend_from_slice(&u16b(1));
    idb.extend_from_slice(&[9, 0, 0, 0]);
    idb.extend_from_slice(&[0, 0, 0, 0]);
    block(&mut out, 1, &idb);
    // A statistics block the reader skips.
    block(&mut out, 5, &[0; 12]);
    let mut reader = PcapReader::new(Cursor::new(pcap)).expect("header");
    // A cut input gives the frames before the cut.
    while let Ok(Some(frame)) = reader.next_frame() {
        let ns = frame.timestamp_ns as u64;
        let mut epb = u32b(0).to_vec();
        epb.extend_from_slice(&u32b((ns >> 32) as u32));
        epb.extend_from_slice(&u32b(ns as u32));
        epb.extend_from_slice(&u32b(frame.data.len() as u32));
        epb.extend_from_slice(&u32b(frame.wire_len as u32));
        epb.extend_from_slice(frame.data);
        block(&mut out, 6, &epb);
    }
    out
}

#[test]
fn pcapng_in_either_byte_order_gives_the_same_flows() {
    let (eth, _) = flows_of(ETH_PCAP);
    for big_endian in [false, true] {
        let ng = to_pcapng(ETH_PCAP, big_endian);
        let (from_ng, _) = flows_of(&ng);
        assert_eq!(summary(&from_ng), summary(&eth), "big endian: {big_endian}");
        assert_eq!(
            from_ng.iter().map(|r| r.start_ns).collect::<Vec<_>>(),
            eth.iter().map(|r| r.start_ns).collect::<Vec<_>>()
        );
    }
}

#[test]
fn bad_capture_files_give_clear_errors() {
    let error =
        PcapReader::new(Cursor::new(b"GET / HTTP/1.1\r\n".as_slice())).expect_err("not pcap");
    assert!(
        error.to_string().contains("not a pcap or pcapng file"),
        "{error}"
    );
    assert!(matches!(
        PcapReader::new(Cursor::new(&ETH_PCAP[..10])),
        Err(PcapError::Truncated { .. })
    ));
    let mut unsupported = ETH_PCAP[..24].to_vec();
    unsupported[20..24].copy_from_slice(&147u32.to_le_bytes());
    let error = PcapReader::new(Cursor::new(unsupported)).expect_err("link type 147");
    assert!(error.to_string().contains("link type 147"), "{error}");
    // A record claiming 3 GB.
    let mut huge = ETH_PCAP[..24].to_vec();
    huge.extend_from_slice(&[0; 8]);
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    let mut reader = PcapReader::new(Cursor::new(huge)).expect("header");
    let error = reader.next_frame().expect_err("corrupt");
    assert!(
        error.to_string().contains("corrupt capture at byte 24"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// A file cut anywhere yields its complete frames, then `Truncated`: never a panic, never
    /// a frame made of garbage.
    #[test]
    fn a_cut_capture_yields_its_whole_frames_then_an_error(cut in 24usize..20_000, ng in any::<bool>()) {
        let file = if ng { to_pcapng(&ETH_PCAP[..20_000], false) } else { ETH_PCAP.to_vec() };
        let cut = cut.min(file.len());
        let Ok(mut reader) = PcapReader::new(Cursor::new(&file[..cut])) else { return Ok(()) };
        let mut frames = 0;
        loop {
            match reader.next_frame() {
                Ok(Some(_)) => frames += 1,
                Ok(None) => break,
                Err(PcapError::Truncated { offset }) => { prop_assert!(offset as usize <= cut); break }
                Err(other) => prop_assert!(false, "unexpected {other}"),
            }
        }
        prop_assert!(frames < 10_000);
    }

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2000), ng in any::<bool>()) {
        let mut file = if ng { to_pcapng(&ETH_PCAP[..24], false) } else { ETH_PCAP[..24].to_vec() };
        file.extend_from_slice(&body);
        if let Ok(mut reader) = PcapReader::new(Cursor::new(file)) {
            for _ in 0..1000 {
                match reader.next_frame() {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
