//! The append-only log in sled: one writer, group commit (one atomic batch, one flush per
//! group), the hash chain computed at append and stored, and the command index written in the
//! same atomic batch as the events it produced.
//!
//! Keys of the `journal` tree:
//! - `s` + first seq (u64 big-endian) -> a segment: the audit records (canonical JSON, see
//!   `chain`) of a run of consecutive seqs of one group, with a small index (`segment`)
//! - `c` + command_id [+ 0x00 + sender] -> `CommandEntry` (payload digest and the seq range of
//!   its events): command ids are scoped by sender (`command_key`)
//! - `r` + command_id + 0x00 + digest -> `CommandEntry` of a `command_id_reused` rejection (the
//!   digest covers the sender)
//! - `h` -> `Head` (seq and hash of the last record)

pub mod chain;
pub mod segment;

use crate::event::Event;
use chain::{Record, GENESIS_HASH};
use segment::{RecordBytes, RecordMeta, SealedRecord};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("log record at seq {seq} is corrupt: {detail}")]
    Corrupt { seq: u64, detail: String },
    #[error("this data directory was written by an earlier ansinh (one sled key per record, before segments): export it with that version (`ansinh audit export`) and start a new data directory")]
    OldLayout,
}

impl From<segment::FindError> for LogError {
    fn from(e: segment::FindError) -> LogError {
        match e {
            segment::FindError::Sled(e) => LogError::Sled(e),
            segment::FindError::Segment(e) => LogError::Corrupt { seq: e.first_seq, detail: e.detail },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

/// What the index keeps per command id: enough to recognise a redelivery (the digest) and to
/// rebuild its outcome from the events it wrote. Stored as 48 bytes: the digest's 32 bytes,
/// then the two seqs big-endian.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandEntry {
    /// Lowercase hex SHA-256 (64 characters).
    pub digest: String,
    pub first_seq: u64,
    pub last_seq: u64,
}

impl CommandEntry {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = hex::decode(&self.digest).expect("a command digest is 64 hex digits");
        assert_eq!(v.len(), 32, "a command digest is a SHA-256");
        v.extend_from_slice(&self.first_seq.to_be_bytes());
        v.extend_from_slice(&self.last_seq.to_be_bytes());
        v
    }

    pub fn from_bytes(b: &[u8]) -> Option<CommandEntry> {
        if b.len() != 48 {
            return None;
        }
        let seq = |r: std::ops::Range<usize>| u64::from_be_bytes(b[r].try_into().expect("8 bytes"));
        Some(CommandEntry { digest: hex::encode(&b[..32]), first_seq: seq(32..40), last_seq: seq(40..48) })
    }
}

/// A group ready to append: sealed records and the index entries they answer.
#[derive(Default)]
pub struct Group {
    pub records: Vec<SealedRecord>,
    /// (`command_key`, entry) of each command decided, (`reuse_key`, entry) of each
    /// `command_id_reused` rejection.
    pub commands: Vec<(Vec<u8>, CommandEntry)>,
    pub reuses: Vec<(Vec<u8>, CommandEntry)>,
    pub head: Option<Head>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct AppendTimings {
    pub write: std::time::Duration,
    pub flush: std::time::Duration,
}

pub struct Log {
    journal: sled::Tree,
    head: Head,
}

/// The index key of a command id: command ids are a namespace per sender (the broker-validated
/// user; `file` for the embedded intake), so one sender can never take, or learn about, an id of
/// another's. A command without a sender (an AMQP message with no user id, refused as
/// unauthorized) has the key without a sender part; command ids hold no 0x00.
pub fn command_key(id: &str, sender: Option<&str>) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 2 + sender.map_or(0, str::len));
    k.push(b'c');
    k.extend_from_slice(id.as_bytes());
    if let Some(sender) = sender {
        k.push(0);
        k.extend_from_slice(sender.as_bytes());
    }
    k
}

/// The key of a `command_id_reused` rejection: the digest covers the payload and the sender.
pub fn reuse_key(id: &str, digest: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + digest.len() + 2);
    k.push(b'r');
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k.extend_from_slice(digest.as_bytes());
    k
}

fn entry(journal: &sled::Tree, key: &[u8]) -> Result<Option<CommandEntry>, LogError> {
    match journal.get(key)? {
        Some(bytes) => {
            CommandEntry::from_bytes(&bytes).map(Some).ok_or_else(|| LogError::Corrupt { seq: 0, detail: "command index entry is not 48 bytes".into() })
        }
        None => Ok(None),
    }
}

impl Log {
    pub fn open(db: &sled::Db) -> Result<Log, LogError> {
        let journal = db.open_tree("journal")?;
        if journal.scan_prefix(b"e").next().is_some() {
            return Err(LogError::OldLayout);
        }
        let head = match journal.get(b"h")? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt { seq: 0, detail: format!("head: {e}") })?,
            None => Head { seq: 0, hash: GENESIS_HASH.to_string() },
        };
        let log = Log { journal, head };
        // The head written with the last group must point at the last record of that group.
        if log.head.seq > 0 {
            let last = log.read(log.head.seq)?.ok_or_else(|| LogError::Corrupt { seq: log.head.seq, detail: "head points past the last record".into() })?;
            if last.hash != log.head.hash {
                return Err(LogError::Corrupt { seq: log.head.seq, detail: "head hash differs from the last record's hash".into() });
            }
        }
        Ok(log)
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The index entry under a key (`command_key`, `reuse_key`).
    pub fn entry(&self, key: &[u8]) -> Result<Option<CommandEntry>, LogError> {
        entry(&self.journal, key)
    }

    /// The index entry of a sender's command id.
    pub fn command(&self, command_id: &str, sender: Option<&str>) -> Result<Option<CommandEntry>, LogError> {
        self.entry(&command_key(command_id, sender))
    }

    /// The record at `seq`, parsed.
    pub fn read(&self, seq: u64) -> Result<Option<Record>, LogError> {
        match self.read_raw(seq)? {
            Some(bytes) => parse_record(seq, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The stored bytes of the record at `seq` (canonical JSON), for export.
    pub fn read_raw(&self, seq: u64) -> Result<Option<RecordBytes>, LogError> {
        Ok(segment::find(&self.journal, seq)?.map(|s| s.record(seq)))
    }

    /// Records from `from` to `to` inclusive, in seq order.
    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = Result<(u64, RecordBytes), LogError>> {
        range(&self.journal, from, to).map(|r| r.map(|(seq, bytes, _)| (seq, bytes)))
    }

    /// A read handle for other threads (the outbox relay): sees every appended group (see `LogReader`).
    pub fn reader(&self) -> LogReader {
        LogReader { journal: self.journal.clone() }
    }

    /// Appends a group in one atomic batch and flushes once. Returns only when the group is
    /// durable: this is the point after which a command may be acknowledged.
    /// Returns how long the batch write and the flush took, for metrics.
    pub fn append(&mut self, group: Group) -> Result<AppendTimings, LogError> {
        let head = group.head.expect("a group to append has a new head");
        assert!(head.seq > self.head.seq, "the head only moves forward");
        let mut batch = sled::Batch::default();
        let mut expected = self.head.seq + 1;
        for r in &group.records {
            assert_eq!(r.seq, expected, "seqs are contiguous from the current head");
            expected += 1;
        }
        assert_eq!(expected - 1, head.seq, "the new head is the group's last record");
        for (key, value) in segment::pack(&group.records) {
            batch.insert(&key, value);
        }
        for (key, entry) in group.commands.iter().chain(&group.reuses) {
            batch.insert(key.as_slice(), entry.to_bytes());
        }
        batch.insert(b"h", serde_json::to_vec(&head).expect("head serializes"));
        let started = std::time::Instant::now();
        self.journal.apply_batch(batch)?;
        let written = std::time::Instant::now();
        self.journal.flush()?;
        let timings = AppendTimings { write: written - started, flush: written.elapsed() };
        self.head = head;
        Ok(timings)
    }
}

/// Records from `from` to `to` inclusive with their index entries, in seq order.
fn range(journal: &sled::Tree, from: u64, to: u64) -> impl Iterator<Item = Result<(u64, RecordBytes, RecordMeta), LogError>> {
    let segments = if from > to { None } else { Some(segment::from(journal, from)) };
    let mut done = false;
    segments
        .into_iter()
        .flatten()
        .map_while(move |item| {
            if done {
                return None;
            }
            match item {
                Ok(s) if s.first_seq > to => None,
                Ok(s) => {
                    done = s.last_seq() >= to;
                    let records: Vec<_> = s.records_from(from).take_while(|(seq, _, _)| *seq <= to).map(|(seq, b, m)| Ok((seq, b, m.clone()))).collect();
                    Some(records)
                }
                Err(e) => {
                    done = true;
                    Some(vec![Err(LogError::from(e))])
                }
            }
        })
        .flatten()
}

/// Read access to the journal from another thread. The head it reads is the last appended one,
/// written in the same atomic batch as the records it points to; sled makes a batch visible
/// before its flush returns, so a publisher must bound itself by the durable head the writer
/// reports, as the relay does (`Storage::durable_seq`).
#[derive(Clone)]
pub struct LogReader {
    journal: sled::Tree,
}

impl LogReader {
    /// The index entry under a key (`command_key`, `reuse_key`).
    pub fn entry(&self, key: &[u8]) -> Result<Option<CommandEntry>, LogError> {
        entry(&self.journal, key)
    }

    pub fn head(&self) -> Result<Head, LogError> {
        match self.journal.get(b"h")? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| LogError::Corrupt { seq: 0, detail: format!("head: {e}") }),
            None => Ok(Head { seq: 0, hash: GENESIS_HASH.to_string() }),
        }
    }

    pub fn range(&self, from: u64, to: u64) -> impl Iterator<Item = Result<(u64, RecordBytes), LogError>> {
        range(&self.journal, from, to).map(|r| r.map(|(seq, bytes, _)| (seq, bytes)))
    }

    /// The event at `seq`, parsed.
    pub fn read_event(&self, seq: u64) -> Result<Option<Event>, LogError> {
        match segment::find(&self.journal, seq)? {
            Some(s) => parse_event(seq, &s.record(seq)).map(Some),
            None => Ok(None),
        }
    }

    /// Records with their index entries (type, id, routing qualifier), for publishing without
    /// parsing them.
    pub fn range_with_meta(&self, from: u64, to: u64) -> impl Iterator<Item = Result<(u64, RecordBytes, RecordMeta), LogError>> {
        range(&self.journal, from, to)
    }
}

pub fn parse_record(seq: u64, bytes: &[u8]) -> Result<Record, LogError> {
    serde_json::from_slice::<Record>(bytes).map_err(|e| LogError::Corrupt { seq, detail: e.to_string() })
}

/// Parses only the event of a stored record.
pub fn parse_event(seq: u64, bytes: &[u8]) -> Result<Event, LogError> {
    parse_record(seq, bytes).map(|r| r.event)
}
