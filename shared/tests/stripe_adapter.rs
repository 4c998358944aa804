//! The Stripe adapter against the payment sandbox (a local stand-in that follows Stripe's API),
//! started in-process on loopback: charges, declines, idempotency, refunds, cancels, outages,
//! timeouts and a wrong key, and the circuit breaker over a real outage.

use std::net::SocketAddr;
use std::time::Duration;

use flashsale_core::domain::{Currency, ManualClock, Money, ReservationId, Timestamp};
use flashsale_core::payment::breaker::{
    BreakerConfig, BreakerState, BreakingProvider, RedisCircuitBreaker,
};
use flashsale_core::payment::stripe::{Secret, StripeConfig, StripeProvider};
use flashsale_core::payment::{
    ChargeOutcome, ChargeRequest, PaymentError, PaymentIntentId, PaymentProvider, PaymentStatus,
    RefundOutcome,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use testkit::sandbox::{Sandbox, SandboxConfig};
use testkit::RedisServer;

const KEY: &str = "sk_test_adapter";
const SLOW_MS: u64 = 400;

async fn sandbox() -> Sandbox {
    Sandbox::start(SandboxConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        secret_key: KEY.into(),
        latency_ms: (0, 5),
        slow_ms: SLOW_MS,
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts")
}

fn stripe_with(sandbox: &Sandbox, key: &str, timeout: Duration) -> StripeProvider {
    StripeProvider::new(StripeConfig {
        api_base: sandbox.base_url(),
        secret_key: Secret::new(key),
        timeout,
    })
    .expect("valid config")
}

fn stripe(sandbox: &Sandbox) -> StripeProvider {
    stripe_with(sandbox, KEY, Duration::from_secs(5))
}

fn charge(card: &str) -> ChargeRequest {
    let reservation_id = ReservationId::new();
    ChargeRequest {
        reservation_id,
        amount: Money::new(4_999, Currency::parse("EUR").unwrap()).unwrap(),
        payment_method: card.into(),
        idempotency_key: format!("charge-{reservation_id}"),
    }
}

/// A call to the sandbox's inspection and switch endpoints (`/_sandbox/...`).
async fn admin(sandbox: &Sandbox, method: &str, path: &str, body: Option<Value>) -> Value {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", sandbox.base_url()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let response = client.request(request).await.expect("sandbox answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(status.is_success(), "{method} {path}: {status} {bytes:?}");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// The sandbox's view of the intents charged for one reservation.
async fn intents_of(sandbox: &Sandbox, reservation: ReservationId) -> Vec<Value> {
    let list = admin(
        sandbox,
        "GET",
        &format!("/_sandbox/payment_intents?metadata.reservation_id={reservation}"),
        None,
    )
    .await;
    list["data"].as_array().cloned().unwrap_or_default()
}

async fn api_calls(sandbox: &Sandbox) -> u64 {
    admin(sandbox, "GET", "/_sandbox/stats", None).await["api_calls"]
        .as_u64()
        .expect("api_calls counter")
}

fn accepted(outcome: ChargeOutcome) -> flashsale_core::payment::PaymentIntent {
    match outcome {
        ChargeOutcome::Accepted(intent) => intent,
        other => panic!("expected an accepted charge, got {other:?}"),
    }
}

#[tokio::test]
async fn a_good_card_is_charged_once_with_the_reservation_in_its_metadata() {
    let sandbox = sandbox().await;
    let stripe = stripe(&sandbox);
    let request = charge("pm_card_visa");

    let intent = accepted(stripe.charge(&request).await.unwrap());
    assert_eq!(intent.status, PaymentStatus::Succeeded);
    assert_eq!(
        (intent.amount_minor, intent.currency.as_str()),
        (4_999, "EUR")
    );
    assert_eq!(
        intent.reservation_id,
        Some(request.reservation_id.to_string())
    );
    assert!(intent.id.as_str().starts_with("pi_"));
    assert_eq!(stripe.retrieve(&intent.id).await.unwrap(), intent);

    let seen = intents_of(&sandbox, request.reservation_id).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["id"], intent.id.as_str());
    assert_eq!(
        seen[0]["currency"], "eur",
        "Stripe wants lower-case currencies"
    );
    assert_eq!(seen[0]["amount"], 4_999);
}

#[tokio::test]
async fn the_same_idempotency_key_twice_makes_one_payment_intent() {
    let sandbox = sandbox().await;
    let stripe = stripe(&sandbox);
    let request = charge("pm_card_visa");

    let first = accepted(stripe.charge(&request).await.unwrap());
    let again = accepted(stripe.charge(&request).await.unwrap());
    assert_eq!(first.id, again.id);

    let seen = intents_of(&sandbox, request.reservation_id).await;
    assert_eq!(seen.len(), 1, "one intent: {seen:?}");
    assert_eq!(
        seen[0]["create_calls"], 2,
        "both calls reached the same intent"
    );

    // A new key for the same reservation is a new charge: that is what the key is for.
    let other_key = ChargeRequest {
        idempotency_key: format!("{}-b", request.idempotency_key),
        ..request.clone()
    };
    accepted(stripe.charge(&other_key).await.unwrap());
    assert_eq!(intents_of(&sandbox, request.reservation_id).await.len(), 2);
}

#[tokio::test]
async fn declined_cards_are_declines_with_stripes_codes_and_the_intent() {
    let sandbox = sandbox().await;
    let stripe = stripe(&sandbox);
    for (card, decline_code) in [
        ("pm_card_chargeDeclined", "generic_decline"),
        (
            "pm_card_chargeDeclinedInsufficientFunds",
            "insufficient_funds",
        ),
    ] {
        let request = charge(card);
        let outcome = stripe.charge(&request).await.unwrap();
        let ChargeOutcome::Declined { intent, decline } = outcome else {
            panic!("{card}: {outcome:?}")
        };
        assert_eq!(decline.code, "card_declined", "{card}");
        assert_eq!(
            decline.decline_code.as_deref(),
            Some(decline_code),
            "{card}"
        );
        assert!(!decline.message.is_empty());
        let intent = intent.expect("Stripe returns the intent with a card error");
        assert_eq!(intent.status, PaymentStatus::RequiresPaymentMethod);
        assert_eq!(
            intent.reservation_id,
            Some(request.reservation_id.to_string())
        );
        // Nothing was captured, so there is nothing to refund.
        assert_eq!(
            stripe
                .refund(&intent.id, &format!("refund-{}", request.reservation_id))
                .await
                .unwrap(),
            RefundOutcome::NotCharged(PaymentStatus::RequiresPaymentMethod)
        );
    }
}

#[tokio::test]
async fn a_refund_gives_the_whole_amount_back_once() {
    let sandbox = sandbox().await;
    let stripe = stripe(&sandbox);
    let request = charge("pm_card_visa");
    let intent = accepted(stripe.charge(&request).await.unwrap());

    let refunded = stripe.refund(&intent.id, "refund-1").await.unwrap();
    let RefundOutcome::Refunded {
        refund_id,
        amount_minor,
    } = refunded.clone()
    else {
        panic!("{refunded:?}")
    };
    assert_eq!(amount_minor, 4_999);
    assert!(refund_id.starts_with("re_"));

    // The same key replays the first refund; a new key finds nothing left to refund.
    assert_eq!(
        stripe.refund(&intent.id, "refund-1").await.unwrap(),
        refunded
    );
    assert_eq!(
        stripe.refund(&intent.id, "refund-2").await.unwrap(),
        RefundOutcome::AlreadyRefunded
    );
    let seen = intents_of(&sandbox, request.reservation_id).await;
    assert_eq!(seen[0]["refunds"].as_array().map(Vec::len), Some(1));
    // A succeeded intent cannot be canceled; cancel reports it as it is.
    assert_eq!(
        stripe.cancel(&intent.id, "cancel-1").await.unwrap().status,
        PaymentStatus::Succeeded
    );
}

#[tokio::test]
async fn a_slow_payment_is_accepted_as_processing_and_can_be_canceled_before_it_succeeds() {
    let sandbox = sandbox().await;
    let stripe = stripe(&sandbox);
    let intent = accepted(
        stripe
            .charge(&charge("pm_card_sandbox_slow"))
            .await
            .unwrap(),
    );
    assert_eq!(intent.status, PaymentStatus::Processing);

    let canceled = stripe.cancel(&intent.id, "cancel-1").await.unwrap();
    assert_eq!(canceled.status, PaymentStatus::Canceled);
    // It stays canceled after the slow card would have succeeded.
    tokio::time::sleep(Duration::from_millis(SLOW_MS + 200)).await;
    assert_eq!(
        stripe.retrieve(&intent.id).await.unwrap().status,
        PaymentStatus::Canceled
    );
    // Canceling again (another key) is a no-op; refunding finds nothing captured.
    assert_eq!(
        stripe.cancel(&intent.id, "cancel-2").await.unwrap().status,
        PaymentStatus::Canceled
    );
    assert_eq!(
        stripe.refund(&intent.id, "refund-1").await.unwrap(),
        RefundOutcome::NotCharged(PaymentStatus::Canceled)
    );
}

#[tokio::test]
async fn an_outage_is_transient_and_creates_nothing() {
    let sandbox = sandbox().await;
    let stripe = stripe(&sandbox);
    let paid = accepted(stripe.charge(&charge("pm_card_visa")).await.unwrap());
    admin(
        &sandbox,
        "POST",
        "/_sandbox/switches",
        Some(json!({"outage": true})),
    )
    .await;

    let request = charge("pm_card_visa");
    let err = stripe.charge(&request).await.unwrap_err();
    assert!(matches!(err, PaymentError::Transient(_)), "{err:?}");
    assert_eq!(step_error_type(&err), "ProviderUnavailable");
    assert!(intents_of(&sandbox, request.reservation_id)
        .await
        .is_empty());
    for err in [
        stripe.retrieve(&paid.id).await.unwrap_err(),
        stripe.refund(&paid.id, "r").await.unwrap_err(),
        stripe.cancel(&paid.id, "c").await.unwrap_err(),
    ] {
        assert!(matches!(err, PaymentError::Transient(_)), "{err:?}");
    }

    // Once it is over, the same request (same key) goes through.
    admin(
        &sandbox,
        "POST",
        "/_sandbox/switches",
        Some(json!({"outage": false})),
    )
    .await;
    accepted(stripe.charge(&request).await.unwrap());
}

#[tokio::test]
async fn a_provider_slower_than_the_timeout_is_transient() {
    let sandbox = sandbox().await;
    admin(
        &sandbox,
        "POST",
        "/_sandbox/switches",
        Some(json!({"latency_ms": [600, 600]})),
    )
    .await;
    let stripe = stripe_with(&sandbox, KEY, Duration::from_millis(150));
    let started = std::time::Instant::now();
    let err = stripe.charge(&charge("pm_card_visa")).await.unwrap_err();
    assert!(
        matches!(err, PaymentError::Transient(ref m) if m.contains("no answer")),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_wrong_key_or_a_bad_request_is_rejected_for_good() {
    let sandbox = sandbox().await;
    let wrong = stripe_with(&sandbox, "sk_test_wrong", Duration::from_secs(5));
    let err = wrong.charge(&charge("pm_card_visa")).await.unwrap_err();
    assert!(matches!(err, PaymentError::Rejected { .. }), "{err:?}");
    assert_eq!(step_error_type(&err), "ProviderRejected");
    assert!(!err.to_string().contains("sk_test_wrong"), "{err}");

    let stripe = stripe(&sandbox);
    let err = stripe
        .charge(&charge("pm_card_nonexistent"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected { code: Some(c), .. } if c == "resource_missing"),
        "{err:?}"
    );
    let unknown = PaymentIntentId::parse("pi_doesnotexist").unwrap();
    let err = stripe.retrieve(&unknown).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected { code: Some(c), .. } if c == "resource_missing"),
        "{err:?}"
    );

    // Reusing a charge's key with other parameters is a bug, not a retry.
    let request = charge("pm_card_visa");
    accepted(stripe.charge(&request).await.unwrap());
    let changed = ChargeRequest {
        amount: Money::new(1, Currency::parse("EUR").unwrap()).unwrap(),
        ..request
    };
    let err = stripe.charge(&changed).await.unwrap_err();
    assert!(
        matches!(&err, PaymentError::Rejected { code: Some(c), .. } if c == "idempotency_error"),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_breaker_opens_over_an_outage_stops_calling_and_recovers_after_the_cooldown() {
    // GIVEN Stripe behind a breaker (threshold 3, cooldown 30 s on a manual clock), and an outage
    let sandbox = sandbox().await;
    let redis = RedisServer::start();
    let clock = ManualClock::at(Timestamp::from_millis(1_700_000_000_000));
    let config = BreakerConfig {
        failure_threshold: 3,
        cooldown: Duration::from_secs(30),
        probe_timeout: Duration::from_secs(15),
    };
    let name = format!("stripe-{}", uuid::Uuid::now_v7().simple());
    let provider = BreakingProvider::new(
        stripe(&sandbox),
        RedisCircuitBreaker::new(redis.connection().await, &name, config, clock.clone()).unwrap(),
    );
    admin(
        &sandbox,
        "POST",
        "/_sandbox/switches",
        Some(json!({"outage": true})),
    )
    .await;

    // WHEN three charges fail
    for _ in 0..3 {
        let err = provider.charge(&charge("pm_card_visa")).await.unwrap_err();
        assert_eq!(step_error_type(&err), "ProviderUnavailable");
    }
    assert_eq!(
        provider.breaker().state().await.unwrap(),
        BreakerState::Open
    );

    // THEN later charges fail fast and never reach Stripe
    let calls = api_calls(&sandbox).await;
    for _ in 0..5 {
        let err = provider.charge(&charge("pm_card_visa")).await.unwrap_err();
        assert!(
            matches!(err, PaymentError::CircuitOpen { retry_after } if retry_after == Duration::from_secs(30)),
            "{err:?}"
        );
    }
    assert_eq!(
        api_calls(&sandbox).await,
        calls,
        "no call reached the sandbox"
    );

    // AND when the outage is over and the cooldown has passed, one probe closes the circuit
    admin(
        &sandbox,
        "POST",
        "/_sandbox/switches",
        Some(json!({"outage": false})),
    )
    .await;
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        provider.breaker().state().await.unwrap(),
        BreakerState::HalfOpen
    );
    let intent = accepted(provider.charge(&charge("pm_card_visa")).await.unwrap());
    assert_eq!(intent.status, PaymentStatus::Succeeded);
    assert_eq!(
        provider.breaker().state().await.unwrap(),
        BreakerState::Closed
    );
    assert_eq!(api_calls(&sandbox).await, calls + 1);
}

/// The name the checkout saga's state machine sees for a payment error (its Retry/Catch match
/// it): the saga's vocabulary is the only one.
fn step_error_type(error: &PaymentError) -> &'static str {
    flashsale_core::saga::steps::StepError::from(error.clone()).error_type
}
