//! Reading the views: what a reader gets is composed from the stored views and the log. A
//! batch's lines are the records right after its `payout_batch.submitted` record; a payout is
//! its `payout.instructed` record, its state (`pst/`) and the records of its transitions; a
//! citizen's payouts are found through the batches of their province and program (`mon/`) and
//! each batch's citizen index (`bix/`).

use super::views::*;
use super::{decode, ViewError};
use crate::core::state::{parse_payout_id, payout_id};
use crate::domain::Balance;
use crate::event::{Event, EventData};
use crate::log::LogReader;
use serde::de::DeserializeOwned;

/// Read access to the views, cheap to clone, safe to share across threads. Reads see every
/// group that `Views::apply` finished.
#[derive(Clone)]
pub struct ViewReader {
    tree: sled::Tree,
    log: LogReader,
}

pub(super) fn applied_seq(tree: &sled::Tree) -> Result<u64, ViewError> {
    Ok(match tree.get(b"_applied")? {
        Some(b) => u64::from_be_bytes(b.as_ref().try_into().map_err(|_| ViewError::Corrupt { key: "_applied".into(), detail: "not 8 bytes".into() })?),
        None => 0,
    })
}

pub(super) fn block_key(batch_id: &str, block: u32) -> String {
    format!("pst/{batch_id}/{block:06}")
}

/// Reassignments are followed at most this far (they never form a cycle; `State` asserts it).
const REASSIGNMENT_HOPS_MAX: usize = 1_000;

impl ViewReader {
    pub(super) fn new(tree: sled::Tree, log: LogReader) -> ViewReader {
        ViewReader { tree, log }
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ViewError> {
        match self.tree.get(key.as_bytes())? {
            Some(v) => decode(key.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// The event at `seq`, from the log.
    fn event(&self, seq: u64) -> Result<Event, ViewError> {
        self.log
            .read_event(seq)?
            .ok_or_else(|| ViewError::Corrupt { key: format!("seq {seq}"), detail: "a view points to a record the log does not hold".into() })
    }

    /// The citizen with their payouts and balances, composed from several keys: read again if a
    /// group was applied in between, so the parts always belong to the same seq.
    pub fn citizen(&self, citizen_id: &str) -> Result<Option<CitizenView>, ViewError> {
        loop {
            let before = self.applied_seq()?;
            let Some(record) = self.get::<CitizenRecord>(&format!("cit/{citizen_id}"))? else { return Ok(None) };
            let payouts = if record.reassigned_to.is_some() { Vec::new() } else { self.payouts_of(&record)? };
            if self.applied_seq()? == before {
                return Ok(Some(CitizenView::compose(record, &payouts)));
            }
        }
    }

    /// Every payout of a person, in the order they were instructed: the lines of their numbers
    /// (current and earlier) in the batches of each enrollment's province and program from its
    /// first month on, with each line's reissues.
    fn payouts_of(&self, record: &CitizenRecord) -> Result<Vec<PayoutView>, ViewError> {
        let mut numbers: Vec<u64> = Vec::with_capacity(1 + record.previous_citizen_ids.len());
        for id in std::iter::once(&record.citizen_id).chain(&record.previous_citizen_ids) {
            numbers.push(id.parse().map_err(|_| ViewError::Corrupt { key: format!("cit/{}", record.citizen_id), detail: format!("citizen ID {id:?}") })?);
        }
        let mut found: Vec<(u64, PayoutView)> = Vec::new();
        for (program, en) in &record.enrollments {
            let prefix = format!("mon/{}/{program}/", en.province);
            let start = format!("{prefix}{}", en.effective_from);
            for item in self.tree.range(start.as_bytes()..) {
                let (k, _) = item?;
                let Some(rest) = k.strip_prefix(prefix.as_bytes()) else { break };
                // `<period>/<batch_id>`
                let batch_id = std::str::from_utf8(rest.get(8..).unwrap_or_default())
                    .map_err(|e| ViewError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), detail: e.to_string() })?;
                for &number in &numbers {
                    if let Some(line) = self.line_of(batch_id, number)? {
                        for view in self.line_payouts(batch_id, line)? {
                            found.push((view.history.first().map_or(0, |h| h.seq), view));
                        }
                    }
                }
            }
        }
        found.sort_by_key(|(seq, _)| *seq);
        Ok(found.into_iter().map(|(_, v)| v).collect())
    }

    /// The line of a citizen in a batch, from the batch's citizen index.
    fn line_of(&self, batch_id: &str, citizen: u64) -> Result<Option<u32>, ViewError> {
        let prefix = format!("bix/{batch_id}/");
        let at = format!("{prefix}{citizen:012}");
        let Some(item) = self.tree.range(prefix.as_bytes()..=at.as_bytes()).next_back() else { return Ok(None) };
        let (k, v) = item?;
        let chunk: CitizenIndexChunk = decode(&k, &v)?;
        Ok(chunk.entries.binary_search_by_key(&citizen, |(c, _)| *c).ok().map(|i| chunk.entries[i].1))
    }

    fn line_state(&self, batch_id: &str, line: u32) -> Result<Option<LineState>, ViewError> {
        if line == 0 {
            return Ok(None);
        }
        let block: Option<LineBlock> = self.get(&block_key(batch_id, (line - 1) / LINE_BLOCK_LINES))?;
        Ok(block.and_then(|mut b| {
            let i = ((line - 1) % LINE_BLOCK_LINES) as usize;
            (i < b.lines.len()).then(|| std::mem::take(&mut b.lines[i]))
        }))
    }

    /// The regular payout of a line and its reissues, as views.
    fn line_payouts(&self, batch_id: &str, line: u32) -> Result<Vec<PayoutView>, ViewError> {
        let Some(state) = self.line_state(batch_id, line)? else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        let count = state.reissues.len();
        for (n, s) in state.regular.iter().chain(&state.reissues).enumerate() {
            out.push(self.compose_payout(batch_id, line, n as u32, s, n < count)?);
        }
        Ok(out)
    }

    pub fn payout(&self, payout_id: &str) -> Result<Option<PayoutView>, ViewError> {
        let Some((batch_id, line, n)) = parse_payout_id(payout_id) else { return Ok(None) };
        let Some(state) = self.line_state(batch_id, line)? else { return Ok(None) };
        let count = state.reissues.len();
        let s = match n {
            0 => state.regular.as_ref(),
            n => state.reissues.get(n as usize - 1),
        };
        match s {
            Some(s) => self.compose_payout(batch_id, line, n, s, (n as usize) < count).map(Some),
            None => Ok(None),
        }
    }

    /// A payout view from its state and its records.
    fn compose_payout(&self, batch_id: &str, line: u32, n: u32, state: &PayoutState, reissued: bool) -> Result<PayoutView, ViewError> {
        let instructed = self.event(state.instructed_seq)?;
        let EventData::PayoutInstructed(e) = &instructed.data else {
            return Err(ViewError::Corrupt {
                key: block_key(batch_id, (line - 1) / LINE_BLOCK_LINES),
                detail: format!("seq {} is not a payout.instructed", state.instructed_seq),
            });
        };
        let mut history =
            vec![PayoutHistory { seq: state.instructed_seq, at: instructed.at.clone(), status: "instructed".into(), reason: None, reference: String::new() }];
        for &seq in &state.transitions {
            let ev = self.event(seq)?;
            let (status, t) = match &ev.data {
                EventData::PayoutSettled(t) => ("settled", t),
                EventData::PayoutFailed(t) => ("failed", t),
                EventData::PayoutReturned(t) => ("returned", t),
                EventData::PayoutWrittenOff(t) => ("written_off", t),
                other => return Err(ViewError::Corrupt { key: format!("seq {seq}"), detail: format!("{} is not a payout transition", other.type_name()) }),
            };
            history.push(PayoutHistory {
                seq,
                at: ev.at.clone(),
                status: status.into(),
                reason: t.reason.map(|r| r.as_str().to_string()),
                reference: t.reference.clone(),
            });
        }
        Ok(PayoutView {
            payout_id: e.payout_id.clone(),
            kind: if n == 0 { "regular".into() } else { "reissue".into() },
            batch_id: e.batch_id.clone(),
            line_no: e.line_no,
            reissue_of: e.reissue_of.clone(),
            reissued_as: reissued.then(|| payout_id(batch_id, line, n + 1)),
            citizen_id: self.current_number(e.citizen_id.as_str())?,
            program_id: e.program_id.clone(),
            province: e.province.clone(),
            period: e.period.to_string(),
            amount: Some(e.amount),
            account: Some(e.account.clone()),
            status: state.status.as_str().into(),
            reason: state.reason.clone(),
            history,
        })
    }

    /// The number a person uses now, following re-determinations from `citizen_id`.
    fn current_number(&self, citizen_id: &str) -> Result<String, ViewError> {
        let mut current = citizen_id.to_string();
        for _ in 0..REASSIGNMENT_HOPS_MAX {
            match self.get::<CitizenRecord>(&format!("cit/{current}"))?.and_then(|r| r.reassigned_to) {
                Some(next) => current = next,
                None => return Ok(current),
            }
        }
        Err(ViewError::Corrupt { key: format!("cit/{citizen_id}"), detail: "re-determinations form a cycle".into() })
    }

    pub fn batch(&self, batch_id: &str) -> Result<Option<BatchView>, ViewError> {
        self.get(&format!("bat/{batch_id}"))
    }
    pub fn budget(&self, province: &str, program_id: &str, period: &str) -> Result<Option<BudgetView>, ViewError> {
        self.get(&format!("bud/{province}/{program_id}/{period}"))
    }
    pub fn program(&self, program_id: &str) -> Result<Option<ProgramView>, ViewError> {
        self.get(&format!("prog/{program_id}"))
    }
    /// A stored ledger account (treasury, budget, clearing, beneficiaries of a province and
    /// program); zero when it has no postings.
    pub fn balance(&self, account: &str) -> Result<Balance, ViewError> {
        Ok(self.get(&format!("acct/{account}"))?.unwrap_or_default())
    }

    /// Lines of a batch in line order, starting after `after_line`, at most `limit`: the
    /// records that follow the batch's `payout_batch.submitted` record.
    pub fn batch_lines(&self, batch_id: &str, after_line: u32, limit: usize) -> Result<Vec<LineView>, ViewError> {
        let Some(b) = self.batch(batch_id)? else { return Ok(Vec::new()) };
        let first = after_line + 1;
        if first > b.lines_total || limit == 0 {
            return Ok(Vec::new());
        }
        let last = b.lines_total.min(after_line.saturating_add(u32::try_from(limit).unwrap_or(u32::MAX)));
        let mut out = Vec::with_capacity((last - first + 1) as usize);
        for item in self.log.range(b.submitted_seq + u64::from(first), b.submitted_seq + u64::from(last)) {
            let (seq, bytes) = item?;
            let event = crate::log::parse_event(seq, &bytes)?;
            let corrupt = |detail: String| ViewError::Corrupt { key: format!("bat/{batch_id}"), detail };
            let line = match event.data {
                EventData::PayoutInstructed(p) if p.batch_id == batch_id => LineView {
                    line_no: p.line_no,
                    citizen_id: p.citizen_id.to_string(),
                    amount: p.amount.to_string(),
                    payout_id: Some(p.payout_id),
                    code: None,
                    message: None,
                    cash_commune: None,
                },
                EventData::OneOffCashListed(c) if c.batch_id == batch_id => LineView {
                    line_no: c.line_no,
                    citizen_id: c.citizen_id.to_string(),
                    amount: c.amount.to_string(),
                    payout_id: None,
                    code: None,
                    message: None,
                    cash_commune: Some(c.commune),
                },
                EventData::PayoutLineRejected(r) if r.batch_id == batch_id => LineView {
                    line_no: r.line_no,
                    citizen_id: r.citizen_id,
                    amount: r.amount,
                    payout_id: None,
                    code: Some(r.code),
                    message: Some(r.message),
                    cash_commune: None,
                },
                other => return Err(corrupt(format!("seq {seq} should be a line of the batch, it is {}", other.type_name()))),
            };
            if u64::from(line.line_no) != seq - b.submitted_seq {
                return Err(corrupt(format!("seq {seq} holds line {}, not line {}", line.line_no, seq - b.submitted_seq)));
            }
            out.push(line);
        }
        Ok(out)
    }

    /// What a one-off program listed to be paid in cash at a commune: count, total, seqs.
    pub fn cash(&self, program_id: &str, commune: &str) -> Result<Option<CashView>, ViewError> {
        self.get(&format!("cash/{program_id}/{commune}"))
    }

    /// The communes with lines to be paid in cash in a one-off program, with their totals
    /// (`seqs` left empty), in commune order.
    pub fn cash_communes(&self, program_id: &str) -> Result<Vec<CashView>, ViewError> {
        let prefix = format!("cash/{program_id}/");
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            let mut view: CashView = decode(&k, &v)?;
            view.seqs = Vec::new();
            out.push(view);
        }
        Ok(out)
    }

    /// The lines to be paid in cash at a commune, in the order they were listed, after the
    /// first `skip`, at most `limit`: read from their `one_off.cash_listed` records.
    pub fn cash_lines(&self, program_id: &str, commune: &str, skip: usize, limit: usize) -> Result<Vec<CashLine>, ViewError> {
        let Some(view) = self.cash(program_id, commune)? else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(limit.min(view.seqs.len()));
        for &seq in view.seqs.iter().skip(skip).take(limit) {
            match self.event(seq)?.data {
                EventData::OneOffCashListed(c) if c.program_id == program_id && c.commune == commune => out.push(CashLine {
                    seq,
                    batch_id: c.batch_id,
                    line_no: c.line_no,
                    citizen_id: c.citizen_id.to_string(),
                    amount: c.amount,
                    commune: c.commune,
                }),
                other => {
                    return Err(ViewError::Corrupt {
                        key: format!("cash/{program_id}/{commune}"),
                        detail: format!("seq {seq} should be a cash line of the commune, it is {}", other.type_name()),
                    })
                }
            }
        }
        Ok(out)
    }

    /// Ids of the batches whose id starts with `prefix`, in id order.
    pub fn batch_ids(&self, prefix: &str) -> Result<Vec<String>, ViewError> {
        let key = format!("bat/{prefix}");
        self.tree.scan_prefix(key.as_bytes()).map(|r| r.map(|(k, _)| String::from_utf8_lossy(&k[4..]).into_owned()).map_err(ViewError::from)).collect()
    }

    /// The last seq applied to the views, as stored.
    pub fn applied_seq(&self) -> Result<u64, ViewError> {
        applied_seq(&self.tree)
    }
}
