//! A small file system that fills up: a tmpfs mounted for a test (needs root), grown or
//! shrunk with [`Tmpfs::resize`], unmounted when dropped. For the full-disk tests of the
//! store and of `durable`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a directory, unmounted (lazily) when dropped.
#[derive(Debug)]
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount -o size=`, e.g. `256k`, `6m`) at `dir`, creating it.
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tunnelwatch-test",
            ])
            .arg(dir)
            .status()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !status.success() {
            return Err(format!(
                "cannot mount a tmpfs at {} (this test needs root)",
                dir.display()
            ));
        }
        Ok(Tmpfs {
            path: dir.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Changes the size (`mount -o remount,size=`).
    pub fn resize(&self, size: &str) -> Result<(), String> {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .map_err(|error| format!("cannot run mount: {error}"))?;
        if !status.success() {
            return Err(format!(
                "cannot resize the tmpfs at {} to {size}",
                self.path.display()
            ));
        }
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes to `path` until the file system is full (`ENOSPC`), to the last byte.
pub fn fill(path: &Path) -> Result<(), String> {
    let mut file = std::fs::File::create(path)
        .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    let chunk = vec![0xa5_u8; 4096];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(28) => break,
            Err(error) => return Err(format!("filling the disk: {error}")),
        }
    }
    // The last partial chunk may have left a few bytes; take them too.
    while file.write(&[0xa5]).map(|n| n == 1).unwrap_or(false) {}
    Ok(())
}
