//! Declares the exchanges and queues, idempotently (declaring what exists with the same
//! arguments is a no-op; different arguments are a broker error that names the conflict).
//!
//! - `<prefix>.commands` direct exchange -> `<prefix>.commands` queue (quorum by default,
//!   dead-lettering to `<prefix>.dlx`, delivery limit), routing key `command`;
//! - `<prefix>.dlx` fanout -> `<prefix>.dead` queue: poison input with its reason in a header;
//! - `<prefix>.events` topic exchange: every event, routing key `<type>.<bin|province>`;
//! - `<prefix>.checkpoints` fanout: chain checkpoints for auditors;
//! - `<prefix>.bank.<bin>` quorum queue per BIN of the bank table, bound to
//!   `payout.instructed.<bin>`: declared by the engine, so no instruction is ever published
//!   before its bank's queue exists, whenever the bank connector first connects.

use super::BusConfig;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

pub const COMMAND_ROUTING_KEY: &str = "command";

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }
}

pub async fn declare(channel: &Channel, config: &BusConfig) -> lapin::Result<()> {
    let dlx = config.dead_letter_exchange();
    channel.exchange_declare(dlx.as_str().into(), ExchangeKind::Fanout, durable_exchange(), FieldTable::default()).await?;
    let mut dead_args = FieldTable::default();
    dead_args.insert("x-queue-type".into(), AMQPValue::LongString(config.queue_type.as_str().into()));
    channel.queue_declare(config.dead_letter_queue().as_str().into(), durable_queue(), dead_args).await?;
    channel.queue_bind(config.dead_letter_queue().as_str().into(), dlx.as_str().into(), "".into(), QueueBindOptions::default(), FieldTable::default()).await?;

    let commands = config.commands_exchange();
    channel.exchange_declare(commands.as_str().into(), ExchangeKind::Direct, durable_exchange(), FieldTable::default()).await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(config.queue_type.as_str().into()));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(dlx.as_str().into()));
    if config.queue_type == "quorum" {
        args.insert("x-delivery-limit".into(), AMQPValue::LongInt(i32::try_from(config.delivery_limit).unwrap_or(i32::MAX)));
    }
    channel.queue_declare(config.commands_queue().as_str().into(), durable_queue(), args).await?;
    channel
        .queue_bind(
            config.commands_queue().as_str().into(),
            commands.as_str().into(),
            COMMAND_ROUTING_KEY.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    channel.exchange_declare(config.events_exchange().as_str().into(), ExchangeKind::Topic, durable_exchange(), FieldTable::default()).await?;
    channel.exchange_declare(config.checkpoint_exchange().as_str().into(), ExchangeKind::Fanout, durable_exchange(), FieldTable::default()).await?;
    for bin in crate::domain::reference::bank_bins() {
        declare_bank_queue(channel, config, bin).await?;
    }
    Ok(())
}

/// The durable queue of one bank's payout instructions (also declared by its connector).
pub async fn declare_bank_queue(channel: &Channel, config: &BusConfig, bin: &str) -> lapin::Result<()> {
    let queue = config.bank_queue(bin);
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    channel.queue_declare(queue.as_str().into(), durable_queue(), args).await?;
    let key = format!("payout.instructed.{bin}");
    channel
        .queue_bind(queue.as_str().into(), config.events_exchange().as_str().into(), key.as_str().into(), QueueBindOptions::default(), FieldTable::default())
        .await
}
