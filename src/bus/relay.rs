//! The outbox relay: reads the log from its own durable cursor, publishes each record to the
//! events exchange (persistent, with seq, id and type as properties), waits for the broker's
//! confirms, then advances the cursor. Consumers get every event at least once and dedupe by
//! seq or id; after a crash at most the last unconfirmed batch is published again.
//! Chain checkpoints (`audit::checkpoint`) go the same way to the checkpoint exchange, so
//! auditors can hold the head outside this machine.
//!
//! It publishes nothing past the durable head ([`Storage::durable_seq`]): a group's records are
//! visible in the log before its flush returns, and one whose flush failed may be absent after
//! the data dir is reopened. It reads its storage through the [`Storage`] slot, holding handles
//! only for one read or write, never while it waits on the broker; a storage error is reported
//! to the writer (which reopens the data dir) and waited out, not taken for a broker failure.

use super::storage::{Handles, Storage};
use super::BusConfig;
use crate::domain::citizen_id::log_safe_error;
use crate::log::segment::{RecordBytes, RecordMeta};
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
    pub storage: Storage,
    pub appended: Arc<Notify>,
    /// Called with the cursor after each confirmed batch (metrics: relay lag).
    pub on_published: &'a (dyn Fn(u64) + Send + Sync),
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nacked) event seq {0}")]
    Nacked(u64),
}

/// A batch read from the log: (seq, stored bytes, index entry). The record is not parsed: its
/// type, id and routing key come from its segment's index (`log::segment`).
type Batch = Vec<(u64, RecordBytes, RecordMeta)>;

impl Relay<'_> {
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), RelayError> {
        let batch_max = self.config.relay_batch_max as u64;
        loop {
            let durable = self.storage.durable_seq();
            let read = self
                .with_storage(&mut shutdown, |h| {
                    let cursor = h.cursor.get().map_err(|e| e.to_string())?;
                    if cursor >= durable {
                        return Ok((cursor, Batch::new()));
                    }
                    let to = durable.min(cursor + batch_max);
                    let mut batch = Batch::with_capacity((to - cursor) as usize);
                    for item in h.log.range_with_meta(cursor + 1, to) {
                        batch.push(item.map_err(|e| e.to_string())?);
                    }
                    if batch.len() as u64 != to - cursor {
                        return Err(format!("the log holds {} of the records {}..={to}", batch.len(), cursor + 1));
                    }
                    Ok((cursor, batch))
                })
                .await;
            let Some((cursor, batch)) = read else { return Ok(()) };
            let Some(to) = batch.last().map(|(seq, _, _)| *seq) else {
                if *shutdown.borrow() {
                    return Ok(());
                }
                tokio::select! {
                    _ = self.appended.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(self.config.relay_poll_ms)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            };
            debug_assert_eq!(batch[0].0, cursor + 1);
            let mut confirms = Vec::with_capacity(batch.len());
            for (seq, bytes, meta) in &batch {
                let mut headers = FieldTable::default();
                headers.insert("x-seq".into(), AMQPValue::LongLongInt(i64::try_from(*seq).unwrap_or(i64::MAX)));
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into())
                    .with_message_id(meta.id.as_str().into())
                    .with_type(meta.type_name().unwrap_or("unknown").into())
                    .with_headers(headers);
                let confirm = self
                    .channel
                    .basic_publish(
                        self.config.events_exchange().as_str().into(),
                        meta.routing_key().as_str().into(),
                        BasicPublishOptions::default(),
                        bytes,
                        props,
                    )
                    .await?;
                confirms.push((*seq, confirm));
            }
            drop(batch);
            for (seq, confirm) in confirms {
                if confirm.await?.is_nack() {
                    return Err(RelayError::Nacked(seq));
                }
            }
            if self.with_storage(&mut shutdown, |h| h.cursor.set(CURSOR_KEY, to).map_err(|e| e.to_string())).await.is_none() {
                return Ok(());
            }
            (self.on_published)(to);
            self.publish_checkpoints(to, &mut shutdown).await?;
        }
    }

    /// Runs one storage operation on the current handles, then lets go of them. While the data
    /// dir is being reopened it waits; a storage error is reported to the writer and the
    /// operation tried again on the reopened data dir. `None`: shutdown came first.
    async fn with_storage<T>(&self, shutdown: &mut watch::Receiver<bool>, op: impl Fn(&Handles) -> Result<T, String>) -> Option<T> {
        loop {
            if let Some(handles) = self.storage.current() {
                match op(&handles) {
                    Ok(t) => return Some(t),
                    Err(e) => {
                        tracing::warn!(error = %log_safe_error(&e), "relay storage error; waiting for the writer to reopen the data dir");
                        self.storage.report(handles.generation, &e);
                    }
                }
            }
            if *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(self.config.relay_poll_ms.max(100))) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Publishes the checkpoints recorded up to the published seq and not yet sent.
    async fn publish_checkpoints(&self, published: u64, shutdown: &mut watch::Receiver<bool>) -> Result<(), RelayError> {
        let pending = self
            .with_storage(shutdown, |h| {
                let last = h.cursor.read(CHECKPOINT_KEY).map_err(|e| e.to_string())?;
                crate::audit::checkpoint::checkpoints_since(&h.cursor.db, last).map_err(|e| e.to_string())
            })
            .await;
        for checkpoint in pending.unwrap_or_default().into_iter().filter(|c| c.seq <= published) {
            let body = serde_json::to_vec(&checkpoint).expect("checkpoints serialize");
            let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into()).with_type("chain.checkpoint".into());
            let confirm =
                self.channel.basic_publish(self.config.checkpoint_exchange().as_str().into(), "".into(), BasicPublishOptions::default(), &body, props).await?;
            if confirm.await?.is_nack() {
                return Err(RelayError::Nacked(checkpoint.seq));
            }
            if self.with_storage(shutdown, |h| h.cursor.set(CHECKPOINT_KEY, checkpoint.seq).map_err(|e| e.to_string())).await.is_none() {
                return Ok(());
            }
            tracing::info!(seq = checkpoint.seq, hash = %checkpoint.hash, "chain checkpoint published");
        }
        Ok(())
    }
}
