//! Handlers of the service routes and of citizens, payouts, budgets, programs and the head.
//! Each checks, in this order: the token (401), the shape of the path (400), the role's scope
//! where it is known before reading (403), existence (404), the scope of what was read (403).

use super::access::Caller;
use super::model::*;
use super::{ApiError, ApiState};
use crate::domain::citizen_id::mask;
use crate::domain::{valid_identifier, CitizenId, Period};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Longest batch, payout or program id accepted in a path.
pub const ID_LEN_MAX: usize = 128;

/// The path parameters, or a 400 that says what was wrong with them.
pub fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v).map_err(|e| ApiError::BadRequest("path_invalid", e.body_text()))
}

/// A batch, payout or program id: 1-128 of `[A-Za-z0-9._:-]`.
pub fn identifier(what: &'static str, raw: &str) -> Result<(), ApiError> {
    if valid_identifier(raw, ID_LEN_MAX) {
        Ok(())
    } else {
        Err(ApiError::BadRequest("identifier_invalid", format!("{what} must be 1-{ID_LEN_MAX} characters of A-Z a-z 0-9 . _ : -")))
    }
}

/// A citizen ID, or a 400 whose code and message say which rule it breaks.
pub fn citizen_id(raw: &str) -> Result<CitizenId, ApiError> {
    CitizenId::parse(raw).map_err(|e| ApiError::BadRequest(e.code(), format!("not a valid citizen ID: {e}")))
}

fn citizen_not_found() -> ApiError {
    ApiError::NotFound("citizen_not_found", "no beneficiary is known under this citizen ID".into())
}

fn payout_not_found() -> ApiError {
    ApiError::NotFound("payout_not_found", "no payout is known under this id".into())
}

#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "The process is up.", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok\n"
}

#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, description = "Ready: the views can be read, and the log and broker (where this process has them) are usable.", body = ReadyOut),
    (status = 503, description = "Not ready, with the reasons.", body = ReadyOut),
))]
pub async fn readyz(State(state): State<ApiState>) -> Response {
    let r = (state.inner.readiness)();
    let mut detail = r.detail;
    let applied = match (state.inner.views)().and_then(|v| v.applied_seq().map_err(|e| e.to_string())) {
        Ok(s) => Some(s),
        Err(e) => {
            detail.push(format!("views cannot be read: {}", super::mask_digit_runs(&e)));
            None
        }
    };
    let ready = applied.is_some() && r.log_writable != Some(false) && r.broker_connected != Some(false);
    let body = ReadyOut { ready, log_writable: r.log_writable, broker_connected: r.broker_connected, views_applied_seq: applied, detail };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, description = "Prometheus text format 0.0.4.", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(State(state): State<ApiState>) -> Response {
    if let Ok(head) = (state.inner.head)() {
        state.inner.metrics.head_seq(head.seq);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.inner.metrics.render()).into_response()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "service", responses((status = 200, description = "This document (OpenAPI 3.1), generated from the handlers.", body = Object)))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi_json()).into_response()
}

pub async fn no_route() -> ApiError {
    ApiError::NotFound("route_not_found", "no such route; the routes are listed at /v1/openapi.json".into())
}

#[utoipa::path(get, path = "/v1/head", tag = "log", security(("bearer" = [])), responses(
    (status = 200, description = "The chain head and how far the views have applied the log.", body = HeadOut),
    (status = 401, description = "Token missing or unknown.", body = ErrorBody),
))]
pub async fn head(State(state): State<ApiState>, _caller: Caller) -> Result<Json<HeadOut>, ApiError> {
    let head = (state.inner.head)().map_err(ApiError::Internal)?;
    let views_applied_seq = state.views()?.applied_seq()?;
    Ok(Json(HeadOut { seq: head.seq, hash: head.hash, views_applied_seq }))
}

#[utoipa::path(get, path = "/v1/citizens/{citizen_id}", tag = "citizens", security(("bearer" = [])),
    params(("citizen_id" = String, Path, description = "12-digit citizen ID (CCCD).", example = "056185000123")),
    responses(
        (status = 200, description = "Enrollments, current account (masked unless auditor), balances per program, payouts by period. An agency sees only the programs of its provinces.", body = CitizenOut),
        (status = 400, description = "Not a citizen ID; `error` is the rule broken (`citizen_id_format`, `citizen_id_unknown_province`).", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "An agency token and no enrollment of this citizen in its provinces and programs (for an old, re-determined number: of the person it now leads to).", body = ErrorBody),
        (status = 404, description = "No beneficiary under this citizen ID (`citizen_not_found`).", body = ErrorBody),
    ))]
pub async fn citizen(State(state): State<ApiState>, caller: Caller, p: Result<Path<String>, PathRejection>) -> Result<Json<CitizenOut>, ApiError> {
    let id = citizen_id(&path(p)?)?;
    tracing::info!(caller = %caller.name, role = caller.role_name(), citizen = %id.masked(), "citizen read");
    let views = state.views()?;
    let view = views.citizen(id.as_str())?.ok_or_else(citizen_not_found)?;
    let forbidden = || ApiError::Forbidden(format!("token {:?} covers no enrollment of this citizen", caller.name));
    if view.reassigned_to.is_some() {
        // An old number holds no enrollment: the scope is that of the person it leads to.
        if caller.role == crate::config::ApiRole::Agency && !covers_any(&caller, &current_person(&views, &view)?) {
            return Err(forbidden());
        }
        return Ok(Json(CitizenOut::old_number(view)));
    }
    Ok(Json(CitizenOut::new(view, &caller).ok_or_else(forbidden)?))
}

/// Most re-determinations followed from an old number to the person's current one.
pub const REASSIGNMENTS_MAX: usize = 16;

/// The view of the person an old number leads to, following re-determinations to the current
/// number (each old number's view points to the next).
fn current_person(
    views: &crate::projection::ViewReader,
    old: &crate::projection::views::CitizenView,
) -> Result<crate::projection::views::CitizenView, ApiError> {
    let mut view = old.clone();
    for _ in 0..REASSIGNMENTS_MAX {
        let Some(next) = view.reassigned_to.clone() else { return Ok(view) };
        view = views
            .citizen(&next)?
            .ok_or_else(|| ApiError::Internal(format!("citizen {} is reassigned to {next}, which has no view", mask(&view.citizen_id))))?;
    }
    Err(ApiError::Internal(format!("citizen {} is re-determined more than {REASSIGNMENTS_MAX} times", mask(&old.citizen_id))))
}

/// Whether an agency's scope covers one of the person's enrollments.
fn covers_any(caller: &Caller, person: &crate::projection::views::CitizenView) -> bool {
    person.enrollments.iter().any(|(program, e)| caller.covers(&e.province, program))
}

#[utoipa::path(get, path = "/v1/citizens/{citizen_id}/payouts/{payout_id}", tag = "citizens", security(("bearer" = [])),
    params(
        ("citizen_id" = String, Path, description = "12-digit citizen ID (CCCD).", example = "056185000123"),
        ("payout_id" = String, Path, description = "A payout of this citizen.", example = "KH-2025-01-007-000001"),
    ),
    responses(
        (status = 200, description = "The payout with its status history (how the citizen service answers \"was my allowance paid\").", body = PayoutOut),
        (status = 400, description = "Not a citizen ID or not a payout id.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "An agency token outside the payout's province or program.", body = ErrorBody),
        (status = 404, description = "No such payout for this citizen.", body = ErrorBody),
    ))]
pub async fn citizen_payout(
    State(state): State<ApiState>,
    caller: Caller,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<PayoutOut>, ApiError> {
    let (raw_id, payout_id) = path(p)?;
    let id = citizen_id(&raw_id)?;
    identifier("payout_id", &payout_id)?;
    tracing::info!(caller = %caller.name, role = caller.role_name(), citizen = %id.masked(), "citizen payout read");
    let payout = state.views()?.payout(&payout_id)?.filter(|p| p.citizen_id == id.as_str()).ok_or_else(payout_not_found)?;
    if caller.role == crate::config::ApiRole::Agency && !caller.covers(&payout.province, &payout.program_id) {
        return Err(ApiError::Forbidden(format!("token {:?} may not read province {} program {}", caller.name, payout.province, payout.program_id)));
    }
    Ok(Json(PayoutOut::new(payout, &caller)))
}

#[utoipa::path(get, path = "/v1/payouts/{payout_id}", tag = "payouts", security(("bearer" = [])),
    params(("payout_id" = String, Path, description = "`<batch_id>-<line_no:06>`, reissues `<root>-R<n>`.", example = "KH-2025-01-007-000001")),
    responses(
        (status = 200, description = "The payout with its status history.", body = PayoutOut),
        (status = 400, description = "Not a payout id.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Citizen service (use the citizen's route), or an agency outside the payout's province or program.", body = ErrorBody),
        (status = 404, description = "No such payout (`payout_not_found`).", body = ErrorBody),
    ))]
pub async fn payout(State(state): State<ApiState>, caller: Caller, p: Result<Path<String>, PathRejection>) -> Result<Json<PayoutOut>, ApiError> {
    let payout_id = path(p)?;
    identifier("payout_id", &payout_id)?;
    caller.require_not_citizen_service("payouts by id (read them under /v1/citizens/{citizen_id}/payouts/)")?;
    let payout = state.views()?.payout(&payout_id)?.ok_or_else(payout_not_found)?;
    caller.require_covers(&payout.province, &payout.program_id)?;
    tracing::info!(caller = %caller.name, role = caller.role_name(), citizen = %mask(&payout.citizen_id), "payout read");
    Ok(Json(PayoutOut::new(payout, &caller)))
}

#[utoipa::path(get, path = "/v1/budgets/{province}/{program_id}/{period}", tag = "budgets", security(("bearer" = [])),
    params(
        ("province" = String, Path, description = "3-digit province code, or `national` for a one-off program's budget at this shard.", example = "056"),
        ("program_id" = String, Path, description = "Program id.", example = "social-allowance"),
        ("period" = String, Path, description = "Benefit month, YYYY-MM.", example = "2025-01"),
    ),
    responses(
        (status = 200, description = "Funded, instructed, settled, released, available.", body = BudgetOut),
        (status = 400, description = "Malformed province, program or period.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Citizen service, or an agency outside this province or program.", body = ErrorBody),
        (status = 404, description = "No such budget (`budget_not_found`).", body = ErrorBody),
    ))]
pub async fn budget(
    State(state): State<ApiState>,
    caller: Caller,
    p: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<Json<BudgetOut>, ApiError> {
    let (province, program_id, period) = path(p)?;
    let national = province == crate::core::state::ONE_OFF_PROVINCE;
    if !national && (province.len() != 3 || !province.bytes().all(|b| b.is_ascii_digit())) {
        return Err(ApiError::BadRequest("province_invalid", "province must be a 3-digit code, e.g. 056, or national (a one-off program)".into()));
    }
    identifier("program_id", &program_id)?;
    let period = Period::parse(&period).map_err(|e| ApiError::BadRequest("period_invalid", format!("period must be YYYY-MM: {e}")))?.to_string();
    caller.require_covers(&province, &program_id)?;
    let b = state
        .views()?
        .budget(&province, &program_id, &period)?
        .ok_or_else(|| ApiError::NotFound("budget_not_found", "no budget for this province, program and period".into()))?;
    Ok(Json(b.into()))
}

#[utoipa::path(get, path = "/v1/programs/{program_id}", tag = "programs", security(("bearer" = [])),
    params(("program_id" = String, Path, description = "Program id.", example = "social-allowance")),
    responses(
        (status = 200, description = "Categories with coefficients and the standard levels by month (public rules).", body = ProgramOut),
        (status = 400, description = "Not a program id.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 404, description = "No such program (`program_not_found`).", body = ErrorBody),
    ))]
pub async fn program(State(state): State<ApiState>, _caller: Caller, p: Result<Path<String>, PathRejection>) -> Result<Json<ProgramOut>, ApiError> {
    let program_id = path(p)?;
    identifier("program_id", &program_id)?;
    let v = state.views()?.program(&program_id)?.ok_or_else(|| ApiError::NotFound("program_not_found", "no program under this id".into()))?;
    Ok(Json(v.into()))
}
