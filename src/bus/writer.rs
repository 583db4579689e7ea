//! The single writer on its own thread: it owns the engine, takes one group at a time, and
//! answers when the group is durable. The async side never touches sled.

use super::storage::{Handles, Storage};
use crate::command::CommandEnvelope;
use crate::domain::citizen_id::log_safe_error;
use crate::engine::{ClosedEngine, Engine, EngineError, GroupStats};
use crate::outcome::Outcome;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, Notify};

struct Job {
    envelopes: Vec<CommandEnvelope>,
    answer: oneshot::Sender<Result<(Vec<Outcome>, GroupStats), NotStored>>,
}

/// A group the writer did not store, given back with why (nothing of it is durable, unless a
/// storage error struck after its append: a retry is then answered from the command index).
#[derive(Debug)]
pub struct NotStored {
    pub error: String,
    /// The commands, to try again; empty when the writer thread has stopped.
    pub envelopes: Vec<CommandEnvelope>,
}

#[derive(Clone)]
pub struct Writer {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

/// First wait before reopening the data dir after a storage error; it doubles after each failed
/// reopen (and after each fault that follows a reopen) up to `REOPEN_BACKOFF_MAX`, and starts
/// over once a group is durable again.
const REOPEN_BACKOFF_MIN: Duration = Duration::from_millis(250);
const REOPEN_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often an idle writer looks for a storage error a reader reported.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// How often a closing writer looks whether the readers let go of their handles.
const RELEASE_POLL: Duration = Duration::from_millis(20);

/// The engine, or what is left of it after a storage error until the data dir reopens.
enum Store {
    Open(Box<Engine>),
    Closed(Closing),
}

struct Closing {
    engine: ClosedEngine,
    /// The handles taken from the slot: the data dir can reopen once no reader holds them.
    readers: Weak<Handles>,
    since: Instant,
    next_try: Instant,
    /// Whether a slow release was logged already.
    warned: bool,
    /// Why, for the answers to the groups refused meanwhile.
    reason: String,
}

impl Writer {
    /// Starts the writer thread. `appended` is notified after every durable group and after a
    /// reopen (the relay waits on it). The thread ends, flushing the engine, when every `Writer`
    /// is dropped. `on_group` sees every stored group (outcomes, timings, new head seq): metrics
    /// hook. `storage` is the slot of read handles: after a storage error (met by a group, or
    /// reported by a reader) the writer empties it, closes the engine, reopens the data dir with
    /// a backoff until the fault clears, and fills it again; meanwhile every group is answered
    /// with an error (its deliveries go back to the queue) and `storage.fault()` says why.
    pub fn spawn(engine: Engine, storage: Storage, appended: Arc<Notify>, on_group: OnGroup) -> (Writer, std::thread::JoinHandle<()>) {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(1);
        let handle = std::thread::Builder::new()
            .name("ansinh-writer".into())
            .spawn(move || {
                let mut store = Store::Open(Box::new(engine));
                let mut backoff = REOPEN_BACKOFF_MIN;
                loop {
                    let wait = match &store {
                        Store::Open(_) => IDLE_TICK,
                        Store::Closed(c) => c.next_try.saturating_duration_since(Instant::now()),
                    };
                    let job = match rx.recv_timeout(wait) {
                        Ok(job) => Some(job),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    store = match store {
                        Store::Open(engine) => match storage.take_report() {
                            Some(error) => close(engine, &storage, &format!("a reader met a storage error: {error}"), &mut backoff),
                            None => Store::Open(engine),
                        },
                        Store::Closed(c) if Instant::now() >= c.next_try => reopen(c, &storage, &appended, &mut backoff),
                        closed => closed,
                    };
                    let Some(job) = job else { continue };
                    let engine = match &mut store {
                        Store::Open(engine) => engine,
                        Store::Closed(c) => {
                            let error = format!("storage unavailable: {}", c.reason);
                            let _ = job.answer.send(Err(NotStored { error, envelopes: job.envelopes }));
                            continue;
                        }
                    };
                    let Job { envelopes, answer } = job;
                    let result = engine.execute(&envelopes).map(|o| (o, engine.last_group())).map_err(|e| e.to_string());
                    let failed = match &result {
                        Ok((outcomes, stats)) => {
                            let head = engine.head().seq;
                            storage.set_durable(head);
                            backoff = REOPEN_BACKOFF_MIN;
                            on_group(outcomes, stats, head);
                            appended.notify_one();
                            None
                        }
                        Err(e) => {
                            tracing::error!(error = %log_safe_error(e), "group not stored; its deliveries will be redelivered");
                            Some(e.clone())
                        }
                    };
                    let _ = answer.send(result.map_err(|error| NotStored { error, envelopes }));
                    if let Some(error) = failed {
                        store = match store {
                            Store::Open(engine) if engine.is_poisoned() => close(engine, &storage, &error, &mut backoff),
                            store => store,
                        };
                    }
                }
                if let Store::Open(engine) = store {
                    if let Err(e) = engine.flush() {
                        tracing::error!(error = %log_safe_error(&e), "final flush failed");
                    }
                }
            })
            .expect("the writer thread can be spawned");
        (Writer { jobs }, handle)
    }

    /// Decides, appends and projects a group; returns when it is durable, or gives the group
    /// back when it was not stored.
    pub async fn execute(&self, envelopes: Vec<CommandEnvelope>) -> Result<(Vec<Outcome>, GroupStats), NotStored> {
        let (answer, rx) = oneshot::channel();
        let jobs = self.jobs.clone();
        let stopped = |envelopes| NotStored { error: "the writer thread has stopped".into(), envelopes };
        // `send` blocks while the writer is busy (channel bound 1): keep it off the async threads.
        match tokio::task::spawn_blocking(move || jobs.send(Job { envelopes, answer })).await {
            Ok(Ok(())) => {}
            Ok(Err(std::sync::mpsc::SendError(job))) => return Err(stopped(job.envelopes)),
            Err(e) => return Err(NotStored { error: format!("writer hand-off failed: {e}"), envelopes: Vec::new() }),
        }
        rx.await.unwrap_or_else(|_| Err(stopped(Vec::new())))
    }
}

/// After a storage error: takes the handles out of the slot and closes the engine.
fn close(engine: Box<Engine>, storage: &Storage, error: &str, backoff: &mut Duration) -> Store {
    let reason = error.to_string();
    let readers = storage.revoke(format!("{reason}; reopening the data dir"));
    let engine = (*engine).close();
    tracing::error!(error = %log_safe_error(&error), durable_seq = engine.durable_head().seq, "storage error: the engine is closed; the data dir will be reopened once the fault clears");
    let now = Instant::now();
    let closing = Closing { engine, readers, since: now, next_try: now + *backoff, warned: false, reason };
    *backoff = (*backoff * 2).min(REOPEN_BACKOFF_MAX);
    Store::Closed(closing)
}

/// One attempt at reopening the data dir, once no reader holds the old handles.
fn reopen(mut c: Closing, storage: &Storage, appended: &Notify, backoff: &mut Duration) -> Store {
    let now = Instant::now();
    let holders = c.readers.strong_count();
    if holders > 0 {
        if now - c.since > Duration::from_secs(30) && !c.warned {
            c.warned = true;
            tracing::warn!(holders, "readers still hold the data dir 30 s after a storage error; it cannot reopen until they let go");
        }
        c.next_try = now + RELEASE_POLL;
        return Store::Closed(c);
    }
    // A panic inside sled (it has a few on I/O paths) must not take the writer down with it.
    let reopened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.engine.reopen()));
    let error = match reopened.unwrap_or_else(|_| Err(EngineError::Panicked)) {
        Ok(engine) => match storage.install(&engine) {
            Ok(()) => {
                tracing::warn!(head = engine.head().seq, after_ms = c.since.elapsed().as_millis() as u64, "storage recovered: the data dir is reopened");
                appended.notify_one();
                return Store::Open(Box::new(engine));
            }
            Err(e) => e,
        },
        Err(e) => e.to_string(),
    };
    let next = *backoff;
    *backoff = (*backoff * 2).min(REOPEN_BACKOFF_MAX);
    tracing::warn!(error = %log_safe_error(&error), retry_in_ms = next.as_millis() as u64, "the data dir cannot be reopened yet");
    c.reason = error;
    storage.set_fault(format!("{}; reopening the data dir (next try in {} ms)", c.reason, next.as_millis()));
    c.next_try = now + next;
    Store::Closed(c)
}

/// Called on the writer thread after each durable group.
pub type OnGroup = Box<dyn Fn(&[Outcome], &GroupStats, u64) + Send>;

/// `accepted`, `rejected`, `duplicate` or `invalid`: the label metrics count outcomes by.
pub fn outcome_status(o: &Outcome) -> &'static str {
    match (o.duplicate, o.status) {
        (true, _) => "duplicate",
        (false, crate::outcome::OutcomeStatus::Accepted) => "accepted",
        (false, crate::outcome::OutcomeStatus::Rejected) => "rejected",
        (false, crate::outcome::OutcomeStatus::Invalid) => "invalid",
    }
}
