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
}

impl Default for EngineSection {
    fn default() -> EngineSection {
        EngineSection { data_dir: PathBuf::from("ansinh-data"), group_commands_max: 1_000, cache_capacity_mb: 256 }
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
        if config.limits.batch_lines_max == 0 || config.limits.batch_lines_max > 1_000_000 {
            return Err(invalid("limits.batch_lines_max must be 1-1000000"));
        }
        if config.limits.settlement_items_max == 0 || config.limits.settlement_items_max > 1_000_000 {
            return Err(invalid("limits.settlement_items_max must be 1-1000000"));
        }
        Ok(config)
    }

    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions { data_dir: self.engine.data_dir.clone(), limits: self.limits, cache_capacity_bytes: self.engine.cache_capacity_mb * 1024 * 1024 }
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

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("[engine]\ngroup_comands_max = 5\n").is_err());
    }
}
