//! Mute times: when a receiver is not paged (a team's nights and weekends, while another
//! receiver covers them). A page due in a mute time waits in the outbox until it ends, and
//! is then delivered: muting delays, it never drops.
//!
//! ```toml
//! mute_times = [
//!   { weekdays = ["sat", "sun"], timezone = "Europe/Berlin" },
//!   { weekdays = ["mon", "tue", "wed", "thu", "fri"], start = "20:00", end = "07:00", timezone = "Europe/Berlin" },
//! ]
//! ```
//!
//! `start` and `end` are times of day (`end` before `start`: over midnight, into the next
//! day); without them, the whole day. `weekdays` (default: every day) are the days an
//! interval starts on. Pure.

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use serde::Deserialize;

/// One mute time as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MuteTimeConfig {
    #[serde(default)]
    pub weekdays: Vec<String>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// An IANA zone (default UTC).
    #[serde(default)]
    pub timezone: Option<String>,
}

/// A mute time, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MuteTime {
    days: Vec<Weekday>,
    /// Minutes of the day: [start, end), `end` may be ≤ `start` (over midnight).
    start: u32,
    end: u32,
    tz: TimeZone,
}

fn minutes(text: &str) -> Result<u32, String> {
    let bad = || {
        format!(
            "`{}` is not a time of day like 07:30 (or 24:00)",
            text.escape_debug()
        )
    };
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m > 0) || h.to_string().len() > 2 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl MuteTimeConfig {
    pub fn check(&self) -> Result<MuteTime, String> {
        let days = if self.weekdays.is_empty() {
            vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
                Weekday::Saturday,
                Weekday::Sunday,
            ]
        } else {
            self.weekdays
                .iter()
                .map(|day| match day.to_ascii_lowercase().get(..3) {
                    Some("mon") => Ok(Weekday::Monday),
                    Some("tue") => Ok(Weekday::Tuesday),
                    Some("wed") => Ok(Weekday::Wednesday),
                    Some("thu") => Ok(Weekday::Thursday),
                    Some("fri") => Ok(Weekday::Friday),
                    Some("sat") => Ok(Weekday::Saturday),
                    Some("sun") => Ok(Weekday::Sunday),
                    _ => Err(format!(
                        "`{}` is not a weekday (mon … sun)",
                        day.escape_debug()
                    )),
                })
                .collect::<Result<_, _>>()?
        };
        let start = self.start.as_deref().map(minutes).transpose()?.unwrap_or(0);
        let end = self
            .end
            .as_deref()
            .map(minutes)
            .transpose()?
            .unwrap_or(24 * 60);
        if start == end {
            return Err("start and end are the same time: that mutes nothing".to_owned());
        }
        let tz = match &self.timezone {
            Some(name) => TimeZone::get(name)
                .map_err(|_| format!("`{}` is not a time zone", name.escape_debug()))?,
            None => TimeZone::UTC,
        };
        Ok(MuteTime {
            days,
            start,
            end,
            tz,
        })
    }
}

impl MuteTime {
    /// When the mute time that holds `now` ends (`None`: not muted now).
    pub fn muted_until(&self, now: Timestamp) -> Option<Timestamp> {
        let zoned = now.to_zoned_datetime(self.tz.clone());
        let minute =
            u32::from(zoned.hour().unsigned_abs()) * 60 + u32::from(zoned.minute().unsigned_abs());
        let today = zoned.weekday();
        let yesterday = today.previous();
        let midnight = zoned.start_of_day().ok()?;
        let at = |day_offset: i64, minutes: u32| {
            midnight
                .checked_add(jiff::SignedDuration::from_mins(
                    day_offset * 1440 + i64::from(minutes),
                ))
                .ok()
                .map(|zoned| zoned.timestamp())
        };
        if self.start < self.end {
            if self.days.contains(&today) && (self.start..self.end).contains(&minute) {
                return at(0, self.end);
            }
            return None;
        }
        // Over midnight: from `start` on a listed day to `end` the next day.
        if self.days.contains(&today) && minute >= self.start {
            return at(1, self.end);
        }
        if self.days.contains(&yesterday) && minute < self.end {
            return at(0, self.end);
        }
        None
    }
}

/// When the first of `times` that holds `now` ends, following one into the next (a weekend
/// then a Monday morning): `None` when none holds.
pub fn muted_until(times: &[MuteTime], now: Timestamp) -> Option<Timestamp> {
    let mut until = None;
    let mut at = now;
    // A few hops at most: intervals that chain into each other.
    for _ in 0..16 {
        let Some(end) = times.iter().filter_map(|time| time.muted_until(at)).max() else {
            break;
        };
        if end <= at {
            break;
        }
        until = Some(end);
        at = end;
    }
    until
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mute(weekdays: &[&str], start: Option<&str>, end: Option<&str>) -> MuteTime {
        MuteTimeConfig {
            weekdays: weekdays.iter().map(|day| (*day).to_owned()).collect(),
            start: start.map(str::to_owned),
            end: end.map(str::to_owned),
            timezone: Some("Europe/Berlin".to_owned()),
        }
        .check()
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn nights_and_weekends_are_muted_until_they_end() {
        let nights = mute(
            &["mon", "tue", "wed", "thu", "fri"],
            Some("20:00"),
            Some("07:00"),
        );
        let weekend = mute(&["sat", "sun"], None, None);
        let both = [nights.clone(), weekend];
        // 2026-12-07 is a Monday; Berlin is UTC+1 in December.
        assert_eq!(muted_until(&both, at("2026-12-07T12:00:00Z")), None);
        assert_eq!(
            muted_until(&both, at("2026-12-07T21:30:00Z")),
            Some(at("2026-12-08T06:00:00Z"))
        );
        assert_eq!(
            nights.muted_until(at("2026-12-08T05:59:00Z")),
            Some(at("2026-12-08T06:00:00Z"))
        );
        // Friday night runs into the weekend, which ends at Monday 00:00 (Sunday night is not
        // one of the listed nights).
        assert_eq!(
            muted_until(&both, at("2026-12-11T22:00:00Z")),
            Some(at("2026-12-13T23:00:00Z"))
        );
    }

    #[test]
    fn bad_mute_times_are_named() {
        for (config, expected) in [
            (
                MuteTimeConfig {
                    weekdays: vec!["funday".to_owned()],
                    start: None,
                    end: None,
                    timezone: None,
                },
                "weekday",
            ),
            (
                MuteTimeConfig {
                    weekdays: vec![],
                    start: Some("25:00".to_owned()),
                    end: None,
                    timezone: None,
                },
                "time of day",
            ),
            (
                MuteTimeConfig {
                    weekdays: vec![],
                    start: Some("7".to_owned()),
                    end: None,
                    timezone: None,
                },
                "time of day",
            ),
            (
                MuteTimeConfig {
                    weekdays: vec![],
                    start: Some("08:00".to_owned()),
                    end: Some("08:00".to_owned()),
                    timezone: None,
                },
                "mutes nothing",
            ),
            (
                MuteTimeConfig {
                    weekdays: vec![],
                    start: None,
                    end: None,
                    timezone: Some("Mars/Olympus".to_owned()),
                },
                "time zone",
            ),
        ] {
            let error = config.check().unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }
}
