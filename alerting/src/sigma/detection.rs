//! Search identifiers (Sigma's selections) to [`Expr`]s: a map is the AND of its fields, a
//! list of maps the OR of the maps, a list of plain values a keyword (full-text) search; a
//! field's list of values is their OR (AND with `all`).
//!
//! Values match as Sigma says: case-insensitively unless `cased`, whole unless `contains`,
//! `startswith` or `endswith`, with `*` and `?` as wildcards (`\` escapes them). A value
//! that needs neither case folding nor wildcards is an exact value of the filter; any other
//! is a `(?i)` regex of the escaped text. `null` is "the field is missing". The modifiers
//! `re` (with `i`, `m`, `s`), `cidr`, `gt`, `gte`, `lt`, `lte`, `exists`, `cased`, `neq` and
//! `all` are supported; the encodings (`base64`, `base64offset`, `utf16*`, `wide`),
//! `windash`, `expand`, `fieldref` and the time modifiers are refused by name.

use super::expr::Expr;
use super::mapping::FieldMapping;
use super::yaml::{Node, Scalar};
use crate::rule::{REGEX_SIZE_LIMIT, parse_cidr};

/// Most values of one field, and most maps of one selection list.
pub const MAX_VALUES: usize = 1000;

/// Modifiers that Sigma defines and tunnelwatch does not support.
const UNSUPPORTED: &[&str] = &[
    "windash",
    "base64",
    "base64offset",
    "utf16",
    "utf16le",
    "utf16be",
    "wide",
    "expand",
    "fieldref",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
];

/// The expression of one search identifier.
pub fn selection(node: &Node, mapping: &FieldMapping) -> Result<Expr, String> {
    match node {
        Node::Map(entries) => map_selection(entries, mapping),
        Node::List(items) if items.is_empty() => Err("an empty list".to_owned()),
        Node::List(items) if items.len() > MAX_VALUES => {
            Err(format!("more than {MAX_VALUES} entries"))
        }
        Node::List(items) => {
            let maps: Vec<&Vec<(String, Node)>> = items
                .iter()
                .filter_map(|item| match item {
                    Node::Map(entries) => Some(entries),
                    _ => None,
                })
                .collect();
            if maps.len() == items.len() {
                let parts = maps
                    .into_iter()
                    .enumerate()
                    .map(|(idx, entries)| {
                        map_selection(entries, mapping).map_err(|why| format!("[{idx}]: {why}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Expr::any(parts))
            } else if maps.is_empty() {
                condition("", node, mapping)
            } else {
                Err("mixes maps and plain values (a list holds maps, or keywords)".to_owned())
            }
        }
        Node::Scalar(_) => Err(format!(
            "{}; a search identifier is a map or a list",
            node.kind()
        )),
    }
}

fn map_selection(entries: &[(String, Node)], mapping: &FieldMapping) -> Result<Expr, String> {
    if entries.is_empty() {
        return Err("an empty map".to_owned());
    }
    let parts = entries
        .iter()
        .map(|(key, value)| {
            condition(key, value, mapping).map_err(|why| format!("`{}`: {why}", key.escape_debug()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Expr::all(parts))
}

/// Where a text value must be found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Position {
    Whole,
    Contains,
    StartsWith,
    EndsWith,
}

/// How a field's values are matched.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ValueKind {
    Text(Position),
    Regex,
    Cidr,
    Compare(&'static str),
    Exists,
}

/// The modifiers of one key (`CommandLine|contains|all`).
#[derive(Debug)]
struct Modifiers {
    kind: ValueKind,
    /// The modifier that set `kind`, for messages.
    kind_name: Option<String>,
    all: bool,
    cased: bool,
    neq: bool,
    regex_flags: String,
}

impl Modifiers {
    fn parse<'a>(names: impl Iterator<Item = &'a str>) -> Result<Modifiers, String> {
        let mut modifiers = Modifiers {
            kind: ValueKind::Text(Position::Whole),
            kind_name: None,
            all: false,
            cased: false,
            neq: false,
            regex_flags: String::new(),
        };
        for name in names {
            let kind = match name {
                "all" => {
                    modifiers.all = true;
                    continue;
                }
                "cased" => {
                    modifiers.cased = true;
                    continue;
                }
                "neq" => {
                    modifiers.neq = true;
                    continue;
                }
                "i" | "m" | "s" => {
                    if modifiers.kind != ValueKind::Regex {
                        return Err(format!("the modifier `{name}` only follows `re`"));
                    }
                    if !modifiers.regex_flags.contains(name) {
                        modifiers.regex_flags.push_str(name);
                    }
                    continue;
                }
                "contains" => ValueKind::Text(Position::Contains),
                "startswith" => ValueKind::Text(Position::StartsWith),
                "endswith" => ValueKind::Text(Position::EndsWith),
                "re" => ValueKind::Regex,
                "cidr" => ValueKind::Cidr,
                "gt" => ValueKind::Compare("gt"),
                "gte" => ValueKind::Compare("gte"),
                "lt" => ValueKind::Compare("lt"),
                "lte" => ValueKind::Compare("lte"),
                "exists" => ValueKind::Exists,
                unsupported if UNSUPPORTED.contains(&unsupported) => {
                    return Err(format!("the modifier `{unsupported}` is not supported"));
                }
                "" => return Err("an empty modifier (`||`)".to_owned()),
                unknown => {
                    return Err(format!(
                        "unknown modifier `{}`",
                        unknown.chars().take(64).collect::<String>().escape_debug()
                    ));
                }
            };
            if let Some(previous) = &modifiers.kind_name {
                return Err(format!(
                    "the modifiers `{previous}` and `{name}` do not combine"
                ));
            }
            modifiers.kind = kind;
            modifiers.kind_name = Some(name.to_owned());
        }
        Ok(modifiers)
    }
}

/// The expression of one `field|modifiers: value(s)` (the field is empty for keywords).
fn condition(key: &str, value: &Node, mapping: &FieldMapping) -> Result<Expr, String> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mut modifiers = Modifiers::parse(parts)?;
    let targets: Vec<&'static str> = if field.is_empty() {
        let Some(keywords) = mapping.keywords() else {
            return Err("keyword (full-text) selections are not supported: the field mapping names no `keywords` field".to_owned());
        };
        // A keyword is found anywhere in the text.
        if modifiers.kind == ValueKind::Text(Position::Whole) {
            modifiers.kind = ValueKind::Text(Position::Contains);
        }
        vec![keywords]
    } else {
        mapping.fields_of(field)?
    };
    let values: Vec<&Scalar> = match value {
        Node::Scalar(scalar) => vec![scalar],
        Node::List(items) if items.is_empty() => return Err("an empty list of values".to_owned()),
        Node::List(items) if items.len() > MAX_VALUES => {
            return Err(format!("more than {MAX_VALUES} values"));
        }
        Node::List(items) => items
            .iter()
            .map(|item| match item {
                Node::Scalar(scalar) => Ok(scalar),
                other => Err(format!(
                    "a value is {}; values are text or numbers",
                    other.kind()
                )),
            })
            .collect::<Result<_, _>>()?,
        Node::Map(_) => return Err("the value is a map; values are text or numbers".to_owned()),
    };
    let on_targets = |make: &dyn Fn(&'static str) -> Expr| {
        Expr::any(targets.iter().map(|target| make(target)).collect())
    };
    if values.iter().any(|value| value.is_null()) {
        if values.len() > 1 {
            return Err("null cannot be one of a list of values".to_owned());
        }
        if modifiers.kind_name.is_some() || modifiers.all {
            return Err("null takes no modifier".to_owned());
        }
        let missing = on_targets(&|target| Expr::Field(target, condition_table("exists", false)));
        return Ok(if modifiers.neq {
            Expr::negate(missing)
        } else {
            missing
        });
    }
    let per_value = |make: &dyn Fn(&'static str, &Scalar) -> Result<Expr, String>| {
        let parts = values
            .iter()
            .map(|value| {
                let parts = targets
                    .iter()
                    .map(|target| make(target, value))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Expr::any(parts))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok::<_, String>(if modifiers.all {
            Expr::all(parts)
        } else {
            Expr::any(parts)
        })
    };
    let positive = match modifiers.kind {
        ValueKind::Exists => {
            let [value] = values.as_slice() else {
                return Err("`exists` takes true or false".to_owned());
            };
            let exists = value
                .as_bool()
                .ok_or_else(|| "`exists` takes true or false".to_owned())?;
            on_targets(&|target| Expr::Field(target, condition_table("exists", exists)))
        }
        ValueKind::Compare(op) => per_value(&|target, value| {
            let text = value.text.trim();
            let number = match text.parse::<i64>() {
                Ok(integer) => toml::Value::Integer(integer),
                Err(_) => match text.parse::<f64>() {
                    Ok(float) if float.is_finite() => toml::Value::Float(float),
                    _ => {
                        return Err(format!(
                            "`{op}` takes a number, not `{}`",
                            value.text.escape_debug()
                        ));
                    }
                },
            };
            Ok(Expr::Field(target, condition_table(op, number)))
        })?,
        ValueKind::Cidr => per_value(&|target, value| {
            parse_cidr(&value.text)?;
            Ok(Expr::Field(
                target,
                condition_table("cidr", value.text.as_str()),
            ))
        })?,
        ValueKind::Regex => per_value(&|target, value| {
            let pattern = if modifiers.regex_flags.is_empty() {
                value.text.clone()
            } else {
                format!("(?{}){}", modifiers.regex_flags, value.text)
            };
            check_regex(&pattern)?;
            Ok(Expr::Field(target, condition_table("regex", pattern)))
        })?,
        ValueKind::Text(position) => {
            let patterns: Vec<Pattern> = values
                .iter()
                .map(|value| Pattern::new(&value.text, position))
                .collect();
            if modifiers.all {
                let parts = patterns
                    .iter()
                    .map(|pattern| {
                        text_condition(&targets, std::slice::from_ref(pattern), modifiers.cased)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Expr::all(parts)
            } else {
                text_condition(&targets, &patterns, modifiers.cased)?
            }
        }
    };
    Ok(if modifiers.neq {
        Expr::negate(positive)
    } else {
        positive
    })
}

/// `{ key = value }`, a condition table of a filter.
fn condition_table(key: &str, value: impl Into<toml::Value>) -> toml::Value {
    let mut table = toml::Table::new();
    table.insert(key.to_owned(), value.into());
    toml::Value::Table(table)
}

/// One text value: the literal text if it has no wildcard and is matched whole, and the
/// regex that matches it.
#[derive(Debug)]
struct Pattern {
    literal: Option<String>,
    regex: String,
}

impl Pattern {
    fn new(text: &str, position: Position) -> Pattern {
        let mut literal = String::new();
        let mut regex = String::new();
        if matches!(position, Position::Whole | Position::StartsWith) {
            regex.push('^');
        }
        let mut wildcard = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let plain = match c {
                '\\' => match chars.peek() {
                    Some(&next @ ('*' | '?' | '\\')) => {
                        chars.next();
                        next
                    }
                    _ => '\\',
                },
                '*' => {
                    wildcard = true;
                    regex.push_str(".*");
                    continue;
                }
                '?' => {
                    wildcard = true;
                    regex.push('.');
                    continue;
                }
                other => other,
            };
            literal.push(plain);
            regex.push_str(&regex::escape(plain.encode_utf8(&mut [0; 4])));
        }
        if matches!(position, Position::Whole | Position::EndsWith) {
            regex.push('$');
        }
        Pattern {
            literal: (!wildcard && position == Position::Whole).then_some(literal),
            regex,
        }
    }
}

/// The condition that a target holds one of `patterns`: exact values when case cannot
/// matter, else one regex.
fn text_condition(
    targets: &[&'static str],
    patterns: &[Pattern],
    cased: bool,
) -> Result<Expr, String> {
    let literals: Option<Vec<&String>> = patterns
        .iter()
        .map(|pattern| pattern.literal.as_ref())
        .collect();
    let value = match literals {
        Some(literals)
            if cased
                || literals
                    .iter()
                    .all(|text| !text.chars().any(|c| c.is_lowercase() || c.is_uppercase())) =>
        {
            match literals.as_slice() {
                [one] => toml::Value::String((*one).clone()),
                many => toml::Value::Array(
                    many.iter()
                        .map(|text| toml::Value::String((*text).clone()))
                        .collect(),
                ),
            }
        }
        _ => {
            let flags = if cased { "(?s)" } else { "(?is)" };
            let regex = match patterns {
                [one] => format!("{flags}{}", one.regex),
                many => format!(
                    "{flags}(?:{})",
                    many.iter()
                        .map(|pattern| pattern.regex.as_str())
                        .collect::<Vec<_>>()
                        .join("|")
                ),
            };
            check_regex(&regex)?;
            condition_table("regex", regex)
        }
    };
    Ok(Expr::any(
        targets
            .iter()
            .map(|target| Expr::Field(target, value.clone()))
            .collect(),
    ))
}

/// A regex compiles within the limits rules have.
fn check_regex(pattern: &str) -> Result<(), String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|error| format!("regex: {error}"))
}
