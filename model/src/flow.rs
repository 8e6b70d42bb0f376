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
    /// `user.name` of the VPN session that owned `source.ip` then; filled by the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
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
    /// `user.name` of the VPN session behind `client_ip`; filled by the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
}
