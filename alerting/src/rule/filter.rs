//! Filters: conditions on event fields, as written in a rule's TOML and as run.

use std::collections::BTreeMap;
use std::net::IpAddr;

use model::Event;
use model::fields::{Field, Value};

use super::{REGEX_SIZE_LIMIT, event_field, value_text};

/// Conditions on event fields, all of which must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    conditions: Vec<(&'static Field, Matcher)>,
}

#[derive(Debug, Clone)]
enum Matcher {
    AnyOf(Vec<String>),
    Regex(regex::Regex),
    Cidr(IpAddr, u8),
    Not(Box<Matcher>),
    Exists(bool),
    Gte(f64),
    Lte(f64),
}

impl Filter {
    pub fn compile(table: &BTreeMap<String, toml::Value>) -> Result<Filter, String> {
        let conditions = table
            .iter()
            .map(|(name, value)| {
                let field = event_field(name)?;
                let matcher =
                    Matcher::compile(value).map_err(|why| format!("{}: {why}", field.name))?;
                Ok((field, matcher))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Filter { conditions })
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.conditions.iter().all(|(field, matcher)| {
            let value = field.event.and_then(|get| get(event));
            matcher.matches(value.as_ref())
        })
    }
}

impl Matcher {
    fn compile(value: &toml::Value) -> Result<Matcher, String> {
        match value {
            toml::Value::String(_) | toml::Value::Integer(_) | toml::Value::Boolean(_) => {
                Ok(Matcher::AnyOf(vec![scalar(value)?]))
            }
            toml::Value::Array(values) => {
                if values.is_empty() || values.len() > 1000 {
                    return Err("a list must have 1 to 1000 values".to_owned());
                }
                Ok(Matcher::AnyOf(
                    values.iter().map(scalar).collect::<Result<_, _>>()?,
                ))
            }
            toml::Value::Table(table) => {
                let mut entries = table.iter();
                let (Some((key, inner)), None) = (entries.next(), entries.next()) else {
                    return Err(
                        "a condition table has exactly one of regex, cidr, not, exists, gte, lte"
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
                    ("not", inner) => Ok(Matcher::Not(Box::new(Matcher::compile(inner)?))),
                    ("exists", toml::Value::Boolean(exists)) => Ok(Matcher::Exists(*exists)),
                    ("gte", number) => number_of(number).map(Matcher::Gte),
                    ("lte", number) => number_of(number).map(Matcher::Lte),
                    (key, _) => Err(format!(
                        "`{}` is not a condition (regex = \"…\", cidr = \"…\", not = …, exists = true, gte = n, lte = n)",
                        key.escape_debug()
                    )),
                }
            }
            toml::Value::Float(_) | toml::Value::Datetime(_) => {
                Err("compare numbers with gte/lte; times are not matched".to_owned())
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
                    Matcher::Gte(bound) => number(value).is_some_and(|n| n >= *bound),
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
        _ => Err("gte and lte take a number".to_owned()),
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
