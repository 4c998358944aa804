//! The sandbox in process, against a real HTTP webhook receiver on loopback: Stripe's API
//! shapes, idempotency, refunds, cancel, signed webhooks with retries, and every fault switch.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{config, unix_now, verify_signature, Api, Receiver, KEY, WEBHOOK_SECRET};
use payment_sandbox::{Sandbox, SandboxConfig};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(5);

async fn start(receiver: &Receiver) -> (Sandbox, Api) {
    let sandbox = Sandbox::start(config(Some(receiver.url()))).await.unwrap();
    let api = Api::new(&sandbox);
    (sandbox, api)
}

fn types(deliveries: &[common::Delivery]) -> Vec<String> {
    let mut types: Vec<String> = deliveries
        .iter()
        .map(|d| d.event_type().to_owned())
        .collect();
    types.sort();
    types
}

#[tokio::test]
async fn success_card_succeeds_and_sends_signed_events() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;

    let reply = api.charge("pm_card_visa", "res-1", Some("key-1")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    let pi = &reply.json;
    let id = pi["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("pi_") && id.len() > 20, "{id}");
    assert_eq!(pi["object"], "payment_intent");
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(pi["amount"], 2500);
    assert_eq!(pi["amount_received"], 2500);
    assert_eq!(pi["currency"], "usd");
    assert_eq!(pi["payment_method"], "pm_card_visa");
    assert_eq!(pi["metadata"], json!({"reservation_id": "res-1"}));
    assert_eq!(pi["last_payment_error"], Value::Null);
    assert_eq!(pi["livemode"], false);
    assert!(pi["latest_charge"].as_str().unwrap().starts_with("ch_"));
    assert!((pi["created"].as_i64().unwrap() - unix_now()).abs() <= 5);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(reply.header("request-id").unwrap().starts_with("req_"));
    assert_eq!(reply.header("idempotent-replayed"), None);

    let deliveries = receiver.wait_for(2, WAIT).await;
    assert_eq!(
        types(&deliveries),
        ["charge.succeeded", "payment_intent.succeeded"]
    );
    for delivery in &deliveries {
        assert_eq!(delivery.content_type, "application/json");
        let t = verify_signature(&delivery.signature, &delivery.body, WEBHOOK_SECRET)
            .expect("signature verifies with the webhook secret");
        assert!((t - unix_now()).abs() <= 5, "t={t}");
        assert!(verify_signature(&delivery.signature, &delivery.body, "whsec_wrong").is_err());
        let event = &delivery.json;
        assert!(event["id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(event["object"], "event");
        assert_eq!(event["livemode"], false);
        assert_eq!(event["api_version"], "2024-06-20");
        assert_eq!(event["request"]["idempotency_key"], "key-1");
    }
    let succeeded = deliveries
        .iter()
        .find(|d| d.event_type() == "payment_intent.succeeded")
        .unwrap();
    assert_eq!(succeeded.json["data"]["object"]["id"], id.as_str());
    assert_eq!(succeeded.json["data"]["object"]["status"], "succeeded");
    assert_eq!(
        succeeded.json["data"]["object"]["metadata"]["reservation_id"],
        "res-1"
    );
    let charge = deliveries
        .iter()
        .find(|d| d.event_type() == "charge.succeeded")
        .unwrap();
    assert_eq!(charge.json["data"]["object"]["object"], "charge");
    assert_eq!(charge.json["data"]["object"]["payment_intent"], id.as_str());

    let fetched = api.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json["status"], "succeeded");
    assert_eq!(fetched.json["id"], id.as_str());

    let events = api.events(&id).await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event["attempts"], 1, "{event}");
        assert_eq!(event["delivered"], 1);
        assert_eq!(event["last_status"], 200);
    }
    let stats = api.stats().await;
    assert_eq!(stats["payment_intents"], 1);
    assert_eq!(stats["succeeded"], 1);
    assert_eq!(stats["deliveries_ok"], 2);
    assert_eq!(stats["deliveries_failed"], 0);
    assert_eq!(stats["api_calls"], 2);
}

#[tokio::test]
async fn declined_cards_answer_402_and_send_payment_failed() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;

    for (pm, decline_code, reservation) in [
        ("pm_card_chargeDeclined", "generic_decline", "res-d1"),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
            "res-d2",
        ),
    ] {
        let reply = api.charge(pm, reservation, None).await;
        assert_eq!(reply.status, 402, "{pm}: {:?}", reply.json);
        let error = &reply.json["error"];
        assert_eq!(error["type"], "card_error");
        assert_eq!(error["code"], "card_declined");
        assert_eq!(error["decline_code"], decline_code);
        assert!(error["message"].as_str().unwrap().starts_with("Your card"));
        let pi = &error["payment_intent"];
        assert_eq!(pi["status"], "requires_payment_method");
        assert_eq!(pi["amount_received"], 0);
        assert_eq!(pi["metadata"]["reservation_id"], reservation);
        assert_eq!(pi["last_payment_error"]["decline_code"], decline_code);
        assert_eq!(pi["last_payment_error"]["code"], "card_declined");
        assert_eq!(pi["last_payment_error"]["type"], "card_error");

        let id = pi["id"].as_str().unwrap();
        let fetched = api.get(&format!("/v1/payment_intents/{id}")).await;
        assert_eq!(fetched.json["status"], "requires_payment_method");
    }

    let deliveries = receiver.wait_for(4, WAIT).await;
    assert_eq!(
        types(&deliveries),
        [
            "charge.failed",
            "charge.failed",
            "payment_intent.payment_failed",
            "payment_intent.payment_failed"
        ]
    );
    let failed: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.event_type() == "payment_intent.payment_failed")
        .map(|d| {
            d.json["data"]["object"]["last_payment_error"]["decline_code"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(failed.contains(&"generic_decline") && failed.contains(&"insufficient_funds"));
    let stats = api.stats().await;
    assert_eq!(stats["declined"], 2);
    assert_eq!(stats["succeeded"], 0);
}

#[tokio::test]
async fn slow_card_is_processing_then_succeeds_after_slow_ms() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await; // slow_ms = 300

    let started = Instant::now();
    let reply = api.charge("pm_card_sandbox_slow", "res-slow", None).await;
    assert_eq!(reply.status, 200, "{:?}", reply.json);
    assert_eq!(reply.json["status"], "processing");
    assert_eq!(reply.json["amount_received"], 0);
    let id = reply.json["id"].as_str().unwrap().to_owned();

    let first = receiver.wait_for(1, WAIT).await;
    assert_eq!(first[0].event_type(), "payment_intent.processing");
    assert_eq!(
        api.get(&format!("/v1/payment_intents/{id}")).await.json["status"],
        "processing"
    );

    let all = receiver.wait_for(3, WAIT).await;
    let succeeded = all
        .iter()
        .find(|d| d.event_type() == "payment_intent.succeeded")
        .expect("payment_intent.succeeded after slow_ms");
    assert!(
        succeeded.at.duration_since(started) >= Duration::from_millis(300),
        "succeeded too early: {:?}",
        succeeded.at.duration_since(started)
    );
    assert_eq!(succeeded.json["data"]["object"]["status"], "succeeded");
    assert_eq!(succeeded.json["request"]["id"], Value::Null);
    let fetched = api.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(fetched.json["status"], "succeeded");
    assert_eq!(fetched.json["amount_received"], 2500);
}

#[tokio::test]
async fn idempotency_key_replays_and_refuses_other_params() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;

    let first = api.charge("pm_card_visa", "res-idem", Some("idem-1")).await;
    let second = api.charge("pm_card_visa", "res-idem", Some("idem-1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 200);
    assert_eq!(first.body, second.body, "the identical body is replayed");
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        second.header("original-request"),
        first.header("request-id")
    );
    let id = first.json["id"].as_str().unwrap();

    let listed = api
        .admin_get("/_sandbox/payment_intents?metadata.reservation_id=res-idem")
        .await;
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "one PaymentIntent: {listed}");
    assert_eq!(data[0]["id"], id);
    assert_eq!(data[0]["create_calls"], 2);

    // Same key, other parameters.
    let other = api
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "9999"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
                ("metadata[reservation_id]", "res-idem"),
            ],
            Some("idem-1"),
        )
        .await;
    assert_eq!(other.status, 400);
    assert_eq!(other.json["error"]["type"], "idempotency_error");
    assert!(other.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("same parameters"));
    // Same key on another endpoint.
    let elsewhere = api
        .post("/v1/refunds", &[("payment_intent", id)], Some("idem-1"))
        .await;
    assert_eq!(elsewhere.status, 400);
    assert_eq!(elsewhere.json["error"]["type"], "idempotency_error");

    // A declined charge is stored too: replayed as the same 402.
    let declined = api
        .charge("pm_card_chargeDeclined", "res-idem-d", Some("idem-2"))
        .await;
    let declined_again = api
        .charge("pm_card_chargeDeclined", "res-idem-d", Some("idem-2"))
        .await;
    assert_eq!(declined.status, 402);
    assert_eq!(declined_again.status, 402);
    assert_eq!(declined.body, declined_again.body);

    // A parameter validation error is not stored: the corrected retry executes.
    let invalid = api
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "2500"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
            Some("idem-3"),
        )
        .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.json["error"]["code"], "parameter_missing");
    let corrected = api
        .charge("pm_card_visa", "res-idem-3", Some("idem-3"))
        .await;
    assert_eq!(corrected.status, 200, "{:?}", corrected.json);
    assert_eq!(corrected.header("idempotent-replayed"), None);

    // One set of events per PaymentIntent, none for the replays.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = api.events(id).await;
    let mut kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["charge.succeeded", "payment_intent.succeeded"]);
    // 2 (first) + 2 (declined) + 2 (corrected) events reached the receiver, no more.
    assert_eq!(receiver.deliveries().len(), 6);
    let stats = api.stats().await;
    assert_eq!(stats["payment_intents"], 3);
    assert_eq!(stats["idempotent_replays"], 2);
}

#[tokio::test]
async fn refunds_once_then_already_refunded_and_replays_by_key() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;

    let pi = api.charge("pm_card_visa", "res-refund", None).await.json;
    let id = pi["id"].as_str().unwrap();
    let refund = api
        .post("/v1/refunds", &[("payment_intent", id)], Some("refund-1"))
        .await;
    assert_eq!(refund.status, 200, "{:?}", refund.json);
    assert!(refund.json["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(refund.json["object"], "refund");
    assert_eq!(refund.json["amount"], 2500);
    assert_eq!(refund.json["currency"], "usd");
    assert_eq!(refund.json["payment_intent"], id);
    assert_eq!(refund.json["status"], "succeeded");

    let again = api
        .post("/v1/refunds", &[("payment_intent", id)], Some("refund-2"))
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.json["error"]["type"], "invalid_request_error");
    assert_eq!(again.json["error"]["code"], "charge_already_refunded");
    assert!(again.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("has already been refunded"));

    let replay = api
        .post("/v1/refunds", &[("payment_intent", id)], Some("refund-1"))
        .await;
    assert_eq!(replay.status, 200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.json["id"], refund.json["id"]);

    let list = api.get(&format!("/v1/refunds?payment_intent={id}")).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json["object"], "list");
    assert_eq!(list.json["has_more"], false);
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert_eq!(list.json["data"][0]["id"], refund.json["id"]);

    // Partial refunds: above what remains is refused.
    let pi2 = api.charge("pm_card_visa", "res-refund-2", None).await.json;
    let id2 = pi2["id"].as_str().unwrap();
    let part = api
        .post(
            "/v1/refunds",
            &[("payment_intent", id2), ("amount", "1000")],
            None,
        )
        .await;
    assert_eq!(part.status, 200);
    assert_eq!(part.json["amount"], 1000);
    let too_much = api
        .post(
            "/v1/refunds",
            &[("payment_intent", id2), ("amount", "1501")],
            None,
        )
        .await;
    assert_eq!(too_much.status, 400);
    assert_eq!(too_much.json["error"]["code"], "charge_already_refunded");
    assert!(too_much.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("greater than unrefunded amount"));
    let rest = api
        .post(
            "/v1/refunds",
            &[("payment_intent", id2), ("amount", "1500")],
            None,
        )
        .await;
    assert_eq!(rest.status, 200);
    let list2 = api.get(&format!("/v1/refunds?payment_intent={id2}")).await;
    assert_eq!(list2.json["data"].as_array().unwrap().len(), 2);
    assert_eq!(list2.json["data"][0]["amount"], 1500, "newest first");

    // Nothing captured: nothing to refund.
    let declined = api
        .charge("pm_card_chargeDeclined", "res-refund-3", None)
        .await;
    let declined_id = declined.json["error"]["payment_intent"]["id"]
        .as_str()
        .unwrap();
    let not_charged = api
        .post("/v1/refunds", &[("payment_intent", declined_id)], None)
        .await;
    assert_eq!(not_charged.status, 400);
    assert_eq!(
        not_charged.json["error"]["code"],
        "payment_intent_unexpected_state"
    );
    let unknown = api
        .post("/v1/refunds", &[("payment_intent", "pi_nope")], None)
        .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.json["error"]["code"], "resource_missing");

    // charge.refunded carries the Charge, refund.created the Refund.
    let deliveries = receiver.wait_for(2 + 2 + 2 + 2 + 2 + 2, WAIT).await;
    let refunded: Vec<&common::Delivery> = deliveries
        .iter()
        .filter(|d| d.event_type() == "charge.refunded")
        .collect();
    assert_eq!(refunded.len(), 3);
    let full = refunded
        .iter()
        .find(|d| d.json["data"]["object"]["payment_intent"] == id)
        .unwrap();
    assert_eq!(full.json["data"]["object"]["amount_refunded"], 2500);
    assert_eq!(full.json["data"]["object"]["refunded"], true);
    let listed = api
        .admin_get("/_sandbox/payment_intents?metadata.reservation_id=res-refund-2")
        .await;
    assert_eq!(listed["data"][0]["refunds"].as_array().unwrap().len(), 2);
    assert_eq!(api.stats().await["refunds"], 3);
}

#[tokio::test]
async fn cancel_stops_the_slow_card_and_refuses_succeeded() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await; // slow_ms = 300

    let slow = api
        .charge("pm_card_sandbox_slow", "res-cancel", None)
        .await
        .json;
    let id = slow["id"].as_str().unwrap();
    let path = format!("/v1/payment_intents/{id}/cancel");
    let canceled = api
        .post(
            &path,
            &[("cancellation_reason", "abandoned")],
            Some("cancel-1"),
        )
        .await;
    assert_eq!(canceled.status, 200, "{:?}", canceled.json);
    assert_eq!(canceled.json["status"], "canceled");
    assert_eq!(canceled.json["cancellation_reason"], "abandoned");
    let replay = api
        .post(
            &path,
            &[("cancellation_reason", "abandoned")],
            Some("cancel-1"),
        )
        .await;
    assert_eq!(replay.body, canceled.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    // Past slow_ms: still canceled, no success event.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        api.get(&format!("/v1/payment_intents/{id}")).await.json["status"],
        "canceled"
    );
    let mut kinds: Vec<String> = api
        .events(id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["payment_intent.canceled", "payment_intent.processing"]
    );

    // Canceling again or canceling a succeeded intent: unexpected state.
    let twice = api.post(&path, &[], None).await;
    assert_eq!(twice.status, 400);
    assert_eq!(
        twice.json["error"]["code"],
        "payment_intent_unexpected_state"
    );
    let paid = api.charge("pm_card_visa", "res-cancel-2", None).await.json;
    let paid_id = paid["id"].as_str().unwrap();
    let refused = api
        .post(&format!("/v1/payment_intents/{paid_id}/cancel"), &[], None)
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.json["error"]["code"],
        "payment_intent_unexpected_state"
    );
    assert_eq!(
        refused.json["error"]["payment_intent"]["status"],
        "succeeded"
    );

    // Without confirm the intent waits for confirmation and can be canceled.
    let unconfirmed = api
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "100"),
                ("currency", "eur"),
                ("payment_method", "pm_card_visa"),
            ],
            None,
        )
        .await
        .json;
    assert_eq!(unconfirmed["status"], "requires_confirmation");
    let uid = unconfirmed["id"].as_str().unwrap();
    let c = api
        .post(&format!("/v1/payment_intents/{uid}/cancel"), &[], None)
        .await;
    assert_eq!(c.json["status"], "canceled");

    let missing = api
        .post("/v1/payment_intents/pi_missing/cancel", &[], None)
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json["error"]["code"], "resource_missing");
    assert_eq!(api.stats().await["canceled"], 2);
}

#[tokio::test]
async fn webhooks_are_retried_until_the_receiver_answers_2xx() {
    // The first 3 requests get a 500.
    let receiver = Receiver::start(3).await;
    let (_sandbox, api) = start(&receiver).await; // retry_base_ms = 20

    let pi = api.charge("pm_card_visa", "res-retry", None).await.json;
    let id = pi["id"].as_str().unwrap();
    let deliveries = receiver.wait_for(5, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.deliveries().len(),
        5,
        "3 failures + 2 successes, no more"
    );
    assert_eq!(deliveries.iter().filter(|d| d.answered == 500).count(), 3);

    let events = api.events(id).await;
    let attempts: u64 = events.iter().map(|e| e["attempts"].as_u64().unwrap()).sum();
    assert_eq!(attempts, 5);
    for event in &events {
        assert_eq!(event["delivered"], 1, "{event}");
        assert_eq!(event["last_status"], 200);
    }
    let stats = api.stats().await;
    assert_eq!(stats["deliveries_failed"], 3);
    assert_eq!(stats["deliveries_ok"], 2);

    // Every attempt is signed afresh and verifies.
    for d in &deliveries {
        verify_signature(&d.signature, &d.body, WEBHOOK_SECRET).unwrap();
    }
}

#[tokio::test]
async fn webhook_retries_back_off_and_give_up_after_max_attempts() {
    let receiver = Receiver::start(u32::MAX).await; // always 500
    let sandbox = Sandbox::start(SandboxConfig {
        max_delivery_attempts: 4,
        retry_base_ms: 40,
        ..config(Some(receiver.url()))
    })
    .await
    .unwrap();
    let api = Api::new(&sandbox);
    let pi = api.charge("pm_card_visa", "res-giveup", None).await.json;
    let id = pi["id"].as_str().unwrap();

    // 2 events x 4 attempts; backoff 40 + 80 + 160 ms (+ up to 20%).
    let deliveries = receiver.wait_for(8, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.deliveries().len(),
        8,
        "gives up after 4 attempts each"
    );

    let mut by_event: HashMap<String, Vec<Instant>> = HashMap::new();
    for d in &deliveries {
        by_event
            .entry(d.event_id().to_owned())
            .or_default()
            .push(d.at);
    }
    assert_eq!(by_event.len(), 2);
    for times in by_event.values() {
        assert_eq!(times.len(), 4);
        for (n, pair) in times.windows(2).enumerate() {
            let gap = pair[1].duration_since(pair[0]);
            let base = Duration::from_millis(40 << n);
            assert!(gap >= base, "gap {n} = {gap:?} < {base:?}");
        }
    }
    for event in api.events(id).await {
        assert_eq!(event["attempts"], 4);
        assert_eq!(event["delivered"], 0);
        assert_eq!(event["last_status"], 500);
    }
}

#[tokio::test]
async fn duplicate_switch_delivers_every_event_twice() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;
    let state = api.switches(json!({"duplicate_webhooks": true})).await;
    assert_eq!(state["duplicate_webhooks"], true);

    api.charge("pm_card_visa", "res-dup", None).await;
    let deliveries = receiver.wait_for(4, WAIT).await;
    let mut by_event: HashMap<String, Vec<Instant>> = HashMap::new();
    for d in &deliveries {
        by_event
            .entry(d.event_id().to_owned())
            .or_default()
            .push(d.at);
    }
    assert_eq!(by_event.len(), 2);
    for times in by_event.values() {
        assert_eq!(times.len(), 2, "each event twice");
        let gap = times[1].duration_since(times[0]);
        assert!(
            gap >= Duration::from_millis(80),
            "copy ~100 ms later, got {gap:?}"
        );
    }
}

#[tokio::test]
async fn reorder_switch_holds_events_and_delivers_newest_first() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;
    api.switches(json!({"reorder_webhooks": true, "reorder_window_ms": 300}))
        .await;

    let started = Instant::now();
    let mut ids = Vec::new();
    for n in 0..3 {
        let pi = api
            .charge("pm_card_visa", &format!("res-reorder-{n}"), None)
            .await
            .json;
        ids.push(pi["id"].as_str().unwrap().to_owned());
    }
    let deliveries = receiver.wait_for(6, WAIT).await;
    assert!(
        deliveries[0].at.duration_since(started) >= Duration::from_millis(300),
        "held for the window"
    );
    let all = api.admin_get("/_sandbox/events").await;
    let created: Vec<String> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let mut newest_first = created.clone();
    newest_first.reverse();
    let arrived: Vec<String> = deliveries.iter().map(|d| d.event_id().to_owned()).collect();
    assert_eq!(arrived, newest_first);
}

#[tokio::test]
async fn delay_switch_postpones_the_first_attempt() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;
    api.switches(json!({"webhook_delay_ms": 400})).await;

    let started = Instant::now();
    api.charge("pm_card_visa", "res-delay", None).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(receiver.deliveries().is_empty(), "nothing before the delay");
    let deliveries = receiver.wait_for(2, WAIT).await;
    for d in &deliveries {
        assert!(d.at.duration_since(started) >= Duration::from_millis(400));
    }
}

#[tokio::test]
async fn drop_switch_records_events_without_delivering_and_resend_delivers_late() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;
    api.switches(json!({"drop_webhooks": true})).await;

    let pi = api.charge("pm_card_visa", "res-drop", None).await.json;
    let id = pi["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.deliveries().is_empty());
    let events = api.events(id).await;
    assert_eq!(events.len(), 2);
    for event in &events {
        assert_eq!(event["dropped"], true);
        assert_eq!(event["attempts"], 0);
    }

    // The late delivery a test drives by hand (twice: a duplicate).
    let succeeded = events
        .iter()
        .find(|e| e["type"] == "payment_intent.succeeded")
        .unwrap();
    let event_id = succeeded["id"].as_str().unwrap();
    for _ in 0..2 {
        let resent = api
            .send(
                hyper::Method::POST,
                &format!("/_sandbox/events/{event_id}/resend"),
                "application/json",
                Vec::new(),
                &[],
            )
            .await;
        assert_eq!(resent.status, 200);
        assert_eq!(resent.json["delivered"], true);
        assert_eq!(resent.json["status"], 200);
    }
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d.event_id() == event_id));
    verify_signature(
        &deliveries[0].signature,
        &deliveries[0].body,
        WEBHOOK_SECRET,
    )
    .unwrap();
    let view = api.admin_get(&format!("/_sandbox/events/{event_id}")).await;
    assert_eq!(view["delivered"], 2);

    let missing = api
        .send(
            hyper::Method::POST,
            "/_sandbox/events/evt_nope/resend",
            "application/json",
            Vec::new(),
            &[],
        )
        .await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn outage_switch_answers_503_and_creates_nothing() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;
    api.switches(json!({"outage": true})).await;

    let down = api
        .charge("pm_card_visa", "res-outage", Some("outage-1"))
        .await;
    assert_eq!(down.status, 503);
    assert_eq!(down.json["error"]["type"], "api_error");
    assert!(down.json["error"]["message"].is_string());
    let get = api.get("/v1/payment_intents/pi_x").await;
    assert_eq!(get.status, 503);
    let listed = api.admin_get("/_sandbox/payment_intents").await;
    assert!(listed["data"].as_array().unwrap().is_empty());
    let stats = api.stats().await;
    assert_eq!(stats["payment_intents"], 0);
    assert_eq!(stats["outage_rejections"], 2);
    assert_eq!(stats["api_calls"], 2);

    // Back up: the same idempotency key executes (503s are not stored).
    api.switches(json!({"outage": false})).await;
    let up = api
        .charge("pm_card_visa", "res-outage", Some("outage-1"))
        .await;
    assert_eq!(up.status, 200, "{:?}", up.json);
    assert_eq!(up.header("idempotent-replayed"), None);
    receiver.wait_for(2, WAIT).await;
}

#[tokio::test]
async fn latency_slow_ms_and_webhook_url_switches_apply_at_runtime() {
    let first = Receiver::start(0).await;
    let second = Receiver::start(0).await;
    let (_sandbox, api) = start(&first).await;

    let state = api
        .switches(json!({"latency_ms": [150, 150], "slow_ms": 50, "webhook_url": second.url()}))
        .await;
    assert_eq!(state["latency_ms"], json!([150, 150]));
    assert_eq!(state["slow_ms"], 50);
    assert_eq!(state["webhook_url"], second.url());
    assert_eq!(api.admin_get("/_sandbox/switches").await, state);

    let started = Instant::now();
    let reply = api.charge("pm_card_sandbox_slow", "res-switch", None).await;
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "latency applied"
    );
    assert_eq!(reply.json["status"], "processing");
    // processing + charge.succeeded + payment_intent.succeeded, all to the new URL.
    second.wait_for(3, WAIT).await;
    assert!(first.deliveries().is_empty());

    // Bad switch values are refused and change nothing.
    let bad = api
        .send(
            hyper::Method::POST,
            "/_sandbox/switches",
            "application/json",
            br#"{"outage": true, "no_such_switch": 1}"#.to_vec(),
            &[],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(api.admin_get("/_sandbox/switches").await["outage"], false);
}

#[tokio::test]
async fn wrong_or_missing_api_key_is_401() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;

    let wrong = api
        .with_key("sk_test_wrong")
        .charge("pm_card_visa", "res-auth", None)
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.json,
        json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}})
    );
    let none = api
        .send(
            hyper::Method::GET,
            "/v1/payment_intents/pi_x",
            "text/plain",
            Vec::new(),
            &[],
        )
        .await;
    assert_eq!(none.status, 401);
    // HTTP Basic with the key as user name is accepted, as by Stripe.
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"))
    );
    let ok = api
        .send(
            hyper::Method::GET,
            "/v1/payment_intents/pi_x",
            "text/plain",
            Vec::new(),
            &[("authorization", &basic)],
        )
        .await;
    assert_eq!(ok.status, 404, "authenticated, unknown intent");
    assert_eq!(ok.json["error"]["code"], "resource_missing");

    let stats = api.stats().await;
    assert_eq!(stats["auth_failures"], 2);
    assert_eq!(stats["payment_intents"], 0);
}

#[tokio::test]
async fn invalid_requests_get_stripe_errors() {
    let receiver = Receiver::start(0).await;
    let (_sandbox, api) = start(&receiver).await;
    let create = |params: Vec<(&'static str, &'static str)>| {
        let api = &api;
        async move { api.post("/v1/payment_intents", &params, None).await }
    };

    // (params, expected code, expected param)
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
            "parameter_missing",
            Some("amount"),
        ),
        (
            vec![("amount", "abc"), ("currency", "usd")],
            "parameter_invalid_integer",
            Some("amount"),
        ),
        (
            vec![("amount", "0"), ("currency", "usd")],
            "parameter_invalid_integer",
            Some("amount"),
        ),
        (
            vec![("amount", "100")],
            "parameter_missing",
            Some("currency"),
        ),
        (
            vec![
                ("amount", "100"),
                ("currency", "usd"),
                ("payment_method", "pm_card_nope"),
                ("confirm", "true"),
            ],
            "resource_missing",
            Some("payment_method"),
        ),
        (
            vec![("amount", "100"), ("currency", "usd"), ("amuont", "1")],
            "parameter_unknown",
            Some("amuont"),
        ),
    ];
    for (params, code, param) in cases {
        let reply = create(params.clone()).await;
        assert_eq!(reply.status, 400, "{params:?}: {:?}", reply.json);
        assert_eq!(reply.json["error"]["type"], "invalid_request_error");
        assert_eq!(reply.json["error"]["code"], code, "{params:?}");
        assert_eq!(reply.json["error"]["param"].as_str(), param, "{params:?}");
    }
    let bad_currency = create(vec![("amount", "100"), ("currency", "dollars")]).await;
    assert_eq!(bad_currency.status, 400);
    assert_eq!(bad_currency.json["error"]["param"], "currency");

    let missing = api.get("/v1/payment_intents/pi_missing").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json["error"]["code"], "resource_missing");
    let unknown_route = api.get("/v1/customers").await;
    assert_eq!(unknown_route.status, 404);
    assert_eq!(unknown_route.json["error"]["type"], "invalid_request_error");
    assert_eq!(api.stats().await["payment_intents"], 0);
}

#[tokio::test]
async fn refuses_a_non_loopback_listen_address() {
    let error = Sandbox::start(SandboxConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..SandboxConfig::default()
    })
    .await
    .err()
    .expect("0.0.0.0 is refused");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let bad_url = Sandbox::start(config(Some("https://example.com/hook".into())))
        .await
        .err()
        .expect("https webhook url is refused");
    assert_eq!(bad_url.kind(), std::io::ErrorKind::InvalidInput);
    let defaults = SandboxConfig::default();
    assert_eq!(defaults.listen.to_string(), "127.0.0.1:12111");
    assert_eq!(defaults.latency_ms, (500, 2000));
    assert_eq!(defaults.secret_key, "sk_test_sandbox");
    assert_eq!(defaults.webhook_secret, "whsec_sandbox");
}

#[tokio::test]
async fn drop_stops_the_server_and_pending_deliveries() {
    let receiver = Receiver::start(0).await;
    let (sandbox, api) = start(&receiver).await;
    api.switches(json!({"webhook_delay_ms": 200})).await;
    api.charge("pm_card_visa", "res-drop-sandbox", None).await;
    let addr = sandbox.addr;
    drop(sandbox);

    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        receiver.deliveries().is_empty(),
        "pending deliveries were aborted"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}
