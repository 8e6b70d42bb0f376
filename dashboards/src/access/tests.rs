//! Access against a real store in a temporary directory: every change lands in the audit
//! trail first, and is refused when the trail cannot take it.

use super::*;

fn open(dir: &Path) -> (Access, store::Store) {
    open_with(dir, Settings::default())
}

fn open_with(dir: &Path, settings: Settings) -> (Access, store::Store) {
    let store = store::Store::open(&store::Config::for_dir(dir)).unwrap();
    (Access::open(dir, settings, store.clone()).unwrap(), store)
}

fn cli() -> Actor {
    Actor::cli("root")
}

fn now() -> Timestamp {
    Timestamp::now()
}

fn audit_actions(store: &store::Store) -> Vec<(String, String, String)> {
    store
        .audit_entries()
        .unwrap()
        .into_iter()
        .map(|entry| {
            (
                entry.draft.action,
                entry.draft.outcome.unwrap_or_default(),
                entry.draft.target.unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn accounts_persist_and_every_change_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (access, store) = open(dir.path());
    assert!(
        access.setup_token().is_some(),
        "no account yet: a setup token"
    );
    access
        .add_user(&cli(), "Alice", Role::Admin, "correct horse battery")
        .unwrap();
    assert_eq!(access.setup_token(), None, "used up by the first account");
    access
        .add_user(&cli(), "bob", Role::Analyst, "bob's long password")
        .unwrap();
    let error = access
        .add_user(&cli(), "ALICE", Role::Viewer, "another password")
        .unwrap_err();
    assert!(error.to_string().contains("exists"), "{error}");
    access.set_disabled(&cli(), "bob", true).unwrap();
    access.set_disabled(&cli(), "bob", false).unwrap();
    access
        .set_password(&cli(), "bob", "bob's new password")
        .unwrap();
    let uri = access.enrol_totp(&cli(), "bob").unwrap();
    assert!(
        uri.starts_with("otpauth://totp/tunnelwatch:bob?secret="),
        "{uri}"
    );
    let token = access
        .create_token(
            &cli(),
            "ci",
            Grant::Role {
                role: Role::Analyst,
            },
            Some(30),
        )
        .unwrap();
    access.revoke_token(&cli(), "ci").unwrap();
    // The last admin cannot be disabled.
    let error = access.set_disabled(&cli(), "alice", true).unwrap_err();
    assert!(error.to_string().contains("last enabled admin"), "{error}");

    let users = access.users();
    assert_eq!(
        users
            .iter()
            .map(|user| (user.name.as_str(), user.role, user.totp))
            .collect::<Vec<_>>(),
        [("alice", Role::Admin, false), ("bob", Role::Analyst, true)]
    );
    assert!(access.tokens()[0].revoked.is_some());
    // Reopened from the file: the same accounts; the token's secret is nowhere in it.
    let text = std::fs::read_to_string(dir.path().join(ACCOUNTS_FILE)).unwrap();
    assert!(!text.contains(&token) && !text.contains("correct horse"));
    drop(access);
    let reopened = Access::open(dir.path(), Settings::default(), store.clone()).unwrap();
    assert_eq!(reopened.users(), users);
    assert_eq!(reopened.setup_token(), None);

    let actions = audit_actions(&store);
    let expected: Vec<(String, String, String)> = [
        ("account.add", "alice"),
        ("account.add", "bob"),
        ("account.disable", "bob"),
        ("account.enable", "bob"),
        ("account.password", "bob"),
        ("account.totp", "bob"),
        ("token.create", "ci"),
        ("token.revoke", "ci"),
    ]
    .into_iter()
    .map(|(action, target)| (action.to_owned(), "success".to_owned(), target.to_owned()))
    .collect();
    assert_eq!(actions, expected, "refused changes leave no entry");
    let entry = &store.audit_entries().unwrap()[0];
    assert_eq!(entry.draft.actor.as_deref(), Some("cli:root"));
    assert_eq!(entry.draft.role.as_deref(), Some("admin"));
    assert_eq!(
        entry.draft.details.as_deref(),
        Some(r#"{"account":"alice","role":"admin"}"#)
    );
    assert_eq!(
        entry.draft.message,
        "cli:root added account alice with role admin"
    );
}

#[test]
fn tokens_work_until_revoked_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let (access, _store) = open(dir.path());
    let token = access
        .create_token(
            &cli(),
            "grafana",
            Grant::Role { role: Role::Viewer },
            Some(1),
        )
        .unwrap();
    let principal = access
        .authenticate(Credential::Bearer(&token), now())
        .unwrap();
    assert_eq!(principal.role(), Some(Role::Viewer));
    assert_eq!(principal.actor(None).name, "token:grafana");
    // A day later it has expired.
    let tomorrow = now()
        .checked_add(jiff::SignedDuration::from_hours(25))
        .unwrap();
    assert_eq!(
        access.authenticate(Credential::Bearer(&token), tomorrow),
        None
    );
    // Near misses are nobody.
    let mut altered = token.clone();
    altered.pop();
    altered.push('x');
    assert_eq!(
        access.authenticate(Credential::Bearer(&altered), now()),
        None
    );
    assert_eq!(access.authenticate(Credential::Bearer(""), now()), None);
    access.revoke_token(&cli(), "grafana").unwrap();
    assert_eq!(access.authenticate(Credential::Bearer(&token), now()), None);
    // The name can be used again once revoked; a live one cannot be shadowed.
    let gateway = access
        .create_token(
            &cli(),
            "grafana",
            Grant::Gateway {
                gateway: "GW-A".to_owned(),
                client_subject: None,
            },
            None,
        )
        .unwrap();
    let principal = access
        .authenticate(Credential::Bearer(&gateway), now())
        .unwrap();
    assert_eq!(
        principal.role(),
        None,
        "a gateway credential has no console role"
    );
    assert_eq!(
        principal,
        Principal::Token {
            name: "grafana".to_owned(),
            grant: Grant::Gateway {
                gateway: "gw-a".to_owned(),
                client_subject: None
            }
        }
    );
    let error = access
        .create_token(&cli(), "grafana", Grant::Role { role: Role::Admin }, None)
        .unwrap_err();
    assert!(error.to_string().contains("revoke it first"), "{error}");
    for days in [0, 4000] {
        let error = access
            .create_token(&cli(), "x", Grant::Role { role: Role::Admin }, Some(days))
            .unwrap_err();
        assert!(error.to_string().contains("--expires-days"), "{error}");
    }
}

#[test]
fn login_starts_a_session_that_ends_with_logout_or_a_disabled_account() {
    let dir = tempfile::tempdir().unwrap();
    let (access, store) = open(dir.path());
    access
        .add_user(&cli(), "alice", Role::Admin, "correct horse battery")
        .unwrap();
    access
        .add_user(&cli(), "carol", Role::Responder, "carol's long password")
        .unwrap();
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    let (cookie, session) = access
        .login("Alice", "correct horse battery", None, Some(ip), now())
        .unwrap();
    let principal = access
        .authenticate(Credential::Cookie(&cookie), now())
        .unwrap();
    assert_eq!(principal.role(), Some(Role::Admin));
    let Principal::User { session: seen, .. } = &principal else {
        panic!("{principal:?}")
    };
    assert_eq!(seen.csrf_token, session.csrf_token);
    // A new id at every login.
    let (second, _) = access
        .login("alice", "correct horse battery", None, Some(ip), now())
        .unwrap();
    assert_ne!(cookie, second);
    assert!(access.logout(&cookie, Some(ip)).unwrap());
    assert_eq!(
        access.authenticate(Credential::Cookie(&cookie), now()),
        None
    );
    assert!(!access.logout(&cookie, Some(ip)).unwrap(), "already ended");

    // Disabled mid-session: the next request is nobody.
    let (carol, _) = access
        .login("carol", "carol's long password", None, Some(ip), now())
        .unwrap();
    assert!(
        access
            .authenticate(Credential::Cookie(&carol), now())
            .is_some()
    );
    access.set_disabled(&cli(), "carol", true).unwrap();
    assert_eq!(access.authenticate(Credential::Cookie(&carol), now()), None);
    assert_eq!(
        access.login("carol", "carol's long password", None, Some(ip), now()),
        Err(LoginRefusal::BadCredentials)
    );

    let logins: Vec<_> = audit_actions(&store)
        .into_iter()
        .filter(|(action, ..)| action == "login" || action == "logout")
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("login", "success", "alice"),
        ("login", "success", "alice"),
        ("logout", "success", "alice"),
        ("login", "success", "carol"),
        ("login", "failure", "carol"),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect();
    assert_eq!(logins, expected);
    let entries = store.audit_entries().unwrap();
    let failure = entries.last().unwrap();
    assert_eq!(failure.draft.source_ip, Some(ip));
    assert_eq!(
        failure.draft.message,
        "login of carol refused: the account is disabled"
    );
}

#[test]
fn wrong_passwords_are_throttled_and_unknown_names_answer_alike() {
    let dir = tempfile::tempdir().unwrap();
    let (access, _store) = open(dir.path());
    access
        .add_user(&cli(), "alice", Role::Viewer, "correct horse battery")
        .unwrap();
    let ip: IpAddr = "198.51.100.9".parse().unwrap();
    let at = now();
    for _ in 0..4 {
        assert_eq!(
            access.login("alice", "wrong password!", None, Some(ip), at),
            Err(LoginRefusal::BadCredentials)
        );
    }
    // The fifth attempt, even with the right password, must wait.
    let refused = access.login("alice", "correct horse battery", None, Some(ip), at);
    assert!(
        matches!(refused, Err(LoginRefusal::Throttled(_))),
        "{refused:?}"
    );
    assert_eq!(
        access
            .counters()
            .logins_throttled
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // Once the wait is over, the right password works.
    let later = at.checked_add(jiff::SignedDuration::from_secs(2)).unwrap();
    assert!(
        access
            .login("alice", "correct horse battery", None, Some(ip), later)
            .is_ok()
    );
    // An unknown or unusable name is the same refusal as a wrong password.
    let other: IpAddr = "203.0.113.5".parse().unwrap();
    for name in ["mallory", "bad\u{1b}name", &"n".repeat(500)] {
        assert_eq!(
            access.login(name, "whatever password", None, Some(other), at),
            Err(LoginRefusal::BadCredentials)
        );
    }
    let huge = "p".repeat(10_000);
    assert_eq!(
        access.login("alice", &huge, None, Some(other), at),
        Err(LoginRefusal::BadCredentials)
    );
}

#[test]
fn a_second_factor_is_needed_once_enrolled_or_required_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        require_totp_for: Some(Role::Responder),
        ..Settings::default()
    };
    let (access, _store) = open_with(dir.path(), settings);
    access
        .add_user(&cli(), "rita", Role::Responder, "rita's long password")
        .unwrap();
    access
        .add_user(&cli(), "vic", Role::Viewer, "vic's long password")
        .unwrap();
    let at = now();
    assert_eq!(
        access.login("rita", "rita's long password", None, None, at),
        Err(LoginRefusal::TotpNotEnrolled)
    );
    assert!(
        access
            .login("vic", "vic's long password", None, None, at)
            .is_ok()
    );
    let uri = access.enrol_totp(&cli(), "rita").unwrap();
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap();
    assert_eq!(
        access.login("rita", "rita's long password", None, None, at),
        Err(LoginRefusal::TotpNeeded { wrong_code: false })
    );
    let code = totp_code(secret, at).unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    assert_eq!(
        access.login("rita", "rita's long password", Some(wrong), None, at),
        Err(LoginRefusal::TotpNeeded { wrong_code: true })
    );
    assert!(
        access
            .login("rita", "rita's long password", Some(&code), None, at)
            .is_ok()
    );
    // A code is accepted once.
    assert_eq!(
        access.login("rita", "rita's long password", Some(&code), None, at),
        Err(LoginRefusal::TotpNeeded { wrong_code: true })
    );
    // A wrong password with a right code is still a wrong password.
    let next = at.checked_add(jiff::SignedDuration::from_secs(30)).unwrap();
    let next_code = totp_code(secret, next).unwrap();
    assert_eq!(
        access.login("rita", "not her password", Some(&next_code), None, next),
        Err(LoginRefusal::BadCredentials)
    );
}

#[test]
fn a_change_the_audit_trail_cannot_record_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&store::Config::for_dir(dir.path())).unwrap();
    let access = Access::open(dir.path(), Settings::default(), store.clone()).unwrap();
    access
        .add_user(&cli(), "alice", Role::Admin, "correct horse battery")
        .unwrap();
    let before = std::fs::read(dir.path().join(ACCOUNTS_FILE)).unwrap();
    // A read-only store cannot append to the audit trail.
    let read_only = store::Store::open_read_only(&store::Config::for_dir(dir.path())).unwrap();
    let blind = Access::open(dir.path(), Settings::default(), read_only).unwrap();
    let error = blind
        .add_user(&cli(), "mallory", Role::Admin, "mallory's password")
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("the audit trail cannot record this, so it was refused"),
        "{error}"
    );
    assert_eq!(
        crate::ApiError::from(error).status,
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        blind
            .create_token(&cli(), "t", Grant::Role { role: Role::Admin }, None)
            .is_err()
    );
    let error = blind
        .set_password(&cli(), "alice", "a new password here")
        .unwrap_err();
    assert_eq!(
        crate::ApiError::from(error).status,
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        std::fs::read(dir.path().join(ACCOUNTS_FILE)).unwrap(),
        before
    );
    assert_eq!(blind.users().len(), 1);
    // A login that cannot be audited does not sign in.
    assert!(matches!(
        blind.login("alice", "correct horse battery", None, None, now()),
        Err(LoginRefusal::Unavailable(_))
    ));
}

#[test]
fn a_damaged_accounts_file_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&store::Config::for_dir(dir.path())).unwrap();
    let path = dir.path().join(ACCOUNTS_FILE);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"{\"version\":1,\"users\":[{\"name\":").unwrap();
    let error = Access::open(dir.path(), Settings::default(), store).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("corrupt accounts file {}", path.display())),
        "{error}"
    );
}
