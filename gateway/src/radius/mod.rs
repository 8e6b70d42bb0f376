//! RADIUS accounting (RFC 2866) over UDP: the gateway as an accounting server for the VPN
//! (strongSwan's `eap-radius { accounting = yes }` reports every IKE_SA's Start,
//! Interim-Update and Stop).
//!
//! The principal type is [`RadiusReceiver`], built from a [`RadiusConfig`]. For each datagram
//! it checks the source against the allowed clients, decodes the header
//! ([`packet::Header::decode`]), verifies the Request Authenticator, answers a retransmit
//! from its duplicate cache (RFC 5080 §2.2.2), maps the request with
//! [`accounting::account`], appends the event through its [`Sink`] (fsynced in the spool)
//! and only then sends the Accounting-Response. A client that gets no response retransmits:
//! that is the backpressure when the spool is full, and why nothing is acknowledged that is
//! not durable.
//!
//! Every datagram is counted once in [`RadiusStats`]: as a session event, ignored (authentic
//! but about nothing tracked, e.g. Accounting-On), a duplicate, a pipeline error (authentic
//! but its attributes are broken: kept as a `pipeline_error` event and answered, since
//! resending the same bytes cannot help), or rejected by [`Rejection`] reason. Rejected
//! datagrams make no event: before the authenticator is verified their content cannot be
//! trusted, and a forged packet must not be able to write into the spool. Rejections are
//! logged, at most [`LOG_BURST`] lines per [`LOG_WINDOW`].
//!
//! Datagrams already queued on the socket are handled together (up to [`MAX_BATCH`]), so a
//! burst costs one spool fsync instead of one per packet.

pub mod accounting;
mod dictionary;
mod duplicate;
pub mod packet;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use model::{Event, Observer};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::sink::Sink;
use crate::{Error, Result};

use accounting::Record;
use duplicate::{DuplicateCache, RequestKey};
use packet::{Attribute, Header, MAX_PACKET_LEN, PROXY_STATE, PacketError};

/// How long a request is remembered to answer its retransmits (RFC 5080 §2.2.2).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(30);
/// At most this many requests are remembered for duplicate detection…
pub const DUPLICATE_MAX_ENTRIES: usize = 16 * 1024;
/// …and at most this many bytes of their responses.
pub const DUPLICATE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Datagrams handled per spool append.
pub const MAX_BATCH: usize = 64;
/// Rejection and pipeline-error warnings per [`LOG_WINDOW`]; the rest are only counted.
pub const LOG_BURST: u32 = 10;
/// See [`LOG_BURST`].
pub const LOG_WINDOW: Duration = Duration::from_secs(60);

/// `[gateway.radius]`: where to listen for accounting and whom to believe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RadiusConfig {
    /// UDP address to listen on. On a host with several addresses, listen on the one the
    /// NAS sends to: a NAS with a connected socket (strongSwan) drops answers that come from
    /// another source address, which the kernel may pick for a wildcard socket.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// File holding the shared secret (one trailing newline is ignored; it must not be empty).
    pub secret_file: PathBuf,
    /// Source addresses or networks allowed to send accounting (`192.0.2.1`,
    /// `10.0.0.0/8`, `2001:db8::/32`). Unset: any source that knows the secret.
    #[serde(default)]
    pub clients: Option<Vec<ClientNet>>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1813))
}

impl RadiusConfig {
    /// A configuration listening on the default port, any client.
    pub fn new(secret_file: impl Into<PathBuf>) -> RadiusConfig {
        RadiusConfig {
            listen: default_listen(),
            secret_file: secret_file.into(),
            clients: None,
        }
    }
}

/// An allowed client: an address, or a network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientNet {
    network: IpAddr,
    prefix_len: u8,
}

impl ClientNet {
    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses (a dual-stack socket)
    /// count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix_len))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for ClientNet {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<ClientNet, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| format!("`{text}` is not an IP address or network"))?
            .to_canonical();
        let max_prefix_len = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max_prefix_len,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix_len| *prefix_len <= max_prefix_len)
                .ok_or_else(|| format!("`{text}` has an invalid prefix length"))?,
        };
        Ok(ClientNet {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for ClientNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl<'de> Deserialize<'de> for ClientNet {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<ClientNet, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Its source is not among the configured clients.
    UnknownClient,
    /// Larger than 4096 bytes.
    Oversized,
    /// Header too short, or a length field that does not fit.
    Malformed,
    /// Not an Accounting-Request.
    WrongCode,
    /// The Request Authenticator does not match the shared secret: forged, or a client with
    /// another secret.
    BadAuthenticator,
}

impl Rejection {
    /// The counter's name, also the `reason` field of the log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::UnknownClient => "unknown_client",
            Rejection::Oversized => "oversized",
            Rejection::Malformed => "malformed",
            Rejection::WrongCode => "wrong_code",
            Rejection::BadAuthenticator => "bad_authenticator",
        }
    }

    fn of(error: &PacketError) -> Rejection {
        match error {
            PacketError::Oversized { .. } => Rejection::Oversized,
            PacketError::WrongCode { .. } => Rejection::WrongCode,
            _ => Rejection::Malformed,
        }
    }
}

/// Live counters of a receiver, shared with whoever reports metrics.
#[derive(Debug, Default)]
pub struct RadiusStats {
    datagrams: AtomicU64,
    sessions: AtomicU64,
    ignored: AtomicU64,
    duplicates: AtomicU64,
    pipeline_errors: AtomicU64,
    unknown_client: AtomicU64,
    oversized: AtomicU64,
    malformed: AtomicU64,
    wrong_code: AtomicU64,
    bad_authenticator: AtomicU64,
    unknown_attributes: AtomicU64,
    invalid_values: AtomicU64,
    responses: AtomicU64,
    send_errors: AtomicU64,
    receive_errors: AtomicU64,
}

/// A copy of [`RadiusStats`] at one moment. Every datagram is counted once in `sessions`,
/// `ignored`, `duplicates`, `pipeline_errors` or one of the rejection counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RadiusStatsSnapshot {
    pub datagrams: u64,
    /// Start / Interim-Update / Stop requests turned into session events.
    pub sessions: u64,
    /// Authentic requests about nothing tracked (Accounting-On/Off, tunnel records): answered.
    pub ignored: u64,
    /// Retransmits answered again without a new event.
    pub duplicates: u64,
    /// Authentic requests that could not be read, kept as pipeline-error events and answered.
    pub pipeline_errors: u64,
    pub unknown_client: u64,
    pub oversized: u64,
    pub malformed: u64,
    pub wrong_code: u64,
    pub bad_authenticator: u64,
    /// Attributes of unknown types in accepted requests (ignored; kept in `event.original`).
    pub unknown_attributes: u64,
    /// Known attributes with a value of the wrong size (ignored; kept in `event.original`).
    pub invalid_values: u64,
    /// Accounting-Responses sent.
    pub responses: u64,
    pub send_errors: u64,
    pub receive_errors: u64,
}

impl RadiusStatsSnapshot {
    /// Datagrams dropped without an answer, for any reason.
    pub fn n_rejected(&self) -> u64 {
        self.unknown_client
            + self.oversized
            + self.malformed
            + self.wrong_code
            + self.bad_authenticator
    }
}

impl RadiusStats {
    /// The counters now (each read on its own: not one atomic snapshot).
    pub fn snapshot(&self) -> RadiusStatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        RadiusStatsSnapshot {
            datagrams: read(&self.datagrams),
            sessions: read(&self.sessions),
            ignored: read(&self.ignored),
            duplicates: read(&self.duplicates),
            pipeline_errors: read(&self.pipeline_errors),
            unknown_client: read(&self.unknown_client),
            oversized: read(&self.oversized),
            malformed: read(&self.malformed),
            wrong_code: read(&self.wrong_code),
            bad_authenticator: read(&self.bad_authenticator),
            unknown_attributes: read(&self.unknown_attributes),
            invalid_values: read(&self.invalid_values),
            responses: read(&self.responses),
            send_errors: read(&self.send_errors),
            receive_errors: read(&self.receive_errors),
        }
    }

    fn rejected(&self, rejection: Rejection) {
        let counter = match rejection {
            Rejection::UnknownClient => &self.unknown_client,
            Rejection::Oversized => &self.oversized,
            Rejection::Malformed => &self.malformed,
            Rejection::WrongCode => &self.wrong_code,
            Rejection::BadAuthenticator => &self.bad_authenticator,
        };
        add(counter, 1);
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The shared secret; never printed.
struct Secret(Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Reads the secret: the file's bytes less one trailing newline (`\n` or `\r\n`).
async fn read_secret(path: &Path) -> Result<Secret> {
    let mut bytes = tokio::fs::read(path)
        .await
        .map_err(|error| Error::io("read radius secret file", path, error))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    if bytes.is_empty() {
        return Err(Error::Config(format!(
            "radius secret file {} is empty",
            path.display()
        )));
    }
    Ok(Secret(bytes))
}

/// A bound RADIUS accounting server; [`RadiusReceiver::run`] serves until stopped.
#[derive(Debug)]
pub struct RadiusReceiver {
    socket: UdpSocket,
    local_addr: SocketAddr,
    secret: Secret,
    clients: Option<Vec<ClientNet>>,
    stats: Arc<RadiusStats>,
}

impl RadiusReceiver {
    /// Reads the secret and binds the socket.
    pub async fn bind(config: &RadiusConfig) -> Result<RadiusReceiver> {
        if config.clients.as_ref().is_some_and(Vec::is_empty) {
            return Err(Error::Config(
                "radius `clients` is empty, so no one could send accounting; leave it out to \
                 accept any client that knows the secret"
                    .to_owned(),
            ));
        }
        let secret = read_secret(&config.secret_file).await?;
        let socket = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| Error::Socket {
                action: "bind radius accounting socket",
                addr: config.listen,
                source,
            })?;
        let local_addr = socket.local_addr().map_err(|source| Error::Socket {
            action: "read the address of radius accounting socket",
            addr: config.listen,
            source,
        })?;
        Ok(RadiusReceiver {
            socket,
            local_addr,
            secret,
            clients: config.clients.clone(),
            stats: Arc::new(RadiusStats::default()),
        })
    }

    /// The address the socket is bound to (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The receiver's counters, live while it runs.
    pub fn stats(&self) -> Arc<RadiusStats> {
        Arc::clone(&self.stats)
    }

    /// Serves until `stop` turns true (or its sender is gone). Events get ids from `sink`;
    /// their `observer.hostname` is the gateway part of the sink's source id
    /// (`<gateway>/<name>@<epoch>`). Fails only when the spool fails.
    pub async fn run(self, mut sink: Sink, mut stop: watch::Receiver<bool>) -> Result<()> {
        let RadiusReceiver {
            socket,
            local_addr,
            secret,
            clients,
            stats,
        } = self;
        let gateway = sink
            .source_id()
            .split_once('/')
            .map_or(sink.source_id(), |(gateway, _)| gateway)
            .to_owned();
        let mut handler = Handler {
            secret,
            clients,
            stats,
            duplicates: DuplicateCache::new(
                DUPLICATE_WINDOW,
                DUPLICATE_MAX_ENTRIES,
                DUPLICATE_MAX_BYTES,
            ),
            log: LogThrottle::new(LOG_WINDOW, LOG_BURST),
            observer: Observer {
                hostname: Some(gateway),
                product: None,
            },
        };
        tracing::info!(listen = %local_addr, source = sink.source_id(), "receiving radius accounting");
        // One byte more than the largest packet, to tell an oversized datagram.
        let mut buffer = vec![0u8; MAX_PACKET_LEN + 1];
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let first = tokio::select! {
                received = socket.recv_from(&mut buffer) => received,
                changed = stop.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    continue;
                }
            };
            let mut events = Vec::new();
            let mut answers = Vec::new();
            let mut n_received_errors = 0;
            let mut received = Some(first);
            let mut n_handled = 0;
            while let Some(result) = received.take() {
                n_handled += 1;
                match result {
                    Ok((len, from)) => {
                        let datagram = buffer.get(..len).unwrap_or(&buffer);
                        if let Some(answer) = handler.handle(datagram, from, &mut sink) {
                            events.extend(answer.event);
                            answers.push((answer.response, from));
                        }
                    }
                    Err(error) => {
                        n_received_errors += 1;
                        handler.receive_error(&error);
                    }
                }
                if n_handled < MAX_BATCH {
                    match socket.try_recv_from(&mut buffer) {
                        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                        result => received = Some(result),
                    }
                }
            }
            if !events.is_empty() && !sink.append(events, &mut stop).await? {
                // Stopped before the events were durable: they must not be acknowledged.
                return Ok(());
            }
            for (response, to) in answers {
                match socket.send_to(&response, to).await {
                    Ok(_) => add(&handler.stats.responses, 1),
                    Err(error) => {
                        add(&handler.stats.send_errors, 1);
                        if let Some(n_suppressed) = handler.log.admit(Instant::now()) {
                            tracing::warn!(client = %to, %error, n_suppressed, "failed to send radius accounting response");
                        }
                    }
                }
            }
            if n_received_errors == n_handled {
                // Nothing but errors: do not spin on a socket that keeps failing.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// What to send back for an accepted datagram, and the event to spool first.
struct Answer {
    response: Vec<u8>,
    event: Option<Event>,
}

/// The per-datagram logic of the receiver, without the socket.
struct Handler {
    secret: Secret,
    clients: Option<Vec<ClientNet>>,
    stats: Arc<RadiusStats>,
    duplicates: DuplicateCache,
    log: LogThrottle,
    observer: Observer,
}

impl Handler {
    /// Checks, decodes and maps one datagram. `None`: dropped without an answer.
    fn handle(&mut self, datagram: &[u8], from: SocketAddr, sink: &mut Sink) -> Option<Answer> {
        let now = Instant::now();
        let received_at = Timestamp::now();
        add(&self.stats.datagrams, 1);
        if let Some(clients) = &self.clients
            && !clients.iter().any(|client| client.contains(from.ip()))
        {
            self.reject(Rejection::UnknownClient, from, None, now);
            return None;
        }
        let header = match Header::decode(datagram) {
            Ok(header) => header,
            Err(error) => {
                self.reject(Rejection::of(&error), from, Some(&error), now);
                return None;
            }
        };
        if !header.verify_request(datagram, &self.secret.0) {
            self.reject(Rejection::BadAuthenticator, from, None, now);
            return None;
        }
        let key = RequestKey {
            from,
            identifier: header.identifier,
            authenticator: header.authenticator,
        };
        if let Some(response) = self.duplicates.get(&key, now) {
            add(&self.stats.duplicates, 1);
            tracing::debug!(client = %from, identifier = header.identifier, "answering a retransmitted radius accounting request again");
            return Some(Answer {
                response: response.to_vec(),
                event: None,
            });
        }
        let packet_bytes = header.packet_bytes(datagram);
        let proxy_states: Vec<Attribute<'_>> = packet::attributes(packet_bytes)
            .map_while(std::result::Result::ok)
            .filter(|attribute| attribute.kind == PROXY_STATE)
            .collect();
        let event = match packet::decode(datagram) {
            Ok(packet) => {
                let accounted = accounting::account(&packet, received_at);
                add(
                    &self.stats.unknown_attributes,
                    u64::from(accounted.n_unknown_attributes),
                );
                add(
                    &self.stats.invalid_values,
                    u64::from(accounted.n_invalid_values),
                );
                match &accounted.record {
                    Record::Session(_) => add(&self.stats.sessions, 1),
                    Record::NotTracked { status_type } => {
                        add(&self.stats.ignored, 1);
                        if let Some(n_suppressed) = self.log.admit(now) {
                            tracing::info!(
                                client = %from,
                                status_type,
                                status = accounting::status_type_name(*status_type).unwrap_or("unknown"),
                                n_suppressed,
                                "radius accounting request about nothing tracked; answered"
                            );
                        }
                    }
                    Record::Invalid { message } => {
                        add(&self.stats.pipeline_errors, 1);
                        if let Some(n_suppressed) = self.log.admit(now) {
                            tracing::warn!(client = %from, %message, n_suppressed, "unusable radius accounting request kept as a pipeline error");
                        }
                    }
                }
                match accounted.record {
                    Record::NotTracked { .. } => None,
                    _ => accounted.into_event(
                        sink.next_id(),
                        self.observer.clone(),
                        packet_bytes.len(),
                    ),
                }
            }
            Err(error) => {
                add(&self.stats.pipeline_errors, 1);
                if let Some(n_suppressed) = self.log.admit(now) {
                    tracing::warn!(client = %from, %error, n_suppressed, "malformed radius accounting request kept as a pipeline error");
                }
                Some(accounting::malformed_event(
                    packet_bytes,
                    &error,
                    sink.next_id(),
                    self.observer.clone(),
                    received_at,
                ))
            }
        };
        let response = packet::encode_response(&header, &proxy_states, &self.secret.0);
        self.duplicates.insert(key, response.clone(), now);
        Some(Answer { response, event })
    }

    fn reject(
        &mut self,
        rejection: Rejection,
        from: SocketAddr,
        error: Option<&PacketError>,
        now: Instant,
    ) {
        self.stats.rejected(rejection);
        if let Some(n_suppressed) = self.log.admit(now) {
            let detail = error.map(ToString::to_string);
            tracing::warn!(
                client = %from,
                reason = rejection.as_str(),
                detail,
                n_suppressed,
                "dropped radius accounting datagram"
            );
        }
    }

    fn receive_error(&mut self, error: &std::io::Error) {
        add(&self.stats.receive_errors, 1);
        if let Some(n_suppressed) = self.log.admit(Instant::now()) {
            tracing::warn!(%error, n_suppressed, "failed to receive on the radius accounting socket");
        }
    }
}

/// Lets through at most `burst` log lines per `window`, so that a flood of bad datagrams
/// cannot flood the log; the next line that gets through says how many were held back.
#[derive(Debug)]
struct LogThrottle {
    window: Duration,
    burst: u32,
    window_start: Option<Instant>,
    n_logged: u32,
    n_suppressed: u64,
}

impl LogThrottle {
    fn new(window: Duration, burst: u32) -> LogThrottle {
        LogThrottle {
            window,
            burst,
            window_start: None,
            n_logged: 0,
            n_suppressed: 0,
        }
    }

    /// `Some(n_suppressed)`: log now, mentioning the lines held back since the last one.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        let in_window = self
            .window_start
            .is_some_and(|start| now.saturating_duration_since(start) < self.window);
        if !in_window {
            self.window_start = Some(now);
            self.n_logged = 0;
        }
        if self.n_logged >= self.burst {
            self.n_suppressed += 1;
            return None;
        }
        self.n_logged += 1;
        Some(std::mem::take(&mut self.n_suppressed))
    }
}

#[cfg(test)]
mod tests;
