//! `/v1/nation/...`: a citizen across every shard (issue 12), with no second source of truth.
//! Each shard's API answers from its own data only; these routes ask every shard listed in
//! `[shards]` (its `api_listen`, this shard included) the same question on the shard's own
//! citizen route, with the caller's own `Authorization` header, so each shard applies the
//! caller's role and scope itself; then they label each answer by shard and merge them.
//!
//! A shard that cannot be reached, does not answer within [`SHARD_TIMEOUT`], answers 5xx, or
//! does not know the token is *missing*: the answer is then `"complete": false` with the
//! missing shards named, HTTP 200 as long as one shard answered. When none answered: 502
//! `no_shard_answered`. When every shard answered and none holds the citizen: 404 as the
//! shard's own route; when the only answers besides "not found" are 403: 403.

use super::access::Caller;
use super::model::ErrorBody;
use super::routes::{citizen_id, identifier, path};
use super::{ApiError, ApiState};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;

/// Longest a shard is waited for.
pub const SHARD_TIMEOUT: Duration = Duration::from_secs(5);

/// The shards' APIs, in config order.
#[derive(Clone, Debug)]
pub struct Nation {
    peers: Vec<(String, String)>,
    timeout: Duration,
}

impl Nation {
    /// `(name, api_listen)` of each shard, in config order.
    pub fn new(peers: Vec<(String, String)>, timeout: Duration) -> Nation {
        Nation { peers, timeout }
    }

    /// From `[shards]`; `None` when the config has none (the nation routes then answer 404).
    pub fn from_shards(shards: &crate::shard::ShardsSection) -> Option<Nation> {
        (!shards.is_empty()).then(|| Nation::new(shards.shard.iter().map(|s| (s.name.clone(), s.api_listen.clone())).collect(), SHARD_TIMEOUT))
    }
}

/// What one shard said.
enum Answer {
    Found(Value),
    NotFound,
    Forbidden(String),
    Missing(Option<u16>, String),
}

async fn ask_all(state: &ApiState, path: &str, headers: &HeaderMap) -> Result<Vec<(String, Answer)>, ApiError> {
    let nation = state
        .inner
        .nation
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("nation_not_configured", "this server's config has no [shards]: read the citizen under /v1/citizens/".into()))?;
    let authorization = headers.get(header::AUTHORIZATION);
    let asks = nation.peers.iter().map(|(name, addr)| async move {
        let answer = match super::client::get(addr, path, authorization, nation.timeout).await {
            Err(why) => Answer::Missing(None, why),
            Ok((status, body)) => classify(status, &body),
        };
        (name.clone(), answer)
    });
    Ok(futures_util::future::join_all(asks).await)
}

fn classify(status: StatusCode, body: &[u8]) -> Answer {
    let error = || serde_json::from_slice::<ErrorBody>(body).map(|e| (e.error, e.message)).unwrap_or_default();
    match status {
        StatusCode::OK => match serde_json::from_slice(body) {
            Ok(v) => Answer::Found(v),
            Err(e) => Answer::Missing(Some(200), format!("the answer is not JSON: {e}")),
        },
        StatusCode::NOT_FOUND => match error() {
            (code, _) if code == "citizen_not_found" || code == "payout_not_found" => Answer::NotFound,
            (code, m) => Answer::Missing(Some(404), format!("{code}: {m} (is the shard running this version?)")),
        },
        StatusCode::FORBIDDEN => Answer::Forbidden(error().1),
        s => {
            let (code, m) = error();
            Answer::Missing(Some(s.as_u16()), if code.is_empty() { format!("answered {s}") } else { format!("{code}: {m}") })
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShardAnswerOut {
    pub shard: String,
    /// found | not_found | forbidden | missing
    pub answer: String,
    /// The shard's HTTP status; `null` when it gave none (unreachable, timed out).
    pub http_status: Option<u16>,
    /// Why a shard is missing or refused.
    pub detail: Option<String>,
}

/// What the shards said, and whether every one of them answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Coverage {
    /// False when a shard did not answer: what it holds is not in this answer.
    pub complete: bool,
    /// The shards that did not answer, by name.
    pub missing: Vec<String>,
    /// One entry per shard of `[shards]`, in config order.
    pub shards: Vec<ShardAnswerOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ShardCitizenOut {
    pub shard: String,
    /// That shard's answer to `GET /v1/citizens/{citizen_id}` (`CitizenOut`), unchanged.
    #[schema(value_type = Object)]
    pub citizen: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NationCitizenOut {
    pub citizen_id: String,
    #[serde(flatten)]
    pub coverage: Coverage,
    /// The shards that hold this citizen, each with its own answer.
    pub found: Vec<ShardCitizenOut>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NationPayoutOut {
    /// The shard holding the payout.
    #[serde(default)]
    pub shard: String,
    /// Benefit month (YYYY-MM) it pays.
    #[serde(default)]
    pub period: String,
    pub payout_id: String,
    pub program_id: String,
    /// Whole đồng as a decimal string.
    pub amount: Option<String>,
    /// instructed | settled | failed | returned | written_off
    pub status: String,
    /// G2P Connect: pdng | succ | rjct
    pub g2p_status: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NationPayoutsOut {
    pub citizen_id: String,
    #[serde(flatten)]
    pub coverage: Coverage,
    /// Every payout of the citizen the caller may see, from every shard that answered, by
    /// shard (config order), then period, then payout id.
    pub payouts: Vec<NationPayoutOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NationOnePayoutOut {
    /// The shard holding the payout.
    pub shard: String,
    #[serde(flatten)]
    pub coverage: Coverage,
    /// That shard's answer to `GET /v1/citizens/{citizen_id}/payouts/{payout_id}` (`PayoutOut`).
    #[schema(value_type = Object)]
    pub payout: Value,
}

/// Splits the answers into the found ones and the coverage, or the error status when no answer
/// can be given: 502 none answered; 404 every shard answered, none has it; 403 the rest refused.
fn cover(answers: Vec<(String, Answer)>, not_found: fn() -> ApiError) -> Result<(Coverage, Vec<(String, Value)>), ApiError> {
    let mut found = Vec::new();
    let mut shards = Vec::new();
    let mut missing = Vec::new();
    let mut forbidden = None;
    for (shard, answer) in answers {
        let (label, http_status, detail) = match answer {
            Answer::Found(v) => {
                found.push((shard.clone(), v));
                ("found", Some(200), None)
            }
            Answer::NotFound => ("not_found", Some(404), None),
            Answer::Forbidden(m) => {
                forbidden.get_or_insert_with(|| m.clone());
                ("forbidden", Some(403), Some(m))
            }
            Answer::Missing(status, why) => {
                missing.push(shard.clone());
                ("missing", status, Some(why))
            }
        };
        shards.push(ShardAnswerOut { shard, answer: label.into(), http_status, detail });
    }
    if missing.len() == shards.len() {
        let why: Vec<String> = shards.iter().map(|s| format!("{}: {}", s.shard, s.detail.as_deref().unwrap_or(""))).collect();
        return Err(ApiError::BadGateway(format!("no shard answered ({})", why.join("; "))));
    }
    if found.is_empty() && missing.is_empty() {
        return Err(match forbidden {
            Some(m) => ApiError::Forbidden(m),
            None => not_found(),
        });
    }
    Ok((Coverage { complete: missing.is_empty(), missing, shards }, found))
}

fn citizen_not_found() -> ApiError {
    ApiError::NotFound("citizen_not_found", "no shard knows a beneficiary under this citizen ID".into())
}

fn payout_not_found() -> ApiError {
    ApiError::NotFound("payout_not_found", "no shard knows this payout for this citizen".into())
}

#[utoipa::path(get, path = "/v1/nation/citizens/{citizen_id}", tag = "nation", security(("bearer" = [])),
    params(("citizen_id" = String, Path, description = "12-digit citizen ID (CCCD).", example = "056185000123")),
    responses(
        (status = 200, description = "Each shard's own answer for this citizen, labeled by shard; `complete` is false and `missing` names the shards that did not answer.", body = NationCitizenOut),
        (status = 400, description = "Not a citizen ID.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Every shard that knows the citizen refused the token's scope.", body = ErrorBody),
        (status = 404, description = "Every shard answered and none knows the citizen (`citizen_not_found`), or this server has no [shards] (`nation_not_configured`).", body = ErrorBody),
        (status = 502, description = "No shard answered (`no_shard_answered`).", body = ErrorBody),
    ))]
pub async fn citizen(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<NationCitizenOut>, ApiError> {
    let id = citizen_id(&path(p)?)?;
    tracing::info!(caller = %caller.name, role = caller.role_name(), citizen = %id.masked(), "nation citizen read");
    let answers = ask_all(&state, &format!("/v1/citizens/{}", id.as_str()), &headers).await?;
    let (coverage, found) = cover(answers, citizen_not_found)?;
    let found = found.into_iter().map(|(shard, citizen)| ShardCitizenOut { shard, citizen }).collect();
    Ok(Json(NationCitizenOut { citizen_id: id.as_str().to_string(), coverage, found }))
}

#[utoipa::path(get, path = "/v1/nation/citizens/{citizen_id}/payouts", tag = "nation", security(("bearer" = [])),
    params(("citizen_id" = String, Path, description = "12-digit citizen ID (CCCD).", example = "056185000123")),
    responses(
        (status = 200, description = "The citizen's payouts from every shard that answered, each labeled with its shard; `complete` is false and `missing` names the shards that did not answer.", body = NationPayoutsOut),
        (status = 400, description = "Not a citizen ID.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "Every shard that knows the citizen refused the token's scope.", body = ErrorBody),
        (status = 404, description = "Every shard answered and none knows the citizen, or this server has no [shards].", body = ErrorBody),
        (status = 502, description = "No shard answered (`no_shard_answered`).", body = ErrorBody),
    ))]
pub async fn payouts(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<NationPayoutsOut>, ApiError> {
    let id = citizen_id(&path(p)?)?;
    tracing::info!(caller = %caller.name, role = caller.role_name(), citizen = %id.masked(), "nation payouts read");
    let answers = ask_all(&state, &format!("/v1/citizens/{}", id.as_str()), &headers).await?;
    let (mut coverage, found) = cover(answers, citizen_not_found)?;
    let mut payouts = Vec::new();
    for (shard, citizen) in found {
        let by_period = citizen.get("payouts_by_period").cloned().unwrap_or(Value::Null);
        match serde_json::from_value::<BTreeMap<String, Vec<NationPayoutOut>>>(by_period) {
            Ok(map) => payouts.extend(
                map.into_iter().flat_map(|(period, list)| list.into_iter().map(move |p| (period.clone(), p))).map(|(period, p)| NationPayoutOut {
                    shard: shard.clone(),
                    period,
                    ..p
                }),
            ),
            Err(e) => {
                // A shard whose answer we cannot read is as good as missing: say so.
                coverage.complete = false;
                coverage.missing.push(shard.clone());
                if let Some(s) = coverage.shards.iter_mut().find(|s| s.shard == shard) {
                    s.answer = "missing".into();
                    s.detail = Some(format!("its payouts_by_period could not be read: {e}"));
                }
            }
        }
    }
    Ok(Json(NationPayoutsOut { citizen_id: id.as_str().to_string(), coverage, payouts }))
}

#[utoipa::path(get, path = "/v1/nation/citizens/{citizen_id}/payouts/{payout_id}", tag = "nation", security(("bearer" = [])),
    params(
        ("citizen_id" = String, Path, description = "12-digit citizen ID (CCCD).", example = "056185000123"),
        ("payout_id" = String, Path, description = "A payout of this citizen.", example = "KH-2025-01-007-000001"),
    ),
    responses(
        (status = 200, description = "The payout with its status history from the shard that holds it, labeled with that shard.", body = NationOnePayoutOut),
        (status = 400, description = "Not a citizen ID or not a payout id.", body = ErrorBody),
        (status = 401, description = "Token missing or unknown.", body = ErrorBody),
        (status = 403, description = "The shard holding it refused the token's scope.", body = ErrorBody),
        (status = 404, description = "Every shard answered and none has this payout for this citizen, or this server has no [shards].", body = ErrorBody),
        (status = 502, description = "No shard answered, or the payout was not found in the shards that answered while others did not (`no_shard_answered`).", body = ErrorBody),
    ))]
pub async fn payout(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<NationOnePayoutOut>, ApiError> {
    let (raw_id, payout_id) = path(p)?;
    let id = citizen_id(&raw_id)?;
    identifier("payout_id", &payout_id)?;
    tracing::info!(caller = %caller.name, role = caller.role_name(), citizen = %id.masked(), "nation payout read");
    let answers = ask_all(&state, &format!("/v1/citizens/{}/payouts/{payout_id}", id.as_str()), &headers).await?;
    let (coverage, found) = cover(answers, payout_not_found)?;
    match found.into_iter().next() {
        Some((shard, payout)) => Ok(Json(NationOnePayoutOut { shard, coverage, payout })),
        // One payout lives in one shard: not found among those that answered says nothing of
        // those that did not.
        None => Err(ApiError::BadGateway(format!("the payout is not in the shards that answered; {} did not answer", coverage.missing.join(", ")))),
    }
}
