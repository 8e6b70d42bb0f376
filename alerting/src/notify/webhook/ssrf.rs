//! The SSRF guard: which addresses a webhook may not reach unless `allow_private` is set.
//! Pure: the caller resolves, asks [`refusal`] about each address, and connects only to
//! one it allowed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

/// The address in a URL's host, if it is a literal (`http://10.0.0.1/`, `http://[::1]/`).
/// The URL parser has already turned odd spellings (`0x7f.1`, `2130706433`) into dotted
/// quads.
pub(crate) fn literal(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    let bare = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Why `ip` is refused (a word for the error), or `None` if a webhook may reach it.
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`) and NAT64 (`64:ff9b::/96`)
/// addresses are judged by the IPv4 address they carry.
pub fn refusal(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => refusal_v4(ip),
        IpAddr::V6(ip) => refusal_v6(ip),
    }
}

fn refusal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified (0.0.0.0/8)")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if a == 169 && b == 254 {
        Some("link-local (incl. the cloud metadata service)")
    } else if ip.is_private() {
        Some("private (RFC 1918)")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared carrier-grade NAT (100.64.0.0/10)")
    } else if a == 192 && b == 0 && c == 0 {
        Some("IETF protocol assignment (192.0.0.0/24)")
    } else if a == 198 && (b == 18 || b == 19) {
        Some("benchmarking (198.18.0.0/15)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved (240.0.0.0/4)")
    } else {
        None
    }
}

fn refusal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return refusal_v4(v4);
    }
    // ::a.b.c.d (deprecated IPv4-compatible) and the NAT64 well-known prefix 64:ff9b::/96.
    let embedded = Ipv4Addr::new(
        (segments[6] >> 8) as u8,
        segments[6] as u8,
        (segments[7] >> 8) as u8,
        segments[7] as u8,
    );
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if segments[..6] == [0; 6] || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        refusal_v4(embedded)
    } else if segments[0] & 0xfe00 == 0xfc00 {
        Some("unique local (fc00::/7)")
    } else if segments[0] & 0xffc0 == 0xfe80 {
        Some("link-local (fe80::/10)")
    } else if segments[0] & 0xffc0 == 0xfec0 {
        Some("site-local (fec0::/10)")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(address: &str, expect: Option<&str>) {
        let ip: IpAddr = address.parse().expect("an address");
        let actual = refusal(ip);
        match expect {
            None => assert_eq!(actual, None, "{address}"),
            Some(word) => {
                let reason = actual.unwrap_or_else(|| panic!("{address} allowed"));
                assert!(reason.starts_with(word), "{address}: {reason}");
            }
        }
    }

    #[test]
    fn internal_addresses_are_refused() {
        check("127.0.0.1", Some("loopback"));
        check("127.255.0.9", Some("loopback"));
        check("::1", Some("loopback"));
        check("169.254.169.254", Some("link-local"));
        check("fe80::1", Some("link-local"));
        check("10.1.2.3", Some("private"));
        check("172.16.0.1", Some("private"));
        check("172.31.255.255", Some("private"));
        check("192.168.1.1", Some("private"));
        check("fc00::1", Some("unique local"));
        check("fd12:3456::1", Some("unique local"));
        check("0.0.0.0", Some("unspecified"));
        check("0.1.2.3", Some("unspecified"));
        check("::", Some("unspecified"));
        check("224.0.0.1", Some("multicast"));
        check("ff02::1", Some("multicast"));
        check("255.255.255.255", Some("reserved"));
        check("100.64.0.1", Some("shared"));
        check("198.18.0.1", Some("benchmarking"));
    }

    #[test]
    fn mapped_forms_are_judged_by_their_ipv4_address() {
        check("::ffff:127.0.0.1", Some("loopback"));
        check("::ffff:169.254.169.254", Some("link-local"));
        check("::ffff:10.0.0.1", Some("private"));
        check("::127.0.0.1", Some("loopback"));
        check("64:ff9b::a9fe:a9fe", Some("link-local"));
        check("::ffff:93.184.216.34", None);
        check("64:ff9b::5db8:d822", None);
    }

    #[test]
    fn literals_are_read_from_the_url() {
        let literal_of = |url: &str| literal(&Url::parse(url).expect("a URL"));
        assert_eq!(
            literal_of("http://127.0.0.1:8080/x"),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            literal_of("http://0x7f.1/"),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            literal_of("http://2130706433/"),
            Some("127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(
            literal_of("http://[::ffff:7f00:1]/"),
            Some("::ffff:127.0.0.1".parse().expect("ip"))
        );
        assert_eq!(literal_of("https://hooks.example.org/x"), None);
    }

    #[test]
    fn public_addresses_are_allowed() {
        check("93.184.216.34", None);
        check("172.32.0.1", None);
        check("100.128.0.1", None);
        check("2606:2800:220:1:248:1893:25c8:1946", None);
        check("1.1.1.1", None);
    }
}
