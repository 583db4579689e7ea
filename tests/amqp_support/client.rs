//! A client of the command exchange for the transport's tests: publishes as one RabbitMQ user
//! and gathers the replies to its own reply queue (`Fixture::client`).

use super::wait_for;
use ansinh::command::CommandEnvelope;
use ansinh::outcome::Outcome;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An answer to poison: (the correlation id it came with, the `invalid` outcome).
pub type PoisonReply = (Option<String>, Outcome);

pub struct Client {
    pub user: String,
    pub(super) exchange: String,
    pub(super) channel: Channel,
    pub reply_queue: String,
    pub replies: Arc<Mutex<Vec<Outcome>>>,
    /// `invalid` outcomes (answers to poison), with the correlation id they came with.
    pub poison_replies: Arc<Mutex<Vec<PoisonReply>>>,
    pub(super) _conn: Connection,
}

impl Client {
    /// Publishes raw bytes to the command exchange, with `user_id` (or without: `None`), a
    /// reply queue and correlation id, and `headers`; waits for the broker's confirm.
    pub fn publish_raw(&self, rt: &tokio::runtime::Runtime, body: &[u8], correlation_id: &str, user_id: Option<&str>, headers: FieldTable) {
        self.publish_with(rt, body, correlation_id, user_id, headers, &self.reply_queue.clone())
    }

    /// `publish_raw` with another `reply_to` (empty: none).
    pub fn publish_with(&self, rt: &tokio::runtime::Runtime, body: &[u8], correlation_id: &str, user_id: Option<&str>, headers: FieldTable, reply_to: &str) {
        rt.block_on(async {
            let mut props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(correlation_id.into())
                .with_correlation_id(correlation_id.into())
                .with_headers(headers);
            if !reply_to.is_empty() {
                props = props.with_reply_to(reply_to.into());
            }
            if let Some(user) = user_id {
                props = props.with_user_id(user.into());
            }
            let confirm = self
                .channel
                .basic_publish(self.exchange.as_str().into(), "command".into(), BasicPublishOptions::default(), body, props)
                .await
                .expect("publish")
                .await
                .expect("confirm");
            assert!(confirm.is_ack(), "the broker refused a publish");
        })
    }

    /// Publishes commands as this client's user (confirms awaited per window of 500).
    pub fn send(&self, rt: &tokio::runtime::Runtime, envelopes: &[CommandEnvelope]) {
        rt.block_on(async {
            for chunk in envelopes.chunks(500) {
                let mut confirms = Vec::new();
                for e in chunk {
                    let body = serde_json::to_vec(e).expect("commands serialize");
                    let props = BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_user_id(self.user.as_str().into())
                        .with_reply_to(self.reply_queue.as_str().into())
                        .with_correlation_id(e.command_id.as_str().into());
                    confirms.push(
                        self.channel
                            .basic_publish(self.exchange.as_str().into(), "command".into(), BasicPublishOptions::default(), &body, props)
                            .await
                            .expect("publish"),
                    );
                }
                for c in confirms {
                    assert!(c.await.expect("confirm").is_ack(), "the broker refused a command");
                }
            }
        })
    }

    /// Waits until every id has at least one reply; returns all replies so far.
    pub fn wait_replies<'a>(&self, ids: impl IntoIterator<Item = &'a str>, timeout: Duration) -> Vec<Outcome> {
        let ids: Vec<&str> = ids.into_iter().collect();
        wait_for(timeout, &format!("replies to {} commands", ids.len()), || {
            let replies = self.replies.lock().expect("lock");
            ids.iter().all(|id| replies.iter().any(|o| o.command_id == *id))
        });
        self.replies.lock().expect("lock").clone()
    }

    /// Waits for the answer to the poison message published with `correlation_id`.
    pub fn poison_reply(&self, correlation_id: &str, timeout: Duration) -> Outcome {
        wait_for(timeout, &format!("the answer to poison {correlation_id}"), || {
            self.poison_replies.lock().expect("lock").iter().any(|(c, _)| c.as_deref() == Some(correlation_id))
        });
        let replies = self.poison_replies.lock().expect("lock");
        replies.iter().find(|(c, _)| c.as_deref() == Some(correlation_id)).map(|(_, o)| o.clone()).expect("waited for it")
    }

    /// The first reply to `id`.
    pub fn reply(&self, id: &str, timeout: Duration) -> Outcome {
        let replies = self.wait_replies([id], timeout);
        replies.into_iter().find(|o| o.command_id == id).expect("waited for it")
    }
}
