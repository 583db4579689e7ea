//! The decision state: what `decide` needs to know, built only by `evolve` from events.
//! In memory; rebuilt from the log at start-up. Nothing here reads a clock or does I/O.

use super::vecmap::VecMap;
use crate::domain::{Account, BirthDate, CitizenId, Coefficient, FailureReason, Period, ProgramRules, Sex, Vnd};
use crate::event::{EventData, PayoutKind};
use rust_decimal::Decimal;
use std::collections::{HashMap, HashSet};

/// Bounds on what one command may carry (TigerBeetle style: a limit on everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub batch_lines_max: usize,
    pub settlement_items_max: usize,
    pub categories_max: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { batch_lines_max: 50_000, settlement_items_max: 10_000, categories_max: 64 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollmentStatus {
    Active,
    Suspended,
    Terminated,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Enrollment {
    pub province: String,
    pub effective_from: Period,
    /// Category by the month it took effect.
    pub categories: VecMap<Period, String>,
    /// Status by the month it took effect.
    pub statuses: VecMap<Period, EnrollmentStatus>,
}

impl Enrollment {
    pub fn category_at(&self, period: Period) -> Option<&str> {
        self.categories.at_or_before(&period).map(|(_, c)| c.as_str())
    }
    /// Status in force for a period; `None` before the enrollment starts.
    pub fn status_at(&self, period: Period) -> Option<EnrollmentStatus> {
        self.statuses.at_or_before(&period).map(|(_, s)| *s)
    }
    pub fn is_terminated(&self) -> bool {
        self.statuses.values().any(|s| *s == EnrollmentStatus::Terminated)
    }
    /// The month of the latest recorded change; later changes may not be dated before it.
    pub fn last_change(&self) -> Period {
        let s = self.statuses.keys().next_back().copied().unwrap_or(self.effective_from);
        let c = self.categories.keys().next_back().copied().unwrap_or(self.effective_from);
        s.max(c)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Person {
    pub full_name: String,
    pub date_of_birth: BirthDate,
    pub sex: Sex,
    pub account: Account,
    pub enrollments: VecMap<String, Enrollment>,
    pub payouts: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutStatus {
    Instructed,
    Settled,
    Failed,
    Returned,
    WrittenOff,
}

impl PayoutStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PayoutStatus::Instructed => "instructed",
            PayoutStatus::Settled => "settled",
            PayoutStatus::Failed => "failed",
            PayoutStatus::Returned => "returned",
            PayoutStatus::WrittenOff => "written_off",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Payout {
    pub batch_id: String,
    pub line_no: u32,
    pub citizen_id: CitizenId,
    pub program_id: String,
    pub province: String,
    pub period: Period,
    pub amount: Vnd,
    pub account: Account,
    pub status: PayoutStatus,
    pub last_reason: Option<FailureReason>,
    /// The regular payout this one descends from (itself for a regular payout).
    pub root: String,
    /// On a root: how many reissues it has had (names the next one).
    pub reissue_count: u32,
    pub reissued_as: Option<String>,
}

impl Payout {
    /// Failed or returned, and neither reissued nor written off: money still owed.
    pub fn is_open_for_reissue(&self) -> bool {
        matches!(self.status, PayoutStatus::Failed | PayoutStatus::Returned) && self.reissued_as.is_none()
    }
}

pub type BudgetKey = (String, String, Period);

#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub limits: Limits,
    pub programs: HashMap<String, ProgramRules>,
    /// Available amount per (province, program, period): funded - committed + released.
    pub budgets: HashMap<BudgetKey, Decimal>,
    pub people: HashMap<CitizenId, Person>,
    /// Re-determined numbers: old -> new.
    pub reassigned: HashMap<CitizenId, CitizenId>,
    /// The one regular payout per (citizen, program, period).
    pub regular: HashMap<(CitizenId, String, Period), String>,
    pub payouts: HashMap<String, Payout>,
    pub batches: HashSet<String>,
}

impl State {
    pub fn new(limits: Limits) -> State {
        State { limits, ..State::default() }
    }

    pub fn budget_available(&self, province: &str, program_id: &str, period: Period) -> Decimal {
        self.budgets.get(&(province.to_string(), program_id.to_string(), period)).copied().unwrap_or(Decimal::ZERO)
    }

    /// Follows a chain of re-determinations to the number in use now.
    pub fn current_id(&self, id: &CitizenId) -> Option<&CitizenId> {
        let mut cur = self.reassigned.get(id)?;
        let mut hops = 0;
        while let Some(next) = self.reassigned.get(cur) {
            cur = next;
            hops += 1;
            assert!(hops < 1_000, "citizen ID reassignments never form a cycle");
        }
        Some(cur)
    }

    fn budget_mut(&mut self, province: &str, program_id: &str, period: Period) -> &mut Decimal {
        self.budgets.entry((province.to_string(), program_id.to_string(), period)).or_default()
    }

    /// Applies one event. Events were decided against this state, so a missing entity here
    /// means the log and the code disagree: that is a bug worth stopping for.
    pub fn evolve(&mut self, event: &EventData) {
        match event {
            EventData::ProgramDefined(e) => {
                let rules = ProgramRules {
                    name: e.name.clone(),
                    categories: e.categories.iter().map(|(k, v): (&String, &Coefficient)| (k.clone(), *v)).collect(),
                    ..ProgramRules::default()
                };
                self.programs.insert(e.program_id.clone(), rules);
            }
            EventData::StandardLevelSet(e) => {
                let rules = self.programs.get_mut(&e.program_id).expect("standard_level.set follows program.defined");
                match &e.province {
                    None => rules.national_levels.insert(e.effective_from, e.amount),
                    Some(p) => rules.province_levels.entry(p.clone()).or_default().insert(e.effective_from, e.amount),
                };
            }
            EventData::BudgetFunded(e) => {
                let b = self.budget_mut(&e.province, &e.program_id, e.period);
                *b += e.amount.as_decimal();
            }
            EventData::BeneficiaryEnrolled(e) => {
                let person = self.people.entry(e.citizen_id.clone()).or_insert_with(|| Person {
                    full_name: e.full_name.clone(),
                    date_of_birth: e.date_of_birth,
                    sex: e.sex,
                    account: e.account.clone(),
                    enrollments: VecMap::default(),
                    payouts: Vec::new(),
                });
                person.full_name = e.full_name.clone();
                person.account = e.account.clone();
                person.enrollments.insert(
                    e.program_id.clone(),
                    Enrollment {
                        province: e.province.clone(),
                        effective_from: e.effective_from,
                        categories: VecMap::one(e.effective_from, e.category.clone()),
                        statuses: VecMap::one(e.effective_from, EnrollmentStatus::Active),
                    },
                );
            }
            EventData::PaymentAccountChanged(e) => {
                self.people.get_mut(&e.citizen_id).expect("account change for an enrolled citizen").account = e.account.clone();
            }
            EventData::CategoryChanged(e) => {
                self.enrollment_mut(&e.citizen_id, &e.program_id).categories.insert(e.effective_from, e.category.clone());
            }
            EventData::BeneficiarySuspended(e) => self.set_status(&e.citizen_id, &e.program_id, e.effective_from, EnrollmentStatus::Suspended),
            EventData::BeneficiaryResumed(e) => self.set_status(&e.citizen_id, &e.program_id, e.effective_from, EnrollmentStatus::Active),
            EventData::BeneficiaryTerminated(e) => self.set_status(&e.citizen_id, &e.program_id, e.effective_from, EnrollmentStatus::Terminated),
            EventData::CitizenIdReassigned(e) => {
                let mut person = self.people.remove(&e.old_citizen_id).expect("reassignment of an enrolled citizen");
                if let Some(corrected) = e.date_of_birth {
                    person.date_of_birth = corrected;
                }
                for payout_id in &person.payouts {
                    let p = self.payouts.get_mut(payout_id).expect("a person's payouts exist");
                    p.citizen_id = e.new_citizen_id.clone();
                    if p.root == *payout_id {
                        let key = (e.old_citizen_id.clone(), p.program_id.clone(), p.period);
                        let id = self.regular.remove(&key).expect("a regular payout is indexed");
                        self.regular.insert((e.new_citizen_id.clone(), key.1, key.2), id);
                    }
                }
                self.people.insert(e.new_citizen_id.clone(), person);
                self.reassigned.insert(e.old_citizen_id.clone(), e.new_citizen_id.clone());
            }
            EventData::PayoutBatchSubmitted(e) => {
                self.batches.insert(e.batch_id.clone());
            }
            EventData::PayoutInstructed(e) => {
                *self.budget_mut(&e.province, &e.program_id, e.period) -= e.amount.as_decimal();
                let root = match (&e.kind, &e.reissue_of) {
                    (PayoutKind::Reissue, Some(orig)) => {
                        let original = self.payouts.get_mut(orig).expect("a reissue names an existing payout");
                        original.reissued_as = Some(e.payout_id.clone());
                        let root = original.root.clone();
                        self.payouts.get_mut(&root).expect("a payout's root exists").reissue_count += 1;
                        root
                    }
                    _ => {
                        self.regular.insert((e.citizen_id.clone(), e.program_id.clone(), e.period), e.payout_id.clone());
                        e.payout_id.clone()
                    }
                };
                self.payouts.insert(
                    e.payout_id.clone(),
                    Payout {
                        batch_id: e.batch_id.clone(),
                        line_no: e.line_no,
                        citizen_id: e.citizen_id.clone(),
                        program_id: e.program_id.clone(),
                        province: e.province.clone(),
                        period: e.period,
                        amount: e.amount,
                        account: e.account.clone(),
                        status: PayoutStatus::Instructed,
                        last_reason: None,
                        root,
                        reissue_count: 0,
                        reissued_as: None,
                    },
                );
                self.people.get_mut(&e.citizen_id).expect("payouts go to enrolled citizens").payouts.push(e.payout_id.clone());
            }
            EventData::PayoutSettled(e) => self.transition(&e.payout_id, PayoutStatus::Settled, None),
            EventData::PayoutFailed(e) => {
                self.transition(&e.payout_id, PayoutStatus::Failed, e.reason);
                *self.budget_mut(&e.province, &e.program_id, e.period) += e.amount.as_decimal();
            }
            EventData::PayoutReturned(e) => {
                self.transition(&e.payout_id, PayoutStatus::Returned, e.reason);
                *self.budget_mut(&e.province, &e.program_id, e.period) += e.amount.as_decimal();
            }
            EventData::PayoutWrittenOff(e) => self.transition(&e.payout_id, PayoutStatus::WrittenOff, e.reason),
            EventData::PayoutLineRejected(_) | EventData::SettlementItemRejected(_) | EventData::CommandRejected(_) => {}
        }
    }

    fn enrollment_mut(&mut self, citizen_id: &CitizenId, program_id: &str) -> &mut Enrollment {
        self.people.get_mut(citizen_id).and_then(|p| p.enrollments.get_mut(program_id)).expect("enrollment changes follow beneficiary.enrolled")
    }

    fn set_status(&mut self, citizen_id: &CitizenId, program_id: &str, from: Period, status: EnrollmentStatus) {
        self.enrollment_mut(citizen_id, program_id).statuses.insert(from, status);
    }

    fn transition(&mut self, payout_id: &str, status: PayoutStatus, reason: Option<FailureReason>) {
        let p = self.payouts.get_mut(payout_id).expect("payout transitions follow payout.instructed");
        p.status = status;
        if reason.is_some() {
            p.last_reason = reason;
        }
    }
}
