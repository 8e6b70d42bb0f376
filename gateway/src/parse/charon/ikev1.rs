//! IKEv1 (Main and Aggressive Mode): an IKE_SA is up before quick mode, which may still fail,
//! so its login is reported with its first CHILD_SA; one that ends first is a failed login.
//! A reauthentication (charon adopts the CHILD_SAs into the new IKE_SA) goes on like a rekey.

use model::{AuthFailure, AuthMethod, Event, EventBody, FailureCode, IkeSaEvent, SaChange};

use super::{CharonParser, Line, SaKey, ShortStr, endpoint_pair};

impl CharonParser {
    /// IKEv1's own lines: `looking for pre-shared key peer configs matching …` (the only
    /// line charon logs for a PSK main mode), `XAuth authentication of '…' successful|failed`,
    /// why quick mode failed (while an IKE_SA waits for its first CHILD_SA), and `detected
    /// reauth of existing IKE_SA`.
    pub(super) fn ikev1(
        &mut self,
        line: &Line<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> Option<bool> {
        if let Some(rest) = text.strip_prefix("looking for pre-shared key peer configs matching ") {
            // IKEv1 main mode with a PSK: charon logs no `authentication of … successful`.
            if let Some(state) = self.state(line) {
                state.ikev1 = true;
                state.v1_method = Some(AuthMethod::Psk);
                if let Some((_, remote)) = endpoint_pair(rest)
                    && let Some(id) = remote.1.filter(|id| *id != "%any")
                {
                    state.identities.ike_id = Some(id.to_owned());
                }
            }
            return Some(true);
        }
        if let Some(rest) = text.strip_prefix("XAuth authentication of '") {
            let Some((user, verdict)) = rest.split_once_short("' ") else {
                return Some(false);
            };
            if let Some(state) = self.state(line) {
                state.identities.xauth_id = Some(user.to_owned());
            }
            if verdict == "successful" {
                if let Some(state) = self.state(line) {
                    state.v1_method = Some(AuthMethod::Xauth);
                }
            } else if verdict == "failed" {
                let failure = AuthFailure {
                    code: FailureCode::Other,
                    reason: text.to_owned(),
                };
                self.push_failure(line, AuthMethod::Xauth, failure, out);
            }
            return Some(true);
        }
        if let Some(state) = self.state(line)
            && state.v1_waiting
            && state.child_failure.is_none()
            && quick_mode_failure(text)
        {
            state.child_failure = Some(text.to_owned());
            return Some(true);
        }
        if text.starts_with("detected reauth of existing IKE_SA") {
            return Some(self.v1_reauth(line, out));
        }
        None
    }

    /// An IKEv1 IKE_SA's first CHILD_SA is up: its login (as the method lines said) and its
    /// establishment, reported as of this line (the one that shows the login worked).
    pub(super) fn report_v1_login(&mut self, line: &Line<'_>, out: &mut Vec<Event>) {
        let Some(state) = self.state(line) else {
            return;
        };
        if !std::mem::take(&mut state.v1_waiting) {
            return;
        }
        state.established = true;
        state.auth_reported = true;
        let method = state.v1_method.unwrap_or(AuthMethod::Unknown);
        self.push_auth(line, method, None, out);
        self.push_ike(line, SaChange::Established, None, None, out);
    }

    /// `detected reauth of existing IKE_SA, adopting N children …`: an IKEv1 client logged in
    /// again over its established IKE_SA (Windows does every 8 hours) and charon moved the
    /// CHILD_SAs over, logging no `CHILD_SA … established`. The new IKE_SA continues the
    /// session like a rekey; the old one's delete that follows does not end it.
    fn v1_reauth(&mut self, line: &Line<'_>, out: &mut Vec<Event>) -> bool {
        let Some(SaKey::Id(new_id)) = line.key else {
            return false;
        };
        let Some(new) = self.sas.get(&SaKey::Id(new_id)) else {
            return false;
        };
        if !new.v1_waiting {
            // An IKEv2 reauthentication is a login of its own (reported already).
            return true;
        }
        let client_ip = new.client.ip;
        let old_key = self
            .sas
            .iter()
            .filter(|(key, state)| {
                **key != SaKey::Id(new_id)
                    && state.established
                    && state.rekeyed_into.is_none()
                    && state.client.ip.is_some()
                    && state.client.ip == client_ip
            })
            .max_by_key(|(_, state)| state.last_seq)
            .map(|(key, _)| *key);
        let Some(old_key) = old_key else {
            // Nothing to continue: the adopted CHILD_SA makes this a login.
            self.report_v1_login(line, out);
            return true;
        };
        let Some(old) = self.sas.get_mut(&old_key) else {
            return false;
        };
        old.rekeyed_into = Some(new_id);
        let old = old.clone();
        if let Some(new) = self.sas.get_mut(&SaKey::Id(new_id)) {
            new.v1_waiting = false;
            new.established = true;
            new.auth_reported = true;
            new.identities.merge_from(&old.identities);
            new.v1_method = new.v1_method.or(old.v1_method);
        }
        let body = EventBody::IkeSa(IkeSaEvent {
            peer: self.peer_for(Some(old_key)),
            change: SaChange::Rekeyed,
            new_ike_sa_id: Some(new_id),
            cause: None,
            proposal: None,
        });
        self.push(line, out, body);
        true
    }

    /// An IKEv1 IKE_SA ended before quick mode brought up a CHILD_SA: a failed login, no
    /// session.
    pub(super) fn report_v1_failure(&mut self, line: &Line<'_>, out: &mut Vec<Event>) {
        let Some(state) = self.state(line) else {
            return;
        };
        let method = state.v1_method.unwrap_or(AuthMethod::Unknown);
        let reason = state.child_failure.clone().unwrap_or_else(|| {
            "IKEv1 IKE_SA ended before quick mode established a CHILD_SA".to_owned()
        });
        let failure = AuthFailure {
            code: FailureCode::Other,
            reason,
        };
        self.push_failure(line, method, failure, out);
    }
}

/// A line that says why an IKEv1 quick mode failed (what the peer or charon refused).
fn quick_mode_failure(message: &str) -> bool {
    (message.starts_with("received ") && message.ends_with(" error notify"))
        || message.starts_with("no matching CHILD_SA config")
        || message.starts_with("no acceptable proposal")
        || message.starts_with("unable to install")
        || message.starts_with("failed to establish CHILD_SA")
}
