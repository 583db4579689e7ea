//! `ansinh bench <suite>`: benchmarks that print ratios against a baseline measured in the same
//! run (issue 6). The harness is in `src/bench/`; BENCHMARKS.md has the figures and commands.

use super::CliResult;
use crate::bench::{self, Report};
use crate::config::Config;
use crate::outln;
use std::path::PathBuf;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Payout lines/s through decide+append+flush+apply vs raw sled writes of the same records.
    Embedded,
    /// Rebuild and audit verify events/s over a demo log vs a raw scan of the journal.
    Replay,
    /// Peak RSS of the demo month for N beneficiaries vs the same demo for 100.
    Memory,
    /// Payout lines/s through `ansinh serve` over RabbitMQ vs a minimal lapin publish-confirm /
    /// consume-ack-republish-confirm / drain of the same messages (needs the broker).
    Amqp,
    /// p50/p99/max publish-to-reply of single commands at a fixed rate through `ansinh serve` vs
    /// a minimal lapin echo (needs the broker).
    Latency,
    /// A one-off programme through `--shards` shard processes over RabbitMQ vs through one
    /// shard, back to back (needs the broker and its consistent-hash exchange plugin).
    Shards,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which suite to run.
    #[arg(value_enum)]
    pub suite: Suite,
    /// Size: payout lines / beneficiaries (embedded, amqp, memory; default 200,000, 200,000 and
    /// 1,000,000), events in the log (replay; default 1,000,000), commands (latency; default 5,000)
    /// or one-off lines (shards; default 4,000,000).
    #[arg(long)]
    pub lines: Option<u64>,
    /// Shard processes of the shards suite.
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Offered rate of the latency suite, commands per second.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Print the results as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Where to put scratch data dirs (removed afterwards). Default: the system temp dir.
    #[arg(long, value_name = "DIR")]
    pub tmp: Option<PathBuf>,
}

pub fn run(config: &Config, args: &BenchArgs) -> CliResult {
    let tmp = args.tmp.clone().unwrap_or_else(std::env::temp_dir);
    let size = |default: u64| args.lines.unwrap_or(default);
    let report: Report = match args.suite {
        Suite::Embedded => bench::embedded::run(config, size(200_000) as usize, &tmp)?,
        Suite::Replay => bench::process::replay(size(1_000_000), &tmp, config.engine.cache_capacity_mb * 1024 * 1024)?,
        Suite::Memory => bench::process::memory(size(1_000_000) as usize, &tmp)?,
        Suite::Amqp => bench::amqp::run(config, size(200_000) as usize, &tmp)?,
        Suite::Latency => bench::latency::run(config, size(5_000) as usize, args.rate, &tmp)?,
        Suite::Shards => bench::shards::run(config, args.shards, size(4_000_000) as usize, &tmp)?,
    };
    if args.json {
        outln!("{}", serde_json::to_string(&report).map_err(|e| e.to_string())?);
    } else {
        report.print();
    }
    Ok(())
}
