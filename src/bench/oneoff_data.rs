//! Synthetic one-off lines (issue 12) for benchmarks and tests: line `n` of a run is a pure
//! function of `n`, so any run is reproducible and nothing is held per line but its number while
//! it waits for its partition's batch. Citizen IDs are valid (a province of the table, a
//! century/sex digit and year for a birth in 1930-2007, a serial) and distinct: line `n` is the
//! `n`-th combination of (province, sex, year) then serial, a bijection, so no two lines share
//! a number. About 90 % have an account at a bank of the table (BINs in turn), the rest a
//! 5-digit commune to be paid in cash at. Every number was assigned between 2016 and 2024,
//! before the cutoff of 30 Aug 2025.
//!
//! `OneOffBatches` groups lines by partition (`shard::partition_of`) into
//! `submit_one_off_batch` envelopes of at most `batch_max` lines, streaming: it holds at most
//! `batch_max` line numbers (8 bytes each) per partition, 1,024 partitions, whatever the total
//! (4,000,000 lines in batches of 1,000 hold at most ~8 MB of numbers).

use crate::command::{Command, CommandEnvelope, OneOffLine, SubmitOneOffBatch};
use crate::domain::account::AccountInput;
use crate::domain::reference::{bank_bins, province_codes};
use crate::shard::{partition_of, PARTITIONS};

/// Birth years 1930..=2007: 78 of them.
const YEARS: u64 = 78;

fn mix(n: u64) -> u64 {
    // splitmix64: a fixed, well-spread function of the line number.
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

const HOLDERS: [&str; 8] =
    ["NGUYEN VAN AN", "TRAN THI BINH", "LE VAN CUONG", "PHAM THI DUNG", "HOANG VAN EM", "HUYNH THI GIANG", "VO VAN HAI", "DANG THI KHANH"];

/// How many distinct lines the generator makes: (province, sex, year) combinations times a
/// million serials.
pub fn distinct_lines_max() -> u64 {
    province_codes().count() as u64 * 2 * YEARS * 1_000_000
}

/// The reference tables as lists, once.
struct Tables {
    provinces: Vec<&'static str>,
    bins: Vec<&'static str>,
}

impl Tables {
    fn load() -> Tables {
        Tables { provinces: province_codes().collect(), bins: bank_bins().collect() }
    }

    /// Line `n`: its citizen ID's partition and the line.
    fn line(&self, n: u64) -> (u16, OneOffLine) {
        let combos = self.provinces.len() as u64 * 2 * YEARS;
        let (combo, serial) = (n % combos, n / combos);
        assert!(serial < 1_000_000, "at most {} distinct lines", distinct_lines_max());
        let province = self.provinces[(combo / (2 * YEARS)) as usize];
        let female = (combo / YEARS) % 2;
        let year = 1930 + combo % YEARS;
        let century = (year - 1900) / 100;
        let digit = century * 2 + female;
        let citizen_id = format!("{province}{digit}{:02}{serial:06}", year % 100);
        let r = mix(n);
        let id_assigned_on = format!("{}-{:02}-{:02}", 2016 + r % 9, 1 + (r >> 8) % 12, 1 + (r >> 16) % 28);
        let (account, commune) = if (r >> 24) % 10 == 0 {
            (None, Some(format!("{:05}", 1 + (r >> 32) % 32_000)))
        } else {
            let bin = self.bins[(n % self.bins.len() as u64) as usize];
            let holder = HOLDERS[((r >> 32) % HOLDERS.len() as u64) as usize];
            (Some(AccountInput { bin: bin.to_string(), account_no: format!("{:010}", (r >> 20) % 10_000_000_000), holder_name: holder.to_string() }), None)
        };
        (partition_of(&citizen_id), OneOffLine { citizen_id, id_assigned_on, account, commune })
    }
}

/// Line `n` of every run, with its partition.
pub fn one_off_line(n: u64) -> (u16, OneOffLine) {
    Tables::load().line(n)
}

/// `lines` one-off lines of `program_id` as `submit_one_off_batch` envelopes of one partition
/// and at most `batch_max` lines each, in a deterministic order: a partition's batch as soon as
/// it is full, the partly filled ones at the end in partition order. Batch `k` of partition `p`
/// is `OO-<p:04>-<k:06>` (its command id too).
pub struct OneOffBatches {
    tables: Tables,
    program_id: String,
    issued_at: String,
    batch_max: usize,
    lines: u64,
    next: u64,
    waiting: Vec<Vec<u64>>,
    batches: Vec<u32>,
    flushed: u16,
}

impl OneOffBatches {
    pub fn new(program_id: &str, issued_at: &str, lines: u64, batch_max: usize) -> OneOffBatches {
        assert!(batch_max >= 1, "a batch holds at least one line");
        OneOffBatches {
            tables: Tables::load(),
            program_id: program_id.to_string(),
            issued_at: issued_at.to_string(),
            batch_max,
            lines,
            next: 0,
            waiting: vec![Vec::new(); usize::from(PARTITIONS)],
            batches: vec![0; usize::from(PARTITIONS)],
            flushed: 0,
        }
    }

    fn envelope(&mut self, partition: u16, numbers: Vec<u64>) -> CommandEnvelope {
        let k = &mut self.batches[usize::from(partition)];
        *k += 1;
        let batch_id = format!("OO-{partition:04}-{k:06}");
        let lines = numbers.iter().map(|n| self.tables.line(*n).1).collect();
        CommandEnvelope {
            command_id: batch_id.clone(),
            v: 1,
            issued_at: self.issued_at.clone(),
            sender: None,
            command: Command::SubmitOneOffBatch(SubmitOneOffBatch { batch_id, program_id: self.program_id.clone(), partition: u32::from(partition), lines }),
        }
    }
}

impl Iterator for OneOffBatches {
    type Item = CommandEnvelope;

    fn next(&mut self) -> Option<CommandEnvelope> {
        while self.next < self.lines {
            let n = self.next;
            self.next += 1;
            let (partition, _) = self.tables.line(n);
            let waiting = &mut self.waiting[usize::from(partition)];
            waiting.push(n);
            if waiting.len() == self.batch_max {
                let numbers = std::mem::take(waiting);
                return Some(self.envelope(partition, numbers));
            }
        }
        while self.flushed < PARTITIONS {
            let partition = self.flushed;
            self.flushed += 1;
            let numbers = std::mem::take(&mut self.waiting[usize::from(partition)]);
            if !numbers.is_empty() {
                return Some(self.envelope(partition, numbers));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CitizenId;

    #[test]
    fn lines_are_valid_distinct_and_grouped_by_partition() {
        let mut seen = std::collections::HashSet::new();
        let (mut lines, mut cash, mut batches) = (0, 0, 0);
        for envelope in OneOffBatches::new("p", "2025-09-01T08:00:00+07:00", 20_000, 7) {
            let Command::SubmitOneOffBatch(b) = envelope.command else { panic!("one-off batches only") };
            assert!((1..=7).contains(&b.lines.len()));
            batches += 1;
            for line in &b.lines {
                let id = CitizenId::parse(&line.citizen_id).expect("a valid citizen ID");
                assert_eq!(u32::from(partition_of(id.as_str())), b.partition);
                assert!((1930..=2007).contains(&id.birth_year()));
                assert!(seen.insert(line.citizen_id.clone()), "distinct numbers");
                assert!(line.id_assigned_on.as_str() < "2025-08-30" && line.id_assigned_on.len() == 10);
                match (&line.account, &line.commune) {
                    (Some(a), None) => assert!(a.check().is_ok(), "{a:?}"),
                    (None, Some(c)) => {
                        assert!(c.len() == 5 && c.bytes().all(|b| b.is_ascii_digit()));
                        cash += 1;
                    }
                    other => panic!("an account or a commune: {other:?}"),
                }
                lines += 1;
            }
        }
        assert_eq!(lines, 20_000);
        assert!((1_500..2_500).contains(&cash), "about 10 % cash: {cash}");
        assert!(batches >= 20_000 / 7, "{batches}");
        assert_eq!(one_off_line(12_345), one_off_line(12_345));
    }
}
