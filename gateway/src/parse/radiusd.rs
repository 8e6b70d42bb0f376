//! FreeRADIUS's own log lines, as the `syslog` format meets them (`radiusd[pid]:` or
//! `freeradius[pid]:`): only the authentication results, which are simple one-liners.
//!
//! ```text
//! (0) Login OK: [alice] (from client localhost port 0 cli 192.0.2.12)
//! Auth: (1) Login incorrect (pap: Cleartext password does not match "known good" password): [bob] (from client localhost port 0 cli 192.0.2.13)
//! ```
//!
//! With `auth_goodpass`/`auth_badpass` FreeRADIUS writes `[user/password]`; only the part
//! before the first `/` is kept as the user (the raw line is kept as written). Everything else
//! FreeRADIUS logs is ignored.

use model::{Auth, AuthFailure, AuthMethod, Event, EventBody, FailureCode, Outcome, Peer};

use super::LineOutcome;
use super::message::{Message, Origin};
use super::radius_detail::calling_station_endpoint;
use super::text::ShortStr;

/// `event.dataset` of FreeRADIUS log lines.
pub(crate) const DATASET: &str = "freeradius.log";

const PRODUCT: &str = "freeradius";

/// Reads one FreeRADIUS log message.
pub(crate) fn parse_message(
    message: &Message<'_>,
    source: &str,
    out: &mut Vec<Event>,
) -> LineOutcome {
    let text = message.text.trim_end();
    let text = text.strip_prefix("Auth: ").unwrap_or(text);
    // The request number: `(12) `.
    let text = match text
        .strip_prefix('(')
        .and_then(|rest| rest.split_once_short(") "))
    {
        Some((number, rest)) if number.bytes().all(|byte| byte.is_ascii_digit()) => rest,
        _ => text,
    };
    let (outcome, failure) = if text.starts_with("Login OK: [") {
        (Outcome::Success, None)
    } else if text.starts_with("Login incorrect") || text.starts_with("Invalid user") {
        let reason = text
            .rsplit_once_short(": [")
            .map_or(text, |(reason, _)| reason)
            .to_owned();
        let failure = AuthFailure {
            code: FailureCode::RadiusReject,
            reason,
        };
        (Outcome::Failure, Some(failure))
    } else {
        return LineOutcome::Ignored;
    };
    // The user: `[alice]`, `[alice/<via Auth-Type = eap>]` or `[alice/password]`.
    let Some((_, after_open)) = text.rsplit_once_short(": [") else {
        return LineOutcome::Ignored;
    };
    let Some((inside, details)) = after_open.rsplit_once_short("] (") else {
        return LineOutcome::Ignored;
    };
    let user = inside.split_once('/').map_or(inside, |(user, _)| user);
    let client = details
        .split_once_short(" cli ")
        .and_then(|(_, cli)| cli.trim_end_matches(')').split(' ').next())
        .and_then(calling_station_endpoint)
        .unwrap_or_default();
    let mut peer = Peer {
        client,
        ..Peer::default()
    };
    peer.identities.eap_id = Some(user.to_owned());
    let auth = Auth {
        peer,
        method: AuthMethod::Unknown,
        outcome,
        failure,
    };
    let origin = Origin {
        source,
        dataset: DATASET,
        product: PRODUCT,
    };
    message.push(&origin, out, EventBody::Auth(auth));
    LineOutcome::Parsed
}
