//! The 12-digit personal identification number (CCCD): `PPP G YY RRRRRR`.
//! PPP = province of birth registration (Circular 07/2016/TT-BCA table, `data/provinces.tsv`),
//! G = century and sex (Decree 137/2015 Art. 13), YY = birth year within the century,
//! RRRRRR = random. The law defines no check digit. See `../shared/domain/vn-welfare-facts.md` §1.

use super::reference::province_name;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
}

/// A citizen ID that has passed the structural checks: 12 ASCII digits with a known province code.
/// Stored as its 12-digit string so leading zeros survive everywhere.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CitizenId(String);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CitizenIdError {
    #[error("citizen ID must be exactly 12 digits, got {len} characters")]
    Format { len: usize },
    #[error("citizen ID province code {0} is not in the province table (a birth registered abroad or a new code needs a manual check)")]
    UnknownProvince(String),
    #[error("citizen ID century/sex digit and year say born {id_year}, but the declared date of birth is in {dob_year}")]
    BirthYearMismatch { id_year: i32, dob_year: i32 },
    #[error("citizen ID century/sex digit says {id_sex:?}, but the declared sex is {declared:?}")]
    SexMismatch { id_sex: Sex, declared: Sex },
}

impl CitizenIdError {
    pub fn code(&self) -> &'static str {
        match self {
            CitizenIdError::Format { .. } => "citizen_id_format",
            CitizenIdError::UnknownProvince(_) => "citizen_id_unknown_province",
            CitizenIdError::BirthYearMismatch { .. } => "citizen_id_birth_year_mismatch",
            CitizenIdError::SexMismatch { .. } => "citizen_id_sex_mismatch",
        }
    }
}

impl CitizenId {
    pub fn parse(raw: &str) -> Result<CitizenId, CitizenIdError> {
        if raw.len() != 12 || !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CitizenIdError::Format { len: raw.chars().count() });
        }
        let prefix = &raw[..3];
        if province_name(prefix).is_none() {
            return Err(CitizenIdError::UnknownProvince(prefix.to_string()));
        }
        Ok(CitizenId(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Province of birth registration (not residence).
    pub fn province_code(&self) -> &str {
        &self.0[..3]
    }

    fn century_sex_digit(&self) -> u8 {
        self.0.as_bytes()[3] - b'0'
    }

    /// `birth_year = 1900 + 100*floor(G/2) + YY`.
    pub fn birth_year(&self) -> i32 {
        let g = i32::from(self.century_sex_digit());
        let yy: i32 = self.0[4..6].parse().expect("CitizenId holds 12 ASCII digits");
        1900 + 100 * (g / 2) + yy
    }

    /// Even G = male, odd G = female.
    pub fn sex(&self) -> Sex {
        if self.century_sex_digit() % 2 == 0 {
            Sex::Male
        } else {
            Sex::Female
        }
    }

    /// Checks the number against the declared date of birth (year) and sex.
    pub fn check_consistency(&self, dob_year: i32, declared: Sex) -> Result<(), CitizenIdError> {
        let id_year = self.birth_year();
        if id_year != dob_year {
            return Err(CitizenIdError::BirthYearMismatch { id_year, dob_year });
        }
        if self.sex() != declared {
            return Err(CitizenIdError::SexMismatch { id_sex: self.sex(), declared });
        }
        Ok(())
    }

    /// For logs: `056******123`. Citizen IDs never reach a log line unmasked.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks any string that may hold a citizen ID, keeping the first 3 and last 3 characters.
/// For text that merely contains one (an id, a message), use [`mask_digit_runs`] or [`log_safe`].
pub fn mask(raw: &str) -> String {
    let chars: Vec<char> = raw.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..3].iter().collect();
    out.push_str(&"*".repeat(chars.len() - 6));
    out.extend(&chars[chars.len() - 3..]);
    out
}

/// Shortest run of digits masked by [`mask_digit_runs`]: a 12-digit citizen ID, or most of one
/// (a run of 9 or more digits is not a seq, an amount or a BIN in a log line).
pub const DIGIT_RUN_MASKED_MIN: usize = 9;

/// Masks every run of [`DIGIT_RUN_MASKED_MIN`] or more ASCII digits in `text` as [`mask`] does
/// (`enr-056185000123` -> `enr-056******123`): for text that may carry a citizen ID without being
/// one, such as a sender-chosen command, batch or payout id, or an error message quoting one.
pub fn mask_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        if run.len() >= DIGIT_RUN_MASKED_MIN {
            out.push_str(&mask(&run));
        } else {
            out.push_str(&run);
        }
        run.clear();
        if c != '\0' {
            out.push(c);
        }
    }
    out
}

/// Longest sender-chosen text put in a log field, in characters; the rest is cut (`…`).
pub const LOG_TEXT_CHARS_MAX: usize = 200;
/// Longest error message put in a log field, in characters.
pub const LOG_ERROR_CHARS_MAX: usize = 2_000;

/// A sender-chosen string made fit for a log line: digit runs masked ([`mask_digit_runs`]),
/// control characters escaped (a newline cannot forge a log line), at most
/// [`LOG_TEXT_CHARS_MAX`] characters. Every tracing field that carries a string the sender chose
/// (command id, batch id, payout id, `reply_to`, a decode error quoting the body) goes through it.
pub fn log_safe(text: &str) -> String {
    log_safe_max(text, LOG_TEXT_CHARS_MAX)
}

/// An error message made fit for a log line (see [`log_safe`]), up to [`LOG_ERROR_CHARS_MAX`].
pub fn log_safe_error(error: &dyn fmt::Display) -> String {
    log_safe_max(&error.to_string(), LOG_ERROR_CHARS_MAX)
}

/// [`log_safe`] with another bound: error messages, which may quote sender-chosen ids (a view
/// key holding a payout id, a decode error quoting the body), are kept longer.
pub fn log_safe_max(text: &str, chars_max: usize) -> String {
    let masked = mask_digit_runs(text);
    let mut out = String::with_capacity(masked.len().min(chars_max + 8));
    for (n, c) in masked.chars().enumerate() {
        if n == chars_max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug masks too, so `{:?}` in a tracing field cannot leak the number.
impl fmt::Debug for CitizenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CitizenId({})", self.masked())
    }
}

impl Serialize for CitizenId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CitizenId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        CitizenId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for CitizenId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CitizenId".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // The province codes of the table, as `parse` requires them.
        let codes: Vec<&str> = super::reference::province_codes().collect();
        schemars::json_schema!({
            "type": "string",
            "pattern": format!("^({})[0-9]{{9}}$", codes.join("|")),
            "description": "12-digit personal identification number (CCCD): province of birth registration (3), century/sex (1), birth year (2), random (6)."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_year_and_sex() {
        let id = CitizenId::parse("056185000123").unwrap();
        assert_eq!(id.birth_year(), 1985);
        assert_eq!(id.sex(), Sex::Female);
        let id = CitizenId::parse("079303000001").unwrap();
        assert_eq!(id.birth_year(), 2003);
        assert_eq!(id.sex(), Sex::Female);
        let id = CitizenId::parse("001040000001").unwrap();
        assert_eq!(id.birth_year(), 1940);
        assert_eq!(id.sex(), Sex::Male);
    }

    #[test]
    fn structural_errors() {
        assert_eq!(CitizenId::parse("05618500012").unwrap_err().code(), "citizen_id_format");
        assert_eq!(CitizenId::parse("0561850001234").unwrap_err().code(), "citizen_id_format");
        assert_eq!(CitizenId::parse("05618500012a").unwrap_err().code(), "citizen_id_format");
        assert_eq!(CitizenId::parse("003185000123").unwrap_err().code(), "citizen_id_unknown_province");
    }

    #[test]
    fn consistency() {
        let id = CitizenId::parse("056185000123").unwrap();
        assert!(id.check_consistency(1985, Sex::Female).is_ok());
        assert_eq!(id.check_consistency(2085, Sex::Female).unwrap_err().code(), "citizen_id_birth_year_mismatch");
        assert_eq!(id.check_consistency(1985, Sex::Male).unwrap_err().code(), "citizen_id_sex_mismatch");
    }

    #[test]
    fn masks_digit_runs_in_sender_chosen_text() {
        assert_eq!(mask_digit_runs("enr-056185000123"), "enr-056******123");
        assert_eq!(mask_digit_runs("view cit/056185000123 is corrupt at 42"), "view cit/056******123 is corrupt at 42");
        assert_eq!(mask_digit_runs("056185000123"), "056******123");
        assert_eq!(mask_digit_runs("a056185000123b079190000001"), "a056******123b079******001");
        assert_eq!(mask_digit_runs("seq 12345678 of batch KH-2025-01"), "seq 12345678 of batch KH-2025-01");
        assert_eq!(mask_digit_runs("0561850001234"), "056*******234");
        assert_eq!(log_safe("amq.gen-1\nERROR forged 056185000123"), "amq.gen-1\\nERROR forged 056******123");
        let long = "x".repeat(LOG_TEXT_CHARS_MAX + 50);
        assert_eq!(log_safe(&long).chars().count(), LOG_TEXT_CHARS_MAX + 1);
    }

    #[test]
    fn masks() {
        assert_eq!(CitizenId::parse("056185000123").unwrap().masked(), "056******123");
        assert_eq!(format!("{:?}", CitizenId::parse("056185000123").unwrap()), "CitizenId(056******123)");
    }
}
