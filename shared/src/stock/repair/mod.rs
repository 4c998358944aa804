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

impl<T: RepairRequests> RepairRequests for std::sync::Arc<T> {
    fn request_rebuild(
        &self,
        sale: &SaleId,
    ) -> impl Future<Output = Result<(), RepairError>> + Send {
        (**self).request_rebuild(sale)
    }
}

impl<T: RepairRequests> RepairRequests for &T {
    fn request_rebuild(
        &self,
        sale: &SaleId,
    ) -> impl Future<Output = Result<(), RepairError>> + Send {
        (**self).request_rebuild(sale)
    }
}
