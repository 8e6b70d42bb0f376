//! [`Tracker::reconcile`]: what charon lists on (re)connect against what the tracker
//! believed (see the module docs of [`super`]).

use super::*;

impl Tracker {
    /// Compares what charon lists now (`list-sa` messages) with what the tracker believed,
    /// and reports the difference: SAs that came up or went down (or were rekeyed) while
    /// nobody was listening. `charon_since` identifies the daemon instance.
    pub fn reconcile(
        &mut self,
        charon_since: Option<String>,
        listed: &[Message],
        now: Timestamp,
        out: &mut Vec<Produced>,
    ) {
        let since_moved = since_moved(self.state.charon_since.as_deref(), charon_since.as_deref());
        self.state.charon_since = charon_since;
        let mut current: BTreeMap<u64, (String, &Message)> = BTreeMap::new();
        for message in listed {
            if let Some((connection, section)) = message.sections().next()
                && let Some(id) = section.str("uniqueid").and_then(|id| id.parse().ok())
            {
                current.insert(id, (connection.to_owned(), section));
            }
        }
        // An IKE_SA listed under its id with its IKE SPIs is the one the tracker knows: the
        // SPIs are random 64-bit numbers, and a restarted charon counts ids from 1 again
        // but never lists the old SPIs. Without SPIs (state of an earlier version) charon's
        // start time decides.
        let still_listed = |id: u64, info: &SaInfo| {
            current
                .get(&id)
                .is_some_and(|(_, section)| match &info.ike_spis {
                    Some(spis) => ike_spis(section).as_ref() == Some(spis),
                    None => !since_moved,
                })
        };
        let n_still_listed = self
            .state
            .sas
            .iter()
            .chain(&self.state.awaiting_child)
            .filter(|(id, info)| still_listed(**id, info))
            .count();
        let restarted = since_moved && n_still_listed == 0;
        let gone: BTreeSet<u64> = self
            .state
            .sas
            .iter()
            .filter(|(id, info)| !still_listed(**id, info))
            .map(|(id, _)| *id)
            .collect();
        let waited: Vec<(u64, bool)> = self
            .state
            .awaiting_child
            .iter()
            .map(|(id, info)| (*id, still_listed(*id, info)))
            .collect();
        let restart_note = if restarted { " (charon restarted)" } else { "" };
        // IKEv1 IKE_SAs that were waiting for their first CHILD_SA: gone without one is a
        // failed login; listed with one, the login is complete now.
        for (id, is_listed) in waited {
            let listed = is_listed.then(|| current.get(&id)).flatten();
            match listed {
                None => {
                    if let Some(info) = self.state.awaiting_child.remove(&id) {
                        let original = format!(
                            "vici reconcile: IKE_SA #{id} is no longer listed by charon{restart_note}"
                        );
                        self.report_no_child(id, info, now, &original, out);
                    }
                }
                Some((connection, section)) => {
                    let children = sa_info(connection, section).children;
                    if !children.is_empty()
                        && let Some(mut info) = self.state.awaiting_child.remove(&id)
                    {
                        info.children = children;
                        if info.method.is_none() {
                            info.method = Some(method_without_log(&info.identities));
                        }
                        let original = format!("vici list-sa {}", section.to_json());
                        self.open(id, info, now, &original, out);
                    }
                }
            }
        }
        let mut new: Vec<u64> = current
            .keys()
            .copied()
            .filter(|id| {
                !(self.state.awaiting_child.contains_key(id)
                    || (self.state.sas.contains_key(id) && !gone.contains(id)))
            })
            .collect();
        for old_id in gone {
            // An IKE_SA replaced by one with the same peer, identity and virtual IPs was
            // rekeyed while we were away: the session goes on.
            let successor = (!restarted)
                .then(|| {
                    let old = self.state.sas.get(&old_id)?;
                    // A rekey always gives a new id: the same id is another IKE_SA.
                    new.iter().copied().find(|new_id| {
                        *new_id != old_id
                            && current.get(new_id).is_some_and(|(connection, section)| {
                                let candidate = sa_info(connection, section);
                                candidate.connection == old.connection
                                    && candidate.client.ip == old.client.ip
                                    && candidate.identities.ike_id == old.identities.ike_id
                                    && candidate.virtual_ips == old.virtual_ips
                            })
                    })
                })
                .flatten();
            let original = format!(
                "vici reconcile: IKE_SA #{old_id} is no longer listed by charon{restart_note}"
            );
            if let Some(new_id) = successor {
                new.retain(|id| *id != new_id);
                if let Some(mut info) = self.state.sas.remove(&old_id) {
                    let peer = peer_of(old_id, &info);
                    if let Some((connection, section)) = current.get(&new_id) {
                        let fresh = sa_info(connection, section);
                        info.client = fresh.client;
                        info.ike_spis = fresh.ike_spis;
                        info.identities.merge_from(&fresh.identities);
                        info.children = fresh.children;
                    }
                    self.state.sas.insert(new_id, info);
                    out.push(Produced {
                        timestamp: now,
                        original: format!(
                            "vici reconcile: IKE_SA #{old_id} was rekeyed into #{new_id}"
                        ),
                        body: EventBody::IkeSa(IkeSaEvent {
                            peer,
                            change: SaChange::Rekeyed,
                            new_ike_sa_id: Some(new_id),
                            cause: None,
                            proposal: None,
                        }),
                    });
                }
                continue;
            }
            // It ended while nobody listened (or charon restarted): when and why are unknown.
            self.close(
                old_id,
                SaChange::Deleted,
                TerminateCause::Lost,
                now,
                &original,
                out,
            );
        }
        for id in new {
            let Some((connection, section)) = current.get(&id) else {
                continue;
            };
            let established_secs: i64 = section
                .str("established")
                .and_then(|secs| secs.parse().ok())
                .unwrap_or(0);
            let since = now
                .checked_sub(SignedDuration::from_secs(established_secs.max(0)))
                .unwrap_or(now);
            let original = format!("vici list-sa {}", section.to_json());
            let mut info = sa_info(connection, section);
            if is_ikev1(section) && info.children.is_empty() {
                // Up while nobody listened, quick mode not done: wait for a CHILD_SA.
                self.state.awaiting_child.insert(id, info);
                continue;
            }
            info.method = Some(method_without_log(&info.identities));
            self.open(id, info, since, &original, out);
        }
        for (id, (connection, section)) in &current {
            // Known SAs: children that came or went while away.
            let Some(info) = self.state.sas.get_mut(id) else {
                continue;
            };
            let listed_children = sa_info(connection, section).children;
            let peer = peer_of(*id, info);
            let original = format!("vici list-sa {}", section.to_json());
            let gone: Vec<u64> = info
                .children
                .keys()
                .filter(|child_id| !listed_children.contains_key(child_id))
                .copied()
                .collect();
            for child_id in gone {
                if let Some(child) = info.children.remove(&child_id) {
                    out.push(child_event(
                        &peer,
                        child_id,
                        &child,
                        SaChange::Deleted,
                        None,
                        now,
                        &original,
                    ));
                }
            }
            for (child_id, child) in listed_children {
                child_up(info, &peer, child_id, child, now, &original, out);
            }
        }
    }
}
