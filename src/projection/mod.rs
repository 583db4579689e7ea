//! Projections: read views derived from the log, in their own sled tree, with the last applied
//! seq stored in the same atomic batch as the views it produced. On open they catch up from
//! the log, so a crash between append and apply loses nothing. Deleting them and replaying
//! gives byte-identical views.
//!
//! Keys of the `views` tree (values in postcard, see `views`):
//! - `prog/<program>`, `bud/<province>/<program>/<period>`, `acct/<ledger account>`: program
//!   rules, budgets, the double-entry ledger;
//! - `cit/<citizen_id>`: a person and their enrollments;
//! - `bat/<batch_id>`: a batch's totals by status and bank, rejected lines by reason;
//! - `pst/<batch_id>/<block:06>`: the states of the payouts of 1,024 lines (`LineBlock`);
//! - `bix/<batch_id>/<citizen_id>`: the batch's citizen index, in sorted chunks;
//! - `mon/<province>/<program>/<period>/<batch_id>`: the batches of a month (empty values);
//! - `_applied`: the last seq applied.
//!
//! A group's events are folded in memory (each touched key read once) and every touched key is
//! written once, in one atomic batch: a 10,000-line batch writes about 40 keys, not one or more
//! per line. A batch's lines, a payout's details and its history are read from the log
//! (`ViewReader`).
//!
//! The ledger (`acct/`) is double-entry: every posting debits one account and credits another,
//! so the sum of all balances is zero; this is asserted after every group. Money paid to
//! beneficiaries sits in one control account per province and program
//! (`beneficiaries:<province>:<program>`); each citizen's share of it is derived from their
//! payouts (`CitizenView::balances`), and `audit verify` checks that the shares add up to it.

mod apply;
mod read;
pub mod views;

use crate::domain::Balance;
use crate::event::Event;
use crate::log::{parse_event, Log, LogError};
pub use read::ViewReader;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use views::*;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("storage error in views: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("view {key} is corrupt: {detail}")]
    Corrupt { key: String, detail: String },
}

/// Keys and values of a tree, in key order.
pub type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

pub struct Views {
    tree: sled::Tree,
    applied: u64,
    reader: ViewReader,
}

/// Reads go through `ViewReader` (`views.citizen(..)` works on `Views` too).
impl std::ops::Deref for Views {
    type Target = ViewReader;
    fn deref(&self) -> &ViewReader {
        &self.reader
    }
}

/// Events folded into one write of the views, at most, during catch-up and rebuild: bounds
/// memory while keeping rewrites of the same key rare.
const CATCH_UP_EVENTS_MAX: u64 = 50_000;

impl Views {
    /// Opens the views and catches them up with the log. `progress` is called with the number of
    /// events applied so far while catching up.
    pub fn open(db: &sled::Db, log: &Log, progress: &mut dyn FnMut(u64)) -> Result<Views, ViewError> {
        let tree = db.open_tree("views")?;
        let applied = read::applied_seq(&tree)?;
        let mut views = Views { reader: ViewReader::new(tree.clone(), log.reader()), tree, applied };
        let total = views.ledger_total()?;
        assert_eq!(total, Decimal::ZERO, "the double-entry ledger sums to zero at open");
        views.catch_up(log, progress)?;
        Ok(views)
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies every logged event past `applied`, in chunks of bounded size. Reading and parsing
    /// the next chunk runs on a second thread while this one applies the current one.
    pub fn catch_up(&mut self, log: &Log, progress: &mut dyn FnMut(u64)) -> Result<(), ViewError> {
        let head = log.head().seq;
        if self.applied >= head {
            return Ok(());
        }
        let reader = log.reader();
        let from = self.applied + 1;
        std::thread::scope(|scope| {
            // Bound 1: at most two parsed chunks exist at a time (memory stays bounded).
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<(u64, Event)>, ViewError>>(1);
            scope.spawn(move || {
                let mut next = from;
                while next <= head {
                    let to = (next + CATCH_UP_EVENTS_MAX - 1).min(head);
                    let chunk = reader
                        .range(next, to)
                        .map(|item| item.and_then(|(seq, bytes)| parse_event(seq, &bytes).map(|e| (seq, e))))
                        .collect::<Result<Vec<_>, LogError>>()
                        .map_err(ViewError::from);
                    let failed = chunk.is_err();
                    if tx.send(chunk).is_err() || failed {
                        return;
                    }
                    next = to + 1;
                }
            });
            let mut done = 0;
            for chunk in rx {
                let events = chunk?;
                done += events.len() as u64;
                self.apply(&events)?;
                progress(done);
            }
            Ok::<(), ViewError>(())
        })?;
        if self.applied != head {
            return Err(ViewError::Corrupt { key: "_applied".into(), detail: format!("the log ends at seq {} but its head says {head}", self.applied) });
        }
        Ok(())
    }

    /// Applies a group of events (contiguous seqs following `applied`) in one atomic batch.
    pub fn apply(&mut self, events: &[(u64, Event)]) -> Result<(), ViewError> {
        let Some(last) = events.last().map(|(s, _)| *s) else { return Ok(()) };
        assert_eq!(events[0].0, self.applied + 1, "views apply the seq right after the last applied");
        let mut txn = Txn { tree: &self.tree, docs: HashMap::new(), index: BTreeMap::new() };
        for (seq, event) in events {
            apply::apply(&mut txn, *seq, event)?;
        }
        txn.write_citizen_indexes()?;
        let mut batch = sled::Batch::default();
        let mut delta = Decimal::ZERO;
        for (key, doc) in txn.docs {
            if let Doc::Account(balance, before) = &doc {
                delta += balance.0 - before.0;
            }
            match doc {
                Doc::Removed => batch.remove(key.as_bytes()),
                doc => batch.insert(key.as_bytes(), doc.to_bytes()),
            }
        }
        assert_eq!(delta, Decimal::ZERO, "every group's ledger postings balance (double entry)");
        batch.insert(b"_applied", &last.to_be_bytes());
        self.tree.apply_batch(batch)?;
        self.applied = last;
        Ok(())
    }

    /// Sum of all ledger balances; zero when the books balance.
    pub fn ledger_total(&self) -> Result<Decimal, ViewError> {
        let mut total = Decimal::ZERO;
        for item in self.tree.scan_prefix(b"acct/") {
            let (k, v) = item?;
            let b: Balance = decode(&k, &v)?;
            total += b.0;
        }
        Ok(total)
    }

    /// A read handle that can live on other threads (the HTTP API) while the writer goes on.
    pub fn reader(&self) -> ViewReader {
        self.reader.clone()
    }

    /// Every key and value, in key order: what "byte-identical views" compares.
    pub fn dump(&self) -> Result<KeyValues, ViewError> {
        self.tree.iter().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(ViewError::from)).collect()
    }

    /// Drops every view and replays the whole log.
    pub fn rebuild(&mut self, log: &Log, progress: &mut dyn FnMut(u64)) -> Result<(), ViewError> {
        self.tree.clear()?;
        self.applied = 0;
        self.catch_up(log, progress)?;
        self.tree.flush()?;
        Ok(())
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("views serialize")
}

pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, ViewError> {
    postcard::from_bytes(bytes).map_err(|e| ViewError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), detail: e.to_string() })
}

/// A loaded view document, changed in memory during a group and written once at its end.
enum Doc {
    Citizen(Box<CitizenRecord>),
    /// A key this group deletes.
    Removed,
    /// A key whose presence is the fact (`mon/`).
    Marker,
    Batch(Box<BatchView>),
    Block(Box<LineBlock>),
    Index(CitizenIndexChunk),
    Budget(BudgetView),
    Program(ProgramView),
    /// Balance now, and as it was before this group (for the zero-sum check).
    Account(Balance, Balance),
}

impl Doc {
    fn to_bytes(&self) -> Vec<u8> {
        match self {
            Doc::Citizen(v) => encode(v),
            Doc::Removed | Doc::Marker => Vec::new(),
            Doc::Batch(v) => encode(v),
            Doc::Block(v) => encode(v),
            Doc::Index(v) => encode(v),
            Doc::Budget(v) => encode(v),
            Doc::Program(v) => encode(v),
            Doc::Account(v, _) => encode(v),
        }
    }
}

/// The documents of one group: loaded from the tree on first touch, then changed in memory.
pub(crate) struct Txn<'t> {
    tree: &'t sled::Tree,
    docs: HashMap<String, Doc>,
    /// New citizen index entries of this group, by batch: written at its end, merged with what
    /// the batch already has (a catch-up chunk may end in the middle of a batch).
    index: BTreeMap<String, Vec<(u64, u32)>>,
}

macro_rules! accessor {
    ($name:ident, $variant:ident, $ty:ty, $wrap:expr) => {
        pub(crate) fn $name(&mut self, key: String) -> Result<&mut $ty, ViewError> {
            if !self.docs.contains_key(&key) {
                let v: $ty = match self.tree.get(key.as_bytes())? {
                    Some(b) => decode(key.as_bytes(), &b)?,
                    None => <$ty>::default(),
                };
                self.docs.insert(key.clone(), $wrap(v));
            }
            match self.docs.get_mut(&key) {
                Some(Doc::$variant(v)) => Ok(v),
                _ => Err(ViewError::Corrupt { key, detail: concat!("expected a ", stringify!($variant), " view").into() }),
            }
        }
    };
}

impl Txn<'_> {
    accessor!(citizen, Citizen, CitizenRecord, |v| Doc::Citizen(Box::new(v)));
    accessor!(batch, Batch, BatchView, |v| Doc::Batch(Box::new(v)));
    accessor!(budget, Budget, BudgetView, Doc::Budget);
    accessor!(program, Program, ProgramView, Doc::Program);

    /// The states of the block holding `line` of a batch, and the line's index in it.
    pub(crate) fn line(&mut self, batch_id: &str, line: u32) -> Result<&mut LineState, ViewError> {
        assert!(line >= 1, "lines count from 1");
        let (block, index) = ((line - 1) / LINE_BLOCK_LINES, ((line - 1) % LINE_BLOCK_LINES) as usize);
        let key = read::block_key(batch_id, block);
        if !self.docs.contains_key(&key) {
            let mut v: LineBlock = match self.tree.get(key.as_bytes())? {
                Some(b) => decode(key.as_bytes(), &b)?,
                None => LineBlock::default(),
            };
            v.lines.resize(LINE_BLOCK_LINES as usize, LineState::default());
            self.docs.insert(key.clone(), Doc::Block(Box::new(v)));
        }
        match self.docs.get_mut(&key) {
            Some(Doc::Block(v)) => Ok(&mut v.lines[index]),
            _ => Err(ViewError::Corrupt { key, detail: "expected a block of payout states".into() }),
        }
    }

    pub(crate) fn mark(&mut self, key: String) {
        self.docs.insert(key, Doc::Marker);
    }

    /// Adds a batch line to the batch's citizen index.
    pub(crate) fn index_line(&mut self, batch_id: &str, citizen: u64, line: u32) {
        self.index.entry(batch_id.to_string()).or_default().push((citizen, line));
    }

    /// Writes the citizen index of every batch that got lines in this group: its entries, old
    /// and new, sorted and cut into chunks the same way whatever groups they came in.
    fn write_citizen_indexes(&mut self) -> Result<(), ViewError> {
        for (batch_id, mut entries) in std::mem::take(&mut self.index) {
            let prefix = format!("bix/{batch_id}/");
            for item in self.tree.scan_prefix(prefix.as_bytes()) {
                let (k, v) = item?;
                let chunk: CitizenIndexChunk = decode(&k, &v)?;
                entries.extend(chunk.entries);
                self.docs.insert(String::from_utf8_lossy(&k).into_owned(), Doc::Removed);
            }
            entries.sort_unstable();
            for chunk in entries.chunks(CITIZEN_INDEX_CHUNK) {
                self.docs.insert(format!("{prefix}{:012}", chunk[0].0), Doc::Index(CitizenIndexChunk { entries: chunk.to_vec() }));
            }
        }
        Ok(())
    }

    /// Moves `amount` from one ledger account to another (debit `from`, credit `to`).
    pub(crate) fn post(&mut self, from: &str, to: &str, amount: Decimal) -> Result<(), ViewError> {
        self.account(from)?.0 .0 -= amount;
        self.account(to)?.0 .0 += amount;
        Ok(())
    }

    fn account(&mut self, name: &str) -> Result<(&mut Balance, Balance), ViewError> {
        let key = format!("acct/{name}");
        if !self.docs.contains_key(&key) {
            let b: Balance = match self.tree.get(key.as_bytes())? {
                Some(b) => decode(key.as_bytes(), &b)?,
                None => Balance::ZERO,
            };
            self.docs.insert(key.clone(), Doc::Account(b, b));
        }
        match self.docs.get_mut(&key) {
            Some(Doc::Account(now, before)) => Ok((now, *before)),
            _ => Err(ViewError::Corrupt { key, detail: "expected a ledger account".into() }),
        }
    }
}
