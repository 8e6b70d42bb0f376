//! The spool: segment files of records ([`segment`]) read through named cursors ([`cursors`]).

mod cursors;
mod segment;

use std::borrow::Borrow;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{DirLock, Error, Result, create_dir_all, lock_dir, sync_dir};
use segment::{HEADER_BYTES, MAX_RECORD_BYTES, Record};

/// How large a spool may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes from the slowest cursor on (whole segments count until they are deleted).
    pub max_bytes: u64,
    /// A segment is closed once the next record would take it past this.
    pub segment_bytes: u64,
}

impl Limits {
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

    pub fn new(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            segment_bytes: Limits::DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// Where a cursor stands: the next record it reads. Persisted as
/// `{"segment":N,"offset":M}`; segment 0 is "before the first segment".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Records read through a cursor, and the position after them: hand it to
/// [`Spool::commit`] once they are dealt with.
#[derive(Debug)]
pub struct Peeked<R> {
    pub records: Vec<R>,
    pub next: Position,
    /// What was skipped on the way (also counted in [`Spool::n_corrupt`]), for the caller
    /// to report.
    pub damage: Vec<Damage>,
}

/// A record that could not be read, and what was skipped for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Its header or checksum is wrong: the rest of its segment is skipped (no record
    /// boundary after it can be trusted).
    Corrupt { path: PathBuf, offset: u64 },
    /// Whole and checksummed, but not a record of this spool's type: skipped alone.
    Undecodable {
        path: PathBuf,
        offset: u64,
        error: String,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Corrupt { path, offset } => write!(
                f,
                "corrupt spool record at {}:{offset}; skipping the rest of the segment",
                path.display()
            ),
            Damage::Undecodable {
                path,
                offset,
                error,
            } => write!(
                f,
                "undecodable spool record at {}:{offset}, skipped: {error}",
                path.display()
            ),
        }
    }
}

/// An append-only, fsynced, bounded log of serde records on disk, read by named cursors.
///
/// Records go to segment files (`seg-NNNNNNNNNNNNNNNNNNNN.log`), each record
/// `[u32 length][u32 crc32][JSON]`, and [`Spool::append`] returns only once its record is
/// fsynced. A segment is closed once the next record would take it past
/// [`Limits::segment_bytes`]. Each consumer reads through its own cursor
/// ([`Spool::peek`]), which moves only when it says so ([`Spool::commit`]); its position is
/// then written atomically to `cursor-<name>.json`. Segments that every cursor has left are
/// deleted, so the records before the slowest cursor are removed a segment at a time, and
/// the spool holds at most [`Limits::max_bytes`] from the slowest cursor on: past that,
/// appends fail with [`Error::Full`] and write nothing (one record always fits in an empty
/// spool, however large).
///
/// A crash during an append leaves a torn record at the end of the last segment; it is cut
/// off when the spool opens (its append never returned, so nobody relied on it). A record
/// that is damaged later (a flipped bit, a segment cut short) is skipped with the rest of its
/// segment, and a whole record that does not decode as `R` is skipped alone; each is counted
/// ([`Spool::n_corrupt`]) and handed to the reader as [`Damage`], never a panic or a stuck
/// cursor. One process per spool directory (`LOCK`, [`crate::lock_dir`]).
///
/// The set of cursors is given at open. A cursor without a file starts where the slowest
/// of the others stands (at the first record of a new spool), and its file is written at
/// once; the file of a cursor no longer named is removed (it would hold records forever).
/// A spool written before cursors had names (one `cursor.json`, the gateway's spool before
/// this crate) is read as it is: `cursor.json` is where every cursor without a file starts
/// (and a cursor whose file is behind it moves up to it: that version ran after this one).
#[derive(Debug)]
pub struct Spool<R> {
    dir: PathBuf,
    limits: Limits,
    writer: File,
    write_segment: u64,
    write_offset: u64,
    /// In the order given at open.
    cursors: Vec<(String, Position)>,
    /// Bytes in segments from the slowest cursor's segment on, less its offset.
    used_bytes: u64,
    /// Records found damaged while reading, and skipped.
    n_corrupt: u64,
    /// Held while the spool is open: one process per directory.
    _lock: DirLock,
    _records: PhantomData<fn() -> R>,
}

impl<R> Spool<R> {
    /// Opens (or creates) the spool in `dir` with these cursors; see [`Spool`] for
    /// what happens to cursors that are new or no longer named, and to a torn tail.
    pub fn open(dir: &Path, cursor_names: &[&str], limits: Limits) -> Result<Spool<R>> {
        cursors::check_names(dir, cursor_names)?;
        create_dir_all(dir)?;
        let lock = lock_dir(dir)?;
        let legacy = cursors::load(&cursors::legacy_path(dir))?;
        let mut stored = Vec::with_capacity(cursor_names.len());
        for name in cursor_names {
            stored.push(cursors::load(&cursors::path(dir, name))?);
        }
        // Where a cursor without a file starts: the unnamed cursor of an older spool, else
        // the slowest of the others, else the first record. The unnamed cursor also moves a
        // cursor whose file is behind it: the older version ran after this one, and
        // everything before either position was read.
        let start = legacy
            .or_else(|| stored.iter().flatten().min().copied())
            .unwrap_or_default();
        let mut unsaved: Vec<bool> = stored
            .iter()
            .map(|position| position.is_none() || legacy > *position)
            .collect();
        let mut positions: Vec<Position> = stored
            .iter()
            .map(|position| match position {
                Some(position) => legacy.map_or(*position, |legacy| legacy.max(*position)),
                None => start,
            })
            .collect();

        let segments = segment::list(dir)?;
        let write_segment = positions
            .iter()
            .map(|position| position.segment)
            .chain(segments.last().copied())
            .max()
            .unwrap_or(1)
            .max(1);
        let first_segment = segments.first().copied().unwrap_or(write_segment);
        for position in &mut positions {
            if position.segment == 0 {
                *position = Position {
                    segment: first_segment,
                    offset: 0,
                };
            }
        }
        let slowest = positions.iter().min().copied().unwrap_or_default();
        // Segments behind every cursor were read by all (a crash came before their deletion).
        for segment in segments
            .iter()
            .filter(|segment| **segment < slowest.segment)
        {
            let path = segment::path(dir, *segment);
            std::fs::remove_file(&path).map_err(|error| Error::io("delete read", &path, error))?;
        }

        // Records before the slowest cursor were read by all; only what follows must be whole.
        let write_path = segment::path(dir, write_segment);
        let scan_from = if slowest.segment == write_segment {
            slowest.offset
        } else {
            0
        };
        let valid_len = segment::valid_prefix_len(&write_path, scan_from)?;
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
        // A cursor past the cut (damage found behind it) reads on from where appends go on.
        for (position, unsaved) in positions.iter_mut().zip(&mut unsaved) {
            if position.segment == write_segment && position.offset > valid_len {
                position.offset = valid_len;
                *unsaved = true;
            }
        }

        for ((name, position), unsaved) in cursor_names.iter().zip(&positions).zip(&unsaved) {
            if *unsaved {
                cursors::store(&cursors::path(dir, name), *position)?;
            }
        }
        let mut gone: Vec<PathBuf> = cursors::stored_names(dir)?
            .into_iter()
            .filter(|name| !cursor_names.contains(&name.as_str()))
            .map(|name| cursors::path(dir, &name))
            .collect();
        if legacy.is_some() {
            gone.push(cursors::legacy_path(dir));
        }
        for path in &gone {
            std::fs::remove_file(path).map_err(|error| Error::io("delete", path, error))?;
        }
        // The segment created, the cut, the cursor files written and removed: on disk.
        sync_dir(dir)?;

        let mut spool = Spool {
            dir: dir.to_owned(),
            limits,
            writer,
            write_segment,
            write_offset: valid_len,
            cursors: cursor_names
                .iter()
                .map(|name| (*name).to_owned())
                .zip(positions)
                .collect(),
            used_bytes: 0,
            n_corrupt: 0,
            _lock: lock,
            _records: PhantomData,
        };
        spool.used_bytes = spool.recount()?;
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes from the slowest cursor on (approximately: whole segments count until deleted).
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes
    }

    /// Records found damaged while reading since open, and skipped.
    pub fn n_corrupt(&self) -> u64 {
        self.n_corrupt
    }

    /// Where `cursor` stands, if the spool has it.
    pub fn position(&self, cursor: &str) -> Option<Position> {
        self.cursors
            .iter()
            .find(|(name, _)| name == cursor)
            .map(|(_, position)| *position)
    }

    /// Where the next record goes: a cursor here has read everything.
    pub fn end(&self) -> Position {
        Position {
            segment: self.write_segment,
            offset: self.write_offset,
        }
    }

    /// Appends `record` and makes it durable (fsync) before returning. Fails with
    /// [`Error::Full`], writing nothing, when it would take the spool past
    /// [`Limits::max_bytes`]. A record of a `Vec` may be appended from a slice.
    pub fn append<Q>(&mut self, record: &Q) -> Result<()>
    where
        Q: Serialize + ?Sized,
        R: Borrow<Q>,
    {
        let payload = serde_json::to_vec(record).map_err(|error| Error::Record {
            dir: self.dir.clone(),
            detail: error.to_string(),
        })?;
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|length| *length <= MAX_RECORD_BYTES)
            .ok_or_else(|| Error::Record {
                dir: self.dir.clone(),
                detail: format!(
                    "a record of {} bytes is larger than the {MAX_RECORD_BYTES} a record may be",
                    payload.len()
                ),
            })?;
        let record_len = HEADER_BYTES + u64::from(length);
        if self.used_bytes > 0 && self.used_bytes + record_len > self.limits.max_bytes {
            return Err(Error::Full {
                dir: self.dir.clone(),
                used: self.used_bytes,
                limit: self.limits.max_bytes,
            });
        }
        if self.write_offset > 0 && self.write_offset + record_len > self.limits.segment_bytes {
            self.roll()?;
        }
        let bytes = segment::encode(&payload, length);
        let written = self
            .writer
            .seek(SeekFrom::Start(self.write_offset))
            .and_then(|_| self.writer.write_all(&bytes))
            .and_then(|()| self.writer.sync_data());
        if let Err(error) = written {
            // Leave no part of it behind (a full disk): the next append starts here again.
            let _ = self.writer.set_len(self.write_offset);
            return Err(Error::io(
                "append to",
                segment::path(&self.dir, self.write_segment),
                error,
            ));
        }
        self.write_offset += record_len;
        self.used_bytes += record_len;
        Ok(())
    }

    /// Closes the write segment and starts the next.
    fn roll(&mut self) -> Result<()> {
        let segment = self.write_segment + 1;
        let path = segment::path(&self.dir, segment);
        self.writer = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|error| Error::io("create", &path, error))?;
        sync_dir(&self.dir)?;
        self.write_segment = segment;
        self.write_offset = 0;
        Ok(())
    }

    /// Moves `cursor` to `next` (from a [`Peeked`]) and deletes the segments every cursor
    /// has left. The position is on disk before this returns; moving a cursor back is
    /// ignored.
    pub fn commit(&mut self, cursor: &str, next: Position) -> Result<()> {
        let index = self.cursor_index(cursor)?;
        if next <= self.cursors[index].1 {
            return Ok(());
        }
        if next > self.end() {
            return Err(Error::Invalid {
                dir: self.dir.clone(),
                detail: format!(
                    "cursor {cursor:?} cannot move to {next:?}, past the end {:?}",
                    self.end()
                ),
            });
        }
        let slowest_before = self.slowest();
        cursors::store(&cursors::path(&self.dir, cursor), next)?;
        self.cursors[index].1 = next;
        for segment in slowest_before.segment..self.slowest().segment {
            let path = segment::path(&self.dir, segment);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(Error::io("delete", &path, error)),
            }
        }
        self.used_bytes = self.recount()?;
        Ok(())
    }

    fn cursor_index(&self, cursor: &str) -> Result<usize> {
        self.cursors
            .iter()
            .position(|(name, _)| name == cursor)
            .ok_or_else(|| Error::Invalid {
                dir: self.dir.clone(),
                detail: format!("no cursor {cursor:?}"),
            })
    }

    fn slowest(&self) -> Position {
        self.cursors
            .iter()
            .map(|(_, position)| *position)
            .min()
            .unwrap_or_default()
    }

    fn recount(&self) -> Result<u64> {
        let slowest = self.slowest();
        let mut used = 0;
        for segment in segment::list(&self.dir)?
            .into_iter()
            .filter(|segment| *segment >= slowest.segment)
        {
            let path = segment::path(&self.dir, segment);
            used += std::fs::metadata(&path)
                .map_err(|error| Error::io("stat", &path, error))?
                .len();
        }
        Ok(used.saturating_sub(slowest.offset))
    }
}

impl<R: DeserializeOwned> Spool<R> {
    /// Reads whole records from `cursor` until `max_records` records or `max_bytes` of
    /// payload, or the end; `None` when there is nothing to read. Does not move the cursor:
    /// call [`Spool::commit`] with [`Peeked::next`] once the records are dealt with.
    pub fn peek(
        &mut self,
        cursor: &str,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<Peeked<R>>> {
        self.peek_weighted(cursor, max_records, max_bytes, |_| 1)
    }

    /// [`Spool::peek`] counting each record as `weight(record)` towards `max_weight` (the
    /// events in a batch, say). Stops at the first record that reaches it.
    pub fn peek_weighted(
        &mut self,
        cursor: &str,
        max_weight: usize,
        max_bytes: usize,
        weight: impl Fn(&R) -> usize,
    ) -> Result<Option<Peeked<R>>> {
        let start = self.cursors[self.cursor_index(cursor)?].1;
        let mut position = start;
        let mut records = Vec::new();
        let mut damage = Vec::new();
        let mut n_weight = 0usize;
        let mut n_bytes = 0usize;
        while n_weight < max_weight && n_bytes < max_bytes {
            let path = segment::path(&self.dir, position.segment);
            let record = if position >= self.end() {
                None
            } else {
                segment::read_record(&path, position.offset)?
            };
            match record {
                Some(Record::Valid(payload)) => {
                    match serde_json::from_slice::<R>(&payload) {
                        Ok(record) => {
                            n_weight = n_weight.saturating_add(weight(&record));
                            records.push(record);
                        }
                        Err(error) => {
                            self.n_corrupt += 1;
                            damage.push(Damage::Undecodable {
                                path,
                                offset: position.offset,
                                error: error.to_string(),
                            });
                        }
                    }
                    position.offset += HEADER_BYTES + payload.len() as u64;
                    n_bytes = n_bytes.saturating_add(payload.len());
                }
                Some(Record::Corrupt) => {
                    self.n_corrupt += 1;
                    damage.push(Damage::Corrupt {
                        path,
                        offset: position.offset,
                    });
                    if position.segment >= self.write_segment {
                        // New records must not land behind the damage.
                        self.roll()?;
                    }
                    position = Position {
                        segment: position.segment + 1,
                        offset: 0,
                    };
                }
                None if position.segment < self.write_segment => {
                    position = Position {
                        segment: position.segment + 1,
                        offset: 0,
                    };
                }
                None => break,
            }
        }
        Ok((position != start).then_some(Peeked {
            records,
            next: position,
            damage,
        }))
    }
}

#[cfg(test)]
mod tests;
