//! Who may do what over RabbitMQ (issue 16), against the real broker with the fixtures of
//! `tests/amqp_support` (a unique prefix per test, real `ansinh serve` children):
//!
//! - replies go to reply queues only (`amq.gen-*`, direct reply-to): a command naming any other
//!   `reply_to` is decided but not answered, counted and logged masked;
//! - headers only the engine or the broker may set never survive into a dead letter, and no
//!   identity is read from a header;
//! - poison is answered (`invalid`, its reason, the correlation id) and traceable in the
//!   dead-letter queue (message id, correlation id, the broker-validated user);
//! - a command given back more often than the command queue's delivery limit (crashes, closed
//!   channels) is decided once from the isolated queue and never dead-lettered; one the isolated
//!   queue gives back `bus.isolated_attempts_max` times is set aside with its reason;
//! - the users and permissions of `scripts/rabbitmq-setup.sh` let agencies, banks and auditors
//!   bind what the routing table of events/README.md says, and nothing more.

mod amqp_support;

use amqp_support::*;
use ansinh::command::{Command, CommandEnvelope};
use ansinh::outcome::{Outcome, OutcomeStatus};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use std::time::Duration;

const SECS_30: Duration = Duration::from_secs(30);
const SECS_90: Duration = Duration::from_secs(90);
/// A citizen ID hidden in sender-chosen strings: it must never reach serve's log in full.
const HIDDEN_ID: &str = "056185000123";

fn body(e: &CommandEnvelope) -> Vec<u8> {
    serde_json::to_vec(e).expect("commands serialize")
}

/// Publishes `envelope` as `user` with `reply_to` = direct reply-to, consuming the pseudo-queue on
/// the same channel, and returns the reply.
fn via_direct_reply_to(fx: &Fixture, user: &str, envelope: &CommandEnvelope) -> Outcome {
    fx.rt.block_on(async {
        let conn = connect(user).await;
        let ch = conn.create_channel().await.expect("a channel");
        let mut replies = ch
            .basic_consume("amq.rabbitmq.reply-to".into(), "".into(), BasicConsumeOptions { no_ack: true, ..Default::default() }, FieldTable::default())
            .await
            .expect("consuming direct reply-to");
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_user_id(user.into())
            .with_reply_to("amq.rabbitmq.reply-to".into())
            .with_correlation_id(envelope.command_id.as_str().into());
        ch.basic_publish(fx.bus().commands_exchange().as_str().into(), "command".into(), BasicPublishOptions::default(), &body(envelope), props)
            .await
            .expect("publish");
        let d = tokio::time::timeout(SECS_90, replies.next()).await.expect("a reply in time").expect("a delivery").expect("no error");
        assert_eq!(d.properties.correlation_id().as_ref().map(|c| c.to_string()), Some(envelope.command_id.clone()));
        serde_json::from_slice(&d.data).expect("an outcome")
    })
}

#[test]
fn a_reply_to_that_is_not_a_reply_queue_gets_no_reply_and_the_command_is_decided_all_the_same() {
    let mut fx = Fixture::new("replyto", Settings::default());
    fx.serve_rust_log = "ansinh=debug,info".into();
    let rules = read_commands(&fx.demo_files(3).join("rules.jsonl"));
    assert_eq!(rules.len(), 4, "program, two levels, funding");
    fx.start_serve();
    let admin = fx.client(ADMIN);
    // The confused deputy: the admin names a bank's instruction queue as its reply queue.
    let bank_queue = fx.bus().bank_queue("970436");
    admin.publish_with(&fx.rt, &body(&rules[0]), &rules[0].command_id, Some(ADMIN), Default::default(), &bank_queue);
    // Any other queue name, holding a citizen ID: refused too, and logged masked.
    let hidden_reply_to = format!("enr-{HIDDEN_ID}");
    admin.publish_with(&fx.rt, &body(&rules[1]), &rules[1].command_id, Some(ADMIN), Default::default(), &hidden_reply_to);
    // Direct reply-to and a server-named queue are answered.
    let direct = via_direct_reply_to(&fx, ADMIN, &rules[2]);
    assert_eq!((direct.status, direct.duplicate), (OutcomeStatus::Accepted, false), "{direct:?}");
    admin.send(&fx.rt, &rules[3..]);
    assert_eq!(admin.reply(&rules[3].command_id, SECS_90).status, OutcomeStatus::Accepted);
    // A command id holding a citizen ID, refused (an agency may not fund): logged masked.
    let mut hidden_id = rules[3].clone();
    hidden_id.command_id = format!("fund-{HIDDEN_ID}");
    let agency = fx.client(AGENCY);
    agency.send(&fx.rt, std::slice::from_ref(&hidden_id));
    assert_eq!(agency.reply(&hidden_id.command_id, SECS_90).code.as_deref(), Some("unauthorized"));

    let (status, metrics) = fx.serve_http_get("/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("ansinh_replies_refused_total 2\n"), "two replies refused:\n{metrics}");
    assert_eq!(fx.queue_counts(&bank_queue).map(|c| c.0), Some(0), "nothing was published into the bank's queue");
    assert!(admin.replies.lock().expect("lock").iter().all(|o| o.command_id == rules[3].command_id), "no reply reached the admin for the refused ones");
    fx.stop_serve();

    let engine = fx.open_engine();
    let records = log_records(&engine);
    for e in &rules {
        assert_eq!(records.iter().filter(|(_, _, r)| r.event.command_id == e.command_id).count(), 1, "{} decided once", e.command_id);
    }
    let log = fx.serve_logs();
    assert_eq!(log.matches("reply_to is not a reply queue").count(), 2, "each refusal is logged:\n{log}");
    assert!(log.contains("enr-056******123") && log.contains("fund-056******123"), "masked in the log:\n{log}");
    assert!(!log.contains(HIDDEN_ID), "a citizen ID in a sender-chosen string reached the log:\n{log}");
}

#[test]
fn forged_headers_never_reach_the_dead_letter_queue_and_identity_is_never_read_from_a_header() {
    let mut fx = Fixture::new("forged", Settings::default());
    let rules = read_commands(&fx.demo_files(3).join("rules.jsonl"));
    fx.start_serve();
    let agency = fx.client(AGENCY);
    let mut forged = headers(&[
        ("x-ansinh-user", ADMIN),
        ("x-ansinh-reason", "forged"),
        ("X-Ansinh-Detail", "forged"),
        ("x-death", "forged"),
        ("x-first-death-queue", "forged"),
        ("x-test-case", "kept"),
    ]);
    // The quorum queue sets x-delivery-count itself: a forged count is not what the engine reads.
    forged.insert("x-delivery-count".into(), lapin::types::AMQPValue::LongLongInt(99));
    agency.publish_raw(&fx.rt, b"not a command", "forged-anonymous", None, forged.clone());
    agency.publish_raw(&fx.rt, b"not a command either", "forged-agency", Some(AGENCY), forged.clone());
    // A valid admin command from the agency claiming to be the admin in a header: refused.
    agency.publish_raw(&fx.rt, &body(&rules[3]), &rules[3].command_id, Some(AGENCY), forged);
    let refused = agency.reply(&rules[3].command_id, SECS_90);
    assert_eq!((refused.status, refused.code.as_deref()), (OutcomeStatus::Rejected, Some("unauthorized")), "{refused:?}");
    for id in ["forged-anonymous", "forged-agency"] {
        let o = agency.poison_reply(id, SECS_30);
        assert_eq!((o.status, o.code.as_deref(), o.command_id.as_str()), (OutcomeStatus::Invalid, Some("not_json"), id), "{o:?}");
    }
    let dead = fx.drain(&fx.bus().dead_letter_queue(), 2, SECS_30);
    assert_eq!(dead.len(), 2);
    for m in &dead {
        let p = &m.delivery.properties;
        let id = p.message_id().as_ref().map(|m| m.to_string()).expect("the message id is kept");
        assert_eq!(p.correlation_id().as_ref().map(|c| c.to_string()).as_deref(), Some(id.as_str()), "the correlation id is kept");
        assert_eq!(header(p, "x-ansinh-reason").as_deref(), Some("not_json"), "{id}: the engine's reason, not the forged one");
        assert!(header(p, "x-ansinh-detail").is_some_and(|d| d != "forged"), "{id}");
        let user = header(p, "x-ansinh-user");
        match id.as_str() {
            "forged-anonymous" => assert_eq!(user, None, "no user id: no user, whatever the headers claim"),
            _ => assert_eq!(user.as_deref(), Some(AGENCY), "the broker-validated user"),
        }
        for name in ["x-death", "x-first-death-queue"] {
            assert_eq!(header(p, name), None, "{id}: the publisher's {name} is dropped");
        }
        // The dead-letter queue (a quorum queue) sets its own count on this test's basic.get.
        assert_eq!(header(p, "x-delivery-count").as_deref(), Some("LongLongInt(0)"), "{id}: not the forged 99");
        assert_eq!(header(p, "x-test-case").as_deref(), Some("kept"), "other headers are kept");
        assert_eq!(header(p, "x-ansinh-returns"), None, "{id}: not known for a consumed delivery (a publisher may forge x-delivery-count)");
        let forged_left: Vec<String> = p
            .headers()
            .as_ref()
            .map(|h| {
                h.inner()
                    .iter()
                    .filter(|(k, v)| k.as_str().to_ascii_lowercase().starts_with("x-ansinh-") && format!("{v:?}").contains("forged"))
                    .map(|(k, _)| k.to_string())
                    .collect()
            })
            .unwrap_or_default();
        assert!(forged_left.is_empty(), "{id}: forged headers survived: {forged_left:?}");
    }
}

fn assert_one_accepted(client: &Client, id: &str) {
    let replies: Vec<Outcome> = client.replies.lock().expect("lock").iter().filter(|o| o.command_id == id).cloned().collect();
    assert_eq!(replies.len(), 1, "{id}: exactly one reply: {replies:?}");
    assert_eq!((replies[0].status, replies[0].duplicate), (OutcomeStatus::Accepted, false), "{id}: {:?}", replies[0]);
}

#[test]
fn a_command_given_back_past_the_delivery_limit_is_decided_once_from_the_isolated_queue() {
    let mut fx = Fixture::new("isolate", Settings::default());
    let rules = read_commands(&fx.demo_files(3).join("rules.jsonl"));
    let bus = fx.bus();
    let (commands, isolated, dead) = (bus.commands_queue(), bus.isolated_queue(), bus.dead_letter_queue());
    fx.declare_topology();
    let admin = fx.client(ADMIN);

    // Given back six times by the command queue (its delivery limit is 5), then twice by the
    // isolated queue (under bus.isolated_attempts_max = 3): still decided, once.
    // A forged x-delivery-count rides along: the engine must count the broker's returns.
    let mut forged = FieldTable::default();
    forged.insert("x-delivery-count".into(), lapin::types::AMQPValue::LongLongInt(99));
    admin.publish_raw(&fx.rt, &body(&rules[0]), &rules[0].command_id, Some(ADMIN), forged);
    fx.give_back(&commands, bus.delivery_limit as usize + 1);
    wait_for(SECS_30, "the command to move to the isolated queue", || fx.queue_counts(&isolated) == Some((1, 0)));
    assert_eq!(fx.queue_counts(&commands), Some((0, 0)));
    assert_eq!(fx.queue_counts(&dead), Some((0, 0)), "never dead-lettered for being given back");
    fx.give_back(&isolated, bus.isolated_attempts_max as usize - 1);
    fx.start_serve();
    admin.reply(&rules[0].command_id, SECS_90);
    std::thread::sleep(Duration::from_secs(1));
    assert_one_accepted(&admin, &rules[0].command_id);
    assert_eq!(fx.queue_counts(&isolated), Some((0, 0)), "taken from the isolated queue and acknowledged");
    fx.stop_serve();

    // The last resort: lost isolated_attempts_max times while decided alone (as if it crashed the
    // engine each time): set aside with its reason, answered, not decided.
    admin.send(&fx.rt, &rules[1..2]);
    fx.give_back(&commands, bus.delivery_limit as usize + 1);
    wait_for(SECS_30, "the second command to move to the isolated queue", || fx.queue_counts(&isolated) == Some((1, 0)));
    fx.give_back(&isolated, bus.isolated_attempts_max as usize);
    fx.start_serve();
    let o = admin.poison_reply(&rules[1].command_id, SECS_90);
    assert_eq!((o.status, o.code.as_deref(), o.command_id.as_str()), (OutcomeStatus::Invalid, Some("attempts_exhausted"), rules[1].command_id.as_str()));
    let letters = fx.drain(&dead, 1, SECS_30);
    assert_eq!(letters.len(), 1, "set aside in the dead-letter queue");
    let p = &letters[0].delivery.properties;
    assert_eq!(header(p, "x-ansinh-reason").as_deref(), Some("attempts_exhausted"));
    assert_eq!(header(p, "x-ansinh-queue"), Some(isolated.clone()));
    assert_eq!(header(p, "x-ansinh-user").as_deref(), Some(ADMIN));
    assert_eq!(header(p, "x-ansinh-returns").as_deref(), Some("LongLongInt(3)"));
    assert!(letters[0].delivery.data == body(&rules[1]), "the original body");
    fx.stop_serve();
    let engine = fx.open_engine();
    let records = log_records(&engine);
    assert_eq!(records.iter().filter(|(_, _, r)| r.event.command_id == rules[0].command_id).count(), 1, "the first command decided once");
    assert!(!records.iter().any(|(_, _, r)| r.event.command_id == rules[1].command_id), "the set-aside command was not decided");
}

#[test]
fn a_command_caught_in_more_crashes_of_serve_than_the_delivery_limit_gets_exactly_one_outcome() {
    // A 5 s group wait: serve holds the delivery, undecided, until it is killed.
    let mut fx = Fixture::new("crashes", Settings { group_wait_ms: 5_000, ..Settings::default() });
    let rules = read_commands(&fx.demo_files(3).join("rules.jsonl"));
    let bus = fx.bus();
    let (commands, isolated, dead) = (bus.commands_queue(), bus.isolated_queue(), bus.dead_letter_queue());
    fx.start_serve();
    let admin = fx.client(ADMIN);
    admin.send(&fx.rt, &rules[..1]);
    let kills = bus.delivery_limit as usize + 1;
    for kill in 1..=kills {
        wait_for(SECS_30, "serve to hold the command", || fx.queue_counts(&commands) == Some((0, 1)));
        fx.kill_serve();
        if kill < kills {
            fx.start_serve();
        }
    }
    wait_for(SECS_30, "the command to move to the isolated queue", || fx.queue_counts(&isolated) == Some((1, 0)));
    assert!(admin.replies.lock().expect("lock").is_empty(), "never decided before the kills");
    fx.write_config(&Settings::default());
    fx.start_serve();
    admin.reply(&rules[0].command_id, SECS_90);
    std::thread::sleep(Duration::from_secs(1));
    assert_one_accepted(&admin, &rules[0].command_id);
    assert_eq!(fx.queue_counts(&dead).map(|c| c.0), Some(0), "nothing dead-lettered");
    let (_, metrics) = fx.serve_http_get("/metrics");
    assert!(metrics.contains("ansinh_isolated_deliveries_total 1\n"), "{metrics}");
    fx.stop_serve();
    let records = log_records(&fx.open_engine());
    assert_eq!(records.iter().filter(|(_, _, r)| r.event.command_id == rules[0].command_id).count(), 1, "decided once");
    assert!(matches!(rules[0].command, Command::DefineProgram(_)));
}

/// Topic permissions the test set on its own events exchange, cleared at the end.
struct TopicPermissions(String);

impl Drop for TopicPermissions {
    fn drop(&mut self) {
        let out = std::process::Command::new("rabbitmqctl").args(["-q", "list_topic_permissions", "-p", "/"]).output().expect("rabbitmqctl runs");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            if fields.get(1) == Some(&self.0.as_str()) {
                let _ = std::process::Command::new("rabbitmqctl").args(["-q", "clear_topic_permissions", "-p", "/", fields[0], &self.0]).output();
            }
        }
    }
}

/// Declares a queue as `user` (server-named exclusive when `queue` is empty) and binds it to
/// `exchange` with `key`: the queue's name, or the broker's refusal.
fn bind_as(fx: &Fixture, user: &str, queue: &str, exchange: &str, key: &str) -> Result<String, String> {
    fx.rt.block_on(async {
        let conn = connect(user).await;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        let options = if queue.is_empty() {
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() }
        } else {
            QueueDeclareOptions { durable: true, ..Default::default() }
        };
        let declared = ch.queue_declare(queue.into(), options, FieldTable::default()).await.map_err(|e| format!("declare: {e}"))?;
        ch.queue_bind(declared.name().clone(), exchange.into(), key.into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let _ = conn.close(200, "".into()).await;
        Ok(declared.name().to_string())
    })
}

#[test]
fn the_shipped_permissions_let_each_user_bind_what_the_routing_table_says_and_nothing_more() {
    let fx = Fixture::new("perms", Settings::default());
    let bus = fx.bus();
    let (events, checkpoints) = (bus.events_exchange(), bus.checkpoint_exchange());
    let _clear = TopicPermissions(events.clone());
    run_setup_script(&["/", &fx.prefix]).unwrap_or_else(|e| panic!("{e}"));
    fx.declare_topology();
    let named = |who: &str| {
        let q = format!("{}.{who}.feed", fx.prefix);
        fx.delete_at_end(&q);
        q
    };
    let allowed = |user: &str, queue: &str, exchange: &str, key: &str| {
        bind_as(&fx, user, queue, exchange, key).unwrap_or_else(|e| panic!("{user} may bind {queue:?} to {exchange} with {key:?}: {e}"))
    };
    let refused = |user: &str, queue: &str, exchange: &str, key: &str| {
        let e = bind_as(&fx, user, queue, exchange, key).expect_err(&format!("{user} may not bind {queue:?} to {exchange} with {key:?}"));
        assert!(e.contains("ACCESS_REFUSED"), "{user} {key:?}: refused for lack of permission, not {e}");
    };

    // The province's agency: its provinces' keys (056 and 058), national levels; nothing else.
    for key in ["beneficiary.enrolled.056", "budget.funded.058", "payout_batch.submitted.056", "standard_level.set.056", "standard_level.set.national"] {
        allowed(AGENCY, "", &events, key);
    }
    allowed(AGENCY, &named("agency-056"), &events, "beneficiary.enrolled.056");
    for key in ["#", "beneficiary.enrolled.*", "beneficiary.enrolled.079", "payout.instructed.970436", "beneficiary.terminated.all"] {
        refused(AGENCY, "", &events, key);
    }
    refused(AGENCY, &format!("{}.auditor.mine", fx.prefix), &events, "beneficiary.enrolled.056");
    // A bank: its BIN's keys only.
    let bank = bank_user("970436");
    for key in ["payout.instructed.970436", "payout.settled.970436", "payout.written_off.970436", "settlement_item.rejected.970436"] {
        allowed(&bank, "", &events, key);
    }
    // Its instruction queue, declared and bound the way the bank connector does it.
    fx.rt.block_on(async {
        let ch = connect(&bank).await.create_channel().await.expect("a channel");
        ansinh::bus::topology::declare_bank_queue(&ch, &bus, "970436").await.expect("the bank declares and binds its own queue");
    });
    for key in ["#", "payout.instructed.970415", "payout.*.*", "beneficiary.enrolled.056"] {
        refused(&bank, "", &events, key);
    }
    // The auditor: everything published, events and checkpoints.
    let auditor = "ansinh-auditor";
    allowed(auditor, "", &events, "#");
    allowed(auditor, &named("auditor"), &events, "#");
    allowed(auditor, "", &checkpoints, "");
    // The admin publishes commands; it subscribes to nothing.
    refused(ADMIN, "", &events, "standard_level.set.national");

    // What a binding lets through: an event the engine publishes reaches the agency's queue.
    let queue = allowed(AGENCY, &named("agency-056"), &events, "beneficiary.enrolled.058");
    fx.rt.block_on(async {
        let engine = connect(ENGINE).await;
        let ch = engine.create_channel().await.expect("a channel");
        ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
        let props = BasicProperties::default().with_delivery_mode(2);
        ch.basic_publish(events.as_str().into(), "beneficiary.enrolled.058".into(), BasicPublishOptions::default(), b"{}", props)
            .await
            .expect("publish")
            .await
            .expect("confirmed");
        let agency = connect(AGENCY).await;
        let ch = agency.create_channel().await.expect("a channel");
        let mut got = None;
        for _ in 0..100 {
            got = ch.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("the agency reads its queue");
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(got.is_some_and(|m| m.delivery.routing_key.as_str() == "beneficiary.enrolled.058"), "the agency got the event");
    });
}
