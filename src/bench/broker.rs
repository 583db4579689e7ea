//! What the suites over RabbitMQ (`amqp`, `latency`) share: reaching the broker (with a clear
//! error when it is down), a unique topology prefix per run, `ansinh serve` as a child process
//! over a scratch data dir with its own config file, its metrics, and deleting every queue and
//! exchange the run declared.
//!
//! Every connection uses the config's `bus.amqp_url` (guest on localhost by default; with
//! `--config config/dev.toml`, `ansinh-engine` of scripts/rabbitmq-setup.sh). The same user runs
//! the engine, publishes the commands (mapped to an agency role for province 056 in the child's
//! config) and runs the baselines, so engine and baseline meet the same broker permissions.

use super::embedded::{PROGRAM, PROVINCE};
use super::process::vm_hwm;
use crate::bus::config::{redact, user_of};
use crate::bus::BusConfig;
use crate::config::Config;
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How to start the broker, for error messages.
pub const START_BROKER: &str = "start it with `rabbitmq-server -detached && rabbitmqctl await_startup` (the node is ready 5-20 s after \
                                `-detached` returns; `rabbitmq-diagnostics -q check_running` tells), then create the development users with \
                                `scripts/rabbitmq-setup.sh`";

/// Longest time a wait may go without progress before the suite gives up.
pub const STALL: Duration = Duration::from_secs(180);

/// The broker of one suite run and the topology prefix that run owns.
pub struct Broker {
    pub url: String,
    pub user: String,
    /// `ansinh-bench-<suite>-<pid>-<ms>`: unique per run; every queue and exchange of the run
    /// starts with it (and with "ansinh", which the development users' permissions require).
    pub prefix: String,
}

impl Broker {
    /// Checks that the broker answers (before any long set-up) and picks the run's prefix.
    pub fn reach(config: &Config, suite: &str) -> Result<Broker, String> {
        let url = config.bus.amqp_url.clone();
        let uri: lapin::uri::AMQPUri = url.parse().map_err(|e| format!("bus.amqp_url: {e}"))?;
        let addr = format!("{}:{}", uri.authority.host, uri.authority.port);
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs().map_err(|e| format!("bus.amqp_url host {addr}: {e}"))?.collect();
        let mut last = String::from("no address");
        let reached = addrs.iter().any(|a| match TcpStream::connect_timeout(a, Duration::from_secs(3)) {
            Ok(_) => true,
            Err(e) => {
                last = e.to_string();
                false
            }
        });
        if !reached {
            return Err(format!("RabbitMQ is not reachable at {addr} ({last}): `ansinh bench {suite}` measures against the real broker; {START_BROKER}"));
        }
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() % 1_000_000_000).unwrap_or(0);
        let prefix = format!("ansinh-bench-{suite}-{}-{ms}", std::process::id());
        Ok(Broker { user: user_of(&url)?, url, prefix })
    }

    pub async fn connect(&self, name: &str) -> Result<Connection, String> {
        Connection::connect(&self.url, ConnectionProperties::default().with_connection_name(name.into())).await.map_err(|e| {
            format!(
                "connecting to {} as {}: {e} (is the user there? scripts/rabbitmq-setup.sh creates the development users; the broker: {START_BROKER})",
                redact(&self.url),
                self.user
            )
        })
    }

    /// The bus settings of the engine under test: the config's, with this run's prefix, and the
    /// bench's user as the agency of province 056.
    pub fn bus(&self, config: &Config) -> BusConfig {
        BusConfig { prefix: self.prefix.clone(), amqp_url: self.url.clone(), users: Vec::new(), ..config.bus.clone() }
    }

    /// (ready messages, consumers) of a queue, or None when it does not exist (lapin logs the
    /// broker's 404 as an error: ask only about queues that exist).
    pub async fn queue_counts(conn: &Connection, queue: &str) -> Option<(u32, u32)> {
        let ch = conn.create_channel().await.ok()?;
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let q = ch.queue_declare(queue.into(), passive, FieldTable::default()).await.ok()?;
        let _ = ch.close(200, "".into()).await;
        Some((q.message_count(), q.consumer_count()))
    }

    /// Declares the engine's topology under this run's prefix, with the engine's own code (so
    /// with serve's arguments), before serve starts: observers can bind to the events exchange
    /// before the relay publishes, and the command queue exists to be watched.
    pub async fn declare_topology(&self, conn: &Connection, bus: &BusConfig) -> Result<(), String> {
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        crate::bus::topology::declare(&ch, bus).await.map_err(|e| format!("declaring the {}.* topology: {e}", self.prefix))?;
        let _ = ch.close(200, "".into()).await;
        Ok(())
    }

    /// The report's last note: the run's prefix and whether its topology is gone (`left`: what
    /// could not be deleted).
    pub fn topology_note(&self, left: &[String]) -> String {
        let fate = if left.is_empty() { "deleted at the end".to_string() } else { format!("left behind: {}", left.join(", ")) };
        format!("broker topology prefix {} ({fate}; all connections as {})", self.prefix, self.user)
    }

    /// Deletes the engine's topology under this prefix (`BusConfig::topology_names`). Returns
    /// what the broker did not confirm deleted.
    pub async fn delete_topology(&self, conn: &Connection) -> Vec<String> {
        let bus = crate::bus::BusConfig { prefix: self.prefix.clone(), ..crate::bus::BusConfig::default() };
        let (queues, exchanges) = bus.topology_names();
        Broker::delete(conn, &queues, &exchanges).await
    }

    /// Deletes queues and exchanges (deleting what does not exist is no error to the broker);
    /// returns those the broker did not confirm deleted.
    pub async fn delete(conn: &Connection, queues: &[String], exchanges: &[String]) -> Vec<String> {
        let work = async {
            let mut left = Vec::new();
            // A failed delete closes its channel: one channel per delete.
            for q in queues {
                let deleted = match conn.create_channel().await {
                    Ok(ch) => {
                        let ok = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await.is_ok();
                        let _ = ch.close(200, "".into()).await;
                        ok
                    }
                    Err(_) => false,
                };
                if !deleted {
                    left.push(format!("queue {q}"));
                }
            }
            for x in exchanges {
                let deleted = match conn.create_channel().await {
                    Ok(ch) => {
                        let ok = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await.is_ok();
                        let _ = ch.close(200, "".into()).await;
                        ok
                    }
                    Err(_) => false,
                };
                if !deleted {
                    left.push(format!("exchange {x}"));
                }
            }
            left
        };
        match tokio::time::timeout(Duration::from_secs(120), work).await {
            Ok(left) => left,
            Err(_) => vec![format!("(deleting {} timed out after 120 s)", queues.first().or(exchanges.first()).map_or("", String::as_str))],
        }
    }
}

/// A free port on loopback, for a child's HTTP API.
pub fn free_local_addr() -> Result<SocketAddr, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| format!("finding a free port: {e}"))?.port();
    Ok(([127, 0, 0, 1], port).into())
}

/// The `[engine]`, `[limits]` and `[bus]` sections of a child's config: the loaded config's
/// settings, its broker at `url`, and `engine_extra` / `bus_extra` (whole `key = value` lines)
/// in their sections.
pub fn child_settings(config: &Config, url: &str, engine_extra: &str, bus_extra: &str) -> Result<String, String> {
    let s = |v: &str| toml::Value::from(v).to_string();
    let limits = toml::to_string(&config.limits).map_err(|e| e.to_string())?;
    let (engine, bus) = (&config.engine, &config.bus);
    Ok(format!(
        "[engine]\n{engine_extra}group_commands_max = {}\ncache_capacity_mb = {}\ncheckpoint_every_events = {}\n\n[limits]\n{limits}\n\
         [bus]\n{bus_extra}amqp_url = {}\nqueue_type = {}\nprefetch = {}\ndelivery_limit = {}\ngroup_wait_ms = {}\nrelay_batch_max = {}\n\
         relay_poll_ms = {}\nreconnect_backoff_max_ms = {}\n",
        engine.group_commands_max,
        engine.cache_capacity_mb,
        engine.checkpoint_every_events,
        s(url),
        s(&bus.queue_type),
        bus.prefetch,
        bus.delivery_limit,
        bus.group_wait_ms,
        bus.relay_batch_max,
        bus.relay_poll_ms,
        bus.reconnect_backoff_max_ms,
    ))
}

/// `ansinh serve` as a child process, killed when dropped if still running.
pub struct ServeChild {
    child: Option<Child>,
    log: PathBuf,
    /// Where its HTTP API listens (for `/metrics`).
    pub api: SocketAddr,
}

impl ServeChild {
    /// Writes the child's config (the loaded config's engine, limits and bus settings, with the
    /// data dir, the run's prefix, an agency role for the bench's user and a free API port) into
    /// `dir`, then starts `ansinh --config FILE serve` with its output in `dir/serve.log`.
    pub fn start(config: &Config, broker: &Broker, data_dir: &Path, dir: &Path) -> Result<ServeChild, String> {
        let api = free_local_addr()?;
        let s = |v: &str| toml::Value::from(v).to_string();
        let toml = format!(
            "{settings}\n[api]\nlisten = {listen}\n\n[[bus.users]]\nname = {user}\nrole = \"agency\"\nprovinces = [{province}]\nprograms = [{program}]\n",
            settings = child_settings(
                config,
                &broker.url,
                &format!("data_dir = {}\n", s(&data_dir.display().to_string())),
                &format!("prefix = {}\n", s(&broker.prefix))
            )?,
            listen = s(&api.to_string()),
            user = s(&broker.user),
            province = s(PROVINCE),
            program = s(PROGRAM),
        );
        let config_path = dir.join("serve.toml");
        std::fs::write(&config_path, toml).map_err(|e| format!("{}: {e}", config_path.display()))?;
        ServeChild::spawn(&config_path, &[], &dir.join("serve.log"), api)
    }

    /// Starts `ansinh --config CONFIG serve ARGS` with its output in `log`; `api` is where the
    /// config makes its HTTP API listen.
    pub fn spawn(config_path: &Path, args: &[&str], log: &Path, api: SocketAddr) -> Result<ServeChild, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let child = Command::new(&exe)
            .arg("--config")
            .arg(config_path)
            .arg("serve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{}: {e}", exe.display()))?;
        Ok(ServeChild { child: Some(child), log: log.to_path_buf(), api })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Peak resident set of serve so far (VmHWM).
    pub fn peak_rss(&self) -> Option<u64> {
        self.pid().and_then(vm_hwm)
    }

    /// An error with the end of serve's output if it has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        let status = match self.child.as_mut() {
            Some(c) => c.try_wait().map_err(|e| e.to_string())?,
            None => return Err("serve is not running".into()),
        };
        match status {
            Some(status) => {
                self.child = None;
                Err(format!("ansinh serve exited ({status}); its last output:\n{}", self.log_tail()))
            }
            None => Ok(()),
        }
    }

    /// Waits until serve consumes its command queue (its topology is declared by then).
    pub async fn wait_consuming(&mut self, conn: &Connection, queue: &str, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            self.check_running()?;
            if Broker::queue_counts(conn, queue).await.is_some_and(|(_, consumers)| consumers > 0) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                return Err(format!("serve did not consume {queue} within {} s; its last output:\n{}", timeout.as_secs(), self.log_tail()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM (serve finishes the group in hand and flushes), then waits up to 60 s; kills it
    /// after that.
    pub fn stop(&mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return if status.success() { Ok(()) } else { Err(format!("serve exited with {status} on SIGTERM:\n{}", self.log_tail())) };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("serve did not stop within 60 s of SIGTERM (killed)".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The plain (unlabelled) series of serve's `/metrics`, or None if the API does not answer.
    pub async fn metrics(&self) -> Option<HashMap<String, f64>> {
        let addr = self.api;
        let text = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
        .await
        .ok()?
        .ok()?;
        let (head, body) = text.split_once("\r\n\r\n")?;
        if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
            return None;
        }
        Some(
            body.lines()
                .filter(|l| !l.starts_with('#') && !l.contains('{'))
                .filter_map(|l| l.split_once(' ').and_then(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?))))
                .collect(),
        )
    }
}

/// `after - before` for every series of `after` (empty when either scrape failed).
pub fn metrics_delta(before: Option<HashMap<String, f64>>, after: Option<HashMap<String, f64>>) -> HashMap<String, f64> {
    match (before, after) {
        (Some(b), Some(a)) => a.iter().map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0))).collect(),
        _ => HashMap::new(),
    }
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Awaits every publisher confirm in `pending`: an error for a nack, and for a mandatory publish
/// the broker returned as unroutable.
pub async fn settle(pending: &mut Vec<lapin::PublisherConfirm>) -> Result<(), String> {
    for confirm in pending.drain(..) {
        let c = confirm.await.map_err(|e| e.to_string())?;
        if c.is_nack() {
            return Err("the broker refused (nacked) a publish".into());
        }
        if c.take_message().is_some() {
            return Err("the broker returned a publish as unroutable: no queue is bound for its key".into());
        }
    }
    Ok(())
}

/// Prints a progress line on stderr at most every 5 seconds.
pub struct Progress {
    suite: &'static str,
    last: Instant,
}

impl Progress {
    pub fn new(suite: &'static str) -> Progress {
        Progress { suite, last: Instant::now() }
    }

    pub fn say(&mut self, message: impl std::fmt::Display) {
        eprintln!("bench {}: {message}", self.suite);
        self.last = Instant::now();
    }

    pub fn tick(&mut self, message: impl FnOnce() -> String) {
        if self.last.elapsed() >= Duration::from_secs(5) {
            self.say(message());
        }
    }
}

/// The value at quantile `q` (0-1) of sorted samples, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&v[..1], 0.99), Duration::from_millis(1));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
