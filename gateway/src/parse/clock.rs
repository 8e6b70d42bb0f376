//! Turning log timestamps into UTC instants.
//!
//! Syslog-style timestamps (`Nov 25 08:25:08`) carry neither a year nor a zone. The
//! [`LogClock`] supplies both: the zone from configuration (`--tz`, UTC by default) and the
//! year from `--year` or, when none is given, from "now" (a date that would lie in the future
//! belongs to last year). Within one stream a jump from December back to January moves to the
//! next year, so a file that spans New Year gets the right dates.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

/// How far in the future a year-less date may lie before it is taken to be last year's.
/// Covers clock skew between the gateway and the machine that reads its logs.
const FUTURE_TOLERANCE_SECS: i64 = 2 * 24 * 3600;

/// Year and zone context for one log stream.
#[derive(Debug, Clone)]
pub struct LogClock {
    tz: TimeZone,
    explicit_year: Option<i16>,
    now: Timestamp,
    /// The year and month of the previous year-less timestamp of this stream.
    last: Option<(i16, i8)>,
}

/// The broken-down fields of a timestamp as a log line spelled it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalStamp {
    /// None for syslog-style stamps without a year.
    pub year: Option<i16>,
    pub month: i8,
    pub day: i8,
    pub hour: i8,
    pub minute: i8,
    pub second: i8,
    pub nanosecond: i32,
    /// Offset from UTC in seconds when the stamp carried one (`Z`, `+01:00`).
    pub offset_secs: Option<i32>,
}

impl LogClock {
    /// `year`: the year of the first year-less timestamp (`--year`); `now`: the reference
    /// instant used to guess the year when none is given.
    pub fn new(tz: TimeZone, year: Option<i16>, now: Timestamp) -> LogClock {
        LogClock {
            tz,
            explicit_year: year,
            now,
            last: None,
        }
    }

    /// Moves the reference instant (a long-running tailer calls this as time passes).
    pub fn set_now(&mut self, now: Timestamp) {
        self.now = now;
    }

    pub(crate) fn resolve(&mut self, stamp: LocalStamp) -> Option<Timestamp> {
        let time = Time::new(stamp.hour, stamp.minute, stamp.second, stamp.nanosecond).ok()?;
        if let Some(year) = stamp.year {
            let datetime =
                DateTime::from_parts(Date::new(year, stamp.month, stamp.day).ok()?, time);
            return match stamp.offset_secs {
                Some(offset) => {
                    let offset = jiff::tz::Offset::from_seconds(offset).ok()?;
                    offset.to_timestamp(datetime).ok()
                }
                None => self.tz.to_ambiguous_timestamp(datetime).compatible().ok(),
            };
        }
        let year = self.year_for(stamp.month, stamp.day, time)?;
        let date = Date::new(year, stamp.month, stamp.day).ok()?;
        let timestamp = self
            .tz
            .to_ambiguous_timestamp(DateTime::from_parts(date, time))
            .compatible()
            .ok()?;
        self.last = Some((year, stamp.month));
        Some(timestamp)
    }

    fn year_for(&self, month: i8, day: i8, time: Time) -> Option<i16> {
        if let Some((last_year, last_month)) = self.last {
            // December → January (or any jump back of half a year or more): a new year.
            if i16::from(last_month) - i16::from(month) >= 6 {
                return last_year.checked_add(1);
            }
            // A jump forward of half a year or more: a late line from the previous year.
            if i16::from(month) - i16::from(last_month) >= 6 {
                return last_year.checked_sub(1);
            }
            return Some(last_year);
        }
        if let Some(year) = self.explicit_year {
            return Some(year);
        }
        let now_year = self.now.to_zoned_datetime(self.tz.clone()).year();
        // Feb 29 exists only in leap years: try this year, then last year.
        let candidate = Date::new(now_year, month, day).ok().and_then(|date| {
            self.tz
                .to_ambiguous_timestamp(DateTime::from_parts(date, time))
                .compatible()
                .ok()
        });
        match candidate {
            Some(timestamp)
                if timestamp.as_second() - self.now.as_second() > FUTURE_TOLERANCE_SECS =>
            {
                now_year.checked_sub(1)
            }
            Some(_) => Some(now_year),
            None => now_year.checked_sub(1),
        }
    }
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn digits<const N: usize>(bytes: &[u8]) -> Option<i32> {
    let mut value = 0i32;
    for &byte in bytes.get(..N)? {
        if !byte.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i32::from(byte - b'0');
    }
    Some(value)
}

fn two(bytes: &[u8]) -> Option<i8> {
    digits::<2>(bytes).and_then(|value| i8::try_from(value).ok())
}

/// Reads `HH:MM:SS[.frac]` at the start of `bytes`; returns the fields and the length read.
fn clock_time(bytes: &[u8]) -> Option<(i8, i8, i8, i32, usize)> {
    if bytes.len() < 8 || bytes[2] != b':' || bytes[5] != b':' {
        return None;
    }
    let (hour, minute, second) = (two(bytes)?, two(&bytes[3..])?, two(&bytes[6..])?);
    let mut len = 8;
    let mut nanosecond = 0i32;
    if bytes.get(8) == Some(&b'.') || bytes.get(8) == Some(&b',') {
        let frac_digits = bytes[9..]
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        if frac_digits == 0 {
            return None;
        }
        let mut scale = 100_000_000;
        for &byte in &bytes[9..9 + frac_digits.min(9)] {
            nanosecond += i32::from(byte - b'0') * scale;
            scale /= 10;
        }
        len = 9 + frac_digits;
    }
    Some((hour, minute, second, nanosecond, len))
}

/// Reads a timestamp at the start of a line: `Nov 25 08:25:08[.123]` (syslog/charon
/// `%b %e %T`), or ISO 8601 / RFC 3339 `2026-11-25T08:25:08[.123456][Z|+01:00]` (also with a
/// space instead of `T`). Returns the stamp and the number of bytes it took.
pub(crate) fn read_stamp(line: &[u8]) -> Option<(LocalStamp, usize)> {
    if line.len() >= 15 && line[3] == b' ' && line[0].is_ascii_alphabetic() {
        let month = MONTHS.iter().position(|name| line[..3] == name[..])?;
        let day = if line[4] == b' ' {
            digits::<1>(&line[5..])
        } else {
            digits::<2>(&line[4..])
        }?;
        if line[6] != b' ' {
            return None;
        }
        let (hour, minute, second, nanosecond, time_len) = clock_time(&line[7..])?;
        let stamp = LocalStamp {
            year: None,
            month: i8::try_from(month + 1).ok()?,
            day: i8::try_from(day).ok()?,
            hour,
            minute,
            second,
            nanosecond,
            offset_secs: None,
        };
        return Some((stamp, 7 + time_len));
    }
    if line.len() >= 19
        && line[4] == b'-'
        && line[7] == b'-'
        && (line[10] == b'T' || line[10] == b' ')
    {
        let year = i16::try_from(digits::<4>(line)?).ok()?;
        let (month, day) = (two(&line[5..])?, two(&line[8..])?);
        let (hour, minute, second, nanosecond, time_len) = clock_time(&line[11..])?;
        let mut len = 11 + time_len;
        let offset_secs = match line.get(len) {
            Some(b'Z') => {
                len += 1;
                Some(0)
            }
            Some(&sign @ (b'+' | b'-')) if line.len() >= len + 6 && line[len + 3] == b':' => {
                let hours = i32::from(two(&line[len + 1..])?);
                let minutes = i32::from(two(&line[len + 4..])?);
                len += 6;
                let magnitude = hours * 3600 + minutes * 60;
                Some(if sign == b'-' { -magnitude } else { magnitude })
            }
            _ => None,
        };
        let stamp = LocalStamp {
            year: Some(year),
            month,
            day,
            hour,
            minute,
            second,
            nanosecond,
            offset_secs,
        };
        return Some((stamp, len));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(year: Option<i16>, now: &str) -> LogClock {
        LogClock::new(TimeZone::UTC, year, now.parse().unwrap())
    }

    #[track_caller]
    fn check(clock: &mut LogClock, line: &str, expect: Option<&str>) {
        let resolved = read_stamp(line.as_bytes()).and_then(|(stamp, _)| clock.resolve(stamp));
        assert_eq!(
            resolved.map(|ts| ts.to_string()).as_deref(),
            expect,
            "line: {line:?}"
        );
    }

    #[test]
    fn syslog_stamp_takes_the_current_year() {
        let mut clock = clock(None, "2026-11-25T12:00:00Z");
        check(
            &mut clock,
            "Nov 25 08:25:08 x",
            Some("2026-11-25T08:25:08Z"),
        );
        check(
            &mut clock,
            "Nov  5 08:25:08.250 x",
            Some("2026-11-05T08:25:08.25Z"),
        );
    }

    #[test]
    fn a_future_date_belongs_to_last_year() {
        let mut clock = clock(None, "2027-01-03T00:00:00Z");
        check(
            &mut clock,
            "Dec 31 23:59:59 x",
            Some("2026-12-31T23:59:59Z"),
        );
        // …and the stream rolls over into the new year.
        check(
            &mut clock,
            "Jan  1 00:00:01 x",
            Some("2027-01-01T00:00:01Z"),
        );
    }

    #[test]
    fn explicit_year_and_new_year_rollover() {
        let mut clock = clock(Some(2019), "2026-11-25T12:00:00Z");
        check(
            &mut clock,
            "Dec 31 23:59:59 x",
            Some("2019-12-31T23:59:59Z"),
        );
        check(
            &mut clock,
            "Jan  1 00:00:00 x",
            Some("2020-01-01T00:00:00Z"),
        );
        check(
            &mut clock,
            "Jan  1 00:00:02 x",
            Some("2020-01-01T00:00:02Z"),
        );
        // A straggler from December after the rollover stays in the old year.
        check(
            &mut clock,
            "Dec 31 23:59:58 x",
            Some("2019-12-31T23:59:58Z"),
        );
    }

    #[test]
    fn time_zone_applies_to_local_stamps_only() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let mut clock = LogClock::new(tz, Some(2026), "2026-11-25T12:00:00Z".parse().unwrap());
        check(
            &mut clock,
            "Nov 25 08:25:08 x",
            Some("2026-11-25T07:25:08Z"),
        );
        check(
            &mut clock,
            "2026-07-01 10:00:00 x",
            Some("2026-07-01T08:00:00Z"),
        );
        check(
            &mut clock,
            "2026-07-01T10:00:00+00:00 x",
            Some("2026-07-01T10:00:00Z"),
        );
        check(
            &mut clock,
            "2026-07-01T10:00:00.123456Z x",
            Some("2026-07-01T10:00:00.123456Z"),
        );
    }

    #[test]
    fn impossible_dates_are_rejected() {
        let mut clock = clock(Some(2026), "2026-11-25T12:00:00Z");
        check(&mut clock, "Feb 30 10:00:00 x", None);
        check(&mut clock, "Nov 25 24:00:00 x", None);
        check(&mut clock, "Nov 25 08:61:00 x", None);
        check(&mut clock, "Foo 25 08:25:08 x", None);
        check(&mut clock, "2026-13-01T00:00:00Z", None);
        check(&mut clock, "Nov 25 08:25:0", None);
        check(&mut clock, "", None);
        // Feb 29 without a year, when neither this year nor last year is a leap year.
        let mut clock = LogClock::new(TimeZone::UTC, None, "2026-03-01T00:00:00Z".parse().unwrap());
        check(&mut clock, "Feb 29 10:00:00 x", None);
        let mut clock = LogClock::new(TimeZone::UTC, None, "2029-01-10T00:00:00Z".parse().unwrap());
        check(
            &mut clock,
            "Feb 29 10:00:00 x",
            Some("2028-02-29T10:00:00Z"),
        );
    }
}
