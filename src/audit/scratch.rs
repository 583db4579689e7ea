//! Fresh views in a temporary sled store of their own, fed event by event: what verify and
//! replay compute "from the log alone". The directory is removed when this is dropped, and
//! the next run removes those of runs that were killed.

use super::chain::{Checked, Failure};
use super::AuditError;
use crate::event::Event;
use crate::log::segment::{RecordMeta, SealedRecord};
use crate::log::{Group, Head, Log};
use crate::projection::{Fold, KeyValues, ViewReader, Views, VisitView};
use rust_decimal::Decimal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Events folded at a time (the documents stay in memory across chunks, see `Fold`).
const CHUNK_EVENTS_MAX: usize = 50_000;

pub struct ScratchViews {
    /// `None` only while dropping (closed before the directory is removed).
    inner: Option<(sled::Db, Log, Views)>,
    dir: PathBuf,
    pending: Vec<(u64, Event)>,
    /// The records too, when readers will compose views from them (`audit replay`): views read
    /// a batch's lines and a payout's history from the log.
    records: Option<Vec<SealedRecord>>,
    last_hash: String,
    /// The views replayed so far, in memory; written to the store only for readers (`reader`).
    fold: Fold,
}

impl ScratchViews {
    /// An empty store under the system temporary directory (`TMPDIR`), named uniquely. With
    /// `keep_records`, the records pushed are stored in its journal as well (for readers).
    pub fn create(cache_capacity_bytes: u64, keep_records: bool) -> Result<ScratchViews, AuditError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name = format!("ansinh-audit-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        remove_abandoned();
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).map_err(|source| AuditError::Scratch { path: dir.clone(), source })?;
        // From here on, Drop removes the directory whatever fails next.
        let records = keep_records.then(Vec::new);
        let mut scratch = ScratchViews { inner: None, dir, pending: Vec::new(), records, last_hash: String::new(), fold: Fold::fresh() };
        // Nothing here needs to survive a crash: no background flush, no fsync.
        let db = crate::engine::sled_config(&scratch.dir, cache_capacity_bytes).flush_every_ms(None).open()?;
        let log = Log::open(&db)?;
        let views = Views::open(&db, &log, &mut |_| {})?;
        scratch.inner = Some((db, log, views));
        Ok(scratch)
    }

    fn views(&self) -> &Views {
        &self.inner.as_ref().expect("the store is open until dropped").2
    }

    /// Queues a checked record (seqs contiguous from 1); applies a full chunk.
    pub fn push(&mut self, checked: Checked) -> Result<(), Failure> {
        let Checked { seq, hash, event, bytes } = checked;
        if let Some(records) = self.records.as_mut() {
            records.push(SealedRecord { seq, bytes, meta: RecordMeta::of(&event) });
            self.last_hash = hash;
        }
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(CHUNK_EVENTS_MAX);
        }
        self.pending.push((seq, event));
        if self.pending.len() >= CHUNK_EVENTS_MAX {
            self.apply_pending()?;
        }
        Ok(())
    }

    /// Applies what is queued. The projection asserts its invariants (double entry, a payout
    /// leaves only a status it is in); a chain forged consistently but with impossible events
    /// could break one, so a panic here is reported as a failure of those seqs, not a crash.
    pub fn apply_pending(&mut self) -> Result<(), Failure> {
        let Some((first, last)) = self.pending.first().zip(self.pending.last()).map(|(a, b)| (a.0, b.0)) else { return Ok(()) };
        let events = std::mem::take(&mut self.pending);
        let (_, log, views) = self.inner.as_mut().expect("the store is open until dropped");
        if let Some(records) = self.records.as_mut().filter(|r| !r.is_empty()) {
            let group = Group { records: std::mem::take(records), head: Some(Head { seq: last, hash: self.last_hash.clone() }), ..Group::default() };
            log.append(group).map_err(|e| Failure::at(first, format!("storing seq {first}-{last} in the temporary store failed: {e}")))?;
        }
        let fold = &mut self.fold;
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| views.fold(fold, &events)));
        match applied {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::at(first, format!("replaying seq {first}-{last} into fresh views failed: {e}"))),
            Err(panic) => {
                let why = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                Err(Failure::at(
                    first,
                    format!(
                        "replaying seq {first}-{last} broke an invariant of the views ({why}): the events contradict each other although their hashes chain"
                    ),
                ))
            }
        }
    }

    /// Seq of the last applied event (after `apply_pending`).
    pub fn applied(&self) -> u64 {
        self.fold.last().unwrap_or_else(|| self.views().applied())
    }

    /// A reader of the views replayed so far (they are written to the store first).
    pub fn reader(&mut self) -> Result<ViewReader, AuditError> {
        let fold = std::mem::take(&mut self.fold);
        let (_, _, views) = self.inner.as_mut().expect("the store is open until dropped");
        views.finish(fold)?;
        Ok(views.reader())
    }

    pub fn ledger_total(&self) -> Result<Decimal, AuditError> {
        Ok(self.views().folded_ledger_total(&self.fold)?)
    }

    /// Every key and value of the views replayed so far, in key order (what `audit verify`
    /// compares with the live views), without writing them.
    pub fn dump(&self) -> Result<KeyValues, AuditError> {
        Ok(self.views().folded(&self.fold)?)
    }

    /// The same keys and values, one at a time, without collecting them (see `Views::each_folded`).
    pub fn each_view<B>(&self, visit: &mut VisitView<'_, B>) -> Result<Option<B>, AuditError> {
        Ok(self.views().each_folded(&self.fold, visit)?)
    }
}

/// Removes the stores of audit runs that were killed before they could clean up (their process
/// is gone). Where `/proc` does not exist nothing is removed.
fn remove_abandoned() {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("ansinh-audit-")).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl Drop for ScratchViews {
    fn drop(&mut self) {
        self.inner.take();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not remove the temporary views store; delete it by hand");
        }
    }
}
