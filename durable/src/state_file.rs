//! State files: one JSON value in a file, replaced whole ([`write_atomic`]) and read back
//! whole or not at all.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, FileError, Result, write_atomic};

/// Reads the JSON value in `path`: `None` when there is no file. A file that does not hold
/// a `T` is [`FileError::Corrupt`](crate::FileError::Corrupt) naming it as `what`, never a guess (a state file is written
/// whole, so a bad one was damaged or written by something else).
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &'static str) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|error| {
            Error::File(FileError::Corrupt {
                what,
                path: path.to_owned(),
                detail: error.to_string(),
            })
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(Error::io("read", path, error)),
    }
}

/// Writes `value` as JSON to `path` with [`write_atomic`].
pub fn write_json<T: Serialize + ?Sized>(path: &Path, what: &'static str, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|error| Error::Encode {
        what,
        detail: error.to_string(),
    })?;
    write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_value_comes_back_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/checkpoint.json");
        assert_eq!(read_json::<Vec<u64>>(&path, "checkpoint").unwrap(), None);
        write_json(&path, "checkpoint", &[1_u64, 2, 3][..]).unwrap();
        assert_eq!(
            read_json::<Vec<u64>>(&path, "checkpoint").unwrap(),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn a_file_that_holds_no_value_is_corrupt_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.json");
        for garbage in [&b""[..], b"{\"offset\":", b"[1, \"two\"]", b"\xff\xfe"] {
            std::fs::write(&path, garbage).unwrap();
            let error = read_json::<Vec<u64>>(&path, "checkpoint").unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("corrupt checkpoint {}: ", path.display())),
                "{error}"
            );
        }
        // Unreadable (a directory): the read fails, naming the file.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let error = read_json::<Vec<u64>>(&path, "checkpoint").unwrap_err();
        assert!(
            matches!(error, Error::File(FileError::Io { action: "read", .. })),
            "{error}"
        );
    }

    #[test]
    fn a_value_json_cannot_hold_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let unencodable = BTreeMap::from([(vec![1_u8], 1_u8)]);
        let error = write_json(&path, "state", &unencodable).unwrap_err();
        assert!(
            error.to_string().starts_with("cannot encode state: "),
            "{error}"
        );
        assert!(std::fs::metadata(&path).is_err());
    }
}
