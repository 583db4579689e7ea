//! Routing keys of published events: `<event type>.<qualifier>`, where the qualifier is the
//! bank BIN for payout events (a bank connector binds `payout.instructed.<its bin>`), the
//! province for beneficiary and budget events, and `all` otherwise.

use crate::event::{Event, EventData};

pub fn routing_key(event: &Event) -> String {
    let qualifier = match &event.data {
        EventData::PayoutInstructed(e) => e.account.bin.clone(),
        EventData::PayoutSettled(t) | EventData::PayoutFailed(t) | EventData::PayoutReturned(t) | EventData::PayoutWrittenOff(t) => t.bin.clone(),
        EventData::SettlementItemRejected(e) => e.bin.clone(),
        EventData::BeneficiaryEnrolled(e) => e.province.clone(),
        EventData::BudgetFunded(e) => e.province.clone(),
        EventData::PayoutBatchSubmitted(e) => e.province.clone(),
        EventData::StandardLevelSet(e) => e.province.clone().unwrap_or_else(|| "national".into()),
        _ => "all".into(),
    };
    format!("{}.{qualifier}", event.data.type_name())
}
