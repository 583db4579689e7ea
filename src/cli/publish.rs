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
    /// Route through the national exchanges of the config's `[shards]` (the default when the
    /// config has `[shards]`): by province, `all`, or one-off partition (ARCHITECTURE.md "Shards").
    #[arg(long)]
    pub shards: bool,
    /// Sharded: the shard that decides the commands that name no province (a one-off budget, a
    /// settlement report, a citizen's change); or `--province CODE` to name it by a province.
    #[arg(long, value_name = "NAME")]
    pub to_shard: Option<String>,
}

/// Where each command goes: the unsharded command exchange, or a route per command.
enum Routing {
    Unsharded,
    Sharded { namespace: String, routes: Vec<crate::bus::shards::Route> },
}

/// The routes of every command, all checked before anything is published (a command that
/// cannot be routed changes nothing).
fn routing(config: &Config, args: &PublishArgs, envelopes: &[(usize, crate::command::CommandEnvelope)]) -> Result<Routing, String> {
    if !args.shards && config.shards.is_empty() {
        if args.to_shard.is_some() {
            return Err("--to-shard needs a [shards] section in the config".into());
        }
        return Ok(Routing::Unsharded);
    }
    if config.shards.is_empty() {
        return Err("--shards needs a [shards] section in the config (see config/shards.example.toml)".into());
    }
    let csv = args.input.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let province = if csv { None } else { args.input.province.as_deref() };
    let mut routes = Vec::with_capacity(envelopes.len());
    for (line_no, envelope) in envelopes {
        let value = serde_json::to_value(envelope).expect("commands serialize");
        routes.push(
            crate::bus::shards::route(&value, &config.shards, args.to_shard.as_deref(), province)
                .map_err(|e| format!("line {line_no}: {e}; nothing was published"))?,
        );
    }
    Ok(Routing::Sharded { namespace: config.shards.namespace.clone(), routes })
}

pub fn run(config: &Config, args: &PublishArgs) -> CliResult {
    let url = args.amqp.clone().unwrap_or_else(|| config.bus.amqp_url.clone());
    let user = user_of(&url)?;
    let Input { envelopes, invalid, is_csv } = read_input(&args.input, None)?;
    let routing = routing(config, args, &envelopes)?;
    let rt = runtime()?;
    let started = Instant::now();
    let replies = rt.block_on(publish_all(config, args, &url, &user, &envelopes, &routing))?;
    let mut totals = [0usize; 4];
    let sharded = matches!(routing, Routing::Sharded { .. });
    for (i, (line_no, envelope)) in envelopes.iter().enumerate() {
        let got: &[(String, Outcome)] = replies.get(&envelope.command_id).map_or(&[], Vec::as_slice);
        for (shard, o) in got {
            totals[match (o.duplicate, o.status) {
                (true, _) => 2,
                (false, OutcomeStatus::Accepted) => 0,
                _ => 1,
            }] += 1;
            if !sharded {
                print_outcome(*line_no, o, args.input.json, is_csv);
            } else if args.input.json {
                outln!("{}", serde_json::to_string(&serde_json::json!({"line": line_no, "shard": shard, "outcome": o})).expect("outcomes serialize"));
            } else {
                outln!("line {line_no:>6}  at shard {}", super::shown(shard));
                print_outcome(*line_no, o, false, is_csv);
            }
        }
        let wanted = match &routing {
            Routing::Unsharded => 1,
            Routing::Sharded { routes, .. } => routes[i].replies,
        };
        if got.len() < wanted {
            totals[3] += 1;
            let from = if wanted > 1 { format!(" from {} of {wanted} shards", wanted - got.len()) } else { String::new() };
            outln!(
                "line {line_no:>6}  {:<24} no reply{from} within {} s (re-run to ask again; nothing will be applied twice)",
                envelope.command_id,
                args.timeout_secs
            );
        }
    }
    let lines: usize = replies.values().flatten().map(|(_, o)| o.lines.len().max(1)).sum();
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
    routing: &Routing,
) -> Result<HashMap<String, Vec<(String, Outcome)>>, String> {
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
    for (i, (_, envelope)) in envelopes.iter().enumerate() {
        let confirm = match routing {
            Routing::Unsharded => crate::bus::publish_command(&ch, bus, user, reply_queue.name(), envelope).await.map_err(e)?,
            Routing::Sharded { routes, .. } => crate::bus::publish_command_routed(&ch, &routes[i], user, reply_queue.name(), envelope).await.map_err(e)?,
        };
        pending.push((envelope.command_id.clone(), confirm));
        if pending.len() >= args.window {
            settle_confirms(&mut pending, routing).await?;
        }
    }
    settle_confirms(&mut pending, routing).await?;
    // command id -> (shard that answered, its first reply); a shard's later reply answers a
    // redelivery (it restarted before its ack) and says "duplicate".
    let mut replies: HashMap<String, Vec<(String, Outcome)>> = HashMap::new();
    let wanted: HashMap<&str, usize> = envelopes
        .iter()
        .enumerate()
        .map(|(i, (_, env))| {
            let n = match routing {
                Routing::Unsharded => 1,
                Routing::Sharded { routes, .. } => routes[i].replies,
            };
            (env.command_id.as_str(), n)
        })
        .collect();
    let mut missing: usize = wanted.values().sum();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout_secs);
    while missing > 0 {
        match tokio::time::timeout_at(deadline, reply_stream.next()).await {
            Ok(Some(Ok(d))) => {
                if let Ok(o) = serde_json::from_slice::<Outcome>(&d.data) {
                    let Some(&n) = wanted.get(o.command_id.as_str()) else { continue };
                    let shard = match routing {
                        Routing::Unsharded => String::new(),
                        Routing::Sharded { namespace, .. } => {
                            let app = d.properties.app_id().as_ref().map(|a| a.to_string()).unwrap_or_default();
                            app.strip_prefix(namespace.as_str()).and_then(|a| a.strip_prefix('.')).unwrap_or(&app).to_string()
                        }
                    };
                    let got = replies.entry(o.command_id.clone()).or_default();
                    if got.len() < n && !got.iter().any(|(s, _)| *s == shard) {
                        got.push((shard, o));
                        missing -= 1;
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

async fn settle_confirms(pending: &mut Vec<(String, lapin::PublisherConfirm)>, routing: &Routing) -> Result<(), String> {
    for (id, confirm) in pending.drain(..) {
        let c = confirm.await.map_err(|e| format!("publishing {id}: {e}"))?;
        if c.is_nack() {
            return Err(format!("the broker refused command {id}; re-run to publish it again"));
        }
        if let Some(returned) = c.take_message() {
            let hint = match routing {
                Routing::Unsharded => String::new(),
                Routing::Sharded { .. } => {
                    " (is every shard of the config started at least once? each binds its provinces, shard.<name> and all when it starts)".into()
                }
            };
            return Err(format!(
                "command {id} reached no queue: no binding for key {:?} on exchange {:?}{hint}; it was not applied. Commands published before it \
                 stand; re-run after fixing (command ids make a re-run safe)",
                returned.delivery.routing_key.as_str(),
                returned.delivery.exchange.as_str()
            ));
        }
    }
    Ok(())
}
