//! Stock rebuild after Redis lost a sale's data (product flow 6, seed 004 flow 9).
//!
//! ```text
//!   lock (one rebuild per sale) ─▶ pause every shard (placeholders where records are gone:
//!   reserve answers Unavailable(Paused) = 503 + Retry-After) ─▶ settle (in-flight reserves
//!   finish their durable write) ─▶ read reservations (by-sale), then orders (by-sale)
//!   ─▶ per shard i, one atomic script:
//!        initial_i   = split_evenly(sale.total_stock)[i]     (top-ups keep this true)
//!        held_i      = PENDING + PAYMENT_PROCESSING on i      (their holds re-created, H)
//!        sold_i      = orders ∪ CONFIRMED reservations on i   (their holds re-created, C)
//!        available_i = initial_i - held_i - sold_i            (< 0: oversold, kept as a debt)
//!   ─▶ claims of held and sold reservations on the buyers' home shards ─▶ resume ─▶ unlock
//! ```
//! Reservations are read before orders, and an order wins over the reservation's status: a
//! payment confirmed between the two reads is counted once, as sold. A CONFIRMED reservation
//! whose order the (eventually consistent) orders index does not show yet still counts as sold.
//!
//! The by-sale index is eventually consistent: a reservation written a moment ago may not be in
//! it yet. Before a shard is written, every hold Redis still has active on it that the index
//! did not show is read back by id with strong consistency, and kept if its record owns units;
//! nothing is dropped on the index's word alone.
//!
//! Oversold shards keep a negative `available` rather than 0: with 0, the next hold released
//! there would put a unit on sale that does not exist, and sell it a second time.
//!
//! What cannot be rebuilt: the reserve idempotency records (the durable record does not keep
//! the client's Idempotency-Key). After a loss, a retry of a reservation made before it is a
//! new request; the per-user limit, rebuilt from the claims, still bounds what a buyer holds.
//! Pending fallback claims of reserves in flight at the moment of the loss are gone too; those
//! reserves fail at their confirm step and put their unit back.
//!
//! A rebuild that dies midway leaves the sale paused (never selling from half-written stock);
//! the sweep finds a pause older than its threshold and runs the rebuild again (it is
//! idempotent: the same records give the same shards).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{DurableRecords, Which};
use crate::config::{ConfigError, Env};
use crate::domain::{Clock, Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::reservation::{ReservationStatus, StoreError};
use crate::sale::{CatalogError, Sale, SaleCatalog};
use crate::stock::maintenance::{Claim, HoldSpec, RebuiltHold, ShardPlan};
use crate::stock::{split_evenly, ShardLevel, StockEngine, StockError, StockMaintenance};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebuildConfig {
    /// Pause between stopping the sales and reading the records, so reserves that took a hold
    /// just before the pause have written their record (they do within milliseconds).
    pub settle: Duration,
    /// How long the rebuild lock lives if its owner dies.
    pub lock_ttl: Duration,
    /// An active hold with no durable record yet is kept while younger than this (its reserve
    /// may still be writing the record); the hold reconciler judges it afterwards.
    pub young_hold_grace: Duration,
}

impl Default for RebuildConfig {
    fn default() -> Self {
        Self {
            settle: Duration::from_millis(1_000),
            lock_ttl: Duration::from_secs(120),
            young_hold_grace: Duration::from_secs(60),
        }
    }
}

impl RebuildConfig {
    /// `REBUILD_SETTLE_MS` (default 1000), `HOLD_GRACE_MS` (default 60000, shared with the
    /// hold reconciler).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            settle: Duration::from_millis(
                env.parsed_or("REBUILD_SETTLE_MS", d.settle.as_millis() as u64)?,
            ),
            young_hold_grace: Duration::from_millis(
                env.parsed_or("HOLD_GRACE_MS", d.young_hold_grace.as_millis() as u64)?,
            ),
            ..d
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("no such sale")]
    SaleNotFound,
    #[error("a rebuild of this sale is already running")]
    AlreadyRunning,
    #[error(transparent)]
    Stock(#[from] StockError),
    #[error(transparent)]
    Records(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Who asked for the rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Admin,
    /// The sweep found a shard without its stock record, a fenced shard, or a pause left by a
    /// dead rebuild.
    Automatic,
    /// A request on the repair queue (the reserve path met a fenced shard).
    Requested,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardReport {
    pub shard: u16,
    /// The counters Redis had before (None: the record was gone).
    pub before: Option<LevelView>,
    pub after: LevelView,
    /// Units sold or held beyond the shard's stock (available went below zero).
    pub oversold: i64,
    /// Active holds in Redis that no durable record backed (marked released).
    pub dropped_holds: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LevelView {
    pub initial: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
}

impl From<ShardLevel> for LevelView {
    fn from(l: ShardLevel) -> Self {
        Self {
            initial: l.initial,
            available: l.available,
            held: l.held,
            sold: l.sold,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    pub sale_id: String,
    pub trigger: Trigger,
    /// Shards whose record was gone (a paused placeholder was put in their place).
    pub shards_lost: u16,
    pub held_reservations: u64,
    pub sold_reservations: u64,
    pub claims_restored: u64,
    pub oversold_units: i64,
    /// True when every counter came out as it was (a rebuild of an intact sale).
    pub unchanged: bool,
    pub shards: Vec<ShardReport>,
    pub elapsed_ms: u64,
    /// What a rebuild cannot restore.
    pub not_rebuilt: &'static str,
}

const NOT_REBUILT: &str = "reserve idempotency records (a retry of a reservation made before the loss is a new request; per-user limits still apply)";

/// The rebuild. Borrows its dependencies.
pub struct StockRebuilder<'a, S, R, C, K> {
    pub stock: &'a S,
    pub records: &'a R,
    pub catalog: &'a C,
    pub clock: &'a K,
    pub config: RebuildConfig,
}

impl<S, R, C, K> StockRebuilder<'_, S, R, C, K>
where
    S: StockEngine + StockMaintenance,
    R: DurableRecords,
    C: SaleCatalog,
    K: Clock,
{
    pub async fn rebuild(
        &self,
        sale_id: &SaleId,
        trigger: Trigger,
    ) -> Result<RebuildReport, RebuildError> {
        let sale = self
            .catalog
            .get(sale_id)
            .await?
            .ok_or(RebuildError::SaleNotFound)?;
        let token = ReservationId::new().to_string();
        let stock = sale.stock();
        if !self
            .stock
            .try_lock_rebuild(&stock, &token, self.config.lock_ttl)
            .await?
        {
            return Err(RebuildError::AlreadyRunning);
        }
        let result = self.locked(&sale, trigger).await;
        if let Err(error) = self.stock.unlock_rebuild(&stock, &token).await {
            // The lock expires by itself after its TTL.
            tracing::warn!(%error, sale_id = %sale.sale_id, "releasing the rebuild lock failed");
        }
        match &result {
            Ok(report) if report.oversold_units > 0 => {
                tracing::error!(sale_id = %sale.sale_id, oversold = report.oversold_units, "OVERSOLD: the durable records hold more units than the sale has; a person must resolve it")
            }
            Ok(report) => {
                tracing::info!(sale_id = %sale.sale_id, unchanged = report.unchanged, shards_lost = report.shards_lost, "stock rebuilt")
            }
            Err(error) => {
                tracing::error!(%error, sale_id = %sale.sale_id, "stock rebuild failed; the sale stays paused until a rebuild completes")
            }
        }
        result
    }

    /// Checks what the index said against the records themselves, where the index may lag,
    /// and decides on every active hold Redis still has (see the module doc):
    /// - index entries that look held but may have moved on (past their expiry, or being paid)
    ///   are read back by id and follow what the record says now;
    /// - active holds the index did not show are read back by id and kept if the record owns
    ///   units; a hold with no record yet is kept while it is younger than the grace period
    ///   (its reserve may still be writing it; the hold reconciler judges it later).
    ///
    /// Returns the holds that will be dropped (marked released), so their claims can go too.
    async fn check_against_records(
        &self,
        stock: &crate::stock::SaleStock,
        sale: &Sale,
        holds: &mut HashMap<ReservationId, RebuiltHold>,
        processing: &std::collections::HashSet<ReservationId>,
    ) -> Result<Vec<(UserId, ReservationId)>, RebuildError> {
        const PAGE: usize = 500;
        let now = self.clock.now();
        // 1. Index entries that may be stale.
        let suspicious: Vec<ReservationId> = holds
            .iter()
            .filter(|(id, h)| !h.committed && (h.hold.expires_at <= now || processing.contains(id)))
            .map(|(id, _)| *id)
            .collect();
        if !suspicious.is_empty() {
            let fresh = self.records.get_many(&suspicious).await?;
            for id in suspicious {
                match fresh.get(&id).map(|r| r.status) {
                    Some(ReservationStatus::Expired | ReservationStatus::Failed) => {
                        holds.remove(&id);
                    }
                    Some(ReservationStatus::Confirmed) => {
                        if let Some(h) = holds.get_mut(&id) {
                            h.committed = true;
                        }
                    }
                    _ => {}
                }
            }
        }
        // 2. Active holds in Redis that the index did not show.
        let everything = now.plus(Duration::from_secs(366 * 24 * 3600));
        let mut unseen = Vec::new();
        for shard in sale.shards.all() {
            let mut offset = 0;
            loop {
                let page = self
                    .stock
                    .stale_holds(stock, shard, everything, offset, PAGE)
                    .await?;
                unseen.extend(
                    page.iter()
                        .filter(|h| !holds.contains_key(&h.reservation_id))
                        .cloned(),
                );
                if page.len() < PAGE {
                    break;
                }
                offset += PAGE;
            }
        }
        if unseen.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<ReservationId> = unseen.iter().map(|h| h.reservation_id).collect();
        let fresh = self.records.get_many(&ids).await?;
        let young = now.minus(self.config.young_hold_grace);
        let mut dropped = Vec::new();
        for active in unseen {
            let spec = |user: &UserId, quantity, expires_at| HoldSpec {
                reservation_id: active.reservation_id,
                user: user.clone(),
                quantity,
                shard: active.shard,
                expires_at,
            };
            let kept = match fresh.get(&active.reservation_id) {
                Some(r) => match r.status {
                    ReservationStatus::Pending | ReservationStatus::PaymentProcessing => {
                        Some((spec(&r.user_id, r.quantity, r.expires_at), false))
                    }
                    ReservationStatus::Confirmed => {
                        Some((spec(&r.user_id, r.quantity, r.expires_at), true))
                    }
                    ReservationStatus::Expired | ReservationStatus::Failed => None,
                },
                // No record (yet): a reserve between its two writes keeps its unit for now.
                None if active.created_at > young => Some((
                    spec(
                        &active.user,
                        Quantity::new(active.quantity).unwrap_or(Quantity::ONE),
                        active.expires_at,
                    ),
                    false,
                )),
                None => None,
            };
            match kept {
                Some((hold, committed)) => {
                    tracing::info!(reservation_id = %active.reservation_id, "rebuild: a hold the index did not show is kept");
                    holds.insert(active.reservation_id, RebuiltHold { hold, committed });
                }
                None => dropped.push((active.user.clone(), active.reservation_id)),
            }
        }
        Ok(dropped)
    }

    async fn locked(&self, sale: &Sale, trigger: Trigger) -> Result<RebuildReport, RebuildError> {
        let started = Instant::now();
        let stock = sale.stock();
        let before = self.stock.levels(&stock).await?;
        let shards_lost = self
            .stock
            .pause(&stock, sale.per_user_limit, self.clock.now())
            .await?;
        tokio::time::sleep(self.config.settle).await;

        // Reservations first, then orders (see the module doc).
        let reservations = self
            .records
            .reservations_of_sale(&sale.sale_id, Which::All)
            .await?;
        let orders = self.records.orders_of_sale(&sale.sale_id).await?;

        let now = self.clock.now();
        let mut holds: HashMap<ReservationId, RebuiltHold> = HashMap::new();
        for r in &reservations {
            let committed = match r.status {
                ReservationStatus::Pending | ReservationStatus::PaymentProcessing => false,
                ReservationStatus::Confirmed => true,
                ReservationStatus::Expired | ReservationStatus::Failed => continue,
            };
            holds.insert(
                r.reservation_id,
                RebuiltHold {
                    hold: HoldSpec {
                        reservation_id: r.reservation_id,
                        user: r.user_id.clone(),
                        quantity: r.quantity,
                        shard: r.shard,
                        expires_at: r.expires_at,
                    },
                    committed,
                },
            );
        }
        for o in &orders {
            holds
                .entry(o.reservation_id)
                .and_modify(|h| h.committed = true)
                .or_insert_with(|| RebuiltHold {
                    hold: HoldSpec {
                        reservation_id: o.reservation_id,
                        user: o.user_id.clone(),
                        quantity: o.quantity,
                        shard: o.shard,
                        expires_at: Timestamp::from_millis(0),
                    },
                    committed: true,
                });
        }

        let processing: std::collections::HashSet<ReservationId> = reservations
            .iter()
            .filter(|r| r.status == ReservationStatus::PaymentProcessing)
            .map(|r| r.reservation_id)
            .collect();
        let dropped = self
            .check_against_records(&stock, sale, &mut holds, &processing)
            .await?;

        let initial = split_evenly(sale.total_stock, sale.shards);
        let mut per_shard: BTreeMap<u16, Vec<RebuiltHold>> = BTreeMap::new();
        for hold in holds.values() {
            if hold.hold.shard >= sale.shards.get() {
                tracing::error!(reservation_id = %hold.hold.reservation_id, shard = hold.hold.shard, "a record names a shard the sale does not have; skipped");
                continue;
            }
            per_shard
                .entry(hold.hold.shard)
                .or_default()
                .push(hold.clone());
        }
        let mut shards = Vec::with_capacity(usize::from(sale.shards.get()));
        for shard in sale.shards.all() {
            let mut shard_holds = per_shard.remove(&shard).unwrap_or_default();
            shard_holds.sort_by_key(|h| h.hold.reservation_id);
            let plan = ShardPlan {
                shard,
                initial: initial[usize::from(shard)] as i64,
                per_user_limit: sale.per_user_limit,
                holds: shard_holds,
            };
            let written = self.stock.write_shard(&stock, &plan, now).await?;
            let after = LevelView {
                initial: plan.initial,
                available: written.available,
                held: written.held,
                sold: written.sold,
            };
            shards.push(ShardReport {
                shard,
                before: before
                    .shards
                    .get(usize::from(shard))
                    .copied()
                    .flatten()
                    .map(LevelView::from),
                after,
                oversold: (-written.available).max(0),
                dropped_holds: written.dropped_holds,
            });
        }

        let claims: Vec<Claim> = holds
            .values()
            .filter(|h| h.hold.shard < sale.shards.get())
            .map(|h| Claim {
                user: h.hold.user.clone(),
                reservation_id: h.hold.reservation_id,
                quantity: h.hold.quantity.get(),
            })
            .collect();
        let claims_restored = self.stock.restore_claims(&stock, &claims).await?;
        // Holds no record backs give their buyers' allowance back.
        for (user, id) in &dropped {
            self.stock.drop_claim(&stock, user, *id).await?;
        }
        // An admin change of the stock or the limit that landed while this rebuild ran was
        // written with the values read at its start: apply the catalog as it is now (the
        // put-sale use case writes the catalog first, so whichever of the two runs last
        // converges Redis on the latest settings).
        if let Some(now) = self.catalog.get(&sale.sale_id).await? {
            if now.total_stock > sale.total_stock {
                self.stock.grow_to(&stock, now.total_stock).await?;
            }
            if now.per_user_limit != sale.per_user_limit {
                self.stock
                    .set_per_user_limit(&stock, now.per_user_limit)
                    .await?;
            }
        }
        self.stock.resume(&stock).await?;

        let held = holds.values().filter(|h| !h.committed).count() as u64;
        Ok(RebuildReport {
            sale_id: sale.sale_id.to_string(),
            trigger,
            shards_lost,
            held_reservations: held,
            sold_reservations: holds.len() as u64 - held,
            claims_restored,
            oversold_units: shards.iter().map(|s| s.oversold).sum(),
            unchanged: shards.iter().all(|s| s.before == Some(s.after)),
            shards,
            elapsed_ms: started.elapsed().as_millis() as u64,
            not_rebuilt: NOT_REBUILT,
        })
    }
}
