//! The RADIUS wire format, as far as an accounting server needs it (RFC 2865 §3, RFC 2866 §3).
//!
//! Pure and synchronous: bytes in, [`Packet`] or [`PacketError`] out; no IO, no clock.
//!
//! ```text
//!  0        1        2                3
//!  code     ident    length (u16 BE)            20-byte header, then attributes:
//!  request authenticator (16 octets)            [type u8][length u8 incl. these 2][value]
//! ```
//!
//! Decoding is split in two so that a packet whose attributes are broken can still be
//! authenticated: [`Header::decode`] checks what the authenticator depends on (size, code,
//! length field), [`Header::verify_request`] checks the Request Authenticator over the bytes
//! up to `length`, and [`decode`] also splits the attributes. Octets after `length` are padding
//! and ignored (RFC 2865 §3).

use std::fmt;

use md5::{Digest, Md5};

/// Length of the header (code, identifier, length, authenticator).
pub const HEADER_LEN: usize = 20;
/// Largest RADIUS packet (RFC 2865 §3); a larger datagram is rejected as oversized.
pub const MAX_PACKET_LEN: usize = 4096;
/// The only code an accounting server takes.
pub const ACCOUNTING_REQUEST: u8 = 4;
/// The code of our answer.
pub const ACCOUNTING_RESPONSE: u8 = 5;
/// Attribute type of Proxy-State, which a server copies into its response (RFC 2865 §5.33).
pub const PROXY_STATE: u8 = 33;

/// Why a datagram is not a usable Accounting-Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("datagram of {len} bytes is larger than the {MAX_PACKET_LEN}-byte maximum")]
    Oversized { len: usize },
    #[error("datagram of {len} bytes is shorter than the {HEADER_LEN}-byte header")]
    TooShort { len: usize },
    #[error("code {code} is not Accounting-Request ({ACCOUNTING_REQUEST})")]
    WrongCode { code: u8 },
    #[error("length field {length} is below the {HEADER_LEN}-byte minimum")]
    LengthTooSmall { length: u16 },
    #[error("length field {length} is above the {MAX_PACKET_LEN}-byte maximum")]
    LengthTooLarge { length: u16 },
    #[error("length field {length} is larger than the {datagram_len}-byte datagram")]
    Truncated { length: u16, datagram_len: usize },
    #[error("attribute {kind} at offset {offset} has length {length}, below the minimum of 2")]
    AttributeTooShort { offset: usize, kind: u8, length: u8 },
    #[error("attribute {kind} at offset {offset} is cut off before its length octet")]
    AttributeCutOff { offset: usize, kind: u8 },
    #[error(
        "attribute {kind} at offset {offset} has length {length} but only {remaining} bytes remain"
    )]
    AttributeOverrun {
        offset: usize,
        kind: u8,
        length: u8,
        remaining: usize,
    },
}

impl PacketError {
    /// For an error in the attributes (the header was sound, so the packet can still be
    /// authenticated): the offset of the broken attribute from the start of the packet.
    pub fn attribute_offset(&self) -> Option<usize> {
        match self {
            PacketError::AttributeCutOff { offset, .. }
            | PacketError::AttributeTooShort { offset, .. }
            | PacketError::AttributeOverrun { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// The fixed header of an Accounting-Request whose size, code and length are sound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub code: u8,
    pub identifier: u8,
    /// The length field: the packet proper; anything after it in the datagram is padding.
    pub length: u16,
    pub authenticator: [u8; 16],
}

impl Header {
    /// Checks the datagram's size, code and length field.
    pub fn decode(datagram: &[u8]) -> Result<Header, PacketError> {
        if datagram.len() > MAX_PACKET_LEN {
            return Err(PacketError::Oversized {
                len: datagram.len(),
            });
        }
        let Some((fixed, _)) = datagram.split_first_chunk::<HEADER_LEN>() else {
            return Err(PacketError::TooShort {
                len: datagram.len(),
            });
        };
        let [code, identifier, length_hi, length_lo, authenticator @ ..] = *fixed;
        if code != ACCOUNTING_REQUEST {
            return Err(PacketError::WrongCode { code });
        }
        let length = u16::from_be_bytes([length_hi, length_lo]);
        if usize::from(length) < HEADER_LEN {
            return Err(PacketError::LengthTooSmall { length });
        }
        if usize::from(length) > MAX_PACKET_LEN {
            return Err(PacketError::LengthTooLarge { length });
        }
        if usize::from(length) > datagram.len() {
            return Err(PacketError::Truncated {
                length,
                datagram_len: datagram.len(),
            });
        }
        Ok(Header {
            code,
            identifier,
            length,
            authenticator,
        })
    }

    /// The packet proper: the datagram up to `length`, without padding.
    ///
    /// `datagram` must be the one this header was decoded from.
    pub fn packet_bytes<'a>(&self, datagram: &'a [u8]) -> &'a [u8] {
        datagram.get(..usize::from(self.length)).unwrap_or(datagram)
    }

    /// Whether the Request Authenticator is MD5(Code + Identifier + Length + 16 zero octets +
    /// Attributes + Secret) (RFC 2866 §3), compared in constant time.
    ///
    /// `datagram` must be the one this header was decoded from.
    pub fn verify_request(&self, datagram: &[u8], secret: &[u8]) -> bool {
        let packet = self.packet_bytes(datagram);
        let attributes = packet.get(HEADER_LEN..).unwrap_or_default();
        let expected =
            request_authenticator(self.code, self.identifier, self.length, attributes, secret);
        constant_time_eq(&expected, &self.authenticator)
    }
}

/// One attribute, its value as sent. Vendor-Specific (26) is kept raw (vendor id first).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub kind: u8,
    pub value: &'a [u8],
}

impl fmt::Debug for Attribute<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Attribute({}, 0x", self.kind)?;
        for byte in self.value {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

/// A decoded Accounting-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: Header,
    /// In packet order; repeated attributes are all kept.
    pub attributes: Vec<Attribute<'a>>,
}

impl<'a> Packet<'a> {
    /// The first attribute of a type.
    pub fn first(&self, kind: u8) -> Option<&'a [u8]> {
        self.attributes
            .iter()
            .find(|attribute| attribute.kind == kind)
            .map(|attribute| attribute.value)
    }
}

/// Decodes an Accounting-Request: the header checks of [`Header::decode`], then the
/// attributes. Does not authenticate: call [`Header::verify_request`].
pub fn decode(datagram: &[u8]) -> Result<Packet<'_>, PacketError> {
    let header = Header::decode(datagram)?;
    let attributes = attributes(header.packet_bytes(datagram)).collect::<Result<_, _>>()?;
    Ok(Packet { header, attributes })
}

/// The attributes of a packet (`packet` is the whole packet, header included, without
/// padding), in order; the first broken one ends the iteration with an error whose offset
/// counts from the start of the packet.
pub fn attributes(packet: &[u8]) -> Attributes<'_> {
    Attributes {
        packet,
        offset: HEADER_LEN,
        failed: false,
    }
}

/// Iterator returned by [`attributes`].
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    packet: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<Attribute<'a>, PacketError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let offset = self.offset;
        let rest = self.packet.get(offset..)?;
        let result = match *rest {
            [] => return None,
            [kind] => Err(PacketError::AttributeCutOff { offset, kind }),
            [kind, length, ..] if length < 2 => Err(PacketError::AttributeTooShort {
                offset,
                kind,
                length,
            }),
            [kind, length, ..] => match rest.get(2..usize::from(length)) {
                Some(value) => Ok(Attribute { kind, value }),
                None => Err(PacketError::AttributeOverrun {
                    offset,
                    kind,
                    length,
                    remaining: rest.len(),
                }),
            },
        };
        match &result {
            Ok(attribute) => self.offset += attribute.value.len() + 2,
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

/// MD5(Code + Identifier + Length + 16 zero octets + Attributes + Secret) (RFC 2866 §3).
pub fn request_authenticator(
    code: u8,
    identifier: u8,
    length: u16,
    attributes: &[u8],
    secret: &[u8],
) -> [u8; 16] {
    md5_of(&[
        &[code, identifier],
        &length.to_be_bytes(),
        &[0; 16],
        attributes,
        secret,
    ])
}

/// Encodes an Accounting-Response to a request: code 5, the request's identifier, the given
/// attributes (a server copies the request's Proxy-State attributes, nothing else), and the
/// Response Authenticator MD5(Code + ID + Length + Request Authenticator + Attributes +
/// Secret) (RFC 2866 §3). Attributes that would not fit in [`MAX_PACKET_LEN`] are left out.
pub fn encode_response(request: &Header, attributes: &[Attribute<'_>], secret: &[u8]) -> Vec<u8> {
    let mut packet = Vec::with_capacity(HEADER_LEN);
    packet.extend_from_slice(&[ACCOUNTING_RESPONSE, request.identifier, 0, 0]);
    packet.extend_from_slice(&request.authenticator);
    for attribute in attributes {
        // A value can hold at most 253 bytes; longer ones cannot come from a decoded packet.
        let Ok(length) = u8::try_from(attribute.value.len() + 2) else {
            continue;
        };
        if packet.len() + usize::from(length) > MAX_PACKET_LEN {
            break;
        }
        packet.extend_from_slice(&[attribute.kind, length]);
        packet.extend_from_slice(attribute.value);
    }
    // At most MAX_PACKET_LEN, so it fits in the u16 length field.
    let length = u16::try_from(packet.len()).unwrap_or(u16::MAX);
    packet[2..4].copy_from_slice(&length.to_be_bytes());
    let authenticator = md5_of(&[&packet, secret]);
    packet[4..HEADER_LEN].copy_from_slice(&authenticator);
    packet
}

fn md5_of(parts: &[&[u8]]) -> [u8; 16] {
    let mut hasher = Md5::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut out = [0; 16];
    out.copy_from_slice(&digest);
    out
}

/// Compares without an early exit, so that timing does not tell how many leading bytes of a
/// forged authenticator were right.
fn constant_time_eq(left: &[u8; 16], right: &[u8; 16]) -> bool {
    let difference = left
        .iter()
        .zip(right)
        .fold(0u8, |acc, (left, right)| acc | (left ^ right));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests;
