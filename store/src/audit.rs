//! The audit trail in the store: [`Store::record_audit`] seals an entry onto the hash chain
//! and makes it durable like an event (WAL, fsync); the chain's head is recovered at open
//! from `audit_log` and the WAL.
//!
//! Seals: the store holds an Ed25519 key ([`SealKey`], `DATA/audit/seal.key` by default,
//! 0600, made at the first writable open; its public half in `DATA/audit/seal.pub`) and signs
//! the chain's head every `audit_seal_every` entries, when [`Store::seal_audit_if_due`] finds
//! the newest seal older than `audit_seal_interval_secs`, and at shutdown
//! ([`Store::seal_audit`]). A seal is itself an entry of the chain (action
//! [`model::audit::SEAL_ACTION`]) whose details hold what it signed. [`verify_trail`] checks
//! the chain and every seal against a public key the verifier trusts, so an edited, removed,
//! reordered or added entry, one after the last seal, and a chain re-sealed with another key
//! are each found and named.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use model::{AuditDraft, AuditEntry};

use crate::segment::{self, Segment};
use crate::storage::Storage;
use crate::wal::WalRecord;
use crate::{Error, Result, Store};

/// What a seal signs: this prefix, the number of the entry it seals through, and that
/// entry's hash.
const SEAL_CONTEXT: &str = "tunnelwatch audit seal v1";

fn seal_message(sealed_through: u64, head: &str) -> Vec<u8> {
    format!("{SEAL_CONTEXT}\n{sealed_through}\n{head}").into_bytes()
}

/// The server's signing key for seals.
pub struct SealKey {
    signing: SigningKey,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

use model::hex::{decode as unhex, encode as hex};

/// Reads a public key: 64 hex digits (what `seal.pub` holds).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey> {
    let bytes = unhex::<32>(text).ok_or_else(|| {
        Error::Config("a seal public key is 64 hex digits (as in DATA/audit/seal.pub)".to_owned())
    })?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|error| Error::Config(format!("not an Ed25519 public key: {error}")))
}

pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex(&key.to_bytes())
}

impl SealKey {
    /// Reads the key in `path`, or makes one there (0600) with its public half beside it
    /// (`.pub`). A key file others may read is made 0600 and the fact logged.
    pub fn load_or_create(path: &Path) -> Result<SealKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let secret = unhex::<32>(&text).ok_or_else(|| {
                    Error::File(durable::FileError::corrupt(
                        "audit seal key",
                        path,
                        "not 64 hex digits",
                    ))
                })?;
                let metadata =
                    std::fs::metadata(path).map_err(|error| Error::io("stat", path, error))?;
                if metadata.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "the audit seal key was readable by others; made it 0600");
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                        .map_err(|error| Error::io("chmod", path, error))?;
                }
                let key = SealKey {
                    signing: SigningKey::from_bytes(&secret),
                };
                key.write_public(path)?;
                Ok(key)
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|error| {
                    Error::Internal(format!("no randomness for the audit seal key: {error}"))
                })?;
                if let Some(dir) = path.parent() {
                    durable::create_dir_all(dir)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|error| Error::io("create", path, error))?;
                file.write_all(format!("{}\n", hex(&secret)).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|error| Error::io("write", path, error))?;
                if let Some(dir) = path.parent() {
                    durable::sync_dir(dir)?;
                }
                let key = SealKey {
                    signing: SigningKey::from_bytes(&secret),
                };
                key.write_public(path)?;
                tracing::info!(path = %path.display(), public_key = %key.public_hex(), "made the audit seal key; publish its public key to verify the trail with");
                Ok(key)
            }
            Err(error) => Err(Error::io("read", path, error)),
        }
    }

    fn write_public(&self, path: &Path) -> Result<()> {
        let public = path.with_extension("pub");
        let text = format!("{}\n", self.public_hex());
        if std::fs::read_to_string(&public).ok().as_deref() != Some(text.as_str()) {
            durable::write_atomic(&public, text.as_bytes())?;
        }
        Ok(())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn public_hex(&self) -> String {
        public_key_hex(&self.verifying_key())
    }

    /// The seal of the chain through entry `sealed_through`, whose hash is `head`.
    fn seal_draft(&self, sealed_through: u64, head: &str) -> AuditDraft {
        let signature = self.signing.sign(&seal_message(sealed_through, head));
        AuditDraft {
            action: model::audit::SEAL_ACTION.to_owned(),
            outcome: Some("success".to_owned()),
            actor: Some("server".to_owned()),
            target: Some("audit_log".to_owned()),
            source_ip: None,
            message: format!("sealed the audit trail through audit:{sealed_through}"),
            role: None,
            details: Some(
                serde_json::json!({
                    "sealed_through": sealed_through,
                    "head": head,
                    "public_key": self.public_hex(),
                    "signature": hex(&signature.to_bytes()),
                })
                .to_string(),
            ),
        }
    }
}

/// When seals are written.
#[derive(Debug)]
pub(crate) struct Sealer {
    pub key: SealKey,
    pub every: u64,
    pub interval: Duration,
    /// The number of the newest seal entry (0: none yet), and when this process last sealed.
    pub last: std::sync::Mutex<(u64, Instant)>,
}

/// The default place of the seal key.
pub fn default_seal_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit").join("seal.key")
}

impl Store {
    /// Seals `draft` as the next entry of the audit trail and stores it durably (WAL and
    /// fsync) before returning it. Every `audit_seal_every` entries a seal follows.
    pub fn record_audit(&self, draft: AuditDraft) -> Result<AuditEntry> {
        if draft.action == model::audit::SEAL_ACTION {
            return Err(Error::Config(format!(
                "{} entries are written by the store's sealer only",
                model::audit::SEAL_ACTION
            )));
        }
        let entry = self
            .append_audit(|_, _| Some(draft))?
            .ok_or_else(|| Error::Internal("an audit entry vanished".to_owned()))?;
        if let Some(sealer) = &self.sealer {
            let last_seal = sealer.last.lock().map(|last| last.0).unwrap_or(0);
            if entry.number().unwrap_or(0).saturating_sub(last_seal) >= sealer.every
                && let Err(error) = self.seal_audit()
            {
                // The entry itself is durable; the next seal covers it.
                tracing::error!(%error, "sealing the audit trail failed; retried with the next entry or tick");
            }
        }
        Ok(entry)
    }

    /// Appends the entry `make` builds from the next number and the head's hash (`None`:
    /// nothing to append), under the writer lock.
    fn append_audit(
        &self,
        make: impl FnOnce(u64, &str) -> Option<AuditDraft>,
    ) -> Result<Option<AuditEntry>> {
        // The writer lock keeps other writers (and other entries) out until this one is
        // durable and the chain's head has moved; readers wait only for the short parts.
        let mut writer = self.writer()?;
        let Some(wal) = writer.as_mut() else {
            return Err(Error::ReadOnly(self.dir.clone()));
        };
        let (n, prev_hash) = self.lock()?.audit_head.clone();
        let Some(draft) = make(n + 1, &prev_hash) else {
            return Ok(None);
        };
        let entry = draft.seal(n + 1, jiff::Timestamp::now(), &prev_hash);
        let record = WalRecord {
            events: Vec::new(),
            sessions: Vec::new(),
            audit: vec![entry.clone()],
            session_joins: Vec::new(),
            collector: None,
            alerts: Vec::new(),
        };
        wal.append(&record)?;
        let mut inner = self.lock()?;
        inner.audit_head = (n + 1, entry.hash.clone());
        inner.buffer.push_audit(record.audit);
        Ok(Some(entry))
    }

    /// Signs the chain's head now, unless the newest entry is a seal already (or the store is
    /// read-only, or has no key). Returns the seal.
    pub fn seal_audit(&self) -> Result<Option<AuditEntry>> {
        let Some(sealer) = &self.sealer else {
            return Ok(None);
        };
        let last_seal = sealer.last.lock().map(|last| last.0).unwrap_or(0);
        let seal = self.append_audit(|next, head| {
            let sealed_through = next - 1;
            (sealed_through > 0 && sealed_through != last_seal)
                .then(|| sealer.key.seal_draft(sealed_through, head))
        })?;
        if let Some(seal) = &seal
            && let Ok(mut last) = sealer.last.lock()
        {
            *last = (seal.number().unwrap_or(0), Instant::now());
        }
        Ok(seal)
    }

    /// Seals when entries wait and the last seal is older than `audit_seal_interval_secs`.
    pub fn seal_audit_if_due(&self) -> Result<Option<AuditEntry>> {
        let Some(sealer) = &self.sealer else {
            return Ok(None);
        };
        let due = sealer
            .last
            .lock()
            .map(|last| last.1.elapsed() >= sealer.interval)
            .unwrap_or(true);
        if due { self.seal_audit() } else { Ok(None) }
    }

    /// The public key seals are signed with (`None` when read-only).
    pub fn seal_public_key(&self) -> Option<String> {
        self.sealer.as_ref().map(|sealer| sealer.key.public_hex())
    }

    /// Entries written since the newest seal.
    pub fn unsealed_audit_entries(&self) -> Result<u64> {
        let head = self.lock()?.audit_head.0;
        let last_seal = self
            .sealer
            .as_ref()
            .and_then(|sealer| sealer.last.lock().ok().map(|last| last.0))
            .unwrap_or(0);
        Ok(head.saturating_sub(last_seal))
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

/// What a seal entry's details hold.
#[derive(Debug, serde::Deserialize)]
struct SealDetails {
    sealed_through: u64,
    head: String,
    public_key: String,
    signature: String,
}

/// A trail that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailSummary {
    pub n_entries: usize,
    pub n_seals: usize,
    /// The first and last entry numbers.
    pub first: u64,
    pub last: u64,
}

/// Why a trail does not verify; each names the first entry at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrailBreak {
    #[error("{0}")]
    Chain(model::audit::ChainBreak),
    #[error("audit entry {id} appears twice with different content")]
    Duplicate { id: String },
    #[error("the trail starts at {id}, but {expected} should come first: entries were removed")]
    Truncated { id: String, expected: String },
    #[error("seal {id} is not valid under the trusted key: {why}")]
    BadSeal { id: String, why: String },
    #[error(
        "audit entry {id} and the {n_after} after it are not covered by a seal (a running server seals every audit_seal_interval_secs and at shutdown)"
    )]
    Unsealed { id: String, n_after: u64 },
}

/// Checks `entries` (as read back, in any order) against `trusted`: duplicates, where the
/// trail must start (entry 1, or the one after what retention recorded deleting), every hash,
/// every seal's signature, and that the newest entry is a seal.
pub fn verify_trail(
    mut entries: Vec<AuditEntry>,
    trusted: &VerifyingKey,
) -> std::result::Result<TrailSummary, TrailBreak> {
    entries.sort_by_key(AuditEntry::number);
    let mut unique: Vec<AuditEntry> = Vec::with_capacity(entries.len());
    for entry in entries {
        match unique.last() {
            Some(last) if last.number() == entry.number() => {
                if *last != entry {
                    return Err(TrailBreak::Duplicate { id: entry.id });
                }
            }
            _ => unique.push(entry),
        }
    }
    let Some(first) = unique.first() else {
        return Ok(TrailSummary {
            n_entries: 0,
            n_seals: 0,
            first: 0,
            last: 0,
        });
    };
    let first_number = first.number().unwrap_or(0);
    // Retention records what it deleted of the trail itself; the rest must be there.
    let deleted_through = unique
        .iter()
        .filter(|entry| entry.draft.action == "retention.delete")
        .filter_map(|entry| {
            let details: serde_json::Value =
                serde_json::from_str(entry.draft.details.as_deref()?).ok()?;
            details.get("audit_through")?.as_u64()
        })
        .max()
        .unwrap_or(0);
    if first_number != deleted_through + 1 {
        return Err(TrailBreak::Truncated {
            id: first.id.clone(),
            expected: format!("audit:{}", deleted_through + 1),
        });
    }
    let from = if first_number == 1 {
        model::audit::GENESIS.to_owned()
    } else {
        first.prev_hash.clone()
    };
    model::audit::verify_chain(&unique, &from).map_err(TrailBreak::Chain)?;
    let mut n_seals = 0;
    let mut last_seal = None;
    for entry in &unique {
        if entry.draft.action != model::audit::SEAL_ACTION {
            continue;
        }
        let bad = |why: &str| TrailBreak::BadSeal {
            id: entry.id.clone(),
            why: why.to_owned(),
        };
        let details: SealDetails = entry
            .draft
            .details
            .as_deref()
            .and_then(|text| serde_json::from_str(text).ok())
            .ok_or_else(|| bad("its details are not a seal's"))?;
        let number = entry.number().unwrap_or(0);
        if details.sealed_through + 1 != number || details.head != entry.prev_hash {
            return Err(bad("it does not seal the entry before it"));
        }
        if unhex::<32>(&details.public_key) != Some(trusted.to_bytes()) {
            return Err(bad(&format!(
                "signed by another key ({}…)",
                details.public_key.chars().take(16).collect::<String>()
            )));
        }
        let signature = unhex::<64>(&details.signature)
            .map(|bytes| ed25519_dalek::Signature::from_bytes(&bytes))
            .ok_or_else(|| bad("its signature is not 64 bytes of hex"))?;
        trusted
            .verify_strict(
                &seal_message(details.sealed_through, &details.head),
                &signature,
            )
            .map_err(|_| bad("the signature does not match"))?;
        n_seals += 1;
        last_seal = Some(number);
    }
    let last = unique.last().and_then(AuditEntry::number).unwrap_or(0);
    if last_seal != Some(last) {
        let first_unsealed = last_seal.map_or(first_number, |seal| seal + 1);
        return Err(TrailBreak::Unsealed {
            id: format!("audit:{first_unsealed}"),
            n_after: last - first_unsealed,
        });
    }
    Ok(TrailSummary {
        n_entries: unique.len(),
        n_seals,
        first: first_number,
        last,
    })
}

#[cfg(test)]
mod tests;
