#![allow(clippy::unwrap_used)]
//! The VICI client pairs every reply with its command. VICI has no request ids, so after a
//! command whose reply was never read (it timed out, or its future was dropped) a late
//! reply would be taken for the answer to the next command; the client must refuse further
//! commands instead, and a new connection must get the right answers.
//!
//! The peer here is a fake VICI server on a unix socket in a temporary directory, not
//! charon: a real charon cannot be made to answer late on demand. It answers every command
//! in order, as charon does (`answer = <command name>`), the command `slow` only after
//! [`SLOW_REPLY`], followed by an `ike-updown` event.

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::Error;
use gateway::vici::client::Client;
use gateway::vici::wire::{self, FrameReader, Message, PacketType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// How late the fake peer answers `slow`.
const SLOW_REPLY: Duration = Duration::from_millis(400);

/// Serves every connection on `socket` until the test ends.
fn fake_charon(socket: &Path) {
    let listener = UnixListener::bind(socket).unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(stream));
        }
    });
}

async fn serve(mut stream: UnixStream) {
    let mut frames = FrameReader::default();
    let mut buffer = vec![0; 4096];
    loop {
        let frame = loop {
            if let Some(frame) = frames.next_frame().unwrap() {
                break frame;
            }
            let n_read = stream.read(&mut buffer).await.unwrap_or(0);
            if n_read == 0 {
                return;
            }
            frames.push(&buffer[..n_read]);
        };
        let packet = wire::decode_packet(&frame).unwrap();
        let name = packet.name.unwrap_or_default();
        let mut reply = match packet.kind {
            PacketType::CmdRequest => {
                if name == "slow" {
                    tokio::time::sleep(SLOW_REPLY).await;
                }
                let message = Message::new().with("answer", name.as_str());
                wire::encode_packet(PacketType::CmdResponse, None, &message).unwrap()
            }
            PacketType::EventRegister | PacketType::EventUnregister => {
                wire::encode_packet(PacketType::EventConfirm, None, &Message::new()).unwrap()
            }
            other => panic!("the fake peer got a {other}"),
        };
        if name == "slow" {
            let event = Message::new().with("after", "slow");
            reply.extend(
                wire::encode_packet(PacketType::Event, Some("ike-updown"), &event).unwrap(),
            );
        }
        if stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

fn answer(message: &Message) -> String {
    message.str("answer").unwrap_or_default()
}

fn assert_out_of_step(result: gateway::Result<Message>) {
    match result {
        Err(Error::Vici { detail, .. }) => {
            assert!(detail.contains("out of step"), "{detail}");
            assert!(detail.contains("`slow`"), "{detail}");
        }
        Ok(message) => panic!(
            "a command after an unread reply got an answer: {:?}",
            answer(&message)
        ),
        Err(other) => panic!("expected Error::Vici, got {other}"),
    }
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("charon.vici")
}

#[tokio::test]
async fn after_a_command_timed_out_the_next_one_fails_and_a_reconnect_gets_the_right_answer() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    fake_charon(&socket);

    let mut client = Client::connect(&socket)
        .await
        .unwrap()
        .with_command_timeout(Duration::from_millis(300));
    // In step: an answer per command.
    assert_eq!(
        answer(&client.request("stats", &Message::new()).await.unwrap()),
        "stats"
    );
    let late = client.request("slow", &Message::new()).await;
    assert!(
        matches!(&late, Err(Error::Vici { detail, .. }) if detail.contains("no reply within")),
        "{late:?}"
    );
    assert!(client.is_out_of_step());
    // Sent at once, this command would wait long enough to read the reply to `slow` (due
    // 100 ms from now) as its own answer; it must fail without waiting.
    let started = std::time::Instant::now();
    assert_out_of_step(client.request("version", &Message::new()).await);
    assert!(started.elapsed() < Duration::from_millis(100));
    let register = client.register("log").await;
    assert!(
        matches!(&register, Err(Error::Vici { detail, .. }) if detail.contains("out of step")),
        "{register:?}"
    );
    // The late reply is nobody's event: the event after it is the next one handed out.
    let event = tokio::time::timeout(Duration::from_secs(5), client.next_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.name, "ike-updown");
    assert_eq!(event.message.str("after").as_deref(), Some("slow"));
    assert_out_of_step(client.request("version", &Message::new()).await);

    // A new connection is in step again.
    let mut client = Client::connect(&socket).await.unwrap();
    assert_eq!(
        answer(&client.request("version", &Message::new()).await.unwrap()),
        "version"
    );
}

#[tokio::test]
async fn after_a_command_future_was_dropped_the_next_one_fails() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    fake_charon(&socket);

    let mut client = Client::connect(&socket).await.unwrap();
    // The caller gives up on `slow` long before the client's own 30 s timeout: the future
    // is dropped while it waits for the reply.
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        client.request("slow", &Message::new()),
    )
    .await;
    assert!(dropped.is_err(), "the fake peer answered `slow` early");
    assert!(client.is_out_of_step());
    // Without the check, this request would read the reply to `slow` (due 300 ms from now).
    assert_out_of_step(client.request("version", &Message::new()).await);

    let mut client = Client::connect(&socket).await.unwrap();
    assert_eq!(
        answer(&client.request("version", &Message::new()).await.unwrap()),
        "version"
    );
    assert!(!client.is_out_of_step());
}

#[tokio::test]
async fn streamed_commands_and_registrations_stay_in_step() {
    let dir = tempfile::tempdir().unwrap();
    let socket = socket_in(&dir);
    fake_charon(&socket);

    let mut client = Client::connect(&socket).await.unwrap();
    client.register("ike-updown").await.unwrap();
    let (streamed, response) = client
        .streamed("list-sas", "list-sa", &Message::new())
        .await
        .unwrap();
    assert!(streamed.is_empty());
    assert_eq!(answer(&response), "list-sas");
    // A slow command waited for to the end is in step, its event queued for next_event.
    assert_eq!(
        answer(&client.request("slow", &Message::new()).await.unwrap()),
        "slow"
    );
    assert_eq!(
        answer(&client.request("version", &Message::new()).await.unwrap()),
        "version"
    );
    let event = tokio::time::timeout(Duration::from_secs(5), client.next_event())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.name, "ike-updown");
    assert!(!client.is_out_of_step());
}
