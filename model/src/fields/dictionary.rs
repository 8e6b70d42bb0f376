//! Every field, one entry each, in the order the crate documentation lists them: the constant
//! that names it, its dotted name, type, OCSF attribute and description, then how it is read.
//!
//! An entry reads `CONST: "dotted.name", Type, "ocsf.attribute", "description"` followed by
//! any of:
//! - `event: |event| …` and `session: |session| …`, the getters ([`Field::event`],
//!   [`Field::session`]);
//! - `geo: |geo| …`, for `source.geo.*` and `source.as.*`: read from the [`Geo`] of an
//!   event's client (`Event::source_geo`) and of a session's (`Session::client_geo`);
//! - `identity: |identities| …`, for the identities a peer presented: read from an event's
//!   peer and from a session;
//! - `counters: |counters| …`, for bytes and packets: read from a flow, the [`Counters`] a
//!   CHILD_SA or session event reported, and a session's;
//! - `only_in: ["table", …]` for a field that no event and no session carries
//!   ([`Field::only_in`]).
//!
//! The list is long and flat on purpose: one place to read what a field is and where its
//! values come from (ripgrep's `flags/defs.rs` is the model).

use jiff::Timestamp;

use super::event::*;
use super::{Field, FieldType, Getter, Value, column_bytes, column_len, count, text};
use crate::{Counters, Event, EventBody, Geo, Identities, Session};

macro_rules! fields {
    ($(
        $ident:ident: $name:literal, $ty:ident, $ocsf:literal, $description:literal
            $(, $source:ident: $get:expr)*;
    )*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $description, ".")]
            pub const $ident: Field = {
                const BYTES: [u8; column_len($name)] = column_bytes($name);
                let field = Field {
                    name: $name,
                    column: match std::str::from_utf8(&BYTES) {
                        Ok(column) => column,
                        Err(_) => panic!("a field name is ASCII"),
                    },
                    ty: FieldType::$ty,
                    ocsf: $ocsf,
                    description: $description,
                    event: None,
                    session: None,
                    only_in: &[],
                };
                $(let field = fields!(@$source field $get);)*
                field
            };
        )*

        /// Every field, in the order the documentation lists them.
        pub const FIELDS: &[Field] = &[$($ident),*];
    };
    (@event $field:ident $get:expr) => {{
        const GET: Getter<Event> = $get;
        Field { event: Some(GET), ..$field }
    }};
    (@session $field:ident $get:expr) => {{
        const GET: Getter<Session> = $get;
        Field { session: Some(GET), ..$field }
    }};
    (@geo $field:ident $get:expr) => {{
        const PICK: Getter<Geo> = $get;
        const EVENT: Getter<Event> = |event| PICK(event.source_geo.as_ref()?);
        const SESSION: Getter<Session> = |session| PICK(session.client_geo.as_ref()?);
        Field { event: Some(EVENT), session: Some(SESSION), ..$field }
    }};
    (@identity $field:ident $get:expr) => {{
        const PICK: Getter<Identities> = $get;
        const EVENT: Getter<Event> = |event| PICK(identities(event)?);
        const SESSION: Getter<Session> = |session| PICK(&session.identities);
        Field { event: Some(EVENT), session: Some(SESSION), ..$field }
    }};
    (@counters $field:ident $get:expr) => {{
        const PICK: fn(Counters) -> Option<Value<'static>> = $get;
        const EVENT: Getter<Event> = |event| PICK(counters(event)?);
        const SESSION: Getter<Session> = |session| PICK(session.counters);
        Field { event: Some(EVENT), session: Some(SESSION), ..$field }
    }};
    (@only_in $field:ident $tables:expr) => {
        Field { only_in: &$tables, ..$field }
    };
}

fn time(at: Timestamp) -> Option<Value<'static>> {
    Some(Value::Time(at))
}

fields! {
    TIMESTAMP: "@timestamp", Time, "time", "when the event happened (UTC)",
        event: |event| time(event.timestamp),
        session: |session| time(session.updated);
    SESSION_ID: "session_id", Str, "session.uid", "the VPN session the row belongs to (tunnelwatch's own)",
        event: |event| text(event.session_id.as_deref()),
        session: |session| text(session.session_id.as_str());
    EVENT_ID: "event.id", Str, "metadata.uid", "stable id: source id and sequence (`gw1/charon:42`)",
        event: |event| Some(Value::Str(event.id.to_string().into()));
    EVENT_KIND: "event.kind", Str, "", "`event`, `state` or `pipeline_error`",
        event: |event| text(event.body.kind());
    EVENT_CATEGORY: "event.category", Str, "category_uid", "`authentication`, `network`, `session`, `web`, `process`",
        event: |event| text(event.body.category());
    EVENT_ACTION: "event.action", Str, "activity_id", "what happened, e.g. `auth-failure`, `ike-sa-established`",
        event: |event| Some(Value::Str(event.body.action().into()));
    EVENT_OUTCOME: "event.outcome", Str, "status_id", "`success` or `failure`",
        event: |event| text(outcome(event));
    EVENT_REASON: "event.reason", Str, "status_detail", "why, in the source's own words",
        event: |event| text(reason(event));
    EVENT_DATASET: "event.dataset", Str, "metadata.log_name", "which parser produced it, e.g. `strongswan.charon`",
        event: |event| text(event.dataset.as_str());
    EVENT_ORIGINAL: "event.original", Str, "raw_data", "the raw line or message",
        event: |event| text(event.original.as_str());
    EVENT_START: "event.start", Time, "start_time", "start of a session or flow",
        event: |event| time(flow(event)?.start),
        session: |session| time(session.start);
    EVENT_END: "event.end", Time, "end_time", "end of a session or flow (null while open)",
        event: |event| time(flow(event)?.end),
        session: |session| time(session.end?);
    EVENT_DURATION: "event.duration", Int, "duration", "length in nanoseconds (ECS unit)",
        event: |event| count(duration_ns(event)),
        session: |session| {
            let nanos = session.end?.duration_since(session.start).as_nanos();
            Some(Value::Int(i64::try_from(nanos).ok()?))
        };
    EVENT_CREATED: "event.created", Time, "metadata.processed_time", "when tunnelwatch made a row (a session join correction: when it was decided; the newest wins)",
        only_in: ["session_joins"];
    OBSERVER_HOSTNAME: "observer.hostname", Str, "metadata.product.uid", "the gateway that saw it",
        event: |event| text(event.observer.hostname.as_deref()),
        session: |session| text(session.gateway.as_deref());
    OBSERVER_PRODUCT: "observer.product", Str, "metadata.product.name", "e.g. `strongswan`",
        event: |event| text(event.observer.product.as_deref());
    USER_NAME: "user.name", Str, "user.name", "the account: EAP/XAuth identity if any, else the IKE identity",
        event: |event| text(user_name(event)),
        session: |session| text(session.user_name());
    SOURCE_IP: "source.ip", Ip, "src_endpoint.ip", "the VPN client's public address (or a flow's initiator)",
        event: |event| source_ip(event).map(Value::Ip),
        session: |session| session.client.ip.map(Value::Ip);
    SOURCE_PORT: "source.port", Int, "src_endpoint.port", "its port",
        event: |event| count(source_port(event).map(u64::from)),
        session: |session| count(session.client.port.map(u64::from));
    SOURCE_BYTES: "source.bytes", Int, "traffic.bytes_out", "bytes the client sent",
        counters: |counters| count(counters.bytes_in);
    SOURCE_PACKETS: "source.packets", Int, "traffic.packets_out", "packets the client sent",
        counters: |counters| count(counters.packets_in);
    SOURCE_GEO_COUNTRY_ISO_CODE: "source.geo.country_iso_code", Str, "src_endpoint.location.country", "country of source.ip",
        geo: |geo| text(geo.country_iso_code.as_deref());
    SOURCE_GEO_COUNTRY_NAME: "source.geo.country_name", Str, "", "country name of source.ip",
        geo: |geo| text(geo.country_name.as_deref());
    SOURCE_GEO_CITY_NAME: "source.geo.city_name", Str, "src_endpoint.location.city", "city of source.ip",
        geo: |geo| text(geo.city_name.as_deref());
    SOURCE_GEO_LOCATION_LAT: "source.geo.location.lat", Float, "src_endpoint.location.lat", "latitude of source.ip (approximate)",
        geo: |geo| geo.lat.map(Value::Float);
    SOURCE_GEO_LOCATION_LON: "source.geo.location.lon", Float, "src_endpoint.location.long", "longitude of source.ip (approximate)",
        geo: |geo| geo.lon.map(Value::Float);
    SOURCE_AS_NUMBER: "source.as.number", Int, "src_endpoint.autonomous_system.number", "ASN of source.ip",
        geo: |geo| count(geo.as_number.map(u64::from));
    SOURCE_AS_ORGANIZATION_NAME: "source.as.organization.name", Str, "src_endpoint.autonomous_system.name", "AS organisation",
        geo: |geo| text(geo.as_organization.as_deref());
    DESTINATION_IP: "destination.ip", Ip, "dst_endpoint.ip", "the gateway address (or a flow's responder)",
        event: |event| destination_ip(event).map(Value::Ip);
    DESTINATION_PORT: "destination.port", Int, "dst_endpoint.port", "its port",
        event: |event| count(destination_port(event).map(u64::from));
    DESTINATION_BYTES: "destination.bytes", Int, "traffic.bytes_in", "bytes the client received",
        counters: |counters| count(counters.bytes_out);
    DESTINATION_PACKETS: "destination.packets", Int, "traffic.packets_in", "packets the client received",
        counters: |counters| count(counters.packets_out);
    NETWORK_TRANSPORT: "network.transport", Str, "connection_info.protocol_name", "`tcp`, `udp`, `icmp`",
        event: |event| text(flow(event)?.transport.as_str());
    NETWORK_BYTES: "network.bytes", Int, "traffic.bytes", "source.bytes + destination.bytes",
        counters: |counters| count(counters.bytes_in.saturating_add(counters.bytes_out));
    HTTP_REQUEST_METHOD: "http.request.method", Str, "http_request.http_method", "HTTP method",
        event: |event| text(request(event)?.method.as_str());
    HTTP_REQUEST_ID: "http.request.id", Str, "http_request.uid", "request id from the access log",
        event: |event| text(request(event)?.request_id.as_deref());
    HTTP_RESPONSE_STATUS_CODE: "http.response.status_code", Int, "http_response.code", "HTTP status",
        event: |event| count(u64::from(request(event)?.status));
    HTTP_RESPONSE_BYTES: "http.response.bytes", Int, "http_response.length", "response size",
        event: |event| count(request(event)?.response_bytes);
    URL_DOMAIN: "url.domain", Str, "http_request.url.hostname", "Host of the request",
        event: |event| text(request(event)?.host.as_deref());
    URL_PATH: "url.path", Str, "http_request.url.path", "path of the request",
        event: |event| text(request(event)?.path.as_str());
    ERROR_MESSAGE: "error.message", Str, "status_detail", "what was wrong with a rejected input",
        event: |event| match &event.body {
            EventBody::PipelineError(error) => text(error.message.as_str()),
            _ => None,
        };
    MESSAGE: "message", Str, "message", "a human-readable summary (alerts, audit entries)",
        only_in: ["alerts", "audit_log"];
    RULE_ID: "rule.id", Str, "finding_info.analytic.uid", "id of the alert rule that fired",
        only_in: ["alerts"];
    RULE_NAME: "rule.name", Str, "finding_info.analytic.name", "name of the alert rule that fired",
        only_in: ["alerts"];
    EVENT_SEVERITY: "event.severity", Int, "severity_id", "alert severity (higher is worse)",
        only_in: ["alerts"];
    USER_TARGET_NAME: "user.target.name", Str, "dst_user.name", "the user an action was aimed at (revocations)",
        only_in: ["audit_log"];
    USER_ROLES: "user.roles", Str, "actor.user.type", "the role of the operator who acted (audit)",
        only_in: ["audit_log"];
    VPN_CONNECTION: "vpn.connection", Str, "", "VPN connection (config) name, e.g. `rw-psk`",
        event: |event| text(peer(event)?.connection.as_deref()),
        session: |session| text(session.connection.as_deref());
    VPN_IKE_SA_ID: "vpn.ike_sa_id", Int, "", "IKE_SA unique id on its gateway",
        event: |event| count(peer(event)?.ike_sa_id);
    VPN_NEW_IKE_SA_ID: "vpn.new_ike_sa_id", Int, "", "for a rekey: the IKE_SA that replaces it",
        event: |event| match &event.body {
            EventBody::IkeSa(ike) => count(ike.new_ike_sa_id),
            _ => None,
        };
    VPN_CHILD_SA: "vpn.child_sa", Str, "", "CHILD_SA config name",
        event: |event| text(child_sa(event)?.name.as_deref());
    VPN_CHILD_SA_ID: "vpn.child_sa_id", Int, "", "CHILD_SA unique id",
        event: |event| count(child_sa(event)?.child_sa_id);
    VPN_SPI_IN: "vpn.spi_in", Str, "", "inbound SPI (hex)",
        event: |event| text(child_sa(event)?.spi_in.as_deref());
    VPN_SPI_OUT: "vpn.spi_out", Str, "", "outbound SPI (hex)",
        event: |event| text(child_sa(event)?.spi_out.as_deref());
    VPN_LOCAL_TS: "vpn.local_ts", Str, "", "local traffic selector",
        event: |event| text(child_sa(event)?.local_ts.as_deref());
    VPN_REMOTE_TS: "vpn.remote_ts", Str, "", "remote traffic selector",
        event: |event| text(child_sa(event)?.remote_ts.as_deref());
    VPN_PROPOSAL: "vpn.proposal", Str, "", "negotiated algorithms, e.g. `IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519`",
        event: |event| match &event.body {
            EventBody::IkeSa(ike) => text(ike.proposal.as_deref()),
            EventBody::ChildSa(child) => text(child.proposal.as_deref()),
            _ => None,
        };
    VPN_IKE_ID: "vpn.ike_id", Str, "user.uid", "IKE identity (IDi) of the peer",
        identity: |identities| text(identities.ike_id.as_deref());
    VPN_EAP_ID: "vpn.eap_id", Str, "user.name", "EAP identity",
        identity: |identities| text(identities.eap_id.as_deref());
    VPN_XAUTH_ID: "vpn.xauth_id", Str, "user.name", "XAuth user (IKEv1)",
        identity: |identities| text(identities.xauth_id.as_deref());
    VPN_CERT_SUBJECT: "vpn.cert_subject", Str, "certificate.subject", "peer certificate subject DN",
        identity: |identities| text(identities.cert_subject.as_deref());
    VPN_CERT_SERIAL: "vpn.cert_serial", Str, "certificate.serial_number", "peer certificate serial (hex)",
        identity: |identities| text(identities.cert_serial.as_deref());
    X509_NOT_AFTER: "x509.not_after", Time, "certificate.expiration_time", "when a certificate the gateway holds expires",
        event: |event| time(certificate(event)?.not_after);
    X509_ISSUER: "x509.issuer.distinguished_name", Str, "certificate.issuer", "who issued a certificate the gateway holds",
        event: |event| text(certificate(event)?.issuer.as_deref());
    VPN_AUTH_METHOD: "vpn.auth_method", Str, "auth_protocol", "`psk`, `cert`, `eap-mschapv2`, `eap-radius`, `xauth`, `chap`, `pap`",
        event: |event| match &event.body {
            EventBody::Auth(auth) => text(auth.method.as_str()),
            _ => None,
        },
        session: |session| text(session.method.map(|method| method.as_str()));
    VPN_AUTH_FAILURE: "vpn.auth_failure", Str, "status_code", "failure class, e.g. `psk_mismatch`, `radius_reject`",
        event: |event| match &event.body {
            EventBody::Auth(auth) => text(auth.failure.as_ref()?.code.as_str()),
            _ => None,
        };
    VPN_VIRTUAL_IP: "vpn.virtual_ip", Ip, "src_endpoint.intermediate_ips", "the address the VPN handed the client",
        event: |event| virtual_ip(event).map(Value::Ip),
        session: |session| session.virtual_ip.map(Value::Ip);
    VPN_ACCOUNTING_ID: "vpn.accounting_id", Str, "session.uid_alt", "RADIUS Acct-Session-Id",
        event: |event| text(session_event(event)?.accounting_id.as_deref()),
        session: |session| text(session.accounting_id.as_deref());
    VPN_STATE: "vpn.state", Str, "session.is_remote", "`active`, `closed`, `lost`",
        session: |session| text(session.state.as_str());
    VPN_TERMINATE_CAUSE: "vpn.terminate_cause", Str, "", "`user_request`, `admin_reset`, `lost_service`, `timeout`, `lost` (ended while nobody listened), `other`",
        event: |event| text(terminate_cause(event)?.as_str()),
        session: |session| text(session.cause?.as_str());
    VPN_REKEY_COUNT: "vpn.rekey_count", Int, "", "how many IKE rekeys the session had",
        session: |session| count(u64::from(session.rekey_count));
    VPN_SESSION_VERSION: "vpn.session_version", Int, "", "snapshot version; the newest wins",
        session: |session| count(session.version);
    VPN_IKE_SA_IDS: "vpn.ike_sa_ids", Str, "", "all IKE_SA unique ids of a session",
        session: |session| {
            let ids: Vec<String> = session.ike_sa_ids.iter().map(u64::to_string).collect();
            Some(Value::Str(ids.join(",").into()))
        };
    VPN_TCP_FLAGS: "vpn.tcp_flags", Int, "connection_info.tcp_flags", "TCP flags seen in a flow, either direction, OR-ed",
        event: |event| count(flow(event)?.tcp_flags.map(u64::from));
    VPN_FLOW_END: "vpn.flow_end", Str, "", "why a flow record was exported: `idle`, `active`, `tcp_end`, `evicted`, `forced`",
        event: |event| text(flow(event)?.end_reason?.as_str());
    VPN_SESSION_JOIN: "vpn.session_join", Str, "", "how a flow or API request found its session: `matched`, `late`, `unmatched`, `not_vpn`",
        event: |event| text(session_join(event)?.as_str());
    VPN_JOIN_TABLE: "vpn.join_table", Str, "", "the table a session join correction applies to: `flows`, `api_requests`, or `events` (a VPN event, also in `auth_events`)",
        only_in: ["session_joins"];
    VPN_AUDIT_PREV_HASH: "vpn.audit_prev_hash", Str, "", "hash of the previous audit entry (tamper-evident chain)",
        only_in: ["audit_log"];
    VPN_AUDIT_HASH: "vpn.audit_hash", Str, "", "hash of this audit entry over its fields and vpn.audit_prev_hash",
        only_in: ["audit_log"];
    VPN_AUDIT_VERSION: "vpn.audit_version", Int, "", "the format of an audit entry (1: the first; 2: with user.roles and vpn.audit_details)",
        only_in: ["audit_log"];
    VPN_AUDIT_DETAILS: "vpn.audit_details", Str, "", "structured details of an audit entry, JSON (ids of plans, alerts and runs; the prior state an undo needs; a seal's signature)",
        only_in: ["audit_log"];
    VPN_ALERT_ID: "vpn.alert_id", Str, "finding_info.uid", "the alert a row is a state of (the same in all its rows)",
        only_in: ["alerts"];
    VPN_ALERT_REVISION: "vpn.alert_revision", Int, "", "1 for the row that fired an alert, one more per change",
        only_in: ["alerts"];
    VPN_ALERT_FINGERPRINT: "vpn.alert_fingerprint", Str, "", "rule and group values: one open alert per fingerprint",
        only_in: ["alerts"];
    VPN_ALERT_STATUS: "vpn.alert_status", Str, "status", "where an alert stands: `firing`, `acknowledged`, `resolved`",
        only_in: ["alerts"];
    VPN_ALERT_COUNT: "vpn.alert_count", Int, "count", "events behind an alert",
        only_in: ["alerts"];
    VPN_ALERT_LABELS: "vpn.alert_labels", Str, "", "an alert's group values, JSON object",
        only_in: ["alerts"];
    VPN_ALERT_EVIDENCE: "vpn.alert_evidence", Str, "evidences", "ids of the events behind an alert (at most 50), JSON array",
        only_in: ["alerts"];
    THREAT_TECHNIQUE_ID: "threat.technique.id", Str, "attacks.technique.uid", "MITRE ATT&CK techniques of the rule, comma-separated",
        only_in: ["alerts"];
    VPN_ALERT_ACTOR: "vpn.alert_actor", Str, "", "who changed an alert (`tunnelwatch` for the engine)",
        only_in: ["alerts"];
    VPN_ALERT_ASSIGNEE: "vpn.alert_assignee", Str, "", "who an alert is assigned to",
        only_in: ["alerts"];
}
