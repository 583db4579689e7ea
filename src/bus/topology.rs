//! Declares the exchanges and queues, idempotently (declaring what exists with the same
//! arguments is a no-op; different arguments are a broker error that names the conflict).
//!
//! - `<prefix>.commands` direct exchange -> `<prefix>.commands` queue (quorum by default),
//!   routing key `command`; past `bus.delivery_limit` returns it dead-letters, at least once, to
//!   `<prefix>.isolation` (not to the dead-letter queue: a command given back often is not bad);
//! - `<prefix>.isolation` fanout -> `<prefix>.isolated` queue: those commands, decided one at a
//!   time (`isolated.rs`); its own delivery limit dead-letters to `<prefix>.dlx`;
//! - `<prefix>.dlx` fanout -> `<prefix>.dead` queue: poison input with its reason in a header;
//! - `<prefix>.events` topic exchange: every event, routing key `<type>.<bin|province>`;
//! - `<prefix>.checkpoints` fanout: chain checkpoints for auditors;
//! - `<prefix>.bank.<bin>` quorum queue per BIN of the bank table, bound to
//!   `payout.instructed.<bin>`: declared by the engine, so no instruction is ever published
//!   before its bank's queue exists, whenever the bank connector first connects.
//!
//! Dead-lettering is `at-least-once` (RabbitMQ 3.10+, with `x-overflow` = `reject-publish`, its
//! requirement): the quorum queue keeps a message until the target queue confirmed it, where
//! `at-most-once` (the default) drops it if the target cannot take it.
//!
//! A queue's arguments cannot change in place: a queue declared by an earlier version with other
//! arguments makes `queue.declare` fail with PRECONDITION_FAILED, reported as
//! [`TopologyError::Conflict`] with what an operator does (ARCHITECTURE.md, "Upgrading the
//! command queue").

use super::BusConfig;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

pub const COMMAND_ROUTING_KEY: &str = "command";

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// An exchange or queue exists with other arguments; retrying cannot help.
    #[error(
        "{name} exists on the broker with other arguments than this version of ansinh declares ({broker}). RabbitMQ cannot change \
         them in place. To upgrade: stop the publishers, let the running serve drain {name} (rabbitmqctl list_queues name messages \
         messages_unacknowledged shows 0 0), stop it, delete it (rabbitmqctl delete_queue {name} --if-empty), start this serve (it \
         declares it anew), then the publishers"
    )]
    Conflict { name: String, broker: String },
    /// A consistent-hash exchange (sharded deployments, `shards.rs`) the broker cannot declare.
    #[error(
        "the broker cannot declare {name}, an exchange of type x-consistent-hash ({broker}): its plugin is probably not enabled. Run \
         `rabbitmq-plugins enable rabbitmq_consistent_hash_exchange` on every node, then start serve again"
    )]
    PluginMissing { name: String, broker: String },
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

pub(crate) fn conflict_or(name: &str) -> impl FnOnce(lapin::Error) -> TopologyError + '_ {
    move |e| match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) if *amqp.kind() == AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED) => {
            TopologyError::Conflict { name: name.to_string(), broker: amqp.get_message().to_string() }
        }
        _ => TopologyError::Amqp(e),
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// The arguments of a queue of `config.queue_type` that dead-letters to `dlx` past `limit`
/// returns (quorum queues only count returns).
pub fn queue_arguments(config: &BusConfig, dlx: &str, limit: u32) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text(&config.queue_type));
    args.insert("x-dead-letter-exchange".into(), text(dlx));
    if config.queue_type == "quorum" {
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(i32::try_from(limit).unwrap_or(i32::MAX)));
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
    }
    args
}

async fn exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> Result<(), TopologyError> {
    channel.exchange_declare(name.into(), kind, durable_exchange(), FieldTable::default()).await.map_err(conflict_or(name))
}

async fn queue(channel: &Channel, name: &str, args: FieldTable, bound_to: &str, key: &str) -> Result<(), TopologyError> {
    channel.queue_declare(name.into(), durable_queue(), args).await.map_err(conflict_or(name))?;
    channel.queue_bind(name.into(), bound_to.into(), key.into(), QueueBindOptions::default(), FieldTable::default()).await?;
    Ok(())
}

pub async fn declare(channel: &Channel, config: &BusConfig) -> Result<(), TopologyError> {
    let dlx = config.dead_letter_exchange();
    exchange(channel, &dlx, ExchangeKind::Fanout).await?;
    let mut dead_args = FieldTable::default();
    dead_args.insert("x-queue-type".into(), text(&config.queue_type));
    queue(channel, &config.dead_letter_queue(), dead_args, &dlx, "").await?;

    let isolation = config.isolation_exchange();
    exchange(channel, &isolation, ExchangeKind::Fanout).await?;
    let isolated_args = queue_arguments(config, &dlx, super::isolated::broker_delivery_limit(config));
    queue(channel, &config.isolated_queue(), isolated_args, &isolation, "").await?;

    let commands = config.commands_exchange();
    exchange(channel, &commands, ExchangeKind::Direct).await?;
    queue(channel, &config.commands_queue(), queue_arguments(config, &isolation, config.delivery_limit), &commands, COMMAND_ROUTING_KEY).await?;

    exchange(channel, &config.events_exchange(), ExchangeKind::Topic).await?;
    exchange(channel, &config.checkpoint_exchange(), ExchangeKind::Fanout).await?;
    for bin in crate::domain::reference::bank_bins() {
        declare_bank_queue(channel, config, bin).await?;
    }
    Ok(())
}

/// The durable queue of one bank's payout instructions (also declared by its connector).
pub async fn declare_bank_queue(channel: &Channel, config: &BusConfig, bin: &str) -> Result<(), TopologyError> {
    let name = config.bank_queue(bin);
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    queue(channel, &name, args, &config.events_exchange(), &format!("payout.instructed.{bin}")).await
}
