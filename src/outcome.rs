//! What a sender gets back for a command: accepted (with the seqs of its events and, for a
//! batch or a settlement report, one result per line) or rejected with a reason code. A
//! redelivery gets the same outcome, rebuilt from the events the first delivery wrote.

use crate::event::{Event, EventData};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// Decided and durable; lines may still be rejected one by one.
    Accepted,
    /// Decided and durable as a `command.rejected` event.
    Rejected,
    /// Not a command (bad envelope): nothing recorded.
    Invalid,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Outcome {
    pub command_id: String,
    pub command_type: String,
    pub status: OutcomeStatus,
    /// True when this answers a redelivery from the command index; nothing was written.
    pub duplicate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The first and the last seq of the events this command wrote: `[first, last]`, both
    /// included (a range: every seq in between is this command's too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seqs: Option<[u64; 2]>,
    /// The payout this command created, for `reissue_payout`: the new payout's id
    /// (`<root>-R<n>`), to follow it with the bank and under `/v1/payouts/{payout_id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    /// Per line (batch) or item (settlement report), in input order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<LineOutcome>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LineOutcome {
    pub line_no: u32,
    /// instructed | cash_listed (a one-off line to be paid in cash) | settled | failed | returned | rejected
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Outcome {
    pub fn invalid(command_id: &str, command_type: &str, message: String) -> Outcome {
        Outcome {
            command_id: command_id.chars().take(160).collect(),
            command_type: command_type.to_string(),
            status: OutcomeStatus::Invalid,
            duplicate: false,
            code: Some("envelope_invalid".into()),
            message: Some(message),
            seqs: None,
            payout_id: None,
            lines: Vec::new(),
        }
    }

    /// The answer to a poison message (not a command, or not decidable): `status` invalid,
    /// `code` the dead-letter reason (`not_json`, `schema_violation`, `envelope_invalid`,
    /// `attempts_exhausted`, ...), nothing recorded by this delivery.
    pub fn poison(command_id: &str, command_type: &str, reason: &str, message: &str) -> Outcome {
        let mut outcome = Outcome::invalid(command_id, command_type, message.chars().take(1_000).collect());
        outcome.command_type = command_type.chars().take(64).collect();
        outcome.code = Some(reason.to_string());
        outcome
    }

    /// Builds the outcome of a command from the events it wrote (in seq order).
    pub fn from_events(command_id: &str, command_type: &str, events: &[(u64, Event)], duplicate: bool) -> Outcome {
        let seqs = match (events.first(), events.last()) {
            (Some((a, _)), Some((b, _))) => Some([*a, *b]),
            _ => None,
        };
        let mut outcome = Outcome {
            command_id: command_id.to_string(),
            command_type: command_type.to_string(),
            status: OutcomeStatus::Accepted,
            duplicate,
            code: None,
            message: None,
            seqs,
            payout_id: None,
            lines: Vec::new(),
        };
        let itemized = matches!(command_type, "submit_payout_batch" | "record_settlements" | "submit_one_off_batch");
        let mut item_no = 0u32;
        for (_, event) in events {
            let line = |status: &str, payout_id: Option<String>, code: Option<String>, message: Option<String>, no: u32| LineOutcome {
                line_no: no,
                status: status.into(),
                payout_id,
                code,
                message,
            };
            match &event.data {
                EventData::CommandRejected(r) => {
                    outcome.status = OutcomeStatus::Rejected;
                    outcome.code = Some(r.code.clone());
                    outcome.message = Some(r.message.clone());
                }
                EventData::PayoutBatchSubmitted(_) | EventData::OneOffBatchSubmitted(_) => {}
                EventData::PayoutInstructed(p) if command_type == "reissue_payout" => outcome.payout_id = Some(p.payout_id.clone()),
                _ if !itemized => {}
                data => {
                    item_no += 1;
                    outcome.lines.push(match data {
                        EventData::PayoutInstructed(p) => line("instructed", Some(p.payout_id.clone()), None, None, p.line_no),
                        EventData::PayoutLineRejected(r) => line("rejected", None, Some(r.code.clone()), Some(r.message.clone()), r.line_no),
                        EventData::OneOffCashListed(c) => line("cash_listed", None, None, None, c.line_no),
                        EventData::PayoutSettled(t) => line("settled", Some(t.payout_id.clone()), None, None, item_no),
                        EventData::PayoutFailed(t) => line("failed", Some(t.payout_id.clone()), None, None, item_no),
                        EventData::PayoutReturned(t) => line("returned", Some(t.payout_id.clone()), None, None, item_no),
                        EventData::SettlementItemRejected(r) => {
                            line("rejected", Some(r.payout_id.clone()), Some(r.code.clone()), Some(r.message.clone()), r.item_no)
                        }
                        other => line(other.type_name(), None, None, None, item_no),
                    });
                }
            }
        }
        outcome
    }

    /// Lines with this status.
    pub fn count_lines(&self, status: &str) -> usize {
        self.lines.iter().filter(|l| l.status == status).count()
    }
}
