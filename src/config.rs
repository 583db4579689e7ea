//! `config/ansinh.toml`: every setting with its default written out. A missing file means the
//! defaults; an unknown key is an error (a typo must not silently fall back to a default).

use crate::core::Limits;
use crate::engine::EngineOptions;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub engine: EngineSection,
    pub limits: Limits,
    pub bus: crate::bus::BusConfig,
    pub api: ApiSection,
    /// Which shards exist and what each owns (issue 12); empty: one unsharded engine.
    pub shards: crate::shard::ShardsSection,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Where sled keeps the log and the views.
    pub data_dir: PathBuf,
    /// Most commands decided, appended and flushed together (group commit).
    pub group_commands_max: usize,
    /// sled page cache in MiB.
    pub cache_capacity_mb: u64,
    /// A chain checkpoint (seq, hash, time) is recorded when an append crosses a multiple of
    /// this many events; 0 records none (see `audit::checkpoint`).
    pub checkpoint_every_events: u64,
}

impl Default for EngineSection {
    fn default() -> EngineSection {
        EngineSection { data_dir: PathBuf::from("ansinh-data"), group_commands_max: 1_000, cache_capacity_mb: 256, checkpoint_every_events: 100_000 }
    }
}

/// The read-only HTTP API (`ansinh api`, and inside `ansinh serve`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Address to listen on; loopback unless a proxy in front terminates TLS.
    pub listen: String,
    /// Bearer tokens and the role each grants. None by default: every `/v1` request is a 401.
    pub tokens: Vec<ApiToken>,
}

impl Default for ApiSection {
    fn default() -> ApiSection {
        ApiSection { listen: "127.0.0.1:8080".into(), tokens: Vec::new() }
    }
}

/// Shortest token accepted: a guessable token is refused at start-up, not in production.
pub const API_TOKEN_LEN_MIN: usize = 32;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// Who holds the token; appears in logs (the token never does).
    pub name: String,
    /// The token itself, or (better, so the file holds no secret) its SHA-256 in `token_sha256`.
    #[serde(default)]
    pub token: Option<String>,
    /// Lowercase hex SHA-256 of the token.
    #[serde(default)]
    pub token_sha256: Option<String>,
    pub role: ApiRole,
    /// Agency only: the provinces and programs it may read.
    #[serde(default)]
    pub provinces: Vec<String>,
    #[serde(default)]
    pub programs: Vec<String>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// Everything, unmasked.
    Auditor,
    /// Its provinces and programs: citizens enrolled there, their batches, payouts and budgets.
    Agency,
    /// One citizen at a time by citizen ID; no listing.
    CitizenService,
}

impl ApiToken {
    /// What is wrong with this entry, if anything.
    fn problem(&self) -> Option<String> {
        let who = &self.name;
        match (&self.token, &self.token_sha256) {
            (Some(_), Some(_)) | (None, None) => return Some(format!("api.tokens {who:?}: give exactly one of token and token_sha256")),
            (Some(t), None) if t.chars().count() < API_TOKEN_LEN_MIN || t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Some(format!("api.tokens {who:?}: token must be at least {API_TOKEN_LEN_MIN} characters without spaces (e.g. `openssl rand -hex 32`)"))
            }
            (None, Some(h)) if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
                return Some(format!("api.tokens {who:?}: token_sha256 must be 64 lowercase hex digits"))
            }
            _ => {}
        }
        let scoped = !self.provinces.is_empty() || !self.programs.is_empty();
        match self.role {
            ApiRole::Agency if self.provinces.is_empty() || self.programs.is_empty() => {
                Some(format!("api.tokens {who:?}: an agency needs provinces and programs"))
            }
            ApiRole::Auditor | ApiRole::CitizenService if scoped => Some(format!("api.tokens {who:?}: provinces and programs apply to role agency only")),
            _ => None,
        }
    }

    /// Lowercase hex SHA-256 of the token: what requests are matched against.
    pub fn sha256(&self) -> String {
        match (&self.token, &self.token_sha256) {
            (Some(t), _) => crate::log::chain::sha256_hex(t.as_bytes()),
            (None, Some(h)) => h.clone(),
            (None, None) => String::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path} is not valid: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("config {path}: {what}")]
    Invalid { path: PathBuf, what: String },
}

impl Config {
    /// Loads `path`; when `path` is the default location and absent, the defaults apply.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(Config::default()),
            Err(source) => return Err(ConfigError::Read { path: path.to_path_buf(), source }),
        };
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_path_buf(), source })?;
        let invalid = |what: &str| ConfigError::Invalid { path: path.to_path_buf(), what: what.to_string() };
        if config.engine.group_commands_max == 0 || config.engine.group_commands_max > 100_000 {
            return Err(invalid("engine.group_commands_max must be 1-100000"));
        }
        // Line numbers are 6 digits in payout ids (`<batch_id>-<line_no:06>`).
        if config.limits.batch_lines_max == 0 || config.limits.batch_lines_max > 999_999 {
            return Err(invalid("limits.batch_lines_max must be 1-999999"));
        }
        if config.limits.settlement_items_max == 0 || config.limits.settlement_items_max > 1_000_000 {
            return Err(invalid("limits.settlement_items_max must be 1-1000000"));
        }
        if config.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid("api.listen must be an address and port, e.g. 127.0.0.1:8080"));
        }
        if let Some(problem) = config.api.tokens.iter().find_map(ApiToken::problem) {
            return Err(invalid(&problem));
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = config.api.tokens.iter().find(|t| !seen.insert(t.sha256())) {
            return Err(invalid(&format!("api.tokens {:?}: the same token is configured twice", dup.name)));
        }
        if let Some(problem) = config.shards.problem() {
            return Err(invalid(&problem));
        }
        Ok(config)
    }

    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            data_dir: self.engine.data_dir.clone(),
            limits: self.limits,
            cache_capacity_bytes: self.engine.cache_capacity_mb * 1024 * 1024,
            checkpoint_every_events: self.engine.checkpoint_every_events,
            ownership: crate::shard::Ownership::everything(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_equals_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ansinh.toml");
        assert_eq!(Config::load(&path, true).unwrap(), Config::default());
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Config::load(file.path(), true)
    }

    #[test]
    fn api_tokens_are_checked_at_load() {
        let token = |extra: &str| format!("[[api.tokens]]\nname = \"a\"\n{extra}\n");
        let strong = "token = \"0123456789abcdef0123456789abcdef\"";
        let ok = load_text(&token(&format!("{strong}\nrole = \"agency\"\nprovinces = [\"056\"]\nprograms = [\"p\"]"))).unwrap();
        assert_eq!(ok.api.tokens[0].role, ApiRole::Agency);
        assert_eq!(ok.api.tokens[0].sha256(), crate::log::chain::sha256_hex(b"0123456789abcdef0123456789abcdef"));
        let hashed = format!("token_sha256 = \"{}\"\nrole = \"auditor\"", "ab".repeat(32));
        assert!(load_text(&token(&hashed)).is_ok());
        let refused = [
            "token = \"short\"\nrole = \"auditor\"".to_string(),
            format!("{strong}\nrole = \"agency\""),
            format!("{strong}\nrole = \"auditor\"\nprovinces = [\"056\"]"),
            format!("{strong}\n{hashed}"),
            "role = \"auditor\"".to_string(),
            format!("{strong}\nrole = \"admin\""),
        ];
        for body in refused {
            assert!(load_text(&token(&body)).is_err(), "accepted: {body}");
        }
        let twice = format!("{}{}", token(&format!("{strong}\nrole = \"auditor\"")), token(&format!("{strong}\nrole = \"citizen_service\"")));
        assert!(load_text(&twice).unwrap_err().to_string().contains("configured twice"));
        assert!(load_text("[api]\nlisten = \"localhost\"\n").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("[engine]\ngroup_comands_max = 5\n").is_err());
    }
}
