//! Checks records one after another against the chain, trusting nothing stored: each record is
//! parsed from its bytes, its hash recomputed from the JSON (key order and spacing of the stored
//! bytes do not matter), its `seq` compared with its place, its `prev_hash` with the hash of the
//! record before it.

use super::source::{Place, RawRecord, Source};
use super::AuditError;
use crate::event::Event;
use crate::log::chain::{canonical_bytes, sha256_hex, SealedParts, GENESIS_HASH};
use crate::log::segment::RecordMeta;
use rayon::prelude::*;
use serde_json::Value;
use std::ops::ControlFlow;

/// The first thing found wrong. `seq` is the first seq that cannot be trusted (`None` when the
/// fault is not in one record, e.g. a view that differs from the replay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub seq: Option<u64>,
    pub what: String,
}

impl Failure {
    pub fn at(seq: u64, what: impl Into<String>) -> Failure {
        Failure { seq: Some(seq), what: what.into() }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "seq {seq}: {}", self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

/// A record that passed every check.
pub struct Checked {
    pub seq: u64,
    pub hash: String,
    pub event: Event,
    /// The record as stored (empty from a `scan` that does not keep them).
    pub bytes: Vec<u8>,
}

/// What one record says about itself, checked without its neighbours: parsed, its hash
/// recomputed over its content, its segment index entry compared with its event. Pure, so
/// records can be inspected on several threads and linked in order afterwards.
pub type Inspection = Result<Inspected, Flaw>;

pub struct Inspected {
    pub seq: u64,
    pub hash: String,
    pub prev_hash: String,
    pub event: Event,
}

/// What is wrong with a record on its own. `seq` is the seq it claims, when it could be read.
#[derive(Debug)]
pub struct Flaw {
    pub seq: Option<u64>,
    pub what: String,
}

fn flaw(seq: Option<u64>, what: String) -> Flaw {
    Flaw { seq, what }
}

/// Inspects one record. The fast path takes a record laid out as `seal` writes it: the event's
/// bytes are parsed once, serialized again (which must give the very same bytes: the record is
/// canonical) and the hash taken over the stored bytes. Anything else (an export whose keys were
/// reordered or spaced, a damaged record) is parsed as JSON and its canonical form rebuilt.
pub fn inspect(raw: &RawRecord) -> Inspection {
    let where_ = match raw.place {
        Place::Key(_) => String::new(),
        Place::Line(line) => format!(" (line {line})"),
    };
    if let Some(fault) = &raw.fault {
        return Err(flaw(None, fault.clone()));
    }
    let inspected = match SealedParts::split(&raw.bytes) {
        Some(parts) => match serde_json::from_slice::<Event>(parts.event) {
            Ok(event) if serde_json::to_vec(&event).is_ok_and(|again| again == parts.event) => {
                let computed = parts.content_hash();
                if computed != parts.hash {
                    return Err(hash_mismatch(parts.seq, parts.hash, &computed));
                }
                Inspected { seq: parts.seq, hash: parts.hash.to_string(), prev_hash: parts.prev_hash.to_string(), event }
            }
            _ => inspect_json(raw, &where_)?,
        },
        None => inspect_json(raw, &where_)?,
    };
    if let Some(meta) = &raw.meta {
        let from_event = RecordMeta::of(&inspected.event);
        if *meta != from_event {
            return Err(flaw(
                Some(inspected.seq),
                format!(
                    "the segment's index says {} {:?} routed {:?}, the record is {} {:?} routed {:?}: the index was changed (the relay publishes by it)",
                    meta.type_name().unwrap_or("?"),
                    meta.id,
                    meta.qualifier,
                    from_event.type_name().unwrap_or("?"),
                    from_event.id,
                    from_event.qualifier
                ),
            ));
        }
    }
    Ok(inspected)
}

fn hash_mismatch(seq: u64, stored: &str, computed: &str) -> Flaw {
    flaw(Some(seq), format!("hash mismatch: the record says {stored}, its content hashes to {computed}: the record was changed after it was sealed"))
}

/// The slow path: any JSON layout, hashed over its RFC 8785 canonical form.
fn inspect_json(raw: &RawRecord, where_: &str) -> Inspection {
    let value: Value =
        serde_json::from_slice(&raw.bytes).map_err(|e| flaw(None, format!("the record{where_} is not valid JSON ({e}): it was damaged or cut")))?;
    let Value::Object(mut record) = value else {
        return Err(flaw(None, format!("the record{where_} is not a JSON object")));
    };
    let seq = record.get("seq").and_then(Value::as_u64).ok_or_else(|| flaw(None, format!("the record{where_} has no integer `seq`")))?;
    if record.len() != 4 || !["seq", "prev_hash", "event", "hash"].iter().all(|k| record.contains_key(*k)) {
        let keys: Vec<&str> = record.keys().map(String::as_str).collect();
        return Err(flaw(Some(seq), format!("the record has members {keys:?}; an audit record has exactly seq, prev_hash, event, hash")));
    }
    let Some(Value::String(stored_hash)) = record.remove("hash") else {
        return Err(flaw(Some(seq), "`hash` is not a string".into()));
    };
    let without_hash = Value::Object(record);
    let computed = sha256_hex(&canonical_bytes(&without_hash));
    let Value::Object(mut record) = without_hash else { unreachable!("built as an object just above") };
    if computed != stored_hash {
        return Err(hash_mismatch(seq, &stored_hash, &computed));
    }
    let prev_hash = record.get("prev_hash").and_then(Value::as_str).unwrap_or_default().to_string();
    let event_value = record.remove("event").unwrap_or(Value::Null);
    let event: Event = serde_json::from_value(event_value).map_err(|e| flaw(Some(seq), format!("the event does not decode as an ansinh event: {e}")))?;
    Ok(Inspected { seq, hash: stored_hash, prev_hash, event })
}

pub struct ChainChecker {
    next_seq: u64,
    /// Hash of the record before `next_seq`; `None` before the first record of an export that
    /// starts after seq 1 (its `prev_hash` is then the unverified anchor).
    prev_hash: Option<String>,
    /// `prev_hash` of the first record, as found.
    pub anchor: Option<String>,
}

impl ChainChecker {
    /// A chain expected to start at `first_seq`: at seq 1 its `prev_hash` must be 64 zeros.
    pub fn new(first_seq: u64) -> ChainChecker {
        let prev_hash = (first_seq <= 1).then(|| GENESIS_HASH.to_string());
        ChainChecker { next_seq: first_seq.max(1), prev_hash, anchor: None }
    }

    /// The seq the next record must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Checks the next record; on success the chain moves on past it.
    pub fn check(&mut self, raw: RawRecord) -> Result<Checked, Failure> {
        let inspection = inspect(&raw);
        let mut checked = self.link(raw.place, inspection)?;
        checked.bytes = raw.bytes;
        Ok(checked)
    }

    /// Links an inspected record to the chain: its place, its seq, its `prev_hash`.
    pub fn link(&mut self, place: Place, inspection: Inspection) -> Result<Checked, Failure> {
        let expected = self.next_seq;
        if let Place::Key(stored) = place {
            if stored > expected {
                return Err(Failure::at(
                    expected,
                    format!("missing: the journal has no record {expected}, the next stored record is seq {stored} (records deleted)"),
                ));
            }
        }
        let claimed = match &inspection {
            Ok(i) => Some(i.seq),
            Err(f) => f.seq,
        };
        if let Some(seq) = claimed.filter(|s| *s != expected) {
            let what = match place {
                Place::Key(_) if seq > expected => format!(
                    "the record stored in the place of seq {expected} says it is seq {seq}: seq {expected} is missing there, or records were moved or swapped"
                ),
                Place::Key(_) => format!("the record stored under seq {expected} says it is seq {seq} (records moved or swapped)"),
                Place::Line(line) if seq > expected => {
                    format!("missing: line {line} holds seq {seq} where seq {expected} was expected (records deleted or out of order)")
                }
                Place::Line(line) => format!("line {line} holds seq {seq} where seq {expected} was expected (records repeated or out of order)"),
            };
            return Err(Failure::at(expected, what));
        }
        let Inspected { seq, hash, prev_hash, event } = inspection.map_err(|f| Failure::at(expected, f.what))?;
        match &self.prev_hash {
            Some(expected_prev) if *expected_prev != prev_hash => {
                let what = if seq == 1 {
                    format!("prev_hash is {prev_hash}; the first record's must be 64 zeros")
                } else {
                    format!(
                        "prev_hash {prev_hash} does not link to seq {} (whose hash is {expected_prev}): a record was replaced, or seq {} was changed and re-hashed",
                        seq - 1,
                        seq - 1
                    )
                };
                return Err(Failure::at(seq, what));
            }
            Some(_) => {}
            None => self.anchor = Some(prev_hash),
        }
        self.next_seq = seq + 1;
        self.prev_hash = Some(hash.clone());
        Ok(Checked { seq, hash, event, bytes: Vec::new() })
    }
}

/// Records inspected together and handed over in one message, and messages the reading thread
/// may be ahead by: at most 8 x 4,096 checked records in memory.
const HANDOVER_RECORDS: usize = 4_096;
const AHEAD_HANDOVERS_MAX: usize = 8;

/// What a scan ended with.
pub struct Scan<B> {
    /// The first fault in the records, if the scan reached one.
    pub failure: Option<Failure>,
    /// The value `consume` stopped with, if it did.
    pub stopped: Option<B>,
    /// `prev_hash` of the first record when the chain starts after seq 1 (taken on trust).
    pub anchor: Option<String>,
}

/// A handover from the reading thread: checked records, then possibly what stopped it.
type Handover = (Vec<Checked>, Option<Result<Failure, AuditError>>);

/// Reads and checks the records of `source` from seq `from` on a second thread, and hands each
/// checked record, in order, to `consume` on this one: hashing and parsing overlap with what
/// `consume` does (replaying into views). Stops at the first fault or when `consume` breaks.
/// With `keep_bytes` each record's stored bytes come along; without, they are freed on the
/// checking side, not by `consume`.
pub fn scan<B>(source: &Source, from: u64, keep_bytes: bool, mut consume: impl FnMut(Checked) -> ControlFlow<B>) -> Result<Scan<B>, AuditError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Handover>(AHEAD_HANDOVERS_MAX);
    std::thread::scope(|scope| {
        // Reading (sled, or the file) on one thread; inspecting on every core (rayon) a chunk
        // at a time, linking in order, on another; the consumer on this one.
        let (raw_tx, raw_rx) = std::sync::mpsc::sync_channel::<(Vec<RawRecord>, Option<AuditError>)>(2);
        scope.spawn(move || {
            let records = match source.records(from) {
                Ok(records) => records,
                Err(e) => {
                    let _ = raw_tx.send((Vec::new(), Some(e)));
                    return;
                }
            };
            let mut raws = Vec::with_capacity(HANDOVER_RECORDS);
            for raw in records {
                match raw {
                    Ok(raw) => raws.push(raw),
                    Err(e) => {
                        let _ = raw_tx.send((raws, Some(e)));
                        return;
                    }
                }
                if raws.len() == HANDOVER_RECORDS && raw_tx.send((std::mem::replace(&mut raws, Vec::with_capacity(HANDOVER_RECORDS)), None)).is_err() {
                    return;
                }
            }
            let _ = raw_tx.send((raws, None));
        });
        let reader = scope.spawn(move || {
            let mut checker = ChainChecker::new(from);
            for (raws, read_error) in raw_rx {
                let inspections: Vec<Inspection> = raws.par_iter().map(inspect).collect();
                let mut batch = Vec::with_capacity(raws.len());
                for (raw, inspection) in raws.into_iter().zip(inspections) {
                    match checker.link(raw.place, inspection) {
                        Ok(mut checked) => {
                            if keep_bytes {
                                checked.bytes = raw.bytes;
                            }
                            batch.push(checked);
                        }
                        Err(failure) => {
                            let _ = tx.send((batch, Some(Ok(failure))));
                            return checker.anchor;
                        }
                    }
                }
                if let Some(e) = read_error {
                    let _ = tx.send((batch, Some(Err(e))));
                    return checker.anchor;
                }
                // A closed channel means the consumer stopped: nothing more to check.
                if tx.send((batch, None)).is_err() {
                    return checker.anchor;
                }
            }
            checker.anchor
        });
        let mut scan = Scan { failure: None, stopped: None, anchor: None };
        let mut error = None;
        'handovers: for (batch, stop) in rx.iter() {
            for checked in batch {
                if let ControlFlow::Break(b) = consume(checked) {
                    scan.stopped = Some(b);
                    break 'handovers;
                }
            }
            match stop {
                Some(Ok(failure)) => scan.failure = Some(failure),
                Some(Err(e)) => error = Some(e),
                None => {}
            }
        }
        drop(rx);
        scan.anchor = reader.join().map_err(|_| AuditError::Invalid("the thread reading the records stopped unexpectedly".into()))?;
        match error {
            Some(e) => Err(e),
            None => Ok(scan),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::chain::seal;

    fn event(n: u64) -> Event {
        serde_json::from_value(serde_json::json!({
            "id": format!("c{n}/1"), "command_id": format!("c{n}"), "at": "2025-01-20T08:00:00Z", "v": 1,
            "type": "command.rejected", "data": {"command_type": "fund_budget", "code": "amount_invalid", "message": "x"}
        }))
        .expect("a valid event")
    }

    fn chain(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS_HASH.to_string();
        (1..=n)
            .map(|seq| {
                let (bytes, hash) = seal(seq, &prev, &event(seq));
                prev = hash;
                bytes
            })
            .collect()
    }

    fn run(records: Vec<Vec<u8>>) -> Result<u64, Failure> {
        let mut checker = ChainChecker::new(1);
        let mut last = 0;
        for (i, bytes) in records.into_iter().enumerate() {
            last = checker.check(RawRecord { place: Place::Line(i as u64 + 1), bytes, meta: None, fault: None })?.seq;
        }
        Ok(last)
    }

    #[test]
    fn an_intact_chain_passes() {
        assert_eq!(run(chain(5)), Ok(5));
    }

    #[test]
    fn reordered_keys_and_spaces_do_not_matter() {
        let mut records = chain(2);
        let v: Value = serde_json::from_slice(&records[1]).unwrap();
        records[1] = serde_json::to_vec_pretty(&v).unwrap();
        assert_eq!(run(records), Ok(2));
    }

    #[test]
    fn a_changed_byte_is_found_at_its_seq() {
        let mut records = chain(4);
        records[2] = String::from_utf8(records[2].clone()).unwrap().replace("\"x\"", "\"y\"").into_bytes();
        let failure = run(records).unwrap_err();
        assert_eq!(failure.seq, Some(3));
        assert!(failure.what.contains("hash mismatch"), "{failure}");
    }

    #[test]
    fn deleted_and_swapped_records_are_found() {
        let mut records = chain(4);
        records.remove(1);
        assert_eq!(run(records).unwrap_err().seq, Some(2));
        let mut records = chain(4);
        records.swap(2, 3);
        assert_eq!(run(records).unwrap_err().seq, Some(3));
    }

    #[test]
    fn a_partial_export_takes_its_first_prev_hash_as_anchor() {
        let records = chain(4);
        let mut checker = ChainChecker::new(3);
        for (i, bytes) in records.into_iter().enumerate().skip(2) {
            checker.check(RawRecord { place: Place::Line(i as u64 - 1), bytes, meta: None, fault: None }).unwrap();
        }
        assert!(checker.anchor.is_some());
    }
}
