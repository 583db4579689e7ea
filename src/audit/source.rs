//! Where audit records come from: the `journal` tree of a data directory, read directly with
//! sled (no `Log::open`, no engine), or an export file in JSON Lines.

use super::AuditError;
use crate::log::segment::{self, RecordMeta};
use crate::log::Head;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

/// Longest line accepted from an export file. Records are a few KiB at most; the bound keeps a
/// damaged file (no newlines) from being read into memory whole.
pub const LINE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// One stored record before any check: its bytes and where it was found.
#[derive(Debug)]
pub struct RawRecord {
    pub place: Place,
    pub bytes: Vec<u8>,
    /// The record's entry in its segment's index (data directory only): checked against the
    /// parsed event, since the relay publishes by it.
    pub meta: Option<RecordMeta>,
    /// The segment holding this place could not be read (data directory only); `bytes` is empty.
    pub fault: Option<String>,
}

impl RawRecord {
    fn line(line: u64, bytes: Vec<u8>) -> RawRecord {
        RawRecord { place: Place::Line(line), bytes, meta: None, fault: None }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// At this seq of a segment of the journal tree (`log::segment`).
    Key(u64),
    /// At this line of an export file (from 1).
    Line(u64),
}

pub enum Source {
    DataDir { db: sled::Db, journal: sled::Tree },
    File { path: PathBuf },
}

impl Source {
    /// The journal of an open data directory. Opening a tree that does not exist creates it
    /// empty, so an empty journal is reported by the callers (head 0), never hidden.
    pub fn data_dir(db: &sled::Db) -> Result<Source, AuditError> {
        Ok(Source::DataDir { db: db.clone(), journal: db.open_tree("journal")? })
    }

    pub fn file(path: &Path) -> Source {
        Source::File { path: path.to_path_buf() }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::DataDir { .. } => "the journal".into(),
            Source::File { path } => path.display().to_string(),
        }
    }

    /// The head stored beside the journal (`h`), for a data directory. `Err` carries the
    /// reason when it is unreadable; `Ok(None)` when there is none (an empty log, or a file).
    pub fn stored_head(&self) -> Result<Option<Head>, String> {
        let Source::DataDir { journal, .. } = self else { return Ok(None) };
        match journal.get(b"h") {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("the stored head is not readable: {e}")),
            Ok(None) => Ok(None),
            Err(e) => Err(format!("storage error reading the head: {e}")),
        }
    }

    /// Records in stored order, from seq `from` on for a data directory (a file is read whole).
    pub fn records(&self, from: u64) -> Result<Box<dyn Iterator<Item = Result<RawRecord, AuditError>> + '_>, AuditError> {
        match self {
            Source::DataDir { journal, .. } => Ok(Box::new(journal_records(journal, from))),
            Source::File { path } => {
                let file = std::fs::File::open(path).map_err(|source| AuditError::Read { path: path.clone(), source })?;
                Ok(Box::new(Lines { reader: std::io::BufReader::with_capacity(1 << 20, file), line: 0, path: path.clone() }))
            }
        }
    }
}

/// The records of a journal's segments from seq `from` on, in key order, each with its index
/// entry. A segment that cannot be decoded becomes one record with a `fault` at its first seq
/// (the chain check reports it there); a storage error ends the iteration with an error.
pub fn journal_records(journal: &sled::Tree, from: u64) -> impl Iterator<Item = Result<RawRecord, AuditError>> {
    segment::from(journal, from).flat_map(move |item| -> Vec<Result<RawRecord, AuditError>> {
        match item {
            Ok(s) => s
                .records_from(from)
                .map(|(seq, bytes, meta)| Ok(RawRecord { place: Place::Key(seq), bytes: bytes.to_vec(), meta: Some(meta.clone()), fault: None }))
                .collect(),
            Err(segment::FindError::Segment(e)) => {
                vec![Ok(RawRecord { place: Place::Key(e.first_seq), bytes: Vec::new(), meta: None, fault: Some(e.to_string()) })]
            }
            Err(segment::FindError::Sled(e)) => vec![Err(AuditError::from(e))],
        }
    })
}

struct Lines {
    reader: std::io::BufReader<std::fs::File>,
    line: u64,
    path: PathBuf,
}

impl Iterator for Lines {
    type Item = Result<RawRecord, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut bytes = Vec::new();
        match (&mut self.reader).take(LINE_BYTES_MAX + 1).read_until(b'\n', &mut bytes) {
            Ok(0) => None,
            Ok(_) => {
                self.line += 1;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                } else if bytes.len() as u64 > LINE_BYTES_MAX {
                    // Longer than any record: hand it on truncated; it will not parse.
                    let _ = self.reader.skip_until(b'\n');
                }
                Some(Ok(RawRecord::line(self.line, bytes)))
            }
            Err(source) => Some(Err(AuditError::Read { path: self.path.clone(), source })),
        }
    }
}
