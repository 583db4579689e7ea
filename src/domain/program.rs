//! Program rules: categories with coefficients and effective-dated standard levels.
//! Decree 20/2021/NĐ-CP Art. 4-6 (as amended by Decree 76/2024): amount = coefficient x the
//! standard level in force for the province and period. Rules are themselves events, so a
//! later change never alters what replay computes for an earlier period.

use super::{Period, Vnd};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::str::FromStr;

/// A category coefficient such as 1.5 or 2.5: positive, at most 10, at most 2 decimals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Coefficient(Decimal);

impl Coefficient {
    pub fn parse(raw: &str) -> Option<Coefficient> {
        if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return None;
        }
        // The schema's form, digits with an optional point and 1-2 decimals: `.5` and `1.` are
        // refused, as the pattern refuses them.
        let (whole, decimals) = raw.split_once('.').unwrap_or((raw, "0"));
        if whole.is_empty() || !(1..=2).contains(&decimals.len()) {
            return None;
        }
        let d = Decimal::from_str(raw).ok()?;
        if d <= Decimal::ZERO || d > Decimal::from(10) || d.scale() > 2 {
            return None;
        }
        Some(Coefficient(d.normalize()))
    }
    pub fn as_decimal(&self) -> Decimal {
        self.0
    }
}

impl Serialize for Coefficient {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

impl<'de> Deserialize<'de> for Coefficient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Coefficient::parse(&raw)
            .ok_or_else(|| serde::de::Error::custom(format!("coefficient {raw:?} must be a decimal string in (0, 10] with at most 2 decimals")))
    }
}

impl schemars::JsonSchema for Coefficient {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Coefficient".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": "^[0-9]+(\\.[0-9]{1,2})?$"})
    }
}

/// The rules of one program as they stand after its events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgramRules {
    pub name: String,
    pub categories: BTreeMap<String, Coefficient>,
    /// National levels by effective month.
    pub national_levels: BTreeMap<Period, Vnd>,
    /// Provincial levels (province code -> effective month -> level).
    pub province_levels: BTreeMap<String, BTreeMap<Period, Vnd>>,
}

fn in_force(levels: &BTreeMap<Period, Vnd>, period: Period) -> Option<Vnd> {
    levels.range(..=period).next_back().map(|(_, v)| *v)
}

impl ProgramRules {
    /// The standard level in force for a province and period: the national level, or the
    /// province's own if it set a higher one (Decree 20/2021 Art. 4(3): provinces may set more).
    pub fn standard_level(&self, province: &str, period: Period) -> Option<Vnd> {
        let national = in_force(&self.national_levels, period);
        let local = self.province_levels.get(province).and_then(|l| in_force(l, period));
        match (national, local) {
            (Some(n), Some(l)) => Some(n.max(l)),
            (n, l) => n.or(l),
        }
    }

    /// Monthly entitlement: coefficient x standard level, rounded half-up to whole đồng (no
    /// national rounding rule exists; at national levels no rounding ever happens).
    pub fn entitlement(&self, category: &str, province: &str, period: Period) -> Option<Vnd> {
        let coefficient = self.categories.get(category)?;
        let level = self.standard_level(province, period)?;
        let amount = (coefficient.as_decimal() * level.as_decimal()).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
        Vnd::from_decimal(amount).ok()
    }
}

/// Decree 20/2021 Art. 5-6 categories and coefficients (facts §2.2), as the demo and the
/// example files define the social-allowance program. Category 4 (single parent) is paid per
/// child; this engine models one unit per enrollment (see ARCHITECTURE.md, known gaps).
pub const DECREE_20_CATEGORIES: &[(&str, &str, &str)] = &[
    ("1a", "2.5", "child under 4 without a source of care"),
    ("1b", "1.5", "child 4 to under 16 without a source of care"),
    ("2", "1.5", "16-22 still in education, formerly category 1"),
    ("3a", "2.5", "child with HIV/AIDS in a poor household, under 4"),
    ("3b", "2.0", "child with HIV/AIDS in a poor household, 4 to under 16"),
    ("4", "1.0", "poor single parent, per child raised"),
    ("5a", "1.5", "elderly 60-80, poor, no supporter"),
    ("5a80", "2.0", "elderly 80+, poor, no supporter"),
    ("5b", "1.0", "elderly 75-80, poor, especially difficult commune"),
    ("5c", "1.0", "80+ without pension or monthly benefit"),
    ("5d", "3.0", "elderly poor cared for in the community"),
    ("6a", "2.0", "especially severe disability"),
    ("6b", "2.5", "child or elderly, especially severe disability"),
    ("6c", "1.5", "severe disability"),
    ("6d", "2.0", "child or elderly, severe disability"),
    ("7", "1.5", "child under 3, poor household, especially difficult area"),
    ("8", "1.5", "HIV/AIDS, poor household, no stable income"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ProgramRules {
        let mut r = ProgramRules::default();
        for (code, coef, _) in DECREE_20_CATEGORIES {
            r.categories.insert(code.to_string(), Coefficient::parse(coef).unwrap());
        }
        r.national_levels.insert(Period::parse("2021-07").unwrap(), Vnd::from_u64(360_000).unwrap());
        r.national_levels.insert(Period::parse("2024-07").unwrap(), Vnd::from_u64(500_000).unwrap());
        r
    }

    #[test]
    fn entitlement_follows_the_level_in_force() {
        let r = rules();
        let p = |s| Period::parse(s).unwrap();
        assert_eq!(r.entitlement("1a", "056", p("2024-06")).unwrap().to_string(), "900000");
        assert_eq!(r.entitlement("1a", "056", p("2024-07")).unwrap().to_string(), "1250000");
        assert_eq!(r.entitlement("6c", "056", p("2025-01")).unwrap().to_string(), "750000");
        assert!(r.entitlement("1a", "056", p("2021-06")).is_none());
        assert!(r.entitlement("zz", "056", p("2025-01")).is_none());
    }

    #[test]
    fn province_level_applies_only_when_higher() {
        let mut r = rules();
        r.province_levels.entry("079".into()).or_default().insert(Period::parse("2023-01").unwrap(), Vnd::from_u64(450_000).unwrap());
        let p = |s| Period::parse(s).unwrap();
        assert_eq!(r.standard_level("079", p("2024-01")).unwrap().to_string(), "450000");
        assert_eq!(r.standard_level("079", p("2024-07")).unwrap().to_string(), "500000");
        assert_eq!(r.standard_level("056", p("2024-01")).unwrap().to_string(), "360000");
    }
}
