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
use hashbrown::HashMap;
pub use read::ViewReader;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::ControlFlow;
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

/// Takes one key and value of the views, in key order (`Views::each_folded`); breaks to stop
/// with what it found.
pub type VisitView<'v, B> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<B> + 'v;

/// A folded document over the tree: its key, and its bytes (`None`: the key is removed).
type Overlaid<'f> = (&'f [u8], Option<Cow<'f, [u8]>>);

pub struct Views {
    tree: sled::Tree,
    applied: u64,
    reader: ViewReader,
    /// How many documents a fold holds before it writes them (`FOLD_DOCS_MAX`).
    fold_docs_max: usize,
    /// More documents than this are written one by one in key order (see `write`).
    write_batch_max: usize,
}

/// Reads go through `ViewReader` (`views.citizen(..)` works on `Views` too).
impl std::ops::Deref for Views {
    type Target = ViewReader;
    fn deref(&self) -> &ViewReader {
        &self.reader
    }
}

/// The most keys written in one sled batch by a fold (`Views::write`).
const WRITE_BATCH_MAX: usize = 20_000;

/// Present while a fold's documents are being written in several batches.
const FOLDING_KEY: &[u8] = b"_folding";

/// Events read and parsed at a time during catch-up and rebuild.
const CATCH_UP_EVENTS_MAX: u64 = 50_000;

/// A chunk is folded on two threads (people, money) when it has at least this many of each.
const PARALLEL_EVENTS_MIN: usize = 1_000;

/// Documents a fold holds in memory before it writes them: bounds the memory of a rebuild or a
/// verify (a document is a few hundred bytes; a million of them stay well under 1 GiB) while
/// each key of a log of a few hundred thousand people is written once.
pub const FOLD_DOCS_MAX: usize = 1_000_000;

/// View documents folded over many events and written once (`Views::fold`, `Views::finish`):
/// how a rebuild and `audit verify` replay the log. `fresh`: the tree held nothing when the
/// fold began and nothing has been written since, so a key not folded yet does not exist (no
/// read of the tree for it).
#[derive(Default)]
pub struct Fold {
    /// Documents of the money views (programs, budgets, ledger, batches, payouts).
    docs: HashMap<String, Doc>,
    /// Documents of the people views (`cit/`): no event changes both kinds, so the two are
    /// folded apart, on two threads when a chunk has enough of each.
    people: HashMap<String, Doc>,
    index: BTreeMap<String, Vec<(u64, u32)>>,
    fresh: bool,
    /// Keep the documents of earlier chunks encoded (`Doc::Encoded`): a fold over many chunks.
    compact: bool,
    /// The last seq folded.
    last: Option<u64>,
}

impl Fold {
    /// A fold into an empty tree, over many chunks.
    pub fn fresh() -> Fold {
        Fold { fresh: true, compact: true, ..Fold::default() }
    }

    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

impl Views {
    /// Opens the views and catches them up with the log. `progress` is called with the number of
    /// events applied so far while catching up.
    pub fn open(db: &sled::Db, log: &Log, progress: &mut dyn FnMut(u64)) -> Result<Views, ViewError> {
        let tree = db.open_tree("views")?;
        if tree.contains_key(FOLDING_KEY)? {
            // A rebuild (or a catch-up from nothing) stopped while writing: the documents are
            // partly of a later seq than `_applied` says. Derive them again from the log.
            tracing::warn!("the views were being written when the process stopped; rebuilding them from the log");
            tree.clear()?;
        }
        let applied = read::applied_seq(&tree)?;
        let mut views =
            Views { reader: ViewReader::new(tree.clone(), log.reader()), tree, applied, fold_docs_max: FOLD_DOCS_MAX, write_batch_max: WRITE_BATCH_MAX };
        let total = views.ledger_total()?;
        assert_eq!(total, Decimal::ZERO, "the double-entry ledger sums to zero at open");
        views.catch_up(log, progress)?;
        Ok(views)
    }

    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// Sets how many documents a fold holds before writing them (default `FOLD_DOCS_MAX`): a
    /// lower bound trades memory for rewrites; tests use a tiny one to check that a fold which
    /// writes as it goes gives the same views.
    pub fn set_fold_docs_max(&mut self, docs: usize) {
        self.fold_docs_max = docs.max(1);
    }

    /// Sets how many documents one atomic batch takes before a write goes one by one under the
    /// `_folding` mark (default `WRITE_BATCH_MAX`); tests use a tiny one to check both ways.
    pub fn set_write_batch_max(&mut self, docs: usize) {
        self.write_batch_max = docs.max(1);
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
            // From an empty tree (a rebuild, or views deleted), chunks are folded in memory and
            // written once at the end, or when the folded documents reach their bound.
            if self.applied == 0 && !self.tree.is_empty() {
                // Nothing applied yet but documents present: leftovers of an interrupted fold.
                self.tree.clear()?;
            }
            let mut fold = if self.applied == 0 { Some(Fold::fresh()) } else { None };
            let mut done = 0;
            for chunk in rx {
                let events = chunk?;
                done += events.len() as u64;
                match fold.as_mut() {
                    Some(f) => self.fold(f, &events)?,
                    None => self.apply(&events)?,
                }
                progress(done);
            }
            if let Some(f) = fold {
                self.finish(f)?;
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
        let mut fold = Fold::default();
        self.fold(&mut fold, events)?;
        self.write(fold, last)
    }

    /// Folds events (contiguous seqs following the last folded or applied) into `fold`, in
    /// memory; writes nothing unless the folded documents reach `FOLD_DOCS_MAX`, then writes
    /// them all (with the applied seq) and goes on from the tree.
    pub fn fold(&mut self, fold: &mut Fold, events: &[(u64, Event)]) -> Result<(), ViewError> {
        let Some(last) = events.last().map(|(s, _)| *s) else { return Ok(()) };
        let expected = fold.last.unwrap_or(self.applied) + 1;
        assert_eq!(events[0].0, expected, "views apply the seq right after the last applied");
        type Part<'e> = Vec<&'e (u64, Event)>;
        let (people, money): (Part<'_>, Part<'_>) = events.iter().partition(|(_, e)| apply::is_people(&e.data));
        let (tree, fresh) = (&self.tree, fold.fresh);
        let run = |txn: &mut Txn<'_>, events: &[&(u64, Event)]| -> Result<(), ViewError> {
            for (seq, event) in events {
                apply::apply(txn, *seq, event)?;
            }
            Ok(())
        };
        let mut money_txn = Txn { tree, docs: std::mem::take(&mut fold.docs), index: std::mem::take(&mut fold.index), fresh };
        let mut people_txn = Txn { tree, docs: std::mem::take(&mut fold.people), index: BTreeMap::new(), fresh };
        if people.len() >= PARALLEL_EVENTS_MIN && money.len() >= PARALLEL_EVENTS_MIN {
            std::thread::scope(|scope| {
                let other = scope.spawn(|| run(&mut people_txn, &people));
                let here = run(&mut money_txn, &money);
                other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)).and(here)
            })?;
        } else {
            run(&mut people_txn, &people)?;
            run(&mut money_txn, &money)?;
        }
        assert!(people_txn.index.is_empty(), "people events index no batch lines");
        debug_assert!(people_txn.docs.keys().all(|k| k.starts_with("cit/")), "people events change only cit/ views");
        debug_assert!(!money_txn.docs.keys().any(|k| k.starts_with("cit/")), "money events change no cit/ view");
        (fold.docs, fold.index, fold.people) = (money_txn.docs, money_txn.index, people_txn.docs);
        fold.last = Some(last);
        // Every chunk's postings balance (double entry); the check restarts from here.
        let mut delta = Decimal::ZERO;
        for doc in fold.docs.values_mut() {
            if let Doc::Account(balance, before) = doc {
                delta += balance.0 - before.0;
                *before = *balance;
            }
        }
        assert_eq!(delta, Decimal::ZERO, "every group's ledger postings balance (double entry)");
        if fold.compact {
            for doc in fold.docs.values_mut().chain(fold.people.values_mut()) {
                if matches!(doc, Doc::Citizen(_) | Doc::Batch(_) | Doc::Block(_) | Doc::Budget(_) | Doc::Program(_) | Doc::Cash(_)) {
                    *doc = Doc::Encoded(doc.to_bytes());
                }
            }
        }
        if fold.docs.len() + fold.people.len() >= self.fold_docs_max {
            let full = std::mem::replace(fold, Fold { fresh: false, compact: fold.compact, ..Fold::default() });
            self.write(full, last)?;
        }
        Ok(())
    }

    /// Writes what was folded, with the applied seq, in one atomic batch.
    pub fn finish(&mut self, fold: Fold) -> Result<(), ViewError> {
        match fold.last {
            Some(last) => self.write(fold, last),
            None => Ok(()),
        }
    }

    /// Writes the documents and the applied seq. A group's few keys go in one atomic batch. A
    /// fold's many (more than `write_batch_max`) go one by one in key order, between a mark that
    /// the views are being written (`_folding`) and one batch that clears it with the applied
    /// seq: views opened with the mark still there are rebuilt (`Views::open`). Not one batch:
    /// sled keeps every node copy of a batch until it ends (one batch of a rebuild's 325,000
    /// documents took 3 GB more); in key order: sled's batch is a hash map, and the same
    /// documents inserted in its random order cost twice the time (a rebuild's profile).
    fn write(&mut self, fold: Fold, last: u64) -> Result<(), ViewError> {
        let mut docs = fold.docs;
        docs.extend(fold.people);
        let mut txn = Txn { tree: &self.tree, docs, index: fold.index, fresh: fold.fresh };
        txn.write_citizen_indexes()?;
        let mut batch = sled::Batch::default();
        if txn.docs.len() > self.write_batch_max {
            self.tree.insert(FOLDING_KEY, &last.to_be_bytes())?;
            let mut docs: Vec<(String, Doc)> = txn.docs.into_iter().collect();
            docs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (key, doc) in docs {
                match doc.into_stored() {
                    Some(bytes) => self.tree.insert(key.as_bytes(), bytes).map(drop)?,
                    None => self.tree.remove(key.as_bytes()).map(drop)?,
                }
            }
            batch.remove(FOLDING_KEY);
        } else {
            for (key, doc) in txn.docs {
                match doc.into_stored() {
                    Some(bytes) => batch.insert(key.as_bytes(), bytes),
                    None => batch.remove(key.as_bytes()),
                }
            }
        }
        batch.insert(b"_applied", &last.to_be_bytes());
        self.tree.apply_batch(batch)?;
        self.applied = last;
        Ok(())
    }

    /// The views as a fold would leave them, in key order, without writing them: the tree
    /// overlaid with the folded documents (what `audit verify` compares with the live views).
    pub fn folded(&self, fold: &Fold) -> Result<KeyValues, ViewError> {
        let mut out: KeyValues = Vec::new();
        self.each_folded(fold, &mut |k, v| -> ControlFlow<Infallible> {
            out.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    }

    /// Hands each key and value of `folded` to `visit`, in key order, without collecting them
    /// (a verify's 300,000 documents are compared as they come; encoded ones are not copied).
    /// Stops at the first break of `visit`, and returns what it broke with.
    pub fn each_folded<B>(&self, fold: &Fold, visit: &mut VisitView<'_, B>) -> Result<Option<B>, ViewError> {
        let mut txn = Txn { tree: &self.tree, docs: HashMap::default(), index: fold.index.clone(), fresh: fold.fresh };
        txn.write_citizen_indexes()?;
        let applied = fold.last.unwrap_or(self.applied).to_be_bytes();
        let mut overlay: Vec<Overlaid<'_>> = Vec::with_capacity(fold.docs.len() + fold.people.len() + txn.docs.len() + 1);
        for (key, doc) in fold.docs.iter().chain(fold.people.iter()).chain(txn.docs.iter()) {
            let value = match doc {
                Doc::Removed => None,
                Doc::Encoded(b) => Some(Cow::Borrowed(b.as_slice())),
                doc => Some(Cow::Owned(doc.to_bytes())),
            };
            overlay.push((key.as_bytes(), value));
        }
        overlay.push((b"_applied", Some(Cow::Borrowed(&applied[..]))));
        // A key in more than one place: the later one holds (the order above), as inserting
        // them into a map in that order would leave it.
        overlay.sort_by(|a, b| a.0.cmp(b.0));
        let mut over = Vec::with_capacity(overlay.len());
        for item in overlay {
            match over.last_mut() {
                Some((k, v)) if *k == item.0 => *v = item.1,
                _ => over.push(item),
            }
        }
        let mut stored = self.tree.iter().peekable();
        let mut over = over.into_iter().peekable();
        loop {
            let next_stored = match stored.peek() {
                Some(Ok((k, _))) => Some(k.clone()),
                Some(Err(_)) => return Err(stored.next().expect("peeked").expect_err("peeked an error").into()),
                None => None,
            };
            let flow = match (next_stored, over.peek()) {
                (None, None) => break,
                (Some(k), over_next) if over_next.is_none_or(|(ok, _)| k.as_ref() < *ok) => {
                    let (k, v) = stored.next().expect("peeked")?;
                    visit(&k, &v)
                }
                (k, _) => {
                    let (ok, ov) = over.next().expect("peeked");
                    if k.as_deref() == Some(ok) {
                        stored.next();
                    }
                    match ov {
                        Some(ov) => visit(ok, &ov),
                        None => ControlFlow::Continue(()),
                    }
                }
            };
            if let ControlFlow::Break(found) = flow {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Sum of the ledger balances a fold would leave (tree overlaid with the fold).
    pub fn folded_ledger_total(&self, fold: &Fold) -> Result<Decimal, ViewError> {
        let mut total = Decimal::ZERO;
        for item in self.tree.scan_prefix(b"acct/") {
            let (k, v) = item?;
            if !fold.docs.contains_key(String::from_utf8_lossy(&k).as_ref()) {
                let b: Balance = decode(&k, &v)?;
                total += b.0;
            }
        }
        for doc in fold.docs.values() {
            if let Doc::Account(balance, _) = doc {
                total += balance.0;
            }
        }
        Ok(total)
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
    // Room for a typical document up front (growing from empty copied it several times over),
    // then no more than it needs: a fold keeps them encoded.
    let mut bytes = postcard::to_extend(v, Vec::with_capacity(ENCODE_CAPACITY)).expect("views serialize");
    bytes.shrink_to_fit();
    bytes
}

/// Bytes reserved for an encoded document.
const ENCODE_CAPACITY: usize = 512;

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
    Cash(CashView),
    /// Balance now, and as it was before this group (for the zero-sum check).
    Account(Balance, Balance),
    /// A document of an earlier chunk of a fold, kept in its stored form (a fraction of the
    /// memory of the decoded one), decoded again if an event touches it.
    Encoded(Vec<u8>),
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
            Doc::Cash(v) => encode(v),
            Doc::Account(v, _) => encode(v),
            Doc::Encoded(b) => b.clone(),
        }
    }

    /// What the tree stores for it, without copying an encoded one; `None` for a removed key.
    fn into_stored(self) -> Option<Vec<u8>> {
        match self {
            Doc::Removed => None,
            Doc::Encoded(bytes) => Some(bytes),
            doc => Some(doc.to_bytes()),
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
    /// The tree holds no key this group may touch (see `Fold`): nothing is read from it.
    fresh: bool,
}

impl Txn<'_> {
    fn stored(&self, key: &str) -> Result<Option<sled::IVec>, ViewError> {
        if self.fresh {
            return Ok(None);
        }
        Ok(self.tree.get(key.as_bytes())?)
    }

    /// `None` when the document is loaded already; else its bytes (from an earlier chunk of a
    /// fold, or the tree), `Some(None)` when it does not exist yet.
    fn unloaded(&mut self, key: &str) -> Result<Option<Option<Vec<u8>>>, ViewError> {
        match self.docs.get(key) {
            Some(Doc::Encoded(_)) => match self.docs.remove(key) {
                Some(Doc::Encoded(b)) => Ok(Some(Some(b))),
                _ => unreachable!("matched just above"),
            },
            Some(_) => Ok(None),
            None => Ok(Some(self.stored(key)?.map(|b| b.to_vec()))),
        }
    }
}

macro_rules! accessor {
    ($name:ident, $variant:ident, $ty:ty, $wrap:expr) => {
        pub(crate) fn $name(&mut self, key: String) -> Result<&mut $ty, ViewError> {
            if let Some(bytes) = self.unloaded(&key)? {
                let v: $ty = match bytes {
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
    accessor!(cash, Cash, CashView, Doc::Cash);

    /// The states of the block holding `line` of a batch, and the line's index in it.
    pub(crate) fn line(&mut self, batch_id: &str, line: u32) -> Result<&mut LineState, ViewError> {
        assert!(line >= 1, "lines count from 1");
        let (block, index) = ((line - 1) / LINE_BLOCK_LINES, ((line - 1) % LINE_BLOCK_LINES) as usize);
        let key = read::block_key(batch_id, block);
        if let Some(bytes) = self.unloaded(&key)? {
            let mut v: LineBlock = match bytes {
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
        match self.index.get_mut(batch_id) {
            Some(entries) => entries.push((citizen, line)),
            None => {
                self.index.insert(batch_id.to_string(), vec![(citizen, line)]);
            }
        }
    }

    /// Writes the citizen index of every batch that got lines in this group: its entries, old
    /// and new, sorted and cut into chunks the same way whatever groups they came in.
    fn write_citizen_indexes(&mut self) -> Result<(), ViewError> {
        for (batch_id, mut entries) in std::mem::take(&mut self.index) {
            let prefix = format!("bix/{batch_id}/");
            let stored: Vec<_> = if self.fresh { Vec::new() } else { self.tree.scan_prefix(prefix.as_bytes()).collect() };
            for item in stored {
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
            let b: Balance = match self.stored(&key)? {
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
