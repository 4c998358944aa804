//! A per-process cache in front of a [`SaleCatalog`] for the hot reserve path: a sale's
//! settings change rarely, and every reserve needs them. Entries live for a short TTL, so an
//! admin update is seen within it. Writes go straight through and drop the entry.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use super::{CatalogError, Sale, SaleCatalog};
use crate::domain::{Clock, SaleId, Timestamp};

pub struct CachedSaleCatalog<C, K> {
    inner: C,
    clock: K,
    ttl: Duration,
    entries: RwLock<HashMap<SaleId, (Timestamp, Sale)>>,
}

impl<C: SaleCatalog, K: Clock> CachedSaleCatalog<C, K> {
    pub fn new(inner: C, clock: K, ttl: Duration) -> Self {
        Self {
            inner,
            clock,
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }
}

impl<C: SaleCatalog, K: Clock> SaleCatalog for CachedSaleCatalog<C, K> {
    async fn get(&self, id: &SaleId) -> Result<Option<Sale>, CatalogError> {
        let now = self.clock.now();
        if let Some((until, sale)) = self
            .entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            if now < *until {
                return Ok(Some(sale.clone()));
            }
        }
        let sale = self.inner.get(id).await?;
        if let Some(sale) = &sale {
            self.entries
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), (now.plus(self.ttl), sale.clone()));
        }
        Ok(sale)
    }

    async fn create(&self, sale: &Sale) -> Result<(), CatalogError> {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sale.sale_id);
        self.inner.create(sale).await
    }

    async fn update(&self, sale: &Sale) -> Result<(), CatalogError> {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&sale.sale_id);
        self.inner.update(sale).await
    }

    /// Not cached: the sweep that lists sales runs once a minute and wants the truth.
    async fn list(&self) -> Result<Vec<Sale>, CatalogError> {
        self.inner.list().await
    }
}
