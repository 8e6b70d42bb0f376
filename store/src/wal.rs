//! The write-ahead log: what the store accepted but has not yet written to Parquet.
//!
//! One file per generation (`wal/NNNNNNNNNNNNNNNNNNNN.wal`), records
//! `[u32 length][u32 crc32][JSON WalRecord]`. [`Wal::append`] fsyncs before it returns, and
//! the collector acknowledges a batch only after that, so an acknowledged event survives
//! `kill -9`. A flush to Parquet starts a new generation first and deletes the old one after
//! the Parquet files are in place.
//!
//! Reading stops at the first torn or corrupt record of a generation (a crash during an
//! append); the writer cuts it off when it opens that generation again.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use model::{Event, Session};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const HEADER_BYTES: usize = 8;
const MAX_RECORD_BYTES: usize = 512 * 1024 * 1024;

/// One appended batch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalRecord {
    pub events: Vec<Event>,
    pub sessions: Vec<Session>,
    /// Entries of the audit trail (absent in records from before it existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit: Vec<model::AuditEntry>,
    /// Late session join corrections (absent in records from before they existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub session_joins: Vec<model::SessionJoinUpdate>,
    /// The collector's checkpoint as of this batch (the newest one in the log wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<model::CollectorCheckpoint>,
    /// Alert state changes (absent in records from before the alerting engine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<model::AlertRecord>,
}

#[derive(Debug)]
pub(crate) struct Wal {
    dir: PathBuf,
    generation: u64,
    file: File,
    /// Length of the valid records of the current generation.
    len: u64,
    /// A failed append could not be undone: refuse appends until the next generation.
    broken: bool,
    /// The encoding buffer, reused from record to record.
    scratch: Vec<u8>,
}

impl Wal {
    /// Opens the newest generation for appending (after cutting a torn tail), or creates the
    /// first one.
    pub(crate) fn open(dir: &Path) -> Result<Wal> {
        std::fs::create_dir_all(dir).map_err(|error| Error::io("create directory", dir, error))?;
        let generation = generations(dir)?.last().copied().unwrap_or(1);
        let path = generation_path(dir, generation);
        let (_, valid_len, _) = read_generation(&path)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|error| Error::io("open", &path, error))?;
        file.set_len(valid_len)
            .map_err(|error| Error::io("truncate torn tail of", &path, error))?;
        Ok(Wal {
            dir: dir.to_owned(),
            generation,
            file,
            len: valid_len,
            broken: false,
            scratch: Vec::new(),
        })
    }

    pub(crate) fn append(&mut self, record: &WalRecord) -> Result<()> {
        // The header's place first, then the payload encoded straight behind it (no copy).
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        bytes.extend_from_slice(&[0; HEADER_BYTES]);
        serde_json::to_writer(&mut bytes, record)
            .map_err(|error| Error::Internal(format!("cannot encode a WAL record: {error}")))?;
        let payload_len = bytes.len() - HEADER_BYTES;
        let length = u32::try_from(payload_len).map_err(|_| {
            Error::Internal(format!("WAL record of {payload_len} bytes is too large"))
        })?;
        let crc = crc32fast::hash(&bytes[HEADER_BYTES..]);
        bytes[..4].copy_from_slice(&length.to_le_bytes());
        bytes[4..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        let result = self.write_record(&bytes);
        // Keep the buffer for the next record unless it grew huge.
        if bytes.capacity() <= 16 * 1024 * 1024 {
            self.scratch = bytes;
        }
        result
    }

    fn write_record(&mut self, bytes: &[u8]) -> Result<()> {
        let path = generation_path(&self.dir, self.generation);
        if self.broken {
            // Try again to cut the torn record (the disk may have room again).
            let repaired = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            if repaired.is_err() {
                return Err(Error::Internal(format!(
                    "{} could not be repaired after a failed append; waiting for space or the next flush",
                    path.display()
                )));
            }
            self.broken = false;
        }
        let written = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            // Undo a partial record, or later records would sit behind a torn one and be cut
            // off at the next start.
            let undone = self
                .file
                .set_len(self.len)
                .and_then(|()| self.file.sync_data());
            if undone.is_err() {
                self.broken = true;
            }
            return Err(Error::io("append to", &path, error));
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Starts a new generation; returns the generations before it (to delete after a flush).
    pub(crate) fn rotate(&mut self) -> Result<Vec<u64>> {
        let older: Vec<u64> = generations(&self.dir)?
            .into_iter()
            .filter(|generation| *generation <= self.generation)
            .collect();
        let next = self.generation + 1;
        let path = generation_path(&self.dir, next);
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|error| Error::io("create", &path, error))?;
        self.generation = next;
        self.len = 0;
        self.broken = false;
        durable::sync_dir(&self.dir)?;
        Ok(older)
    }

    pub(crate) fn remove(&self, generations_to_remove: &[u64]) -> Result<()> {
        for generation in generations_to_remove {
            let path = generation_path(&self.dir, *generation);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io("delete", &path, error)),
            }
        }
        Ok(durable::sync_dir(&self.dir)?)
    }
}

/// Every record of every generation, oldest first, and how many records were unreadable.
pub(crate) fn read_all(dir: &Path) -> Result<(Vec<WalRecord>, u64)> {
    let mut records = Vec::new();
    let mut n_corrupt = 0;
    let gens = match generations(dir) {
        Ok(gens) => gens,
        Err(Error::File(durable::FileError::Io { source, .. }))
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok((records, 0));
        }
        Err(error) => return Err(error),
    };
    for generation in gens {
        let (generation_records, _, corrupt) = read_generation(&generation_path(dir, generation))?;
        records.extend(generation_records);
        n_corrupt += u64::from(corrupt);
    }
    Ok((records, n_corrupt))
}

/// Records of one generation, the length of its valid prefix, and whether a damaged tail
/// followed that prefix.
fn read_generation(path: &Path) -> Result<(Vec<WalRecord>, u64, bool)> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut file) => {
            file.read_to_end(&mut bytes)
                .map_err(|error| Error::io("read", path, error))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Vec::new(), 0, false));
        }
        Err(error) => return Err(Error::io("open", path, error)),
    }
    let mut records = Vec::new();
    let mut offset = 0usize;
    while offset + HEADER_BYTES <= bytes.len() {
        let length = u32::from_le_bytes([
            bytes[offset],
            bytes[offset + 1],
            bytes[offset + 2],
            bytes[offset + 3],
        ]) as usize;
        let crc = u32::from_le_bytes([
            bytes[offset + 4],
            bytes[offset + 5],
            bytes[offset + 6],
            bytes[offset + 7],
        ]);
        let start = offset + HEADER_BYTES;
        if length > MAX_RECORD_BYTES || start + length > bytes.len() {
            break;
        }
        let payload = &bytes[start..start + length];
        if crc32fast::hash(payload) != crc {
            break;
        }
        match serde_json::from_slice::<WalRecord>(payload) {
            Ok(record) => records.push(record),
            Err(error) => {
                tracing::error!(path = %path.display(), offset, %error, "undecodable WAL record");
                break;
            }
        }
        offset = start + length;
    }
    let damaged = offset < bytes.len();
    if damaged {
        tracing::warn!(path = %path.display(), valid_bytes = offset, total_bytes = bytes.len(), "WAL generation ends in a torn or corrupt record");
    }
    Ok((records, offset as u64, damaged))
}

fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{generation:020}.wal"))
}

fn generations(dir: &Path) -> Result<Vec<u64>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::io("list", dir, error))?;
    let mut generations: Vec<u64> = entries
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .strip_suffix(".wal")?
                .parse()
                .ok()
        })
        .collect();
    generations.sort_unstable();
    Ok(generations)
}
