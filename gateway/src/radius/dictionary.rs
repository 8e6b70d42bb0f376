//! The RADIUS attributes tunnelwatch knows by name: a flat table of (type, name, value kind)
//! from RFC 2865, 2866, 2869, 3162 and 6911, plus the names of enumerated values. Only what an
//! accounting server is sent is listed; any other type is rendered as `Attr-N`, counted as
//! unknown, and otherwise ignored.

/// How an attribute's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// UTF-8 text (RFC 8044 `text`/`string` that carries text).
    Text,
    /// Opaque octets, rendered as hex.
    Octets,
    /// A 32-bit unsigned integer, big-endian.
    Integer,
    /// An integer whose values have names.
    Enumerated(&'static [(u32, &'static str)]),
    /// Seconds since 1970-01-01 UTC, 32-bit.
    Time,
    Ipv4,
    Ipv6,
    /// Vendor-Specific (26): vendor id then the vendor's attributes, kept raw.
    VendorSpecific,
}

pub const USER_NAME: u8 = 1;
pub const NAS_IP_ADDRESS: u8 = 4;
pub const NAS_PORT: u8 = 5;
pub const FRAMED_IP_ADDRESS: u8 = 8;
pub const CALLED_STATION_ID: u8 = 30;
pub const CALLING_STATION_ID: u8 = 31;
pub const NAS_IDENTIFIER: u8 = 32;
pub const ACCT_STATUS_TYPE: u8 = 40;
pub const ACCT_DELAY_TIME: u8 = 41;
pub const ACCT_INPUT_OCTETS: u8 = 42;
pub const ACCT_OUTPUT_OCTETS: u8 = 43;
pub const ACCT_SESSION_ID: u8 = 44;
pub const ACCT_SESSION_TIME: u8 = 46;
pub const ACCT_INPUT_PACKETS: u8 = 47;
pub const ACCT_OUTPUT_PACKETS: u8 = 48;
pub const ACCT_TERMINATE_CAUSE: u8 = 49;
pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
pub const EVENT_TIMESTAMP: u8 = 55;
pub const NAS_PORT_ID: u8 = 87;
pub const NAS_IPV6_ADDRESS: u8 = 95;
pub const FRAMED_IPV6_ADDRESS: u8 = 168;

/// Acct-Status-Type values (RFC 2866 §5.1, RFC 2867).
pub const STATUS_TYPES: &[(u32, &str)] = &[
    (1, "Start"),
    (2, "Stop"),
    (3, "Interim-Update"),
    (7, "Accounting-On"),
    (8, "Accounting-Off"),
    (9, "Tunnel-Start"),
    (10, "Tunnel-Stop"),
    (11, "Tunnel-Reject"),
    (12, "Tunnel-Link-Start"),
    (13, "Tunnel-Link-Stop"),
    (14, "Tunnel-Link-Reject"),
    (15, "Failed"),
];

/// Acct-Terminate-Cause values (RFC 2866 §5.10).
pub const TERMINATE_CAUSES: &[(u32, &str)] = &[
    (1, "User-Request"),
    (2, "Lost-Carrier"),
    (3, "Lost-Service"),
    (4, "Idle-Timeout"),
    (5, "Session-Timeout"),
    (6, "Admin-Reset"),
    (7, "Admin-Reboot"),
    (8, "Port-Error"),
    (9, "NAS-Error"),
    (10, "NAS-Request"),
    (11, "NAS-Reboot"),
    (12, "Port-Unneeded"),
    (13, "Port-Preempted"),
    (14, "Port-Suspended"),
    (15, "Service-Unavailable"),
    (16, "Callback"),
    (17, "User-Error"),
    (18, "Host-Request"),
];

const ACCT_AUTHENTIC: &[(u32, &str)] = &[(1, "RADIUS"), (2, "Local"), (3, "Remote")];

const SERVICE_TYPES: &[(u32, &str)] = &[
    (1, "Login-User"),
    (2, "Framed-User"),
    (3, "Callback-Login-User"),
    (4, "Callback-Framed-User"),
    (5, "Outbound-User"),
    (6, "Administrative-User"),
    (7, "NAS-Prompt-User"),
    (8, "Authenticate-Only"),
];

const FRAMED_PROTOCOLS: &[(u32, &str)] = &[(1, "PPP"), (2, "SLIP"), (3, "ARAP"), (4, "Gandalf")];

const NAS_PORT_TYPES: &[(u32, &str)] = &[
    (0, "Async"),
    (1, "Sync"),
    (2, "ISDN"),
    (5, "Virtual"),
    (15, "Ethernet"),
    (19, "Wireless-802.11"),
];

/// Every attribute known by name, by type.
const ATTRIBUTES: &[(u8, &str, ValueKind)] = &[
    (USER_NAME, "User-Name", ValueKind::Text),
    (NAS_IP_ADDRESS, "NAS-IP-Address", ValueKind::Ipv4),
    (NAS_PORT, "NAS-Port", ValueKind::Integer),
    (6, "Service-Type", ValueKind::Enumerated(SERVICE_TYPES)),
    (
        7,
        "Framed-Protocol",
        ValueKind::Enumerated(FRAMED_PROTOCOLS),
    ),
    (FRAMED_IP_ADDRESS, "Framed-IP-Address", ValueKind::Ipv4),
    (9, "Framed-IP-Netmask", ValueKind::Ipv4),
    (11, "Filter-Id", ValueKind::Text),
    (12, "Framed-MTU", ValueKind::Integer),
    (18, "Reply-Message", ValueKind::Text),
    (24, "State", ValueKind::Octets),
    (25, "Class", ValueKind::Octets),
    (26, "Vendor-Specific", ValueKind::VendorSpecific),
    (27, "Session-Timeout", ValueKind::Integer),
    (28, "Idle-Timeout", ValueKind::Integer),
    (CALLED_STATION_ID, "Called-Station-Id", ValueKind::Text),
    (CALLING_STATION_ID, "Calling-Station-Id", ValueKind::Text),
    (NAS_IDENTIFIER, "NAS-Identifier", ValueKind::Text),
    (33, "Proxy-State", ValueKind::Octets),
    (
        ACCT_STATUS_TYPE,
        "Acct-Status-Type",
        ValueKind::Enumerated(STATUS_TYPES),
    ),
    (ACCT_DELAY_TIME, "Acct-Delay-Time", ValueKind::Integer),
    (ACCT_INPUT_OCTETS, "Acct-Input-Octets", ValueKind::Integer),
    (ACCT_OUTPUT_OCTETS, "Acct-Output-Octets", ValueKind::Integer),
    (ACCT_SESSION_ID, "Acct-Session-Id", ValueKind::Text),
    (45, "Acct-Authentic", ValueKind::Enumerated(ACCT_AUTHENTIC)),
    (ACCT_SESSION_TIME, "Acct-Session-Time", ValueKind::Integer),
    (ACCT_INPUT_PACKETS, "Acct-Input-Packets", ValueKind::Integer),
    (
        ACCT_OUTPUT_PACKETS,
        "Acct-Output-Packets",
        ValueKind::Integer,
    ),
    (
        ACCT_TERMINATE_CAUSE,
        "Acct-Terminate-Cause",
        ValueKind::Enumerated(TERMINATE_CAUSES),
    ),
    (50, "Acct-Multi-Session-Id", ValueKind::Text),
    (51, "Acct-Link-Count", ValueKind::Integer),
    (
        ACCT_INPUT_GIGAWORDS,
        "Acct-Input-Gigawords",
        ValueKind::Integer,
    ),
    (
        ACCT_OUTPUT_GIGAWORDS,
        "Acct-Output-Gigawords",
        ValueKind::Integer,
    ),
    (EVENT_TIMESTAMP, "Event-Timestamp", ValueKind::Time),
    (61, "NAS-Port-Type", ValueKind::Enumerated(NAS_PORT_TYPES)),
    (77, "Connect-Info", ValueKind::Text),
    (85, "Acct-Interim-Interval", ValueKind::Integer),
    (NAS_PORT_ID, "NAS-Port-Id", ValueKind::Text),
    (88, "Framed-Pool", ValueKind::Text),
    (NAS_IPV6_ADDRESS, "NAS-IPv6-Address", ValueKind::Ipv6),
    (FRAMED_IPV6_ADDRESS, "Framed-IPv6-Address", ValueKind::Ipv6),
];

/// The name and value kind of an attribute type, if tunnelwatch knows it.
pub fn lookup(kind: u8) -> Option<(&'static str, ValueKind)> {
    ATTRIBUTES
        .iter()
        .find(|(known, _, _)| *known == kind)
        .map(|(_, name, value_kind)| (*name, *value_kind))
}

/// The name of an enumerated value.
pub fn value_name(values: &[(u32, &'static str)], value: u32) -> Option<&'static str> {
    values
        .iter()
        .find(|(known, _)| *known == value)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_listed_once_in_order() {
        for pair in ATTRIBUTES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} before {}", pair[0].1, pair[1].1);
        }
    }
}
