//! The shared event vocabulary of tunnelwatch.
//!
//! The principal type is [`Event`]: one thing a VPN said or did, with a stable [`EventId`]
//! (source id + sequence, for exactly-once delivery), the time it happened, the gateway that
//! [`Observer`]d it, the raw line it came from, and an [`EventBody`] that says what happened:
//! an [`Auth`] attempt, an [`IkeSaEvent`] or [`ChildSaEvent`], an [`L2tpEvent`] (tunnel or
//! call), a [`VirtualIpEvent`] lease, a [`SessionEvent`] (RADIUS accounting, pppd), a network
//! [`Flow`], an [`ApiRequest`], or a
//! [`PipelineError`] for input that could not be parsed (kept, never dropped). The collector
//! folds events into [`Session`]s. Gateways ship events to the server as [`IngestBatch`]es.
//! What tunnelwatch itself does (retention deletes data, responders revoke users) is an
//! [`AuditEntry`] in a hash chain ([`audit`]). Every crate's error says what kind of failure
//! it is with one [`ErrorKind`].
//!
//! This crate is pure data: serde, jiff, sha2 (for the audit chain), thiserror (for its one
//! [`Error`], an unknown field name) and nothing else from the workspace or the async and
//! storage worlds (no tokio, Arrow, DataFusion, tantivy or axum; checked by
//! `app/tests/architecture.rs`).
//!
//! # Field names: ECS, `vpn.*`, and OCSF
//!
//! Field names follow the [Elastic Common Schema](https://www.elastic.co/guide/en/ecs/current/)
//! where ECS has a field, and a `vpn.*` namespace where it has none. Stored columns use the
//! same names with dots replaced by underscores ([`fields::column_name`]). [`fields::FIELDS`]
//! is the machine-readable form of this table, with each field's type and how to read it
//! from an [`Event`] and a [`Session`]; a test keeps the two in step. Rules resolve the
//! names they use with [`fields::resolve`] when they are loaded.
//!
//! | field | column | OCSF attribute | meaning |
//! |---|---|---|---|
//! | `@timestamp` | `timestamp` | `time` | when the event happened (UTC) |
//! | `session_id` | `session_id` | `session.uid` | the VPN session the row belongs to (tunnelwatch's own) |
//! | `event.id` | `event_id` | `metadata.uid` | stable id: source id and sequence (`gw1/charon:42`) |
//! | `event.kind` | `event_kind` | — | `event`, `state` or `pipeline_error` |
//! | `event.category` | `event_category` | `category_uid` | `authentication`, `network`, `session`, `web`, `process` |
//! | `event.action` | `event_action` | `activity_id` | what happened, e.g. `auth-failure`, `ike-sa-established` |
//! | `event.outcome` | `event_outcome` | `status_id` | `success` or `failure` |
//! | `event.reason` | `event_reason` | `status_detail` | why, in the source's own words |
//! | `event.dataset` | `event_dataset` | `metadata.log_name` | which parser produced it, e.g. `strongswan.charon` |
//! | `event.original` | `event_original` | `raw_data` | the raw line or message |
//! | `event.start` | `event_start` | `start_time` | start of a session or flow |
//! | `event.end` | `event_end` | `end_time` | end of a session or flow (null while open) |
//! | `event.duration` | `event_duration` | `duration` | length in nanoseconds (ECS unit) |
//! | `event.created` | `event_created` | `metadata.processed_time` | when tunnelwatch made a row (a session join correction: when it was decided; the newest wins) |
//! | `observer.hostname` | `observer_hostname` | `metadata.product.uid` | the gateway that saw it |
//! | `observer.product` | `observer_product` | `metadata.product.name` | e.g. `strongswan` |
//! | `user.name` | `user_name` | `user.name` | the account: EAP/XAuth identity if any, else the IKE identity |
//! | `source.ip` | `source_ip` | `src_endpoint.ip` | the VPN client's public address (or a flow's initiator) |
//! | `source.port` | `source_port` | `src_endpoint.port` | its port |
//! | `source.bytes` | `source_bytes` | `traffic.bytes_out` | bytes the client sent |
//! | `source.packets` | `source_packets` | `traffic.packets_out` | packets the client sent |
//! | `source.geo.country_iso_code` | `source_geo_country_iso_code` | `src_endpoint.location.country` | country of source.ip |
//! | `source.geo.country_name` | `source_geo_country_name` | — | country name of source.ip |
//! | `source.geo.city_name` | `source_geo_city_name` | `src_endpoint.location.city` | city of source.ip |
//! | `source.geo.location.lat` | `source_geo_location_lat` | `src_endpoint.location.lat` | latitude of source.ip (approximate) |
//! | `source.geo.location.lon` | `source_geo_location_lon` | `src_endpoint.location.long` | longitude of source.ip (approximate) |
//! | `source.as.number` | `source_as_number` | `src_endpoint.autonomous_system.number` | ASN of source.ip |
//! | `source.as.organization.name` | `source_as_organization_name` | `src_endpoint.autonomous_system.name` | AS organisation |
//! | `destination.ip` | `destination_ip` | `dst_endpoint.ip` | the gateway address (or a flow's responder) |
//! | `destination.port` | `destination_port` | `dst_endpoint.port` | its port |
//! | `destination.bytes` | `destination_bytes` | `traffic.bytes_in` | bytes the client received |
//! | `destination.packets` | `destination_packets` | `traffic.packets_in` | packets the client received |
//! | `network.transport` | `network_transport` | `connection_info.protocol_name` | `tcp`, `udp`, `icmp` |
//! | `network.bytes` | `network_bytes` | `traffic.bytes` | source.bytes + destination.bytes |
//! | `http.request.method` | `http_request_method` | `http_request.http_method` | HTTP method |
//! | `http.request.id` | `http_request_id` | `http_request.uid` | request id from the access log |
//! | `http.response.status_code` | `http_response_status_code` | `http_response.code` | HTTP status |
//! | `http.response.bytes` | `http_response_bytes` | `http_response.length` | response size |
//! | `url.domain` | `url_domain` | `http_request.url.hostname` | Host of the request |
//! | `url.path` | `url_path` | `http_request.url.path` | path of the request |
//! | `error.message` | `error_message` | `status_detail` | what was wrong with a rejected input |
//! | `message` | `message` | `message` | a human-readable summary (alerts, audit entries) |
//! | `rule.id` | `rule_id` | `finding_info.analytic.uid` | id of the alert rule that fired |
//! | `rule.name` | `rule_name` | `finding_info.analytic.name` | name of the alert rule that fired |
//! | `event.severity` | `event_severity` | `severity_id` | alert severity (higher is worse) |
//! | `user.target.name` | `user_target_name` | `dst_user.name` | the user an action was aimed at (revocations) |
//! | `user.roles` | `user_roles` | `actor.user.type` | the role of the operator who acted (audit) |
//! | `vpn.connection` | `vpn_connection` | — | VPN connection (config) name, e.g. `rw-psk` |
//! | `vpn.ike_sa_id` | `vpn_ike_sa_id` | — | IKE_SA unique id on its gateway |
//! | `vpn.new_ike_sa_id` | `vpn_new_ike_sa_id` | — | for a rekey: the IKE_SA that replaces it |
//! | `vpn.child_sa` | `vpn_child_sa` | — | CHILD_SA config name |
//! | `vpn.child_sa_id` | `vpn_child_sa_id` | — | CHILD_SA unique id |
//! | `vpn.spi_in` | `vpn_spi_in` | — | inbound SPI (hex) |
//! | `vpn.spi_out` | `vpn_spi_out` | — | outbound SPI (hex) |
//! | `vpn.local_ts` | `vpn_local_ts` | — | local traffic selector |
//! | `vpn.remote_ts` | `vpn_remote_ts` | — | remote traffic selector |
//! | `vpn.proposal` | `vpn_proposal` | — | negotiated algorithms, e.g. `IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/CURVE_25519` |
//! | `vpn.ike_id` | `vpn_ike_id` | `user.uid` | IKE identity (IDi) of the peer |
//! | `vpn.eap_id` | `vpn_eap_id` | `user.name` | EAP identity |
//! | `vpn.xauth_id` | `vpn_xauth_id` | `user.name` | XAuth user (IKEv1) |
//! | `vpn.cert_subject` | `vpn_cert_subject` | `certificate.subject` | peer certificate subject DN |
//! | `vpn.cert_serial` | `vpn_cert_serial` | `certificate.serial_number` | peer certificate serial (hex) |
//! | `x509.not_after` | `x509_not_after` | `certificate.expiration_time` | when a certificate the gateway holds expires |
//! | `x509.issuer.distinguished_name` | `x509_issuer_distinguished_name` | `certificate.issuer` | who issued a certificate the gateway holds |
//! | `vpn.auth_method` | `vpn_auth_method` | `auth_protocol` | `psk`, `cert`, `eap-mschapv2`, `eap-radius`, `xauth`, `chap`, `pap` |
//! | `vpn.auth_failure` | `vpn_auth_failure` | `status_code` | failure class, e.g. `psk_mismatch`, `radius_reject` |
//! | `vpn.virtual_ip` | `vpn_virtual_ip` | `src_endpoint.intermediate_ips` | the address the VPN handed the client |
//! | `vpn.accounting_id` | `vpn_accounting_id` | `session.uid_alt` | RADIUS Acct-Session-Id |
//! | `vpn.state` | `vpn_state` | `session.is_remote` | `active`, `closed`, `lost` |
//! | `vpn.terminate_cause` | `vpn_terminate_cause` | — | `user_request`, `admin_reset`, `lost_service`, `timeout`, `lost` (ended while nobody listened), `other` |
//! | `vpn.rekey_count` | `vpn_rekey_count` | — | how many IKE rekeys the session had |
//! | `vpn.session_version` | `vpn_session_version` | — | snapshot version; the newest wins |
//! | `vpn.ike_sa_ids` | `vpn_ike_sa_ids` | — | all IKE_SA unique ids of a session |
//! | `vpn.tcp_flags` | `vpn_tcp_flags` | `connection_info.tcp_flags` | TCP flags seen in a flow, either direction, OR-ed |
//! | `vpn.flow_end` | `vpn_flow_end` | — | why a flow record was exported: `idle`, `active`, `tcp_end`, `evicted`, `forced` |
//! | `vpn.session_join` | `vpn_session_join` | — | how a flow or API request found its session: `matched`, `late`, `unmatched`, `not_vpn` |
//! | `vpn.join_table` | `vpn_join_table` | — | the table a session join correction applies to: `flows`, `api_requests`, or `events` (a VPN event, also in `auth_events`) |
//! | `vpn.audit_prev_hash` | `vpn_audit_prev_hash` | — | hash of the previous audit entry (tamper-evident chain) |
//! | `vpn.audit_hash` | `vpn_audit_hash` | — | hash of this audit entry over its fields and vpn.audit_prev_hash |
//! | `vpn.audit_version` | `vpn_audit_version` | — | the format of an audit entry (1: the first; 2: with user.roles and vpn.audit_details) |
//! | `vpn.audit_details` | `vpn_audit_details` | — | structured details of an audit entry, JSON (ids of plans, alerts and runs; the prior state an undo needs; a seal's signature) |
//! | `vpn.alert_id` | `vpn_alert_id` | finding_info.uid | the alert a row is a state of (the same in all its rows) |
//! | `vpn.alert_revision` | `vpn_alert_revision` | — | 1 for the row that fired an alert, one more per change |
//! | `vpn.alert_fingerprint` | `vpn_alert_fingerprint` | — | rule and group values: one open alert per fingerprint |
//! | `vpn.alert_status` | `vpn_alert_status` | status | where an alert stands: `firing`, `acknowledged`, `resolved` |
//! | `vpn.alert_count` | `vpn_alert_count` | count | events behind an alert |
//! | `vpn.alert_labels` | `vpn_alert_labels` | — | an alert's group values, JSON object |
//! | `vpn.alert_evidence` | `vpn_alert_evidence` | evidences | ids of the events behind an alert (at most 50), JSON array |
//! | `threat.technique.id` | `threat_technique_id` | attacks.technique.uid | MITRE ATT&CK techniques of the rule, comma-separated |
//! | `vpn.alert_actor` | `vpn_alert_actor` | — | who changed an alert (`tunnelwatch` for the engine) |
//! | `vpn.alert_assignee` | `vpn_alert_assignee` | — | who an alert is assigned to |
//!
//! # OCSF classes
//!
//! | event body | ECS `event.category` | OCSF class |
//! |---|---|---|
//! | [`Auth`] | `authentication` | 3002 Authentication (`activity_id` 1 Logon; `status_id` 1 Success / 2 Failure) |
//! | [`IkeSaEvent`], [`ChildSaEvent`], [`L2tpEvent`], [`VirtualIpEvent`] | `network` | 4001 Network Activity (`activity_id` 1 Open / 2 Close) |
//! | [`SessionEvent`], [`Session`] | `session` | 4001 Network Activity |
//! | [`Flow`] | `network` | 4001 Network Activity (`activity_id` 6 Traffic) |
//! | [`ApiRequest`] | `web` | 4002 HTTP Activity |
//! | [`PipelineError`] | `process` (`event.kind: pipeline_error`) | 0 Base Event |
//!
//! [`EventBody::ocsf_class_uid`] gives the class of an event.

// So that `Error::kind` returns `model::ErrorKind` here as in every crate's error.rs (the words
// app/tests/architecture.rs looks for).
extern crate self as model;

pub mod alert;
pub mod audit;
mod error;
mod error_kind;
mod event;
pub mod fields;
mod flow;
mod geo;
pub mod hash;
pub mod hex;
mod session;
mod vpn;
pub mod wire;

pub use alert::{AlertRecord, AlertStatus, Severity};
pub use audit::{AuditDraft, AuditEntry};
pub use error::{Error, Result};
pub use error_kind::ErrorKind;
pub use event::{Event, EventBody, EventId, Observer, PipelineError, RejectReason};
pub use flow::{
    ApiRequest, Flow, FlowEnd, JoinRestart, JoinTarget, SessionJoin, SessionJoinUpdate,
    StoredLease, StoredUnmatched,
};
pub use geo::Geo;
pub use session::{CollectorCheckpoint, Session, SessionSources, SessionState};
pub use vpn::{
    Auth, AuthFailure, AuthMethod, CertificateEvent, ChildSaEvent, Counters, Endpoint, FailureCode,
    Identities, IkeSaEvent, L2tpChange, L2tpEvent, LeaseChange, Outcome, Peer, SaChange,
    SessionChange, SessionEvent, TerminateCause, VirtualIpEvent,
};
pub use wire::{IngestAck, IngestBatch};
