//! Synthetic but realistic beneficiaries for the demo: citizen IDs with real province codes and
//! century/sex digits consistent with the date of birth, ages that fit each Decree 20/2021
//! category, Vietnamese names, accounts spread over the NAPAS BINs. Deterministic per seed;
//! independent of the period, so re-running for another month re-sends identical enrollments.

use crate::command::{Command, DefineProgram, EnrollBeneficiary, PayoutLine, SetStandardLevel, SettlementStatus};
use crate::domain::account::AccountInput;
use crate::domain::program::DECREE_20_CATEGORIES;
use crate::domain::FailureReason;
use crate::domain::{Attestation, Sex};
use std::collections::HashSet;

/// SplitMix64: small, deterministic, good enough to spread synthetic data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Index into weights, chosen with probability proportional to the weight.
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < u64::from(*w) {
                return i;
            }
            x -= u64::from(*w);
        }
        weights.len() - 1
    }
}

/// A stable hash of a string with the seed, for per-payout decisions of the simulated bank.
pub fn hash_of(seed: u64, s: &str) -> u64 {
    let mut rng = Rng::new(seed);
    let mut h = rng.next_u64();
    for b in s.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    Rng::new(h).next_u64()
}

/// (category, weight per 10,000, age range) — weights follow the national mix of about 1.4 M
/// elderly, 1.6 M people with disabilities and small child groups (facts §4).
const CATEGORY_MIX: &[(&str, u32, (u32, u32))] = &[
    ("1a", 20, (0, 3)),
    ("1b", 40, (4, 15)),
    ("2", 20, (16, 21)),
    ("3a", 5, (0, 3)),
    ("3b", 10, (4, 15)),
    ("4", 250, (22, 50)),
    ("5a", 600, (60, 79)),
    ("5a80", 300, (80, 95)),
    ("5b", 400, (75, 79)),
    ("5c", 2_900, (80, 99)),
    ("5d", 100, (60, 90)),
    ("6a", 1_100, (18, 59)),
    ("6b", 900, (60, 90)),
    ("6c", 2_400, (18, 59)),
    ("6d", 700, (6, 15)),
    ("7", 150, (0, 2)),
    ("8", 105, (18, 60)),
];

/// Birth-registration provinces of people living in Khánh Hòa: mostly 056 and 058 (Ninh
/// Thuận, merged into Khánh Hòa in 2025), some born elsewhere.
const BIRTH_PROVINCES: &[(&str, u32)] = &[("056", 70), ("058", 20), ("054", 3), ("052", 2), ("079", 2), ("001", 1), ("040", 1), ("064", 1)];

/// BIN and weight: Agribank and the big state banks carry most social payments.
const BANK_MIX: &[(&str, u32)] = &[
    ("970405", 30),
    ("970436", 14),
    ("970418", 12),
    ("970415", 10),
    ("970422", 5),
    ("970407", 4),
    ("970416", 3),
    ("970432", 3),
    ("970403", 3),
    ("970423", 2),
    ("970449", 4),
    ("970443", 1),
    ("970437", 1),
    ("970441", 1),
    ("970426", 1),
    ("970440", 1),
    ("970448", 1),
    ("970431", 1),
    ("970454", 1),
    ("970446", 1),
    ("970452", 1),
    ("970419", 1),
    ("970428", 1),
    ("970425", 1),
    ("970409", 1),
];

const FAMILY: &[&str] = &["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý"];
const FAMILY_ASCII: &[&str] = &["NGUYEN", "TRAN", "LE", "PHAM", "HOANG", "HUYNH", "PHAN", "VU", "VO", "DANG", "BUI", "DO", "HO", "NGO", "DUONG", "LY"];
const GIVEN_M: &[(&str, &str)] = &[
    ("Văn An", "VAN AN"),
    ("Văn Bình", "VAN BINH"),
    ("Đức Cường", "DUC CUONG"),
    ("Minh Dũng", "MINH DUNG"),
    ("Văn Hùng", "VAN HUNG"),
    ("Quang Nam", "QUANG NAM"),
    ("Hữu Sơn", "HUU SON"),
    ("Anh Tuấn", "ANH TUAN"),
    ("Văn Tâm", "VAN TAM"),
    ("Thanh Phong", "THANH PHONG"),
];
const GIVEN_F: &[(&str, &str)] = &[
    ("Thị Hà", "THI HA"),
    ("Thị Hạnh", "THI HANH"),
    ("Thị Lan", "THI LAN"),
    ("Ngọc Linh", "NGOC LINH"),
    ("Thị Mai", "THI MAI"),
    ("Thu Phương", "THU PHUONG"),
    ("Thị Thảo", "THI THAO"),
    ("Thu Trang", "THU TRANG"),
    ("Thị Vân", "THI VAN"),
    ("Hải Yến", "HAI YEN"),
];

pub struct Beneficiary {
    pub enroll: EnrollBeneficiary,
}

/// Generates `n` distinct beneficiaries administered by `province`.
pub fn beneficiaries(seed: u64, n: usize, province: &str, program_id: &str) -> Vec<Beneficiary> {
    Beneficiaries::new(seed, province, program_id).take(n).collect()
}

/// Distinct synthetic beneficiaries, one at a time (a national month is millions: the
/// benchmarks stream them rather than hold them). The same seed gives the same people.
pub struct Beneficiaries {
    seed: u64,
    rng: Rng,
    province: String,
    program_id: String,
    weights: Vec<u32>,
    prov_weights: Vec<u32>,
    bank_weights: Vec<u32>,
    used: HashSet<u64>,
    made: usize,
}

impl Beneficiaries {
    pub fn new(seed: u64, province: &str, program_id: &str) -> Beneficiaries {
        Beneficiaries {
            seed,
            rng: Rng::new(seed),
            province: province.to_string(),
            program_id: program_id.to_string(),
            weights: CATEGORY_MIX.iter().map(|c| c.1).collect(),
            prov_weights: BIRTH_PROVINCES.iter().map(|p| p.1).collect(),
            bank_weights: BANK_MIX.iter().map(|b| b.1).collect(),
            used: HashSet::new(),
            made: 0,
        }
    }
}

impl Iterator for Beneficiaries {
    type Item = Beneficiary;

    fn next(&mut self) -> Option<Beneficiary> {
        const REFERENCE_YEAR: u32 = 2025;
        const BORN_BY: (u32, u32, u32) = (2024, 12, 19);
        let rng = &mut self.rng;
        loop {
            let (category, _, (age_lo, age_hi)) = CATEGORY_MIX[rng.weighted(&self.weights)];
            let age = age_lo + rng.below(u64::from(age_hi - age_lo + 1)) as u32;
            let mut year = REFERENCE_YEAR - age;
            let month = 1 + rng.below(12) as u32;
            let day = 1 + rng.below(28) as u32;
            // Born before the enrollment is issued (2024-12-20): a later birth date is refused
            // (`date_of_birth_in_future`). Only the youngest move, a year earlier each time.
            while (year, month, day) > BORN_BY {
                year -= 1;
            }
            let sex = if rng.below(100) < 55 { Sex::Female } else { Sex::Male };
            let century = (year - 1900) / 100;
            let g = century * 2 + u32::from(sex == Sex::Female);
            let birth_province = BIRTH_PROVINCES[rng.weighted(&self.prov_weights)].0;
            let citizen_id = format!("{birth_province}{g}{:02}{:06}", year % 100, rng.below(1_000_000));
            if !self.used.insert(citizen_id.parse().expect("12 digits")) {
                continue;
            }
            let family = rng.below(FAMILY.len() as u64) as usize;
            let (given, given_ascii) = if sex == Sex::Female { GIVEN_F[rng.below(10) as usize] } else { GIVEN_M[rng.below(10) as usize] };
            let bin = BANK_MIX[rng.weighted(&self.bank_weights)].0;
            let account_no = account_number(rng);
            // Entitlement from the month the decision was signed: between 2021-07 and 2024-12,
            // never before birth.
            let start_index = 2021 * 12 + 6 + rng.below(42) as u32;
            let birth_index = year * 12 + (month - 1);
            let start = start_index.max(birth_index + 1);
            let i = self.made;
            self.made += 1;
            return Some(Beneficiary {
                enroll: EnrollBeneficiary {
                    citizen_id,
                    program_id: self.program_id.clone(),
                    province: self.province.clone(),
                    full_name: format!("{} {given}", FAMILY[family]),
                    date_of_birth: format!("{year:04}-{month:02}-{day:02}"),
                    sex,
                    category: category.to_string(),
                    effective_from: format!("{:04}-{:02}", start / 12, start % 12 + 1),
                    account: AccountInput { bin: bin.to_string(), account_no, holder_name: format!("{} {given_ascii}", FAMILY_ASCII[family]) },
                    attestation: Some(Attestation {
                        provider: "VNeID".into(),
                        level: 2,
                        reference: format!("VNEID-L2-{}-{i:07}", self.seed),
                        verified_at: "2024-12-15T09:30:00+07:00".into(),
                    }),
                },
            });
        }
    }
}

/// A fresh account number (10-14 digits), as the beneficiary gives after a failure.
pub fn account_number(rng: &mut Rng) -> String {
    let len = 10 + rng.below(5) as usize;
    (0..len).map(|i| char::from(b'0' + if i == 0 { 1 + rng.below(9) as u8 } else { rng.below(10) as u8 })).collect()
}

/// Realistic mistakes of a spreadsheet list, applied to a batch's lines: an amount left at the
/// old standard level, a pasted duplicate row, a mistyped citizen ID. Returns how many of each.
pub fn spoil_lines(rng: &mut Rng, lines: &mut Vec<PayoutLine>) -> (usize, usize, usize) {
    let n = lines.len();
    if n < 50 {
        return (0, 0, 0);
    }
    let stale = n / 500;
    let dupes = spoiled_len(n) - n;
    let typos = n / 2_000 + 1;
    for _ in 0..stale {
        let i = rng.below(n as u64) as usize;
        if let Ok(v) = lines[i].amount.parse::<u64>() {
            // 500,000 -> 360,000 level: the old amount is 72 % of the new.
            lines[i].amount = (v / 500_000 * 360_000 + (v % 500_000) * 360 / 500).to_string();
        }
    }
    for _ in 0..typos {
        let i = rng.below(n as u64) as usize;
        let mut id: Vec<u8> = lines[i].citizen_id.clone().into_bytes();
        let last = id.len() - 1;
        id[last] = b'0' + ((id[last] - b'0' + 1) % 10);
        lines[i].citizen_id = String::from_utf8(id).expect("digits stay ASCII");
    }
    for _ in 0..dupes {
        let i = rng.below(n as u64) as usize;
        let copy = lines[i].clone();
        lines.push(copy);
    }
    (stale, dupes, typos)
}

/// How many lines `spoil_lines` leaves in a list of `n` (it pastes duplicate rows into lists of
/// 50 lines or more).
pub fn spoiled_len(n: usize) -> usize {
    if n < 50 {
        n
    } else {
        n + n / 2_000 + 1
    }
}

/// The program rules every demo starts from, as (command id, issued_at, command): the monthly
/// social allowance with the Decree 20/2021 categories and the national standard levels. The
/// ids do not depend on the seed, so every run and every file agrees on them.
pub fn program_rules(program_id: &str) -> Vec<(String, &'static str, Command)> {
    let level = |from: &str, amount: &str, basis: &str| {
        Command::SetStandardLevel(SetStandardLevel {
            program_id: program_id.into(),
            province: None,
            effective_from: from.into(),
            amount: amount.into(),
            legal_basis: basis.into(),
        })
    };
    vec![
        (
            "demo-program-social-allowance".into(),
            "2021-06-15T02:00:00Z",
            Command::DefineProgram(DefineProgram {
                program_id: program_id.into(),
                name: "Monthly social allowance (trợ cấp xã hội hằng tháng)".into(),
                categories: DECREE_20_CATEGORIES.iter().map(|(c, k, _)| (c.to_string(), k.to_string())).collect(),
                legal_basis: "Decree 20/2021/NĐ-CP Art. 5-6".into(),
            }),
        ),
        ("demo-level-national-2021-07".into(), "2021-06-15T02:00:00Z", level("2021-07", "360000", "Decree 20/2021/NĐ-CP Art. 4(2)")),
        ("demo-level-national-2024-07".into(), "2024-06-20T02:00:00Z", level("2024-07", "500000", "Decree 76/2024/NĐ-CP")),
    ]
}

/// The simulated bank's answer for a payout: settled, or failed with a realistic reason
/// (account closed 40 %, name mismatch 30 %, invalid account 30 %) for a `failure_rate` share,
/// decided by a hash of the payout id so re-runs and restarts agree.
pub fn simulated_outcome(seed: u64, failure_rate: f64, payout_id: &str) -> (SettlementStatus, Option<FailureReason>) {
    let h = hash_of(seed, payout_id);
    if ((h % 1_000_000) as f64) < failure_rate * 1_000_000.0 {
        let reason = match (h / 1_000_000) % 10 {
            0..=3 => FailureReason::AccountClosed,
            4..=6 => FailureReason::NameMismatch,
            _ => FailureReason::InvalidAccount,
        };
        (SettlementStatus::Failed, Some(reason))
    } else {
        (SettlementStatus::Settled, None)
    }
}
