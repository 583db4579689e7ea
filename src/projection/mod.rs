//! Projections: read views derived from the log, in their own sled tree, with the last applied
//! seq stored in the same atomic batch as the views it produced. On open they catch up from
//! the log, so a crash between append and apply loses nothing. Deleting them and replaying
//! gives byte-identical views.
//!
//! Keys of the `views` tree:
//! `cit/<citizen_id>` `cpay/<citizen_id>/<seq:020>` (-> payout id) `pay/<payout_id>`
//! `bat/<batch_id>` `line/<batch_id>/<line_no:06>` `bud/<province>/<program>/<period>`
//! `prog/<program>` `acct/<ledger account>` `_applied`.
//!
//! A citizen's payouts and balances are derived on read (`ViewReader::citizen`) from the
//! `cpay/` index and the payout views, so a payout line writes a small index entry instead of
//! rewriting the citizen document (see `views::CitizenRecord`).
//!
//! The ledger (`acct/`) is double-entry: every posting debits one account and credits another,
//! so the sum of all balances is zero; this is asserted after every group.

mod apply;
pub mod views;

use crate::domain::Balance;
use crate::event::Event;
use crate::log::{parse_event, Log, LogError};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
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

impl Views {
    /// Opens the views and catches them up with the log. `progress` is called with the number of
    /// events applied so far while catching up.
    pub fn open(db: &sled::Db, log: &Log, progress: &mut dyn FnMut(u64)) -> Result<Views, ViewError> {
        let tree = db.open_tree("views")?;
        let applied = match tree.get(b"_applied")? {
            Some(b) => u64::from_be_bytes(b.as_ref().try_into().map_err(|_| ViewError::Corrupt { key: "_applied".into(), detail: "not 8 bytes".into() })?),
            None => 0,
        };
        let mut views = Views { reader: ViewReader { tree: tree.clone() }, tree, applied };
        let total = views.ledger_total()?;
        assert_eq!(total, Decimal::ZERO, "the double-entry ledger sums to zero at open");
        views.catch_up(log, progress)?;
        Ok(views)
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Applies every logged event past `applied`, in groups of bounded size. Reading and parsing
    /// the next group runs on a second thread while this one applies the current group (on a
    /// rebuild, parsing is about a sixth of the work; the rest is applying).
    pub fn catch_up(&mut self, log: &Log, progress: &mut dyn FnMut(u64)) -> Result<(), ViewError> {
        const CHUNK: u64 = 10_000;
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
                    let to = (next + CHUNK - 1).min(head);
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
        let mut txn = Txn { tree: &self.tree, docs: HashMap::new() };
        for (seq, event) in events {
            apply::apply(&mut txn, *seq, event)?;
        }
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

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, ViewError> {
    serde_json::from_slice(bytes).map_err(|e| ViewError::Corrupt { key: String::from_utf8_lossy(key).into_owned(), detail: e.to_string() })
}

/// A loaded view document, changed in memory during a group and written once at its end.
enum Doc {
    Citizen(Box<CitizenRecord>),
    /// A `cpay/` index entry: the payout id.
    Index(String),
    /// A key this group deletes.
    Removed,
    Payout(Box<PayoutView>),
    Batch(Box<BatchView>),
    Line(LineView),
    Budget(BudgetView),
    Program(ProgramView),
    /// Balance now, and as it was before this group (for the zero-sum check).
    Account(Balance, Balance),
}

impl Doc {
    fn to_bytes(&self) -> Vec<u8> {
        fn ser<T: Serialize>(v: &T) -> Vec<u8> {
            serde_json::to_vec(v).expect("views serialize to JSON")
        }
        match self {
            Doc::Citizen(v) => ser(v),
            Doc::Index(payout_id) => payout_id.as_bytes().to_vec(),
            Doc::Removed => Vec::new(),
            Doc::Payout(v) => ser(v),
            Doc::Batch(v) => ser(v),
            Doc::Line(v) => ser(v),
            Doc::Budget(v) => ser(v),
            Doc::Program(v) => ser(v),
            Doc::Account(v, _) => ser(v),
        }
    }
}

/// The documents of one group: loaded from the tree on first touch, then changed in memory.
pub(crate) struct Txn<'t> {
    tree: &'t sled::Tree,
    docs: HashMap<String, Doc>,
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
    accessor!(payout, Payout, PayoutView, |v| Doc::Payout(Box::new(v)));
    accessor!(batch, Batch, BatchView, |v| Doc::Batch(Box::new(v)));
    accessor!(line, Line, LineView, Doc::Line);
    accessor!(budget, Budget, BudgetView, Doc::Budget);
    accessor!(program, Program, ProgramView, Doc::Program);

    /// Adds a payout to its citizen's index, in the order payouts were instructed.
    pub(crate) fn index_payout(&mut self, citizen_id: &str, seq: u64, payout_id: &str) {
        self.docs.insert(format!("cpay/{citizen_id}/{seq:020}"), Doc::Index(payout_id.to_string()));
    }

    /// Moves a citizen's payout index to another citizen id (a re-determination); returns the
    /// payout ids in index order.
    pub(crate) fn move_payout_index(&mut self, from: &str, to: &str) -> Result<Vec<String>, ViewError> {
        let prefix = format!("cpay/{from}/");
        let mut entries: std::collections::BTreeMap<String, Option<String>> = std::collections::BTreeMap::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            entries.insert(String::from_utf8_lossy(&k).into_owned(), Some(String::from_utf8_lossy(&v).into_owned()));
        }
        for (k, doc) in &self.docs {
            if k.starts_with(&prefix) {
                entries.insert(k.clone(), if let Doc::Index(id) = doc { Some(id.clone()) } else { None });
            }
        }
        let mut ids = Vec::new();
        for (key, id) in entries {
            let Some(id) = id else { continue };
            let moved = format!("cpay/{to}/{}", &key[prefix.len()..]);
            self.docs.insert(key, Doc::Removed);
            self.docs.insert(moved, Doc::Index(id.clone()));
            ids.push(id);
        }
        Ok(ids)
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

    pub(crate) fn balance_of(&mut self, name: &str) -> Result<Balance, ViewError> {
        Ok(*self.account(name)?.0)
    }
}

/// Read access to the views, cheap to clone, safe to share across threads. Reads see every
/// group that `Views::apply` finished.
#[derive(Clone)]
pub struct ViewReader {
    tree: sled::Tree,
}

impl ViewReader {
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ViewError> {
        match self.tree.get(key.as_bytes())? {
            Some(v) => decode(key.as_bytes(), &v).map(Some),
            None => Ok(None),
        }
    }

    /// The citizen with their payouts and balances, composed from several keys: read again if a
    /// group was applied in between, so the parts always belong to the same seq.
    pub fn citizen(&self, citizen_id: &str) -> Result<Option<CitizenView>, ViewError> {
        loop {
            let before = self.applied_seq()?;
            let Some(record) = self.get::<CitizenRecord>(&format!("cit/{citizen_id}"))? else { return Ok(None) };
            let mut payouts = Vec::new();
            for item in self.tree.scan_prefix(format!("cpay/{citizen_id}/").as_bytes()) {
                let (k, id) = item?;
                let id = std::str::from_utf8(&id).map_err(|e| ViewError::Corrupt { key: String::from_utf8_lossy(&k).into_owned(), detail: e.to_string() })?;
                let payout =
                    self.payout(id)?.ok_or_else(|| ViewError::Corrupt { key: format!("pay/{id}"), detail: "indexed for a citizen but missing".into() })?;
                payouts.push(payout);
            }
            if self.applied_seq()? == before {
                return Ok(Some(CitizenView::compose(record, &payouts)));
            }
        }
    }
    pub fn payout(&self, payout_id: &str) -> Result<Option<PayoutView>, ViewError> {
        self.get(&format!("pay/{payout_id}"))
    }
    pub fn batch(&self, batch_id: &str) -> Result<Option<BatchView>, ViewError> {
        self.get(&format!("bat/{batch_id}"))
    }
    pub fn budget(&self, province: &str, program_id: &str, period: &str) -> Result<Option<BudgetView>, ViewError> {
        self.get(&format!("bud/{province}/{program_id}/{period}"))
    }
    pub fn program(&self, program_id: &str) -> Result<Option<ProgramView>, ViewError> {
        self.get(&format!("prog/{program_id}"))
    }
    pub fn balance(&self, account: &str) -> Result<Balance, ViewError> {
        Ok(self.get(&format!("acct/{account}"))?.unwrap_or_default())
    }

    /// Lines of a batch in line order, starting after `after_line`, at most `limit`.
    pub fn batch_lines(&self, batch_id: &str, after_line: u32, limit: usize) -> Result<Vec<LineView>, ViewError> {
        let start = format!("line/{batch_id}/{:06}", after_line + 1);
        let prefix = format!("line/{batch_id}/");
        let mut out = Vec::new();
        for item in self.tree.range(start.as_bytes()..) {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) || out.len() >= limit {
                break;
            }
            out.push(decode(&k, &v)?);
        }
        Ok(out)
    }

    /// Ids of the batches whose id starts with `prefix`, in id order.
    pub fn batch_ids(&self, prefix: &str) -> Result<Vec<String>, ViewError> {
        let key = format!("bat/{prefix}");
        self.tree.scan_prefix(key.as_bytes()).map(|r| r.map(|(k, _)| String::from_utf8_lossy(&k[4..]).into_owned()).map_err(ViewError::from)).collect()
    }

    /// The last seq applied to the views, as stored.
    pub fn applied_seq(&self) -> Result<u64, ViewError> {
        Ok(match self.tree.get(b"_applied")? {
            Some(b) => u64::from_be_bytes(b.as_ref().try_into().map_err(|_| ViewError::Corrupt { key: "_applied".into(), detail: "not 8 bytes".into() })?),
            None => 0,
        })
    }
}
