//! Issue 16: a refusal must not tell the sender what its role cannot read. Two agencies
//! (Khánh Hòa 056, TP Hồ Chí Minh 079) send commands that touch each other's beneficiaries; every
//! message they get back (whole commands and batch lines) is searched for the other province,
//! the other person's data and a re-determined number. Codes are what they always were.

use super::*;
use ansinh::core::authz::{Role, Roles};

fn roles() -> Roles {
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    Roles(
        [
            ("ministry".to_string(), Role::Admin),
            ("agency-056".to_string(), Role::Agency { provinces: set(&[PROVINCE]), programs: set(&[PROGRAM]) }),
            ("agency-079".to_string(), Role::Agency { provinces: set(&[OTHER_PROVINCE]), programs: set(&[PROGRAM]) }),
        ]
        .into_iter()
        .collect(),
    )
}

fn sent_by(sender: &str, id: &str, command: Command) -> CommandEnvelope {
    CommandEnvelope { sender: Some(sender.into()), ..envelope(id, command) }
}

fn batch_in(province: &str, batch_id: &str, lines: &[(&str, &str)]) -> Command {
    let mut b = batch_payload(batch_id, "2025-01", lines);
    b.province = province.into();
    Command::SubmitPayoutBatch(b)
}

fn enroll_in(province: &str, c: &Citizen) -> Command {
    let mut p = enroll_payload(c, "6c", "2025-01");
    p.province = province.into();
    Command::EnrollBeneficiary(p)
}

/// Every message of an outcome: the command's own and each line's.
fn messages(o: &Outcome) -> Vec<String> {
    o.message.iter().cloned().chain(o.lines.iter().filter_map(|l| l.message.clone())).collect()
}

#[test]
fn rejection_messages_name_nothing_the_sender_may_not_read() {
    let mut t = TestEngine::open();
    t.engine.set_roles(roles());
    let mut setup = vec![
        sent_by("ministry", "x-program", define_program_cmd(PROGRAM, PROGRAM_NAME, &categories())),
        sent_by("ministry", "x-level", set_level_cmd(None, "2024-07", "500000")),
    ];
    for province in [PROVINCE, OTHER_PROVINCE] {
        let mut fund = fund_payload("2025-01", "100000000");
        fund.province = province.into();
        setup.push(sent_by("ministry", &format!("x-fund-{province}"), Command::FundBudget(fund)));
    }
    // AN in Khánh Hòa (then re-determined), CUONG in TP Hồ Chí Minh.
    setup.push(sent_by("agency-056", "x-enroll-an", enroll_cmd(&AN, "6c", "2025-01")));
    let mut cuong = enroll_payload(&CUONG, "5a80", "2025-01");
    cuong.province = OTHER_PROVINCE.into();
    setup.push(sent_by("agency-079", "x-enroll-cuong", Command::EnrollBeneficiary(cuong)));
    setup.push(sent_by("agency-056", "x-batch-an", batch_in(PROVINCE, "X056", &[(AN.id, "750000")])));
    setup.push(sent_by("agency-056", "x-reassign-an", reassign_cmd(AN.id, AN_NEW_ID, "xác định lại")));
    for o in t.execute(&setup) {
        o.then_accepted();
    }

    let masked = |id: &str| ansinh::domain::citizen_id::mask(id);
    // What each agency must not learn about the other's beneficiaries.
    let hidden_from_056: Vec<String> = vec![
        format!("province {OTHER_PROVINCE}"),
        format!("\"{OTHER_PROVINCE}\""),
        "Hồ Chí Minh".into(),
        CUONG.account_no.into(),
        CUONG.full_name.into(),
        "5a80".into(),
    ];
    let hidden_from_079: Vec<String> = vec![
        AN_NEW_ID.into(),
        masked(AN_NEW_ID),
        format!("province {PROVINCE}"),
        format!("\"{PROVINCE}\""),
        "Khánh Hòa".into(),
        AN.account_no.into(),
        AN.full_name.into(),
        "X056".into(),
        "6c".into(),
    ];
    let cases: Vec<(&str, Command, &str, &Vec<String>)> = vec![
        ("agency-056", batch_in(PROVINCE, "Y056", &[(CUONG.id, "1000000")]), "province_mismatch", &hidden_from_056),
        ("agency-056", suspend_cmd(CUONG.id, "2025-02", "x"), "unauthorized", &hidden_from_056),
        ("agency-056", change_account_cmd(CUONG.id, account_input(&AN)), "unauthorized", &hidden_from_056),
        ("agency-056", enroll_cmd(&CUONG, "5a80", "2025-01"), "already_enrolled", &hidden_from_056),
        ("agency-079", batch_in(OTHER_PROVINCE, "Y079A", &[(AN.id, "750000")]), "citizen_id_reassigned", &hidden_from_079),
        ("agency-079", batch_in(OTHER_PROVINCE, "Y079B", &[(AN_NEW_ID, "750000")]), "province_mismatch", &hidden_from_079),
        ("agency-079", batch_in(OTHER_PROVINCE, "Y079C", &[(AN_NEW_ID, "1")]), "province_mismatch", &hidden_from_079),
        ("agency-079", enroll_in(OTHER_PROVINCE, &AN), "citizen_id_reassigned", &hidden_from_079),
        ("agency-079", enroll_in(OTHER_PROVINCE, &Citizen { id: AN_NEW_ID, ..AN }), "already_enrolled", &hidden_from_079),
        ("agency-079", change_account_cmd(AN.id, account_input(&CUONG)), "unauthorized", &hidden_from_079),
        ("agency-079", reassign_cmd(AN.id, "056185000998", "x"), "unauthorized", &hidden_from_079),
        ("agency-079", suspend_cmd(AN_NEW_ID, "2025-02", "x"), "unauthorized", &hidden_from_079),
        ("agency-079", reissue_cmd("X056-000001"), "unauthorized", &hidden_from_079),
        ("agency-079", write_off_cmd("X056-000001", "x"), "unauthorized", &hidden_from_079),
    ];
    for (i, (sender, command, code, hidden)) in cases.into_iter().enumerate() {
        let kind = command.type_name();
        // Echoing what the sender sent is fine (a number it typed, masked or not).
        let sent = serde_json::to_string(&command).expect("commands serialize");
        let echoed = |h: &str| sent.contains(h) || (h == masked(AN_NEW_ID) && sent.contains(AN_NEW_ID));
        let o = t.execute_one(sent_by(sender, &format!("leak-{i}"), command));
        let got = o.code.clone().or_else(|| o.lines.iter().find_map(|l| l.code.clone()));
        assert_eq!(got.as_deref(), Some(code), "{sender} {kind}: {o:#?}");
        for m in messages(&o) {
            for h in hidden.iter().filter(|h| !echoed(h)) {
                assert!(!m.contains(h.as_str()), "{sender} {kind} ({code}): the message names {h:?}: {m}");
            }
        }
    }
}
