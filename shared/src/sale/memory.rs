//! In-memory [`SaleCatalog`] for fast unit tests of the handlers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{CatalogError, Sale, SaleCatalog};
use crate::domain::SaleId;

/// Clones share the same sales.
#[derive(Clone, Default)]
pub struct InMemorySaleCatalog {
    sales: Arc<Mutex<HashMap<SaleId, Sale>>>,
}

impl InMemorySaleCatalog {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SaleId, Sale>> {
        self.sales.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SaleCatalog for InMemorySaleCatalog {
    async fn get(&self, id: &SaleId) -> Result<Option<Sale>, CatalogError> {
        Ok(self.lock().get(id).cloned())
    }

    async fn create(&self, sale: &Sale) -> Result<(), CatalogError> {
        let mut sales = self.lock();
        if sales.contains_key(&sale.sale_id) {
            return Err(CatalogError::Conflict);
        }
        sales.insert(sale.sale_id.clone(), sale.clone());
        Ok(())
    }

    async fn update(&self, sale: &Sale) -> Result<(), CatalogError> {
        let mut sales = self.lock();
        match sales.get(&sale.sale_id) {
            Some(stored) if stored.version + 1 == sale.version => {
                sales.insert(sale.sale_id.clone(), sale.clone());
                Ok(())
            }
            _ => Err(CatalogError::Conflict),
        }
    }

    async fn list(&self) -> Result<Vec<Sale>, CatalogError> {
        let mut sales: Vec<Sale> = self.lock().values().cloned().collect();
        sales.sort_by(|a, b| a.sale_id.cmp(&b.sale_id));
        Ok(sales)
    }
}
