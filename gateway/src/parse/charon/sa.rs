//! The SAs' lives: an IKE_SA initiating, established, rekeyed and deleted; its CHILD_SAs; the
//! virtual IP leases; how an IKE_SA ends (deletes, half-open timeouts, a peer gone silent).

use std::net::IpAddr;

use model::{
    AuthFailure, AuthMethod, ChildSaEvent, Counters, Endpoint, Event, EventBody, FailureCode,
    IkeSaEvent, LeaseChange, SaChange, TerminateCause, VirtualIpEvent,
};

use super::{
    CharonParser, Line, SaKey, SaState, ShortStr, child_ref, endpoint_pair, ike_sa_ref,
    initiating_client, non_empty, spi_and_bytes,
};

impl CharonParser {
    /// `192.0.2.11 is initiating an IKE_SA` and the `IKE_SA …` lines: `IKE_SA rw-psk[1]
    /// established between …`, `IKE_SA rw[2] rekeyed between …`, `IKE_SA deleted`.
    pub(super) fn ike_sa(
        &mut self,
        line: &Line<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> Option<bool> {
        if let Some(ip) = initiating_client(text) {
            return Some(self.initiating(line, ip, text, out));
        }
        let rest = text.strip_prefix("IKE_SA ")?;
        if rest == "deleted" {
            return Some(self.ike_sa_deleted(line, out));
        }
        let Some((name_and_id, tail)) = rest.split_once(' ') else {
            return Some(false);
        };
        let Some((name, id)) = ike_sa_ref(name_and_id) else {
            return Some(false);
        };
        if let Some(between) = tail.strip_prefix("established between ") {
            return Some(self.ike_sa_established(line, name, between, out));
        }
        if let Some(between) = tail.strip_prefix("rekeyed between ") {
            return Some(self.ike_sa_rekeyed(line, name, id, between, out));
        }
        Some(false)
    }

    /// A client initiating an IKE_SA: a new one, or the rekeying of an established one.
    fn initiating(
        &mut self,
        line: &Line<'_>,
        ip: IpAddr,
        text: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        // An established SA's peer "initiating an IKE_SA" under that SA's name is rekeying
        // it (CREATE_CHILD_SA; a `rekeyed` line follows). A new IKE_SA_INIT has no config
        // yet (`<3>`): if its id names an established SA, charon restarted and reuses ids.
        if line.named_context && self.state(line).is_some_and(|state| state.established) {
            return true;
        }
        let ikev1 = text.contains_short("Main Mode") || text.contains_short("Aggressive Mode");
        if let Some(state) = self.state(line) {
            // A new IKE_SA: forget what a previous SA with the same key said.
            *state = SaState {
                last_seq: state.last_seq,
                connection: state.connection.take(),
                ..SaState::default()
            };
            state.client = Endpoint::new(ip, None);
            state.ikev1 = ikev1;
        }
        self.push_ike(line, SaChange::Connecting, None, None, out);
        true
    }

    /// `IKE_SA deleted`: the end of an IKE_SA, unless a rekey replaced it.
    fn ike_sa_deleted(&mut self, line: &Line<'_>, out: &mut Vec<Event>) -> bool {
        let Some(key) = line.key else { return false };
        let Some(state) = self.sas.get(&key) else {
            return false;
        };
        if state.rekeyed_into.is_none() && !state.end_reported {
            let cause = state.delete_cause.unwrap_or(TerminateCause::Other);
            self.push_ike(line, SaChange::Deleted, Some(cause), None, out);
        }
        // Keep the state a little longer: a `lease … went offline` line may follow.
        if let Some(state) = self.sas.get_mut(&key) {
            state.established = false;
        }
        true
    }

    /// `IKE_SA rw-psk[1] established between 192.0.2.1[gw]...192.0.2.11[client]`.
    fn ike_sa_established(
        &mut self,
        line: &Line<'_>,
        name: &str,
        between: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        let Some(state) = self.state(line) else {
            return false;
        };
        state.connection = Some(name.to_owned());
        if let Some((local, remote)) = endpoint_pair(between) {
            state.server.ip = local.0.or(state.server.ip);
            if remote.0.is_some() && state.client.ip != remote.0 {
                state.client = Endpoint {
                    ip: remote.0,
                    port: None,
                };
            }
            if let Some(remote_id) = remote.1 {
                state.identities.ike_id = Some(remote_id.to_owned());
            }
        }
        if state.ikev1 {
            // Main mode is done; the login is reported with the first CHILD_SA.
            state.v1_waiting = true;
            return true;
        }
        state.established = true;
        self.push_ike(line, SaChange::Established, None, None, out);
        true
    }

    /// `IKE_SA rw[2] rekeyed between …`: logged in the context of the old IKE_SA, naming the
    /// new one (`name[id]`). Without that context (no `ike_name`), the old one is the
    /// established SA with the same client.
    fn ike_sa_rekeyed(
        &mut self,
        line: &Line<'_>,
        name: &str,
        id: u64,
        between: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        let client_ip = endpoint_pair(between).and_then(|(_, remote)| remote.0);
        let old_key = line.key.filter(|key| *key != SaKey::Id(id)).or_else(|| {
            self.sas
                .iter()
                .filter(|(key, state)| {
                    **key != SaKey::Id(id)
                        && state.established
                        && state.client.ip.is_some()
                        && state.client.ip == client_ip
                })
                .max_by_key(|(_, state)| state.last_seq)
                .map(|(key, _)| *key)
        });
        let Some(old_key) = old_key else { return false };
        let Some(old) = self.sas.get_mut(&old_key) else {
            return false;
        };
        old.rekeyed_into = Some(id);
        let mut successor = old.clone();
        successor.rekeyed_into = None;
        successor.delete_cause = None;
        successor.connection = Some(name.to_owned());
        self.sas.insert(SaKey::Id(id), successor);
        let body = EventBody::IkeSa(IkeSaEvent {
            peer: self.peer_for(Some(old_key)),
            change: SaChange::Rekeyed,
            new_ike_sa_id: Some(id),
            cause: None,
            proposal: None,
        });
        self.push(line, out, body);
        true
    }

    /// `CHILD_SA net{1} established with SPIs …` and `closing CHILD_SA net{1} with SPIs …`.
    pub(super) fn child_sa(
        &mut self,
        line: &Line<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> Option<bool> {
        if let Some(rest) = text.strip_prefix("CHILD_SA ") {
            return Some(self.child_sa_established(line, rest, out));
        }
        let rest = text.strip_prefix("closing CHILD_SA ")?;
        Some(self.child_sa_closing(line, rest, out))
    }

    /// `net{1} established with SPIs c1a2b3c4_i c4b3a2c1_o and TS 198.51.100.0/24 ===
    /// 10.99.0.1/32` (after `CHILD_SA `).
    fn child_sa_established(&mut self, line: &Line<'_>, rest: &str, out: &mut Vec<Event>) -> bool {
        let Some((name, child_id, rest)) = child_ref(rest) else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(" established with SPIs ") else {
            return false;
        };
        let (spis, ts) = rest.split_once_short(" and TS ").unwrap_or((rest, ""));
        let mut spis = spis.split(' ');
        let spi_in = spis.next().and_then(|spi| spi.strip_suffix("_i"));
        let spi_out = spis.next().and_then(|spi| spi.strip_suffix("_o"));
        let (local_ts, remote_ts) = ts.split_once_short(" === ").unwrap_or((ts, ""));
        self.report_v1_login(line, out);
        let proposal = self
            .state(line)
            .and_then(|state| state.child_proposal.take());
        let child = ChildSaEvent {
            peer: self.peer(line),
            change: SaChange::Established,
            name: Some(name.to_owned()),
            child_sa_id: Some(child_id),
            spi_in: spi_in.map(str::to_owned),
            spi_out: spi_out.map(str::to_owned),
            local_ts: non_empty(local_ts),
            remote_ts: non_empty(remote_ts),
            counters: None,
            proposal,
        };
        self.push(line, out, EventBody::ChildSa(child));
        true
    }

    /// `net{1} with SPIs c1_i (84 bytes) c2_o (84 bytes) and TS a === b` (after `closing
    /// CHILD_SA `).
    fn child_sa_closing(&mut self, line: &Line<'_>, rest: &str, out: &mut Vec<Event>) -> bool {
        let Some((name, child_id, rest)) = child_ref(rest) else {
            return false;
        };
        let Some(rest) = rest.strip_prefix(" with SPIs ") else {
            return false;
        };
        let (spis, ts) = rest.split_once_short(" and TS ").unwrap_or((rest, ""));
        let (in_part, out_part) = spis.split_once_short(") ").unwrap_or((spis, ""));
        let (spi_in, bytes_in) = spi_and_bytes(in_part, "_i");
        let (spi_out, bytes_out) = spi_and_bytes(out_part.trim_end_matches(')'), "_o");
        let (local_ts, remote_ts) = ts.split_once_short(" === ").unwrap_or((ts, ""));
        let counters = Counters::of_bytes(bytes_in, bytes_out);
        let child = ChildSaEvent {
            peer: self.peer(line),
            change: SaChange::Deleted,
            name: Some(name.to_owned()),
            child_sa_id: Some(child_id),
            spi_in,
            spi_out,
            local_ts: non_empty(local_ts),
            remote_ts: non_empty(remote_ts),
            counters,
            proposal: None,
        };
        self.push(line, out, EventBody::ChildSa(child));
        true
    }

    /// `assigning virtual IP 10.99.0.1 to peer 'client1@psk.vpn.test'` and `lease 10.99.0.1
    /// by 'client1@psk.vpn.test' went offline`.
    pub(super) fn lease(
        &mut self,
        line: &Line<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> Option<bool> {
        if let Some(rest) = text.strip_prefix("assigning virtual IP ") {
            let Some((ip, peer)) = rest.split_once_short(" to peer '") else {
                return Some(false);
            };
            let Ok(ip) = ip.parse::<IpAddr>() else {
                return Some(false);
            };
            if let Some(state) = self.state(line)
                && let Some(id) = peer.strip_suffix('\'')
                && state.identities.user_name().is_none()
            {
                state.identities.ike_id = Some(id.to_owned());
            }
            self.push_vip(line, ip, LeaseChange::Assigned, out);
            return Some(true);
        }
        let rest = text.strip_prefix("lease ")?;
        let Some((ip, rest)) = rest.split_once_short(" by '") else {
            return Some(false);
        };
        let Some(id) = rest.strip_suffix("' went offline") else {
            return Some(false);
        };
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return Some(false);
        };
        let mut peer = self.peer(line);
        // The lease line is the last word on an IKE_SA that may already be gone.
        if peer.identities.user_name().is_none() {
            peer.identities.ike_id = Some(id.to_owned());
        }
        let vip = VirtualIpEvent {
            peer,
            ip,
            change: LeaseChange::Released,
        };
        self.push(line, out, EventBody::VirtualIp(vip));
        Some(true)
    }

    /// How an IKE_SA ends: `deleting half open IKE_SA` (timeout), `received DELETE for
    /// IKE_SA` (the peer's request), `deleting IKE_SA` (IKEv1's end; otherwise ours), and a
    /// peer that stopped answering (IKEv2 gives up after its retransmits, IKEv1's dead peer
    /// detection times out and charon destroys the IKE_SA without another line).
    pub(super) fn end(
        &mut self,
        line: &Line<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> Option<bool> {
        if text.starts_with("deleting half open IKE_SA") {
            self.push_ike(
                line,
                SaChange::Deleted,
                Some(TerminateCause::Timeout),
                None,
                out,
            );
            return Some(true);
        }
        if text.starts_with("received DELETE for IKE_SA ") {
            if let Some(state) = self.state(line) {
                state
                    .delete_cause
                    .get_or_insert(TerminateCause::UserRequest);
            }
            return Some(true);
        }
        if text.starts_with("deleting IKE_SA ") {
            self.deleting_ike_sa(line, out);
            return Some(true);
        }
        if (text.starts_with("giving up after ") && text.ends_with(" retransmits"))
            || text.starts_with("DPD check timed out")
        {
            self.peer_gone(line, text, out);
            return Some(true);
        }
        None
    }

    /// `deleting IKE_SA rw[1] between …`: the cause, unless the peer asked; and IKEv1, which
    /// logs no `IKE_SA deleted`, ends here.
    fn deleting_ike_sa(&mut self, line: &Line<'_>, out: &mut Vec<Event>) {
        let Some(state) = self.state(line) else {
            return;
        };
        let cause = *state.delete_cause.get_or_insert(TerminateCause::AdminReset);
        if state.ikev1 && !state.end_reported {
            state.end_reported = true;
            if std::mem::take(&mut state.v1_waiting) {
                self.report_v1_failure(line, out);
            } else if state.established {
                state.established = false;
                // A reauthentication's old IKE_SA going is not the session's end.
                if state.rekeyed_into.is_none() {
                    self.push_ike(line, SaChange::Deleted, Some(cause), None, out);
                }
            }
        }
    }

    /// The peer of an IKE_SA stopped answering: a session ends as lost, a login still
    /// negotiating (or an IKEv1 one waiting for quick mode) failed.
    fn peer_gone(&mut self, line: &Line<'_>, text: &str, out: &mut Vec<Event>) {
        let (waiting, established) = match self.state(line) {
            Some(state) if state.end_reported => return,
            Some(state) => {
                let waiting = std::mem::take(&mut state.v1_waiting);
                let established = state.established;
                if waiting {
                    state.child_failure.get_or_insert_with(|| text.to_owned());
                }
                // Keep the state a little longer: a `lease … went offline` line follows.
                state.established = false;
                state.end_reported = waiting || established;
                (waiting, established)
            }
            None => (false, false),
        };
        if waiting {
            self.report_v1_failure(line, out);
        } else if established {
            self.push_ike(
                line,
                SaChange::Lost,
                Some(TerminateCause::LostService),
                None,
                out,
            );
        } else {
            let failure = AuthFailure {
                code: FailureCode::Timeout,
                reason: text.to_owned(),
            };
            self.push_failure(line, AuthMethod::Unknown, failure, out);
        }
    }
}
