//! Following a log file across rotation and truncation, from a persisted [`Checkpoint`].
//!
//! [`FileTailer::poll`] is synchronous and does plain file IO; the gateway's async loop calls
//! it on a blocking thread every poll interval. It yields complete lines, each with the
//! sequence number it has in the source (that number is part of the event id, so it must not
//! depend on when the agent restarted: it is stored in the checkpoint).
//!
//! Rotation by rename (logrotate's default) is detected by the inode at the path changing:
//! the old file is read to its end first, then the new one from its start. Rotation by
//! `copytruncate` shows as the file shrinking below the read offset: reading restarts at 0.
//! After a restart, a checkpoint whose inode is no longer at the path is looked for among
//! the rotated siblings (`charon.log.1`, `charon.log-20261125`), so lines written between the
//! stop and the rotation are not lost.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Most bytes read in one poll; a large backlog is read over several polls.
const READ_CHUNK: usize = 1024 * 1024;

/// Where reading of one source stands. Written after the lines before `offset` are spooled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub dev: u64,
    pub ino: u64,
    /// Byte offset of the first line not yet handed out.
    pub offset: u64,
    /// Sequence number the next line gets.
    pub next_seq: u64,
}

impl Checkpoint {
    pub fn load(path: &Path) -> Result<Option<Checkpoint>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| Error::Corrupt {
                    what: "checkpoint",
                    path: path.to_owned(),
                    detail: error.to_string(),
                }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::io("read checkpoint", path, error)),
        }
    }

    /// Writes atomically (temp file, fsync, rename).
    pub fn store(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).map_err(|error| Error::Corrupt {
            what: "checkpoint",
            path: path.to_owned(),
            detail: error.to_string(),
        })?;
        crate::fsutil::write_atomic(path, &bytes)
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

/// A file being followed.
#[derive(Debug)]
pub struct FileTailer {
    path: PathBuf,
    max_line_bytes: usize,
    file: Option<OpenFile>,
    /// A file that was rotated away and still has to be read to its end.
    draining: Option<OpenFile>,
    next_seq: u64,
    /// The start of an incomplete last line, kept until its `\n` arrives.
    partial: Vec<u8>,
    partial_len: usize,
    n_bytes_polled: usize,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Offset of the next byte to read.
    read_offset: u64,
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

impl FileTailer {
    /// Starts following `path` from a checkpoint, or from the beginning (`from_end = false`)
    /// or end of the current file when there is none. A missing file is not an error: it is
    /// picked up when it appears.
    pub fn open(
        path: &Path,
        checkpoint: Option<Checkpoint>,
        from_end: bool,
        max_line_bytes: usize,
    ) -> Result<(FileTailer, Vec<String>)> {
        let mut tailer = FileTailer {
            path: path.to_owned(),
            max_line_bytes,
            file: None,
            draining: None,
            next_seq: checkpoint.map_or(0, |checkpoint| checkpoint.next_seq),
            partial: Vec::new(),
            partial_len: 0,
            n_bytes_polled: 0,
        };
        let mut notices = Vec::new();
        let current = open_identified(path)?;
        match (checkpoint, current) {
            (Some(checkpoint), Some(mut current))
                if (current.dev, current.ino) == (checkpoint.dev, checkpoint.ino) =>
            {
                let len = current
                    .file
                    .metadata()
                    .map_err(|error| Error::io("stat", path, error))?
                    .len();
                if len < checkpoint.offset {
                    notices.push(format!("{} is shorter than its checkpoint ({len} < {}): truncated, reading from the start", path.display(), checkpoint.offset));
                } else {
                    current.read_offset = checkpoint.offset;
                }
                tailer.file = Some(current);
            }
            (Some(checkpoint), current) => {
                match find_rotated(path, checkpoint.dev, checkpoint.ino)? {
                    Some((rotated_path, mut rotated)) => {
                        notices.push(format!("resuming the rotated {} at offset {}", rotated_path.display(), checkpoint.offset));
                        rotated.read_offset = checkpoint.offset;
                        tailer.draining = Some(rotated);
                    }
                    None if checkpoint.offset > 0 => notices.push(format!(
                        "the file of the checkpoint of {} is gone (not found among rotated siblings); lines written to it after offset {} could not be read",
                        path.display(),
                        checkpoint.offset
                    )),
                    None => {}
                }
                tailer.file = current;
            }
            (None, Some(mut current)) => {
                if from_end {
                    current.read_offset = current
                        .file
                        .metadata()
                        .map_err(|error| Error::io("stat", path, error))?
                        .len();
                }
                tailer.file = Some(current);
            }
            (None, None) => {}
        }
        Ok((tailer, notices))
    }

    /// The checkpoint that describes the state after every line returned so far. An
    /// incomplete last line is not included: it is read again after a restart.
    pub fn checkpoint(&self) -> Checkpoint {
        let (dev, ino, offset) = match (&self.draining, &self.file) {
            (Some(open), _) | (None, Some(open)) => (
                open.dev,
                open.ino,
                open.read_offset - self.partial_len as u64,
            ),
            (None, None) => (0, 0, 0),
        };
        Checkpoint {
            dev,
            ino,
            offset,
            next_seq: self.next_seq,
        }
    }

    /// Reads what is new: the rest of a rotated file, then new lines of the current one.
    pub fn poll(&mut self) -> Result<Poll> {
        self.n_bytes_polled = 0;
        let mut poll = self.poll_inner()?;
        poll.n_bytes = self.n_bytes_polled;
        Ok(poll)
    }

    fn poll_inner(&mut self) -> Result<Poll> {
        let mut poll = Poll::default();
        if let Some(mut draining) = self.draining.take() {
            let done = self.read_from(&mut draining, &mut poll.lines)?;
            if !done {
                self.draining = Some(draining);
                return Ok(poll);
            }
            // The rotated file is finished; an unterminated last line ends with it.
            self.flush_partial(&mut poll.lines);
            poll.notices.push(format!(
                "finished the rotated file of {}",
                self.path.display()
            ));
        }
        // Has the path been rotated or truncated since the last poll?
        match std::fs::metadata(&self.path) {
            Ok(metadata) => {
                let rotated = self
                    .file
                    .as_ref()
                    .is_none_or(|open| (open.dev, open.ino) != (metadata.dev(), metadata.ino()));
                if rotated {
                    if let Some(mut old) = self.file.take() {
                        poll.notices.push(format!(
                            "{} was rotated; reading the rest of the old file",
                            self.path.display()
                        ));
                        let done = self.read_from(&mut old, &mut poll.lines)?;
                        if !done {
                            self.draining = Some(old);
                            self.file = open_identified(&self.path)?;
                            return Ok(poll);
                        }
                        self.flush_partial(&mut poll.lines);
                    }
                    self.file = open_identified(&self.path)?;
                } else if let Some(open) = &mut self.file
                    && metadata.len() < open.read_offset
                {
                    poll.notices.push(format!(
                        "{} was truncated ({} < {}); reading from the start",
                        self.path.display(),
                        metadata.len(),
                        open.read_offset
                    ));
                    open.read_offset = 0;
                    self.partial.clear();
                    self.partial_len = 0;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                // Rotated away and not yet recreated: finish what we have open.
            }
            Err(error) => return Err(Error::io("stat", &self.path, error)),
        }
        if let Some(mut open) = self.file.take() {
            let result = self.read_from(&mut open, &mut poll.lines);
            self.file = Some(open);
            result?;
        }
        Ok(poll)
    }

    /// Reads up to [`READ_CHUNK`] bytes; returns whether the file's end was reached.
    fn read_from(&mut self, open: &mut OpenFile, lines: &mut Vec<RawLine>) -> Result<bool> {
        open.file
            .seek(SeekFrom::Start(open.read_offset))
            .map_err(|error| Error::io("seek", &self.path, error))?;
        let mut chunk = vec![0u8; READ_CHUNK];
        let n_read = loop {
            match open.file.read(&mut chunk) {
                Ok(n_read) => break n_read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(Error::io("read", &self.path, error)),
            }
        };
        open.read_offset += n_read as u64;
        self.n_bytes_polled += n_read;
        self.split_lines(&chunk[..n_read], lines);
        Ok(n_read < READ_CHUNK)
    }

    fn split_lines(&mut self, mut bytes: &[u8], lines: &mut Vec<RawLine>) {
        while let Some(newline) = bytes.iter().position(|&byte| byte == b'\n') {
            self.append_partial(&bytes[..newline]);
            self.partial_len += 1; // the newline itself, for the checkpoint offset
            let line = std::mem::take(&mut self.partial);
            let len = self.partial_len - 1;
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

    /// Hands out an unterminated last line, for one-shot reads of a file that is complete
    /// (`tunnelwatch ingest`); a live tailer waits for the newline instead.
    pub fn take_partial(&mut self) -> Option<RawLine> {
        let mut lines = Vec::new();
        self.flush_partial(&mut lines);
        lines.pop()
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

/// Looks for the file with the given identity among `path`'s rotated siblings.
fn find_rotated(path: &Path, dev: u64, ino: u64) -> Result<Option<(PathBuf, OpenFile)>> {
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
        if (metadata.dev(), metadata.ino()) == (dev, ino) {
            let candidate = entry.path();
            if let Some(open) = open_identified(&candidate)? {
                return Ok(Some((candidate, open)));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests;
