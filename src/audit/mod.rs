//! Auditor's tools (issue 4): export the log, verify it with no trust in the engine, replay it
//! into fresh views as of any point, rebuild the live views, and keep chain checkpoints.
//!
//! Nothing here goes through `Engine::open`, which rebuilds the decision state and would itself
//! stop on corrupt data: verification reads the `journal` tree of sled directly (`source`),
//! re-derives every hash from the JSON (`chain`), and replays the events into views in a
//! temporary sled store of its own (`scratch`), which it compares with the live `views` tree.
//!
//! - `export`: the stored bytes of each record, one per line (already the audit format).
//! - `verify`: seq continuity, prev_hash links, hashes, head, checkpoints, views, ledger.
//! - `replay`: the views as they stood after seq N, or after every event up to a time.
//! - `checkpoint`: `{seq, hash, recorded_at}` in the `checkpoints` tree, every
//!   `engine.checkpoint_every_events` events and on demand; `checkpoints_since` for publishers.
//! - `national`: the national checkpoint (every shard's head in one hashed record, issue 12).
//! - `rebuild`: drop the live views and replay the whole log into them.

pub mod chain;
pub mod checkpoint;
pub mod export;
pub mod national;
pub mod replay;
pub mod scratch;
pub mod source;
pub mod time;
pub mod verify;

pub use chain::Failure;
pub use checkpoint::{checkpoints_since, Checkpoint};
pub use source::Source;

use crate::log::LogError;
use crate::projection::{ViewError, Views};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path} is not an ansinh data directory (no sled database in it); pass the right --data-dir, or --file EXPORT.jsonl")]
    NotADataDir { path: PathBuf },
    #[error("cannot open the data directory {path}: {source} (if an engine is running on it, stop it or audit a copy or an export)")]
    Open { path: PathBuf, source: sled::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write the export: {0}")]
    Write(std::io::Error),
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Views(#[from] ViewError),
    #[error("cannot create a temporary store in {path}: {source} (set TMPDIR to a writable directory with room for a copy of the views)")]
    Scratch { path: PathBuf, source: std::io::Error },
    /// The request itself cannot be served (a seq past the head, an empty log, ...).
    #[error("{0}")]
    Invalid(String),
}

impl AuditError {
    /// The data dir is held by a running engine (sled's exclusive lock): read it through that
    /// engine's API, or stop it.
    pub fn is_in_use(&self) -> bool {
        matches!(self, AuditError::Open { source: sled::Error::Io(e), .. } if e.to_string().contains("could not acquire lock"))
    }
}

/// Sled page cache used by the audit tools when the caller has no configured value.
pub const CACHE_CAPACITY_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// Opens an existing data directory with sled directly, with the settings of
/// `engine::open_db` (the on-disk format does not depend on them). Refuses a path with no
/// database in it: sled would silently create an empty one, which would then "verify".
pub fn open_data_dir(path: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, AuditError> {
    if !path.join("db").is_file() && !path.join("conf").is_file() {
        return Err(AuditError::NotADataDir { path: path.to_path_buf() });
    }
    let config = crate::engine::sled_config(path, cache_capacity_bytes);
    // sled releases its lock file when the last background task of a closed database ends, a
    // moment after the close: a reopen right after one (tests, a command after another in the
    // same process) waits for that, boundedly. A live engine holds it for good: then we fail.
    let mut attempts = 0;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if attempts < OPEN_LOCK_RETRIES && e.to_string().contains("could not acquire lock") => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            result => return result.map_err(|source| AuditError::Open { path: path.to_path_buf(), source }),
        }
    }
}

/// How many times (100 ms apart) opening a data dir is retried while its lock is held.
const OPEN_LOCK_RETRIES: u32 = 20;

/// What a rebuild did.
#[derive(Clone, Copy, Debug)]
pub struct RebuildSummary {
    pub events: u64,
    pub elapsed: std::time::Duration,
}

/// Drops every view and replays the whole log into them (the engine's own catch-up path, from
/// seq 1). The log is opened with `Log::open`, which checks the head against the last record:
/// rebuild trusts a log that `audit verify` has passed, it does not verify it. Interrupting a
/// rebuild is safe: views and their applied seq are written together, so the next open
/// catches up from where it stopped.
pub fn rebuild(db: &sled::Db, progress: &mut dyn FnMut(u64)) -> Result<RebuildSummary, AuditError> {
    let started = std::time::Instant::now();
    let log = crate::log::Log::open(db)?;
    db.drop_tree("views")?;
    let views = Views::open(db, &log, progress)?;
    db.flush()?;
    Ok(RebuildSummary { events: views.applied(), elapsed: started.elapsed() })
}

/// Events per second, for the figures the CLI prints.
pub fn per_second(events: u64, elapsed: std::time::Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return events;
    }
    (events as f64 / secs).round() as u64
}
