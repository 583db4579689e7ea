//! JSON text to a `serde_json::Value` in one streaming pass, refusing any object that repeats a
//! key. RFC 8259 leaves duplicate names undefined and serde_json keeps the last one, so
//! `{"amount":"1","amount":"750000"}` would be read as 750000 while another reader of the same
//! bytes sees 1. We never guess which was meant: the message is refused, naming the key and
//! where it is.
//!
//! The visitor builds the same `Value` serde_json's own would (same number and string handling),
//! checking each key against the object's map as it inserts it: one lookup per key, no second
//! pass over the text. Depth stays bounded by serde_json's recursion limit (128), which drives
//! this visitor like its own. The path is collected only on the way out of an error, so the
//! happy path allocates nothing extra.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// Longest key or path segment quoted back in an error (a hostile key can be megabytes).
const QUOTED_CHARS_MAX: usize = 64;

#[derive(Debug)]
pub enum StrictJsonError {
    /// An object repeats `key`; `path` is where that object is (`$` for the top level).
    DuplicateKey { key: String, path: String },
    /// Not JSON at all (syntax, nesting past the recursion limit, trailing characters).
    Json(serde_json::Error),
}

/// Parses one JSON value (and nothing after it but whitespace).
pub fn parse(text: &str) -> Result<Value, StrictJsonError> {
    let found = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = ValueSeed { found: &found }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match (parsed, found.into_inner()) {
        (Err(_), Some(duplicate)) => Err(duplicate.into_error()),
        (Err(e), None) => Err(StrictJsonError::Json(e)),
        (Ok(v), _) => Ok(v),
    }
}

/// A repeated key and the path to its object, innermost segment first (filled while unwinding).
struct Duplicate {
    key: String,
    reversed_path: Vec<Segment>,
}

enum Segment {
    Key(String),
    Index(usize),
}

impl Duplicate {
    fn into_error(self) -> StrictJsonError {
        let mut path = String::from("$");
        for segment in self.reversed_path.iter().rev() {
            match segment {
                Segment::Index(i) => path.push_str(&format!("[{i}]")),
                Segment::Key(k) => path.push_str(&key_segment(k)),
            }
        }
        StrictJsonError::DuplicateKey { key: quoted(&self.key, false), path }
    }
}

/// A member name as a segment of a path shown in a message: `.lines`, or `["a b"]` for a
/// name that is not plain (cut as `quoted` cuts it).
pub(super) fn key_segment(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!(".{}", quoted(key, false))
    } else {
        format!("[{}]", quoted(key, true))
    }
}

/// A key as it may be shown: at most `QUOTED_CHARS_MAX` characters, JSON-escaped when asked.
fn quoted(key: &str, as_json: bool) -> String {
    let mut short: String = key.chars().take(QUOTED_CHARS_MAX).collect();
    if short.len() < key.len() {
        short.push('…');
    }
    if as_json {
        serde_json::to_string(&short).expect("a string serializes")
    } else {
        short
    }
}

#[derive(Clone, Copy)]
struct ValueSeed<'a> {
    found: &'a RefCell<Option<Duplicate>>,
}

impl ValueSeed<'_> {
    /// On the way out of an error inside `segment`, record where we were.
    fn note(&self, segment: Segment) {
        if let Some(d) = self.found.borrow_mut().as_mut() {
            d.reversed_path.push(segment);
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // As serde_json's own Value: JSON text cannot spell a non-finite number.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(v)) => items.push(v),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    self.note(Segment::Index(items.len()));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Occupied(taken) => {
                    *self.found.borrow_mut() = Some(Duplicate { key: taken.key().clone(), reversed_path: Vec::new() });
                    return Err(de::Error::custom("duplicate key"));
                }
                Entry::Vacant(slot) => match access.next_value_seed(self) {
                    Ok(v) => {
                        slot.insert(v);
                    }
                    Err(e) => {
                        self.note(Segment::Key(slot.key().clone()));
                        return Err(e);
                    }
                },
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(text: &str) -> (String, String) {
        match parse(text) {
            Err(StrictJsonError::DuplicateKey { key, path }) => (key, path),
            other => panic!("{text}: expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn builds_the_value_serde_json_builds() {
        for text in [r#"{"a":[1,-2,3.5,1e300,"x\u00e9",null,true,{"b":{}}],"c":"750000"}"#, "[]", "0", "\"s\"", r#"{"":1}"#] {
            assert_eq!(parse(text).expect("parses"), serde_json::from_str::<Value>(text).expect("parses"), "{text}");
        }
    }

    #[test]
    fn a_repeated_key_is_named_with_its_path_at_any_depth() {
        assert_eq!(duplicate(r#"{"a":1,"a":2}"#), ("a".into(), "$".into()));
        assert_eq!(duplicate(r#"{"p":{"lines":[{"x":1},{"amount":"1","amount":"750000"}]}}"#), ("amount".into(), "$.p.lines[1]".into()));
        assert_eq!(duplicate(r#"[[{"k":{"k":1,"k":1}}]]"#), ("k".into(), "$[0][0].k".into()));
        assert_eq!(duplicate(r#"{"a b":{"z":1,"z":1}}"#), ("z".into(), r#"$["a b"]"#.into()));
        // Escapes are resolved before keys are compared.
        assert_eq!(duplicate(r#"{"amount":"1","a\u006dount":"2"}"#), ("amount".into(), "$".into()));
        // Equal values are still a repetition.
        assert_eq!(duplicate(r#"{"v":1,"v":1}"#).0, "v");
    }

    #[test]
    fn long_keys_are_cut_in_the_message() {
        let key = "k".repeat(10_000);
        let (shown, _) = duplicate(&format!(r#"{{"{key}":1,"{key}":2}}"#));
        assert_eq!(shown.chars().count(), QUOTED_CHARS_MAX + 1);
    }

    #[test]
    fn not_json_stays_not_json() {
        for text in ["{", "{\"a\":1,}", "{}{}", "[1] x", &format!("{}{}", "[".repeat(200), "]".repeat(200))] {
            assert!(matches!(parse(text), Err(StrictJsonError::Json(_))), "{text}");
        }
    }
}
