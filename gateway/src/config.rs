//! `[gateway]` configuration.

use std::path::PathBuf;

use serde::Deserialize;

use crate::parse::{DEFAULT_MAX_LINE_BYTES, Format, JsonMapping};

/// The agent's configuration: where the logs are, where the server is, where to keep state.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This gateway's name: `observer.hostname` of file-log events and the prefix of every
    /// source id. Defaults to the host name (filled in by the binary).
    #[serde(default)]
    pub name: Option<String>,
    /// Base URL of the tunnelwatch server, e.g. `http://collector.example:8080`.
    #[serde(default = "default_server_url")]
    pub server_url: String,
    /// File holding the bearer token the server expects (no token when unset).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// For an `https://` server: a PEM file of the CA certificates that may sign the
    /// server's certificate (e.g. the company's internal CA). Unset: the system's trust store.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Mutual TLS: the PEM client certificate (chain) the agent presents to the server, whose
    /// subject its token may be bound to (`token create --gateway --client-subject`)…
    #[serde(default)]
    pub tls_client_cert_file: Option<PathBuf>,
    /// …and its PEM private key. Both or neither.
    #[serde(default)]
    pub tls_client_key_file: Option<PathBuf>,
    /// Where checkpoints and the spool live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Time zone of log timestamps that carry none (IANA name).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    #[serde(default = "default_batch_max_wait_ms")]
    pub batch_max_wait_ms: u64,
    /// How often tailed files are checked for new lines and rotation.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Upper bound of the on-disk spool; when full, tailing pauses (the log files keep the
    /// lines) until the server takes events again.
    #[serde(default = "default_spool_max_bytes")]
    pub spool_max_bytes: u64,
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// After a rename rotation, how long the old file must stay idle before reading moves to
    /// the new one (the daemon may write to the old file until it reopens its log).
    #[serde(default = "default_rotate_grace_ms")]
    pub rotate_grace_ms: u64,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
}

/// One log source.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A log file, followed across rotation and truncation.
    File {
        format: Format,
        path: PathBuf,
        /// Source id suffix (`<gateway>/<name>`); defaults to the format name.
        #[serde(default)]
        name: Option<String>,
        /// Where to start when there is no checkpoint: the whole file (default) or only new lines.
        #[serde(default)]
        start_at: StartAt,
        /// For `format = "json"`: which keys give which field (a table; fields left out keep
        /// the default, ECS names). See [`JsonMapping`].
        #[serde(default)]
        json_mapping: Option<Box<JsonMapping>>,
    },
    /// strongSwan's VICI socket: charon's own events, reconciled with `list-sas` on every
    /// (re)connect.
    Vici {
        /// e.g. `/var/run/charon.vici`.
        #[serde(default = "default_vici_socket")]
        socket: PathBuf,
        /// Source id suffix; defaults to `vici`.
        #[serde(default)]
        name: Option<String>,
    },
    /// A RADIUS accounting receiver (RFC 2866, UDP): Start, Interim-Update and Stop from the
    /// NAS (e.g. strongSwan's eap-radius with `accounting = yes`).
    Radius {
        /// UDP address to listen on; defaults to `0.0.0.0:1813`.
        #[serde(default = "default_radius_listen")]
        listen: std::net::SocketAddr,
        /// File holding the shared secret.
        secret_file: PathBuf,
        /// Source addresses or networks allowed to send (`192.0.2.1`, `10.0.0.0/8`);
        /// unset: any sender that knows the secret.
        #[serde(default)]
        clients: Option<Vec<crate::radius::ClientNet>>,
        /// Source id suffix; defaults to `radius`.
        #[serde(default)]
        name: Option<String>,
    },
    /// A syslog server (RFC 5424 and RFC 3164, UDP and/or TCP with RFC 6587 framing), for
    /// VPN hosts that forward their logs instead of running the agent.
    Syslog {
        /// UDP address to listen on, e.g. `0.0.0.0:514`.
        #[serde(default)]
        udp: Option<std::net::SocketAddr>,
        /// TCP address to listen on, e.g. `0.0.0.0:601`.
        #[serde(default)]
        tcp: Option<std::net::SocketAddr>,
        #[serde(default = "default_max_connections")]
        max_connections: usize,
        /// Source id suffix; defaults to `syslog`.
        #[serde(default)]
        name: Option<String>,
    },
    /// Flows captured live on an interface (AF_PACKET through pnet): the VPN's decrypted
    /// side, e.g. kernel-libipsec's `ipsec0` or the inside NIC. Needs CAP_NET_RAW.
    Capture {
        interface: String,
        /// `ethernet` or `raw`; default: raw for interfaces without a MAC address or
        /// point-to-point ones (TUN), Ethernet otherwise.
        #[serde(default)]
        link: Option<crate::flow::decode::LinkType>,
        /// How frames get from the kernel: `tpacket_v3` (a ring of blocks mapped into the
        /// agent, one wakeup per block; the default) or `pnet` (one system call per frame).
        #[serde(default, deserialize_with = "capture_ring")]
        ring: crate::flow::capture::CaptureRing,
        /// Keep only flows to or from these networks (the virtual IP pool). Empty: all.
        #[serde(default, deserialize_with = "networks")]
        vpn_pool: Vec<ipnet::IpNet>,
        /// Keep only flows to or from these networks (the APIs). Empty: all.
        #[serde(default, deserialize_with = "networks")]
        api_subnets: Vec<ipnet::IpNet>,
        #[serde(default = "default_idle_timeout_secs")]
        idle_timeout_secs: u64,
        #[serde(default = "default_active_timeout_secs")]
        active_timeout_secs: u64,
        #[serde(default = "default_max_flows")]
        max_flows: usize,
        /// Source id suffix; defaults to `capture-<interface>`.
        #[serde(default)]
        name: Option<String>,
    },
    /// The certificates in a directory (PEM or DER: swanctl's `x509`, `x509ca`) and/or those
    /// charon has loaded (VICI `list-certs`), read every `every_secs`: each as an event with
    /// its subject, serial and expiry, for the certificate-expiry rules.
    Certificates {
        #[serde(default)]
        dir: Option<PathBuf>,
        /// charon's VICI socket, e.g. `/var/run/charon.vici`.
        #[serde(default)]
        vici: Option<PathBuf>,
        /// How often to read the directory (default 6 hours; at least 60 s).
        #[serde(default = "default_certificates_every_secs")]
        every_secs: u64,
        /// Source id suffix; defaults to `certificates`.
        #[serde(default)]
        name: Option<String>,
    },
}

fn default_certificates_every_secs() -> u64 {
    6 * 3600
}

/// A capture source's `ring`; an unknown one is named in the error with the choices (serde's
/// own message loses the key inside the tagged source table).
fn capture_ring<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<crate::flow::capture::CaptureRing, D::Error> {
    use crate::flow::capture::CaptureRing;
    let text = String::deserialize(deserializer)?;
    [CaptureRing::TpacketV3, CaptureRing::Pnet]
        .into_iter()
        .find(|ring| ring.as_str() == text)
        .ok_or_else(|| {
            serde::de::Error::custom(format!(
                "ring = \"{text}\" is not a way to read an interface (write \"tpacket_v3\", the default, or \"pnet\")"
            ))
        })
}

/// Networks in CIDR notation; a bad one is named in the error.
fn networks<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| {
            text.parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{text}` is not a network (write it like 10.99.0.0/24 or 2001:db8::/64)"
                    ))
                })
        })
        .collect()
}

fn default_idle_timeout_secs() -> u64 {
    crate::flow::FlowConfig::default().idle_timeout_secs
}

fn default_active_timeout_secs() -> u64 {
    crate::flow::FlowConfig::default().active_timeout_secs
}

fn default_max_flows() -> usize {
    crate::flow::FlowConfig::default().max_flows
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

impl SourceConfig {
    /// One line for humans: what the source reads, e.g. `charon log file /var/log/charon.log`.
    pub fn describe(&self) -> String {
        match self {
            SourceConfig::File {
                format,
                path,
                json_mapping,
                ..
            } => match json_mapping {
                Some(mapping) => format!(
                    "{format} log file {} (json_mapping: {})",
                    path.display(),
                    mapping.describe()
                ),
                None => format!("{format} log file {}", path.display()),
            },
            SourceConfig::Vici { socket, .. } => format!("VICI socket {}", socket.display()),
            SourceConfig::Certificates {
                dir,
                vici,
                every_secs,
                ..
            } => {
                let mut from = Vec::new();
                if let Some(dir) = dir {
                    from.push(format!("in {}", dir.display()));
                }
                if let Some(vici) = vici {
                    from.push(format!("loaded in charon (VICI {})", vici.display()));
                }
                format!(
                    "certificates {}, read every {every_secs} s",
                    from.join(" and ")
                )
            }
            SourceConfig::Radius { listen, .. } => {
                format!("RADIUS accounting on UDP {listen}")
            }
            SourceConfig::Syslog { udp, tcp, .. } => {
                let mut parts = Vec::new();
                if let Some(udp) = udp {
                    parts.push(format!("UDP {udp}"));
                }
                if let Some(tcp) = tcp {
                    parts.push(format!("TCP {tcp}"));
                }
                format!("syslog server on {}", parts.join(" and "))
            }
            SourceConfig::Capture {
                interface,
                ring,
                vpn_pool,
                api_subnets,
                ..
            } => {
                let nets = |nets: &[ipnet::IpNet]| {
                    if nets.is_empty() {
                        "any".to_owned()
                    } else {
                        nets.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                };
                let reader = match ring {
                    crate::flow::capture::CaptureRing::TpacketV3 => "a TPACKET_V3 ring",
                    crate::flow::capture::CaptureRing::Pnet => "pnet, one system call per frame",
                };
                format!(
                    "flows captured on {interface} (VPN pool: {}; APIs: {}) through {reader}",
                    nets(vpn_pool),
                    nets(api_subnets)
                )
            }
        }
    }

    /// The flow table settings of a `capture` source.
    pub fn flow_config(&self) -> Option<crate::flow::FlowConfig> {
        match self {
            SourceConfig::Capture {
                vpn_pool,
                api_subnets,
                idle_timeout_secs,
                active_timeout_secs,
                max_flows,
                ..
            } => Some(crate::flow::FlowConfig {
                idle_timeout_secs: *idle_timeout_secs,
                active_timeout_secs: *active_timeout_secs,
                max_flows: *max_flows,
                vpn_pool: vpn_pool.clone(),
                api_subnets: api_subnets.clone(),
                ..crate::flow::FlowConfig::default()
            }),
            _ => None,
        }
    }

    /// The source's name, unique within the gateway.
    pub fn name(&self) -> String {
        match self {
            SourceConfig::File { name, format, .. } => {
                name.clone().unwrap_or_else(|| format.as_str().to_owned())
            }
            SourceConfig::Vici { name, .. } => name.clone().unwrap_or_else(|| "vici".to_owned()),
            SourceConfig::Syslog { name, .. } => {
                name.clone().unwrap_or_else(|| "syslog".to_owned())
            }
            SourceConfig::Radius { name, .. } => {
                name.clone().unwrap_or_else(|| "radius".to_owned())
            }
            SourceConfig::Capture {
                name, interface, ..
            } => name
                .clone()
                .unwrap_or_else(|| format!("capture-{interface}")),
            SourceConfig::Certificates { name, .. } => {
                name.clone().unwrap_or_else(|| "certificates".to_owned())
            }
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            name: None,
            server_url: default_server_url(),
            token_file: None,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
            state_dir: default_state_dir(),
            timezone: default_timezone(),
            batch_max_events: default_batch_max_events(),
            batch_max_wait_ms: default_batch_max_wait_ms(),
            poll_interval_ms: default_poll_interval_ms(),
            spool_max_bytes: default_spool_max_bytes(),
            max_line_bytes: default_max_line_bytes(),
            rotate_grace_ms: default_rotate_grace_ms(),
            sources: Vec::new(),
        }
    }
}

impl Config {
    /// Checks what serde cannot: values in range, unique source names, a known time zone.
    pub fn validate(&self) -> crate::Result<()> {
        let fail = |message: String| Err(crate::Error::Config(message));
        if self.batch_max_events == 0 {
            return fail("batch_max_events must be at least 1".to_owned());
        }
        if self.max_line_bytes < 256 {
            return fail(format!(
                "max_line_bytes must be at least 256, not {}",
                self.max_line_bytes
            ));
        }
        if self.spool_max_bytes < 1024 * 1024 {
            return fail(format!(
                "spool_max_bytes must be at least 1 MiB, not {}",
                self.spool_max_bytes
            ));
        }
        if jiff::tz::TimeZone::get(&self.timezone).is_err() {
            return fail(format!("unknown time zone `{}`", self.timezone));
        }
        if !(self.server_url.starts_with("http://") || self.server_url.starts_with("https://")) {
            return fail(format!(
                "server_url must start with http:// or https://, not `{}`",
                self.server_url
            ));
        }
        if self.tls_ca_file.is_some() && !self.server_url.starts_with("https://") {
            return fail(format!(
                "tls_ca_file is set but server_url `{}` is not https://: the token and events would travel in clear text",
                self.server_url
            ));
        }
        if self.tls_client_cert_file.is_some() != self.tls_client_key_file.is_some() {
            return fail(
                "tls_client_cert_file and tls_client_key_file go together: set both or neither"
                    .to_owned(),
            );
        }
        if self.tls_client_cert_file.is_some() && !self.server_url.starts_with("https://") {
            return fail(format!(
                "tls_client_cert_file is set but server_url `{}` is not https://: client certificates exist only over TLS",
                self.server_url
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for source in &self.sources {
            if let SourceConfig::Syslog {
                udp: None,
                tcp: None,
                ..
            } = source
            {
                return fail(format!(
                    "syslog source `{}` needs `udp` or `tcp` (or both)",
                    source.name()
                ));
            }
            if let SourceConfig::File {
                format,
                json_mapping: Some(mapping),
                ..
            } = source
            {
                if *format != Format::Json {
                    return fail(format!(
                        "source `{}` has a json_mapping, which only format = \"json\" reads (not \"{format}\")",
                        source.name()
                    ));
                }
                if let Err(reason) = mapping.validate() {
                    return fail(format!(
                        "source `{}`: json_mapping: {reason}",
                        source.name()
                    ));
                }
            }
            if let Some(flow) = source.flow_config()
                && let Err(reason) = flow.validate()
            {
                return fail(format!("capture source `{}`: {reason}", source.name()));
            }
            if let SourceConfig::Capture { interface, .. } = source
                && (interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']))
            {
                return fail(format!(
                    "capture source: `{interface}` is not an interface name (1 to 15 characters, no `/` or spaces)"
                ));
            }
            if let SourceConfig::Certificates {
                dir: None,
                vici: None,
                ..
            } = source
            {
                return fail(format!(
                    "certificates source `{}` needs `dir` or `vici` (or both)",
                    source.name()
                ));
            }
            if let SourceConfig::Certificates { every_secs, .. } = source
                && !(60..=7 * 86_400).contains(every_secs)
            {
                return fail(format!(
                    "certificates source `{}`: every_secs must be 60 to 604800, not {every_secs}",
                    source.name()
                ));
            }
            let name = source.name();
            if !names.insert(name.clone()) {
                return fail(format!("two sources are named `{name}`; give one a `name`"));
            }
            if name.is_empty() || name.contains(['/', ':', '\\']) {
                return fail(format!(
                    "source name `{name}` must be non-empty and contain no `/`, `:` or `\\`"
                ));
            }
        }
        Ok(())
    }
}

fn default_radius_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([0, 0, 0, 0], 1813))
}
fn default_max_connections() -> usize {
    256
}
fn default_vici_socket() -> PathBuf {
    PathBuf::from("/var/run/charon.vici")
}
fn default_server_url() -> String {
    "http://127.0.0.1:8080".to_owned()
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/tunnelwatch/gateway")
}
fn default_timezone() -> String {
    "UTC".to_owned()
}
fn default_batch_max_events() -> usize {
    1000
}
fn default_batch_max_wait_ms() -> u64 {
    500
}
fn default_poll_interval_ms() -> u64 {
    250
}
fn default_spool_max_bytes() -> u64 {
    1024 * 1024 * 1024
}
fn default_rotate_grace_ms() -> u64 {
    2000
}
fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}
