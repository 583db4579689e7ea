//! The event vocabulary: facts the engine has decided, in the order it decided them. Events
//! hold validated values only and are never rewritten; a change of shape gets a new `v` and an
//! upcaster at read time.

use crate::domain::{Account, Attestation, BirthDate, CitizenId, Coefficient, FailureReason, Period, Sex, Vnd};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One event as stored in the log and exported to auditors (`event` member of an audit record).
///
/// Serialized by hand (below) in the canonical member order of RFC 8785 for ASCII names
/// (`at`, `command_id`, `data`, `id`, `sender`, `type`, `v`), and every data struct declares its
/// fields in sorted order, so `serde_json`'s compact writer produces the canonical bytes directly:
/// `log::chain::seal` serializes each event once and hashes those bytes (`chain::tests` and a
/// debug assertion in `seal` compare them with the generic canonicalizer).
#[derive(Clone, Debug, PartialEq, JsonSchema)]
pub struct Event {
    /// `<command_id>/<n>@<sender>` (`<command_id>/<n>` without a sender): unique in the log,
    /// stable across redeliveries (a redelivery writes nothing). Command ids are scoped by
    /// sender, hence the sender in the id. A `command_id_reused` rejection:
    /// `<command_id>/reused-<16 hex of its payload digest>/<n>@<sender>`.
    pub id: String,
    pub command_id: String,
    /// Time of the command that caused it (its `issued_at`, never a clock): RFC 3339 as the
    /// engine accepts it (`timefmt`).
    #[schemars(schema_with = "at_schema")]
    pub at: String,
    /// Who sent the command: the broker-validated AMQP user over RabbitMQ, `file` for the
    /// embedded intake (`submit`, `demo`), which believes no sender a file claims. Absent when an
    /// AMQP message carried no user id (such a command is refused as unauthorized), and in logs
    /// written before senders were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Version of this event type's `data`.
    pub v: u32,
    #[serde(flatten)]
    pub data: EventData,
}

fn at_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::timefmt::rfc3339_schema()
}

/// Lists every event type once: variant, wire name, data type. Generates `EventData`, its
/// names, and the (de)serialization of its content.
macro_rules! event_types {
    ($( $(#[$doc:meta])* $variant:ident => $name:literal, $data:ty; )*) => {
        #[derive(Clone, Debug, PartialEq, JsonSchema)]
        #[serde(tag = "type", content = "data")]
        pub enum EventData {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($data), )*
        }

        impl EventData {
            pub fn type_name(&self) -> &'static str {
                match self { $( EventData::$variant(_) => $name, )* }
            }

            pub const TYPE_NAMES: &'static [&'static str] = &[ $( $name, )* ];

            /// The qualifier of the event's routing key on the events exchange
            /// (`<type>.<qualifier>`): the bank BIN for payout events (a bank connector binds
            /// `payout.instructed.<its bin>`), the province for beneficiary and budget events,
            /// `national` for a national standard level, and `all` otherwise.
            pub fn route_qualifier(&self) -> &str {
                match self {
                    EventData::PayoutInstructed(e) => &e.account.bin,
                    EventData::PayoutSettled(t) | EventData::PayoutFailed(t) | EventData::PayoutReturned(t) | EventData::PayoutWrittenOff(t) => &t.bin,
                    EventData::SettlementItemRejected(e) => &e.bin,
                    EventData::BeneficiaryEnrolled(e) => &e.province,
                    EventData::BudgetFunded(e) => &e.province,
                    EventData::PayoutBatchSubmitted(e) => &e.province,
                    EventData::StandardLevelSet(e) => e.province.as_deref().unwrap_or("national"),
                    EventData::OneOffCashListed(e) => &e.commune,
                    _ => "all",
                }
            }

            /// Serializes the content (the `data` member) alone.
            fn serialize_content<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self { $( EventData::$variant(d) => d.serialize(s), )* }
            }

            /// Reads the content of an event of type `name`.
            fn from_content(name: &str, data: &serde_json::value::RawValue) -> Result<EventData, String> {
                match name {
                    $( $name => serde_json::from_str::<$data>(data.get()).map(EventData::$variant).map_err(|e| e.to_string()), )*
                    other => Err(format!("unknown event type {other:?}")),
                }
            }
        }
    };
}

event_types! {
    ProgramDefined => "program.defined", ProgramDefined;
    StandardLevelSet => "standard_level.set", StandardLevelSet;
    BudgetFunded => "budget.funded", BudgetFunded;
    BeneficiaryEnrolled => "beneficiary.enrolled", BeneficiaryEnrolled;
    PaymentAccountChanged => "payment_account.changed", PaymentAccountChanged;
    CategoryChanged => "category.changed", CategoryChanged;
    BeneficiarySuspended => "beneficiary.suspended", EnrollmentStatusChanged;
    BeneficiaryResumed => "beneficiary.resumed", EnrollmentStatusChanged;
    BeneficiaryTerminated => "beneficiary.terminated", EnrollmentStatusChanged;
    CitizenIdReassigned => "citizen_id.reassigned", CitizenIdReassigned;
    PayoutBatchSubmitted => "payout_batch.submitted", PayoutBatchSubmitted;
    PayoutInstructed => "payout.instructed", PayoutInstructed;
    PayoutLineRejected => "payout_line.rejected", PayoutLineRejected;
    PayoutSettled => "payout.settled", PayoutTransition;
    PayoutFailed => "payout.failed", PayoutTransition;
    PayoutReturned => "payout.returned", PayoutTransition;
    PayoutWrittenOff => "payout.written_off", PayoutTransition;
    SettlementItemRejected => "settlement_item.rejected", SettlementItemRejected;
    CommandRejected => "command.rejected", CommandRejected;
    OneOffProgramDefined => "one_off_program.defined", OneOffProgramDefined;
    OneOffFunded => "one_off.funded", OneOffFunded;
    OneOffBatchSubmitted => "one_off_batch.submitted", OneOffBatchSubmitted;
    OneOffCashListed => "one_off.cash_listed", OneOffCashListed;
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Content<'a>(&'a EventData);
        impl Serialize for Content<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize_content(s)
            }
        }
        // Canonical (sorted) member order; see the type's documentation.
        let mut map = s.serialize_map(Some(if self.sender.is_some() { 7 } else { 6 }))?;
        map.serialize_entry("at", &self.at)?;
        map.serialize_entry("command_id", &self.command_id)?;
        map.serialize_entry("data", &Content(&self.data))?;
        map.serialize_entry("id", &self.id)?;
        if let Some(sender) = &self.sender {
            map.serialize_entry("sender", sender)?;
        }
        map.serialize_entry("type", self.data.type_name())?;
        map.serialize_entry("v", &self.v)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Event {
    /// Members in any order; `data` is kept as raw text until `type` is known, then read as
    /// that type's struct (one pass over the bytes, no intermediate tree). Unknown and repeated
    /// members are refused, like `deny_unknown_fields` would.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Event;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an ansinh event object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Event, A::Error> {
                use serde::de::Error;
                let (mut id, mut command_id, mut at, mut sender, mut v, mut kind) = (None, None, None, None, None, None);
                let mut data: Option<Box<serde_json::value::RawValue>> = None;
                fn set<T, E: Error>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), E> {
                    match slot.replace(value) {
                        Some(_) => Err(E::duplicate_field(name)),
                        None => Ok(()),
                    }
                }
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "id" => set(&mut id, map.next_value::<String>()?, "id")?,
                        "command_id" => set(&mut command_id, map.next_value::<String>()?, "command_id")?,
                        "at" => set(&mut at, map.next_value::<String>()?, "at")?,
                        "sender" => set(&mut sender, map.next_value::<Option<String>>()?, "sender")?,
                        "v" => set(&mut v, map.next_value::<u32>()?, "v")?,
                        "type" => set(&mut kind, map.next_value::<String>()?, "type")?,
                        "data" => set(&mut data, map.next_value::<Box<serde_json::value::RawValue>>()?, "data")?,
                        other => return Err(A::Error::unknown_field(other, &["at", "command_id", "data", "id", "sender", "type", "v"])),
                    }
                }
                let kind = kind.ok_or_else(|| A::Error::missing_field("type"))?;
                let data = data.ok_or_else(|| A::Error::missing_field("data"))?;
                Ok(Event {
                    id: id.ok_or_else(|| A::Error::missing_field("id"))?,
                    command_id: command_id.ok_or_else(|| A::Error::missing_field("command_id"))?,
                    at: at.ok_or_else(|| A::Error::missing_field("at"))?,
                    sender: sender.flatten(),
                    v: v.ok_or_else(|| A::Error::missing_field("v"))?,
                    data: EventData::from_content(&kind, &data).map_err(A::Error::custom)?,
                })
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramDefined {
    pub categories: BTreeMap<String, Coefficient>,
    pub legal_basis: String,
    pub name: String,
    pub program_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StandardLevelSet {
    pub amount: Vnd,
    pub effective_from: Period,
    pub legal_basis: String,
    pub program_id: String,
    /// Absent: the national level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetFunded {
    pub amount: Vnd,
    pub period: Period,
    pub program_id: String,
    pub province: String,
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BeneficiaryEnrolled {
    pub account: Account,
    pub attestation: Attestation,
    pub category: String,
    pub citizen_id: CitizenId,
    pub date_of_birth: BirthDate,
    pub effective_from: Period,
    pub full_name: String,
    pub program_id: String,
    pub province: String,
    pub sex: Sex,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentAccountChanged {
    pub account: Account,
    pub citizen_id: CitizenId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryChanged {
    pub category: String,
    pub citizen_id: CitizenId,
    pub effective_from: Period,
    pub program_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentStatusChanged {
    pub citizen_id: CitizenId,
    pub effective_from: Period,
    pub program_id: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CitizenIdReassigned {
    pub attestation: Attestation,
    /// The corrected date of birth, when the re-determination corrected it (the new number
    /// agrees with it); the person's record takes it. Absent (and not written) otherwise, so
    /// events recorded before the member existed keep their bytes and hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<BirthDate>,
    pub new_citizen_id: CitizenId,
    pub old_citizen_id: CitizenId,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutBatchSubmitted {
    pub batch_id: String,
    pub lines_instructed: u32,
    pub lines_rejected: u32,
    pub lines_total: u32,
    pub period: Period,
    pub program_id: String,
    pub province: String,
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
    pub account: Account,
    pub amount: Vnd,
    /// The batch of a regular payout; for a reissue, the batch of the original.
    pub batch_id: String,
    pub citizen_id: CitizenId,
    pub kind: PayoutKind,
    /// Line number in the batch (for a reissue, the original's line).
    pub line_no: u32,
    pub payout_id: String,
    pub period: Period,
    pub program_id: String,
    pub province: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reissue_of: Option<String>,
}

/// A batch line refused with its reason; the raw input is kept as sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutLineRejected {
    pub amount: String,
    pub batch_id: String,
    pub citizen_id: String,
    pub code: String,
    pub line_no: u32,
    pub message: String,
}

/// settled / failed / returned / written off. Self-contained (citizen, program, period,
/// amount, bank) so an auditor can rebuild balances from this event alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutTransition {
    pub amount: Vnd,
    pub batch_id: String,
    pub bin: String,
    pub citizen_id: CitizenId,
    pub payout_id: String,
    pub period: Period,
    pub program_id: String,
    pub province: String,
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
    pub code: String,
    pub item_no: u32,
    pub message: String,
    pub payout_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRejected {
    pub code: String,
    pub command_type: String,
    pub message: String,
}

/// A national one-off program (issue 12). Its payouts are `payout.instructed` events like any
/// other, with `province` `"national"` and `period` the program's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneOffProgramDefined {
    pub amount: Vnd,
    /// Eligible: personal ID number assigned on or before this day.
    pub eligible_cutoff: BirthDate,
    pub legal_basis: String,
    pub name: String,
    pub period: Period,
    pub program_id: String,
}

/// This shard's budget for a one-off program grew by `amount`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneOffFunded {
    pub amount: Vnd,
    /// The program's period (the budget view's key), so the event stands alone.
    pub period: Period,
    pub program_id: String,
    pub reference: String,
}

/// A one-off batch of one partition; its lines follow it in order, one event each
/// (`payout.instructed`, `one_off.cash_listed` or `payout_line.rejected`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneOffBatchSubmitted {
    pub batch_id: String,
    pub lines_cash: u32,
    pub lines_instructed: u32,
    pub lines_rejected: u32,
    pub lines_total: u32,
    pub partition: u16,
    pub period: Period,
    pub program_id: String,
}

/// A one-off line without an account: to be paid in cash at the citizen's commune. The
/// amount is committed from the budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OneOffCashListed {
    pub amount: Vnd,
    pub batch_id: String,
    pub citizen_id: CitizenId,
    /// 5-digit commune code.
    pub commune: String,
    pub line_no: u32,
    pub program_id: String,
}
