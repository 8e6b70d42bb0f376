//! The commands that read files: `parse`, `ingest`, `sql` and `check-config`.

use std::io::{BufWriter, Read, Write};
use std::path::Path;
#[cfg(feature = "server")]
use std::path::PathBuf;

use anyhow::{Context, bail};
use gateway::parse::{Format, LogClock, ParseOptions, ParseStats, Parser};
use gateway::tail::{FileTailer, TailOptions};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::config::AppConfig;

/// Year and zone settings shared by `parse` and `ingest`.
#[derive(Debug, Clone, Default)]
pub struct TimeOptions {
    pub year: Option<i16>,
    pub tz: Option<String>,
}

impl TimeOptions {
    fn clock(&self) -> anyhow::Result<LogClock> {
        let tz = match &self.tz {
            Some(name) => TimeZone::get(name).with_context(|| {
                format!(
                    "unknown time zone {name:?} (use an IANA name such as Europe/Berlin, or UTC)"
                )
            })?,
            None => TimeZone::UTC,
        };
        Ok(LogClock::new(tz, self.year, Timestamp::now()))
    }
}

/// `tunnelwatch parse --format F FILE`: events as JSON lines on stdout, a summary on stderr.
/// `json_mapping`: the TOML file of `--json-mapping` (only for `--format json`).
pub fn parse(
    format: Format,
    file: &Path,
    time: &TimeOptions,
    hostname: Option<String>,
    json_mapping: Option<&Path>,
) -> anyhow::Result<ParseStats> {
    if json_mapping.is_some() && format != Format::Json {
        bail!("--json-mapping is read only with --format json, not --format {format}");
    }
    let source = source_id(file)?;
    let mut options = ParseOptions::new(source, time.clock()?);
    options.hostname = hostname;
    if let Some(path) = json_mapping {
        options.json_mapping = std::sync::Arc::new(load_json_mapping(path)?);
    }
    let mut parser = Parser::new(format, options);
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut events = Vec::new();
    for_each_line(file, |seq, bytes, len| {
        events.clear();
        let now = Timestamp::now();
        if len > bytes.len() {
            parser.parse_oversized(bytes, len, seq, now, &mut events);
        } else {
            parser.parse_line(bytes, seq, now, &mut events);
        }
        for event in &events {
            serde_json::to_writer(&mut out, event).context("cannot write an event")?;
            out.write_all(b"\n").context("cannot write to stdout")?;
        }
        Ok(())
    })?;
    // The file is read to its end: emit what the parser still holds (the last record of a
    // radius-detail file that lacks its closing blank line).
    events.clear();
    parser.flush(Timestamp::now(), &mut events);
    for event in &events {
        serde_json::to_writer(&mut out, event).context("cannot write an event")?;
        out.write_all(b"\n").context("cannot write to stdout")?;
    }
    out.flush().context("cannot write to stdout")?;
    Ok(parser.stats().clone())
}

/// Reads and checks the TOML file of `--json-mapping` (a [`gateway::parse::JsonMapping`]).
pub fn load_json_mapping(path: &Path) -> anyhow::Result<gateway::parse::JsonMapping> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the json mapping {}", path.display()))?;
    let mapping: gateway::parse::JsonMapping = toml::from_str(&text)
        .with_context(|| format!("invalid json mapping {}", path.display()))?;
    mapping
        .validate()
        .map_err(|reason| anyhow::anyhow!("invalid json mapping {}: {reason}", path.display()))?;
    Ok(mapping)
}

/// What `--format` and `ingest FORMAT:FILE` accept: a log format, or `pcap` (a pcap or
/// pcapng capture, read through the gateway's flow table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Log(Format),
    Pcap,
}

impl std::str::FromStr for InputFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<InputFormat, String> {
        if name == "pcap" {
            return Ok(InputFormat::Pcap);
        }
        name.parse::<Format>()
            .map(InputFormat::Log)
            .map_err(|error| format!("{error}, or pcap (a pcap/pcapng capture)"))
    }
}

#[cfg(feature = "server")]
/// One `FORMAT:FILE` argument of `ingest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub format: InputFormat,
    pub path: PathBuf,
}

#[cfg(feature = "server")]
impl std::str::FromStr for InputSpec {
    type Err = String;

    fn from_str(spec: &str) -> Result<InputSpec, String> {
        let Some((format, path)) = spec.split_once(':') else {
            return Err(format!(
                "{spec:?} is not FORMAT:FILE (for example charon:/var/log/charon.log)"
            ));
        };
        let format = format.parse::<InputFormat>()?;
        if path.is_empty() {
            return Err(format!("{spec:?} names no file after the format"));
        }
        Ok(InputSpec {
            format,
            path: PathBuf::from(path),
        })
    }
}

#[cfg(feature = "server")]
/// What `ingest` did with one file.
#[derive(Debug, Clone)]
pub struct IngestReport {
    pub path: PathBuf,
    /// What reading the file gave (lines or frames, events, rejects).
    pub summary: String,
    pub accepted: u64,
    pub duplicates: u64,
    /// What stopped the file early (a cut capture), after everything before it was stored.
    pub stopped_early: Option<String>,
}

/// What `tunnelwatch ingest` did: each file, and the alerts the rules found in them.
#[cfg(feature = "server")]
#[derive(Debug, Clone)]
pub struct IngestOutcome {
    pub files: Vec<IngestReport>,
    /// Alerts this import fired (their first rows).
    pub alerts: Vec<model::AlertRecord>,
}

/// The rules `ingest` runs over the history, and whether their alerts page.
#[cfg(feature = "server")]
#[derive(Debug, Clone, Default)]
pub struct IngestAlerting {
    /// `[alerting]` of `--config` (default: the shipped rules).
    pub config: alerting::Config,
    /// `--notify`: page the receivers (through the outbox, as the server does).
    pub notify: bool,
}

/// How long `ingest --notify` waits for its pages to be delivered before it leaves the rest
/// to the outbox (the server delivers them when it starts).
#[cfg(feature = "server")]
const NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[cfg(feature = "server")]
/// `tunnelwatch ingest`: files through the server's pipeline into a data directory.
pub async fn ingest(
    data_dir: &Path,
    inputs: &[InputSpec],
    time: &TimeOptions,
    hostname: Option<String>,
    geoip: Option<&Path>,
    json_mapping: Option<&Path>,
    rules: &IngestAlerting,
) -> anyhow::Result<IngestOutcome> {
    if rules.notify && rules.config.receivers.is_empty() {
        bail!("--notify needs --config with [[alerting.receivers]] to page");
    }
    // Check every input before storing anything, so a typo does not leave half an import.
    for input in inputs {
        std::fs::metadata(&input.path)
            .with_context(|| format!("cannot read {}", input.path.display()))?;
    }
    let has_json = inputs
        .iter()
        .any(|input| input.format == InputFormat::Log(Format::Json));
    let json_mapping = match json_mapping {
        Some(_) if !has_json => {
            bail!("--json-mapping is read only for json:FILE inputs, and there is none");
        }
        Some(path) => std::sync::Arc::new(load_json_mapping(path)?),
        None => std::sync::Arc::new(gateway::parse::JsonMapping::default()),
    };
    let mut collector_config = collector::Config::default();
    // Accounting waits for the VPN's events to the end of the input, not for a wall-clock
    // hold (the pipeline says when the input ends).
    collector_config.sessions.until_end_of_input = true;
    if let Some(city_db) = geoip {
        // A server lives with a database that is missing for a while; a one-off import
        // with a database named on the command line should not.
        collector::geoip::probe_database(city_db).context("--geoip")?;
        collector_config.geoip.city_db = Some(city_db.to_owned());
    }
    let clock = time.clock()?;
    let store_config = crate::config::store_config_for_dir(data_dir);
    let config_for_open = store_config.clone();
    let store = tokio::task::spawn_blocking(move || store::Store::open(&config_for_open))
        .await
        .context("opening the store panicked")?
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    // The same rules as the server, over the history in event time (pages only with
    // --notify).
    let (alerting, _alerting_task) = crate::alert_sink::start(
        &rules.config,
        &store,
        alerting::Clock::EventTime,
        rules.notify,
    )?;
    let alerts_before: std::collections::BTreeSet<String> = alerting
        .rows()?
        .into_iter()
        .map(|row| row.alert_id)
        .collect();
    let (pipeline, task) =
        crate::pipeline::Pipeline::start(store, &store_config, &collector_config)?;
    // Every log file is read at once and their events go on merged by time (`time_merge`),
    // so that a detail file meets the log of the same logins whatever the order of the
    // arguments; captures follow, one after the other (their flows join sessions late too).
    let mut reports: Vec<Option<IngestReport>> = inputs.iter().map(|_| None).collect();
    let mut logs = Vec::new();
    for (idx, input) in inputs.iter().enumerate() {
        let InputFormat::Log(format) = input.format else {
            continue;
        };
        let mut options = ParseOptions::new(source_id(&input.path)?, clock.clone());
        options.hostname.clone_from(&hostname);
        options.json_mapping = json_mapping.clone();
        logs.push((idx, read_log(&input.path, Parser::new(format, options))));
    }
    let mut merge = crate::time_merge::TimeMerge::new(logs.len());
    let mut counts = vec![(0u64, 0u64); logs.len()];
    loop {
        for log_idx in merge.needs() {
            match logs[log_idx].1.batches.recv().await {
                Some(events) => merge.push(log_idx, events),
                None => merge.close(log_idx),
            }
        }
        let Some(window) = merge.next_window() else {
            break;
        };
        for (log_idx, events) in window {
            let ack = pipeline
                .submit(events)
                .await
                .map_err(|error| anyhow::anyhow!(error))?;
            counts[log_idx].0 += ack.accepted;
            counts[log_idx].1 += ack.duplicates;
        }
    }
    for ((idx, log), (accepted, duplicates)) in logs.into_iter().zip(counts) {
        let stats = log.reader.await.context("the file reader panicked")??;
        reports[idx] = Some(IngestReport {
            path: inputs[idx].path.clone(),
            summary: stats.to_string(),
            accepted,
            duplicates,
            stopped_early: None,
        });
    }
    for (idx, input) in inputs.iter().enumerate() {
        if input.format == InputFormat::Pcap {
            reports[idx] = Some(ingest_pcap(&pipeline, &input.path, hostname.clone()).await?);
        }
    }
    let reports: Vec<IngestReport> = reports.into_iter().flatten().collect();
    pipeline
        .end_of_input()
        .await
        .map_err(|error| anyhow::anyhow!(error))?;
    // Every event is stored and handed to the engine: its rows, and the end of the history
    // (open alerts resolve as of their last event), go into the final flush.
    alerting.end_of_history().await;
    let alerts = alerting
        .rows()?
        .into_iter()
        .filter(|row| {
            row.action == model::alert::action::FIRED && !alerts_before.contains(&row.alert_id)
        })
        .collect();
    drop(pipeline);
    task.await.context("the pipeline panicked")??;
    if rules.notify {
        let deadline = tokio::time::Instant::now() + NOTIFY_WAIT;
        loop {
            let queued: u64 = alerting
                .stats()
                .notifications
                .iter()
                .map(|counters| counters.queued)
                .sum();
            if queued == 0 {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    n_pages = queued,
                    "pages still wait in DATA/alerting/outbox: the server delivers them when it starts"
                );
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    Ok(IngestOutcome {
        files: reports,
        alerts,
    })
}

/// A log file being read on a blocking thread: its events in batches, in file order, and
/// what reading it gave once it is done.
#[cfg(feature = "server")]
struct LogReader {
    batches: tokio::sync::mpsc::Receiver<Vec<model::Event>>,
    reader: tokio::task::JoinHandle<anyhow::Result<ParseStats>>,
}

#[cfg(feature = "server")]
fn read_log(path: &Path, mut parser: Parser) -> LogReader {
    let path = path.to_owned();
    // Parsing is blocking file IO; the pipeline is async: hand batches over a channel.
    let (batch_tx, batches) = tokio::sync::mpsc::channel::<Vec<model::Event>>(4);
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<ParseStats> {
        let mut batch = Vec::new();
        for_each_line(&path, |seq, bytes, len| {
            let now = Timestamp::now();
            if len > bytes.len() {
                parser.parse_oversized(bytes, len, seq, now, &mut batch);
            } else {
                parser.parse_line(bytes, seq, now, &mut batch);
            }
            if batch.len() >= 5000 {
                batch_tx
                    .blocking_send(std::mem::take(&mut batch))
                    .map_err(|_| anyhow::anyhow!("the pipeline stopped"))?;
            }
            Ok(())
        })?;
        // Read to the end for good: emit a last record still held by the parser.
        parser.flush(Timestamp::now(), &mut batch);
        if !batch.is_empty() {
            batch_tx
                .blocking_send(batch)
                .map_err(|_| anyhow::anyhow!("the pipeline stopped"))?;
        }
        Ok(parser.stats().clone())
    });
    LogReader { batches, reader }
}

#[cfg(feature = "server")]
/// Submits every batch a file reader hands over, counting what was stored.
async fn submit_all(
    pipeline: &crate::pipeline::Pipeline,
    batches: &mut tokio::sync::mpsc::Receiver<Vec<model::Event>>,
    report: &mut IngestReport,
) -> anyhow::Result<()> {
    while let Some(events) = batches.recv().await {
        let ack = pipeline
            .submit(events)
            .await
            .map_err(|error| anyhow::anyhow!(error))?;
        report.accepted += ack.accepted;
        report.duplicates += ack.duplicates;
    }
    Ok(())
}

#[cfg(feature = "server")]
/// One capture file through the flow table and the pipeline.
async fn ingest_pcap(
    pipeline: &crate::pipeline::Pipeline,
    path: &Path,
    hostname: Option<String>,
) -> anyhow::Result<IngestReport> {
    let mut source = crate::pcap::source_for(path, hostname)?;
    let path_for_reader = path.to_owned();
    let (batch_tx, mut batch_rx) = tokio::sync::mpsc::channel::<Vec<model::Event>>(4);
    let reader = tokio::task::spawn_blocking(move || {
        crate::pcap::read(
            &path_for_reader,
            &mut source,
            gateway::flow::FlowConfig::default(),
            |events| {
                batch_tx
                    .blocking_send(events)
                    .map_err(|_| anyhow::anyhow!("the pipeline stopped"))
            },
        )
    });
    let mut report = IngestReport {
        path: path.to_owned(),
        summary: String::new(),
        accepted: 0,
        duplicates: 0,
        stopped_early: None,
    };
    submit_all(pipeline, &mut batch_rx, &mut report).await?;
    let capture = reader.await.context("the capture reader panicked")??;
    report.summary = capture.stats.to_string();
    report.stopped_early = capture.error.map(|error| error.to_string());
    Ok(report)
}

#[cfg(feature = "server")]
/// `tunnelwatch sql`: runs a query against a data directory (read-only; a server may be
/// writing it at the same time).
pub async fn sql(
    data_dir: &Path,
    query: &str,
    format: store::OutputFormat,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let config = crate::config::store_config_for_dir(data_dir);
    let store = tokio::task::spawn_blocking(move || store::Store::open_read_only(&config))
        .await
        .context("opening the store panicked")??;
    let mut rows = store.query_stream(query).await?;
    if format == store::OutputFormat::Table {
        // Column widths need every row.
        out.write_all(rows.collect().await?.render(format)?.as_bytes())?;
        return Ok(());
    }
    // CSV and JSON lines stream: rows reach the terminal or pipe as they are computed.
    let mut header = true;
    while let Some(batch) = rows.next_batch().await {
        out.write_all(&store::render_batch(&batch?, format, header)?)?;
        out.flush()?;
        header = false;
    }
    if header && format == store::OutputFormat::Csv {
        let empty = store::QueryResult {
            schema: rows.schema(),
            batches: Vec::new(),
        };
        out.write_all(empty.render(format)?.as_bytes())?;
    }
    Ok(())
}

/// `tunnelwatch search`: the hits rendered in `format`, and a one-line summary for stderr.
#[cfg(feature = "server")]
pub fn search(
    data_dir: &Path,
    query: &str,
    options: &store::SearchOptions,
    format: store::OutputFormat,
) -> anyhow::Result<(String, String)> {
    let store = store::Store::open_read_only(&crate::config::store_config_for_dir(data_dir))?;
    let result = store.search(query, options)?;
    let summary = format!(
        "{} of {} matching events (newest first; events are searchable once flushed)",
        result.hits.len(),
        result.total
    );
    Ok((result.render(format)?, summary))
}

/// What `tunnelwatch store verify` prints, and whether all was well.
#[cfg(feature = "server")]
pub struct VerifyOutput {
    pub text: String,
    pub healthy: bool,
}

/// `tunnelwatch store verify [--repair]`.
#[cfg(feature = "server")]
pub fn verify(data_dir: &Path, repair: bool) -> anyhow::Result<VerifyOutput> {
    let config = crate::config::store_config_for_dir(data_dir);
    let store = if repair {
        store::Store::open(&config)
            .context("--repair needs the data directory to itself: stop the server first")?
    } else {
        store::Store::open_read_only(&config)?
    };
    let stats = store.stats()?;
    let report = store.verify(repair)?;
    let mut lines = vec![format!(
        "{}: {} segments, {} rows read; {} events in the search index",
        data_dir.display(),
        report.segments_checked,
        report.rows_checked,
        stats.indexed_events
    )];
    if stats.quarantined_segments > 0 || stats.quarantined_index {
        lines.push(format!(
            "  {} segment(s){} in {} (moved aside earlier; their rows are not queried)",
            stats.quarantined_segments,
            if stats.quarantined_index {
                " and the search index"
            } else {
                ""
            },
            data_dir.join("quarantine").display()
        ));
    }
    for path in &report.corrupt_segments {
        lines.push(format!("  corrupt segment: {}", path.display()));
    }
    for path in &report.unindexed_segments {
        lines.push(format!("  not in the search index: {}", path.display()));
    }
    match &report.audit_break {
        Some(chain_break) => lines.push(format!(
            "  audit trail BROKEN after checking {} entries: {chain_break}",
            report.audit_entries
        )),
        None if report.audit_entries > 0 => lines.push(format!(
            "  audit trail: {} entries, hash chain intact",
            report.audit_entries
        )),
        None => {}
    }
    if report.corrupt_wal_records > 0 {
        lines.push(format!(
            "  {} torn or corrupt write-ahead log record(s) were skipped at open",
            report.corrupt_wal_records
        ));
    }
    if repair {
        for path in &report.quarantined {
            lines.push(format!("  quarantined: {}", path.display()));
        }
        if report.index_rebuilt {
            lines.push("  rebuilt the search index".to_owned());
        }
    }
    // After a repair, what could not be repaired is quarantined and reported above.
    let healthy = repair || report.is_healthy();
    lines.push(if healthy {
        "  ok".to_owned()
    } else if repair {
        "  repaired what could be; see above".to_owned()
    } else {
        "  problems found: run `tunnelwatch store verify --repair` with the server stopped"
            .to_owned()
    });
    Ok(VerifyOutput {
        text: lines.join("\n"),
        healthy,
    })
}

/// `tunnelwatch audit verify`: the summary, or an error naming the first entry at fault.
#[cfg(feature = "server")]
pub fn audit_verify(data_dir: &Path, public_key: Option<&Path>) -> anyhow::Result<String> {
    let (key_path, published) = match public_key {
        Some(path) => (path.to_owned(), true),
        None => (data_dir.join("audit").join("seal.pub"), false),
    };
    let key_text = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read the seal public key {}", key_path.display()))?;
    let key = store::parse_public_key(&key_text)
        .with_context(|| format!("{} holds no seal public key", key_path.display()))?;
    let store = store::Store::open_read_only(&crate::config::store_config_for_dir(data_dir))
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    let entries = store.audit_entries()?;
    let summary = store::verify_trail(entries, &key)
        .map_err(|broken| anyhow::anyhow!("the audit trail does not verify: {broken}"))?;
    let mut text = format!(
        "the audit trail verifies: {} entries (audit:{} to audit:{}), {} seals, under key {}",
        summary.n_entries,
        summary.first,
        summary.last,
        summary.n_seals,
        store::public_key_hex(&key)
    );
    if !published {
        text.push_str(&format!(
            "\nnote: checked against {}, which an intruder could have replaced: pass --public-key with the key you published",
            key_path.display()
        ));
    }
    Ok(text)
}

/// `tunnelwatch audit show`: the entries in the window, oldest first.
#[cfg(feature = "server")]
pub fn audit_show(
    data_dir: &Path,
    from: Option<jiff::Timestamp>,
    to: Option<jiff::Timestamp>,
    actor: Option<&str>,
    format: store::OutputFormat,
) -> anyhow::Result<String> {
    let store = store::Store::open_read_only(&crate::config::store_config_for_dir(data_dir))
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?;
    let entries = store.audit_entries()?.into_iter().filter(|entry| {
        from.is_none_or(|from| entry.timestamp >= from)
            && to.is_none_or(|to| entry.timestamp < to)
            && actor.is_none_or(|actor| entry.draft.actor.as_deref() == Some(actor))
    });
    let mut out = String::new();
    match format {
        store::OutputFormat::Json => {
            for entry in entries {
                out.push_str(&serde_json::to_string(&entry)?);
                out.push('\n');
            }
        }
        _ => {
            let escape = |text: &str| text.escape_debug().to_string();
            for entry in entries {
                out.push_str(&format!(
                    "{} {} {:<22} {:<9} {:<16} {:<7} {:<20} {}\n",
                    entry.id,
                    entry.timestamp,
                    escape(entry.draft.actor.as_deref().unwrap_or("-")),
                    entry.draft.role.as_deref().unwrap_or("-"),
                    escape(&entry.draft.action),
                    entry.draft.outcome.as_deref().unwrap_or("-"),
                    escape(entry.draft.target.as_deref().unwrap_or("-")),
                    escape(&entry.draft.message),
                ));
            }
        }
    }
    Ok(out)
}

/// `tunnelwatch store rebuild-index`.
#[cfg(feature = "server")]
pub fn rebuild_index(data_dir: &Path) -> anyhow::Result<String> {
    let store = store::Store::open(&crate::config::store_config_for_dir(data_dir)).context(
        "rebuilding the index needs the data directory to itself: stop the server first",
    )?;
    let n_indexed = store.rebuild_index()?;
    Ok(format!(
        "{}: indexed {n_indexed} events",
        data_dir.display()
    ))
}

/// `tunnelwatch check-config`: a short description of a valid configuration.
pub fn check_config(path: &Path) -> anyhow::Result<String> {
    let config = AppConfig::load(path)?;
    let mut lines = vec![format!("{}: configuration is valid", path.display())];
    match &config.gateway {
        Some(gateway) => {
            lines.push(format!(
                "  [gateway] server {} with {} source(s)",
                gateway.server_url,
                gateway.sources.len()
            ));
            for source in &gateway.sources {
                lines.push(format!("    {}: {}", source.name(), source.describe()));
            }
        }
        None => lines.push("  [gateway] not configured (this host runs no agent)".to_owned()),
    }
    #[cfg(feature = "server")]
    {
        lines.push(format!(
            "  [store] data in {}",
            config.store.data_dir.display()
        ));
        if let Some(root) = &config.store.root {
            lines.push(format!(
                "  [store] Parquet segments at {root} (options: {})",
                if config.store.root_options.is_empty() {
                    "none".to_owned()
                } else {
                    config
                        .store
                        .root_options
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
        lines.extend(describe_geoip(&config.collector.geoip)?);
        lines.push(format!(
            "  [dashboards] listening on {}",
            config.dashboards.listen
        ));
    }
    #[cfg(not(feature = "server"))]
    lines.push("  server sections not checked: this build has only the gateway".to_owned());
    Ok(lines.join("\n"))
}

/// `check-config`'s lines for `[collector.geoip]`; an error if a database cannot be used.
#[cfg(feature = "server")]
fn describe_geoip(config: &collector::GeoIpConfig) -> anyhow::Result<Vec<String>> {
    let databases = [("city_db", &config.city_db), ("asn_db", &config.asn_db)];
    if databases.iter().all(|(_, path)| path.is_none()) {
        return Ok(vec![
            "  [collector.geoip] no databases: client locations are not looked up".to_owned(),
        ]);
    }
    let mut lines = Vec::new();
    for (key, path) in databases {
        let Some(path) = path else { continue };
        let info = collector::geoip::probe_database(path)
            .with_context(|| format!("[collector.geoip] {key}"))?;
        let built = Timestamp::from_second(i64::try_from(info.build_epoch).unwrap_or(i64::MAX))
            .map_or_else(
                |_| info.build_epoch.to_string(),
                |at| at.strftime("%F").to_string(),
            );
        lines.push(format!(
            "  [collector.geoip] {key} {}: {} built {built}, IPv{}, {} bytes",
            path.display(),
            info.database_type,
            info.ip_version,
            info.size_bytes
        ));
    }
    Ok(lines)
}

/// A source id for a file: the same file (by canonical path and first bytes) always gets the
/// same one, so importing it twice stores its lines once, while a different file at the same
/// path (rotated, rewritten) gets its own, so none of its lines are taken for duplicates.
pub(crate) fn source_id(path: &Path) -> anyhow::Result<String> {
    if path == Path::new("-") {
        // Only `parse` reads standard input, and it stores nothing.
        return Ok("stdin".to_owned());
    }
    let canonical =
        std::fs::canonicalize(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut head = vec![0u8; 4096];
    let mut file = std::fs::File::open(&canonical)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut filled = 0;
    while filled < head.len() {
        let n_read = file
            .read(&mut head[filled..])
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n_read == 0 {
            break;
        }
        filled += n_read;
    }
    Ok(format!(
        "file:{}#{}",
        canonical.display(),
        content_tag(&head[..filled])
    ))
}

/// 16 hex digits of FNV-1a over `bytes`.
fn content_tag(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Calls `each(seq, line, full_len)` for every line of a file (or stdin for `-`), with the
/// same line splitting and oversized-line handling as the gateway's tailer.
fn for_each_line(
    path: &Path,
    mut each: impl FnMut(u64, &[u8], usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if path == Path::new("-") {
        let mut input = Vec::new();
        std::io::stdin()
            .read_to_end(&mut input)
            .context("cannot read stdin")?;
        let input = input.strip_suffix(b"\n").unwrap_or(&input);
        if !input.is_empty() {
            for (seq, line) in input.split(|&byte| byte == b'\n').enumerate() {
                each(seq as u64, line, line.len())?;
            }
        }
        return Ok(());
    }
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !metadata.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let options = TailOptions {
        rotate_grace: std::time::Duration::ZERO,
        ..TailOptions::default()
    };
    let (mut tailer, _) = FileTailer::open(path, None, options)
        .with_context(|| format!("cannot read {}", path.display()))?;
    loop {
        let poll = tailer
            .poll()
            .with_context(|| format!("cannot read {}", path.display()))?;
        if poll.n_bytes == 0 && poll.lines.is_empty() {
            break;
        }
        for line in &poll.lines {
            each(line.seq, &line.bytes, line.len)?;
        }
    }
    // A last line without a newline.
    let tail = tailer.take_partial();
    if let Some(line) = tail {
        each(line.seq, &line.bytes, line.len)?;
    }
    Ok(())
}
