//! The notifier: a batch of the events queue's messages → notifications, with the messages that
//! must be delivered again reported as the batch's item failures (`ReportBatchItemFailures`).
//!
//! Per message: the event (a message that is not one is poison: it fails every delivery and
//! ends on the events DLQ, which has an alarm, never blocking the rest of the batch); its notice
//! ([`super::message::notice`]; other events and the saga's own messages are acknowledged and
//! dropped); then each channel as its own claimed delivery ([`super::NotificationLog`]): the
//! email to the address on the event, a push to each device of the buyer. A channel that fails
//! for now fails the message (it comes again; the channels already sent are not sent twice);
//! one refused for good is given up.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::devices::Devices;
use super::message::{notice, Notice};
use super::{
    Channel, Claim, Email, Finished, Mailer, NotificationLog, Pusher, SendError, LEASE,
    SEND_TIMEOUT,
};
use crate::domain::{Clock, UserId};
use crate::events::stream::{BatchResponse, ItemFailure};
use crate::events::{EventType, ReservationEvent};

/// An SQS event source's batch (only what the notifier reads).
#[derive(Debug, Deserialize)]
pub struct SqsBatch {
    #[serde(rename = "Records", default)]
    pub records: Vec<SqsRecord>,
}

#[derive(Debug, Deserialize)]
pub struct SqsRecord {
    #[serde(rename = "messageId")]
    pub message_id: String,
    #[serde(default)]
    pub body: String,
    /// `SentTimestamp` (ms, as a string) among them: the lag's start.
    #[serde(default)]
    pub attributes: HashMap<String, String>,
}

/// What became of one message.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub sent: u64,
    /// Already sent by an earlier delivery (a duplicate message).
    pub skipped: u64,
    pub gave_up: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("not a reservation event: {0}")]
    Poison(String),
    #[error("another delivery holds {0}")]
    Busy(String),
    #[error("{0}")]
    Transient(String),
}

/// `L` notifications log, `M` mailer, `P` pusher, `D` devices, `K` clock.
pub struct Notifier<L, M, P, D, K> {
    pub log: L,
    pub mailer: M,
    pub pusher: P,
    pub devices: D,
    pub clock: K,
}

/// The three event types a buyer is told about.
fn told(kind: EventType) -> bool {
    matches!(
        kind,
        EventType::ReservationConfirmed
            | EventType::ReservationFailed
            | EventType::ReservationExpired
    )
}

impl<L, M, P, D, K> Notifier<L, M, P, D, K>
where
    L: NotificationLog,
    M: Mailer,
    P: Pusher,
    D: Devices,
    K: Clock,
{
    /// The batch: each message on its own; the ones to deliver again as item failures. Emits
    /// the lag (now minus the oldest message's sent time) and the counts as EMF.
    pub async fn handle_batch(&self, batch: SqsBatch) -> BatchResponse {
        let now = self.clock.now().as_millis();
        // The lag of first deliveries only: a redelivered message keeps its sent time, and
        // would read as a backlog that is not there.
        let oldest = batch
            .records
            .iter()
            .filter(|r| {
                r.attributes
                    .get("ApproximateReceiveCount")
                    .map(String::as_str)
                    == Some("1")
            })
            .filter_map(|r| r.attributes.get("SentTimestamp")?.parse::<i64>().ok())
            .min();
        let outcomes =
            futures::future::join_all(batch.records.iter().map(|r| self.handle(&r.body))).await;
        let mut total = Tally::default();
        let mut failures = Vec::new();
        for (record, outcome) in batch.records.iter().zip(outcomes) {
            match outcome {
                Ok(t) => {
                    total.sent += t.sent;
                    total.skipped += t.skipped;
                    total.gave_up += t.gave_up;
                }
                Err(error) => {
                    match &error {
                        NotifyError::Poison(_) => {
                            tracing::error!(message_id = %record.message_id, %error, "poison message: it ends on the DLQ")
                        }
                        _ => {
                            tracing::warn!(message_id = %record.message_id, %error, "notification not sent yet; the message comes again")
                        }
                    }
                    failures.push(ItemFailure {
                        item_identifier: record.message_id.clone(),
                    });
                }
            }
        }
        crate::metrics::emit_ms(
            "notifier",
            &[
                ("Sent", total.sent),
                ("Duplicate", total.skipped),
                ("GaveUp", total.gave_up),
                ("Retried", failures.len() as u64),
            ],
            &[(
                "LagMs",
                oldest.map(|t| (now - t).max(0) as f64).unwrap_or(0.0),
            )],
        );
        BatchResponse {
            batch_item_failures: failures,
        }
    }

    /// One message.
    pub async fn handle(&self, body: &str) -> Result<Tally, NotifyError> {
        let value: serde_json::Value =
            serde_json::from_str(body).map_err(|e| NotifyError::Poison(e.to_string()))?;
        // The saga's own messages (OrderConfirmed, PaymentFailed) and events the buyer is not
        // told about are acknowledged: the stream's event of the same end notifies.
        let kind = value
            .get("event_type")
            .and_then(|k| serde_json::from_value::<EventType>(k.clone()).ok());
        match kind {
            Some(kind) if told(kind) => {}
            Some(_) => return Ok(Tally::default()),
            None if value.get("event_type").and_then(|k| k.as_str()).is_some() => {
                return Ok(Tally::default())
            }
            None => return Err(NotifyError::Poison("no event_type".into())),
        }
        let event: ReservationEvent =
            serde_json::from_value(value).map_err(|e| NotifyError::Poison(e.to_string()))?;
        let Some(notice) = notice(&event) else {
            return Ok(Tally::default());
        };
        let mut tally = Tally::default();
        let mut transient = None;
        if let Some(to) = &event.email {
            let email = Email {
                to: to.clone(),
                subject: notice.subject.clone(),
                text: notice.text.clone(),
            };
            let id = format!("{}#{}", event.event_id, Channel::Email.as_str());
            match self.deliver(&id, || self.mailer.send(&email)).await {
                Ok(counted) => counted.add_to(&mut tally),
                Err(e) => transient = Some(e),
            }
        }
        // A user id that is not one has no devices: the email (if any) was the notice.
        match UserId::parse(event.user_id.clone()) {
            Ok(user) => match self.push_all(&event, &user, &notice).await {
                Ok(t) => {
                    tally.sent += t.sent;
                    tally.skipped += t.skipped;
                    tally.gave_up += t.gave_up;
                }
                Err(e) => transient = Some(e),
            },
            Err(_) => {
                tracing::warn!(event_id = %event.event_id, "event without a valid user id: no push")
            }
        }
        match transient {
            Some(error) => Err(error),
            None => Ok(tally),
        }
    }

    async fn push_all(
        &self,
        event: &ReservationEvent,
        user: &UserId,
        notice: &Notice,
    ) -> Result<Tally, NotifyError> {
        let endpoints = self
            .devices
            .endpoints_of(user)
            .await
            .map_err(|e| NotifyError::Transient(e.to_string()))?;
        let mut tally = Tally::default();
        let mut transient = None;
        // One claim per device (a push that reached one device is not sent to it again when
        // another device's push is retried); all devices at once, each within SEND_TIMEOUT.
        let pushes = endpoints.iter().map(|endpoint| async move {
            let device = &hex::encode(Sha256::digest(endpoint.as_bytes()))[..16];
            let id = format!("{}#{}#{device}", event.event_id, Channel::Push.as_str());
            self.deliver(&id, || self.pusher.push(endpoint, &notice.push))
                .await
        });
        for outcome in futures::future::join_all(pushes).await {
            match outcome {
                Ok(counted) => counted.add_to(&mut tally),
                Err(e) => transient = Some(e),
            }
        }
        match transient {
            Some(error) => Err(error),
            None => Ok(tally),
        }
    }

    /// Claims `id`, marks it attempted, sends, and finishes the claim (the module doc of
    /// [`super`] says why an attempted notification is never sent again).
    async fn deliver<F, Fut>(&self, id: &str, send: F) -> Result<Counted, NotifyError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), SendError>>,
    {
        let token = uuid::Uuid::now_v7().to_string();
        let claim = self
            .log
            .claim(id, &token, self.clock.now(), LEASE)
            .await
            .map_err(|e| NotifyError::Transient(e.to_string()))?;
        match claim {
            Claim::Done => return Ok(Counted::Duplicate),
            Claim::Busy => return Err(NotifyError::Busy(id.to_owned())),
            Claim::Claimed => {}
        }
        let attempted = self
            .log
            .attempt(id, &token)
            .await
            .map_err(|e| NotifyError::Transient(e.to_string()))?;
        if !attempted {
            // Our lease ran out meanwhile and another delivery holds it now: it sends.
            return Ok(Counted::Duplicate);
        }
        let outcome = match tokio::time::timeout(SEND_TIMEOUT, send()).await {
            Ok(Ok(())) => Finished::Sent,
            Ok(Err(SendError::Permanent(why))) => {
                tracing::warn!(notification_id = id, %why, "notification refused for good: given up");
                Finished::GaveUp(why)
            }
            Ok(Err(SendError::Transient(why))) => {
                // Refused before it was taken: let the next delivery claim it at once.
                if let Err(error) = self.log.release(id, &token).await {
                    tracing::warn!(notification_id = id, %error, "could not release the claim");
                }
                return Err(NotifyError::Transient(why));
            }
            Ok(Err(SendError::Unknown(why))) => {
                tracing::warn!(notification_id = id, %why, "no answer from the provider: not sent again (at most once)");
                Finished::GaveUp(format!("unknown outcome: {why}"))
            }
            Err(_) => {
                tracing::warn!(
                    notification_id = id,
                    "the provider did not answer in time: not sent again (at most once)"
                );
                Finished::GaveUp("unknown outcome: timed out".into())
            }
        };
        let counted = match outcome {
            Finished::Sent => Counted::Sent,
            Finished::GaveUp(_) => Counted::GaveUp,
        };
        if let Err(error) = self.log.finish(id, &token, outcome).await {
            // It stays attempted: never sent again either way.
            tracing::warn!(notification_id = id, %error, "could not record the outcome");
        }
        Ok(counted)
    }
}

#[derive(Debug, Clone, Copy)]
enum Counted {
    Sent,
    Duplicate,
    GaveUp,
}

impl Counted {
    fn add_to(self, tally: &mut Tally) {
        match self {
            Self::Sent => tally.sent += 1,
            Self::Duplicate => tally.skipped += 1,
            Self::GaveUp => tally.gave_up += 1,
        }
    }
}
