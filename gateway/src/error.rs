//! The gateway's error type.

use std::path::PathBuf;

/// What can go wrong in the gateway. Malformed log lines are not errors (they become
/// pipeline-error events); these are failures of the agent's own machinery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt {what} {path}: {detail}")]
    Corrupt {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("invalid gateway configuration: {0}")]
    Config(String),
    #[error("the spool is full ({used} of {limit} bytes); waiting for the server to take events")]
    SpoolFull { used: u64, limit: u64 },
    /// A network socket (e.g. the RADIUS accounting listener) could not be set up.
    #[error("failed to {action} {addr}")]
    Socket {
        action: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The server could not be reached or could not take the batch now (5xx, 429): retry.
    #[error("server {url} did not take the batch: {detail}")]
    Server { url: String, detail: String },
    /// The server refused this batch (4xx): retrying the same bytes will not help, unless
    /// the refusal was of the agent's token.
    #[error("server {url} refused the batch with HTTP {status}: {detail}")]
    Rejected {
        url: String,
        status: u16,
        refusal: crate::ship::Refusal,
        detail: String,
    },
    /// charon's VICI socket could not be reached, or spoke something that is not VICI.
    #[error("VICI {socket}: {detail}")]
    Vici { socket: PathBuf, detail: String },
    /// A capture source could not open its interface (the message names the step).
    #[error(transparent)]
    Capture(#[from] crate::flow::capture::CaptureError),
}

/// Coarse classes of [`Error`], for callers that map errors to a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Invalid,
    Unavailable,
    Internal,
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } | Error::Corrupt { .. } => ErrorKind::Internal,
            Error::Config(_) => ErrorKind::Invalid,
            Error::Socket { .. } => ErrorKind::Unavailable,
            Error::SpoolFull { .. } | Error::Server { .. } => ErrorKind::Unavailable,
            Error::Rejected { .. } => ErrorKind::Invalid,
            Error::Vici { .. } | Error::Capture(_) => ErrorKind::Unavailable,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
