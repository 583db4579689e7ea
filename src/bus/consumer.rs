//! The intake: consumes the command queue with manual acks and a bounded prefetch, groups the
//! deliveries that are ready into one engine group, and acknowledges them only after the group
//! is durable. Poison input goes to the dead-letter exchange with its reason (after the broker
//! confirmed it), never back to the queue. Replies go to `reply_to` with the `correlation_id`.

use super::writer::Writer;
use super::BusConfig;
use crate::command::CommandEnvelope;
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
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> lapin::Result<()> {
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
            self.process(group).await?;
            if *shutdown.borrow() {
                return Ok(());
            }
        }
    }

    async fn process(&self, group: Vec<Delivery>) -> lapin::Result<()> {
        let last_tag = group.last().map(|d| d.delivery_tag).expect("a group has at least one delivery");
        let mut commands = Vec::with_capacity(group.len());
        let mut sources = Vec::with_capacity(group.len());
        let mut dead = Vec::new();
        let mut poison_tags = Vec::new();
        for delivery in &group {
            match poison_reason(delivery) {
                Ok(envelope) => {
                    commands.push(envelope);
                    sources.push(delivery);
                }
                Err((reason, detail)) => {
                    dead.push(self.dead_letter(delivery, reason, &detail).await?);
                    poison_tags.push(delivery.delivery_tag);
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
            match self.writer.execute(commands).await {
                Ok((outcomes, _)) => {
                    for (delivery, outcome) in sources.iter().zip(&outcomes) {
                        self.reply(delivery, outcome).await?;
                    }
                }
                Err(e) => {
                    // Nothing was stored: give the commands back to the queue and back off. The
                    // poison is already dead-lettered: acknowledge it, or every retry would
                    // dead-letter it again.
                    tracing::error!(error = %e, deliveries = group.len(), "group failed; requeueing");
                    if poison_tags.is_empty() {
                        self.consume.basic_nack(last_tag, BasicNackOptions { multiple: true, requeue: true }).await?;
                    } else {
                        for delivery in &group {
                            if poison_tags.contains(&delivery.delivery_tag) {
                                self.consume.basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: false }).await?;
                            } else {
                                self.consume.basic_nack(delivery.delivery_tag, BasicNackOptions { multiple: false, requeue: true }).await?;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Ok(());
                }
            }
        }
        // One ack covers the whole group: every earlier delivery was settled by an earlier group.
        self.consume.basic_ack(last_tag, BasicAckOptions { multiple: true }).await?;
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str, detail: &str) -> lapin::Result<lapin::PublisherConfirm> {
        tracing::warn!(reason, detail = %detail.chars().take(200).collect::<String>(), "dead-lettering poison message");
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
