//! The same handlers as tests/handlers.rs, against real Redis (a redis-server of the test's
//! own) and real DynamoDB (LocalStack's DynamoDB Local, throwaway tables per test).
//! Compiled only with `--features localstack-tests`; `./dev test` runs them once LocalStack is up.
#![cfg(feature = "localstack-tests")]

use std::collections::HashMap;

use flashsale_core::domain::{
    Clock, IdempotencyKey, Quantity, ReservationId, SaleId, SystemClock, Timestamp, UserId,
};
use flashsale_core::identity::context_for;
use flashsale_core::rate_limit::redis::RedisRateLimiter;
use flashsale_core::reservation::dynamo::DynamoReservationStore;
use flashsale_core::reservation::http as reservation_http;
use flashsale_core::reservation::reserve::{RatePolicies, ReserveService};
use flashsale_core::reservation::ReservationStore;
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::sale::{Sale, SaleCatalog};
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{ReserveOutcome, ReserveRequest, StockEngine};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt};
use redis::aio::ConnectionManager;
use testkit::dynamo::{localstack_client, Tables};
use testkit::fixtures::{self, OpenSale};
use testkit::RedisServer;

type Service = ReserveService<
    RedisStockEngine<ConnectionManager>,
    RedisRateLimiter<ConnectionManager>,
    DynamoSaleCatalog,
    DynamoReservationStore,
    SystemClock,
    flashsale_core::stock::repair::memory::RecordedRepairs,
>;

async fn service(server: &RedisServer, tables: &Tables, reservations_table: &str) -> Service {
    let client = localstack_client().await;
    let conn = server.connection().await;
    ReserveService {
        stock: RedisStockEngine::new(conn.clone(), RedisStockConfig::default()),
        limiter: RedisRateLimiter::new(conn),
        catalog: DynamoSaleCatalog::new(client.clone(), &tables.sales),
        store: DynamoReservationStore::new(client, reservations_table),
        clock: SystemClock,
        repairs: Default::default(),
        policies: RatePolicies::default(),
    }
}

async fn open_sale(service: &Service, units: u64) -> Sale {
    let id = SaleId::parse(format!("it-{}", uuid::Uuid::now_v7().simple())).unwrap();
    let sale = OpenSale::new(id, units)
        .price(500)
        .named("IT")
        .at(SystemClock.now());
    fixtures::open(&service.catalog, &service.stock, &sale).await;
    sale
}

fn reserve_request(sale: &SaleId, user: &str, key: &str) -> Request {
    let params: HashMap<String, String> = [("saleId".to_string(), sale.to_string())].into();
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri(format!("/sales/{sale}/reservations"))
        .header("Idempotency-Key", key)
        .body(Body::Empty)
        .unwrap()
        .with_path_parameters(params)
        .with_request_context(context_for(user, &[], "198.51.100.1"))
}

fn body_json(response: &lambda_http::Response<Body>) -> serde_json::Value {
    match response.body() {
        Body::Text(t) => serde_json::from_str(t).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reservation_is_held_in_redis_and_recorded_in_dynamodb() {
    let server = RedisServer::start();
    let tables = Tables::create(&localstack_client().await, "it").await;
    let service = service(&server, &tables, &tables.reservations).await;
    let sale = open_sale(&service, 3).await;

    let response =
        reservation_http::reserve(&service, &reserve_request(&sale.sale_id, "it-alice", "k")).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id =
        ReservationId::parse(body_json(&response)["reservation_id"].as_str().unwrap()).unwrap();
    let stored = service
        .store
        .get(id)
        .await
        .unwrap()
        .expect("durable record");
    assert_eq!(stored.user_id.as_str(), "it-alice");
    assert_eq!(stored.amount.amount_minor, 500);
    let levels = service.stock.levels(&sale.stock()).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (2, 1));
    tables.delete().await;
}

#[tokio::test]
async fn when_dynamodb_refuses_every_write_the_hold_waits_for_the_retry_or_the_reconciler() {
    let server = RedisServer::start();
    let tables = Tables::create(&localstack_client().await, "it").await;
    // The store points at a table that does not exist: every write fails for real, the record
    // and the tombstone that would close its id alike.
    let service = service(&server, &tables, "no-such-table").await;
    let sale = open_sale(&service, 1).await;

    let response =
        reservation_http::reserve(&service, &reserve_request(&sale.sale_id, "it-bob", "k")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Nothing tells whether a write committed, so nothing is rolled back: the hold stays for a
    // retry with the key (which writes the record) or for the hold reconciler after its grace
    // (which closes the id, then releases it). No unit is sold twice meanwhile.
    let levels = service.stock.levels(&sale.stock()).await.unwrap();
    assert_eq!(
        (levels.available(), levels.held()),
        (0, 1),
        "the hold waits"
    );
    let again =
        reservation_http::reserve(&service, &reserve_request(&sale.sale_id, "it-bob", "k")).await;
    assert_eq!(
        again.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a retry meets the same store"
    );
    let levels = service.stock.levels(&sale.stock()).await.unwrap();
    assert_eq!(
        (levels.available(), levels.held()),
        (0, 1),
        "the retry took nothing more"
    );
    tables.delete().await;
}

#[tokio::test]
async fn a_retry_after_a_crash_between_redis_and_dynamodb_writes_the_missing_record() {
    let server = RedisServer::start();
    let tables = Tables::create(&localstack_client().await, "it").await;
    let service = service(&server, &tables, &tables.reservations).await;
    let sale = open_sale(&service, 2).await;

    // GIVEN the first attempt reserved in Redis and died before writing DynamoDB
    let now = SystemClock.now();
    let first = ReserveRequest {
        sale: sale.stock(),
        user: UserId::parse("it-carol").unwrap(),
        quantity: Quantity::ONE,
        idempotency_key: IdempotencyKey::parse("crash-key").unwrap(),
        reservation_id: ReservationId::new(),
        now,
        expires_at: now.plus(sale.hold),
    };
    let ReserveOutcome::Reserved(hold) = service.stock.reserve(&first).await.unwrap() else {
        panic!()
    };
    assert!(service
        .store
        .get(hold.reservation_id)
        .await
        .unwrap()
        .is_none());

    // WHEN the client retries with the same key
    let response = reservation_http::reserve(
        &service,
        &reserve_request(&sale.sale_id, "it-carol", "crash-key"),
    )
    .await;

    // THEN it gets the original reservation, now durable, and no second unit was taken
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        body_json(&response)["reservation_id"],
        hold.reservation_id.to_string()
    );
    let stored = service
        .store
        .get(hold.reservation_id)
        .await
        .unwrap()
        .expect("repaired record");
    assert_eq!(
        stored.expires_at,
        Timestamp::from_millis(hold.expires_at.as_millis())
    );
    assert_eq!(service.stock.levels(&sale.stock()).await.unwrap().held(), 1);
    tables.delete().await;
}

#[tokio::test]
async fn sale_writes_are_conditional_create_once_and_update_on_the_read_version() {
    let server = RedisServer::start();
    let tables = Tables::create(&localstack_client().await, "it").await;
    let service = service(&server, &tables, &tables.reservations).await;
    let sale = open_sale(&service, 5).await;

    // A second create of the same id loses.
    let err = service.catalog.create(&sale).await.unwrap_err();
    assert!(
        matches!(err, flashsale_core::sale::CatalogError::Conflict),
        "{err:?}"
    );
    // An update on the stored version wins; one on a stale version loses.
    let next = Sale {
        total_stock: 8,
        version: 2,
        ..sale.clone()
    };
    service.catalog.update(&next).await.unwrap();
    let stale = Sale {
        total_stock: 9,
        version: 2,
        ..sale.clone()
    };
    let err = service.catalog.update(&stale).await.unwrap_err();
    assert!(
        matches!(err, flashsale_core::sale::CatalogError::Conflict),
        "{err:?}"
    );
    assert_eq!(
        service
            .catalog
            .get(&sale.sale_id)
            .await
            .unwrap()
            .unwrap()
            .total_stock,
        8
    );
    tables.delete().await;
}
