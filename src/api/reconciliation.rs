//! The reconciliation report of a batch: paid, in flight and unpaid (with reasons) per bank,
//! and the unpaid lines, as JSON; every line as CSV for the agency's spreadsheet. Optionally
//! limited to one bank (`?bin=`). One pass over the batch's lines, off the async workers;
//! bounded by the batch size (`limits.batch_lines_max`).

use super::access::Caller;
use super::batches::{blocking, each_line, query, readable_batch, LineOut};
use super::csv_export::CsvExport;
use super::model::{bank_name, CountAmountOut, ErrorBody};
use super::routes::path;
use super::{ApiError, ApiState};
use crate::projection::views::BatchView;
use crate::projection::ViewReader;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Only the payouts routed to this bank (NAPAS BIN); refused lines are then left out.
    pub bin: Option<String>,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct BankReconciliation {
    pub bin: String,
    pub bank: Option<String>,
    pub paid: CountAmountOut,
    pub in_flight: CountAmountOut,
    /// Failed, returned or written off.
    pub unpaid: CountAmountOut,
    /// Unpaid by reason (`account_closed`, ..., `written_off`).
    pub unpaid_by_reason: BTreeMap<String, CountAmountOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationOut {
    pub batch_id: String,
    pub program_id: String,
    pub province: String,
    pub period: String,
    /// The bank this report is limited to, if any.
    pub bin: Option<String>,
    pub lines_total: u32,
    pub paid: CountAmountOut,
    pub in_flight: CountAmountOut,
    /// Payouts failed, returned or written off (refused lines are counted apart).
    pub unpaid: CountAmountOut,
    pub lines_rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub banks: Vec<BankReconciliation>,
    /// Every line not paid and not in flight: refused, failed, returned or written off.
    pub unpaid_lines: Vec<LineOut>,
}

/// The whole report plus every line (for the CSV), in one pass over the batch.
fn reconcile(views: &ViewReader, b: BatchView, bin: Option<String>) -> Result<(ReconciliationOut, Vec<LineOut>), ApiError> {
    let mut banks: BTreeMap<String, BankReconciliation> = BTreeMap::new();
    let mut r = ReconciliationOut {
        batch_id: b.batch_id.clone(),
        program_id: b.program_id,
        province: b.province,
        period: b.period,
        bin: bin.clone(),
        lines_total: b.lines_total,
        paid: CountAmountOut::default(),
        in_flight: CountAmountOut::default(),
        unpaid: CountAmountOut::default(),
        lines_rejected: 0,
        rejected_by_reason: BTreeMap::new(),
        banks: Vec::new(),
        unpaid_lines: Vec::new(),
    };
    let mut all = Vec::new();
    each_line(views, &b.batch_id, 0, |line| {
        if bin.is_some() && line.bin != bin {
            return Ok(true);
        }
        if line.status == "rejected" {
            r.lines_rejected += 1;
            *r.rejected_by_reason.entry(line.reason.clone().unwrap_or_default()).or_default() += 1;
        } else {
            let line_bin = line.bin.clone().unwrap_or_default();
            let bank = banks.entry(line_bin.clone()).or_insert_with(|| BankReconciliation { bank: bank_name(&line_bin), bin: line_bin, ..Default::default() });
            match line.status.as_str() {
                "settled" => (r.paid.add(line.paid_amount), bank.paid.add(line.paid_amount)),
                "instructed" => (r.in_flight.add(line.paid_amount), bank.in_flight.add(line.paid_amount)),
                _ => {
                    let reason =
                        if line.status == "written_off" { "written_off".to_string() } else { line.reason.clone().unwrap_or_else(|| line.status.clone()) };
                    bank.unpaid_by_reason.entry(reason).or_default().add(line.paid_amount);
                    (r.unpaid.add(line.paid_amount), bank.unpaid.add(line.paid_amount))
                }
            };
        }
        if line.is("unpaid") {
            r.unpaid_lines.push(line.clone());
        }
        all.push(line);
        Ok(true)
    })?;
    r.banks = banks.into_values().collect();
    Ok((r, all))
}

fn report_bin(q: &ReportQuery) -> Result<Option<String>, ApiError> {
    match &q.bin {
        Some(b) if b.len() != 6 || !b.bytes().all(|c| c.is_ascii_digit()) => {
            Err(ApiError::BadRequest("bin_invalid", "bin must be a 6-digit NAPAS BIN, e.g. 970436".into()))
        }
        b => Ok(b.clone()),
    }
}

#[utoipa::path(get, path = "/v1/batches/{batch_id}/reconciliation", tag = "batches", security(("bearer" = [])),
    params(("batch_id" = String, Path, description = "Batch id.", example = "KH-2025-01-007"), ReportQuery),
    responses(
        (status = 200, description = "Paid, in flight and unpaid (with reasons) per bank, and the unpaid lines.", body = ReconciliationOut),
        (status = 400, description = "Not a batch id, bad `bin`, or an unknown parameter.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Citizen service, or an agency outside the batch's province or program.", body = ErrorBody),
        (status = 404, description = "No such batch.", body = ErrorBody),
    ))]
pub async fn reconciliation(
    State(state): State<ApiState>,
    caller: Caller,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<ReconciliationOut>, ApiError> {
    let batch_id = path(p)?;
    let bin = report_bin(&query(q)?)?;
    let views = state.views()?;
    let b = readable_batch(&views, &caller, &batch_id)?;
    blocking(move || Ok(Json(reconcile(&views, b, bin)?.0))).await
}

/// Columns of the CSV report, in order.
pub const CSV_COLUMNS: &[&str] =
    &["line_no", "citizen_id", "first_payout_id", "payout_id", "bin", "bank", "amount", "status", "g2p_status", "paid", "reason", "iso20022_reason", "message"];

#[utoipa::path(get, path = "/v1/batches/{batch_id}/reconciliation.csv", tag = "batches", security(("bearer" = [])),
    params(("batch_id" = String, Path, description = "Batch id.", example = "KH-2025-01-007"), ReportQuery),
    responses(
        (status = 200, description = "One row per line (columns: line_no, citizen_id, first_payout_id, payout_id, bin, bank, amount, status, g2p_status, paid, reason, iso20022_reason, message). Import citizen_id as text to keep its leading zero. A cell that would start a spreadsheet formula (=, +, -, @, tab, CR: raw input of a refused line) is written with a leading ' (OWASP CSV injection).", body = String, content_type = "text/csv"),
        (status = 400, description = "Not a batch id, bad `bin`, or an unknown parameter.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Citizen service, or an agency outside the batch's province or program.", body = ErrorBody),
        (status = 404, description = "No such batch.", body = ErrorBody),
    ))]
pub async fn reconciliation_csv(
    State(state): State<ApiState>,
    caller: Caller,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let batch_id = path(p)?;
    let bin = report_bin(&query(q)?)?;
    let views = state.views()?;
    let b = readable_batch(&views, &caller, &batch_id)?;
    let bytes = blocking(move || {
        let (_, lines) = reconcile(&views, b, bin)?;
        let mut w = CsvExport::with_capacity(lines.len() * 96);
        let csv_error = |e: csv::Error| ApiError::Internal(format!("writing the CSV report: {e}"));
        w.row(CSV_COLUMNS).map_err(csv_error)?;
        for l in lines {
            let paid = if l.status == "settled" { "yes" } else { "no" };
            let bank = l.bin.as_deref().and_then(bank_name).unwrap_or_default();
            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
            let row = [
                l.line_no.to_string(),
                l.citizen_id.clone(),
                opt(&l.first_payout_id),
                opt(&l.payout_id),
                opt(&l.bin),
                bank,
                l.amount.clone(),
                l.status.clone(),
                l.g2p_status.clone(),
                paid.to_string(),
                opt(&l.reason),
                opt(&l.iso20022_reason),
                opt(&l.message),
            ];
            w.row(&row).map_err(csv_error)?;
        }
        w.finish().map_err(|e| ApiError::Internal(format!("writing the CSV report: {e}")))
    })
    .await?;
    let disposition = format!("attachment; filename=\"{batch_id}-reconciliation.csv\"");
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()), (header::CONTENT_DISPOSITION, disposition)], bytes).into_response())
}
