//! The cursors' files: `cursor-<name>.json`, each `{"segment":N,"offset":M}`, replaced
//! atomically. `cursor.json` is the one unnamed cursor of a spool written before cursors had
//! names (the gateway's, until this crate): it is read as the position of every cursor that
//! has no file of its own yet (and of one whose file is behind it: the older version ran
//! after this one), and removed once their files say so.

use std::path::{Path, PathBuf};

use super::Position;
use crate::{Error, Result, read_json, write_json};

const PREFIX: &str = "cursor-";
const SUFFIX: &str = ".json";
const LEGACY: &str = "cursor.json";
const MAX_NAME_BYTES: usize = 64;

/// A cursor's name is part of a file name: 1 to 64 of `a-z`, `0-9`, `-` and `_`.
pub(crate) fn check_names(dir: &Path, names: &[&str]) -> Result<()> {
    let invalid = |detail: String| Error::Invalid {
        dir: dir.to_owned(),
        detail,
    };
    if names.is_empty() {
        return Err(invalid(
            "a spool needs at least one cursor (nothing would ever be removed)".to_owned(),
        ));
    }
    for (index, name) in names.iter().enumerate() {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_BYTES
            && name.bytes().all(|byte| {
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"-_".contains(&byte)
            });
        if !valid {
            return Err(invalid(format!(
                "cursor name {name:?} is not 1 to {MAX_NAME_BYTES} of a-z, 0-9, - and _"
            )));
        }
        if names[..index].contains(name) {
            return Err(invalid(format!("cursor {name:?} is named twice")));
        }
    }
    Ok(())
}

pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{PREFIX}{name}{SUFFIX}"))
}

pub(crate) fn legacy_path(dir: &Path) -> PathBuf {
    dir.join(LEGACY)
}

/// The position in a cursor file, `None` if there is none; a file that does not hold one is
/// an error naming it, never a guess (a cursor guessed too far loses records, too early
/// sends them again).
pub(crate) fn load(path: &Path) -> Result<Option<Position>> {
    read_json(path, "spool cursor")
}

pub(crate) fn store(path: &Path, position: Position) -> Result<()> {
    write_json(path, "spool cursor", &position)
}

/// The names of the cursor files in `dir` (not the legacy `cursor.json`).
pub(crate) fn stored_names(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::io("list", dir, error))?;
    Ok(entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let name = name.to_str()?.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
            Some(name.to_owned())
        })
        .collect())
}
