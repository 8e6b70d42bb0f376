//! Command-line parsing and dispatch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::commands::{self, TimeOptions};
use crate::config::{AppConfig, read_secret};

#[derive(Debug, Parser)]
#[command(
    name = "tunnelwatch",
    version,
    about = "Watch a VPN and respond to what it sees",
    propagate_version = true
)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace) or a tracing filter such as `gateway=debug`.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run everything in one process with replayed real strongSwan logs.
    #[cfg(feature = "server")]
    Demo {
        /// Address of the console and API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data directory to keep (default: a temporary one, removed on exit).
        #[arg(long)]
        data: Option<PathBuf>,
        /// A City database (.mmdb: GeoIP2, GeoLite2 or DB-IP Lite) to locate clients with;
        /// the replayed clients then connect from public addresses.
        #[arg(long, value_name = "PATH")]
        geoip: Option<PathBuf>,
    },
    /// Run the server: ingest endpoint, collector, store, console and API.
    #[cfg(feature = "server")]
    Server {
        #[arg(long)]
        config: PathBuf,
        /// Overrides `[dashboards] listen`.
        #[arg(long)]
        listen: Option<String>,
        /// Overrides `[store] data_dir`.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Overrides `[collector.geoip] city_db`: a City database (.mmdb).
        #[arg(long, value_name = "PATH")]
        geoip: Option<PathBuf>,
    },
    /// Run the agent on a VPN host: tail logs and ship events to the server.
    Gateway {
        #[arg(long)]
        config: PathBuf,
    },
    /// Parse a log file and print normalized events as JSON lines.
    Parse {
        /// Log format: charon, pluto, xl2tpd, pppd, radius-detail or syslog (a syslog file of
        /// any of these daemons, RFC 3164 or RFC 5424); nginx (combined), nginx-json, envoy
        /// (JSON access logs) or json (JSON lines, keys from --json-mapping) for API requests;
        /// or pcap (a pcap or pcapng capture of any interface: Ethernet, raw IP as on a TUN
        /// device, `-i any`), printed as flows.
        #[arg(long)]
        format: commands::InputFormat,
        /// The file, or `-` for standard input.
        file: PathBuf,
        /// Year of timestamps that carry none (default: the current year).
        #[arg(long)]
        year: Option<i16>,
        /// Time zone of timestamps that carry none (IANA name; default UTC).
        #[arg(long)]
        tz: Option<String>,
        /// `observer.hostname` for lines that do not name their host.
        #[arg(long)]
        hostname: Option<String>,
        /// For --format json: a TOML file saying which keys give which field (`method =
        /// "http.request.method"`…; fields left out keep the ECS defaults).
        #[arg(long, value_name = "FILE")]
        json_mapping: Option<PathBuf>,
    },
    /// Import log files through the server's pipeline into a data directory.
    #[cfg(feature = "server")]
    Ingest {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        year: Option<i16>,
        #[arg(long)]
        tz: Option<String>,
        #[arg(long)]
        hostname: Option<String>,
        /// A City database (.mmdb: GeoIP2, GeoLite2 or DB-IP Lite) to locate clients with.
        #[arg(long, value_name = "PATH")]
        geoip: Option<PathBuf>,
        /// For json inputs: a TOML file saying which keys give which field (see `parse`).
        #[arg(long, value_name = "FILE")]
        json_mapping: Option<PathBuf>,
        /// The server's configuration: its [alerting] rules (and receivers, for --notify)
        /// run over the history instead of the shipped rules alone.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Page the receivers of --config for the alerts found (off by default: old logs
        /// seldom need waking anyone).
        #[arg(long)]
        notify: bool,
        /// FORMAT:FILE, for example charon:/var/log/charon.log (formats: charon, pluto,
        /// xl2tpd, pppd, radius-detail, syslog, nginx, nginx-json, envoy, json, and pcap for
        /// pcap/pcapng captures)
        #[arg(required = true)]
        inputs: Vec<commands::InputSpec>,
    },
    /// Run a SQL query over a data directory (safe while a server writes to it).
    #[cfg(feature = "server")]
    Sql {
        query: String,
        #[arg(long)]
        data: PathBuf,
        /// table, csv or json (one object per line).
        #[arg(long, default_value = "table")]
        format: store::OutputFormat,
    },
    /// Full-text search over every event of a data directory (safe while a server writes).
    ///
    /// Bare words search the log line, the user, identities and the reason; `field:value`
    /// one field; "a phrase"; AND, OR, NOT, -exclude, parentheses; ranges such as
    /// `ip:[10.99.0.0 TO 10.99.0.255]` or `timestamp:[2026-11-25T00:00:00Z TO *]`. Fields:
    /// raw, user, identity, reason, ip, session, id, dataset, action, outcome, failure, host,
    /// connection, timestamp. Newest events first.
    #[cfg(feature = "server")]
    Search {
        query: String,
        #[arg(long)]
        data: PathBuf,
        /// Only events at or after this time (RFC 3339, e.g. 2026-11-25T08:00:00Z).
        #[arg(long)]
        from: Option<jiff::Timestamp>,
        /// Only events before this time (RFC 3339).
        #[arg(long)]
        to: Option<jiff::Timestamp>,
        /// At most this many events (1 to 10000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// table, csv or json (one object per line).
        #[arg(long, default_value = "table")]
        format: store::OutputFormat,
    },
    /// Check or repair a data directory.
    #[cfg(feature = "server")]
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Operator accounts of the console and API (works while the server runs).
    #[cfg(feature = "server")]
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// API tokens for scripts, and gateway credentials (works while the server runs).
    #[cfg(feature = "server")]
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Alerts the rules raised: list them or show one (reads the data directory; safe while
    /// a server runs).
    #[cfg(feature = "server")]
    Alerts {
        #[command(subcommand)]
        action: AlertsAction,
    },
    /// Silences: mute the pages of matching alerts for a while, list them, end one.
    #[cfg(feature = "server")]
    Silence {
        #[command(subcommand)]
        action: SilenceAction,
    },
    /// Alert rules: check a rule file or directory, or replay events through it.
    #[cfg(feature = "server")]
    Rules {
        #[command(subcommand)]
        action: RulesAction,
    },
    /// The audit trail: check its hash chain and seals, or print it.
    #[cfg(feature = "server")]
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Check a configuration file and say what it configures.
    CheckConfig { file: PathBuf },
}

#[cfg(feature = "server")]
#[derive(Debug, Subcommand)]
pub enum AlertsAction {
    /// Each alert in its current state, newest change first.
    List {
        #[arg(long)]
        data: PathBuf,
        /// open (firing or acknowledged), firing, acknowledged or resolved.
        #[arg(long)]
        status: Option<String>,
        /// table or json (one object per line).
        #[arg(long, default_value = "table")]
        format: store::OutputFormat,
    },
    /// One alert: what it is about, its evidence and every change of its state.
    Show {
        id: String,
        #[arg(long)]
        data: PathBuf,
    },
    /// Acknowledge an open alert (through the running server; audited).
    Ack {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        data: PathBuf,
    },
    /// Resolve an open alert (through the running server; audited).
    Resolve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        data: PathBuf,
    },
    /// Assign an open alert to someone (through the running server; audited).
    Assign {
        id: String,
        /// Who takes it (an account name or any name on-call use).
        #[arg(long)]
        to: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        data: PathBuf,
    },
}

#[cfg(feature = "server")]
#[derive(Debug, Subcommand)]
pub enum SilenceAction {
    /// Silence the pages of matching alerts for a while (through the running server; audited).
    Add {
        /// NAME=VALUE, repeatable: `rule`, `severity`, `user`, `source_ip` or a group label
        /// such as `user.name`; every one must hold.
        #[arg(long = "match", value_name = "NAME=VALUE", required = true)]
        matchers: Vec<String>,
        /// Why (what on-call reads).
        #[arg(long)]
        comment: String,
        /// How long: 30m, 2h, 1d (at most 90d).
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        #[arg(long)]
        data: PathBuf,
    },
    /// The silences: active, pending and expired.
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// End a silence now.
    Expire {
        id: String,
        #[arg(long)]
        data: PathBuf,
    },
}

#[cfg(feature = "server")]
#[derive(Debug, Subcommand)]
pub enum RulesAction {
    /// Load a rule file (one rule) or a directory of them: each rule, or why it cannot run.
    Check { path: PathBuf },
    /// Replay events (JSON lines as `tunnelwatch parse` prints them) through a rule file or
    /// directory in event time: what would fire, when and why.
    Test { rules: PathBuf, events: PathBuf },
    /// Compile Sigma rules (YAML, with their correlations) into tunnelwatch rules: printed
    /// as TOML, or one file per rule in --out; what is not supported is named.
    ImportSigma {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The field and logsource mapping (TOML); default: the built-in one.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// Write DIR/<id>.toml per rule (a rules_dir) instead of printing.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

#[cfg(feature = "server")]
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check every hash and every seal; exit code 1 naming the first entry at fault (an
    /// edited, removed, reordered or added entry, one after the last seal, a seal under
    /// another key). Safe while a server runs (its newest entries may await their seal).
    Verify {
        #[arg(long)]
        data: PathBuf,
        /// The seal public key you published (64 hex digits, as in DATA/audit/seal.pub);
        /// without it, the one in the data directory, which an intruder could have replaced.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Print the audit trail, oldest first.
    Show {
        #[arg(long)]
        data: PathBuf,
        /// Only entries at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<jiff::Timestamp>,
        /// Only entries before this time (RFC 3339).
        #[arg(long)]
        to: Option<jiff::Timestamp>,
        /// Only entries of this actor (an account, `cli:USER`, `token:NAME`, `server`).
        #[arg(long)]
        actor: Option<String>,
        /// table or json (one object per line).
        #[arg(long, default_value = "table")]
        format: store::OutputFormat,
    },
}

#[cfg(feature = "server")]
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add an operator (the password is asked for, or read from standard input).
    Add {
        name: String,
        /// viewer, analyst, responder or admin (each includes the one before).
        #[arg(long)]
        role: dashboards::access::Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        data: PathBuf,
    },
    /// List operators (never their secrets).
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Set an operator's password; their signed-in sessions end.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        data: PathBuf,
    },
    /// Disable an operator: their sessions end now and they cannot sign in.
    Disable {
        name: String,
        #[arg(long)]
        data: PathBuf,
    },
    /// Enable a disabled operator.
    Enable {
        name: String,
        #[arg(long)]
        data: PathBuf,
    },
    /// Enrol a TOTP second factor and print its otpauth:// URI for an authenticator app.
    Totp {
        name: String,
        #[arg(long)]
        data: PathBuf,
    },
}

#[cfg(feature = "server")]
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Create a token and print it (the only time it is shown; only its hash is kept).
    Create {
        name: String,
        /// What the token may do in the API: viewer, analyst, responder or admin.
        #[arg(long, required_unless_present = "gateway", conflicts_with = "gateway")]
        role: Option<dashboards::access::Role>,
        /// A gateway's credential instead: it may only send events, in the name of gateway
        /// NAME and from its sources.
        #[arg(long)]
        gateway: bool,
        /// With --gateway: the subject of the client certificate the gateway presents under
        /// mutual TLS.
        #[arg(long, requires = "gateway")]
        client_subject: Option<String>,
        /// The token stops working after this many days (1 to 3650; default: never).
        #[arg(long)]
        expires_days: Option<u32>,
        #[arg(long)]
        data: PathBuf,
    },
    /// List tokens: name, grant, expiry, state (never the tokens).
    List {
        #[arg(long)]
        data: PathBuf,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        name: String,
        #[arg(long)]
        data: PathBuf,
    },
}

#[cfg(feature = "server")]
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Read every row of every segment and check the search index; exit code 1 on a
    /// problem. Safe while a server runs, unless --repair.
    Verify {
        #[arg(long)]
        data: PathBuf,
        /// Move corrupt segments to DATA/quarantine/ and rebuild the search index (the
        /// server must be stopped).
        #[arg(long)]
        repair: bool,
    },
    /// Rebuild the full-text index from the Parquet segments (the server must be stopped).
    RebuildIndex {
        #[arg(long)]
        data: PathBuf,
    },
}

/// Parses the command line, runs the command, and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_level);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(level: &str) {
    // RUST_LOG wins when set, as users of Rust tools expect.
    #[allow(clippy::disallowed_methods)]
    let filter = std::env::var("RUST_LOG")
        .ok()
        .unwrap_or_else(|| level.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

/// How often the server looks for changed rules.
#[cfg(feature = "server")]
const RULES_RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        #[cfg(feature = "server")]
        Command::Demo {
            listen,
            data,
            geoip,
        } => runtime()?.block_on(crate::demo::run(
            crate::demo::DemoOptions {
                listen,
                data_dir: data,
                geoip,
            },
            shutdown_signal(),
        )),
        #[cfg(feature = "server")]
        Command::Server {
            config,
            listen,
            data,
            geoip,
        } => {
            let config_path = config;
            let mut config = AppConfig::load(&config_path)?;
            if let Some(city_db) = geoip {
                config.collector.geoip.city_db = Some(city_db);
            }
            let mut store_config = crate::config::with_object_store_env(config.store.clone());
            if let Some(data) = data {
                store_config.data_dir = data;
            }
            let listen = listen.unwrap_or_else(|| config.dashboards.listen.clone());
            let ingest_token = config
                .dashboards
                .ingest_token_file
                .as_deref()
                .map(read_secret)
                .transpose()?;
            if ingest_token.is_some() {
                tracing::info!(
                    "[dashboards] ingest_token_file: one credential for every gateway; with several gateways, give each its own (tunnelwatch token create NAME --gateway) and a warning follows when a second gateway uses the shared one"
                );
            }
            if config.dashboards.allow_unauthenticated_ingest {
                tracing::warn!(
                    "[dashboards] allow_unauthenticated_ingest: anyone who reaches {listen} can send events in any gateway's name"
                );
            }
            let tls = crate::config::server_tls(&config.dashboards)?;
            runtime()?.block_on(async move {
                let listener = crate::server::bind(&listen).await?;
                let settings = crate::server::ServerSettings {
                    store: store_config,
                    collector: config.collector.clone(),
                    ingest_token,
                    tls,
                    client_certificates: config.dashboards.tls_client_ca_file.is_some(),
                    access: config.dashboards.access_settings(),
                    allow_unauthenticated_ingest: config.dashboards.allow_unauthenticated_ingest,
                    alerting: config.alerting.clone(),
                };
                let mut server = crate::server::RunningServer::start(settings, listener).await?;
                // The rules follow the configuration file (and its rules_dir and sigma_dir): a
                // change is in force within seconds, an invalid one is refused and reported.
                let _watch = server.alerting.watch_rules(RULES_RELOAD_EVERY, move || {
                    AppConfig::load(&config_path)
                        .map(|config| config.alerting)
                        .map_err(|error| format!("{error:#}"))
                });
                tokio::select! {
                    () = shutdown_signal() => server.shutdown().await,
                    result = server.wait() => result,
                }
            })
        }
        Command::Gateway { config } => {
            let config = AppConfig::load(&config)?;
            let Some(gateway_config) = config.gateway else {
                anyhow::bail!("the configuration has no [gateway] section");
            };
            let token = gateway_config
                .token_file
                .as_deref()
                .map(read_secret)
                .transpose()?;
            let name = gateway_config.name.clone().unwrap_or_else(host_name);
            runtime()?.block_on(async move {
                gateway::run(&gateway_config, &name, token, shutdown_signal())
                    .await
                    .context("the gateway agent failed")
            })
        }
        Command::Parse {
            format,
            file,
            year,
            tz,
            hostname,
            json_mapping,
        } => {
            let format = match format {
                commands::InputFormat::Log(format) => format,
                commands::InputFormat::Pcap => {
                    let report = crate::pcap::parse(&file, hostname)?;
                    eprintln!("{}", crate::pcap::summary(&file, &report));
                    return match report.error {
                        Some(error) => Err(anyhow::anyhow!(error)
                            .context(format!("{} is cut short or corrupt", file.display()))),
                        None => Ok(()),
                    };
                }
            };
            let stats = commands::parse(
                format,
                &file,
                &TimeOptions { year, tz },
                hostname,
                json_mapping.as_deref(),
            )?;
            eprintln!("{}: {stats}", file.display());
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Ingest {
            data,
            year,
            tz,
            hostname,
            geoip,
            json_mapping,
            config,
            notify,
            inputs,
        } => {
            let rules = commands::IngestAlerting {
                config: match &config {
                    Some(path) => AppConfig::load(path)?.alerting,
                    None => alerting::Config::default(),
                },
                notify,
            };
            let outcome = runtime()?.block_on(commands::ingest(
                &data,
                &inputs,
                &TimeOptions { year, tz },
                hostname,
                geoip.as_deref(),
                json_mapping.as_deref(),
                &rules,
            ))?;
            let mut stopped_early = Vec::new();
            for report in outcome.files {
                println!(
                    "{}: {}; stored {} events ({} already there)",
                    report.path.display(),
                    report.summary,
                    report.accepted,
                    report.duplicates
                );
                if let Some(error) = report.stopped_early {
                    stopped_early.push(format!("{}: {error}", report.path.display()));
                }
            }
            if outcome.alerts.is_empty() {
                println!("alerts: none fired");
            } else {
                println!("alerts: {} fired", outcome.alerts.len());
                for alert in &outcome.alerts {
                    println!(
                        "  {} {} {}: {}",
                        alert.alert_id,
                        alert.severity,
                        alert.rule_id,
                        crate::alerts_cli::printable(&alert.message)
                    );
                }
            }
            if !stopped_early.is_empty() {
                anyhow::bail!(
                    "stopped early (everything before was stored): {}",
                    stopped_early.join("; ")
                );
            }
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Sql {
            query,
            data,
            format,
        } => {
            let mut stdout = std::io::stdout().lock();
            match runtime()?.block_on(commands::sql(&data, &query, format, &mut stdout)) {
                // `tunnelwatch sql … | head`: the reader has what it wanted.
                Err(error)
                    if error
                        .downcast_ref::<std::io::Error>()
                        .map(std::io::Error::kind)
                        == Some(std::io::ErrorKind::BrokenPipe) =>
                {
                    Ok(())
                }
                result => result,
            }
        }
        #[cfg(feature = "server")]
        Command::Search {
            query,
            data,
            from,
            to,
            limit,
            format,
        } => {
            let options = store::SearchOptions {
                from,
                to,
                limit: Some(limit),
            };
            let (output, summary) = commands::search(&data, &query, &options, format)?;
            print!("{output}");
            eprintln!("{summary}");
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Store { action } => match action {
            StoreAction::Verify { data, repair } => {
                let report = commands::verify(&data, repair)?;
                println!("{}", report.text);
                if report.healthy {
                    Ok(())
                } else {
                    anyhow::bail!(
                        "the data directory {} has problems (see above)",
                        data.display()
                    )
                }
            }
            StoreAction::RebuildIndex { data } => {
                println!("{}", commands::rebuild_index(&data)?);
                Ok(())
            }
        },
        #[cfg(feature = "server")]
        Command::User { action } => {
            use crate::control::Request;
            let (data, request) = match action {
                UserAction::Add {
                    name,
                    role,
                    password_stdin,
                    data,
                } => {
                    let password = read_password(password_stdin, &name)?;
                    (
                        data,
                        Request::UserAdd {
                            name,
                            role,
                            password,
                        },
                    )
                }
                UserAction::List { data } => (data, Request::UserList),
                UserAction::Passwd {
                    name,
                    password_stdin,
                    data,
                } => {
                    let password = read_password(password_stdin, &name)?;
                    (data, Request::UserPasswd { name, password })
                }
                UserAction::Disable { name, data } => (data, Request::UserDisable { name }),
                UserAction::Enable { name, data } => (data, Request::UserEnable { name }),
                UserAction::Totp { name, data } => (data, Request::UserTotp { name }),
            };
            println!("{}", crate::control::run(&data, request)?);
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Token { action } => {
            use crate::control::Request;
            use dashboards::access::Grant;
            let (data, request) = match action {
                TokenAction::Create {
                    name,
                    role,
                    gateway,
                    client_subject,
                    expires_days,
                    data,
                } => {
                    let grant = match (gateway, role) {
                        (true, _) => Grant::Gateway {
                            gateway: name.clone(),
                            client_subject,
                        },
                        (false, Some(role)) => Grant::Role { role },
                        (false, None) => anyhow::bail!("give --role ROLE or --gateway"),
                    };
                    (
                        data,
                        Request::TokenCreate {
                            name,
                            grant,
                            expires_days,
                        },
                    )
                }
                TokenAction::List { data } => (data, Request::TokenList),
                TokenAction::Revoke { name, data } => (data, Request::TokenRevoke { name }),
            };
            println!("{}", crate::control::run(&data, request)?);
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Alerts { action } => {
            match action {
                AlertsAction::List {
                    data,
                    status,
                    format,
                } => print!(
                    "{}",
                    crate::alerts_cli::list(&data, status.as_deref(), format)?
                ),
                AlertsAction::Show { id, data } => {
                    print!("{}", crate::alerts_cli::show(&data, &id)?)
                }
                AlertsAction::Ack { id, comment, data } => println!(
                    "{}",
                    crate::control::run(&data, crate::control::Request::AlertAck { id, comment })?
                ),
                AlertsAction::Resolve { id, comment, data } => println!(
                    "{}",
                    crate::control::run(
                        &data,
                        crate::control::Request::AlertResolve { id, comment }
                    )?
                ),
                AlertsAction::Assign {
                    id,
                    to,
                    comment,
                    data,
                } => println!(
                    "{}",
                    crate::control::run(
                        &data,
                        crate::control::Request::AlertAssign {
                            id,
                            assignee: to,
                            comment
                        }
                    )?
                ),
            }
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Silence { action } => {
            use crate::control::Request;
            let (data, request) = match action {
                SilenceAction::Add {
                    matchers,
                    comment,
                    duration,
                    data,
                } => {
                    let matchers = matchers
                        .iter()
                        .map(|text| {
                            text.split_once('=')
                                .map(|(name, value)| alerting::silence::Matcher {
                                    name: name.trim().to_owned(),
                                    value: value.trim().to_owned(),
                                })
                                .with_context(|| format!("--match {text:?} is not NAME=VALUE"))
                        })
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    let length = alerting::rule::parse_duration(&duration)
                        .map_err(|why| anyhow::anyhow!("--for: {why}"))?;
                    let ends = jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::try_from(length)?)
                        .context("--for is too long")?;
                    (
                        data,
                        Request::SilenceAdd {
                            request: alerting::silence::SilenceRequest {
                                matchers,
                                comment,
                                starts: None,
                                ends,
                            },
                        },
                    )
                }
                SilenceAction::List { data } => (data, Request::SilenceList),
                SilenceAction::Expire { id, data } => (data, Request::SilenceExpire { id }),
            };
            println!("{}", crate::control::run(&data, request)?);
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Rules { action } => {
            match action {
                RulesAction::Check { path } => print!("{}", crate::rules_cli::check(&path)?),
                RulesAction::Test { rules, events } => {
                    print!("{}", crate::rules_cli::test(&rules, &events)?);
                }
                RulesAction::ImportSigma {
                    files,
                    mapping,
                    out,
                } => {
                    let (printed, failures) =
                        crate::rules_cli::import_sigma(&files, mapping.as_deref(), out.as_deref())?;
                    print!("{printed}");
                    if !failures.is_empty() {
                        #[allow(clippy::print_stderr)]
                        for failure in &failures {
                            eprintln!("error: {failure}");
                        }
                        anyhow::bail!(
                            "{} of {} Sigma files could not be imported",
                            failures.len(),
                            files.len()
                        );
                    }
                }
            }
            Ok(())
        }
        #[cfg(feature = "server")]
        Command::Audit { action } => match action {
            AuditAction::Verify { data, public_key } => {
                println!("{}", commands::audit_verify(&data, public_key.as_deref())?);
                Ok(())
            }
            AuditAction::Show {
                data,
                from,
                to,
                actor,
                format,
            } => {
                print!(
                    "{}",
                    commands::audit_show(&data, from, to, actor.as_deref(), format)?
                );
                Ok(())
            }
        },
        Command::CheckConfig { file } => {
            println!("{}", commands::check_config(&file)?);
            Ok(())
        }
    }
}

/// A new password: the first line of standard input, or asked twice on the terminal.
#[cfg(feature = "server")]
fn read_password(from_stdin: bool, name: &str) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        anyhow::bail!(
            "standard input is not a terminal: give --password-stdin and the password on it"
        );
    }
    let first = rpassword::prompt_password(format!("password for {name}: "))
        .context("cannot read the password")?;
    let again = rpassword::prompt_password("again: ").context("cannot read the password")?;
    if first != again {
        anyhow::bail!("the two passwords differ");
    }
    Ok(first)
}

/// This machine's name, for `observer.hostname` when the configuration names none.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "gateway".to_owned())
}
