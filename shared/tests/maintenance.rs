//! Expiry cleanup, hold reconciliation and stock rebuild against a real redis-server (one per
//! test), with the in-memory ledger standing in for DynamoDB. The same flows run against
//! LocalStack's DynamoDB in maintenance_localstack.rs.

mod common;

use std::time::{Duration, Instant};

use common::scenarios::{lose_hold, MaintenanceWorld};
use common::*;
use flashsale_core::domain::{ManualClock, Quantity, SaleId, Timestamp, UserId};
use flashsale_core::expiry::{ExpiryConfig, ExpiryService};
use flashsale_core::reconcile::holds::{HoldReconciler, ReconcileConfig, SaleReconcileReport};
use flashsale_core::reconcile::memory::{InMemoryLedger, RecordedPaymentChecks};
use flashsale_core::reconcile::rebuild::{RebuildConfig, RebuildReport, StockRebuilder, Trigger};
use flashsale_core::reservation::{Reservation, ReservationStatus};
use flashsale_core::sale::memory::InMemorySaleCatalog;
use flashsale_core::sale::Sale;
use flashsale_core::stock::maintenance::ShardState;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{
    split_evenly, ReleaseOutcome, ReserveOutcome, ShardKeys, StockEngine, StockMaintenance,
    Unavailable,
};
use flashsale_core::sweep::{Sweep, SweepConfig};
use redis::aio::ConnectionManager;
use testkit::fixtures::{self, OpenSale};
use testkit::RedisServer;

type Engine = RedisStockEngine<ConnectionManager>;

struct World {
    server: RedisServer,
    engine: Engine,
    ledger: InMemoryLedger,
    catalog: InMemorySaleCatalog,
    clock: ManualClock,
    payments: RecordedPaymentChecks,
}

async fn world() -> World {
    let server = RedisServer::start();
    let engine = RedisStockEngine::new(server.connection().await, RedisStockConfig::default());
    World {
        server,
        engine,
        ledger: InMemoryLedger::default(),
        catalog: InMemorySaleCatalog::default(),
        clock: ManualClock::at(now()),
        payments: RecordedPaymentChecks::default(),
    }
}

impl World {
    async fn open_sale(&self, prefix: &str, units: u64, shards: u16, limit: u32) -> Sale {
        let sale = OpenSale::new(unique_sale(prefix), units)
            .shards(shards)
            .limit(limit)
            .at(now());
        fixtures::open(&self.catalog, &self.engine, &sale).await;
        sale
    }

    /// A reservation the way the reserve flow makes it: hold in Redis, then the record.
    async fn reserve(&self, sale: &Sale, user: &str, status: ReservationStatus) -> Reservation {
        let r = self.hold_only(sale, user).await;
        let r = Reservation { status, ..r };
        self.ledger.put(r.clone());
        r
    }

    /// A reserve that died after its Redis step: a hold, no record.
    async fn hold_only(&self, sale: &Sale, user: &str) -> Reservation {
        let user = UserId::parse(user).unwrap();
        let req = request(&sale.stock(), &user, &format!("k-{user}"), 1);
        let outcome = self.engine.reserve(&req).await.unwrap();
        let ReserveOutcome::Reserved(hold) = outcome else {
            panic!("{outcome:?}")
        };
        Reservation {
            reservation_id: hold.reservation_id,
            sale_id: sale.sale_id.clone(),
            user_id: user,
            quantity: hold.quantity,
            shard: hold.shard,
            status: ReservationStatus::Pending,
            amount: sale.price,
            created_at: req.now,
            expires_at: hold.expires_at,
        }
    }

    fn reconciler(&self) -> HoldReconciler<'_, Engine, InMemoryLedger, RecordedPaymentChecks> {
        HoldReconciler {
            stock: &self.engine,
            records: &self.ledger,
            payments: &self.payments,
            config: ReconcileConfig::default(),
        }
    }

    fn rebuilder(
        &self,
    ) -> StockRebuilder<'_, Engine, InMemoryLedger, InMemorySaleCatalog, ManualClock> {
        StockRebuilder {
            stock: &self.engine,
            records: &self.ledger,
            catalog: &self.catalog,
            clock: &self.clock,
            config: RebuildConfig {
                settle: Duration::from_millis(10),
                ..RebuildConfig::default()
            },
        }
    }

    fn expiry(&self) -> ExpiryService<'_, InMemoryLedger, Engine, InMemorySaleCatalog> {
        ExpiryService {
            store: &self.ledger,
            stock: &self.engine,
            catalog: &self.catalog,
            config: ExpiryConfig {
                concurrency: 8,
                page_size: 7,
            },
        }
    }

    async fn claims_of(&self, sale: &Sale, user: &UserId) -> i64 {
        let key = ShardKeys::new(&sale.sale_id, sale.shards.home_of(user)).user(user);
        let mut conn = self.server.connection().await;
        redis::cmd("HLEN")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    }

    /// The invariant: per shard initial = available + held + sold, held and sold equal to the
    /// durable records, and the sale's initial equal to its total stock.
    async fn assert_invariant(&self, sale: &Sale) {
        let levels = self.engine.levels(&sale.stock()).await.unwrap();
        assert!(levels.is_complete(), "{levels:?}");
        let records: Vec<Reservation> = self
            .ledger
            .all()
            .into_iter()
            .filter(|r| r.sale_id == sale.sale_id)
            .collect();
        let expected = split_evenly(sale.total_stock, sale.shards);
        for level in levels.shards.iter().flatten() {
            let on_shard = |status: &[ReservationStatus]| -> i64 {
                records
                    .iter()
                    .filter(|r| r.shard == level.shard && status.contains(&r.status))
                    .map(|r| i64::from(r.quantity.get()))
                    .sum()
            };
            assert_eq!(
                level.initial,
                expected[usize::from(level.shard)] as i64,
                "{level:?}"
            );
            assert_eq!(
                level.initial,
                level.available + level.held + level.sold,
                "{level:?}"
            );
            assert_eq!(
                level.held,
                on_shard(&[
                    ReservationStatus::Pending,
                    ReservationStatus::PaymentProcessing
                ]),
                "held on {level:?}"
            );
            assert_eq!(
                level.sold,
                on_shard(&[ReservationStatus::Confirmed]),
                "sold on {level:?}"
            );
            assert!(level.available >= 0, "{level:?}");
        }
    }
}

fn later(by: Duration) -> Timestamp {
    now().plus(by)
}

impl MaintenanceWorld for World {
    type Stock = Engine;

    fn stock(&self) -> &Engine {
        &self.engine
    }

    fn redis(&self) -> &RedisServer {
        &self.server
    }

    async fn open_sale(&self, units: u64, shards: u16, limit: u32) -> Sale {
        World::open_sale(self, "scenario", units, shards, limit).await
    }

    async fn reserve(&self, sale: &Sale, user: &str) -> Reservation {
        World::reserve(self, sale, user, ReservationStatus::Pending).await
    }

    async fn record(&self, r: &Reservation, status: ReservationStatus) {
        match status {
            ReservationStatus::Confirmed => self.ledger.confirm(r.reservation_id),
            other => self.ledger.set_status(r.reservation_id, other),
        }
    }

    async fn reconcile(&self, sale: &Sale) -> SaleReconcileReport {
        // A minute on: the holds are past the reconciler's grace.
        self.reconciler()
            .reconcile_sale(
                sale,
                later(Duration::from_secs(61)),
                Instant::now() + Duration::from_secs(30),
            )
            .await
            .unwrap()
    }

    async fn rebuild(&self, sale: &Sale) -> RebuildReport {
        self.rebuilder()
            .rebuild(&sale.sale_id, Trigger::Admin)
            .await
            .unwrap()
    }

    async fn assert_invariant(&self, sale: &Sale) {
        World::assert_invariant(self, sale).await
    }

    async fn finish(self) {}
}

// The scenarios both back ends run (tests/common/scenarios.rs).
crate::maintenance_scenarios!(world());

#[tokio::test]
async fn expiry_expires_due_reservations_releases_their_units_and_skips_paid_ones() {
    let w = world().await;
    let sale = w.open_sale("exp", 40, 4, 1).await;
    let mut due = Vec::new();
    for i in 0..30 {
        due.push(
            w.reserve(&sale, &format!("buyer-{i}"), ReservationStatus::Pending)
                .await,
        );
    }
    let paying = w
        .reserve(&sale, "payer", ReservationStatus::PaymentProcessing)
        .await;
    // GIVEN 30 PENDING reservations and one being paid, all past their expiry
    let at = later(Duration::from_secs(601));

    // WHEN the cleanup runs
    let report = w
        .expiry()
        .run(at, Instant::now() + Duration::from_secs(30))
        .await;

    // THEN every PENDING one is EXPIRED and released, the paid one untouched
    assert_eq!((report.expired, report.released), (30, 30), "{report:?}");
    assert_eq!((report.release_failures, report.errors), (0, 0));
    assert!(!report.more_remaining);
    assert!(report.pages >= 16, "every bucket queried: {report:?}");
    for r in &due {
        assert_eq!(
            w.ledger.get(r.reservation_id).unwrap().status,
            ReservationStatus::Expired
        );
        assert_eq!(w.claims_of(&sale, &r.user_id).await, 0, "claim freed");
    }
    assert_eq!(
        w.ledger.get(paying.reservation_id).unwrap().status,
        ReservationStatus::PaymentProcessing
    );
    let levels = w.engine.levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (39, 1));
    w.assert_invariant(&sale).await;

    // AND a second run finds nothing left to do
    let again = w
        .expiry()
        .run(at, Instant::now() + Duration::from_secs(30))
        .await;
    assert_eq!((again.expired, again.released, again.skipped), (0, 0, 0));
}

#[tokio::test]
async fn expiry_leaves_reservations_that_are_not_yet_due() {
    let w = world().await;
    let sale = w.open_sale("notdue", 5, 2, 1).await;
    let r = w.reserve(&sale, "early", ReservationStatus::Pending).await;
    let report = w
        .expiry()
        .run(now(), Instant::now() + Duration::from_secs(30))
        .await;
    assert_eq!(report.expired, 0);
    assert_eq!(
        w.ledger.get(r.reservation_id).unwrap().status,
        ReservationStatus::Pending
    );
    assert_eq!(w.engine.levels(&sale.stock()).await.unwrap().held(), 1);
}

#[tokio::test]
async fn expiry_stops_at_its_deadline_and_the_next_run_resumes() {
    let w = world().await;
    let sale = w.open_sale("budget", 10, 2, 1).await;
    for i in 0..10 {
        w.reserve(&sale, &format!("b{i}"), ReservationStatus::Pending)
            .await;
    }
    let at = later(Duration::from_secs(601));
    let spent = w.expiry().run(at, Instant::now()).await;
    assert_eq!(spent.expired, 0);
    assert!(spent.more_remaining, "{spent:?}");
    let next = w
        .expiry()
        .run(at, Instant::now() + Duration::from_secs(30))
        .await;
    assert_eq!(next.expired, 10);
    assert!(!next.more_remaining);
    w.assert_invariant(&sale).await;
}

#[tokio::test]
async fn a_failed_release_after_expiry_is_freed_by_the_reconciler() {
    let w = world().await;
    let sale = w.open_sale("relfail", 3, 1, 1).await;
    let r = w.reserve(&sale, "victim", ReservationStatus::Pending).await;
    // GIVEN the record went EXPIRED but the Redis release never happened
    w.ledger
        .set_status(r.reservation_id, ReservationStatus::Expired);
    assert_eq!(w.engine.levels(&sale.stock()).await.unwrap().held(), 1);

    // WHEN the reconciler runs after the grace period
    let report = w
        .reconciler()
        .reconcile_sale(
            &sale,
            later(Duration::from_secs(61)),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();

    // THEN the hold is released and the invariant holds
    assert_eq!(report.released, 1, "{report:?}");
    w.assert_invariant(&sale).await;
    assert_eq!(w.claims_of(&sale, &r.user_id).await, 0);
}

#[tokio::test]
async fn the_reconciler_releases_orphans_commits_confirmed_and_keeps_live_holds() {
    let w = world().await;
    let sale = w.open_sale("recon", 10, 2, 1).await;
    let orphan = w.hold_only(&sale, "ghost").await;
    let confirmed = w.reserve(&sale, "payer", ReservationStatus::Pending).await;
    w.ledger.confirm(confirmed.reservation_id);
    let live = w
        .reserve(&sale, "waiting", ReservationStatus::Pending)
        .await;
    let paying = w
        .reserve(&sale, "paying", ReservationStatus::PaymentProcessing)
        .await;

    // Within the grace period nothing is judged.
    let early = w
        .reconciler()
        .reconcile_sale(&sale, now(), Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        (early.holds_checked, early.orphans_released),
        (0, 0),
        "{early:?}"
    );

    let report = w
        .reconciler()
        .reconcile_sale(
            &sale,
            later(Duration::from_secs(61)),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(report.holds_checked, 4, "{report:?}");
    assert_eq!(
        (report.orphans_released, report.committed, report.kept),
        (1, 1, 2),
        "{report:?}"
    );
    // The orphan's id is closed with an EXPIRED record, so a late write cannot revive it.
    let closed = w.ledger.get(orphan.reservation_id).expect("orphan record");
    assert_eq!(closed.status, ReservationStatus::Expired);
    assert_eq!(w.claims_of(&sale, &orphan.user_id).await, 0);
    assert_eq!(
        w.claims_of(&sale, &confirmed.user_id).await,
        1,
        "a buyer keeps what they bought"
    );
    let levels = w.engine.levels(&sale.stock()).await.unwrap();
    assert_eq!(
        (levels.available(), levels.held(), levels.sold()),
        (7, 2, 1)
    );
    w.assert_invariant(&sale).await;
    let _ = (live, paying);

    // A second run changes nothing.
    let again = w
        .reconciler()
        .reconcile_sale(
            &sale,
            later(Duration::from_secs(61)),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            again.orphans_released,
            again.committed,
            again.released,
            again.repaired
        ),
        (0, 0, 0, 0)
    );
}

#[tokio::test]
async fn a_lost_hold_with_no_unit_left_cancels_a_pending_reservation_and_goes_into_debt_for_a_paid_one(
) {
    let w = world().await;
    let sale = w.open_sale("debt", 2, 1, 1).await;
    let pending = w.reserve(&sale, "p1", ReservationStatus::Pending).await;
    let paying = w
        .reserve(&sale, "p2", ReservationStatus::PaymentProcessing)
        .await;
    // GIVEN both holds were lost and their units resold to two other buyers
    lose_hold(&w.server, &sale, &pending).await;
    lose_hold(&w.server, &sale, &paying).await;
    w.reserve(&sale, "other1", ReservationStatus::Pending).await;
    w.reserve(&sale, "other2", ReservationStatus::Pending).await;

    let report = w
        .reconciler()
        .reconcile_sale(
            &sale,
            later(Duration::from_secs(61)),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();

    // THEN the unpaid one is cancelled, the paid one keeps its unit and the debt is reported
    assert_eq!(
        (report.cancelled, report.repaired, report.oversold),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        w.ledger.get(pending.reservation_id).unwrap().status,
        ReservationStatus::Failed
    );
    let levels = w.engine.levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (-1, 3));
    assert_eq!(
        levels.initial(),
        levels.available() + levels.held() + levels.sold()
    );
    // AND nothing more can be sold
    let refused = w
        .engine
        .reserve(&request(&sale.stock(), &user("late"), "k", 1))
        .await
        .unwrap();
    assert_eq!(refused, ReserveOutcome::SoldOut);
}

#[tokio::test]
async fn stale_fallback_claims_are_dropped() {
    let w = world().await;
    let sale = w.open_sale("claims", 4, 2, 1).await;
    let buyer = user("stuck");
    let home = ShardKeys::new(&sale.sale_id, sale.shards.home_of(&buyer));
    let id = flashsale_core::domain::ReservationId::new();
    // GIVEN a claim made for the fallback path by a process that then died
    let mut conn = w.server.connection().await;
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg(home.user(&buyer))
        .arg(id.to_string())
        .arg(1)
        .ignore()
        .cmd("ZADD")
        .arg(home.pending_claims())
        .arg(now().as_millis())
        .arg(format!("{id}|{buyer}"))
        .ignore()
        .query_async(&mut conn)
        .await
        .unwrap();
    let report = w
        .reconciler()
        .reconcile_sale(
            &sale,
            later(Duration::from_secs(61)),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(report.claims_dropped, 1, "{report:?}");
    assert_eq!(w.claims_of(&sale, &buyer).await, 0);
}

#[tokio::test]
async fn after_a_flush_the_sale_refuses_to_sell_until_the_rebuild_restores_exact_stock() {
    let w = world().await;
    let sale = w.open_sale("flush", 20, 4, 2).await;
    let mut records = Vec::new();
    for i in 0..8 {
        records.push(
            w.reserve(&sale, &format!("b{i}"), ReservationStatus::Pending)
                .await,
        );
    }
    w.ledger.confirm(records[0].reservation_id);
    w.ledger.confirm(records[1].reservation_id);
    w.ledger.set_status(
        records[2].reservation_id,
        ReservationStatus::PaymentProcessing,
    );
    w.ledger
        .set_status(records[3].reservation_id, ReservationStatus::Expired);
    w.ledger
        .set_status(records[4].reservation_id, ReservationStatus::Failed);
    w.engine
        .commit(&sale.stock(), records[0].shard, records[0].reservation_id)
        .await
        .unwrap();
    w.engine
        .commit(&sale.stock(), records[1].shard, records[1].reservation_id)
        .await
        .unwrap();
    for r in &records[3..5] {
        assert!(matches!(
            w.engine
                .release(&sale.stock(), r.shard, r.reservation_id)
                .await
                .unwrap(),
            ReleaseOutcome::Released { .. }
        ));
    }

    // WHEN Redis loses everything
    w.server.cli(&["FLUSHALL"]);

    // THEN the sale refuses to sell instead of treating missing keys as stock
    let refused = w
        .engine
        .reserve(&request(&sale.stock(), &user("x"), "k", 1))
        .await
        .unwrap();
    assert_eq!(refused, ReserveOutcome::Unavailable(Unavailable::NotSetUp));

    // AND a paused sale answers Paused while the rebuild runs
    w.engine.pause(&sale.stock(), 2, now()).await.unwrap();
    let paused = w
        .engine
        .reserve(&request(&sale.stock(), &user("y"), "k", 1))
        .await
        .unwrap();
    assert_eq!(paused, ReserveOutcome::Unavailable(Unavailable::Paused));
    let states = w.engine.shard_states(&sale.stock()).await.unwrap();
    assert!(
        states
            .iter()
            .all(|s| matches!(s, ShardState::Placeholder { paused_at: Some(_) })),
        "{states:?}"
    );

    // WHEN the rebuild runs
    let report = w
        .rebuilder()
        .rebuild(&sale.sale_id, Trigger::Admin)
        .await
        .unwrap();

    // THEN the levels match the records exactly: 2 sold, 4 held (3 PENDING + 1 processing)
    assert_eq!(
        (report.sold_reservations, report.held_reservations),
        (2, 4),
        "{report:?}"
    );
    assert_eq!(report.oversold_units, 0);
    assert!(!report.unchanged);
    let levels = w.engine.levels(&sale.stock()).await.unwrap();
    assert_eq!(
        (levels.available(), levels.held(), levels.sold()),
        (14, 4, 2)
    );
    w.assert_invariant(&sale).await;
    // Claims came back: b0 (bought) and b5 (held) are at 1 of their limit of 2.
    assert_eq!(w.claims_of(&sale, &records[0].user_id).await, 1);
    assert_eq!(w.claims_of(&sale, &records[5].user_id).await, 1);
    assert_eq!(w.claims_of(&sale, &records[3].user_id).await, 0);

    // AND the rebuilt holds behave: the processing one commits, a pending one releases
    assert_eq!(
        w.engine
            .commit(&sale.stock(), records[2].shard, records[2].reservation_id)
            .await
            .unwrap(),
        flashsale_core::stock::CommitOutcome::Committed
    );
    w.ledger.confirm(records[2].reservation_id);
    w.ledger
        .set_status(records[5].reservation_id, ReservationStatus::Expired);
    assert!(matches!(
        w.engine
            .release(&sale.stock(), records[5].shard, records[5].reservation_id)
            .await
            .unwrap(),
        ReleaseOutcome::Released { .. }
    ));
    w.assert_invariant(&sale).await;

    // AND selling resumes and sells exactly what is left, never more
    let left = w.engine.levels(&sale.stock()).await.unwrap().available();
    let mut sold = 0;
    for i in 0..(left + 10) {
        match w
            .engine
            .reserve(&request(&sale.stock(), &user(format!("crowd-{i}")), "k", 1))
            .await
            .unwrap()
        {
            ReserveOutcome::Reserved(hold) => {
                sold += 1;
                w.ledger.put(Reservation {
                    reservation_id: hold.reservation_id,
                    sale_id: sale.sale_id.clone(),
                    user_id: user(format!("crowd-{i}")),
                    quantity: Quantity::ONE,
                    shard: hold.shard,
                    status: ReservationStatus::Pending,
                    amount: sale.price,
                    created_at: now(),
                    expires_at: hold.expires_at,
                });
            }
            ReserveOutcome::SoldOut => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sold, left);
    let levels = w.engine.levels(&sale.stock()).await.unwrap();
    assert_eq!(levels.available(), 0);
    assert_eq!(levels.held() + levels.sold(), 20, "zero oversell");
    w.assert_invariant(&sale).await;
}

#[tokio::test]
async fn only_one_rebuild_of_a_sale_runs_at_a_time() {
    let w = world().await;
    let sale = w.open_sale("lock", 3, 1, 1).await;
    assert!(w
        .engine
        .try_lock_rebuild(&sale.stock(), "other", Duration::from_secs(5))
        .await
        .unwrap());
    let refused = w.rebuilder().rebuild(&sale.sale_id, Trigger::Admin).await;
    assert!(
        matches!(
            refused,
            Err(flashsale_core::reconcile::rebuild::RebuildError::AlreadyRunning)
        ),
        "{refused:?}"
    );
    w.engine
        .unlock_rebuild(&sale.stock(), "other")
        .await
        .unwrap();
    w.rebuilder()
        .rebuild(&sale.sale_id, Trigger::Admin)
        .await
        .unwrap();
    let unknown = w
        .rebuilder()
        .rebuild(&SaleId::parse("nope").unwrap(), Trigger::Admin)
        .await;
    assert!(matches!(
        unknown,
        Err(flashsale_core::reconcile::rebuild::RebuildError::SaleNotFound)
    ));
}

#[tokio::test]
async fn top_ups_keep_every_shard_at_its_share_of_the_total() {
    let w = world().await;
    let sale = w.open_sale("topup", 3, 4, 1).await;
    w.engine.grow_to(&sale.stock(), 4).await.unwrap();
    w.engine.grow_to(&sale.stock(), 10).await.unwrap();
    // Converges: the same target again, or a smaller one, changes nothing.
    w.engine.grow_to(&sale.stock(), 10).await.unwrap();
    w.engine.grow_to(&sale.stock(), 7).await.unwrap();
    let initial: Vec<i64> = w
        .engine
        .levels(&sale.stock())
        .await
        .unwrap()
        .shards
        .iter()
        .flatten()
        .map(|l| l.initial)
        .collect();
    let expected: Vec<i64> = split_evenly(10, sale.shards)
        .iter()
        .map(|&u| u as i64)
        .collect();
    assert_eq!(initial, expected);
}

#[tokio::test]
async fn the_sweep_expires_reconciles_and_rebuilds_a_lost_sale_by_itself() {
    let w = world().await;
    let healthy = w.open_sale("sweep-ok", 5, 2, 1).await;
    let lost = w.open_sale("sweep-lost", 6, 2, 1).await;
    let due = w.reserve(&healthy, "due", ReservationStatus::Pending).await;
    w.hold_only(&healthy, "orphan").await;
    let kept = w.reserve(&lost, "kept", ReservationStatus::Pending).await;
    // Redis loses the second sale's keys only.
    for shard in lost.shards.all() {
        w.server
            .cli(&["DEL", &ShardKeys::new(&lost.sale_id, shard).stock()]);
    }
    w.ledger.put(Reservation {
        expires_at: now().minus(Duration::from_secs(1)),
        ..due.clone()
    });
    // Everything is older than the grace period.
    w.clock.set(later(Duration::from_secs(61)));

    let sweep = Sweep {
        expiry_store: &w.ledger,
        stock: &w.engine,
        records: &w.ledger,
        catalog: &w.catalog,
        clock: &w.clock,
        payments: &w.payments,
        config: SweepConfig {
            rebuild: RebuildConfig {
                settle: Duration::from_millis(10),
                ..RebuildConfig::default()
            },
            ..SweepConfig::default()
        },
    };
    let report = sweep.run(Duration::from_secs(30)).await;

    assert_eq!(report.expiry.expired, 1, "{report:?}");
    assert_eq!(report.rebuilt.len(), 1, "{report:?}");
    assert_eq!(report.rebuilt[0].sale_id, lost.sale_id.to_string());
    assert_eq!(report.rebuilt[0].held_reservations, 1);
    assert_eq!(report.reconciled.len(), 1);
    assert_eq!(report.reconciled[0].orphans_released, 1, "{report:?}");
    assert!(report.errors.is_empty(), "{report:?}");
    w.assert_invariant(&healthy).await;
    w.assert_invariant(&lost).await;
    let _ = kept;
}

#[tokio::test]
async fn a_rebuild_drops_holds_no_record_backs_and_counts_their_units_as_available() {
    let w = world().await;
    let sale = w.open_sale("dropped", 6, 2, 1).await;
    let kept = w.reserve(&sale, "kept", ReservationStatus::Pending).await;
    let orphan = w.hold_only(&sale, "orphan").await;
    assert_eq!(w.engine.levels(&sale.stock()).await.unwrap().held(), 2);
    // Past the young-hold grace: a reserve that took the hold has had all the time it needs
    // to write its record (a younger hold without one is kept: faults.rs).
    w.clock.set(later(Duration::from_secs(61)));

    let report = w
        .rebuilder()
        .rebuild(&sale.sale_id, Trigger::Admin)
        .await
        .unwrap();

    let dropped: u32 = report.shards.iter().map(|s| s.dropped_holds).sum();
    assert_eq!(dropped, 1, "{report:?}");
    assert!(!report.unchanged);
    w.assert_invariant(&sale).await;
    let levels = w.engine.levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (5, 1));
    // The dropped hold reads as released; the kept one is still active.
    assert_eq!(
        w.engine
            .release(&sale.stock(), orphan.shard, orphan.reservation_id)
            .await
            .unwrap(),
        ReleaseOutcome::AlreadyReleased
    );
    let held = w
        .engine
        .holds(&sale.stock(), kept.shard, &[kept.reservation_id])
        .await
        .unwrap();
    assert_eq!(
        held[0].as_ref().map(|h| h.state),
        Some(flashsale_core::stock::maintenance::HoldState::Held)
    );
}
