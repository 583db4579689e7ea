//! Deciding a one-off batch (issue 12): the lines of one citizen ID partition, each checked on
//! its own. A line with an account becomes a `payout.instructed` like a regular payout (province
//! `national`, the program's period and amount, payout id `<batch_id>-<line:06>`), a line
//! without one but with a commune becomes `one_off.cash_listed`, any other a
//! `payout_line.rejected`. A citizen gets at most one line taken per program, over every batch.

use super::decide::{batch_id_valid, batch_sized_and_new, current_citizen, one_off_program, truncate};
use super::handles::cid_number;
use super::rejection::Rejection;
use super::state::{payout_id, OneOff, State, ONE_OFF_PROVINCE};
use crate::command::{OneOffLine, SubmitOneOffBatch};
use crate::domain::{Account, BirthDate, CitizenId};
use crate::event::*;
use crate::shard::{partition_of, PARTITIONS};
use crate::timefmt::Timestamp;
use rust_decimal::Decimal;
use std::collections::HashSet;

/// How a line is paid.
enum Outcome {
    Bank(CitizenId, Account),
    Cash(CitizenId, String),
}

pub(super) fn submit(state: &State, c: &SubmitOneOffBatch, issued_at: &Timestamp) -> Result<Vec<EventData>, Rejection> {
    batch_id_valid(&c.batch_id)?;
    let partition = u16::try_from(c.partition)
        .ok()
        .filter(|p| *p < PARTITIONS)
        .ok_or_else(|| Rejection::new("partition_mismatch", format!("partition {} is not 0-{}", c.partition, PARTITIONS - 1)))?;
    if !state.ownership.owns_partition(partition) {
        return Err(Rejection::new(
            "shard_not_owner",
            format!("shard {} does not own citizen ID partition {partition}: the batch reached the wrong shard", state.ownership.shard_name()),
        ));
    }
    let (_, program) = one_off_program(state, &c.program_id)?;
    batch_sized_and_new(state, &c.batch_id, c.lines.len())?;
    let handle = state.one_off(&c.program_id).map(|(h, _)| h).expect("found above");
    let issued = issued_at.date();
    let mut available = program.available();
    let mut seen: HashSet<u64> = HashSet::with_capacity(c.lines.len());
    let mut lines = Vec::with_capacity(c.lines.len());
    let (mut instructed, mut cash, mut rejected) = (0u32, 0u32, 0u32);
    for (index, line) in c.lines.iter().enumerate() {
        let line_no = u32::try_from(index + 1).expect("batch lines are bounded far below u32::MAX");
        let decided = decide_line(state, handle, program, partition, issued, line, &mut seen, available);
        let amount = program.amount;
        match decided {
            Ok(outcome) => {
                available -= amount.as_decimal();
                lines.push(match outcome {
                    Outcome::Bank(citizen_id, account) => {
                        instructed += 1;
                        EventData::PayoutInstructed(PayoutInstructed {
                            payout_id: payout_id(&c.batch_id, line_no, 0),
                            kind: PayoutKind::Regular,
                            batch_id: c.batch_id.clone(),
                            line_no,
                            reissue_of: None,
                            citizen_id,
                            program_id: c.program_id.clone(),
                            province: ONE_OFF_PROVINCE.to_string(),
                            period: program.period,
                            amount,
                            account,
                        })
                    }
                    Outcome::Cash(citizen_id, commune) => {
                        cash += 1;
                        EventData::OneOffCashListed(OneOffCashListed {
                            amount,
                            batch_id: c.batch_id.clone(),
                            citizen_id,
                            commune,
                            line_no,
                            program_id: c.program_id.clone(),
                        })
                    }
                });
            }
            Err(r) => {
                rejected += 1;
                lines.push(EventData::PayoutLineRejected(PayoutLineRejected {
                    batch_id: c.batch_id.clone(),
                    line_no,
                    citizen_id: truncate(&line.citizen_id, 32),
                    amount: String::new(),
                    code: r.code.to_string(),
                    message: r.message,
                }));
            }
        }
    }
    assert!(available >= Decimal::ZERO, "a one-off batch never overdraws its budget");
    let mut events = Vec::with_capacity(lines.len() + 1);
    events.push(EventData::OneOffBatchSubmitted(OneOffBatchSubmitted {
        batch_id: c.batch_id.clone(),
        program_id: c.program_id.clone(),
        partition,
        period: program.period,
        lines_total: instructed + cash + rejected,
        lines_instructed: instructed,
        lines_cash: cash,
        lines_rejected: rejected,
    }));
    events.extend(lines);
    Ok(events)
}

/// A date a personal ID number was assigned: a real date, not after the day the command was
/// issued, not in a year before the birth year the number itself encodes.
fn id_assigned_on(raw: &str, citizen: &CitizenId, issued: (u16, u8, u8)) -> Result<BirthDate, Rejection> {
    let invalid = |why: String| Rejection::new("id_assigned_on_invalid", why);
    let date = BirthDate::parse(raw).map_err(|_| invalid(format!("id_assigned_on {:?} is not a real calendar date YYYY-MM-DD", truncate(raw, 32))))?;
    let (y, m, d) = issued;
    if date.ymd() > issued {
        return Err(invalid(format!("id_assigned_on {date} is after the day the command was issued ({y:04}-{m:02}-{d:02})")));
    }
    if date.year() < citizen.birth_year() {
        return Err(invalid(format!("id_assigned_on {date} is before {}, the birth year the citizen ID encodes", citizen.birth_year())));
    }
    Ok(date)
}

fn commune(raw: &str) -> Result<String, Rejection> {
    if raw.len() == 5 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_string())
    } else {
        Err(Rejection::new("commune_invalid", format!("commune code {:?} is not 5 digits", truncate(raw, 32))))
    }
}

#[allow(clippy::too_many_arguments)]
fn decide_line(
    state: &State,
    program: super::handles::ProgramHandle,
    o: &OneOff,
    partition: u16,
    issued: (u16, u8, u8),
    line: &OneOffLine,
    seen: &mut HashSet<u64>,
    available: Decimal,
) -> Result<Outcome, Rejection> {
    let citizen_id = current_citizen(state, &line.citizen_id)?;
    let line_partition = partition_of(citizen_id.as_str());
    if line_partition != partition {
        return Err(Rejection::new("partition_mismatch", format!("{} is in partition {line_partition}, not the batch's {partition}", citizen_id.masked())));
    }
    let number = cid_number(&citizen_id);
    if !seen.insert(number) {
        return Err(Rejection::new("duplicate_line", format!("{} is on an earlier line of this batch", citizen_id.masked())));
    }
    let assigned = id_assigned_on(&line.id_assigned_on, &citizen_id, issued)?;
    if assigned > o.eligible_cutoff {
        return Err(Rejection::new(
            "one_off_after_cutoff",
            format!("the personal ID number was assigned on {assigned}, after the program's cutoff {}", o.eligible_cutoff),
        ));
    }
    let account = line.account.as_ref().map(|a| a.check()).transpose().map_err(Rejection::from)?;
    let commune = line.commune.as_deref().map(commune).transpose()?;
    let outcome = match (account, commune) {
        (Some(account), _) => Outcome::Bank(citizen_id, account),
        (None, Some(commune)) => Outcome::Cash(citizen_id, commune),
        (None, None) => {
            return Err(Rejection::new("account_missing", "the line has no account and no commune to be paid in cash at"));
        }
    };
    if state.one_off_taken(program, number) {
        return Err(Rejection::new("one_off_already_paid", "this citizen already has a line paid or listed for cash in this program"));
    }
    if available < o.amount.as_decimal() {
        return Err(Rejection::new("budget_insufficient", format!("budget available {available} cannot cover {}", o.amount)));
    }
    Ok(outcome)
}
