//! The intake: consumes the command queue with manual acks and a bounded prefetch, groups the
//! deliveries that are ready into one engine group, and acknowledges them only after the group
//! is durable. Poison input goes to the dead-letter exchange with its reason (after the broker
//! confirmed it), never back to the queue. Replies go to `reply_to` with the `correlation_id`.
//! A group the writer could not store (a storage fault) stays in hand, unacknowledged, and is
//! tried again once the writer has reopened the data dir: a nack would make the broker count a
//! delivery against `bus.delivery_limit` each time, and dead-letter good commands after a few
//! seconds of a full disk.

use super::storage::Storage;
use super::writer::{NotStored, Writer};
use super::BusConfig;
use crate::command::CommandEnvelope;
use crate::domain::citizen_id::{log_safe, log_safe_error};
use crate::engine::check_envelope;
use crate::intake::{decode_command, DecodeError};
use crate::outcome::Outcome;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// The writer is gone (its thread stopped): the group in hand goes back to the queue.
    #[error("{0}")]
    Writer(String),
}

/// Counters the consumer reports (metrics hook).
pub trait IntakeObserver: Send + Sync {
    fn dead_lettered(&self, reason: &str);
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

/// Why this message is poison: a decode error or a bad envelope.
fn poison_reason(delivery: &Delivery) -> Result<CommandEnvelope, (&'static str, String)> {
    let mut envelope = decode_command(&delivery.data).map_err(|e: DecodeError| (e.reason(), e.to_string()))?;
    check_envelope(&envelope).map_err(|why| ("envelope_invalid", why))?;
    // The sender is who the broker says published it, never what the body claims.
    envelope.sender = delivery.properties.user_id().as_ref().map(|u| u.as_str().to_string());
    Ok(envelope)
}

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
            let deadline = tokio::time::Instant::now() + wait;
            let mut group = vec![first];
            while group.len() < self.group_max {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(Some(d)) => group.push(d?),
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
        let mut commands = Vec::with_capacity(group.len());
        let mut sources = Vec::with_capacity(group.len());
        let mut dead = Vec::new();
        for delivery in &group {
            match poison_reason(delivery) {
                Ok(envelope) => {
                    commands.push(envelope);
                    sources.push(delivery);
                }
                Err((reason, detail)) => {
                    dead.push(self.dead_letter(delivery, reason, &detail).await?);
                }
            }
        }
        // Dead letters are safe at the broker before their originals are acknowledged. One the
        // broker refused (nack) is not safe: give the whole group back, undecided, and retry.
        let mut refused = false;
        for confirm in dead {
            refused |= confirm.await?.is_nack();
        }
        if refused {
            tracing::error!(deliveries = group.len(), "the broker refused a dead letter; requeueing the group");
            self.consume.basic_nack(last_tag, BasicNackOptions { multiple: true, requeue: true }).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        if !commands.is_empty() {
            let mut pending = commands;
            let outcomes = loop {
                match self.writer.execute(pending).await {
                    Ok((outcomes, _)) => break outcomes,
                    Err(NotStored { error, envelopes }) if envelopes.is_empty() => return Err(IntakeError::Writer(error)),
                    Err(NotStored { error, envelopes }) => {
                        // Nothing of it is acknowledged (and if the group was stored after all,
                        // the retry is answered from the command index): hold it and try again
                        // once the storage is back, at most once a second.
                        tracing::error!(error = %log_safe_error(&error), deliveries = group.len(), "group not stored; holding it until the storage is back");
                        if !self.wait_for_storage(shutdown).await {
                            // Shutting down: the deliveries go back to the queue with the connection.
                            return Ok(());
                        }
                        pending = envelopes;
                    }
                }
            };
            for (delivery, outcome) in sources.iter().zip(&outcomes) {
                self.reply(delivery, outcome).await?;
            }
        }
        // One ack covers the whole group: every earlier delivery was settled by an earlier group.
        self.consume.basic_ack(last_tag, BasicAckOptions { multiple: true }).await?;
        Ok(())
    }

    /// Waits a second, then until the writer can store again; false if shutdown came first.
    async fn wait_for_storage(&self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let mut wait = Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return false;
            }
            if self.storage.fault().is_none() {
                return true;
            }
            wait = Duration::from_millis(250);
        }
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str, detail: &str) -> lapin::Result<lapin::PublisherConfirm> {
        tracing::warn!(reason, detail = %log_safe(detail), "dead-lettering poison message");
        self.observer.dead_lettered(reason);
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert("x-ansinh-reason".into(), AMQPValue::LongString(reason.into()));
        headers.insert("x-ansinh-detail".into(), AMQPValue::LongString(detail.chars().take(1_000).collect::<String>().as_str().into()));
        if let Some(user) = delivery.properties.user_id() {
            headers.insert("x-ansinh-user".into(), AMQPValue::LongString(user.as_str().into()));
        }
        let props = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
        self.publish.basic_publish(self.config.dead_letter_exchange().as_str().into(), "".into(), BasicPublishOptions::default(), &delivery.data, props).await
    }

    async fn reply(&self, delivery: &Delivery, outcome: &Outcome) -> lapin::Result<()> {
        let Some(reply_to) = delivery.properties.reply_to() else { return Ok(()) };
        let body = serde_json::to_vec(outcome).expect("outcomes serialize");
        let mut props = BasicProperties::default().with_content_type("application/json".into()).with_type("outcome".into());
        if let Some(id) = delivery.properties.correlation_id() {
            props = props.with_correlation_id(id.clone());
        }
        // Replies are not awaited for confirmation: a lost reply costs the sender a retry,
        // which the command index answers with the same outcome.
        drop(self.publish.basic_publish("".into(), reply_to.clone(), BasicPublishOptions::default(), &body, props).await?);
        Ok(())
    }
}
