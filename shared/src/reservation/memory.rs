//! In-memory [`ReservationStore`] for fast unit tests. It can be told to fail (the write has
//! no effect) or to lose its answers (the write commits, the caller gets an error), to test the
//! paths that must roll a reservation back, or must not.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

use super::{InsertOutcome, Reservation, ReservationStore, StoreError};
use crate::domain::ReservationId;

#[derive(Default)]
pub struct InMemoryReservationStore {
    records: Mutex<HashMap<ReservationId, Reservation>>,
    failing: AtomicBool,
    lost_answers: AtomicU32,
    failing_voids: AtomicBool,
    tombstones: Mutex<std::collections::HashSet<ReservationId>>,
}

impl InMemoryReservationStore {
    pub fn fail_writes(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The next `n` inserts commit, then answer with an error (their answer was lost).
    pub fn lose_answers(&self, n: u32) {
        self.lost_answers.store(n, Ordering::SeqCst);
    }

    /// Tombstone writes (`insert_void`) fail while set.
    pub fn fail_voids(&self, failing: bool) {
        self.failing_voids.store(failing, Ordering::SeqCst);
    }

    fn insert_if_absent(&self, r: Reservation) -> InsertOutcome {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.contains_key(&r.reservation_id) {
            return InsertOutcome::AlreadyExists;
        }
        records.insert(r.reservation_id, r);
        InsertOutcome::Inserted
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
        let outcome = self.insert_if_absent(r.clone());
        if self
            .lost_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StoreError::Unavailable("injected: answer lost".into()));
        }
        Ok(outcome)
    }

    async fn insert_void(&self, r: &Reservation) -> Result<InsertOutcome, StoreError> {
        if self.failing_voids.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected failure".into()));
        }
        let outcome = self.insert_if_absent(Reservation {
            status: super::ReservationStatus::Expired,
            ..r.clone()
        });
        if outcome == InsertOutcome::Inserted {
            self.tombstones
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(r.reservation_id);
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

    async fn get(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        Ok(self
            .records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned())
    }
}
