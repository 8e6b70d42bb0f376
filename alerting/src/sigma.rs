//! Sigma rules compiled onto tunnelwatch's own rule kinds: [`compile`] turns one Sigma YAML
//! file into [`RuleConfig`]s, which are written out as TOML (`rules import-sigma`) or loaded
//! (`sigma_dir`) through the same [`Rule::compile`] as every other rule. A [`FieldMapping`]
//! says which tunnelwatch fields Sigma's field names mean and what a logsource selects.
//!
//! - A **detection rule** becomes a `threshold` rule of threshold 1: its filter is the
//!   logsource's conditions and the detection (`detection.rs`, `condition.rs`), its window
//!   and group_by are the mapping's `[plain_rules]` (built in: `5m`, no group_by). With no
//!   group_by, a rule has one alert at a time that counts its events: grouping by, say,
//!   `user.name` would drop every event without a user, which a Sigma rule does not mean.
//!   The deprecated aggregation `| count(F) by G > N` (with `timeframe`) is a threshold of
//!   N + 1 (`>=`: N) per G, of distinct F when F is given.
//! - A **correlation** (Sigma's correlation rules, in the same file): `event_count` is a
//!   threshold over the OR of the rules it names, `value_count` the same with `distinct`,
//!   `temporal_ordered` of two rules a `sequence` (first, then, within the timespan); a step
//!   may itself be an `event_count` of the same timespan (its count is the step's count).
//!   Conditions are `gte` or `gt`: a rule fires when a count reaches a bound, so `lt`,
//!   `lte`, `eq`, `neq` and ranges are refused. `temporal` (unordered), the value metrics
//!   (`value_sum`, `value_avg`, `value_percentile`) and `aliases` are refused too.
//! - A rule a correlation names (by id or `name`, in the same file) is part of the
//!   correlation, not an alerting rule of its own, unless the correlation says
//!   `generate: true`. Every other rule of the file is one.
//!
//! Rules keep their Sigma `id` (a UUID fits tunnelwatch's ids; without one, the `name` or a
//! slug of the title), `title` (the name, cut to 200 bytes), `description`, `level`
//! (`informational` is `info`) and their `attack.tNNNN` tags (as MITRE ids). `status`,
//! `author`, `references`, `falsepositives`, `fields` and the like are not kept.
//!
//! Anything not supported is an [`Error::Sigma`] that names the rule (its id, else its
//! title) and the feature, when the file is compiled: nothing is half-imported. Input is
//! bounded (`yaml.rs`: size, depth, nodes, no aliases; `condition.rs`: nesting and size).
//!
//! The mapping file's format is that of [`DEFAULT_MAPPING`], the built-in one.

mod condition;
mod correlation;
mod detection;
mod expr;
mod mapping;
mod yaml;

use model::Severity;

use crate::Error;
use crate::rule::{KindConfig, MAX_ID_LEN, Rule, RuleConfig, StepConfig, parse_duration};
use condition::Aggregation;
use correlation::{Correlation, CorrelationKind};
use expr::Expr;
use yaml::Node;

pub use mapping::{DEFAULT_MAPPING, FieldMapping, MAX_MAPPING_BYTES};
pub use yaml::MAX_BYTES as MAX_FILE_BYTES;

/// Most conditions of one detection (a list of conditions is their OR).
const MAX_CONDITIONS: usize = 16;
/// Longest rule name.
const MAX_NAME_BYTES: usize = 200;

/// Compiles the Sigma rules of one YAML file (one or more documents): the alerting rules it
/// makes, each already checked by [`Rule::compile`]. The first rule that cannot be compiled
/// is the error, naming it and why.
pub fn compile(yaml: &str, mapping: &FieldMapping) -> Result<Vec<RuleConfig>, Error> {
    let file_error = |why: String| Error::Sigma {
        rule: "(file)".to_owned(),
        why,
    };
    let nodes = yaml::documents(yaml).map_err(file_error)?;
    if nodes.is_empty() {
        return Err(file_error("the file holds no Sigma rule".to_owned()));
    }
    let documents = nodes
        .iter()
        .enumerate()
        .map(|(idx, node)| Document::read(idx, node, mapping))
        .collect::<Result<Vec<_>, _>>()?;
    let mut references: Vec<Vec<usize>> = vec![Vec::new(); documents.len()];
    let mut referenced = vec![false; documents.len()];
    let mut generated = vec![false; documents.len()];
    for (idx, document) in documents.iter().enumerate() {
        if let Body::Correlation(correlation) = &document.body {
            for reference in &correlation.rules {
                let found = find(&documents, reference).map_err(|why| document.error(why))?;
                // Chains are one step deep, so there are no cycles.
                if let Body::Correlation(named) = &documents[found].body
                    && (found == idx
                        || correlation.kind != CorrelationKind::TemporalOrdered
                        || named.kind != CorrelationKind::EventCount)
                {
                    return Err(document.error(format!(
                        "the correlation names the correlation `{}`: correlations of correlations are supported only as an event_count step of temporal_ordered",
                        documents[found].label
                    )));
                }
                referenced[found] = true;
                generated[found] |= document.meta.generate;
                references[idx].push(found);
            }
        }
    }
    let mut rules: Vec<RuleConfig> = Vec::new();
    for (idx, document) in documents.iter().enumerate() {
        if referenced[idx] && !generated[idx] {
            continue;
        }
        let config = document
            .rule_config(&references[idx], &documents, mapping)
            .map_err(|why| document.error(why))?;
        // The checks of every rule: the same words as for a rule written in TOML.
        Rule::compile(&config).map_err(|error| {
            document.error(match error {
                Error::Rule { why, .. } => why,
                other => other.to_string(),
            })
        })?;
        if rules.iter().any(|rule| rule.id == config.id) {
            return Err(document.error(format!("the id `{}` is used twice in the file", config.id)));
        }
        rules.push(config);
    }
    Ok(rules)
}

/// One YAML document: a detection rule or a correlation.
struct Document {
    /// How errors name it: its id, else its title, else its place in the file.
    label: String,
    meta: Meta,
    body: Body,
}

struct Meta {
    id: Option<String>,
    name: Option<String>,
    title: String,
    description: String,
    severity: Option<Severity>,
    mitre: Vec<String>,
    /// A correlation's `generate`: the rules it names are alerting rules too.
    generate: bool,
}

enum Body {
    Detection {
        expr: Expr,
        aggregation: Option<Aggregation>,
        timeframe: Option<String>,
    },
    Correlation(Correlation),
}

impl Document {
    fn read(idx: usize, node: &Node, mapping: &FieldMapping) -> Result<Document, Error> {
        let label = [node.get("id"), node.get("title")]
            .into_iter()
            .flatten()
            .find_map(Node::text)
            .map_or_else(
                || format!("(document {})", idx + 1),
                |text| {
                    text.chars()
                        .take(80)
                        .collect::<String>()
                        .escape_debug()
                        .to_string()
                },
            );
        let error = |why: String| Error::Sigma {
            rule: label.clone(),
            why,
        };
        if !matches!(node, Node::Map(_)) {
            return Err(error(format!(
                "the document is {}; a Sigma rule is a map",
                node.kind()
            )));
        }
        let mut meta = Meta::read(node).map_err(error)?;
        let body = match (node.get("detection"), node.get("correlation")) {
            (Some(detection), None) => read_detection(node, detection, mapping),
            (None, Some(correlation)) => {
                correlation::read(correlation, mapping).map(Body::Correlation)
            }
            (Some(_), Some(_)) => Err("a rule has detection or correlation, not both".to_owned()),
            (None, None) if node.get("filter").is_some() => {
                Err("Sigma filters (documents with `filter:`) are not supported".to_owned())
            }
            (None, None) => Err("the rule has neither detection nor correlation".to_owned()),
        }
        .map_err(error)?;
        let generate_inside = node
            .get("correlation")
            .and_then(|correlation| correlation.get("generate"))
            .is_some_and(|generate| {
                matches!(generate, Node::Scalar(scalar) if scalar.as_bool() == Some(true))
            });
        meta.generate |= generate_inside;
        Ok(Document { label, meta, body })
    }

    fn error(&self, why: String) -> Error {
        Error::Sigma {
            rule: self.label.clone(),
            why,
        }
    }

    /// The alerting rule this document is.
    fn rule_config(
        &self,
        references: &[usize],
        documents: &[Document],
        mapping: &FieldMapping,
    ) -> Result<RuleConfig, String> {
        let (group_by, kind) = match &self.body {
            Body::Detection {
                expr,
                aggregation: None,
                ..
            } => (
                mapping.plain_group_by().to_vec(),
                KindConfig::Threshold {
                    filter: expr.to_table(),
                    window: mapping.plain_window().to_owned(),
                    threshold: 1,
                    distinct: None,
                },
            ),
            Body::Detection {
                expr,
                aggregation: Some(aggregation),
                timeframe,
            } => {
                let window = timeframe.clone().ok_or_else(|| {
                    "an aggregation (`| count() …`) needs a `timeframe` in the detection".to_owned()
                })?;
                parse_duration(&window).map_err(|why| format!("timeframe: {why}"))?;
                let group_by = aggregation
                    .group_by
                    .iter()
                    .map(|name| one_field(mapping, name))
                    .collect::<Result<Vec<_>, _>>()?;
                let distinct = aggregation
                    .field
                    .as_deref()
                    .map(|name| one_field(mapping, name))
                    .transpose()?;
                (
                    group_by,
                    KindConfig::Threshold {
                        filter: expr.to_table(),
                        window,
                        threshold: aggregation.threshold,
                        distinct,
                    },
                )
            }
            Body::Correlation(correlation) => {
                let kind = match correlation.kind {
                    CorrelationKind::EventCount | CorrelationKind::ValueCount => {
                        let filter = references
                            .iter()
                            .map(|idx| documents[*idx].base_expr())
                            .collect::<Result<Vec<_>, _>>()?;
                        KindConfig::Threshold {
                            filter: Expr::any(filter).to_table(),
                            window: correlation.timespan.clone(),
                            threshold: correlation.threshold,
                            distinct: correlation.field.clone(),
                        }
                    }
                    CorrelationKind::TemporalOrdered => {
                        let [first, then] = references else {
                            return Err(format!(
                                "temporal_ordered over {} rules is not supported (a sequence has two steps)",
                                references.len()
                            ));
                        };
                        KindConfig::Sequence {
                            first: documents[*first].step(&correlation.timespan, documents)?,
                            then: documents[*then].step(&correlation.timespan, documents)?,
                            within: correlation.timespan.clone(),
                            absent: false,
                        }
                    }
                };
                (correlation.group_by.clone(), kind)
            }
        };
        Ok(RuleConfig {
            id: self.meta.rule_id()?,
            name: cut(&self.meta.title, MAX_NAME_BYTES),
            severity: self.meta.severity.unwrap_or(Severity::Medium),
            description: self.meta.description.clone(),
            mitre: self.meta.mitre.clone(),
            group_by,
            enabled: true,
            playbook: None,
            resolve_after: None,
            kind,
        })
    }

    /// The expression of a detection rule a correlation names.
    fn base_expr(&self) -> Result<Expr, String> {
        match &self.body {
            Body::Detection {
                expr,
                aggregation: None,
                ..
            } => Ok(expr.clone()),
            Body::Detection { .. } => Err(format!(
                "the rule `{}` that the correlation names has an aggregation (`| count()`), which a correlated rule cannot have",
                self.label
            )),
            Body::Correlation(_) => Err(format!(
                "the correlation names the correlation `{}`: correlations of correlations are supported only as an event_count step of temporal_ordered",
                self.label
            )),
        }
    }

    /// A step of a temporal_ordered correlation: a detection rule (once) or an event_count
    /// correlation of the same timespan (its count).
    fn step(&self, timespan: &str, documents: &[Document]) -> Result<StepConfig, String> {
        match &self.body {
            Body::Detection { .. } => Ok(StepConfig {
                filter: self.base_expr()?.to_table(),
                count: 1,
            }),
            Body::Correlation(correlation) if correlation.kind == CorrelationKind::EventCount => {
                if parse_duration(&correlation.timespan) != parse_duration(timespan) {
                    return Err(format!(
                        "the step `{}` counts over {} and the sequence spans {}: they must be the same",
                        self.label, correlation.timespan, timespan
                    ));
                }
                let filter = correlation
                    .rules
                    .iter()
                    .map(|reference| {
                        let idx = find(documents, reference)?;
                        documents[idx].base_expr()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(StepConfig {
                    filter: Expr::any(filter).to_table(),
                    count: correlation.threshold,
                })
            }
            Body::Correlation(_) => Err(format!(
                "the step `{}` of temporal_ordered is a correlation other than event_count, which is not supported",
                self.label
            )),
        }
    }
}

impl Meta {
    fn read(node: &Node) -> Result<Meta, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            match node.get(key) {
                None => Ok(None),
                Some(value) if value.is_null() => Ok(None),
                Some(value) => value
                    .text()
                    .map(|text| Some(text.to_owned()))
                    .ok_or_else(|| format!("`{key}` is {}; it is text", value.kind())),
            }
        };
        let title = text("title")?
            .filter(|title| !title.trim().is_empty())
            .ok_or_else(|| "the title is missing (it is mandatory)".to_owned())?;
        let severity = match text("level")?.as_deref() {
            None => None,
            Some("informational") => Some(Severity::Info),
            Some("low") => Some(Severity::Low),
            Some("medium") => Some(Severity::Medium),
            Some("high") => Some(Severity::High),
            Some("critical") => Some(Severity::Critical),
            Some(other) => {
                return Err(format!(
                    "level `{}` is not informational, low, medium, high or critical",
                    other.escape_debug()
                ));
            }
        };
        let mut mitre: Vec<String> = Vec::new();
        match node.get("tags") {
            None => {}
            Some(value) if value.is_null() => {}
            Some(Node::List(tags)) => {
                for tag in tags {
                    let tag = tag
                        .text()
                        .ok_or_else(|| format!("a tag is {}; tags are text", tag.kind()))?;
                    if let Some(technique) = technique(tag)
                        && !mitre.contains(&technique)
                    {
                        mitre.push(technique);
                    }
                }
            }
            Some(other) => return Err(format!("`tags` is {}; it is a list", other.kind())),
        }
        let generate = match node.get("generate") {
            None => false,
            Some(Node::Scalar(scalar)) if scalar.as_bool().is_some() => {
                scalar.as_bool() == Some(true)
            }
            Some(other) => {
                return Err(format!(
                    "`generate` is {}; it is true or false",
                    other.kind()
                ));
            }
        };
        Ok(Meta {
            id: text("id")?,
            name: text("name")?,
            title,
            description: text("description")?.unwrap_or_default(),
            severity,
            mitre,
            generate,
        })
    }

    /// The tunnelwatch id: the Sigma id, else the name, else a slug of the title.
    fn rule_id(&self) -> Result<String, String> {
        let valid = |id: &str| {
            !id.is_empty()
                && id.len() <= MAX_ID_LEN
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if let Some(id) = &self.id {
            if valid(id) {
                return Ok(id.clone());
            }
            return Err(format!(
                "the id `{}` is not 1 to {MAX_ID_LEN} characters of a-z, 0-9, `-`, `_`, `.`",
                id.chars().take(80).collect::<String>().escape_debug()
            ));
        }
        if let Some(name) = &self.name
            && valid(name)
        {
            return Ok(name.clone());
        }
        let mut slug = String::new();
        for c in self.title.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        let slug: String = slug.chars().take(MAX_ID_LEN).collect();
        let slug = slug.trim_end_matches('-');
        if slug.is_empty() {
            return Err("the rule has no id, and its title makes none".to_owned());
        }
        Ok(slug.to_owned())
    }
}

/// `attack.t1110.003` → `T1110.003`; other tags (tactics, CVEs, …) are not techniques.
fn technique(tag: &str) -> Option<String> {
    let id = tag.strip_prefix("attack.t")?;
    let mut parts = id.split('.');
    let technique = parts.next()?;
    let sub = parts.next();
    let digits = |text: &str, n: usize| text.len() == n && text.chars().all(|c| c.is_ascii_digit());
    if parts.next().is_some() || !digits(technique, 4) || !sub.is_none_or(|sub| digits(sub, 3)) {
        return None;
    }
    Some(format!("T{id}"))
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The one tunnelwatch field a Sigma name (of group-by or a counted field) means.
fn one_field(mapping: &FieldMapping, name: &str) -> Result<String, String> {
    match mapping.fields_of(name)?.as_slice() {
        [one] => Ok((*one).to_owned()),
        _ => Err(format!(
            "`{}` maps to several fields; grouping and counting need one",
            name.escape_debug()
        )),
    }
}

/// The document a correlation names, by id or name.
fn find(documents: &[Document], reference: &str) -> Result<usize, String> {
    let found: Vec<usize> = documents
        .iter()
        .enumerate()
        .filter(|(_, document)| {
            document.meta.id.as_deref() == Some(reference)
                || document.meta.name.as_deref() == Some(reference)
        })
        .map(|(idx, _)| idx)
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "the correlation names `{}`, which is no rule of this file (by id or name)",
            reference
                .chars()
                .take(80)
                .collect::<String>()
                .escape_debug()
        )),
        _ => Err(format!(
            "the correlation names `{}`, which more than one rule of this file is",
            reference.escape_debug()
        )),
    }
}

/// A detection rule: its logsource's conditions and its detection.
fn read_detection(
    document: &Node,
    detection: &Node,
    mapping: &FieldMapping,
) -> Result<Body, String> {
    let logsource = logsource(document.get("logsource"), mapping)?;
    let Node::Map(entries) = detection else {
        return Err(format!("detection is {}; it is a map", detection.kind()));
    };
    let mut identifiers: Vec<(String, Expr)> = Vec::new();
    let mut conditions: Option<&Node> = None;
    let mut timeframe = None;
    for (key, value) in entries {
        match key.as_str() {
            "condition" => conditions = Some(value),
            "timeframe" => {
                timeframe = Some(
                    value
                        .text()
                        .ok_or_else(|| "timeframe is not text".to_owned())?
                        .to_owned(),
                );
            }
            name => {
                let expr = detection::selection(value, mapping).map_err(|why| {
                    format!(
                        "detection `{}`: {why}",
                        name.chars().take(64).collect::<String>().escape_debug()
                    )
                })?;
                identifiers.push((name.to_owned(), expr));
            }
        }
    }
    let conditions: Vec<&str> = match conditions {
        None => return Err("the detection has no condition".to_owned()),
        Some(Node::List(items)) if !items.is_empty() && items.len() <= MAX_CONDITIONS => items
            .iter()
            .map(|item| {
                item.text()
                    .ok_or_else(|| "a condition is not text".to_owned())
            })
            .collect::<Result<_, _>>()?,
        Some(Node::List(_)) => {
            return Err(format!("a list of 1 to {MAX_CONDITIONS} conditions"));
        }
        Some(node) => vec![
            node.text()
                .ok_or_else(|| format!("the condition is {}; it is text", node.kind()))?,
        ],
    };
    let mut aggregation = None;
    let mut parts = Vec::new();
    for text in &conditions {
        let (expression, aggregated) = match text.split_once('|') {
            Some((expression, aggregated)) => (expression, Some(aggregated)),
            None => (*text, None),
        };
        if let Some(aggregated) = aggregated {
            if conditions.len() > 1 {
                return Err("an aggregation in a list of conditions is not supported".to_owned());
            }
            aggregation = Some(condition::aggregation(aggregated)?);
        }
        parts.push(condition::parse(expression, &identifiers)?);
    }
    Ok(Body::Detection {
        expr: Expr::all(vec![logsource, Expr::any(parts)]),
        aggregation,
        timeframe,
    })
}

/// The conditions of a rule's logsource, from the field mapping.
fn logsource(node: Option<&Node>, mapping: &FieldMapping) -> Result<Expr, String> {
    let Some(node) = node else {
        return Err("the logsource is missing (it is mandatory)".to_owned());
    };
    let Node::Map(entries) = node else {
        return Err(format!("logsource is {}; it is a map", node.kind()));
    };
    let mut parts = Vec::new();
    for (key, value) in entries {
        match key.as_str() {
            kind @ ("product" | "service" | "category") => {
                let Some(text) = value.text() else {
                    return Err(format!("logsource {kind} is {}; it is text", value.kind()));
                };
                let table = mapping.logsource(kind, text)?;
                if !table.is_empty() {
                    parts.push(Expr::Table(table.clone()));
                }
            }
            "definition" => {}
            other => {
                return Err(format!(
                    "logsource `{}` is not supported (product, service, category)",
                    other.chars().take(64).collect::<String>().escape_debug()
                ));
            }
        }
    }
    Ok(Expr::all(parts))
}

#[cfg(test)]
mod tests;
