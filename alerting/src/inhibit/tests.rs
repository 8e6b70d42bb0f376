//! Inhibition: what a source alert mutes, and what it leaves alone.

use super::*;
use crate::engine::tests::fired_row;

fn row(id: &str, rule: &str, labels: &[(&str, &str)]) -> AlertRecord {
    let mut row = fired_row();
    row.alert_id = id.to_owned();
    row.rule_id = rule.to_owned();
    row.labels = labels
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    row
}

#[test]
fn a_fleet_spike_mutes_the_per_user_spikes_and_nothing_else() {
    let rules = shipped();
    check(&rules).unwrap();
    let fleet = row("al-fleet", "auth-failure-spike-fleet", &[]);
    let user = row(
        "al-user",
        "auth-failure-spike-user",
        &[("user.name", "alice")],
    );
    let travel = row("al-travel", "impossible-travel", &[("user.name", "alice")]);
    let open = [fleet.clone()];
    assert_eq!(
        inhibited_by(&rules, &user, open.iter()).as_deref(),
        Some("al-fleet")
    );
    assert_eq!(inhibited_by(&rules, &travel, open.iter()), None);
    // No fleet alert open: nothing muted; the fleet alert never mutes itself.
    assert_eq!(inhibited_by(&rules, &user, [].iter()), None);
    assert_eq!(inhibited_by(&rules, &fleet, open.iter()), None);
}

#[test]
fn equal_labels_must_match() {
    let rules: Vec<InhibitConfig> = toml::from_str::<BTreeMap<String, Vec<InhibitConfig>>>(
        r#"
inhibit = [
  { source = { rule = "auth-failure-spike-gateway" }, target = { rule = "tunnel-down" }, equal = ["observer.hostname"] },
]
"#,
    )
    .unwrap()
    .remove("inhibit")
    .unwrap();
    check(&rules).unwrap();
    let source = row(
        "al-gw1",
        "auth-failure-spike-gateway",
        &[("observer.hostname", "gw1")],
    );
    let same = row("al-t1", "tunnel-down", &[("observer.hostname", "gw1")]);
    let other = row("al-t2", "tunnel-down", &[("observer.hostname", "gw2")]);
    let unlabelled = row("al-t3", "tunnel-down", &[]);
    let open = [source];
    assert!(inhibited_by(&rules, &same, open.iter()).is_some());
    assert!(inhibited_by(&rules, &other, open.iter()).is_none());
    assert!(inhibited_by(&rules, &unlabelled, open.iter()).is_none());
}

#[test]
fn bad_inhibit_rules_are_named() {
    for (text, expected) in [
        (
            r#"inhibit = [{ source = {}, target = { rule = "x" } }]"#,
            "need a matcher",
        ),
        (
            r#"inhibit = [{ source = { colour = "red" }, target = { rule = "x" } }]"#,
            "colour",
        ),
        (
            r#"inhibit = [{ source = { rule = [] }, target = { rule = "x" } }]"#,
            "empty list",
        ),
        (
            r#"inhibit = [{ source = { rule = "a" }, target = { rule = "x" }, equal = ["no.such"] }]"#,
            "no.such",
        ),
    ] {
        let rules = toml::from_str::<BTreeMap<String, Vec<InhibitConfig>>>(text)
            .unwrap()
            .remove("inhibit")
            .unwrap();
        let error = check(&rules).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
        assert!(error.contains("[[alerting.inhibit]] 1"), "{error}");
    }
    assert!(
        toml::from_str::<BTreeMap<String, Vec<InhibitConfig>>>(
            r#"inhibit = [{ source = { rule = "a" }, target = { rule = "x" }, also = 1 }]"#
        )
        .is_err()
    );
}
