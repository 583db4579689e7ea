//! The isolated queue: commands the command queue gave back too often, decided one at a time.
//!
//! RabbitMQ 3.x quorum queues count every return of a delivery (serve crashed or was killed with
//! it in hand, its channel or connection closed, the broker's `consumer_timeout`) and past
//! `x-delivery-limit` (`bus.delivery_limit`) dead-letter it. Serve holds up to `bus.prefetch`
//! deliveries at once, so a few crashes or broker hiccups in a row carry good commands past the
//! limit, none of them at fault. The command queue therefore dead-letters (at least once) not to
//! the dead-letter queue but to `<prefix>.isolation` -> `<prefix>.isolated`, which serve also
//! takes from, here: one delivery at a time (`basic.get`, only while the writer can store, so
//! nothing waits in hand for a fault to clear), decided as a group of its own. A command that
//! arrives here is decided like any other; it only waits its turn.
//!
//! The last-resort bound: on this queue a return means serve lost the delivery while deciding it
//! alone, the signature of a message that crashes the engine. Once the isolated queue has given
//! one back `bus.isolated_attempts_max` times, the engine dead-letters it with reason
//! `attempts_exhausted` (and answers `invalid`) instead of trying again. The queue's own
//! `x-delivery-limit` (`isolated_attempts_max` + 2, dead-lettering to the dead-letter exchange)
//! backs that up should serve die before it even reads the delivery.

use super::consumer::{dead_letter_confirmed, execute_holding, IntakeError, IntakeObserver};
use super::delivery::{decode, poison_outcome, returns, Poison, Responder};
use super::storage::Storage;
use super::writer::Writer;
use super::BusConfig;
use crate::domain::citizen_id::log_safe;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::Channel;
use std::time::Duration;
use tokio::sync::watch;

/// How often the isolated queue is polled while it is empty (it nearly always is).
pub const POLL_MS: u64 = 500;

/// The broker's own bound on the isolated queue, above the engine's.
pub fn broker_delivery_limit(config: &BusConfig) -> u32 {
    config.isolated_attempts_max.saturating_add(2)
}

pub struct Isolated<'a> {
    pub config: &'a BusConfig,
    /// A confirm-mode channel of its own: `basic.get`, acks, dead letters and replies.
    pub channel: &'a Channel,
    pub writer: &'a Writer,
    pub storage: &'a Storage,
    pub observer: &'a dyn IntakeObserver,
}

impl Isolated<'_> {
    /// Runs until `shutdown` (Ok, after the delivery in hand) or a broker error.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), IntakeError> {
        let queue = self.config.isolated_queue();
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            let message =
                if self.storage.fault().is_some() { None } else { self.channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false }).await? };
            match message {
                Some(m) => self.handle(&m.delivery, &queue, &mut shutdown).await?,
                None => {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(POLL_MS)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    async fn handle(&self, delivery: &Delivery, queue: &str, shutdown: &mut watch::Receiver<bool>) -> Result<(), IntakeError> {
        self.observer.isolated();
        let responder = Responder { config: self.config, channel: self.channel, observer: self.observer };
        let lost = returns(delivery);
        let command_id = delivery.properties.message_id().as_ref().map(|m| log_safe(m.as_str())).unwrap_or_default();
        tracing::warn!(command_id = %command_id, lost, "deciding a command from the isolated queue on its own");
        let decoded = if lost >= u64::from(self.config.isolated_attempts_max) {
            Err(Poison {
                reason: "attempts_exhausted",
                detail: format!(
                    "serve lost this message {lost} times while deciding it alone (after the command queue had given it back more than \
                     {} times): it may crash the engine, so it is set aside undecided by this delivery; if an earlier delivery was \
                     decided, sending the command again with the same command_id returns that outcome",
                    self.config.delivery_limit
                ),
            })
        } else {
            decode(delivery)
        };
        match decoded {
            Err(why) => {
                let item = [(delivery, why)];
                if !dead_letter_confirmed(&responder, queue, Some(lost), &item, shutdown).await? {
                    return Ok(());
                }
                responder.reply(delivery, &poison_outcome(delivery, &item[0].1)).await?;
            }
            Ok(envelope) => {
                let Some(outcomes) = execute_holding(self.writer, self.storage, vec![envelope], 1, shutdown).await? else { return Ok(()) };
                let outcome = outcomes.first().expect("one outcome per command");
                responder.reply(delivery, outcome).await?;
            }
        }
        self.channel.basic_ack(delivery.delivery_tag, BasicAckOptions { multiple: false }).await?;
        Ok(())
    }
}
