//! Loading rule sets: the shipped rules, a rules directory, overrides, and bad files.

use super::*;

#[test]
fn the_shipped_rules_load() {
    let rules = load_rules(&Config::default()).unwrap();
    // All but new-api-path, which ships off.
    assert_eq!(rules.len(), DEFAULT_RULES.len() - 1);
    assert!(!rules.iter().any(|(rule, _)| rule.id == "new-api-path"));
    assert!(
        rules
            .iter()
            .all(|(_, origin)| matches!(origin, Origin::Shipped(_)))
    );
}

#[test]
fn a_rules_directory_adds_and_overrides_and_bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mine.toml"),
        "id = \"mine\"\nname = \"Mine\"\nkind = \"threshold\"\nwindow = \"1m\"\nthreshold = 2\n",
    )
    .unwrap();
    // The same id as a shipped rule replaces it; `enabled = false` turns it off.
    std::fs::write(
        dir.path().join("off.toml"),
        "id = \"login-without-session\"\nname = \"Off\"\nkind = \"threshold\"\nwindow = \"1m\"\nthreshold = 2\nenabled = false\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("README.md"), "not a rule").unwrap();
    let config = Config {
        rules_dir: Some(dir.path().to_owned()),
        ..Config::default()
    };
    let rules = load_rules(&config).unwrap();
    assert!(rules.iter().any(|(rule, _)| rule.id == "mine"));
    assert!(
        !rules
            .iter()
            .any(|(rule, _)| rule.id == "login-without-session")
    );
    assert_eq!(rules.len(), DEFAULT_RULES.len() - 1);

    for (name, text, expected) in [
        ("broken.toml", "id = \"x\"\nname = ", "broken.toml"),
        ("binary.toml", "\u{0}\u{1}\u{2}", "binary.toml"),
        (
            "unknown.toml",
            "id = \"u\"\nname = \"U\"\nkind = \"threshold\"\nwindow = \"1m\"\nthreshold = 2\nfilter = { \"nope\" = \"x\" }\n",
            "unknown field",
        ),
    ] {
        let bad = tempfile::tempdir().unwrap();
        std::fs::write(bad.path().join(name), text).unwrap();
        let error = load_rules(&Config {
            rules_dir: Some(bad.path().to_owned()),
            ..Config::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains(expected), "{name}: {error}");
    }
    let huge = tempfile::tempdir().unwrap();
    std::fs::write(
        huge.path().join("huge.toml"),
        "#".repeat(MAX_RULE_FILE_BYTES as usize + 1),
    )
    .unwrap();
    let error = load_rules(&Config {
        rules_dir: Some(huge.path().to_owned()),
        ..Config::default()
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("more than"), "{error}");
    let missing = load_rules(&Config {
        rules_dir: Some(dir.path().join("nope")),
        ..Config::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("cannot list the rules directory"),
        "{missing}"
    );
}
