//! The nation seen by auditors and operators (issue 12), over shard data dirs made by the engine
//! in-process: a national checkpoint of three shards verifies (in Rust and in Python); a shard
//! whose record was changed, or a checkpoint naming a wrong seq or hash, fails naming that
//! shard; a running shard's head is read over its API; `audit verify --shards` names the shard
//! that fails. The `/v1/nation/` routes over two shard APIs on real listeners return a citizen's
//! payouts from the shard that holds them and name a stopped shard as missing.

mod api_support;
mod common;

use ansinh::api::nation::Nation;
use ansinh::api::{serve_listener, ApiState, Readiness};
use ansinh::audit;
use ansinh::audit::national::{NationalCheckpoint, ShardHead};
use ansinh::command::{Command, CommandEnvelope, FundBudget};
use ansinh::log::segment::{self, SealedRecord};
use ansinh::log::Head;
use ansinh::metrics::Metrics;
use ansinh::outcome::OutcomeStatus;
use ansinh::{Engine, EngineOptions};
use api_support::{dechunk, tokens, AGENCY_HCM, AGENCY_KH, AUDITOR, SERVICE};
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output};
use std::sync::Arc;
use std::time::Duration;

const CACHE: u64 = 32 * 1024 * 1024;

/// The commands of one shard: north holds Khánh Hòa (056) with AN and BINH paid, south TP HCM
/// (079) with DUNG paid, central only a program and a budget.
fn commands(shard: &str) -> Vec<Command> {
    let mut c = vec![define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")]), set_level_cmd(None, "2024-07", "500000")];
    match shard {
        "north" => {
            c.push(fund_cmd("2025-01", "100000000"));
            c.extend([&AN, &BINH].map(|p| enroll_cmd(p, "6c", "2025-01")));
            c.push(batch_cmd("N1", "2025-01", &[(AN.id, "750000"), (BINH.id, "750000")]));
            c.push(settlements_cmd(VCB, vec![settled_item("N1-000001", "FT-N1")]));
        }
        "south" => {
            c.push(Command::FundBudget(FundBudget { province: "079".into(), ..fund_payload("2025-01", "100000000") }));
            let mut dung = enroll_payload(&DUNG, "6c", "2025-01");
            dung.province = "079".into();
            c.push(Command::EnrollBeneficiary(dung));
            let mut batch = batch_payload("S1", "2025-01", &[(DUNG.id, "750000")]);
            batch.province = "079".into();
            c.push(Command::SubmitPayoutBatch(batch));
        }
        _ => c.push(fund_cmd("2025-02", "5000000")),
    }
    c
}

fn run_all(engine: &mut Engine, shard: &str) {
    let envelopes: Vec<CommandEnvelope> = commands(shard).into_iter().enumerate().map(|(i, c)| envelope(&format!("{shard}-{i}"), c)).collect();
    for e in envelopes {
        for outcome in engine.execute(&[e]).expect("the engine stores the group") {
            assert_eq!(outcome.status, OutcomeStatus::Accepted, "{outcome:#?}");
        }
    }
}

fn open_engine(dir: &Path) -> Engine {
    let mut options = EngineOptions::new(dir);
    options.checkpoint_every_events = 4;
    Engine::open(&options, &mut |_, _| {}).expect("the engine opens")
}

/// A data dir per shard under one temp dir, each engine closed again; and the config naming them.
struct Nation3 {
    root: tempfile::TempDir,
    names: Vec<&'static str>,
}

impl Nation3 {
    fn build(names: &[&'static str]) -> Nation3 {
        let root = tempfile::tempdir().expect("a temporary directory");
        for name in names {
            let mut engine = open_engine(&root.path().join(name));
            run_all(&mut engine, name);
        }
        let n = Nation3 { root, names: names.to_vec() };
        n.write_config(&[]);
        n
    }
    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
    fn config(&self) -> PathBuf {
        self.file("ansinh.toml")
    }
    /// `[shards]` over the data dirs; `listen` gives a shard's api_listen (else a port of its own).
    fn write_config(&self, listen: &[(&str, SocketAddr)]) {
        let provinces = |name: &str| match name {
            "north" => "[\"056\"]",
            "south" => "[\"079\"]",
            _ => "[]",
        };
        let mut text = String::from("[shards]\nnamespace = \"vn\"\n");
        for (i, name) in self.names.iter().enumerate() {
            let api = listen.iter().find(|(n, _)| n == name).map(|(_, a)| a.to_string()).unwrap_or_else(|| format!("127.0.0.1:{}", 1 + i));
            text.push_str(&format!(
                "[[shards.shard]]\nname = \"{name}\"\nprovinces = {}\ndata_dir = {:?}\napi_listen = \"{api}\"\n",
                provinces(name),
                self.dir(name).to_str().unwrap()
            ));
        }
        std::fs::write(self.config(), text).expect("the config is written");
    }
    fn cli(&self, args: &[&str]) -> Output {
        Process::new(env!("CARGO_BIN_EXE_ansinh")).arg("--config").arg(self.config()).args(args).output().expect("the ansinh binary runs")
    }
    fn checkpoint(&self) -> (PathBuf, NationalCheckpoint) {
        let path = self.file("national.json");
        let out = self.cli(&["audit", "national-checkpoint", "--out", s(&path)]);
        assert!(out.status.success(), "{}", text(&out));
        let record = NationalCheckpoint::parse(&std::fs::read(&path).unwrap()).expect("the record reads back");
        (path, record)
    }
    fn export(&self, name: &str) -> PathBuf {
        let path = self.file(&format!("{name}.jsonl"));
        let db = audit::open_data_dir(&self.dir(name), CACHE).expect("the data dir opens");
        let mut out = std::fs::File::create(&path).unwrap();
        audit::export::export(&db, 1, None, &mut out, &mut |_| {}).expect("export");
        path
    }
    fn python(&self, checkpoint: &Path) -> Output {
        let mut args = vec!["--national".to_string(), s(checkpoint).to_string()];
        for name in &self.names {
            let export = self.export(name);
            args.extend(["--shard".to_string(), format!("{name}={}", s(&export))]);
        }
        python(&args)
    }
    fn head(&self, name: &str) -> Head {
        audit::national::head_of_data_dir(&self.dir(name), CACHE).expect("the head reads")
    }
}

fn python(args: &[String]) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/verify_export.py");
    Process::new("python3").arg(script).args(args).output().expect("python3 runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Changes the amount of the first `payout.instructed` record of a data dir, in its segment, the
/// way someone with write access to sled could; returns its seq.
fn tamper_first_payout(dir: &Path) -> u64 {
    let db = audit::open_data_dir(dir, CACHE).expect("the data dir opens");
    let journal = db.open_tree("journal").unwrap();
    let head = ansinh::log::Log::open(&db).unwrap().head().seq;
    let stored = |seq| segment::find(&journal, seq).unwrap().expect("a segment holds the seq").record(seq).to_vec();
    let seq = (1..=head).find(|s| String::from_utf8_lossy(&stored(*s)).contains("\"payout.instructed\"")).expect("a payout");
    let seg = segment::find(&journal, seq).unwrap().unwrap();
    let first = seg.first_seq;
    let mut records: Vec<SealedRecord> =
        seg.records_from(first).map(|(seq, bytes, meta)| SealedRecord { seq, bytes: bytes.to_vec(), meta: meta.clone() }).collect();
    let changed = String::from_utf8(records[(seq - first) as usize].bytes.clone()).unwrap().replacen("\"amount\":\"750000\"", "\"amount\":\"7500000\"", 1);
    records[(seq - first) as usize].bytes = changed.into_bytes();
    journal.remove(segment::key(first)).unwrap();
    let (key, value) = segment::pack(&records).remove(0);
    journal.insert(key, value).unwrap();
    db.flush().unwrap();
    seq
}

#[test]
fn a_national_checkpoint_of_three_shards_verifies_and_a_changed_shard_is_named() {
    let nation = Nation3::build(&["south", "north", "central"]);
    let (path, record) = nation.checkpoint();
    assert_eq!(record.namespace, "vn");
    assert_eq!(record.shards.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["central", "north", "south"], "sorted by name");
    for s in &record.shards {
        assert_eq!(Head { seq: s.seq, hash: s.hash.clone() }, nation.head(&s.name), "shard {}", s.name);
    }
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(raw.starts_with("{\"hash\":\"") && raw.ends_with("}\n") && raw.lines().count() == 1, "one canonical line: {raw}");

    let out = nation.cli(&["audit", "verify-national", "--checkpoint", s(&path)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("national: all 3 shards pass through the heads it names: OK"), "{}", text(&out));
    let out = nation.cli(&["audit", "verify", "--shards"]);
    assert!(out.status.success(), "{}", text(&out));
    for name in ["north", "south", "central"] {
        assert!(text(&out).contains(&format!("shard {name}: OK  head seq")), "{}", text(&out));
    }
    let out = nation.python(&path);
    assert!(out.status.success(), "{}", text(&out));

    let seq = tamper_first_payout(&nation.dir("north"));
    let out = nation.cli(&["audit", "verify-national", "--checkpoint", s(&path)]);
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains(&format!("shard north: FAILED at seq {seq}")), "{t}");
    assert!(t.contains("shard south: OK") && t.contains("shard central: OK"), "{t}");
    assert!(t.contains("shard north did not pass"), "{t}");
    let out = nation.cli(&["audit", "verify", "--all-shards", "--chain-only"]);
    assert!(!out.status.success() && text(&out).contains(&format!("shard north: FAILED at seq {seq}")), "{}", text(&out));
    let out = nation.python(&path);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("shard north: FAILED at seq {seq}")) && text(&out).contains("first failing shard north"), "{}", text(&out));
}

#[test]
fn a_wrong_seq_or_hash_in_the_checkpoint_fails_naming_that_shard_and_a_changed_record_fails_its_hash() {
    let nation = Nation3::build(&["north", "south"]);
    let (path, record) = nation.checkpoint();
    let forged = |f: &dyn Fn(&mut ShardHead)| {
        let mut shards = record.shards.clone();
        shards.iter_mut().filter(|s| s.name == "south").for_each(f);
        let p = nation.file("forged.json");
        std::fs::write(&p, NationalCheckpoint::seal(&record.namespace, &record.taken_at, shards).unwrap().to_bytes()).unwrap();
        p
    };
    let past_end = forged(&|s| s.seq += 3);
    let out = nation.cli(&["audit", "verify-national", "--checkpoint", s(&past_end), "--chain-only"]);
    assert!(!out.status.success() && text(&out).contains("shard south: FAILED at seq") && text(&out).contains("shard north: OK"), "{}", text(&out));
    assert!(!nation.python(&past_end).status.success());

    let wrong_hash = forged(&|s| s.hash = "ab".repeat(32));
    let out = nation.cli(&["audit", "verify-national", "--checkpoint", s(&wrong_hash)]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("shard south: FAILED at seq") && t.contains("rewritten"), "{t}");
    let out = nation.python(&wrong_hash);
    assert!(!out.status.success() && text(&out).contains("shard south: FAILED at seq"), "{}", text(&out));

    // The record itself changed without resealing: its own hash fails, whoever checks it.
    let edited = nation.file("edited.json");
    std::fs::write(&edited, std::fs::read_to_string(&path).unwrap().replace("\"namespace\":\"vn\"", "\"namespace\":\"vm\"")).unwrap();
    let out = nation.cli(&["audit", "verify-national", "--checkpoint", s(&edited)]);
    assert!(!out.status.success() && text(&out).contains("the record was changed after it was taken"), "{}", text(&out));
    let out = nation.python(&edited);
    assert!(!out.status.success() && text(&out).contains("changed after it was taken"), "{}", text(&out));

    // A shard of the nation left out of the record is named too.
    let fewer = nation.file("fewer.json");
    let north_only = record.shards.iter().filter(|s| s.name == "north").cloned().collect();
    std::fs::write(&fewer, NationalCheckpoint::seal("vn", &record.taken_at, north_only).unwrap().to_bytes()).unwrap();
    let out = nation.cli(&["audit", "verify-national", "--checkpoint", s(&fewer), "--chain-only"]);
    assert!(!out.status.success() && text(&out).contains("shard south: FAILED is configured in [shards]"), "{}", text(&out));

    // Exports instead of data dirs.
    let (n, so) = (nation.export("north"), nation.export("south"));
    let out =
        nation.cli(&["audit", "verify-national", "--checkpoint", s(&path), "--export", &format!("north={}", s(&n)), "--export", &format!("south={}", s(&so))]);
    assert!(out.status.success(), "{}", text(&out));
}

/// An API on a real listener over an engine kept open (a running shard).
struct ShardApi {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

fn serve(listener: std::net::TcpListener, state: ApiState) -> ShardApi {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime starts");
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let listener = runtime.block_on(async { tokio::net::TcpListener::from_std(listener) }).expect("the listener is handed to tokio");
    runtime.spawn(serve_listener(listener, state, std::future::pending()));
    ShardApi { addr, _runtime: runtime }
}

fn state_of(engine: &Engine, nation: Option<Nation>) -> ApiState {
    let head = engine.head().clone();
    ApiState::new(engine.views().reader(), Arc::new(move || Ok(head.clone())), &tokens(), Arc::new(Metrics::new()), Arc::new(Readiness::default))
        .with_nation(nation)
}

#[test]
fn a_running_shard_is_read_over_its_api_and_named_as_not_verified() {
    let nation = Nation3::build(&["north", "south"]);
    let south = open_engine(&nation.dir("south"));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = serve(listener, state_of(&south, None));
    nation.write_config(&[("south", api.addr)]);
    let path = nation.file("national.json");
    let out = Process::new(env!("CARGO_BIN_EXE_ansinh"))
        .env(ansinh_token_env(), AUDITOR)
        .args(["--config", s(&nation.config()), "audit", "national-checkpoint", "--out", s(&path)])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("from its API http://{}/v1/head", api.addr)), "{}", text(&out));
    let record = NationalCheckpoint::parse(&std::fs::read(&path).unwrap()).unwrap();
    let s_head = record.shards.iter().find(|s| s.name == "south").unwrap();
    assert_eq!((s_head.seq, &s_head.hash), (south.head().seq, &south.head().hash));

    // Without a token the running shard's head cannot be read: said, and nothing written.
    let again = nation.file("again.json");
    let out = Process::new(env!("CARGO_BIN_EXE_ansinh"))
        .env_remove(ansinh_token_env())
        .args(["--config", s(&nation.config()), "audit", "national-checkpoint", "--out", s(&again)])
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out).contains("shard south") && text(&out).contains(ansinh_token_env()), "{}", text(&out));
    assert!(!again.exists());

    let out = nation.cli(&["audit", "verify", "--shards", "--chain-only"]);
    let t = text(&out);
    assert!(!out.status.success() && t.contains("shard north: OK") && t.contains("shard south: NOT VERIFIED") && t.contains("shard south did not pass"), "{t}");
    drop(api);
    drop(south);
    let out = nation.cli(&["audit", "verify-national", "--checkpoint", s(&path)]);
    assert!(out.status.success(), "once the shard is stopped its chain verifies through the head read over its API: {}", text(&out));
}

/// The body matches the 200 schema the OpenAPI document gives for `route`.
fn assert_documented(addr: SocketAddr, route: &str, body: &Value) {
    let (_, doc) = http_get(addr, "/v1/openapi.json", AUDITOR);
    let schema =
        doc["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]["schema"].as_object().unwrap_or_else(|| panic!("{route} is documented"));
    let mut root = Value::Object(schema.clone());
    root["components"] = doc["components"].clone();
    let validator = jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{route}: the documented schema builds: {e}"));
    let errors: Vec<String> = validator.iter_errors(body).map(|e| format!("{e} at {}", e.instance_path)).collect();
    assert!(errors.is_empty(), "{route}: the body does not match its documented schema: {errors:#?}");
}

fn ansinh_token_env() -> &'static str {
    "ANSINH_API_TOKEN"
}

fn http_get(addr: SocketAddr, path: &str, token: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).expect("the server accepts");
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header block");
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.to_string() };
    (head[9..12].parse().unwrap(), serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}")))
}

#[test]
fn the_nation_routes_answer_from_the_shard_that_holds_the_citizen_and_name_a_stopped_shard() {
    let nation = Nation3::build(&["north", "south"]);
    let engines: Vec<Engine> = ["north", "south"].iter().map(|n| open_engine(&nation.dir(n))).collect();
    let listeners: Vec<std::net::TcpListener> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let stopped = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap(); // bound, then closed
    let mut peers: Vec<(String, String)> =
        vec![("north".into(), listeners[0].local_addr().unwrap().to_string()), ("south".into(), listeners[1].local_addr().unwrap().to_string())];
    let two = Nation::new(peers.clone(), Duration::from_secs(3));
    peers.push(("west".into(), stopped.to_string()));
    let three = Nation::new(peers, Duration::from_secs(3));
    let mut listeners = listeners.into_iter();
    let north = serve(listeners.next().unwrap(), state_of(&engines[0], Some(three)));
    let south = serve(listeners.next().unwrap(), state_of(&engines[1], Some(two)));

    // AN's payouts are north's, asked of south's API: answered from north, complete.
    let (status, body) = http_get(south.addr, &format!("/v1/nation/citizens/{}/payouts", AN.id), AUDITOR);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["complete"], true, "{body}");
    let payouts = body["payouts"].as_array().unwrap();
    assert_eq!(payouts.len(), 1, "{body}");
    assert_eq!(
        (payouts[0]["shard"].as_str(), payouts[0]["payout_id"].as_str(), payouts[0]["status"].as_str()),
        (Some("north"), Some("N1-000001"), Some("settled"))
    );
    assert_eq!((payouts[0]["period"].as_str(), payouts[0]["amount"].as_str()), (Some("2025-01"), Some("750000")));
    assert_documented(south.addr, "/v1/nation/citizens/{citizen_id}/payouts", &body);
    let answers: Vec<(&str, &str)> = body["shards"].as_array().unwrap().iter().map(|s| (s["shard"].as_str().unwrap(), s["answer"].as_str().unwrap())).collect();
    assert_eq!(answers, [("north", "found"), ("south", "not_found")]);

    // Through north's API, which also lists a stopped shard: partial, the stopped one named.
    let (status, body) = http_get(north.addr, &format!("/v1/nation/citizens/{}/payouts", DUNG.id), AUDITOR);
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["complete"].as_bool(), body["missing"].clone()), (Some(false), serde_json::json!(["west"])), "{body}");
    assert_eq!(body["payouts"][0]["shard"], "south", "{body}");
    assert_eq!(body["payouts"][0]["payout_id"], "S1-000001", "{body}");
    let west = body["shards"].as_array().unwrap().iter().find(|s| s["shard"] == "west").unwrap().clone();
    assert_eq!((west["answer"].as_str(), west["http_status"].clone()), (Some("missing"), Value::Null), "{west}");

    // The citizen route mirrored; an unknown citizen where every shard answered is 404; the
    // payout by id comes from the shard that holds it.
    let (status, body) = http_get(south.addr, &format!("/v1/nation/citizens/{}", BINH.id), AUDITOR);
    assert_eq!((status, body["found"][0]["shard"].as_str()), (200, Some("north")), "{body}");
    assert_eq!(body["found"][0]["citizen"]["citizen_id"], BINH.id, "{body}");
    assert_documented(south.addr, "/v1/nation/citizens/{citizen_id}", &body);
    let (status, body) = http_get(south.addr, "/v1/nation/citizens/056185000555/payouts", AUDITOR);
    assert_eq!((status, body["error"].as_str()), (404, Some("citizen_not_found")), "{body}");
    let (status, body) = http_get(south.addr, &format!("/v1/nation/citizens/{}/payouts/N1-000001", AN.id), AUDITOR);
    assert_eq!((status, body["shard"].as_str(), body["payout"]["payout_id"].as_str()), (200, Some("north"), Some("N1-000001")), "{body}");
    assert_documented(south.addr, "/v1/nation/citizens/{citizen_id}/payouts/{payout_id}", &body);

    // Each shard applies the caller's scope itself: the TP HCM agency may not read a Khánh Hòa
    // citizen (north says 403, south 404); the Khánh Hòa agency and the citizen service may.
    let (status, body) = http_get(south.addr, &format!("/v1/nation/citizens/{}/payouts", AN.id), AGENCY_HCM);
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")), "{body}");
    for token in [AGENCY_KH, SERVICE] {
        let (status, body) = http_get(south.addr, &format!("/v1/nation/citizens/{}/payouts", AN.id), token);
        assert_eq!((status, body["payouts"][0]["shard"].as_str()), (200, Some("north")), "{body}");
    }
    let (status, _) = http_get(south.addr, "/v1/nation/citizens/12345/payouts", AUDITOR);
    assert_eq!(status, 400);

    // Once north stops, south's answer for AN is partial and names north; with no shard
    // answering at all it is 502.
    drop(north);
    let (status, body) = http_get(south.addr, &format!("/v1/nation/citizens/{}/payouts", AN.id), AUDITOR);
    assert_eq!((status, body["complete"].as_bool(), body["missing"].clone()), (200, Some(false), serde_json::json!(["north"])), "{body}");
    assert_eq!(body["payouts"], serde_json::json!([]), "{body}");
    let lone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = Nation::new(vec![("west".into(), stopped.to_string())], Duration::from_secs(3));
    let lone = serve(lone, state_of(&engines[1], Some(nowhere)));
    let (status, body) = http_get(lone.addr, &format!("/v1/nation/citizens/{}/payouts", AN.id), AUDITOR);
    assert_eq!((status, body["error"].as_str()), (502, Some("no_shard_answered")), "{body}");
    // Unsharded: the nation routes say so.
    let plain = serve(std::net::TcpListener::bind("127.0.0.1:0").unwrap(), state_of(&engines[1], None));
    let (status, body) = http_get(plain.addr, &format!("/v1/nation/citizens/{}/payouts", AN.id), AUDITOR);
    assert_eq!((status, body["error"].as_str()), (404, Some("nation_not_configured")), "{body}");
}

/// The one rule routing does not keep across shards (ARCHITECTURE.md "Shards"): one enrollment
/// per citizen and program. AN is enrolled in province 056 at north and in 079 at south, and both
/// pay her January; she is also paid the one-off programme by both (engines opened unsharded,
/// so each owns every partition: what a misrouted ring would do). BINH is enrolled at both but
/// paid at north only: a warning, not a failure. `verify --shards` verifies each shard, then
/// fails the nation naming both double payments with AN's ID masked.
#[test]
fn verify_shards_fails_naming_a_citizen_paid_by_two_shards_for_one_period() {
    use ansinh::command::{DefineOneOffProgram, FundOneOff, OneOffLine, SubmitOneOffBatch};
    let root = tempfile::tempdir().expect("a temporary directory");
    let one_off = |shard: &str| {
        let t = "2025-09-01T08:00:00+07:00";
        let at = |id: &str, c: Command| CommandEnvelope { issued_at: t.into(), ..envelope(&format!("{shard}-{id}"), c) };
        vec![
            at(
                "oo-define",
                Command::DefineOneOffProgram(DefineOneOffProgram {
                    program_id: "ho-tro-100k".into(),
                    name: "Quà tặng 100.000 đồng".into(),
                    amount: "100000".into(),
                    eligible_cutoff: "2025-08-30".into(),
                    period: "2025-09".into(),
                    legal_basis: String::new(),
                }),
            ),
            at("oo-fund", Command::FundOneOff(FundOneOff { program_id: "ho-tro-100k".into(), amount: "1000000".into(), reference: "KB".into() })),
            at(
                "oo-batch",
                Command::SubmitOneOffBatch(SubmitOneOffBatch {
                    batch_id: format!("OO-{shard}"),
                    program_id: "ho-tro-100k".into(),
                    partition: u32::from(ansinh::shard::partition_of(AN.id)),
                    lines: vec![OneOffLine { citizen_id: AN.id.into(), id_assigned_on: "2021-06-01".into(), account: None, commune: Some("22333".into()) }],
                }),
            ),
        ]
    };
    for shard in ["north", "south"] {
        let mut engine = open_engine(&root.path().join(shard));
        let mut envelopes: Vec<CommandEnvelope> = commands(shard).into_iter().enumerate().map(|(i, c)| envelope(&format!("{shard}-{i}"), c)).collect();
        if shard == "south" {
            // AN and BINH enrolled again, in south's province; AN's January paid again.
            for (i, who) in [&AN, &BINH].into_iter().enumerate() {
                let mut e = enroll_payload(who, "6c", "2025-01");
                e.province = "079".into();
                envelopes.push(envelope(&format!("south-again-{i}"), Command::EnrollBeneficiary(e)));
            }
            let mut batch = batch_payload("S2", "2025-01", &[(AN.id, "750000")]);
            batch.province = "079".into();
            envelopes.push(envelope("south-again-batch", Command::SubmitPayoutBatch(batch)));
        }
        envelopes.extend(one_off(shard));
        for e in envelopes {
            for outcome in engine.execute(&[e]).expect("the engine stores the group") {
                assert_eq!(outcome.status, OutcomeStatus::Accepted, "{outcome:#?}");
                assert!(outcome.lines.iter().all(|l| l.code.is_none()), "every line paid: {outcome:#?}");
            }
        }
    }
    let nation = Nation3 { root, names: vec!["north", "south"] };
    nation.write_config(&[]);
    let out = nation.cli(&["audit", "verify", "--shards"]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("shard north: OK") && t.contains("shard south: OK") && t.contains("national: all 2 shards verified OK"), "each shard is sound: {t}");
    let an = ansinh::domain::CitizenId::parse(AN.id).unwrap().masked();
    assert!(t.contains(&format!("national: FAILED paid on more than one shard: citizen {an} program {PROGRAM} period 2025-01 on shards north, south")), "{t}");
    assert!(t.contains(&format!("national: FAILED one-off paid on more than one shard: citizen {an} program ho-tro-100k on shards north, south")), "{t}");
    let binh = ansinh::domain::CitizenId::parse(BINH.id).unwrap().masked();
    assert!(t.contains(&format!("national: WARNING enrolled on more than one shard: citizen {binh} program {PROGRAM} on shards north, south")), "{t}");
    assert!(t.contains("2 payment(s) made on more than one shard"), "{t}");
    assert!(!t.contains(AN.id) && !t.contains(BINH.id), "citizen IDs are masked: {t}");
    assert_eq!(t.matches("national: FAILED paid on more than one shard").count(), 1, "only AN's January: {t}");
}
