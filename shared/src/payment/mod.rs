//! Payments: the provider port ([`PaymentProvider`]), its Stripe adapter
//! ([`stripe::StripeProvider`]), a circuit breaker shared by every Lambda instance through Redis
//! ([`breaker::RedisCircuitBreaker`], applied with [`breaker::BreakingProvider`]), the
//! verification of Stripe's webhook signatures ([`signature`]) and the reading of its webhook
//! events into provider-neutral ones ([`event`]).
//!
//! The port speaks in outcomes the payment saga acts on, not in HTTP: a charge is either
//! [`ChargeOutcome::Accepted`] (the money is taken or on its way; the webhook settles it) or
//! [`ChargeOutcome::Declined`] (the buyer's card said no: a business answer, not an error).
//! Errors ([`PaymentError`]) are reserved for the provider or our own setup failing. The names
//! Step Functions' `Retry`/`Catch` match are the saga's (`saga::error_types`, mapped from these
//! in `saga::steps`): one vocabulary, checked against the definition by
//! `tests/saga_definition.rs`.

pub mod breaker;
pub mod event;
pub mod memory;
pub mod signature;
pub mod stripe;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::domain::{Money, ReservationId};

/// A Stripe PaymentIntent id (`pi_...`). Validated because it is pasted into URL paths.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentIntentId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentIntentIdError {
    #[error("payment intent id must not be empty")]
    Empty,
    #[error("payment intent id must start with \"pi_\"")]
    WrongPrefix,
    #[error("payment intent id is longer than {max} characters")]
    TooLong { max: usize },
    #[error("payment intent id may contain only ASCII letters, digits and '_'")]
    InvalidCharacter,
}

impl PaymentIntentId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(raw: impl Into<String>) -> Result<Self, PaymentIntentIdError> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(PaymentIntentIdError::Empty);
        }
        if raw.len() > Self::MAX_LEN {
            return Err(PaymentIntentIdError::TooLong { max: Self::MAX_LEN });
        }
        if !raw.starts_with("pi_") {
            return Err(PaymentIntentIdError::WrongPrefix);
        }
        // Only characters that need no escaping in a URL path segment.
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(PaymentIntentIdError::InvalidCharacter);
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PaymentIntentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One charge of a reservation. `idempotency_key` makes a retried charge (a Lambda retry, a
/// Step Functions retry) return the first attempt's PaymentIntent instead of charging twice:
/// derive it from the reservation, never from the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub reservation_id: ReservationId,
    pub amount: Money,
    pub payment_method: String,
    pub idempotency_key: String,
}

/// Where a PaymentIntent is, in Stripe's words.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PaymentStatus {
    Succeeded,
    Processing,
    RequiresPaymentMethod,
    RequiresAction,
    Canceled,
    /// Any other status (`requires_confirmation`, `requires_capture`, or one Stripe adds later).
    Other(String),
}

impl PaymentStatus {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "succeeded" => Self::Succeeded,
            "processing" => Self::Processing,
            "requires_payment_method" => Self::RequiresPaymentMethod,
            "requires_action" => Self::RequiresAction,
            "canceled" => Self::Canceled,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Processing => "processing",
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresAction => "requires_action",
            Self::Canceled => "canceled",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A PaymentIntent as the saga needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: PaymentIntentId,
    pub status: PaymentStatus,
    pub amount_minor: u64,
    /// ISO 4217, upper case like [`crate::domain::Currency`] (Stripe answers in lower case).
    pub currency: String,
    /// `metadata.reservation_id`, as the charge set it.
    pub reservation_id: Option<String>,
    /// The last payment error (`last_payment_error`), if the last attempt failed.
    pub decline: Option<Decline>,
}

/// Why a payment was refused, in Stripe's terms: `code` such as `card_declined`, the issuer's
/// `decline_code` such as `insufficient_funds`, and a message fit to show the buyer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decline {
    pub code: String,
    pub decline_code: Option<String>,
    pub message: String,
}

/// What a charge ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// `succeeded` or `processing`: the money is taken or on its way; the webhook settles it.
    Accepted(PaymentIntent),
    /// The payment method was refused. `intent` is the PaymentIntent left behind (Stripe
    /// includes it in a card error), in `requires_payment_method` or, when confirmation stopped
    /// for another reason such as `requires_action`, in that status; cancel it if it stays.
    Declined {
        intent: Option<PaymentIntent>,
        decline: Decline,
    },
}

/// What a refund ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// A refund of the whole remaining amount was created (or replayed by its idempotency key).
    Refunded {
        refund_id: String,
        amount_minor: u64,
    },
    /// Everything captured was refunded already.
    AlreadyRefunded,
    /// Nothing was captured (the intent is not succeeded): nothing to give back.
    NotCharged(PaymentStatus),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// Network error, timeout, HTTP 5xx, 409 or 429, Stripe `api_error`/`rate_limit_error`:
    /// worth a retry with the same idempotency key.
    #[error("payment provider unavailable: {0}")]
    Transient(String),
    /// The circuit breaker is open: the provider is failing, fail fast.
    #[error("payment provider circuit open; retry after {retry_after:?}")]
    CircuitOpen { retry_after: Duration },
    /// A request the provider refuses for good (4xx other than a card decline): a bug or bad
    /// configuration (wrong API key, unknown intent, invalid parameter).
    #[error("payment provider rejected the request ({}): {message}", code.as_deref().unwrap_or("no code"))]
    Rejected {
        code: Option<String>,
        message: String,
    },
    /// The circuit breaker's store (Redis) failed.
    #[error("circuit breaker store unavailable: {0}")]
    Breaker(String),
}

impl PaymentError {
    /// Whether the same call may succeed later (everything but `Rejected`).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Rejected { .. })
    }
}

/// The port. Every call is safe to retry: charges, refunds and cancels carry idempotency keys.
pub trait PaymentProvider: Send + Sync {
    /// Creates and confirms a PaymentIntent for the request.
    fn charge(
        &self,
        request: &ChargeRequest,
    ) -> impl Future<Output = Result<ChargeOutcome, PaymentError>> + Send;

    fn retrieve(
        &self,
        id: &PaymentIntentId,
    ) -> impl Future<Output = Result<PaymentIntent, PaymentError>> + Send;

    /// Refunds the whole captured amount; idempotent by `idempotency_key`; an intent already
    /// fully refunded answers AlreadyRefunded; one not succeeded answers NotCharged.
    fn refund(
        &self,
        id: &PaymentIntentId,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<RefundOutcome, PaymentError>> + Send;

    /// Cancels an intent that has not succeeded; Ok(intent after). An intent that is already
    /// canceled, or that cannot be canceled any more because it succeeded, is returned as it
    /// is: check `status` (a succeeded one needs a refund instead).
    fn cancel(
        &self,
        id: &PaymentIntentId,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<PaymentIntent, PaymentError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_intent_ids_are_checked_before_they_reach_a_url() {
        assert!(PaymentIntentId::parse("pi_3MtwBwLkdIwHu7ix28a3tqPa").is_ok());
        assert_eq!(PaymentIntentId::parse(""), Err(PaymentIntentIdError::Empty));
        assert_eq!(
            PaymentIntentId::parse("ch_123"),
            Err(PaymentIntentIdError::WrongPrefix)
        );
        for bad in ["pi_../refunds", "pi_a b", "pi_a?x=1", "pi_é"] {
            assert_eq!(
                PaymentIntentId::parse(bad),
                Err(PaymentIntentIdError::InvalidCharacter),
                "{bad}"
            );
        }
        assert!(matches!(
            PaymentIntentId::parse(format!("pi_{}", "a".repeat(300))),
            Err(PaymentIntentIdError::TooLong { .. })
        ));
    }

    #[test]
    fn statuses_round_trip_and_keep_unknown_values() {
        for s in [
            "succeeded",
            "processing",
            "requires_payment_method",
            "requires_action",
            "canceled",
            "requires_capture",
        ] {
            assert_eq!(PaymentStatus::parse(s).as_str(), s);
        }
        assert_eq!(
            PaymentStatus::parse("requires_capture"),
            PaymentStatus::Other("requires_capture".into())
        );
    }

    #[test]
    fn only_a_rejection_is_final() {
        let errors = [
            PaymentError::Transient("x".into()),
            PaymentError::CircuitOpen {
                retry_after: Duration::from_secs(1),
            },
            PaymentError::Rejected {
                code: None,
                message: "x".into(),
            },
            PaymentError::Breaker("x".into()),
        ];
        assert!(!errors[2].is_retryable());
        assert!(errors[0].is_retryable() && errors[1].is_retryable() && errors[3].is_retryable());
    }
}
