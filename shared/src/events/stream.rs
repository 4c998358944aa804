//! Turning DynamoDB stream records of the reservations table into events, and the batch
//! handler with partial-failure reporting.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{EventSink, EventType, ReservationEvent};
use crate::reservation::item::attr;
use crate::reservation::ReservationStatus;

/// The parts of a DynamoDB stream event this handler reads.
#[derive(Debug, Deserialize)]
pub struct StreamEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamRecord>,
}

#[derive(Debug, Deserialize)]
pub struct StreamRecord {
    #[serde(rename = "eventName")]
    pub event_name: String,
    pub dynamodb: StreamChange,
}

#[derive(Debug, Deserialize)]
pub struct StreamChange {
    #[serde(rename = "SequenceNumber")]
    pub sequence_number: String,
    #[serde(rename = "NewImage", default)]
    pub new_image: Option<serde_json::Map<String, Value>>,
    #[serde(rename = "OldImage", default)]
    pub old_image: Option<serde_json::Map<String, Value>>,
}

/// `{"batchItemFailures": [{"itemIdentifier": "<sequence number>"}]}`: the stream retries from
/// the first failed record (the ones before it count as done).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<ItemFailure>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

fn attr_s<'a>(image: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a str> {
    image.get(name)?.get("S")?.as_str()
}

fn attr_n(image: &serde_json::Map<String, Value>, name: &str) -> Option<u32> {
    image.get(name)?.get("N")?.as_str()?.parse().ok()
}

fn status_of(image: Option<&serde_json::Map<String, Value>>) -> Option<ReservationStatus> {
    ReservationStatus::parse(attr_s(image?, attr::STATUS)?)
}

/// The event a change produces: a new reservation, or a status change (PENDING -> EXPIRED is
/// `ReservationExpired`). Other changes (and TTL deletions) produce none, and neither does a
/// record inserted already finished: that is the hold reconciler's record of an orphan hold
/// (a reserve that died before answering), which no buyer ever saw.
pub fn event_of(record: &StreamRecord) -> Option<ReservationEvent> {
    let new = record.dynamodb.new_image.as_ref()?;
    let status = status_of(Some(new))?;
    match record.event_name.as_str() {
        "INSERT" if status == ReservationStatus::Pending => {}
        "MODIFY" if status_of(record.dynamodb.old_image.as_ref()) != Some(status) => {}
        _ => return None,
    }
    let reservation_id = attr_s(new, attr::RESERVATION_ID)?.to_owned();
    Some(ReservationEvent {
        event_id: format!("{reservation_id}:{}", status.as_str()),
        event_type: EventType::for_status(status),
        reservation_id,
        sale_id: attr_s(new, attr::SALE_ID)?.to_owned(),
        user_id: attr_s(new, attr::USER_ID)?.to_owned(),
        quantity: attr_n(new, attr::QUANTITY)?,
        status,
        email: attr_s(new, attr::EMAIL).map(str::to_owned),
        amount_minor: new
            .get(attr::AMOUNT_MINOR)
            .and_then(|v| v.get("N")?.as_str()?.parse().ok()),
        currency: attr_s(new, attr::CURRENCY).map(str::to_owned),
        failure_reason: attr_s(new, attr::FAILURE_REASON).map(str::to_owned),
    })
}

/// Publishes the batch's events in order, in chunks of `chunk`. On a failure, reports the
/// first record not published, so the stream retries from there and nothing is skipped.
pub async fn publish<E: EventSink>(sink: &E, event: StreamEvent, chunk: usize) -> BatchResponse {
    let pending: Vec<(String, ReservationEvent)> = event
        .records
        .iter()
        .filter_map(|r| event_of(r).map(|e| (r.dynamodb.sequence_number.clone(), e)))
        .collect();
    for group in pending.chunks(chunk.max(1)) {
        let events: Vec<ReservationEvent> = group.iter().map(|(_, e)| e.clone()).collect();
        let accepted = match sink.send(&events).await {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(%error, "publishing events failed; the stream will retry");
                0
            }
        };
        if accepted < group.len() {
            return BatchResponse {
                batch_item_failures: vec![ItemFailure {
                    item_identifier: group[accepted].0.clone(),
                }],
            };
        }
    }
    BatchResponse::default()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::events::SinkError;

    fn image(id: &str, status: &str) -> Value {
        serde_json::json!({
            "reservation_id": {"S": id}, "sale_id": {"S": "drop"}, "user_id": {"S": "u1"},
            "quantity": {"N": "1"}, "status": {"S": status}
        })
    }

    fn record(seq: &str, name: &str, old: Option<Value>, new: Option<Value>) -> Value {
        serde_json::json!({"eventName": name, "dynamodb": {"SequenceNumber": seq, "OldImage": old, "NewImage": new}})
    }

    /// Accepts `budget` events, then fails.
    struct Flaky {
        budget: Mutex<usize>,
        sent: Mutex<Vec<ReservationEvent>>,
    }

    impl EventSink for Flaky {
        async fn send(&self, events: &[ReservationEvent]) -> Result<usize, SinkError> {
            let mut budget = self.budget.lock().unwrap();
            let n = events.len().min(*budget);
            *budget -= n;
            self.sent.lock().unwrap().extend_from_slice(&events[..n]);
            if n == 0 {
                Err(SinkError::Unavailable("down".into()))
            } else {
                Ok(n)
            }
        }
    }

    fn batch(records: Vec<Value>) -> StreamEvent {
        serde_json::from_value(serde_json::json!({ "Records": records })).unwrap()
    }

    #[test]
    fn an_event_carries_what_a_notification_needs_when_the_record_has_it() {
        let mut failed = image("r9", "FAILED");
        failed["email"] = serde_json::json!({"S": "ann@buyers.flashsale.test"});
        failed["amount_minor"] = serde_json::json!({"N": "4999"});
        failed["currency"] = serde_json::json!({"S": "EUR"});
        failed["failure_reason"] = serde_json::json!({"S": "card_declined"});
        let change = record(
            "3",
            "MODIFY",
            Some(image("r9", "PAYMENT_PROCESSING")),
            Some(failed),
        );
        let e = event_of(&serde_json::from_value(change).unwrap()).unwrap();
        assert_eq!(e.event_type, EventType::ReservationFailed);
        assert_eq!(e.email.as_deref(), Some("ann@buyers.flashsale.test"));
        assert_eq!(
            (e.amount_minor, e.currency.as_deref()),
            (Some(4999), Some("EUR"))
        );
        assert_eq!(e.failure_reason.as_deref(), Some("card_declined"));
        let wire = serde_json::to_value(&e).unwrap();
        assert_eq!(wire["email"], "ann@buyers.flashsale.test");
        // A record without them: the members are left out, not null.
        let plain = record("4", "INSERT", None, Some(image("r8", "PENDING")));
        let wire = serde_json::to_value(event_of(&serde_json::from_value(plain).unwrap()).unwrap())
            .unwrap();
        assert!(wire.get("email").is_none() && wire.get("failure_reason").is_none());
    }

    #[test]
    fn inserts_and_status_changes_are_events_other_changes_are_not() {
        let created = record("1", "INSERT", None, Some(image("r1", "PENDING")));
        let e = event_of(&serde_json::from_value(created).unwrap()).unwrap();
        assert_eq!(
            (e.event_type, e.event_id.as_str()),
            (EventType::ReservationCreated, "r1:PENDING")
        );
        let expired = record(
            "2",
            "MODIFY",
            Some(image("r1", "PENDING")),
            Some(image("r1", "EXPIRED")),
        );
        assert_eq!(
            event_of(&serde_json::from_value(expired).unwrap())
                .unwrap()
                .event_type,
            EventType::ReservationExpired
        );
        let same = record(
            "3",
            "MODIFY",
            Some(image("r1", "PENDING")),
            Some(image("r1", "PENDING")),
        );
        assert!(event_of(&serde_json::from_value(same).unwrap()).is_none());
        let removed = record("4", "REMOVE", Some(image("r1", "EXPIRED")), None);
        assert!(event_of(&serde_json::from_value(removed).unwrap()).is_none());
    }

    #[test]
    fn an_orphan_record_inserted_already_expired_is_not_an_event() {
        let orphan = record("5", "INSERT", None, Some(image("r9", "EXPIRED")));
        assert!(event_of(&serde_json::from_value(orphan).unwrap()).is_none());
        // ...but a reservation that expires later is.
        let expired = record(
            "6",
            "MODIFY",
            Some(image("r9", "PENDING")),
            Some(image("r9", "EXPIRED")),
        );
        let event = event_of(&serde_json::from_value(expired).unwrap()).unwrap();
        assert_eq!(event.event_type, EventType::ReservationExpired);
        assert_eq!(event.event_id, "r9:EXPIRED");
    }

    #[tokio::test]
    async fn when_the_queue_fails_midway_the_first_unsent_record_is_reported_for_retry() {
        let sink = Flaky {
            budget: Mutex::new(3),
            sent: Mutex::new(vec![]),
        };
        let records = (1..=5)
            .map(|i| {
                record(
                    &i.to_string(),
                    "INSERT",
                    None,
                    Some(image(&format!("r{i}"), "PENDING")),
                )
            })
            .collect();
        let response = publish(&sink, batch(records), 2).await;
        assert_eq!(
            response.batch_item_failures,
            vec![ItemFailure {
                item_identifier: "4".into()
            }]
        );
        assert_eq!(sink.sent.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_fully_published_batch_reports_no_failures() {
        let sink = Flaky {
            budget: Mutex::new(100),
            sent: Mutex::new(vec![]),
        };
        let records = (1..=25)
            .map(|i| {
                record(
                    &i.to_string(),
                    "INSERT",
                    None,
                    Some(image(&format!("r{i}"), "PENDING")),
                )
            })
            .collect();
        assert_eq!(
            publish(&sink, batch(records), 10).await,
            BatchResponse::default()
        );
        assert_eq!(sink.sent.lock().unwrap().len(), 25);
    }
}
