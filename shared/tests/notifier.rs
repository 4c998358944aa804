//! The notifier's logic with in-memory ports (fast): each end of a reservation reaches the
//! buyer once per channel, also when its message is delivered twice, when a delivery died
//! after claiming, or when a provider fails for a while; poison never blocks the batch. The
//! SES, SNS and DynamoDB adapters run in the end-to-end tests on LocalStack.

use std::time::Duration;

use flashsale_core::domain::{ManualClock, Timestamp, UserId};
use flashsale_core::notify::consumer::{Notifier, SqsBatch};
use flashsale_core::notify::devices::Devices;
use flashsale_core::notify::memory::{
    MemoryDevices, MemoryNotificationLog, RecordingMailer, RecordingPusher,
};
use flashsale_core::notify::{NotificationLog, SendError, LEASE};
use serde_json::json;

type Subject =
    Notifier<MemoryNotificationLog, RecordingMailer, RecordingPusher, MemoryDevices, ManualClock>;

fn notifier() -> Subject {
    Notifier {
        log: MemoryNotificationLog::default(),
        mailer: RecordingMailer::default(),
        pusher: RecordingPusher::default(),
        devices: MemoryDevices::default(),
        clock: ManualClock::at(Timestamp::from_millis(1_800_000_000_000)),
    }
}

fn event(id: &str, kind: &str, status: &str, user: &str) -> String {
    json!({
        "event_id": format!("{id}:{status}"), "event_type": kind, "reservation_id": id,
        "sale_id": "drop", "user_id": user, "quantity": 1, "status": status,
        "email": format!("{user}@example.com"), "amount_minor": 2500, "currency": "EUR",
        "failure_reason": "PaymentDeclined"
    })
    .to_string()
}

fn batch(bodies: &[String]) -> SqsBatch {
    let records: Vec<_> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| json!({"messageId": format!("m{i}"), "body": b, "attributes": {"SentTimestamp": "1799999999000"}}))
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn failed_ids(response: &flashsale_core::events::stream::BatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

#[tokio::test]
async fn each_end_of_a_reservation_is_one_email_and_one_push_per_device() {
    let n = notifier();
    let ann = UserId::parse("ann").unwrap();
    n.devices.add(&ann, "arn:endpoint/ann-phone").await.unwrap();
    let response = n
        .handle_batch(batch(&[
            event("r1", "ReservationConfirmed", "CONFIRMED", "ann"),
            event("r2", "ReservationFailed", "FAILED", "bob"),
            event("r3", "ReservationExpired", "EXPIRED", "cat"),
            // Not told: a new reservation, and the saga's own message about r1.
            event("r4", "ReservationCreated", "PENDING", "dan"),
            json!({"event_id": "r1:ORDER_CONFIRMED", "event_type": "OrderConfirmed", "reservation_id": "r1"}).to_string(),
        ]))
        .await;
    assert!(failed_ids(&response).is_empty());
    let sent = n.mailer.sent.lock().unwrap().clone();
    let to: Vec<&str> = sent.iter().map(|e| e.to.as_str()).collect();
    assert_eq!(
        to,
        ["ann@example.com", "bob@example.com", "cat@example.com"]
    );
    assert_eq!(sent[0].subject, "Your order is confirmed");
    assert!(sent[1].text.contains("declined"));
    assert!(sent[2].text.contains("went back on sale"));
    let pushed = n.pusher.pushed.lock().unwrap().clone();
    assert_eq!(pushed.len(), 1, "only ann has a device");
    assert_eq!(pushed[0].0, "arn:endpoint/ann-phone");
}

#[tokio::test]
async fn a_message_delivered_twice_sends_once() {
    let n = notifier();
    let body = event("r1", "ReservationExpired", "EXPIRED", "ann");
    n.handle_batch(batch(&[body.clone()])).await;
    // The same message again (SQS delivers at least once), and in the same batch twice.
    let response = n.handle_batch(batch(&[body.clone(), body])).await;
    assert!(failed_ids(&response).is_empty());
    assert_eq!(n.mailer.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_delivery_that_died_after_claiming_is_sent_once_its_lease_ran_out() {
    let n = notifier();
    // Another notifier claimed the email and died before sending.
    let now = flashsale_core::domain::Clock::now(&n.clock);
    n.log
        .claim("r1:EXPIRED#email", "dead-notifier", now, LEASE)
        .await
        .unwrap();
    let body = event("r1", "ReservationExpired", "EXPIRED", "ann");
    // While its lease lives, the message is delivered again later (not sent, not dropped).
    let response = n.handle_batch(batch(&[body.clone()])).await;
    assert_eq!(failed_ids(&response), ["m0"]);
    assert!(n.mailer.sent.lock().unwrap().is_empty());
    // Once it ran out, the redelivery sends, once.
    n.clock.advance(LEASE + Duration::from_secs(1));
    let response = n.handle_batch(batch(&[body.clone()])).await;
    assert!(failed_ids(&response).is_empty());
    n.handle_batch(batch(&[body])).await;
    assert_eq!(n.mailer.sent.lock().unwrap().len(), 1);
    assert!(n.log.is_sent("r1:EXPIRED#email"));
}

#[tokio::test]
async fn a_notification_handed_to_the_provider_is_never_sent_again_whatever_happens_after() {
    let n = notifier();
    let now = flashsale_core::domain::Clock::now(&n.clock);
    // A notifier claimed the email, marked it attempted (called SES) and died before the mark.
    n.log
        .claim("r1:EXPIRED#email", "dead-notifier", now, LEASE)
        .await
        .unwrap();
    assert!(n
        .log
        .attempt("r1:EXPIRED#email", "dead-notifier")
        .await
        .unwrap());
    n.clock.advance(LEASE * 3);
    let body = event("r1", "ReservationExpired", "EXPIRED", "ann");
    let response = n.handle_batch(batch(&[body])).await;
    assert!(failed_ids(&response).is_empty(), "acknowledged");
    assert!(
        n.mailer.sent.lock().unwrap().is_empty(),
        "SES may have it: not sent again"
    );

    // A send whose outcome is unknown (a timeout) is given up, not retried: at most once.
    n.mailer
        .failures
        .lock()
        .unwrap()
        .push(SendError::Unknown("timeout".into()));
    let unknown = event("r2", "ReservationExpired", "EXPIRED", "bob");
    assert!(failed_ids(&n.handle_batch(batch(&[unknown.clone()])).await).is_empty());
    assert!(n.log.gave_up("r2:EXPIRED#email"));
    n.clock.advance(LEASE * 3);
    n.handle_batch(batch(&[unknown])).await;
    assert!(n.mailer.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_provider_failing_for_a_while_is_retried_and_one_refusing_for_good_is_given_up() {
    let n = notifier();
    n.mailer
        .failures
        .lock()
        .unwrap()
        .push(SendError::Transient("throttled".into()));
    let body = event("r1", "ReservationConfirmed", "CONFIRMED", "ann");
    assert_eq!(
        failed_ids(&n.handle_batch(batch(&[body.clone()])).await),
        ["m0"]
    );
    // Refused before SES took it: the claim is released, the next delivery sends at once.
    assert!(failed_ids(&n.handle_batch(batch(&[body])).await).is_empty());
    assert_eq!(n.mailer.sent.lock().unwrap().len(), 1);

    n.mailer
        .failures
        .lock()
        .unwrap()
        .push(SendError::Permanent("MessageRejected".into()));
    let rejected = event("r2", "ReservationConfirmed", "CONFIRMED", "bob");
    assert!(
        failed_ids(&n.handle_batch(batch(&[rejected.clone()])).await).is_empty(),
        "a refused address is not retried"
    );
    assert!(n.log.gave_up("r2:CONFIRMED#email"));
    n.handle_batch(batch(&[rejected])).await;
    assert_eq!(
        n.mailer.sent.lock().unwrap().len(),
        1,
        "and never sent later"
    );
}

#[tokio::test]
async fn the_lag_counts_first_deliveries_only() {
    // A redelivered message keeps its sent time: it must not read as a backlog. (The lag is
    // an EMF line on stdout; here only that a redelivery is handled like any message.)
    let n = notifier();
    let body = event("r1", "ReservationExpired", "EXPIRED", "ann");
    let redelivered: SqsBatch = serde_json::from_value(json!({"Records": [
        {"messageId": "m0", "body": body, "attributes": {"SentTimestamp": "1", "ApproximateReceiveCount": "4"}}
    ]}))
    .unwrap();
    assert!(failed_ids(&n.handle_batch(redelivered).await).is_empty());
    assert_eq!(n.mailer.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_event_without_a_valid_user_id_is_emailed_and_acknowledged() {
    let n = notifier();
    let body = event("r1", "ReservationExpired", "EXPIRED", "ann")
        .replace("\"user_id\":\"ann\"", "\"user_id\":\"\"");
    assert!(body.contains("\"user_id\":\"\""));
    assert!(failed_ids(&n.handle_batch(batch(&[body])).await).is_empty());
    assert_eq!(n.mailer.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn poison_fails_alone_and_the_rest_of_the_batch_is_sent() {
    let n = notifier();
    let response = n
        .handle_batch(batch(&[
            "not json".to_string(),
            json!({"no": "event type"}).to_string(),
            json!({"event_type": "ReservationConfirmed", "event_id": "x"}).to_string(),
            event("r1", "ReservationConfirmed", "CONFIRMED", "ann"),
        ]))
        .await;
    assert_eq!(failed_ids(&response), ["m0", "m1", "m2"]);
    assert_eq!(n.mailer.sent.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_push_that_reached_one_device_is_not_sent_to_it_again_when_another_is_retried() {
    let n = notifier();
    let ann = UserId::parse("ann").unwrap();
    n.devices.add(&ann, "arn:endpoint/phone").await.unwrap();
    n.devices.add(&ann, "arn:endpoint/tablet").await.unwrap();
    // One of the two pushes fails for now.
    n.pusher
        .failures
        .lock()
        .unwrap()
        .push(SendError::Transient("5xx".into()));
    let body = event("r1", "ReservationExpired", "EXPIRED", "ann");
    assert_eq!(
        failed_ids(&n.handle_batch(batch(&[body.clone()])).await),
        ["m0"]
    );
    assert!(failed_ids(&n.handle_batch(batch(&[body])).await).is_empty());
    let mut endpoints: Vec<String> = n
        .pusher
        .pushed
        .lock()
        .unwrap()
        .iter()
        .map(|(e, _)| e.clone())
        .collect();
    endpoints.sort();
    assert_eq!(endpoints, ["arn:endpoint/phone", "arn:endpoint/tablet"]);
    assert_eq!(
        n.mailer.sent.lock().unwrap().len(),
        1,
        "the email went once"
    );
}
