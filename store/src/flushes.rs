//! Which flushes wrote all of their segments: `DATA/state/flushes.json`.
//!
//! A flush writes one segment per table and hour, one file after the other, and each
//! footer's delivery watermarks say "this table has these sources up to here in Parquet".
//! A crash between two files of one flush would leave a table's watermarks covering rows
//! whose file was never written: the WAL still holds them, but a restart would take them
//! for stored. So a flush is *complete* only once its id (the `part-<micros>-<n>` its file
//! names start with) is in this manifest, written after the last file and before the WAL
//! generations go. At open, files of a flush that is not complete are set aside (the writer
//! deletes them; a reader ignores them, as it may be racing a flush in progress) and their
//! rows come back from the WAL. Compacted segments merge only complete flushes' files and
//! need no entry. The manifest keeps only the flushes whose files are still there
//! uncompacted. A data directory from before the manifest existed has none: all its
//! segments are complete.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::Result;

const FILE: &str = "flushes.json";

/// The ids of complete flushes, or `None` when the directory predates the manifest.
pub(crate) fn load(dir: &Path) -> Result<Option<BTreeSet<String>>> {
    Ok(durable::read_json(
        &dir.join("state").join(FILE),
        "flush manifest",
    )?)
}

pub(crate) fn store(dir: &Path, complete: &BTreeSet<String>) -> Result<()> {
    Ok(durable::write_json(
        &dir.join("state").join(FILE),
        "flush manifest",
        complete,
    )?)
}

/// The flush a segment's file name says wrote it (`part-<micros>-<n>-<i>-<crc>.parquet`);
/// `None` for a compacted segment (`part-<micros>-compacted-…`) or any other name.
pub(crate) fn flush_of(key: &str) -> Option<&str> {
    let name = crate::segment::name_of(key);
    let mut parts = name.splitn(4, '-');
    let (Some("part"), Some(micros), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if micros.is_empty()
        || n.is_empty()
        || !micros.bytes().all(|byte| byte.is_ascii_digit())
        || !n.bytes().all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    let end = "part-".len() + micros.len() + 1 + n.len();
    name.get(..end)
}

/// The id of a flush, as its file names start.
pub(crate) fn flush_id(stamp_micros: i64, segment_base: u64) -> String {
    format!("part-{stamp_micros:020}-{segment_base:08}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_ids_come_from_flushed_names_only() {
        let id = flush_id(1_796_000_000_000_000, 7);
        assert_eq!(id, "part-00001796000000000000-00000007");
        let key = format!("auth_events/date=2026-12-07/hour=11/{id}-0001-1a2b3c4d.parquet");
        assert_eq!(flush_of(&key), Some(id.as_str()));
        assert_eq!(
            flush_of(
                "events/date=2026-12-07/hour=11/part-00001796000000000000-compacted-0003-1a2b3c4d.parquet"
            ),
            None
        );
        for name in [
            "x.parquet",
            "part-",
            "part-12",
            "part--3-1",
            "part-1x-3-0-f.parquet",
        ] {
            assert_eq!(flush_of(name), None, "{name}");
        }
    }

    #[test]
    fn the_manifest_round_trips_and_a_torn_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let ids: BTreeSet<String> = [flush_id(1, 2), flush_id(3, 4)].into();
        store(dir.path(), &ids).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(ids));
        std::fs::write(dir.path().join("state").join(FILE), b"[\"part-").unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("flush manifest"), "{error}");
    }
}
