//! `amqp`: payout lines per second through `ansinh serve` over RabbitMQ, from the agency's
//! first publish to every batch acknowledged, durable and answered and every `payout.instructed`
//! instruction published by the relay with confirms, against a minimal lapin program moving the
//! same number of persistent messages of the same bytes through the broker: published with
//! confirms to a durable queue, consumed with acks and republished with confirms to a second
//! durable queue, and drained from it.
//!
//! Engine side: the month is prepared untimed through the embedded engine (rules, enrollments,
//! budget), then `ansinh serve` runs as a child over that data dir; the bench waits for the
//! relay to pass the set-up events, then times the payout batches. A non-durable queue bound to
//! `payout.instructed.*` on the events exchange sees each instruction (deduplicated by seq); the
//! engine also routes each to its bank's durable quorum queue, as in production.

use super::broker::{metrics_delta, settle, Broker, Progress, ServeChild, STALL};
use super::embedded::{Month, BATCH_LINES};
use super::{Report, Scratch};
use crate::command::CommandEnvelope;
use crate::config::Config;
use crate::outcome::{Outcome, OutcomeStatus};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most messages the publishers have in flight before awaiting their confirms: `ansinh
/// publish`'s default window, used by the baseline publisher too.
const PUBLISH_WINDOW: usize = 500;

/// What the events observer saw.
#[derive(Default)]
struct Seen {
    /// Highest `x-seq` seen (any bound routing key): tells when the relay passed the set-up.
    max_seq: u64,
    /// Instruction bodies by seq (a redelivery by the relay is counted once).
    instructions: BTreeMap<u64, Vec<u8>>,
    duplicates: usize,
    last_new: Option<Instant>,
}

struct EngineRun {
    wall: Duration,
    to_replies: Duration,
    to_instructions: Duration,
    publish: Duration,
    serve_start: Duration,
    relay_setup: Duration,
    replies: usize,
    duplicates: usize,
    bodies: Vec<Vec<u8>>,
    /// Differences of serve's `/metrics` series over the timed phase (empty if unavailable).
    stages: HashMap<String, f64>,
    peak_rss: Option<u64>,
}

struct BaselineRun {
    wall: Duration,
    drained: usize,
}

/// Runs the suite for `people` beneficiaries (one payout line each for the active ones).
pub fn run(config: &Config, people: usize, tmp: &Path) -> Result<Report, String> {
    let broker = Broker::reach(config, "amqp")?;
    let load_at_start = super::load_average();
    let mut progress = Progress::new("amqp");
    let scratch = Scratch::new(tmp, "amqp")?;
    let data_dir = scratch.path().join("engine");
    progress.say(format!("set-up (untimed): rules, {people} enrollments and the budget through the embedded engine"));
    let t = Instant::now();
    let month = Month::prepare(config, &data_dir, people)?;
    let setup = t.elapsed();
    // Over AMQP the sender is the broker's user id, never the body's.
    let batches: Vec<CommandEnvelope> = month.batches().map(|e| CommandEnvelope { sender: None, ..e }).collect();
    let expected: HashMap<String, usize> = batches.iter().zip(month.lines.chunks(BATCH_LINES)).map(|(b, c)| (b.command_id.clone(), c.len())).collect();
    let lines = month.lines.len();
    let setup_head = month.engine.head().seq;
    drop(month); // sled lets one process open a data dir: serve opens it next
    progress.say(format!("set-up done in {:.1} s: {lines} payout lines in {} batches, log head {setup_head}", setup.as_secs_f64(), batches.len()));

    let rt = crate::cli::serve::runtime()?;
    let baseline_queues = vec![format!("{}.baseline-in", broker.prefix), format!("{}.baseline-out", broker.prefix)];
    let (result, left) = rt.block_on(async {
        let admin = match broker.connect("ansinh-bench-admin").await {
            Ok(c) => c,
            Err(e) => return (Err(e), Vec::new()),
        };
        let engine = engine_side(config, &broker, &data_dir, scratch.path(), &batches, &expected, setup_head, lines, &mut progress).await;
        // The engine's queues hold every instruction: delete them before the baseline runs.
        let mut left = broker.delete_topology(&admin).await;
        let result = match engine {
            Ok(engine) => {
                progress.say(format!("baseline: {} messages of the engine's instruction bytes through two durable queues", engine.bodies.len()));
                let baseline = baseline_side(config, &broker, &engine.bodies, &baseline_queues, &mut progress).await;
                left.extend(Broker::delete(&admin, &baseline_queues, &[]).await);
                baseline.map(|b| (engine, b))
            }
            Err(e) => Err(e),
        };
        let _ = admin.close(200, "done".into()).await;
        (result, left)
    });
    if !left.is_empty() {
        eprintln!("bench amqp: warning: left on the broker: {}", left.join(", "));
    }
    let (engine, baseline) = result?;

    let n = lines as f64;
    let bytes: usize = engine.bodies.iter().map(Vec::len).sum();
    let mut report = Report::new("amqp", lines as u64);
    report.figure("engine payout lines/s", n / engine.wall.as_secs_f64(), "lines/s");
    report.figure("baseline messages/s", baseline.drained as f64 / baseline.wall.as_secs_f64(), "messages/s");
    report.figure("engine seconds", engine.wall.as_secs_f64(), "s");
    report.figure("engine seconds to every reply", engine.to_replies.as_secs_f64(), "s");
    report.figure("engine seconds to every instruction", engine.to_instructions.as_secs_f64(), "s");
    report.figure("engine seconds to publish the batches (confirmed)", engine.publish.as_secs_f64(), "s");
    report.figure("baseline seconds", baseline.wall.as_secs_f64(), "s");
    report.figure("payout batches", batches.len() as f64, "commands");
    report.figure("replies", engine.replies as f64, "replies");
    report.figure("instructions seen", engine.bodies.len() as f64, "messages");
    report.figure("instructions published twice", engine.duplicates as f64, "messages");
    report.figure("baseline messages drained", baseline.drained as f64, "messages");
    report.figure("mean instruction size", bytes as f64 / engine.bodies.len().max(1) as f64, "bytes");
    if !engine.stages.is_empty() {
        let stages = &engine.stages;
        report.figure("engine groups", stages.get("ansinh_group_commands_count").copied().unwrap_or(0.0), "groups");
        report.figure("engine events appended", stages.get("ansinh_group_events_sum").copied().unwrap_or(0.0), "events");
        for (name, key) in [("batch write", "ansinh_append_seconds_sum"), ("flush", "ansinh_flush_seconds_sum"), ("views", "ansinh_apply_seconds_sum")] {
            report.figure(&format!("engine stage {name}"), stages.get(key).copied().unwrap_or(0.0), "s");
        }
    }
    if let Some(rss) = engine.peak_rss {
        report.figure("serve peak RSS", rss as f64, "bytes");
    }
    report.figure("set-up seconds (untimed)", setup.as_secs_f64(), "s");
    report.figure("serve start-up seconds (untimed)", engine.serve_start.as_secs_f64(), "s");
    report.figure("relay of the set-up events seconds (untimed)", engine.relay_setup.as_secs_f64(), "s");
    for (name, load) in [("load average at start", load_at_start), ("load average at end", super::load_average())] {
        if let Some(load) = load {
            report.figure(name, load, "1-minute");
        }
    }
    report.ratio("engine/baseline", baseline.wall.as_secs_f64() / engine.wall.as_secs_f64(), "target >= 0.8");
    report.note(format!(
        "{people} beneficiaries enrolled and funded untimed through the embedded engine; timed: {} submit_payout_batch commands of up to {BATCH_LINES} lines \
         published with confirms ({PUBLISH_WINDOW} in flight) to `ansinh serve` (a child process), until every reply arrived and every payout.instructed \
         was seen on the events exchange",
        batches.len()
    ));
    report.note(
        "engine path per batch: one persistent message into the quorum command queue, decided + appended + flushed + views applied, then acked and \
         answered; the relay then publishes one persistent instruction per line with confirms (each routed to its bank's durable quorum queue and to \
         the bench's non-durable observer queue)",
    );
    report.note(format!(
        "baseline: the engine's own instruction bodies (same count, same bytes), published persistent with confirms ({PUBLISH_WINDOW} in flight) to a \
         durable {} queue, consumed with manual acks (prefetch {}, groups of up to {} as the engine's intake, each message republished with confirms to \
         a durable quorum queue, one multiple ack per group after its confirms), drained by a no-ack consumer",
        config.bus.queue_type, config.bus.prefetch, config.engine.group_commands_max
    ));
    report.note(format!(
        "not like for like: the engine's intake moves {} messages carrying {BATCH_LINES} lines each, the baseline's {lines} messages of one line; both \
         publish one message per line on the way out",
        batches.len()
    ));
    if engine.stages.is_empty() {
        report.note("engine stage figures unavailable: serve's /metrics did not answer");
    }
    report.note(broker.topology_note(&left));
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn engine_side(
    config: &Config,
    broker: &Broker,
    data_dir: &Path,
    dir: &Path,
    batches: &[CommandEnvelope],
    expected: &HashMap<String, usize>,
    setup_head: u64,
    lines: usize,
    progress: &mut Progress,
) -> Result<EngineRun, String> {
    let e = |e: lapin::Error| e.to_string();
    let bus = broker.bus(config);
    let observer = broker.connect("ansinh-bench-observer").await?;
    // The observer binds before serve starts: the relay publishes from the cursor at once.
    broker.declare_topology(&observer, &bus).await?;
    let ch = observer.create_channel().await.map_err(e)?;
    let events = bus.events_exchange();
    let q = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    for key in ["payout.instructed.*", "budget.funded.*"] {
        ch.queue_bind(q.name().clone(), events.as_str().into(), key.into(), QueueBindOptions::default(), FieldTable::default()).await.map_err(e)?;
    }
    let mut deliveries = ch
        .basic_consume(q.name().clone(), "ansinh-bench-observer".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = deliveries.next().await {
            let at = Instant::now();
            let seq = match d.properties.headers().as_ref().and_then(|h| h.inner().get("x-seq").cloned()) {
                Some(AMQPValue::LongLongInt(s)) => s as u64,
                _ => continue,
            };
            let mut s = sink.lock().expect("observer lock");
            s.max_seq = s.max_seq.max(seq);
            if d.routing_key.as_str().starts_with("payout.instructed.") {
                match s.instructions.entry(seq) {
                    std::collections::btree_map::Entry::Occupied(_) => s.duplicates += 1,
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(d.data);
                        s.last_new = Some(at);
                    }
                }
            }
        }
    });

    progress.say("starting ansinh serve over the prepared data dir");
    let mut serve = ServeChild::start(config, broker, data_dir, dir)?;
    let serve_start = serve.wait_consuming(&observer, &bus.commands_queue(), STALL + Duration::from_millis(lines as u64)).await?;
    progress.say(format!("serve consuming after {:.1} s; waiting for its relay to pass the {setup_head} set-up events", serve_start.as_secs_f64()));
    let t = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        let max_seq = seen.lock().expect("observer lock").max_seq;
        if max_seq >= setup_head {
            break;
        }
        serve.check_running()?;
        if max_seq != last.0 {
            last = (max_seq, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(format!(
                "the relay did not publish the set-up (seq {setup_head}) within {} s; serve's last output:\n{}",
                STALL.as_secs(),
                serve.log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let relay_setup = t.elapsed();
    let before = serve.metrics().await;

    // The agency: its own connection, confirms, a reply queue (as `ansinh publish`).
    let agency = broker.connect("ansinh-bench-agency").await?;
    let pch = agency.create_channel().await.map_err(e)?;
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
            let at = Instant::now();
            if let Ok(o) = serde_json::from_slice::<Outcome>(&d.data) {
                sink.lock().expect("replies lock").push((at, o));
            }
        }
    });

    progress.say(format!("timed: publishing {} payout batches ({lines} lines)", batches.len()));
    let t0 = Instant::now();
    let mut pending = Vec::with_capacity(PUBLISH_WINDOW);
    for envelope in batches {
        pending.push(crate::bus::publish_command(&pch, &bus, &broker.user, reply_queue.name(), envelope).await.map_err(e)?);
        if pending.len() >= PUBLISH_WINDOW {
            settle(&mut pending).await?;
        }
    }
    settle(&mut pending).await?;
    let publish = t0.elapsed();
    let mut last = (0, Instant::now());
    loop {
        let (n_replies, n_instr) = (replies.lock().expect("replies lock").len(), seen.lock().expect("observer lock").instructions.len());
        if n_replies >= batches.len() && n_instr >= lines {
            break;
        }
        serve.check_running()?;
        if n_replies + n_instr != last.0 {
            last = (n_replies + n_instr, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(format!(
                "no progress for {} s: {n_replies} of {} replies, {n_instr} of {lines} instructions; serve's last output:\n{}",
                STALL.as_secs(),
                batches.len(),
                serve.log_tail()
            ));
        }
        progress.tick(|| format!("{n_replies}/{} replies, {n_instr}/{lines} instructions after {:.0} s", batches.len(), t0.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = serve.metrics().await;
    let peak_rss = serve.peak_rss();
    serve.stop()?;
    let _ = agency.close(200, "done".into()).await;
    let _ = observer.close(200, "done".into()).await;

    let replies = std::mem::take(&mut *replies.lock().expect("replies lock"));
    let mut answered: HashMap<&str, &Outcome> = HashMap::new();
    for (_, o) in &replies {
        answered.entry(o.command_id.as_str()).or_insert(o);
    }
    for b in batches {
        let o = answered.get(b.command_id.as_str()).ok_or_else(|| format!("no reply to {}", b.command_id))?;
        let want = expected.get(&b.command_id).copied().unwrap_or(0);
        if o.status != OutcomeStatus::Accepted || o.duplicate || o.count_lines("instructed") != want {
            return Err(format!("{}: {:?} (duplicate {}), {} of {want} lines instructed", b.command_id, o.status, o.duplicate, o.count_lines("instructed")));
        }
    }
    let to_replies = replies.iter().map(|(at, _)| at.duration_since(t0)).max().unwrap_or_default();
    let mut seen = std::mem::take(&mut *seen.lock().expect("observer lock"));
    if seen.instructions.len() != lines {
        return Err(format!("{} instructions seen, {lines} lines instructed", seen.instructions.len()));
    }
    let to_instructions = seen.last_new.map(|at| at.duration_since(t0)).unwrap_or_default();
    let stages = metrics_delta(before, after);
    Ok(EngineRun {
        wall: to_replies.max(to_instructions),
        to_replies,
        to_instructions,
        publish,
        serve_start,
        relay_setup,
        replies: answered.len(),
        duplicates: seen.duplicates,
        bodies: std::mem::take(&mut seen.instructions).into_values().collect(),
        stages,
        peak_rss,
    })
}

fn durable(queue_type: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(queue_type.into()));
    args
}

/// The minimal program: publisher -> durable queue -> consumer that republishes with confirms
/// and then acks -> durable queue -> drain. Three connections, as the agency, the engine and
/// the observer have.
async fn baseline_side(config: &Config, broker: &Broker, bodies: &[Vec<u8>], queues: &[String], progress: &mut Progress) -> Result<BaselineRun, String> {
    let e = |e: lapin::Error| e.to_string();
    let (q_in, q_out) = (queues[0].as_str(), queues[1].as_str());
    let n = bodies.len();
    let publisher = broker.connect("ansinh-bench-baseline-publisher").await?;
    let middle = broker.connect("ansinh-bench-baseline-relay").await?;
    let drain = broker.connect("ansinh-bench-baseline-drain").await?;
    let pch = publisher.create_channel().await.map_err(e)?;
    let durable_queue = QueueDeclareOptions { durable: true, ..Default::default() };
    pch.queue_declare(q_in.into(), durable_queue, durable(&config.bus.queue_type)).await.map_err(e)?;
    pch.queue_declare(q_out.into(), durable_queue, durable("quorum")).await.map_err(e)?;
    pch.confirm_select(ConfirmSelectOptions::default()).await.map_err(e)?;

    // Drain: counts the messages arriving on the second queue.
    let dch = drain.create_channel().await.map_err(e)?;
    let mut out = dch
        .basic_consume(q_out.into(), "ansinh-bench-drain".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let drained: Arc<Mutex<(usize, Option<Instant>)>> = Arc::new(Mutex::new((0, None)));
    let sink = drained.clone();
    tokio::spawn(async move {
        while let Some(Ok(_)) = out.next().await {
            let mut d = sink.lock().expect("drain lock");
            d.0 += 1;
            d.1 = Some(Instant::now());
        }
    });

    // The relay in the middle: groups like the engine's intake, republishes each message with
    // confirms, acks the group once every confirm is in.
    let cch = middle.create_channel().await.map_err(e)?;
    cch.basic_qos(config.bus.prefetch, BasicQosOptions::default()).await.map_err(e)?;
    let rch = middle.create_channel().await.map_err(e)?;
    rch.confirm_select(ConfirmSelectOptions::default()).await.map_err(e)?;
    let consumer = cch.basic_consume(q_in.into(), "ansinh-bench-relay".into(), BasicConsumeOptions::default(), FieldTable::default()).await.map_err(e)?;
    let relay_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let error_sink = relay_error.clone();
    let (group_max, wait, target) = (config.engine.group_commands_max.max(1), Duration::from_millis(config.bus.group_wait_ms), q_out.to_string());
    tokio::spawn(async move {
        if let Err(err) = relay(cch, rch, consumer, group_max, wait, target).await {
            *error_sink.lock().expect("error lock") = Some(err);
        }
    });

    let t0 = Instant::now();
    let mut pending = Vec::with_capacity(PUBLISH_WINDOW);
    for (seq, body) in bodies.iter().enumerate() {
        // The relay's properties: persistent, JSON, message id, type, the x-seq header.
        let mut headers = FieldTable::default();
        headers.insert("x-seq".into(), AMQPValue::LongLongInt(seq as i64 + 1));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(format!("baseline-{seq}").as_str().into())
            .with_type("payout.instructed".into())
            .with_headers(headers);
        pending.push(pch.basic_publish("".into(), q_in.into(), BasicPublishOptions::default(), body, props).await.map_err(e)?);
        if pending.len() >= PUBLISH_WINDOW {
            settle(&mut pending).await?;
        }
    }
    settle(&mut pending).await?;
    let mut last = (0, Instant::now());
    let finished = loop {
        let (count, at) = *drained.lock().expect("drain lock");
        if count >= n {
            break at.unwrap_or_else(Instant::now);
        }
        if let Some(err) = relay_error.lock().expect("error lock").clone() {
            return Err(format!("baseline relay: {err}"));
        }
        if count != last.0 {
            last = (count, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(format!("baseline: no progress for {} s ({count} of {n} drained)", STALL.as_secs()));
        }
        progress.tick(|| format!("baseline {count}/{n} drained after {:.0} s", t0.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = finished.duration_since(t0);
    let count = drained.lock().expect("drain lock").0;
    for c in [&publisher, &middle, &drain] {
        let _ = c.close(200, "done".into()).await;
    }
    Ok(BaselineRun { wall, drained: count })
}

async fn relay(consume: Channel, publish: Channel, mut consumer: lapin::Consumer, group_max: usize, wait: Duration, target: String) -> Result<(), String> {
    let e = |e: lapin::Error| e.to_string();
    while let Some(first) = consumer.next().await {
        // Grouped as the intake groups (bus/consumer.rs): closed `wait` after its first delivery.
        let deadline = tokio::time::Instant::now() + wait;
        let mut group = vec![first.map_err(e)?];
        while group.len() < group_max {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(Some(d)) => group.push(d.map_err(e)?),
                Ok(None) | Err(_) => break,
            }
        }
        let mut confirms = Vec::with_capacity(group.len());
        for d in &group {
            confirms.push(
                publish.basic_publish("".into(), target.as_str().into(), BasicPublishOptions::default(), &d.data, d.properties.clone()).await.map_err(e)?,
            );
        }
        settle(&mut confirms).await?;
        let last = group.last().map(|d| d.delivery_tag).expect("a group has a delivery");
        consume.basic_ack(last, BasicAckOptions { multiple: true }).await.map_err(e)?;
    }
    Ok(())
}
