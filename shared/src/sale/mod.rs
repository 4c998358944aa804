//! Sales: what is sold, at what price, how much, when, and how many per buyer.
//! The durable record lives in DynamoDB ([`dynamo::DynamoSaleCatalog`]); the stock counters it
//! describes live in the stock engine.

pub mod cached;
pub mod dynamo;
pub mod http;
pub mod memory;
pub mod put;

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::domain::{Money, SaleId, Timestamp};
use crate::stock::{SaleStock, ShardCount};
use crate::waiting_room::RoomSettings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sale {
    pub sale_id: SaleId,
    pub name: String,
    pub price: Money,
    pub total_stock: u64,
    pub shards: ShardCount,
    pub per_user_limit: u32,
    pub hold: Duration,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Bumped on every update; updates are conditional on it (optimistic locking).
    pub version: u64,
    /// The sale's waiting room, if it has one ([`crate::waiting_room`]).
    pub waiting_room: Option<RoomSettings>,
}

/// Where a sale stands in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleWindow {
    Upcoming,
    Open,
    Ended,
}

impl Sale {
    pub const DEFAULT_HOLD: Duration = Duration::from_secs(600);

    pub fn window_at(&self, now: Timestamp) -> SaleWindow {
        if now < self.starts_at {
            SaleWindow::Upcoming
        } else if now >= self.ends_at {
            SaleWindow::Ended
        } else {
            SaleWindow::Open
        }
    }

    /// How long after its end a sale is still looked after by the maintenance sweep (expiry,
    /// hold reconciliation, rebuild detection): reservations made just before the end are
    /// held for `hold`, and the sweep may lag behind by a few runs.
    pub const MAINTENANCE_TAIL: Duration = Duration::from_secs(3600);

    /// True while the sale's stock may still change: from its creation until
    /// `ends_at + hold + MAINTENANCE_TAIL`. Upcoming sales count (their stock is set up
    /// before they open, and a lost stock record must be rebuilt before they do).
    pub fn needs_maintenance_at(&self, now: Timestamp) -> bool {
        now < self.ends_at.plus(self.hold).plus(Self::MAINTENANCE_TAIL)
    }

    pub fn stock(&self) -> SaleStock {
        SaleStock {
            sale_id: self.sale_id.clone(),
            shards: self.shards,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("sale store unavailable: {0}")]
    Store(String),
    #[error("sale record is malformed: {0}")]
    Malformed(String),
    /// A conditional write lost: the sale exists already, or changed since it was read.
    #[error("the sale changed concurrently")]
    Conflict,
}

/// The port.
pub trait SaleCatalog: Send + Sync {
    fn get(&self, id: &SaleId) -> impl Future<Output = Result<Option<Sale>, CatalogError>> + Send;
    /// Creates a sale; `Conflict` if one exists with that id.
    fn create(&self, sale: &Sale) -> impl Future<Output = Result<(), CatalogError>> + Send;
    /// Replaces a sale if its stored version is `sale.version - 1`; `Conflict` otherwise.
    fn update(&self, sale: &Sale) -> impl Future<Output = Result<(), CatalogError>> + Send;
    /// Every sale, for the maintenance sweep (never on a buyer's path).
    fn list(&self) -> impl Future<Output = Result<Vec<Sale>, CatalogError>> + Send;
}

/// A catalog shared by two users in one function (reserve's service and its waiting-room gate
/// read through one cache, not two).
impl<T: SaleCatalog> SaleCatalog for std::sync::Arc<T> {
    fn get(&self, id: &SaleId) -> impl Future<Output = Result<Option<Sale>, CatalogError>> + Send {
        (**self).get(id)
    }
    fn create(&self, sale: &Sale) -> impl Future<Output = Result<(), CatalogError>> + Send {
        (**self).create(sale)
    }
    fn update(&self, sale: &Sale) -> impl Future<Output = Result<(), CatalogError>> + Send {
        (**self).update(sale)
    }
    fn list(&self) -> impl Future<Output = Result<Vec<Sale>, CatalogError>> + Send {
        (**self).list()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::memory::InMemorySaleCatalog;
    use super::*;

    #[tokio::test]
    async fn two_holders_of_one_shared_catalog_see_the_same_sales() {
        let shared = Arc::new(InMemorySaleCatalog::default());
        let (a, b) = (shared.clone(), shared);
        let id = SaleId::parse("drop").unwrap();
        let sale = Sale {
            sale_id: id.clone(),
            name: "drop".into(),
            price: crate::domain::Money::new(100, crate::domain::Currency::parse("EUR").unwrap())
                .unwrap(),
            total_stock: 1,
            shards: ShardCount::new(1).unwrap(),
            per_user_limit: 1,
            hold: Sale::DEFAULT_HOLD,
            starts_at: Timestamp::from_millis(0),
            ends_at: Timestamp::from_millis(1),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
            version: 1,
            waiting_room: None,
        };
        a.create(&sale).await.unwrap();
        assert_eq!(b.get(&id).await.unwrap(), Some(sale.clone()));
        assert_eq!(b.list().await.unwrap(), vec![sale]);
    }
}
