//! The HTTP API against hostile and careless clients (issue 16): an old citizen number read
//! outside the person's scope, CSV cells that a spreadsheet would evaluate, a client trickling
//! its headers and too many connections, and `serve` whose API port is taken.

mod api_support;
mod common;

use ansinh::api::{ListenerLimits, Readiness};
use api_support::*;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// `ansinh --config <temp config> serve ARGS` with the API on `listen` and a broker URL nobody
/// answers (serve would retry it for ever): the child, its stderr file and the temp dir.
fn spawn_serve(listen: &str, args: &[&str]) -> (std::process::Child, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address").port();
    let config = dir.path().join("ansinh.toml");
    let toml = format!(
        "[engine]\ndata_dir = {:?}\n\n[api]\nlisten = {listen:?}\n\n[bus]\namqp_url = \"amqp://guest:guest@127.0.0.1:{nobody}/%2f\"\nreconnect_backoff_max_ms = 500\n",
        dir.path().join("data").display().to_string()
    );
    std::fs::write(&config, toml).expect("the config is written");
    let stderr = dir.path().join("stderr");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ansinh"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("a stderr file"))
        .spawn()
        .expect("serve starts");
    (child, stderr, dir)
}

#[test]
fn serve_refuses_to_start_when_its_api_port_is_taken_and_runs_without_the_api_only_when_told() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let addr = taken.local_addr().expect("an address").to_string();
    let (mut child, stderr, _dir) = spawn_serve(&addr, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("serve's status") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve kept running with its API port taken:\n{}", std::fs::read_to_string(&stderr).unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&stderr).expect("serve's stderr");
    assert!(!status.success(), "serve exited {status}");
    assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains("--no-api"), "the error names the address and the way out:\n{err}");

    // --no-api: serve starts (and keeps trying the broker) with the port still taken.
    let (mut child, stderr, _dir) = spawn_serve(&addr, &["--no-api"]);
    std::thread::sleep(Duration::from_secs(3));
    let running = child.try_wait().expect("serve's status").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(running, "serve --no-api stopped:\n{}", std::fs::read_to_string(&stderr).unwrap_or_default());
    assert!(std::fs::read_to_string(&stderr).unwrap_or_default().contains("no HTTP API (--no-api)"));
    drop(taken);
}

#[test]
fn an_old_citizen_number_is_read_in_the_scope_of_the_person_it_leads_to() {
    const NEWER: &str = "056185000998";
    let s = start_after(tokens(), Readiness::default(), |t| {
        t.execute_one(envelope("api-reassign-1", reassign_cmd(AN.id, AN_NEW_ID, "xác định lại số định danh"))).then_accepted();
        t.execute_one(envelope("api-reassign-2", reassign_cmd(AN_NEW_ID, NEWER, "xác định lại lần hai"))).then_accepted();
    });
    for old in [AN.id, AN_NEW_ID] {
        let path = format!("/v1/citizens/{old}");
        // Another province's agency learns nothing: not the name, not the new number.
        let r = expect(&s, &path, Some(AGENCY_HCM), 403, "forbidden");
        assert!(!r.body.contains(AN.full_name) && !r.body.contains(NEWER), "{}", r.body);
        for token in [AGENCY_KH, AUDITOR, SERVICE] {
            let c = expect(&s, &path, Some(token), 200, "").json();
            assert_eq!((c["citizen_id"].as_str(), c["full_name"].as_str()), (Some(old), Some(AN.full_name)), "{token}");
            assert!(c["reassigned_to"].as_str().is_some(), "the pointer is there");
            assert!(c["enrollments"].as_object().is_some_and(|e| e.is_empty()) && c["account"].is_null(), "an old number shows nothing else");
        }
    }
    let current = format!("/v1/citizens/{NEWER}");
    expect(&s, &current, Some(AGENCY_HCM), 403, "forbidden");
    let c = expect(&s, &current, Some(AGENCY_KH), 200, "").json();
    assert_eq!(c["previous_citizen_ids"], serde_json::json!([AN.id, AN_NEW_ID]));
    assert_eq!(c["enrollments"][PROGRAM]["province"], PROVINCE);
}

#[test]
fn csv_cells_that_would_start_a_spreadsheet_formula_are_written_as_text() {
    const HOSTILE: &str = "KH-2025-01-HOSTILE";
    let lines: &[(&str, &str)] = &[("=HYPERLINK(\"http://evil.example\",\"open\")", "750000"), (NOBODY, "+1+2"), ("@SUM(A1:A9)", "-5"), ("\t=1", "\r=2")];
    let s = start_after(tokens(), Readiness::default(), |t| {
        t.execute_one(envelope("api-hostile-batch", batch_cmd(HOSTILE, "2025-01", lines))).then_accepted();
    });
    let csv_resp = expect(&s, &format!("/v1/batches/{HOSTILE}/reconciliation.csv"), Some(AGENCY_KH), 200, "");
    let mut reader = csv::Reader::from_reader(csv_resp.body.as_bytes());
    let headers: Vec<String> = reader.headers().expect("a header row").iter().map(str::to_string).collect();
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows parse");
    assert_eq!(rows.len(), lines.len());
    let col = |row: &csv::StringRecord, name: &str| row.get(headers.iter().position(|h| h == name).expect("a known column")).unwrap_or_default().to_string();
    // The raw input as stored (the JSON report keeps it; long input is cut to a bound).
    let r = expect(&s, &format!("/v1/batches/{HOSTILE}/reconciliation"), Some(AGENCY_KH), 200, "").json();
    let stored = r["unpaid_lines"].as_array().expect("unpaid lines").clone();
    assert!(stored[0]["citizen_id"].as_str().is_some_and(|c| c.starts_with("=HYPERLINK(")), "the JSON keeps the raw input: {}", stored[0]);
    for (row, line) in rows.iter().zip(&stored) {
        assert_eq!(col(row, "status"), "rejected");
        for name in ["citizen_id", "amount"] {
            let raw = line[name].as_str().expect("raw input");
            let expected = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{raw}") } else { raw.to_string() };
            assert_eq!(col(row, name), expected, "{name} of line {}", col(row, "line_no"));
        }
        for cell in row.iter() {
            assert!(!cell.starts_with(['=', '+', '-', '@', '\t', '\r']), "a cell a spreadsheet would evaluate: {cell:?}");
        }
    }
    assert!(rows.iter().filter(|r| col(r, "citizen_id") == NOBODY).count() == 1, "a plain cell is left alone");
}

/// Reads from `stream` until the server closes it (or `within` passes): how long that took.
fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = std::time::Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(100))).expect("a read timeout");
    let mut buf = [0u8; 1024];
    while started.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

#[test]
fn a_client_trickling_its_headers_is_cut_off_and_connections_are_bounded() {
    let limits = ListenerLimits { header_read_timeout: Duration::from_secs(2), connections_max: 3 };
    let s = start_limited(tokens(), Readiness::default(), |_| {}, limits);
    // One header line a second, never the blank line that ends them.
    let mut slow = TcpStream::connect(s.addr).expect("the server accepts");
    let trickler = {
        let mut w = slow.try_clone().expect("a second handle");
        std::thread::spawn(move || {
            let _ = w.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n");
            for n in 0..30 {
                std::thread::sleep(Duration::from_secs(1));
                if write!(w, "X-Trickle-{n}: x\r\n").is_err() {
                    return n;
                }
            }
            30
        })
    };
    let after = closed_after(&mut slow, Duration::from_secs(15)).expect("the server closed the trickling connection");
    assert!(after >= Duration::from_millis(1_500) && after < Duration::from_secs(6), "closed after {after:?}, the timeout is 2 s");
    assert!(trickler.join().expect("the trickler") < 30, "writes fail once the server let go");
    // An idle connection (nothing sent) is given the same time, no more.
    let mut idle = TcpStream::connect(s.addr).expect("the server accepts");
    assert!(closed_after(&mut idle, Duration::from_secs(8)).is_some_and(|d| d < Duration::from_secs(6)), "an idle connection is closed too");

    // At most 3 connections: a 4th is closed at once; one freed makes room again.
    let held: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(s.addr).expect("accepted")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(s.addr).expect("accepted by the kernel");
    assert!(closed_after(&mut extra, Duration::from_secs(1)).is_some(), "the 4th connection is closed at once");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(&s, "/healthz", None).status, 200, "room again once the others closed");
}
