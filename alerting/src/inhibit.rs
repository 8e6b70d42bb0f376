//! Inhibition: while an alert that covers others is open, their pages are muted (they still
//! fire, count and are stored), so that a fleet-wide failure spike is one page, not one per
//! user as well. As Alertmanager's inhibit rules: a `source` alert (open: firing or
//! acknowledged) mutes the pages of `target` alerts whose `equal` labels have the same values.
//!
//! ```toml
//! [[alerting.inhibit]]
//! source = { rule = "auth-failure-spike-fleet" }
//! target = { rule = ["auth-failure-spike-user", "auth-failure-spike-source"] }
//! equal = []
//! ```
//!
//! Matcher names are those of silences: `rule`, `severity`, `user`, `source_ip`, or a label
//! of the alert's group (`user.name`, `observer.hostname`, …); a value or a list of values
//! (any of them). Pure.

use std::collections::BTreeMap;

use model::AlertRecord;
use serde::Deserialize;

use crate::silence::Matcher;
use crate::{Error, Result};

/// Most inhibit rules.
pub const MAX_INHIBIT_RULES: usize = 100;

/// One inhibit rule as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    pub source: BTreeMap<String, OneOrMany>,
    pub target: BTreeMap<String, OneOrMany>,
    /// Labels the source and the target must both have, with the same value.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// A value, or a list of them (any matches).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(&self) -> &[String] {
        match self {
            OneOrMany::One(value) => std::slice::from_ref(value),
            OneOrMany::Many(values) => values,
        }
    }
}

/// The inhibit rules shipped with the default rules: a fleet-wide failure spike covers the
/// per-user, per-address and per-gateway spikes and password spraying.
pub fn shipped() -> Vec<InhibitConfig> {
    let targets = [
        "auth-failure-spike-user",
        "auth-failure-spike-source",
        "auth-failure-spike-gateway",
        "password-spraying",
    ];
    vec![InhibitConfig {
        source: BTreeMap::from([(
            "rule".to_owned(),
            OneOrMany::One("auth-failure-spike-fleet".to_owned()),
        )]),
        target: BTreeMap::from([(
            "rule".to_owned(),
            OneOrMany::Many(targets.iter().map(|id| (*id).to_owned()).collect()),
        )]),
        equal: Vec::new(),
    }]
}

/// Checks a set of matchers (names known, lists non-empty, values bounded).
pub(crate) fn check_matchers(
    matchers: &BTreeMap<String, OneOrMany>,
) -> std::result::Result<(), String> {
    for (name, values) in matchers {
        let known = matches!(name.as_str(), "rule" | "severity" | "user" | "source_ip")
            || model::fields::resolve(name).is_ok();
        if !known {
            return Err(format!(
                "`{}` is not rule, severity, user, source_ip or a field name",
                name.escape_debug()
            ));
        }
        let values = values.values();
        if values.is_empty() {
            return Err(format!("{name}: an empty list matches nothing"));
        }
        if values.len() > 1000 || values.iter().any(|value| value.len() > 256) {
            return Err(format!("{name}: at most 1000 values of 256 bytes"));
        }
    }
    Ok(())
}

/// Checks inhibit rules: matcher names known, values and lists non-empty and bounded.
pub fn check(rules: &[InhibitConfig]) -> Result<()> {
    if rules.len() > MAX_INHIBIT_RULES {
        return Err(Error::Config(format!(
            "{} inhibit rules are more than the {MAX_INHIBIT_RULES} allowed",
            rules.len()
        )));
    }
    for (index, rule) in rules.iter().enumerate() {
        let invalid =
            |why: String| Error::Config(format!("[[alerting.inhibit]] {}: {why}", index + 1));
        if rule.source.is_empty() || rule.target.is_empty() {
            return Err(invalid("source and target each need a matcher".to_owned()));
        }
        check_matchers(&rule.source).map_err(|why| invalid(format!("source: {why}")))?;
        check_matchers(&rule.target).map_err(|why| invalid(format!("target: {why}")))?;
        let equal: BTreeMap<String, OneOrMany> = rule
            .equal
            .iter()
            .map(|name| (name.clone(), OneOrMany::One(String::new())))
            .collect();
        check_matchers(&equal).map_err(|why| invalid(format!("equal: {why}")))?;
    }
    Ok(())
}

/// Whether every matcher holds for `row` (a list: any of its values).
pub(crate) fn matches(matchers: &BTreeMap<String, OneOrMany>, row: &AlertRecord) -> bool {
    matchers.iter().all(|(name, values)| {
        values.values().iter().any(|value| {
            Matcher {
                name: name.clone(),
                value: value.clone(),
            }
            .holds(row)
        })
    })
}

/// The open alert (its id) that mutes `row`'s page, if one does. An alert never mutes itself.
pub fn inhibited_by<'a>(
    rules: &[InhibitConfig],
    row: &AlertRecord,
    open: impl Iterator<Item = &'a AlertRecord> + Clone,
) -> Option<String> {
    rules
        .iter()
        .filter(|rule| matches(&rule.target, row))
        .find_map(|rule| {
            open.clone()
                .filter(|source| source.alert_id != row.alert_id)
                .find(|source| {
                    matches(&rule.source, source)
                        && rule.equal.iter().all(|label| {
                            match (source.labels.get(label), row.labels.get(label)) {
                                (Some(a), Some(b)) => a == b,
                                _ => false,
                            }
                        })
                })
                .map(|source| source.alert_id.clone())
        })
}

#[cfg(test)]
mod tests;
