//! Who is asking: bearer tokens from the config, each mapped to a role and, for an agency, the
//! provinces and programs it may read. Tokens are matched by their SHA-256, so the process keeps
//! no token in memory longer than a request and a config may hold only the hash.

use super::ApiError;
use super::ApiState;
use crate::config::{ApiRole, ApiToken};
use crate::log::chain::sha256_hex;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Longest `Authorization` header value looked at; anything longer is not one of our tokens.
const AUTHORIZATION_LEN_MAX: usize = 1_024;

/// What one token grants.
#[derive(Debug)]
pub struct Grant {
    /// Who holds the token (from the config); logged, unlike the token.
    pub name: String,
    pub role: ApiRole,
    provinces: BTreeSet<String>,
    programs: BTreeSet<String>,
}

impl Grant {
    /// May read everything of this province and program (batches, payouts, budgets).
    pub fn covers(&self, province: &str, program_id: &str) -> bool {
        match self.role {
            ApiRole::Auditor => true,
            // A one-off program is national (issue 12): its budget, batches and payouts carry
            // province `national`, and an agency of the program reads them whatever its provinces.
            ApiRole::Agency if province == crate::core::state::ONE_OFF_PROVINCE => self.programs.contains(program_id),
            ApiRole::Agency => self.provinces.contains(province) && self.programs.contains(program_id),
            ApiRole::CitizenService => false,
        }
    }

    /// Sees bank account numbers in full (everyone else gets the last 4 characters).
    pub fn sees_accounts(&self) -> bool {
        self.role == ApiRole::Auditor
    }

    pub fn role_name(&self) -> &'static str {
        match self.role {
            ApiRole::Auditor => "auditor",
            ApiRole::Agency => "agency",
            ApiRole::CitizenService => "citizen_service",
        }
    }

    /// Refuses roles that may not list or read whole batches (the citizen service reads one
    /// citizen at a time).
    pub fn require_not_citizen_service(&self, what: &str) -> Result<(), ApiError> {
        if self.role == ApiRole::CitizenService {
            return Err(ApiError::Forbidden(format!("role citizen_service reads one citizen at a time and may not read {what}")));
        }
        Ok(())
    }

    /// Refuses a province and program outside the caller's scope.
    pub fn require_covers(&self, province: &str, program_id: &str) -> Result<(), ApiError> {
        self.require_not_citizen_service("this resource")?;
        if !self.covers(province, program_id) {
            return Err(ApiError::Forbidden(format!("token {:?} may not read province {province} program {program_id}", self.name)));
        }
        Ok(())
    }
}

/// Token hash -> grant.
#[derive(Debug, Default)]
pub struct Access {
    by_sha256: HashMap<String, Arc<Grant>>,
}

impl Access {
    /// From the `[[api.tokens]]` entries (already checked by `Config::load`).
    pub fn new(tokens: &[ApiToken]) -> Access {
        let by_sha256 = tokens
            .iter()
            .map(|t| {
                let grant = Grant {
                    name: t.name.clone(),
                    role: t.role,
                    provinces: t.provinces.iter().cloned().collect(),
                    programs: t.programs.iter().cloned().collect(),
                };
                (t.sha256(), Arc::new(grant))
            })
            .collect();
        Access { by_sha256 }
    }

    pub fn is_empty(&self) -> bool {
        self.by_sha256.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_sha256.len()
    }

    fn find(&self, token: &str) -> Option<Arc<Grant>> {
        self.by_sha256.get(&sha256_hex(token.as_bytes())).cloned()
    }
}

/// The token of an `Authorization` header value `Bearer <token>`. The scheme is
/// case-insensitive (RFC 7235 §2.1: `bearer`, `BEARER`); one or more spaces or tabs separate it
/// from the token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once([' ', '\t'])?;
    let token = token.trim_matches([' ', '\t']);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The authenticated caller of a `/v1` route. Extracting it answers 401 when the token is
/// missing, malformed or unknown.
pub struct Caller(pub Arc<Grant>);

impl std::ops::Deref for Caller {
    type Target = Grant;
    fn deref(&self) -> &Grant {
        &self.0
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Caller, ApiError> {
        let access = &state.inner.access;
        if access.is_empty() {
            return Err(ApiError::Unauthenticated("no API tokens are configured on this server: add an [[api.tokens]] entry to the config".into()));
        }
        let header =
            parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| ApiError::Unauthenticated("send Authorization: Bearer <token>".into()))?;
        let token = header
            .to_str()
            .ok()
            .filter(|h| h.len() <= AUTHORIZATION_LEN_MAX)
            .and_then(bearer_token)
            .ok_or_else(|| ApiError::Unauthenticated("the Authorization header must be: Bearer <token>".into()))?;
        let grant = access.find(token).ok_or_else(|| ApiError::Unauthenticated("the token is not known".into()))?;
        Ok(Caller(grant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(role: ApiRole, provinces: &[&str], programs: &[&str]) -> ApiToken {
        ApiToken {
            name: "t".into(),
            token: Some("x".repeat(40)),
            token_sha256: None,
            role,
            provinces: provinces.iter().map(|s| s.to_string()).collect(),
            programs: programs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER abc", "bEaReR   abc  ", "Bearer\tabc"] {
            assert_eq!(bearer_token(value), Some("abc"), "{value:?}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", "Bearerabc", "abc", "", "Token abc"] {
            assert_eq!(bearer_token(value), None, "{value:?}");
        }
    }

    #[test]
    fn scope_per_role() {
        let access = Access::new(&[token(ApiRole::Agency, &["056"], &["social-allowance"])]);
        let agency = access.find(&"x".repeat(40)).expect("the configured token is found");
        assert!(agency.covers("056", "social-allowance"));
        assert!(!agency.covers("079", "social-allowance"));
        assert!(!agency.covers("056", "other"));
        assert!(access.find("y").is_none());
        let auditor = Access::new(&[token(ApiRole::Auditor, &[], &[])]).find(&"x".repeat(40)).expect("found");
        assert!(auditor.covers("079", "anything") && auditor.sees_accounts());
        let service = Access::new(&[token(ApiRole::CitizenService, &[], &[])]).find(&"x".repeat(40)).expect("found");
        assert!(!service.covers("056", "social-allowance") && !service.sees_accounts());
    }
}
