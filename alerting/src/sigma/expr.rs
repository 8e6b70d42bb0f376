//! [`Expr`]: a Sigma detection as a boolean expression over field conditions, and its
//! translation into a filter table ([`Expr::to_table`]: AND is a table, OR `any_of`, NOT
//! `none_of`).

use std::collections::BTreeMap;

/// A boolean expression over conditions on tunnelwatch fields.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Every part holds (none: always).
    All(Vec<Expr>),
    /// At least one part holds.
    Any(Vec<Expr>),
    Not(Box<Expr>),
    /// A field's condition, as a filter table writes it (`"x"`, `["x", "y"]`,
    /// `{ regex = "…" }`, …).
    Field(&'static str, toml::Value),
    /// A filter table as it is (a logsource's conditions from the field mapping).
    Table(BTreeMap<String, toml::Value>),
}

/// The reserved keys of filter tables.
const NESTED: [&str; 3] = ["any_of", "all_of", "none_of"];

impl Expr {
    /// AND, flattened: nested ANDs merge, a single part is itself.
    pub fn all(parts: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Expr::All(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            flat.remove(0)
        } else {
            Expr::All(flat)
        }
    }

    /// OR, flattened: nested ORs merge, a single part is itself.
    pub fn any(parts: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(parts.len());
        for part in parts {
            match part {
                Expr::Any(inner) => flat.extend(inner),
                other => flat.push(other),
            }
        }
        if flat.len() == 1 {
            flat.remove(0)
        } else {
            Expr::Any(flat)
        }
    }

    /// NOT; two cancel.
    pub fn negate(expr: Expr) -> Expr {
        match expr {
            Expr::Not(inner) => *inner,
            other => Expr::Not(Box::new(other)),
        }
    }

    /// Roughly how much memory the expression takes: a count of nodes plus the bytes of its
    /// text, so that a condition repeating a large selection can be refused before it grows.
    pub fn weight(&self) -> usize {
        match self {
            Expr::All(parts) | Expr::Any(parts) => {
                1 + parts.iter().map(Expr::weight).sum::<usize>()
            }
            Expr::Not(inner) => 1 + inner.weight(),
            Expr::Field(name, value) => 1 + name.len() + value_weight(value),
            Expr::Table(table) => {
                1 + table
                    .iter()
                    .map(|(key, value)| key.len() + value_weight(value))
                    .sum::<usize>()
            }
        }
    }

    /// The filter table that holds exactly when the expression does.
    pub fn to_table(&self) -> BTreeMap<String, toml::Value> {
        let mut table = BTreeMap::new();
        match self {
            Expr::All(parts) => {
                let mut all_of = Vec::new();
                let mut none_of = Vec::new();
                for part in parts {
                    match part {
                        Expr::Field(name, value) if !table.contains_key(*name) => {
                            table.insert((*name).to_owned(), value.clone());
                        }
                        Expr::Table(fields)
                            if fields.keys().all(|key| {
                                !NESTED.contains(&key.as_str()) && !table.contains_key(key)
                            }) =>
                        {
                            table.extend(fields.clone());
                        }
                        Expr::Not(inner) => none_of.push(inner.to_value()),
                        Expr::Any(options) if !table.contains_key("any_of") => {
                            table.insert(
                                "any_of".to_owned(),
                                toml::Value::Array(options.iter().map(Expr::to_value).collect()),
                            );
                        }
                        other => all_of.push(other.to_value()),
                    }
                }
                if !all_of.is_empty() {
                    table.insert("all_of".to_owned(), toml::Value::Array(all_of));
                }
                if !none_of.is_empty() {
                    table.insert("none_of".to_owned(), toml::Value::Array(none_of));
                }
            }
            Expr::Any(options) => {
                table.insert(
                    "any_of".to_owned(),
                    toml::Value::Array(options.iter().map(Expr::to_value).collect()),
                );
            }
            Expr::Not(inner) => {
                table.insert(
                    "none_of".to_owned(),
                    toml::Value::Array(vec![inner.to_value()]),
                );
            }
            Expr::Field(name, value) => {
                table.insert((*name).to_owned(), value.clone());
            }
            Expr::Table(fields) => table.extend(fields.clone()),
        }
        table
    }

    fn to_value(&self) -> toml::Value {
        toml::Value::Table(self.to_table().into_iter().collect())
    }
}

fn value_weight(value: &toml::Value) -> usize {
    match value {
        toml::Value::String(text) => text.len(),
        toml::Value::Array(values) => values.iter().map(value_weight).sum(),
        toml::Value::Table(table) => table
            .iter()
            .map(|(key, value)| key.len() + value_weight(value))
            .sum(),
        _ => 8,
    }
}
