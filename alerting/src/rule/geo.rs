//! `geo`: where a user logs in from, per group (by default the user). Checks:
//! - `impossible_travel`: two logins whose great-circle distance (less each point's
//!   `accuracy_km`) over the time between them is faster than `max_speed_kmh`;
//! - `new_country` / `new_asn`: a country or AS the user has not logged in from within
//!   `history_days` (a user's first login only teaches);
//! - `denied_country`: a login from one of `denied_countries`.
//!
//! Addresses in `allow_cidrs` and ASNs in `allow_asns` (one's own egress) are never judged.
//! The history is kept in memory (warmed from the store after a restart: not yet).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use model::Event;

use super::{Filter, in_cidr};

/// Earth's mean radius, km.
const EARTH_RADIUS_KM: f64 = 6371.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    ImpossibleTravel,
    NewCountry,
    NewAsn,
    DeniedCountry,
}

#[derive(Debug, Clone)]
pub struct Geo {
    pub filter: Filter,
    pub check: Check,
    pub max_speed_kmh: f64,
    pub accuracy_km: f64,
    pub history: Duration,
    pub denied_countries: Vec<String>,
    pub allow_cidrs: Vec<(IpAddr, u8)>,
    pub allow_asns: Vec<u32>,
}

/// Per group: the last located login, and when each country and AS was last seen.
#[derive(Debug, Default)]
pub struct State {
    pub groups: HashMap<String, Seen>,
}

/// What one group's logins taught (kept across restarts, see [`crate::engine::Snapshot`]).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    last: Option<Login>,
    places: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Login {
    at: i64,
    lat: f64,
    lon: f64,
    place: String,
    id: String,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub evidence: Vec<String>,
    pub reason: String,
}

impl Geo {
    pub fn observe(&self, state: &mut State, group: String, event: &Event) -> Option<Found> {
        let ip = source_ip(event);
        if ip.is_some_and(|ip| {
            self.allow_cidrs
                .iter()
                .any(|(network, len)| in_cidr(ip, *network, *len))
        }) {
            return None;
        }
        let geo = event.source_geo.as_ref()?;
        if geo
            .as_number
            .is_some_and(|asn| self.allow_asns.contains(&asn))
        {
            return None;
        }
        let at = event.timestamp.as_microsecond();
        let id = event.id.to_string();
        let country = geo.country_iso_code.clone();
        match self.check {
            Check::DeniedCountry => {
                let country = country?;
                self.denied_countries.contains(&country).then(|| Found {
                    evidence: vec![id],
                    reason: format!("a login from {country}, a denied country"),
                })
            }
            Check::NewCountry | Check::NewAsn => {
                let place = match self.check {
                    Check::NewCountry => country?,
                    _ => format!("AS{}", geo.as_number?),
                };
                let history = i64::try_from(self.history.as_micros()).unwrap_or(i64::MAX);
                let seen = state.groups.entry(group).or_default();
                seen.places
                    .retain(|_, last| *last >= at.saturating_sub(history));
                let known = !seen.places.is_empty();
                let new = !seen.places.contains_key(&place);
                let before: Vec<String> = seen.places.keys().cloned().collect();
                let last = seen.places.entry(place.clone()).or_insert(at);
                *last = (*last).max(at);
                (known && new).then(|| Found {
                    evidence: vec![id],
                    reason: format!(
                        "first login from {place} within {} days (seen: {})",
                        self.history.as_secs() / 86_400,
                        before.join(", ")
                    ),
                })
            }
            Check::ImpossibleTravel => {
                let (lat, lon) = (geo.lat?, geo.lon?);
                let place = match (&geo.city_name, &country) {
                    (Some(city), Some(country)) => format!("{city} ({country})"),
                    (None, Some(country)) => country.clone(),
                    _ => format!("{lat:.2},{lon:.2}"),
                };
                let seen = state.groups.entry(group).or_default();
                let login = Login {
                    at,
                    lat,
                    lon,
                    place,
                    id,
                };
                let found = seen.last.as_ref().and_then(|previous| {
                    let km = distance_km(previous.lat, previous.lon, login.lat, login.lon)
                        - 2.0 * self.accuracy_km;
                    if km <= 0.0 {
                        return None;
                    }
                    let hours = (login.at - previous.at).unsigned_abs() as f64 / 3.6e9;
                    let speed = if hours > 0.0 { km / hours } else { f64::INFINITY };
                    (speed > self.max_speed_kmh).then(|| Found {
                        evidence: vec![previous.id.clone(), login.id.clone()],
                        reason: format!(
                            "{:.0} km from {} to {} in {:.0} min ({} km/h; at most {:.0} is possible)",
                            km + 2.0 * self.accuracy_km,
                            previous.place,
                            login.place,
                            hours * 60.0,
                            if speed.is_finite() { format!("{speed:.0}") } else { "∞".to_owned() },
                            self.max_speed_kmh
                        ),
                    })
                });
                // The newer of the two is where the user is now.
                if seen
                    .last
                    .as_ref()
                    .is_none_or(|previous| login.at >= previous.at)
                {
                    seen.last = Some(login);
                }
                found
            }
        }
    }

    /// Forgets groups with nothing within the history (or a day, for travel); returns how
    /// many went.
    pub fn sweep(&self, state: &mut State, now: Timestamp) -> usize {
        let keep = match self.check {
            Check::ImpossibleTravel => Duration::from_secs(86_400),
            _ => self.history,
        };
        let horizon = now
            .as_microsecond()
            .saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX));
        let before = state.groups.len();
        state.groups.retain(|_, seen| {
            seen.last.as_ref().is_some_and(|last| last.at >= horizon)
                || seen.places.values().any(|last| *last >= horizon)
        });
        before - state.groups.len()
    }
}

fn source_ip(event: &Event) -> Option<IpAddr> {
    match (model::fields::SOURCE_IP.event?)(event)? {
        model::fields::Value::Ip(ip) => Some(ip),
        model::fields::Value::Str(text) => text.parse().ok(),
        _ => None,
    }
}

/// Great-circle distance (haversine), km.
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lon2 - lon1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().clamp(0.0, 1.0).asin()
}
