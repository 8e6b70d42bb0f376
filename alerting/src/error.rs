//! The one error type of alerting: rules that cannot load, alert rows that cannot be stored,
//! operators' changes that cannot be made, and notifiers and the outbox.

use std::path::PathBuf;

use crate::engine::ChangeError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("rule `{rule}`: {why}")]
    Rule { rule: String, why: String },
    #[error("rule file {path}: {why}")]
    RuleFile { path: PathBuf, why: String },
    /// A Sigma rule that cannot be compiled: `rule` is its id, else its title, else where it
    /// is in the file; `why` names what is wrong or not supported.
    #[error("sigma rule {rule}: {why}")]
    Sigma { rule: String, why: String },
    #[error("{0}")]
    Config(String),
    #[error("storing alerts failed: {0}")]
    Sink(String),
    #[error(transparent)]
    Change(#[from] ChangeError),
    #[error("no silence {0}")]
    SilenceNotFound(String),
    /// The audit entry a change needs could not be written: the change is refused.
    #[error("the audit trail cannot record it: {0}")]
    Audit(String),
    /// A notifier setting that cannot work; the message names it.
    #[error("invalid notifier configuration: {0}")]
    Notifier(String),
    /// A `*_file` (password, HMAC key, CA) that cannot be read.
    #[error("cannot read {what} {path}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The outbox's spool failed (full, a disk error, another process holds it).
    #[error("notification outbox: {0}")]
    Spool(#[from] durable::Error),
    /// The dead-letter file could not be written.
    #[error("failed to write the dead-letter file {path}")]
    DeadLetter {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A receiver the outbox was not opened with.
    #[error("unknown notification receiver {0:?}")]
    UnknownReceiver(String),
    /// A task that panicked or was cancelled, a value that would not encode.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> model::ErrorKind {
        match self {
            Error::Rule { .. }
            | Error::RuleFile { .. }
            | Error::Sigma { .. }
            | Error::Config(_)
            | Error::Notifier(_)
            | Error::UnknownReceiver(_)
            | Error::Change(ChangeError::AlreadyAcknowledged(_)) => model::ErrorKind::Invalid,
            Error::Change(ChangeError::NotOpen(_)) | Error::SilenceNotFound(_) => {
                model::ErrorKind::NotFound
            }
            Error::ReadFile { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                model::ErrorKind::NotFound
            }
            Error::ReadFile { .. } => model::ErrorKind::Invalid,
            Error::Sink(_)
            | Error::Audit(_)
            | Error::Spool(durable::Error::Full { .. } | durable::Error::InUse { .. }) => {
                model::ErrorKind::Unavailable
            }
            Error::Spool(_) | Error::DeadLetter { .. } | Error::Internal(_) => {
                model::ErrorKind::Internal
            }
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
