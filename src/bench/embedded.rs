//! `embedded`: payout lines per second through `Engine::execute` (decide + seal, one atomic
//! batch write, one flush, views) for a month of N beneficiaries, against raw sled writing the
//! very records the engine appended (same count, same bytes, same keys) in the same groups
//! with one flush each, on a database opened with the engine's sled settings.

use super::{dir_bytes, Report, Scratch};
use crate::cli::demo_data;
use crate::command::*;
use crate::config::Config;
use crate::domain::{CitizenId, Period};
use crate::engine::Engine;
use std::path::Path;
use std::time::{Duration, Instant};

pub const PROGRAM: &str = "social-allowance";
pub const PROVINCE: &str = "056";
/// Lines per payout batch, as in `ansinh demo` (one commune list, one group).
pub const BATCH_LINES: usize = 10_000;

pub(super) fn envelope(id: String, issued_at: &str, command: Command) -> CommandEnvelope {
    CommandEnvelope { command_id: id, v: 1, issued_at: issued_at.into(), sender: Some("bench".into()), command }
}

/// Executes set-up commands; any that is not accepted is an error.
pub(super) fn execute(engine: &mut Engine, group: &[CommandEnvelope]) -> Result<(), String> {
    let out = engine.execute(group).map_err(|e| e.to_string())?;
    if let Some(o) = out.iter().find(|o| o.status != crate::outcome::OutcomeStatus::Accepted) {
        return Err(format!("set-up command {} refused: {:?} {:?}", o.command_id, o.code, o.message));
    }
    Ok(())
}

/// A month ready to pay: program rules, `people` beneficiaries enrolled and the budget funded,
/// all decided by the engine over its data dir; `lines` are the payout lines of the period for
/// the beneficiaries active in it (one each, at their entitlement).
pub struct Month {
    pub engine: Engine,
    pub people: usize,
    pub period: Period,
    pub lines: Vec<PayoutLine>,
}

impl Month {
    /// Enrolls `people` synthetic beneficiaries (seed 7, province 056) and funds exactly the
    /// month's payouts, in groups of `engine.group_commands_max`, in a fresh engine over
    /// `data_dir`. Not timed by any suite.
    pub fn prepare(config: &Config, data_dir: &Path, people: usize) -> Result<Month, String> {
        let period = Period::parse("2025-01").map_err(|e| e.to_string())?;
        let mut options = config.engine_options();
        options.data_dir = data_dir.to_path_buf();
        let mut engine = Engine::open(&options, &mut |_, _| {}).map_err(|e| e.to_string())?;
        let group_max = config.engine.group_commands_max.max(1);

        let rules: Vec<_> = demo_data::program_rules(PROGRAM).into_iter().map(|(id, at, c)| envelope(id, at, c)).collect();
        execute(&mut engine, &rules)?;
        let beneficiaries = demo_data::beneficiaries(7, people, PROVINCE, PROGRAM);
        let enrolls: Vec<_> = beneficiaries
            .iter()
            .enumerate()
            .map(|(i, b)| envelope(format!("bench-enroll-{i}"), "2024-12-20T02:00:00Z", Command::EnrollBeneficiary(b.enroll.clone())))
            .collect();
        for g in enrolls.chunks(group_max) {
            execute(&mut engine, g)?;
        }
        let state = engine.state();
        let mut lines = Vec::with_capacity(people);
        for b in &beneficiaries {
            let cid = CitizenId::parse(&b.enroll.citizen_id).map_err(|e| e.to_string())?;
            if let Some((_, amount)) = state.entitlement(&cid, PROGRAM, period) {
                lines.push(PayoutLine { citizen_id: cid.to_string(), amount: amount.to_string() });
            }
        }
        let total: rust_decimal::Decimal = lines.iter().map(|l| l.amount.parse::<rust_decimal::Decimal>().unwrap_or_default()).sum();
        let fund = FundBudget {
            province: PROVINCE.into(),
            program_id: PROGRAM.into(),
            period: period.to_string(),
            amount: total.to_string(),
            reference: "bench".into(),
        };
        execute(&mut engine, &[envelope("bench-fund".into(), "2024-12-20T02:00:00Z", Command::FundBudget(fund))])?;
        Ok(Month { engine, people, period, lines })
    }

    /// The month's payout batches: one `submit_payout_batch` command per `BATCH_LINES` lines
    /// (as `ansinh demo` sends them), in order.
    pub fn batches(&self) -> Vec<CommandEnvelope> {
        self.lines
            .chunks(BATCH_LINES)
            .enumerate()
            .map(|(k, chunk)| {
                let batch = SubmitPayoutBatch {
                    batch_id: format!("BENCH-{k:04}"),
                    program_id: PROGRAM.into(),
                    province: PROVINCE.into(),
                    period: self.period.to_string(),
                    lines: chunk.to_vec(),
                };
                envelope(format!("bench-batch-{k}"), "2024-12-24T02:00:00Z", Command::SubmitPayoutBatch(batch))
            })
            .collect()
    }
}

/// Runs the suite for `lines` beneficiaries (one payout line each) in a scratch dir under `tmp`.
pub fn run(config: &Config, lines: usize, tmp: &Path) -> Result<Report, String> {
    let scratch = Scratch::new(tmp, "embedded")?;
    let data_dir = scratch.path().join("engine");
    // Set-up, not timed: rules, enrollments, the budget.
    let month = Month::prepare(config, &data_dir, lines)?;
    let batches = month.batches();
    let Month { mut engine, people, lines: payout_lines, .. } = month;

    // Timed: one payout batch command of BATCH_LINES lines per group, as the demo sends them.
    let first_seq = engine.head().seq + 1;
    let mut groups = Vec::new();
    let (mut wall, mut stages) = (Duration::ZERO, [Duration::ZERO; 4]);
    for (k, (env, chunk)) in batches.iter().zip(payout_lines.chunks(BATCH_LINES)).enumerate() {
        let t = Instant::now();
        let out = engine.execute(std::slice::from_ref(env)).map_err(|e| e.to_string())?;
        wall += t.elapsed();
        let instructed = out[0].count_lines("instructed");
        if instructed != chunk.len() {
            return Err(format!("batch {k}: {instructed} of {} lines instructed", chunk.len()));
        }
        let g = engine.last_group();
        for (s, d) in stages.iter_mut().zip([g.decide, g.append, g.flush, g.apply]) {
            *s += d;
        }
        groups.push(g.events);
    }
    let last_seq = engine.head().seq;
    let engine_bytes = dir_bytes(&data_dir);
    let records: Vec<Vec<u8>> =
        engine.log().range(first_seq, last_seq).map(|r| r.map(|(_, b)| b.to_vec())).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    drop(engine);
    if records.len() != groups.iter().sum::<usize>() {
        return Err(format!("{} records read back, {} appended", records.len(), groups.iter().sum::<usize>()));
    }

    // Baseline: the same records, same keys, same groups, one flush per group.
    let db = sled::Config::new()
        .path(scratch.path().join("raw"))
        .mode(sled::Mode::LowSpace)
        .cache_capacity(config.engine_options().cache_capacity_bytes)
        .flush_every_ms(Some(1_000))
        .open()
        .map_err(|e| e.to_string())?;
    let tree = db.open_tree("journal").map_err(|e| e.to_string())?;
    let mut raw = Duration::ZERO;
    let mut seq = first_seq;
    let mut rest = &records[..];
    for &n in &groups {
        let (group, tail) = rest.split_at(n);
        rest = tail;
        let t = Instant::now();
        let mut batch = sled::Batch::default();
        for r in group {
            let mut key = [0u8; 9];
            key[0] = b'e';
            key[1..].copy_from_slice(&seq.to_be_bytes());
            batch.insert(&key, r.as_slice());
            seq += 1;
        }
        tree.apply_batch(batch).map_err(|e| e.to_string())?;
        db.flush().map_err(|e| e.to_string())?;
        raw += t.elapsed();
    }
    drop(db);

    let n = payout_lines.len() as f64;
    let bytes: usize = records.iter().map(|r| r.len()).sum();
    let mut report = Report::new("embedded", payout_lines.len() as u64);
    report.figure("engine payout lines/s", n / wall.as_secs_f64(), "lines/s");
    report.figure("engine events/s", records.len() as f64 / wall.as_secs_f64(), "events/s");
    report.figure("baseline raw sled records/s", records.len() as f64 / raw.as_secs_f64(), "records/s");
    report.figure("baseline lines/s equivalent", n / raw.as_secs_f64(), "lines/s");
    report.figure("engine seconds", wall.as_secs_f64(), "s");
    report.figure("baseline seconds", raw.as_secs_f64(), "s");
    for (name, d) in ["decide+seal", "batch write", "flush", "views"].iter().zip(stages) {
        report.figure(&format!("engine stage {name}"), d.as_secs_f64(), "s");
    }
    report.figure("records", records.len() as f64, "records");
    report.figure("mean record size", bytes as f64 / records.len().max(1) as f64, "bytes");
    report.figure("groups", groups.len() as f64, "groups");
    report.figure("engine data dir", engine_bytes as f64, "bytes");
    report.ratio("engine/baseline", raw.as_secs_f64() / wall.as_secs_f64(), "target >= 0.5");
    report.note(format!(
        "{people} beneficiaries enrolled and funded untimed; timed: {} payout batches of up to {BATCH_LINES} lines, one command per group",
        groups.len()
    ));
    report.note(
        "baseline writes the engine's own event records (same bytes, same keys) in the same groups, one flush each; it writes no command index, head, or views",
    );
    Ok(report)
}
