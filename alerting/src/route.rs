//! Which alert rows page whom: `[[alerting.receivers]]`, each a channel (e-mail, webhook or
//! Alertmanager) with a minimum severity, and the [`Notification`] a row becomes.
//!
//! ```toml
//! [[alerting.receivers]]
//! name = "oncall"
//! type = "email"
//! min_severity = "high"
//! smtp_host = "smtp.example.org"
//! from = "tunnelwatch <alerts@example.org>"
//! to = ["oncall@example.org"]
//! ```
//!
//! A row pages when an alert fires and when it resolves (unless `send_resolved = false`);
//! updates, acknowledgements and assignments do not.
//!
//! E-mail and webhook receivers bundle pages: notifications of one group (by default the
//! same rule and status) that come within `group_wait` (default 1s) of the first go as one
//! digest, and a group paged less than `group_interval` ago (default 1m) waits that long
//! for its next digest, so that every user failing at once is one page, not a storm.
//! `group_by` takes `rule`, `severity`, `user` and label names (`source.ip`, …). An
//! Alertmanager receiver does not bundle: Alertmanager groups by itself.

use std::sync::Arc;

use model::alert::action;
use model::{AlertRecord, AlertStatus, Severity};
use serde::Deserialize;

use crate::notify::alertmanager::AlertmanagerConfig;
use crate::notify::email::EmailConfig;
use crate::notify::webhook::WebhookConfig;
use crate::notify::{Notification, Notifier};
use crate::{Error, Result};

/// One receiver as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReceiverConfig {
    /// 1 to 64 of `a-z 0-9 - _`: the outbox's cursor and the metrics' label.
    pub name: String,
    /// Alerts below this severity do not page here.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Page when an alert resolves, too.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Pages only the escalations that name it (`[[alerting.escalations]] to`), not every
    /// alert: a duty manager's receiver.
    #[serde(default)]
    pub escalation_only: bool,
    /// When this receiver is not paged: its pages wait until the mute time ends
    /// ([`crate::notify::mute`]).
    #[serde(default)]
    pub mute_times: Vec<crate::notify::mute::MuteTimeConfig>,
    /// Only alerts that match every one of these (`rule`, `severity`, `user`, `source_ip`
    /// or a label, each a value or a list of values): a team's receiver for its rules.
    #[serde(default)]
    pub matchers: std::collections::BTreeMap<String, crate::inhibit::OneOrMany>,
    /// Page a firing alert nobody acknowledged again every this long (unset: once).
    #[serde(default)]
    pub repeat_interval: Option<String>,
    /// What makes a group of pages (besides their status).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// How long a group's first page waits for others (`0s`: not at all).
    #[serde(default = "default_group_wait")]
    pub group_wait: String,
    /// How long after a group's page its next may go.
    #[serde(default = "default_group_interval")]
    pub group_interval: String,
    #[serde(flatten)]
    pub channel: ChannelConfig,
}

fn default_group_by() -> Vec<String> {
    vec!["rule".to_owned()]
}

fn default_group_wait() -> String {
    "1s".to_owned()
}

fn default_group_interval() -> String {
    "1m".to_owned()
}

/// A duration of [`crate::rule::parse_duration`], or `0s`.
fn duration_or_zero(text: &str) -> std::result::Result<std::time::Duration, String> {
    if matches!(text.trim(), "0" | "0s" | "0ms") {
        return Ok(std::time::Duration::ZERO);
    }
    crate::rule::parse_duration(text)
}

fn default_min_severity() -> Severity {
    Severity::Medium
}

fn default_true() -> bool {
    true
}

/// The channel of a receiver (`type = "email"`, `"webhook"` or `"alertmanager"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChannelConfig {
    Email(EmailConfig),
    Webhook(WebhookConfig),
    Alertmanager(AlertmanagerConfig),
}

impl ReceiverConfig {
    /// Checks the name and the channel's settings (files are read by [`ReceiverConfig::build`]).
    pub fn validate(&self) -> Result<()> {
        let valid = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
        if !valid {
            return Err(Error::Notifier(format!(
                "receiver name {:?} must be 1 to 64 of a-z, 0-9, `-`, `_`",
                self.name
            )));
        }
        self.delivery()?;
        match &self.channel {
            ChannelConfig::Email(email) => email.validate(),
            ChannelConfig::Webhook(webhook) => webhook.validate().map(|_| ()),
            ChannelConfig::Alertmanager(alertmanager) => alertmanager.validate().map(|_| ()),
        }
        .map_err(|error| Error::Notifier(format!("receiver {}: {error}", self.name)))
    }

    /// The channel, ready to send (reads its password, key and CA files).
    pub fn build(&self) -> Result<Arc<dyn Notifier>> {
        let built: Arc<dyn Notifier> = match &self.channel {
            ChannelConfig::Email(email) => Arc::new(email.build()?),
            ChannelConfig::Webhook(webhook) => Arc::new(webhook.build(&self.name)?),
            ChannelConfig::Alertmanager(alertmanager) => Arc::new(alertmanager.build(&self.name)?),
        };
        Ok(built)
    }

    /// How this receiver's loop delivers: its grouping and mute times.
    pub fn delivery(&self) -> Result<crate::notify::outbox::Delivery> {
        let mute = self
            .mute_times
            .iter()
            .enumerate()
            .map(|(index, time)| {
                time.check().map_err(|why| {
                    Error::Notifier(format!(
                        "receiver {}: mute_times[{index}]: {why}",
                        self.name
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if mute.len() > 50 {
            return Err(Error::Notifier(format!(
                "receiver {}: at most 50 mute_times",
                self.name
            )));
        }
        self.repeat_every()?;
        crate::inhibit::check_matchers(&self.matchers)
            .map_err(|why| Error::Notifier(format!("receiver {}: matchers: {why}", self.name)))?;
        Ok(crate::notify::outbox::Delivery {
            grouping: self.grouping()?,
            mute,
        })
    }

    /// `repeat_interval` (at least 10 s), if set.
    pub fn repeat_every(&self) -> Result<Option<std::time::Duration>> {
        let Some(text) = &self.repeat_interval else {
            return Ok(None);
        };
        let every = crate::rule::parse_duration(text).map_err(|why| {
            Error::Notifier(format!("receiver {}: repeat_interval: {why}", self.name))
        })?;
        if every < std::time::Duration::from_secs(10) {
            return Err(Error::Notifier(format!(
                "receiver {}: repeat_interval must be at least 10s",
                self.name
            )));
        }
        Ok(Some(every))
    }

    /// Whether a repeat of `row`'s page goes to this receiver (as its first page did).
    pub fn repeats(&self, row: &AlertRecord) -> bool {
        self.repeat_interval.is_some() && !self.escalation_only && self.wants(row)
    }

    /// How this receiver bundles its pages (`None`: each on its own, as for Alertmanager).
    pub fn grouping(&self) -> Result<Option<crate::notify::outbox::Grouping>> {
        let invalid = |why: String| Error::Notifier(format!("receiver {}: {why}", self.name));
        let wait = duration_or_zero(&self.group_wait)
            .map_err(|why| invalid(format!("group_wait: {why}")))?;
        let interval = duration_or_zero(&self.group_interval)
            .map_err(|why| invalid(format!("group_interval: {why}")))?;
        if self.group_by.len() > 10 {
            return Err(invalid("group_by names at most 10 fields".to_owned()));
        }
        for name in &self.group_by {
            let known = matches!(name.as_str(), "rule" | "severity" | "user")
                || model::fields::resolve(name).is_ok();
            if !known {
                return Err(invalid(format!(
                    "group_by: `{}` is not rule, severity, user or a field name",
                    name.escape_debug()
                )));
            }
        }
        Ok(match self.channel {
            ChannelConfig::Alertmanager(_) => None,
            _ => Some(crate::notify::outbox::Grouping {
                by: self.group_by.clone(),
                wait,
                interval,
            }),
        })
    }

    fn wants(&self, row: &AlertRecord) -> bool {
        row.severity >= self.min_severity
            && (row.status != AlertStatus::Resolved || self.send_resolved)
            && crate::inhibit::matches(&self.matchers, row)
    }
}

/// One escalation step: a firing alert nobody acknowledged within `after` of firing pages
/// `to` (receiver names; each still applies its `min_severity`).
///
/// ```toml
/// [[alerting.escalations]]
/// after = "15m"
/// to = ["duty-manager"]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    pub after: String,
    pub to: Vec<String>,
}

/// Most escalation steps.
pub const MAX_ESCALATIONS: usize = 10;

/// Checks the escalation steps (receivers known, `after` growing) and returns their waits.
pub fn check_escalations(
    steps: &[EscalationConfig],
    receivers: &[ReceiverConfig],
) -> Result<Vec<std::time::Duration>> {
    if steps.len() > MAX_ESCALATIONS {
        return Err(Error::Config(format!(
            "{} escalation steps are more than the {MAX_ESCALATIONS} allowed",
            steps.len()
        )));
    }
    let mut waits: Vec<std::time::Duration> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        let invalid =
            |why: String| Error::Config(format!("[[alerting.escalations]] {}: {why}", index + 1));
        let after = crate::rule::parse_duration(&step.after)
            .map_err(|why| invalid(format!("after: {why}")))?;
        if waits.last().is_some_and(|last| *last >= after) {
            return Err(invalid(
                "each step's after must be longer than the one before".to_owned(),
            ));
        }
        if step.to.is_empty() {
            return Err(invalid("to names no receiver".to_owned()));
        }
        for name in &step.to {
            if !receivers.iter().any(|receiver| receiver.name == *name) {
                return Err(invalid(format!("to: no receiver is named {name:?}")));
            }
        }
        waits.push(after);
    }
    Ok(waits)
}

/// The page an `escalated` row causes: to its step's receivers that want it.
pub fn route_escalation<'a>(
    row: &AlertRecord,
    steps: &[EscalationConfig],
    receivers: &'a [ReceiverConfig],
    console_url: Option<&str>,
) -> Option<(Notification, Vec<&'a str>)> {
    let step = steps.get(crate::engine::escalation_step(row)?)?;
    let to: Vec<&str> = receivers
        .iter()
        .filter(|receiver| step.to.contains(&receiver.name) && receiver.wants(row))
        .map(|receiver| receiver.name.as_str())
        .collect();
    if to.is_empty() {
        return None;
    }
    let mut page = notification(row, console_url);
    page.summary = format!(
        "not acknowledged after {}: {}",
        step.after.trim(),
        page.summary
    );
    Some((page, to))
}

/// Checks a receiver list: each valid, names unique.
pub fn check_receivers(receivers: &[ReceiverConfig]) -> Result<()> {
    let mut names = std::collections::BTreeSet::new();
    for receiver in receivers {
        receiver.validate()?;
        if !names.insert(receiver.name.as_str()) {
            return Err(Error::Notifier(format!(
                "two receivers are named {:?}",
                receiver.name
            )));
        }
    }
    Ok(())
}

/// The page a row causes, and the receivers it goes to (none: no page).
pub fn route<'a>(
    row: &AlertRecord,
    receivers: &'a [ReceiverConfig],
    console_url: Option<&str>,
) -> Option<(Notification, Vec<&'a str>)> {
    let pages = row.action == action::FIRED
        || row.action == action::RESOLVED
        || row.action == action::AUTO_RESOLVED;
    if !pages {
        return None;
    }
    let to: Vec<&str> = receivers
        .iter()
        .filter(|receiver| !receiver.escalation_only && receiver.wants(row))
        .map(|receiver| receiver.name.as_str())
        .collect();
    if to.is_empty() {
        return None;
    }
    Some((notification(row, console_url), to))
}

/// What a row says to people.
pub fn notification(row: &AlertRecord, console_url: Option<&str>) -> Notification {
    let base = console_url.map(|url| url.trim_end_matches('/').to_owned());
    Notification {
        id: row.id.clone(),
        alert_id: row.alert_id.clone(),
        rule_id: row.rule_id.clone(),
        rule_name: row.rule_name.clone(),
        severity: row.severity.as_str().to_owned(),
        status: if row.status == AlertStatus::Resolved {
            "resolved".to_owned()
        } else {
            "firing".to_owned()
        },
        summary: row.message.clone(),
        description: row.reason.clone().unwrap_or_default(),
        labels: row.labels.clone(),
        user: row.user.clone(),
        source_ips: row.source_ip.iter().map(ToString::to_string).collect(),
        countries: Vec::new(),
        count: row.count,
        first_event: row.first,
        last_event: row.last,
        console_url: base
            .as_ref()
            .map(|base| format!("{base}/#/alerts/{}", row.alert_id)),
        // A page that shows the plan and asks; never an action on GET.
        revoke_url: base.as_ref().and_then(|base| {
            row.user
                .as_ref()
                .map(|_| format!("{base}/#/alerts/{}/revoke", row.alert_id))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receivers(text: &str) -> Vec<ReceiverConfig> {
        #[derive(Deserialize)]
        struct Wrapper {
            receivers: Vec<ReceiverConfig>,
        }
        toml::from_str::<Wrapper>(text).unwrap().receivers
    }

    const TWO: &str = r#"
[[receivers]]
name = "mail"
type = "email"
min_severity = "high"
smtp_host = "127.0.0.1"
tls = "none"
from = "tw@example.org"
to = ["oncall@example.org"]

[[receivers]]
name = "hook"
type = "webhook"
url = "https://hooks.example.org/x"
send_resolved = false
"#;

    #[test]
    fn receivers_parse_and_route_by_severity_and_resolution() {
        let receivers = receivers(TWO);
        check_receivers(&receivers).unwrap();
        let mut row = crate::engine::tests::fired_row();
        row.severity = Severity::Critical;
        let (page, to) = route(&row, &receivers, Some("https://tw.example.org/")).unwrap();
        assert_eq!(to, ["mail", "hook"]);
        assert_eq!(page.id, row.id);
        assert_eq!(page.status, "firing");
        assert_eq!(
            page.console_url.as_deref(),
            Some(format!("https://tw.example.org/#/alerts/{}", row.alert_id).as_str())
        );
        row.severity = Severity::Medium;
        assert_eq!(route(&row, &receivers, None).unwrap().1, ["hook"]);
        row.severity = Severity::Low;
        assert!(route(&row, &receivers, None).is_none());
        row.severity = Severity::High;
        row.status = AlertStatus::Resolved;
        row.action = action::AUTO_RESOLVED.to_owned();
        assert_eq!(route(&row, &receivers, None).unwrap().1, ["mail"]);
        row.action = action::ACKNOWLEDGED.to_owned();
        row.status = AlertStatus::Acknowledged;
        assert!(route(&row, &receivers, None).is_none());
    }

    #[test]
    fn matchers_route_alerts_to_the_team_that_owns_them() {
        let text = TWO.replace(
            "send_resolved = false",
            "matchers = { rule = [\"impossible-travel\", \"new-country\"], \"user.name\" = \"alice\" }",
        );
        let list = receivers(&text);
        check_receivers(&list).unwrap();
        let mut row = crate::engine::tests::fired_row();
        row.severity = Severity::Critical;
        row.rule_id = "impossible-travel".to_owned();
        row.labels = [("user.name".to_owned(), "alice".to_owned())].into();
        assert_eq!(route(&row, &list, None).unwrap().1, ["mail", "hook"]);
        row.rule_id = "auth-failure-spike-user".to_owned();
        assert_eq!(route(&row, &list, None).unwrap().1, ["mail"]);
        row.rule_id = "new-country".to_owned();
        row.labels = [("user.name".to_owned(), "bob".to_owned())].into();
        assert_eq!(route(&row, &list, None).unwrap().1, ["mail"]);
        let bad =
            receivers(&TWO.replace("send_resolved = false", "matchers = { colour = \"red\" }"));
        let error = check_receivers(&bad).unwrap_err().to_string();
        assert!(
            error.contains("receiver hook: matchers: `colour`"),
            "{error}"
        );
    }

    #[test]
    fn escalations_go_to_their_step_and_bad_steps_are_named() {
        let receivers = receivers(TWO);
        let steps: Vec<EscalationConfig> = vec![
            EscalationConfig {
                after: "15m".to_owned(),
                to: vec!["hook".to_owned()],
            },
            EscalationConfig {
                after: "1h".to_owned(),
                to: vec!["mail".to_owned(), "hook".to_owned()],
            },
        ];
        let waits = check_escalations(&steps, &receivers).unwrap();
        assert_eq!(
            waits,
            [
                std::time::Duration::from_secs(900),
                std::time::Duration::from_secs(3600)
            ]
        );
        let mut row = crate::engine::tests::fired_row();
        row.severity = Severity::Critical;
        row.action = action::ESCALATED.to_owned();
        row.reason = Some(crate::engine::escalation_reason(1, waits[1]));
        let (page, to) = route_escalation(&row, &steps, &receivers, None).unwrap();
        assert_eq!(to, ["mail", "hook"]);
        assert!(
            page.summary.starts_with("not acknowledged after 1h: "),
            "{}",
            page.summary
        );
        // An escalation row is not an ordinary page, and a step beyond the list pages nobody.
        assert!(route(&row, &receivers, None).is_none());
        row.reason = Some(crate::engine::escalation_reason(5, waits[1]));
        assert!(route_escalation(&row, &steps, &receivers, None).is_none());
        for (mut bad, expected) in [
            (steps.clone(), "no receiver is named"),
            (steps.clone(), "longer than the one before"),
            (steps.clone(), "after"),
            (steps.clone(), "names no receiver"),
        ] {
            match expected {
                "no receiver is named" => bad[0].to = vec!["pager".to_owned()],
                "longer than the one before" => bad[1].after = "10m".to_owned(),
                "after" => bad[0].after = "soon".to_owned(),
                _ => bad[1].to.clear(),
            }
            let error = check_escalations(&bad, &receivers).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains("[[alerting.escalations]]"), "{error}");
        }
    }

    #[test]
    fn bad_receivers_are_named() {
        let mut list = receivers(TWO);
        list[1].name = "mail".to_owned();
        assert!(
            check_receivers(&list)
                .unwrap_err()
                .to_string()
                .contains("two receivers")
        );
        let mut list = receivers(TWO);
        list[0].name = "Mail Box".to_owned();
        assert!(
            check_receivers(&list)
                .unwrap_err()
                .to_string()
                .contains("a-z")
        );
        for (text, expected) in [
            (
                TWO.replace("send_resolved = false", "group_wait = \"soon\""),
                "group_wait",
            ),
            (
                TWO.replace("send_resolved = false", "group_interval = \"-1s\""),
                "group_interval",
            ),
            (
                TWO.replace("send_resolved = false", "group_by = [\"no.such.field\"]"),
                "group_by",
            ),
            (
                TWO.replace(
                    "send_resolved = false",
                    "mute_times = [{ weekdays = [\"funday\"] }]",
                ),
                "mute_times[0]: `funday` is not a weekday",
            ),
        ] {
            let error = check_receivers(&receivers(&text)).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains("receiver hook"), "{error}");
        }
        // Defaults: by rule, 1 s, 1 min; "0s" sends at once; Alertmanager does not bundle.
        let grouping = receivers(TWO)[0].grouping().unwrap().unwrap();
        assert_eq!(grouping.by, ["rule"]);
        assert_eq!(grouping.wait, std::time::Duration::from_secs(1));
        assert_eq!(grouping.interval, std::time::Duration::from_secs(60));
        let now = receivers(&TWO.replace("send_resolved = false", "group_wait = \"0s\""));
        assert!(now[1].grouping().unwrap().unwrap().wait.is_zero());
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Wrapper {
            receivers: Vec<ReceiverConfig>,
        }
        for (text, expected) in [
            (TWO.replace("smtp_host", "smtp_hots"), "smtp_hots"),
            (
                TWO.replace("type = \"webhook\"", "type = \"pager\""),
                "pager",
            ),
        ] {
            let error = toml::from_str::<Wrapper>(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
