//! The tables SQL sees, their Arrow schemas, and the converters from model types to Arrow
//! record batches.
//!
//! Each table is a list of `Column`s: a field of `model::fields`, which gives the column its
//! name (the ECS name with dots replaced by underscores) and type, and whether the table
//! allows nulls in it. The schema and the conversion come from the same list, so they cannot
//! drift apart. Events and sessions are read with the fields' own getters, so SQL sees what
//! alert rules read; the audit log and session join corrections, which no rule reads, are
//! read by getters of their own here (`Row`). Runs of columns that several tables share
//! (where a client came from, the gateway side of a peer, the identities a peer presented, the
//! session a flow or API request was joined to) are written once.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, ArrowPrimitiveType, Float64Builder, Int64Builder, PrimitiveBuilder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use model::fields::{self as f, FieldType, Getter, Value};
use model::{Event, EventBody, Session};

use crate::{Error, Result};

/// One column of a table: a field of the vocabulary, and whether the table allows nulls in
/// it (the same field may be required in one table and optional in another).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub(crate) field: &'static f::Field,
    pub(crate) nullable: bool,
}

/// A run of columns, written as SQL declares them: `FIELD null` or `FIELD not null`, where
/// `FIELD` is a constant of `model::fields` (`SOURCE_IP` is the column `source_ip`).
macro_rules! columns {
    ($($field:ident $nullability:tt $($null:ident)?),* $(,)?) => {
        &[$(Column {
            field: &f::$field,
            nullable: columns!(@nullable $nullability $($null)?),
        }),*]
    };
    (@nullable null) => { true };
    (@nullable not null) => { false };
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

    /// The columns, in order: the table's runs of columns, one after the other.
    pub(crate) fn columns(self) -> impl Iterator<Item = &'static Column> {
        let runs: &'static [&'static [Column]] = match self {
            Table::Events => EVENTS,
            Table::AuthEvents => AUTH_EVENTS,
            Table::Sessions => SESSIONS,
            Table::Flows => FLOWS,
            Table::ApiRequests => API_REQUESTS,
            Table::Alerts => ALERTS,
            Table::AuditLog => AUDIT_LOG,
            Table::SessionJoins => SESSION_JOINS,
        };
        runs.iter().flat_map(|run| run.iter())
    }

    pub fn schema(self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns()
            .map(|column| {
                let data_type = match column.field.ty {
                    FieldType::Str | FieldType::Ip => DataType::Utf8,
                    FieldType::Int => DataType::Int64,
                    FieldType::Float => DataType::Float64,
                    FieldType::Time => {
                        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                    }
                };
                Field::new(column.field.column, data_type, column.nullable)
            })
            .collect();
        Arc::new(Schema::new(fields))
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
        if self.from_events() {
            to_batch(self, events)
        } else {
            Ok(RecordBatch::new_empty(self.schema()))
        }
    }

    /// Column names, in order.
    pub fn column_names(self) -> Vec<&'static str> {
        self.columns().map(|column| column.field.column).collect()
    }
}

/// The client of a VPN peer or session: its public address, and where that is.
const CLIENT: &[Column] = columns![
    SOURCE_IP null, SOURCE_PORT null, SOURCE_GEO_COUNTRY_ISO_CODE null,
    SOURCE_GEO_COUNTRY_NAME null, SOURCE_GEO_CITY_NAME null, SOURCE_GEO_LOCATION_LAT null,
    SOURCE_GEO_LOCATION_LON null, SOURCE_AS_NUMBER null, SOURCE_AS_ORGANIZATION_NAME null,
];

/// The gateway side of a VPN event: the address the client reached, the connection and the
/// IKE_SA.
const GATEWAY: &[Column] = columns![
    DESTINATION_IP null, DESTINATION_PORT null, VPN_CONNECTION null, VPN_IKE_SA_ID null,
];

/// Every identity a peer presented.
const IDENTITIES: &[Column] = columns![
    VPN_IKE_ID null, VPN_EAP_ID null, VPN_XAUTH_ID null, VPN_CERT_SUBJECT null,
    VPN_CERT_SERIAL null,
];

/// A flow or API request, and the session the collector joined it to.
const JOINED: &[Column] = columns![
    TIMESTAMP not null, EVENT_ID not null, SESSION_ID null, USER_NAME null,
    OBSERVER_HOSTNAME null,
];

/// `events`: every event but flows and API requests, with the fields most events share.
const EVENTS: &[&[Column]] = &[
    columns![
        TIMESTAMP not null, EVENT_ID not null, EVENT_KIND not null, EVENT_CATEGORY not null,
        EVENT_ACTION not null, EVENT_OUTCOME null, EVENT_REASON null, EVENT_DATASET not null,
        OBSERVER_HOSTNAME null, OBSERVER_PRODUCT null, SESSION_ID null, USER_NAME null,
    ],
    CLIENT,
    GATEWAY,
    columns![
        VPN_IKE_ID null, VPN_EAP_ID null, VPN_AUTH_METHOD null, VPN_AUTH_FAILURE null,
        VPN_VIRTUAL_IP null, VPN_TERMINATE_CAUSE null, ERROR_MESSAGE null,
        EVENT_ORIGINAL not null,
    ],
    // Came with the weak-crypto and certificate-expiry rules (older segments read them as
    // null).
    columns![VPN_PROPOSAL null, VPN_CERT_SUBJECT null, VPN_CERT_SERIAL null, X509_NOT_AFTER null, X509_ISSUER null],
];

/// `auth_events`: every authentication attempt.
const AUTH_EVENTS: &[&[Column]] = &[
    columns![
        TIMESTAMP not null, EVENT_ID not null, EVENT_OUTCOME null, EVENT_REASON null,
        VPN_AUTH_METHOD null, VPN_AUTH_FAILURE null, USER_NAME null,
    ],
    IDENTITIES,
    CLIENT,
    GATEWAY,
    columns![
        SESSION_ID null, OBSERVER_HOSTNAME null, OBSERVER_PRODUCT null, EVENT_DATASET not null,
        EVENT_ORIGINAL not null,
    ],
];

/// `sessions`: one row per session snapshot; the `sessions` view keeps the newest.
const SESSIONS: &[&[Column]] = &[
    columns![
        SESSION_ID not null, TIMESTAMP not null, OBSERVER_HOSTNAME null, VPN_CONNECTION null,
        USER_NAME null,
    ],
    IDENTITIES,
    columns![VPN_AUTH_METHOD null],
    CLIENT,
    columns![
        VPN_VIRTUAL_IP null, EVENT_START not null, EVENT_END null, EVENT_DURATION null,
        VPN_STATE not null, VPN_TERMINATE_CAUSE null, SOURCE_BYTES not null,
        DESTINATION_BYTES not null, NETWORK_BYTES not null, SOURCE_PACKETS null,
        DESTINATION_PACKETS null, VPN_ACCOUNTING_ID null, VPN_REKEY_COUNT not null,
        VPN_IKE_SA_IDS not null, VPN_SESSION_VERSION not null,
    ],
];

/// `flows`: network flows of VPN clients.
const FLOWS: &[&[Column]] = &[
    JOINED,
    columns![
        EVENT_START null, EVENT_END null, SOURCE_IP null, SOURCE_PORT null, DESTINATION_IP null,
        DESTINATION_PORT null, NETWORK_TRANSPORT null, SOURCE_BYTES null,
        DESTINATION_BYTES null, SOURCE_PACKETS null, DESTINATION_PACKETS null,
        VPN_TCP_FLAGS null, VPN_FLOW_END null, VPN_SESSION_JOIN null,
    ],
];

/// `api_requests`: HTTP requests to APIs behind the VPN.
const API_REQUESTS: &[&[Column]] = &[
    JOINED,
    columns![
        SOURCE_IP null, DESTINATION_IP null, DESTINATION_PORT null, HTTP_REQUEST_METHOD null,
        URL_DOMAIN null, URL_PATH null, HTTP_RESPONSE_STATUS_CODE null,
        HTTP_RESPONSE_BYTES null, EVENT_DURATION null, HTTP_REQUEST_ID null,
        VPN_SESSION_JOIN null, EVENT_ORIGINAL not null,
    ],
];

/// `alerts`: one row per change of an alert's state (the alerting engine's and operators'),
/// see [`crate::alerts`]. The columns after `event_end` came with the engine; nothing wrote
/// the table before it.
const ALERTS: &[&[Column]] = &[columns![
    TIMESTAMP not null, EVENT_ID not null, RULE_ID not null, RULE_NAME not null,
    EVENT_SEVERITY null, EVENT_ACTION not null, EVENT_REASON null, MESSAGE null, USER_NAME null,
    SOURCE_IP null, SESSION_ID null, EVENT_START null, EVENT_END null,
    VPN_ALERT_ID null, VPN_ALERT_REVISION null, VPN_ALERT_FINGERPRINT null, VPN_ALERT_STATUS null,
    VPN_ALERT_COUNT null, VPN_ALERT_LABELS null, VPN_ALERT_EVIDENCE null, THREAT_TECHNIQUE_ID null,
    VPN_ALERT_ACTOR null, VPN_ALERT_ASSIGNEE null,
]];

/// `audit_log`: what operators and playbooks did, hash-chained (filled by playbooks).
const AUDIT_LOG: &[&[Column]] = &[columns![
    TIMESTAMP not null, EVENT_ID not null, EVENT_ACTION not null, EVENT_OUTCOME null,
    USER_NAME null, USER_TARGET_NAME null, SOURCE_IP null, MESSAGE null,
    VPN_AUDIT_PREV_HASH null, VPN_AUDIT_HASH null, USER_ROLES null, VPN_AUDIT_DETAILS null,
    VPN_AUDIT_VERSION null,
]];

/// `session_joins`: late corrections of the session a flow or API request was joined to
/// ([`model::SessionJoinUpdate`]). A row lands in the hour of the row it corrects; the views
/// of `flows` and `api_requests` show the newest correction of each event (see
/// [`crate::session_joins`]).
const SESSION_JOINS: &[&[Column]] = &[columns![
    TIMESTAMP not null, EVENT_ID not null, VPN_JOIN_TABLE not null, SESSION_ID null,
    USER_NAME null, VPN_SESSION_JOIN not null, EVENT_CREATED not null,
]];

/// What a table's rows are made of, and how each of its fields is read from one.
pub(crate) trait Row: Sized {
    /// How `field` is read from a row; `None` if this kind of row does not carry it.
    fn getter(field: &f::Field) -> Option<Getter<Self>>;
}

impl Row for Event {
    fn getter(field: &f::Field) -> Option<Getter<Event>> {
        field.event
    }
}

impl Row for Session {
    fn getter(field: &f::Field) -> Option<Getter<Session>> {
        field.session
    }
}

impl Row for model::AuditEntry {
    fn getter(field: &f::Field) -> Option<Getter<Self>> {
        let get: Getter<Self> = match field.name {
            "@timestamp" => |entry| Some(entry.timestamp.into()),
            "event.id" => |entry| Some(entry.id.as_str().into()),
            "event.action" => |entry| Some(entry.draft.action.as_str().into()),
            "event.outcome" => |entry| entry.draft.outcome.as_deref().map(Value::from),
            "user.name" => |entry| entry.draft.actor.as_deref().map(Value::from),
            "user.target.name" => |entry| entry.draft.target.as_deref().map(Value::from),
            "source.ip" => |entry| entry.draft.source_ip.map(Value::from),
            "message" => |entry| Some(entry.draft.message.as_str().into()),
            "vpn.audit_prev_hash" => |entry| Some(entry.prev_hash.as_str().into()),
            "vpn.audit_hash" => |entry| Some(entry.hash.as_str().into()),
            "user.roles" => |entry| entry.draft.role.as_deref().map(Value::from),
            "vpn.audit_details" => |entry| entry.draft.details.as_deref().map(Value::from),
            "vpn.audit_version" => |entry| Some(Value::Int(i64::from(entry.version))),
            _ => return None,
        };
        Some(get)
    }
}

impl Row for model::SessionJoinUpdate {
    fn getter(field: &f::Field) -> Option<Getter<Self>> {
        let get: Getter<Self> = match field.name {
            "@timestamp" => |update| Some(update.timestamp.into()),
            "event.id" => |update| Some(update.event_id.as_str().into()),
            "vpn.join_table" => |update| Some(update.target.as_str().into()),
            "session_id" => |update| update.session_id.as_deref().map(Value::from),
            "user.name" => |update| update.user_name.as_deref().map(Value::from),
            "vpn.session_join" => |update| Some(update.join.as_str().into()),
            "event.created" => |update| Some(update.decided.into()),
            _ => return None,
        };
        Some(get)
    }
}

/// Session snapshots as one record batch.
pub fn sessions_batch(sessions: &[&Session]) -> Result<RecordBatch> {
    to_batch(Table::Sessions, sessions)
}

/// Session join corrections as one record batch.
pub fn session_joins_batch(updates: &[&model::SessionJoinUpdate]) -> Result<RecordBatch> {
    to_batch(Table::SessionJoins, updates)
}

/// The rows of `audit_log`.
pub fn audit_batch(entries: &[&model::AuditEntry]) -> Result<RecordBatch> {
    to_batch(Table::AuditLog, entries)
}

/// `rows` as a record batch of `table`, whose rows they must be.
pub(crate) fn to_batch<T: Row>(table: Table, rows: &[&T]) -> Result<RecordBatch> {
    let arrays = table
        .columns()
        .map(|column| {
            let field = column.field;
            let name = || format!("{}.{}", table.name(), field.column);
            let get = T::getter(field).ok_or_else(|| {
                Error::Internal(format!("column {} has no getter for its rows", name()))
            })?;
            let values = rows.iter().map(|row| get(row));
            array(field.ty, values, rows.len()).ok_or_else(|| {
                Error::Internal(format!(
                    "column {} read a value that is not {:?}",
                    name(),
                    field.ty
                ))
            })
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    RecordBatch::try_new(table.schema(), arrays).map_err(|error| Error::Arrow {
        context: "build record batch",
        source: error,
    })
}

/// The Arrow array of a column of type `ty`; `None` if a value is of another type.
fn array<'a>(
    ty: FieldType,
    values: impl Iterator<Item = Option<Value<'a>>>,
    n_rows: usize,
) -> Option<ArrayRef> {
    match ty {
        FieldType::Str => texts(values, n_rows, |value| value.as_str().map(Cow::Borrowed)),
        FieldType::Ip => texts(values, n_rows, |value| {
            Some(value.as_ip()?.to_string().into())
        }),
        FieldType::Int => primitives(Int64Builder::with_capacity(n_rows), values, Value::as_int),
        FieldType::Float => primitives(
            Float64Builder::with_capacity(n_rows),
            values,
            Value::as_float,
        ),
        FieldType::Time => {
            let builder = TimestampMicrosecondBuilder::with_capacity(n_rows).with_timezone("UTC");
            primitives(builder, values, |value| {
                Some(value.as_time()?.as_microsecond())
            })
        }
    }
}

/// A text column; `None` if `text` finds no text in a value.
fn texts<'a>(
    values: impl Iterator<Item = Option<Value<'a>>>,
    n_rows: usize,
    text: for<'v> fn(&'v Value<'a>) -> Option<Cow<'v, str>>,
) -> Option<ArrayRef> {
    let mut builder = StringBuilder::with_capacity(n_rows, n_rows * 16);
    for value in values {
        match value {
            None => builder.append_null(),
            Some(value) => builder.append_value(text(&value)?),
        }
    }
    Some(Arc::new(builder.finish()))
}

/// A column of numbers or times; `None` if `native` finds no number in a value.
fn primitives<'a, P: ArrowPrimitiveType>(
    mut builder: PrimitiveBuilder<P>,
    values: impl Iterator<Item = Option<Value<'a>>>,
    native: fn(&Value<'a>) -> Option<P::Native>,
) -> Option<ArrayRef> {
    for value in values {
        match value {
            None => builder.append_null(),
            Some(value) => builder.append_value(native(&value)?),
        }
    }
    Some(Arc::new(builder.finish()))
}

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
    // Columns added with version 2 of the entries: absent from older segments.
    let optional_text = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|column| column.as_any().downcast_ref::<StringArray>())
    };
    let (roles, details) = (
        optional_text("user_roles"),
        optional_text("vpn_audit_details"),
    );
    let versions = batch
        .column_by_name("vpn_audit_version")
        .and_then(|column| {
            column
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Int64Array>()
        });
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
                    role: roles.and_then(|column| get(column, row)),
                    details: details.and_then(|column| get(column, row)),
                },
                prev_hash: get(prevs, row).unwrap_or_default(),
                hash: get(hashes, row).unwrap_or_default(),
                version: versions
                    .filter(|column| !column.is_null(row))
                    .and_then(|column| u32::try_from(column.value(row)).ok())
                    .unwrap_or(1),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
