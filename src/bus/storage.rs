//! The handles on the data dir that `serve`'s other tasks read through (the relay's log reader
//! and cursor, the HTTP API's views), in one slot the writer owns.
//!
//! sled keeps an I/O error for the life of a database and locks the data dir while any handle
//! on it lives, so after a storage error the only way on is to close the database entirely and
//! open it again. The writer empties the slot, waits until every reader let go of the handles
//! it held (readers hold them for one storage operation, never across a wait on the broker),
//! closes the engine, reopens the data dir once the fault has cleared, and fills the slot with
//! the new handles. While the slot is empty the relay waits and the API answers 503;
//! [`Storage::fault`] says why, for `/readyz`.

use super::relay::Cursor;
use crate::engine::Engine;
use crate::log::LogReader;
use crate::projection::ViewReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

/// Read handles on one opening of the data dir.
pub struct Handles {
    /// Which opening (1 at start, one more after each reopen).
    pub generation: u64,
    pub log: LogReader,
    pub views: ViewReader,
    pub cursor: Cursor,
}

/// The slot; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Option<Arc<Handles>>>,
    generation: AtomicU64,
    /// Seq of the last event known durable (flushed): the relay publishes nothing past it.
    durable_seq: AtomicU64,
    /// Why the log is not writable, while it is not.
    fault: Mutex<Option<String>>,
    /// A storage error a reader met on the current handles, for the writer to act on.
    reported: Mutex<Option<String>>,
}

impl Storage {
    /// The slot, filled with handles on `engine`'s data dir.
    pub fn new(engine: &Engine) -> Result<Storage, String> {
        let storage = Storage {
            inner: Arc::new(Inner {
                current: RwLock::new(None),
                generation: AtomicU64::new(0),
                durable_seq: AtomicU64::new(0),
                fault: Mutex::new(None),
                reported: Mutex::new(None),
            }),
        };
        storage.install(engine)?;
        Ok(storage)
    }

    /// The current handles; `None` while the writer reopens the data dir. Drop them as soon as
    /// the storage operation at hand is done: the writer cannot reopen while any are held.
    pub fn current(&self) -> Option<Arc<Handles>> {
        self.inner.current.read().expect("the storage slot's lock").clone()
    }

    /// Why the log is not writable now, or `None` when it is.
    pub fn fault(&self) -> Option<String> {
        self.inner.fault.lock().expect("the storage slot's lock").clone()
    }

    /// Seq of the last event known durable.
    pub fn durable_seq(&self) -> u64 {
        self.inner.durable_seq.load(Ordering::SeqCst)
    }

    /// A reader met a storage error on the handles of `generation`: the writer will close and
    /// reopen the data dir (sled keeps the error for the life of the database, so whoever meets
    /// it first must say so, or an idle writer would never notice).
    pub fn report(&self, generation: u64, error: &str) {
        if generation == self.inner.generation.load(Ordering::SeqCst) {
            self.inner.reported.lock().expect("the storage slot's lock").get_or_insert_with(|| error.to_string());
        }
    }

    pub(super) fn take_report(&self) -> Option<String> {
        self.inner.reported.lock().expect("the storage slot's lock").take()
    }

    pub(super) fn set_durable(&self, seq: u64) {
        self.inner.durable_seq.fetch_max(seq, Ordering::SeqCst);
    }

    pub(super) fn set_fault(&self, why: String) {
        *self.inner.fault.lock().expect("the storage slot's lock") = Some(why);
    }

    /// Empties the slot; the returned reference tells when every reader let go.
    pub(super) fn revoke(&self, why: String) -> Weak<Handles> {
        self.set_fault(why);
        let handles = self.inner.current.write().expect("the storage slot's lock").take();
        handles.as_ref().map(Arc::downgrade).unwrap_or_default()
    }

    /// Fills the slot with handles on `engine`'s data dir and clears the fault.
    pub(super) fn install(&self, engine: &Engine) -> Result<(), String> {
        let cursor = Cursor::open(engine.db()).map_err(|e| format!("relay cursor: {e}"))?;
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let handles = Handles { generation, log: engine.log().reader(), views: engine.views().reader(), cursor };
        self.set_durable(engine.head().seq);
        self.inner.reported.lock().expect("the storage slot's lock").take();
        *self.inner.current.write().expect("the storage slot's lock") = Some(Arc::new(handles));
        self.inner.fault.lock().expect("the storage slot's lock").take();
        Ok(())
    }
}
