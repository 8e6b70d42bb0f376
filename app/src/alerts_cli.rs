//! `tunnelwatch alerts list|show`: alerts as the data directory holds them (safe while a
//! server runs: it reads, never writes).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use model::{AlertRecord, AlertStatus};

/// Text from the VPN made safe for a terminal: control characters (CR, LF, ANSI escapes)
/// are shown escaped, never interpreted.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Every alert's rows, oldest first, by alert id.
fn histories(data_dir: &Path) -> anyhow::Result<BTreeMap<String, Vec<AlertRecord>>> {
    let store = store::Store::open_read_only(&crate::config::store_config_for_dir(data_dir))
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    Ok(alerting::histories(store.alert_records()?))
}

/// `alerts list`: each alert's current state, newest change first.
pub fn list(
    data_dir: &Path,
    status: Option<&str>,
    format: store::OutputFormat,
) -> anyhow::Result<String> {
    let wanted = match status {
        None => None,
        Some("open") => Some(vec![AlertStatus::Firing, AlertStatus::Acknowledged]),
        Some(text) => Some(vec![AlertStatus::parse(text).with_context(|| {
            format!("--status must be open, firing, acknowledged or resolved, not {text:?}")
        })?]),
    };
    let mut alerts: Vec<AlertRecord> = histories(data_dir)?
        .into_values()
        .filter_map(|mut history| history.pop())
        .filter(|row| {
            wanted
                .as_ref()
                .is_none_or(|wanted| wanted.contains(&row.status))
        })
        .collect();
    alerts.sort_by_key(|alert| std::cmp::Reverse(alert.timestamp));
    let mut out = String::new();
    match format {
        store::OutputFormat::Json => {
            for alert in &alerts {
                out.push_str(&serde_json::to_string(alert)?);
                out.push('\n');
            }
        }
        _ => {
            out.push_str("ALERT                 STATUS        SEVERITY  RULE                          COUNT  LAST EVENT            SUMMARY\n");
            for alert in &alerts {
                out.push_str(&format!(
                    "{:<21} {:<13} {:<9} {:<29} {:>5}  {:<21} {}\n",
                    alert.alert_id,
                    alert.status,
                    alert.severity,
                    alert.rule_id,
                    alert.count,
                    alert.last.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    printable(&alert.message)
                ));
            }
        }
    }
    Ok(out)
}

/// `alerts show ID`: one alert's history, oldest first.
pub fn show(data_dir: &Path, id: &str) -> anyhow::Result<String> {
    let mut by_alert = histories(data_dir)?;
    let history = by_alert
        .remove(id)
        .with_context(|| format!("no alert {:?} in {}", id, data_dir.display()))?;
    let mut out = String::new();
    if let Some(alert) = history.last() {
        out.push_str(&format!(
            "{} {} ({}): {}\nstatus {}, severity {}, {} events from {} to {}\nlabels: {}\nMITRE: {}\nevidence: {}\n\nhistory:\n",
            alert.alert_id,
            alert.rule_name,
            alert.rule_id,
            printable(&alert.message),
            alert.status,
            alert.severity,
            alert.count,
            alert.first,
            alert.last,
            printable(&serde_json::to_string(&alert.labels)?),
            alert.mitre.join(", "),
            printable(&alert.evidence.join(" ")),
        ));
    }
    for row in &history {
        out.push_str(&format!(
            "  {} #{} {} by {}{}{}\n",
            row.timestamp,
            row.revision,
            row.action,
            printable(&row.actor),
            row.assignee
                .as_deref()
                .map(|who| format!(", assigned to {}", printable(who)))
                .unwrap_or_default(),
            row.reason
                .as_deref()
                .map(|why| format!(": {}", printable(why)))
                .unwrap_or_default(),
        ));
    }
    Ok(out)
}
