//! The tables SQL sees, their Arrow schemas, and the hand-written converters from model types
//! to Arrow record batches.
//!
//! Each table is a list of [`Column`]s: a name (the ECS field name with dots replaced by
//! underscores, see `model::fields`), a type, and a function that reads the cell from a model
//! value. The schema and the conversion come from the same list, so they cannot drift apart.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use model::{Event, EventBody, Geo, Peer, Session};

use crate::{Error, Result};

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Utf8,
    Int64,
    Float64,
    /// Microseconds since the epoch, UTC.
    Timestamp,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Utf8 => DataType::Utf8,
            Kind::Int64 => DataType::Int64,
            Kind::Float64 => DataType::Float64,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// One cell, as read from a model value.
pub enum Cell<'a> {
    Str(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Float(Option<f64>),
    Ts(Option<jiff::Timestamp>),
}

/// A column of table `T`.
pub struct Column<T> {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    pub get: fn(&T) -> Cell<'_>,
}

/// The tables, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Events,
    AuthEvents,
    Sessions,
    Flows,
    ApiRequests,
    Alerts,
    AuditLog,
    SessionJoins,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Events,
        Table::AuthEvents,
        Table::Sessions,
        Table::Flows,
        Table::ApiRequests,
        Table::Alerts,
        Table::AuditLog,
        Table::SessionJoins,
    ];

    /// The name SQL uses.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::AuthEvents => "auth_events",
            Table::Sessions => "sessions",
            Table::Flows => "flows",
            Table::ApiRequests => "api_requests",
            Table::Alerts => "alerts",
            Table::AuditLog => "audit_log",
            Table::SessionJoins => "session_joins",
        }
    }

    /// Whether rows of this table come from events (and so carry delivery watermarks).
    pub fn from_events(self) -> bool {
        matches!(
            self,
            Table::Events | Table::AuthEvents | Table::Flows | Table::ApiRequests
        )
    }

    /// The columns a segment is sorted by: time, then the key analysts filter on most (the
    /// user for logins and sessions, the client address for flows and API calls).
    pub fn sort_key(self) -> &'static [&'static str] {
        match self {
            Table::Events => &["timestamp", "event_dataset"],
            Table::AuthEvents => &["timestamp", "user_name"],
            Table::Sessions => &["timestamp", "user_name"],
            Table::Flows => &["timestamp", "source_ip"],
            Table::ApiRequests => &["timestamp", "source_ip"],
            Table::Alerts => &["timestamp", "rule_id"],
            Table::AuditLog => &["timestamp"],
            Table::SessionJoins => &["timestamp", "event_id"],
        }
    }

    /// Integer columns with few distinct values (service ports, AS numbers): these stay
    /// dictionary-encoded in Parquet. Every other integer column and every time is
    /// delta-encoded (see [`crate::segment`]).
    pub(crate) const DICTIONARY_INTS: &'static [&'static str] = &[
        "destination_port",
        "source_as_number",
        "destination_as_number",
    ];

    pub fn schema(self) -> SchemaRef {
        match self {
            Table::Events => schema_of(EVENT_COLUMNS),
            Table::AuthEvents => schema_of(AUTH_COLUMNS),
            Table::Sessions => schema_of(SESSION_COLUMNS),
            Table::Flows => schema_of(FLOW_COLUMNS),
            Table::ApiRequests => schema_of(API_REQUEST_COLUMNS),
            Table::Alerts => schema_of(ALERT_COLUMNS),
            Table::AuditLog => schema_of(AUDIT_COLUMNS),
            Table::SessionJoins => schema_of(SESSION_JOIN_COLUMNS),
        }
    }

    /// Whether an event becomes a row of this table.
    pub fn takes(self, event: &Event) -> bool {
        match self {
            // Flows and API requests are telemetry in their own tables (hundreds of millions
            // of rows); `events` is what the VPN and its logs said.
            Table::Events => !matches!(event.body, EventBody::Flow(_) | EventBody::ApiRequest(_)),
            Table::AuthEvents => matches!(event.body, EventBody::Auth(_)),
            Table::Flows => matches!(event.body, EventBody::Flow(_)),
            Table::ApiRequests => matches!(event.body, EventBody::ApiRequest(_)),
            Table::Sessions | Table::Alerts | Table::AuditLog | Table::SessionJoins => false,
        }
    }

    /// The rows of this table for `events`, as one record batch.
    pub fn events_batch(self, events: &[&Event]) -> Result<RecordBatch> {
        match self {
            Table::Events => to_batch(EVENT_COLUMNS, events),
            Table::AuthEvents => to_batch(AUTH_COLUMNS, events),
            Table::Flows => to_batch(FLOW_COLUMNS, events),
            Table::ApiRequests => to_batch(API_REQUEST_COLUMNS, events),
            Table::Sessions | Table::Alerts | Table::AuditLog | Table::SessionJoins => {
                Ok(RecordBatch::new_empty(self.schema()))
            }
        }
    }

    /// Column names, in order.
    pub fn column_names(self) -> Vec<&'static str> {
        fn names<T>(columns: &[Column<T>]) -> Vec<&'static str> {
            columns.iter().map(|column| column.name).collect()
        }
        match self {
            Table::Events => names(EVENT_COLUMNS),
            Table::AuthEvents => names(AUTH_COLUMNS),
            Table::Sessions => names(SESSION_COLUMNS),
            Table::Flows => names(FLOW_COLUMNS),
            Table::ApiRequests => names(API_REQUEST_COLUMNS),
            Table::Alerts => names(ALERT_COLUMNS),
            Table::AuditLog => names(AUDIT_COLUMNS),
            Table::SessionJoins => names(SESSION_JOIN_COLUMNS),
        }
    }
}

/// Session snapshots as one record batch.
pub fn sessions_batch(sessions: &[&Session]) -> Result<RecordBatch> {
    to_batch(SESSION_COLUMNS, sessions)
}

fn schema_of<T>(columns: &[Column<T>]) -> SchemaRef {
    let fields: Vec<Field> = columns
        .iter()
        .map(|column| Field::new(column.name, column.kind.data_type(), column.nullable))
        .collect();
    Arc::new(Schema::new(fields))
}

fn to_batch<T>(columns: &[Column<T>], rows: &[&T]) -> Result<RecordBatch> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for column in columns {
        let array: ArrayRef = match column.kind {
            Kind::Utf8 => {
                let mut builder = StringBuilder::with_capacity(rows.len(), rows.len() * 16);
                for row in rows {
                    match (column.get)(row) {
                        Cell::Str(value) => builder.append_option(value),
                        _ => return Err(wrong_cell(column.name)),
                    }
                }
                Arc::new(builder.finish())
            }
            Kind::Int64 => {
                let mut builder = Int64Builder::with_capacity(rows.len());
                for row in rows {
                    match (column.get)(row) {
                        Cell::Int(value) => builder.append_option(value),
                        _ => return Err(wrong_cell(column.name)),
                    }
                }
                Arc::new(builder.finish())
            }
            Kind::Float64 => {
                let mut builder = Float64Builder::with_capacity(rows.len());
                for row in rows {
                    match (column.get)(row) {
                        Cell::Float(value) => builder.append_option(value),
                        _ => return Err(wrong_cell(column.name)),
                    }
                }
                Arc::new(builder.finish())
            }
            Kind::Timestamp => {
                let mut builder =
                    TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
                for row in rows {
                    match (column.get)(row) {
                        Cell::Ts(value) => {
                            builder.append_option(value.map(|ts| ts.as_microsecond()))
                        }
                        _ => return Err(wrong_cell(column.name)),
                    }
                }
                Arc::new(builder.finish())
            }
        };
        arrays.push(array);
    }
    RecordBatch::try_new(schema_of(columns), arrays).map_err(|error| Error::Arrow {
        context: "build record batch",
        source: error,
    })
}

fn wrong_cell(column: &str) -> Error {
    Error::Internal(format!("column {column} read a cell of the wrong type"))
}

fn s(value: &str) -> Cell<'_> {
    Cell::Str(Some(Cow::Borrowed(value)))
}
fn opt(value: Option<&str>) -> Cell<'_> {
    Cell::Str(value.map(Cow::Borrowed))
}
fn owned(value: Option<String>) -> Cell<'static> {
    Cell::Str(value.map(Cow::Owned))
}
fn int(value: Option<u64>) -> Cell<'static> {
    Cell::Int(value.map(|value| i64::try_from(value).unwrap_or(i64::MAX)))
}

/// The peer of a VPN event, if it has one.
fn peer_of(event: &Event) -> Option<&Peer> {
    match &event.body {
        EventBody::Auth(auth) => Some(&auth.peer),
        EventBody::IkeSa(ike) => Some(&ike.peer),
        EventBody::ChildSa(child) => Some(&child.peer),
        EventBody::VirtualIp(vip) => Some(&vip.peer),
        EventBody::L2tp(l2tp) => Some(&l2tp.peer),
        EventBody::Session(session) => Some(&session.peer),
        EventBody::Flow(_) | EventBody::ApiRequest(_) | EventBody::PipelineError(_) => None,
    }
}

fn user_name(event: &Event) -> Cell<'_> {
    match &event.body {
        EventBody::Flow(flow) => opt(flow.user_name.as_deref()),
        EventBody::ApiRequest(request) => opt(request.user_name.as_deref()),
        _ => opt(peer_of(event).and_then(|peer| peer.identities.user_name())),
    }
}

fn source_ip(event: &Event) -> Cell<'_> {
    let ip = match &event.body {
        EventBody::Flow(flow) => flow.source.ip,
        EventBody::ApiRequest(request) => request.client_ip,
        _ => peer_of(event).and_then(|peer| peer.client.ip),
    };
    owned(ip.map(|ip| ip.to_string()))
}

fn source_port(event: &Event) -> Cell<'_> {
    let port = match &event.body {
        EventBody::Flow(flow) => flow.source.port,
        EventBody::ApiRequest(_) => None,
        _ => peer_of(event).and_then(|peer| peer.client.port),
    };
    int(port.map(u64::from))
}

fn destination_ip(event: &Event) -> Cell<'_> {
    let ip = match &event.body {
        EventBody::Flow(flow) => flow.destination.ip,
        EventBody::ApiRequest(request) => request.destination.ip,
        _ => peer_of(event).and_then(|peer| peer.server.ip),
    };
    owned(ip.map(|ip| ip.to_string()))
}

fn destination_port(event: &Event) -> Cell<'_> {
    let port = match &event.body {
        EventBody::Flow(flow) => flow.destination.port,
        EventBody::ApiRequest(request) => request.destination.port,
        _ => peer_of(event).and_then(|peer| peer.server.port),
    };
    int(port.map(u64::from))
}

fn identity(event: &Event, pick: fn(&model::Identities) -> Option<&str>) -> Cell<'_> {
    opt(peer_of(event).and_then(|peer| pick(&peer.identities)))
}

fn geo(event: &Event, pick: fn(&Geo) -> Cell<'_>) -> Cell<'_> {
    match &event.source_geo {
        Some(geo) => pick(geo),
        None => pick(&EMPTY_GEO),
    }
}

static EMPTY_GEO: Geo = Geo {
    country_iso_code: None,
    country_name: None,
    city_name: None,
    lat: None,
    lon: None,
    as_number: None,
    as_organization: None,
};

fn outcome(event: &Event) -> Cell<'_> {
    match &event.body {
        EventBody::Auth(auth) => s(auth.outcome.as_str()),
        EventBody::PipelineError(_) => s("failure"),
        _ => Cell::Str(None),
    }
}

fn reason(event: &Event) -> Cell<'_> {
    match &event.body {
        EventBody::Auth(auth) => opt(auth.failure.as_ref().map(|failure| failure.reason.as_str())),
        EventBody::L2tp(l2tp) => opt(l2tp.reason.as_deref()),
        EventBody::PipelineError(error) => s(error.message.as_str()),
        _ => Cell::Str(None),
    }
}

fn auth_method(event: &Event) -> Cell<'_> {
    match &event.body {
        EventBody::Auth(auth) => s(auth.method.as_str()),
        _ => Cell::Str(None),
    }
}

fn auth_failure(event: &Event) -> Cell<'_> {
    match &event.body {
        EventBody::Auth(auth) => opt(auth.failure.as_ref().map(|failure| failure.code.as_str())),
        _ => Cell::Str(None),
    }
}

fn virtual_ip(event: &Event) -> Cell<'_> {
    match &event.body {
        EventBody::VirtualIp(vip) => owned(Some(vip.ip.to_string())),
        EventBody::Session(session) => owned(session.virtual_ip.map(|ip| ip.to_string())),
        _ => Cell::Str(None),
    }
}

fn terminate_cause(event: &Event) -> Cell<'_> {
    match &event.body {
        EventBody::IkeSa(ike) => opt(ike.cause.map(|cause| cause.as_str())),
        EventBody::Session(session) => opt(session.cause.map(|cause| cause.as_str())),
        _ => Cell::Str(None),
    }
}

macro_rules! col {
    ($name:literal, $kind:ident, $nullable:literal, $get:expr) => {
        Column {
            name: $name,
            kind: Kind::$kind,
            nullable: $nullable,
            get: $get,
        }
    };
}

/// `events`: every event but flows and API requests, with the fields most events share.
pub const EVENT_COLUMNS: &[Column<Event>] = &[
    col!("timestamp", Timestamp, false, |event| Cell::Ts(Some(
        event.timestamp
    ))),
    col!("event_id", Utf8, false, |event| owned(Some(
        event.id.to_string()
    ))),
    col!("event_kind", Utf8, false, |event| s(event.body.kind())),
    col!("event_category", Utf8, false, |event| s(event
        .body
        .category())),
    col!("event_action", Utf8, false, |event| owned(Some(
        event.body.action()
    ))),
    col!("event_outcome", Utf8, true, |event| outcome(event)),
    col!("event_reason", Utf8, true, |event| reason(event)),
    col!("event_dataset", Utf8, false, |event| s(&event.dataset)),
    col!("observer_hostname", Utf8, true, |event| opt(event
        .observer
        .hostname
        .as_deref())),
    col!("observer_product", Utf8, true, |event| opt(event
        .observer
        .product
        .as_deref())),
    col!("session_id", Utf8, true, |event| opt(event
        .session_id
        .as_deref())),
    col!("user_name", Utf8, true, |event| user_name(event)),
    col!("source_ip", Utf8, true, |event| source_ip(event)),
    col!("source_port", Int64, true, |event| source_port(event)),
    col!("source_geo_country_iso_code", Utf8, true, |event| geo(
        event,
        |geo| opt(geo.country_iso_code.as_deref())
    )),
    col!("source_geo_country_name", Utf8, true, |event| geo(
        event,
        |geo| opt(geo.country_name.as_deref())
    )),
    col!("source_geo_city_name", Utf8, true, |event| geo(
        event,
        |geo| opt(geo.city_name.as_deref())
    )),
    col!("source_geo_location_lat", Float64, true, |event| geo(
        event,
        |geo| Cell::Float(geo.lat)
    )),
    col!("source_geo_location_lon", Float64, true, |event| geo(
        event,
        |geo| Cell::Float(geo.lon)
    )),
    col!("source_as_number", Int64, true, |event| geo(event, |geo| {
        int(geo.as_number.map(u64::from))
    })),
    col!("source_as_organization_name", Utf8, true, |event| geo(
        event,
        |geo| opt(geo.as_organization.as_deref())
    )),
    col!("destination_ip", Utf8, true, |event| destination_ip(event)),
    col!("destination_port", Int64, true, |event| destination_port(
        event
    )),
    col!("vpn_connection", Utf8, true, |event| opt(
        peer_of(event).and_then(|peer| peer.connection.as_deref())
    )),
    col!("vpn_ike_sa_id", Int64, true, |event| int(
        peer_of(event).and_then(|peer| peer.ike_sa_id)
    )),
    col!("vpn_ike_id", Utf8, true, |event| identity(event, |ids| ids
        .ike_id
        .as_deref())),
    col!("vpn_eap_id", Utf8, true, |event| identity(event, |ids| ids
        .eap_id
        .as_deref())),
    col!("vpn_auth_method", Utf8, true, |event| auth_method(event)),
    col!("vpn_auth_failure", Utf8, true, |event| auth_failure(event)),
    col!("vpn_virtual_ip", Utf8, true, |event| virtual_ip(event)),
    col!("vpn_terminate_cause", Utf8, true, |event| terminate_cause(
        event
    )),
    col!("error_message", Utf8, true, |event| match &event.body {
        EventBody::PipelineError(error) => s(&error.message),
        _ => Cell::Str(None),
    }),
    col!("event_original", Utf8, false, |event| s(&event.original)),
];

/// `auth_events`: every authentication attempt.
pub const AUTH_COLUMNS: &[Column<Event>] = &[
    col!("timestamp", Timestamp, false, |event| Cell::Ts(Some(
        event.timestamp
    ))),
    col!("event_id", Utf8, false, |event| owned(Some(
        event.id.to_string()
    ))),
    col!("event_outcome", Utf8, true, |event| outcome(event)),
    col!("event_reason", Utf8, true, |event| reason(event)),
    col!("vpn_auth_method", Utf8, true, |event| auth_method(event)),
    col!("vpn_auth_failure", Utf8, true, |event| auth_failure(event)),
    col!("user_name", Utf8, true, |event| user_name(event)),
    col!("vpn_ike_id", Utf8, true, |event| identity(event, |ids| ids
        .ike_id
        .as_deref())),
    col!("vpn_eap_id", Utf8, true, |event| identity(event, |ids| ids
        .eap_id
        .as_deref())),
    col!("vpn_xauth_id", Utf8, true, |event| identity(event, |ids| {
        ids.xauth_id.as_deref()
    })),
    col!("vpn_cert_subject", Utf8, true, |event| identity(
        event,
        |ids| ids.cert_subject.as_deref()
    )),
    col!("vpn_cert_serial", Utf8, true, |event| identity(
        event,
        |ids| ids.cert_serial.as_deref()
    )),
    col!("source_ip", Utf8, true, |event| source_ip(event)),
    col!("source_port", Int64, true, |event| source_port(event)),
    col!("source_geo_country_iso_code", Utf8, true, |event| geo(
        event,
        |geo| opt(geo.country_iso_code.as_deref())
    )),
    col!("source_geo_country_name", Utf8, true, |event| geo(
        event,
        |geo| opt(geo.country_name.as_deref())
    )),
    col!("source_geo_city_name", Utf8, true, |event| geo(
        event,
        |geo| opt(geo.city_name.as_deref())
    )),
    col!("source_geo_location_lat", Float64, true, |event| geo(
        event,
        |geo| Cell::Float(geo.lat)
    )),
    col!("source_geo_location_lon", Float64, true, |event| geo(
        event,
        |geo| Cell::Float(geo.lon)
    )),
    col!("source_as_number", Int64, true, |event| geo(event, |geo| {
        int(geo.as_number.map(u64::from))
    })),
    col!("source_as_organization_name", Utf8, true, |event| geo(
        event,
        |geo| opt(geo.as_organization.as_deref())
    )),
    col!("destination_ip", Utf8, true, |event| destination_ip(event)),
    col!("destination_port", Int64, true, |event| destination_port(
        event
    )),
    col!("vpn_connection", Utf8, true, |event| opt(
        peer_of(event).and_then(|peer| peer.connection.as_deref())
    )),
    col!("vpn_ike_sa_id", Int64, true, |event| int(
        peer_of(event).and_then(|peer| peer.ike_sa_id)
    )),
    col!("session_id", Utf8, true, |event| opt(event
        .session_id
        .as_deref())),
    col!("observer_hostname", Utf8, true, |event| opt(event
        .observer
        .hostname
        .as_deref())),
    col!("observer_product", Utf8, true, |event| opt(event
        .observer
        .product
        .as_deref())),
    col!("event_dataset", Utf8, false, |event| s(&event.dataset)),
    col!("event_original", Utf8, false, |event| s(&event.original)),
];

fn session_geo(session: &Session, pick: fn(&Geo) -> Cell<'_>) -> Cell<'_> {
    match &session.client_geo {
        Some(geo) => pick(geo),
        None => pick(&EMPTY_GEO),
    }
}

/// `sessions`: one row per session snapshot; the `sessions` view keeps the newest.
pub const SESSION_COLUMNS: &[Column<Session>] = &[
    col!("session_id", Utf8, false, |session| s(&session.session_id)),
    col!("timestamp", Timestamp, false, |session| Cell::Ts(Some(
        session.updated
    ))),
    col!("observer_hostname", Utf8, true, |session| opt(session
        .gateway
        .as_deref())),
    col!("vpn_connection", Utf8, true, |session| opt(session
        .connection
        .as_deref())),
    col!("user_name", Utf8, true, |session| opt(session.user_name())),
    col!("vpn_ike_id", Utf8, true, |session| opt(session
        .identities
        .ike_id
        .as_deref())),
    col!("vpn_eap_id", Utf8, true, |session| opt(session
        .identities
        .eap_id
        .as_deref())),
    col!("vpn_xauth_id", Utf8, true, |session| opt(session
        .identities
        .xauth_id
        .as_deref())),
    col!("vpn_cert_subject", Utf8, true, |session| opt(session
        .identities
        .cert_subject
        .as_deref())),
    col!("vpn_cert_serial", Utf8, true, |session| opt(session
        .identities
        .cert_serial
        .as_deref())),
    col!("vpn_auth_method", Utf8, true, |session| opt(session
        .method
        .map(|method| method.as_str()))),
    col!("source_ip", Utf8, true, |session| owned(
        session.client.ip.map(|ip| ip.to_string())
    )),
    col!("source_port", Int64, true, |session| int(session
        .client
        .port
        .map(u64::from))),
    col!("source_geo_country_iso_code", Utf8, true, |session| {
        session_geo(session, |geo| opt(geo.country_iso_code.as_deref()))
    }),
    col!(
        "source_geo_country_name",
        Utf8,
        true,
        |session| session_geo(session, |geo| opt(geo.country_name.as_deref()))
    ),
    col!("source_geo_city_name", Utf8, true, |session| session_geo(
        session,
        |geo| opt(geo.city_name.as_deref())
    )),
    col!("source_geo_location_lat", Float64, true, |session| {
        session_geo(session, |geo| Cell::Float(geo.lat))
    }),
    col!("source_geo_location_lon", Float64, true, |session| {
        session_geo(session, |geo| Cell::Float(geo.lon))
    }),
    col!("source_as_number", Int64, true, |session| session_geo(
        session,
        |geo| int(geo.as_number.map(u64::from))
    )),
    col!("source_as_organization_name", Utf8, true, |session| {
        session_geo(session, |geo| opt(geo.as_organization.as_deref()))
    }),
    col!("vpn_virtual_ip", Utf8, true, |session| owned(
        session.virtual_ip.map(|ip| ip.to_string())
    )),
    col!("event_start", Timestamp, false, |session| Cell::Ts(Some(
        session.start
    ))),
    col!("event_end", Timestamp, true, |session| Cell::Ts(
        session.end
    )),
    col!("event_duration", Int64, true, |session| Cell::Int(
        session
            .end
            .and_then(|end| { i64::try_from(end.duration_since(session.start).as_nanos()).ok() })
    )),
    col!("vpn_state", Utf8, false, |session| s(session
        .state
        .as_str())),
    col!("vpn_terminate_cause", Utf8, true, |session| opt(session
        .cause
        .map(|cause| cause.as_str()))),
    col!("source_bytes", Int64, false, |session| int(Some(
        session.counters.bytes_in
    ))),
    col!("destination_bytes", Int64, false, |session| int(Some(
        session.counters.bytes_out
    ))),
    col!("network_bytes", Int64, false, |session| int(Some(
        session
            .counters
            .bytes_in
            .saturating_add(session.counters.bytes_out)
    ))),
    col!("source_packets", Int64, true, |session| int(session
        .counters
        .packets_in)),
    col!("destination_packets", Int64, true, |session| int(session
        .counters
        .packets_out)),
    col!("vpn_accounting_id", Utf8, true, |session| opt(session
        .accounting_id
        .as_deref())),
    col!("vpn_rekey_count", Int64, false, |session| int(Some(
        u64::from(session.rekey_count)
    ))),
    col!("vpn_ike_sa_ids", Utf8, false, |session| owned(Some(
        session
            .ike_sa_ids
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    ))),
    col!("vpn_session_version", Int64, false, |session| int(Some(
        session.version
    ))),
];

fn flow_of(event: &Event) -> Option<&model::Flow> {
    match &event.body {
        EventBody::Flow(flow) => Some(flow),
        _ => None,
    }
}

/// `flows`: network flows of VPN clients.
pub const FLOW_COLUMNS: &[Column<Event>] = &[
    col!("timestamp", Timestamp, false, |event| Cell::Ts(Some(
        event.timestamp
    ))),
    col!("event_id", Utf8, false, |event| owned(Some(
        event.id.to_string()
    ))),
    col!("session_id", Utf8, true, |event| opt(event
        .session_id
        .as_deref())),
    col!("user_name", Utf8, true, |event| user_name(event)),
    col!("observer_hostname", Utf8, true, |event| opt(event
        .observer
        .hostname
        .as_deref())),
    col!("event_start", Timestamp, true, |event| Cell::Ts(
        flow_of(event).map(|flow| flow.start)
    )),
    col!("event_end", Timestamp, true, |event| Cell::Ts(
        flow_of(event).map(|flow| flow.end)
    )),
    col!("source_ip", Utf8, true, |event| source_ip(event)),
    col!("source_port", Int64, true, |event| source_port(event)),
    col!("destination_ip", Utf8, true, |event| destination_ip(event)),
    col!("destination_port", Int64, true, |event| destination_port(
        event
    )),
    col!("network_transport", Utf8, true, |event| opt(
        flow_of(event).map(|flow| flow.transport.as_str())
    )),
    col!("source_bytes", Int64, true, |event| int(
        flow_of(event).map(|flow| flow.source_bytes)
    )),
    col!("destination_bytes", Int64, true, |event| int(flow_of(
        event
    )
    .map(|flow| flow.destination_bytes))),
    col!("source_packets", Int64, true, |event| int(
        flow_of(event).map(|flow| flow.source_packets)
    )),
    col!("destination_packets", Int64, true, |event| int(flow_of(
        event
    )
    .map(|flow| flow.destination_packets))),
    col!("vpn_tcp_flags", Int64, true, |event| int(
        flow_of(event).and_then(|flow| flow.tcp_flags.map(u64::from))
    )),
    col!("vpn_flow_end", Utf8, true, |event| opt(flow_of(event)
        .and_then(|flow| flow
            .end_reason
            .map(model::FlowEnd::as_str)))),
    col!("vpn_session_join", Utf8, true, |event| opt(session_join(
        event
    )
    .map(model::SessionJoin::as_str))),
];

fn session_join(event: &Event) -> Option<model::SessionJoin> {
    match &event.body {
        EventBody::Flow(flow) => flow.session_join,
        EventBody::ApiRequest(request) => request.session_join,
        _ => None,
    }
}

fn request_of(event: &Event) -> Option<&model::ApiRequest> {
    match &event.body {
        EventBody::ApiRequest(request) => Some(request),
        _ => None,
    }
}

/// `api_requests`: HTTP requests to APIs behind the VPN.
pub const API_REQUEST_COLUMNS: &[Column<Event>] = &[
    col!("timestamp", Timestamp, false, |event| Cell::Ts(Some(
        event.timestamp
    ))),
    col!("event_id", Utf8, false, |event| owned(Some(
        event.id.to_string()
    ))),
    col!("session_id", Utf8, true, |event| opt(event
        .session_id
        .as_deref())),
    col!("user_name", Utf8, true, |event| user_name(event)),
    col!("observer_hostname", Utf8, true, |event| opt(event
        .observer
        .hostname
        .as_deref())),
    col!("source_ip", Utf8, true, |event| source_ip(event)),
    col!("destination_ip", Utf8, true, |event| destination_ip(event)),
    col!("destination_port", Int64, true, |event| destination_port(
        event
    )),
    col!("http_request_method", Utf8, true, |event| opt(request_of(
        event
    )
    .map(|request| request.method.as_str()))),
    col!("url_domain", Utf8, true, |event| opt(
        request_of(event).and_then(|request| request.host.as_deref())
    )),
    col!("url_path", Utf8, true, |event| opt(
        request_of(event).map(|request| request.path.as_str())
    )),
    col!("http_response_status_code", Int64, true, |event| int(
        request_of(event).map(|request| u64::from(request.status))
    )),
    col!("http_response_bytes", Int64, true, |event| int(request_of(
        event
    )
    .and_then(|request| request.response_bytes))),
    col!("event_duration", Int64, true, |event| int(request_of(
        event
    )
    .and_then(|request| request
        .duration_us
        .map(|us| us.saturating_mul(1000))))),
    col!("http_request_id", Utf8, true, |event| opt(request_of(
        event
    )
    .and_then(|request| request.request_id.as_deref()))),
    col!("vpn_session_join", Utf8, true, |event| opt(session_join(
        event
    )
    .map(model::SessionJoin::as_str))),
    col!("event_original", Utf8, false, |event| s(&event.original)),
];

/// Tables whose rows no part of tunnelwatch produces yet: the schema exists so that SQL and
/// dashboards can rely on the table, and it holds no rows.
pub enum NoRows {}

/// `session_joins`: late corrections of the session a flow or API request was joined to
/// ([`model::SessionJoinUpdate`]). A row lands in the hour of the row it corrects; the views
/// of `flows` and `api_requests` show the newest correction of each event (see
/// [`crate::session_joins`]).
pub const SESSION_JOIN_COLUMNS: &[Column<model::SessionJoinUpdate>] = &[
    col!("timestamp", Timestamp, false, |update| Cell::Ts(Some(
        update.timestamp
    ))),
    col!("event_id", Utf8, false, |update| s(&update.event_id)),
    col!("vpn_join_table", Utf8, false, |update| s(update
        .target
        .as_str())),
    col!("session_id", Utf8, true, |update| opt(update
        .session_id
        .as_deref())),
    col!("user_name", Utf8, true, |update| opt(update
        .user_name
        .as_deref())),
    col!("vpn_session_join", Utf8, false, |update| s(update
        .join
        .as_str())),
    col!("event_created", Timestamp, false, |update| Cell::Ts(Some(
        update.decided
    ))),
];

/// Session join corrections as one record batch.
pub fn session_joins_batch(updates: &[&model::SessionJoinUpdate]) -> Result<RecordBatch> {
    to_batch(SESSION_JOIN_COLUMNS, updates)
}

/// `alerts`: alerts raised by rules (filled by the alerting engine).
pub const ALERT_COLUMNS: &[Column<NoRows>] = &[
    col!("timestamp", Timestamp, false, |never| match *never {}),
    col!("event_id", Utf8, false, |never| match *never {}),
    col!("rule_id", Utf8, false, |never| match *never {}),
    col!("rule_name", Utf8, false, |never| match *never {}),
    col!("event_severity", Int64, true, |never| match *never {}),
    col!("event_action", Utf8, false, |never| match *never {}),
    col!("event_reason", Utf8, true, |never| match *never {}),
    col!("message", Utf8, true, |never| match *never {}),
    col!("user_name", Utf8, true, |never| match *never {}),
    col!("source_ip", Utf8, true, |never| match *never {}),
    col!("session_id", Utf8, true, |never| match *never {}),
    col!("event_start", Timestamp, true, |never| match *never {}),
    col!("event_end", Timestamp, true, |never| match *never {}),
];

/// `audit_log`: what operators and playbooks did, hash-chained (filled by playbooks).
pub const AUDIT_COLUMNS: &[Column<model::AuditEntry>] = &[
    col!("timestamp", Timestamp, false, |entry| Cell::Ts(Some(
        entry.timestamp
    ))),
    col!("event_id", Utf8, false, |entry| s(&entry.id)),
    col!("event_action", Utf8, false, |entry| s(&entry.draft.action)),
    col!("event_outcome", Utf8, true, |entry| opt(entry
        .draft
        .outcome
        .as_deref())),
    col!("user_name", Utf8, true, |entry| opt(entry
        .draft
        .actor
        .as_deref())),
    col!("user_target_name", Utf8, true, |entry| opt(entry
        .draft
        .target
        .as_deref())),
    col!("source_ip", Utf8, true, |entry| owned(
        entry.draft.source_ip.map(|ip| ip.to_string())
    )),
    col!("message", Utf8, true, |entry| s(&entry.draft.message)),
    col!("vpn_audit_prev_hash", Utf8, true, |entry| s(
        &entry.prev_hash
    )),
    col!("vpn_audit_hash", Utf8, true, |entry| s(&entry.hash)),
];

/// Audit entries back from `audit_log` rows (for checking the chain).
pub fn audit_entries(batch: &RecordBatch) -> Result<Vec<model::AuditEntry>> {
    use datafusion::arrow::array::{Array, StringArray, TimestampMicrosecondArray};
    let text = |name: &str| -> Result<&StringArray> {
        batch
            .column_by_name(name)
            .and_then(|column| column.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::Internal(format!("audit_log has no text column {name}")))
    };
    let times = batch
        .column_by_name("timestamp")
        .and_then(|column| column.as_any().downcast_ref::<TimestampMicrosecondArray>())
        .ok_or_else(|| Error::Internal("audit_log has no timestamp column".to_owned()))?;
    let (ids, actions, outcomes, actors, targets, ips, messages, prevs, hashes) = (
        text("event_id")?,
        text("event_action")?,
        text("event_outcome")?,
        text("user_name")?,
        text("user_target_name")?,
        text("source_ip")?,
        text("message")?,
        text("vpn_audit_prev_hash")?,
        text("vpn_audit_hash")?,
    );
    let get = |column: &StringArray, row: usize| -> Option<String> {
        (!column.is_null(row)).then(|| column.value(row).to_owned())
    };
    (0..batch.num_rows())
        .map(|row| {
            Ok(model::AuditEntry {
                id: get(ids, row).unwrap_or_default(),
                timestamp: jiff::Timestamp::from_microsecond(times.value(row))
                    .map_err(|error| Error::Internal(format!("audit timestamp: {error}")))?,
                draft: model::AuditDraft {
                    action: get(actions, row).unwrap_or_default(),
                    outcome: get(outcomes, row),
                    actor: get(actors, row),
                    target: get(targets, row),
                    source_ip: get(ips, row).and_then(|ip| ip.parse().ok()),
                    message: get(messages, row).unwrap_or_default(),
                },
                prev_hash: get(prevs, row).unwrap_or_default(),
                hash: get(hashes, row).unwrap_or_default(),
            })
        })
        .collect()
}

/// The rows of `audit_log`.
pub fn audit_batch(entries: &[&model::AuditEntry]) -> Result<RecordBatch> {
    to_batch(AUDIT_COLUMNS, entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column is a documented field of the vocabulary (ECS or `vpn.*`), named by
    /// `model::fields::column_name`.
    #[test]
    fn every_column_is_a_documented_field() {
        for table in Table::ALL {
            for column in table.column_names() {
                assert!(
                    model::fields::by_column(column).is_some(),
                    "{}.{column} is not in model::fields::FIELDS",
                    table.name()
                );
            }
        }
    }

    /// The schema of every table, pinned: column names, order, types and nullability (and
    /// any metadata). Parquet segments written before are read with today's schema, so a
    /// change here is a migration, not a refactoring.
    #[test]
    fn tables_keep_their_schemas() {
        let mut rendered = String::new();
        for table in Table::ALL {
            let schema = table.schema();
            rendered.push_str(&format!("{}\n", table.name()));
            assert!(
                schema.metadata().is_empty(),
                "{} has metadata",
                table.name()
            );
            for field in schema.fields() {
                let nullable = if field.is_nullable() {
                    "null"
                } else {
                    "not null"
                };
                rendered.push_str(&format!(
                    "  {}: {:?} {nullable}\n",
                    field.name(),
                    field.data_type()
                ));
                assert!(field.metadata().is_empty(), "{} has metadata", field.name());
            }
        }
        expect_test::expect_file!["../testdata/schema/tables.expected"].assert_eq(&rendered);
    }

    /// Every cell of every table for realistic rows of each kind (testdata/schema/*.jsonl):
    /// what the converters write, pinned.
    #[test]
    fn rows_keep_their_cells() {
        let events: Vec<Event> = fixture("events.jsonl");
        let sessions: Vec<Session> = fixture("sessions.jsonl");
        let joins: Vec<model::SessionJoinUpdate> = fixture("session_joins.jsonl");
        let at = jiff::Timestamp::from_second(1_795_000_000).unwrap();
        let first = model::AuditDraft {
            action: "retention.delete".to_owned(),
            outcome: Some("success".to_owned()),
            actor: Some("policy:90-days".to_owned()),
            target: None,
            source_ip: None,
            message: "deleted 3 hours of flows".to_owned(),
        }
        .seal(1, at, model::audit::GENESIS);
        let second = model::AuditDraft {
            action: "revoke.terminate".to_owned(),
            outcome: None,
            actor: Some("analyst@example.org".to_owned()),
            target: Some("bob".to_owned()),
            source_ip: Some("2001:db8::5".parse().unwrap()),
            message: "terminated bob's sessions".to_owned(),
        }
        .seal(2, at, &first.hash);
        let mut rendered = String::new();
        for table in Table::ALL {
            let batch = match table {
                Table::Sessions => sessions_batch(&sessions.iter().collect::<Vec<_>>()),
                Table::SessionJoins => session_joins_batch(&joins.iter().collect::<Vec<_>>()),
                Table::AuditLog => audit_batch(&[&first, &second]),
                _ => {
                    let taken: Vec<&Event> =
                        events.iter().filter(|event| table.takes(event)).collect();
                    table.events_batch(&taken)
                }
            }
            .unwrap();
            rendered.push_str(&render_batch(table.name(), &batch));
        }
        expect_test::expect_file!["../testdata/schema/rows.expected"].assert_eq(&rendered);
    }

    pub(crate) fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> Vec<T> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata/schema")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        text.lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|error| panic!("{name}: {error}"))
            })
            .collect()
    }

    fn render_batch(table: &str, batch: &RecordBatch) -> String {
        use datafusion::arrow::array::{Array, StringArray};
        use datafusion::arrow::util::display::array_value_to_string;
        let mut rendered = format!("{table}: {} rows\n", batch.num_rows());
        for row in 0..batch.num_rows() {
            rendered.push_str(&format!("  row {row}\n"));
            for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                let cell = if column.is_null(row) {
                    "null".to_owned()
                } else if let Some(text) = column.as_any().downcast_ref::<StringArray>() {
                    format!("{:?}", text.value(row))
                } else {
                    array_value_to_string(column, row).unwrap()
                };
                rendered.push_str(&format!("    {}: {cell}\n", field.name()));
            }
        }
        rendered
    }

    #[test]
    fn table_names_are_the_ones_users_script_against() {
        let names: Vec<&str> = Table::ALL.iter().map(|table| table.name()).collect();
        assert_eq!(
            names,
            [
                "events",
                "auth_events",
                "sessions",
                "flows",
                "api_requests",
                "alerts",
                "audit_log",
                "session_joins"
            ]
        );
        for required in ["source_ip", "user_name", "event_outcome", "session_id"] {
            assert!(
                Table::AuthEvents.column_names().contains(&required),
                "auth_events lacks {required}"
            );
        }
        for table in [Table::Flows, Table::ApiRequests] {
            assert!(
                table.column_names().contains(&"session_id")
                    && table.column_names().contains(&"user_name")
            );
        }
        assert!(Table::Flows.column_names().contains(&"destination_port"));
    }
}
