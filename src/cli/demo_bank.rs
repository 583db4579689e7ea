//! The demo's bank side, steps 5 and 6: settlement reports from the simulated banks, and the
//! agency's correction (a new account, a reissue) of each payout that failed. The payouts
//! come from the decision state, a few bytes each: the month's batches are walked line by
//! line, each line's latest payout (a reissue replaces its original) taken when it is open.

use super::exec::{envelope, Rejections, Run, GROUP_UNITS_MAX};
use crate::cli::bar;
use crate::cli::demo_data::{self, hash_of, Rng};
use crate::command::*;
use crate::core::state::{payout_id, BatchHandle, PayoutKey, PayoutRef, PayoutStatus, State};
use crate::outcome::OutcomeStatus;
use std::collections::{BTreeMap, HashMap};

/// The payout batches of the month, in the order they were sent (those in the state).
pub struct MonthBatches {
    batches: Vec<(BatchHandle, u32)>,
    ids: HashMap<BatchHandle, String>,
}

impl MonthBatches {
    pub fn of(state: &State, batch_ids: impl IntoIterator<Item = String>) -> MonthBatches {
        let mut month = MonthBatches { batches: Vec::new(), ids: HashMap::new() };
        for id in batch_ids {
            if let Some((h, b)) = state.batch(&id) {
                month.batches.push((h, u32::try_from(b.lines.len()).expect("batch lines are bounded")));
                month.ids.insert(h, id);
            }
        }
        month
    }

    fn payout_id(&self, key: PayoutKey) -> String {
        payout_id(&self.ids[&key.batch], key.line, key.reissue)
    }

    /// The latest payout of every line that has one, batch by batch, line by line.
    fn latest<'s>(&'s self, state: &'s State) -> impl Iterator<Item = PayoutRef<'s>> + 's {
        self.batches.iter().flat_map(move |&(batch, lines)| {
            (1..=lines).filter_map(move |line| {
                let mut p = state.payout_at(PayoutKey { batch, line, reissue: 0 })?;
                while p.slot.reissued() {
                    p = state.payout_at(PayoutKey { reissue: p.key.reissue + 1, ..p.key }).expect("a reissued payout has its successor");
                }
                Some(p)
            })
        })
    }
}

/// What the banks answered in one settlement step.
#[derive(Debug, Default)]
pub struct Settled {
    /// Reports sent (redeliveries included).
    pub reports: u64,
    /// Items recorded by this run.
    pub items: u64,
    /// Items answered settled (redeliveries included).
    pub settled: u64,
    /// Payouts the simulated banks failed.
    pub failed: u64,
}

/// The simulated banks: each payout still instructed settles, or fails with a realistic reason
/// for about `failure_percent` % of them (decided by a hash of the payout id, so re-runs
/// agree). One report per bank (in BIN order) and 5,000 payouts, in the month's order.
pub fn settle(run: &mut Run<'_>, month: &MonthBatches, at: &str, label: &str, failure_percent: u64) -> Result<Settled, String> {
    let mut by_bank: BTreeMap<String, Vec<PayoutKey>> = BTreeMap::new();
    for p in month.latest(run.engine.state()).filter(|p| p.status() == PayoutStatus::Instructed) {
        by_bank.entry(p.account().bin()).or_default().push(p.key);
    }
    let total: u64 = by_bank.values().map(|keys| keys.len() as u64).sum();
    let (seed, prefix) = (run.args.seed, run.prefix.clone());
    let mut failed = 0;
    let reports = by_bank.iter().flat_map(|(bin, keys)| keys.chunks(5_000).enumerate().map(move |(k, chunk)| (bin, k, chunk))).map(|(bin, k, chunk)| {
        let items: Vec<SettlementItem> = chunk
            .iter()
            .map(|key| {
                let id = month.payout_id(*key);
                let h = hash_of(seed, &id);
                let (status, reason) = demo_data::simulated_outcome(seed, failure_percent as f64 / 100.0, &id);
                if status == SettlementStatus::Failed {
                    failed += 1;
                }
                SettlementItem { payout_id: id, status, reason, bank_reference: format!("FT{:012}", h % 1_000_000_000_000) }
            })
            .collect();
        let first = &items[0].payout_id;
        envelope(format!("{prefix}-{label}-{bin}-{k:04}-{first}"), at, Command::RecordSettlements(RecordSettlements { bin: bin.clone(), items }))
    });
    let items_of = |e: &CommandEnvelope| match &e.command {
        Command::RecordSettlements(s) => s.items.len() as u64,
        _ => 1,
    };
    let mut settled = Settled::default();
    run.execute_stream(reports, total, label, items_of, |o| {
        settled.reports += 1;
        if !o.duplicate {
            settled.items += o.lines.len() as u64;
        }
        settled.settled += o.count_lines("settled") as u64;
    })?;
    settled.failed = failed;
    Ok(settled)
}

/// What the agency did about the failed payouts.
#[derive(Debug, Default)]
pub struct Corrected {
    pub accounts: u64,
    pub reissued: u64,
    pub rejections: Rejections,
}

/// For each payout failed or returned and not yet reissued: the beneficiary's corrected
/// account (same bank and holder, a new number), then a reissue. Built group by group from the
/// state (the current account is read there) and executed one group at a time.
pub fn correct(run: &mut Run<'_>, month: &MonthBatches) -> Result<Corrected, String> {
    let open: Vec<PayoutKey> = month.latest(run.engine.state()).filter(|p| p.is_open_for_reissue()).map(|p| p.key).collect();
    let (period, prefix) = (run.period, run.prefix.clone());
    let (account_at, reissue_at) = (format!("{period}-04T02:00:00Z"), format!("{period}-04T03:00:00Z"));
    let mut acct_rng = Rng::new(run.args.seed ^ 0xACC7);
    let cap = run.group_max.min(GROUP_UNITS_MAX as usize);
    let progress = bar(open.len() as u64 * 2, "reissue");
    let mut done = Corrected::default();
    let (mut next, mut carried) = (0, None);
    loop {
        let state = run.engine.state();
        let mut group: Vec<CommandEnvelope> = carried.take().into_iter().collect();
        while group.len() < cap && next < open.len() {
            let p = state.payout_at(open[next]).expect("the demo's payouts exist");
            next += 1;
            let payout_id = p.id();
            let current = p.person().account().to_account();
            let account = crate::domain::account::AccountInput {
                bin: current.bin,
                account_no: demo_data::account_number(&mut acct_rng),
                holder_name: current.holder_name,
            };
            group.push(envelope(
                format!("{prefix}-acct-{payout_id}"),
                &account_at,
                Command::ChangePaymentAccount(ChangePaymentAccount { citizen_id: p.citizen_id().to_string(), account }),
            ));
            let reissue = envelope(
                format!("{prefix}-reissue-{payout_id}"),
                &reissue_at,
                Command::ReissuePayout(crate::command::PayoutRef { payout_id, reason: "account corrected".into() }),
            );
            if group.len() < cap {
                group.push(reissue);
            } else {
                carried = Some(reissue);
            }
        }
        if group.is_empty() {
            break;
        }
        run.execute_group(&group, |o| {
            let new = o.status == OutcomeStatus::Accepted && !o.duplicate;
            done.accounts += u64::from(new && o.command_type == "change_payment_account");
            done.reissued += u64::from(new && o.command_type == "reissue_payout");
            done.rejections.add(&o);
        })?;
        progress.inc(group.len() as u64);
    }
    progress.finish_and_clear();
    Ok(done)
}
