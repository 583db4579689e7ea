//! How each event changes the views and the ledger. Pure function of (views so far, event).

use super::views::*;
use super::{Txn, ViewError};
use crate::domain::Vnd;
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
fn beneficiary(citizen_id: &str, program: &str) -> String {
    format!("beneficiary:{citizen_id}:{program}")
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
            v.sex = serde_json::to_value(e.sex).ok().and_then(|s| s.as_str().map(String::from)).unwrap_or_default();
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
        }
        EventData::PayoutLineRejected(e) => {
            *txn.batch(format!("bat/{}", e.batch_id))?.rejected_by_reason.entry(e.code.clone()).or_default() += 1;
            *txn.line(format!("line/{}/{:06}", e.batch_id, e.line_no))? = LineView {
                line_no: e.line_no,
                citizen_id: e.citizen_id.clone(),
                amount: e.amount.clone(),
                payout_id: None,
                code: Some(e.code.clone()),
                message: Some(e.message.clone()),
            };
        }
        EventData::PayoutInstructed(e) => {
            let (cid, period) = (e.citizen_id.to_string(), e.period.to_string());
            if e.kind == PayoutKind::Regular {
                *txn.line(format!("line/{}/{:06}", e.batch_id, e.line_no))? = LineView {
                    line_no: e.line_no,
                    citizen_id: cid.clone(),
                    amount: e.amount.to_string(),
                    payout_id: Some(e.payout_id.clone()),
                    code: None,
                    message: None,
                };
            }
            *txn.payout(format!("pay/{}", e.payout_id))? = PayoutView {
                payout_id: e.payout_id.clone(),
                kind: if e.kind == PayoutKind::Regular { "regular".into() } else { "reissue".into() },
                batch_id: e.batch_id.clone(),
                line_no: e.line_no,
                reissue_of: e.reissue_of.clone(),
                reissued_as: None,
                citizen_id: cid.clone(),
                program_id: e.program_id.clone(),
                province: e.province.clone(),
                period: period.clone(),
                amount: Some(e.amount),
                account: Some(e.account.clone()),
                status: "instructed".into(),
                reason: None,
                history: vec![PayoutHistory { seq, at: at.into(), status: "instructed".into(), reason: None, reference: String::new() }],
            };
            let bin = e.account.bin.as_str();
            let batch = txn.batch(format!("bat/{}", e.batch_id))?;
            batch.enter(bin, "instructed", e.amount);
            if let Some(orig) = &e.reissue_of {
                let o = txn.payout(format!("pay/{orig}"))?;
                o.reissued_as = Some(e.payout_id.clone());
                let (ostatus, obin, oamount) =
                    (o.status.clone(), o.account.as_ref().map(|a| a.bin.clone()).unwrap_or_default(), o.amount.expect("instructed payouts have an amount"));
                let batch = txn.batch(format!("bat/{}", e.batch_id))?;
                batch.leave(&obin, &ostatus, oamount);
                batch.enter(&obin, "reissued", oamount);
            }
            txn.index_payout(&cid, seq, &e.payout_id);
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
    }
    Ok(())
}

fn history(seq: u64, at: &str, event: &str, effective_from: Option<String>, detail: String) -> HistoryEntry {
    HistoryEntry { seq, at: at.to_string(), event: event.to_string(), effective_from, detail }
}

fn transition(txn: &mut Txn<'_>, seq: u64, at: &str, t: &PayoutTransition, to: &str) -> Result<(), ViewError> {
    let (cid, period) = (t.citizen_id.to_string(), t.period.to_string());
    let reason = t.reason.map(|r| r.as_str().to_string());
    let p = txn.payout(format!("pay/{}", t.payout_id))?;
    let from = std::mem::replace(&mut p.status, to.to_string());
    p.reason = reason.clone();
    p.history.push(PayoutHistory { seq, at: at.into(), status: to.into(), reason, reference: t.reference.clone() });
    txn.batch(format!("bat/{}", t.batch_id))?.leave(&t.bin, &from, t.amount);
    txn.batch(format!("bat/{}", t.batch_id))?.enter(&t.bin, to, t.amount);

    let add = |x: &mut crate::domain::Balance, a: Vnd| *x = x.plus(a);
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
        "settled" => txn.post(&clearing(&t.bin), &beneficiary(&cid, &t.program_id), amount),
        "failed" => txn.post(&clearing(&t.bin), &budget(&t.province, &t.program_id, &period), amount),
        "returned" => txn.post(&beneficiary(&cid, &t.program_id), &budget(&t.province, &t.program_id, &period), amount),
        _ => Ok(()),
    }
}

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
    // A citizen's balances are kept per enrolled program (payouts need an enrollment).
    let programs: Vec<String> = view.enrollments.keys().cloned().collect();
    *txn.citizen(format!("cit/{new}"))? = view;
    let payouts = txn.move_payout_index(old, new)?;
    for payout_id in payouts {
        txn.payout(format!("pay/{payout_id}"))?.citizen_id = new.to_string();
    }
    for program in programs {
        let balance = txn.balance_of(&beneficiary(old, &program))?;
        if balance.0 != rust_decimal::Decimal::ZERO {
            txn.post(&beneficiary(old, &program), &beneficiary(new, &program), balance.0)?;
        }
    }
    Ok(())
}
