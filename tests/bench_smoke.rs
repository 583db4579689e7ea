//! CI smoke of `ansinh bench`: each suite runs at a small size as a child process and must
//! produce well-formed results. Correctness only: no timing is asserted (the machine is shared
//! and noisy; the figures live in BENCHMARKS.md). `amqp` and `latency` run against the real
//! broker on 127.0.0.1:5672 and fail, never skip, when it is not there.

mod amqp_support;

use amqp_support::{ensure_broker, ENGINE};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn bench(suite: &str, lines: &str) -> Value {
    bench_with(suite, lines, &[])
}

/// `ansinh bench SUITE --lines N --json --tmp DIR [extra]`: the report, after checking the run
/// succeeded and left nothing in DIR.
fn bench_with(suite: &str, lines: &str, extra: &[&str]) -> Value {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ansinh"))
        .args(["bench", suite, "--lines", lines, "--json", "--tmp"])
        .arg(tmp.path())
        .args(extra)
        .output()
        .expect("ansinh runs");
    assert!(out.status.success(), "bench {suite} failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("--json prints one JSON object");
    assert_eq!(report["suite"], suite);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).expect("tmp").collect();
    assert!(leftovers.is_empty(), "bench {suite} left scratch data behind: {leftovers:?}");
    report
}

fn figure(report: &Value, name: &str) -> f64 {
    let all = report["figures"].as_array().into_iter().flatten().chain(report["ratios"].as_array().into_iter().flatten());
    let found = all.clone().find(|f| f["name"] == name).unwrap_or_else(|| panic!("no figure {name:?} in {report}"));
    found["value"].as_f64().expect("a number")
}

fn positive(report: &Value, name: &str) -> f64 {
    let v = figure(report, name);
    assert!(v.is_finite() && v > 0.0, "{name} = {v}");
    v
}

#[test]
fn embedded_suite_pays_every_line_and_writes_the_same_records_raw() {
    let r = bench("embedded", "1500");
    let lines = r["size"].as_u64().expect("size");
    assert!(lines > 1_400 && lines <= 1_500, "{lines} active beneficiaries of 1,500");
    // One payout.instructed per line plus the batch's own event; the baseline wrote as many.
    assert_eq!(figure(&r, "records") as u64, lines + 1);
    assert_eq!(figure(&r, "groups") as u64, 1);
    positive(&r, "engine payout lines/s");
    positive(&r, "baseline raw sled records/s");
    positive(&r, "baseline plain file records/s");
    positive(&r, "engine/raw sled");
    positive(&r, "engine/plain file");
    assert!(figure(&r, "mean record size") > 100.0);
}

#[test]
fn replay_suite_rebuilds_and_verifies_the_whole_log() {
    let r = bench("replay", "3000");
    let events = r["size"].as_u64().expect("size");
    assert!(events >= 3_000, "log of {events} events, asked for 3,000");
    assert_eq!(figure(&r, "events in the log") as u64, events);
    positive(&r, "rebuild events/s");
    positive(&r, "audit verify events/s");
    positive(&r, "baseline raw journal scan events/s");
}

#[test]
fn memory_suite_reads_a_peak_rss_for_both_runs() {
    let r = bench("memory", "1000");
    let big = positive(&r, "peak RSS, N beneficiaries");
    let small = positive(&r, "peak RSS, 100 beneficiaries (baseline)");
    assert!(big >= small, "1,000 beneficiaries peaked at {big}, 100 at {small}");
    let months = positive(&r, "beneficiary-months paid");
    assert!(months >= 900.0, "the month paid most of the 1,000 beneficiaries ({months})");
    positive(&r, "decision state per beneficiary-month");
}

/// A config file whose broker user is the engine's development user (the one
/// scripts/rabbitmq-setup.sh creates, with permissions on `ansinh*` names only), defaults
/// otherwise.
fn broker_config(dir: &Path) -> String {
    ensure_broker();
    let path = dir.join("bench.toml");
    std::fs::write(&path, format!("[bus]\namqp_url = {:?}\n", amqp_support::url(ENGINE))).expect("config written");
    path.to_str().expect("UTF-8 temp path").to_string()
}

/// The topology prefix the report names, after checking it says the topology was deleted.
fn prefix(report: &Value) -> String {
    let notes: Vec<&str> = report["notes"].as_array().expect("notes").iter().filter_map(Value::as_str).collect();
    let note = notes.iter().find(|n| n.starts_with("broker topology prefix ")).unwrap_or_else(|| panic!("no topology note in {notes:?}"));
    assert!(note.contains("deleted at the end"), "{note}");
    note.trim_start_matches("broker topology prefix ").split(' ').next().expect("a prefix").to_string()
}

/// Nothing of the run is left on the broker: passive declares of its queues and exchanges fail.
fn assert_gone(queues: &[String], exchanges: &[String]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    rt.block_on(async {
        let conn = amqp_support::connect(ENGINE).await;
        for q in queues {
            let ch = conn.create_channel().await.expect("a channel");
            let passive = QueueDeclareOptions { passive: true, ..Default::default() };
            assert!(ch.queue_declare(q.as_str().into(), passive, FieldTable::default()).await.is_err(), "queue {q} was left on the broker");
        }
        for x in exchanges {
            let ch = conn.create_channel().await.expect("a channel");
            let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
            let declared = ch.exchange_declare(x.as_str().into(), lapin::ExchangeKind::Topic, passive, FieldTable::default()).await;
            assert!(declared.is_err(), "exchange {x} was left on the broker");
        }
        let _ = conn.close(200, "done".into()).await;
    });
}

#[test]
fn amqp_suite_instructs_every_line_over_the_broker_and_moves_as_many_baseline_messages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = broker_config(dir.path());
    let r = bench_with("amqp", "1500", &["--config", &config]);
    let lines = r["size"].as_u64().expect("size");
    assert!(lines > 1_400 && lines <= 1_500, "{lines} active beneficiaries of 1,500");
    assert_eq!(figure(&r, "payout batches") as u64, 1);
    assert_eq!(figure(&r, "replies") as u64, 1, "one reply per batch");
    assert_eq!(figure(&r, "instructions seen") as u64, lines, "one payout.instructed per line, deduplicated by seq");
    assert_eq!(figure(&r, "baseline messages drained") as u64, lines, "the baseline moves as many messages");
    assert!(figure(&r, "mean instruction size") > 100.0);
    positive(&r, "engine payout lines/s");
    positive(&r, "baseline messages/s");
    positive(&r, "engine/baseline");
    let p = prefix(&r);
    let mut queues: Vec<String> = ["commands", "dead", "baseline-in", "baseline-out"].iter().map(|q| format!("{p}.{q}")).collect();
    queues.extend(ansinh::domain::reference::bank_bins().map(|bin| format!("{p}.bank.{bin}")));
    assert_gone(&queues, &["commands", "events", "dlx", "checkpoints"].map(|x| format!("{p}.{x}")));
}

#[test]
fn latency_suite_answers_every_command_on_both_sides() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = broker_config(dir.path());
    let r = bench_with("latency", "100", &["--config", &config, "--rate", "200"]);
    assert_eq!(r["size"].as_u64(), Some(100));
    for side in ["engine", "baseline"] {
        assert_eq!(figure(&r, &format!("{side} replies")) as u64, 100, "{side}: a reply to every measured command");
        let (p50, p99, max) = (positive(&r, &format!("{side} p50")), positive(&r, &format!("{side} p99")), positive(&r, &format!("{side} max")));
        assert!(p50 <= p99 && p99 <= max, "{side}: p50 {p50} <= p99 {p99} <= max {max}");
        positive(&r, &format!("{side} achieved publish rate"));
    }
    for ratio in ["p50 engine/baseline", "p99 engine/baseline", "max engine/baseline"] {
        positive(&r, ratio);
    }
    let p = prefix(&r);
    assert_gone(&[format!("{p}.commands"), format!("{p}-echo.commands")], &[format!("{p}.events"), format!("{p}-echo.commands")]);
}

#[test]
fn shards_suite_relays_every_one_off_line_through_two_shards_and_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = broker_config(dir.path());
    let r = bench_with("shards", "3000", &["--config", &config, "--shards", "2"]);
    assert_eq!(r["size"].as_u64(), Some(3_000));
    let messages = figure(&r, "batch messages");
    for k in ["2 shard(s)", "1 shard(s)"] {
        assert_eq!(figure(&r, &format!("{k}: line events seen")) as u64, 3_000, "{k}: one payout.instructed or one_off.cash_listed per line");
        assert_eq!(figure(&r, &format!("{k}: replies")), messages, "{k}: one reply per batch message");
        positive(&r, &format!("{k}: aggregate one-off lines/s"));
        positive(&r, &format!("{k}: decision state per one-off payee"));
    }
    let spread = figure(&r, "2 shard(s): s0 lines") + figure(&r, "2 shard(s): s1 lines");
    assert_eq!(spread as u64, 3_000, "each line relayed by one of the two shards");
    assert!(figure(&r, "2 shard(s): s0 lines") > 0.0 && figure(&r, "2 shard(s): s1 lines") > 0.0, "the ring gives both shards partitions");
    let notes: Vec<&str> = r["notes"].as_array().expect("notes").iter().filter_map(Value::as_str).collect();
    let namespaces: Vec<&str> = notes.iter().filter_map(|n| n.strip_prefix("broker namespace ")).collect();
    assert_eq!(namespaces.len(), 2, "{notes:?}");
    for n in namespaces {
        assert!(n.contains("(deleted at the end)"), "{n}");
        let ns = n.split(' ').next().expect("a namespace");
        let mut queues = Vec::new();
        let mut exchanges = vec![format!("{ns}.route"), format!("{ns}.oneoff")];
        for shard in ["s0", "s1"] {
            queues.push(format!("{ns}.{shard}.commands"));
            exchanges.push(format!("{ns}.{shard}.events"));
        }
        assert_gone(&queues, &exchanges);
    }
}

#[test]
fn broker_suites_fail_loudly_without_a_broker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("nobroker.toml");
    // Port 1 on loopback: nothing listens there.
    std::fs::write(&config, "[bus]\namqp_url = \"amqp://guest:guest@127.0.0.1:1/%2f\"\n").expect("config written");
    for suite in ["amqp", "latency", "shards"] {
        let tmp = tempfile::tempdir().expect("temp dir");
        let out = Command::new(env!("CARGO_BIN_EXE_ansinh"))
            .arg("--config")
            .arg(&config)
            .args(["bench", suite, "--lines", "10", "--json", "--tmp"])
            .arg(tmp.path())
            .output()
            .expect("ansinh runs");
        assert!(!out.status.success(), "bench {suite} must fail without a broker");
        assert!(out.stdout.is_empty(), "bench {suite} printed results without a broker");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("not reachable") && stderr.contains("rabbitmq-server -detached"), "bench {suite} must say how to start the broker: {stderr}");
        assert!(std::fs::read_dir(tmp.path()).expect("tmp").next().is_none(), "bench {suite} left scratch data behind");
    }
}
