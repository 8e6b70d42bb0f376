//! The envelope every event travels in: [`Event`], its stable [`EventId`] and the
//! [`EventBody`] that says what happened.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::flow::{ApiRequest, Flow};
use crate::geo::Geo;
use crate::vpn::{Auth, ChildSaEvent, IkeSaEvent, L2tpEvent, SessionEvent, VirtualIpEvent};

/// A stable identity for idempotent delivery: the source that produced the event and a
/// sequence number that only grows within that source.
///
/// For a log file the sequence is the line number within the source (kept across rotations
/// by the tailer's checkpoint) and `part` numbers the events one line produced. The
/// collector keeps, per source, the highest id it stored, so a resent batch is not stored twice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId {
    /// `event.provider` style name of the source, e.g. `gw1/charon`.
    pub source: String,
    pub seq: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub part: u16,
}

fn is_zero(part: &u16) -> bool {
    *part == 0
}

impl EventId {
    pub fn new(source: impl Into<String>, seq: u64, part: u16) -> EventId {
        EventId {
            source: source.into(),
            seq,
            part,
        }
    }

    /// The position of this event inside its source, comparable across events of one source.
    pub fn position(&self) -> (u64, u16) {
        (self.seq, self.part)
    }
}

impl EventId {
    /// Reads what [`Display`](fmt::Display) wrote (`source:seq` or `source:seq.part`); the
    /// source may itself hold colons.
    pub fn parse(text: &str) -> Option<EventId> {
        let (source, position) = text.rsplit_once(':')?;
        let (seq, part) = match position.split_once('.') {
            Some((seq, part)) => (seq, part.parse().ok()?),
            None => (position, 0),
        };
        if source.is_empty() || (part == 0 && position.contains('.')) {
            return None;
        }
        Some(EventId::new(source, seq.parse().ok()?, part))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.part == 0 {
            write!(f, "{}:{}", self.source, self.seq)
        } else {
            write!(f, "{}:{}.{}", self.source, self.seq, self.part)
        }
    }
}

/// Who observed the event (ECS `observer.*`): the VPN gateway and the product on it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observer {
    /// `observer.hostname`: the gateway's name as configured, or as the syslog envelope says.
    pub hostname: Option<String>,
    /// `observer.product`, e.g. `strongswan`.
    pub product: Option<String>,
}

/// One normalized event. Everything that enters tunnelwatch becomes one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `event.id`
    pub id: EventId,
    /// `@timestamp`: when the event happened, in UTC.
    pub timestamp: Timestamp,
    /// `event.dataset`, e.g. `strongswan.charon`.
    pub dataset: String,
    pub observer: Observer,
    /// `event.original`: the raw line or message, exactly as received (invalid UTF-8 replaced
    /// by U+FFFD). Control characters are kept; every output escapes them.
    pub original: String,
    /// `session_id`: the VPN session this event belongs to; filled by the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// `source.geo.*`, `source.as.*` of the client's public address; filled by the collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_geo: Option<Geo>,
    pub body: EventBody,
}

/// What happened. The serde tag is the `event.action` family stored with every row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// An authentication attempt, successful or not (OCSF 3002 Authentication).
    Auth(Auth),
    /// An IKE_SA came up, went down, was rekeyed, or a peer started to connect.
    IkeSa(IkeSaEvent),
    /// A CHILD_SA (the IPsec SA carrying traffic) came up, went down or was rekeyed.
    ChildSa(ChildSaEvent),
    /// A virtual IP was leased to a peer or released.
    VirtualIp(VirtualIpEvent),
    /// An L2TP tunnel or call came up or went down.
    L2tp(L2tpEvent),
    /// A VPN session started, was updated or stopped (RADIUS accounting says this directly).
    Session(SessionEvent),
    /// A network flow between a VPN client and a server (OCSF 4001 Network Activity).
    Flow(Flow),
    /// An HTTP request to an API behind the VPN.
    ApiRequest(ApiRequest),
    /// A certificate the gateway holds (a client's it trusts, its own, a CA), as a periodic
    /// scan saw it: when it expires.
    Certificate(crate::CertificateEvent),
    /// Input that could not be turned into an event (ECS `event.kind: pipeline_error`). The raw
    /// input is kept in [`Event::original`].
    PipelineError(PipelineError),
}

impl EventBody {
    /// ECS `event.kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::PipelineError(_) => "pipeline_error",
            EventBody::Session(_) | EventBody::Certificate(_) => "state",
            _ => "event",
        }
    }

    /// ECS `event.category` (one value; ECS allows a list).
    pub fn category(&self) -> &'static str {
        match self {
            EventBody::Auth(_) => "authentication",
            EventBody::IkeSa(_)
            | EventBody::ChildSa(_)
            | EventBody::VirtualIp(_)
            | EventBody::L2tp(_) => "network",
            EventBody::Session(_) => "session",
            EventBody::Flow(_) => "network",
            EventBody::ApiRequest(_) => "web",
            EventBody::Certificate(_) => "configuration",
            EventBody::PipelineError(_) => "process",
        }
    }

    /// ECS `event.action`: a short, stable verb phrase such as `ike-sa-established`.
    pub fn action(&self) -> &'static str {
        use crate::{L2tpChange as L, LeaseChange as V, SaChange as S, SessionChange as C};
        match self {
            EventBody::Auth(auth) => match auth.outcome {
                crate::Outcome::Success => "auth-success",
                crate::Outcome::Failure => "auth-failure",
            },
            EventBody::IkeSa(ike) => match ike.change {
                S::Connecting => "ike-sa-connecting",
                S::Established => "ike-sa-established",
                S::Rekeyed => "ike-sa-rekeyed",
                S::Deleted => "ike-sa-deleted",
                S::Lost => "ike-sa-lost",
            },
            EventBody::ChildSa(child) => match child.change {
                S::Connecting => "child-sa-connecting",
                S::Established => "child-sa-established",
                S::Rekeyed => "child-sa-rekeyed",
                S::Deleted => "child-sa-deleted",
                S::Lost => "child-sa-lost",
            },
            EventBody::VirtualIp(vip) => match vip.change {
                V::Assigned => "virtual-ip-assigned",
                V::Released => "virtual-ip-released",
            },
            EventBody::L2tp(l2tp) => match l2tp.change {
                L::TunnelEstablished => "l2tp-tunnel-established",
                L::TunnelClosed => "l2tp-tunnel-closed",
                L::CallEstablished => "l2tp-call-established",
                L::CallClosed => "l2tp-call-closed",
            },
            EventBody::Session(session) => match session.change {
                C::Start => "session-start",
                C::Update => "session-update",
                C::Stop => "session-stop",
            },
            EventBody::Flow(_) => "flow",
            EventBody::ApiRequest(_) => "api-request",
            EventBody::Certificate(_) => "certificate-seen",
            EventBody::PipelineError(error) => match error.reason {
                RejectReason::Malformed => "rejected-malformed",
                RejectReason::Oversized => "rejected-oversized",
                RejectReason::InvalidUtf8 => "rejected-invalid_utf8",
                RejectReason::BadTimestamp => "rejected-bad_timestamp",
            },
        }
    }

    /// OCSF class uid: 3002 Authentication, 4001 Network Activity, 4002 HTTP Activity, or
    /// 0 (Base Event) when no class fits.
    pub fn ocsf_class_uid(&self) -> u32 {
        match self {
            EventBody::Auth(_) => 3002,
            EventBody::IkeSa(_)
            | EventBody::ChildSa(_)
            | EventBody::VirtualIp(_)
            | EventBody::L2tp(_)
            | EventBody::Session(_)
            | EventBody::Flow(_) => 4001,
            EventBody::ApiRequest(_) => 4002,
            // OCSF 5001 Device Inventory Info: what a device holds.
            EventBody::Certificate(_) => 5001,
            EventBody::PipelineError(_) => 0,
        }
    }
}

/// Why a piece of input was rejected. Counted per reason and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The line is not in the format the parser expects (no timestamp, no charon thread tag…).
    Malformed,
    /// The line was longer than the configured maximum; the kept raw text is truncated.
    Oversized,
    /// The line is not valid UTF-8 and could not be parsed.
    InvalidUtf8,
    /// The line's timestamp could not be read or does not exist (Feb 30, a DST gap…).
    BadTimestamp,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Malformed => "malformed",
            RejectReason::Oversized => "oversized",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::BadTimestamp => "bad_timestamp",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Input that could not become an event, kept so that nothing disappears silently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineError {
    pub reason: RejectReason,
    /// Human-readable detail for `error.message`.
    pub message: String,
    /// Length of the original input in bytes (the stored original may be truncated).
    pub original_len: u64,
}

#[cfg(test)]
mod tests {
    use super::EventId;

    #[test]
    fn an_event_id_reads_back_what_it_wrote() {
        for id in [
            EventId::new("gw1/charon", 17, 0),
            EventId::new("gw1/pcap:ipsec0", 3, 2),
            EventId::new("a:b:c", u64::MAX, u16::MAX),
        ] {
            assert_eq!(EventId::parse(&id.to_string()), Some(id));
        }
    }

    #[test]
    fn malformed_event_ids_are_refused() {
        for text in [
            "",
            "no-position",
            ":17",
            "gw1/charon:",
            "gw1/charon:x",
            "gw1/charon:17.",
            "gw1/charon:17.0",
            "gw1/charon:17.70000",
            "gw1/charon:-1",
            "gw1/charon:18446744073709551616",
        ] {
            assert_eq!(EventId::parse(text), None, "{text:?}");
        }
    }
}
