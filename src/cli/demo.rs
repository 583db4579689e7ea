//! `ansinh demo`: a province month end to end on the embedded engine. Every step goes through
//! the same `Engine` a transport would use; the bank is simulated in-process.
//! Deterministic per seed: re-running on the same data dir re-sends identical commands, which
//! the command index answers without paying anyone twice.
//!
//! The month is streamed: beneficiaries are generated, batches and settlement reports built a
//! group at a time, and outcomes dropped once tallied. What the demo keeps grows with the
//! month only by a few bytes a beneficiary (their numbers, then their payout lines); the open
//! payouts are read from the engine's decision state.

#[path = "demo_bank.rs"]
mod bank;
#[path = "demo_exec.rs"]
mod exec;
#[path = "demo_summary.rs"]
mod summary;

use super::demo_data::{self, Rng};
use super::{count, open_engine, vnd, CliResult};
use crate::command::*;
use crate::config::Config;
use crate::core::handles::{cid_number, cid_of};
use crate::domain::program::DECREE_20_CATEGORIES;
use crate::domain::{reference, CitizenId, Period};
use crate::outcome::OutcomeStatus;
use crate::outln;
use bank::MonthBatches;
use exec::{envelope, rate, Rejections, Run, Tally};
use rust_decimal::Decimal;
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

fn month_before(p: Period) -> Period {
    if p.month() == 1 {
        Period::new(p.year() - 1, 12).expect("year stays in range")
    } else {
        Period::new(p.year(), p.month() - 1).expect("month stays in range")
    }
}

/// A payout line of the month: (citizen number, entitlement in đồng).
type Line = (u64, u64);

fn payout_lines(lines: &[Line]) -> Vec<PayoutLine> {
    lines.iter().map(|(cid, amount)| PayoutLine { citizen_id: format!("{cid:012}"), amount: amount.to_string() }).collect()
}

/// What the payout batches of this run did.
#[derive(Debug, Default)]
struct Batches {
    tally: Tally,
    /// Lines recorded by this run.
    submitted: u64,
    /// Payouts instructed by this run.
    instructed: u64,
    rejections: Rejections,
}

impl Batches {
    fn add(&mut self, o: &crate::outcome::Outcome) {
        self.tally.add(o);
        if !o.duplicate {
            self.submitted += o.lines.len() as u64;
            self.instructed += o.count_lines("instructed") as u64;
        }
        self.rejections.add(o);
    }
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
    let rules = demo_data::program_rules(PROGRAM_ID).into_iter().map(|(id, at, command)| envelope(id, at, command)).collect();
    let out = run.execute_all(rules, "program rules")?;
    let Tally { new: a, rejected: r, duplicate: d, .. } = Tally::of(&out);
    outln!("[1/6] program rules    {PROGRAM_ID}: {} categories, 360,000 VND from 2021-07, 500,000 VND from 2024-07 ({a} new, {d} already recorded, {r} rejected) {:.2}s", DECREE_20_CATEGORIES.len(), t.elapsed().as_secs_f64());
    for o in out.iter().filter(|o| o.status != OutcomeStatus::Accepted) {
        outln!("      rejected {}: {} {}", o.command_id, o.code.as_deref().unwrap_or(""), o.message.as_deref().unwrap_or(""));
    }

    // 2. Enrollment, generated as it is sent; of each beneficiary only the number is kept, in
    //    the order generated (the order of the month's lines).
    let t = Instant::now();
    let mut generated: Vec<u64> = Vec::with_capacity(args.beneficiaries);
    let (mut enrolled, mut rejections) = (Tally::default(), Rejections::default());
    let people = demo_data::Beneficiaries::new(args.seed, &args.province, PROGRAM_ID).take(args.beneficiaries).enumerate().map(|(i, b)| {
        if let Ok(cid) = CitizenId::parse(&b.enroll.citizen_id) {
            generated.push(cid_number(&cid));
        }
        envelope(format!("demo-s{}-{}-enroll-{i:07}", args.seed, args.province), "2024-12-20T02:00:00Z", Command::EnrollBeneficiary(b.enroll))
    });
    run.execute_stream(
        people,
        args.beneficiaries as u64,
        "enroll",
        |_| 1,
        |o| {
            enrolled.add(&o);
            rejections.add(&o);
        },
    )?;
    let secs = t.elapsed().as_secs_f64();
    outln!(
        "[2/6] enroll           {} commands: {} enrolled, {} already recorded, {} rejected  {secs:.2}s ({} cmd/s)",
        count(enrolled.commands),
        count(enrolled.new),
        count(enrolled.duplicate),
        count(enrolled.rejected),
        rate(enrolled.commands, secs)
    );
    rejections.print();

    // 3. Budget: the month's entitlements plus 1 %, from the Treasury allocation.
    let t = Instant::now();
    let state = run.engine.state();
    if state.program(PROGRAM_ID).is_none() {
        return Err("the program is not defined (its command was rejected)".into());
    }
    let mut lines: Vec<Line> = Vec::with_capacity(generated.len());
    for cid in generated {
        match state.entitlement(&cid_of(cid), PROGRAM_ID, period) {
            Some((province, amount)) if province == args.province => lines.push((cid, amount.to_u64())),
            _ => {}
        }
    }
    let total: Decimal = lines.iter().map(|(_, amount)| Decimal::from(*amount)).sum();
    let funding = ((total * Decimal::new(101, 2)) / Decimal::from(1_000_000)).ceil() * Decimal::from(1_000_000);
    let fund = if funding > Decimal::ZERO {
        let env = envelope(
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
        run.execute_all(vec![env], "fund")?
    } else {
        Vec::new()
    };
    let Tally { new: a, rejected: r, duplicate: d, .. } = Tally::of(&fund);
    outln!(
        "[3/6] fund budget      {} VND for {} eligible beneficiaries ({a} new, {d} already recorded, {r} rejected)  {:.2}s",
        vnd(funding),
        count(lines.len() as u64),
        t.elapsed().as_secs_f64()
    );
    Rejections::of(&fund).print();

    // 4. Payout batches: one per commune-sized list, with a spreadsheet's usual mistakes, then
    //    a correction batch for the lines that were refused.
    let t = Instant::now();
    let mut rng = Rng::new(args.seed ^ period_key(period));
    let (mut stale, mut dupes, mut typos) = (0, 0, 0);
    let batch_ids: Vec<String> = (1..=lines.len().div_ceil(args.batch_lines)).map(|k| format!("{}-{k:03}", run.prefix)).collect();
    let batch_units: u64 = lines.chunks(args.batch_lines).map(|chunk| demo_data::spoiled_len(chunk.len()) as u64).sum();
    let envelopes = lines.chunks(args.batch_lines).zip(&batch_ids).map(|(chunk, batch_id)| {
        let mut batch_lines = payout_lines(chunk);
        let (s, d, ty) = demo_data::spoil_lines(&mut rng, &mut batch_lines);
        (stale, dupes, typos) = (stale + s, dupes + d, typos + ty);
        batch_envelope(args, period, batch_id.clone(), &list_time, batch_lines)
    });
    let mut batches = Batches::default();
    run.execute_stream(envelopes, batch_units, "payout batches", batch_lines_of, |o| batches.add(&o))?;
    let state = run.engine.state();
    let missing: Vec<Line> = lines.iter().copied().filter(|(cid, _)| !state.has_regular_payout(&cid_of(*cid), PROGRAM_ID, period)).collect();
    drop(lines);
    let correction_id = format!("{}-corr", run.prefix);
    if !missing.is_empty() {
        let env = batch_envelope(args, period, correction_id.clone(), &format!("{prev}-25T02:00:00Z"), payout_lines(&missing));
        run.execute_stream(std::iter::once(env), missing.len() as u64, "corrections", batch_lines_of, |o| batches.add(&o))?;
    }
    let batch_secs = t.elapsed().as_secs_f64();
    // Every payout of this month's batches, whether instructed now or by an earlier (perhaps
    // interrupted) run, the correction batch included whenever it is in the state (a run
    // stopped after sending it resends nothing, and its payouts must still be settled): the
    // steps below pick up whatever is still open, so a re-run finishes the month instead of
    // starting it again.
    let month = MonthBatches::of(run.engine.state(), batch_ids.into_iter().chain([correction_id]));
    outln!(
        "[4/6] payout batches   {} batches, {} new lines ({} stale amounts, {} pasted duplicates, {} mistyped IDs injected; {} refused lines resubmitted corrected): {} new payouts  {batch_secs:.2}s ({} lines/s)",
        batches.tally.commands,
        count(batches.submitted),
        stale,
        dupes,
        typos,
        missing.len(),
        count(batches.instructed),
        rate(batches.submitted, batch_secs)
    );
    batches.rejections.print();

    // 5. Settlement by the simulated banks, one report per bank and 5,000 payouts.
    let t = Instant::now();
    let settled = bank::settle(&mut run, &month, &format!("{period}-02T03:00:00Z"), "settle", args.failure_percent)?;
    let settle_secs = t.elapsed().as_secs_f64();
    outln!(
        "[5/6] bank settlement  {} reports, {} items: {} settled, {} failed  {settle_secs:.2}s ({} items/s)",
        settled.reports,
        count(settled.items),
        count(settled.settled),
        count(settled.failed),
        rate(settled.items, settle_secs)
    );

    // 6. The agency records each failed beneficiary's corrected account, reissues, and the banks settle.
    let t = Instant::now();
    let corrected = bank::correct(&mut run, &month)?;
    let resettled = bank::settle(&mut run, &month, &format!("{period}-06T03:00:00Z"), "resettle", 0)?;
    outln!(
        "[6/6] corrections      {} accounts corrected, {} payouts reissued, {} settled, {} failed again  {:.2}s",
        count(corrected.accounts),
        count(corrected.reissued),
        count(resettled.settled),
        resettled.failed,
        t.elapsed().as_secs_f64()
    );
    corrected.rejections.print();
    run.engine.flush().map_err(|e| e.to_string())?;

    let batch_ids = run.engine.views().batch_ids(&format!("{}-", run.prefix)).map_err(|e| e.to_string())?;
    summary::summary(&run, &batch_ids, &head_before, started.elapsed().as_secs_f64(), (batches.submitted + settled.items) as usize)
}

fn period_key(p: Period) -> u64 {
    u64::from(p.year()) * 100 + u64::from(p.month())
}

fn batch_envelope(args: &DemoArgs, period: Period, batch_id: String, issued_at: &str, lines: Vec<PayoutLine>) -> CommandEnvelope {
    envelope(
        format!("{batch_id}-submit"),
        issued_at,
        Command::SubmitPayoutBatch(SubmitPayoutBatch {
            batch_id,
            program_id: PROGRAM_ID.into(),
            province: args.province.clone(),
            period: period.to_string(),
            lines,
        }),
    )
}

fn batch_lines_of(env: &CommandEnvelope) -> u64 {
    match &env.command {
        Command::SubmitPayoutBatch(b) => b.lines.len() as u64,
        _ => 1,
    }
}
