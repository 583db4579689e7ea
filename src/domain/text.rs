//! Names people read: a beneficiary's full name, an account holder's name, a program's name.
//! A name must show something: at least one letter, and no character that is invisible or that
//! changes how the text around it is shown. `"\u{200b}"` (a zero-width space), a right-to-left
//! override (U+202E, which makes `ANH` print as `HNA`) or a soft hyphen would otherwise pass as a
//! name, be recorded, and be paid to. Nothing is stripped or cleaned silently: a name with such
//! a character is refused, naming the character, and the sender fixes the source. Only the
//! white space around the name is trimmed (the recorded name is the trimmed one).
//!
//! Refused anywhere in a name: controls (Unicode Cc), format characters (Cf: zero-width
//! spaces and joiners, bidirectional embeddings, overrides and isolates, the byte-order mark,
//! soft hyphen, invisible operators, tags, interlinear annotation), private-use characters (Co),
//! the line and paragraph separators, noncharacters, and the other default-ignorable code points
//! (Hangul fillers, variation selectors, the combining grapheme joiner, Mongolian free variation
//! selectors), which render as nothing. Rust's standard library has no general-category table,
//! so the Cf and default-ignorable ranges (Unicode 15.1) are listed here.

/// Cf (format) code points, Unicode 15.1, as inclusive ranges.
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Default-ignorable code points that are not Cf (render as nothing), private use, the line and
/// paragraph separators, and noncharacters.
const INVISIBLE_OTHER: &[(u32, u32)] = &[
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x2028, 0x2029),
    (0x2065, 0x2065),
    (0x3164, 0x3164),
    (0xE000, 0xF8FF),
    (0xFDD0, 0xFDEF),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0xE0000, 0xE0FFF),
    (0xF0000, 0x10FFFF),
];

/// Whether `c` may not appear in a name (see the module documentation).
pub fn is_invisible_or_control(c: char) -> bool {
    let u = u32::from(c);
    let within = |table: &[(u32, u32)]| table.iter().any(|(lo, hi)| (*lo..=*hi).contains(&u));
    c.is_control() || within(FORMAT) || within(INVISIBLE_OTHER) || (u & 0xFFFE) == 0xFFFE
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {0} characters")]
    TooLong(usize),
    #[error("has no letter")]
    NoLetter,
    #[error("contains U+{0:04X}, a control or invisible formatting character; remove it at the source (nothing is stripped here)")]
    Invisible(u32),
}

/// The name with the white space around it trimmed, if it is one: 1 to `max_chars`
/// characters, at least one letter, no control or invisible character.
pub fn name(raw: &str, max_chars: usize) -> Result<&str, NameError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(NameError::Empty);
    }
    if let Some(c) = trimmed.chars().find(|c| is_invisible_or_control(*c)) {
        return Err(NameError::Invisible(u32::from(c)));
    }
    if trimmed.chars().count() > max_chars {
        return Err(NameError::TooLong(max_chars));
    }
    if !trimmed.chars().any(char::is_alphabetic) {
        return Err(NameError::NoLetter);
    }
    Ok(trimmed)
}

/// Free text a sender writes beside a command and the log keeps: a reference, a reason, a legal
/// basis, a bank's reference. It may be empty and needs no letter, but it is one line of
/// visible text: the characters a name may not hold (controls, line breaks and tabs included,
/// format and private-use characters, the line and paragraph separators) are refused here too,
/// naming the first one, never stripped. These texts reach bank files, CSV reports and
/// auditors' screens, where a bidi override or a line break changes what is read. The text is
/// kept as sent (no trimming).
pub fn free_text(raw: &str, max_chars: usize) -> Result<&str, NameError> {
    if let Some(c) = raw.chars().find(|c| is_invisible_or_control(*c)) {
        return Err(NameError::Invisible(u32::from(c)));
    }
    if raw.chars().count() > max_chars {
        return Err(NameError::TooLong(max_chars));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_people_write_pass_trimmed() {
        for (raw, want) in [
            ("Nguyễn Thị An", "Nguyễn Thị An"),
            ("  TRAN VAN BINH ", "TRAN VAN BINH"),
            ("\tLe Van Cuong\r\n", "Le Van Cuong"),
            ("Nguye\u{302}\u{303}n", "Nguye\u{302}\u{303}n"),
            ("Ông A", "Ông A"),
            ("Trợ cấp xã hội hằng tháng (Nghị định 20/2021)", "Trợ cấp xã hội hằng tháng (Nghị định 20/2021)"),
            ("H'Hen Niê", "H'Hen Niê"),
            ("李", "李"),
        ] {
            assert_eq!(name(raw, 100), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn invisible_only_and_letterless_names_are_refused() {
        for (raw, want) in [
            ("", NameError::Empty),
            ("\u{3000}\u{a0} ", NameError::Empty),
            ("\u{200b}", NameError::Invisible(0x200B)),
            ("\u{202e}", NameError::Invisible(0x202E)),
            ("\u{feff}", NameError::Invisible(0xFEFF)),
            ("\u{2060}\u{2061}", NameError::Invisible(0x2060)),
            ("\u{3164}", NameError::Invisible(0x3164)),
            ("\u{115f}", NameError::Invisible(0x115F)),
            ("\u{ffa0}", NameError::Invisible(0xFFA0)),
            ("\u{e0041}", NameError::Invisible(0xE0041)),
            ("12345", NameError::NoLetter),
            ("\u{301}", NameError::NoLetter),
            ("---", NameError::NoLetter),
            ("\u{2800}", NameError::NoLetter),
            ("😀", NameError::NoLetter),
            (&"A".repeat(101), NameError::TooLong(100)),
        ] {
            assert_eq!(name(raw, 100), Err(want), "{raw:?}");
        }
    }

    /// A visible name with a hidden character is refused, not cleaned.
    #[test]
    fn a_hidden_character_inside_a_real_name_is_refused() {
        for c in [
            '\u{0}',
            '\u{7}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{ad}',
            '\u{61c}',
            '\u{200c}',
            '\u{200d}',
            '\u{200e}',
            '\u{200f}',
            '\u{202a}',
            '\u{202d}',
            '\u{2066}',
            '\u{2069}',
            '\u{2028}',
            '\u{2029}',
            '\u{34f}',
            '\u{fe0f}',
            '\u{e000}',
            '\u{fff9}',
            '\u{fffe}',
            '\u{1d173}',
            '\u{10ffff}',
        ] {
            let raw = format!("Nguyễn{c} Thị An");
            assert_eq!(name(&raw, 100), Err(NameError::Invisible(u32::from(c))), "U+{:04X}", u32::from(c));
        }
        // A leading or trailing one is not trimmed away either (only white space is).
        assert_eq!(name("\u{feff}Nguyễn Thị An", 100), Err(NameError::Invisible(0xFEFF)));
        assert_eq!(name("Nguyễn Thị An\u{200b}", 100), Err(NameError::Invisible(0x200B)));
    }

    #[test]
    fn free_text_may_be_empty_or_letterless_but_shows_everything() {
        for raw in ["", "KBNN 2025/01-056", "Nghị định 76/2024/NĐ-CP", "  spaced  ", "FT25020812345", "12345"] {
            assert_eq!(free_text(raw, 256), Ok(raw), "{raw:?}");
        }
        for c in ['\n', '\r', '\t', '\u{0}', '\u{1b}', '\u{85}', '\u{200b}', '\u{202e}', '\u{2066}', '\u{feff}', '\u{2028}', '\u{e000}', '\u{ad}'] {
            let raw = format!("REF{c}1");
            assert_eq!(free_text(&raw, 256), Err(NameError::Invisible(u32::from(c))), "U+{:04X}", u32::from(c));
        }
        assert_eq!(free_text(&"x".repeat(257), 256), Err(NameError::TooLong(256)));
    }
}
