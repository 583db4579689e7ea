//! The HTTP API over a real listener on a random port, with views made by the engine in a temp
//! dir: every route with each role (allowed, forbidden, unauthenticated), 400 and 404 answers,
//! pagination bounds, the CSV report parsed back, and the OpenAPI document against the router
//! and against the bodies the handlers actually send.
//!
//! The data: batch KH-2025-01 in Khánh Hòa (056) with five lines:
//! 1 AN settled · 2 BINH failed, reissued to BIDV, settled · 3 CUONG in flight ·
//! 4 EM failed (account_closed) · 5 an unenrolled ID, refused (not_enrolled);
//! and batch HCM-2025-01 in TP HCM (079) paying DUNG.

mod common;

use ansinh::api::{serve_listener_with, ApiState, ListenerLimits, Readiness};
use ansinh::command::{Command, FundBudget};
use ansinh::config::{ApiRole, ApiToken};
use ansinh::domain::{FailureReason, Sex};
use ansinh::metrics::Metrics;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

const EM: Citizen = Citizen {
    id: "056190000456",
    full_name: "Võ Thị Em",
    date_of_birth: "1990-05-05",
    sex: Sex::Female,
    account_no: "0561000000456",
    holder_name: "VO THI EM",
};
const NOBODY: &str = "056185000555";
const KH: &str = "KH-2025-01";
const HCM: &str = "HCM-2025-01";
const AUDITOR: &str = "auditor-0123456789abcdef0123456789abcdef";
const AGENCY_KH: &str = "agency-kh-0123456789abcdef0123456789abcd";
const AGENCY_HCM: &str = "agency-hcm-0123456789abcdef0123456789abc";
const SERVICE: &str = "citizen-service-0123456789abcdef01234567";

fn token(name: &str, token: &str, role: ApiRole, provinces: &[&str]) -> ApiToken {
    let programs = if provinces.is_empty() { vec![] } else { vec![PROGRAM.to_string()] };
    ApiToken { name: name.into(), token: Some(token.into()), token_sha256: None, role, provinces: provinces.iter().map(|p| p.to_string()).collect(), programs }
}

fn tokens() -> Vec<ApiToken> {
    vec![
        token("auditor", AUDITOR, ApiRole::Auditor, &[]),
        token("kh", AGENCY_KH, ApiRole::Agency, &["056"]),
        token("hcm", AGENCY_HCM, ApiRole::Agency, &["079"]),
        token("service", SERVICE, ApiRole::CitizenService, &[]),
    ]
}

fn populate(t: &mut TestEngine) {
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
    for (i, c) in commands.into_iter().enumerate() {
        t.execute_one(envelope(&format!("api-test-{i}"), c)).then_accepted();
    }
}

struct Server {
    addr: SocketAddr,
    head_seq: u64,
    _runtime: tokio::runtime::Runtime,
    _engine: TestEngine,
}

fn start_with(tokens: Vec<ApiToken>, readiness: Readiness) -> Server {
    start_after(tokens, readiness, |_| {})
}

/// The server over the populated engine after `more` commands.
fn start_after(tokens: Vec<ApiToken>, readiness: Readiness, more: impl FnOnce(&mut TestEngine)) -> Server {
    start_limited(tokens, readiness, more, ListenerLimits::default())
}

fn start_limited(tokens: Vec<ApiToken>, readiness: Readiness, more: impl FnOnce(&mut TestEngine), limits: ListenerLimits) -> Server {
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

fn start() -> Server {
    start_with(tokens(), Readiness::default())
}

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_string()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    }
}

/// HTTP/1.1 by hand: one request per connection.
fn get(s: &Server, path: &str, token: Option<&str>) -> Resp {
    get_authorized(s, path, token.map(|t| format!("Bearer {t}")).as_deref())
}

/// `get` with this `Authorization` header value, or none.
fn get_authorized(s: &Server, path: &str, authorization: Option<&str>) -> Resp {
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

fn dechunk(mut body: &str) -> String {
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

fn expect(s: &Server, path: &str, token: Option<&str>, status: u16, error: &str) -> Resp {
    let r = get(s, path, token);
    assert_eq!(r.status, status, "GET {path}: {}", r.body);
    if !error.is_empty() {
        assert_eq!(r.error(), error, "GET {path}: {}", r.body);
    }
    r
}

const ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/openapi.json",
    "/v1/head",
    "/v1/citizens/{citizen_id}",
    "/v1/citizens/{citizen_id}/payouts/{payout_id}",
    "/v1/payouts/{payout_id}",
    "/v1/batches",
    "/v1/batches/{batch_id}",
    "/v1/batches/{batch_id}/lines",
    "/v1/batches/{batch_id}/reconciliation",
    "/v1/batches/{batch_id}/reconciliation.csv",
    "/v1/budgets/{province}/{program_id}/{period}",
    "/v1/programs/{program_id}",
];

fn concrete(route: &str) -> String {
    route
        .replace("{citizen_id}", AN.id)
        .replace("{payout_id}", "KH-2025-01-000001")
        .replace("{batch_id}", KH)
        .replace("{province}", PROVINCE)
        .replace("{program_id}", PROGRAM)
        .replace("{period}", "2025-01")
}

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, v)| if k == "$ref" { out.push(v.as_str().unwrap_or_default().into()) } else { refs(v, out) }),
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn the_openapi_document_lists_every_route_and_matches_the_bodies() {
    let s = start();
    let doc = expect(&s, "/v1/openapi.json", None, 200, "").json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "{}", doc["openapi"]);
    let mut documented: Vec<&str> = doc["paths"].as_object().expect("paths").keys().map(String::as_str).collect();
    documented.sort();
    let mut expected = ROUTES.to_vec();
    expected.sort();
    assert_eq!(documented, expected);
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        assert!(doc.pointer(r.trim_start_matches('#')).is_some(), "unresolved $ref {r}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    for route in ROUTES {
        let op = &doc["paths"][route]["get"];
        let r = expect(&s, &concrete(route), Some(AUDITOR), 200, "");
        let Some(schema) = op["responses"]["200"]["content"]["application/json"]["schema"].as_object() else { continue };
        let mut root = Value::Object(schema.clone());
        root["components"] = doc["components"].clone();
        let validator = jsonschema::draft202012::new(&root).unwrap_or_else(|e| panic!("{route}: the documented schema builds: {e}"));
        let errors: Vec<String> = validator.iter_errors(&r.json()).map(|e| format!("{e} at {}", e.instance_path)).collect();
        assert!(errors.is_empty(), "{route}: the body does not match its documented schema: {errors:#?}");
        if op["security"].is_array() {
            expect(&s, &concrete(route), None, 401, "unauthenticated");
        }
    }
    expect(&s, "/v1/nothing-here", Some(AUDITOR), 404, "route_not_found");
}

#[test]
fn requests_without_a_known_bearer_token_are_401() {
    let s = start();
    for route in ROUTES.iter().filter(|r| r.starts_with("/v1/") && **r != "/v1/openapi.json") {
        let path = concrete(route);
        let r = expect(&s, &path, None, 401, "unauthenticated");
        assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer realm=\"ansinh\""));
        expect(&s, &path, Some("not-a-token-we-know-0123456789abcdef0123"), 401, "unauthenticated");
    }
    // The scheme is case-insensitive (RFC 7235); another scheme or no token is refused.
    let path = concrete("/v1/citizens/{citizen_id}");
    for scheme in ["bearer", "BEARER", "bEaReR"] {
        assert_eq!(get_authorized(&s, &path, Some(&format!("{scheme} {AUDITOR}"))).status, 200, "{scheme}");
    }
    assert_eq!(get_authorized(&s, &path, Some(&format!("Bearer   {AUDITOR}"))).status, 200, "several spaces");
    for value in [format!("Basic {AUDITOR}"), "Bearer".to_string(), AUDITOR.to_string(), format!("Bearer{AUDITOR}")] {
        let r = get_authorized(&s, &path, Some(&value));
        assert_eq!((r.status, r.error()), (401, "unauthenticated".to_string()), "{value:?}");
    }
    // A malformed citizen ID from someone unauthenticated learns nothing about it.
    expect(&s, "/v1/citizens/123", None, 401, "unauthenticated");
    let none = start_with(vec![], Readiness::default());
    let r = expect(&none, &concrete("/v1/citizens/{citizen_id}"), Some(AUDITOR), 401, "unauthenticated");
    assert!(r.json()["message"].as_str().unwrap_or_default().contains("[[api.tokens]]"), "{}", r.body);
    for open in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        expect(&none, open, None, 200, "");
    }
}

#[test]
fn a_citizen_per_role_with_accounts_masked() {
    let s = start();
    let path = format!("/v1/citizens/{}", AN.id);
    let c = expect(&s, &path, Some(AUDITOR), 200, "").json();
    assert_eq!(c["citizen_id"], AN.id);
    assert_eq!(c["account"]["account_no"], AN.account_no);
    assert_eq!(c["account"]["masked"], false);
    assert_eq!(c["enrollments"][PROGRAM]["status"], "active");
    assert_eq!(c["balances"][PROGRAM]["settled"], "750000");
    assert_eq!(c["payouts_by_period"]["2025-01"][0]["g2p_status"], "succ");
    for token in [AGENCY_KH, SERVICE] {
        let c = expect(&s, &path, Some(token), 200, "").json();
        assert_eq!(c["account"]["account_no"], "*********0123");
        assert_eq!(c["account"]["masked"], true);
        assert_eq!(c["partial"], false);
    }
    expect(&s, &path, Some(AGENCY_HCM), 403, "forbidden");
    expect(&s, &format!("/v1/citizens/{}", DUNG.id), Some(AGENCY_HCM), 200, "");
    expect(&s, &format!("/v1/citizens/{}", DUNG.id), Some(AGENCY_KH), 403, "forbidden");
    expect(&s, &format!("/v1/citizens/{NOBODY}"), Some(AUDITOR), 404, "citizen_not_found");
    let r = expect(&s, "/v1/citizens/05618500012", Some(SERVICE), 400, "citizen_id_format");
    assert!(r.body.contains("exactly 12 digits, got 11 characters"), "{}", r.body);
    expect(&s, "/v1/citizens/05618500012a", Some(SERVICE), 400, "citizen_id_format");
    let r = expect(&s, "/v1/citizens/003185000123", Some(AGENCY_KH), 400, "citizen_id_unknown_province");
    assert!(r.body.contains("003"), "{}", r.body);
}

#[test]
fn payouts_by_id_and_under_their_citizen() {
    let s = start();
    let p = expect(&s, "/v1/payouts/KH-2025-01-000002", Some(AUDITOR), 200, "").json();
    assert_eq!((p["status"].as_str(), p["reason"].as_str(), p["iso20022_reason"].as_str()), (Some("failed"), Some("account_closed"), Some("AC04")));
    assert_eq!(p["reissued_as"], "KH-2025-01-000002-R1");
    assert_eq!(p["history"].as_array().map(Vec::len), Some(2));
    let r1 = expect(&s, "/v1/payouts/KH-2025-01-000002-R1", Some(AGENCY_KH), 200, "").json();
    assert_eq!((r1["status"].as_str(), r1["account"]["bin"].as_str(), r1["account"]["masked"].as_bool()), (Some("settled"), Some(BIDV), Some(true)));
    expect(&s, "/v1/payouts/KH-2025-01-000001", Some(AGENCY_HCM), 403, "forbidden");
    expect(&s, "/v1/payouts/KH-2025-01-000001", Some(SERVICE), 403, "forbidden");
    expect(&s, "/v1/payouts/KH-2025-01-000099", Some(AUDITOR), 404, "payout_not_found");
    expect(&s, "/v1/payouts/KH%202025", Some(AUDITOR), 400, "identifier_invalid");
    // The citizen service reads a payout only under the citizen it belongs to.
    let mine = format!("/v1/citizens/{}/payouts/KH-2025-01-000001", AN.id);
    assert_eq!(expect(&s, &mine, Some(SERVICE), 200, "").json()["status"], "settled");
    expect(&s, &mine, Some(AGENCY_KH), 200, "");
    expect(&s, &mine, Some(AGENCY_HCM), 403, "forbidden");
    expect(&s, &format!("/v1/citizens/{}/payouts/KH-2025-01-000003", AN.id), Some(SERVICE), 404, "payout_not_found");
    expect(&s, "/v1/citizens/123/payouts/KH-2025-01-000001", Some(SERVICE), 400, "citizen_id_format");
}

#[test]
fn batches_list_and_detail_per_role() {
    let s = start();
    let ids = |token| -> Vec<String> {
        let page = expect(&s, "/v1/batches", Some(token), 200, "").json();
        page["batches"].as_array().expect("batches").iter().map(|b| b["batch_id"].as_str().unwrap_or_default().to_string()).collect()
    };
    assert_eq!(ids(AUDITOR), [HCM, KH]);
    assert_eq!(ids(AGENCY_KH), [KH]);
    assert_eq!(ids(AGENCY_HCM), [HCM]);
    let first = expect(&s, "/v1/batches?limit=1", Some(AUDITOR), 200, "").json();
    assert_eq!((first["batches"][0]["batch_id"].as_str(), first["next_after"].as_str()), (Some(HCM), Some(HCM)));
    let second = expect(&s, &format!("/v1/batches?limit=1&after={HCM}"), Some(AUDITOR), 200, "").json();
    assert_eq!(second["batches"][0]["batch_id"], KH);
    expect(&s, "/v1/batches", Some(SERVICE), 403, "forbidden");
    expect(&s, "/v1/batches?limit=0", Some(AUDITOR), 400, "limit_out_of_range");

    let b = expect(&s, &format!("/v1/batches/{KH}"), Some(AGENCY_KH), 200, "").json();
    assert_eq!((b["lines_total"].as_u64(), b["lines_instructed"].as_u64(), b["lines_rejected"].as_u64()), (Some(5), Some(4), Some(1)));
    assert_eq!(b["rejected_by_reason"]["not_enrolled"], 1);
    assert_eq!(b["progress"]["settled"], 2);
    assert_eq!(b["progress"]["in_flight"], 1);
    assert_eq!(b["progress"]["awaiting_decision"], 1);
    assert_eq!(b["progress"]["complete"], false);
    expect(&s, &format!("/v1/batches/{KH}"), Some(AGENCY_HCM), 403, "forbidden");
    expect(&s, &format!("/v1/batches/{KH}"), Some(SERVICE), 403, "forbidden");
    expect(&s, "/v1/batches/NO-SUCH-BATCH", Some(AUDITOR), 404, "batch_not_found");
    expect(&s, "/v1/batches/bad%2Fid", Some(AUDITOR), 400, "identifier_invalid");
}

#[test]
fn batch_lines_page_within_bounds_and_filter_by_status() {
    let s = start();
    let lines = |query: &str| expect(&s, &format!("/v1/batches/{KH}/lines{query}"), Some(AGENCY_KH), 200, "").json();
    let numbers = |page: &Value| -> Vec<u64> { page["lines"].as_array().expect("lines").iter().filter_map(|l| l["line_no"].as_u64()).collect() };
    let p1 = lines("?limit=2");
    assert_eq!((numbers(&p1), p1["next_after"].as_u64()), (vec![1, 2], Some(2)));
    let p2 = lines("?limit=2&after=2");
    assert_eq!((numbers(&p2), p2["next_after"].as_u64()), (vec![3, 4], Some(4)));
    let p3 = lines("?limit=2&after=4");
    assert_eq!((numbers(&p3), p3["next_after"].as_u64()), (vec![5], None));
    let past = lines("?after=999999");
    assert_eq!((numbers(&past), past["next_after"].as_u64()), (vec![], None));
    // Line 2 failed, was reissued to BIDV and settled: it counts as paid, at BIDV.
    let l2 = &p1["lines"][1];
    assert_eq!((l2["status"].as_str(), l2["payout_id"].as_str(), l2["bin"].as_str()), (Some("settled"), Some("KH-2025-01-000002-R1"), Some(BIDV)));
    assert_eq!(numbers(&lines("?status=unpaid")), [4, 5]);
    assert_eq!(numbers(&lines("?status=paid")), [1, 2]);
    assert_eq!(numbers(&lines("?status=instructed")), [3]);
    assert_eq!(numbers(&lines("?status=rejected&limit=1000")), [5]);
    assert_eq!(lines("?status=unpaid")["lines"][1]["reason"], "not_enrolled");
    let bad = |query: &str, code: &str| expect(&s, &format!("/v1/batches/{KH}/lines{query}"), Some(AGENCY_KH), 400, code);
    bad("?limit=0", "limit_out_of_range");
    bad("?limit=1001", "limit_out_of_range");
    bad("?limit=ten", "query_invalid");
    bad("?after=-1", "query_invalid");
    bad("?after=1000000", "after_out_of_range");
    bad("?status=lost", "status_invalid");
    bad("?stauts=paid", "query_invalid");
    expect(&s, &format!("/v1/batches/{KH}/lines"), Some(SERVICE), 403, "forbidden");
    expect(&s, &format!("/v1/batches/{KH}/lines"), Some(AGENCY_HCM), 403, "forbidden");
    expect(&s, "/v1/batches/NOPE/lines", Some(AUDITOR), 404, "batch_not_found");
}

#[test]
fn the_reconciliation_report_as_json_and_csv() {
    let s = start();
    let r = expect(&s, &format!("/v1/batches/{KH}/reconciliation"), Some(AGENCY_KH), 200, "").json();
    assert_eq!((r["paid"]["count"].as_u64(), r["paid"]["amount"].as_str()), (Some(2), Some("1500000")));
    assert_eq!((r["in_flight"]["count"].as_u64(), r["unpaid"]["count"].as_u64(), r["lines_rejected"].as_u64()), (Some(1), Some(1), Some(1)));
    assert_eq!(r["rejected_by_reason"]["not_enrolled"], 1);
    let banks: Vec<&str> = r["banks"].as_array().expect("banks").iter().filter_map(|b| b["bin"].as_str()).collect();
    assert_eq!(banks, [BIDV, VCB]);
    assert_eq!(r["banks"][1]["unpaid_by_reason"]["account_closed"]["amount"], "750000");
    let unpaid: Vec<&str> = r["unpaid_lines"].as_array().expect("unpaid").iter().filter_map(|l| l["citizen_id"].as_str()).collect();
    assert_eq!(unpaid, [EM.id, NOBODY]);
    let one_bank = expect(&s, &format!("/v1/batches/{KH}/reconciliation?bin={BIDV}"), Some(AUDITOR), 200, "").json();
    assert_eq!(
        (one_bank["paid"]["count"].as_u64(), one_bank["lines_rejected"].as_u64(), one_bank["banks"].as_array().map(Vec::len)),
        (Some(1), Some(0), Some(1))
    );

    let csv_resp = expect(&s, &format!("/v1/batches/{KH}/reconciliation.csv"), Some(AGENCY_KH), 200, "");
    assert_eq!(csv_resp.header("content-type").as_deref(), Some("text/csv; charset=utf-8"));
    assert!(csv_resp.header("content-disposition").is_some_and(|d| d.contains("KH-2025-01-reconciliation.csv")));
    let mut reader = csv::Reader::from_reader(csv_resp.body.as_bytes());
    let headers: Vec<String> = reader.headers().expect("a header row").iter().map(str::to_string).collect();
    assert_eq!(headers, ansinh::api::CSV_COLUMNS);
    let rows: Vec<csv::StringRecord> = reader.records().collect::<Result<_, _>>().expect("rows parse");
    let col = |row: &csv::StringRecord, name: &str| row.get(headers.iter().position(|h| h == name).expect("a known column")).unwrap_or_default().to_string();
    assert_eq!(rows.len(), 5);
    let summary: Vec<(String, String, String, String)> =
        rows.iter().map(|r| (col(r, "citizen_id"), col(r, "status"), col(r, "paid"), col(r, "reason"))).collect();
    let expected = [
        (AN.id, "settled", "yes", ""),
        (BINH.id, "settled", "yes", ""),
        (CUONG.id, "instructed", "no", ""),
        (EM.id, "failed", "no", "account_closed"),
        (NOBODY, "rejected", "no", "not_enrolled"),
    ];
    assert_eq!(summary, expected.map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string())));
    assert_eq!(col(&rows[3], "iso20022_reason"), "AC04");
    assert_eq!(col(&rows[1], "bin"), BIDV);
    let bank_csv = expect(&s, &format!("/v1/batches/{KH}/reconciliation.csv?bin={VCB}"), Some(AUDITOR), 200, "");
    assert_eq!(csv::Reader::from_reader(bank_csv.body.as_bytes()).records().count(), 3);
    expect(&s, &format!("/v1/batches/{KH}/reconciliation.csv?bin=97"), Some(AUDITOR), 400, "bin_invalid");
    for route in ["reconciliation", "reconciliation.csv"] {
        expect(&s, &format!("/v1/batches/{KH}/{route}"), Some(SERVICE), 403, "forbidden");
        expect(&s, &format!("/v1/batches/{KH}/{route}"), Some(AGENCY_HCM), 403, "forbidden");
        expect(&s, &format!("/v1/batches/NOPE/{route}"), Some(AUDITOR), 404, "batch_not_found");
    }
}

#[test]
fn budgets_programs_and_the_head() {
    let s = start();
    let path = format!("/v1/budgets/056/{PROGRAM}/2025-01");
    let b = expect(&s, &path, Some(AGENCY_KH), 200, "").json();
    assert_eq!((b["funded"].as_str(), b["instructed"].as_str(), b["released"].as_str()), (Some("100000000"), Some("3750000"), Some("1500000")));
    assert_eq!(b["available"], "97750000");
    expect(&s, &path, Some(AUDITOR), 200, "");
    expect(&s, &path, Some(AGENCY_HCM), 403, "forbidden");
    expect(&s, &path, Some(SERVICE), 403, "forbidden");
    expect(&s, &format!("/v1/budgets/056/{PROGRAM}/2025-02"), Some(AUDITOR), 404, "budget_not_found");
    expect(&s, &format!("/v1/budgets/056/{PROGRAM}/2025-13"), Some(AUDITOR), 400, "period_invalid");
    expect(&s, &format!("/v1/budgets/56/{PROGRAM}/2025-01"), Some(AUDITOR), 400, "province_invalid");
    for token in [AUDITOR, AGENCY_HCM, SERVICE] {
        let p = expect(&s, &format!("/v1/programs/{PROGRAM}"), Some(token), 200, "").json();
        assert_eq!(p["standard_levels"]["national"]["2024-07"], "500000");
        let h = expect(&s, "/v1/head", Some(token), 200, "").json();
        assert_eq!((h["seq"].as_u64(), h["views_applied_seq"].as_u64()), (Some(s.head_seq), Some(s.head_seq)));
        assert_eq!(h["hash"].as_str().map(str::len), Some(64));
    }
    expect(&s, "/v1/programs/no-such-program", Some(AUDITOR), 404, "program_not_found");
}

#[test]
fn health_readiness_and_metrics() {
    let s = start();
    assert_eq!(expect(&s, "/healthz", None, 200, "").body, "ok\n");
    assert_eq!(expect(&s, "/readyz", None, 200, "").json()["ready"], true);
    let down = start_with(tokens(), Readiness { broker_connected: Some(false), log_writable: Some(true), detail: vec!["broker unreachable".into()] });
    let r = expect(&down, "/readyz", None, 503, "").json();
    assert_eq!((r["ready"].as_bool(), r["broker_connected"].as_bool(), r["detail"][0].as_str()), (Some(false), Some(false), Some("broker unreachable")));
    expect(&s, &format!("/v1/citizens/{}", AN.id), Some(AUDITOR), 200, "");
    expect(&s, &format!("/v1/citizens/{}", AN.id), None, 401, "");
    let m = expect(&s, "/metrics", None, 200, "");
    assert!(m.header("content-type").is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    assert!(m.body.contains("ansinh_http_requests_total{route=\"/v1/citizens/{citizen_id}\",status=\"200\"} 1\n"), "{}", m.body);
    assert!(m.body.contains("ansinh_http_requests_total{route=\"/v1/citizens/{citizen_id}\",status=\"401\"} 1\n"));
    assert!(m.body.contains(&format!("ansinh_log_head_seq {}\n", s.head_seq)));
    assert!(!m.body.contains(AN.id), "metrics never carry a citizen ID");
}

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
