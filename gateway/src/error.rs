//! The gateway's error type.

use std::path::PathBuf;

use model::ErrorKind;

/// What can go wrong in the gateway. Malformed log lines are not errors (they become
/// pipeline-error events); these are failures of the agent's own machinery.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the agent reads or keeps (a log, a capture, the spool, a checkpoint) could not
    /// be read or written, or is not what was written.
    #[error(transparent)]
    File(#[from] durable::FileError),
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
    /// A fault of the agent itself that neither input nor configuration explains: a task
    /// that panicked or was cancelled, a poisoned lock, a value that would not encode.
    #[error("internal gateway error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Error {
        Error::File(durable::FileError::io(action, path, source))
    }

    /// A task (`tail`, `checkpoint`, `spool`, …) that ended without returning: it panicked or
    /// was cancelled.
    pub(crate) fn task_failed(task: &str, join_error: tokio::task::JoinError) -> Error {
        Error::Internal(format!("{task} task failed: {join_error}"))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> model::ErrorKind {
        match self {
            Error::File(file) if file.io_kind() == Some(std::io::ErrorKind::NotFound) => {
                ErrorKind::NotFound
            }
            Error::File(_) | Error::Internal(_) => ErrorKind::Internal,
            Error::Config(_) => ErrorKind::Invalid,
            Error::Socket { .. } => ErrorKind::Unavailable,
            Error::SpoolFull { .. } | Error::Server { .. } => ErrorKind::Unavailable,
            Error::Rejected { .. } => ErrorKind::Invalid,
            Error::Vici { .. } | Error::Capture(_) => ErrorKind::Unavailable,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The durable-file toolkit's failures, in the gateway's words: a held spool lock is a
/// configuration error (two agents on one `state_dir`), a full spool waits for the server.
impl From<durable::Error> for Error {
    fn from(error: durable::Error) -> Error {
        match error {
            durable::Error::File(file) => Error::File(file),
            durable::Error::InUse { dir, pid } => Error::Config(format!(
                "{} is in use by another tunnelwatch gateway (pid {pid}); give each agent its own state_dir",
                dir.display()
            )),
            durable::Error::Full { used, limit, .. } => Error::SpoolFull { used, limit },
            error @ (durable::Error::Encode { .. }
            | durable::Error::Record { .. }
            | durable::Error::Invalid { .. }) => Error::Internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_task_that_did_not_return_is_an_internal_error_not_a_configuration_error() {
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let join_error = task.await.unwrap_err();
        let error = Error::task_failed("tail", join_error);
        assert_eq!(error.kind(), ErrorKind::Internal);
        assert!(!matches!(error, Error::Config(_)), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("internal gateway error: tail task failed: task "),
            "{error}"
        );
    }
}
