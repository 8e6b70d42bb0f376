//! Keeping a data directory sound: [`Store::verify`] reads everything back (checksums,
//! every page, the search index's coverage, the audit chain) and, with `repair`, moves what
//! is damaged to `DATA/quarantine/` and rebuilds the index; opening a store quarantines what
//! it cannot read and indexes what the index lacks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::search::SearchIndex;
use crate::segment::{self, Segment};
use crate::storage::Storage;
use crate::{Error, Inner, Result, Store, Table, schema};

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments_checked: usize,
    pub rows_checked: u64,
    /// Segments with a page or footer that cannot be decoded.
    pub corrupt_segments: Vec<PathBuf>,
    /// `events` segments the search index has no documents for.
    pub unindexed_segments: Vec<PathBuf>,
    /// Torn or corrupt write-ahead log records skipped at open.
    pub corrupt_wal_records: u64,
    /// Entries of the audit trail checked, and the first break in its hash chain, if any.
    pub audit_entries: usize,
    pub audit_break: Option<String>,
    /// With `repair`: segments moved to `DATA/quarantine/` and whether the index was rebuilt.
    pub quarantined: Vec<PathBuf>,
    pub index_rebuilt: bool,
}

impl VerifyReport {
    pub fn is_healthy(&self) -> bool {
        self.corrupt_segments.is_empty()
            && self.unindexed_segments.is_empty()
            && self.corrupt_wal_records == 0
            && self.audit_break.is_none()
    }
}

impl Store {
    /// Rebuilds the full-text index from the `events` segments; returns the events indexed.
    pub fn rebuild_index(&self) -> Result<u64> {
        if !self.writable()? {
            return Err(Error::ReadOnly(self.dir.clone()));
        }
        let events = {
            let inner = self.lock()?;
            inner
                .segments
                .get(&Table::Events)
                .cloned()
                .unwrap_or_default()
        };
        self.search.clear()?;
        let mut n_indexed = 0;
        for found in &events {
            let rows = segment::read_all(&self.storage, &found.key)?;
            n_indexed += self.search.index_segment(&found.key, &rows)? as u64;
        }
        self.search.commit()?;
        self.lock()?.index_failures = 0;
        tracing::info!(
            n_indexed,
            n_segments = events.len(),
            "rebuilt the search index"
        );
        Ok(n_indexed)
    }

    /// Reads every row of every segment (decoding every page) and checks that the search
    /// index covers every `events` segment. With `repair` (a writable store), corrupt segments
    /// are moved to `DATA/quarantine/` and the index is rebuilt from what is intact.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport> {
        let writable = self.writable()?;
        let (segments, corrupt_wal_records) = {
            let inner = self.lock()?;
            (inner.segments.clone(), inner.corrupt_wal_records)
        };
        if repair && !writable {
            return Err(Error::ReadOnly(self.dir.clone()));
        }
        if !writable {
            self.search.refresh()?;
        }
        let mut corrupt_keys = Vec::new();
        let mut report = VerifyReport {
            corrupt_wal_records,
            ..VerifyReport::default()
        };
        for (table, found) in segments
            .iter()
            .flat_map(|(table, list)| list.iter().map(move |found| (*table, found)))
        {
            report.segments_checked += 1;
            match segment::read_all(&self.storage, &found.key) {
                Ok(batches) => {
                    report.rows_checked += batches.iter().map(|b| b.num_rows() as u64).sum::<u64>();
                    if table == Table::Events && !self.search.has_segment(&found.key)? {
                        report
                            .unindexed_segments
                            .push(self.storage.describe(&found.key));
                    }
                }
                Err(error @ Error::File(durable::FileError::Corrupt { .. })) => {
                    tracing::error!(%error, "corrupt segment");
                    report
                        .corrupt_segments
                        .push(self.storage.describe(&found.key));
                    corrupt_keys.push(found.key.clone());
                }
                Err(error) => return Err(error),
            }
        }
        let (audit_entries, audit_break) = self.verify_audit(&segments)?;
        report.audit_entries = audit_entries;
        report.audit_break = audit_break;
        if repair && (!report.corrupt_segments.is_empty() || !report.unindexed_segments.is_empty())
        {
            {
                let mut inner = self.lock()?;
                for key in &corrupt_keys {
                    quarantine(&self.dir, &self.storage, key)?;
                    for list in inner.segments.values_mut() {
                        list.retain(|found| &found.key != key);
                    }
                    inner.quarantined_segments += 1;
                }
            }
            report.quarantined = report.corrupt_segments.clone();
            self.rebuild_index()?;
            report.index_rebuilt = true;
        }
        Ok(report)
    }

    /// Checks the audit trail's hash chain over the readable `audit_log` segments and the
    /// entries not yet flushed: (entries, first break). The chain is checked from its oldest
    /// entry still kept (retention may have removed older ones).
    fn verify_audit(
        &self,
        segments: &BTreeMap<Table, Vec<Segment>>,
    ) -> Result<(usize, Option<String>)> {
        let entries = self.audit_entries_in(segments)?;
        let Some(first) = entries.first() else {
            return Ok((0, None));
        };
        let from = if first.number() == Some(1) {
            model::audit::GENESIS.to_owned()
        } else {
            first.prev_hash.clone()
        };
        let broken = model::audit::verify_chain(&entries, &from)
            .err()
            .map(|chain_break| chain_break.to_string());
        Ok((entries.len(), broken))
    }
}

impl Store {
    /// The audit trail as kept: the readable `audit_log` segments and the entries not yet
    /// flushed, in chain order.
    pub fn audit_entries(&self) -> Result<Vec<model::AuditEntry>> {
        let segments = self.lock()?.segments.clone();
        self.audit_entries_in(&segments)
    }

    fn audit_entries_in(
        &self,
        segments: &BTreeMap<Table, Vec<Segment>>,
    ) -> Result<Vec<model::AuditEntry>> {
        let mut entries = Vec::new();
        for found in segments.get(&Table::AuditLog).into_iter().flatten() {
            if let Ok(batches) = segment::read_all(&self.storage, &found.key) {
                for batch in batches {
                    entries.extend(schema::audit_entries(&batch)?);
                }
            }
        }
        entries.extend(self.lock()?.buffer.all_audit().cloned());
        entries.sort_by_key(|entry| entry.number());
        // The same entry may be both flushed and still in the WAL; a second, different entry
        // with the same number is kept for the verifier to report.
        entries.dedup();
        Ok(entries)
    }
}

/// Segments and search indexes in `DATA/quarantine/`.
pub(crate) fn count_quarantined(dir: &Path) -> Result<(usize, bool)> {
    let quarantine_dir = dir.join("quarantine");
    let entries = match std::fs::read_dir(&quarantine_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok((0, false)),
        Err(error) => return Err(Error::io("list", &quarantine_dir, error)),
    };
    let mut n_segments = 0;
    let mut has_index = false;
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("list", &quarantine_dir, error))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") {
            n_segments += 1;
        } else if name.starts_with("index-") {
            has_index = true;
        }
    }
    Ok((n_segments, has_index))
}

/// Opens the search index; an unreadable one is moved to quarantine (by a writer, which
/// then rebuilds it) or ignored (by a reader, which then finds nothing).
pub(crate) fn open_search(dir: &Path, writable: bool, inner: &mut Inner) -> Result<SearchIndex> {
    let index_dir = dir.join("index");
    match SearchIndex::open(&index_dir, writable) {
        Ok(index) => Ok(index),
        Err(error @ Error::File(durable::FileError::Corrupt { .. })) => {
            tracing::error!(%error, "unreadable search index");
            inner.quarantined_index = true;
            if !writable {
                return SearchIndex::open(&dir.join("index-unavailable"), false);
            }
            let target = dir
                .join("quarantine")
                .join(format!("index-{}", jiff::Timestamp::now().as_microsecond()));
            std::fs::rename(&index_dir, &target)
                .map_err(|error| Error::io("quarantine", &index_dir, error))?;
            tracing::warn!(to = %target.display(), "moved the unreadable search index to quarantine; rebuilding it from Parquet");
            SearchIndex::open(&index_dir, true)
        }
        Err(error) => Err(error),
    }
}

/// Indexes the `events` segments the index lacks (a crash between a flush's Parquet and its
/// index commit, or a new index).
pub(crate) fn index_missing(
    storage: &Storage,
    search: &SearchIndex,
    events: &[Segment],
) -> Result<()> {
    let mut n_segments = 0;
    let mut n_indexed = 0;
    for found in events {
        if search.has_segment(&found.key)? {
            continue;
        }
        match segment::read_all(storage, &found.key) {
            Ok(rows) => {
                n_indexed += search.index_segment(&found.key, &rows)?;
                n_segments += 1;
            }
            // The footer was readable at open but a page is not: `store verify` quarantines.
            Err(error @ Error::File(durable::FileError::Corrupt { .. })) => {
                tracing::error!(%error, "cannot index a segment");
            }
            Err(error) => return Err(error),
        }
    }
    if n_segments > 0 {
        search.commit()?;
        tracing::info!(
            n_segments,
            n_indexed,
            "indexed segments the search index lacked"
        );
    }
    Ok(())
}

/// Moves an unreadable segment to `DATA/quarantine/<table>-<date>-<hour>-<file>` (always
/// local: from an object store, its bytes are copied down and the object deleted).
pub(crate) fn quarantine(dir: &Path, storage: &Storage, key: &str) -> Result<()> {
    let flat: Vec<String> = key.split('/').map(|part| part.replace('=', "_")).collect();
    let target = dir.join("quarantine").join(flat.join("-"));
    let from = storage.describe(key);
    if storage.is_remote() {
        let bytes = storage.get(key)?;
        std::fs::write(&target, &bytes).map_err(|error| Error::io("write", &target, error))?;
        storage.delete(key)?;
    } else {
        std::fs::rename(&from, &target).map_err(|error| Error::io("quarantine", &from, error))?;
    }
    tracing::warn!(from = %from.display(), to = %target.display(), "moved an unreadable segment to quarantine");
    Ok(())
}
