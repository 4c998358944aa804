//! An in-memory [`StockEngine`] for fast unit tests of the code above the engine. One pool of
//! units per sale (shards are reported as 0), the per-user limit, idempotency by
//! (user, key). The real semantics are tested against Redis; this only has to be faithful
//! enough for the handlers' branches.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{
    CommitOutcome, Hold, ReleaseOutcome, ReserveOutcome, ReserveRequest, SaleStock, SetupOutcome,
    ShardLevel, StockEngine, StockError, StockLevels, StockSetup,
};
use crate::domain::{ReservationId, SaleId, UserId};

#[derive(Default)]
struct SaleState {
    initial: i64,
    available: i64,
    held: i64,
    sold: i64,
    limit: u32,
    claims: HashMap<UserId, u32>,
    holds: HashMap<ReservationId, (UserId, u32, char)>,
    keys: HashMap<(UserId, String), Hold>,
}

#[derive(Default)]
pub struct InMemoryStockEngine {
    sales: Mutex<HashMap<SaleId, SaleState>>,
}

impl InMemoryStockEngine {
    fn with<T>(&self, sale: &SaleId, f: impl FnOnce(Option<&mut SaleState>) -> T) -> T {
        let mut sales = self.sales.lock().unwrap_or_else(|p| p.into_inner());
        f(sales.get_mut(sale))
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
                return if hold.quantity == req.quantity {
                    ReserveOutcome::Duplicate(*hold)
                } else {
                    ReserveOutcome::KeyReused {
                        original: hold.reservation_id,
                    }
                };
            }
            let qty = req.quantity.get();
            let claimed = s.claims.get(&req.user).copied().unwrap_or(0);
            if claimed + qty > s.limit {
                return ReserveOutcome::LimitReached {
                    claimed,
                    limit: s.limit,
                };
            }
            if s.available < i64::from(qty) {
                return if s.available == 0 {
                    ReserveOutcome::SoldOut
                } else {
                    ReserveOutcome::InsufficientStock
                };
            }
            s.available -= i64::from(qty);
            s.held += i64::from(qty);
            *s.claims.entry(req.user.clone()).or_default() += qty;
            let hold = Hold {
                reservation_id: req.reservation_id,
                shard: 0,
                quantity: req.quantity,
                expires_at: req.expires_at,
            };
            s.holds
                .insert(req.reservation_id, (req.user.clone(), qty, 'H'));
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
            match s.holds.get_mut(&id) {
                None => ReleaseOutcome::NotFound,
                Some((_, _, 'R')) => ReleaseOutcome::AlreadyReleased,
                Some((_, _, 'C')) => ReleaseOutcome::WasCommitted,
                Some((user, qty, state)) => {
                    *state = 'R';
                    s.available += i64::from(*qty);
                    s.held -= i64::from(*qty);
                    if let Some(c) = s.claims.get_mut(user) {
                        *c -= *qty;
                    }
                    ReleaseOutcome::Released {
                        user: user.clone(),
                        quantity: *qty,
                    }
                }
            }
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
            match s.holds.get_mut(&id) {
                None => CommitOutcome::NotFound,
                Some((_, _, 'C')) => CommitOutcome::AlreadyCommitted,
                Some((_, _, 'R')) => CommitOutcome::WasReleased,
                Some((_, qty, state)) => {
                    *state = 'C';
                    s.held -= i64::from(*qty);
                    s.sold += i64::from(*qty);
                    CommitOutcome::Committed
                }
            }
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

    async fn top_up(&self, sale: &SaleStock, units: u64) -> Result<(), StockError> {
        self.with(&sale.sale_id, |state| match state {
            Some(s) => {
                s.initial += units as i64;
                s.available += units as i64;
                Ok(())
            }
            None => Err(StockError::InvalidSetup(
                "cannot top up a sale that is not set up",
            )),
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
