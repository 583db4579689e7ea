//! Where money goes (a bank account at a NAPAS BIN) and why we believe whose it is (a VNeID
//! attestation). Failure reasons map to ISO 20022 status reason codes for integrators.

use super::reference;
use crate::timefmt::Timestamp;
use serde::{Deserialize, Serialize};

/// A payment account, already checked: BIN in the bank table, account number 6-19 of [0-9A-Z]
/// (no national format exists; facts §3.4), holder name a name (`text::name`: a letter, nothing
/// invisible). Fields are declared in sorted order: events are serialized straight into
/// canonical form (see `event::Event`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub account_no: String,
    /// NAPAS BIN of the bank, 6 digits, e.g. 970436 (Vietcombank).
    pub bin: String,
    pub holder_name: String,
}

/// Raw account input from a command; `check` turns it into an `Account` or a reason code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    pub bin: String,
    pub account_no: String,
    pub holder_name: String,
}

pub const HOLDER_NAME_LEN_MAX: usize = 100;

impl AccountInput {
    pub fn check(&self) -> Result<Account, (&'static str, String)> {
        if reference::bank(&self.bin).is_none() {
            return Err(("bank_unknown", format!("BIN {:?} is not in the bank table", self.bin)));
        }
        let n = &self.account_no;
        if !(6..=19).contains(&n.len()) || !n.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) {
            return Err(("account_number_invalid", "account number must be 6-19 characters of 0-9 or A-Z".into()));
        }
        let name = super::text::name(&self.holder_name, HOLDER_NAME_LEN_MAX).map_err(|e| {
            ("holder_name_invalid", format!("holder name {e}: it must be 1-{HOLDER_NAME_LEN_MAX} characters with a letter, no control or invisible character"))
        })?;
        Ok(Account { bin: self.bin.clone(), account_no: n.clone(), holder_name: name.to_string() })
    }
}

/// Evidence that the identity was verified against the National Population Database through
/// VNeID. The engine does not call VNeID; an adapter does and passes the reference here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
/// Fields in sorted order, as `Account`'s.
#[serde(deny_unknown_fields)]
pub struct Attestation {
    /// VNeID identification level; level 2 (biometrics, in person) is required.
    pub level: u8,
    /// "VNeID".
    pub provider: String,
    /// The verification reference returned by the adapter.
    pub reference: String,
    /// When it was verified (RFC 3339).
    pub verified_at: String,
}

impl Attestation {
    /// Checks the attestation of a command issued at `issued_at` (from its envelope: decide stays
    /// pure). `verified_at` must be a real RFC 3339 time, and not after the command: a
    /// verification cannot come later than the command that cites it (compared as instants).
    pub fn check(&self, issued_at: &Timestamp) -> Result<(), (&'static str, String)> {
        // VNeID has levels 1 and 2 (Decree 59/2022): a "level 3" or 255 is no level, not a better one.
        if self.provider != "VNeID" || self.level != 2 {
            let provider: String = self.provider.chars().take(32).collect();
            return Err(("attestation_insufficient", format!("a VNeID level 2 attestation is required, got {provider:?} level {}", self.level)));
        }
        if self.reference.trim().is_empty() || self.reference.len() > 128 {
            return Err(("attestation_invalid", "attestation needs a reference of 1-128 characters".into()));
        }
        if let Err(e) = super::text::free_text(&self.reference, usize::MAX) {
            return Err(("attestation_invalid", format!("attestation reference {e}")));
        }
        let shown: String = self.verified_at.chars().take(48).collect();
        let verified = Timestamp::parse(&self.verified_at)
            .map_err(|e| ("attestation_invalid", format!("attestation verified_at {shown:?} is not an RFC 3339 time: {e}")))?;
        if verified.instant() > issued_at.instant() {
            return Err((
                "attestation_after_command",
                format!("attestation verified_at {shown:?} is later than the command's issued_at: a verification cannot come after the command that cites it"),
            ));
        }
        Ok(())
    }
}

/// Why a bank could not pay, or later returned the money.
/// ISO 20022 (pacs.002 / pacs.004) reason codes in `iso20022()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    AccountClosed,
    InvalidAccount,
    NameMismatch,
    AccountBlocked,
    BeneficiaryDeceased,
    Other,
}

impl FailureReason {
    /// Every reason, in declaration order.
    pub const ALL: [FailureReason; 6] = [
        FailureReason::AccountClosed,
        FailureReason::InvalidAccount,
        FailureReason::NameMismatch,
        FailureReason::AccountBlocked,
        FailureReason::BeneficiaryDeceased,
        FailureReason::Other,
    ];

    pub fn iso20022(&self) -> &'static str {
        match self {
            FailureReason::AccountClosed => "AC04",
            FailureReason::InvalidAccount => "AC01",
            FailureReason::NameMismatch => "BE01",
            FailureReason::AccountBlocked => "AC06",
            FailureReason::BeneficiaryDeceased => "MD07",
            FailureReason::Other => "NARR",
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            FailureReason::AccountClosed => "account_closed",
            FailureReason::InvalidAccount => "invalid_account",
            FailureReason::NameMismatch => "name_mismatch",
            FailureReason::AccountBlocked => "account_blocked",
            FailureReason::BeneficiaryDeceased => "beneficiary_deceased",
            FailureReason::Other => "other",
        }
    }

    /// Reasons that say the account itself is wrong: reissuing to the same account would fail again.
    pub fn is_account_problem(&self) -> bool {
        matches!(self, FailureReason::AccountClosed | FailureReason::InvalidAccount | FailureReason::NameMismatch | FailureReason::AccountBlocked)
    }
}
