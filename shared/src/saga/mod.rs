//! The payment saga (product flows 2-4): payment intake, the Step Functions workflow's task
//! steps, and the payment-provider webhook intake.
//!
//! ```text
//!  POST /reservations/{id}/payment ─▶ pay.rs: PENDING ─▶ PAYMENT_PROCESSING (conditional,
//!        now < expires_at) ─▶ StartExecution(name = reservation id) ─▶ 202
//!
//!  statemachines/checkout-saga.asl.json (Standard):
//!    Validate (dynamodb:getItem) ─▶ Charge (lambda, .waitForTaskToken; a charge that succeeds
//!    at once skips the wait: ─▶ ReadCharge) ─▶ CreateOrder (lambda: one transaction: order +
//!    CONFIRMED) ─▶ CommitHold (lambda, Redis) ─▶ NotifyConfirmed (sqs)
//!    on failure: MarkFailed (dynamodb:updateItem) ─▶ Refund (lambda) ─▶ ReleaseHold (lambda,
//!    Redis) ─▶ NotifyFailed (sqs) ─▶ Fail; a compensation that keeps failing ─▶ saga DLQ (sqs)
//!
//!  POST /webhooks/payments ─▶ webhook.rs: signature ─▶ de-duplicate by event id ─▶
//!        SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat ─▶ 200
//! ```
//! The charge task token is stored on the reservation record *before* the charge is sent, so
//! the webhook always finds it. The record's status is the single source of truth the steps
//! and the webhook agree on: MarkFailed moves PAYMENT_PROCESSING ─▶ FAILED first, so a success
//! that arrives later sees FAILED and is refunded, and the confirming transaction requires
//! PAYMENT_PROCESSING, so an order can never be written for a compensated reservation.

pub mod control;
pub mod dynamo;
pub mod http;
pub mod memory;
pub mod pay;
pub mod records;
pub mod recovery;
pub mod sfn;
pub mod steps;
pub mod webhook;

use crate::domain::ReservationId;

/// The name of a payment's saga execution: the reservation id for the first (so a retried
/// payment request cannot start two), `<id>-r<n>` when the sweep restarts a saga that is not
/// running. Step Functions keeps names of Standard executions for 90 days and refuses to reuse
/// them, which is why a restart needs a new name.
pub fn execution_name(reservation: ReservationId, attempt: u32) -> String {
    if attempt <= 1 {
        reservation.to_string()
    } else {
        format!("{reservation}-r{attempt}")
    }
}

/// The idempotency key of a reservation's charge at the provider: one charge per reservation,
/// however often the Charge step is retried.
pub fn charge_idempotency_key(reservation: ReservationId) -> String {
    format!("charge-{reservation}")
}

/// The idempotency key of the refund of a payment intent: one refund per charge, whichever of
/// the compensation and the late-webhook path gets there first.
pub fn refund_idempotency_key(payment_intent_id: &str) -> String {
    format!("refund-{payment_intent_id}")
}

/// The names a step can fail with (its Lambda `errorType`, or the `Error` the webhook sends with
/// SendTaskFailure). The state machine's Retry and Catch match these strings; a test checks that
/// the definition handles every one of them (`steps::tests`, `tests/saga_definition.rs`).
pub mod error_types {
    /// DynamoDB could not be reached or throttled: transient.
    pub const STORE_UNAVAILABLE: &str = "StoreUnavailable";
    /// Redis could not be reached: transient.
    pub const STOCK_UNAVAILABLE: &str = "StockUnavailable";
    /// The provider answered 5xx/429 or did not answer: transient.
    pub const PROVIDER_UNAVAILABLE: &str = "ProviderUnavailable";
    /// The circuit breaker is open: fail fast into compensation, no retry.
    pub const CIRCUIT_OPEN: &str = "CircuitOpen";
    /// The provider refused the request for good (a bug or bad configuration).
    pub const PROVIDER_REJECTED: &str = "ProviderRejected";
    /// The card was declined (synchronously, or by the provider's `payment_failed` webhook).
    pub const PAYMENT_DECLINED: &str = "PaymentDeclined";
    /// The reservation is not in the state this step needs (e.g. no longer PAYMENT_PROCESSING).
    pub const RESERVATION_NOT_PAYABLE: &str = "ReservationNotPayable";
    /// The order could not be written: the charged amount differs, or the reservation changed.
    pub const ORDER_REJECTED: &str = "OrderRejected";
    /// The Redis hold was missing or already released when it should have been committed.
    pub const HOLD_LOST: &str = "HoldLost";
    /// The reservation lost its units before it was charged (Redis lost its hold and the shard
    /// has no unit left for it): nothing is charged, the saga compensates.
    pub const STOCK_LOST: &str = "StockLost";
    /// The provider says the charge has succeeded (at once, or before this execution: a
    /// restarted saga): there is no webhook to wait for. The definition reads the charge and
    /// goes on to CreateOrder.
    pub const ALREADY_CHARGED: &str = "AlreadyCharged";
    /// The step's input does not describe a known reservation (a bug: never retried).
    pub const INVALID_INPUT: &str = "InvalidStepInput";
    /// A charge of a failed reservation has stayed `processing` at the provider for longer than
    /// the saga waits ([`super::steps::CHARGE_SETTLE_LIMIT`]): a person must settle it (the
    /// saga's dead-letter path and alarm).
    pub const CHARGE_UNSETTLED: &str = "ChargeUnsettled";
}
