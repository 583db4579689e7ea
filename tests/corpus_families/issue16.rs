//! Issue 16 ("money and identity"): the hostile-input classes found by an outside corpus, each
//! as a family of corpus cases (run by `every_hostile_command_gets_its_specific_reason_and_changes_nothing_else`:
//! its specific code, nothing else changed, the engine still running) built for the class, not
//! for the examples: a key repeated in every object of five commands; impossible times in
//! every time field of several command types; invisible or letterless text in every name field;
//! separators in CSV amounts; new numbers that contradict the recorded identity. Plus the tests
//! that are not single commands (CSV files refused whole, a corrected date of birth reaching the
//! views).

use super::*;

/// Adds the issue 16 cases to the corpus.
pub(super) fn cases(add: &mut dyn FnMut(&str, Vec<u8>, Expect), good_enroll: &Value, good_fund: &Value) {
    let good_enroll = good_enroll.clone();
    let good_fund = good_fund.clone();
    // ---- a key repeated in any object, at any depth (issue 16) ----------------------------------
    // The repetition comes first with another value, the real value last: serde_json alone
    // would keep the last one and decide a command nobody can be sure was meant.
    let repeated_in = [
        ("enroll", good_enroll.clone()),
        ("batch", value(&envelope("c-batch", batch_cmd("BK", "2025-01", &[(AN.id, "750000"), (BINH.id, "750000")])))),
        ("settle", value(&envelope("c-settle", settlements_cmd(VCB, vec![failed_item(PAYOUT, ansinh::domain::FailureReason::AccountClosed, "FT1")])))),
        ("program", value(&envelope("c-program", define_program_cmd("p-dup", PROGRAM_NAME, &[("6c", "1.5"), ("1a", "2.5")])))),
        ("reassign", value(&envelope("c-reassign", reassign_cmd(AN.id, AN_NEW_ID, "x")))),
    ];
    for (what, v) in &repeated_in {
        for (place, text) in repeated_keys(v) {
            add(&format!("repeated key: {what} {place}"), text, Expect::Decode("duplicate_key"));
        }
    }

    // Issue 16: times of the right shape that name no instant, in issued_at of any command
    // type (refused before deciding, so an impossible time is never an event's `at`) and in an
    // attestation's verified_at (a recorded attestation_invalid).
    let impossible_times = [
        ("30 February", "2025-02-30T08:00:00Z"),
        ("31 April", "2025-04-31T08:00:00+07:00"),
        ("29 February of a common year", "2023-02-29T08:00:00Z"),
        ("29 February 2100", "2100-02-29T08:00:00Z"),
        ("day 00", "2025-01-00T08:00:00Z"),
        ("month 00", "2025-00-20T08:00:00Z"),
        ("hour 24", "2025-01-20T24:00:00Z"),
        ("minute 60", "2025-01-20T08:60:00Z"),
        ("second 61", "2025-01-20T08:00:61Z"),
        ("leap second", "2016-12-31T23:59:60Z"),
        ("offset +99:99", "2025-01-20T08:00:00+99:99"),
        ("offset +24:00", "2025-01-20T08:00:00+24:00"),
        ("offset +14:01", "2025-01-20T08:00:00+14:01"),
        ("offset -15:00", "2025-01-20T08:00:00-15:00"),
        ("offset minutes 60", "2025-01-20T08:00:00+07:60"),
        ("offset without colon", "2025-01-20T08:00:00+0700"),
        ("year 1899", "1899-12-31T08:00:00Z"),
        ("year 2400", "2400-01-01T08:00:00Z"),
        ("year 0000", "0000-01-01T00:00:00Z"),
        ("full-width digits", "２０２５-01-20T08:00:00Z"),
        ("space for T", "2025-01-20 08:00:00Z"),
        ("60 digits of fraction", "2025-01-20T08:00:00.000000000000000000000000000000000000000000000000000000000000Z"),
    ];
    let typed = [
        ("enroll", good_enroll.clone()),
        ("fund", good_fund.clone()),
        ("batch", value(&envelope("t-batch", batch_cmd("BT-T", "2025-01", &[(BINH.id, "750000")])))),
        ("settle", value(&envelope("t-settle", settlements_cmd(VCB, vec![settled_item(PAYOUT, "FT1")])))),
    ];
    for (i, (why, t)) in impossible_times.into_iter().enumerate() {
        for (what, base) in &typed {
            let mut v = base.clone();
            v["issued_at"] = t.into();
            add(&format!("issued_at {why}: {what}"), serde_json::to_vec(&v).expect("JSON"), Expect::Invalid);
        }
        let e = enroll_with(&format!("e-verified-{i}"), |p| p.attestation.as_mut().expect("set").verified_at = t.into());
        add(&format!("enroll: attestation verified_at {why}"), to_bytes(&e), Expect::Rejected("attestation_invalid"));
        let mut r = reassign_payload(AN.id, AN_NEW_ID, "x");
        r.attestation.as_mut().expect("set").verified_at = t.into();
        add(
            &format!("reassign: attestation verified_at {why}"),
            to_bytes(&envelope(&format!("r-verified-{i}"), Command::ReassignCitizenId(r))),
            Expect::Rejected("attestation_invalid"),
        );
    }
    // Verified after the command (ISSUED_AT = 2025-01-20T08:00:00Z), as instants.
    for (i, t) in ["2025-01-20T08:00:00.001Z", "2025-01-20T15:00:01+07:00", "2025-01-20T07:30:00-01:00", "2399-12-31T23:59:59Z"].iter().enumerate() {
        let e = enroll_with(&format!("e-late-{i}"), |p| p.attestation.as_mut().expect("set").verified_at = (*t).into());
        add(&format!("enroll: attestation verified after the command {t}"), to_bytes(&e), Expect::Rejected("attestation_after_command"));
        let mut r = reassign_payload(AN.id, AN_NEW_ID, "x");
        r.attestation.as_mut().expect("set").verified_at = (*t).into();
        add(
            &format!("reassign: attestation verified after the command {t}"),
            to_bytes(&envelope(&format!("r-late-{i}"), Command::ReassignCitizenId(r))),
            Expect::Rejected("attestation_after_command"),
        );
    }
    // A date of birth after the command's day; numbers consistent with it (DUNG is female).
    for (id, dob) in [
        ("079325000001", "2025-01-21"),
        ("079325000001", "2025-12-31"),
        ("079326000001", "2026-01-01"),
        ("079500000001", "2100-01-01"),
        ("079998000001", "2398-06-15"),
    ] {
        let e = enroll_with(&format!("e-future-{dob}"), |p| {
            p.citizen_id = id.into();
            p.date_of_birth = dob.into();
            p.effective_from = dob[..7].into();
        });
        add(&format!("enroll: date of birth in the future {dob}"), to_bytes(&e), Expect::Rejected("date_of_birth_in_future"));
    }

    // ---- names that show nothing or hide something (issue 16), in every name field --------------
    let hidden_names = [
        ("zero-width space", "\u{200b}"),
        ("zero-width joiners", "\u{200c}\u{200d}"),
        ("right-to-left override", "\u{202e}"),
        ("bidi isolate", "\u{2067}\u{2069}"),
        ("byte-order mark", "\u{feff}"),
        ("word joiner", "\u{2060}"),
        ("soft hyphen", "\u{ad}"),
        ("Hangul filler", "\u{3164}"),
        ("tag characters", "\u{e0041}\u{e0042}"),
        ("variation selector", "\u{fe0f}"),
        ("private use", "\u{e000}"),
        ("line separator", "\u{2028}"),
        ("combining mark only", "\u{301}\u{303}"),
        ("digits only", "0123456789"),
        ("punctuation only", "-.,"),
        ("emoji only", "\u{1f600}"),
        ("override inside a name", "Phạm Thị \u{202e}Dung"),
        ("zero-width inside a name", "Phạm\u{200b}Thị Dung"),
        ("leading byte-order mark", "\u{feff}Phạm Thị Dung"),
        ("trailing soft hyphen", "Phạm Thị Dung\u{ad}"),
    ];
    for (i, (why, raw)) in hidden_names.iter().enumerate() {
        add(
            &format!("enroll: full name {why}"),
            to_bytes(&enroll_with(&format!("n-full-{i}"), |p| p.full_name = (*raw).into())),
            Expect::Rejected("full_name_invalid"),
        );
        add(
            &format!("enroll: holder name {why}"),
            to_bytes(&enroll_with(&format!("n-holder-{i}"), |p| p.account.holder_name = (*raw).into())),
            Expect::Rejected("holder_name_invalid"),
        );
        let account = ansinh::domain::account::AccountInput { holder_name: (*raw).into(), ..account_input(&BINH) };
        add(
            &format!("change account: holder name {why}"),
            to_bytes(&envelope(&format!("n-change-{i}"), change_account_cmd(AN.id, account))),
            Expect::Rejected("holder_name_invalid"),
        );
        add(
            &format!("program: name {why}"),
            to_bytes(&envelope(&format!("n-program-{i}"), define_program_cmd(&format!("p-name-{i}"), raw, &[("6c", "1.5")]))),
            Expect::Rejected("program_name_invalid"),
        );
    }

    // ---- CSV lists (issue 16): a quoted or spaced separator reaches the engine and is refused
    // on its line; an unquoted comma makes the row too wide and the file is refused as a whole
    // (`csv_lists_that_do_not_say_one_thing_are_refused_whole`).
    for (i, amount) in
        ["\"750.000\"", "\"750,000\"", "750.000", "750\u{a0}000", "750 000", "750000.00", "\"750000,00\"", "750'000", "750_000"].iter().enumerate()
    {
        let text = format!("citizen_id,amount\n{},{amount}\n", BINH.id);
        let batch = ansinh::intake::payout_batch_from_csv(text.as_bytes(), &format!("CSV{i}"), PROGRAM, PROVINCE, "2025-01").expect("a well-formed CSV list");
        add(&format!("csv amount {amount}"), to_bytes(&envelope(&format!("csv-{i}"), Command::SubmitPayoutBatch(batch))), Expect::Line(1, "amount_separator"));
    }

    // ---- reassignment: the new number's structure (issue 16) -----------------------------------------
    // AN is female, born 1985; BINH male, born 1950. Each new number is well-formed and free.
    let reassign_with = |id: &str, old: &str, new: &str, dob: Option<&str>| {
        let mut p = reassign_payload(old, new, "x");
        p.date_of_birth = dob.map(String::from);
        to_bytes(&envelope(id, Command::ReassignCitizenId(p)))
    };
    for (i, (old, new, dob, code)) in [
        (AN.id, "056085000999", None, "citizen_id_sex_mismatch"),
        (AN.id, "056285000999", None, "citizen_id_sex_mismatch"),
        (BINH.id, "058150000999", None, "citizen_id_sex_mismatch"),
        (BINH.id, "058350000999", Some("2050-01-01"), "date_of_birth_in_future"),
        (AN.id, "056186000999", None, "citizen_id_birth_year_mismatch"),
        (AN.id, "056385000999", None, "citizen_id_birth_year_mismatch"),
        (AN.id, "056985000999", None, "citizen_id_birth_year_mismatch"),
        (BINH.id, "058051000999", None, "citizen_id_birth_year_mismatch"),
        (AN.id, "056186000999", Some("1987-04-12"), "citizen_id_birth_year_mismatch"),
        (AN.id, "056185000999", Some("1986-04-12"), "citizen_id_birth_year_mismatch"),
        (AN.id, "056086000999", Some("1986-04-12"), "citizen_id_sex_mismatch"),
        (AN.id, "056186000999", Some("1986-02-29"), "date_of_birth_invalid"),
        (AN.id, "056186000999", Some("1986-4-12"), "date_of_birth_invalid"),
        (AN.id, "056186000999", Some(""), "date_of_birth_invalid"),
        (AN.id, "056325000999", Some("2025-01-21"), "date_of_birth_in_future"),
        (AN.id, "056998000999", Some("2398-12-31"), "date_of_birth_in_future"),
    ]
    .into_iter()
    .enumerate()
    {
        add(&format!("reassign: {old} to {new} born {dob:?}"), reassign_with(&format!("r-struct-{i}"), old, new, dob), Expect::Rejected(code));
    }
}

/// For every key of every object in `v`: the JSON text with that key written twice, first with
/// another value of the same kind, then with its own. Named by path (`$.payload.lines[1].amount`).
fn repeated_keys(v: &Value) -> Vec<(String, Vec<u8>)> {
    fn places(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    let here = format!("{path}.{k}");
                    out.push(here.clone());
                    places(child, &here, out);
                }
            }
            Value::Array(items) => items.iter().enumerate().for_each(|(i, child)| places(child, &format!("{path}[{i}]"), out)),
            _ => {}
        }
    }
    fn decoy(v: &Value) -> Value {
        match v {
            Value::String(_) => json!("1"),
            Value::Number(_) => json!(2),
            Value::Bool(b) => json!(!b),
            Value::Object(_) => json!({}),
            Value::Array(_) => json!([]),
            Value::Null => json!("x"),
        }
    }
    fn render(v: &Value, path: &str, target: &str, out: &mut String) {
        match v {
            Value::Object(map) => {
                out.push('{');
                for (n, (k, child)) in map.iter().enumerate() {
                    let here = format!("{path}.{k}");
                    if n > 0 {
                        out.push(',');
                    }
                    let key = serde_json::to_string(k).expect("a key serializes");
                    if here == target {
                        out.push_str(&format!("{key}:{},", decoy(child)));
                    }
                    out.push_str(&key);
                    out.push(':');
                    render(child, &here, target, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, child) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    render(child, &format!("{path}[{i}]"), target, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut targets = Vec::new();
    places(v, "$", &mut targets);
    targets
        .into_iter()
        .map(|target| {
            let mut text = String::new();
            render(v, "$", &target, &mut text);
            (target, text.into_bytes())
        })
        .collect()
}

/// A corrected date of birth carried by a reassignment reaches the decision state and the
/// citizen view, under the new number.
#[test]
fn a_corrected_date_of_birth_reaches_the_state_and_the_views() {
    let mut t = TestEngine::open();
    for o in t.execute(&setup()) {
        o.then_accepted();
    }
    let mut p = reassign_payload(AN.id, "056186000999", "năm sinh đính chính");
    p.date_of_birth = Some("1986-04-12".into());
    t.execute_one(envelope("r-corrected", Command::ReassignCitizenId(p))).then_accepted();
    let view = t.engine.views().reader().citizen("056186000999").expect("views read").expect("the citizen under the new number");
    assert_eq!(view.date_of_birth, "1986-04-12");
    let (_, person) = t.engine.state().person(&ansinh::domain::CitizenId::parse("056186000999").expect("valid")).expect("the new number is in use");
    assert_eq!(person.date_of_birth.to_string(), "1986-04-12");
}

/// A CSV list whose rows do not all have the header's width, or whose header names a column
/// twice, is refused as a whole with an error naming the row or the columns: never read as a
/// truncated or guessed list.
#[test]
fn csv_lists_that_do_not_say_one_thing_are_refused_whole() {
    use ansinh::intake::{payout_batch_from_csv, CsvError};
    let ok = format!("{},750000", AN.id);
    let cases: Vec<(&str, String, &str)> = vec![
        ("unquoted thousands comma", format!("citizen_id,amount\n{},750,000\n", BINH.id), "row 1"),
        ("unquoted comma on a later row", format!("citizen_id,amount\n{ok}\n{},1,000,000\n", BINH.id), "row 2"),
        ("unquoted decimal comma", format!("citizen_id,amount\n{},750000,00\n", BINH.id), "row 1"),
        ("row narrower than the header", format!("citizen_id,amount,name\n{ok},An\n{}\n", BINH.id), "row 2"),
        ("trailing comma", format!("citizen_id,amount\n{ok},\n"), "row 1"),
        ("citizen_id twice", format!("citizen_id,amount,citizen_id\n{ok},{}\n", BINH.id), "columns 1 and 3"),
        ("amount twice in other case", format!("citizen_id,Amount,AMOUNT\n{ok},1\n"), "columns 2 and 3"),
        ("citizen_id twice behind a BOM and spaces", format!("\u{feff}citizen_id,amount, Citizen_Id \n{ok},{}\n", BINH.id), "columns 1 and 3"),
    ];
    for (name, text, says) in cases {
        let err = payout_batch_from_csv(text.as_bytes(), "CSV-W", PROGRAM, PROVINCE, "2025-01").expect_err(name);
        assert!(matches!(err, CsvError::RowWidth { .. } | CsvError::HeaderRepeated { .. }), "{name}: {err}");
        assert!(err.to_string().contains(says), "{name}: {err}");
    }
}
