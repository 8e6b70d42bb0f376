//! The architecture invariants of ARCHITECTURE.md, checked against `cargo metadata`,
//! `cargo tree` and the sources.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn cargo(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(workspace_root())
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Each workspace crate's name and its normal and build dependencies, workspace crates or
/// not.
fn workspace_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let metadata: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
        "--offline",
    ]))
    .unwrap();
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|package| {
            let deps = package["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|dep| dep["kind"].is_null() || dep["kind"] == "build")
                .map(|dep| dep["name"].as_str().unwrap().to_owned())
                .collect();
            (package["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

/// Workspace crate → the workspace crates it depends on (normal and build dependencies).
fn workspace_edges() -> BTreeMap<String, BTreeSet<String>> {
    let mut dependencies = workspace_dependencies();
    let members: BTreeSet<String> = dependencies.keys().cloned().collect();
    for deps in dependencies.values_mut() {
        deps.retain(|dep| members.contains(dep));
    }
    dependencies
}

/// ARCHITECTURE.md's dependency table.
#[test]
fn crates_depend_only_in_the_documented_direction() {
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("model", &[][..]),
        ("durable", &[][..]),
        ("gateway", &["model", "durable"][..]),
        ("collector", &["model"][..]),
        ("store", &["model", "durable"][..]),
        ("alerting", &["model", "durable", "store"][..]),
        ("playbooks", &["model", "durable"][..]),
        (
            "dashboards",
            &["model", "durable", "store", "alerting", "playbooks"][..],
        ),
        (
            "app",
            &[
                "model",
                "durable",
                "gateway",
                "collector",
                "store",
                "alerting",
                "playbooks",
                "dashboards",
            ][..],
        ),
        ("testbed", &[][..]),
    ]);
    let edges = workspace_edges();
    assert_eq!(
        edges.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        allowed.keys().copied().collect::<BTreeSet<_>>(),
        "workspace members changed: update ARCHITECTURE.md and this test"
    );
    for (name, deps) in &edges {
        let allowed_deps: BTreeSet<&str> = allowed[name.as_str()].iter().copied().collect();
        for dep in deps {
            assert!(
                allowed_deps.contains(dep.as_str()),
                "{name} depends on {dep}, which ARCHITECTURE.md does not allow"
            );
        }
    }
    // The testbed is a dev-only helper: nothing ships with it.
    for (name, deps) in &edges {
        assert!(
            !deps.contains("testbed"),
            "{name} has the testbed as a normal dependency"
        );
    }
}

fn normal_tree(args: &[&str]) -> String {
    let mut full = vec![
        "tree",
        "--offline",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ];
    full.extend_from_slice(args);
    cargo(&full)
}

fn assert_absent(tree: &str, what: &str, forbidden: &[&str]) {
    for line in tree.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        assert!(!forbidden.contains(&name), "{what} pulls in {name}");
    }
}

#[test]
fn the_gateway_build_has_no_arrow_datafusion_or_tantivy() {
    let tree = normal_tree(&[
        "-p",
        "app",
        "--no-default-features",
        "--features",
        "gateway",
    ]);
    assert!(
        tree.lines().any(|line| line.starts_with("gateway ")),
        "the gateway build must contain the gateway crate:\n{tree}"
    );
    assert_absent(
        &tree,
        "the gateway-only build",
        &[
            "arrow",
            "arrow-array",
            "datafusion",
            "parquet",
            "tantivy",
            "axum",
            "store",
            "collector",
            "dashboards",
        ],
    );
    let tree = normal_tree(&["-p", "gateway"]);
    assert_absent(
        &tree,
        "the gateway crate",
        &["arrow", "arrow-array", "datafusion", "parquet", "tantivy"],
    );
}

#[test]
fn model_is_pure_data() {
    let tree = normal_tree(&["-p", "model"]);
    assert_absent(
        &tree,
        "model",
        &[
            "tokio",
            "arrow",
            "arrow-array",
            "datafusion",
            "parquet",
            "tantivy",
            "axum",
        ],
    );
}

/// The durable-file toolkit sits beneath everything that keeps files: the gateway's agent
/// links it, so it stays as small as its job (std, serde, serde_json, thiserror; none of
/// them brings tokio, Arrow or a workspace crate).
#[test]
fn durable_is_a_leaf() {
    let dependencies = workspace_dependencies();
    for name in &dependencies["durable"] {
        assert!(
            ["serde", "serde_json", "thiserror"].contains(&name.as_str()),
            "durable depends on {name}: it may use std, serde, serde_json and thiserror only"
        );
    }
}

#[test]
fn collector_does_not_know_the_store() {
    let tree = normal_tree(&["-p", "collector"]);
    assert_absent(
        &tree,
        "collector",
        &["store", "arrow", "arrow-array", "datafusion", "parquet"],
    );
}

/// The workspace's crates but those in `skip`, by name: the members `cargo metadata` lists,
/// so that a new crate is checked too.
fn crates_but(skip: &[&str]) -> Vec<String> {
    workspace_edges()
        .into_keys()
        .filter(|krate| !skip.contains(&krate.as_str()))
        .collect()
}

/// Rust sources of a crate, without its tests: a file's trailing test module
/// ([`without_trailing_test_module`]), and the `tests.rs` files and `tests/` folders such a
/// module lives in (their parent must declare `#[cfg(test)] mod tests;`).
fn sources(krate: &str) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let is_tests = path.file_stem().is_some_and(|stem| stem == "tests");
            if path.is_dir() {
                if is_tests {
                    assert_test_module(&path);
                    continue;
                }
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                if is_tests {
                    assert_test_module(&path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let text = without_trailing_test_module(&text).to_owned();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&workspace_root().join(krate).join("src"), &mut out);
    out
}

/// A file without its test module, if the module ends the file: `#[cfg(test)]` then `mod
/// tests;` or `mod tests { … }` whose closing brace (the first `}` alone on a line, where
/// rustfmt puts it) is the end of the file. Any other `#[cfg(test)]`, such as a test module
/// near the top or a test-only helper, leaves the whole file to be checked.
fn without_trailing_test_module(text: &str) -> &str {
    const ATTRIBUTE: &str = "\n#[cfg(test)]\n";
    let Some(at) = text.rfind(ATTRIBUTE) else {
        return text;
    };
    let module = text[at + ATTRIBUTE.len()..].trim_end();
    let trailing = module == "mod tests;"
        || module == "pub(crate) mod tests;"
        || module
            .strip_prefix("mod tests {")
            .is_some_and(|body| body.ends_with("\n}") && body.find("\n}\n").is_none());
    if trailing { &text[..=at] } else { text }
}

/// `dir/tests.rs` or `dir/tests/` is a test module only: `dir.rs`, `dir/mod.rs` (or, for a
/// crate's `src`, `lib.rs` or `main.rs`) declares it under `#[cfg(test)]`.
fn assert_test_module(path: &Path) {
    let dir = path.parent().unwrap();
    let mut parents = vec![dir.with_extension("rs"), dir.join("mod.rs")];
    if dir.file_name().is_some_and(|name| name == "src") {
        parents.extend([dir.join("lib.rs"), dir.join("main.rs")]);
    }
    let declared = parents.iter().any(|parent| {
        std::fs::read_to_string(parent).is_ok_and(|text| {
            text.contains("#[cfg(test)]\nmod tests;")
                || text.contains("#[cfg(test)]\npub(crate) mod tests;")
        })
    });
    assert!(
        declared,
        "{} is skipped as tests, but no parent module declares `#[cfg(test)] mod tests;` (or `pub(crate) mod tests;`, for test helpers other test modules share)",
        path.display()
    );
}

#[test]
fn only_a_trailing_test_module_is_left_out() {
    let code = "fn f() {}\n";
    for (text, kept) in [
        (
            format!("{code}\n#[cfg(test)]\nmod tests;\n"),
            code.len() + 1,
        ),
        (
            format!("{code}\n#[cfg(test)]\nmod tests {{\n    #[test]\n    fn t() {{}}\n}}\n"),
            code.len() + 1,
        ),
        // Near the top: the rest of the file is still code.
        (format!("#[cfg(test)]\nmod tests;\n\n{code}"), 0),
        (format!("\n#[cfg(test)]\nmod tests;\n\n{code}"), 0),
        // A module that does not run to the end of the file.
        (
            format!("{code}\n#[cfg(test)]\nmod tests {{\n}}\n\n{code}"),
            0,
        ),
        // A test-only item is not the test module.
        (format!("{code}\n#[cfg(test)]\nfn helper() {{}}\n"), 0),
        (format!("{code}\n#[cfg(test)]\nmod support;\n"), 0),
    ] {
        let left = without_trailing_test_module(&text);
        let expected = if kept == 0 {
            text.as_str()
        } else {
            &text[..kept]
        };
        assert_eq!(left, expected, "{text:?}");
    }
}

#[test]
fn only_app_reads_the_environment_builds_runtimes_and_installs_the_subscriber() {
    for krate in crates_but(&["app", "testbed"]) {
        for (path, text) in sources(&krate) {
            // The one exception: the store's object storage has a private I/O runtime (its
            // synchronous API waits for object_store calls on it from any thread, inside a
            // runtime or not, without deadlocking a current-thread caller); it is never
            // exposed and reads no configuration.
            let private_io_runtime = path.ends_with("store/src/storage.rs");
            for forbidden in [
                "std::env::var",
                "env::var(",
                "tracing_subscriber",
                "Runtime::new",
                "runtime::Builder",
                "#[tokio::main]",
            ] {
                if private_io_runtime && forbidden == "runtime::Builder" {
                    continue;
                }
                assert!(
                    !text.contains(forbidden),
                    "{} uses {forbidden}; only app may",
                    path.display()
                );
            }
        }
    }
}

/// What speaks HTTP statuses and responses: the web framework, the `http` crate's types, and
/// a client's reading of a response's status.
const HTTP_STATUS_WORDS: [&str; 7] = [
    "StatusCode",
    "axum::",
    "IntoResponse",
    "http::",
    "is_success()",
    "is_client_error()",
    "is_server_error()",
];

/// The one place besides `dashboards` that reads HTTP statuses, and what it may use: the
/// gateway's ship client, the client half of the ingest contract (`model::wire`), which tells
/// a refused batch from a server that is away.
const HTTP_CLIENT: (&str, &[&str]) = (
    "gateway/src/ship.rs",
    &["StatusCode", "is_success()", "is_client_error()"],
);

#[test]
fn only_dashboards_speaks_http_status_codes() {
    let mut client_reads_statuses = false;
    for krate in crates_but(&["dashboards", "testbed"]) {
        for (path, text) in sources(&krate) {
            let allowed: &[&str] = if path.ends_with(HTTP_CLIENT.0) {
                client_reads_statuses = HTTP_CLIENT.1.iter().any(|word| text.contains(word));
                HTTP_CLIENT.1
            } else {
                &[]
            };
            for forbidden in HTTP_STATUS_WORDS {
                assert!(
                    allowed.contains(&forbidden) || !text.contains(forbidden),
                    "{} uses {forbidden}; only dashboards maps errors to HTTP",
                    path.display()
                );
            }
        }
    }
    assert!(
        client_reads_statuses,
        "{} no longer reads HTTP statuses: drop its exception here and in ARCHITECTURE.md",
        HTTP_CLIENT.0
    );
}

/// Every library crate with failures of its own has one `src/error.rs`: a `thiserror` enum
/// `Error` whose `kind()` is the workspace's one `model::ErrorKind`. A crate with no error
/// type yet (model, pure data; alerting and playbooks, configuration only so far) is held to
/// it as soon as it derives one. `dashboards` answers with `ApiError` and is where every kind
/// becomes an HTTP status, in one function. `app` uses anyhow; the testbed is test-only.
/// A crate beneath `model` ([`BENEATH_MODEL`]) cannot name `model::ErrorKind`: it has the
/// one `error.rs` without a kind, and the crates that use it turn its errors into theirs.
#[test]
fn every_library_crate_has_one_error_type_with_a_kind() {
    for krate in crates_but(&["testbed"]) {
        let sources = sources(&krate);
        for (path, text) in &sources {
            let defines_kind = text.contains("enum ErrorKind");
            assert_eq!(
                defines_kind,
                path.ends_with("model/src/error_kind.rs"),
                "{}: `ErrorKind` is model's alone (model/src/error_kind.rs)",
                path.display()
            );
        }
        if krate == "app" {
            continue;
        }
        let error_path = workspace_root().join(&krate).join("src/error.rs");
        if krate == "dashboards" {
            let error = std::fs::read_to_string(&error_path).unwrap();
            assert!(
                error.contains("fn status_of(kind: model::ErrorKind) -> StatusCode"),
                "dashboards/src/error.rs maps model::ErrorKind to statuses"
            );
            for (path, text) in &sources {
                assert!(
                    path.ends_with("dashboards/src/error.rs") || !text.contains("ErrorKind::"),
                    "{} maps error kinds; dashboards does so only in error.rs",
                    path.display()
                );
            }
            continue;
        }
        let has_errors = sources
            .iter()
            .any(|(_, text)| text.contains("thiserror::Error"));
        if !has_errors {
            assert!(
                std::fs::metadata(&error_path).is_err(),
                "{krate}/src/error.rs without an error type"
            );
            continue;
        }
        let error = std::fs::read_to_string(&error_path)
            .unwrap_or_else(|_| panic!("{krate} has error types but no src/error.rs"));
        let beneath_model = BENEATH_MODEL.contains(&krate.as_str());
        for needed in [
            "#[derive(Debug, thiserror::Error)]\npub enum Error {",
            "pub fn kind(&self) -> model::ErrorKind {",
            "pub type Result<T> = std::result::Result<T, Error>;",
        ] {
            if beneath_model && needed.contains("fn kind") {
                assert!(
                    !error.contains("fn kind("),
                    "{krate}/src/error.rs has a kind of its own: kinds are model::ErrorKind"
                );
                continue;
            }
            assert!(
                error.contains(needed),
                "{krate}/src/error.rs lacks `{needed}`"
            );
        }
    }
}

/// The leaves beneath `model`: they depend on no workspace crate (see
/// [`crates_depend_only_in_the_documented_direction`]), so their errors have no
/// `model::ErrorKind`.
const BENEATH_MODEL: [&str; 1] = ["durable"];

#[test]
fn the_only_unsafe_code_is_the_capture_socket() {
    for krate in crates_but(&[]) {
        for (path, text) in sources(&krate) {
            // Two libc calls pnet does not make for us: opening the AF_PACKET socket (to keep
            // its descriptor) and PACKET_STATISTICS/socket options on it.
            if path.ends_with("gateway/src/flow/capture/sys.rs") {
                continue;
            }
            for forbidden in ["unsafe {", "unsafe fn", "unsafe impl", "allow(unsafe_code)"] {
                assert!(
                    !text.contains(forbidden),
                    "{} has `{forbidden}`: the workspace denies unsafe code outside gateway::flow::capture::sys",
                    path.display()
                );
            }
        }
    }
}

/// Every `.rs` file of the workspace (sources, tests, benches, examples), as text.
fn all_rust_files() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() {
                if name != "target" && !name.to_string_lossy().starts_with('.') {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&workspace_root(), &mut out);
    out
}

/// The checks an invariant names: its italic parentheses, `*(...)*`, which may span lines.
/// An invariant runs to the next one or to the end of its paragraph.
fn invariant_references(architecture: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = architecture;
    while let Some(at) = rest.find("**Invariant:**") {
        rest = &rest[at + "**Invariant:**".len()..];
        let end = [rest.find("**Invariant:**"), rest.find("\n\n")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        let mut invariant = &rest[..end];
        let summary: String = invariant.chars().take(60).collect();
        let mut checks = String::new();
        while let Some(open) = invariant.find("*(") {
            let Some(close) = invariant[open..].find(")*") else {
                break;
            };
            checks.push_str(&invariant[open + 2..open + close]);
            checks.push('\n');
            invariant = &invariant[open + close + 2..];
        }
        found.push((summary, checks));
    }
    found
}

/// ARCHITECTURE.md's invariants each name their checks, and what they name exists: every
/// test function in backticks is defined somewhere in the workspace, every `.rs` path is a
/// file. A renamed or deleted test cannot leave an invariant pointing at nothing.
#[test]
fn every_invariant_names_checks_that_exist() {
    let root = workspace_root();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let files = all_rust_files();
    let defined: BTreeSet<String> = files
        .iter()
        .flat_map(|(_, text)| {
            text.split("fn ")
                .skip(1)
                .map(|after| {
                    after
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .collect::<Vec<_>>()
        })
        .chain(files.iter().filter_map(|(path, _)| {
            let in_tests = path.parent()?.file_name()? == "tests";
            in_tests.then(|| path.file_stem()?.to_str().map(str::to_owned))?
        }))
        .collect();
    let references = invariant_references(&architecture);
    assert!(references.len() > 50, "ARCHITECTURE.md lost its invariants");
    let mut problems = Vec::new();
    for (summary, checks) in &references {
        if checks.is_empty() {
            problems.push(format!("invariant '{summary}…' names no check"));
            continue;
        }
        for quoted in checks.split('`').skip(1).step_by(2) {
            let is_test_name = quoted.contains('_')
                && quoted
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if is_test_name && !defined.contains(quoted) {
                problems.push(format!("'{summary}…' names `{quoted}`, defined nowhere"));
            }
        }
        for word in checks.split(|c: char| c.is_whitespace() || c == ',' || c == ';') {
            let word = word.trim_matches(|c: char| "()`*.:".contains(c));
            if word.ends_with(".rs") && word.contains('/') && !root.join(word).is_file() {
                problems.push(format!("'{summary}…' names {word}, which is not a file"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
