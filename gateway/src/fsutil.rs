//! Small file helpers shared by the checkpoint and the spool.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Replaces `path` with `bytes` atomically: a temp file beside it, fsync, rename, fsync of
/// the directory. A crash leaves either the old or the new content.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(|error| Error::io("create", &tmp, error))?;
    file.write_all(bytes)
        .map_err(|error| Error::io("write", &tmp, error))?;
    file.sync_all()
        .map_err(|error| Error::io("fsync", &tmp, error))?;
    std::fs::rename(&tmp, path).map_err(|error| Error::io("rename", &tmp, error))?;
    sync_dir(path)
}

/// Makes a rename or create in `path`'s directory durable.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let handle =
        std::fs::File::open(dir).map_err(|error| Error::io("open directory", dir, error))?;
    handle
        .sync_all()
        .map_err(|error| Error::io("fsync directory", dir, error))
}

pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|error| Error::io("create directory", path, error))
}
