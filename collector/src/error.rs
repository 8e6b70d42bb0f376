//! The collector's error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the collector's output channel closed (the store writer stopped)")]
    OutputClosed,
}

/// Coarse classes of [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Invalid,
    Unavailable,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::OutputClosed => ErrorKind::Unavailable,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
