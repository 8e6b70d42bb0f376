//! The field dictionary: every field tunnelwatch stores or lets a rule read, with its ECS (or
//! `vpn.*`) name, its type, the OCSF attribute it corresponds to, and how to read it from an
//! [`Event`] and from a [`Session`].
//!
//! [`FIELDS`] lists them all, in the order the crate documentation does; each is also a
//! constant of its own ([`SOURCE_IP`] is `source.ip`), so that code naming a field is checked
//! by the compiler. Storage column names are derived from the dotted names ([`column_name`]:
//! `source.ip` is the column `source_ip`), so SQL users can rely on them.
//!
//! Rules and mappings name fields in text: [`resolve`] turns such a name into its [`Field`]
//! once, when they are loaded, and an unknown name is an error that names it (and the field
//! it is closest to, if one is near). Reading a field is then a call of its getter:
//! [`Field::of_event`], [`Field::of_session`]. The store builds its Arrow columns from the
//! same getters (`store::schema`), so what a rule reads is what SQL sees.
//!
//! A few fields are carried by no event and no session: the alert, audit and join
//! bookkeeping of the tables that alone hold them ([`Field::only_in`]).

mod dictionary;
mod event;
mod resolve;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use jiff::Timestamp;

use crate::{Event, Session};

pub use dictionary::*;
pub use resolve::resolve;

/// The type of a field's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Text: keywords, identities, messages ([`Value::Str`]).
    Str,
    /// A whole number: ports, counts, bytes, nanoseconds ([`Value::Int`]).
    Int,
    /// A floating-point number: coordinates ([`Value::Float`]).
    Float,
    /// An instant, UTC ([`Value::Time`]).
    Time,
    /// An IPv4 or IPv6 address ([`Value::Ip`]); stored as text.
    Ip,
}

/// One value of a field, as read from an event or a session. It borrows what it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    /// Counters held as `u64` saturate at `i64::MAX`, as they are stored.
    Int(i64),
    Float(f64),
    /// Stored to the microsecond.
    Time(Timestamp),
    /// Stored as text (`192.0.2.1`, `2001:db8::1`).
    Ip(IpAddr),
}

impl Value<'_> {
    /// The type of this value.
    pub fn field_type(&self) -> FieldType {
        match self {
            Value::Str(_) => FieldType::Str,
            Value::Int(_) => FieldType::Int,
            Value::Float(_) => FieldType::Float,
            Value::Time(_) => FieldType::Time,
            Value::Ip(_) => FieldType::Ip,
        }
    }

    /// The text, if this is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The number, if this is a whole number.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(number) => Some(*number),
            _ => None,
        }
    }

    /// The number, if this is a floating-point number.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(number) => Some(*number),
            _ => None,
        }
    }

    /// The instant, if this is a time.
    pub fn as_time(&self) -> Option<Timestamp> {
        match self {
            Value::Time(at) => Some(*at),
            _ => None,
        }
    }

    /// The address, if this is an IP address.
    pub fn as_ip(&self) -> Option<IpAddr> {
        match self {
            Value::Ip(ip) => Some(*ip),
            _ => None,
        }
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Value<'a> {
        Value::Str(Cow::Borrowed(text))
    }
}

impl From<String> for Value<'_> {
    fn from(text: String) -> Self {
        Value::Str(Cow::Owned(text))
    }
}

impl From<Timestamp> for Value<'_> {
    fn from(at: Timestamp) -> Self {
        Value::Time(at)
    }
}

impl From<IpAddr> for Value<'_> {
    fn from(ip: IpAddr) -> Self {
        Value::Ip(ip)
    }
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(text) => f.write_str(text),
            Value::Int(number) => write!(f, "{number}"),
            Value::Float(number) => write!(f, "{number}"),
            Value::Time(time) => write!(f, "{time}"),
            Value::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// How a field is read from a `T`: `None` where this one has no value for it.
pub type Getter<T> = for<'a> fn(&'a T) -> Option<Value<'a>>;

/// One field of the vocabulary.
#[derive(Clone, Copy)]
pub struct Field {
    /// The dotted name: ECS where ECS has the field, `vpn.*` where it has none.
    pub name: &'static str,
    /// The storage column name ([`column_name`] of `name`).
    pub column: &'static str,
    /// The type of its values.
    pub ty: FieldType,
    /// The OCSF attribute path (classes 3002 Authentication, 4001 Network Activity, 4002
    /// HTTP Activity), or "" where OCSF has none.
    pub ocsf: &'static str,
    /// What it holds, in a phrase (the crate documentation's table has the same).
    pub description: &'static str,
    /// Reads the field from an event; `None` if no event carries it.
    pub event: Option<Getter<Event>>,
    /// Reads the field from a session snapshot; `None` if sessions do not carry it.
    pub session: Option<Getter<Session>>,
    /// For a field no event and no session carries (alert, audit and join bookkeeping): the
    /// tables that alone hold it. Empty for every other field.
    pub only_in: &'static [&'static str],
}

impl Field {
    /// The value of this field in `event`, if it has one.
    pub fn of_event<'a>(&self, event: &'a Event) -> Option<Value<'a>> {
        self.event.and_then(|get| get(event))
    }

    /// The value of this field in `session`, if it has one.
    pub fn of_session<'a>(&self, session: &'a Session) -> Option<Value<'a>> {
        self.session.and_then(|get| get(session))
    }
}

/// A field is known by its name.
impl PartialEq for Field {
    fn eq(&self, other: &Field) -> bool {
        self.name == other.name
    }
}

impl Eq for Field {}

impl fmt::Debug for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field")
            .field("name", &self.name)
            .field("ty", &self.ty)
            .field("event", &self.event.is_some())
            .field("session", &self.session.is_some())
            .field("only_in", &self.only_in)
            .finish_non_exhaustive()
    }
}

/// The storage column name of a field: dots become underscores, `@timestamp` is `timestamp`.
pub fn column_name(field_name: &str) -> String {
    field_name.trim_start_matches('@').replace('.', "_")
}

/// Looks a field up by its column name (`source_ip` → `source.ip`).
pub fn by_column(column: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|field| field.column == column)
}

/// Looks a field up by its dotted name (`source.ip`).
pub fn by_name(name: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|field| field.name == name)
}

/// Text, borrowed; `None` stays `None`.
fn text<'a>(value: impl Into<Option<&'a str>>) -> Option<Value<'a>> {
    value.into().map(Value::from)
}

/// A count held as `u64`, saturating at `i64::MAX` as the store holds it.
fn count(value: impl Into<Option<u64>>) -> Option<Value<'static>> {
    value
        .into()
        .map(|count| Value::Int(i64::try_from(count).unwrap_or(i64::MAX)))
}

/// The bytes of [`column_name`]`(name)`, computed at compile time for [`Field::column`]; `N`
/// is [`column_len`]`(name)`.
const fn column_bytes<const N: usize>(name: &str) -> [u8; N] {
    let name = name.as_bytes();
    let skip = name.len() - N;
    let mut column = [0; N];
    let mut idx = 0;
    while idx < N {
        column[idx] = match name[skip + idx] {
            b'.' => b'_',
            byte => byte,
        };
        idx += 1;
    }
    column
}

/// The length of [`column_name`]`(name)` for the names of the dictionary (at most one `@`).
const fn column_len(name: &str) -> usize {
    match name.as_bytes() {
        [b'@', ..] => name.len() - 1,
        _ => name.len(),
    }
}

#[cfg(test)]
mod tests;
