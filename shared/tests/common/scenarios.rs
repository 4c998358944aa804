//! Maintenance scenarios run against both back ends from one list: the in-memory records with a
//! manual clock (`tests/maintenance.rs`) and the DynamoDB adapters on LocalStack
//! (`tests/maintenance_localstack.rs`), each on a real redis-server. A back end implements
//! [`MaintenanceWorld`]; `maintenance_scenarios!(world())` declares one test per scenario.

use flashsale_core::reconcile::holds::SaleReconcileReport;
use flashsale_core::reconcile::rebuild::RebuildReport;
use flashsale_core::reservation::{Reservation, ReservationStatus};
use flashsale_core::sale::Sale;
use flashsale_core::stock::{ReserveOutcome, ShardKeys, StockEngine, StockMaintenance};
use testkit::RedisServer;

/// What a scenario needs from a back end.
#[allow(async_fn_in_trait)]
pub trait MaintenanceWorld {
    type Stock: StockEngine + StockMaintenance;
    fn stock(&self) -> &Self::Stock;
    fn redis(&self) -> &RedisServer;
    async fn open_sale(&self, units: u64, shards: u16, limit: u32) -> Sale;
    /// A PENDING reservation made the way the back end's reserve makes it.
    async fn reserve(&self, sale: &Sale, user: &str) -> Reservation;
    /// The record moved on (CONFIRMED with its order, EXPIRED, ...) without touching Redis,
    /// as the saga or the expiry would have before its Redis step.
    async fn record(&self, r: &Reservation, status: ReservationStatus);
    /// One reconciliation of the sale, at a time its holds count as stale.
    async fn reconcile(&self, sale: &Sale) -> SaleReconcileReport;
    async fn rebuild(&self, sale: &Sale) -> RebuildReport;
    /// initial = available + held + sold per shard, held and sold as the records say.
    async fn assert_invariant(&self, sale: &Sale);
    /// Removes what the world created outside this process (LocalStack tables).
    async fn finish(self);
}

/// Removes a hold as a failover that lost the reserve's writes would: the hold, its index
/// entry, the decrement and the buyer's claim are all gone.
pub async fn lose_hold(redis: &RedisServer, sale: &Sale, r: &Reservation) {
    let keys = ShardKeys::new(&sale.sale_id, r.shard);
    let home = ShardKeys::new(&sale.sale_id, sale.shards.home_of(&r.user_id));
    let mut conn = redis.connection().await;
    let id = r.reservation_id.to_string();
    let _: () = redis::pipe()
        .cmd("HDEL")
        .arg(keys.holds())
        .arg(&id)
        .ignore()
        .cmd("ZREM")
        .arg(keys.hold_times())
        .arg(&id)
        .ignore()
        .cmd("HINCRBY")
        .arg(keys.stock())
        .arg("available")
        .arg(r.quantity.get())
        .ignore()
        .cmd("HINCRBY")
        .arg(keys.stock())
        .arg("held")
        .arg(-i64::from(r.quantity.get()))
        .ignore()
        .cmd("HDEL")
        .arg(home.user(&r.user_id))
        .arg(&id)
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// The buyer's claims (reservations counted against its limit) in Redis.
pub async fn claims_of(redis: &RedisServer, sale: &Sale, r: &Reservation) -> i64 {
    let key = ShardKeys::new(&sale.sale_id, sale.shards.home_of(&r.user_id)).user(&r.user_id);
    let mut conn = redis.connection().await;
    redis::cmd("HLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A PENDING reservation whose hold Redis lost gets it back, with its claim.
pub async fn a_pending_reservation_whose_hold_was_lost_gets_it_back<W: MaintenanceWorld>(w: &W) {
    let sale = w.open_sale(4, 2, 1).await;
    let r = w.reserve(&sale, "lost").await;
    lose_hold(w.redis(), &sale, &r).await;
    assert_eq!(w.stock().levels(&sale.stock()).await.unwrap().held(), 0);

    let report = w.reconcile(&sale).await;

    assert_eq!(report.repaired, 1, "{report:?}");
    w.assert_invariant(&sale).await;
    assert_eq!(
        claims_of(w.redis(), &sale, &r).await,
        1,
        "the claim is back"
    );
    // The per-user limit counts it again.
    let again = w
        .stock()
        .reserve(&super::request(&sale.stock(), &r.user_id, "second", 1))
        .await
        .unwrap();
    assert!(
        matches!(again, ReserveOutcome::LimitReached { .. }),
        "{again:?}"
    );
}

/// A CONFIRMED reservation whose Redis commit never happened is committed.
pub async fn a_confirmed_reservation_still_held_is_committed<W: MaintenanceWorld>(w: &W) {
    let sale = w.open_sale(4, 2, 1).await;
    let r = w.reserve(&sale, "buyer").await;
    w.record(&r, ReservationStatus::Confirmed).await;
    assert_eq!(w.stock().levels(&sale.stock()).await.unwrap().held(), 1);

    let report = w.reconcile(&sale).await;

    assert_eq!(report.committed, 1, "{report:?}");
    let levels = w.stock().levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.held(), levels.sold()), (0, 1));
    w.assert_invariant(&sale).await;
}

/// An EXPIRED reservation whose release failed has its hold released.
pub async fn an_expired_reservation_still_held_is_released<W: MaintenanceWorld>(w: &W) {
    let sale = w.open_sale(4, 2, 1).await;
    let r = w.reserve(&sale, "late").await;
    w.record(&r, ReservationStatus::Expired).await;

    let report = w.reconcile(&sale).await;

    assert_eq!(report.released, 1, "{report:?}");
    let levels = w.stock().levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (4, 0));
    w.assert_invariant(&sale).await;
}

/// A rebuild of a sale whose Redis is intact changes no counter, and the sale sells on.
pub async fn a_rebuild_of_an_intact_sale_changes_no_counter<W: MaintenanceWorld>(w: &W) {
    let sale = w.open_sale(12, 3, 1).await;
    let a = w.reserve(&sale, "a").await;
    let b = w.reserve(&sale, "b").await;
    let c = w.reserve(&sale, "c").await;
    w.record(&c, ReservationStatus::PaymentProcessing).await;
    w.record(&a, ReservationStatus::Confirmed).await;
    w.stock()
        .commit(&sale.stock(), a.shard, a.reservation_id)
        .await
        .unwrap();
    w.record(&b, ReservationStatus::Expired).await;
    w.stock()
        .release(&sale.stock(), b.shard, b.reservation_id)
        .await
        .unwrap();
    let before = w.stock().levels(&sale.stock()).await.unwrap();

    let report = w.rebuild(&sale).await;

    assert!(report.unchanged, "{report:?}");
    assert_eq!(report.shards_lost, 0);
    assert_eq!(w.stock().levels(&sale.stock()).await.unwrap(), before);
    let states = w.stock().shard_states(&sale.stock()).await.unwrap();
    assert!(
        states.iter().all(|s| s.is_ready_and_selling()),
        "resumed: {states:?}"
    );
    w.assert_invariant(&sale).await;
    w.reserve(&sale, "d").await;
}

/// One `#[tokio::test]` per scenario, each in a world of its own from `$world` (an async
/// expression giving a [`MaintenanceWorld`]).
#[macro_export]
macro_rules! maintenance_scenarios {
    ($world:expr) => {
        mod scenarios {
            use super::*;
            use common::scenarios::*;

            #[tokio::test]
            async fn a_pending_reservation_whose_hold_was_lost_gets_it_back_with_its_claim() {
                let w = $world.await;
                a_pending_reservation_whose_hold_was_lost_gets_it_back(&w).await;
                w.finish().await;
            }

            #[tokio::test]
            async fn a_confirmed_reservation_whose_hold_is_still_held_is_committed() {
                let w = $world.await;
                a_confirmed_reservation_still_held_is_committed(&w).await;
                w.finish().await;
            }

            #[tokio::test]
            async fn an_expired_reservation_whose_hold_is_still_held_is_released() {
                let w = $world.await;
                an_expired_reservation_still_held_is_released(&w).await;
                w.finish().await;
            }

            #[tokio::test]
            async fn a_rebuild_of_an_intact_sale_changes_no_counter_and_it_sells_on() {
                let w = $world.await;
                a_rebuild_of_an_intact_sale_changes_no_counter(&w).await;
                w.finish().await;
            }
        }
    };
}
