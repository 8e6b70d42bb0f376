//! The console in a real browser: headless Chromium loads the page from a real server and
//! runs its JavaScript; the rendered DOM must show the sessions and failures in the store, and
//! a hostile identity must arrive as text, not markup.
//!
//! Needs Debian's `chromium` (scripts/test.sh installs it).

#![cfg(feature = "server")]
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Daemon, get_json, wait_for};

#[test]
fn the_console_renders_sessions_and_failures() {
    // Fails, saying how to install it, when there is no browser.
    testbed::chromium::binary();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/testdata/charon");
    let hostile = work.path().join("hostile.log");
    std::fs::write(
        &hostile,
        "Nov 25 09:40:00 09[IKE] <rw-psk|900> tried 1 shared key for 'gw' - '<img src=x onerror=alert(1)>', but MAC mismatched\n",
    )
    .unwrap();
    let specs = [
        format!("charon:{}", fixtures.join("psk-ok.log").display()),
        format!("charon:{}", fixtures.join("psk-wrong.log").display()),
        format!("charon:{}", fixtures.join("dpd-lost.log").display()),
        format!("charon:{}", hostile.display()),
    ];
    let mut args = vec![
        "ingest",
        "--data",
        data.to_str().unwrap(),
        "--hostname",
        "gw-console",
    ];
    args.extend(specs.iter().map(String::as_str));
    let output = support::run(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let port = support::free_port();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\ndata_dir = \"{}\"\n[dashboards]\nlisten = \"127.0.0.1:{port}\"\nanonymous_role = \"analyst\"\nallow_unauthenticated_ingest = true\n",
            data.display()
        ),
    )
    .unwrap();
    let server = Daemon::spawn(
        "server",
        &["server", "--config", config.to_str().unwrap()],
        &work.path().join("server.log"),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the server", Duration::from_secs(20), || {
        get_json(&format!("{base}/healthz"))
    });

    let dom = testbed::chromium::rendered(&work.path().join("profile"), &format!("{base}/"));
    assert!(
        dom.contains("client1@psk.vpn.test"),
        "no session user in the rendered page:\n{dom}"
    );
    assert!(
        dom.contains("client2@psk.vpn.test"),
        "no failure in the rendered page:\n{dom}"
    );
    assert!(dom.contains("psk_mismatch"), "{dom}");
    assert!(
        dom.contains(">lost<"),
        "the dead-peer session shows as lost:\n{dom}"
    );
    assert!(dom.contains("gw-console"), "{dom}");
    assert!(
        dom.contains("live · updated"),
        "the page reached the API:\n{dom}"
    );
    // The identity is text: escaped in the DOM, no <img> element created from it.
    assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    assert!(
        !dom.contains("<img src=\"x\""),
        "markup from a log line reached the DOM:\n{dom}"
    );
    server.stop();
}
