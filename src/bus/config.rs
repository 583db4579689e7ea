//! `[bus]` in config/ansinh.toml: the broker, the topology names, the bounds, and who may send
//! what (RabbitMQ user -> role).

use crate::core::authz::{Role, Roles};
use serde::Deserialize;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// The engine's own connection (its user must be allowed to declare the topology).
    pub amqp_url: String,
    /// Prefix of every exchange and queue name (`<prefix>.commands`, `<prefix>.events`, ...).
    pub prefix: String,
    /// Type of the command queue: "quorum" (replicated, survives a node loss) or "classic".
    pub queue_type: String,
    /// Most unacknowledged deliveries the broker sends the engine at once.
    pub prefetch: u16,
    /// After this many returns (a crash, a closed connection) the command queue moves a message
    /// to the isolated queue, where it is decided on its own (quorum queues only; `isolated.rs`).
    pub delivery_limit: u32,
    /// The last-resort bound: a message the isolated queue gave back this many times (serve lost
    /// it while deciding it alone) is dead-lettered as `attempts_exhausted`, not tried again.
    pub isolated_attempts_max: u32,
    /// How long to wait for more deliveries to fill a group once one has arrived.
    pub group_wait_ms: u64,
    /// Most records the outbox relay publishes before waiting for their confirms.
    pub relay_batch_max: usize,
    /// How often the relay looks at the log head when nothing woke it.
    pub relay_poll_ms: u64,
    /// Reconnection backoff doubles from 100 ms up to this.
    pub reconnect_backoff_max_ms: u64,
    /// RabbitMQ users and their roles.
    pub users: Vec<UserRole>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct UserRole {
    pub name: String,
    #[serde(flatten)]
    pub role: Role,
}

impl Default for BusConfig {
    fn default() -> BusConfig {
        BusConfig {
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefix: "ansinh".into(),
            queue_type: "quorum".into(),
            prefetch: 1_000,
            delivery_limit: 5,
            isolated_attempts_max: 3,
            group_wait_ms: 5,
            relay_batch_max: 2_000,
            relay_poll_ms: 200,
            reconnect_backoff_max_ms: 3_000,
            users: Vec::new(),
        }
    }
}

impl BusConfig {
    pub fn roles(&self) -> Roles {
        Roles(self.users.iter().map(|u| (u.name.clone(), u.role.clone())).collect())
    }
    pub fn commands_exchange(&self) -> String {
        format!("{}.commands", self.prefix)
    }
    pub fn commands_queue(&self) -> String {
        format!("{}.commands", self.prefix)
    }
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }
    /// Where the command queue dead-letters what it gave back more than `delivery_limit` times.
    pub fn isolation_exchange(&self) -> String {
        format!("{}.isolation", self.prefix)
    }
    pub fn isolated_queue(&self) -> String {
        format!("{}.isolated", self.prefix)
    }
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }
    pub fn checkpoint_exchange(&self) -> String {
        format!("{}.checkpoints", self.prefix)
    }
    pub fn bank_queue(&self, bin: &str) -> String {
        format!("{}.bank.{bin}", self.prefix)
    }

    /// Every queue and exchange the engine declares under its prefix: (queues, exchanges), for
    /// whoever must delete a prefix's topology (tests, benchmarks, an operator's script).
    pub fn topology_names(&self) -> (Vec<String>, Vec<String>) {
        let mut queues = vec![self.commands_queue(), self.isolated_queue(), self.dead_letter_queue()];
        queues.extend(crate::domain::reference::bank_bins().map(|bin| self.bank_queue(bin)));
        let exchanges =
            vec![self.commands_exchange(), self.events_exchange(), self.isolation_exchange(), self.dead_letter_exchange(), self.checkpoint_exchange()];
        (queues, exchanges)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.queue_type.as_str(), "quorum" | "classic") {
            return Err(format!("bus.queue_type must be \"quorum\" or \"classic\", not {:?}", self.queue_type));
        }
        if self.prefetch == 0 || self.relay_batch_max == 0 || self.relay_batch_max > 100_000 {
            return Err("bus.prefetch must be > 0 and bus.relay_batch_max 1-100000".into());
        }
        if !(1..=1_000).contains(&self.delivery_limit) || !(1..=100).contains(&self.isolated_attempts_max) {
            return Err("bus.delivery_limit must be 1-1000 and bus.isolated_attempts_max 1-100".into());
        }
        if !crate::domain::valid_identifier(&self.prefix, 64) {
            return Err("bus.prefix must be 1-64 characters of [A-Za-z0-9._:-]".into());
        }
        Ok(())
    }
}

/// The user name in an AMQP URL (what the broker will validate `user_id` against).
pub fn user_of(amqp_url: &str) -> Result<String, String> {
    amqp_url.parse::<lapin::uri::AMQPUri>().map(|u| u.authority.userinfo.username).map_err(|e| format!("invalid AMQP URL: {e}"))
}

/// The URL with its password hidden, for messages.
pub fn redact(amqp_url: &str) -> String {
    match amqp_url.parse::<lapin::uri::AMQPUri>() {
        Ok(u) => format!("amqp://{}@{}:{}/{}", u.authority.userinfo.username, u.authority.host, u.authority.port, u.vhost),
        Err(_) => "<invalid AMQP URL>".into(),
    }
}
