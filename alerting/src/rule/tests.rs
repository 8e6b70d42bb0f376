//! Rules as written: what is accepted, and every refusal names the rule and the reason.

use super::*;

fn compile(text: &str) -> Result<Rule, String> {
    let config: RuleConfig = toml::from_str(text).map_err(|error| error.to_string())?;
    Rule::compile(&config).map_err(|error| error.to_string())
}

const BASE: &str =
    "id = \"r1\"\nname = \"R\"\nkind = \"threshold\"\nwindow = \"1m\"\nthreshold = 3\n";

#[test]
fn durations_are_read_and_bounded() {
    assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
    assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    for bad in [
        "",
        "m",
        "0s",
        "5",
        "5 min",
        "-1s",
        "31d",
        "99999999999999999999d",
        "1.5m",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn invalid_rules_are_refused_with_the_rule_and_the_reason() {
    for (text, expected) in [
        (
            format!("{BASE}filter = {{ \"no.such.field\" = \"x\" }}"),
            "unknown field",
        ),
        (
            format!("{BASE}group_by = [\"rule.id\"]"),
            "not a field of events",
        ),
        (BASE.replace("1m", "forever"), "window"),
        (BASE.replace("threshold = 3", "threshold = 0"), "at least 1"),
        (
            format!("{BASE}filter = {{ \"user.name\" = {{ regex = \"(a\" }} }}"),
            "regex",
        ),
        (
            format!("{BASE}filter = {{ \"user.name\" = {{ regex = \"\\\\w{{1000}}{{1000}}\" }} }}"),
            "regex",
        ),
        (
            format!("{BASE}filter = {{ \"source.ip\" = {{ cidr = \"10.0.0.0/33\" }} }}"),
            "address range",
        ),
        (
            format!("{BASE}filter = {{ \"user.name\" = {{ like = \"x\" }} }}"),
            "is not a condition",
        ),
        (
            format!("{BASE}filter = {{ \"user.name\" = [] }}"),
            "1 to 1000",
        ),
        (format!("{BASE}mitre = [\"1110\"]"), "MITRE"),
        (BASE.replace("r1", "bad id!"), "the id must be"),
        (
            BASE.replace("name = \"R\"", "name = \"  \""),
            "the name must be",
        ),
        (
            "id = \"s\"\nname = \"S\"\nkind = \"state\"\ncheck = \"weak_crypto\"\nweak_algorithms = [\"3DES CBC\"]".to_owned(),
            "not an algorithm name",
        ),
        (
            "id = \"s\"\nname = \"S\"\nkind = \"state\"\ncheck = \"weak_crypto\"\nweak_algorithms = []".to_owned(),
            "1 to 200 algorithms",
        ),
        (
            "id = \"s\"\nname = \"S\"\nkind = \"state\"\ncheck = \"weak_crypto\"\nlimit = 3".to_owned(),
            "settings of concurrent_sessions",
        ),
        (
            "id = \"s\"\nname = \"S\"\nkind = \"state\"\ncheck = \"concurrent_sessions\"".to_owned(),
            "needs limit",
        ),
        (
            "id = \"s\"\nname = \"S\"\nkind = \"state\"\ncheck = \"concurrent_sessions\"\nlimit = 0".to_owned(),
            "needs limit",
        ),
        (
            "id = \"s\"\nname = \"S\"\nkind = \"state\"\ncheck = \"concurrent_sessions\"\nlimit = 2\nmax_session_age = \"1y\"".to_owned(),
            "max_session_age",
        ),
        (
            "id = \"s\"\nname = \"S\"\nkind = \"state\"\ncheck = \"expired_certs\"".to_owned(),
            "not weak_crypto, concurrent_sessions or cert_expiry",
        ),
    ] {
        let error = compile(&text).unwrap_err();
        assert!(error.contains(expected), "{text}\n→ {error}");
        if !error.contains("bad id") && expected != "the id must be" {
            assert!(
                error.contains("rule `r1`") || error.contains("rule `s`"),
                "{error}"
            );
        }
    }
    // Unknown keys and kinds are refused by the parser, with the key.
    assert!(
        compile(&format!("{BASE}colour = \"red\""))
            .unwrap_err()
            .contains("colour")
    );
    assert!(
        compile(&BASE.replace("threshold\"", "sigma\""))
            .unwrap_err()
            .contains("sigma")
    );
}

#[test]
fn filters_match_what_they_say() {
    let rule = compile(&format!(
        "{BASE}filter = {{ \"event.action\" = [\"auth-failure\", \"auth-success\"], \"source.ip\" = {{ cidr = \"192.0.2.0/24\" }}, \"user.name\" = {{ not = {{ regex = \"^svc-\" }} }} }}"
    ))
    .unwrap();
    let Kind::Threshold(threshold) = &rule.kind else {
        panic!("threshold")
    };
    let event = |user: &str, ip: &str, outcome| crate::engine::tests::auth(1, 0, user, ip, outcome);
    assert!(
        threshold
            .filter
            .matches(&event("alice", "192.0.2.7", model::Outcome::Failure))
    );
    assert!(
        threshold
            .filter
            .matches(&event("alice", "::ffff:192.0.2.7", model::Outcome::Success))
    );
    assert!(
        !threshold
            .filter
            .matches(&event("svc-backup", "192.0.2.7", model::Outcome::Failure))
    );
    assert!(
        !threshold
            .filter
            .matches(&event("alice", "198.51.100.7", model::Outcome::Failure))
    );
}

#[test]
fn cidr_ranges_of_both_families() {
    let v4 = |text: &str| text.parse::<std::net::IpAddr>().unwrap();
    assert!(in_cidr(v4("10.1.2.3"), v4("10.0.0.0"), 8));
    assert!(!in_cidr(v4("11.1.2.3"), v4("10.0.0.0"), 8));
    assert!(in_cidr(v4("1.2.3.4"), v4("0.0.0.0"), 0));
    assert!(in_cidr(v4("2001:db8::1"), v4("2001:db8::"), 32));
    assert!(!in_cidr(v4("2001:db9::1"), v4("2001:db8::"), 32));
    assert!(!in_cidr(v4("10.0.0.1"), v4("::"), 0));
}
