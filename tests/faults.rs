//! Fault injection (issue 7) against the real broker on 127.0.0.1:5672, reusing the transport
//! fixtures of `tests/amqp_support` (real `ansinh serve`, `publish` and `bank-connector`
//! children, a unique `bus.prefix` per test, cleaned up at the end).
//!
//! The crash test SIGKILLs `serve` at seeded random moments while agencies publish and banks
//! settle, restarts it each time, then checks the log, the views and what reached the broker.
//! It prints its seed; a failing run reproduces with
//!
//! ```text
//! ANSINH_CRASH_SEED=<seed> cargo test --test faults crash -- --nocapture
//! ```
//!
//! and a longer run (100+ kills) is
//!
//! ```text
//! ANSINH_CRASH_KILLS=100 cargo test --release --test faults crash -- --nocapture
//! ```
//!
//! (kills beyond what the stream itself needs are spent while the whole stream is published
//! again, every command a redelivery that must be answered from the index).

mod amqp_support;

use amqp_support::*;
use ansinh::command::{Command, CommandEnvelope};
use ansinh::event::{EventData, PayoutKind};
use ansinh::outcome::{Outcome, OutcomeStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// splitmix64: small, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

const PEOPLE: usize = 4_000;
const PERIODS: &[&str] = &["2025-01", "2025-02", "2025-03", "2025-04", "2025-05", "2025-06"];

/// The stream: rules and six months of funding (admin), 4,000 enrollments, then six months of
/// payout batches of 1,000 lines (agency). Returns (admin file, enroll file, batch file).
fn stream(fx: &Fixture) -> (PathBuf, PathBuf, PathBuf) {
    let mut admin: Vec<CommandEnvelope> = Vec::new();
    let mut batches = Vec::new();
    let mut enroll = Vec::new();
    for (i, period) in PERIODS.iter().enumerate() {
        let out = fx.dir.path().join(format!("files-{period}"));
        fx.run(
            &["demo-files", "--out", path(&out), "--beneficiaries", &PEOPLE.to_string(), "--period", period, "--batch-lines", "1000"],
            Duration::from_secs(60),
        );
        let rules = read_commands(&out.join("rules.jsonl"));
        if i == 0 {
            admin.extend(rules);
            enroll = read_commands(&out.join("enroll.jsonl"));
        } else {
            admin.extend(rules.into_iter().filter(|e| matches!(e.command, Command::FundBudget(_))));
        }
        batches.extend(read_commands(&out.join("batch.jsonl")));
    }
    let files = (fx.dir.path().join("admin.jsonl"), fx.dir.path().join("enroll.jsonl"), fx.dir.path().join("batches.jsonl"));
    write_commands(&files.0, &admin);
    write_commands(&files.1, &enroll);
    write_commands(&files.2, &batches);
    (files.0, files.1, files.2)
}

struct Chaos {
    rng: Rng,
    kills: u64,
}

impl Chaos {
    /// Kills and restarts serve at random moments until `done`. With `progress` (the number
    /// of distinct seqs the relay has published), each kill waits until something new was
    /// committed since the last restart, then a random 0-1.5 s: a kill rate higher than the
    /// time one big group takes would otherwise lose that group forever (the whole group is
    /// redelivered and decided again after each restart). Without it, kills come 0.3-2.5 s apart.
    fn until(&mut self, fx: &mut Fixture, what: &str, timeout: Duration, progress: Option<&Collector>, mut done: impl FnMut(&mut Fixture) -> bool) {
        let deadline = Instant::now() + timeout;
        let mut check = |fx: &mut Fixture, kills: u64| {
            assert!(Instant::now() < deadline, "timed out after {} s: {what} ({kills} kills so far)", timeout.as_secs());
            done(fx)
        };
        loop {
            if let Some(events) = progress {
                let base = events.distinct_seqs();
                while events.distinct_seqs() <= base {
                    if check(fx, self.kills) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let pause = if progress.is_some() { Duration::from_millis(self.rng.range(0, 1_500)) } else { Duration::from_millis(self.rng.range(300, 2_500)) };
            let wake = Instant::now() + pause;
            while Instant::now() < wake {
                if check(fx, self.kills) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            fx.kill_serve();
            self.kills += 1;
            fx.start_serve();
        }
    }
}

/// A publisher child's outcomes, from its log (it prints `{"line":..,"outcome":..}` lines).
fn outcomes_of(fx: &Fixture, name: &str) -> Vec<Outcome> {
    parse_outcomes(&std::fs::read_to_string(fx.dir.path().join(format!("{name}.log"))).unwrap_or_default())
}

/// The publisher printed an outcome for each of its `count` commands.
fn published(fx: &Fixture, name: &str, count: usize) -> bool {
    std::fs::read_to_string(fx.dir.path().join(format!("{name}.log"))).is_ok_and(|s| s.lines().filter(|l| l.starts_with("{\"line\"")).count() >= count)
}

/// The publisher gave up waiting (it prints "no reply within" for each unanswered command).
fn gave_up(fx: &Fixture, name: &str) -> bool {
    std::fs::read_to_string(fx.dir.path().join(format!("{name}.log"))).is_ok_and(|s| s.contains("no reply within") || s.contains("got no reply"))
}

/// Publishes a file as `user` while `chaos` kills serve, the way a sender must: a reply can be
/// lost when serve dies after acknowledging a group but before its reply left (replies are not
/// confirmed, by design), so when the publisher gives up it is run again, and the command
/// index answers what was already decided. Returns the first outcome per command and how many
/// replies were lost.
fn publish_under_chaos(
    fx: &mut Fixture,
    chaos: &mut Chaos,
    events: Option<&Collector>,
    name: &str,
    file: &std::path::Path,
    user: &str,
) -> (BTreeMap<String, Outcome>, usize) {
    let n = read_commands(file).len();
    let mut got: BTreeMap<String, Outcome> = BTreeMap::new();
    let mut lost = 0;
    for round in 1..=6 {
        let run = format!("{name}-{round}");
        let index = fx.spawn(&run, &["publish", path(file), "--amqp", &url(user), "--json", "--timeout-secs", "120"]);
        chaos.until(fx, &run, Duration::from_secs(420), events, |fx| published(fx, &run, n) || gave_up(fx, &run));
        let outcomes = outcomes_of(fx, &run);
        for o in &outcomes {
            got.entry(o.command_id.clone()).or_insert_with(|| o.clone());
        }
        if published(fx, &run, n) {
            fx.wait_success(index, Duration::from_secs(10));
            return (got, lost);
        }
        lost += n - outcomes.len();
        eprintln!("{run}: {} replies not received within 120 s (lost in a kill, or late); publishing again", n - outcomes.len());
    }
    panic!("{name}: replies still missing after 6 rounds");
}

#[test]
fn crash_the_engine_at_seeded_random_moments_nothing_lost_nothing_paid_twice() {
    let started = Instant::now();
    let seed = env_u64("ANSINH_CRASH_SEED")
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_nanos() as u64 % 1_000_000);
    let target = env_u64("ANSINH_CRASH_KILLS").unwrap_or(20);
    eprintln!("crash test: seed {seed} (reproduce with ANSINH_CRASH_SEED={seed}), {target} kills");
    let mut chaos = Chaos { rng: Rng(seed), kills: 0 };
    let mut fx = Fixture::new("crash7", Settings { group_commands_max: 500, ..Settings::default() });
    // Each SIGKILL gives every unacknowledged delivery (up to the prefetch, 1,000) back to the
    // queue, and RabbitMQ 3.x counts that against the quorum queue's delivery limit (5 by
    // default). Twenty kills a few seconds apart carry good commands past it: they move to the
    // isolated queue and are decided there one at a time (bus/isolated.rs). The test runs with
    // the default limit, so that path is under the kills too, and nothing may be dead-lettered.
    let (admin_file, enroll_file, batch_file) = stream(&fx);
    let events = fx.collector();
    fx.start_serve();

    // Phase 1: rules and funding, then the enrollments, under kills.
    let admin_outcomes = fx.publish_file(&admin_file, ADMIN);
    assert!(admin_outcomes.iter().all(|o| o.status == OutcomeStatus::Accepted), "rules and funding accepted");
    let mut phases: Vec<(String, PathBuf, &str)> = vec![("enroll".into(), enroll_file.clone(), AGENCY), ("batches".into(), batch_file.clone(), AGENCY)];
    let mut first_outcomes: BTreeMap<String, Outcome> = admin_outcomes.iter().map(|o| (o.command_id.clone(), o.clone())).collect();
    let mut lost_replies = 0;
    for (name, file, user) in phases.drain(..) {
        let (outcomes, lost) = publish_under_chaos(&mut fx, &mut chaos, Some(&events), &name, &file, user);
        lost_replies += lost;
        for (id, o) in outcomes {
            assert_eq!(o.status, OutcomeStatus::Accepted, "{name}: {id} was {:?} {:?}", o.code, o.message);
            first_outcomes.insert(id, o);
        }
    }
    let instructed: BTreeSet<String> =
        first_outcomes.values().flat_map(|o| o.lines.iter()).filter(|l| l.status == "instructed").filter_map(|l| l.payout_id.clone()).collect();
    assert!(instructed.len() >= 20_000, "at least 20,000 payout lines instructed ({})", instructed.len());

    // Phase 2: every instruction reaches the events exchange; the banks settle, under kills.
    let published_instructions = |events: &Collector| -> BTreeMap<String, String> {
        events.with(|s| {
            s.iter()
                .filter(|x| x.routing_key.starts_with("payout.instructed."))
                .filter_map(|x| match &x.record.event.data {
                    EventData::PayoutInstructed(p) => Some((p.payout_id.clone(), p.account.bin.clone())),
                    _ => None,
                })
                .collect()
        })
    };
    chaos.until(&mut fx, "the relay to publish every instruction", Duration::from_secs(300), Some(&events), |_| {
        published_instructions(&events).len() >= instructed.len()
    });
    let per_bin: BTreeMap<String, u64> = published_instructions(&events).values().fold(BTreeMap::new(), |mut m, bin| {
        *m.entry(bin.clone()).or_insert(0) += 1;
        m
    });
    let mut banks = Vec::new();
    for (bin, count) in &per_bin {
        let args = [
            "bank-connector",
            "--bin",
            bin,
            "--amqp",
            &url(&bank_user(bin)),
            "--failure-rate",
            "0.05",
            "--batch-wait-ms",
            "200",
            "--exit-after",
            &count.to_string(),
        ];
        banks.push(fx.spawn(&format!("bank-{bin}"), &args));
    }
    let settled_or_failed = |events: &Collector| {
        events.with(|s| {
            s.iter()
                .filter_map(|x| match &x.record.event.data {
                    EventData::PayoutSettled(t) | EventData::PayoutFailed(t) => Some(t.payout_id.clone()),
                    _ => None,
                })
                .collect::<BTreeSet<_>>()
                .len()
        })
    };
    chaos.until(&mut fx, "every payout settled or failed", Duration::from_secs(400), Some(&events), |_| settled_or_failed(&events) >= instructed.len());
    for index in banks {
        fx.wait_success(index, Duration::from_secs(120));
    }

    // Phase 3, only when the stream ended before the target: everything again, every command a
    // redelivery answered from the index, under kills.
    let mut round = 0;
    while chaos.kills < target {
        round += 1;
        for (file, user) in [(&admin_file, ADMIN), (&enroll_file, AGENCY), (&batch_file, AGENCY)] {
            let name = format!("again-{round}-{}", file.file_stem().and_then(|s| s.to_str()).expect("a name"));
            let (outcomes, lost) = publish_under_chaos(&mut fx, &mut chaos, None, &name, file, user);
            lost_replies += lost;
            for (id, o) in outcomes {
                let first = &first_outcomes[&id];
                assert!(o.duplicate, "{name}: {id} answered from the index");
                assert_eq!((o.status, o.seqs, &o.lines), (first.status, first.seqs, &first.lines), "{name}: {id} has its first outcome");
            }
            if chaos.kills >= target {
                break;
            }
        }
    }
    let bus = fx.bus();
    let (_, isolated_consumers) = fx.queue_counts(&bus.isolated_queue()).expect("the isolated queue");
    fx.stop_serve();
    let isolated_taken = fx.serve_logs().matches("deciding a command from the isolated queue").count();
    assert_eq!(isolated_consumers, 0, "the isolated queue is polled, never consumed");
    assert_eq!(fx.queue_counts(&bus.isolated_queue()).map(|c| c.0), Some(0), "nothing left in the isolated queue");
    assert_eq!(fx.queue_counts(&bus.dead_letter_queue()).map(|c| c.0), Some(0), "no good command dead-lettered, whatever the kills");

    // The log: one range per command, one regular payout per citizen/program/period, each
    // payout settled or failed once, nothing refused.
    let engine = fx.open_engine();
    assert_chain(&engine);
    let records = log_records(&engine);
    let mut by_command: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut event_ids = BTreeSet::new();
    let mut regular = BTreeSet::new();
    let mut transitions: BTreeMap<String, usize> = BTreeMap::new();
    for (seq, _, r) in &records {
        assert!(event_ids.insert(r.event.id.as_str()), "event id {} appears twice", r.event.id);
        by_command.entry(r.event.command_id.as_str()).or_default().push(*seq);
        match &r.event.data {
            EventData::PayoutInstructed(p) if p.kind == PayoutKind::Regular => {
                assert!(
                    regular.insert((p.citizen_id.to_string(), p.program_id.clone(), p.period.to_string())),
                    "two regular payouts for one citizen and period"
                );
            }
            EventData::PayoutSettled(t) | EventData::PayoutFailed(t) => *transitions.entry(t.payout_id.clone()).or_insert(0) += 1,
            EventData::CommandRejected(c) => panic!("command {} refused ({}): decided twice or reused", r.event.command_id, c.code),
            EventData::SettlementItemRejected(i) => panic!("settlement item refused ({} {}): a bank reported a payout twice", i.payout_id, i.code),
            _ => {}
        }
    }
    for (id, seqs) in &by_command {
        assert_eq!(seqs.last().expect("non-empty") - seqs[0] + 1, seqs.len() as u64, "command {id} has one contiguous range of events");
    }
    for id in first_outcomes.keys() {
        assert!(by_command.contains_key(id.as_str()), "command {id} has no events: lost");
    }
    assert_eq!(regular.len(), instructed.len(), "every instructed line is one regular payout");
    assert_eq!(transitions.keys().cloned().collect::<BTreeSet<_>>(), instructed, "every payout settled or failed");
    assert!(transitions.values().all(|n| *n == 1), "no payout settled twice");
    assert!(published_instructions(&events).keys().cloned().collect::<BTreeSet<_>>() == instructed, "every instruction reached payout.instructed.#");

    // The views equal a rebuild from the log; the ledger sums to zero.
    let mut engine = engine;
    let before = engine.views().dump().expect("views dump");
    assert_eq!(engine.views().ledger_total().expect("ledger"), rust_decimal::Decimal::ZERO, "double entry");
    {
        let (views, log) = engine.views_mut();
        views.rebuild(log, &mut |_| {}).expect("views rebuild");
    }
    assert!(engine.views().dump().expect("views dump") == before, "the views after the crashes equal a rebuild from the log");
    let head = engine.head().seq;
    drop(engine);
    audit_verify(&fx);
    let duplicates = events.counts().values().filter(|n| **n > 1).count();
    eprintln!(
        "crash test: seed {seed}: {} kills, {} commands, {} payouts instructed and settled once, head {head}, {duplicates} events relayed twice, {lost_replies} replies not received (asked again), {isolated_taken} commands decided from the isolated queue, {:.0} s",
        chaos.kills,
        first_outcomes.len(),
        instructed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(chaos.kills >= target, "{} kills, wanted {target}", chaos.kills);
}

/// `ansinh audit verify` over the data dir, when that subcommand exists.
fn audit_verify(fx: &Fixture) {
    let out = fx.ansinh().args(["audit", "verify"]).output().expect("ansinh runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() && (text.contains("unrecognized subcommand") || text.contains("not yet") || text.contains("not implemented")) {
        eprintln!("NOTE: `ansinh audit verify` is not available yet ({}); that check was skipped", text.lines().next().unwrap_or(""));
        return;
    }
    assert!(out.status.success(), "ansinh audit verify failed after the crashes:\n{text}");
}

// ---- storage faults ----------------------------------------------------------------------------

/// A tmpfs of a given size mounted on a directory (needs CAP_SYS_ADMIN; we run as root in CI),
/// unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Result<SmallDisk, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out =
            std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", path(dir)]).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallDisk { dir: dir.to_path_buf() })
    }
    /// Unmounts now (not lazily): fails while any file on it is open. A fresh-clone CI run once
    /// found the mount busy right after the engine was dropped and passed on every other run
    /// (cause not found: some thread of sled's letting go of its file a moment late is the
    /// likely one), so a busy mount is tried again for up to 5 s; a handle really left open
    /// still fails.
    fn unmount(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = std::process::Command::new("umount").arg(&self.dir).output().expect("umount runs");
            if out.status.success() {
                break;
            }
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            assert!(why.contains("busy") && Instant::now() < deadline, "unmounting {}: {why} (a file on it is still open)", self.dir.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        std::mem::forget(self); // unmounted already: nothing left for Drop
    }
    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount").args(["-o", &format!("remount,size={size}"), path(&self.dir)]).status().expect("mount runs");
        assert!(status.success(), "remounting the tmpfs with size {size}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// An ext4 filesystem in an image file, loop-mounted on a directory with `errors=remount-ro`.
/// `fail` makes the kernel turn it read-only the way a failing disk does (ext4's
/// `trigger_fs_error`): from then on every write, to files already open too, fails with EROFS.
/// `mount -o remount,ro` cannot stand in for it mid-run: the kernel refuses it (EBUSY) while a
/// file is open for writing, and sled keeps its files open. After such an error ext4 stays
/// read-only until unmounted; unmounting (which needs every file on it closed) and mounting it
/// again is what an operator does once the disk is checked.
struct Ext4Disk {
    image: PathBuf,
    dir: PathBuf,
    mounted: bool,
}

impl Ext4Disk {
    fn create(image: &std::path::Path, dir: &std::path::Path, size: &str) -> Ext4Disk {
        let run = |what: &str, cmd: &mut std::process::Command| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(out.status.success(), "{what}: {} (this test needs root: CAP_SYS_ADMIN, loop devices, ext4)", String::from_utf8_lossy(&out.stderr).trim());
        };
        std::fs::create_dir_all(dir).expect("the mount point");
        run("truncate", std::process::Command::new("truncate").args(["-s", size, path(image)]));
        run("mkfs.ext4", std::process::Command::new("mkfs.ext4").args(["-q", "-F", path(image)]));
        let mut disk = Ext4Disk { image: image.to_path_buf(), dir: dir.to_path_buf(), mounted: false };
        disk.mount();
        disk
    }

    fn mount(&mut self) {
        let out = std::process::Command::new("mount").args(["-o", "loop,errors=remount-ro", path(&self.image), path(&self.dir)]).output().expect("mount runs");
        assert!(
            out.status.success(),
            "mounting {}: {} (this test needs root: CAP_SYS_ADMIN and loop devices)",
            self.image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        self.mounted = true;
    }

    /// An ext4 error: the kernel makes the filesystem read-only at once.
    fn fail(&self) {
        let out = std::process::Command::new("findmnt").args(["-n", "-o", "SOURCE", path(&self.dir)]).output().expect("findmnt runs");
        let source = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let device = source.rsplit('/').next().expect("a device name");
        let trigger = format!("/sys/fs/ext4/{device}/trigger_fs_error");
        std::fs::write(&trigger, "ansinh fault test").unwrap_or_else(|e| panic!("{trigger}: {e}"));
        let probe = self.dir.join("probe");
        let e = std::fs::write(&probe, b"x").expect_err("the filesystem is read-only after the error");
        assert_eq!(e.raw_os_error(), Some(30), "EROFS: {e}");
    }

    /// Unmounts now (not lazily); false while a file on it is open.
    fn try_unmount(&mut self) -> bool {
        let ok = std::process::Command::new("umount").arg(&self.dir).output().expect("umount runs").status.success();
        self.mounted &= !ok;
        ok
    }
}

impl Drop for Ext4Disk {
    fn drop(&mut self) {
        if self.mounted {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn demo_commands(n: usize) -> (Vec<CommandEnvelope>, Vec<CommandEnvelope>) {
    use ansinh::cli::{demo::PROGRAM_ID, demo_data};
    let rules: Vec<CommandEnvelope> = demo_data::program_rules(PROGRAM_ID)
        .into_iter()
        .map(|(command_id, issued_at, command)| CommandEnvelope { command_id, v: 1, issued_at: issued_at.to_string(), sender: None, command })
        .collect();
    let enroll = demo_data::beneficiaries(7, n, "056", PROGRAM_ID)
        .into_iter()
        .enumerate()
        .map(|(i, b)| CommandEnvelope {
            command_id: format!("disk-enroll-{i:06}"),
            v: 1,
            issued_at: "2024-12-20T02:00:00Z".into(),
            sender: None,
            command: Command::EnrollBeneficiary(b.enroll),
        })
        .collect();
    (rules, enroll)
}

/// The data dir fills up mid-run: the group that hit the full disk is not answered (an error,
/// the engine poisoned and refusing work), and once space is back the engine resumes from a
/// consistent log: the failed group is either wholly there or wholly absent, never half.
#[test]
fn a_full_disk_stops_the_engine_and_it_resumes_with_no_half_group() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let data = tmp.path().join("data");
    let disk = match SmallDisk::mount(&data, "4m") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("NOTE: storage-fault test skipped: cannot mount a small tmpfs here ({e}); it needs root with CAP_SYS_ADMIN");
            return;
        }
    };
    let (rules, enroll) = demo_commands(40_000);
    let options = ansinh::EngineOptions::new(&data);
    let mut engine = ansinh::Engine::open(&options, &mut |_, _| {}).expect("the engine opens");
    engine.execute(&rules).expect("rules stored");
    let mut done = 0;
    let (failed_group, error) = loop {
        let group = &enroll[done..done + 200];
        match engine.execute(group) {
            Ok(outcomes) => assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Accepted)),
            Err(e) => break (group.to_vec(), e.to_string()),
        }
        done += 200;
        assert!(done + 200 <= enroll.len(), "4 MB never filled up");
    };
    let head_before = engine.head().seq;
    eprintln!("storage fault: the disk filled after {done} enrollments (head {head_before}): {error}");
    assert!(engine.is_poisoned(), "a storage error poisons the engine");
    assert!(matches!(engine.execute(&enroll[done..done + 1]), Err(ansinh::EngineError::Poisoned)), "a poisoned engine refuses work");

    // The fault clears: the same process closes the engine (sled keeps an I/O error for the
    // life of the database) and reopens the data dir from the durable log.
    let closed = engine.close();
    assert_eq!(closed.durable_head().seq, head_before, "the durable head is the last group stored");
    disk.resize("256m");
    let mut engine = closed.reopen().expect("the engine reopens in the same process once space is back");
    let present: Vec<bool> = failed_group.iter().map(|e| engine.log().command(&e.command_id, e.sender.as_deref()).expect("index read").is_some()).collect();
    assert!(present.iter().all(|p| *p) || present.iter().all(|p| !*p), "the failed group is wholly durable or wholly absent: {present:?}");
    assert_chain(&engine);
    let outcomes = engine.execute(&failed_group).expect("the failed group is stored after the fault");
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Accepted), "the redelivered group is accepted");
    engine.execute(&enroll[done + 200..done + 400]).expect("and work goes on");
    let head = engine.head().seq;
    assert_chain(&engine);
    let records = log_records(&engine);
    let enrolled = records.iter().filter(|(_, _, r)| r.event.data.type_name() == "beneficiary.enrolled").count();
    assert_eq!(enrolled, done + 400, "each enrollment exactly once");
    let before = engine.views().dump().expect("views dump");
    {
        let (views, log) = engine.views_mut();
        views.rebuild(log, &mut |_| {}).expect("views rebuild");
    }
    assert!(engine.views().dump().expect("views dump") == before, "views equal a rebuild");
    eprintln!(
        "storage fault: reopened in place; the failed group {}; head {head}",
        if present[0] { "was durable (answered from the index)" } else { "was absent and decided again" }
    );
}

// ---- broker faults -----------------------------------------------------------------------------

/// A TCP proxy on 127.0.0.1 in front of the broker, for serve only: `cut` closes every open
/// connection (as `rabbitmqctl close_all_connections` would, without touching other tests'
/// connections); while `refusing`, new connections are closed as soon as they are accepted.
struct Proxy {
    port: u16,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    fn start() -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let port = listener.local_addr().expect("an address").port();
        let proxy = Proxy { port, open: Default::default(), refusing: Default::default(), accepted: Default::default() };
        let (open, refusing, accepted) = (proxy.open.clone(), proxy.refusing.clone(), proxy.accepted.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                if refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = std::net::TcpStream::connect("127.0.0.1:5672") else { continue };
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                {
                    let mut open = open.lock().expect("lock");
                    open.push(client.try_clone().expect("a clone"));
                    open.push(upstream.try_clone().expect("a clone"));
                }
                for (mut from, mut to) in [(client.try_clone().expect("a clone"), upstream.try_clone().expect("a clone")), (upstream, client)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        proxy
    }

    /// Cuts every connection now open; returns how many sockets were cut.
    fn cut(&self) -> usize {
        let mut open = self.open.lock().expect("lock");
        let n = open.len();
        for s in open.drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        n
    }

    fn refuse(&self, on: bool) {
        self.refusing.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Points serve's `bus.amqp_url` (and only serve's) at the proxy.
    fn route_serve_through(&self, fx: &Fixture) {
        let text = std::fs::read_to_string(&fx.config).expect("the config");
        let url_line = format!("amqp_url = {:?}", url(ENGINE));
        assert!(text.contains(&url_line), "the fixture's config names the engine's URL");
        let proxied = url(ENGINE).replace("127.0.0.1:5672", &format!("127.0.0.1:{}", self.port));
        std::fs::write(&fx.config, text.replace(&url_line, &format!("amqp_url = {proxied:?}"))).expect("the config is written");
    }
}

/// `GET /readyz` on serve's API (its address is in its log): (HTTP status, body).
fn readyz(fx: &Fixture, run: usize) -> (u16, String) {
    let log = std::fs::read_to_string(fx.dir.path().join(format!("serve-{run}.log"))).expect("serve's log");
    let line = log.lines().find(|l| l.contains("HTTP API listening")).expect("serve logs its API address");
    let at = line.rfind("127.0.0.1:").expect("an address");
    let port: String = line[at + 10..].chars().take_while(char::is_ascii_digit).collect();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().expect("a port"))).expect("the API answers");
    use std::io::{Read, Write};
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").expect("request sent");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("a response");
    let status = response.split_whitespace().nth(1).and_then(|c| c.parse().ok()).expect("a status line");
    (status, response)
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

fn serve_pid(fx: &Fixture) -> u32 {
    let out = std::process::Command::new("pgrep").args(["-f", &format!("{} serve", path(&fx.config))]).output().expect("pgrep runs");
    String::from_utf8_lossy(&out.stdout).lines().next().expect("serve is running").trim().parse().expect("a pid")
}

/// Publishes the demo month's enrollments, then its batch, as the agency, while `fault` strikes
/// serve's broker connection: up to `per_file` times per file, each once something new was
/// committed since the last (else a slow machine could be struck before it ever finishes a
/// group), plus 0-0.8 s. A reply lost with a struck connection makes the sender ask again
/// (answered from the index). Every command must come back accepted. Returns how many struck.
fn stream_under_broker_faults(
    fx: &mut Fixture,
    events: &Collector,
    files: &std::path::Path,
    rng: &mut Rng,
    per_file: usize,
    fault: &dyn Fn(&Fixture) -> bool,
) -> usize {
    let mut struck = 0;
    for (name, file) in [("enroll", files.join("enroll.jsonl")), ("batch", files.join("batch.jsonl"))] {
        let n = read_commands(&file).len();
        let index = fx.spawn(name, &["publish", path(&file), "--amqp", &url(AGENCY), "--json", "--timeout-secs", "60"]);
        let deadline = Instant::now() + Duration::from_secs(220);
        let mut here = 0;
        let finished = |fx: &Fixture| published(fx, name, n) || gave_up(fx, name);
        while !finished(fx) {
            let base = events.distinct_seqs();
            while events.distinct_seqs() <= base && !finished(fx) {
                assert!(Instant::now() < deadline, "{name}: timed out with {struck} faults");
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(rng.range(0, 800)));
            if here < per_file && !finished(fx) && fault(fx) {
                (struck, here) = (struck + 1, here + 1);
            }
        }
        let outcomes = if published(fx, name, n) {
            fx.wait_success(index, Duration::from_secs(10));
            outcomes_of(fx, name)
        } else {
            eprintln!("{name}: {} replies lost with a struck connection; publishing again", n - outcomes_of(fx, name).len());
            fx.publish_file(&file, AGENCY)
        };
        assert_eq!(outcomes.len(), n, "{name}: every command answered");
        for o in outcomes {
            assert_eq!(o.status, OutcomeStatus::Accepted, "{name}: {} {:?}", o.command_id, o.code);
        }
    }
    struck
}

/// Every command's events form one contiguous range and none was refused (nothing decided
/// twice), each of `people` is enrolled exactly once, and every seq the relay published is the
/// record the log holds (never an event of a group whose flush failed).
fn assert_log_and_relay_agree(engine: &ansinh::Engine, events: &Collector, people: usize, head: u64) {
    let records = log_records(engine);
    assert_eq!(records.len() as u64, head, "the log holds every seq up to its head");
    let mut by_command: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (seq, _, r) in &records {
        by_command.entry(r.event.command_id.as_str()).or_default().push(*seq);
        assert!(!matches!(r.event.data, EventData::CommandRejected(_)), "{} refused: decided twice", r.event.command_id);
    }
    for (id, seqs) in &by_command {
        assert_eq!(seqs.last().expect("non-empty") - seqs[0] + 1, seqs.len() as u64, "command {id}: one range");
    }
    let enrolled = records.iter().filter(|(_, _, r)| r.event.data.type_name() == "beneficiary.enrolled").count();
    assert_eq!(enrolled, people, "each beneficiary enrolled exactly once");
    let hashes: BTreeMap<u64, &str> = records.iter().map(|(seq, _, r)| (*seq, r.hash.as_str())).collect();
    events.with(|seen| {
        for x in seen {
            assert_eq!(
                hashes.get(&x.record.seq).copied(),
                Some(x.record.hash.as_str()),
                "seq {} was published as a record the log does not hold",
                x.record.seq
            );
        }
    });
}

/// After broker faults, serve stopped: the chain holds, each command has one contiguous range
/// and none was refused (nothing decided twice), each of `people` is enrolled once, and every
/// seq reached the events exchange as the record the log holds. Returns (head, how many seqs
/// were relayed more than once).
fn assert_nothing_lost_or_doubled(fx: &Fixture, events: &Collector, people: usize) -> (u64, usize) {
    let engine = fx.open_engine();
    assert_chain(&engine);
    let head = engine.head().seq;
    wait_for(Duration::from_secs(60), "every event relayed", || events.distinct_seqs() as u64 >= head);
    assert_log_and_relay_agree(&engine, events, people, head);
    let counts = events.counts();
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (1..=head).collect::<Vec<_>>(), "every seq reached the events exchange");
    (head, counts.values().filter(|n| **n > 1).count())
}

#[test]
fn broker_connections_cut_during_consumption_and_relay_lose_and_double_nothing() {
    const PEOPLE: usize = 2_000;
    let seed = env_u64("ANSINH_CRASH_SEED").unwrap_or(7);
    let mut rng = Rng(seed);
    let mut fx = Fixture::new("cut", Settings { group_commands_max: 100, relay_batch_max: 200, ..Settings::default() });
    let files = fx.demo_files(PEOPLE);
    let proxy = Proxy::start();
    proxy.route_serve_through(&fx);
    let events = fx.collector();
    fx.start_serve();
    let rules = fx.publish_file(&files.join("rules.jsonl"), ADMIN);
    assert!(rules.iter().all(|o| o.status == OutcomeStatus::Accepted));
    let cuts = stream_under_broker_faults(&mut fx, &events, &files, &mut rng, 4, &|_| proxy.cut() > 0);
    // The relay is still publishing the batch's instructions: cut it mid-way too.
    let mut relay_cuts = 0;
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(rng.range(50, 400)));
        if proxy.cut() > 0 {
            relay_cuts += 1;
        }
    }
    wait_for(Duration::from_secs(60), "serve to reconnect", || fx.queue_counts(&format!("{}.commands", fx.prefix)).is_some_and(|(_, c)| c == 1));
    fx.stop_serve();
    let (head, twice) = assert_nothing_lost_or_doubled(&fx, &events, PEOPLE);
    eprintln!(
        "broker cuts: seed {seed}, {cuts} cuts while consuming, {relay_cuts} while relaying, {} proxied connections, head {head}, {twice} events relayed twice",
        proxy.accepted.load(std::sync::atomic::Ordering::SeqCst)
    );
}

/// Serve's broker connections, as `rabbitmqctl` names them (their pids): found by their name
/// (`ansinh::bus::connection_name`, a client property) among all the broker's connections.
fn serve_connections(fx: &Fixture) -> Vec<String> {
    let bus = ansinh::bus::BusConfig { prefix: fx.prefix.clone(), ..ansinh::bus::BusConfig::default() };
    let wanted = format!("{{\"connection_name\",\"{}\"}}", ansinh::bus::connection_name(&bus));
    let out = rabbitmqctl(&["-q", "list_connections", "pid", "client_properties"]);
    assert!(out.status.success(), "rabbitmqctl list_connections: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains(&wanted)).filter_map(|l| l.split('\t').next()).map(str::to_string).collect()
}

fn rabbitmqctl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("rabbitmqctl").args(args).output().unwrap_or_else(|e| panic!("rabbitmqctl (it comes with RabbitMQ) cannot run: {e}"))
}

/// Closes these connections from the broker's side (`rabbitmqctl close_connection`, as an
/// operator or a broker under pressure would); returns how many it closed (one may be gone
/// already).
fn close_connections(pids: &[String]) -> usize {
    pids.iter().filter(|pid| rabbitmqctl(&["-q", "close_connection", pid, "ansinh fault test: closed by the broker"]).status.success()).count()
}

/// Sends `commands` through `client` and waits for a reply to each while the broker closes
/// serve's connection up to `max_closes` times, each once a reply more came since the last.
/// Replies lost with a closed connection are asked for again (answered from the index). Each
/// command must have one outcome, accepted: every reply to it says the same. Returns how many
/// closes landed while replies were still due.
fn consume_under_broker_closes(fx: &Fixture, client: &Client, commands: &[CommandEnvelope], max_closes: usize) -> usize {
    let started = Instant::now();
    let ids: BTreeSet<&str> = commands.iter().map(|e| e.command_id.as_str()).collect();
    let answered =
        || client.replies.lock().expect("lock").iter().filter(|o| ids.contains(o.command_id.as_str())).map(|o| o.command_id.clone()).collect::<BTreeSet<_>>();
    // Sent from another thread, 150 at a time every 250 ms, as senders do over a day: serve
    // consumes them as they arrive for several seconds, and the closes land meanwhile
    // (`rabbitmqctl` takes a second or two per call).
    // Serve is idle: its connection is looked up now, so that the first close lands at once.
    let mut pids = serve_connections(fx);
    let closes = std::thread::scope(|scope| {
        scope.spawn(|| {
            for chunk in commands.chunks(150) {
                client.send(&fx.rt, chunk);
                std::thread::sleep(Duration::from_millis(250));
            }
            eprintln!("sent {} commands in {:.1} s", commands.len(), started.elapsed().as_secs_f64());
        });
        let mut closes = 0;
        while closes < max_closes && answered().len() < ids.len() {
            let base = answered().len();
            wait_for(Duration::from_secs(120), "a reply more", || answered().len() > base);
            if close_connections(&pids) > 0 && answered().len() < ids.len() {
                closes += 1;
                eprintln!("closed while consuming: {} of {} answered, {:.1} s in", answered().len(), ids.len(), started.elapsed().as_secs_f64());
            }
            pids = serve_connections(fx);
        }
        closes
    });
    for round in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(60);
        while answered().len() < ids.len() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let done = answered();
        let missing: Vec<CommandEnvelope> = commands.iter().filter(|e| !done.contains(&e.command_id)).cloned().collect();
        if missing.is_empty() {
            break;
        }
        assert!(round < 3, "{} commands still unanswered", missing.len());
        eprintln!("{} replies lost with a closed connection; asking again", missing.len());
        client.send(&fx.rt, &missing);
    }
    let replies = client.replies.lock().expect("lock").clone();
    let mut first: BTreeMap<&str, &Outcome> = BTreeMap::new();
    for o in replies.iter().filter(|o| ids.contains(o.command_id.as_str())) {
        assert_eq!(o.status, OutcomeStatus::Accepted, "{} {:?} {:?}", o.command_id, o.code, o.message);
        let f = *first.entry(o.command_id.as_str()).or_insert(o);
        assert_eq!((f.seqs, &f.lines), (o.seqs, &o.lines), "{}: every reply is the same outcome", o.command_id);
    }
    eprintln!("consumed {} commands in {:.1} s with {closes} closes", ids.len(), started.elapsed().as_secs_f64());
    closes
}

/// Serve's connection closed by the broker (not cut on the wire) while a stream is consumed
/// and while the relay publishes a backlog: serve reconnects each time, and nothing is lost or
/// decided twice; the relay publishes each seq, at most its unconfirmed batch again per close.
#[test]
fn broker_closing_serves_connection_during_consumption_and_relay_loses_and_doubles_nothing() {
    const PEOPLE: usize = 3_000;
    const RELAY_BATCH: usize = 10;
    let mut fx = Fixture::new("closed", Settings { group_commands_max: 100, relay_batch_max: RELAY_BATCH, ..Settings::default() });
    let files = fx.demo_files(PEOPLE);
    let events = fx.collector();
    fx.start_serve();
    assert!(fx.publish_file(&files.join("rules.jsonl"), ADMIN).iter().all(|o| o.status == OutcomeStatus::Accepted));
    let client = fx.client(AGENCY);
    let mut closes = 0;
    for file in ["enroll.jsonl", "batch.jsonl"] {
        closes += consume_under_broker_closes(&fx, &client, &read_commands(&files.join(file)), 2);
    }
    assert!(closes >= 1, "the broker closed serve's connection while it consumed");

    // The relay: two more months are sent; the writer stores each batch in one group, and the
    // relay publishes thousands of events behind it, 10 per confirm, while the broker closes
    // serve's connection (looked up beforehand, while serve is idle, so that the first close
    // lands at once).
    let mut funding = Vec::new();
    let mut batches = Vec::new();
    for period in ["2025-02", "2025-03"] {
        let out = fx.dir.path().join(format!("files-{period}"));
        fx.run(&["demo-files", "--out", path(&out), "--beneficiaries", &PEOPLE.to_string(), "--period", period], Duration::from_secs(60));
        funding.extend(read_commands(&out.join("rules.jsonl")).into_iter().filter(|e| matches!(e.command, Command::FundBudget(_))));
        batches.extend(read_commands(&out.join("batch.jsonl")));
    }
    let admin = fx.client(ADMIN);
    admin.send(&fx.rt, &funding);
    let relayed = admin
        .wait_replies(funding.iter().map(|e| e.command_id.as_str()), Duration::from_secs(60))
        .iter()
        .filter_map(|o| o.seqs)
        .map(|s| s[1])
        .max()
        .expect("funding stored");
    wait_for(Duration::from_secs(60), "the relay to catch up", || events.distinct_seqs() as u64 >= relayed);
    let mut pids = serve_connections(&fx);
    assert_eq!(pids.len(), 1, "serve has one named connection");
    client.send(&fx.rt, &batches);
    wait_for(Duration::from_secs(60), "the relay to start on the new events", || events.distinct_seqs() as u64 > relayed);
    let mut relayed_at_close = Vec::new();
    while relayed_at_close.len() < 2 {
        if close_connections(&pids) > 0 {
            relayed_at_close.push(events.distinct_seqs() as u64);
        }
        pids = serve_connections(&fx);
    }
    let head = client
        .wait_replies(batches.iter().map(|e| e.command_id.as_str()), Duration::from_secs(120))
        .iter()
        .filter_map(|o| o.seqs)
        .map(|s| s[1])
        .max()
        .expect("batches stored");
    eprintln!("closed while relaying seqs {relayed}..{head}: with {relayed_at_close:?} relayed");
    let relay_closes = relayed_at_close.iter().filter(|n| **n < head).count();
    wait_for(Duration::from_secs(60), "the relay to publish the backlog", || events.distinct_seqs() as u64 >= head);
    assert!(relay_closes >= 1, "the broker closed serve's connection while the relay published seqs {relayed}..{head} (it finished first)");
    fx.stop_serve();
    let (head, twice) = assert_nothing_lost_or_doubled(&fx, &events, PEOPLE);
    assert!(twice <= (closes + relay_closes) * RELAY_BATCH, "at most one unconfirmed relay batch again per close: {twice} seqs relayed twice");
    eprintln!("broker closes: {closes} while consuming, {relay_closes} while relaying {} events, head {head}, {twice} events relayed twice", head - relayed);
}

#[test]
fn a_broker_that_stays_away_makes_serve_unready_without_spinning() {
    let mut fx = Fixture::new("away", Settings::default());
    let proxy = Proxy::start();
    proxy.route_serve_through(&fx);
    fx.start_serve();
    assert_eq!(readyz(&fx, 1).0, 200, "ready while connected");
    proxy.refuse(true);
    proxy.cut();
    wait_for(Duration::from_secs(30), "readyz to say the broker is away", || {
        let (status, body) = readyz(&fx, 1);
        status == 503 && body.contains("\"broker_connected\":false")
    });
    let pid = serve_pid(&fx);
    let (cpu0, attempts0, t0) = (cpu_seconds(pid), proxy.accepted.load(std::sync::atomic::Ordering::SeqCst), Instant::now());
    std::thread::sleep(Duration::from_secs(6));
    let (cpu, attempts, secs) = (cpu_seconds(pid) - cpu0, proxy.accepted.load(std::sync::atomic::Ordering::SeqCst) - attempts0, t0.elapsed().as_secs_f64());
    eprintln!("broker away: {attempts} connection attempts and {cpu:.2} s CPU in {secs:.1} s");
    assert!(cpu < 0.1 * secs, "serve spins while the broker is away: {cpu:.2} s CPU in {secs:.1} s");
    assert!(attempts <= 20, "reconnects are backed off (max 1 s): {attempts} attempts in {secs:.1} s");
    assert!(attempts >= 2, "serve keeps trying: {attempts} attempts in {secs:.1} s");
    assert_eq!(readyz(&fx, 1).0, 503, "still unready");
    // The broker comes back: serve reconnects and is ready again.
    proxy.refuse(false);
    wait_for(Duration::from_secs(30), "serve to be ready again", || readyz(&fx, 1).0 == 200);
    fx.stop_serve();
}

// ---- storage faults under serve ---------------------------------------------------------------

/// Sends `envelopes` as `user` through a test client; returns it (its replies arrive live).
fn send(fx: &Fixture, user: &str, envelopes: &[CommandEnvelope]) -> Client {
    let client = fx.client(user);
    client.send(&fx.rt, envelopes);
    client
}

/// Each command got exactly one reply, and it says accepted.
fn assert_one_accepted_reply_each(client: &Client, envelopes: &[CommandEnvelope], what: &str) {
    let replies = client.wait_replies(envelopes.iter().map(|e| e.command_id.as_str()), Duration::from_secs(120));
    let mut by_id: BTreeMap<&str, Vec<&Outcome>> = BTreeMap::new();
    for o in &replies {
        by_id.entry(o.command_id.as_str()).or_default().push(o);
    }
    for e in envelopes {
        let got = &by_id[e.command_id.as_str()];
        assert_eq!(got.len(), 1, "{what}: {} answered {} times", e.command_id, got.len());
        assert_eq!(got[0].status, OutcomeStatus::Accepted, "{what}: {} {:?} {:?}", e.command_id, got[0].code, got[0].message);
    }
}

/// `/readyz` of serve's first run (never restarted) until it says 503 and contains `needle`.
fn wait_unready(fx: &Fixture, needle: &str, timeout: Duration) -> String {
    let mut last = String::new();
    wait_for(timeout, &format!("/readyz to say 503 with {needle:?}"), || {
        let (status, body) = readyz(fx, 1);
        last = body;
        status == 503 && last.contains("\"log_writable\":false") && last.contains(needle)
    });
    last.lines().last().unwrap_or_default().to_string()
}

/// After a storage-fault run, serve stopped: the chain holds; each beneficiary is enrolled once,
/// nothing was decided twice and each command has one contiguous range; the views equal a
/// rebuild and the ledger sums to zero; the relay published every seq, and each as the record
/// the log holds (never an event of a group whose flush failed); `ansinh audit verify` passes.
fn assert_consistent_after_storage_fault(fx: &Fixture, events: &Collector, people: usize) {
    let mut engine = fx.open_engine();
    assert_chain(&engine);
    let head = engine.head().seq;
    wait_for(Duration::from_secs(60), "every event relayed", || events.distinct_seqs() as u64 >= head);
    assert_log_and_relay_agree(&engine, events, people, head);
    assert_eq!(events.counts().keys().copied().collect::<Vec<_>>(), (1..=head).collect::<Vec<_>>(), "every seq reached the events exchange");
    assert_eq!(engine.views().ledger_total().expect("ledger"), rust_decimal::Decimal::ZERO, "double entry");
    let before = engine.views().dump().expect("views dump");
    {
        let (views, log) = engine.views_mut();
        views.rebuild(log, &mut |_| {}).expect("views rebuild");
    }
    assert!(engine.views().dump().expect("views dump") == before, "the views equal a rebuild from the log");
    drop(engine);
    audit_verify(fx);
    let (dead, _) = fx.queue_counts(&format!("{}.dead", fx.prefix)).expect("the dead-letter queue");
    assert_eq!(dead, 0, "nothing was dead-lettered (a group held through the fault is not redelivered)");
}

/// Serve's data dir fills up mid-stream. Serve stops acknowledging (nothing more is answered,
/// the commands wait in the queue), reports why (`/readyz`: 503, `log_writable` false, the
/// error) without spinning, and once space is back it reopens the data dir by itself, in the
/// same process, and the stream completes: one reply per command, a consistent log.
#[test]
fn a_full_disk_under_serve_stops_acks_reports_unready_and_serve_resumes_by_itself() {
    const PEOPLE: usize = 3_000;
    let mut fx = Fixture::new("diskfull", Settings { group_commands_max: 100, ..Settings::default() });
    let disk = SmallDisk::mount(&fx.data_dir, "4m").unwrap_or_else(|e| panic!("a 4 MB tmpfs for the data dir ({e}): this test needs root with CAP_SYS_ADMIN"));
    let files = fx.demo_files(PEOPLE);
    let events = fx.collector();
    fx.start_serve();
    let pid = serve_pid(&fx);
    assert!(fx.publish_file(&files.join("rules.jsonl"), ADMIN).iter().all(|o| o.status == OutcomeStatus::Accepted));
    let enroll = read_commands(&files.join("enroll.jsonl"));
    let client = send(&fx, AGENCY, &enroll);
    let why = wait_unready(&fx, "No space left on device", Duration::from_secs(90));
    // The replies to the last group stored before the disk filled may still be on their way.
    std::thread::sleep(Duration::from_secs(1));
    let answered = client.replies.lock().expect("lock").len();
    let cpu0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_seconds(pid) - cpu0;
    assert!(cpu < 1.5, "serve spins on a full disk: {cpu:.2} s CPU in 3 s");
    assert_eq!(client.replies.lock().expect("lock").len(), answered, "nothing is answered (acknowledged) while the disk is full");
    assert!(answered < PEOPLE, "the disk filled before the stream ended");
    let (ready, _) = fx.queue_counts(&format!("{}.commands", fx.prefix)).expect("the queue");
    assert!(ready > 0, "the unanswered commands wait in the queue");
    eprintln!("serve on a full disk: {answered} answered, {ready} waiting in the queue, {cpu:.2} s CPU in 3 s; /readyz: {why}");

    disk.resize("256m");
    let back = Instant::now();
    wait_for(Duration::from_secs(30), "serve to be ready again by itself", || readyz(&fx, 1).0 == 200);
    assert_eq!(serve_pid(&fx), pid, "the same serve process resumed");
    eprintln!("serve on a full disk: ready again {:.1} s after space came back", back.elapsed().as_secs_f64());
    assert_one_accepted_reply_each(&client, &enroll, "enroll");
    fx.stop_serve();
    assert_consistent_after_storage_fault(&fx, &events, PEOPLE);
    drop(disk);
}

/// Serve's data dir turns read-only mid-stream (a disk error; see `Ext4Disk`). Serve stops
/// acknowledging, reports the error (`/readyz`) without spinning, and lets go of every file on
/// the data dir, so the filesystem can be unmounted and checked; while it is away serve finds
/// no database there and creates none; once it is mounted again serve reopens the data dir by
/// itself and the stream completes: one reply per command, a consistent log.
#[test]
fn a_read_only_data_dir_under_serve_stops_acks_and_serve_resumes_once_it_is_mounted_again() {
    const PEOPLE: usize = 3_000;
    // Groups as large as the prefetch: were the group in hand nacked at each failed try, every
    // command would reach the queue's delivery limit (5) within seconds and be dead-lettered.
    let mut fx = Fixture::new("readonly", Settings { group_commands_max: 1_000, ..Settings::default() });
    let mut disk = Ext4Disk::create(&fx.dir.path().join("disk.img"), &fx.data_dir, "256M");
    let files = fx.demo_files(PEOPLE);
    let events = fx.collector();
    fx.start_serve();
    let pid = serve_pid(&fx);
    assert!(fx.publish_file(&files.join("rules.jsonl"), ADMIN).iter().all(|o| o.status == OutcomeStatus::Accepted));
    let enroll = read_commands(&files.join("enroll.jsonl"));
    let (before, after) = enroll.split_at(1_000);
    assert_one_accepted_reply_each(&send(&fx, AGENCY, before), before, "enroll before the fault");

    disk.fail();
    let client = send(&fx, AGENCY, after);
    let why = wait_unready(&fx, "Read-only file system", Duration::from_secs(60));
    let cpu0 = cpu_seconds(pid);
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_seconds(pid) - cpu0;
    assert!(cpu < 1.5, "serve spins on a read-only data dir: {cpu:.2} s CPU in 3 s");
    assert_eq!(client.replies.lock().expect("lock").len(), 0, "nothing sent after the fault is answered (acknowledged) while the data dir is read-only");
    let (ready, _) = fx.queue_counts(&format!("{}.commands", fx.prefix)).expect("the queue");
    assert!(ready > 0, "the commands wait in the queue");
    eprintln!("serve on a read-only data dir: {ready} commands waiting in the queue, {cpu:.2} s CPU in 3 s; /readyz: {why}");

    // The operator unmounts the filesystem: possible only once serve closed every file on it.
    wait_for(Duration::from_secs(30), "serve to let go of the data dir (umount)", || disk.try_unmount());
    wait_unready(&fx, "holds no database", Duration::from_secs(30));
    assert_eq!(std::fs::read_dir(&fx.data_dir).expect("the mount point").count(), 0, "serve created nothing on the empty mount point");
    disk.mount();
    let back = Instant::now();
    wait_for(Duration::from_secs(30), "serve to be ready again by itself", || readyz(&fx, 1).0 == 200);
    assert_eq!(serve_pid(&fx), pid, "the same serve process resumed");
    eprintln!("serve on a read-only data dir: ready again {:.1} s after the filesystem came back", back.elapsed().as_secs_f64());
    assert_one_accepted_reply_each(&client, after, "enroll after the fault");
    fx.stop_serve();
    assert_consistent_after_storage_fault(&fx, &events, PEOPLE);
    drop(disk);
}

/// After a sled I/O error sled keeps the error for the life of the `Db`, so recovering in the
/// same process means closing every handle on the data dir and opening it again. While the
/// disk is still full the reopen fails (its probe write meets the fault) and leaves nothing
/// open, so it can be tried again (a handle left open would make the next try fail on sled's
/// lock); once space is back it succeeds, the failed group's commands are decided once, and
/// work goes on. Dropping the reopened engine releases every file: the tmpfs unmounts.
#[test]
fn recover_in_place_after_the_disk_has_space_again() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let data = tmp.path().join("data");
    let disk = SmallDisk::mount(&data, "4m").expect("a small tmpfs (root with CAP_SYS_ADMIN)");
    let (rules, enroll) = demo_commands(40_000);
    let options = ansinh::EngineOptions::new(&data);
    let mut engine = ansinh::Engine::open(&options, &mut |_, _| {}).expect("the engine opens");
    engine.execute(&rules).expect("rules stored");
    let mut done = 0;
    while engine.execute(&enroll[done..done + 200]).is_ok() {
        done += 200;
        assert!(done + 200 <= enroll.len(), "4 MB never filled up");
    }
    let closed = engine.close();
    let mut refused = Vec::new();
    for _ in 0..2 {
        match closed.reopen() {
            Ok(_) => panic!("the data dir reopened while the disk is still full: the probe write did not meet the fault"),
            Err(e) => refused.push(e.to_string()),
        }
    }
    eprintln!("reopen on a full disk: {refused:?}");
    assert!(refused.iter().all(|e| !e.contains("lock")), "a failed reopen leaves nothing open: {refused:?}");
    disk.resize("256m");
    let mut engine = closed.reopen().expect("recovers in place once the disk has space");
    assert!(engine.head().seq >= closed.durable_head().seq, "the reopened log passes through the durable head");
    let outcomes = engine.execute(&enroll[done..done + 400]).expect("work goes on");
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Accepted || o.duplicate), "the failed group's commands are decided once");
    assert_chain(&engine);
    let enrolled = log_records(&engine).iter().filter(|(_, _, r)| r.event.data.type_name() == "beneficiary.enrolled").count();
    assert_eq!(enrolled, done + 400, "each enrollment exactly once");
    drop(engine);
    disk.unmount();
}

/// A reopen refuses a data dir that holds no database (the empty mount point of a filesystem
/// that is not mounted) rather than start a new, empty log there, and creates nothing in it.
#[test]
fn reopen_refuses_a_data_dir_without_its_database() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let data = tmp.path().join("data");
    let (rules, _) = demo_commands(10);
    let options = ansinh::EngineOptions::new(&data);
    let mut engine = ansinh::Engine::open(&options, &mut |_, _| {}).expect("the engine opens");
    engine.execute(&rules).expect("rules stored");
    let closed = engine.close();
    let aside = tmp.path().join("aside");
    std::fs::rename(&data, &aside).expect("the data dir moves aside");
    std::fs::create_dir(&data).expect("an empty directory in its place");
    let e = closed.reopen().err().expect("no reopen over an empty directory");
    assert!(matches!(e, ansinh::EngineError::NoDatabase { .. }), "{e}");
    assert_eq!(std::fs::read_dir(&data).expect("the directory").count(), 0, "nothing was created in it");
    std::fs::remove_dir(&data).expect("the empty directory goes");
    std::fs::rename(&aside, &data).expect("the data dir comes back");
    let engine = closed.reopen().expect("reopens once the database is back");
    assert_eq!(engine.head(), closed.durable_head(), "the same log");
}

/// A filesystem error mid-run (ext4 turns read-only and aborts its journal, as on a failing
/// disk): the next group fails; every group acknowledged before is on disk when the filesystem
/// is mounted again, and the engine reopens in the same process. (sled's own flush does not
/// commit the file's metadata; without the engine's fsync the data file was empty here.)
#[test]
fn acknowledged_groups_survive_a_filesystem_error_and_the_engine_reopens_after_a_remount() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let data = tmp.path().join("data");
    let mut disk = Ext4Disk::create(&tmp.path().join("disk.img"), &data, "256M");
    let (rules, enroll) = demo_commands(1_200);
    let options = ansinh::EngineOptions::new(&data);
    let mut engine = ansinh::Engine::open(&options, &mut |_, _| {}).expect("the engine opens");
    engine.execute(&rules).expect("rules stored");
    for group in enroll[..1_000].chunks(100) {
        engine.execute(group).expect("a group stored");
    }
    let acknowledged = engine.head().clone();
    disk.fail();
    let e = engine.execute(&enroll[1_000..1_100]).expect_err("no group is stored on a read-only filesystem");
    assert!(e.to_string().contains("Read-only file system"), "{e}");
    let closed = engine.close();
    let refused = closed.reopen().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused.contains("Read-only file system"), "no reopen while read-only: {refused:?}");
    assert!(disk.try_unmount(), "the closed engine holds no file on the filesystem");
    disk.mount();
    let mut engine = closed.reopen().expect("the engine reopens once the filesystem is mounted again");
    assert_eq!(engine.head(), &acknowledged, "every acknowledged group is there, nothing after");
    let outcomes = engine.execute(&enroll[1_000..1_200]).expect("work goes on");
    assert!(outcomes.iter().all(|o| o.status == OutcomeStatus::Accepted));
    assert_chain(&engine);
    let enrolled = log_records(&engine).iter().filter(|(_, _, r)| r.event.data.type_name() == "beneficiary.enrolled").count();
    assert_eq!(enrolled, 1_200, "each enrollment exactly once");
}

/// sled 0.34 takes an unfinished snapshot (`snap.<lsn>.generating`, left by a write that failed
/// on a full disk or was cut by a crash) for the latest one and then fails every open with
/// "Read corrupted data"; the engine removes it and opens.
#[test]
fn an_unfinished_sled_snapshot_does_not_stop_the_engine_from_opening() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let data = tmp.path().join("data");
    let (rules, _) = demo_commands(10);
    let options = ansinh::EngineOptions::new(&data);
    let mut engine = ansinh::Engine::open(&options, &mut |_, _| {}).expect("the engine opens");
    engine.execute(&rules).expect("rules stored");
    let head = engine.head().clone();
    drop(engine);
    let unfinished = data.join("snap.FFFFFFFFFFFFFFFF.generating");
    std::fs::write(&unfinished, b"").expect("an unfinished snapshot");
    let engine = ansinh::Engine::open(&options, &mut |_, _| {}).expect("the engine opens despite an unfinished snapshot");
    assert_eq!(engine.head(), &head, "the same log");
    assert!(!unfinished.exists(), "the unfinished snapshot was removed");
}
