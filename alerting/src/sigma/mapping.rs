//! [`FieldMapping`]: which tunnelwatch fields Sigma's field names mean, what its logsources
//! (product, service, category) select, and how a rule without correlation alerts. Read from
//! a TOML file ([`FieldMapping::from_toml`]) or built in ([`DEFAULT_MAPPING`]), and checked
//! when it is read: every field exists and every logsource table is a valid filter.

use std::collections::BTreeMap;

use model::fields;
use serde::Deserialize;

use crate::Error;
use crate::rule::{Filter, parse_duration};

/// The built-in mapping ([`FieldMapping::default`]), a mapping file to start one's own from.
pub const DEFAULT_MAPPING: &str = include_str!("default-mapping.toml");

/// Largest mapping file read.
pub const MAX_MAPPING_BYTES: usize = 256 * 1024;

/// Sigma names to tunnelwatch fields, and logsources to conditions.
#[derive(Debug, Clone)]
pub struct FieldMapping {
    fields: BTreeMap<String, Vec<&'static str>>,
    keywords: Option<&'static str>,
    products: BTreeMap<String, BTreeMap<String, toml::Value>>,
    services: BTreeMap<String, BTreeMap<String, toml::Value>>,
    categories: BTreeMap<String, BTreeMap<String, toml::Value>>,
    plain_window: String,
    plain_group_by: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    keywords: Option<String>,
    #[serde(default)]
    plain_rules: PlainRulesFile,
    #[serde(default)]
    fields: BTreeMap<String, toml::Value>,
    #[serde(default)]
    logsource: LogsourceFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainRulesFile {
    #[serde(default = "default_window")]
    window: String,
    #[serde(default)]
    group_by: Vec<String>,
}

impl Default for PlainRulesFile {
    fn default() -> PlainRulesFile {
        PlainRulesFile {
            window: default_window(),
            group_by: Vec::new(),
        }
    }
}

fn default_window() -> String {
    "5m".to_owned()
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsourceFile {
    #[serde(default)]
    product: BTreeMap<String, BTreeMap<String, toml::Value>>,
    #[serde(default)]
    service: BTreeMap<String, BTreeMap<String, toml::Value>>,
    #[serde(default)]
    category: BTreeMap<String, BTreeMap<String, toml::Value>>,
}

impl Default for FieldMapping {
    /// The built-in mapping, [`DEFAULT_MAPPING`].
    fn default() -> FieldMapping {
        // Not input: a unit test reads the built-in mapping.
        FieldMapping::from_toml(DEFAULT_MAPPING).expect("the built-in Sigma mapping is valid")
    }
}

impl FieldMapping {
    /// Reads and checks a mapping file; the error names what is wrong.
    pub fn from_toml(text: &str) -> Result<FieldMapping, Error> {
        let invalid = |why: String| Error::Config(format!("sigma field mapping: {why}"));
        if text.len() > MAX_MAPPING_BYTES {
            return Err(invalid(format!(
                "{} bytes is more than the {MAX_MAPPING_BYTES} a mapping file may have",
                text.len()
            )));
        }
        let file: MappingFile = toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
        let mut fields = BTreeMap::new();
        for (sigma_name, value) in &file.fields {
            let names: Vec<&str> = match value {
                toml::Value::String(name) => vec![name.as_str()],
                toml::Value::Array(names) if !names.is_empty() && names.len() <= 16 => names
                    .iter()
                    .map(|name| name.as_str())
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        invalid(format!(
                            "fields.{sigma_name}: a list of field names is text"
                        ))
                    })?,
                _ => {
                    return Err(invalid(format!(
                        "fields.{sigma_name}: a field name or a list of 1 to 16"
                    )));
                }
            };
            let targets = names
                .into_iter()
                .map(event_field)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|why| invalid(format!("fields.{sigma_name}: {why}")))?;
            fields.insert(sigma_name.clone(), targets);
        }
        let keywords = file
            .keywords
            .as_deref()
            .map(event_field)
            .transpose()
            .map_err(|why| invalid(format!("keywords: {why}")))?;
        parse_duration(&file.plain_rules.window)
            .map_err(|why| invalid(format!("plain_rules.window: {why}")))?;
        for name in &file.plain_rules.group_by {
            event_field(name).map_err(|why| invalid(format!("plain_rules.group_by: {why}")))?;
        }
        for (kind, tables) in [
            ("product", &file.logsource.product),
            ("service", &file.logsource.service),
            ("category", &file.logsource.category),
        ] {
            for (value, table) in tables {
                Filter::compile(table)
                    .map_err(|why| invalid(format!("logsource.{kind}.{value}: {why}")))?;
            }
        }
        let lowercase = |tables: BTreeMap<String, BTreeMap<String, toml::Value>>| {
            tables
                .into_iter()
                .map(|(value, table)| (value.to_lowercase(), table))
                .collect()
        };
        Ok(FieldMapping {
            fields,
            keywords,
            products: lowercase(file.logsource.product),
            services: lowercase(file.logsource.service),
            categories: lowercase(file.logsource.category),
            plain_window: file.plain_rules.window,
            plain_group_by: file.plain_rules.group_by,
        })
    }

    /// The tunnelwatch fields a Sigma field name means: the mapping's, else the name itself
    /// if it is a field of events.
    pub(crate) fn fields_of(&self, sigma_name: &str) -> Result<Vec<&'static str>, String> {
        if let Some(targets) = self.fields.get(sigma_name) {
            return Ok(targets.clone());
        }
        event_field(sigma_name)
            .map(|name| vec![name])
            .map_err(|why| {
                format!(
                    "field `{}` is not in the field mapping and is not a tunnelwatch field ({why})",
                    sigma_name.escape_debug()
                )
            })
    }

    /// The field keyword selections search, if they are supported.
    pub(crate) fn keywords(&self) -> Option<&'static str> {
        self.keywords
    }

    /// The conditions of a logsource value (`kind` is product, service or category).
    pub(crate) fn logsource(
        &self,
        kind: &str,
        value: &str,
    ) -> Result<&BTreeMap<String, toml::Value>, String> {
        let tables = match kind {
            "product" => &self.products,
            "service" => &self.services,
            _ => &self.categories,
        };
        tables.get(&value.to_lowercase()).ok_or_else(|| {
            let known: Vec<&str> = tables.keys().map(String::as_str).collect();
            format!(
                "logsource {kind} `{}` is not in the field mapping (it has: {})",
                value.escape_debug(),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// The window of rules without correlation.
    pub(crate) fn plain_window(&self) -> &str {
        &self.plain_window
    }

    /// The groups of rules without correlation.
    pub(crate) fn plain_group_by(&self) -> &[String] {
        &self.plain_group_by
    }
}

/// The dotted name of a field that events carry.
fn event_field(name: &str) -> Result<&'static str, String> {
    let field = fields::resolve(name).map_err(|error| error.to_string())?;
    if field.event.is_none() {
        return Err(format!(
            "`{}` is not a field of events (it is only in {})",
            field.name,
            field.only_in.join(", ")
        ));
    }
    Ok(field.name)
}
