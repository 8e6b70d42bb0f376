//! The pure core: events in, alert rows out. [`Engine::observe`] runs every rule over an
//! event the store accepted; [`Engine::tick`] moves time on (sequences that timed out,
//! alerts whose condition cleared); [`Engine::plan_change`] is what an operator's
//! acknowledge, assign or resolve would write, and [`Engine::apply`] takes any row (the
//! engine's own, an operator's once it is durable, or the stored ones after a restart) into
//! the state of open alerts. Nothing here waits, sends or reads a clock.
//!
//! One alert is open per fingerprint (rule + group values): while it is open, further hits
//! add to its count and evidence instead of firing again (dedup). An `updated` row is
//! written at most every [`UPDATE_EVERY`] of event time, and when it resolves.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use model::alert::{ENGINE_ACTOR, MAX_EVIDENCE, action};
use model::{AlertRecord, AlertStatus, Event};
use sha2::{Digest, Sha256};

use crate::rule::{Kind, Rule, baseline, geo, new_terms, sequence, state, threshold};

/// Groups of a threshold or sequence rule beyond which its windows are not written to the
/// snapshot (a flood of one-off groups; they are swept within the window anyway).
pub const MAX_SNAPSHOT_GROUPS: usize = 100_000;

/// How often at most an open alert's growing count is written (event time).
pub const UPDATE_EVERY: Duration = Duration::from_secs(10);

/// Engine limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Groups kept per rule; beyond, the least recently seen are evicted (counted).
    pub max_groups_per_rule: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_groups_per_rule: 1_000_000,
        }
    }
}

/// What the engine counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub events: u64,
    pub fired: u64,
    pub evicted_groups: u64,
}

/// An operator's change to an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Acknowledge,
    Assign(String),
    Resolve,
}

impl Change {
    /// The audit trail's action for it.
    pub fn audit_action(&self) -> &'static str {
        match self {
            Change::Acknowledge => "alert.ack",
            Change::Assign(_) => "alert.assign",
            Change::Resolve => "alert.resolve",
        }
    }

    /// The audit trail's message: `who acknowledged alert ID[: comment]`.
    pub fn audit_message(&self, actor: &str, alert_id: &str, comment: Option<&str>) -> String {
        let verb = match self {
            Change::Acknowledge => "acknowledged".to_owned(),
            Change::Assign(assignee) => format!("assigned to {assignee}"),
            Change::Resolve => "resolved".to_owned(),
        };
        match comment {
            Some(comment) => format!("{actor} {verb} alert {alert_id}: {comment}"),
            None => format!("{actor} {verb} alert {alert_id}"),
        }
    }
}

/// What a rule has learnt, kept across restarts (a week of learning is not lost to an
/// upgrade) and handed from a replay of history to the server: taken back by a rule with
/// the same id and shape ([`shape`]: its kind's settings that what was learnt depends on, and
/// `group_by`; a changed filter keeps what was learnt).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub rule: String,
    pub shape: String,
    pub learnt: Learnt,
}

/// The learning of one kind, by group.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", content = "groups", rename_all = "snake_case")]
pub enum Learnt {
    /// The windows in progress (so that a restart does not forget the first half of an attack).
    Threshold(HashMap<String, threshold::Group>),
    Sequence(HashMap<String, sequence::Group>),
    Baseline(HashMap<String, baseline::Learnt>),
    Geo(HashMap<String, geo::Seen>),
    NewTerms(HashMap<String, new_terms::Known>),
}

/// What must not change for a rule's learning to be taken back (`None`: it learns nothing).
fn shape(rule: &Rule) -> Option<String> {
    let group_by: Vec<&str> = rule.group_by.iter().map(|field| field.name).collect();
    let kind = match &rule.kind {
        Kind::Threshold(threshold) => format!(
            "threshold window={}ms threshold={} distinct={}",
            threshold.window.as_millis(),
            threshold.threshold,
            threshold.distinct.map_or("", |field| field.name)
        ),
        Kind::Sequence(sequence) => format!(
            "sequence within={}ms first={} then={} absent={}",
            sequence.within.as_millis(),
            sequence.first.count,
            sequence.then.count,
            sequence.absent
        ),
        Kind::Baseline(baseline) => baseline.shape(),
        Kind::Geo(geo) => format!("geo {:?}", geo.check),
        Kind::NewTerms(terms) => {
            let fields: Vec<&str> = terms.fields.iter().map(|field| field.name).collect();
            format!("new_terms fields={}", fields.join(","))
        }
        _ => return None,
    };
    Some(format!("{kind} group_by={}", group_by.join(",")))
}

/// The reason an escalation row gives: `escalation N: not acknowledged within D` (the
/// router reads the step back from it).
pub fn escalation_reason(step: usize, wait: Duration) -> String {
    format!(
        "escalation {}: not acknowledged within {}",
        step + 1,
        show_duration(wait)
    )
}

/// The escalation step (0-based) of an `escalated` row, from its reason.
pub fn escalation_step(row: &AlertRecord) -> Option<usize> {
    if row.action != action::ESCALATED {
        return None;
    }
    let rest = row.reason.as_deref()?.strip_prefix("escalation ")?;
    let (number, _) = rest.split_once(':')?;
    number.parse::<usize>().ok()?.checked_sub(1)
}

/// Stored rows as each alert's history: by alert id, oldest revision first, each revision
/// once (the last of each is the alert's state).
pub fn histories(rows: Vec<AlertRecord>) -> BTreeMap<String, Vec<AlertRecord>> {
    let mut by_alert: BTreeMap<String, Vec<AlertRecord>> = BTreeMap::new();
    for row in rows {
        by_alert.entry(row.alert_id.clone()).or_default().push(row);
    }
    for history in by_alert.values_mut() {
        history.sort_by_key(|row| row.revision);
        history.dedup_by_key(|row| row.revision);
    }
    by_alert
}

/// Why a change cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("no open alert {0} (it is resolved, or there is no such alert)")]
    NotOpen(String),
    #[error("alert {0} is acknowledged already")]
    AlreadyAcknowledged(String),
}

/// An open (firing or acknowledged) alert.
#[derive(Debug, Clone)]
struct Open {
    last_row: AlertRecord,
    /// Event time of the last row written.
    written_at: Timestamp,
    /// Hits since the last row (not yet written).
    dirty: bool,
    /// When it fired (its first row).
    fired_at: Timestamp,
    /// Escalation rows written for it so far.
    escalations: u32,
}

#[derive(Debug)]
enum RuleState {
    Threshold(threshold::State),
    Sequence(sequence::State),
    Geo(geo::State),
    State(state::State),
    Baseline(baseline::State),
    NewTerms(new_terms::State),
    /// Query rules keep nothing between runs.
    Query,
}

/// The rule engine with its windows and open alerts.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    states: Vec<RuleState>,
    /// Open alerts by fingerprint.
    open: HashMap<String, Open>,
    /// The group keys of the open alerts, by rule id: a window that reaches its threshold
    /// again for an open alert needs no evidence list.
    open_groups: HashMap<String, std::collections::HashSet<String>>,
    limits: Limits,
    /// The newest event time seen.
    watermark: Timestamp,
    counters: Counters,
    /// Alerts made so far (with those restored): part of each new alert's id, so that an
    /// alert of a group that fires again after a resolve is another alert.
    serial: u64,
}

impl Engine {
    pub fn new(rules: Vec<Rule>, limits: Limits) -> Engine {
        let states = rules.iter().map(fresh_state).collect();
        Engine {
            rules,
            states,
            open: HashMap::new(),
            open_groups: HashMap::new(),
            limits,
            watermark: Timestamp::UNIX_EPOCH,
            counters: Counters::default(),
            serial: 0,
        }
    }

    /// Swaps in a new rule set (a reload): windows of rules whose definition is unchanged
    /// are kept, open alerts stay open.
    pub fn replace_rules(&mut self, rules: Vec<Rule>) {
        let mut old: HashMap<String, (String, RuleState)> = self
            .rules
            .drain(..)
            .zip(self.states.drain(..))
            .map(|(rule, state)| (rule.id.clone(), (format!("{rule:?}"), state)))
            .collect();
        self.states = rules
            .iter()
            .map(|rule| match old.remove(&rule.id) {
                Some((definition, state)) if definition == format!("{rule:?}") => state,
                _ => fresh_state(rule),
            })
            .collect();
        self.rules = rules;
        let open: Vec<AlertRecord> = self
            .open
            .values()
            .map(|open| open.last_row.clone())
            .collect();
        self.open_groups.clear();
        for row in &open {
            if let Some(key) = self.group_key_of(row) {
                self.open_groups
                    .entry(row.rule_id.clone())
                    .or_default()
                    .insert(key);
            }
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Firing alerts (not acknowledged): their newest rows and when each fired.
    pub fn firing(&self) -> Vec<(&AlertRecord, Timestamp)> {
        self.open
            .values()
            .filter(|open| open.last_row.status == AlertStatus::Firing)
            .map(|open| (&open.last_row, open.fired_at))
            .collect()
    }

    /// Open alerts (firing or acknowledged), their newest rows.
    pub fn open_alerts(&self) -> impl Iterator<Item = &AlertRecord> {
        self.open.values().map(|open| &open.last_row)
    }

    /// Runs every rule over one event the store accepted; returns the rows to store.
    pub fn observe(&mut self, event: &Event) -> Vec<AlertRecord> {
        self.counters.events += 1;
        if event.timestamp > self.watermark {
            self.watermark = event.timestamp;
        }
        let mut rows = Vec::new();
        for index in 0..self.rules.len() {
            let rule = &self.rules[index];
            // The filters first: most events match no rule, and need no group.
            let relevant = match &rule.kind {
                Kind::Threshold(threshold) => threshold.filter.matches(event),
                Kind::Sequence(sequence) => {
                    sequence.first.filter.matches(event) || sequence.then.filter.matches(event)
                }
                Kind::Geo(geo) => geo.filter.matches(event),
                Kind::State(rule) => rule.relevant(event),
                Kind::Baseline(baseline) => baseline.filter.matches(event),
                Kind::NewTerms(terms) => terms.filter.matches(event),
                Kind::Query(_) => false,
            };
            if !relevant {
                continue;
            }
            let Some(group) = rule.group_of(event) else {
                continue;
            };
            let key = group_key(&group);
            let hit = match (&rule.kind, &mut self.states[index]) {
                (Kind::Threshold(threshold), RuleState::Threshold(state)) => {
                    let open = self
                        .open_groups
                        .get(&rule.id)
                        .is_some_and(|keys| keys.contains(&key));
                    threshold
                        .observe(state, key, event, !open)
                        .map(|reached| Hit {
                            count: reached.count,
                            first: reached.first,
                            evidence: reached.evidence,
                            reason: format!(
                                "{} events within {}",
                                reached.count,
                                show_duration(threshold.window)
                            ),
                        })
                }
                (Kind::Sequence(sequence), RuleState::Sequence(state)) => {
                    sequence.observe(state, key, event).map(|completed| Hit {
                        count: completed.count,
                        first: completed.first,
                        evidence: completed.evidence,
                        reason: format!(
                            "sequence completed within {}",
                            show_duration(sequence.within)
                        ),
                    })
                }
                (Kind::NewTerms(terms), RuleState::NewTerms(state)) => {
                    terms.observe(state, key, event).map(|found| Hit {
                        count: 1,
                        first: event.timestamp,
                        evidence: found.evidence,
                        reason: found.reason,
                    })
                }
                (Kind::Baseline(baseline), RuleState::Baseline(state)) => {
                    baseline.observe(state, key, event).map(|found| Hit {
                        count: found.count,
                        first: found.first,
                        evidence: found.evidence,
                        reason: found.reason,
                    })
                }
                (Kind::State(rule), RuleState::State(state)) => {
                    rule.observe(state, key, event).map(|found| Hit {
                        count: found.evidence.len() as u64,
                        first: event.timestamp,
                        evidence: found.evidence,
                        reason: found.reason,
                    })
                }
                (Kind::Geo(geo), RuleState::Geo(state)) => {
                    geo.observe(state, key, event).map(|found| Hit {
                        count: found.evidence.len() as u64,
                        first: event.timestamp,
                        evidence: found.evidence,
                        reason: found.reason,
                    })
                }
                _ => None,
            };
            if let Some(hit) = hit {
                rows.extend(self.hit(index, group, hit, Some(event), event.timestamp));
            }
        }
        rows
    }

    /// Moves time on to `now` (event time in a replay, the wall clock live): sequences that
    /// timed out fire, alerts idle for their rule's `resolve_after` resolve, pending counts
    /// are written, idle windows are swept.
    pub fn tick(&mut self, now: Timestamp) -> Vec<AlertRecord> {
        let mut rows = Vec::new();
        for index in 0..self.rules.len() {
            let completed = match (&self.rules[index].kind, &mut self.states[index]) {
                (Kind::Sequence(sequence), RuleState::Sequence(state)) => {
                    let expired = sequence.expire(state, now);
                    let evicted = sequence::Sequence::evict(state, self.limits.max_groups_per_rule);
                    self.counters.evicted_groups += evicted as u64;
                    expired
                }
                (Kind::Geo(geo), RuleState::Geo(state)) => {
                    geo.sweep(state, now);
                    Vec::new()
                }
                (Kind::NewTerms(terms), RuleState::NewTerms(state)) => {
                    terms.sweep(state, now);
                    let evicted =
                        new_terms::NewTerms::evict(state, self.limits.max_groups_per_rule);
                    self.counters.evicted_groups += evicted as u64;
                    Vec::new()
                }
                (Kind::Baseline(baseline), RuleState::Baseline(state)) => {
                    baseline.sweep(state, now);
                    let evicted = baseline::Baseline::evict(state, self.limits.max_groups_per_rule);
                    self.counters.evicted_groups += evicted as u64;
                    Vec::new()
                }
                (Kind::State(rule), RuleState::State(state)) => {
                    rule.sweep(state, now);
                    let evicted = state::StateRule::evict(state, self.limits.max_groups_per_rule);
                    self.counters.evicted_groups += evicted as u64;
                    Vec::new()
                }
                (Kind::Threshold(threshold), RuleState::Threshold(state)) => {
                    threshold.sweep(state, now);
                    let evicted =
                        threshold::Threshold::evict(state, self.limits.max_groups_per_rule);
                    self.counters.evicted_groups += evicted as u64;
                    Vec::new()
                }
                _ => Vec::new(),
            };
            for completed in completed {
                let group: Vec<(String, String)> = self.rules[index]
                    .group_by
                    .iter()
                    .map(|field| field.name.to_owned())
                    .zip(completed.group.split(GROUP_SEPARATOR).map(str::to_owned))
                    .collect();
                let within = match &self.rules[index].kind {
                    Kind::Sequence(sequence) => sequence.within,
                    Kind::Threshold(threshold) => threshold.window,
                    Kind::Geo(_)
                    | Kind::State(_)
                    | Kind::Baseline(_)
                    | Kind::NewTerms(_)
                    | Kind::Query(_) => self.rules[index].resolve_after,
                };
                let hit = Hit {
                    count: completed.count,
                    first: completed.first,
                    evidence: completed.evidence,
                    reason: format!("not followed within {}", show_duration(within)),
                };
                let group = group
                    .into_iter()
                    .filter_map(|(name, value)| {
                        model::fields::resolve(&name)
                            .ok()
                            .map(|field| (field.name, value))
                    })
                    .collect();
                rows.extend(self.hit(index, group, hit, None, now));
            }
        }
        // Auto-resolve, and write counts that grew since the last row.
        let mut fingerprints: Vec<String> = self.open.keys().cloned().collect();
        fingerprints.sort();
        for fingerprint in fingerprints {
            let Some(open) = self.open.get(&fingerprint) else {
                continue;
            };
            let resolve_after = self
                .rules
                .iter()
                .find(|rule| rule.id == open.last_row.rule_id)
                .map_or(Duration::from_secs(3600), |rule| rule.resolve_after);
            let idle = SignedDuration::try_from(resolve_after).unwrap_or(SignedDuration::MAX);
            if now
                > open
                    .last_row
                    .last
                    .saturating_add(idle)
                    .unwrap_or(Timestamp::MAX)
            {
                let row = next_row(
                    &open.last_row,
                    now,
                    action::AUTO_RESOLVED,
                    AlertStatus::Resolved,
                    ENGINE_ACTOR,
                    Some(format!("nothing new for {}", show_duration(resolve_after))),
                );
                self.apply(&row);
                rows.push(row);
            } else if open.dirty
                && now
                    >= open
                        .written_at
                        .saturating_add(
                            SignedDuration::try_from(UPDATE_EVERY).unwrap_or(SignedDuration::MAX),
                        )
                        .unwrap_or(Timestamp::MAX)
            {
                let row = next_row(
                    &open.last_row,
                    now,
                    action::UPDATED,
                    open.last_row.status,
                    ENGINE_ACTOR,
                    None,
                );
                self.apply(&row);
                rows.push(row);
            }
        }
        rows
    }

    /// The end of a replayed history (`tunnelwatch ingest`): every open alert resolves as of
    /// its last event plus its rule's `resolve_after` (nothing later is known), so that no
    /// alert of old logs stays open for a server to resolve, and page, later.
    pub fn end_of_history(&mut self) -> Vec<AlertRecord> {
        let mut open: Vec<AlertRecord> = self
            .open
            .values()
            .map(|open| open.last_row.clone())
            .collect();
        open.sort_by(|a, b| a.alert_id.cmp(&b.alert_id));
        let mut rows = Vec::new();
        for last in open {
            let resolve_after = self
                .rules
                .iter()
                .find(|rule| rule.id == last.rule_id)
                .map_or(Duration::from_secs(3600), |rule| rule.resolve_after);
            let at = last
                .last
                .saturating_add(
                    SignedDuration::try_from(resolve_after).unwrap_or(SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MAX);
            let row = next_row(
                &last,
                at,
                action::AUTO_RESOLVED,
                AlertStatus::Resolved,
                ENGINE_ACTOR,
                Some(format!(
                    "the history ends; nothing new for {}",
                    show_duration(resolve_after)
                )),
            );
            self.apply(&row);
            rows.push(row);
        }
        rows
    }

    /// The row an operator's change would write, without changing anything: it is applied
    /// ([`Engine::apply`]) once it is durable.
    pub fn plan_change(
        &self,
        alert_id: &str,
        change: &Change,
        actor: &str,
        comment: Option<String>,
        now: Timestamp,
    ) -> Result<AlertRecord, ChangeError> {
        let open = self
            .open
            .values()
            .find(|open| open.last_row.alert_id == alert_id)
            .ok_or_else(|| ChangeError::NotOpen(alert_id.to_owned()))?;
        let last = &open.last_row;
        let mut row = match change {
            Change::Acknowledge => {
                if last.status == AlertStatus::Acknowledged {
                    return Err(ChangeError::AlreadyAcknowledged(alert_id.to_owned()));
                }
                next_row(
                    last,
                    now,
                    action::ACKNOWLEDGED,
                    AlertStatus::Acknowledged,
                    actor,
                    comment,
                )
            }
            Change::Assign(assignee) => {
                let mut row = next_row(last, now, action::ASSIGNED, last.status, actor, comment);
                row.assignee = Some(assignee.clone());
                row
            }
            Change::Resolve => next_row(
                last,
                now,
                action::RESOLVED,
                AlertStatus::Resolved,
                actor,
                comment,
            ),
        };
        // What the engine has counted since its last row goes with it (`last` is current).
        row.timestamp = now.max(last.timestamp);
        Ok(row)
    }

    /// Takes a row into the state: an open alert's newest row, or a resolved one gone.
    /// Rows older than the state has (a lower revision) change nothing.
    pub fn apply(&mut self, row: &AlertRecord) {
        if let Some(open) = self.open.get(&row.fingerprint)
            && open.last_row.alert_id == row.alert_id
            && open.last_row.revision >= row.revision
        {
            return;
        }
        if row.status == AlertStatus::Resolved {
            if self
                .open
                .get(&row.fingerprint)
                .is_some_and(|open| open.last_row.alert_id == row.alert_id)
            {
                self.open.remove(&row.fingerprint);
                if let Some(key) = self.group_key_of(row)
                    && let Some(keys) = self.open_groups.get_mut(&row.rule_id)
                {
                    keys.remove(&key);
                }
            }
            return;
        }
        if let Some(key) = self.group_key_of(row) {
            self.open_groups
                .entry(row.rule_id.clone())
                .or_default()
                .insert(key);
        }
        let escalated = u32::from(row.action == action::ESCALATED);
        let (fired_at, escalations) = match self.open.get(&row.fingerprint) {
            Some(open) if open.last_row.alert_id == row.alert_id => {
                (open.fired_at, open.escalations + escalated)
            }
            _ => (row.timestamp, escalated),
        };
        self.open.insert(
            row.fingerprint.clone(),
            Open {
                last_row: row.clone(),
                written_at: row.last,
                dirty: false,
                fired_at,
                escalations,
            },
        );
    }

    /// The rows a query rule's run returned, as hits of its groups (an open alert of a
    /// group grows; one that stops coming back resolves after `resolve_after`).
    pub fn query_hits(
        &mut self,
        rule_id: &str,
        found: Vec<crate::rule::query::Row>,
        now: Timestamp,
    ) -> Vec<AlertRecord> {
        let Some(index) = self.rules.iter().position(|rule| rule.id == rule_id) else {
            return Vec::new();
        };
        let Kind::Query(query) = &self.rules[index].kind else {
            return Vec::new();
        };
        let since = now
            .checked_sub(SignedDuration::try_from(query.window).unwrap_or(SignedDuration::ZERO))
            .unwrap_or(now);
        let mut rows = Vec::new();
        for row in found {
            let hit = Hit {
                count: row.count,
                first: since,
                evidence: Vec::new(),
                reason: row.reason,
            };
            rows.extend(self.hit(index, row.group, hit, None, now));
        }
        rows
    }

    /// What the rules that learn have learnt: baselines, where users log in from (geo),
    /// the terms each group has had ([`Snapshot`]).
    pub fn learnt(&self) -> Vec<Snapshot> {
        self.rules
            .iter()
            .zip(&self.states)
            .filter_map(|(rule, state)| {
                let learnt = match state {
                    RuleState::Threshold(state) if state.groups.len() <= MAX_SNAPSHOT_GROUPS => {
                        Learnt::Threshold(state.groups.clone())
                    }
                    RuleState::Sequence(state) if state.groups.len() <= MAX_SNAPSHOT_GROUPS => {
                        Learnt::Sequence(state.groups.clone())
                    }
                    RuleState::Baseline(state) => Learnt::Baseline(state.groups.clone()),
                    RuleState::Geo(state) => Learnt::Geo(state.groups.clone()),
                    RuleState::NewTerms(state) => Learnt::NewTerms(state.groups.clone()),
                    _ => return None,
                };
                Some(Snapshot {
                    rule: rule.id.clone(),
                    shape: shape(rule)?,
                    learnt,
                })
            })
            .collect()
    }

    /// Takes back what the rules learnt before a restart, or in a replay of history (those
    /// whose shape is the same, within the group limit); returns how many rules did.
    pub fn restore_learnt(&mut self, snapshots: Vec<Snapshot>) -> usize {
        let mut restored = 0;
        for snapshot in snapshots {
            let Some(index) = self.rules.iter().position(|rule| rule.id == snapshot.rule) else {
                continue;
            };
            let rule = &self.rules[index];
            if shape(rule).as_deref() != Some(snapshot.shape.as_str()) {
                continue;
            }
            let max = self.limits.max_groups_per_rule;
            let taken = match (&rule.kind, &mut self.states[index], snapshot.learnt) {
                (
                    Kind::Baseline(baseline),
                    RuleState::Baseline(state),
                    Learnt::Baseline(groups),
                ) if groups.len() <= max
                    && groups
                        .values()
                        .all(|learnt| learnt.slots.len() == baseline.seasonality_slots()) =>
                {
                    state.groups = groups;
                    true
                }
                (Kind::Threshold(_), RuleState::Threshold(state), Learnt::Threshold(groups))
                    if groups.len() <= max =>
                {
                    state.groups = groups;
                    true
                }
                (Kind::Sequence(_), RuleState::Sequence(state), Learnt::Sequence(groups))
                    if groups.len() <= max =>
                {
                    state.groups = groups;
                    true
                }
                (Kind::Geo(_), RuleState::Geo(state), Learnt::Geo(groups))
                    if groups.len() <= max =>
                {
                    state.groups = groups;
                    true
                }
                (Kind::NewTerms(_), RuleState::NewTerms(state), Learnt::NewTerms(groups))
                    if groups.len() <= max =>
                {
                    state.groups = groups;
                    true
                }
                _ => false,
            };
            restored += usize::from(taken);
        }
        restored
    }

    /// Firing alerts nobody acknowledged within the escalation steps' `after` (measured from
    /// when each fired; sorted, shortest first): one `escalated` row per step reached, in
    /// order. Wall-clock only (a replay of history escalates nothing).
    pub fn escalate(&mut self, after: &[Duration], now: Timestamp) -> Vec<AlertRecord> {
        let mut due = Vec::new();
        for open in self.open.values() {
            if open.last_row.status != AlertStatus::Firing {
                continue;
            }
            let step = open.escalations as usize;
            let Some(wait) = after.get(step) else {
                continue;
            };
            let at = open
                .fired_at
                .saturating_add(SignedDuration::try_from(*wait).unwrap_or(SignedDuration::MAX))
                .unwrap_or(Timestamp::MAX);
            if now >= at {
                due.push((open.last_row.clone(), step, *wait));
            }
        }
        due.sort_by(|a, b| a.0.alert_id.cmp(&b.0.alert_id));
        let mut rows = Vec::new();
        for (last, step, wait) in due {
            let row = next_row(
                &last,
                now.max(last.timestamp),
                action::ESCALATED,
                AlertStatus::Firing,
                ENGINE_ACTOR,
                Some(escalation_reason(step, wait)),
            );
            self.apply(&row);
            rows.push(row);
        }
        rows
    }

    /// The window key of a row's group (its labels in the rule's `group_by` order).
    fn group_key_of(&self, row: &AlertRecord) -> Option<String> {
        let rule = self.rules.iter().find(|rule| rule.id == row.rule_id)?;
        let group: Vec<(&'static str, String)> = rule
            .group_by
            .iter()
            .map(|field| Some((field.name, row.labels.get(field.name)?.clone())))
            .collect::<Option<_>>()?;
        Some(group_key(&group))
    }

    /// After a restart: the stored rows, oldest first, rebuild the open alerts.
    pub fn restore(&mut self, rows: &[AlertRecord]) {
        let mut newest: BTreeMap<&str, &AlertRecord> = BTreeMap::new();
        for row in rows {
            match newest.get(row.alert_id.as_str()) {
                Some(seen) if seen.revision >= row.revision => {}
                _ => {
                    newest.insert(&row.alert_id, row);
                }
            }
        }
        self.serial = self.serial.max(newest.len() as u64);
        for row in newest.values() {
            self.apply(row);
        }
        // When each fired, and how far each escalated.
        let mut fired: HashMap<&str, Timestamp> = HashMap::new();
        let mut escalations: HashMap<&str, u32> = HashMap::new();
        for row in rows {
            if row.revision == 1 {
                fired.insert(&row.alert_id, row.timestamp);
            }
            if row.action == action::ESCALATED {
                *escalations.entry(&row.alert_id).or_default() += 1;
            }
        }
        for open in self.open.values_mut() {
            let id = open.last_row.alert_id.as_str();
            if let Some(at) = fired.get(id) {
                open.fired_at = *at;
            }
            open.escalations = escalations.get(id).copied().unwrap_or(0);
        }
    }

    fn hit(
        &mut self,
        index: usize,
        group: Vec<(&'static str, String)>,
        hit: Hit,
        event: Option<&Event>,
        now: Timestamp,
    ) -> Option<AlertRecord> {
        let rule = &self.rules[index];
        let labels: BTreeMap<String, String> = group
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        let fingerprint = fingerprint(&rule.id, &labels);
        let at = event.map_or(now, |event| event.timestamp);
        if let Some(open) = self.open.get_mut(&fingerprint) {
            // Dedup: the open alert grows.
            let last = &mut open.last_row;
            last.count += 1;
            last.last = last.last.max(at);
            if let Some(event) = event {
                push_evidence(&mut last.evidence, event.id.to_string());
                if let Some(session) = &event.session_id {
                    last.session_id = Some(session.clone());
                }
            }
            open.dirty = true;
            let due = open
                .written_at
                .saturating_add(
                    SignedDuration::try_from(UPDATE_EVERY).unwrap_or(SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MAX);
            if at >= due {
                let row = next_row(
                    &open.last_row,
                    at,
                    action::UPDATED,
                    open.last_row.status,
                    ENGINE_ACTOR,
                    None,
                );
                self.apply(&row);
                return Some(row);
            }
            return None;
        }
        self.counters.fired += 1;
        let user = labels
            .get(model::fields::USER_NAME.name)
            .cloned()
            .or_else(|| event.and_then(|event| text_of(&model::fields::USER_NAME, event)));
        let source_ip = labels
            .get(model::fields::SOURCE_IP.name)
            .and_then(|ip| ip.parse().ok())
            .or_else(|| {
                event
                    .and_then(|event| text_of(&model::fields::SOURCE_IP, event))
                    .and_then(|ip| ip.parse().ok())
            });
        let mut evidence = Vec::new();
        for id in hit.evidence {
            push_evidence(&mut evidence, id);
        }
        self.serial += 1;
        let alert_id = alert_id(&fingerprint, hit.first, at, self.serial);
        let subject = labels
            .values()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let message = if subject.is_empty() {
            format!("{}: {}", rule.name, hit.reason)
        } else {
            format!("{} ({subject}): {}", rule.name, hit.reason)
        };
        let row = AlertRecord {
            id: format!("{alert_id}:1"),
            timestamp: at,
            alert_id,
            revision: 1,
            fingerprint,
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            severity: rule.severity,
            action: action::FIRED.to_owned(),
            status: AlertStatus::Firing,
            reason: Some(hit.reason),
            message,
            user,
            source_ip,
            session_id: event.and_then(|event| event.session_id.clone()),
            first: hit.first,
            last: at,
            count: hit.count,
            labels,
            evidence,
            mitre: rule.mitre.clone(),
            actor: ENGINE_ACTOR.to_owned(),
            assignee: None,
        };
        self.apply(&row);
        Some(row)
    }
}

/// What a rule found.
struct Hit {
    count: u64,
    first: Timestamp,
    evidence: Vec<String>,
    reason: String,
}

fn fresh_state(rule: &Rule) -> RuleState {
    match rule.kind {
        Kind::Threshold(_) => RuleState::Threshold(threshold::State::default()),
        Kind::Sequence(_) => RuleState::Sequence(sequence::State::default()),
        Kind::Geo(_) => RuleState::Geo(geo::State::default()),
        Kind::State(_) => RuleState::State(state::State::default()),
        Kind::Baseline(_) => RuleState::Baseline(baseline::State::default()),
        Kind::NewTerms(_) => RuleState::NewTerms(new_terms::State::default()),
        Kind::Query(_) => RuleState::Query,
    }
}

/// Between the values of a group key (a character no field value of a group holds in
/// practice; a value that does holds it only within its own group, the key stays the same
/// for the same values).
const GROUP_SEPARATOR: char = '\u{1f}';

/// The group's key in the windows: its values in `group_by` order (read back for
/// timed-out sequences).
fn group_key(group: &[(&'static str, String)]) -> String {
    let mut key = String::new();
    for (index, (_, value)) in group.iter().enumerate() {
        if index > 0 {
            key.push(GROUP_SEPARATOR);
        }
        key.push_str(value);
    }
    key
}

/// Rule id and group values, hashed: the same for every hit of one group.
pub fn fingerprint(rule_id: &str, labels: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    hasher.update(rule_id.as_bytes());
    for (name, value) in labels {
        hasher.update([0]);
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
    }
    model::hex::encode(&hasher.finalize()[..8])
}

/// An alert's id: its fingerprint, its first event, when it fired and the engine's serial
/// (a later alert of the same group is another alert, even over the same events).
fn alert_id(fingerprint: &str, first: Timestamp, fired: Timestamp, serial: u64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(fingerprint.as_bytes());
    hasher.update(first.as_microsecond().to_be_bytes());
    hasher.update(fired.as_microsecond().to_be_bytes());
    hasher.update(serial.to_be_bytes());
    format!("al-{}", model::hex::encode(&hasher.finalize()[..8]))
}

fn next_row(
    last: &AlertRecord,
    now: Timestamp,
    what: &str,
    status: AlertStatus,
    actor: &str,
    reason: Option<String>,
) -> AlertRecord {
    let revision = last.revision + 1;
    AlertRecord {
        id: format!("{}:{revision}", last.alert_id),
        timestamp: now.max(last.timestamp),
        revision,
        action: what.to_owned(),
        status,
        actor: actor.to_owned(),
        reason: reason.or_else(|| last.reason.clone()),
        ..last.clone()
    }
}

fn push_evidence(evidence: &mut Vec<String>, id: String) {
    if evidence.len() < MAX_EVIDENCE {
        evidence.push(id);
    } else {
        // Keep the first half (how it started) and the newest.
        evidence.remove(MAX_EVIDENCE / 2);
        evidence.push(id);
    }
}

fn text_of(field: &model::fields::Field, event: &Event) -> Option<String> {
    Some(crate::rule::value_text(&(field.event?)(event)?))
}

/// A duration as rules write it: `500ms`, `30s`, `5m`, `2h`, `1d`.
pub(crate) fn show_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 => format!("{}ms", duration.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
pub(crate) mod tests;
