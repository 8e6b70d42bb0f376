//! Seals and tampering, on real Parquet segments and the real WAL: each way of changing the
//! trail is found by [`verify_trail`] and named.

use super::*;
use crate::schema::Table;
use crate::{Config, Store};

fn draft(message: &str) -> AuditDraft {
    AuditDraft {
        action: "account.add".to_owned(),
        outcome: Some("success".to_owned()),
        actor: Some("cli:root".to_owned()),
        target: Some(message.to_owned()),
        source_ip: None,
        message: format!("added {message}"),
        role: Some("admin".to_owned()),
        details: Some(format!(r#"{{"account":"{message}"}}"#)),
    }
}

fn config(dir: &Path) -> Config {
    Config {
        audit_seal_every: 4,
        ..Config::for_dir(dir)
    }
}

/// Nine entries with a seal after every four and one at the end: entries 1-4, the seal 5,
/// 6-9, the seal 10, entry 11 and the final seal 12.
fn trail(dir: &Path) -> (VerifyingKey, Vec<AuditEntry>) {
    let store = Store::open(&config(dir)).unwrap();
    for n in 0..9 {
        store.record_audit(draft(&format!("user{n}"))).unwrap();
    }
    assert!(store.seal_audit().unwrap().is_some());
    assert!(store.seal_audit().unwrap().is_none(), "nothing new to seal");
    let key = store.sealer.as_ref().unwrap().key.verifying_key();
    let entries = store.audit_entries().unwrap();
    (key, entries)
}

#[test]
fn seals_come_every_n_entries_and_on_demand_and_the_trail_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (key, entries) = trail(dir.path());
    let seals: Vec<u64> = entries
        .iter()
        .filter(|entry| entry.draft.action == model::audit::SEAL_ACTION)
        .filter_map(AuditEntry::number)
        .collect();
    assert_eq!(seals, [5, 10, 12]);
    assert_eq!(entries.len(), 12);
    assert_eq!(
        verify_trail(entries.clone(), &key),
        Ok(TrailSummary {
            n_entries: 12,
            n_seals: 3,
            first: 1,
            last: 12
        })
    );
    // The key and its public half are on disk, the key for the owner only.
    let key_path = dir.path().join("audit/seal.key");
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = std::fs::read_to_string(dir.path().join("audit/seal.pub")).unwrap();
    assert_eq!(parse_public_key(&public).unwrap(), key);
    // The same key after a restart, and the count of entries since the last seal goes on.
    let store = Store::open(&config(dir.path())).unwrap();
    assert_eq!(store.seal_public_key(), Some(public_key_hex(&key)));
    assert_eq!(store.unsealed_audit_entries().unwrap(), 0);
    store.record_audit(draft("late")).unwrap();
    assert_eq!(store.unsealed_audit_entries().unwrap(), 1);
    // An entry after the last seal is not verified until sealed.
    let unsealed = verify_trail(store.audit_entries().unwrap(), &key).unwrap_err();
    assert_eq!(
        unsealed,
        TrailBreak::Unsealed {
            id: "audit:13".to_owned(),
            n_after: 0
        }
    );
    store.seal_audit().unwrap();
    assert!(verify_trail(store.audit_entries().unwrap(), &key).is_ok());
    // Only the sealer writes seals.
    let mut forged = draft("x");
    forged.action = model::audit::SEAL_ACTION.to_owned();
    assert!(store.record_audit(forged).is_err());
}

/// Re-chains `entries` from `from` on (recomputing every hash after an edit), as an
/// attacker who knows the format would.
fn rechain(entries: &mut [AuditEntry], from: usize, resign: Option<&SealKey>) {
    for index in from..entries.len() {
        let prev = if index == 0 {
            model::audit::GENESIS.to_owned()
        } else {
            entries[index - 1].hash.clone()
        };
        let number = entries[index].number().unwrap();
        let mut draft = entries[index].draft.clone();
        if draft.action == model::audit::SEAL_ACTION
            && let Some(key) = resign
        {
            draft = key.seal_draft(number - 1, &prev);
        }
        let resealed = draft.seal(number, entries[index].timestamp, &prev);
        entries[index] = resealed;
    }
}

#[track_caller]
fn check(entries: Vec<AuditEntry>, key: &VerifyingKey, expected: &str) {
    let error = verify_trail(entries, key).unwrap_err().to_string();
    assert!(error.contains(expected), "{error}");
}

#[test]
fn every_kind_of_tampering_is_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (key, entries) = trail(dir.path());
    // Edit one entry.
    let mut edited = entries.clone();
    edited[2].draft.message = "added nobody".to_owned();
    check(edited, &key, "audit entry audit:3 was altered");
    // Delete one.
    let mut removed = entries.clone();
    removed.remove(3);
    check(removed, &key, "audit entry audit:5 does not follow");
    // Swap two (their places in the chain).
    let mut swapped = entries.clone();
    let (a, b) = (swapped[1].clone(), swapped[2].clone());
    swapped[1] = AuditEntry {
        id: a.id.clone(),
        ..b.clone()
    };
    swapped[2] = AuditEntry {
        id: b.id.clone(),
        ..a
    };
    check(swapped, &key, "audit entry audit:2");
    // Remove the oldest ones.
    check(entries[3..].to_vec(), &key, "the trail starts at audit:4");
    // A second, different entry with a number that exists.
    let mut doubled = entries.clone();
    let mut twin = entries[4].clone();
    twin.draft.message = "other".to_owned();
    doubled.push(twin);
    check(doubled, &key, "audit:5 appears twice");
    // Append one after the last seal, chained correctly.
    let mut appended = entries.clone();
    let last = appended.last().unwrap().hash.clone();
    appended.push(draft("mallory").seal(13, jiff::Timestamp::now(), &last));
    check(
        appended,
        &key,
        "audit entry audit:13 and the 0 after it are not covered",
    );
    // Edit and re-chain everything after it: the seals no longer match.
    let mut rechained = entries.clone();
    rechained[2].draft.message = "added nobody".to_owned();
    rechain(&mut rechained, 2, None);
    check(
        rechained,
        &key,
        "seal audit:5 is not valid under the trusted key",
    );
    // Edit, re-chain and re-seal with another key: found against the published key.
    let other = SealKey::load_or_create(&dir.path().join("attacker.key")).unwrap();
    let mut resealed = entries.clone();
    resealed[2].draft.message = "added nobody".to_owned();
    rechain(&mut resealed, 2, Some(&other));
    check(resealed.clone(), &key, "signed by another key");
    assert!(
        verify_trail(resealed, &other.verifying_key()).is_ok(),
        "self-consistent under its own key"
    );
}

/// The `audit_log` segments' entries, rewritten by `change` as new Parquet files (named for
/// their new checksum, as an attacker with write access would).
fn rewrite_segments(dir: &Path, change: impl FnOnce(&mut Vec<AuditEntry>)) {
    let store = Store::open(&config(dir)).unwrap();
    let segments = store.lock().unwrap().segments[&Table::AuditLog].clone();
    let mut entries = Vec::new();
    for found in &segments {
        for batch in segment::read_all(&store.storage, &found.key).unwrap() {
            entries.extend(crate::schema::audit_entries(&batch).unwrap());
        }
        store.storage.delete(&found.key).unwrap();
    }
    change(&mut entries);
    let batch = crate::schema::audit_batch(&entries.iter().collect::<Vec<_>>()).unwrap();
    let dir_key = segment::dir_of(&segments[0].key).to_owned();
    segment::write(&store.storage, &dir_key, "tampered", &batch, &[], None, &[]).unwrap();
}

fn verify_dir(dir: &Path, key: &VerifyingKey) -> std::result::Result<TrailSummary, TrailBreak> {
    let store = Store::open_read_only(&config(dir)).unwrap();
    verify_trail(store.audit_entries().unwrap(), key)
}

#[test]
fn tampering_with_the_parquet_files_is_found() {
    type Change = fn(&mut Vec<AuditEntry>);
    let cases: [(Change, &str); 3] = [
        (
            |entries| entries[6].draft.target = Some("someone".to_owned()),
            "audit:7 was altered",
        ),
        (
            |entries| {
                entries.remove(7);
            },
            "audit:9 does not follow",
        ),
        (
            |entries| {
                let last = entries.last().unwrap().hash.clone();
                entries.push(draft("mallory").seal(13, jiff::Timestamp::now(), &last));
            },
            "audit:13 and the 0 after it are not covered",
        ),
    ];
    for (change, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (key, _) = trail(dir.path());
        Store::open(&config(dir.path())).unwrap().flush().unwrap();
        assert!(verify_dir(dir.path(), &key).is_ok());
        rewrite_segments(dir.path(), change);
        let error = verify_dir(dir.path(), &key).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected}: {error}");
    }
}

#[test]
fn swapping_and_resealing_in_the_parquet_files_are_found() {
    // Two entries change places in the chain.
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = trail(dir.path());
    Store::open(&config(dir.path())).unwrap().flush().unwrap();
    rewrite_segments(dir.path(), |entries| {
        let (a, b) = (entries[1].clone(), entries[2].clone());
        entries[1] = AuditEntry {
            id: a.id.clone(),
            ..b.clone()
        };
        entries[2] = AuditEntry {
            id: b.id.clone(),
            ..a
        };
    });
    let error = verify_dir(dir.path(), &key).unwrap_err().to_string();
    assert!(error.contains("audit entry audit:2"), "{error}");
    // Edited, re-chained and re-sealed under an intruder's key: found against the published key.
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = trail(dir.path());
    Store::open(&config(dir.path())).unwrap().flush().unwrap();
    let intruder = SealKey::load_or_create(&dir.path().join("intruder.key")).unwrap();
    rewrite_segments(dir.path(), |entries| {
        entries.sort_by_key(AuditEntry::number);
        entries[2].draft.message = "added nobody".to_owned();
        rechain(entries, 2, Some(&intruder));
    });
    let error = verify_dir(dir.path(), &key).unwrap_err().to_string();
    assert!(
        error.contains("seal audit:5 is not valid under the trusted key: signed by another key"),
        "{error}"
    );
    assert!(verify_dir(dir.path(), &intruder.verifying_key()).is_ok());
}

#[test]
fn tampering_with_the_wal_before_a_flush_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = trail(dir.path());
    // Rewrite the WAL with one entry's message changed (length and checksum made right).
    let (mut records, _) = crate::wal::read_all(&dir.path().join("wal")).unwrap();
    for record in &mut records {
        for entry in &mut record.audit {
            if entry.id == "audit:8" {
                entry.draft.message = "added nobody".to_owned();
            }
        }
    }
    for entry in std::fs::read_dir(dir.path().join("wal")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let mut wal = crate::wal::Wal::open(&dir.path().join("wal")).unwrap();
    for record in &records {
        wal.append(record).unwrap();
    }
    drop(wal);
    let error = verify_dir(dir.path(), &key).unwrap_err().to_string();
    assert!(error.contains("audit entry audit:8 was altered"), "{error}");
}

#[tokio::test]
async fn segments_written_before_versions_read_and_verify() {
    use datafusion::arrow::record_batch::RecordBatch;
    let dir = tempfile::tempdir().unwrap();
    // A version 1 entry (its hash is checked by the model's tests), in a segment without
    // the columns version 2 added.
    let mut v1: AuditEntry = serde_json::from_str(
        r#"{"id":"audit:1","timestamp":"2026-11-01T00:00:00Z","action":"retention.delete","outcome":"success","actor":"policy:retention","target":"flows/date=2026-08-01/hour=03","source_ip":null,"message":"deleted","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"8f5e1b4fca8a3f4a3f0dfc0c7f3b7ac8f5d5c7f9f8e0e4b5d4b8b0a0b6a3c2d1"}"#,
    )
    .unwrap();
    assert_eq!(v1.version, 1);
    {
        let store = Store::open(&config(dir.path())).unwrap();
        let full = crate::schema::audit_batch(&[&v1]).unwrap();
        let keep: Vec<usize> = (0..full.num_columns())
            .filter(|index| {
                !matches!(
                    full.schema().field(*index).name().as_str(),
                    "user_roles" | "vpn_audit_details" | "vpn_audit_version"
                )
            })
            .collect();
        let old: RecordBatch = full.project(&keep).unwrap();
        let hour = v1.timestamp.as_microsecond() / segment::HOUR_MICROS * segment::HOUR_MICROS;
        let partition = format!("audit_log/{}", segment::partition_dir(hour).unwrap());
        segment::write(&store.storage, &partition, "old", &old, &[], None, &[]).unwrap();
    }
    let store = Store::open(&config(dir.path())).unwrap();
    let entries = store.audit_entries().unwrap();
    assert_eq!(entries.len(), 1);
    v1.version = 1;
    assert_eq!(entries[0], v1, "read back as version 1, nothing lost");
    let rows = store
        .query_json("select event_id, user_roles, vpn_audit_version from audit_log")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["event_id"], "audit:1");
}
