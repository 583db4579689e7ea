//! The event vocabulary: facts the engine has decided, in the order it decided them. Events
//! hold validated values only and are never rewritten; a change of shape gets a new `v` and an
//! upcaster at read time.

use crate::domain::{Account, Attestation, BirthDate, CitizenId, Coefficient, FailureReason, Period, Sex, Vnd};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One event as stored in the log and exported to auditors (`event` member of an audit record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Event {
    /// `<command_id>/<n>`: unique, stable across redeliveries (a redelivery writes nothing).
    /// A `command_id_reused` rejection: `<command_id>/reused-<16 hex of its payload digest>/<n>`.
    pub id: String,
    pub command_id: String,
    /// Time of the command that caused it (its `issued_at`, never a clock): RFC 3339 as the
    /// engine accepts it (`timefmt`).
    #[schemars(schema_with = "at_schema")]
    pub at: String,
    /// Version of this event type's `data`.
    pub v: u32,
    #[serde(flatten)]
    pub data: EventData,
}

fn at_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::timefmt::rfc3339_schema()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "data")]
pub enum EventData {
    #[serde(rename = "program.defined")]
    ProgramDefined(ProgramDefined),
    #[serde(rename = "standard_level.set")]
    StandardLevelSet(StandardLevelSet),
    #[serde(rename = "budget.funded")]
    BudgetFunded(BudgetFunded),
    #[serde(rename = "beneficiary.enrolled")]
    BeneficiaryEnrolled(BeneficiaryEnrolled),
    #[serde(rename = "payment_account.changed")]
    PaymentAccountChanged(PaymentAccountChanged),
    #[serde(rename = "category.changed")]
    CategoryChanged(CategoryChanged),
    #[serde(rename = "beneficiary.suspended")]
    BeneficiarySuspended(EnrollmentStatusChanged),
    #[serde(rename = "beneficiary.resumed")]
    BeneficiaryResumed(EnrollmentStatusChanged),
    #[serde(rename = "beneficiary.terminated")]
    BeneficiaryTerminated(EnrollmentStatusChanged),
    #[serde(rename = "citizen_id.reassigned")]
    CitizenIdReassigned(CitizenIdReassigned),
    #[serde(rename = "payout_batch.submitted")]
    PayoutBatchSubmitted(PayoutBatchSubmitted),
    #[serde(rename = "payout.instructed")]
    PayoutInstructed(PayoutInstructed),
    #[serde(rename = "payout_line.rejected")]
    PayoutLineRejected(PayoutLineRejected),
    #[serde(rename = "payout.settled")]
    PayoutSettled(PayoutTransition),
    #[serde(rename = "payout.failed")]
    PayoutFailed(PayoutTransition),
    #[serde(rename = "payout.returned")]
    PayoutReturned(PayoutTransition),
    #[serde(rename = "payout.written_off")]
    PayoutWrittenOff(PayoutTransition),
    #[serde(rename = "settlement_item.rejected")]
    SettlementItemRejected(SettlementItemRejected),
    #[serde(rename = "command.rejected")]
    CommandRejected(CommandRejected),
}

impl EventData {
    pub fn type_name(&self) -> &'static str {
        match self {
            EventData::ProgramDefined(_) => "program.defined",
            EventData::StandardLevelSet(_) => "standard_level.set",
            EventData::BudgetFunded(_) => "budget.funded",
            EventData::BeneficiaryEnrolled(_) => "beneficiary.enrolled",
            EventData::PaymentAccountChanged(_) => "payment_account.changed",
            EventData::CategoryChanged(_) => "category.changed",
            EventData::BeneficiarySuspended(_) => "beneficiary.suspended",
            EventData::BeneficiaryResumed(_) => "beneficiary.resumed",
            EventData::BeneficiaryTerminated(_) => "beneficiary.terminated",
            EventData::CitizenIdReassigned(_) => "citizen_id.reassigned",
            EventData::PayoutBatchSubmitted(_) => "payout_batch.submitted",
            EventData::PayoutInstructed(_) => "payout.instructed",
            EventData::PayoutLineRejected(_) => "payout_line.rejected",
            EventData::PayoutSettled(_) => "payout.settled",
            EventData::PayoutFailed(_) => "payout.failed",
            EventData::PayoutReturned(_) => "payout.returned",
            EventData::PayoutWrittenOff(_) => "payout.written_off",
            EventData::SettlementItemRejected(_) => "settlement_item.rejected",
            EventData::CommandRejected(_) => "command.rejected",
        }
    }

    pub const TYPE_NAMES: &'static [&'static str] = &[
        "program.defined",
        "standard_level.set",
        "budget.funded",
        "beneficiary.enrolled",
        "payment_account.changed",
        "category.changed",
        "beneficiary.suspended",
        "beneficiary.resumed",
        "beneficiary.terminated",
        "citizen_id.reassigned",
        "payout_batch.submitted",
        "payout.instructed",
        "payout_line.rejected",
        "payout.settled",
        "payout.failed",
        "payout.returned",
        "payout.written_off",
        "settlement_item.rejected",
        "command.rejected",
    ];
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramDefined {
    pub program_id: String,
    pub name: String,
    pub categories: BTreeMap<String, Coefficient>,
    pub legal_basis: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StandardLevelSet {
    pub program_id: String,
    /// Absent: the national level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    pub effective_from: Period,
    pub amount: Vnd,
    pub legal_basis: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetFunded {
    pub province: String,
    pub program_id: String,
    pub period: Period,
    pub amount: Vnd,
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BeneficiaryEnrolled {
    pub citizen_id: CitizenId,
    pub program_id: String,
    pub province: String,
    pub full_name: String,
    pub date_of_birth: BirthDate,
    pub sex: Sex,
    pub category: String,
    pub effective_from: Period,
    pub account: Account,
    pub attestation: Attestation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentAccountChanged {
    pub citizen_id: CitizenId,
    pub account: Account,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryChanged {
    pub citizen_id: CitizenId,
    pub program_id: String,
    pub category: String,
    pub effective_from: Period,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentStatusChanged {
    pub citizen_id: CitizenId,
    pub program_id: String,
    pub effective_from: Period,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CitizenIdReassigned {
    pub old_citizen_id: CitizenId,
    pub new_citizen_id: CitizenId,
    pub reason: String,
    pub attestation: Attestation,
    /// The corrected date of birth, when the re-determination corrected it (the new number
    /// agrees with it); the person's record takes it. Absent (and not written) otherwise, so
    /// events recorded before the member existed keep their bytes and hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<BirthDate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutBatchSubmitted {
    pub batch_id: String,
    pub program_id: String,
    pub province: String,
    pub period: Period,
    pub lines_total: u32,
    pub lines_instructed: u32,
    pub lines_rejected: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayoutKind {
    /// The one regular payout of a citizen, program and period.
    Regular,
    /// A new payout for a failed or returned one.
    Reissue,
}

/// An instruction to a bank: pay this amount to this account.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutInstructed {
    pub payout_id: String,
    pub kind: PayoutKind,
    /// The batch of a regular payout; for a reissue, the batch of the original.
    pub batch_id: String,
    /// Line number in the batch (for a reissue, the original's line).
    pub line_no: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_of: Option<String>,
    pub citizen_id: CitizenId,
    pub program_id: String,
    pub province: String,
    pub period: Period,
    pub amount: Vnd,
    pub account: Account,
}

/// A batch line refused with its reason; the raw input is kept as sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutLineRejected {
    pub batch_id: String,
    pub line_no: u32,
    pub citizen_id: String,
    pub amount: String,
    pub code: String,
    pub message: String,
}

/// settled / failed / returned / written off. Self-contained (citizen, program, period,
/// amount, bank) so an auditor can rebuild balances from this event alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutTransition {
    pub payout_id: String,
    pub batch_id: String,
    pub citizen_id: CitizenId,
    pub program_id: String,
    pub province: String,
    pub period: Period,
    pub amount: Vnd,
    pub bin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    /// Bank's reference for settlements; free text for write-offs.
    #[serde(default)]
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettlementItemRejected {
    pub bin: String,
    pub item_no: u32,
    pub payout_id: String,
    pub code: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRejected {
    pub command_type: String,
    pub code: String,
    pub message: String,
}
