//! The on-disk spool between the tailers and the shipper.
//!
//! Events are appended as records to segment files (`seg-NNNNNNNNNNNNNNNNNNNN.log`), each
//! record `[u32 length][u32 crc32][JSON array of events]`, and fsynced before the tailer moves
//! its checkpoint. The shipper reads records from a persisted cursor and moves the cursor only
//! after the server acknowledged them; segments behind the cursor are deleted. So events
//! survive a restart of either side, and a server that is away for a while only makes the
//! spool grow, up to `spool_max_bytes`; then tailing pauses (the log files keep the lines).
//!
//! A torn record at the end (a crash during append) is cut off when the spool opens; it was
//! never acknowledged to anyone, and the tailer's checkpoint still points before it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use model::Event;
use serde::{Deserialize, Serialize};

use crate::fsutil::{create_dir_all, sync_dir, write_atomic};
use crate::{Error, Result};

const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const HEADER_BYTES: u64 = 8;
/// A record larger than this is corrupt (the writer never makes one).
const MAX_RECORD_BYTES: u32 = 256 * 1024 * 1024;

/// Position of the next record to ship.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    pub segment: u64,
    pub offset: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    writer: File,
    write_segment: u64,
    write_offset: u64,
    cursor: Cursor,
    /// Bytes in segments from the cursor's segment on.
    used_bytes: u64,
    /// Records found corrupt while reading, and skipped.
    n_corrupt: u64,
    /// Held while the spool is open: one agent per state directory.
    _lock: File,
}

/// Records read from the spool, and the cursor after them.
#[derive(Debug)]
pub struct Peeked {
    pub events: Vec<Event>,
    pub next: Cursor,
}

impl Spool {
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool> {
        create_dir_all(dir)?;
        let cursor_path = dir.join("cursor.json");
        let mut cursor = match std::fs::read(&cursor_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| Error::Corrupt {
                what: "spool cursor",
                path: cursor_path.clone(),
                detail: error.to_string(),
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Cursor::default(),
            Err(error) => return Err(Error::io("read", &cursor_path, error)),
        };
        let lock = lock_dir(dir)?;
        let segments = list_segments(dir)?;
        let write_segment = segments
            .last()
            .copied()
            .unwrap_or(1)
            .max(cursor.segment)
            .max(1);
        if cursor.segment == 0 {
            cursor = Cursor {
                segment: segments.first().copied().unwrap_or(write_segment),
                offset: 0,
            };
        }
        // Segments behind the cursor were shipped (a crash came before their deletion).
        for segment in segments.iter().filter(|segment| **segment < cursor.segment) {
            let path = segment_path(dir, *segment);
            std::fs::remove_file(&path)
                .map_err(|error| Error::io("delete shipped", &path, error))?;
        }
        let write_path = segment_path(dir, write_segment);
        // Records before the cursor were shipped; only what follows it must be intact.
        let scan_from = if cursor.segment == write_segment {
            cursor.offset
        } else {
            0
        };
        let valid_len = valid_prefix_len(&write_path, scan_from)?;
        let writer = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&write_path)
            .map_err(|error| Error::io("open", &write_path, error))?;
        writer
            .set_len(valid_len)
            .map_err(|error| Error::io("truncate torn tail of", &write_path, error))?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            writer,
            write_segment,
            write_offset: valid_len,
            cursor,
            used_bytes: 0,
            n_corrupt: 0,
            _lock: lock,
        };
        spool.used_bytes = spool.recount()?;
        Ok(spool)
    }

    /// Bytes waiting to be shipped (approximately: whole segments count until deleted).
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    pub fn n_corrupt(&self) -> u64 {
        self.n_corrupt
    }

    /// Appends events as one record and makes it durable. Fails with [`Error::SpoolFull`]
    /// (and writes nothing) when the spool would exceed its bound.
    pub fn append(&mut self, events: &[Event]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let payload = serde_json::to_vec(events).map_err(|error| Error::Corrupt {
            what: "event batch",
            path: self.dir.clone(),
            detail: error.to_string(),
        })?;
        let record_len = HEADER_BYTES + payload.len() as u64;
        // One record may always go into an empty spool, however large.
        if self.used_bytes > 0 && self.used_bytes + record_len > self.max_bytes {
            return Err(Error::SpoolFull {
                used: self.used_bytes,
                limit: self.max_bytes,
            });
        }
        if self.write_offset > 0 && self.write_offset + record_len > SEGMENT_BYTES {
            self.roll()?;
        }
        let length = u32::try_from(payload.len()).map_err(|_| Error::Corrupt {
            what: "event batch",
            path: self.dir.clone(),
            detail: format!(
                "batch of {} bytes is too large for one record",
                payload.len()
            ),
        })?;
        let mut record = Vec::with_capacity(record_len as usize);
        record.extend_from_slice(&length.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        let path = segment_path(&self.dir, self.write_segment);
        self.writer
            .seek(SeekFrom::Start(self.write_offset))
            .and_then(|_| self.writer.write_all(&record))
            .and_then(|()| self.writer.sync_data())
            .map_err(|error| Error::io("append to", &path, error))?;
        self.write_offset += record_len;
        self.used_bytes += record_len;
        Ok(())
    }

    fn roll(&mut self) -> Result<()> {
        self.write_segment += 1;
        let path = segment_path(&self.dir, self.write_segment);
        self.writer = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|error| Error::io("create", &path, error))?;
        sync_dir(&path)?;
        self.write_offset = 0;
        Ok(())
    }

    /// Reads whole records from the cursor until at least `max_events` events or
    /// `max_bytes` of records, or the end. Does not move the cursor: call [`Spool::commit`]
    /// once the events are acknowledged.
    pub fn peek(&mut self, max_events: usize, max_bytes: usize) -> Result<Option<Peeked>> {
        let mut events = Vec::new();
        let mut position = self.cursor;
        let mut n_bytes = 0usize;
        while events.len() < max_events && n_bytes < max_bytes {
            let path = segment_path(&self.dir, position.segment);
            let record =
                if position.segment == self.write_segment && position.offset >= self.write_offset {
                    None
                } else {
                    read_record(&path, position.offset)?
                };
            match record {
                Some(Record::Valid(payload)) => {
                    let batch: Vec<Event> = match serde_json::from_slice(&payload) {
                        Ok(batch) => batch,
                        Err(error) => {
                            tracing::error!(path = %path.display(), offset = position.offset, %error, "skipping undecodable spool record");
                            self.n_corrupt += 1;
                            Vec::new()
                        }
                    };
                    position.offset += HEADER_BYTES + payload.len() as u64;
                    n_bytes += payload.len();
                    events.extend(batch);
                }
                Some(Record::Corrupt) => {
                    tracing::error!(path = %path.display(), offset = position.offset, "corrupt spool record; skipping the rest of the segment");
                    self.n_corrupt += 1;
                    if position.segment >= self.write_segment {
                        // New records must not land behind the damage.
                        self.roll()?;
                    }
                    position = Cursor {
                        segment: position.segment + 1,
                        offset: 0,
                    };
                }
                None if position.segment < self.write_segment => {
                    position = Cursor {
                        segment: position.segment + 1,
                        offset: 0,
                    };
                }
                None => break,
            }
        }
        Ok((position != self.cursor).then_some(Peeked {
            events,
            next: position,
        }))
    }

    /// Moves the cursor past acknowledged records and deletes finished segments.
    pub fn commit(&mut self, next: Cursor) -> Result<()> {
        if next <= self.cursor {
            return Ok(());
        }
        let cursor_path = self.dir.join("cursor.json");
        let bytes = serde_json::to_vec(&next).map_err(|error| Error::Corrupt {
            what: "spool cursor",
            path: cursor_path.clone(),
            detail: error.to_string(),
        })?;
        write_atomic(&cursor_path, &bytes)?;
        for segment in self.cursor.segment..next.segment {
            let path = segment_path(&self.dir, segment);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io("delete", &path, error)),
            }
        }
        self.cursor = next;
        self.used_bytes = self.recount()?;
        Ok(())
    }

    fn recount(&self) -> Result<u64> {
        let mut used = 0;
        for segment in list_segments(&self.dir)?
            .into_iter()
            .filter(|segment| *segment >= self.cursor.segment)
        {
            let path = segment_path(&self.dir, segment);
            used += std::fs::metadata(&path)
                .map_err(|error| Error::io("stat", &path, error))?
                .len();
        }
        Ok(used.saturating_sub(self.cursor.offset))
    }
}

enum Record {
    Valid(Vec<u8>),
    Corrupt,
}

fn read_record(path: &Path, offset: u64) -> Result<Option<Record>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("open", path, error)),
    };
    let len = file
        .metadata()
        .map_err(|error| Error::io("stat", path, error))?
        .len();
    if offset + HEADER_BYTES > len {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_BYTES as usize];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut header))
        .map_err(|error| Error::io("read", path, error))?;
    let (length_bytes, crc_bytes) = header.split_at(4);
    let length = u32::from_le_bytes(length_bytes.try_into().unwrap_or_default());
    let crc = u32::from_le_bytes(crc_bytes.try_into().unwrap_or_default());
    if length > MAX_RECORD_BYTES || offset + HEADER_BYTES + u64::from(length) > len {
        return Ok(Some(Record::Corrupt));
    }
    let mut payload = vec![0u8; length as usize];
    file.read_exact(&mut payload)
        .map_err(|error| Error::io("read", path, error))?;
    if crc32fast::hash(&payload) != crc {
        return Ok(Some(Record::Corrupt));
    }
    Ok(Some(Record::Valid(payload)))
}

/// Length of the longest prefix of whole, valid records, scanning from `start` (a record
/// boundary), or `start` itself when the file is shorter.
fn valid_prefix_len(path: &Path, start: u64) -> Result<u64> {
    let mut offset = start;
    while let Some(Record::Valid(payload)) = read_record(path, offset)? {
        offset += HEADER_BYTES + payload.len() as u64;
    }
    Ok(offset)
}

/// Takes the directory's lock file, or says which process holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| Error::io("open", &path, error))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
                .map_err(|error| Error::io("write", &path, error))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(Error::Config(format!(
                "{} is in use by another tunnelwatch gateway (pid {}); give each agent its own state_dir",
                dir.display(),
                holder.trim()
            )))
        }
        Err(std::fs::TryLockError::Error(error)) => Err(Error::io("lock", &path, error)),
    }
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("seg-{segment:020}.log"))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use model::{EventBody, EventId, Observer, PipelineError, RejectReason};

    fn event(seq: u64) -> Event {
        Event {
            id: EventId::new("gw/test", seq, 0),
            timestamp: jiff::Timestamp::UNIX_EPOCH,
            dataset: "test".to_owned(),
            observer: Observer::default(),
            original: format!("line {seq}"),
            session_id: None,
            source_geo: None,
            body: EventBody::PipelineError(PipelineError {
                reason: RejectReason::Malformed,
                message: String::new(),
                original_len: 6,
            }),
        }
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events.iter().map(|event| event.id.seq).collect()
    }

    #[test]
    fn append_peek_commit_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(spool.peek(10, usize::MAX).unwrap().is_none());
        spool.append(&[event(0), event(1)]).unwrap();
        spool.append(&[event(2)]).unwrap();
        let peeked = spool.peek(2, usize::MAX).unwrap().unwrap();
        assert_eq!(seqs(&peeked.events), [0, 1]);
        // Not committed: a reopen sees everything again.
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let peeked = spool.peek(100, usize::MAX).unwrap().unwrap();
        assert_eq!(seqs(&peeked.events), [0, 1, 2]);
        let first = spool.peek(1, usize::MAX).unwrap().unwrap();
        spool.commit(first.next).unwrap();
        drop(spool);
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(
            seqs(&spool.peek(100, usize::MAX).unwrap().unwrap().events),
            [2]
        );
        let rest = spool.peek(100, usize::MAX).unwrap().unwrap();
        spool.commit(rest.next).unwrap();
        assert!(spool.peek(100, usize::MAX).unwrap().is_none());
        assert_eq!(spool.used_bytes(), 0);
    }

    #[test]
    fn a_torn_tail_is_cut_and_appends_continue() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[event(0)]).unwrap();
        drop(spool);
        let segment = segment_path(dir.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
        file.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap(); // header of a record that never finished
        drop(file);
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[event(1)]).unwrap();
        assert_eq!(
            seqs(&spool.peek(100, usize::MAX).unwrap().unwrap().events),
            [0, 1]
        );
    }

    #[test]
    fn a_full_spool_refuses_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 300).unwrap();
        spool.append(&[event(0)]).unwrap();
        let error = spool.append(&[event(1), event(2), event(3)]).unwrap_err();
        assert!(matches!(error, Error::SpoolFull { .. }), "{error}");
        assert_eq!(
            seqs(&spool.peek(100, usize::MAX).unwrap().unwrap().events),
            [0]
        );
        let all = spool.peek(100, usize::MAX).unwrap().unwrap();
        spool.commit(all.next).unwrap();
        spool.append(&[event(1), event(2), event(3)]).unwrap();
    }

    #[test]
    fn one_agent_per_spool_and_shipped_segments_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        let error = Spool::open(dir.path(), 1 << 30).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("in use by another tunnelwatch gateway"),
            "{error}"
        );
        drop(spool);
        // A crash after the cursor moved but before the old segment was deleted.
        std::fs::write(segment_path(dir.path(), 1), b"").unwrap();
        std::fs::write(segment_path(dir.path(), 2), b"").unwrap();
        std::fs::write(
            dir.path().join("cursor.json"),
            br#"{"segment":2,"offset":0}"#,
        )
        .unwrap();
        let spool = Spool::open(dir.path(), 1 << 30).unwrap();
        assert!(std::fs::metadata(segment_path(dir.path(), 1)).is_err());
        assert_eq!(spool.used_bytes(), 0);
    }

    #[test]
    fn corrupt_records_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 30).unwrap();
        spool.append(&[event(0)]).unwrap();
        spool.append(&[event(1)]).unwrap();
        // Flip a payload byte of the first record.
        let segment = segment_path(dir.path(), 1);
        let mut bytes = std::fs::read(&segment).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&segment, &bytes).unwrap();
        // The corrupt record makes the rest of its segment unreadable: skipped and counted,
        // never a panic or a stuck spool.
        let peeked = spool.peek(100, usize::MAX).unwrap().unwrap();
        assert!(peeked.events.is_empty());
        assert_eq!(spool.n_corrupt(), 1);
        spool.commit(peeked.next).unwrap();
        spool.append(&[event(2)]).unwrap();
        assert_eq!(
            seqs(&spool.peek(100, usize::MAX).unwrap().unwrap().events),
            [2]
        );
    }
}
