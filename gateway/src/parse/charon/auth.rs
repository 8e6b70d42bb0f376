//! Who the peer is and how it authenticated: the identities and the configuration it was
//! matched to, a successful authentication, EAP and RADIUS, and the lines that say a login
//! failed (each failure is reported once per IKE_SA, by its most specific line).

use model::{AuthFailure, AuthMethod, Endpoint, Event, FailureCode};

use super::{CharonParser, Line, ShortStr, endpoint_pair};

impl CharonParser {
    /// `looking for peer configs matching …`, `selected peer config '…'`, `authentication of
    /// '…' with … successful`, `received end entity cert "…"`.
    pub(super) fn identity(
        &mut self,
        line: &Line<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> Option<bool> {
        if let Some(rest) = text.strip_prefix("looking for peer configs matching ") {
            if let Some((local, remote)) = endpoint_pair(rest)
                && let Some(state) = self.state(line)
            {
                state.server.ip = local.0.or(state.server.ip);
                if let Some(id) = remote.1.filter(|id| *id != "%any") {
                    state.identities.ike_id = Some(id.to_owned());
                }
                if remote.0.is_some() && state.client.ip != remote.0 {
                    state.client = Endpoint {
                        ip: remote.0,
                        port: None,
                    };
                }
            }
            return Some(true);
        }
        // IKEv2 quotes the name with ', IKEv1 with ".
        if let Some(name) = text
            .strip_prefix("selected peer config '")
            .and_then(|rest| rest.strip_suffix('\''))
            .or_else(|| {
                text.strip_prefix("selected peer config \"")
                    .and_then(|rest| rest.strip_suffix('"'))
            })
        {
            if let Some(state) = self.state(line) {
                state.connection = Some(name.to_owned());
            }
            return Some(true);
        }
        if let Some(rest) = text.strip_prefix("authentication of '") {
            return Some(self.authenticated(line, rest, out));
        }
        let subject = text
            .strip_prefix("received end entity cert \"")
            .and_then(|rest| rest.strip_suffix('"'))?;
        if let Some(state) = self.state(line) {
            state.identities.cert_subject = Some(subject.to_owned());
        }
        Some(true)
    }

    /// `authentication of 'client1@psk.vpn.test' with pre-shared key successful` (after
    /// `authentication of '`): the peer's login, unless it is our own (`(myself)`).
    fn authenticated(&mut self, line: &Line<'_>, rest: &str, out: &mut Vec<Event>) -> bool {
        let Some((id, how)) = rest.split_once_short("' ") else {
            return false;
        };
        if how.starts_with("(myself)") {
            return true;
        }
        let Some(method) = how
            .strip_prefix("with ")
            .and_then(|how| how.strip_suffix(" successful"))
        else {
            return false;
        };
        let Some(state) = self.state(line) else {
            return false;
        };
        let method = match method {
            "pre-shared key" => AuthMethod::Psk,
            "EAP" if state.radius => AuthMethod::EapRadius,
            "EAP" if state.eap_method.as_deref() == Some("EAP_MSCHAPV2") => AuthMethod::EapMschapv2,
            "EAP" => AuthMethod::Eap,
            _ => AuthMethod::Cert,
        };
        if state.identities.ike_id.is_none() {
            state.identities.ike_id = Some(id.to_owned());
        }
        if state.ikev1 {
            // Reported with the first CHILD_SA (quick mode may still fail).
            state.v1_method.get_or_insert(method);
            return true;
        }
        state.auth_reported = true;
        self.push_auth(line, method, None, out);
        true
    }

    /// EAP and RADIUS: `received EAP identity '…'`, the RADIUS exchange, `EAP method … failed
    /// for peer …`, `EAP-MS-CHAPv2 verification failed`.
    pub(super) fn eap_radius(
        &mut self,
        line: &Line<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> Option<bool> {
        if let Some(id) = text
            .strip_prefix("received EAP identity '")
            .and_then(|rest| rest.strip_suffix('\''))
        {
            if let Some(state) = self.state(line) {
                state.identities.eap_id = Some(id.to_owned());
            }
            return Some(true);
        }
        if text.starts_with("received RADIUS Access-Reject")
            || text.starts_with("sending RADIUS Access-Request")
        {
            if let Some(state) = self.state(line) {
                state.radius = true;
            }
            return Some(true);
        }
        if let Some(rest) = text.strip_prefix("RADIUS authentication of '") {
            let Some((id, verdict)) = rest.split_once_short("' ") else {
                return Some(false);
            };
            if let Some(state) = self.state(line) {
                state.radius = true;
                state.identities.eap_id.get_or_insert_with(|| id.to_owned());
            }
            if verdict == "failed" {
                let failure = AuthFailure {
                    code: FailureCode::RadiusReject,
                    reason: text.to_owned(),
                };
                self.push_failure(line, AuthMethod::EapRadius, failure, out);
            }
            return Some(true);
        }
        if let Some(rest) = text.strip_prefix("EAP method ") {
            return Some(self.eap_method(line, text, rest, out));
        }
        if text.starts_with("EAP-MS-CHAPv2 verification failed") {
            // Every wrong password counts (MSCHAPv2 allows retries within one IKE_SA), so this
            // is not deduplicated like the other failure lines.
            let failure = AuthFailure {
                code: FailureCode::EapFailure,
                reason: text.to_owned(),
            };
            if let Some(state) = self.state(line) {
                state.auth_reported = true;
            }
            self.push_auth(line, AuthMethod::EapMschapv2, Some(failure), out);
            return Some(true);
        }
        None
    }

    /// `EAP method EAP_MSCHAPV2 succeeded, MSK established`, `… failed for peer …` (`rest`
    /// follows `EAP method `).
    fn eap_method(
        &mut self,
        line: &Line<'_>,
        text: &str,
        rest: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        let Some((eap_method, verdict)) = rest.split_once(' ') else {
            return false;
        };
        if let Some(state) = self.state(line) {
            state.eap_method = Some(eap_method.to_owned());
        }
        if verdict.starts_with("failed for peer ") {
            let radius = self.state(line).is_some_and(|state| state.radius);
            let (method, code) = if radius {
                (AuthMethod::EapRadius, FailureCode::RadiusReject)
            } else if eap_method == "EAP_MSCHAPV2" {
                (AuthMethod::EapMschapv2, FailureCode::EapFailure)
            } else {
                (AuthMethod::Eap, FailureCode::EapFailure)
            };
            let failure = AuthFailure {
                code,
                reason: text.to_owned(),
            };
            self.push_failure(line, method, failure, out);
        }
        true
    }

    /// The lines that say a login failed: a PSK that does not match, an untrusted
    /// certificate, no matching configuration, AUTH_FAILED sent or received.
    pub(super) fn failure(
        &mut self,
        line: &Line<'_>,
        text: &str,
        out: &mut Vec<Event>,
    ) -> Option<bool> {
        if let Some(rest) = text.strip_prefix("tried ") {
            // tried 1 shared key for 'gw.vpn.test' - 'client2@psk.vpn.test', but MAC mismatched
            let Some(peer_id) = rest
                .strip_suffix("', but MAC mismatched")
                .and_then(|rest| rest.rsplit_once_short(" - '"))
                .map(|(_, peer_id)| peer_id)
            else {
                return Some(false);
            };
            if let Some(state) = self.state(line) {
                state.identities.ike_id = Some(peer_id.to_owned());
            }
            let failure = AuthFailure {
                code: FailureCode::PskMismatch,
                reason: text.to_owned(),
            };
            self.push_failure(line, AuthMethod::Psk, failure, out);
            return Some(true);
        }
        if let Some(rest) = text.strip_prefix("no trusted ") {
            // no trusted RSA public key found for 'client3@cert.vpn.test'
            let Some(id) = rest
                .split_once_short(" public key found for '")
                .and_then(|(_, id)| id.strip_suffix('\''))
            else {
                return Some(false);
            };
            if let Some(state) = self.state(line) {
                state
                    .identities
                    .cert_subject
                    .get_or_insert_with(|| id.to_owned());
            }
            let failure = AuthFailure {
                code: FailureCode::CertInvalid,
                reason: text.to_owned(),
            };
            self.push_failure(line, AuthMethod::Cert, failure, out);
            return Some(true);
        }
        let failure = if text == "no matching peer config found"
            || text.starts_with("no peer config found")
        {
            AuthFailure {
                code: FailureCode::NoMatchingConfig,
                reason: text.to_owned(),
            }
        } else if text.starts_with("generating ") && text.contains_short("N(AUTH_FAILED)") {
            AuthFailure {
                code: FailureCode::Other,
                reason: "authentication failed (AUTH_FAILED sent to the peer)".to_owned(),
            }
        } else if text.starts_with("parsed ") && text.contains_short("N(AUTH_FAILED)") {
            AuthFailure {
                code: FailureCode::PeerRejected,
                reason: "the peer sent AUTH_FAILED".to_owned(),
            }
        } else if text.starts_with("received AUTHENTICATION_FAILED notify error") {
            AuthFailure {
                code: FailureCode::PeerRejected,
                reason: text.to_owned(),
            }
        } else {
            return None;
        };
        self.push_failure(line, AuthMethod::Unknown, failure, out);
        Some(true)
    }
}
