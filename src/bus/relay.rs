//! The outbox relay: reads the log from its own durable cursor, publishes each record to the
//! events exchange (persistent, with seq, id and type as properties), waits for the broker's
//! confirms, then advances the cursor. Consumers get every event at least once and dedupe by
//! seq or id; after a crash at most the last unconfirmed batch is published again.
//! Chain checkpoints (`audit::checkpoint`) go the same way to the checkpoint exchange, so
//! auditors can hold the head outside this machine.

use super::routing::routing_key;
use super::BusConfig;
use crate::log::{parse_event, LogReader};
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

const CURSOR_KEY: &[u8] = b"published_seq";
const CHECKPOINT_KEY: &[u8] = b"published_checkpoint";

/// The relay's cursors (events, checkpoints), in their own sled tree next to the log.
#[derive(Clone)]
pub struct Cursor {
    db: sled::Db,
    tree: sled::Tree,
}

impl Cursor {
    pub fn open(db: &sled::Db) -> sled::Result<Cursor> {
        Ok(Cursor { db: db.clone(), tree: db.open_tree("relay")? })
    }
    pub fn get(&self) -> sled::Result<u64> {
        self.read(CURSOR_KEY)
    }
    fn read(&self, key: &[u8]) -> sled::Result<u64> {
        Ok(self.tree.get(key)?.and_then(|b| b.as_ref().try_into().ok().map(u64::from_be_bytes)).unwrap_or(0))
    }
    fn set(&self, key: &[u8], seq: u64) -> sled::Result<()> {
        self.tree.insert(key, &seq.to_be_bytes())?;
        self.tree.flush()?;
        Ok(())
    }
}

pub struct Relay<'a> {
    pub config: &'a BusConfig,
    /// Confirm-mode channel of its own.
    pub channel: &'a Channel,
    pub log: LogReader,
    pub cursor: Cursor,
    pub appended: Arc<Notify>,
    /// Called with the cursor after each confirmed batch (metrics: relay lag).
    pub on_published: &'a (dyn Fn(u64) + Send + Sync),
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("relay storage: {0}")]
    Storage(String),
    #[error("the broker refused (nacked) event seq {0}")]
    Nacked(u64),
}

impl Relay<'_> {
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), RelayError> {
        let storage = |e: &dyn std::fmt::Display| RelayError::Storage(e.to_string());
        loop {
            let cursor = self.cursor.get().map_err(|e| storage(&e))?;
            let head = self.log.head().map_err(|e| storage(&e))?.seq;
            if cursor >= head {
                if *shutdown.borrow() {
                    return Ok(());
                }
                tokio::select! {
                    _ = self.appended.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(self.config.relay_poll_ms)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let to = head.min(cursor + self.config.relay_batch_max as u64);
            let mut confirms = Vec::with_capacity((to - cursor) as usize);
            for item in self.log.range(cursor + 1, to) {
                let (seq, bytes) = item.map_err(|e| storage(&e))?;
                let event = parse_event(seq, &bytes).map_err(|e| storage(&e))?;
                let mut headers = FieldTable::default();
                headers.insert("x-seq".into(), AMQPValue::LongLongInt(i64::try_from(seq).unwrap_or(i64::MAX)));
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(event.id.as_str().into())
                    .with_type(event.data.type_name().into())
                    .with_headers(headers);
                let confirm = self
                    .channel
                    .basic_publish(
                        self.config.events_exchange().as_str().into(),
                        routing_key(&event).as_str().into(),
                        BasicPublishOptions::default(),
                        &bytes,
                        props,
                    )
                    .await?;
                confirms.push((seq, confirm));
            }
            for (seq, confirm) in confirms {
                if confirm.await?.is_nack() {
                    return Err(RelayError::Nacked(seq));
                }
            }
            self.cursor.set(CURSOR_KEY, to).map_err(|e| storage(&e))?;
            (self.on_published)(to);
            self.publish_checkpoints(to).await?;
        }
    }

    /// Publishes the checkpoints recorded up to the published seq and not yet sent.
    async fn publish_checkpoints(&self, published: u64) -> Result<(), RelayError> {
        let storage = |e: &dyn std::fmt::Display| RelayError::Storage(e.to_string());
        let last = self.cursor.read(CHECKPOINT_KEY).map_err(|e| storage(&e))?;
        let pending = crate::audit::checkpoint::checkpoints_since(&self.cursor.db, last).map_err(|e| storage(&e))?;
        for checkpoint in pending.into_iter().filter(|c| c.seq <= published) {
            let body = serde_json::to_vec(&checkpoint).expect("checkpoints serialize");
            let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into()).with_type("chain.checkpoint".into());
            let confirm =
                self.channel.basic_publish(self.config.checkpoint_exchange().as_str().into(), "".into(), BasicPublishOptions::default(), &body, props).await?;
            if confirm.await?.is_nack() {
                return Err(RelayError::Nacked(checkpoint.seq));
            }
            self.cursor.set(CHECKPOINT_KEY, checkpoint.seq).map_err(|e| storage(&e))?;
            tracing::info!(seq = checkpoint.seq, hash = %checkpoint.hash, "chain checkpoint published");
        }
        Ok(())
    }
}
