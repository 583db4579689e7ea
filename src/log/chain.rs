//! The hash chain (DESIGN.md "The audit log format"): a record is
//! `{"seq": N, "prev_hash": "<64 hex>", "event": {...}, "hash": "<64 hex>"}` where `hash` is the
//! lowercase hex SHA-256 of the RFC 8785 (JCS) canonical form of the record without `hash`.
//!
//! Canonical form here: serde_json's `Value` keeps object keys in a `BTreeMap` (sorted by
//! bytes) and writes no whitespace. That equals JCS for our records because (1) every key we
//! write is ASCII, where byte order equals JCS's UTF-16 order, (2) no floats exist (amounts are
//! strings, seq and counts are integers below 2^53), and (3) serde_json escapes strings exactly as
//! JCS does (`\"` `\\` `\b` `\f` `\n` `\r` `\t`, other controls as `\u00xx` lowercase, the rest
//! as UTF-8). `tests` checks this against hand-computed bytes; CI checks it with Python.

use crate::event::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as stored in the log and as written by `audit export`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub prev_hash: String,
    pub event: Event,
    pub hash: String,
}

/// Canonical bytes of any JSON value whose keys are ASCII (see module docs).
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    debug_assert!(keys_are_ascii(value), "canonical form relies on ASCII object keys");
    serde_json::to_vec(value).expect("serializing a serde_json::Value cannot fail")
}

fn keys_are_ascii(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().all(|(k, v)| k.is_ascii() && keys_are_ascii(v)),
        Value::Array(items) => items.iter().all(keys_are_ascii),
        _ => true,
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Seals an event at `seq` after `prev_hash`: returns the record's stored bytes (canonical
/// JSON including `hash`) and its hash.
pub fn seal(seq: u64, prev_hash: &str, event: &Event) -> (Vec<u8>, String) {
    let mut record = serde_json::Map::new();
    record.insert("event".into(), serde_json::to_value(event).expect("events serialize to JSON"));
    record.insert("prev_hash".into(), Value::String(prev_hash.to_string()));
    record.insert("seq".into(), Value::from(seq));
    let mut value = Value::Object(record);
    let hash = sha256_hex(&canonical_bytes(&value));
    value.as_object_mut().expect("built as an object").insert("hash".into(), Value::String(hash.clone()));
    (canonical_bytes(&value), hash)
}

/// Recomputes the hash of a record given as JSON, whatever its key order or spacing.
/// Returns `None` when the value is not an object.
pub fn recompute_hash(record: &Value) -> Option<String> {
    let mut map = record.as_object()?.clone();
    map.remove("hash");
    Some(sha256_hex(&canonical_bytes(&Value::Object(map))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_keys_and_escapes_like_jcs() {
        let v: Value = serde_json::from_str("{\"b\": 1, \"a\": \"x\\u0001\\n\\\"é€\", \"c\": [true, null, {\"z\": 0, \"y\": -5}]}").unwrap();
        assert_eq!(String::from_utf8(canonical_bytes(&v)).unwrap(), "{\"a\":\"x\\u0001\\n\\\"é€\",\"b\":1,\"c\":[true,null,{\"y\":-5,\"z\":0}]}");
    }

    #[test]
    fn sha256_of_known_input() {
        // FIPS 180-2 test vector.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
