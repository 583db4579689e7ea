//! RFC 3339 times as instants, without a date-time dependency. Event times (`at`, from the
//! command's `issued_at`) carry their sender's offset (`+07:00` or `Z`), so "as of" compares
//! instants, never strings: `2025-01-31T23:30:00+07:00` is before `2025-01-31T17:00:00Z`.

pub use crate::timefmt::Instant;
use crate::timefmt::Timestamp;

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as the engine accepted it for `issued_at`
/// (`timefmt::Timestamp`: real dates, no leap second, offsets within ±14:00); `None` otherwise.
/// Digits of the fraction past nanoseconds are ignored.
pub fn parse_rfc3339(raw: &str) -> Option<Instant> {
    Timestamp::parse(raw).ok().map(|t| t.instant())
}

/// An event's `at` as `audit verify` checks it: the very parse `replay --as-of` uses, so a log
/// that verifies can be replayed to any instant.
pub fn check_event_time(at: &str) -> Result<Instant, String> {
    Timestamp::parse(at)
        .map(|t| t.instant())
        .map_err(|e| format!("the event time `at` {:?} is not an RFC 3339 time the engine accepts: {e}", at.chars().take(48).collect::<String>()))
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
        for raw in [
            "2025-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2025-01-20 08:00:00Z",
            "2025-01-20T08:00:00",
            "1200",
            "2025-01-20T08:00:00+24:00",
            "2025-01-20T08:00:00+99:99",
            "2016-12-31T23:59:60Z",
        ] {
            assert_eq!(parse_rfc3339(raw), None, "{raw}");
        }
        assert!(parse_rfc3339("2024-02-29T00:00:00Z").is_some());
    }
}
