//! Frames to [`Packet`]s: link layer, IPv4/IPv6 (with extension headers and fragments) and
//! the ports and flags of TCP, UDP, SCTP and ICMP.
//!
//! Hand-written and bounds-checked at every step, so that truncated, malformed and hostile
//! frames give a [`DecodeError`] rather than a panic (property test
//! `decoding_arbitrary_frames_never_panics`). Byte counts come from the IP header's length
//! field, not from how much of the frame was captured: a capture cut at its snap length, or a
//! GRO super-frame larger than a capture buffer, still counts the bytes that were sent.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// How frames of a capture begin: the pcap `LINKTYPE_*` values tunnelwatch reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkType {
    /// `LINKTYPE_ETHERNET` (1): a veth, a NIC, a bridge. 802.1Q and 802.1ad tags are skipped.
    Ethernet,
    /// `LINKTYPE_RAW` (101; also 12, 14) and `LINKTYPE_IPV4`/`IPV6` (228/229): bare IP, as a
    /// TUN device such as kernel-libipsec's `ipsec0` delivers it.
    RawIp,
    /// `LINKTYPE_LINUX_SLL` (113): `tcpdump -i any` (older tcpdump).
    LinuxSll,
    /// `LINKTYPE_LINUX_SLL2` (276): `tcpdump -i any` (tcpdump 4.99 and later).
    LinuxSll2,
    /// `LINKTYPE_NULL` (0): BSD loopback, a 4-byte address family in host byte order.
    Null,
}

impl LinkType {
    /// The link type of a pcap `LINKTYPE_*` value, if tunnelwatch reads it.
    pub fn from_pcap(value: u32) -> Option<LinkType> {
        // The upper bits of the pcap header's field carry FCS information.
        match value & 0x0fff_ffff {
            0 => Some(LinkType::Null),
            1 => Some(LinkType::Ethernet),
            12 | 14 | 101 | 228 | 229 => Some(LinkType::RawIp),
            113 => Some(LinkType::LinuxSll),
            276 => Some(LinkType::LinuxSll2),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LinkType::Ethernet => "ethernet",
            LinkType::RawIp => "raw",
            LinkType::LinuxSll => "linux_sll",
            LinkType::LinuxSll2 => "linux_sll2",
            LinkType::Null => "null",
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// IANA protocol numbers tunnelwatch names.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const ESP: u8 = 50;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
}

/// TCP flag bits (the low byte of the flags field).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Where a packet stands among the fragments of its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    Whole,
    /// The first fragment: it carries the transport header (ports), more follow.
    First { id: u32 },
    /// A later fragment: no transport header; its ports are those of the first fragment.
    Later { id: u32 },
}

/// What the flow table needs of one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number of the transport (after IPv6 extension headers).
    pub protocol: u8,
    /// Ports for TCP, UDP and SCTP; for ICMP the source port is 0 and the destination port is
    /// `type << 8 | code`, as NetFlow exporters do. 0 where there are none.
    pub src_port: u16,
    pub dst_port: u16,
    /// Bytes of the IP datagram (header included), from its length field.
    pub ip_len: u32,
    /// TCP flags (low byte), 0 for other protocols.
    pub tcp_flags: u8,
    pub fragment: Fragment,
}

/// Why a frame gave no packet. Each is counted, never silently dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecodeError {
    /// An ARP, LLDP, IPX… frame: not IP.
    NotIp,
    /// The frame ends inside the link or IP header.
    Truncated,
    /// A header is inconsistent (IP version, header length, length fields).
    Malformed,
}

impl DecodeError {
    pub const ALL: [DecodeError; 3] = [
        DecodeError::NotIp,
        DecodeError::Truncated,
        DecodeError::Malformed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecodeError::NotIp => "not_ip",
            DecodeError::Truncated => "truncated",
            DecodeError::Malformed => "malformed",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

/// Decodes one frame. `wire_len` is the frame's length on the wire (a capture may hold less);
/// it is used only when the IP header says nothing about the length (IPv4 total length 0
/// under TSO, IPv6 jumbograms).
pub fn decode(link: LinkType, frame: &[u8], wire_len: usize) -> Result<Packet, DecodeError> {
    let (ip_start, ethertype) = match link {
        LinkType::Ethernet => {
            let mut offset = 12;
            let mut ethertype = be16(frame, offset).ok_or(DecodeError::Truncated)?;
            // At most two tags (802.1ad outer, 802.1Q inner).
            for _ in 0..2 {
                if matches!(
                    ethertype,
                    ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
                ) {
                    offset += 4;
                    ethertype = be16(frame, offset).ok_or(DecodeError::Truncated)?;
                }
            }
            (offset + 2, Some(ethertype))
        }
        LinkType::RawIp => (0, None),
        LinkType::LinuxSll => (16, Some(be16(frame, 14).ok_or(DecodeError::Truncated)?)),
        LinkType::LinuxSll2 => (20, {
            if frame.len() < 20 {
                return Err(DecodeError::Truncated);
            }
            Some(be16(frame, 0).ok_or(DecodeError::Truncated)?)
        }),
        LinkType::Null => {
            let family = frame.get(..4).ok_or(DecodeError::Truncated)?;
            // Host byte order of the capturing machine: accept both.
            let family = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let family = if family > 0xffff {
                family.swap_bytes()
            } else {
                family
            };
            match family {
                // AF_INET; AF_INET6 differs between BSDs (24, 28, 30) and Linux (10).
                2 => (4, Some(ETHERTYPE_IPV4)),
                10 | 24 | 28 | 30 => (4, Some(ETHERTYPE_IPV6)),
                _ => return Err(DecodeError::NotIp),
            }
        }
    };
    let ip = frame.get(ip_start..).ok_or(DecodeError::Truncated)?;
    let ip_wire_len = wire_len.saturating_sub(ip_start);
    let version = ip.first().ok_or(DecodeError::Truncated)? >> 4;
    match (ethertype, version) {
        (Some(ETHERTYPE_IPV4) | None, 4) => decode_ipv4(ip, ip_wire_len),
        (Some(ETHERTYPE_IPV6) | None, 6) => decode_ipv6(ip, ip_wire_len),
        (Some(ETHERTYPE_IPV4 | ETHERTYPE_IPV6), _) => Err(DecodeError::Malformed),
        (None, _) => Err(DecodeError::Malformed),
        (Some(_), _) => Err(DecodeError::NotIp),
    }
}

fn decode_ipv4(ip: &[u8], wire_len: usize) -> Result<Packet, DecodeError> {
    if ip.len() < 20 {
        return Err(DecodeError::Truncated);
    }
    let header_len = usize::from(ip[0] & 0x0f) * 4;
    if header_len < 20 {
        return Err(DecodeError::Malformed);
    }
    if ip.len() < header_len {
        return Err(DecodeError::Truncated);
    }
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let ip_len = if total_len == 0 {
        // TSO/GRO: the kernel hands the capture a frame whose length field is zero.
        wire_len.max(header_len)
    } else if total_len < header_len {
        return Err(DecodeError::Malformed);
    } else {
        total_len
    };
    let id = u32::from(u16::from_be_bytes([ip[4], ip[5]]));
    let flags_offset = u16::from_be_bytes([ip[6], ip[7]]);
    let more_fragments = flags_offset & 0x2000 != 0;
    let offset = flags_offset & 0x1fff;
    let fragment = match (offset, more_fragments) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First { id },
        _ => Fragment::Later { id },
    };
    let protocol = ip[9];
    let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
    let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
    // Only what the datagram holds (the capture may also hold Ethernet padding).
    let end = ip.len().min(ip_len.max(header_len));
    let transport = &ip[header_len..end];
    finish(src, dst, protocol, ip_len, fragment, transport)
}

fn decode_ipv6(ip: &[u8], wire_len: usize) -> Result<Packet, DecodeError> {
    if ip.len() < 40 {
        return Err(DecodeError::Truncated);
    }
    let payload_len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let ip_len = if payload_len == 0 {
        // A jumbogram (or BIG TCP): the length is in a hop-by-hop option; trust the wire.
        wire_len.max(40)
    } else {
        40 + payload_len
    };
    let mut src = [0u8; 16];
    src.copy_from_slice(&ip[8..24]);
    let mut dst = [0u8; 16];
    dst.copy_from_slice(&ip[24..40]);
    let src = IpAddr::V6(Ipv6Addr::from(src));
    let dst = IpAddr::V6(Ipv6Addr::from(dst));
    let end = ip.len().min(ip_len);
    let mut next = ip[6];
    let mut offset = 40;
    let mut fragment = Fragment::Whole;
    // Extension headers, bounded so that a chain of them cannot loop for long.
    for _ in 0..8 {
        match next {
            // Hop-by-hop, routing, destination options, mobility.
            0 | 43 | 60 | 135 => {
                let header = ip.get(offset..offset + 2).ok_or(DecodeError::Truncated)?;
                next = header[0];
                offset += (usize::from(header[1]) + 1) * 8;
            }
            44 => {
                let header = ip.get(offset..offset + 8).ok_or(DecodeError::Truncated)?;
                next = header[0];
                let offset_flags = u16::from_be_bytes([header[2], header[3]]);
                let id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                fragment = match (offset_flags >> 3, offset_flags & 1 != 0) {
                    (0, false) => Fragment::Whole,
                    (0, true) => Fragment::First { id },
                    _ => Fragment::Later { id },
                };
                offset += 8;
                if matches!(fragment, Fragment::Later { .. }) {
                    break;
                }
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => {
                let header = ip.get(offset..offset + 2).ok_or(DecodeError::Truncated)?;
                next = header[0];
                offset += (usize::from(header[1]) + 2) * 4;
            }
            _ => break,
        }
    }
    if offset > ip_len {
        return Err(DecodeError::Malformed);
    }
    let transport = ip.get(offset..end).unwrap_or(&[]);
    finish(src, dst, next, ip_len, fragment, transport)
}

fn finish(
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    ip_len: usize,
    fragment: Fragment,
    transport: &[u8],
) -> Result<Packet, DecodeError> {
    let mut packet = Packet {
        src,
        dst,
        protocol,
        src_port: 0,
        dst_port: 0,
        ip_len: u32::try_from(ip_len).unwrap_or(u32::MAX),
        tcp_flags: 0,
        fragment,
    };
    if matches!(fragment, Fragment::Later { .. }) {
        return Ok(packet);
    }
    match protocol {
        proto::TCP | proto::UDP | proto::SCTP => {
            // A capture cut short after the IP header still counts, without ports.
            if let (Some(src_port), Some(dst_port)) = (be16(transport, 0), be16(transport, 2)) {
                packet.src_port = src_port;
                packet.dst_port = dst_port;
            }
            if protocol == proto::TCP {
                packet.tcp_flags = transport.get(13).copied().unwrap_or(0);
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            if let Some(type_code) = be16(transport, 0) {
                packet.dst_port = type_code;
            }
        }
        _ => {}
    }
    Ok(packet)
}

fn be16(bytes: &[u8], offset: usize) -> Option<u16> {
    let pair = bytes.get(offset..offset.checked_add(2)?)?;
    Some(u16::from_be_bytes([pair[0], pair[1]]))
}
