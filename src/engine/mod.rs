//! The imperative shell around the core: one writer that takes a group of commands, decides
//! them one after another against the state plus the group's own pending events, appends the
//! whole group in one atomic batch with one flush, applies the projections, and only then
//! returns the outcomes (the point where a transport may acknowledge).

mod group;

use crate::command::CommandEnvelope;
use crate::core::{Limits, State};
use crate::domain::valid_identifier;
use crate::log::{parse_event, Head, Log, LogError, LogReader};
use crate::outcome::Outcome;
use crate::projection::{ViewError, Views};
use group::{Decided, Decider, InFlight, Store};
use std::path::{Path, PathBuf};

pub const COMMAND_ID_LEN_MAX: usize = 128;

/// The sender recorded for commands of the embedded intake (`submit`, `demo`), which does not
/// authenticate anyone: a sender claimed in a file is not believed.
pub const FILE_SENDER: &str = "file";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot open the data directory {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Views(#[from] ViewError),
    #[error("the engine stopped after a storage error and must be reopened (nothing after the last durable group was acknowledged)")]
    Poisoned,
    #[error("sled panicked while opening or closing the database (its message is in the log above)")]
    Panicked,
    #[error("the data directory {path} holds no database any more (is its filesystem mounted?); not creating a new one in place of the log")]
    NoDatabase { path: PathBuf },
    #[error("the log reopened from {path} does not hold the last durable record (seq {seq}): {detail}; refusing to take work on another log")]
    Diverged { path: PathBuf, seq: u64, detail: String },
}

#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// sled page cache, bytes.
    pub cache_capacity_bytes: u64,
    /// Record a chain checkpoint when an append crosses a multiple of this (0: never); see
    /// `audit::checkpoint`.
    pub checkpoint_every_events: u64,
    /// What this engine owns (issue 12): a shard refuses the rest (`shard_not_owner`).
    pub ownership: crate::shard::Ownership,
}

impl EngineOptions {
    pub fn new(data_dir: impl AsRef<Path>) -> EngineOptions {
        EngineOptions {
            data_dir: data_dir.as_ref().to_path_buf(),
            limits: Limits::default(),
            cache_capacity_bytes: 256 * 1024 * 1024,
            checkpoint_every_events: 100_000,
            ownership: crate::shard::Ownership::everything(),
        }
    }
}

/// What the last group did and how long each stage took (for metrics and benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct GroupStats {
    pub commands: usize,
    pub events: usize,
    pub decide: std::time::Duration,
    pub append: std::time::Duration,
    pub flush: std::time::Duration,
    pub apply: std::time::Duration,
}

pub struct Engine {
    options: EngineOptions,
    /// When set (by a transport), every command is authorized against its sender's role.
    roles: Option<crate::core::authz::Roles>,
    last_group: GroupStats,
    db: sled::Db,
    log: Log,
    views: Views,
    state: State,
    poisoned: bool,
    checkpoint_every_events: u64,
    /// sled's data file, opened read-only to fsync it after each append (see `fsync`).
    data_file: std::fs::File,
    /// The head of the last group fsynced: what a reopened log must pass through.
    durable: Head,
    /// Where the log ends once the groups decided so far are stored (ahead of the log's head
    /// while a group is in flight).
    tip: Head,
    in_flight: InFlight,
    /// The journal, for the deciding side's command index reads.
    index: LogReader,
}

/// The answer to one group of a pipeline: its outcomes and stage timings, or why it was not
/// stored.
pub type GroupResult = Result<(Vec<Outcome>, GroupStats), String>;

/// Progress of start-up work: (step, events done so far).
pub type Progress<'a> = &'a mut dyn FnMut(&str, u64);

impl Engine {
    /// Opens (or creates) the data directory, rebuilds the decision state from the log and
    /// catches the views up.
    pub fn open(options: &EngineOptions, progress: Progress<'_>) -> Result<Engine, EngineError> {
        let db = open_db(options)?;
        let log = Log::open(&db)?;
        Engine::start(options, db, log, progress)
    }

    /// The decision state replayed from the log, the views caught up.
    fn start(options: &EngineOptions, db: sled::Db, log: Log, progress: Progress<'_>) -> Result<Engine, EngineError> {
        let io = |e: std::io::Error| LogError::Sled(sled::Error::Io(e));
        let data_file = std::fs::File::open(options.data_dir.join("db")).map_err(io)?;
        // Once, what sled writes without syncing: its settings file and the directory entries.
        for path in [options.data_dir.join("conf"), options.data_dir.clone()] {
            std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(io)?;
        }
        let mut state = replay_state(&log, options.limits, progress)?;
        state.ownership = options.ownership.clone();
        let views = Views::open(&db, &log, &mut |n| progress("views", n))?;
        let checkpoint_every_events = options.checkpoint_every_events;
        let durable = log.head().clone();
        let index = log.reader();
        Ok(Engine {
            tip: durable.clone(),
            in_flight: InFlight::default(),
            index,
            durable,
            options: options.clone(),
            roles: None,
            last_group: GroupStats::default(),
            db,
            log,
            views,
            state,
            poisoned: false,
            checkpoint_every_events,
            data_file,
        })
    }

    /// Opens the log and views only (no decision state): for readers such as `show`.
    /// The views still catch up with the log, so they are never behind it.
    pub fn open_views(options: &EngineOptions) -> Result<(sled::Db, Log, Views), EngineError> {
        let db = open_db(options)?;
        let log = Log::open(&db)?;
        let views = Views::open(&db, &log, &mut |_| {})?;
        Ok((db, log, views))
    }

    pub fn log(&self) -> &Log {
        &self.log
    }
    pub fn views(&self) -> &Views {
        &self.views
    }
    pub fn views_mut(&mut self) -> (&mut Views, &Log) {
        (&mut self.views, &self.log)
    }
    pub fn state(&self) -> &State {
        &self.state
    }
    pub fn head(&self) -> &Head {
        self.log.head()
    }
    pub fn db(&self) -> &sled::Db {
        &self.db
    }
    /// Turns on authorization: from now on each command's `sender` must have a role that
    /// allows it (the transport sets `sender` from the broker-validated user id).
    pub fn set_roles(&mut self, roles: crate::core::authz::Roles) {
        self.roles = Some(roles);
    }

    pub fn last_group(&self) -> GroupStats {
        self.last_group
    }

    /// The two sides of a group: deciding, and storing.
    fn parts(&mut self) -> (Decider<'_>, Store<'_>) {
        let decider = Decider { state: &mut self.state, roles: self.roles.as_ref(), index: &self.index, tip: &mut self.tip, in_flight: &mut self.in_flight };
        let store = Store {
            log: &mut self.log,
            views: &mut self.views,
            db: &self.db,
            data_file: &self.data_file,
            checkpoint_every_events: self.checkpoint_every_events,
        };
        (decider, store)
    }

    /// Decides, appends (one atomic batch, one flush and fsync) and projects a group of
    /// commands. Outcomes come back in input order. When this returns `Ok`, every accepted
    /// command of the group is durable. On a storage error the engine refuses further work
    /// until reopened, because its in-memory state may be ahead of the disk.
    pub fn execute(&mut self, commands: &[CommandEnvelope]) -> Result<Vec<Outcome>, EngineError> {
        if self.poisoned {
            return Err(EngineError::Poisoned);
        }
        let span = tracing::debug_span!("group", commands = commands.len(), first_seq = self.tip.seq + 1);
        let _guard = span.enter();
        let (mut decider, mut store) = self.parts();
        let result = decider.decide(commands).map_err(EngineError::from).and_then(|decided| store.store(decided));
        match result {
            Ok((outcomes, stats)) => {
                self.stored(stats);
                Ok(outcomes)
            }
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Executes groups one after another with the next group decided while the previous one
    /// is written and fsynced (two threads; at most one group decided ahead of the one being
    /// stored). `done` is called on the storing thread for each group taken from `groups`, in
    /// order, once it is durable and its views applied (or with why it was not stored), with
    /// the tag that came with it. After a storage error no further group is taken, the groups
    /// taken are answered with errors, and the engine is poisoned (it returns the error).
    pub fn execute_pipelined<T: Send>(
        &mut self,
        groups: impl Iterator<Item = (Vec<CommandEnvelope>, T)>,
        done: impl FnMut(T, GroupResult) + Send,
    ) -> Result<(), EngineError> {
        if self.poisoned {
            return Err(EngineError::Poisoned);
        }
        enum Job<T> {
            Store(Decided, T),
            Refuse(T, String),
        }
        let (mut decider, mut store) = self.parts();
        let mut failure: Option<EngineError> = None;
        let mut last: Option<GroupStats> = None;
        std::thread::scope(|scope| {
            let (jobs, inbox) = std::sync::mpsc::sync_channel::<Job<T>>(1);
            let (stored_tx, stored) = std::sync::mpsc::channel::<Result<(u64, GroupStats), EngineError>>();
            let storer = std::thread::Builder::new()
                .name("ansinh-store".into())
                .spawn_scoped(scope, move || {
                    let mut done = done;
                    let mut failed = false;
                    for job in inbox {
                        match job {
                            Job::Refuse(tag, why) => done(tag, Err(why)),
                            Job::Store(_, tag) if failed => done(tag, Err("not stored: an earlier group of this run was not".into())),
                            Job::Store(decided, tag) => match store.store(decided) {
                                Ok((outcomes, stats)) => {
                                    let _ = stored_tx.send(Ok((store.log.head().seq, stats)));
                                    done(tag, Ok((outcomes, stats)));
                                }
                                Err(e) => {
                                    done(tag, Err(e.to_string()));
                                    let _ = stored_tx.send(Err(e));
                                    failed = true;
                                }
                            },
                        }
                    }
                })
                .expect("the storing thread can be spawned");
            let mut settle = |decider: &mut Decider<'_>, r: Result<(u64, GroupStats), EngineError>, failure: &mut Option<EngineError>| match r {
                Ok((seq, stats)) => {
                    decider.in_flight.retire(seq);
                    last = Some(stats);
                }
                Err(e) => *failure = failure.take().or(Some(e)),
            };
            for (commands, tag) in groups {
                for r in stored.try_iter() {
                    settle(&mut decider, r, &mut failure);
                }
                if failure.is_some() {
                    let _ = jobs.send(Job::Refuse(tag, "not stored: an earlier group of this run was not".into()));
                    break;
                }
                match decider.decide(&commands) {
                    Ok(decided) => {
                        if jobs.send(Job::Store(decided, tag)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = jobs.send(Job::Refuse(tag, e.to_string()));
                        failure = Some(e.into());
                        break;
                    }
                }
            }
            drop(jobs);
            if storer.join().is_err() {
                failure = failure.take().or(Some(EngineError::Panicked));
            }
            for r in stored.try_iter() {
                settle(&mut decider, r, &mut failure);
            }
        });
        match failure {
            None => {
                if let Some(stats) = last {
                    self.stored(stats);
                }
                Ok(())
            }
            Some(e) => Err(self.poison(e)),
        }
    }

    /// After a group was stored: the durable head moves.
    fn stored(&mut self, stats: GroupStats) {
        self.durable = self.log.head().clone();
        self.in_flight.retire(self.durable.seq);
        self.last_group = stats;
    }

    /// Any error of a group, a failed read of the command index included, can come after
    /// earlier commands were evolved into the state: it is ahead of the log now.
    fn poison(&mut self, e: EngineError) -> EngineError {
        self.poisoned = true;
        tracing::error!(error = %crate::domain::citizen_id::log_safe_error(&e), "group failed; the engine must be reopened");
        e
    }

    /// Closes the engine, releasing its handles on the data dir (sled locks the directory while
    /// any handle on the database lives, and after an I/O error keeps failing for the life of
    /// the database: after a storage error, closing and reopening is the only way on). Every
    /// other handle taken from this engine (log and views readers, the relay's cursor) must be
    /// dropped too before [`ClosedEngine::reopen`] can succeed.
    pub fn close(self) -> ClosedEngine {
        let closed = ClosedEngine { options: self.options.clone(), roles: self.roles.clone(), durable: self.durable.clone() };
        // sled may panic while dropping a database after an I/O error (it unwraps a final
        // sync when it did not record the error itself); what is closed stays closed.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(self))).is_err() {
            tracing::error!("sled panicked while closing the database; its handles are released all the same");
        }
        closed
    }

    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Flushes everything (views included) to disk; used before a clean exit.
    pub fn flush(&self) -> Result<(), EngineError> {
        self.db.flush().map_err(LogError::from)?;
        Ok(())
    }
}

/// An engine closed after a storage error: no handle on the data dir, only what is needed to
/// open it again and to check that the reopened log is the one it closed.
pub struct ClosedEngine {
    options: EngineOptions,
    roles: Option<crate::core::authz::Roles>,
    /// The head of the last group known durable (fsynced) before closing.
    durable: Head,
}

impl ClosedEngine {
    pub fn durable_head(&self) -> &Head {
        &self.durable
    }

    /// Opens the data dir again: the decision state is rebuilt from the durable log, the views
    /// catch up. Fails, leaving nothing open, while the fault lasts: before replaying anything
    /// it writes and flushes a probe key, so that a disk still full or read-only is found here
    /// rather than by the next group. It refuses a data dir without a database (an unmounted
    /// filesystem's empty mount point) and a log that does not pass through the last durable
    /// record, rather than take work on another log. Can be called again after a failure.
    pub fn reopen(&self) -> Result<Engine, EngineError> {
        let path = self.options.data_dir.clone();
        if !path.join("db").is_file() {
            return Err(EngineError::NoDatabase { path });
        }
        let db = open_db(&self.options)?;
        let log = Log::open(&db)?;
        let durable = &self.durable;
        let diverged = |detail: String| EngineError::Diverged { path: path.clone(), seq: durable.seq, detail };
        if log.head().seq < durable.seq {
            return Err(diverged(format!("its head is seq {}", log.head().seq)));
        }
        if durable.seq > 0 {
            match log.read(durable.seq)? {
                Some(r) if r.hash == durable.hash => {}
                Some(r) => return Err(diverged(format!("the record there has hash {}, not {}", r.hash, durable.hash))),
                None => return Err(diverged("no record there".into())),
            }
        }
        let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        db.insert(PROBE_KEY, &stamp.to_be_bytes()).map_err(LogError::from)?;
        db.flush().map_err(LogError::from)?;
        let mut engine = Engine::start(&self.options, db, log, &mut |_, _| {})?;
        engine.roles = self.roles.clone();
        tracing::warn!(head = engine.head().seq, durable = durable.seq, "engine reopened from the durable log");
        Ok(engine)
    }
}

/// Written and flushed by [`ClosedEngine::reopen`] (in sled's default tree, which nothing else
/// uses) to find out whether the data dir takes writes again.
const PROBE_KEY: &[u8] = b"ansinh.reopen_probe";

/// The decision state after every logged event.
fn replay_state(log: &Log, limits: Limits, progress: Progress<'_>) -> Result<State, EngineError> {
    let mut state = State::new(limits);
    let mut done = 0u64;
    for item in log.range(1, log.head().seq.max(1)) {
        let (seq, bytes) = item?;
        state.evolve(&parse_event(seq, &bytes)?.data);
        done += 1;
        if done % 10_000 == 0 {
            progress("state", done);
        }
    }
    Ok(state)
}

/// sled's log segment size. 8 MiB instead of sled's 512 KiB: sled writes a node larger than a
/// quarter of a segment as a file of its own (a blob), and a leaf of 16 journal segments
/// (`log::segment`, up to ~96 KiB each) must stay inline. Measured with 600-byte records in
/// groups of 10,000, one flush and fsync per group: 100-record values reached 273k records/s
/// with 8 MiB segments against 92k/s for one value per group (blobs) and 41k/s for one key per
/// record. sled records the segment size in the data dir (`conf`); a data dir keeps the size it
/// was created with.
pub const SLED_SEGMENT_BYTES: usize = 8 * 1024 * 1024;

/// The sled settings of every data dir and scratch store (engine, audit tools, benchmarks): a
/// data dir must be opened with the segment size it was created with.
pub fn sled_config(path: &Path, cache_capacity_bytes: u64) -> sled::Config {
    sled::Config::new().path(path).mode(sled::Mode::LowSpace).cache_capacity(cache_capacity_bytes).segment_size(SLED_SEGMENT_BYTES).flush_every_ms(Some(1_000))
}

/// sled with every setting that matters written out, so a changed default upstream cannot
/// silently change behaviour. `LowSpace` measured faster than `HighThroughput` for our pattern
/// (12.0k vs 6.8k payout lines/s, 50,000-beneficiary demo).
/// Durability cannot silently weaken either: we flush and fsync before every acknowledgement
/// ourselves (`engine::fsync`); the background flush only bounds what a crash loses of work
/// nobody was told about.
/// An open that fails on an unfinished snapshot left behind by sled itself is tried again
/// without it (`remove_unfinished_snapshots`).
fn open_db(options: &EngineOptions) -> Result<sled::Db, EngineError> {
    let open =
        || sled_config(&options.data_dir, options.cache_capacity_bytes).open().map_err(|source| EngineError::Open { path: options.data_dir.clone(), source });
    match open() {
        Err(EngineError::Open { source: sled::Error::Corruption { .. }, .. }) if remove_unfinished_snapshots(&options.data_dir) > 0 => open(),
        result => result,
    }
}

/// sled 0.34 writes a snapshot to `snap.<lsn>.generating`, syncs it and renames it to
/// `snap.<lsn>`; a write that fails (a full disk) or is interrupted (a crash) leaves the
/// unfinished file behind, and sled's next open takes it for the latest snapshot (it sorts last)
/// and fails with "Read corrupted data", forever. An unfinished snapshot is by construction not
/// committed: sled recovers from the previous snapshot and the log, as if it had never been
/// started, so removing it is safe. Called only after an open failed on corruption, which sled
/// reports after taking its lock on the directory: no other process is writing a snapshot.
/// Returns how many were removed.
pub fn remove_unfinished_snapshots(data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::warn!(file = %entry.path().display(), "removed an unfinished sled snapshot (left by a failed or interrupted write)");
                    removed += 1;
                }
                Err(e) => tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove an unfinished sled snapshot"),
            }
        }
    }
    removed
}

/// Makes an appended group durable for real. sled 0.34's flush ends, on Linux, with
/// `sync_file_range` on the pages it wrote, not `fsync`: the data pages reach the device, but
/// not the file's metadata (its size and newly allocated blocks wait for the filesystem's next
/// journal commit, up to 5 s on ext4) nor the device's write cache. A process crash loses
/// nothing (the page cache survives it), but a power loss, a kernel crash or a filesystem error
/// that aborts the journal loses groups already acknowledged (found by the read-only data dir
/// test: after ext4 turned read-only and was mounted again, sled's file was empty). An fsync of
/// the same file, through a descriptor of our own, commits both. Returns how long it took.
fn fsync(data_file: &std::fs::File) -> Result<std::time::Duration, EngineError> {
    let started = std::time::Instant::now();
    data_file.sync_all().map_err(|e| LogError::Sled(sled::Error::Io(e)))?;
    Ok(started.elapsed())
}

/// Checks what the envelope itself must carry (command id, time) and returns the parsed time
/// the command is decided at; a transport dead-letters an envelope that fails here instead of
/// sending it to `execute`.
pub fn check_envelope(envelope: &CommandEnvelope) -> Result<crate::timefmt::Timestamp, String> {
    if !valid_identifier(&envelope.command_id, COMMAND_ID_LEN_MAX) {
        return Err(format!("command_id must be 1-{COMMAND_ID_LEN_MAX} characters of [A-Za-z0-9._:-]"));
    }
    crate::command::issued_at(envelope)
}

/// SHA-256 of the command's version, sender, type and payload (its JSON as the types write it):
/// what "the same command" means for a redelivery. `issued_at` is not part of it (a retry may
/// restamp it). Command ids are scoped by sender (`log::command_key`); the digest covers the
/// sender as well.
pub fn digest(envelope: &CommandEnvelope) -> String {
    use sha2::{Digest, Sha256};
    /// Streams the command's JSON into the hash, with no copy of it in memory.
    struct Hashing<'h>(&'h mut Sha256);
    impl std::io::Write for Hashing<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Sha256::new();
    h.update(b"ansinh command v");
    h.update(envelope.v.to_string().as_bytes());
    match &envelope.sender {
        Some(sender) => {
            h.update(b"\0sender\0");
            h.update((sender.len() as u64).to_be_bytes());
            h.update(sender.as_bytes());
        }
        None => h.update(b"\0no sender\0"),
    }
    // The command's JSON as its types write it: fields in declaration order, maps sorted, so the
    // same command always gives the same bytes.
    serde_json::to_writer(Hashing(&mut h), &envelope.command).expect("commands serialize to JSON");
    hex::encode(h.finalize())
}
