//! Whole Vietnamese đồng. VND has no minor unit (ISO 4217 digits = 0), so an amount is a
//! whole, positive number of đồng, held as a `Decimal` with scale 0 and written as a JSON
//! string of digits ("750000"). Never a float: a JSON number is refused at decode time. Never
//! a separator: `500.000` is five hundred thousand in Vietnam and five hundred elsewhere.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Upper bound of one amount (a payout line, a budget funding). A national month of social
/// allowance is about 27 trillion đồng a year; one funding above 10^15 is a typo, not a budget.
pub const VND_AMOUNT_MAX: i64 = 1_000_000_000_000_000;

/// A whole, positive, bounded amount of đồng.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vnd(Decimal);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VndError {
    #[error("amount is empty")]
    Empty,
    /// A separator, grouping mark or space anywhere. In Vietnam `500.000` is five hundred
    /// thousand (`.` groups thousands, `,` marks decimals), elsewhere it is five hundred; a
    /// list that went through a spreadsheet may have either. Never guessed: refused.
    #[error(
        "amount {0:?} contains a separator or a space; write whole đồng as digits only, without separators \
         (500000, not 500.000, 500,000, 500 000 or 500000.00)"
    )]
    Separator(String),
    #[error("amount {0:?} is not a plain number of đồng (digits only, no sign, no exponent, no currency sign)")]
    NotANumber(String),
    /// A zero-padded amount (`0750000`) comes from a fixed-width or bank format, where the
    /// padding often carries implied minor units (`000075000000` for 750000.00): which was
    /// meant is a guess, so it is refused like the other forms that are not plain digits.
    #[error(
        "amount {0:?} has a leading zero; write whole đồng as digits without padding (750000, not 0750000): a zero-padded amount may carry implied decimals"
    )]
    LeadingZero(String),
    /// Only from `from_decimal` (a computed amount): text cannot spell a fraction any more,
    /// since `.` and `,` are `Separator`.
    #[error("amount {0} has a fractional part; VND has no minor unit")]
    Fractional(String),
    #[error("amount {0:?} must be greater than zero")]
    NotPositive(String),
    #[error("amount {0:?} exceeds the bound of {VND_AMOUNT_MAX} đồng")]
    TooLarge(String),
}

impl VndError {
    /// Stable rejection code for this error (see `Rejection`).
    pub fn code(&self) -> &'static str {
        match self {
            VndError::Empty | VndError::NotANumber(_) | VndError::LeadingZero(_) | VndError::Fractional(_) => "amount_invalid",
            VndError::Separator(_) => "amount_separator",
            VndError::NotPositive(_) => "amount_not_positive",
            VndError::TooLarge(_) => "amount_too_large",
        }
    }
}

/// Characters that separate or group digits somewhere in the world: `.` `,` `'` `_` and their
/// look-alikes (typographic apostrophes, modifier apostrophe, middle dot, Arabic decimal and
/// thousands marks, one-dot leader, small and full-width forms, ideographic comma and stop).
const DIGIT_SEPARATORS: &[char] = &[
    '.', ',', '\'', '_', '\u{2018}', '\u{2019}', '\u{02BC}', '\u{00B7}', '\u{066B}', '\u{066C}', '\u{2024}', '\u{FE50}', '\u{FE52}', '\u{FF07}', '\u{FF0C}',
    '\u{FF0E}', '\u{FF3F}', '\u{3001}', '\u{3002}',
];

/// A separator or grouping mark (`DIGIT_SEPARATORS`), or any Unicode white space (NBSP, thin
/// and narrow no-break spaces, figure and ideographic spaces, tabs, line breaks).
pub fn is_digit_separator(c: char) -> bool {
    c.is_whitespace() || DIGIT_SEPARATORS.contains(&c)
}

impl Vnd {
    /// Parses whole đồng written as ASCII digits without a leading zero ("750000", the form
    /// recorded amounts have). Refuses any separator or space (`Separator`: "500.000",
    /// "750,000", "750000.00", " 750000"), then signs, exponents and other characters, zero, a
    /// zero-padded amount ("0750000"), and anything above the bound.
    pub fn parse(raw: &str) -> Result<Vnd, VndError> {
        if raw.is_empty() {
            return Err(VndError::Empty);
        }
        if raw.chars().any(is_digit_separator) {
            return Err(VndError::Separator(raw.to_string()));
        }
        let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if raw.strip_prefix('-').is_some_and(digits_only) {
            return Err(VndError::NotPositive(raw.to_string()));
        }
        if !digits_only(raw) {
            return Err(VndError::NotANumber(raw.to_string()));
        }
        if raw.starts_with('0') {
            let all_zero = raw.bytes().all(|b| b == b'0');
            return Err(if all_zero { VndError::NotPositive(raw.to_string()) } else { VndError::LeadingZero(raw.to_string()) });
        }
        // 19 digits would already exceed the bound; refuse before parsing so no overflow.
        if raw.len() > 16 {
            return Err(VndError::TooLarge(raw.to_string()));
        }
        let value = Decimal::from_str(raw).map_err(|_| VndError::NotANumber(raw.to_string()))?;
        Vnd::from_decimal(value).map_err(|e| match e {
            VndError::TooLarge(_) => VndError::TooLarge(raw.to_string()),
            other => other,
        })
    }

    /// From a decimal that must already be whole, positive and bounded.
    pub fn from_decimal(value: Decimal) -> Result<Vnd, VndError> {
        if value.fract() != Decimal::ZERO {
            return Err(VndError::Fractional(value.to_string()));
        }
        if value <= Decimal::ZERO {
            return Err(VndError::NotPositive(value.to_string()));
        }
        if value > Decimal::from(VND_AMOUNT_MAX) {
            return Err(VndError::TooLarge(value.to_string()));
        }
        Ok(Vnd(value.normalize()))
    }

    pub fn from_u64(v: u64) -> Result<Vnd, VndError> {
        Vnd::from_decimal(Decimal::from(v))
    }

    pub fn as_decimal(&self) -> Decimal {
        self.0
    }

    /// The amount as a number of đồng (amounts are whole, positive and at most 10^15).
    pub fn to_u64(&self) -> u64 {
        u64::try_from(self.0.mantissa()).expect("a Vnd is a positive whole number below 10^15")
    }
}

impl fmt::Display for Vnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Vnd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// Reading a recorded amount (events, views): only the form `Serialize` writes, digits without
/// a leading zero (what `Vnd::parse` accepts), so the decoder and the schema's pattern accept
/// exactly the same strings. Commands carry amounts as raw strings and go through `Vnd::parse`
/// in `decide`.
impl<'de> Deserialize<'de> for Vnd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        if raw.starts_with('0') {
            return Err(serde::de::Error::custom(format!("amount {raw:?} is not written as recorded amounts are (no leading zero)")));
        }
        Vnd::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Vnd {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Vnd".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([1-9][0-9]{0,14}|1000000000000000)$",
            "description": "Whole đồng as a string of digits, positive, at most 10^15, no leading zero, no separator or space. Never a JSON number."
        })
    }
}

/// A signed balance of a double-entry account, in đồng. May be negative (the Treasury side of a
/// funding, for instance). Serialized as a string like `Vnd`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Balance(pub Decimal);

impl Balance {
    pub const ZERO: Balance = Balance(Decimal::ZERO);

    pub fn plus(self, amount: Vnd) -> Balance {
        Balance(self.0.checked_add(amount.as_decimal()).expect("balances stay far below Decimal's range: amounts are bounded at 10^15"))
    }
    pub fn minus(self, amount: Vnd) -> Balance {
        Balance(self.0.checked_sub(amount.as_decimal()).expect("balances stay far below Decimal's range: amounts are bounded at 10^15"))
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.normalize())
    }
}

impl Serialize for Balance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.normalize().to_string())
    }
}

impl<'de> Deserialize<'de> for Balance {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Decimal::from_str(&raw).map(Balance).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Balance {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Balance".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^-?[0-9]+$"})
    }
}

/// Formats đồng with thousands separators for people: 1250000 -> "1,250,000".
pub fn group_thousands(d: Decimal) -> String {
    let s = d.normalize().to_string();
    let (sign, digits) = match s.strip_prefix('-') {
        Some(rest) => ("-", rest.to_string()),
        None => ("", s),
    };
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_amounts() {
        assert_eq!(Vnd::parse("750000").unwrap().to_string(), "750000");
        assert_eq!(Vnd::parse("1000000000000000").unwrap().to_string(), "1000000000000000");
    }

    #[test]
    fn rejects_each_bad_form_with_its_code() {
        for (raw, code) in [
            ("", "amount_invalid"),
            ("abc", "amount_invalid"),
            ("1e5", "amount_invalid"),
            ("1E5", "amount_invalid"),
            ("+5", "amount_invalid"),
            ("-", "amount_invalid"),
            ("750000đ", "amount_invalid"),
            ("７５００００", "amount_invalid"),
            ("0", "amount_not_positive"),
            ("000", "amount_not_positive"),
            ("-0", "amount_not_positive"),
            ("-750000", "amount_not_positive"),
            ("0750000", "amount_invalid"),
            ("00000000000000000000001", "amount_invalid"),
            ("000075000000", "amount_invalid"),
            ("1000000000000001", "amount_too_large"),
            ("99999999999999999999999999999999", "amount_too_large"),
        ] {
            assert_eq!(Vnd::parse(raw).unwrap_err().code(), code, "input {raw:?}");
        }
    }

    /// Vietnamese grouping (`500.000` is 500,000), other locales' grouping and decimals, and
    /// every kind of space: all refused the same way, whatever they would have meant.
    #[test]
    fn any_separator_or_space_is_refused() {
        for raw in [
            "500.000",
            "750.000",
            "7.500.000",
            "750000.00",
            "750000.5",
            "0.5",
            "-1.5",
            "750000.",
            ".750000",
            "750,000",
            "750000,00",
            "1,000,000",
            "750 000",
            " 750000",
            "750000 ",
            "\t750000",
            "750000\n",
            "750\u{a0}000",
            "750\u{2009}000",
            "750\u{202f}000",
            "750\u{2007}000",
            "750\u{3000}000",
            "750'000",
            "750\u{2019}000",
            "750_000",
            "750\u{b7}000",
            "750\u{66c}000",
            "750\u{ff0c}000",
            "750\u{ff0e}000",
            "1e5.0",
            "5,00đ",
        ] {
            let err = Vnd::parse(raw).unwrap_err();
            assert_eq!(err.code(), "amount_separator", "input {raw:?}");
            assert!(err.to_string().contains("without separators"), "{err}");
        }
    }

    #[test]
    fn computed_fractions_are_refused() {
        assert_eq!(Vnd::from_decimal(Decimal::new(7_500_005, 1)).unwrap_err(), VndError::Fractional("750000.5".into()));
    }

    #[test]
    fn json_numbers_are_refused() {
        assert!(serde_json::from_str::<Vnd>("750000").is_err());
        assert!(serde_json::from_str::<Vnd>("\"750000\"").is_ok());
        assert!(serde_json::from_str::<Vnd>("\"1000000000000000\"").is_ok());
        // Recorded amounts are read back only in the form they are written.
        for raw in ["\"0750000\"", "\"750.000\"", "\"1000000000000001\"", "\"0\""] {
            assert!(serde_json::from_str::<Vnd>(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(group_thousands(Decimal::from(1_250_000)), "1,250,000");
        assert_eq!(group_thousands(Decimal::from(-500)), "-500");
        assert_eq!(group_thousands(Decimal::from(0)), "0");
    }
}
