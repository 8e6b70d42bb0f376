//! Lowercase hex, the one spelling of hashes, keys and signatures in files and the audit trail.

/// `bytes` as lowercase hex.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, byte| {
            let _ = write!(out, "{byte:02x}");
            out
        })
}

/// Exactly `N` bytes from `2 × N` hex digits (either case; surrounding whitespace ignored).
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != N * 2 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (index, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_wrong_text_is_none() {
        let bytes = [0x00, 0x7f, 0xab, 0xff];
        assert_eq!(encode(&bytes), "007fabff");
        assert_eq!(decode::<4>("007fabff"), Some(bytes));
        assert_eq!(decode::<4>(" 007FABFF\n"), Some(bytes));
        for bad in ["007fab", "007fabff00", "zz7fabff", "+07fabff", "é07fab"] {
            assert_eq!(decode::<4>(bad), None, "{bad}");
        }
    }
}
