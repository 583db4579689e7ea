//! What the intake does with one delivery besides deciding it: decode it (or say why it is
//! poison), answer its sender, and dead-letter it. Shared by the command queue's intake
//! (`consumer.rs`) and the isolated queue's (`isolated.rs`).
//!
//! Three rules hold here, each against a sender that is not trusted:
//!
//! - **Identity comes from the broker, never from a header.** The sender is the AMQP `user_id`
//!   property, which RabbitMQ refuses unless it names the connection's user. Headers are
//!   whatever the publisher wrote.
//! - **Replies go to reply queues only** ([`reply_queue`]): a server-named queue (`amq.gen-*`)
//!   or direct reply-to (`amq.rabbitmq.reply-to*`). Any other `reply_to` (a bank's instruction
//!   queue, say) would make the engine a confused deputy that publishes into a queue the sender
//!   may not write: the command is decided as usual, but no reply is sent, and the refusal is
//!   counted and logged (masked).
//! - **A dead letter is the engine's own message.** It keeps the original body and the
//!   publisher's headers except those only the engine or the broker may set (`x-ansinh-*`,
//!   `x-death`, `x-first-death-*`, `x-last-death-*`, `x-delivery-count`), which are dropped, so a
//!   forged `x-ansinh-user` or `x-ansinh-reason` cannot survive into the dead-letter queue; then
//!   the engine adds its own `x-ansinh-*` headers. `message_id` and `correlation_id` are kept as
//!   properties; the broker-validated `user_id` goes into `x-ansinh-user` (the engine's
//!   connection may not publish another user's `user_id`).

use super::BusConfig;
use crate::command::CommandEnvelope;
use crate::domain::citizen_id::log_safe;
use crate::engine::check_envelope;
use crate::intake::{decode_command, DecodeError, COMMAND_BYTES_MAX};
use crate::outcome::Outcome;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};

/// Prefix of the queues RabbitMQ names itself (`queue.declare` with an empty name). A client
/// cannot declare a queue under `amq.`: such a queue was made by the broker for whoever asked.
pub const SERVER_NAMED_QUEUE_PREFIX: &str = "amq.gen-";
/// Direct reply-to: the pseudo-queue a client consumes, and the prefix of the address the broker
/// rewrites it to before delivery (`amq.rabbitmq.reply-to.<encoded channel>`).
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Headers a publisher may not set on a dead letter: the engine's own, and the broker's
/// dead-lettering and redelivery headers (a dead letter is a new message the engine publishes).
pub fn is_reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("x-ansinh-") || name == "x-death" || name.starts_with("x-first-death-") || name.starts_with("x-last-death-") || name == "x-delivery-count"
}

/// Where the engine may answer a delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum ReplyTo {
    /// A reply queue: answer there.
    Queue(ShortString),
    /// No `reply_to`: the sender does not want an answer.
    Absent,
    /// A `reply_to` that is not a reply queue: no answer (the value, for the log).
    Refused(String),
}

/// The reply policy: server-named queues and direct reply-to only.
pub fn reply_queue(properties: &BasicProperties) -> ReplyTo {
    let Some(reply_to) = properties.reply_to() else { return ReplyTo::Absent };
    let name = reply_to.as_str();
    let server_named = name.len() > SERVER_NAMED_QUEUE_PREFIX.len() && name.starts_with(SERVER_NAMED_QUEUE_PREFIX);
    let direct = name == DIRECT_REPLY_TO || name.strip_prefix(DIRECT_REPLY_TO).is_some_and(|rest| rest.starts_with('.'));
    if server_named || direct {
        ReplyTo::Queue(reply_to.clone())
    } else {
        ReplyTo::Refused(name.to_string())
    }
}

/// Why a delivery is not a command: a stable reason (`x-ansinh-reason`, the outcome's `code`)
/// and a detail for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poison {
    pub reason: &'static str,
    pub detail: String,
}

/// The command a delivery carries, with its sender set from the broker-validated `user_id`, or
/// why it is poison (a decode error or a bad envelope).
pub fn decode(delivery: &Delivery) -> Result<CommandEnvelope, Poison> {
    let mut envelope = decode_command(&delivery.data).map_err(|e: DecodeError| Poison { reason: e.reason(), detail: e.to_string() })?;
    check_envelope(&envelope).map_err(|detail| Poison { reason: "envelope_invalid", detail })?;
    // The sender is who the broker says published it, never what the body or a header claims.
    envelope.sender = delivery.properties.user_id().as_ref().map(|u| u.as_str().to_string());
    Ok(envelope)
}

/// How many times the broker has given this delivery back to its queue (quorum queues count
/// every return: a crash, a closed channel or connection, a requeue): `x-delivery-count`. Read
/// it only from a `basic.get` of a quorum queue, which sets the header itself on every delivery
/// (measured on RabbitMQ 3.10: a publisher's forged `x-delivery-count` is replaced there, but
/// reaches a `basic.consume` consumer as published on a first delivery). 0 on a classic queue.
pub fn returns(delivery: &Delivery) -> u64 {
    let count = delivery.properties.headers().as_ref().and_then(|h| h.inner().get("x-delivery-count").cloned());
    match count {
        Some(AMQPValue::LongLongInt(n)) => u64::try_from(n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u64::try_from(n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => u64::from(n),
        Some(AMQPValue::ShortInt(n)) => u64::try_from(n).unwrap_or(0),
        _ => 0,
    }
}

/// The `invalid` outcome a poison message's sender gets: `code` is the dead-letter reason.
/// `command_id` and `command_type` come from the body when it is a JSON object that has them as
/// strings, else `command_id` is the message id (or empty): the reply's `correlation_id` is what
/// the sender matches it by.
pub fn poison_outcome(delivery: &Delivery, poison: &Poison) -> Outcome {
    let body = (delivery.data.len() <= COMMAND_BYTES_MAX).then(|| serde_json::from_slice::<serde_json::Value>(&delivery.data).ok()).flatten();
    let field = |name: &str| body.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(str::to_string);
    let message_id = delivery.properties.message_id().as_ref().map(|m| m.to_string());
    let command_id = field("command_id").or(message_id).unwrap_or_default();
    let command_type = field("type").unwrap_or_default();
    Outcome::poison(&command_id, &command_type, poison.reason, &poison.detail)
}

/// Publishes dead letters and replies on a confirm-mode channel.
pub struct Responder<'a> {
    pub config: &'a BusConfig,
    pub channel: &'a Channel,
    pub observer: &'a dyn super::consumer::IntakeObserver,
}

impl Responder<'_> {
    /// Publishes the dead letter of `delivery` (consumed from `queue`) to the dead-letter exchange;
    /// await the returned confirm before acknowledging the original.
    /// `returns`: how often the queue gave it back, where that is known (see [`returns`]).
    pub async fn dead_letter(&self, delivery: &Delivery, queue: &str, returns: Option<u64>, poison: &Poison) -> lapin::Result<lapin::PublisherConfirm> {
        tracing::warn!(
            reason = poison.reason,
            queue,
            command_id = %log_safe(delivery.properties.message_id().as_ref().map(|m| m.as_str()).unwrap_or("")),
            detail = %log_safe(&poison.detail),
            "dead-lettering"
        );
        self.observer.dead_lettered(poison.reason);
        let props = dead_letter_properties(delivery, queue, returns, poison);
        self.channel.basic_publish(self.config.dead_letter_exchange().as_str().into(), "".into(), BasicPublishOptions::default(), &delivery.data, props).await
    }

    /// Sends `outcome` to the delivery's reply queue, with its `correlation_id`, if it has an
    /// allowed one (see [`reply_queue`]). Replies are not awaited for confirmation: a lost reply
    /// costs the sender a retry, which the command index answers with the same outcome.
    pub async fn reply(&self, delivery: &Delivery, outcome: &Outcome) -> lapin::Result<()> {
        let queue = match reply_queue(&delivery.properties) {
            ReplyTo::Queue(q) => q,
            ReplyTo::Absent => return Ok(()),
            ReplyTo::Refused(to) => {
                self.observer.reply_refused();
                tracing::warn!(
                    reply_to = %log_safe(&to),
                    command_id = %log_safe(&outcome.command_id),
                    user = %log_safe(delivery.properties.user_id().as_ref().map(|u| u.as_str()).unwrap_or("")),
                    "reply_to is not a reply queue (amq.gen-* or amq.rabbitmq.reply-to): decided, not answered"
                );
                return Ok(());
            }
        };
        let body = serde_json::to_vec(outcome).expect("outcomes serialize");
        // `app_id`: the engine's bus prefix, so that a sender of a command every shard decides
        // (routed `all`) tells the shards' replies apart (`cli::publish`).
        let mut props =
            BasicProperties::default().with_content_type("application/json".into()).with_type("outcome".into()).with_app_id(self.config.prefix.as_str().into());
        if let Some(id) = delivery.properties.correlation_id() {
            props = props.with_correlation_id(id.clone());
        }
        drop(self.channel.basic_publish("".into(), queue, BasicPublishOptions::default(), &body, props).await?);
        Ok(())
    }
}

/// Longest `x-ansinh-detail`, in characters.
pub const DETAIL_CHARS_MAX: usize = 1_000;

/// The dead letter's properties: persistent; the publisher's headers without the reserved ones,
/// plus the engine's (`x-ansinh-reason`, `-detail`, `-queue`, `-user` when the message had a
/// `user_id`, `-returns` when known); message id, correlation id, type, content type and
/// encoding, app id and timestamp kept.
pub fn dead_letter_properties(delivery: &Delivery, queue: &str, returns: Option<u64>, poison: &Poison) -> BasicProperties {
    let original = &delivery.properties;
    let mut headers = FieldTable::default();
    if let Some(h) = original.headers() {
        for (name, value) in h.inner() {
            if !is_reserved_header(name.as_str()) {
                headers.insert(name.clone(), value.clone());
            }
        }
    }
    let text = |s: &str| AMQPValue::LongString(s.into());
    headers.insert("x-ansinh-reason".into(), text(poison.reason));
    headers.insert("x-ansinh-detail".into(), text(&poison.detail.chars().take(DETAIL_CHARS_MAX).collect::<String>()));
    headers.insert("x-ansinh-queue".into(), text(queue));
    if let Some(n) = returns {
        headers.insert("x-ansinh-returns".into(), AMQPValue::LongLongInt(i64::try_from(n).unwrap_or(i64::MAX)));
    }
    if let Some(user) = original.user_id() {
        headers.insert("x-ansinh-user".into(), text(user.as_str()));
    }
    let mut props = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    if let Some(v) = original.message_id() {
        props = props.with_message_id(v.clone());
    }
    if let Some(v) = original.correlation_id() {
        props = props.with_correlation_id(v.clone());
    }
    if let Some(v) = original.content_type() {
        props = props.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        props = props.with_content_encoding(v.clone());
    }
    if let Some(v) = original.kind() {
        props = props.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        props = props.with_app_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        props = props.with_timestamp(*v);
    }
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_reply_to(to: &str) -> BasicProperties {
        BasicProperties::default().with_reply_to(to.into())
    }

    #[test]
    fn replies_go_to_reply_queues_only() {
        for ok in ["amq.gen-JzTY20BRgKO-HjmUJj0wLg", "amq.rabbitmq.reply-to", "amq.rabbitmq.reply-to.g2dkABNyYWJiaXRAbG9jYWxob3N0AAAAAA=="] {
            assert_eq!(reply_queue(&with_reply_to(ok)), ReplyTo::Queue(ok.into()), "{ok}");
        }
        for refused in ["ansinh.bank.970436", "ansinh.commands", "amq.gen-", "amq.rabbitmq.reply-tox", "amq.direct", "", "AMQ.GEN-x"] {
            assert_eq!(reply_queue(&with_reply_to(refused)), ReplyTo::Refused(refused.into()), "{refused}");
        }
        assert_eq!(reply_queue(&BasicProperties::default()), ReplyTo::Absent);
    }

    #[test]
    fn reserved_headers_are_the_engines_and_the_brokers() {
        for name in ["x-ansinh-user", "X-Ansinh-Reason", "x-ansinh-anything", "x-death", "x-first-death-reason", "x-last-death-queue", "x-delivery-count"] {
            assert!(is_reserved_header(name), "{name}");
        }
        for name in ["x-test-case", "x-ansinh", "traceparent", "x-deathly"] {
            assert!(!is_reserved_header(name), "{name}");
        }
    }
}
