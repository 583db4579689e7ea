//! Fixtures for the transport's integration tests (`tests/amqp.rs`), against the real broker on
//! 127.0.0.1:5672: each test gets its own topology names (a unique `bus.prefix`), its own temp
//! data dir and config file, and runs the real `ansinh` binary as child processes, which a Drop
//! guard kills; the guard also deletes the test's queues and exchanges, so nothing is left.
//!
//! The test process observes the broker with lapin directly: a [`Collector`] queue bound to
//! `<prefix>.events` with `#` sees every relayed event, a [`Client`] publishes as a given user
//! and gathers the replies to its own reply queue.

// Each test uses its own subset of these helpers.
#![allow(dead_code)]

use ansinh::command::CommandEnvelope;
use ansinh::log::chain::Record;
use ansinh::outcome::Outcome;
use ansinh::{Engine, EngineOptions};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

mod client;
pub use client::*;

pub const ENGINE: &str = "ansinh-engine";
pub const ADMIN: &str = "ansinh-admin";
pub const AGENCY: &str = "ansinh-agency-056";
pub const PROVINCE: &str = "056";
pub const PROGRAM: &str = "social-allowance";

pub fn bank_user(bin: &str) -> String {
    format!("ansinh-bank-{bin}")
}

/// Development users have their name as password (scripts/rabbitmq-setup.sh).
pub fn url(user: &str) -> String {
    format!("amqp://{user}:{user}@127.0.0.1:5672/%2f")
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/rabbitmq-setup.sh` with `args` (VHOST, PREFIX); its output when it fails.
pub fn run_setup_script(args: &[&str]) -> Result<(), String> {
    let script = repo().join("scripts/rabbitmq-setup.sh");
    let out = Command::new("bash").arg(&script).args(args).stdin(Stdio::null()).output().map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): {}{}\nThe broker must be running and rabbitmqctl usable by this user.",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Fails (never skips) when the broker is unreachable, saying how to start it; then creates the
/// users once per test process (the setup script is idempotent).
pub fn ensure_broker() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let addr: SocketAddr = "127.0.0.1:5672".parse().expect("a valid address");
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| {
            format!(
                "RabbitMQ is not reachable on 127.0.0.1:5672 ({e}). These tests need the real broker: start it with \
                 `rabbitmq-server -detached` (ready 5-20 s later; check with `rabbitmq-diagnostics -q check_running`), \
                 then run them again; .ci/run does both"
            )
        })?;
        run_setup_script(&[])
    });
    if let Err(message) = ready {
        panic!("{message}");
    }
}

/// Polls `done` every 50 ms; panics naming `what` after `timeout`.
pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {} s waiting for {what}", timeout.as_secs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Settings written into the test's config file.
#[derive(Clone, Debug)]
pub struct Settings {
    pub group_commands_max: usize,
    pub group_wait_ms: u64,
    pub prefetch: u16,
    pub relay_batch_max: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings { group_commands_max: 1_000, group_wait_ms: 5, prefetch: 1_000, relay_batch_max: 2_000 }
    }
}

pub struct Fixture {
    pub prefix: String,
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    pub rt: tokio::runtime::Runtime,
    serve: Option<Child>,
    serve_runs: usize,
    /// `RUST_LOG` of the serve children (default `info`).
    pub serve_rust_log: String,
    children: Vec<(String, Child)>,
    /// Queues the test itself declared (deleted at the end with the topology).
    extra_queues: Mutex<Vec<String>>,
    /// The engine user's connection, for looking at queues and cleaning up.
    conn: Connection,
}

impl Fixture {
    pub fn new(test: &str, settings: Settings) -> Fixture {
        ensure_broker();
        static N: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("ansinh-t{}-{test}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let dir = tempfile::tempdir().expect("a temp dir");
        let data_dir = dir.path().join("data");
        let config = dir.path().join("ansinh.toml");
        // One worker: the collector and reply consumers run while the test thread waits.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a tokio runtime");
        let conn = rt.block_on(connect(ENGINE));
        let fixture = Fixture {
            prefix,
            dir,
            data_dir,
            config,
            rt,
            serve: None,
            serve_runs: 0,
            serve_rust_log: "info".into(),
            children: Vec::new(),
            extra_queues: Mutex::new(Vec::new()),
            conn,
        };
        fixture.write_config(&settings);
        fixture
    }

    /// (Re)writes the config; a restarted `serve` reads the new one.
    pub fn write_config(&self, s: &Settings) {
        let mut toml = format!(
            "[engine]\ndata_dir = {data:?}\ngroup_commands_max = {gmax}\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n[bus]\namqp_url = {url:?}\nprefix = {prefix:?}\n\
             prefetch = {prefetch}\ngroup_wait_ms = {wait}\nrelay_batch_max = {relay}\nrelay_poll_ms = 50\nreconnect_backoff_max_ms = 1000\n\n\
             [[bus.users]]\nname = {ADMIN:?}\nrole = \"admin\"\n\n\
             [[bus.users]]\nname = {AGENCY:?}\nrole = \"agency\"\nprovinces = [{PROVINCE:?}]\nprograms = [{PROGRAM:?}]\n",
            data = self.data_dir.display().to_string(),
            gmax = s.group_commands_max,
            url = url(ENGINE),
            prefix = self.prefix,
            prefetch = s.prefetch,
            wait = s.group_wait_ms,
            relay = s.relay_batch_max,
        );
        for bin in ansinh::domain::reference::bank_bins() {
            toml.push_str(&format!("\n[[bus.users]]\nname = {:?}\nrole = \"bank\"\nbin = {bin:?}\n", bank_user(bin)));
        }
        std::fs::write(&self.config, toml).expect("the config is written");
    }

    /// The bus names of this test (its prefix, defaults otherwise).
    pub fn bus(&self) -> ansinh::bus::BusConfig {
        ansinh::bus::BusConfig { prefix: self.prefix.clone(), ..ansinh::bus::BusConfig::default() }
    }

    pub fn options(&self) -> EngineOptions {
        EngineOptions::new(&self.data_dir)
    }

    pub fn ansinh(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ansinh"));
        c.arg("--config").arg(&self.config).stdin(Stdio::null());
        c
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.path().join(format!("{name}.log"))).expect("a log file")
    }

    /// Starts `ansinh serve` and waits until it consumes the command queue (the topology is
    /// declared by then).
    pub fn start_serve(&mut self) {
        assert!(self.serve.is_none(), "serve is already running");
        self.serve_runs += 1;
        let log = self.log_file(&format!("serve-{}", self.serve_runs));
        let child = self
            .ansinh()
            .arg("serve")
            .env("RUST_LOG", &self.serve_rust_log)
            .stdout(log.try_clone().expect("a log handle"))
            .stderr(log)
            .spawn()
            .expect("serve starts");
        self.serve = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.serve.as_mut().and_then(|c| c.try_wait().expect("serve's status")) {
                panic!("serve exited at start-up ({status}):\n{}", self.log_tail(&format!("serve-{}", self.serve_runs)));
            }
            if self.queue_counts(&format!("{}.commands", self.prefix)).is_some_and(|(_, consumers)| consumers > 0) {
                return;
            }
            assert!(Instant::now() < deadline, "serve did not start consuming within 60 s:\n{}", self.log_tail(&format!("serve-{}", self.serve_runs)));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the serve runs so far wrote to their logs.
    pub fn serve_logs(&self) -> String {
        (1..=self.serve_runs).map(|run| std::fs::read_to_string(self.dir.path().join(format!("serve-{run}.log"))).unwrap_or_default()).collect()
    }

    /// `GET path` on the running serve's HTTP API (its address is in its log): (status, body).
    pub fn serve_http_get(&self, path: &str) -> (u16, String) {
        let log = std::fs::read_to_string(self.dir.path().join(format!("serve-{}.log", self.serve_runs))).expect("serve's log");
        let line = log.lines().find(|l| l.contains("HTTP API listening")).expect("serve logs its API address");
        let at = line.rfind("127.0.0.1:").expect("an address");
        let port: String = line[at + 10..].chars().take_while(char::is_ascii_digit).collect();
        let mut s = TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("a port"))).expect("the API answers");
        use std::io::Write;
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("request sent");
        let mut response = String::new();
        s.read_to_string(&mut response).expect("a response");
        let status = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status line");
        (status, response)
    }

    /// SIGKILL: no clean shutdown, nothing flushed beyond what the engine already made durable.
    /// Returns once the broker has noticed (no consumer left on the command queue).
    pub fn kill_serve(&mut self) {
        let mut child = self.serve.take().expect("serve is running");
        child.kill().expect("SIGKILL");
        child.wait().expect("serve is reaped");
        let queue = format!("{}.commands", self.prefix);
        wait_for(Duration::from_secs(30), "the broker to drop the killed engine's consumer", || self.queue_counts(&queue).is_some_and(|(_, c)| c == 0));
    }

    /// SIGTERM: finish the group in hand, ack, flush; must exit 0 within 30 s.
    pub fn stop_serve(&mut self) {
        let mut child = self.serve.take().expect("serve is running");
        let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill -TERM runs");
        assert!(status.success(), "kill -TERM failed");
        let status = wait_child(&mut child, Duration::from_secs(30), "serve to stop on SIGTERM");
        assert!(status.success(), "serve exited with {status} on SIGTERM:\n{}", self.log_tail(&format!("serve-{}", self.serve_runs)));
    }

    /// Spawns a background child (killed at the end if still running); returns its index.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> usize {
        let log = self.log_file(name);
        let child = self.ansinh().args(args).stdout(log.try_clone().expect("a log handle")).stderr(log).spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        self.children.push((name.to_string(), child));
        self.children.len() - 1
    }

    /// Waits for a background child to exit and asserts it succeeded.
    pub fn wait_success(&mut self, index: usize, timeout: Duration) {
        let name = self.children[index].0.clone();
        let status = wait_child(&mut self.children[index].1, timeout, &name);
        assert!(status.success(), "{name} exited with {status}:\n{}", self.log_tail(&name));
    }

    pub fn log_tail(&self, name: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs `ansinh ARGS` to completion (bounded); returns stdout; panics on failure.
    pub fn run(&self, args: &[&str], timeout: Duration) -> String {
        let mut child = self.ansinh().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ansinh runs");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).map(|_| s)
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            stderr.read_to_string(&mut s).map(|_| s)
        });
        let status = wait_child(&mut child, timeout, &format!("ansinh {}", args.join(" ")));
        let (out, err) = (out.join().expect("reader").unwrap_or_default(), err.join().expect("reader").unwrap_or_default());
        assert!(status.success(), "ansinh {} exited with {status}\nstdout:\n{}\nstderr:\n{err}", args.join(" "), tail(&out));
        out
    }

    /// `ansinh demo-files` for a province month of `beneficiaries`; returns the directory.
    pub fn demo_files(&self, beneficiaries: usize) -> PathBuf {
        let out = self.dir.path().join("files");
        self.run(&["demo-files", "--out", path(&out), "--beneficiaries", &beneficiaries.to_string()], Duration::from_secs(60));
        out
    }

    /// `ansinh publish FILE --json` as `user`; returns the outcomes in file order.
    pub fn publish_file(&self, file: &Path, user: &str) -> Vec<Outcome> {
        let stdout = self.run(&["publish", path(file), "--amqp", &url(user), "--json", "--timeout-secs", "120"], Duration::from_secs(150));
        parse_outcomes(&stdout)
    }

    /// Opens the engine over the data dir (serve must be stopped: sled locks the directory).
    pub fn open_engine(&self) -> Engine {
        Engine::open(&self.options(), &mut |_, _| {}).expect("the engine opens")
    }

    /// (ready messages, consumers) of a queue, or None when it does not exist.
    pub fn queue_counts(&self, queue: &str) -> Option<(u32, u32)> {
        self.rt.block_on(async {
            let ch = self.conn.create_channel().await.expect("a channel");
            let q = ch.queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await.ok()?;
            let _ = ch.close(200, "".into()).await;
            Some((q.message_count(), q.consumer_count()))
        })
    }

    /// A queue bound to `<prefix>.events` with `#`, declared before serve starts so that it sees
    /// every event the relay publishes. Consumed without acks: a duplicate can only come from the
    /// relay.
    pub fn collector(&self) -> Collector {
        let queue = format!("{}.test-events", self.prefix);
        self.extra_queues.lock().expect("lock").push(queue.clone());
        let exchange = format!("{}.events", self.prefix);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        self.rt.block_on(async {
            let ch = self.conn.create_channel().await.expect("a channel");
            ch.exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("the events exchange (same arguments as serve's)");
            ch.queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
                .await
                .expect("the collector queue");
            ch.queue_bind(queue.as_str().into(), exchange.as_str().into(), "#".into(), QueueBindOptions::default(), FieldTable::default())
                .await
                .expect("binding #");
            let mut consumer = ch
                .basic_consume(
                    queue.as_str().into(),
                    "test-collector".into(),
                    BasicConsumeOptions { no_ack: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await
                .expect("consuming the collector queue");
            self.rt.spawn(async move {
                let _ch = ch;
                while let Some(Ok(d)) = consumer.next().await {
                    let record: Record = serde_json::from_slice(&d.data).expect("the relay publishes audit records");
                    let header_seq = d.properties.headers().as_ref().and_then(|h| h.inner().get("x-seq").cloned());
                    assert_eq!(header_seq, Some(AMQPValue::LongLongInt(record.seq as i64)), "x-seq header = record seq");
                    assert_eq!(d.properties.message_id().as_ref().map(|m| m.to_string()), Some(record.event.id.clone()), "message id = event id");
                    sink.lock().expect("lock").push(Seen { routing_key: d.routing_key.to_string(), body: d.data, record });
                }
            });
        });
        Collector { seen }
    }

    /// Deletes `queue` with the test's topology at the end (a queue the test declared itself).
    pub fn delete_at_end(&self, queue: &str) {
        self.extra_queues.lock().expect("lock").push(queue.to_string());
    }

    /// A client publishing as `user` with its own reply queue.
    pub fn client(&self, user: &str) -> Client {
        let replies = Arc::new(Mutex::new(Vec::new()));
        let poison_replies = Arc::new(Mutex::new(Vec::new()));
        let sink = replies.clone();
        let poison_sink = poison_replies.clone();
        let (channel, reply_queue, conn) = self.rt.block_on(async {
            let conn = connect(user).await;
            let ch = conn.create_channel().await.expect("a channel");
            ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm mode");
            let q = ch
                .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
                .await
                .expect("a reply queue");
            let mut consumer = ch
                .basic_consume(q.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
                .await
                .expect("consuming replies");
            self.rt.spawn(async move {
                while let Some(Ok(d)) = consumer.next().await {
                    let outcome: Outcome = serde_json::from_slice(&d.data).expect("replies are outcomes");
                    let correlation = d.properties.correlation_id().as_ref().map(|c| c.to_string());
                    if outcome.status == ansinh::outcome::OutcomeStatus::Invalid {
                        // Poison: matched by correlation id (its body may name no command id).
                        poison_sink.lock().expect("lock").push((correlation, outcome));
                        continue;
                    }
                    assert_eq!(correlation.as_deref(), Some(outcome.command_id.as_str()), "a reply carries its command's correlation id");
                    sink.lock().expect("lock").push(outcome);
                }
            });
            (ch, q.name().to_string(), conn)
        });
        Client { user: user.to_string(), exchange: format!("{}.commands", self.prefix), channel, reply_queue, replies, poison_replies, _conn: conn }
    }

    /// Takes a delivery of `queue` and gives it back `times` times (its channel closed with the
    /// delivery unacknowledged, as when serve dies holding it): each return counts against the
    /// quorum queue's delivery limit. Waits for a message to be there each time.
    pub fn give_back(&self, queue: &str, times: usize) {
        self.rt.block_on(async {
            for n in 0..times {
                let ch = self.conn.create_channel().await.expect("a channel");
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    if ch.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.expect("basic.get").is_some() {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{queue} had no message to give back (time {n})");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                ch.close(200, "given back".into()).await.expect("the channel closes");
            }
        })
    }

    /// Declares the engine's topology for this test's prefix, as serve would (before serve runs).
    pub fn declare_topology(&self) {
        self.rt.block_on(async {
            let ch = self.conn.create_channel().await.expect("a channel");
            ansinh::bus::topology::declare(&ch, &self.bus()).await.expect("the topology is declared");
            let _ = ch.close(200, "".into()).await;
        })
    }

    /// Reads every message of a queue (as the engine user) until `count` arrived or `timeout`.
    pub fn drain(&self, queue: &str, count: usize, timeout: Duration) -> Vec<lapin::message::BasicGetMessage> {
        self.rt.block_on(async {
            let ch = self.conn.create_channel().await.expect("a channel");
            let mut out = Vec::new();
            let deadline = Instant::now() + timeout;
            while out.len() < count && Instant::now() < deadline {
                match ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.expect("basic.get") {
                    Some(m) => out.push(m),
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            out
        })
    }

    async fn delete_topology(&self) {
        let (mut queues, exchanges) = self.bus().topology_names();
        queues.extend(self.extra_queues.lock().expect("lock").iter().cloned());
        delete_all(&self.conn, &queues, &exchanges).await;
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        if let Some(mut child) = self.serve.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if failing {
            for run in 1..=self.serve_runs {
                eprintln!("---- serve run {run} of {} (last lines) ----\n{}", self.prefix, self.log_tail(&format!("serve-{run}")));
            }
            for (name, _) in &self.children {
                eprintln!("---- {name} (last lines) ----\n{}", self.log_tail(name));
            }
        }
        let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(90), self.delete_topology()).await });
    }
}

pub struct Seen {
    pub routing_key: String,
    pub body: Vec<u8>,
    pub record: Record,
}

/// Every event the relay published, in arrival order (duplicates included).
pub struct Collector {
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Collector {
    pub fn with<T>(&self, f: impl FnOnce(&[Seen]) -> T) -> T {
        f(&self.seen.lock().expect("lock"))
    }
    pub fn distinct_seqs(&self) -> usize {
        self.with(|s| s.iter().map(|x| x.record.seq).collect::<std::collections::BTreeSet<_>>().len())
    }
    /// How many times each seq arrived.
    pub fn counts(&self) -> BTreeMap<u64, usize> {
        self.with(|s| {
            let mut m = BTreeMap::new();
            for x in s {
                *m.entry(x.record.seq).or_insert(0) += 1;
            }
            m
        })
    }
    /// The first arrival of each event of this type, by seq.
    pub fn of_type(&self, type_name: &str) -> BTreeMap<u64, Record> {
        self.with(|s| s.iter().filter(|x| x.record.event.data.type_name() == type_name).map(|x| (x.record.seq, x.record.clone())).collect())
    }
}

/// Deletes a test's queues and exchanges, best effort (what is already gone is no error to the
/// broker; a lost channel leaves the rest for the broker's own clean-up of a test prefix).
pub async fn delete_all(conn: &Connection, queues: &[String], exchanges: &[String]) {
    let Ok(ch) = conn.create_channel().await else { return };
    for q in queues {
        let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    }
    for x in exchanges {
        let _ = ch.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()).await;
    }
}

pub async fn connect(user: &str) -> Connection {
    Connection::connect(&url(user), ConnectionProperties::default().with_connection_name(format!("ansinh-test-{user}").into()))
        .await
        .unwrap_or_else(|e| panic!("connecting to RabbitMQ as {user} (did scripts/rabbitmq-setup.sh run?): {e}"))
}

pub fn header(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        other => Some(format!("{other:?}")),
    }
}

pub fn headers(pairs: &[(&str, &str)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), AMQPValue::LongString((*v).into()));
    }
    t
}

pub fn wait_child(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("a child's status") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("timed out after {} s waiting for {what}", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `{"line": n, "outcome": {...}}` lines of `publish --json`.
pub fn parse_outcomes(stdout: &str) -> Vec<Outcome> {
    stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("publish --json prints JSON lines");
            serde_json::from_value(v["outcome"].clone()).expect("an outcome")
        })
        .collect()
}

/// The commands of a JSON Lines file.
pub fn read_commands(file: &Path) -> Vec<CommandEnvelope> {
    let f = std::fs::File::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    std::io::BufReader::new(f).lines().map(|l| serde_json::from_str(&l.expect("a line")).expect("a command")).collect()
}

pub fn write_commands(file: &Path, envelopes: &[CommandEnvelope]) {
    let text: String = envelopes.iter().map(|e| serde_json::to_string(e).expect("commands serialize") + "\n").collect();
    std::fs::write(file, text).expect("commands are written");
}

/// The same commands as if the transport had stamped them: `sender` = the broker's user.
pub fn as_sent_by(envelopes: &[CommandEnvelope], user: &str) -> Vec<CommandEnvelope> {
    envelopes.iter().cloned().map(|mut e| (e.sender = Some(user.to_string()), e).1).collect()
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Every record of the log in seq order (serve stopped).
pub fn log_records(engine: &Engine) -> Vec<(u64, serde_json::Value, Record)> {
    let head = engine.head().seq;
    engine
        .log()
        .range(1, head)
        .map(|item| {
            let (seq, bytes) = item.expect("a log record");
            (seq, serde_json::from_slice(&bytes).expect("records are JSON"), serde_json::from_slice(&bytes).expect("records parse"))
        })
        .collect()
}

/// The hash chain: seqs 1..=head contiguous, each hash recomputed from the record, each
/// prev_hash the previous hash, the head's hash the last record's.
pub fn assert_chain(engine: &Engine) {
    let records = log_records(engine);
    assert_eq!(records.len() as u64, engine.head().seq, "every seq up to the head is stored");
    let mut prev = ansinh::log::chain::GENESIS_HASH.to_string();
    for (i, (seq, value, record)) in records.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "seqs are contiguous");
        assert_eq!(record.seq, *seq, "record {seq} carries its seq");
        assert_eq!(record.prev_hash, prev, "record {seq} links to its predecessor");
        assert_eq!(ansinh::log::chain::recompute_hash(value).as_deref(), Some(record.hash.as_str()), "record {seq}'s hash");
        prev = record.hash.clone();
    }
    assert_eq!(engine.head().hash, prev, "the head is the last record");
}
