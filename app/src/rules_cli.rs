//! `tunnelwatch rules check|test|import-sigma`: write rules safely. `check` loads a rule file
//! or a directory of them (TOML, and Sigma YAML) and says what each is or why it cannot run;
//! `test` replays events (the JSON lines `tunnelwatch parse` prints) through them in event
//! time and says what would fire and why; `import-sigma` compiles Sigma rules into
//! tunnelwatch's TOML rules.

use std::io::BufRead;
use std::path::Path;

use anyhow::Context;

/// Longest event line read.
const MAX_LINE_BYTES: usize = 1 << 20;

/// The rules of a file (one TOML rule, or a Sigma file) or a directory (one rule per
/// `*.toml`, and the Sigma rules of its `*.yml`/`*.yaml`), without the shipped ones.
fn load(path: &Path) -> anyhow::Result<Vec<(alerting::Rule, alerting::Origin)>> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let config = if metadata.is_dir() {
        alerting::Config {
            rules_dir: Some(path.to_owned()),
            sigma_dir: Some(path.to_owned()),
            default_rules: false,
            ..alerting::Config::default()
        }
    } else if is_sigma(path) {
        let mapping = alerting::sigma_mapping(None)?;
        alerting::Config {
            rules: alerting::sigma_file(path, &mapping)?,
            default_rules: false,
            ..alerting::Config::default()
        }
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let rule = alerting::parse_rule_file(&text)
            .map_err(|why| anyhow::anyhow!("rule file {}: {why}", path.display()))?;
        alerting::Config {
            rules: vec![rule],
            default_rules: false,
            ..alerting::Config::default()
        }
    };
    Ok(alerting::load_rules(&config)?)
}

fn is_sigma(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| ext == "yml" || ext == "yaml")
}

/// `rules import-sigma FILE... [--mapping FILE] [--out DIR]`: each Sigma file compiled into
/// tunnelwatch rules, printed as TOML (or written to `DIR/<id>.toml`, never over a file);
/// every file that cannot be compiled is named with the rule and the reason, and fails the
/// command after the others are done.
pub fn import_sigma(
    files: &[std::path::PathBuf],
    mapping: Option<&Path>,
    out: Option<&Path>,
) -> anyhow::Result<(String, Vec<String>)> {
    let mapping = alerting::sigma_mapping(mapping)?;
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut printed = String::new();
    let mut failures = Vec::new();
    for file in files {
        let rules = match alerting::sigma_file(file, &mapping) {
            Ok(rules) => rules,
            Err(error) => {
                failures.push(error.to_string());
                continue;
            }
        };
        for rule in rules {
            let text = toml::to_string(&rule)
                .with_context(|| format!("cannot write rule {} as TOML", rule.id))?;
            let header = format!("# From Sigma: {}\n", file.display());
            match out {
                Some(dir) => {
                    let path = dir.join(format!("{}.toml", rule.id));
                    let mut created = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .with_context(|| {
                            format!("cannot create {} (it may exist already)", path.display())
                        })?;
                    std::io::Write::write_all(&mut created, format!("{header}{text}").as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    printed.push_str(&format!("{}\n", path.display()));
                }
                None => printed.push_str(&format!("{header}{text}\n")),
            }
        }
    }
    Ok((printed, failures))
}

/// `rules check PATH`.
pub fn check(path: &Path) -> anyhow::Result<String> {
    let rules = load(path)?;
    let mut out = String::new();
    for (rule, _) in &rules {
        let kind = rule.kind.name();
        let group: Vec<&str> = rule.group_by.iter().map(|field| field.name).collect();
        out.push_str(&format!(
            "{:<30} {:<9} {:<8} by [{}]  {}\n",
            rule.id,
            kind,
            rule.severity,
            group.join(", "),
            rule.name
        ));
    }
    out.push_str(&format!("{} rules are valid\n", rules.len()));
    Ok(out)
}

/// `rules test RULES EVENTS`.
pub fn test(rules_path: &Path, events_path: &Path) -> anyhow::Result<String> {
    let rules: Vec<alerting::Rule> = load(rules_path)?
        .into_iter()
        .map(|(rule, _)| rule)
        .collect();
    let mut engine = alerting::Engine::new(rules, alerting::engine::Limits::default());
    let file = std::fs::File::open(events_path)
        .with_context(|| format!("cannot read {}", events_path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut rows = Vec::new();
    let mut newest = None;
    let mut n_events = 0u64;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = std::io::Read::take(&mut reader, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("cannot read {}", events_path.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        if line.len() > MAX_LINE_BYTES {
            anyhow::bail!(
                "{} line {number}: longer than {MAX_LINE_BYTES} bytes",
                events_path.display()
            );
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let event: model::Event = serde_json::from_slice(&line).with_context(|| {
            format!(
                "{} line {number} is not an event as `tunnelwatch parse` prints them",
                events_path.display()
            )
        })?;
        n_events += 1;
        newest = newest.max(Some(event.timestamp));
        rows.extend(engine.observe(&event));
    }
    // Sequences whose span has passed by the last event are decided.
    if let Some(newest) = newest {
        rows.extend(engine.tick(newest));
    }
    let fired: Vec<&model::AlertRecord> = rows
        .iter()
        .filter(|row| row.action == model::alert::action::FIRED)
        .collect();
    let mut out = String::new();
    for row in &fired {
        out.push_str(&format!(
            "FIRE {} [{}] at {}: {}\n     {} events from {} to {}; evidence: {}\n",
            row.rule_id,
            row.severity,
            row.timestamp,
            crate::alerts_cli::printable(&row.message),
            row.count,
            row.first,
            row.last,
            crate::alerts_cli::printable(&row.evidence.join(" ")),
        ));
    }
    out.push_str(&format!(
        "{n_events} events, {} rules: {} alerts would fire\n",
        engine.rules().len(),
        fired.len()
    ));
    Ok(out)
}
