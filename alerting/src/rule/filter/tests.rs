//! Filter tables: the boolean tree (`any_of`, `all_of`, `none_of`) matches what it says, and
//! hostile tables (deep, wide, mistyped, unknown) are refused with the path and the reason.

use model::Outcome;

use super::*;
use crate::engine::tests::auth;

fn compile(text: &str) -> Result<Filter, String> {
    let table: BTreeMap<String, toml::Value> =
        toml::from_str(text).map_err(|error| error.to_string())?;
    Filter::compile(&table)
}

/// Alice fails from 192.0.2.7; bob succeeds from 198.51.100.9; svc-backup fails from 10.1.2.3.
fn events() -> [(&'static str, model::Event); 3] {
    [
        ("alice", auth(1, 0, "alice", "192.0.2.7", Outcome::Failure)),
        ("bob", auth(2, 1, "bob", "198.51.100.9", Outcome::Success)),
        (
            "svc-backup",
            auth(3, 2, "svc-backup", "10.1.2.3", Outcome::Failure),
        ),
    ]
}

/// The users whose event `filter` matches.
#[track_caller]
fn check(filter: &str, expect: &[&str]) {
    let compiled = compile(filter).unwrap_or_else(|error| panic!("{filter}\n→ {error}"));
    let matched: Vec<&str> = events()
        .iter()
        .filter(|(_, event)| compiled.matches(event))
        .map(|(user, _)| *user)
        .collect();
    assert_eq!(matched, expect, "{filter}");
}

#[track_caller]
fn refused(filter: &str, expect: &str) {
    match compile(filter) {
        Ok(_) => panic!("{filter} was accepted"),
        Err(error) => assert!(error.contains(expect), "{filter}\n→ {error}"),
    }
}

#[test]
fn field_conditions_hold_together() {
    check("", &["alice", "bob", "svc-backup"]);
    check(
        r#""event.action" = "auth-failure""#,
        &["alice", "svc-backup"],
    );
    check(
        r#""event.action" = "auth-failure"
"source.ip" = { cidr = "10.0.0.0/8" }"#,
        &["svc-backup"],
    );
    check(
        r#""source.port" = { gt = 4499 }"#,
        &["alice", "bob", "svc-backup"],
    );
    check(r#""source.port" = { gt = 4500 }"#, &[]);
    check(
        r#""source.port" = { lt = 4501 }"#,
        &["alice", "bob", "svc-backup"],
    );
    check(r#""source.port" = { lt = 4500 }"#, &[]);
    check(
        r#""source.port" = { gte = 4500, }"#,
        &["alice", "bob", "svc-backup"],
    );
    assert!(compile("").unwrap().is_empty());
    assert!(
        !compile(r#"any_of = [{ "user.name" = "x" }]"#)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn any_of_all_of_none_of() {
    check(
        r#"any_of = [{ "user.name" = "bob" }, { "source.ip" = { cidr = "10.0.0.0/8" } }]"#,
        &["bob", "svc-backup"],
    );
    check(
        r#"all_of = [{ "event.action" = "auth-failure" }, { "user.name" = { regex = "^svc-" } }]"#,
        &["svc-backup"],
    );
    check(
        r#"none_of = [{ "user.name" = "bob" }, { "source.ip" = { cidr = "10.0.0.0/8" } }]"#,
        &["alice"],
    );
    // Field conditions and every list must hold together.
    check(
        r#""event.action" = "auth-failure"
any_of = [{ "user.name" = "alice" }, { "user.name" = "bob" }]"#,
        &["alice"],
    );
    check(
        r#""event.outcome" = "failure"
none_of = [{ any_of = [{ "user.name" = "alice" }, { "user.name" = "carol" }] }]"#,
        &["svc-backup"],
    );
    // Sigma's shape: a case-insensitive selection and not a filter.
    check(
        r#"any_of = [{ "user.name" = { regex = "(?i)^ALICE$" } }, { "user.name" = { regex = "(?i)^svc-" } }]
none_of = [{ all_of = [{ "source.ip" = { cidr = "10.0.0.0/8" } }, { "event.outcome" = "failure" }] }]"#,
        &["alice"],
    );
    // A missing field: `exists = false` holds, a value condition does not.
    check(
        r#""http.request.method" = { exists = false }"#,
        &["alice", "bob", "svc-backup"],
    );
    check(
        r#"none_of = [{ "http.request.method" = "GET" }]"#,
        &["alice", "bob", "svc-backup"],
    );
}

/// A table nested `depth` deep through `key`.
fn nested(key: &str, depth: usize) -> String {
    let mut table = r#"{ "user.name" = "alice" }"#.to_owned();
    for _ in 1..depth {
        table = format!("{{ {key} = [{table}] }}");
    }
    // The outermost table is the document itself.
    let inner = table
        .strip_prefix("{ ")
        .and_then(|rest| rest.strip_suffix(" }"))
        .unwrap_or(&table);
    inner.to_owned()
}

#[test]
fn nesting_is_bounded() {
    for key in NESTED {
        // MAX_DEPTH - 1 lists around the condition: an odd number of none_of negates it.
        let expect: &[&str] = if key == "none_of" && (MAX_DEPTH - 1) % 2 == 1 {
            &["bob", "svc-backup"]
        } else {
            &["alice"]
        };
        check(&nested(key, MAX_DEPTH), expect);
        refused(&nested(key, MAX_DEPTH + 1), "nest more than 8 deep");
        // Built in code (as Sigma builds them), past what the TOML parser would read.
        let mut table = BTreeMap::from([("user.name".to_owned(), toml::Value::from("alice"))]);
        for _ in 1..200 {
            let inner: toml::Table = table.into_iter().collect();
            table = BTreeMap::from([(
                key.to_owned(),
                toml::Value::Array(vec![toml::Value::Table(inner)]),
            )]);
        }
        let error = Filter::compile(&table).unwrap_err();
        assert!(error.contains("nest more than 8 deep"), "{error}");
    }
    let mut not = r#""alice""#.to_owned();
    for _ in 0..MAX_DEPTH {
        not = format!("{{ not = {not} }}");
    }
    refused(&format!(r#""user.name" = {not}"#), "nest more than 8 deep");
}

#[test]
fn lists_and_conditions_are_bounded() {
    let tables = |n: usize| vec![r#"{ "user.name" = "x" }"#; n].join(", ");
    for key in NESTED {
        compile(&format!("{key} = [{}]", tables(MAX_LIST))).unwrap();
        refused(&format!("{key} = [{}]", tables(MAX_LIST + 1)), "1 to 1000");
        refused(&format!("{key} = []"), "1 to 1000");
    }
    let values = |n: usize| vec!["\"x\""; n].join(", ");
    compile(&format!(r#""user.name" = [{}]"#, values(MAX_LIST))).unwrap();
    refused(
        &format!(r#""user.name" = [{}]"#, values(MAX_LIST + 1)),
        "1 to 1000",
    );
    // 1000 tables of 11 conditions: more than the 10000 a filter may hold.
    let fields = [
        "user.name",
        "source.ip",
        "source.port",
        "destination.ip",
        "destination.port",
        "event.action",
        "event.outcome",
        "event.dataset",
        "observer.hostname",
        "observer.product",
        "vpn.connection",
    ];
    let wide = fields
        .iter()
        .map(|field| format!(r#""{field}" = {{ exists = true }}"#))
        .collect::<Vec<_>>()
        .join(", ");
    let wide = vec![format!("{{ {wide} }}"); MAX_LIST].join(", ");
    refused(&format!("all_of = [{wide}]"), "at most 10000 conditions");
}

#[test]
fn wrong_shapes_are_refused_with_the_path() {
    refused(r#"any_of = "x""#, "any_of takes a list of filter tables");
    refused(
        r#"all_of = { "user.name" = "x" }"#,
        "all_of takes a list of filter tables",
    );
    refused(r#"none_of = ["x"]"#, "none_of[0] is not a filter table");
    refused(
        r#"any_of = [{ "user.name" = "x" }, { "no.such.field" = "x" }]"#,
        "any_of[1]: unknown field",
    );
    refused(
        r#"all_of = [{ none_of = [{ "user.name" = { regex = "(" } }] }]"#,
        "all_of[0]: none_of[0]: user.name: regex",
    );
    refused(r#"any_of = [{ "rule.id" = "x" }]"#, "not a field of events");
    refused(r#"anyof = [{ "user.name" = "x" }]"#, "unknown field");
    refused(r#""user.name" = { regex = 1 }"#, "regex takes a string");
    refused(r#""source.ip" = { cidr = true }"#, "cidr takes a string");
    refused(
        r#""user.name" = { exists = "yes" }"#,
        "exists takes true or false",
    );
    refused(r#""source.port" = { gt = "4500" }"#, "take a number");
    refused(r#""source.port" = { lt = nan }"#, "take a number");
    refused(
        r#""user.name" = { regex = "a", not = "b" }"#,
        "exactly one of",
    );
    refused(r#""user.name" = { like = "a" }"#, "is not a condition");
    refused(r#""user.name" = 1.5"#, "compare numbers");
    refused(r#""user.name" = [["a"]]"#, "strings or integers");
}
