//! Which addresses a GeoIP database can place: [`lookup_address`].
//!
//! Private, loopback, link-local, shared (CGNAT), documentation, benchmarking, multicast,
//! reserved and unspecified addresses are on no map; looking them up would at best find
//! nothing and at worst a bogus entry. IPv4 carried in IPv6 (`::ffff:a.b.c.d`, the NAT64
//! prefix `64:ff9b::/96`, 6to4 `2002::/16`) is the IPv4 address, judged and looked up as such.
//! Everything else outside IPv6 global unicast (`2000::/3`) is not routable on the Internet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address to look up for `ip`, or `None` if no database can place it.
pub fn lookup_address(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V4(v4) => global_v4(v4).map(IpAddr::V4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return global_v4(v4).map(IpAddr::V4);
            }
            global_v6(v6).then_some(IpAddr::V6(v6))
        }
    }
}

/// IPv4 special-purpose blocks (RFC 6890 and the IANA registry) that are not globally
/// routable, as (network, prefix length).
const V4_NOT_GLOBAL: &[(u32, u32)] = &[
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network", includes the unspecified address
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (CGNAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 documentation (TEST-NET-1)
    (0xc058_6300, 24), // 192.88.99.0/24 6to4 relay anycast (deprecated)
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation (TEST-NET-2)
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation (TEST-NET-3)
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved, includes 255.255.255.255
];

fn global_v4(ip: Ipv4Addr) -> Option<Ipv4Addr> {
    let bits = u32::from(ip);
    let special = V4_NOT_GLOBAL
        .iter()
        .any(|&(network, len)| bits >> (32 - len) == network >> (32 - len));
    (!special).then_some(ip)
}

/// IPv6 blocks inside `2000::/3` that are not globally routable.
const V6_NOT_GLOBAL: &[(u128, u32)] = &[
    (0x2001_0000 << 96, 23), // 2001::/23 IETF protocol assignments (Teredo, benchmarking…)
    (0x2001_0db8 << 96, 32), // 2001:db8::/32 documentation
    (0x3fff_0000 << 96, 20), // 3fff::/20 documentation (RFC 9637)
];

fn global_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // Global unicast is 2000::/3; the rest is unspecified, loopback, ULA (fc00::/7),
    // link-local (fe80::/10), multicast (ff00::/8), discard (100::/64) or unassigned.
    if bits >> 125 != 0b001 {
        return false;
    }
    !V6_NOT_GLOBAL
        .iter()
        .any(|&(network, len)| bits >> (128 - len) == network >> (128 - len))
}

/// The IPv4 address inside an IPv4-mapped, NAT64 or 6to4 address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let bits = u128::from(ip);
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        // 64:ff9b::/96, the well-known NAT64 prefix: the low 32 bits.
        return Some(Ipv4Addr::from(bits as u32));
    }
    if bits >> 112 == 0x2002 {
        // 2002:AABB:CCDD::/48, 6to4: the 32 bits after the prefix.
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expect: Option<&str>) {
        let ip: IpAddr = input.parse().unwrap();
        let expect: Option<IpAddr> = expect.map(|text| text.parse().unwrap());
        assert_eq!(lookup_address(ip), expect, "{input}");
    }

    #[test]
    fn public_addresses_are_looked_up_as_they_are() {
        check("81.2.69.142", Some("81.2.69.142"));
        check("1.1.1.1", Some("1.1.1.1"));
        check("100.63.255.255", Some("100.63.255.255"));
        check("100.128.0.0", Some("100.128.0.0"));
        check("172.32.0.1", Some("172.32.0.1"));
        check("198.20.0.1", Some("198.20.0.1"));
        check("223.255.255.255", Some("223.255.255.255"));
        check("2001:218::1", Some("2001:218::1"));
        check("2a02:d300::1", Some("2a02:d300::1"));
        check("2600:6000::1", Some("2600:6000::1"));
    }

    #[test]
    fn ipv4_in_ipv6_is_the_ipv4_address() {
        check("::ffff:81.2.69.142", Some("81.2.69.142"));
        check("::ffff:10.0.0.1", None);
        check("::ffff:192.0.2.1", None);
        check("64:ff9b::5102:458e", Some("81.2.69.142"));
        check("64:ff9b::c0a8:0101", None);
        check("2002:5102:458e::1", Some("81.2.69.142"));
        check("2002:0a00:0001::1", None);
    }

    #[test]
    fn special_purpose_ipv4_is_not_looked_up() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.99.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.9",
            "192.0.2.11",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.20",
            "203.0.113.10",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            check(ip, None);
        }
    }

    #[test]
    fn special_purpose_ipv6_is_not_looked_up() {
        for ip in [
            "::",
            "::1",
            "::10.0.0.1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "3fff::1",
            "4000::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            check(ip, None);
        }
    }
}
