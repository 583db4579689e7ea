//! Load client for the HTTP API: citizen lookups by random citizen ID from many keep-alive
//! connections at once, reporting throughput and latency percentiles.
//!
//! ```sh
//! cargo build --release && ./target/release/ansinh demo --data-dir /tmp/api200k --beneficiaries 200000
//! ./target/release/ansinh --config CONFIG_WITH_A_TOKEN --data-dir /tmp/api200k api &
//! cargo run --release --example api_load -- --token TOKEN --connections 32 --seconds 20
//! ```
//!
//! The citizen IDs are collected first through the API itself (every line of every batch), so
//! every request asks for a real beneficiary. Loopback only: the address must be 127.0.0.0/8.
//! Bounded: stops after `--seconds` or `--requests`, whichever comes first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    addr: SocketAddr,
    token: String,
    connections: usize,
    seconds: u64,
    requests: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args { addr: "127.0.0.1:8080".parse().map_err(|e| format!("{e}"))?, token: String::new(), connections: 32, seconds: 20, requests: 5_000_000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => a.addr = value.parse().map_err(|e| format!("--addr: {e}"))?,
            "--token" => a.token = value,
            "--connections" => a.connections = value.parse().map_err(|e| format!("--connections: {e}"))?,
            "--seconds" => a.seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--requests" => a.requests = value.parse().map_err(|e| format!("--requests: {e}"))?,
            other => return Err(format!("unknown flag {other}; flags: --addr --token --connections --seconds --requests")),
        }
    }
    if !a.addr.ip().is_loopback() {
        return Err("this client only loads a server on this machine (127.0.0.0/8)".into());
    }
    if a.token.is_empty() || a.connections == 0 || a.connections > 512 || a.seconds > 600 {
        return Err("--token is required; --connections 1-512; --seconds at most 600".into());
    }
    Ok(a)
}

/// One keep-alive connection.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    token: String,
}

impl Conn {
    fn open(addr: SocketAddr, token: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn { reader: BufReader::new(stream.try_clone()?), writer: stream, token: token.to_string() })
    }

    /// Status and body of `GET path`.
    fn get(&mut self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        write!(self.writer, "GET {path} HTTP/1.1\r\nHost: load\r\nAuthorization: Bearer {}\r\n\r\n", self.token)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().map_err(std::io::Error::other)?;
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }
}

/// Every citizen ID on every batch line, through the API.
fn collect_ids(a: &Args) -> Result<Vec<String>, String> {
    let mut conn = Conn::open(a.addr, &a.token).map_err(|e| format!("connect {}: {e}", a.addr))?;
    let json = |conn: &mut Conn, path: &str| -> Result<serde_json::Value, String> {
        let (status, body) = conn.get(path).map_err(|e| e.to_string())?;
        if status != 200 {
            return Err(format!("GET {path}: {status} {}", String::from_utf8_lossy(&body)));
        }
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let mut ids = Vec::new();
    let mut after = String::new();
    loop {
        let page = json(&mut conn, &format!("/v1/batches?limit=1000&after={after}"))?;
        for b in page["batches"].as_array().into_iter().flatten() {
            let batch_id = b["batch_id"].as_str().unwrap_or_default();
            let mut line_after = 0;
            loop {
                let lines = json(&mut conn, &format!("/v1/batches/{batch_id}/lines?limit=1000&after={line_after}&status=paid"))?;
                ids.extend(lines["lines"].as_array().into_iter().flatten().filter_map(|l| l["citizen_id"].as_str().map(str::to_string)));
                match lines["next_after"].as_u64() {
                    Some(n) => line_after = n,
                    None => break,
                }
            }
        }
        match page["next_after"].as_str() {
            Some(n) => after = n.to_string(),
            None => break,
        }
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn main() -> Result<(), String> {
    let a = args()?;
    let started = Instant::now();
    let ids = Arc::new(collect_ids(&a)?);
    if ids.is_empty() {
        return Err("no paid batch lines found: run `ansinh demo` on the data dir first".into());
    }
    eprintln!("{} citizen IDs collected in {:.1} s; {} connections for {} s", ids.len(), started.elapsed().as_secs_f64(), a.connections, a.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let per_conn = a.requests / a.connections as u64;
    let workers: Vec<_> = (0..a.connections)
        .map(|i| {
            let (ids, stop, token, addr) = (ids.clone(), stop.clone(), a.token.clone(), a.addr);
            std::thread::spawn(move || -> Result<(Vec<u32>, u64), String> {
                let mut conn = Conn::open(addr, &token).map_err(|e| e.to_string())?;
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                let (mut micros, mut errors) = (Vec::with_capacity(200_000), 0u64);
                while !stop.load(Ordering::Relaxed) && (micros.len() as u64) < per_conn && Instant::now() < deadline {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = &ids[(x % ids.len() as u64) as usize];
                    let t = Instant::now();
                    let (status, _) = conn.get(&format!("/v1/citizens/{id}")).map_err(|e| e.to_string())?;
                    micros.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                    errors += u64::from(status != 200);
                }
                Ok((micros, errors))
            })
        })
        .collect();
    let load_started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (micros, e) = w.join().map_err(|_| "a load thread panicked".to_string())??;
        all.extend(micros);
        errors += e;
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = load_started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0) as f64 / 1000.0;
    println!("requests {}  non-200 {errors}  in {elapsed:.1} s  = {:.0} req/s", all.len(), all.len() as f64 / elapsed);
    println!("latency ms  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}", pct(0.50), pct(0.90), pct(0.99), pct(0.999), pct(1.0));
    Ok(())
}
