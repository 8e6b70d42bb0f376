use std::fmt::Write as _;

use expect_test::{Expect, expect};

use super::*;

#[test]
fn column_names_are_unique() {
    let mut seen = std::collections::BTreeSet::new();
    for field in FIELDS {
        assert!(
            seen.insert(field.column),
            "duplicate column for {}",
            field.name
        );
    }
}

#[test]
fn each_field_knows_its_column_name() {
    for field in FIELDS {
        assert_eq!(field.column, column_name(field.name));
    }
    assert_eq!(TIMESTAMP.column, "timestamp");
    assert_eq!(
        SOURCE_GEO_COUNTRY_ISO_CODE.column,
        "source_geo_country_iso_code"
    );
    assert_eq!(by_column("user_name").map(|f| f.name), Some("user.name"));
    assert_eq!(by_name("user.name").map(|f| f.column), Some("user_name"));
    assert!(by_column("nope").is_none());
    assert!(by_name("user_name").is_none());
}

#[test]
fn crate_docs_list_every_field() {
    let docs = include_str!("../lib.rs");
    for field in FIELDS {
        assert!(
            docs.contains(&format!("`{}`", field.name)),
            "lib.rs docs do not mention `{}`",
            field.name
        );
    }
}

/// Every field can be read from an event or a session, or says which tables alone hold it.
#[test]
fn every_field_has_a_getter_or_is_table_only() {
    for field in FIELDS {
        let has_getter = field.event.is_some() || field.session.is_some();
        assert_ne!(
            has_getter,
            !field.only_in.is_empty(),
            "{}: a field has a getter, or names the tables that alone hold it (not both)",
            field.name
        );
    }
}

fn jsonl<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// What every getter reads from realistic events and sessions of each kind
/// (testdata/fields/*.jsonl), each value of its field's type.
#[test]
fn getters_read_every_kind_of_event_and_session() {
    let events: Vec<Event> = jsonl(include_str!("../../testdata/fields/events.jsonl"));
    let sessions: Vec<Session> = jsonl(include_str!("../../testdata/fields/sessions.jsonl"));
    let mut rendered = String::new();
    for event in &events {
        let row = format!("event {}", event.id);
        render_row(&mut rendered, &row, |field| field.of_event(event));
    }
    for session in &sessions {
        let row = format!("session {}", session.session_id);
        render_row(&mut rendered, &row, |field| field.of_session(session));
    }
    expect_test::expect_file!["../../testdata/fields/values.expected"].assert_eq(&rendered);
}

/// The fields `read` has a value for, one a line, after `row`.
fn render_row<'a>(rendered: &mut String, row: &str, read: impl Fn(&Field) -> Option<Value<'a>>) {
    writeln!(rendered, "{row}").unwrap();
    for field in FIELDS {
        let Some(value) = read(field) else { continue };
        assert_eq!(value.field_type(), field.ty, "{row}: {}", field.name);
        writeln!(rendered, "  {}: {value:?}", field.name).unwrap();
    }
}

#[track_caller]
fn check(name: &str, expect: Expect) {
    let actual = match resolve(name) {
        Ok(field) => format!("{} ({:?}, column {})", field.name, field.ty, field.column),
        Err(error) => {
            assert_eq!(error.kind(), crate::ErrorKind::Invalid);
            format!("error: {error}")
        }
    };
    expect.assert_eq(&actual);
}

#[test]
fn resolve_takes_dotted_and_column_names() {
    check("source.ip", expect!["source.ip (Ip, column source_ip)"]);
    check("source_ip", expect!["source.ip (Ip, column source_ip)"]);
    check("@timestamp", expect!["@timestamp (Time, column timestamp)"]);
    check("timestamp", expect!["@timestamp (Time, column timestamp)"]);
    check(
        "source.geo.location.lat",
        expect!["source.geo.location.lat (Float, column source_geo_location_lat)"],
    );
    check("session_id", expect!["session_id (Str, column session_id)"]);
    check("rule.id", expect!["rule.id (Str, column rule_id)"]);
}

#[test]
fn an_unknown_field_is_named_and_the_closest_suggested() {
    check("user", expect![[r#"error: unknown field "user""#]]);
    check(
        "sourceip",
        expect![[r#"error: unknown field "sourceip"; did you mean "source.ip"?"#]],
    );
    check(
        "Source.IP",
        expect![[r#"error: unknown field "Source.IP"; did you mean "source.ip"?"#]],
    );
    check(
        "source-ip",
        expect![[r#"error: unknown field "source-ip"; did you mean "source.ip"?"#]],
    );
    check(
        "usr.name",
        expect![[r#"error: unknown field "usr.name"; did you mean "user.name"?"#]],
    );
    check(
        "vpn.ike_said",
        expect![[r#"error: unknown field "vpn.ike_said"; did you mean "vpn.ike_sa_id"?"#]],
    );
    check("ip", expect![[r#"error: unknown field "ip""#]]);
    check(
        "source.",
        expect![[r#"error: unknown field "source."; did you mean "source.ip"?"#]],
    );
}

#[test]
fn odd_names_are_quoted_escaped_and_cut() {
    check("", expect![[r#"error: unknown field """#]]);
    check(" ", expect![[r#"error: unknown field " ""#]]);
    check(
        "source.ip ",
        expect![[r#"error: unknown field "source.ip "; did you mean "source.ip"?"#]],
    );
    check(
        "ŝource.ip",
        expect![[r#"error: unknown field "ŝource.ip"; did you mean "source.ip"?"#]],
    );
    check("用户.名", expect![[r#"error: unknown field "用户.名""#]]);
    check(
        "source.ip\n\u{1b}[31mALERT",
        expect![[r#"error: unknown field "source.ip\n\u{1b}[31mALERT""#]],
    );
    check(
        "user.name\u{202e}eman.resu",
        expect![[r#"error: unknown field "user.name\u{202e}eman.resu""#]],
    );
    check(
        "source.ip\0",
        expect![[r#"error: unknown field "source.ip\0"; did you mean "source.ip"?"#]],
    );
    check(
        "source_ip; DROP TABLE events",
        expect![[r#"error: unknown field "source_ip; DROP TABLE events""#]],
    );
    check(
        "\"quoted\" \\ back",
        expect![[r#"error: unknown field "\"quoted\" \\ back""#]],
    );
    check(
        "../../etc/passwd",
        expect![[r#"error: unknown field "../../etc/passwd""#]],
    );
}

#[test]
fn a_huge_name_is_cut_in_the_error() {
    let huge = "a".repeat(1 << 20);
    let started = std::time::Instant::now();
    let error = resolve(&huge).unwrap_err().to_string();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(
        error,
        format!(
            "unknown field \"{}\"… (cut from 1048576 bytes)",
            "a".repeat(64)
        )
    );
    let huge = format!("source.ip{}", "é".repeat(1 << 19));
    let error = resolve(&huge).unwrap_err().to_string();
    assert!(error.len() < 200, "{error}");
    assert!(error.ends_with("… (cut from 1048585 bytes)"), "{error}");
}
