//! Segments: the journal stores the records of a group in runs of consecutive seqs, one sled
//! value per run, instead of one sled key per record. sled 0.34 copies the leaf an insert lands
//! in, so its cost is per key: a payout line used to cost a whole key insert for its record
//! alone (38-51k records/s here, against 550-640k for the same bytes appended to a file).
//! A segment holds at most `SEGMENT_RECORDS_MAX` records and about `SEGMENT_BYTES_MAX` bytes,
//! and never spans two groups (a group is one atomic batch; segments are never rewritten).
//!
//! Key: `s` + first seq (u64 big-endian). Value (all integers little-endian):
//! ```text
//! u8  version (1)
//! u32 count
//! count x { u32 end offset of the record in the data part, u8 event type (index in
//!           EventData::TYPE_NAMES), u8 len + routing qualifier, u16 len + event id }
//! data: the records' stored bytes (canonical JSON, see `chain`), back to back
//! ```
//! The index part lets the relay publish a record (type, id, routing key) without parsing it;
//! it is not covered by the hash chain, so `audit verify` checks it against each parsed event.

use std::ops::Range;

pub const SEGMENT_RECORDS_MAX: usize = 128;
/// A segment closes once its data reach this size. With sled's segment size set to 8 MiB
/// (`engine::open_db`) a leaf of 16 such values stays under sled's blob threshold (2 MiB), so
/// values are written inline in sled's log, not as one file each.
pub const SEGMENT_BYTES_MAX: usize = 96 * 1024;
const VERSION: u8 = 1;

/// What the relay needs of a record, kept beside it in its segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// Index in `EventData::TYPE_NAMES`.
    pub type_code: u8,
    /// The routing key's qualifier: a BIN, a province, `national` or `all` (`bus::routing`).
    pub qualifier: String,
    /// The event's id.
    pub id: String,
}

impl RecordMeta {
    pub fn of(event: &crate::event::Event) -> RecordMeta {
        let name = event.data.type_name();
        let type_code = crate::event::EventData::TYPE_NAMES.iter().position(|n| *n == name).expect("every event type is listed") as u8;
        RecordMeta { type_code, qualifier: event.data.route_qualifier().to_string(), id: event.id.clone() }
    }

    pub fn type_name(&self) -> Option<&'static str> {
        crate::event::EventData::TYPE_NAMES.get(usize::from(self.type_code)).copied()
    }

    /// The routing key of the record on the events exchange.
    pub fn routing_key(&self) -> String {
        format!("{}.{}", self.type_name().unwrap_or("unknown"), self.qualifier)
    }
}

/// A sealed record ready to append.
#[derive(Clone, Debug)]
pub struct SealedRecord {
    pub seq: u64,
    pub bytes: Vec<u8>,
    pub meta: RecordMeta,
}

pub fn key(first_seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b's';
    k[1..].copy_from_slice(&first_seq.to_be_bytes());
    k
}

/// The first seq of a segment key, if it is one.
pub fn first_seq_of(key: &[u8]) -> Option<u64> {
    match key {
        [b's', rest @ ..] if rest.len() == 8 => Some(u64::from_be_bytes(rest.try_into().expect("8 bytes"))),
        _ => None,
    }
}

/// Packs a group's records (contiguous seqs) into segments: (key, value) pairs.
pub fn pack(records: &[SealedRecord]) -> Vec<([u8; 9], Vec<u8>)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < records.len() && end - start < SEGMENT_RECORDS_MAX && (end == start || bytes < SEGMENT_BYTES_MAX) {
            bytes += records[end].bytes.len();
            end += 1;
        }
        out.push((key(records[start].seq), encode(&records[start..end])));
        start = end;
    }
    out
}

fn encode(records: &[SealedRecord]) -> Vec<u8> {
    let meta_len: usize = records.iter().map(|r| 4 + 1 + 1 + r.meta.qualifier.len().min(255) + 2 + r.meta.id.len().min(u16::MAX as usize)).sum();
    let data_len: usize = records.iter().map(|r| r.bytes.len()).sum();
    let mut v = Vec::with_capacity(1 + 4 + meta_len + data_len);
    v.push(VERSION);
    v.extend_from_slice(&u32::try_from(records.len()).expect("a segment holds few records").to_le_bytes());
    let mut end = 0usize;
    for r in records {
        end += r.bytes.len();
        v.extend_from_slice(&u32::try_from(end).expect("a segment's data stay far below 4 GiB").to_le_bytes());
        v.push(r.meta.type_code);
        let q = truncate(&r.meta.qualifier, 255);
        v.push(q.len() as u8);
        v.extend_from_slice(q.as_bytes());
        let id = truncate(&r.meta.id, u16::MAX as usize);
        v.extend_from_slice(&(id.len() as u16).to_le_bytes());
        v.extend_from_slice(id.as_bytes());
    }
    for r in records {
        v.extend_from_slice(&r.bytes);
    }
    v
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A segment's value, decoded lazily: the index is read once, records are slices of the value.
pub struct Segment {
    pub first_seq: u64,
    value: sled::IVec,
    entries: Vec<(Range<usize>, RecordMeta)>,
}

/// Why a segment value cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("segment at seq {first_seq} is damaged: {detail}")]
pub struct SegmentError {
    pub first_seq: u64,
    pub detail: String,
}

impl Segment {
    pub fn decode(first_seq: u64, value: sled::IVec) -> Result<Segment, SegmentError> {
        let err = |detail: &str| SegmentError { first_seq, detail: detail.to_string() };
        let b: &[u8] = &value;
        if b.first() != Some(&VERSION) {
            return Err(err("unknown segment version"));
        }
        let mut at = 1usize;
        let take = |at: &mut usize, n: usize| -> Result<&[u8], SegmentError> {
            let s = b.get(*at..*at + n).ok_or_else(|| err("index cut short"))?;
            *at += n;
            Ok(s)
        };
        let count = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes")) as usize;
        if count == 0 || count > SEGMENT_RECORDS_MAX {
            return Err(err("record count out of range"));
        }
        let mut raw = Vec::with_capacity(count);
        for _ in 0..count {
            let end = u32::from_le_bytes(take(&mut at, 4)?.try_into().expect("4 bytes")) as usize;
            let type_code = take(&mut at, 1)?[0];
            let qlen = usize::from(take(&mut at, 1)?[0]);
            let qualifier = String::from_utf8(take(&mut at, qlen)?.to_vec()).map_err(|_| err("qualifier is not UTF-8"))?;
            let idlen = usize::from(u16::from_le_bytes(take(&mut at, 2)?.try_into().expect("2 bytes")));
            let id = String::from_utf8(take(&mut at, idlen)?.to_vec()).map_err(|_| err("id is not UTF-8"))?;
            raw.push((end, RecordMeta { type_code, qualifier, id }));
        }
        let data_start = at;
        let mut start = data_start;
        let mut entries = Vec::with_capacity(count);
        for (end, meta) in raw {
            let end = data_start.checked_add(end).filter(|e| *e >= start && *e <= b.len()).ok_or_else(|| err("record offsets out of order"))?;
            entries.push((start..end, meta));
            start = end;
        }
        if start != b.len() {
            return Err(err("data beyond the last record"));
        }
        Ok(Segment { first_seq, value, entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The last seq in this segment.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.entries.len() as u64 - 1
    }

    pub fn contains(&self, seq: u64) -> bool {
        seq >= self.first_seq && seq <= self.last_seq()
    }

    /// The record at `seq` (which must be in this segment).
    pub fn record(&self, seq: u64) -> RecordBytes {
        let (range, _) = &self.entries[(seq - self.first_seq) as usize];
        RecordBytes { value: self.value.clone(), range: range.clone() }
    }

    pub fn meta(&self, seq: u64) -> &RecordMeta {
        &self.entries[(seq - self.first_seq) as usize].1
    }

    /// Records of this segment from `seq` on: (seq, bytes, meta).
    pub fn records_from(&self, seq: u64) -> impl Iterator<Item = (u64, RecordBytes, &RecordMeta)> + '_ {
        let skip = seq.saturating_sub(self.first_seq) as usize;
        self.entries
            .iter()
            .enumerate()
            .skip(skip)
            .map(move |(i, (range, meta))| (self.first_seq + i as u64, RecordBytes { value: self.value.clone(), range: range.clone() }, meta))
    }
}

/// A record's stored bytes: a slice of its segment's value (cheap to clone; no copy).
#[derive(Clone)]
pub struct RecordBytes {
    value: sled::IVec,
    range: Range<usize>,
}

impl std::ops::Deref for RecordBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.value[self.range.clone()]
    }
}

impl AsRef<[u8]> for RecordBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl std::fmt::Debug for RecordBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecordBytes({} bytes)", self.range.len())
    }
}

/// Reads the segment holding `seq`, if any.
pub fn find(journal: &sled::Tree, seq: u64) -> Result<Option<Segment>, FindError> {
    let Some(item) = journal.range(key(0)..=key(seq)).next_back() else { return Ok(None) };
    let (k, v) = item?;
    let first = first_seq_of(&k).expect("keys in the segment range are segment keys");
    let segment = Segment::decode(first, v)?;
    Ok(segment.contains(seq).then_some(segment))
}

/// Segments from the one holding `from` (or the first after it) on, in seq order.
pub fn from(journal: &sled::Tree, from: u64) -> impl Iterator<Item = Result<Segment, FindError>> {
    let start = match journal.range(key(0)..=key(from)).next_back() {
        Some(Ok((k, _))) => first_seq_of(&k).expect("segment key"),
        _ => from,
    };
    journal.range(key(start)..=key(u64::MAX)).map(|item| {
        let (k, v) = item?;
        let first = first_seq_of(&k).expect("keys in the segment range are segment keys");
        Ok(Segment::decode(first, v)?)
    })
}

#[derive(Debug, thiserror::Error)]
pub enum FindError {
    #[error(transparent)]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, len: usize) -> SealedRecord {
        SealedRecord {
            seq,
            bytes: vec![b'a' + (seq % 26) as u8; len],
            meta: RecordMeta { type_code: (seq % 19) as u8, qualifier: format!("q{seq}"), id: format!("cmd-{seq}/1") },
        }
    }

    #[test]
    fn packs_and_reads_back_every_record() {
        let records: Vec<SealedRecord> = (10..10 + 1_000).map(|s| record(s, 300 + (s as usize % 700))).collect();
        let packed = pack(&records);
        assert!(packed.len() > 1000 / SEGMENT_RECORDS_MAX);
        let mut seq = 10;
        for (k, v) in packed {
            let first = first_seq_of(&k).unwrap();
            assert_eq!(first, seq);
            let s = Segment::decode(first, sled::IVec::from(v)).unwrap();
            assert!(s.len() <= SEGMENT_RECORDS_MAX);
            for (seq_here, bytes, meta) in s.records_from(first) {
                let r = &records[(seq_here - 10) as usize];
                assert_eq!(&*bytes, r.bytes.as_slice());
                assert_eq!(meta, &r.meta);
                seq += 1;
            }
        }
        assert_eq!(seq, 1_010);
    }

    #[test]
    fn damaged_segments_are_refused() {
        let v = pack(&[record(1, 10), record(2, 20)]).remove(0).1;
        assert!(Segment::decode(1, sled::IVec::from(v.clone())).is_ok());
        for cut in [0, 1, 5, v.len() - 1] {
            assert!(Segment::decode(1, sled::IVec::from(&v[..cut])).is_err(), "cut at {cut}");
        }
        let mut longer = v.clone();
        longer.push(b'x');
        assert!(Segment::decode(1, sled::IVec::from(longer)).is_err());
    }
}
