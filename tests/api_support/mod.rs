//! The HTTP API's test fixture (`tests/api.rs`, `tests/api_hardening.rs`): the engine in a temp
//! dir holding batch KH-2025-01 in Khánh Hòa (056) with five lines:
//! 1 AN settled · 2 BINH failed, reissued to BIDV, settled · 3 CUONG in flight ·
//! 4 EM failed (account_closed) · 5 an unenrolled ID, refused (not_enrolled);
//! and batch HCM-2025-01 in TP HCM (079) paying DUNG; the API over it on a random port, one
//! token per role, and HTTP/1.1 by hand.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use crate::common::*;
use ansinh::api::{serve_listener_with, ApiState, ListenerLimits, Readiness};
use ansinh::command::{Command, FundBudget};
use ansinh::config::{ApiRole, ApiToken};
use ansinh::domain::{FailureReason, Sex};
use ansinh::metrics::Metrics;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

pub const EM: Citizen = Citizen {
    id: "056190000456",
    full_name: "Võ Thị Em",
    date_of_birth: "1990-05-05",
    sex: Sex::Female,
    account_no: "0561000000456",
    holder_name: "VO THI EM",
};
pub const NOBODY: &str = "056185000555";
pub const KH: &str = "KH-2025-01";
pub const HCM: &str = "HCM-2025-01";
pub const AUDITOR: &str = "auditor-0123456789abcdef0123456789abcdef";
pub const AGENCY_KH: &str = "agency-kh-0123456789abcdef0123456789abcd";
pub const AGENCY_HCM: &str = "agency-hcm-0123456789abcdef0123456789abc";
pub const SERVICE: &str = "citizen-service-0123456789abcdef01234567";
/// An agency of the one-off program only (issue 12), with no province.
pub const AGENCY_ONE_OFF: &str = "agency-oneoff-0123456789abcdef0123456789";
pub const ONE_OFF: &str = "ho-tro-100k";

pub fn token(name: &str, token: &str, role: ApiRole, provinces: &[&str]) -> ApiToken {
    let programs = if provinces.is_empty() { vec![] } else { vec![PROGRAM.to_string()] };
    ApiToken { name: name.into(), token: Some(token.into()), token_sha256: None, role, provinces: provinces.iter().map(|p| p.to_string()).collect(), programs }
}

pub fn tokens() -> Vec<ApiToken> {
    vec![
        token("auditor", AUDITOR, ApiRole::Auditor, &[]),
        token("kh", AGENCY_KH, ApiRole::Agency, &["056"]),
        token("hcm", AGENCY_HCM, ApiRole::Agency, &["079"]),
        token("service", SERVICE, ApiRole::CitizenService, &[]),
        ApiToken {
            name: "oneoff".into(),
            token: Some(AGENCY_ONE_OFF.into()),
            token_sha256: None,
            role: ApiRole::Agency,
            provinces: vec![],
            programs: vec![ONE_OFF.to_string()],
        },
    ]
}

pub fn populate(t: &mut TestEngine) {
    let fund_hcm = Command::FundBudget(FundBudget { province: "079".into(), ..fund_payload("2025-01", "100000000") });
    let mut enroll_dung = enroll_payload(&DUNG, "6c", "2025-01");
    enroll_dung.province = "079".into();
    let mut commands = vec![
        define_program_cmd(PROGRAM, PROGRAM_NAME, &[("6c", "1.5")]),
        set_level_cmd(None, "2024-07", "500000"),
        fund_cmd("2025-01", "100000000"),
        fund_hcm,
        Command::EnrollBeneficiary(enroll_dung),
    ];
    commands.extend([&AN, &BINH, &CUONG, &EM].map(|c| enroll_cmd(c, "6c", "2025-01")));
    let lines: Vec<(&str, &str)> = [AN.id, BINH.id, CUONG.id, EM.id, NOBODY].iter().map(|id| (*id, "750000")).collect();
    commands.push(batch_cmd(KH, "2025-01", &lines));
    let mut hcm = batch_payload(HCM, "2025-01", &[(DUNG.id, "750000")]);
    hcm.province = "079".into();
    commands.push(Command::SubmitPayoutBatch(hcm));
    commands.push(settlements_cmd(
        VCB,
        vec![
            settled_item("KH-2025-01-000001", "FT1"),
            failed_item("KH-2025-01-000002", FailureReason::AccountClosed, "R2"),
            failed_item("KH-2025-01-000004", FailureReason::AccountClosed, "R4"),
        ],
    ));
    commands.push(change_account_cmd(BINH.id, bidv_account_input(&BINH)));
    commands.push(reissue_cmd("KH-2025-01-000002"));
    commands.push(settlements_cmd(BIDV, vec![settled_item("KH-2025-01-000002-R1", "FT2")]));
    // Issue 12: a one-off program with AN listed to be paid in cash at commune 22333.
    commands.push(Command::DefineOneOffProgram(ansinh::command::DefineOneOffProgram {
        program_id: ONE_OFF.into(),
        name: "Quà tặng 100.000 đồng".into(),
        amount: "100000".into(),
        eligible_cutoff: "2025-01-15".into(),
        period: "2025-02".into(),
        legal_basis: String::new(),
    }));
    commands.push(Command::FundOneOff(ansinh::command::FundOneOff { program_id: ONE_OFF.into(), amount: "1000000".into(), reference: String::new() }));
    commands.push(Command::SubmitOneOffBatch(ansinh::command::SubmitOneOffBatch {
        batch_id: "OO-1".into(),
        program_id: ONE_OFF.into(),
        partition: u32::from(ansinh::shard::partition_of(AN.id)),
        lines: vec![ansinh::command::OneOffLine {
            citizen_id: AN.id.into(),
            id_assigned_on: "2021-06-01".into(),
            account: None,
            commune: Some("22333".into()),
        }],
    }));
    for (i, c) in commands.into_iter().enumerate() {
        t.execute_one(envelope(&format!("api-test-{i}"), c)).then_accepted();
    }
}

pub struct Server {
    pub addr: SocketAddr,
    pub head_seq: u64,
    _runtime: tokio::runtime::Runtime,
    _engine: TestEngine,
}

pub fn start_with(tokens: Vec<ApiToken>, readiness: Readiness) -> Server {
    start_after(tokens, readiness, |_| {})
}

/// The server over the populated engine after `more` commands.
pub fn start_after(tokens: Vec<ApiToken>, readiness: Readiness, more: impl FnOnce(&mut TestEngine)) -> Server {
    start_limited(tokens, readiness, more, ListenerLimits::default())
}

pub fn start_limited(tokens: Vec<ApiToken>, readiness: Readiness, more: impl FnOnce(&mut TestEngine), limits: ListenerLimits) -> Server {
    let mut t = TestEngine::open();
    populate(&mut t);
    more(&mut t);
    let head = t.engine.head().clone();
    let head_seq = head.seq;
    let state =
        ApiState::new(t.engine.views().reader(), Arc::new(move || Ok(head.clone())), &tokens, Arc::new(Metrics::new()), Arc::new(move || readiness.clone()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime starts");
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a random port binds");
    let addr = listener.local_addr().expect("the listener has an address");
    runtime.spawn(serve_listener_with(listener, state, std::future::pending(), limits));
    Server { addr, head_seq, _runtime: runtime, _engine: t }
}

pub fn start() -> Server {
    start_with(tokens(), Readiness::default())
}

pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_string()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    }
}

/// HTTP/1.1 by hand: one request per connection.
pub fn get(s: &Server, path: &str, token: Option<&str>) -> Resp {
    get_authorized(s, path, token.map(|t| format!("Bearer {t}")).as_deref())
}

/// `get` with this `Authorization` header value, or none.
pub fn get_authorized(s: &Server, path: &str, authorization: Option<&str>) -> Resp {
    let mut stream = TcpStream::connect(s.addr).expect("the server accepts");
    stream.set_read_timeout(Some(Duration::from_secs(20))).expect("a timeout can be set");
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n").expect("the request is sent");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("the response is read");
    let text = String::from_utf8(raw).expect("responses are UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head[9..12].parse().expect("a status code");
    let mut resp = Resp { status, headers: head.to_string(), body: body.to_string() };
    if resp.header("transfer-encoding").as_deref() == Some("chunked") {
        resp.body = dechunk(body);
    }
    resp
}

pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

pub fn expect(s: &Server, path: &str, token: Option<&str>, status: u16, error: &str) -> Resp {
    let r = get(s, path, token);
    assert_eq!(r.status, status, "GET {path}: {}", r.body);
    if !error.is_empty() {
        assert_eq!(r.error(), error, "GET {path}: {}", r.body);
    }
    r
}
