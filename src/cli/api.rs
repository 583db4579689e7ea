//! `ansinh api`: the HTTP query API standalone over a data dir. sled lets one process open a
//! data dir at a time, so while this runs nothing else writes it: the API serves a snapshot.
//! Next to a running writer, the same API is mounted inside `ansinh serve`.

use super::CliResult;
use crate::api::{serve_api, ApiState, HeadSource, Readiness, ReadinessSource};
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

#[derive(clap::Args, Debug)]
pub struct ApiArgs {
    /// Address to listen on (overrides api.listen from the config; default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

pub fn run(config: &Config, args: &ApiArgs) -> CliResult {
    let listen = match args.listen {
        Some(a) => a,
        None => config.api.listen.parse().map_err(|_| format!("api.listen {:?} is not an address and port", config.api.listen))?,
    };
    let options = config.engine_options();
    if !options.data_dir.is_dir() {
        return Err(format!("no data dir at {}: pass --data-dir, or make one with `ansinh demo` or `ansinh submit`", options.data_dir.display()));
    }
    let (_db, log, views) = Engine::open_views(&options).map_err(|e| open_error(&options.data_dir, e))?;
    let head = log.head().clone();
    let seq = head.seq;
    let head_source: HeadSource = Arc::new(move || Ok(head.clone()));
    // No writer and no broker in this process: ready whenever the views can be read.
    let readiness: ReadinessSource = Arc::new(Readiness::default);
    let state = ApiState::new(views.reader(), head_source, &config.api.tokens, Arc::new(Metrics::new()), readiness)
        .with_nation(crate::api::nation::Nation::from_shards(&config.shards));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| format!("cannot start the async runtime: {e}"))?;
    eprintln!(
        "ansinh api: {} (head seq {seq}) on http://{listen} with {} token(s); OpenAPI at /v1/openapi.json; Ctrl-C stops",
        options.data_dir.display(),
        state.tokens_configured()
    );
    runtime.block_on(serve_api(listen, state, shutdown_signal())).map_err(|e| e.to_string())
}

/// Says plainly when another process holds the data dir.
fn open_error(dir: &Path, e: EngineError) -> String {
    let text = e.to_string();
    if text.contains("could not acquire lock") {
        return format!(
            "the data dir {} is in use by another process (sled lets one process open it at a time): stop that process, or read through the API it serves (`ansinh serve` mounts the same API)",
            dir.display()
        );
    }
    text
}

/// Ctrl-C or SIGTERM: stop accepting, let in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
    eprintln!("ansinh api: stopping");
}
