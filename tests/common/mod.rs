//! Shared fixtures for the tests in `tests/`: valid citizens, accounts, a VNeID attestation,
//! builders for the rule events and the wire commands, and a tiny given/when/then harness over
//! the pure core (`decide` + `State::evolve`) and over the `Engine` shell.
//!
//! Reading a scenario: `given(&[events])` builds a `State` by evolving each event;
//! `.when(&command)` decides; `.then_events(&[..])` / `.then_rejected("code")` /
//! `.then_line_rejected("code", line_no)` / `.then_item_rejected("code", item_no)` assert.
//! Every `then_*` that accepts returns the state after the decided events, so a story can go on.

// Each test binary uses its own subset of these fixtures.
#![allow(dead_code)]

use ansinh::command::{
    ChangeCategory, ChangePaymentAccount, Command, CommandEnvelope, DefineProgram, EnrollBeneficiary, FundBudget, PayoutLine, PayoutRef, ReassignCitizenId,
    RecordSettlements, SetStandardLevel, SettlementItem, SettlementStatus, StatusChange, SubmitPayoutBatch,
};
use ansinh::core::{decide, Limits, Rejection, State};
use ansinh::domain::account::AccountInput;
use ansinh::domain::program::DECREE_20_CATEGORIES;
use ansinh::domain::{Account, Attestation, BirthDate, CitizenId, Coefficient, FailureReason, Period, Sex, Vnd};
use ansinh::event::{
    BeneficiaryEnrolled, BudgetFunded, CitizenIdReassigned, EnrollmentStatusChanged, EventData, PayoutBatchSubmitted, PayoutInstructed, PayoutKind,
    PayoutLineRejected, PayoutTransition, ProgramDefined, SettlementItemRejected, StandardLevelSet,
};
use ansinh::outcome::{Outcome, OutcomeStatus};
use ansinh::timefmt::Timestamp;
use ansinh::{Engine, EngineOptions};

// ---- the cast ---------------------------------------------------------------------------------

/// The social-allowance program of Decree 20/2021 (categories and coefficients of Art. 5-6).
pub const PROGRAM: &str = "tro-cap-xa-hoi";
pub const PROGRAM_NAME: &str = "Trợ cấp xã hội hằng tháng";
/// Khánh Hòa: the province that pays in these scenarios.
pub const PROVINCE: &str = "056";
/// TP Hồ Chí Minh.
pub const OTHER_PROVINCE: &str = "079";
/// Vietcombank, where every fixture account is.
pub const VCB: &str = "970436";
/// BIDV: another bank, for corrected accounts and for a bank settling what is not its own.
pub const BIDV: &str = "970418";
pub const ISSUED_AT: &str = "2025-01-20T08:00:00Z";

/// A person as the population database knows them. The IDs are consistent with date of birth
/// and sex: province of birth (3 digits), century/sex digit, two-digit year, six random digits.
#[derive(Clone, Copy, Debug)]
pub struct Citizen {
    pub id: &'static str,
    pub full_name: &'static str,
    pub date_of_birth: &'static str,
    pub sex: Sex,
    pub account_no: &'static str,
    pub holder_name: &'static str,
}

/// Female, born 1985 (digit 1 = female 19xx), birth registered in Khánh Hòa (056).
pub const AN: Citizen = Citizen {
    id: "056185000123",
    full_name: "Nguyễn Thị An",
    date_of_birth: "1985-04-12",
    sex: Sex::Female,
    account_no: "0561000000123",
    holder_name: "NGUYEN THI AN",
};
/// Male, born 1950 (digit 0 = male 19xx), Ninh Thuận (058).
pub const BINH: Citizen = Citizen {
    id: "058050000777",
    full_name: "Trần Văn Bình",
    date_of_birth: "1950-09-02",
    sex: Sex::Male,
    account_no: "0581000000777",
    holder_name: "TRAN VAN BINH",
};
/// Male, born 1940, Hà Nội (001).
pub const CUONG: Citizen = Citizen {
    id: "001040000001",
    full_name: "Lê Văn Cường",
    date_of_birth: "1940-01-15",
    sex: Sex::Male,
    account_no: "0011000000001",
    holder_name: "LE VAN CUONG",
};
/// Female, born 2003 (digit 3 = female 20xx), TP Hồ Chí Minh (079).
pub const DUNG: Citizen = Citizen {
    id: "079303000001",
    full_name: "Phạm Thị Dung",
    date_of_birth: "2003-11-30",
    sex: Sex::Female,
    account_no: "0791000000001",
    holder_name: "PHAM THI DUNG",
};
/// The number AN's identity was re-determined as (same birth year and sex, new serial).
pub const AN_NEW_ID: &str = "056185000999";

pub fn cid(raw: &str) -> CitizenId {
    CitizenId::parse(raw).expect("fixture citizen IDs are valid")
}

pub fn period(raw: &str) -> Period {
    Period::parse(raw).expect("fixture periods are valid")
}

pub fn vnd(amount: u64) -> Vnd {
    Vnd::from_u64(amount).expect("fixture amounts are valid")
}

/// A VNeID level 2 attestation as the identity adapter passes it in.
pub fn attestation() -> Attestation {
    Attestation { provider: "VNeID".into(), level: 2, reference: "VNEID-L2-20241210-0001".into(), verified_at: "2024-12-10T09:30:00+07:00".into() }
}

/// The citizen's own account at Vietcombank (BIN 970436), as sent.
pub fn account_input(c: &Citizen) -> AccountInput {
    AccountInput { bin: VCB.into(), account_no: c.account_no.into(), holder_name: c.holder_name.into() }
}

/// The same account, checked (as it appears in events).
pub fn account(c: &Citizen) -> Account {
    account_input(c).check().expect("fixture accounts are valid")
}

/// A corrected account at BIDV, for after a failure on the first one.
pub fn bidv_account_input(c: &Citizen) -> AccountInput {
    AccountInput { bin: BIDV.into(), account_no: format!("2{}", &c.account_no[1..]), holder_name: c.holder_name.into() }
}

pub fn bidv_account(c: &Citizen) -> Account {
    bidv_account_input(c).check().expect("fixture accounts are valid")
}

// ---- events: rules, budgets, enrollments ----------------------------------------------------

pub fn program_defined() -> EventData {
    EventData::ProgramDefined(ProgramDefined {
        program_id: PROGRAM.into(),
        name: PROGRAM_NAME.into(),
        categories: DECREE_20_CATEGORIES
            .iter()
            .map(|(code, coef, _)| (code.to_string(), Coefficient::parse(coef).expect("Decree 20 coefficients parse")))
            .collect(),
        legal_basis: "Nghị định 20/2021/NĐ-CP".into(),
    })
}

/// The national standard level from a month on.
pub fn standard_level_set(effective_from: &str, amount: u64, legal_basis: &str) -> EventData {
    EventData::StandardLevelSet(StandardLevelSet {
        program_id: PROGRAM.into(),
        province: None,
        effective_from: period(effective_from),
        amount: vnd(amount),
        legal_basis: legal_basis.into(),
    })
}

/// The program and its national levels: 360,000 from 2021-07 (Decree 20/2021), 500,000 from
/// 2024-07 (Decree 76/2024).
pub fn rules() -> Vec<EventData> {
    vec![
        program_defined(),
        standard_level_set("2021-07", 360_000, "Nghị định 20/2021/NĐ-CP"),
        standard_level_set("2024-07", 500_000, "Nghị định 76/2024/NĐ-CP"),
    ]
}

pub fn budget_funded(period_raw: &str, amount: u64) -> EventData {
    EventData::BudgetFunded(BudgetFunded {
        province: PROVINCE.into(),
        program_id: PROGRAM.into(),
        period: period(period_raw),
        amount: vnd(amount),
        reference: format!("KBNN-{period_raw}"),
    })
}

/// Ample budget (100 million đồng) for each month.
pub fn funded(periods: &[&str]) -> Vec<EventData> {
    periods.iter().map(|p| budget_funded(p, 100_000_000)).collect()
}

/// What `enroll_cmd(c, category, effective_from)` decides to, in the paying province.
pub fn enrolled(c: &Citizen, category: &str, effective_from: &str) -> EventData {
    enrolled_in(c, PROVINCE, category, effective_from)
}

pub fn enrolled_in(c: &Citizen, province: &str, category: &str, effective_from: &str) -> EventData {
    EventData::BeneficiaryEnrolled(BeneficiaryEnrolled {
        citizen_id: cid(c.id),
        program_id: PROGRAM.into(),
        province: province.into(),
        full_name: c.full_name.into(),
        date_of_birth: BirthDate::parse(c.date_of_birth).expect("fixture dates of birth are valid"),
        sex: c.sex,
        category: category.into(),
        effective_from: period(effective_from),
        account: account(c),
        attestation: attestation(),
    })
}

fn status_changed(citizen_id: &str, effective_from: &str, reason: &str) -> EnrollmentStatusChanged {
    EnrollmentStatusChanged { citizen_id: cid(citizen_id), program_id: PROGRAM.into(), effective_from: period(effective_from), reason: reason.into() }
}

pub fn suspended(citizen_id: &str, effective_from: &str, reason: &str) -> EventData {
    EventData::BeneficiarySuspended(status_changed(citizen_id, effective_from, reason))
}

pub fn resumed(citizen_id: &str, effective_from: &str, reason: &str) -> EventData {
    EventData::BeneficiaryResumed(status_changed(citizen_id, effective_from, reason))
}

pub fn terminated(citizen_id: &str, effective_from: &str, reason: &str) -> EventData {
    EventData::BeneficiaryTerminated(status_changed(citizen_id, effective_from, reason))
}

pub fn reassigned(old: &str, new: &str, reason: &str) -> EventData {
    EventData::CitizenIdReassigned(CitizenIdReassigned {
        old_citizen_id: cid(old),
        new_citizen_id: cid(new),
        reason: reason.into(),
        attestation: attestation(),
        date_of_birth: None,
    })
}

// ---- events: batches and payouts -------------------------------------------------------------

pub fn batch_submitted(batch_id: &str, period_raw: &str, instructed: u32, rejected: u32) -> EventData {
    EventData::PayoutBatchSubmitted(PayoutBatchSubmitted {
        batch_id: batch_id.into(),
        program_id: PROGRAM.into(),
        province: PROVINCE.into(),
        period: period(period_raw),
        lines_total: instructed + rejected,
        lines_instructed: instructed,
        lines_rejected: rejected,
    })
}

/// The regular payout of line `line_no` of `batch_id`, to the citizen's Vietcombank account.
pub fn instruction(batch_id: &str, line_no: u32, c: &Citizen, period_raw: &str, amount: u64) -> PayoutInstructed {
    PayoutInstructed {
        payout_id: format!("{batch_id}-{line_no:06}"),
        kind: PayoutKind::Regular,
        batch_id: batch_id.into(),
        line_no,
        reissue_of: None,
        citizen_id: cid(c.id),
        program_id: PROGRAM.into(),
        province: PROVINCE.into(),
        period: period(period_raw),
        amount: vnd(amount),
        account: account(c),
    }
}

pub fn instructed(batch_id: &str, line_no: u32, c: &Citizen, period_raw: &str, amount: u64) -> EventData {
    EventData::PayoutInstructed(instruction(batch_id, line_no, c, period_raw, amount))
}

/// Reissue number `n` of `original`'s root, to `account`.
pub fn reissue_of(original: &PayoutInstructed, root_payout_id: &str, n: u32, account: Account) -> PayoutInstructed {
    PayoutInstructed {
        payout_id: format!("{root_payout_id}-R{n}"),
        kind: PayoutKind::Reissue,
        reissue_of: Some(original.payout_id.clone()),
        account,
        ..original.clone()
    }
}

/// A rejected batch line. The message is for people and is not compared (see `then_events`).
pub fn line_rejected(batch_id: &str, line_no: u32, citizen_id: &str, amount: &str, code: &str) -> EventData {
    EventData::PayoutLineRejected(PayoutLineRejected {
        batch_id: batch_id.into(),
        line_no,
        citizen_id: citizen_id.into(),
        amount: amount.into(),
        code: code.into(),
        message: String::new(),
    })
}

/// A transition of payout `p` (as its bank or a write-off reports it).
pub fn transition(p: &PayoutInstructed, reason: Option<FailureReason>, reference: &str) -> PayoutTransition {
    PayoutTransition {
        payout_id: p.payout_id.clone(),
        batch_id: p.batch_id.clone(),
        citizen_id: p.citizen_id.clone(),
        program_id: p.program_id.clone(),
        province: p.province.clone(),
        period: p.period,
        amount: p.amount,
        bin: p.account.bin.clone(),
        reason,
        reference: reference.into(),
    }
}

pub fn settled(p: &PayoutInstructed, reference: &str) -> EventData {
    EventData::PayoutSettled(transition(p, None, reference))
}

pub fn failed(p: &PayoutInstructed, reason: FailureReason, reference: &str) -> EventData {
    EventData::PayoutFailed(transition(p, Some(reason), reference))
}

pub fn returned(p: &PayoutInstructed, reason: FailureReason, reference: &str) -> EventData {
    EventData::PayoutReturned(transition(p, Some(reason), reference))
}

pub fn item_rejected(bin: &str, item_no: u32, payout_id: &str, code: &str) -> EventData {
    EventData::SettlementItemRejected(SettlementItemRejected {
        bin: bin.into(),
        item_no,
        payout_id: payout_id.into(),
        code: code.into(),
        message: String::new(),
    })
}

// ---- commands -------------------------------------------------------------------------------

pub fn define_program_cmd(program_id: &str, name: &str, categories: &[(&str, &str)]) -> Command {
    Command::DefineProgram(DefineProgram {
        program_id: program_id.into(),
        name: name.into(),
        categories: categories.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        legal_basis: "Nghị định 20/2021/NĐ-CP".into(),
    })
}

pub fn set_level_cmd(province: Option<&str>, effective_from: &str, amount: &str) -> Command {
    Command::SetStandardLevel(SetStandardLevel {
        program_id: PROGRAM.into(),
        province: province.map(str::to_string),
        effective_from: effective_from.into(),
        amount: amount.into(),
        legal_basis: String::new(),
    })
}

pub fn fund_payload(period: &str, amount: &str) -> FundBudget {
    FundBudget { province: PROVINCE.into(), program_id: PROGRAM.into(), period: period.into(), amount: amount.into(), reference: format!("KBNN-{period}") }
}

pub fn fund_cmd(period: &str, amount: &str) -> Command {
    Command::FundBudget(fund_payload(period, amount))
}

/// An enrollment as the agency sends it, in the paying province, with a VNeID attestation.
pub fn enroll_payload(c: &Citizen, category: &str, effective_from: &str) -> EnrollBeneficiary {
    EnrollBeneficiary {
        citizen_id: c.id.into(),
        program_id: PROGRAM.into(),
        province: PROVINCE.into(),
        full_name: c.full_name.into(),
        date_of_birth: c.date_of_birth.into(),
        sex: c.sex,
        category: category.into(),
        effective_from: effective_from.into(),
        account: account_input(c),
        attestation: Some(attestation()),
    }
}

pub fn enroll_cmd(c: &Citizen, category: &str, effective_from: &str) -> Command {
    Command::EnrollBeneficiary(enroll_payload(c, category, effective_from))
}

pub fn change_account_cmd(citizen_id: &str, account: AccountInput) -> Command {
    Command::ChangePaymentAccount(ChangePaymentAccount { citizen_id: citizen_id.into(), account })
}

pub fn change_category_cmd(citizen_id: &str, category: &str, effective_from: &str) -> Command {
    Command::ChangeCategory(ChangeCategory {
        citizen_id: citizen_id.into(),
        program_id: PROGRAM.into(),
        category: category.into(),
        effective_from: effective_from.into(),
    })
}

fn status_change(citizen_id: &str, effective_from: &str, reason: &str) -> StatusChange {
    StatusChange { citizen_id: citizen_id.into(), program_id: PROGRAM.into(), effective_from: effective_from.into(), reason: reason.into() }
}

pub fn suspend_cmd(citizen_id: &str, effective_from: &str, reason: &str) -> Command {
    Command::SuspendBeneficiary(status_change(citizen_id, effective_from, reason))
}

pub fn resume_cmd(citizen_id: &str, effective_from: &str, reason: &str) -> Command {
    Command::ResumeBeneficiary(status_change(citizen_id, effective_from, reason))
}

pub fn terminate_cmd(citizen_id: &str, effective_from: &str, reason: &str) -> Command {
    Command::TerminateBeneficiary(status_change(citizen_id, effective_from, reason))
}

pub fn reassign_payload(old: &str, new: &str, reason: &str) -> ReassignCitizenId {
    ReassignCitizenId { old_citizen_id: old.into(), new_citizen_id: new.into(), reason: reason.into(), attestation: Some(attestation()), date_of_birth: None }
}

pub fn reassign_cmd(old: &str, new: &str, reason: &str) -> Command {
    Command::ReassignCitizenId(reassign_payload(old, new, reason))
}

/// A batch of (citizen ID, amount) lines for the paying province.
pub fn batch_payload(batch_id: &str, period: &str, lines: &[(&str, &str)]) -> SubmitPayoutBatch {
    SubmitPayoutBatch {
        batch_id: batch_id.into(),
        program_id: PROGRAM.into(),
        province: PROVINCE.into(),
        period: period.into(),
        lines: lines.iter().map(|(c, a)| PayoutLine { citizen_id: c.to_string(), amount: a.to_string() }).collect(),
    }
}

pub fn batch_cmd(batch_id: &str, period: &str, lines: &[(&str, &str)]) -> Command {
    Command::SubmitPayoutBatch(batch_payload(batch_id, period, lines))
}

pub fn settlements_cmd(bin: &str, items: Vec<SettlementItem>) -> Command {
    Command::RecordSettlements(RecordSettlements { bin: bin.into(), items })
}

pub fn settled_item(payout_id: &str, bank_reference: &str) -> SettlementItem {
    SettlementItem { payout_id: payout_id.into(), status: SettlementStatus::Settled, reason: None, bank_reference: bank_reference.into() }
}

pub fn failed_item(payout_id: &str, reason: FailureReason, bank_reference: &str) -> SettlementItem {
    SettlementItem { payout_id: payout_id.into(), status: SettlementStatus::Failed, reason: Some(reason), bank_reference: bank_reference.into() }
}

pub fn returned_item(payout_id: &str, reason: FailureReason, bank_reference: &str) -> SettlementItem {
    SettlementItem { payout_id: payout_id.into(), status: SettlementStatus::Returned, reason: Some(reason), bank_reference: bank_reference.into() }
}

pub fn reissue_cmd(payout_id: &str) -> Command {
    Command::ReissuePayout(PayoutRef { payout_id: payout_id.into(), reason: String::new() })
}

pub fn write_off_cmd(payout_id: &str, reason: &str) -> Command {
    Command::WriteOffPayout(PayoutRef { payout_id: payout_id.into(), reason: reason.into() })
}

pub fn envelope(command_id: &str, command: Command) -> CommandEnvelope {
    CommandEnvelope { command_id: command_id.into(), v: 1, issued_at: ISSUED_AT.into(), sender: None, command }
}

// ---- given / when / then over the pure core ------------------------------------------------

/// The state after these events, with default limits.
pub fn given(events: &[EventData]) -> State {
    given_with_limits(Limits::default(), events)
}

pub fn given_with_limits(limits: Limits, events: &[EventData]) -> State {
    let mut state = State::new(limits);
    for e in events {
        state.evolve(e);
    }
    state
}

pub trait When {
    fn when(&self, command: &Command) -> Then<'_>;
}

impl When for State {
    fn when(&self, command: &Command) -> Then<'_> {
        self.when_at(command, ISSUED_AT)
    }
}

/// `when`, for a command issued at another time than `ISSUED_AT`.
pub trait WhenAt {
    fn when_at(&self, command: &Command, issued_at: &str) -> Then<'_>;
}

impl WhenAt for State {
    fn when_at(&self, command: &Command, issued_at: &str) -> Then<'_> {
        let at = Timestamp::parse(issued_at).expect("scenario times are valid");
        Then { state: self, command: command.type_name(), result: decide(self, command, &at) }
    }
}

pub struct Then<'s> {
    state: &'s State,
    command: &'static str,
    result: Result<Vec<EventData>, Rejection>,
}

/// Rejection messages are for people and may be reworded; codes are the contract. Compare
/// without messages, after checking that every message says something.
fn without_messages(events: &[EventData]) -> Vec<EventData> {
    events
        .iter()
        .cloned()
        .map(|mut e| {
            match &mut e {
                EventData::PayoutLineRejected(r) => r.message.clear(),
                EventData::SettlementItemRejected(r) => r.message.clear(),
                EventData::CommandRejected(r) => r.message.clear(),
                _ => {}
            }
            e
        })
        .collect()
}

fn assert_messages_present(events: &[EventData]) {
    for e in events {
        let message = match e {
            EventData::PayoutLineRejected(r) => &r.message,
            EventData::SettlementItemRejected(r) => &r.message,
            EventData::CommandRejected(r) => &r.message,
            _ => continue,
        };
        assert!(!message.trim().is_empty(), "a rejection tells the sender why: {e:?}");
    }
}

impl Then<'_> {
    /// The command was accepted; its events and the state after them.
    pub fn then_accepted(self) -> (Vec<EventData>, State) {
        let events = match self.result {
            Ok(events) => events,
            Err(r) => panic!("{} was expected to be accepted, but was rejected: {r}", self.command),
        };
        assert_messages_present(&events);
        let mut state = self.state.clone();
        for e in &events {
            state.evolve(e);
        }
        (events, state)
    }

    /// Exactly these events, in this order (rejection messages aside). Returns the state after.
    pub fn then_events(self, expected: &[EventData]) -> State {
        let command = self.command;
        let (events, state) = self.then_accepted();
        let (actual, expected) = (without_messages(&events), without_messages(expected));
        if actual != expected {
            panic!("{command}: events differ\n  expected: {expected:#?}\n  actual:   {actual:#?}");
        }
        state
    }

    /// The whole command was refused with exactly this code. Returns the rejection.
    pub fn then_rejected(self, code: &str) -> Rejection {
        match self.result {
            Err(r) => {
                assert_eq!(r.code, code, "{}: wrong rejection code ({})", self.command, r.message);
                assert!(!r.message.trim().is_empty(), "a rejection tells the sender why");
                r
            }
            Ok(events) => panic!("{} was expected to be rejected with {code}, but was accepted: {events:#?}", self.command),
        }
    }

    /// The batch was accepted and line `line_no` (from 1) was refused with exactly this code.
    pub fn then_line_rejected(self, code: &str, line_no: u32) -> State {
        let (events, state) = self.then_accepted();
        let found = events.iter().find_map(|e| match e {
            EventData::PayoutLineRejected(r) if r.line_no == line_no => Some(r.code.as_str()),
            EventData::PayoutInstructed(p) if p.line_no == line_no => Some("(instructed)"),
            _ => None,
        });
        assert_eq!(found, Some(code), "line {line_no}: {events:#?}");
        state
    }

    /// The settlement report was accepted and item `item_no` (from 1) was refused with this code.
    pub fn then_item_rejected(self, code: &str, item_no: u32) -> State {
        let (events, state) = self.then_accepted();
        let found = events.iter().find_map(|e| match e {
            EventData::SettlementItemRejected(r) if r.item_no == item_no => Some(r.code.as_str()),
            _ => None,
        });
        assert_eq!(found, Some(code), "item {item_no}: {events:#?}");
        state
    }
}

// ---- the engine shell (real sled in a temp dir) --------------------------------------------

/// An engine on its own temporary data directory, removed when this is dropped.
pub struct TestEngine {
    pub engine: Engine,
    // Dropped after the engine (fields drop in declaration order).
    _dir: tempfile::TempDir,
}

impl TestEngine {
    pub fn open() -> TestEngine {
        let dir = tempfile::tempdir().expect("a temporary directory can be created");
        let engine = Engine::open(&EngineOptions::new(dir.path()), &mut |_, _| {}).expect("a fresh engine opens");
        TestEngine { engine, _dir: dir }
    }

    /// Executes one group and returns its outcomes, in input order.
    pub fn execute(&mut self, commands: &[CommandEnvelope]) -> Vec<Outcome> {
        let outcomes = self.engine.execute(commands).expect("the engine stores the group");
        assert_eq!(outcomes.len(), commands.len(), "one outcome per command");
        outcomes
    }

    pub fn execute_one(&mut self, command: CommandEnvelope) -> Outcome {
        self.execute(&[command]).remove(0)
    }
}

/// Assertions on what the engine answered.
pub trait OutcomeThen {
    fn then_accepted(&self) -> &Self;
    fn then_rejected(&self, code: &str) -> &Self;
}

impl OutcomeThen for Outcome {
    fn then_accepted(&self) -> &Self {
        assert_eq!(self.status, OutcomeStatus::Accepted, "{self:#?}");
        assert_eq!(self.code, None, "{self:#?}");
        self
    }

    fn then_rejected(&self, code: &str) -> &Self {
        assert_eq!(self.status, OutcomeStatus::Rejected, "{self:#?}");
        assert_eq!(self.code.as_deref(), Some(code), "{self:#?}");
        assert!(self.message.as_deref().is_some_and(|m| !m.trim().is_empty()), "a rejection tells the sender why: {self:#?}");
        self
    }
}
