//! The put-sale use case (`PUT /sales/{saleId}`, admin): create a sale, or change its price,
//! window, hold time, per-user limit and stock (grow only), then make Redis agree.
//!
//! Order: the durable record first (it is the source of truth a stock rebuild reads), then
//! Redis. The Redis side *converges*: it compares the stock with the catalog and applies the
//! difference (set up missing shards, grow each shard to its share of the total, set the
//! limit), every step idempotent. So a PUT that wrote DynamoDB and then failed on Redis is
//! finished by any retry (even one with the same body, which changes nothing in DynamoDB), and
//! a step that runs twice changes nothing the second time.

use super::{CatalogError, Sale, SaleCatalog, SaleWindow};
use crate::domain::{Clock, Timestamp};
use crate::stock::{StockEngine, StockError, StockSetup};

/// Why a put was refused or failed. [`super::http`] maps each to one problem.
#[derive(Debug, thiserror::Error)]
pub enum PutSaleError {
    #[error("the sale changed concurrently")]
    Conflict,
    #[error("shards is fixed at creation ({0})")]
    ShardsFixed(u16),
    #[error("total_stock can only grow during a sale (now {0})")]
    StockCannotShrink(u64),
    /// Redis lost the sale's stock while it may have reservations: only a rebuild from the
    /// durable records may restore it.
    #[error("the sale's stock must be rebuilt first")]
    RebuildNeeded,
    /// The sale's waiting room has taken joins (its pre-queue opened at `since`): what timed the
    /// places given out is fixed while the room stays on: the opening (the pre-queue's seed and
    /// the tickets are bound to it), the drain rate and the pre-queue's length. The room may
    /// still be removed, and its other settings (mode, cap, window, boost) changed.
    #[error("the waiting room has started")]
    RoomStarted { since: Timestamp },
    #[error(transparent)]
    Catalog(CatalogError),
    #[error(transparent)]
    Stock(#[from] StockError),
}

impl From<CatalogError> for PutSaleError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Conflict => Self::Conflict,
            other => Self::Catalog(other),
        }
    }
}

/// What a successful put did.
#[derive(Debug, Clone)]
pub struct PutSaleOutcome {
    pub sale: Sale,
    pub created: bool,
}

/// The fields an admin sets; the rest (times of record, version) are the catalog's.
fn same_settings(a: &Sale, b: &Sale) -> bool {
    a.name == b.name
        && a.price == b.price
        && a.total_stock == b.total_stock
        && a.shards == b.shards
        && a.per_user_limit == b.per_user_limit
        && a.hold == b.hold
        && a.starts_at == b.starts_at
        && a.ends_at == b.ends_at
        && a.waiting_room == b.waiting_room
}

/// Creates or updates `wanted` (validated by the caller), then converges its stock.
pub async fn put_sale<C: SaleCatalog, S: StockEngine, K: Clock>(
    catalog: &C,
    stock: &S,
    clock: &K,
    wanted: Sale,
) -> Result<PutSaleOutcome, PutSaleError> {
    let now = clock.now();
    let (sale, created) = match catalog.get(&wanted.sale_id).await? {
        None => match catalog.create(&wanted).await {
            Ok(()) => (wanted, true),
            // Created meanwhile, or our own create whose answer was lost: read it back.
            Err(CatalogError::Conflict) => match catalog.get(&wanted.sale_id).await? {
                Some(stored) if same_settings(&stored, &wanted) => (stored, true),
                _ => return Err(PutSaleError::Conflict),
            },
            Err(e) => return Err(e.into()),
        },
        Some(old) => (update(catalog, stock, old, wanted, now).await?, false),
    };
    converge(stock, &sale).await?;
    Ok(PutSaleOutcome { sale, created })
}

async fn update<C: SaleCatalog, S: StockEngine>(
    catalog: &C,
    stock: &S,
    old: Sale,
    wanted: Sale,
    now: Timestamp,
) -> Result<Sale, PutSaleError> {
    let levels = stock.levels(&old.stock()).await?;
    let all_missing = levels.shards.iter().all(Option::is_none);
    // Missing shards on an existing sale mean Redis lost them (or a create died before seeding
    // them). Seeding them would be fresh stock for units that may be held or sold; before the
    // sale opens nothing can be held or sold yet, so a sale that never got its stock may.
    let never_opened = all_missing && old.window_at(now) == SaleWindow::Upcoming;
    if !levels.is_complete() && !never_opened {
        return Err(PutSaleError::RebuildNeeded);
    }
    if old.shards != wanted.shards {
        return Err(PutSaleError::ShardsFixed(old.shards.get()));
    }
    if wanted.total_stock < old.total_stock {
        return Err(PutSaleError::StockCannotShrink(old.total_stock));
    }
    if let (Some(room), Some(next)) = (&old.waiting_room, &wanted.waiting_room) {
        let since = old.starts_at.minus(room.pre_queue);
        let retimed = wanted.starts_at != old.starts_at
            || next.drain_per_sec != room.drain_per_sec
            || next.pre_queue != room.pre_queue;
        if now >= since && retimed {
            return Err(PutSaleError::RoomStarted { since });
        }
    }
    if same_settings(&old, &wanted) {
        // A retry of a change that is already recorded: only Redis may still need it.
        return Ok(old);
    }
    let updated = Sale {
        created_at: old.created_at,
        version: old.version + 1,
        ..wanted
    };
    match catalog.update(&updated).await {
        Ok(()) => Ok(updated),
        // Our own update whose answer was lost reads back as the same settings.
        Err(CatalogError::Conflict) => match catalog.get(&updated.sale_id).await? {
            Some(stored) if same_settings(&stored, &updated) => Ok(stored),
            _ => Err(PutSaleError::Conflict),
        },
        Err(e) => Err(e.into()),
    }
}

/// Makes Redis agree with the catalog's `sale`: missing shards are created (only reachable for
/// a new sale or one that never opened, see [`update`]), every shard grows to its share of the
/// total, and the per-user limit is set. Each step is idempotent.
async fn converge<S: StockEngine>(stock: &S, sale: &Sale) -> Result<(), PutSaleError> {
    let target = sale.stock();
    stock
        .setup(
            &target,
            &StockSetup {
                total_units: sale.total_stock,
                per_user_limit: sale.per_user_limit,
            },
        )
        .await?;
    stock.grow_to(&target, sale.total_stock).await?;
    stock
        .set_per_user_limit(&target, sale.per_user_limit)
        .await?;
    Ok(())
}
