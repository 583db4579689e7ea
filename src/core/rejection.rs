//! Rejections: domain values with a stable code, never log lines. The codes are a public
//! contract (agencies and bank connectors branch on them); add new ones, never rename. A code
//! that can no longer be produced is retired: removed here, listed as retired in README.md
//! (events recorded before still carry it). Retired: `amount_fractional` (issue 16: every
//! amount with a `.` or `,` is `amount_separator`, since `500.000` means 500,000 in Vietnam).

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
}

/// Longest rejection message, in characters. Messages echo what the sender sent (a province
/// code, a BIN, a period, an amount) and are recorded in the log: a megabyte of input must not
/// become a megabyte of `command.rejected`. Past the bound the message is cut and ends in `…`.
pub const MESSAGE_CHARS_MAX: usize = 512;

impl Rejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Rejection {
        debug_assert!(CODES.iter().any(|(c, _)| *c == code), "rejection code {code} is listed in CODES");
        let mut message = message.into();
        if let Some((cut, _)) = message.char_indices().nth(MESSAGE_CHARS_MAX) {
            message.truncate(cut);
            message.push('…');
        }
        Rejection { code, message }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<(&'static str, String)> for Rejection {
    fn from((code, message): (&'static str, String)) -> Rejection {
        Rejection::new(code, message)
    }
}

/// Every reason code with what it means. Documentation and tests are generated from this list.
pub const CODES: &[(&str, &str)] = &[
    // Envelope and decoding
    ("command_id_reused", "the command id was already used with a different payload"),
    ("unauthorized", "the sender's role does not allow this command for this province, program or bank"),
    ("version_unsupported", "the command type's version is not one this engine reads"),
    (
        "shard_not_owner",
        "this shard does not own the command's administering province, or the line's citizen ID partition (issue 12: it reached the wrong shard)",
    ),
    // Identity
    ("citizen_id_format", "citizen ID is not exactly 12 digits"),
    ("citizen_id_unknown_province", "the first 3 digits are not a province code in the table (possibly a country code: check by hand)"),
    ("citizen_id_birth_year_mismatch", "century/sex digit and year disagree with the declared date of birth"),
    ("citizen_id_sex_mismatch", "century/sex digit disagrees with the declared sex"),
    ("citizen_id_reassigned", "this number was re-determined; use the new number (which is not named)"),
    ("citizen_id_in_use", "the new number already belongs to a beneficiary"),
    ("date_of_birth_invalid", "date of birth is not a real calendar date YYYY-MM-DD"),
    ("date_of_birth_in_future", "date of birth is after the day the command was issued (its issued_at date)"),
    ("date_of_birth_after_enrollment", "a reassignment's corrected date of birth is after the first month of an enrollment of the person"),
    ("full_name_invalid", "full name is empty, too long, has no letter, or has a control or invisible formatting character (zero-width, bidi)"),
    ("identity_mismatch", "date of birth or sex differ from this citizen's existing enrollment"),
    ("attestation_missing", "no identity verification attestation"),
    ("attestation_insufficient", "attestation is not VNeID level 2"),
    (
        "attestation_invalid",
        "attestation reference is empty, too long or has a control or invisible formatting character, or verified_at is not a real RFC 3339 time",
    ),
    ("attestation_after_command", "the attestation was verified after the command's issued_at (compared as instants)"),
    // Accounts
    ("bank_unknown", "BIN is not in the bank table"),
    ("account_number_invalid", "account number is not 6-19 characters of 0-9 or A-Z"),
    ("holder_name_invalid", "account holder name is empty, too long, has no letter, or has a control or invisible formatting character"),
    ("account_unchanged", "the account is the one already on record (or the one that failed)"),
    // Programs and rules
    ("program_id_invalid", "program id is empty, too long or has characters outside [A-Za-z0-9._:-]"),
    ("program_name_invalid", "program name is empty, too long, has no letter, or has a control or invisible formatting character"),
    ("program_unknown", "no such program"),
    ("program_exists", "a program with this id is already defined"),
    ("categories_invalid", "no categories, a bad category code, or too many"),
    ("coefficient_invalid", "a coefficient is not a decimal in (0, 10] with at most 2 decimals"),
    ("category_unknown", "the program has no such category"),
    ("province_unknown", "province code is not in the table"),
    ("period_invalid", "period or effective month is not YYYY-MM in 1900-2399"),
    ("standard_level_missing", "no standard level is in force for this province and period"),
    ("reference_invalid", "a reference, reason or legal basis is longer than 256 characters or has a control, line break or invisible formatting character"),
    // Money
    ("amount_invalid", "amount is not a plain string of digits (a sign, an exponent, a letter, a currency sign, non-ASCII digits or a leading zero)"),
    ("amount_separator", "amount contains a separator or a space (500.000, 500,000, 500 000, 500000.00): write whole đồng as digits only"),
    ("amount_not_positive", "amount is zero or negative"),
    ("amount_too_large", "amount exceeds the bound (10^15 đồng)"),
    ("amount_mismatch", "amount differs from the entitlement in force for the period"),
    ("budget_insufficient", "the budget for province, program and period cannot cover this amount"),
    // Enrollment lifecycle
    ("not_enrolled", "the citizen has no enrollment in this program"),
    ("already_enrolled", "the citizen is already enrolled in this program"),
    ("province_mismatch", "the citizen is not enrolled in this program in the batch's province (the other province is not named)"),
    ("not_yet_eligible", "the period is before the enrollment's first month"),
    ("beneficiary_suspended", "the enrollment is suspended for this period"),
    ("beneficiary_terminated", "the enrollment is terminated for this period"),
    ("not_suspended", "resume of an enrollment that is not suspended"),
    ("already_suspended", "suspend of an enrollment that is already suspended"),
    ("effective_out_of_order", "the effective month is before the enrollment start or a later recorded change"),
    // Batches
    ("batch_id_invalid", "batch id is empty, too long or has characters outside [A-Za-z0-9._:-]"),
    ("batch_exists", "a batch with this id was already submitted"),
    ("batch_empty", "the batch has no lines"),
    ("batch_too_large", "the batch has more lines than batch_lines_max"),
    ("duplicate_line", "the citizen appears on an earlier line of the same batch"),
    ("duplicate_payout", "the citizen already has a regular payout for this program and period"),
    // Settlements and payouts
    ("settlement_empty", "the settlement report has no items"),
    ("settlement_too_large", "the settlement report has more items than settlement_items_max"),
    ("payout_unknown", "no such payout"),
    ("bank_mismatch", "the payout is routed to another bank"),
    ("payout_state", "the payout's status does not allow this transition"),
    ("reason_missing", "a failure or return needs a reason"),
    ("reason_unexpected", "a settled item carries a failure reason (settled and failed at once)"),
    // One-off programs (issue 12)
    ("program_kind_mismatch", "a regular-program command names a one-off program, or a one-off command names a regular program (a one-off payout cannot be reissued or written off yet)"),
    ("one_off_already_paid", "the citizen already has a line paid or listed for cash in this one-off program (any earlier line, any batch)"),
    ("cutoff_invalid", "a one-off program's eligible_cutoff is not a real calendar date YYYY-MM-DD"),
    ("one_off_after_cutoff", "the personal ID number was assigned after the program's eligible_cutoff"),
    ("id_assigned_on_invalid", "id_assigned_on is not a real date YYYY-MM-DD, is after the command's issued_at date, or is in a year before the birth year the citizen ID encodes"),
    ("account_missing", "a one-off line has neither an account nor a commune to be paid in cash at"),
    ("commune_invalid", "a commune code is not exactly 5 digits"),
    ("partition_mismatch", "the line's citizen ID is not in the batch's partition (partition_of), or the batch's partition is not 0-1023"),
];

#[cfg(test)]
mod tests {
    #[test]
    fn readme_lists_every_code() {
        let readme = include_str!("../../README.md");
        for (code, _) in super::CODES {
            assert!(readme.contains(&format!("| `{code}` |")), "README.md's reason-code table lacks {code}");
        }
    }

    #[test]
    fn long_messages_are_cut() {
        let r = super::Rejection::new("province_unknown", format!("province code {:?} is not in the table", "9".repeat(100_000)));
        assert_eq!(r.message.chars().count(), super::MESSAGE_CHARS_MAX + 1);
        assert!(r.message.ends_with('…'));
        assert_eq!(super::Rejection::new("province_unknown", "short").message, "short");
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (code, _) in super::CODES {
            assert!(seen.insert(code), "{code} is listed twice");
        }
    }
}
