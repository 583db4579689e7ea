//! The hash chain (DESIGN.md "The audit log format"): a record is
//! `{"seq": N, "prev_hash": "<64 hex>", "event": {...}, "hash": "<64 hex>"}` where `hash` is the
//! lowercase hex SHA-256 of the RFC 8785 (JCS) canonical form of the record without `hash`.
//!
//! Canonical form: RFC 8785 (JCS), written here rather than taken from a crate, and tested
//! against the RFC's own examples below: object members sorted by the UTF-16 code units of
//! their names, no whitespace, strings escaped as JCS says (`\"` `\\` `\b` `\f` `\n` `\r` `\t`,
//! other controls as `\u00xx` lowercase, everything else as UTF-8; serde_json's string writer
//! does exactly this), numbers in the ECMAScript form (integers as themselves; other doubles
//! by the shortest round-trip digits with ES6's exponent rules). Events hold no floats (amounts
//! are strings), so any JCS implementation, or Python's `json.dumps(obj, sort_keys=True,
//! separators=(",", ":"), ensure_ascii=False)` for our ASCII member names, reproduces the bytes.

use crate::event::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record, as stored in the log and as written by `audit export`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub prev_hash: String,
    pub event: Event,
    pub hash: String,
}

/// RFC 8785 canonical bytes of a JSON value.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    out
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing a string to a Vec cannot fail");
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // serde_json's map is ordered by bytes, which equals UTF-16 order for ASCII names.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            if !map.keys().all(|k| k.is_ascii()) {
                members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            }
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
    }
}

/// ECMAScript Number-to-String (ES2015 7.1.12.1), which JCS requires.
fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
        return;
    }
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
        return;
    }
    let f = n.as_f64().expect("a JSON number is an integer or a double");
    out.extend_from_slice(es6_number(f).as_bytes());
}

fn es6_number(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    // Shortest round-trip digits and exponent, from Rust's `{:e}` (e.g. "1.2345e-7").
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always writes an exponent");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let k = digits.len() as i32;
    let n = exp.parse::<i32>().expect("{:e} writes an integer exponent") + 1;
    let sign = if f < 0.0 { "-" } else { "" };
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let exp = if e >= 0 { format!("+{e}") } else { e.to_string() };
        if k == 1 {
            format!("{digits}e{exp}")
        } else {
            format!("{}.{}e{exp}", &digits[..1], &digits[1..])
        }
    };
    format!("{sign}{body}")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Seals an event at `seq` after `prev_hash`: returns the record's stored bytes (canonical
/// JSON including `hash`) and its hash. The event is serialized once, straight into canonical
/// form (see `Event`'s documentation: members and fields in sorted order, compact), and the hash
/// is taken over those bytes: `{"event":E,"prev_hash":P,"seq":N}`; the stored record is the same
/// bytes with `"hash":H` in its sorted place. Debug builds check the result against the generic
/// canonicalizer (`canonical_bytes` of the record as a JSON value).
pub fn seal(seq: u64, prev_hash: &str, event: &Event) -> (Vec<u8>, String) {
    debug_assert!(prev_hash.len() == 64 && prev_hash.bytes().all(|b| b.is_ascii_hexdigit()), "prev_hash is 64 hex digits");
    let mut out = Vec::with_capacity(768);
    out.extend_from_slice(b"{\"event\":");
    serde_json::to_writer(&mut out, event).expect("events serialize to JSON");
    let tail = format!(",\"prev_hash\":\"{prev_hash}\",\"seq\":{seq}}}");
    let mut hasher = Sha256::new();
    hasher.update(&out);
    hasher.update(tail.as_bytes());
    let hash = hex::encode(hasher.finalize());
    out.reserve(HASH_MEMBER_LEN + tail.len());
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(hash.as_bytes());
    out.push(b'"');
    out.extend_from_slice(tail.as_bytes());
    debug_assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&seal_generic(seq, prev_hash, event)),
        "the direct serialization of an event is its canonical form (fields declared in sorted order)"
    );
    (out, hash)
}

/// `,"hash":"<64 hex>"`
const HASH_MEMBER_LEN: usize = 9 + 64 + 1;

/// The same record built the slow way: the event as a JSON value, canonicalized.
pub fn seal_generic(seq: u64, prev_hash: &str, event: &Event) -> Vec<u8> {
    let mut record = serde_json::Map::new();
    record.insert("event".into(), serde_json::to_value(event).expect("events serialize to JSON"));
    record.insert("prev_hash".into(), Value::String(prev_hash.to_string()));
    record.insert("seq".into(), Value::from(seq));
    let mut value = Value::Object(record);
    let hash = sha256_hex(&canonical_bytes(&value));
    value.as_object_mut().expect("built as an object").insert("hash".into(), Value::String(hash));
    canonical_bytes(&value)
}

/// A stored record split into its parts without parsing the event: the layout `seal` writes,
/// `{"event":E,"hash":"H","prev_hash":"P","seq":N}` (canonical form, which the chain check then
/// confirms by re-serializing the parsed event). `None` when the bytes are laid out otherwise
/// (a record that was changed, or not written by `seal`): the caller falls back to parsing the
/// record as JSON.
pub struct SealedParts<'a> {
    pub seq: u64,
    pub event: &'a [u8],
    pub hash: &'a str,
    pub prev_hash: &'a str,
}

impl<'a> SealedParts<'a> {
    pub fn split(bytes: &'a [u8]) -> Option<SealedParts<'a>> {
        const HEAD: &[u8] = b"{\"event\":";
        let body = bytes.strip_prefix(HEAD)?.strip_suffix(b"}")?;
        // From the end: `,"seq":N` then `,"prev_hash":"P"` then `,"hash":"H"`.
        let seq_at = body.iter().rposition(|b| *b == b':')?;
        let digits = &body[seq_at + 1..];
        if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) || (digits[0] == b'0' && digits.len() > 1) {
            return None;
        }
        let seq: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        let body = body[..seq_at].strip_suffix(b",\"seq\"")?;
        let body = body.strip_suffix(b"\"")?;
        let (body, prev_hash) = body.split_at(body.len().checked_sub(64)?);
        let body = body.strip_suffix(b",\"prev_hash\":\"")?;
        let body = body.strip_suffix(b"\"")?;
        let (event, hash) = body.split_at(body.len().checked_sub(64)?);
        let event = event.strip_suffix(b",\"hash\":\"")?;
        let hex = |b: &'a [u8]| std::str::from_utf8(b).ok().filter(|s| s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')));
        Some(SealedParts { seq, event, hash: hex(hash)?, prev_hash: hex(prev_hash)? })
    }

    /// SHA-256 of the record without its `hash` member, from these parts.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(b"{\"event\":");
        hasher.update(self.event);
        hasher.update(format!(",\"prev_hash\":\"{}\",\"seq\":{}}}", self.prev_hash, self.seq).as_bytes());
        hex::encode(hasher.finalize())
    }
}

/// Recomputes the hash of a record given as JSON, whatever its key order or spacing.
/// Returns `None` when the value is not an object.
pub fn recompute_hash(record: &Value) -> Option<String> {
    let mut map = record.as_object()?.clone();
    map.remove("hash");
    Some(sha256_hex(&canonical_bytes(&Value::Object(map))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_sorts_keys_and_escapes_like_jcs() {
        let v: Value = serde_json::from_str("{\"b\": 1, \"a\": \"x\\u0001\\n\\\"é€\", \"c\": [true, null, {\"z\": 0, \"y\": -5}]}").unwrap();
        assert_eq!(String::from_utf8(canonical_bytes(&v)).unwrap(), "{\"a\":\"x\\u0001\\n\\\"é€\",\"b\":1,\"c\":[true,null,{\"y\":-5,\"z\":0}]}");
    }

    /// RFC 8785 section 3.2.2: the example input and its canonical form.
    #[test]
    fn rfc8785_example() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let expected = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
        let v: Value = serde_json::from_str(input).unwrap();
        assert_eq!(String::from_utf8(canonical_bytes(&v)).unwrap(), expected);
    }

    /// RFC 8785 section 3.2.3: members sorted by UTF-16 code units, not by bytes.
    #[test]
    fn rfc8785_sorting() {
        let input = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
        let v: Value = serde_json::from_str(input).unwrap();
        let canonical: Value = serde_json::from_slice(&canonical_bytes(&v)).unwrap();
        let text = String::from_utf8(canonical_bytes(&v)).unwrap();
        let order: Vec<usize> = [
            "Carriage Return",
            "One",
            "Control",
            "Latin Small Letter O With Diaeresis",
            "Euro Sign",
            "Emoji: Grinning Face",
            "Hebrew Letter Dalet With Dagesh",
        ]
        .iter()
        .map(|n| text.find(n).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert_eq!(canonical, v);
    }

    /// ECMAScript number serialization, with values from RFC 8785 appendix B (the doubles are
    /// given by their bits; expected strings cross-checked against Python's shortest repr).
    #[test]
    fn rfc8785_numbers() {
        for (bits, expected) in [
            (0x0000000000000000u64, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0xc2b3de4355555553, "-21845333333333.324"),
        ] {
            assert_eq!(es6_number(f64::from_bits(bits)), expected, "bits {bits:#018x}");
        }
    }

    /// Every event type's example, sealed the direct way, equals the generic canonical form (also
    /// asserted inside `seal` in debug builds), and splits back into its parts with its hash.
    #[test]
    fn direct_seal_is_canonical_for_every_event_type() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events/examples/events");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut event: Event = serde_json::from_str(&text).unwrap();
            for sender in [None, Some("ansinh-admin".to_string())] {
                event.sender = sender;
                let prev = "ab".repeat(32);
                let (bytes, hash) = seal(41, &prev, &event);
                assert_eq!(bytes, seal_generic(41, &prev, &event));
                let parts = SealedParts::split(&bytes).expect("a sealed record splits");
                assert_eq!((parts.seq, parts.hash, parts.prev_hash), (41, hash.as_str(), prev.as_str()));
                assert_eq!(parts.content_hash(), hash);
                let back: Event = serde_json::from_slice(parts.event).unwrap();
                assert_eq!(back, event);
            }
            seen += 1;
        }
        assert_eq!(seen, crate::event::EventData::TYPE_NAMES.len());
    }

    #[test]
    fn records_not_laid_out_by_seal_do_not_split() {
        let ok = br#"{"event":{},"hash":"0000000000000000000000000000000000000000000000000000000000000000","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":7}"#;
        assert!(SealedParts::split(ok).is_some());
        for bad in [
            &br#"{"event":{},"hash":"0000000000000000000000000000000000000000000000000000000000000000","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":07}"#[..],
            br#"{"event":{},"hash":"000000000000000000000000000000000000000000000000000000000000000A","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":7}"#,
            br#"{"event":{}, "hash":"0000000000000000000000000000000000000000000000000000000000000000","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","seq":7}"#,
            br#"{"seq":7,"event":{},"hash":"0000000000000000000000000000000000000000000000000000000000000000","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"}"#,
            b"{}",
        ] {
            assert!(SealedParts::split(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn sha256_of_known_input() {
        // FIPS 180-2 test vector.
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
