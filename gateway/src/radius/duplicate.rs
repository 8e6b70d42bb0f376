//! Duplicate detection (RFC 5080 §2.2.2): a client that got no answer retransmits the same
//! packet (same source IP and port, Identifier and Request Authenticator). Within a window
//! the receiver answers it again with the response it already sent, without a new event.
//!
//! The cache is bounded in entries and in bytes; the oldest entries go first. An entry that
//! was evicted early only means a late retransmit is stored again: the collector sees a
//! second session update with the same content, never a lost one.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What makes two datagrams the same request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RequestKey {
    pub from: SocketAddr,
    pub identifier: u8,
    pub authenticator: [u8; 16],
}

/// Recently answered requests and their responses.
#[derive(Debug)]
pub(crate) struct DuplicateCache {
    window: Duration,
    max_entries: usize,
    max_bytes: usize,
    n_bytes: usize,
    responses: HashMap<RequestKey, Vec<u8>>,
    /// Insertion order, for expiry and eviction.
    order: VecDeque<(Instant, RequestKey)>,
}

impl DuplicateCache {
    pub(crate) fn new(window: Duration, max_entries: usize, max_bytes: usize) -> DuplicateCache {
        DuplicateCache {
            window,
            max_entries: max_entries.max(1),
            max_bytes,
            n_bytes: 0,
            responses: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The response already sent for this request, if it came within the window.
    pub(crate) fn get(&mut self, key: &RequestKey, now: Instant) -> Option<&[u8]> {
        self.expire(now);
        self.responses.get(key).map(Vec::as_slice)
    }

    /// Remembers the response to a request.
    pub(crate) fn insert(&mut self, key: RequestKey, response: Vec<u8>, now: Instant) {
        self.expire(now);
        if let Some(existing) = self.responses.get_mut(&key) {
            // Callers look up first, so this does not happen; keep the first slot in order.
            self.n_bytes = self.n_bytes - existing.len() + response.len();
            *existing = response;
            return;
        }
        self.n_bytes += response.len();
        self.responses.insert(key, response);
        self.order.push_back((now, key));
        while self.responses.len() > self.max_entries || self.n_bytes > self.max_bytes {
            if !self.evict_oldest() {
                break;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.responses.len()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((inserted, _)) = self.order.front() {
            if now.saturating_duration_since(*inserted) < self.window {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Drops the oldest entry. Returns false when there is nothing left.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, key)) = self.order.pop_front() else {
            return false;
        };
        if let Some(response) = self.responses.remove(&key) {
            self.n_bytes -= response.len();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(identifier: u8) -> RequestKey {
        RequestKey {
            from: SocketAddr::from(([127, 0, 0, 1], 5000)),
            identifier,
            authenticator: [identifier; 16],
        }
    }

    #[test]
    fn a_retransmit_within_the_window_gets_the_same_response() {
        let start = Instant::now();
        let mut cache = DuplicateCache::new(Duration::from_secs(30), 10, 1 << 20);
        cache.insert(key(1), vec![5, 1], start);
        assert_eq!(
            cache.get(&key(1), start + Duration::from_secs(29)),
            Some(&[5, 1][..])
        );
        assert_eq!(cache.get(&key(2), start), None);
        let other_port = RequestKey {
            from: SocketAddr::from(([127, 0, 0, 1], 5001)),
            ..key(1)
        };
        assert_eq!(cache.get(&other_port, start), None);
        assert_eq!(cache.get(&key(1), start + Duration::from_secs(30)), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn entries_and_bytes_are_bounded() {
        let start = Instant::now();
        let mut cache = DuplicateCache::new(Duration::from_secs(30), 3, 1 << 20);
        for identifier in 0..10 {
            cache.insert(key(identifier), vec![identifier; 20], start);
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&key(6), start).is_none());
        assert!(cache.get(&key(9), start).is_some());

        let mut cache = DuplicateCache::new(Duration::from_secs(30), 100, 50);
        for identifier in 0..10 {
            cache.insert(key(identifier), vec![identifier; 20], start);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.n_bytes, 40);
    }

    #[test]
    fn reinserting_a_key_keeps_the_accounting_right() {
        let start = Instant::now();
        let mut cache = DuplicateCache::new(Duration::from_secs(30), 2, 1 << 20);
        cache.insert(key(1), vec![1; 20], start);
        cache.insert(key(1), vec![1; 30], start + Duration::from_secs(1));
        assert_eq!(cache.n_bytes, 30);
        cache.insert(key(2), vec![2; 20], start + Duration::from_secs(2));
        assert_eq!(
            cache.get(&key(1), start + Duration::from_secs(2)),
            Some(&[1; 30][..])
        );
        assert_eq!(cache.get(&key(1), start + Duration::from_secs(30)), None);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.n_bytes, 20);
    }
}
