//! The segment files: their names and their records, `[u32 length][u32 crc32][payload]`
//! (little-endian; the CRC-32 of the payload).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::crc32::checksum;
use crate::{Error, Result};

pub(crate) const HEADER_BYTES: u64 = 8;
/// A record larger than this is corrupt; the writer refuses to make one.
pub(crate) const MAX_RECORD_BYTES: u32 = 256 * 1024 * 1024;

pub(crate) enum Record {
    Valid(Vec<u8>),
    /// A header whose length runs past the end of the file or past [`MAX_RECORD_BYTES`], or a
    /// payload that does not match its checksum.
    Corrupt,
}

/// `seg-NNNNNNNNNNNNNNNNNNNN.log`: twenty digits, so that names sort as numbers.
pub(crate) fn path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("seg-{segment:020}.log"))
}

/// The segments in `dir`, in order.
pub(crate) fn list(dir: &Path) -> Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::io("list", dir, error))?;
    let mut segments: Vec<u64> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            name.to_str()?
                .strip_prefix("seg-")?
                .strip_suffix(".log")?
                .parse()
                .ok()
        })
        .collect();
    segments.sort_unstable();
    Ok(segments)
}

/// A record with its header, ready to be appended.
pub(crate) fn encode(payload: &[u8], length: u32) -> Vec<u8> {
    let mut record = Vec::with_capacity(HEADER_BYTES as usize + payload.len());
    record.extend_from_slice(&length.to_le_bytes());
    record.extend_from_slice(&checksum(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// The record at `offset`, or `None` at the end of the file (or when the file is not there,
/// or too short for a header: a tail that was never completed).
pub(crate) fn read_record(path: &Path, offset: u64) -> Result<Option<Record>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("open", path, error)),
    };
    let len = file
        .metadata()
        .map_err(|error| Error::io("stat", path, error))?
        .len();
    if offset.saturating_add(HEADER_BYTES) > len {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_BYTES as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut header))
        .map_err(|error| Error::io("read", path, error))?;
    let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if length > MAX_RECORD_BYTES || offset + HEADER_BYTES + u64::from(length) > len {
        return Ok(Some(Record::Corrupt));
    }
    let mut payload = vec![0u8; length as usize];
    file.read_exact(&mut payload)
        .map_err(|error| Error::io("read", path, error))?;
    if checksum(&payload) != crc {
        return Ok(Some(Record::Corrupt));
    }
    Ok(Some(Record::Valid(payload)))
}

/// Where the longest run of whole, valid records starting at `start` (a record boundary)
/// ends; `start` itself when the file is shorter.
pub(crate) fn valid_prefix_len(path: &Path, start: u64) -> Result<u64> {
    let mut offset = start;
    while let Some(Record::Valid(payload)) = read_record(path, offset)? {
        offset += HEADER_BYTES + payload.len() as u64;
    }
    Ok(offset)
}
