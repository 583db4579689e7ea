//! Calendar values that come in commands: a benefit period (`YYYY-MM`) and a date of birth
//! (`YYYY-MM-DD`). Entitlement is by whole month, so a period is the unit of payment.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A benefit month, `YYYY-MM`, years 1900..=2399 (the span the citizen-ID century digit covers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: u16,
    month: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {raw:?} is not valid: expected {expected}")]
pub struct CalendarError {
    pub what: &'static str,
    pub raw: String,
    pub expected: &'static str,
}

impl Period {
    pub fn parse(raw: &str) -> Result<Period, CalendarError> {
        let err = || CalendarError { what: "period", raw: raw.to_string(), expected: "YYYY-MM, year 1900-2399" };
        let b = raw.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
            return Err(err());
        }
        let year: u16 = raw[..4].parse().map_err(|_| err())?;
        let month: u8 = raw[5..].parse().map_err(|_| err())?;
        if !(1900..=2399).contains(&year) || !(1..=12).contains(&month) {
            return Err(err());
        }
        Ok(Period { year, month })
    }

    pub fn new(year: u16, month: u8) -> Option<Period> {
        Period::parse(&format!("{year:04}-{month:02}")).ok()
    }

    pub fn year(&self) -> u16 {
        self.year
    }
    pub fn month(&self) -> u8 {
        self.month
    }

    /// Months since 1900-01 (0 for 1900-01; under 6,000 for the years allowed): a period as a
    /// small number, for compact keys.
    pub fn months_since_1900(&self) -> u16 {
        (self.year - 1900) * 12 + u16::from(self.month) - 1
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Period::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Period {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Period".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^(19|2[0-3])[0-9]{2}-(0[1-9]|1[0-2])$", "description": "Benefit month, YYYY-MM."})
    }
}

/// A date of birth, `YYYY-MM-DD`, checked against the calendar (leap years included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BirthDate {
    year: u16,
    month: u8,
    day: u8,
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

impl BirthDate {
    pub fn parse(raw: &str) -> Result<BirthDate, CalendarError> {
        let err = || CalendarError { what: "date of birth", raw: raw.to_string(), expected: "a real calendar date YYYY-MM-DD" };
        let b = raw.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err());
        }
        if !b[..4].iter().chain(&b[5..7]).chain(&b[8..]).all(u8::is_ascii_digit) {
            return Err(err());
        }
        let year: u16 = raw[..4].parse().map_err(|_| err())?;
        let month: u8 = raw[5..7].parse().map_err(|_| err())?;
        let day: u8 = raw[8..].parse().map_err(|_| err())?;
        if !(1900..=2399).contains(&year) || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err(err());
        }
        Ok(BirthDate { year, month, day })
    }

    pub fn year(&self) -> i32 {
        i32::from(self.year)
    }

    /// (year, month, day), ordered as dates.
    pub fn ymd(&self) -> (u16, u8, u8) {
        (self.year, self.month, self.day)
    }

    /// The month of birth as a period, to reject a period before the person was born.
    pub fn period(&self) -> Period {
        Period { year: self.year, month: self.month }
    }
}

impl fmt::Display for BirthDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl Serialize for BirthDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BirthDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        BirthDate::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for BirthDate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "BirthDate".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A real calendar date YYYY-MM-DD, years 1900-2399.",
            "type": "string",
            "pattern": format!("^{}$", crate::timefmt::date_pattern()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(Period::parse("2025-01").unwrap().to_string(), "2025-01");
        assert!(Period::parse("2025-1").is_err());
        assert!(Period::parse("2025-13").is_err());
        assert!(Period::parse("1899-12").is_err());
        assert!(Period::parse("2024-06").unwrap() < Period::parse("2024-07").unwrap());
    }

    #[test]
    fn birth_dates() {
        assert!(BirthDate::parse("2000-02-29").is_ok());
        assert!(BirthDate::parse("1900-02-29").is_err());
        assert!(BirthDate::parse("1985-04-31").is_err());
        assert!(BirthDate::parse("85-04-01").is_err());
    }
}
