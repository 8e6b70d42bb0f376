//! Network flows of VPN clients: frames in, [`model::Flow`] events out.
//!
//! [`FlowTable`] is pure and synchronous, like the log parsers: it takes decoded packets with
//! their capture time ([`FlowTable::observe`]) and exports finished and long-lived flows as
//! [`FlowRecord`]s ([`FlowTable::expire`], [`FlowTable::drain`]). Time is the packets' own,
//! so a capture file gives the same flows however fast it is read. The live capture
//! (`capture`) and the pcap reader ([`pcap`]) both feed it.
//!
//! A flow is keyed by its 5-tuple in both directions. Its `source` is the side that opened it
//! (the sender of a TCP SYN; otherwise the side with the ephemeral port, or the first sender).
//! It is exported when it has been idle for `idle_timeout_secs`, shortly after a TCP
//! connection closed (FIN both ways or RST), and every `active_timeout_secs` while it lasts
//! (a partial record with that interval's counters, as NetFlow and IPFIX exporters do). The
//! table is bounded (`max_flows`): when full, the least recently seen flows are exported
//! early (counted as evicted), never dropped.

pub mod capture;
pub mod decode;
pub mod pcap;

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use jiff::Timestamp;
use model::{Endpoint, Event, EventBody, EventId, Flow, FlowEnd, Observer};
use serde::{Deserialize, Serialize};

use decode::{DecodeError, Fragment, LinkType, Packet, proto, tcp_flags};

/// `[[sources]] type = "capture"` settings that shape flows (also used for pcap imports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowConfig {
    /// Export a flow after this long without packets.
    pub idle_timeout_secs: u64,
    /// Export a partial record of a flow that lasts longer than this, then keep counting.
    pub active_timeout_secs: u64,
    /// After a TCP connection closed (FIN both ways, or RST), wait this long for stragglers.
    pub tcp_end_secs: u64,
    /// Flows kept at once; beyond it the least recently seen are exported early.
    pub max_flows: usize,
    /// Keep only packets to or from these networks (the VPN's virtual IP pool). Empty: all.
    pub vpn_pool: Vec<IpNet>,
    /// Keep only packets to or from these networks (the APIs). Empty: all.
    pub api_subnets: Vec<IpNet>,
}

impl Default for FlowConfig {
    fn default() -> FlowConfig {
        FlowConfig {
            idle_timeout_secs: 15,
            active_timeout_secs: 60,
            tcp_end_secs: 2,
            max_flows: 262_144,
            vpn_pool: Vec::new(),
            api_subnets: Vec::new(),
        }
    }
}

impl FlowConfig {
    /// Checks the values, naming the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.idle_timeout_secs == 0 {
            return Err("idle_timeout_secs must be at least 1".to_owned());
        }
        if self.active_timeout_secs < self.idle_timeout_secs {
            return Err(format!(
                "active_timeout_secs ({}) must not be shorter than idle_timeout_secs ({})",
                self.active_timeout_secs, self.idle_timeout_secs
            ));
        }
        if self.max_flows == 0 {
            return Err("max_flows must be at least 1".to_owned());
        }
        Ok(())
    }

    fn keeps(&self, packet: &Packet) -> bool {
        let in_any = |nets: &[IpNet]| {
            nets.is_empty()
                || nets
                    .iter()
                    .any(|net| net.contains(&packet.src) || net.contains(&packet.dst))
        };
        in_any(&self.vpn_pool) && in_any(&self.api_subnets)
    }
}

/// Counts of what the flow table saw. Every frame is counted exactly once among `packets`
/// and the reasons it was not used (`decode_errors`, `unsupported_link`, `filtered`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStats {
    pub frames: u64,
    /// Frames that became packets of a flow.
    pub packets: u64,
    /// IP bytes of those packets.
    pub bytes: u64,
    pub decode_errors: std::collections::BTreeMap<DecodeError, u64>,
    /// Frames of an interface whose link type tunnelwatch does not read.
    pub unsupported_link: u64,
    /// Packets outside `vpn_pool`/`api_subnets`.
    pub filtered: u64,
    /// Later IP fragments whose first fragment was not seen: counted in a flow without ports.
    pub fragments_unmatched: u64,
    pub flows_exported: u64,
    /// Flows exported early because the table was full.
    pub flows_evicted: u64,
}

impl FlowStats {
    pub fn n_decode_errors(&self) -> u64 {
        self.decode_errors.values().sum()
    }
}

impl std::fmt::Display for FlowStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames: {} packets ({} bytes) in {} flows, {} filtered, {} undecodable",
            self.frames,
            self.packets,
            self.bytes,
            self.flows_exported,
            self.filtered,
            self.n_decode_errors() + self.unsupported_link
        )?;
        if self.n_decode_errors() > 0 || self.unsupported_link > 0 {
            let mut reasons: Vec<String> = self
                .decode_errors
                .iter()
                .map(|(reason, count)| format!("{reason}: {count}"))
                .collect();
            if self.unsupported_link > 0 {
                reasons.push(format!("unsupported_link: {}", self.unsupported_link));
            }
            write!(f, " ({})", reasons.join(", "))?;
        }
        if self.fragments_unmatched > 0 {
            write!(f, ", {} unmatched fragments", self.fragments_unmatched)?;
        }
        if self.flows_evicted > 0 {
            write!(
                f,
                ", {} flows exported early (table full)",
                self.flows_evicted
            )?;
        }
        Ok(())
    }
}

/// One exported flow (or one interval of a long-lived one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRecord {
    pub source: (IpAddr, u16),
    pub destination: (IpAddr, u16),
    pub protocol: u8,
    /// First and last packet of this record, nanoseconds since the epoch.
    pub start_ns: i64,
    pub end_ns: i64,
    pub source_bytes: u64,
    pub destination_bytes: u64,
    pub source_packets: u64,
    pub destination_packets: u64,
    /// TCP flags seen in either direction, OR-ed.
    pub tcp_flags: u8,
    pub end: FlowEnd,
}

impl FlowRecord {
    /// The event for this record. `seq` must grow with every record of `source_id`.
    pub fn to_event(&self, source_id: &str, seq: u64, observer: &Observer, dataset: &str) -> Event {
        let start = timestamp_of(self.start_ns);
        let end = timestamp_of(self.end_ns);
        let transport = transport_name(self.protocol);
        let endpoints = if has_ports(self.protocol) {
            format!("{} -> {}", socket(self.source), socket(self.destination))
        } else if matches!(self.protocol, proto::ICMP | proto::ICMPV6) {
            // Inside the table the ICMP type and code travel as a port.
            let type_code = self.destination.1.max(self.source.1);
            format!(
                "{} -> {} type {} code {}",
                self.source.0,
                self.destination.0,
                type_code >> 8,
                type_code & 0xff
            )
        } else {
            format!("{} -> {}", self.source.0, self.destination.0)
        };
        let original = format!(
            "{transport} {endpoints} packets {}/{} bytes {}/{} {}",
            self.source_packets,
            self.destination_packets,
            self.source_bytes,
            self.destination_bytes,
            self.end.as_str()
        );
        // ICMP type and code travel in the ports inside the table only.
        let port = |port: u16| has_ports(self.protocol).then_some(port);
        Event {
            id: EventId::new(source_id, seq, 0),
            timestamp: start,
            dataset: dataset.to_owned(),
            observer: observer.clone(),
            original,
            session_id: None,
            source_geo: None,
            body: EventBody::Flow(Flow {
                source: Endpoint {
                    ip: Some(self.source.0),
                    port: port(self.source.1),
                },
                destination: Endpoint {
                    ip: Some(self.destination.0),
                    port: port(self.destination.1),
                },
                transport,
                start,
                end,
                source_bytes: self.source_bytes,
                destination_bytes: self.destination_bytes,
                source_packets: self.source_packets,
                destination_packets: self.destination_packets,
                tcp_flags: (self.protocol == proto::TCP).then_some(self.tcp_flags),
                end_reason: Some(self.end),
                session_join: None,
                user_name: None,
            }),
        }
    }
}

/// `event.dataset` of flow events.
pub const DATASET: &str = "tunnelwatch.flow";

/// Numbers the records of one flow source as events: `<source>:<seq>`, growing.
#[derive(Debug, Clone)]
pub struct FlowSource {
    pub source_id: String,
    pub observer: Observer,
    next_seq: u64,
}

impl FlowSource {
    /// A source whose first event gets sequence number `first_seq`.
    pub fn new(source_id: impl Into<String>, observer: Observer, first_seq: u64) -> FlowSource {
        FlowSource {
            source_id: source_id.into(),
            observer,
            next_seq: first_seq,
        }
    }

    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn events(&mut self, records: &[FlowRecord]) -> Vec<Event> {
        records
            .iter()
            .map(|record| {
                let seq = self.next_seq;
                self.next_seq += 1;
                record.to_event(&self.source_id, seq, &self.observer, DATASET)
            })
            .collect()
    }
}

/// What reading a capture file gave: the counts, and the error that ended it early (a cut
/// or corrupt file: every flow before it was still exported).
#[derive(Debug)]
pub struct CaptureReport {
    pub stats: FlowStats,
    pub error: Option<pcap::PcapError>,
}

/// Reads a pcap or pcapng capture through a flow table and hands the flow events to `sink`,
/// at most `batch_size` at a time, in a stable order (the same file gives the same events
/// with the same ids). `reader` should be buffered.
pub fn read_capture<R: std::io::Read, E>(
    reader: R,
    config: FlowConfig,
    source: &mut FlowSource,
    batch_size: usize,
    mut sink: impl FnMut(Vec<Event>) -> Result<(), E>,
) -> Result<CaptureReport, E> {
    let mut table = FlowTable::new(config);
    let mut records = Vec::new();
    let mut error = None;
    match pcap::PcapReader::new(reader) {
        Err(header_error) => error = Some(header_error),
        Ok(mut reader) => loop {
            match reader.next_frame() {
                Ok(Some(frame)) => table.observe_frame(
                    frame.link,
                    frame.data,
                    frame.wire_len,
                    frame.timestamp_ns,
                    &mut records,
                ),
                Ok(None) => break,
                Err(read_error) => {
                    error = Some(read_error);
                    break;
                }
            }
            if records.len() >= batch_size {
                sink(source.events(&records))?;
                records.clear();
            }
        },
    }
    table.drain(&mut records);
    for chunk in records.chunks(batch_size.max(1)) {
        sink(source.events(chunk))?;
    }
    Ok(CaptureReport {
        stats: table.stats().clone(),
        error,
    })
}

fn has_ports(protocol: u8) -> bool {
    matches!(protocol, proto::TCP | proto::UDP | proto::SCTP)
}

fn socket((ip, port): (IpAddr, u16)) -> String {
    match ip {
        IpAddr::V4(ip) => format!("{ip}:{port}"),
        IpAddr::V6(ip) => format!("[{ip}]:{port}"),
    }
}

/// `network.transport`: `tcp`, `udp`, `icmp`, `ipv6-icmp`, `sctp`, `esp`, or the number.
pub fn transport_name(protocol: u8) -> String {
    match protocol {
        proto::TCP => "tcp".to_owned(),
        proto::UDP => "udp".to_owned(),
        proto::ICMP => "icmp".to_owned(),
        proto::ICMPV6 => "ipv6-icmp".to_owned(),
        proto::SCTP => "sctp".to_owned(),
        proto::ESP => "esp".to_owned(),
        other => other.to_string(),
    }
}

fn timestamp_of(nanos: i64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(nanos)).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The key of a flow, the same for both directions: the lower endpoint first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct FlowKey {
    low: (IpAddr, u16),
    high: (IpAddr, u16),
    protocol: u8,
}

#[derive(Debug, Clone)]
struct FlowState {
    /// Whether `low` opened the flow.
    low_is_source: bool,
    /// First packet of the current record.
    start_ns: i64,
    last_ns: i64,
    /// Counters of the current record: [from low, from high].
    bytes: [u64; 2],
    packets: [u64; 2],
    tcp_flags: u8,
    /// FIN seen from [low, high]; RST seen.
    fin: [bool; 2],
    rst: bool,
}

/// foldhash: fast, and seeded per process so that crafted traffic cannot aim at one bucket.
type FxBuild = foldhash::fast::RandomState;

/// Ports of first fragments, so that later fragments count in the right flow.
const MAX_FRAGMENTS: usize = 4096;
/// How often (in packet time) the table looks for flows to export.
const SWEEP_NS: i64 = 1_000_000_000;

/// The flow table. See the module docs.
#[derive(Debug)]
pub struct FlowTable {
    config: FlowConfig,
    flows: HashMap<FlowKey, FlowState, FxBuild>,
    fragments: HashMap<(IpAddr, IpAddr, u8, u32), (u16, u16), FxBuild>,
    stats: FlowStats,
    next_sweep_ns: Option<i64>,
}

impl FlowTable {
    pub fn new(config: FlowConfig) -> FlowTable {
        FlowTable {
            config,
            flows: HashMap::default(),
            fragments: HashMap::default(),
            stats: FlowStats::default(),
            next_sweep_ns: None,
        }
    }

    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// Flows being tracked now.
    pub fn n_flows(&self) -> usize {
        self.flows.len()
    }

    /// Decodes a frame and counts it; finished flows are appended to `out`.
    pub fn observe_frame(
        &mut self,
        link: Option<LinkType>,
        frame: &[u8],
        wire_len: usize,
        timestamp_ns: i64,
        out: &mut Vec<FlowRecord>,
    ) {
        self.stats.frames += 1;
        let Some(link) = link else {
            self.stats.unsupported_link += 1;
            return;
        };
        match decode::decode(link, frame, wire_len) {
            Ok(packet) => self.observe(&packet, timestamp_ns, out),
            Err(error) => *self.stats.decode_errors.entry(error).or_default() += 1,
        }
    }

    /// Counts a decoded packet; finished flows are appended to `out`.
    pub fn observe(&mut self, packet: &Packet, timestamp_ns: i64, out: &mut Vec<FlowRecord>) {
        if self.next_sweep_ns.is_none_or(|next| timestamp_ns >= next) {
            self.expire(timestamp_ns, out);
        }
        if !self.config.keeps(packet) {
            self.stats.filtered += 1;
            return;
        }
        let mut packet = *packet;
        match packet.fragment {
            Fragment::Whole => {}
            Fragment::First { id } => {
                if self.fragments.len() >= MAX_FRAGMENTS {
                    self.fragments.clear();
                }
                self.fragments.insert(
                    (packet.src, packet.dst, packet.protocol, id),
                    (packet.src_port, packet.dst_port),
                );
            }
            Fragment::Later { id } => {
                match self
                    .fragments
                    .get(&(packet.src, packet.dst, packet.protocol, id))
                {
                    Some(&(src_port, dst_port)) => {
                        packet.src_port = src_port;
                        packet.dst_port = dst_port;
                    }
                    None => self.stats.fragments_unmatched += 1,
                }
            }
        }
        // An ICMP echo reply belongs to the request's flow: key it as the request seen from
        // the other side.
        let mut sender_opened = None;
        if matches!(packet.protocol, proto::ICMP | proto::ICMPV6) {
            let request = match (packet.protocol, packet.dst_port >> 8) {
                (proto::ICMP, 0) => Some(8u16),
                (proto::ICMPV6, 129) => Some(128),
                _ => None,
            };
            if let Some(request) = request {
                packet.src_port = (request << 8) | (packet.dst_port & 0xff);
                packet.dst_port = 0;
                sender_opened = Some(false);
            }
        }
        self.stats.packets += 1;
        self.stats.bytes += u64::from(packet.ip_len);
        let from = (packet.src, packet.src_port);
        let to = (packet.dst, packet.dst_port);
        let (key, from_low) = if from <= to {
            (
                FlowKey {
                    low: from,
                    high: to,
                    protocol: packet.protocol,
                },
                true,
            )
        } else {
            (
                FlowKey {
                    low: to,
                    high: from,
                    protocol: packet.protocol,
                },
                false,
            )
        };
        let side = usize::from(!from_low);
        let flags = packet.tcp_flags;
        let is_syn = packet.protocol == proto::TCP
            && flags & tcp_flags::SYN != 0
            && flags & tcp_flags::ACK == 0;
        if let Some(state) = self.flows.get_mut(&key) {
            let closed = state.rst || (state.fin[0] && state.fin[1]);
            if !(is_syn && closed) {
                state.last_ns = state.last_ns.max(timestamp_ns);
                state.bytes[side] += u64::from(packet.ip_len);
                state.packets[side] += 1;
                state.tcp_flags |= flags;
                if flags & tcp_flags::FIN != 0 {
                    state.fin[side] = true;
                }
                if flags & tcp_flags::RST != 0 {
                    state.rst = true;
                }
                return;
            }
            // A new connection on the 5-tuple of one that closed: that one is finished.
            if let Some(state) = self.flows.remove(&key) {
                out.push(self.record(&key, &state, FlowEnd::TcpEnd));
            }
        }
        if self.flows.len() >= self.config.max_flows {
            self.evict(out);
        }
        let low_is_source =
            sender_opened.unwrap_or_else(|| sender_opened_flow(&packet)) == from_low;
        let mut state = FlowState {
            low_is_source,
            start_ns: timestamp_ns,
            last_ns: timestamp_ns,
            bytes: [0; 2],
            packets: [0; 2],
            tcp_flags: flags,
            fin: [false; 2],
            rst: flags & tcp_flags::RST != 0,
        };
        state.bytes[side] = u64::from(packet.ip_len);
        state.packets[side] = 1;
        if flags & tcp_flags::FIN != 0 {
            state.fin[side] = true;
        }
        self.flows.insert(key, state);
    }

    /// Exports flows that are idle, closed, or due for an active-timeout record at `now_ns`
    /// (packet time for captures read from files; wall time between packets when live).
    pub fn expire(&mut self, now_ns: i64, out: &mut Vec<FlowRecord>) {
        self.next_sweep_ns = Some(now_ns.saturating_add(SWEEP_NS));
        let idle = secs_to_ns(self.config.idle_timeout_secs);
        let active = secs_to_ns(self.config.active_timeout_secs);
        let tcp_end = secs_to_ns(self.config.tcp_end_secs);
        let mut finished = Vec::new();
        let first_active = out.len();
        for (key, state) in &mut self.flows {
            let quiet = now_ns.saturating_sub(state.last_ns);
            let closed = state.rst || (state.fin[0] && state.fin[1]);
            if quiet >= idle {
                finished.push((*key, FlowEnd::Idle));
            } else if closed && quiet >= tcp_end {
                finished.push((*key, FlowEnd::TcpEnd));
            } else if now_ns.saturating_sub(state.start_ns) >= active
                && state.packets.iter().sum::<u64>() > 0
            {
                // A long-lived flow: export this interval and go on counting.
                let record = record_of(key, state, FlowEnd::Active);
                self.stats.flows_exported += 1;
                out.push(record);
                state.start_ns = now_ns;
                state.bytes = [0; 2];
                state.packets = [0; 2];
                state.tcp_flags = 0;
            }
        }
        for (key, end) in finished {
            if let Some(state) = self.flows.remove(&key) {
                out.push(self.record(&key, &state, end));
            }
        }
        // The table's order is random: sort, so that the same capture gives the same
        // sequence of records (and event ids).
        out[first_active..].sort_by_key(record_order);
    }

    /// Exports every flow (end of a capture file, shutdown).
    pub fn drain(&mut self, out: &mut Vec<FlowRecord>) {
        let flows: Vec<(FlowKey, FlowState)> = self.flows.drain().collect();
        let first = out.len();
        for (key, state) in flows {
            // A connection that closed is ended by its close, not by the end of the capture.
            let end = if state.rst || (state.fin[0] && state.fin[1]) {
                FlowEnd::TcpEnd
            } else {
                FlowEnd::Forced
            };
            out.push(self.record(&key, &state, end));
        }
        out[first..].sort_by_key(record_order);
    }

    /// Exports the least recently seen eighth of the table.
    fn evict(&mut self, out: &mut Vec<FlowRecord>) {
        let mut by_age: Vec<(i64, FlowKey)> = self
            .flows
            .iter()
            .map(|(key, state)| (state.last_ns, *key))
            .collect();
        let n = (by_age.len() / 8).max(1);
        by_age.select_nth_unstable(n - 1);
        let first = out.len();
        for (_, key) in by_age.into_iter().take(n) {
            if let Some(state) = self.flows.remove(&key) {
                self.stats.flows_evicted += 1;
                out.push(self.record(&key, &state, FlowEnd::Evicted));
            }
        }
        out[first..].sort_by_key(record_order);
    }

    fn record(&mut self, key: &FlowKey, state: &FlowState, end: FlowEnd) -> FlowRecord {
        self.stats.flows_exported += 1;
        record_of(key, state, end)
    }
}

fn record_order(record: &FlowRecord) -> (i64, (IpAddr, u16), (IpAddr, u16), u8, i64) {
    (
        record.start_ns,
        record.source,
        record.destination,
        record.protocol,
        record.end_ns,
    )
}

fn record_of(key: &FlowKey, state: &FlowState, end: FlowEnd) -> FlowRecord {
    let (source, destination, src_side) = if state.low_is_source {
        (key.low, key.high, 0)
    } else {
        (key.high, key.low, 1)
    };
    FlowRecord {
        source,
        destination,
        protocol: key.protocol,
        start_ns: state.start_ns,
        end_ns: state.last_ns.max(state.start_ns),
        source_bytes: state.bytes[src_side],
        destination_bytes: state.bytes[1 - src_side],
        source_packets: state.packets[src_side],
        destination_packets: state.packets[1 - src_side],
        tcp_flags: state.tcp_flags,
        end,
    }
}

/// Whether the sender of a flow's first packet opened it: a TCP SYN's sender did (a
/// SYN-ACK's did not); otherwise the side with the ephemeral port did when the other has a
/// well-known one; otherwise the sender did.
fn sender_opened_flow(packet: &Packet) -> bool {
    if packet.protocol == proto::TCP && packet.tcp_flags & tcp_flags::SYN != 0 {
        packet.tcp_flags & tcp_flags::ACK == 0
    } else if has_ports(packet.protocol) {
        let well_known = |port: u16| port != 0 && port < 1024;
        !well_known(packet.src_port) || well_known(packet.dst_port)
    } else {
        true
    }
}

fn secs_to_ns(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests;
