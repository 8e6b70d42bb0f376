//! The audit trail in the store: [`Store::record_audit`] seals an entry onto the hash chain
//! and makes it durable like an event (WAL, fsync); the chain's head is recovered at open
//! from `audit_log` and the WAL.

use model::{AuditDraft, AuditEntry};

use crate::segment::{self, Segment};
use crate::storage::Storage;
use crate::wal::WalRecord;
use crate::{Error, Result, Store};

impl Store {
    /// Seals `draft` as the next entry of the audit trail and stores it durably (WAL and
    /// fsync) before returning it.
    pub fn record_audit(&self, draft: AuditDraft) -> Result<AuditEntry> {
        // The writer lock keeps other writers (and other entries) out until this one is
        // durable and the chain's head has moved; readers wait only for the short parts.
        let mut writer = self.writer()?;
        let Some(wal) = writer.as_mut() else {
            return Err(Error::ReadOnly(self.dir.clone()));
        };
        let (n, prev_hash) = self.lock()?.audit_head.clone();
        let entry = draft.seal(n + 1, jiff::Timestamp::now(), &prev_hash);
        let record = WalRecord {
            events: Vec::new(),
            sessions: Vec::new(),
            audit: vec![entry.clone()],
            session_joins: Vec::new(),
            collector: None,
        };
        wal.append(&record)?;
        let mut inner = self.lock()?;
        inner.audit_head = (n + 1, entry.hash.clone());
        inner.buffer.push_audit(record.audit);
        Ok(entry)
    }
}

/// The number and hash of the newest audit entry in the `audit_log` segments (the genesis
/// hash when there is none).
pub(crate) fn audit_head_in(storage: &Storage, segments: &[Segment]) -> Result<(u64, String)> {
    use datafusion::arrow::array::{Array, StringArray};
    let mut head = (0, model::audit::GENESIS.to_owned());
    for found in segments {
        let batches = match segment::read_all(storage, &found.key) {
            Ok(batches) => batches,
            // A damaged audit segment must not stop the store from opening; `store verify`
            // reports the gap it leaves in the chain.
            Err(error @ Error::File(durable::FileError::Corrupt { .. })) => {
                tracing::error!(%error, "unreadable audit_log segment");
                continue;
            }
            Err(error) => return Err(error),
        };
        for batch in batches {
            let ids = batch
                .column_by_name("event_id")
                .and_then(|column| column.as_any().downcast_ref::<StringArray>());
            let hashes = batch
                .column_by_name("vpn_audit_hash")
                .and_then(|column| column.as_any().downcast_ref::<StringArray>());
            let (Some(ids), Some(hashes)) = (ids, hashes) else {
                continue;
            };
            for row in 0..batch.num_rows() {
                let number = ids
                    .value(row)
                    .strip_prefix("audit:")
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(number) = number
                    && number > head.0
                    && !hashes.is_null(row)
                {
                    head = (number, hashes.value(row).to_owned());
                }
            }
        }
    }
    Ok(head)
}
