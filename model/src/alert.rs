//! Alerts: what a rule found, and every change of its state afterwards.
//!
//! An alert is identified by [`AlertRecord::alert_id`]; each change of its state (it fired,
//! more events came, someone acknowledged, assigned or resolved it, its condition cleared) is
//! one [`AlertRecord`], one row of the `alerts` table. The newest row of an alert is its
//! state; the rows before it are its history (who, when, why).

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How bad an alert is. The number is what `event.severity` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// `event.severity`: 1 (info) to 5 (critical).
    pub fn number(self) -> i64 {
        match self {
            Severity::Info => 1,
            Severity::Low => 2,
            Severity::Medium => 3,
            Severity::High => 4,
            Severity::Critical => 5,
        }
    }

    pub fn from_number(number: i64) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.number() == number)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(text: &str) -> Result<Severity, String> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown severity `{}`: one of info, low, medium, high, critical",
                    text.escape_debug()
                )
            })
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Its condition holds and nobody has taken it yet.
    Firing,
    /// Someone is on it; it still counts and can still resolve.
    Acknowledged,
    /// Over: resolved by a person, or its condition cleared.
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<AlertStatus> {
        [
            AlertStatus::Firing,
            AlertStatus::Acknowledged,
            AlertStatus::Resolved,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The change a row records (`event.action`).
pub mod action {
    /// The rule fired: a new alert.
    pub const FIRED: &str = "fired";
    /// More events of a firing alert (its count, last event and evidence grew).
    pub const UPDATED: &str = "updated";
    pub const ACKNOWLEDGED: &str = "acknowledged";
    pub const ASSIGNED: &str = "assigned";
    /// Resolved by a person.
    pub const RESOLVED: &str = "resolved";
    /// Its condition cleared (nothing new for the rule's window).
    pub const AUTO_RESOLVED: &str = "auto_resolved";
    /// Still firing, nobody acknowledged it in time: the next escalation step is paged.
    pub const ESCALATED: &str = "escalated";
}

/// Evidence kept per alert at most: the first events and the newest ones.
pub const MAX_EVIDENCE: usize = 50;

/// One change of one alert's state: a row of `alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// `event.id`: `<alert_id>:<revision>`, unique per row.
    pub id: String,
    /// `@timestamp`: when the change happened.
    pub timestamp: Timestamp,
    /// `vpn.alert_id`: the alert, the same in all its rows.
    pub alert_id: String,
    /// `vpn.alert_revision`: 1 for the row that fired it, then one more per change.
    pub revision: u64,
    /// `vpn.alert_fingerprint`: rule and group values; one open alert per fingerprint.
    pub fingerprint: String,
    pub rule_id: String,
    pub rule_name: String,
    pub severity: Severity,
    /// `event.action`: the change ([`action`]).
    pub action: String,
    /// `vpn.alert_status`: where the alert stands after it.
    pub status: AlertStatus,
    /// `event.reason`: why a person changed it (their comment), or why it fired.
    pub reason: Option<String>,
    /// `message`: one line for people.
    pub message: String,
    /// `user.name`: the VPN user it is about, when the rule groups by user.
    pub user: Option<String>,
    /// `source.ip`: the client address it is about, when there is one.
    pub source_ip: Option<IpAddr>,
    /// `session_id` of the newest evidence event that had one.
    pub session_id: Option<String>,
    /// `event.start` / `event.end`: the first and last event behind it.
    pub first: Timestamp,
    pub last: Timestamp,
    /// `vpn.alert_count`: events behind it.
    pub count: u64,
    /// `vpn.alert_labels`: the group values (JSON object in the column).
    pub labels: BTreeMap<String, String>,
    /// `vpn.alert_evidence`: ids of events behind it, at most [`MAX_EVIDENCE`] (JSON array).
    pub evidence: Vec<String>,
    /// `threat.technique.id`: MITRE ATT&CK techniques of the rule.
    pub mitre: Vec<String>,
    /// `vpn.alert_actor`: who made the change (`tunnelwatch` for the engine).
    pub actor: String,
    /// `vpn.alert_assignee`: who it is assigned to.
    pub assignee: Option<String>,
}

/// The actor of the changes the engine makes.
pub const ENGINE_ACTOR: &str = "tunnelwatch";
