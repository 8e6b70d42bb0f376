//! `new_terms`: a value (of one field, or several together) that a group has not had within
//! `history`: a VPN user calling an API path they never called, a user from a new device
//! identity. A group's first `learn` only teaches (everything is new to a group just seen).
//!
//! Terms are kept as 64-bit hashes with when each was last seen, at most [`MAX_TERMS`] per
//! group (the least recently seen go first, counted by the engine's eviction of groups).

use std::collections::HashMap;
use std::time::Duration;

use model::Event;
use model::fields::Field;
use serde::{Deserialize, Serialize};

use super::{Filter, value_text};

/// Terms kept per group at most.
pub const MAX_TERMS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct NewTerms {
    pub filter: Filter,
    pub fields: Vec<&'static Field>,
    pub history: Duration,
    pub learn: Duration,
}

/// One group's terms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Known {
    /// When the group was first seen (µs).
    pub since: i64,
    /// Term hash → last seen (µs).
    pub terms: HashMap<u64, i64>,
    /// The newest event (µs).
    pub last_event: i64,
}

#[derive(Debug, Default)]
pub struct State {
    pub groups: HashMap<String, Known>,
}

/// A new term.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub evidence: Vec<String>,
    pub reason: String,
}

impl NewTerms {
    fn micros(duration: Duration) -> i64 {
        i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
    }

    /// The term of an event: its fields' values (`None` if one is missing).
    fn term(&self, event: &Event) -> Option<Vec<String>> {
        self.fields
            .iter()
            .map(|field| (field.event?)(event).map(|value| value_text(&value)))
            .collect()
    }

    pub fn observe(&self, state: &mut State, group: String, event: &Event) -> Option<Found> {
        let term = self.term(event)?;
        let values: Vec<&str> = term.iter().map(String::as_str).collect();
        let hash = super::stable_hash(&values);
        let at = event.timestamp.as_microsecond();
        let known = state.groups.entry(group).or_insert_with(|| Known {
            since: at,
            terms: HashMap::new(),
            last_event: at,
        });
        known.since = known.since.min(at);
        known.last_event = known.last_event.max(at);
        let horizon = at.saturating_sub(Self::micros(self.history));
        let seen = known.terms.get(&hash).copied();
        let learning = at.saturating_sub(known.since) < Self::micros(self.learn);
        let entry = known.terms.entry(hash).or_insert(at);
        *entry = (*entry).max(at);
        if known.terms.len() > MAX_TERMS {
            // The least recently seen go.
            let mut by_age: Vec<(i64, u64)> = known
                .terms
                .iter()
                .map(|(hash, last)| (*last, *hash))
                .collect();
            by_age.sort_unstable();
            let excess = known.terms.len() - MAX_TERMS;
            for (_, hash) in by_age.into_iter().take(excess) {
                known.terms.remove(&hash);
            }
        }
        let new = seen.is_none_or(|last| last < horizon);
        if !new || learning {
            return None;
        }
        let names: Vec<&str> = self.fields.iter().map(|field| field.name).collect();
        let shown = names
            .iter()
            .zip(&term)
            .map(|(name, value)| format!("{name} = {value}"))
            .collect::<Vec<_>>()
            .join(", ");
        Some(Found {
            evidence: vec![event.id.to_string()],
            reason: format!(
                "new within {} days: {shown}",
                self.history.as_secs() / 86_400
            ),
        })
    }

    /// Forgets terms older than the history, and groups with nothing left.
    pub fn sweep(&self, state: &mut State, now: jiff::Timestamp) {
        let horizon = now
            .as_microsecond()
            .saturating_sub(Self::micros(self.history));
        state.groups.retain(|_, known| {
            known.terms.retain(|_, last| *last >= horizon);
            known.last_event >= horizon
        });
    }

    /// Forgets the groups with the oldest newest event beyond `max` groups; how many went.
    pub fn evict(state: &mut State, max: usize) -> usize {
        if state.groups.len() <= max {
            return 0;
        }
        let mut newest: Vec<(i64, String)> = state
            .groups
            .iter()
            .map(|(group, known)| (known.last_event, group.clone()))
            .collect();
        newest.sort();
        let excess = state.groups.len() - max;
        for (_, group) in newest.into_iter().take(excess) {
            state.groups.remove(&group);
        }
        excess
    }
}
