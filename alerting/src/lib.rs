//! Alerting: streaming rules over the events the store accepted, alerts with a lifecycle,
//! and notifications that always arrive.
//!
//! The principal type is [`Alerting`], the running service the server starts
//! ([`Alerting::start`]): the store's tap hands it every event it accepted as new through a
//! bounded channel ([`Alerting::tap`]), its task runs the [`engine::Engine`] (pure: events
//! and time in, [`model::AlertRecord`] rows out) and stores the rows through an
//! [`AlertSink`]. Operators' acknowledge, assign and resolve ([`Alerting::change`]) are
//! written durably before they change the engine's state. Rules are [`rule::RuleConfig`]s
//! in TOML (`[[alerting.rules]]`, `rules_dir`, and the shipped defaults of `rules/`),
//! checked and compiled by [`load_rules`]. [`notify`] holds the channels and the outbox.

pub mod engine;
mod error;
pub mod inhibit;
pub mod notify;
pub mod route;
pub mod rule;
mod service;
pub mod sigma;
pub mod silence;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use engine::{Change, ChangeError, Engine, histories};
pub use error::{Error, Result};
pub use rule::{Rule, RuleConfig};
pub use service::{AlertSink, Alerting, Clock, QueryRows, QuerySource, Reload, Stats};

/// The rules shipped with tunnelwatch (`alerting/rules/`), on unless `default_rules = false`;
/// a rule of the configuration with the same id replaces one.
pub const DEFAULT_RULES: &[(&str, &str)] = &[
    (
        "auth-failure-spike-user.toml",
        include_str!("../rules/auth-failure-spike-user.toml"),
    ),
    (
        "auth-failure-spike-source.toml",
        include_str!("../rules/auth-failure-spike-source.toml"),
    ),
    (
        "auth-failure-spike-gateway.toml",
        include_str!("../rules/auth-failure-spike-gateway.toml"),
    ),
    (
        "auth-failure-spike-fleet.toml",
        include_str!("../rules/auth-failure-spike-fleet.toml"),
    ),
    (
        "password-spraying.toml",
        include_str!("../rules/password-spraying.toml"),
    ),
    (
        "brute-force-then-success.toml",
        include_str!("../rules/brute-force-then-success.toml"),
    ),
    (
        "login-without-session.toml",
        include_str!("../rules/login-without-session.toml"),
    ),
    (
        "impossible-travel.toml",
        include_str!("../rules/impossible-travel.toml"),
    ),
    (
        "new-country.toml",
        include_str!("../rules/new-country.toml"),
    ),
    (
        "weak-crypto.toml",
        include_str!("../rules/weak-crypto.toml"),
    ),
    (
        "concurrent-sessions.toml",
        include_str!("../rules/concurrent-sessions.toml"),
    ),
    (
        "auth-failure-baseline-gateway.toml",
        include_str!("../rules/auth-failure-baseline-gateway.toml"),
    ),
    (
        "cert-expiry.toml",
        include_str!("../rules/cert-expiry.toml"),
    ),
    (
        "new-device-identity.toml",
        include_str!("../rules/new-device-identity.toml"),
    ),
    (
        "new-api-path.toml",
        include_str!("../rules/new-api-path.toml"),
    ),
];

/// Largest rule file read.
pub const MAX_RULE_FILE_BYTES: u64 = 256 * 1024;
/// Most rules loaded.
pub const MAX_RULES: usize = 1000;

/// `[alerting]` configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Rules written in the configuration file.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// A directory of rule files, one rule per `*.toml` file.
    #[serde(default)]
    pub rules_dir: Option<PathBuf>,
    /// A directory of Sigma rules (`*.yml`, `*.yaml`), compiled onto tunnelwatch's kinds
    /// ([`sigma`]).
    #[serde(default)]
    pub sigma_dir: Option<PathBuf>,
    /// The Sigma field and logsource mapping (TOML; default [`sigma::DEFAULT_MAPPING`]).
    #[serde(default)]
    pub sigma_mapping: Option<PathBuf>,
    /// Load the shipped rules (`alerting/rules/`).
    #[serde(default = "default_true")]
    pub default_rules: bool,
    /// Groups kept per rule in memory; beyond, the least recently seen are evicted (counted).
    #[serde(default = "default_max_groups")]
    pub max_groups_per_rule: usize,
    /// Event batches waiting for the engine at most; beyond, batches are shed (counted, and
    /// the health report says so) so that ingest never waits for a slow rule.
    #[serde(default = "default_queue")]
    pub queue_batches: usize,
    /// Who gets paged ([`route::ReceiverConfig`]).
    #[serde(default)]
    pub receivers: Vec<route::ReceiverConfig>,
    /// Who is paged next when a firing alert is not acknowledged in time
    /// ([`route::EscalationConfig`]), shortest wait first.
    #[serde(default)]
    pub escalations: Vec<route::EscalationConfig>,
    /// Alerts whose pages are muted while an alert that covers them is open
    /// ([`inhibit::InhibitConfig`]); with `default_rules`, the shipped ones
    /// ([`inhibit::shipped`]) come first.
    #[serde(default)]
    pub inhibit: Vec<inhibit::InhibitConfig>,
    /// The console's address as people reach it, for the links in notifications
    /// (`https://tunnelwatch.example.org`).
    #[serde(default)]
    pub console_url: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            rules: Vec::new(),
            rules_dir: None,
            sigma_dir: None,
            sigma_mapping: None,
            default_rules: true,
            max_groups_per_rule: default_max_groups(),
            queue_batches: default_queue(),
            receivers: Vec::new(),
            escalations: Vec::new(),
            inhibit: Vec::new(),
            console_url: None,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_max_groups() -> usize {
    engine::Limits::default().max_groups_per_rule
}

fn default_queue() -> usize {
    1024
}

/// Where each loaded rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Shipped(&'static str),
    Config,
    File(PathBuf),
    /// Compiled from this Sigma file.
    Sigma(PathBuf),
}

/// Loads and checks every rule: the shipped ones, then `rules_dir`, then `sigma_dir`, then the
/// configuration's own (a later rule with the same id replaces an earlier one). Disabled rules are checked
/// and left out. The first invalid rule is the error, naming it and why.
pub fn load_rules(config: &Config) -> Result<Vec<(Rule, Origin)>> {
    let mut written: Vec<(RuleConfig, Origin)> = Vec::new();
    if config.default_rules {
        for (name, text) in DEFAULT_RULES {
            let rule = parse_rule_file(text).map_err(|why| Error::RuleFile {
                path: PathBuf::from("alerting/rules").join(name),
                why,
            })?;
            written.push((rule, Origin::Shipped(name)));
        }
    }
    if let Some(dir) = &config.rules_dir {
        for path in rule_files(dir)? {
            let text = read_rule_file(&path)?;
            let rule = parse_rule_file(&text).map_err(|why| Error::RuleFile {
                path: path.clone(),
                why,
            })?;
            written.push((rule, Origin::File(path)));
        }
    }
    if let Some(dir) = &config.sigma_dir {
        let mapping = sigma_mapping(config.sigma_mapping.as_deref())?;
        for path in files_with(dir, &["yml", "yaml"])? {
            for rule in sigma_file(&path, &mapping)? {
                written.push((rule, Origin::Sigma(path.clone())));
            }
        }
    }
    for rule in &config.rules {
        written.push((rule.clone(), Origin::Config));
    }
    let mut rules: Vec<(Rule, Origin)> = Vec::new();
    for (written_rule, origin) in written {
        let compiled = Rule::compile(&written_rule).map_err(|error| match &origin {
            Origin::File(path) | Origin::Sigma(path) => Error::RuleFile {
                path: path.clone(),
                why: error.to_string(),
            },
            _ => error,
        })?;
        rules.retain(|(rule, _)| rule.id != compiled.id);
        if written_rule.enabled {
            rules.push((compiled, origin));
        }
    }
    if rules.len() > MAX_RULES {
        return Err(Error::Config(format!(
            "{} rules are more than the {MAX_RULES} allowed",
            rules.len()
        )));
    }
    Ok(rules)
}

/// The inhibit rules in force: the shipped ones (with `default_rules`), then the
/// configuration's, each checked.
pub fn inhibit_rules(config: &Config) -> Result<Vec<inhibit::InhibitConfig>> {
    let mut rules = if config.default_rules {
        inhibit::shipped()
    } else {
        Vec::new()
    };
    rules.extend(config.inhibit.iter().cloned());
    inhibit::check(&rules)?;
    Ok(rules)
}

/// One rule file: the rule's keys at the top level.
pub fn parse_rule_file(text: &str) -> std::result::Result<RuleConfig, String> {
    toml::from_str(text).map_err(|error| error.to_string())
}

/// The Sigma mapping in `path`, or the built-in one.
pub fn sigma_mapping(path: Option<&Path>) -> Result<sigma::FieldMapping> {
    let Some(path) = path else {
        return Ok(sigma::FieldMapping::default());
    };
    let text = read_rule_file(path)?;
    sigma::FieldMapping::from_toml(&text).map_err(|error| Error::RuleFile {
        path: path.to_owned(),
        why: error.to_string(),
    })
}

/// The rules of one Sigma file, each checked; the error names the file, the rule and why.
pub fn sigma_file(path: &Path, mapping: &sigma::FieldMapping) -> Result<Vec<RuleConfig>> {
    let text = read_rule_file(path)?;
    sigma::compile(&text, mapping).map_err(|error| Error::RuleFile {
        path: path.to_owned(),
        why: error.to_string(),
    })
}

fn rule_files(dir: &Path) -> Result<Vec<PathBuf>> {
    files_with(dir, &["toml"])
}

fn files_with(dir: &Path, extensions: &[&str]) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|error| Error::RuleFile {
        path: dir.to_owned(),
        why: format!("cannot list the rules directory: {error}"),
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::RuleFile {
            path: dir.to_owned(),
            why: error.to_string(),
        })?;
        let path = entry.path();
        if path
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| extensions.contains(&ext))
        {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn read_rule_file(path: &Path) -> Result<String> {
    let file_error = |why: String| Error::RuleFile {
        path: path.to_owned(),
        why,
    };
    let metadata = std::fs::metadata(path).map_err(|error| file_error(error.to_string()))?;
    if metadata.len() > MAX_RULE_FILE_BYTES {
        return Err(file_error(format!(
            "{} bytes is more than the {MAX_RULE_FILE_BYTES} a rule file may have",
            metadata.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|error| file_error(error.to_string()))?;
    String::from_utf8(bytes).map_err(|_| file_error("not UTF-8 text".to_owned()))
}

#[cfg(test)]
mod tests;
