//! `latency`: time from publish to reply for single commands at a fixed offered rate, through
//! `ansinh serve` (a child process) against a minimal lapin echo on the same broker, same rate,
//! same request bytes, same publish path.
//!
//! The commands are `enroll_beneficiary` for fresh citizens (valid generated IDs), one message
//! each, published on a schedule (open loop: command i leaves at t0 + i / rate whatever the
//! replies do) with confirms awaited off the schedule. Each latency runs from just before the
//! publish to the arrival of its reply. The baseline declares the same kind of command exchange
//! and queue under its own prefix and answers every message by publishing it back to `reply_to`
//! (confirmed, then acked), so it is the broker's own round trip with nothing decided or stored.

use super::broker::{metrics_delta, quantile, Broker, Progress, ServeChild, STALL};
use super::embedded::{envelope, execute, PROGRAM, PROVINCE};
use super::{Report, Scratch};
use crate::bus::BusConfig;
use crate::cli::demo_data;
use crate::command::{Command, CommandEnvelope};
use crate::config::Config;
use crate::engine::Engine;
use crate::outcome::{Outcome, OutcomeStatus};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Commands sent first at the same rate and left out of the figures (connections, channels and
/// the engine's first groups warming up).
pub const WARMUP: usize = 20;

/// First reply per correlation id: when it arrived and its body.
type Replies = Arc<Mutex<HashMap<String, (Instant, Vec<u8>)>>>;

/// What one side measured.
struct RoundTrips {
    /// Sorted latencies of the measured commands (warm-up excluded).
    sorted: Vec<Duration>,
    /// Measured commands per second actually published (the schedule's wall time).
    achieved_rate: f64,
    /// Latest a publish left after its scheduled time.
    max_lag: Duration,
    /// The replies, by correlation id (engine side: outcomes to check).
    replies: HashMap<String, Vec<u8>>,
}

impl RoundTrips {
    fn p(&self, q: f64) -> f64 {
        quantile(&self.sorted, q).as_secs_f64() * 1_000.0
    }
}

/// Runs the suite: `commands` measured commands at `rate` per second on each side.
pub fn run(config: &Config, commands: usize, rate: f64, tmp: &Path) -> Result<Report, String> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 100_000.0) {
        return Err(format!("--rate must be above 0 and at most 100,000 commands/s, not {rate}"));
    }
    if commands == 0 {
        return Err("--lines (commands) must be positive".into());
    }
    let broker = Broker::reach(config, "latency")?;
    let load_at_start = super::load_average();
    let mut progress = Progress::new("latency");
    let scratch = Scratch::new(tmp, "latency")?;
    let data_dir = scratch.path().join("engine");
    // Set-up, untimed: the program rules (an enrollment needs its program).
    {
        let mut options = config.engine_options();
        options.data_dir = data_dir.clone();
        let mut engine = Engine::open(&options, &mut |_, _| {}).map_err(|e| e.to_string())?;
        let rules: Vec<_> = demo_data::program_rules(PROGRAM).into_iter().map(|(id, at, c)| envelope(id, at, c)).collect();
        execute(&mut engine, &rules)?;
    }
    let envelopes: Vec<CommandEnvelope> = demo_data::beneficiaries(11, WARMUP + commands, PROVINCE, PROGRAM)
        .into_iter()
        .enumerate()
        .map(|(i, b)| CommandEnvelope {
            command_id: format!("bench-latency-{i}"),
            v: 1,
            issued_at: "2024-12-20T02:00:00Z".into(),
            sender: None,
            command: Command::EnrollBeneficiary(b.enroll),
        })
        .collect();
    let size = envelopes.iter().map(|e| serde_json::to_vec(e).map(|b| b.len()).unwrap_or(0)).sum::<usize>() as f64 / envelopes.len() as f64;

    let rt = crate::cli::serve::runtime()?;
    let echo_bus = BusConfig { prefix: format!("{}-echo", broker.prefix), ..broker.bus(config) };
    let (result, left) = rt.block_on(async {
        let admin = match broker.connect("ansinh-bench-admin").await {
            Ok(c) => c,
            Err(e) => return (Err(e), Vec::new()),
        };
        let engine = engine_side(config, &broker, &data_dir, scratch.path(), &envelopes, rate, &mut progress).await;
        let mut left = broker.delete_topology(&admin).await;
        let result = match engine {
            Ok((engine, serve_rss, stages)) => {
                progress.say(format!("baseline: {} commands at {rate}/s through a minimal echo", envelopes.len()));
                let baseline = baseline_side(config, &broker, &echo_bus, &envelopes, rate, &mut progress).await;
                left.extend(Broker::delete(&admin, &[echo_bus.commands_queue()], &[echo_bus.commands_exchange()]).await);
                baseline.map(|b| (engine, serve_rss, stages, b))
            }
            Err(e) => Err(e),
        };
        let _ = admin.close(200, "done".into()).await;
        (result, left)
    });
    if !left.is_empty() {
        eprintln!("bench latency: warning: left on the broker: {}", left.join(", "));
    }
    let (engine, serve_rss, stages, baseline) = result?;

    let mut report = Report::new("latency", commands as u64);
    for (side, r) in [("engine", &engine), ("baseline", &baseline)] {
        report.figure(&format!("{side} p50"), r.p(0.50), "ms");
        report.figure(&format!("{side} p99"), r.p(0.99), "ms");
        report.figure(&format!("{side} max"), r.p(1.0), "ms");
    }
    report.figure("offered rate", rate, "commands/s");
    for (side, r) in [("engine", &engine), ("baseline", &baseline)] {
        report.figure(&format!("{side} achieved publish rate"), r.achieved_rate, "commands/s");
        report.figure(&format!("{side} publisher max lag behind schedule"), r.max_lag.as_secs_f64() * 1_000.0, "ms");
        report.figure(&format!("{side} replies"), r.sorted.len() as f64, "replies");
    }
    report.figure("mean command size", size, "bytes");
    if let Some(rss) = serve_rss {
        report.figure("serve peak RSS", rss as f64, "bytes");
    }
    // Per group commit, over the whole engine run (warm-up included), from serve's /metrics.
    let groups = stages.get("ansinh_group_commands_count").copied().unwrap_or(0.0);
    if groups > 0.0 {
        report.figure("engine groups", groups, "groups");
        report.figure("engine commands per group", stages.get("ansinh_group_commands_sum").copied().unwrap_or(0.0) / groups, "commands");
        for (name, key) in [("batch write", "ansinh_append_seconds_sum"), ("flush", "ansinh_flush_seconds_sum"), ("views", "ansinh_apply_seconds_sum")] {
            report.figure(&format!("engine mean {name} per group"), stages.get(key).copied().unwrap_or(0.0) / groups * 1_000.0, "ms");
        }
    } else {
        report.note("engine group figures unavailable: serve's /metrics did not answer");
    }
    for (name, load) in [("load average at start", load_at_start), ("load average at end", super::load_average())] {
        if let Some(load) = load {
            report.figure(name, load, "1-minute");
        }
    }
    let lower = "engine/baseline: lower is better, 1 = the broker's own round trip";
    report.ratio("p50 engine/baseline", engine.p(0.50) / baseline.p(0.50).max(1e-9), lower);
    report.ratio("p99 engine/baseline", engine.p(0.99) / baseline.p(0.99).max(1e-9), lower);
    report.ratio("max engine/baseline", engine.p(1.0) / baseline.p(1.0).max(1e-9), lower);
    report.note(format!(
        "{commands} enroll_beneficiary commands (plus {WARMUP} warm-up, not counted) published one per message at {rate}/s on a fixed schedule, confirms \
         awaited off the schedule; latency = publish to reply, per command"
    ));
    report.note(format!(
        "engine: `ansinh serve` (child) with the config's settings: groups of up to {} commands, waiting up to {} ms for a group to fill, each group \
         decided, appended, flushed (fsync) and applied to the views before its replies and ack",
        config.engine.group_commands_max, config.bus.group_wait_ms
    ));
    report.note(format!(
        "baseline: the same request bytes and properties published the same way to a {} command queue under prefix {}, answered by a minimal lapin \
         echo (prefetch {}: each message published back to reply_to on a confirm channel, acked once confirmed); the echo's reply is the request \
         itself, the engine's the outcome",
        config.bus.queue_type, echo_bus.prefix, config.bus.prefetch
    ));
    report.note("ratios are engine / baseline: lower is better; 1 would mean the engine adds nothing to the broker's round trip");
    report.note(broker.topology_note(&left));
    Ok(report)
}

async fn engine_side(
    config: &Config,
    broker: &Broker,
    data_dir: &Path,
    dir: &Path,
    envelopes: &[CommandEnvelope],
    rate: f64,
    progress: &mut Progress,
) -> Result<(RoundTrips, Option<u64>, HashMap<String, f64>), String> {
    let bus = broker.bus(config);
    let client = broker.connect("ansinh-bench-agency").await?;
    broker.declare_topology(&client, &bus).await?;
    progress.say("starting ansinh serve");
    let mut serve = ServeChild::start(config, broker, data_dir, dir)?;
    let started = serve.wait_consuming(&client, &bus.commands_queue(), STALL).await?;
    progress.say(format!("serve consuming after {:.1} s; timed: {} commands at {rate}/s", started.as_secs_f64(), envelopes.len()));
    let before = serve.metrics().await;
    let trips = round_trips(&client, &bus, &broker.user, envelopes, rate, progress, Some(&mut serve)).await;
    let stages = metrics_delta(before, serve.metrics().await);
    let rss = serve.peak_rss();
    let stopped = serve.stop();
    let _ = client.close(200, "done".into()).await;
    let trips = trips?;
    stopped?;
    for e in envelopes {
        let body = trips.replies.get(&e.command_id).ok_or_else(|| format!("no reply to {}", e.command_id))?;
        let o: Outcome = serde_json::from_slice(body).map_err(|err| format!("reply to {} is not an outcome: {err}", e.command_id))?;
        if o.status != OutcomeStatus::Accepted || o.duplicate {
            return Err(format!("{}: {:?} {:?} {:?} (duplicate {})", e.command_id, o.status, o.code, o.message, o.duplicate));
        }
    }
    Ok((trips, rss, stages))
}

async fn baseline_side(
    config: &Config,
    broker: &Broker,
    echo_bus: &BusConfig,
    envelopes: &[CommandEnvelope],
    rate: f64,
    progress: &mut Progress,
) -> Result<RoundTrips, String> {
    let e = |e: lapin::Error| e.to_string();
    let server = broker.connect("ansinh-bench-echo").await?;
    let ch = server.create_channel().await.map_err(e)?;
    // The command exchange and queue as the topology declares them (minus dead-lettering).
    let exchange = echo_bus.commands_exchange();
    let queue = echo_bus.commands_queue();
    ch.exchange_declare(exchange.as_str().into(), ExchangeKind::Direct, ExchangeDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(echo_bus.queue_type.as_str().into()));
    ch.queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, args).await.map_err(e)?;
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        crate::bus::topology::COMMAND_ROUTING_KEY.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(e)?;
    ch.basic_qos(config.bus.prefetch, BasicQosOptions::default()).await.map_err(e)?;
    let reply = server.create_channel().await.map_err(e)?;
    reply.confirm_select(ConfirmSelectOptions::default()).await.map_err(e)?;
    let consumer =
        ch.basic_consume(queue.as_str().into(), "ansinh-bench-echo".into(), BasicConsumeOptions::default(), FieldTable::default()).await.map_err(e)?;
    tokio::spawn(echo(ch, reply, consumer));

    let client = broker.connect("ansinh-bench-agency").await?;
    let trips = round_trips(&client, echo_bus, &broker.user, envelopes, rate, progress, None).await;
    let _ = client.close(200, "done".into()).await;
    let _ = server.close(200, "done".into()).await;
    trips
}

/// Answers every delivery by publishing its body to its `reply_to` with its correlation id,
/// then acks it once the broker confirmed the reply.
async fn echo(consume: Channel, reply: Channel, mut consumer: lapin::Consumer) {
    while let Some(Ok(d)) = consumer.next().await {
        let Some(reply_to) = d.properties.reply_to().clone() else { continue };
        let mut props = BasicProperties::default().with_content_type("application/json".into()).with_type("outcome".into());
        if let Some(id) = d.properties.correlation_id() {
            props = props.with_correlation_id(id.clone());
        }
        let Ok(confirm) = reply.basic_publish("".into(), reply_to, BasicPublishOptions::default(), &d.data, props).await else { return };
        let (consume, tag) = (consume.clone(), d.delivery_tag);
        tokio::spawn(async move {
            if confirm.await.is_ok_and(|c| c.is_ack()) {
                let _ = consume.basic_ack(tag, BasicAckOptions::default()).await;
            }
        });
    }
}

/// Publishes `envelopes` through `bus`'s command exchange at `rate`, each with a reply queue
/// and correlation id, and times each from publish to reply.
async fn round_trips(
    conn: &Connection,
    bus: &BusConfig,
    user: &str,
    envelopes: &[CommandEnvelope],
    rate: f64,
    progress: &mut Progress,
    mut serve: Option<&mut ServeChild>,
) -> Result<RoundTrips, String> {
    let e = |e: lapin::Error| e.to_string();
    let ch = conn.create_channel().await.map_err(e)?;
    ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(e)?;
    let reply_queue = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let rch = conn.create_channel().await.map_err(e)?;
    let mut stream = rch
        .basic_consume(reply_queue.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let replies: Replies = Arc::new(Mutex::new(HashMap::with_capacity(envelopes.len())));
    let sink = replies.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = stream.next().await {
            let at = Instant::now();
            if let Some(id) = d.properties.correlation_id() {
                sink.lock().expect("replies lock").entry(id.to_string()).or_insert((at, d.data));
            }
        }
    });
    // Confirms are awaited by their own task so the schedule never waits on the broker.
    let (confirms, mut pending) = tokio::sync::mpsc::unbounded_channel::<lapin::PublisherConfirm>();
    let refused = tokio::spawn(async move {
        let mut refused = 0usize;
        while let Some(c) = pending.recv().await {
            refused += usize::from(!c.await.is_ok_and(|c| c.is_ack()));
        }
        refused
    });

    let period = Duration::from_secs_f64(1.0 / rate);
    let t0 = Instant::now() + Duration::from_millis(20);
    let mut sent = Vec::with_capacity(envelopes.len());
    let mut max_lag = Duration::ZERO;
    for (i, envelope) in envelopes.iter().enumerate() {
        let due = t0 + period.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let at = Instant::now();
        if i >= WARMUP {
            max_lag = max_lag.max(at.saturating_duration_since(due));
        }
        let confirm = crate::bus::publish_command(&ch, bus, user, reply_queue.name(), envelope).await.map_err(e)?;
        sent.push(at);
        confirms.send(confirm).map_err(|_| "the confirm task stopped".to_string())?;
        progress.tick(|| format!("{}/{} published, {} replies", i + 1, envelopes.len(), replies.lock().expect("replies lock").len()));
    }
    let schedule = sent.last().map(|l| l.duration_since(sent[WARMUP.min(sent.len() - 1)])).unwrap_or_default();
    drop(confirms);
    let refused = refused.await.map_err(|e| e.to_string())?;
    if refused > 0 {
        return Err(format!("the broker refused {refused} publishes"));
    }
    let mut last = (0, Instant::now());
    loop {
        let n = replies.lock().expect("replies lock").len();
        if n >= envelopes.len() {
            break;
        }
        if let Some(serve) = serve.as_deref_mut() {
            serve.check_running()?;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > STALL {
            return Err(format!("no reply for {} s: {n} of {} replies", STALL.as_secs(), envelopes.len()));
        }
        progress.tick(|| format!("{n}/{} replies", envelopes.len()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = ch.close(200, "done".into()).await;
    let _ = rch.close(200, "done".into()).await;
    let replies: HashMap<String, (Instant, Vec<u8>)> = std::mem::take(&mut *replies.lock().expect("replies lock"));
    let mut sorted: Vec<Duration> = envelopes
        .iter()
        .zip(&sent)
        .skip(WARMUP)
        .map(|(env, at)| {
            replies.get(&env.command_id).map(|(got, _)| got.saturating_duration_since(*at)).ok_or_else(|| format!("no reply to {}", env.command_id))
        })
        .collect::<Result<_, _>>()?;
    sorted.sort();
    let measured = envelopes.len().saturating_sub(WARMUP);
    Ok(RoundTrips {
        achieved_rate: if schedule.is_zero() { rate } else { (measured.saturating_sub(1)) as f64 / schedule.as_secs_f64() },
        sorted,
        max_lag,
        replies: replies.into_iter().map(|(k, (_, body))| (k, body)).collect(),
    })
}
