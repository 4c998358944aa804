//! The faults a real sale meets, one kind per test group, each ending with the invariant of
//! ../shared/notes/product.md: initial = available + held + sold, no buyer above the limit, no
//! reservation charged twice, every charge an order or refunded. Stock runs on a real
//! redis-server; the durable records and the workflow engine are the in-memory fakes (the same
//! scenarios run against LocalStack in e2e/ and in the chaos suite).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use flashsale_core::domain::{
    Clock, Currency, IdempotencyKey, ManualClock, Money, Quantity, ReservationId, SaleId,
    Timestamp, UserId,
};
use flashsale_core::payment::memory::InMemoryPaymentProvider;
use flashsale_core::payment::PaymentStatus;
use flashsale_core::rate_limit::memory::InMemoryRateLimiter;
use flashsale_core::rate_limit::{BucketPolicy, RequestId};
use flashsale_core::reconcile::holds::{HoldReconciler, ReconcileConfig};
use flashsale_core::reconcile::memory::{InMemoryLedger, RecordedPaymentChecks};
use flashsale_core::reconcile::rebuild::{RebuildConfig, StockRebuilder, Trigger};
use flashsale_core::reconcile::{PaymentCheck, PaymentRecovery};
use flashsale_core::reservation::memory::InMemoryReservationStore;
use flashsale_core::reservation::reserve::{
    RatePolicies, ReserveCommand, ReserveError, ReserveService,
};
use flashsale_core::reservation::{Reservation, ReservationStatus, ReservationStore};
use flashsale_core::saga::error_types as et;
use flashsale_core::saga::memory::{Fault, InMemoryCheckoutRecords, InMemorySagaControl};
use flashsale_core::saga::pay::{PayCommand, PayError, PayService, PaymentMethod};
use flashsale_core::saga::recovery::SagaRecovery;
use flashsale_core::saga::steps::{ChargeResult, SagaSteps, StepInput, StepKind};
use flashsale_core::sale::memory::InMemorySaleCatalog;
use flashsale_core::sale::put::{put_sale, PutSaleError};
use flashsale_core::sale::{Sale, SaleCatalog};
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::repair::memory::RecordedRepairs;
use flashsale_core::stock::{
    CommitOutcome, Hold, HoldSpec, HoldState, ReleaseOutcome, ReserveOutcome, ReserveRequest,
    RestoreOutcome, SaleStock, SetupOutcome, ShardKeys, SoldOutCache, SoldOutCacheConfig,
    StockEngine, StockError, StockLevels, StockSetup, Unavailable,
};
use redis::aio::ConnectionManager;
use testkit::fixtures::{self, OpenSale};
use testkit::RedisServer;

type Engine = RedisStockEngine<ConnectionManager>;

fn the_sale(prefix: &str, units: u64, shards: u16, limit: u32, now: Timestamp) -> Sale {
    OpenSale::new(unique_sale(prefix), units)
        .shards(shards)
        .limit(limit)
        .price(2_000)
        .at(now)
}

/// The reserve path on real Redis with in-memory records.
struct Shop {
    server: RedisServer,
    service: ReserveService<
        Engine,
        InMemoryRateLimiter<ManualClock>,
        InMemorySaleCatalog,
        InMemoryReservationStore,
        ManualClock,
        RecordedRepairs,
    >,
}

impl Shop {
    async fn new() -> Self {
        let server = RedisServer::start();
        Self::on(server).await
    }

    async fn on(server: RedisServer) -> Self {
        let clock = ManualClock::at(now());
        let service = ReserveService {
            stock: RedisStockEngine::new(server.connection().await, RedisStockConfig::default()),
            limiter: InMemoryRateLimiter::new(clock.clone()),
            catalog: InMemorySaleCatalog::default(),
            store: InMemoryReservationStore::default(),
            clock,
            repairs: RecordedRepairs::default(),
            policies: RatePolicies {
                per_user: BucketPolicy::new(1000, 1000.0).unwrap(),
                per_ip: BucketPolicy::new(1000, 1000.0).unwrap(),
            },
        };
        Self { server, service }
    }

    async fn open(&self, prefix: &str, units: u64, shards: u16, limit: u32) -> Sale {
        let sale = the_sale(prefix, units, shards, limit, self.service.clock.now());
        fixtures::open(&self.service.catalog, &self.service.stock, &sale).await;
        sale
    }

    async fn reserve(
        &self,
        sale: &Sale,
        user: &UserId,
        key: &str,
        qty: u32,
    ) -> Result<Reservation, ReserveError> {
        self.service
            .reserve(ReserveCommand {
                user: user.clone(),
                source_ip: None,
                request_id: RequestId::random(),
                sale_id: sale.sale_id.clone(),
                quantity: Quantity::new(qty).unwrap(),
                idempotency_key: IdempotencyKey::parse(key).unwrap(),
                email: None,
            })
            .await
            .result
            .map(|r| r.reservation)
    }

    async fn levels(&self, sale: &Sale) -> StockLevels {
        self.service.stock.levels(&sale.stock()).await.unwrap()
    }

    /// initial = available + held + sold, and held = what the durable PENDING records hold.
    async fn assert_invariant(&self, sale: &Sale) {
        let levels = self.levels(sale).await;
        assert_eq!(
            levels.initial(),
            levels.available() + levels.held() + levels.sold(),
            "{levels:?}"
        );
        let held: i64 = self
            .service
            .store
            .all()
            .iter()
            .filter(|r| r.sale_id == sale.sale_id && r.status.is_held())
            .map(|r| i64::from(r.quantity.get()))
            .sum();
        assert_eq!(levels.held(), held, "Redis holds vs durable records");
    }
}

// ---------------------------------------------------------------------------------------------
// Kind 1: a replay of an attempt that was rolled back.

#[tokio::test]
async fn a_retry_after_a_failed_durable_write_is_a_new_reservation_not_a_replay() {
    // GIVEN a sale of 2 units, 1 per buyer, and a store that refuses the first write
    let shop = Shop::new().await;
    let sale = shop.open("rolled-back", 2, 1, 1).await;
    let alice = user("alice");
    shop.service.store.fail_writes(true);
    // WHEN alice reserves: the durable write fails, the attempt is rolled back (503)
    let first = shop.reserve(&sale, &alice, "k", 1).await;
    assert!(matches!(first, Err(ReserveError::Store(_))), "{first:?}");
    let levels = shop.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (2, 0));
    // AND she retries with the same key once the store is back
    shop.service.store.fail_writes(false);
    let retry = shop.reserve(&sale, &alice, "k", 1).await.unwrap();
    // THEN it is a new reservation with its own hold and record, not a replay of nothing
    assert_eq!(retry.status, ReservationStatus::Pending);
    assert_eq!(
        shop.service
            .stock
            .hold_state(&sale.stock(), retry.shard, retry.reservation_id)
            .await
            .unwrap(),
        Some(HoldState::Held)
    );
    // AND her per-user limit still holds: one claim, not zero
    let again = shop.reserve(&sale, &alice, "k2", 1).await;
    assert!(
        matches!(
            again,
            Err(ReserveError::LimitReached {
                claimed: 1,
                limit: 1
            })
        ),
        "{again:?}"
    );
    shop.assert_invariant(&sale).await;
}

#[tokio::test]
async fn a_rollback_on_the_fallback_path_frees_the_key_on_both_shards() {
    // GIVEN two shards; alice's home shard is empty, so her unit comes from the other one
    let shop = Shop::new().await;
    let sale = shop.open("rolled-back-fallback", 2, 2, 1).await;
    let home = sale.shards.home_of(&user_with_home(sale.shards, 0, "x"));
    let filler = user_with_home(sale.shards, home, "filler");
    shop.reserve(&sale, &filler, "fill", 1).await.unwrap();
    let alice = user_with_home(sale.shards, home, "alice");
    shop.service.store.fail_writes(true);
    assert!(shop.reserve(&sale, &alice, "k", 1).await.is_err());
    shop.service.store.fail_writes(false);
    let levels = shop.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (1, 1));
    let retry = shop.reserve(&sale, &alice, "k", 1).await.unwrap();
    assert_ne!(retry.shard, home);
    shop.assert_invariant(&sale).await;
}

#[tokio::test]
async fn a_rollback_cut_between_its_two_steps_is_finished_by_the_retry() {
    // GIVEN a fallback reservation whose hold was voided on its shard (the rollback's first
    // step) while the key and claim on the home shard survived (the process died)
    let shop = Shop::new().await;
    let sale = shop.open("cut-rollback", 2, 2, 1).await;
    let engine = &shop.service.stock;
    let alice = user_with_home(sale.shards, 0, "alice");
    let filler = user_with_home(sale.shards, 0, "filler");
    shop.reserve(&sale, &filler, "fill", 1).await.unwrap();
    let req = request(&sale.stock(), &alice, "k", 1);
    let ReserveOutcome::Reserved(hold) = engine.reserve(&req).await.unwrap() else {
        panic!()
    };
    assert_eq!(hold.shard, 1);
    let keys = ShardKeys::new(&sale.sale_id, 1);
    let mut conn = shop.server.connection().await;
    let _: redis::Value = flashsale_core::stock::redis::scripts::RELEASE
        .key(keys.stock())
        .key(keys.holds())
        .key(keys.hold_times())
        .arg(hold.reservation_id.to_string())
        .arg("void")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    // WHEN alice retries with the same key
    let retry = shop.reserve(&sale, &alice, "k", 1).await.unwrap();
    // THEN the engine finishes the rollback and reserves anew (the unit is on sale again)
    assert_ne!(retry.reservation_id, hold.reservation_id);
    shop.assert_invariant(&sale).await;
    let levels = shop.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (0, 2));
}

#[tokio::test]
async fn a_replay_whose_hold_was_released_and_has_no_record_is_refused() {
    // GIVEN a hold taken by a reserve that died before its durable write, then released
    let shop = Shop::new().await;
    let sale = shop.open("spent", 2, 1, 1).await;
    let alice = user("alice");
    let req = request(&sale.stock(), &alice, "k", 1);
    let ReserveOutcome::Reserved(hold) = shop.service.stock.reserve(&req).await.unwrap() else {
        panic!()
    };
    shop.service
        .stock
        .release(&sale.stock(), hold.shard, hold.reservation_id)
        .await
        .unwrap();
    // WHEN the buyer retries with the key
    let replay = shop.reserve(&sale, &alice, "k", 1).await;
    // THEN no PENDING record is written for a unit that is back on sale
    assert!(matches!(replay, Err(ReserveError::KeySpent)), "{replay:?}");
    assert!(shop.service.store.all().is_empty());
    shop.assert_invariant(&sale).await;
}

// ---------------------------------------------------------------------------------------------
// Kind 4: a wrong "sold out".

#[tokio::test]
async fn more_than_is_left_is_insufficient_and_never_poisons_the_sold_out_cache() {
    // GIVEN one shard with 2 units left, behind the sold-out fast path
    let server = RedisServer::start();
    let clock = ManualClock::at(now());
    let engine = SoldOutCache::new(
        RedisStockEngine::new(server.connection().await, RedisStockConfig::default()),
        clock.clone(),
        SoldOutCacheConfig {
            window: Duration::from_millis(500),
        },
    );
    let sale = sale(&unique_sale("left-2"), 1);
    engine
        .setup(
            &sale,
            &StockSetup {
                total_units: 3,
                per_user_limit: 5,
            },
        )
        .await
        .unwrap();
    engine
        .reserve(&request(&sale, &user("first"), "k", 1))
        .await
        .unwrap();
    // WHEN a buyer asks for 3
    let big = engine
        .reserve(&request(&sale, &user("big"), "k", 3))
        .await
        .unwrap();
    // THEN it is "not enough", not "sold out", and a buyer of 1 right after gets a unit
    assert_eq!(big, ReserveOutcome::InsufficientStock);
    assert!(!engine.is_known_sold_out(&sale.sale_id));
    let one = engine
        .reserve(&request(&sale, &user("one"), "k", 1))
        .await
        .unwrap();
    assert!(matches!(one, ReserveOutcome::Reserved(_)), "{one:?}");
}

#[tokio::test]
async fn a_missing_or_paused_shard_is_unknown_never_zero() {
    // GIVEN two shards; the buyer's home is empty and the other shard's record is gone
    let server = RedisServer::start();
    let engine = RedisStockEngine::new(server.connection().await, RedisStockConfig::default());
    let sale = sale(&unique_sale("unknown"), 2);
    engine
        .setup(
            &sale,
            &StockSetup {
                total_units: 2,
                per_user_limit: 5,
            },
        )
        .await
        .unwrap();
    let home0 = user_with_home(sale.shards, 0, "h");
    engine
        .reserve(&request(&sale, &home0, "k", 1))
        .await
        .unwrap();
    server.cli(&["DEL", &ShardKeys::new(&sale.sale_id, 1).stock()]);
    // WHEN another buyer of shard 0 reserves
    let outcome = engine
        .reserve(&request(
            &sale,
            &user_with_home(sale.shards, 0, "b"),
            "k",
            1,
        ))
        .await
        .unwrap();
    // THEN the answer is "unavailable" (503), not "sold out" (410)
    assert_eq!(outcome, ReserveOutcome::Unavailable(Unavailable::NotSetUp));
    // AND a paused shard counts as unknown too
    engine
        .setup(
            &sale,
            &StockSetup {
                total_units: 2,
                per_user_limit: 5,
            },
        )
        .await
        .unwrap();
    server.cli(&[
        "HSET",
        &ShardKeys::new(&sale.sale_id, 1).stock(),
        "available",
        "0",
        "paused",
        "1",
    ]);
    let outcome = engine
        .reserve(&request(
            &sale,
            &user_with_home(sale.shards, 0, "c"),
            "k",
            1,
        ))
        .await
        .unwrap();
    assert_eq!(outcome, ReserveOutcome::Unavailable(Unavailable::NotSetUp));
}

// ---------------------------------------------------------------------------------------------
// Kind 3: a durable record whose Redis hold is gone.

/// What a failover that lost an acknowledged write does to one hold: gone, its unit available
/// again, the buyer's claim gone.
fn lose_hold(server: &RedisServer, sale: &SaleId, r: &Reservation, home: u16) {
    let keys = ShardKeys::new(sale, r.shard);
    server.cli(&["HDEL", &keys.holds(), &r.reservation_id.to_string()]);
    server.cli(&["ZREM", &keys.hold_times(), &r.reservation_id.to_string()]);
    server.cli(&["HINCRBY", &keys.stock(), "available", "1"]);
    server.cli(&["HINCRBY", &keys.stock(), "held", "-1"]);
    server.cli(&[
        "HDEL",
        &ShardKeys::new(sale, home).user(&r.user_id),
        &r.reservation_id.to_string(),
    ]);
}

struct Checkout<'a> {
    shop: &'a Shop,
    records: InMemoryCheckoutRecords,
    provider: InMemoryPaymentProvider,
    control: InMemorySagaControl,
    repairs: Arc<RecordedRepairs>,
}

impl<'a> Checkout<'a> {
    fn new(shop: &'a Shop) -> Self {
        Self {
            shop,
            records: InMemoryCheckoutRecords::default(),
            provider: InMemoryPaymentProvider::new(),
            control: InMemorySagaControl::default(),
            repairs: Arc::default(),
        }
    }

    fn steps(
        &self,
    ) -> SagaSteps<
        InMemoryCheckoutRecords,
        InMemoryPaymentProvider,
        InMemoryPaymentProvider,
        Engine,
        InMemorySaleCatalog,
        ManualClock,
        Arc<RecordedRepairs>,
    > {
        SagaSteps {
            records: self.records.clone(),
            charges: self.provider.clone(),
            refunds: self.provider.clone(),
            stock: self.shop.service.stock.clone(),
            catalog: self.shop.service.catalog.clone(),
            clock: self.shop.service.clock.clone(),
            repairs: Arc::clone(&self.repairs),
        }
    }

    fn pay_service(&self) -> PayService<InMemoryCheckoutRecords, InMemorySagaControl, ManualClock> {
        PayService {
            records: self.records.clone(),
            saga: self.control.clone(),
            clock: self.shop.service.clock.clone(),
        }
    }

    async fn begin(&self, r: &Reservation, method: &str) {
        self.records.insert(r.clone());
        self.pay_service()
            .pay(&PayCommand {
                user: r.user_id.clone(),
                reservation_id: r.reservation_id,
                payment_key: IdempotencyKey::parse("pay-1").unwrap(),
                payment_method: PaymentMethod::parse(method).unwrap(),
            })
            .await
            .unwrap();
    }

    async fn step(
        &self,
        step: StepKind,
        r: &Reservation,
        charge: Option<ChargeResult>,
    ) -> Result<serde_json::Value, flashsale_core::saga::steps::StepError> {
        self.steps()
            .run(StepInput {
                step,
                reservation_id: r.reservation_id.to_string(),
                token: Some("token-1".into()),
                payment_method: Some("pm_card_visa".into()),
                charge,
            })
            .await
    }

    /// Charge as the definition runs it: a visa succeeds at once (AlreadyCharged), so
    /// ReadCharge gives CreateOrder its input.
    async fn charge(&self, r: &Reservation) -> ChargeResult {
        let charged = self.step(StepKind::Charge, r, None).await;
        assert_eq!(charged.unwrap_err().error_type, et::ALREADY_CHARGED);
        let read = self.step(StepKind::ReadCharge, r, None).await.unwrap();
        serde_json::from_value(read).unwrap()
    }

    /// Charge, ReadCharge, CreateOrder, CommitHold.
    async fn pay_through(&self, r: &Reservation) -> serde_json::Value {
        let charge = self.charge(r).await;
        self.step(StepKind::CreateOrder, r, Some(charge))
            .await
            .unwrap();
        self.step(StepKind::CommitHold, r, None).await.unwrap()
    }
}

#[tokio::test]
async fn a_lost_hold_is_taken_again_before_the_charge_and_the_paid_unit_is_sold_once() {
    // GIVEN a reservation whose hold a failover lost (its unit back in `available`)
    let shop = Shop::new().await;
    let sale = shop.open("lost-then-paid", 3, 1, 1).await;
    let alice = user("alice");
    let r = shop.reserve(&sale, &alice, "k", 1).await.unwrap();
    lose_hold(&shop.server, &sale.sale_id, &r, 0);
    let checkout = Checkout::new(&shop);
    checkout.begin(&r, "pm_card_visa").await;
    // WHEN it is paid through the saga's steps
    checkout.pay_through(&r).await;
    // THEN the unit is sold once: the hold was taken again before the charge, then committed
    let levels = shop.levels(&sale).await;
    assert_eq!(
        (levels.available(), levels.held(), levels.sold()),
        (2, 0, 1)
    );
    assert_eq!(checkout.records.orders().len(), 1);
    // AND the two remaining units sell to two buyers, not three
    for buyer in ["bob", "carol"] {
        shop.reserve(&sale, &user(buyer), "k", 1).await.unwrap();
    }
    assert!(matches!(
        shop.reserve(&sale, &user("dave"), "k", 1).await,
        Err(ReserveError::SoldOut)
    ));
}

#[tokio::test]
async fn a_lost_hold_whose_unit_was_resold_is_never_charged() {
    // GIVEN 1 unit; alice's hold is lost and bob buys the freed unit
    let shop = Shop::new().await;
    let sale = shop.open("lost-resold", 1, 1, 1).await;
    let r = shop.reserve(&sale, &user("alice"), "k", 1).await.unwrap();
    lose_hold(&shop.server, &sale.sale_id, &r, 0);
    shop.reserve(&sale, &user("bob"), "k", 1).await.unwrap();
    let checkout = Checkout::new(&shop);
    checkout.begin(&r, "pm_card_visa").await;
    // WHEN alice's payment reaches the Charge step
    let charged = checkout.step(StepKind::Charge, &r, None).await;
    // THEN nothing is charged and the saga compensates (StockLost)
    assert_eq!(charged.unwrap_err().error_type, et::STOCK_LOST);
    assert_eq!(checkout.provider.calls(), 0);
    let levels = shop.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (0, 1));
}

#[tokio::test]
async fn a_paid_order_whose_hold_was_lost_keeps_its_unit_and_an_oversell_is_reported() {
    // GIVEN alice's reservation is CONFIRMED (charged, order written) and then Redis loses its
    // hold and sells the unit to bob
    let shop = Shop::new().await;
    let sale = shop.open("paid-lost", 1, 1, 1).await;
    let r = shop.reserve(&sale, &user("alice"), "k", 1).await.unwrap();
    let checkout = Checkout::new(&shop);
    checkout.begin(&r, "pm_card_visa").await;
    let charge = checkout.charge(&r).await;
    checkout
        .step(StepKind::CreateOrder, &r, Some(charge))
        .await
        .unwrap();
    lose_hold(&shop.server, &sale.sale_id, &r, 0);
    shop.reserve(&sale, &user("bob"), "k", 1).await.unwrap();
    // WHEN CommitHold runs
    let committed = checkout.step(StepKind::CommitHold, &r, None).await.unwrap();
    // THEN the paid order keeps its unit: sold 1, the shard in debt by one, reported
    assert_eq!(committed["retaken"], true);
    assert_eq!(committed["available_after"], -1);
    let levels = shop.levels(&sale).await;
    assert_eq!(
        (levels.available(), levels.held(), levels.sold()),
        (-1, 1, 1)
    );
    // AND when bob's unpaid hold goes back, it pays the debt instead of being sold again
    let bob = shop
        .service
        .store
        .all()
        .into_iter()
        .find(|x| x.user_id == user("bob"))
        .unwrap();
    shop.service
        .stock
        .release(&sale.stock(), bob.shard, bob.reservation_id)
        .await
        .unwrap();
    assert!(matches!(
        shop.reserve(&sale, &user("carol"), "k", 1).await,
        Err(ReserveError::SoldOut)
    ));
}

#[tokio::test]
async fn the_reconciler_gives_a_confirmed_reservation_its_units_when_redis_lost_the_hold() {
    // GIVEN a CONFIRMED reservation whose hold Redis no longer has
    let server = RedisServer::start();
    let engine: Engine =
        RedisStockEngine::new(server.connection().await, RedisStockConfig::default());
    let sale = the_sale("reconcile-confirmed", 2, 1, 1, now());
    engine
        .setup(
            &sale.stock(),
            &StockSetup {
                total_units: 2,
                per_user_limit: 1,
            },
        )
        .await
        .unwrap();
    let alice = user("alice");
    let req = ReserveRequest {
        now: now().minus(Duration::from_secs(120)),
        ..request(&sale.stock(), &alice, "k", 1)
    };
    let ReserveOutcome::Reserved(hold) = engine.reserve(&req).await.unwrap() else {
        panic!()
    };
    let ledger = InMemoryLedger::default();
    let record = Reservation {
        reservation_id: hold.reservation_id,
        sale_id: sale.sale_id.clone(),
        user_id: alice.clone(),
        quantity: Quantity::ONE,
        shard: hold.shard,
        status: ReservationStatus::Pending,
        amount: sale.price,
        created_at: req.now,
        expires_at: hold.expires_at,
    };
    ledger.put(record.clone());
    ledger.confirm(hold.reservation_id);
    lose_hold(&server, &sale.sale_id, &record, 0);
    // WHEN the reconciler runs
    let payments = RecordedPaymentChecks::default();
    let report = HoldReconciler {
        stock: &engine,
        records: &ledger,
        payments: &payments,
        config: ReconcileConfig::default(),
    }
    .reconcile_sale(
        &sale,
        now(),
        std::time::Instant::now() + Duration::from_secs(30),
    )
    .await
    .unwrap();
    // THEN the sold unit is taken again: initial = available + held + sold(orders)
    assert_eq!(report.sold_retaken, 1, "{report:?}");
    let levels = engine.levels(&sale.stock()).await.unwrap();
    assert_eq!(
        (levels.available(), levels.held(), levels.sold()),
        (1, 0, 1)
    );
}

// ---------------------------------------------------------------------------------------------
// Kind 3: lost acknowledged writes after a real failover (the fence).

/// Waits until `replica` reports its link to the primary up.
fn wait_replicating(replica: &RedisServer) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !replica
        .cli(&["INFO", "replication"])
        .contains("master_link_status:up")
    {
        assert!(std::time::Instant::now() < deadline, "replica never synced");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn after_a_replica_is_promoted_nothing_sells_until_the_stock_is_rebuilt() {
    // GIVEN a primary with a replica, and a sale reserved on the primary
    let primary = Shop::new().await;
    let sale = primary.open("fence", 4, 2, 2).await;
    let alice = primary
        .reserve(&sale, &user("alice"), "k", 1)
        .await
        .unwrap();
    let replica_server = RedisServer::start();
    replica_server.cli(&["REPLICAOF", "127.0.0.1", &primary.server.port().to_string()]);
    wait_replicating(&replica_server);
    let _: () = redis::cmd("WAIT")
        .arg(1)
        .arg(2000)
        .query_async(&mut primary.server.connection().await)
        .await
        .map(|_: i64| ())
        .unwrap();
    // WHEN the replica is promoted (another process now serves the data)
    replica_server.cli(&["REPLICAOF", "NO", "ONE"]);
    let promoted = Shop::on(replica_server).await;
    promoted.service.catalog.create(&sale).await.unwrap();
    promoted.service.store.insert_pending(&alice).await.unwrap();
    // THEN the first reserve is refused (503) and asks for a rebuild at once
    let refused = promoted.reserve(&sale, &user("bob"), "k", 1).await;
    assert!(matches!(refused, Err(ReserveError::Paused)), "{refused:?}");
    assert_eq!(
        promoted.service.repairs.requested(),
        vec![sale.sale_id.clone()]
    );
    // AND nothing sells until the rebuild
    assert!(promoted
        .reserve(&sale, &user("carol"), "k", 1)
        .await
        .is_err());
    // WHEN the rebuild runs from the durable records
    let ledger = InMemoryLedger::default();
    ledger.put(alice.clone());
    let report = StockRebuilder {
        stock: &promoted.service.stock,
        records: &ledger,
        catalog: &promoted.service.catalog,
        clock: &promoted.service.clock,
        config: RebuildConfig {
            settle: Duration::from_millis(10),
            ..RebuildConfig::default()
        },
    }
    .rebuild(&sale.sale_id, Trigger::Requested)
    .await
    .unwrap();
    assert_eq!(report.held_reservations, 1);
    // THEN selling resumes on the promoted node
    promoted
        .reserve(&sale, &user("bob"), "k2", 1)
        .await
        .unwrap();
    let levels = promoted.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (2, 2));
    promoted.assert_invariant(&sale).await;
}

/// The run id of `server`'s process, as INFO server prints it.
fn run_id_of(server: &RedisServer) -> String {
    server
        .cli(&["INFO", "server"])
        .lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .expect("INFO server names the run id")
        .trim()
        .to_string()
}

#[tokio::test]
async fn on_another_process_a_refusal_read_from_the_shard_trips_the_fence_too() {
    // GIVEN a one-shard sale of one unit, sold to alice; then its record names as writer only a
    // part of this process's run id (as a record written before a failover or a restart does
    // not name the process serving it now; a part of the id must not pass the check)
    let shop = Shop::new().await;
    let sale = shop.open("fence-refusal", 1, 1, 1).await;
    let alice = shop.reserve(&sale, &user("alice"), "k", 1).await.unwrap();
    let stock_key = ShardKeys::new(&sale.sale_id, 0).stock();
    let run_id = run_id_of(&shop.server);
    let part = &run_id[..run_id.len() - 1];
    shop.server.cli(&["HSET", &stock_key, "writer", part]);
    // WHEN bob asks for the sold-out unit
    let refused = shop.reserve(&sale, &user("bob"), "k", 1).await;
    // THEN he is not told "sold out" from data that may have lost a release: 503, and the
    // shard is fenced with a rebuild asked for
    assert!(matches!(refused, Err(ReserveError::Paused)), "{refused:?}");
    assert_eq!(shop.server.cli(&["HGET", &stock_key, "fenced"]).trim(), "1");
    assert_eq!(shop.service.repairs.requested(), vec![sale.sale_id.clone()]);

    // AND a paid reservation whose hold that process lost is not failed as "no units" there
    shop.server
        .cli(&["HSET", &stock_key, "paused", "0", "fenced", "0"]);
    let lost = HoldSpec {
        reservation_id: ReservationId::new(),
        user: user("carol"),
        quantity: Quantity::ONE,
        shard: 0,
        expires_at: now().plus(Duration::from_secs(600)),
    };
    let restored = shop
        .service
        .stock
        .ensure_held(&sale.stock(), &lost, now())
        .await
        .unwrap();
    assert_eq!(restored, RestoreOutcome::Fenced);

    // AND once the record names the whole id (as a rebuild writes it), refusals are answered
    shop.server.cli(&[
        "HSET", &stock_key, "writer", &run_id, "paused", "0", "fenced", "0",
    ]);
    let sold_out = shop.reserve(&sale, &user("bob"), "k2", 1).await;
    assert!(
        matches!(sold_out, Err(ReserveError::SoldOut)),
        "{sold_out:?}"
    );
    assert_eq!(
        shop.service
            .stock
            .ensure_held(&sale.stock(), &lost, now())
            .await
            .unwrap(),
        RestoreOutcome::NoUnits { available: 0 }
    );
    assert_eq!(shop.levels(&sale).await.held(), 1, "alice's hold {alice:?}");
}

#[tokio::test]
async fn a_stock_record_that_names_no_writer_is_fenced_not_an_error() {
    // GIVEN a sale whose record has lost its writer (written before records named one, or by
    // hand)
    let shop = Shop::new().await;
    let sale = shop.open("fence-no-writer", 2, 1, 1).await;
    let stock_key = ShardKeys::new(&sale.sale_id, 0).stock();
    shop.server.cli(&["HDEL", &stock_key, "writer"]);
    // WHEN a buyer reserves THEN the shard is fenced and a rebuild asked for (no script error)
    let refused = shop.reserve(&sale, &user("alice"), "k", 1).await;
    assert!(matches!(refused, Err(ReserveError::Paused)), "{refused:?}");
    assert_eq!(shop.server.cli(&["HGET", &stock_key, "fenced"]).trim(), "1");
    assert_eq!(shop.service.repairs.requested(), vec![sale.sale_id.clone()]);
}

#[tokio::test]
async fn a_hold_writes_its_counters_as_integer_text_even_for_round_numbers() {
    // GIVEN a shard of 100,000,001 units (after one hold: 100,000,000 left, which some Redis
    // versions would send from Lua as "1e+8")
    let shop = Shop::new().await;
    let sale = shop.open("round-numbers", 100_000_001, 1, 1).await;
    // WHEN a buyer reserves one unit
    shop.reserve(&sale, &user("alice"), "k", 1).await.unwrap();
    // THEN the record holds plain integers, which HINCRBY and the levels read back
    let stock_key = ShardKeys::new(&sale.sale_id, 0).stock();
    let fields = shop.server.cli(&["HMGET", &stock_key, "available", "held"]);
    assert_eq!(
        fields.split_whitespace().collect::<Vec<_>>(),
        ["100000000", "1"]
    );
    let levels = shop.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (100_000_000, 1));
}

// ---------------------------------------------------------------------------------------------
// Kind 11: a rebuild that trusts an index that lags.

#[tokio::test]
async fn a_rebuild_keeps_the_holds_of_records_the_index_does_not_show_yet() {
    // GIVEN two reservations with records; the by-sale index shows only one of them yet
    let shop = Shop::new().await;
    let sale = shop.open("lagging-index", 3, 1, 2).await;
    let a = shop.reserve(&sale, &user("a"), "k", 1).await.unwrap();
    let b = shop.reserve(&sale, &user("b"), "k", 1).await.unwrap();
    let ledger = InMemoryLedger::default();
    ledger.put(a.clone());
    ledger.put(b.clone());
    ledger.lag_index(b.reservation_id);
    // WHEN the stock is rebuilt
    let report = StockRebuilder {
        stock: &shop.service.stock,
        records: &ledger,
        catalog: &shop.service.catalog,
        clock: &shop.service.clock,
        config: RebuildConfig {
            settle: Duration::from_millis(10),
            ..RebuildConfig::default()
        },
    }
    .rebuild(&sale.sale_id, Trigger::Admin)
    .await
    .unwrap();
    // THEN both holds stand: the unindexed one was read back by id before anything was dropped
    assert_eq!(report.shards[0].dropped_holds, 0, "{report:?}");
    let levels = shop.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (1, 2));
}

// ---------------------------------------------------------------------------------------------
// Kind 6: a payment stuck in PAYMENT_PROCESSING with no saga running.

fn pending(sale_id: &SaleId, user: &UserId, now: Timestamp) -> Reservation {
    Reservation {
        reservation_id: ReservationId::new(),
        sale_id: sale_id.clone(),
        user_id: user.clone(),
        quantity: Quantity::ONE,
        shard: 0,
        status: ReservationStatus::Pending,
        amount: Money::new(2_000, Currency::parse("EUR").unwrap()).unwrap(),
        created_at: now,
        expires_at: now.plus(Duration::from_secs(600)),
    }
}

fn pay_command(r: &Reservation, key: &str, method: &str) -> PayCommand {
    PayCommand {
        user: r.user_id.clone(),
        reservation_id: r.reservation_id,
        payment_key: IdempotencyKey::parse(key).unwrap(),
        payment_method: PaymentMethod::parse(method).unwrap(),
    }
}

#[tokio::test]
async fn a_saga_that_could_not_be_started_is_started_by_the_retry_or_the_sweep() {
    let clock = ManualClock::at(now());
    let records = InMemoryCheckoutRecords::default();
    let control = InMemorySagaControl::default();
    let r = pending(&unique_sale("stuck"), &user("alice"), clock.now());
    records.insert(r.clone());
    let pay = PayService {
        records: records.clone(),
        saga: control.clone(),
        clock: clock.clone(),
    };
    // WHEN StartExecution fails
    control.fail_starts(&[Fault::Fails]);
    let answer = pay.pay(&pay_command(&r, "p", "pm_card_visa")).await;
    // THEN the buyer gets 503 and the reservation stays PAYMENT_PROCESSING (not given back)
    assert!(
        matches!(answer, Err(PayError::Unavailable(_))),
        "{answer:?}"
    );
    assert_eq!(
        records.record(r.reservation_id).unwrap().reservation.status,
        ReservationStatus::PaymentProcessing
    );
    assert!(control.executions().is_empty());
    // AND without a retry, the sweep's payment check starts it
    let recovery = SagaRecovery {
        records: records.clone(),
        saga: control.clone(),
    };
    assert_eq!(
        recovery.settle(r.reservation_id).await.unwrap(),
        PaymentCheck::Started
    );
    assert_eq!(control.executions(), vec![r.reservation_id.to_string()]);
    // AND a retry of the buyer now answers from the running saga (202), starting nothing new
    pay.pay(&pay_command(&r, "p", "pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(control.executions().len(), 1);
    assert_eq!(
        recovery.settle(r.reservation_id).await.unwrap(),
        PaymentCheck::Running
    );
}

#[tokio::test]
async fn a_start_whose_answer_was_lost_is_found_running_not_started_twice() {
    let clock = ManualClock::at(now());
    let records = InMemoryCheckoutRecords::default();
    let control = InMemorySagaControl::default();
    let r = pending(&unique_sale("lost-start"), &user("alice"), clock.now());
    records.insert(r.clone());
    let pay = PayService {
        records: records.clone(),
        saga: control.clone(),
        clock,
    };
    control.fail_starts(&[Fault::AnswerLost]);
    assert!(pay
        .pay(&pay_command(&r, "p", "pm_card_visa"))
        .await
        .is_err());
    // The retry meets the execution the lost call started.
    let retry = pay
        .pay(&pay_command(&r, "p", "pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(retry.status, ReservationStatus::PaymentProcessing);
    assert_eq!(control.executions(), vec![r.reservation_id.to_string()]);
}

#[tokio::test]
async fn a_saga_that_ended_without_settling_its_payment_is_restarted_under_a_new_name() {
    let clock = ManualClock::at(now());
    let records = InMemoryCheckoutRecords::default();
    let control = InMemorySagaControl::default();
    let r = pending(&unique_sale("ended"), &user("alice"), clock.now());
    records.insert(r.clone());
    PayService {
        records: records.clone(),
        saga: control.clone(),
        clock,
    }
    .pay(&pay_command(&r, "p", "pm_card_visa"))
    .await
    .unwrap();
    // The execution fails (a compensation that kept failing) and the record stays PAYMENT_PROCESSING.
    control.end(&r.reservation_id.to_string(), "FAILED");
    let recovery = SagaRecovery {
        records: records.clone(),
        saga: control.clone(),
    };
    assert_eq!(
        recovery.settle(r.reservation_id).await.unwrap(),
        PaymentCheck::Restarted
    );
    let name = format!("{}-r2", r.reservation_id);
    assert!(
        control.executions().contains(&name),
        "{:?}",
        control.executions()
    );
    assert_eq!(
        control.input_of(&name).unwrap()["payment_method"],
        "pm_card_visa"
    );
    assert_eq!(records.record(r.reservation_id).unwrap().saga_attempt, 2);
    // A second sweep finds it running and does nothing.
    assert_eq!(
        recovery.settle(r.reservation_id).await.unwrap(),
        PaymentCheck::Running
    );
}

#[tokio::test]
async fn a_restarted_saga_whose_charge_had_succeeded_reads_it_and_charges_nothing_more() {
    // GIVEN a reservation charged by a first execution (its webhook went there), now restarted
    let shop = Shop::new().await;
    let sale = shop.open("restarted", 2, 1, 1).await;
    let r = shop.reserve(&sale, &user("alice"), "k", 1).await.unwrap();
    let checkout = Checkout::new(&shop);
    checkout.begin(&r, "pm_card_visa").await;
    checkout.charge(&r).await;
    assert_eq!(checkout.provider.intents().len(), 1);
    // WHEN the restarted execution's Charge step runs
    let again = checkout.step(StepKind::Charge, &r, None).await;
    // THEN it says the charge is done (the definition goes to ReadCharge, then CreateOrder)
    assert_eq!(again.unwrap_err().error_type, et::ALREADY_CHARGED);
    let read = checkout.step(StepKind::ReadCharge, &r, None).await.unwrap();
    let intent = checkout.provider.intents().pop().unwrap();
    assert_eq!(read["payment_intent_id"], intent.id.as_str());
    assert_eq!(intent.status, PaymentStatus::Succeeded);
    // AND still one intent: charged once
    assert_eq!(checkout.provider.intents().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Kind 7: an Idempotency-Key reused with another body.

#[tokio::test]
async fn a_payment_key_reused_with_another_payment_method_is_refused() {
    let clock = ManualClock::at(now());
    let records = InMemoryCheckoutRecords::default();
    let control = InMemorySagaControl::default();
    let r = pending(&unique_sale("key-reuse"), &user("alice"), clock.now());
    records.insert(r.clone());
    let pay = PayService {
        records: records.clone(),
        saga: control.clone(),
        clock,
    };
    pay.pay(&pay_command(&r, "p", "pm_card_visa"))
        .await
        .unwrap();
    let reused = pay
        .pay(&pay_command(&r, "p", "pm_card_chargeDeclined"))
        .await;
    assert!(matches!(reused, Err(PayError::KeyReused)), "{reused:?}");
    // The same body with the same key is still a replay.
    assert!(pay.pay(&pay_command(&r, "p", "pm_card_visa")).await.is_ok());
    assert_eq!(control.executions().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Kind 8: a half-applied admin change is finished by any retry.

/// A stock engine that fails `grow_to` a set number of times (Redis unreachable at that step).
struct FlakyGrow<E> {
    inner: E,
    failures: AtomicU32,
}

impl<E: StockEngine> StockEngine for FlakyGrow<E> {
    async fn reserve(&self, r: &ReserveRequest) -> Result<ReserveOutcome, StockError> {
        self.inner.reserve(r).await
    }
    async fn release(
        &self,
        s: &SaleStock,
        sh: u16,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, StockError> {
        self.inner.release(s, sh, id).await
    }
    async fn drop_claim(
        &self,
        s: &SaleStock,
        u: &UserId,
        id: ReservationId,
    ) -> Result<bool, StockError> {
        self.inner.drop_claim(s, u, id).await
    }
    async fn commit(
        &self,
        s: &SaleStock,
        sh: u16,
        id: ReservationId,
    ) -> Result<CommitOutcome, StockError> {
        self.inner.commit(s, sh, id).await
    }
    async fn commit_paid(
        &self,
        s: &SaleStock,
        h: &HoldSpec,
        now: Timestamp,
    ) -> Result<CommitOutcome, StockError> {
        self.inner.commit_paid(s, h, now).await
    }
    async fn ensure_held(
        &self,
        s: &SaleStock,
        h: &HoldSpec,
        now: Timestamp,
    ) -> Result<RestoreOutcome, StockError> {
        self.inner.ensure_held(s, h, now).await
    }
    async fn rollback(
        &self,
        s: &SaleStock,
        h: &Hold,
        u: &UserId,
        k: &IdempotencyKey,
    ) -> Result<(), StockError> {
        self.inner.rollback(s, h, u, k).await
    }
    async fn hold_state(
        &self,
        s: &SaleStock,
        sh: u16,
        id: ReservationId,
    ) -> Result<Option<HoldState>, StockError> {
        self.inner.hold_state(s, sh, id).await
    }
    async fn setup(&self, s: &SaleStock, setup: &StockSetup) -> Result<SetupOutcome, StockError> {
        self.inner.setup(s, setup).await
    }
    async fn grow_to(&self, s: &SaleStock, total: u64) -> Result<(), StockError> {
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(StockError::InvalidSetup("injected: Redis unreachable"));
        }
        self.inner.grow_to(s, total).await
    }
    async fn levels(&self, s: &SaleStock) -> Result<StockLevels, StockError> {
        self.inner.levels(s).await
    }
    async fn set_per_user_limit(&self, s: &SaleStock, limit: u32) -> Result<(), StockError> {
        self.inner.set_per_user_limit(s, limit).await
    }
}

#[tokio::test]
async fn a_put_sale_that_failed_on_redis_is_finished_by_a_retry_of_the_same_body() {
    let server = RedisServer::start();
    let stock = FlakyGrow {
        inner: RedisStockEngine::new(server.connection().await, RedisStockConfig::default()),
        failures: AtomicU32::new(0),
    };
    let catalog = InMemorySaleCatalog::default();
    let clock = ManualClock::at(now());
    let sale = the_sale("converge", 10, 4, 1, clock.now());
    put_sale(&catalog, &stock, &clock, sale.clone())
        .await
        .unwrap();
    // WHEN the admin raises the stock to 15 and Redis fails after DynamoDB took the change
    stock.failures.store(1, Ordering::SeqCst);
    let wanted = Sale {
        total_stock: 15,
        per_user_limit: 2,
        ..sale.clone()
    };
    let failed = put_sale(&catalog, &stock, &clock, wanted.clone()).await;
    assert!(matches!(failed, Err(PutSaleError::Stock(_))), "{failed:?}");
    assert_eq!(
        catalog
            .get(&sale.sale_id)
            .await
            .unwrap()
            .unwrap()
            .total_stock,
        15
    );
    assert_eq!(stock.levels(&sale.stock()).await.unwrap().initial(), 10);
    // THEN the same PUT again converges Redis on the catalog
    put_sale(&catalog, &stock, &clock, wanted.clone())
        .await
        .unwrap();
    assert_eq!(stock.levels(&sale.stock()).await.unwrap().initial(), 15);
    // AND once more changes nothing (15, not 20), with the new limit in force on every shard
    put_sale(&catalog, &stock, &clock, wanted).await.unwrap();
    let levels = stock.levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.initial(), levels.available()), (15, 15));
    for shard in sale.shards.all() {
        let limit = server.cli(&[
            "HGET",
            &ShardKeys::new(&sale.sale_id, shard).stock(),
            "limit",
        ]);
        assert_eq!(limit.trim(), "2");
    }
}

// ---------------------------------------------------------------------------------------------
// Kind 9: one buyer's refused requests do not drain a shared bucket.

async fn rate_shop(per_user: u32, per_ip: u32) -> Shop {
    let mut shop = Shop::new().await;
    shop.service.policies = RatePolicies {
        per_user: BucketPolicy::new(per_user, 0.001).unwrap(),
        per_ip: BucketPolicy::new(per_ip, 0.001).unwrap(),
    };
    shop
}

async fn attempt(shop: &Shop, sale: &Sale, user: &str, ip: &str) -> bool {
    let response = shop
        .service
        .reserve(ReserveCommand {
            user: UserId::parse(user).unwrap(),
            source_ip: Some(ip.into()),
            request_id: RequestId::random(),
            sale_id: sale.sale_id.clone(),
            quantity: Quantity::ONE,
            idempotency_key: IdempotencyKey::parse(uuid::Uuid::now_v7().to_string()).unwrap(),
            email: None,
        })
        .await;
    !matches!(response.result, Err(ReserveError::RateLimited(_)))
}

#[tokio::test]
async fn a_greedy_buyer_behind_a_shared_address_does_not_lock_out_the_others() {
    // GIVEN 1 request per buyer and 3 per address
    let shop = rate_shop(1, 3).await;
    let sale = shop.open("nat", 100, 1, 100).await;
    // WHEN one buyer behind a carrier NAT fires 5 requests
    let greedy: Vec<bool> = {
        let mut out = Vec::new();
        for _ in 0..5 {
            out.push(attempt(&shop, &sale, "greedy", "100.64.0.1").await);
        }
        out
    };
    assert_eq!(greedy, [true, false, false, false, false]);
    // THEN the address still has room for two other buyers (the 4 refusals spent none of it)
    assert!(attempt(&shop, &sale, "neighbour-1", "100.64.0.1").await);
    assert!(attempt(&shop, &sale, "neighbour-2", "100.64.0.1").await);
    assert!(!attempt(&shop, &sale, "neighbour-3", "100.64.0.1").await);
}

#[tokio::test]
async fn a_request_the_address_refuses_gives_the_buyer_their_token_back() {
    let shop = rate_shop(1, 1).await;
    let sale = shop.open("refund", 100, 1, 100).await;
    assert!(attempt(&shop, &sale, "first", "10.0.0.1").await);
    // The address is spent: refused, and the buyer's own token comes back...
    assert!(!attempt(&shop, &sale, "second", "10.0.0.1").await);
    // ...so the same buyer from another address is not refused by their own bucket.
    assert!(attempt(&shop, &sale, "second", "10.0.0.2").await);
}

// ---------------------------------------------------------------------------------------------
// Kind 1, continued: a durable write that only looked failed is never rolled back.

#[tokio::test]
async fn a_write_that_committed_but_lost_its_answer_stands_and_is_not_rolled_back() {
    let shop = Shop::new().await;
    let sale = shop.open("lost-answer", 2, 1, 1).await;
    let alice = user("alice");
    // The insert commits, its answer is lost: the tombstone finds the record.
    shop.service.store.lose_answers(1);
    let r = shop.reserve(&sale, &alice, "k", 1).await.unwrap();
    assert_eq!(r.status, ReservationStatus::Pending);
    assert_eq!(
        shop.service
            .stock
            .hold_state(&sale.stock(), r.shard, r.reservation_id)
            .await
            .unwrap(),
        Some(HoldState::Held)
    );
    // One reservation, one claim: the limit of 1 holds.
    assert!(matches!(
        shop.reserve(&sale, &alice, "k2", 1).await,
        Err(ReserveError::LimitReached { .. })
    ));
    shop.assert_invariant(&sale).await;
}

#[tokio::test]
async fn when_nothing_can_be_written_the_hold_waits_for_the_retry_which_records_it() {
    let shop = Shop::new().await;
    let sale = shop.open("store-down", 2, 1, 1).await;
    let alice = user("alice");
    // DynamoDB refuses the record and the tombstone: nothing is known, nothing rolled back.
    shop.service.store.fail_writes(true);
    shop.service.store.fail_voids(true);
    assert!(shop.reserve(&sale, &alice, "k", 1).await.is_err());
    let levels = shop.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (1, 1));
    // The retry with the same key replays the hold and records it: the buyer gets it.
    shop.service.store.fail_writes(false);
    shop.service.store.fail_voids(false);
    let r = shop.reserve(&sale, &alice, "k", 1).await.unwrap();
    assert_eq!(shop.service.store.all().len(), 1);
    assert_eq!(shop.service.store.all()[0].reservation_id, r.reservation_id);
    shop.assert_invariant(&sale).await;
}

#[tokio::test]
async fn a_fallback_rollback_cut_after_its_first_step_leaks_no_allowance() {
    // GIVEN alice's unit on another shard (home empty), and a rollback cut after the home step
    let shop = Shop::new().await;
    let sale = shop.open("cut-home-first", 2, 2, 1).await;
    let engine = &shop.service.stock;
    let filler = user_with_home(sale.shards, 0, "filler");
    shop.reserve(&sale, &filler, "fill", 1).await.unwrap();
    let alice = user_with_home(sale.shards, 0, "alice");
    let req = request(&sale.stock(), &alice, "k", 1);
    let ReserveOutcome::Reserved(hold) = engine.reserve(&req).await.unwrap() else {
        panic!()
    };
    let home = ShardKeys::new(&sale.sale_id, 0);
    let mut conn = shop.server.connection().await;
    let _: redis::Value = flashsale_core::stock::redis::scripts::ROLLBACK
        .key(home.stock())
        .key(home.holds())
        .key(home.hold_times())
        .key(home.user(&alice))
        .key(home.idempotency(&alice, &req.idempotency_key))
        .key(home.pending_claims())
        .arg(hold.reservation_id.to_string())
        .arg(alice.to_string())
        .arg("0")
        .invoke_async(&mut conn)
        .await
        .unwrap();
    // THEN her allowance and key are free at once: the same key is a new request...
    let levels = shop.levels(&sale).await;
    assert_eq!(levels.available(), 0, "the cut hold still holds its unit");
    assert!(matches!(
        shop.reserve(&sale, &alice, "k", 1).await,
        Err(ReserveError::SoldOut)
    ));
    // ...and the hold left on the other shard (no record, no claim) is the reconciler's: it
    // releases it after its grace period.
    let ledger = InMemoryLedger::default();
    let payments = RecordedPaymentChecks::default();
    let report = HoldReconciler {
        stock: engine,
        records: &ledger,
        payments: &payments,
        config: ReconcileConfig {
            grace: Duration::ZERO,
            ..ReconcileConfig::default()
        },
    }
    .reconcile_sale(
        &sale,
        now().plus(Duration::from_secs(1)),
        std::time::Instant::now() + Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(report.orphans_released >= 1, "{report:?}");
    shop.reserve(&sale, &alice, "k3", 1).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Kind 11, continued: what the rebuild decides on the records themselves.

#[tokio::test]
async fn a_rebuild_keeps_a_young_hold_without_a_record_drops_an_old_one_and_its_claim() {
    let shop = Shop::new().await;
    let sale = shop.open("young-old", 3, 1, 1).await;
    let engine = &shop.service.stock;
    // A young hold whose reserve has not written its record yet, and an old orphan.
    let young = user("young");
    engine
        .reserve(&request(&sale.stock(), &young, "k", 1))
        .await
        .unwrap();
    let old = user("old");
    let old_req = ReserveRequest {
        now: now().minus(Duration::from_secs(600)),
        ..request(&sale.stock(), &old, "k", 1)
    };
    engine.reserve(&old_req).await.unwrap();
    let ledger = InMemoryLedger::default();
    StockRebuilder {
        stock: engine,
        records: &ledger,
        catalog: &shop.service.catalog,
        clock: &shop.service.clock,
        config: RebuildConfig {
            settle: Duration::from_millis(10),
            ..RebuildConfig::default()
        },
    }
    .rebuild(&sale.sale_id, Trigger::Admin)
    .await
    .unwrap();
    // The young one keeps its unit; the old orphan's unit and its buyer's allowance are free.
    let levels = shop.levels(&sale).await;
    assert_eq!((levels.available(), levels.held()), (2, 1));
    shop.reserve(&sale, &old, "again", 1).await.unwrap();
}

#[tokio::test]
async fn a_rebuild_reads_back_reservations_the_index_still_shows_as_held_past_their_expiry() {
    let shop = Shop::new().await;
    let sale = shop.open("stale-index", 2, 1, 2).await;
    let r = shop.reserve(&sale, &user("a"), "k", 1).await.unwrap();
    // The record expired (its unit went back), but the index still shows it PENDING.
    let ledger = InMemoryLedger::default();
    let expired_record = Reservation {
        expires_at: now().minus(Duration::from_secs(1)),
        ..r.clone()
    };
    ledger.put(expired_record.clone());
    shop.service
        .stock
        .release(&sale.stock(), r.shard, r.reservation_id)
        .await
        .unwrap();
    ledger.set_status(r.reservation_id, ReservationStatus::Expired);
    ledger.show_stale_status(r.reservation_id, ReservationStatus::Pending);
    let report = StockRebuilder {
        stock: &shop.service.stock,
        records: &ledger,
        catalog: &shop.service.catalog,
        clock: &shop.service.clock,
        config: RebuildConfig {
            settle: Duration::from_millis(10),
            ..RebuildConfig::default()
        },
    }
    .rebuild(&sale.sale_id, Trigger::Admin)
    .await
    .unwrap();
    assert_eq!(report.held_reservations, 0, "{report:?}");
    assert_eq!(report.oversold_units, 0);
    assert_eq!(shop.levels(&sale).await.available(), 2);
}

#[tokio::test]
async fn an_admin_change_during_a_rebuild_is_not_undone_by_it() {
    let shop = Shop::new().await;
    let sale = shop.open("admin-during", 4, 2, 1).await;
    // The catalog changes (limit 3, 6 units) after the rebuild read the sale: a rebuild that
    // wrote only what it read would put limit 1 and 4 units back.
    let catalog = shop.service.catalog.clone();
    let changed = Sale {
        per_user_limit: 3,
        total_stock: 6,
        version: sale.version + 1,
        ..sale.clone()
    };
    let rebuilder = StockRebuilder {
        stock: &shop.service.stock,
        records: &InMemoryLedger::default(),
        catalog: &catalog,
        clock: &shop.service.clock,
        config: RebuildConfig {
            settle: Duration::from_millis(300),
            ..RebuildConfig::default()
        },
    };
    let change = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        catalog.update(&changed).await.unwrap();
    };
    let (rebuilt, ()) = tokio::join!(rebuilder.rebuild(&sale.sale_id, Trigger::Admin), change);
    rebuilt.unwrap();
    let levels = shop.levels(&sale).await;
    assert_eq!(levels.initial(), 6);
    for shard in sale.shards.all() {
        let limit = shop.server.cli(&[
            "HGET",
            &ShardKeys::new(&sale.sale_id, shard).stock(),
            "limit",
        ]);
        assert_eq!(limit.trim(), "3");
    }
}

// ---------------------------------------------------------------------------------------------
// Found by a break attempt: a payment during a stock loss, a claim outliving a lost hold, a
// replay of a closed attempt.

#[tokio::test]
async fn a_payment_that_finds_its_sale_lost_in_redis_waits_for_the_rebuild_it_asks_for() {
    // GIVEN a valid reservation whose sale Redis lost entirely (a failover to an empty replica)
    let shop = Shop::new().await;
    let sale = shop.open("pay-during-loss", 2, 1, 1).await;
    let r = shop.reserve(&sale, &user("alice"), "k", 1).await.unwrap();
    for shard in 0..1 {
        let keys = ShardKeys::new(&sale.sale_id, shard);
        shop.server
            .cli(&["DEL", &keys.stock(), &keys.holds(), &keys.hold_times()]);
    }
    let checkout = Checkout::new(&shop);
    checkout.begin(&r, "pm_card_visa").await;
    // WHEN its Charge step runs
    let charged = checkout.step(StepKind::Charge, &r, None).await;
    // THEN nothing is charged, the step fails with the error the definition retries for about
    // a minute (not one that fails the reservation), and a rebuild is asked for at once
    assert_eq!(charged.unwrap_err().error_type, et::STOCK_UNAVAILABLE);
    assert_eq!(checkout.provider.calls(), 0);
    assert_eq!(checkout.repairs.requested(), vec![sale.sale_id.clone()]);
}

#[tokio::test]
async fn releasing_a_hold_redis_lost_frees_the_buyers_claim() {
    // GIVEN alice's hold lost (its unit back on sale) while her claim, on her home shard, stayed
    let shop = Shop::new().await;
    let sale = shop.open("claim-leak", 2, 1, 1).await;
    let alice = user("alice");
    let r = shop.reserve(&sale, &alice, "k", 1).await.unwrap();
    let keys = ShardKeys::new(&sale.sale_id, r.shard);
    shop.server
        .cli(&["HDEL", &keys.holds(), &r.reservation_id.to_string()]);
    shop.server
        .cli(&["ZREM", &keys.hold_times(), &r.reservation_id.to_string()]);
    shop.server
        .cli(&["HINCRBY", &keys.stock(), "available", "1"]);
    shop.server.cli(&["HINCRBY", &keys.stock(), "held", "-1"]);
    let checkout = Checkout::new(&shop);
    checkout.records.insert(Reservation {
        status: ReservationStatus::Failed,
        ..r.clone()
    });
    // WHEN the saga's compensation releases the hold
    let released = checkout
        .step(StepKind::ReleaseHold, &r, None)
        .await
        .unwrap();
    // THEN the claim goes too: alice may buy again, within her limit
    assert_eq!(released["claim_dropped"], true, "{released}");
    let again = shop.reserve(&sale, &alice, "k2", 1).await;
    assert!(again.is_ok(), "{again:?}");
    assert!(matches!(
        shop.reserve(&sale, &alice, "k3", 1).await,
        Err(ReserveError::LimitReached { .. })
    ));
}

#[tokio::test]
async fn a_replay_of_an_attempt_closed_by_a_tombstone_is_refused_not_answered_expired() {
    // GIVEN a hold whose durable write failed: its id was closed by a tombstone, then the
    // rollback never completed (its key still names the hold) and the hold was released later
    let shop = Shop::new().await;
    let sale = shop.open("tombstone-replay", 2, 1, 1).await;
    let alice = user("alice");
    let req = request(&sale.stock(), &alice, "k", 1);
    let ReserveOutcome::Reserved(hold) = shop.service.stock.reserve(&req).await.unwrap() else {
        panic!()
    };
    let record = Reservation {
        reservation_id: hold.reservation_id,
        sale_id: sale.sale_id.clone(),
        user_id: alice.clone(),
        quantity: hold.quantity,
        shard: hold.shard,
        status: ReservationStatus::Pending,
        amount: sale.price,
        created_at: shop.service.clock.now(),
        expires_at: hold.expires_at,
    };
    shop.service.store.insert_void(&record).await.unwrap();
    shop.service
        .stock
        .release(&sale.stock(), hold.shard, hold.reservation_id)
        .await
        .unwrap();
    // WHEN the buyer retries with the key
    let replay = shop.reserve(&sale, &alice, "k", 1).await;
    // THEN the key is spent (409), not answered 201 with a dead reservation
    assert!(matches!(replay, Err(ReserveError::KeySpent)), "{replay:?}");
    shop.assert_invariant(&sale).await;
}
