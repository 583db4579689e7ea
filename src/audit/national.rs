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

/// What the national cross-check found over the logs of several shards (`audit verify --shards`).
///
/// Routing keeps every one-per-citizen rule shard-local except *one enrollment per citizen and
/// program* (ARCHITECTURE.md "Shards"): a citizen can be enrolled in one program in provinces of
/// two shards, and each shard then pays its enrollment. Nothing prevents that; this detects it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CrossCheck {
    /// (citizen, regular program, period) with a regular payout instructed by more than one shard.
    pub regular_paid_twice: Vec<Doubled>,
    /// (citizen, one-off program) paid or listed for cash by more than one shard.
    pub one_off_paid_twice: Vec<Doubled>,
    /// (citizen, program) with an enrollment not terminated on more than one shard (a warning:
    /// it becomes a double payment when both shards pay the same period).
    pub enrolled_twice: Vec<Doubled>,
}

/// One finding: the citizen (masked only when printed), the program, the period (regular
/// payouts only) and the shards, in the order they were given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doubled {
    pub citizen_id: crate::domain::CitizenId,
    pub program_id: String,
    pub period: Option<String>,
    pub shards: Vec<String>,
}

impl Doubled {
    /// For output: the citizen ID masked as everywhere else (`056******123`).
    pub fn describe(&self) -> String {
        let period = self.period.as_ref().map(|p| format!(" period {p}")).unwrap_or_default();
        format!("citizen {} program {}{period} on shards {}", self.citizen_id.masked(), self.program_id, self.shards.join(", "))
    }
}

impl CrossCheck {
    pub fn failed(&self) -> bool {
        !self.regular_paid_twice.is_empty() || !self.one_off_paid_twice.is_empty()
    }
}

/// Reads the log of every shard (already verified: a record that does not inspect is an error
/// here) and finds what was paid, or is enrolled, on more than one shard. Memory: one map entry
/// per distinct (citizen, program, period) paid and per (citizen, program) enrolled, nation-wide
/// (about 40 bytes each).
pub fn cross_check(shards: &[(String, &Source)], progress: &mut dyn FnMut(u64)) -> Result<CrossCheck, AuditError> {
    use crate::event::{EventData, PayoutKind};
    use std::collections::HashMap;
    assert!(shards.len() <= 64, "a shard set is a 64-bit mask");
    // Programs and periods interned so that a key is small.
    let mut programs: HashMap<String, u32> = HashMap::new();
    let mut periods: HashMap<String, u32> = HashMap::new();
    let intern = |map: &mut HashMap<String, u32>, s: &str| -> u32 {
        let next = u32::try_from(map.len()).expect("fewer than 2^32 programs and periods");
        *map.entry(s.to_string()).or_insert(next)
    };
    // (citizen number, program, period + 1; 0 for a one-off) -> shards paying it.
    let mut paid: HashMap<(u64, u32, u32), u64> = HashMap::new();
    // (citizen number, program) -> shards with it enrolled (bits cleared at termination).
    let mut enrolled: HashMap<(u64, u32), u64> = HashMap::new();
    let number = |c: &crate::domain::CitizenId| -> u64 { c.as_str().parse().expect("a citizen ID is 12 digits") };
    let mut seen = 0u64;
    for (index, (name, source)) in shards.iter().enumerate() {
        let bit = 1u64 << index;
        for raw in source.records(1)? {
            let raw = raw?;
            let inspected =
                super::chain::inspect(&raw).map_err(|f| AuditError::Invalid(format!("shard {name}: a record does not read ({}); verify it first", f.what)))?;
            seen += 1;
            if seen % 65_536 == 0 {
                progress(seen);
            }
            match &inspected.event.data {
                EventData::PayoutInstructed(p) if p.kind == PayoutKind::Regular => {
                    let program = intern(&mut programs, &p.program_id);
                    let period = if p.province == crate::core::state::ONE_OFF_PROVINCE { 0 } else { 1 + intern(&mut periods, &p.period.to_string()) };
                    *paid.entry((number(&p.citizen_id), program, period)).or_insert(0) |= bit;
                }
                EventData::OneOffCashListed(c) => {
                    let program = intern(&mut programs, &c.program_id);
                    *paid.entry((number(&c.citizen_id), program, 0)).or_insert(0) |= bit;
                }
                EventData::BeneficiaryEnrolled(e) => {
                    let program = intern(&mut programs, &e.program_id);
                    *enrolled.entry((number(&e.citizen_id), program)).or_insert(0) |= bit;
                }
                EventData::BeneficiaryTerminated(t) => {
                    let program = intern(&mut programs, &t.program_id);
                    if let Some(set) = enrolled.get_mut(&(number(&t.citizen_id), program)) {
                        *set &= !bit;
                    }
                }
                _ => {}
            }
        }
    }
    progress(seen);
    let program_names: HashMap<u32, &str> = programs.iter().map(|(k, v)| (*v, k.as_str())).collect();
    let period_names: HashMap<u32, &str> = periods.iter().map(|(k, v)| (*v, k.as_str())).collect();
    let names = |set: u64| -> Vec<String> { (0..shards.len()).filter(|i| set & (1 << i) != 0).map(|i| shards[i].0.clone()).collect() };
    let citizen = |n: u64| crate::domain::CitizenId::parse(&format!("{n:012}")).expect("numbers come from checked citizen IDs");
    let mut report = CrossCheck::default();
    for ((n, program, period), set) in paid.into_iter().filter(|(_, set)| set.count_ones() > 1) {
        let d = Doubled {
            citizen_id: citizen(n),
            program_id: program_names[&program].to_string(),
            period: (period > 0).then(|| period_names[&(period - 1)].to_string()),
            shards: names(set),
        };
        if period == 0 {
            report.one_off_paid_twice.push(d);
        } else {
            report.regular_paid_twice.push(d);
        }
    }
    for ((n, program), set) in enrolled.into_iter().filter(|(_, set)| set.count_ones() > 1) {
        report.enrolled_twice.push(Doubled { citizen_id: citizen(n), program_id: program_names[&program].to_string(), period: None, shards: names(set) });
    }
    let order = |a: &Doubled, b: &Doubled| (a.citizen_id.as_str(), &a.program_id, &a.period).cmp(&(b.citizen_id.as_str(), &b.program_id, &b.period));
    report.regular_paid_twice.sort_by(order);
    report.one_off_paid_twice.sort_by(order);
    report.enrolled_twice.sort_by(order);
    Ok(report)
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
