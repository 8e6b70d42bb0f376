//! `query`: a SQL statement over the store, run every `interval` over the last `window`;
//! each row it returns is an alert of the rule's group (the `group_by` fields, read from the
//! columns of the same name). Analysts write detections in SQL:
//!
//! ```toml
//! id = "many-api-errors"
//! name = "A user's API calls failing"
//! kind = "query"
//! interval = "5m"
//! window = "1h"
//! group_by = ["user.name"]
//! sql = """
//! SELECT user_name, count(*) AS count FROM api_requests
//! WHERE timestamp >= $from AND timestamp < $to AND http_response_status_code >= 500
//! GROUP BY user_name HAVING count(*) >= 50
//! """
//! ```
//!
//! `$from` and `$to` become the window's bounds (timestamp literals); `$from` is required, so
//! that no rule scans the whole store every interval. The statement is checked at load to be
//! one `SELECT` (or `WITH … SELECT`); the store runs it read-only, with its time and memory
//! limits. Query rules run on the server (wall clock), not in a replay of history. Pure.

use std::time::Duration;

use jiff::Timestamp;
use model::fields::Field;

/// Longest statement.
pub const MAX_SQL_BYTES: usize = 16 * 1024;
/// Most rows one run turns into alerts (the rest are counted and left).
pub const MAX_ROWS: usize = 1000;

#[derive(Debug, Clone)]
pub struct Query {
    pub sql: String,
    pub interval: Duration,
    pub window: Duration,
}

/// What one returned row says.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub group: Vec<(&'static str, String)>,
    pub count: u64,
    pub reason: String,
}

/// Checks a statement: one read-only `SELECT`, with `$from`.
pub fn check(sql: &str) -> Result<(), String> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(format!("sql is longer than {MAX_SQL_BYTES} bytes"));
    }
    let code = without_comments_and_strings(sql);
    let trimmed = code.trim().trim_end_matches(';').trim();
    if trimmed.contains(';') {
        return Err("sql must be one statement".to_owned());
    }
    let first = trimmed
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .find(|word| !word.is_empty())
        .unwrap_or_default()
        .to_ascii_uppercase();
    if first != "SELECT" && first != "WITH" {
        return Err(format!(
            "sql must be a SELECT (or WITH … SELECT), not {}",
            if first.is_empty() { "nothing" } else { &first }
        ));
    }
    for word in trimmed
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .map(str::to_ascii_uppercase)
    {
        if matches!(
            word.as_str(),
            "INSERT"
                | "UPDATE"
                | "DELETE"
                | "CREATE"
                | "DROP"
                | "ALTER"
                | "COPY"
                | "TRUNCATE"
                | "MERGE"
                | "GRANT"
                | "SET"
        ) {
            return Err(format!("sql must only read: it says {word}"));
        }
    }
    if !code.contains("$from") {
        return Err("sql must bound its time with $from (and $to): e.g. WHERE timestamp >= $from AND timestamp < $to".to_owned());
    }
    Ok(())
}

/// The code of a statement with its comments and string literals blanked out (so that a
/// keyword in a string is not taken for one, and a `$from` in a string does not count).
fn without_comments_and_strings(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(' ');
                for inner in chars.by_ref() {
                    if inner == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                for inner in chars.by_ref() {
                    if inner == '\n' {
                        break;
                    }
                }
                out.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for inner in chars.by_ref() {
                    if last == '*' && inner == '/' {
                        break;
                    }
                    last = inner;
                }
                out.push(' ');
            }
            other => out.push(other),
        }
    }
    out
}

impl Query {
    /// The statement for the window ending at `now`.
    pub fn statement(&self, now: Timestamp) -> String {
        let window =
            jiff::SignedDuration::try_from(self.window).unwrap_or(jiff::SignedDuration::MAX);
        let from = now.saturating_sub(window).unwrap_or(Timestamp::UNIX_EPOCH);
        let literal =
            |at: Timestamp| format!("TIMESTAMP '{}'", at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ"));
        self.sql
            .replace("$from", &literal(from))
            .replace("$to", &literal(now))
    }

    /// The rows of a run as alerts' groups: the `group_by` fields from the columns named
    /// like them (`user_name` or `user.name`), a `count` column if there is one, the rest in
    /// the reason. A row without a group value is an error naming the column.
    pub fn rows(
        &self,
        group_by: &[&'static Field],
        result: &[serde_json::Map<String, serde_json::Value>],
    ) -> Result<Vec<Row>, String> {
        let text = |value: &serde_json::Value| match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        result
            .iter()
            .take(MAX_ROWS)
            .map(|row| {
                let group = group_by
                    .iter()
                    .map(|field| {
                        row.get(field.column)
                            .or_else(|| row.get(field.name))
                            .filter(|value| !value.is_null())
                            .map(|value| (field.name, text(value)))
                            .ok_or_else(|| {
                                format!(
                                    "the result has no value for {} (a column {} or \"{}\")",
                                    field.name, field.column, field.name
                                )
                            })
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                let count = row
                    .get("count")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(1);
                let rest: Vec<String> = row
                    .iter()
                    .filter(|(name, _)| {
                        !group_by.iter().any(|field| {
                            field.column == name.as_str() || field.name == name.as_str()
                        })
                    })
                    .map(|(name, value)| format!("{name} = {}", text(value)))
                    .collect();
                Ok(Row {
                    group,
                    count,
                    reason: if rest.is_empty() {
                        "the query found it".to_owned()
                    } else {
                        format!("the query found {}", rest.join(", "))
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_bounded_select_is_accepted() {
        assert_eq!(
            check("SELECT user_name FROM auth_events WHERE timestamp >= $from AND timestamp < $to"),
            Ok(())
        );
        assert_eq!(
            check(
                "-- failures\nWITH f AS (SELECT * FROM auth_events WHERE timestamp >= $from) SELECT * FROM f;"
            ),
            Ok(())
        );
        // Keywords in strings and comments are not keywords.
        assert_eq!(
            check("SELECT 'drop table' AS x /* delete */ FROM events WHERE timestamp >= $from"),
            Ok(())
        );
        for (sql, expected) in [
            ("DELETE FROM events WHERE timestamp >= $from", "SELECT"),
            (
                "SELECT 1 WHERE timestamp >= $from; DROP TABLE events",
                "one statement",
            ),
            ("SELECT * FROM events", "$from"),
            ("SELECT '$from' FROM events", "$from"),
            (
                "WITH x AS (INSERT INTO t VALUES (1)) SELECT $from",
                "only read",
            ),
            ("", "not nothing"),
        ] {
            let error = check(sql).unwrap_err();
            assert!(
                error.contains(expected.trim_start_matches("not ")),
                "{sql}: {error}"
            );
        }
        assert!(
            check(&"SELECT $from ".repeat(2000))
                .unwrap_err()
                .contains("longer")
        );
    }

    #[test]
    fn the_window_becomes_literals_and_rows_become_groups() {
        let query = Query {
            sql: "SELECT user_name, count(*) AS count FROM auth_events WHERE timestamp >= $from AND timestamp < $to GROUP BY 1".to_owned(),
            interval: Duration::from_secs(300),
            window: Duration::from_secs(3600),
        };
        let now: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let sql = query.statement(now);
        assert!(
            sql.contains("timestamp >= TIMESTAMP '2026-12-07T09:00:00.000000Z'"),
            "{sql}"
        );
        assert!(
            sql.contains("timestamp < TIMESTAMP '2026-12-07T10:00:00.000000Z'"),
            "{sql}"
        );
        let result: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(
            r#"[{"user_name": "alice", "count": 25, "source_ip": "192.0.2.1"}, {"user_name": "bob", "count": 7}]"#,
        )
        .unwrap();
        let rows = query.rows(&[&model::fields::USER_NAME], &result).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].group, [("user.name", "alice".to_owned())]);
        assert_eq!(rows[0].count, 25);
        assert!(
            rows[0].reason.contains("source_ip = 192.0.2.1"),
            "{}",
            rows[0].reason
        );
        let missing = query
            .rows(&[&model::fields::SOURCE_IP], &result[1..])
            .unwrap_err();
        assert!(missing.contains("source.ip"), "{missing}");
    }
}
