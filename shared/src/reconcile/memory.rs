//! An in-memory ledger (reservations and orders) implementing [`DurableRecords`],
//! [`ExpiryStore`] and [`ReservationStore`], for fast tests of the reserve path, the cleanup,
//! the reconciler and the rebuild against a real Redis (one ledger, the way one table serves
//! them all). The DynamoDB adapters are tested against LocalStack. Clones share the ledger.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{DurableRecords, OrderSummary, ReservationSummary, Which};
use crate::domain::{ReservationId, SaleId, Timestamp};
use crate::expiry::{DuePage, DueReservation, ExpireOutcome, ExpiryStore};
use crate::reservation::item::expiry_bucket;
use crate::reservation::{
    InsertOutcome, Reservation, ReservationStatus, ReservationStore, StoreError,
};

#[derive(Clone, Default)]
pub struct InMemoryLedger {
    reservations: Arc<Mutex<HashMap<ReservationId, Reservation>>>,
    orders: Arc<Mutex<HashMap<ReservationId, OrderSummary>>>,
    failing_writes: Arc<AtomicBool>,
    /// Records the by-sale index does not show yet (DynamoDB's GSIs are eventually consistent).
    unindexed: Arc<Mutex<std::collections::HashSet<ReservationId>>>,
    /// Records the index still shows with an older status.
    stale_status: Arc<Mutex<HashMap<ReservationId, ReservationStatus>>>,
    /// Ids closed by a tombstone (a rolled-back reserve, or an orphan hold's record).
    tombstones: Arc<Mutex<std::collections::HashSet<ReservationId>>>,
}

impl ReservationStore for InMemoryLedger {
    async fn insert_pending(&self, r: &Reservation) -> Result<InsertOutcome, StoreError> {
        self.check_writes()?;
        let mut all = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        if all.contains_key(&r.reservation_id) {
            return Ok(InsertOutcome::AlreadyExists);
        }
        all.insert(r.reservation_id, r.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn get(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Ok(InMemoryLedger::get(self, id))
    }

    async fn insert_void(&self, r: &Reservation) -> Result<InsertOutcome, StoreError> {
        let outcome = self
            .insert_pending(&Reservation {
                status: ReservationStatus::Expired,
                ..r.clone()
            })
            .await?;
        if outcome == InsertOutcome::Inserted {
            self.tombstone(r.reservation_id);
        }
        Ok(outcome)
    }

    async fn is_tombstone(&self, id: ReservationId) -> Result<bool, StoreError> {
        Ok(self
            .tombstones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id))
    }
}

impl InMemoryLedger {
    fn tombstone(&self, id: ReservationId) {
        self.tombstones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    pub fn put(&self, reservation: Reservation) {
        self.reservations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(reservation.reservation_id, reservation);
    }

    /// Records an order and marks its reservation CONFIRMED (what the saga's transaction does).
    pub fn confirm(&self, id: ReservationId) {
        let mut reservations = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = reservations.get_mut(&id) {
            r.status = ReservationStatus::Confirmed;
            self.orders
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    id,
                    OrderSummary {
                        reservation_id: id,
                        user_id: r.user_id.clone(),
                        quantity: r.quantity,
                        shard: r.shard,
                    },
                );
        }
    }

    pub fn set_status(&self, id: ReservationId, status: ReservationStatus) {
        if let Some(r) = self
            .reservations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&id)
        {
            r.status = status;
        }
    }

    pub fn get(&self, id: ReservationId) -> Option<Reservation> {
        self.reservations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub fn all(&self) -> Vec<Reservation> {
        self.reservations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The by-sale index lags: `id` is readable by id but not listed until `index_caught_up`.
    pub fn lag_index(&self, id: ReservationId) {
        self.unindexed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    /// The by-sale index lags: it still shows `id` with `status`.
    pub fn show_stale_status(&self, id: ReservationId, status: ReservationStatus) {
        self.stale_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, status);
    }

    pub fn index_caught_up(&self) {
        self.unindexed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Makes every write fail (reads still work).
    pub fn fail_writes(&self, failing: bool) {
        self.failing_writes.store(failing, Ordering::SeqCst);
    }

    fn check_writes(&self) -> Result<(), StoreError> {
        if self.failing_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        Ok(())
    }
}

impl DurableRecords for InMemoryLedger {
    async fn get_many(
        &self,
        ids: &[ReservationId],
    ) -> Result<HashMap<ReservationId, Reservation>, StoreError> {
        let all = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        Ok(ids
            .iter()
            .filter_map(|id| all.get(id).map(|r| (*id, r.clone())))
            .collect())
    }

    async fn reservations_of_sale(
        &self,
        sale: &SaleId,
        which: Which,
    ) -> Result<Vec<ReservationSummary>, StoreError> {
        let all = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        let unindexed = self.unindexed.lock().unwrap_or_else(|p| p.into_inner());
        let stale = self.stale_status.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<ReservationSummary> = all
            .values()
            .filter(|r| &r.sale_id == sale && !unindexed.contains(&r.reservation_id))
            .map(|r| {
                let mut summary = ReservationSummary::from(r);
                if let Some(status) = stale.get(&r.reservation_id) {
                    summary.status = *status;
                }
                summary
            })
            .filter(|r| which.includes(r.status))
            .collect();
        out.sort_by_key(|r| r.reservation_id);
        Ok(out)
    }

    async fn orders_of_sale(&self, sale: &SaleId) -> Result<Vec<OrderSummary>, StoreError> {
        let reservations = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        let orders = self.orders.lock().unwrap_or_else(|p| p.into_inner());
        Ok(orders
            .values()
            .filter(|o| {
                reservations
                    .get(&o.reservation_id)
                    .is_some_and(|r| &r.sale_id == sale)
            })
            .cloned()
            .collect())
    }

    async fn record_orphan(
        &self,
        reservation: &Reservation,
        _now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.check_writes()?;
        let mut all = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        if all.contains_key(&reservation.reservation_id) {
            return Ok(InsertOutcome::AlreadyExists);
        }
        all.insert(reservation.reservation_id, reservation.clone());
        drop(all);
        self.tombstone(reservation.reservation_id);
        Ok(InsertOutcome::Inserted)
    }

    async fn fail_pending(
        &self,
        id: ReservationId,
        _reason: &str,
        _now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.check_writes()?;
        let mut all = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        match all.get_mut(&id) {
            Some(r) if r.status == ReservationStatus::Pending => {
                r.status = ReservationStatus::Failed;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl ExpiryStore for InMemoryLedger {
    /// The index key of the last item returned, like DynamoDB's LastEvaluatedKey.
    type Cursor = (Timestamp, ReservationId);

    async fn due(
        &self,
        bucket: &str,
        now: Timestamp,
        limit: u32,
        after: Option<(Timestamp, ReservationId)>,
    ) -> Result<DuePage<(Timestamp, ReservationId)>, StoreError> {
        let all = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        let mut due: Vec<&Reservation> = all
            .values()
            .filter(|r| r.status == ReservationStatus::Pending)
            .filter(|r| r.expires_at <= now && expiry_bucket(r.reservation_id) == bucket)
            .filter(|r| after.is_none_or(|key| (r.expires_at, r.reservation_id) > key))
            .collect();
        due.sort_by_key(|r| (r.expires_at, r.reservation_id));
        let more = due.len() > limit as usize;
        due.truncate(limit as usize);
        let next = match due.last() {
            Some(last) if more => Some((last.expires_at, last.reservation_id)),
            _ => None,
        };
        let items = due
            .iter()
            .map(|r| DueReservation {
                reservation_id: r.reservation_id,
                sale_id: r.sale_id.clone(),
                user_id: r.user_id.clone(),
                quantity: r.quantity,
                shard: r.shard,
                expires_at: r.expires_at,
            })
            .collect();
        Ok(DuePage { items, next })
    }

    async fn expire(
        &self,
        ids: &[ReservationId],
        now: Timestamp,
    ) -> Vec<Result<ExpireOutcome, StoreError>> {
        if let Err(e) = self.check_writes() {
            return ids
                .iter()
                .map(|_| Err(StoreError::Unavailable(e.to_string())))
                .collect();
        }
        let mut all = self.reservations.lock().unwrap_or_else(|p| p.into_inner());
        ids.iter()
            .map(|id| match all.get_mut(id) {
                Some(r) if r.status == ReservationStatus::Pending && r.expires_at <= now => {
                    r.status = ReservationStatus::Expired;
                    Ok(ExpireOutcome::Expired)
                }
                _ => Ok(ExpireOutcome::NotPending),
            })
            .collect()
    }

    fn max_batch(&self) -> usize {
        25
    }
}

/// A [`super::PaymentRecovery`] for tests of the reconciler: it records which payments it was
/// asked about and answers with a fixed check.
pub struct RecordedPaymentChecks {
    pub answer: super::PaymentCheck,
    asked: Mutex<Vec<ReservationId>>,
}

impl Default for RecordedPaymentChecks {
    fn default() -> Self {
        Self {
            answer: super::PaymentCheck::Running,
            asked: Mutex::new(Vec::new()),
        }
    }
}

impl RecordedPaymentChecks {
    pub fn asked(&self) -> Vec<ReservationId> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl super::PaymentRecovery for RecordedPaymentChecks {
    async fn settle(&self, id: ReservationId) -> Result<super::PaymentCheck, super::RecoveryError> {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
        Ok(self.answer)
    }
}
