//! The hostile-input classes found after issue 16, each as a family of corpus cases (run by
//! `every_hostile_command_gets_its_specific_reason_and_changes_nothing_else`: its code, nothing
//! else changed, the engine still running): hidden or control characters in every free-text
//! field; zero-padded amounts; arrays where an object is expected; malformed program ids in
//! every command; a settled item with a failure reason; a byte-order mark before JSON. Plus the tests that are not single commands
//! (rejection messages bounded in the log, empty lines between CSV rows).

use super::*;

/// Characters that change what a reader of the log, a bank file or a CSV report sees.
const HIDDEN: &[(&str, char)] = &[
    ("line feed", '\n'),
    ("carriage return", '\r'),
    ("tab", '\t'),
    ("NUL", '\u{0}'),
    ("escape", '\u{1b}'),
    ("next line", '\u{85}'),
    ("zero-width space", '\u{200b}'),
    ("left-to-right embedding", '\u{202a}'),
    ("right-to-left override", '\u{202e}'),
    ("left-to-right isolate", '\u{2066}'),
    ("pop directional isolate", '\u{2069}'),
    ("byte-order mark inside", '\u{feff}'),
    ("line separator", '\u{2028}'),
    ("paragraph separator", '\u{2029}'),
    ("private use", '\u{e000}'),
    ("soft hyphen", '\u{ad}'),
];

/// Adds this family's cases to the corpus.
pub(super) fn cases(add: &mut dyn FnMut(&str, Vec<u8>, Expect), good_fund: &Value) {
    // ---- free text, in every field that reaches the log or a bank --------------------------------
    for (i, (why, c)) in HIDDEN.iter().enumerate() {
        let raw = format!("KBNN{c}2025");
        let mut fund = fund_payload("2025-02", "1000000");
        fund.reference = raw.clone();
        add(
            &format!("free text: fund reference {why}"),
            to_bytes(&envelope(&format!("ft-fund-{i}"), Command::FundBudget(fund))),
            Expect::Rejected("reference_invalid"),
        );
        let Command::SetStandardLevel(mut level) = set_level_cmd(None, "2026-01", "500000") else { unreachable!("a level command") };
        level.legal_basis = raw.clone();
        add(
            &format!("free text: level legal basis {why}"),
            to_bytes(&envelope(&format!("ft-level-{i}"), Command::SetStandardLevel(level))),
            Expect::Rejected("reference_invalid"),
        );
        let Command::DefineProgram(mut program) = define_program_cmd(&format!("ft-p-{i}"), PROGRAM_NAME, &[("6c", "1.5")]) else {
            unreachable!("a program command")
        };
        program.legal_basis = raw.clone();
        add(
            &format!("free text: program legal basis {why}"),
            to_bytes(&envelope(&format!("ft-program-{i}"), Command::DefineProgram(program))),
            Expect::Rejected("reference_invalid"),
        );
        for (what, cmd) in [
            ("suspend", suspend_cmd(AN.id, "2025-02", &raw)),
            ("resume", resume_cmd(AN.id, "2025-02", &raw)),
            ("terminate", terminate_cmd(AN.id, "2025-02", &raw)),
            ("reassign", reassign_cmd(AN.id, AN_NEW_ID, &raw)),
            ("write-off", write_off_cmd(PAYOUT, &raw)),
            ("reissue", {
                let Command::ReissuePayout(mut r) = reissue_cmd(PAYOUT) else { unreachable!("a reissue command") };
                r.reason = raw.clone();
                Command::ReissuePayout(r)
            }),
        ] {
            add(&format!("free text: {what} reason {why}"), to_bytes(&envelope(&format!("ft-{what}-{i}"), cmd)), Expect::Rejected("reference_invalid"));
        }
        add(
            &format!("free text: bank reference {why}"),
            to_bytes(&envelope(&format!("ft-settle-{i}"), settlements_cmd(VCB, vec![settled_item(PAYOUT, &raw)]))),
            Expect::Item(1, "reference_invalid"),
        );
        let e = enroll_with(&format!("ft-att-{i}"), |p| p.attestation.as_mut().expect("set").reference = format!("VNEID{c}1"));
        add(&format!("free text: attestation reference {why}"), to_bytes(&e), Expect::Rejected("attestation_invalid"));
    }
    let e = enroll_with("ft-att-only-zw", |p| p.attestation.as_mut().expect("set").reference = "\u{200b}".into());
    add("free text: attestation reference of a zero-width space only", to_bytes(&e), Expect::Rejected("attestation_invalid"));

    // VNeID has levels 1 and 2: a higher number is no level at all, not a stronger one.
    for level in [0u8, 3, 9, 255] {
        let e = enroll_with(&format!("att-level-{level}"), |p| p.attestation.as_mut().expect("set").level = level);
        add(&format!("attestation level {level}"), to_bytes(&e), Expect::Rejected("attestation_insufficient"));
    }

    // ---- amounts: zero-padded (fixed-width formats may carry implied decimals) ------------------
    for (i, raw) in ["0750000", "00750000", "000075000000", "00000000000000000000750000", "01"].iter().enumerate() {
        add(
            &format!("zero-padded batch line amount {raw}"),
            to_bytes(&envelope(&format!("zp-line-{i}"), batch_cmd(&format!("BZ{i}"), "2025-01", &[(BINH.id, raw)]))),
            Expect::Line(1, "amount_invalid"),
        );
        add(
            &format!("zero-padded fund amount {raw}"),
            to_bytes(&envelope(&format!("zp-fund-{i}"), fund_cmd("2025-02", raw))),
            Expect::Rejected("amount_invalid"),
        );
        add(
            &format!("zero-padded level amount {raw}"),
            to_bytes(&envelope(&format!("zp-level-{i}"), set_level_cmd(None, "2026-01", raw))),
            Expect::Rejected("amount_invalid"),
        );
    }

    // ---- an array where an object is expected (serde would read it field by field) -------------
    let batch = value(&envelope("pa-batch", batch_cmd("BPA", "2025-01", &[(BINH.id, "750000")])));
    let settle = value(&envelope("pa-settle", settlements_cmd(VCB, vec![settled_item(PAYOUT, "FT1")])));
    let enroll = value(&enroll_with("pa-enroll", |_| {}));
    let positional: Vec<(&str, Value)> = vec![
        ("batch line", {
            let mut v = batch.clone();
            v["payload"]["lines"] = json!([[BINH.id, "750000"]]);
            v
        }),
        ("batch line after a good one", {
            let mut v = batch.clone();
            v["payload"]["lines"] = json!([{"citizen_id": AN.id, "amount": "750000"}, [BINH.id, "750000"]]);
            v
        }),
        ("batch line null", {
            let mut v = batch.clone();
            v["payload"]["lines"] = json!([null]);
            v
        }),
        ("settlement item", {
            let mut v = settle.clone();
            v["payload"]["items"] = json!([[PAYOUT, "settled", null, "FT1"]]);
            v
        }),
        ("account", {
            let mut v = enroll.clone();
            v["payload"]["account"] = json!([VCB, "0071000123456", "PHAM THI DUNG"]);
            v
        }),
        ("attestation", {
            let mut v = enroll.clone();
            v["payload"]["attestation"] = json!([2, "VNeID", "VNEID-1", "2025-01-10T09:00:00+07:00"]);
            v
        }),
        ("fund payload", {
            let mut v = good_fund.clone();
            v["payload"] = json!([PROVINCE, PROGRAM, "2025-02", "1000000", ""]);
            v
        }),
    ];
    for (what, v) in positional {
        add(&format!("positional {what}"), serde_json::to_vec(&v).expect("JSON"), Expect::Decode("schema_violation"));
    }

    // ---- program ids outside the documented set, in every command that names one ----------------
    for (i, (why, id)) in [
        ("space", "tro cap"),
        ("slash", "tro/cap"),
        ("empty", ""),
        ("65 characters", &"p".repeat(65)),
        ("non-ASCII", "trợ-cấp"),
        ("zero-width", "tro-cap\u{200b}"),
    ]
    .iter()
    .enumerate()
    {
        let mut fund = fund_payload("2025-02", "1000000");
        fund.program_id = (*id).into();
        add(
            &format!("program id {why}: fund"),
            to_bytes(&envelope(&format!("pid-fund-{i}"), Command::FundBudget(fund))),
            Expect::Rejected("program_id_invalid"),
        );
        let mut b = batch_payload(&format!("BPID{i}"), "2025-01", &[(BINH.id, "750000")]);
        b.program_id = (*id).into();
        add(
            &format!("program id {why}: batch"),
            to_bytes(&envelope(&format!("pid-batch-{i}"), Command::SubmitPayoutBatch(b))),
            Expect::Rejected("program_id_invalid"),
        );
        let e = enroll_with(&format!("pid-enroll-{i}"), |p| p.program_id = (*id).into());
        add(&format!("program id {why}: enroll"), to_bytes(&e), Expect::Rejected("program_id_invalid"));
    }

    // ---- a settlement that says settled and failed at once ----------------------------------------
    for (i, reason) in ansinh::domain::FailureReason::ALL.into_iter().enumerate() {
        let mut item = settled_item(PAYOUT, "FT1");
        item.reason = Some(reason);
        add(
            &format!("settled with failure reason {}", reason.as_str()),
            to_bytes(&envelope(&format!("sr-{i}"), settlements_cmd(VCB, vec![item]))),
            Expect::Item(1, "reason_unexpected"),
        );
    }

    // ---- a byte-order mark before the JSON text -------------------------------------------------
    let mut bom = "\u{feff}".as_bytes().to_vec();
    bom.extend(serde_json::to_vec(good_fund).expect("JSON"));
    add("byte-order mark before a command", bom, Expect::Decode("not_json"));
}

/// A rejection echoes what was sent (a province code, a BIN, a period, an amount) and is
/// recorded: the recorded message stays bounded, however long the input.
#[test]
fn recorded_rejection_messages_are_bounded() {
    let mut t = TestEngine::open();
    for o in t.execute(&setup()) {
        o.then_accepted();
    }
    let long = "9".repeat(100_000);
    let mut cases: Vec<(CommandEnvelope, &str)> = Vec::new();
    let mut fund = fund_payload("2025-02", "1000000");
    fund.province = long.clone();
    cases.push((envelope("long-province", Command::FundBudget(fund)), "province_unknown"));
    cases.push((envelope("long-period", fund_cmd(&long, "1000000")), "period_invalid"));
    cases.push((envelope("long-amount", fund_cmd("2025-02", &long)), "amount_too_large"));
    cases.push((envelope("long-bin", settlements_cmd(&long, vec![settled_item(PAYOUT, "FT1")])), "bank_unknown"));
    cases.push((enroll_with("long-category", |p| p.category = "c".repeat(100_000)), "category_unknown"));
    for (e, code) in cases {
        let head = t.engine.head().seq;
        let out = t.engine.execute(std::slice::from_ref(&e)).expect("stored").remove(0);
        assert_eq!(out.code.as_deref(), Some(code), "{}: {out:?}", e.command_id);
        let record = t.engine.log().read(head + 1).expect("log read").expect("the rejection");
        let EventData::CommandRejected(r) = record.event.data else { panic!("{}: not a rejection", e.command_id) };
        assert!(r.message.chars().count() <= ansinh::core::rejection::MESSAGE_CHARS_MAX + 1, "{}: {} characters recorded", e.command_id, r.message.len());
    }
}

/// The CSV reader skips empty lines; between rows that renumbers every later row of the report,
/// so the file is refused. Empty lines after the last row are harmless.
#[test]
fn an_empty_line_between_csv_rows_refuses_the_file() {
    use ansinh::intake::{payout_batch_from_csv, CsvError};
    let ok = format!("{},750000", AN.id);
    let other = format!("{},750000", BINH.id);
    for (name, text) in [
        ("between two rows", format!("citizen_id,amount\n{ok}\n\n{other}\n")),
        ("CRLF", format!("citizen_id,amount\r\n{ok}\r\n\r\n{other}\r\n")),
        ("after the header", format!("citizen_id,amount\n\n{ok}\n")),
        ("several", format!("citizen_id,amount\n{ok}\n\n\n\n{other}\n")),
    ] {
        let err = payout_batch_from_csv(text.as_bytes(), "CSV-E", PROGRAM, PROVINCE, "2025-01").expect_err(name);
        assert!(matches!(err, CsvError::EmptyRow { .. }), "{name}: {err}");
        assert!(err.to_string().contains("empty"), "{name}: {err}");
    }
    for (name, text) in [
        ("trailing empty lines", format!("citizen_id,amount\n{ok}\n{other}\n\n\n")),
        ("CRLF with a trailing empty line", format!("citizen_id,amount\r\n{ok}\r\n{other}\r\n\r\n")),
        ("no final newline", format!("citizen_id,amount\n{ok}\n{other}")),
        ("a quoted field over two lines", format!("citizen_id,amount,note\n{ok},\"a\nb\"\n{other},c\n")),
    ] {
        let b = payout_batch_from_csv(text.as_bytes(), "CSV-E", PROGRAM, PROVINCE, "2025-01").unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(b.lines.len(), 2, "{name}");
    }
}
