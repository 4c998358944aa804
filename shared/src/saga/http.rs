//! HTTP for the saga's two entry points: `POST /reservations/{reservationId}/payment` (buyers)
//! and `POST /webhooks/payments` (the payment provider, authenticated by its signature).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::json;

use super::control::SagaControl;
use super::pay::{PayCommand, PayError, PayService, PaymentMethod};
use super::records::CheckoutRecords;
use super::webhook::{WebhookError, WebhookEventLog, WebhookOutcome, WebhookService};
use crate::domain::Clock;
use crate::http::problems::RETRY_SOON_SECS;
use crate::http::request::{
    bad_request, body_bytes, idempotency_key, identity_of, reservation_id_of,
};
use crate::http::{json, problems, Problem};
use crate::payment::PaymentProvider;

#[derive(Debug, Deserialize)]
struct PayBody {
    payment_method: Option<serde_json::Value>,
}

fn unprocessable(slug: &str, title: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, slug, title, detail)
}

pub fn parse_pay(request: &Request) -> Result<PayCommand, Problem> {
    let identity = identity_of(request)?;
    let reservation_id = reservation_id_of(request)?;
    let payment_key = idempotency_key(
        request,
        "Send an Idempotency-Key header so a retried payment request cannot pay twice.",
    )?;
    let body: PayBody = crate::http::request::json_object(body_bytes(request)?).map_err(|e| {
        problems::malformed_body(format!("Expected {{\"payment_method\": \"pm_...\"}}: {e}"))
    })?;
    let raw = match body.payment_method {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => {
            return Err(unprocessable(
                "invalid-payment-method",
                "Invalid payment method",
                format!("payment_method must be a string, got {other}"),
            ))
        }
        None => return Err(unprocessable(
            "missing-payment-method",
            "Payment method required",
            "Send the payment method token from the provider's client library as payment_method.",
        )),
    };
    let payment_method = PaymentMethod::parse(&raw)
        .map_err(|e| unprocessable("invalid-payment-method", "Invalid payment method", e))?;
    Ok(PayCommand {
        user: identity.user_id,
        reservation_id,
        payment_key,
        payment_method,
    })
}

pub fn pay_error_problem(error: &PayError) -> Problem {
    match error {
        PayError::NotFound => problems::reservation_not_found(),
        PayError::Expired => Problem::new(
            StatusCode::GONE,
            "reservation-expired",
            "Reservation expired",
            "The hold on this reservation ran out; reserve again.",
        ),
        PayError::AlreadyPaid => Problem::new(
            StatusCode::CONFLICT,
            "already-paid",
            "Already paid",
            "This reservation has been paid.",
        ),
        PayError::PaymentFailed { reason } => Problem::new(
            StatusCode::CONFLICT,
            "payment-failed",
            "Payment failed",
            format!("The payment for this reservation failed ({reason}); reserve again."),
        ),
        PayError::KeyReused => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "This Idempotency-Key was used with another payment method; use a new key.",
        ),
        PayError::InProgress => Problem::new(
            StatusCode::CONFLICT,
            "payment-in-progress",
            "Payment in progress",
            "Another payment request for this reservation is being processed.",
        ),
        PayError::Unavailable(_) => {
            problems::temporarily_unavailable("Try again shortly with the same Idempotency-Key.")
        }
    }
}

/// `POST /reservations/{reservationId}/payment` ─▶ 202 `{reservation_id, status}`.
pub async fn pay<R: CheckoutRecords, G: SagaControl, K: Clock>(
    service: &PayService<R, G, K>,
    request: &Request,
) -> Response<Body> {
    let command = match parse_pay(request) {
        Ok(command) => command,
        Err(problem) => return problem.into_response(),
    };
    match service.pay(&command).await {
        Ok(accepted) => json(StatusCode::ACCEPTED, &accepted),
        Err(error) => {
            if let PayError::Unavailable(detail) = &error {
                tracing::error!(%detail, "payment intake dependency unavailable");
                return pay_error_problem(&error).into_response();
            }
            pay_error_problem(&error).into_response()
        }
    }
}

/// `POST /webhooks/payments`: 200 for handled, duplicate and ignored events; 400 for a bad
/// signature or body (never processed); 503 when the event must be redelivered later.
pub async fn webhook<L, R, G, P, K>(
    service: &WebhookService<L, R, G, P, K>,
    request: &Request,
) -> Response<Body>
where
    L: WebhookEventLog,
    R: CheckoutRecords,
    G: SagaControl,
    P: PaymentProvider,
    K: Clock,
{
    // The signature is over the exact bytes received; the body must not be re-serialised.
    let body: &[u8] = match request.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    let signature = request
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    match service.receive(signature, body).await {
        Ok(outcome) => {
            let (outcome, detail) = match outcome {
                WebhookOutcome::Handled(how) => ("handled", how),
                WebhookOutcome::Duplicate => ("duplicate", "event already handled"),
                WebhookOutcome::Ignored(why) => ("ignored", why),
            };
            json(
                StatusCode::OK,
                &json!({ "received": true, "outcome": outcome, "detail": detail }),
            )
        }
        Err(WebhookError::Signature(reason)) => {
            tracing::warn!(reason = reason.as_str(), "webhook signature refused");
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-signature",
                "Invalid signature",
                format!(
                    "The Stripe-Signature header was refused: {}.",
                    reason.as_str()
                ),
            )
            .into_response()
        }
        Err(WebhookError::Malformed(detail)) => {
            bad_request("malformed-event", "Malformed event", detail).into_response()
        }
        Err(WebhookError::RetryLater(detail)) => {
            tracing::warn!(%detail, "webhook deferred; the provider will redeliver");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "retry-later",
                "Retry later",
                "The event cannot be handled yet; redeliver it.",
            )
            .with_retry_after(RETRY_SOON_SECS)
            .into_response()
        }
    }
}
