//! Reservations: a buyer's hold on units of a sale, from PENDING to CONFIRMED, FAILED or
//! EXPIRED. The durable record lives in DynamoDB; the hold itself in the stock engine.

pub mod dynamo;
pub mod http;
pub mod item;
pub mod memory;
pub mod reserve;

pub use item::ReservationSummary;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::domain::{Money, Quantity, ReservationId, SaleId, Timestamp, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    Pending,
    PaymentProcessing,
    Confirmed,
    Failed,
    Expired,
}

impl ReservationStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::PaymentProcessing,
        Self::Confirmed,
        Self::Failed,
        Self::Expired,
    ];

    /// The stored (and wire) form: the one table of status names.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::PaymentProcessing => "PAYMENT_PROCESSING",
            Self::Confirmed => "CONFIRMED",
            Self::Failed => "FAILED",
            Self::Expired => "EXPIRED",
        }
    }

    /// PENDING or PAYMENT_PROCESSING: the reservation holds its units.
    pub fn is_held(self) -> bool {
        matches!(self, Self::Pending | Self::PaymentProcessing)
    }

    /// The inverse of [`Self::as_str`].
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub reservation_id: ReservationId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub quantity: Quantity,
    /// The stock shard holding the units (needed to release or commit them).
    pub shard: u16,
    pub status: ReservationStatus,
    /// What the buyer will be charged: unit price times quantity, fixed at reservation time.
    pub amount: Money,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// How a reservation looks to its buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReservationView {
    pub reservation_id: String,
    pub sale_id: String,
    pub quantity: u32,
    pub status: ReservationStatus,
    pub amount: Money,
    pub created_at: String,
    pub expires_at: String,
}

impl From<&Reservation> for ReservationView {
    fn from(r: &Reservation) -> Self {
        Self {
            reservation_id: r.reservation_id.to_string(),
            sale_id: r.sale_id.to_string(),
            quantity: r.quantity.get(),
            status: r.status,
            amount: r.amount,
            created_at: r.created_at.to_rfc3339(),
            expires_at: r.expires_at.to_rfc3339(),
        }
    }
}

/// The stores' error (it lives with the stores: the DynamoDB helpers build it).
pub use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// A record with this id exists already (a retry that repaired nothing).
    AlreadyExists,
}

/// The port for the durable records.
pub trait ReservationStore: Send + Sync {
    fn insert_pending(
        &self,
        reservation: &Reservation,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;

    /// [`Self::insert_pending`] with the buyer's email address on the record (where the
    /// notifications about it go; the record's change stream carries it to the events). A
    /// store that keeps no contact details ignores it.
    fn insert_pending_with_email(
        &self,
        reservation: &Reservation,
        email: Option<&str>,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send {
        let _ = email;
        self.insert_pending(reservation)
    }

    fn get(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<Option<Reservation>, StoreError>> + Send;

    /// Closes the id of a reservation whose durable write failed, before its hold is rolled
    /// back: writes a tombstone (EXPIRED, `reconciled = rolled_back`, no event) unless a record
    /// with this id exists. `Inserted`: the id is closed, rolling back is safe (a late write or
    /// a replay of the same attempt now finds the tombstone). `AlreadyExists`: a record exists
    /// (the failed write had committed, or a replay wrote it): do not roll back, read it.
    fn insert_void(
        &self,
        reservation: &Reservation,
    ) -> impl Future<Output = Result<InsertOutcome, StoreError>> + Send;

    /// True if the record with this id is a tombstone: written to close the id of an attempt
    /// whose buyer was never told it succeeded (`reconciled` = `rolled_back` by
    /// [`ReservationStore::insert_void`], or `orphan_hold` by the hold reconciler). A replay of
    /// such a key is refused (409 idempotency-key-spent), not answered with the dead
    /// reservation. False for records that do not exist.
    fn is_tombstone(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for status in ReservationStatus::ALL {
            assert_eq!(ReservationStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ReservationStatus::parse("pending"), None);
    }
}
