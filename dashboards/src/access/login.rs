//! Signed-in browsers and failed logins, both pure state over a clock the caller passes.
//!
//! [`Sessions`]: server-side sessions behind a random cookie (only its SHA-256 is kept), each
//! with its CSRF token, idle and absolute timeouts, ended server-side by logout.
//! [`Throttle`]: failed logins counted per account and per source address; from the fourth,
//! each further attempt waits twice as long as the one before (1 s, 2 s, 4 s … at most 60 s),
//! and the tenth locks the key for 15 minutes. Both are bounded in memory.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

use super::Result;
use super::secret::{hex, random_bytes, token_hash};

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    pub user: String,
    /// Sent back by the browser with every state-changing request.
    pub csrf_token: String,
    pub source_ip: Option<std::net::IpAddr>,
    pub created: Timestamp,
    pub last_seen: Timestamp,
}

/// How long sessions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
    /// Sessions kept at most; the least recently used goes first.
    pub max_sessions: usize,
}

#[derive(Debug)]
pub(crate) struct Sessions {
    limits: SessionLimits,
    by_hash: HashMap<[u8; 32], LoginSession>,
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            by_hash: HashMap::new(),
        }
    }

    /// Starts a session: a new random id (never one the browser had before) and its CSRF
    /// token. Returns the cookie value.
    pub fn start(
        &mut self,
        user: &str,
        source_ip: Option<std::net::IpAddr>,
        now: Timestamp,
    ) -> Result<(String, LoginSession)> {
        self.expire(now);
        if self.by_hash.len() >= self.limits.max_sessions
            && let Some(oldest) = self
                .by_hash
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(hash, _)| *hash)
        {
            self.by_hash.remove(&oldest);
        }
        let id = hex(&random_bytes::<32>()?);
        let session = LoginSession {
            user: user.to_owned(),
            csrf_token: hex(&random_bytes::<32>()?),
            source_ip,
            created: now,
            last_seen: now,
        };
        self.by_hash.insert(token_hash(&id), session.clone());
        Ok((id, session))
    }

    /// The live session behind a cookie value, touched; `None` when unknown, ended or
    /// timed out (and then forgotten).
    pub fn touch(&mut self, id: &str, now: Timestamp) -> Option<LoginSession> {
        let hash = token_hash(id);
        let session = self.by_hash.get_mut(&hash)?;
        if !alive(session, &self.limits, now) {
            self.by_hash.remove(&hash);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends one session.
    pub fn end(&mut self, id: &str) -> Option<LoginSession> {
        self.by_hash.remove(&token_hash(id))
    }

    /// Ends every session of `user` (disabled, password changed, role changed).
    pub fn end_user(&mut self, user: &str) -> usize {
        let before = self.by_hash.len();
        self.by_hash.retain(|_, session| session.user != user);
        before - self.by_hash.len()
    }

    pub fn expire(&mut self, now: Timestamp) {
        let limits = self.limits;
        self.by_hash
            .retain(|_, session| alive(session, &limits, now));
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }
}

fn alive(session: &LoginSession, limits: &SessionLimits, now: Timestamp) -> bool {
    let since = |at: Timestamp| now.duration_since(at).unsigned_abs();
    since(session.last_seen) < limits.idle && since(session.created) < limits.absolute
}

/// Free failed attempts before the delays start.
const FREE_FAILURES: u32 = 3;
const MAX_DELAY: Duration = Duration::from_secs(60);
/// Failures that lock the key, and for how long.
const LOCK_AFTER: u32 = 10;
const LOCK_FOR: Duration = Duration::from_secs(15 * 60);
/// Keys forgotten this long after their last failure.
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failures {
    count: u32,
    last: Timestamp,
}

/// Why an attempt must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    pub retry_after: Duration,
    /// Locked (ten failures), rather than slowed down.
    pub locked: bool,
}

#[derive(Debug)]
pub(crate) struct Throttle {
    max_keys: usize,
    keys: HashMap<String, Failures>,
    /// Keys dropped to stay within `max_keys` (a flood of source addresses).
    pub n_evicted: u64,
}

impl Throttle {
    pub fn new(max_keys: usize) -> Throttle {
        Throttle {
            max_keys,
            keys: HashMap::new(),
            n_evicted: 0,
        }
    }

    /// May an attempt for all of `keys` go ahead now? The longest wait wins.
    pub fn check(&self, keys: &[String], now: Timestamp) -> Option<Wait> {
        keys.iter()
            .filter_map(|key| self.keys.get(key))
            .filter_map(|failures| wait_for(failures, now))
            .max_by_key(|wait| wait.retry_after)
    }

    pub fn failed(&mut self, keys: &[String], now: Timestamp) {
        if self.keys.len() + keys.len() > self.max_keys {
            self.keys.retain(|_, failures| {
                now.duration_since(failures.last).unsigned_abs() < FORGET_AFTER
            });
        }
        for key in keys {
            if !self.keys.contains_key(key)
                && self.keys.len() >= self.max_keys
                && let Some(oldest) = self
                    .keys
                    .iter()
                    .min_by_key(|(_, failures)| failures.last)
                    .map(|(key, _)| key.clone())
            {
                self.keys.remove(&oldest);
                self.n_evicted += 1;
            }
            let failures = self.keys.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
            });
            failures.count = failures.count.saturating_add(1);
            failures.last = now;
        }
    }

    /// A successful login clears the account's count (not the address's: one right
    /// password does not excuse the spraying before it).
    pub fn succeeded(&mut self, key: &str) {
        self.keys.remove(key);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

fn wait_for(failures: &Failures, now: Timestamp) -> Option<Wait> {
    let since = now.duration_since(failures.last).unsigned_abs();
    let (delay, locked) = if failures.count >= LOCK_AFTER {
        (LOCK_FOR, true)
    } else if failures.count > FREE_FAILURES {
        let doublings = failures.count - FREE_FAILURES - 1;
        (
            Duration::from_secs(1u64 << doublings.min(6)).min(MAX_DELAY),
            false,
        )
    } else {
        return None;
    };
    (since < delay).then(|| Wait {
        retry_after: delay - since,
        locked,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn limits() -> SessionLimits {
        SessionLimits {
            idle: Duration::from_secs(60),
            absolute: Duration::from_secs(300),
            max_sessions: 3,
        }
    }

    #[test]
    fn a_session_lives_until_idle_absolute_or_logout() {
        let mut sessions = Sessions::new(limits());
        let (id, session) = sessions.start("alice", None, at(0)).unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(session.csrf_token.len(), 64);
        assert_ne!(id, session.csrf_token);
        // Touched within the idle timeout, up to the absolute one.
        for second in [50, 100, 150, 200, 250] {
            assert!(sessions.touch(&id, at(second)).is_some(), "{second}");
        }
        assert_eq!(sessions.touch(&id, at(301)), None, "absolute timeout");
        let (id, _) = sessions.start("alice", None, at(400)).unwrap();
        assert_eq!(sessions.touch(&id, at(461)), None, "idle timeout");
        let (id, _) = sessions.start("alice", None, at(500)).unwrap();
        assert!(sessions.end(&id).is_some());
        assert_eq!(sessions.touch(&id, at(501)), None, "after logout");
        // A cookie from elsewhere is simply unknown.
        assert_eq!(sessions.touch("0".repeat(64).as_str(), at(501)), None);
    }

    #[test]
    fn sessions_are_bounded_and_end_per_user() {
        let mut sessions = Sessions::new(limits());
        let (first, _) = sessions.start("a", None, at(0)).unwrap();
        sessions.start("b", None, at(1)).unwrap();
        sessions.start("b", None, at(2)).unwrap();
        sessions.start("c", None, at(3)).unwrap();
        assert_eq!(sessions.len(), 3);
        assert_eq!(sessions.touch(&first, at(4)), None, "the oldest went first");
        assert_eq!(sessions.end_user("b"), 2);
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn failures_slow_down_then_lock() {
        let mut throttle = Throttle::new(100);
        let keys = vec!["user:alice".to_owned(), "ip:192.0.2.1".to_owned()];
        for n in 0..3 {
            assert_eq!(throttle.check(&keys, at(n)), None);
            throttle.failed(&keys, at(n));
        }
        assert_eq!(throttle.check(&keys, at(3)), None, "three are free");
        throttle.failed(&keys, at(3));
        // The fourth failure: wait 1 s; the fifth: 2 s; the sixth: 4 s.
        assert_eq!(
            throttle.check(&keys, at(3)).map(|wait| wait.retry_after),
            Some(Duration::from_secs(1))
        );
        assert_eq!(throttle.check(&keys, at(4)), None);
        throttle.failed(&keys, at(4));
        assert!(throttle.check(&keys, at(5)).is_some());
        assert_eq!(throttle.check(&keys, at(6)), None);
        throttle.failed(&keys, at(6));
        assert_eq!(
            throttle.check(&keys, at(6)).map(|wait| wait.retry_after),
            Some(Duration::from_secs(4))
        );
        // Another account from the same address waits too; the same account from elsewhere too.
        assert!(
            throttle
                .check(&["ip:192.0.2.1".to_owned()], at(7))
                .is_some()
        );
        assert!(throttle.check(&["user:alice".to_owned()], at(7)).is_some());
        assert_eq!(throttle.check(&["user:bob".to_owned()], at(7)), None);
        for n in 0..4 {
            throttle.failed(&keys, at(100 + n));
        }
        let wait = throttle.check(&keys, at(104)).unwrap();
        assert!(wait.locked);
        assert!(wait.retry_after > Duration::from_secs(14 * 60));
        // A success clears the account, not the address.
        throttle.succeeded("user:alice");
        assert!(
            throttle
                .check(&["user:alice".to_owned()], at(104))
                .is_none()
        );
        assert!(
            throttle
                .check(&["ip:192.0.2.1".to_owned()], at(104))
                .is_some()
        );
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded_and_is_counted() {
        let mut throttle = Throttle::new(10);
        for n in 0..50 {
            throttle.failed(&[format!("ip:10.0.0.{n}")], at(n));
        }
        assert!(throttle.len() <= 10);
        assert_eq!(throttle.n_evicted, 40);
    }
}
