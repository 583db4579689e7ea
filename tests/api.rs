//! The HTTP API over a real listener on a random port, with views made by the engine in a temp
//! dir (`tests/api_support`): every route with each role (allowed, forbidden, unauthenticated),
//! 400 and 404 answers, pagination bounds, the CSV report parsed back, and the OpenAPI document
//! against the router and against the bodies the handlers actually send.

mod api_support;
mod common;

use ansinh::api::Readiness;
use api_support::*;
use common::*;
use serde_json::Value;

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
    "/v1/one-off/{program_id}/cash",
];

const NATION_ROUTES: &[&str] =
    &["/v1/nation/citizens/{citizen_id}", "/v1/nation/citizens/{citizen_id}/payouts", "/v1/nation/citizens/{citizen_id}/payouts/{payout_id}"];

fn concrete(route: &str) -> String {
    route
        .replace("/v1/one-off/{program_id}", &format!("/v1/one-off/{ONE_OFF}"))
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
    // The /v1/nation/ routes ask other shards; their bodies are checked in tests/national.rs.
    let mut expected = [ROUTES, NATION_ROUTES].concat();
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
    assert_eq!(ids(AUDITOR), [HCM, KH, "OO-1"]);
    assert_eq!(ids(AGENCY_KH), [KH]);
    assert_eq!(ids(AGENCY_HCM), [HCM]);
    assert_eq!(ids(AGENCY_ONE_OFF), ["OO-1"]);
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

/// Issue 12: the cash list of a one-off program, by commune and for one commune; read by the
/// auditor and the program's agency (its provinces do not apply), refused to others.
#[test]
fn the_one_off_cash_list_is_read_by_commune() {
    let s = start();
    let all = expect(&s, &format!("/v1/one-off/{ONE_OFF}/cash"), Some(AUDITOR), 200, "").json();
    assert_eq!(all["communes"][0]["commune"], "22333");
    assert_eq!(all["communes"][0]["lines"], 1);
    let one = expect(&s, &format!("/v1/one-off/{ONE_OFF}/cash?commune=22333"), Some(AGENCY_ONE_OFF), 200, "").json();
    assert_eq!(one["lines"][0]["citizen_id"], AN.id);
    assert_eq!(one["lines"][0]["amount"], "100000");
    assert_eq!((one["lines"][0]["batch_id"].as_str(), one["lines"][0]["line_no"].as_u64()), (Some("OO-1"), Some(1)));
    assert!(one["next_skip"].is_null());
    expect(&s, &format!("/v1/one-off/{ONE_OFF}/cash?commune=22333"), Some(AGENCY_KH), 403, "");
    expect(&s, &format!("/v1/one-off/{ONE_OFF}/cash?commune=22333"), Some(SERVICE), 403, "");
    expect(&s, &format!("/v1/one-off/{ONE_OFF}/cash?commune=2233"), Some(AUDITOR), 400, "commune_invalid");
    expect(&s, &format!("/v1/one-off/{ONE_OFF}/cash?commune=11111"), Some(AUDITOR), 404, "cash_list_not_found");
    expect(&s, &format!("/v1/one-off/{ONE_OFF}/cash?limit=0"), Some(AUDITOR), 400, "limit_out_of_range");
    // The program's national budget is the agency's to read too, and no other agency's.
    let budget = expect(&s, &format!("/v1/budgets/national/{ONE_OFF}/2025-02"), Some(AGENCY_ONE_OFF), 200, "").json();
    assert_eq!((budget["funded"].as_str(), budget["available"].as_str()), (Some("1000000"), Some("900000")));
    expect(&s, &format!("/v1/budgets/national/{ONE_OFF}/2025-02"), Some(AGENCY_KH), 403, "");
}
