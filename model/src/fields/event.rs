//! What an [`Event`] says of the fields several kinds of body share (the peer, the client and
//! server addresses, counters, outcomes), for the getters of the dictionary.

use std::net::IpAddr;

use crate::{
    ApiRequest, ChildSaEvent, Counters, Event, EventBody, Flow, Identities, Peer, SessionEvent,
    SessionJoin, TerminateCause,
};

/// The peer of a VPN event, if it has one.
pub(super) fn peer(event: &Event) -> Option<&Peer> {
    match &event.body {
        EventBody::Auth(auth) => Some(&auth.peer),
        EventBody::IkeSa(ike) => Some(&ike.peer),
        EventBody::ChildSa(child) => Some(&child.peer),
        EventBody::VirtualIp(vip) => Some(&vip.peer),
        EventBody::L2tp(l2tp) => Some(&l2tp.peer),
        EventBody::Session(session) => Some(&session.peer),
        EventBody::Certificate(certificate) => Some(&certificate.peer),
        EventBody::Flow(_) | EventBody::ApiRequest(_) | EventBody::PipelineError(_) => None,
    }
}

pub(super) fn identities(event: &Event) -> Option<&Identities> {
    peer(event).map(|peer| &peer.identities)
}

pub(super) fn certificate(event: &Event) -> Option<&crate::CertificateEvent> {
    match &event.body {
        EventBody::Certificate(certificate) => Some(certificate),
        _ => None,
    }
}

pub(super) fn child_sa(event: &Event) -> Option<&ChildSaEvent> {
    match &event.body {
        EventBody::ChildSa(child) => Some(child),
        _ => None,
    }
}

pub(super) fn session_event(event: &Event) -> Option<&SessionEvent> {
    match &event.body {
        EventBody::Session(session) => Some(session),
        _ => None,
    }
}

pub(super) fn flow(event: &Event) -> Option<&Flow> {
    match &event.body {
        EventBody::Flow(flow) => Some(flow),
        _ => None,
    }
}

pub(super) fn request(event: &Event) -> Option<&ApiRequest> {
    match &event.body {
        EventBody::ApiRequest(request) => Some(request),
        _ => None,
    }
}

/// Bytes and packets, `in` from the source (`source.bytes`), `out` from the destination: a
/// flow's (its initiator is the source), or a CHILD_SA's or session's as a source reported
/// them (from the client's side).
pub(super) fn counters(event: &Event) -> Option<Counters> {
    match &event.body {
        EventBody::Flow(flow) => Some(Counters {
            bytes_in: flow.source_bytes,
            bytes_out: flow.destination_bytes,
            packets_in: Some(flow.source_packets),
            packets_out: Some(flow.destination_packets),
        }),
        EventBody::ChildSa(child) => child.counters,
        EventBody::Session(session) => session.counters,
        _ => None,
    }
}

/// `user.name`: the session's user for flows and API requests (filled by the collector),
/// else the peer's account.
pub(super) fn user_name(event: &Event) -> Option<&str> {
    match &event.body {
        EventBody::Flow(flow) => flow.user_name.as_deref(),
        EventBody::ApiRequest(request) => request.user_name.as_deref(),
        _ => peer(event)?.identities.user_name(),
    }
}

/// `source.ip`: a flow's initiator, an API request's client, a VPN peer's public address.
pub(super) fn source_ip(event: &Event) -> Option<IpAddr> {
    match &event.body {
        EventBody::Flow(flow) => flow.source.ip,
        EventBody::ApiRequest(request) => request.client_ip,
        _ => peer(event)?.client.ip,
    }
}

/// `source.port`: an access log does not say the client's port.
pub(super) fn source_port(event: &Event) -> Option<u16> {
    match &event.body {
        EventBody::Flow(flow) => flow.source.port,
        EventBody::ApiRequest(_) => None,
        _ => peer(event)?.client.port,
    }
}

/// `destination.ip`: a flow's responder, the API's address, the gateway's address.
pub(super) fn destination_ip(event: &Event) -> Option<IpAddr> {
    match &event.body {
        EventBody::Flow(flow) => flow.destination.ip,
        EventBody::ApiRequest(request) => request.destination.ip,
        _ => peer(event)?.server.ip,
    }
}

pub(super) fn destination_port(event: &Event) -> Option<u16> {
    match &event.body {
        EventBody::Flow(flow) => flow.destination.port,
        EventBody::ApiRequest(request) => request.destination.port,
        _ => peer(event)?.server.port,
    }
}

/// `event.outcome`: a login's, and `failure` for input that was rejected.
pub(super) fn outcome(event: &Event) -> Option<&'static str> {
    match &event.body {
        EventBody::Auth(auth) => Some(auth.outcome.as_str()),
        EventBody::PipelineError(_) => Some("failure"),
        _ => None,
    }
}

/// `event.reason`: why a login failed, an L2TP tunnel or call closed, input was rejected.
pub(super) fn reason(event: &Event) -> Option<&str> {
    match &event.body {
        EventBody::Auth(auth) => auth.failure.as_ref().map(|failure| failure.reason.as_str()),
        EventBody::L2tp(l2tp) => l2tp.reason.as_deref(),
        EventBody::PipelineError(error) => Some(&error.message),
        _ => None,
    }
}

pub(super) fn virtual_ip(event: &Event) -> Option<IpAddr> {
    match &event.body {
        EventBody::VirtualIp(vip) => Some(vip.ip),
        EventBody::Session(session) => session.virtual_ip,
        _ => None,
    }
}

pub(super) fn terminate_cause(event: &Event) -> Option<TerminateCause> {
    match &event.body {
        EventBody::IkeSa(ike) => ike.cause,
        EventBody::Session(session) => session.cause,
        _ => None,
    }
}

pub(super) fn session_join(event: &Event) -> Option<SessionJoin> {
    match &event.body {
        EventBody::Flow(flow) => flow.session_join,
        EventBody::ApiRequest(request) => request.session_join,
        _ => None,
    }
}

/// `event.duration` in nanoseconds: an API request's (the log says microseconds; saturating),
/// a flow's first to last packet, a session's as accounting counts it (whole seconds).
pub(super) fn duration_ns(event: &Event) -> Option<u64> {
    match &event.body {
        EventBody::ApiRequest(request) => request.duration_us.map(|us| us.saturating_mul(1000)),
        EventBody::Flow(flow) => u64::try_from(flow.end.duration_since(flow.start).as_nanos()).ok(),
        EventBody::Session(session) => session
            .duration_secs
            .map(|secs| secs.saturating_mul(1_000_000_000)),
        _ => None,
    }
}
