//! The saga's view of the durable records: a reservation plus the payment fields the intake,
//! the steps and the webhook share, and the port that changes them (conditional writes only).

use std::future::Future;

use crate::domain::{Money, ReservationId, Timestamp, UserId};
use crate::reservation::{Reservation, StoreError};

/// A reservation with the payment attributes stored on the same item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRecord {
    pub reservation: Reservation,
    /// The buyer's Idempotency-Key of the payment request that moved it to PAYMENT_PROCESSING.
    pub payment_key: Option<String>,
    pub payment_method: Option<String>,
    /// The task token of the running Charge step (the webhook resumes the saga with it).
    pub charge_token: Option<String>,
    pub payment_intent_id: Option<String>,
    pub order_id: Option<String>,
    pub failure_reason: Option<String>,
    /// When the payment was asked for (PAYMENT_PROCESSING and after).
    pub payment_started_at: Option<Timestamp>,
    /// Which saga execution owns the payment: 1 for the one the intake starts, more when the
    /// sweep restarted a saga that was not running ([`super::execution_name`]).
    pub saga_attempt: u32,
}

impl CheckoutRecord {
    /// The name of the saga execution that owns this payment now.
    pub fn execution_name(&self) -> String {
        super::execution_name(self.reservation.reservation_id, self.saga_attempt)
    }
}

/// The order written when a charge succeeded (orders table, key `reservation_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    pub reservation_id: ReservationId,
    pub payment_intent_id: String,
    pub amount: Money,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginPayment {
    /// PENDING ─▶ PAYMENT_PROCESSING happened now.
    Started,
    /// The condition failed: the reservation is not PENDING, expired, or not the caller's.
    /// The caller re-reads the record to say which.
    Refused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmOutcome {
    Confirmed,
    /// A previous attempt committed the same order (its answer was lost): nothing to do.
    AlreadyConfirmed,
    /// The reservation is no longer PAYMENT_PROCESSING (compensated): no order was written.
    NotProcessing,
}

/// The port. Every write is conditional on the status it expects, so concurrent actors (intake,
/// saga, webhook, expiry worker) cannot overwrite each other's outcome.
pub trait CheckoutRecords: Send + Sync {
    fn get(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<Option<CheckoutRecord>, StoreError>> + Send;

    /// PENDING ─▶ PAYMENT_PROCESSING if the record belongs to `user` and `now < expires_at`,
    /// with `saga_attempt = 1`. Leaves the expiry index (the expiry worker no longer sees it).
    /// A retry whose first attempt committed (its answer lost) reads as `Refused`; the caller
    /// re-reads the record and finds its own payment key.
    fn begin_payment(
        &self,
        id: ReservationId,
        user: &UserId,
        payment_key: &str,
        payment_method: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<BeginPayment, StoreError>> + Send;

    /// PAYMENT_PROCESSING at `attempt` ─▶ PAYMENT_PROCESSING at `attempt + 1`: the sweep
    /// found no running saga for the payment and starts a new execution. Conditional on the
    /// attempt, so two sweeps cannot both restart it. False if the record moved on.
    fn next_saga_attempt(
        &self,
        id: ReservationId,
        attempt: u32,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores the Charge step's task token; false when the record is not PAYMENT_PROCESSING.
    fn store_charge_token(
        &self,
        id: ReservationId,
        token: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn store_payment_intent(
        &self,
        id: ReservationId,
        payment_intent_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One transaction: the order is created and the reservation PAYMENT_PROCESSING ─▶ CONFIRMED.
    fn confirm_with_order(
        &self,
        record: &CheckoutRecord,
        order: &Order,
    ) -> impl Future<Output = Result<ConfirmOutcome, StoreError>> + Send;
}
