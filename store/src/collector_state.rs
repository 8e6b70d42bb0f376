//! The collector's checkpoint ([`model::CollectorCheckpoint`]): the logins it was still
//! assembling when it handed a batch on. The newest one travels in the WAL record of that
//! batch; a flush writes it to `DATA/state/collector.json` before it removes the WAL
//! generations that held it, so the newest checkpoint is always in the WAL or in that file.
//! An empty checkpoint removes the file.

use std::path::Path;

use model::CollectorCheckpoint;

use crate::error::{Error, Result};

const FILE: &str = "collector.json";

pub(crate) fn load(dir: &Path) -> Result<Option<CollectorCheckpoint>> {
    let path = dir.join("state").join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| Error::Corrupt {
                what: "collector state file",
                path,
                detail: error.to_string(),
            }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::io("read", &path, error)),
    }
}

pub(crate) fn store(dir: &Path, checkpoint: Option<&CollectorCheckpoint>) -> Result<()> {
    let path = dir.join("state").join(FILE);
    match checkpoint {
        Some(checkpoint) => {
            let bytes = serde_json::to_vec(checkpoint).map_err(|error| {
                Error::Internal(format!("cannot encode the collector state: {error}"))
            })?;
            Ok(durable::write_atomic(&path, &bytes)?)
        }
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::io("remove", &path, error)),
        },
    }
}
