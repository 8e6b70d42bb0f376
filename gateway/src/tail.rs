//! Following a log file across rotation and truncation, from a persisted [`Checkpoint`].
//!
//! [`FileTailer::poll`] is synchronous and does plain file IO; the gateway's async loop calls
//! it on a blocking thread every poll interval. It yields complete lines, each with the
//! sequence number it has in the source (that number is part of the event id, so it must not
//! depend on when the agent restarted: it is stored in the checkpoint).
//!
//! Rotation by rename (logrotate's default) is detected by the inode at the path changing.
//! The daemon may go on writing to the renamed file until it reopens its log, so the old file
//! is read until it has been idle for `rotate_grace`, and only then the new one from its
//! start: lines stay in order and one checkpoint describes the position. Rotation by
//! `copytruncate` shows as the file shrinking below the read offset: reading restarts at 0.
//! After a restart, a checkpoint whose file is no longer at the path is looked for among the
//! rotated siblings (`charon.log.1`, `charon.log-20261125`). A checkpoint also holds a
//! fingerprint of the file's first bytes, so a new file that reuses an old inode is not
//! mistaken for the old one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Most bytes read in one poll; a large backlog is read over several polls.
const READ_CHUNK: usize = 1024 * 1024;
/// How many leading bytes identify a file (with its device and inode).
const FINGERPRINT_BYTES: usize = 256;

/// Where reading of one source stands. Written after the lines before `offset` are spooled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub dev: u64,
    pub ino: u64,
    /// Byte offset of the first line not yet handed out.
    pub offset: u64,
    /// Sequence number the next line gets.
    pub next_seq: u64,
    /// Identifies this source's sequence: a new one starts whenever reading starts without
    /// a checkpoint, so sequence numbers never go backwards within one source id.
    #[serde(default)]
    pub epoch: String,
    /// Length and FNV-1a hash of the file's first bytes.
    #[serde(default)]
    pub fingerprint: Option<(u32, u64)>,
}

impl Checkpoint {
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        Ok(durable::read_json(path, "checkpoint")?)
    }

    /// Writes atomically (temp file, fsync, rename, fsync of the directory).
    pub fn store(&self, path: &Path) -> Result<()> {
        Ok(durable::write_json(path, "checkpoint", self)?)
    }
}

/// How a file is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailOptions {
    /// Without a checkpoint, start at the end (only new lines) instead of the beginning.
    pub from_end: bool,
    /// Longer lines are cut to `max_line_bytes + 1` bytes (their full length is reported).
    pub max_line_bytes: usize,
    /// How long a rotated-away file must stay idle before reading moves to the new file.
    pub rotate_grace: Duration,
}

impl Default for TailOptions {
    fn default() -> TailOptions {
        TailOptions {
            from_end: false,
            max_line_bytes: crate::parse::DEFAULT_MAX_LINE_BYTES,
            rotate_grace: Duration::from_secs(2),
        }
    }
}

/// One line read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    pub seq: u64,
    /// The line without its `\n`; at most `max_line_bytes + 1` bytes (longer lines are cut).
    pub bytes: Vec<u8>,
    /// The full length of the line, which may exceed `bytes.len()`.
    pub len: usize,
}

/// What a poll found.
#[derive(Debug, Default)]
pub struct Poll {
    pub lines: Vec<RawLine>,
    /// Notable things that happened (rotation, truncation), for the log.
    pub notices: Vec<String>,
    /// Bytes read by this poll (0: nothing new).
    pub n_bytes: usize,
}

/// A file being followed.
#[derive(Debug)]
pub struct FileTailer {
    path: PathBuf,
    options: TailOptions,
    current: Option<OpenFile>,
    /// The current file is no longer at the path: drain it, then switch.
    rotated_away: bool,
    idle_since: Option<Instant>,
    epoch: String,
    lines: LineSplitter,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Offset of the next byte to read.
    read_offset: u64,
}

/// Turns byte chunks into numbered lines, keeping an incomplete last line.
#[derive(Debug)]
struct LineSplitter {
    max_line_bytes: usize,
    next_seq: u64,
    partial: Vec<u8>,
    /// Bytes of the incomplete line (may exceed `partial.len()` for an oversized line).
    partial_len: usize,
    n_bytes_polled: usize,
}

impl FileTailer {
    /// Starts following `path` from a checkpoint, or per `options` when there is none. A
    /// missing file is not an error: it is picked up when it appears.
    pub fn open(
        path: &Path,
        checkpoint: Option<Checkpoint>,
        options: TailOptions,
    ) -> Result<(FileTailer, Vec<String>)> {
        let epoch = match &checkpoint {
            Some(checkpoint) if !checkpoint.epoch.is_empty() => checkpoint.epoch.clone(),
            _ => new_epoch(),
        };
        let mut tailer = FileTailer {
            path: path.to_owned(),
            options,
            current: None,
            rotated_away: false,
            idle_since: None,
            epoch,
            lines: LineSplitter {
                max_line_bytes: options.max_line_bytes,
                next_seq: checkpoint
                    .as_ref()
                    .map_or(0, |checkpoint| checkpoint.next_seq),
                partial: Vec::new(),
                partial_len: 0,
                n_bytes_polled: 0,
            },
        };
        let mut notices = Vec::new();
        let at_path = open_identified(path)?;
        match (checkpoint, at_path) {
            (Some(checkpoint), Some(mut at_path)) if is_same_file(&at_path, &checkpoint) => {
                let len = at_path
                    .file
                    .metadata()
                    .map_err(|error| Error::io("stat", path, error))?
                    .len();
                if len < checkpoint.offset {
                    notices.push(format!(
                        "{} is shorter than its checkpoint ({len} < {}): truncated, reading from the start",
                        path.display(),
                        checkpoint.offset
                    ));
                } else {
                    at_path.read_offset = checkpoint.offset;
                }
                tailer.current = Some(at_path);
            }
            (Some(checkpoint), at_path) => match find_rotated(path, &checkpoint)? {
                Some((rotated_path, mut rotated)) => {
                    notices.push(format!(
                        "resuming the rotated {} at offset {}",
                        rotated_path.display(),
                        checkpoint.offset
                    ));
                    rotated.read_offset = checkpoint.offset;
                    tailer.current = Some(rotated);
                    tailer.rotated_away = true;
                }
                None => {
                    if checkpoint.offset > 0 {
                        notices.push(format!(
                                "the file of the checkpoint of {} is gone (not found among rotated siblings); lines written to it after offset {} could not be read",
                                path.display(),
                                checkpoint.offset
                            ));
                    }
                    tailer.current = at_path;
                }
            },
            (None, Some(mut at_path)) => {
                if options.from_end {
                    at_path.read_offset = at_path
                        .file
                        .metadata()
                        .map_err(|error| Error::io("stat", path, error))?
                        .len();
                }
                tailer.current = Some(at_path);
            }
            (None, None) => {}
        }
        Ok((tailer, notices))
    }

    /// The epoch of this source's sequence numbers (see [`Checkpoint::epoch`]).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The checkpoint that describes the state after every line returned so far. An
    /// incomplete last line is not included: it is read again after a restart.
    pub fn checkpoint(&self) -> Checkpoint {
        let (dev, ino, offset, fingerprint) = match &self.current {
            Some(open) => (
                open.dev,
                open.ino,
                open.read_offset
                    .saturating_sub(self.lines.partial_len as u64),
                fingerprint(&open.file, FINGERPRINT_BYTES),
            ),
            None => (0, 0, 0, None),
        };
        Checkpoint {
            dev,
            ino,
            offset,
            next_seq: self.lines.next_seq,
            epoch: self.epoch.clone(),
            fingerprint,
        }
    }

    /// Reads what is new.
    pub fn poll(&mut self) -> Result<Poll> {
        self.lines.n_bytes_polled = 0;
        let mut poll = Poll::default();
        let result = self.poll_into(&mut poll);
        poll.n_bytes = self.lines.n_bytes_polled;
        result.map(|()| poll)
    }

    fn poll_into(&mut self, poll: &mut Poll) -> Result<()> {
        if self.rotated_away && !self.drain(poll)? {
            return Ok(());
        }
        match std::fs::metadata(&self.path) {
            Ok(metadata) => {
                let identity = (metadata.dev(), metadata.ino());
                match &mut self.current {
                    None => self.current = open_identified(&self.path)?,
                    Some(open) if (open.dev, open.ino) != identity => {
                        poll.notices.push(format!(
                            "{} was rotated; reading the old file to its end first",
                            self.path.display()
                        ));
                        self.rotated_away = true;
                        self.idle_since = None;
                        self.drain(poll)?;
                        return Ok(());
                    }
                    Some(open) if metadata.len() < open.read_offset => {
                        poll.notices.push(format!(
                            "{} was truncated ({} < {}); reading from the start",
                            self.path.display(),
                            metadata.len(),
                            open.read_offset
                        ));
                        open.read_offset = 0;
                        self.lines.partial.clear();
                        self.lines.partial_len = 0;
                    }
                    Some(_) => {}
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Renamed away and not yet recreated: finish the open file, with the grace.
                if self.current.is_some() {
                    if !self.rotated_away {
                        poll.notices.push(format!(
                            "{} disappeared; reading the old file to its end",
                            self.path.display()
                        ));
                        self.rotated_away = true;
                        self.idle_since = None;
                    }
                    self.drain(poll)?;
                }
                return Ok(());
            }
            Err(error) => return Err(Error::io("stat", &self.path, error)),
        }
        if let Some(open) = &mut self.current {
            self.lines.read_chunk(open, &self.path, &mut poll.lines)?;
        }
        Ok(())
    }

    /// Reads the rotated-away file; returns whether it is finished (idle for the grace
    /// period), in which case it is closed and its unterminated last line handed out.
    fn drain(&mut self, poll: &mut Poll) -> Result<bool> {
        let Some(open) = &mut self.current else {
            self.rotated_away = false;
            return Ok(true);
        };
        let n_read = self.lines.read_chunk(open, &self.path, &mut poll.lines)?;
        if n_read > 0 {
            self.idle_since = None;
            return Ok(false);
        }
        let idle_since = *self.idle_since.get_or_insert_with(Instant::now);
        // The path has a new file or not: either way the old one is done only when idle.
        if idle_since.elapsed() < self.options.rotate_grace {
            return Ok(false);
        }
        self.lines.flush_partial(&mut poll.lines);
        self.current = None;
        self.rotated_away = false;
        self.idle_since = None;
        poll.notices.push(format!(
            "finished the rotated file of {}",
            self.path.display()
        ));
        Ok(true)
    }

    /// Hands out an unterminated last line, for one-shot reads of a file that is complete
    /// (`tunnelwatch ingest`); a live tailer waits for the newline instead.
    pub fn take_partial(&mut self) -> Option<RawLine> {
        let mut lines = Vec::new();
        self.lines.flush_partial(&mut lines);
        lines.pop()
    }
}

impl LineSplitter {
    /// Reads up to [`READ_CHUNK`] bytes; returns how many.
    fn read_chunk(
        &mut self,
        open: &mut OpenFile,
        path: &Path,
        lines: &mut Vec<RawLine>,
    ) -> Result<usize> {
        open.file
            .seek(SeekFrom::Start(open.read_offset))
            .map_err(|error| Error::io("seek", path, error))?;
        let mut chunk = vec![0u8; READ_CHUNK];
        let n_read = loop {
            match open.file.read(&mut chunk) {
                Ok(n_read) => break n_read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Error::io("read", path, error)),
            }
        };
        open.read_offset += n_read as u64;
        self.n_bytes_polled += n_read;
        self.split(&chunk[..n_read], lines);
        Ok(n_read)
    }

    fn split(&mut self, mut bytes: &[u8], lines: &mut Vec<RawLine>) {
        while let Some(newline) = bytes.iter().position(|&byte| byte == b'\n') {
            self.append_partial(&bytes[..newline]);
            let line = std::mem::take(&mut self.partial);
            let len = self.partial_len;
            self.partial_len = 0;
            lines.push(RawLine {
                seq: self.next_seq,
                bytes: line,
                len,
            });
            self.next_seq += 1;
            bytes = &bytes[newline + 1..];
        }
        self.append_partial(bytes);
    }

    /// Keeps at most `max_line_bytes + 1` bytes of a line, counting the rest.
    fn append_partial(&mut self, bytes: &[u8]) {
        let room = (self.max_line_bytes + 1).saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
        self.partial_len += bytes.len();
    }

    fn flush_partial(&mut self, lines: &mut Vec<RawLine>) {
        if self.partial_len > 0 {
            let line = std::mem::take(&mut self.partial);
            lines.push(RawLine {
                seq: self.next_seq,
                bytes: line,
                len: self.partial_len,
            });
            self.next_seq += 1;
            self.partial_len = 0;
        }
    }
}

fn open_identified(path: &Path) -> Result<Option<OpenFile>> {
    match File::open(path) {
        Ok(file) => {
            let metadata = file
                .metadata()
                .map_err(|error| Error::io("stat", path, error))?;
            Ok(Some(OpenFile {
                file,
                dev: metadata.dev(),
                ino: metadata.ino(),
                read_offset: 0,
            }))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::io("open", path, error)),
    }
}

/// Whether an open file is the one a checkpoint describes: same device and inode, and (when
/// the checkpoint has one) the same leading bytes.
fn is_same_file(open: &OpenFile, checkpoint: &Checkpoint) -> bool {
    if (open.dev, open.ino) != (checkpoint.dev, checkpoint.ino) {
        return false;
    }
    match checkpoint.fingerprint {
        Some((len, hash)) => fingerprint(&open.file, len as usize) == Some((len, hash)),
        None => true,
    }
}

/// Length and hash of up to `max` leading bytes.
fn fingerprint(file: &File, max: usize) -> Option<(u32, u64)> {
    let mut buf = vec![0u8; max];
    let mut filled = 0;
    while filled < max {
        match file.read_at(&mut buf[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n_read) => filled += n_read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
    Some((
        u32::try_from(filled).ok()?,
        model::hash::fnv1a(&buf[..filled]),
    ))
}

/// Looks for the checkpoint's file among `path`'s rotated siblings.
fn find_rotated(path: &Path, checkpoint: &Checkpoint) -> Result<Option<(PathBuf, OpenFile)>> {
    let (Some(dir), Some(name)) = (
        path.parent(),
        path.file_name().and_then(|name| name.to_str()),
    ) else {
        return Ok(None);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("list", dir, error)),
    };
    for entry in entries.flatten() {
        let candidate_name = entry.file_name();
        let Some(candidate_name) = candidate_name.to_str() else {
            continue;
        };
        if candidate_name == name || !candidate_name.starts_with(name) {
            continue;
        }
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        if (metadata.dev(), metadata.ino()) != (checkpoint.dev, checkpoint.ino) {
            continue;
        }
        let candidate = entry.path();
        if let Some(open) = open_identified(&candidate)?
            && is_same_file(&open, checkpoint)
        {
            return Ok(Some((candidate, open)));
        }
    }
    Ok(None)
}

/// A fresh epoch: 16 hex digits from the kernel's random source (time and pid if unreadable).
fn new_epoch() -> String {
    let mut bytes = [0u8; 8];
    let random = File::open("/dev/urandom").and_then(|mut urandom| urandom.read_exact(&mut bytes));
    if random.is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        bytes = ((nanos as u64) ^ (u64::from(std::process::id()) << 32)).to_le_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests;
