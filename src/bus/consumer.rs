//! The intake: consumes the command queue with manual acks and a bounded prefetch, groups the
//! deliveries that are ready into one engine group, and acknowledges them only after the group
//! is durable. Poison input goes to the dead-letter exchange with its reason (after the broker
//! confirmed it), never back to the queue, and its sender gets an `invalid` outcome. Replies go
//! to `reply_to` (reply queues only, see `delivery.rs`) with the `correlation_id`.
//!
//! The intake never gives a delivery back to the queue itself (no nack, no reject): RabbitMQ
//! counts every return against the quorum queue's delivery limit (`bus.delivery_limit`), past
//! which it moves the message to the isolated queue (`isolated.rs`). A group the writer could not
//! store (a storage fault) stays in hand, unacknowledged, and is tried again once the writer has
//! reopened the data dir; a dead letter the broker refused is published again, the group held.
//! Only a crash or a lost connection returns deliveries, and the isolated queue takes those that
//! were returned too often.

use super::delivery::{decode, poison_outcome, Poison, Responder};
use super::storage::Storage;
use super::writer::{NotStored, Writer};
use super::BusConfig;
use crate::command::CommandEnvelope;
use crate::domain::citizen_id::log_safe_error;
use crate::outcome::Outcome;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// The writer is gone (its thread stopped): the group in hand goes back to the queue, and
    /// serve stops (a restart opens the engine anew).
    #[error("{0}")]
    Writer(String),
}

/// Counters the consumer reports (metrics hook).
pub trait IntakeObserver: Send + Sync {
    fn dead_lettered(&self, reason: &str);
    /// A command whose `reply_to` is not a reply queue: decided, not answered.
    fn reply_refused(&self);
    /// A delivery taken from the isolated queue.
    fn isolated(&self);
}

pub struct Intake<'a> {
    pub config: &'a BusConfig,
    pub consume: &'a Channel,
    /// Confirm-mode channel for dead-letters and replies.
    pub publish: &'a Channel,
    pub writer: &'a Writer,
    /// Whether the writer can store (waited on while a group is held after a storage fault).
    pub storage: &'a Storage,
    pub group_max: usize,
    pub observer: &'a dyn IntakeObserver,
}

/// A group closes once its deliveries' bodies reach this many bytes (one command may be up to
/// `intake::COMMAND_BYTES_MAX`, the same 16 MiB). Measured by `bench shards` (BENCHMARKS.md): with
/// only the count bound, 2,000-line one-off batches made groups of ~800,000 lines and a shard's
/// peak RSS 3.4-4.2 GB for a million lines.
pub const GROUP_BYTES_MAX: usize = 16 * 1024 * 1024;

impl Intake<'_> {
    /// Runs until `shutdown` turns true (returns Ok after finishing the group in hand) or the
    /// connection fails (returns the error; unacked deliveries will be redelivered).
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), IntakeError> {
        let mut consumer = self
            .consume
            .basic_consume(self.config.commands_queue().as_str().into(), "ansinh-engine".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        let wait = Duration::from_millis(self.config.group_wait_ms);
        loop {
            let first = tokio::select! {
                d = consumer.next() => d,
                _ = shutdown.changed() => None,
            };
            let first = match first {
                Some(d) => d?,
                None => return Ok(()),
            };
            // The group closes `wait` after its first delivery (or when full): a steady stream
            // must not keep it open, or every command waits for the stream to pause.
            // It also closes past GROUP_BYTES_MAX of bodies: a group is decided, sealed, stored
            // and answered whole, so a thousand batch messages of a few thousand lines each
            // would hold millions of lines' events and outcomes in memory at once.
            let deadline = tokio::time::Instant::now() + wait;
            let mut bytes = first.data.len();
            let mut group = vec![first];
            while group.len() < self.group_max && bytes < GROUP_BYTES_MAX {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(Some(d)) => {
                        let d = d?;
                        bytes += d.data.len();
                        group.push(d);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            self.process(group, &mut shutdown).await?;
            if *shutdown.borrow() {
                return Ok(());
            }
        }
    }

    async fn process(&self, group: Vec<Delivery>, shutdown: &mut watch::Receiver<bool>) -> Result<(), IntakeError> {
        let last_tag = group.last().map(|d| d.delivery_tag).expect("a group has at least one delivery");
        let responder = Responder { config: self.config, channel: self.publish, observer: self.observer };
        let queue = self.config.commands_queue();
        let mut commands = Vec::with_capacity(group.len());
        let mut sources = Vec::with_capacity(group.len());
        let mut poison = Vec::new();
        for delivery in &group {
            match decode(delivery) {
                Ok(envelope) => {
                    commands.push(envelope);
                    sources.push(delivery);
                }
                Err(why) => poison.push((delivery, why)),
            }
        }
        // Dead letters are safe at the broker before their originals are acknowledged.
        if !dead_letter_confirmed(&responder, &queue, None, &poison, shutdown).await? {
            return Ok(());
        }
        for (delivery, why) in &poison {
            responder.reply(delivery, &poison_outcome(delivery, why)).await?;
        }
        if !commands.is_empty() {
            let Some(outcomes) = execute_holding(self.writer, self.storage, commands, group.len(), shutdown).await? else { return Ok(()) };
            for (delivery, outcome) in sources.iter().zip(&outcomes) {
                responder.reply(delivery, outcome).await?;
            }
        }
        // One ack covers the whole group: every earlier delivery was settled by an earlier group.
        self.consume.basic_ack(last_tag, BasicAckOptions { multiple: true }).await?;
        Ok(())
    }
}

/// Publishes the dead letters of `poison` (consumed from `queue`, given back `returns` times
/// when that is known) and waits for the broker's
/// confirms; one the broker refused (nack) is published again a second later, the deliveries
/// still in hand. False: shutdown came first (nothing may be acknowledged then).
pub(super) async fn dead_letter_confirmed(
    responder: &Responder<'_>,
    queue: &str,
    returns: Option<u64>,
    poison: &[(&Delivery, Poison)],
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, IntakeError> {
    let mut pending: Vec<&(&Delivery, Poison)> = poison.iter().collect();
    while !pending.is_empty() {
        let mut confirms = Vec::with_capacity(pending.len());
        for item in pending.drain(..) {
            confirms.push((item, responder.dead_letter(item.0, queue, returns, &item.1).await?));
        }
        for (item, confirm) in confirms {
            if confirm.await?.is_nack() {
                pending.push(item);
            }
        }
        if !pending.is_empty() {
            tracing::error!(dead_letters = pending.len(), "the broker refused dead letters; publishing them again in a second, their originals held");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Decides, appends and projects `envelopes` as one group and returns their outcomes once it is
/// durable. A group the writer could not store is held (nothing of it acknowledged) and tried
/// again once the storage is back; if it was stored after all, the retry is answered from the
/// command index. `None`: shutdown came first (the deliveries go back with the connection).
pub(super) async fn execute_holding(
    writer: &Writer,
    storage: &Storage,
    envelopes: Vec<CommandEnvelope>,
    deliveries: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Vec<Outcome>>, IntakeError> {
    let mut pending = envelopes;
    loop {
        match writer.execute(pending).await {
            Ok((outcomes, _)) => return Ok(Some(outcomes)),
            Err(NotStored { error, envelopes }) if envelopes.is_empty() => return Err(IntakeError::Writer(error)),
            Err(NotStored { error, envelopes }) => {
                tracing::error!(error = %log_safe_error(&error), deliveries, "group not stored; holding it until the storage is back");
                if !wait_for_storage(storage, shutdown).await {
                    return Ok(None);
                }
                pending = envelopes;
            }
        }
    }
}

/// Waits a second, then until the writer can store again; false if shutdown came first.
pub(super) async fn wait_for_storage(storage: &Storage, shutdown: &mut watch::Receiver<bool>) -> bool {
    let mut wait = Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return false;
        }
        if storage.fault().is_none() {
            return true;
        }
        wait = Duration::from_millis(250);
    }
}
