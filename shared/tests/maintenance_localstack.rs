//! Expiry cleanup, hold reconciliation and stock rebuild against real Redis (a redis-server of
//! the test's own) and real DynamoDB (LocalStack's DynamoDB Local, throwaway tables per test),
//! through the production adapters. Reservations are made by the real reserve service; the
//! crash between its Redis step and its durable write is the `fault-injection` switch.
//! Compiled only with `--features localstack-tests` (which turns on `fault-injection`).
#![cfg(feature = "localstack-tests")]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use common::scenarios::MaintenanceWorld;
use flashsale_core::domain::{
    Clock, IdempotencyKey, Quantity, ReservationId, SaleId, SystemClock, Timestamp, UserId,
};
use flashsale_core::expiry::dynamo::{DynamoExpiryStore, ExpiryWrites};
use flashsale_core::expiry::{ExpireOutcome, ExpiryConfig, ExpiryService, ExpiryStore};
use flashsale_core::identity::context_for;
use flashsale_core::rate_limit::redis::RedisRateLimiter;
use flashsale_core::rate_limit::RequestId;
use flashsale_core::reconcile::dynamo::DynamoDurableRecords;
use flashsale_core::reconcile::holds::{HoldReconciler, ReconcileConfig, SaleReconcileReport};
use flashsale_core::reconcile::http as rebuild_http;
use flashsale_core::reconcile::memory::RecordedPaymentChecks;
use flashsale_core::reconcile::rebuild::{RebuildConfig, RebuildReport, StockRebuilder, Trigger};
use flashsale_core::reconcile::{DurableRecords, Which};
use flashsale_core::reservation::dynamo::DynamoReservationStore;
use flashsale_core::reservation::http as reservation_http;
use flashsale_core::reservation::item::{expiry_bucket, to_item};
use flashsale_core::reservation::reserve::{
    fault, RatePolicies, ReserveCommand, ReserveError, ReserveService,
};
use flashsale_core::reservation::{Reservation, ReservationStatus, ReservationStore};
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::sale::{Sale, SaleCatalog};
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::repair::memory::RecordedRepairs;
use flashsale_core::stock::{split_evenly, ShardKeys, StockEngine};
use flashsale_core::store::item::{num, str};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt};
use redis::aio::ConnectionManager;
use testkit::dynamo::{localstack_client, Tables};
use testkit::fixtures::{self, OpenSale};
use testkit::RedisServer;

type Engine = RedisStockEngine<ConnectionManager>;
type Service = ReserveService<
    Engine,
    RedisRateLimiter<ConnectionManager>,
    DynamoSaleCatalog,
    DynamoReservationStore,
    SystemClock,
    RecordedRepairs,
>;

struct World {
    server: RedisServer,
    tables: Tables,
    client: Client,
    service: Service,
    records: DynamoDurableRecords,
    payments: RecordedPaymentChecks,
}

async fn world() -> World {
    let server = RedisServer::start();
    let client = localstack_client().await;
    let tables = Tables::create(&client, "mt").await;
    let conn = server.connection().await;
    let service = ReserveService {
        stock: RedisStockEngine::new(conn.clone(), RedisStockConfig::default()),
        limiter: RedisRateLimiter::new(conn),
        catalog: DynamoSaleCatalog::new(client.clone(), &tables.sales),
        store: DynamoReservationStore::new(client.clone(), &tables.reservations),
        clock: SystemClock,
        repairs: RecordedRepairs::default(),
        policies: RatePolicies::default(),
    };
    let records = DynamoDurableRecords::new(client.clone(), &tables.reservations, &tables.orders);
    World {
        server,
        tables,
        client,
        service,
        records,
        payments: RecordedPaymentChecks::default(),
    }
}

impl World {
    fn engine(&self) -> &Engine {
        &self.service.stock
    }

    async fn open_sale(&self, units: u64, shards: u16, limit: u32) -> Sale {
        let id = SaleId::parse(format!("mt-{}", uuid::Uuid::now_v7().simple())).unwrap();
        let sale = OpenSale::new(id, units)
            .shards(shards)
            .limit(limit)
            .price(700)
            .named("maintenance")
            .at(SystemClock.now());
        fixtures::open(&self.service.catalog, self.engine(), &sale).await;
        sale
    }

    async fn try_reserve(&self, sale: &Sale, user: &str) -> Result<Reservation, ReserveError> {
        self.service
            .reserve(ReserveCommand {
                user: UserId::parse(user).unwrap(),
                source_ip: None,
                request_id: RequestId::random(),
                sale_id: sale.sale_id.clone(),
                quantity: Quantity::ONE,
                idempotency_key: IdempotencyKey::parse(format!("key-{user}")).unwrap(),
                email: None,
            })
            .await
            .result
            .map(|r| r.reservation)
    }

    async fn reserve(&self, sale: &Sale, user: &str) -> Reservation {
        self.try_reserve(sale, user).await.expect("reserved")
    }

    async fn status_of(&self, id: ReservationId) -> Option<ReservationStatus> {
        self.service.store.get(id).await.unwrap().map(|r| r.status)
    }

    /// Overwrites a record with another status (as the saga or the expiry would have).
    async fn set_status(&self, r: &Reservation, status: ReservationStatus) {
        let item = to_item(&Reservation {
            status,
            ..r.clone()
        });
        self.client
            .put_item()
            .table_name(&self.tables.reservations)
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    /// What the saga's transaction writes: the order, and the reservation CONFIRMED.
    async fn confirm(&self, r: &Reservation) {
        self.set_status(r, ReservationStatus::Confirmed).await;
        self.client
            .put_item()
            .table_name(&self.tables.orders)
            .item("reservation_id", str(r.reservation_id.to_string()))
            .item("order_id", str(format!("ord-{}", r.reservation_id)))
            .item("sale_id", str(r.sale_id.as_str()))
            .item("user_id", str(r.user_id.as_str()))
            .item("quantity", num(r.quantity.get()))
            .item("shard", num(r.shard))
            .item("amount_minor", num(r.amount.amount_minor))
            .item("currency", str(r.amount.currency.as_str()))
            .item("payment_intent_id", str("pi_test"))
            .item("created_at", num(SystemClock.now().as_millis()))
            .send()
            .await
            .unwrap();
    }

    fn reconciler(
        &self,
    ) -> HoldReconciler<'_, Engine, DynamoDurableRecords, RecordedPaymentChecks> {
        HoldReconciler {
            stock: self.engine(),
            records: &self.records,
            payments: &self.payments,
            config: ReconcileConfig {
                grace: Duration::ZERO,
                ..ReconcileConfig::default()
            },
        }
    }

    fn rebuilder(
        &self,
    ) -> StockRebuilder<'_, Engine, DynamoDurableRecords, DynamoSaleCatalog, SystemClock> {
        StockRebuilder {
            stock: self.engine(),
            records: &self.records,
            catalog: &self.service.catalog,
            clock: &SystemClock,
            config: RebuildConfig {
                settle: Duration::from_millis(50),
                ..RebuildConfig::default()
            },
        }
    }

    async fn reconcile(&self, sale: &Sale) -> SaleReconcileReport {
        self.reconciler()
            .reconcile_sale(
                sale,
                SystemClock.now(),
                Instant::now() + Duration::from_secs(30),
            )
            .await
            .unwrap()
    }

    /// initial = available + held + sold per shard, with held and sold counted from DynamoDB.
    async fn assert_invariant(&self, sale: &Sale) {
        let levels = self.engine().levels(&sale.stock()).await.unwrap();
        assert!(levels.is_complete(), "{levels:?}");
        let reservations = self
            .records
            .reservations_of_sale(&sale.sale_id, Which::All)
            .await
            .unwrap();
        let orders = self.records.orders_of_sale(&sale.sale_id).await.unwrap();
        let expected = split_evenly(sale.total_stock, sale.shards);
        for level in levels.shards.iter().flatten() {
            let held: i64 = reservations
                .iter()
                .filter(|r| r.shard == level.shard && r.is_held())
                .map(|r| i64::from(r.quantity.get()))
                .sum();
            let sold: i64 = orders
                .iter()
                .filter(|o| o.shard == level.shard)
                .map(|o| i64::from(o.quantity.get()))
                .sum();
            assert_eq!(level.initial, expected[usize::from(level.shard)] as i64);
            assert_eq!(
                (level.available, level.held, level.sold),
                (level.initial - held - sold, held, sold),
                "shard {}",
                level.shard
            );
            assert!(level.available >= 0);
        }
    }
}

impl MaintenanceWorld for World {
    type Stock = Engine;

    fn stock(&self) -> &Engine {
        self.engine()
    }

    fn redis(&self) -> &RedisServer {
        &self.server
    }

    async fn open_sale(&self, units: u64, shards: u16, limit: u32) -> Sale {
        World::open_sale(self, units, shards, limit).await
    }

    async fn reserve(&self, sale: &Sale, user: &str) -> Reservation {
        World::reserve(self, sale, user).await
    }

    async fn record(&self, r: &Reservation, status: ReservationStatus) {
        match status {
            ReservationStatus::Confirmed => self.confirm(r).await,
            other => self.set_status(r, other).await,
        }
    }

    async fn reconcile(&self, sale: &Sale) -> SaleReconcileReport {
        World::reconcile(self, sale).await
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

    async fn finish(self) {
        self.tables.delete().await;
    }
}

// The scenarios both back ends run (tests/common/scenarios.rs).
crate::maintenance_scenarios!(world());

async fn expiry_run(
    w: &World,
    writes: ExpiryWrites,
    at: Timestamp,
) -> flashsale_core::expiry::ExpiryReport {
    let store = DynamoExpiryStore::new(w.client.clone(), &w.tables.reservations, writes);
    ExpiryService {
        store: &store,
        stock: w.engine(),
        catalog: &w.service.catalog,
        config: ExpiryConfig {
            concurrency: 8,
            page_size: 10,
        },
    }
    .run(at, Instant::now() + Duration::from_secs(60))
    .await
}

async fn expiry_through_dynamodb(writes: ExpiryWrites) {
    let w = world().await;
    let sale = w.open_sale(60, 4, 1).await;
    let mut pending = Vec::new();
    for i in 0..40 {
        pending.push(w.reserve(&sale, &format!("exp-{i}")).await);
    }
    let paying = w.reserve(&sale, "payer").await;
    w.set_status(&paying, ReservationStatus::PaymentProcessing)
        .await;
    let at = SystemClock.now().plus(Duration::from_secs(601));

    // Not due yet: nothing happens.
    let early = expiry_run(&w, writes, SystemClock.now()).await;
    assert_eq!(early.expired, 0, "{early:?}");

    let report = expiry_run(&w, writes, at).await;
    assert_eq!((report.expired, report.released), (40, 40), "{report:?}");
    assert_eq!(
        (report.errors, report.release_failures),
        (0, 0),
        "{report:?}"
    );
    assert!(!report.more_remaining);
    for r in &pending {
        assert_eq!(
            w.status_of(r.reservation_id).await,
            Some(ReservationStatus::Expired)
        );
    }
    // The item left the sparse index.
    let item = w
        .client
        .get_item()
        .table_name(&w.tables.reservations)
        .key("reservation_id", str(pending[0].reservation_id.to_string()))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert!(!item.contains_key("expiry_bucket"));
    assert!(item.contains_key("expired_at"));
    assert_eq!(
        w.status_of(paying.reservation_id).await,
        Some(ReservationStatus::PaymentProcessing)
    );
    let levels = w.engine().levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (59, 1));
    w.assert_invariant(&sale).await;

    let again = expiry_run(&w, writes, at).await;
    assert_eq!((again.expired, again.skipped), (0, 0), "{again:?}");
    w.tables.delete().await;
}

#[tokio::test]
async fn expiry_through_dynamodb_with_transactions() {
    expiry_through_dynamodb(ExpiryWrites::Transact(100)).await;
}

#[tokio::test]
async fn expiry_through_dynamodb_with_partiql_batches() {
    expiry_through_dynamodb(ExpiryWrites::Partiql(25)).await;
}

#[tokio::test]
async fn expiry_through_dynamodb_with_one_update_item_each() {
    expiry_through_dynamodb(ExpiryWrites::PerItem).await;
}

async fn a_payment_that_claims_first_wins(writes: ExpiryWrites) {
    let w = world().await;
    let sale = w.open_sale(5, 1, 1).await;
    let racer = w.reserve(&sale, "racer").await;
    let others = [
        w.reserve(&sale, "other-1").await,
        w.reserve(&sale, "other-2").await,
    ];
    let store = DynamoExpiryStore::new(w.client.clone(), &w.tables.reservations, writes);
    let at = SystemClock.now().plus(Duration::from_secs(601));
    // GIVEN the cleanup read them from the index, then a payment claimed one
    let page = store
        .due(&expiry_bucket(racer.reservation_id), at, 10, None)
        .await
        .unwrap();
    assert!(page
        .items
        .iter()
        .any(|d| d.reservation_id == racer.reservation_id));
    w.set_status(&racer, ReservationStatus::PaymentProcessing)
        .await;
    // WHEN the conditional writes run, in one call
    let ids = [
        racer.reservation_id,
        others[0].reservation_id,
        others[1].reservation_id,
    ];
    let outcomes = store.expire(&ids, at).await;
    // THEN the claimed one loses, the others expire
    assert!(
        matches!(outcomes[0], Ok(ExpireOutcome::NotPending)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Ok(ExpireOutcome::Expired)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], Ok(ExpireOutcome::Expired)),
        "{outcomes:?}"
    );
    assert_eq!(
        w.status_of(racer.reservation_id).await,
        Some(ReservationStatus::PaymentProcessing)
    );
    assert_eq!(
        w.status_of(others[1].reservation_id).await,
        Some(ReservationStatus::Expired)
    );
    // AND a second attempt on an expired one (a retry whose first answer was lost, or a
    // concurrent run) reads the old item and counts as expired, so its hold is released
    // (idempotently) instead of being left to the reconciler; never an error
    let again = store.expire(&ids[1..], at).await;
    assert!(
        again
            .iter()
            .all(|o| matches!(o, Ok(ExpireOutcome::Expired))),
        "{again:?}"
    );
    // AND the claimed one still loses on a retry
    assert!(matches!(
        store.expire(&ids[..1], at).await[0],
        Ok(ExpireOutcome::NotPending)
    ));
    w.tables.delete().await;
}

#[tokio::test]
async fn a_payment_that_claims_a_reservation_first_makes_the_expiry_skip_it() {
    for writes in [
        ExpiryWrites::Transact(100),
        ExpiryWrites::Partiql(25),
        ExpiryWrites::PerItem,
    ] {
        a_payment_that_claims_first_wins(writes).await;
    }
}

#[tokio::test]
async fn a_reserve_killed_between_its_two_writes_is_released_by_the_reconciler() {
    let w = world().await;
    let sale = w.open_sale(3, 2, 1).await;
    w.reserve(&sale, "alive").await;

    // GIVEN a reserve that dies after its Redis hold
    fault::kill_after_hold(&sale.sale_id, 1);
    let killed = w.try_reserve(&sale, "doomed").await;
    fault::heal(&sale.sale_id);
    assert!(matches!(killed, Err(ReserveError::Store(_))), "{killed:?}");
    let levels = w.engine().levels(&sale.stock()).await.unwrap();
    assert_eq!(
        (levels.available(), levels.held()),
        (1, 2),
        "the hold stayed"
    );
    let orphans = w
        .records
        .reservations_of_sale(&sale.sale_id, Which::All)
        .await
        .unwrap();
    assert_eq!(orphans.len(), 1, "no record for the dead reserve");

    // WHEN the reconciler runs (grace 0)
    let report = w.reconcile(&sale).await;

    // THEN the hold is released, its id is closed by an EXPIRED record, the invariant holds
    assert_eq!((report.orphans_released, report.kept), (1, 1), "{report:?}");
    let levels = w.engine().levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (2, 1), "stock back");
    w.assert_invariant(&sale).await;
    let all = w
        .records
        .reservations_of_sale(&sale.sale_id, Which::All)
        .await
        .unwrap();
    assert_eq!(
        all.iter()
            .filter(|r| r.status == ReservationStatus::Expired)
            .count(),
        1
    );
    // A retry with the dead request's key is refused (the key is spent: its attempt was never
    // answered 201 and its id is closed), neither a new unit nor the dead reservation.
    let retry = w.try_reserve(&sale, "doomed").await;
    assert!(matches!(retry, Err(ReserveError::KeySpent)), "{retry:?}");
    assert_eq!(
        w.engine().levels(&sale.stock()).await.unwrap().available(),
        2
    );
    w.tables.delete().await;
}

fn reserve_http(sale: &SaleId, user: &str) -> Request {
    let params: HashMap<String, String> = [("saleId".to_string(), sale.to_string())].into();
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri(format!("/sales/{sale}/reservations"))
        .header("Idempotency-Key", format!("http-{user}"))
        .body(Body::Empty)
        .unwrap()
        .with_path_parameters(params)
        .with_request_context(context_for(user, &[], "198.51.100.7"))
}

fn rebuild_http(sale: &str, user: &str, groups: &[&str]) -> Request {
    let params: HashMap<String, String> = [("saleId".to_string(), sale.to_string())].into();
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri(format!("/sales/{sale}/stock/rebuild"))
        .body(Body::Empty)
        .unwrap()
        .with_path_parameters(params)
        .with_request_context(context_for(user, groups, "198.51.100.8"))
}

fn json_of(response: &lambda_http::Response<Body>) -> serde_json::Value {
    match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn mid_sale_redis_loss_pauses_selling_and_the_rebuild_restores_exact_stock() {
    let w = world().await;
    let sale = w.open_sale(30, 4, 1).await;
    // GIVEN a sale under way: sold, being paid, pending, expired
    let mut made = Vec::new();
    for i in 0..10 {
        made.push(w.reserve(&sale, &format!("early-{i}")).await);
    }
    for r in &made[0..3] {
        w.confirm(r).await;
        w.engine()
            .commit(&sale.stock(), r.shard, r.reservation_id)
            .await
            .unwrap();
    }
    w.set_status(&made[3], ReservationStatus::PaymentProcessing)
        .await;
    w.set_status(&made[4], ReservationStatus::Expired).await;
    w.engine()
        .release(&sale.stock(), made[4].shard, made[4].reservation_id)
        .await
        .unwrap();
    w.assert_invariant(&sale).await;
    // One confirmed by the saga whose commit had not reached Redis yet.
    w.confirm(&made[5]).await;

    // WHEN Redis loses its data
    w.server.cli(&["FLUSHALL"]);

    // THEN buying answers 503 with Retry-After: missing keys are not read as stock
    let refused =
        reservation_http::reserve(&w.service, &reserve_http(&sale.sale_id, "during")).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));

    // AND only an admin may rebuild; an unknown sale is 404
    let denied = rebuild_http::rebuild_stock(
        &w.rebuilder(),
        &rebuild_http(sale.sale_id.as_str(), "buyer", &[]),
    )
    .await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let unknown = rebuild_http::rebuild_stock(
        &w.rebuilder(),
        &rebuild_http("no-such-sale", "ops", &["admin"]),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // WHEN an admin rebuilds
    let response = rebuild_http::rebuild_stock(
        &w.rebuilder(),
        &rebuild_http(sale.sale_id.as_str(), "ops", &["admin"]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    let report = json_of(&response);
    assert_eq!(report["shards_lost"], 4);
    assert_eq!(report["sold_reservations"], 4);
    assert_eq!(report["held_reservations"], 5);
    assert_eq!(report["oversold_units"], 0);

    // THEN the levels match the durable records exactly
    let levels = w.engine().levels(&sale.stock()).await.unwrap();
    assert_eq!(
        (levels.available(), levels.held(), levels.sold()),
        (21, 5, 4)
    );
    w.assert_invariant(&sale).await;

    // AND selling resumes; a final sell-out sells exactly the remaining units
    let mut sold = 0;
    for i in 0..30 {
        let response = reservation_http::reserve(
            &w.service,
            &reserve_http(&sale.sale_id, &format!("crowd-{i}")),
        )
        .await;
        match response.status() {
            StatusCode::CREATED => sold += 1,
            StatusCode::GONE => {}
            other => panic!("{other}: {:?}", response.body()),
        }
    }
    assert_eq!(sold, 21);
    let levels = w.engine().levels(&sale.stock()).await.unwrap();
    assert_eq!(levels.available(), 0);
    assert_eq!(levels.held() + levels.sold(), 30, "zero oversell");
    w.assert_invariant(&sale).await;
    // Buyers from before the loss keep their limit: a second unit is refused.
    let again =
        reservation_http::reserve(&w.service, &reserve_http(&sale.sale_id, "early-6")).await;
    assert_eq!(again.status(), StatusCode::CONFLICT, "{:?}", again.body());
    w.tables.delete().await;
}

#[tokio::test]
async fn sales_are_listed_for_the_sweep() {
    let w = world().await;
    let a = w.open_sale(1, 1, 1).await;
    let b = w.open_sale(1, 1, 1).await;
    let listed: Vec<SaleId> = w
        .service
        .catalog
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.sale_id)
        .collect();
    assert_eq!(listed, vec![a.sale_id, b.sale_id]);
    w.tables.delete().await;
}

#[tokio::test]
async fn the_sweep_runs_cleanup_reconciliation_and_rebuild_through_dynamodb() {
    use flashsale_core::sweep::{Sweep, SweepConfig};
    let w = world().await;
    let healthy = w.open_sale(5, 2, 1).await;
    let lost = w.open_sale(6, 2, 1).await;
    let due = w.reserve(&healthy, "due").await;
    // A reservation whose expiry has passed, and a reserve that died after its hold.
    w.set_status(
        &Reservation {
            expires_at: SystemClock.now().minus(Duration::from_secs(1)),
            ..due.clone()
        },
        ReservationStatus::Pending,
    )
    .await;
    fault::kill_after_hold(&healthy.sale_id, 1);
    assert!(w.try_reserve(&healthy, "doomed").await.is_err());
    fault::heal(&healthy.sale_id);
    w.reserve(&lost, "kept").await;
    // Redis loses the second sale's stock records.
    for shard in lost.shards.all() {
        w.server
            .cli(&["DEL", &ShardKeys::new(&lost.sale_id, shard).stock()]);
    }

    let expiry_store = DynamoExpiryStore::new(
        w.client.clone(),
        &w.tables.reservations,
        ExpiryWrites::default(),
    );
    let mut config = SweepConfig::default();
    config.reconcile.grace = Duration::ZERO;
    config.rebuild.settle = Duration::from_millis(50);
    let sweep = Sweep {
        expiry_store: &expiry_store,
        stock: w.engine(),
        records: &w.records,
        catalog: &w.service.catalog,
        clock: &SystemClock,
        payments: &w.payments,
        config,
    };
    let report = sweep.run(Duration::from_secs(30)).await;

    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.expiry.expired, 1, "{report:?}");
    assert_eq!(
        w.status_of(due.reservation_id).await,
        Some(ReservationStatus::Expired)
    );
    let rebuilt: Vec<&str> = report.rebuilt.iter().map(|r| r.sale_id.as_str()).collect();
    assert_eq!(rebuilt, vec![lost.sale_id.as_str()]);
    let reconciled: Vec<_> = report
        .reconciled
        .iter()
        .filter(|r| r.sale_id == healthy.sale_id.as_str())
        .collect();
    assert_eq!(reconciled.len(), 1, "{report:?}");
    assert_eq!(reconciled[0].orphans_released, 1, "{report:?}");
    w.assert_invariant(&healthy).await;
    w.assert_invariant(&lost).await;
    let report_json = serde_json::to_value(&report).unwrap();
    assert_eq!(report_json["expiry"]["expired"], 1);
    w.tables.delete().await;
}
