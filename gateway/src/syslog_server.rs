//! A syslog server (UDP and TCP) so a VPN host can forward its logs with rsyslog or
//! syslog-ng instead of running the agent: every message is parsed with the `syslog`
//! format (the envelope's program name picks charon, pluto, xl2tpd, pppd, ...) and spooled.
//!
//! TCP framing follows RFC 6587: octet counting (`LEN SP MSG`, what RFC 5424 senders use)
//! or a line feed after each message (what RFC 3164 senders use), detected per message.
//! [`TcpFramer`] does the framing, pure and bounded: a message longer than the limit is
//! rejected as oversized (kept truncated) and the stream stays in sync.
//!
//! Receivers hand messages to one spooling task over a bounded channel; when the spool is
//! slow, TCP senders are slowed down (they buffer, then block), and UDP datagrams wait in
//! the kernel's socket buffer (when that overflows the kernel drops and counts them in
//! `/proc/net/udp`, the only place a UDP receiver can learn of it). Every message that
//! reaches the server becomes an event or a counted, kept rejection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use jiff::Timestamp;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::parse::{Format, ParseOptions, ParseStats, Parser};
use crate::sink::Sink;
use crate::{Error, Result};

/// Largest UDP datagram read (the IPv4 maximum; RFC 5426 senders stay far below).
const MAX_DATAGRAM: usize = 65_535;
/// Senders whose parser state is kept; beyond this the oldest parser is dropped.
const MAX_SENDERS: usize = 4096;
/// Messages waiting between receivers and the spooling task.
const CHANNEL_CAPACITY: usize = 8192;

/// Where a [`SyslogServer`] listens (from a `type = "syslog"` source).
#[derive(Debug, Clone, PartialEq)]
pub struct SyslogServerConfig {
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    /// Open TCP connections at most; more wait to be accepted.
    pub max_connections: usize,
}

/// One framed message, or what is kept of one that was too long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// The first `max` bytes of a message of `len` bytes.
    Oversized {
        prefix: Vec<u8>,
        len: usize,
    },
}

/// Splits a TCP byte stream into syslog messages (RFC 6587).
#[derive(Debug)]
pub struct TcpFramer {
    buffer: Vec<u8>,
    max: usize,
    /// Discarding the rest of an oversized message: the bytes left of an octet-counted
    /// one, or `None` with `skip_to_newline` for a line-framed one.
    skip_counted: usize,
    skip_to_newline: bool,
}

impl TcpFramer {
    pub fn new(max_message_bytes: usize) -> TcpFramer {
        TcpFramer {
            buffer: Vec::new(),
            max: max_message_bytes,
            skip_counted: 0,
            skip_to_newline: false,
        }
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip_counted > 0 {
            let n_skip = self.skip_counted.min(bytes.len());
            self.skip_counted -= n_skip;
            bytes = &bytes[n_skip..];
        }
        if self.skip_to_newline {
            match bytes.iter().position(|byte| *byte == b'\n') {
                Some(end) => {
                    self.skip_to_newline = false;
                    bytes = &bytes[end + 1..];
                }
                None => return,
            }
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            // Skip blank lines between messages.
            let n_blank = self
                .buffer
                .iter()
                .take_while(|byte| matches!(byte, b'\n' | b'\r'))
                .count();
            self.buffer.drain(..n_blank);
            if self.buffer.is_empty() {
                return None;
            }
            if let Some((len, header)) = self.octet_count() {
                if len > self.max {
                    let available = self.buffer.len() - header;
                    let n_prefix = available.min(self.max);
                    if n_prefix < self.max && available < len {
                        // Wait for the whole prefix (bounded by max) before reporting.
                        return None;
                    }
                    let prefix = self.buffer[header..header + n_prefix].to_vec();
                    let n_buffered = available.min(len);
                    self.buffer.drain(..header + n_buffered);
                    self.skip_counted = len - n_buffered;
                    return Some(Frame::Oversized { prefix, len });
                }
                if self.buffer.len() < header + len {
                    return None;
                }
                let message = self.buffer[header..header + len].to_vec();
                self.buffer.drain(..header + len);
                return Some(Frame::Message(message));
            }
            if self.waiting_for_count() {
                return None;
            }
            match self.buffer.iter().position(|byte| *byte == b'\n') {
                Some(end) if end <= self.max => {
                    let mut message: Vec<u8> = self.buffer.drain(..=end).collect();
                    message.pop();
                    if message.last() == Some(&b'\r') {
                        message.pop();
                    }
                    if message.is_empty() {
                        continue;
                    }
                    return Some(Frame::Message(message));
                }
                Some(end) => {
                    let prefix = self.buffer[..self.max].to_vec();
                    self.buffer.drain(..=end);
                    return Some(Frame::Oversized { prefix, len: end });
                }
                None if self.buffer.len() > self.max => {
                    let prefix = self.buffer[..self.max].to_vec();
                    let len = self.buffer.len();
                    self.buffer.clear();
                    self.skip_to_newline = true;
                    return Some(Frame::Oversized { prefix, len });
                }
                None => return None,
            }
        }
    }

    /// `LEN SP` at the start of the buffer: the length and the header's size.
    fn octet_count(&self) -> Option<(usize, usize)> {
        let n_digits = self
            .buffer
            .iter()
            .take(11)
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if n_digits == 0 || n_digits > 10 || self.buffer.get(n_digits) != Some(&b' ') {
            return None;
        }
        if self.buffer[0] == b'0' {
            return None;
        }
        let digits = std::str::from_utf8(&self.buffer[..n_digits]).ok()?;
        Some((digits.parse().ok()?, n_digits + 1))
    }

    /// Only digits so far: the octet count may still be arriving.
    fn waiting_for_count(&self) -> bool {
        self.buffer.len() <= 10 && self.buffer.iter().all(u8::is_ascii_digit)
    }

    /// What is left when the connection closes: a final message without its line feed.
    pub fn finish(&mut self) -> Option<Frame> {
        if self.skip_counted > 0 || self.skip_to_newline || self.buffer.is_empty() {
            self.buffer.clear();
            return None;
        }
        let message = std::mem::take(&mut self.buffer);
        Some(Frame::Message(message))
    }
}

struct Received {
    sender: IpAddr,
    frame: Frame,
    at: Timestamp,
}

/// A bound syslog server.
#[derive(Debug)]
pub struct SyslogServer {
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    max_connections: usize,
}

impl SyslogServer {
    pub async fn bind(config: &SyslogServerConfig) -> Result<SyslogServer> {
        if config.udp.is_none() && config.tcp.is_none() {
            return Err(Error::Config(
                "a syslog source needs `udp` or `tcp` (or both)".to_owned(),
            ));
        }
        let bind_error = |what: &str, addr: SocketAddr, error: std::io::Error| {
            Error::Config(format!(
                "cannot listen for syslog on {what} {addr}: {error}"
            ))
        };
        let udp = match config.udp {
            Some(addr) => Some(
                UdpSocket::bind(addr)
                    .await
                    .map_err(|error| bind_error("UDP", addr, error))?,
            ),
            None => None,
        };
        let tcp = match config.tcp {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|error| bind_error("TCP", addr, error))?,
            ),
            None => None,
        };
        Ok(SyslogServer {
            udp,
            tcp,
            max_connections: config.max_connections.max(1),
        })
    }

    /// The bound addresses (UDP, TCP): useful with port 0.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.udp
                .as_ref()
                .and_then(|socket| socket.local_addr().ok()),
            self.tcp
                .as_ref()
                .and_then(|socket| socket.local_addr().ok()),
        )
    }

    /// Receives and spools until `stop`. `options` is the template for each sender's parser
    /// (its source is replaced by the sink's source id).
    pub async fn run(
        self,
        sink: Sink,
        options: ParseOptions,
        stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let (sender, receiver) = mpsc::channel::<Received>(CHANNEL_CAPACITY);
        let max = options.max_line_bytes;
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(socket) = self.udp {
            tasks.spawn(receive_udp(socket, max, sender.clone(), stop.clone()));
        }
        if let Some(listener) = self.tcp {
            tasks.spawn(accept_tcp(
                listener,
                max,
                self.max_connections,
                sender.clone(),
                stop.clone(),
            ));
        }
        drop(sender);
        let spooled = spool_messages(receiver, sink, options, stop).await;
        tasks.abort_all();
        spooled
    }
}

async fn receive_udp(
    socket: UdpSocket,
    max: usize,
    sender: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buffer = vec![0; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            _ = stop.changed() => return,
        };
        let (n_bytes, peer) = match received {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(%error, "syslog UDP receive failed");
                continue;
            }
        };
        let mut datagram = &buffer[..n_bytes];
        while let Some(rest) = datagram
            .strip_suffix(b"\n")
            .or_else(|| datagram.strip_suffix(b"\r"))
        {
            datagram = rest;
        }
        if datagram.is_empty() {
            continue;
        }
        let frame = if datagram.len() > max {
            Frame::Oversized {
                prefix: datagram[..max].to_vec(),
                len: datagram.len(),
            }
        } else {
            Frame::Message(datagram.to_vec())
        };
        let message = Received {
            sender: peer.ip(),
            frame,
            at: Timestamp::now(),
        };
        if sender.send(message).await.is_err() {
            return;
        }
    }
}

async fn accept_tcp(
    listener: TcpListener,
    max: usize,
    max_connections: usize,
    sender: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(max_connections));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let sender = sender.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    read_tcp(stream, peer, max, sender, stop).await;
                    drop(permit);
                });
            }
            Err(error) => tracing::warn!(%error, "syslog TCP accept failed"),
        }
    }
}

async fn read_tcp(
    mut stream: TcpStream,
    peer: SocketAddr,
    max: usize,
    sender: mpsc::Sender<Received>,
    mut stop: watch::Receiver<bool>,
) {
    let mut framer = TcpFramer::new(max);
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = stream.read(&mut buffer) => read,
            _ = stop.changed() => return,
        };
        let n_read = match read {
            Ok(0) => {
                if let Some(frame) = framer.finish() {
                    let _ = sender
                        .send(Received {
                            sender: peer.ip(),
                            frame,
                            at: Timestamp::now(),
                        })
                        .await;
                }
                return;
            }
            Ok(n_read) => n_read,
            Err(error) => {
                tracing::debug!(%peer, %error, "syslog TCP connection failed");
                return;
            }
        };
        framer.push(&buffer[..n_read]);
        while let Some(frame) = framer.next_frame() {
            let message = Received {
                sender: peer.ip(),
                frame,
                at: Timestamp::now(),
            };
            if sender.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// Parses messages with one parser per sender (so one host's IKE_SA state is not mixed
/// with another's) and spools them in batches.
async fn spool_messages(
    mut receiver: mpsc::Receiver<Received>,
    mut sink: Sink,
    template: ParseOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut parsers: HashMap<IpAddr, (u64, Parser)> = HashMap::new();
    let mut use_clock = 0u64;
    let mut retired = ParseStats::default();
    let mut n_reported_rejects = 0;
    let mut batch = Vec::new();
    loop {
        let first = tokio::select! {
            first = receiver.recv() => first,
            _ = stop.changed() => None,
        };
        let Some(first) = first else {
            return Ok(());
        };
        batch.push(first);
        while batch.len() < 1024 {
            match receiver.try_recv() {
                Ok(message) => batch.push(message),
                Err(_) => break,
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        for message in batch.drain(..) {
            use_clock += 1;
            if !parsers.contains_key(&message.sender) && parsers.len() >= MAX_SENDERS {
                let oldest = parsers
                    .iter()
                    .min_by_key(|(_, (used, _))| *used)
                    .map(|(ip, _)| *ip);
                if let Some(oldest) = oldest
                    && let Some((_, parser)) = parsers.remove(&oldest)
                {
                    retired.add(parser.stats());
                }
            }
            let (used, parser) = parsers.entry(message.sender).or_insert_with(|| {
                let mut options = template.clone();
                options.source = sink.source_id().to_owned();
                (0, Parser::new(Format::Syslog, options))
            });
            *used = use_clock;
            let seq = sink.reserve(1);
            parser.set_now(message.at);
            match &message.frame {
                Frame::Message(bytes) => parser.parse_line(bytes, seq, message.at, &mut events),
                Frame::Oversized { prefix, len } => {
                    parser.parse_oversized(prefix, *len, seq, message.at, &mut events);
                }
            }
        }
        let mut stats = retired.clone();
        for (_, parser) in parsers.values() {
            stats.add(parser.stats());
        }
        if stats.n_rejected() > n_reported_rejects {
            n_reported_rejects = stats.n_rejected();
            tracing::warn!(source = %sink.source_id(), %stats, "rejected syslog messages (kept as pipeline errors)");
        }
        if !sink.append(events, &mut stop).await? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
