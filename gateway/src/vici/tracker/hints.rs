//! What the `log` events of an IKE_SA say: the method, identities and failure of a login,
//! who deleted it. Kept per `ikesa-uniqueid` in [`Hints`] until the outcome arrives.

use super::*;

impl Tracker {
    pub(super) fn hints(&mut self, id: u64) -> &mut Hints {
        self.hint_clock += 1;
        if self.hints.len() >= MAX_HINTS && !self.hints.contains_key(&id) {
            let oldest = self
                .hints
                .iter()
                .min_by_key(|(_, hints)| hints.touched)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.hints.remove(&oldest);
            }
        }
        let clock = self.hint_clock;
        let hints = self.hints.entry(id).or_default();
        hints.touched = clock;
        hints
    }

    pub(super) fn on_log(&mut self, message: &Message, now: Timestamp, out: &mut Vec<Produced>) {
        let Some(id) = message
            .str("ikesa-uniqueid")
            .and_then(|id| id.parse::<u64>().ok())
        else {
            return;
        };
        let Some(text) = message.str("msg") else {
            return;
        };
        let text = text.as_str();
        let original = format!("vici log {}", message.to_json());
        let hints = self.hints(id);
        if let Some(rest) = text.strip_prefix("authentication of '")
            && let Some((who, how)) = rest.split_once("' ")
            && !how.starts_with("(myself)")
            && how.ends_with(" successful")
        {
            hints
                .identities
                .ike_id
                .get_or_insert_with(|| who.to_owned());
            if how.starts_with("with pre-shared key") {
                hints.method = Some(AuthMethod::Psk);
            } else if how.contains("signature")
                || how.contains("RSA")
                || how.contains("ECDSA")
                || how.contains("ED25519")
            {
                hints.method = Some(AuthMethod::Cert);
            }
            return;
        }
        if let Some(id_text) = text
            .strip_prefix("received EAP identity '")
            .and_then(|rest| rest.strip_suffix('\''))
        {
            hints.identities.eap_id = Some(id_text.to_owned());
            return;
        }
        if let Some(subject) = text
            .strip_prefix("received end entity cert \"")
            .and_then(|rest| rest.strip_suffix('"'))
        {
            hints.identities.cert_subject = Some(subject.to_owned());
            return;
        }
        // IKEv1 main mode logs no "authentication of ... successful" for a PSK; the
        // responder looks the key up by the peer's address first.
        if text.starts_with("looking for pre-shared key peer configs matching") {
            hints.method.get_or_insert(AuthMethod::Psk);
            return;
        }
        if is_child_failure(text) {
            hints.child_failure.get_or_insert_with(|| text.to_owned());
            return;
        }
        if text.starts_with("sending RADIUS Access-Request") {
            hints.radius = true;
            return;
        }
        if let Some(rest) = text.strip_prefix("EAP method ") {
            let (eap_method, verdict) = rest.split_once(' ').unwrap_or((rest, ""));
            let method = if hints.radius {
                AuthMethod::EapRadius
            } else if eap_method == "EAP_MSCHAPV2" {
                AuthMethod::EapMschapv2
            } else {
                AuthMethod::Eap
            };
            if verdict.starts_with("succeeded") {
                hints.method = Some(method);
            } else if verdict.starts_with("failed") {
                let code = if hints.radius {
                    FailureCode::RadiusReject
                } else {
                    FailureCode::EapFailure
                };
                set_failure(hints, method, code, text);
            }
            return;
        }
        if let Some(rest) = text.strip_prefix("RADIUS authentication of '") {
            hints.radius = true;
            if let Some((user, verdict)) = rest.split_once("' ") {
                hints
                    .identities
                    .eap_id
                    .get_or_insert_with(|| user.to_owned());
                if verdict == "failed" {
                    set_failure(
                        hints,
                        AuthMethod::EapRadius,
                        FailureCode::RadiusReject,
                        text,
                    );
                } else {
                    hints.method = Some(AuthMethod::EapRadius);
                }
            }
            return;
        }
        if text.starts_with("tried ") && text.ends_with("but MAC mismatched") {
            if let Some(peer_id) = text
                .strip_suffix("', but MAC mismatched")
                .and_then(|rest| rest.rsplit_once(" - '"))
                .map(|(_, peer_id)| peer_id)
            {
                hints.identities.ike_id = Some(peer_id.to_owned());
            }
            set_failure(hints, AuthMethod::Psk, FailureCode::PskMismatch, text);
            return;
        }
        if text.starts_with("EAP-MS-CHAPv2 verification failed") {
            set_failure(
                hints,
                AuthMethod::EapMschapv2,
                FailureCode::EapFailure,
                text,
            );
            return;
        }
        if (text.starts_with("no trusted ") && text.contains("public key found for"))
            || text.starts_with("constraint check failed")
            || text.contains("certificate was revoked")
            || text.starts_with("certificate status is REVOKED")
        {
            set_failure(hints, AuthMethod::Cert, FailureCode::CertInvalid, text);
            return;
        }
        if text == "no matching peer config found" || text.starts_with("no peer config found") {
            set_failure(
                hints,
                AuthMethod::Unknown,
                FailureCode::NoMatchingConfig,
                text,
            );
            return;
        }
        if text.starts_with("received AUTHENTICATION_FAILED notify error") {
            set_failure(hints, AuthMethod::Unknown, FailureCode::PeerRejected, text);
            return;
        }
        if let Some(rest) = text.strip_prefix("received packet: from ")
            && let Some((from, _)) = rest.split_once(" to ")
            && let Some(endpoint) = parse_endpoint(from)
        {
            hints.client = endpoint;
            return;
        }
        if text.starts_with("sending DELETE for IKE_SA") {
            hints.sent_delete = true;
            return;
        }
        if text.starts_with("destroying duplicate IKE_SA") {
            hints.duplicate = true;
            return;
        }
        if text.starts_with("giving up after") {
            hints.dead_peer = true;
            return;
        }
        if text.starts_with("received DELETE for IKE_SA") {
            hints.received_delete = true;
            return;
        }
        // The client gave up (it tells us so), or charon dropped the half-open IKE_SA: the
        // login failed even though no ike-updown will say so.
        let peer_gave_up =
            text.starts_with("parsed INFORMATIONAL request") && text.contains("N(AUTH_FAILED)");
        if (peer_gave_up || text.starts_with("deleting half open IKE_SA"))
            && !self.state.sas.contains_key(&id)
            && !self.state.awaiting_child.contains_key(&id)
        {
            self.report_failure(id, None, now, &original, out);
        }
    }

    /// Emits the failed login of IKE_SA `id` once, with what the log said about it.
    pub(super) fn report_failure(
        &mut self,
        id: u64,
        section: Option<(&str, &Message)>,
        now: Timestamp,
        original: &str,
        out: &mut Vec<Produced>,
    ) {
        let hints = self.hints(id);
        if hints.failure_reported {
            return;
        }
        hints.failure_reported = true;
        let (method, failure) = hints.failure.clone().unwrap_or_else(|| {
            (
                hints.method.unwrap_or(AuthMethod::Unknown),
                AuthFailure {
                    code: FailureCode::Other,
                    reason: "the IKE_SA failed before it was established".to_owned(),
                },
            )
        });
        let mut info = match section {
            Some((connection, section)) => sa_info(connection, section),
            None => SaInfo::default(),
        };
        let hints = self.hints(id);
        info.identities.merge_from(&hints.identities);
        if info.client.ip.is_none() {
            info.client = hints.client;
        }
        out.push(Produced {
            timestamp: now,
            original: original.to_owned(),
            body: EventBody::Auth(Auth {
                peer: peer_of(id, &info),
                method,
                outcome: Outcome::Failure,
                failure: Some(failure),
            }),
        });
    }
}

fn set_failure(hints: &mut Hints, method: AuthMethod, code: FailureCode, text: &str) {
    // A specific reason is not replaced by a later, vaguer one (the RADIUS reject comes
    // before the generic "EAP method failed").
    let weak = matches!(
        hints.failure,
        None | Some((
            _,
            AuthFailure {
                code: FailureCode::PeerRejected | FailureCode::Other,
                ..
            }
        ))
    );
    if weak {
        hints.failure = Some((
            method,
            AuthFailure {
                code,
                reason: text.to_owned(),
            },
        ));
    }
}

/// Log lines that say why a CHILD_SA (IKEv1: quick mode) failed.
fn is_child_failure(text: &str) -> bool {
    // IKEv1 notifies read "received NO_PROPOSAL_CHOSEN error notify"; IKEv2's read
    // "received ... notify error" and are handled as authentication failures.
    (text.starts_with("received ") && text.ends_with(" error notify"))
        || text.starts_with("unable to install ")
        || text.starts_with("IPsec SA: unsupported mode")
        || text == "no matching CHILD_SA config found"
        || text.starts_with("no acceptable proposal found")
        || text.starts_with("failed to establish CHILD_SA")
}

fn parse_endpoint(text: &str) -> Option<Endpoint> {
    let (ip, port) = text.strip_suffix(']')?.split_once('[')?;
    Some(Endpoint {
        ip: Some(ip.parse().ok()?),
        port: port.parse().ok(),
    })
}
