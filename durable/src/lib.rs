//! Files that survive a crash: the one toolkit every crate that keeps state on disk uses.
//!
//! A leaf of the workspace: std, serde, serde_json and thiserror only (checked by
//! `app/tests/architecture.rs`, `durable_is_a_leaf`), so that the gateway's agent can link it
//! without pulling in anything of the server's.
