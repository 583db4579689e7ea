//! Chain checkpoints: `{seq, hash, recorded_at}` of the log head, kept in the `checkpoints`
//! tree (key: seq big-endian, value: the JSON below). Recorded by the engine after an append
//! that crosses a multiple of `engine.checkpoint_every_events`, and on demand
//! (`ansinh audit checkpoint`). Their worth is outside this machine: `ansinh serve` publishes
//! them (`checkpoints_since`), an auditor keeps them and later runs
//! `ansinh audit verify --head SEQ:HASH`, which fails if the log no longer passes through them.
//! `audit verify` also checks every stored checkpoint against the chain.
//!
//! `recorded_at` is wall-clock time read by the shell (never by `decide`); it says when the
//! head was observed, not when its events happened (their own `at` says that).

use super::AuditError;
use crate::log::Head;
use serde::{Deserialize, Serialize};

pub const TREE: &str = "checkpoints";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    /// RFC 3339 UTC, seconds.
    pub recorded_at: String,
}

impl Checkpoint {
    /// `SEQ:HASH`, the form `audit verify --head` takes.
    pub fn as_head_arg(&self) -> String {
        format!("{}:{}", self.seq, self.hash)
    }
}

/// Records a checkpoint of `head` now, unless one is already stored at that seq (which is then
/// returned unchanged: the first observation of a head is kept). Not flushed: the caller decides.
pub fn record(db: &sled::Db, head: &Head) -> Result<(Checkpoint, bool), AuditError> {
    let tree = db.open_tree(TREE)?;
    if let Some(existing) = tree.get(head.seq.to_be_bytes())? {
        return Ok((decode(head.seq, &existing)?, false));
    }
    let checkpoint = Checkpoint { seq: head.seq, hash: head.hash.clone(), recorded_at: crate::timefmt::now_rfc3339() };
    tree.insert(head.seq.to_be_bytes(), serde_json::to_vec(&checkpoint).expect("a checkpoint serializes"))?;
    Ok((checkpoint, true))
}

/// The engine's hook, called after a group of `appended` events became durable with `head` as
/// its last record: records a checkpoint when the group crossed a multiple of `every` (0: off).
/// A failure is logged, not returned: the group is durable and must be answered; the next
/// crossing records the next checkpoint.
pub fn after_append(db: &sled::Db, head: &Head, appended: u64, every: u64) {
    if every == 0 || appended == 0 {
        return;
    }
    let before = head.seq.saturating_sub(appended);
    if before / every == head.seq / every {
        return;
    }
    match record(db, head) {
        Ok((c, _)) => tracing::info!(seq = c.seq, hash = %c.hash, "chain checkpoint recorded"),
        Err(e) => tracing::warn!(seq = head.seq, error = %e, "could not record a chain checkpoint"),
    }
}

/// Checkpoints with a seq greater than `after_seq`, in seq order: what a publisher has not sent
/// yet (`ansinh serve` keeps the last seq it published and passes it here).
pub fn checkpoints_since(db: &sled::Db, after_seq: u64) -> Result<Vec<Checkpoint>, AuditError> {
    let tree = db.open_tree(TREE)?;
    let Some(start) = after_seq.checked_add(1) else { return Ok(Vec::new()) };
    tree.range(start.to_be_bytes()..)
        .map(|item| {
            let (k, v) = item?;
            let seq = <[u8; 8]>::try_from(k.as_ref()).map(u64::from_be_bytes).unwrap_or(0);
            decode(seq, &v)
        })
        .collect()
}

fn decode(seq: u64, bytes: &[u8]) -> Result<Checkpoint, AuditError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AuditError::Invalid(format!("the checkpoint stored at seq {seq} is unreadable ({e}): the checkpoints tree was damaged; verify the log and compare with checkpoints held elsewhere")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossing_a_multiple_records_once_per_crossing() {
        let db = sled::Config::new().temporary(true).open().expect("a temporary sled");
        let head = |seq| Head { seq, hash: format!("{seq:064x}") };
        after_append(&db, &head(99), 99, 100);
        after_append(&db, &head(130), 31, 100);
        after_append(&db, &head(150), 20, 100);
        after_append(&db, &head(450), 300, 100);
        after_append(&db, &head(500), 50, 0);
        let seqs: Vec<u64> = checkpoints_since(&db, 0).unwrap().iter().map(|c| c.seq).collect();
        assert_eq!(seqs, vec![130, 450]);
        assert_eq!(checkpoints_since(&db, 130).unwrap().len(), 1);
        let (again, new) = record(&db, &head(130)).unwrap();
        assert!(!new);
        assert_eq!(again.hash, head(130).hash);
    }
}
