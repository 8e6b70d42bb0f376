//! `state`: what is true of a user's VPN right now, rather than a count of events. Checks:
//! - `weak_crypto`: an IKE_SA or CHILD_SA came up with an algorithm of `weak_algorithms`
//!   (its `vpn.proposal`, as strongSwan prints it: `IKE:3DES_CBC/HMAC_SHA1_96/PRF_HMAC_SHA1/
//!   MODP_1024`). The default list is the seed's crypto recommendations: no DES or 3DES, no
//!   MD5 or SHA-1 integrity or PRF, no Diffie-Hellman group below 14 (nor the RFC 5114
//!   groups 22 to 24, which RFC 8247 retires); the rule may replace it.
//! - `concurrent_sessions`: a group (by default the user) has more than `limit` IKE_SAs up
//!   at once, across every gateway. An SA counts from its `established` event until it is
//!   deleted, lost, or rekeyed into another (which then counts instead); one that never says
//!   goodbye (a lost agent) stops counting after `max_session_age`.
//! - `cert_expiry`: a certificate the gateway holds (its certificates source reads them) that
//!   expires within `days`, or has expired.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use model::{Event, EventBody, SaChange};

use super::Filter;

/// The algorithms the default `weak_algorithms` list names: strongSwan's spelling, a
/// trailing `*` matching any suffix.
pub const DEFAULT_WEAK_ALGORITHMS: &[&str] = &[
    "DES_CBC",
    "3DES_CBC",
    "DES_IV32",
    "DES_IV64",
    "BLOWFISH_CBC*",
    "CAST_CBC*",
    "NULL",
    "ENCR_NULL",
    "HMAC_MD5*",
    "PRF_HMAC_MD5",
    "HMAC_SHA1*",
    "PRF_HMAC_SHA1",
    "AES_XCBC_96",
    "MODP_768",
    "MODP_1024",
    "MODP_1536",
    "MODP_1024_160",
    "MODP_2048_224",
    "MODP_2048_256",
    "ECP_192",
    "ECP_224",
];

/// Most algorithm patterns a rule may list.
pub const MAX_PATTERNS: usize = 200;

#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    WeakCrypto {
        /// Upper-case patterns; a trailing `*` matches any suffix.
        weak: Vec<String>,
    },
    ConcurrentSessions {
        limit: u64,
        max_age: Duration,
    },
    CertExpiry {
        within: Duration,
    },
}

#[derive(Debug, Clone)]
pub struct StateRule {
    pub filter: Filter,
    pub check: Check,
}

/// The IKE_SAs of one group that are up: by (gateway, unique id), since when (µs) and the
/// event that said so.
type Up = BTreeMap<(String, u64), (i64, String)>;

/// Per group: the IKE_SAs up.
#[derive(Debug, Default)]
pub struct State {
    groups: HashMap<String, Up>,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub evidence: Vec<String>,
    pub reason: String,
}

impl StateRule {
    /// The events a check reads, before the rule's own filter.
    pub fn relevant(&self, event: &Event) -> bool {
        let reads = match &self.check {
            Check::WeakCrypto { .. } => matches!(
                &event.body,
                EventBody::IkeSa(model::IkeSaEvent {
                    proposal: Some(_),
                    ..
                }) | EventBody::ChildSa(model::ChildSaEvent {
                    proposal: Some(_),
                    ..
                })
            ),
            Check::ConcurrentSessions { .. } => matches!(&event.body, EventBody::IkeSa(_)),
            Check::CertExpiry { .. } => matches!(&event.body, EventBody::Certificate(_)),
        };
        reads && self.filter.matches(event)
    }

    pub fn observe(&self, state: &mut State, group: String, event: &Event) -> Option<Found> {
        match &self.check {
            Check::WeakCrypto { weak } => {
                let proposal = match &event.body {
                    EventBody::IkeSa(ike) => ike.proposal.as_deref(),
                    EventBody::ChildSa(child) => child.proposal.as_deref(),
                    _ => None,
                }?;
                let found = weak_in(proposal, weak);
                (!found.is_empty()).then(|| Found {
                    evidence: vec![event.id.to_string()],
                    reason: format!(
                        "weak cryptography negotiated: {} (in {proposal})",
                        found.join(", ")
                    ),
                })
            }
            Check::CertExpiry { within } => {
                let EventBody::Certificate(certificate) = &event.body else {
                    return None;
                };
                let left = certificate.not_after.as_second() - event.timestamp.as_second();
                let within = i64::try_from(within.as_secs()).unwrap_or(i64::MAX);
                if left > within {
                    return None;
                }
                let subject = certificate
                    .peer
                    .identities
                    .cert_subject
                    .as_deref()
                    .unwrap_or("?");
                let days = left.abs() / 86_400;
                let when = if left < 0 {
                    format!("expired {days} days ago")
                } else {
                    format!("expires in {days} days")
                };
                Some(Found {
                    evidence: vec![event.id.to_string()],
                    reason: format!(
                        "certificate {subject} {when} ({}){}",
                        certificate.not_after,
                        certificate
                            .location
                            .as_deref()
                            .map(|at| format!(", in {at}"))
                            .unwrap_or_default()
                    ),
                })
            }
            Check::ConcurrentSessions { limit, .. } => {
                let EventBody::IkeSa(ike) = &event.body else {
                    return None;
                };
                let id = ike.peer.ike_sa_id?;
                let gateway = event.observer.hostname.clone().unwrap_or_default();
                let at = event.timestamp.as_microsecond();
                match ike.change {
                    SaChange::Established => {
                        let up = state.groups.entry(group).or_default();
                        up.insert((gateway, id), (at, event.id.to_string()));
                        let count = up.len() as u64;
                        (count > *limit).then(|| Found {
                            evidence: up.values().map(|(_, id)| id.clone()).collect(),
                            reason: format!(
                                "{count} sessions at once (at most {limit}): on {}",
                                gateways_of(up)
                            ),
                        })
                    }
                    SaChange::Rekeyed => {
                        let up = state.groups.get_mut(&group)?;
                        let (since, first) = up.remove(&(gateway.clone(), id))?;
                        if let Some(new_id) = ike.new_ike_sa_id {
                            up.insert((gateway, new_id), (since, first));
                        }
                        None
                    }
                    _ => {
                        if let Some(up) = state.groups.get_mut(&group) {
                            up.remove(&(gateway, id));
                            if up.is_empty() {
                                state.groups.remove(&group);
                            }
                        }
                        None
                    }
                }
            }
        }
    }

    /// Forgets SAs up longer than `max_session_age` (their end was never seen).
    pub fn sweep(&self, state: &mut State, now: Timestamp) {
        let Check::ConcurrentSessions { max_age, .. } = &self.check else {
            return;
        };
        let horizon = now
            .as_microsecond()
            .saturating_sub(i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX));
        state.groups.retain(|_, up| {
            up.retain(|_, (since, _)| *since >= horizon);
            !up.is_empty()
        });
    }

    /// Groups tracked.
    pub fn groups(state: &State) -> usize {
        state.groups.len()
    }

    /// Forgets the groups with the oldest newest SA beyond `max` groups; returns how many.
    pub fn evict(state: &mut State, max: usize) -> usize {
        if state.groups.len() <= max {
            return 0;
        }
        let mut newest: Vec<(i64, String)> = state
            .groups
            .iter()
            .map(|(group, up)| {
                let newest = up.values().map(|(at, _)| *at).max().unwrap_or(i64::MIN);
                (newest, group.clone())
            })
            .collect();
        newest.sort();
        let excess = state.groups.len() - max;
        for (_, group) in newest.into_iter().take(excess) {
            state.groups.remove(&group);
        }
        excess
    }
}

/// The algorithms of `proposal` (`IKE:A/B/C`) that a pattern of `weak` names.
pub fn weak_in(proposal: &str, weak: &[String]) -> Vec<String> {
    let algorithms = proposal.split_once(':').map_or(proposal, |(_, rest)| rest);
    algorithms
        .split('/')
        .filter(|algorithm| {
            let algorithm = algorithm.to_ascii_uppercase();
            weak.iter().any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => algorithm.starts_with(prefix),
                None => algorithm == *pattern,
            })
        })
        .map(str::to_owned)
        .collect()
}

fn gateways_of(up: &Up) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (gateway, _) in up.keys() {
        *counts.entry(gateway.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(gateway, n)| {
            let gateway = if gateway.is_empty() { "?" } else { gateway };
            format!("{gateway} ×{n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
