//! The auditor's tools on real sled data made by the engine: an untouched log verifies; a
//! changed amount, a deleted record, two swapped records and a cut tail are each found at the
//! exact seq, in sled and in an export; a chain rewritten consistently is caught by its
//! checkpoints; replay as of seq N equals the live views when the head was N; rebuild is
//! byte-identical; the independent Python verifier agrees.

mod common;

use ansinh::audit::replay::{replay, AsOf};
use ansinh::audit::verify::{verify, Report, VerifyOptions};
use ansinh::audit::{self, Source};
use ansinh::command::{Command, CommandEnvelope};
use ansinh::domain::FailureReason;
use ansinh::log::chain::seal;
use ansinh::log::segment::{self, SealedRecord};
use ansinh::log::{parse_record, Head};
use ansinh::outcome::OutcomeStatus;
use ansinh::projection::KeyValues;
use ansinh::{Engine, EngineOptions};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output};

const CACHE: u64 = 32 * 1024 * 1024;
/// Small, so that the fixture log (about 25 events) holds several checkpoints.
const CHECKPOINT_EVERY: u64 = 5;

struct Data {
    dir: tempfile::TempDir,
    /// After each group: the head and every live view.
    snapshots: Vec<(Head, KeyValues)>,
}

impl Data {
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn head(&self) -> Head {
        self.snapshots.last().expect("groups were executed").0.clone()
    }
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn at(command_id: &str, issued_at: &str, command: Command) -> CommandEnvelope {
    CommandEnvelope { command_id: command_id.into(), v: 1, issued_at: issued_at.into(), sender: None, command }
}

/// A month in five groups, each at its own time (offsets differ on purpose: group 4 is
/// `2025-01-06T06:00:00+07:00`, which is 2025-01-05T23:00:00Z).
fn groups() -> Vec<Vec<CommandEnvelope>> {
    let t1 = "2024-06-20T09:00:00+07:00";
    let t2 = "2024-12-20T09:00:00+07:00";
    let t3 = "2025-01-02T10:00:00+07:00";
    let t4 = "2025-01-06T06:00:00+07:00";
    let t5 = "2025-01-08T10:00:00+07:00";
    let amount = "750000";
    vec![
        vec![
            at("program", t1, define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")])),
            at("level-2024-07", t1, set_level_cmd(None, "2024-07", "500000")),
            at("fund-2025-01", t1, fund_cmd("2025-01", "100000000")),
        ],
        [AN, BINH, CUONG, DUNG].iter().map(|c| at(&format!("enroll-{}", c.id), t2, enroll_cmd(c, "6c", "2024-07"))).collect(),
        vec![at("batch-b1", t3, batch_cmd("B1", "2025-01", &[(AN.id, amount), (BINH.id, amount), (CUONG.id, amount)]))],
        vec![at("settle-1", t4, settlements_cmd(VCB, vec![settled_item("B1-000001", "FT-1"), failed_item("B1-000002", FailureReason::AccountClosed, "FT-2")]))],
        vec![at("batch-b2", t5, batch_cmd("B2", "2025-01", &[(DUNG.id, amount)]))],
        one_off_commands(),
        vec![at("settle-oo", "2025-09-03T10:00:00+07:00", settlements_cmd(VCB, vec![failed_item("OO-1-000001", FailureReason::AccountClosed, "AC04")]))],
    ]
}

/// Issue 12's one-off program in the same log: defined, funded, a batch of AN's partition with
/// a payout to a bank, a line listed for cash and a refused line; the payout fails afterwards.
fn one_off_commands() -> Vec<CommandEnvelope> {
    use ansinh::command::{DefineOneOffProgram, FundOneOff, OneOffLine, SubmitOneOffBatch};
    let t = "2025-09-01T08:00:00+07:00";
    let partition = ansinh::shard::partition_of(AN.id);
    let neighbour = (124u64..).map(|n| format!("056185{n:06}")).find(|id| ansinh::shard::partition_of(id) == partition).unwrap();
    let line = |citizen_id: &str, account, commune: Option<&str>| OneOffLine {
        citizen_id: citizen_id.into(),
        id_assigned_on: "2021-06-01".into(),
        account,
        commune: commune.map(String::from),
    };
    vec![
        at(
            "oneoff-define",
            t,
            Command::DefineOneOffProgram(DefineOneOffProgram {
                program_id: "ho-tro-100k".into(),
                name: "Quà tặng 100.000 đồng".into(),
                amount: "100000".into(),
                eligible_cutoff: "2025-08-30".into(),
                period: "2025-09".into(),
                legal_basis: String::new(),
            }),
        ),
        at("oneoff-fund", t, Command::FundOneOff(FundOneOff { program_id: "ho-tro-100k".into(), amount: "1000000".into(), reference: "KB".into() })),
        at(
            "oneoff-batch",
            t,
            Command::SubmitOneOffBatch(SubmitOneOffBatch {
                batch_id: "OO-1".into(),
                program_id: "ho-tro-100k".into(),
                partition: u32::from(partition),
                lines: vec![line(AN.id, Some(account_input(&AN)), None), line(&neighbour, None, Some("22333")), line(AN.id, None, Some("22333"))],
            }),
        ),
    ]
}

fn build() -> Data {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut options = EngineOptions::new(dir.path());
    options.checkpoint_every_events = CHECKPOINT_EVERY;
    let mut engine = Engine::open(&options, &mut |_, _| {}).expect("a fresh engine opens");
    let mut snapshots = Vec::new();
    for group in groups() {
        for outcome in engine.execute(&group).expect("the engine stores the group") {
            assert_eq!(outcome.status, OutcomeStatus::Accepted, "{outcome:#?}");
        }
        snapshots.push((engine.head().clone(), engine.views().dump().expect("views dump")));
    }
    Data { dir, snapshots }
}

fn open(path: &Path) -> sled::Db {
    audit::open_data_dir(path, CACHE).expect("the data dir opens")
}

fn verify_dir(path: &Path) -> Report {
    let db = open(path);
    verify(&Source::data_dir(&db).unwrap(), &VerifyOptions { cache_capacity_bytes: CACHE, ..VerifyOptions::default() }, &mut |_| {}).expect("verification runs")
}

fn verify_file(path: &Path, expected_head: Option<Head>) -> Report {
    let options = VerifyOptions { expected_head, cache_capacity_bytes: CACHE, ..VerifyOptions::default() };
    verify(&Source::file(path), &options, &mut |_| {}).expect("verification runs")
}

fn export(data: &Data) -> PathBuf {
    let path = data.file("export.jsonl");
    let db = open(data.path());
    let mut out = std::fs::File::create(&path).unwrap();
    let summary = audit::export::export(&db, 1, None, &mut out, &mut |_| {}).expect("export");
    assert_eq!((summary.first_seq, summary.last_seq, summary.records), (1, data.head().seq, data.head().seq));
    path
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap().lines().map(String::from).collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
}

/// The seq of the first `payout.instructed` record (an amount to change).
fn first_payout(data: &Data) -> u64 {
    let db = open(data.path());
    let journal = db.open_tree("journal").unwrap();
    (1..=data.head().seq).find(|s| String::from_utf8_lossy(&stored(&journal, *s)).contains("\"payout.instructed\"")).unwrap()
}

// Damage done to the journal the way someone with write access to sled could: a record
// replaced or removed inside its segment (`log::segment`), its index entry left as it was.

/// The stored bytes of the record at `seq`.
fn stored(journal: &sled::Tree, seq: u64) -> Vec<u8> {
    segment::find(journal, seq).unwrap().expect("a segment holds the seq").record(seq).to_vec()
}

/// The records of the segment holding `seq`, as they would be packed again.
fn unpack(journal: &sled::Tree, seq: u64) -> (u64, Vec<SealedRecord>) {
    let s = segment::find(journal, seq).unwrap().expect("a segment holds the seq");
    let records = s.records_from(s.first_seq).map(|(seq, bytes, meta)| SealedRecord { seq, bytes: bytes.to_vec(), meta: meta.clone() }).collect();
    (s.first_seq, records)
}

fn repack(journal: &sled::Tree, first_seq: u64, records: &[SealedRecord]) {
    journal.remove(segment::key(first_seq)).unwrap();
    if let Some(first) = records.first() {
        assert_eq!(first.seq, first_seq);
        let mut packed = segment::pack(records);
        assert_eq!(packed.len(), 1, "a segment repacks as one");
        let (key, value) = packed.remove(0);
        journal.insert(key, value).unwrap();
    }
}

/// Replaces the stored bytes of the record at `seq`.
fn store(journal: &sled::Tree, seq: u64, bytes: Vec<u8>) {
    let (first, mut records) = unpack(journal, seq);
    records[(seq - first) as usize].bytes = bytes;
    repack(journal, first, &records);
}

/// Removes the record at `seq` from its segment; the records after it in that segment then sit
/// one seq earlier, as a deletion inside a run of records leaves them.
fn remove(journal: &sled::Tree, seq: u64) {
    let (first, mut records) = unpack(journal, seq);
    records.remove((seq - first) as usize);
    for (i, r) in records.iter_mut().enumerate() {
        r.seq = first + i as u64;
    }
    repack(journal, first, &records);
}

fn change_amount(record: &str) -> String {
    assert!(record.contains("\"amount\":\"750000\""), "{record}");
    record.replacen("\"amount\":\"750000\"", "\"amount\":\"7500000\"", 1)
}

fn assert_fails_at(report: &Report, seq: u64, words: &str) {
    let failure = report.failure.as_ref().unwrap_or_else(|| panic!("expected a failure at seq {seq}, got OK: {:#?}", report.checks));
    assert_eq!(failure.seq, Some(seq), "{failure}");
    assert!(failure.what.contains(words), "expected {words:?} in: {failure}");
}

fn cli(args: &[&str]) -> Output {
    Process::new(env!("CARGO_BIN_EXE_ansinh")).args(args).output().expect("the ansinh binary runs")
}

fn python(args: &[&str]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/verify_export.py");
    Process::new("python3").arg(script).args(args).output().expect("python3 runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_untouched_log_verifies_from_the_data_dir_and_from_its_export() {
    let data = build();
    let report = verify_dir(data.path());
    assert_eq!(report.failure, None, "{:#?}", report.checks);
    assert_eq!(report.head, Some(data.head()));
    assert_eq!(report.records, data.head().seq);
    let checks = report.checks.join("\n");
    assert!(checks.contains("byte-identical") && checks.contains("sum to 0"), "{checks}");
    let marks = audit::checkpoints_since(&open(data.path()), 0).unwrap();
    assert!(marks.len() >= 3, "a checkpoint every {CHECKPOINT_EVERY} events: {marks:?}");

    let file = export(&data);
    let report = verify_file(&file, Some(data.head()));
    assert_eq!(report.failure, None, "{:#?}", report.checks);
    assert_eq!(report.head, Some(data.head()));

    let out = cli(&["audit", "verify", "--data-dir", s(data.path())]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("OK\n"), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("events/s"), "{}", text(&out));
    let out = python(&[s(&file), "--head", &format!("{}:{}", data.head().seq, data.head().hash)]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_changed_amount_in_sled_is_found_at_its_seq() {
    let data = build();
    let seq = first_payout(&data);
    {
        let db = open(data.path());
        let journal = db.open_tree("journal").unwrap();
        let record = String::from_utf8(stored(&journal, seq)).unwrap();
        store(&journal, seq, change_amount(&record).into_bytes());
        db.flush().unwrap();
    }
    assert_fails_at(&verify_dir(data.path()), seq, "hash mismatch");
    let out = cli(&["audit", "verify", "--data-dir", s(data.path())]);
    assert!(!out.status.success());
    assert!(text(&out).contains(&format!("FAILED at seq {seq}: hash mismatch")), "{}", text(&out));
}

#[test]
fn a_changed_amount_in_an_export_is_found_at_its_seq_by_both_verifiers() {
    let data = build();
    let seq = first_payout(&data);
    let file = export(&data);
    let mut records = lines(&file);
    records[seq as usize - 1] = change_amount(&records[seq as usize - 1]);
    write_lines(&file, &records);
    assert_fails_at(&verify_file(&file, None), seq, "hash mismatch");
    let out = python(&[s(&file)]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("FAILED at seq {seq}: hash mismatch")), "{}", text(&out));
}

/// Issue 16: before, the engine recorded `at` = 2025-02-30 from an impossible issued_at, verify
/// said OK and `replay --as-of` a time failed for good. A chain that is consistent (re-sealed
/// from the changed record on) but holds an `at` that is no instant fails verify at its seq.
#[test]
fn an_impossible_event_time_is_found_at_its_seq_even_in_a_consistent_chain() {
    let data = build();
    let seq = first_payout(&data);
    let file = export(&data);
    let original = lines(&file);
    for bad in [
        "2025-02-30T10:00:00+07:00",
        "2025-04-31T10:00:00Z",
        "2025-01-02T10:00:00+99:99",
        "2025-01-02T10:00:00+24:00",
        "2016-12-31T23:59:60Z",
        "2025-01-02T24:00:00Z",
    ] {
        let mut records = original.clone();
        let mut prev = parse_record(seq - 1, records[seq as usize - 2].as_bytes()).unwrap().hash;
        for s in seq..=data.head().seq {
            let mut event = parse_record(s, records[s as usize - 1].as_bytes()).unwrap().event;
            if s == seq {
                event.at = bad.into();
            }
            let (bytes, hash) = seal(s, &prev, &event);
            records[s as usize - 1] = String::from_utf8(bytes).unwrap();
            prev = hash;
        }
        write_lines(&file, &records);
        assert_fails_at(&verify_file(&file, None), seq, "event time");
        let as_of = AsOf::parse("2025-01-31T00:00:00Z").unwrap();
        assert!(replay(&Source::file(&file), &as_of, CACHE, &mut |_| {}).is_err(), "{bad}: replay as of a time cannot pass it");
    }
}

#[test]
fn a_changed_segment_index_is_found_at_its_seq() {
    // The relay routes by the index beside each record (not covered by the hash): a bank's
    // instruction re-routed to another bank must not pass verification.
    let data = build();
    let seq = first_payout(&data);
    {
        let db = open(data.path());
        let journal = db.open_tree("journal").unwrap();
        let (first, mut records) = unpack(&journal, seq);
        records[(seq - first) as usize].meta.qualifier = "970415".into();
        repack(&journal, first, &records);
        db.flush().unwrap();
    }
    assert_fails_at(&verify_dir(data.path()), seq, "index was changed");
}

#[test]
fn a_deleted_record_is_found_at_its_seq() {
    let data = build();
    let seq = 7;
    let file = export(&data);
    {
        let db = open(data.path());
        remove(&db.open_tree("journal").unwrap(), seq);
        db.flush().unwrap();
    }
    assert_fails_at(&verify_dir(data.path()), seq, "missing");
    let mut records = lines(&file);
    records.remove(seq as usize - 1);
    write_lines(&file, &records);
    assert_fails_at(&verify_file(&file, None), seq, "missing");
    assert!(text(&python(&[s(&file)])).contains(&format!("FAILED at seq {seq}")));
}

#[test]
fn two_swapped_records_are_found_at_the_first_of_them() {
    let data = build();
    let seq = 9;
    let file = export(&data);
    {
        let db = open(data.path());
        let journal = db.open_tree("journal").unwrap();
        let (a, b) = (stored(&journal, seq), stored(&journal, seq + 1));
        store(&journal, seq, b);
        store(&journal, seq + 1, a);
        db.flush().unwrap();
    }
    assert_fails_at(&verify_dir(data.path()), seq, "swapped");
    let mut records = lines(&file);
    records.swap(seq as usize - 1, seq as usize);
    write_lines(&file, &records);
    assert_fails_at(&verify_file(&file, None), seq, "out of order");
    assert!(text(&python(&[s(&file)])).contains(&format!("FAILED at seq {seq}")));
}

#[test]
fn a_cut_tail_is_found_by_the_stored_head_and_by_an_expected_head() {
    let data = build();
    let head = data.head();
    let file = export(&data);
    {
        // Remove the last two records but leave `h`, as a careless or hostile cut would.
        let db = open(data.path());
        let journal = db.open_tree("journal").unwrap();
        remove(&journal, head.seq);
        remove(&journal, head.seq - 1);
        db.flush().unwrap();
    }
    assert_fails_at(&verify_dir(data.path()), head.seq - 1, "cut from the tail");

    let mut records = lines(&file);
    records.truncate(records.len() - 2);
    write_lines(&file, &records);
    // A file alone cannot know where it should end: that is what a held checkpoint is for.
    assert_eq!(verify_file(&file, None).failure, None);
    assert_fails_at(&verify_file(&file, Some(head.clone())), head.seq - 1, "truncated");
    let head_arg = format!("{}:{}", head.seq, head.hash);
    let out = cli(&["audit", "verify", "--file", s(&file), "--head", &head_arg]);
    assert!(!out.status.success() && text(&out).contains(&format!("FAILED at seq {}", head.seq - 1)), "{}", text(&out));
    assert!(text(&python(&[s(&file), "--head", &head_arg])).contains(&format!("FAILED at seq {}", head.seq - 1)));
}

#[test]
fn a_chain_rewritten_consistently_is_caught_by_its_checkpoints() {
    let data = build();
    let seq = first_payout(&data);
    let checkpoint = audit::checkpoints_since(&open(data.path()), seq - 1).unwrap()[0].clone();
    {
        // Change an amount and re-seal every record from there on, head included: the chain
        // is consistent again, only what was recorded outside the journal can tell.
        let db = open(data.path());
        let journal = db.open_tree("journal").unwrap();
        let mut prev = parse_record(seq - 1, &stored(&journal, seq - 1)).unwrap().hash;
        for s in seq..=data.head().seq {
            let mut record = String::from_utf8(stored(&journal, s)).unwrap();
            if s == seq {
                record = change_amount(&record);
            }
            let (bytes, hash) = seal(s, &prev, &parse_record(s, record.as_bytes()).unwrap().event);
            store(&journal, s, bytes);
            prev = hash;
        }
        journal.insert(b"h", serde_json::to_vec(&Head { seq: data.head().seq, hash: prev }).unwrap()).unwrap();
        db.flush().unwrap();
    }
    assert_fails_at(&verify_dir(data.path()), checkpoint.seq, "checkpoint");
    let file = export(&data);
    let held = Head { seq: checkpoint.seq, hash: checkpoint.hash };
    assert_fails_at(&verify_file(&file, Some(held)), checkpoint.seq, "expected head");
}

#[test]
fn a_changed_live_view_is_found() {
    let data = build();
    {
        let db = open(data.path());
        let views = db.open_tree("views").unwrap();
        let key = format!("cit/{}", AN.id);
        let doc = String::from_utf8(views.get(&key).unwrap().unwrap().to_vec()).unwrap();
        let changed = doc.replacen("active", "xctive", 1);
        assert_ne!(changed, doc, "the citizen view has an enrollment status to change");
        views.insert(&key, changed.as_bytes()).unwrap();
        db.flush().unwrap();
    }
    let report = verify_dir(data.path());
    let failure = report.failure.expect("the changed view is found");
    assert!(failure.what.contains(&format!("cit/{}", AN.id)) && failure.what.contains("ansinh rebuild"), "{failure}");
}

#[test]
fn replay_as_of_seq_n_equals_the_live_views_when_the_head_was_n() {
    let data = build();
    let db = open(data.path());
    let source = Source::data_dir(&db).unwrap();
    for (head, live) in &data.snapshots {
        let replayed = replay(&source, &AsOf::Seq(head.seq), CACHE, &mut |_| {}).expect("replay");
        assert_eq!((replayed.seq, &replayed.hash), (head.seq, &head.hash));
        assert!(replayed.views.dump().unwrap() == *live, "views as of seq {} differ from the live views then", head.seq);
    }
    let past = replay(&source, &AsOf::Seq(data.head().seq + 1), CACHE, &mut |_| {}).err().expect("a seq past the head is refused");
    assert!(past.to_string().contains("past the end"), "{past}");
}

#[test]
fn replay_as_of_a_time_takes_the_longest_prefix_at_or_before_it_as_instants() {
    let data = build();
    let db = open(data.path());
    let source = Source::data_dir(&db).unwrap();
    let seq_at = |raw: &str| {
        let r = replay(&source, &AsOf::parse(raw).unwrap(), CACHE, &mut |_| {}).expect("replay");
        (r.seq, r.next.map(|(s, _)| s))
    };
    let after = |group: usize| data.snapshots[group].0.seq;
    // Group 4 is at 2025-01-06T06:00:00+07:00 = 2025-01-05T23:00:00Z: a string comparison
    // would put it after 23:30Z, the instant is before.
    assert_eq!(seq_at("2025-01-05T23:30:00Z"), (after(3), Some(after(3) + 1)));
    assert_eq!(seq_at("2025-01-05T22:59:59Z"), (after(2), Some(after(2) + 1)));
    assert_eq!(seq_at("2025-01-06T06:00:00+07:00"), (after(3), Some(after(3) + 1)));
    assert_eq!(seq_at("2020-01-01T00:00:00Z"), (0, Some(1)));
    assert_eq!(seq_at("2030-01-01T00:00:00Z"), (data.head().seq, None));

    drop((source, db));
    let out = cli(&["audit", "replay", "--data-dir", s(data.path()), "--as-of", "2025-01-05T23:30:00Z", "citizen", AN.id]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains(&format!("events 1..{}", after(3))) && shown.contains("settled"), "{shown}");
}

#[test]
fn rebuild_gives_byte_identical_views() {
    let data = build();
    let live = data.snapshots.last().unwrap().1.clone();
    let db = open(data.path());
    let summary = audit::rebuild(&db, &mut |_| {}).expect("rebuild");
    assert_eq!(summary.events, data.head().seq);
    let rebuilt: KeyValues = db.open_tree("views").unwrap().iter().map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
    assert!(rebuilt == live, "a rebuild is byte-identical");
    drop(db);
    let out = cli(&["rebuild", "--data-dir", s(data.path())]);
    assert!(out.status.success() && text(&out).contains("events/s"), "{}", text(&out));
    assert_eq!(verify_dir(data.path()).failure, None);
}

#[test]
fn a_partial_export_verifies_from_its_first_seq_only_when_told() {
    let data = build();
    let file = data.file("part.jsonl");
    let out = cli(&["audit", "export", "--data-dir", s(data.path()), "--from", "5", "--to", "12", "--out", s(&file)]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines(&file).len(), 8);
    assert_fails_at(&verify_file(&file, None), 1, "where seq 1 was expected");
    let out = cli(&["audit", "verify", "--file", s(&file), "--from", "5"]);
    assert!(out.status.success() && text(&out).contains("taken on trust"), "{}", text(&out));
    assert!(python(&[s(&file), "--from", "5"]).status.success());
    assert!(!python(&[s(&file)]).status.success());
}

#[test]
fn checkpoints_on_demand_are_listed_and_published_from_a_seq() {
    let data = build();
    let before = audit::checkpoints_since(&open(data.path()), 0).unwrap();
    let out = cli(&["audit", "checkpoint", "--data-dir", s(data.path())]);
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&["audit", "checkpoints", "--data-dir", s(data.path()), "--json"]);
    let listed: Vec<audit::Checkpoint> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = listed.last().expect("checkpoints listed");
    assert_eq!((last.seq, &last.hash), (data.head().seq, &data.head().hash));
    assert!(listed.len() >= before.len());
    let db = open(data.path());
    let since = audit::checkpoints_since(&db, listed[0].seq).unwrap();
    assert_eq!(since, listed[1..].to_vec(), "what a publisher has not sent yet");
}

/// The live views are compared with a replay of the log, key by key: a changed value, a key
/// removed and a key added are each reported by name, and the log itself still verifies.
#[test]
fn changed_removed_or_added_live_views_are_each_found_by_name() {
    let data = build();
    let views_of = |db: &sled::Db| db.open_tree("views").unwrap();
    let a_budget = {
        let db = open(data.path());
        let key = views_of(&db).scan_prefix(b"bud/").next().expect("a budget view").unwrap().0;
        String::from_utf8(key.to_vec()).unwrap()
    };
    type Tamper<'t> = &'t dyn Fn(&sled::Tree);
    let cases: [(&str, Tamper<'_>); 3] = [
        ("differs from its replay", &|t| {
            let mut v = t.get(&a_budget).unwrap().unwrap().to_vec();
            *v.last_mut().unwrap() ^= 1;
            t.insert(a_budget.as_bytes(), v).unwrap();
        }),
        ("only in the replay", &|t| {
            t.remove(a_budget.as_bytes()).unwrap();
        }),
        ("only in the live views", &|t| {
            t.insert(b"bud/99/none/2025-01", b"x".to_vec()).unwrap();
        }),
    ];
    for (words, tamper) in cases {
        let copy = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(data.path()).unwrap() {
            let entry = entry.unwrap();
            copy_all(&entry.path(), &copy.path().join(entry.file_name()));
        }
        {
            let db = open(copy.path());
            tamper(&views_of(&db));
            db.flush().unwrap();
        }
        let report = verify_dir(copy.path());
        let failure = report.failure.as_ref().unwrap_or_else(|| panic!("{words}: expected a failure, got OK: {:#?}", report.checks));
        assert_eq!(failure.seq, None, "a view fault names no seq: {failure}");
        assert!(failure.what.contains(words) && failure.what.contains("bud/"), "expected {words:?} and the key in: {failure}");
        assert!(failure.what.contains("ansinh rebuild"), "{failure}");
        assert!(failure.what.contains(&format!("as of seq {}", data.head().seq)), "compared as of the seq the views were applied to: {failure}");
    }
}

fn copy_all(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_all(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// The one-off program's views come out of the same fold: this shard's budget (`national`),
/// the commune's cash list with its lines read from the log, the failed payout's money back
/// in the budget, and the ledger's accounts naming the program.
#[test]
fn one_off_views_fold_budget_cash_list_and_ledger() {
    let data = build();
    let engine = Engine::open(&EngineOptions::new(data.path()), &mut |_, _| {}).expect("the engine reopens");
    let views = engine.views().reader();
    let budget = views.budget("national", "ho-tro-100k", "2025-09").unwrap().expect("the one-off budget view");
    assert_eq!(
        (budget.funded.to_string(), budget.instructed.to_string(), budget.failed.to_string(), budget.available.to_string()),
        ("1000000".into(), "200000".into(), "100000".into(), "900000".into())
    );
    let cash = views.cash("ho-tro-100k", "22333").unwrap().expect("the commune's cash view");
    assert_eq!((cash.lines, cash.amount.to_string(), cash.seqs.len()), (1, "100000".to_string(), 1));
    let lines = views.cash_lines("ho-tro-100k", "22333", 0, 10).unwrap();
    assert_eq!((lines.len(), lines[0].line_no, lines[0].batch_id.as_str()), (1, 2, "OO-1"));
    assert_ne!(lines[0].citizen_id, AN.id);
    assert_eq!(views.cash_communes("ho-tro-100k").unwrap().len(), 1);
    let batch_lines = views.batch_lines("OO-1", 0, 10).unwrap();
    assert_eq!(
        batch_lines.iter().map(|l| (l.payout_id.is_some(), l.cash_commune.is_some(), l.code.clone())).collect::<Vec<_>>(),
        [(true, false, None), (false, true, None), (false, false, Some("duplicate_line".to_string()))]
    );
    assert_eq!(views.payout("OO-1-000001").unwrap().expect("the one-off payout").status, "failed");
    assert_eq!(views.balance("cash:ho-tro-100k:22333").unwrap().to_string(), "100000");
    assert_eq!(views.balance("budget:national:ho-tro-100k:2025-09").unwrap().to_string(), "900000");
    assert_eq!(engine.views().ledger_total().unwrap(), rust_decimal::Decimal::ZERO);
    // Replayed from the log at open, the decision state knows who has a line.
    let (h, o) = engine.state().one_off("ho-tro-100k").expect("the one-off program");
    assert_eq!((o.taken_count(), o.available().to_string()), (2, "900000".to_string()));
    assert!(engine.state().one_off_taken(h, AN.id.parse().unwrap()));
}
