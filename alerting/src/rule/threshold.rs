//! `threshold`: at least `threshold` matching events, or distinct values of a field, within
//! a sliding `window` of event time, per group.
//!
//! Each group keeps the times of its newest matching events (at most `threshold` of them,
//! or per distinct value its newest time), sorted by event time, so a late event still
//! counts in the window it belongs to. Groups idle for longer than the window are swept.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use model::Event;
use model::fields::Field;

use super::{Filter, value_text};

/// How late an event may arrive (behind the newest of its group) and still count in the
/// window it belongs to.
pub const LATENESS: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Threshold {
    pub filter: Filter,
    pub window: Duration,
    pub threshold: u64,
    pub distinct: Option<&'static Field>,
}

/// The windows of one threshold rule.
#[derive(Debug, Default)]
pub struct State {
    pub groups: HashMap<String, Group>,
}

/// One group's window (kept across restarts, see [`crate::engine::Snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    /// (event time in µs, hash of the distinct value or 0, event id), sorted by time.
    entries: VecDeque<(i64, u64, Box<str>)>,
    newest: i64,
}

/// The distinct value as a hash (64 bits: a collision among the few values of one window is
/// far less likely than a mistyped rule; stable across builds, for snapshots).
fn value_hash(text: &str) -> u64 {
    super::stable_hash(&[text])
}

/// The window reached the threshold with this event.
#[derive(Debug, Clone, PartialEq)]
pub struct Reached {
    pub count: u64,
    pub first: Timestamp,
    pub evidence: Vec<String>,
}

impl Threshold {
    /// Counts `event` (which passed the filter) in `group`'s window; `Some` when the window
    /// holding it has reached the threshold.
    /// `with_evidence`: list the window's events (not needed while the group's alert is open:
    /// it only grows).
    pub fn observe(
        &self,
        state: &mut State,
        group: String,
        event: &Event,
        with_evidence: bool,
    ) -> Option<Reached> {
        let distinct = match self.distinct {
            Some(field) => value_hash(&value_text(&(field.event?)(event)?)),
            None => 0,
        };
        let at = event.timestamp.as_microsecond();
        let window = i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX);
        let cap = usize::try_from(self.threshold).unwrap_or(usize::MAX);
        let entries = state.groups.entry(group).or_insert_with(|| Group {
            entries: VecDeque::with_capacity(1),
            newest: i64::MIN,
        });
        entries.newest = entries.newest.max(at);
        let newest = entries.newest;
        let list = &mut entries.entries;
        if self.distinct.is_some() {
            // One entry per value: its newest time.
            if let Some(index) = list.iter().position(|(_, value, _)| *value == distinct) {
                if list[index].0 >= at {
                    return None;
                }
                list.remove(index);
            }
        }
        let position = list.partition_point(|(time, _, _)| *time <= at);
        list.insert(
            position,
            (at, distinct, event.id.to_string().into_boxed_str()),
        );
        // What no window within the lateness of the newest event can hold any more.
        let lateness = i64::try_from(LATENESS.as_micros()).unwrap_or(i64::MAX);
        let horizon = newest.saturating_sub(window).saturating_sub(lateness);
        while list.front().is_some_and(|(time, _, _)| *time < horizon) {
            list.pop_front();
        }
        // Of the windows that hold this event (a late one may sit in the middle of one), the
        // fullest: each starts at an entry within one window before the event.
        let lo = list.partition_point(|(time, _, _)| *time < at.saturating_sub(window));
        let mut best: Option<(usize, usize)> = None;
        // In order (nothing after it), the window ending at the event holds every other that
        // holds it: one count. Only a late event looks further.
        let candidates = if at >= newest { lo..lo } else { lo..list.len() };
        if at >= newest {
            best = Some((lo, list.len()));
        }
        for start in candidates {
            let begin = list[start].0;
            if begin > at {
                break;
            }
            let end = list.partition_point(|(time, _, _)| *time <= begin.saturating_add(window));
            if best.is_none_or(|(a, b)| end - start > b - a) {
                best = Some((start, end));
            }
        }
        let reached = best
            .filter(|(start, end)| (end - start) as u64 >= self.threshold)
            .map(|(start, end)| Reached {
                count: (end - start) as u64,
                first: Timestamp::from_microsecond(list[start].0).unwrap_or(event.timestamp),
                evidence: if with_evidence {
                    // The first and the newest of the window, at most MAX_EVIDENCE.
                    let half = model::alert::MAX_EVIDENCE / 2;
                    let n = end - start;
                    list.iter()
                        .skip(start)
                        .take(n)
                        .enumerate()
                        .filter(|(index, _)| n <= 2 * half || *index < half || *index >= n - half)
                        .map(|(_, (_, _, id))| id.to_string())
                        .collect()
                } else {
                    Vec::new()
                },
            });
        // Bounded: at most the threshold's worth of entries per window within the lateness.
        let bound =
            cap.saturating_mul(1 + (LATENESS.as_secs() / self.window.as_secs().max(1)) as usize);
        while list.len() > bound.max(cap) {
            list.pop_front();
        }
        reached
    }

    /// Forgets groups with nothing newer than `now - window`; returns how many went.
    pub fn sweep(&self, state: &mut State, now: Timestamp) -> usize {
        let window = i64::try_from(self.window.as_micros()).unwrap_or(i64::MAX);
        let lateness = i64::try_from(LATENESS.as_micros()).unwrap_or(i64::MAX);
        let horizon = now
            .as_microsecond()
            .saturating_sub(window)
            .saturating_sub(lateness);
        let before = state.groups.len();
        state.groups.retain(|_, group| group.newest >= horizon);
        before - state.groups.len()
    }

    pub fn n_groups(state: &State) -> usize {
        state.groups.len()
    }

    /// Drops the least recently seen groups down to `max`; returns how many went.
    pub fn evict(state: &mut State, max: usize) -> usize {
        if state.groups.len() <= max {
            return 0;
        }
        let mut ages: Vec<(i64, String)> = state
            .groups
            .iter()
            .map(|(key, group)| (group.newest, key.clone()))
            .collect();
        ages.sort();
        let n = state.groups.len() - max;
        for (_, key) in ages.into_iter().take(n) {
            state.groups.remove(&key);
        }
        n
    }
}
