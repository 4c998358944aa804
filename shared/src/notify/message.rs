//! What the buyer is told: small templates rendered in Rust from the event alone (no lookup:
//! the event carries the amount, currency and failure reason from the record).

use crate::events::{EventType, ReservationEvent};

/// A notice about one end of a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub subject: String,
    /// The email's text body.
    pub text: String,
    /// The push message (one line).
    pub push: String,
}

/// `4999` `EUR` → `EUR 49.99` (ISO 4217 minor units; the currencies we sell in have two
/// decimals: [`crate::domain::Money`]).
fn amount(event: &ReservationEvent) -> Option<String> {
    let (minor, currency) = (event.amount_minor?, event.currency.as_deref()?);
    Some(format!(
        "{currency} {}.{:02}",
        minor.div_euclid(100),
        minor.rem_euclid(100)
    ))
}

/// What a failure reason (the saga's error name, [`crate::saga::error_types`]) means to the
/// buyer, and what to do.
fn declined_because(reason: Option<&str>) -> &'static str {
    use crate::saga::error_types as et;
    match reason.unwrap_or("") {
        et::PAYMENT_DECLINED => "Your card was declined. Please update your card or use another one.",
        "States.Timeout" | "States.HeartbeatTimeout" | et::RESERVATION_NOT_PAYABLE => {
            "The payment took too long and the reservation ran out. You were not charged."
        }
        _ => "We could not take the payment. You were not charged; please try again with another card.",
    }
}

/// The notice for `event`, or none for the events the buyer is not told about (a new
/// reservation, a payment started: the buyer is looking at the answer).
pub fn notice(event: &ReservationEvent) -> Option<Notice> {
    let id = &event.reservation_id;
    let units = if event.quantity == 1 {
        "1 unit".to_owned()
    } else {
        format!("{} units", event.quantity)
    };
    match event.event_type {
        EventType::ReservationConfirmed => {
            let paid = amount(event)
                .map(|a| format!(" You paid {a}."))
                .unwrap_or_default();
            Some(Notice {
                subject: "Your order is confirmed".into(),
                text: format!(
                    "Good news: your order of {units} in sale {sale} is confirmed.{paid}\n\nReservation: {id}\n",
                    sale = event.sale_id
                ),
                push: format!("Order confirmed: {units}.{paid}"),
            })
        }
        EventType::ReservationFailed => {
            let why = declined_because(event.failure_reason.as_deref());
            Some(Notice {
                subject: "Your payment did not go through".into(),
                text: format!(
                    "Your payment for {units} in sale {sale} did not go through. {why}\n\nThe units went back on sale.\n\nReservation: {id}\n",
                    sale = event.sale_id
                ),
                push: format!("Payment did not go through. {why}"),
            })
        }
        EventType::ReservationExpired => Some(Notice {
            subject: "Your reservation expired".into(),
            text: format!(
                "Your reservation of {units} in sale {sale} expired before it was paid. The units went back on sale; you were not charged.\n\nReservation: {id}\n",
                sale = event.sale_id
            ),
            push: format!("Your reservation of {units} expired; the units went back on sale."),
        }),
        EventType::ReservationCreated | EventType::PaymentStarted => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reservation::ReservationStatus;

    fn event(kind: EventType, status: ReservationStatus) -> ReservationEvent {
        ReservationEvent {
            event_id: format!("r1:{}", status.as_str()),
            event_type: kind,
            reservation_id: "r1".into(),
            sale_id: "drop".into(),
            user_id: "ann".into(),
            quantity: 2,
            status,
            email: Some("ann@example.com".into()),
            amount_minor: Some(4999),
            currency: Some("EUR".into()),
            failure_reason: Some("PaymentDeclined".into()),
        }
    }

    #[test]
    fn each_end_has_its_notice_and_the_others_none() {
        let confirmed = notice(&event(
            EventType::ReservationConfirmed,
            ReservationStatus::Confirmed,
        ))
        .unwrap();
        assert_eq!(confirmed.subject, "Your order is confirmed");
        assert!(confirmed.text.contains("EUR 49.99") && confirmed.text.contains("2 units"));
        let declined = notice(&event(
            EventType::ReservationFailed,
            ReservationStatus::Failed,
        ))
        .unwrap();
        assert!(declined.text.contains("declined") && declined.text.contains("went back on sale"));
        let expired = notice(&event(
            EventType::ReservationExpired,
            ReservationStatus::Expired,
        ))
        .unwrap();
        assert!(expired.text.contains("expired") && expired.text.contains("not charged"));
        assert_eq!(
            notice(&event(
                EventType::ReservationCreated,
                ReservationStatus::Pending
            )),
            None
        );
        assert_eq!(
            notice(&event(
                EventType::PaymentStarted,
                ReservationStatus::PaymentProcessing
            )),
            None
        );
    }

    #[test]
    fn amounts_and_reasons_read_as_a_person_would() {
        let mut e = event(
            EventType::ReservationConfirmed,
            ReservationStatus::Confirmed,
        );
        e.amount_minor = Some(5);
        assert!(notice(&e).unwrap().text.contains("EUR 0.05"));
        e.amount_minor = None;
        assert!(!notice(&e).unwrap().text.contains("You paid"));
        assert!(declined_because(Some("PaymentDeclined")).contains("declined"));
        assert!(declined_because(Some("States.Timeout")).contains("took too long"));
        assert!(declined_because(Some("ProviderUnavailable")).contains("not charged"));
        assert!(declined_because(None).contains("not charged"));
    }
}
