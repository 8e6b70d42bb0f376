//! Compaction: a flush writes one small file per table and hour every few seconds;
//! [`Store::compact`] merges the files of an hour into one (sorted again), so that queries
//! open few files and the store opens fast.
//!
//! Crash safety: the merged segment's footer names the files it replaces. Until they are
//! deleted, opening the store ignores them (and a writer deletes them); while this process
//! runs they are deleted only after a grace period longer than any query, because a query
//! that started before the merge may be reading them.

use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;

use crate::segment::{self, Segment, Watermarks};
use crate::session_joins;
use crate::storage::Storage;
use crate::{Error, Result, Store, Table};

/// A partition is compacted once it holds this many files…
const MIN_FILES: usize = 2;
/// …and its hour ended this long ago (late rows are rare after that), or it holds
/// [`MANY_FILES`] already.
const SETTLED_AFTER_MICROS: i64 = 10 * 60 * 1_000_000;
const MANY_FILES: usize = 32;
/// One merge reads at most this many rows (bounded memory); bigger partitions end up in a
/// few large files.
const MAX_MERGE_ROWS: u64 = 4_000_000;

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Files merged away and files written.
    pub files_merged: usize,
    pub files_written: usize,
    pub rows: u64,
}

impl Store {
    /// Merges the small files of settled hour partitions (as of `now`), and deletes files
    /// replaced by earlier merges whose grace period has passed.
    pub fn compact(&self, now: jiff::Timestamp) -> Result<CompactReport> {
        self.reap_replaced()?;
        let candidates: Vec<(Table, Vec<Segment>)> = {
            if !self.writable()? {
                return Err(Error::ReadOnly(self.dir.clone()));
            }
            let inner = self.lock()?;
            let mut candidates = Vec::new();
            for (table, segments) in &inner.segments {
                let mut by_hour: std::collections::BTreeMap<i64, Vec<Segment>> =
                    std::collections::BTreeMap::new();
                for found in segments {
                    if let Some(hour) = found.hour {
                        by_hour.entry(hour).or_default().push(found.clone());
                    }
                }
                for (hour, files) in by_hour {
                    let settled =
                        hour + segment::HOUR_MICROS + SETTLED_AFTER_MICROS <= now.as_microsecond();
                    if files.len() >= MIN_FILES && (settled || files.len() >= MANY_FILES) {
                        candidates.push((*table, files));
                    }
                }
            }
            candidates
        };
        let mut report = CompactReport::default();
        for (table, files) in candidates {
            for group in merge_groups(&self.storage, &files)? {
                if group.len() < MIN_FILES {
                    continue;
                }
                let rows = self.merge(table, &group)?;
                report.files_merged += group.len();
                report.files_written += 1;
                report.rows += rows;
            }
        }
        if report.files_written > 0 {
            tracing::info!(
                files_merged = report.files_merged,
                files_written = report.files_written,
                rows = report.rows,
                "compacted segments"
            );
        }
        Ok(report)
    }

    /// Merges `group` (segments of one table and hour) into one segment.
    fn merge(&self, table: Table, group: &[Segment]) -> Result<u64> {
        let dir = segment::dir_of(&group[0].key).to_owned();
        let mut batches = Vec::new();
        let mut watermarks = Watermarks::new();
        for found in group {
            // One read per file: the rows and the footer's watermarks.
            let (rows, footer) = segment::read_with_footer(&self.storage, &found.key)?;
            batches.extend(rows);
            segment::merge(&mut watermarks, &footer.watermarks);
        }
        let schema = table.schema();
        let merged: RecordBatch =
            concat_batches(&schema, &batches).map_err(|source| Error::Arrow {
                context: "merge segments",
                source,
            })?;
        let replaces: Vec<String> = group
            .iter()
            .map(|found| segment::name_of(&found.key).to_owned())
            .collect();
        let stem = format!(
            "part-{:020}-compacted-{:04}",
            jiff::Timestamp::now().as_microsecond(),
            group.len()
        );
        let key = segment::write(
            &self.storage,
            &dir,
            &stem,
            &merged,
            table.sort_key(),
            table.from_events().then_some(&watermarks),
            &replaces,
        )?;
        let output = Segment {
            hour: group[0].hour,
            key,
        };
        let grace = self.query_timeout + Duration::from_secs(60);
        {
            let mut inner = self.lock()?;
            if let Some(list) = inner.segments.get_mut(&table) {
                list.retain(|found| !group.contains(found));
                list.push(output.clone());
                list.sort();
            }
            if table == Table::SessionJoins {
                for found in group {
                    inner.join_tables.remove(&found.key);
                }
                inner
                    .join_tables
                    .insert(output.key.clone(), session_joins::tables_in_batch(&merged));
            }
            let deadline = Instant::now() + grace;
            inner
                .replaced
                .extend(group.iter().map(|found| (deadline, found.key.clone())));
        }
        if table == Table::Events {
            for found in group {
                self.search.forget_segment(&found.key)?;
            }
            self.search
                .index_segment(&output.key, std::slice::from_ref(&merged))?;
            self.search.commit()?;
        }
        Ok(merged.num_rows() as u64)
    }

    /// Deletes replaced files whose grace period has passed.
    fn reap_replaced(&self) -> Result<()> {
        let due: Vec<String> = {
            let mut inner = self.lock()?;
            let now = Instant::now();
            let (due, waiting): (Vec<_>, Vec<_>) = inner
                .replaced
                .drain(..)
                .partition(|(deadline, _)| *deadline <= now);
            inner.replaced = waiting;
            due.into_iter().map(|(_, key)| key).collect()
        };
        for key in due {
            self.storage.delete(&key)?;
        }
        Ok(())
    }
}

/// Splits the files of a partition into merges of at most [`MAX_MERGE_ROWS`] rows, leaving
/// out files that are big enough on their own.
fn merge_groups(storage: &Storage, files: &[Segment]) -> Result<Vec<Vec<Segment>>> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut rows = 0;
    for found in files {
        let n_rows = match segment::row_count(storage, &found.key) {
            Ok(n_rows) => n_rows,
            // Damaged: leave it for `store verify`.
            Err(Error::File(durable::FileError::Corrupt { .. })) => continue,
            Err(error) => return Err(error),
        };
        if n_rows >= MAX_MERGE_ROWS / 2 {
            continue;
        }
        if rows + n_rows > MAX_MERGE_ROWS && !group.is_empty() {
            groups.push(std::mem::take(&mut group));
            rows = 0;
        }
        rows += n_rows;
        group.push(found.clone());
    }
    if !group.is_empty() {
        groups.push(group);
    }
    Ok(groups)
}

#[cfg(test)]
mod tests;
