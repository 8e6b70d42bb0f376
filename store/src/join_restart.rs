//! What the collector's join needs again after a restart ([`model::JoinRestart`]), read back
//! with SQL: the leases of sessions that ended within the lease retention, and the flows and
//! API requests still unmatched (after every correction) within the late-join window. Both
//! windows are counted back from the newest row of the table, in event time, so that a
//! forensic import of old logs resumes as well as a live server.

use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use model::{JoinRestart, JoinTarget, StoredLease, StoredUnmatched};
use serde_json::{Map, Value};

use crate::Store;
use crate::error::{Error, Result};

impl Store {
    /// See the module documentation. Rows the store cannot read back (an address or time that
    /// does not parse) are left out and counted in the log.
    pub async fn join_restart(
        &self,
        lease_retention: Duration,
        late_join: Duration,
    ) -> Result<JoinRestart> {
        let mut restart = JoinRestart::default();
        let mut unreadable = 0usize;
        if let Some(newest) = self.newest("sessions").await? {
            let cutoff = before(newest, lease_retention);
            let rows = self
                .query_json(&format!(
                    "SELECT session_id, user_name, vpn_virtual_ip, \
                     CAST(event_start AS BIGINT) AS start_us, CAST(event_end AS BIGINT) AS end_us \
                     FROM sessions WHERE vpn_virtual_ip IS NOT NULL \
                     AND (event_end IS NULL OR CAST(event_end AS BIGINT) >= {cutoff})",
                    cutoff = cutoff.as_microsecond()
                ))
                .await?;
            for row in &rows {
                match lease(row) {
                    Some(lease) => restart.leases.push(lease),
                    None => unreadable += 1,
                }
            }
        }
        for (target, at, addresses) in [
            (
                JoinTarget::Flows,
                "event_start",
                "source_ip, destination_ip",
            ),
            (JoinTarget::ApiRequests, "timestamp", "source_ip, NULL"),
        ] {
            let table = target.as_str();
            let Some(newest) = self.newest(table).await? else {
                continue;
            };
            // `timestamp` bounds the hour partitions read; a flow's time is its start.
            let cutoff = before(newest, late_join);
            let rows = self
                .query_json(&format!(
                    "SELECT event_id, CAST(timestamp AS BIGINT) AS timestamp_us, \
                     CAST({at} AS BIGINT) AS at_us, {addresses} \
                     FROM {table} WHERE vpn_session_join = 'unmatched' AND timestamp >= '{cutoff}'"
                ))
                .await?;
            for row in &rows {
                match unmatched(target, row) {
                    Some(stored) => restart.unmatched.push(stored),
                    None => unreadable += 1,
                }
            }
        }
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "rows the join cannot take back after the restart"
            );
        }
        Ok(restart)
    }

    /// The newest `timestamp` of a table, if it has rows.
    async fn newest(&self, table: &str) -> Result<Option<Timestamp>> {
        let rows = self
            .query_json(&format!(
                "SELECT CAST(max(timestamp) AS BIGINT) AS newest_us FROM {table}"
            ))
            .await?;
        match rows.first().and_then(|row| row.get("newest_us")) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_i64()
                .and_then(|us| Timestamp::from_microsecond(us).ok())
                .map(Some)
                .ok_or_else(|| Error::Internal(format!("newest {table} time is {value}"))),
        }
    }
}

fn before(newest: Timestamp, window: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(window)
        .ok()
        .and_then(|window| newest.checked_sub(window).ok())
        .unwrap_or(Timestamp::MIN)
}

fn lease(row: &Map<String, Value>) -> Option<StoredLease> {
    Some(StoredLease {
        session_id: text(row, "session_id")?,
        user_name: text(row, "user_name"),
        virtual_ip: address(row, "vpn_virtual_ip")?,
        start: time(row, "start_us")?,
        end: match row.get("end_us") {
            None | Some(Value::Null) => None,
            Some(_) => Some(time(row, "end_us")?),
        },
    })
}

fn unmatched(target: JoinTarget, row: &Map<String, Value>) -> Option<StoredUnmatched> {
    Some(StoredUnmatched {
        target,
        event_id: text(row, "event_id")?,
        timestamp: time(row, "timestamp_us")?,
        at: time(row, "at_us")?,
        addresses: [address(row, "source_ip"), address(row, "destination_ip")],
    })
}

fn text(row: &Map<String, Value>, column: &str) -> Option<String> {
    row.get(column)?.as_str().map(str::to_owned)
}

fn address(row: &Map<String, Value>, column: &str) -> Option<IpAddr> {
    row.get(column)?.as_str()?.parse().ok()
}

fn time(row: &Map<String, Value>, column: &str) -> Option<Timestamp> {
    Timestamp::from_microsecond(row.get(column)?.as_i64()?).ok()
}
