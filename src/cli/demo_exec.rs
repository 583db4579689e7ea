//! How the demo sends its commands: a stream of envelopes cut into groups (at most
//! `engine.group_commands_max` commands and 10,000 lines or items), each group decided while
//! the one before it is stored. Outcomes are looked at one by one and dropped: what a step
//! keeps of them is tallies and the first message of each rejection code.

use super::DemoArgs;
use crate::cli::bar;
use crate::command::{Command, CommandEnvelope};
use crate::domain::Period;
use crate::engine::Engine;
use crate::outcome::{Outcome, OutcomeStatus};
use crate::outln;
use std::collections::BTreeMap;
use std::time::Duration;

/// Most lines (or settlement items) in one group, past its first command: memory per group
/// stays bounded.
pub const GROUP_UNITS_MAX: u64 = 10_000;

/// Everything a step needs to build envelopes and run groups.
pub struct Run<'a> {
    pub engine: Engine,
    /// Time spent in each stage of every group of this run: decide (with sealing), batch
    /// write, flush, projections.
    pub stages: [Duration; 4],
    pub group_max: usize,
    pub args: &'a DemoArgs,
    pub period: Period,
    pub prefix: String,
}

pub fn envelope(id: String, issued_at: &str, command: Command) -> CommandEnvelope {
    CommandEnvelope { command_id: id, v: 1, issued_at: issued_at.to_string(), sender: Some(crate::engine::FILE_SENDER.into()), command }
}

impl Run<'_> {
    /// Executes `envelopes` in groups (see [`Groups`]), the next group decided while the one
    /// before it is stored; `each` is given every outcome, in input order (on the storing
    /// thread). `total` is the progress bar's length in `units`.
    pub fn execute_stream(
        &mut self,
        envelopes: impl Iterator<Item = CommandEnvelope>,
        total: u64,
        label: &str,
        units: impl Fn(&CommandEnvelope) -> u64,
        mut each: impl FnMut(Outcome) + Send,
    ) -> Result<(), String> {
        let progress = bar(total, label);
        let groups = Groups { envelopes: envelopes.peekable(), max: self.group_max, units };
        let stages = &mut self.stages;
        let mut refused: Option<String> = None;
        let result = self.engine.execute_pipelined(groups, |n, result| match result {
            Ok((outcomes, g)) => {
                for (total, d) in stages.iter_mut().zip([g.decide, g.append, g.flush, g.apply]) {
                    *total += d;
                }
                progress.inc(n);
                outcomes.into_iter().for_each(&mut each);
            }
            Err(e) => refused = refused.take().or(Some(e)),
        });
        progress.finish_and_clear();
        result.map_err(|e| e.to_string())?;
        refused.map_or(Ok(()), Err)
    }

    /// Executes a few commands (one group at most, for the small steps) and returns their
    /// outcomes.
    pub fn execute_all(&mut self, envelopes: Vec<CommandEnvelope>, label: &str) -> Result<Vec<Outcome>, String> {
        let mut outcomes = Vec::with_capacity(envelopes.len());
        let n = envelopes.len() as u64;
        self.execute_stream(envelopes.into_iter(), n, label, |_| 1, |o| outcomes.push(o))?;
        Ok(outcomes)
    }

    /// Executes one group and waits until it is stored: for a step whose next group is built
    /// from the state this one leaves.
    pub fn execute_group(&mut self, group: &[CommandEnvelope], each: impl FnMut(Outcome)) -> Result<(), String> {
        let outcomes = self.engine.execute(group).map_err(|e| e.to_string())?;
        let g = self.engine.last_group();
        for (total, d) in self.stages.iter_mut().zip([g.decide, g.append, g.flush, g.apply]) {
            *total += d;
        }
        outcomes.into_iter().for_each(each);
        Ok(())
    }
}

/// Envelopes cut into groups: a group ends before the command that would make it hold more
/// than `max` commands or, past its first command, more than [`GROUP_UNITS_MAX`] units (lines
/// of a batch, items of a settlement report). Each group comes with its units.
pub struct Groups<I: Iterator, F> {
    envelopes: std::iter::Peekable<I>,
    max: usize,
    units: F,
}

impl<I: Iterator<Item = CommandEnvelope>, F: Fn(&CommandEnvelope) -> u64> Iterator for Groups<I, F> {
    type Item = (Vec<CommandEnvelope>, u64);

    fn next(&mut self) -> Option<(Vec<CommandEnvelope>, u64)> {
        let mut group = Vec::new();
        let mut total = 0;
        while let Some(next) = self.envelopes.peek() {
            let u = (self.units)(next);
            if !group.is_empty() && (group.len() >= self.max || total + u > GROUP_UNITS_MAX) {
                break;
            }
            total += u;
            group.extend(self.envelopes.next());
        }
        (!group.is_empty()).then_some((group, total))
    }
}

/// New, already recorded and rejected commands of a step.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub commands: u64,
    pub new: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

impl Tally {
    pub fn add(&mut self, o: &Outcome) {
        self.commands += 1;
        if o.duplicate {
            self.duplicate += 1;
        } else if o.status == OutcomeStatus::Accepted {
            self.new += 1;
        } else {
            self.rejected += 1;
        }
    }

    pub fn of(outcomes: &[Outcome]) -> Tally {
        let mut t = Tally::default();
        outcomes.iter().for_each(|o| t.add(o));
        t
    }
}

/// Rejected commands and lines of this run (redeliveries left out), by code: how many, and the
/// message of the first one.
#[derive(Debug, Default)]
pub struct Rejections(BTreeMap<String, (u64, String)>);

impl Rejections {
    pub fn add(&mut self, o: &Outcome) {
        if o.duplicate {
            return;
        }
        if o.status != OutcomeStatus::Accepted {
            let e = self.0.entry(o.code.clone().unwrap_or_default()).or_insert((0, o.message.clone().unwrap_or_default()));
            e.0 += 1;
        }
        for l in o.lines.iter().filter(|l| l.status == "rejected") {
            let e = self.0.entry(l.code.clone().unwrap_or_default()).or_insert((0, l.message.clone().unwrap_or_default()));
            e.0 += 1;
        }
    }

    pub fn of(outcomes: &[Outcome]) -> Rejections {
        let mut r = Rejections::default();
        outcomes.iter().for_each(|o| r.add(o));
        r
    }

    pub fn print(&self) {
        for (code, (n, example)) in &self.0 {
            outln!("      rejected {n:>6} x {code:<24} e.g. {example}");
        }
    }
}

/// Items per second, grouped; `-` before any time has passed.
pub fn rate(n: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".into();
    }
    crate::cli::count((n as f64 / secs) as u64)
}
