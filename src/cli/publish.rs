//! `ansinh publish FILE`: the agency side over RabbitMQ. Publishes each command with publisher
//! confirms under the connection's user, waits for the engine's replies, prints a per-line
//! report and a summary. Safe to re-run after a crash: command ids make it idempotent, and the
//! engine answers commands it already has with their stored outcome.

use super::serve::runtime;
use super::submit::{print_outcome, read_input, Input, SubmitArgs};
use super::CliResult;
use crate::bus::config::user_of;
use crate::config::Config;
use crate::outcome::{Outcome, OutcomeStatus};
use crate::outln;
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub input: SubmitArgs,
    /// Broker URL with the agency's own user (default: bus.amqp_url of the config).
    #[arg(long)]
    pub amqp: Option<String>,
    /// How long to wait for all replies, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Most commands published and not yet confirmed at once.
    #[arg(long, default_value_t = 500)]
    pub window: usize,
}

pub fn run(config: &Config, args: &PublishArgs) -> CliResult {
    let url = args.amqp.clone().unwrap_or_else(|| config.bus.amqp_url.clone());
    let user = user_of(&url)?;
    let Input { envelopes, invalid, is_csv } = read_input(&args.input, None)?;
    let rt = runtime()?;
    let started = Instant::now();
    let replies = rt.block_on(publish_all(config, args, &url, &user, &envelopes))?;
    let mut totals = [0usize; 4];
    for (line_no, envelope) in &envelopes {
        match replies.get(&envelope.command_id) {
            Some(o) => {
                totals[match (o.duplicate, o.status) {
                    (true, _) => 2,
                    (false, OutcomeStatus::Accepted) => 0,
                    _ => 1,
                }] += 1;
                print_outcome(*line_no, o, args.input.json, is_csv);
            }
            None => {
                totals[3] += 1;
                outln!(
                    "line {line_no:>6}  {:<24} no reply within {} s (re-run to ask again; nothing will be applied twice)",
                    envelope.command_id,
                    args.timeout_secs
                );
            }
        }
    }
    let lines: usize = replies.values().map(|o| o.lines.len().max(1)).sum();
    let secs = started.elapsed().as_secs_f64();
    if !args.input.json {
        outln!(
            "\n{} commands published as {user}: {} accepted, {} rejected, {} already applied, {} without reply, {invalid} invalid lines not sent; {lines} lines in {secs:.2}s ({:.0} lines/s)",
            envelopes.len(),
            totals[0],
            totals[1],
            totals[2],
            totals[3],
            lines as f64 / secs.max(1e-9)
        );
    }
    if totals[3] > 0 {
        return Err(format!("{} commands got no reply", totals[3]));
    }
    Ok(())
}

async fn publish_all(
    config: &Config,
    args: &PublishArgs,
    url: &str,
    user: &str,
    envelopes: &[(usize, crate::command::CommandEnvelope)],
) -> Result<HashMap<String, Outcome>, String> {
    let e = |e: lapin::Error| e.to_string();
    let bus = &config.bus;
    let conn = Connection::connect(url, ConnectionProperties::default().with_connection_name("ansinh-publish".into()))
        .await
        .map_err(|err| format!("connecting to {}: {err}", crate::bus::config::redact(url)))?;
    let ch = conn.create_channel().await.map_err(e)?;
    ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(e)?;
    let reply_queue = ch
        .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let mut reply_stream = ch
        .basic_consume(reply_queue.name().clone(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
        .await
        .map_err(e)?;
    let mut pending = Vec::with_capacity(args.window);
    for (_, envelope) in envelopes {
        let confirm = crate::bus::publish_command(&ch, bus, user, reply_queue.name(), envelope).await.map_err(e)?;
        pending.push((envelope.command_id.clone(), confirm));
        if pending.len() >= args.window {
            settle_confirms(&mut pending).await?;
        }
    }
    settle_confirms(&mut pending).await?;
    let mut replies: HashMap<String, Outcome> = HashMap::new();
    let wanted: std::collections::HashSet<&str> = envelopes.iter().map(|(_, env)| env.command_id.as_str()).collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    while replies.len() < wanted.len() {
        match tokio::time::timeout_at(deadline, reply_stream.next()).await {
            Ok(Some(Ok(d))) => {
                if let Ok(o) = serde_json::from_slice::<Outcome>(&d.data) {
                    // The first reply tells what this run did; a later one answers a
                    // redelivery (the engine restarted before its ack) and says "duplicate".
                    if wanted.contains(o.command_id.as_str()) {
                        replies.entry(o.command_id.clone()).or_insert(o);
                    }
                }
            }
            Ok(Some(Err(err))) => return Err(format!("reply queue: {err}")),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(replies)
}

async fn settle_confirms(pending: &mut Vec<(String, lapin::PublisherConfirm)>) -> Result<(), String> {
    for (id, confirm) in pending.drain(..) {
        let c = confirm.await.map_err(|e| format!("publishing {id}: {e}"))?;
        if c.is_nack() {
            return Err(format!("the broker refused command {id}; re-run to publish it again"));
        }
    }
    Ok(())
}
