//! The provider's webhook events, read into what the payment saga acts on: which payment, what
//! happened to it, for which reservation. The wire shape is Stripe's (the provider this
//! backend speaks, and the local sandbox with it): `{"id", "type", "data": {"object": <a
//! PaymentIntent>}}`; the rest of the backend sees only [`PaymentEvent`] and [`IntentFacts`].

use serde::Deserialize;
use serde_json::Value;

use crate::domain::ReservationId;

/// One event, as delivered (signature already verified by the caller).
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentEvent {
    /// The provider's event id (deliveries of one event share it).
    pub id: String,
    /// The provider's event type (`payment_intent.succeeded`, ...).
    #[serde(rename = "type")]
    pub type_name: String,
    data: EventData,
}

#[derive(Debug, Clone, Deserialize)]
struct EventData {
    object: Value,
}

/// What happened to a payment, for the event types the saga acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentEventKind {
    Succeeded,
    Failed,
    Processing,
}

/// The parts of a payment (a PaymentIntent) the saga reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentFacts {
    pub id: String,
    /// From the metadata the charge step wrote; `None`: not one of ours.
    pub reservation_id: Option<ReservationId>,
    /// Minor units.
    pub amount_received: u64,
    /// The decline code (or error code) of a failed payment; `payment_failed` when none.
    pub failure: String,
}

impl PaymentEvent {
    /// Reads the envelope; the object is read by [`Self::intent`]. Errors are serde's message.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }

    /// `None` for an event type the saga does not act on.
    pub fn kind(&self) -> Option<PaymentEventKind> {
        match self.type_name.as_str() {
            "payment_intent.succeeded" => Some(PaymentEventKind::Succeeded),
            "payment_intent.payment_failed" => Some(PaymentEventKind::Failed),
            "payment_intent.processing" => Some(PaymentEventKind::Processing),
            _ => None,
        }
    }

    /// The payment the event is about; `None` when its object is not a payment intent.
    pub fn intent(&self) -> Option<IntentFacts> {
        let object = &self.data.object;
        let id = object.get("id")?.as_str()?.to_owned();
        let reservation_id = object
            .pointer("/metadata/reservation_id")
            .and_then(Value::as_str)
            .and_then(|raw| ReservationId::parse(raw).ok());
        let amount_received = object
            .get("amount_received")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let failure = object
            .get("last_payment_error")
            .and_then(|e| e.get("decline_code").or_else(|| e.get("code")))
            .and_then(Value::as_str)
            .unwrap_or("payment_failed")
            .to_owned();
        Some(IntentFacts {
            id,
            reservation_id,
            amount_received,
            failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_event_reads_into_kind_and_facts() {
        let body = br#"{"id": "evt_1", "type": "payment_intent.payment_failed", "data": {"object": {
            "id": "pi_1", "amount_received": 0,
            "metadata": {"reservation_id": "0191d6a0-0000-7000-8000-000000000000"},
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}}}}"#;
        let event = PaymentEvent::parse(body).unwrap();
        assert_eq!(event.kind(), Some(PaymentEventKind::Failed));
        let facts = event.intent().unwrap();
        assert_eq!(facts.id, "pi_1");
        assert_eq!(facts.failure, "insufficient_funds");
        assert!(facts.reservation_id.is_some());
    }

    #[test]
    fn other_types_objects_and_bodies_are_told_apart() {
        let other = PaymentEvent::parse(
            br#"{"id": "e", "type": "charge.refunded", "data": {"object": {}}}"#,
        )
        .unwrap();
        assert_eq!(other.kind(), None);
        assert_eq!(
            other.intent(),
            None,
            "an object without an id is no payment"
        );
        let foreign = PaymentEvent::parse(
            br#"{"id": "e", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_2"}}}"#,
        )
        .unwrap();
        assert_eq!(foreign.intent().unwrap().reservation_id, None);
        assert!(PaymentEvent::parse(b"[]").is_err());
        assert!(PaymentEvent::parse(br#"{"id": "e"}"#).is_err());
    }
}
