//! Capture files as input: `tunnelwatch parse --format pcap FILE` and `ingest pcap:FILE`.
//! The flow table is the gateway's (`gateway::flow`), the very one the live capture uses.

use std::io::{BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::Context;
use gateway::flow::{CaptureReport, FlowConfig, FlowSource};
use model::{Event, Observer};

/// Events handed on at once.
const BATCH: usize = 5000;

/// A flow source for a capture file: the same file gives the same event ids.
pub fn source_for(path: &Path, hostname: Option<String>) -> anyhow::Result<FlowSource> {
    let source_id = crate::commands::source_id(path)?;
    Ok(FlowSource::new(
        source_id,
        Observer {
            hostname,
            product: Some("tunnelwatch".to_owned()),
        },
        1,
    ))
}

/// Reads a capture file into flow events, handing batches to `sink`.
pub fn read(
    path: &Path,
    source: &mut FlowSource,
    config: FlowConfig,
    sink: impl FnMut(Vec<Event>) -> anyhow::Result<()>,
) -> anyhow::Result<CaptureReport> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !file.metadata().is_ok_and(|metadata| metadata.is_file()) {
        anyhow::bail!("{} is not a regular file", path.display());
    }
    gateway::flow::read_capture(
        BufReader::with_capacity(1 << 20, file),
        config,
        source,
        BATCH,
        sink,
    )
}

/// `tunnelwatch parse --format pcap FILE`: flow events as JSON lines on stdout.
pub fn parse(path: &Path, hostname: Option<String>) -> anyhow::Result<CaptureReport> {
    let mut source = source_for(path, hostname)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let report = read(path, &mut source, FlowConfig::default(), |events| {
        for event in &events {
            serde_json::to_writer(&mut out, event).context("cannot write an event")?;
            out.write_all(b"\n").context("cannot write to stdout")?;
        }
        Ok(())
    })?;
    out.flush().context("cannot write to stdout")?;
    Ok(report)
}

/// The summary line of a capture file, and the error that cut it short, if any.
pub fn summary(path: &Path, report: &CaptureReport) -> String {
    match &report.error {
        None => format!("{}: {}", path.display(), report.stats),
        Some(error) => format!(
            "{}: {} (stopped early: {error}; the flows before it were read)",
            path.display(),
            report.stats
        ),
    }
}
