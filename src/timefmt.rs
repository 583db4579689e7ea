//! Time arrives in command envelopes (`issued_at`) and attestations (`verified_at`) as RFC 3339
//! text; the engine never reads a clock while deciding. This is the one parser of that text,
//! without a date-time dependency: the envelope check, the attestation check, the decision
//! (birth dates and attestations against `issued_at`) and the auditors' replay (`audit::time`)
//! all read time through `Timestamp::parse`, so what is recorded can always be replayed.
//!
//! What is accepted, `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`:
//! - a real calendar date (Gregorian leap years), years 1900-2399: the span the citizen-ID
//!   century digit covers and `Period` allows;
//! - hours 00-23, minutes and seconds 00-59. A leap second (`:60`) is refused: RFC 3339 allows it
//!   only at the end of a UTC day on which one was announced, which needs a table we do not
//!   keep; none has been inserted since 2016, the CGPM decided in 2022 to stop by 2035, and
//!   systems that smear or step (NTP, Unix time) never write `:60`. Refusing it means every
//!   accepted time is one instant, and two times never collapse to the same second;
//! - an offset within ±14:00 (the widest in use, UTC+14 Kiribati, UTC-12 Baker Island; RFC 3339
//!   allows any ±HH:MM), minutes 00-59; `Z`/`z`, and `-00:00` (RFC 3339's "UTC, local offset
//!   unknown"), both zero;
//! - `T`/`t` between date and time; 1 or more digits of fraction (past 9 they are ignored);
//!   at most 40 characters in all.

use std::fmt;

/// Longest accepted text (a fraction cannot be used to send megabytes through a time field).
pub const RFC3339_LEN_MAX: usize = 40;
/// Widest offset accepted, in minutes (±14:00).
pub const OFFSET_MINUTES_MAX: i32 = 14 * 60;
pub const YEAR_MIN: i64 = 1900;
pub const YEAR_MAX: i64 = 2399;

/// A point in time: seconds since 1970-01-01T00:00:00Z and nanoseconds within the second.
/// Ordered as instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    pub unix_seconds: i64,
    pub nanos: u32,
}

/// A parsed RFC 3339 time: the calendar date as written (in its own offset) and the instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    date: (u16, u8, u8),
    instant: Instant,
}

/// Why a text is not an accepted time. The messages say what to send instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("not of the form YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or an offset +HH:MM (at most {RFC3339_LEN_MAX} characters)")]
    Shape,
    #[error("year {0} is outside {YEAR_MIN}-{YEAR_MAX}")]
    Year(i64),
    #[error("{year:04}-{month:02}-{day:02} is not a calendar date")]
    Date { year: i64, month: i64, day: i64 },
    #[error("{hour:02}:{minute:02}:{second:02} is not a time of day (hours 00-23, minutes and seconds 00-59)")]
    TimeOfDay { hour: i64, minute: i64, second: i64 },
    #[error("second 60 (a leap second) is not accepted; write the next second, 00 of the next minute")]
    LeapSecond,
    #[error("offset {sign}{hours:02}:{minutes:02} is not one: offsets are at most ±14:00, minutes 00-59")]
    Offset { sign: char, hours: i64, minutes: i64 },
}

impl Timestamp {
    pub fn parse(raw: &str) -> Result<Timestamp, TimeError> {
        let b = raw.as_bytes();
        if b.len() < 20 || b.len() > RFC3339_LEN_MAX {
            return Err(TimeError::Shape);
        }
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let shaped = digits(0..4)
            && b[4] == b'-'
            && digits(5..7)
            && b[7] == b'-'
            && digits(8..10)
            && matches!(b[10], b'T' | b't')
            && digits(11..13)
            && b[13] == b':'
            && digits(14..16)
            && b[16] == b':'
            && digits(17..19);
        if !shaped {
            return Err(TimeError::Shape);
        }
        // ASCII digits only from here on: the slices are on character boundaries.
        let num = |r: std::ops::Range<usize>| b[r].iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        let (year, month, day) = (num(0..4), num(5..7), num(8..10));
        let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos += u32::from(b[i] - b'0') * 10u32.pow(8 - (i - start) as u32);
                }
                i += 1;
            }
            if i == start {
                return Err(TimeError::Shape);
            }
        }
        let offset_minutes = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] if [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()) => {
                let (hours, minutes) = (i64::from((h1 - b'0') * 10 + (h2 - b'0')), i64::from((m1 - b'0') * 10 + (m2 - b'0')));
                let magnitude = hours * 60 + minutes;
                if minutes > 59 || magnitude > i64::from(OFFSET_MINUTES_MAX) {
                    return Err(TimeError::Offset { sign: char::from(*sign), hours, minutes });
                }
                if *sign == b'-' {
                    -magnitude
                } else {
                    magnitude
                }
            }
            _ => return Err(TimeError::Shape),
        };
        if !(YEAR_MIN..=YEAR_MAX).contains(&year) {
            return Err(TimeError::Year(year));
        }
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(TimeError::Date { year, month, day });
        }
        if second == 60 && hour <= 23 && minute <= 59 {
            return Err(TimeError::LeapSecond);
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(TimeError::TimeOfDay { hour, minute, second });
        }
        let local = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
        let date = (year as u16, month as u8, day as u8);
        Ok(Timestamp { date, instant: Instant { unix_seconds: local - offset_minutes * 60, nanos } })
    }

    pub fn instant(&self) -> Instant {
        self.instant
    }

    /// The calendar date as written, in the time's own offset (what the sender's calendar said).
    pub fn date(&self) -> (u16, u8, u8) {
        self.date
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:09} s after the Unix epoch", self.unix_seconds, self.nanos)
    }
}

/// The calendar dates `Timestamp::parse` and `BirthDate::parse` accept (years 1900-2399, real
/// days, Gregorian leap years: 2000 is one, 1900, 2100, 2200 and 2300 are not), as an
/// unanchored ECMA-262 regular expression for JSON Schema `pattern`s.
pub fn date_pattern() -> String {
    let year = "(19[0-9]{2}|2[0-3][0-9]{2})";
    let leap_year = "((19|2[0-3])(0[48]|[2468][048]|[13579][26])|2000)";
    format!("({year}-(0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01])|{year}-(0[469]|11)-(0[1-9]|[12][0-9]|30)|{year}-02-(0[1-9]|1[0-9]|2[0-8])|{leap_year}-02-29)")
}

/// The JSON Schema of an accepted time: the same set as `Timestamp::parse` (tests/schemas.rs
/// sweeps dates, times and offsets through both). The `pattern` carries the rules, since
/// draft 2020-12 validators treat `format` as an annotation unless told otherwise; `format`
/// says what it is (and, where asserted, accepts a superset: leap seconds, offsets to ±23:59).
pub fn rfc3339_schema() -> schemars::Schema {
    let pattern = format!("^{}[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]+)?([Zz]|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)$", date_pattern());
    schemars::json_schema!({
        "type": "string",
        "format": "date-time",
        "pattern": pattern,
        "maxLength": RFC3339_LEN_MAX,
    })
}

/// Whether `raw` is an accepted time (see the module documentation).
pub fn valid_rfc3339(raw: &str) -> bool {
    Timestamp::parse(raw).is_ok()
}

/// Days in a month of the proleptic Gregorian calendar.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Now, as RFC 3339 UTC with seconds. Only the CLI shell calls this (for envelopes it builds);
/// the core never reads a clock.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm), proleptic Gregorian.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(raw: &str) -> i64 {
        Timestamp::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}")).instant().unix_seconds
    }

    #[test]
    fn accepts_real_times() {
        for raw in [
            "2025-01-20T08:00:00Z",
            "2025-01-20T08:00:00.123+07:00",
            "2025-01-20t08:00:00z",
            "2024-02-29T23:59:59+14:00",
            "2000-02-29T00:00:00-12:00",
            "2025-12-31T23:59:59.999999999999-00:00",
            "1900-01-01T00:00:00Z",
            "2399-12-31T23:59:59Z",
            "2025-04-30T00:00:00+05:45",
        ] {
            assert!(valid_rfc3339(raw), "{raw}: {:?}", Timestamp::parse(raw));
        }
    }

    #[test]
    fn refuses_impossible_times_each_with_its_reason() {
        for (raw, want) in [
            ("2025-02-30T00:00:00Z", TimeError::Date { year: 2025, month: 2, day: 30 }),
            ("2025-04-31T00:00:00Z", TimeError::Date { year: 2025, month: 4, day: 31 }),
            ("2023-02-29T00:00:00Z", TimeError::Date { year: 2023, month: 2, day: 29 }),
            ("2100-02-29T00:00:00Z", TimeError::Date { year: 2100, month: 2, day: 29 }),
            ("2025-13-01T00:00:00Z", TimeError::Date { year: 2025, month: 13, day: 1 }),
            ("2025-00-10T00:00:00Z", TimeError::Date { year: 2025, month: 0, day: 10 }),
            ("2025-01-00T00:00:00Z", TimeError::Date { year: 2025, month: 1, day: 0 }),
            ("2025-01-20T24:00:00Z", TimeError::TimeOfDay { hour: 24, minute: 0, second: 0 }),
            ("2025-01-20T23:60:00Z", TimeError::TimeOfDay { hour: 23, minute: 60, second: 0 }),
            ("2025-01-20T23:59:61Z", TimeError::TimeOfDay { hour: 23, minute: 59, second: 61 }),
            ("2016-12-31T23:59:60Z", TimeError::LeapSecond),
            ("2025-01-20T08:00:00+99:99", TimeError::Offset { sign: '+', hours: 99, minutes: 99 }),
            ("2025-01-20T08:00:00+24:00", TimeError::Offset { sign: '+', hours: 24, minutes: 0 }),
            ("2025-01-20T08:00:00+14:01", TimeError::Offset { sign: '+', hours: 14, minutes: 1 }),
            ("2025-01-20T08:00:00-15:00", TimeError::Offset { sign: '-', hours: 15, minutes: 0 }),
            ("2025-01-20T08:00:00+07:60", TimeError::Offset { sign: '+', hours: 7, minutes: 60 }),
            ("1899-12-31T23:59:59Z", TimeError::Year(1899)),
            ("2400-01-01T00:00:00Z", TimeError::Year(2400)),
            ("2025-01-20 08:00:00Z", TimeError::Shape),
            ("2025-01-20T08:00:00", TimeError::Shape),
            ("2025-01-20T08:00:00.Z", TimeError::Shape),
            ("2025-01-20T08:00:00+0700", TimeError::Shape),
            ("2025-01-20T08:00:00+7:00", TimeError::Shape),
            ("2025-01-20T08:00Z", TimeError::Shape),
            ("２０２５-01-20T08:00:00Z", TimeError::Shape),
            ("2025-01-20T08:00:00.1234567890123456789012345Z", TimeError::Shape),
            ("", TimeError::Shape),
        ] {
            assert_eq!(Timestamp::parse(raw), Err(want), "{raw}");
        }
    }

    #[test]
    fn instants_apply_the_offset() {
        assert_eq!(secs("1970-01-01T00:00:00Z"), 0);
        assert_eq!(secs("2000-03-01T00:00:00Z"), 951_868_800);
        assert_eq!(secs("2025-01-20T15:00:00+07:00"), secs("2025-01-20T08:00:00Z"));
        assert_eq!(secs("2025-01-20T03:00:00-05:00"), secs("2025-01-20T08:00:00Z"));
        assert_eq!(secs("1969-12-31T23:59:59Z"), -1);
        let t = Timestamp::parse("2025-01-01T01:00:00+07:00").unwrap();
        assert_eq!(t.date(), (2025, 1, 1), "the date as written");
        assert!(t.instant() < Timestamp::parse("2024-12-31T19:00:00Z").unwrap().instant());
        assert_eq!(Timestamp::parse("2025-01-20T08:00:00.5Z").unwrap().instant().nanos, 500_000_000);
    }

    #[test]
    fn now_is_well_formed() {
        assert!(valid_rfc3339(&now_rfc3339()));
    }
}
