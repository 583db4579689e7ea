//! Scenario tests: given events, when a command, then events or a rejection code.
//!
//! At least one scenario per rejection code in `ansinh::core::CODES` (enforced by
//! `every_rejection_code_has_a_scenario` at the bottom), and the happy paths of enrollment and
//! of the payout lifecycle. Everything runs on the pure core (`decide` + `evolve`) except the two
//! codes the engine shell owns (`command_id_reused`, `version_unsupported`), which run on a real
//! engine in a temporary directory.

mod common;

use ansinh::command::{Command, DefineOneOffProgram, EnrollBeneficiary, FundBudget, FundOneOff, OneOffLine, SubmitOneOffBatch, SubmitPayoutBatch};
use ansinh::core::{Limits, PayoutStatus, State, CODES};
use ansinh::domain::account::AccountInput;
use ansinh::domain::{Attestation, BirthDate, FailureReason};
use ansinh::event::{
    CategoryChanged, EventData, OneOffBatchSubmitted, OneOffCashListed, OneOffFunded, OneOffProgramDefined, PaymentAccountChanged, PayoutInstructed,
    PayoutKind, ProgramDefined, StandardLevelSet,
};
use ansinh::shard::{partition_of, Ownership};
use common::*;
use rust_decimal::Decimal;

// ---- local helpers ---------------------------------------------------------------------------

/// Rules, ample budget for the given months, AN (category 6c, coefficient 1.5), BINH (5a80,
/// 2.0) and DUNG (2, 1.5), all enrolled in the paying province from 2024-01.
fn paying(periods: &[&str]) -> Vec<EventData> {
    let mut events = rules();
    events.extend(funded(periods));
    events.push(enrolled(&AN, "6c", "2024-01"));
    events.push(enrolled(&BINH, "5a80", "2024-01"));
    events.push(enrolled(&DUNG, "2", "2024-01"));
    events
}

/// `paying(["2025-01"])` plus batch B1 that instructed AN's 750,000 for 2025-01 (payout B1-000001).
fn with_b1() -> (Vec<EventData>, PayoutInstructed) {
    let b1 = instruction("B1", 1, &AN, "2025-01", 750_000);
    let mut events = paying(&["2025-01"]);
    events.push(batch_submitted("B1", "2025-01", 1, 0));
    events.push(EventData::PayoutInstructed(b1.clone()));
    (events, b1)
}

fn and(mut events: Vec<EventData>, more: &[EventData]) -> Vec<EventData> {
    events.extend_from_slice(more);
    events
}

fn available(state: &State, period_raw: &str) -> Decimal {
    state.budget_available(PROVINCE, PROGRAM, period(period_raw))
}

fn an_enroll_with(edit: impl FnOnce(&mut EnrollBeneficiary)) -> Command {
    let mut payload = enroll_payload(&AN, "6c", "2025-01");
    edit(&mut payload);
    Command::EnrollBeneficiary(payload)
}

fn an_account_with(edit: impl FnOnce(&mut AccountInput)) -> Command {
    an_enroll_with(|p| edit(&mut p.account))
}

fn an_attestation_with(edit: impl FnOnce(&mut Attestation)) -> Command {
    an_enroll_with(|p| edit(p.attestation.as_mut().expect("the fixture enrollment carries an attestation")))
}

/// A second program, so one citizen can hold two enrollments.
fn second_program() -> EventData {
    let (events, _) = given(&[]).when(&define_program_cmd("ho-tro-tien-dien", "Hỗ trợ tiền điện", &[("ho-ngheo", "1.0")])).then_accepted();
    events.into_iter().next().expect("define_program decides one event")
}

// ---- enrollment ------------------------------------------------------------------------------

#[test]
fn enroll_records_the_beneficiary_with_checked_account_and_attestation() {
    given(&rules()).when(&enroll_cmd(&AN, "6c", "2025-01")).then_events(&[enrolled(&AN, "6c", "2025-01")]);
    given(&rules()).when(&enroll_cmd(&DUNG, "2", "2024-01")).then_events(&[enrolled(&DUNG, "2", "2024-01")]);
}

#[test]
fn enroll_trims_the_names_it_records() {
    let command = an_enroll_with(|p| {
        p.full_name = "  Nguyễn Thị An ".into();
        p.account.holder_name = " NGUYEN THI AN  ".into();
    });
    given(&rules()).when(&command).then_events(&[enrolled(&AN, "6c", "2025-01")]);
}

#[test]
fn citizen_id_must_be_twelve_digits() {
    for raw in ["05618500012", "0561850001234", "05618500012a", "056 185000123", ""] {
        given(&rules()).when(&an_enroll_with(|p| p.citizen_id = raw.into())).then_rejected("citizen_id_format");
    }
}

#[test]
fn citizen_id_province_code_must_be_in_the_table() {
    // 003 is not a province code (possibly a country code: a manual check, not silent acceptance).
    given(&rules()).when(&an_enroll_with(|p| p.citizen_id = "003185000123".into())).then_rejected("citizen_id_unknown_province");
}

#[test]
fn citizen_id_birth_year_must_match_the_date_of_birth() {
    // 1985 vs 1986; and the same two digits in the wrong century (digit 3 = 20xx, not 19xx).
    given(&rules()).when(&an_enroll_with(|p| p.date_of_birth = "1986-04-12".into())).then_rejected("citizen_id_birth_year_mismatch");
    given(&rules()).when(&an_enroll_with(|p| p.citizen_id = "056385000123".into())).then_rejected("citizen_id_birth_year_mismatch");
}

#[test]
fn citizen_id_sex_digit_must_match_the_declared_sex() {
    given(&rules()).when(&an_enroll_with(|p| p.sex = ansinh::domain::Sex::Male)).then_rejected("citizen_id_sex_mismatch");
}

#[test]
fn date_of_birth_must_be_a_real_date() {
    for dob in ["1985-02-29", "1985-04-31", "12/04/1985", "1985-4-12"] {
        given(&rules()).when(&an_enroll_with(|p| p.date_of_birth = dob.into())).then_rejected("date_of_birth_invalid");
    }
}

#[test]
fn full_name_must_be_present_and_printable() {
    for name in ["", "   ", "Nguyễn\u{7}Thị An", "A".repeat(101).as_str()] {
        given(&rules()).when(&an_enroll_with(|p| p.full_name = name.into())).then_rejected("full_name_invalid");
    }
}

/// Issue 16: text that shows nothing (a zero-width space, a bidi override, a Hangul filler)
/// passed as a name, and a real name could hide an override that reorders what people read.
/// Every name field: refused, naming the character, never cleaned.
#[test]
fn every_name_must_show_a_letter_and_hide_nothing() {
    let names = [
        "\u{200b}",
        "\u{202e}",
        "\u{feff}",
        "\u{2060}\u{2063}",
        "\u{3164}",
        "\u{ad}",
        "\u{e0041}\u{e0042}",
        "12345",
        "\u{301}",
        "Nguyễn\u{202e}Thị An",
        "Trần\u{200d}Văn Bình",
        "\u{feff}Lê Văn Cường",
    ];
    for raw in names {
        let hidden = raw.chars().any(ansinh::domain::text::is_invisible_or_control);
        let says = |r: ansinh::core::Rejection| assert!(!hidden || r.message.contains("U+"), "{raw:?}: {}", r.message);
        says(given(&rules()).when(&an_enroll_with(|p| p.full_name = raw.into())).then_rejected("full_name_invalid"));
        says(given(&rules()).when(&an_account_with(|a| a.holder_name = raw.into())).then_rejected("holder_name_invalid"));
        let account = AccountInput { holder_name: raw.into(), ..bidv_account_input(&AN) };
        says(given(&paying(&[])).when(&change_account_cmd(AN.id, account)).then_rejected("holder_name_invalid"));
        says(given(&[]).when(&define_program_cmd("p2", raw, &[("6c", "1.5")])).then_rejected("program_name_invalid"));
    }
}

#[test]
fn identity_must_come_with_an_attestation() {
    given(&rules()).when(&an_enroll_with(|p| p.attestation = None)).then_rejected("attestation_missing");
}

#[test]
fn attestation_must_be_vneid_level_2() {
    given(&rules()).when(&an_attestation_with(|a| a.level = 1)).then_rejected("attestation_insufficient");
    given(&rules()).when(&an_attestation_with(|a| a.provider = "CCCD-chip".into())).then_rejected("attestation_insufficient");
}

#[test]
fn attestation_needs_a_reference_and_a_time() {
    given(&rules()).when(&an_attestation_with(|a| a.reference = " ".into())).then_rejected("attestation_invalid");
    given(&rules()).when(&an_attestation_with(|a| a.verified_at = "2025-01-10".into())).then_rejected("attestation_invalid");
}

/// Issue 16: a time of the right shape that names no instant (no such day, hour, offset).
#[test]
fn attestation_time_must_be_a_real_instant() {
    for verified_at in [
        "2025-02-30T09:30:00+07:00",
        "2025-04-31T09:30:00Z",
        "2024-13-01T00:00:00Z",
        "2025-01-10T24:00:00Z",
        "2016-12-31T23:59:60Z",
        "2025-01-10T09:30:00+99:99",
        "2025-01-10T09:30:00+24:00",
        "2025-01-10T09:30:00+14:30",
    ] {
        let r = given(&rules()).when(&an_attestation_with(|a| a.verified_at = verified_at.into())).then_rejected("attestation_invalid");
        assert!(r.message.contains("verified_at"), "{verified_at}: {}", r.message);
    }
}

/// A verification cannot come after the command that cites it; compared as instants
/// (ISSUED_AT is 2025-01-20T08:00:00Z = 15:00 in Hà Nội).
#[test]
fn attestation_verified_after_the_command_is_refused() {
    for verified_at in ["2025-01-20T08:00:01Z", "2025-01-20T15:00:00.5+07:00", "2025-01-20T07:30:00-01:00", "2026-01-01T00:00:00Z"] {
        given(&rules()).when(&an_attestation_with(|a| a.verified_at = verified_at.into())).then_rejected("attestation_after_command");
    }
    for verified_at in ["2025-01-20T08:00:00Z", "2025-01-20T15:00:00+07:00", "2025-01-20T14:59:59+07:00", "2025-01-20T20:00:00+13:00"] {
        given(&rules()).when(&an_attestation_with(|a| a.verified_at = verified_at.into())).then_accepted();
    }
}

/// A date of birth after the day the command was issued: a typo, or a century digit that puts
/// birth in the 24th century. The date is compared with issued_at's own calendar date.
#[test]
fn date_of_birth_in_the_future_is_refused() {
    // Female, consistent numbers: G=3 for 20xx, G=9 for 23xx.
    for (id, dob) in [("056325000123", "2025-01-21"), ("056326000123", "2026-01-01"), ("056998000123", "2398-04-12")] {
        let command = an_enroll_with(|p| {
            p.citizen_id = id.into();
            p.date_of_birth = dob.into();
            p.effective_from = dob[..7].into();
        });
        let r = given(&rules()).when(&command).then_rejected("date_of_birth_in_future");
        assert!(r.message.contains(dob), "{}", r.message);
    }
    let born_today = an_enroll_with(|p| {
        p.citizen_id = "056325000123".into();
        p.date_of_birth = "2025-01-20".into();
        p.effective_from = "2025-01".into();
    });
    given(&rules()).when(&born_today).then_accepted();
    // The same instant written in UTC-05:00 is still the 19th there: the 20th is in the future.
    given(&rules()).when_at(&born_today, "2025-01-19T22:00:00-05:00").then_rejected("date_of_birth_in_future");
}

#[test]
fn enrollment_province_must_be_in_the_table() {
    given(&rules()).when(&an_enroll_with(|p| p.province = "003".into())).then_rejected("province_unknown");
}

#[test]
fn enrollment_cannot_start_before_birth() {
    given(&rules()).when(&enroll_cmd(&DUNG, "2", "2003-10")).then_rejected("period_invalid");
    given(&rules()).when(&an_enroll_with(|p| p.effective_from = "2025-1".into())).then_rejected("period_invalid");
}

#[test]
fn enrollment_needs_a_defined_program_and_one_of_its_categories() {
    given(&[]).when(&enroll_cmd(&AN, "6c", "2025-01")).then_rejected("program_unknown");
    given(&rules()).when(&enroll_cmd(&AN, "9z", "2025-01")).then_rejected("category_unknown");
}

#[test]
fn one_enrollment_per_citizen_per_program() {
    given(&and(rules(), &[enrolled(&AN, "6c", "2024-01")])).when(&enroll_cmd(&AN, "5a", "2025-01")).then_rejected("already_enrolled");
}

#[test]
fn a_second_program_enrollment_must_agree_on_identity() {
    let state = given(&and(rules(), &[second_program(), enrolled(&AN, "6c", "2024-01")]));
    let second = |dob: &str| an_enroll_with(|p| (p.program_id, p.category, p.date_of_birth) = ("ho-tro-tien-dien".into(), "ho-ngheo".into(), dob.into()));
    // Same year (so the ID check passes), different day: not the same person's record.
    state.when(&second("1985-05-01")).then_rejected("identity_mismatch");
    let (events, _) = state.when(&second(AN.date_of_birth)).then_accepted();
    assert!(matches!(&events[..], [EventData::BeneficiaryEnrolled(e)] if e.program_id == "ho-tro-tien-dien"), "{events:#?}");
}

// ---- payment accounts -------------------------------------------------------------------------

#[test]
fn account_bank_must_be_in_the_bin_table() {
    given(&rules()).when(&an_account_with(|a| a.bin = "999999".into())).then_rejected("bank_unknown");
}

#[test]
fn account_number_is_6_to_19_digits_or_capitals() {
    for number in ["12345", "12345678901234567890", "0561-000-123", "abc123456"] {
        given(&rules()).when(&an_account_with(|a| a.account_no = number.into())).then_rejected("account_number_invalid");
    }
}

#[test]
fn account_holder_name_must_be_present() {
    given(&rules()).when(&an_account_with(|a| a.holder_name = "  ".into())).then_rejected("holder_name_invalid");
}

#[test]
fn changing_the_account_records_the_new_one() {
    given(&paying(&[]))
        .when(&change_account_cmd(AN.id, bidv_account_input(&AN)))
        .then_events(&[EventData::PaymentAccountChanged(PaymentAccountChanged { citizen_id: cid(AN.id), account: bidv_account(&AN) })]);
}

#[test]
fn changing_to_the_account_on_record_is_refused() {
    given(&paying(&[])).when(&change_account_cmd(AN.id, account_input(&AN))).then_rejected("account_unchanged");
}

#[test]
fn changing_the_account_of_someone_not_enrolled_is_refused() {
    given(&paying(&[])).when(&change_account_cmd(CUONG.id, account_input(&CUONG))).then_rejected("not_enrolled");
}

// ---- programs, standard levels, budgets -----------------------------------------------------

#[test]
fn define_program_records_categories_with_normalized_coefficients() {
    let (events, _) = given(&[]).when(&define_program_cmd("ho-tro-khac", "  Hỗ trợ khác ", &[("a", "1.50"), ("b", "2")])).then_accepted();
    let [EventData::ProgramDefined(ProgramDefined { program_id, name, categories, .. })] = &events[..] else { panic!("{events:#?}") };
    assert_eq!((program_id.as_str(), name.as_str()), ("ho-tro-khac", "Hỗ trợ khác"));
    let coefficients: Vec<String> = categories.values().map(|c| c.as_decimal().to_string()).collect();
    assert_eq!(coefficients, ["1.5", "2"]);
}

#[test]
fn program_id_is_a_safe_identifier() {
    for id in ["", "tro cap", "tro/cap", "p".repeat(65).as_str()] {
        given(&[]).when(&define_program_cmd(id, PROGRAM_NAME, &[("6c", "1.5")])).then_rejected("program_id_invalid");
    }
}

#[test]
fn program_name_must_be_present() {
    given(&[]).when(&define_program_cmd(PROGRAM, " ", &[("6c", "1.5")])).then_rejected("program_name_invalid");
}

#[test]
fn a_program_needs_categories() {
    given(&[]).when(&define_program_cmd(PROGRAM, PROGRAM_NAME, &[])).then_rejected("categories_invalid");
    given(&[]).when(&define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6 c", "1.5")])).then_rejected("categories_invalid");
    let too_many: Vec<(String, &str)> = (0..65).map(|i| (format!("c{i}"), "1")).collect();
    let too_many: Vec<(&str, &str)> = too_many.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    given(&[]).when(&define_program_cmd(PROGRAM, PROGRAM_NAME, &too_many)).then_rejected("categories_invalid");
}

#[test]
fn coefficients_are_decimals_in_0_to_10_with_2_decimals() {
    for raw in ["0", "1.555", "10.5", "-1", "1,5", "abc", ".5", "1.", "1.5.0", "+1.5", "1e0", " 1.5", "1.500", "\u{661}.\u{665}"] {
        given(&[]).when(&define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", raw)])).then_rejected("coefficient_invalid");
    }
}

#[test]
fn a_program_is_defined_once() {
    given(&rules()).when(&define_program_cmd(PROGRAM, "again", &[("6c", "1.5")])).then_rejected("program_exists");
}

#[test]
fn a_province_may_set_its_own_standard_level() {
    given(&rules()).when(&set_level_cmd(Some(PROVINCE), "2025-01", "600000")).then_events(&[EventData::StandardLevelSet(StandardLevelSet {
        program_id: PROGRAM.into(),
        province: Some(PROVINCE.into()),
        effective_from: period("2025-01"),
        amount: vnd(600_000),
        legal_basis: String::new(),
    })]);
    given(&rules()).when(&set_level_cmd(Some("003"), "2025-01", "600000")).then_rejected("province_unknown");
}

#[test]
fn funding_records_the_allocation() {
    given(&rules()).when(&fund_cmd("2025-01", "750000000")).then_events(&[budget_funded("2025-01", 750_000_000)]);
}

#[test]
fn funding_needs_a_known_program_province_and_period() {
    let mut payload = fund_payload("2025-01", "1000000");
    payload.program_id = "khong-co".into();
    given(&rules()).when(&Command::FundBudget(payload)).then_rejected("program_unknown");
    let mut payload = fund_payload("2025-01", "1000000");
    payload.province = "003".into();
    given(&rules()).when(&Command::FundBudget(payload)).then_rejected("province_unknown");
    for raw in ["2025-13", "2025-00", "1899-12", "2025/01", "25-01"] {
        given(&rules()).when(&fund_cmd(raw, "1000000")).then_rejected("period_invalid");
    }
}

#[test]
fn reference_texts_are_bounded() {
    let mut payload = fund_payload("2025-01", "1000000");
    payload.reference = "x".repeat(257);
    given(&rules()).when(&Command::FundBudget(payload)).then_rejected("reference_invalid");
    given(&with_b1().0).when(&write_off_cmd("B1-000001", &"x".repeat(257))).then_rejected("reference_invalid");
}

// ---- money -----------------------------------------------------------------------------------

#[test]
fn amount_must_be_a_plain_string_of_digits() {
    for raw in ["", "abc", "1e6", "+750000", "750000đ", "VND750000"] {
        given(&rules()).when(&fund_cmd("2025-01", raw)).then_rejected("amount_invalid");
    }
}

/// `500.000` is five hundred thousand in Vietnam: a budget of 500 đồng was funded from it.
#[test]
fn an_amount_with_a_separator_or_space_is_refused_whatever_it_meant() {
    for raw in ["500.000", "500,000", "500 000", "500\u{a0}000", "500\u{2009}000", "500'000", "500_000", "500000.00", "750000.5", " 500000"] {
        let state = given(&rules());
        let r = state.when(&fund_cmd("2025-01", raw)).then_rejected("amount_separator");
        assert!(r.message.contains("without separators"), "{raw}: {}", r.message);
    }
}

#[test]
fn amount_must_be_positive() {
    for raw in ["0", "000", "-750000"] {
        given(&rules()).when(&fund_cmd("2025-01", raw)).then_rejected("amount_not_positive");
    }
}

#[test]
fn amount_is_bounded() {
    given(&rules()).when(&fund_cmd("2025-01", "1000000000000001")).then_rejected("amount_too_large");
}

#[test]
fn a_batch_line_amount_is_checked_like_any_amount() {
    given(&paying(&["2025-01"])).when(&batch_cmd("B1", "2025-01", &[(AN.id, "750.000")])).then_line_rejected("amount_separator", 1);
    given(&paying(&["2025-01"])).when(&batch_cmd("B1", "2025-01", &[(AN.id, "750000.00")])).then_line_rejected("amount_separator", 1);
}

// ---- batches: line by line -------------------------------------------------------------------

#[test]
fn a_batch_instructs_its_good_lines_and_rejects_its_bad_ones() {
    let state = given(&paying(&["2025-01"]));
    let state = state
        .when(&batch_cmd(
            "B1",
            "2025-01",
            &[(AN.id, "750000"), ("05618500012", "750000"), (BINH.id, "1000000"), (CUONG.id, "750000"), (AN.id, "750000"), (DUNG.id, "540000")],
        ))
        .then_events(&[
            batch_submitted("B1", "2025-01", 2, 4),
            instructed("B1", 1, &AN, "2025-01", 750_000),
            line_rejected("B1", 2, "05618500012", "750000", "citizen_id_format"),
            instructed("B1", 3, &BINH, "2025-01", 1_000_000),
            line_rejected("B1", 4, CUONG.id, "750000", "not_enrolled"),
            line_rejected("B1", 5, AN.id, "750000", "duplicate_line"),
            line_rejected("B1", 6, DUNG.id, "540000", "amount_mismatch"),
        ]);
    assert_eq!(available(&state, "2025-01"), Decimal::from(100_000_000 - 1_750_000));
    assert_eq!(state.payout("B1-000003").unwrap().status(), PayoutStatus::Instructed);
}

#[test]
fn a_batch_with_only_bad_lines_is_still_recorded() {
    let state = given(&paying(&["2025-01"]))
        .when(&batch_cmd("B1", "2025-01", &[(CUONG.id, "750000")]))
        .then_events(&[batch_submitted("B1", "2025-01", 0, 1), line_rejected("B1", 1, CUONG.id, "750000", "not_enrolled")]);
    state.when(&batch_cmd("B1", "2025-01", &[(AN.id, "750000")])).then_rejected("batch_exists");
}

#[test]
fn batch_id_is_a_safe_identifier() {
    given(&paying(&["2025-01"])).when(&batch_cmd("B 1", "2025-01", &[(AN.id, "750000")])).then_rejected("batch_id_invalid");
}

#[test]
fn a_batch_id_is_used_once() {
    given(&with_b1().0).when(&batch_cmd("B1", "2025-02", &[(BINH.id, "1000000")])).then_rejected("batch_exists");
}

#[test]
fn a_batch_has_lines() {
    given(&paying(&["2025-01"])).when(&batch_cmd("B1", "2025-01", &[])).then_rejected("batch_empty");
}

#[test]
fn a_batch_has_at_most_batch_lines_max_lines() {
    let limits = Limits { batch_lines_max: 2, ..Limits::default() };
    let state = given_with_limits(limits, &paying(&["2025-01"]));
    state.when(&batch_cmd("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "1000000"), (DUNG.id, "750000")])).then_rejected("batch_too_large");
    state.when(&batch_cmd("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "1000000")])).then_accepted();
}

#[test]
fn a_batch_needs_a_known_province_period_and_program() {
    let mut payload = batch_payload("B1", "2025-01", &[(AN.id, "750000")]);
    payload.province = "003".into();
    given(&paying(&["2025-01"])).when(&Command::SubmitPayoutBatch(payload)).then_rejected("province_unknown");
    given(&paying(&["2025-01"])).when(&batch_cmd("B1", "2025-1", &[(AN.id, "750000")])).then_rejected("period_invalid");
    let mut payload = batch_payload("B1", "2025-01", &[(AN.id, "750000")]);
    payload.program_id = "khong-co".into();
    given(&paying(&["2025-01"])).when(&Command::SubmitPayoutBatch(payload)).then_rejected("program_unknown");
}

#[test]
fn a_batch_needs_a_standard_level_in_force() {
    // The national level starts in 2021-07.
    given(&paying(&["2021-06"])).when(&batch_cmd("B1", "2021-06", &[(AN.id, "540000")])).then_rejected("standard_level_missing");
}

#[test]
fn a_line_for_someone_not_enrolled_is_rejected() {
    given(&paying(&["2025-01"])).when(&batch_cmd("B1", "2025-01", &[(AN.id, "750000"), (CUONG.id, "750000")])).then_line_rejected("not_enrolled", 2);
}

#[test]
fn a_line_with_a_bad_citizen_id_is_rejected_with_the_id_code() {
    let state = given(&paying(&["2025-01"]));
    state.when(&batch_cmd("B1", "2025-01", &[("003185000123", "750000")])).then_line_rejected("citizen_id_unknown_province", 1);
}

#[test]
fn a_line_for_another_province_is_rejected() {
    let events = and(rules(), &[budget_funded("2025-01", 100_000_000), enrolled_in(&BINH, OTHER_PROVINCE, "5a80", "2024-01")]);
    given(&events).when(&batch_cmd("B1", "2025-01", &[(BINH.id, "1000000")])).then_line_rejected("province_mismatch", 1);
}

#[test]
fn a_line_before_the_first_month_of_entitlement_is_rejected() {
    let events = and(rules(), &[budget_funded("2025-02", 100_000_000), enrolled(&AN, "6c", "2025-03")]);
    given(&events).when(&batch_cmd("B1", "2025-02", &[(AN.id, "750000")])).then_line_rejected("not_yet_eligible", 1);
}

#[test]
fn a_citizen_appears_once_in_a_batch() {
    let state = given(&paying(&["2025-01"]));
    state.when(&batch_cmd("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "1000000"), (AN.id, "750000")])).then_line_rejected("duplicate_line", 3);
}

#[test]
fn one_regular_payout_per_citizen_program_and_period_across_batches() {
    let (events, _) = with_b1();
    let state = given(&events);
    state.when(&batch_cmd("B2", "2025-01", &[(BINH.id, "1000000"), (AN.id, "750000")])).then_events(&[
        batch_submitted("B2", "2025-01", 1, 1),
        instructed("B2", 1, &BINH, "2025-01", 1_000_000),
        line_rejected("B2", 2, AN.id, "750000", "duplicate_payout"),
    ]);
    // Even after the regular payout failed: the way to pay again is a reissue, not a new line.
    let state = given(&and(events, &[failed(&instruction("B1", 1, &AN, "2025-01", 750_000), FailureReason::Other, "")]));
    state.when(&batch_cmd("B2", "2025-01", &[(AN.id, "750000")])).then_line_rejected("duplicate_payout", 1);
}

// ---- entitlement: category x standard level in force ----------------------------------------

#[test]
fn amount_follows_the_standard_level_in_force_for_the_period() {
    // Category 6c, coefficient 1.5: 1.5 x 360,000 until 2024-06, 1.5 x 500,000 from 2024-07.
    let state = given(&paying(&["2024-06", "2024-07"]));
    state
        .when(&batch_cmd("B1", "2024-06", &[(AN.id, "540000")]))
        .then_events(&[batch_submitted("B1", "2024-06", 1, 0), instructed("B1", 1, &AN, "2024-06", 540_000)]);
    state
        .when(&batch_cmd("B2", "2024-07", &[(AN.id, "750000")]))
        .then_events(&[batch_submitted("B2", "2024-07", 1, 0), instructed("B2", 1, &AN, "2024-07", 750_000)]);
    state.when(&batch_cmd("B1", "2024-06", &[(AN.id, "750000")])).then_line_rejected("amount_mismatch", 1);
    state.when(&batch_cmd("B2", "2024-07", &[(AN.id, "540000")])).then_line_rejected("amount_mismatch", 1);
}

#[test]
fn a_province_level_above_the_national_one_raises_the_entitlement() {
    let province_level = given(&rules()).when(&set_level_cmd(Some(PROVINCE), "2025-01", "600000")).then_accepted().0;
    let state = given(&[paying(&["2024-12", "2025-01"]), province_level].concat());
    state.when(&batch_cmd("B1", "2024-12", &[(AN.id, "750000")])).then_accepted();
    state
        .when(&batch_cmd("B2", "2025-01", &[(AN.id, "900000")]))
        .then_events(&[batch_submitted("B2", "2025-01", 1, 0), instructed("B2", 1, &AN, "2025-01", 900_000)]);
}

#[test]
fn a_category_change_applies_from_its_month() {
    let state = given(&paying(&["2025-03", "2025-04"])).when(&change_category_cmd(AN.id, "6a", "2025-04")).then_events(&[EventData::CategoryChanged(
        CategoryChanged { citizen_id: cid(AN.id), program_id: PROGRAM.into(), category: "6a".into(), effective_from: period("2025-04") },
    )]);
    // 6c (1.5) for March, 6a (2.0) from April.
    state
        .when(&batch_cmd("B1", "2025-03", &[(AN.id, "750000")]))
        .then_events(&[batch_submitted("B1", "2025-03", 1, 0), instructed("B1", 1, &AN, "2025-03", 750_000)]);
    state
        .when(&batch_cmd("B2", "2025-04", &[(AN.id, "1000000")]))
        .then_events(&[batch_submitted("B2", "2025-04", 1, 0), instructed("B2", 1, &AN, "2025-04", 1_000_000)]);
    state.when(&batch_cmd("B1", "2025-03", &[(AN.id, "1000000")])).then_line_rejected("amount_mismatch", 1);
    state.when(&batch_cmd("B2", "2025-04", &[(AN.id, "750000")])).then_line_rejected("amount_mismatch", 1);
}

#[test]
fn a_category_change_needs_a_known_category_and_an_enrollment() {
    let state = given(&paying(&[]));
    state.when(&change_category_cmd(AN.id, "9z", "2025-04")).then_rejected("category_unknown");
    state.when(&change_category_cmd(CUONG.id, "6a", "2025-04")).then_rejected("not_enrolled");
}

// ---- suspension, resumption, termination ----------------------------------------------------

#[test]
fn a_suspension_stops_payouts_from_its_month_on() {
    let state = given(&paying(&["2025-02", "2025-03"])).when(&suspend_cmd(AN.id, "2025-03", "đang xác minh")).then_events(&[suspended(
        AN.id,
        "2025-03",
        "đang xác minh",
    )]);
    state
        .when(&batch_cmd("B1", "2025-02", &[(AN.id, "750000")]))
        .then_events(&[batch_submitted("B1", "2025-02", 1, 0), instructed("B1", 1, &AN, "2025-02", 750_000)]);
    state
        .when(&batch_cmd("B2", "2025-03", &[(AN.id, "750000")]))
        .then_events(&[batch_submitted("B2", "2025-03", 0, 1), line_rejected("B2", 1, AN.id, "750000", "beneficiary_suspended")]);
}

#[test]
fn a_line_for_a_suspended_month_is_rejected() {
    let state = given(&and(paying(&["2025-03"]), &[suspended(AN.id, "2025-03", "")]));
    state.when(&batch_cmd("B1", "2025-03", &[(BINH.id, "1000000"), (AN.id, "750000")])).then_line_rejected("beneficiary_suspended", 2);
}

#[test]
fn a_resumption_restarts_payouts_from_its_month_on() {
    let state = given(&and(paying(&["2025-04", "2025-05"]), &[suspended(AN.id, "2025-03", "")]))
        .when(&resume_cmd(AN.id, "2025-05", "đã xác minh"))
        .then_events(&[resumed(AN.id, "2025-05", "đã xác minh")]);
    state.when(&batch_cmd("B1", "2025-04", &[(AN.id, "750000")])).then_line_rejected("beneficiary_suspended", 1);
    state
        .when(&batch_cmd("B2", "2025-05", &[(AN.id, "750000")]))
        .then_events(&[batch_submitted("B2", "2025-05", 1, 0), instructed("B2", 1, &AN, "2025-05", 750_000)]);
}

#[test]
fn a_termination_stops_payouts_from_its_month_on_but_not_before() {
    let state = given(&paying(&["2025-07", "2025-08", "2025-09"])).when(&terminate_cmd(AN.id, "2025-08", "đã mất")).then_events(&[terminated(
        AN.id,
        "2025-08",
        "đã mất",
    )]);
    state
        .when(&batch_cmd("B1", "2025-07", &[(AN.id, "750000")]))
        .then_events(&[batch_submitted("B1", "2025-07", 1, 0), instructed("B1", 1, &AN, "2025-07", 750_000)]);
    state.when(&batch_cmd("B2", "2025-08", &[(AN.id, "750000")])).then_line_rejected("beneficiary_terminated", 1);
    state.when(&batch_cmd("B3", "2025-09", &[(AN.id, "750000")])).then_line_rejected("beneficiary_terminated", 1);
}

#[test]
fn a_terminated_enrollment_takes_no_further_changes() {
    let state = given(&and(paying(&[]), &[terminated(AN.id, "2025-08", "")]));
    state.when(&suspend_cmd(AN.id, "2025-09", "")).then_rejected("beneficiary_terminated");
    state.when(&change_category_cmd(AN.id, "6a", "2025-09")).then_rejected("beneficiary_terminated");
}

#[test]
fn resume_needs_a_suspension() {
    given(&paying(&[])).when(&resume_cmd(AN.id, "2025-03", "")).then_rejected("not_suspended");
}

#[test]
fn suspend_of_a_suspended_enrollment_is_refused() {
    given(&and(paying(&[]), &[suspended(AN.id, "2025-03", "")])).when(&suspend_cmd(AN.id, "2025-04", "")).then_rejected("already_suspended");
}

#[test]
fn changes_cannot_be_dated_before_the_start_or_an_earlier_change() {
    // Enrolled from 2024-01: nothing may take effect before it.
    given(&paying(&[])).when(&suspend_cmd(AN.id, "2023-12", "")).then_rejected("effective_out_of_order");
    // Suspended from 2025-06: a category change for 2025-03 would rewrite what came after it.
    let state = given(&and(paying(&[]), &[suspended(AN.id, "2025-06", "")]));
    state.when(&change_category_cmd(AN.id, "6a", "2025-03")).then_rejected("effective_out_of_order");
    state.when(&resume_cmd(AN.id, "2025-05", "")).then_rejected("effective_out_of_order");
}

#[test]
fn status_changes_need_an_enrollment() {
    given(&paying(&[])).when(&suspend_cmd(CUONG.id, "2025-03", "")).then_rejected("not_enrolled");
}

// ---- citizen-ID reassignment -----------------------------------------------------------------

#[test]
fn a_reassigned_number_is_refused_and_payouts_follow_the_new_one() {
    let (events, b1) = with_b1();
    let state = given(&and(events, &funded(&["2025-02"]))).when(&reassign_cmd(AN.id, AN_NEW_ID, "xác định lại số định danh")).then_events(&[reassigned(
        AN.id,
        AN_NEW_ID,
        "xác định lại số định danh",
    )]);
    let on_new = |p: PayoutInstructed| PayoutInstructed { citizen_id: cid(AN_NEW_ID), ..p };

    // The old number is refused everywhere, naming the reason.
    state.when(&batch_cmd("B2", "2025-02", &[(AN.id, "750000")])).then_line_rejected("citizen_id_reassigned", 1);
    state.when(&change_account_cmd(AN.id, bidv_account_input(&AN))).then_rejected("citizen_id_reassigned");
    state.when(&enroll_cmd(&AN, "6c", "2025-01")).then_rejected("citizen_id_reassigned");
    // The new number carries the enrollment, its account and its history.
    state
        .when(&batch_cmd("B2", "2025-02", &[(AN_NEW_ID, "750000")]))
        .then_events(&[batch_submitted("B2", "2025-02", 1, 0), EventData::PayoutInstructed(on_new(instruction("B2", 1, &AN, "2025-02", 750_000)))]);
    state.when(&batch_cmd("B2", "2025-01", &[(AN_NEW_ID, "750000")])).then_line_rejected("duplicate_payout", 1);
    state.when(&settlements_cmd(VCB, vec![settled_item("B1-000001", "FT001")])).then_events(&[settled(&on_new(b1), "FT001")]);
}

#[test]
fn a_new_number_must_be_free() {
    let state = given(&and(paying(&[]), &[reassigned(BINH.id, "058050000778", "")]));
    state.when(&reassign_cmd(AN.id, DUNG.id, "")).then_rejected("citizen_id_in_use");
    state.when(&reassign_cmd(AN.id, AN.id, "")).then_rejected("citizen_id_in_use");
    // A number that was itself re-determined is not reused either.
    state.when(&reassign_cmd(AN.id, BINH.id, "")).then_rejected("citizen_id_in_use");
}

#[test]
fn reassignment_needs_an_enrollment_and_an_attestation() {
    let state = given(&paying(&[]));
    state.when(&reassign_cmd(CUONG.id, "001040000002", "")).then_rejected("not_enrolled");
    let Command::ReassignCitizenId(mut payload) = reassign_cmd(AN.id, AN_NEW_ID, "") else { unreachable!() };
    payload.attestation = None;
    state.when(&Command::ReassignCitizenId(payload)).then_rejected("attestation_missing");
}

fn reassign_correcting(old: &str, new: &str, dob: Option<&str>) -> Command {
    let mut payload = reassign_payload(old, new, "xác định lại năm sinh");
    payload.date_of_birth = dob.map(String::from);
    Command::ReassignCitizenId(payload)
}

/// Issue 16: a woman born 1978 could be given a male number and then never match an
/// enrollment again. The new number must agree with the recorded sex and date of birth.
#[test]
fn a_new_number_must_agree_with_the_recorded_sex_and_birth_year() {
    let state = given(&paying(&[]));
    // AN: female, born 1985 (digit 1). BINH: male, born 1950 (digit 0).
    for (old, new, code) in [
        (AN.id, "056085000999", "citizen_id_sex_mismatch"),
        (AN.id, "056385000999", "citizen_id_birth_year_mismatch"),
        (AN.id, "056186000999", "citizen_id_birth_year_mismatch"),
        (BINH.id, "058150000999", "citizen_id_sex_mismatch"),
        (BINH.id, "058051000999", "citizen_id_birth_year_mismatch"),
        (BINH.id, "058450000999", "citizen_id_birth_year_mismatch"),
    ] {
        let r = state.when(&reassign_cmd(old, new, "")).then_rejected(code);
        assert!(r.message.contains("new number"), "{}", r.message);
        assert!(!r.message.contains("1985") && !r.message.contains("1950"), "the recorded year is not echoed: {}", r.message);
    }
    state.when(&reassign_cmd(AN.id, AN_NEW_ID, "")).then_accepted();
}

/// A re-determination often corrects the birth year: the command may carry the corrected date
/// of birth; the new number must agree with it, and the person's record takes it.
#[test]
fn a_reassignment_may_correct_the_date_of_birth_and_the_record_takes_it() {
    let state = given(&and(paying(&[]), &[second_program()]));
    let corrected = ansinh::domain::BirthDate::parse("1986-04-12").expect("a date");
    let EventData::CitizenIdReassigned(expected) = reassigned(AN.id, "056186000999", "xác định lại năm sinh") else { unreachable!() };
    let after = state
        .when(&reassign_correcting(AN.id, "056186000999", Some("1986-04-12")))
        .then_events(&[EventData::CitizenIdReassigned(ansinh::event::CitizenIdReassigned { date_of_birth: Some(corrected), ..expected })]);
    assert_eq!(after.person(&cid("056186000999")).expect("the new number is in use").1.date_of_birth, corrected);
    // A later enrollment of the same person under the new number agrees with the corrected date.
    let mut second = enroll_payload(&AN, "ho-ngheo", "2025-01");
    (second.program_id, second.citizen_id, second.date_of_birth) = ("ho-tro-tien-dien".into(), "056186000999".into(), "1986-04-12".into());
    after.when(&Command::EnrollBeneficiary(second.clone())).then_accepted();
    second.date_of_birth = "1986-05-01".into();
    after.when(&Command::EnrollBeneficiary(second)).then_rejected("identity_mismatch");

    // The corrected date is checked like any date of birth, and the number must agree with it.
    state.when(&reassign_correcting(AN.id, "056186000999", Some("1987-04-12"))).then_rejected("citizen_id_birth_year_mismatch");
    state.when(&reassign_correcting(AN.id, AN_NEW_ID, Some("1986-04-12"))).then_rejected("citizen_id_birth_year_mismatch");
    state.when(&reassign_correcting(AN.id, "056186000999", Some("1986-02-30"))).then_rejected("date_of_birth_invalid");
    state.when(&reassign_correcting(AN.id, "056186000999", Some("12/04/1986"))).then_rejected("date_of_birth_invalid");
    state.when(&reassign_correcting(AN.id, "056325000999", Some("2025-01-21"))).then_rejected("date_of_birth_in_future");
    state.when(&reassign_correcting(AN.id, "056998000999", Some("2398-01-01"))).then_rejected("date_of_birth_in_future");
    // Without a correction the recorded date stands, and the event does not carry the member.
    let (events, _) = state.when(&reassign_correcting(AN.id, AN_NEW_ID, None)).then_accepted();
    let EventData::CitizenIdReassigned(data) = &events[0] else { panic!("a reassignment: {:?}", events[0]) };
    let json = serde_json::to_string(data).expect("serializes");
    assert!(!json.contains("date_of_birth"), "{json}");
}

/// No enrollment begins before birth (at enrollment: `period_invalid`). A corrected date of
/// birth after the first month of an enrollment contradicts it: refused, not guessed at.
#[test]
fn a_corrected_date_of_birth_after_an_enrollment_began_is_refused() {
    let state = given(&paying(&[]));
    // AN: enrolled from 2024-01; a female number of 2024 (digit 3).
    for dob in ["2024-02-01", "2024-12-31"] {
        let r = state.when(&reassign_correcting(AN.id, "056324000999", Some(dob))).then_rejected("date_of_birth_after_enrollment");
        assert!(r.message.contains(dob) && !r.message.contains("2024-01"), "the enrollment's month is not named: {}", r.message);
    }
    let r = state.when(&reassign_correcting(AN.id, "056325000999", Some("2025-01-20"))).then_rejected("date_of_birth_after_enrollment");
    assert!(r.message.contains("enrollment"), "{}", r.message);
    // Born in the enrollment's first month, as enrollment itself allows.
    state.when(&reassign_correcting(AN.id, "056324000999", Some("2024-01-31"))).then_accepted();
}

// ---- budgets ---------------------------------------------------------------------------------

#[test]
fn a_batch_never_overdraws_its_budget_and_a_failure_funds_the_reissue() {
    // Exactly one 750,000 payout is funded; AN and BINH (category 6c here) both ask for one.
    let events = and(rules(), &[budget_funded("2025-01", 750_000), enrolled(&AN, "6c", "2024-01"), enrolled(&BINH, "6c", "2024-01")]);
    let b1 = instruction("B1", 1, &AN, "2025-01", 750_000);
    let state = given(&events).when(&batch_cmd("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "750000")])).then_events(&[
        batch_submitted("B1", "2025-01", 1, 1),
        EventData::PayoutInstructed(b1.clone()),
        line_rejected("B1", 2, BINH.id, "750000", "budget_insufficient"),
    ]);
    assert_eq!(available(&state, "2025-01"), Decimal::ZERO);

    // The bank fails it (not an account problem): the money is released to the budget...
    let state = state.when(&settlements_cmd(VCB, vec![failed_item("B1-000001", FailureReason::Other, "ERR-1")])).then_events(&[failed(
        &b1,
        FailureReason::Other,
        "ERR-1",
    )]);
    assert_eq!(available(&state, "2025-01"), Decimal::from(750_000));
    // ... and funds the reissue, to the same account.
    let state = state.when(&reissue_cmd("B1-000001")).then_events(&[EventData::PayoutInstructed(reissue_of(&b1, "B1-000001", 1, account(&AN)))]);
    assert_eq!(available(&state, "2025-01"), Decimal::ZERO);
}

#[test]
fn a_line_beyond_the_budget_is_rejected() {
    let events = and(rules(), &[budget_funded("2025-01", 1_000_000), enrolled(&AN, "6c", "2024-01"), enrolled(&BINH, "5a80", "2024-01")]);
    given(&events).when(&batch_cmd("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "1000000")])).then_line_rejected("budget_insufficient", 2);
}

#[test]
fn a_reissue_beyond_the_budget_is_refused() {
    // B1-000001 failed and released its 750,000, but batch B2 has used it since.
    let events = and(rules(), &[budget_funded("2025-01", 750_000), enrolled(&AN, "6c", "2024-01"), enrolled(&BINH, "6c", "2024-01")]);
    let b1 = instruction("B1", 1, &AN, "2025-01", 750_000);
    let b2 = instruction("B2", 1, &BINH, "2025-01", 750_000);
    let events = and(
        events,
        &[
            batch_submitted("B1", "2025-01", 1, 0),
            EventData::PayoutInstructed(b1.clone()),
            failed(&b1, FailureReason::Other, ""),
            batch_submitted("B2", "2025-01", 1, 0),
            EventData::PayoutInstructed(b2),
        ],
    );
    given(&events).when(&reissue_cmd("B1-000001")).then_rejected("budget_insufficient");
}

// ---- settlements -----------------------------------------------------------------------------

#[test]
fn settlements_move_payouts_to_settled_failed_and_returned() {
    let (events, b1) = with_b1();
    let b2 = instruction("B2", 1, &BINH, "2025-01", 1_000_000);
    let state = given(&and(events, &[batch_submitted("B2", "2025-01", 1, 0), EventData::PayoutInstructed(b2.clone())]));
    let funded_amount = Decimal::from(100_000_000);

    let state = state
        .when(&settlements_cmd(VCB, vec![settled_item("B1-000001", "FT25020001"), failed_item("B2-000001", FailureReason::AccountClosed, "FT25020002")]))
        .then_events(&[settled(&b1, "FT25020001"), failed(&b2, FailureReason::AccountClosed, "FT25020002")]);
    assert_eq!(state.payout("B1-000001").unwrap().status(), PayoutStatus::Settled);
    assert_eq!(state.payout("B2-000001").unwrap().status(), PayoutStatus::Failed);
    assert_eq!(state.payout("B2-000001").unwrap().last_reason(), Some(FailureReason::AccountClosed));
    // A failure releases its amount back to the budget; a settlement does not.
    assert_eq!(available(&state, "2025-01"), funded_amount - Decimal::from(750_000));

    let state = state.when(&settlements_cmd(VCB, vec![returned_item("B1-000001", FailureReason::BeneficiaryDeceased, "RT25030001")])).then_events(&[returned(
        &b1,
        FailureReason::BeneficiaryDeceased,
        "RT25030001",
    )]);
    assert_eq!(state.payout("B1-000001").unwrap().status(), PayoutStatus::Returned);
    assert_eq!(available(&state, "2025-01"), funded_amount);
}

#[test]
fn a_report_is_decided_item_by_item_in_order() {
    let (events, b1) = with_b1();
    // Settled then returned in one report is allowed; a second settlement is not.
    given(&events)
        .when(&settlements_cmd(
            VCB,
            vec![
                settled_item("B1-000001", "FT1"),
                settled_item("B1-000001", "FT2"),
                settled_item("B9-000001", "FT3"),
                returned_item("B1-000001", FailureReason::AccountClosed, "RT1"),
            ],
        ))
        .then_events(&[
            settled(&b1, "FT1"),
            item_rejected(VCB, 2, "B1-000001", "payout_state"),
            item_rejected(VCB, 3, "B9-000001", "payout_unknown"),
            returned(&b1, FailureReason::AccountClosed, "RT1"),
        ]);
}

#[test]
fn a_bank_settles_only_its_own_payouts() {
    let (events, _) = with_b1();
    // B1-000001 is routed to Vietcombank; BIDV reports on it.
    given(&events).when(&settlements_cmd(BIDV, vec![settled_item("B1-000001", "X")])).then_events(&[item_rejected(BIDV, 1, "B1-000001", "bank_mismatch")]);
    given(&events).when(&settlements_cmd(BIDV, vec![settled_item("B1-000001", "X")])).then_item_rejected("bank_mismatch", 1);
}

#[test]
fn a_report_comes_from_a_known_bank() {
    given(&with_b1().0).when(&settlements_cmd("999999", vec![settled_item("B1-000001", "X")])).then_rejected("bank_unknown");
}

#[test]
fn a_report_has_items() {
    given(&with_b1().0).when(&settlements_cmd(VCB, vec![])).then_rejected("settlement_empty");
}

#[test]
fn a_report_has_at_most_settlement_items_max_items() {
    let state = given_with_limits(Limits { settlement_items_max: 1, ..Limits::default() }, &with_b1().0);
    state.when(&settlements_cmd(VCB, vec![settled_item("B1-000001", "A"), settled_item("B1-000002", "B")])).then_rejected("settlement_too_large");
}

#[test]
fn a_settlement_names_a_known_payout() {
    given(&with_b1().0).when(&settlements_cmd(VCB, vec![settled_item("B1-000099", "X")])).then_item_rejected("payout_unknown", 1);
    given(&with_b1().0).when(&reissue_cmd("B1-000099")).then_rejected("payout_unknown");
}

#[test]
fn transitions_the_lifecycle_does_not_allow_are_refused() {
    let (events, b1) = with_b1();
    let state = given(&events);
    // Instructed: not yet returnable, reissuable or writable off.
    state.when(&settlements_cmd(VCB, vec![returned_item("B1-000001", FailureReason::Other, "")])).then_item_rejected("payout_state", 1);
    state.when(&reissue_cmd("B1-000001")).then_rejected("payout_state");
    state.when(&write_off_cmd("B1-000001", "")).then_rejected("payout_state");
    // Settled: no second settlement, no failure.
    let state = given(&and(events, &[settled(&b1, "FT1")]));
    state.when(&settlements_cmd(VCB, vec![settled_item("B1-000001", "FT1")])).then_item_rejected("payout_state", 1);
    state.when(&settlements_cmd(VCB, vec![failed_item("B1-000001", FailureReason::Other, "")])).then_item_rejected("payout_state", 1);
}

#[test]
fn a_failure_or_return_needs_a_reason() {
    let mut item = failed_item("B1-000001", FailureReason::Other, "");
    item.reason = None;
    given(&with_b1().0).when(&settlements_cmd(VCB, vec![item])).then_item_rejected("reason_missing", 1);
}

/// A settled item with a failure reason says two things at once: refused, never read as either.
#[test]
fn a_settlement_carries_no_failure_reason() {
    for reason in FailureReason::ALL {
        let mut item = settled_item("B1-000001", "FT1");
        item.reason = Some(reason);
        given(&with_b1().0).when(&settlements_cmd(VCB, vec![item])).then_item_rejected("reason_unexpected", 1);
    }
}

// ---- reissue and write-off -------------------------------------------------------------------

#[test]
fn a_payout_failed_on_its_account_is_reissued_only_to_a_corrected_account() {
    let (events, b1) = with_b1();
    let state = given(&and(events, &[failed(&b1, FailureReason::InvalidAccount, "AC01")]));

    state.when(&reissue_cmd("B1-000001")).then_rejected("account_unchanged");

    let state = state
        .when(&change_account_cmd(AN.id, bidv_account_input(&AN)))
        .then_events(&[EventData::PaymentAccountChanged(PaymentAccountChanged { citizen_id: cid(AN.id), account: bidv_account(&AN) })]);
    let r1 = reissue_of(&b1, "B1-000001", 1, bidv_account(&AN));
    let state = state.when(&reissue_cmd("B1-000001")).then_events(&[EventData::PayoutInstructed(r1.clone())]);
    assert_eq!(available(&state, "2025-01"), Decimal::from(100_000_000 - 750_000));
    // One reissue per failed payout.
    state.when(&reissue_cmd("B1-000001")).then_rejected("payout_state");

    // The reissue is BIDV's now; it fails for a reason that is not the account's, and is
    // reissued again to the same account, numbered from the root.
    state.when(&settlements_cmd(VCB, vec![failed_item(&r1.payout_id, FailureReason::Other, "")])).then_item_rejected("bank_mismatch", 1);
    let state = state.when(&settlements_cmd(BIDV, vec![failed_item(&r1.payout_id, FailureReason::Other, "TIMEOUT")])).then_events(&[failed(
        &r1,
        FailureReason::Other,
        "TIMEOUT",
    )]);
    state.when(&reissue_cmd(&r1.payout_id)).then_events(&[EventData::PayoutInstructed(reissue_of(&r1, "B1-000001", 2, bidv_account(&AN)))]);
}

#[test]
fn a_returned_payout_is_reissued() {
    let (events, b1) = with_b1();
    let state = given(&and(events, &[settled(&b1, "FT1"), returned(&b1, FailureReason::Other, "RT1")]));
    state.when(&reissue_cmd("B1-000001")).then_events(&[EventData::PayoutInstructed(reissue_of(&b1, "B1-000001", 1, account(&AN)))]);
}

#[test]
fn a_reissue_respects_the_enrollment_status_for_the_period() {
    let (events, b1) = with_b1();
    let events = and(events, &[failed(&b1, FailureReason::Other, "")]);
    given(&and(events.clone(), &[suspended(AN.id, "2025-01", "")])).when(&reissue_cmd("B1-000001")).then_rejected("beneficiary_suspended");
    given(&and(events.clone(), &[terminated(AN.id, "2025-01", "")])).when(&reissue_cmd("B1-000001")).then_rejected("beneficiary_terminated");
    // Terminated later than the period: the month is still owed.
    given(&and(events, &[terminated(AN.id, "2025-02", "")])).when(&reissue_cmd("B1-000001")).then_accepted();
}

#[test]
fn a_failed_payout_can_be_written_off_and_then_nothing_more() {
    let (events, b1) = with_b1();
    let state = given(&and(events, &[failed(&b1, FailureReason::BeneficiaryDeceased, "MD07")]))
        .when(&write_off_cmd("B1-000001", "người hưởng đã mất"))
        .then_events(&[EventData::PayoutWrittenOff(transition(&b1, Some(FailureReason::BeneficiaryDeceased), "người hưởng đã mất"))]);
    assert_eq!(state.payout("B1-000001").unwrap().status(), PayoutStatus::WrittenOff);
    // The failure released the money; the write-off keeps it released.
    assert_eq!(available(&state, "2025-01"), Decimal::from(100_000_000));
    state.when(&reissue_cmd("B1-000001")).then_rejected("payout_state");
    state.when(&write_off_cmd("B1-000001", "")).then_rejected("payout_state");
}

// ---- shards (issue 12) ----------------------------------------------------------------------

/// A shard that owns only `provinces` (no one-off partitions).
fn shard_owning(events: &[EventData], provinces: &[&str]) -> State {
    let mut state = given(events);
    state.ownership = ansinh::shard::Ownership::shard("north", provinces.iter().map(|p| p.to_string()), []);
    state
}

/// Every command that names its administering province is refused whole at a shard that does
/// not own the province, before its other checks; the same commands pass at the owning shard;
/// commands for the whole nation (a program, a national level) pass everywhere.
#[test]
fn a_province_command_at_a_shard_that_does_not_own_the_province_is_refused() {
    let elsewhere = shard_owning(&paying(&["2025-01"]), &[OTHER_PROVINCE]);
    let province_commands = [
        enroll_cmd(&CUONG, "6c", "2025-01"),
        fund_cmd("2025-02", "1000000"),
        batch_cmd("B1", "2025-01", &[(AN.id, "750000")]),
        set_level_cmd(Some(PROVINCE), "2025-01", "600000"),
    ];
    for command in &province_commands {
        elsewhere.when(command).then_rejected("shard_not_owner");
    }
    // Precedence: ownership comes first, even for a command that is wrong in other ways.
    elsewhere.when(&batch_cmd("B1", "2025-13", &[])).then_rejected("shard_not_owner");
    // A code outside the table is no shard's: it is the command's own reference error.
    elsewhere.when(&set_level_cmd(Some("003"), "2025-01", "600000")).then_rejected("province_unknown");
    elsewhere.when(&set_level_cmd(None, "2025-03", "600000")).then_accepted();
    shard_owning(&[], &[OTHER_PROVINCE]).when(&define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")])).then_accepted();
    let owner = shard_owning(&paying(&["2025-01"]), &[PROVINCE]);
    for command in &province_commands {
        owner.when(command).then_accepted();
    }
}

/// On the engine: the refusal is recorded as `command.rejected` (like every rejection) and
/// nothing else is applied.
#[test]
fn the_engine_records_a_province_refused_by_its_shard() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut options = ansinh::EngineOptions::new(dir.path());
    options.ownership = ansinh::shard::Ownership::shard("north", [OTHER_PROVINCE.to_string()], []);
    let mut engine = ansinh::Engine::open(&options, &mut |_, _| {}).expect("the engine opens");
    let outcomes = engine
        .execute(&[envelope("rules", define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")])), envelope("enroll-an", enroll_cmd(&AN, "6c", "2025-01"))])
        .expect("the group is stored");
    outcomes[0].then_accepted();
    outcomes[1].then_rejected("shard_not_owner");
    let head = engine.head().seq;
    let types: Vec<String> = (1..=head).map(|s| engine.log().read(s).unwrap().unwrap().event.data.type_name().to_string()).collect();
    assert_eq!(types, ["program.defined", "command.rejected"]);
    assert!(engine.state().enrollment(&cid(AN.id), PROGRAM).is_none());
}

// ---- the engine shell: idempotency and versions --------------------------------------------

#[test]
fn engine_refuses_a_command_id_reused_with_another_payload() {
    let mut t = TestEngine::open();
    let first = envelope("cmd-1", define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")]));
    let other = envelope("cmd-1", define_program_cmd("ho-tro-khac", "Hỗ trợ khác", &[("1", "1.0")]));
    let accepted = t.execute_one(first.clone());
    accepted.then_accepted();

    let rejected = t.execute_one(other.clone());
    rejected.then_rejected("command_id_reused");
    assert!(!rejected.duplicate && rejected.seqs.is_some(), "the refusal is recorded: {rejected:#?}");
    assert!(t.engine.state().program("ho-tro-khac").is_none());

    // Redeliveries of either payload get their first outcome back and write nothing.
    let head = t.engine.head().seq;
    let again = t.execute_one(other);
    again.then_rejected("command_id_reused");
    assert!(again.duplicate);
    assert_eq!(again.seqs, rejected.seqs);
    let again = t.execute_one(first);
    again.then_accepted();
    assert!(again.duplicate);
    assert_eq!(again.seqs, accepted.seqs);
    assert_eq!(t.engine.head().seq, head);
}

#[test]
fn engine_refuses_a_reused_command_id_within_one_group() {
    let mut t = TestEngine::open();
    let outcomes = t.execute(&[
        envelope("cmd-1", define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")])),
        envelope("cmd-1", define_program_cmd("ho-tro-khac", "Hỗ trợ khác", &[("1", "1.0")])),
    ]);
    outcomes[0].then_accepted();
    outcomes[1].then_rejected("command_id_reused");
}

#[test]
fn engine_refuses_a_command_version_it_does_not_read() {
    let mut t = TestEngine::open();
    let mut command = envelope("cmd-v2", define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")]));
    command.v = 2;
    let outcome = t.execute_one(command);
    outcome.then_rejected("version_unsupported");
    assert!(outcome.seqs.is_some(), "the refusal is recorded: {outcome:#?}");
    assert!(t.engine.state().program_count() == 0);
}

#[test]
fn engine_runs_a_story_end_to_end() {
    let mut t = TestEngine::open();
    let mut commands = vec![envelope("c1", define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")]))];
    commands.push(envelope("c2", set_level_cmd(None, "2024-07", "500000")));
    commands.push(envelope("c3", fund_cmd("2025-01", "750000")));
    commands.push(envelope("c4", enroll_cmd(&AN, "6c", "2024-07")));
    commands.push(envelope("c5", batch_cmd("B1", "2025-01", &[(AN.id, "750000"), (BINH.id, "750000")])));
    let outcomes = t.execute(&commands);
    for o in &outcomes {
        o.then_accepted();
    }
    let batch = &outcomes[4];
    assert_eq!((batch.count_lines("instructed"), batch.count_lines("rejected")), (1, 1));
    assert_eq!(batch.lines[1].code.as_deref(), Some("not_enrolled"));
}

// ---- one-off programs (issue 12) ------------------------------------------------------------

const ONE_OFF: &str = "ho-tro-100k";
/// The one-off commands are issued after the cutoff day (30 Aug 2025), in Hà Nội's offset.
const SEPT: &str = "2025-09-05T08:00:00+07:00";

fn one_off_defined() -> EventData {
    EventData::OneOffProgramDefined(OneOffProgramDefined {
        amount: vnd(100_000),
        eligible_cutoff: BirthDate::parse("2025-08-30").unwrap(),
        legal_basis: "Nghị quyết 2025".into(),
        name: "Hỗ trợ 100.000 đồng".into(),
        period: period("2025-09"),
        program_id: ONE_OFF.into(),
    })
}

fn one_off_funded(amount: u64) -> EventData {
    EventData::OneOffFunded(OneOffFunded { amount: vnd(amount), period: period("2025-09"), program_id: ONE_OFF.into(), reference: "KB-1".into() })
}

/// The one-off program with a budget for `payees` lines.
fn one_off_world(payees: u64) -> Vec<EventData> {
    vec![one_off_defined(), one_off_funded(payees * 100_000)]
}

/// `n` valid citizen IDs (female, born 1985, Khánh Hòa) in the partition of the first.
fn same_partition(n: usize) -> Vec<String> {
    let first = partition_of(AN.id);
    let mut out = vec![AN.id.to_string()];
    let mut serial = 124u64;
    while out.len() < n {
        let id = format!("056185{serial:06}");
        if partition_of(&id) == first {
            out.push(id);
        }
        serial += 1;
    }
    out
}

/// A citizen ID of another partition than AN's.
fn other_partition() -> String {
    (124u64..).map(|n| format!("056185{n:06}")).find(|id| partition_of(id) != partition_of(AN.id)).unwrap()
}

fn bank_line(citizen_id: &str) -> OneOffLine {
    OneOffLine { citizen_id: citizen_id.into(), id_assigned_on: "2021-06-01".into(), account: Some(account_input(&AN)), commune: None }
}

fn cash_line(citizen_id: &str, commune: &str) -> OneOffLine {
    OneOffLine { citizen_id: citizen_id.into(), id_assigned_on: "2021-06-01".into(), account: None, commune: Some(commune.into()) }
}

fn one_off_batch(batch_id: &str, lines: Vec<OneOffLine>) -> Command {
    Command::SubmitOneOffBatch(SubmitOneOffBatch { batch_id: batch_id.into(), program_id: ONE_OFF.into(), partition: u32::from(partition_of(AN.id)), lines })
}

/// The line outcome codes of a one-off batch, in line order: `instructed`, `cash` or a code.
fn line_codes(events: &[EventData]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            EventData::PayoutInstructed(_) => Some("instructed".to_string()),
            EventData::OneOffCashListed(_) => Some("cash".to_string()),
            EventData::PayoutLineRejected(r) => Some(r.code.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_one_off_batch_pays_to_accounts_lists_cash_and_settles_like_a_regular_batch() {
    let ids = same_partition(2);
    let (events, state) = given(&one_off_world(2)).when_at(&one_off_batch("OO-1", vec![bank_line(&ids[0]), cash_line(&ids[1], "22333")]), SEPT).then_accepted();
    let payout = PayoutInstructed {
        account: account(&AN),
        amount: vnd(100_000),
        batch_id: "OO-1".into(),
        citizen_id: cid(&ids[0]),
        kind: PayoutKind::Regular,
        line_no: 1,
        payout_id: "OO-1-000001".into(),
        period: period("2025-09"),
        program_id: ONE_OFF.into(),
        province: "national".into(),
        reissue_of: None,
    };
    assert_eq!(
        events,
        vec![
            EventData::OneOffBatchSubmitted(OneOffBatchSubmitted {
                batch_id: "OO-1".into(),
                lines_cash: 1,
                lines_instructed: 1,
                lines_rejected: 0,
                lines_total: 2,
                partition: partition_of(AN.id),
                period: period("2025-09"),
                program_id: ONE_OFF.into(),
            }),
            EventData::PayoutInstructed(payout.clone()),
            EventData::OneOffCashListed(OneOffCashListed {
                amount: vnd(100_000),
                batch_id: "OO-1".into(),
                citizen_id: cid(&ids[1]),
                commune: "22333".into(),
                line_no: 2,
                program_id: ONE_OFF.into(),
            }),
        ]
    );
    let (h, o) = state.one_off(ONE_OFF).unwrap();
    assert_eq!((o.available(), o.taken_count()), (Decimal::ZERO, 2));
    assert!(state.one_off_taken(h, ids[1].parse().unwrap()));
    // The bank settles it with the same command as a regular payout; a failure releases the money.
    let p = state.payout("OO-1-000001").expect("a one-off payout is found by its id");
    assert_eq!((p.bin(), p.province(), p.citizen_id()), (VCB.to_string(), "national".to_string(), cid(&ids[0])));
    state.when(&settlements_cmd(BIDV, vec![settled_item("OO-1-000001", "X")])).then_item_rejected("bank_mismatch", 1);
    let failed_state = state.when(&settlements_cmd(VCB, vec![failed_item("OO-1-000001", FailureReason::AccountClosed, "AC04")])).then_events(&[failed(
        &payout,
        FailureReason::AccountClosed,
        "AC04",
    )]);
    assert_eq!(failed_state.one_off(ONE_OFF).unwrap().1.available(), Decimal::from(100_000));
    let settled_state = state.when(&settlements_cmd(VCB, vec![settled_item("OO-1-000001", "FT1")])).then_events(&[settled(&payout, "FT1")]);
    let returned_state = settled_state.when(&settlements_cmd(VCB, vec![returned_item("OO-1-000001", FailureReason::Other, "RT")])).then_events(&[returned(
        &payout,
        FailureReason::Other,
        "RT",
    )]);
    assert_eq!(returned_state.one_off(ONE_OFF).unwrap().1.available(), Decimal::from(100_000));
    // Not reissued, not written off (yet): said with its own code, not as a lifecycle refusal.
    failed_state.when(&reissue_cmd("OO-1-000001")).then_rejected("program_kind_mismatch");
    failed_state.when(&write_off_cmd("OO-1-000001", "")).then_rejected("program_kind_mismatch");
}

#[test]
fn a_one_off_is_paid_once_per_citizen_over_every_batch() {
    let ids = same_partition(2);
    let (_, state) = given(&one_off_world(10)).when_at(&one_off_batch("OO-1", vec![bank_line(&ids[0]), cash_line(&ids[1], "22333")]), SEPT).then_accepted();
    // Paid, or listed for cash: either way, no second line, in cash or to a bank.
    let again = vec![cash_line(&ids[0], "22333"), bank_line(&ids[1])];
    let (events, _) = state.when_at(&one_off_batch("OO-2", again), SEPT).then_accepted();
    assert_eq!(line_codes(&events), ["one_off_already_paid", "one_off_already_paid"]);
    state.when_at(&one_off_batch("OO-3", vec![bank_line(&ids[0])]), SEPT).then_line_rejected("one_off_already_paid", 1);
    // Twice in one batch: the second line.
    given(&one_off_world(10))
        .when_at(&one_off_batch("OO-1", vec![bank_line(&ids[0]), cash_line(&ids[0], "22333")]), SEPT)
        .then_line_rejected("duplicate_line", 2);
    // The batch id is taken by either kind of batch.
    state.when_at(&one_off_batch("OO-1", vec![bank_line(AN.id)]), SEPT).then_rejected("batch_exists");
}

#[test]
fn a_one_off_line_needs_a_number_assigned_by_the_cutoff() {
    let mut line = bank_line(AN.id);
    line.id_assigned_on = "2025-08-31".into();
    given(&one_off_world(1)).when_at(&one_off_batch("OO-1", vec![line.clone()]), SEPT).then_line_rejected("one_off_after_cutoff", 1);
    line.id_assigned_on = "2025-08-30".into();
    given(&one_off_world(1)).when_at(&one_off_batch("OO-1", vec![line]), SEPT).then_accepted();
}

#[test]
fn a_one_off_line_names_a_real_assignment_date() {
    // Not a date; after the day the command was issued; before the year AN was born (1985).
    for (raw, at) in [("2021-02-29", SEPT), ("01/06/2021", SEPT), ("2025-09-06", SEPT), ("2025-09-05", "2025-09-04T22:00:00-05:00"), ("1984-12-31", SEPT)] {
        let line = OneOffLine { id_assigned_on: raw.into(), ..bank_line(AN.id) };
        given(&one_off_world(1)).when_at(&one_off_batch("OO-1", vec![line]), at).then_line_rejected("id_assigned_on_invalid", 1);
    }
    let line = OneOffLine { id_assigned_on: "1985-01-01".into(), ..bank_line(AN.id) };
    given(&one_off_world(1)).when_at(&one_off_batch("OO-1", vec![line]), SEPT).then_accepted();
}

#[test]
fn a_one_off_line_needs_an_account_or_a_commune() {
    let line = OneOffLine { account: None, commune: None, ..bank_line(AN.id) };
    given(&one_off_world(1)).when_at(&one_off_batch("OO-1", vec![line]), SEPT).then_line_rejected("account_missing", 1);
    for commune in ["2233", "223334", "2233a", "２２３３３", ""] {
        given(&one_off_world(1)).when_at(&one_off_batch("OO-1", vec![cash_line(AN.id, commune)]), SEPT).then_line_rejected("commune_invalid", 1);
    }
    // An account is checked as at enrollment.
    let mut line = bank_line(AN.id);
    line.account.as_mut().unwrap().bin = "999999".into();
    given(&one_off_world(1)).when_at(&one_off_batch("OO-1", vec![line]), SEPT).then_line_rejected("bank_unknown", 1);
    let (events, _) = given(&one_off_world(1))
        .when_at(&one_off_batch("OO-1", vec![OneOffLine { citizen_id: "0561850001".into(), ..bank_line(AN.id) }]), SEPT)
        .then_accepted();
    assert_eq!(line_codes(&events), ["citizen_id_format"]);
}

#[test]
fn a_one_off_batch_holds_one_partition_of_this_shard() {
    let stranger = other_partition();
    given(&one_off_world(2)).when_at(&one_off_batch("OO-1", vec![bank_line(AN.id), bank_line(&stranger)]), SEPT).then_line_rejected("partition_mismatch", 2);
    let mut batch = SubmitOneOffBatch { batch_id: "OO-1".into(), program_id: ONE_OFF.into(), partition: 1024, lines: vec![bank_line(AN.id)] };
    given(&one_off_world(1)).when_at(&Command::SubmitOneOffBatch(batch.clone()), SEPT).then_rejected("partition_mismatch");
    // A shard that does not own the partition refuses the whole command.
    let mut state = given(&one_off_world(1));
    let mine = partition_of(AN.id);
    state.ownership = Ownership::shard("north", ["001".to_string()], (0..1024).filter(|p| *p != mine));
    batch.partition = u32::from(mine);
    state.when_at(&Command::SubmitOneOffBatch(batch.clone()), SEPT).then_rejected("shard_not_owner");
    state.ownership = Ownership::shard("south", ["079".to_string()], [mine]);
    state.when_at(&Command::SubmitOneOffBatch(batch), SEPT).then_accepted();
}

#[test]
fn a_one_off_batch_stays_within_its_budget() {
    let ids = same_partition(3);
    let lines = vec![bank_line(&ids[0]), cash_line(&ids[1], "22333"), bank_line(&ids[2])];
    let (events, state) = given(&one_off_world(2)).when_at(&one_off_batch("OO-1", lines), SEPT).then_accepted();
    assert_eq!(line_codes(&events), ["instructed", "cash", "budget_insufficient"]);
    assert_eq!(state.one_off(ONE_OFF).unwrap().1.available(), Decimal::ZERO);
}

#[test]
fn one_off_and_regular_programs_do_not_mix() {
    let world = and(rules(), &one_off_world(1));
    // Regular commands naming the one-off program.
    given(&world)
        .when(&Command::FundBudget(FundBudget { program_id: ONE_OFF.into(), ..fund_payload("2025-09", "1000") }))
        .then_rejected("program_kind_mismatch");
    given(&world)
        .when(&Command::SubmitPayoutBatch(SubmitPayoutBatch { program_id: ONE_OFF.into(), ..batch_payload("B1", "2025-09", &[(AN.id, "100000")]) }))
        .then_rejected("program_kind_mismatch");
    given(&world)
        .when(&Command::EnrollBeneficiary(EnrollBeneficiary { program_id: ONE_OFF.into(), ..enroll_payload(&AN, "6c", "2025-01") }))
        .then_rejected("program_kind_mismatch");
    // One-off commands naming the regular program.
    given(&world)
        .when(&Command::FundOneOff(FundOneOff { program_id: PROGRAM.into(), amount: "1000".into(), reference: String::new() }))
        .then_rejected("program_kind_mismatch");
    let mut batch =
        SubmitOneOffBatch { batch_id: "OO-1".into(), program_id: PROGRAM.into(), partition: u32::from(partition_of(AN.id)), lines: vec![bank_line(AN.id)] };
    given(&world).when_at(&Command::SubmitOneOffBatch(batch.clone()), SEPT).then_rejected("program_kind_mismatch");
    batch.program_id = "khong-co".into();
    given(&world).when_at(&Command::SubmitOneOffBatch(batch.clone()), SEPT).then_rejected("program_unknown");
    batch.program_id = "bad id".into();
    given(&world).when_at(&Command::SubmitOneOffBatch(batch), SEPT).then_rejected("program_id_invalid");
    // One namespace of program ids.
    given(&world).when(&define_one_off_cmd(PROGRAM, "2025-08-30")).then_rejected("program_exists");
    given(&world).when(&define_program_cmd(ONE_OFF, "Khác", &[("1", "1.0")])).then_rejected("program_exists");
}

fn define_one_off_cmd(program_id: &str, cutoff: &str) -> Command {
    Command::DefineOneOffProgram(DefineOneOffProgram {
        program_id: program_id.into(),
        name: "Hỗ trợ 100.000 đồng".into(),
        amount: "100000".into(),
        eligible_cutoff: cutoff.into(),
        period: "2025-09".into(),
        legal_basis: "Nghị quyết 2025".into(),
    })
}

#[test]
fn a_one_off_program_is_defined_with_checked_terms() {
    given(&[]).when(&define_one_off_cmd(ONE_OFF, "2025-08-30")).then_events(&[one_off_defined()]);
    for cutoff in ["2025-02-30", "30/08/2025", "2025-8-30"] {
        given(&[]).when(&define_one_off_cmd(ONE_OFF, cutoff)).then_rejected("cutoff_invalid");
    }
    let with = |edit: fn(&mut DefineOneOffProgram)| {
        let Command::DefineOneOffProgram(mut c) = define_one_off_cmd(ONE_OFF, "2025-08-30") else { unreachable!() };
        edit(&mut c);
        Command::DefineOneOffProgram(c)
    };
    given(&[]).when(&with(|c| c.amount = "100.000".into())).then_rejected("amount_separator");
    given(&[]).when(&with(|c| c.period = "2025-13".into())).then_rejected("period_invalid");
    given(&[]).when(&with(|c| c.name = "\u{200b}".into())).then_rejected("program_name_invalid");
    given(&[]).when(&with(|c| c.program_id = String::new())).then_rejected("program_id_invalid");
    given(&[one_off_defined()])
        .when(&Command::FundOneOff(FundOneOff { program_id: ONE_OFF.into(), amount: "5000000".into(), reference: "KB-1".into() }))
        .then_events(&[EventData::OneOffFunded(OneOffFunded {
            amount: vnd(5_000_000),
            period: period("2025-09"),
            program_id: ONE_OFF.into(),
            reference: "KB-1".into(),
        })]);
}

#[test]
fn one_off_commands_are_for_the_admin_and_the_program_s_agencies() {
    use ansinh::core::authz::{authorize, Role, Roles};
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    let roles = Roles(
        [
            ("ministry".to_string(), Role::Admin),
            ("agency-oneoff".to_string(), Role::Agency { provinces: set(&[]), programs: set(&[ONE_OFF]) }),
            ("agency-056".to_string(), Role::Agency { provinces: set(&[PROVINCE]), programs: set(&[PROGRAM]) }),
            ("bank-vcb".to_string(), Role::Bank { bin: VCB.to_string() }),
        ]
        .into_iter()
        .collect(),
    );
    let state = given(&one_off_world(1));
    let commands = [
        define_one_off_cmd(ONE_OFF, "2025-08-30"),
        Command::FundOneOff(FundOneOff { program_id: ONE_OFF.into(), amount: "1000".into(), reference: String::new() }),
        one_off_batch("OO-1", vec![bank_line(AN.id)]),
    ];
    for command in &commands {
        for (sender, allowed) in [("ministry", true), ("agency-oneoff", true), ("agency-056", false), ("bank-vcb", false), ("stranger", false)] {
            let r = authorize(&roles, &state, Some(sender), command);
            assert_eq!(r.is_ok(), allowed, "{sender} {}: {r:?}", command.type_name());
            if let Err(r) = r {
                assert_eq!(r.code, "unauthorized");
            }
        }
    }
}

// ---- the contract: every code has a scenario ------------------------------------------------

// ---- authorization: the transport sets `sender` from the broker-validated user id ---------

fn roles() -> ansinh::core::authz::Roles {
    use ansinh::core::authz::{Role, Roles};
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    Roles(
        [
            ("ministry".to_string(), Role::Admin),
            ("agency-056".to_string(), Role::Agency { provinces: set(&[PROVINCE]), programs: set(&[PROGRAM]) }),
            ("bank-vcb".to_string(), Role::Bank { bin: VCB.to_string() }),
        ]
        .into_iter()
        .collect(),
    )
}

fn sent_by(sender: Option<&str>, command_id: &str, command: Command) -> ansinh::command::CommandEnvelope {
    let mut e = envelope(command_id, command);
    e.sender = sender.map(String::from);
    e
}

#[test]
fn each_role_may_send_only_its_own_commands_and_refusals_are_recorded() {
    let mut t = TestEngine::open();
    t.engine.set_roles(roles());
    t.execute_one(sent_by(Some("ministry"), "rules", define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")]))).then_accepted();
    t.execute_one(sent_by(Some("ministry"), "level", set_level_cmd(None, "2024-07", "500000"))).then_accepted();
    // An agency cannot fund its own budget; the ministry can.
    let refused = t.execute_one(sent_by(Some("agency-056"), "fund-1", fund_cmd("2025-01", "100000000")));
    refused.then_rejected("unauthorized");
    assert!(refused.seqs.is_some(), "a refusal is recorded as an event: {refused:#?}");
    t.execute_one(sent_by(Some("ministry"), "fund-2", fund_cmd("2025-01", "100000000"))).then_accepted();
    // No user, an unknown user, another province: refused.
    t.execute_one(sent_by(None, "enroll-0", enroll_cmd(&AN, "6c", "2024-01"))).then_rejected("unauthorized");
    t.execute_one(sent_by(Some("stranger"), "enroll-1", enroll_cmd(&AN, "6c", "2024-01"))).then_rejected("unauthorized");
    let mut elsewhere = enroll_payload(&AN, "6c", "2024-01");
    elsewhere.province = OTHER_PROVINCE.to_string();
    t.execute_one(sent_by(Some("agency-056"), "enroll-2", Command::EnrollBeneficiary(elsewhere))).then_rejected("unauthorized");
    t.execute_one(sent_by(Some("agency-056"), "enroll-3", enroll_cmd(&AN, "6c", "2024-01"))).then_accepted();
    // A bank settles only under its own BIN; an agency cannot settle at all.
    let batch = t.execute_one(sent_by(Some("agency-056"), "batch-1", batch_cmd("B1", "2025-01", &[(AN.id, "750000")])));
    batch.then_accepted();
    let payout = batch.lines[0].payout_id.clone().expect("the line was instructed");
    t.execute_one(sent_by(Some("bank-vcb"), "settle-1", settlements_cmd(BIDV, vec![settled_item(&payout, "FT1")]))).then_rejected("unauthorized");
    t.execute_one(sent_by(Some("agency-056"), "settle-2", settlements_cmd(VCB, vec![settled_item(&payout, "FT1")]))).then_rejected("unauthorized");
    let settled = t.execute_one(sent_by(Some("bank-vcb"), "settle-3", settlements_cmd(VCB, vec![settled_item(&payout, "FT1")])));
    settled.then_accepted();
    assert_eq!(settled.lines[0].status, "settled");
    // Command ids are scoped by sender: the same id from another user is that user's own command,
    // decided on its own (here refused: no role), and it takes nothing from the first sender,
    // whose redelivery is still answered from the index.
    t.execute_one(sent_by(Some("stranger"), "settle-3", settlements_cmd(VCB, vec![settled_item(&payout, "FT1")]))).then_rejected("unauthorized");
    let again = t.execute_one(sent_by(Some("bank-vcb"), "settle-3", settlements_cmd(VCB, vec![settled_item(&payout, "FT1")])));
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.lines[0].status, "settled");
}

/// Issue 16: command ids are one namespace per sender. A bank (or a message with no user id)
/// that sends a command under an id the ministry will use next takes nothing from it: the
/// ministry's command is decided as its own, each event id stays unique in the log (`@sender`),
/// and each sender's redelivery gets its own outcome.
#[test]
fn another_sender_cannot_take_a_command_id() {
    let mut t = TestEngine::open();
    t.engine.set_roles(roles());
    t.execute_one(sent_by(Some("ministry"), "rules", define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")]))).then_accepted();
    t.execute_one(sent_by(Some("bank-vcb"), "fund-2025-02", fund_cmd("2025-02", "100000000"))).then_rejected("unauthorized");
    t.execute_one(sent_by(None, "fund-2025-02", fund_cmd("2025-02", "100000000"))).then_rejected("unauthorized");
    let funded = t.execute_one(sent_by(Some("ministry"), "fund-2025-02", fund_cmd("2025-02", "100000000")));
    funded.then_accepted();
    assert!(!funded.duplicate);
    // Each sender's redelivery is answered from its own entry.
    assert!(t.execute_one(sent_by(Some("ministry"), "fund-2025-02", fund_cmd("2025-02", "100000000"))).duplicate);
    let bank_again = t.execute_one(sent_by(Some("bank-vcb"), "fund-2025-02", fund_cmd("2025-02", "100000000")));
    assert!(bank_again.duplicate && bank_again.code.as_deref() == Some("unauthorized"), "{bank_again:?}");
    // Three events under one command id, three distinct event ids, each naming its sender.
    let head = t.engine.head().seq;
    let events: Vec<ansinh::event::Event> =
        (1..=head).map(|s| t.engine.log().read(s).unwrap().unwrap().event).filter(|e| e.command_id == "fund-2025-02").collect();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["fund-2025-02/1@bank-vcb", "fund-2025-02/1", "fund-2025-02/1@ministry"]);
    assert_eq!(events.iter().map(|e| e.sender.as_deref()).collect::<Vec<_>>(), [Some("bank-vcb"), None, Some("ministry")]);
}

#[test]
fn every_rejection_code_has_a_scenario() {
    let source = include_str!("scenarios.rs");
    let missing: Vec<&str> = CODES.iter().map(|(code, _)| *code).filter(|code| !source.contains(&format!("rejected(\"{code}\""))).collect();
    assert!(missing.is_empty(), "rejection codes without a then_rejected/then_line_rejected/then_item_rejected scenario: {missing:?}");
}
