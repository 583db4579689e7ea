//! Turning bytes into commands: JSON Lines envelopes and CSV payout lists. Anything that is
//! not a command gets a specific `DecodeError` and is never recorded as one.

mod strict_json;

use crate::command::{Command, CommandEnvelope, PayoutLine, SubmitPayoutBatch};
use serde_json::Value;
use std::io::Read;
use strict_json::StrictJsonError;

/// Largest command accepted (a 50,000-line batch is about 4 MB).
pub const COMMAND_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message is {0} bytes, over the bound of {COMMAND_BYTES_MAX}")]
    Oversize(usize),
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("not JSON: {0}")]
    NotJson(String),
    /// An object repeats a key, at any depth: JSON leaves the meaning undefined (serde_json
    /// would keep the last value), so the message is refused rather than guessed at.
    #[error("duplicate key {key:?} in the object at {path}: each key may appear once")]
    DuplicateKey { key: String, path: String },
    #[error("not a JSON object")]
    NotObject,
    #[error("missing or non-string field {0:?}")]
    MissingField(&'static str),
    #[error("unknown command type {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    SchemaViolation(String),
}

impl DecodeError {
    /// Stable reason (dead-letter header, report column).
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Oversize(_) => "oversize",
            DecodeError::NotUtf8 => "not_utf8",
            DecodeError::NotJson(_) => "not_json",
            DecodeError::DuplicateKey { .. } => "duplicate_key",
            DecodeError::NotObject => "not_object",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::SchemaViolation(_) => "schema_violation",
        }
    }
}

pub fn decode_command(bytes: &[u8]) -> Result<CommandEnvelope, DecodeError> {
    if bytes.len() > COMMAND_BYTES_MAX {
        return Err(DecodeError::Oversize(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8)?;
    if text.starts_with('\u{feff}') {
        return Err(DecodeError::NotJson(
            "the text starts with a byte-order mark (U+FEFF), which JSON text may not carry (RFC 8259 §8.1): save it as UTF-8 without BOM".into(),
        ));
    }
    let value: Value = strict_json::parse(text).map_err(|e| match e {
        StrictJsonError::DuplicateKey { key, path } => DecodeError::DuplicateKey { key, path },
        StrictJsonError::Json(e) => DecodeError::NotJson(e.to_string()),
    })?;
    let object = value.as_object().ok_or(DecodeError::NotObject)?;
    for field in ["command_id", "type", "issued_at"] {
        if !object.get(field).is_some_and(Value::is_string) {
            return Err(DecodeError::MissingField(field));
        }
    }
    let kind = object["type"].as_str().expect("checked to be a string");
    if !Command::TYPE_NAMES.contains(&kind) {
        return Err(DecodeError::UnknownType(kind.chars().take(64).collect()));
    }
    if let Some(path) = object.get("payload").and_then(positional_list) {
        return Err(DecodeError::SchemaViolation(format!(
            "$.payload{path} is not an object: a command's arrays are lists of objects (lines, items), and an object is written with its member names, never as a positional list"
        )));
    }
    serde_json::from_value(value).map_err(|e| DecodeError::SchemaViolation(e.to_string()))
}

/// Where `value` holds an array element that is not an object, as a path below it. serde reads
/// a JSON array as the fields of a struct in their declaration order, so
/// `"lines":[["056185000123","750000"]]` (or a whole payload, an account, an attestation written
/// as an array) would decode as if the names had been sent. Every array of the command
/// vocabulary is a list of records (`lines`, `items`), so an element that is not an object is
/// refused wherever it is; a struct sent as an array of objects fails on its first field.
fn positional_list(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| match item {
            Value::Object(_) => positional_list(item).map(|below| format!("[{i}]{below}")),
            _ => Some(format!("[{i}]")),
        }),
        Value::Object(map) => map.iter().find_map(|(key, v)| positional_list(v).map(|below| format!("{}{below}", strict_json::key_segment(key)))),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("CSV header must have columns citizen_id and amount (found: {0})")]
    Header(String),
    /// Two columns that `citizen_id`/`amount` matching cannot tell apart.
    #[error("CSV header names column {name:?} twice (columns {first} and {again}); which one counts would be a guess")]
    HeaderRepeated { name: String, first: usize, again: usize },
    /// A row wider or narrower than the header: most often an unquoted `750,000`, which CSV
    /// splits into `750` and `000`. The whole file is refused, never a truncated reading of it.
    #[error(
        "CSV row {row} (file line {line}) has {fields} fields where the header has {header_fields}: the file is refused; an unquoted comma \
         inside a value (750,000) splits it in two: write amounts as whole đồng without separators (750000)"
    )]
    RowWidth { row: u64, line: u64, fields: usize, header_fields: usize },
    #[error("CSV file is over the bound of {COMMAND_BYTES_MAX} bytes")]
    Oversize,
    #[error("CSV file is empty: a payout list needs a header with columns citizen_id and amount, then one row per payout")]
    Empty,
    #[error("CSV: {0}")]
    Io(#[from] std::io::Error),
    /// An empty line between data rows. The CSV reader skips it, so every later line of the
    /// batch would be numbered one less than its row in the sheet the agency reads the report
    /// against. Empty lines after the last row are harmless (editors add them).
    #[error("CSV file line {line} is empty, between data rows (before row {row}): the file is refused, since the report numbers rows as the file holds them; remove the empty line")]
    EmptyRow { row: u64, line: u64 },
}

/// A header name as `citizen_id` and `amount` are looked up: byte-order mark and surrounding
/// spaces ignored (the reader trims), ASCII case ignored.
fn column_key(name: &str) -> String {
    name.trim_start_matches('\u{feff}').trim().to_ascii_lowercase()
}

/// Reads a payout list (`citizen_id,amount[,...]`, header required, other columns ignored)
/// into a batch command. Line N of the batch is data row N (file line N+1 when no field spans
/// lines). Every row must have as many fields as the header, and no two columns may have the
/// same name: a file that does not say one thing is refused as a whole.
pub fn payout_batch_from_csv(
    reader: impl std::io::Read,
    batch_id: &str,
    program_id: &str,
    province: &str,
    period: &str,
) -> Result<SubmitPayoutBatch, CsvError> {
    // Held whole (bounded as a command is), so that an empty line the reader skips can be seen.
    let mut bytes = Vec::new();
    reader.take(COMMAND_BYTES_MAX as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > COMMAND_BYTES_MAX {
        return Err(CsvError::Oversize);
    }
    if bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(&bytes).iter().all(u8::is_ascii_whitespace) {
        return Err(CsvError::Empty);
    }
    // flexible: the width is checked here, so the error names the row and says why.
    let mut csv = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(bytes.as_slice());
    let headers = csv.headers()?.clone();
    let keys: Vec<String> = headers.iter().map(column_key).collect();
    for (again, key) in keys.iter().enumerate() {
        if let Some(first) = keys[..again].iter().position(|k| !k.is_empty() && k == key) {
            return Err(CsvError::HeaderRepeated { name: headers[again].to_string(), first: first + 1, again: again + 1 });
        }
    }
    let find = |name: &str| keys.iter().position(|k| k == name);
    let (Some(cid), Some(amount)) = (find("citizen_id"), find("amount")) else {
        return Err(CsvError::Header(headers.iter().collect::<Vec<_>>().join(",")));
    };
    let mut lines = Vec::new();
    let mut row = csv::StringRecord::new();
    while csv.read_record(&mut row)? {
        let index = lines.len() as u64 + 1;
        // A row's position is where the reader started on it, before the empty lines it skips.
        let start = row.position().cloned().unwrap_or_else(csv::Position::new);
        if let Some(line) = empty_line_at(&bytes, &start) {
            return Err(CsvError::EmptyRow { row: index, line });
        }
        if row.len() != headers.len() {
            return Err(CsvError::RowWidth { row: index, line: start.line(), fields: row.len(), header_fields: headers.len() });
        }
        lines.push(PayoutLine { citizen_id: row[cid].to_string(), amount: row[amount].to_string() });
    }
    Ok(SubmitPayoutBatch { batch_id: batch_id.into(), program_id: program_id.into(), province: province.into(), period: period.into(), lines })
}

/// The file line of an empty line starting at `at`, if one does. After a `\r\n` the reader
/// stops between the two bytes, so a `\n` after a `\r` ends the line before, not a new one.
fn empty_line_at(bytes: &[u8], at: &csv::Position) -> Option<u64> {
    let mut i = usize::try_from(at.byte()).ok()?;
    let mut line = at.line();
    if i > 0 && bytes.get(i - 1) == Some(&b'\r') && bytes.get(i) == Some(&b'\n') {
        i += 1;
        line += 1;
    }
    matches!(bytes.get(i), Some(b'\n' | b'\r')).then_some(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_are_specific() {
        assert_eq!(decode_command(b"{nope").unwrap_err().reason(), "not_json");
        assert_eq!(decode_command(b"[1]").unwrap_err().reason(), "not_object");
        assert_eq!(decode_command(b"\xff\xfe").unwrap_err().reason(), "not_utf8");
        assert_eq!(decode_command(br#"{"type":"x","issued_at":"2025-01-01T00:00:00Z"}"#).unwrap_err().reason(), "missing_field");
        assert_eq!(decode_command(br#"{"command_id":"a","type":"launch_rocket","issued_at":"2025-01-01T00:00:00Z"}"#).unwrap_err().reason(), "unknown_type");
        assert_eq!(
            decode_command(br#"{"command_id":"a","type":"fund_budget","issued_at":"2025-01-01T00:00:00Z","payload":{"province":"056"}}"#).unwrap_err().reason(),
            "schema_violation"
        );
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(decode_command(deep.as_bytes()).unwrap_err().reason(), "not_json");
    }

    /// A struct written as an array would be read field by field in declaration order.
    #[test]
    fn an_array_where_an_object_is_expected_is_refused_with_its_path() {
        let with = |payload: &str| format!(r#"{{"command_id":"c1","type":"submit_payout_batch","issued_at":"2025-01-20T08:00:00Z","payload":{payload}}}"#);
        let good = r#"{"batch_id":"B1","program_id":"p","province":"056","period":"2025-01","lines":[{"citizen_id":"056185000123","amount":"750000"}]}"#;
        assert!(decode_command(with(good).as_bytes()).is_ok());
        for (payload, path) in [
            (good.replace(r#"{"citizen_id":"056185000123","amount":"750000"}"#, r#"["056185000123","750000"]"#), "$.payload.lines[0]"),
            (
                good.replace(r#"{"citizen_id":"056185000123","amount":"750000"}"#, r#"{"citizen_id":"056185000123","amount":"750000"},null"#),
                "$.payload.lines[1]",
            ),
            (r#"["B1","p","056","2025-01",[]]"#.to_string(), "$.payload[0]"),
        ] {
            let err = decode_command(with(&payload).as_bytes()).unwrap_err();
            assert_eq!(err.reason(), "schema_violation", "{payload}");
            assert!(err.to_string().starts_with(path), "{payload}: {err}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_named() {
        let err = decode_command("\u{feff}{}".as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "not_json");
        assert!(err.to_string().contains("byte-order mark"), "{err}");
    }

    #[test]
    fn a_repeated_key_anywhere_is_refused_with_its_path() {
        let batch = |lines: &str| {
            format!(
                r#"{{"command_id":"c1","type":"submit_payout_batch","issued_at":"2025-01-20T08:00:00Z","payload":{{"batch_id":"B1","program_id":"p","province":"056","period":"2025-01","lines":[{lines}]}}}}"#
            )
        };
        assert!(decode_command(batch(r#"{"citizen_id":"056185000123","amount":"750000"}"#).as_bytes()).is_ok());
        for (text, key, path) in [
            (batch(r#"{"citizen_id":"056185000123","amount":"1","amount":"750000"}"#), "amount", "$.payload.lines[0]"),
            (
                batch(r#"{"citizen_id":"056185000123","amount":"1"},{"citizen_id":"1","citizen_id":"056185000123","amount":"1"}"#),
                "citizen_id",
                "$.payload.lines[1]",
            ),
            (
                batch(r#"{"citizen_id":"056185000123","amount":"1"}"#).replace(r#""batch_id":"B1""#, r#""batch_id":"B1","batch_id":"B2""#),
                "batch_id",
                "$.payload",
            ),
            (batch("").replacen(r#""command_id":"c1""#, r#""command_id":"c1","command_id":"c2""#, 1), "command_id", "$"),
            (batch("").replacen(r#""type":"submit_payout_batch""#, r#""type":"fund_budget","type":"submit_payout_batch""#, 1), "type", "$"),
            (batch("").replacen(r#""issued_at""#, r#""v":2,"v":1,"issued_at""#, 1), "v", "$"),
            (batch("").replacen(r#""payload":{"#, r#""payload":{},"payload":{"#, 1), "payload", "$"),
        ] {
            let err = decode_command(text.as_bytes()).unwrap_err();
            assert_eq!(err, DecodeError::DuplicateKey { key: key.into(), path: path.into() }, "{text}");
            assert_eq!(err.reason(), "duplicate_key");
            assert!(err.to_string().contains(key) && err.to_string().contains(path), "{err}");
        }
    }

    /// `v` as JSON Schema reads it (see `command::version`): 1.0 is 1, 0 is no version.
    #[test]
    fn versions_are_whole_numbers_from_one() {
        let with_v = |v: &str| {
            format!(
                r#"{{"command_id":"c1","v":{v},"type":"fund_budget","issued_at":"2025-01-20T08:00:00Z","payload":{{"province":"056","program_id":"p","period":"2025-01","amount":"1"}}}}"#
            )
        };
        for (v, want) in [("1", 1), ("1.0", 1), ("1e0", 1), ("2", 2), ("2.0", 2), ("4294967295", u32::MAX)] {
            assert_eq!(decode_command(with_v(v).as_bytes()).map(|e| e.v), Ok(want), "v {v}");
        }
        for v in ["0", "0.0", "-1", "1.5", "4294967296", "\"1\"", "null", "true"] {
            assert_eq!(decode_command(with_v(v).as_bytes()).map(|e| e.v).unwrap_err().reason(), "schema_violation", "v {v}");
        }
    }

    #[test]
    fn csv_lists_become_batches() {
        let csv = "\u{feff}Citizen_ID,Full name,Amount\n056185000123,Nguyễn Thị A,750000\n\"058190000001\", \"Trần Văn B\" ,1000000\n";
        let b = payout_batch_from_csv(csv.as_bytes(), "B1", "sa", "056", "2025-01").unwrap();
        assert_eq!(b.lines.len(), 2);
        assert_eq!(b.lines[1].citizen_id, "058190000001");
        assert_eq!(b.lines[1].amount, "1000000");
        assert!(payout_batch_from_csv("id,amt\n".as_bytes(), "B1", "sa", "056", "2025-01").is_err());
        for empty in ["", "\n", " \r\n\n", "\u{feff}", "\u{feff}\n"] {
            assert!(matches!(csv_error(empty), CsvError::Empty), "{empty:?}");
        }
        // A header alone is a list of no payouts: the engine refuses it as `batch_empty`.
        assert!(payout_batch_from_csv("citizen_id,amount\n".as_bytes(), "B1", "sa", "056", "2025-01").expect("a header").lines.is_empty());
    }

    fn csv_error(text: &str) -> CsvError {
        payout_batch_from_csv(text.as_bytes(), "B1", "sa", "056", "2025-01").expect_err(text)
    }

    /// An unquoted `750,000` is two fields: read as 750 before issue 16. Any row wider or
    /// narrower than the header refuses the file, naming the row.
    #[test]
    fn a_row_of_another_width_than_the_header_refuses_the_file() {
        for (text, row, line, fields) in [
            ("citizen_id,amount\n056185000123,750,000\n", 1, 2, 3),
            ("citizen_id,amount\n056185000123,750000\n058190000001,1.000,000\n", 2, 3, 3),
            ("citizen_id,amount,name\n056185000123,750000\n", 1, 2, 2),
            ("citizen_id,amount\n056185000123\n", 1, 2, 1),
            ("citizen_id,amount\n056185000123,750000,\n", 1, 2, 3),
            ("citizen_id,amount\n\"056185000123\",\"a\nb\"\n058190000001,1,000\n", 2, 4, 3),
        ] {
            match csv_error(text) {
                CsvError::RowWidth { row: r, line: l, fields: f, .. } => assert_eq!((r, l, f), (row, line, fields), "{text}"),
                other => panic!("{text}: {other}"),
            }
        }
        let message = csv_error("citizen_id,amount\n056185000123,750,000\n").to_string();
        assert!(message.contains("row 1") && message.contains("without separators"), "{message}");
        // Quoted, the comma stays in the value, which the engine refuses (`amount_separator`).
        let b = payout_batch_from_csv("citizen_id,amount\n056185000123,\"750,000\"\n".as_bytes(), "B1", "sa", "056", "2025-01").expect("parses");
        assert_eq!(b.lines[0].amount, "750,000");
    }

    /// The reader skips empty lines; between rows that would renumber every later row.
    #[test]
    fn an_empty_line_between_rows_refuses_the_file() {
        for (text, row, line) in [
            ("citizen_id,amount\n056185000123,750000\n\n058190000001,1000000\n", 2, 3),
            ("citizen_id,amount\r\n056185000123,750000\r\n\r\n058190000001,1000000\r\n", 2, 3),
            ("citizen_id,amount\n\n056185000123,750000\n", 1, 2),
            ("citizen_id,amount\n\"056185000123\",\"7\n5\"\n\n\n058190000001,1000000\n", 2, 4),
        ] {
            match csv_error(text) {
                CsvError::EmptyRow { row: r, line: l } => assert_eq!((r, l), (row, line), "{text:?}"),
                other => panic!("{text:?}: {other}"),
            }
        }
        // At the end, after the last row, empty lines change no row's number.
        for text in [
            "citizen_id,amount\n056185000123,750000\n\n\n",
            "citizen_id,amount\r\n056185000123,750000\r\n\r\n",
            "citizen_id,amount\n\"0561\n85000123\",750000\n058190000001,1\n",
        ] {
            let b = payout_batch_from_csv(text.as_bytes(), "B1", "sa", "056", "2025-01").expect(text);
            assert!(!b.lines.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn a_repeated_column_refuses_the_file() {
        for (text, first, again) in [
            ("citizen_id,amount,citizen_id\n", 1, 3),
            ("citizen_id,amount,AMOUNT\n", 2, 3),
            ("\u{feff}Citizen_ID,amount, citizen_id \n", 1, 3),
            ("citizen_id,amount,note,Note\n", 3, 4),
        ] {
            match csv_error(text) {
                CsvError::HeaderRepeated { first: f, again: a, .. } => assert_eq!((f, a), (first, again), "{text}"),
                other => panic!("{text}: {other}"),
            }
        }
        // Unnamed columns (trailing commas) match nothing, so they can repeat.
        let b = payout_batch_from_csv("citizen_id,amount,,\n056185000123,750000,,\n".as_bytes(), "B1", "sa", "056", "2025-01").expect("parses");
        assert_eq!(b.lines.len(), 1);
    }
}

#[cfg(test)]
mod cost {
    /// `cargo test --lib decode_cost -- --ignored --nocapture`: what decoding a large batch costs.
    #[test]
    #[ignore]
    fn decode_cost_of_a_50k_line_batch() {
        let lines: Vec<String> = (0..50_000).map(|i| format!(r#"{{"citizen_id":"056185{i:06}","amount":"750000"}}"#)).collect();
        let text = format!(
            r#"{{"command_id":"cost","type":"submit_payout_batch","v":1,"issued_at":"2025-01-20T08:00:00Z","payload":{{"batch_id":"B","program_id":"p","province":"056","period":"2025-01","lines":[{}]}}}}"#,
            lines.join(",")
        );
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let e = super::decode_command(text.as_bytes()).expect("decodes");
            best = best.min(started.elapsed());
            assert!(matches!(e.command, crate::command::Command::SubmitPayoutBatch(b) if b.lines.len() == 50_000));
        }
        eprintln!("decode of {} bytes, 50,000 lines: best of 5 {:.1} ms", text.len(), best.as_secs_f64() * 1e3);
    }
}
