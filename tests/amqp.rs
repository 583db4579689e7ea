//! The transport against the real broker (issue 3, "How we will check"): the month end to end
//! over AMQP, redelivery, poison, authorization, and crashes of the engine and of its relay.
//! Each test runs the real `ansinh` binary (serve, publish, bank-connector) as child processes
//! on its own topology names (`bus.prefix`) and temp data dir; the broker must be running on
//! 127.0.0.1:5672 (the tests fail, never skip, without it). Views and the log are read with the
//! library once serve has stopped (sled locks the data dir).

mod amqp_support;

use amqp_support::*;
use ansinh::command::{ChangePaymentAccount, Command, CommandEnvelope, PayoutRef, RecordSettlements, SettlementItem, SettlementStatus};
use ansinh::domain::account::AccountInput;
use ansinh::event::{EventData, PayoutKind};
use ansinh::log::chain::Record;
use ansinh::outcome::{Outcome, OutcomeStatus};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const SECS_30: Duration = Duration::from_secs(30);
const SECS_90: Duration = Duration::from_secs(90);

fn ids(envelopes: &[CommandEnvelope]) -> Vec<&str> {
    envelopes.iter().map(|e| e.command_id.as_str()).collect()
}

fn assert_all_accepted(outcomes: &[Outcome], expected: usize, what: &str) {
    assert_eq!(outcomes.len(), expected, "{what}: one outcome per command");
    for o in outcomes {
        assert_eq!(o.status, OutcomeStatus::Accepted, "{what}: {} was {:?} {:?} {:?}", o.command_id, o.status, o.code, o.message);
    }
}

/// Each command that was sent has exactly one range of events: its events' seqs are
/// contiguous and no event id repeats (a second decision of the same command would add a
/// second range or repeat `<command_id>/<n>`).
fn assert_one_range_per_command(records: &[(u64, serde_json::Value, Record)], sent: &[&str]) {
    let mut by_command: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    let mut event_ids = BTreeSet::new();
    for (seq, _, r) in records {
        assert!(event_ids.insert(r.event.id.as_str()), "event id {} appears twice", r.event.id);
        by_command.entry(r.event.command_id.as_str()).or_default().push(*seq);
    }
    for id in sent {
        let seqs = by_command.get(id).unwrap_or_else(|| panic!("command {id} has no events: lost"));
        assert_eq!(seqs.last().expect("non-empty") - seqs[0] + 1, seqs.len() as u64, "command {id} has one contiguous range of events: {seqs:?}");
    }
}

/// Never two regular payouts for one citizen, program and period.
fn assert_one_regular_payout(records: &[(u64, serde_json::Value, Record)]) -> usize {
    let mut regular = BTreeSet::new();
    for (_, _, r) in records {
        if let EventData::PayoutInstructed(p) = &r.event.data {
            if p.kind == PayoutKind::Regular {
                assert!(
                    regular.insert((p.citizen_id.to_string(), p.program_id.clone(), p.period.to_string())),
                    "two regular payouts for one citizen and period"
                );
            }
        }
    }
    regular.len()
}

/// Runs one bank connector per BIN, each exiting once it reported its `count` instructions.
fn settle(fx: &mut Fixture, per_bin: &BTreeMap<String, u64>, failure_rate: &str, round: &str) {
    let mut running = Vec::new();
    for (bin, count) in per_bin {
        let args = [
            "bank-connector",
            "--bin",
            bin,
            "--amqp",
            &url(&bank_user(bin)),
            "--failure-rate",
            failure_rate,
            "--batch-wait-ms",
            "100",
            "--exit-after",
            &count.to_string(),
        ];
        running.push(fx.spawn(&format!("bank-{bin}-{round}"), &args));
    }
    for index in running {
        fx.wait_success(index, SECS_90);
    }
}

fn instructed_per_bin<'a>(instructions: impl Iterator<Item = &'a Record>) -> BTreeMap<String, u64> {
    let mut per_bin = BTreeMap::new();
    for r in instructions {
        if let EventData::PayoutInstructed(p) = &r.event.data {
            *per_bin.entry(p.account.bin.clone()).or_insert(0) += 1;
        }
    }
    per_bin
}

/// Payout ids with a settled or failed event, from what the relay published.
fn transitions(events: &Collector, type_name: &str) -> BTreeMap<String, Record> {
    events
        .of_type(type_name)
        .into_values()
        .map(|r| match &r.event.data {
            EventData::PayoutSettled(t) | EventData::PayoutFailed(t) => (t.payout_id.clone(), r),
            _ => unreachable!("asked for settlements"),
        })
        .collect()
}

#[test]
fn a_month_over_amqp_enroll_fund_pay_settle_fail_correct_and_reissue() {
    let mut fx = Fixture::new("month", Settings::default());
    let files = fx.demo_files(300);
    let events = fx.collector();
    fx.start_serve();
    assert_all_accepted(&fx.publish_file(&files.join("rules.jsonl"), ADMIN), 4, "rules");
    assert_all_accepted(&fx.publish_file(&files.join("enroll.jsonl"), AGENCY), 300, "enrollments");
    let batch = fx.publish_file(&files.join("batch.jsonl"), AGENCY);
    assert_all_accepted(&batch, 1, "the batch");
    let payouts: BTreeSet<String> = batch[0].lines.iter().filter(|l| l.status == "instructed").filter_map(|l| l.payout_id.clone()).collect();
    assert!(payouts.len() > 250, "most of the month's lines are instructed ({})", payouts.len());

    // The banks: one connector per BIN, 10% failures.
    wait_for(SECS_30, "the relay to publish every instruction", || events.of_type("payout.instructed").len() == payouts.len());
    let per_bin = instructed_per_bin(events.of_type("payout.instructed").values());
    settle(&mut fx, &per_bin, "0.1", "1");
    wait_for(SECS_30, "a settlement or failure for every payout", || {
        transitions(&events, "payout.settled").len() + transitions(&events, "payout.failed").len() == payouts.len()
    });
    fx.stop_serve();
    let failed = transitions(&events, "payout.failed");
    let batch_id = format!("files-s1-{PROVINCE}-2025-01-001");
    {
        let engine = fx.open_engine();
        let views = engine.views().reader();
        let b = views.batch(&batch_id).expect("views read").expect("the batch view");
        let count = |status: &str| b.by_status.get(status).map_or(0, |c| c.count);
        assert_eq!(count("settled") + count("failed"), payouts.len() as u64, "the views show every payout settled or failed: {:?}", b.by_status);
        assert_eq!(count("failed"), failed.len() as u64);
        assert!(count("failed") > 0 && count("settled") > 0, "some failed, most settled: {:?}", b.by_status);
        assert_eq!(count("instructed"), 0);
        for id in &payouts {
            let p = views.payout(id).expect("views read").expect("a payout view");
            assert_eq!(p.status, if failed.contains_key(id) { "failed" } else { "settled" }, "payout {id}");
        }
        assert_chain(&engine);
    }

    // The agency corrects each failed beneficiary's account and reissues; the banks settle.
    let holders: BTreeMap<String, String> = read_commands(&files.join("enroll.jsonl"))
        .into_iter()
        .map(|e| match e.command {
            Command::EnrollBeneficiary(b) => (b.citizen_id, b.account.holder_name),
            _ => unreachable!("enroll.jsonl holds enrollments"),
        })
        .collect();
    let mut corrections = Vec::new();
    for (i, (payout_id, r)) in failed.iter().enumerate() {
        let EventData::PayoutFailed(t) = &r.event.data else { unreachable!("failures") };
        let citizen_id = t.citizen_id.to_string();
        let account = AccountInput { bin: t.bin.clone(), account_no: format!("77{:010}", i), holder_name: holders[&citizen_id].clone() };
        let envelope = |id: String, command| CommandEnvelope { command_id: id, v: 1, issued_at: "2025-01-04T02:00:00Z".into(), sender: None, command };
        corrections.push(envelope(format!("fix-acct-{payout_id}"), Command::ChangePaymentAccount(ChangePaymentAccount { citizen_id, account })));
        corrections.push(envelope(
            format!("fix-reissue-{payout_id}"),
            Command::ReissuePayout(PayoutRef { payout_id: payout_id.clone(), reason: "account corrected".into() }),
        ));
    }
    let file = fx.dir.path().join("corrections.jsonl");
    write_commands(&file, &corrections);
    fx.start_serve();
    let out = fx.publish_file(&file, AGENCY);
    assert_all_accepted(&out, corrections.len(), "corrections and reissues");
    let reissues = || {
        events
            .of_type("payout.instructed")
            .into_values()
            .filter(|r| matches!(&r.event.data, EventData::PayoutInstructed(p) if p.kind == PayoutKind::Reissue))
            .collect::<Vec<_>>()
    };
    wait_for(SECS_30, "the relay to publish every reissue", || reissues().len() == failed.len());
    let reissued = reissues();
    settle(&mut fx, &instructed_per_bin(reissued.iter()), "0", "2");
    let settled_reissue = |events: &Collector| {
        let settled = transitions(events, "payout.settled");
        reissued.iter().all(|r| matches!(&r.event.data, EventData::PayoutInstructed(p) if settled.contains_key(&p.payout_id)))
    };
    wait_for(SECS_30, "every reissue settled", || settled_reissue(&events));
    fx.stop_serve();

    let engine = fx.open_engine();
    let views = engine.views().reader();
    let b = views.batch(&batch_id).expect("views read").expect("the batch view");
    let count = |status: &str| b.by_status.get(status).map_or(0, |c| c.count);
    assert_eq!((count("instructed"), count("failed")), (0, 0), "nothing left in flight or failed: {:?}", b.by_status);
    assert_eq!(count("reissued"), failed.len() as u64, "every failed payout was reissued");
    assert_eq!(count("settled"), payouts.len() as u64, "every beneficiary is paid: {:?}", b.by_status);
    for id in failed.keys() {
        let original = views.payout(id).expect("views read").expect("the failed payout");
        let reissue = original.reissued_as.unwrap_or_else(|| panic!("{id} was reissued"));
        assert_eq!(views.payout(&reissue).expect("views read").expect("the reissue").status, "settled", "reissue {reissue}");
        // The reissue's reply names the new payout, so the agency can follow it.
        let reply = out.iter().find(|o| o.command_id == format!("fix-reissue-{id}")).expect("the reissue's reply");
        assert_eq!(reply.payout_id.as_deref(), Some(reissue.as_str()), "the reply to the reissue of {id}");
        assert!(reissue.starts_with(&format!("{id}-R")), "a reissue's id is <root>-R<n>: {reissue}");
    }
    let budget = views.budget(PROVINCE, PROGRAM, "2025-01").expect("views read").expect("the budget");
    assert_eq!(budget.in_flight, ansinh::domain::Balance::ZERO, "no money left in flight");
    assert_chain(&engine);
}

#[test]
fn a_redelivered_group_writes_nothing_twice() {
    // A 5 s group wait holds the whole group unacked in serve's hands, so a kill lands before
    // it is decided.
    let mut fx = Fixture::new("redeliver", Settings { group_wait_ms: 5_000, ..Settings::default() });
    let files = fx.demo_files(200);
    let rules = read_commands(&files.join("rules.jsonl"));
    let enroll = read_commands(&files.join("enroll.jsonl"));
    let batch = read_commands(&files.join("batch.jsonl"));

    // Groups that were durable but whose acks never reached the broker: the rules and half the
    // enrollments are already in the log, decided as the transport would (sender = user).
    let seeded: Vec<Outcome> = {
        let mut engine = fx.open_engine();
        engine.set_roles(ansinh::config::Config::load(&fx.config, true).expect("the test config").bus.roles());
        let mut out = engine.execute(&as_sent_by(&rules, ADMIN)).expect("rules stored");
        out.extend(engine.execute(&as_sent_by(&enroll[..100], AGENCY)).expect("enrollments stored"));
        engine.flush().expect("flushed");
        out
    };
    assert_all_accepted(&seeded, 104, "seeded groups");

    fx.start_serve();
    let commands = format!("{}.commands", fx.prefix);
    let admin = fx.client(ADMIN);
    let agency = fx.client(AGENCY);
    admin.send(&fx.rt, &rules);
    agency.send(&fx.rt, &enroll);
    wait_for(SECS_30, "serve to hold every delivery", || fx.queue_counts(&commands) == Some((0, 1)));
    fx.kill_serve();
    assert!(admin.replies.lock().expect("lock").is_empty() && agency.replies.lock().expect("lock").is_empty(), "killed before the group was decided");
    wait_for(SECS_30, "the broker to requeue the unacked group", || fx.queue_counts(&commands) == Some((204, 0)));

    fx.write_config(&Settings::default());
    fx.start_serve();
    let mut replies = admin.wait_replies(ids(&rules), SECS_90);
    replies.extend(agency.wait_replies(ids(&enroll), SECS_90));
    assert_eq!(replies.len(), 204, "one reply per command");
    let by_id: BTreeMap<&str, &Outcome> = replies.iter().map(|o| (o.command_id.as_str(), o)).collect();
    for s in &seeded {
        let r = by_id[s.command_id.as_str()];
        assert!(r.duplicate, "{} was stored before: the index answers it", s.command_id);
        assert_eq!((r.status, r.seqs), (s.status, s.seqs), "{}: the stored outcome", s.command_id);
    }
    for e in &enroll[100..] {
        let r = by_id[e.command_id.as_str()];
        assert!(!r.duplicate && r.status == OutcomeStatus::Accepted, "{} decided once after the redelivery: {r:?}", e.command_id);
    }

    // A sender retrying its batch gets the same outcome, and nothing is written again.
    agency.send(&fx.rt, &batch);
    let first = agency.reply(&batch[0].command_id, SECS_90);
    agency.send(&fx.rt, &batch);
    wait_for(SECS_30, "the retried batch's reply", || agency.replies.lock().expect("lock").iter().filter(|o| o.command_id == batch[0].command_id).count() == 2);
    let second = agency.replies.lock().expect("lock").iter().rfind(|o| o.command_id == batch[0].command_id).cloned().expect("two replies");
    assert!(!first.duplicate && second.duplicate, "the retry is answered from the index");
    assert_eq!((&first.seqs, &first.lines), (&second.seqs, &second.lines), "the same outcome");
    fx.stop_serve();

    let engine = fx.open_engine();
    let records = log_records(&engine);
    let sent: Vec<&str> = ids(&rules).into_iter().chain(ids(&enroll)).chain(ids(&batch)).collect();
    assert_one_range_per_command(&records, &sent);
    let enrolled = records.iter().filter(|(_, _, r)| r.event.data.type_name() == "beneficiary.enrolled").count();
    assert_eq!(enrolled, 200, "each beneficiary enrolled once");
    assert_eq!(assert_one_regular_payout(&records), first.count_lines("instructed"));
    assert_eq!(engine.head().seq, first.seqs.expect("the batch wrote events")[1], "nothing after the batch's first decision");
    assert_chain(&engine);
}

#[test]
fn poison_lands_in_the_dead_letter_queue_with_its_reason_and_the_queue_keeps_flowing() {
    let mut fx = Fixture::new("poison", Settings::default());
    let files = fx.demo_files(5);
    let rules = read_commands(&files.join("rules.jsonl"));
    let valid = serde_json::to_value(&read_commands(&files.join("enroll.jsonl"))[0]).expect("a command as JSON");
    let mut unknown_type = valid.clone();
    unknown_type["type"] = "pay_everyone".into();
    let mut schema_violation = valid.clone();
    schema_violation["payload"]["bonus"] = "1000000".into();
    let mut bad_id = valid.clone();
    bad_id["command_id"] = "not a valid id!".into();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("not_json", b"enroll everyone, please".to_vec()),
        ("not_utf8", vec![0xff, 0xfe, b'{', b'}']),
        ("missing_field", br#"{"type":"fund_budget","payload":{}}"#.to_vec()),
        ("unknown_type", serde_json::to_vec(&unknown_type).expect("JSON")),
        ("schema_violation", serde_json::to_vec(&schema_violation).expect("JSON")),
        ("envelope_invalid", serde_json::to_vec(&bad_id).expect("JSON")),
        // Over the engine's 16 MiB bound, under the broker's (128 MiB by default in 3.10).
        ("oversize", vec![b' '; ansinh::intake::COMMAND_BYTES_MAX + 1]),
    ];
    fx.start_serve();
    let agency = fx.client(AGENCY);
    for (i, (reason, body)) in cases.iter().enumerate() {
        agency.publish_raw(&fx.rt, body, &format!("poison-{i}"), Some(AGENCY), headers(&[("x-test-case", reason)]));
    }
    // Valid commands queued behind the poison are still decided.
    let admin = fx.client(ADMIN);
    admin.send(&fx.rt, &rules);
    let outcomes = admin.wait_replies(ids(&rules), SECS_90);
    assert_all_accepted(&outcomes, rules.len(), "commands behind the poison");

    let dead_queue = format!("{}.dead", fx.prefix);
    let dead = fx.drain(&dead_queue, cases.len(), SECS_30);
    let reasons: BTreeMap<String, &lapin::message::Delivery> =
        dead.iter().map(|m| (header(&m.delivery.properties, "x-test-case").expect("the original headers are kept"), &m.delivery)).collect();
    assert_eq!(dead.len(), cases.len(), "one dead letter per poison message");
    for (reason, body) in &cases {
        let d = reasons.get(*reason).unwrap_or_else(|| panic!("no dead letter for {reason}"));
        assert_eq!(header(&d.properties, "x-ansinh-reason").as_deref(), Some(*reason), "the reason header");
        assert_eq!(header(&d.properties, "x-ansinh-user").as_deref(), Some(AGENCY), "who sent it");
        assert_eq!(header(&d.properties, "x-ansinh-queue"), Some(format!("{}.commands", fx.prefix)), "where it was consumed");
        assert!(d.data == *body, "{reason}: the original body is kept");
    }
    // Nothing loops back: the command queue is empty and no further dead letter appears.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(fx.queue_counts(&dead_queue).map(|c| c.0), Some(0), "no dead letter twice");
    assert_eq!(fx.queue_counts(&format!("{}.commands", fx.prefix)), Some((0, 1)), "the command queue is drained");
    assert!(agency.replies.lock().expect("lock").is_empty(), "poison is never accepted or rejected");
    for (i, (reason, _)) in cases.iter().enumerate() {
        let o = agency.poison_reply(&format!("poison-{i}"), SECS_30);
        assert_eq!((o.status, o.code.as_deref(), o.duplicate, o.seqs), (OutcomeStatus::Invalid, Some(*reason), false, None), "poison {reason}: {o:?}");
    }
    fx.stop_serve();
    let engine = fx.open_engine();
    let last = outcomes.iter().filter_map(|o| o.seqs).map(|s| s[1]).max();
    assert_eq!(Some(engine.head().seq), last, "poison is never recorded as a command");
}

#[test]
fn an_agency_acting_for_another_province_and_a_bank_settling_another_banks_payout_are_refused_and_recorded() {
    let mut fx = Fixture::new("authz", Settings::default());
    let files = fx.demo_files(30);
    let events = fx.collector();
    fx.start_serve();
    assert_all_accepted(&fx.publish_file(&files.join("rules.jsonl"), ADMIN), 4, "rules");
    let enroll = read_commands(&files.join("enroll.jsonl"));
    write_commands(&fx.dir.path().join("enroll-29.jsonl"), &enroll[1..]);
    assert_all_accepted(&fx.publish_file(&fx.dir.path().join("enroll-29.jsonl"), AGENCY), 29, "enrollments");
    assert_all_accepted(&fx.publish_file(&files.join("batch.jsonl"), AGENCY), 1, "the batch");
    wait_for(SECS_30, "an instruction", || !events.of_type("payout.instructed").is_empty());
    let (payout_id, bin) = events
        .of_type("payout.instructed")
        .into_values()
        .find_map(|r| match r.event.data {
            EventData::PayoutInstructed(p) => Some((p.payout_id, p.account.bin)),
            _ => None,
        })
        .expect("an instruction");
    let other_bin = if bin == "970436" { "970418" } else { "970436" };

    let envelope = |id: &str, command| CommandEnvelope { command_id: id.into(), v: 1, issued_at: "2025-01-05T02:00:00Z".into(), sender: None, command };
    let mut elsewhere = enroll[0].clone();
    elsewhere.command_id = "authz-enroll-in-079".into();
    let Command::EnrollBeneficiary(e) = &mut elsewhere.command else { unreachable!("an enrollment") };
    e.province = "079".into();
    let mut batch_elsewhere = read_commands(&files.join("batch.jsonl"))[0].clone();
    batch_elsewhere.command_id = "authz-batch-in-079".into();
    let Command::SubmitPayoutBatch(b) = &mut batch_elsewhere.command else { unreachable!("a batch") };
    (b.province, b.batch_id) = ("079".into(), "authz-079-batch".into());
    let item = |status| SettlementItem { payout_id: payout_id.clone(), status, reason: None, bank_reference: "FT000000000001".into() };
    let foreign_report = envelope(
        "authz-bank-settles-other-bin",
        Command::RecordSettlements(RecordSettlements { bin: bin.clone(), items: vec![item(SettlementStatus::Settled)] }),
    );
    let own_bin_report = envelope(
        "authz-bank-claims-foreign-payout",
        Command::RecordSettlements(RecordSettlements { bin: other_bin.into(), items: vec![item(SettlementStatus::Settled)] }),
    );

    let agency = fx.client(AGENCY);
    agency.send(&fx.rt, &[elsewhere.clone(), batch_elsewhere.clone()]);
    let bank = fx.client(&bank_user(other_bin));
    bank.send(&fx.rt, &[foreign_report.clone(), own_bin_report.clone()]);
    // No user id at all: the broker lets it through, the engine refuses it.
    let mut anonymous = enroll[0].clone();
    anonymous.command_id = "authz-no-user-id".into();
    agency.publish_raw(&fx.rt, &serde_json::to_vec(&anonymous).expect("JSON"), "authz-no-user-id", None, Default::default());

    let mut refused = agency.wait_replies([elsewhere.command_id.as_str(), batch_elsewhere.command_id.as_str(), "authz-no-user-id"], SECS_30);
    refused.push(bank.reply(&foreign_report.command_id, SECS_30));
    for o in &refused {
        assert_eq!((o.status, o.code.as_deref()), (OutcomeStatus::Rejected, Some("unauthorized")), "{} is refused: {o:?}", o.command_id);
        assert!(o.seqs.is_some_and(|[a, b]| a == b), "{}: the refusal is recorded as one event", o.command_id);
    }
    let claimed = bank.reply(&own_bin_report.command_id, SECS_30);
    assert_eq!(claimed.status, OutcomeStatus::Accepted, "a bank may report under its own BIN");
    assert_eq!(claimed.lines.first().and_then(|l| l.code.as_deref()), Some("bank_mismatch"), "but not another bank's payout: {claimed:?}");
    fx.stop_serve();

    let engine = fx.open_engine();
    for o in &refused {
        let seq = o.seqs.expect("recorded")[0];
        let record = engine.log().read(seq).expect("log read").expect("the refusal's record");
        assert_eq!(record.event.command_id, o.command_id);
        assert!(matches!(&record.event.data, EventData::CommandRejected(r) if r.code == "unauthorized"), "seq {seq} is a recorded refusal");
    }
    let views = engine.views().reader();
    assert_eq!(views.payout(&payout_id).expect("views read").expect("the payout").status, "instructed", "another bank cannot settle it");
    let Command::EnrollBeneficiary(refused_enrollment) = &elsewhere.command else { unreachable!("an enrollment") };
    assert!(views.citizen(&refused_enrollment.citizen_id).expect("views read").is_none(), "nobody was enrolled by a refused command");
}

#[test]
fn the_engine_killed_mid_stream_finishes_with_nothing_lost_and_nothing_doubled() {
    const PEOPLE: usize = 3_000;
    let mut fx = Fixture::new("crash", Settings { group_commands_max: 200, ..Settings::default() });
    let files = fx.demo_files(PEOPLE);
    let events = fx.collector();
    fx.start_serve();
    let rules = fx.publish_file(&files.join("rules.jsonl"), ADMIN);
    assert_all_accepted(&rules, 4, "rules");
    let rule_events = rules.iter().filter_map(|o| o.seqs).map(|s| s[1]).max().expect("rules wrote events");
    let enroll_file = files.join("enroll.jsonl");
    let publisher = fx.spawn("publish-enroll", &["publish", path(&enroll_file), "--amqp", &url(AGENCY), "--json", "--timeout-secs", "150"]);

    let mut heads_at_kill = Vec::new();
    for share in [5, 2] {
        let threshold = rule_events as usize + PEOPLE / share;
        wait_for(SECS_90, &format!("the relay to pass seq {threshold}"), || events.distinct_seqs() >= threshold);
        fx.kill_serve();
        heads_at_kill.push(fx.open_engine().head().seq);
        fx.start_serve();
    }
    fx.wait_success(publisher, Duration::from_secs(180));
    let outcomes = parse_outcomes(&std::fs::read_to_string(fx.dir.path().join("publish-enroll.log")).expect("the publisher's output"));
    assert_all_accepted(&outcomes, PEOPLE, "enrollments across two crashes");
    let total = rule_events + PEOPLE as u64;
    assert!(heads_at_kill[0] < total, "the first kill came mid-stream (head {} of {total})", heads_at_kill[0]);
    let batch = fx.publish_file(&files.join("batch.jsonl"), AGENCY);
    assert_all_accepted(&batch, 1, "the batch after the crashes");
    fx.stop_serve();

    let engine = fx.open_engine();
    assert_chain(&engine);
    let records = log_records(&engine);
    let sent: Vec<String> =
        [files.join("rules.jsonl"), enroll_file, files.join("batch.jsonl")].iter().flat_map(|f| read_commands(f)).map(|e| e.command_id).collect();
    assert_one_range_per_command(&records, &sent.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(records.iter().filter(|(_, _, r)| r.event.data.type_name() == "beneficiary.enrolled").count(), PEOPLE, "each beneficiary enrolled once");
    assert!(
        !records.iter().any(|(_, _, r)| matches!(&r.event.data, EventData::CommandRejected(_))),
        "no command refused (no id reused, nothing decided twice)"
    );
    assert_one_regular_payout(&records);
    assert_eq!(engine.views().reader().applied_seq().expect("views read"), engine.head().seq, "the views caught up");
    let duplicates = outcomes.iter().filter(|o| o.duplicate).count();
    eprintln!("crash test: heads at kill {heads_at_kill:?} of {total}; {duplicates} enrollments answered from the index after a redelivery");
}

#[test]
fn the_relay_restarted_mid_stream_republishes_at_most_the_unconfirmed_batch() {
    const RELAY_BATCH_MAX: u64 = 50;
    let mut fx = Fixture::new("relay", Settings { relay_batch_max: RELAY_BATCH_MAX as usize, ..Settings::default() });
    let files = fx.demo_files(600);
    // A log the relay has not published yet: written by the engine directly, cursor at 0.
    {
        let mut engine = fx.open_engine();
        for file in ["rules.jsonl", "enroll.jsonl", "batch.jsonl"] {
            engine.execute(&read_commands(&files.join(file))).expect("stored");
        }
        engine.flush().expect("flushed");
    }
    let events = fx.collector();
    fx.start_serve();
    wait_for(SECS_90, "the relay to publish 300 events", || events.distinct_seqs() >= 300);
    fx.kill_serve();
    let (cursor, head) = {
        let (db, log, _views) = ansinh::Engine::open_views(&fx.options()).expect("the data dir opens");
        (ansinh::bus::relay::Cursor::open(&db).expect("the relay cursor").get().expect("cursor read"), log.head().seq)
    };
    let before_restart = events.counts();
    assert!(cursor < head, "the kill came mid-stream (cursor {cursor}, head {head})");

    fx.start_serve();
    wait_for(SECS_90, "every event to be published", || events.distinct_seqs() as u64 == head);
    fx.stop_serve();

    let counts = events.counts();
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), (1..=head).collect::<Vec<_>>(), "every seq arrived");
    let duplicates: Vec<u64> = counts.iter().filter(|(_, n)| **n > 1).map(|(seq, _)| *seq).collect();
    for seq in &duplicates {
        assert!(*seq > cursor && *seq <= cursor + RELAY_BATCH_MAX, "seq {seq} republished, but the cursor was at {cursor} (batch {RELAY_BATCH_MAX})");
        assert_eq!(counts[seq], 2, "seq {seq} published at most twice");
        assert!(before_restart.contains_key(seq), "seq {seq} duplicated only if it had been published before the kill");
    }
    let by_seq: BTreeMap<u64, Vec<u8>> = events.with(|s| s.iter().map(|x| (x.record.seq, x.body.clone())).collect());
    let engine = fx.open_engine();
    for (seq, body) in &by_seq {
        assert_eq!(engine.log().read_raw(*seq).expect("log read").expect("the record").as_ref(), body.as_slice(), "seq {seq} is published as stored");
    }
    eprintln!("relay test: cursor {cursor} of head {head} at the kill; {} seqs published twice", duplicates.len());
}
