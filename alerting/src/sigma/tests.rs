//! Sigma rules as SigmaHQ writes them, compiled, written as TOML, read back, loaded by
//! `Rule::compile` and run on hand-made events ([`refused`]: every unsupported feature and
//! hostile input refused with the rule and the feature).

use std::collections::BTreeMap;

use model::alert::action;
use model::{Event, Outcome};

use super::*;
use crate::engine::tests::auth;
use crate::engine::{Engine, Limits};
use crate::rule::{Filter, Kind};

/// Compiles `yaml` with the built-in mapping.
fn compile_default(yaml: &str) -> Result<Vec<RuleConfig>, String> {
    compile(yaml, &FieldMapping::default()).map_err(|error| error.to_string())
}

/// The one rule of `yaml`, written as TOML, read back (unchanged) and loaded.
#[track_caller]
fn load(yaml: &str) -> (RuleConfig, Rule) {
    let mut configs = compile_default(yaml).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(configs.len(), 1, "{configs:#?}");
    let config = configs.remove(0);
    (config.clone(), round_trip(&config))
}

/// `rules import-sigma` prints the TOML; `rules check` and the loader read it.
#[track_caller]
fn round_trip(config: &RuleConfig) -> Rule {
    let text = toml::to_string(config).unwrap();
    let read: RuleConfig =
        crate::parse_rule_file(&text).unwrap_or_else(|error| panic!("{text}\n→ {error}"));
    assert_eq!(&read, config, "{text}");
    Rule::compile(&read).unwrap_or_else(|error| panic!("{text}\n→ {error}"))
}

fn threshold_filter(rule: &Rule) -> &Filter {
    match &rule.kind {
        Kind::Threshold(threshold) => &threshold.filter,
        other => panic!("not a threshold: {other:?}"),
    }
}

/// A strongSwan login of `user` from `source`.
fn login(seq: u64, second: i64, user: &str, source: &str, outcome: Outcome) -> Event {
    auth(seq, second, user, source, outcome)
}

/// The same login as libreswan reports it.
fn libreswan(event: Event) -> Event {
    Event {
        dataset: "libreswan.pluto".to_owned(),
        observer: model::Observer {
            product: Some("libreswan".to_owned()),
            ..event.observer.clone()
        },
        ..event
    }
}

#[track_caller]
fn check_matches(filter: &Filter, cases: &[(Event, bool)]) {
    for (event, expect) in cases {
        assert_eq!(
            filter.matches(event),
            *expect,
            "{:?} {:?} {:?}",
            event.body,
            event.observer,
            event.original
        );
    }
}

/// The ids of the rules that fired, feeding `events` in order.
fn fired(rules: Vec<Rule>, events: &[Event]) -> Vec<String> {
    let mut engine = Engine::new(rules, Limits::default());
    events
        .iter()
        .flat_map(|event| engine.observe(event))
        .filter(|row| row.action == action::FIRED)
        .map(|row| row.rule_id)
        .collect()
}

const SERVICE_ACCOUNT: &str = r"
title: VPN login of a service account from outside
id: 5f1c8c8e-2a7e-4d0b-9a51-0c6f3f7e1a01
status: experimental
description: A service account logs in to the VPN from outside the corporate ranges
references:
    - https://attack.mitre.org/techniques/T1078/002/
author: tunnelwatch
date: 2026-11-30
logsource:
    product: strongswan
    category: authentication
detection:
    selection:
        User|startswith:
            - 'svc-'
            - 'SRV_'
        outcome: success
    filter_internal:
        SourceIp|cidr:
            - 10.0.0.0/8
            - 192.168.0.0/16
    condition: selection and not filter_internal
falsepositives:
    - Unknown
level: high
tags:
    - attack.initial_access
    - attack.t1078.002
    - attack.t1078.002
    - cve.2024.1234
";

#[test]
fn a_selection_with_modifiers() {
    let (config, rule) = load(SERVICE_ACCOUNT);
    assert_eq!(config.id, "5f1c8c8e-2a7e-4d0b-9a51-0c6f3f7e1a01");
    assert_eq!(config.name, "VPN login of a service account from outside");
    assert_eq!(config.severity, Severity::High);
    assert_eq!(config.mitre, ["T1078.002"]);
    assert!(config.description.starts_with("A service account"));
    assert!(config.group_by.is_empty());
    let KindConfig::Threshold {
        window, threshold, ..
    } = &config.kind
    else {
        panic!("{config:?}")
    };
    assert_eq!((window.as_str(), *threshold), ("5m", 1));
    check_matches(
        threshold_filter(&rule),
        &[
            (
                login(1, 0, "svc-backup", "198.51.100.9", Outcome::Success),
                true,
            ),
            // Case-insensitive, as Sigma is.
            (
                login(2, 0, "SVC-Backup", "198.51.100.9", Outcome::Success),
                true,
            ),
            (login(3, 0, "srv_db", "2001:db8::7", Outcome::Success), true),
            (
                login(4, 0, "svc-backup", "10.1.2.3", Outcome::Success),
                false,
            ),
            (
                login(5, 0, "svc-backup", "192.168.7.7", Outcome::Success),
                false,
            ),
            (
                login(6, 0, "svc-backup", "198.51.100.9", Outcome::Failure),
                false,
            ),
            (
                login(7, 0, "alice", "198.51.100.9", Outcome::Success),
                false,
            ),
            (
                login(8, 0, "my-svc-x", "198.51.100.9", Outcome::Success),
                false,
            ),
            // Another product is another logsource.
            (
                libreswan(login(9, 0, "svc-backup", "198.51.100.9", Outcome::Success)),
                false,
            ),
        ],
    );
}

const SUSPICIOUS_NAMES: &str = r"
title: Suspicious VPN account names
id: 0b7f6d52-8e43-4c4e-a2c5-5b0e6f1d2c33
logsource:
    product: tunnelwatch
detection:
    selection_admin:
        User|contains: admin
    selection_default:
        User:
            - root
            - 'test?'
            - guest*
    filter_lab:
        observer.hostname: lab-gw
    filter_ok:
        - event.outcome: failure
        - user.name|endswith: '.svc'
    condition: 1 of selection_* and not 1 of filter_*
level: medium
";

#[test]
fn one_of_selections_and_not_a_filter() {
    let (_, rule) = load(SUSPICIOUS_NAMES);
    let on_lab = |mut event: Event| {
        event.observer.hostname = Some("lab-gw".to_owned());
        event
    };
    let ok = Outcome::Success;
    check_matches(
        threshold_filter(&rule),
        &[
            (login(1, 0, "Administrator", "192.0.2.1", ok), true),
            (login(2, 0, "root", "192.0.2.1", ok), true),
            (login(3, 0, "ROOT", "192.0.2.1", ok), true),
            (login(4, 0, "test1", "192.0.2.1", ok), true),
            (login(5, 0, "test12", "192.0.2.1", ok), false),
            (login(6, 0, "guest-7", "192.0.2.1", ok), true),
            (login(7, 0, "alice", "192.0.2.1", ok), false),
            (login(8, 0, "rooted", "192.0.2.1", ok), false),
            (on_lab(login(9, 0, "root", "192.0.2.1", ok)), false),
            (login(10, 0, "root", "192.0.2.1", Outcome::Failure), false),
            (login(11, 0, "admin.svc", "192.0.2.1", ok), false),
            // `tunnelwatch` is every product.
            (libreswan(login(12, 0, "root", "192.0.2.1", ok)), true),
        ],
    );
}

const FAILED_LOGINS: &str = r"
title: Many failed VPN logins of one user
id: 9c1d0a6e-4f6b-4e0e-8f5e-2d7c3b1a0e11
status: test
description: Five failed logins of one account within ten minutes
correlation:
    type: event_count
    rules:
        - vpn_auth_failure
    group-by:
        - User
    timespan: 10m
    condition:
        gte: 5
level: high
tags:
    - attack.credential_access
    - attack.t1110
---
title: VPN authentication failure
id: 3a3f2c1d-0e9b-4a8c-9d7e-6f5a4b3c2d10
name: vpn_auth_failure
logsource:
    product: strongswan
    category: authentication
detection:
    selection:
        event.action: auth-failure
    condition: selection
level: low
";

#[test]
fn event_count_counts_failed_logins_per_user() {
    let (config, rule) = load(FAILED_LOGINS);
    assert_eq!(config.id, "9c1d0a6e-4f6b-4e0e-8f5e-2d7c3b1a0e11");
    assert_eq!(config.group_by, ["user.name"]);
    assert_eq!(config.mitre, ["T1110"]);
    let KindConfig::Threshold {
        window,
        threshold,
        distinct,
        ..
    } = &config.kind
    else {
        panic!("{config:?}")
    };
    assert_eq!((window.as_str(), *threshold, distinct), ("10m", 5, &None));
    check_matches(
        threshold_filter(&rule),
        &[
            (login(1, 0, "alice", "192.0.2.1", Outcome::Failure), true),
            (login(2, 0, "alice", "192.0.2.1", Outcome::Success), false),
            (
                libreswan(login(3, 0, "alice", "192.0.2.1", Outcome::Failure)),
                false,
            ),
        ],
    );
    // Four failures of alice and four of bob: nothing; alice's fifth: one alert.
    let mut events: Vec<Event> = (0..4)
        .flat_map(|n| {
            [
                login(2 * n, 2 * n as i64, "alice", "192.0.2.1", Outcome::Failure),
                login(
                    2 * n + 1,
                    2 * n as i64 + 1,
                    "bob",
                    "192.0.2.2",
                    Outcome::Failure,
                ),
            ]
        })
        .collect();
    assert!(fired(vec![rule.clone()], &events).is_empty());
    events.push(login(9, 60, "alice", "192.0.2.1", Outcome::Failure));
    assert_eq!(fired(vec![rule], &events), [config.id]);
}

const PASSWORD_SPRAYING: &str = r"
title: Password spraying against the VPN
id: 6e2b1f0a-3c4d-4b5a-8e9f-1a2b3c4d5e6f
correlation:
    type: value_count
    rules:
        - failed_login
    group-by:
        - SourceIp
    timespan: 5m
    condition:
        field: User
        gt: 2
level: high
tags:
    - attack.t1110.003
---
title: Failed login
id: 7f3c2e1b-4d5e-4c6b-9f0a-2b3c4d5e6f70
name: failed_login
logsource:
    category: authentication
detection:
    selection:
        event.outcome: failure
    condition: selection
";

#[test]
fn value_count_finds_password_spraying() {
    let (config, rule) = load(PASSWORD_SPRAYING);
    assert_eq!(config.group_by, ["source.ip"]);
    assert_eq!(config.mitre, ["T1110.003"]);
    let KindConfig::Threshold {
        threshold,
        distinct,
        ..
    } = &config.kind
    else {
        panic!("{config:?}")
    };
    assert_eq!((*threshold, distinct.as_deref()), (3, Some("user.name")));
    // One user failing often from one address: not spraying.
    let one_user: Vec<Event> = (0..6)
        .map(|n| login(n, n as i64, "alice", "203.0.113.5", Outcome::Failure))
        .collect();
    assert!(fired(vec![rule.clone()], &one_user).is_empty());
    // Three users from one address: spraying, whatever the product.
    let sprayed = [
        login(1, 0, "alice", "203.0.113.5", Outcome::Failure),
        login(2, 1, "bob", "198.51.100.1", Outcome::Failure),
        libreswan(login(3, 2, "bob", "203.0.113.5", Outcome::Failure)),
        login(4, 3, "carol", "203.0.113.5", Outcome::Success),
        login(5, 4, "dave", "203.0.113.5", Outcome::Failure),
    ];
    assert_eq!(fired(vec![rule], &sprayed), [config.id]);
}

const FAILURES_THEN_SUCCESS: &str = r"
title: Failed VPN logins followed by a successful login
id: b180ead8-d58f-40b2-ae54-c8940995b9b6
status: experimental
description: Detects multiple failed logins by a single user followed by a successful login of that user
correlation:
    type: temporal_ordered
    rules:
        - multiple_failed_login
        - successful_login
    group-by:
        - User
    timespan: 10m
falsepositives:
    - Unlikely
level: critical
---
title: Multiple failed logons
id: a8418a5a-5fc4-46b5-b23b-6c73beb19d41
description: Detects multiple failed logins within a certain amount of time
name: multiple_failed_login
correlation:
    type: event_count
    rules:
        - failed_login
    group-by:
        - User
    timespan: 10m
    condition:
        gte: 3
---
title: Single failed login
id: 53ba33fd-3a50-4468-a5ef-c583635cfa92
name: failed_login
logsource:
    product: strongswan
detection:
    selection:
        event.action: auth-failure
    condition: selection
---
title: Successful login
id: 4d0a2c83-c62c-4ed4-b475-c7e23a9269b8
name: successful_login
logsource:
    product: strongswan
detection:
    selection:
        event.action: auth-success
    condition: selection
";

#[test]
fn temporal_ordered_is_a_sequence() {
    let (config, rule) = load(FAILURES_THEN_SUCCESS);
    assert_eq!(config.id, "b180ead8-d58f-40b2-ae54-c8940995b9b6");
    assert_eq!(config.severity, Severity::Critical);
    assert_eq!(config.group_by, ["user.name"]);
    let KindConfig::Sequence {
        first,
        then,
        within,
        absent,
    } = &config.kind
    else {
        panic!("{config:?}")
    };
    assert_eq!(
        (first.count, then.count, within.as_str(), *absent),
        (3, 1, "10m", false)
    );
    let Kind::Sequence(sequence) = &rule.kind else {
        panic!("{rule:?}")
    };
    check_matches(
        &sequence.first.filter,
        &[
            (login(1, 0, "alice", "192.0.2.1", Outcome::Failure), true),
            (login(2, 0, "alice", "192.0.2.1", Outcome::Success), false),
        ],
    );
    check_matches(
        &sequence.then.filter,
        &[
            (login(1, 0, "alice", "192.0.2.1", Outcome::Failure), false),
            (login(2, 0, "alice", "192.0.2.1", Outcome::Success), true),
        ],
    );
    let failures = |user: &str, n: u64| -> Vec<Event> {
        (0..n)
            .map(|idx| login(idx, idx as i64 * 10, user, "192.0.2.1", Outcome::Failure))
            .collect()
    };
    // Two failures then a success: not enough.
    let mut events = failures("bob", 2);
    events.push(login(50, 40, "bob", "192.0.2.1", Outcome::Success));
    assert!(fired(vec![rule.clone()], &events).is_empty());
    // Three failures of alice, then bob's success, then alice's: alice's sequence.
    let mut events = failures("alice", 3);
    events.push(login(60, 50, "bob", "192.0.2.1", Outcome::Success));
    assert!(fired(vec![rule.clone()], &events).is_empty());
    events.push(login(61, 60, "alice", "192.0.2.1", Outcome::Success));
    assert_eq!(fired(vec![rule], &events), [config.id]);
}

#[test]
fn generate_makes_the_named_rules_alerting_rules_too() {
    let yaml = FAILED_LOGINS.replacen("level: high\n", "level: high\ngenerate: true\n", 1);
    let configs = compile_default(&yaml).unwrap();
    let ids: Vec<&str> = configs.iter().map(|config| config.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "9c1d0a6e-4f6b-4e0e-8f5e-2d7c3b1a0e11",
            "3a3f2c1d-0e9b-4a8c-9d7e-6f5a4b3c2d10"
        ]
    );
    assert_eq!(configs[1].severity, Severity::Low);
    for config in &configs {
        round_trip(config);
    }
    // Without `generate`, a rule no correlation names is an alerting rule of its own.
    let two = format!("{SERVICE_ACCOUNT}---\n{}", SUSPICIOUS_NAMES);
    assert_eq!(compile_default(&two).unwrap().len(), 2);
}

#[test]
fn the_old_aggregation_is_a_threshold() {
    let (config, rule) = load(
        r"
title: Logins from one address
logsource:
    product: strongswan
detection:
    selection:
        event.action: auth-failure
    timeframe: 2m
    condition: selection | count(User) by SourceIp >= 4
",
    );
    // No id: a slug of the title.
    assert_eq!(config.id, "logins-from-one-address");
    assert_eq!(config.group_by, ["source.ip"]);
    let KindConfig::Threshold {
        window,
        threshold,
        distinct,
        ..
    } = &config.kind
    else {
        panic!("{config:?}")
    };
    assert_eq!(
        (window.as_str(), *threshold, distinct.as_deref()),
        ("2m", 4, Some("user.name"))
    );
    check_matches(
        threshold_filter(&rule),
        &[(login(1, 0, "a", "192.0.2.1", Outcome::Failure), true)],
    );
    let (config, _) = load(
        r"
title: x
id: x
logsource: { product: strongswan }
detection:
    selection: { event.action: auth-failure }
    timeframe: 1m
    condition: selection | count() > 9
",
    );
    assert!(matches!(
        config.kind,
        KindConfig::Threshold {
            threshold: 10,
            distinct: None,
            ..
        }
    ));
}

#[test]
fn keywords_search_the_original_line() {
    let (_, rule) = load(
        r"
title: Keyword search
id: kw
logsource:
    product: strongswan
detection:
    keywords:
        - 'EAP method'
        - 'no shared key*for'
    unrelated:
        '|all':
            - alpha
            - beta
    condition: keywords or unrelated
",
    );
    let with_line = |seq, line: &str| {
        let mut event = login(seq, 0, "alice", "192.0.2.1", Outcome::Failure);
        event.original = line.to_owned();
        event
    };
    check_matches(
        threshold_filter(&rule),
        &[
            (
                with_line(1, "charon: 09[IKE] eap method EAP_MD5 failed"),
                true,
            ),
            (with_line(2, "no shared key found for 'alice'"), true),
            (with_line(3, "no shared secret found"), false),
            (with_line(4, "beta and ALPHA"), true),
            (with_line(5, "alpha only"), false),
        ],
    );
}

/// The filter table that `selection` (YAML lines of one selection map) compiles to.
#[track_caller]
fn check_filter(selection: &str, expect: &str) {
    let yaml = format!(
        "title: t\nid: t\nlogsource:\n    product: tunnelwatch\ndetection:\n    selection:\n{}\n    condition: selection\n",
        selection
            .lines()
            .map(|line| format!("        {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let configs = compile_default(&yaml).unwrap_or_else(|error| panic!("{yaml}\n→ {error}"));
    let KindConfig::Threshold { filter, .. } = &configs[0].kind else {
        panic!("{configs:?}")
    };
    let expect: BTreeMap<String, toml::Value> = toml::from_str(expect).unwrap();
    assert_eq!(
        filter,
        &expect,
        "{selection}\n→ {}",
        toml::to_string(filter).unwrap()
    );
}

#[test]
fn values_and_modifiers_become_filter_conditions() {
    check_filter("User: alice", r#""user.name" = { regex = '(?is)^alice$' }"#);
    check_filter("SourcePort: 4500", r#""source.port" = "4500""#);
    check_filter(
        "source.port: [500, 4500]",
        r#""source.port" = ["500", "4500"]"#,
    );
    check_filter("User|cased: Alice", r#""user.name" = "Alice""#);
    check_filter("User: ''", r#""user.name" = """#);
    check_filter(
        "User: ['a*', 'b?c']",
        r#""user.name" = { regex = '(?is)(?:^a.*$|^b.c$)' }"#,
    );
    check_filter(
        "User|contains: 'x\\*y'",
        r#""user.name" = { regex = '(?is)x\*y' }"#,
    );
    check_filter(
        "User|endswith: '.svc'",
        r#""user.name" = { regex = '(?is)\.svc$' }"#,
    );
    // `\\` is one backslash, `\\*` a backslash then a wildcard, `\\\*` a backslash and a star.
    check_filter(
        r"User: 'a\\*'",
        r#""user.name" = { regex = '(?is)^a\\.*$' }"#,
    );
    check_filter(
        r"User: 'a\\\*'",
        r#""user.name" = { regex = '(?is)^a\\\*$' }"#,
    );
    check_filter(
        r"User: 'C:\Win'",
        r#""user.name" = { regex = '(?is)^C:\\Win$' }"#,
    );
    check_filter("User: null", r#""user.name" = { exists = false }"#);
    check_filter("User|exists: true", r#""user.name" = { exists = true }"#);
    check_filter("SourcePort|gt: 1024", r#""source.port" = { gt = 1024 }"#);
    check_filter("SourcePort|lte: 1.5", r#""source.port" = { lte = 1.5 }"#);
    check_filter(
        "SourceIp|cidr: [10.0.0.0/8, '2001:db8::/32']",
        r#"any_of = [{ "source.ip" = { cidr = "10.0.0.0/8" } }, { "source.ip" = { cidr = "2001:db8::/32" } }]"#,
    );
    check_filter(
        "User|re|i: '^svc-'",
        r#""user.name" = { regex = '(?i)^svc-' }"#,
    );
    check_filter("User|re: '^svc-'", r#""user.name" = { regex = '^svc-' }"#);
    check_filter(
        "User|contains|all: [a, b]",
        r#""user.name" = { regex = '(?is)a' }
all_of = [{ "user.name" = { regex = '(?is)b' } }]"#,
    );
    check_filter(
        "User|neq: root",
        r#"none_of = [{ "user.name" = { regex = '(?is)^root$' } }]"#,
    );
    check_filter(
        "User: alice\nevent.action: auth-failure",
        r#""user.name" = { regex = '(?is)^alice$' }
"event.action" = { regex = '(?is)^auth\-failure$' }"#,
    );
}

#[test]
fn a_mapping_file_maps_fields_and_logsources() {
    let mapping = FieldMapping::from_toml(
        r#"
[fields]
Account = ["user.name", "vpn.eap_id"]
[logsource.product]
ipsec = { "observer.product" = ["strongswan", "libreswan"] }
"#,
    )
    .unwrap();
    let yaml = r"
title: t
id: t
logsource:
    product: ipsec
detection:
    selection:
        Account: alice
    condition: selection
";
    let configs = compile(yaml, &mapping).unwrap();
    let KindConfig::Threshold { filter, window, .. } = &configs[0].kind else {
        panic!("{configs:?}")
    };
    // Without [plain_rules], the built-in window.
    assert_eq!(window, "5m");
    let expect: BTreeMap<String, toml::Value> = toml::from_str(
        r#""observer.product" = ["strongswan", "libreswan"]
any_of = [{ "user.name" = { regex = '(?is)^alice$' } }, { "vpn.eap_id" = { regex = '(?is)^alice$' } }]"#,
    )
    .unwrap();
    assert_eq!(filter, &expect);
    let rule = round_trip(&configs[0]);
    check_matches(
        threshold_filter(&rule),
        &[
            (
                libreswan(login(1, 0, "Alice", "192.0.2.1", Outcome::Success)),
                true,
            ),
            (login(2, 0, "bob", "192.0.2.1", Outcome::Success), false),
        ],
    );
    // This mapping has no keywords, no `User` and no `windows`.
    for (yaml, expect) in [
        (
            yaml.replace("Account: alice", "User: alice"),
            "field `User` is not in the field mapping",
        ),
        (
            yaml.replace(
                "    selection:\n        Account: alice",
                "    selection:\n        - alice",
            ),
            "keyword (full-text) selections are not supported",
        ),
        (
            yaml.replace("ipsec", "windows"),
            "logsource product `windows` is not in the field mapping (it has: ipsec)",
        ),
    ] {
        let error = compile(&yaml, &mapping).unwrap_err().to_string();
        assert!(error.starts_with("sigma rule t: "), "{error}");
        assert!(error.contains(expect), "{error}");
    }
}

#[test]
fn the_built_in_mapping_is_valid_and_bad_mappings_are_refused() {
    let mapping = FieldMapping::from_toml(DEFAULT_MAPPING).unwrap();
    assert_eq!(mapping.fields_of("TargetUserName").unwrap(), ["user.name"]);
    assert_eq!(mapping.fields_of("source_ip").unwrap(), ["source.ip"]);
    assert_eq!(mapping.keywords(), Some("event.original"));
    for (text, expect) in [
        (
            "[fields]\nUser = \"user.nme\"",
            "fields.User: unknown field",
        ),
        ("[fields]\nUser = \"rule.id\"", "not a field of events"),
        ("[fields]\nUser = []", "a field name or a list of 1 to 16"),
        ("[fields]\nUser = [1]", "a list of field names is text"),
        ("keywords = \"nope\"", "keywords: unknown field"),
        ("[plain_rules]\nwindow = \"forever\"", "plain_rules.window"),
        (
            "[plain_rules]\ngroup_by = [\"x.y\"]",
            "plain_rules.group_by",
        ),
        (
            "[logsource.product]\nx = { \"user.name\" = { regex = \"(\" } }",
            "logsource.product.x: user.name: regex",
        ),
        ("[logsource.os]\nx = {}", "unknown field `os`"),
        ("colour = \"red\"", "unknown field `colour`"),
    ] {
        let error = FieldMapping::from_toml(text).unwrap_err().to_string();
        assert!(error.starts_with("sigma field mapping: "), "{error}");
        assert!(error.contains(expect), "{text}\n→ {error}");
    }
    let huge = format!("# {}", "x".repeat(MAX_MAPPING_BYTES));
    assert!(
        FieldMapping::from_toml(&huge)
            .unwrap_err()
            .to_string()
            .contains("bytes is more than")
    );
}

/// A rule with `detection` (indented lines of the detection map).
fn rule_with(detection: &str) -> String {
    format!(
        "title: Bad rule\nid: bad-rule\nlogsource:\n    product: strongswan\ndetection:\n{}\n",
        detection
            .lines()
            .map(|line| format!("    {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

#[test]
fn conditions_follow_sigmas_precedence() {
    // `a or b and not c` is `a or (b and (not c))`.
    let (_, rule) = load(&rule_with(
        "a: {User: alice}\nb: {User: bob}\nc: {event.outcome: failure}\ncondition: a or b and not c",
    ));
    let filter = threshold_filter(&rule);
    check_matches(
        filter,
        &[
            (login(1, 0, "alice", "192.0.2.1", Outcome::Failure), true),
            (login(2, 0, "bob", "192.0.2.1", Outcome::Failure), false),
            (login(3, 0, "bob", "192.0.2.1", Outcome::Success), true),
            (login(4, 0, "carol", "192.0.2.1", Outcome::Success), false),
        ],
    );
    // `all of them` leaves out identifiers starting with `_`; a list of conditions is an OR.
    let (_, rule) = load(&rule_with(
        "a: {User: 'a*'}\nb: {User: '*e'}\n_c: {User: nobody}\ncondition: [all of them, 'not 1 of them']",
    ));
    check_matches(
        threshold_filter(&rule),
        &[
            (login(1, 0, "alice", "192.0.2.1", Outcome::Failure), true),
            (login(2, 0, "anna", "192.0.2.1", Outcome::Failure), false),
            (login(3, 0, "bob", "192.0.2.1", Outcome::Failure), true),
        ],
    );
    // Nested tables stay within the depth filters allow.
    let (_, rule) = load(&rule_with(
        "a: {User: a}\nb: [{User: b}, {SourceIp: 192.0.2.9}]\ncondition: not (a or not (b and not a))",
    ));
    check_matches(
        threshold_filter(&rule),
        &[
            (login(1, 0, "b", "192.0.2.1", Outcome::Failure), true),
            (login(2, 0, "x", "192.0.2.9", Outcome::Failure), true),
            (login(3, 0, "x", "192.0.2.1", Outcome::Failure), false),
            (login(4, 0, "a", "192.0.2.9", Outcome::Failure), false),
        ],
    );
}

#[test]
fn wildcards_glob_identifiers() {
    for (pattern, name, expect) in [
        ("selection*", "selection_a", true),
        ("selection*", "selection", true),
        ("selection*", "filter", false),
        ("*_a", "selection_a", true),
        ("s*a*b", "sxxaxxb", true),
        ("s*a*b", "sxxaxxbx", false),
        ("*", "anything", true),
        ("exact", "exact", true),
        ("exact", "exactly", false),
    ] {
        assert_eq!(condition::glob(pattern, name), expect, "{pattern} {name}");
    }
}

mod refused;
