//! Parquet files ("segments") of one table: writing them atomically and reading back the
//! delivery watermarks kept in their footers.
//!
//! A segment of an event table records, in its key-value metadata under
//! [`WATERMARKS_KEY`], the highest event position per source that the flush which wrote it
//! covered. Renaming the finished file into place is the commit: after a crash, the WAL is
//! replayed into each table only past that table's watermarks, so nothing is stored twice.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{SortOptions, sort_to_indices, take_record_batch};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

use crate::{Error, Result};

/// Footer key of the delivery watermarks (JSON: source → [seq, part]).
pub(crate) const WATERMARKS_KEY: &str = "tunnelwatch.watermarks";

pub(crate) type Watermarks = HashMap<String, (u64, u16)>;

/// Writes `batch` sorted by its `timestamp` column to `path` (via a temp file and rename).
pub(crate) fn write(
    path: &Path,
    batch: &RecordBatch,
    watermarks: Option<&Watermarks>,
) -> Result<()> {
    let batch = sort_by_timestamp(batch)?;
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(
            |source| Error::Parquet {
                context: "configure zstd",
                source,
            },
        )?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true);
    if let Some(watermarks) = watermarks {
        let encoded = serde_json::to_string(watermarks)
            .map_err(|error| Error::Internal(format!("cannot encode watermarks: {error}")))?;
        properties = properties.set_key_value_metadata(Some(vec![KeyValue::new(
            WATERMARKS_KEY.to_owned(),
            encoded,
        )]));
    }
    let tmp = path.with_extension("parquet.tmp");
    let file = File::create(&tmp).map_err(|error| Error::io("create", &tmp, error))?;
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(properties.build())).map_err(|source| {
            Error::Parquet {
                context: "start a parquet file",
                source,
            }
        })?;
    writer.write(&batch).map_err(|source| Error::Parquet {
        context: "write a parquet file",
        source,
    })?;
    let file = writer.into_inner().map_err(|source| Error::Parquet {
        context: "finish a parquet file",
        source,
    })?;
    file.sync_all()
        .map_err(|error| Error::io("fsync", &tmp, error))?;
    std::fs::rename(&tmp, path).map_err(|error| Error::io("rename", &tmp, error))?;
    match path.parent() {
        Some(dir) => crate::wal::sync_dir(dir),
        None => Ok(()),
    }
}

fn sort_by_timestamp(batch: &RecordBatch) -> Result<RecordBatch> {
    let Some(column) = batch.column_by_name("timestamp") else {
        return Ok(batch.clone());
    };
    let indices = sort_to_indices(
        column,
        Some(SortOptions {
            descending: false,
            nulls_first: true,
        }),
        None,
    )
    .map_err(|source| Error::Arrow {
        context: "sort rows by time",
        source,
    })?;
    take_record_batch(batch, &indices).map_err(|source| Error::Arrow {
        context: "sort rows by time",
        source,
    })
}

/// The watermarks in a segment's footer (empty for tables without them).
pub(crate) fn read_watermarks(path: &Path) -> Result<Watermarks> {
    let file = File::open(path).map_err(|error| Error::io("open", path, error))?;
    let reader = SerializedFileReader::new(file).map_err(|error| Error::Corrupt {
        what: "parquet file",
        path: path.to_owned(),
        detail: error.to_string(),
    })?;
    let metadata = reader.metadata().file_metadata();
    let Some(pairs) = metadata.key_value_metadata() else {
        return Ok(Watermarks::new());
    };
    for pair in pairs {
        if pair.key == WATERMARKS_KEY {
            let value = pair.value.as_deref().unwrap_or("{}");
            return serde_json::from_str(value).map_err(|error| Error::Corrupt {
                what: "parquet watermarks",
                path: path.to_owned(),
                detail: error.to_string(),
            });
        }
    }
    Ok(Watermarks::new())
}

/// The finished segments of a table directory, oldest first. Leftover temp files of an
/// interrupted flush are removed when `clean` is set (never by a read-only reader).
pub(crate) fn list(dir: &Path, clean: bool) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io("list", dir, error)),
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if name.ends_with(".parquet.tmp") && clean {
            std::fs::remove_file(&path)
                .map_err(|error| Error::io("remove leftover", &path, error))?;
        } else if name.ends_with(".parquet") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Merges `other` into `into`, keeping the higher position per source.
pub(crate) fn merge(into: &mut Watermarks, other: &Watermarks) {
    for (source, position) in other {
        let slot = into.entry(source.clone()).or_insert(*position);
        if *position > *slot {
            *slot = *position;
        }
    }
}
