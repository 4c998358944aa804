//! Requests to rebuild a sale's stock at once, from wherever a fault is noticed.
//!
//! The reserve path notices a fenced shard ([`super::Unavailable::Fenced`]: Redis may have lost
//! acknowledged writes in a failover) on the first request after it; it asks for a rebuild here
//! and answers 503. The scheduled sweep would find the fenced shard within a minute too, but a
//! sale should not wait a minute: the request goes to the repair queue, whose consumer (the
//! `expiry-cleanup` function) rebuilds that sale within seconds. Requests are idempotent (the
//! rebuild takes a lock per sale; a second request finds the sale rebuilt and changes nothing).

pub mod memory;
pub mod sqs;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::domain::SaleId;

/// The message on the repair queue: `{"repair": "rebuild", "sale_id": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairRequest {
    pub repair: RepairKind,
    pub sale_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairKind {
    /// Pause, recompute every shard from the durable records, resume.
    Rebuild,
}

#[derive(Debug, thiserror::Error)]
#[error("repair queue unavailable: {0}")]
pub struct RepairError(pub String);

/// The port.
pub trait RepairRequests: Send + Sync {
    /// Asks for `sale` to be rebuilt as soon as possible. A failure is logged by the caller:
    /// the sweep finds the fenced shard anyway.
    fn request_rebuild(
        &self,
        sale: &SaleId,
    ) -> impl Future<Output = Result<(), RepairError>> + Send;
}

impl<M: RepairRequests> RepairRequests for std::sync::Arc<M> {
    fn request_rebuild(
        &self,
        sale: &SaleId,
    ) -> impl Future<Output = Result<(), RepairError>> + Send {
        (**self).request_rebuild(sale)
    }
}

impl<M: RepairRequests> RepairRequests for &M {
    fn request_rebuild(
        &self,
        sale: &SaleId,
    ) -> impl Future<Output = Result<(), RepairError>> + Send {
        (**self).request_rebuild(sale)
    }
}

/// At most one request per sale per `window` from this process: without it, a crowd meeting a
/// fenced or lost shard would send one message per refused request (thousands a second), and
/// the consumer would be invoked as often to find the rebuild already done. A request that
/// fails to send does not count, so the next caller tries again.
pub struct Debounced<M> {
    inner: M,
    window: std::time::Duration,
    last_sent: std::sync::Mutex<std::collections::HashMap<SaleId, std::time::Instant>>,
}

impl<M> Debounced<M> {
    /// 5 s: a rebuild takes about that long (its settle pause and the reads), and a request sent
    /// while one runs changes nothing.
    pub const DEFAULT_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

    pub fn new(inner: M, window: std::time::Duration) -> Self {
        Self {
            inner,
            window,
            last_sent: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// True if a request for `sale` should go out now; marks it sent.
    fn claim_slot(&self, sale: &SaleId) -> bool {
        let mut last = self.last_sent.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match last.get(sale) {
            Some(at) if now.duration_since(*at) < self.window => false,
            _ => {
                last.insert(sale.clone(), now);
                true
            }
        }
    }

    fn release_slot(&self, sale: &SaleId) {
        self.last_sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sale);
    }
}

impl<M: RepairRequests> RepairRequests for Debounced<M> {
    async fn request_rebuild(&self, sale: &SaleId) -> Result<(), RepairError> {
        if !self.claim_slot(sale) {
            return Ok(());
        }
        let sent = self.inner.request_rebuild(sale).await;
        if sent.is_err() {
            self.release_slot(sale);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::memory::RecordedRepairs;
    use super::*;

    #[tokio::test]
    async fn debounced_sends_one_request_per_sale_per_window() {
        let recorded = std::sync::Arc::new(RecordedRepairs::default());
        let debounced = Debounced::new(
            std::sync::Arc::clone(&recorded),
            std::time::Duration::from_millis(200),
        );
        let (a, b) = (SaleId::parse("a").unwrap(), SaleId::parse("b").unwrap());
        for _ in 0..100 {
            debounced.request_rebuild(&a).await.unwrap();
        }
        debounced.request_rebuild(&b).await.unwrap();
        assert_eq!(recorded.requested(), vec![a.clone(), b.clone()]);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        debounced.request_rebuild(&a).await.unwrap();
        assert_eq!(recorded.requested().len(), 3);
    }
}
