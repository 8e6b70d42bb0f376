//! An async VICI client over charon's unix socket: commands, streamed commands and events.
//!
//! One connection carries both command responses and the events the client registered
//! for, interleaved. The client reads packets in order; events that arrive while it waits
//! for a response are queued and handed out by [`Client::next_event`] in arrival order, so
//! nothing is lost or reordered.
//!
//! VICI has no request ids: a reply is the answer to the oldest command still waiting. So
//! the client pairs a reply with its command only while it is in step: a command whose
//! reply was not read (it timed out, failed while waiting, or its future was dropped) leaves
//! the client out of step for good, and every further command fails at once with
//! [`Error::Vici`] instead of taking that late reply for its own answer. The caller then
//! reconnects (the VICI source's loop does so on any [`Error::Vici`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::wire::{self, FrameReader, Message, PacketType};
use crate::{Error, Result};

/// How long a command may take before the connection is considered broken.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Events queued while waiting for a response; beyond this the connection is dropped and
/// the caller reconciles after reconnecting (bounded memory, nothing silently lost).
const MAX_QUEUED_EVENTS: usize = 100_000;

/// An event: its name (`ike-updown`, `log`, ...) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViciEvent {
    pub name: String,
    pub message: Message,
}

#[derive(Debug)]
pub struct Client {
    socket: PathBuf,
    stream: UnixStream,
    frames: FrameReader,
    queued: VecDeque<ViciEvent>,
    read_buffer: Vec<u8>,
    command_timeout: Duration,
    /// A command was sent (or its sending begun) and its reply not read yet. Set before
    /// sending, cleared only when the reply is read: still set when a new command starts,
    /// it means an earlier reply is outstanding and the connection is out of step.
    awaiting_reply: Option<String>,
}

impl Client {
    pub async fn connect(socket: &Path) -> Result<Client> {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|error| vici_error(socket, format!("cannot connect: {error}")))?;
        Ok(Client {
            socket: socket.to_owned(),
            stream,
            frames: FrameReader::default(),
            queued: VecDeque::new(),
            read_buffer: vec![0; 64 * 1024],
            command_timeout: COMMAND_TIMEOUT,
            awaiting_reply: None,
        })
    }

    /// How long a command may wait for its reply (default 30 s). After a timeout the client
    /// is out of step (see the module docs).
    pub fn with_command_timeout(mut self, timeout: Duration) -> Client {
        self.command_timeout = timeout;
        self
    }

    /// Whether an earlier command's reply was never read: every command now fails, and the
    /// caller must connect again.
    pub fn is_out_of_step(&self) -> bool {
        self.awaiting_reply.is_some()
    }

    fn error(&self, detail: impl Into<String>) -> Error {
        vici_error(&self.socket, detail)
    }

    /// Sends a command (a request, or an event (un)registration) whose reply must be read
    /// next; refuses when an earlier reply is still outstanding.
    async fn send(&mut self, kind: PacketType, name: &str, message: &Message) -> Result<()> {
        if let Some(earlier) = &self.awaiting_reply {
            return Err(self.error(format!(
                "out of step: the reply to `{earlier}` was never read (timed out or abandoned), \
                 so a reply now could be the answer to it; refusing `{name}`, reconnect"
            )));
        }
        let bytes = wire::encode_packet(kind, Some(name), message)
            .map_err(|error| self.error(error.to_string()))?;
        // Set before writing: a write cut short, or a future dropped from here on, leaves
        // the stream out of step.
        self.awaiting_reply = Some(name.to_owned());
        self.stream
            .write_all(&bytes)
            .await
            .map_err(|error| self.error(format!("write failed: {error}")))
    }

    /// The next packet from the socket, in order.
    async fn read_packet(&mut self) -> Result<wire::Packet> {
        loop {
            match self.frames.next_frame() {
                Ok(Some(frame)) => {
                    return wire::decode_packet(&frame)
                        .map_err(|error| self.error(error.to_string()));
                }
                Ok(None) => {}
                Err(error) => return Err(self.error(error.to_string())),
            }
            let n_read = self
                .stream
                .read(&mut self.read_buffer)
                .await
                .map_err(|error| self.error(format!("read failed: {error}")))?;
            if n_read == 0 {
                return Err(self.error("charon closed the connection"));
            }
            self.frames.push(&self.read_buffer[..n_read]);
        }
    }

    /// Reads until a packet that is not an event arrives, queueing events meanwhile. That
    /// packet is the reply to the command in flight, which is then no longer awaited.
    async fn read_reply(&mut self) -> Result<wire::Packet> {
        let timeout = self.command_timeout;
        let reading = async {
            loop {
                let packet = self.read_packet().await?;
                if packet.kind != PacketType::Event {
                    self.awaiting_reply = None;
                    return Ok(packet);
                }
                if self.queued.len() >= MAX_QUEUED_EVENTS {
                    return Err(self.error(format!(
                        "more than {MAX_QUEUED_EVENTS} events queued while waiting for a reply"
                    )));
                }
                self.queued.push_back(ViciEvent {
                    name: packet.name.unwrap_or_default(),
                    message: packet.message,
                });
            }
        };
        match tokio::time::timeout(timeout, reading).await {
            Ok(result) => result,
            Err(_) => Err(vici_error(
                &self.socket,
                format!(
                    "no reply within {} ms; the connection is out of step now",
                    timeout.as_millis()
                ),
            )),
        }
    }

    /// Runs a command and returns its response message.
    pub async fn request(&mut self, command: &str, message: &Message) -> Result<Message> {
        self.send(PacketType::CmdRequest, command, message).await?;
        let reply = self.read_reply().await?;
        match reply.kind {
            PacketType::CmdResponse => Ok(reply.message),
            PacketType::CmdUnknown => {
                Err(self.error(format!("charon does not know the command `{command}`")))
            }
            other => Err(self.error(format!("unexpected {other} in reply to `{command}`"))),
        }
    }

    /// Subscribes to an event.
    pub async fn register(&mut self, event: &str) -> Result<()> {
        self.send(PacketType::EventRegister, event, &Message::new())
            .await?;
        self.expect_confirm(event).await
    }

    pub async fn unregister(&mut self, event: &str) -> Result<()> {
        self.send(PacketType::EventUnregister, event, &Message::new())
            .await?;
        self.expect_confirm(event).await
    }

    async fn expect_confirm(&mut self, event: &str) -> Result<()> {
        let reply = self.read_reply().await?;
        match reply.kind {
            PacketType::EventConfirm => Ok(()),
            PacketType::EventUnknown => {
                Err(self.error(format!("charon does not know the event `{event}`")))
            }
            other => Err(self.error(format!(
                "unexpected {other} in reply to registering `{event}`"
            ))),
        }
    }

    /// Runs a streamed command (e.g. `list-sas`, which answers with one `list-sa` event per
    /// IKE_SA before its response). Returns the streamed messages and the response. Other
    /// events that arrive meanwhile stay queued for [`Client::next_event`].
    pub async fn streamed(
        &mut self,
        command: &str,
        stream_event: &str,
        message: &Message,
    ) -> Result<(Vec<Message>, Message)> {
        self.register(stream_event).await?;
        let n_before = self.queued.len();
        let response = self.request(command, message).await;
        // Take the stream's events out of the queue, leave the others in order (also when
        // the command failed: a part of a listing is nobody's event).
        let mut streamed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queued.len());
        for (event_idx, event) in std::mem::take(&mut self.queued).into_iter().enumerate() {
            if event_idx >= n_before && event.name == stream_event {
                streamed.push(event.message);
            } else {
                kept.push_back(event);
            }
        }
        self.queued = kept;
        let response = response?;
        self.unregister(stream_event).await?;
        Ok((streamed, response))
    }

    /// The next event, queued ones first. Cancel-safe: bytes already read stay buffered in
    /// the client, so a dropped call loses nothing. Never hands out a reply: one that
    /// arrives here (the late answer to a command that was given up) is dropped with a
    /// warning, and the client stays out of step for commands.
    pub async fn next_event(&mut self) -> Result<ViciEvent> {
        if let Some(event) = self.queued.pop_front() {
            return Ok(event);
        }
        loop {
            let packet = self.read_packet().await?;
            if packet.kind == PacketType::Event {
                return Ok(ViciEvent {
                    name: packet.name.unwrap_or_default(),
                    message: packet.message,
                });
            }
            match &self.awaiting_reply {
                Some(command) => {
                    tracing::warn!(socket = %self.socket.display(), kind = %packet.kind, command = %command, "late VICI reply to a command given up; dropped");
                }
                None => {
                    tracing::warn!(socket = %self.socket.display(), kind = %packet.kind, "unexpected VICI packet while waiting for events; ignored");
                }
            }
        }
    }
}

fn vici_error(socket: &Path, detail: impl Into<String>) -> Error {
    Error::Vici {
        socket: socket.to_owned(),
        detail: detail.into(),
    }
}
