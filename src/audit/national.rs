//! The national checkpoint (issue 12): one record naming the head (seq, hash) of every shard's
//! log, taken by `ansinh audit national-checkpoint`, checked by `ansinh audit verify-national`
//! and by `scripts/verify_export.py --national` against the shards' exports.
//!
//! ```json
//! {"hash":"<64 hex>","kind":"ansinh.national_checkpoint","namespace":"vn",
//!  "shards":[{"hash":"<64 hex>","name":"north","seq":1200},...],"taken_at":"2025-08-30T17:00:00Z","v":1}
//! ```
//!
//! `shards` is sorted by name, one entry per shard; `hash` is the lowercase hex SHA-256 of the
//! RFC 8785 (JCS) canonical form of the record without `hash` (`log::chain::canonical_bytes`,
//! the same canonical form as the audit records). The record is written in that canonical form
//! with `hash` in its sorted place, one line.
//!
//! "At one instant" means: each shard's head is read once, one shard after another, and
//! `taken_at` says when the taking started. The shards do not stop for it, so the heads are not a
//! cut at one clock tick: each is a head its shard durably had at some moment of the taking. What
//! makes the record worth keeping does not need more: every shard's log is append-only and
//! hash-chained, so each head named is a prefix of that shard's log for ever. Whoever later
//! holds the record can show that no shard rewrote anything up to the head it named.

use super::verify::{self, Report, VerifyOptions};
use super::{AuditError, Source};
use crate::log::chain::{canonical_bytes, sha256_hex};
use crate::log::Head;
use serde_json::{Map, Value};

pub const KIND: &str = "ansinh.national_checkpoint";
pub const VERSION: u64 = 1;

/// One shard's head in a national checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardHead {
    pub name: String,
    pub seq: u64,
    pub hash: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NationalCheckpoint {
    pub namespace: String,
    /// RFC 3339 UTC, seconds: when the heads were read.
    pub taken_at: String,
    /// Sorted by name.
    pub shards: Vec<ShardHead>,
    /// SHA-256 hex of the JCS form of the record without `hash`.
    pub hash: String,
}

impl NationalCheckpoint {
    /// Seals the heads read at `taken_at`: sorts them by name and computes the hash. Refuses
    /// two heads of one shard, or none.
    pub fn seal(namespace: &str, taken_at: &str, mut shards: Vec<ShardHead>) -> Result<NationalCheckpoint, String> {
        shards.sort_by(|a, b| a.name.cmp(&b.name));
        if shards.is_empty() {
            return Err("a national checkpoint needs the head of at least one shard".into());
        }
        if let Some(w) = shards.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(format!("shard {:?} is named twice", w[0].name));
        }
        let mut record = NationalCheckpoint { namespace: namespace.to_string(), taken_at: taken_at.to_string(), shards, hash: String::new() };
        record.hash = sha256_hex(&canonical_bytes(&record.unsealed()));
        Ok(record)
    }

    /// The record without `hash`, as a JSON value (what is hashed).
    fn unsealed(&self) -> Value {
        let shards = self
            .shards
            .iter()
            .map(|s| {
                let mut m = Map::new();
                m.insert("name".into(), Value::String(s.name.clone()));
                m.insert("seq".into(), Value::from(s.seq));
                m.insert("hash".into(), Value::String(s.hash.clone()));
                Value::Object(m)
            })
            .collect();
        let mut m = Map::new();
        m.insert("kind".into(), Value::String(KIND.into()));
        m.insert("v".into(), Value::from(VERSION));
        m.insert("namespace".into(), Value::String(self.namespace.clone()));
        m.insert("taken_at".into(), Value::String(self.taken_at.clone()));
        m.insert("shards".into(), Value::Array(shards));
        Value::Object(m)
    }

    /// The record as written: canonical JSON with `hash`, no trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut value = self.unsealed();
        value.as_object_mut().expect("built as an object").insert("hash".into(), Value::String(self.hash.clone()));
        canonical_bytes(&value)
    }

    /// Reads a record and checks its shape and its own hash. The error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<NationalCheckpoint, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(m) = &value else { return Err("not a JSON object".into()) };
        let expected = ["hash", "kind", "namespace", "shards", "taken_at", "v"];
        if m.len() != expected.len() || !expected.iter().all(|k| m.contains_key(*k)) {
            let mut got: Vec<&str> = m.keys().map(String::as_str).collect();
            got.sort_unstable();
            return Err(format!("members must be exactly {expected:?}, got {got:?}"));
        }
        if m["kind"] != KIND {
            return Err(format!("kind is {}, not {KIND:?}", m["kind"]));
        }
        if m["v"].as_u64() != Some(VERSION) {
            return Err(format!("v is {}; this version of ansinh reads v {VERSION}", m["v"]));
        }
        let text = |k: &str| m[k].as_str().map(str::to_string).ok_or_else(|| format!("{k} is not a string"));
        let namespace = text("namespace")?;
        let taken_at = text("taken_at")?;
        if super::time::parse_rfc3339(&taken_at).is_none() {
            return Err(format!("taken_at {taken_at:?} is not an RFC 3339 time"));
        }
        let stated = text("hash")?;
        let Value::Array(items) = &m["shards"] else { return Err("shards is not a list".into()) };
        let mut shards = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::Object(s) = item else { return Err(format!("shards[{i}] is not an object")) };
            if s.len() != 3 || !["name", "seq", "hash"].iter().all(|k| s.contains_key(*k)) {
                return Err(format!("shards[{i}]: members must be exactly name, seq, hash"));
            }
            let name = s["name"].as_str().ok_or_else(|| format!("shards[{i}].name is not a string"))?.to_string();
            let seq = s["seq"].as_u64().filter(|n| *n >= 1).ok_or_else(|| format!("shards[{i}] ({name}): seq is not an integer of 1 or more"))?;
            let hash =
                s["hash"].as_str().filter(|h| is_hash(h)).ok_or_else(|| format!("shards[{i}] ({name}): hash is not 64 lowercase hex digits"))?.to_string();
            shards.push(ShardHead { name, seq, hash });
        }
        if shards.is_empty() {
            return Err("shards is empty".into());
        }
        if let Some(w) = shards.windows(2).find(|w| w[0].name >= w[1].name) {
            return Err(format!("shards are not sorted by name with each once ({:?} before {:?})", w[0].name, w[1].name));
        }
        let record = NationalCheckpoint { namespace, taken_at, shards, hash: stated.clone() };
        let actual = sha256_hex(&canonical_bytes(&record.unsealed()));
        if actual != stated {
            return Err(format!("its hash says {stated}, its content hashes to {actual}: the record was changed after it was taken"));
        }
        Ok(record)
    }
}

pub fn is_hash(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The head of a shard's data dir, read without the engine (`Log::open` checks the stored head
/// against the last record). Fails with [`AuditError::Open`] while an engine holds the dir.
pub fn head_of_data_dir(path: &std::path::Path, cache_capacity_bytes: u64) -> Result<Head, AuditError> {
    let db = super::open_data_dir(path, cache_capacity_bytes)?;
    let log = crate::log::Log::open(&db)?;
    if log.head().seq == 0 {
        return Err(AuditError::Invalid(format!("the log in {} is empty", path.display())));
    }
    Ok(log.head().clone())
}

/// Verifies one shard of a national checkpoint: the whole chain (and, with `options.views`, the
/// views) of `source`, with the checkpoint's head as the expected head, so that the record at
/// `seq` must exist with that hash.
pub fn verify_shard(source: &Source, head: &ShardHead, options: &VerifyOptions, progress: &mut dyn FnMut(u64)) -> Result<Report, AuditError> {
    let options = VerifyOptions { expected_head: Some(Head { seq: head.seq, hash: head.hash.clone() }), ..options.clone() };
    verify::verify(source, &options, progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(name: &str, seq: u64) -> ShardHead {
        ShardHead { name: name.into(), seq, hash: format!("{seq:064x}") }
    }

    #[test]
    fn a_sealed_record_reads_back_and_any_change_breaks_its_hash() {
        let cp = NationalCheckpoint::seal("vn", "2025-08-30T10:00:00Z", vec![head("south", 7), head("north", 12)]).unwrap();
        assert_eq!(cp.shards[0].name, "north");
        let bytes = cp.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"hash\":\"") && text.contains("\"kind\":\"ansinh.national_checkpoint\""), "{text}");
        assert_eq!(NationalCheckpoint::parse(&bytes).unwrap(), cp);
        let changed = text.replace("\"seq\":7", "\"seq\":8");
        assert!(NationalCheckpoint::parse(changed.as_bytes()).unwrap_err().contains("hashes to"));
        assert!(NationalCheckpoint::seal("vn", "2025-08-30T10:00:00Z", vec![head("a", 1), head("a", 2)]).is_err());
        let extra = text.replacen('{', "{\"extra\":1,", 1);
        assert!(NationalCheckpoint::parse(extra.as_bytes()).unwrap_err().contains("members must be exactly"));
    }
}
