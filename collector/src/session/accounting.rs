//! RADIUS accounting (and pppd's own session lines) meeting the VPN's events: which login a
//! record belongs to, and when accounting held for the VPN's events is claimed by the virtual
//! IP a login holds.

use std::net::IpAddr;

use jiff::{SignedDuration, Timestamp};
use model::{Peer, SessionChange};

use super::record::{Record, earlier_by, later_by, same_user};
use super::{ACCOUNTING_SLACK_SECS, Phase, SaKey, SaRef, Sessionizer, sa_key, session_id_for};

/// How much earlier than a login accounting's session may seem to begin and still be that
/// login's (whole seconds on both sides; charon sends the Start once the IKE_SA is up).
const START_SLACK_SECS: i64 = 10;

impl Sessionizer {
    /// The record holding virtual IP `ip` on `gateway` at `at` (open then, or ended at most
    /// `after` before it), the latest to start if several.
    pub(super) fn holding(
        &self,
        gateway: &Option<String>,
        ip: IpAddr,
        at: Timestamp,
        after: SignedDuration,
    ) -> Option<String> {
        let slack = SignedDuration::from_secs(ACCOUNTING_SLACK_SECS);
        self.records
            .values()
            .filter(|record| &record.gateway == gateway && record.virtual_ip() == Some(ip))
            .filter(|record| {
                at >= earlier_by(record.start(), slack)
                    && record.end().is_none_or(|end| at <= later_by(end, after))
            })
            .max_by_key(|record| (record.start(), record.session_id.clone()))
            .map(|record| record.session_id.clone())
    }

    /// RADIUS accounting (Start, Interim-Update, Stop) or pppd's own session lines: folded
    /// into the login the VPN's events built when there is one (same Acct-Session-Id, same
    /// gateway and IKE_SA id, strongSwan's NAS-Port; else the one holding the framed address
    /// then). Otherwise accounting is held for the VPN's events; pppd's lines (no
    /// Acct-Session-Id: the VPN's own) make a session at once.
    pub(super) fn on_accounting(
        &mut self,
        gateway: &Option<String>,
        accounting: &model::SessionEvent,
        at: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        let own_lines = accounting.accounting_id.is_none();
        let by_accounting_id = accounting
            .accounting_id
            .as_ref()
            .map(|accounting_id| (gateway.clone(), accounting_id.clone()));
        // A key of the accounting's own: its Acct-Session-Id, else (pppd's log) the PPP
        // link's address, unique among the gateway's open sessions.
        let own_key = match (&accounting.accounting_id, accounting.virtual_ip) {
            (Some(accounting_id), _) => Some((
                gateway.clone(),
                SaRef::Accounting(model::hash::fnv1a(accounting_id.as_bytes())),
            )),
            (None, Some(ip)) => Some((gateway.clone(), SaRef::VirtualIp(ip))),
            (None, None) => None,
        };
        // NAS-Port is the IKE_SA's unique id for strongSwan; pppd's RADIUS plugin puts the
        // PPP unit there, which may equal an unrelated IKE_SA's id: `fits` tells them apart.
        let id_key = accounting
            .peer
            .ike_sa_id
            .map(|id| (gateway.clone(), SaRef::Id(id)));
        // Accounting counts from the session's start.
        let start = accounting
            .duration_secs
            .and_then(|secs| i64::try_from(secs).ok())
            .map_or(at, |secs| earlier_by(at, SignedDuration::from_secs(secs)));
        let found = self.find_login(
            gateway,
            accounting,
            by_accounting_id.as_ref(),
            [id_key.as_ref(), own_key.as_ref()],
            start,
            at,
        );
        let session_id = match found {
            Some(session_id) => session_id,
            None => {
                // The key a new record is found by: the IKE_SA id unless another login holds
                // it now (one that ended before is a daemon restart's reuse: free again).
                let id_free = id_key.as_ref().is_none_or(|key| {
                    self.by_sa.get(key).is_none_or(|session_id| {
                        self.records
                            .get(session_id)
                            .is_none_or(|record| record.end().is_some_and(|end| end < at))
                    })
                });
                let key = match (&id_key, &own_key) {
                    (Some(id_key), _) if id_free => id_key.clone(),
                    (_, Some(own_key)) => own_key.clone(),
                    (Some(id_key), None) => id_key.clone(),
                    (None, None) => sa_key(gateway, &accounting.peer)?,
                };
                let session_id = session_id_for(&key, start);
                if !self.records.contains_key(&session_id) {
                    let phase = if own_lines || self.config.accounting_hold_secs == 0 {
                        Phase::Shown
                    } else {
                        Phase::Held { since: now }
                    };
                    let record = Record::new(session_id.clone(), gateway.clone(), phase, at);
                    self.records.insert(session_id.clone(), record);
                    self.dirty = true;
                }
                self.register(&session_id, key);
                session_id
            }
        };
        // The own key finds this login from now on, unless another one open then holds it.
        if let Some(own_key) = own_key {
            let free = self.by_sa.get(&own_key).is_none_or(|holder| {
                holder == &session_id
                    || self
                        .records
                        .get(holder)
                        .is_none_or(|record| record.end().is_some_and(|end| end < at))
            });
            if free {
                self.register(&session_id, own_key);
            }
        }
        if let Some(by_accounting_id) = by_accounting_id {
            self.by_accounting
                .entry(by_accounting_id)
                .or_insert_with(|| session_id.clone());
        }
        let record = self.records.get_mut(&session_id)?;
        if record.accounting.fold(accounting, start, at) {
            self.stats.repeated_ends += 1;
        }
        self.touch(&session_id, at);
        // pppd's own lines are the VPN itself saying the link is up: a session now.
        if own_lines {
            let session_id = self.claim_held(session_id, at, now);
            self.show(&session_id);
            return Some(session_id);
        }
        Some(session_id)
    }

    /// The login accounting is about: by its Acct-Session-Id, by its `keys` (the IKE_SA id,
    /// strongSwan's NAS-Port; its own key), else the one holding the framed address then (an
    /// open one, one that ended after it, or moments before it for an update or a stop).
    fn find_login(
        &self,
        gateway: &Option<String>,
        accounting: &model::SessionEvent,
        by_accounting_id: Option<&(Option<String>, String)>,
        keys: [Option<&SaKey>; 2],
        start: Timestamp,
        at: Timestamp,
    ) -> Option<String> {
        // A login is this accounting's if nothing contradicts it: not another Acct-Session-Id,
        // virtual IP or user; not begun well after the accounting's session began (an IKE_SA
        // id reused after a daemon restart); not ended before a Start.
        let fits = |session_id: &String| {
            self.records.get(session_id).is_some_and(|record| {
                agrees(record, accounting)
                    && start
                        >= earlier_by(record.start(), SignedDuration::from_secs(START_SLACK_SECS))
                    && !(accounting.change == SessionChange::Start
                        && record.end().is_some_and(|end| end < at))
            })
        };
        let by_key = |key: Option<&SaKey>| {
            key.and_then(|key| self.by_sa.get(key).cloned())
                .filter(|session_id| fits(session_id))
        };
        by_accounting_id
            .and_then(|id| self.by_accounting.get(id).cloned())
            .filter(|session_id| fits(session_id))
            .or_else(|| by_key(keys[0]))
            .or_else(|| by_key(keys[1]))
            .or_else(|| {
                let ip = accounting.virtual_ip?;
                let after = match accounting.change {
                    SessionChange::Start => SignedDuration::ZERO,
                    SessionChange::Update | SessionChange::Stop => {
                        SignedDuration::from_secs(ACCOUNTING_SLACK_SECS)
                    }
                };
                self.holding(gateway, ip, at, after).filter(|session_id| {
                    fits(session_id)
                        && self
                            .records
                            .get(session_id)
                            .is_some_and(|record| same_ike_sa(record, accounting.peer.ike_sa_id))
                })
            })
    }

    /// Accounting held for the VPN's events that no key joined to `session_id`, but that
    /// reports the virtual IP it holds at `at` for the same user (a NAS-Port that is pppd's
    /// PPP unit, a log without IKE_SA ids): the same login. Returns the id that stays.
    pub(super) fn claim_held(
        &mut self,
        session_id: String,
        at: Timestamp,
        now: Timestamp,
    ) -> String {
        let Some(record) = self.records.get(&session_id) else {
            return session_id;
        };
        let Some(ip) = record.virtual_ip() else {
            return session_id;
        };
        let slack = SignedDuration::from_secs(ACCOUNTING_SLACK_SECS);
        let identities = record.identities().clone();
        let gateway = record.gateway.clone();
        let ike_sa_ids: Vec<u64> = record
            .vpn
            .ike_sa_ids
            .iter()
            .chain(&record.accounting.nas_ports)
            .copied()
            .collect();
        let held: Vec<String> = self
            .records
            .values()
            .filter(|other| {
                other.session_id != session_id
                    && matches!(other.phase, Phase::Held { .. })
                    && !other.vpn_made()
                    && other.gateway == gateway
                    && other.accounting.virtual_ip == Some(ip)
                    && other
                        .accounting
                        .start
                        .is_none_or(|start| at >= earlier_by(start, slack))
                    && other
                        .accounting
                        .stop
                        .is_none_or(|stop| at <= later_by(stop.at, slack))
                    && same_user(&identities, &other.accounting.identities)
                    && (ike_sa_ids.is_empty()
                        || other.accounting.nas_ports.is_empty()
                        || other
                            .accounting
                            .nas_ports
                            .iter()
                            .any(|port| ike_sa_ids.contains(port)))
            })
            .map(|other| other.session_id.clone())
            .collect();
        let mut session_id = session_id;
        for other in held {
            session_id = self.merge(session_id, other, now);
        }
        session_id
    }
}

/// Whether accounting can be about this login: the same Acct-Session-Id and virtual IP where
/// both know one, and a user name in common (or no names to compare).
fn agrees(record: &Record, accounting: &model::SessionEvent) -> bool {
    // An Acct-Session-Id names one session: another one is another session.
    if let (Some(ours), Some(theirs)) =
        (&record.accounting.accounting_id, &accounting.accounting_id)
        && ours != theirs
    {
        return false;
    }
    if let (Some(ours), Some(theirs)) = (record.virtual_ip(), accounting.virtual_ip)
        && ours != theirs
    {
        return false;
    }
    let mut ours = record.vpn.identities.clone();
    ours.merge_from(&record.accounting.identities);
    same_user(&ours, &accounting.peer.identities)
}

/// Whether accounting that names NAS-Port `port` can be about this login when only the
/// virtual IP joins them: the port is one of its IKE_SAs, or either side knows none (pppd's
/// NAS-Port is the PPP unit, and its sessions have no IKE_SA).
fn same_ike_sa(record: &Record, port: Option<u64>) -> bool {
    port.is_none_or(|port| {
        let known = record
            .vpn
            .ike_sa_ids
            .iter()
            .chain(&record.accounting.nas_ports);
        let mut known = known.peekable();
        known.peek().is_none() || known.any(|id| *id == port)
    })
}

/// Whether a VPN peer can be the login accounting made a record of (pppd's NAS-Port is the
/// PPP unit, which may equal an unrelated IKE_SA's id).
pub(super) fn agrees_with_peer(record: &Record, peer: &Peer) -> bool {
    same_user(&record.accounting.identities, &peer.identities)
}
