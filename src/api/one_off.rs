//! A one-off program's lines to be paid in cash (issue 12), by commune: the communes with their
//! counts and totals, or one commune's lines, read from their `one_off.cash_listed` records.
//! The auditor, and an agency whose programs include the program, may read them.

use super::access::Caller;
use super::batches::{blocking, query};
use super::model::ErrorBody;
use super::routes::{identifier, path};
use super::{ApiError, ApiState};
use crate::domain::Balance;
use crate::projection::views::CashView;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

const LIMIT_MAX: u32 = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CashQuery {
    /// 5-digit commune code: its lines. Absent: every commune's count and total.
    pub commune: Option<String>,
    /// Lines to skip (from `next_skip`); default 0.
    pub skip: Option<u32>,
    /// 1-1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CashCommuneOut {
    pub commune: String,
    pub lines: u64,
    pub amount: Balance,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CashLineOut {
    pub citizen_id: String,
    /// Whole đồng.
    pub amount: String,
    pub batch_id: String,
    pub line_no: u32,
    /// The seq of its `one_off.cash_listed` record.
    pub seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CashOut {
    pub program_id: String,
    /// One entry per commune, or only the asked one.
    pub communes: Vec<CashCommuneOut>,
    /// The asked commune's lines, in the order they were listed (empty without `commune`).
    pub lines: Vec<CashLineOut>,
    /// `skip` for the next page, when there is one.
    pub next_skip: Option<u64>,
}

fn commune_out(v: &CashView) -> CashCommuneOut {
    CashCommuneOut { commune: v.commune.clone(), lines: v.lines, amount: v.amount }
}

#[utoipa::path(get, path = "/v1/one-off/{program_id}/cash", tag = "one-off", security(("bearer" = [])),
    params(("program_id" = String, Path, description = "One-off program id.", example = "ho-tro-100k-2025"), CashQuery),
    responses(
        (status = 200, description = "Lines to be paid in cash: per commune, or one commune's lines.", body = CashOut),
        (status = 400, description = "Malformed program id, commune, skip or limit.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Citizen service, or an agency whose programs do not include this one.", body = ErrorBody),
        (status = 404, description = "No cash list for this program or commune (`cash_list_not_found`).", body = ErrorBody),
    ))]
pub async fn cash(
    State(state): State<ApiState>,
    caller: Caller,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<CashQuery>, QueryRejection>,
) -> Result<Json<CashOut>, ApiError> {
    let program_id = path(p)?;
    identifier("program_id", &program_id)?;
    let q = query(q)?;
    if let Some(c) = &q.commune {
        if c.len() != 5 || !c.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::BadRequest("commune_invalid", "commune must be a 5-digit code, e.g. 26734".into()));
        }
    }
    let limit = match q.limit.unwrap_or(100) {
        n @ 1..=LIMIT_MAX => n as usize,
        n => return Err(ApiError::BadRequest("limit_out_of_range", format!("limit must be 1-{LIMIT_MAX}, got {n}"))),
    };
    let skip = q.skip.unwrap_or(0) as usize;
    caller.require_covers(crate::core::state::ONE_OFF_PROVINCE, &program_id)?;
    let views = state.views()?;
    blocking(move || {
        let not_found = || ApiError::NotFound("cash_list_not_found", "no lines to be paid in cash for this program and commune".into());
        match q.commune {
            None => {
                let communes = views.cash_communes(&program_id)?;
                if communes.is_empty() {
                    return Err(not_found());
                }
                Ok(Json(CashOut { program_id, communes: communes.iter().map(commune_out).collect(), lines: Vec::new(), next_skip: None }))
            }
            Some(commune) => {
                let view = views.cash(&program_id, &commune)?.ok_or_else(not_found)?;
                let lines = views.cash_lines(&program_id, &commune, skip, limit)?;
                let end = (skip + lines.len()) as u64;
                let next_skip = (end < view.lines).then_some(end);
                let lines = lines
                    .into_iter()
                    .map(|l| CashLineOut { citizen_id: l.citizen_id, amount: l.amount.to_string(), batch_id: l.batch_id, line_no: l.line_no, seq: l.seq })
                    .collect();
                Ok(Json(CashOut { program_id, communes: vec![commune_out(&view)], lines, next_skip }))
            }
        }
    })
    .await
}
