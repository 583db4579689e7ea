//! `embedded`: payout lines per second through the engine (decide + seal, one atomic append,
//! one flush and fsync per group, views), for a month of N beneficiaries, one batch command of
//! 10,000 lines per group as `ansinh demo` sends them, the next group decided while the previous
//! one is written (`Engine::execute_pipelined`). Two baselines, in the same run, on the very
//! bytes the engine stored, in the same groups:
//! - raw sled: the engine's journal segments (same keys, same values) inserted into a fresh
//!   database with the engine's sled settings, one flush and one fsync per group;
//! - a plain file: the records appended, one write and one `fdatasync` per group (the disk's
//!   limit for this log, the physical baseline).
//!
//! The month is streamed: beneficiaries are generated one group at a time and the payout lines
//! kept as (citizen ID, amount) numbers, so the process's peak memory is the engine's.

use super::{dir_bytes, Report, Scratch};
use crate::cli::demo_data;
use crate::command::*;
use crate::config::Config;
use crate::domain::Period;
use crate::engine::Engine;
use crate::log::segment::{self, SealedRecord};
use std::io::Write;
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
    accepted(&out)
}

fn accepted(out: &[crate::outcome::Outcome]) -> Result<(), String> {
    if let Some(o) = out.iter().find(|o| o.status != crate::outcome::OutcomeStatus::Accepted) {
        return Err(format!("set-up command {} refused: {:?} {:?}", o.command_id, o.code, o.message));
    }
    Ok(())
}

/// A month ready to pay: program rules, `people` beneficiaries enrolled and the budget funded,
/// all decided by the engine over its data dir; `lines` are the payout lines of the period for
/// the beneficiaries active in it (one each, at their entitlement), as (citizen ID, amount).
pub struct Month {
    pub engine: Engine,
    pub people: usize,
    pub period: Period,
    pub lines: Vec<(u64, u64)>,
}

impl Month {
    /// Enrolls `people` synthetic beneficiaries (seed 7, province 056) and funds exactly the
    /// month's payouts, in groups of `engine.group_commands_max` decided ahead of their
    /// storage, in a fresh engine over `data_dir`. Not timed by any suite; progress on stderr.
    pub fn prepare(config: &Config, data_dir: &Path, people: usize) -> Result<Month, String> {
        let period = Period::parse("2025-01").map_err(|e| e.to_string())?;
        let mut options = config.engine_options();
        options.data_dir = data_dir.to_path_buf();
        let mut engine = Engine::open(&options, &mut |_, _| {}).map_err(|e| e.to_string())?;
        let group_max = config.engine.group_commands_max.max(1);

        let rules: Vec<_> = demo_data::program_rules(PROGRAM).into_iter().map(|(id, at, c)| envelope(id, at, c)).collect();
        execute(&mut engine, &rules)?;
        let mut beneficiaries = demo_data::Beneficiaries::new(7, PROVINCE, PROGRAM).take(people).enumerate().peekable();
        let groups = std::iter::from_fn(|| {
            beneficiaries.peek()?;
            let group: Vec<CommandEnvelope> = beneficiaries
                .by_ref()
                .take(group_max)
                .map(|(i, b)| envelope(format!("bench-enroll-{i}"), "2024-12-20T02:00:00Z", Command::EnrollBeneficiary(b.enroll)))
                .collect();
            Some((group, ()))
        });
        let mut refused: Option<String> = None;
        let mut enrolled = 0usize;
        let started = Instant::now();
        engine
            .execute_pipelined(groups, |(), result| match result.map_err(|e| e.to_string()).and_then(|(out, _)| accepted(&out).map(|()| out.len())) {
                Ok(n) => {
                    enrolled += n;
                    if enrolled % 500_000 < n {
                        eprintln!("bench embedded: {enrolled} of {people} beneficiaries enrolled ({:.0} s)", started.elapsed().as_secs_f64());
                    }
                }
                Err(e) => refused = refused.take().or(Some(e)),
            })
            .map_err(|e| e.to_string())?;
        if let Some(e) = refused {
            return Err(e);
        }
        let state = engine.state();
        let mut lines = Vec::with_capacity(people);
        for person in state.people().iter() {
            let cid = crate::core::handles::cid_of(person.cid);
            if let Some((_, amount)) = state.entitlement(&cid, PROGRAM, period) {
                lines.push((person.cid, amount.to_u64()));
            }
        }
        let total: u128 = lines.iter().map(|(_, a)| u128::from(*a)).sum();
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
    /// (as `ansinh demo` sends them), in order, built as they are taken.
    pub fn batches(&self) -> impl Iterator<Item = CommandEnvelope> + '_ {
        self.lines.chunks(BATCH_LINES).enumerate().map(|(k, chunk)| batch_envelope(k, self.period, chunk))
    }
}

fn batch_envelope(k: usize, period: Period, chunk: &[(u64, u64)]) -> CommandEnvelope {
    let lines = chunk.iter().map(|(cid, amount)| PayoutLine { citizen_id: format!("{cid:012}"), amount: amount.to_string() }).collect();
    let batch =
        SubmitPayoutBatch { batch_id: format!("BENCH-{k:04}"), program_id: PROGRAM.into(), province: PROVINCE.into(), period: period.to_string(), lines };
    envelope(format!("bench-batch-{k}"), "2024-12-24T02:00:00Z", Command::SubmitPayoutBatch(batch))
}

/// Peak resident set of this process so far (VmHWM), bytes.
fn own_peak_rss() -> Option<u64> {
    super::process::vm_hwm(std::process::id())
}

/// Runs the suite for `lines` beneficiaries (one payout line each) in a scratch dir under `tmp`.
pub fn run(config: &Config, lines: usize, tmp: &Path) -> Result<Report, String> {
    let scratch = Scratch::new(tmp, "embedded")?;
    let data_dir = scratch.path().join("engine");
    // Set-up, not timed: rules, enrollments, the budget.
    let setup = Instant::now();
    let month = Month::prepare(config, &data_dir, lines)?;
    let setup_secs = setup.elapsed().as_secs_f64();
    let Month { mut engine, people, period, lines: payout_lines } = month;
    eprintln!("bench embedded: set-up done in {setup_secs:.0} s; paying {} lines", payout_lines.len());

    // Timed: one payout batch command of BATCH_LINES lines per group, as the demo sends them,
    // each group decided while the one before it is stored.
    let first_seq = engine.head().seq + 1;
    let mut groups: Vec<(u64, u64)> = Vec::new(); // (first seq, last seq) of each stored group
    let mut stages = [Duration::ZERO; 4];
    let mut failure: Option<String> = None;
    let mut next_first = first_seq;
    let batches = payout_lines.chunks(BATCH_LINES).enumerate().map(|(k, chunk)| (vec![batch_envelope(k, period, chunk)], (k, chunk.len())));
    let started = Instant::now();
    engine
        .execute_pipelined(batches, |(k, n), result| match result {
            Ok((out, g)) => {
                let instructed = out[0].count_lines("instructed");
                if instructed != n {
                    failure = failure.take().or(Some(format!("batch {k}: {instructed} of {n} lines instructed")));
                }
                for (s, d) in stages.iter_mut().zip([g.decide, g.append, g.flush, g.apply]) {
                    *s += d;
                }
                groups.push((next_first, next_first + g.events as u64 - 1));
                next_first += g.events as u64;
            }
            Err(e) => failure = failure.take().or(Some(e)),
        })
        .map_err(|e| e.to_string())?;
    let wall = started.elapsed();
    if let Some(f) = failure {
        return Err(f);
    }
    let last_seq = engine.head().seq;
    if next_first != last_seq + 1 {
        return Err(format!("the groups hold seqs {first_seq}..{} but the log ends at {last_seq}", next_first - 1));
    }
    let engine_bytes = dir_bytes(&data_dir);
    let peak_after_engine = own_peak_rss();
    // The engine (its decision state) is closed before the baselines; its records are read
    // back through sled alone.
    drop(engine);
    let engine_db = crate::audit::open_data_dir(&data_dir, config.engine_options().cache_capacity_bytes).map_err(|e| e.to_string())?;
    let engine_log = crate::log::Log::open(&engine_db).map_err(|e| e.to_string())?.reader();

    // Baselines, one group at a time: its records read back from the engine's log (untimed),
    // then written the baseline's way (timed).
    let raw_dir = scratch.path().join("raw");
    let db = crate::engine::sled_config(&raw_dir, config.engine_options().cache_capacity_bytes).open().map_err(|e| e.to_string())?;
    let tree = db.open_tree("journal").map_err(|e| e.to_string())?;
    let raw_data_file = std::fs::File::open(raw_dir.join("db")).map_err(|e| e.to_string())?;
    let mut file = std::fs::File::create(scratch.path().join("records.log")).map_err(|e| e.to_string())?;
    let (mut raw, mut plain) = (Duration::ZERO, Duration::ZERO);
    let (mut records, mut bytes) = (0usize, 0usize);
    for &(first, last) in &groups {
        let group: Vec<SealedRecord> = engine_log
            .range_with_meta(first, last)
            .map(|r| r.map(|(seq, b, meta)| SealedRecord { seq, bytes: b.to_vec(), meta }))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        records += group.len();
        bytes += group.iter().map(|r| r.bytes.len()).sum::<usize>();

        let t = Instant::now();
        let mut batch = sled::Batch::default();
        for (key, value) in segment::pack(&group) {
            batch.insert(&key, value);
        }
        tree.apply_batch(batch).map_err(|e| e.to_string())?;
        db.flush().map_err(|e| e.to_string())?;
        raw_data_file.sync_all().map_err(|e| e.to_string())?;
        raw += t.elapsed();

        let mut buf = Vec::with_capacity(group.iter().map(|r| r.bytes.len() + 1).sum());
        for r in &group {
            buf.extend_from_slice(&r.bytes);
            buf.push(b'\n');
        }
        let t = Instant::now();
        file.write_all(&buf).map_err(|e| e.to_string())?;
        file.sync_data().map_err(|e| e.to_string())?;
        plain += t.elapsed();
    }
    drop(db);
    drop(engine_log);
    drop(engine_db);
    if records as u64 != last_seq - first_seq + 1 {
        return Err(format!("{records} records read back, {} appended", last_seq - first_seq + 1));
    }

    let n = payout_lines.len() as f64;
    let mut report = Report::new("embedded", payout_lines.len() as u64);
    report.figure("engine payout lines/s", n / wall.as_secs_f64(), "lines/s");
    report.figure("engine events/s", records as f64 / wall.as_secs_f64(), "events/s");
    report.figure("baseline raw sled records/s", records as f64 / raw.as_secs_f64(), "records/s");
    report.figure("baseline plain file records/s", records as f64 / plain.as_secs_f64(), "records/s");
    report.figure("engine seconds", wall.as_secs_f64(), "s");
    report.figure("baseline raw sled seconds", raw.as_secs_f64(), "s");
    report.figure("baseline plain file seconds", plain.as_secs_f64(), "s");
    for (name, d) in ["decide+seal", "batch write", "flush+fsync", "views"].iter().zip(stages) {
        report.figure(&format!("engine stage {name}"), d.as_secs_f64(), "s");
    }
    report.figure("records", records as f64, "records");
    report.figure("mean record size", bytes as f64 / records.max(1) as f64, "bytes");
    report.figure("groups", groups.len() as f64, "groups");
    report.figure("engine data dir", engine_bytes as f64, "bytes");
    report.figure("set-up seconds (untimed)", setup_secs, "s");
    if let Some(peak) = peak_after_engine {
        report.figure("peak RSS of this process through the engine run", peak as f64, "bytes");
    }
    if let Some(peak) = own_peak_rss() {
        report.figure("peak RSS of this process, baselines included", peak as f64, "bytes");
    }
    report.ratio("engine/raw sled", raw.as_secs_f64() / wall.as_secs_f64(), "the engine's share of what sled alone does with its bytes");
    report.ratio("engine/plain file", plain.as_secs_f64() / wall.as_secs_f64(), "the engine's share of the disk's limit (long-run goal 0.5)");
    report.note(format!(
        "{people} beneficiaries enrolled and funded untimed; timed: {} payout batches of up to {BATCH_LINES} lines, one command per group, the next group decided while the previous one is stored",
        groups.len()
    ));
    report.note(
        "baselines write the engine's own records in the same groups: raw sled the same journal segments (keys and values) with one flush and fsync per group; the plain file the record bytes with one write and fdatasync per group; neither writes a command index, head, or views",
    );
    if let Some(load) = super::load_average() {
        report.note(format!("1-minute load average at the end: {load:.2}"));
    }
    Ok(report)
}
