//! Prints what charon says on its VICI socket, one JSON object per line: first the
//! `list-sas` snapshot, then every event as it arrives. For debugging and for capturing
//! fixtures (`gateway/testdata/vici`).
//!
//! `cargo run -p gateway --example vici-dump -- /path/to/charon.vici`

use std::io::Write;
use std::path::PathBuf;

use gateway::vici::client::Client;
use gateway::vici::wire::Message;

const EVENTS: [&str; 6] = [
    "ike-updown",
    "child-updown",
    "ike-rekey",
    "child-rekey",
    "ike-update",
    "log",
];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(socket) = std::env::args_os().nth(1).map(PathBuf::from) else {
        return Err("usage: vici-dump SOCKET".into());
    };
    let mut client = Client::connect(&socket).await?;
    for event in EVENTS {
        client.register(event).await?;
    }
    let (sas, _) = client
        .streamed("list-sas", "list-sa", &Message::new())
        .await?;
    // Flushed line by line: the capture script reads the file while the dump runs.
    let mut stdout = std::io::stdout().lock();
    for sa in sas {
        let line = serde_json::json!({ "event": "list-sa", "message": sa.to_json() });
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
    loop {
        let event = client.next_event().await?;
        let line = serde_json::json!({ "event": event.name, "message": event.message.to_json() });
        writeln!(stdout, "{line}")?;
        stdout.flush()?;
    }
}
