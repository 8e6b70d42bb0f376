//! What VPN clients do behind the gateway: network [`Flow`]s and [`ApiRequest`]s.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::vpn::Endpoint;

/// A bidirectional network flow seen on the gateway (OCSF 4001 Network Activity).
/// `source` is the side that opened it (normally the VPN client's virtual IP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub source: Endpoint,
    pub destination: Endpoint,
    /// `network.transport`: `tcp`, `udp`, `icmp`, or the IANA protocol number.
    pub transport: String,
    /// `event.start` / `event.end`: first and last packet, RFC 3339.
    pub start: jiff::Timestamp,
    pub end: jiff::Timestamp,
    /// `source.bytes` / `destination.bytes`: bytes sent by each side.
    pub source_bytes: u64,
    pub destination_bytes: u64,
    pub source_packets: u64,
    pub destination_packets: u64,
    /// `vpn.tcp_flags`: the TCP flags seen in either direction, OR-ed (TCP flows only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<u8>,
    /// `vpn.flow_end`: why this record was exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<FlowEnd>,
    /// `vpn.session_join`: whether the collector found the session; filled by the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_join: Option<SessionJoin>,
    /// `user.name` of the VPN session that owned `source.ip` then; filled by the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
}

/// `vpn.flow_end`: why a flow record was exported (IPFIX `flowEndReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowEnd {
    /// No packet for the idle timeout.
    Idle,
    /// A long-lived flow: this record covers one active-timeout interval; more follow.
    Active,
    /// The TCP connection closed (FIN both ways, or RST).
    TcpEnd,
    /// Exported early because the flow table was full.
    Evicted,
    /// The capture ended (end of a file, shutdown).
    Forced,
}

impl FlowEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowEnd::Idle => "idle",
            FlowEnd::Active => "active",
            FlowEnd::TcpEnd => "tcp_end",
            FlowEnd::Evicted => "evicted",
            FlowEnd::Forced => "forced",
        }
    }
}

/// `vpn.session_join`: how a flow or API request was joined to the VPN session behind its
/// client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionJoin {
    /// A session held the address at that time (within the clock-skew tolerance).
    Matched,
    /// It arrived before its session did and was joined when the session arrived.
    Late,
    /// No session held the address at that time (as far as is known yet).
    Unmatched,
    /// The client address is not a VPN address (outside the configured pool).
    NotVpn,
}

impl SessionJoin {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionJoin::Matched => "matched",
            SessionJoin::Late => "late",
            SessionJoin::Unmatched => "unmatched",
            SessionJoin::NotVpn => "not_vpn",
        }
    }
}

/// One HTTP request to an API behind the VPN, from an access log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRequest {
    /// `source.ip`: the client address the API saw (a virtual IP when it came through the VPN).
    pub client_ip: Option<IpAddr>,
    pub destination: Endpoint,
    /// `http.request.method`
    pub method: String,
    /// `url.domain`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `url.path`
    pub path: String,
    /// `http.response.status_code`
    pub status: u16,
    /// `http.response.bytes`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bytes: Option<u64>,
    /// `event.duration` in microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// `http.request.id`
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `vpn.session_join`: whether the collector found the session; filled by the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_join: Option<SessionJoin>,
    /// `user.name` of the VPN session behind `client_ip`; filled by the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
}

/// Which table a [`SessionJoinUpdate`] corrects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinTarget {
    Flows,
    ApiRequests,
    /// A VPN event (`events`, and `auth_events` for a login): the sessionizer stamped it with
    /// the session it was assembling, and that login turned out to be part of another one
    /// (it arrived by another source first) or never to become a session. Only `session_id`
    /// is corrected.
    Events,
}

impl JoinTarget {
    /// The SQL table name (`events` also stands for `auth_events`, which holds the same rows).
    pub fn as_str(self) -> &'static str {
        match self {
            JoinTarget::Flows => "flows",
            JoinTarget::ApiRequests => "api_requests",
            JoinTarget::Events => "events",
        }
    }
}

/// A late correction of a stored flow's or API request's session: the collector learned of
/// the session that held the address only after the event was stored (its session's events
/// arrived later), or a session that arrived later fits the event better (virtual IP reuse
/// near the clock-skew tolerance). The store keeps these in `session_joins` and every query
/// of `flows` and `api_requests` sees the newest correction of each event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionJoinUpdate {
    pub target: JoinTarget,
    /// `event.id` of the corrected row.
    pub event_id: String,
    /// `@timestamp` of the corrected row (so that the correction lands in the same hour).
    pub timestamp: jiff::Timestamp,
    /// The session now joined; `None` when the event no longer belongs to any.
    pub session_id: Option<String>,
    pub user_name: Option<String>,
    pub join: SessionJoin,
    /// `event.created`: when the collector decided; the newest decision wins.
    pub decided: jiff::Timestamp,
}

/// What the join needs again after a restart, read back from the store: the leases of the
/// sessions that ended recently enough for late events, and the flows and API requests stored
/// as unmatched that their session may still arrive for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinRestart {
    pub leases: Vec<StoredLease>,
    pub unmatched: Vec<StoredUnmatched>,
}

/// A session's hold on a virtual IP, as the `sessions` table has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLease {
    pub session_id: String,
    pub user_name: Option<String>,
    pub virtual_ip: std::net::IpAddr,
    pub start: jiff::Timestamp,
    /// `None` while the session is open.
    pub end: Option<jiff::Timestamp>,
}

/// A flow or API request stored without a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUnmatched {
    pub target: JoinTarget,
    /// `event.id` as stored (`source:seq` or `source:seq.part`).
    pub event_id: String,
    /// `@timestamp` of the row (a correction lands in its hour).
    pub timestamp: jiff::Timestamp,
    /// The time it is joined at: a flow's start, an API request's time.
    pub at: jiff::Timestamp,
    /// The addresses that may be a virtual IP: a flow's source and destination, an API
    /// request's client.
    pub addresses: [Option<std::net::IpAddr>; 2],
}
