//! The single writer on its own thread: it owns the engine, takes one group at a time, and
//! answers when the group is durable. The async side never touches sled.

use crate::command::CommandEnvelope;
use crate::core::Limits;
use crate::engine::{Engine, GroupStats};
use crate::outcome::Outcome;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{oneshot, Notify};

struct Job {
    envelopes: Vec<CommandEnvelope>,
    answer: oneshot::Sender<Result<(Vec<Outcome>, GroupStats), String>>,
}

#[derive(Clone)]
pub struct Writer {
    jobs: std::sync::mpsc::SyncSender<Job>,
}

impl Writer {
    /// Starts the writer thread. `appended` is notified after every durable group (the relay
    /// waits on it). The thread ends, flushing the engine, when every `Writer` is dropped.
    /// `on_group` sees every stored group (outcomes, timings, new head seq): metrics hook.
    /// `healthy` is cleared while the engine is poisoned by a storage error (readiness).
    pub fn spawn(
        mut engine: Engine,
        limits: Limits,
        appended: Arc<Notify>,
        on_group: OnGroup,
        healthy: Arc<AtomicBool>,
    ) -> (Writer, std::thread::JoinHandle<()>) {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(1);
        healthy.store(true, Ordering::SeqCst);
        let flag = healthy.clone();
        let handle = std::thread::Builder::new()
            .name("ansinh-writer".into())
            .spawn(move || {
                for job in rx {
                    if engine.is_poisoned() {
                        if let Err(e) = engine.recover(limits) {
                            tracing::error!(error = %e, "the engine cannot recover yet");
                            let _ = job.answer.send(Err(format!("storage unavailable: {e}")));
                            continue;
                        }
                        flag.store(true, Ordering::SeqCst);
                    }
                    let result = engine.execute(&job.envelopes).map(|o| (o, engine.last_group())).map_err(|e| e.to_string());
                    match &result {
                        Ok((outcomes, stats)) => {
                            on_group(outcomes, stats, engine.head().seq);
                            appended.notify_one();
                        }
                        Err(e) => {
                            flag.store(false, Ordering::SeqCst);
                            tracing::error!(error = %e, "group not stored; its deliveries will be redelivered");
                        }
                    }
                    let _ = job.answer.send(result);
                }
                if let Err(e) = engine.flush() {
                    tracing::error!(error = %e, "final flush failed");
                }
            })
            .expect("the writer thread can be spawned");
        (Writer { jobs }, handle)
    }

    /// Decides, appends and projects a group; returns when it is durable.
    pub async fn execute(&self, envelopes: Vec<CommandEnvelope>) -> Result<(Vec<Outcome>, GroupStats), String> {
        let (answer, rx) = oneshot::channel();
        let jobs = self.jobs.clone();
        // `send` blocks while the writer is busy (channel bound 1): keep it off the async threads.
        tokio::task::spawn_blocking(move || jobs.send(Job { envelopes, answer }))
            .await
            .map_err(|e| format!("writer hand-off failed: {e}"))?
            .map_err(|_| "the writer thread has stopped".to_string())?;
        rx.await.map_err(|_| "the writer thread has stopped".to_string())?
    }
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
