//! Sigma correlation sections (`correlation:`) read into [`Correlation`]s: the type, the
//! rules named, group-by and the counted field mapped to tunnelwatch fields, the timespan
//! and the count that fires. What tunnelwatch cannot run is refused here, by name.

use super::mapping::FieldMapping;
use super::one_field;
use super::yaml::Node;
use crate::rule::parse_duration;

/// Most rules one correlation names.
const MAX_CORRELATED: usize = 100;

/// The correlation types tunnelwatch runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CorrelationKind {
    EventCount,
    ValueCount,
    TemporalOrdered,
}

/// A correlation section, checked.
pub struct Correlation {
    pub kind: CorrelationKind,
    /// The ids or names of the rules it correlates.
    pub rules: Vec<String>,
    /// tunnelwatch field names.
    pub group_by: Vec<String>,
    pub timespan: String,
    /// event_count and value_count: the count that fires.
    pub threshold: u64,
    /// value_count: the tunnelwatch field whose distinct values count.
    pub field: Option<String>,
}

/// Reads and checks a correlation section.
pub fn read(node: &Node, mapping: &FieldMapping) -> Result<Correlation, String> {
    let Node::Map(entries) = node else {
        return Err(format!("correlation is {}; it is a map", node.kind()));
    };
    for (key, _) in entries {
        match key.as_str() {
            "type" | "rules" | "group-by" | "timespan" | "condition" | "generate" => {}
            "aliases" => return Err("correlation aliases are not supported".to_owned()),
            other => {
                return Err(format!(
                    "correlation `{}` is not supported",
                    other.chars().take(64).collect::<String>().escape_debug()
                ));
            }
        }
    }
    let kind = match node.get("type").and_then(Node::text) {
        Some("event_count") => CorrelationKind::EventCount,
        Some("value_count") => CorrelationKind::ValueCount,
        Some("temporal_ordered") => CorrelationKind::TemporalOrdered,
        Some("temporal") => {
            return Err(
                "temporal (unordered) correlations are not supported: tunnelwatch sequences are ordered (temporal_ordered)"
                    .to_owned(),
            );
        }
        Some(other @ ("value_sum" | "value_avg" | "value_percentile")) => {
            return Err(format!("the correlation type {other} is not supported"));
        }
        Some(other) => {
            return Err(format!(
                "unknown correlation type `{}`",
                other.chars().take(64).collect::<String>().escape_debug()
            ));
        }
        None => return Err("the correlation has no type".to_owned()),
    };
    let rules: Vec<String> = match node.get("rules") {
        Some(Node::List(items)) if !items.is_empty() && items.len() <= MAX_CORRELATED => items
            .iter()
            .map(|item| {
                item.text()
                    .map(str::to_owned)
                    .ok_or_else(|| "a rule a correlation names is text".to_owned())
            })
            .collect::<Result<_, _>>()?,
        Some(Node::Scalar(_)) => vec![
            node.get("rules")
                .and_then(Node::text)
                .ok_or_else(|| "the correlation names no rules".to_owned())?
                .to_owned(),
        ],
        _ => {
            return Err(format!(
                "the correlation names 1 to {MAX_CORRELATED} rules in `rules`"
            ));
        }
    };
    if kind == CorrelationKind::TemporalOrdered && rules.len() != 2 {
        return Err(format!(
            "temporal_ordered over {} rules is not supported (a sequence has two steps)",
            rules.len()
        ));
    }
    let group_by = match node.get("group-by") {
        None => Vec::new(),
        Some(value) if value.is_null() => Vec::new(),
        Some(Node::List(items)) => items
            .iter()
            .map(|item| {
                let name = item
                    .text()
                    .ok_or_else(|| "a group-by field is text".to_owned())?;
                one_field(mapping, name).map_err(|why| format!("group-by: {why}"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("group-by is {}; it is a list", other.kind())),
    };
    let timespan = node
        .get("timespan")
        .and_then(Node::text)
        .ok_or_else(|| "the correlation has no timespan".to_owned())?
        .to_owned();
    parse_duration(&timespan).map_err(|why| format!("timespan: {why}"))?;
    let (threshold, field) = correlation_condition(kind, node.get("condition"), rules.len())?;
    let field = field
        .map(|name| one_field(mapping, &name).map_err(|why| format!("condition field: {why}")))
        .transpose()?;
    Ok(Correlation {
        kind,
        rules,
        group_by,
        timespan,
        threshold,
        field,
    })
}

/// A correlation's `condition`: the count that fires (`gte: N`, `gt: N`) and, for
/// value_count, the field counted.
fn correlation_condition(
    kind: CorrelationKind,
    condition: Option<&Node>,
    n_rules: usize,
) -> Result<(u64, Option<String>), String> {
    let entries = match condition {
        None if kind == CorrelationKind::TemporalOrdered => return Ok((1, None)),
        None => return Err("the correlation has no condition (such as `gte: 10`)".to_owned()),
        Some(Node::Map(entries)) => entries,
        Some(other) => return Err(format!("the condition is {}; it is a map", other.kind())),
    };
    let mut bound: Option<u64> = None;
    let mut field = None;
    for (key, value) in entries {
        match key.as_str() {
            operator @ ("gte" | "gt") => {
                if bound.is_some() {
                    return Err("a range in the condition is not supported".to_owned());
                }
                let n: u64 = value
                    .text()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| format!("`{operator}` takes a whole number"))?;
                bound = Some(if operator == "gt" {
                    n.saturating_add(1)
                } else {
                    n
                });
            }
            operator @ ("lt" | "lte" | "eq" | "neq") => {
                return Err(format!(
                    "the condition `{operator}` is not supported: a rule fires when a count reaches a bound (gte, gt)"
                ));
            }
            "field" => match value {
                Node::Scalar(_) => field = value.text().map(str::to_owned),
                Node::List(items) if items.len() == 1 => {
                    field = items[0].text().map(str::to_owned);
                }
                _ => return Err("value_count over several fields is not supported".to_owned()),
            },
            other => {
                return Err(format!(
                    "the condition `{}` is not supported",
                    other.chars().take(64).collect::<String>().escape_debug()
                ));
            }
        }
    }
    let bound = match bound {
        Some(0) => return Err("a count of at least 0 always holds".to_owned()),
        Some(bound) => bound,
        None => return Err("the condition has no gte or gt".to_owned()),
    };
    match kind {
        CorrelationKind::EventCount if field.is_some() => {
            Err("`field` in the condition is for value_count, not event_count".to_owned())
        }
        CorrelationKind::ValueCount if field.is_none() => {
            Err("value_count needs the `field` whose values it counts".to_owned())
        }
        CorrelationKind::TemporalOrdered if bound != n_rules as u64 || field.is_some() => Err(
            "a temporal_ordered condition other than all of its rules is not supported".to_owned(),
        ),
        _ => Ok((bound, field)),
    }
}
