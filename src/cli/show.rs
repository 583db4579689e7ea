//! `ansinh show`: the views as tables, or as JSON with `--json`.

use super::{count, print_table, vnd, CliResult};
use crate::config::Config;
use crate::domain::reference;
use crate::engine::Engine;
use crate::outln;
use crate::projection::ViewReader;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    #[command(subcommand)]
    pub what: What,
    /// Print the view as JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum What {
    /// A beneficiary by 12-digit citizen ID: enrollments, account, balances, payouts.
    Citizen { citizen_id: String },
    /// A payout batch: lines and amounts by status and bank, rejected lines by reason.
    Batch {
        batch_id: String,
        /// Also list the batch's lines (use --after/--limit to page).
        #[arg(long)]
        lines: bool,
        #[arg(long, default_value_t = 0)]
        after: u32,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// A payout and its status history.
    Payout { payout_id: String },
    /// A budget: funded, instructed, settled, released, available. A one-off program's budget
    /// at this shard is province `national`.
    Budget { province: String, program: String, period: String },
    /// A one-off program's lines to be paid in cash: per commune (count, total), or with
    /// --commune the lines of one commune (use --skip/--limit to page).
    Cash {
        program: String,
        #[arg(long)]
        commune: Option<String>,
        #[arg(long, default_value_t = 0)]
        skip: usize,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

fn not_found(what: &str, key: &str) -> String {
    format!("no {what} {key:?} in this data dir")
}

fn json<T: Serialize>(v: &T) -> CliResult {
    outln!("{}", serde_json::to_string_pretty(v).map_err(|e| e.to_string())?);
    Ok(())
}

pub fn run(config: &Config, args: &ShowArgs) -> CliResult {
    let (_db, _log, views) = Engine::open_views(&config.engine_options()).map_err(|e| e.to_string())?;
    match &args.what {
        What::Citizen { citizen_id } => citizen(&views, citizen_id, args.json),
        What::Batch { batch_id, lines, after, limit } => batch(&views, batch_id, *lines, *after, *limit, args.json),
        What::Payout { payout_id } => payout(&views, payout_id, args.json),
        What::Budget { province, program, period } => budget(&views, province, program, period, args.json),
        What::Cash { program, commune, skip, limit } => cash(&views, program, commune.as_deref(), *skip, *limit, args.json),
    }
}

fn cash(views: &ViewReader, program: &str, commune: Option<&str>, skip: usize, limit: usize, as_json: bool) -> CliResult {
    let Some(commune) = commune else {
        let communes = views.cash_communes(program).map_err(|e| e.to_string())?;
        if as_json {
            return json(&communes);
        }
        outln!("To be paid in cash: {program} ({} communes)", count(communes.len() as u64));
        let rows: Vec<Vec<String>> = communes.iter().map(|c| vec![c.commune.clone(), count(c.lines), vnd(c.amount.0)]).collect();
        print_table(&["commune", "lines", "VND"], &rows);
        return Ok(());
    };
    let view = views.cash(program, commune).map_err(|e| e.to_string())?.ok_or_else(|| not_found("cash list", &format!("{program}/{commune}")))?;
    let lines = views.cash_lines(program, commune, skip, limit).map_err(|e| e.to_string())?;
    if as_json {
        return json(&serde_json::json!({ "program_id": program, "commune": commune, "lines_total": view.lines, "amount": view.amount, "lines": lines }));
    }
    outln!("To be paid in cash: {program} at commune {commune}: {} lines, {} VND", count(view.lines), vnd(view.amount.0));
    let rows: Vec<Vec<String>> =
        lines.iter().map(|l| vec![l.citizen_id.clone(), l.batch_id.clone(), l.line_no.to_string(), vnd(l.amount.as_decimal())]).collect();
    print_table(&["citizen", "batch", "line", "VND"], &rows);
    Ok(())
}

/// Also used by `audit replay` on views replayed into a temporary store.
pub(crate) fn budget(views: &ViewReader, province: &str, program: &str, period: &str, as_json: bool) -> CliResult {
    let b =
        views.budget(province, program, period).map_err(|e| e.to_string())?.ok_or_else(|| not_found("budget", &format!("{province}/{program}/{period}")))?;
    if as_json {
        return json(&b);
    }
    outln!("Budget {province} / {program} / {period}");
    let rows = [
        ("funded", b.funded),
        ("instructed", b.instructed),
        ("settled", b.settled),
        ("failed (released)", b.failed),
        ("returned (released)", b.returned),
        ("in flight", b.in_flight),
        ("used (settled - returned)", b.spent),
        ("available", b.available),
    ];
    print_table(&["", "VND"], &rows.iter().map(|(k, v)| vec![k.to_string(), vnd(v.0)]).collect::<Vec<_>>());
    Ok(())
}

/// Also used by `audit replay`.
pub(crate) fn citizen(views: &ViewReader, citizen_id: &str, as_json: bool) -> CliResult {
    if let Err(e) = crate::domain::CitizenId::parse(citizen_id) {
        return Err(format!("{citizen_id:?} is not a citizen ID: {e}"));
    }
    let c = views.citizen(citizen_id).map_err(|e| e.to_string())?.ok_or_else(|| not_found("citizen", citizen_id))?;
    if as_json {
        return json(&c);
    }
    outln!("Citizen {}  {}  born {}  {}", c.citizen_id, c.full_name, c.date_of_birth, c.sex);
    if let Some(new) = &c.reassigned_to {
        outln!("  re-determined: this number is now {new}; see that citizen for current data");
    }
    if !c.previous_citizen_ids.is_empty() {
        outln!("  previous numbers: {}", c.previous_citizen_ids.join(", "));
    }
    if let Some(a) = &c.account {
        outln!("  account: {} ({}) {}  holder {}", reference::bank(&a.bin).map(|b| b.short_name).unwrap_or("?"), a.bin, a.account_no, a.holder_name);
    }
    outln!("\nEnrollments");
    let rows: Vec<Vec<String>> = c
        .enrollments
        .iter()
        .map(|(p, e)| vec![p.clone(), e.province.clone(), e.category.clone(), e.status.clone(), e.effective_from.clone(), e.history.len().to_string()])
        .collect();
    print_table(&["program", "province", "category", "status", "since", "changes"], &rows);
    outln!("\nBalances (VND)");
    let rows: Vec<Vec<String>> = c
        .balances
        .iter()
        .map(|(p, b)| vec![p.clone(), vnd(b.instructed.0), vnd(b.settled.0), vnd(b.failed.0), vnd(b.returned.0), vnd(b.in_flight.0), vnd(b.owed.0)])
        .collect();
    print_table(&["program", "instructed", "settled", "failed", "returned", "in flight", "owed"], &rows);
    outln!("\nPayouts");
    let rows: Vec<Vec<String>> = c
        .payouts
        .iter()
        .map(|p| vec![p.payout_id.clone(), p.program_id.clone(), p.period.clone(), p.amount.map(|a| vnd(a.as_decimal())).unwrap_or_default(), p.status.clone()])
        .collect();
    print_table(&["payout", "program", "period", "amount VND", "status"], &rows);
    Ok(())
}

/// Also used by `audit replay`.
pub(crate) fn batch(views: &ViewReader, batch_id: &str, lines: bool, after: u32, limit: usize, as_json: bool) -> CliResult {
    let b = views.batch(batch_id).map_err(|e| e.to_string())?.ok_or_else(|| not_found("batch", batch_id))?;
    let page = if lines { views.batch_lines(batch_id, after, limit.min(10_000)).map_err(|e| e.to_string())? } else { Vec::new() };
    if as_json {
        return json(&serde_json::json!({"batch": b, "lines": page}));
    }
    outln!(
        "Batch {}  program {}  province {}  period {}  submitted {} (seq {})",
        b.batch_id,
        b.program_id,
        b.province,
        b.period,
        b.submitted_at,
        b.submitted_seq
    );
    outln!(
        "  lines: {} submitted, {} instructed, {} rejected",
        count(u64::from(b.lines_total)),
        count(u64::from(b.lines_instructed)),
        count(u64::from(b.lines_rejected))
    );
    outln!("\nPayouts by status");
    print_table(
        &["status", "payouts", "amount VND"],
        &b.by_status.iter().filter(|(_, ca)| ca.count > 0).map(|(s, ca)| vec![s.clone(), count(ca.count), vnd(ca.amount.0)]).collect::<Vec<_>>(),
    );
    outln!("\nPer bank");
    let mut rows = Vec::new();
    for (bin, statuses) in &b.by_bank {
        // A status a batch's payouts have all left (count 0) is history, not a row.
        for (s, ca) in statuses.iter().filter(|(_, ca)| ca.count > 0) {
            rows.push(vec![reference::bank(bin).map(|x| x.short_name).unwrap_or("?").to_string(), bin.clone(), s.clone(), count(ca.count), vnd(ca.amount.0)]);
        }
    }
    print_table(&["bank", "BIN", "status", "payouts", "amount VND"], &rows);
    if !b.rejected_by_reason.is_empty() {
        outln!("\nRejected lines by reason");
        print_table(&["code", "lines"], &b.rejected_by_reason.iter().map(|(c, n)| vec![c.clone(), count(*n)]).collect::<Vec<_>>());
    }
    if lines {
        outln!("\nLines after {after}");
        let rows: Vec<Vec<String>> = page
            .iter()
            .map(|l| {
                vec![l.line_no.to_string(), l.citizen_id.clone(), l.amount.clone(), l.payout_id.clone().unwrap_or_default(), l.code.clone().unwrap_or_default()]
            })
            .collect();
        print_table(&["line", "citizen_id", "amount", "payout", "rejected"], &rows);
        if let Some(last) = page.last() {
            outln!("  next page: --after {}", last.line_no);
        }
    }
    Ok(())
}

fn payout(views: &ViewReader, payout_id: &str, as_json: bool) -> CliResult {
    let p = views.payout(payout_id).map_err(|e| e.to_string())?.ok_or_else(|| not_found("payout", payout_id))?;
    if as_json {
        return json(&p);
    }
    outln!("Payout {} ({})  batch {} line {}", p.payout_id, p.kind, p.batch_id, p.line_no);
    outln!("  citizen {}  program {}  province {}  period {}", p.citizen_id, p.program_id, p.province, p.period);
    outln!(
        "  amount {} VND  status {}{}",
        p.amount.map(|a| vnd(a.as_decimal())).unwrap_or_default(),
        p.status,
        p.reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    if let Some(a) = &p.account {
        outln!("  to {} ({}) account {} holder {}", reference::bank(&a.bin).map(|b| b.short_name).unwrap_or("?"), a.bin, a.account_no, a.holder_name);
    }
    if let Some(o) = &p.reissue_of {
        outln!("  reissue of {o}");
    }
    if let Some(n) = &p.reissued_as {
        outln!("  reissued as {n}");
    }
    outln!("\nHistory");
    let rows: Vec<Vec<String>> =
        p.history.iter().map(|h| vec![h.seq.to_string(), h.at.clone(), h.status.clone(), h.reason.clone().unwrap_or_default(), h.reference.clone()]).collect();
    print_table(&["seq", "at", "status", "reason", "reference"], &rows);
    Ok(())
}
