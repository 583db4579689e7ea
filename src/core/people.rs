//! The people of the decision state, compact: a national register holds millions of them, so a
//! person is a fixed 80-byte record in a chunked arena, addressed by a dense handle assigned in
//! log order (replay assigns the same ones). What `decide` never reads (names, attestations) is
//! not kept; the account is kept once per person with its history, and payouts refer to it by
//! version. Strings live in one allocation per account.

use super::handles::{Chunked, ProgramHandle, ProvinceCode};
use crate::domain::{Account, BirthDate, Period, Sex};

/// Dense index of a person, in order of first enrollment.
pub type PersonHandle = u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnrollmentStatus {
    Active,
    Suspended,
    Terminated,
}

/// A payment account: the BIN as a number and the account number and holder name in one
/// string (`<account_no>\u{1f}<holder_name>`; neither may hold control characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactAccount {
    bin: u32,
    text: Box<str>,
}

const SEPARATOR: char = '\u{1f}';

impl CompactAccount {
    pub fn new(account: &Account) -> CompactAccount {
        let bin = account.bin.parse::<u32>().expect("a checked account's BIN is 6 digits");
        assert_eq!(format!("{bin:06}"), account.bin, "a BIN round-trips through its number");
        assert!(!account.account_no.contains(SEPARATOR) && !account.holder_name.contains(SEPARATOR), "checked accounts hold no control characters");
        CompactAccount { bin, text: format!("{}{SEPARATOR}{}", account.account_no, account.holder_name).into_boxed_str() }
    }

    pub fn bin(&self) -> String {
        format!("{:06}", self.bin)
    }

    /// Whether this is `account` (compared without building it).
    pub fn is(&self, account: &Account) -> bool {
        let (no, holder) = self.text.split_once(SEPARATOR).expect("built with a separator");
        account.bin.parse::<u32>().ok() == Some(self.bin) && account.bin.len() == 6 && no == account.account_no && holder == account.holder_name
    }

    pub fn to_account(&self) -> Account {
        let (no, holder) = self.text.split_once(SEPARATOR).expect("built with a separator");
        Account { account_no: no.to_string(), bin: self.bin(), holder_name: holder.to_string() }
    }
}

/// A change to an enrollment from a month on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Category(u8),
    Status(EnrollmentStatus),
}

/// One enrollment: starts active in its first category at `effective_from`; later changes in
/// month order (they may not be dated before the last one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrollment {
    pub program: ProgramHandle,
    pub province: ProvinceCode,
    pub effective_from: Period,
    /// Index of the category in the program's (sorted) categories.
    category: u8,
    changes: Thin<(Period, Change)>,
}

impl Enrollment {
    pub fn new(program: ProgramHandle, province: ProvinceCode, effective_from: Period, category: u8) -> Enrollment {
        Enrollment { program, province, effective_from, category, changes: None }
    }

    fn changes(&self) -> &[(Period, Change)] {
        self.changes.as_deref().map(Vec::as_slice).unwrap_or(&[])
    }

    /// Category (index) in force for a period; `None` before the enrollment starts.
    pub fn category_at(&self, period: Period) -> Option<u8> {
        if period < self.effective_from {
            return None;
        }
        let later = self.changes().iter().take_while(|(p, _)| *p <= period).filter_map(|(_, c)| match c {
            Change::Category(k) => Some(*k),
            Change::Status(_) => None,
        });
        Some(later.last().unwrap_or(self.category))
    }

    /// Status in force for a period; `None` before the enrollment starts.
    pub fn status_at(&self, period: Period) -> Option<EnrollmentStatus> {
        if period < self.effective_from {
            return None;
        }
        let later = self.changes().iter().take_while(|(p, _)| *p <= period).filter_map(|(_, c)| match c {
            Change::Status(s) => Some(*s),
            Change::Category(_) => None,
        });
        Some(later.last().unwrap_or(EnrollmentStatus::Active))
    }

    pub fn is_terminated(&self) -> bool {
        self.changes().iter().any(|(_, c)| *c == Change::Status(EnrollmentStatus::Terminated))
    }

    /// The month of the latest recorded change; later changes may not be dated before it.
    pub fn last_change(&self) -> Period {
        self.changes().last().map(|(p, _)| *p).unwrap_or(self.effective_from)
    }

    /// Records a change; `decide` refused any dated before the last one.
    pub fn change(&mut self, from: Period, change: Change) {
        assert!(from >= self.last_change(), "enrollment changes are recorded in month order");
        push(&mut self.changes, (from, change));
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// The citizen ID in use now (12 digits as a number).
    pub cid: u64,
    pub date_of_birth: BirthDate,
    pub sex: Sex,
    /// The current account is the last one.
    account: CompactAccount,
    /// Earlier accounts, oldest first: payouts name their account by version (0 = the first).
    older_accounts: Thin<CompactAccount>,
    first: Enrollment,
    more: Thin<Enrollment>,
}

impl Person {
    pub fn new(cid: u64, date_of_birth: BirthDate, sex: Sex, account: &Account, enrollment: Enrollment) -> Person {
        Person { cid, date_of_birth, sex, account: CompactAccount::new(account), older_accounts: None, first: enrollment, more: None }
    }

    pub fn enrollments(&self) -> impl Iterator<Item = &Enrollment> {
        std::iter::once(&self.first).chain(self.more.iter().flat_map(|m| m.iter()))
    }

    pub fn enrollment(&self, program: ProgramHandle) -> Option<&Enrollment> {
        self.enrollments().find(|e| e.program == program)
    }

    pub fn enrollment_mut(&mut self, program: ProgramHandle) -> Option<&mut Enrollment> {
        if self.first.program == program {
            return Some(&mut self.first);
        }
        self.more.as_mut().and_then(|m| m.iter_mut().find(|e| e.program == program))
    }

    pub fn add_enrollment(&mut self, e: Enrollment) {
        assert!(self.enrollment(e.program).is_none(), "one enrollment per citizen and program");
        push(&mut self.more, e);
    }

    /// Version of the current account (how many accounts the person had before it).
    pub fn account_version(&self) -> u32 {
        self.older_accounts.as_ref().map_or(0, |o| u32::try_from(o.len()).expect("fewer than 4 billion account changes: each is an event in the log"))
    }

    pub fn account(&self) -> &CompactAccount {
        &self.account
    }

    pub fn account_at(&self, version: u32) -> &CompactAccount {
        match self.older_accounts.as_deref() {
            Some(older) if (version as usize) < older.len() => &older[version as usize],
            _ => {
                assert_eq!(version, self.account_version(), "a payout's account version exists");
                &self.account
            }
        }
    }

    /// Makes `account` the current one; the old one stays, for the payouts made to it.
    pub fn set_account(&mut self, account: &Account) {
        let old = std::mem::replace(&mut self.account, CompactAccount::new(account));
        push(&mut self.older_accounts, old);
    }
}

/// A list that is nearly always empty, in 8 bytes of its owner (a `Vec` takes 24, a boxed
/// slice 16): a person has millions of siblings, so the Box around the Vec is the point.
#[allow(clippy::box_collection)]
type Thin<T> = Option<Box<Vec<T>>>;

fn push<T>(slot: &mut Thin<T>, value: T) {
    slot.get_or_insert_with(|| Box::new(Vec::with_capacity(1))).push(value);
}

/// Every person, by handle, in fixed-size chunks (no doubling of one large vector).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct People {
    people: Chunked<Person>,
}

impl People {
    pub fn get(&self, h: PersonHandle) -> &Person {
        self.people.get(h as usize)
    }
    pub fn get_mut(&mut self, h: PersonHandle) -> &mut Person {
        self.people.get_mut(h as usize)
    }
    pub fn push(&mut self, p: Person) -> PersonHandle {
        PersonHandle::try_from(self.people.push(p)).expect("fewer than 4 billion people")
    }
    pub fn len(&self) -> usize {
        self.people.len()
    }
    pub fn is_empty(&self) -> bool {
        self.people.len() == 0
    }
    pub fn iter(&self) -> impl Iterator<Item = &Person> {
        self.people.iter()
    }

    /// Heap bytes of the people (their arena and what each owns), as allocated.
    pub fn heap_bytes(&self) -> usize {
        let owned: usize = self.iter().map(Person::heap_bytes).sum();
        self.people.allocated_bytes() + owned
    }
}

impl Person {
    /// Heap bytes this person owns (account text, earlier accounts, further enrollments and
    /// their changes), as allocated.
    fn heap_bytes(&self) -> usize {
        fn thin<T>(v: &Thin<T>) -> usize {
            v.as_ref().map_or(0, |b| std::mem::size_of::<Vec<T>>() + b.capacity() * std::mem::size_of::<T>())
        }
        let accounts = self.account.text.len() + self.older_accounts.as_ref().map_or(0, |o| o.iter().map(|a| a.text.len()).sum()) + thin(&self.older_accounts);
        let enrollments = self.enrollments().map(|e| thin(&e.changes)).sum::<usize>() + thin(&self.more);
        accounts + enrollments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_structs_stay_small() {
        assert_eq!(std::mem::size_of::<CompactAccount>(), 24);
        assert_eq!(std::mem::size_of::<Enrollment>(), 24);
        assert_eq!(std::mem::size_of::<Person>(), 80);
    }

    #[test]
    fn enrollment_history_answers_by_month() {
        let p = |s| Period::parse(s).unwrap();
        let mut e = Enrollment::new(0, 56, p("2024-07"), 3);
        assert_eq!(e.status_at(p("2024-06")), None);
        assert_eq!(e.category_at(p("2024-07")), Some(3));
        e.change(p("2024-10"), Change::Category(5));
        e.change(p("2025-01"), Change::Status(EnrollmentStatus::Suspended));
        assert_eq!(e.category_at(p("2024-09")), Some(3));
        assert_eq!(e.category_at(p("2025-03")), Some(5));
        assert_eq!(e.status_at(p("2024-12")), Some(EnrollmentStatus::Active));
        assert_eq!(e.status_at(p("2025-01")), Some(EnrollmentStatus::Suspended));
        assert_eq!(e.last_change(), p("2025-01"));
        assert!(!e.is_terminated());
    }

    #[test]
    fn accounts_keep_their_versions() {
        let a = Account { account_no: "0123456".into(), bin: "970436".into(), holder_name: "NGUYỄN THỊ A".into() };
        let b = Account { account_no: "9876543".into(), bin: "970415".into(), holder_name: "NGUYỄN THỊ A".into() };
        let mut person =
            Person::new(56_185_000_123, BirthDate::parse("1985-04-12").unwrap(), Sex::Female, &a, Enrollment::new(0, 56, Period::parse("2024-07").unwrap(), 0));
        assert_eq!(person.account().to_account(), a);
        person.set_account(&b);
        assert_eq!(person.account_version(), 1);
        assert_eq!(person.account_at(0).to_account(), a);
        assert_eq!(person.account_at(1).to_account(), b);
    }
}
