//! Bad input (issue 7): a table-driven corpus of malformed and hostile commands. Each gets its
//! specific decode reason (nothing recorded, head unchanged) or reason code (only the recorded
//! rejection is written; the decision state and every money view are otherwise unchanged), and
//! the engine keeps taking work. Runs at the intake + Engine level (fast); a subset goes over
//! AMQP to check the dead-letter reason header. Plus bounded proptest fuzzing of decode + decide.

mod amqp_support;
mod common;

use ansinh::command::{Command, CommandEnvelope};
use ansinh::domain::program::DECREE_20_CATEGORIES;
use ansinh::domain::Sex;
use ansinh::event::EventData;
use ansinh::intake::{decode_command, COMMAND_BYTES_MAX};
use ansinh::outcome::{Outcome, OutcomeStatus};
use ansinh::Engine;
use common::*;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
enum Expect {
    /// `decode_command` fails with this reason (dead-letter header over AMQP).
    Decode(&'static str),
    /// Decodes, but the envelope is refused before deciding (`envelope_invalid`, nothing recorded).
    Invalid,
    /// Decided and rejected as a whole with this code.
    Rejected(&'static str),
    /// A batch whose line N is rejected with this code (no line instructed).
    Line(u32, &'static str),
    /// A settlement report whose item N is rejected with this code (no transition).
    Item(u32, &'static str),
}

struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: Expect,
}

const PAYOUT: &str = "B0-000001";

fn categories() -> Vec<(&'static str, &'static str)> {
    DECREE_20_CATEGORIES.iter().map(|(c, k, _)| (*c, *k)).collect()
}

/// Program, national levels, a funded month, AN and BINH enrolled in 6c, AN paid (B0-000001 at
/// Vietcombank), BINH not yet paid.
fn setup() -> Vec<CommandEnvelope> {
    vec![
        envelope("s-program", define_program_cmd(PROGRAM, PROGRAM_NAME, &categories())),
        envelope("s-level-1", set_level_cmd(None, "2021-07", "360000")),
        envelope("s-level-2", set_level_cmd(None, "2024-07", "500000")),
        envelope("s-fund", fund_cmd("2025-01", "100000000")),
        envelope("s-enroll-an", enroll_cmd(&AN, "6c", "2025-01")),
        envelope("s-enroll-binh", enroll_cmd(&BINH, "6c", "2025-01")),
        envelope("s-batch", batch_cmd("B0", "2025-01", &[(AN.id, "750000")])),
    ]
}

fn to_bytes(e: &CommandEnvelope) -> Vec<u8> {
    serde_json::to_vec(e).expect("commands serialize")
}

fn value(e: &CommandEnvelope) -> Value {
    serde_json::to_value(e).expect("commands serialize")
}

fn enroll_with(id: &str, f: impl FnOnce(&mut ansinh::command::EnrollBeneficiary)) -> CommandEnvelope {
    let mut p = enroll_payload(&DUNG, "6c", "2025-01");
    f(&mut p);
    envelope(id, Command::EnrollBeneficiary(p))
}

/// The corpus. Every case is named; names are unique.
fn corpus() -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, expect: Expect| cases.push(Case { name: name.to_string(), bytes, expect });
    let good_enroll = value(&enroll_with("c-good", |_| {}));
    let good_fund = value(&envelope("c-fund", fund_cmd("2025-02", "1000000")));

    // ---- bytes that are not a command --------------------------------------------------------
    for (i, raw) in
        ["", " ", "{", "}", "{\"command_id\":", "nul", "tru", "[1,2", "{'a':1}", "{\"a\":1,}", "{\"a\" 1}", "\u{feff}{}", "NaN", "0x10", "{\"a\":01}"]
            .iter()
            .enumerate()
    {
        add(&format!("broken json {i}"), raw.as_bytes().to_vec(), Expect::Decode("not_json"));
    }
    let good_text = serde_json::to_string(&good_enroll).expect("JSON");
    add("truncated command", good_text.as_bytes()[..good_text.len() / 2].to_vec(), Expect::Decode("not_json"));
    add("two commands on one message", format!("{good_text}{good_text}").into_bytes(), Expect::Decode("not_json"));
    for (i, raw) in ["[]", "[1]", "1", "\"a command\"", "null", "true", "-0.5e10"].iter().enumerate() {
        add(&format!("not an object {i}"), raw.as_bytes().to_vec(), Expect::Decode("not_object"));
    }
    add("invalid utf-8 ff fe", vec![0xff, 0xfe, b'{', b'}'], Expect::Decode("not_utf8"));
    add("invalid utf-8 lone continuation", b"{\"command_id\":\"\x80\"}".to_vec(), Expect::Decode("not_utf8"));
    add("invalid utf-8 overlong slash", b"{\"a\":\"\xc0\xaf\"}".to_vec(), Expect::Decode("not_utf8"));
    add("invalid utf-8 surrogate", b"{\"a\":\"\xed\xa0\x80\"}".to_vec(), Expect::Decode("not_utf8"));
    let mut latin1 = good_text.clone().into_bytes();
    latin1.extend_from_slice(b"\xe9");
    add("invalid utf-8 latin-1 tail", latin1, Expect::Decode("not_utf8"));
    add("deeply nested arrays", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes(), Expect::Decode("not_json"));
    add("deeply nested objects", format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes(), Expect::Decode("not_json"));
    // serde_json refuses to print past its recursion limit too: build the text by hand.
    let text = serde_json::to_string(&good_fund).expect("JSON").replacen("\"1000000\"", &format!("{}1{}", "[".repeat(500), "]".repeat(500)), 1);
    add("deeply nested payload", text.into_bytes(), Expect::Decode("not_json"));
    add("10 MB of garbage", vec![b'x'; 10 * 1024 * 1024], Expect::Decode("not_json"));
    add("10 MB of spaces", vec![b' '; 10 * 1024 * 1024], Expect::Decode("not_json"));
    add("over the message bound", vec![b' '; COMMAND_BYTES_MAX + 1], Expect::Decode("oversize"));
    let mut huge_json = b"{\"command_id\":\"x\",\"type\":\"fund_budget\",\"issued_at\":\"2025-01-20T08:00:00Z\",\"pad\":\"".to_vec();
    huge_json.extend(std::iter::repeat_n(b'a', COMMAND_BYTES_MAX));
    huge_json.extend_from_slice(b"\"}");
    add("valid JSON over the message bound", huge_json, Expect::Decode("oversize"));

    // ---- envelope fields ---------------------------------------------------------------------
    for field in ["command_id", "type", "issued_at"] {
        let mut v = good_enroll.clone();
        v.as_object_mut().expect("an object").remove(field);
        add(&format!("missing {field}"), serde_json::to_vec(&v).expect("JSON"), Expect::Decode("missing_field"));
        for (kind, wrong) in [("number", json!(12)), ("null", Value::Null), ("array", json!(["a"])), ("object", json!({"a": 1}))] {
            let mut v = good_enroll.clone();
            v[field] = wrong;
            add(&format!("{field} as {kind}"), serde_json::to_vec(&v).expect("JSON"), Expect::Decode("missing_field"));
        }
    }
    for t in ["pay_everyone", "", "ENROLL_BENEFICIARY", "enroll-beneficiary", "enroll_beneficiary ", "x".repeat(10_000).as_str()] {
        let mut v = good_enroll.clone();
        v["type"] = t.into();
        add(&format!("unknown type {:.20}", t), serde_json::to_vec(&v).expect("JSON"), Expect::Decode("unknown_type"));
    }
    for (id, why) in [("", "empty"), ("has space", "space"), ("a/b", "slash"), ("ç", "non-ascii"), ("a\n", "newline")] {
        let mut v = good_enroll.clone();
        v["command_id"] = id.into();
        add(&format!("command id {why}"), serde_json::to_vec(&v).expect("JSON"), Expect::Invalid);
    }
    let mut v = good_enroll.clone();
    v["command_id"] = "x".repeat(129).into();
    add("command id of 129 characters", serde_json::to_vec(&v).expect("JSON"), Expect::Invalid);
    for (t, why) in [("yesterday", "words"), ("2025-01-20", "date only"), ("2025-13-01T00:00:00Z", "month 13"), ("", "empty")] {
        let mut v = good_enroll.clone();
        v["issued_at"] = t.into();
        add(&format!("issued_at {why}"), serde_json::to_vec(&v).expect("JSON"), Expect::Invalid);
    }
    let mut v = good_enroll.clone();
    v["v"] = 2.into();
    add("version 2", serde_json::to_vec(&v).expect("JSON"), Expect::Rejected("version_unsupported"));
    for (kind, wrong) in [
        ("string", json!("1")),
        ("negative", json!(-1)),
        ("fraction", json!(1.5)),
        ("zero", json!(0)),
        ("zero as 0.0", json!(0.0)),
        ("2^32", json!(4_294_967_296u64)),
        ("null", Value::Null),
    ] {
        let mut v = good_enroll.clone();
        v["v"] = wrong;
        add(&format!("version as {kind}"), serde_json::to_vec(&v).expect("JSON"), Expect::Decode("schema_violation"));
    }

    // ---- schema violations in payloads ---------------------------------------------------------
    let schema = |path: &[&str], wrong: Value| {
        let mut v = good_enroll.clone();
        let mut at = &mut v["payload"];
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = wrong;
        serde_json::to_vec(&v).expect("JSON")
    };
    for (name, path, wrong) in [
        ("citizen id as number", vec!["citizen_id"], json!(56185000123u64)),
        ("citizen id as null", vec!["citizen_id"], Value::Null),
        ("sex unknown", vec!["sex"], json!("other")),
        ("sex as bool", vec!["sex"], json!(true)),
        ("account as string", vec!["account"], json!("970436:123")),
        ("bin as number", vec!["account", "bin"], json!(970436)),
        ("attestation level as string", vec!["attestation", "level"], json!("2")),
        ("attestation level 300", vec!["attestation", "level"], json!(300)),
        ("unknown payload field", vec!["bonus"], json!("1000000")),
        ("unknown account field", vec!["account", "iban"], json!("VN00")),
    ] {
        add(&format!("schema: {name}"), schema(&path, wrong), Expect::Decode("schema_violation"));
    }
    let mut v = good_enroll.clone();
    v["payload"] = json!([]);
    add("schema: payload array", serde_json::to_vec(&v).expect("JSON"), Expect::Decode("schema_violation"));
    let mut v = good_enroll.clone();
    v.as_object_mut().expect("an object").remove("payload");
    add("schema: payload missing", serde_json::to_vec(&v).expect("JSON"), Expect::Decode("schema_violation"));
    for (kind, wrong) in
        [("number", json!(750000)), ("float", json!(750000.0)), ("exponent number", json!(7.5e5)), ("negative number", json!(-1)), ("null", Value::Null)]
    {
        let mut v = good_fund.clone();
        v["payload"]["amount"] = wrong;
        add(&format!("schema: amount as {kind}"), serde_json::to_vec(&v).expect("JSON"), Expect::Decode("schema_violation"));
    }

    // ---- decided and refused: identity -------------------------------------------------------
    let enroll_cases: Vec<(&str, CommandEnvelope, &str)> = vec![
        ("11-digit id", enroll_with("e-11", |p| p.citizen_id = "07930300000".into()), "citizen_id_format"),
        ("13-digit id", enroll_with("e-13", |p| p.citizen_id = "0793030000011".into()), "citizen_id_format"),
        ("id with a letter", enroll_with("e-letter", |p| p.citizen_id = "07930300000A".into()), "citizen_id_format"),
        ("id with spaces", enroll_with("e-spaces", |p| p.citizen_id = "079 303 000 001".into()), "citizen_id_format"),
        ("id with full-width digits", enroll_with("e-fullwidth", |p| p.citizen_id = "０７９３０３０００００１".into()), "citizen_id_format"),
        ("empty id", enroll_with("e-empty", |p| p.citizen_id = String::new()), "citizen_id_format"),
        ("unknown province 003", enroll_with("e-prov-003", |p| p.citizen_id = "003303000001".into()), "citizen_id_unknown_province"),
        ("unknown province 999", enroll_with("e-prov-999", |p| p.citizen_id = "999303000001".into()), "citizen_id_unknown_province"),
        ("gap code 085", enroll_with("e-prov-085", |p| p.citizen_id = "085303000001".into()), "citizen_id_unknown_province"),
        ("century digit 19xx for a 2003 birth", enroll_with("e-century", |p| p.citizen_id = "079103000001".into()), "citizen_id_birth_year_mismatch"),
        ("birth year differs", enroll_with("e-year", |p| p.date_of_birth = "2004-11-30".into()), "citizen_id_birth_year_mismatch"),
        ("century digit 21xx", enroll_with("e-c21", |p| p.citizen_id = "079503000001".into()), "citizen_id_birth_year_mismatch"),
        ("sex digit disagrees", enroll_with("e-sex", |p| p.sex = Sex::Male), "citizen_id_sex_mismatch"),
        ("date of birth 30 February", enroll_with("e-dob-feb", |p| p.date_of_birth = "2003-02-30".into()), "date_of_birth_invalid"),
        ("date of birth garbage", enroll_with("e-dob-x", |p| p.date_of_birth = "30/11/2003".into()), "date_of_birth_invalid"),
        ("empty name", enroll_with("e-name-empty", |p| p.full_name = "   ".into()), "full_name_invalid"),
        ("name with control characters", enroll_with("e-name-ctl", |p| p.full_name = "Phạm\u{0}Thị".into()), "full_name_invalid"),
        ("10 MB name", enroll_with("e-name-10mb", |p| p.full_name = "A".repeat(10 * 1024 * 1024)), "full_name_invalid"),
        ("no attestation", enroll_with("e-att-none", |p| p.attestation = None), "attestation_missing"),
        ("attestation level 1", enroll_with("e-att-l1", |p| p.attestation.as_mut().expect("set").level = 1), "attestation_insufficient"),
        ("attestation reference empty", enroll_with("e-att-ref", |p| p.attestation.as_mut().expect("set").reference = String::new()), "attestation_invalid"),
        ("unknown BIN", enroll_with("e-bin", |p| p.account.bin = "999999".into()), "bank_unknown"),
        ("account number too short", enroll_with("e-acct-short", |p| p.account.account_no = "123".into()), "account_number_invalid"),
        ("account number lowercase", enroll_with("e-acct-lower", |p| p.account.account_no = "abc123456".into()), "account_number_invalid"),
        ("holder name empty", enroll_with("e-holder", |p| p.account.holder_name = String::new()), "holder_name_invalid"),
        ("unknown province code", enroll_with("e-province", |p| p.province = "100".into()), "province_unknown"),
        ("province code as name", enroll_with("e-province-name", |p| p.province = "Khánh Hòa".into()), "province_unknown"),
        ("effective month invalid", enroll_with("e-eff", |p| p.effective_from = "2025-13".into()), "period_invalid"),
        ("effective before birth", enroll_with("e-eff-birth", |p| p.effective_from = "2001-01".into()), "period_invalid"),
        ("unknown program", enroll_with("e-program", |p| p.program_id = "free-money".into()), "program_unknown"),
        ("unknown category", enroll_with("e-category", |p| p.category = "9z".into()), "category_unknown"),
        ("already enrolled", envelope("e-again", enroll_cmd(&AN, "6c", "2025-01")), "already_enrolled"),
    ];
    for (name, e, code) in enroll_cases {
        add(&format!("enroll: {name}"), to_bytes(&e), Expect::Rejected(code));
    }

    // ---- amounts: funding (whole command) and batch lines --------------------------------------
    let amounts: &[(&str, &str)] = &[
        ("-750000", "amount_not_positive"),
        ("0", "amount_not_positive"),
        ("000", "amount_not_positive"),
        ("-0", "amount_not_positive"),
        ("99999999999999999999", "amount_too_large"),
        ("1000000000000001", "amount_too_large"),
        ("7e5", "amount_invalid"),
        ("1E3", "amount_invalid"),
        ("", "amount_invalid"),
        ("+750000", "amount_invalid"),
        ("0x10", "amount_invalid"),
        ("NaN", "amount_invalid"),
        ("Infinity", "amount_invalid"),
        ("７５００００", "amount_invalid"),
        ("750000đ", "amount_invalid"),
        ("750000VND", "amount_invalid"),
        ("750\u{200b}000", "amount_invalid"),
        // Issue 16: any separator or space, whatever it would have meant. `750.000` is
        // 750,000 in Vietnam (and was instructed as 750); `750000.00` is ambiguous here too.
        ("750.000", "amount_separator"),
        ("7.500.000", "amount_separator"),
        ("750000.00", "amount_separator"),
        ("750000.5", "amount_separator"),
        ("0.5", "amount_separator"),
        ("750000.01", "amount_separator"),
        ("-1.5", "amount_separator"),
        ("7.5e5", "amount_separator"),
        (".750000", "amount_separator"),
        ("750000.", "amount_separator"),
        ("750,000", "amount_separator"),
        ("750000,00", "amount_separator"),
        ("1,000,000", "amount_separator"),
        ("750 000", "amount_separator"),
        (" 750000", "amount_separator"),
        ("750000 ", "amount_separator"),
        ("\t750000", "amount_separator"),
        ("750000\r\n", "amount_separator"),
        ("750\u{a0}000", "amount_separator"),
        ("750\u{2009}000", "amount_separator"),
        ("750\u{202f}000", "amount_separator"),
        ("750\u{2007}000", "amount_separator"),
        ("750\u{3000}000", "amount_separator"),
        ("750'000", "amount_separator"),
        ("750\u{2019}000", "amount_separator"),
        ("750_000", "amount_separator"),
        ("750\u{b7}000", "amount_separator"),
        ("750\u{66c}000", "amount_separator"),
        ("750\u{ff0c}000", "amount_separator"),
        ("750\u{ff0e}000", "amount_separator"),
        ("750001", "amount_mismatch"),
        ("360000", "amount_mismatch"),
    ];
    for (i, (raw, code)) in amounts.iter().enumerate() {
        add(
            &format!("batch line amount {raw:?}"),
            to_bytes(&envelope(&format!("a-line-{i}"), batch_cmd(&format!("BA{i}"), "2025-01", &[(BINH.id, raw)]))),
            Expect::Line(1, code),
        );
        if *code != "amount_mismatch" {
            add(&format!("fund amount {raw:?}"), to_bytes(&envelope(&format!("a-fund-{i}"), fund_cmd("2025-02", raw))), Expect::Rejected(code));
        }
    }

    // ---- batches ---------------------------------------------------------------------------------
    let batch = |id: &str, batch_id: &str, lines: &[(&str, &str)]| to_bytes(&envelope(id, batch_cmd(batch_id, "2025-01", lines)));
    add("batch: duplicate line", batch("b-dup", "BD1", &[(BINH.id, "1"), (BINH.id, "750000")]), Expect::Line(2, "duplicate_line"));
    add("batch: duplicate line after a good-looking one", batch("b-dup2", "BD2", &[(AN.id, "750000"), (AN.id, "750000")]), Expect::Line(2, "duplicate_line"));
    add("batch: second regular payout", batch("b-twice", "BD3", &[(AN.id, "750000")]), Expect::Line(1, "duplicate_payout"));
    add("batch: not enrolled", batch("b-notenrolled", "BD4", &[(CUONG.id, "750000")]), Expect::Line(1, "not_enrolled"));
    add("batch: 11-digit line", batch("b-11", "BD5", &[("05805000077", "750000")]), Expect::Line(1, "citizen_id_format"));
    add("batch: 13-digit line", batch("b-13", "BD6", &[("0580500007770", "750000")]), Expect::Line(1, "citizen_id_format"));
    add("batch: unknown province in id", batch("b-prov", "BD7", &[("003050000777", "750000")]), Expect::Line(1, "citizen_id_unknown_province"));
    add("batch: reused batch id", batch("b-reused-batch", "B0", &[(BINH.id, "750000")]), Expect::Rejected("batch_exists"));
    add("batch: empty", batch("b-empty", "BE", &[]), Expect::Rejected("batch_empty"));
    add("batch: invalid batch id", batch("b-badid", "B 0", &[(BINH.id, "750000")]), Expect::Rejected("batch_id_invalid"));
    add(
        "batch: unknown province",
        to_bytes(&envelope(
            "b-province",
            Command::SubmitPayoutBatch({
                let mut p = batch_payload("BP", "2025-01", &[(BINH.id, "750000")]);
                p.province = "999".into();
                p
            }),
        )),
        Expect::Rejected("province_unknown"),
    );
    add(
        "batch: unknown program",
        to_bytes(&envelope(
            "b-program",
            Command::SubmitPayoutBatch({
                let mut p = batch_payload("BQ", "2025-01", &[(BINH.id, "750000")]);
                p.program_id = "free-money".into();
                p
            }),
        )),
        Expect::Rejected("program_unknown"),
    );
    add("batch: period invalid", to_bytes(&envelope("b-period", batch_cmd("BR", "2025-1", &[(BINH.id, "750000")]))), Expect::Rejected("period_invalid"));
    add(
        "batch: no level in force",
        to_bytes(&envelope("b-level", batch_cmd("BS", "2020-01", &[(BINH.id, "750000")]))),
        Expect::Rejected("standard_level_missing"),
    );
    add(
        "batch: budget not funded",
        to_bytes(&envelope("b-budget", batch_cmd("BT", "2025-03", &[(BINH.id, "750000")]))),
        Expect::Line(1, "budget_insufficient"),
    );
    let over: Vec<(String, String)> = (0..50_001).map(|i| (format!("056185{i:06}"), "750000".to_string())).collect();
    let over: Vec<(&str, &str)> = over.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    add("batch: over the line bound", batch("b-over", "BO", &over), Expect::Rejected("batch_too_large"));

    // ---- settlements -------------------------------------------------------------------------------
    let report = |id: &str, bin: &str, items| to_bytes(&envelope(id, settlements_cmd(bin, items)));
    add("settle: another bank's payout", report("s-other-bank", BIDV, vec![settled_item(PAYOUT, "FT1")]), Expect::Item(1, "bank_mismatch"));
    add("settle: unknown payout", report("s-unknown", VCB, vec![settled_item("B0-999999", "FT1")]), Expect::Item(1, "payout_unknown"));
    add(
        "settle: failure without reason",
        report(
            "s-noreason",
            VCB,
            vec![{
                let mut i = failed_item(PAYOUT, ansinh::domain::FailureReason::AccountClosed, "FT1");
                i.reason = None;
                i
            }],
        ),
        Expect::Item(1, "reason_missing"),
    );
    add(
        "settle: return before settlement",
        report("s-return", VCB, vec![returned_item(PAYOUT, ansinh::domain::FailureReason::AccountClosed, "FT1")]),
        Expect::Item(1, "payout_state"),
    );
    add("settle: unknown BIN", report("s-bin", "000000", vec![settled_item(PAYOUT, "FT1")]), Expect::Rejected("bank_unknown"));
    add("settle: empty report", report("s-empty", VCB, vec![]), Expect::Rejected("settlement_empty"));
    add("settle: reference too long", report("s-ref", VCB, vec![settled_item(PAYOUT, &"F".repeat(300))]), Expect::Item(1, "reference_invalid"));
    add("reissue: instructed payout", to_bytes(&envelope("r-open", reissue_cmd(PAYOUT))), Expect::Rejected("payout_state"));
    add("reissue: unknown payout", to_bytes(&envelope("r-unknown", reissue_cmd("nope"))), Expect::Rejected("payout_unknown"));
    add("write off: instructed payout", to_bytes(&envelope("w-open", write_off_cmd(PAYOUT, "x"))), Expect::Rejected("payout_state"));

    // ---- lifecycle -----------------------------------------------------------------------------------
    add("resume: not suspended", to_bytes(&envelope("l-resume", resume_cmd(AN.id, "2025-02", "x"))), Expect::Rejected("not_suspended"));
    add("suspend: not enrolled", to_bytes(&envelope("l-suspend", suspend_cmd(CUONG.id, "2025-02", "x"))), Expect::Rejected("not_enrolled"));
    add("suspend: before the start", to_bytes(&envelope("l-early", suspend_cmd(AN.id, "2024-12", "x"))), Expect::Rejected("effective_out_of_order"));
    add("reassign: to itself", to_bytes(&envelope("l-self", reassign_cmd(AN.id, AN.id, "x"))), Expect::Rejected("citizen_id_in_use"));
    add("reassign: to an enrolled number", to_bytes(&envelope("l-taken", reassign_cmd(AN.id, BINH.id, "x"))), Expect::Rejected("citizen_id_in_use"));
    add("change account: same account", to_bytes(&envelope("l-same", change_account_cmd(AN.id, account_input(&AN)))), Expect::Rejected("account_unchanged"));
    add(
        "program: already defined",
        to_bytes(&envelope("p-again", define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")]))),
        Expect::Rejected("program_exists"),
    );
    add(
        "program: coefficient 11",
        to_bytes(&envelope("p-coef", define_program_cmd("p2", PROGRAM_NAME, &[("6c", "11")]))),
        Expect::Rejected("coefficient_invalid"),
    );
    add("level: exponent amount", to_bytes(&envelope("lv-exp", set_level_cmd(None, "2026-01", "5e5"))), Expect::Rejected("amount_invalid"));

    // ---- ids -------------------------------------------------------------------------------------------
    add("command id reused with another payload", to_bytes(&envelope("s-fund", fund_cmd("2025-01", "999"))), Expect::Rejected("command_id_reused"));
    add("command id reused by another type", to_bytes(&envelope("s-enroll-an", suspend_cmd(AN.id, "2025-02", "x"))), Expect::Rejected("command_id_reused"));
    issue16::cases(&mut add, &good_enroll, &good_fund);
    hostile::cases(&mut add, &good_fund);
    cases
}

/// The views that carry state (money, people, payouts): everything but the batch and rejection
/// bookkeeping a refused command is allowed to add.
fn money_views(engine: &Engine) -> Vec<(Vec<u8>, Vec<u8>)> {
    engine.views().dump().expect("views dump").into_iter().filter(|(k, _)| !allowed_to_change(k)).collect()
}

fn allowed_to_change(key: &[u8]) -> bool {
    let k = String::from_utf8_lossy(key);
    ALLOWED_PREFIXES.iter().any(|p| k.starts_with(p))
}

/// View keys a recorded rejection may touch: the applied seq, and the batch view and its entry
/// in its month (a batch whose lines are all refused is still a submitted batch).
const ALLOWED_PREFIXES: &[&str] = &["_applied", "bat/", "mon/"];

fn check_case(engine: &mut Engine, case: &Case) {
    let head = engine.head().clone();
    let decoded = decode_command(&case.bytes);
    if let Expect::Decode(reason) = case.expect {
        let err = decoded.expect_err(&format!("{}: decodes, but should fail with {reason}", case.name));
        assert_eq!(err.reason(), reason, "{}: decode reason ({err})", case.name);
        return;
    }
    let e = decoded.unwrap_or_else(|err| panic!("{}: does not decode ({err})", case.name));
    let state_before = engine.state().clone();
    let views_before = money_views(engine);
    let out: Outcome = engine.execute(std::slice::from_ref(&e)).unwrap_or_else(|err| panic!("{}: storage error {err}", case.name)).remove(0);
    let new_events: Vec<EventData> =
        (head.seq + 1..=engine.head().seq).map(|s| engine.log().read(s).expect("log read").expect("a record").event.data).collect();
    match &case.expect {
        Expect::Decode(_) => unreachable!("handled above"),
        Expect::Invalid => {
            assert_eq!((out.status, out.code.as_deref()), (OutcomeStatus::Invalid, Some("envelope_invalid")), "{}: {out:?}", case.name);
            assert_eq!(engine.head(), &head, "{}: nothing recorded", case.name);
        }
        Expect::Rejected(code) => {
            assert_eq!((out.status, out.code.as_deref()), (OutcomeStatus::Rejected, Some(*code)), "{}: {out:?}", case.name);
            assert_eq!(new_events.len(), 1, "{}: one recorded rejection", case.name);
            assert!(matches!(&new_events[0], EventData::CommandRejected(r) if r.code == *code), "{}: {:?}", case.name, new_events[0]);
        }
        Expect::Line(n, code) => {
            assert_eq!(out.status, OutcomeStatus::Accepted, "{}: the batch is accepted line by line: {out:?}", case.name);
            let line = out.lines.iter().find(|l| l.line_no == *n).unwrap_or_else(|| panic!("{}: no line {n}", case.name));
            assert_eq!((line.status.as_str(), line.code.as_deref()), ("rejected", Some(*code)), "{}: {out:?}", case.name);
            assert_eq!(out.count_lines("instructed"), 0, "{}: nothing instructed", case.name);
            assert!(
                new_events
                    .iter()
                    .all(|d| matches!(d, EventData::PayoutBatchSubmitted(b) if b.lines_instructed == 0) || matches!(d, EventData::PayoutLineRejected(_))),
                "{}: only the batch header and line rejections",
                case.name
            );
        }
        Expect::Item(n, code) => {
            assert_eq!(out.status, OutcomeStatus::Accepted, "{}: {out:?}", case.name);
            let item = out.lines.iter().find(|l| l.line_no == *n).unwrap_or_else(|| panic!("{}: no item {n}", case.name));
            assert_eq!((item.status.as_str(), item.code.as_deref()), ("rejected", Some(*code)), "{}: {out:?}", case.name);
            assert!(new_events.iter().all(|d| matches!(d, EventData::SettlementItemRejected(_))), "{}: only item rejections", case.name);
        }
    }
    // A batch whose every line was refused is still recorded (its id is taken); nothing else.
    let mut expected_state = state_before;
    for d in new_events.iter().filter(|d| matches!(d, EventData::PayoutBatchSubmitted(_))) {
        expected_state.evolve(d);
    }
    assert!(engine.state() == &expected_state, "{}: the decision state changed beyond the recorded batch id", case.name);
    let after = money_views(engine);
    if after != views_before {
        let diff: Vec<String> = after.iter().filter(|kv| !views_before.contains(kv)).map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect();
        panic!("{}: views changed: {diff:?}", case.name);
    }
}

#[test]
fn every_hostile_command_gets_its_specific_reason_and_changes_nothing_else() {
    let started = std::time::Instant::now();
    let cases = corpus();
    let mut names = std::collections::BTreeSet::new();
    for c in &cases {
        assert!(names.insert(c.name.clone()), "case name {} is used twice", c.name);
    }
    assert!(cases.len() >= 100, "the corpus has {} cases", cases.len());
    let mut t = TestEngine::open();
    for o in t.execute(&setup()) {
        o.then_accepted();
    }
    for case in &cases {
        check_case(&mut t.engine, case);
    }
    // Redelivering each decided case answers from the index and writes nothing.
    let head = t.engine.head().clone();
    for case in &cases {
        if let Ok(e) = decode_command(&case.bytes) {
            if ansinh::engine::check_envelope(&e).is_ok() {
                let out = t.engine.execute(std::slice::from_ref(&e)).expect("stored").remove(0);
                assert!(out.duplicate, "{}: a redelivery is answered from the index", case.name);
            }
        }
    }
    assert_eq!(t.engine.head(), &head, "redeliveries wrote nothing");
    // Still running: a valid command goes through.
    t.execute_one(envelope("after-corpus", enroll_cmd(&DUNG, "6c", "2025-01"))).then_accepted();
    let kinds = |f: fn(&Expect) -> bool| cases.iter().filter(|c| f(&c.expect)).count();
    eprintln!(
        "corpus: {} cases ({} decode failures, {} invalid envelopes, {} rejected commands, {} rejected lines/items) in {:.1} s",
        cases.len(),
        kinds(|e| matches!(e, Expect::Decode(_))),
        kinds(|e| matches!(e, Expect::Invalid)),
        kinds(|e| matches!(e, Expect::Rejected(_))),
        kinds(|e| matches!(e, Expect::Line(..) | Expect::Item(..))),
        started.elapsed().as_secs_f64()
    );
}

/// The corpus's poison over the real broker: each decode failure (and each invalid envelope)
/// lands in the dead-letter queue with its reason header, and serve keeps deciding.
#[test]
fn the_corpus_poison_over_amqp_is_dead_lettered_with_its_reason() {
    use amqp_support::{header, headers, Fixture, Settings, ADMIN, AGENCY};
    let poison: Vec<(String, Vec<u8>, &'static str)> = corpus()
        .into_iter()
        .filter_map(|c| match c.expect {
            Expect::Decode(r) => Some((c.name, c.bytes, r)),
            Expect::Invalid => Some((c.name, c.bytes, "envelope_invalid")),
            _ => None,
        })
        // One of each 10 MB body is enough on the wire.
        .filter(|(name, _, _)| name != "10 MB of spaces" && name != "valid JSON over the message bound")
        .collect();
    let mut fx = Fixture::new("corpus", Settings::default());
    fx.start_serve();
    let agency = fx.client(AGENCY);
    for (i, (_, body, _)) in poison.iter().enumerate() {
        agency.publish_raw(&fx.rt, body, &format!("poison-{i}"), Some(AGENCY), headers(&[("x-case", &i.to_string())]));
    }
    let admin = fx.client(ADMIN);
    let rules = vec![envelope("amqp-program", define_program_cmd(PROGRAM, PROGRAM_NAME, &categories()))];
    admin.send(&fx.rt, &rules);
    let out = admin.reply("amqp-program", std::time::Duration::from_secs(90));
    assert_eq!(out.status, OutcomeStatus::Accepted, "a command behind the poison is decided: {out:?}");
    let dead = fx.drain(&format!("{}.dead", fx.prefix), poison.len(), std::time::Duration::from_secs(60));
    assert_eq!(dead.len(), poison.len(), "one dead letter per poison message");
    for m in &dead {
        let i: usize = header(&m.delivery.properties, "x-case").expect("the original headers are kept").parse().expect("an index");
        let (name, body, reason) = &poison[i];
        assert_eq!(header(&m.delivery.properties, "x-ansinh-reason").as_deref(), Some(*reason), "{name}: the reason header");
        assert!(m.delivery.data == *body, "{name}: the body is kept");
    }
    assert!(agency.replies.lock().expect("lock").is_empty(), "poison gets no reply");
    fx.stop_serve();
    let engine = fx.open_engine();
    assert_eq!(Some(engine.head().seq), out.seqs.map(|s| s[1]), "no poison was recorded");
    eprintln!("corpus over AMQP: {} poison messages dead-lettered with their reasons", poison.len());
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const REASONS: &[&str] = &["oversize", "not_utf8", "not_json", "duplicate_key", "not_object", "missing_field", "unknown_type", "schema_violation"];

    fn valid_commands() -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = setup().iter().map(to_bytes).collect();
        v.push(to_bytes(&envelope("f-settle", settlements_cmd(VCB, vec![settled_item(PAYOUT, "FT1")]))));
        v.push(to_bytes(&envelope("f-suspend", suspend_cmd(AN.id, "2025-02", "x"))));
        v
    }

    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let base = valid_commands();
        (0..base.len(), proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6)).prop_map(move |(i, edits)| {
            let mut b = base[i].clone();
            for (at, byte, op) in edits {
                if b.is_empty() {
                    b.push(byte);
                    continue;
                }
                let at = at.index(b.len());
                match op {
                    0 => b[at] = byte,
                    1 => b.insert(at, byte),
                    2 => {
                        b.remove(at);
                    }
                    // A digit somewhere: IDs, amounts, periods.
                    _ => b[at] = b'0' + byte % 10,
                }
            }
            b
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Random bytes: a specific reason, never a panic.
        #[test]
        fn decoding_random_bytes_gives_a_reason(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(e) = decode_command(&bytes) {
                prop_assert!(REASONS.contains(&e.reason()));
            }
        }

        /// Mutated valid commands, decoded and executed after the setup: each is either a decode
        /// failure with a reason, an invalid envelope that writes nothing, or a decided outcome
        /// whose events are contiguous from the old head; the ledger still sums to zero.
        #[test]
        fn mutated_commands_are_decided_or_refused_never_a_panic(bodies in proptest::collection::vec(mutated(), 1..8)) {
            let mut t = TestEngine::open();
            t.execute(&setup());
            for body in bodies {
                match decode_command(&body) {
                    Err(e) => prop_assert!(REASONS.contains(&e.reason())),
                    Ok(e) => {
                        let head = t.engine.head().seq;
                        let out = t.engine.execute(std::slice::from_ref(&e)).expect("stored").remove(0);
                        match out.status {
                            OutcomeStatus::Invalid => prop_assert_eq!(t.engine.head().seq, head),
                            _ if out.duplicate => prop_assert_eq!(t.engine.head().seq, head),
                            _ => prop_assert_eq!(out.seqs.map(|s| s[0]), Some(head + 1)),
                        }
                    }
                }
            }
            prop_assert_eq!(t.engine.views().ledger_total().expect("ledger"), rust_decimal::Decimal::ZERO);
        }
    }
}

#[path = "corpus_families/disclosure.rs"]
mod disclosure;
/// After issue 16: free text, zero-padded amounts, positional arrays, program ids in every
/// command, bounded rejection messages, empty CSV rows.
#[path = "corpus_families/hostile.rs"]
mod hostile;
/// Issue 16 ("money and identity"): one family of cases per class of hostile input, and the
/// families that are tests of their own.
#[path = "corpus_families/issue16.rs"]
mod issue16;
