//! An in-memory [`StockEngine`] for fast unit tests of the code above the engine. One pool of
//! units per sale (every hold is on shard 0), the per-user limit, idempotency by
//! (user, key), rollbacks, and the re-taking of lost holds. The real semantics are tested
//! against Redis; this only has to be faithful enough for the services' branches.
//! [`InMemoryStockEngine::lose_hold`] simulates what a failover can do to a hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{
    split_evenly, CommitOutcome, Hold, HoldSpec, HoldState, ReleaseOutcome, ReserveOutcome,
    ReserveRequest, RestoreOutcome, SaleStock, SetupOutcome, ShardLevel, StockEngine, StockError,
    StockLevels, StockSetup,
};
use crate::domain::{IdempotencyKey, ReservationId, SaleId, Timestamp, UserId};

#[derive(Debug, Clone)]
struct HoldEntry {
    user: UserId,
    qty: u32,
    state: HoldState,
}

#[derive(Default)]
struct SaleState {
    initial: i64,
    available: i64,
    held: i64,
    sold: i64,
    limit: u32,
    claims: HashMap<UserId, HashMap<ReservationId, u32>>,
    holds: HashMap<ReservationId, HoldEntry>,
    keys: HashMap<(UserId, String), Hold>,
}

impl SaleState {
    fn claimed(&self, user: &UserId) -> u32 {
        self.claims.get(user).map_or(0, |c| c.values().sum())
    }

    fn unclaim(&mut self, user: &UserId, id: ReservationId) {
        if let Some(c) = self.claims.get_mut(user) {
            c.remove(&id);
        }
    }

    /// Takes `qty` units into a hold (or a sale), even below zero.
    fn take(&mut self, spec: &HoldSpec, state: HoldState) -> i64 {
        let qty = spec.quantity.get();
        self.available -= i64::from(qty);
        match state {
            HoldState::Committed => self.sold += i64::from(qty),
            _ => self.held += i64::from(qty),
        }
        self.holds.insert(
            spec.reservation_id,
            HoldEntry {
                user: spec.user.clone(),
                qty,
                state,
            },
        );
        self.claims
            .entry(spec.user.clone())
            .or_default()
            .insert(spec.reservation_id, qty);
        self.available
    }
}

/// Clones share the same stock.
#[derive(Clone, Default)]
pub struct InMemoryStockEngine {
    sales: Arc<Mutex<HashMap<SaleId, SaleState>>>,
}

impl InMemoryStockEngine {
    fn with<T>(&self, sale: &SaleId, f: impl FnOnce(Option<&mut SaleState>) -> T) -> T {
        let mut sales = self.sales.lock().unwrap_or_else(|p| p.into_inner());
        f(sales.get_mut(sale))
    }

    /// What a failover that lost an acknowledged write does to a hold: the hold is gone, its
    /// units are available again and the buyer's claim is gone. Returns false if there was no
    /// active hold.
    pub fn lose_hold(&self, sale: &SaleId, id: ReservationId) -> bool {
        self.with(sale, |state| {
            let Some(s) = state else { return false };
            match s.holds.remove(&id) {
                Some(entry) if entry.state == HoldState::Held => {
                    s.available += i64::from(entry.qty);
                    s.held -= i64::from(entry.qty);
                    s.unclaim(&entry.user, id);
                    true
                }
                Some(entry) => {
                    s.holds.insert(id, entry);
                    false
                }
                None => false,
            }
        })
    }
}

impl StockEngine for InMemoryStockEngine {
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome, StockError> {
        Ok(self.with(&req.sale.sale_id, |state| {
            let Some(s) = state else {
                return ReserveOutcome::Unavailable(super::Unavailable::NotSetUp);
            };
            let key = (req.user.clone(), req.idempotency_key.as_str().to_owned());
            if let Some(hold) = s.keys.get(&key) {
                return if hold.reservation_id == req.reservation_id {
                    ReserveOutcome::Reserved(*hold)
                } else if hold.quantity == req.quantity {
                    ReserveOutcome::Duplicate(*hold)
                } else {
                    ReserveOutcome::KeyReused {
                        original: hold.reservation_id,
                    }
                };
            }
            let qty = req.quantity.get();
            let claimed = s.claimed(&req.user);
            if claimed + qty > s.limit {
                return ReserveOutcome::LimitReached {
                    claimed,
                    limit: s.limit,
                };
            }
            if s.available < i64::from(qty) {
                return if s.available <= 0 {
                    ReserveOutcome::SoldOut
                } else {
                    ReserveOutcome::InsufficientStock
                };
            }
            let hold = Hold {
                reservation_id: req.reservation_id,
                shard: 0,
                quantity: req.quantity,
                expires_at: req.expires_at,
            };
            s.take(
                &HoldSpec {
                    reservation_id: req.reservation_id,
                    user: req.user.clone(),
                    quantity: req.quantity,
                    shard: 0,
                    expires_at: req.expires_at,
                },
                HoldState::Held,
            );
            s.keys.insert(key, hold);
            ReserveOutcome::Reserved(hold)
        }))
    }

    async fn release(
        &self,
        sale: &SaleStock,
        _shard: u16,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, StockError> {
        Ok(self.with(&sale.sale_id, |state| {
            let Some(s) = state else {
                return ReleaseOutcome::SaleNotSetUp;
            };
            let Some(entry) = s.holds.get_mut(&id) else {
                return ReleaseOutcome::NotFound;
            };
            match entry.state {
                HoldState::Released | HoldState::Voided => ReleaseOutcome::AlreadyReleased,
                HoldState::Committed => ReleaseOutcome::WasCommitted,
                HoldState::Held => {
                    entry.state = HoldState::Released;
                    let (user, qty) = (entry.user.clone(), entry.qty);
                    s.available += i64::from(qty);
                    s.held -= i64::from(qty);
                    s.unclaim(&user, id);
                    ReleaseOutcome::Released {
                        user,
                        quantity: qty,
                    }
                }
            }
        }))
    }

    async fn drop_claim(
        &self,
        sale: &SaleStock,
        user: &UserId,
        id: ReservationId,
    ) -> Result<bool, StockError> {
        Ok(self.with(&sale.sale_id, |state| {
            let Some(s) = state else { return false };
            let had = s.claims.get(user).is_some_and(|c| c.contains_key(&id));
            s.unclaim(user, id);
            had
        }))
    }

    async fn commit(
        &self,
        sale: &SaleStock,
        _shard: u16,
        id: ReservationId,
    ) -> Result<CommitOutcome, StockError> {
        Ok(self.with(&sale.sale_id, |state| {
            let Some(s) = state else {
                return CommitOutcome::SaleNotSetUp;
            };
            let Some(entry) = s.holds.get_mut(&id) else {
                return CommitOutcome::NotFound;
            };
            match entry.state {
                HoldState::Committed => CommitOutcome::AlreadyCommitted,
                HoldState::Released | HoldState::Voided => CommitOutcome::WasReleased,
                HoldState::Held => {
                    entry.state = HoldState::Committed;
                    let qty = i64::from(entry.qty);
                    s.held -= qty;
                    s.sold += qty;
                    CommitOutcome::Committed
                }
            }
        }))
    }

    async fn commit_paid(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        _now: Timestamp,
    ) -> Result<CommitOutcome, StockError> {
        let outcome = self.commit(sale, hold.shard, hold.reservation_id).await?;
        if !matches!(
            outcome,
            CommitOutcome::NotFound | CommitOutcome::WasReleased
        ) {
            return Ok(outcome);
        }
        Ok(self.with(&sale.sale_id, |state| match state {
            None => CommitOutcome::SaleNotSetUp,
            Some(s) => CommitOutcome::Retaken {
                available_after: s.take(hold, HoldState::Committed),
            },
        }))
    }

    async fn ensure_held(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        _now: Timestamp,
    ) -> Result<RestoreOutcome, StockError> {
        Ok(self.with(&sale.sale_id, |state| {
            let Some(s) = state else {
                return RestoreOutcome::SaleNotSetUp;
            };
            match s.holds.get(&hold.reservation_id).map(|e| e.state) {
                Some(HoldState::Held) => RestoreOutcome::AlreadyHeld,
                Some(HoldState::Committed) => RestoreOutcome::WasCommitted,
                _ if s.available < i64::from(hold.quantity.get()) => RestoreOutcome::NoUnits {
                    available: s.available,
                },
                _ => RestoreOutcome::Restored {
                    available_after: s.take(hold, HoldState::Held),
                },
            }
        }))
    }

    async fn rollback(
        &self,
        sale: &SaleStock,
        hold: &Hold,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<(), StockError> {
        self.with(&sale.sale_id, |state| {
            let Some(s) = state else { return };
            if let Some(entry) = s.holds.get_mut(&hold.reservation_id) {
                match entry.state {
                    HoldState::Committed => return,
                    HoldState::Held => {
                        let qty = i64::from(entry.qty);
                        s.available += qty;
                        s.held -= qty;
                    }
                    HoldState::Released | HoldState::Voided => {}
                }
                entry.state = HoldState::Voided;
            }
            s.unclaim(user, hold.reservation_id);
            let k = (user.clone(), key.as_str().to_owned());
            if s.keys.get(&k).map(|h| h.reservation_id) == Some(hold.reservation_id) {
                s.keys.remove(&k);
            }
        });
        Ok(())
    }

    async fn hold_state(
        &self,
        sale: &SaleStock,
        _shard: u16,
        id: ReservationId,
    ) -> Result<Option<HoldState>, StockError> {
        Ok(self.with(&sale.sale_id, |state| {
            state.and_then(|s| s.holds.get(&id).map(|e| e.state))
        }))
    }

    async fn setup(
        &self,
        sale: &SaleStock,
        setup: &StockSetup,
    ) -> Result<SetupOutcome, StockError> {
        let mut sales = self.sales.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = sales.get(&sale.sale_id) {
            return Ok(SetupOutcome::AlreadyExists {
                matches: s.initial == setup.total_units as i64 && s.limit == setup.per_user_limit,
            });
        }
        sales.insert(
            sale.sale_id.clone(),
            SaleState {
                initial: setup.total_units as i64,
                available: setup.total_units as i64,
                limit: setup.per_user_limit,
                ..Default::default()
            },
        );
        Ok(SetupOutcome::Created)
    }

    async fn grow_to(&self, sale: &SaleStock, total_units: u64) -> Result<(), StockError> {
        let target: u64 = split_evenly(total_units, sale.shards).iter().sum();
        self.with(&sale.sale_id, |state| match state {
            Some(s) => {
                let add = (target as i64 - s.initial).max(0);
                s.initial += add;
                s.available += add;
                Ok(())
            }
            None => Err(StockError::InvalidSetup("the sale's stock is not set up")),
        })
    }

    async fn levels(&self, sale: &SaleStock) -> Result<StockLevels, StockError> {
        Ok(self.with(&sale.sale_id, |state| StockLevels {
            shards: vec![state.map(|s| ShardLevel {
                shard: 0,
                initial: s.initial,
                available: s.available,
                held: s.held,
                sold: s.sold,
            })],
        }))
    }

    async fn set_per_user_limit(&self, sale: &SaleStock, limit: u32) -> Result<(), StockError> {
        self.with(&sale.sale_id, |state| match state {
            Some(s) => {
                s.limit = limit;
                Ok(())
            }
            None => Err(StockError::InvalidSetup(
                "cannot configure a sale that is not set up",
            )),
        })
    }
}
