//! The tunnelwatch gateway agent: it runs on the VPN host, turns what the VPN says into
//! [`model::Event`]s and ships them to the server without losing any.
//!
//! The front door is [`run`]: given a [`Config`], it follows every configured log source with
//! a [`tail::FileTailer`], parses lines with a [`parse::Parser`], appends the events to the
//! on-disk [`spool::Spool`] (fsync) before moving the source's [`tail::Checkpoint`], and ships
//! spooled batches to the server with a [`ship::Shipper`], moving the spool's cursor only
//! after the server acknowledged a batch as durable. Every event carries a (source, sequence)
//! id, so the server stores a resent batch once.
//!
//! The parsers are pure and also used on their own: `tunnelwatch parse` and `tunnelwatch
//! ingest` call [`parse::Parser`] directly.
//!
//! This crate never links Arrow, DataFusion or tantivy: it is what runs on the VPN host.

pub mod certificates;
mod config;
mod error;
pub mod flow;
pub mod parse;
pub mod radius;
pub mod ship;
pub mod sink;
pub mod spool;
pub mod syslog_server;
pub mod tail;
pub mod vici;

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use tokio::sync::watch;

pub use config::{Config, SourceConfig, StartAt};
pub use error::{Error, Result};

use parse::{LogClock, ParseOptions, Parser};
use ship::{Backoff, Refusal, Shipper};
use sink::{SharedSpool, Sink};
use spool::Spool;
use tail::{Checkpoint, FileTailer, TailOptions};

/// Runs the agent until `shutdown` resolves. `token` is the bearer token for the server
/// (read from `token_file` by the caller).
pub async fn run(
    config: &Config,
    gateway_name: &str,
    token: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    config.validate()?;
    let tz = TimeZone::get(&config.timezone)
        .map_err(|error| Error::Config(format!("time zone `{}`: {error}", config.timezone)))?;
    let trust = match &config.tls_ca_file {
        Some(path) => ship::Trust::Pem {
            path: path.clone(),
            pem: std::fs::read(path).map_err(|error| Error::io("read tls_ca_file", path, error))?,
        },
        None => ship::Trust::System,
    };
    let identity = match (&config.tls_client_cert_file, &config.tls_client_key_file) {
        (Some(cert_path), Some(key_path)) => Some(ship::ClientIdentity {
            cert_path: cert_path.clone(),
            chain_pem: std::fs::read(cert_path)
                .map_err(|error| Error::io("read tls_client_cert_file", cert_path, error))?,
            key_pem: std::fs::read(key_path)
                .map_err(|error| Error::io("read tls_client_key_file", key_path, error))?,
        }),
        // `validate` refused one without the other.
        _ => None,
    };
    let shipper = Shipper::new(
        &config.server_url,
        token,
        gateway_name,
        &trust,
        identity.as_ref(),
    )?;
    durable::create_dir_all(&config.state_dir.join("checkpoints"))?;
    let spool = Spool::open(&config.state_dir.join("spool"), config.spool_max_bytes)?;
    let spool = SharedSpool::new(spool);
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut tasks = tokio::task::JoinSet::new();
    // Live sources start a new epoch on every run: their sequence numbers are not replayed.
    let epoch = Timestamp::now().as_microsecond();
    for source in &config.sources {
        let (format, path, start_at, json_mapping) = match source {
            SourceConfig::File {
                format,
                path,
                start_at,
                json_mapping,
                ..
            } => (format, path, start_at, json_mapping),
            SourceConfig::Vici { socket, .. } => {
                durable::create_dir_all(&config.state_dir.join("vici"))?;
                let source_id = format!("{gateway_name}/{}@{epoch}", source.name());
                let sink = Sink::new(spool.clone(), source_id, 0, config.batch_max_events);
                let vici = vici::ViciSource {
                    socket: socket.clone(),
                    state_path: config
                        .state_dir
                        .join("vici")
                        .join(format!("{}.json", source.name())),
                    hostname: gateway_name.to_owned(),
                };
                tasks.spawn(vici.run(sink, stop_rx.clone()));
                continue;
            }
            SourceConfig::Radius {
                listen,
                secret_file,
                clients,
                ..
            } => {
                let receiver = radius::RadiusReceiver::bind(&radius::RadiusConfig {
                    listen: *listen,
                    secret_file: secret_file.clone(),
                    clients: clients.clone(),
                })
                .await?;
                tracing::info!(source = %source.name(), listen = %receiver.local_addr(), "RADIUS accounting receiver listening");
                let source_id = format!("{gateway_name}/{}@{epoch}", source.name());
                let sink = Sink::new(spool.clone(), source_id, 0, config.batch_max_events);
                tasks.spawn(receiver.run(sink, stop_rx.clone()));
                continue;
            }
            SourceConfig::Capture {
                interface,
                link,
                ring,
                ..
            } => {
                let options = flow::capture::CaptureOptions {
                    link: *link,
                    ring: *ring,
                    ..flow::capture::CaptureOptions::new(interface)
                };
                let flow_config = source.flow_config().unwrap_or_default();
                let source_id = format!("{gateway_name}/{}@{epoch}", source.name());
                let sink = Sink::new(spool.clone(), source_id, 0, config.batch_max_events);
                let observer = model::Observer {
                    hostname: Some(gateway_name.to_owned()),
                    product: Some("tunnelwatch".to_owned()),
                };
                tasks.spawn(flow::capture::run_source(
                    options,
                    flow_config,
                    observer,
                    sink,
                    std::sync::Arc::default(),
                    stop_rx.clone(),
                ));
                continue;
            }
            SourceConfig::Certificates {
                dir,
                vici,
                every_secs,
                ..
            } => {
                let source_id = format!("{gateway_name}/{}@{epoch}", source.name());
                let sink = Sink::new(spool.clone(), source_id, 0, config.batch_max_events);
                let scanner = certificates::Scanner {
                    dir: dir.clone(),
                    vici: vici.clone(),
                    every: std::time::Duration::from_secs(*every_secs),
                    hostname: gateway_name.to_owned(),
                };
                tasks.spawn(scanner.run(sink, stop_rx.clone()));
                continue;
            }
            SourceConfig::Syslog {
                udp,
                tcp,
                max_connections,
                ..
            } => {
                let server =
                    syslog_server::SyslogServer::bind(&syslog_server::SyslogServerConfig {
                        udp: *udp,
                        tcp: *tcp,
                        max_connections: *max_connections,
                    })
                    .await?;
                let (udp_addr, tcp_addr) = server.local_addrs();
                tracing::info!(source = %source.name(), udp = ?udp_addr, tcp = ?tcp_addr, "syslog server listening");
                let source_id = format!("{gateway_name}/{}@{epoch}", source.name());
                let sink = Sink::new(spool.clone(), source_id, 0, config.batch_max_events);
                let mut options = ParseOptions::new(
                    String::new(),
                    LogClock::new(tz.clone(), None, Timestamp::now()),
                );
                options.max_line_bytes = config.max_line_bytes;
                tasks.spawn(server.run(sink, options, stop_rx.clone()));
                continue;
            }
        };
        let mut parse_options = ParseOptions::new(
            String::new(),
            LogClock::new(tz.clone(), None, Timestamp::now()),
        );
        parse_options.hostname = Some(gateway_name.to_owned());
        parse_options.max_line_bytes = config.max_line_bytes;
        if let Some(mapping) = json_mapping {
            parse_options.json_mapping = std::sync::Arc::new(parse::JsonMapping::clone(mapping));
        }
        let follower = Follower {
            source_name: format!("{gateway_name}/{}", source.name()),
            path: path.clone(),
            checkpoint_path: config
                .state_dir
                .join("checkpoints")
                .join(format!("{}.json", source.name())),
            tail_options: TailOptions {
                from_end: *start_at == StartAt::End,
                max_line_bytes: config.max_line_bytes,
                rotate_grace: Duration::from_millis(config.rotate_grace_ms),
            },
            format: *format,
            parse_options,
            batch_max_events: config.batch_max_events,
            poll_interval: Duration::from_millis(config.poll_interval_ms),
        };
        tasks.spawn(follower.run(spool.clone(), stop_rx.clone()));
    }
    let shipping = Shipping {
        shipper,
        batch_max_events: config.batch_max_events,
        batch_max_wait: Duration::from_millis(config.batch_max_wait_ms),
        dead_letter_dir: config.state_dir.join("dead-letter"),
    };
    tasks.spawn(shipping.run(spool, stop_rx));

    tokio::select! {
        () = shutdown => {}
        Some(joined) = tasks.join_next() => {
            // A task only ends early on an error it cannot get past (e.g. the state
            // directory became unwritable).
            let _ = stop_tx.send(true);
            return match joined {
                Ok(result) => result,
                Err(join_error) => Err(Error::task_failed("gateway", join_error)),
            };
        }
    }
    let _ = stop_tx.send(true);
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Err(error)) = joined {
            tracing::warn!(%error, "gateway task ended with an error during shutdown");
        }
    }
    Ok(())
}

/// Follows one file: tail, parse, spool, checkpoint.
struct Follower {
    /// `<gateway>/<source>`; the tailer's epoch is appended to make the source id.
    source_name: String,
    path: PathBuf,
    checkpoint_path: PathBuf,
    tail_options: TailOptions,
    format: parse::Format,
    parse_options: ParseOptions,
    batch_max_events: usize,
    poll_interval: Duration,
}

impl Follower {
    async fn run(self, spool: SharedSpool, mut stop: watch::Receiver<bool>) -> Result<()> {
        let checkpoint = Checkpoint::load(&self.checkpoint_path)?;
        let had_checkpoint = checkpoint.is_some();
        let (mut tailer, notices) = FileTailer::open(&self.path, checkpoint, self.tail_options)?;
        for notice in notices {
            tracing::warn!(source = %self.source_name, "{notice}");
        }
        if !had_checkpoint {
            // The epoch must be on disk before any event of it is spooled: otherwise a crash
            // would restart the sequence under a new epoch and store those lines twice.
            tailer.checkpoint().store(&self.checkpoint_path)?;
        }
        let source_id = format!("{}@{}", self.source_name, tailer.epoch());
        let mut parse_options = self.parse_options.clone();
        parse_options.source.clone_from(&source_id);
        let mut parser = Parser::new(self.format, parse_options);
        // Line sequence numbers come from the tailer; the sink only spools.
        let sink = Sink::new(spool, source_id.clone(), 0, self.batch_max_events);
        tracing::info!(source = %source_id, path = %self.path.display(), "following log file");
        let mut n_reported_rejects = 0;
        loop {
            let (returned_tailer, polled) = tokio::task::spawn_blocking(move || {
                let polled = tailer.poll();
                (tailer, polled)
            })
            .await
            .map_err(|join_error| Error::task_failed("tail", join_error))?;
            tailer = returned_tailer;
            let polled = polled?;
            for notice in &polled.notices {
                tracing::info!(source = %source_id, "{notice}");
            }
            let had_lines = !polled.lines.is_empty();
            if had_lines || !polled.notices.is_empty() {
                let now = Timestamp::now();
                parser.set_now(now);
                let mut events = Vec::with_capacity(polled.lines.len());
                for line in &polled.lines {
                    if line.len > line.bytes.len() {
                        parser.parse_oversized(&line.bytes, line.len, line.seq, now, &mut events);
                    } else {
                        parser.parse_line(&line.bytes, line.seq, now, &mut events);
                    }
                }
                let n_rejected = parser.stats().n_rejected();
                if n_rejected > n_reported_rejects {
                    tracing::warn!(source = %source_id, n_rejected, stats = %parser.stats(), "rejected log lines (kept as pipeline errors)");
                    n_reported_rejects = n_rejected;
                }
                let checkpoint = tailer.checkpoint();
                if !sink.append(events, &mut stop).await? {
                    return Ok(());
                }
                let checkpoint_path = self.checkpoint_path.clone();
                tokio::task::spawn_blocking(move || checkpoint.store(&checkpoint_path))
                    .await
                    .map_err(|join_error| Error::task_failed("checkpoint", join_error))??;
            }
            if !had_lines && polled.n_bytes == 0 {
                tokio::select! {
                    () = tokio::time::sleep(self.poll_interval) => {}
                    _ = stop.changed() => return Ok(()),
                }
            } else if *stop.borrow() {
                return Ok(());
            }
        }
    }
}

/// Ships spooled batches until stopped.
struct Shipping {
    shipper: Shipper,
    batch_max_events: usize,
    batch_max_wait: Duration,
    /// Batches the server refused as invalid (4xx other than auth) are kept here, never
    /// dropped, so that one bad batch cannot stop delivery of everything behind it.
    dead_letter_dir: PathBuf,
}

impl Shipping {
    async fn run(self, spool: SharedSpool, mut stop: watch::Receiver<bool>) -> Result<()> {
        let mut backoff = Backoff::new();
        let mut failing_since: Option<Timestamp> = None;
        let batch_max_events = self.batch_max_events;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let peeked = spool
                .with(move |spool| {
                    spool.peek(batch_max_events, model::wire::MAX_INGEST_BODY_BYTES / 4)
                })
                .await?;
            let Some(peeked) = peeked else {
                tokio::select! {
                    () = spool.spooled() => {}
                    () = tokio::time::sleep(self.batch_max_wait) => {}
                    _ = stop.changed() => return Ok(()),
                }
                continue;
            };
            let n_events = peeked.events.len();
            let result = tokio::select! {
                result = self.deliver(peeked.events) => result,
                _ = stop.changed() => return Ok(()),
            };
            match result {
                Ok(ack) => {
                    spool.with(move |spool| spool.commit(peeked.next)).await?;
                    if let Some(since) = failing_since.take() {
                        tracing::info!(%since, "server reachable again");
                    }
                    tracing::debug!(
                        n_events,
                        accepted = ack.accepted,
                        duplicates = ack.duplicates,
                        "batch shipped"
                    );
                    backoff.reset();
                }
                Err(error) => {
                    let delay = backoff.next_delay();
                    if failing_since.is_none() {
                        failing_since = Some(Timestamp::now());
                    }
                    tracing::warn!(%error, n_events, retry_in_ms = delay.as_millis() as u64, "shipping failed; events stay spooled");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return Ok(()),
                    }
                }
            }
        }
    }

    /// Sends events, halving a batch the server finds too large and setting aside one it
    /// refuses as invalid. An error means "retry all of it later" (the server drops resends).
    async fn deliver(&self, events: Vec<model::Event>) -> Result<model::IngestAck> {
        let mut total = model::IngestAck::default();
        let mut pending = vec![events];
        while let Some(mut chunk) = pending.pop() {
            match self.shipper.send(&chunk).await {
                Ok(ack) => {
                    total.accepted += ack.accepted;
                    total.duplicates += ack.duplicates;
                }
                Err(Error::Rejected {
                    refusal: Refusal::TooLarge,
                    ..
                }) if chunk.len() > 1 => {
                    let second_half = chunk.split_off(chunk.len() / 2);
                    pending.push(second_half);
                    pending.push(chunk);
                }
                Err(
                    error @ Error::Rejected {
                        refusal: Refusal::TooLarge | Refusal::Invalid,
                        ..
                    },
                ) => {
                    let path = self.dead_letter(&chunk, &error)?;
                    tracing::error!(%error, n_events = chunk.len(), path = %path.display(), "the server refused a batch; kept it as a dead letter and went on");
                }
                Err(error) => return Err(error),
            }
        }
        Ok(total)
    }

    fn dead_letter(&self, events: &[model::Event], error: &Error) -> Result<PathBuf> {
        durable::create_dir_all(&self.dead_letter_dir)?;
        let path = self
            .dead_letter_dir
            .join(format!("{}.json", Timestamp::now().as_microsecond()));
        let body = serde_json::json!({ "error": error.to_string(), "events": events });
        let bytes = serde_json::to_vec(&body)
            .map_err(|error| Error::Internal(format!("cannot encode a dead letter: {error}")))?;
        durable::write_atomic(&path, &bytes)?;
        Ok(path)
    }
}
