//! The decision state: what `decide` needs to know, built only by `evolve` from events.
//! In memory; rebuilt from the log at start-up. Nothing here reads a clock or does I/O.
//!
//! Compact by design (a national month is millions of people): people, programs, batches are
//! dense integer handles assigned in log order, so replaying the log gives the same ones;
//! provinces and citizen IDs are numbers; a batch's payouts are a vector indexed by line; the
//! account is kept once per person with its history. Strings stay at the edges (commands,
//! events). `evolve` asserts, in release builds too, what may never happen to money: a budget
//! below zero, a second regular payout, a payout, batch or program written over, a transition
//! the lifecycle does not allow. Every replay and every `audit verify` re-checks them.

use super::handles::{cid_number, province_code, ProgramHandle, ProvinceCode};
pub use super::payouts::{parse_payout_id, payout_id, Batch, BatchHandle, PayoutKey, PayoutStatus, Slot};
pub use super::people::{Change, CompactAccount, Enrollment, EnrollmentStatus, People, Person, PersonHandle};
use crate::domain::{BirthDate, CitizenId, FailureReason, Period, ProgramRules, Vnd};
use crate::event::{EventData, PayoutKind, PayoutTransition};
use hashbrown::{DefaultHashBuilder as RandomState, HashMap, HashTable};
use rust_decimal::Decimal;
use std::hash::BuildHasher;

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

/// The most categories a program may have: a category is a `u8` in the state.
pub const CATEGORIES_MAX: usize = 255;

#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub id: Box<str>,
    pub rules: ProgramRules,
}

impl Program {
    /// The category code of an index (categories are kept sorted by code).
    pub fn category_code(&self, index: u8) -> &str {
        self.rules.categories.keys().nth(usize::from(index)).expect("category indexes come from this program").as_str()
    }

    pub fn category_index(&self, code: &str) -> Option<u8> {
        self.rules.categories.keys().position(|k| k == code).map(|i| u8::try_from(i).expect("at most 255 categories"))
    }
}

/// A national one-off program (issue 12) at this shard: its terms, this shard's budget, and
/// the citizen numbers that have a line taken (paid or listed for cash). No person record: a
/// payee costs an 8-byte entry of `taken` (and the 16-byte slot of its payout, for settlement).
#[derive(Clone)]
pub struct OneOff {
    pub amount: Vnd,
    pub eligible_cutoff: BirthDate,
    pub period: Period,
    /// funded - committed (payouts and cash lines) + released (failures, returns).
    available: Decimal,
    /// Citizen numbers with a payout or a cash line in this program, hashed with the state's
    /// `Indexes::hasher`.
    taken: HashTable<u64>,
}

impl OneOff {
    pub fn available(&self) -> Decimal {
        self.available
    }

    /// How many citizens have a line taken (paid or listed for cash).
    pub fn taken_count(&self) -> usize {
        self.taken.len()
    }

    fn sorted_taken(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.taken.iter().copied().collect();
        v.sort_unstable();
        v
    }
}

impl PartialEq for OneOff {
    fn eq(&self, other: &OneOff) -> bool {
        (self.amount, self.eligible_cutoff, self.period, self.available) == (other.amount, other.eligible_cutoff, other.period, other.available)
            && self.sorted_taken() == other.sorted_taken()
    }
}

impl std::fmt::Debug for OneOff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OneOff {{ amount: {}, cutoff: {}, period: {}, available: {}, taken: {} }}",
            self.amount,
            self.eligible_cutoff,
            self.period,
            self.available,
            self.taken.len()
        )
    }
}

/// Reissues of one line, in order (R1 first).
pub type Reissues = Vec<Slot>;

/// The key of the one regular payout per (person, program, period), packed in a word.
fn regular_key(person: PersonHandle, program: ProgramHandle, period: Period) -> u64 {
    (u64::from(person) << 32) | (u64::from(program) << 16) | u64::from(period.months_since_1900())
}

/// The two large indexes hold handles only, hashed by what the handle points to (a person's
/// citizen ID; a payout's person, program and period): 4 and 8 bytes an entry instead of a map's
/// key and value. Hashed with foldhash keyed by a random seed per process (hashbrown's default),
/// so that no list of citizen IDs can be prepared to collide.
#[derive(Clone, Default)]
struct Indexes {
    hasher: RandomState,
    person_by_cid: HashTable<PersonHandle>,
    /// The one regular payout per (person, program, period): its (batch, line).
    regular: HashTable<(BatchHandle, u32)>,
}

impl std::fmt::Debug for Indexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Indexes {{ people: {}, regular: {} }}", self.person_by_cid.len(), self.regular.len())
    }
}

#[derive(Clone, Debug, Default)]
pub struct State {
    pub limits: Limits,
    /// What this engine owns (a shard's provinces and citizen partitions; everything when not
    /// sharded). Not a fact of the log: set at open from the config, read by `decide` only.
    pub ownership: crate::shard::Ownership,
    programs: Vec<Program>,
    program_by_id: HashMap<Box<str>, ProgramHandle>,
    /// Available amount per (province, program, period): funded - committed + released.
    budgets: HashMap<(ProvinceCode, ProgramHandle, Period), Decimal>,
    people: People,
    /// Re-determined numbers: old -> new.
    reassigned: HashMap<u64, u64>,
    indexes: Indexes,
    batches: Vec<Batch>,
    batch_by_id: HashMap<Box<str>, BatchHandle>,
    /// Reissues by the (batch, line) they descend from.
    reissues: HashMap<(BatchHandle, u32), Reissues>,
    /// The one-off programs among `programs` (issue 12), by handle.
    one_offs: HashMap<ProgramHandle, OneOff>,
}

/// Two states are equal when they hold the same facts: the indexes are compared by content (their
/// layout depends on each process's hash seed).
impl PartialEq for State {
    fn eq(&self, other: &State) -> bool {
        let people = |s: &State| {
            let mut v: Vec<(u64, PersonHandle)> = s.indexes.person_by_cid.iter().map(|h| (s.people.get(*h).cid, *h)).collect();
            v.sort_unstable();
            v
        };
        let regular = |s: &State| {
            let mut v: Vec<(BatchHandle, u32)> = s.indexes.regular.iter().copied().collect();
            v.sort_unstable();
            v
        };
        self.limits == other.limits
            && self.programs == other.programs
            && self.program_by_id == other.program_by_id
            && self.budgets == other.budgets
            && self.people == other.people
            && self.reassigned == other.reassigned
            && self.batches == other.batches
            && self.batch_by_id == other.batch_by_id
            && self.reissues == other.reissues
            && self.one_offs == other.one_offs
            && people(self) == people(other)
            && regular(self) == regular(other)
    }
}

impl State {
    fn hash_cid(&self, cid: u64) -> u64 {
        self.indexes.hasher.hash_one(cid)
    }

    fn hash_regular(&self, person: PersonHandle, program: ProgramHandle, period: Period) -> u64 {
        self.indexes.hasher.hash_one(regular_key(person, program, period))
    }

    fn person_handle_of(&self, cid: u64) -> Option<PersonHandle> {
        self.indexes.person_by_cid.find(self.hash_cid(cid), |h| self.people.get(*h).cid == cid).copied()
    }

    fn index_person(&mut self, h: PersonHandle) {
        let (people, hasher) = (&self.people, &self.indexes.hasher);
        let hash = hasher.hash_one(people.get(h).cid);
        self.indexes.person_by_cid.insert_unique(hash, h, |x| hasher.hash_one(people.get(*x).cid));
    }

    /// The (batch, line) of the regular payout of (person, program, period).
    fn regular_of(&self, person: PersonHandle, program: ProgramHandle, period: Period) -> Option<(BatchHandle, u32)> {
        let found = self.indexes.regular.find(self.hash_regular(person, program, period), |(b, l)| {
            let batch = &self.batches[*b as usize];
            batch.program == program && batch.period == period && batch.lines[*l as usize - 1].person == person
        });
        found.copied()
    }

    fn index_regular(&mut self, batch: BatchHandle, line: u32) {
        let (batches, hasher) = (&self.batches, &self.indexes.hasher);
        let key = |(b, l): (BatchHandle, u32)| {
            let batch = &batches[b as usize];
            regular_key(batch.lines[l as usize - 1].person, batch.program, batch.period)
        };
        let hash = hasher.hash_one(key((batch, line)));
        self.indexes.regular.insert_unique(hash, (batch, line), |x| hasher.hash_one(key(*x)));
    }
}

/// What `decide` and the shell read of one payout.
#[derive(Clone, Copy, Debug)]
pub struct PayoutRef<'s> {
    pub key: PayoutKey,
    pub batch: &'s Batch,
    pub slot: Slot,
    /// How many reissues the line has had (names the next one).
    pub reissue_count: u32,
    /// A payout of a one-off program: no person record; the slot holds citizen and BIN.
    pub one_off: bool,
    state: &'s State,
}

impl<'s> PayoutRef<'s> {
    pub fn id(&self) -> String {
        payout_id(&self.batch.id, self.key.line, self.key.reissue)
    }
    pub fn root_id(&self) -> String {
        payout_id(&self.batch.id, self.key.line, 0)
    }
    /// The person of a regular payout or reissue (a one-off payout has none).
    pub fn person(&self) -> &'s Person {
        assert!(!self.one_off, "a one-off payout has no person record");
        self.state.people.get(self.slot.person)
    }
    pub fn citizen_id(&self) -> CitizenId {
        match self.one_off {
            true => super::handles::cid_of(self.slot.one_off_citizen()),
            false => super::handles::cid_of(self.person().cid),
        }
    }
    /// The BIN of the bank the payout was routed to.
    pub fn bin(&self) -> String {
        match self.one_off {
            true => format!("{:06}", self.slot.one_off_bin()),
            false => self.account().bin(),
        }
    }
    pub fn program_id(&self) -> &'s str {
        &self.state.programs[usize::from(self.batch.program)].id
    }
    /// The administering province; `"national"` for a one-off payout.
    pub fn province(&self) -> String {
        match self.one_off {
            true => ONE_OFF_PROVINCE.to_string(),
            false => super::handles::province_str(self.batch.province),
        }
    }
    pub fn status(&self) -> PayoutStatus {
        self.slot.status()
    }
    pub fn last_reason(&self) -> Option<FailureReason> {
        self.slot.reason()
    }
    /// The account a regular payout or reissue was instructed to (a one-off payout's account is
    /// in its `payout.instructed` record only).
    pub fn account(&self) -> &'s CompactAccount {
        self.person().account_at(self.slot.account_version)
    }
    pub fn is_open_for_reissue(&self) -> bool {
        self.slot.is_open_for_reissue()
    }
    /// The payout that replaced this one, if any.
    pub fn reissued_as(&self) -> Option<String> {
        self.slot.reissued().then(|| payout_id(&self.batch.id, self.key.line, self.key.reissue + 1))
    }
}

/// The `province` of a one-off program's payouts, budget view and ledger accounts.
pub const ONE_OFF_PROVINCE: &str = "national";

impl State {
    pub fn new(limits: Limits) -> State {
        State { limits, ..State::default() }
    }

    // ---- reads ---------------------------------------------------------------------------

    pub fn program(&self, program_id: &str) -> Option<(ProgramHandle, &Program)> {
        self.program_by_id.get(program_id).map(|h| (*h, &self.programs[usize::from(*h)]))
    }

    pub fn program_by_handle(&self, h: ProgramHandle) -> &Program {
        &self.programs[usize::from(h)]
    }

    /// The one-off program of a handle, if the program is one.
    pub fn one_off_of(&self, h: ProgramHandle) -> Option<&OneOff> {
        self.one_offs.get(&h)
    }

    /// A one-off program by id.
    pub fn one_off(&self, program_id: &str) -> Option<(ProgramHandle, &OneOff)> {
        let (h, _) = self.program(program_id)?;
        self.one_offs.get(&h).map(|o| (h, o))
    }

    /// Whether a citizen number has a line taken (paid or listed for cash) in a one-off program.
    pub fn one_off_taken(&self, program: ProgramHandle, citizen: u64) -> bool {
        let hash = self.indexes.hasher.hash_one(citizen);
        self.one_offs.get(&program).is_some_and(|o| o.taken.find(hash, |c| *c == citizen).is_some())
    }

    /// How many citizens have a line taken in every one-off program together.
    pub fn one_off_count(&self) -> usize {
        self.one_offs.values().map(|o| o.taken.len()).sum()
    }

    /// The rules of a program, by id.
    pub fn program_rules(&self, program_id: &str) -> Option<&ProgramRules> {
        self.program(program_id).map(|(_, p)| &p.rules)
    }

    pub fn budget_available(&self, province: &str, program_id: &str, period: Period) -> Decimal {
        let Some((program, _)) = self.program(program_id) else { return Decimal::ZERO };
        self.budgets.get(&(province_code(province), program, period)).copied().unwrap_or(Decimal::ZERO)
    }

    pub fn person(&self, id: &CitizenId) -> Option<(PersonHandle, &Person)> {
        self.person_handle_of(cid_number(id)).map(|h| (h, self.people.get(h)))
    }

    pub fn person_by_handle(&self, h: PersonHandle) -> &Person {
        self.people.get(h)
    }

    /// The enrollment of a citizen in a program.
    pub fn enrollment(&self, id: &CitizenId, program_id: &str) -> Option<&Enrollment> {
        let (program, _) = self.program(program_id)?;
        self.person(id)?.1.enrollment(program)
    }

    pub fn people(&self) -> &People {
        &self.people
    }

    /// Whether a number was re-determined (it may not be used again).
    pub fn is_reassigned(&self, id: &CitizenId) -> bool {
        self.reassigned.contains_key(&cid_number(id))
    }

    /// Follows a chain of re-determinations to the number in use now.
    pub fn current_id(&self, id: &CitizenId) -> Option<CitizenId> {
        let mut cur = *self.reassigned.get(&cid_number(id))?;
        let mut hops = 0;
        while let Some(next) = self.reassigned.get(&cur) {
            cur = *next;
            hops += 1;
            assert!(hops < 1_000, "citizen ID reassignments never form a cycle");
        }
        Some(super::handles::cid_of(cur))
    }

    /// What a citizen is owed for a period under a program, when the enrollment is active then:
    /// (administering province, entitlement). For the shell (demo, benchmarks), not `decide`.
    pub fn entitlement(&self, id: &CitizenId, program_id: &str, period: Period) -> Option<(String, crate::domain::Vnd)> {
        let (_, program) = self.program(program_id)?;
        let e = self.enrollment(id, program_id)?;
        if e.status_at(period)? != EnrollmentStatus::Active {
            return None;
        }
        let province = super::handles::province_str(e.province);
        let amount = program.rules.entitlement(program.category_code(e.category_at(period)?), &province, period)?;
        Some((province, amount))
    }

    /// Whether the citizen has their regular payout of a program and period.
    pub fn has_regular_payout(&self, id: &CitizenId, program_id: &str, period: Period) -> bool {
        match (self.person(id), self.program(program_id)) {
            (Some((person, _)), Some((program, _))) => self.regular(person, program, period).is_some(),
            _ => false,
        }
    }

    /// The regular payout of a person, program and period, if one was instructed.
    pub fn regular(&self, person: PersonHandle, program: ProgramHandle, period: Period) -> Option<PayoutRef<'_>> {
        let (batch, line) = self.regular_of(person, program, period)?;
        self.payout_at(PayoutKey { batch, line, reissue: 0 })
    }

    pub fn batch(&self, batch_id: &str) -> Option<(BatchHandle, &Batch)> {
        self.batch_by_id.get(batch_id).map(|h| (*h, &self.batches[*h as usize]))
    }

    pub fn program_count(&self) -> usize {
        self.programs.len()
    }

    /// How many regular payouts were instructed (one per person, program and period).
    pub fn regular_count(&self) -> usize {
        self.indexes.regular.len()
    }

    /// Heap bytes of the decision state, estimated from what each structure has allocated
    /// (capacities; hash tables by their bucket count, a control byte per bucket). What the
    /// state costs per beneficiary-month is this over `regular_count()`; `tests/state_size.rs`
    /// checks the estimate against an allocator that counts.
    pub fn heap_bytes(&self) -> usize {
        fn table<T>(capacity: usize) -> usize {
            if capacity == 0 {
                return 0;
            }
            let buckets = (capacity * 8 / 7).next_power_of_two();
            buckets * (std::mem::size_of::<T>() + 1)
        }
        let programs: usize = self.programs.iter().map(|p| p.id.len() + p.rules.categories.len() * 64 + 256).sum::<usize>()
            + table::<(Box<str>, ProgramHandle)>(self.program_by_id.capacity());
        let budgets = table::<((ProvinceCode, ProgramHandle, Period), Decimal)>(self.budgets.capacity());
        let reassigned = table::<(u64, u64)>(self.reassigned.capacity());
        let indexes = table::<PersonHandle>(self.indexes.person_by_cid.capacity()) + table::<(BatchHandle, u32)>(self.indexes.regular.capacity());
        let batches = self.batches.capacity() * std::mem::size_of::<Batch>()
            + self.batches.iter().map(|b| b.id.len() + b.lines.len() * std::mem::size_of::<Slot>()).sum::<usize>()
            + table::<(Box<str>, BatchHandle)>(self.batch_by_id.capacity())
            + self.batch_by_id.keys().map(|k| k.len()).sum::<usize>();
        let reissues = table::<((BatchHandle, u32), Reissues)>(self.reissues.capacity())
            + self.reissues.values().map(|r| r.capacity() * std::mem::size_of::<Slot>()).sum::<usize>();
        let one_offs =
            table::<(ProgramHandle, OneOff)>(self.one_offs.capacity()) + self.one_offs.values().map(|o| table::<u64>(o.taken.capacity())).sum::<usize>();
        programs + budgets + reassigned + indexes + batches + reissues + one_offs + self.people.heap_bytes()
    }

    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// The payout of an id, if it names one.
    pub fn payout(&self, payout_id: &str) -> Option<PayoutRef<'_>> {
        let (batch_id, line, reissue) = parse_payout_id(payout_id)?;
        let (batch, _) = self.batch(batch_id)?;
        self.payout_at(PayoutKey { batch, line, reissue })
    }

    pub fn payout_at(&self, key: PayoutKey) -> Option<PayoutRef<'_>> {
        let batch = self.batches.get(key.batch as usize)?;
        let root = *batch.lines.get(usize::try_from(key.line).ok()?.checked_sub(1)?)?;
        if root.is_empty() {
            return None;
        }
        let reissues = self.reissues.get(&(key.batch, key.line));
        let reissue_count = reissues.map_or(0, |r| r.len() as u32);
        let slot = match key.reissue {
            0 => root,
            n => *reissues?.get(n as usize - 1)?,
        };
        Some(PayoutRef { key, batch, slot, reissue_count, one_off: self.one_offs.contains_key(&batch.program), state: self })
    }

    // ---- evolve --------------------------------------------------------------------------

    /// Applies one event. Events were decided against this state, so a missing entity here
    /// means the log and the code disagree: that is a bug worth stopping for.
    pub fn evolve(&mut self, event: &EventData) {
        match event {
            EventData::ProgramDefined(e) => {
                assert!(e.categories.len() <= CATEGORIES_MAX, "a program has at most {CATEGORIES_MAX} categories");
                let rules = ProgramRules { name: e.name.clone(), categories: e.categories.clone(), ..ProgramRules::default() };
                let h = ProgramHandle::try_from(self.programs.len()).expect("fewer than 65,536 programs");
                let previous = self.program_by_id.insert(e.program_id.as_str().into(), h);
                assert!(previous.is_none(), "a program is never defined twice");
                self.programs.push(Program { id: e.program_id.as_str().into(), rules });
            }
            EventData::StandardLevelSet(e) => {
                let h = self.program_handle(&e.program_id);
                let rules = &mut self.programs[usize::from(h)].rules;
                match &e.province {
                    None => rules.national_levels.insert(e.effective_from, e.amount),
                    Some(p) => rules.province_levels.entry(p.clone()).or_default().insert(e.effective_from, e.amount),
                };
            }
            EventData::BudgetFunded(e) => {
                let key = (province_code(&e.province), self.program_handle(&e.program_id), e.period);
                let b = self.budgets.entry(key).or_default();
                *b = b.checked_add(e.amount.as_decimal()).expect("budgets stay far below Decimal's range");
            }
            EventData::BeneficiaryEnrolled(e) => {
                let program = self.program_handle(&e.program_id);
                let category = self.programs[usize::from(program)].category_index(&e.category).expect("an enrollment's category exists in its program");
                let enrollment = Enrollment::new(program, province_code(&e.province), e.effective_from, category);
                let cid = cid_number(&e.citizen_id);
                match self.person_handle_of(cid) {
                    Some(h) => {
                        let person = self.people.get_mut(h);
                        person.add_enrollment(enrollment);
                        if !person.account().is(&e.account) {
                            person.set_account(&e.account);
                        }
                    }
                    None => {
                        assert!(!self.reassigned.contains_key(&cid), "a re-determined number is never enrolled again");
                        let h = self.people.push(Person::new(cid, e.date_of_birth, e.sex, &e.account, enrollment));
                        self.index_person(h);
                    }
                }
            }
            EventData::PaymentAccountChanged(e) => {
                let h = self.person_handle(&e.citizen_id);
                self.people.get_mut(h).set_account(&e.account);
            }
            EventData::CategoryChanged(e) => {
                let program = self.program_handle(&e.program_id);
                let category = self.programs[usize::from(program)].category_index(&e.category).expect("a category change names a category of its program");
                self.enrollment_mut(&e.citizen_id, program).change(e.effective_from, Change::Category(category));
            }
            EventData::BeneficiarySuspended(e) => self.set_status(&e.citizen_id, &e.program_id, e.effective_from, EnrollmentStatus::Suspended),
            EventData::BeneficiaryResumed(e) => self.set_status(&e.citizen_id, &e.program_id, e.effective_from, EnrollmentStatus::Active),
            EventData::BeneficiaryTerminated(e) => self.set_status(&e.citizen_id, &e.program_id, e.effective_from, EnrollmentStatus::Terminated),
            EventData::CitizenIdReassigned(e) => {
                let (old, new) = (cid_number(&e.old_citizen_id), cid_number(&e.new_citizen_id));
                assert!(self.person_handle_of(new).is_none() && !self.reassigned.contains_key(&new), "a re-determined number is new");
                let hash = self.hash_cid(old);
                let people = &self.people;
                let Ok(entry) = self.indexes.person_by_cid.find_entry(hash, |h| people.get(*h).cid == old) else {
                    panic!("reassignment of an enrolled citizen")
                };
                let (h, _) = entry.remove();
                let person = self.people.get_mut(h);
                person.cid = new;
                if let Some(corrected) = e.date_of_birth {
                    person.date_of_birth = corrected;
                }
                self.index_person(h);
                self.reassigned.insert(old, new);
            }
            EventData::PayoutBatchSubmitted(e) => {
                let h = BatchHandle::try_from(self.batches.len()).expect("fewer than 4 billion batches");
                let previous = self.batch_by_id.insert(e.batch_id.as_str().into(), h);
                assert!(previous.is_none(), "a batch id is submitted once");
                self.batches.push(Batch {
                    id: e.batch_id.as_str().into(),
                    program: self.program_handle(&e.program_id),
                    province: province_code(&e.province),
                    period: e.period,
                    lines: vec![Slot::EMPTY; e.lines_total as usize].into_boxed_slice(),
                });
            }
            EventData::OneOffProgramDefined(e) => {
                let rules = ProgramRules { name: e.name.clone(), ..ProgramRules::default() };
                let h = ProgramHandle::try_from(self.programs.len()).expect("fewer than 65,536 programs");
                let previous = self.program_by_id.insert(e.program_id.as_str().into(), h);
                assert!(previous.is_none(), "a program is never defined twice");
                self.programs.push(Program { id: e.program_id.as_str().into(), rules });
                let one_off =
                    OneOff { amount: e.amount, eligible_cutoff: e.eligible_cutoff, period: e.period, available: Decimal::ZERO, taken: HashTable::new() };
                self.one_offs.insert(h, one_off);
            }
            EventData::OneOffFunded(e) => {
                let o = self.one_off_mut(&e.program_id);
                assert_eq!(o.period, e.period, "a one-off budget is for its program's period");
                o.available = o.available.checked_add(e.amount.as_decimal()).expect("budgets stay far below Decimal's range");
            }
            EventData::OneOffBatchSubmitted(e) => {
                let program = self.program_handle(&e.program_id);
                assert_eq!(self.one_offs.get(&program).map(|o| o.period), Some(e.period), "a one-off batch names a one-off program and its period");
                let h = BatchHandle::try_from(self.batches.len()).expect("fewer than 4 billion batches");
                let previous = self.batch_by_id.insert(e.batch_id.as_str().into(), h);
                assert!(previous.is_none(), "a batch id is submitted once");
                assert_eq!(e.lines_total, e.lines_instructed + e.lines_cash + e.lines_rejected, "a one-off batch's lines add up");
                self.batches.push(Batch {
                    id: e.batch_id.as_str().into(),
                    program,
                    province: 0,
                    period: e.period,
                    lines: vec![Slot::EMPTY; e.lines_total as usize].into_boxed_slice(),
                });
            }
            EventData::OneOffCashListed(e) => {
                let (batch, _) = self.batch(&e.batch_id).expect("a cash line's batch was submitted");
                assert!((1..=self.batches[batch as usize].lines.len()).contains(&(e.line_no as usize)), "a cash line is a line of its batch");
                assert_eq!(
                    self.program_by_handle(self.batches[batch as usize].program).id.as_ref(),
                    e.program_id.as_str(),
                    "a cash line is of its batch's program"
                );
                self.take_one_off(&e.program_id, cid_number(&e.citizen_id), e.amount);
            }
            EventData::PayoutInstructed(e) if self.one_offs.contains_key(&self.program_handle(&e.program_id)) => self.instruct_one_off(e),
            EventData::PayoutInstructed(e) => self.instruct(e),
            EventData::PayoutSettled(t) => self.transition(t, PayoutStatus::Settled, &[PayoutStatus::Instructed], false),
            EventData::PayoutFailed(t) => self.transition(t, PayoutStatus::Failed, &[PayoutStatus::Instructed], true),
            EventData::PayoutReturned(t) => self.transition(t, PayoutStatus::Returned, &[PayoutStatus::Settled], true),
            EventData::PayoutWrittenOff(t) => self.transition(t, PayoutStatus::WrittenOff, &[PayoutStatus::Failed, PayoutStatus::Returned], false),
            EventData::PayoutLineRejected(_) | EventData::SettlementItemRejected(_) | EventData::CommandRejected(_) => {}
        }
    }

    fn program_handle(&self, program_id: &str) -> ProgramHandle {
        *self.program_by_id.get(program_id).expect("events name defined programs")
    }

    fn person_handle(&self, id: &CitizenId) -> PersonHandle {
        self.person_handle_of(cid_number(id)).expect("events name enrolled citizens by their number in use")
    }

    fn enrollment_mut(&mut self, id: &CitizenId, program: ProgramHandle) -> &mut Enrollment {
        let h = self.person_handle(id);
        self.people.get_mut(h).enrollment_mut(program).expect("enrollment changes follow beneficiary.enrolled")
    }

    fn set_status(&mut self, id: &CitizenId, program_id: &str, from: Period, status: EnrollmentStatus) {
        let program = self.program_handle(program_id);
        self.enrollment_mut(id, program).change(from, Change::Status(status));
    }

    fn budget_mut(&mut self, province: &str, program_id: &str, period: Period) -> &mut Decimal {
        let key = (province_code(province), self.program_handle(program_id), period);
        self.budgets.get_mut(&key).expect("payouts draw on a funded budget")
    }

    fn one_off_mut(&mut self, program_id: &str) -> &mut OneOff {
        let h = self.program_handle(program_id);
        self.one_offs.get_mut(&h).expect("a one-off event names a one-off program")
    }

    /// Commits a one-off line's amount and takes its citizen: at most once per citizen and
    /// program, never past the budget.
    fn take_one_off(&mut self, program_id: &str, citizen: u64, amount: Vnd) {
        let hasher = self.indexes.hasher.clone();
        let o = self.one_off_mut(program_id);
        assert_eq!(amount, o.amount, "a one-off line is for the program's amount");
        o.available -= amount.as_decimal();
        assert!(o.available >= Decimal::ZERO, "a budget is never overdrawn");
        let hash = hasher.hash_one(citizen);
        assert!(o.taken.find(hash, |c| *c == citizen).is_none(), "one one-off payout per citizen and program");
        o.taken.insert_unique(hash, citizen, |c| hasher.hash_one(*c));
    }

    fn instruct_one_off(&mut self, e: &crate::event::PayoutInstructed) {
        assert!(e.kind == PayoutKind::Regular && e.reissue_of.is_none(), "a one-off payout is never a reissue");
        assert_eq!(e.province, ONE_OFF_PROVINCE, "a one-off payout's province is national");
        let (batch_id, line, reissue) = parse_payout_id(&e.payout_id).expect("payout ids have their format");
        assert_eq!((batch_id, line, reissue), (e.batch_id.as_str(), e.line_no, 0), "a payout id names its batch and line");
        let (batch, b) = self.batch(batch_id).expect("a payout's batch was submitted");
        assert_eq!(
            (self.program_by_handle(b.program).id.as_ref(), b.period),
            (e.program_id.as_str(), e.period),
            "a one-off payout is of its batch's program and period"
        );
        let citizen = cid_number(&e.citizen_id);
        self.take_one_off(&e.program_id, citizen, e.amount);
        let bin: u32 = e.account.bin.parse().expect("BINs in events are 6 digits");
        let target = self.batches[batch as usize].lines.get_mut(line as usize - 1).expect("a payout is a line of its batch");
        assert!(target.is_empty(), "a payout is never written over");
        *target = Slot::one_off(citizen, bin, e.amount);
    }

    fn instruct(&mut self, e: &crate::event::PayoutInstructed) {
        let amount = e.amount.as_decimal();
        let budget = self.budget_mut(&e.province, &e.program_id, e.period);
        *budget -= amount;
        assert!(*budget >= Decimal::ZERO, "a budget is never overdrawn");
        let person = self.person_handle(&e.citizen_id);
        let account_version = self.people.get(person).account_version();
        assert!(self.people.get(person).account().is(&e.account), "a payout goes to the person's current account");
        let (batch_id, line, reissue) = parse_payout_id(&e.payout_id).expect("payout ids have their format");
        let (batch, _) = self.batch(batch_id).expect("a payout's batch was submitted");
        assert_eq!((batch_id, line), (e.batch_id.as_str(), e.line_no), "a payout id names its batch and line");
        let slot = Slot::instructed(person, e.amount, account_version);
        match (e.kind, &e.reissue_of) {
            (PayoutKind::Regular, None) => {
                assert_eq!(reissue, 0, "a regular payout id has no reissue suffix");
                let program = self.batches[batch as usize].program;
                assert_eq!(self.batches[batch as usize].period, e.period, "a regular payout is for its batch's period");
                assert!(self.regular_of(person, program, e.period).is_none(), "one regular payout per citizen, program and period");
                let target = &mut self.batches[batch as usize].lines[line as usize - 1];
                assert!(target.is_empty(), "a payout is never written over");
                *target = slot;
                self.index_regular(batch, line);
            }
            (PayoutKind::Reissue, Some(original)) => {
                let of = self.payout(original).expect("a reissue names an existing payout").key;
                assert_eq!((of.batch, of.line), (batch, line), "a reissue descends from its line");
                let reissues = self.reissues.entry((batch, line)).or_default();
                assert_eq!(reissue as usize, reissues.len() + 1, "reissues are numbered in order");
                assert_eq!(of.reissue as usize, reissues.len(), "only the latest payout of a line is reissued");
                reissues.push(slot);
                self.slot_mut(of).mark_reissued();
            }
            _ => panic!("a regular payout has no original; a reissue has one"),
        }
    }

    fn slot_mut(&mut self, key: PayoutKey) -> &mut Slot {
        match key.reissue {
            0 => &mut self.batches[key.batch as usize].lines[key.line as usize - 1],
            n => &mut self.reissues.get_mut(&(key.batch, key.line)).expect("a reissue's line has reissues")[n as usize - 1],
        }
    }

    /// A status change; `release` moves the amount back to the budget (failures, returns).
    fn transition(&mut self, t: &PayoutTransition, to: PayoutStatus, from: &[PayoutStatus], release: bool) {
        let key = self.payout(&t.payout_id).expect("payout transitions follow payout.instructed").key;
        let slot = self.slot_mut(key);
        assert!(from.contains(&slot.status()), "{} -> {} is not a transition of the payout lifecycle", slot.status().as_str(), to.as_str());
        assert_eq!(slot.amount(), t.amount, "a transition carries its payout's amount");
        slot.set_status(to, t.reason);
        if release {
            let program = self.batches[key.batch as usize].program;
            match self.one_offs.get_mut(&program) {
                Some(o) => o.available += t.amount.as_decimal(),
                None => *self.budget_mut(&t.province, &t.program_id, t.period) += t.amount.as_decimal(),
            }
        }
    }
}
