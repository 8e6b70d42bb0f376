//! The `tunnelwatch` binary: command line, configuration loading, runtime, wiring and
//! shutdown. This is the only crate that reads configuration files or the environment,
//! installs the tracing subscriber or builds a tokio runtime (ARCHITECTURE.md).
//!
//! Built with the `gateway` feature only (`--no-default-features --features gateway`), it is
//! the agent for VPN hosts: `gateway`, `parse` and `check-config`, without Arrow, DataFusion
//! or tantivy. The `server` feature adds `server`, `demo`, `ingest` and `sql`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[cfg(feature = "server")]
pub mod alert_sink;
#[cfg(feature = "server")]
pub mod alerts_cli;
pub mod cli;
pub mod commands;
pub mod config;
#[cfg(feature = "server")]
pub mod control;
#[cfg(feature = "server")]
pub mod demo;
pub mod pcap;
#[cfg(feature = "server")]
pub mod pipeline;
#[cfg(feature = "server")]
pub mod rules_cli;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod time_merge;
