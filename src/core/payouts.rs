//! Payouts in the decision state: a batch holds one 16-byte slot per line, indexed by line
//! number (a batch's lines are dense), and a reissue lives beside the line it descends from.
//! Payout ids are derived, never stored: `<batch_id>-<line:06>` for the regular payout of a
//! line, `<batch_id>-<line:06>-R<n>` for its n-th reissue.

use super::handles::{ProgramHandle, ProvinceCode};
use super::people::PersonHandle;
use crate::domain::{FailureReason, Period, Vnd};

pub type BatchHandle = u32;

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

    const ALL: [PayoutStatus; 5] = [PayoutStatus::Instructed, PayoutStatus::Settled, PayoutStatus::Failed, PayoutStatus::Returned, PayoutStatus::WrittenOff];
}

const REASONS: [FailureReason; 6] = FailureReason::ALL;

fn reason_code(r: Option<FailureReason>) -> u64 {
    r.map_or(0, |r| REASONS.iter().position(|x| *x == r).expect("every reason is listed") as u64 + 1)
}

fn reason_of(code: u64) -> Option<FailureReason> {
    code.checked_sub(1).map(|i| REASONS[i as usize])
}

/// The state of one payout: status, last failure reason, which of the person's accounts it
/// went to. Amount and status packed in one word: amount in bits 0-49 (amounts are at most
/// 10^15 < 2^50), status 50-52 (0: no payout), reason 53-55, bit 56: reissued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    packed: u64,
    pub person: PersonHandle,
    pub account_version: u32,
}

const AMOUNT_BITS: u64 = (1 << 50) - 1;
const REISSUED: u64 = 1 << 56;

impl Slot {
    pub const EMPTY: Slot = Slot { packed: 0, person: PersonHandle::MAX, account_version: 0 };

    pub fn instructed(person: PersonHandle, amount: Vnd, account_version: u32) -> Slot {
        let a = amount.to_u64();
        assert!(a <= AMOUNT_BITS, "amounts are bounded far below 2^50");
        Slot { packed: a | (1 << 50), person, account_version }
    }

    /// The slot of a one-off payout (issue 12): there is no person record, so `person` and
    /// `account_version` hold the citizen number (40 bits: 12 digits < 2^40) and the BIN (20
    /// bits: 6 digits < 2^20) instead: `person` the number's low 32 bits, `account_version`
    /// its high 8 bits and the BIN above them.
    pub fn one_off(citizen: u64, bin: u32, amount: Vnd) -> Slot {
        assert!(citizen < 1 << 40 && bin < 1 << 24, "a citizen number has 12 digits and a BIN 6");
        let mut slot = Slot::instructed((citizen & 0xffff_ffff) as PersonHandle, amount, 0);
        slot.account_version = ((citizen >> 32) as u32) | (bin << 8);
        slot
    }

    /// The citizen number of a one-off payout's slot (see `Slot::one_off`).
    pub fn one_off_citizen(&self) -> u64 {
        u64::from(self.person) | (u64::from(self.account_version & 0xff) << 32)
    }

    /// The BIN of a one-off payout's slot, as a number.
    pub fn one_off_bin(&self) -> u32 {
        self.account_version >> 8
    }

    pub fn is_empty(&self) -> bool {
        self.status_code() == 0
    }

    fn status_code(&self) -> u64 {
        (self.packed >> 50) & 0b111
    }

    pub fn status(&self) -> PayoutStatus {
        let code = self.status_code();
        assert!(code != 0, "only a slot with a payout has a status");
        PayoutStatus::ALL[code as usize - 1]
    }

    pub fn amount(&self) -> Vnd {
        Vnd::from_u64(self.packed & AMOUNT_BITS).expect("slots hold amounts that were valid")
    }

    pub fn reason(&self) -> Option<FailureReason> {
        reason_of((self.packed >> 53) & 0b111)
    }

    pub fn reissued(&self) -> bool {
        self.packed & REISSUED != 0
    }

    pub fn set_status(&mut self, status: PayoutStatus, reason: Option<FailureReason>) {
        let code = PayoutStatus::ALL.iter().position(|s| *s == status).expect("every status is listed") as u64 + 1;
        let reason = if reason.is_some() { reason_code(reason) } else { (self.packed >> 53) & 0b111 };
        self.packed = (self.packed & (AMOUNT_BITS | REISSUED)) | (code << 50) | (reason << 53);
    }

    pub fn mark_reissued(&mut self) {
        assert!(!self.reissued(), "a payout is reissued once");
        self.packed |= REISSUED;
    }

    /// Failed or returned, and neither reissued nor written off: money still owed.
    pub fn is_open_for_reissue(&self) -> bool {
        !self.is_empty() && matches!(self.status(), PayoutStatus::Failed | PayoutStatus::Returned) && !self.reissued()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub id: Box<str>,
    pub program: ProgramHandle,
    pub province: ProvinceCode,
    pub period: Period,
    /// Line n is at index n - 1; a rejected line's slot stays empty.
    pub lines: Box<[Slot]>,
}

/// Which payout: a line's regular payout (`reissue` 0) or its n-th reissue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PayoutKey {
    pub batch: BatchHandle,
    pub line: u32,
    pub reissue: u32,
}

impl PayoutKey {
    pub fn root(&self) -> PayoutKey {
        PayoutKey { reissue: 0, ..*self }
    }
}

/// The id of a payout of batch `batch_id`.
pub fn payout_id(batch_id: &str, line: u32, reissue: u32) -> String {
    if reissue == 0 {
        format!("{batch_id}-{line:06}")
    } else {
        format!("{batch_id}-{line:06}-R{reissue}")
    }
}

/// Splits a payout id into (batch id, line, reissue) when it has the exact form `payout_id`
/// writes (six-digit line from 000001, `R` and a number without leading zeros); anything else is
/// no payout id.
pub fn parse_payout_id(id: &str) -> Option<(&str, u32, u32)> {
    let (root, reissue) = match id.rsplit_once("-R") {
        Some((root, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0') => (root, n.parse::<u32>().ok()?),
        _ => (id, 0),
    };
    let (batch, line) = root.rsplit_once('-')?;
    if line.len() != 6 || !line.bytes().all(|b| b.is_ascii_digit()) || batch.is_empty() {
        return None;
    }
    let line: u32 = line.parse().ok()?;
    (line >= 1).then_some((batch, line, reissue))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 16);
    }

    #[test]
    fn a_one_off_slot_keeps_citizen_bin_and_amount() {
        for (cid, bin) in [(56_095_001_234u64, 970_436u32), (999_999_999_999, 999_999), (1_001_000_000, 970_400)] {
            let mut s = Slot::one_off(cid, bin, Vnd::from_u64(100_000).unwrap());
            assert_eq!((s.one_off_citizen(), s.one_off_bin(), s.amount().to_u64()), (cid, bin, 100_000));
            s.set_status(PayoutStatus::Failed, Some(FailureReason::AccountClosed));
            assert_eq!((s.one_off_citizen(), s.one_off_bin(), s.status()), (cid, bin, PayoutStatus::Failed));
        }
    }

    #[test]
    fn slots_keep_amount_status_and_reason() {
        let mut s = Slot::instructed(7, Vnd::from_u64(1_000_000_000_000_000).unwrap(), 3);
        assert_eq!(s.status(), PayoutStatus::Instructed);
        assert_eq!(s.amount().to_string(), "1000000000000000");
        s.set_status(PayoutStatus::Failed, Some(FailureReason::NameMismatch));
        assert_eq!((s.status(), s.reason()), (PayoutStatus::Failed, Some(FailureReason::NameMismatch)));
        assert!(s.is_open_for_reissue());
        s.set_status(PayoutStatus::WrittenOff, None);
        assert_eq!((s.status(), s.reason()), (PayoutStatus::WrittenOff, Some(FailureReason::NameMismatch)), "a reason stays until another replaces it");
        assert!(!s.is_open_for_reissue());
        assert!(Slot::EMPTY.is_empty());
    }

    #[test]
    fn payout_ids_round_trip_and_nothing_else_parses() {
        for (batch, line, n) in [("KH-2025-01-007", 1, 0), ("A-000001-R1", 42, 0), ("A", 999_999, 3), ("X-R1", 5, 12)] {
            let id = payout_id(batch, line, n);
            assert_eq!(parse_payout_id(&id), Some((batch, line, n)), "{id}");
        }
        for bad in ["", "A", "A-1", "A-0000001", "A-000000", "-000001", "A-000001-R", "A-000001-R01", "A-000001-R0", "A-00000a"] {
            let parsed = parse_payout_id(bad);
            assert!(parsed.is_none_or(|(b, l, n)| payout_id(b, l, n) != bad), "{bad:?} parsed as {parsed:?}");
        }
    }
}
