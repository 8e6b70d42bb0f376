//! The VICI wire format, as documented in strongSwan's
//! `src/libcharon/plugins/vici/README.md`: pure encoding and decoding, no IO.
//!
//! On the stream every packet is a 32-bit big-endian length followed by that many bytes. A
//! packet is one byte of [`PacketType`], for named types a length-prefixed name, then a
//! message: a sequence of elements (section start/end, key/value, list start/item/end).
//!
//! Everything here treats its input as hostile: lengths are checked before anything is
//! allocated, nesting is bounded, and every error says what was wrong and where.

use std::fmt;

/// The largest packet charon sends or accepts (`VICI_MESSAGE_SIZE_MAX`, 512 KiB).
pub const MAX_PACKET_BYTES: usize = 512 * 1024;
/// Sections nested deeper than this are refused (charon nests at most a handful deep).
pub const MAX_DEPTH: usize = 32;

/// The kind of a VICI packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    CmdRequest,
    CmdResponse,
    CmdUnknown,
    EventRegister,
    EventUnregister,
    EventConfirm,
    EventUnknown,
    Event,
}

impl PacketType {
    fn from_byte(byte: u8) -> Option<PacketType> {
        Some(match byte {
            0 => PacketType::CmdRequest,
            1 => PacketType::CmdResponse,
            2 => PacketType::CmdUnknown,
            3 => PacketType::EventRegister,
            4 => PacketType::EventUnregister,
            5 => PacketType::EventConfirm,
            6 => PacketType::EventUnknown,
            7 => PacketType::Event,
            _ => return None,
        })
    }

    fn as_byte(self) -> u8 {
        match self {
            PacketType::CmdRequest => 0,
            PacketType::CmdResponse => 1,
            PacketType::CmdUnknown => 2,
            PacketType::EventRegister => 3,
            PacketType::EventUnregister => 4,
            PacketType::EventConfirm => 5,
            PacketType::EventUnknown => 6,
            PacketType::Event => 7,
        }
    }

    /// Whether packets of this type carry a name (command or event name).
    pub fn is_named(self) -> bool {
        matches!(
            self,
            PacketType::CmdRequest
                | PacketType::EventRegister
                | PacketType::EventUnregister
                | PacketType::Event
        )
    }
}

/// One value of a message: a string (bytes: charon does not promise UTF-8), a list of
/// strings, or a nested section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(Vec<u8>),
    List(Vec<Vec<u8>>),
    Section(Message),
}

/// A VICI message: named values in the order they came.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    pub entries: Vec<(String, Value)>,
}

impl Message {
    pub fn new() -> Message {
        Message::default()
    }

    /// Adds a key/value pair (builder style, for requests).
    pub fn with(mut self, key: &str, value: impl Into<Vec<u8>>) -> Message {
        self.entries
            .push((key.to_owned(), Value::Str(value.into())));
        self
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value)
    }

    /// The string value of `key`, with invalid UTF-8 kept visible as `\xNN`.
    pub fn str(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::Str(bytes) => Some(crate::parse::decode_lossless(bytes).into_owned()),
            _ => None,
        }
    }

    pub fn section(&self, key: &str) -> Option<&Message> {
        match self.get(key)? {
            Value::Section(section) => Some(section),
            _ => None,
        }
    }

    /// The items of list `key`, decoded like [`Message::str`].
    pub fn list(&self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Value::List(items)) => items
                .iter()
                .map(|item| crate::parse::decode_lossless(item).into_owned())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The sections of this message, with their names (e.g. the IKE_SAs of an event).
    pub fn sections(&self) -> impl Iterator<Item = (&str, &Message)> {
        self.entries.iter().filter_map(|(name, value)| match value {
            Value::Section(section) => Some((name.as_str(), section)),
            _ => None,
        })
    }

    /// The message as JSON (sections as objects, lists as arrays), for `event.original` and
    /// fixtures. Duplicate keys keep the last value.
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        for (name, value) in &self.entries {
            let value = match value {
                Value::Str(bytes) => {
                    serde_json::Value::String(crate::parse::decode_lossless(bytes).into_owned())
                }
                Value::List(items) => serde_json::Value::Array(
                    items
                        .iter()
                        .map(|item| {
                            serde_json::Value::String(
                                crate::parse::decode_lossless(item).into_owned(),
                            )
                        })
                        .collect(),
                ),
                Value::Section(section) => section.to_json(),
            };
            object.insert(name.clone(), value);
        }
        serde_json::Value::Object(object)
    }

    /// The inverse of [`Message::to_json`] (strings, arrays of strings, objects), for fixtures
    /// and tests.
    pub fn from_json(json: &serde_json::Value) -> Result<Message, DecodeError> {
        let serde_json::Value::Object(object) = json else {
            return Err(DecodeError::new(0, "a VICI message must be a JSON object"));
        };
        let mut message = Message::new();
        for (name, value) in object {
            let value = match value {
                serde_json::Value::String(text) => Value::Str(text.clone().into_bytes()),
                serde_json::Value::Array(items) => Value::List(
                    items
                        .iter()
                        .map(|item| match item {
                            serde_json::Value::String(text) => Ok(text.clone().into_bytes()),
                            _ => Err(DecodeError::new(0, "VICI list items must be strings")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                serde_json::Value::Object(_) => Value::Section(Message::from_json(value)?),
                _ => {
                    return Err(DecodeError::new(
                        0,
                        "VICI values are strings, lists or sections",
                    ));
                }
            };
            message.entries.push((name.clone(), value));
        }
        Ok(message)
    }
}

/// A decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: PacketType,
    /// The command or event name of named packets.
    pub name: Option<String>,
    pub message: Message,
}

/// Why bytes are not a valid VICI packet, and at which offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid VICI packet at byte {offset}: {detail}")]
pub struct DecodeError {
    pub offset: usize,
    pub detail: String,
}

impl DecodeError {
    fn new(offset: usize, detail: impl Into<String>) -> DecodeError {
        DecodeError {
            offset,
            detail: detail.into(),
        }
    }
}

/// Why a packet cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("VICI {what} `{name}` is longer than 255 bytes")]
    NameTooLong { what: &'static str, name: String },
    #[error("VICI value of `{key}` is longer than 65535 bytes")]
    ValueTooLong { key: String },
    #[error("VICI packet of {0} bytes exceeds the 512 KiB limit")]
    PacketTooLarge(usize),
}

const SECTION_START: u8 = 1;
const SECTION_END: u8 = 2;
const KEY_VALUE: u8 = 3;
const LIST_START: u8 = 4;
const LIST_ITEM: u8 = 5;
const LIST_END: u8 = 6;

/// Decodes one packet (without the 4-byte length prefix of the stream).
pub fn decode_packet(bytes: &[u8]) -> Result<Packet, DecodeError> {
    if bytes.len() > MAX_PACKET_BYTES {
        return Err(DecodeError::new(
            0,
            format!(
                "packet of {} bytes exceeds the {MAX_PACKET_BYTES}-byte limit",
                bytes.len()
            ),
        ));
    }
    let mut reader = Reader { bytes, pos: 0 };
    let type_byte = reader.u8("packet type")?;
    let kind = PacketType::from_byte(type_byte)
        .ok_or_else(|| DecodeError::new(0, format!("unknown packet type {type_byte}")))?;
    let name = if kind.is_named() {
        Some(reader.name("packet name")?)
    } else {
        None
    };
    let message = decode_message(&mut reader)?;
    Ok(Packet {
        kind,
        name,
        message,
    })
}

fn decode_message(reader: &mut Reader<'_>) -> Result<Message, DecodeError> {
    // An explicit stack instead of recursion: depth is bounded and input-driven.
    let mut stack: Vec<(String, Message)> = Vec::new();
    let mut current = Message::new();
    let mut open_list: Option<(String, Vec<Vec<u8>>)> = None;
    while !reader.at_end() {
        let offset = reader.pos;
        let element = reader.u8("element type")?;
        if let Some((_, items)) = open_list.as_mut() {
            match element {
                LIST_ITEM => items.push(reader.value("list item")?),
                LIST_END => {
                    if let Some((name, items)) = open_list.take() {
                        current.entries.push((name, Value::List(items)));
                    }
                }
                other => {
                    return Err(DecodeError::new(
                        offset,
                        format!("element type {other} inside a list (only items and list end)"),
                    ));
                }
            }
            continue;
        }
        match element {
            SECTION_START => {
                let name = reader.name("section name")?;
                if stack.len() >= MAX_DEPTH {
                    return Err(DecodeError::new(
                        offset,
                        format!("sections nested deeper than {MAX_DEPTH}"),
                    ));
                }
                stack.push((name, std::mem::take(&mut current)));
            }
            SECTION_END => {
                let Some((name, mut parent)) = stack.pop() else {
                    return Err(DecodeError::new(offset, "section end without a section"));
                };
                parent
                    .entries
                    .push((name, Value::Section(std::mem::take(&mut current))));
                current = parent;
            }
            KEY_VALUE => {
                let name = reader.name("key")?;
                let value = reader.value("value")?;
                current.entries.push((name, Value::Str(value)));
            }
            LIST_START => {
                let name = reader.name("list name")?;
                open_list = Some((name, Vec::new()));
            }
            LIST_ITEM | LIST_END => {
                return Err(DecodeError::new(
                    offset,
                    format!("list element type {element} outside a list"),
                ));
            }
            other => {
                return Err(DecodeError::new(
                    offset,
                    format!("unknown element type {other}"),
                ));
            }
        }
    }
    if let Some((name, _)) = open_list {
        return Err(DecodeError::new(
            reader.pos,
            format!("list `{name}` is not closed"),
        ));
    }
    if let Some((name, _)) = stack.last() {
        return Err(DecodeError::new(
            reader.pos,
            format!("section `{name}` is not closed"),
        ));
    }
    Ok(current)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| DecodeError::new(self.pos, format!("truncated before the {what}")))?;
        self.pos += 1;
        Ok(byte)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(DecodeError::new(
                self.pos,
                format!(
                    "{what} of {n} bytes runs past the end ({} bytes left)",
                    self.bytes.len() - self.pos
                ),
            ));
        };
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// A name: one length byte, then that many bytes (kept visible if not UTF-8).
    fn name(&mut self, what: &str) -> Result<String, DecodeError> {
        let len = usize::from(self.u8(what)?);
        let bytes = self.take(len, what)?;
        Ok(crate::parse::decode_lossless(bytes).into_owned())
    }

    /// A value: a 16-bit big-endian length, then that many bytes.
    fn value(&mut self, what: &str) -> Result<Vec<u8>, DecodeError> {
        let high = self.u8(what)?;
        let low = self.u8(what)?;
        let len = usize::from(u16::from_be_bytes([high, low]));
        Ok(self.take(len, what)?.to_vec())
    }
}

/// Encodes a packet with its 4-byte length prefix, ready to write to the socket.
pub fn encode_packet(
    kind: PacketType,
    name: Option<&str>,
    message: &Message,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = vec![0, 0, 0, 0, kind.as_byte()];
    if kind.is_named() {
        push_name(&mut out, "packet name", name.unwrap_or_default())?;
    }
    encode_message(&mut out, message)?;
    let len = out.len() - 4;
    if len > MAX_PACKET_BYTES {
        return Err(EncodeError::PacketTooLarge(len));
    }
    out[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

fn encode_message(out: &mut Vec<u8>, message: &Message) -> Result<(), EncodeError> {
    for (name, value) in &message.entries {
        match value {
            Value::Str(bytes) => {
                out.push(KEY_VALUE);
                push_name(out, "key", name)?;
                push_value(out, name, bytes)?;
            }
            Value::List(items) => {
                out.push(LIST_START);
                push_name(out, "list name", name)?;
                for item in items {
                    out.push(LIST_ITEM);
                    push_value(out, name, item)?;
                }
                out.push(LIST_END);
            }
            Value::Section(section) => {
                out.push(SECTION_START);
                push_name(out, "section name", name)?;
                encode_message(out, section)?;
                out.push(SECTION_END);
            }
        }
    }
    Ok(())
}

fn push_name(out: &mut Vec<u8>, what: &'static str, name: &str) -> Result<(), EncodeError> {
    let len = u8::try_from(name.len()).map_err(|_| EncodeError::NameTooLong {
        what,
        name: name.to_owned(),
    })?;
    out.push(len);
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

fn push_value(out: &mut Vec<u8>, key: &str, value: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(value.len()).map_err(|_| EncodeError::ValueTooLong {
        key: key.to_owned(),
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Splits a byte stream into packets: feed it what the socket gave, take whole packets out.
#[derive(Debug, Default)]
pub struct FrameReader {
    buffer: Vec<u8>,
}

/// A length prefix announced a packet larger than [`MAX_PACKET_BYTES`]: the stream cannot be
/// resynchronised and must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VICI peer announced a packet of {0} bytes (limit {MAX_PACKET_BYTES}); closing the stream")]
pub struct FrameTooLarge(pub u64);

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole packet, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameTooLarge> {
        let Some(prefix) = self.buffer.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*prefix) as usize;
        if len > MAX_PACKET_BYTES {
            return Err(FrameTooLarge(len as u64));
        }
        if self.buffer.len() < 4 + len {
            return Ok(None);
        }
        let frame = self.buffer[4..4 + len].to_vec();
        self.buffer.drain(..4 + len);
        Ok(Some(frame))
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PacketType::CmdRequest => "CMD_REQUEST",
            PacketType::CmdResponse => "CMD_RESPONSE",
            PacketType::CmdUnknown => "CMD_UNKNOWN",
            PacketType::EventRegister => "EVENT_REGISTER",
            PacketType::EventUnregister => "EVENT_UNREGISTER",
            PacketType::EventConfirm => "EVENT_CONFIRM",
            PacketType::EventUnknown => "EVENT_UNKNOWN",
            PacketType::Event => "EVENT",
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests;
