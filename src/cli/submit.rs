//! `ansinh submit FILE`: JSON Lines command envelopes, or a CSV payout list. One outcome per
//! command (per line for a batch). Re-running the same file changes nothing: every command is
//! answered from the command index.

use super::{open_engine, CliResult};
use crate::command::{Command, CommandEnvelope};
use crate::config::Config;
use crate::domain::{valid_identifier, IDENTIFIER_LEN_MAX};
use crate::engine::COMMAND_ID_LEN_MAX;
use crate::intake::{decode_command, payout_batch_from_csv};
use crate::outcome::{Outcome, OutcomeStatus};
use crate::outln;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SubmitArgs {
    /// A .jsonl file (one command envelope per line) or a .csv payout list.
    pub file: PathBuf,
    /// Print outcomes as JSON Lines instead of text.
    #[arg(long)]
    pub json: bool,
    /// CSV only: the batch id of the list.
    #[arg(long)]
    pub batch_id: Option<String>,
    /// CSV only: program id.
    #[arg(long)]
    pub program: Option<String>,
    /// CSV: administering province code. `publish` to shards: also the province whose shard
    /// gets the commands that name none (a citizen's change, a settlement report).
    #[arg(long)]
    pub province: Option<String>,
    /// CSV only: benefit period YYYY-MM.
    #[arg(long)]
    pub period: Option<String>,
    /// CSV only: command id (default `csv-<batch id>`); re-sending the same list with the same id changes nothing.
    #[arg(long)]
    pub command_id: Option<String>,
}

/// Commands read from a submit/publish input file, with the file line each came from.
pub(crate) struct Input {
    pub envelopes: Vec<(usize, CommandEnvelope)>,
    /// Lines that were not commands (already reported).
    pub invalid: usize,
    pub is_csv: bool,
}

/// Reads a JSON Lines file of envelopes (reporting lines that are not commands) or a CSV
/// payout list (one batch command, sent as `sender`).
pub(crate) fn read_input(args: &SubmitArgs, sender: Option<&str>) -> Result<Input, String> {
    let is_csv = args.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let file = std::fs::File::open(&args.file).map_err(|e| format!("cannot open {}: {e}", args.file.display()))?;
    let mut envelopes: Vec<(usize, CommandEnvelope)> = Vec::new();
    let mut invalid = 0usize;
    if is_csv {
        let need = |v: &Option<String>, flag: &str| v.clone().ok_or_else(|| format!("a CSV payout list needs --{flag}"));
        let (batch_id, program, province, period) =
            (need(&args.batch_id, "batch-id")?, need(&args.program, "program")?, need(&args.province, "province")?, need(&args.period, "period")?);
        // The default command id is built from the batch id: check each flag first, so a bad
        // one is named as itself, not as an invalid command id.
        check_flags(&batch_id, args.command_id.as_deref())?;
        let batch = payout_batch_from_csv(file, &batch_id, &program, &province, &period).map_err(|e| format!("{}: {e}", args.file.display()))?;
        let command_id = args.command_id.clone().unwrap_or_else(|| format!("csv-{batch_id}"));
        envelopes.push((
            1,
            CommandEnvelope {
                command_id,
                v: 1,
                issued_at: crate::timefmt::now_rfc3339(),
                sender: sender.map(String::from),
                command: Command::SubmitPayoutBatch(batch),
            },
        ));
    } else {
        for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
            let line = line.map_err(|e| format!("reading {}: {e}", args.file.display()))?;
            let line_no = i + 1;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match decode_command(&line) {
                Ok(env) => envelopes.push((line_no, env)),
                Err(e) => {
                    invalid += 1;
                    if args.json {
                        outln!("{}", serde_json::json!({"line": line_no, "status": "invalid", "code": e.reason(), "message": e.to_string()}));
                    } else {
                        outln!("line {line_no:>6}  invalid    {}: {}", e.reason(), super::shown(&e.to_string()));
                    }
                }
            }
        }
    }
    Ok(Input { envelopes, invalid, is_csv })
}

/// The identifiers a CSV submission takes from flags, each checked with its own reason code.
fn check_flags(batch_id: &str, command_id: Option<&str>) -> Result<(), String> {
    let shown = |raw: &str| raw.chars().take(80).collect::<String>();
    if !valid_identifier(batch_id, IDENTIFIER_LEN_MAX) {
        return Err(format!("--batch-id {:?}: batch_id_invalid: a batch id is 1-{IDENTIFIER_LEN_MAX} characters of [A-Za-z0-9._:-]", shown(batch_id)));
    }
    if let Some(id) = command_id.filter(|id| !valid_identifier(id, COMMAND_ID_LEN_MAX)) {
        return Err(format!("--command-id {:?}: envelope_invalid: a command id is 1-{COMMAND_ID_LEN_MAX} characters of [A-Za-z0-9._:-]", shown(id)));
    }
    Ok(())
}

pub fn run(config: &Config, args: &SubmitArgs) -> CliResult {
    let Input { envelopes, invalid, is_csv } = read_input(args, Some(crate::engine::FILE_SENDER))?;
    let mut engine = open_engine(&config.engine_options())?;
    let head_before = engine.head().seq;
    let mut totals = [0usize; 4]; // accepted, rejected, duplicate, envelope-invalid
    for group in envelopes.chunks(config.engine.group_commands_max) {
        // The embedded intake authenticates nobody: whatever sender a file line claims, the log
        // records `file` (DESIGN.md "Who did what").
        let commands: Vec<CommandEnvelope> =
            group.iter().map(|(_, e)| CommandEnvelope { sender: Some(crate::engine::FILE_SENDER.into()), ..e.clone() }).collect();
        let outcomes = engine.execute(&commands).map_err(|e| e.to_string())?;
        for ((line_no, _), outcome) in group.iter().zip(&outcomes) {
            match (outcome.duplicate, outcome.status) {
                (true, _) => totals[2] += 1,
                (false, OutcomeStatus::Accepted) => totals[0] += 1,
                (false, OutcomeStatus::Rejected) => totals[1] += 1,
                (false, OutcomeStatus::Invalid) => totals[3] += 1,
            }
            print_outcome(*line_no, outcome, args.json, is_csv);
        }
    }
    engine.flush().map_err(|e| e.to_string())?;
    let head = engine.head();
    if !args.json {
        outln!(
            "\n{} commands: {} accepted, {} rejected, {} already applied (nothing written), {} invalid; {} events written, log head seq {} hash {}",
            envelopes.len() + invalid,
            totals[0],
            totals[1],
            totals[2],
            totals[3] + invalid,
            head.seq - head_before,
            head.seq,
            head.hash
        );
    }
    Ok(())
}

pub(crate) fn print_outcome(line_no: usize, o: &Outcome, json: bool, csv: bool) {
    if json {
        outln!("{}", serde_json::to_string(&serde_json::json!({"line": line_no, "outcome": o})).expect("outcomes serialize"));
        return;
    }
    let status = match (o.duplicate, o.status) {
        (true, OutcomeStatus::Accepted) => "duplicate (accepted earlier; nothing written)",
        (true, _) => "duplicate (rejected earlier; nothing written)",
        (false, OutcomeStatus::Accepted) => "accepted",
        (false, OutcomeStatus::Rejected) => "rejected",
        (false, OutcomeStatus::Invalid) => "invalid",
    };
    let seqs = o.seqs.map(|[a, b]| format!(" seq {a}..{b}")).unwrap_or_default();
    let why = match (&o.code, &o.message) {
        (Some(c), Some(m)) => format!("  {c}: {m}"),
        _ => String::new(),
    };
    // The command id of poison and a decode error's message quote the sender's bytes.
    outln!("line {line_no:>6}  {:<24} {:<22} {status}{seqs}{}", super::shown(&o.command_id), o.command_type, super::shown(&why));
    if !o.lines.is_empty() {
        let rejected = o.count_lines("rejected");
        outln!("              {} lines: {} ok, {} rejected", o.lines.len(), o.lines.len() - rejected, rejected);
        for l in &o.lines {
            // A CSV list gets a full per-line report (row = line + 1 for the header); JSON Lines batches list their refused lines.
            if csv || l.status == "rejected" {
                let row = if csv { format!("row {:>6}", l.line_no + 1) } else { format!("line {:>5}", l.line_no) };
                let detail = match (&l.payout_id, &l.code) {
                    (_, Some(code)) => format!("{code}: {}", l.message.as_deref().unwrap_or("")),
                    (Some(p), None) => p.clone(),
                    _ => String::new(),
                };
                outln!("              {row}  {:<10} {}", l.status, super::shown(&detail));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: PathBuf, batch_id: &str, command_id: Option<&str>) -> SubmitArgs {
        SubmitArgs {
            file,
            json: false,
            batch_id: Some(batch_id.into()),
            program: Some("social-allowance".into()),
            province: Some("056".into()),
            period: Some("2025-01".into()),
            command_id: command_id.map(String::from),
        }
    }

    /// Issue 16: a bad --batch-id was reported as an invalid command id (the default one is
    /// `csv-<batch id>`). Each flag is named as itself, with its reason code.
    #[test]
    fn a_bad_batch_id_or_command_id_flag_is_named_before_the_envelope_is_built() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("list.csv");
        std::fs::write(&file, "citizen_id,amount\n056185000123,750000\n").expect("written");
        for bad in ["KH 2025", "", "KH/2025", "Khánh-Hòa", &"B".repeat(65)] {
            let err = read_input(&args(file.clone(), bad, None), None).err().expect("refused");
            assert!(err.starts_with("--batch-id") && err.contains("batch_id_invalid"), "{bad:?}: {err}");
        }
        let err = read_input(&args(file.clone(), "KH-2025-01", Some("id with space")), None).err().expect("refused");
        assert!(err.starts_with("--command-id") && err.contains("envelope_invalid"), "{err}");
        let input = read_input(&args(file.clone(), &"B".repeat(64), None), None).expect("a 64-character batch id is fine");
        assert_eq!(input.envelopes[0].1.command_id, format!("csv-{}", "B".repeat(64)));
    }

    /// A JSON Lines file goes through the same decoder as AMQP: a repeated key is not a command.
    #[test]
    fn a_line_with_a_repeated_key_is_not_a_command() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("commands.jsonl");
        let line = |amounts: &str| {
            format!(
                r#"{{"command_id":"c-{}","type":"fund_budget","issued_at":"2025-01-20T08:00:00Z","payload":{{"province":"056","program_id":"p","period":"2025-01",{amounts}}}}}"#,
                amounts.len()
            )
        };
        let text = format!("{}\n{}\n", line(r#""amount":"750000""#), line(r#""amount":"1","amount":"750000""#));
        std::fs::write(&file, text).expect("written");
        let input =
            read_input(&SubmitArgs { file, json: true, batch_id: None, program: None, province: None, period: None, command_id: None }, None).expect("read");
        assert_eq!((input.envelopes.len(), input.invalid), (1, 1));
        assert_eq!(input.envelopes[0].0, 1, "only line 1 is a command");
    }
}
