//! `ansinh serve`: the engine over RabbitMQ (see `bus`).

use super::{open_engine, CliResult};
use crate::api::{ApiState, HeldViews, Readiness};
use crate::bus::consumer::IntakeObserver;
use crate::bus::storage::Storage;
use crate::bus::{serve, Hooks};
use crate::config::Config;
use crate::metrics::Metrics;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Do not serve the HTTP API. Without it, serve listens on api.listen and refuses to start
    /// when it cannot (the address is taken, or not an address).
    #[arg(long)]
    pub no_api: bool,
    /// Run as shard NAME of the config's `[shards]`: its data dir and API address come from its
    /// entry, its exchanges and queues are under `<namespace>.<NAME>`, and it declares the
    /// national routing (ARCHITECTURE.md "Shards").
    #[arg(long, value_name = "NAME")]
    pub shard: Option<String>,
}

/// What `--shard NAME` makes of the config: the shard's own bus, data dir and API address.
struct Sharded {
    bus: crate::bus::BusConfig,
    national: crate::bus::shards::National,
}

fn sharded(config: &Config, name: &str) -> Result<Sharded, String> {
    let shards = &config.shards;
    if shards.is_empty() {
        return Err(format!("--shard {name:?}: the config has no [shards] section (see config/shards.example.toml)"));
    }
    if shards.get(name).is_none() {
        let names: Vec<&str> = shards.shard.iter().map(|s| s.name.as_str()).collect();
        return Err(format!("--shard {name:?} is not a shard of the config (its shards: {})", names.join(", ")));
    }
    let bus = crate::bus::shards::shard_bus(&config.bus, shards, name);
    Ok(Sharded { bus, national: crate::bus::shards::National { shards: shards.clone(), shard: name.to_string() } })
}

/// Asks the broker which one-off partitions this shard owns (`bus::shards::probe`), retrying
/// with the reconnection backoff while the broker is away; None when shutdown came first.
fn probe_partitions(
    rt: &tokio::runtime::Runtime,
    bus: &crate::bus::BusConfig,
    national: &crate::bus::shards::National,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<Vec<u16>>, String> {
    use crate::bus::shards::{owned_partitions, probe, ProbeError};
    rt.block_on(async {
        let mut backoff = std::time::Duration::from_millis(100);
        let max = std::time::Duration::from_millis(bus.reconnect_backoff_max_ms.max(100));
        loop {
            let attempt = async {
                let props = lapin::ConnectionProperties::default().with_connection_name(format!("ansinh-probe/{}", bus.prefix).into());
                let connection = lapin::Connection::connect(&bus.amqp_url, props)
                    .await
                    .map_err(|e| ProbeError::Broker(format!("connecting to {}: {e}", crate::bus::config::redact(&bus.amqp_url))))?;
                let ring = probe(&connection, &national.shards).await;
                let _ = connection.close(200, "probe done".into()).await;
                ring
            };
            match attempt.await {
                Ok(ring) => return Ok(Some(owned_partitions(&ring, &national.shards, &national.shard))),
                Err(ProbeError::Fatal(why)) => return Err(why),
                Err(ProbeError::Broker(why)) => {
                    tracing::warn!(error = %why, retry_in_ms = backoff.as_millis() as u64, "cannot ask the broker which one-off partitions this shard owns; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return Ok(None),
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
        }
    })
}

/// Binds the API's address before anything else starts, so that a taken port stops serve at
/// once with an error that names it, rather than leaving it running without its API.
fn bind_api(listen: &str) -> Result<std::net::TcpListener, String> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|e| format!("api.listen {listen:?} is not an address and port ({e})"))?;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        format!("cannot listen on {addr} for the HTTP API: {e} (is another process using the port? set api.listen to a free address, or pass --no-api to run without the API)")
    })?;
    listener.set_nonblocking(true).map_err(|e| format!("the API listener on {addr}: {e}"))?;
    Ok(listener)
}

struct MetricsObserver(Arc<Metrics>);

impl IntakeObserver for MetricsObserver {
    fn dead_lettered(&self, reason: &str) {
        self.0.dead_lettered(reason);
    }
    fn reply_refused(&self) {
        self.0.reply_refused();
    }
    fn isolated(&self) {
        self.0.isolated();
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

pub fn run(config: &Config, args: &ServeArgs) -> CliResult {
    config.bus.validate()?;
    let shard = args.shard.as_deref().map(|name| sharded(config, name)).transpose()?;
    let mut options = config.engine_options();
    let (bus, listen) = match &shard {
        None => (config.bus.clone(), config.api.listen.as_str()),
        Some(s) => {
            let entry = s.national.shards.get(&s.national.shard).expect("checked by sharded()");
            options.data_dir = entry.data_dir.clone();
            (s.bus.clone(), entry.api_listen.as_str())
        }
    };
    let api_listener = if args.no_api { None } else { Some(bind_api(listen)?) };
    let api_addr = api_listener.as_ref().and_then(|l| l.local_addr().ok());
    let rt = runtime()?;
    // Sharded, the signals are watched from the probe on (it waits for the broker); unsharded,
    // from where serve always watched them.
    let early_shutdown = shard.as_ref().map(|_| rt.block_on(async { shutdown_signal() }));
    if let (Some(s), Some(shutdown)) = (&shard, &early_shutdown) {
        let Some(partitions) = probe_partitions(&rt, &s.bus, &s.national, shutdown.clone())? else {
            return Ok(());
        };
        let name = &s.national.shard;
        let remembered = crate::bus::shards::Remembered { namespace: s.national.shards.namespace.clone(), shard: name.clone(), partitions };
        crate::bus::shards::check_ownership(&options.data_dir, &remembered)?;
        let entry = s.national.shards.get(name).expect("checked by sharded()");
        options.ownership = crate::shard::Ownership::shard(name, entry.provinces.iter().cloned(), remembered.partitions.iter().copied());
        eprintln!(
            "ansinh serve: shard {name} of {}: provinces {}, {} of {} one-off partitions",
            s.national.shards.namespace,
            if entry.provinces.is_empty() { "(none)".to_string() } else { entry.provinces.join(",") },
            remembered.partitions.len(),
            crate::shard::PARTITIONS
        );
    }
    let engine = open_engine(&options)?;
    eprintln!(
        "ansinh serve: data dir {} (log head seq {}), broker {}, queue {}{}",
        options.data_dir.display(),
        engine.head().seq,
        crate::bus::config::redact(&bus.amqp_url),
        bus.commands_queue(),
        api_addr.map(|a| format!(", HTTP API on {a}")).unwrap_or_else(|| ", no HTTP API (--no-api)".into())
    );
    let metrics = Arc::new(Metrics::new());
    metrics.head_seq(engine.head().seq);
    let connected = Arc::new(AtomicBool::new(false));
    let storage = Storage::new(&engine)?;
    rt.block_on(async {
        let shutdown = early_shutdown.unwrap_or_else(shutdown_signal);
        if let Some(listener) = api_listener {
            let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("the API listener: {e}"))?;
            let (c, s) = (connected.clone(), storage.clone());
            let readiness = Arc::new(move || {
                let (broker, fault) = (c.load(Ordering::SeqCst), s.fault());
                let mut detail = Vec::new();
                if !broker {
                    detail.push("not connected to the broker (reconnecting)".to_string());
                }
                if let Some(why) = &fault {
                    detail.push(format!("the log is not writable: {why}"));
                }
                Readiness { broker_connected: Some(broker), log_writable: Some(fault.is_none()), detail }
            });
            const REOPENING: &str = "the data dir is being reopened after a storage error";
            let s = storage.clone();
            let head = Arc::new(move || s.current().ok_or(REOPENING)?.log.head().map_err(|e| e.to_string()));
            let s = storage.clone();
            let views = Arc::new(move || s.current().map(|h| HeldViews::new(h.views.clone(), h)).ok_or_else(|| REOPENING.to_string()));
            let state = ApiState::with_view_source(views, head, &config.api.tokens, metrics.clone(), readiness)
                .with_nation(crate::api::nation::Nation::from_shards(&config.shards));
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let stopped = async move { while !*stop.borrow() && stop.changed().await.is_ok() {} };
                if let Err(e) = crate::api::serve_listener(listener, state, stopped).await {
                    tracing::error!(error = %e, "the HTTP API stopped");
                }
            });
        }
        let (m1, m2) = (metrics.clone(), metrics.clone());
        let hooks = Hooks {
            on_group: Box::new(move |outcomes, stats, head| {
                m1.group(stats.commands, stats.events);
                m1.append_latency(stats.append);
                m1.flush_latency(stats.flush);
                m1.apply_latency(stats.apply);
                m1.head_seq(head);
                for o in outcomes {
                    m1.command_outcome(&o.command_type, crate::bus::writer::outcome_status(o), o.code.as_deref().unwrap_or(""));
                }
            }),
            on_published: Box::new(move |seq| m2.relay_published(seq)),
            intake: Box::new(MetricsObserver(metrics.clone())),
            connected,
        };
        serve(bus, config.engine.group_commands_max, engine, storage, hooks, shutdown, shard.map(|s| s.national)).await
    })
}
