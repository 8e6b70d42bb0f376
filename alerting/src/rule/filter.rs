//! Filters: conditions on event fields, as written in a rule's TOML and as run.
//!
//! A filter table maps field names to what their value must be (a string or number: equal;
//! a list: any of; a table with one of `regex`, `cidr`, `not`, `exists`, `gt`, `gte`, `lt`,
//! `lte`), and may also hold three reserved keys, each a list of filter tables of the same
//! shape: `any_of` (at least one holds), `all_of` (every one holds) and `none_of` (none
//! holds). Everything in a table must hold. Tables nest at most [`MAX_DEPTH`] deep, a list
//! has 1 to [`MAX_LIST`] entries, and a filter has at most [`MAX_CONDITIONS`] conditions in
//! all, so that a filter's cost is known when it is loaded.
//!
//! ```toml
//! filter = { "event.action" = "auth-failure", none_of = [
//!     { "user.name" = { regex = "^svc-" } },
//!     { "source.ip" = { cidr = "10.0.0.0/8" } },
//! ] }
//! ```
//!
//! Sigma rules ([`crate::sigma`]) compile to the same tables: Sigma's OR and NOT are
//! `any_of` and `none_of`, its case-insensitive matching is a `(?i)` regex.

use std::collections::BTreeMap;
use std::net::IpAddr;

use model::Event;
use model::fields::{Field, Value};

use super::{REGEX_SIZE_LIMIT, event_field, value_text};

/// How deep filter tables (`any_of`, `all_of`, `none_of`) and `not` conditions nest at most.
pub const MAX_DEPTH: usize = 8;
/// The most entries of one list: values of a field, tables of `any_of`, `all_of`, `none_of`.
pub const MAX_LIST: usize = 1000;
/// The most conditions (on fields) of one filter, nested tables included.
pub const MAX_CONDITIONS: usize = 10_000;

/// Conditions on event fields, all of which must hold, and nested filters: at least one of
/// `any_of` (when there are any), all of `all_of` and none of `none_of`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    conditions: Vec<(&'static Field, Matcher)>,
    any_of: Vec<Filter>,
    all_of: Vec<Filter>,
    none_of: Vec<Filter>,
}

#[derive(Debug, Clone)]
enum Matcher {
    AnyOf(Vec<String>),
    Regex(regex::Regex),
    Cidr(IpAddr, u8),
    Not(Box<Matcher>),
    Exists(bool),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
}

/// The reserved keys of a filter table.
const NESTED: [&str; 3] = ["any_of", "all_of", "none_of"];

impl Filter {
    /// Checks and compiles a filter table; the error names the path to what is wrong
    /// (`none_of[1]: user.name: regex: …`).
    pub fn compile(table: &BTreeMap<String, toml::Value>) -> Result<Filter, String> {
        let mut n_conditions = 0;
        Filter::compile_nested(table.iter(), 1, &mut n_conditions)
    }

    fn compile_nested<'a>(
        table: impl Iterator<Item = (&'a String, &'a toml::Value)>,
        depth: usize,
        n_conditions: &mut usize,
    ) -> Result<Filter, String> {
        if depth > MAX_DEPTH {
            return Err(format!("filters nest more than {MAX_DEPTH} deep"));
        }
        let mut filter = Filter::default();
        for (name, value) in table {
            let name = name.as_str();
            if NESTED.contains(&name) {
                let toml::Value::Array(tables) = value else {
                    return Err(format!("{name} takes a list of filter tables"));
                };
                if tables.is_empty() || tables.len() > MAX_LIST {
                    return Err(format!("{name} must have 1 to {MAX_LIST} filter tables"));
                }
                let nested = tables
                    .iter()
                    .enumerate()
                    .map(|(idx, value)| {
                        let toml::Value::Table(table) = value else {
                            return Err(format!("{name}[{idx}] is not a filter table"));
                        };
                        Filter::compile_nested(table.iter(), depth + 1, n_conditions)
                            .map_err(|why| format!("{name}[{idx}]: {why}"))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                match name {
                    "any_of" => filter.any_of = nested,
                    "all_of" => filter.all_of = nested,
                    _ => filter.none_of = nested,
                }
                continue;
            }
            *n_conditions += 1;
            if *n_conditions > MAX_CONDITIONS {
                return Err(format!("a filter has at most {MAX_CONDITIONS} conditions"));
            }
            let field = event_field(name)?;
            let matcher =
                Matcher::compile(value, depth).map_err(|why| format!("{}: {why}", field.name))?;
            filter.conditions.push((field, matcher));
        }
        Ok(filter)
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.conditions.iter().all(|(field, matcher)| {
            let value = field.event.and_then(|get| get(event));
            matcher.matches(value.as_ref())
        }) && (self.any_of.is_empty() || self.any_of.iter().any(|filter| filter.matches(event)))
            && self.all_of.iter().all(|filter| filter.matches(event))
            && !self.none_of.iter().any(|filter| filter.matches(event))
    }

    /// No condition at all: every event matches.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
            && self.any_of.is_empty()
            && self.all_of.is_empty()
            && self.none_of.is_empty()
    }
}

impl Matcher {
    fn compile(value: &toml::Value, depth: usize) -> Result<Matcher, String> {
        if depth > MAX_DEPTH {
            return Err(format!("conditions nest more than {MAX_DEPTH} deep"));
        }
        match value {
            toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Boolean(_) => {
                Ok(Matcher::AnyOf(vec![scalar(value)?]))
            }
            toml::Value::Array(values) => {
                if values.is_empty() || values.len() > MAX_LIST {
                    return Err(format!("a list must have 1 to {MAX_LIST} values"));
                }
                Ok(Matcher::AnyOf(
                    values.iter().map(scalar).collect::<Result<_, _>>()?,
                ))
            }
            toml::Value::Table(table) => {
                let mut entries = table.iter();
                let (Some((key, inner)), None) = (entries.next(), entries.next()) else {
                    return Err(
                        "a condition table has exactly one of regex, cidr, not, exists, gt, gte, lt, lte"
                            .to_owned(),
                    );
                };
                match (key.as_str(), inner) {
                    ("regex", toml::Value::String(pattern)) => regex::RegexBuilder::new(pattern)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .dfa_size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map(Matcher::Regex)
                        .map_err(|error| format!("regex: {error}")),
                    ("cidr", toml::Value::String(cidr)) => {
                        parse_cidr(cidr).map(|(ip, len)| Matcher::Cidr(ip, len))
                    }
                    ("not", inner) => {
                        Ok(Matcher::Not(Box::new(Matcher::compile(inner, depth + 1)?)))
                    }
                    ("exists", toml::Value::Boolean(exists)) => Ok(Matcher::Exists(*exists)),
                    ("gt", number) => number_of(number).map(Matcher::Gt),
                    ("gte", number) => number_of(number).map(Matcher::Gte),
                    ("lt", number) => number_of(number).map(Matcher::Lt),
                    ("lte", number) => number_of(number).map(Matcher::Lte),
                    (key @ ("regex" | "cidr" | "exists"), _) => Err(format!(
                        "{key} takes {}",
                        if key == "exists" {
                            "true or false"
                        } else {
                            "a string"
                        }
                    )),
                    (key, _) => Err(format!(
                        "`{}` is not a condition (regex = \"…\", cidr = \"…\", not = …, exists = true, gt, gte, lt, lte = n)",
                        key.escape_debug()
                    )),
                }
            }
            toml::Value::Float(_) | toml::Value::Datetime(_) => {
                Err("compare numbers with gt, gte, lt, lte; times are not matched".to_owned())
            }
        }
    }

    fn matches(&self, value: Option<&Value<'_>>) -> bool {
        match self {
            Matcher::Exists(exists) => value.is_some() == *exists,
            Matcher::Not(inner) => !inner.matches(value),
            _ => {
                let Some(value) = value else {
                    return false;
                };
                match self {
                    Matcher::AnyOf(options) => match value {
                        Value::Str(text) => options.iter().any(|option| option == text.as_ref()),
                        other => {
                            let text = value_text(other);
                            options.contains(&text)
                        }
                    },
                    Matcher::Regex(regex) => match value {
                        Value::Str(text) => regex.is_match(text),
                        other => regex.is_match(&value_text(other)),
                    },
                    Matcher::Cidr(network, len) => match value {
                        Value::Ip(ip) => in_cidr(*ip, *network, *len),
                        Value::Str(text) => {
                            text.parse().is_ok_and(|ip| in_cidr(ip, *network, *len))
                        }
                        _ => false,
                    },
                    Matcher::Gt(bound) => number(value).is_some_and(|n| n > *bound),
                    Matcher::Gte(bound) => number(value).is_some_and(|n| n >= *bound),
                    Matcher::Lt(bound) => number(value).is_some_and(|n| n < *bound),
                    Matcher::Lte(bound) => number(value).is_some_and(|n| n <= *bound),
                    Matcher::Exists(_) | Matcher::Not(_) => false,
                }
            }
        }
    }
}

fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err("list values are strings or integers".to_owned()),
    }
}

fn number_of(value: &toml::Value) -> Result<f64, String> {
    match value {
        toml::Value::Integer(n) => Ok(*n as f64),
        toml::Value::Float(x) if x.is_finite() => Ok(*x),
        _ => Err("gt, gte, lt and lte take a number".to_owned()),
    }
}

fn number(value: &Value<'_>) -> Option<f64> {
    match value {
        Value::Int(n) => Some(*n as f64),
        Value::Float(x) => Some(*x),
        Value::Str(text) => text.parse().ok(),
        _ => None,
    }
}

pub fn parse_cidr(text: &str) -> Result<(IpAddr, u8), String> {
    let bad = || {
        format!(
            "`{}` is not an address range like 10.0.0.0/8",
            text.escape_debug()
        )
    };
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, len.parse::<u8>().map_err(|_| bad())?),
        None => (text, if text.contains(':') { 128 } else { 32 }),
    };
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max {
        return Err(bad());
    }
    Ok((ip, len))
}

/// Whether `ip` is in `network/len` (IPv4-mapped IPv6 addresses count as IPv4).
pub fn in_cidr(ip: IpAddr, network: IpAddr, len: u8) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
