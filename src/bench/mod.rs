//! The benchmark harness behind `ansinh bench <suite>` (issue 6). Every suite measures the
//! engine and a baseline in the same run, on the same data sizes, and reports the ratio: the
//! machine is shared and noisy, so only ratios are comparable between runs.
//!
//! - `embedded`: payout lines through decide + append + flush + apply vs raw sled writes of
//!   the same records in the same groups with one flush each.
//! - `replay`: `ansinh rebuild` and `ansinh audit verify` (child processes) vs a raw scan of
//!   the same journal.
//! - `memory`: peak RSS (VmHWM) of `ansinh demo` for N beneficiaries vs the same demo for a
//!   handful of beneficiaries (the fixed cost).
//! - `amqp`: payout lines/s through `ansinh serve` (child) over RabbitMQ, from the agency's first
//!   publish to every batch answered and every instruction published with confirms, vs a
//!   minimal lapin program moving the same messages (publish with confirms to a durable queue,
//!   consume with acks, republish with confirms, drain).
//! - `latency`: p50/p99/max publish-to-reply of single commands at a fixed offered rate through
//!   `ansinh serve` vs a minimal lapin echo at the same rate (ratios: lower is better).
//!
//! - `shards`: a national one-off programme through K `ansinh serve --shard` children over
//!   RabbitMQ (consistent-hash routing by partition) vs the same programme through one shard,
//!   back to back; aggregate lines/s and per-shard peak RSS.
//!
//! `amqp`, `latency` and `shards` need the broker (`broker.rs`) and fail, saying how to start it, when it
//! is not there.

pub mod amqp;
pub mod broker;
pub mod embedded;
pub mod latency;
pub mod oneoff_data;
pub mod process;
pub mod shards;

use crate::outln;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One measured figure.
#[derive(Clone, Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    pub unit: String,
}

/// What a suite measured: its figures, the ratios against its baseline, and the notes that
/// say what each figure covers.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub suite: String,
    /// The size the suite ran at (payout lines, events, beneficiaries or commands).
    pub size: u64,
    pub figures: Vec<Figure>,
    /// name -> engine against baseline; the unit field says the target or the direction
    /// (throughput ratios: higher is closer to the baseline; latency ratios: lower is).
    pub ratios: Vec<Figure>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(suite: &str, size: u64) -> Report {
        Report { suite: suite.into(), size, ..Report::default() }
    }

    pub fn figure(&mut self, name: &str, value: f64, unit: &str) {
        self.figures.push(Figure { name: name.into(), value, unit: unit.into() });
    }

    pub fn ratio(&mut self, name: &str, value: f64, target: &str) {
        self.ratios.push(Figure { name: name.into(), value, unit: target.into() });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// The figure called `name`, if measured.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures.iter().chain(&self.ratios).find(|f| f.name == name).map(|f| f.value)
    }

    pub fn print(&self) {
        outln!("ansinh bench {} (size {})", self.suite, self.size);
        let mut rows: Vec<Vec<String>> = self.figures.iter().map(|f| vec![f.name.clone(), fmt(f.value), f.unit.clone()]).collect();
        rows.extend(self.ratios.iter().map(|f| vec![format!("ratio {}", f.name), format!("{:.3}", f.value), f.unit.clone()]));
        crate::cli::print_table(&["figure", "value", "unit / target"], &rows);
        for n in &self.notes {
            outln!("  - {n}");
        }
    }
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 || v.abs() >= 100.0 {
        crate::cli::count(v.round() as u64)
    } else {
        format!("{v:.3}")
    }
}

/// A scratch directory removed when dropped (benchmark data is never kept by accident).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(parent: &Path, name: &str) -> Result<Scratch, String> {
        let dir = parent.join(format!("ansinh-bench-{}-{name}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The 1-minute load average (from /proc/loadavg), to say how busy the shared machine was.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Bytes a directory holds on disk (for the notes).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
