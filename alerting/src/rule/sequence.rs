//! `sequence`: `first` (at least `count` times) then `then` within `within`, per group; or,
//! with `absent`, `first` NOT followed by `then` within `within` (decided once event time
//! has passed the deadline).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use model::Event;

use super::Filter;

#[derive(Debug, Clone)]
pub struct Step {
    pub filter: Filter,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct Sequence {
    pub first: Step,
    pub then: Step,
    pub within: Duration,
    pub absent: bool,
}

/// The open sequences of one rule.
#[derive(Debug, Default)]
pub struct State {
    pub groups: HashMap<String, Group>,
}

/// One group's sequence in progress (kept across restarts, see [`crate::engine::Snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    /// Times (µs) and ids of the `first` events, newest last, at most `first.count`.
    firsts: VecDeque<(i64, String)>,
    /// `then` events counted since the first step completed.
    thens: Vec<String>,
    /// Absent mode: when the first step completed (µs).
    armed: Option<i64>,
}

/// The sequence completed (or, absent, timed out).
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub group: String,
    pub count: u64,
    pub first: Timestamp,
    pub evidence: Vec<String>,
}

impl Sequence {
    /// Feeds one event of `group`; `Some` when the sequence completed with it.
    pub fn observe(&self, state: &mut State, group: String, event: &Event) -> Option<Completed> {
        let at = event.timestamp.as_microsecond();
        let within = i64::try_from(self.within.as_micros()).unwrap_or(i64::MAX);
        let is_first = self.first.filter.matches(event);
        let is_then = self.then.filter.matches(event);
        if !is_first && !is_then {
            return None;
        }
        let entry = state.groups.entry(group.clone()).or_default();
        if is_then {
            let started = entry
                .firsts
                .iter()
                .filter(|(time, _)| *time <= at && *time >= at.saturating_sub(within))
                .count() as u64;
            if started >= self.first.count {
                if self.absent {
                    // It came: nothing to report.
                    state.groups.remove(&group);
                    return None;
                }
                entry.thens.push(event.id.to_string());
                if entry.thens.len() as u64 >= self.then.count {
                    let first = entry.firsts.front().map_or(at, |(time, _)| *time);
                    let mut evidence: Vec<String> =
                        entry.firsts.iter().map(|(_, id)| id.clone()).collect();
                    evidence.append(&mut entry.thens);
                    let count = evidence.len() as u64;
                    state.groups.remove(&group);
                    return Some(Completed {
                        group,
                        count,
                        first: Timestamp::from_microsecond(first).unwrap_or(event.timestamp),
                        evidence,
                    });
                }
                return None;
            }
        }
        if is_first {
            let position = entry.firsts.partition_point(|(time, _)| *time <= at);
            entry.firsts.insert(position, (at, event.id.to_string()));
            let cap = usize::try_from(self.first.count).unwrap_or(usize::MAX);
            while entry.firsts.len() > cap {
                entry.firsts.pop_front();
            }
            if self.absent && entry.firsts.len() as u64 >= self.first.count && entry.armed.is_none()
            {
                entry.armed = entry.firsts.back().map(|(time, _)| *time);
            }
        }
        None
    }

    /// Absent mode: the groups whose deadline event time `now` has passed without `then`.
    /// Also forgets groups whose first step is older than `within`.
    pub fn expire(&self, state: &mut State, now: Timestamp) -> Vec<Completed> {
        let now = now.as_microsecond();
        let within = i64::try_from(self.within.as_micros()).unwrap_or(i64::MAX);
        let mut done = Vec::new();
        state.groups.retain(|group, entry| {
            if let Some(armed) = entry.armed
                && self.absent
                && now > armed.saturating_add(within)
            {
                done.push(Completed {
                    group: group.clone(),
                    count: entry.firsts.len() as u64,
                    first: entry
                        .firsts
                        .front()
                        .and_then(|(time, _)| Timestamp::from_microsecond(*time).ok())
                        .unwrap_or(Timestamp::UNIX_EPOCH),
                    evidence: entry.firsts.iter().map(|(_, id)| id.clone()).collect(),
                });
                return false;
            }
            // A first step too old to complete any more.
            entry
                .firsts
                .back()
                .is_some_and(|(time, _)| *time >= now.saturating_sub(within))
        });
        done
    }

    pub fn n_groups(state: &State) -> usize {
        state.groups.len()
    }

    /// Drops the groups whose newest first-step event is oldest, down to `max`; returns how
    /// many went.
    pub fn evict(state: &mut State, max: usize) -> usize {
        if state.groups.len() <= max {
            return 0;
        }
        let mut ages: Vec<(i64, String)> = state
            .groups
            .iter()
            .map(|(key, group)| {
                (
                    group.firsts.back().map_or(i64::MIN, |(time, _)| *time),
                    key.clone(),
                )
            })
            .collect();
        ages.sort();
        let n = state.groups.len() - max;
        for (_, key) in ages.into_iter().take(n) {
            state.groups.remove(&key);
        }
        n
    }
}
