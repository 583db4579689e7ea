//! Shards over RabbitMQ (issue 12), against the real broker on 127.0.0.1:5672: routing by
//! province through `<namespace>.route`, a shard's refusal of a province it does not own, the
//! probe of the one-off ring against the real consistent-hash exchange, a refused start when
//! the ring moved, and a shard killed mid-stream. Each test has its own namespace, temp data
//! dirs and config; the real `ansinh` binary runs as child processes, killed at the end, and the
//! test's queues and exchanges are deleted. Without the broker these tests fail, never skip.

mod amqp_support;

use amqp_support::{connect, delete_all, ensure_broker, parse_outcomes, path, read_commands, url, wait_child, wait_for, write_commands, ADMIN, AGENCY, ENGINE};
use ansinh::bus::shards::{self, National};
use ansinh::bus::BusConfig;
use ansinh::event::EventData;
use ansinh::log::chain::Record;
use ansinh::outcome::{Outcome, OutcomeStatus};
use ansinh::shard::{ShardsSection, PARTITIONS};
use ansinh::{Engine, EngineOptions};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ExchangeKind};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROGRAM: &str = "social-allowance";
const SECS_120: Duration = Duration::from_secs(120);

/// (name, provinces, weight) of each shard, in config order.
type Layout<'a> = &'a [(&'a str, &'a [&'a str], u32)];

struct Shards {
    namespace: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    layout: Vec<(String, Vec<String>, u32)>,
    rt: tokio::runtime::Runtime,
    conn: Connection,
    serves: BTreeMap<String, Child>,
    runs: usize,
    extra_queues: Vec<String>,
}

impl Shards {
    fn new(test: &str, layout: Layout) -> Shards {
        ensure_broker();
        static N: AtomicUsize = AtomicUsize::new(0);
        let namespace = format!("ansinh-s{}-{test}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
        let dir = tempfile::tempdir().expect("a temp dir");
        let config = dir.path().join("ansinh.toml");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
        let conn = rt.block_on(connect(ENGINE));
        let layout = layout.iter().map(|(n, p, w)| (n.to_string(), p.iter().map(|s| s.to_string()).collect(), *w)).collect();
        let shards = Shards { namespace, dir, config, layout, rt, conn, serves: BTreeMap::new(), runs: 0, extra_queues: Vec::new() };
        shards.write_config();
        shards
    }

    fn write_config(&self) {
        let mut toml = format!(
            "[bus]\namqp_url = {url:?}\ngroup_wait_ms = 5\nrelay_poll_ms = 50\nreconnect_backoff_max_ms = 1000\n\n\
             [[bus.users]]\nname = {ADMIN:?}\nrole = \"admin\"\n\n\
             [[bus.users]]\nname = {AGENCY:?}\nrole = \"agency\"\nprovinces = [\"001\", \"056\", \"079\", \"092\"]\nprograms = [{PROGRAM:?}]\n\n\
             [[bus.users]]\nname = \"ansinh-bank-970436\"\nrole = \"bank\"\nbin = \"970436\"\n\n\
             [shards]\nnamespace = {ns:?}\n",
            url = url(ENGINE),
            ns = self.namespace
        );
        for (i, (name, provinces, weight)) in self.layout.iter().enumerate() {
            toml.push_str(&format!(
                "\n[[shards.shard]]\nname = {name:?}\nprovinces = {provinces:?}\nweight = {weight}\ndata_dir = {dir:?}\napi_listen = \"127.0.0.1:{port}\"\n",
                dir = self.data_dir(name).display().to_string(),
                port = 1 + i
            ));
        }
        std::fs::write(&self.config, toml).expect("the config is written");
    }

    fn section(&self) -> ShardsSection {
        ansinh::config::Config::load(&self.config, true).expect("the test config loads").shards
    }

    fn data_dir(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bus(&self, name: &str) -> BusConfig {
        BusConfig { prefix: format!("{}.{name}", self.namespace), ..BusConfig::default() }
    }

    fn ansinh(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ansinh"));
        c.arg("--config").arg(&self.config).stdin(Stdio::null());
        c
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Starts `serve --shard NAME` and waits until it consumes its command queue.
    fn start(&mut self, name: &str) {
        self.runs += 1;
        let log_name = format!("serve-{name}-{}", self.runs);
        let log = std::fs::File::create(self.dir.path().join(format!("{log_name}.log"))).expect("a log file");
        let child = self
            .ansinh()
            .args(["serve", "--shard", name, "--no-api"])
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("a handle"))
            .stderr(log)
            .spawn()
            .expect("serve starts");
        self.serves.insert(name.to_string(), child);
        let queue = self.bus(name).commands_queue();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.serves.get_mut(name).and_then(|c| c.try_wait().expect("a status")) {
                panic!("serve --shard {name} exited at start-up ({status}):\n{}", self.log(&log_name));
            }
            if self.queue_counts(&queue).is_some_and(|(_, consumers)| consumers > 0) {
                return;
            }
            assert!(Instant::now() < deadline, "serve --shard {name} did not consume within 60 s:\n{}", self.log(&log_name));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self, name: &str) {
        let mut child = self.serves.remove(name).expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        let queue = self.bus(name).commands_queue();
        wait_for(Duration::from_secs(30), "the broker to drop the killed shard's consumer", || self.queue_counts(&queue).is_some_and(|(_, c)| c == 0));
    }

    fn stop(&mut self, name: &str) {
        let mut child = self.serves.remove(name).expect("running");
        assert!(Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill runs").success());
        let status = wait_child(&mut child, Duration::from_secs(30), "serve to stop");
        assert!(status.success(), "serve --shard {name} exited with {status}");
    }

    fn stop_all(&mut self) {
        let names: Vec<String> = self.serves.keys().cloned().collect();
        for n in names {
            self.stop(&n);
        }
    }

    fn queue_counts(&self, queue: &str) -> Option<(u32, u32)> {
        self.rt.block_on(async {
            let ch = self.conn.create_channel().await.expect("a channel");
            let q = ch.queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await.ok()?;
            let _ = ch.close(200, "".into()).await;
            Some((q.message_count(), q.consumer_count()))
        })
    }

    /// Runs `ansinh ARGS`; (success, stdout, stderr).
    fn run(&self, args: &[&str], timeout: Duration) -> (bool, String, String) {
        let mut child = self.ansinh().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ansinh runs");
        let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let o = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let e = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let status = wait_child(&mut child, timeout, &format!("ansinh {}", args.join(" ")));
        (status.success(), o.join().expect("reader"), e.join().expect("reader"))
    }

    /// `ansinh publish FILE --json` as `user` (routing by the config); (shard, outcome) per reply.
    fn publish(&self, file: &std::path::Path, user: &str, extra: &[&str]) -> Vec<(String, Outcome)> {
        let u = url(user);
        let mut args = vec!["publish", path(file), "--amqp", &u, "--json", "--timeout-secs", "150"];
        args.extend_from_slice(extra);
        let (ok, stdout, stderr) = self.run(&args, Duration::from_secs(180));
        assert!(ok, "publish failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
        let shards: Vec<String> = stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON")["shard"].as_str().unwrap_or("").to_string())
            .collect();
        shards.into_iter().zip(parse_outcomes(&stdout)).collect()
    }

    /// `demo-files` for `people` beneficiaries administered by `province`.
    fn demo_files(&self, province: &str, seed: u64, people: usize, batch_lines: usize) -> PathBuf {
        let out = self.dir.path().join(format!("files-{province}"));
        let args = ["demo-files", "--out", path(&out), "--beneficiaries", &people.to_string(), "--province", province, "--seed", &seed.to_string()];
        let (ok, _, err) = self.run(&[&args[..], &["--batch-lines", &batch_lines.to_string()]].concat(), Duration::from_secs(60));
        assert!(ok, "demo-files: {err}");
        out
    }

    fn engine(&self, name: &str) -> Engine {
        Engine::open(&EngineOptions::new(self.data_dir(name)), &mut |_, _| {}).expect("the shard's engine opens")
    }

    /// Counts every event the shard's relay publishes (a queue bound `#` to its events exchange,
    /// declared before the shard starts).
    fn count_events(&mut self, name: &str) -> Arc<AtomicUsize> {
        let queue = format!("{}.test-events", self.bus(name).prefix);
        self.extra_queues.push(queue.clone());
        let exchange = self.bus(name).events_exchange();
        let count = Arc::new(AtomicUsize::new(0));
        let sink = count.clone();
        self.rt.block_on(async {
            let ch = self.conn.create_channel().await.expect("a channel");
            ch.exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions { durable: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .expect("the events exchange");
            ch.queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default()).await.expect("a queue");
            ch.queue_bind(queue.as_str().into(), exchange.as_str().into(), "#".into(), QueueBindOptions::default(), FieldTable::default())
                .await
                .expect("bound");
            let mut consumer = ch
                .basic_consume(queue.as_str().into(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
                .await
                .expect("consuming");
            self.rt.spawn(async move {
                let _ch = ch;
                while let Some(Ok(_)) = consumer.next().await {
                    sink.fetch_add(1, Ordering::SeqCst);
                }
            });
        });
        count
    }

    async fn delete_topology(&self) {
        let mut queues = self.extra_queues.clone();
        let mut exchanges = vec![shards::route_exchange(&self.namespace), shards::oneoff_exchange(&self.namespace)];
        for (name, _, _) in &self.layout {
            let (q, x) = self.bus(name).topology_names();
            queues.extend(q);
            exchanges.extend(x);
        }
        delete_all(&self.conn, &queues, &exchanges).await;
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        let failing = std::thread::panicking();
        for child in self.serves.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if failing {
            for entry in std::fs::read_dir(self.dir.path()).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("---- {} ----\n{}", p.display(), lines[lines.len().saturating_sub(30)..].join("\n"));
                }
            }
        }
        let _ = self.rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), self.delete_topology()).await });
    }
}

fn records(engine: &Engine) -> Vec<Record> {
    (1..=engine.head().seq).map(|s| engine.log().read(s).expect("a read").expect("a record")).collect()
}

fn types(records: &[Record]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in records {
        *m.entry(r.event.data.type_name()).or_insert(0) += 1;
    }
    m
}

fn accepted(outcomes: &[(String, Outcome)], what: &str) {
    for (shard, o) in outcomes {
        assert_eq!(o.status, OutcomeStatus::Accepted, "{what}: {} at shard {shard}: {:?} {:?}", o.command_id, o.code, o.message);
    }
}

/// Publishes one command straight to `exchange` with `key` as the admin user and waits for
/// its reply.
fn publish_straight(s: &Shards, user: &str, exchange: &str, key: &str, envelope: &ansinh::command::CommandEnvelope) -> Outcome {
    s.rt.block_on(async {
        let conn = connect(user).await;
        let ch = conn.create_channel().await.expect("a channel");
        ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        let q = ch
            .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
            .await
            .expect("a reply queue");
        let mut replies = ch
            .basic_consume(q.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
            .await
            .expect("consume");
        let body = serde_json::to_vec(envelope).expect("serializes");
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_user_id(user.into())
            .with_reply_to(q.name().clone())
            .with_correlation_id(envelope.command_id.as_str().into());
        let confirm = ch
            .basic_publish(exchange.into(), key.into(), BasicPublishOptions { mandatory: true, ..Default::default() }, &body, props)
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack() && confirm.take_message().is_none(), "the command reached a queue");
        let d = tokio::time::timeout(Duration::from_secs(60), replies.next()).await.expect("a reply in time").expect("a delivery").expect("ok");
        let _ = conn.close(200, "".into()).await;
        serde_json::from_slice(&d.data).expect("an outcome")
    })
}

/// (a) Province routing and (b) the refusal at the wrong shard.
#[test]
fn province_commands_reach_the_owning_shard_only_and_another_shard_refuses_them() {
    let mut s = Shards::new("route", &[("north", &["001"], 1), ("south", &["079", "092"], 1)]);
    let north = s.demo_files("001", 1, 200, 50);
    s.start("north");
    s.start("south");
    // Rules go to every shard (`all`): one accepted reply from each; the fund is province 001's.
    let rules = s.publish(&north.join("rules.jsonl"), ADMIN, &[]);
    accepted(&rules, "rules");
    let by_shard: BTreeSet<&str> = rules.iter().map(|(sh, _)| sh.as_str()).collect();
    assert_eq!(by_shard, BTreeSet::from(["north", "south"]), "the national rules were decided by both shards");
    let rule_ids = read_commands(&north.join("rules.jsonl")).len();
    assert_eq!(rules.len(), 2 * (rule_ids - 1) + 1, "every rule answered by both shards, the province's fund by one");
    let enroll = s.publish(&north.join("enroll.jsonl"), AGENCY, &[]);
    accepted(&enroll, "enroll");
    assert!(enroll.iter().all(|(sh, _)| sh == "north"), "province 001's enrollments went to north");
    let batch = s.publish(&north.join("batch.jsonl"), AGENCY, &[]);
    accepted(&batch, "batch");
    let lines: usize = batch.iter().map(|(_, o)| o.lines.len()).sum();
    assert!(lines > 0 && batch.iter().all(|(sh, _)| sh == "north"));

    // (b) An enrollment of province 079 (south's) published straight to north's own commands
    // exchange: refused whole, recorded, nothing applied.
    let mut stray = read_commands(&north.join("enroll.jsonl")).remove(0);
    stray.command_id = "stray-enroll-079".into();
    if let ansinh::command::Command::EnrollBeneficiary(e) = &mut stray.command {
        e.province = "079".into();
    }
    let refused = publish_straight(&s, AGENCY, &s.bus("north").commands_exchange(), "command", &stray);
    assert_eq!((refused.status, refused.code.as_deref()), (OutcomeStatus::Rejected, Some("shard_not_owner")), "{refused:?}");
    // A citizen-only command without --province or --to-shard is refused by publish itself.
    let lone = s.dir.path().join("lone.jsonl");
    std::fs::write(&lone, r#"{"command_id":"lone-1","type":"suspend_beneficiary","issued_at":"2025-01-20T08:00:00Z","payload":{"citizen_id":"001090000001","program_id":"social-allowance","effective_from":"2025-02"}}"#).unwrap();
    let (ok, _, err) = s.run(&["publish", path(&lone), "--amqp", &url(AGENCY)], Duration::from_secs(30));
    assert!(!ok && err.contains("--province CODE"), "{err}");
    s.stop_all();

    let (n, so) = (records(&s.engine("north")), records(&s.engine("south")));
    let (nt, st) = (types(&n), types(&so));
    assert_eq!(nt.get("beneficiary.enrolled"), Some(&200), "north enrolled province 001: {nt:?}");
    assert_eq!(nt.get("payout.instructed"), Some(&lines), "north paid the batches' lines: {nt:?}");
    assert_eq!(nt.get("command.rejected"), Some(&1), "north recorded its refusal: {nt:?}");
    let refusal = n.iter().find(|r| r.event.command_id == "stray-enroll-079").expect("the refusal is in north's log");
    assert!(matches!(&refusal.event.data, EventData::CommandRejected(r) if r.code == "shard_not_owner"));
    for t in ["beneficiary.enrolled", "payout.instructed", "budget.funded", "payout_batch.submitted"] {
        assert_eq!(st.get(t), None, "south decided nothing of province 001: {st:?}");
    }
    assert_eq!(st.get("program.defined"), Some(&1), "south has the program: {st:?}");
}

/// (c) The probe agrees with the real one-off exchange: every partition key published to
/// `<namespace>.oneoff` (no shard running) lands in the queue the probe predicted; and a shard
/// whose ring moved (a weight changed) refuses to start.
#[test]
fn the_probe_predicts_the_real_one_off_exchange_and_a_moved_ring_stops_serve() {
    let mut s = Shards::new("probe", &[("a", &["001"], 1), ("b", &["079"], 2), ("c", &["092"], 1)]);
    let section = s.section();
    let national = National { shards: section.clone(), shard: "b".into() };
    let ring = s.rt.block_on(async {
        let ch = s.conn.create_channel().await.expect("a channel");
        shards::declare(&ch, &s.bus("b"), &national).await.expect("the national topology");
        shards::probe(&s.conn, &section).await.expect("the probe")
    });
    let counts: Vec<usize> = (0..3).map(|i| ring.iter().filter(|o| **o == i).count()).collect();
    assert!(counts.iter().all(|n| *n > 100) && counts[1] > counts[0] && counts[1] > counts[2], "weights 1:2:1 give b the most: {counts:?}");
    let landed: Vec<Vec<u16>> = s.rt.block_on(async {
        let ch = s.conn.create_channel().await.expect("a channel");
        ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        let oneoff = shards::oneoff_exchange(&s.namespace);
        for p in 0..PARTITIONS {
            let key = p.to_string();
            let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
            let c = ch
                .basic_publish(oneoff.as_str().into(), key.as_str().into(), opts, key.as_bytes(), BasicProperties::default())
                .await
                .expect("publish")
                .await
                .expect("confirm");
            assert!(c.is_ack() && c.take_message().is_none(), "partition {p} reached a queue");
        }
        let mut landed = Vec::new();
        for name in ["a", "b", "c"] {
            let mut got = Vec::new();
            while let Some(m) = ch.basic_get(s.bus(name).commands_queue().as_str().into(), BasicGetOptions { no_ack: true }).await.expect("get") {
                got.push(std::str::from_utf8(&m.delivery.data).unwrap().parse::<u16>().unwrap());
            }
            landed.push(got);
        }
        landed
    });
    for (i, got) in landed.iter().enumerate() {
        let predicted: BTreeSet<u16> = (0..PARTITIONS).filter(|p| ring[usize::from(*p)] == i).collect();
        assert_eq!(got.iter().copied().collect::<BTreeSet<u16>>(), predicted, "shard {i}: the real exchange and the probe agree");
        assert_eq!(got.len(), predicted.len(), "each partition once");
    }

    // serve --shard a remembers its partitions; with b's weight changed it refuses to start.
    s.start("a");
    s.stop("a");
    let remembered: shards::Remembered = serde_json::from_slice(&std::fs::read(s.data_dir("a").join(shards::OWNERSHIP_FILE)).unwrap()).unwrap();
    assert_eq!(remembered.partitions, shards::owned_partitions(&ring, &section, "a"));
    s.layout[1].2 = 3;
    s.write_config();
    let (ok, _, err) = s.run(&["serve", "--shard", "a", "--no-api"], Duration::from_secs(60));
    assert!(!ok && err.contains("Rebalancing") && err.contains("other one-off partitions"), "{err}");
    // Provinces may move: a started with another province still starts (weights put back).
    s.layout[1].2 = 2;
    s.layout[0].1 = vec!["001".into(), "056".into()];
    s.write_config();
    s.start("a");
    s.stop("a");
    // Bad --shard arguments are named.
    let (ok, _, err) = s.run(&["serve", "--shard", "nowhere", "--no-api"], Duration::from_secs(30));
    assert!(!ok && err.contains("not a shard of the config"), "{err}");
    let bare = s.dir.path().join("bare.toml");
    std::fs::write(&bare, "").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ansinh")).args(["--config", path(&bare), "serve", "--shard", "a", "--no-api"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no [shards] section"));
}

/// (d) One of two shards SIGKILLed while both decide many province batches, then restarted:
/// every command has exactly one outcome and one range of events, every line is paid once, on
/// its province's shard.
#[test]
fn a_shard_killed_mid_stream_loses_and_doubles_nothing() {
    let _apart = kill_tests_apart();
    // Enough batches that north still has some when the trigger below fires, also on a loaded
    // machine where its relay lags its decisions (the kill must land mid-stream).
    const PEOPLE: usize = 3_000;
    let mut s = Shards::new("crash", &[("north", &["001"], 1), ("south", &["079"], 1)]);
    let north_files = s.demo_files("001", 11, PEOPLE, 20);
    let south_files = s.demo_files("079", 12, PEOPLE, 20);
    let north_events = s.count_events("north");
    s.start("north");
    s.start("south");
    for files in [&north_files, &south_files] {
        accepted(&s.publish(&files.join("rules.jsonl"), ADMIN, &[]), "rules");
        accepted(&s.publish(&files.join("enroll.jsonl"), AGENCY, &[]), "enroll");
    }
    // Both provinces' batches interleaved in one file, published in the background.
    let (nb, sb) = (read_commands(&north_files.join("batch.jsonl")), read_commands(&south_files.join("batch.jsonl")));
    let mixed: Vec<_> = nb.iter().zip(sb.iter()).flat_map(|(a, b)| [a.clone(), b.clone()]).collect();
    assert_eq!(mixed.len(), nb.len() + sb.len(), "as many batches in each province");
    let file = s.dir.path().join("batches.jsonl");
    write_commands(&file, &mixed);
    let line_count = |b: &[ansinh::command::CommandEnvelope]| -> usize {
        b.iter().map(|e| if let ansinh::command::Command::SubmitPayoutBatch(c) = &e.command { c.lines.len() } else { 0 }).sum()
    };
    let (north_lines, south_lines) = (line_count(&nb), line_count(&sb));
    let before = north_events.load(Ordering::SeqCst);
    let log = std::fs::File::create(s.dir.path().join("publish-batches.log")).unwrap();
    let mut publisher = s
        .ansinh()
        .args(["publish", path(&file), "--amqp", &url(AGENCY), "--json", "--timeout-secs", "150", "--window", "20"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("publish runs");
    let mut stdout = publisher.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    // The trigger is what north's relay published, which lags what north decided: fire early.
    wait_for(SECS_120, "north to pay a share of its batches", || north_events.load(Ordering::SeqCst) >= before + north_lines / 20);
    s.kill("north");
    // The kill landed mid-stream: batches north had not acknowledged are back in its queue.
    let (left, _) = s.queue_counts(&s.bus("north").commands_queue()).expect("north's queue");
    eprintln!("crash test: {left} of {} north batches left at the kill", nb.len());
    assert!(left > 0, "north had finished before the kill; the test would show nothing");
    std::thread::sleep(Duration::from_millis(500));
    s.start("north");
    let status = wait_child(&mut publisher, Duration::from_secs(200), "the publisher");
    let stdout = reader.join().unwrap();
    assert!(status.success(), "publish: {status}\n{}", std::fs::read_to_string(s.dir.path().join("publish-batches.log")).unwrap_or_default());
    let outcomes = parse_outcomes(&stdout);
    assert_eq!(outcomes.len(), mixed.len(), "exactly one outcome per batch");
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Accepted), "every batch accepted");
    s.stop_all();

    for (name, batches, lines, province) in [("north", &nb, north_lines, "001"), ("south", &sb, south_lines, "079")] {
        let recs = records(&s.engine(name));
        let mut by_command: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for r in &recs {
            assert!(ids.insert(r.event.id.as_str()), "{name}: event id {} twice", r.event.id);
            by_command.entry(r.event.command_id.as_str()).or_default().push(r.seq);
        }
        for b in batches.iter() {
            let seqs = by_command.get(b.command_id.as_str()).unwrap_or_else(|| panic!("{name}: batch {} lost", b.command_id));
            assert_eq!(seqs.last().unwrap() - seqs[0] + 1, seqs.len() as u64, "{name}: {} decided once", b.command_id);
        }
        let mut paid = BTreeSet::new();
        for r in &recs {
            if let EventData::PayoutInstructed(p) = &r.event.data {
                assert_eq!(p.province, province, "{name} paid only its province");
                assert!(paid.insert((p.citizen_id.to_string(), p.period.to_string())), "{name}: a citizen paid twice for a period");
            }
        }
        assert_eq!(paid.len(), lines, "{name}: every line paid once");
        assert!(!recs.iter().any(|r| matches!(r.event.data, EventData::CommandRejected(_))), "{name}: nothing refused");
    }
}

// ---- One-off programmes across shards (issue 12) --------------------------------------------

const ONE_OFF: &str = "ho-tro-100k";
const ONE_OFF_AT: &str = "2025-08-31T08:00:00+07:00";

/// The n-th test payee: a man born in 1990 whose number is registered in Hà Nội (001).
fn payee(n: usize) -> String {
    format!("001090{n:06}")
}

/// A one-off line: two payees in three with an account, the third paid in cash at a commune.
fn one_off_line(citizen: &str) -> serde_json::Value {
    let n: usize = citizen[6..].parse().unwrap();
    if n % 3 == 2 {
        serde_json::json!({"citizen_id": citizen, "id_assigned_on": "2021-03-15", "commune": "00004"})
    } else {
        serde_json::json!({"citizen_id": citizen, "id_assigned_on": "2021-03-15",
            "account": {"bin": "970436", "account_no": format!("10{n:08}"), "holder_name": "NGUYEN VAN AN"}})
    }
}

fn one_off_command(id: &str, kind: &str, payload: serde_json::Value) -> String {
    serde_json::json!({"command_id": id, "v": 1, "issued_at": ONE_OFF_AT, "type": kind, "payload": payload}).to_string() + "\n"
}

/// `submit_one_off_batch` commands for `citizens`, grouped by partition, at most `per_batch`
/// lines each; batch ids start with `tag`.
fn one_off_batches(tag: &str, citizens: &[String], per_batch: usize) -> String {
    let mut by_partition: BTreeMap<u16, Vec<&String>> = BTreeMap::new();
    for c in citizens {
        by_partition.entry(ansinh::shard::partition_of(c)).or_default().push(c);
    }
    let mut out = String::new();
    for (p, cs) in by_partition {
        for (i, chunk) in cs.chunks(per_batch).enumerate() {
            let batch = format!("{tag}-{p}-{i}");
            let lines: Vec<serde_json::Value> = chunk.iter().map(|c| one_off_line(c)).collect();
            out += &one_off_command(
                &format!("submit-{batch}"),
                "submit_one_off_batch",
                serde_json::json!({"batch_id": batch, "program_id": ONE_OFF, "partition": p, "lines": lines}),
            );
        }
    }
    out
}

impl Shards {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let file = self.dir.path().join(name);
        std::fs::write(&file, text).expect("a command file");
        file
    }

    /// Defines the one-off programme on every shard (`all`) and funds each shard for `payees`.
    fn define_and_fund_one_off(&self, payees: usize) {
        let define = self.write(
            "oo-define.jsonl",
            &one_off_command(
                "oo-define",
                "define_one_off_program",
                serde_json::json!({"program_id": ONE_OFF, "name": "Quà tặng 100.000 đồng", "amount": "100000",
                    "eligible_cutoff": "2025-08-30", "period": "2025-09"}),
            ),
        );
        let defined = self.publish(&define, ADMIN, &[]);
        accepted(&defined, "define_one_off_program");
        assert_eq!(defined.len(), self.layout.len(), "every shard defined the programme");
        for (name, _, _) in self.layout.clone() {
            let amount = (100_000 * payees).to_string();
            let fund = self.write(
                &format!("oo-fund-{name}.jsonl"),
                &one_off_command(&format!("oo-fund-{name}"), "fund_one_off", serde_json::json!({"program_id": ONE_OFF, "amount": amount})),
            );
            let funded = self.publish(&fund, ADMIN, &["--to-shard", &name]);
            accepted(&funded, "fund_one_off");
            assert_eq!(funded.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), [name.as_str()], "the fund reached its shard only");
        }
    }

    fn partitions_of(&self, name: &str) -> BTreeSet<u16> {
        let r: shards::Remembered = serde_json::from_slice(&std::fs::read(self.data_dir(name).join(shards::OWNERSHIP_FILE)).expect("ownership.json")).unwrap();
        r.partitions.into_iter().collect()
    }

    /// Every one-off payee of every stopped shard's log: (citizen, "bank" | "cash") per shard;
    /// asserts each is on the shard owning its partition and none is there twice.
    fn one_off_payees(&self) -> BTreeMap<String, Vec<(String, &'static str)>> {
        let mut all: BTreeMap<String, Vec<(String, &'static str)>> = BTreeMap::new();
        for (name, _, _) in &self.layout {
            let owned = self.partitions_of(name);
            for r in records(&self.engine(name)) {
                let (citizen, how) = match &r.event.data {
                    EventData::PayoutInstructed(p) if p.program_id == ONE_OFF => (p.citizen_id.to_string(), "bank"),
                    EventData::OneOffCashListed(c) => (c.citizen_id.to_string(), "cash"),
                    _ => continue,
                };
                assert!(owned.contains(&ansinh::shard::partition_of(&citizen)), "{name} paid {citizen}, of a partition it does not own");
                all.entry(citizen).or_default().push((name.clone(), how));
            }
        }
        all
    }
}

/// A bank runs one connector per shard (`bank-connector --shard NAME`): each takes its shard's
/// one-off instructions from `<namespace>.<shard>.bank.<bin>` and reports them settled to that
/// shard, under the bank's own broker user and the setup script's permissions.
#[test]
fn a_bank_connector_per_shard_settles_that_shards_one_off_payouts() {
    const PAYEES: usize = 30;
    let mut s = Shards::new("bank", &[("a", &["001"], 1), ("b", &["079"], 1)]);
    for name in ["a", "b"] {
        s.start(name);
    }
    s.define_and_fund_one_off(PAYEES);
    let citizens: Vec<String> = (0..PAYEES).map(payee).collect();
    let outcomes = s.publish(&s.write("bank-batches.jsonl", &one_off_batches("BK", &citizens, 5)), ADMIN, &[]);
    accepted(&outcomes, "one-off batches");
    let mut per_shard: BTreeMap<String, usize> = BTreeMap::new();
    for (shard, o) in &outcomes {
        *per_shard.entry(shard.clone()).or_default() += o.count_lines("instructed");
    }
    assert_eq!(per_shard.len(), 2, "both shards took payees: {per_shard:?}");
    let bank = "ansinh-bank-970436";
    let mut connectors = Vec::new();
    for (shard, n) in &per_shard {
        let log = std::fs::File::create(s.dir.path().join(format!("bank-{shard}.log"))).unwrap();
        let args = ["bank-connector", "--bin", "970436", "--shard", shard, "--amqp", &url(bank), "--failure-rate", "0", "--batch-wait-ms", "100"];
        let child =
            s.ansinh().args(args).args(["--exit-after", &n.to_string()]).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("bank-connector runs");
        connectors.push((shard.clone(), child));
    }
    for (shard, child) in &mut connectors {
        let status = wait_child(child, SECS_120, "the bank connector");
        let log = std::fs::read_to_string(s.dir.path().join(format!("bank-{shard}.log"))).unwrap_or_default();
        assert!(status.success(), "bank-connector --shard {shard}: {status}\n{log}");
    }
    // The reports are in the shards' queues; a shard stopped by SIGTERM decides the group in
    // hand, so once no report waits ready, stopping loses none.
    for shard in per_shard.keys() {
        let queue = s.bus(shard).commands_queue();
        wait_for(SECS_120, "the bank's reports taken by their shard", || s.queue_counts(&queue).is_some_and(|(ready, _)| ready == 0));
    }
    s.stop_all();
    for (shard, n) in &per_shard {
        let records = records(&s.engine(shard));
        let settled: BTreeSet<String> = records
            .iter()
            .filter_map(|r| match &r.event.data {
                EventData::PayoutSettled(p) if p.program_id == ONE_OFF => Some(p.payout_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(settled.len(), *n, "{shard}: every one-off payout it instructed settled by its own connector");
    }
}

/// One-off lines over three shards: each line instructed or listed for cash exactly once, by the
/// shard owning its partition; the same citizen in two offices' batches is paid once (the other
/// line `one_off_already_paid`); a batch published straight to a shard that does not own its
/// partition is refused whole (`shard_not_owner`) and nothing of it is applied there.
#[test]
fn one_off_lines_are_paid_once_each_by_the_shard_owning_their_partition() {
    const PAYEES: usize = 150;
    let mut s = Shards::new("oneoff", &[("a", &["001"], 1), ("b", &["079"], 1), ("c", &["092"], 1)]);
    for name in ["a", "b", "c"] {
        s.start(name);
    }
    s.define_and_fund_one_off(PAYEES + 10);
    let citizens: Vec<String> = (0..PAYEES).map(payee).collect();
    let batches = s.write("oo-batches.jsonl", &one_off_batches("OO", &citizens, 4));
    let outcomes = s.publish(&batches, ADMIN, &[]);
    accepted(&outcomes, "one-off batches");
    let owners: BTreeMap<String, BTreeSet<u16>> = ["a", "b", "c"].iter().map(|n| (n.to_string(), s.partitions_of(n))).collect();
    for (shard, o) in &outcomes {
        let p: u16 = o.command_id.split('-').nth(2).unwrap().parse().unwrap();
        assert!(owners[shard].contains(&p), "batch {} of partition {p} was decided by {shard}, which does not own it", o.command_id);
        assert!(o.lines.iter().all(|l| l.code.is_none() && matches!(l.status.as_str(), "instructed" | "cash_listed")), "{o:?}");
    }
    let shards_used: BTreeSet<&str> = outcomes.iter().map(|(sh, _)| sh.as_str()).collect();
    assert_eq!(shards_used.len(), 3, "150 payees spread over the three shards: {shards_used:?}");

    // Two offices each list citizen X (a new payee) in a batch of X's partition.
    let x = payee(PAYEES);
    let p = ansinh::shard::partition_of(&x);
    let office = |o: &str| {
        one_off_command(
            &format!("office-{o}"),
            "submit_one_off_batch",
            serde_json::json!({"batch_id": format!("OO-office-{o}"), "program_id": ONE_OFF, "partition": p, "lines": [one_off_line(&x)]}),
        )
    };
    let first = s.publish(&s.write("office-1.jsonl", &office("1")), ADMIN, &[]);
    let second = s.publish(&s.write("office-2.jsonl", &office("2")), ADMIN, &[]);
    accepted(&first, "office 1");
    accepted(&second, "office 2");
    assert_eq!(first[0].0, second[0].0, "one partition, one shard");
    assert!(first[0].1.lines[0].code.is_none(), "{:?}", first[0].1);
    assert_eq!(second[0].1.lines[0].code.as_deref(), Some("one_off_already_paid"), "{:?}", second[0].1);

    // A batch of a partition of a, published straight to b's own commands exchange.
    let of_a = (PAYEES + 1..).map(payee).find(|c| owners["a"].contains(&ansinh::shard::partition_of(c))).unwrap();
    let stray: ansinh::command::CommandEnvelope = serde_json::from_str(&one_off_command(
        "stray-oneoff",
        "submit_one_off_batch",
        serde_json::json!({"batch_id": "OO-stray", "program_id": ONE_OFF, "partition": ansinh::shard::partition_of(&of_a), "lines": [one_off_line(&of_a)]}),
    ))
    .unwrap();
    let refused = publish_straight(&s, ADMIN, &s.bus("b").commands_exchange(), "command", &stray);
    assert_eq!((refused.status, refused.code.as_deref()), (OutcomeStatus::Rejected, Some("shard_not_owner")), "{refused:?}");
    s.stop_all();

    let paid = s.one_off_payees();
    let expected: BTreeSet<String> = citizens.iter().cloned().chain([x.clone()]).collect();
    assert_eq!(paid.keys().cloned().collect::<BTreeSet<_>>(), expected, "every line paid, nothing else (not the stray)");
    for (c, at) in &paid {
        assert_eq!(at.len(), 1, "{c} paid once nation-wide: {at:?}");
        let n: usize = c[6..].parse().unwrap();
        assert_eq!(at[0].1, if n % 3 == 2 { "cash" } else { "bank" }, "{c}");
    }
    let b = records(&s.engine("b"));
    let refusal = b.iter().find(|r| r.event.command_id == "stray-oneoff").expect("b recorded its refusal");
    assert!(matches!(&refusal.event.data, EventData::CommandRejected(r) if r.code == "shard_not_owner"));
    assert_eq!(b.iter().filter(|r| r.event.command_id == "stray-oneoff").count(), 1, "the refusal is all b wrote of it");
}

/// One of two shards SIGKILLed while one-off batches are queued for it, then restarted: every
/// batch has exactly one outcome, every line is paid once nation-wide by its partition's shard,
/// and a national checkpoint over the stopped shards' data dirs is taken and verifies.
#[test]
fn a_shard_killed_mid_stream_of_one_off_batches_pays_each_line_once_and_the_nation_verifies() {
    let _apart = kill_tests_apart();
    const PAYEES: usize = 1_000;
    let mut s = Shards::new("oocrash", &[("a", &["001"], 1), ("b", &["079"], 1)]);
    let a_events = s.count_events("a");
    s.start("a");
    s.start("b");
    s.define_and_fund_one_off(PAYEES);
    let citizens: Vec<String> = (0..PAYEES).map(payee).collect();
    let text = one_off_batches("OK", &citizens, 2);
    let batches = text.lines().count();
    let a_parts = s.partitions_of("a");
    let a_lines = citizens.iter().filter(|c| a_parts.contains(&ansinh::shard::partition_of(c))).count();
    let file = s.write("oo-crash.jsonl", &text);
    let before = a_events.load(Ordering::SeqCst);
    let log = std::fs::File::create(s.dir.path().join("publish-oo.log")).unwrap();
    let mut publisher = s
        .ansinh()
        .args(["publish", path(&file), "--amqp", &url(ADMIN), "--json", "--timeout-secs", "150", "--window", "20"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("publish runs");
    let mut stdout = publisher.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    wait_for(SECS_120, "a to pay a share of its lines", || a_events.load(Ordering::SeqCst) >= before + a_lines / 4);
    s.kill("a");
    let (left, _) = s.queue_counts(&s.bus("a").commands_queue()).expect("a's queue");
    eprintln!("one-off crash test: {left} batches left in a's queue at the kill ({batches} in all)");
    assert!(left > 0, "a had finished before the kill; the test would show nothing");
    std::thread::sleep(Duration::from_millis(500));
    s.start("a");
    let status = wait_child(&mut publisher, Duration::from_secs(200), "the publisher");
    let stdout = reader.join().unwrap();
    assert!(status.success(), "publish: {status}\n{}", std::fs::read_to_string(s.dir.path().join("publish-oo.log")).unwrap_or_default());
    let outcomes = parse_outcomes(&stdout);
    assert_eq!(outcomes.len(), batches, "exactly one outcome per batch");
    let ids: BTreeSet<&str> = outcomes.iter().map(|o| o.command_id.as_str()).collect();
    assert_eq!(ids.len(), batches, "no batch answered twice");
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Accepted && o.lines.iter().all(|l| l.code.is_none())), "every batch and line accepted");
    s.stop_all();

    let paid = s.one_off_payees();
    assert_eq!(paid.len(), PAYEES, "every payee paid");
    assert!(paid.iter().all(|(_, at)| at.len() == 1), "none paid twice");
    for name in ["a", "b"] {
        let recs = records(&s.engine(name));
        let mut by_command: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for r in &recs {
            by_command.entry(r.event.command_id.as_str()).or_default().push(r.seq);
        }
        for (id, seqs) in by_command.iter().filter(|(id, _)| id.starts_with("submit-OK-")) {
            assert_eq!(seqs.last().unwrap() - seqs[0] + 1, seqs.len() as u64, "{name}: {id} decided once");
        }
    }
    // The national checkpoint over the stopped shards' data dirs, and its verification.
    let checkpoint = s.dir.path().join("national.json");
    let (ok, out, err) = s.run(&["audit", "national-checkpoint", "--out", path(&checkpoint)], Duration::from_secs(60));
    assert!(ok, "national-checkpoint: {out}{err}");
    let (ok, out, err) = s.run(&["audit", "verify-national", "--checkpoint", path(&checkpoint)], Duration::from_secs(60));
    assert!(ok && out.contains("national: all 2 shards pass through the heads it names: OK"), "verify-national: {out}{err}");
    let (ok, out, err) = s.run(&["audit", "verify", "--shards", "--chain-only"], Duration::from_secs(60));
    assert!(ok && out.contains("no citizen paid on more than one shard"), "verify --shards: {out}{err}");
}

/// An outside client of the documented contract only (events/README.md "One-off programs",
/// "Publishing"; README): commands are JSON built by hand, the partition is computed here with
/// SHA-256 as the contract says, messages go out with lapin to `<namespace>.route` (keys `all`,
/// `shard.<name>`) and `<namespace>.oneoff` (key = the partition in decimal), with `user_id`,
/// `reply_to`, `correlation_id` and `message_id`; replies are read as JSON. Nothing of the crate's
/// command types or its `partition_of` is used in this module.
mod outside_client {
    use futures_util::StreamExt;
    use lapin::options::*;
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties};
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};
    use std::time::Duration;

    /// First two bytes of SHA-256 over the 12 ASCII digits, big-endian, mod 1024.
    pub fn partition(citizen_id: &str) -> u16 {
        let d = Sha256::digest(citizen_id.as_bytes());
        u16::from_be_bytes([d[0], d[1]]) % 1024
    }

    pub struct Client {
        conn: Connection,
        channel: lapin::Channel,
        replies: lapin::Consumer,
        reply_to: String,
        user: String,
    }

    impl Client {
        pub async fn connect(user: &str) -> Client {
            let url = format!("amqp://{user}:{user}@127.0.0.1:5672/%2f");
            let conn = Connection::connect(&url, ConnectionProperties::default()).await.expect("the broker");
            let channel = conn.create_channel().await.expect("a channel");
            channel.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
            let q = channel
                .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
                .await
                .expect("a reply queue");
            let replies = channel
                .basic_consume(q.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
                .await
                .expect("consuming replies");
            Client { conn, channel, replies, reply_to: q.name().to_string(), user: user.to_string() }
        }

        /// Publishes one command (persistent, mandatory, confirmed) and returns the `expected`
        /// replies to it as JSON.
        pub async fn send(&mut self, exchange: &str, key: &str, command: &Value, expected: usize) -> Vec<Value> {
            let id = command["command_id"].as_str().expect("a command id").to_string();
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_user_id(self.user.as_str().into())
                .with_reply_to(self.reply_to.as_str().into())
                .with_correlation_id(id.as_str().into())
                .with_message_id(id.as_str().into());
            let body = serde_json::to_vec(command).unwrap();
            let confirm = self
                .channel
                .basic_publish(exchange.into(), key.into(), BasicPublishOptions { mandatory: true, ..Default::default() }, &body, props)
                .await
                .expect("published")
                .await
                .expect("confirmed");
            assert!(confirm.is_ack() && confirm.take_message().is_none(), "{id}: a queue took it");
            let mut out = Vec::new();
            while out.len() < expected {
                let d = tokio::time::timeout(Duration::from_secs(60), self.replies.next()).await.expect("a reply in time").expect("a delivery").expect("ok");
                assert_eq!(d.properties.correlation_id().as_ref().map(|c| c.to_string()), Some(id.clone()), "replies come in order");
                out.push(serde_json::from_slice(&d.data).expect("a JSON reply"));
            }
            out
        }

        pub async fn close(self) {
            let _ = self.conn.close(200, "".into()).await;
        }
    }

    pub fn command(id: &str, kind: &str, payload: Value) -> Value {
        json!({"command_id": id, "v": 1, "issued_at": "2025-08-31T08:00:00+07:00", "type": kind, "payload": payload})
    }
}

#[test]
fn an_outside_client_publishes_a_one_off_programme_with_only_the_documented_contract() {
    use outside_client::{command, partition, Client};
    use serde_json::json;
    let mut s = Shards::new("outside", &[("north", &["001"], 1), ("south", &["079"], 1)]);
    s.start("north");
    s.start("south");
    let (route, oneoff) = (format!("{}.route", s.namespace), format!("{}.oneoff", s.namespace));
    let citizens: Vec<String> = (0..40).map(|n| format!("079302{n:06}")).collect();
    let (replies, by_partition) = s.rt.block_on(async {
        let mut c = Client::connect(ADMIN).await;
        let mut replies = Vec::new();
        let define = command(
            "ext-define",
            "define_one_off_program",
            json!({"program_id": "ext-100k", "name": "Quà tặng", "amount": "100000", "eligible_cutoff": "2025-08-30", "period": "2025-09"}),
        );
        replies.extend(c.send(&route, "all", &define, 2).await);
        for shard in ["north", "south"] {
            let fund = command(&format!("ext-fund-{shard}"), "fund_one_off", json!({"program_id": "ext-100k", "amount": "4000000"}));
            replies.extend(c.send(&route, &format!("shard.{shard}"), &fund, 1).await);
        }
        let mut by_partition: std::collections::BTreeMap<u16, Vec<&String>> = Default::default();
        for id in &citizens {
            by_partition.entry(partition(id)).or_default().push(id);
        }
        for (p, ids) in &by_partition {
            let lines: Vec<_> = ids.iter().map(|id| json!({"citizen_id": id, "id_assigned_on": "2020-01-10", "commune": "26734"})).collect();
            let batch = command(
                &format!("ext-batch-{p}"),
                "submit_one_off_batch",
                json!({"batch_id": format!("EXT-{p}"), "program_id": "ext-100k", "partition": p, "lines": lines}),
            );
            replies.extend(c.send(&oneoff, &p.to_string(), &batch, 1).await);
        }
        c.close().await;
        (replies, by_partition.into_iter().map(|(p, v)| (p, v.len())).collect::<Vec<_>>())
    });
    for r in &replies {
        assert_eq!(r["status"], "accepted", "{r}");
    }
    let defined_by: BTreeSet<&str> = replies[..2].iter().map(|r| r["command_id"].as_str().unwrap()).collect();
    assert_eq!(defined_by, BTreeSet::from(["ext-define"]));
    let batch_replies = &replies[4..];
    assert_eq!(batch_replies.len(), by_partition.len(), "one reply per batch");
    let mut listed = 0;
    for (r, (_, n)) in batch_replies.iter().zip(&by_partition) {
        let lines = r["lines"].as_array().expect("the lines' outcomes");
        assert_eq!(lines.len(), *n);
        assert!(lines.iter().all(|l| l["status"] == "cash_listed" && l.get("code").is_none()), "{r}");
        listed += lines.len();
    }
    assert_eq!(listed, citizens.len(), "every line listed for cash");
    s.stop_all();
    // Each listed once, by the shard its partition routed to (the crate's view of the same thing).
    let mut seen = BTreeSet::new();
    for name in ["north", "south"] {
        let owned = s.partitions_of(name);
        for r in records(&s.engine(name)) {
            if let EventData::OneOffCashListed(c) = &r.event.data {
                assert!(owned.contains(&partition(c.citizen_id.as_str())) && seen.insert(c.citizen_id.to_string()), "{name}: {}", c.citizen_id);
            }
        }
    }
    assert_eq!(seen.len(), citizens.len());
}

// ---- Regular programmes across shards: one citizen, two provinces, a moved province ---------

/// Held by the two kill tests and the three tests below for their whole run: on two shared cores
/// the kill tests' trigger (a share of the killed shard's events seen on the bus) lagged behind
/// a shard that had already finished when these ran beside them ("finished before the kill").
static KILL_TESTS_APART: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn kill_tests_apart() -> std::sync::MutexGuard<'static, ()> {
    KILL_TESTS_APART.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const P1: &str = "2025-02";
const P2: &str = "2025-03";

/// (citizen ID, full name, date of birth, category, entitlement): IDs that agree with their sex
/// (male) and birth year; the entitlement is 500,000 x the category's coefficient.
const MOVERS: [(&str, &str, &str, &str, &str); 2] =
    [("056200676516", "Hoàng Đức Cường", "2000-07-23", "6c", "750000"), ("054029553086", "Vũ Thanh Phong", "1929-12-13", "5c", "500000")];

fn regular(id: &str, kind: &str, payload: serde_json::Value) -> String {
    serde_json::json!({"command_id": id, "v": 1, "issued_at": "2025-01-20T08:00:00+07:00", "type": kind, "payload": payload}).to_string() + "\n"
}

fn enroll_json(tag: &str, who: usize, province: &str, from: &str) -> String {
    let (id, name, dob, category, _) = MOVERS[who];
    regular(
        &format!("{tag}-enroll-{id}"),
        "enroll_beneficiary",
        serde_json::json!({"citizen_id": id, "program_id": PROGRAM, "province": province, "full_name": name, "date_of_birth": dob,
            "sex": "male", "category": category, "effective_from": from,
            "account": {"bin": "970436", "account_no": format!("10{}", &id[4..]), "holder_name": "NGUYEN VAN AN"},
            "attestation": {"level": 2, "provider": "VNeID", "reference": format!("VNEID-L2-{id}"), "verified_at": "2025-01-10T09:30:00+07:00"}}),
    )
}

fn fund_json(tag: &str, province: &str, period: &str) -> String {
    regular(
        &format!("{tag}-fund-{province}-{period}"),
        "fund_budget",
        serde_json::json!({"province": province, "program_id": PROGRAM, "period": period, "amount": "5000000"}),
    )
}

fn batch_json(tag: &str, province: &str, period: &str, who: &[usize]) -> String {
    let lines: Vec<serde_json::Value> = who.iter().map(|w| serde_json::json!({"citizen_id": MOVERS[*w].0, "amount": MOVERS[*w].4})).collect();
    let batch = format!("{tag}-{province}-{period}");
    regular(
        &format!("submit-{batch}"),
        "submit_payout_batch",
        serde_json::json!({"batch_id": batch, "program_id": PROGRAM, "province": province, "period": period, "lines": lines}),
    )
}

impl Shards {
    /// The program and its national level, to every shard (`all`): one accepted reply per shard.
    fn define_regular(&self) {
        let rules =
            regular(
                "reg-define",
                "define_program",
                serde_json::json!({"program_id": PROGRAM, "name": "Trợ cấp xã hội hằng tháng", "categories": {"5c": "1.0", "6c": "1.5"}}),
            ) + &regular("reg-level", "set_standard_level", serde_json::json!({"program_id": PROGRAM, "effective_from": "2024-07", "amount": "500000"}));
        let out = self.publish(&self.write("reg-rules.jsonl", &rules), ADMIN, &[]);
        accepted(&out, "rules");
        assert_eq!(out.len(), 2 * self.layout.len(), "both rules decided by every shard");
    }

    /// Publishes `text` (routed by `ansinh publish`): a fund as the admin, anything else as the
    /// agency; (shard, outcome) per reply.
    fn send(&self, name: &str, text: &str, extra: &[&str]) -> Vec<(String, Outcome)> {
        let user = if text.contains(r#""type":"fund_budget""#) { ADMIN } else { AGENCY };
        self.publish(&self.write(&format!("{name}.jsonl"), text), user, extra)
    }

    /// One command, accepted by exactly `shard`; its outcome.
    fn send_one(&self, name: &str, text: &str, shard: &str, extra: &[&str]) -> Outcome {
        let mut out = self.send(name, text, extra);
        assert_eq!(out.len(), 1, "{name}: one reply: {out:?}");
        let (at, o) = out.remove(0);
        assert_eq!(at, shard, "{name} reached {shard}");
        assert_eq!(o.status, OutcomeStatus::Accepted, "{name}: {:?} {:?}", o.code, o.message);
        o
    }

    /// Every regular payout instructed in every stopped shard's log: (citizen, period) -> shards.
    fn regular_payouts(&self) -> BTreeMap<(String, String), Vec<String>> {
        let mut all: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (name, _, _) in &self.layout {
            for r in records(&self.engine(name)) {
                if let EventData::PayoutInstructed(p) = &r.event.data {
                    if p.program_id == PROGRAM {
                        all.entry((p.citizen_id.to_string(), p.period.to_string())).or_default().push(name.clone());
                    }
                }
            }
        }
        all
    }

    /// `audit verify --shards` over the stopped shards' data dirs: passes; its output.
    fn verify_nation(&self) -> String {
        let (ok, out, err) = self.run(&["audit", "verify", "--shards"], Duration::from_secs(60));
        assert!(ok && out.contains("no citizen paid on more than one shard"), "verify --shards:\n{out}{err}");
        assert!(!out.contains("FAILED"), "{out}");
        out
    }
}

fn line_codes(o: &Outcome) -> Vec<(&str, Option<&str>)> {
    o.lines.iter().map(|l| (l.status.as_str(), l.code.as_deref())).collect()
}

/// One citizen listed in two provinces' batches for one period, the provinces on two shards:
/// the shard holding the citizen's enrollment pays, the other refuses the line (it never heard
/// of the citizen: `not_enrolled`), and one payout exists nation-wide.
#[test]
fn the_same_citizen_in_two_provinces_lists_on_two_shards_is_paid_once() {
    let _apart = kill_tests_apart();
    let mut s = Shards::new("twolists", &[("a", &["001"], 1), ("b", &["079"], 1)]);
    s.start("a");
    s.start("b");
    s.define_regular();
    s.send_one("fund-x", &fund_json("t1", "001", P1), "a", &[]);
    s.send_one("fund-y", &fund_json("t1", "079", P1), "b", &[]);
    s.send_one("enroll-x", &enroll_json("t1", 0, "001", P1), "a", &[]);
    let at_a = s.send_one("batch-x", &batch_json("t1", "001", P1, &[0]), "a", &[]);
    assert_eq!(line_codes(&at_a), [("instructed", None)], "{at_a:?}");
    let at_b = s.send_one("batch-y", &batch_json("t1", "079", P1, &[0]), "b", &[]);
    assert_eq!(line_codes(&at_b), [("rejected", Some("not_enrolled"))], "{at_b:?}");
    s.stop_all();
    let paid = s.regular_payouts();
    assert_eq!(paid, BTreeMap::from([((MOVERS[0].0.to_string(), P1.to_string()), vec!["a".to_string()])]), "one payout nation-wide");
    s.verify_nation();
}

/// A citizen moving from province X (shard a) to Y (shard b): terminated at a and enrolled at b
/// from the same month, each period is paid by one shard; a's batch for the later period and
/// b's batch for the earlier one are refused line by line; the nation verifies.
#[test]
fn a_citizen_moving_between_provinces_on_two_shards_is_paid_each_period_once() {
    let _apart = kill_tests_apart();
    let mut s = Shards::new("mover", &[("a", &["001"], 1), ("b", &["079"], 1)]);
    s.start("a");
    s.start("b");
    s.define_regular();
    // Both shards funded for both periods: a refusal below is not a budget's.
    for (province, shard) in [("001", "a"), ("079", "b")] {
        for period in [P1, P2] {
            s.send_one(&format!("fund-{province}-{period}"), &fund_json("t2", province, period), shard, &[]);
        }
    }
    s.send_one("enroll-x", &enroll_json("t2", 0, "001", P1), "a", &[]);
    let p1 = s.send_one("pay-p1-a", &batch_json("t2", "001", P1, &[0]), "a", &[]);
    assert_eq!(line_codes(&p1), [("instructed", None)], "{p1:?}");
    let terminate = regular(
        "t2-terminate",
        "terminate_beneficiary",
        serde_json::json!({"citizen_id": MOVERS[0].0, "program_id": PROGRAM, "effective_from": P2, "reason": "moved to province 079"}),
    );
    s.send_one("terminate-x", &terminate, "a", &["--province", "001"]);
    s.send_one("enroll-y", &enroll_json("t2", 0, "079", P2), "b", &[]);
    let p2 = s.send_one("pay-p2-b", &batch_json("t2", "079", P2, &[0]), "b", &[]);
    assert_eq!(line_codes(&p2), [("instructed", None)], "{p2:?}");
    let late = s.send_one("pay-p2-a", &batch_json("t2", "001", P2, &[0]), "a", &[]);
    assert_eq!(line_codes(&late), [("rejected", Some("beneficiary_terminated"))], "{late:?}");
    let early = s.send_one("pay-p1-b", &batch_json("t2", "079", P1, &[0]), "b", &[]);
    assert_eq!(line_codes(&early), [("rejected", Some("not_yet_eligible"))], "{early:?}");
    s.stop_all();
    let c = MOVERS[0].0.to_string();
    let expected = BTreeMap::from([((c.clone(), P1.to_string()), vec!["a".to_string()]), ((c, P2.to_string()), vec!["b".to_string()])]);
    assert_eq!(s.regular_payouts(), expected, "each period paid once, by the shard the citizen was enrolled at");
    let out = s.verify_nation();
    assert!(out.contains("(0 enrolled on more than one shard)"), "the enrollment at a was terminated: {out}");
}

/// ARCHITECTURE.md "Rebalancing", step by step: province 001 moves from shard a to shard b
/// after a paid period 1. Once both restart, 001's commands published through `<ns>.route`
/// reach b, and one published straight to a is refused `shard_not_owner`; b re-enrolls the
/// beneficiaries from period 2, pays period 2 and refuses period 1; nobody is paid for one period
/// by two shards, and the nation verifies.
#[test]
fn a_province_moved_between_shards_by_the_rebalancing_procedure_pays_nobody_twice() {
    let _apart = kill_tests_apart();
    let mut s = Shards::new("rebalance", &[("a", &["001", "092"], 1), ("b", &["079"], 1)]);
    s.start("a");
    s.start("b");
    s.define_regular();
    s.send_one("fund-p1", &fund_json("t3", "001", P1), "a", &[]);
    for who in 0..2 {
        s.send_one(&format!("enroll-a-{who}"), &enroll_json("t3a", who, "001", "2024-11"), "a", &[]);
    }
    let p1 = s.send_one("pay-p1-a", &batch_json("t3", "001", P1, &[0, 1]), "a", &[]);
    assert_eq!(line_codes(&p1), [("instructed", None), ("instructed", None)], "{p1:?}");

    // 1. No more publishing for 001. 2. While a still owns 001, its beneficiaries are terminated
    // at a from the first period a has not paid (else each stays enrolled on two shards).
    for (who, (id, ..)) in MOVERS.iter().enumerate() {
        let terminate = regular(
            &format!("t3-terminate-{id}"),
            "terminate_beneficiary",
            serde_json::json!({"citizen_id": id, "program_id": PROGRAM, "effective_from": P2, "reason": "province 001 moves to shard b"}),
        );
        s.send_one(&format!("terminate-a-{who}"), &terminate, "a", &["--province", "001"]);
    }
    // 3. a drained: 0 ready, 0 unacknowledged on its queue.
    let queue = s.bus("a").commands_queue();
    wait_for(Duration::from_secs(30), "a's commands queue to drain", || {
        let out = Command::new("rabbitmqctl").args(["list_queues", "-q", "name", "messages", "messages_unacknowledged"]).output().expect("rabbitmqctl runs");
        assert!(out.status.success(), "rabbitmqctl: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let row = text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|f| f.first() == Some(&queue.as_str())).expect("a's queue is listed");
        row[1..] == ["0", "0"]
    });
    // 4. 001 leaves a for b; weights and order unchanged.
    s.stop_all();
    s.layout[0].1 = vec!["092".into()];
    s.layout[1].1 = vec!["079".into(), "001".into()];
    s.write_config();
    // 5. Restart a, then b.
    s.start("a");
    s.start("b");
    // 6. Re-enroll at b from the first period a has not paid (through `<ns>.route`, key
    // province.001), and fund b for 001 from that period.
    for who in 0..2 {
        s.send_one(&format!("enroll-b-{who}"), &enroll_json("t3b", who, "001", P2), "b", &[]);
    }
    s.send_one("fund-p2", &fund_json("t3", "001", P2), "b", &[]);
    // A command for 001 put straight on a's own commands exchange: refused whole.
    let stray: ansinh::command::CommandEnvelope = serde_json::from_str(&batch_json("t3-stray", "001", P2, &[0, 1])).unwrap();
    let refused = publish_straight(&s, AGENCY, &s.bus("a").commands_exchange(), "command", &stray);
    assert_eq!((refused.status, refused.code.as_deref()), (OutcomeStatus::Rejected, Some("shard_not_owner")), "{refused:?}");
    let p2 = s.send_one("pay-p2-b", &batch_json("t3", "001", P2, &[0, 1]), "b", &[]);
    assert_eq!(line_codes(&p2), [("instructed", None), ("instructed", None)], "{p2:?}");
    let again = s.send_one("pay-p1-b", &batch_json("t3-again", "001", P1, &[0, 1]), "b", &[]);
    assert_eq!(line_codes(&again), [("rejected", Some("not_yet_eligible")), ("rejected", Some("not_yet_eligible"))], "{again:?}");
    s.stop_all();

    let mut expected = BTreeMap::new();
    for (id, ..) in MOVERS {
        expected.insert((id.to_string(), P1.to_string()), vec!["a".to_string()]);
        expected.insert((id.to_string(), P2.to_string()), vec!["b".to_string()]);
    }
    assert_eq!(s.regular_payouts(), expected, "period 1 paid by a, period 2 by b, nobody twice");
    let a = records(&s.engine("a"));
    assert!(
        a.iter().any(|r| r.event.command_id == stray.command_id && matches!(&r.event.data, EventData::CommandRejected(r) if r.code == "shard_not_owner")),
        "a recorded its refusal"
    );
    let out = s.verify_nation();
    assert!(out.contains("(0 enrolled on more than one shard)"), "a's enrollments of 001 were terminated: {out}");
}
