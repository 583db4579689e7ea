//! `ansinh demo`: a province month end to end on the embedded engine. Every step goes through
//! the same `Engine::execute` a transport would use; the bank is simulated in-process.
//! Deterministic per seed: re-running on the same data dir re-sends identical commands, which
//! the command index answers without paying anyone twice.

use super::demo_data::{self, hash_of, Rng};
use super::{bar, count, open_engine, print_table, vnd, CliResult};
use crate::command::*;
use crate::config::Config;
use crate::core::PayoutStatus;
use crate::domain::program::DECREE_20_CATEGORIES;
use crate::domain::{reference, Period};
use crate::engine::Engine;
use crate::outcome::{Outcome, OutcomeStatus};
use crate::outln;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

pub const PROGRAM_ID: &str = "social-allowance";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// How many beneficiaries to enroll and pay.
    #[arg(long, default_value_t = 20_000)]
    pub beneficiaries: usize,
    /// Benefit month to pay, YYYY-MM.
    #[arg(long, default_value = "2025-01")]
    pub period: String,
    /// Seed of the synthetic population and the simulated bank.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Administering province code (Khánh Hòa by default).
    #[arg(long, default_value = "056")]
    pub province: String,
    /// Lines per payout batch (one batch per commune list).
    #[arg(long, default_value_t = 10_000)]
    pub batch_lines: usize,
    /// Share of payouts the simulated bank fails, in percent.
    #[arg(long, default_value_t = 3)]
    pub failure_percent: u64,
}

/// Everything a step needs to build envelopes and run groups.
struct Run<'a> {
    engine: Engine,
    /// Time spent in each stage of every group of this run: decide (with sealing), batch
    /// write, flush, projections.
    stages: [std::time::Duration; 4],
    group_max: usize,
    args: &'a DemoArgs,
    period: Period,
    prefix: String,
}

impl Run<'_> {
    fn envelope(&self, id: String, issued_at: &str, command: Command) -> CommandEnvelope {
        CommandEnvelope { command_id: id, v: 1, issued_at: issued_at.to_string(), sender: Some(crate::engine::FILE_SENDER.into()), command }
    }

    /// Executes envelopes in groups of at most `group_max` commands (and at most ~10,000 lines: memory per group stays bounded).
    fn execute_all(&mut self, envelopes: Vec<CommandEnvelope>, label: &str, units: impl Fn(&CommandEnvelope) -> u64) -> Result<Vec<Outcome>, String> {
        let total: u64 = envelopes.iter().map(&units).sum();
        let progress = bar(total, label);
        let mut outcomes = Vec::with_capacity(envelopes.len());
        let mut group: Vec<CommandEnvelope> = Vec::new();
        let mut group_units = 0;
        let mut stages = self.stages;
        let mut flush = |group: &mut Vec<CommandEnvelope>, engine: &mut Engine| -> Result<(), String> {
            let out = engine.execute(group).map_err(|e| e.to_string())?;
            let g = engine.last_group();
            for (total, d) in stages.iter_mut().zip([g.decide, g.append, g.flush, g.apply]) {
                *total += d;
            }
            progress.inc(group.iter().map(&units).sum());
            outcomes.extend(out);
            group.clear();
            Ok(())
        };
        for env in envelopes {
            let u = units(&env);
            if !group.is_empty() && (group.len() >= self.group_max || group_units + u > 10_000) {
                flush(&mut group, &mut self.engine)?;
                group_units = 0;
            }
            group_units += u;
            group.push(env);
        }
        if !group.is_empty() {
            flush(&mut group, &mut self.engine)?;
        }
        progress.finish_and_clear();
        self.stages = stages;
        Ok(outcomes)
    }
}

fn month_before(p: Period) -> Period {
    if p.month() == 1 {
        Period::new(p.year() - 1, 12).expect("year stays in range")
    } else {
        Period::new(p.year(), p.month() - 1).expect("month stays in range")
    }
}

fn tally(outcomes: &[Outcome]) -> (usize, usize, usize) {
    let dup = outcomes.iter().filter(|o| o.duplicate).count();
    let acc = outcomes.iter().filter(|o| o.status == OutcomeStatus::Accepted && !o.duplicate).count();
    let rej = outcomes.iter().filter(|o| o.status != OutcomeStatus::Accepted && !o.duplicate).count();
    (acc, rej, dup)
}

fn rate(n: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".into();
    }
    count((n as f64 / secs) as u64)
}

pub fn run(config: &Config, args: &DemoArgs) -> CliResult {
    let period = Period::parse(&args.period).map_err(|e| e.to_string())?;
    if reference::province_name(&args.province).is_none() {
        return Err(format!("province {:?} is not in the province table (e.g. 056 Khánh Hòa)", args.province));
    }
    if args.beneficiaries == 0 || args.beneficiaries > 5_000_000 {
        return Err("--beneficiaries must be 1-5000000".into());
    }
    if args.batch_lines == 0 || args.batch_lines > config.limits.batch_lines_max {
        return Err(format!("--batch-lines must be 1-{} (limits.batch_lines_max)", config.limits.batch_lines_max));
    }
    let options = config.engine_options();
    outln!(
        "ansinh demo: province {} ({}), period {period}, {} beneficiaries, seed {}",
        args.province,
        reference::province_name(&args.province).unwrap_or("?"),
        count(args.beneficiaries as u64),
        args.seed
    );
    let started = Instant::now();
    let engine = open_engine(&options)?;
    let head_before = engine.head().clone();
    outln!("data dir {} (log head at seq {})\n", options.data_dir.display(), head_before.seq);
    let mut run = Run {
        engine,
        stages: Default::default(),
        group_max: config.engine.group_commands_max,
        args,
        period,
        prefix: format!("demo-s{}-{}-{period}", args.seed, args.province),
    };
    let prev = month_before(period);
    let list_time = format!("{prev}-24T02:00:00Z");

    // 1. Program rules: Decree 20/2021 categories, national standard levels (ids do not depend on the seed).
    let t = Instant::now();
    let rules = demo_data::program_rules(PROGRAM_ID).into_iter().map(|(id, at, command)| run.envelope(id, at, command)).collect();
    let out = run.execute_all(rules, "program rules", |_| 1)?;
    let (a, r, d) = tally(&out);
    outln!("[1/6] program rules    {PROGRAM_ID}: {} categories, 360,000 VND from 2021-07, 500,000 VND from 2024-07 ({a} new, {d} already recorded, {r} rejected) {:.2}s", DECREE_20_CATEGORIES.len(), t.elapsed().as_secs_f64());
    for o in out.iter().filter(|o| o.status != OutcomeStatus::Accepted) {
        outln!("      rejected {}: {} {}", o.command_id, o.code.as_deref().unwrap_or(""), o.message.as_deref().unwrap_or(""));
    }

    // 2. Enrollment.
    let t = Instant::now();
    let people = demo_data::beneficiaries(args.seed, args.beneficiaries, &args.province, PROGRAM_ID);
    let envelopes: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(i, b)| {
            run.envelope(format!("demo-s{}-{}-enroll-{i:07}", args.seed, args.province), "2024-12-20T02:00:00Z", Command::EnrollBeneficiary(b.enroll.clone()))
        })
        .collect();
    let out = run.execute_all(envelopes, "enroll", |_| 1)?;
    let secs = t.elapsed().as_secs_f64();
    let (a, r, d) = tally(&out);
    outln!(
        "[2/6] enroll           {} commands: {} enrolled, {} already recorded, {} rejected  {secs:.2}s ({} cmd/s)",
        count(out.len() as u64),
        count(a as u64),
        count(d as u64),
        count(r as u64),
        rate(out.len() as u64, secs)
    );
    print_rejections(&out);

    // 3. Budget: the month's entitlements plus 1 %, from the Treasury allocation.
    let t = Instant::now();
    let state = run.engine.state();
    if state.program(PROGRAM_ID).is_none() {
        return Err("the program is not defined (its command was rejected)".into());
    }
    let mut lines = Vec::new();
    for b in &people {
        let Ok(cid) = crate::domain::CitizenId::parse(&b.enroll.citizen_id) else { continue };
        match state.entitlement(&cid, PROGRAM_ID, period) {
            Some((province, amount)) if province == args.province => lines.push(PayoutLine { citizen_id: cid.to_string(), amount: amount.to_string() }),
            _ => {}
        }
    }
    let total: Decimal = lines.iter().map(|l| l.amount.parse::<Decimal>().expect("amounts are formatted by Vnd")).sum();
    let funding = ((total * Decimal::new(101, 2)) / Decimal::from(1_000_000)).ceil() * Decimal::from(1_000_000);
    let fund = if funding > Decimal::ZERO {
        let env = run.envelope(
            format!("{}-fund", run.prefix),
            &format!("{prev}-20T02:00:00Z"),
            Command::FundBudget(FundBudget {
                province: args.province.clone(),
                program_id: PROGRAM_ID.into(),
                period: period.to_string(),
                amount: funding.to_string(),
                reference: format!("KBNN allocation {period} (demo seed {})", args.seed),
            }),
        );
        run.execute_all(vec![env], "fund", |_| 1)?
    } else {
        Vec::new()
    };
    let (a, r, d) = tally(&fund);
    outln!(
        "[3/6] fund budget      {} VND for {} eligible beneficiaries ({a} new, {d} already recorded, {r} rejected)  {:.2}s",
        vnd(funding),
        count(lines.len() as u64),
        t.elapsed().as_secs_f64()
    );
    print_rejections(&fund);

    // 4. Payout batches: one per commune-sized list, with a spreadsheet's usual mistakes, then
    //    a correction batch for the lines that were refused.
    let t = Instant::now();
    let mut rng = Rng::new(args.seed ^ period_key(period));
    let mut envelopes = Vec::new();
    let (mut stale, mut dupes, mut typos) = (0, 0, 0);
    for (k, chunk) in lines.chunks(args.batch_lines).enumerate() {
        let mut batch_lines = chunk.to_vec();
        let (s, d, ty) = demo_data::spoil_lines(&mut rng, &mut batch_lines);
        (stale, dupes, typos) = (stale + s, dupes + d, typos + ty);
        let batch_id = format!("{}-{:03}", run.prefix, k + 1);
        envelopes.push(run.envelope(
            format!("{batch_id}-submit"),
            &list_time,
            Command::SubmitPayoutBatch(SubmitPayoutBatch {
                batch_id,
                program_id: PROGRAM_ID.into(),
                province: args.province.clone(),
                period: period.to_string(),
                lines: batch_lines,
            }),
        ));
    }
    let mut batch_outcomes = run.execute_all(envelopes, "payout batches", batch_lines_of)?;
    let state = run.engine.state();
    let missing: Vec<PayoutLine> = lines
        .iter()
        .filter(|l| {
            let cid = crate::domain::CitizenId::parse(&l.citizen_id).expect("generated IDs are valid");
            !state.has_regular_payout(&cid, PROGRAM_ID, period)
        })
        .cloned()
        .collect();
    if !missing.is_empty() {
        let batch_id = format!("{}-corr", run.prefix);
        let env = run.envelope(
            format!("{batch_id}-submit"),
            &format!("{prev}-25T02:00:00Z"),
            Command::SubmitPayoutBatch(SubmitPayoutBatch {
                batch_id,
                program_id: PROGRAM_ID.into(),
                province: args.province.clone(),
                period: period.to_string(),
                lines: missing.clone(),
            }),
        );
        batch_outcomes.extend(run.execute_all(vec![env], "corrections", batch_lines_of)?);
    }
    let batch_secs = t.elapsed().as_secs_f64();
    let submitted: usize = batch_outcomes.iter().filter(|o| !o.duplicate).map(|o| o.lines.len()).sum();
    // Every payout of this month's batches, whether instructed now or by an earlier (perhaps
    // interrupted) run: the steps below pick up whatever is still open, so a re-run finishes
    // the month instead of starting it again.
    let batch_payouts: Vec<String> = batch_outcomes.iter().flat_map(|o| o.lines.iter()).filter_map(|l| l.payout_id.clone()).collect();
    let new_payouts: usize = batch_outcomes.iter().filter(|o| !o.duplicate).map(|o| o.count_lines("instructed")).sum();
    outln!(
        "[4/6] payout batches   {} batches, {} new lines ({} stale amounts, {} pasted duplicates, {} mistyped IDs injected; {} refused lines resubmitted corrected): {} new payouts  {batch_secs:.2}s ({} lines/s)",
        batch_outcomes.len(),
        count(submitted as u64),
        stale,
        dupes,
        typos,
        missing.len(),
        count(new_payouts as u64),
        rate(submitted as u64, batch_secs)
    );
    print_rejections(&batch_outcomes);

    // 5. Settlement by the simulated banks, one report per bank and 5,000 payouts.
    let t = Instant::now();
    let open = latest_with_status(&run.engine, &batch_payouts, PayoutStatus::Instructed);
    let (settle_outcomes, failed) = settle(&mut run, &open, &format!("{period}-02T03:00:00Z"), "settle", args.failure_percent)?;
    let settle_secs = t.elapsed().as_secs_f64();
    let items: usize = settle_outcomes.iter().filter(|o| !o.duplicate).map(|o| o.lines.len()).sum();
    outln!(
        "[5/6] bank settlement  {} reports, {} items: {} settled, {} failed  {settle_secs:.2}s ({} items/s)",
        settle_outcomes.len(),
        count(items as u64),
        count(settle_outcomes.iter().map(|o| o.count_lines("settled") as u64).sum()),
        count(failed.len() as u64),
        rate(items as u64, settle_secs)
    );

    // 6. The agency records each failed beneficiary's corrected account, reissues, and the banks settle.
    let t = Instant::now();
    let mut envelopes = Vec::new();
    let mut acct_rng = Rng::new(args.seed ^ 0xACC7);
    let to_reissue: Vec<String> = latest(&run.engine, &batch_payouts).into_iter().filter(|id| payout(&run.engine, id).is_open_for_reissue()).collect();
    for payout_id in &to_reissue {
        let p = payout(&run.engine, payout_id);
        let current = p.person().account().to_account();
        let account =
            crate::domain::account::AccountInput { bin: current.bin, account_no: demo_data::account_number(&mut acct_rng), holder_name: current.holder_name };
        envelopes.push(run.envelope(
            format!("{}-acct-{payout_id}", run.prefix),
            &format!("{period}-04T02:00:00Z"),
            Command::ChangePaymentAccount(ChangePaymentAccount { citizen_id: p.citizen_id().to_string(), account }),
        ));
        envelopes.push(run.envelope(
            format!("{}-reissue-{payout_id}", run.prefix),
            &format!("{period}-04T03:00:00Z"),
            Command::ReissuePayout(PayoutRef { payout_id: payout_id.clone(), reason: "account corrected".into() }),
        ));
    }
    let out = run.execute_all(envelopes, "reissue", |_| 1)?;
    let reissued = latest_with_status(&run.engine, &batch_payouts, PayoutStatus::Instructed);
    let (resettled, refailed) = settle(&mut run, &reissued, &format!("{period}-06T03:00:00Z"), "resettle", 0)?;
    outln!(
        "[6/6] corrections      {} accounts corrected, {} payouts reissued, {} settled, {} failed again  {:.2}s",
        count(out.iter().filter(|o| o.command_type == "change_payment_account" && o.status == OutcomeStatus::Accepted && !o.duplicate).count() as u64),
        count(out.iter().filter(|o| o.command_type == "reissue_payout" && o.status == OutcomeStatus::Accepted && !o.duplicate).count() as u64),
        count(resettled.iter().map(|o| o.count_lines("settled") as u64).sum()),
        refailed.len(),
        t.elapsed().as_secs_f64()
    );
    print_rejections(&out);
    run.engine.flush().map_err(|e| e.to_string())?;

    let batch_ids = run.engine.views().batch_ids(&format!("{}-", run.prefix)).map_err(|e| e.to_string())?;
    summary(&run, &batch_ids, &head_before, started.elapsed().as_secs_f64(), submitted + items)
}

fn period_key(p: Period) -> u64 {
    u64::from(p.year()) * 100 + u64::from(p.month())
}

fn batch_lines_of(env: &CommandEnvelope) -> u64 {
    match &env.command {
        Command::SubmitPayoutBatch(b) => b.lines.len() as u64,
        _ => 1,
    }
}

/// A payout the demo instructed itself.
fn payout<'e>(engine: &'e Engine, payout_id: &str) -> crate::core::state::PayoutRef<'e> {
    engine.state().payout(payout_id).expect("the demo's payouts exist")
}

/// For each payout, the latest payout of its reissue chain.
fn latest(engine: &Engine, payout_ids: &[String]) -> Vec<String> {
    payout_ids
        .iter()
        .map(|id| {
            let mut cur = id.clone();
            while let Some(next) = payout(engine, &cur).reissued_as() {
                cur = next;
            }
            cur
        })
        .collect()
}

/// The latest payout of each chain, kept when it has `status`.
fn latest_with_status(engine: &Engine, payout_ids: &[String], status: PayoutStatus) -> Vec<String> {
    latest(engine, payout_ids).into_iter().filter(|id| payout(engine, id).status() == status).collect()
}

/// The simulated banks: each payout settles, or fails with a realistic reason for about
/// `failure_percent` % of them (decided by a hash of the payout id, so re-runs agree).
fn settle(run: &mut Run<'_>, payout_ids: &[String], at: &str, label: &str, failure_percent: u64) -> Result<(Vec<Outcome>, Vec<String>), String> {
    let seed = run.args.seed;
    let mut by_bank: BTreeMap<String, Vec<SettlementItem>> = BTreeMap::new();
    let mut failed = Vec::new();
    for id in payout_ids {
        let bin = payout(&run.engine, id).account().bin();
        let h = hash_of(seed, id);
        let (status, reason) = demo_data::simulated_outcome(seed, failure_percent as f64 / 100.0, id);
        if status == SettlementStatus::Failed {
            failed.push(id.clone());
        }
        by_bank.entry(bin).or_default().push(SettlementItem {
            payout_id: id.clone(),
            status,
            reason,
            bank_reference: format!("FT{:012}", h % 1_000_000_000_000),
        });
    }
    let mut envelopes = Vec::new();
    for (bin, items) in by_bank {
        for (k, chunk) in items.chunks(5_000).enumerate() {
            let first = &chunk[0].payout_id;
            envelopes.push(run.envelope(
                format!("{}-{label}-{bin}-{k:04}-{first}", run.prefix),
                at,
                Command::RecordSettlements(RecordSettlements { bin: bin.clone(), items: chunk.to_vec() }),
            ));
        }
    }
    let items_of = |e: &CommandEnvelope| match &e.command {
        Command::RecordSettlements(s) => s.items.len() as u64,
        _ => 1,
    };
    let outcomes = run.execute_all(envelopes, label, items_of)?;
    Ok((outcomes, failed))
}

fn print_rejections(outcomes: &[Outcome]) {
    let mut by_code: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| !o.duplicate) {
        if o.status != OutcomeStatus::Accepted {
            let e = by_code.entry(o.code.clone().unwrap_or_default()).or_insert((0, o.message.clone().unwrap_or_default()));
            e.0 += 1;
        }
        for l in o.lines.iter().filter(|l| l.status == "rejected") {
            let e = by_code.entry(l.code.clone().unwrap_or_default()).or_insert((0, l.message.clone().unwrap_or_default()));
            e.0 += 1;
        }
    }
    for (code, (n, example)) in by_code {
        outln!("      rejected {n:>6} x {code:<24} e.g. {example}");
    }
}

fn summary(run: &Run<'_>, batch_ids: &[String], head_before: &crate::log::Head, secs: f64, lines: usize) -> CliResult {
    let views = run.engine.views();
    let mut by_status: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
    let mut by_bank: BTreeMap<String, BTreeMap<String, (u64, Decimal)>> = BTreeMap::new();
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let (mut lines_total, mut lines_rejected) = (0u64, 0u64);
    for id in batch_ids {
        let Some(b) = views.batch(id).map_err(|e| e.to_string())? else { continue };
        lines_total += u64::from(b.lines_total);
        lines_rejected += u64::from(b.lines_rejected);
        for (s, ca) in &b.by_status {
            let e = by_status.entry(s.clone()).or_default();
            e.0 += ca.count;
            e.1 += ca.amount.0;
        }
        for (bin, statuses) in &b.by_bank {
            for (s, ca) in statuses {
                let e = by_bank.entry(bin.clone()).or_default().entry(s.clone()).or_default();
                e.0 += ca.count;
                e.1 += ca.amount.0;
            }
        }
        for (code, n) in &b.rejected_by_reason {
            *rejected.entry(code.clone()).or_default() += n;
        }
    }
    outln!(
        "\nSummary for {} {} ({} batches, {} lines submitted, {} rejected)",
        run.args.province,
        run.period,
        batch_ids.len(),
        count(lines_total),
        count(lines_rejected)
    );
    outln!("\nPayouts by status");
    let order = [
        ("instructed", "in flight (instructed)"),
        ("settled", "settled"),
        ("failed", "failed, not yet reissued"),
        ("returned", "returned, not yet reissued"),
        ("reissued", "failed, replaced by a reissue"),
        ("written_off", "written off"),
    ];
    let rows: Vec<Vec<String>> = order.iter().filter_map(|(s, label)| by_status.get(*s).map(|(n, a)| vec![label.to_string(), count(*n), vnd(*a)])).collect();
    print_table(&["status", "payouts", "amount VND"], &rows);

    outln!("\nPer bank");
    let mut rows = Vec::new();
    for (bin, statuses) in &by_bank {
        let get = |s: &str| statuses.get(s).copied().unwrap_or_default();
        let all: (u64, Decimal) = statuses.values().fold((0, Decimal::ZERO), |acc, v| (acc.0 + v.0, acc.1 + v.1));
        let name = reference::bank(bin).map(|b| b.short_name).unwrap_or("?");
        rows.push(vec![
            name.to_string(),
            bin.clone(),
            count(all.0),
            vnd(all.1),
            count(get("settled").0),
            vnd(get("settled").1),
            count(get("failed").0 + get("reissued").0),
            count(get("instructed").0),
        ]);
    }
    print_table(&["bank", "BIN", "payouts", "amount VND", "settled", "settled VND", "ever failed", "in flight"], &rows);

    if let Some(b) = views.budget(&run.args.province, PROGRAM_ID, &run.period.to_string()).map_err(|e| e.to_string())? {
        outln!("\nBudget {} / {PROGRAM_ID} / {}", run.args.province, run.period);
        let rows = vec![
            vec!["funded".into(), vnd(b.funded.0)],
            vec!["instructed".into(), vnd(b.instructed.0)],
            vec!["settled (paid)".into(), vnd(b.settled.0)],
            vec!["released by failures/returns".into(), vnd(b.released.0)],
            vec!["in flight".into(), vnd(b.in_flight.0)],
            vec!["used (paid and kept)".into(), vnd(b.spent.0)],
            vec!["available (left)".into(), vnd(b.available.0)],
        ];
        print_table(&["budget", "VND"], &rows);
    }

    outln!("\nRejected lines by reason code");
    if rejected.is_empty() {
        outln!("  (none)");
    } else {
        let rows: Vec<Vec<String>> = rejected.iter().map(|(c, n)| vec![c.clone(), count(*n)]).collect();
        print_table(&["code", "lines"], &rows);
    }
    let head = run.engine.head();
    let ledger = views.ledger_total().map_err(|e| e.to_string())?;
    outln!("\nEvents written this run  {} (log seq {} -> {})", count(head.seq - head_before.seq), head_before.seq, head.seq);
    outln!(
        "Throughput               {} payout lines + settlement items in {secs:.2}s overall ({} lines/s end to end, enrollment included)",
        count(lines as u64),
        rate(lines as u64, secs)
    );
    outln!("Double-entry ledger sum  {} (must be 0)", ledger);
    let [decide, write, flush, apply] = run.stages.map(|d| d.as_secs_f64());
    outln!("Time by stage            decide+seal {decide:.2}s, batch write {write:.2}s, flush {flush:.2}s, views {apply:.2}s");
    outln!("Chain head               seq {}  hash {}", head.seq, head.hash);
    let unpaid: HashMap<&str, u64> =
        HashMap::from([("failed", by_status.get("failed").map(|x| x.0).unwrap_or(0)), ("instructed", by_status.get("instructed").map(|x| x.0).unwrap_or(0))]);
    if unpaid.values().any(|n| *n > 0) {
        outln!("Unpaid at the end        {} failed, {} still in flight (carried to the next cycle)", unpaid["failed"], unpaid["instructed"]);
    }
    Ok(())
}
