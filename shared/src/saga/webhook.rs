//! Webhook intake (product flow 4): verify the provider's signature over the raw body, de-duplicate
//! by event id, resume the waiting saga, answer 2xx fast.
//!
//! Delivery is at least once and in any order, so every branch is idempotent: resuming a task
//! that already ended counts as handled, a refund uses one idempotency key per charge, and the
//! event-id record only short-cuts redeliveries of events that were completely handled. An event
//! that cannot be handled yet (the saga is between two steps) gets a 503: the provider
//! redelivers it later.

use std::future::Future;
use std::time::Duration;

use serde_json::json;

use super::control::{Resumed, SagaControl};
use super::error_types;
use super::records::CheckoutRecords;
use super::refund_idempotency_key;
use crate::domain::{Clock, Timestamp};
use crate::payment::event::{PaymentEvent, PaymentEventKind};
use crate::payment::signature::{self, SignatureError, WebhookSecret};
use crate::payment::{PaymentIntentId, PaymentProvider};
use crate::reservation::ReservationStatus;

/// How long a processed event id is remembered: longer than Stripe's 3 days of redeliveries.
pub const EVENT_RETENTION: Duration = Duration::from_secs(4 * 24 * 3600);
/// Stripe's default tolerance for the signature timestamp.
pub const SIGNATURE_TOLERANCE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First delivery of this event id.
    New,
    /// Seen before but not completely handled (a crash, or a 503): handle it again.
    Unfinished,
    /// Completely handled before: a duplicate.
    Done,
}

#[derive(Debug, thiserror::Error)]
#[error("webhook event log unavailable: {0}")]
pub struct EventLogError(pub String);

/// The port of the processed-event record (DynamoDB table `webhook-events`, TTL'd).
pub trait WebhookEventLog: Send + Sync {
    fn claim(
        &self,
        event_id: &str,
        event_type: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<Claim, EventLogError>> + Send;

    fn complete(
        &self,
        event_id: &str,
        outcome: &str,
    ) -> impl Future<Output = Result<(), EventLogError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// Handled now; the text says how (for logs and the response body).
    Handled(&'static str),
    Duplicate,
    /// An event type or object this intake does not act on: acknowledged.
    Ignored(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("malformed event: {0}")]
    Malformed(String),
    /// Cannot be handled right now; the provider should redeliver (503).
    #[error("retry later: {0}")]
    RetryLater(String),
}

pub struct WebhookService<L, R, G, P, K> {
    pub events: L,
    pub records: R,
    pub saga: G,
    /// The bare provider (no circuit breaker): refunds of late charges must go through.
    pub refunds: P,
    pub clock: K,
    pub secrets: Vec<WebhookSecret>,
}

impl<L, R, G, P, K> WebhookService<L, R, G, P, K>
where
    L: WebhookEventLog,
    R: CheckoutRecords,
    G: SagaControl,
    P: PaymentProvider,
    K: Clock,
{
    pub async fn receive(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookOutcome, WebhookError> {
        let header = signature_header.ok_or(SignatureError::Malformed)?;
        signature::verify(
            header,
            body,
            &self.secrets,
            self.clock.now().as_secs(),
            SIGNATURE_TOLERANCE,
        )?;
        let event = PaymentEvent::parse(body).map_err(WebhookError::Malformed)?;
        let claim = self
            .events
            .claim(&event.id, &event.type_name, self.clock.now())
            .await
            .map_err(|e| WebhookError::RetryLater(e.to_string()))?;
        if claim == Claim::Done {
            return Ok(WebhookOutcome::Duplicate);
        }
        let outcome = self.handle(&event).await?;
        let label = match &outcome {
            WebhookOutcome::Handled(how) | WebhookOutcome::Ignored(how) => *how,
            WebhookOutcome::Duplicate => "duplicate",
        };
        if let Err(error) = self.events.complete(&event.id, label).await {
            // Handled already; a redelivery will be handled again (idempotently).
            tracing::warn!(%error, event = %event.id, "could not mark the event done");
        }
        Ok(outcome)
    }

    async fn handle(&self, event: &PaymentEvent) -> Result<WebhookOutcome, WebhookError> {
        let Some(kind) = event.kind() else {
            return Ok(WebhookOutcome::Ignored("event type not used"));
        };
        let Some(intent) = event.intent() else {
            return Err(WebhookError::Malformed(
                "data.object is not a payment intent".into(),
            ));
        };
        let Some(reservation_id) = intent.reservation_id else {
            return Ok(WebhookOutcome::Ignored("not a flashsale payment"));
        };
        let retry = |e: String| WebhookError::RetryLater(e);
        let Some(record) = self
            .records
            .get(reservation_id)
            .await
            .map_err(|e| retry(e.to_string()))?
        else {
            return Ok(WebhookOutcome::Ignored("unknown reservation"));
        };
        let status = record.reservation.status;
        let token = record.charge_token.as_deref();
        match (kind, status, token) {
            (PaymentEventKind::Succeeded, ReservationStatus::PaymentProcessing, Some(token)) => {
                let output = json!({
                    "payment_intent_id": intent.id,
                    "amount_received": intent.amount_received,
                });
                match self
                    .saga
                    .succeed(token, &output)
                    .await
                    .map_err(|e| retry(e.to_string()))?
                {
                    Resumed::Resumed => Ok(WebhookOutcome::Handled("saga resumed")),
                    // The task ended (timed out, or a duplicate resumed it): the saga is moving
                    // on. Once it settles, a redelivery either finds CONFIRMED or refunds.
                    Resumed::TaskEnded => Err(retry("the charge task already ended".into())),
                }
            }
            (PaymentEventKind::Succeeded, ReservationStatus::PaymentProcessing, None) => {
                Err(retry("the charge step has not stored its token yet".into()))
            }
            (PaymentEventKind::Succeeded, ReservationStatus::Confirmed, _) => {
                Ok(WebhookOutcome::Handled("already confirmed"))
            }
            (
                PaymentEventKind::Succeeded,
                ReservationStatus::Failed | ReservationStatus::Expired,
                _,
            ) => {
                // The saga compensated before the money arrived: give it back.
                let id = PaymentIntentId::parse(intent.id.as_str())
                    .map_err(|e| WebhookError::Malformed(e.to_string()))?;
                self.refunds
                    .refund(&id, &refund_idempotency_key(&intent.id))
                    .await
                    .map_err(|e| retry(e.to_string()))?;
                Ok(WebhookOutcome::Handled("late charge refunded"))
            }
            (PaymentEventKind::Failed, ReservationStatus::PaymentProcessing, Some(token)) => {
                match self
                    .saga
                    .fail(token, error_types::PAYMENT_DECLINED, &intent.failure)
                    .await
                    .map_err(|e| retry(e.to_string()))?
                {
                    Resumed::Resumed => Ok(WebhookOutcome::Handled("saga told: declined")),
                    // The token belongs to a task that ended (a saga restarted with a new
                    // Charge step): redeliver, so the running one hears of the decline.
                    Resumed::TaskEnded => Err(retry("the charge task already ended".into())),
                }
            }
            (PaymentEventKind::Processing, ReservationStatus::PaymentProcessing, Some(token)) => {
                self.saga
                    .heartbeat(token)
                    .await
                    .map_err(|e| retry(e.to_string()))?;
                Ok(WebhookOutcome::Handled("heartbeat"))
            }
            _ => Ok(WebhookOutcome::Ignored("nothing to do in this state")),
        }
    }
}
