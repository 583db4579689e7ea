//! The command vocabulary: what senders ask for. Payloads hold raw input (strings as sent), so
//! that every rule in `decide` can answer with its own stable reason code instead of a generic
//! decode error. Each type carries a version (`v`); version 1 is the only one so far.

use crate::domain::account::AccountInput;
use crate::domain::Attestation;
use crate::domain::{FailureReason, Sex};
use crate::timefmt::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What arrives on the wire (a JSON Lines line, an AMQP message body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandEnvelope {
    /// Sender-chosen, unique per command, 1-128 characters of [A-Za-z0-9._:-]; a redelivery
    /// carries the same id and gets the same outcome.
    #[schemars(schema_with = "command_id_schema")]
    pub command_id: String,
    /// Version of the command type's payload: a whole number, 1 if absent (`1.0` is read as 1,
    /// since JSON Schema cannot tell the two apart).
    #[serde(default = "one", deserialize_with = "version")]
    #[schemars(schema_with = "version_schema")]
    pub v: u32,
    /// When the sender issued the command: RFC 3339 with a real date (years 1900-2399) and time,
    /// an offset within ±14:00, no leap second. Events take their time from here.
    #[schemars(schema_with = "issued_at_schema")]
    pub issued_at: String,
    /// Who sent it (over AMQP: the broker-validated user id). Informational in embedded mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(flatten)]
    pub command: Command,
}

fn one() -> u32 {
    1
}

/// `v` as JSON Schema reads it: a number whose value is a whole number from 1 to u32::MAX. JSON
/// Schema cannot tell `1.0` from `1` (draft 2020-12: "a number with a zero fractional part is
/// an integer"; `const` and `enum` compare values too), and RFC 8259 and RFC 8785 give them the
/// same meaning, so no schema can refuse `1.0`: the decoder reads it as version 1 instead of
/// disagreeing with every validator. `0`, negatives, fractions, strings and null are refused,
/// as the schema refuses them (`minimum` 1, `maximum` u32::MAX).
fn version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct Version;
    impl serde::de::Visitor<'_> for Version {
        type Value = u32;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a whole number from 1 to {}", u32::MAX)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).ok().filter(|v| *v >= 1).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u32, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self)).and_then(|v| self.visit_u64(v))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<u32, E> {
            if v.fract() == 0.0 && (1.0..=f64::from(u32::MAX)).contains(&v) {
                Ok(v as u32)
            } else {
                Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_any(Version)
}

fn version_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "integer",
        "minimum": 1,
        "maximum": u32::MAX,
        "default": 1,
    })
}

fn command_id_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": format!("^[A-Za-z0-9._:-]{{1,{}}}$", crate::engine::COMMAND_ID_LEN_MAX),
    })
}

fn issued_at_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::timefmt::rfc3339_schema()
}

/// The envelope's `issued_at`, parsed (`timefmt`: a real date and time, offset within ±14:00),
/// or why not. Events take their `at` from it, so an impossible time is never recorded.
pub fn issued_at(envelope: &CommandEnvelope) -> Result<Timestamp, String> {
    Timestamp::parse(&envelope.issued_at).map_err(|e| {
        let shown: String = envelope.issued_at.chars().take(48).collect();
        format!("issued_at {shown:?} is not an RFC 3339 time ({e}); e.g. 2025-01-20T08:00:00+07:00")
    })
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum Command {
    DefineProgram(DefineProgram),
    SetStandardLevel(SetStandardLevel),
    FundBudget(FundBudget),
    EnrollBeneficiary(EnrollBeneficiary),
    ChangePaymentAccount(ChangePaymentAccount),
    ChangeCategory(ChangeCategory),
    SuspendBeneficiary(StatusChange),
    ResumeBeneficiary(StatusChange),
    TerminateBeneficiary(StatusChange),
    ReassignCitizenId(ReassignCitizenId),
    SubmitPayoutBatch(SubmitPayoutBatch),
    RecordSettlements(RecordSettlements),
    ReissuePayout(PayoutRef),
    WriteOffPayout(PayoutRef),
    DefineOneOffProgram(DefineOneOffProgram),
    FundOneOff(FundOneOff),
    SubmitOneOffBatch(SubmitOneOffBatch),
}

impl Command {
    pub fn type_name(&self) -> &'static str {
        match self {
            Command::DefineProgram(_) => "define_program",
            Command::SetStandardLevel(_) => "set_standard_level",
            Command::FundBudget(_) => "fund_budget",
            Command::EnrollBeneficiary(_) => "enroll_beneficiary",
            Command::ChangePaymentAccount(_) => "change_payment_account",
            Command::ChangeCategory(_) => "change_category",
            Command::SuspendBeneficiary(_) => "suspend_beneficiary",
            Command::ResumeBeneficiary(_) => "resume_beneficiary",
            Command::TerminateBeneficiary(_) => "terminate_beneficiary",
            Command::ReassignCitizenId(_) => "reassign_citizen_id",
            Command::SubmitPayoutBatch(_) => "submit_payout_batch",
            Command::RecordSettlements(_) => "record_settlements",
            Command::ReissuePayout(_) => "reissue_payout",
            Command::WriteOffPayout(_) => "write_off_payout",
            Command::DefineOneOffProgram(_) => "define_one_off_program",
            Command::FundOneOff(_) => "fund_one_off",
            Command::SubmitOneOffBatch(_) => "submit_one_off_batch",
        }
    }

    /// Every command type name, for schemas, docs and tests.
    pub const TYPE_NAMES: &'static [&'static str] = &[
        "define_program",
        "set_standard_level",
        "fund_budget",
        "enroll_beneficiary",
        "change_payment_account",
        "change_category",
        "suspend_beneficiary",
        "resume_beneficiary",
        "terminate_beneficiary",
        "reassign_citizen_id",
        "submit_payout_batch",
        "record_settlements",
        "reissue_payout",
        "write_off_payout",
        "define_one_off_program",
        "fund_one_off",
        "submit_one_off_batch",
    ];
}

/// Defines a program and its categories. Coefficients are decimal strings ("1.5").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineProgram {
    pub program_id: String,
    pub name: String,
    /// Category code -> coefficient, e.g. {"1a": "2.5"}.
    pub categories: BTreeMap<String, String>,
    #[serde(default)]
    pub legal_basis: String,
}

/// Sets the standard level from a month on, nationally (`province` absent) or for one province.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStandardLevel {
    pub program_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    pub effective_from: String,
    pub amount: String,
    #[serde(default)]
    pub legal_basis: String,
}

/// Treasury allocation for a province, program and month.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FundBudget {
    pub province: String,
    pub program_id: String,
    pub period: String,
    pub amount: String,
    #[serde(default)]
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollBeneficiary {
    pub citizen_id: String,
    pub program_id: String,
    /// Province that administers and pays (not derived from the ID, which is the birth place).
    pub province: String,
    pub full_name: String,
    pub date_of_birth: String,
    pub sex: Sex,
    pub category: String,
    /// First month of entitlement (month the decision was signed).
    pub effective_from: String,
    pub account: AccountInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePaymentAccount {
    pub citizen_id: String,
    pub account: AccountInput,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeCategory {
    pub citizen_id: String,
    pub program_id: String,
    pub category: String,
    pub effective_from: String,
}

/// Suspend, resume or terminate an enrollment from a month on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    pub citizen_id: String,
    pub program_id: String,
    pub effective_from: String,
    #[serde(default)]
    pub reason: String,
}

/// The population database re-determined a person's number (e.g. birth year corrected). The
/// new number must agree with the person's recorded sex and date of birth, or with
/// `date_of_birth` when the re-determination corrected it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignCitizenId {
    pub old_citizen_id: String,
    pub new_citizen_id: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
    /// The corrected date of birth (`YYYY-MM-DD`), when the re-determination corrected it;
    /// absent: the recorded one stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitPayoutBatch {
    pub batch_id: String,
    pub program_id: String,
    pub province: String,
    pub period: String,
    /// Line numbers are positions, from 1.
    pub lines: Vec<PayoutLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutLine {
    pub citizen_id: String,
    pub amount: String,
}

/// A bank reports what happened to its payouts; items are accepted one by one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordSettlements {
    /// The reporting bank; it may only settle payouts routed to it.
    pub bin: String,
    pub items: Vec<SettlementItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SettlementItem {
    pub payout_id: String,
    pub status: SettlementStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    #[serde(default)]
    pub bank_reference: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettlementStatus {
    Settled,
    Failed,
    Returned,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutRef {
    pub payout_id: String,
    #[serde(default)]
    pub reason: String,
}

/// A national one-off program (issue 12): one fixed amount to every citizen who held a personal
/// ID number by `eligible_cutoff`, paid in `period`. Routed to every shard (`all`): each defines it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineOneOffProgram {
    pub program_id: String,
    pub name: String,
    /// Whole đồng, digits only, e.g. "100000".
    pub amount: String,
    /// `YYYY-MM-DD`: a citizen is eligible if their personal ID number was assigned on or
    /// before this day.
    pub eligible_cutoff: String,
    /// `YYYY-MM`: the month it is paid in (payouts carry it as their period).
    pub period: String,
    #[serde(default)]
    pub legal_basis: String,
}

/// This shard's own budget for a one-off program (routed `shard.<name>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FundOneOff {
    pub program_id: String,
    pub amount: String,
    #[serde(default)]
    pub reference: String,
}

/// Lines of one citizen ID partition (routed to the consistent-hash exchange with the
/// partition in decimal as its routing key). A shard that does not own `partition` refuses the
/// whole command (`shard_not_owner`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitOneOffBatch {
    pub batch_id: String,
    pub program_id: String,
    /// `partition_of` of every line's citizen ID: 0-1023.
    pub partition: u32,
    /// Line numbers are positions, from 1.
    pub lines: Vec<OneOffLine>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneOffLine {
    pub citizen_id: String,
    /// `YYYY-MM-DD`: the day the personal ID number was assigned.
    pub id_assigned_on: String,
    /// The VNeID-linked social-security account; absent: paid in cash through `commune`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountInput>,
    /// 5-digit commune code, where a line without an account is paid in cash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune: Option<String>,
}
