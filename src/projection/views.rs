//! View documents: what readers get, and the compact forms stored under the keys of the `views`
//! tree (postcard, a binary serde format; JSON only at the CLI and API edges). Field order and
//! `BTreeMap`s make the bytes deterministic, so a rebuild is byte-identical.
//!
//! What the log already holds is not stored again: a batch's lines are the records at
//! `submitted_seq + line_no`, a payout's details are its `payout.instructed` record and its
//! history the records of its transitions. The views keep only what folds many events into one
//! answer (batch, budget and ledger totals), each payout's current status with the seqs of its
//! events (`LineBlock`), and the indexes that find them (`ViewReader`).

use crate::domain::{Account, Balance, Vnd};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CitizenView {
    pub citizen_id: String,
    pub full_name: String,
    pub date_of_birth: String,
    pub sex: String,
    pub account: Option<Account>,
    /// Numbers this person had before a re-determination, oldest first.
    pub previous_citizen_ids: Vec<String>,
    /// Set on the old number's view after a re-determination.
    pub reassigned_to: Option<String>,
    pub enrollments: BTreeMap<String, EnrollmentView>,
    /// Per program: the beneficiary's money, all in đồng.
    pub balances: BTreeMap<String, BeneficiaryBalance>,
    pub payouts: Vec<CitizenPayout>,
}

/// What is stored under `cit/<citizen_id>`: the person and their enrollments. The payouts and
/// balances of a `CitizenView` are not stored here but derived on read (`ViewReader::citizen`)
/// from the batches of the citizen's province and program (`mon/`), each batch's citizen index
/// (`bix/`) and its payouts' states (`pst/`), so that a payout line or a settlement writes
/// nothing per citizen: in sled 0.34 every inserted key costs a copy of the leaf it lands in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CitizenRecord {
    pub citizen_id: String,
    pub full_name: String,
    pub date_of_birth: String,
    pub sex: String,
    pub account: Option<Account>,
    pub previous_citizen_ids: Vec<String>,
    pub reassigned_to: Option<String>,
    pub enrollments: BTreeMap<String, EnrollmentView>,
}

impl CitizenView {
    /// The citizen as readers see it: the stored record plus its payouts (in the order they were
    /// instructed) and the balances they add up to.
    pub fn compose(record: CitizenRecord, payouts: &[PayoutView]) -> CitizenView {
        let mut balances: BTreeMap<String, BeneficiaryBalance> = record.enrollments.keys().map(|p| (p.clone(), BeneficiaryBalance::default())).collect();
        let mut list = Vec::with_capacity(payouts.len());
        for p in payouts {
            let amount = p.amount.expect("instructed payouts have an amount");
            let b = balances.entry(p.program_id.clone()).or_default();
            b.instructed = b.instructed.plus(amount);
            if p.kind == "reissue" {
                b.reissued = b.reissued.plus(amount);
            }
            for h in &p.history {
                let bucket = match h.status.as_str() {
                    "settled" => &mut b.settled,
                    "failed" => &mut b.failed,
                    "returned" => &mut b.returned,
                    "written_off" => &mut b.written_off,
                    _ => continue,
                };
                *bucket = bucket.plus(amount);
            }
            list.push(CitizenPayout {
                payout_id: p.payout_id.clone(),
                program_id: p.program_id.clone(),
                period: p.period.clone(),
                amount: p.amount,
                status: p.status.clone(),
            });
        }
        balances.values_mut().for_each(BeneficiaryBalance::derive);
        CitizenView {
            citizen_id: record.citizen_id,
            full_name: record.full_name,
            date_of_birth: record.date_of_birth,
            sex: record.sex,
            account: record.account,
            previous_citizen_ids: record.previous_citizen_ids,
            reassigned_to: record.reassigned_to,
            enrollments: record.enrollments,
            balances,
            payouts: list,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EnrollmentView {
    pub province: String,
    pub category: String,
    pub status: String,
    pub effective_from: String,
    pub history: Vec<HistoryEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryEntry {
    pub seq: u64,
    pub at: String,
    pub event: String,
    pub effective_from: Option<String>,
    pub detail: String,
}

/// Cumulative amounts; `in_flight` and `owed` are derived when written.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BeneficiaryBalance {
    pub instructed: Balance,
    pub settled: Balance,
    pub failed: Balance,
    pub returned: Balance,
    pub reissued: Balance,
    pub written_off: Balance,
    /// Instructed and not yet settled or failed.
    pub in_flight: Balance,
    /// Failed or returned and neither reissued nor written off.
    pub owed: Balance,
}

impl BeneficiaryBalance {
    pub fn derive(&mut self) {
        self.in_flight = Balance(self.instructed.0 - self.settled.0 - self.failed.0);
        self.owed = Balance(self.failed.0 + self.returned.0 - self.reissued.0 - self.written_off.0);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CitizenPayout {
    pub payout_id: String,
    pub program_id: String,
    pub period: String,
    pub amount: Option<Vnd>,
    pub status: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PayoutView {
    pub payout_id: String,
    pub kind: String,
    pub batch_id: String,
    pub line_no: u32,
    pub reissue_of: Option<String>,
    pub reissued_as: Option<String>,
    pub citizen_id: String,
    pub program_id: String,
    pub province: String,
    pub period: String,
    pub amount: Option<Vnd>,
    pub account: Option<Account>,
    /// instructed | settled | failed | returned | written_off
    pub status: String,
    pub reason: Option<String>,
    pub history: Vec<PayoutHistory>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PayoutHistory {
    pub seq: u64,
    pub at: String,
    pub status: String,
    pub reason: Option<String>,
    pub reference: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CountAmount {
    pub count: u64,
    pub amount: Balance,
}

impl CountAmount {
    pub fn add(&mut self, amount: Vnd) {
        self.count += 1;
        self.amount = self.amount.plus(amount);
    }
    pub fn remove(&mut self, amount: Vnd) {
        self.count = self.count.checked_sub(1).expect("a status bucket is only left after it was entered");
        self.amount = self.amount.minus(amount);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BatchView {
    pub batch_id: String,
    pub program_id: String,
    pub province: String,
    pub period: String,
    pub submitted_at: String,
    pub submitted_seq: u64,
    pub lines_total: u32,
    pub lines_instructed: u32,
    pub lines_rejected: u32,
    /// Payouts of this batch (reissues included) by current status: instructed, settled,
    /// failed, returned, reissued (a failed/returned payout replaced by a reissue), written_off.
    pub by_status: BTreeMap<String, CountAmount>,
    /// The same per bank BIN.
    pub by_bank: BTreeMap<String, BTreeMap<String, CountAmount>>,
    pub rejected_by_reason: BTreeMap<String, u64>,
}

impl BatchView {
    pub fn enter(&mut self, bin: &str, status: &str, amount: Vnd) {
        /// The bucket under `key`, made only when missing (no key allocated per call).
        fn bucket<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
            if !map.contains_key(key) {
                map.insert(key.to_string(), V::default());
            }
            map.get_mut(key).expect("inserted just above")
        }
        bucket(&mut self.by_status, status).add(amount);
        bucket(bucket(&mut self.by_bank, bin), status).add(amount);
    }
    pub fn leave(&mut self, bin: &str, status: &str, amount: Vnd) {
        self.by_status.get_mut(status).expect("status bucket exists").remove(amount);
        self.by_bank.get_mut(bin).and_then(|b| b.get_mut(status)).expect("bank status bucket exists").remove(amount);
    }
}

/// One line of a batch as submitted: its payout, or why it was rejected.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LineView {
    pub line_no: u32,
    pub citizen_id: String,
    pub amount: String,
    pub payout_id: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    /// A one-off line listed to be paid in cash: its commune.
    pub cash_commune: Option<String>,
}

/// The lines of a one-off program to be paid in cash at one commune, stored under
/// `cash/<program_id>/<commune>`: their count and total, and the seq of each line's
/// `one_off.cash_listed` record (the lines themselves are read from the log).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CashView {
    pub program_id: String,
    pub commune: String,
    pub lines: u64,
    pub amount: Balance,
    pub seqs: Vec<u64>,
}

/// One line to be paid in cash, as read from its `one_off.cash_listed` record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CashLine {
    pub seq: u64,
    pub batch_id: String,
    pub line_no: u32,
    pub citizen_id: String,
    pub amount: Vnd,
    pub commune: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetView {
    pub province: String,
    pub program_id: String,
    pub period: String,
    pub funded: Balance,
    pub instructed: Balance,
    pub settled: Balance,
    pub failed: Balance,
    pub returned: Balance,
    /// Instructed, not yet settled or failed.
    pub in_flight: Balance,
    /// Paid and kept: settled - returned.
    pub spent: Balance,
    /// Credited back by failures and returns.
    pub released: Balance,
    /// funded - instructed + released.
    pub available: Balance,
}

impl BudgetView {
    pub fn derive(&mut self) {
        self.in_flight = Balance(self.instructed.0 - self.settled.0 - self.failed.0);
        self.spent = Balance(self.settled.0 - self.returned.0);
        self.released = Balance(self.failed.0 + self.returned.0);
        self.available = Balance(self.funded.0 - self.instructed.0 + self.released.0);
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProgramView {
    pub program_id: String,
    pub name: String,
    pub legal_basis: String,
    pub categories: BTreeMap<String, String>,
    /// "national" or a province code -> effective month -> level.
    pub standard_levels: BTreeMap<String, BTreeMap<String, Vnd>>,
}

/// How many lines one `pst/` block holds.
pub const LINE_BLOCK_LINES: u32 = 1024;

/// The states of the payouts of lines `block * 1024 + 1 ..= (block + 1) * 1024` of a batch,
/// stored under `pst/<batch_id>/<block>`; index = line - 1 - block * 1024. A settlement report
/// rewrites the few blocks it touches, once per group.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LineBlock {
    pub lines: Vec<LineState>,
}

/// A line's payouts: the regular one (absent for a refused line) and its reissues, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LineState {
    pub regular: Option<PayoutState>,
    pub reissues: Vec<PayoutState>,
}

/// A payout as the views follow it: where its `payout.instructed` record is, its status now,
/// the seqs of its transitions (settled, failed, returned, written off) in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PayoutState {
    pub instructed_seq: u64,
    /// `instructed` | `settled` | `failed` | `returned` | `written_off`.
    pub status: PayoutStatusCode,
    pub reason: Option<String>,
    /// The bank it was routed to (NAPAS BIN as a number).
    pub bin: u32,
    pub transitions: Vec<u64>,
}

/// A payout status, stored as one byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayoutStatusCode {
    #[default]
    Instructed,
    Settled,
    Failed,
    Returned,
    WrittenOff,
}

impl PayoutStatusCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            PayoutStatusCode::Instructed => "instructed",
            PayoutStatusCode::Settled => "settled",
            PayoutStatusCode::Failed => "failed",
            PayoutStatusCode::Returned => "returned",
            PayoutStatusCode::WrittenOff => "written_off",
        }
    }

    pub fn parse(status: &str) -> Option<PayoutStatusCode> {
        Some(match status {
            "instructed" => PayoutStatusCode::Instructed,
            "settled" => PayoutStatusCode::Settled,
            "failed" => PayoutStatusCode::Failed,
            "returned" => PayoutStatusCode::Returned,
            "written_off" => PayoutStatusCode::WrittenOff,
            _ => return None,
        })
    }
}

/// Entries of a batch's citizen index: (citizen ID as a number, line), sorted, stored in chunks
/// of `CITIZEN_INDEX_CHUNK` under `bix/<batch_id>/<first citizen ID of the chunk, u64 BE>`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CitizenIndexChunk {
    pub entries: Vec<(u64, u32)>,
}

pub const CITIZEN_INDEX_CHUNK: usize = 512;
