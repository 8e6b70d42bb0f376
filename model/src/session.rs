//! A VPN session rebuilt from everything the sources said: [`Session`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::geo::Geo;
use crate::vpn::{AuthMethod, Counters, Endpoint, Identities, TerminateCause};

/// `vpn.state` of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Up, as far as anyone said.
    Active,
    /// Ended in an orderly way (either side deleted it).
    Closed,
    /// Ended because the peer disappeared (dead peer detection).
    Lost,
}

impl SessionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Active => "active",
            SessionState::Closed => "closed",
            SessionState::Lost => "lost",
        }
    }

    pub fn is_open(self) -> bool {
        self == SessionState::Active
    }
}

/// One VPN session: a user connected from somewhere, held a virtual IP for a while, and left.
///
/// The collector emits a new snapshot of a session whenever it changes; `version` grows with
/// every snapshot so that the newest one wins when snapshots are read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// `session_id`: stable and unique across gateways and daemon restarts.
    pub session_id: String,
    /// `observer.hostname`: the gateway that carried it.
    pub gateway: Option<String>,
    /// `vpn.connection`
    pub connection: Option<String>,
    /// Unique ids of the IKE_SAs of this session, oldest first (a rekey adds one).
    pub ike_sa_ids: Vec<u64>,
    pub identities: Identities,
    /// `vpn.auth_method`
    pub method: Option<AuthMethod>,
    /// `source.*`: the client's public address.
    pub client: Endpoint,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_geo: Option<Geo>,
    /// `vpn.virtual_ip`
    pub virtual_ip: Option<IpAddr>,
    /// `event.start`
    pub start: Timestamp,
    /// `event.end`: None while the session is open.
    pub end: Option<Timestamp>,
    pub state: SessionState,
    pub cause: Option<TerminateCause>,
    pub counters: Counters,
    /// The counters of each CHILD_SA (by its unique id) as last reported; `counters` is their
    /// sum, or accounting's totals where those are larger. Kept with the session so that a
    /// CHILD_SA reported again after a restart replaces its own counts instead of adding to
    /// them. Not a column: the WAL and the state file carry it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub child_sa_counters: BTreeMap<u64, Counters>,
    /// `vpn.rekey_count`
    pub rekey_count: u32,
    /// `vpn.accounting_id`: the RADIUS Acct-Session-Id, when accounting reported the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting_id: Option<String>,
    /// `vpn.session_version`
    pub version: u64,
    /// When the newest event folded into this snapshot happened.
    pub updated: Timestamp,
    /// What each source said of this session, apart (the VPN's own events, RADIUS
    /// accounting), so that the collector goes on after a restart exactly where it stopped.
    /// Opaque to everyone else. Not a column: the WAL and the state file carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<SessionSources>,
}

/// See [`Session::sources`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSources(pub serde_json::Value);

impl Session {
    /// `user.name`
    pub fn user_name(&self) -> Option<&str> {
        self.identities.user_name()
    }
}

/// What the collector was still assembling when it handed a batch on: logins whose events
/// are stored but that are not (yet) a row of `sessions` (an IKE_SA negotiating, RADIUS
/// accounting held for the VPN's own events). Opaque to everyone but the collector, which
/// writes it and reads it back after a restart; the store keeps the newest one durably (in
/// the write-ahead log with the batch it came with, then in `DATA/state/collector.json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectorCheckpoint(pub serde_json::Value);
