//! The stock engine against a real redis-server (one per test).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{
    CommitOutcome, ReleaseOutcome, ReserveOutcome, SaleStock, SetupOutcome, ShardKeys, StockEngine,
    StockError, StockSetup, Unavailable,
};
use redis::aio::ConnectionManager;
use testkit::RedisServer;

async fn engine(server: &RedisServer) -> RedisStockEngine<ConnectionManager> {
    let engine = RedisStockEngine::new(server.connection().await, RedisStockConfig::default());
    engine.preload_scripts().await.unwrap();
    engine
}

async fn set_up(
    engine: &RedisStockEngine<ConnectionManager>,
    prefix: &str,
    shards: u16,
    units: u64,
    limit: u32,
) -> SaleStock {
    let sale = sale(&unique_sale(prefix), shards);
    let setup = StockSetup {
        total_units: units,
        per_user_limit: limit,
    };
    assert_eq!(
        engine.setup(&sale, &setup).await.unwrap(),
        SetupOutcome::Created
    );
    sale
}

/// Checks initial = available + held + sold on every shard, that no shard went negative,
/// that active holds add up to `held`, and that no fallback claim was left pending.
async fn assert_consistent(
    engine: &RedisStockEngine<ConnectionManager>,
    server: &RedisServer,
    sale: &SaleStock,
) {
    let levels = engine.levels(sale).await.unwrap();
    assert!(levels.is_complete());
    let mut conn = server.connection().await;
    for level in levels.shards.iter().flatten() {
        assert!(level.available >= 0, "{level:?}");
        assert_eq!(
            level.initial,
            level.available + level.held + level.sold,
            "{level:?}"
        );
        let active: i64 = redis::cmd("ZCARD")
            .arg(ShardKeys::new(&sale.sale_id, level.shard).hold_times())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(active <= level.held, "{level:?} active={active}");
        let pending: i64 = redis::cmd("ZCARD")
            .arg(ShardKeys::new(&sale.sale_id, level.shard).pending_claims())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(pending, 0, "claims left pending on shard {}", level.shard);
    }
}

async fn crowd_against_100_units(shards: u16) {
    // GIVEN 100 units over `shards` shards, limit 1 per user
    let server = RedisServer::start();
    let engine = Arc::new(engine(&server).await);
    let sale = set_up(&engine, "crowd", shards, 100, 1).await;

    // A watcher samples every shard while the crowd runs: stock must never be seen below zero.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (engine, sale, stop) = (engine.clone(), sale.clone(), stop.clone());
        tokio::spawn(async move {
            let mut samples = 0;
            while !stop.load(Ordering::Relaxed) {
                let levels = engine.levels(&sale).await.unwrap();
                assert!(levels.shards.iter().flatten().all(|s| s.available >= 0));
                samples += 1;
            }
            samples
        })
    };

    // WHEN 10,000 distinct buyers try at once
    let attempts = (0..10_000).map(|i| {
        let (engine, sale) = (engine.clone(), sale.clone());
        tokio::spawn(async move {
            let buyer = user(format!("buyer-{i}"));
            let outcome = engine
                .reserve(&request(&sale, &buyer, "k", 1))
                .await
                .unwrap();
            (buyer, outcome)
        })
    });
    let results = futures::future::join_all(attempts).await;
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.await.unwrap() > 0);

    // THEN exactly 100 got a unit, everyone else was told sold out
    let mut reserved = HashMap::new();
    let mut sold_out = 0;
    for result in results {
        let (buyer, outcome) = result.unwrap();
        match outcome {
            ReserveOutcome::Reserved(hold) => {
                assert!(
                    reserved.insert(buyer, hold).is_none(),
                    "a buyer got two units"
                );
            }
            ReserveOutcome::SoldOut => sold_out += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!(reserved.len(), 100);
    assert_eq!(sold_out, 9_900);
    let ids: HashSet<_> = reserved.values().map(|h| h.reservation_id).collect();
    assert_eq!(ids.len(), 100);

    let levels = engine.levels(&sale).await.unwrap();
    assert_eq!(
        (
            levels.initial(),
            levels.available(),
            levels.held(),
            levels.sold()
        ),
        (100, 0, 100, 0)
    );
    assert_consistent(&engine, &server, &sale).await;
    // Every hold sits on the shard the engine reported.
    let mut conn = server.connection().await;
    for hold in reserved.values() {
        let exists: bool = redis::cmd("HEXISTS")
            .arg(ShardKeys::new(&sale.sale_id, hold.shard).holds())
            .arg(hold.reservation_id.to_string())
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(exists);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_buyers_get_exactly_100_units_on_1_shard() {
    crowd_against_100_units(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_buyers_get_exactly_100_units_on_4_shards() {
    crowd_against_100_units(4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_buyers_get_exactly_100_units_on_16_shards() {
    crowd_against_100_units(16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_buyer_hammering_concurrently_gets_at_most_the_limit_across_shards() {
    // GIVEN 16 shards of 2 units each and a limit of 3: the buyer's home shard empties after
    // two units, so the third must come from another shard through take + adopt
    let server = RedisServer::start();
    let engine = Arc::new(engine(&server).await);
    let sale = set_up(&engine, "hammer", 16, 32, 3).await;
    let buyer = user("hammer-buyer");

    // WHEN the buyer fires 500 concurrent requests with distinct keys
    let attempts = (0..500).map(|i| {
        let (engine, sale, buyer) = (engine.clone(), sale.clone(), buyer.clone());
        tokio::spawn(async move {
            engine
                .reserve(&request(&sale, &buyer, &format!("k{i}"), 1))
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // THEN exactly 3 succeed and the rest hit the limit; refused takes gave their units back
    let reserved = outcomes
        .iter()
        .filter(|o| matches!(o, ReserveOutcome::Reserved(_)))
        .count();
    let limited = outcomes
        .iter()
        .filter(|o| matches!(o, ReserveOutcome::LimitReached { limit: 3, .. }))
        .count();
    assert_eq!((reserved, limited), (3, 497), "{outcomes:?}");
    let levels = engine.levels(&sale).await.unwrap();
    assert_eq!((levels.available(), levels.held()), (29, 3));
    assert_consistent(&engine, &server, &sale).await;
}

#[tokio::test]
async fn the_same_key_returns_the_same_reservation_and_decrements_once() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "idem", 4, 10, 5).await;
    let buyer = user("idem-buyer");

    let first = engine
        .reserve(&request(&sale, &buyer, "key-1", 2))
        .await
        .unwrap();
    let ReserveOutcome::Reserved(hold) = first else {
        panic!("{first:?}")
    };
    // A retry carries a new candidate id; the original one comes back.
    let again = engine
        .reserve(&request(&sale, &buyer, "key-1", 2))
        .await
        .unwrap();
    assert_eq!(again, ReserveOutcome::Duplicate(hold));
    assert_eq!(engine.levels(&sale).await.unwrap().available(), 8);

    // The same key with another quantity is refused, and still decrements nothing.
    let reused = engine
        .reserve(&request(&sale, &buyer, "key-1", 1))
        .await
        .unwrap();
    assert_eq!(
        reused,
        ReserveOutcome::KeyReused {
            original: hold.reservation_id
        }
    );
    assert_eq!(engine.levels(&sale).await.unwrap().available(), 8);

    // Keys are per buyer: another buyer may use the same key.
    let other = engine
        .reserve(&request(&sale, &user("someone-else"), "key-1", 1))
        .await
        .unwrap();
    assert!(matches!(other, ReserveOutcome::Reserved(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_key_reserve_once_even_on_the_fallback_path() {
    // GIVEN the buyer's home shard is empty, so every attempt goes take -> adopt
    let server = RedisServer::start();
    let engine = Arc::new(engine(&server).await);
    let sale = set_up(&engine, "idem-race", 4, 40, 5).await;
    let buyer = user("racer");
    let home = sale.shards.home_of(&buyer);
    let drainer = user_with_home(sale.shards, home, "drainer");
    for i in 0..10 {
        // 10 units per shard; a different buyer drains the home shard
        let r = engine
            .reserve(&request(&sale, &user(format!("{drainer}-{i}")), "d", 1))
            .await
            .unwrap();
        assert!(matches!(r, ReserveOutcome::Reserved(_)));
    }
    let before = engine.levels(&sale).await.unwrap();

    // WHEN 50 copies of one request race
    let attempts = (0..50).map(|_| {
        let (engine, sale, buyer) = (engine.clone(), sale.clone(), buyer.clone());
        tokio::spawn(async move {
            engine
                .reserve(&request(&sale, &buyer, "same", 1))
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    // THEN one reservation exists, every answer names it, and one unit left the shelf
    let holds: HashSet<_> = outcomes
        .iter()
        .map(|o| match o {
            ReserveOutcome::Reserved(h) | ReserveOutcome::Duplicate(h) => h.reservation_id,
            // A copy that arrived while the winner was between claim and confirm.
            ReserveOutcome::InProgress { reservation_id } => *reservation_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(holds.len(), 1);
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, ReserveOutcome::Reserved(_)))
            .count(),
        1
    );
    let after = engine.levels(&sale).await.unwrap();
    assert_eq!(after.available(), before.available() - 1);
    assert_eq!(after.held(), before.held() + 1);
    assert_consistent(&engine, &server, &sale).await;
}

async fn reserve_one(
    engine: &RedisStockEngine<ConnectionManager>,
    sale: &SaleStock,
    name: &str,
) -> flashsale_core::stock::Hold {
    match engine
        .reserve(&request(sale, &user(name), "k", 1))
        .await
        .unwrap()
    {
        ReserveOutcome::Reserved(hold) => hold,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn release_and_commit_are_idempotent_in_every_order() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "orders", 2, 10, 1).await;
    let levels = |e: &RedisStockEngine<ConnectionManager>| {
        let sale = sale.clone();
        let e = e.clone();
        async move {
            let l = e.levels(&sale).await.unwrap();
            (l.available(), l.held(), l.sold())
        }
    };

    // release, release
    let a = reserve_one(&engine, &sale, "a").await;
    assert!(matches!(
        engine
            .release(&sale, a.shard, a.reservation_id)
            .await
            .unwrap(),
        ReleaseOutcome::Released { quantity: 1, .. }
    ));
    assert_eq!(
        engine
            .release(&sale, a.shard, a.reservation_id)
            .await
            .unwrap(),
        ReleaseOutcome::AlreadyReleased
    );
    assert_eq!(levels(&engine).await, (10, 0, 0));

    // commit, commit
    let b = reserve_one(&engine, &sale, "b").await;
    assert_eq!(
        engine
            .commit(&sale, b.shard, b.reservation_id)
            .await
            .unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        engine
            .commit(&sale, b.shard, b.reservation_id)
            .await
            .unwrap(),
        CommitOutcome::AlreadyCommitted
    );
    assert_eq!(levels(&engine).await, (9, 0, 1));

    // commit, then release: the sale stands
    assert_eq!(
        engine
            .release(&sale, b.shard, b.reservation_id)
            .await
            .unwrap(),
        ReleaseOutcome::WasCommitted
    );
    assert_eq!(levels(&engine).await, (9, 0, 1));

    // release, then commit: the release stands
    let c = reserve_one(&engine, &sale, "c").await;
    engine
        .release(&sale, c.shard, c.reservation_id)
        .await
        .unwrap();
    assert_eq!(
        engine
            .commit(&sale, c.shard, c.reservation_id)
            .await
            .unwrap(),
        CommitOutcome::WasReleased
    );
    assert_eq!(levels(&engine).await, (9, 0, 1));

    // unknown holds change nothing
    let ghost = flashsale_core::domain::ReservationId::new();
    assert_eq!(
        engine.release(&sale, 0, ghost).await.unwrap(),
        ReleaseOutcome::NotFound
    );
    assert_eq!(
        engine.commit(&sale, 0, ghost).await.unwrap(),
        CommitOutcome::NotFound
    );
    assert_consistent(&engine, &server, &sale).await;
}

#[tokio::test]
async fn a_released_reservation_gives_the_buyer_their_allowance_back() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "allowance", 4, 10, 1).await;
    let first = reserve_one(&engine, &sale, "buyer").await;
    let second = engine
        .reserve(&request(&sale, &user("buyer"), "k2", 1))
        .await
        .unwrap();
    assert_eq!(
        second,
        ReserveOutcome::LimitReached {
            claimed: 1,
            limit: 1
        }
    );
    engine
        .release(&sale, first.shard, first.reservation_id)
        .await
        .unwrap();
    let third = engine
        .reserve(&request(&sale, &user("buyer"), "k3", 1))
        .await
        .unwrap();
    assert!(matches!(third, ReserveOutcome::Reserved(_)), "{third:?}");
}

#[tokio::test]
async fn a_committed_reservation_still_counts_against_the_limit() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "sold-limit", 1, 10, 1).await;
    let hold = reserve_one(&engine, &sale, "buyer").await;
    engine
        .commit(&sale, hold.shard, hold.reservation_id)
        .await
        .unwrap();
    let again = engine
        .reserve(&request(&sale, &user("buyer"), "k2", 1))
        .await
        .unwrap();
    assert_eq!(
        again,
        ReserveOutcome::LimitReached {
            claimed: 1,
            limit: 1
        }
    );
}

#[tokio::test]
async fn the_hold_record_carries_what_a_reconciler_needs() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "hold-record", 1, 5, 2).await;
    let req = request(&sale, &user("u|with|pipes"), "k", 2);
    let ReserveOutcome::Reserved(hold) = engine.reserve(&req).await.unwrap() else {
        panic!()
    };
    let mut conn = server.connection().await;
    let keys = ShardKeys::new(&sale.sale_id, hold.shard);
    let raw: String = redis::cmd("HGET")
        .arg(keys.holds())
        .arg(hold.reservation_id.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        raw,
        format!(
            "H|2|{}|{}|u|with|pipes",
            req.expires_at.as_millis(),
            req.now.as_millis()
        )
    );
    let created: f64 = redis::cmd("ZSCORE")
        .arg(keys.hold_times())
        .arg(hold.reservation_id.to_string())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(created as i64, req.now.as_millis());
}

#[tokio::test]
async fn a_sale_that_redis_lost_is_unavailable_not_sold_out_or_fresh() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "lost", 4, 10, 1).await;
    reserve_one(&engine, &sale, "before").await;

    // WHEN Redis loses its data (a failover to an empty replica, a restart)
    server.cli(&["FLUSHALL"]);

    // THEN the engine refuses to sell and says why
    let after = engine
        .reserve(&request(&sale, &user("after"), "k", 1))
        .await
        .unwrap();
    assert_eq!(after, ReserveOutcome::Unavailable(Unavailable::NotSetUp));
    assert!(!engine.levels(&sale).await.unwrap().is_complete());
    // And it reloads its scripts by itself (SCRIPT FLUSH simulates a fresh node).
    server.cli(&["SCRIPT", "FLUSH"]);
    let unknown = engine
        .reserve(&request(&sale, &user("after"), "k", 1))
        .await
        .unwrap();
    assert_eq!(unknown, ReserveOutcome::Unavailable(Unavailable::NotSetUp));
}

#[tokio::test]
async fn a_partially_lost_sale_refuses_on_the_lost_shards() {
    // Only one shard's record is gone: a buyer whose home is intact may still buy from it, but
    // the lost shard is never treated as empty-and-fine or as new stock.
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "half-lost", 2, 4, 5).await;
    let mut conn = server.connection().await;
    let _: () = redis::cmd("DEL")
        .arg(ShardKeys::new(&sale.sale_id, 1).stock())
        .query_async(&mut conn)
        .await
        .unwrap();
    let victim = user_with_home(sale.shards, 1, "victim");
    let outcome = engine
        .reserve(&request(&sale, &victim, "k", 1))
        .await
        .unwrap();
    assert_eq!(outcome, ReserveOutcome::Unavailable(Unavailable::NotSetUp));
}

#[tokio::test]
async fn top_up_during_a_sale_brings_a_sold_out_sale_back() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "topup", 4, 1, 1).await;
    reserve_one(&engine, &sale, "first").await;
    assert_eq!(
        engine
            .reserve(&request(&sale, &user("second"), "k", 1))
            .await
            .unwrap(),
        ReserveOutcome::SoldOut
    );
    engine.grow_to(&sale, 4).await.unwrap();
    reserve_one(&engine, &sale, "second").await;
    let levels = engine.levels(&sale).await.unwrap();
    assert_eq!(
        (levels.initial(), levels.available(), levels.held()),
        (4, 2, 2)
    );
    assert_consistent(&engine, &server, &sale).await;
}

#[tokio::test]
async fn setup_is_idempotent_and_reports_a_conflicting_shape() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "setup", 4, 10, 2).await;
    let same = StockSetup {
        total_units: 10,
        per_user_limit: 2,
    };
    assert_eq!(
        engine.setup(&sale, &same).await.unwrap(),
        SetupOutcome::AlreadyExists { matches: true }
    );
    let other = StockSetup {
        total_units: 11,
        per_user_limit: 2,
    };
    assert_eq!(
        engine.setup(&sale, &other).await.unwrap(),
        SetupOutcome::AlreadyExists { matches: false }
    );
    // Nothing was overwritten.
    assert_eq!(engine.levels(&sale).await.unwrap().initial(), 10);
    let bad = StockSetup {
        total_units: 10,
        per_user_limit: 0,
    };
    assert!(matches!(
        engine.setup(&sale, &bad).await,
        Err(StockError::InvalidSetup(_))
    ));
}

#[tokio::test]
async fn a_caller_with_the_wrong_shard_count_is_refused() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "layout", 4, 10, 2).await;
    let wrong = SaleStock {
        shards: flashsale_core::stock::ShardCount::new(8).unwrap(),
        ..sale
    };
    let err = engine
        .reserve(&request(&wrong, &user("u"), "k", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StockError::LayoutMismatch {
                expected: 8,
                actual: 4
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_quantity_no_single_shard_can_serve_is_insufficient_not_sold_out() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "insufficient", 4, 4, 4).await; // one unit per shard
    let outcome = engine
        .reserve(&request(&sale, &user("u"), "k", 2))
        .await
        .unwrap();
    assert_eq!(outcome, ReserveOutcome::InsufficientStock);
    assert_eq!(engine.levels(&sale).await.unwrap().available(), 4);
}

#[tokio::test]
async fn sold_out_only_when_every_shard_is_empty() {
    let server = RedisServer::start();
    let engine = engine(&server).await;
    let sale = set_up(&engine, "last-unit", 8, 8, 1).await;
    // Seven buyers, all with home shard 0: the first takes shard 0, the rest fall back.
    for i in 0..7 {
        let buyer = user_with_home(sale.shards, 0, &format!("b{i}"));
        let outcome = engine
            .reserve(&request(&sale, &buyer, "k", 1))
            .await
            .unwrap();
        assert!(
            matches!(outcome, ReserveOutcome::Reserved(_)),
            "{outcome:?}"
        );
    }
    let last = user_with_home(sale.shards, 0, "last");
    let ReserveOutcome::Reserved(hold) = engine
        .reserve(&request(&sale, &last, "k", 1))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_ne!(hold.shard, 0, "the last unit came from another shard");
    let late = user_with_home(sale.shards, 3, "late");
    assert_eq!(
        engine
            .reserve(&request(&sale, &late, "k", 1))
            .await
            .unwrap(),
        ReserveOutcome::SoldOut
    );
}
