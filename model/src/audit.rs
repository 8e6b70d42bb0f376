//! The audit trail: what tunnelwatch itself did (a retention policy deleted data, a responder
//! revoked a user), as a hash chain. Each [`AuditEntry`] carries the hash of the entry before
//! it and a hash over its own fields and that one, so removing, reordering or editing an entry
//! breaks every hash after it ([`verify_chain`]).
//!
//! Entries carry their format [`AuditEntry::version`]: version 1 (the first) hashes the fields
//! it had; version 2 adds the actor's role and structured details (JSON). Each entry is
//! checked by the rules of its own version, so older entries still verify. Seals (entries with
//! the action [`SEAL_ACTION`], signed by the server's key) are part of the chain; the store
//! writes and checks them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format new entries are written in.
pub const CURRENT_VERSION: u32 = 2;

/// The `event.action` of a seal: an entry that signs the hash of the entry before it.
pub const SEAL_ACTION: &str = "audit.seal";

/// The `vpn.audit_prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it is sealed into the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDraft {
    /// `event.action`, e.g. `retention.delete`, `revoke.terminate`.
    pub action: String,
    /// `event.outcome`: `success` or `failure`.
    pub outcome: Option<String>,
    /// `user.name`: who did it (an analyst, or `policy:<name>` for automatic actions).
    pub actor: Option<String>,
    /// `user.target.name`: whom or what it concerned.
    pub target: Option<String>,
    /// `source.ip`: where the actor came from, if from the network.
    pub source_ip: Option<std::net::IpAddr>,
    /// `message`: what was done, in a sentence a compliance officer can read.
    pub message: String,
    /// `user.roles`: the actor's role when they acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `vpn.audit_details`: structured details as JSON text (ids of plans, alerts and runs,
    /// the prior state an undo needs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// A sealed entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// `event.id`: `audit:<n>`, `n` counting from 1 along the chain.
    pub id: String,
    pub timestamp: jiff::Timestamp,
    #[serde(flatten)]
    pub draft: AuditDraft,
    /// `vpn.audit_prev_hash` (hex SHA-256).
    pub prev_hash: String,
    /// `vpn.audit_hash` (hex SHA-256).
    pub hash: String,
    /// `vpn.audit_version`: the format this entry was written in (1 when absent: the entries
    /// written before versions existed).
    #[serde(default = "first_version")]
    pub version: u32,
}

fn first_version() -> u32 {
    1
}

impl AuditDraft {
    /// Seals the draft as entry number `n` of the chain, after the entry whose hash is
    /// `prev_hash` ([`GENESIS`] for the first).
    pub fn seal(self, n: u64, timestamp: jiff::Timestamp, prev_hash: &str) -> AuditEntry {
        let id = format!("audit:{n}");
        let hash = entry_hash(CURRENT_VERSION, &id, timestamp, &self, prev_hash);
        AuditEntry {
            id,
            timestamp,
            draft: self,
            prev_hash: prev_hash.to_owned(),
            hash,
            version: CURRENT_VERSION,
        }
    }
}

impl AuditEntry {
    /// The position in the chain (the `n` of `audit:<n>`).
    pub fn number(&self) -> Option<u64> {
        self.id.strip_prefix("audit:")?.parse().ok()
    }
}

/// SHA-256 over the fields, each length-prefixed so that no two different entries hash the
/// same bytes. Version 1 hashes the nine fields it had; version 2 starts with the version and
/// adds the role and the details. An unknown version hashes as nothing valid.
fn entry_hash(
    version: u32,
    id: &str,
    timestamp: jiff::Timestamp,
    draft: &AuditDraft,
    prev_hash: &str,
) -> String {
    let mut hasher = Sha256::new();
    let micros = timestamp.as_microsecond().to_string();
    let source_ip = draft.source_ip.map(|ip| ip.to_string());
    let version_text = version.to_string();
    let fields: Vec<Option<&str>> = match version {
        1 => vec![
            Some(id),
            Some(&micros),
            Some(&draft.action),
            draft.outcome.as_deref(),
            draft.actor.as_deref(),
            draft.target.as_deref(),
            source_ip.as_deref(),
            Some(&draft.message),
            Some(prev_hash),
        ],
        2 => vec![
            Some(&version_text),
            Some(id),
            Some(&micros),
            Some(&draft.action),
            draft.outcome.as_deref(),
            draft.actor.as_deref(),
            draft.role.as_deref(),
            draft.target.as_deref(),
            source_ip.as_deref(),
            Some(&draft.message),
            draft.details.as_deref(),
            Some(prev_hash),
        ],
        _ => return String::new(),
    };
    for field in fields {
        match field {
            None => hasher.update([0u8]),
            Some(text) => {
                hasher.update([1u8]);
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
        }
    }
    crate::hex::encode(&hasher.finalize())
}

/// Why a chain is not intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// An entry's hash does not match its fields: it was edited.
    Altered { id: String },
    /// An entry does not follow the one before it: one was removed, inserted or reordered.
    Gap { id: String, expected_prev: String },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Altered { id } => write!(f, "audit entry {id} was altered"),
            ChainBreak::Gap { id, .. } => {
                write!(f, "audit entry {id} does not follow the entry before it")
            }
        }
    }
}

/// Checks a chain given in order (from its first entry, or from any entry if `from` is the
/// hash that precedes it): every hash matches its fields and every entry follows the one
/// before. Returns the first break.
pub fn verify_chain<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
    from: &str,
) -> Result<(), ChainBreak> {
    let mut expected_prev = from.to_owned();
    for entry in entries {
        if entry.prev_hash != expected_prev {
            return Err(ChainBreak::Gap {
                id: entry.id.clone(),
                expected_prev,
            });
        }
        let expected = entry_hash(
            entry.version,
            &entry.id,
            entry.timestamp,
            &entry.draft,
            &entry.prev_hash,
        );
        if expected.is_empty() || expected != entry.hash {
            return Err(ChainBreak::Altered {
                id: entry.id.clone(),
            });
        }
        expected_prev.clone_from(&entry.hash);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(message: &str) -> AuditDraft {
        AuditDraft {
            action: "retention.delete".to_owned(),
            outcome: Some("success".to_owned()),
            actor: Some("policy:retention".to_owned()),
            target: Some("flows/date=2026-08-01/hour=03".to_owned()),
            source_ip: None,
            message: message.to_owned(),
            role: Some("admin".to_owned()),
            details: Some(r#"{"partition":"date=2026-08-01/hour=03"}"#.to_owned()),
        }
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut entries: Vec<AuditEntry> = Vec::new();
        for number in 1..=n {
            let prev = entries
                .last()
                .map_or(GENESIS, |entry| entry.hash.as_str())
                .to_owned();
            let at = jiff::Timestamp::from_second(1_795_000_000 + number as i64).unwrap();
            entries.push(draft(&format!("entry {number}")).seal(number, at, &prev));
        }
        entries
    }

    #[test]
    fn an_intact_chain_verifies_and_any_change_breaks_it() {
        let entries = chain(4);
        assert_eq!(verify_chain(&entries, GENESIS), Ok(()));
        assert_eq!(entries[2].number(), Some(3));
        // From the middle, given the hash before.
        assert_eq!(verify_chain(&entries[2..], &entries[1].hash), Ok(()));

        let mut edited = entries.clone();
        edited[1].draft.message = "entry 2, edited".to_owned();
        assert_eq!(
            verify_chain(&edited, GENESIS),
            Err(ChainBreak::Altered {
                id: "audit:2".to_owned()
            })
        );
        let mut removed = entries.clone();
        removed.remove(1);
        assert!(matches!(
            verify_chain(&removed, GENESIS),
            Err(ChainBreak::Gap { .. })
        ));
        let mut swapped = entries.clone();
        swapped.swap(1, 2);
        assert!(verify_chain(&swapped, GENESIS).is_err());
        // Moving text between fields changes the hash (fields are length-prefixed).
        let mut shifted = entries.clone();
        shifted[0].draft.actor = Some("policy:retentionflows/date=2026-08-01/hour=03".to_owned());
        shifted[0].draft.target = None;
        assert!(verify_chain(&shifted, GENESIS).is_err());
    }

    #[test]
    fn each_entry_verifies_by_the_rules_of_its_version() {
        // A version 1 entry (written before roles and details existed) still verifies, and a
        // chain may go on from it in version 2.
        let v1_json = r#"{"id":"audit:1","timestamp":"2026-11-01T00:00:00Z","action":"retention.delete","outcome":"success","actor":"policy:retention","target":"flows/date=2026-08-01/hour=03","source_ip":null,"message":"deleted","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"HASH"}"#;
        let mut v1: AuditEntry = serde_json::from_str(v1_json).unwrap();
        assert_eq!(v1.version, 1);
        v1.hash = entry_hash(1, &v1.id, v1.timestamp, &v1.draft, GENESIS);
        let at = jiff::Timestamp::from_second(1_795_000_000).unwrap();
        let v2 = draft("after").seal(2, at, &v1.hash);
        assert_eq!(v2.version, CURRENT_VERSION);
        assert_eq!(verify_chain([&v1, &v2], GENESIS), Ok(()));
        // The role and the details are covered by the hash.
        for change in [
            |entry: &mut AuditEntry| entry.draft.role = Some("viewer".to_owned()),
            |entry: &mut AuditEntry| entry.draft.details = None,
            |entry: &mut AuditEntry| entry.version = 1,
            |entry: &mut AuditEntry| entry.version = 99,
        ] {
            let mut changed = v2.clone();
            change(&mut changed);
            assert_eq!(
                verify_chain([&v1, &changed], GENESIS),
                Err(ChainBreak::Altered {
                    id: "audit:2".to_owned()
                })
            );
        }
    }

    #[test]
    fn entries_survive_json() {
        let entries = chain(2);
        let json = serde_json::to_string(&entries).unwrap();
        let back: Vec<AuditEntry> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, entries);
        assert_eq!(verify_chain(&back, GENESIS), Ok(()));
    }
}
