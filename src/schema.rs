//! JSON Schemas (draft 2020-12) for every command and event type, the outcome and the audit
//! record: the files under `events/schemas/` (see events/README.md).
//!
//! They are generated from the same Rust types that decode commands and events, so they cannot
//! drift from the code: schemars describes `CommandEnvelope` and `Event` (flattened, adjacently
//! tagged enums, one `oneOf` branch per type), and this module splits that description into one
//! self-contained document per type: the envelope with `type` fixed by `const`, `v` fixed to the
//! version, the payload (`payload` / `data`) and only the `$defs` it uses. A new variant gets its
//! own document without any change here; `tests/schemas.rs` then asks for its example file.
//!
//! What the schemas promise is what serde accepts when reading (schemars' deserialize contract):
//! an envelope ignores unknown members, a payload whose type denies unknown fields says
//! `additionalProperties: false`, optional members may be absent or null. Command payloads are raw
//! strings on purpose (the engine answers a bad citizen ID or amount with its own reason code and
//! records it); event data holds validated values, so those carry patterns.

use crate::command::{Command, CommandEnvelope};
use crate::event::{Event, EventData};
use crate::outcome::Outcome;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// The version every command and event type has today. A change of shape gets version 2, a
/// second schema file beside the first and an upcaster at read time; old events are never
/// rewritten.
pub const VERSION: u32 = 1;

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Every schema document: (path relative to the schema directory, e.g.
/// `commands/fund_budget.v1.schema.json`, schema). The repository keeps them in `events/schemas/`.
pub fn documents() -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    let commands = root_schema::<CommandEnvelope>();
    for (type_name, doc) in per_type(&commands, "payload", "command", Command::TYPE_NAMES) {
        docs.push((format!("commands/{type_name}.v{VERSION}.schema.json"), doc));
    }
    let events = root_schema::<Event>();
    for (type_name, doc) in per_type(&events, "data", "event", EventData::TYPE_NAMES) {
        docs.push((format!("events/{type_name}.v{VERSION}.schema.json"), doc));
    }
    docs.push((format!("outcome.v{VERSION}.schema.json"), outcome()));
    docs.push((format!("audit-record.v{VERSION}.schema.json"), audit_record(events)));
    docs
}

/// Writes every document under `dir` (creating subdirectories), pretty-printed with a trailing
/// newline. Returns how many files were written. Files of types that no longer exist are left
/// alone (`tests/schemas.rs` names them).
pub fn write_all(dir: &Path) -> std::io::Result<usize> {
    let docs = documents();
    for (relative, schema) in &docs {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, to_file_text(schema))?;
    }
    Ok(docs.len())
}

/// The exact text of a schema file: pretty JSON with a trailing newline, keywords in reading
/// order (`$schema`, `title`, `description`, `type`, ..., `$defs` last), names sorted.
pub fn to_file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&ReadingOrder { value: schema, names: false }).expect("a serde_json::Value serializes");
    text.push('\n');
    text
}

/// Keywords in the order a reader wants them; any other key goes just before `$defs`.
const KEYWORD_ORDER: &[&str] = &[
    "$schema",
    "title",
    "description",
    "type",
    "const",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "default",
    "$ref",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "oneOf",
    "anyOf",
];

/// Serializes a schema with `KEYWORD_ORDER`; the members of `properties` and `$defs` are names,
/// kept sorted.
struct ReadingOrder<'a> {
    value: &'a Value,
    names: bool,
}

impl serde::Serialize for ReadingOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.value {
            Value::Object(map) => {
                let rank = |key: &str| match key {
                    "$defs" => KEYWORD_ORDER.len() + 1,
                    _ => KEYWORD_ORDER.iter().position(|k| *k == key).unwrap_or(KEYWORD_ORDER.len()),
                };
                let mut keys: Vec<&String> = map.keys().collect();
                if !self.names {
                    keys.sort_by_key(|k| (rank(k), k.as_str()));
                }
                let mut out = s.serialize_map(Some(keys.len()))?;
                for key in keys {
                    let names = !self.names && matches!(key.as_str(), "properties" | "$defs");
                    out.serialize_entry(key, &ReadingOrder { value: &map[key], names })?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&ReadingOrder { value: item, names: false })?;
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

fn root_schema<T: JsonSchema>() -> Value {
    SchemaSettings::draft2020_12().for_deserialize().into_generator().into_root_schema_for::<T>().to_value()
}

/// Splits the schema of a flattened, adjacently tagged envelope into one document per type, in
/// the order of `type_names`. Panics (a bug caught by the tests) if schemars' layout is not the
/// expected one or the types do not match `type_names`.
fn per_type(root: &Value, content_key: &str, kind: &str, type_names: &[&str]) -> Vec<(String, Value)> {
    let branches = root["oneOf"].as_array().unwrap_or_else(|| panic!("the {kind} envelope schema has one oneOf branch per type"));
    let mut by_type = Map::new();
    for branch in branches {
        let type_name = branch.pointer("/properties/type/const").and_then(Value::as_str);
        let content = branch.pointer(&format!("/properties/{content_key}"));
        let (Some(type_name), Some(content)) = (type_name, content) else {
            panic!("every {kind} oneOf branch has properties.type.const and properties.{content_key}: {branch}");
        };
        by_type.insert(type_name.to_string(), content.clone());
    }
    let generated: BTreeSet<&str> = by_type.keys().map(String::as_str).collect();
    let listed: BTreeSet<&str> = type_names.iter().copied().collect();
    assert_eq!(generated, listed, "the {kind} types in the schema equal TYPE_NAMES");

    let all_defs = root["$defs"].as_object().cloned().unwrap_or_default();
    let envelope = root["properties"].as_object().unwrap_or_else(|| panic!("the {kind} envelope schema has properties"));
    type_names
        .iter()
        .map(|type_name| {
            let content = by_type[*type_name].clone();
            let mut properties = envelope.clone();
            let v = properties.get_mut("v").and_then(Value::as_object_mut).unwrap_or_else(|| panic!("the {kind} envelope has a v member"));
            v.insert("const".into(), json!(VERSION));
            properties.insert("type".into(), json!({"description": format!("The {kind} type."), "type": "string", "const": type_name}));
            properties.insert(content_key.into(), content.clone());
            let mut required: Vec<Value> = root["required"].as_array().cloned().unwrap_or_default();
            required.extend([json!("type"), json!(content_key)]);

            let mut description = format!("`{type_name}` {kind}, version {VERSION}.");
            if let Some(doc) = referenced(&content).and_then(|name| all_defs.get(name)).and_then(|d| d["description"].as_str()) {
                description = format!("{description} {}", doc.replace('\n', " "));
            }
            let defs = reachable_defs(&all_defs, &Value::Object(properties.clone()));
            let doc = json!({
                "$schema": DRAFT_2020_12,
                "title": format!("{type_name} {kind} v{VERSION}"),
                "description": description,
                "type": "object",
                "properties": properties,
                "required": required,
                "$defs": defs,
            });
            (type_name.to_string(), doc)
        })
        .collect()
}

/// The definition name a `{"$ref": "#/$defs/Name"}` schema points to.
fn referenced(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix("#/$defs/")
}

/// The definitions `schema` uses, directly or through other definitions.
fn reachable_defs(all_defs: &Map<String, Value>, schema: &Value) -> Map<String, Value> {
    let mut found = Map::new();
    let mut pending = vec![schema];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(map) => {
                if let Some(name) = referenced(value) {
                    if !found.contains_key(name) {
                        let def = all_defs.get(name).unwrap_or_else(|| panic!("$defs holds {name}, which a schema refers to"));
                        found.insert(name.to_string(), def.clone());
                        pending.push(def);
                    }
                }
                pending.extend(map.values());
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    found
}

fn outcome() -> Value {
    let mut schema = root_schema::<Outcome>();
    let map = schema.as_object_mut().expect("the outcome schema is an object");
    map.insert("title".into(), json!(format!("outcome v{VERSION}")));
    map.insert(
        "description".into(),
        json!(
            "What a sender gets back for a command: accepted (with the seqs of its events and, for a batch or a \
             settlement report, one result per line), rejected with a reason code, or invalid (not a command, \
             nothing recorded). A redelivery gets the same outcome with duplicate = true."
        ),
    );
    schema
}

/// One line of `ansinh audit export` (DESIGN.md "The audit log format"). `log::chain::Record` is
/// the Rust side; the four members are spelled out here because the format is a contract with
/// auditors, stricter than the decoder (hash patterns, no other members, seq from 1).
fn audit_record(mut event_root: Value) -> Value {
    let root = event_root.as_object_mut().expect("the event schema is an object");
    let mut defs = root.remove("$defs").and_then(|d| d.as_object().cloned()).unwrap_or_default();
    root.remove("$schema");
    root.remove("title");
    defs.insert("Event".into(), event_root);
    let hex64 = |what: &str| json!({"description": what, "type": "string", "pattern": "^[0-9a-f]{64}$"});
    json!({
        "$schema": DRAFT_2020_12,
        "title": format!("audit record v{VERSION}"),
        "description": "One record of the hash-chained audit log, one JSON line per event in seq order. hash = lowercase hex \
                        SHA-256 of the RFC 8785 (JCS) canonical form of the record without its hash member; prev_hash is the \
                        previous record's hash, 64 zeros for seq 1.",
        "type": "object",
        "properties": {
            "seq": {"description": "Position in the log, from 1, without gaps.", "type": "integer", "minimum": 1},
            "prev_hash": hex64("hash of the record at seq - 1; 64 zeros for seq 1"),
            "event": {"$ref": "#/$defs/Event"},
            "hash": hex64("SHA-256 of the JCS form of this record without hash"),
        },
        "required": ["seq", "prev_hash", "event", "hash"],
        "additionalProperties": false,
        "$defs": defs,
    })
}
