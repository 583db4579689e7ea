//! How each event changes the views and the ledger. Pure function of (views so far, event).

use super::views::*;
use super::{Txn, ViewError};
use crate::core::state::{parse_payout_id, ONE_OFF_PROVINCE};
use crate::event::{Event, EventData, PayoutKind, PayoutTransition};

fn treasury(province: &str, program: &str) -> String {
    format!("treasury:{province}:{program}")
}
fn budget(province: &str, program: &str, period: &str) -> String {
    format!("budget:{province}:{program}:{period}")
}
fn clearing(bin: &str) -> String {
    format!("clearing:{bin}")
}
/// The control account of what was paid to the beneficiaries of a province and program; each
/// citizen's share is derived from their payouts (see the module documentation).
fn beneficiaries(province: &str, program: &str) -> String {
    format!("beneficiaries:{province}:{program}")
}

/// What a one-off program listed to be paid in cash at a commune.
fn cash(program: &str, commune: &str) -> String {
    format!("cash:{program}:{commune}")
}

fn bin_number(bin: &str) -> u32 {
    bin.parse().expect("BINs in events are 6 digits")
}

/// The state of the payout an id names (regular, or the n-th reissue of its line).
fn payout_state<'t>(txn: &'t mut Txn<'_>, payout_id: &str) -> Result<&'t mut PayoutState, ViewError> {
    let corrupt = |detail: &str| ViewError::Corrupt { key: format!("pst/ of payout {payout_id}"), detail: detail.to_string() };
    let (batch_id, line, reissue) = parse_payout_id(payout_id).ok_or_else(|| corrupt("not a payout id"))?;
    let state = txn.line(batch_id, line)?;
    let found = match reissue {
        0 => state.regular.as_mut(),
        n => state.reissues.get_mut(n as usize - 1),
    };
    found.ok_or_else(|| corrupt("a transition of a payout that was never instructed"))
}

/// Whether an event changes the people views (`cit/`) only; every other event changes only the
/// money views. `Views::fold` folds the two kinds apart.
pub(super) fn is_people(data: &EventData) -> bool {
    matches!(
        data,
        EventData::BeneficiaryEnrolled(_)
            | EventData::PaymentAccountChanged(_)
            | EventData::CategoryChanged(_)
            | EventData::BeneficiarySuspended(_)
            | EventData::BeneficiaryResumed(_)
            | EventData::BeneficiaryTerminated(_)
            | EventData::CitizenIdReassigned(_)
    )
}

pub(super) fn apply(txn: &mut Txn<'_>, seq: u64, event: &Event) -> Result<(), ViewError> {
    let at = event.at.as_str();
    match &event.data {
        EventData::ProgramDefined(e) => {
            let v = txn.program(format!("prog/{}", e.program_id))?;
            v.program_id = e.program_id.clone();
            v.name = e.name.clone();
            v.legal_basis = e.legal_basis.clone();
            v.categories = e.categories.iter().map(|(k, c)| (k.clone(), c.as_decimal().to_string())).collect();
        }
        EventData::StandardLevelSet(e) => {
            let v = txn.program(format!("prog/{}", e.program_id))?;
            let scope = e.province.clone().unwrap_or_else(|| "national".into());
            v.standard_levels.entry(scope).or_default().insert(e.effective_from.to_string(), e.amount);
        }
        EventData::BudgetFunded(e) => {
            let period = e.period.to_string();
            let v = txn.budget(format!("bud/{}/{}/{}", e.province, e.program_id, period))?;
            v.province = e.province.clone();
            v.program_id = e.program_id.clone();
            v.period = period.clone();
            v.funded = v.funded.plus(e.amount);
            v.derive();
            txn.post(&treasury(&e.province, &e.program_id), &budget(&e.province, &e.program_id, &period), e.amount.as_decimal())?;
        }
        EventData::BeneficiaryEnrolled(e) => {
            let v = txn.citizen(format!("cit/{}", e.citizen_id))?;
            v.citizen_id = e.citizen_id.to_string();
            v.full_name = e.full_name.clone();
            v.date_of_birth = e.date_of_birth.to_string();
            v.sex = match e.sex {
                crate::domain::Sex::Male => "male",
                crate::domain::Sex::Female => "female",
            }
            .to_string();
            v.account = Some(e.account.clone());
            v.enrollments.insert(
                e.program_id.clone(),
                EnrollmentView {
                    province: e.province.clone(),
                    category: e.category.clone(),
                    status: "active".into(),
                    effective_from: e.effective_from.to_string(),
                    history: vec![history(
                        seq,
                        at,
                        "beneficiary.enrolled",
                        Some(e.effective_from.to_string()),
                        format!(
                            "category {}; attestation {} level {} ref {}",
                            e.category, e.attestation.provider, e.attestation.level, e.attestation.reference
                        ),
                    )],
                },
            );
        }
        EventData::PaymentAccountChanged(e) => {
            let v = txn.citizen(format!("cit/{}", e.citizen_id))?;
            v.account = Some(e.account.clone());
            for enrollment in v.enrollments.values_mut() {
                enrollment.history.push(history(seq, at, "payment_account.changed", None, format!("bank {}", e.account.bin)));
            }
        }
        EventData::CategoryChanged(e) => {
            let v = txn.citizen(format!("cit/{}", e.citizen_id))?;
            if let Some(en) = v.enrollments.get_mut(&e.program_id) {
                en.category = e.category.clone();
                en.history.push(history(seq, at, "category.changed", Some(e.effective_from.to_string()), format!("category {}", e.category)));
            }
        }
        EventData::BeneficiarySuspended(e) | EventData::BeneficiaryResumed(e) | EventData::BeneficiaryTerminated(e) => {
            let (status, name) = match &event.data {
                EventData::BeneficiarySuspended(_) => ("suspended", "beneficiary.suspended"),
                EventData::BeneficiaryResumed(_) => ("active", "beneficiary.resumed"),
                _ => ("terminated", "beneficiary.terminated"),
            };
            let v = txn.citizen(format!("cit/{}", e.citizen_id))?;
            if let Some(en) = v.enrollments.get_mut(&e.program_id) {
                en.status = status.into();
                en.history.push(history(seq, at, name, Some(e.effective_from.to_string()), e.reason.clone()));
            }
        }
        EventData::CitizenIdReassigned(e) => reassign(txn, seq, at, e)?,
        EventData::PayoutBatchSubmitted(e) => {
            let v = txn.batch(format!("bat/{}", e.batch_id))?;
            v.batch_id = e.batch_id.clone();
            v.program_id = e.program_id.clone();
            v.province = e.province.clone();
            v.period = e.period.to_string();
            v.submitted_at = at.to_string();
            v.submitted_seq = seq;
            v.lines_total = e.lines_total;
            v.lines_instructed = e.lines_instructed;
            v.lines_rejected = e.lines_rejected;
            txn.mark(format!("mon/{}/{}/{}/{}", e.province, e.program_id, e.period, e.batch_id));
        }
        EventData::PayoutLineRejected(e) => {
            *txn.batch(format!("bat/{}", e.batch_id))?.rejected_by_reason.entry(e.code.clone()).or_default() += 1;
        }
        EventData::PayoutInstructed(e) => {
            let bin = e.account.bin.as_str();
            let state = PayoutState { instructed_seq: seq, status: PayoutStatusCode::Instructed, reason: None, bin: bin_number(bin), transitions: Vec::new() };
            let line = txn.line(&e.batch_id, e.line_no)?;
            match e.kind {
                PayoutKind::Regular => {
                    assert!(line.regular.is_none(), "a line has one regular payout");
                    line.regular = Some(state);
                    txn.index_line(&e.batch_id, crate::core::handles::cid_number(&e.citizen_id), e.line_no);
                    txn.batch(format!("bat/{}", e.batch_id))?.enter(bin, "instructed", e.amount);
                }
                PayoutKind::Reissue => {
                    // The payout it replaces: the line's latest so far.
                    let original = line.reissues.last().or(line.regular.as_ref()).expect("a reissue follows a payout of its line");
                    let (ostatus, obin) = (original.status.as_str(), format!("{:06}", original.bin));
                    line.reissues.push(state);
                    let batch = txn.batch(format!("bat/{}", e.batch_id))?;
                    batch.enter(bin, "instructed", e.amount);
                    batch.leave(&obin, ostatus, e.amount);
                    batch.enter(&obin, "reissued", e.amount);
                }
            }
            let period = e.period.to_string();
            let bud = txn.budget(format!("bud/{}/{}/{}", e.province, e.program_id, period))?;
            bud.instructed = bud.instructed.plus(e.amount);
            bud.derive();
            txn.post(&budget(&e.province, &e.program_id, &period), &clearing(bin), e.amount.as_decimal())?;
        }
        EventData::PayoutSettled(t) => transition(txn, seq, at, t, "settled")?,
        EventData::PayoutFailed(t) => transition(txn, seq, at, t, "failed")?,
        EventData::PayoutReturned(t) => transition(txn, seq, at, t, "returned")?,
        EventData::PayoutWrittenOff(t) => transition(txn, seq, at, t, "written_off")?,
        EventData::SettlementItemRejected(_) | EventData::CommandRejected(_) => {}
        // A one-off program (issue 12): its amount shown as the national level of its period;
        // its budget and ledger accounts are those of province `national` (this shard's share).
        EventData::OneOffProgramDefined(e) => {
            let v = txn.program(format!("prog/{}", e.program_id))?;
            v.program_id = e.program_id.clone();
            v.name = e.name.clone();
            v.legal_basis = e.legal_basis.clone();
            v.standard_levels.entry(ONE_OFF_PROVINCE.into()).or_default().insert(e.period.to_string(), e.amount);
        }
        EventData::OneOffFunded(e) => {
            let period = e.period.to_string();
            let v = txn.budget(format!("bud/{ONE_OFF_PROVINCE}/{}/{}", e.program_id, period))?;
            v.province = ONE_OFF_PROVINCE.into();
            v.program_id = e.program_id.clone();
            v.period = period.clone();
            v.funded = v.funded.plus(e.amount);
            v.derive();
            txn.post(&treasury(ONE_OFF_PROVINCE, &e.program_id), &budget(ONE_OFF_PROVINCE, &e.program_id, &period), e.amount.as_decimal())?;
        }
        EventData::OneOffBatchSubmitted(e) => {
            let v = txn.batch(format!("bat/{}", e.batch_id))?;
            v.batch_id = e.batch_id.clone();
            v.program_id = e.program_id.clone();
            v.province = ONE_OFF_PROVINCE.into();
            v.period = e.period.to_string();
            v.submitted_at = at.to_string();
            v.submitted_seq = seq;
            v.lines_total = e.lines_total;
            v.lines_instructed = e.lines_instructed;
            v.lines_rejected = e.lines_rejected;
        }
        // Committed from the budget (counted in its `instructed`) and moved to the commune's cash
        // account, where it stays: the cash disbursement itself is not recorded by the engine yet.
        EventData::OneOffCashListed(e) => {
            let v = txn.cash(format!("cash/{}/{}", e.program_id, e.commune))?;
            v.program_id = e.program_id.clone();
            v.commune = e.commune.clone();
            v.lines += 1;
            v.amount = v.amount.plus(e.amount);
            v.seqs.push(seq);
            let period = txn.batch(format!("bat/{}", e.batch_id))?.period.clone();
            let bud = txn.budget(format!("bud/{ONE_OFF_PROVINCE}/{}/{}", e.program_id, period))?;
            bud.instructed = bud.instructed.plus(e.amount);
            bud.derive();
            txn.post(&budget(ONE_OFF_PROVINCE, &e.program_id, &period), &cash(&e.program_id, &e.commune), e.amount.as_decimal())?;
        }
    }
    Ok(())
}

fn history(seq: u64, at: &str, event: &str, effective_from: Option<String>, detail: String) -> HistoryEntry {
    HistoryEntry { seq, at: at.to_string(), event: event.to_string(), effective_from, detail }
}

fn transition(txn: &mut Txn<'_>, seq: u64, _at: &str, t: &PayoutTransition, to: &str) -> Result<(), ViewError> {
    let period = t.period.to_string();
    let state = payout_state(txn, &t.payout_id)?;
    let from = std::mem::replace(&mut state.status, PayoutStatusCode::parse(to).expect("transitions name a payout status"));
    if let Some(r) = t.reason {
        state.reason = Some(r.as_str().to_string());
    }
    state.transitions.push(seq);
    let batch = txn.batch(format!("bat/{}", t.batch_id))?;
    batch.leave(&t.bin, from.as_str(), t.amount);
    batch.enter(&t.bin, to, t.amount);

    let add = |x: &mut crate::domain::Balance, a: crate::domain::Vnd| *x = x.plus(a);
    let bud = txn.budget(format!("bud/{}/{}/{}", t.province, t.program_id, period))?;
    match to {
        "settled" => add(&mut bud.settled, t.amount),
        "failed" => add(&mut bud.failed, t.amount),
        "returned" => add(&mut bud.returned, t.amount),
        _ => {}
    }
    bud.derive();
    let amount = t.amount.as_decimal();
    match to {
        "settled" => txn.post(&clearing(&t.bin), &beneficiaries(&t.province, &t.program_id), amount),
        "failed" => txn.post(&clearing(&t.bin), &budget(&t.province, &t.program_id, &period), amount),
        "returned" => txn.post(&beneficiaries(&t.province, &t.program_id), &budget(&t.province, &t.program_id, &period), amount),
        _ => Ok(()),
    }
}

/// The new number takes the person's record; the old one keeps a stub that points to it. The
/// payouts are found through the record's `previous_citizen_ids` (`ViewReader::citizen`).
fn reassign(txn: &mut Txn<'_>, seq: u64, at: &str, e: &crate::event::CitizenIdReassigned) -> Result<(), ViewError> {
    let (old, new, reason) = (e.old_citizen_id.as_str(), e.new_citizen_id.as_str(), e.reason.as_str());
    let mut view = std::mem::take(txn.citizen(format!("cit/{old}"))?);
    if let Some(corrected) = e.date_of_birth {
        view.date_of_birth = corrected.to_string();
    }
    let old_view = txn.citizen(format!("cit/{old}"))?;
    old_view.citizen_id = old.to_string();
    old_view.reassigned_to = Some(new.to_string());
    old_view.full_name = view.full_name.clone();
    view.previous_citizen_ids.push(old.to_string());
    view.citizen_id = new.to_string();
    for en in view.enrollments.values_mut() {
        en.history.push(history(seq, at, "citizen_id.reassigned", None, format!("from {}; {reason}", crate::domain::citizen_id::mask(old))));
    }
    *txn.citizen(format!("cit/{new}"))? = view;
    Ok(())
}
