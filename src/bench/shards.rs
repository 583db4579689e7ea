//! `shards`: a national one-off programme through K shard processes (`ansinh serve --shard`) on
//! this machine over RabbitMQ, against the same programme through one shard, measured back to
//! back in the same run (issue 12).
//!
//! Each run has its own namespace: K shards in `[shards]` (weight 1 each), each a child process
//! with its own data dir. Untimed set-up: `define_one_off_program` published once to
//! `<namespace>.route` with key `all` (every shard defines it), `fund_one_off` to each shard by
//! `shard.<name>`. Timed: every batch message (the lines of one partition, up to
//! [`BATCH_LINES`] each) published with confirms to `<namespace>.oneoff`, RabbitMQ's
//! consistent-hash exchange, with the partition as routing key, until every batch was answered
//! and every line's event (`payout.instructed` or `one_off.cash_listed`) was seen on its shard's
//! events exchange, published by that shard's relay with confirms. Observers count each
//! (shard, seq) once. Per-shard peak RSS is VmHWM, sampled by the kernel.

use super::broker::{child_settings, free_local_addr, settle, Broker, Progress, ServeChild, STALL};
use super::oneoff_data::OneOffBatches;
use super::{Report, Scratch};
use crate::bus::shards::{oneoff_exchange, route_exchange, shard_key, ALL_KEY};
use crate::command::Command;
use crate::config::Config;
use crate::outcome::{Outcome, OutcomeStatus};
#[cfg(test)]
use crate::shard::partition_of;
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Most lines in one batch message (each message holds the lines of one partition).
pub const BATCH_LINES: usize = 2_000;
/// The programme: the National Day gift of September 2025 (`shared/domain/vn-welfare-facts.md`):
/// 100,000 VND to everyone with a personal ID number by 30 August 2025.
pub const PROGRAM: &str = "qk-2025";
pub const AMOUNT: &str = "100000";
pub const CUTOFF: &str = "2025-08-30";
/// Messages published and not yet confirmed at once (`ansinh publish`'s default).
const PUBLISH_WINDOW: usize = 500;
const ISSUED_AT: &str = "2025-09-01T08:00:00+07:00";

/// One batch message, ready to publish.
pub struct BatchMessage {
    pub partition: u16,
    pub command_id: String,
    pub body: Vec<u8>,
    pub lines: usize,
}

/// `lines` one-off lines of `bench::oneoff_data` (valid, distinct citizen IDs of every province,
/// nine in ten with an account at a bank of the table, the tenth to be paid in cash at its
/// commune), grouped by partition into `submit_one_off_batch` messages of up to [`BATCH_LINES`].
pub fn programme(lines: usize) -> Vec<BatchMessage> {
    OneOffBatches::new(PROGRAM, ISSUED_AT, lines as u64, BATCH_LINES)
        .map(|envelope| {
            let Command::SubmitOneOffBatch(batch) = &envelope.command else { unreachable!("OneOffBatches yields one-off batches only") };
            BatchMessage {
                partition: u16::try_from(batch.partition).expect("a partition is below 1024"),
                lines: batch.lines.len(),
                command_id: envelope.command_id.clone(),
                body: serde_json::to_vec(&envelope).expect("commands serialize"),
            }
        })
        .collect()
}

/// What one run (K shards) measured.
struct Run {
    shards: usize,
    wall: Duration,
    publish: Duration,
    replies: usize,
    events_seen: usize,
    peak_rss: Vec<(String, Option<u64>)>,
    lines_per_shard: Vec<(String, usize)>,
    state_bytes: usize,
    namespace: String,
    /// What the broker did not confirm deleted at the end.
    left: Vec<String>,
}

pub fn run(config: &Config, shards: usize, lines: usize, tmp: &Path) -> Result<Report, String> {
    if shards == 0 || shards > 16 {
        return Err("--shards must be 1-16".into());
    }
    let most = super::oneoff_data::distinct_lines_max() as usize;
    if lines == 0 || lines > most {
        return Err(format!("--lines must be 1-{most} (distinct citizen IDs the generator makes)"));
    }
    let broker = Broker::reach(config, "shards")?;
    let load_at_start = super::load_average();
    let mut progress = Progress::new("shards");
    progress.say(format!("generating the programme: {lines} one-off lines grouped by partition (untimed)"));
    let batches = programme(lines);
    let cash = batches.iter().map(|b| b.lines).sum::<usize>();
    debug_assert_eq!(cash, lines);
    progress.say(format!("{} batch messages of up to {BATCH_LINES} lines", batches.len()));
    let scratch = Scratch::new(tmp, "shards")?;
    let sharded = run_once(config, &broker, shards, &batches, lines, &scratch.path().join(format!("k{shards}")), &mut progress)?;
    let single = run_once(config, &broker, 1, &batches, lines, &scratch.path().join("k1"), &mut progress)?;

    let mut report = Report::new("shards", lines as u64);
    let rate = |r: &Run| lines as f64 / r.wall.as_secs_f64();
    for r in [&sharded, &single] {
        let k = r.shards;
        report.figure(&format!("{k} shard(s): aggregate one-off lines/s"), rate(r), "lines/s");
        report.figure(&format!("{k} shard(s): seconds, first publish to every line relayed"), r.wall.as_secs_f64(), "s");
        report.figure(&format!("{k} shard(s): seconds to publish (confirmed)"), r.publish.as_secs_f64(), "s");
        report.figure(&format!("{k} shard(s): replies"), r.replies as f64, "replies");
        report.figure(&format!("{k} shard(s): line events seen"), r.events_seen as f64, "events");
        for ((name, rss), (_, n)) in r.peak_rss.iter().zip(&r.lines_per_shard) {
            report.figure(&format!("{k} shard(s): {name} lines"), *n as f64, "lines");
            if let Some(rss) = rss {
                report.figure(&format!("{k} shard(s): {name} peak RSS"), *rss as f64, "bytes");
            }
        }
        report.figure(&format!("{k} shard(s): decision state per one-off payee"), r.state_bytes as f64 / lines as f64, "bytes");
    }
    report.figure("batch messages", batches.len() as f64, "messages");
    for (name, load) in [("load average at start", load_at_start), ("load average at end", super::load_average())] {
        if let Some(load) = load {
            report.figure(name, load, "1-minute");
        }
    }
    report.ratio(&format!("{shards} shards / 1 shard, aggregate lines/s"), rate(&sharded) / rate(&single), "-");
    // The projection the issue asks for, from this machine's measured rate.
    const PEOPLE: f64 = 106_855_575.0;
    let per_machine = rate(&sharded).max(rate(&single));
    let machines = (PEOPLE / 3600.0 / per_machine).ceil();
    report.figure("PROJECTION: machines like this one to pay 106,855,575 people in one hour", machines, "machines (at the better of the two runs' rate)");
    let peak = sharded.peak_rss.iter().filter_map(|(_, r)| *r).max().unwrap_or(0) as f64;
    let per_shard_lines = lines as f64 / shards as f64;
    report.figure(
        "PROJECTION: decision state for 106,855,575 one-off payees",
        sharded.state_bytes as f64 / lines as f64 * PEOPLE,
        "bytes (measured bytes per payee x people)",
    );
    report.note(format!(
        "timed: {} submit_one_off_batch messages ({lines} lines, one partition each) published with confirms ({PUBLISH_WINDOW} in flight) to the \
         consistent-hash exchange; until every reply and every line's event relayed by its shard; the same messages through {shards} shards, then \
         through 1, back to back",
        batches.len()
    ));
    report.note(format!(
        "projection, not a measurement: 106,855,575 lines in 3,600 s need {:.0} lines/s; at the measured {per_machine:.0} lines/s per machine that is \
         {machines} machine(s); the largest shard peaked at {:.0} MiB for {per_shard_lines:.0} lines",
        PEOPLE / 3600.0,
        peak / 1_048_576.0
    ));
    report.note("all shard processes, the broker and the bench's publisher and observers share this machine's 2 cores");
    for r in [&sharded, &single] {
        let fate = if r.left.is_empty() { "deleted at the end".to_string() } else { format!("left behind: {}", r.left.join(", ")) };
        report.note(format!("broker namespace {} ({fate})", r.namespace));
    }
    Ok(report)
}

/// Each shard's (name, data dir, api).
type ShardPlaces = Vec<(String, PathBuf, SocketAddr)>;

/// Writes the K-shard config and returns its path, the namespace, and each shard's places.
fn write_config(config: &Config, broker: &Broker, shards: usize, dir: &Path) -> Result<(PathBuf, String, ShardPlaces), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() % 1_000_000).unwrap_or(0);
    let namespace = format!("ansinh-bs{shards}-{}-{ms}", std::process::id());
    let s = |v: &str| toml::Value::from(v).to_string();
    let mut toml = format!(
        "{}\n[[bus.users]]\nname = {}\nrole = \"admin\"\n\n[shards]\nnamespace = {}\n",
        child_settings(config, &broker.url, "", "")?,
        s(&broker.user),
        s(&namespace)
    );
    let mut entries = Vec::new();
    for i in 0..shards {
        let name = format!("s{i}");
        let data_dir = dir.join(&name);
        let api = free_local_addr()?;
        toml.push_str(&format!(
            "\n[[shards.shard]]\nname = {}\nweight = 1\ndata_dir = {}\napi_listen = {}\n",
            s(&name),
            s(&data_dir.display().to_string()),
            s(&api.to_string())
        ));
        entries.push((name, data_dir, api));
    }
    let path = dir.join("shards.toml");
    std::fs::write(&path, toml).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((path, namespace, entries))
}

fn envelope(command_id: &str, kind: &str, payload: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({"command_id": command_id, "issued_at": ISSUED_AT, "type": kind, "payload": payload})).expect("json")
}

async fn publish(ch: &Channel, exchange: &str, key: &str, user: &str, reply_to: &str, id: &str, body: &[u8]) -> Result<lapin::PublisherConfirm, String> {
    let props = crate::bus::command_properties(user, &reply_to.into(), id);
    ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions { mandatory: true, ..Default::default() }, body, props).await.map_err(|e| e.to_string())
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    config: &Config,
    broker: &Broker,
    shards: usize,
    batches: &[BatchMessage],
    lines: usize,
    dir: &Path,
    progress: &mut Progress,
) -> Result<Run, String> {
    let (config_path, namespace, entries) = write_config(config, broker, shards, dir)?;
    let rt = crate::cli::serve::runtime()?;
    let mut children = Vec::new();
    let result = rt.block_on(async {
        let admin = broker.connect("ansinh-bench-shards-admin").await?;
        progress.say(format!("{shards} shard(s): starting serve --shard for each ({namespace})"));
        for (name, data_dir, api) in &entries {
            std::fs::create_dir_all(data_dir).map_err(|e| e.to_string())?;
            children.push(ServeChild::spawn(&config_path, &["--shard", name], &dir.join(format!("{name}.log")), *api)?);
        }
        for ((name, data_dir, _), child) in entries.iter().zip(children.iter_mut()) {
            // A shard declares the queues after its probe, which leaves `ownership.json`: asking
            // for a queue before that only fills the log with the broker's 404s.
            let started = Instant::now();
            while !data_dir.join(crate::bus::shards::OWNERSHIP_FILE).exists() && started.elapsed() < STALL {
                child.check_running()?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            child.wait_consuming(&admin, &format!("{namespace}.{name}.commands"), STALL).await?;
        }
        let r = timed(broker, &admin, &namespace, &entries, &mut children, batches, lines, progress).await;
        let _ = admin.close(200, "done".into()).await;
        r
    });
    let mut peak_rss = Vec::new();
    for ((name, _, _), child) in entries.iter().zip(children.iter_mut()) {
        peak_rss.push((name.clone(), child.peak_rss()));
        child.stop()?;
    }
    let (wall, publish, replies, events_seen, per_shard) = result?;
    // The decision state each shard rebuilt from its own log, measured by what it allocates.
    let mut state_bytes = 0;
    for (_, data_dir, _) in &entries {
        let mut options = crate::engine::EngineOptions::new(data_dir);
        options.cache_capacity_bytes = 64 * 1024 * 1024;
        let engine = crate::engine::Engine::open(&options, &mut |_, _| {}).map_err(|e| e.to_string())?;
        state_bytes += engine.state().heap_bytes();
    }
    let left = rt.block_on(async {
        let admin = broker.connect("ansinh-bench-shards-cleanup").await?;
        let mut queues = Vec::new();
        let mut exchanges = vec![route_exchange(&namespace), oneoff_exchange(&namespace)];
        for (name, _, _) in &entries {
            let bus = crate::bus::BusConfig { prefix: format!("{namespace}.{name}"), ..crate::bus::BusConfig::default() };
            let (q, x) = bus.topology_names();
            queues.extend(q);
            exchanges.extend(x);
        }
        let left = Broker::delete(&admin, &queues, &exchanges).await;
        let _ = admin.close(200, "done".into()).await;
        Ok::<_, String>(left)
    })?;
    if !left.is_empty() {
        eprintln!("bench shards: warning: left on the broker: {}", left.join(", "));
    }
    let lines_per_shard = entries.iter().map(|(n, _, _)| n.clone()).zip(per_shard).collect();
    Ok(Run { shards, wall, publish, replies, events_seen, peak_rss, lines_per_shard, state_bytes, namespace, left })
}

type Timed = (Duration, Duration, usize, usize, Vec<usize>);

#[allow(clippy::too_many_arguments)]
async fn timed(
    broker: &Broker,
    conn: &Connection,
    namespace: &str,
    entries: &[(String, PathBuf, SocketAddr)],
    children: &mut [ServeChild],
    batches: &[BatchMessage],
    lines: usize,
    progress: &mut Progress,
) -> Result<Timed, String> {
    let e = |e: lapin::Error| e.to_string();
    // Observers: one queue per shard on its events exchange, counting each seq once.
    let seen: Arc<Mutex<Vec<HashSet<u64>>>> = Arc::new(Mutex::new(vec![HashSet::new(); entries.len()]));
    let last_new: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    for (i, (name, _, _)) in entries.iter().enumerate() {
        let ch = conn.create_channel().await.map_err(e)?;
        let q = ch
            .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
            .await
            .map_err(e)?;
        let events = format!("{namespace}.{name}.events");
        for key in ["payout.instructed.*", "one_off.cash_listed.*"] {
            ch.queue_bind(q.name().clone(), events.as_str().into(), key.into(), QueueBindOptions::default(), FieldTable::default()).await.map_err(e)?;
        }
        let mut deliveries = ch
            .basic_consume(q.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
            .await
            .map_err(e)?;
        let (sink, at) = (seen.clone(), last_new.clone());
        tokio::spawn(async move {
            let _keep = ch;
            while let Some(Ok(d)) = deliveries.next().await {
                if let Some(AMQPValue::LongLongInt(seq)) = d.properties.headers().as_ref().and_then(|h| h.inner().get("x-seq").cloned()) {
                    if sink.lock().expect("observer lock")[i].insert(seq as u64) {
                        *at.lock().expect("observer lock") = Some(Instant::now());
                    }
                }
            }
        });
    }
    let pch = conn.create_channel().await.map_err(e)?;
    pch.confirm_select(ConfirmSelectOptions::default()).await.map_err(e)?;
    let reply_queue = pch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let mut reply_stream = pch
        .basic_consume(reply_queue.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let replies: Arc<Mutex<Vec<(Instant, Outcome)>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = replies.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = reply_stream.next().await {
            if let Ok(o) = serde_json::from_slice::<Outcome>(&d.data) {
                sink.lock().expect("replies lock").push((Instant::now(), o));
            }
        }
    });
    let reply_to = reply_queue.name().as_str().to_string();
    let (route, oneoff) = (route_exchange(namespace), oneoff_exchange(namespace));

    // Untimed set-up: the programme on every shard, each shard's budget.
    let budget = ((lines as u128 + 1) * 100_000).to_string();
    let mut pending = vec![
        publish(
            &pch,
            &route,
            ALL_KEY,
            &broker.user,
            &reply_to,
            "define-qk-2025",
            &envelope(
                "define-qk-2025",
                "define_one_off_program",
                serde_json::json!({"program_id": PROGRAM, "name": "Quà Quốc khánh 2025", "amount": AMOUNT, "eligible_cutoff": CUTOFF, "period": "2025-09"}),
            ),
        )
        .await?,
    ];
    settle(&mut pending).await?;
    wait_replies(&replies, entries.len(), children, "the programme's definition").await?;
    for (name, _, _) in entries {
        let id = format!("fund-qk-2025-{name}");
        let body = envelope(&id, "fund_one_off", serde_json::json!({"program_id": PROGRAM, "amount": budget, "reference": "bench"}));
        pending.push(publish(&pch, &route, &shard_key(name), &broker.user, &reply_to, &id, &body).await?);
    }
    settle(&mut pending).await?;
    wait_replies(&replies, 2 * entries.len(), children, "the budgets").await?;
    {
        let set_up = replies.lock().expect("replies lock");
        if let Some((_, o)) = set_up.iter().find(|(_, o)| o.status != OutcomeStatus::Accepted) {
            return Err(format!("set-up command {} was not accepted: {:?}", o.command_id, o.code));
        }
    }
    replies.lock().expect("replies lock").clear();

    progress.say(format!("timed: publishing {} batch messages ({lines} lines) to {oneoff}", batches.len()));
    let t0 = Instant::now();
    for b in batches {
        pending.push(publish(&pch, &oneoff, &b.partition.to_string(), &broker.user, &reply_to, &b.command_id, &b.body).await?);
        if pending.len() >= PUBLISH_WINDOW {
            settle(&mut pending).await?;
        }
    }
    settle(&mut pending).await?;
    let publish_time = t0.elapsed();
    let mut last = (0, Instant::now());
    loop {
        let n_replies = replies.lock().expect("replies lock").len();
        let n_events: usize = seen.lock().expect("observer lock").iter().map(HashSet::len).sum();
        if n_replies >= batches.len() && n_events >= lines {
            break;
        }
        for c in children.iter_mut() {
            c.check_running()?;
        }
        if n_replies + n_events != last.0 {
            last = (n_replies + n_events, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(format!("no progress for {} s: {n_replies} of {} replies, {n_events} of {lines} line events", STALL.as_secs(), batches.len()));
        }
        progress.tick(|| format!("{n_replies}/{} replies, {n_events}/{lines} line events after {:.0} s", batches.len(), t0.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let replies = std::mem::take(&mut *replies.lock().expect("replies lock"));
    let to_replies = replies.iter().map(|(at, _)| at.duration_since(t0)).max().unwrap_or_default();
    let to_events = last_new.lock().expect("observer lock").map(|at| at.duration_since(t0)).unwrap_or_default();
    let mut answered: HashMap<&str, &Outcome> = HashMap::new();
    for (_, o) in &replies {
        answered.entry(o.command_id.as_str()).or_insert(o);
    }
    for b in batches {
        let o = answered.get(b.command_id.as_str()).ok_or_else(|| format!("no reply to {}", b.command_id))?;
        if o.status != OutcomeStatus::Accepted || o.duplicate || o.count_lines("rejected") != 0 || o.lines.len() != b.lines {
            return Err(format!("{}: {:?} (duplicate {}), {} of {} lines rejected", b.command_id, o.status, o.duplicate, o.count_lines("rejected"), b.lines));
        }
    }
    let per_shard: Vec<usize> = seen.lock().expect("observer lock").iter().map(HashSet::len).collect();
    let events_seen = per_shard.iter().sum();
    if events_seen != lines {
        return Err(format!("{events_seen} line events seen for {lines} lines"));
    }
    Ok((to_replies.max(to_events), publish_time, answered.len(), events_seen, per_shard))
}

async fn wait_replies(replies: &Arc<Mutex<Vec<(Instant, Outcome)>>>, n: usize, children: &mut [ServeChild], what: &str) -> Result<(), String> {
    let started = Instant::now();
    while replies.lock().expect("replies lock").len() < n {
        for c in children.iter_mut() {
            c.check_running()?;
        }
        if started.elapsed() > STALL {
            return Err(format!("no reply to {what} within {} s", STALL.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programme_holds_each_line_once_in_its_partition() {
        let batches = programme(30_000);
        assert_eq!(batches.iter().map(|b| b.lines).sum::<usize>(), 30_000);
        let mut ids = HashSet::new();
        for b in &batches {
            let v: serde_json::Value = serde_json::from_slice(&b.body).unwrap();
            let lines = v["payload"]["lines"].as_array().unwrap();
            assert!(lines.len() <= BATCH_LINES && !lines.is_empty());
            assert_eq!(v["payload"]["partition"], b.partition);
            for l in lines {
                let id = l["citizen_id"].as_str().unwrap();
                assert!(crate::domain::CitizenId::parse(id).is_ok(), "{id}");
                assert_eq!(partition_of(id), b.partition);
                assert!(ids.insert(id.to_string()), "{id} twice");
            }
        }
    }
}
