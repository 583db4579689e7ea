//! CI smoke of `ansinh bench`: each built suite runs at a small size as a child process and
//! must produce well-formed results. Correctness only: no timing is asserted (the machine is
//! shared and noisy; the figures live in BENCHMARKS.md).

use serde_json::Value;
use std::process::Command;

fn bench(suite: &str, lines: &str) -> Value {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out =
        Command::new(env!("CARGO_BIN_EXE_ansinh")).args(["bench", suite, "--lines", lines, "--json", "--tmp"]).arg(tmp.path()).output().expect("ansinh runs");
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
    positive(&r, "ratio engine/baseline".trim_start_matches("ratio "));
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
}

#[test]
fn unbuilt_suites_fail_loudly_instead_of_printing_numbers() {
    for suite in ["amqp", "latency"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ansinh")).args(["bench", suite, "--json"]).output().expect("ansinh runs");
        assert!(!out.status.success(), "bench {suite} must not pretend to measure");
        assert!(out.stdout.is_empty());
    }
}
