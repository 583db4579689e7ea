//! `ansinh demo-files --out DIR`: the demo's month as command files, for sending over RabbitMQ
//! with `ansinh publish` (each file under the user whose role may send it):
//! `rules.jsonl` (admin: program, standard levels, budget), `enroll.jsonl` and `batch.jsonl`
//! (agency: enrollments, the month's payout batches). Same seed, same commands, same ids.

use super::demo::PROGRAM_ID;
use super::demo_data;
use super::CliResult;
use crate::command::*;
use crate::domain::program::DECREE_20_CATEGORIES;
use crate::domain::{Coefficient, Period, ProgramRules, Vnd};
use crate::outln;
use rust_decimal::Decimal;
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DemoFilesArgs {
    /// Directory to write rules.jsonl, enroll.jsonl and batch.jsonl into.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 20_000)]
    pub beneficiaries: usize,
    #[arg(long, default_value = "2025-01")]
    pub period: String,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value = "056")]
    pub province: String,
    /// Lines per payout batch.
    #[arg(long, default_value_t = 10_000)]
    pub batch_lines: usize,
}

fn envelope(id: String, issued_at: &str, command: Command) -> CommandEnvelope {
    CommandEnvelope { command_id: id, v: 1, issued_at: issued_at.into(), sender: None, command }
}

fn write(path: &PathBuf, envelopes: &[CommandEnvelope]) -> Result<(), String> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?);
    for e in envelopes {
        serde_json::to_writer(&mut f, e).map_err(|e| e.to_string())?;
        f.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    f.flush().map_err(|e| format!("{}: {e}", path.display()))
}

pub fn run(args: &DemoFilesArgs) -> CliResult {
    let period = Period::parse(&args.period).map_err(|e| e.to_string())?;
    if args.beneficiaries == 0 || args.batch_lines == 0 {
        return Err("--beneficiaries and --batch-lines must be positive".into());
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let mut rules = ProgramRules::default();
    for (code, coefficient, _) in DECREE_20_CATEGORIES {
        rules.categories.insert(code.to_string(), Coefficient::parse(coefficient).expect("the Decree 20 table is valid"));
    }
    let level = |raw: &str| Vnd::parse(raw).expect("levels are valid");
    rules.national_levels.insert(Period::parse("2021-07").expect("valid"), level("360000"));
    rules.national_levels.insert(Period::parse("2024-07").expect("valid"), level("500000"));
    let people = demo_data::beneficiaries(args.seed, args.beneficiaries, &args.province, PROGRAM_ID);
    let mut lines = Vec::new();
    for b in &people {
        let e = &b.enroll;
        let from = Period::parse(&e.effective_from).expect("generated months are valid");
        if from <= period {
            if let Some(amount) = rules.entitlement(&e.category, &args.province, period) {
                lines.push(PayoutLine { citizen_id: e.citizen_id.clone(), amount: amount.to_string() });
            }
        }
    }
    let total: Decimal = lines.iter().map(|l| l.amount.parse::<Decimal>().expect("amounts are digits")).sum();
    let prefix = format!("files-s{}-{}-{period}", args.seed, args.province);
    let mut rules_cmds: Vec<_> = demo_data::program_rules(PROGRAM_ID).into_iter().map(|(id, at, command)| envelope(id, at, command)).collect();
    rules_cmds.push(envelope(
        format!("{prefix}-fund"),
        "2024-12-20T02:00:00Z",
        Command::FundBudget(FundBudget {
            province: args.province.clone(),
            program_id: PROGRAM_ID.into(),
            period: period.to_string(),
            amount: total.max(Decimal::ONE).to_string(),
            reference: format!("KBNN allocation {period}"),
        }),
    ));
    let enroll: Vec<_> = people
        .iter()
        .enumerate()
        .map(|(i, b)| envelope(format!("{prefix}-enroll-{i:07}"), "2024-12-20T02:00:00Z", Command::EnrollBeneficiary(b.enroll.clone())))
        .collect();
    let batches: Vec<_> = lines
        .chunks(args.batch_lines)
        .enumerate()
        .map(|(k, chunk)| {
            let batch_id = format!("{prefix}-{:03}", k + 1);
            envelope(
                format!("{batch_id}-submit"),
                "2024-12-24T02:00:00Z",
                Command::SubmitPayoutBatch(SubmitPayoutBatch {
                    batch_id,
                    program_id: PROGRAM_ID.into(),
                    province: args.province.clone(),
                    period: period.to_string(),
                    lines: chunk.to_vec(),
                }),
            )
        })
        .collect();
    write(&args.out.join("rules.jsonl"), &rules_cmds)?;
    write(&args.out.join("enroll.jsonl"), &enroll)?;
    write(&args.out.join("batch.jsonl"), &batches)?;
    outln!(
        "wrote {}: rules.jsonl ({} commands, for an admin user), enroll.jsonl ({}), batch.jsonl ({} batches, {} lines, {} VND) for an agency user",
        args.out.display(),
        rules_cmds.len(),
        enroll.len(),
        batches.len(),
        lines.len(),
        super::vnd(total)
    );
    Ok(())
}
