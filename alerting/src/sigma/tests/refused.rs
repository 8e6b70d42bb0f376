//! Refusals: every unsupported Sigma feature and every hostile input is an error that
//! names the rule (or `(file)`) and the feature, never a panic or a hang.

use super::*;
#[track_caller]
fn refused(yaml: &str, rule: &str, expect: &str) {
    match compile_default(yaml) {
        Ok(configs) => panic!("{yaml}\nwas accepted: {configs:#?}"),
        Err(error) => {
            assert!(
                error.starts_with(&format!("sigma rule {rule}: ")),
                "{yaml}\n→ {error}"
            );
            assert!(error.contains(expect), "{yaml}\n→ {error}");
        }
    }
}

#[test]
fn unsupported_detection_features_are_refused_by_name() {
    for modifier in [
        "windash",
        "base64",
        "base64offset",
        "utf16le",
        "utf16be",
        "utf16",
        "wide",
        "expand",
        "fieldref",
        "hour",
    ] {
        refused(
            &rule_with(&format!(
                "selection:\n    User|{modifier}: x\ncondition: selection"
            )),
            "bad-rule",
            &format!("the modifier `{modifier}` is not supported"),
        );
    }
    for (detection, expect) in [
        (
            "selection:\n    User|foo: x\ncondition: selection",
            "unknown modifier `foo`",
        ),
        (
            "selection:\n    User|re|contains: x\ncondition: selection",
            "`re` and `contains` do not combine",
        ),
        (
            "selection:\n    User|i: x\ncondition: selection",
            "`i` only follows `re`",
        ),
        (
            "selection:\n    User||x: x\ncondition: selection",
            "empty modifier",
        ),
        (
            "selection:\n    CommandLine: x\ncondition: selection",
            "field `CommandLine` is not in the field mapping and is not a tunnelwatch field",
        ),
        (
            "selection:\n    rule.id: x\ncondition: selection",
            "not a field of events",
        ),
        (
            "selection:\n    User: [a, null]\ncondition: selection",
            "null cannot be one of a list",
        ),
        (
            "selection:\n    User|contains: null\ncondition: selection",
            "null takes no modifier",
        ),
        (
            "selection:\n    User: {a: b}\ncondition: selection",
            "the value is a map",
        ),
        (
            "selection:\n    User: [[a]]\ncondition: selection",
            "a value is a list",
        ),
        (
            "selection:\n    User: []\ncondition: selection",
            "an empty list of values",
        ),
        (
            "selection: {}\ncondition: selection",
            "detection `selection`: an empty map",
        ),
        ("selection: []\ncondition: selection", "an empty list"),
        (
            "selection: x\ncondition: selection",
            "a scalar; a search identifier is a map or a list",
        ),
        (
            "selection:\n    - User: a\n    - b\ncondition: selection",
            "mixes maps and plain values",
        ),
        (
            "selection:\n    User|exists: maybe\ncondition: selection",
            "`exists` takes true or false",
        ),
        (
            "selection:\n    SourcePort|gt: many\ncondition: selection",
            "`gt` takes a number",
        ),
        (
            "selection:\n    SourcePort|gt: 1e999\ncondition: selection",
            "`gt` takes a number",
        ),
        (
            "selection:\n    SourceIp|cidr: 10.0.0.0/33\ncondition: selection",
            "address range",
        ),
        (
            "selection:\n    User|re: '(a'\ncondition: selection",
            "regex",
        ),
        (
            "selection:\n    User|re: '(?=a)b'\ncondition: selection",
            "regex",
        ),
        (
            "selection:\n    User: a\ncondition: 2 of selection*",
            "`2 of` is not supported",
        ),
        (
            "selection:\n    User: a\ncondition: 1 of filter*",
            "`1 of filter*` matches no search identifier",
        ),
        (
            "selection:\n    User: a\ncondition: selection and filter",
            "names `filter`, which is not a search identifier",
        ),
        (
            "selection:\n    User: a\ncondition: (selection",
            "a `(` is not closed",
        ),
        (
            "selection:\n    User: a\ncondition: selection)",
            "unexpected `)`",
        ),
        (
            "selection:\n    User: a\ncondition: selection selection",
            "unexpected `selection`",
        ),
        (
            "selection:\n    User: a\ncondition: selection and",
            "ends too early",
        ),
        (
            "selection:\n    User: a\ncondition: ''",
            "the condition is empty",
        ),
        ("selection:\n    User: a", "the detection has no condition"),
        (
            "selection:\n    User: a\ncondition: [selection, 'selection | count() > 1']",
            "an aggregation in a list of conditions",
        ),
        (
            "selection:\n    User: a\ncondition: selection | count() > 5",
            "needs a `timeframe`",
        ),
        (
            "selection:\n    User: a\ntimeframe: 1m\ncondition: selection | count() by User < 5",
            "the comparison `<` is not supported",
        ),
        (
            "selection:\n    User: a\ntimeframe: 1m\ncondition: selection | count() >= 0",
            "`>= 0` always holds",
        ),
        (
            "selection:\n    User: a\ntimeframe: 1m\ncondition: selection | sum(SourcePort) > 5",
            "the aggregation `sum()` is not supported",
        ),
        (
            "selection:\n    User: a\ntimeframe: 1m\ncondition: selection | near other",
            "`near` is not supported",
        ),
        (
            "selection:\n    User: a\ntimeframe: 1m\ncondition: selection | count() by > 5",
            "not an aggregation",
        ),
        (
            "selection:\n    User: a\ntimeframe: forever\ncondition: selection | count() > 5",
            "timeframe",
        ),
        (
            "selection:\n    User: a\ntimeframe: 1m\ncondition: selection | count(Nope) > 5",
            "field `Nope`",
        ),
    ] {
        refused(&rule_with(detection), "bad-rule", expect);
    }
}

#[test]
fn unsupported_rule_features_are_refused_by_name() {
    let good = rule_with("selection:\n    User: a\ncondition: selection");
    for (yaml, rule, expect) in [
        (
            good.replace("product: strongswan", "product: windows"),
            "bad-rule",
            "logsource product `windows` is not in the field mapping",
        ),
        (
            good.replace("product: strongswan", "category: process_creation"),
            "bad-rule",
            "logsource category `process_creation`",
        ),
        (
            good.replace("product: strongswan", "os: linux"),
            "bad-rule",
            "logsource `os` is not supported",
        ),
        (
            good.replace("logsource:\n    product: strongswan\n", ""),
            "bad-rule",
            "the logsource is missing",
        ),
        (
            good.replace("id: bad-rule", "id: bad rule!"),
            "bad rule!",
            "the id `bad rule!` is not 1 to 64 characters",
        ),
        (
            good.replace("title: Bad rule\n", ""),
            "bad-rule",
            "the title is missing",
        ),
        (
            good.replace("title: Bad rule\nid: bad-rule\n", "title: '!!!'\n"),
            "!!!",
            "no id, and its title makes none",
        ),
        (
            format!("{good}level: urgent\n"),
            "bad-rule",
            "level `urgent` is not informational",
        ),
        (
            format!("{good}tags: attack.t1110\n"),
            "bad-rule",
            "`tags` is a scalar; it is a list",
        ),
        (
            format!("{good}correlation:\n    type: event_count\n"),
            "bad-rule",
            "detection or correlation, not both",
        ),
        (
            "title: Filter\nid: f\nfilter:\n    rules: [x]\n".to_owned(),
            "f",
            "Sigma filters (documents with `filter:`) are not supported",
        ),
        (
            "title: Nothing\nid: n\n".to_owned(),
            "n",
            "neither detection nor correlation",
        ),
        (
            "- a\n- b\n".to_owned(),
            "(document 1)",
            "the document is a list",
        ),
        (
            format!("{good}---\n{good}"),
            "bad-rule",
            "the id `bad-rule` is used twice",
        ),
        // A condition nesting deeper than filters may.
        (
            rule_with(
                "a: {User: a}\nb: {User: b}\ncondition: not (a and not (b and not (a and not (b and not (a and not (b and not (a and not (b and not a))))))))",
            ),
            "bad-rule",
            "filter: none_of[0]",
        ),
    ] {
        refused(&yaml, rule, expect);
    }
}

/// A correlation of `body` (the lines under `correlation:`) over the failed-login rule.
fn correlation(body: &str) -> String {
    format!(
        "title: Corr\nid: corr\ncorrelation:\n{}\n---\n{}",
        body.lines()
            .map(|line| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n"),
        "title: Failed\nid: failed\nname: failed_login\nlogsource: {product: strongswan}\ndetection:\n    selection: {event.action: auth-failure}\n    condition: selection\n---\ntitle: Ok\nid: ok\nname: ok_login\nlogsource: {product: strongswan}\ndetection:\n    selection: {event.action: auth-success}\n    condition: selection\n"
    )
}

#[test]
fn unsupported_correlations_are_refused_by_name() {
    let count = "rules: [failed_login]\ngroup-by: [User]\ntimespan: 5m\n";
    for (body, expect) in [
        (format!("type: temporal\n{count}"), "temporal (unordered) correlations are not supported"),
        (format!("type: value_sum\n{count}condition: {{field: SourcePort, gt: 5}}"), "the correlation type value_sum is not supported"),
        (format!("type: value_avg\n{count}"), "value_avg is not supported"),
        (format!("type: value_percentile\n{count}"), "value_percentile is not supported"),
        (format!("type: nearby\n{count}"), "unknown correlation type `nearby`"),
        (format!("{count}condition: {{gte: 2}}"), "the correlation has no type"),
        (format!("type: event_count\n{count}"), "has no condition"),
        (format!("type: event_count\n{count}condition: {{lt: 5}}"), "the condition `lt` is not supported"),
        (format!("type: event_count\n{count}condition: {{eq: 5}}"), "the condition `eq` is not supported"),
        (format!("type: event_count\n{count}condition: {{gt: 5, gte: 7}}"), "a range in the condition"),
        (format!("type: event_count\n{count}condition: {{gte: 99999999999999999999999}}"), "`gte` takes a whole number"),
        (format!("type: event_count\n{count}condition: {{gte: 0}}"), "always holds"),
        (format!("type: event_count\n{count}condition: {{gte: 200000}}"), "threshold must be at most 100000"),
        (format!("type: event_count\n{count}condition: {{gte: 5, field: User}}"), "`field` in the condition is for value_count"),
        (format!("type: value_count\n{count}condition: {{gte: 5}}"), "value_count needs the `field`"),
        (format!("type: value_count\n{count}condition: {{gte: 5, field: [User, SourceIp]}}"), "value_count over several fields is not supported"),
        (format!("type: event_count\n{count}condition: {{gte: 5}}\naliases: {{ip: {{failed_login: source.ip}}}}"), "correlation aliases are not supported"),
        (format!("type: event_count\n{count}condition: {{gte: 5}}\nwhere: x"), "correlation `where` is not supported"),
        ("type: event_count\nrules: [nope]\ntimespan: 5m\ncondition: {gte: 5}".to_owned(), "the correlation names `nope`, which is no rule of this file"),
        ("type: event_count\nrules: [corr]\ntimespan: 5m\ncondition: {gte: 5}".to_owned(), "correlations of correlations"),
        ("type: event_count\nrules: [failed_login]\ntimespan: 1y\ncondition: {gte: 5}".to_owned(), "timespan"),
        ("type: event_count\nrules: [failed_login]\ncondition: {gte: 5}".to_owned(), "the correlation has no timespan"),
        ("type: event_count\nrules: []\ntimespan: 5m\ncondition: {gte: 5}".to_owned(), "names 1 to 100 rules"),
        ("type: temporal_ordered\nrules: [failed_login, ok_login, failed]\ntimespan: 5m".to_owned(), "temporal_ordered over 3 rules is not supported"),
        ("type: temporal_ordered\nrules: [failed_login, ok_login]\ntimespan: 5m\ncondition: {gte: 1}".to_owned(), "a temporal_ordered condition other than all of its rules"),
        ("type: temporal_ordered\nrules: [failed_login, corr]\ntimespan: 5m".to_owned(), "correlations of correlations are supported only as an event_count step"),
    ] {
        refused(&correlation(&body), "corr", expect);
    }
    // A step counted over another span than the sequence's.
    let yaml = FAILURES_THEN_SUCCESS.replacen(
        "timespan: 10m\n    condition",
        "timespan: 5m\n    condition",
        1,
    );
    refused(
        &yaml,
        "b180ead8-d58f-40b2-ae54-c8940995b9b6",
        "the step `a8418a5a-5fc4-46b5-b23b-6c73beb19d41` counts over 5m and the sequence spans 10m: they must be the same",
    );
    // A rule with an aggregation cannot be named by a correlation.
    let yaml = correlation(&format!("type: event_count\n{count}condition: {{gte: 2}}")).replace(
        "    condition: selection\n---\ntitle: Ok",
        "    timeframe: 1m\n    condition: selection | count() > 2\n---\ntitle: Ok",
    );
    refused(&yaml, "corr", "has an aggregation");
}

#[test]
fn hostile_yaml_is_refused_without_panic_or_hang() {
    let billion_laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n";
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_block: String = (0..40)
        .map(|depth| format!("{}k{depth}:\n", "  ".repeat(depth)))
        .collect();
    let many_documents = "title: x\n---\n".repeat(101);
    let many_nodes = format!("[{}]", vec!["a"; 100_001].join(","));
    let huge = format!("title: {}", "x".repeat(MAX_FILE_BYTES));
    let long_condition = rule_with(&format!(
        "selection:\n    User: a\ncondition: {}",
        vec!["selection"; 1000].join(" and ")
    ));
    let heavy_condition = rule_with(&format!(
        "selection:\n    User: [{}]\ncondition: {}",
        (0..1000)
            .map(|n| format!("user-{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        vec!["selection"; 300].join(" or ")
    ));
    let nested_condition = rule_with(&format!(
        "selection:\n    User: a\ncondition: {}selection{}",
        "(".repeat(1000),
        ")".repeat(1000)
    ));
    let not_condition = rule_with(&format!(
        "selection:\n    User: a\ncondition: {}selection",
        "not ".repeat(200)
    ));
    for (yaml, rule, expect) in [
        (
            billion_laughs.to_owned(),
            "(file)",
            "YAML aliases (*name) are not supported",
        ),
        (
            "title: !!python/object:os.system x\n".to_owned(),
            "(file)",
            "YAML tags (!tag) are not supported",
        ),
        (deep, "(file)", ""),
        (deep_block, "(file)", "nest more than 16 deep"),
        (many_documents, "(file)", "more than 100 YAML documents"),
        (many_nodes, "(file)", "more than 100000 YAML nodes"),
        (huge, "(file)", "bytes is more than the 262144"),
        ("title: x\n\tid: y\n".to_owned(), "(file)", "invalid YAML"),
        (
            "title: x\ntitle: y\n".to_owned(),
            "(file)",
            "the key `title` appears twice",
        ),
        (
            "? [a]\n: b\n".to_owned(),
            "(file)",
            "a key is a list; keys are text",
        ),
        (
            "title: 'unterminated\n".to_owned(),
            "(file)",
            "invalid YAML",
        ),
        ("".to_owned(), "(file)", "no Sigma rule"),
        ("---\n---\n".to_owned(), "(file)", "no Sigma rule"),
        (long_condition, "bad-rule", "longer than 4096 bytes"),
        (heavy_condition, "bad-rule", "too large an expression"),
        (nested_condition, "bad-rule", "nests more than 32 deep"),
        (not_condition, "bad-rule", "nests more than 32 deep"),
    ] {
        refused(&yaml, rule, expect);
    }
    // Bytes that are not YAML at all, and truncations of a real rule, never panic.
    let mut garbage = String::new();
    for n in 0..2000_u32 {
        garbage.push(char::from_u32(n.wrapping_mul(2_654_435_761) % 0x2000).unwrap_or('?'));
    }
    assert!(compile_default(&garbage).is_err());
    for end in (0..FAILURES_THEN_SUCCESS.len()).step_by(7) {
        if FAILURES_THEN_SUCCESS.is_char_boundary(end) {
            let _ = compile_default(&FAILURES_THEN_SUCCESS[..end]);
        }
    }
}
