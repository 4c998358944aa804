//! Keeping Redis and DynamoDB in agreement (product flows 5 and 6).
//!
//! DynamoDB holds the truth (reservations, orders, sales); Redis holds the fast counters and
//! holds that must match it: for every sale, `initial = available + held + sold`, where held
//! = PENDING + PAYMENT_PROCESSING reservations and sold = orders. Two things keep them equal:
//!
//! - [`holds::HoldReconciler`]: small repairs, every minute, per sale, in both directions.
//!   Holds with no durable record after a grace period (a reserve died between its two writes)
//!   are released; holds whose record says EXPIRED or FAILED (a release that failed) are
//!   released; holds of CONFIRMED reservations are committed; stale fallback claims are
//!   dropped. And every durable reservation that owns units is checked in Redis: PENDING and
//!   PAYMENT_PROCESSING ones without a hold get it back, CONFIRMED ones whose hold is not sold
//!   get their units as sold (a paid order keeps its units, into debt if need be, reported),
//!   and PAYMENT_PROCESSING ones with no running saga are handed to [`PaymentRecovery`].
//! - [`rebuild::StockRebuilder`]: the big repair after Redis lost a sale's data. Selling is
//!   paused, every shard is recomputed from the durable records, and selling resumes.
//!
//! [`crate::sweep::Sweep`] is the scheduled run: expiry cleanup, then per sale rebuild detection and
//! reconciliation, within one time budget. [`http`] is the admin endpoint of the rebuild.

pub mod dynamo;
pub mod holds;
pub mod http;
pub mod memory;
pub mod rebuild;

use std::collections::HashMap;
use std::future::Future;

use crate::domain::{Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::reservation::{InsertOutcome, Reservation, ReservationStatus, StoreError};

pub use crate::reservation::ReservationSummary;

pub fn is_held(status: ReservationStatus) -> bool {
    status.is_held()
}

/// What [`PaymentRecovery::settle`] did with a PAYMENT_PROCESSING reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentCheck {
    /// Its saga runs: nothing to do.
    Running,
    /// No saga had been started: started now.
    Started,
    /// Its saga ended without settling it: a new attempt was started.
    Restarted,
    /// It is not PAYMENT_PROCESSING any more.
    NotProcessing,
}

#[derive(Debug, thiserror::Error)]
#[error("payment recovery failed: {0}")]
pub struct RecoveryError(pub String);

/// Moves on a payment no process is moving on (implemented by [`crate::saga::recovery`]).
pub trait PaymentRecovery: Send + Sync {
    fn settle(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<PaymentCheck, RecoveryError>> + Send;
}

/// An order as the orders table's by-sale index shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    pub reservation_id: ReservationId,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub shard: u16,
}

/// Which reservations of a sale to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    All,
    /// PENDING and PAYMENT_PROCESSING only.
    Held,
    /// PENDING, PAYMENT_PROCESSING and CONFIRMED: every reservation that owns units.
    Live,
}

impl Which {
    pub fn includes(self, status: ReservationStatus) -> bool {
        match self {
            Which::All => true,
            Which::Held => status.is_held(),
            Which::Live => status.is_held() || status == ReservationStatus::Confirmed,
        }
    }
}

/// Why the reconciler cancels a PENDING reservation (attribute `failure_reason`).
pub const STOCK_LOST: &str = "stock_lost";

/// The durable records the reconciler and the rebuild read and (rarely) write.
pub trait DurableRecords: Send + Sync {
    /// Strongly consistent reads of whole records by id (absent ids are not in the map).
    fn get_many(
        &self,
        ids: &[ReservationId],
    ) -> impl Future<Output = Result<HashMap<ReservationId, Reservation>, StoreError>> + Send;

    /// Every reservation of a sale (or only the held ones), from the by-sale index.
    fn reservations_of_sale(
        &self,
        sale: &SaleId,
        which: Which,
    ) -> impl Future<Output = Result<Vec<ReservationSummary>, StoreError>> + Send;

    /// Every order of a sale, from the orders table's by-sale index.
    fn orders_of_sale(
        &self,
        sale: &SaleId,
    ) -> impl Future<Output = Result<Vec<OrderSummary>, StoreError>> + Send;

    /// Writes the record of an orphan hold the reconciler is about to release (status EXPIRED,
    /// `reconciled = orphan_hold`), unless any record with that id exists. It closes the id:
    /// a late write of the dying reserve, or a retry with its Idempotency-Key, finds this
    /// record instead of creating a PENDING one for a unit that is back on sale.
    fn record_orphan(
        &self,
        reservation: &Reservation,
        now: Timestamp,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;

    /// PENDING -> FAILED with `failure_reason`, REMOVE `expiry_bucket`, conditional on PENDING.
    /// False if it was not PENDING any more.
    fn fail_pending(
        &self,
        id: ReservationId,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}
