//! Files that survive a crash: the one toolkit every crate that keeps state on disk uses.
//!
//! The principal type is [`Spool`], an append-only, fsynced, bounded log of serde records
//! in segment files, read by named cursors that each move only when their consumer says so:
//! the gateway's queue of event batches to ship (cursor `ship`), and next the alert journal,
//! the notification outbox (a cursor per channel) and the agent's action journal. Beside it,
//! [`lock_dir`] keeps one process per directory, [`write_atomic`] replaces a file whole or
//! not at all ([`write_json`] and [`read_json`] for a state file of one JSON value), and
//! [`sync_dir`] and [`create_dir_all`] make a directory's entries durable.
//!
//! A leaf of the workspace: std, serde, serde_json and thiserror only (checked by
//! `app/tests/architecture.rs`, `durable_is_a_leaf`), so that the gateway's agent can link it
//! without pulling in anything of the server's. Errors are [`Error`]s; each crate that uses
//! it turns them into its own.

mod crc32;
mod error;
mod lock;
mod spool;
mod state_file;
mod write;

pub use error::{Error, FileError, Result};
pub use lock::{DirLock, lock_dir};
pub use spool::{Damage, Limits, Peeked, Position, Spool};
pub use state_file::{read_json, write_json};
pub use write::{create_dir_all, sync_dir, write_atomic};

#[cfg(test)]
mod tests;
