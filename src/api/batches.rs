//! Payout batches: the list, one batch with its progress, its lines page by page (filtered by
//! status: the "unpaid list" of the monthly reconciliation), and the reconciliation report per
//! bank as JSON and CSV (`reconciliation.rs`). Citizen service tokens may not read any of it.
//!
//! A line's status follows its payout through reissues to the last one: a line whose payout
//! failed and whose reissue settled is paid. "unpaid" means refused, failed, returned or
//! written off; "instructed" is still in flight at the bank.

use super::access::{Caller, Grant};
use super::model::{g2p_status, iso20022, CountAmountOut, ErrorBody};
use super::routes::{identifier, path};
use super::{ApiError, ApiState};
use crate::projection::views::{BatchView, LineView};
use crate::projection::ViewReader;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

/// Default and largest page size of a list.
pub const PAGE_LIMIT_DEFAULT: u32 = 100;
pub const PAGE_LIMIT_MAX: u32 = 1_000;
/// Most lines (or batches) one request examines while filtering; the page then ends early and
/// `next_after` says where to go on.
pub const SCAN_MAX: usize = 10_000;
/// Line numbers are keyed with 6 digits: `after` past this has nothing after it.
pub const LINE_AFTER_MAX: u32 = 999_999;
/// Most reissues followed from a line's first payout to its last.
const REISSUES_MAX: usize = 64;
const LINE_STATUSES: &[&str] = &["rejected", "instructed", "settled", "failed", "returned", "written_off", "paid", "unpaid"];

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut {
    pub batch_id: String,
    pub program_id: String,
    pub province: String,
    pub period: String,
    pub submitted_at: String,
    pub submitted_seq: u64,
    pub lines_total: u32,
    pub lines_instructed: u32,
    pub lines_rejected: u32,
    /// Payouts (reissues included) by current status: instructed, settled, failed, returned,
    /// reissued (replaced by a reissue), written_off.
    pub by_status: BTreeMap<String, CountAmountOut>,
    /// The same per bank BIN.
    pub by_bank: BTreeMap<String, BTreeMap<String, CountAmountOut>>,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub progress: ProgressOut,
}

/// Where the batch stands, in payouts.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressOut {
    /// Sent to the bank, no answer yet.
    pub in_flight: u64,
    pub settled: u64,
    /// Failed or returned, neither reissued nor written off yet: waiting for the agency.
    pub awaiting_decision: u64,
    pub written_off: u64,
    /// Nothing in flight and nothing awaiting a decision.
    pub complete: bool,
}

impl From<BatchView> for BatchOut {
    fn from(b: BatchView) -> BatchOut {
        let count = |s: &str| b.by_status.get(s).map(|c| c.count).unwrap_or(0);
        let progress = ProgressOut {
            in_flight: count("instructed"),
            settled: count("settled"),
            awaiting_decision: count("failed") + count("returned"),
            written_off: count("written_off"),
            complete: count("instructed") + count("failed") + count("returned") == 0,
        };
        BatchOut {
            by_status: b.by_status.iter().map(|(k, v)| (k.clone(), v.into())).collect(),
            by_bank: b.by_bank.iter().map(|(bin, m)| (bin.clone(), m.iter().map(|(k, v)| (k.clone(), v.into())).collect())).collect(),
            batch_id: b.batch_id,
            program_id: b.program_id,
            province: b.province,
            period: b.period,
            submitted_at: b.submitted_at,
            submitted_seq: b.submitted_seq,
            lines_total: b.lines_total,
            lines_instructed: b.lines_instructed,
            lines_rejected: b.lines_rejected,
            rejected_by_reason: b.rejected_by_reason,
            progress,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchSummaryOut {
    pub batch_id: String,
    pub program_id: String,
    pub province: String,
    pub period: String,
    pub submitted_at: String,
    pub lines_total: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchesPage {
    pub batches: Vec<BatchSummaryOut>,
    /// Pass as `after` for the next page; `null` when there is none.
    pub next_after: Option<String>,
}

/// One submitted line and what became of it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LineOut {
    pub line_no: u32,
    pub citizen_id: String,
    /// As submitted.
    pub amount: String,
    /// The line's payout, and the last reissue of it (the one whose status counts).
    pub first_payout_id: Option<String>,
    pub payout_id: Option<String>,
    pub bin: Option<String>,
    /// rejected | instructed | settled | failed | returned | written_off
    pub status: String,
    /// G2P Connect: pdng | succ | rjct
    pub g2p_status: String,
    /// The rejection code, or why the bank failed or returned the payout.
    pub reason: Option<String>,
    pub iso20022_reason: Option<String>,
    pub message: Option<String>,
    #[serde(skip)]
    pub paid_amount: Option<crate::domain::Vnd>,
}

impl LineOut {
    pub(super) fn is(&self, filter: &str) -> bool {
        match filter {
            "paid" => self.status == "settled",
            "unpaid" => matches!(self.status.as_str(), "rejected" | "failed" | "returned" | "written_off"),
            s => self.status == s,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinesPage {
    pub batch_id: String,
    pub lines: Vec<LineOut>,
    /// Pass as `after` for the next page; `null` when the batch has no more lines.
    pub next_after: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BatchesQuery {
    /// Batch id to start after (from `next_after`).
    pub after: Option<String>,
    /// 1-1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LinesQuery {
    /// Line number to start after (from `next_after`), 0-999999; default 0.
    #[param(maximum = 999999)]
    pub after: Option<u32>,
    /// 1-1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// rejected | instructed | settled | failed | returned | written_off | paid | unpaid
    pub status: Option<String>,
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::BadRequest("query_invalid", e.body_text()))
}

fn limit(raw: Option<u32>) -> Result<usize, ApiError> {
    match raw.unwrap_or(PAGE_LIMIT_DEFAULT) {
        n @ 1..=PAGE_LIMIT_MAX => Ok(n as usize),
        n => Err(ApiError::BadRequest("limit_out_of_range", format!("limit must be 1-{PAGE_LIMIT_MAX}, got {n}"))),
    }
}

/// The batch, if it exists and the caller may read it.
pub(super) fn readable_batch(views: &ViewReader, caller: &Grant, batch_id: &str) -> Result<BatchView, ApiError> {
    identifier("batch_id", batch_id)?;
    caller.require_not_citizen_service("batches")?;
    let b = views.batch(batch_id)?.ok_or_else(|| ApiError::NotFound("batch_not_found", "no batch under this id".into()))?;
    caller.require_covers(&b.province, &b.program_id)?;
    Ok(b)
}

/// Runs view reads that may touch thousands of keys off the async workers.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("a report task failed: {e}")))?
}

#[utoipa::path(get, path = "/v1/batches", tag = "batches", security(("bearer" = [])), params(BatchesQuery), responses(
    (status = 200, description = "Batches the caller may read, in id order.", body = BatchesPage),
    (status = 400, description = "Bad `limit` or unknown parameter.", body = ErrorBody),
    (status = 401, description = "Token missing or unknown.", body = ErrorBody),
    (status = 403, description = "Citizen service tokens may not list.", body = ErrorBody),
))]
pub async fn list(State(state): State<ApiState>, caller: Caller, q: Result<Query<BatchesQuery>, QueryRejection>) -> Result<Json<BatchesPage>, ApiError> {
    let q = query(q)?;
    let limit = limit(q.limit)?;
    caller.require_not_citizen_service("batch lists")?;
    let views = state.views()?;
    blocking(move || {
        let after = q.after.unwrap_or_default();
        let mut page = BatchesPage { batches: Vec::new(), next_after: None };
        let mut last: Option<String> = None;
        for (examined, id) in views.batch_ids("")?.into_iter().filter(|id| *id > after).enumerate() {
            if page.batches.len() == limit || examined == SCAN_MAX {
                page.next_after = last;
                break;
            }
            last = Some(id.clone());
            let Some(b) = views.batch(&id)? else { continue };
            if caller.covers(&b.province, &b.program_id) {
                page.batches.push(BatchSummaryOut {
                    batch_id: b.batch_id,
                    program_id: b.program_id,
                    province: b.province,
                    period: b.period,
                    submitted_at: b.submitted_at,
                    lines_total: b.lines_total,
                });
            }
        }
        Ok(Json(page))
    })
    .await
}

#[utoipa::path(get, path = "/v1/batches/{batch_id}", tag = "batches", security(("bearer" = [])),
    params(("batch_id" = String, Path, description = "Batch id.", example = "KH-2025-01-007")),
    responses(
        (status = 200, description = "Lines and amounts by status and bank, progress, rejected lines by reason.", body = BatchOut),
        (status = 400, description = "Not a batch id.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Citizen service, or an agency outside the batch's province or program.", body = ErrorBody),
        (status = 404, description = "No such batch (`batch_not_found`).", body = ErrorBody),
    ))]
pub async fn batch(State(state): State<ApiState>, caller: Caller, p: Result<Path<String>, PathRejection>) -> Result<Json<BatchOut>, ApiError> {
    let batch_id = path(p)?;
    Ok(Json(readable_batch(&*state.views()?, &caller, &batch_id)?.into()))
}

/// A line with its payout followed to the last reissue.
fn resolve(views: &ViewReader, line: LineView) -> Result<LineOut, ApiError> {
    let mut out = LineOut {
        line_no: line.line_no,
        citizen_id: line.citizen_id,
        amount: line.amount,
        first_payout_id: line.payout_id.clone(),
        payout_id: None,
        bin: None,
        status: "rejected".into(),
        g2p_status: "rjct".into(),
        reason: line.code,
        iso20022_reason: None,
        message: line.message,
        paid_amount: None,
    };
    let mut next = line.payout_id;
    for _ in 0..REISSUES_MAX {
        let Some(id) = next.take() else { break };
        let Some(p) = views.payout(&id)? else {
            return Err(ApiError::Internal(format!("line {} of batch {} points to payout {id}, which has no view", out.line_no, p_batch(&id))));
        };
        out.payout_id = Some(p.payout_id);
        out.bin = p.account.map(|a| a.bin);
        out.g2p_status = g2p_status(&p.status).into();
        out.status = p.status;
        out.iso20022_reason = p.reason.as_deref().and_then(iso20022);
        out.reason = p.reason;
        out.paid_amount = p.amount;
        next = p.reissued_as;
    }
    Ok(out)
}

fn p_batch(payout_id: &str) -> &str {
    payout_id.rsplit_once('-').map(|(b, _)| b).unwrap_or(payout_id)
}

/// Calls `f` on every line of the batch after `after`, in order, until it returns false.
pub(super) fn each_line(views: &ViewReader, batch_id: &str, after: u32, mut f: impl FnMut(LineOut) -> Result<bool, ApiError>) -> Result<(), ApiError> {
    const CHUNK: usize = 1_000;
    let mut cursor = after;
    while cursor < LINE_AFTER_MAX {
        let chunk = views.batch_lines(batch_id, cursor, CHUNK)?;
        let full = chunk.len() == CHUNK;
        for line in chunk {
            if line.line_no <= cursor {
                return Err(ApiError::Internal(format!("lines of batch {batch_id} are out of order at {}", line.line_no)));
            }
            cursor = line.line_no;
            if !f(resolve(views, line)?)? {
                return Ok(());
            }
        }
        if !full {
            break;
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/batches/{batch_id}/lines", tag = "batches", security(("bearer" = [])),
    params(("batch_id" = String, Path, description = "Batch id.", example = "KH-2025-01-007"), LinesQuery),
    responses(
        (status = 200, description = "A page of lines in line order. With `status`, at most 10,000 lines are examined per request: follow `next_after` until it is null.", body = LinesPage),
        (status = 400, description = "Bad `after`, `limit` or `status`, or an unknown parameter.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Citizen service, or an agency outside the batch's province or program.", body = ErrorBody),
        (status = 404, description = "No such batch.", body = ErrorBody),
    ))]
pub async fn lines(
    State(state): State<ApiState>,
    caller: Caller,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<LinesQuery>, QueryRejection>,
) -> Result<Json<LinesPage>, ApiError> {
    let batch_id = path(p)?;
    let q = query(q)?;
    let limit = limit(q.limit)?;
    let after = q.after.unwrap_or(0);
    if after > LINE_AFTER_MAX {
        return Err(ApiError::BadRequest("after_out_of_range", format!("after must be 0-{LINE_AFTER_MAX}, got {after}")));
    }
    if let Some(s) = q.status.as_deref().filter(|s| !LINE_STATUSES.contains(s)) {
        return Err(ApiError::BadRequest("status_invalid", format!("status {s:?} is not one of {}", LINE_STATUSES.join(", "))));
    }
    let views = state.views()?;
    readable_batch(&views, &caller, &batch_id)?;
    blocking(move || {
        let mut page = LinesPage { batch_id: batch_id.clone(), lines: Vec::new(), next_after: None };
        let mut examined = 0usize;
        let mut last = after;
        each_line(&views, &batch_id, after, |line| {
            if page.lines.len() == limit || examined == SCAN_MAX {
                page.next_after = Some(last);
                return Ok(false);
            }
            examined += 1;
            last = line.line_no;
            if q.status.as_deref().is_none_or(|s| line.is(s)) {
                page.lines.push(line);
            }
            Ok(true)
        })?;
        Ok(Json(page))
    })
    .await
}
