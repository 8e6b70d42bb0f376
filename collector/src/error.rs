//! The collector's error type.

use std::path::PathBuf;

use model::ErrorKind;

/// What can stop the collector or one of its parts. Events it cannot place are not errors
/// (they wait, or are counted).
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

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> model::ErrorKind {
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
