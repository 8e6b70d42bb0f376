//! Headless Chromium for the console's end-to-end tests: the DOM of a page once its scripts
//! ran. Debian's `chromium` package (`scripts/test.sh` installs it); a missing browser is a
//! failure that says so, never a skip.

use std::path::Path;
use std::process::Command;

/// The browser's command name; panics with the way to install it when there is none.
pub fn binary() -> &'static str {
    ["chromium", "chromium-browser"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|output| output.status.success())
        })
        .unwrap_or_else(|| {
            panic!("chromium is not installed (scripts/test.sh installs Debian's chromium package)")
        })
}

/// How every test runs Chromium: headless, as root in a container (no sandbox), quiet (no
/// background traffic, first-run pages or updates).
pub const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The arguments that make Chromium print the DOM of `url` after up to ten seconds of its
/// scripts' (virtual) time, with a throwaway profile in `profile`.
pub fn dump_dom_args(profile: &Path, url: &str) -> Vec<String> {
    HEADLESS
        .into_iter()
        .chain(["--virtual-time-budget=10000"])
        .map(str::to_owned)
        .chain([
            format!("--user-data-dir={}", profile.display()),
            "--dump-dom".to_owned(),
            url.to_owned(),
        ])
        .collect()
}

/// The DOM of `url` as Chromium rendered it in this network namespace.
pub fn rendered(profile: &Path, url: &str) -> String {
    let mut command = Command::new(binary());
    command.args(dump_dom_args(profile, url));
    dom_of(command)
}

/// Runs a prepared Chromium command (built with [`dump_dom_args`], e.g. inside a namespace)
/// and returns the DOM it printed.
pub fn dom_of(mut command: Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run chromium: {error}"));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The serialised inner HTML of the element with this id, up to the end of its table or
/// definition list (the console's sections).
pub fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page:\n{dom}"));
    let rest = &dom[start..];
    let end = rest
        .find("</table>")
        .or_else(|| rest.find("</dl>"))
        .unwrap_or(rest.len());
    &rest[..end]
}
