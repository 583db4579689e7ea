//! `ansinh audit ...` and `ansinh rebuild` (issue 4): the shell around `crate::audit`, which
//! does the work without going through the engine. Results go to stdout; progress bars (on a
//! terminal) and the events/s figure go to stderr.

use super::{bar, count, print_table, CliResult};
use crate::audit::export::ExportSummary;
use crate::audit::replay::{AsOf, Replayed};
use crate::audit::verify::{Report, VerifyOptions};
use crate::audit::{self, per_second, Source};
use crate::config::Config;
use crate::log::{Head, Log};
use crate::outln;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub what: AuditCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Write the log as JSON Lines in the audit format (events/README.md), bytes as stored.
    Export(ExportArgs),
    /// Check the hash chain, the head, the checkpoints, and the views replayed from the log.
    Verify(VerifyArgs),
    /// Show a view as it stood at a seq or a time, computed from the log alone.
    Replay(ReplayArgs),
    /// Record a checkpoint (seq, hash, time) of the current head now.
    Checkpoint,
    /// List the checkpoints recorded in the data dir.
    Checkpoints(CheckpointsArgs),
    /// Record the head of every shard of [shards] in one hashed record (the national checkpoint).
    NationalCheckpoint(NationalCheckpointArgs),
    /// Check a national checkpoint: its own hash, and that every shard's chain passes through
    /// the head it names.
    VerifyNational(VerifyNationalArgs),
}

#[derive(clap::Args, Debug)]
pub struct NationalCheckpointArgs {
    /// Write the record to FILE (written as FILE.partial, renamed when complete) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct VerifyNationalArgs {
    /// The national checkpoint record (written by `audit national-checkpoint`).
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,
    /// Verify this shard from an export file instead of its data dir (repeatable).
    #[arg(long, value_name = "NAME=EXPORT.jsonl")]
    pub export: Vec<String>,
    /// Check the chains only; do not replay the events into fresh views.
    #[arg(long)]
    pub chain_only: bool,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// First seq to export.
    #[arg(long, default_value_t = 1, value_name = "SEQ")]
    pub from: u64,
    /// Last seq to export (default: the log head).
    #[arg(long, value_name = "SEQ")]
    pub to: Option<u64>,
    /// Write to FILE (written as FILE.partial, renamed when complete) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Verify an export file instead of the data dir.
    #[arg(long, value_name = "EXPORT.jsonl")]
    pub file: Option<PathBuf>,
    /// The export starts at this seq (it was made with `export --from SEQ`); its first
    /// prev_hash is then taken on trust. Without it an export must start at seq 1.
    #[arg(long, value_name = "SEQ", requires = "file")]
    pub from: Option<u64>,
    /// A head held elsewhere (a published checkpoint): the log must pass through it. Catches an
    /// export cut short.
    #[arg(long, value_name = "SEQ:HASH")]
    pub head: Option<String>,
    /// Check the chain only; do not replay the events into fresh views.
    #[arg(long)]
    pub chain_only: bool,
    /// Verify every shard of [shards] in the config, each from its own data dir.
    #[arg(long, visible_alias = "all-shards", conflicts_with_all = ["file", "from", "head"])]
    pub shards: bool,
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// A seq (the first N events) or an RFC 3339 time (the longest prefix of events at or
    /// before it, compared as instants).
    #[arg(long, value_name = "SEQ|TIME")]
    pub as_of: String,
    /// Replay an export file instead of the data dir.
    #[arg(long, value_name = "EXPORT.jsonl")]
    pub file: Option<PathBuf>,
    /// Print the view as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub view: ReplayView,
}

#[derive(clap::Subcommand, Debug)]
pub enum ReplayView {
    /// A beneficiary by 12-digit citizen ID.
    Citizen { citizen_id: String },
    /// A payout batch.
    Batch { batch_id: String },
    /// A budget of a province, program and period.
    Budget { province: String, program: String, period: String },
}

#[derive(clap::Args, Debug)]
pub struct CheckpointsArgs {
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RebuildArgs {}

pub fn run(config: &Config, args: &AuditArgs) -> CliResult {
    match &args.what {
        AuditCommand::Export(a) => export(config, a),
        AuditCommand::Verify(a) => verify(config, a),
        AuditCommand::Replay(a) => replay(config, a),
        AuditCommand::Checkpoint => checkpoint(config),
        AuditCommand::Checkpoints(a) => checkpoints(config, a),
        AuditCommand::NationalCheckpoint(a) => super::audit_national::national_checkpoint(config, a),
        AuditCommand::VerifyNational(a) => super::audit_national::verify_national(config, a),
    }
}

pub(super) fn cache_bytes(config: &Config) -> u64 {
    config.engine.cache_capacity_mb * 1024 * 1024
}

fn open(config: &Config) -> Result<sled::Db, String> {
    audit::open_data_dir(&config.engine.data_dir, cache_bytes(config)).map_err(|e| e.to_string())
}

/// The stored head, read without trusting it (for progress bar lengths only).
pub(super) fn stored_head_seq(source: &Source) -> u64 {
    source.stored_head().ok().flatten().map_or(0, |h| h.seq)
}

pub(super) fn rate(what: &str, events: u64, elapsed: std::time::Duration) {
    eprintln!("{what} {} events in {:.1} s ({} events/s)", count(events), elapsed.as_secs_f64(), count(per_second(events, elapsed)));
}

fn export(config: &Config, args: &ExportArgs) -> CliResult {
    let db = open(config)?;
    let started = std::time::Instant::now();
    let head = stored_head_seq(&Source::data_dir(&db).map_err(|e| e.to_string())?);
    let progress = bar(args.to.unwrap_or(head).saturating_sub(args.from.max(1)) + 1, "exporting");
    let mut tick = |n: u64| progress.set_position(n);
    let summary = match &args.out {
        None => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, super::out::Stdout);
            audit::export::export(&db, args.from, args.to, &mut out, &mut tick).map_err(|e| e.to_string())?
        }
        Some(path) => export_file(path, &mut |out| audit::export::export(&db, args.from, args.to, out, &mut tick))?,
    };
    progress.finish_and_clear();
    let expected = summary.last_seq.saturating_sub(summary.first_seq) + 1;
    if summary.records > 0 && summary.records != expected {
        eprintln!(
            "warning: {} records written for seq {}..{}: some are missing from the journal; run `ansinh audit verify`",
            count(summary.records),
            summary.first_seq,
            summary.last_seq
        );
    }
    if let Some(path) = &args.out {
        eprintln!("wrote seq {}..{} to {}", summary.first_seq, summary.last_seq, path.display());
    }
    rate("exported", summary.records, started.elapsed());
    Ok(())
}

/// Writes through `write` to `path` + `.partial`, synced, then renamed to `path`: an
/// interrupted export never leaves a short file under the name asked for.
fn export_file(path: &Path, write: &mut dyn FnMut(&mut dyn Write) -> Result<ExportSummary, audit::AuditError>) -> Result<ExportSummary, String> {
    let partial = partial_path(path);
    let file = std::fs::File::create(&partial).map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let summary = write(&mut out).map_err(|e| e.to_string())?;
    out.into_inner().map_err(|e| e.into_error()).and_then(|f| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, path).map_err(|e| format!("cannot rename {} to {}: {e}", partial.display(), path.display()))?;
    Ok(summary)
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    path.with_file_name(name)
}

fn parse_head(raw: &str) -> Result<Head, String> {
    let bad = || format!("--head {raw:?}: expected SEQ:HASH, e.g. 1200:{}", "ab".repeat(32));
    let (seq, hash) = raw.split_once(':').ok_or_else(bad)?;
    let seq: u64 = seq.parse().map_err(|_| bad())?;
    if seq == 0 || hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad());
    }
    Ok(Head { seq, hash: hash.to_string() })
}

fn verify(config: &Config, args: &VerifyArgs) -> CliResult {
    if args.shards {
        return super::audit_national::verify_shards(config, !args.chain_only);
    }
    let options = VerifyOptions {
        from: args.from.unwrap_or(1),
        expected_head: args.head.as_deref().map(parse_head).transpose()?,
        views: !args.chain_only,
        cache_capacity_bytes: cache_bytes(config),
    };
    let db;
    let source = match &args.file {
        Some(path) => Source::file(path),
        None => {
            db = open(config)?;
            Source::data_dir(&db).map_err(|e| e.to_string())?
        }
    };
    let what = match &args.file {
        Some(p) => format!("export {}", p.display()),
        None => format!("data dir {}", config.engine.data_dir.display()),
    };
    outln!("Verifying {what}");
    let started = std::time::Instant::now();
    let progress = bar(stored_head_seq(&source), "verifying");
    let report = audit::verify::verify(&source, &options, &mut |n| progress.set_position(n)).map_err(|e| e.to_string());
    progress.finish_and_clear();
    let report = report?;
    print_report(&report);
    rate("verified", report.records, started.elapsed());
    match &report.failure {
        None => Ok(()),
        Some(f) => Err(match f.seq {
            Some(seq) => format!(
                "verification failed at seq {seq}; records before it are intact. Keep this data dir as evidence, restore the log from a backup or an export you verified, and verify again"
            ),
            None => "verification failed (see above)".to_string(),
        }),
    }
}

pub(super) fn print_report(report: &Report) {
    for line in &report.checks {
        outln!("  {line}");
    }
    match (&report.failure, &report.head) {
        (None, Some(head)) => {
            outln!("head  seq {}  hash {}", head.seq, head.hash);
            outln!("OK");
        }
        (None, None) => outln!("OK"),
        (Some(f), last) => {
            if let Some(h) = last {
                outln!("  last good record: seq {}  hash {}", h.seq, h.hash);
            }
            match f.seq {
                Some(seq) => outln!("FAILED at seq {seq}: {}", f.what),
                None => outln!("FAILED: {}", f.what),
            }
        }
    }
}

fn replay(config: &Config, args: &ReplayArgs) -> CliResult {
    let as_of = AsOf::parse(&args.as_of)?;
    if let ReplayView::Citizen { citizen_id } = &args.view {
        crate::domain::CitizenId::parse(citizen_id).map_err(|e| format!("{citizen_id:?} is not a citizen ID: {e}"))?;
    }
    let db;
    let source = match &args.file {
        Some(path) => Source::file(path),
        None => {
            db = open(config)?;
            Source::data_dir(&db).map_err(|e| e.to_string())?
        }
    };
    let started = std::time::Instant::now();
    let length = match as_of {
        AsOf::Seq(n) => n,
        AsOf::Time { .. } => stored_head_seq(&source),
    };
    let progress = bar(length, "replaying");
    let replayed = audit::replay::replay(&source, &as_of, cache_bytes(config), &mut |n| progress.set_position(n)).map_err(|e| e.to_string());
    progress.finish_and_clear();
    let Replayed { views, seq, hash, next } = replayed?;
    let header = match &as_of {
        AsOf::Seq(_) => format!("As of seq {seq} (hash {hash}), computed from the log alone"),
        AsOf::Time { raw, .. } => {
            let cut = match &next {
                Some((n, at)) => format!("; seq {n} is the first event after it (at {at})"),
                None => "; no later event in the log".into(),
            };
            format!("As of {raw}: events 1..{seq} (hash {hash}){cut}; computed from the log alone")
        }
    };
    if args.json {
        eprintln!("{header}");
    } else {
        outln!("{header}\n");
    }
    let mut views = views;
    let reader = views.reader().map_err(|e| e.to_string())?;
    let shown = match &args.view {
        ReplayView::Citizen { citizen_id } => super::show::citizen(&reader, citizen_id, args.json),
        ReplayView::Batch { batch_id } => super::show::batch(&reader, batch_id, false, 0, 50, args.json),
        ReplayView::Budget { province, program, period } => super::show::budget(&reader, province, program, period, args.json),
    };
    rate("replayed", seq, started.elapsed());
    shown.map_err(|e| format!("{e} as of seq {seq}"))
}

fn checkpoint(config: &Config) -> CliResult {
    let db = open(config)?;
    let log = Log::open(&db).map_err(|e| format!("{e}; run `ansinh audit verify` to see what is wrong"))?;
    if log.head().seq == 0 {
        return Err("the log is empty: nothing to checkpoint".into());
    }
    let (c, new) = audit::checkpoint::record(&db, log.head()).map_err(|e| e.to_string())?;
    db.flush().map_err(|e| e.to_string())?;
    let note = if new { "recorded" } else { "already recorded" };
    outln!("checkpoint {note}: seq {}  hash {}  at {}", c.seq, c.hash, c.recorded_at);
    outln!("keep it outside this machine; later: ansinh audit verify --head {}", c.as_head_arg());
    Ok(())
}

fn checkpoints(config: &Config, args: &CheckpointsArgs) -> CliResult {
    let db = open(config)?;
    let list = audit::checkpoints_since(&db, 0).map_err(|e| e.to_string())?;
    if args.json {
        let mut out = super::out::Stdout;
        for c in &list {
            let line = serde_json::to_string(c).map_err(|e| e.to_string())?;
            writeln!(out, "{line}").map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    if list.is_empty() {
        outln!("no checkpoints yet (one is recorded every engine.checkpoint_every_events events, or by `ansinh audit checkpoint`)");
        return Ok(());
    }
    print_table(&["seq", "hash", "recorded at"], &list.iter().map(|c| vec![c.seq.to_string(), c.hash.clone(), c.recorded_at.clone()]).collect::<Vec<_>>());
    Ok(())
}

pub fn rebuild(config: &Config, _args: &RebuildArgs) -> CliResult {
    let db = open(config)?;
    let head = Log::open(&db).map_err(|e| format!("{e}; run `ansinh audit verify` before rebuilding"))?.head().seq;
    let progress = bar(head, "rebuilding");
    let summary = audit::rebuild(&db, &mut |n| progress.set_position(n)).map_err(|e| e.to_string());
    progress.finish_and_clear();
    let summary = summary?;
    outln!("rebuilt every view from the log: {} events replayed, views at seq {head}", count(summary.events));
    rate("rebuilt", summary.events, summary.elapsed);
    Ok(())
}
