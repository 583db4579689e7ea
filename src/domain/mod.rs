//! Pure domain types: parse, don't validate. A value of these types that exists is valid.

pub mod account;
pub mod citizen_id;
pub mod money;
pub mod period;
pub mod program;
pub mod reference;
pub mod text;

pub use account::{Account, Attestation, FailureReason};
pub use citizen_id::{CitizenId, Sex};
pub use money::{Balance, Vnd};
pub use period::{BirthDate, Period};
pub use program::{Coefficient, ProgramRules};

/// Identifiers chosen by senders (batch ids, payout ids, program ids, command ids): printable
/// ASCII from a small set, bounded in length, so they are safe as sled keys, routing keys and
/// file names.
pub fn valid_identifier(raw: &str, max_len: usize) -> bool {
    !raw.is_empty() && raw.len() <= max_len && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

pub const IDENTIFIER_LEN_MAX: usize = 64;
