//! `ansinh audit verify --shards`, `audit national-checkpoint` and `audit verify-national`
//! (issue 12): the auditor's tools over every shard of `[shards]`, each shard's data dir read as
//! `audit verify` reads one (sled directly, no engine).
//!
//! sled holds an exclusive lock on a data dir while an engine (`serve`, `api`) has it open, so a
//! running shard's data dir cannot be read: `verify --shards` and `verify-national` name such a
//! shard as not verified (stop it, or verify an export of a stopped copy with
//! `verify-national --export NAME=FILE`); `national-checkpoint` reads a running shard's head
//! through its API (`GET /v1/head` at `api_listen`, token from `ANSINH_API_TOKEN`).

use super::audit::{cache_bytes, print_report, rate, stored_head_seq, NationalCheckpointArgs, VerifyNationalArgs};
use super::{bar, CliResult};
use crate::audit::national::{self, NationalCheckpoint, ShardHead};
use crate::audit::verify::{Report, VerifyOptions};
use crate::audit::{self, AuditError, Source};
use crate::config::Config;
use crate::log::Head;
use crate::outln;
use crate::shard::ShardsSection;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// The environment variable holding the API token used to read a running shard's head.
pub const TOKEN_ENV: &str = "ANSINH_API_TOKEN";
/// Longest a shard's API is waited for when reading its head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

fn shards(config: &Config) -> Result<&ShardsSection, String> {
    if config.shards.is_empty() {
        return Err("the config has no [shards] section: there is one data dir, verify it with `ansinh audit verify`".into());
    }
    Ok(&config.shards)
}

/// How one shard came out.
enum Outcome {
    Ok(Head),
    Failed(String),
    NotVerified(String),
}

fn outcome_of(result: Result<Report, AuditError>) -> Outcome {
    match result {
        Err(e) => Outcome::NotVerified(e.to_string()),
        Ok(report) => match (&report.failure, &report.head) {
            (None, Some(h)) => Outcome::Ok(h.clone()),
            (None, None) => Outcome::NotVerified("no records".into()),
            (Some(f), _) => Outcome::Failed(match f.seq {
                Some(seq) => format!("at seq {seq}: {}", f.what),
                None => f.what.clone(),
            }),
        },
    }
}

/// Verifies one source with a progress bar named after the shard, printing its checks.
fn verify_one(name: &str, source: Result<Source, AuditError>, options: &VerifyOptions, expected: Option<&ShardHead>) -> Outcome {
    let source = match source {
        Ok(s) => s,
        Err(e) => return Outcome::NotVerified(e.to_string()),
    };
    let started = std::time::Instant::now();
    let progress = bar(stored_head_seq(&source), &format!("verifying {name}"));
    let mut tick = |n: u64| progress.set_position(n);
    let result = match expected {
        Some(head) => national::verify_shard(&source, head, options, &mut tick),
        None => audit::verify::verify(&source, options, &mut tick),
    };
    progress.finish_and_clear();
    if let Ok(report) = &result {
        print_report(report);
        rate(&format!("shard {name}: verified"), report.records, started.elapsed());
    }
    outcome_of(result)
}

fn data_dir_source(path: &Path, config: &Config) -> Result<(sled::Db, Source), AuditError> {
    let db = audit::open_data_dir(path, cache_bytes(config))?;
    let source = Source::data_dir(&db)?;
    Ok((db, source))
}

/// Prints the per-shard lines and the national summary; `Err` names the first shard that did
/// not pass.
fn summarize(what: &str, passed: &str, results: &[(String, Outcome)]) -> CliResult {
    outln!();
    for (name, outcome) in results {
        match outcome {
            Outcome::Ok(h) => outln!("shard {name}: OK  head seq {}  hash {}", h.seq, h.hash),
            Outcome::Failed(why) => outln!("shard {name}: FAILED {why}"),
            Outcome::NotVerified(why) => outln!("shard {name}: NOT VERIFIED: {why}"),
        }
    }
    let bad: Vec<&str> = results.iter().filter(|(_, o)| !matches!(o, Outcome::Ok(_))).map(|(n, _)| n.as_str()).collect();
    match bad.first() {
        None => {
            outln!("national: all {} shards {passed}", results.len());
            Ok(())
        }
        Some(first) => {
            outln!("national: FAILED: {} of {} shards did not pass ({})", bad.len(), results.len(), bad.join(", "));
            Err(format!("shard {first} did not pass {what} (see above); the other shards' lines say whether they did"))
        }
    }
}

/// `audit verify --shards`: the whole `audit verify` over every shard's data dir.
pub fn verify_shards(config: &Config, views: bool) -> CliResult {
    let shards = shards(config)?;
    let options = VerifyOptions { views, cache_capacity_bytes: cache_bytes(config), ..VerifyOptions::default() };
    outln!("Verifying the {} shards of {}", shards.shard.len(), shards.namespace);
    let mut results = Vec::new();
    // The verified shards' sources, kept open for the national cross-check.
    let mut verified = Vec::new();
    for s in &shards.shard {
        outln!("\nshard {}: data dir {}", s.name, s.data_dir.display());
        let opened = data_dir_source(&s.data_dir, config);
        let outcome = match opened {
            Ok((db, source)) => {
                let outcome = verify_one(&s.name, Ok(source), &options, None);
                if matches!(outcome, Outcome::Ok(_)) {
                    verified.push((s.name.clone(), db));
                }
                outcome
            }
            Err(e) => verify_one(&s.name, Err(e), &options, None),
        };
        results.push((s.name.clone(), outcome));
    }
    let shards_passed = summarize("verification", "verified OK", &results);
    let national = cross_check(&verified, results.len());
    shards_passed.and(national)
}

/// The national cross-check over the shards that verified: what was paid on more than one shard
/// fails the nation; a citizen enrolled in one program on more than one shard is a warning.
fn cross_check(verified: &[(String, sled::Db)], configured: usize) -> CliResult {
    let mut sources = Vec::with_capacity(verified.len());
    for (name, db) in verified {
        sources.push((name.clone(), Source::data_dir(db).map_err(|e| format!("shard {name}: {e}"))?));
    }
    let named: Vec<(String, &Source)> = sources.iter().map(|(n, s)| (n.clone(), s)).collect();
    let progress = bar(0, "national cross-check");
    let found = national::cross_check(&named, &mut |n| progress.set_position(n)).map_err(|e| format!("national cross-check: {e}"))?;
    progress.finish_and_clear();
    let over =
        if verified.len() == configured { format!("all {configured} shards") } else { format!("the {} of {configured} shards that verified", verified.len()) };
    outln!();
    for d in &found.enrolled_twice {
        outln!("national: WARNING enrolled on more than one shard: {}", d.describe());
    }
    for d in &found.regular_paid_twice {
        outln!("national: FAILED paid on more than one shard: {}", d.describe());
    }
    for d in &found.one_off_paid_twice {
        outln!("national: FAILED one-off paid on more than one shard: {}", d.describe());
    }
    let doubled = found.regular_paid_twice.len() + found.one_off_paid_twice.len();
    if found.failed() {
        return Err(format!(
            "national cross-check over {over}: {doubled} payment(s) made on more than one shard (listed above); \
             the rule one enrollment per citizen and program is not enforced across shards (ARCHITECTURE.md \"Shards\")"
        ));
    }
    outln!(
        "national: cross-check over {over}: no citizen paid on more than one shard for one program and period ({} enrolled on more than one shard)",
        found.enrolled_twice.len()
    );
    Ok(())
}

/// `audit national-checkpoint`: each shard's head read once, from its data dir when it can be
/// opened, else from its API; one record sealed and written.
pub fn national_checkpoint(config: &Config, args: &NationalCheckpointArgs) -> CliResult {
    let shards = shards(config)?;
    let taken_at = crate::timefmt::now_rfc3339();
    let mut runtime = None;
    let mut heads = Vec::new();
    for s in &shards.shard {
        let (head, from) = match national::head_of_data_dir(&s.data_dir, cache_bytes(config)) {
            Ok(h) => (h, format!("data dir {}", s.data_dir.display())),
            Err(e) if e.is_in_use() || matches!(e, AuditError::NotADataDir { .. }) => {
                if runtime.is_none() {
                    runtime =
                        Some(tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("cannot start the async runtime: {e}"))?);
                }
                let rt = runtime.as_ref().expect("just built");
                let head = rt.block_on(head_over_api(&s.api_listen)).map_err(|why| format!("shard {}: its data dir cannot be read ({e}) and {why}", s.name))?;
                (head, format!("API http://{}/v1/head", s.api_listen))
            }
            Err(e) => return Err(format!("shard {}: {e}", s.name)),
        };
        eprintln!("  {:<12} seq {:>12}  hash {}  (from its {from})", s.name, head.seq, head.hash);
        heads.push(ShardHead { name: s.name.clone(), seq: head.seq, hash: head.hash });
    }
    let record = NationalCheckpoint::seal(&shards.namespace, &taken_at, heads)?;
    let mut bytes = record.to_bytes();
    bytes.push(b'\n');
    match &args.out {
        None => super::out::Stdout.write_all(&bytes).map_err(|e| format!("cannot write the record: {e}"))?,
        Some(path) => write_file(path, &bytes)?,
    }
    eprintln!("national checkpoint of {} shards taken at {taken_at}: hash {}", record.shards.len(), record.hash);
    eprintln!("keep it outside these machines; later: ansinh audit verify-national --checkpoint FILE");
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> CliResult {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    let partial = path.with_file_name(name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&partial)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().map_err(|e| format!("cannot write {}: {e}", partial.display()))?;
    std::fs::rename(&partial, path).map_err(|e| format!("cannot rename {} to {}: {e}", partial.display(), path.display()))
}

/// `GET /v1/head` of a shard's API with the token in [`TOKEN_ENV`].
async fn head_over_api(addr: &str) -> Result<Head, String> {
    let token = std::env::var(TOKEN_ENV).map_err(|_| format!("{TOKEN_ENV} is not set: set it to an API token to read the head over http://{addr}/v1/head"))?;
    let authorization =
        axum::http::HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| format!("{TOKEN_ENV} holds characters a header cannot carry"))?;
    let (status, body) =
        crate::api::client::get(addr, "/v1/head", Some(&authorization), HEAD_TIMEOUT).await.map_err(|why| format!("its API gave no head: {why}"))?;
    if !status.is_success() {
        return Err(format!("its API answered {status} to /v1/head: {}", String::from_utf8_lossy(&body).chars().take(300).collect::<String>()));
    }
    #[derive(serde::Deserialize)]
    struct HeadIn {
        seq: u64,
        hash: String,
    }
    let h: HeadIn = serde_json::from_slice(&body).map_err(|e| format!("its API's /v1/head is not a head: {e}"))?;
    if h.seq == 0 || !national::is_hash(&h.hash) {
        return Err(format!("its API's head (seq {}, hash {:?}) is empty or not a hash", h.seq, h.hash));
    }
    Ok(Head { seq: h.seq, hash: h.hash })
}

/// `audit verify-national`: the record's own hash, then every shard it names against its data
/// dir (from the config) or the export given for it.
pub fn verify_national(config: &Config, args: &VerifyNationalArgs) -> CliResult {
    let bytes = std::fs::read(&args.checkpoint).map_err(|e| format!("cannot read {}: {e}", args.checkpoint.display()))?;
    let record = NationalCheckpoint::parse(&bytes).map_err(|why| format!("{} is not a valid national checkpoint: {why}", args.checkpoint.display()))?;
    let mut exports = BTreeMap::new();
    for raw in &args.export {
        let (name, file) =
            raw.split_once('=').filter(|(n, f)| !n.is_empty() && !f.is_empty()).ok_or_else(|| format!("--export {raw:?}: expected NAME=EXPORT.jsonl"))?;
        if !record.shards.iter().any(|s| s.name == name) {
            return Err(format!("--export {raw:?}: the checkpoint holds no shard named {name:?}"));
        }
        if exports.insert(name.to_string(), std::path::PathBuf::from(file)).is_some() {
            return Err(format!("--export: shard {name:?} is given twice"));
        }
    }
    outln!("National checkpoint of {} taken at {}: its hash {} is its content's", record.namespace, record.taken_at, record.hash);
    let options = VerifyOptions { views: !args.chain_only, cache_capacity_bytes: cache_bytes(config), ..VerifyOptions::default() };
    let mut results = Vec::new();
    let same_nation = !config.shards.is_empty() && config.shards.namespace == record.namespace;
    if same_nation {
        // A shard of this nation left out of the record is a hole in what it proves.
        for s in config.shards.shard.iter().filter(|s| !record.shards.iter().any(|h| h.name == s.name)) {
            results
                .push((s.name.clone(), Outcome::Failed(format!("is configured in [shards] of {} but the checkpoint holds no head of it", record.namespace))));
        }
    }
    for head in &record.shards {
        outln!("\nshard {}: seq {} hash {}", head.name, head.seq, head.hash);
        let outcome = match (exports.get(&head.name), config.shards.get(&head.name).filter(|_| same_nation)) {
            (Some(file), _) => verify_one(&head.name, Ok(Source::file(file)), &options, Some(head)),
            (None, Some(s)) => match data_dir_source(&s.data_dir, config) {
                Ok((_db, source)) => verify_one(&head.name, Ok(source), &options, Some(head)),
                Err(e) => verify_one(&head.name, Err(e), &options, Some(head)),
            },
            (None, None) => Outcome::NotVerified(format!(
                "no data dir for it in this config's [shards] (namespace {:?}) and no --export {}=FILE",
                config.shards.namespace, head.name
            )),
        };
        results.push((head.name.clone(), outcome));
    }
    results.sort_by(|a, b| a.0.cmp(&b.0));
    summarize("the national checkpoint", "pass through the heads it names: OK", &results)
}
