//! The one configuration file: a section per crate, each owned by that crate's `Config`.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

/// `/etc/tunnelwatch/config.toml`. Every section is optional and has working defaults; an
/// unknown key anywhere is an error that names the key and its line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Present on hosts that run the agent.
    #[serde(default)]
    pub gateway: Option<gateway::Config>,
    #[cfg(feature = "server")]
    #[serde(default)]
    pub collector: collector::Config,
    #[cfg(feature = "server")]
    #[serde(default)]
    pub store: store::Config,
    #[cfg(feature = "server")]
    #[serde(default)]
    pub alerting: alerting::Config,
    #[cfg(feature = "server")]
    #[serde(default)]
    pub playbooks: playbooks::Config,
    #[cfg(feature = "server")]
    #[serde(default)]
    pub dashboards: dashboards::Config,
    // A gateway-only build keeps the server sections' text but cannot check them.
    #[cfg(not(feature = "server"))]
    #[serde(default)]
    pub collector: Option<toml::Value>,
    #[cfg(not(feature = "server"))]
    #[serde(default)]
    pub store: Option<toml::Value>,
    #[cfg(not(feature = "server"))]
    #[serde(default)]
    pub alerting: Option<toml::Value>,
    #[cfg(not(feature = "server"))]
    #[serde(default)]
    pub playbooks: Option<toml::Value>,
    #[cfg(not(feature = "server"))]
    #[serde(default)]
    pub dashboards: Option<toml::Value>,
}

impl AppConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> anyhow::Result<AppConfig> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        let text = String::from_utf8(bytes).map_err(|error| {
            anyhow::anyhow!(
                "{}: not UTF-8 (byte {})",
                path.display(),
                error.utf8_error().valid_up_to()
            )
        })?;
        AppConfig::parse(&text)
            .with_context(|| format!("invalid configuration file {}", path.display()))
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> anyhow::Result<AppConfig> {
        let config: AppConfig = toml::from_str(text)
            .map_err(|error| anyhow::anyhow!("{}", error.to_string().trim_end()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values serde cannot (ranges, time zones, uniqueness).
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(gateway) = &self.gateway {
            gateway.validate().context("[gateway]")?;
        }
        #[cfg(feature = "server")]
        {
            self.store.validate().context("[store]")?;
            self.collector
                .join
                .validate()
                .map_err(|reason| anyhow::anyhow!("[collector.join] {reason}"))?;
            self.collector
                .sessions
                .validate()
                .map_err(|reason| anyhow::anyhow!("[collector.sessions] {reason}"))?;
            if self
                .dashboards
                .listen
                .parse::<std::net::SocketAddr>()
                .is_err()
            {
                bail!(
                    "[dashboards] listen = {:?} is not an address with a port, such as 127.0.0.1:8080",
                    self.dashboards.listen
                );
            }
            if self.dashboards.tls_cert_file.is_some() != self.dashboards.tls_key_file.is_some() {
                bail!(
                    "[dashboards] tls_cert_file and tls_key_file go together: set both or neither"
                );
            }
            if self.dashboards.tls_client_ca_file.is_some()
                && self.dashboards.tls_cert_file.is_none()
            {
                bail!(
                    "[dashboards] tls_client_ca_file needs tls_cert_file and tls_key_file: client certificates exist only over HTTPS"
                );
            }
            self.dashboards
                .check()
                .map_err(|reason| anyhow::anyhow!("[dashboards] {reason}"))?;
            alerting::load_rules(&self.alerting)
                .map_err(|error| anyhow::anyhow!("[alerting] {error}"))?;
            alerting::route::check_receivers(&self.alerting.receivers)
                .map_err(|error| anyhow::anyhow!("[alerting] {error}"))?;
            alerting::route::check_escalations(
                &self.alerting.escalations,
                &self.alerting.receivers,
            )
            .map_err(|error| anyhow::anyhow!("[alerting] {error}"))?;
            alerting::inhibit_rules(&self.alerting)
                .map_err(|error| anyhow::anyhow!("[alerting] {error}"))?;
        }
        Ok(())
    }
}

/// The environment variables the object store options may come from, by option. Settings in
/// `[store.root_options]` win; only the binary reads the environment.
#[cfg(feature = "server")]
const OBJECT_STORE_ENV: [(&str, &str); 7] = [
    ("aws_access_key_id", "AWS_ACCESS_KEY_ID"),
    ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"),
    ("aws_session_token", "AWS_SESSION_TOKEN"),
    ("aws_region", "AWS_REGION"),
    ("aws_endpoint", "AWS_ENDPOINT"),
    ("aws_allow_http", "AWS_ALLOW_HTTP"),
    ("aws_default_region", "AWS_DEFAULT_REGION"),
];

/// `config` with the object store options it lacks taken from the `AWS_*` environment
/// variables (credentials belong there or in a secrets manager, not in the file).
#[cfg(feature = "server")]
pub fn with_object_store_env(mut config: store::Config) -> store::Config {
    if config
        .root
        .as_deref()
        .is_some_and(|root| root.starts_with("file:"))
    {
        return config;
    }
    for (option, variable) in OBJECT_STORE_ENV {
        #[allow(clippy::disallowed_methods)]
        let Ok(value) = std::env::var(variable) else {
            continue;
        };
        config
            .root_options
            .entry(option.to_owned())
            .or_insert(value);
    }
    config
}

/// The store configuration for `--data DIR` (the commands that take a directory, not a
/// configuration file): defaults, plus object store options from the environment.
#[cfg(feature = "server")]
pub fn store_config_for_dir(data_dir: &Path) -> store::Config {
    with_object_store_env(store::Config::for_dir(data_dir))
}

/// Reads a secret from a file (a token, a password): trimmed, non-empty.
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read secret file {}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("secret file {} is empty", path.display());
    }
    Ok(secret.to_owned())
}

/// The server's TLS config from `[dashboards] tls_cert_file` and `tls_key_file`, if set.
#[cfg(feature = "server")]
pub fn server_tls(
    config: &dashboards::Config,
) -> anyhow::Result<Option<std::sync::Arc<dashboards::tls::ServerConfig>>> {
    let (Some(cert_file), Some(key_file)) = (&config.tls_cert_file, &config.tls_key_file) else {
        return Ok(None);
    };
    let chain = std::fs::read(cert_file)
        .with_context(|| format!("cannot read tls_cert_file {}", cert_file.display()))?;
    let key = std::fs::read(key_file)
        .with_context(|| format!("cannot read tls_key_file {}", key_file.display()))?;
    let client_ca = config
        .tls_client_ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path)
                .with_context(|| format!("cannot read tls_client_ca_file {}", path.display()))
        })
        .transpose()?;
    let tls =
        dashboards::tls::server_config(&chain, &key, client_ca.as_deref()).with_context(|| {
            match &config.tls_client_ca_file {
                Some(client_ca) => format!(
                    "[dashboards] tls_cert_file {} / tls_key_file {} / tls_client_ca_file {}",
                    cert_file.display(),
                    key_file.display(),
                    client_ca.display()
                ),
                None => format!(
                    "[dashboards] tls_cert_file {} / tls_key_file {}",
                    cert_file.display(),
                    key_file.display()
                ),
            }
        })?;
    Ok(Some(tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/config")
            .join(name)
    }

    #[test]
    fn the_example_configurations_load() {
        let full = AppConfig::load(&testdata("full.toml")).unwrap();
        assert_eq!(full.gateway.as_ref().unwrap().sources.len(), 1);
        let minimal = AppConfig::load(&testdata("minimal.toml")).unwrap();
        assert!(minimal.gateway.is_none());
        AppConfig::parse("").unwrap();
    }

    #[track_caller]
    fn check_error(text: &str, needles: &[&str]) {
        let error = format!("{:#}", AppConfig::parse(text).unwrap_err());
        for needle in needles {
            assert!(error.contains(needle), "{needle:?} not in: {error}");
        }
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        #[cfg(feature = "server")]
        {
            let error = format!(
                "{:#}",
                AppConfig::load(&testdata("unknown_key.toml")).unwrap_err()
            );
            assert!(error.contains("unknown_key.toml"), "{error}");
            assert!(error.contains("flush_intervall_secs"), "{error}");
            assert!(error.contains("line 3"), "{error}");
        }
        // A gateway-only build keeps the server's sections unread: their keys are the
        // server's to check.
        #[cfg(not(feature = "server"))]
        assert!(AppConfig::load(&testdata("unknown_key.toml")).is_ok());
        check_error(
            "[gateway]\nbatch_max_events = \"many\"\n",
            &["line 2", "batch_max_events", "invalid type"],
        );
        check_error("[nope]\n", &["unknown field `nope`"]);
        #[cfg(feature = "server")]
        {
            // Roles are one of four names; anonymous access is for reading only; the audit
            // trail is kept at least a year.
            check_error(
                "[dashboards]\nanonymous_role = \"owner\"\n",
                &[
                    "line 2",
                    "unknown variant `owner`",
                    "`viewer`, `analyst`, `responder`, `admin`",
                ],
            );
            check_error(
                "[dashboards]\nanonymous_role = \"admin\"\n",
                &[
                    "[dashboards] anonymous_role = \"admin\"",
                    "at most \"analyst\"",
                ],
            );
            check_error(
                "[dashboards]\nrequire_totp_for = \"Admin\"\n",
                &["unknown variant `Admin`"],
            );
            check_error(
                "[dashboards]\nsession_idle_secs = 90000\nsession_absolute_secs = 3600\n",
                &["session_idle_secs is longer than session_absolute_secs"],
            );
            check_error(
                "[store.retention]\naudit_log = 30\n",
                &["below the compliance minimum of 365 days"],
            );
        }
        check_error(
            "[gateway]\ntimezone = \"Mars/Olympus\"\n",
            &["unknown time zone", "Mars/Olympus"],
        );
        check_error(
            "[[gateway.sources]]\ntype = \"file\"\nformat = \"pluto9\"\npath = \"/x\"\n",
            &["pluto9", "line"],
        );
        check_error(
            "[[gateway.sources]]\ntype = \"capture\"\ninterface = \"ipsec0\"\nring = \"af_xdp\"\n",
            &[
                "line",
                "ring = \"af_xdp\" is not a way to read an interface (write \"tpacket_v3\", the default, or \"pnet\")",
            ],
        );
        check_error(
            "[[gateway.sources]]\ntype = \"file\"\nformat = \"charon\"\npath = \"/a\"\n[[gateway.sources]]\ntype = \"file\"\nformat = \"charon\"\npath = \"/b\"\n",
            &["two sources are named `charon`"],
        );
        #[cfg(feature = "server")]
        check_error(
            "[dashboards]\nlisten = \"localhost\"\n",
            &["not an address with a port"],
        );
        #[cfg(feature = "server")]
        check_error(
            "[collector.sessions]\naccounting_hold_secs = 100000\n",
            &[
                "[collector.sessions]",
                "accounting_hold_secs = 100000",
                "more than a day",
            ],
        );
        #[cfg(feature = "server")]
        check_error(
            "[collector.sessions]\naccounting_hold = 5\n",
            &["accounting_hold", "line 2"],
        );
        #[cfg(feature = "server")]
        check_error(
            "[collector.sessions]\naccounting_hold_secs = -1\n",
            &["accounting_hold_secs", "line 2"],
        );
        #[cfg(feature = "server")]
        check_error(
            "[collector.join]\nclock_skew_secs = 7200\n",
            &["[collector.join]", "more than an hour"],
        );
        #[cfg(feature = "server")]
        check_error(
            "[collector.join]\nvpn_pool = [\"10.99.0.0/33\"]\n",
            &["vpn_pool", "line 2"],
        );
        check_error("[store\n", &["line 1"]);
        check_error("[gateway]\nname = \"\u{1b}[31m\n", &["line"]);
    }

    #[test]
    fn hostile_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, b"[gateway]\nname = \"\xff\"\n").unwrap();
        let error = format!("{:#}", AppConfig::load(&path).unwrap_err());
        assert!(error.contains("not UTF-8"), "{error}");
        let missing = format!(
            "{:#}",
            AppConfig::load(&dir.path().join("missing.toml")).unwrap_err()
        );
        assert!(
            missing.contains("cannot read configuration file"),
            "{missing}"
        );
        let huge = "# padding\n".repeat(200_000) + "[gateway]\nbogus = 1\n";
        let error = format!("{:#}", AppConfig::parse(&huge).unwrap_err());
        assert!(
            error.contains("bogus"),
            "{}",
            &error[..error.len().min(300)]
        );
    }
}
