//! In-memory [`ReservationStore`] for fast unit tests. It can be told to fail, to test the
//! paths that must release a hold when the durable write fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{InsertOutcome, Reservation, ReservationStore, StoreError};
use crate::domain::ReservationId;

#[derive(Default)]
pub struct InMemoryReservationStore {
    records: Mutex<HashMap<ReservationId, Reservation>>,
    failing: AtomicBool,
}

impl InMemoryReservationStore {
    pub fn fail_writes(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn all(&self) -> Vec<Reservation> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

impl ReservationStore for InMemoryReservationStore {
    async fn insert_pending(&self, r: &Reservation) -> Result<InsertOutcome, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.contains_key(&r.reservation_id) {
            return Ok(InsertOutcome::AlreadyExists);
        }
        records.insert(r.reservation_id, r.clone());
        Ok(InsertOutcome::Inserted)
    }

    async fn get(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Ok(self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned())
    }
}
