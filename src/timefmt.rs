//! Time arrives in command envelopes as RFC 3339 text; the engine never reads a clock while
//! deciding. This checks the shape without a date-time dependency.

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)`.
pub fn valid_rfc3339(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10)) {
        return false;
    }
    if !(matches!(b[10], b'T' | b't') && digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19)) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| raw[r].parse::<u32>().unwrap_or(99);
    if !(1..=12).contains(&num(5..7)) || !(1..=31).contains(&num(8..10)) || num(11..13) > 23 || num(14..16) > 59 || num(17..19) > 60 {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z'] | [b'z'] => true,
        [s, h1, h2, b':', m1, m2] if matches!(s, b'+' | b'-') => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shapes() {
        assert!(super::valid_rfc3339("2025-01-20T08:00:00Z"));
        assert!(super::valid_rfc3339("2025-01-20T08:00:00.123+07:00"));
        assert!(!super::valid_rfc3339("2025-01-20 08:00:00"));
        assert!(!super::valid_rfc3339("2025-13-20T08:00:00Z"));
        assert!(!super::valid_rfc3339("2025-01-20T08:00:00"));
    }
}
