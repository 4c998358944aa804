//! Reservation events for downstream consumers (notifications), published from the
//! reservations table's change stream: a transactional outbox without a second write. Whatever
//! changes a reservation (reserve, saga, expiry) produces its event, and an event is lost only
//! if the stream loses it (it keeps records 24 h and retries; what still fails lands on the
//! DLQ). Delivery is at least once: consumers de-duplicate by `event_id`.

pub mod sqs;
pub mod stream;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::reservation::ReservationStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    ReservationCreated,
    PaymentStarted,
    ReservationConfirmed,
    ReservationFailed,
    ReservationExpired,
}

impl EventType {
    /// The event a reservation reaching `status` produces.
    pub fn for_status(status: ReservationStatus) -> Self {
        match status {
            ReservationStatus::Pending => Self::ReservationCreated,
            ReservationStatus::PaymentProcessing => Self::PaymentStarted,
            ReservationStatus::Confirmed => Self::ReservationConfirmed,
            ReservationStatus::Failed => Self::ReservationFailed,
            ReservationStatus::Expired => Self::ReservationExpired,
        }
    }

    /// The name on the wire (the JSON `event_type` and the SQS `event_type` attribute).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReservationCreated => "ReservationCreated",
            Self::PaymentStarted => "PaymentStarted",
            Self::ReservationConfirmed => "ReservationConfirmed",
            Self::ReservationFailed => "ReservationFailed",
            Self::ReservationExpired => "ReservationExpired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationEvent {
    /// Stable across redeliveries: `<reservation id>:<status>`.
    pub event_id: String,
    pub event_type: EventType,
    pub reservation_id: String,
    pub sale_id: String,
    pub user_id: String,
    pub quantity: u32,
    pub status: ReservationStatus,
    /// What a notification about it needs, from the record (each absent when the record has
    /// none): the buyer's email address, the amount in minor units and its ISO 4217 currency,
    /// and why a payment failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("event queue unavailable: {0}")]
    Unavailable(String),
}

/// The port: sends events in order; returns how many of them were accepted (a prefix).
pub trait EventSink: Send + Sync {
    fn send(
        &self,
        events: &[ReservationEvent],
    ) -> impl Future<Output = Result<usize, SinkError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_name_is_the_json_name() {
        for t in [
            EventType::ReservationCreated,
            EventType::PaymentStarted,
            EventType::ReservationConfirmed,
            EventType::ReservationFailed,
            EventType::ReservationExpired,
        ] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
