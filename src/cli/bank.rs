//! `ansinh bank-connector --bin B`: the reference bank connector, a process of its own. It binds
//! a durable queue to its BIN's payout instructions, simulates the bank (settles, or fails a
//! share of payouts with realistic reasons, after an optional delay), and reports settlements
//! back as `record_settlements` commands under its own RabbitMQ user, in bounded batches. It
//! acknowledges instructions only after the broker confirmed the report that covers them.
//! This is the worked example integrators copy: the contract it relies on is in events/README.md.

use super::demo_data::hash_of;
use super::serve::{runtime, shutdown_signal};
use super::CliResult;
use crate::bus::config::user_of;
use crate::command::{Command, CommandEnvelope, RecordSettlements, SettlementItem, SettlementStatus};
use crate::config::Config;
use crate::domain::reference;
use crate::event::EventData;
use crate::log::chain::Record;
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use std::collections::HashSet;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct BankArgs {
    /// NAPAS BIN of the bank this connector stands for.
    #[arg(long)]
    pub bin: String,
    /// Share of payouts the simulated bank fails (0.0-1.0).
    #[arg(long, default_value_t = 0.02)]
    pub failure_rate: f64,
    /// Simulated processing delay per report, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Most payouts in one settlement report.
    #[arg(long, default_value_t = 1_000)]
    pub batch_max: usize,
    /// How long to wait for more instructions before sending a report.
    #[arg(long, default_value_t = 200)]
    pub batch_wait_ms: u64,
    /// Broker URL with the bank's own user (default: bus.amqp_url of the config).
    #[arg(long)]
    pub amqp: Option<String>,
    /// Seed of the simulated outcomes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Exit once this many instructions were reported (for tests and demos; 0 = run until stopped).
    #[arg(long, default_value_t = 0)]
    pub exit_after: u64,
    /// In a sharded deployment: the shard of the config's `[shards]` whose instructions this
    /// connector takes and reports to (one connector per shard and bank).
    #[arg(long)]
    pub shard: Option<String>,
}

pub fn run(config: &Config, args: &BankArgs) -> CliResult {
    if reference::bank(&args.bin).is_none() {
        return Err(format!("BIN {} is not in the bank table (data/banks.tsv)", args.bin));
    }
    if !(0.0..=1.0).contains(&args.failure_rate) || args.batch_max == 0 || args.batch_max > config.limits.settlement_items_max {
        return Err(format!("--failure-rate must be 0-1 and --batch-max 1-{}", config.limits.settlement_items_max));
    }
    if let Some(name) = args.shard.as_deref().filter(|n| config.shards.get(n).is_none()) {
        return Err(format!("--shard {name:?} is not a shard of the config's [shards]"));
    }
    let url = args.amqp.clone().unwrap_or_else(|| config.bus.amqp_url.clone());
    let user = user_of(&url)?;
    let rt = runtime()?;
    rt.block_on(async {
        let shutdown = shutdown_signal();
        let mut backoff = Duration::from_millis(200);
        let mut seen = HashSet::new();
        let mut reported = 0u64;
        loop {
            match session(config, args, &url, &user, &mut seen, &mut reported, shutdown.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    eprintln!("bank {}: {e}; retrying in {} ms", args.bin, backoff.as_millis());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(3));
                    if *shutdown.borrow() {
                        return Ok(());
                    }
                }
            }
        }
    })
}

#[allow(clippy::too_many_arguments)]
async fn session(
    config: &Config,
    args: &BankArgs,
    url: &str,
    user: &str,
    seen: &mut HashSet<String>,
    reported: &mut u64,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), String> {
    let e = |e: lapin::Error| e.to_string();
    let bus = &match &args.shard {
        Some(name) => crate::bus::shards::shard_bus(&config.bus, &config.shards, name),
        None => config.bus.clone(),
    };
    let conn = Connection::connect(url, ConnectionProperties::default().with_connection_name(format!("ansinh-bank-{}", args.bin).into())).await.map_err(e)?;
    let ch = conn.create_channel().await.map_err(e)?;
    // The engine declares the events exchange; passive: the bank needs no right to create it.
    ch.exchange_declare(
        bus.events_exchange().as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions { passive: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .map_err(|err| format!("the events exchange {} does not exist yet (start `ansinh serve` first): {err}", bus.events_exchange()))?;
    let ch = conn.create_channel().await.map_err(e)?;
    let queue = bus.bank_queue(&args.bin);
    crate::bus::topology::declare_bank_queue(&ch, bus, &args.bin).await.map_err(|e| e.to_string())?;
    ch.basic_qos(u16::try_from(args.batch_max * 2).unwrap_or(u16::MAX), BasicQosOptions::default()).await.map_err(e)?;
    let publish = conn.create_channel().await.map_err(e)?;
    publish.confirm_select(ConfirmSelectOptions::default()).await.map_err(e)?;
    let replies = publish
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let mut reply_stream = publish
        .basic_consume(replies.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let mut consumer = ch
        .basic_consume(queue.as_str().into(), format!("bank-{}", args.bin).as_str().into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .map_err(e)?;
    eprintln!("bank {} ({}): consuming {queue} as {user}", args.bin, reference::bank(&args.bin).map(|b| b.short_name).unwrap_or("?"));
    let wait = Duration::from_millis(args.batch_wait_ms);
    loop {
        let first = tokio::select! {
            d = consumer.next() => d,
            _ = shutdown.changed() => return Ok(()),
            r = reply_stream.next() => { log_reply(r); continue; }
        };
        let Some(first) = first else { return Err("the broker cancelled the consumer".into()) };
        let mut deliveries = vec![first.map_err(e)?];
        while deliveries.len() < args.batch_max {
            match tokio::time::timeout(wait, consumer.next()).await {
                Ok(Some(d)) => deliveries.push(d.map_err(e)?),
                Ok(None) | Err(_) => break,
            }
        }
        let mut items = Vec::new();
        let (mut first_seq, mut last_seq) = (u64::MAX, 0);
        for d in &deliveries {
            let Ok(record) = serde_json::from_slice::<Record>(&d.data) else {
                eprintln!("bank {}: ignoring a message that is not an audit record", args.bin);
                continue;
            };
            let EventData::PayoutInstructed(p) = record.event.data else { continue };
            // Dedupe: an instruction can arrive twice (at-least-once relay, redelivery).
            if p.account.bin != args.bin || !seen.insert(p.payout_id.clone()) {
                continue;
            }
            (first_seq, last_seq) = (first_seq.min(record.seq), last_seq.max(record.seq));
            let (status, reason) = super::demo_data::simulated_outcome(args.seed, args.failure_rate, &p.payout_id);
            items.push(SettlementItem {
                payout_id: p.payout_id,
                status,
                reason,
                bank_reference: format!("FT{:012}", hash_of(args.seed ^ 7, &record.event.id) % 1_000_000_000_000),
            });
        }
        if args.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.delay_ms)).await;
        }
        if !items.is_empty() {
            let count = items.len();
            let failed = items.iter().filter(|i| i.status == SettlementStatus::Failed).count();
            let envelope = CommandEnvelope {
                command_id: format!("bank-{}-{first_seq}-{last_seq}-{count}", args.bin),
                v: 1,
                issued_at: crate::timefmt::now_rfc3339(),
                sender: None,
                command: Command::RecordSettlements(RecordSettlements { bin: args.bin.clone(), items }),
            };
            let confirm = crate::bus::publish_command(&publish, bus, user, replies.name(), &envelope).await.map_err(e)?.await.map_err(e)?;
            if confirm.is_nack() {
                return Err("the broker refused the settlement report; instructions will be redelivered".into());
            }
            *reported += count as u64;
            eprintln!("bank {}: reported {count} payouts ({failed} failed), seq {first_seq}..{last_seq}", args.bin);
        }
        let last = deliveries.last().expect("at least one delivery").delivery_tag;
        ch.basic_ack(last, BasicAckOptions { multiple: true }).await.map_err(e)?;
        if args.exit_after > 0 && *reported >= args.exit_after {
            // Give the engine a moment to answer the last report, for the log.
            if let Ok(Some(r)) = tokio::time::timeout(Duration::from_secs(5), reply_stream.next()).await {
                log_reply(Some(r));
            }
            let _ = conn.close(200, "done".into()).await;
            return Ok(());
        }
    }
}

fn log_reply(reply: Option<Result<lapin::message::Delivery, lapin::Error>>) {
    if let Some(Ok(d)) = reply {
        if let Ok(o) = serde_json::from_slice::<crate::outcome::Outcome>(&d.data) {
            let rejected = o.count_lines("rejected");
            if rejected > 0 || o.status != crate::outcome::OutcomeStatus::Accepted {
                eprintln!("  engine answered {}: {:?} {} ({} items rejected)", o.command_id, o.status, o.code.unwrap_or_default(), rejected);
            }
        }
    }
}
