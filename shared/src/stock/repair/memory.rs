//! An in-memory [`RepairRequests`] for tests: it remembers what was asked.

use std::sync::Mutex;

use super::{RepairError, RepairRequests};
use crate::domain::SaleId;

#[derive(Default)]
pub struct RecordedRepairs {
    requested: Mutex<Vec<SaleId>>,
}

impl RecordedRepairs {
    /// The sales a rebuild was asked for, in order.
    pub fn requested(&self) -> Vec<SaleId> {
        self.requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl RepairRequests for RecordedRepairs {
    async fn request_rebuild(&self, sale: &SaleId) -> Result<(), RepairError> {
        self.requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sale.clone());
        Ok(())
    }
}
