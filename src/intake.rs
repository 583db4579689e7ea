//! Turning bytes into commands: JSON Lines envelopes and CSV payout lists. Anything that is
//! not a command gets a specific `DecodeError` and is never recorded as one.

use crate::command::{Command, CommandEnvelope, PayoutLine, SubmitPayoutBatch};
use serde_json::Value;

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
    let value: Value = serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
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
    serde_json::from_value(value).map_err(|e| DecodeError::SchemaViolation(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error("CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("CSV header must have columns citizen_id and amount (found: {0})")]
    Header(String),
}

/// Reads a payout list (`citizen_id,amount[,...]`, header required, other columns ignored)
/// into a batch command. Line N of the batch is data row N (file line N+1).
pub fn payout_batch_from_csv(
    reader: impl std::io::Read,
    batch_id: &str,
    program_id: &str,
    province: &str,
    period: &str,
) -> Result<SubmitPayoutBatch, CsvError> {
    let mut csv = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(reader);
    let headers = csv.headers()?.clone();
    let find = |name: &str| headers.iter().position(|h| h.trim_start_matches('\u{feff}').eq_ignore_ascii_case(name));
    let (Some(cid), Some(amount)) = (find("citizen_id"), find("amount")) else {
        return Err(CsvError::Header(headers.iter().collect::<Vec<_>>().join(",")));
    };
    let mut lines = Vec::new();
    for row in csv.records() {
        let row = row?;
        lines.push(PayoutLine { citizen_id: row.get(cid).unwrap_or("").to_string(), amount: row.get(amount).unwrap_or("").to_string() });
    }
    Ok(SubmitPayoutBatch { batch_id: batch_id.into(), program_id: program_id.into(), province: province.into(), period: period.into(), lines })
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

    #[test]
    fn csv_lists_become_batches() {
        let csv = "\u{feff}Citizen_ID,Full name,Amount\n056185000123,Nguyễn Thị A,750000\n\"058190000001\", \"Trần Văn B\" ,1000000\n";
        let b = payout_batch_from_csv(csv.as_bytes(), "B1", "sa", "056", "2025-01").unwrap();
        assert_eq!(b.lines.len(), 2);
        assert_eq!(b.lines[1].citizen_id, "058190000001");
        assert_eq!(b.lines[1].amount, "1000000");
        assert!(payout_batch_from_csv("id,amt\n".as_bytes(), "B1", "sa", "056", "2025-01").is_err());
    }
}
