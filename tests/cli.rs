//! The command line as a Unix tool: a command whose reader goes away (`ansinh show … | head`)
//! ends quietly, status 141 (128 + SIGPIPE) or 0, never with a panic and a backtrace. Each
//! printing command runs as the real binary with its stdout pipe already closed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn ansinh() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ansinh"));
    c.stdin(Stdio::null()).env("RUST_BACKTRACE", "1");
    c
}

/// Runs `ansinh ARGS` to completion with stdout readable; its stdout.
fn run(args: &[&str]) -> String {
    let out = ansinh().args(args).output().expect("ansinh runs");
    assert!(out.status.success(), "ansinh {}: {}\n{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Runs `ansinh ARGS` with the read end of its stdout closed before it writes: (exit code, stderr).
fn run_closed(args: &[&str]) -> (Option<i32>, String) {
    let mut child = ansinh().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ansinh runs");
    drop(child.stdout.take());
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("a status") {
            break status;
        }
        assert!(Instant::now() < deadline, "ansinh {} did not end", args.join(" "));
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().expect("the stderr reader"))
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// A field of the first exported record that has it.
fn field(export: &str, name: &str) -> String {
    let needle = format!("\"{name}\":\"");
    let at = export.find(&needle).unwrap_or_else(|| panic!("no {name} in the export")) + needle.len();
    export[at..].split('"').next().expect("a value").to_string()
}

#[test]
fn every_printing_command_ends_quietly_when_its_reader_goes_away() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let data = tmp.path().join("data");
    run(&["demo", "--data-dir", path(&data), "--beneficiaries", "30"]);
    let export = run(&["--data-dir", path(&data), "audit", "export"]);
    let (batch, payout, citizen) = (field(&export, "batch_id"), field(&export, "payout_id"), field(&export, "citizen_id"));
    let (province, program, period) = (field(&export, "province"), field(&export, "program_id"), field(&export, "period"));
    let files = tmp.path().join("files");
    run(&["demo-files", "--out", path(&files), "--beneficiaries", "5"]);
    let rules = files.join("rules.jsonl");
    let fresh = |name: &str| -> PathBuf { tmp.path().join(name) };
    let d = path(&data);
    let cases: Vec<Vec<String>> = [
        vec!["--data-dir", d, "show", "citizen", &citizen],
        vec!["--data-dir", d, "show", "citizen", &citizen, "--json"],
        vec!["--data-dir", d, "show", "batch", &batch, "--lines"],
        vec!["--data-dir", d, "show", "batch", &batch, "--json"],
        vec!["--data-dir", d, "show", "payout", &payout],
        vec!["--data-dir", d, "show", "budget", &province, &program, &period],
        vec!["--data-dir", d, "audit", "export"],
        vec!["--data-dir", d, "audit", "verify"],
        vec!["--data-dir", d, "audit", "checkpoint"],
        vec!["--data-dir", d, "audit", "checkpoints"],
        vec!["--data-dir", d, "audit", "checkpoints", "--json"],
        vec!["--data-dir", d, "audit", "replay", "--as-of", "10", "citizen", &citizen],
        vec!["--data-dir", d, "rebuild"],
        vec!["--data-dir", path(&fresh("submit")), "submit", path(&rules)],
        vec!["--data-dir", path(&fresh("submit-json")), "submit", path(&rules), "--json"],
        vec!["--data-dir", path(&fresh("demo")), "demo", "--beneficiaries", "20"],
        vec!["demo-files", "--out", path(&fresh("files-2")), "--beneficiaries", "5"],
        vec!["schema", "--out", path(&fresh("schemas"))],
        vec!["--help"],
        vec!["show", "--help"],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect();
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = run_closed(&args);
        assert!(matches!(code, Some(0) | Some(141)), "ansinh {}: exit {code:?}, wanted 0 or 141\n{stderr}", args.join(" "));
        assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe") && !stderr.contains("backtrace"), "ansinh {}: {stderr}", args.join(" "));
    }
    // What ran before the reader left stays done: the closed-pipe submit is answered from the index.
    let again = run(&["--data-dir", path(&fresh("submit")), "submit", path(&rules)]);
    assert!(again.contains("already applied (nothing written)"), "{again}");
}
