//! The durable-file toolkit's error types.
//!
//! `durable` is a leaf beneath `model`, so its errors have no `model::ErrorKind`: every crate
//! that uses it turns them into its own `Error` (the gateway's and the store's `From`), whose
//! kind and wording are that crate's (a held lock is "another tunnelwatch gateway" in one and
//! "another tunnelwatch process" in the other). A failed or corrupt file ([`FileError`]) is
//! worded the same everywhere, so those crates hold it as it is.

use std::path::PathBuf;

/// A file that could not be read or written, or that is not what this version wrote: the
/// failures every crate that keeps files words the same way. The gateway's and the store's
/// errors hold it as it is (their `File` variant), so the wording is written once, here.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that must be read whole is not what this version wrote (a cursor, a state
    /// file, a segment): never guessed at.
    #[error("corrupt {what} {path}: {detail}")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
}

impl FileError {
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> FileError {
        FileError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub fn corrupt(
        what: &'static str,
        path: impl Into<PathBuf>,
        detail: impl Into<String>,
    ) -> FileError {
        FileError::Corrupt {
            what,
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// The operating system's reason, for a failed read or write.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            FileError::Io { source, .. } => Some(source.kind()),
            FileError::Corrupt { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    File(#[from] FileError),
    /// Another process holds the directory's lock ([`crate::lock_dir`]).
    #[error("{dir} is in use by another process (pid {pid})")]
    InUse { dir: PathBuf, pid: String },
    /// The record would take the spool past its bound: nothing was written.
    #[error("the spool {dir} is full ({used} of {limit} bytes)")]
    Full { dir: PathBuf, used: u64, limit: u64 },
    /// A value that JSON cannot hold (a map with keys that are not strings).
    #[error("cannot encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
    /// A record that cannot be spooled: it does not encode, or is larger than a record may be.
    #[error("cannot spool a record in {dir}: {detail}")]
    Record { dir: PathBuf, detail: String },
    /// The caller's mistake: an invalid or unknown cursor name, a position past the end.
    #[error("invalid use of the spool {dir}: {detail}")]
    Invalid { dir: PathBuf, detail: String },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::File(FileError::io(action, path, source))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
