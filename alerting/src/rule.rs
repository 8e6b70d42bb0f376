//! Rules as written (TOML, [`RuleConfig`]) and as run ([`Rule`]): checked once at load, so
//! that evaluation never meets an unknown field, a bad window or a runaway regex.
//!
//! ```toml
//! [[alerting.rules]]
//! id = "auth-failure-spike-user"
//! name = "Failed logins of one user"
//! kind = "threshold"
//! severity = "high"
//! mitre = ["T1110"]
//! group_by = ["user.name"]
//! filter = { "event.action" = "auth-failure" }
//! window = "1m"
//! threshold = 10
//! ```
//!
//! A filter maps field names (the ECS names of the store's columns) to what their value must
//! be: a string or number (equal), a list (any of), or a table with one of `regex`, `cidr`,
//! `not`, `exists`, `gte`, `lte`. Every condition must hold.

pub mod baseline;
pub mod filter;
pub mod geo;
pub mod new_terms;
pub mod query;
pub mod sequence;
pub mod state;
pub mod threshold;

use std::collections::BTreeMap;
use std::time::Duration;

use model::fields::{self, Field, Value};
use model::{Event, Severity};
use serde::{Deserialize, Serialize};

use crate::Error;

pub use filter::{Filter, in_cidr, parse_cidr};

/// Longest rule id.
pub const MAX_ID_LEN: usize = 64;
/// Largest compiled regex (bytes of the automaton).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Longest window or span a rule may ask for.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// A rule as written. (Unknown keys are refused by the kind's own fields: serde's
/// `deny_unknown_fields` does not combine with `flatten`.)
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct RuleConfig {
    pub id: String,
    pub name: String,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    #[serde(default)]
    pub description: String,
    /// MITRE ATT&CK technique ids (`T1110`, `T1110.003`).
    #[serde(default)]
    pub mitre: Vec<String>,
    /// Fields whose values make a group: one alert per rule and group.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Off: loaded and checked, never run.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A playbook to trigger when it fires (the playbooks' issue runs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
    /// How long after its last event an alert resolves by itself (default: the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_after: Option<String>,
    #[serde(flatten)]
    pub kind: KindConfig,
}

fn default_severity() -> Severity {
    Severity::Medium
}

fn default_true() -> bool {
    true
}

/// What a rule looks for.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum KindConfig {
    /// `threshold` events (or distinct values of `distinct`) within `window`, per group.
    Threshold {
        #[serde(default)]
        filter: BTreeMap<String, toml::Value>,
        window: String,
        threshold: u64,
        /// Count distinct values of this field instead of events (password spraying: many
        /// users from one source).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        distinct: Option<String>,
    },
    /// `first` (at least `count` times) then `then` within `within`, per group; with
    /// `absent = true`, `first` NOT followed by `then` within `within`.
    Sequence {
        first: StepConfig,
        then: StepConfig,
        within: String,
        #[serde(default)]
        absent: bool,
    },
    /// Where logins come from ([`geo`]).
    Geo {
        #[serde(default)]
        filter: BTreeMap<String, toml::Value>,
        /// `impossible_travel`, `new_country`, `new_asn` or `denied_country`.
        check: String,
        #[serde(default = "default_max_speed")]
        max_speed_kmh: f64,
        /// How far off a located address may be (each of the two points).
        #[serde(default = "default_accuracy")]
        accuracy_km: f64,
        #[serde(default = "default_history_days")]
        history_days: u32,
        #[serde(default)]
        denied_countries: Vec<String>,
        /// One's own egress ranges: never judged.
        #[serde(default)]
        allow_cidrs: Vec<String>,
        #[serde(default)]
        allow_asns: Vec<u32>,
    },
    /// A rate against what is usual for its hour of the week ([`baseline`]).
    Baseline {
        #[serde(default)]
        filter: BTreeMap<String, toml::Value>,
        /// The counting interval (default 5m).
        #[serde(default = "default_bucket")]
        bucket: String,
        /// `hour_of_week` (default) or `none`.
        #[serde(default = "default_seasonality")]
        seasonality: String,
        /// EWMA weight of each new bucket (default 0.1).
        #[serde(default = "default_alpha")]
        alpha: f64,
        /// How many standard deviations above the mean fire (default 4).
        #[serde(default = "default_sigmas")]
        sigmas: f64,
        /// Fewer events in a bucket never fire (default 10).
        #[serde(default = "default_min_count")]
        min_count: u64,
        /// How long a group is learnt before it may fire (default 7d).
        #[serde(default = "default_warmup")]
        warmup: String,
    },
    /// A SQL statement over the store, every `interval` over the last `window` ([`query`]).
    Query {
        sql: String,
        #[serde(default = "default_interval")]
        interval: String,
        #[serde(default = "default_query_window")]
        window: String,
    },
    /// A value a group has not had within `history` ([`new_terms`]).
    NewTerms {
        #[serde(default)]
        filter: BTreeMap<String, toml::Value>,
        /// The field (or fields, together) whose values are the terms.
        fields: Vec<String>,
        /// A term not seen within this long is new (default 30d).
        #[serde(default = "default_history")]
        history: String,
        /// A group's first this long only teaches (default 7d).
        #[serde(default = "default_learn")]
        learn: String,
    },
    /// What is true of a user's VPN now ([`state`]).
    State {
        #[serde(default)]
        filter: BTreeMap<String, toml::Value>,
        /// `weak_crypto` or `concurrent_sessions`.
        check: String,
        /// `weak_crypto`: the algorithms that are weak (strongSwan's names; a trailing `*`
        /// matches any suffix); default [`state::DEFAULT_WEAK_ALGORITHMS`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weak_algorithms: Option<Vec<String>>,
        /// `concurrent_sessions`: the most sessions a group may have at once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
        /// `concurrent_sessions`: how long an SA whose end was never seen counts (default 1d).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_session_age: Option<String>,
        /// `cert_expiry`: how many days before its end a certificate alerts (default 30).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        days: Option<u32>,
    },
}

fn default_interval() -> String {
    "5m".to_owned()
}

fn default_query_window() -> String {
    "1h".to_owned()
}

fn default_history() -> String {
    "30d".to_owned()
}

fn default_learn() -> String {
    "7d".to_owned()
}

fn default_bucket() -> String {
    "5m".to_owned()
}

fn default_seasonality() -> String {
    "hour_of_week".to_owned()
}

fn default_alpha() -> f64 {
    0.1
}

fn default_sigmas() -> f64 {
    4.0
}

fn default_min_count() -> u64 {
    10
}

fn default_warmup() -> String {
    "7d".to_owned()
}

fn default_max_speed() -> f64 {
    900.0
}

fn default_accuracy() -> f64 {
    100.0
}

fn default_history_days() -> u32 {
    90
}

/// One step of a sequence.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    #[serde(default)]
    pub filter: BTreeMap<String, toml::Value>,
    /// How many matching events make the step (default 1).
    #[serde(default = "default_one")]
    pub count: u64,
}

fn default_one() -> u64 {
    1
}

/// A rule ready to run.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub name: String,
    pub severity: Severity,
    pub description: String,
    pub mitre: Vec<String>,
    pub group_by: Vec<&'static Field>,
    pub playbook: Option<String>,
    pub resolve_after: Duration,
    pub kind: Kind,
}

/// What a compiled rule looks for.
#[derive(Debug, Clone)]
pub enum Kind {
    Threshold(threshold::Threshold),
    Sequence(sequence::Sequence),
    Geo(geo::Geo),
    State(state::StateRule),
    Baseline(baseline::Baseline),
    NewTerms(new_terms::NewTerms),
    Query(query::Query),
}

impl Kind {
    /// The `kind` it is written as.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Threshold(_) => "threshold",
            Kind::Sequence(_) => "sequence",
            Kind::Geo(_) => "geo",
            Kind::State(_) => "state",
            Kind::Baseline(_) => "baseline",
            Kind::NewTerms(_) => "new_terms",
            Kind::Query(_) => "query",
        }
    }
}

impl Rule {
    /// Checks and compiles a rule; the error names the rule and what is wrong.
    pub fn compile(config: &RuleConfig) -> Result<Rule, Error> {
        let id = config.id.as_str();
        let invalid = |why: String| Error::Rule {
            rule: id.chars().take(MAX_ID_LEN).collect(),
            why,
        };
        if id.is_empty()
            || id.len() > MAX_ID_LEN
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(format!(
                "the id must be 1 to {MAX_ID_LEN} characters of a-z, 0-9, `-`, `_`, `.`"
            )));
        }
        if config.name.trim().is_empty() || config.name.len() > 200 {
            return Err(invalid("the name must be 1 to 200 characters".to_owned()));
        }
        for technique in &config.mitre {
            let valid = technique.len() <= 12
                && technique.starts_with('T')
                && technique[1..]
                    .split('.')
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
            if !valid {
                return Err(invalid(format!(
                    "`{}` is not a MITRE ATT&CK technique id (T1110, T1110.003)",
                    technique.escape_debug()
                )));
            }
        }
        let group_by = config
            .group_by
            .iter()
            .map(|name| event_field(name).map_err(|why| invalid(format!("group_by: {why}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let kind = match &config.kind {
            KindConfig::Threshold {
                filter,
                window,
                threshold,
                distinct,
            } => {
                let window =
                    parse_duration(window).map_err(|why| invalid(format!("window: {why}")))?;
                if *threshold == 0 {
                    return Err(invalid("threshold must be at least 1".to_owned()));
                }
                if *threshold > 100_000 {
                    return Err(invalid("threshold must be at most 100000".to_owned()));
                }
                let distinct = distinct
                    .as_deref()
                    .map(event_field)
                    .transpose()
                    .map_err(|why| invalid(format!("distinct: {why}")))?;
                Kind::Threshold(threshold::Threshold {
                    filter: Filter::compile(filter)
                        .map_err(|why| invalid(format!("filter: {why}")))?,
                    window,
                    threshold: *threshold,
                    distinct,
                })
            }
            KindConfig::Geo {
                filter,
                check,
                max_speed_kmh,
                accuracy_km,
                history_days,
                denied_countries,
                allow_cidrs,
                allow_asns,
            } => geo_kind(
                &invalid,
                filter,
                check,
                max_speed_kmh,
                accuracy_km,
                history_days,
                denied_countries,
                allow_cidrs,
                allow_asns,
            )?,
            KindConfig::Query {
                sql,
                interval,
                window,
            } => {
                query::check(sql).map_err(invalid)?;
                let interval =
                    parse_duration(interval).map_err(|why| invalid(format!("interval: {why}")))?;
                if interval < Duration::from_secs(10) {
                    return Err(invalid("interval must be at least 10s".to_owned()));
                }
                let window =
                    parse_duration(window).map_err(|why| invalid(format!("window: {why}")))?;
                Kind::Query(query::Query {
                    sql: sql.clone(),
                    interval,
                    window,
                })
            }
            KindConfig::NewTerms {
                filter,
                fields,
                history,
                learn,
            } => {
                if fields.is_empty() || fields.len() > 4 {
                    return Err(invalid("fields names 1 to 4 fields".to_owned()));
                }
                let fields = fields
                    .iter()
                    .map(|name| event_field(name))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|why| invalid(format!("fields: {why}")))?;
                let history =
                    parse_duration(history).map_err(|why| invalid(format!("history: {why}")))?;
                let learn =
                    parse_duration(learn).map_err(|why| invalid(format!("learn: {why}")))?;
                Kind::NewTerms(new_terms::NewTerms {
                    filter: Filter::compile(filter)
                        .map_err(|why| invalid(format!("filter: {why}")))?,
                    fields,
                    history,
                    learn,
                })
            }
            KindConfig::Baseline {
                filter,
                bucket,
                seasonality,
                alpha,
                sigmas,
                min_count,
                warmup,
            } => {
                let bucket =
                    parse_duration(bucket).map_err(|why| invalid(format!("bucket: {why}")))?;
                if bucket < Duration::from_secs(10) || bucket > Duration::from_secs(86_400) {
                    return Err(invalid("bucket must be 10s to 1d".to_owned()));
                }
                let seasonality = match seasonality.as_str() {
                    "hour_of_week" => baseline::Seasonality::HourOfWeek,
                    "none" => baseline::Seasonality::None,
                    other => {
                        return Err(invalid(format!(
                            "seasonality `{}` is not hour_of_week or none",
                            other.escape_debug()
                        )));
                    }
                };
                if seasonality == baseline::Seasonality::HourOfWeek
                    && bucket > Duration::from_secs(3600)
                {
                    return Err(invalid(
                        "with seasonality hour_of_week, bucket is at most 1h".to_owned(),
                    ));
                }
                if !(*alpha > 0.0 && *alpha <= 1.0) {
                    return Err(invalid("alpha must be above 0 and at most 1".to_owned()));
                }
                if !(0.5..=100.0).contains(sigmas) {
                    return Err(invalid("sigmas must be 0.5 to 100".to_owned()));
                }
                if *min_count == 0 || *min_count > 1_000_000 {
                    return Err(invalid("min_count must be 1 to 1000000".to_owned()));
                }
                let warmup =
                    parse_duration(warmup).map_err(|why| invalid(format!("warmup: {why}")))?;
                Kind::Baseline(baseline::Baseline {
                    filter: Filter::compile(filter)
                        .map_err(|why| invalid(format!("filter: {why}")))?,
                    bucket,
                    seasonality,
                    alpha: *alpha,
                    sigmas: *sigmas,
                    min_count: *min_count,
                    warmup,
                })
            }
            KindConfig::State {
                filter,
                check,
                weak_algorithms,
                limit,
                max_session_age,
                days,
            } => state_kind(
                &invalid,
                filter,
                check,
                weak_algorithms.as_deref(),
                *limit,
                max_session_age.as_deref(),
                *days,
            )?,
            KindConfig::Sequence {
                first,
                then,
                within,
                absent,
            } => {
                let within =
                    parse_duration(within).map_err(|why| invalid(format!("within: {why}")))?;
                let step = |name: &str, step: &StepConfig| -> Result<sequence::Step, Error> {
                    if step.count == 0 || step.count > 10_000 {
                        return Err(invalid(format!("{name}.count must be 1 to 10000")));
                    }
                    Ok(sequence::Step {
                        filter: Filter::compile(&step.filter)
                            .map_err(|why| invalid(format!("{name}.filter: {why}")))?,
                        count: step.count,
                    })
                };
                Kind::Sequence(sequence::Sequence {
                    first: step("first", first)?,
                    then: step("then", then)?,
                    within,
                    absent: *absent,
                })
            }
        };
        let resolve_after = match &config.resolve_after {
            Some(text) => {
                parse_duration(text).map_err(|why| invalid(format!("resolve_after: {why}")))?
            }
            None => match &kind {
                Kind::Threshold(threshold) => threshold.window,
                Kind::Sequence(sequence) => sequence.within,
                Kind::Geo(_) => Duration::from_secs(24 * 3600),
                Kind::State(_) => Duration::from_secs(3600),
                Kind::Baseline(baseline) => baseline.bucket * 2,
                Kind::NewTerms(_) => Duration::from_secs(24 * 3600),
                Kind::Query(query) => query.interval * 2 + Duration::from_secs(60),
            },
        };
        Ok(Rule {
            id: id.to_owned(),
            name: config.name.clone(),
            severity: config.severity,
            description: config.description.clone(),
            mitre: config.mitre.clone(),
            group_by,
            playbook: config.playbook.clone(),
            resolve_after,
            kind,
        })
    }

    /// The group an event belongs to: the values of `group_by`, `None` when one is missing
    /// (an event without a user is in no per-user group).
    pub fn group_of(&self, event: &Event) -> Option<Vec<(&'static str, String)>> {
        self.group_by
            .iter()
            .map(|field| {
                let value = (field.event?)(event)?;
                Some((field.name, value_text(&value)))
            })
            .collect()
    }
}

/// Checks and compiles a `geo` rule's settings.
#[allow(clippy::too_many_arguments)]
fn geo_kind(
    invalid: &dyn Fn(String) -> Error,
    filter: &BTreeMap<String, toml::Value>,
    check: &str,
    max_speed_kmh: &f64,
    accuracy_km: &f64,
    history_days: &u32,
    denied_countries: &[String],
    allow_cidrs: &[String],
    allow_asns: &[u32],
) -> Result<Kind, Error> {
    let check = match check {
        "impossible_travel" => geo::Check::ImpossibleTravel,
        "new_country" => geo::Check::NewCountry,
        "new_asn" => geo::Check::NewAsn,
        "denied_country" => geo::Check::DeniedCountry,
        other => {
            return Err(invalid(format!(
                "check `{}` is not impossible_travel, new_country, new_asn or denied_country",
                other.escape_debug()
            )));
        }
    };
    if !(1.0..=100_000.0).contains(max_speed_kmh) {
        return Err(invalid("max_speed_kmh must be 1 to 100000".to_owned()));
    }
    if !(0.0..=5_000.0).contains(accuracy_km) {
        return Err(invalid("accuracy_km must be 0 to 5000".to_owned()));
    }
    if *history_days == 0 || *history_days > 3650 {
        return Err(invalid("history_days must be 1 to 3650".to_owned()));
    }
    if check == geo::Check::DeniedCountry && denied_countries.is_empty() {
        return Err(invalid("denied_country needs denied_countries".to_owned()));
    }
    for country in denied_countries {
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "`{}` is not an ISO 3166 country code such as DE",
                country.escape_debug()
            )));
        }
    }
    let allow_cidrs = allow_cidrs
        .iter()
        .map(|cidr| parse_cidr(cidr))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| invalid(format!("allow_cidrs: {why}")))?;
    Ok(Kind::Geo(geo::Geo {
        filter: Filter::compile(filter).map_err(|why| invalid(format!("filter: {why}")))?,
        check,
        max_speed_kmh: *max_speed_kmh,
        accuracy_km: *accuracy_km,
        history: Duration::from_secs(u64::from(*history_days) * 86_400),
        denied_countries: denied_countries.to_vec(),
        allow_cidrs,
        allow_asns: allow_asns.to_vec(),
    }))
}

/// Checks and compiles a `state` rule's settings.
fn state_kind(
    invalid: &dyn Fn(String) -> Error,
    filter: &BTreeMap<String, toml::Value>,
    check: &str,
    weak_algorithms: Option<&[String]>,
    limit: Option<u64>,
    max_session_age: Option<&str>,
    days: Option<u32>,
) -> Result<Kind, Error> {
    let filter = Filter::compile(filter).map_err(|why| invalid(format!("filter: {why}")))?;
    if days.is_some() && check != "cert_expiry" {
        return Err(invalid("days is a setting of cert_expiry".to_owned()));
    }
    let check = match check {
        "cert_expiry" => {
            if weak_algorithms.is_some() || limit.is_some() || max_session_age.is_some() {
                return Err(invalid(
                    "cert_expiry takes days, not weak_algorithms, limit or max_session_age"
                        .to_owned(),
                ));
            }
            let days = days.unwrap_or(30);
            if !(1..=3650).contains(&days) {
                return Err(invalid("days must be 1 to 3650".to_owned()));
            }
            state::Check::CertExpiry {
                within: Duration::from_secs(u64::from(days) * 86_400),
            }
        }
        "weak_crypto" => {
            if limit.is_some() || max_session_age.is_some() {
                return Err(invalid(
                    "limit and max_session_age are settings of concurrent_sessions".to_owned(),
                ));
            }
            let weak: Vec<String> = match weak_algorithms {
                Some(list) => list.to_vec(),
                None => state::DEFAULT_WEAK_ALGORITHMS
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect(),
            };
            if weak.is_empty() || weak.len() > state::MAX_PATTERNS {
                return Err(invalid(format!(
                    "weak_algorithms must name 1 to {} algorithms",
                    state::MAX_PATTERNS
                )));
            }
            for pattern in &weak {
                let name = pattern.strip_suffix('*').unwrap_or(pattern);
                if name.is_empty()
                    || name.len() > 64
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(invalid(format!(
                        "`{}` is not an algorithm name like 3DES_CBC or HMAC_SHA1* (strongSwan's spelling)",
                        pattern.escape_debug()
                    )));
                }
            }
            state::Check::WeakCrypto {
                weak: weak.iter().map(|name| name.to_ascii_uppercase()).collect(),
            }
        }
        "concurrent_sessions" => {
            if weak_algorithms.is_some() {
                return Err(invalid(
                    "weak_algorithms is a setting of weak_crypto".to_owned(),
                ));
            }
            let limit = limit
                .filter(|limit| (1..=10_000).contains(limit))
                .ok_or_else(|| {
                    invalid("concurrent_sessions needs limit = 1 to 10000".to_owned())
                })?;
            let max_age = match max_session_age {
                Some(text) => parse_duration(text)
                    .map_err(|why| invalid(format!("max_session_age: {why}")))?,
                None => Duration::from_secs(86_400),
            };
            state::Check::ConcurrentSessions { limit, max_age }
        }
        other => {
            return Err(invalid(format!(
                "check `{}` is not weak_crypto, concurrent_sessions or cert_expiry",
                other.escape_debug()
            )));
        }
    };
    Ok(Kind::State(state::StateRule { filter, check }))
}

/// A field that events carry (rules read events).
fn event_field(name: &str) -> Result<&'static Field, String> {
    let field = fields::resolve(name).map_err(|error| error.to_string())?;
    if field.event.is_none() {
        return Err(format!(
            "`{}` is not a field of events (it is only in {})",
            field.name,
            field.only_in.join(", ")
        ));
    }
    Ok(field)
}

/// A value as text, the way groups and labels show it.
pub fn value_text(value: &Value<'_>) -> String {
    match value {
        Value::Str(text) => text.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Float(x) => x.to_string(),
        Value::Time(at) => at.to_string(),
        Value::Ip(ip) => ip.to_string(),
    }
}

/// FNV-1a over the values, each ended by a 0x1f: stable across runs and builds (unlike the
/// standard hasher), so that what rules learnt stays valid in snapshots.
pub(crate) fn stable_hash(values: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for value in values {
        for byte in value.bytes().chain([0x1f]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// `30s`, `5m`, `2h`, `1d`, `500ms`: a positive duration up to [`MAX_WINDOW`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!(
            "`{}` is not a duration like 30s, 5m, 2h, 1d",
            text.escape_debug()
        )
    })?;
    let millis = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => None,
    }
    .ok_or_else(|| {
        format!(
            "`{}` is not a duration like 30s, 5m, 2h, 1d",
            text.escape_debug()
        )
    })?;
    let duration = Duration::from_millis(millis);
    if duration.is_zero() || duration > MAX_WINDOW {
        return Err(format!(
            "`{}` is outside 1ms to {} days",
            text.escape_debug(),
            MAX_WINDOW.as_secs() / 86_400
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests;
