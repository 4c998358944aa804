//! The sold-out fast path in front of the real Redis engine.

mod common;

use std::time::Duration;

use common::*;
use flashsale_core::domain::ManualClock;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{
    ReserveOutcome, SoldOutCache, SoldOutCacheConfig, StockEngine, StockSetup,
};
use testkit::RedisServer;

fn commands_processed(server: &RedisServer) -> u64 {
    server
        .cli(&["INFO", "stats"])
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO stats has total_commands_processed")
}

#[tokio::test]
async fn after_learning_sold_out_the_fast_path_answers_without_redis_until_the_window_ends() {
    let server = RedisServer::start();
    let clock = ManualClock::at(now());
    let engine = SoldOutCache::new(
        RedisStockEngine::new(server.connection().await, RedisStockConfig::default()),
        clock.clone(),
        SoldOutCacheConfig {
            window: Duration::from_millis(500),
        },
    );
    let sale = sale(&unique_sale("fast"), 4);
    engine
        .setup(
            &sale,
            &StockSetup {
                total_units: 1,
                per_user_limit: 1,
            },
        )
        .await
        .unwrap();
    let ReserveOutcome::Reserved(hold) = engine
        .reserve(&request(&sale, &user("winner"), "k", 1))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        engine
            .reserve(&request(&sale, &user("a"), "k", 1))
            .await
            .unwrap(),
        ReserveOutcome::SoldOut
    );

    // Within the window: 1,000 sold-outs and not one command reaches Redis
    // (the second INFO is the only command counted between the two readings).
    let before = commands_processed(&server);
    for i in 0..1_000 {
        let outcome = engine
            .reserve(&request(&sale, &user(format!("b{i}")), "k", 1))
            .await
            .unwrap();
        assert_eq!(outcome, ReserveOutcome::SoldOut);
    }
    assert_eq!(commands_processed(&server) - before, 1);

    // A unit released by another process comes back to Redis; after the window it is found.
    let other_process =
        RedisStockEngine::new(server.connection().await, RedisStockConfig::default());
    other_process
        .release(&sale, hold.shard, hold.reservation_id)
        .await
        .unwrap();
    assert_eq!(
        engine
            .reserve(&request(&sale, &user("c"), "k", 1))
            .await
            .unwrap(),
        ReserveOutcome::SoldOut
    );
    clock.advance(Duration::from_millis(501));
    let outcome = engine
        .reserve(&request(&sale, &user("c"), "k", 1))
        .await
        .unwrap();
    assert!(
        matches!(outcome, ReserveOutcome::Reserved(_)),
        "{outcome:?}"
    );

    // It never sells what is not there: stock is exactly accounted for.
    let levels = engine.levels(&sale).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (0, 1));
}

#[tokio::test]
async fn a_release_through_the_same_process_ends_the_window_at_once() {
    let server = RedisServer::start();
    let clock = ManualClock::at(now());
    let engine = SoldOutCache::new(
        RedisStockEngine::new(server.connection().await, RedisStockConfig::default()),
        clock,
        SoldOutCacheConfig {
            window: Duration::from_secs(60),
        },
    );
    let sale = sale(&unique_sale("fast-release"), 1);
    engine
        .setup(
            &sale,
            &StockSetup {
                total_units: 1,
                per_user_limit: 1,
            },
        )
        .await
        .unwrap();
    let ReserveOutcome::Reserved(hold) = engine
        .reserve(&request(&sale, &user("w"), "k", 1))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        engine
            .reserve(&request(&sale, &user("x"), "k", 1))
            .await
            .unwrap(),
        ReserveOutcome::SoldOut
    );
    engine
        .release(&sale, hold.shard, hold.reservation_id)
        .await
        .unwrap();
    let outcome = engine
        .reserve(&request(&sale, &user("x"), "k", 1))
        .await
        .unwrap();
    assert!(
        matches!(outcome, ReserveOutcome::Reserved(_)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_zero_window_turns_the_fast_path_off() {
    let server = RedisServer::start();
    let engine = SoldOutCache::new(
        RedisStockEngine::new(server.connection().await, RedisStockConfig::default()),
        ManualClock::at(now()),
        SoldOutCacheConfig {
            window: Duration::ZERO,
        },
    );
    let sale = sale(&unique_sale("fast-off"), 1);
    engine
        .setup(
            &sale,
            &StockSetup {
                total_units: 0,
                per_user_limit: 1,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        engine
            .reserve(&request(&sale, &user("a"), "k", 1))
            .await
            .unwrap(),
        ReserveOutcome::SoldOut
    );
    assert!(!engine.is_known_sold_out(&sale.sale_id));
}
