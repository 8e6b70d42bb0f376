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

use datafusion::arrow::array::{Array, RecordBatch, TimestampMicrosecondArray, UInt32Array};
use datafusion::arrow::compute::{SortColumn, SortOptions, lexsort_to_indices, take_record_batch};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::metadata::{KeyValue, ParquetMetaData};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;

use crate::storage::Storage;
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
    /// For a `session_joins` segment, the tables its corrections may apply to (from the
    /// column statistics of `vpn_join_table`).
    pub(crate) join_tables: Option<std::collections::BTreeSet<crate::Table>>,
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
    /// Where it is under the storage root (see [`crate::storage`]), with `/`:
    /// `<table>/date=…/hour=…/<file>`.
    pub(crate) key: String,
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
pub(crate) fn partition_dir(hour: i64) -> Result<String> {
    let timestamp = jiff::Timestamp::from_microsecond(hour)
        .map_err(|error| Error::Internal(format!("hour {hour} out of range: {error}")))?;
    let civil = jiff::tz::TimeZone::UTC.to_datetime(timestamp);
    Ok(format!(
        "date={:04}-{:02}-{:02}/hour={:02}",
        civil.year(),
        civil.month(),
        civil.day(),
        civil.hour()
    ))
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

/// Writes `batch` sorted by `sort_columns` (those present) under the key `dir` (a table's
/// partition) as `<stem>-<crc32 of the file>.parquet`, atomically; returns the key. The
/// checksum in the name is what `store verify` checks the whole file against (Parquet
/// writers here put no checksums in pages).
pub(crate) fn write(
    storage: &Storage,
    dir: &str,
    stem: &str,
    batch: &RecordBatch,
    sort_columns: &[&str],
    watermarks: Option<&Watermarks>,
    replaces: &[String],
) -> Result<String> {
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
    // Times and counters have too many distinct values for a dictionary; deltas of sorted
    // times and of byte counts pack into a few bits (a flow: 33 → 20 bytes, and faster to
    // write).
    for field in batch.schema().fields() {
        if delta_encoded(field) {
            let column = ColumnPath::from(field.name().as_str());
            properties = properties
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_encoding(column, Encoding::DELTA_BINARY_PACKED);
        }
    }
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
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(properties.build()))
        .map_err(|source| Error::Parquet {
            context: "start a parquet file",
            source,
        })?;
    writer.write(&batch).map_err(|source| Error::Parquet {
        context: "write a parquet file",
        source,
    })?;
    let bytes = writer.into_inner().map_err(|source| Error::Parquet {
        context: "finish a parquet file",
        source,
    })?;
    let key = format!("{dir}/{stem}-{:08x}.parquet", crc32fast::hash(&bytes));
    storage.put(&key, bytes)?;
    Ok(key)
}

/// Whether a column is written with `DELTA_BINARY_PACKED` instead of a dictionary.
fn delta_encoded(field: &datafusion::arrow::datatypes::Field) -> bool {
    use datafusion::arrow::datatypes::DataType;
    match field.data_type() {
        DataType::Timestamp(..) => true,
        DataType::Int64 => !crate::schema::Table::DICTIONARY_INTS.contains(&field.name().as_str()),
        _ => false,
    }
}

/// The checksum a segment's name carries (`…-<8 hex digits>.parquet`), if any (segments from
/// before checksums have none).
pub(crate) fn named_crc(key: &str) -> Option<u32> {
    let name = key.rsplit('/').next()?;
    let stem = name.strip_suffix(".parquet")?;
    let (_, hex) = stem.rsplit_once('-')?;
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// Checks a segment's bytes against the checksum in its name.
fn check_crc(storage: &Storage, key: &str, bytes: &[u8]) -> Result<()> {
    let Some(expected) = named_crc(key) else {
        return Ok(());
    };
    let actual = crc32fast::hash(bytes);
    if actual != expected {
        return Err(Error::corrupt(
            "parquet file",
            storage.describe(key),
            format!("its bytes have CRC-32 {actual:08x}, its name says {expected:08x}"),
        ));
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
pub(crate) fn read_all(storage: &Storage, key: &str) -> Result<Vec<RecordBatch>> {
    read_with_footer(storage, key).map(|(batches, _)| batches)
}

/// Every row of a segment and what its footer says, from one read of the file.
pub(crate) fn read_with_footer(storage: &Storage, key: &str) -> Result<(Vec<RecordBatch>, Footer)> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bytes = storage.get(key)?;
    check_crc(storage, key, &bytes)?;
    let corrupt = |detail: String| Error::corrupt("parquet file", storage.describe(key), detail);
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|error| corrupt(error.to_string()))?;
    let footer = footer_of(storage, key, builder.metadata())?;
    let batches = builder
        .build()
        .map_err(|error| corrupt(error.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| corrupt(error.to_string()))?;
    Ok((batches, footer))
}

/// The number of rows a segment's footer declares.
pub(crate) fn row_count(storage: &Storage, key: &str) -> Result<u64> {
    let metadata = storage.footer(key)?;
    Ok(u64::try_from(metadata.file_metadata().num_rows()).unwrap_or(0))
}

/// The watermarks in a segment's footer (empty for tables without them).
pub(crate) fn read_footer(storage: &Storage, key: &str) -> Result<Footer> {
    footer_of(storage, key, &storage.footer(key)?)
}

/// What the footer metadata of the segment under `key` says.
fn footer_of(storage: &Storage, key: &str, parquet: &ParquetMetaData) -> Result<Footer> {
    let metadata = parquet.file_metadata();
    let schema = datafusion::parquet::arrow::parquet_to_arrow_schema(
        metadata.schema_descr(),
        metadata.key_value_metadata(),
    )
    .map_err(|error| Error::corrupt("parquet schema", storage.describe(key), error.to_string()))?;
    let join_tables = crate::session_joins::tables_in_footer(parquet);
    let mut footer = Footer {
        watermarks: Watermarks::new(),
        replaces: Vec::new(),
        schema,
        join_tables,
    };
    for pair in metadata.key_value_metadata().into_iter().flatten() {
        let corrupt = |detail: String| {
            Error::corrupt("parquet footer metadata", storage.describe(key), detail)
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

/// The directory part of a key (`events/date=…/hour=…` of `events/date=…/hour=…/x.parquet`).
pub(crate) fn dir_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The file name part of a key.
pub(crate) fn name_of(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// The finished segments of a table (its hour partitions and, from before partitioning,
/// files directly in it), oldest hour first. Leftover temp files of an interrupted flush are
/// removed when `clean` is set (never by a read-only reader); objects that are in neither
/// place are left alone.
pub(crate) fn list(storage: &Storage, table: &str, clean: bool) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for key in storage.list(table, clean)? {
        let parts: Vec<&str> = key.split('/').collect();
        let hour = match parts.as_slice() {
            [_, _] => None,
            [_, date, hour, _] => match hour_of(date, hour) {
                Some(hour) => Some(hour),
                None => {
                    tracing::warn!(key, "not in a partition directory; ignored");
                    continue;
                }
            },
            _ => {
                tracing::warn!(key, "not a segment of the table's layout; ignored");
                continue;
            }
        };
        segments.push(Segment { hour, key });
    }
    segments.sort();
    Ok(segments)
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

/// A segment of a local data directory, by path (for tests that damage files).
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalSegment {
    pub(crate) hour: Option<i64>,
    pub(crate) path: std::path::PathBuf,
}

/// The segments of `table` in the data directory `data_dir` (default root), by path.
#[cfg(test)]
pub(crate) fn list_local(data_dir: &std::path::Path, table: &str) -> Result<Vec<LocalSegment>> {
    let storage = Storage::open(data_dir, None, &Default::default(), false)?;
    Ok(list(&storage, table, false)?
        .into_iter()
        .map(|found| LocalSegment {
            hour: found.hour,
            path: storage.describe(&found.key),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use datafusion::parquet::basic::Encoding;
    use model::Outcome;

    use super::*;
    use crate::schema::Table;

    #[test]
    fn times_and_counters_are_delta_encoded_and_ports_keep_a_dictionary() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), None, &Default::default(), true).unwrap();
        let events: Vec<model::Event> = (0..100)
            .map(|seq| crate::tests::auth_event(seq, "alice", Outcome::Success))
            .collect();
        let batch = Table::AuthEvents
            .events_batch(&events.iter().collect::<Vec<_>>())
            .unwrap();
        let key = write(
            &storage,
            "auth_events/date=2026-11-18/hour=11",
            "part-test",
            &batch,
            Table::AuthEvents.sort_key(),
            None,
            &[],
        )
        .unwrap();
        let metadata = storage.footer(&key).unwrap();
        let encodings = |name: &str| -> Vec<Encoding> {
            metadata
                .row_group(0)
                .columns()
                .iter()
                .find(|column| column.column_path().string() == name)
                .map(|column| column.encodings().collect())
                .unwrap_or_else(|| panic!("no column {name}"))
        };
        for delta in ["timestamp", "source_port", "vpn_ike_sa_id"] {
            let found = encodings(delta);
            assert!(
                found.contains(&Encoding::DELTA_BINARY_PACKED),
                "{delta}: {found:?}"
            );
            assert!(
                !found.contains(&Encoding::RLE_DICTIONARY),
                "{delta}: {found:?}"
            );
        }
        for dictionary in ["destination_port", "user_name"] {
            let found = encodings(dictionary);
            assert!(
                found.contains(&Encoding::RLE_DICTIONARY),
                "{dictionary}: {found:?}"
            );
        }
        // And it reads back whole.
        let rows: usize = read_all(&storage, &key)
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 100);
    }
}
