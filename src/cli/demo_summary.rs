//! The demo's summary: the month as the views show it (payouts by status and bank, the
//! budget, rejected lines), the log written, the time taken by stage.

use super::exec::{rate, Run};
use super::PROGRAM_ID;
use crate::cli::{count, print_table, vnd, CliResult};
use crate::domain::reference;
use crate::outln;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

pub fn summary(run: &Run<'_>, batch_ids: &[String], head_before: &crate::log::Head, secs: f64, lines: usize) -> CliResult {
    let views = run.engine.views();
    let mut by_status: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
    let mut by_bank: BTreeMap<String, BTreeMap<String, (u64, Decimal)>> = BTreeMap::new();
    let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
    let (mut lines_total, mut lines_rejected) = (0u64, 0u64);
    for id in batch_ids {
        let Some(b) = views.batch(id).map_err(|e| e.to_string())? else { continue };
        lines_total += u64::from(b.lines_total);
        lines_rejected += u64::from(b.lines_rejected);
        for (s, ca) in &b.by_status {
            let e = by_status.entry(s.clone()).or_default();
            e.0 += ca.count;
            e.1 += ca.amount.0;
        }
        for (bin, statuses) in &b.by_bank {
            for (s, ca) in statuses {
                let e = by_bank.entry(bin.clone()).or_default().entry(s.clone()).or_default();
                e.0 += ca.count;
                e.1 += ca.amount.0;
            }
        }
        for (code, n) in &b.rejected_by_reason {
            *rejected.entry(code.clone()).or_default() += n;
        }
    }
    outln!(
        "\nSummary for {} {} ({} batches, {} lines submitted, {} rejected)",
        run.args.province,
        run.period,
        batch_ids.len(),
        count(lines_total),
        count(lines_rejected)
    );
    outln!("\nPayouts by status");
    let order = [
        ("instructed", "in flight (instructed)"),
        ("settled", "settled"),
        ("failed", "failed, not yet reissued"),
        ("returned", "returned, not yet reissued"),
        ("reissued", "failed, replaced by a reissue"),
        ("written_off", "written off"),
    ];
    let rows: Vec<Vec<String>> = order.iter().filter_map(|(s, label)| by_status.get(*s).map(|(n, a)| vec![label.to_string(), count(*n), vnd(*a)])).collect();
    print_table(&["status", "payouts", "amount VND"], &rows);

    outln!("\nPer bank");
    let mut rows = Vec::new();
    for (bin, statuses) in &by_bank {
        let get = |s: &str| statuses.get(s).copied().unwrap_or_default();
        let all: (u64, Decimal) = statuses.values().fold((0, Decimal::ZERO), |acc, v| (acc.0 + v.0, acc.1 + v.1));
        let name = reference::bank(bin).map(|b| b.short_name).unwrap_or("?");
        rows.push(vec![
            name.to_string(),
            bin.clone(),
            count(all.0),
            vnd(all.1),
            count(get("settled").0),
            vnd(get("settled").1),
            count(get("failed").0 + get("reissued").0),
            count(get("instructed").0),
        ]);
    }
    print_table(&["bank", "BIN", "payouts", "amount VND", "settled", "settled VND", "ever failed", "in flight"], &rows);

    if let Some(b) = views.budget(&run.args.province, PROGRAM_ID, &run.period.to_string()).map_err(|e| e.to_string())? {
        outln!("\nBudget {} / {PROGRAM_ID} / {}", run.args.province, run.period);
        let rows = vec![
            vec!["funded".into(), vnd(b.funded.0)],
            vec!["instructed".into(), vnd(b.instructed.0)],
            vec!["settled (paid)".into(), vnd(b.settled.0)],
            vec!["released by failures/returns".into(), vnd(b.released.0)],
            vec!["in flight".into(), vnd(b.in_flight.0)],
            vec!["used (paid and kept)".into(), vnd(b.spent.0)],
            vec!["available (left)".into(), vnd(b.available.0)],
        ];
        print_table(&["budget", "VND"], &rows);
    }

    outln!("\nRejected lines by reason code");
    if rejected.is_empty() {
        outln!("  (none)");
    } else {
        let rows: Vec<Vec<String>> = rejected.iter().map(|(c, n)| vec![c.clone(), count(*n)]).collect();
        print_table(&["code", "lines"], &rows);
    }
    let head = run.engine.head();
    let ledger = views.ledger_total().map_err(|e| e.to_string())?;
    outln!("\nEvents written this run  {} (log seq {} -> {})", count(head.seq - head_before.seq), head_before.seq, head.seq);
    outln!(
        "Throughput               {} payout lines + settlement items in {secs:.2}s overall ({} lines/s end to end, enrollment included)",
        count(lines as u64),
        rate(lines as u64, secs)
    );
    outln!("Double-entry ledger sum  {} (must be 0)", ledger);
    let [decide, write, flush, apply] = run.stages.map(|d| d.as_secs_f64());
    outln!("Time by stage            decide+seal {decide:.2}s, batch write {write:.2}s, flush {flush:.2}s, views {apply:.2}s");
    outln!("Chain head               seq {}  hash {}", head.seq, head.hash);
    let unpaid: HashMap<&str, u64> =
        HashMap::from([("failed", by_status.get("failed").map(|x| x.0).unwrap_or(0)), ("instructed", by_status.get("instructed").map(|x| x.0).unwrap_or(0))]);
    if unpaid.values().any(|n| *n > 0) {
        outln!("Unpaid at the end        {} failed, {} still in flight (carried to the next cycle)", unpaid["failed"], unpaid["instructed"]);
    }
    Ok(())
}
