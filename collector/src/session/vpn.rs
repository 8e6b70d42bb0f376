//! The VPN's own events (charon, pluto and pppd's log lines, VICI): logins negotiating, IKE_SAs
//! established, rekeyed and ended, CHILD_SAs and leases.

use jiff::{SignedDuration, Timestamp};
use model::{LeaseChange, Outcome, Peer, SaChange, SessionState, TerminateCause};

use super::accounting::agrees_with_peer;
use super::record::{End, Record, VpnSide, earlier, earlier_by};
use super::{
    MAX_CONNECTING, PENDING_TTL_SECS, Phase, SAME_ATTEMPT_SECS, SaKey, SaRef, Sessionizer, sa_key,
    session_id_for,
};

impl Sessionizer {
    pub(super) fn on_auth(
        &mut self,
        gateway: &Option<String>,
        auth: &model::Auth,
        at: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        let key = sa_key(gateway, &auth.peer)?;
        if auth.outcome == Outcome::Failure {
            // A login that failed is no session: forget what was assembled for it.
            self.connecting.remove(&key);
            if let Some(session_id) = self.by_sa.get(&key).cloned()
                && self.records.get(&session_id).is_some_and(|record| {
                    record.phase == Phase::Negotiating && !record.accounting.seen
                })
            {
                self.abandon(&session_id, now);
            }
            return None;
        }
        let session_id = self.begin(&key, &auth.peer, at);
        let record = self.records.get_mut(&session_id)?;
        if record.shown() {
            // Another authentication of a session that is up (a reauthentication): it adds
            // what was not known and changes nothing else.
            record.vpn.identities.merge_from(&auth.peer.identities);
            record.vpn.method = record.vpn.method.or(Some(auth.method));
        } else {
            record.vpn.absorb(&auth.peer);
            record.vpn.method = Some(auth.method);
        }
        self.touch(&session_id, at);
        Some(session_id)
    }

    pub(super) fn on_ike(
        &mut self,
        gateway: &Option<String>,
        ike: &model::IkeSaEvent,
        at: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        let key = sa_key(gateway, &ike.peer)?;
        match ike.change {
            SaChange::Connecting => {
                self.connecting_at(key, at, now);
                None
            }
            SaChange::Established => self.established(key, &ike.peer, at, now),
            SaChange::Rekeyed => self.rekeyed(key, ike.new_ike_sa_id, at, now),
            SaChange::Deleted | SaChange::Lost => self.ended(key, ike, at, now),
        }
    }

    /// The IKE_SA is up: the login is a session now.
    fn established(
        &mut self,
        key: SaKey,
        peer: &Peer,
        at: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        let mut session_id = self.begin(&key, peer, at);
        // The log's lines before the id was known found the login by the client address:
        // the same login.
        if let (SaRef::Id(_), Some(ip)) = (key.1, peer.client.ip) {
            let client_key = (key.0.clone(), SaRef::Client(ip));
            if let Some(other) = self.by_sa.get(&client_key).cloned()
                && other != session_id
                && self.records.get(&other).is_some_and(|record| {
                    record.phase == Phase::Negotiating
                        && record.vpn.ike_sa_ids.is_empty()
                        && record.end().is_none()
                })
            {
                session_id = self.merge(session_id, other, now);
            }
            // Later lines without the id find it by the client address, unless another open
            // session of that address holds it (clients behind one NAT).
            let holder_open = self
                .by_sa
                .get(&client_key)
                .and_then(|holder| self.records.get(holder))
                .is_some_and(|holder| holder.session_id != session_id && holder.end().is_none());
            if !holder_open {
                self.register(&session_id, client_key);
            }
        }
        let record = self.records.get_mut(&session_id)?;
        record.vpn.absorb(peer);
        record.vpn.first_seen = earlier(record.vpn.first_seen, Some(at));
        record.vpn.established = earlier(record.vpn.established, Some(at));
        if let SaRef::Id(id) = key.1
            && !record.vpn.ike_sa_ids.contains(&id)
        {
            record.vpn.ike_sa_ids.push(id);
        }
        let session_id = self.claim_held(session_id, at, now);
        self.show(&session_id);
        self.touch(&session_id, at);
        Some(session_id)
    }

    /// The IKE_SA was rekeyed into `new_id`: the session goes on, found by that id too.
    fn rekeyed(
        &mut self,
        key: SaKey,
        new_id: Option<u64>,
        at: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        let session_id = self.by_sa.get(&key)?.clone();
        let Some(new_id) = new_id else {
            return Some(session_id);
        };
        let new_key = (key.0.clone(), SaRef::Id(new_id));
        // Accounting may have named the new IKE_SA first (its NAS-Port).
        let session_id = match self.by_sa.get(&new_key).cloned() {
            Some(other)
                if other != session_id
                    && self
                        .records
                        .get(&other)
                        .is_some_and(|record| !record.shown() && !record.vpn_made()) =>
            {
                self.merge(session_id, other, now)
            }
            _ => session_id,
        };
        self.register(&session_id, new_key);
        let record = self.records.get_mut(&session_id)?;
        if !record.vpn.ike_sa_ids.contains(&new_id) {
            record.vpn.ike_sa_ids.push(new_id);
            record.vpn.rekey_count += 1;
        }
        self.touch(&session_id, at);
        Some(session_id)
    }

    /// The IKE_SA was deleted or lost: the session ends if it was its newest, and a login
    /// that never came up leaves no session.
    fn ended(
        &mut self,
        key: SaKey,
        ike: &model::IkeSaEvent,
        at: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        let Some(session_id) = self.by_sa.get(&key).cloned() else {
            self.connecting.remove(&key);
            return None;
        };
        let record = self.records.get_mut(&session_id)?;
        if record.phase == Phase::Negotiating {
            // Gone before it was established: no session came of it.
            if record.accounting.seen {
                record.vpn = VpnSide::default();
                record.phase = Phase::Held { since: now };
                self.dirty = true;
            } else {
                self.abandon(&session_id, now);
            }
            return None;
        }
        // Deleting an IKE_SA that a rekey replaced does not end the session.
        if let SaRef::Id(id) = key.1
            && record.vpn.ike_sa_ids.last().is_some_and(|last| *last != id)
        {
            return Some(session_id);
        }
        if record.vpn.end.is_some() {
            self.stats.repeated_ends += 1;
        }
        let end = if ike.change == SaChange::Lost {
            End {
                at,
                state: SessionState::Lost,
                cause: Some(ike.cause.unwrap_or(TerminateCause::LostService)),
            }
        } else {
            End {
                at,
                state: SessionState::Closed,
                cause: ike.cause,
            }
        };
        record.vpn.end = Some(End::merge(record.vpn.end, end));
        self.touch(&session_id, at);
        Some(session_id)
    }

    /// An IKE_SA began to negotiate at `at`. A login still open under its id is then an
    /// earlier IKE_SA whose daemon restarted (it counts ids from 1 again) without saying
    /// goodbye: it ended by now.
    fn connecting_at(&mut self, key: SaKey, at: Timestamp, now: Timestamp) {
        if let Some(session_id) = self.by_sa.get(&key).cloned()
            && let Some(record) = self.records.get(&session_id)
        {
            let same_attempt = record.vpn.first_seen.is_some_and(|first| {
                (at - first).abs() <= SignedDuration::from_secs(SAME_ATTEMPT_SECS)
            });
            if record.vpn_made() && !same_attempt && matches!(key.1, SaRef::Id(_)) {
                match record.phase {
                    Phase::Shown if record.end().is_none() => {
                        let start = record.start();
                        if let Some(record) = self.records.get_mut(&session_id) {
                            record.vpn.end = Some(End {
                                at: at.max(start),
                                state: SessionState::Closed,
                                cause: Some(TerminateCause::Lost),
                            });
                        }
                        self.touch(&session_id, at);
                        // The id is the new IKE_SA's now, even within the same second.
                        self.by_sa.remove(&key);
                    }
                    Phase::Negotiating if !record.accounting.seen => {
                        self.abandon(&session_id, now);
                    }
                    Phase::Negotiating | Phase::Held { .. } | Phase::Shown => {}
                }
            }
        }
        if self.connecting.len() >= MAX_CONNECTING {
            let before = earlier_by(at, SignedDuration::from_secs(60));
            self.connecting.retain(|_, since| *since >= before);
            if self.connecting.len() >= MAX_CONNECTING {
                self.connecting.clear();
            }
        }
        let entry = self.connecting.entry(key).or_insert(at);
        // The earliest report of this attempt; a new attempt replaces an old one.
        if (at - *entry).abs() > SignedDuration::from_secs(SAME_ATTEMPT_SECS) || at < *entry {
            *entry = at;
        }
    }

    /// The login a VPN event that starts or continues one belongs to: the record its key
    /// finds (unless that ended before `at`: the id was reused, or it was accounting about
    /// something else), else one the log keyed by the client address, else a new one.
    pub(super) fn begin(&mut self, key: &SaKey, peer: &Peer, at: Timestamp) -> String {
        if let Some(session_id) = self.by_sa.get(key)
            && let Some(record) = self.records.get(session_id)
            && record.end().is_none_or(|end| end >= at)
            && (record.vpn_made() || agrees_with_peer(record, peer))
            // A session found by the client address alone is another login of that address
            // (the same client again, or clients behind one NAT), unless it is still being
            // assembled.
            && !(record.shown() && matches!(key.1, SaRef::Client(_)))
        {
            let session_id = session_id.clone();
            // Accounting made it (found by NAS-Port): the VPN names its IKE_SA now.
            if let SaRef::Id(id) = key.1
                && let Some(record) = self.records.get_mut(&session_id)
                && record.vpn.ike_sa_ids.is_empty()
            {
                record.vpn.ike_sa_ids.push(id);
            }
            return session_id;
        }
        if let (SaRef::Id(id), Some(ip)) = (key.1, peer.client.ip) {
            let client_key = (key.0.clone(), SaRef::Client(ip));
            if let Some(session_id) = self.by_sa.get(&client_key).cloned()
                && self.records.get(&session_id).is_some_and(|record| {
                    record.phase == Phase::Negotiating
                        && record.vpn.ike_sa_ids.is_empty()
                        && record.end().is_none()
                })
            {
                self.register(&session_id, key.clone());
                if let Some(record) = self.records.get_mut(&session_id) {
                    record.vpn.ike_sa_ids.push(id);
                }
                return session_id;
            }
        }
        let mut first_seen = at;
        let mut connecting_keys = vec![key.clone()];
        if let Some(ip) = peer.client.ip {
            connecting_keys.push((key.0.clone(), SaRef::Client(ip)));
        }
        for connecting_key in &connecting_keys {
            if let Some(since) = self.connecting.remove(connecting_key)
                && since <= at
                && at - since < SignedDuration::from_secs(PENDING_TTL_SECS)
            {
                first_seen = first_seen.min(since);
            }
        }
        let session_id = session_id_for(key, first_seen);
        if self.records.contains_key(&session_id) {
            // The same login replayed after it ended and was kept: it is that one.
            self.register(&session_id, key.clone());
            return session_id;
        }
        let mut record = Record::new(session_id.clone(), key.0.clone(), Phase::Negotiating, at);
        record.vpn.first_seen = Some(first_seen);
        record.vpn.absorb(peer);
        if let SaRef::Id(id) = key.1 {
            record.vpn.ike_sa_ids.push(id);
        }
        self.records.insert(session_id.clone(), record);
        self.register(&session_id, key.clone());
        self.dirty = true;
        session_id
    }

    pub(super) fn on_child(
        &mut self,
        gateway: &Option<String>,
        child: &model::ChildSaEvent,
        at: Timestamp,
    ) -> Option<String> {
        let key = sa_key(gateway, &child.peer)?;
        let session_id = self.by_sa.get(&key)?.clone();
        if let (Some(child_id), Some(counters)) = (child.child_sa_id, child.counters)
            && let Some(record) = self.records.get_mut(&session_id)
        {
            record.vpn.children.insert(child_id, counters);
            self.touch(&session_id, at);
        }
        Some(session_id)
    }

    pub(super) fn on_lease(
        &mut self,
        gateway: &Option<String>,
        lease: &model::VirtualIpEvent,
        at: Timestamp,
        now: Timestamp,
    ) -> Option<String> {
        match lease.change {
            LeaseChange::Assigned => {
                let key = sa_key(gateway, &lease.peer)?;
                let session_id = self.begin(&key, &lease.peer, at);
                let record = self.records.get_mut(&session_id)?;
                record.vpn.absorb(&lease.peer);
                if record.vpn.virtual_ip != Some(lease.ip) {
                    record.vpn.virtual_ip = Some(lease.ip);
                    self.touch(&session_id, at);
                }
                Some(self.claim_held(session_id, at, now))
            }
            LeaseChange::Released => sa_key(gateway, &lease.peer)
                .and_then(|key| self.by_sa.get(&key).cloned())
                .or_else(|| self.holding(gateway, lease.ip, at, SignedDuration::ZERO)),
        }
    }
}
