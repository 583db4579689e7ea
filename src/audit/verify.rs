//! `audit verify`: everything an auditor can check without trusting the engine, in one pass
//! over the records, stopping at the first fault.
//!
//! 1. The chain (`chain::ChainChecker`): seqs contiguous from 1 (or from `--from` for a partial
//!    export), every hash recomputed from the JSON, every `prev_hash` linked.
//! 2. The end of the log: for a data directory the stored head `h` must be the last record
//!    (records cut from the tail leave a head that points past them); the checkpoints in the
//!    `checkpoints` tree must lie on the chain; an expected head (`--head SEQ:HASH`, e.g. a
//!    published checkpoint) must be on it too, which is how a truncated export file is caught.
//! 3. The views: every event replayed into fresh views in a temporary store, compared byte for
//!    byte with the live `views` tree as of the seq those were applied to, and both ledgers
//!    summing to zero (double entry).

use super::chain::{self, Checked, Failure};
use super::scratch::ScratchViews;
use super::source::Source;
use super::{checkpoint, AuditError};
use crate::domain::money::group_thousands;
use crate::domain::Balance;
use crate::log::Head;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// The seq the records must start at: 1 for a whole log; the `--from` of a partial export.
    pub from: u64,
    /// A head held outside this machine (a checkpoint): that record must exist with that hash.
    pub expected_head: Option<Head>,
    /// Replay into fresh views and compare (off: the chain checks only).
    pub views: bool,
    pub cache_capacity_bytes: u64,
}

impl Default for VerifyOptions {
    fn default() -> VerifyOptions {
        VerifyOptions { from: 1, expected_head: None, views: true, cache_capacity_bytes: super::CACHE_CAPACITY_BYTES_DEFAULT }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    /// Records that passed the chain checks.
    pub records: u64,
    /// The last record that passed (the verified head).
    pub head: Option<Head>,
    /// What was checked, one line each, in order.
    pub checks: Vec<String>,
    /// The first fault found; `None` means OK.
    pub failure: Option<Failure>,
}

/// Why the pass stopped early.
enum Stop {
    Failed(Failure),
    Error(AuditError),
}
impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        Stop::Failed(f)
    }
}
impl From<AuditError> for Stop {
    fn from(e: AuditError) -> Stop {
        Stop::Error(e)
    }
}
impl From<sled::Error> for Stop {
    fn from(e: sled::Error) -> Stop {
        Stop::Error(e.into())
    }
}

/// Verifies a data directory's journal or an export file. `progress` gets the records checked
/// so far. `Err` is for what stops verification itself (unreadable file, storage error, empty
/// log); a fault in the data is `Ok(report)` with `report.failure` set.
pub fn verify(source: &Source, options: &VerifyOptions, progress: &mut dyn FnMut(u64)) -> Result<Report, AuditError> {
    let mut report = Report::default();
    match run(source, options, &mut report, progress) {
        Ok(()) => Ok(report),
        Err(Stop::Failed(f)) => {
            report.failure = Some(f);
            Ok(report)
        }
        Err(Stop::Error(e)) => Err(e),
    }
}

fn run(source: &Source, options: &VerifyOptions, report: &mut Report, progress: &mut dyn FnMut(u64)) -> Result<(), Stop> {
    let from = options.from.max(1);
    if matches!(source, Source::DataDir { .. }) && from != 1 {
        return Err(AuditError::Invalid("--from applies to export files; a data directory is always verified from seq 1".into()).into());
    }
    if let Some(h) = options.expected_head.as_ref().filter(|h| h.seq < from) {
        return Err(AuditError::Invalid(format!("--head is at seq {} but the records start at seq {from}: use a checkpoint inside the export", h.seq)).into());
    }
    let stored_head = source.stored_head().map_err(|why| Failure { seq: None, what: why })?;
    let (checkpoints, live) = match source {
        Source::DataDir { db, .. } => {
            let marks: BTreeMap<u64, String> = checkpoint::checkpoints_since(db, 0)?.into_iter().map(|c| (c.seq, c.hash)).collect();
            (marks, Some(db.open_tree("views")?))
        }
        Source::File { .. } => (BTreeMap::new(), None),
    };
    let live_applied = match &live {
        Some(tree) => applied_seq(tree)?,
        None => 0,
    };
    let mut scratch = if options.views && from == 1 { Some(ScratchViews::create(options.cache_capacity_bytes, false)?) } else { None };
    let mut compared: Option<String> = None;
    if let (Some(tree), Some(s), 0) = (&live, &scratch, live_applied) {
        compared = Some(compare_views(tree, s, 0)?);
    }

    let mut on_record = |checked: Checked| -> Result<(), Stop> {
        let seq = checked.seq;
        // Every `at` as `replay --as-of` parses it (issue 16): a log that verifies replays.
        super::time::check_event_time(&checked.event.at).map_err(|why| Failure::at(seq, why))?;
        if let Some(hash) = checkpoints.get(&seq).filter(|h| **h != checked.hash) {
            return Err(Failure::at(
                seq,
                format!("a checkpoint recorded hash {hash} at this seq, the record now hashes to {}: the log was rewritten from here or earlier", checked.hash),
            )
            .into());
        }
        if let Some(h) = options.expected_head.as_ref().filter(|h| h.seq == seq && h.hash != checked.hash) {
            return Err(Failure::at(
                seq,
                format!("the expected head (--head) has hash {}, the record has {}: the log was rewritten from here or earlier", h.hash, checked.hash),
            )
            .into());
        }
        let hash = checked.hash.clone();
        if let Some(s) = scratch.as_mut() {
            s.push(checked)?;
            if let (Some(tree), true) = (&live, seq == live_applied) {
                s.apply_pending()?;
                compared = Some(compare_views(tree, s, seq)?);
            }
        }
        report.records += 1;
        report.head = Some(Head { seq, hash });
        if report.records % 10_000 == 0 {
            progress(report.records);
        }
        Ok(())
    };
    let scan = chain::scan(source, from, false, |checked| match on_record(checked) {
        Ok(()) => ControlFlow::Continue(()),
        Err(stop) => ControlFlow::Break(stop),
    })?;
    if let Some(stop) = scan.stopped {
        return Err(stop);
    }
    if let Some(failure) = scan.failure {
        return Err(failure.into());
    }
    progress(report.records);
    let Some(last) = report.head.clone() else {
        return match stored_head.filter(|h| h.seq > 0) {
            Some(h) => Err(Failure::at(1, format!("missing: the stored head is at seq {} but the journal holds no records", h.seq)).into()),
            None => Err(AuditError::Invalid(format!("{} holds no records from seq {from}: nothing to verify", source.describe())).into()),
        };
    };
    report.checks.push(match &scan.anchor {
        None => format!("chain: {} records, seq {from} to {}, every hash recomputed, every prev_hash linked from 64 zeros", count(report.records), count(last.seq)),
        Some(anchor) => format!(
            "chain: {} records, seq {from} to {}, every hash recomputed and linked; seq {from}'s prev_hash {anchor} is taken on trust: compare it with the hash of seq {} in an export or checkpoint you hold",
            count(report.records),
            count(last.seq),
            from - 1
        ),
    });

    check_end(source, stored_head, &last, options, &checkpoints, live_applied, report)?;

    if let Some(mut s) = scratch {
        s.apply_pending()?;
        let total = s.ledger_total()?;
        if total != Decimal::ZERO {
            return Err(Failure { seq: None, what: format!("the replayed ledger sums to {total}, not zero: double entry is broken") }.into());
        }
        match (&live, compared) {
            (Some(tree), Some(line)) => {
                let live_total = live_ledger_total(tree)?;
                if live_total != Decimal::ZERO {
                    return Err(Failure { seq: None, what: format!("the live ledger sums to {live_total}, not zero: run `ansinh rebuild`") }.into());
                }
                report.checks.push(line);
                report.checks.push(format!("ledger: replayed and live balances each sum to 0 over {} accounts (double entry)", count(accounts(tree)?)));
            }
            (Some(_), None) => {
                return Err(Failure {
                    seq: None,
                    what: format!("the live views say they were applied up to seq {live_applied}, past the log's last record {}: run `ansinh rebuild` once the log is restored", last.seq),
                }
                .into())
            }
            (None, _) => report.checks.push(format!("views: every event replayed into fresh views up to seq {}; the replayed ledger sums to 0", count(s.applied()))),
        }
    } else if options.views && from > 1 {
        report.checks.push("views: not replayed (a partial export cannot rebuild balances; export from seq 1 for that)".into());
    }
    Ok(())
}

/// The end of the log: stored head, expected head, checkpoints.
fn check_end(
    source: &Source,
    stored: Option<Head>,
    last: &Head,
    options: &VerifyOptions,
    checkpoints: &BTreeMap<u64, String>,
    live_applied: u64,
    report: &mut Report,
) -> Result<(), Failure> {
    let l = last.seq;
    if let Source::DataDir { .. } = source {
        match stored {
            None => return Err(Failure { seq: None, what: format!("the journal holds records up to seq {l} but no head: the head was deleted") }),
            Some(h) if h.seq > l => {
                return Err(Failure::at(
                    l + 1,
                    format!("missing: the log ends at seq {l} but the stored head is at seq {}: records {}..{} were cut from the tail", h.seq, l + 1, h.seq),
                ))
            }
            Some(h) if h.seq < l => {
                return Err(Failure::at(
                    h.seq + 1,
                    format!("records {}..{l} lie past the stored head (seq {}): they were not appended by the engine", h.seq + 1, h.seq),
                ))
            }
            Some(h) if h.hash != last.hash => {
                return Err(Failure::at(l, format!("the stored head has hash {}, the last record {}: one of them was rewritten", h.hash, last.hash)))
            }
            Some(_) => report.checks.push(format!("head: the stored head is the last record (seq {}, {})", count(l), last.hash)),
        }
        if let Some((&seq, _)) = checkpoints.range(l + 1..).next() {
            return Err(Failure::at(
                l + 1,
                format!("missing: a checkpoint was recorded at seq {seq} but the log ends at seq {l}: records were cut from the tail"),
            ));
        }
        if live_applied > l {
            return Err(Failure::at(
                l + 1,
                format!("missing: the live views were applied up to seq {live_applied} but the log ends at seq {l}: records were cut from the tail"),
            ));
        }
        report.checks.push(format!("checkpoints: {} recorded in this data dir, each on the chain", checkpoints.len()));
    }
    if let Some(h) = &options.expected_head {
        if h.seq > l {
            return Err(Failure::at(
                l + 1,
                format!("missing: the expected head (--head) is at seq {} but the records end at seq {l}: the export was truncated", h.seq),
            ));
        }
        report.checks.push(format!("expected head: seq {} with hash {} is on the chain", count(h.seq), h.hash));
    }
    Ok(())
}

/// Compares the live views with the replayed ones, key by key, in key order; returns the line
/// to report, or the first difference.
fn compare_views(live: &sled::Tree, replayed: &ScratchViews, at: u64) -> Result<String, Stop> {
    let mut a = live.iter();
    let mut keys = 0u64;
    let fix = "the views do not follow from the log: run `ansinh rebuild` to derive them again (the log itself verified up to here)";
    let differ = |what: String| ControlFlow::Break(Stop::from(Failure { seq: None, what }));
    let stopped = replayed.each_view(&mut |kb, vb| match a.next() {
        None => differ(format!("replaying seq 1..{at} produces view {} that the live views lack: {fix}", show_key(kb))),
        Some(Err(e)) => ControlFlow::Break(e.into()),
        Some(Ok((ka, _))) if ka.as_ref() != kb => {
            let (first, side) = if ka.as_ref() < kb { (ka.as_ref(), "only in the live views") } else { (kb, "only in the replay") };
            differ(format!("view {} is {side} (as of seq {at}): {fix}", show_key(first)))
        }
        Some(Ok((ka, va))) if va.as_ref() != vb => {
            differ(format!("view {} differs from its replay as of seq {at}: {}; {fix}", show_key(&ka), first_difference(&va, vb)))
        }
        Some(Ok(_)) => {
            keys += 1;
            ControlFlow::Continue(())
        }
    })?;
    if let Some(stop) = stopped {
        return Err(stop);
    }
    if let Some(item) = a.next() {
        let (k, _) = item?;
        return Err(Failure { seq: None, what: format!("live view {} is not produced by replaying seq 1..{at}: {fix}", show_key(&k)) }.into());
    }
    Ok(format!("views: every event replayed into fresh views; all {} keys byte-identical to the live views as of seq {}", count(keys), count(at)))
}

fn show_key(key: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(key))
}

/// Where two values first differ, with a little context of each.
fn first_difference(live: &[u8], replayed: &[u8]) -> String {
    let at = live.iter().zip(replayed).position(|(x, y)| x != y).unwrap_or(live.len().min(replayed.len()));
    let around = |v: &[u8]| {
        let start = at.saturating_sub(40);
        let end = (at + 40).min(v.len());
        String::from_utf8_lossy(&v[start.min(end)..end]).into_owned()
    };
    format!("at byte {at}, live …{}… replayed …{}…", around(live), around(replayed))
}

fn applied_seq(tree: &sled::Tree) -> Result<u64, Stop> {
    match tree.get(b"_applied")? {
        None => Ok(0),
        Some(b) => match <[u8; 8]>::try_from(b.as_ref()) {
            Ok(bytes) => Ok(u64::from_be_bytes(bytes)),
            Err(_) => Err(Failure { seq: None, what: "the live views' applied seq is not 8 bytes: run `ansinh rebuild`".into() }.into()),
        },
    }
}

fn live_ledger_total(tree: &sled::Tree) -> Result<Decimal, Stop> {
    let mut total = Decimal::ZERO;
    for item in tree.scan_prefix(b"acct/") {
        let (k, v) = item?;
        let balance: Balance = crate::projection::decode(&k, &v)
            .map_err(|e| Failure { seq: None, what: format!("live view {} is not a balance ({e}): run `ansinh rebuild`", show_key(&k)) })?;
        total += balance.0;
    }
    Ok(total)
}

fn accounts(tree: &sled::Tree) -> Result<u64, Stop> {
    Ok(tree.scan_prefix(b"acct/").keys().count() as u64)
}

fn count(n: u64) -> String {
    group_thousands(Decimal::from(n))
}
