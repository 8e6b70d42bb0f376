//! Writes that survive a crash: a file replaced whole or not at all, and directories whose
//! entries are on disk.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Replaces `path` with `bytes` whole or not at all: a temp file beside it (`path` + `.tmp`),
/// fsync, rename over `path`, fsync of the directory. A crash leaves the old content or the
/// new, never a mix; once this returns, the new content is on disk. Missing parent
/// directories are created (durably, [`create_dir_all`]). On failure the temp file is
/// removed, so that a full disk is not made fuller by the attempt.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path)?;
    create_dir_all(dir)?;
    let tmp = temp_path(path);
    let written = write_synced(&tmp, bytes).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|error| Error::io("rename", &tmp, error))
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(dir)
}

/// Makes the entries of `dir` durable: a file created, renamed or removed in it is (or stays
/// away) after a crash only once its directory is fsynced.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let handle = File::open(dir).map_err(|error| Error::io("open directory", dir, error))?;
    handle
        .sync_all()
        .map_err(|error| Error::io("fsync directory", dir, error))
}

/// `std::fs::create_dir_all`, and each directory it creates is made durable in its parent.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(_) => break,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => missing.push(at),
            Err(error) => return Err(Error::io("stat", at, error)),
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(|error| Error::io("create directory", dir, error))?;
    for created in missing.iter().rev() {
        sync_dir(parent_dir(created)?)?;
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|error| Error::io("create", path, error))?;
    file.write_all(bytes)
        .map_err(|error| Error::io("write", path, error))?;
    file.sync_all()
        .map_err(|error| Error::io("fsync", path, error))
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> Result<&Path> {
    match path.parent() {
        Some(parent) if parent.as_os_str().is_empty() => Ok(Path::new(".")),
        Some(parent) => Ok(parent),
        None => Err(Error::io(
            "find the directory of",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no parent directory"),
        )),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = OsString::from(path.as_os_str());
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::file_names as names;

    #[test]
    fn a_file_is_replaced_whole_and_no_temp_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn missing_parents_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c/state.json");
        write_atomic(&path, b"x").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        create_dir_all(&dir.path().join("a/b/d")).unwrap();
        assert!(
            std::fs::metadata(dir.path().join("a/b/d"))
                .unwrap()
                .is_dir()
        );
    }

    #[test]
    fn a_failed_write_keeps_the_old_content_and_removes_its_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // The rename fails: the target is a directory that is not empty.
        let target = dir.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"kept").unwrap();
        let error = write_atomic(&target, b"new").unwrap_err();
        assert!(
            matches!(
                error,
                Error::File(crate::FileError::Io {
                    action: "rename",
                    ..
                })
            ),
            "{error}"
        );
        assert_eq!(names(dir.path()), ["target"]);
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"kept");
        // The temp file cannot be created: nothing changes.
        let path = dir.path().join("file");
        write_atomic(&path, b"old").unwrap();
        std::fs::create_dir(temp_path(&path)).unwrap();
        let error = write_atomic(&path, b"new").unwrap_err();
        assert!(
            matches!(
                error,
                Error::File(crate::FileError::Io {
                    action: "create",
                    ..
                })
            ),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn a_parent_that_is_a_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let error = write_atomic(&dir.path().join("file/state.json"), b"x").unwrap_err();
        assert!(
            matches!(
                error,
                Error::File(crate::FileError::Io {
                    action: "create directory",
                    ..
                })
            ),
            "{error}"
        );
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }
}
