//! A bounded map of recent answers: [`Cache`], with CLOCK eviction (second chance).
//!
//! A hit sets the entry's reference bit; to make room, the clock hand sweeps the slots,
//! clearing bits, and evicts the first entry whose bit was already clear. That keeps the
//! addresses seen again and again (a few busy clients, a NAT) and lets one-off addresses
//! go, at the cost of one flag write per hit instead of a list relink (LRU).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use model::Geo;

/// The answer for one address: `None` is "unknown" (not in the database).
pub type Answer = Option<Arc<Geo>>;

#[derive(Debug)]
struct Slot {
    ip: IpAddr,
    answer: Answer,
    referenced: bool,
}

/// At most `capacity` answers, keyed by address. A capacity of 0 caches nothing.
#[derive(Debug)]
pub struct Cache {
    capacity: usize,
    index: HashMap<IpAddr, usize>,
    slots: Vec<Slot>,
    hand: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        // Grow as addresses come rather than reserving a large, perhaps unused, table.
        Cache {
            capacity,
            index: HashMap::new(),
            slots: Vec::new(),
            hand: 0,
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn get(&mut self, ip: &IpAddr) -> Option<&Answer> {
        let slot_idx = *self.index.get(ip)?;
        let slot = &mut self.slots[slot_idx];
        slot.referenced = true;
        Some(&slot.answer)
    }

    pub fn insert(&mut self, ip: IpAddr, answer: Answer) {
        if self.capacity == 0 {
            return;
        }
        if let Some(&slot_idx) = self.index.get(&ip) {
            self.slots[slot_idx].answer = answer;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(ip, self.slots.len());
            self.slots.push(Slot {
                ip,
                answer,
                referenced: false,
            });
            return;
        }
        // Full: sweep to an entry that was not used since the hand last passed. At most two
        // turns, since the first clears every bit.
        loop {
            let slot = &mut self.slots[self.hand];
            if slot.referenced {
                slot.referenced = false;
                self.hand = (self.hand + 1) % self.capacity;
                continue;
            }
            self.index.remove(&slot.ip);
            self.index.insert(ip, self.hand);
            *slot = Slot {
                ip,
                answer,
                referenced: false,
            };
            self.hand = (self.hand + 1) % self.capacity;
            return;
        }
    }

    /// Forgets everything (the databases changed).
    pub fn clear(&mut self) {
        self.index.clear();
        self.slots.clear();
        self.hand = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0101_0000 + n))
    }

    fn answer(city: &str) -> Answer {
        Some(Arc::new(Geo {
            city_name: Some(city.to_owned()),
            ..Geo::default()
        }))
    }

    #[test]
    fn it_stays_within_capacity_and_keeps_what_is_used() {
        let mut cache = Cache::new(3);
        cache.insert(ip(1), answer("a"));
        cache.insert(ip(2), None);
        cache.insert(ip(3), answer("c"));
        assert!(cache.get(&ip(1)).is_some());
        assert!(cache.get(&ip(3)).is_some());
        // ip(2) is the only one not used since it came: it goes.
        cache.insert(ip(4), answer("d"));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&ip(2)).is_none());
        assert_eq!(
            cache
                .get(&ip(1))
                .cloned()
                .flatten()
                .unwrap()
                .city_name
                .as_deref(),
            Some("a")
        );
        for n in 10..1000 {
            cache.insert(ip(n), None);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.index.len(), cache.slots.len());
        for (slot_idx, slot) in cache.slots.iter().enumerate() {
            assert_eq!(cache.index[&slot.ip], slot_idx);
        }
    }

    #[test]
    fn zero_capacity_caches_nothing_and_clear_forgets() {
        let mut cache = Cache::new(0);
        cache.insert(ip(1), answer("a"));
        assert!(cache.get(&ip(1)).is_none());
        let mut cache = Cache::new(8);
        cache.insert(ip(1), answer("a"));
        cache.insert(ip(1), answer("b"));
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert!(cache.get(&ip(1)).is_none());
        cache.insert(ip(2), None);
        assert_eq!(cache.get(&ip(2)), Some(&None));
    }
}
