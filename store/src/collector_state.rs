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
    Ok(durable::read_json(
        &dir.join("state").join(FILE),
        "collector state file",
    )?)
}

pub(crate) fn store(dir: &Path, checkpoint: Option<&CollectorCheckpoint>) -> Result<()> {
    let path = dir.join("state").join(FILE);
    match checkpoint {
        Some(checkpoint) => Ok(durable::write_json(
            &path,
            "collector state file",
            checkpoint,
        )?),
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Error::io("remove", &path, error)),
        },
    }
}
