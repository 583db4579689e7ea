//! The `events/` directory is a contract with integrators: one JSON Schema and one example per
//! command and event type, the schemas generated from the Rust types (`ansinh::schema`), the
//! examples hand-written. These tests keep the three in step: a new type without its files, an
//! example the schema or the decoder refuses, or a committed schema that differs from the
//! generated one fails here.

use ansinh::command::{Command, CommandEnvelope};
use ansinh::event::{Event, EventData};
use ansinh::log::chain::{recompute_hash, seal, Record, GENESIS_HASH};
use ansinh::outcome::Outcome;
use ansinh::schema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const REGENERATE: &str = "cargo run -- schema --out events/schemas";

fn events_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("events")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn generated() -> BTreeMap<String, Value> {
    schema::documents().into_iter().collect()
}

fn schema_of(relative: &str) -> Value {
    generated().remove(relative).unwrap_or_else(|| panic!("schema::documents() has no {relative}"))
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::new(schema).unwrap_or_else(|e| panic!("the schema builds: {e}"))
}

/// Every error of `instance` against `schema`, one per line; empty when valid.
fn errors(schema: &Value, instance: &Value) -> String {
    validator(schema).iter_errors(instance).map(|e| format!("  {} at {}\n", e, e.instance_path)).collect()
}

/// Decodes with the Rust type, encodes again, and expects the very same JSON value.
fn round_trip<T: Serialize + DeserializeOwned>(what: &str, example: &Value) -> T {
    let decoded: T = serde_json::from_value(example.clone()).unwrap_or_else(|e| panic!("{what}: the Rust type does not decode the example: {e}"));
    let encoded = serde_json::to_value(&decoded).expect("encodes");
    assert_eq!(&encoded, example, "{what}: the example does not survive decode + encode unchanged");
    decoded
}

struct Kind {
    dir: &'static str,
    type_names: &'static [&'static str],
}

const KINDS: [Kind; 2] = [Kind { dir: "commands", type_names: Command::TYPE_NAMES }, Kind { dir: "events", type_names: EventData::TYPE_NAMES }];

fn schema_path(kind: &Kind, type_name: &str) -> String {
    format!("{}/{type_name}.v{}.schema.json", kind.dir, schema::VERSION)
}

fn example_path(kind: &Kind, type_name: &str) -> PathBuf {
    events_dir().join("examples").join(kind.dir).join(format!("{type_name}.v{}.json", schema::VERSION))
}

#[test]
fn every_type_has_a_schema_and_an_example() {
    let docs = generated();
    let mut missing = Vec::new();
    for kind in &KINDS {
        for type_name in kind.type_names {
            let schema = schema_path(kind, type_name);
            if !docs.contains_key(&schema) {
                missing.push(format!("generated schema {schema}"));
            }
            if !events_dir().join("schemas").join(&schema).is_file() {
                missing.push(format!("events/schemas/{schema} (run `{REGENERATE}`)"));
            }
            let example = example_path(kind, type_name);
            if !example.is_file() {
                missing.push(format!("{} (write a realistic example by hand)", example.display()));
            }
        }
        // And nothing for types that do not exist (a rename leaves the old file behind).
        let expected: BTreeSet<String> = kind.type_names.iter().map(|t| format!("{t}.v{}.json", schema::VERSION)).collect();
        for entry in std::fs::read_dir(events_dir().join("examples").join(kind.dir)).expect("examples directory exists") {
            let name = entry.expect("readable directory").file_name().to_string_lossy().into_owned();
            assert!(
                expected.contains(&name),
                "events/examples/{}/{name} is not a {} type of version {}; delete or rename it",
                kind.dir,
                kind.dir,
                schema::VERSION
            );
        }
    }
    assert!(missing.is_empty(), "missing files:\n{}", missing.join("\n"));
    assert_eq!(docs.len(), Command::TYPE_NAMES.len() + EventData::TYPE_NAMES.len() + 2, "one schema per type, plus outcome and audit record");
}

#[test]
fn generated_schemas_are_valid_draft_2020_12() {
    for (path, doc) in schema::documents() {
        assert_eq!(doc["$schema"], "https://json-schema.org/draft/2020-12/schema", "{path}");
        if let Err(e) = jsonschema::meta::validate(&doc) {
            panic!("{path} is not a valid JSON Schema: {e}");
        }
        validator(&doc);
    }
}

#[test]
fn command_examples_validate_and_round_trip() {
    let kind = &KINDS[0];
    for type_name in kind.type_names {
        let example = read_json(&example_path(kind, type_name));
        let found = errors(&schema_of(&schema_path(kind, type_name)), &example);
        assert!(found.is_empty(), "example {type_name} fails its schema:\n{found}");
        let envelope: CommandEnvelope = round_trip(type_name, &example);
        assert_eq!(envelope.command.type_name(), *type_name);
        assert_eq!(envelope.v, schema::VERSION);
        assert!(ansinh::intake::decode_command(example.to_string().as_bytes()).is_ok(), "{type_name}: intake decodes the example");
    }
}

#[test]
fn event_examples_validate_and_round_trip() {
    let kind = &KINDS[1];
    for type_name in kind.type_names {
        let example = read_json(&example_path(kind, type_name));
        let found = errors(&schema_of(&schema_path(kind, type_name)), &example);
        assert!(found.is_empty(), "example {type_name} fails its schema:\n{found}");
        let event: Event = round_trip(type_name, &example);
        assert_eq!(event.data.type_name(), *type_name);
        assert_eq!(event.v, schema::VERSION);
        assert!(event.id.starts_with(&format!("{}/", event.command_id)), "{type_name}: event id is <command_id>/<n>");
    }
}

/// An example of one type must not pass the schema of another: the `type` const pins it.
#[test]
fn a_schema_accepts_only_its_own_type() {
    for kind in &KINDS {
        let first = kind.type_names[0];
        let example = read_json(&example_path(kind, first));
        for other in &kind.type_names[1..] {
            assert!(!validator(&schema_of(&schema_path(kind, other))).is_valid(&example), "{other} schema accepts a {first} example");
        }
    }
}

#[test]
fn outcome_example_validates_and_round_trips() {
    let example = read_json(&events_dir().join("examples/outcome.v1.json"));
    let found = errors(&schema_of("outcome.v1.schema.json"), &example);
    assert!(found.is_empty(), "outcome example fails its schema:\n{found}");
    let outcome: Outcome = round_trip("outcome", &example);
    assert!(Command::TYPE_NAMES.contains(&outcome.command_type.as_str()));
}

/// The export example is what `ansinh audit export` writes: canonical lines, hashes computed
/// with Python's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False). The Rust
/// sealing must give the same bytes and hashes, and the record example is its second line.
#[test]
fn audit_examples_validate_chain_and_match_the_rust_sealing() {
    let record_schema = schema_of("audit-record.v1.schema.json");
    let export = std::fs::read_to_string(events_dir().join("examples/audit-export.v1.jsonl")).expect("export example exists");
    let mut prev_hash = GENESIS_HASH.to_string();
    let mut records = Vec::new();
    for (i, line) in export.lines().enumerate() {
        let value: Value = serde_json::from_str(line).expect("one JSON record per line");
        let found = errors(&record_schema, &value);
        assert!(found.is_empty(), "export line {} fails the audit record schema:\n{found}", i + 1);
        let record: Record = round_trip("audit record", &value);
        assert_eq!(record.seq, i as u64 + 1, "seq counts from 1 without gaps");
        assert_eq!(record.prev_hash, prev_hash, "prev_hash links to the previous record");
        assert_eq!(recompute_hash(&value).as_deref(), Some(record.hash.as_str()), "hash of line {}", i + 1);
        let (bytes, hash) = seal(record.seq, &record.prev_hash, &record.event);
        assert_eq!(hash, record.hash, "the Rust sealing computes the same hash as Python");
        assert_eq!(String::from_utf8(bytes).expect("UTF-8"), line, "the Rust canonical form is byte for byte the exported line");
        let found = errors(&schema_of(&schema_path(&KINDS[1], record.event.data.type_name())), &value["event"]);
        assert!(found.is_empty(), "the event of line {} fails its type's schema:\n{found}", i + 1);
        prev_hash = record.hash.clone();
        records.push(value);
    }
    assert!(records.len() >= 2, "the export example shows a chain");

    let example = read_json(&events_dir().join("examples/audit-record.v1.json"));
    assert_eq!(Some(&example), records.get(1), "audit-record.v1.json is line 2 of audit-export.v1.jsonl");
    // The schema lists exactly the members a Record has.
    let members: BTreeSet<&String> = example.as_object().expect("object").keys().collect();
    let properties: BTreeSet<&String> = record_schema["properties"].as_object().expect("object").keys().collect();
    assert_eq!(members, properties);
}

#[test]
fn committed_schemas_equal_the_generated_ones() {
    let dir = events_dir().join("schemas");
    if std::env::var_os("ANSINH_WRITE_SCHEMAS").is_some_and(|v| v == "1") {
        schema::write_all(&dir).expect("writes events/schemas");
    }
    let docs = generated();
    let mut stale = Vec::new();
    for (relative, doc) in &docs {
        let path = dir.join(relative);
        match std::fs::read_to_string(&path) {
            Ok(text) if text == schema::to_file_text(doc) => {}
            Ok(_) => stale.push(format!("events/schemas/{relative} differs from the generated schema")),
            Err(_) => stale.push(format!("events/schemas/{relative} is missing")),
        }
    }
    for sub in ["", "commands", "events"] {
        for entry in std::fs::read_dir(dir.join(sub)).expect("events/schemas exists") {
            let entry = entry.expect("readable directory");
            let relative = Path::new(sub).join(entry.file_name()).to_string_lossy().into_owned();
            if entry.path().is_file() && !docs.contains_key(&relative) {
                stale.push(format!("events/schemas/{relative} is not generated any more: delete it"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{}\nThe schemas are generated from the Rust types: run `{REGENERATE}` (or `ANSINH_WRITE_SCHEMAS=1 cargo test --test schemas`) and commit the result.",
        stale.join("\n")
    );
}

/// The schemas refuse what the decoder refuses, for the mistakes integrators make most.
#[test]
fn schemas_reject_common_mistakes() {
    let command = |t: &str| (schema_of(&schema_path(&KINDS[0], t)), read_json(&example_path(&KINDS[0], t)));
    let event = |t: &str| (schema_of(&schema_path(&KINDS[1], t)), read_json(&example_path(&KINDS[1], t)));
    let refused = |what: &str, schema: &Value, instance: &Value| {
        assert!(!validator(schema).is_valid(instance), "the schema accepts {what}");
    };

    // An amount as a JSON number (a float would lose đồng; amounts are strings).
    let (s, mut x) = command("fund_budget");
    x["payload"]["amount"] = json!(28_450_000_000u64);
    refused("a numeric amount in fund_budget", &s, &x);
    assert!(serde_json::from_value::<CommandEnvelope>(x).is_err(), "the decoder refuses it too");
    let (s, mut x) = event("payout.instructed");
    x["data"]["amount"] = json!(750_000);
    refused("a numeric amount in payout.instructed", &s, &x);
    assert!(serde_json::from_value::<Event>(x).is_err());

    // An 11-digit citizen ID in an event (commands carry raw text: decide answers citizen_id_format).
    let (s, mut x) = event("beneficiary.enrolled");
    x["data"]["citizen_id"] = json!("05615500482");
    refused("an 11-digit citizen ID", &s, &x);
    assert!(serde_json::from_value::<Event>(x).is_err());

    // An unknown member in a payload or in data (a typo must not be ignored silently).
    let (s, mut x) = command("enroll_beneficiary");
    x["payload"]["ethnicity"] = json!("Kinh");
    refused("an unknown payload member", &s, &x);
    assert!(serde_json::from_value::<CommandEnvelope>(x).is_err());
    let (s, mut x) = command("enroll_beneficiary");
    x["payload"]["account"]["branch"] = json!("Nha Trang");
    refused("an unknown account member", &s, &x);
    let (s, mut x) = event("payout.settled");
    x["data"]["settled_at"] = json!("2025-01-10T16:45:00+07:00");
    refused("an unknown data member", &s, &x);
    assert!(serde_json::from_value::<Event>(x).is_err());

    // A version this schema does not describe, and a missing payload.
    let (s, mut x) = command("fund_budget");
    x["v"] = json!(2);
    refused("v = 2 in a v1 schema", &s, &x);
    let (s, mut x) = command("fund_budget");
    x.as_object_mut().expect("object").remove("payload");
    refused("a command without payload", &s, &x);

    // A record with a malformed hash.
    let record_schema = schema_of("audit-record.v1.schema.json");
    let mut x = read_json(&events_dir().join("examples/audit-record.v1.json"));
    x["hash"] = json!("AD74593B");
    refused("an upper-case, short hash", &record_schema, &x);
}

// ---- the schemas and the intake say the same thing (issue 16) -------------------------------

/// A draft 2020-12 validator that asserts `format` too, for integrators who turn it on.
fn asserting_formats(schema: &Value) -> jsonschema::Validator {
    jsonschema::draft202012::options().should_validate_formats(true).build(schema).unwrap_or_else(|e| panic!("the schema builds: {e}"))
}

/// What the intake does with a message over AMQP (`bus::consumer`): decode it, check the
/// envelope; a version 1 command is one it accepts as such (another `v` is decoded only to be
/// refused, recorded, with `version_unsupported`: the v1 schema describes version 1).
fn intake_accepts_as_v1(text: &[u8]) -> bool {
    match ansinh::intake::decode_command(text) {
        Ok(e) => ansinh::engine::check_envelope(&e).is_ok() && e.v == 1,
        Err(_) => false,
    }
}

/// The schema of the type the message names (an unknown or absent type: refused by every one).
fn schema_answers(message: &Value, text: &[u8]) -> (bool, bool) {
    let kind = &KINDS[0];
    let named = message.get("type").and_then(Value::as_str).filter(|t| kind.type_names.contains(t));
    let schemas: Vec<Value> = match named {
        Some(t) => vec![schema_of(&schema_path(kind, t))],
        None => kind.type_names.iter().map(|t| schema_of(&schema_path(kind, t))).collect(),
    };
    // Validators read the parsed value; the bytes must be JSON for either to answer.
    assert!(serde_json::from_slice::<Value>(text).is_ok());
    let plain = schemas.iter().any(|s| validator(s).is_valid(message));
    let formats = schemas.iter().any(|s| asserting_formats(s).is_valid(message));
    (plain, formats)
}

/// Envelope members and a few payload shapes, each changed in ways integrators and hostile
/// senders do: for every one, the v1 schema (with and without `format` assertion) accepts the
/// message exactly when the intake accepts it as a version 1 command. `v`: `1.0` is 1 for both
/// (JSON Schema cannot tell them apart); `0` is refused by both. A repeated key is the one rule
/// a schema cannot state (validators see the parsed value): see `intake::strict_json`.
#[test]
fn the_schemas_and_the_intake_agree_on_every_envelope() {
    let times_good = [
        "2025-01-20T08:00:00Z",
        "2025-01-20T08:00:00+07:00",
        "2025-01-20t08:00:00z",
        "2025-01-20T08:00:00.123456789+07:00",
        "2025-01-20T08:00:00-00:00",
        "2025-01-20T08:00:00+14:00",
        "2025-01-20T08:00:00-14:00",
        "2025-01-20T08:00:00+05:45",
        "2024-02-29T23:59:59Z",
        "2000-02-29T00:00:00Z",
        "1900-01-01T00:00:00Z",
        "2399-12-31T23:59:59Z",
    ];
    let times_bad = [
        "2025-02-30T08:00:00Z",
        "2025-04-31T08:00:00Z",
        "2023-02-29T08:00:00Z",
        "1900-02-29T08:00:00Z",
        "2100-02-29T08:00:00Z",
        "2025-13-01T08:00:00Z",
        "2025-00-01T08:00:00Z",
        "2025-01-00T08:00:00Z",
        "2025-01-20T24:00:00Z",
        "2025-01-20T08:60:00Z",
        "2016-12-31T23:59:60Z",
        "2025-01-20T08:00:00+99:99",
        "2025-01-20T08:00:00+24:00",
        "2025-01-20T08:00:00+14:01",
        "2025-01-20T08:00:00+07:60",
        "2025-01-20T08:00:00+0700",
        "2025-01-20T08:00:00",
        "2025-01-20 08:00:00Z",
        "2025-01-20",
        "1899-12-31T23:59:59Z",
        "2400-01-01T00:00:00Z",
        "2025-01-20T08:00:00.Z",
        "2025-01-20T08:00:00.12345678901234567890Z",
        "２０２５-01-20T08:00:00Z",
        "",
    ];
    // (what, member of the envelope, new value or None to remove it)
    let mut changes: Vec<(String, &str, Option<Value>)> = Vec::new();
    let mut set = |name: String, member: &'static str, value: Option<Value>| changes.push((name, member, value));
    set("unchanged".into(), "v", Some(json!(1)));
    for (name, v) in [
        ("1.0", json!(1.0)),
        ("1e0", serde_json::from_str("1e0").expect("JSON")),
        ("0", json!(0)),
        ("-1", json!(-1)),
        ("1.5", json!(1.5)),
        ("0.0", json!(0.0)),
        ("2", json!(2)),
        ("2.0", json!(2.0)),
        ("2^32", json!(4_294_967_296u64)),
        ("\"1\"", json!("1")),
        ("null", Value::Null),
        ("true", json!(true)),
    ] {
        set(format!("v {name}"), "v", Some(v));
    }
    set("v absent".into(), "v", None);
    for (name, id) in [
        ("one character", json!("a")),
        ("128 characters", json!("x".repeat(128))),
        ("every allowed character", json!("AZaz09._:-")),
        ("129 characters", json!("x".repeat(129))),
        ("empty", json!("")),
        ("a space", json!("a b")),
        ("a slash", json!("a/b")),
        ("a newline", json!("a\n")),
        ("non-ASCII", json!("lô-1")),
        ("a number", json!(12)),
        ("null", Value::Null),
    ] {
        set(format!("command_id {name}"), "command_id", Some(id));
    }
    set("command_id absent".into(), "command_id", None);
    for t in times_good.iter().chain(&times_bad) {
        set(format!("issued_at {t:?}"), "issued_at", Some(json!(t)));
    }
    set("issued_at a number".into(), "issued_at", Some(json!(1_737_360_000)));
    set("issued_at absent".into(), "issued_at", None);
    set("type unknown".into(), "type", Some(json!("pay_everyone")));
    set("type absent".into(), "type", None);
    set("sender a number".into(), "sender", Some(json!(7)));
    set("sender null".into(), "sender", Some(Value::Null));
    set("an unknown envelope member".into(), "priority", Some(json!("high")));
    set("payload absent".into(), "payload", None);
    set("payload an array".into(), "payload", Some(json!([])));

    let mut disagreements = Vec::new();
    let mut cases = 0;
    for type_name in ["fund_budget", "enroll_beneficiary", "submit_payout_batch", "record_settlements"] {
        let example = read_json(&example_path(&KINDS[0], type_name));
        for (name, member, value) in &changes {
            let mut message = example.clone();
            let envelope = message.as_object_mut().expect("an example is an object");
            match value {
                Some(v) => envelope.insert(member.to_string(), v.clone()),
                None => envelope.remove(*member),
            };
            let text = serde_json::to_vec(&message).expect("JSON");
            let intake = intake_accepts_as_v1(&text);
            let (plain, formats) = schema_answers(&message, &text);
            cases += 1;
            if plain != intake || formats != intake {
                disagreements.push(format!("{type_name} with {name}: intake {intake}, schema {plain}, schema asserting formats {formats}"));
            }
        }
    }
    assert!(disagreements.is_empty(), "{} of {cases} messages:\n{}", disagreements.len(), disagreements.join("\n"));
}

/// `issued_at` and events' `at`: the schema's pattern and `timefmt::Timestamp::parse` accept
/// the same texts, swept over every month and day of leap and common years at the edges of the
/// range, every hour, minute and second around their bounds, and offsets around ±14:00.
#[test]
fn the_time_pattern_accepts_exactly_what_the_parser_accepts() {
    let command = schema_of(&schema_path(&KINDS[0], "fund_budget"));
    let event = schema_of(&schema_path(&KINDS[1], "budget.funded"));
    for keyword in ["type", "format", "pattern", "maxLength"] {
        assert_eq!(command["properties"]["issued_at"][keyword], event["properties"]["at"][keyword], "one rule for both: {keyword}");
    }
    let time_schema = validator(&command["properties"]["issued_at"]);
    let mut texts = Vec::new();
    for year in [1899, 1900, 1904, 1996, 2000, 2023, 2024, 2100, 2200, 2300, 2399, 2400] {
        for month in 0..=13 {
            for day in 0..=32 {
                texts.push(format!("{year:04}-{month:02}-{day:02}T12:00:00Z"));
            }
        }
    }
    for (h, m, s) in [(0, 0, 0), (23, 59, 59), (24, 0, 0), (23, 60, 0), (23, 59, 60), (23, 59, 61), (99, 99, 99)] {
        texts.push(format!("2025-01-20T{h:02}:{m:02}:{s:02}Z"));
    }
    for sign in ['+', '-'] {
        for hours in [0, 7, 13, 14, 15, 23, 24, 99] {
            for minutes in [0, 1, 30, 59, 60, 99] {
                texts.push(format!("2025-01-20T12:00:00{sign}{hours:02}:{minutes:02}"));
            }
        }
    }
    for fraction in [".", ".0", ".123456789", ".1234567890123456789"] {
        texts.push(format!("2025-01-20T12:00:00{fraction}Z"));
    }
    let mut disagreements = Vec::new();
    for t in &texts {
        let (parser, schema) = (ansinh::timefmt::valid_rfc3339(t), time_schema.is_valid(&json!(t)));
        if parser != schema {
            disagreements.push(format!("{t}: parser {parser}, schema {schema}"));
        }
    }
    assert!(disagreements.is_empty(), "{} of {} times:\n{}", disagreements.len(), texts.len(), disagreements.join("\n"));
}

/// Event data types whose decoders are stricter than a plain string: the schema says the same.
#[test]
fn event_value_patterns_accept_exactly_what_their_decoders_accept() {
    let event = schema_of(&schema_path(&KINDS[1], "payout.instructed"));
    let defs = &event["$defs"];
    let agree = |def: &str, texts: &[String], decodes: &dyn Fn(&str) -> bool| {
        let v = validator(&defs[def]);
        for t in texts {
            assert_eq!(v.is_valid(&json!(t)), decodes(t), "{def} {t:?}");
        }
    };
    let amounts: Vec<String> =
        ["1", "750000", "0750000", "0", "1000000000000000", "1000000000000001", "9999999999999999", "750.000", "750,000", "-1", " 1", "1e3", ""]
            .map(String::from)
            .to_vec();
    agree("Vnd", &amounts, &|t| serde_json::from_value::<ansinh::domain::Vnd>(json!(t)).is_ok());
    let ids: Vec<String> = ["056185000123", "003185000123", "999185000123", "05618500012", "0561850001234", "05618500012a"].map(String::from).to_vec();
    agree("CitizenId", &ids, &|t| serde_json::from_value::<ansinh::domain::CitizenId>(json!(t)).is_ok());
    let enrolled = schema_of(&schema_path(&KINDS[1], "beneficiary.enrolled"));
    let dob = validator(&enrolled["$defs"]["BirthDate"]);
    for t in ["1985-04-12", "2000-02-29", "1900-02-29", "2023-02-29", "1985-04-31", "1899-12-31", "2400-01-01", "1985-4-12"] {
        assert_eq!(dob.is_valid(&json!(t)), ansinh::domain::BirthDate::parse(t).is_ok(), "BirthDate {t}");
    }
}

/// Which role sends each command example (events/README.md, "Who sends what"), under the users
/// and roles of config/dev.toml: each example is sent by a user that may send it. Decided by the
/// engine itself on an empty log (an example may meet another rejection there, such as an
/// unknown program, but never `unauthorized`); the same command from a user of another role is.
#[test]
fn every_command_example_is_sent_by_a_user_whose_role_may_send_it() {
    let config = ansinh::config::Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/dev.toml"), true).expect("config/dev.toml loads");
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut engine = ansinh::Engine::open(&ansinh::EngineOptions::new(dir.path()), &mut |_, _| {}).expect("an engine");
    engine.set_roles(config.bus.roles());
    let kind = &KINDS[0];
    for type_name in kind.type_names {
        let example: CommandEnvelope = serde_json::from_value(read_json(&example_path(kind, type_name))).expect("a command");
        let sender = example.sender.clone().unwrap_or_else(|| panic!("example {type_name} names its sender"));
        assert!(config.bus.users.iter().any(|u| u.name == sender), "example {type_name}: sender {sender} is a user of config/dev.toml");
        let outcome = engine.execute(std::slice::from_ref(&example)).expect("decided").remove(0);
        assert_ne!(outcome.code.as_deref(), Some("unauthorized"), "example {type_name} sent by {sender}: {outcome:?}");
        let other = if sender == "ansinh-admin" { "ansinh-agency-056" } else { "ansinh-admin" };
        let mut elsewhere = example.clone();
        (elsewhere.command_id, elsewhere.sender) = (format!("{}-as-{other}", example.command_id), Some(other.to_string()));
        let refused = engine.execute(&[elsewhere]).expect("decided").remove(0);
        assert_eq!(refused.code.as_deref(), Some("unauthorized"), "example {type_name} sent by {other} must be refused: {refused:?}");
    }
}
