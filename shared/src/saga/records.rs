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

    /// PENDING ─▶ PAYMENT_PROCESSING if the record belongs to `user` and `now < expires_at`.
    /// Leaves the expiry index (the expiry worker no longer sees it).
    fn begin_payment(
        &self,
        id: ReservationId,
        user: &UserId,
        payment_key: &str,
        payment_method: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<BeginPayment, StoreError>> + Send;

    /// Undoes [`CheckoutRecords::begin_payment`] when the saga could not be started (only if it
    /// is still PAYMENT_PROCESSING under the same key and no charge was attempted).
    fn abandon_payment(
        &self,
        id: ReservationId,
        payment_key: &str,
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
