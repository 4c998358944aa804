//! The sold-out fast path: once this process learns a sale is sold out, it answers "sold out"
//! for a short while without asking Redis. In a flash sale nearly every request after the
//! first seconds is a sold-out, so this takes the crowd off Redis.
//!
//! It can only err towards "sold out": a unit released during the window is found by the
//! first request after it. It never sells: every reservation still goes through Redis.
//! Trade-off, stated plainly: within the window, a retried request whose first attempt
//! succeeded is told "sold out" instead of being shown its reservation (it keeps the hold and
//! can read it back). Set the window to zero to turn the fast path off.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use super::{
    CommitOutcome, Hold, HoldSpec, HoldState, ReleaseOutcome, ReserveOutcome, ReserveRequest,
    RestoreOutcome, SaleStock, SetupOutcome, StockEngine, StockError, StockLevels, StockSetup,
};
use crate::domain::{Clock, IdempotencyKey, ReservationId, SaleId, Timestamp, UserId};

#[derive(Debug, Clone, Copy)]
pub struct SoldOutCacheConfig {
    /// How long a learned "sold out" is trusted. Zero disables the fast path.
    pub window: Duration,
}

impl Default for SoldOutCacheConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_millis(500),
        }
    }
}

/// A [`StockEngine`] decorator that adds the sold-out fast path to any engine.
pub struct SoldOutCache<S, K> {
    inner: S,
    clock: K,
    config: SoldOutCacheConfig,
    sold_out_until: RwLock<HashMap<SaleId, Timestamp>>,
}

impl<S: StockEngine, K: Clock> SoldOutCache<S, K> {
    pub fn new(inner: S, clock: K, config: SoldOutCacheConfig) -> Self {
        Self {
            inner,
            clock,
            config,
            sold_out_until: RwLock::new(HashMap::new()),
        }
    }

    /// True while this process trusts an earlier "sold out" for the sale.
    pub fn is_known_sold_out(&self, sale: &SaleId) -> bool {
        let now = self.clock.now();
        self.sold_out_until
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(sale)
            .is_some_and(|&until| now < until)
    }

    fn remember_sold_out(&self, sale: &SaleId) {
        if self.config.window.is_zero() {
            return;
        }
        let until = self.clock.now().plus(self.config.window);
        self.sold_out_until
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(sale.clone(), until);
    }

    /// Stock came back through this process: stop trusting "sold out" at once.
    fn forget(&self, sale: &SaleId) {
        self.sold_out_until
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(sale);
    }
}

impl<S: StockEngine, K: Clock> StockEngine for SoldOutCache<S, K> {
    async fn reserve(&self, request: &ReserveRequest) -> Result<ReserveOutcome, StockError> {
        if self.is_known_sold_out(&request.sale.sale_id) {
            return Ok(ReserveOutcome::SoldOut);
        }
        let outcome = self.inner.reserve(request).await?;
        if outcome == ReserveOutcome::SoldOut {
            self.remember_sold_out(&request.sale.sale_id);
        }
        Ok(outcome)
    }

    async fn release(
        &self,
        sale: &SaleStock,
        shard: u16,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, StockError> {
        let outcome = self.inner.release(sale, shard, id).await?;
        if matches!(outcome, ReleaseOutcome::Released { .. }) {
            self.forget(&sale.sale_id);
        }
        Ok(outcome)
    }

    async fn drop_claim(
        &self,
        sale: &SaleStock,
        user: &UserId,
        id: ReservationId,
    ) -> Result<bool, StockError> {
        self.inner.drop_claim(sale, user, id).await
    }

    async fn commit(
        &self,
        sale: &SaleStock,
        shard: u16,
        id: ReservationId,
    ) -> Result<CommitOutcome, StockError> {
        self.inner.commit(sale, shard, id).await
    }

    async fn setup(
        &self,
        sale: &SaleStock,
        setup: &StockSetup,
    ) -> Result<SetupOutcome, StockError> {
        self.forget(&sale.sale_id);
        self.inner.setup(sale, setup).await
    }

    async fn grow_to(&self, sale: &SaleStock, total_units: u64) -> Result<(), StockError> {
        self.inner.grow_to(sale, total_units).await?;
        self.forget(&sale.sale_id);
        Ok(())
    }

    async fn commit_paid(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
    ) -> Result<CommitOutcome, StockError> {
        self.inner.commit_paid(sale, hold, now).await
    }

    async fn ensure_held(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
    ) -> Result<RestoreOutcome, StockError> {
        self.inner.ensure_held(sale, hold, now).await
    }

    async fn rollback(
        &self,
        sale: &SaleStock,
        hold: &Hold,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<(), StockError> {
        self.inner.rollback(sale, hold, user, key).await?;
        // Units went back: a remembered sold-out may be false now.
        self.forget(&sale.sale_id);
        Ok(())
    }

    async fn hold_state(
        &self,
        sale: &SaleStock,
        shard: u16,
        id: ReservationId,
    ) -> Result<Option<HoldState>, StockError> {
        self.inner.hold_state(sale, shard, id).await
    }

    async fn levels(&self, sale: &SaleStock) -> Result<StockLevels, StockError> {
        self.inner.levels(sale).await
    }

    async fn set_per_user_limit(&self, sale: &SaleStock, limit: u32) -> Result<(), StockError> {
        self.inner.set_per_user_limit(sale, limit).await
    }
}
