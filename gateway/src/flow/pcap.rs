//! Reading capture files: classic pcap (either byte order, micro- or nanosecond timestamps)
//! and pcapng (section, interface, enhanced and simple packet blocks; the interfaces of a
//! file may differ in link type and timestamp resolution).
//!
//! [`PcapReader`] streams: it holds one frame at a time, so a capture of any size is read in
//! bounded memory. A file cut in the middle of a record ends with [`PcapError::Truncated`]
//! naming the offset, after every complete frame before it was handed out.

use std::io::{self, Read};

use super::decode::LinkType;

/// The largest frame a record may hold. GRO super-frames reach 64 KiB (BIG TCP more);
/// anything larger is taken for a corrupt length field.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// The largest pcapng block accepted (a frame plus generous options).
const MAX_BLOCK_BYTES: usize = MAX_FRAME_BYTES + 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot read the capture: {0}")]
    Io(#[from] io::Error),
    #[error("not a pcap or pcapng file (it begins with {0:02x?})")]
    NotPcap([u8; 4]),
    #[error("the capture ends in the middle of a record at byte {offset}")]
    Truncated { offset: u64 },
    #[error("corrupt capture at byte {offset}: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error(
        "link type {0} is not supported (tunnelwatch reads Ethernet, raw IP, Linux cooked v1/v2 and BSD loopback captures)"
    )]
    UnsupportedLinkType(u32),
}

/// One captured frame, borrowed from the reader until the next call.
#[derive(Debug)]
pub struct Frame<'a> {
    /// Capture time, nanoseconds since the Unix epoch.
    pub timestamp_ns: i64,
    /// `None` when the frame's interface has a link type tunnelwatch does not read.
    pub link: Option<LinkType>,
    /// Length on the wire (the record may hold less: the snap length).
    pub wire_len: usize,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
enum Container {
    Pcap {
        swapped: bool,
        nanos: bool,
        link: LinkType,
    },
    PcapNg {
        swapped: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Option<LinkType>,
    /// Units per second of this interface's timestamps.
    units_per_sec: u64,
    offset_secs: i64,
}

/// A streaming reader of pcap and pcapng files.
#[derive(Debug)]
pub struct PcapReader<R> {
    reader: R,
    container: Container,
    interfaces: Vec<Interface>,
    /// Bytes consumed so far (for error messages).
    offset: u64,
    buffer: Vec<u8>,
    /// pcapng simple packet blocks carry no time: they get the last time seen.
    last_timestamp_ns: i64,
}

impl<R: Read> PcapReader<R> {
    /// Reads the file header. `reader` should be buffered.
    pub fn new(mut reader: R) -> Result<PcapReader<R>, PcapError> {
        let mut magic = [0u8; 4];
        read_exact_or_truncated(&mut reader, &mut magic, 0)?;
        let mut this = PcapReader {
            reader,
            container: Container::PcapNg { swapped: false },
            interfaces: Vec::new(),
            offset: 4,
            buffer: Vec::new(),
            last_timestamp_ns: 0,
        };
        match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] => {
                this.pcap_header(magic, false)?
            }
            [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d] => this.pcap_header(magic, true)?,
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                let mut length = [0u8; 4];
                this.read_exact(&mut length)?;
                this.section_header(length, 0)?;
            }
            other => return Err(PcapError::NotPcap(other)),
        }
        Ok(this)
    }

    fn pcap_header(&mut self, magic: [u8; 4], nanos: bool) -> Result<(), PcapError> {
        // Little-endian files start with the magic's low byte.
        let swapped = magic[0] == 0xa1;
        let mut rest = [0u8; 20];
        self.read_exact(&mut rest)?;
        let link_value = u32_at(&rest, 16, swapped);
        let link =
            LinkType::from_pcap(link_value).ok_or(PcapError::UnsupportedLinkType(link_value))?;
        self.container = Container::Pcap {
            swapped,
            nanos,
            link,
        };
        Ok(())
    }

    /// Reads the rest of a section header block, given its length field (the block type and
    /// the length were read, the byte-order magic is next): its magic sets the byte order
    /// from here on, and a new section starts a new list of interfaces.
    fn section_header(&mut self, length: [u8; 4], start: u64) -> Result<(), PcapError> {
        let mut magic = [0u8; 4];
        self.read_exact(&mut magic)?;
        let swapped = match magic {
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            _ => {
                return Err(PcapError::Corrupt {
                    offset: start,
                    reason: "pcapng section header has no byte-order magic".to_owned(),
                });
            }
        };
        let total = u32_at(&length, 0, swapped) as usize;
        self.block_body(total, 12, start)?;
        self.container = Container::PcapNg { swapped };
        self.interfaces.clear();
        Ok(())
    }

    /// Reads `total - already` more bytes of a block into the buffer, checking the length.
    fn block_body(&mut self, total: usize, already: usize, start: u64) -> Result<&[u8], PcapError> {
        if total < already + 4 || !total.is_multiple_of(4) || total > MAX_BLOCK_BYTES {
            return Err(PcapError::Corrupt {
                offset: start,
                reason: format!("pcapng block length {total} is impossible"),
            });
        }
        self.buffer.resize(total - already, 0);
        let mut buffer = std::mem::take(&mut self.buffer);
        let read = self.read_exact(&mut buffer);
        self.buffer = buffer;
        read?;
        Ok(&self.buffer)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), PcapError> {
        read_exact_or_truncated(&mut self.reader, buf, self.offset)?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    /// The next frame, `None` at the end of the file.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, PcapError> {
        match self.container {
            Container::Pcap {
                swapped,
                nanos,
                link,
            } => self.next_pcap_record(swapped, nanos, link),
            Container::PcapNg { .. } => self.next_pcapng_packet(),
        }
    }

    fn next_pcap_record(
        &mut self,
        swapped: bool,
        nanos: bool,
        link: LinkType,
    ) -> Result<Option<Frame<'_>>, PcapError> {
        let start = self.offset;
        let mut header = [0u8; 16];
        if !self.read_first(&mut header)? {
            return Ok(None);
        }
        let seconds = i64::from(u32_at(&header, 0, swapped));
        let fraction = i64::from(u32_at(&header, 4, swapped));
        let captured = u32_at(&header, 8, swapped) as usize;
        let wire_len = u32_at(&header, 12, swapped) as usize;
        if captured > MAX_FRAME_BYTES {
            return Err(PcapError::Corrupt {
                offset: start,
                reason: format!("record of {captured} bytes (at most {MAX_FRAME_BYTES} are read)"),
            });
        }
        let fraction_ns = if nanos { fraction } else { fraction * 1000 };
        let timestamp_ns = seconds * 1_000_000_000 + fraction_ns;
        self.buffer.resize(captured, 0);
        let mut buffer = std::mem::take(&mut self.buffer);
        let read = self.read_exact(&mut buffer);
        self.buffer = buffer;
        read?;
        self.last_timestamp_ns = timestamp_ns;
        Ok(Some(Frame {
            timestamp_ns,
            link: Some(link),
            wire_len: wire_len.max(captured),
            data: &self.buffer,
        }))
    }

    fn next_pcapng_packet(&mut self) -> Result<Option<Frame<'_>>, PcapError> {
        loop {
            let start = self.offset;
            let mut head = [0u8; 8];
            if !self.read_first(&mut head)? {
                return Ok(None);
            }
            if head[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
                self.section_header([head[4], head[5], head[6], head[7]], start)?;
                continue;
            }
            let Container::PcapNg { swapped } = self.container else {
                return Ok(None);
            };
            let block_type = u32_at(&head, 0, swapped);
            let total = u32_at(&head, 4, swapped) as usize;
            self.block_body(total, 8, start)?;
            let body_len = self.buffer.len() - 4;
            match block_type {
                // Interface description block.
                1 => {
                    let interface = parse_interface(&self.buffer[..body_len], swapped);
                    self.interfaces.push(interface);
                }
                // Enhanced packet block.
                6 => {
                    let body = &self.buffer[..body_len];
                    if body.len() < 20 {
                        return Err(self.corrupt(start, "enhanced packet block too short"));
                    }
                    let interface_id = u32_at(body, 0, swapped) as usize;
                    let high = u64::from(u32_at(body, 4, swapped));
                    let low = u64::from(u32_at(body, 8, swapped));
                    let captured = u32_at(body, 12, swapped) as usize;
                    let wire_len = u32_at(body, 16, swapped) as usize;
                    if 20 + captured > body.len() {
                        return Err(self.corrupt(start, "packet longer than its block"));
                    }
                    let Some(interface) = self.interfaces.get(interface_id).copied() else {
                        return Err(self.corrupt(
                            start,
                            &format!("packet of undeclared interface {interface_id}"),
                        ));
                    };
                    let timestamp_ns = interface.to_nanos((high << 32) | low);
                    self.last_timestamp_ns = timestamp_ns;
                    return Ok(Some(Frame {
                        timestamp_ns,
                        link: interface.link,
                        wire_len: wire_len.max(captured),
                        data: &self.buffer[20..20 + captured],
                    }));
                }
                // Simple packet block: interface 0, no timestamp.
                3 => {
                    let body = &self.buffer[..body_len];
                    if body.len() < 4 {
                        return Err(self.corrupt(start, "simple packet block too short"));
                    }
                    let wire_len = u32_at(body, 0, swapped) as usize;
                    let captured = wire_len.min(body.len() - 4);
                    let Some(interface) = self.interfaces.first().copied() else {
                        return Err(self.corrupt(start, "packet before any interface"));
                    };
                    return Ok(Some(Frame {
                        timestamp_ns: self.last_timestamp_ns,
                        link: interface.link,
                        wire_len: wire_len.max(captured),
                        data: &self.buffer[4..4 + captured],
                    }));
                }
                // Name resolution, statistics, custom and other blocks say nothing we need.
                _ => continue,
            }
        }
    }

    fn corrupt(&self, offset: u64, reason: &str) -> PcapError {
        PcapError::Corrupt {
            offset,
            reason: reason.to_owned(),
        }
    }

    /// Reads a record header; `false` at a clean end of file, `Truncated` inside one.
    fn read_first(&mut self, buf: &mut [u8]) -> Result<bool, PcapError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => {
                    return Err(PcapError::Truncated {
                        offset: self.offset,
                    });
                }
                Ok(n) => filled += n,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.offset += buf.len() as u64;
        Ok(true)
    }
}

impl Interface {
    fn to_nanos(self, units: u64) -> i64 {
        let units_per_sec = self.units_per_sec.max(1);
        let seconds = units / units_per_sec;
        let rest = units % units_per_sec;
        let nanos = u128::from(rest) * 1_000_000_000 / u128::from(units_per_sec);
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 2_000_000_000);
        (seconds.saturating_add(self.offset_secs))
            .saturating_mul(1_000_000_000)
            .saturating_add(nanos as i64)
    }
}

fn parse_interface(body: &[u8], swapped: bool) -> Interface {
    let link_value = body.get(..2).map_or(u32::MAX, |b| {
        u32::from(if swapped {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    });
    let mut interface = Interface {
        link: LinkType::from_pcap(link_value),
        units_per_sec: 1_000_000,
        offset_secs: 0,
    };
    // Options after link type (2), reserved (2) and snap length (4).
    let mut options = body.get(8..).unwrap_or(&[]);
    while options.len() >= 4 {
        let code = u16_at(options, 0, swapped);
        let len = usize::from(u16_at(options, 2, swapped));
        let Some(value) = options.get(4..4 + len) else {
            break;
        };
        match (code, value) {
            (0, _) => break,
            (9, [resolution, ..]) => {
                let exponent = u32::from(resolution & 0x7f);
                let units = if resolution & 0x80 == 0 {
                    10u64.checked_pow(exponent)
                } else {
                    2u64.checked_pow(exponent)
                };
                // Finer than nanoseconds or absurd: keep microseconds rather than overflow.
                if let Some(units) = units.filter(|units| *units <= 1_000_000_000_000) {
                    interface.units_per_sec = units;
                }
            }
            (14, value) if value.len() >= 8 => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&value[..8]);
                interface.offset_secs = if swapped {
                    i64::from_be_bytes(bytes)
                } else {
                    i64::from_le_bytes(bytes)
                };
            }
            _ => {}
        }
        let padded = (len + 3) & !3;
        options = options.get(4 + padded..).unwrap_or(&[]);
    }
    interface
}

fn read_exact_or_truncated<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    offset: u64,
) -> Result<(), PcapError> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
            Err(PcapError::Truncated { offset })
        }
        Err(error) => Err(error.into()),
    }
}

/// Reads a word in the file's byte order (`swapped`: the file is big-endian).
fn u32_at(bytes: &[u8], offset: usize, big_endian: bool) -> u32 {
    let mut word = [0u8; 4];
    if let Some(slice) = bytes.get(offset..offset + 4) {
        word.copy_from_slice(slice);
    }
    if big_endian {
        u32::from_be_bytes(word)
    } else {
        u32::from_le_bytes(word)
    }
}

fn u16_at(bytes: &[u8], offset: usize, big_endian: bool) -> u16 {
    let mut word = [0u8; 2];
    if let Some(slice) = bytes.get(offset..offset + 2) {
        word.copy_from_slice(slice);
    }
    if big_endian {
        u16::from_be_bytes(word)
    } else {
        u16::from_le_bytes(word)
    }
}
