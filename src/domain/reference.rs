//! Reference tables shipped with the binary: province codes (Circular 07/2016/TT-BCA, 63 codes)
//! and NAPAS bank BINs. Copied from `../shared/domain/` into `data/`; the sources are there.

use std::collections::BTreeMap;
use std::sync::OnceLock;

const PROVINCES_TSV: &str = include_str!("../../data/provinces.tsv");
const BANKS_TSV: &str = include_str!("../../data/banks.tsv");

#[derive(Debug)]
pub struct Bank {
    pub bin: &'static str,
    pub short_name: &'static str,
    pub legal_name: &'static str,
}

fn provinces() -> &'static BTreeMap<&'static str, &'static str> {
    static TABLE: OnceLock<BTreeMap<&'static str, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| {
        PROVINCES_TSV
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut cols = line.split('\t');
                Some((cols.next()?, cols.next()?))
            })
            .collect()
    })
}

fn banks() -> &'static BTreeMap<&'static str, Bank> {
    static TABLE: OnceLock<BTreeMap<&'static str, Bank>> = OnceLock::new();
    TABLE.get_or_init(|| {
        BANKS_TSV
            .lines()
            .skip(1)
            .filter_map(|line| {
                let mut cols = line.split('\t');
                let bin = cols.next()?;
                let short_name = cols.next()?;
                let legal_name = cols.next().unwrap_or("");
                Some((bin, Bank { bin, short_name, legal_name }))
            })
            .collect()
    })
}

/// Name of a province code (pre-2025 name), if the code is in the table.
pub fn province_name(code: &str) -> Option<&'static str> {
    provinces().get(code).copied()
}

pub fn province_codes() -> impl Iterator<Item = &'static str> {
    provinces().keys().copied()
}

pub fn bank(bin: &str) -> Option<&'static Bank> {
    banks().get(bin)
}

pub fn bank_bins() -> impl Iterator<Item = &'static str> {
    banks().keys().copied()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_load() {
        assert_eq!(super::province_codes().count(), 63);
        assert_eq!(super::province_name("056"), Some("Khánh Hòa"));
        assert_eq!(super::bank("970436").map(|b| b.short_name), Some("Vietcombank"));
        assert_eq!(super::bank_bins().count(), 25);
    }
}
