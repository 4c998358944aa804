//! Payment intake (product flow 2): the buyer submits a payment method for their PENDING,
//! unexpired reservation; a conditional write moves it to PAYMENT_PROCESSING (which takes it out
//! of the expiry worker's hands) and the saga starts, named after the reservation.
//!
//! Retries: the same Idempotency-Key with the same body answers with the current status (and
//! starts the saga if the first attempt died between the write and the start: the start is
//! idempotent by name). The same key with another payment method is refused (422), like any
//! reused key with a changed body. Another key for a reservation already being paid is a
//! conflict.
//!
//! If the saga cannot be started (the call fails, or its answer is lost), the reservation stays
//! PAYMENT_PROCESSING and the buyer gets 503: a retry with the same key starts it; without a
//! retry, the sweep finds the payment with no running saga and starts one
//! ([`super::recovery`]). Giving the reservation back to PENDING instead would race an
//! execution that did start and leave a saga name that can never be used again.

use serde::Serialize;
use serde_json::json;

use super::control::{SagaControl, Started};
use super::records::{BeginPayment, CheckoutRecord, CheckoutRecords};
use crate::domain::{Clock, IdempotencyKey, ReservationId, UserId};
use crate::reservation::ReservationStatus;

/// A payment method token from the provider's client library (e.g. Stripe's `pm_...`). Only
/// its shape is checked here; the provider decides whether it is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentMethod(String);

impl PaymentMethod {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() || raw.len() > 255 {
            return Err("payment_method must be 1 to 255 characters");
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err("payment_method may contain only letters, digits and '_'");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct PayCommand {
    pub user: UserId,
    pub reservation_id: ReservationId,
    pub payment_key: IdempotencyKey,
    pub payment_method: PaymentMethod,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PayAccepted {
    pub reservation_id: String,
    pub status: ReservationStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// No such reservation, or not the caller's (the two are not told apart).
    #[error("reservation not found")]
    NotFound,
    #[error("reservation expired")]
    Expired,
    #[error("reservation already paid")]
    AlreadyPaid,
    #[error("payment failed: {reason}")]
    PaymentFailed { reason: String },
    /// Another payment request (another Idempotency-Key) is being processed.
    #[error("a payment is already in progress")]
    InProgress,
    /// This Idempotency-Key was used with another payment method.
    #[error("idempotency key reused with a different request")]
    KeyReused,
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
}

/// The saga's input: what the execution needs beyond the reservation record it reads itself.
pub fn saga_input(reservation_id: ReservationId, payment_method: &str) -> serde_json::Value {
    json!({ "reservation_id": reservation_id.to_string(), "payment_method": payment_method })
}

pub struct PayService<R, G, K> {
    pub records: R,
    pub saga: G,
    pub clock: K,
}

impl<R: CheckoutRecords, G: SagaControl, K: Clock> PayService<R, G, K> {
    pub async fn pay(&self, command: &PayCommand) -> Result<PayAccepted, PayError> {
        let record = self.load(command).await?;
        if record.reservation.status == ReservationStatus::Pending {
            let now = self.clock.now();
            if now >= record.reservation.expires_at {
                return Err(PayError::Expired);
            }
            let begun = self
                .records
                .begin_payment(
                    command.reservation_id,
                    &command.user,
                    command.payment_key.as_str(),
                    command.payment_method.as_str(),
                    now,
                )
                .await
                .map_err(|e| PayError::Unavailable(e.to_string()))?;
            if begun == BeginPayment::Started {
                return self.start_saga(command, 1).await;
            }
            // Lost a race (the expiry worker, or a concurrent request): answer from the record.
            let record = self.load(command).await?;
            return self.answer_existing(command, &record).await;
        }
        self.answer_existing(command, &record).await
    }

    async fn load(&self, command: &PayCommand) -> Result<CheckoutRecord, PayError> {
        match self.records.get(command.reservation_id).await {
            Ok(Some(record)) if record.reservation.user_id == command.user => Ok(record),
            Ok(_) => Err(PayError::NotFound),
            Err(e) => Err(PayError::Unavailable(e.to_string())),
        }
    }

    async fn answer_existing(
        &self,
        command: &PayCommand,
        record: &CheckoutRecord,
    ) -> Result<PayAccepted, PayError> {
        let same_key = record.payment_key.as_deref() == Some(command.payment_key.as_str());
        if same_key && record.payment_method.as_deref() != Some(command.payment_method.as_str()) {
            return Err(PayError::KeyReused);
        }
        let same_request = same_key;
        let accepted = |status| PayAccepted {
            reservation_id: command.reservation_id.to_string(),
            status,
        };
        match record.reservation.status {
            ReservationStatus::Pending => {
                // Still PENDING after a refused begin: it expired in between.
                Err(PayError::Expired)
            }
            ReservationStatus::Expired => Err(PayError::Expired),
            ReservationStatus::PaymentProcessing if same_request => {
                // A retry: the first attempt may have died before starting the saga.
                self.start_saga(command, record.saga_attempt).await
            }
            ReservationStatus::PaymentProcessing => Err(PayError::InProgress),
            status @ (ReservationStatus::Confirmed | ReservationStatus::Failed) if same_request => {
                Ok(accepted(status))
            }
            ReservationStatus::Confirmed => Err(PayError::AlreadyPaid),
            ReservationStatus::Failed => Err(PayError::PaymentFailed {
                reason: record
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            }),
        }
    }

    async fn start_saga(
        &self,
        command: &PayCommand,
        attempt: u32,
    ) -> Result<PayAccepted, PayError> {
        let input = saga_input(command.reservation_id, command.payment_method.as_str());
        let name = super::execution_name(command.reservation_id, attempt);
        match self.saga.start(&name, &input).await {
            Ok(Started::Started | Started::AlreadyStarted { .. }) => {
                // The reservation's status is what the buyer follows (GET /reservations/{id}).
                let status = self
                    .records
                    .get(command.reservation_id)
                    .await
                    .ok()
                    .flatten()
                    .map(|r| r.reservation.status)
                    .unwrap_or(ReservationStatus::PaymentProcessing);
                Ok(PayAccepted {
                    reservation_id: command.reservation_id.to_string(),
                    status,
                })
            }
            Err(error) => {
                // The execution may or may not exist now. The reservation stays
                // PAYMENT_PROCESSING (see the module doc): a retry or the sweep starts it.
                tracing::error!(%error, execution = %name, "could not start the payment saga");
                Err(PayError::Unavailable(error.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_methods_are_token_shaped() {
        assert!(PaymentMethod::parse("pm_card_visa").is_ok());
        assert!(PaymentMethod::parse("").is_err());
        assert!(PaymentMethod::parse("pm card").is_err());
        assert!(PaymentMethod::parse("pm_\u{e9}").is_err());
        assert!(PaymentMethod::parse(&"a".repeat(256)).is_err());
    }
}
