//! Shards: which engine process owns which commands (issue 12).
//!
//! The nation is split two ways, and RabbitMQ does the routing of both:
//! - **province programs** by the administering province: a shard owns a set of provinces; the
//!   publisher sets the routing key `province.<code>` on the national topic exchange
//!   `<namespace>.route`, where each shard's command queue is bound to its provinces' keys;
//! - **nation-wide one-off programs** by citizen ID: every citizen ID falls in one of
//!   [`PARTITIONS`] partitions ([`partition_of`]); a one-off batch message holds the lines of one
//!   partition and carries its number as routing key to `<namespace>.oneoff`, RabbitMQ's
//!   consistent-hash exchange, where the shards' queues are bound with their weights in the
//!   config's order. The ring depends only on that order and those weights (not on names), so a
//!   shard learns which partitions it owns by asking the broker (`bus::shards::probe`) and keeps
//!   them in its [`Ownership`].
//!
//! A shard refuses (`shard_not_owner`) what it does not own, so every "one per citizen" rule is a
//! check inside one shard.

use crate::domain::CitizenId;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// How many partitions citizen IDs fall into. Part of the contract (events/README.md): a
/// publisher computes the partition of every line, and a shard's ownership is a set of them.
/// Fixed for the life of a deployment: changing it moves citizens between shards.
pub const PARTITIONS: u16 = 1024;

/// The partition of a citizen ID: the first two bytes of SHA-256 over its 12 ASCII digits, read
/// big-endian, modulo [`PARTITIONS`] (1024 divides 65536, so every partition is equally likely).
pub fn partition_of(citizen_id: &str) -> u16 {
    let digest = Sha256::digest(citizen_id.as_bytes());
    u16::from_be_bytes([digest[0], digest[1]]) % PARTITIONS
}

/// The routing key of a one-off batch message: its partition in decimal.
pub fn partition_routing_key(partition: u16) -> String {
    partition.to_string()
}

/// What one engine process owns. Unsharded (`Ownership::everything`), it owns everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ownership(Option<std::sync::Arc<Owned>>);

#[derive(Debug, PartialEq, Eq)]
struct Owned {
    shard: String,
    /// Administering province codes this shard owns (three digits).
    provinces: BTreeSet<String>,
    /// One bit per partition this shard owns.
    partitions: [u64; PARTITIONS as usize / 64],
}

impl Ownership {
    pub fn everything() -> Ownership {
        Ownership::default()
    }

    /// A shard named `shard` owning `provinces` and the partitions in `partitions`.
    pub fn shard(shard: &str, provinces: impl IntoIterator<Item = String>, partitions: impl IntoIterator<Item = u16>) -> Ownership {
        let mut bits = [0u64; PARTITIONS as usize / 64];
        for p in partitions {
            assert!(p < PARTITIONS, "partition {p} out of range");
            bits[usize::from(p / 64)] |= 1 << (p % 64);
        }
        Ownership(Some(std::sync::Arc::new(Owned { shard: shard.to_string(), provinces: provinces.into_iter().collect(), partitions: bits })))
    }

    pub fn is_sharded(&self) -> bool {
        self.0.is_some()
    }

    pub fn shard_name(&self) -> &str {
        self.0.as_ref().map_or("(unsharded)", |o| o.shard.as_str())
    }

    pub fn owns_province(&self, code: &str) -> bool {
        self.0.as_ref().is_none_or(|o| o.provinces.contains(code))
    }

    pub fn owns_partition(&self, partition: u16) -> bool {
        partition < PARTITIONS && self.0.as_ref().is_none_or(|o| o.partitions[usize::from(partition / 64)] & (1 << (partition % 64)) != 0)
    }

    pub fn owns_citizen(&self, citizen: &CitizenId) -> bool {
        self.owns_partition(partition_of(citizen.as_str()))
    }

    /// The provinces owned (none listed when unsharded: all are).
    pub fn provinces(&self) -> impl Iterator<Item = &str> {
        self.0.iter().flat_map(|o| o.provinces.iter()).map(String::as_str)
    }

    /// The partitions owned, in order (all of them when unsharded).
    pub fn partitions(&self) -> Vec<u16> {
        (0..PARTITIONS).filter(|p| self.owns_partition(*p)).collect()
    }
}

/// `[shards]` in the config: which shards exist and what each owns. Empty: one unsharded engine.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShardsSection {
    /// Prefix of the national exchanges (`<namespace>.route`, `<namespace>.oneoff`); each
    /// shard's own exchanges and queues are under `<namespace>.<shard name>`.
    pub namespace: String,
    /// In this order the shards' queues are bound to the consistent-hash exchange; the order and
    /// the weights make RabbitMQ's ring, so entries are only ever appended.
    pub shard: Vec<ShardEntry>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    /// 1-32 characters of [a-z0-9-].
    pub name: String,
    /// Administering provinces this shard owns (three-digit codes of the province table); each
    /// province is owned by exactly one shard.
    #[serde(default)]
    pub provinces: Vec<String>,
    /// Its share of the one-off partitions: the binding weight on the consistent-hash exchange
    /// (0: it takes no one-off lines).
    #[serde(default = "one")]
    pub weight: u32,
    /// Its own data dir (log, chain, views, relay cursor, checkpoints).
    pub data_dir: PathBuf,
    /// Where its HTTP API listens.
    pub api_listen: String,
}

fn one() -> u32 {
    1
}

impl ShardsSection {
    pub fn is_empty(&self) -> bool {
        self.shard.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&ShardEntry> {
        self.shard.iter().find(|s| s.name == name)
    }

    /// What is wrong with this section, if anything.
    pub fn problem(&self) -> Option<String> {
        if self.shard.is_empty() {
            return None;
        }
        let name_ok = |n: &str| !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
        if !name_ok(&self.namespace) {
            return Some("shards.namespace must be 1-32 characters of [a-z0-9-]".into());
        }
        let mut names = BTreeSet::new();
        let mut provinces = BTreeSet::new();
        let mut dirs = BTreeSet::new();
        let mut listens = BTreeSet::new();
        for s in &self.shard {
            if !name_ok(&s.name) {
                return Some(format!("shards.shard {:?}: name must be 1-32 characters of [a-z0-9-]", s.name));
            }
            if !names.insert(s.name.as_str()) {
                return Some(format!("shards.shard {:?} is configured twice", s.name));
            }
            for p in &s.provinces {
                if crate::domain::reference::province_name(p).is_none() {
                    return Some(format!("shards.shard {:?}: province {p:?} is not in the province table", s.name));
                }
                if !provinces.insert(p.as_str()) {
                    return Some(format!("shards.shard {:?}: province {p} is owned by another shard too", s.name));
                }
            }
            if !dirs.insert(s.data_dir.clone()) {
                return Some(format!("shards.shard {:?}: data_dir {} is another shard's too", s.name, s.data_dir.display()));
            }
            if s.api_listen.parse::<std::net::SocketAddr>().is_err() || !listens.insert(s.api_listen.as_str()) {
                return Some(format!("shards.shard {:?}: api_listen must be an address and port no other shard uses", s.name));
            }
        }
        if self.shard.iter().all(|s| s.weight == 0) {
            return Some("shards: at least one shard needs a weight above 0 (one-off lines would have nowhere to go)".into());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_stable_and_spread() {
        // The contract's example (events/README.md): SHA-256 of the 12 ASCII digits begins
        // 14 f8, 0x14f8 = 5368, 5368 mod 1024 = 248; a client computes the same.
        assert_eq!(partition_of("056095001234"), 248);
        assert_eq!(partition_of("056185000123"), 832);
        let mut counts = vec![0u32; usize::from(PARTITIONS)];
        for n in 0..200_000u64 {
            counts[usize::from(partition_of(&format!("001090{n:06}")))] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 120 && *max < 280, "partitions uneven: {min}..{max}");
    }

    #[test]
    fn ownership_answers_for_what_it_holds() {
        let o = Ownership::shard("north", ["001".to_string()], [0, 63, 64, 1023]);
        assert!(o.owns_province("001") && !o.owns_province("079"));
        assert!(o.owns_partition(63) && o.owns_partition(64) && o.owns_partition(1023) && !o.owns_partition(1) && !o.owns_partition(1024));
        assert_eq!(o.partitions(), vec![0, 63, 64, 1023]);
        let all = Ownership::everything();
        assert!(all.owns_province("079") && all.owns_partition(5) && !all.is_sharded());
    }
}
