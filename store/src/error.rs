//! The store's error type.

use std::path::PathBuf;

use model::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file the store keeps (the WAL, a segment, a state file) could not be read or
    /// written, or is not what was written.
    #[error(transparent)]
    File(#[from] durable::FileError),
    #[error("failed to {context}")]
    Arrow {
        context: &'static str,
        #[source]
        source: datafusion::arrow::error::ArrowError,
    },
    #[error("failed to {context}")]
    Parquet {
        context: &'static str,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },
    /// The full-text index failed (not the query: see [`Error::Search`]).
    #[error("failed to {context}: {detail}")]
    Index {
        context: &'static str,
        detail: String,
    },
    /// A search the user wrote is wrong (syntax, unknown field, bad range).
    #[error("{0}")]
    Search(String),
    /// A query the user wrote is wrong (syntax, unknown table or column, bad types).
    #[error("{0}")]
    Query(String),
    /// A query failed while running.
    #[error("query failed: {0}")]
    Execution(String),
    #[error("the store at {0} is opened read-only")]
    ReadOnly(PathBuf),
    #[error("no tunnelwatch data directory at {0} (expected a `tables` folder; is --data right?)")]
    NotAStore(PathBuf),
    #[error("the query ran longer than {0} s and was cancelled")]
    Timeout(u64),
    /// Rows pile up because flushes to Parquet keep failing: refuse more until they succeed.
    #[error(
        "{0} rows wait for a flush to Parquet that keeps failing; refusing more until it succeeds"
    )]
    Overloaded(usize),
    /// As many queries as allowed (`max_concurrent_queries`) are running already.
    #[error("{0} queries are running already (max_concurrent_queries); try again in a moment")]
    Busy(usize),
    #[error("the data directory {dir} is in use by another tunnelwatch process (pid {pid})")]
    InUse { dir: PathBuf, pid: String },
    /// The object store holding the segments failed (unreachable, denied, missing).
    #[error("failed to {action} {location}")]
    ObjectStore {
        action: &'static str,
        location: String,
        #[source]
        source: object_store::Error,
    },
    /// The store's configuration is wrong (storage root, its options).
    #[error("{0}")]
    Config(String),
    #[error("internal store error: {0}")]
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

    pub(crate) fn corrupt(
        what: &'static str,
        path: impl Into<PathBuf>,
        detail: impl Into<String>,
    ) -> Error {
        Error::File(durable::FileError::corrupt(what, path, detail))
    }

    /// What kind of failure this is (`dashboards` answers requests by it).
    pub fn kind(&self) -> model::ErrorKind {
        match self {
            Error::Query(_) | Error::Search(_) => ErrorKind::Invalid,
            Error::NotAStore(_) => ErrorKind::NotFound,
            Error::File(file) if file.io_kind() == Some(std::io::ErrorKind::StorageFull) => {
                ErrorKind::Unavailable
            }
            Error::ReadOnly(_) | Error::Config(_) => ErrorKind::Invalid,
            // The remote store may come back; the gateway keeps spooling meanwhile.
            Error::ObjectStore { .. } => ErrorKind::Unavailable,
            Error::Timeout(_) | Error::Overloaded(_) | Error::Busy(_) | Error::InUse { .. } => {
                ErrorKind::Unavailable
            }
            Error::File(_)
            | Error::Arrow { .. }
            | Error::Parquet { .. }
            | Error::Execution(_)
            | Error::Index { .. }
            | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The durable-file toolkit's failures, in the store's words.
impl From<durable::Error> for Error {
    fn from(error: durable::Error) -> Error {
        match error {
            durable::Error::File(file) => Error::File(file),
            durable::Error::InUse { dir, pid } => Error::InUse { dir, pid },
            error @ (durable::Error::Encode { .. }
            | durable::Error::Full { .. }
            | durable::Error::Record { .. }
            | durable::Error::Invalid { .. }) => Error::Internal(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::Config;

    /// Every check of `Config::validate` is a configuration error, not a query error.
    #[test]
    fn a_wrong_configuration_is_a_config_error() {
        let retention = |table: &str, days: u32| BTreeMap::from([(table.to_owned(), days)]);
        let wrong = [
            Config {
                flush_interval_secs: 0,
                ..Config::default()
            },
            Config {
                query_timeout_secs: 0,
                ..Config::default()
            },
            Config {
                query_memory_bytes: 1024,
                ..Config::default()
            },
            Config {
                retention: retention("no_such_table", 7),
                ..Config::default()
            },
            Config {
                retention: retention("flows", 0),
                ..Config::default()
            },
            Config {
                root: Some("file:///var/lib/tunnelwatch/tables".to_owned()),
                root_options: BTreeMap::from([("aws_region".to_owned(), "x".to_owned())]),
                ..Config::default()
            },
            Config {
                root: Some("ftp://example.test/tables".to_owned()),
                ..Config::default()
            },
        ];
        for config in wrong {
            let error = config.validate().unwrap_err();
            assert!(matches!(error, Error::Config(_)), "{error:?}");
            assert_eq!(error.kind(), ErrorKind::Invalid, "{error}");
        }
        Config::default().validate().unwrap();
    }
}
