//! What the API answers: response types of their own, separate from the stored views, so that a
//! change of the storage layout cannot silently change the public contract, and so that what a
//! role may not see (account numbers, other provinces' programs) is left out by construction.
//! The OpenAPI schemas are derived from these types.

use super::access::Grant;
use crate::domain::{reference, Balance, FailureReason, Vnd};
use crate::projection::views::*;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

impl utoipa::PartialSchema for Balance {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^-?[0-9]+$"))
            .description(Some("Signed whole đồng as a decimal string."))
            .examples(["1500000"])
            .into()
    }
}
impl ToSchema for Balance {}

impl utoipa::PartialSchema for Vnd {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[1-9][0-9]{0,15}$"))
            .description(Some("Whole đồng as a decimal string, positive. Never a JSON number."))
            .examples(["500000"])
            .into()
    }
}
impl ToSchema for Vnd {}

/// Every error: a stable code to branch on and a sentence for people.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// `unauthenticated`, `forbidden`, `citizen_not_found`, `citizen_id_format`, ...
    pub error: String,
    pub message: String,
}

/// The chain head: what an auditor compares with `ansinh audit verify`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HeadOut {
    /// Seq of the last durable event.
    pub seq: u64,
    /// Its hash (lowercase hex SHA-256), the head of the hash chain.
    pub hash: String,
    /// Seq up to which the views answering this API have applied the log.
    pub views_applied_seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyOut {
    pub ready: bool,
    /// `null` when this process has no writer (the standalone `ansinh api`).
    pub log_writable: Option<bool>,
    /// `null` when this process uses no broker.
    pub broker_connected: Option<bool>,
    pub views_applied_seq: Option<u64>,
    pub detail: Vec<String>,
}

/// A bank account; `account_no` keeps its last 4 characters unless the caller is an auditor.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountOut {
    /// NAPAS BIN, e.g. 970436.
    pub bin: String,
    pub bank: Option<String>,
    pub account_no: String,
    pub holder_name: String,
    pub masked: bool,
}

impl AccountOut {
    pub fn new(a: &crate::domain::Account, grant: &Grant) -> AccountOut {
        let full = grant.sees_accounts();
        let account_no = if full { a.account_no.clone() } else { mask_account(&a.account_no) };
        AccountOut { bin: a.bin.clone(), bank: bank_name(&a.bin), account_no, holder_name: a.holder_name.clone(), masked: !full }
    }
}

/// `0561000000123` -> `*********0123`.
pub fn mask_account(raw: &str) -> String {
    let n = raw.chars().count();
    raw.chars().enumerate().map(|(i, c)| if i + 4 < n { '*' } else { c }).collect()
}

pub fn bank_name(bin: &str) -> Option<String> {
    reference::bank(bin).map(|b| b.short_name.to_string())
}

/// G2P Connect disbursement status of a payout status: `pdng` in flight, `succ` settled,
/// `rjct` failed, returned, written off or refused.
pub fn g2p_status(status: &str) -> &'static str {
    match status {
        "instructed" => "pdng",
        "settled" => "succ",
        _ => "rjct",
    }
}

/// ISO 20022 status reason code of a failure reason (`account_closed` -> `AC04`).
pub fn iso20022(reason: &str) -> Option<String> {
    serde_json::from_value::<FailureReason>(serde_json::Value::String(reason.to_string())).ok().map(|r| r.iso20022().to_string())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CitizenOut {
    pub citizen_id: String,
    pub full_name: String,
    pub date_of_birth: String,
    pub sex: String,
    /// The current payment account.
    pub account: Option<AccountOut>,
    /// Numbers this person had before a re-determination, oldest first.
    pub previous_citizen_ids: Vec<String>,
    /// Set on an old number after a re-determination: read the citizen under this number.
    pub reassigned_to: Option<String>,
    /// Per program.
    pub enrollments: BTreeMap<String, EnrollmentOut>,
    /// Per program, in đồng.
    pub balances: BTreeMap<String, BalancesOut>,
    /// Benefit month (YYYY-MM) -> the payouts for it, reissues included.
    pub payouts_by_period: BTreeMap<String, Vec<CitizenPayoutOut>>,
    /// True when programs outside the caller's scope were left out (agency tokens).
    pub partial: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnrollmentOut {
    pub province: String,
    pub category: String,
    /// active | suspended | terminated
    pub status: String,
    pub effective_from: String,
    pub history: Vec<HistoryOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryOut {
    pub seq: u64,
    pub at: String,
    pub event: String,
    pub effective_from: Option<String>,
    pub detail: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesOut {
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

#[derive(Debug, Serialize, ToSchema)]
pub struct CitizenPayoutOut {
    pub payout_id: String,
    pub program_id: String,
    pub amount: Option<Vnd>,
    /// instructed | settled | failed | returned | written_off
    pub status: String,
    /// G2P Connect: pdng | succ | rjct
    pub g2p_status: String,
}

impl CitizenOut {
    /// The view as `grant` may see it: an agency gets only the programs whose enrollment is in
    /// its scope (`None` when there is none, and for an old number: see [`CitizenOut::old_number`]).
    pub fn new(v: CitizenView, grant: &Grant) -> Option<CitizenOut> {
        let visible: Vec<String> = match grant.role {
            crate::config::ApiRole::Agency => v.enrollments.iter().filter(|(p, e)| grant.covers(&e.province, p)).map(|(p, _)| p.clone()).collect(),
            _ => v.enrollments.keys().cloned().collect(),
        };
        if visible.is_empty() && (grant.role == crate::config::ApiRole::Agency || !v.enrollments.is_empty()) {
            return None;
        }
        let partial = visible.len() < v.enrollments.len();
        let shown = |program: &str| visible.iter().any(|p| p == program);
        let mut payouts_by_period: BTreeMap<String, Vec<CitizenPayoutOut>> = BTreeMap::new();
        for p in v.payouts.into_iter().filter(|p| shown(&p.program_id)) {
            let g2p = g2p_status(&p.status).to_string();
            payouts_by_period.entry(p.period).or_default().push(CitizenPayoutOut {
                payout_id: p.payout_id,
                program_id: p.program_id,
                amount: p.amount,
                status: p.status,
                g2p_status: g2p,
            });
        }
        Some(CitizenOut {
            account: v.account.as_ref().map(|a| AccountOut::new(a, grant)),
            citizen_id: v.citizen_id,
            full_name: v.full_name,
            date_of_birth: v.date_of_birth,
            sex: v.sex,
            previous_citizen_ids: v.previous_citizen_ids,
            reassigned_to: v.reassigned_to,
            enrollments: v.enrollments.into_iter().filter(|(p, _)| shown(p)).map(|(p, e)| (p, enrollment(e))).collect(),
            balances: v.balances.into_iter().filter(|(p, _)| shown(p)).map(|(p, b)| (p, balances(b))).collect(),
            payouts_by_period,
            partial,
        })
    }
}

impl CitizenOut {
    /// A re-determined old number: the person's name and the number it now leads to, nothing
    /// else (it keeps no enrollment, account or payout). The caller checks the scope first,
    /// against the person the number leads to.
    pub fn old_number(v: CitizenView) -> CitizenOut {
        CitizenOut {
            account: None,
            citizen_id: v.citizen_id,
            full_name: v.full_name,
            date_of_birth: v.date_of_birth,
            sex: v.sex,
            previous_citizen_ids: v.previous_citizen_ids,
            reassigned_to: v.reassigned_to,
            enrollments: BTreeMap::new(),
            balances: BTreeMap::new(),
            payouts_by_period: BTreeMap::new(),
            partial: false,
        }
    }
}

fn enrollment(e: EnrollmentView) -> EnrollmentOut {
    let history =
        e.history.into_iter().map(|h| HistoryOut { seq: h.seq, at: h.at, event: h.event, effective_from: h.effective_from, detail: h.detail }).collect();
    EnrollmentOut { province: e.province, category: e.category, status: e.status, effective_from: e.effective_from, history }
}

fn balances(b: BeneficiaryBalance) -> BalancesOut {
    BalancesOut {
        instructed: b.instructed,
        settled: b.settled,
        failed: b.failed,
        returned: b.returned,
        reissued: b.reissued,
        written_off: b.written_off,
        in_flight: b.in_flight,
        owed: b.owed,
    }
}

/// A payout and its status history.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutOut {
    pub payout_id: String,
    /// regular | reissue
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
    pub account: Option<AccountOut>,
    /// instructed | settled | failed | returned | written_off
    pub status: String,
    /// G2P Connect: pdng | succ | rjct
    pub g2p_status: String,
    /// Why it failed or was returned (`account_closed`, ...).
    pub reason: Option<String>,
    /// ISO 20022 status reason code of `reason` (`AC04`, ...).
    pub iso20022_reason: Option<String>,
    pub history: Vec<PayoutHistoryOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutHistoryOut {
    pub seq: u64,
    pub at: String,
    pub status: String,
    pub reason: Option<String>,
    /// The bank's reference for this transition.
    pub reference: String,
}

impl PayoutOut {
    pub fn new(p: PayoutView, grant: &Grant) -> PayoutOut {
        let history =
            p.history.into_iter().map(|h| PayoutHistoryOut { seq: h.seq, at: h.at, status: h.status, reason: h.reason, reference: h.reference }).collect();
        PayoutOut {
            account: p.account.as_ref().map(|a| AccountOut::new(a, grant)),
            g2p_status: g2p_status(&p.status).into(),
            iso20022_reason: p.reason.as_deref().and_then(iso20022),
            payout_id: p.payout_id,
            kind: p.kind,
            batch_id: p.batch_id,
            line_no: p.line_no,
            reissue_of: p.reissue_of,
            reissued_as: p.reissued_as,
            citizen_id: p.citizen_id,
            program_id: p.program_id,
            province: p.province,
            period: p.period,
            amount: p.amount,
            status: p.status,
            reason: p.reason,
            history,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, ToSchema)]
pub struct CountAmountOut {
    pub count: u64,
    pub amount: Balance,
}

impl CountAmountOut {
    pub fn add(&mut self, amount: Option<Vnd>) {
        self.count += 1;
        if let Some(a) = amount {
            self.amount = self.amount.plus(a);
        }
    }
}

impl From<&CountAmount> for CountAmountOut {
    fn from(c: &CountAmount) -> CountAmountOut {
        CountAmountOut { count: c.count, amount: c.amount }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetOut {
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

impl From<BudgetView> for BudgetOut {
    fn from(b: BudgetView) -> BudgetOut {
        BudgetOut {
            province: b.province,
            program_id: b.program_id,
            period: b.period,
            funded: b.funded,
            instructed: b.instructed,
            settled: b.settled,
            failed: b.failed,
            returned: b.returned,
            in_flight: b.in_flight,
            spent: b.spent,
            released: b.released,
            available: b.available,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgramOut {
    pub program_id: String,
    pub name: String,
    pub legal_basis: String,
    /// Category code -> coefficient of the standard level.
    pub categories: BTreeMap<String, String>,
    /// "national" or a province code -> effective month -> standard level.
    pub standard_levels: BTreeMap<String, BTreeMap<String, Vnd>>,
}

impl From<ProgramView> for ProgramOut {
    fn from(p: ProgramView) -> ProgramOut {
        ProgramOut { program_id: p.program_id, name: p.name, legal_basis: p.legal_basis, categories: p.categories, standard_levels: p.standard_levels }
    }
}
