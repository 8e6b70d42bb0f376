//! Retention: [`Store::apply_retention`] deletes whole hour partitions older than each
//! table's `[store.retention]` days, recording each deletion in `audit_log` first.

use std::collections::BTreeMap;

use model::AuditDraft;

use crate::segment::{self, Segment};
use crate::{Error, Result, Store, Table};

/// One hour partition [`Store::apply_retention`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedPartition {
    pub table: Table,
    /// `date=YYYY-MM-DD/hour=HH`.
    pub partition: String,
    pub files: usize,
    pub rows: u64,
    /// The `audit_log` entry that records it.
    pub audit_id: String,
}

impl Store {
    /// Deletes the hour partitions older than each table's retention (`[store.retention]`) as
    /// of `now`, recording each deletion in `audit_log` first (what, when, by which policy),
    /// and forgets deleted `events` segments in the search index. Partitions from before
    /// partitioning are never deleted.
    pub fn apply_retention(&self, now: jiff::Timestamp) -> Result<Vec<DeletedPartition>> {
        let mut deleted = Vec::new();
        for (&table, &days) in &self.retention {
            let cutoff = now.as_microsecond() - i64::from(days) * 24 * segment::HOUR_MICROS;
            let expired: BTreeMap<i64, Vec<Segment>> = {
                if !self.writable()? {
                    return Err(Error::ReadOnly(self.dir.clone()));
                }
                let inner = self.lock()?;
                let mut by_hour: BTreeMap<i64, Vec<Segment>> = BTreeMap::new();
                for found in inner.segments.get(&table).into_iter().flatten() {
                    if let Some(hour) = found.hour
                        && hour + segment::HOUR_MICROS <= cutoff
                    {
                        by_hour.entry(hour).or_default().push(found.clone());
                    }
                }
                by_hour
            };
            for (hour, segments) in expired {
                // The audit trail's own hours go only once a seal covers every entry in them
                // (the deletion itself is then recorded, so a verifier knows where the trail
                // must start), and in order.
                let audit_through = if table == Table::AuditLog {
                    let through = self.audit_numbers_in(&segments)?;
                    let sealed = self
                        .sealer
                        .as_ref()
                        .and_then(|sealer| sealer.last.lock().ok().map(|last| last.0))
                        .unwrap_or(0);
                    if through > sealed {
                        tracing::info!(
                            partition = hour,
                            through,
                            sealed,
                            "retention keeps audit entries no seal covers yet"
                        );
                        break;
                    }
                    Some(through)
                } else {
                    None
                };
                deleted.push(self.delete_partition(table, days, hour, &segments, audit_through)?);
            }
        }
        Ok(deleted)
    }

    fn delete_partition(
        &self,
        table: Table,
        days: u32,
        hour: i64,
        segments: &[Segment],
        audit_through: Option<u64>,
    ) -> Result<DeletedPartition> {
        let partition_name = segment::partition_dir(hour)?;
        let rows: u64 = segments
            .iter()
            .map(|found| segment::row_count(&self.storage, &found.key).unwrap_or(0))
            .sum();
        let start = jiff::Timestamp::from_microsecond(hour)
            .map(|timestamp| timestamp.to_string())
            .unwrap_or_else(|_| partition_name.clone());
        // The record first: a crash after it and before the files are gone only means the
        // next run deletes (and records) them again, never a deletion nobody recorded.
        let entry = self.record_audit(AuditDraft {
            action: "retention.delete".to_owned(),
            outcome: Some("success".to_owned()),
            actor: Some("policy:retention".to_owned()),
            target: Some(format!("{}/{partition_name}", table.name())),
            source_ip: None,
            message: format!(
                "deleted {} file(s), {rows} row(s) of {} for the hour from {start}: older than the {days} day(s) of [store.retention] {} = {days}",
                segments.len(),
                table.name(),
                table.name(),
            ),
            role: None,
            details: Some(
                serde_json::json!({
                    "table": table.name(),
                    "partition": partition_name,
                    "files": segments.len(),
                    "rows": rows,
                    "retention_days": days,
                    "audit_through": audit_through,
                })
                .to_string(),
            ),
        })?;
        for found in segments {
            self.storage.delete(&found.key)?;
        }
        // Empty directories go too (a failure here is cosmetic).
        self.storage
            .remove_empty_dirs(&format!("{}/{partition_name}", table.name()));
        {
            let mut inner = self.lock()?;
            if let Some(list) = inner.segments.get_mut(&table) {
                list.retain(|found| !segments.contains(found));
            }
            for found in segments {
                inner.join_tables.remove(&found.key);
            }
        }
        if table == Table::Events {
            for found in segments {
                self.search.forget_segment(&found.key)?;
            }
            self.search.commit()?;
        }
        tracing::info!(table = table.name(), partition = %partition_name, n_files = segments.len(), rows, audit = %entry.id, "retention deleted a partition");
        Ok(DeletedPartition {
            table,
            partition: partition_name,
            files: segments.len(),
            rows,
            audit_id: entry.id,
        })
    }
}

impl Store {
    /// The highest audit entry number in `segments`.
    fn audit_numbers_in(&self, segments: &[Segment]) -> Result<u64> {
        let mut through = 0;
        for found in segments {
            for batch in segment::read_all(&self.storage, &found.key)? {
                for entry in crate::schema::audit_entries(&batch)? {
                    through = through.max(entry.number().unwrap_or(0));
                }
            }
        }
        Ok(through)
    }
}

#[cfg(test)]
mod tests;
