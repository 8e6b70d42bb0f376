//! `baseline`: a rate against what is usual for it. Events that match are counted per group
//! in buckets of `bucket` (event time); each closed bucket teaches an exponentially weighted
//! mean and variance (`alpha`) of its seasonal slot: the hour of the week
//! (`seasonality = "hour_of_week"`, 168 slots: Monday 9:00 is compared with Mondays 9:00) or
//! one slot for all (`"none"`). Quiet buckets teach too (a count of 0). A bucket whose count
//! exceeds the slot's mean by `sigmas` standard deviations, and reaches `min_count`, fires,
//! but only once the group has been learnt for `warmup` and the slot has seen
//! [`MIN_SAMPLES`] buckets: a new gateway never pages on its first busy morning.
//!
//! Memory per group: one bucket in progress and the slots (12 bytes each). Pure.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use model::Event;
use serde::{Deserialize, Serialize};

use super::Filter;

/// Buckets a slot must have learnt from before it may fire.
pub const MIN_SAMPLES: u32 = 3;
/// Quiet buckets taught at once at most when a group wakes after a long silence (a week of
/// 5-minute buckets); beyond, the slots are taught a whole week of silence.
const MAX_GAP_BUCKETS: i64 = 7 * 24 * 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seasonality {
    HourOfWeek,
    None,
}

impl Seasonality {
    fn slots(self) -> usize {
        match self {
            Seasonality::HourOfWeek => 168,
            Seasonality::None => 1,
        }
    }

    /// The slot of a bucket starting at `start` (µs since the epoch, UTC).
    fn slot(self, start: i64) -> usize {
        match self {
            Seasonality::None => 0,
            Seasonality::HourOfWeek => {
                let hours = start.div_euclid(3_600_000_000);
                // 1970-01-01 was a Thursday: shift so that slot 0 is Monday 00:00 UTC.
                (hours + 72).rem_euclid(168) as usize
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Baseline {
    pub filter: Filter,
    pub bucket: Duration,
    pub seasonality: Seasonality,
    pub alpha: f64,
    pub sigmas: f64,
    pub min_count: u64,
    pub warmup: Duration,
}

/// What one slot has learnt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    pub mean: f32,
    pub var: f32,
    pub n: u32,
}

/// One group's learning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Learnt {
    /// When the group was first seen (µs).
    pub since: i64,
    /// The bucket in progress: its start (µs) and count.
    pub bucket: i64,
    pub count: u64,
    /// Whether the bucket in progress has fired already.
    pub fired: bool,
    /// The newest event (µs).
    #[serde(default)]
    pub last_event: i64,
    pub slots: Vec<Slot>,
    /// Evidence of the bucket in progress (its first events).
    #[serde(default)]
    pub evidence: Vec<String>,
}

/// Per group.
#[derive(Debug, Default)]
pub struct State {
    pub groups: HashMap<String, Learnt>,
}

impl Baseline {
    /// What must not change for what was learnt to be taken back after a restart.
    pub fn shape(&self) -> String {
        format!(
            "bucket={}s seasonality={:?}",
            self.bucket.as_secs(),
            self.seasonality
        )
    }
}

/// A bucket above its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub count: u64,
    pub first: Timestamp,
    pub evidence: Vec<String>,
    pub reason: String,
}

const MAX_BUCKET_EVIDENCE: usize = 20;

impl Baseline {
    /// Slots per group.
    pub fn seasonality_slots(&self) -> usize {
        self.seasonality.slots()
    }

    fn micros(duration: Duration) -> i64 {
        i64::try_from(duration.as_micros())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    fn bucket_of(&self, at: i64) -> i64 {
        let size = Self::micros(self.bucket);
        at.div_euclid(size) * size
    }

    /// Teaches `slot` one bucket's count.
    fn learn(&self, slot: &mut Slot, count: f64) {
        if slot.n == 0 {
            slot.mean = count as f32;
            slot.var = 0.0;
        } else {
            let mean = f64::from(slot.mean);
            let diff = count - mean;
            let incr = self.alpha * diff;
            let new_mean = mean + incr;
            let new_var = (1.0 - self.alpha) * (f64::from(slot.var) + diff * incr);
            slot.mean = new_mean as f32;
            slot.var = new_var.max(0.0) as f32;
        }
        slot.n = slot.n.saturating_add(1);
    }

    /// Closes the buckets of `learnt` before `bucket` (teaching their counts, and zeros for
    /// the quiet ones between).
    fn advance(&self, learnt: &mut Learnt, bucket: i64) {
        if bucket <= learnt.bucket {
            return;
        }
        let size = Self::micros(self.bucket);
        let closed = learnt.count as f64;
        let slot = self.seasonality.slot(learnt.bucket);
        self.learn(&mut learnt.slots[slot], closed);
        let gap = ((bucket - learnt.bucket) / size - 1).clamp(0, MAX_GAP_BUCKETS);
        for k in 1..=gap {
            let start = learnt.bucket + k * size;
            let slot = self.seasonality.slot(start);
            self.learn(&mut learnt.slots[slot], 0.0);
        }
        learnt.bucket = bucket;
        learnt.count = 0;
        learnt.fired = false;
        learnt.evidence.clear();
    }

    /// What is usual for the bucket starting at `bucket`, and how far above it may go: the
    /// limit, or `None` while it is still learning.
    pub fn limit(&self, learnt: &Learnt, bucket: i64) -> Option<(f64, f64)> {
        let slot = learnt.slots[self.seasonality.slot(bucket)];
        let warm = bucket.saturating_sub(learnt.since) >= Self::micros(self.warmup)
            && slot.n >= MIN_SAMPLES;
        if !warm {
            return None;
        }
        let mean = f64::from(slot.mean);
        let sd = f64::from(slot.var).sqrt();
        // At least one event above the mean, so that a flat history of zeros does not fire
        // on its first event (min_count floors it too).
        let limit = (mean + self.sigmas * sd).max(mean + 1.0);
        Some((mean, limit))
    }

    pub fn observe(&self, state: &mut State, group: String, event: &Event) -> Option<Found> {
        let at = event.timestamp.as_microsecond();
        let bucket = self.bucket_of(at);
        let learnt = state.groups.entry(group).or_insert_with(|| Learnt {
            since: bucket,
            bucket,
            count: 0,
            fired: false,
            last_event: at,
            slots: vec![Slot::default(); self.seasonality.slots()],
            evidence: Vec::new(),
        });
        if bucket < learnt.bucket {
            // A late event of a closed bucket: that bucket has taught its slot already.
            return None;
        }
        self.advance(learnt, bucket);
        learnt.last_event = learnt.last_event.max(at);
        learnt.count += 1;
        if learnt.evidence.len() < MAX_BUCKET_EVIDENCE {
            learnt.evidence.push(event.id.to_string());
        }
        if learnt.fired || learnt.count < self.min_count {
            return None;
        }
        let (mean, limit) = self.limit(learnt, bucket)?;
        if (learnt.count as f64) <= limit {
            return None;
        }
        learnt.fired = true;
        Some(Found {
            count: learnt.count,
            first: Timestamp::from_microsecond(bucket).unwrap_or(event.timestamp),
            evidence: learnt.evidence.clone(),
            reason: format!(
                "{} events in {} where {:.1} are usual for this hour (limit {:.1})",
                learnt.count,
                crate::engine::show_duration(self.bucket),
                mean,
                limit
            ),
        })
    }

    /// Closes the buckets that ended over a minute before `now` (quiet ones teach their
    /// zeros; the minute lets late events in); forgets groups with no event for four weeks.
    pub fn sweep(&self, state: &mut State, now: Timestamp) {
        let now = now.as_microsecond();
        let bucket = self.bucket_of(now.saturating_sub(60_000_000));
        let horizon = now.saturating_sub(28 * 86_400_000_000);
        state.groups.retain(|_, learnt| {
            self.advance(learnt, bucket);
            learnt.last_event >= horizon
        });
    }

    /// Groups learnt.
    pub fn groups(state: &State) -> usize {
        state.groups.len()
    }

    /// Forgets the groups with the oldest newest event beyond `max` groups; how many went.
    pub fn evict(state: &mut State, max: usize) -> usize {
        if state.groups.len() <= max {
            return 0;
        }
        let mut newest: Vec<(i64, String)> = state
            .groups
            .iter()
            .map(|(group, learnt)| (learnt.last_event, group.clone()))
            .collect();
        newest.sort();
        let excess = state.groups.len() - max;
        for (_, group) in newest.into_iter().take(excess) {
            state.groups.remove(&group);
        }
        excess
    }
}

#[cfg(test)]
mod tests;
