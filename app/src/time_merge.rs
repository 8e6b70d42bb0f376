//! `tunnelwatch ingest` reads all its log files at once and hands their events on in time
//! order, window by window ([`TimeMerge`]), so that the sources of one period meet as they do
//! live. Read one after the other, a FreeRADIUS detail file read after an hours-long charon
//! log would come hours "late", beyond the time the collector keeps closed sessions for the
//! other sources' reports of them (ARCHITECTURE.md, the sessionizer's reordering window).
//!
//! Pure: the caller feeds each input's events in file order and submits what
//! [`TimeMerge::next_window`] gives, each input's slice as its own batch (so that what was
//! stored is counted per file).

use std::collections::VecDeque;

use jiff::{SignedDuration, Timestamp};
use model::{Event, EventBody};

/// How much time one window spans: well within the collector's ten-minute reordering window.
pub const WINDOW: SignedDuration = SignedDuration::from_secs(300);

/// At most this many events of one input per slice.
pub const MAX_SLICE: usize = 5000;

#[derive(Debug, Default)]
struct Input {
    /// Events read and not handed on yet, each with the time it is ordered by.
    buffer: VecDeque<(Timestamp, Event)>,
    done: bool,
    /// The ordering time of the input's previous event.
    last: Option<Timestamp>,
}

/// Merges inputs by time, window by window. See the module docs.
#[derive(Debug)]
pub struct TimeMerge {
    inputs: Vec<Input>,
}

impl TimeMerge {
    pub fn new(n_inputs: usize) -> TimeMerge {
        TimeMerge {
            inputs: (0..n_inputs).map(|_| Input::default()).collect(),
        }
    }

    /// The inputs to read more of before [`TimeMerge::next_window`]: not done, nothing
    /// buffered.
    pub fn needs(&self) -> Vec<usize> {
        self.inputs
            .iter()
            .enumerate()
            .filter(|(_, input)| !input.done && input.buffer.is_empty())
            .map(|(idx, _)| idx)
            .collect()
    }

    /// The next events of input `idx`, in file order. A rejected line (a `pipeline_error`,
    /// timed when it was read) is ordered with the event before it, so that it does not hold
    /// the rest of its file back.
    pub fn push(&mut self, idx: usize, events: Vec<Event>) {
        let Some(input) = self.inputs.get_mut(idx) else {
            return;
        };
        for event in events {
            let at = match (&event.body, input.last) {
                (EventBody::PipelineError(_), Some(last)) => last,
                _ => event.timestamp,
            };
            input.last = Some(at);
            input.buffer.push_back((at, event));
        }
    }

    /// Input `idx` has no more events.
    pub fn close(&mut self, idx: usize) {
        if let Some(input) = self.inputs.get_mut(idx) {
            input.done = true;
        }
    }

    /// The events of the next window, as (input, events) slices in input order: from every
    /// input, what lies before the earliest buffered time plus [`WINDOW`] (at most
    /// [`MAX_SLICE`] each). Call when [`TimeMerge::needs`] is empty. `None` when everything
    /// was handed on.
    pub fn next_window(&mut self) -> Option<Vec<(usize, Vec<Event>)>> {
        let earliest = self
            .inputs
            .iter()
            .filter_map(|input| input.buffer.front().map(|(at, _)| *at))
            .min()?;
        let end = earliest.saturating_add(WINDOW).unwrap_or(Timestamp::MAX);
        let mut slices = Vec::new();
        for (idx, input) in self.inputs.iter_mut().enumerate() {
            let mut slice = Vec::new();
            while slice.len() < MAX_SLICE && input.buffer.front().is_some_and(|(at, _)| *at < end) {
                if let Some((_, event)) = input.buffer.pop_front() {
                    slice.push(event);
                }
            }
            // Nothing may stall the merge: the earliest input always gives something.
            if slice.is_empty()
                && input.buffer.front().is_some_and(|(at, _)| *at == earliest)
                && let Some((_, event)) = input.buffer.pop_front()
            {
                slice.push(event);
            }
            if !slice.is_empty() {
                slices.push((idx, slice));
            }
        }
        Some(slices)
    }
}

#[cfg(test)]
mod tests {
    use model::{EventId, Observer, PipelineError, RejectReason};

    use super::*;

    fn event(source: &str, seq: u64, second: i64) -> Event {
        Event {
            id: EventId::new(source, seq, 0),
            timestamp: Timestamp::from_second(1_796_000_000 + second).unwrap(),
            dataset: "test".to_owned(),
            observer: Observer::default(),
            original: String::new(),
            session_id: None,
            source_geo: None,
            body: EventBody::PipelineError(PipelineError {
                reason: RejectReason::Malformed,
                message: String::new(),
                original_len: 0,
            }),
        }
    }

    fn ordinary(source: &str, seq: u64, second: i64) -> Event {
        Event {
            body: EventBody::L2tp(model::L2tpEvent {
                peer: model::Peer::default(),
                change: model::L2tpChange::TunnelEstablished,
                tunnel_id: None,
                peer_tunnel_id: None,
                call_id: None,
                peer_call_id: None,
                reason: None,
            }),
            ..event(source, seq, second)
        }
    }

    /// Feeds `inputs` (each a list of seconds) in chunks of `chunk`, returns the order in
    /// which (input, seconds) came out, window by window.
    fn merged(inputs: &[Vec<i64>], chunk: usize) -> Vec<Vec<(usize, Vec<u64>)>> {
        let mut merge = TimeMerge::new(inputs.len());
        let mut cursors = vec![0; inputs.len()];
        let mut windows = Vec::new();
        loop {
            for idx in merge.needs() {
                let seconds = &inputs[idx][cursors[idx]..];
                if seconds.is_empty() {
                    merge.close(idx);
                    continue;
                }
                let take = seconds.len().min(chunk);
                let events = seconds[..take]
                    .iter()
                    .enumerate()
                    .map(|(offset, second)| {
                        // Ordinary events; the rejected-line case is its own test.
                        ordinary("in", (cursors[idx] + offset) as u64, *second)
                    })
                    .collect();
                cursors[idx] += take;
                merge.push(idx, events);
            }
            let Some(window) = merge.next_window() else {
                break;
            };
            windows.push(
                window
                    .into_iter()
                    .map(|(idx, events)| {
                        (
                            idx,
                            events
                                .iter()
                                .map(|event| (event.timestamp.as_second() - 1_796_000_000) as u64)
                                .collect(),
                        )
                    })
                    .collect(),
            );
        }
        windows
    }

    #[test]
    fn a_long_log_and_a_detail_file_come_out_by_time() {
        // An hours-long log, and accounting at its start and its end.
        let log: Vec<i64> = (0..10).map(|minute| minute * 600).collect();
        let detail = vec![1, 5_401];
        let windows = merged(&[log, detail], 3);
        let order: Vec<(usize, Vec<u64>)> = windows.into_iter().flatten().collect();
        assert_eq!(
            order,
            [
                (0, vec![0]),
                (1, vec![1]),
                (0, vec![600]),
                (0, vec![1200]),
                (0, vec![1800]),
                (0, vec![2400]),
                (0, vec![3000]),
                (0, vec![3600]),
                (0, vec![4200]),
                (0, vec![4800]),
                (0, vec![5400]),
                (1, vec![5401]),
            ]
        );
    }

    #[test]
    fn every_event_comes_out_once_in_file_order_whatever_the_times() {
        // Out of order within a file, far apart, equal: nothing lost, nothing twice, and
        // each input's events in its own order.
        let inputs = vec![
            vec![50, 10, 10, 9_000, 20],
            vec![],
            vec![5, 5, 5, 5, 5, 5, 5],
            vec![100_000],
        ];
        for chunk in [1, 2, 7] {
            let windows = merged(&inputs, chunk);
            let mut seen: Vec<Vec<u64>> = vec![Vec::new(); inputs.len()];
            for (idx, seconds) in windows.into_iter().flatten() {
                seen[idx].extend(seconds);
            }
            let expected: Vec<Vec<u64>> = inputs
                .iter()
                .map(|input| input.iter().map(|second| *second as u64).collect())
                .collect();
            assert_eq!(seen, expected, "chunk {chunk}");
        }
    }

    #[test]
    fn a_rejected_line_does_not_hold_its_file_back() {
        let mut merge = TimeMerge::new(2);
        let good = |seq, second| ordinary("log", seq, second);
        // A rejected line is timed when it was read (much later than the log's times).
        let rejected = event("log", 2, 1_000_000);
        merge.push(0, vec![good(1, 0), rejected, good(3, 10), good(4, 4_000)]);
        merge.close(0);
        merge.push(1, vec![good(1, 20)]);
        merge.close(1);
        let first = merge.next_window().unwrap();
        let log_seqs: Vec<u64> = first[0].1.iter().map(|event| event.id.seq).collect();
        assert_eq!(first[0].0, 0);
        assert_eq!(log_seqs, [1, 2, 3]);
        assert_eq!(first[1].0, 1);
    }
}
