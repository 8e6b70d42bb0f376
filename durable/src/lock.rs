//! One process per directory: a `LOCK` file held with an advisory lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use crate::{Error, Result};

/// A directory's lock, held until dropped (or the process ends, however it ends: the kernel
/// releases the lock with the file descriptor, so a crash never leaves a stale lock).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Takes `dir/LOCK` (creating it) and writes this process's id into it, or fails with
/// [`Error::InUse`] naming the process that holds it. `dir` must exist.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    let path = dir.join("LOCK");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| Error::io("open", &path, error))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .and_then(|()| file.write_all(std::process::id().to_string().as_bytes()))
                .map_err(|error| Error::io("write", &path, error))?;
            Ok(DirLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            Err(Error::InUse {
                dir: dir.to_owned(),
                pid: holder.trim().to_owned(),
            })
        }
        Err(std::fs::TryLockError::Error(error)) => Err(Error::io("lock", &path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_named_by_its_pid() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_dir(dir.path()).unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("LOCK")).unwrap(),
            pid
        );
        let error = lock_dir(dir.path()).unwrap_err();
        match &error {
            Error::InUse {
                dir: held,
                pid: holder,
            } => {
                assert_eq!(held, dir.path());
                assert_eq!(*holder, pid);
            }
            other => panic!("{other}"),
        }
        assert_eq!(
            error.to_string(),
            format!(
                "{} is in use by another process (pid {pid})",
                dir.path().display()
            )
        );
        drop(lock);
        // Released with the file: the next holder takes it (a LOCK left behind is no lock).
        let _lock = lock_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_lock_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let error = lock_dir(&missing).unwrap_err();
        assert!(
            matches!(
                error,
                Error::File(crate::FileError::Io { action: "open", .. })
            ),
            "{error}"
        );
        assert!(error.to_string().ends_with("missing/LOCK"), "{error}");
    }
}
