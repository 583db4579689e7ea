//! `decide(state, command) -> events | rejection`: the functional core. Pure: no clock, no I/O,
//! no randomness. Checks run in a fixed precedence order (structure, then references, then
//! state), so the same input always gets the same code.
//!
//! Rejection messages go back to the sender and into the log: they say what the code says and
//! echo what the sender sent, and never name another province, another person's data or
//! enrollment, or a re-determined number (an agency of one province must not learn where else
//! a citizen is enrolled, or what a citizen's new number is, from a refusal).

use super::handles::province_code;
use super::rejection::Rejection;
use super::state::{payout_id, Enrollment, EnrollmentStatus, PayoutRef, PayoutStatus, Program, State, CATEGORIES_MAX};
use crate::command::*;
use crate::domain::reference::province_name;
use crate::domain::text;
use crate::domain::{valid_identifier, Attestation, BirthDate, CitizenId, Coefficient, Period, Vnd, IDENTIFIER_LEN_MAX};
use crate::event::*;
use crate::timefmt::Timestamp;
use std::collections::{BTreeMap, HashMap, HashSet};

type Decision = Result<Vec<EventData>, Rejection>;

const TEXT_LEN_MAX: usize = 256;
const NAME_LEN_MAX: usize = 100;

/// Decides one command issued at `issued_at` (the envelope's time, already checked: the only
/// time a decision reads). A batch or a settlement report is decided line by line: its bad
/// lines become `*.rejected` events next to the good ones, never all-or-nothing.
pub fn decide(state: &State, command: &Command, issued_at: &Timestamp) -> Decision {
    owned_province(state, command)?;
    match command {
        Command::DefineProgram(c) => define_program(state, c),
        Command::SetStandardLevel(c) => set_standard_level(state, c),
        Command::FundBudget(c) => fund_budget(state, c),
        Command::EnrollBeneficiary(c) => enroll(state, c, issued_at),
        Command::ChangePaymentAccount(c) => change_account(state, c),
        Command::ChangeCategory(c) => change_category(state, c),
        Command::SuspendBeneficiary(c) => change_status(state, c, EnrollmentStatus::Suspended),
        Command::ResumeBeneficiary(c) => change_status(state, c, EnrollmentStatus::Active),
        Command::TerminateBeneficiary(c) => change_status(state, c, EnrollmentStatus::Terminated),
        Command::ReassignCitizenId(c) => reassign(state, c, issued_at),
        Command::SubmitPayoutBatch(c) => submit_batch(state, c),
        Command::RecordSettlements(c) => record_settlements(state, c),
        Command::ReissuePayout(c) => reissue(state, c),
        Command::WriteOffPayout(c) => write_off(state, c),
        Command::DefineOneOffProgram(c) => define_one_off(state, c),
        Command::FundOneOff(c) => fund_one_off(state, c),
        Command::SubmitOneOffBatch(c) => super::one_off::submit(state, c, issued_at),
    }
}

/// A shard decides only for the provinces it owns (`shard::Ownership`): a command naming its
/// administering province is refused whole, before any other check, at a shard that does not own
/// it (it reached this shard's queue straight, or the routing moved: ARCHITECTURE.md "Shards").
/// Unsharded, every province is owned. A code not in the table is left to the command's own
/// check (`province_unknown`): no shard owns it, and it is a reference error, not a routing one.
fn owned_province(state: &State, command: &Command) -> Result<(), Rejection> {
    let named = match command {
        Command::EnrollBeneficiary(c) => Some(&c.province),
        Command::FundBudget(c) => Some(&c.province),
        Command::SubmitPayoutBatch(c) => Some(&c.province),
        Command::SetStandardLevel(c) => c.province.as_ref(),
        _ => None,
    };
    match named {
        Some(code) if province_name(code).is_some() && !state.ownership.owns_province(code) => Err(Rejection::new(
            "shard_not_owner",
            format!("shard {} does not own province {code:?}: publish to the route exchange with key province.<code>", state.ownership.shard_name()),
        )),
        _ => Ok(()),
    }
}

// ---- small parsers that map to reason codes ------------------------------------------------

fn period(raw: &str) -> Result<Period, Rejection> {
    Period::parse(raw).map_err(|e| Rejection::new("period_invalid", e.to_string()))
}

fn province(raw: &str) -> Result<String, Rejection> {
    province_name(raw).map(|_| raw.to_string()).ok_or_else(|| Rejection::new("province_unknown", format!("province code {raw:?} is not in the table")))
}

pub(super) fn amount(raw: &str) -> Result<Vnd, Rejection> {
    Vnd::parse(raw).map_err(|e| Rejection::new(e.code(), e.to_string()))
}

/// A reference, reason or legal basis (`text::free_text`): at most `TEXT_LEN_MAX` characters,
/// none of them a control, line break or invisible formatting character.
pub(super) fn text(raw: &str, what: &str) -> Result<String, Rejection> {
    text::free_text(raw, TEXT_LEN_MAX).map(str::to_string).map_err(|e| Rejection::new("reference_invalid", format!("{what} {e}")))
}

/// A defined program of either kind. An id outside the identifier set (1-64 of
/// `[A-Za-z0-9._:-]`) is `program_id_invalid` in every command, as in `define_program`, not
/// merely unknown.
fn any_program<'s>(state: &'s State, program_id: &str) -> Result<(super::handles::ProgramHandle, &'s Program), Rejection> {
    if !valid_identifier(program_id, IDENTIFIER_LEN_MAX) {
        return Err(Rejection::new("program_id_invalid", "program id must be 1-64 characters of [A-Za-z0-9._:-]"));
    }
    state.program(program_id).ok_or_else(|| Rejection::new("program_unknown", format!("program {program_id:?} is not defined")))
}

/// A defined regular program: a one-off program named by a regular-program command is
/// `program_kind_mismatch`.
fn program<'s>(state: &'s State, program_id: &str) -> Result<&'s Program, Rejection> {
    let (h, p) = any_program(state, program_id)?;
    if state.one_off_of(h).is_some() {
        return Err(Rejection::new("program_kind_mismatch", format!("program {program_id:?} is a one-off program: use the one-off commands")));
    }
    Ok(p)
}

/// A defined one-off program: a regular program named by a one-off command is
/// `program_kind_mismatch`.
pub(super) fn one_off_program<'s>(state: &'s State, program_id: &str) -> Result<(super::handles::ProgramHandle, &'s super::state::OneOff), Rejection> {
    let (h, _) = any_program(state, program_id)?;
    let o = state
        .one_off_of(h)
        .ok_or_else(|| Rejection::new("program_kind_mismatch", format!("program {program_id:?} is a regular program, not a one-off program")))?;
    Ok((h, o))
}

/// Parses a citizen ID and refuses a re-determined (old) number. The new number is not named:
/// the sender may not be allowed to read it (rejection messages say what the code says and
/// what the sender sent, never another person's, province's or enrollment's data).
pub(super) fn current_citizen(state: &State, raw: &str) -> Result<CitizenId, Rejection> {
    let id = CitizenId::parse(raw).map_err(|e| Rejection::new(e.code(), e.to_string()))?;
    if state.current_id(&id).is_some() {
        return Err(Rejection::new(
            "citizen_id_reassigned",
            format!("number {} was re-determined; use the new number from the population database", id.masked()),
        ));
    }
    Ok(id)
}

fn attestation(a: &Option<Attestation>, issued_at: &Timestamp) -> Result<Attestation, Rejection> {
    let a = a.as_ref().ok_or_else(|| Rejection::new("attestation_missing", "identity needs a VNeID level 2 attestation"))?;
    a.check(issued_at)?;
    Ok(a.clone())
}

/// A date of birth as sent: a real calendar date, and not after the day the command was issued
/// (its `issued_at` date, in the offset it was written in).
fn date_of_birth(raw: &str, issued_at: &Timestamp) -> Result<BirthDate, Rejection> {
    let dob = BirthDate::parse(raw).map_err(|e| Rejection::new("date_of_birth_invalid", e.to_string()))?;
    let (y, m, d) = issued_at.date();
    if dob.ymd() > (y, m, d) {
        return Err(Rejection::new("date_of_birth_in_future", format!("date of birth {dob} is after the day the command was issued ({y:04}-{m:02}-{d:02})")));
    }
    Ok(dob)
}

fn enrollment<'s>(state: &'s State, id: &CitizenId, program_id: &str) -> Result<&'s Enrollment, Rejection> {
    state.enrollment(id, program_id).ok_or_else(|| Rejection::new("not_enrolled", format!("{} is not enrolled in {program_id:?}", id.masked())))
}

// ---- program rules and budgets -------------------------------------------------------------

fn program_name(raw: &str) -> Result<&str, Rejection> {
    text::name(raw, NAME_LEN_MAX).map_err(|e| {
        Rejection::new(
            "program_name_invalid",
            format!("program name {e}: it must be 1-{NAME_LEN_MAX} characters with a letter, no control or invisible character"),
        )
    })
}

fn define_program(state: &State, c: &DefineProgram) -> Decision {
    if !valid_identifier(&c.program_id, IDENTIFIER_LEN_MAX) {
        return Err(Rejection::new("program_id_invalid", "program id must be 1-64 characters of [A-Za-z0-9._:-]"));
    }
    let name = program_name(&c.name)?;
    let categories_max = state.limits.categories_max.min(CATEGORIES_MAX);
    if c.categories.is_empty() || c.categories.len() > categories_max || c.categories.keys().any(|k| !valid_identifier(k, 16)) {
        return Err(Rejection::new("categories_invalid", format!("1-{categories_max} categories with codes of 1-16 characters of [A-Za-z0-9._:-]")));
    }
    let mut categories = BTreeMap::new();
    for (code, raw) in &c.categories {
        let coefficient = Coefficient::parse(raw)
            .ok_or_else(|| Rejection::new("coefficient_invalid", format!("category {code}: coefficient {raw:?} is not a decimal in (0, 10]")))?;
        categories.insert(code.clone(), coefficient);
    }
    let legal_basis = text(&c.legal_basis, "legal basis")?;
    if state.program(&c.program_id).is_some() {
        return Err(Rejection::new("program_exists", format!("program {:?} is already defined", c.program_id)));
    }
    Ok(vec![EventData::ProgramDefined(ProgramDefined { program_id: c.program_id.clone(), name: name.to_string(), categories, legal_basis })])
}

fn set_standard_level(state: &State, c: &SetStandardLevel) -> Decision {
    let province = c.province.as_deref().map(province).transpose()?;
    let effective_from = period(&c.effective_from)?;
    let amount = amount(&c.amount)?;
    let legal_basis = text(&c.legal_basis, "legal basis")?;
    program(state, &c.program_id)?;
    Ok(vec![EventData::StandardLevelSet(StandardLevelSet { program_id: c.program_id.clone(), province, effective_from, amount, legal_basis })])
}

fn fund_budget(state: &State, c: &FundBudget) -> Decision {
    let province = province(&c.province)?;
    let period = period(&c.period)?;
    let amount = amount(&c.amount)?;
    let reference = text(&c.reference, "reference")?;
    program(state, &c.program_id)?;
    Ok(vec![EventData::BudgetFunded(BudgetFunded { province, program_id: c.program_id.clone(), period, amount, reference })])
}

/// A national one-off program (issue 12): checked like `define_program`, plus its amount, the
/// cutoff day and the month it is paid in. One namespace of program ids for both kinds.
fn define_one_off(state: &State, c: &DefineOneOffProgram) -> Decision {
    if !valid_identifier(&c.program_id, IDENTIFIER_LEN_MAX) {
        return Err(Rejection::new("program_id_invalid", "program id must be 1-64 characters of [A-Za-z0-9._:-]"));
    }
    let name = program_name(&c.name)?;
    let amount = amount(&c.amount)?;
    let eligible_cutoff = BirthDate::parse(&c.eligible_cutoff).map_err(|_| {
        Rejection::new("cutoff_invalid", format!("eligible_cutoff {:?} is not a real calendar date YYYY-MM-DD", truncate(&c.eligible_cutoff, 32)))
    })?;
    let period = period(&c.period)?;
    let legal_basis = text(&c.legal_basis, "legal basis")?;
    if state.program(&c.program_id).is_some() {
        return Err(Rejection::new("program_exists", format!("program {:?} is already defined", c.program_id)));
    }
    Ok(vec![EventData::OneOffProgramDefined(OneOffProgramDefined {
        program_id: c.program_id.clone(),
        name: name.to_string(),
        amount,
        eligible_cutoff,
        period,
        legal_basis,
    })])
}

fn fund_one_off(state: &State, c: &FundOneOff) -> Decision {
    let amount = amount(&c.amount)?;
    let reference = text(&c.reference, "reference")?;
    let (_, o) = one_off_program(state, &c.program_id)?;
    Ok(vec![EventData::OneOffFunded(OneOffFunded { program_id: c.program_id.clone(), period: o.period, amount, reference })])
}

// ---- enrollment lifecycle ------------------------------------------------------------------

fn enroll(state: &State, c: &EnrollBeneficiary, issued_at: &Timestamp) -> Decision {
    let citizen_id = current_citizen(state, &c.citizen_id)?;
    let date_of_birth = date_of_birth(&c.date_of_birth, issued_at)?;
    citizen_id.check_consistency(date_of_birth.year(), c.sex).map_err(|e| Rejection::new(e.code(), e.to_string()))?;
    let full_name = text::name(&c.full_name, NAME_LEN_MAX).map_err(|e| {
        Rejection::new("full_name_invalid", format!("full name {e}: it must be 1-{NAME_LEN_MAX} characters with a letter, no control or invisible character"))
    })?;
    let attestation = attestation(&c.attestation, issued_at)?;
    let account = c.account.check()?;
    let province = province(&c.province)?;
    let effective_from = period(&c.effective_from)?;
    if effective_from < date_of_birth.period() {
        return Err(Rejection::new("period_invalid", "effective month is before the date of birth"));
    }
    let rules = &program(state, &c.program_id)?.rules;
    if !rules.categories.contains_key(&c.category) {
        return Err(Rejection::new("category_unknown", format!("program {:?} has no category {:?}", c.program_id, c.category)));
    }
    if let Some((_, person)) = state.person(&citizen_id) {
        if state.enrollment(&citizen_id, &c.program_id).is_some() {
            return Err(Rejection::new("already_enrolled", format!("{} is already enrolled in {:?}", citizen_id.masked(), c.program_id)));
        }
        if person.date_of_birth != date_of_birth || person.sex != c.sex {
            return Err(Rejection::new("identity_mismatch", "date of birth or sex differ from the existing enrollment of this citizen"));
        }
    }
    Ok(vec![EventData::BeneficiaryEnrolled(BeneficiaryEnrolled {
        citizen_id,
        program_id: c.program_id.clone(),
        province,
        full_name: full_name.to_string(),
        date_of_birth,
        sex: c.sex,
        category: c.category.clone(),
        effective_from,
        account,
        attestation,
    })])
}

fn change_account(state: &State, c: &ChangePaymentAccount) -> Decision {
    let citizen_id = current_citizen(state, &c.citizen_id)?;
    let account = c.account.check()?;
    let (_, person) = state.person(&citizen_id).ok_or_else(|| Rejection::new("not_enrolled", format!("{} is not enrolled", citizen_id.masked())))?;
    if person.account().to_account() == account {
        return Err(Rejection::new("account_unchanged", "this account is already on record"));
    }
    Ok(vec![EventData::PaymentAccountChanged(PaymentAccountChanged { citizen_id, account })])
}

/// A change to an enrollment from `effective_from` on: never after termination, never dated
/// before a change already recorded (history stays in order).
fn changeable(e: &Enrollment, effective_from: Period) -> Result<(), Rejection> {
    if e.is_terminated() {
        return Err(Rejection::new("beneficiary_terminated", "the enrollment is terminated"));
    }
    if effective_from < e.last_change() {
        return Err(Rejection::new(
            "effective_out_of_order",
            format!("effective month {effective_from} is before the last recorded change {}", e.last_change()),
        ));
    }
    Ok(())
}

fn change_category(state: &State, c: &ChangeCategory) -> Decision {
    let citizen_id = current_citizen(state, &c.citizen_id)?;
    let effective_from = period(&c.effective_from)?;
    let rules = &program(state, &c.program_id)?.rules;
    if !rules.categories.contains_key(&c.category) {
        return Err(Rejection::new("category_unknown", format!("program {:?} has no category {:?}", c.program_id, c.category)));
    }
    let e = enrollment(state, &citizen_id, &c.program_id)?;
    changeable(e, effective_from)?;
    Ok(vec![EventData::CategoryChanged(CategoryChanged { citizen_id, program_id: c.program_id.clone(), category: c.category.clone(), effective_from })])
}

fn change_status(state: &State, c: &StatusChange, to: EnrollmentStatus) -> Decision {
    let citizen_id = current_citizen(state, &c.citizen_id)?;
    let effective_from = period(&c.effective_from)?;
    let reason = text(&c.reason, "reason")?;
    program(state, &c.program_id)?;
    let e = enrollment(state, &citizen_id, &c.program_id)?;
    changeable(e, effective_from)?;
    let current = e.status_at(effective_from).expect("effective month is not before the enrollment start");
    let data = EnrollmentStatusChanged { citizen_id, program_id: c.program_id.clone(), effective_from, reason };
    Ok(vec![match to {
        EnrollmentStatus::Suspended if current == EnrollmentStatus::Suspended => {
            return Err(Rejection::new("already_suspended", "the enrollment is already suspended"))
        }
        EnrollmentStatus::Suspended => EventData::BeneficiarySuspended(data),
        EnrollmentStatus::Active if current != EnrollmentStatus::Suspended => {
            return Err(Rejection::new("not_suspended", "only a suspended enrollment can be resumed"))
        }
        EnrollmentStatus::Active => EventData::BeneficiaryResumed(data),
        EnrollmentStatus::Terminated => EventData::BeneficiaryTerminated(data),
    }])
}

/// A re-determined number: it must be free, and its century/sex digit and year must agree with
/// the person's recorded sex and with the corrected date of birth if the command carries one
/// (re-determination often corrects the birth year), else the recorded one. Otherwise a person
/// could be given a number that no later enrollment of theirs could ever match.
fn reassign(state: &State, c: &ReassignCitizenId, issued_at: &Timestamp) -> Decision {
    let old = current_citizen(state, &c.old_citizen_id)?;
    let new = CitizenId::parse(&c.new_citizen_id).map_err(|e| Rejection::new(e.code(), e.to_string()))?;
    let corrected = c.date_of_birth.as_deref().map(|raw| date_of_birth(raw, issued_at)).transpose()?;
    let reason = text(&c.reason, "reason")?;
    let attestation = attestation(&c.attestation, issued_at)?;
    let (_, person) = state.person(&old).ok_or_else(|| Rejection::new("not_enrolled", format!("{} is not enrolled", old.masked())))?;
    if new == old || state.person(&new).is_some() || state.is_reassigned(&new) {
        return Err(Rejection::new("citizen_id_in_use", format!("{} is already in use", new.masked())));
    }
    if new.sex() != person.sex {
        return Err(Rejection::new(
            "citizen_id_sex_mismatch",
            format!("the new number's century/sex digit says {:?}, which is not the recorded sex", new.sex()),
        ));
    }
    match corrected {
        Some(dob) if new.birth_year() != dob.year() => {
            return Err(Rejection::new(
                "citizen_id_birth_year_mismatch",
                format!("the new number says born {}, but the corrected date of birth is in {}", new.birth_year(), dob.year()),
            ))
        }
        None if new.birth_year() != person.date_of_birth.year() => {
            return Err(Rejection::new(
                "citizen_id_birth_year_mismatch",
                format!(
                    "the new number says born {}, which is not the year of the recorded date of birth; send the corrected date_of_birth if the re-determination corrected it",
                    new.birth_year()
                ),
            ))
        }
        _ => {}
    }
    // As at enrollment (`period_invalid`), no enrollment may begin before birth: a correction
    // that puts birth after an enrollment's first month says one of the two is wrong, and which
    // one is not for the engine to guess. The month is not named (the enrollment may be in a
    // program or province the sender may not read).
    if let Some(dob) = corrected.filter(|dob| person.enrollments().any(|e| e.effective_from < dob.period())) {
        return Err(Rejection::new(
            "date_of_birth_after_enrollment",
            format!("the corrected date of birth {dob} is after the first month of an enrollment of this person, which cannot begin before birth: check the date and the enrollment"),
        ));
    }
    Ok(vec![EventData::CitizenIdReassigned(CitizenIdReassigned { old_citizen_id: old, new_citizen_id: new, reason, attestation, date_of_birth: corrected })])
}

// ---- payouts ---------------------------------------------------------------------------------

/// A batch id's form, checked alike for regular and one-off batches.
pub(super) fn batch_id_valid(batch_id: &str) -> Result<(), Rejection> {
    if valid_identifier(batch_id, IDENTIFIER_LEN_MAX) {
        Ok(())
    } else {
        Err(Rejection::new("batch_id_invalid", "batch id must be 1-64 characters of [A-Za-z0-9._:-]"))
    }
}

/// A batch of `lines` lines is neither empty nor past `batch_lines_max`, and its id is new (the
/// ids of regular and one-off batches are one namespace).
pub(super) fn batch_sized_and_new(state: &State, batch_id: &str, lines: usize) -> Result<(), Rejection> {
    if lines == 0 {
        return Err(Rejection::new("batch_empty", "the batch has no lines"));
    }
    if lines > state.limits.batch_lines_max {
        return Err(Rejection::new("batch_too_large", format!("{lines} lines, at most {} per batch", state.limits.batch_lines_max)));
    }
    if state.batch(batch_id).is_some() {
        return Err(Rejection::new("batch_exists", format!("batch {batch_id:?} was already submitted")));
    }
    Ok(())
}

fn submit_batch(state: &State, c: &SubmitPayoutBatch) -> Decision {
    batch_id_valid(&c.batch_id)?;
    let province = province(&c.province)?;
    let period = period(&c.period)?;
    let program = program(state, &c.program_id)?;
    let rules = &program.rules;
    batch_sized_and_new(state, &c.batch_id, c.lines.len())?;
    if rules.standard_level(&province, period).is_none() {
        return Err(Rejection::new("standard_level_missing", format!("no standard level in force for province {province} in {period}")));
    }
    let mut available = state.budget_available(&province, &c.program_id, period);
    let mut seen: HashSet<u64> = HashSet::with_capacity(c.lines.len());
    // The entitlement of each category for this province and period, computed once.
    let entitlements: Vec<Option<Vnd>> = rules.categories.keys().map(|k| rules.entitlement(k, &province, period)).collect();
    let program_handle = state.program(&c.program_id).map(|(h, _)| h).expect("the program was found above");
    let batch = BatchContext { program, program_handle, province: province_code(&province), entitlements };
    let mut lines = Vec::with_capacity(c.lines.len());
    let (mut instructed, mut rejected) = (0u32, 0u32);
    for (index, line) in c.lines.iter().enumerate() {
        let line_no = u32::try_from(index + 1).expect("batch lines are bounded far below u32::MAX");
        match decide_line(state, c, &batch, period, line, &mut seen, available) {
            Ok((citizen_id, amount, account)) => {
                available -= amount.as_decimal();
                instructed += 1;
                lines.push(EventData::PayoutInstructed(PayoutInstructed {
                    payout_id: payout_id(&c.batch_id, line_no, 0),
                    kind: PayoutKind::Regular,
                    batch_id: c.batch_id.clone(),
                    line_no,
                    reissue_of: None,
                    citizen_id,
                    program_id: c.program_id.clone(),
                    province: province.clone(),
                    period,
                    amount,
                    account,
                }));
            }
            Err(r) => {
                rejected += 1;
                lines.push(EventData::PayoutLineRejected(PayoutLineRejected {
                    batch_id: c.batch_id.clone(),
                    line_no,
                    citizen_id: truncate(&line.citizen_id, 32),
                    amount: truncate(&line.amount, 32),
                    code: r.code.to_string(),
                    message: r.message,
                }));
            }
        }
    }
    assert!(available >= rust_decimal::Decimal::ZERO || instructed == 0, "a batch never overdraws its budget");
    let mut events = Vec::with_capacity(lines.len() + 1);
    events.push(EventData::PayoutBatchSubmitted(PayoutBatchSubmitted {
        batch_id: c.batch_id.clone(),
        program_id: c.program_id.clone(),
        province,
        period,
        lines_total: instructed + rejected,
        lines_instructed: instructed,
        lines_rejected: rejected,
    }));
    events.extend(lines);
    Ok(events)
}

/// Raw input kept in a rejection event is bounded, so a hostile line cannot bloat the log.
pub(super) fn truncate(raw: &str, max_chars: usize) -> String {
    raw.chars().take(max_chars).collect()
}

/// What every line of a batch is checked against.
struct BatchContext<'s> {
    program: &'s Program,
    program_handle: super::handles::ProgramHandle,
    province: super::handles::ProvinceCode,
    entitlements: Vec<Option<Vnd>>,
}

fn decide_line(
    state: &State,
    c: &SubmitPayoutBatch,
    batch: &BatchContext<'_>,
    period: Period,
    line: &PayoutLine,
    seen: &mut HashSet<u64>,
    available: rust_decimal::Decimal,
) -> Result<(CitizenId, Vnd, crate::domain::Account), Rejection> {
    let citizen_id = current_citizen(state, &line.citizen_id)?;
    if !seen.insert(super::handles::cid_number(&citizen_id)) {
        return Err(Rejection::new("duplicate_line", format!("{} is on an earlier line of this batch", citizen_id.masked())));
    }
    let amount = amount(&line.amount)?;
    let found = state.person(&citizen_id).and_then(|(h, p)| p.enrollment(batch.program_handle).map(|e| (h, p, e)));
    let (person_handle, person, e) =
        found.ok_or_else(|| Rejection::new("not_enrolled", format!("{} is not enrolled in {:?}", citizen_id.masked(), c.program_id)))?;
    if e.province != batch.province {
        return Err(Rejection::new(
            "province_mismatch",
            format!("{} is not enrolled in {:?} in province {}", citizen_id.masked(), c.program_id, super::handles::province_str(batch.province)),
        ));
    }
    match e.status_at(period) {
        None => return Err(Rejection::new("not_yet_eligible", format!("entitlement starts in {}", e.effective_from))),
        Some(EnrollmentStatus::Suspended) => return Err(Rejection::new("beneficiary_suspended", format!("suspended for {period}"))),
        Some(EnrollmentStatus::Terminated) => return Err(Rejection::new("beneficiary_terminated", format!("terminated for {period}"))),
        Some(EnrollmentStatus::Active) => {}
    }
    if let Some(existing) = state.regular(person_handle, e.program, period) {
        return Err(Rejection::new("duplicate_payout", format!("regular payout {} already exists for {period}", existing.id())));
    }
    let index = e.category_at(period).expect("an active enrollment has a category");
    let entitlement = batch.entitlements[usize::from(index)].expect("a category in the enrollment exists in its program and a level is in force");
    if amount != entitlement {
        let category = batch.program.category_code(index);
        return Err(Rejection::new("amount_mismatch", format!("amount {amount} differs from the entitlement {entitlement} (category {category}, {period})")));
    }
    if available < amount.as_decimal() {
        return Err(Rejection::new("budget_insufficient", format!("budget available {available} cannot cover {amount}")));
    }
    Ok((citizen_id, amount, person.account().to_account()))
}

fn record_settlements(state: &State, c: &RecordSettlements) -> Decision {
    if crate::domain::reference::bank(&c.bin).is_none() {
        return Err(Rejection::new("bank_unknown", format!("BIN {:?} is not in the bank table", c.bin)));
    }
    if c.items.is_empty() {
        return Err(Rejection::new("settlement_empty", "the report has no items"));
    }
    if c.items.len() > state.limits.settlement_items_max {
        return Err(Rejection::new("settlement_too_large", format!("{} items, at most {}", c.items.len(), state.limits.settlement_items_max)));
    }
    // Status changes made by earlier items of this report.
    let mut changed: HashMap<&str, PayoutStatus> = HashMap::new();
    let mut events = Vec::with_capacity(c.items.len());
    for (index, item) in c.items.iter().enumerate() {
        let item_no = u32::try_from(index + 1).expect("settlement items are bounded far below u32::MAX");
        match decide_item(state, &c.bin, item, &changed) {
            Ok((event, status)) => {
                changed.insert(item.payout_id.as_str(), status);
                events.push(event);
            }
            Err(r) => events.push(EventData::SettlementItemRejected(SettlementItemRejected {
                bin: c.bin.clone(),
                item_no,
                payout_id: truncate(&item.payout_id, IDENTIFIER_LEN_MAX + 8),
                code: r.code.to_string(),
                message: r.message,
            })),
        }
    }
    Ok(events)
}

fn transition_of(p: &PayoutRef<'_>, payout_id: &str, reason: Option<crate::domain::FailureReason>, reference: String) -> PayoutTransition {
    PayoutTransition {
        payout_id: payout_id.to_string(),
        batch_id: p.batch.id.to_string(),
        citizen_id: p.citizen_id(),
        program_id: p.program_id().to_string(),
        province: p.province(),
        period: p.batch.period,
        amount: p.slot.amount(),
        bin: p.bin(),
        reason,
        reference,
    }
}

fn decide_item(state: &State, bin: &str, item: &SettlementItem, changed: &HashMap<&str, PayoutStatus>) -> Result<(EventData, PayoutStatus), Rejection> {
    let p = state.payout(&item.payout_id).ok_or_else(|| Rejection::new("payout_unknown", format!("no payout {:?}", truncate(&item.payout_id, 80))))?;
    if p.bin() != bin {
        return Err(Rejection::new("bank_mismatch", format!("payout {} is routed to another bank", item.payout_id)));
    }
    let reference = text(&item.bank_reference, "bank reference")?;
    let current = changed.get(item.payout_id.as_str()).copied().unwrap_or(p.status());
    let not_allowed = |to: &str| Rejection::new("payout_state", format!("payout {} is {}; it cannot become {to}", item.payout_id, current.as_str()));
    let t = |reason| transition_of(&p, &item.payout_id, reason, reference.clone());
    match item.status {
        // A settlement with a failure reason says two things; which the bank meant is a guess.
        SettlementStatus::Settled if item.reason.is_some() => Err(Rejection::new(
            "reason_unexpected",
            "a settled item carries a failure reason: report it as failed or returned with the reason, or as settled without one",
        )),
        SettlementStatus::Settled if current == PayoutStatus::Instructed => Ok((EventData::PayoutSettled(t(None)), PayoutStatus::Settled)),
        SettlementStatus::Settled => Err(not_allowed("settled")),
        SettlementStatus::Failed | SettlementStatus::Returned if item.reason.is_none() => {
            Err(Rejection::new("reason_missing", "a failure or return needs a reason"))
        }
        SettlementStatus::Failed if current == PayoutStatus::Instructed => Ok((EventData::PayoutFailed(t(item.reason)), PayoutStatus::Failed)),
        SettlementStatus::Failed => Err(not_allowed("failed")),
        SettlementStatus::Returned if current == PayoutStatus::Settled => Ok((EventData::PayoutReturned(t(item.reason)), PayoutStatus::Returned)),
        SettlementStatus::Returned => Err(not_allowed("returned")),
    }
}

fn open_payout<'s>(state: &'s State, payout_id: &str) -> Result<PayoutRef<'s>, Rejection> {
    let p = state.payout(payout_id).ok_or_else(|| Rejection::new("payout_unknown", format!("no payout {:?}", truncate(payout_id, 80))))?;
    if p.one_off {
        return Err(Rejection::new(
            "program_kind_mismatch",
            format!("payout {payout_id} is of one-off program {:?}: a one-off payout cannot be reissued or written off yet", p.program_id()),
        ));
    }
    if !p.is_open_for_reissue() {
        let why = match p.reissued_as() {
            Some(next) => format!("it was already reissued as {next}"),
            None => format!("it is {}", p.status().as_str()),
        };
        return Err(Rejection::new("payout_state", format!("payout {payout_id} is not failed or returned and open: {why}")));
    }
    Ok(p)
}

fn reissue(state: &State, c: &crate::command::PayoutRef) -> Decision {
    // Not recorded (the new payout carries no reason), but checked as a write-off's is: the
    // same field of the same payload type is not accepted in one command and refused in another.
    text(&c.reason, "reason")?;
    let p = open_payout(state, &c.payout_id)?;
    let person = p.person();
    let e = person.enrollment(p.batch.program).expect("a payout's citizen is enrolled in its program");
    let period = p.batch.period;
    match e.status_at(period) {
        Some(EnrollmentStatus::Suspended) => return Err(Rejection::new("beneficiary_suspended", format!("suspended for {period}"))),
        Some(EnrollmentStatus::Terminated) => return Err(Rejection::new("beneficiary_terminated", format!("terminated for {period}"))),
        _ => {}
    }
    if p.last_reason().is_some_and(|r| r.is_account_problem()) && person.account() == p.account() {
        return Err(Rejection::new("account_unchanged", "the payout failed on this account; record the corrected account first"));
    }
    let amount = p.slot.amount();
    let available = state.budget_available(&p.province(), p.program_id(), period);
    if available < amount.as_decimal() {
        return Err(Rejection::new("budget_insufficient", format!("budget available {available} cannot cover {amount}")));
    }
    Ok(vec![EventData::PayoutInstructed(PayoutInstructed {
        payout_id: payout_id(&p.batch.id, p.key.line, p.reissue_count + 1),
        kind: PayoutKind::Reissue,
        batch_id: p.batch.id.to_string(),
        line_no: p.key.line,
        reissue_of: Some(c.payout_id.clone()),
        citizen_id: p.citizen_id(),
        program_id: p.program_id().to_string(),
        province: p.province(),
        period,
        amount,
        account: person.account().to_account(),
    })])
}

fn write_off(state: &State, c: &crate::command::PayoutRef) -> Decision {
    let reason = text(&c.reason, "reason")?;
    let p = open_payout(state, &c.payout_id)?;
    Ok(vec![EventData::PayoutWrittenOff(transition_of(&p, &c.payout_id, p.last_reason(), reason))])
}
