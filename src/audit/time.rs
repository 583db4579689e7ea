//! RFC 3339 times as instants, without a date-time dependency. Event times (`at`, from the
//! command's `issued_at`) carry their sender's offset (`+07:00` or `Z`), so "as of" compares
//! instants, never strings: `2025-01-31T23:30:00+07:00` is before `2025-01-31T17:00:00Z`.

use crate::timefmt::valid_rfc3339;

/// A point in time: seconds since 1970-01-01T00:00:00Z and nanoseconds within the second.
/// Ordered as instants. A leap second (`:60`) counts as the first second of the next minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    pub unix_seconds: i64,
    pub nanos: u32,
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `None` when it is not such a time or the
/// day does not exist in that month. Digits of the fraction past nanoseconds are ignored.
pub fn parse_rfc3339(raw: &str) -> Option<Instant> {
    if !valid_rfc3339(raw) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| raw.get(r).and_then(|s| s.parse::<i64>().ok());
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if day > days_in_month(year, month) {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let rest = raw.get(19..)?;
    let (fraction, zone) = match rest.strip_prefix('.') {
        Some(f) => {
            let end = f.find(|c: char| !c.is_ascii_digit()).unwrap_or(f.len());
            (&f[..end], &f[end..])
        }
        None => ("", rest),
    };
    let mut nanos = 0u32;
    for (i, d) in fraction.bytes().take(9).enumerate() {
        nanos += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    let offset_seconds = match zone.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign, ..] => {
            let hours = zone.get(1..3)?.parse::<i64>().ok()?;
            let minutes = zone.get(4..6)?.parse::<i64>().ok()?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = hours * 3_600 + minutes * 60;
            if *sign == b'-' {
                -magnitude
            } else {
                magnitude
            }
        }
        [] => return None,
    };
    let local = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(Instant { unix_seconds: local - offset_seconds, nanos })
}

fn days_in_month(year: i64, month: i64) -> i64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(raw: &str) -> i64 {
        parse_rfc3339(raw).unwrap_or_else(|| panic!("{raw} parses")).unix_seconds
    }

    #[test]
    fn known_instants() {
        assert_eq!(secs("1970-01-01T00:00:00Z"), 0);
        assert_eq!(secs("2000-03-01T00:00:00Z"), 951_868_800);
        assert_eq!(secs("2025-01-20T08:00:00Z"), 1_737_360_000);
        assert_eq!(secs("1969-12-31T23:59:59Z"), -1);
    }

    #[test]
    fn offsets_are_instants() {
        assert_eq!(secs("2025-01-20T15:00:00+07:00"), secs("2025-01-20T08:00:00Z"));
        assert_eq!(secs("2025-01-20T03:00:00-05:00"), secs("2025-01-20T08:00:00Z"));
        assert!(parse_rfc3339("2025-01-31T23:30:00+07:00") < parse_rfc3339("2025-01-31T17:00:00Z"));
    }

    #[test]
    fn fractions_order_within_a_second() {
        let a = parse_rfc3339("2025-01-20T08:00:00.5Z").unwrap();
        let b = parse_rfc3339("2025-01-20T08:00:00.123456789123Z").unwrap();
        assert_eq!((a.nanos, b.nanos), (500_000_000, 123_456_789));
        assert!(b < a && parse_rfc3339("2025-01-20T08:00:00Z").unwrap() < b);
    }

    #[test]
    fn refuses_what_is_not_a_time() {
        for raw in ["2025-02-30T00:00:00Z", "2023-02-29T00:00:00Z", "2025-01-20 08:00:00Z", "2025-01-20T08:00:00", "1200", "2025-01-20T08:00:00+24:00"] {
            assert_eq!(parse_rfc3339(raw), None, "{raw}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
    }
}
