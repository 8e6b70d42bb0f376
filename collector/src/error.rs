//! The collector's error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the collector's output channel closed (the store writer stopped)")]
    OutputClosed,
    #[error("cannot read geoip database {path}")]
    GeoIpRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("geoip database {path} is unusable: {reason}")]
    GeoIpInvalid { path: PathBuf, reason: String },
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
            Error::GeoIpRead { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::GeoIpRead { .. } => ErrorKind::Unavailable,
            Error::GeoIpInvalid { .. } => ErrorKind::Invalid,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
