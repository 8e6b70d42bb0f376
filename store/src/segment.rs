//! Parquet files ("segments") of one table: writing them atomically, finding them, and
//! reading back the delivery watermarks kept in their footers.
//!
//! Segments are partitioned by the hour of their rows' `timestamp` (UTC), Hive style:
//! `tables/<table>/date=YYYY-MM-DD/hour=HH/part-*.parquet`, so Spark, Trino, DuckDB and
//! DataFusion read the tree as is, and a query with a time predicate opens only the hours it
//! needs. Within a file, rows are sorted by time and then by the table's most-queried key
//! ([`crate::schema::Table::sort_key`]), compressed with zstd, dictionary-encoded, with
//! statistics and a page index. Segments written before partitioning (directly under
//! `tables/<table>/`) are still read; they are scanned by every query.
//!
//! A segment of an event table records, in its key-value metadata under
//! [`WATERMARKS_KEY`], the highest event position per source that the flush which wrote it
//! covered. Renaming the finished file into place is the commit: after a crash, the WAL is
//! replayed into each table only past that table's watermarks, so nothing is stored twice.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use datafusion::arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};

use crate::{Error, Result};

/// Footer key of the delivery watermarks (JSON: source → [seq, part]).
pub(crate) const WATERMARKS_KEY: &str = "tunnelwatch.watermarks";
/// Footer key of the files a compacted segment replaces (JSON list of file names in its
/// directory): while they still exist they are ignored, and deleted once no query can be
/// reading them.
pub(crate) const REPLACES_KEY: &str = "tunnelwatch.replaces";

/// What a segment's footer says besides its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Footer {
    pub(crate) watermarks: Watermarks,
    pub(crate) replaces: Vec<String>,
    /// The Arrow schema of the file's columns.
    pub(crate) schema: datafusion::arrow::datatypes::Schema,
}

impl Footer {
    /// Whether this version can read the file as `table`: every column both have must have
    /// the same type, and a column the file lacks must be optional (added later, read as
    /// null). Columns only the file has (from a newer version) are ignored. The error says
    /// which column and why.
    pub(crate) fn check_against(
        &self,
        expected: &datafusion::arrow::datatypes::Schema,
    ) -> std::result::Result<(), String> {
        for field in expected.fields() {
            match self.schema.field_with_name(field.name()) {
                Ok(found) if found.data_type() != field.data_type() => {
                    return Err(format!(
                        "column `{}` is {} in the file but {} in this version of the table",
                        field.name(),
                        found.data_type(),
                        field.data_type()
                    ));
                }
                Ok(_) => {}
                Err(_) if !field.is_nullable() => {
                    return Err(format!(
                        "the file lacks the required column `{}`",
                        field.name()
                    ));
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}

pub(crate) type Watermarks = HashMap<String, (u64, u16)>;

/// Microseconds in an hour: the partition width.
pub(crate) const HOUR_MICROS: i64 = 3_600_000_000;

/// One Parquet file of a table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Segment {
    /// The start of the hour its rows fall in (UTC, microseconds since the epoch); `None`
    /// for a segment from before partitioning, which may hold any time.
    pub(crate) hour: Option<i64>,
    pub(crate) path: PathBuf,
}

impl Segment {
    /// Whether the segment may hold rows with `lower <= timestamp <= upper` (microseconds).
    pub(crate) fn may_hold(&self, lower: Option<i64>, upper: Option<i64>) -> bool {
        let Some(hour) = self.hour else {
            return true;
        };
        lower.is_none_or(|lower| hour + HOUR_MICROS > lower)
            && upper.is_none_or(|upper| hour <= upper)
    }
}

/// `date=YYYY-MM-DD/hour=HH` of the hour starting at `hour` (microseconds, UTC).
pub(crate) fn partition_dir(hour: i64) -> Result<PathBuf> {
    let timestamp = jiff::Timestamp::from_microsecond(hour)
        .map_err(|error| Error::Internal(format!("hour {hour} out of range: {error}")))?;
    let civil = jiff::tz::TimeZone::UTC.to_datetime(timestamp);
    Ok(PathBuf::from(format!(
        "date={:04}-{:02}-{:02}",
        civil.year(),
        civil.month(),
        civil.day()
    ))
    .join(format!("hour={:02}", civil.hour())))
}

/// The hour a partition directory pair names, if it is one (`date=2026-11-25`, `hour=09`).
fn hour_of(date_dir: &str, hour_dir: &str) -> Option<i64> {
    let date: jiff::civil::Date = date_dir.strip_prefix("date=")?.parse().ok()?;
    let hour: i8 = hour_dir.strip_prefix("hour=")?.parse().ok()?;
    let time = jiff::civil::Time::new(hour, 0, 0, 0).ok()?;
    let timestamp = jiff::tz::Offset::UTC
        .to_timestamp(date.to_datetime(time))
        .ok()?;
    Some(timestamp.as_microsecond())
}

/// Splits `batch` by the hour of its `timestamp` column: (hour start, rows of that hour).
/// A batch without such a column (or with null times) goes to hour 0 (1970-01-01T00).
pub(crate) fn split_by_hour(batch: &RecordBatch) -> Result<Vec<(i64, RecordBatch)>> {
    let Some(times) = batch
        .column_by_name("timestamp")
        .and_then(|column| column.as_any().downcast_ref::<TimestampMicrosecondArray>())
    else {
        return Ok(vec![(0, batch.clone())]);
    };
    let mut by_hour: std::collections::BTreeMap<i64, Vec<u32>> = std::collections::BTreeMap::new();
    for row in 0..times.len() {
        let micros = if times.is_null(row) {
            0
        } else {
            times.value(row)
        };
        let row = u32::try_from(row)
            .map_err(|_| Error::Internal("a flush of more than 2^32 rows".to_owned()))?;
        by_hour
            .entry(micros.div_euclid(HOUR_MICROS) * HOUR_MICROS)
            .or_default()
            .push(row);
    }
    if by_hour.len() == 1 {
        return Ok(by_hour
            .into_keys()
            .map(|hour| (hour, batch.clone()))
            .collect());
    }
    by_hour
        .into_iter()
        .map(|(hour, rows)| {
            let indices = UInt32Array::from(rows);
            take_record_batch(batch, &indices)
                .map(|part| (hour, part))
                .map_err(|source| Error::Arrow {
                    context: "split rows by hour",
                    source,
                })
        })
        .collect()
}

/// Writes `batch` sorted by `sort_columns` (those present) into `dir` (created if need be)
/// as `<stem>-<crc32 of the file>.parquet`, via a temp file and rename; returns the path.
/// The checksum in the name is what `store verify` checks the whole file against (Parquet
/// writers here put no checksums in pages).
pub(crate) fn write(
    dir: &Path,
    stem: &str,
    batch: &RecordBatch,
    sort_columns: &[&str],
    watermarks: Option<&Watermarks>,
    replaces: &[String],
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|error| Error::io("create directory", dir, error))?;
    let batch = sort_by(batch, sort_columns)?;
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(
            |source| Error::Parquet {
                context: "configure zstd",
                source,
            },
        )?))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_dictionary_enabled(true);
    let mut footer = Vec::new();
    if let Some(watermarks) = watermarks {
        let encoded = serde_json::to_string(watermarks)
            .map_err(|error| Error::Internal(format!("cannot encode watermarks: {error}")))?;
        footer.push(KeyValue::new(WATERMARKS_KEY.to_owned(), encoded));
    }
    if !replaces.is_empty() {
        let encoded = serde_json::to_string(replaces)
            .map_err(|error| Error::Internal(format!("cannot encode replaced files: {error}")))?;
        footer.push(KeyValue::new(REPLACES_KEY.to_owned(), encoded));
    }
    if !footer.is_empty() {
        properties = properties.set_key_value_metadata(Some(footer));
    }
    let tmp = dir.join(format!("{stem}.parquet.tmp"));
    let file = File::create(&tmp).map_err(|error| Error::io("create", &tmp, error))?;
    let file = Crc32Writer {
        inner: file,
        hasher: crc32fast::Hasher::new(),
    };
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
    let Crc32Writer {
        inner: file,
        hasher,
    } = writer.into_inner().map_err(|source| Error::Parquet {
        context: "finish a parquet file",
        source,
    })?;
    file.sync_all()
        .map_err(|error| Error::io("fsync", &tmp, error))?;
    let path = dir.join(format!("{stem}-{:08x}.parquet", hasher.finalize()));
    std::fs::rename(&tmp, &path).map_err(|error| Error::io("rename", &tmp, error))?;
    crate::wal::sync_dir(dir)?;
    Ok(path)
}

/// Passes writes through to a file and keeps the CRC-32 of everything written.
struct Crc32Writer {
    inner: File,
    hasher: crc32fast::Hasher,
}

impl std::io::Write for Crc32Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n_written = std::io::Write::write(&mut self.inner, bytes)?;
        self.hasher.update(&bytes[..n_written]);
        Ok(n_written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut self.inner)
    }
}

/// The checksum a segment's name carries (`…-<8 hex digits>.parquet`), if any (segments from
/// before checksums have none).
pub(crate) fn named_crc(path: &Path) -> Option<u32> {
    let stem = path.file_stem()?.to_str()?;
    let (_, hex) = stem.rsplit_once('-')?;
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Checks a segment's bytes against the checksum in its name.
pub(crate) fn check_crc(path: &Path) -> Result<()> {
    let Some(expected) = named_crc(path) else {
        return Ok(());
    };
    let bytes = std::fs::read(path).map_err(|error| Error::io("read", path, error))?;
    let actual = crc32fast::hash(&bytes);
    if actual != expected {
        return Err(Error::Corrupt {
            what: "parquet file",
            path: path.to_owned(),
            detail: format!("its bytes have CRC-32 {actual:08x}, its name says {expected:08x}"),
        });
    }
    Ok(())
}

fn sort_by(batch: &RecordBatch, columns: &[&str]) -> Result<RecordBatch> {
    let sort_columns: Vec<SortColumn> = columns
        .iter()
        .filter_map(|name| batch.column_by_name(name))
        .map(|values| SortColumn {
            values: values.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    if sort_columns.is_empty() || batch.num_rows() < 2 {
        return Ok(batch.clone());
    }
    let indices = lexsort_to_indices(&sort_columns, None).map_err(|source| Error::Arrow {
        context: "sort rows",
        source,
    })?;
    take_record_batch(batch, &indices).map_err(|source| Error::Arrow {
        context: "sort rows",
        source,
    })
}

/// Every row of a segment, decoded, after checking its bytes against the checksum in its
/// name (what `store verify` does).
pub(crate) fn read_all(path: &Path) -> Result<Vec<RecordBatch>> {
    check_crc(path)?;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let corrupt = |detail: String| Error::Corrupt {
        what: "parquet file",
        path: path.to_owned(),
        detail,
    };
    let file = File::open(path).map_err(|error| Error::io("open", path, error))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|builder| builder.build())
        .map_err(|error| corrupt(error.to_string()))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| corrupt(error.to_string()))
}

/// The number of rows a segment's footer declares.
pub(crate) fn row_count(path: &Path) -> Result<u64> {
    let file = File::open(path).map_err(|error| Error::io("open", path, error))?;
    let reader = SerializedFileReader::new(file).map_err(|error| Error::Corrupt {
        what: "parquet file",
        path: path.to_owned(),
        detail: error.to_string(),
    })?;
    Ok(u64::try_from(reader.metadata().file_metadata().num_rows()).unwrap_or(0))
}

/// The key of a segment in the search index: its path under `DATA/tables`, with `/`.
pub(crate) fn key(tables_dir: &Path, path: &Path) -> String {
    let relative = path.strip_prefix(tables_dir).unwrap_or(path);
    relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// The watermarks in a segment's footer (empty for tables without them).
pub(crate) fn read_footer(path: &Path) -> Result<Footer> {
    let file = File::open(path).map_err(|error| Error::io("open", path, error))?;
    let reader = SerializedFileReader::new(file).map_err(|error| Error::Corrupt {
        what: "parquet file",
        path: path.to_owned(),
        detail: error.to_string(),
    })?;
    let metadata = reader.metadata().file_metadata();
    let schema = datafusion::parquet::arrow::parquet_to_arrow_schema(
        metadata.schema_descr(),
        metadata.key_value_metadata(),
    )
    .map_err(|error| Error::Corrupt {
        what: "parquet schema",
        path: path.to_owned(),
        detail: error.to_string(),
    })?;
    let mut footer = Footer {
        watermarks: Watermarks::new(),
        replaces: Vec::new(),
        schema,
    };
    for pair in metadata.key_value_metadata().into_iter().flatten() {
        let corrupt = |detail: String| Error::Corrupt {
            what: "parquet footer metadata",
            path: path.to_owned(),
            detail,
        };
        let value = pair.value.as_deref().unwrap_or_default();
        if pair.key == WATERMARKS_KEY {
            footer.watermarks =
                serde_json::from_str(value).map_err(|error| corrupt(error.to_string()))?;
        } else if pair.key == REPLACES_KEY {
            footer.replaces =
                serde_json::from_str(value).map_err(|error| corrupt(error.to_string()))?;
        }
    }
    Ok(footer)
}

/// The finished segments of a table directory (its hour partitions and, from before
/// partitioning, files directly in it), oldest hour first. Leftover temp files of an
/// interrupted flush are removed when `clean` is set (never by a read-only reader); entries
/// that are neither partitions nor segments are left alone.
pub(crate) fn list(dir: &Path, clean: bool) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    collect_files(dir, None, clean, &mut segments)?;
    for date_dir in subdirs(dir, "date=")? {
        let Some(date_name) = file_name(&date_dir) else {
            continue;
        };
        for hour_dir in subdirs(&date_dir, "hour=")? {
            let Some(hour) =
                file_name(&hour_dir).and_then(|hour_name| hour_of(&date_name, &hour_name))
            else {
                tracing::warn!(dir = %hour_dir.display(), "not a partition directory; ignored");
                continue;
            };
            collect_files(&hour_dir, Some(hour), clean, &mut segments)?;
        }
    }
    segments.sort();
    Ok(segments)
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()
        .and_then(|name| name.to_str())
        .map(str::to_owned)
}

/// The entries of `dir` with their types (not following symlinks); none if it is missing.
fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, std::fs::FileType)>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| {
                let entry = entry.map_err(|error| Error::io("list", dir, error))?;
                let file_type = entry
                    .file_type()
                    .map_err(|error| Error::io("stat", entry.path(), error))?;
                Ok((entry.path(), file_type))
            })
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(Error::io("list", dir, error)),
    }
}

fn subdirs(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>> {
    Ok(read_dir(dir)?
        .into_iter()
        .filter(|(path, file_type)| {
            file_type.is_dir() && file_name(path).is_some_and(|name| name.starts_with(prefix))
        })
        .map(|(path, _)| path)
        .collect())
}

fn collect_files(
    dir: &Path,
    hour: Option<i64>,
    clean: bool,
    segments: &mut Vec<Segment>,
) -> Result<()> {
    for (path, file_type) in read_dir(dir)? {
        let Some(name) = file_name(&path) else {
            continue;
        };
        if !file_type.is_file() {
            continue;
        }
        if name.ends_with(".parquet.tmp") && clean {
            std::fs::remove_file(&path)
                .map_err(|error| Error::io("remove leftover", &path, error))?;
        } else if name.ends_with(".parquet") {
            segments.push(Segment { hour, path });
        }
    }
    Ok(())
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
