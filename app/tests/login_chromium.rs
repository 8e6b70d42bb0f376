//! Signing in with a real browser: headless Chromium, driven over the DevTools protocol,
//! against the real server binary. Sign in and out, a second factor, throttling after wrong
//! passwords, and the demo's anonymous banner.

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Daemon, wait_for};
use testbed::browser::{Browser, Page};

const PASSWORD: &str = "a long enough password";
const WAIT: Duration = Duration::from_secs(20);

fn add_user(data: &str, name: &str, role: &str) {
    let mut child = Command::new(support::binary())
        .args([
            "user",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--data",
            data,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}

fn sign_in(page: &mut Page<'_>, base: &str, name: &str, password: &str) {
    page.goto(&format!("{base}/login")).unwrap();
    page.fill("name", name).unwrap();
    page.fill("password", password).unwrap();
    page.click("login-button").unwrap();
}

/// Waits for the console, signed in: its header names `who` (name and role).
fn signed_in_as(page: &mut Page<'_>, who: &str) {
    page.wait_for("location.pathname === '/'", WAIT).unwrap();
    page.wait_for(
        &format!(
            "document.getElementById('whoami-name') !== null && document.getElementById('whoami-name').textContent === {}",
            serde_json::json!(who)
        ),
        WAIT,
    )
    .unwrap();
}

fn message(page: &mut Page<'_>) -> String {
    page.eval("document.getElementById('login-message').textContent")
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn sign_in_out_second_factor_and_throttling_in_chromium() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let data_arg = data.to_str().unwrap();
    add_user(data_arg, "alice", "analyst");
    add_user(data_arg, "rita", "responder");
    add_user(data_arg, "bob", "viewer");
    let uri = support::run(&["user", "totp", "rita", "--data", data_arg]);
    assert!(uri.status.success());
    let uri = String::from_utf8(uri.stdout).unwrap();
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|rest| rest.split('&').next())
        .unwrap()
        .to_owned();
    let port = support::free_port();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{data_arg}\"\n\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\nrequire_totp_for = \"responder\"\n"
        ),
    )
    .unwrap();
    let _server = support::start_server(&config, port, &work.path().join("server.log"));
    let base = format!("http://127.0.0.1:{port}");
    let mut browser = Browser::launch(&work.path().join("profile")).unwrap();
    let mut page = browser.page().unwrap();

    // Not signed in: the console sends the browser to the sign-in page.
    page.goto(&format!("{base}/")).unwrap();
    page.wait_for("location.pathname === '/login'", WAIT)
        .unwrap();

    // Sign in: the console with the sessions table and who is signed in.
    sign_in(&mut page, &base, "alice", PASSWORD);
    signed_in_as(&mut page, "alice (analyst)");
    page.wait_for(
        "document.querySelector('#sessions tbody td') !== null && document.getElementById('status').textContent.startsWith('live')",
        WAIT,
    )
    .unwrap();
    // The session cookie is out of the page's reach (HttpOnly).
    assert_eq!(page.eval("document.cookie").unwrap(), "");

    // Sign out: back to the sign-in page, and the API answers 401 again.
    page.click("sign-out").unwrap();
    page.wait_for("location.pathname === '/login'", WAIT)
        .unwrap();
    let status = page
        .eval("fetch('/api/v1/sessions').then((response) => response.status)")
        .unwrap();
    assert_eq!(status, 401);

    // A responder needs the authenticator's code.
    sign_in(&mut page, &base, "rita", PASSWORD);
    page.wait_for("!document.getElementById('totp-row').hidden", WAIT)
        .unwrap();
    assert!(
        message(&mut page).contains("authenticator"),
        "{}",
        message(&mut page)
    );
    let code = dashboards::access::totp_code(&secret, jiff::Timestamp::now()).unwrap();
    page.fill("totp", &code).unwrap();
    page.click("login-button").unwrap();
    signed_in_as(&mut page, "rita (responder)");
    page.click("sign-out").unwrap();
    page.wait_for("location.pathname === '/login'", WAIT)
        .unwrap();

    // Five wrong passwords: then even the right one must wait.
    let mut messages = Vec::new();
    for _ in 0..5 {
        page.fill("password", "not the password").unwrap();
        page.fill("name", "bob").unwrap();
        page.eval("document.getElementById('login-message').textContent = ''")
            .unwrap();
        page.click("login-button").unwrap();
        page.wait_for(
            "document.getElementById('login-message').textContent !== ''",
            WAIT,
        )
        .unwrap();
        messages.push(message(&mut page));
    }
    assert_eq!(messages[0], "wrong name or password", "{messages:?}");
    page.fill("password", PASSWORD).unwrap();
    page.eval("document.getElementById('login-message').textContent = ''")
        .unwrap();
    page.click("login-button").unwrap();
    page.wait_for(
        "document.getElementById('login-message').textContent !== ''",
        WAIT,
    )
    .unwrap();
    let throttled = message(&mut page);
    assert!(
        throttled.starts_with("too many failed sign-ins"),
        "{throttled} after {messages:?}"
    );
    assert_eq!(
        page.eval("location.pathname").unwrap(),
        "/login",
        "not signed in"
    );
}

#[test]
fn the_demo_says_visitors_browse_anonymously_and_how_to_sign_in() {
    let work = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let log = work.path().join("demo.log");
    let _demo = Daemon::spawn(
        "demo",
        &[
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data",
            work.path().join("data").to_str().unwrap(),
        ],
        &log,
    );
    let base = format!("http://127.0.0.1:{port}");
    let password = wait_for("the demo's banner", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&log).ok()?;
        let after = text.split("sign in: admin / ").nth(1)?;
        after
            .split(|c: char| c == ')' || c.is_whitespace())
            .next()
            .map(str::to_owned)
    });
    let mut browser = Browser::launch(&work.path().join("profile")).unwrap();
    let mut page = browser.page().unwrap();
    page.goto(&format!("{base}/")).unwrap();
    page.wait_for("!document.getElementById('anonymous-banner').hidden", WAIT)
        .unwrap();
    let banner = page
        .eval("document.getElementById('anonymous-banner').textContent")
        .unwrap();
    assert!(
        banner
            .as_str()
            .unwrap()
            .contains("without signing in, as viewer"),
        "{banner}"
    );
    // The password in the banner signs in as admin.
    sign_in(&mut page, &base, "admin", &password);
    signed_in_as(&mut page, "admin (admin)");
    page.wait_for("document.getElementById('anonymous-banner').hidden", WAIT)
        .unwrap();
}
