//! CSV for spreadsheets, safe against formula injection. A cell that a spreadsheet would read
//! as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a carriage return) is written with
//! a leading `'`, as OWASP's "CSV Injection" sheet advises: the program opening the file shows
//! the text instead of evaluating it. Reports hold raw input (a refused line keeps the citizen ID
//! and amount exactly as submitted), so every cell of every CSV the API writes goes through here.
//! The price: a value that really starts with one of those characters (a batch id `-1`) reads
//! with the `'` in front; strip one leading `'` to get it back.

use std::borrow::Cow;

/// First characters that make a spreadsheet cell a formula (or hide one).
pub const FORMULA_TRIGGERS: &[char] = &['=', '+', '-', '@', '\t', '\r'];

/// The cell as written: `'` + `raw` when it would start a formula, else `raw` itself.
pub fn spreadsheet_cell(raw: &str) -> Cow<'_, str> {
    if raw.starts_with(FORMULA_TRIGGERS) {
        Cow::Owned(format!("'{raw}"))
    } else {
        Cow::Borrowed(raw)
    }
}

/// A CSV document in memory whose every cell is neutralized.
pub struct CsvExport {
    writer: csv::Writer<Vec<u8>>,
}

impl CsvExport {
    pub fn with_capacity(bytes: usize) -> CsvExport {
        CsvExport { writer: csv::Writer::from_writer(Vec::with_capacity(bytes)) }
    }

    pub fn row<I, S>(&mut self, cells: I) -> Result<(), csv::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let cells: Vec<String> = cells.into_iter().map(|c| spreadsheet_cell(c.as_ref()).into_owned()).collect();
        self.writer.write_record(&cells)
    }

    pub fn finish(self) -> Result<Vec<u8>, String> {
        self.writer.into_inner().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_become_text() {
        for raw in ["=1+2", "+1", "-1", "@SUM(A1:A9)", "\t=1", "\r=1", "=HYPERLINK(\"http://x\",\"y\")"] {
            assert_eq!(spreadsheet_cell(raw), format!("'{raw}"), "{raw:?}");
        }
        for raw in ["056185000123", "750000", "KH-2025-01-000001", "Nguyễn Thị An", "", "'quoted", " =1"] {
            assert_eq!(spreadsheet_cell(raw), raw, "{raw:?}");
        }
        let mut csv = CsvExport::with_capacity(64);
        csv.row(["a", "=1", "x,y"]).expect("a row");
        assert_eq!(String::from_utf8(csv.finish().expect("the document")).expect("UTF-8"), "a,'=1,\"x,y\"\n");
    }
}
