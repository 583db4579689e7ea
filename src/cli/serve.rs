//! `ansinh serve`: the engine over RabbitMQ (see `bus`).

use super::{open_engine, CliResult};
use crate::bus::consumer::IntakeObserver;
use crate::bus::{serve, Hooks};
use crate::config::Config;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {}

struct LogObserver;

impl IntakeObserver for LogObserver {
    fn dead_lettered(&self, reason: &str) {
        tracing::info!(reason, "dead-lettered");
    }
}

/// A runtime for the transport: two workers (this is a 2-core machine; the writer has its own
/// thread besides).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| format!("starting the async runtime: {e}"))
}

/// Turns true on Ctrl-C or SIGTERM.
pub(crate) fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
        tracing::info!("shutdown requested: finishing the group in hand");
        let _ = tx.send(true);
    });
    rx
}

pub fn run(config: &Config, _args: &ServeArgs) -> CliResult {
    config.bus.validate()?;
    let engine = open_engine(&config.engine_options())?;
    eprintln!(
        "ansinh serve: data dir {} (log head seq {}), broker {}, queue {}",
        config.engine.data_dir.display(),
        engine.head().seq,
        crate::bus::config::redact(&config.bus.amqp_url),
        config.bus.commands_queue()
    );
    let rt = runtime()?;
    rt.block_on(async {
        let shutdown = shutdown_signal();
        let hooks = Hooks {
            on_group: Box::new(|outcomes, stats, head| tracing::debug!(commands = outcomes.len(), events = stats.events, head, "group stored")),
            on_published: Box::new(|seq| tracing::debug!(seq, "relayed")),
            intake: Box::new(LogObserver),
            connected: Arc::new(AtomicBool::new(false)),
            writer_healthy: Arc::new(AtomicBool::new(true)),
        };
        serve(config.bus.clone(), config.engine.group_commands_max, config.limits, engine, hooks, shutdown).await
    })
}
