//! PaymentIntents, their one Charge, and Refunds, rendered in Stripe's JSON shapes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    RequiresPaymentMethod,
    RequiresConfirmation,
    Processing,
    Succeeded,
    Canceled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::RequiresPaymentMethod => "requires_payment_method",
            Status::RequiresConfirmation => "requires_confirmation",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Canceled => "canceled",
        }
    }

    /// Stripe lets these be canceled (`requires_action` and `requires_capture` too, which
    /// the sandbox never produces: no 3-D Secure, automatic capture only).
    pub fn cancelable(self) -> bool {
        matches!(
            self,
            Status::RequiresPaymentMethod | Status::RequiresConfirmation | Status::Processing
        )
    }
}

/// What a test payment method does when confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBehaviour {
    Succeed,
    Decline {
        decline_code: &'static str,
        message: &'static str,
    },
    /// `processing`, then `succeeded` after `slow_ms`.
    Slow,
}

/// Stripe's test PaymentMethod ids, plus the sandbox's own slow card.
pub fn card_behaviour(payment_method: &str) -> Option<CardBehaviour> {
    match payment_method {
        "pm_card_visa" | "pm_card_mastercard" => Some(CardBehaviour::Succeed),
        "pm_card_chargeDeclined" => Some(CardBehaviour::Decline {
            decline_code: "generic_decline",
            message: "Your card was declined.",
        }),
        "pm_card_chargeDeclinedInsufficientFunds" => Some(CardBehaviour::Decline {
            decline_code: "insufficient_funds",
            message: "Your card has insufficient funds.",
        }),
        "pm_card_sandbox_slow" => Some(CardBehaviour::Slow),
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub struct Charge {
    pub id: String,
    /// `succeeded`, `pending` or `failed`.
    pub status: &'static str,
    pub created: i64,
    pub payment_method: String,
    pub failure_code: Option<&'static str>,
    pub failure_message: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct Intent {
    pub id: String,
    pub seq: u64,
    pub client_secret: String,
    pub amount: u64,
    pub currency: String,
    pub status: Status,
    pub payment_method: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub description: Option<String>,
    pub charge: Option<Charge>,
    pub last_payment_error: Option<Value>,
    pub created: i64,
    pub canceled_at: Option<i64>,
    pub cancellation_reason: Option<String>,
    pub amount_refunded: u64,
    /// Create calls that reached this intent: the first one plus idempotent replays.
    pub create_calls: u32,
}

impl Intent {
    pub fn amount_received(&self) -> u64 {
        if self.status == Status::Succeeded {
            self.amount
        } else {
            0
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_received": self.amount_received(),
            "canceled_at": self.canceled_at,
            "cancellation_reason": self.cancellation_reason,
            "capture_method": "automatic",
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "description": self.description,
            "last_payment_error": self.last_payment_error,
            "latest_charge": self.charge.as_ref().map(|c| c.id.clone()),
            "livemode": false,
            "metadata": self.metadata,
            "payment_method": self.payment_method,
            "payment_method_types": ["card"],
            "status": self.status.as_str(),
        })
    }

    /// The intent's charge as Stripe renders it (charges copy the intent's metadata).
    pub fn charge_json(&self) -> Option<Value> {
        let charge = self.charge.as_ref()?;
        let captured = charge.status == "succeeded";
        Some(json!({
            "id": charge.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": if captured { self.amount } else { 0 },
            "amount_refunded": self.amount_refunded,
            "captured": captured,
            "created": charge.created,
            "currency": self.currency,
            "description": self.description,
            "failure_code": charge.failure_code,
            "failure_message": charge.failure_message,
            "livemode": false,
            "metadata": self.metadata,
            "paid": captured,
            "payment_intent": self.id,
            "payment_method": charge.payment_method,
            "refunded": captured && self.amount_refunded >= self.amount,
            "status": charge.status,
        }))
    }
}

#[derive(Debug, Clone)]
pub struct Refund {
    pub id: String,
    pub seq: u64,
    pub amount: u64,
    pub currency: String,
    pub payment_intent: String,
    pub charge: String,
    pub created: i64,
    pub metadata: BTreeMap<String, String>,
    pub reason: Option<String>,
}

impl Refund {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "metadata": self.metadata,
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "status": "succeeded",
        })
    }
}

/// An amount in minor units as Stripe writes it in messages, e.g. `$12.34`. Zero-decimal
/// currencies are not special-cased: the messages are for humans only.
pub fn format_amount(amount: u64, currency: &str) -> String {
    let symbol = match currency {
        "usd" => "$",
        "eur" => "€",
        "gbp" => "£",
        _ => "",
    };
    let suffix = if symbol.is_empty() {
        format!(" {}", currency.to_uppercase())
    } else {
        String::new()
    };
    format!("{symbol}{}.{:02}{suffix}", amount / 100, amount % 100)
}
