//! What a VPN says: authentication attempts, IKE and CHILD SA changes, L2TP tunnels and
//! calls, virtual IP leases and session start/stop, each with the [`Peer`] it concerns.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// An IP address and, when known, a port (ECS `source.ip` / `source.port`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: Option<IpAddr>,
    pub port: Option<u16>,
}

impl Endpoint {
    pub fn new(ip: IpAddr, port: Option<u16>) -> Endpoint {
        Endpoint { ip: Some(ip), port }
    }

    pub fn is_empty(&self) -> bool {
        self.ip.is_none() && self.port.is_none()
    }
}

/// The identities a peer presented. `user.name` is derived from them by [`Identities::user_name`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Identities {
    /// `vpn.ike_id`: the IKE identity (IDi), e.g. `client1@psk.vpn.test` or a DN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_id: Option<String>,
    /// `vpn.eap_id`: the EAP identity, when EAP was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eap_id: Option<String>,
    /// `vpn.xauth_id`: the XAuth user name (IKEv1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xauth_id: Option<String>,
    /// `vpn.cert_subject`: the subject DN of the peer certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_subject: Option<String>,
    /// `vpn.cert_serial`: the serial number of the peer certificate, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_serial: Option<String>,
}

impl Identities {
    /// `user.name`: the most specific identity a human would recognise: the EAP or XAuth
    /// identity when there is one (that is the account), else the IKE identity.
    pub fn user_name(&self) -> Option<&str> {
        self.eap_id
            .as_deref()
            .or(self.xauth_id.as_deref())
            .or(self.ike_id.as_deref())
    }

    /// Fills the fields that are empty here from `other`.
    pub fn merge_from(&mut self, other: &Identities) {
        fn fill(slot: &mut Option<String>, value: &Option<String>) {
            if slot.is_none() {
                slot.clone_from(value);
            }
        }
        fill(&mut self.ike_id, &other.ike_id);
        fill(&mut self.eap_id, &other.eap_id);
        fill(&mut self.xauth_id, &other.xauth_id);
        fill(&mut self.cert_subject, &other.cert_subject);
        fill(&mut self.cert_serial, &other.cert_serial);
    }
}

/// The peer an event is about: which IKE_SA on which connection, from where, as whom.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// `vpn.connection`: the connection (config) name, e.g. `rw-psk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// `vpn.ike_sa_id`: the IKE_SA's unique id on its gateway (charon's `ikesa-uniqueid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ike_sa_id: Option<u64>,
    /// `source.*`: the VPN client's public address.
    #[serde(default, skip_serializing_if = "Endpoint::is_empty")]
    pub client: Endpoint,
    /// `destination.*`: the gateway's address the client talked to.
    #[serde(default, skip_serializing_if = "Endpoint::is_empty")]
    pub server: Endpoint,
    #[serde(default)]
    pub identities: Identities,
}

/// ECS `event.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// `vpn.auth_method`: how the peer authenticated (or tried to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// Pre-shared key.
    Psk,
    /// Public key / certificate signature.
    Cert,
    /// EAP-MSCHAPv2 checked by the gateway itself.
    EapMschapv2,
    /// EAP relayed to a RADIUS server (eap-radius); the inner method is in the reason text.
    EapRadius,
    /// Other EAP methods checked by the gateway (MD5, TLS, …).
    Eap,
    /// IKEv1 XAuth.
    Xauth,
    /// PPP CHAP / MS-CHAP (L2TP).
    Chap,
    /// PPP PAP (L2TP).
    Pap,
    /// Not known from what the source said.
    Unknown,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Psk => "psk",
            AuthMethod::Cert => "cert",
            AuthMethod::EapMschapv2 => "eap-mschapv2",
            AuthMethod::EapRadius => "eap-radius",
            AuthMethod::Eap => "eap",
            AuthMethod::Xauth => "xauth",
            AuthMethod::Chap => "chap",
            AuthMethod::Pap => "pap",
            AuthMethod::Unknown => "unknown",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `vpn.auth_failure`: a machine-readable class of authentication failure. The exact words
/// of the source go to `event.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCode {
    /// The pre-shared key did not match (strongSwan: "MAC mismatched").
    PskMismatch,
    /// A signature or certificate did not verify or the certificate was rejected.
    CertInvalid,
    /// An EAP method failed at the gateway (wrong password).
    EapFailure,
    /// The RADIUS server answered Access-Reject.
    RadiusReject,
    /// No connection config matched the peer's identities or proposals.
    NoMatchingConfig,
    /// The peer rejected our authentication (AUTH_FAILED notify received).
    PeerRejected,
    /// The exchange did not complete (retransmits gave up during authentication).
    Timeout,
    /// Anything else; see the reason text.
    Other,
}

impl FailureCode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCode::PskMismatch => "psk_mismatch",
            FailureCode::CertInvalid => "cert_invalid",
            FailureCode::EapFailure => "eap_failure",
            FailureCode::RadiusReject => "radius_reject",
            FailureCode::NoMatchingConfig => "no_matching_config",
            FailureCode::PeerRejected => "peer_rejected",
            FailureCode::Timeout => "timeout",
            FailureCode::Other => "other",
        }
    }
}

/// Why an authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFailure {
    pub code: FailureCode,
    /// `event.reason`: the source's own words.
    pub reason: String,
}

/// An authentication attempt (OCSF 3002).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auth {
    pub peer: Peer,
    pub method: AuthMethod,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<AuthFailure>,
}

impl Auth {
    /// An attempt that succeeded unless it names its failure (what every daemon's log says).
    pub fn attempt(peer: Peer, method: AuthMethod, failure: Option<AuthFailure>) -> Auth {
        let outcome = if failure.is_some() {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        Auth {
            peer,
            method,
            outcome,
            failure,
        }
    }
}

/// Byte and packet counters of an SA or session, from the client's point of view:
/// `in` is what the client sent (ECS `source.bytes`), `out` what it received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counters {
    pub bytes_in: u64,
    pub bytes_out: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_out: Option<u64>,
}

impl Counters {
    /// Byte counts a log line gave for both directions (no packet counts), or `None` when
    /// either is missing.
    pub fn of_bytes(bytes_in: Option<u64>, bytes_out: Option<u64>) -> Option<Counters> {
        Some(Counters {
            bytes_in: bytes_in?,
            bytes_out: bytes_out?,
            packets_in: None,
            packets_out: None,
        })
    }
}

/// What happened to an SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaChange {
    /// A peer started to negotiate (IKE_SA_INIT / Main Mode received).
    Connecting,
    Established,
    Rekeyed,
    /// Deleted in an orderly way, by either side.
    Deleted,
    /// The peer stopped answering (dead peer detection gave up).
    Lost,
}

impl SaChange {
    pub fn as_str(self) -> &'static str {
        match self {
            SaChange::Connecting => "connecting",
            SaChange::Established => "established",
            SaChange::Rekeyed => "rekeyed",
            SaChange::Deleted => "deleted",
            SaChange::Lost => "lost",
        }
    }
}

/// Who ended an SA or session (`vpn.terminate_cause`), named after RADIUS Acct-Terminate-Cause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminateCause {
    /// The client asked to disconnect.
    UserRequest,
    /// The gateway (an administrator or a policy) ended it.
    AdminReset,
    /// The peer went away (dead peer detection, retransmits exhausted).
    LostService,
    /// A session or idle timeout expired.
    Timeout,
    /// Something else the source named.
    Other,
    /// It ended while nobody was listening: found gone at a reconcile (the agent or its
    /// connection to the VPN daemon was down, or the daemon restarted meanwhile); when and
    /// why are unknown.
    Lost,
}

impl TerminateCause {
    pub fn as_str(self) -> &'static str {
        match self {
            TerminateCause::UserRequest => "user_request",
            TerminateCause::AdminReset => "admin_reset",
            TerminateCause::LostService => "lost_service",
            TerminateCause::Timeout => "timeout",
            TerminateCause::Other => "other",
            TerminateCause::Lost => "lost",
        }
    }
}

/// An IKE_SA changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IkeSaEvent {
    pub peer: Peer,
    pub change: SaChange,
    /// For `Rekeyed`: the unique id of the IKE_SA that replaces `peer.ike_sa_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_ike_sa_id: Option<u64>,
    /// For `Deleted` and `Lost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<TerminateCause>,
    /// `vpn.proposal`: the negotiated algorithms as strongSwan prints them
    /// (`IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519`,
    /// `ESP:AES_GCM_16_128/NO_EXT_SEQ`), on the event that brought the SA up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
}

/// A CHILD_SA changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildSaEvent {
    pub peer: Peer,
    pub change: SaChange,
    /// `vpn.child_sa`: the CHILD_SA config name, e.g. `net`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `vpn.child_sa_id`: its unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_sa_id: Option<u64>,
    /// Inbound and outbound SPIs in hex, as the gateway printed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spi_in: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spi_out: Option<String>,
    /// Traffic selectors, local side then remote side (`198.51.100.0/24`, `10.99.0.1/32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ts: Option<String>,
    /// Counters when the SA closed, from the client's point of view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    /// `vpn.proposal`: the negotiated algorithms as strongSwan prints them
    /// (`IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519`,
    /// `ESP:AES_GCM_16_128/NO_EXT_SEQ`), on the event that brought the SA up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
}

/// A certificate as a scan of the gateway's certificates saw it. The subject and serial are
/// in `peer.identities` (`vpn.cert_subject`, `vpn.cert_serial`, as for a peer that presented
/// it); the rest of the peer is empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateEvent {
    pub peer: Peer,
    /// `x509.issuer.distinguished_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// `x509.not_before` and `x509.not_after`.
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
    /// Where it was found: a file, or `vici` (charon's `list-certs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// A virtual IP was handed to a peer or came back to the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualIpEvent {
    pub peer: Peer,
    pub ip: IpAddr,
    pub change: LeaseChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaseChange {
    Assigned,
    Released,
}

impl LeaseChange {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseChange::Assigned => "assigned",
            LeaseChange::Released => "released",
        }
    }
}

/// A session started, was updated or stopped, as a source says it directly (RADIUS
/// accounting Start / Interim-Update / Stop). Sessions rebuilt from SA events are
/// [`crate::Session`] records, not these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEvent {
    pub peer: Peer,
    pub change: SessionChange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_ip: Option<IpAddr>,
    /// The accounting session id of the source (RADIUS Acct-Session-Id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounting_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counters: Option<Counters>,
    /// Seconds since the session started, as the source counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<TerminateCause>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionChange {
    Start,
    Update,
    Stop,
}

impl SessionChange {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionChange::Start => "start",
            SessionChange::Update => "update",
            SessionChange::Stop => "stop",
        }
    }
}

/// An L2TP tunnel or call (session) came up or went down (xl2tpd). L2TP runs inside an IPsec
/// transport-mode SA; the PPP session it carries is reported by pppd as [`SessionEvent`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L2tpEvent {
    /// The LAC (client) address in `client`, the LNS section in `connection`.
    pub peer: Peer,
    pub change: L2tpChange,
    /// Our tunnel id and the peer's, as the daemon printed them (`Local: 12345, Remote: 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_tunnel_id: Option<u16>,
    /// Our call (session) id and the peer's, for call changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_call_id: Option<u16>,
    /// `event.reason` for closes: the result code text or why pppd ended, in the source's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum L2tpChange {
    TunnelEstablished,
    TunnelClosed,
    CallEstablished,
    CallClosed,
}

impl L2tpChange {
    pub fn as_str(self) -> &'static str {
        match self {
            L2tpChange::TunnelEstablished => "tunnel-established",
            L2tpChange::TunnelClosed => "tunnel-closed",
            L2tpChange::CallEstablished => "call-established",
            L2tpChange::CallClosed => "call-closed",
        }
    }
}
