//! The `alerts` table: one row per change of an alert's state ([`model::AlertRecord`]).
//!
//! Rows go through the WAL like every other row ([`Store::append_alerts`]: durable when it
//! returns) and are read back whole ([`Store::alert_records`]) for the alert API and for the
//! alerting engine's restart. A row that a crash during a flush left both in Parquet and in
//! the WAL is read once (rows are told apart by `event.id`, `<alert>:<revision>`).

use std::collections::BTreeMap;

use datafusion::arrow::array::{
    Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use model::fields::{Getter, Value};
use model::{AlertRecord, AlertStatus, Severity};

use crate::schema::{Row, Table};
use crate::wal::WalRecord;
use crate::{Error, Result, Store, segment};

impl Row for AlertRecord {
    fn getter(field: &model::fields::Field) -> Option<Getter<Self>> {
        let get: Getter<Self> = match field.name {
            "@timestamp" => |row| Some(row.timestamp.into()),
            "event.id" => |row| Some(row.id.as_str().into()),
            "rule.id" => |row| Some(row.rule_id.as_str().into()),
            "rule.name" => |row| Some(row.rule_name.as_str().into()),
            "event.severity" => |row| Some(Value::Int(row.severity.number())),
            "event.action" => |row| Some(row.action.as_str().into()),
            "event.reason" => |row| row.reason.as_deref().map(Value::from),
            "message" => |row| Some(row.message.as_str().into()),
            "user.name" => |row| row.user.as_deref().map(Value::from),
            "source.ip" => |row| row.source_ip.map(Value::from),
            "session_id" => |row| row.session_id.as_deref().map(Value::from),
            "event.start" => |row| Some(row.first.into()),
            "event.end" => |row| Some(row.last.into()),
            "vpn.alert_id" => |row| Some(row.alert_id.as_str().into()),
            "vpn.alert_revision" => |row| Some(Value::Int(saturate(row.revision))),
            "vpn.alert_fingerprint" => |row| Some(row.fingerprint.as_str().into()),
            "vpn.alert_status" => |row| Some(row.status.as_str().into()),
            "vpn.alert_count" => |row| Some(Value::Int(saturate(row.count))),
            "vpn.alert_labels" => {
                |row| Some(Value::Str(serde_json::to_string(&row.labels).ok()?.into()))
            }
            "vpn.alert_evidence" => |row| {
                Some(Value::Str(
                    serde_json::to_string(&row.evidence).ok()?.into(),
                ))
            },
            "threat.technique.id" => {
                |row| (!row.mitre.is_empty()).then(|| Value::Str(row.mitre.join(",").into()))
            }
            "vpn.alert_actor" => |row| Some(row.actor.as_str().into()),
            "vpn.alert_assignee" => |row| row.assignee.as_deref().map(Value::from),
            _ => return None,
        };
        Some(get)
    }
}

fn saturate(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The rows of `alerts`.
pub(crate) fn alerts_batch(rows: &[&AlertRecord]) -> Result<RecordBatch> {
    crate::schema::to_batch(Table::Alerts, rows)
}

/// Alert rows back from a batch of `alerts`. Rows written before the alerting engine
/// existed have none of its columns: there are none (nothing wrote the table before).
pub(crate) fn alert_records(batch: &RecordBatch) -> Result<Vec<AlertRecord>> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| Error::Internal(format!("alerts has no column {name}")))
    };
    let text = |name: &str| -> Result<&StringArray> {
        column(name)?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::Internal(format!("alerts.{name} is not text")))
    };
    let int = |name: &str| -> Result<&Int64Array> {
        column(name)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| Error::Internal(format!("alerts.{name} is not an integer")))
    };
    let time = |name: &str| -> Result<&TimestampMicrosecondArray> {
        column(name)?
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .ok_or_else(|| Error::Internal(format!("alerts.{name} is not a time")))
    };
    let get = |column: &StringArray, row: usize| -> Option<String> {
        (!column.is_null(row)).then(|| column.value(row).to_owned())
    };
    let at = |column: &TimestampMicrosecondArray, row: usize| {
        jiff::Timestamp::from_microsecond(column.value(row))
            .map_err(|error| Error::Internal(format!("alerts timestamp: {error}")))
    };
    let (ids, rule_ids, rule_names, actions, reasons, messages, users, ips, sessions) = (
        text("event_id")?,
        text("rule_id")?,
        text("rule_name")?,
        text("event_action")?,
        text("event_reason")?,
        text("message")?,
        text("user_name")?,
        text("source_ip")?,
        text("session_id")?,
    );
    let (alert_ids, fingerprints, statuses, labels, evidence, mitre, actors, assignees) = (
        text("vpn_alert_id")?,
        text("vpn_alert_fingerprint")?,
        text("vpn_alert_status")?,
        text("vpn_alert_labels")?,
        text("vpn_alert_evidence")?,
        text("threat_technique_id")?,
        text("vpn_alert_actor")?,
        text("vpn_alert_assignee")?,
    );
    let (severities, revisions, counts) = (
        int("event_severity")?,
        int("vpn_alert_revision")?,
        int("vpn_alert_count")?,
    );
    let (times, starts, ends) = (time("timestamp")?, time("event_start")?, time("event_end")?);
    (0..batch.num_rows())
        .map(|row| {
            let status = get(statuses, row).unwrap_or_default();
            Ok(AlertRecord {
                id: get(ids, row).unwrap_or_default(),
                timestamp: at(times, row)?,
                alert_id: get(alert_ids, row).unwrap_or_default(),
                revision: u64::try_from(revisions.value(row)).unwrap_or(0),
                fingerprint: get(fingerprints, row).unwrap_or_default(),
                rule_id: get(rule_ids, row).unwrap_or_default(),
                rule_name: get(rule_names, row).unwrap_or_default(),
                severity: Severity::from_number(severities.value(row)).unwrap_or(Severity::Medium),
                action: get(actions, row).unwrap_or_default(),
                status: AlertStatus::parse(&status).ok_or_else(|| {
                    Error::Internal(format!(
                        "alerts: unknown status `{}`",
                        status.escape_debug()
                    ))
                })?,
                reason: get(reasons, row),
                message: get(messages, row).unwrap_or_default(),
                user: get(users, row),
                source_ip: get(ips, row).and_then(|ip| ip.parse().ok()),
                session_id: get(sessions, row),
                first: at(starts, row)?,
                last: at(ends, row)?,
                count: u64::try_from(counts.value(row)).unwrap_or(0),
                labels: get(labels, row)
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_else(BTreeMap::new),
                evidence: get(evidence, row)
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default(),
                mitre: get(mitre, row)
                    .map(|text| text.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
                actor: get(actors, row).unwrap_or_default(),
                assignee: get(assignees, row),
            })
        })
        .collect()
}

impl Store {
    /// Stores alert state changes durably (one WAL record, one fsync): after this returns
    /// `Ok`, a crash does not lose them.
    pub fn append_alerts(&self, records: Vec<AlertRecord>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut writer = self.writer()?;
        let Some(wal) = writer.as_mut() else {
            return Err(Error::ReadOnly(self.dir.clone()));
        };
        let record = WalRecord {
            alerts: records,
            ..WalRecord::default()
        };
        wal.append(&record)?;
        self.lock()?.buffer.push_alerts(record.alerts);
        Ok(())
    }

    /// Every row of `alerts`, stored and not yet flushed, each once, oldest first (by time,
    /// then alert and revision). Unreadable segments are skipped (the health report names
    /// them).
    pub fn alert_records(&self) -> Result<Vec<AlertRecord>> {
        let segments = self.lock()?.segments.clone();
        let mut rows = Vec::new();
        for found in segments.get(&Table::Alerts).into_iter().flatten() {
            if let Ok(batches) = segment::read_all(&self.storage, &found.key) {
                for batch in batches {
                    rows.extend(alert_records(&batch)?);
                }
            }
        }
        rows.extend(self.lock()?.buffer.all_alerts().cloned());
        rows.sort_by(|a, b| {
            (a.timestamp, &a.alert_id, a.revision).cmp(&(b.timestamp, &b.alert_id, b.revision))
        });
        let mut seen = std::collections::HashSet::new();
        rows.retain(|row| seen.insert(row.id.clone()));
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use model::Outcome;

    use super::*;
    use crate::tests::{auth_event, config};

    pub(crate) fn record(alert: &str, revision: u64, status: AlertStatus) -> AlertRecord {
        let at = jiff::Timestamp::from_second(1_700_000_000 + revision as i64).unwrap();
        AlertRecord {
            id: format!("{alert}:{revision}"),
            timestamp: at,
            alert_id: alert.to_owned(),
            revision,
            fingerprint: format!("fp-{alert}"),
            rule_id: "auth-failure-spike-user".to_owned(),
            rule_name: "Failed logins of one user".to_owned(),
            severity: Severity::High,
            action: "fired".to_owned(),
            status,
            reason: Some("12 ≥ 10".to_owned()),
            message: "12 failed logins for alice\r\n<b>".to_owned(),
            user: Some("alice".to_owned()),
            source_ip: Some("203.0.113.7".parse().unwrap()),
            session_id: None,
            first: at,
            last: at,
            count: 12,
            labels: BTreeMap::from([("user.name".to_owned(), "alice".to_owned())]),
            evidence: vec!["gw/charon@1:1".to_owned(), "gw/charon@1:2".to_owned()],
            mitre: vec!["T1110".to_owned(), "T1110.001".to_owned()],
            actor: model::alert::ENGINE_ACTOR.to_owned(),
            assignee: None,
        }
    }

    #[test]
    fn alert_rows_read_back_whole_before_and_after_a_flush_and_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut later = record("a2", 1, AlertStatus::Resolved);
        later.timestamp += jiff::SignedDuration::from_secs(60);
        let rows = vec![
            record("a1", 1, AlertStatus::Firing),
            record("a1", 2, AlertStatus::Acknowledged),
            later,
        ];
        {
            let store = Store::open(&config(dir.path())).unwrap();
            store.append_alerts(rows[..2].to_vec()).unwrap();
            assert_eq!(store.alert_records().unwrap(), rows[..2]);
            store.flush().unwrap();
            store.append_alerts(rows[2..].to_vec()).unwrap();
            assert_eq!(store.alert_records().unwrap(), rows);
        }
        // After a restart: the flushed rows from Parquet, the other from the WAL.
        let store = Store::open(&config(dir.path())).unwrap();
        assert_eq!(store.alert_records().unwrap(), rows);
        let rt = tokio::runtime::Runtime::new().unwrap();
        let result = rt
            .block_on(store.query(
                "SELECT vpn_alert_id, vpn_alert_status, vpn_alert_labels, threat_technique_id \
                 FROM alerts ORDER BY vpn_alert_id, vpn_alert_revision",
            ))
            .unwrap();
        let text = format!("{result:?}");
        assert!(text.contains("acknowledged"), "{text}");
        assert!(text.contains("T1110,T1110.001"), "{text}");
    }

    #[test]
    fn the_tap_hears_each_accepted_event_once_and_never_a_resend() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&config(dir.path())).unwrap();
        let heard = Arc::new(Mutex::new(Vec::new()));
        let sink = heard.clone();
        assert!(
            store.set_accepted_tap(crate::AcceptedTap(Arc::new(move |events, _| {
                sink.lock()
                    .unwrap()
                    .extend(events.iter().map(|event| event.id.to_string()));
            })))
        );
        assert!(!store.set_accepted_tap(crate::AcceptedTap(Arc::new(|_, _| {}))));
        let batch: Vec<_> = (1..=3)
            .map(|seq| auth_event(seq, "alice", Outcome::Failure))
            .collect();
        store.append(batch.clone(), Vec::new()).unwrap();
        // The gateway resends after a timeout: the store drops it, the tap hears nothing.
        let receipt = store.append(batch.clone(), Vec::new()).unwrap();
        assert_eq!(receipt.duplicates, 3);
        store
            .append(vec![auth_event(4, "alice", Outcome::Failure)], Vec::new())
            .unwrap();
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard.len(), 4, "{heard:?}");
        let unique: std::collections::BTreeSet<_> = heard.iter().collect();
        assert_eq!(unique.len(), 4);
    }
}
