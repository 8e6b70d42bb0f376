//! Silences: for a while, alerts that match stop paging (they still fire, count and are
//! stored). A silence has matchers (every one must hold), an author, a comment, a start and
//! an end; expiring one ends it now. Pure: what matches, and checks of what is asked for.

use jiff::Timestamp;
use model::AlertRecord;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Longest silence.
pub const MAX_DURATION_SECS: i64 = 90 * 24 * 3600;
/// Most silences kept (expired ones beyond are dropped oldest first).
pub const MAX_SILENCES: usize = 1000;

/// One condition: `name` is `rule` (the rule id), `severity`, `user`, `source_ip`, or a
/// label of the alert's group (`user.name`, `source.ip`, `observer.hostname`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub author: String,
    pub comment: String,
    pub starts: Timestamp,
    pub ends: Timestamp,
    pub created: Timestamp,
    /// Who expired it early, if anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_by: Option<String>,
}

/// What an operator asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceRequest {
    pub matchers: Vec<Matcher>,
    pub comment: String,
    /// Default: now.
    #[serde(default)]
    pub starts: Option<Timestamp>,
    pub ends: Timestamp,
}

impl Matcher {
    pub(crate) fn holds(&self, row: &AlertRecord) -> bool {
        match self.name.as_str() {
            "rule" => row.rule_id == self.value,
            "severity" => row.severity.as_str() == self.value,
            "user" => row.user.as_deref() == Some(self.value.as_str()),
            "source_ip" => row.source_ip.is_some_and(|ip| ip.to_string() == self.value),
            label => row.labels.get(label) == Some(&self.value),
        }
    }
}

impl Silence {
    /// Whether it is in force at `now`.
    pub fn active(&self, now: Timestamp) -> bool {
        self.starts <= now && now < self.ends
    }

    /// `active`, `pending` (starts later) or `expired`.
    pub fn state(&self, now: Timestamp) -> &'static str {
        if self.active(now) {
            "active"
        } else if self.starts > now {
            "pending"
        } else {
            "expired"
        }
    }

    /// Its matchers as `name=value, …`.
    pub fn matchers_text(&self) -> String {
        self.matchers
            .iter()
            .map(|matcher| format!("{}={}", matcher.name, matcher.value))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The audit trail's message when `actor` adds it.
    pub fn added_message(&self, actor: &str) -> String {
        format!(
            "{actor} silenced alerts matching {} from {} to {}: {}",
            self.matchers_text(),
            self.starts,
            self.ends,
            self.comment
        )
    }

    /// Whether it mutes `row` at `now`.
    pub fn mutes(&self, row: &AlertRecord, now: Timestamp) -> bool {
        self.active(now) && self.matchers.iter().all(|matcher| matcher.holds(row))
    }
}

impl SilenceRequest {
    /// Checks the request and makes the silence.
    pub fn into_silence(self, id: String, author: &str, now: Timestamp) -> Result<Silence> {
        let invalid = |why: &str| Error::Config(format!("silence: {why}"));
        if self.matchers.is_empty() || self.matchers.len() > 16 {
            return Err(invalid(
                "give 1 to 16 matchers (a silence of everything is not allowed)",
            ));
        }
        for matcher in &self.matchers {
            let name_ok = !matcher.name.is_empty()
                && matcher.name.len() <= 64
                && matcher
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !name_ok {
                return Err(invalid(
                    "a matcher's name is `rule`, `severity`, `user`, `source_ip` or a label such as `user.name`",
                ));
            }
            if matcher.value.is_empty()
                || matcher.value.len() > 1024
                || matcher.value.chars().any(char::is_control)
            {
                return Err(invalid(
                    "a matcher's value is 1 to 1024 characters without control characters",
                ));
            }
        }
        let comment = self.comment.trim();
        if comment.is_empty() || comment.len() > 2048 {
            return Err(invalid(
                "say why in a comment of 1 to 2048 bytes (it is what on-call reads)",
            ));
        }
        let starts = self.starts.unwrap_or(now).max(now);
        if self.ends <= starts {
            return Err(invalid("it must end after it starts (and after now)"));
        }
        if self.ends.as_second() - starts.as_second() > MAX_DURATION_SECS {
            return Err(invalid("a silence lasts at most 90 days"));
        }
        Ok(Silence {
            id,
            matchers: self.matchers,
            author: author.to_owned(),
            comment: comment.to_owned(),
            starts,
            ends: self.ends,
            created: now,
            expired_by: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_795_000_000 + second).unwrap()
    }

    fn request(matchers: &[(&str, &str)], ends: i64) -> SilenceRequest {
        SilenceRequest {
            matchers: matchers
                .iter()
                .map(|(name, value)| Matcher {
                    name: (*name).to_owned(),
                    value: (*value).to_owned(),
                })
                .collect(),
            comment: "maintenance of the RADIUS server".to_owned(),
            starts: None,
            ends: at(ends),
        }
    }

    #[test]
    fn a_silence_mutes_what_matches_while_it_lasts() {
        let row = crate::engine::tests::fired_row();
        let silence = request(
            &[("rule", "auth-failure-spike-user"), ("user.name", "zoe")],
            3600,
        )
        .into_silence("s1".to_owned(), "oncall", at(0))
        .unwrap();
        assert!(silence.mutes(&row, at(10)));
        assert!(!silence.mutes(&row, at(3600)), "ended");
        let other_user = request(&[("user", "someone-else")], 3600)
            .into_silence("s2".to_owned(), "oncall", at(0))
            .unwrap();
        assert!(!other_user.mutes(&row, at(10)));
        let severity = request(&[("severity", "high"), ("source_ip", "192.0.2.20")], 3600)
            .into_silence("s3".to_owned(), "oncall", at(0))
            .unwrap();
        assert!(severity.mutes(&row, at(10)));
    }

    #[test]
    fn bad_silences_are_refused_with_the_reason() {
        for (request, expected) in [
            (request(&[], 3600), "1 to 16 matchers"),
            (request(&[("user name", "x")], 3600), "matcher's name"),
            (request(&[("user", "")], 3600), "matcher's value"),
            (request(&[("user", "a\r\nb")], 3600), "matcher's value"),
            (request(&[("user", "x")], -10), "must end after"),
            (request(&[("user", "x")], 100 * 86_400), "90 days"),
            (
                SilenceRequest {
                    comment: "  ".to_owned(),
                    ..request(&[("user", "x")], 3600)
                },
                "comment",
            ),
        ] {
            let error = request
                .into_silence("s".to_owned(), "oncall", at(0))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
