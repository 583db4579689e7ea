//! The engine shell on real sled data directories: reopening, a crash between append and
//! apply, the hash chain, redeliveries inside a group, reused command ids and invalid envelopes.

use ansinh::command::{
    Command, CommandEnvelope, DefineProgram, EnrollBeneficiary, FundBudget, PayoutLine, RecordSettlements, SetStandardLevel, SettlementItem, SettlementStatus,
    SubmitPayoutBatch,
};
use ansinh::domain::account::AccountInput;
use ansinh::domain::program::DECREE_20_CATEGORIES;
use ansinh::domain::{Attestation, Sex};
use ansinh::event::{Event, EventData};
use ansinh::log::chain::{recompute_hash, GENESIS_HASH};
use ansinh::outcome::{Outcome, OutcomeStatus};
use ansinh::{Engine, EngineOptions};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;

const PROGRAM: &str = "tro-cap-xa-hoi";
const PROVINCE: &str = "056";
const VCB: &str = "970436";

struct Person {
    id: &'static str,
    name: &'static str,
    holder: &'static str,
    dob: &'static str,
    sex: Sex,
}

/// Female, born 1985, birth registered in Khánh Hòa.
const AN: Person = Person { id: "056185000123", name: "Nguyễn Thị An", holder: "NGUYEN THI AN", dob: "1985-04-12", sex: Sex::Female };
/// Male, born 1950, Ninh Thuận.
const BINH: Person = Person { id: "058050000777", name: "Trần Văn Bình", holder: "TRAN VAN BINH", dob: "1950-09-02", sex: Sex::Male };
/// Male, born 1940, Hà Nội.
const CUONG: Person = Person { id: "001040000001", name: "Lê Văn Cường", holder: "LE VAN CUONG", dob: "1940-01-15", sex: Sex::Male };

fn envelope(command_id: &str, command: Command) -> CommandEnvelope {
    CommandEnvelope { command_id: command_id.into(), v: 1, issued_at: "2025-01-20T08:00:00Z".into(), sender: None, command }
}

fn define_program() -> Command {
    Command::DefineProgram(DefineProgram {
        program_id: PROGRAM.into(),
        name: "Trợ cấp xã hội hằng tháng".into(),
        categories: DECREE_20_CATEGORIES.iter().map(|(code, coef, _)| (code.to_string(), coef.to_string())).collect(),
        legal_basis: "Nghị định 20/2021/NĐ-CP".into(),
    })
}

fn level(from: &str, amount: &str) -> Command {
    Command::SetStandardLevel(SetStandardLevel {
        program_id: PROGRAM.into(),
        province: None,
        effective_from: from.into(),
        amount: amount.into(),
        legal_basis: String::new(),
    })
}

fn fund(period: &str, amount: &str) -> Command {
    Command::FundBudget(FundBudget {
        province: PROVINCE.into(),
        program_id: PROGRAM.into(),
        period: period.into(),
        amount: amount.into(),
        reference: format!("KBNN-{period}"),
    })
}

/// Enrolled in Khánh Hòa from 2024-01, category 6c (coefficient 1.5: 750,000 a month from 2024-07).
fn enroll(p: &Person) -> Command {
    Command::EnrollBeneficiary(EnrollBeneficiary {
        citizen_id: p.id.into(),
        program_id: PROGRAM.into(),
        province: PROVINCE.into(),
        full_name: p.name.into(),
        date_of_birth: p.dob.into(),
        sex: p.sex,
        category: "6c".into(),
        effective_from: "2024-01".into(),
        account: AccountInput { bin: VCB.into(), account_no: format!("1{}", &p.id[3..]), holder_name: p.holder.into() },
        attestation: Some(Attestation {
            provider: "VNeID".into(),
            level: 2,
            reference: "VNEID-L2-20250110-0001".into(),
            verified_at: "2025-01-10T09:30:00+07:00".into(),
        }),
    })
}

fn batch(batch_id: &str, period: &str, lines: &[(&str, &str)]) -> Command {
    Command::SubmitPayoutBatch(SubmitPayoutBatch {
        batch_id: batch_id.into(),
        program_id: PROGRAM.into(),
        province: PROVINCE.into(),
        period: period.into(),
        lines: lines.iter().map(|(c, a)| PayoutLine { citizen_id: c.to_string(), amount: a.to_string() }).collect(),
    })
}

fn settle(items: &[(&str, SettlementStatus)]) -> Command {
    Command::RecordSettlements(RecordSettlements {
        bin: VCB.into(),
        items: items
            .iter()
            .map(|(id, status)| SettlementItem {
                payout_id: id.to_string(),
                status: *status,
                reason: (*status != SettlementStatus::Settled).then_some(ansinh::domain::FailureReason::AccountClosed),
                bank_reference: format!("FT-{id}"),
            })
            .collect(),
    })
}

/// The program, its levels, a budget for 2025-01 and two beneficiaries.
fn setup() -> Vec<CommandEnvelope> {
    vec![
        envelope("setup-program", define_program()),
        envelope("setup-level-2021", level("2021-07", "360000")),
        envelope("setup-level-2024", level("2024-07", "500000")),
        envelope("setup-fund-2025-01", fund("2025-01", "100000000")),
        envelope("enroll-an", enroll(&AN)),
        envelope("enroll-binh", enroll(&BINH)),
    ]
}

fn open(dir: &Path) -> Engine {
    retrying(|| Engine::open(&EngineOptions::new(dir), &mut |_, _| {}))
}

/// sled releases its file lock from a background thread a moment after the last handle is
/// dropped, so reopening a directory in the same process retries while the lock is held.
fn retrying<T, E: std::fmt::Display>(mut attempt: impl FnMut() -> Result<T, E>) -> T {
    let mut tries = 0;
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(e) if tries < 500 && e.to_string().contains("acquire lock") => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("cannot open the data directory: {e}"),
        }
    }
}

fn execute(engine: &mut Engine, group: &[CommandEnvelope]) -> Vec<Outcome> {
    let outcomes = engine.execute(group).expect("the engine stores the group");
    assert_eq!(outcomes.len(), group.len(), "one outcome per command");
    outcomes
}

fn one(engine: &mut Engine, e: &CommandEnvelope) -> Outcome {
    execute(engine, std::slice::from_ref(e)).remove(0)
}

fn records(engine: &Engine) -> Vec<(u64, Vec<u8>)> {
    let head = engine.head().seq;
    if head == 0 {
        return Vec::new();
    }
    engine.log().range(1, head).map(|r| r.map(|(s, b)| (s, b.to_vec())).expect("records read back")).collect()
}

fn events(engine: &Engine) -> Vec<Event> {
    records(engine).iter().map(|(s, b)| ansinh::log::parse_event(*s, b).expect("records parse")).collect()
}

fn dump(engine: &Engine) -> Vec<(Vec<u8>, Vec<u8>)> {
    engine.views().dump().expect("views dump")
}

fn duplicate_of(o: &Outcome) -> Outcome {
    Outcome { duplicate: true, ..o.clone() }
}

fn assert_accepted(o: &Outcome) {
    assert_eq!(o.status, OutcomeStatus::Accepted, "{o:#?}");
    assert!(!o.duplicate, "{o:#?}");
}

fn assert_rejected(o: &Outcome, code: &str) {
    assert_eq!(o.status, OutcomeStatus::Rejected, "{o:#?}");
    assert_eq!(o.code.as_deref(), Some(code), "{o:#?}");
}

// ---- reopening ---------------------------------------------------------------------------------

#[test]
fn reopening_restores_the_head_the_state_and_the_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let first_batch = envelope("batch-b1", batch("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "750000")]));
    let (head, state, views, records_before, batch_outcome, enroll_outcome) = {
        let mut engine = open(dir.path());
        let setup = setup();
        let outcomes = execute(&mut engine, &setup);
        outcomes.iter().for_each(assert_accepted);
        let batch_outcome = one(&mut engine, &first_batch);
        assert_eq!(batch_outcome.count_lines("instructed"), 2, "{batch_outcome:#?}");
        assert_accepted(&one(&mut engine, &envelope("settle-1", settle(&[("B1-000001", SettlementStatus::Settled)]))));
        (engine.head().clone(), engine.state().clone(), dump(&engine), records(&engine), batch_outcome, outcomes[4].clone())
    };

    let mut engine = open(dir.path());
    assert_eq!(engine.head(), &head, "the head survives a reopen");
    assert!(engine.state() == &state, "the decision state is rebuilt exactly from the log");
    assert!(dump(&engine) == views, "the views are unchanged by a reopen");
    assert_eq!(records(&engine), records_before);

    // Redeliveries after the reopen answer from the command index and write nothing.
    assert_eq!(one(&mut engine, &first_batch), duplicate_of(&batch_outcome));
    assert_eq!(one(&mut engine, &setup()[4]), duplicate_of(&enroll_outcome));
    assert_eq!(engine.head(), &head, "redeliveries write nothing");

    // The same id with another payload is its own, recorded rejection; once.
    let reused = envelope("batch-b1", batch("B1", "2025-01", &[(AN.id, "750000")]));
    let reuse_outcome = one(&mut engine, &reused);
    assert_rejected(&reuse_outcome, "command_id_reused");
    assert_eq!(engine.head().seq, head.seq + 1);
    let head = engine.head().clone();
    drop(engine);

    let mut engine = open(dir.path());
    assert_eq!(one(&mut engine, &reused), duplicate_of(&reuse_outcome), "the reuse rejection is indexed durably too");
    assert_eq!(one(&mut engine, &first_batch), duplicate_of(&batch_outcome));
    assert_eq!(engine.head(), &head);

    // New commands are decided against the restored state: the batch id and the regular
    // payouts of 2025-01 are taken.
    let again = one(&mut engine, &envelope("batch-b1-again", batch("B1", "2025-01", &[(AN.id, "750000")])));
    assert_rejected(&again, "batch_exists");
    let second = one(&mut engine, &envelope("batch-b2", batch("B2", "2025-01", &[(AN.id, "750000"), (BINH.id, "750000")])));
    assert_accepted(&second);
    assert_eq!(second.lines.iter().map(|l| l.code.as_deref()).collect::<Vec<_>>(), vec![Some("duplicate_payout"), Some("duplicate_payout")], "{second:#?}");
    // A settled payout cannot be settled twice, even across a reopen.
    let twice = one(&mut engine, &envelope("settle-1-again", settle(&[("B1-000001", SettlementStatus::Settled)])));
    assert_eq!(twice.lines[0].code.as_deref(), Some("payout_state"), "{twice:#?}");
}

// ---- a crash between append and apply --------------------------------------------------------

fn groups() -> Vec<Vec<CommandEnvelope>> {
    vec![
        setup(),
        vec![
            envelope("fund-2024-07", fund("2024-07", "1500000")),
            envelope("batch-b1", batch("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "750000")])),
            envelope("enroll-cuong", enroll(&CUONG)),
        ],
        vec![
            envelope("settle-1", settle(&[("B1-000001", SettlementStatus::Settled), ("B1-000002", SettlementStatus::Failed)])),
            envelope("batch-b2", batch("B2", "2024-07", &[(AN.id, "750000"), (BINH.id, "750000"), (CUONG.id, "750000")])),
            envelope("settle-2", settle(&[("B1-000001", SettlementStatus::Returned), ("B2-000001", SettlementStatus::Settled)])),
        ],
    ]
}

fn next_group() -> Vec<CommandEnvelope> {
    vec![
        envelope("write-off-1", Command::WriteOffPayout(ansinh::command::PayoutRef { payout_id: "B1-000002".into(), reason: "closed".into() })),
        envelope("batch-b3", batch("B3", "2025-01", &[(CUONG.id, "750000"), (AN.id, "750000")])),
    ]
}

/// How the views are damaged before reopening.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The views as they were before the last group was applied: what a crash after the log's
    /// flush and before the views' batch leaves.
    RolledBackOneGroup,
    /// Every view entry removed, `_applied` included.
    Cleared,
    /// The whole tree dropped.
    Dropped,
    /// A rebuild killed while writing its documents one by one: the `_folding` mark set, some
    /// documents rewritten wrongly or removed, `_applied` still saying the last seq.
    InterruptedFold,
}

fn crash_and_recover(damage: Damage) {
    let (dir, untouched_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut untouched = open(untouched_dir.path());
    let mut crashed = open(dir.path());
    let groups = groups();
    let mut before_last = Vec::new();
    for (n, group) in groups.iter().enumerate() {
        if n == groups.len() - 1 {
            before_last = dump(&crashed);
        }
        let a = execute(&mut untouched, group);
        let b = execute(&mut crashed, group);
        assert_eq!(a, b);
    }
    let applied_before_last = before_last.iter().find(|(k, _)| k == b"_applied").map(|(_, v)| u64::from_be_bytes(v.as_slice().try_into().unwrap())).unwrap();
    assert!(applied_before_last < crashed.head().seq, "the last group wrote events");
    crashed.flush().unwrap();
    drop(crashed);

    {
        let db = retrying(|| ansinh::engine::sled_config(dir.path(), 64 << 20).open());
        match damage {
            Damage::RolledBackOneGroup => {
                let views = db.open_tree("views").unwrap();
                views.clear().unwrap();
                for (k, v) in &before_last {
                    views.insert(k.as_slice(), v.as_slice()).unwrap();
                }
            }
            Damage::Cleared => db.open_tree("views").unwrap().clear().unwrap(),
            Damage::Dropped => assert!(db.drop_tree("views").unwrap(), "the views tree existed"),
            Damage::InterruptedFold => {
                let views = db.open_tree("views").unwrap();
                views.insert(b"_folding", &1u64.to_be_bytes()).unwrap();
                let keys: Vec<_> = views.iter().keys().map(|k| k.unwrap()).filter(|k| !k.starts_with(b"_")).collect();
                for (n, k) in keys.iter().enumerate() {
                    match n % 3 {
                        0 => drop(views.remove(k).unwrap()),
                        1 => drop(views.insert(k, b"half-written".to_vec()).unwrap()),
                        _ => {}
                    }
                }
            }
        }
        db.flush().unwrap();
    }

    let mut recovered = open(dir.path());
    assert_eq!(recovered.head(), untouched.head(), "{damage:?}: the log lost nothing");
    assert_eq!(recovered.views().applied(), recovered.head().seq, "{damage:?}: the views caught up");
    assert!(dump(&recovered) == dump(&untouched), "{damage:?}: the views equal those of an untouched run");
    assert!(recovered.state() == untouched.state(), "{damage:?}: the decision state equals that of an untouched run");
    assert_eq!(recovered.views().ledger_total().unwrap(), rust_decimal::Decimal::ZERO);

    // And both go on alike.
    let next = next_group();
    assert_eq!(execute(&mut recovered, &next), execute(&mut untouched, &next), "{damage:?}");
    assert_eq!(records(&recovered), records(&untouched), "{damage:?}");
    assert!(dump(&recovered) == dump(&untouched), "{damage:?}: the views still agree after another group");
}

#[test]
fn a_crash_between_append_and_apply_loses_nothing() {
    crash_and_recover(Damage::RolledBackOneGroup);
}

#[test]
fn views_cleared_are_rebuilt_from_the_log() {
    crash_and_recover(Damage::Cleared);
}

#[test]
fn views_dropped_are_rebuilt_from_the_log() {
    crash_and_recover(Damage::Dropped);
}

#[test]
fn views_a_rebuild_left_half_written_are_rebuilt_from_the_log() {
    crash_and_recover(Damage::InterruptedFold);
}

// ---- the hash chain ----------------------------------------------------------------------------

/// The canonical form an auditor computes without our code: keys sorted, no whitespace, strings
/// escaped as JSON does (Python's `json.dumps(sort_keys=True, separators=(",", ":"),
/// ensure_ascii=False)`). Written here independently of the crate's `canonical_bytes`.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (n, k) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, v) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        Value::Number(n) => {
            assert!(n.is_u64() || n.is_i64(), "no floats in an audit record: {n}");
            out.push_str(&n.to_string());
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

fn canonical_string(value: &Value) -> String {
    let mut out = String::new();
    canonical(value, &mut out);
    out
}

#[test]
fn the_hash_chain_links_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    for group in groups() {
        execute(&mut engine, &group);
    }
    execute(&mut engine, &next_group());
    let records = records(&engine);
    assert!(records.len() > 20, "enough records to make a chain");
    let mut prev = GENESIS_HASH.to_string();
    assert_eq!(prev, "0".repeat(64));
    for (seq, bytes) in &records {
        let value: Value = serde_json::from_slice(bytes).expect("records are JSON");
        let object = value.as_object().expect("a record is an object");
        let keys: Vec<&str> = object.keys().map(String::as_str).collect();
        assert_eq!(keys, ["event", "hash", "prev_hash", "seq"], "seq {seq}: a record has exactly these members");
        assert_eq!(value["seq"].as_u64(), Some(*seq), "seq {seq}: the record's seq is its key");
        assert_eq!(value["prev_hash"].as_str(), Some(prev.as_str()), "seq {seq}: prev_hash is the previous record's hash");
        let hash = value["hash"].as_str().expect("hash is a string").to_string();
        assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "seq {seq}: lowercase hex SHA-256");
        assert_eq!(recompute_hash(&value).as_deref(), Some(hash.as_str()), "seq {seq}: recompute_hash matches the stored hash");

        // Independently: SHA-256 of the canonical form without `hash`.
        let mut without = object.clone();
        without.remove("hash");
        let independent = hex::encode(Sha256::digest(canonical_string(&Value::Object(without)).as_bytes()));
        assert_eq!(independent, hash, "seq {seq}: an auditor's own canonical form gives the stored hash");
        // The stored bytes are themselves canonical.
        assert_eq!(canonical_string(&value).as_bytes(), bytes.as_slice(), "seq {seq}: stored bytes are the canonical form");
        prev = hash;
    }
    assert_eq!(engine.head().hash, prev, "the head holds the last record's hash");

    // The check can fail: altering one amount breaks the record's hash.
    let (seq, bytes) = records.iter().find(|(_, b)| String::from_utf8_lossy(b).contains("\"750000\"")).expect("a record with an amount");
    let tampered: Value = serde_json::from_str(&String::from_utf8_lossy(bytes).replacen("\"750000\"", "\"760000\"", 1)).unwrap();
    assert_ne!(recompute_hash(&tampered).as_deref(), tampered["hash"].as_str(), "seq {seq}: a changed amount changes the hash");
}

// ---- redeliveries and reused ids ------------------------------------------------------------

#[test]
fn a_redelivery_inside_the_same_group_answers_from_the_group() {
    let (dir, reference_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut engine = open(dir.path());
    let mut reference = open(reference_dir.path());
    let setup = setup();
    let b1 = envelope("batch-b1", batch("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "750000"), ("05618500012", "750000")]));
    let mut group = setup.clone();
    group.push(setup[4].clone()); // enroll-an again
    group.push(b1.clone());
    group.push(b1.clone());
    group.push(setup[0].clone()); // the program again

    let outcomes = execute(&mut engine, &group);
    let n = setup.len();
    outcomes[..n].iter().for_each(assert_accepted);
    assert_eq!(outcomes[n], duplicate_of(&outcomes[4]));
    assert_accepted(&outcomes[n + 1]);
    assert_eq!(outcomes[n + 1].count_lines("instructed"), 2);
    assert_eq!(outcomes[n + 1].count_lines("rejected"), 1);
    assert_eq!(outcomes[n + 2], duplicate_of(&outcomes[n + 1]), "the batch's lines are answered again, from the group");
    assert_eq!(outcomes[n + 3], duplicate_of(&outcomes[0]));

    // Exactly what the distinct commands wrote, one by one.
    let mut expected = Vec::new();
    for e in setup.iter().chain([&b1]) {
        expected.push(one(&mut reference, e));
    }
    assert_eq!(engine.head(), reference.head(), "the redeliveries wrote nothing");
    assert_eq!(records(&engine), records(&reference));
    assert_eq!(outcomes[n + 1], expected[n]);

    // And a later group answers them from the index the same way.
    let head = engine.head().clone();
    let later = execute(&mut engine, &[b1.clone(), setup[4].clone()]);
    assert_eq!(later, vec![duplicate_of(&outcomes[n + 1]), duplicate_of(&outcomes[4])]);
    assert_eq!(engine.head(), &head);
}

#[test]
/// A retry may restamp `issued_at`: it is not part of what "the same command" means.
fn a_redelivery_with_another_issued_at_is_still_a_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let outcomes = execute(&mut engine, &setup());
    let head = engine.head().clone();
    let mut again = setup()[4].clone();
    again.issued_at = "2025-02-01T00:00:00+07:00".into();
    assert_eq!(one(&mut engine, &again), duplicate_of(&outcomes[4]));
    assert_eq!(engine.head(), &head);
}

#[test]
fn a_reused_command_id_is_recorded_once_and_its_redelivery_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    let setup = setup();
    execute(&mut engine, &setup[..4]);
    let original = envelope("c1", enroll(&AN));
    let reuse = envelope("c1", enroll(&BINH));
    let other_reuse = envelope("c1", enroll(&CUONG));

    let first = one(&mut engine, &original);
    assert_accepted(&first);
    let head = engine.head().seq;
    let rejected = one(&mut engine, &reuse);
    assert_rejected(&rejected, "command_id_reused");
    assert!(!rejected.duplicate);
    assert_eq!(rejected.seqs, Some([head + 1, head + 1]), "one event records the reuse");
    assert_eq!(rejected.command_type, "enroll_beneficiary");
    let head = engine.head().clone();

    // Redelivered alone, and twice within one group with the original: nothing is written.
    assert_eq!(one(&mut engine, &reuse), duplicate_of(&rejected));
    assert_eq!(
        execute(&mut engine, &[reuse.clone(), original.clone(), reuse.clone()]),
        vec![duplicate_of(&rejected), duplicate_of(&first), duplicate_of(&rejected)]
    );
    assert_eq!(engine.head(), &head);

    // A second, different reuse in a group, redelivered within it: recorded once.
    let group = execute(&mut engine, &[other_reuse.clone(), other_reuse.clone()]);
    assert_rejected(&group[0], "command_id_reused");
    assert!(!group[0].duplicate);
    assert_eq!(group[1], duplicate_of(&group[0]));
    assert_eq!(engine.head().seq, head.seq + 1);

    // The log holds each reuse once, as a command.rejected of the reused id; the reused payloads
    // were never decided.
    let reuses: Vec<Event> =
        events(&engine).into_iter().filter(|e| matches!(&e.data, EventData::CommandRejected(r) if r.code == "command_id_reused")).collect();
    assert_eq!(reuses.len(), 2, "{reuses:#?}");
    assert!(reuses.iter().all(|e| e.command_id == "c1"));
    let enrolled: Vec<String> = events(&engine)
        .iter()
        .filter_map(|e| match &e.data {
            EventData::BeneficiaryEnrolled(b) => Some(b.citizen_id.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(enrolled, vec![AN.id.to_string()]);

    // After a reopen every answer still comes from the index.
    let head = engine.head().clone();
    drop(engine);
    let mut engine = open(dir.path());
    assert_eq!(execute(&mut engine, &[original, reuse, other_reuse]), vec![duplicate_of(&first), duplicate_of(&rejected), duplicate_of(&group[0])]);
    assert_eq!(engine.head(), &head);
}

// ---- invalid envelopes -------------------------------------------------------------------------

#[test]
fn an_invalid_envelope_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    execute(&mut engine, &setup());
    let head = engine.head().clone();
    let views = dump(&engine);

    let with_time = |id: &str, at: &str| CommandEnvelope { issued_at: at.into(), ..envelope(id, fund("2025-01", "1000000")) };
    let invalid = vec![
        envelope("bad id", fund("2025-01", "1000000")),
        envelope("", fund("2025-01", "1000000")),
        envelope(&"x".repeat(129), fund("2025-01", "1000000")),
        envelope("fund/1", fund("2025-01", "1000000")),
        with_time("late-fund", "yesterday"),
        with_time("late-fund", "2025-01-20T08:00:00"),
        with_time("late-fund", "2025-13-01T08:00:00Z"),
        // An id already used, with a bad time: still invalid, not a redelivery.
        with_time("enroll-an", "2025-01-20 08:00:00Z"),
    ];
    for e in &invalid {
        let o = one(&mut engine, e);
        assert_eq!(o.status, OutcomeStatus::Invalid, "{e:?}: {o:#?}");
        assert_eq!(o.code.as_deref(), Some("envelope_invalid"));
        assert!(o.message.as_deref().is_some_and(|m| !m.is_empty()));
        assert!(!o.duplicate);
        assert_eq!(o.seqs, None);
        assert_eq!(engine.head(), &head, "{e:?}: nothing recorded");
    }
    // All of them in one group: nothing either.
    assert!(execute(&mut engine, &invalid).iter().all(|o| o.status == OutcomeStatus::Invalid));
    assert_eq!(engine.head(), &head);
    assert!(dump(&engine) == views, "the views are untouched");
    assert!(engine.log().command("late-fund", None).unwrap().is_none(), "no index entry for an invalid envelope");

    // Mixed with valid commands: those are decided as usual, with contiguous seqs.
    let mixed = vec![envelope("fund-a", fund("2025-01", "1000")), invalid[4].clone(), envelope("fund-b", fund("2025-01", "2000"))];
    let outcomes = execute(&mut engine, &mixed);
    assert_accepted(&outcomes[0]);
    assert_eq!(outcomes[1].status, OutcomeStatus::Invalid);
    assert_accepted(&outcomes[2]);
    assert_eq!(outcomes[0].seqs, Some([head.seq + 1, head.seq + 1]));
    assert_eq!(outcomes[2].seqs, Some([head.seq + 2, head.seq + 2]));

    // The id of an invalid envelope is free: sent properly, it is decided afresh.
    let proper = one(&mut engine, &with_time("late-fund", "2025-01-20T09:00:00+07:00"));
    assert_accepted(&proper);
    assert_eq!(engine.head().seq, head.seq + 3);
}

// ---- event ids -----------------------------------------------------------------------------------

/// `Event::id` is documented as unique (DESIGN.md: consumers dedupe by the event's `seq`/`id`).
/// A `command_id_reused` rejection is written under the reused command id, so its id must still
/// differ from the events the first use of that id wrote.
///
/// Known bug, reported: the engine names every event `<command_id>/<n>` with n from 1, so the
/// rejection of a reused id gets `<id>/1` again, and a consumer deduping by id drops it. The fix
/// needs a decision on the id format of such events (the documented contract is `<command_id>/<n>`).
#[test]
fn event_ids_are_unique_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = open(dir.path());
    execute(&mut engine, &setup());
    one(&mut engine, &envelope("enroll-an", enroll(&CUONG)));
    let mut seen = std::collections::HashMap::new();
    for (seq, e) in events(&engine).iter().enumerate() {
        if let Some(first) = seen.insert(e.id.clone(), seq + 1) {
            panic!("event id {:?} at seq {} repeats the one at seq {first}", e.id, seq + 1);
        }
    }
}
