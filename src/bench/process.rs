//! Suites that run `ansinh` itself as child processes: `memory` (peak RSS of the demo month)
//! and `replay` (rebuild and audit verify over a log the demo wrote). The children load the
//! config the way any `ansinh` run does (`config/ansinh.toml` in the working directory).

use super::{dir_bytes, Report, Scratch};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Events `ansinh demo` writes per beneficiary (enrollment, payout, settlement, and ~3 %
/// failures with their corrections): 61,776 for 20,000 measured; used to size the log.
pub const EVENTS_PER_BENEFICIARY: f64 = 3.08;

/// What a finished child cost.
pub struct ChildRun {
    pub wall: Duration,
    /// Peak resident set (VmHWM), bytes, read from /proc while the child ran.
    pub peak_rss: u64,
    pub stdout: String,
}

/// Peak resident set (VmHWM) of a running process, bytes.
pub(crate) fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Runs `ansinh --data-dir DIR <args>` to completion, sampling VmHWM every 10 ms (VmHWM is the
/// kernel's own high-water mark, so sampling misses only growth in the last 10 ms of life).
pub fn run_child(data_dir: &Path, args: &[&str]) -> Result<ChildRun, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out_path = data_dir.with_extension("stdout");
    let out = std::fs::File::create(&out_path).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(h) = vm_hwm(pid) {
            peak = peak.max(h);
        }
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    let wall = started.elapsed();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    if !status.success() {
        return Err(format!("ansinh {} exited with {status}; output:\n{stdout}", args.join(" ")));
    }
    Ok(ChildRun { wall, peak_rss: peak, stdout })
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Peak RSS of `ansinh demo --beneficiaries N` against the same demo for 100 beneficiaries.
pub fn memory(beneficiaries: usize, tmp: &Path) -> Result<Report, String> {
    let scratch = Scratch::new(tmp, "memory")?;
    let small = run_child(&scratch.path().join("small"), &["demo", "--beneficiaries", "100"])?;
    let n = beneficiaries.to_string();
    let big = run_child(&scratch.path().join("big"), &["demo", "--beneficiaries", &n])?;
    let mut report = Report::new("memory", beneficiaries as u64);
    report.figure("peak RSS, N beneficiaries", big.peak_rss as f64, "bytes");
    report.figure("peak RSS, 100 beneficiaries (baseline)", small.peak_rss as f64, "bytes");
    let marginal = big.peak_rss.saturating_sub(small.peak_rss) as f64 / beneficiaries.saturating_sub(100).max(1) as f64;
    report.figure("marginal RSS per beneficiary", marginal, "bytes");
    report.figure("demo wall time, N beneficiaries", big.wall.as_secs_f64(), "s");
    report.figure("data dir, N beneficiaries", dir_bytes(&scratch.path().join("big")) as f64, "bytes");
    // The decision state alone: rebuilt from the month's log in this process, then measured
    // by what its structures allocated (`State::heap_bytes`, checked against a counting
    // allocator by tests/state_size.rs).
    let mut options = crate::engine::EngineOptions::new(scratch.path().join("big"));
    options.cache_capacity_bytes = 64 * 1024 * 1024;
    let engine = crate::engine::Engine::open(&options, &mut |_, _| {}).map_err(|e| e.to_string())?;
    let state = engine.state();
    let (state_bytes, months) = (state.heap_bytes(), state.regular_count());
    drop(engine);
    report.figure("decision state", state_bytes as f64, "bytes");
    report.figure("beneficiary-months paid", months as f64, "regular payouts");
    report.figure("decision state per beneficiary-month", state_bytes as f64 / months.max(1) as f64, "bytes (goal <= 200)");
    report.ratio("peak RSS N / peak RSS 100", big.peak_rss as f64 / small.peak_rss.max(1) as f64, "-");
    report.ratio("peak RSS / 2 GiB", big.peak_rss as f64 / (2.0 * GIB), "target <= 1 at 1,000,000 and 3,400,000");
    report.note("the whole demo month (rules, enrollment, batches, settlement, reissues) as a child process; VmHWM sampled every 10 ms");
    report.note("RSS includes sled's page cache (engine.cache_capacity_mb, 256 MiB by default)");
    Ok(report)
}

/// Builds a log of at least `events` events with the demo (child process), then times a raw
/// scan of the journal (baseline), `ansinh rebuild` and `ansinh audit verify` (child processes,
/// wall time including start-up and opening sled).
pub fn replay(events: u64, tmp: &Path, cache_capacity_bytes: u64) -> Result<Report, String> {
    let scratch = Scratch::new(tmp, "replay")?;
    let dir = scratch.path().join("data");
    let beneficiaries = ((events as f64 / EVENTS_PER_BENEFICIARY).ceil() as u64).max(10);
    let build = run_child(&dir, &["demo", "--beneficiaries", &beneficiaries.to_string()])?;

    let db = crate::audit::open_data_dir(&dir, cache_capacity_bytes).map_err(|e| e.to_string())?;
    let log = crate::log::Log::open(&db).map_err(|e| e.to_string())?;
    let head = log.head().seq;
    let t = Instant::now();
    let (mut scanned, mut bytes) = (0u64, 0u64);
    for r in log.range(1, head) {
        let (_, b) = r.map_err(|e| e.to_string())?;
        scanned += 1;
        bytes += b.len() as u64;
    }
    let scan = t.elapsed();
    drop(log);
    drop(db);
    if scanned != head {
        return Err(format!("scanned {scanned} records, head is {head}"));
    }

    let rebuild = run_child(&dir, &["rebuild"])?;
    let verify = run_child(&dir, &["audit", "verify"])?;
    let per_s = |d: Duration| head as f64 / d.as_secs_f64();
    let mut report = Report::new("replay", head);
    report.figure("events in the log", head as f64, "events");
    report.figure("mean record size", bytes as f64 / head.max(1) as f64, "bytes");
    report.figure("building the log (demo) events/s", per_s(build.wall), "events/s");
    report.figure("baseline raw journal scan events/s", per_s(scan), "events/s");
    report.figure("rebuild events/s", per_s(rebuild.wall), "events/s");
    report.figure("audit verify events/s", per_s(verify.wall), "events/s");
    report.figure("rebuild seconds", rebuild.wall.as_secs_f64(), "s");
    report.figure("audit verify seconds", verify.wall.as_secs_f64(), "s");
    report.figure("rebuild peak RSS", rebuild.peak_rss as f64, "bytes");
    report.figure("audit verify peak RSS", verify.peak_rss as f64, "bytes");
    report.ratio("rebuild/raw scan", scan.as_secs_f64() / rebuild.wall.as_secs_f64(), "target: >= 500,000 events/s absolute");
    report.ratio("verify/raw scan", scan.as_secs_f64() / verify.wall.as_secs_f64(), "target: >= 500,000 events/s absolute");
    report.note(format!(
        "log built by `ansinh demo --beneficiaries {beneficiaries}`; rebuild and verify timed as whole child processes (start-up and sled open included)"
    ));
    report.note("the raw scan reads every journal record through sled (warm cache, same process order: scan, rebuild, verify)");
    if head < 1_000_000 {
        report.note(format!("log of {head} events: below the issue's 1,000,000 (use --lines 1000000)"));
    }
    Ok(report)
}
