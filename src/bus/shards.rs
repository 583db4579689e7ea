//! The national topology of a sharded deployment (issue 12; `shard.rs` says what a shard owns,
//! ARCHITECTURE.md "Shards" why):
//!
//! - `<namespace>.route`, a topic exchange: each shard's command queue is bound with
//!   `province.<code>` for each province it owns, `shard.<name>` and `all`;
//! - `<namespace>.oneoff`, a consistent-hash exchange (plugin `rabbitmq_consistent_hash_exchange`):
//!   every shard's command queue is bound in the config's order with routing key = its weight
//!   (weight 0: not bound). Every `serve --shard` declares every shard's command queue and binds
//!   them all, in that order; binding what is bound is a no-op, so the ring is the same whoever
//!   starts first.
//!
//! Each shard's own exchanges and queues are those of an unsharded engine under the bus prefix
//! `<namespace>.<name>` ([`shard_bus`]).
//!
//! The ring of a consistent-hash exchange depends only on the order and weights of its bindings
//! (measured on RabbitMQ 3.10), not on names, so [`probe`] learns which partitions a shard owns
//! from a throwaway exchange bound the same way. [`check_ownership`] keeps the answer in the data
//! dir and refuses a start where it changed.

use super::topology::{queue_arguments, TopologyError};
use super::BusConfig;
use crate::shard::{ShardsSection, PARTITIONS};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use std::collections::BTreeSet;
use std::path::Path;

/// The exchange type of the plugin.
pub const CONSISTENT_HASH: &str = "x-consistent-hash";

/// The command to enable it, for messages.
pub const ENABLE_PLUGIN: &str = "rabbitmq-plugins enable rabbitmq_consistent_hash_exchange";

pub fn route_exchange(namespace: &str) -> String {
    format!("{namespace}.route")
}

pub fn oneoff_exchange(namespace: &str) -> String {
    format!("{namespace}.oneoff")
}

pub fn province_key(code: &str) -> String {
    format!("province.{code}")
}

pub fn shard_key(name: &str) -> String {
    format!("shard.{name}")
}

/// The key every shard's queue is bound with on the route exchange (program definitions, a
/// national standard level).
pub const ALL_KEY: &str = "all";

/// The `[bus]` of shard `name`: the same settings, under the prefix `<namespace>.<name>`.
pub fn shard_bus(bus: &BusConfig, shards: &ShardsSection, name: &str) -> BusConfig {
    BusConfig { prefix: format!("{}.{name}", shards.namespace), ..bus.clone() }
}

/// Who this serve is in a sharded deployment: the section and its own entry's name.
#[derive(Clone, Debug, PartialEq)]
pub struct National {
    pub shards: ShardsSection,
    pub shard: String,
}

fn durable() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() }
}

/// A declare of a consistent-hash exchange that failed: the plugin missing is the likely cause
/// (the broker answers "invalid exchange type" and closes the connection), and an operator's
/// error to fix, not something a retry helps.
fn plugin_or(name: &str) -> impl FnOnce(lapin::Error) -> TopologyError + '_ {
    use lapin::protocol::{AMQPErrorKind, AMQPHardError};
    move |e| match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp)
            if *amqp.kind() == AMQPErrorKind::Hard(AMQPHardError::COMMANDINVALID) || amqp.get_message().as_str().contains("exchange type") =>
        {
            TopologyError::PluginMissing { name: name.to_string(), broker: amqp.get_message().to_string() }
        }
        _ => super::topology::conflict_or(name)(e),
    }
}

/// Declares the national exchanges, every shard's command queue and its bindings to the
/// one-off exchange, and this shard's bindings to the route exchange (removing the province keys
/// of the provinces it does not own, so a province moved in the config moves its routing).
/// `bus` is this shard's own (`shard_bus`).
pub async fn declare(channel: &Channel, bus: &BusConfig, national: &National) -> Result<(), TopologyError> {
    let (shards, own) = (&national.shards, national.shard.as_str());
    let route = route_exchange(&shards.namespace);
    let oneoff = oneoff_exchange(&shards.namespace);
    channel
        .exchange_declare(oneoff.as_str().into(), ExchangeKind::Custom(CONSISTENT_HASH.into()), durable(), FieldTable::default())
        .await
        .map_err(plugin_or(&oneoff))?;
    channel.exchange_declare(route.as_str().into(), ExchangeKind::Topic, durable(), FieldTable::default()).await?;
    for entry in &shards.shard {
        // The same queue, with the same arguments, as that shard's own `topology::declare`.
        let theirs = shard_bus(bus, shards, &entry.name);
        let queue = theirs.commands_queue();
        let args = queue_arguments(&theirs, &theirs.isolation_exchange(), theirs.delivery_limit);
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() }, args)
            .await
            .map_err(|e| super::topology::conflict_or(&queue)(e))?;
        if entry.weight > 0 {
            let weight = entry.weight.to_string();
            channel
                .queue_bind(queue.as_str().into(), oneoff.as_str().into(), weight.as_str().into(), QueueBindOptions::default(), FieldTable::default())
                .await?;
        }
    }
    let entry = shards.get(own).expect("serve checked its shard is configured");
    let queue = bus.commands_queue();
    let owned: BTreeSet<&str> = entry.provinces.iter().map(String::as_str).collect();
    let mut keys: Vec<String> = owned.iter().map(|p| province_key(p)).collect();
    keys.push(shard_key(own));
    keys.push(ALL_KEY.to_string());
    for key in keys {
        channel.queue_bind(queue.as_str().into(), route.as_str().into(), key.as_str().into(), QueueBindOptions::default(), FieldTable::default()).await?;
    }
    for code in crate::domain::reference::province_codes().filter(|c| !owned.contains(c)) {
        // Unbinding what is not bound is a no-op for RabbitMQ.
        channel.queue_unbind(queue.as_str().into(), route.as_str().into(), province_key(code).as_str().into(), FieldTable::default()).await?;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The broker is not there or went away: try again.
    #[error("{0}")]
    Broker(String),
    /// Retrying cannot help (the plugin is missing, the ring is not what it must be).
    #[error("{0}")]
    Fatal(String),
}

impl From<lapin::Error> for ProbeError {
    fn from(e: lapin::Error) -> ProbeError {
        ProbeError::Broker(e.to_string())
    }
}

/// Which shard (index in the config's order) RabbitMQ's consistent-hash exchange sends each
/// partition's routing key to, when the shards' queues are bound in the config's order with
/// their weights: a throwaway auto-delete exchange and one exclusive queue per shard, one
/// message per partition key "0".."1023" published with confirms (mandatory: one that no queue
/// takes is an error), then every queue read. Leaves nothing behind.
pub async fn probe(connection: &Connection, shards: &ShardsSection) -> Result<Vec<usize>, ProbeError> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let exchange = format!("{}.probe.{}-{nanos}", shards.namespace, std::process::id());
    let options = ExchangeDeclareOptions { durable: false, auto_delete: true, ..ExchangeDeclareOptions::default() };
    channel.exchange_declare(exchange.as_str().into(), ExchangeKind::Custom(CONSISTENT_HASH.into()), options, FieldTable::default()).await.map_err(|e| {
        match plugin_or(&exchange)(e) {
            TopologyError::Amqp(e) => ProbeError::Broker(e.to_string()),
            e => ProbeError::Fatal(e.to_string()),
        }
    })?;
    let mut queues = Vec::with_capacity(shards.shard.len());
    for entry in &shards.shard {
        let q = channel
            .queue_declare("".into(), QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() }, FieldTable::default())
            .await?;
        if entry.weight > 0 {
            let weight = entry.weight.to_string();
            channel.queue_bind(q.name().clone(), exchange.as_str().into(), weight.as_str().into(), QueueBindOptions::default(), FieldTable::default()).await?;
        }
        queues.push(q.name().clone());
    }
    let mut confirms = Vec::with_capacity(usize::from(PARTITIONS));
    for p in 0..PARTITIONS {
        let key = crate::shard::partition_routing_key(p);
        let options = BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() };
        confirms.push(channel.basic_publish(exchange.as_str().into(), key.as_str().into(), options, key.as_bytes(), BasicProperties::default()).await?);
    }
    for (p, confirm) in confirms.into_iter().enumerate() {
        let confirmation = confirm.await?;
        if !confirmation.is_ack() || confirmation.take_message().is_some() {
            return Err(ProbeError::Fatal(format!("probing the one-off ring: partition {p} reached no shard's queue (is every weight 0?)")));
        }
    }
    let mut owner: Vec<Option<usize>> = vec![None; usize::from(PARTITIONS)];
    for (index, queue) in queues.iter().enumerate() {
        while let Some(message) = channel.basic_get(queue.clone(), BasicGetOptions { no_ack: true }).await? {
            let p: usize = std::str::from_utf8(&message.delivery.data)
                .ok()
                .and_then(|s| s.parse().ok())
                .filter(|p| *p < usize::from(PARTITIONS))
                .ok_or_else(|| ProbeError::Fatal(format!("probing the one-off ring: queue {queue} held a message that is not a partition number")))?;
            if owner[p].replace(index).is_some() {
                return Err(ProbeError::Fatal(format!("probing the one-off ring: partition {p} reached two shards")));
            }
        }
    }
    for queue in &queues {
        let _ = channel.queue_delete(queue.clone(), QueueDeleteOptions::default()).await;
    }
    let _ = channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await;
    let _ = channel.close(200, "probe done".into()).await;
    owner
        .into_iter()
        .enumerate()
        .map(|(p, o)| o.ok_or_else(|| ProbeError::Broker(format!("probing the one-off ring: partition {p} was confirmed but not found in any queue"))))
        .collect()
}

/// The partitions shard `name` owns, by the probe's answer.
pub fn owned_partitions(ring: &[usize], shards: &ShardsSection, name: &str) -> Vec<u16> {
    let index = shards.shard.iter().position(|s| s.name == name);
    (0..PARTITIONS).filter(|p| Some(ring[usize::from(*p)]) == index).collect()
}

/// Where a publisher sends a command in a sharded deployment (`ansinh publish`), and how many
/// shards answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub exchange: String,
    pub routing_key: String,
    /// Every shard decides a command routed `all`; one shard any other.
    pub replies: usize,
}

/// The route of one command, read from its JSON (`type`, `payload`) so that it needs no Rust
/// type of the command: a command naming its administering province goes to `province.<code>`;
/// a program definition and a national standard level to `all`; a one-off batch to the one-off
/// exchange with its `partition` as key; anything else (a citizen's change, a settlement report,
/// a one-off budget) to `shard.<to_shard>` or `province.<province>`, one of which it needs.
pub fn route(command: &serde_json::Value, shards: &ShardsSection, to_shard: Option<&str>, province: Option<&str>) -> Result<Route, String> {
    let kind = command.get("type").and_then(|t| t.as_str()).unwrap_or("");
    let payload = command.get("payload");
    let field = |name: &str| payload.and_then(|p| p.get(name));
    let route_exchange = route_exchange(&shards.namespace);
    let to_province = |code: &str| -> Result<Route, String> {
        if !shards.shard.iter().any(|s| s.provinces.iter().any(|p| p == code)) {
            return Err(format!("{kind}: province {code:?} is owned by no shard of the config's [shards]"));
        }
        Ok(Route { exchange: route_exchange.clone(), routing_key: province_key(code), replies: 1 })
    };
    let all = || Route { exchange: route_exchange.clone(), routing_key: ALL_KEY.to_string(), replies: shards.shard.len() };
    match kind {
        "enroll_beneficiary" | "fund_budget" | "submit_payout_batch" => match field("province").and_then(|p| p.as_str()) {
            Some(code) => to_province(code),
            None => Err(format!("{kind}: payload.province is missing or not a string")),
        },
        "set_standard_level" => match field("province") {
            None | Some(serde_json::Value::Null) => Ok(all()),
            Some(serde_json::Value::String(code)) => to_province(code),
            Some(_) => Err(format!("{kind}: payload.province is not a string")),
        },
        "define_program" | "define_one_off_program" => Ok(all()),
        "submit_one_off_batch" => match field("partition").and_then(|p| p.as_u64()) {
            Some(p) if p < u64::from(PARTITIONS) => Ok(Route { exchange: oneoff_exchange(&shards.namespace), routing_key: p.to_string(), replies: 1 }),
            _ => Err(format!("{kind}: payload.partition must be a whole number 0-{}", PARTITIONS - 1)),
        },
        _ => match (to_shard, province) {
            (Some(_), Some(_)) => Err("give one of --to-shard and --province, not both".into()),
            (Some(name), None) if shards.get(name).is_some() => Ok(Route { exchange: route_exchange.clone(), routing_key: shard_key(name), replies: 1 }),
            (Some(name), None) => Err(format!("--to-shard {name:?} is not a shard of the config's [shards]")),
            (None, Some(code)) => to_province(code),
            (None, None) => Err(format!(
                "{kind:?} names no province: pass --province CODE (the province whose shard holds it) or --to-shard NAME to say which shard decides it"
            )),
        },
    }
}

/// What a shard's data dir remembers of its ownership (`ownership.json`).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remembered {
    pub namespace: String,
    pub shard: String,
    /// The one-off partitions it owned at its first start, in order.
    pub partitions: Vec<u16>,
}

pub const OWNERSHIP_FILE: &str = "ownership.json";

/// Compares this start's ownership with what the data dir remembers, and remembers it on the
/// first start (written atomically: a temp file, fsync, rename, fsync of the directory).
/// Refuses a data dir of another shard or namespace, and a changed partition set: a shard
/// added or a weight changed moves citizens between shards, and a one-off payee already paid
/// here could be paid again by the shard that now owns them. Provinces may change (the
/// rebalancing procedure).
pub fn check_ownership(data_dir: &Path, now: &Remembered) -> Result<(), String> {
    let path = data_dir.join(OWNERSHIP_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let before: Remembered = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not readable ({e}); it records which one-off partitions this shard owns", path.display()))?;
            if (before.namespace.as_str(), before.shard.as_str()) != (now.namespace.as_str(), now.shard.as_str()) {
                return Err(format!(
                    "data dir {} belongs to shard {:?} of namespace {:?}, not shard {:?} of {:?}: check data_dir in [shards]",
                    data_dir.display(),
                    before.shard,
                    before.namespace,
                    now.shard,
                    now.namespace
                ));
            }
            if before.partitions != now.partitions {
                let (was, is): (BTreeSet<u16>, BTreeSet<u16>) = (before.partitions.iter().copied().collect(), now.partitions.iter().copied().collect());
                return Err(format!(
                    "shard {:?} would own other one-off partitions than at its first start ({} before, {} now; {} lost, {} gained): a shard added \
                     or removed, a weight changed or the [[shards.shard]] order changed moves citizens between shards, and a one-off payee already \
                     paid here could be paid again elsewhere. Put the [shards] section back as it was; see ARCHITECTURE.md \"Rebalancing\"",
                    now.shard,
                    was.len(),
                    is.len(),
                    was.difference(&is).count(),
                    is.difference(&was).count()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
            let tmp = data_dir.join(format!("{OWNERSHIP_FILE}.tmp"));
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&serde_json::to_vec_pretty(now).expect("serializes"))?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(data_dir)?.sync_all()
            };
            write().map_err(|e| format!("writing {}: {e}", path.display()))
        }
        Err(e) => Err(format!("reading {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> ShardsSection {
        let text = r#"
            namespace = "vn"
            [[shard]]
            name = "north"
            provinces = ["001"]
            data_dir = "n"
            api_listen = "127.0.0.1:1"
            [[shard]]
            name = "south"
            provinces = ["079"]
            data_dir = "s"
            api_listen = "127.0.0.1:2"
        "#;
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_example_config_gives_every_province_to_one_of_three_shards() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/shards.example.toml");
        let config = crate::config::Config::load(&path, true).unwrap();
        let names: Vec<&str> = config.shards.shard.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["north", "central", "south"]);
        let mut owned: Vec<&str> = config.shards.shard.iter().flat_map(|s| s.provinces.iter().map(String::as_str)).collect();
        owned.sort_unstable();
        assert_eq!(owned, crate::domain::reference::province_codes().collect::<Vec<_>>());
    }

    #[test]
    fn commands_route_by_what_they_name() {
        let shards = three();
        let r = |v: serde_json::Value, to: Option<&str>, p: Option<&str>| route(&v, &shards, to, p).map(|r| (r.exchange, r.routing_key, r.replies));
        let key = |e: &str, k: &str, n: usize| Ok((e.to_string(), k.to_string(), n));
        use serde_json::json;
        assert_eq!(r(json!({"type": "enroll_beneficiary", "payload": {"province": "079"}}), Some("north"), None), key("vn.route", "province.079", 1));
        assert_eq!(r(json!({"type": "fund_budget", "payload": {"province": "001"}}), None, None), key("vn.route", "province.001", 1));
        assert_eq!(r(json!({"type": "submit_payout_batch", "payload": {"province": "001"}}), None, None), key("vn.route", "province.001", 1));
        assert_eq!(r(json!({"type": "set_standard_level", "payload": {"province": "079"}}), None, None), key("vn.route", "province.079", 1));
        assert_eq!(r(json!({"type": "set_standard_level", "payload": {}}), None, None), key("vn.route", "all", 2));
        assert_eq!(r(json!({"type": "define_program", "payload": {}}), None, None), key("vn.route", "all", 2));
        assert_eq!(r(json!({"type": "define_one_off_program", "payload": {}}), None, None), key("vn.route", "all", 2));
        assert_eq!(r(json!({"type": "submit_one_off_batch", "payload": {"partition": 1023}}), None, None), key("vn.oneoff", "1023", 1));
        assert_eq!(r(json!({"type": "fund_one_off", "payload": {}}), Some("south"), None), key("vn.route", "shard.south", 1));
        assert_eq!(r(json!({"type": "suspend_beneficiary", "payload": {}}), None, Some("001")), key("vn.route", "province.001", 1));
        let refused = [
            r(json!({"type": "submit_one_off_batch", "payload": {"partition": 1024}}), None, None),
            r(json!({"type": "submit_one_off_batch", "payload": {"partition": "7"}}), None, None),
            r(json!({"type": "enroll_beneficiary", "payload": {"province": "056"}}), None, None),
            r(json!({"type": "enroll_beneficiary", "payload": {}}), None, None),
            r(json!({"type": "change_payment_account", "payload": {}}), None, None),
            r(json!({"type": "change_payment_account", "payload": {}}), Some("east"), None),
            r(json!({"type": "change_payment_account", "payload": {}}), Some("north"), Some("001")),
        ];
        for e in refused {
            assert!(e.is_err(), "{e:?}");
        }
        assert!(r(json!({"type": "record_settlements", "payload": {}}), None, None).unwrap_err().contains("--province CODE"));
    }

    #[test]
    fn a_changed_partition_set_or_another_shards_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("north");
        let now = Remembered { namespace: "vn".into(), shard: "north".into(), partitions: vec![1, 2, 3] };
        check_ownership(&data, &now).unwrap();
        check_ownership(&data, &now).unwrap();
        let moved = Remembered { partitions: vec![1, 2], ..now };
        let e = check_ownership(&data, &moved).unwrap_err();
        assert!(e.contains("Rebalancing") && e.contains("1 lost, 0 gained"), "{e}");
        let other = Remembered { namespace: "vn".into(), shard: "south".into(), partitions: vec![1, 2, 3] };
        assert!(check_ownership(&data, &other).unwrap_err().contains("belongs to shard \"north\""));
    }
}
