//! Notifications: what one alert's page says ([`Notification`]), the channels that carry it
//! (e-mail, webhooks) and the durable outbox that delivers each once.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One page about one alert: written to the outbox before it is sent, and sent to every
/// receiver it was routed to. `id` is the idempotency key: the same for every retry and
/// every receiver (the webhook header, the mail's Message-ID).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key: unique per alert transition (`<alert id>:<transition number>`).
    pub id: String,
    /// The alert (stable across its state changes).
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    /// `info`, `low`, `medium`, `high` or `critical`.
    pub severity: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// One line for people, e.g. "12 failed logins for alice in 1m".
    pub summary: String,
    pub description: String,
    /// The rule's group values (`user.name = alice`, …).
    pub labels: BTreeMap<String, String>,
    pub user: Option<String>,
    pub source_ips: Vec<String>,
    pub countries: Vec<String>,
    /// Events behind the alert.
    pub count: u64,
    pub first_event: Timestamp,
    pub last_event: Timestamp,
    /// The alert in the console.
    pub console_url: Option<String>,
    /// The confirmation page of a revoke (a page that asks, never an action on GET).
    pub revoke_url: Option<String>,
}
