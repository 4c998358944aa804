//! The stock engine on a real three-master Redis Cluster: every script call must stay in one
//! slot (a CROSSSLOT error would fail these tests), shards must spread over the nodes, and
//! the fallback must cross nodes.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{
    ReleaseOutcome, ReserveOutcome, SaleStock, SetupOutcome, ShardKeys, StockEngine, StockSetup,
};
use redis::cluster_async::ClusterConnection;
use testkit::RedisCluster;

/// Which node (index) stores each shard's stock record, read from the nodes themselves.
async fn node_of_each_shard(cluster: &RedisCluster, sale: &SaleStock) -> Vec<usize> {
    let mut owners = vec![usize::MAX; usize::from(sale.shards.get())];
    for (index, node) in cluster.nodes().iter().enumerate() {
        let mut conn = node.direct_connection().await;
        for shard in sale.shards.all() {
            let key = ShardKeys::new(&sale.sale_id, shard).stock();
            // A node answers only for its own slots; for others it replies MOVED (an error).
            let exists: Result<bool, _> =
                redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await;
            if exists == Ok(true) {
                owners[usize::from(shard)] = index;
            }
        }
    }
    assert!(
        owners.iter().all(|&o| o != usize::MAX),
        "every shard lives on exactly one node"
    );
    owners
}

async fn cluster_engine(cluster: &RedisCluster) -> Arc<RedisStockEngine<ClusterConnection>> {
    let engine = RedisStockEngine::new(cluster.connection().await, RedisStockConfig::default());
    Arc::new(engine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_on_a_cluster_gets_exactly_the_stock_with_shards_on_every_node() {
    let cluster = RedisCluster::start(3);
    let engine = cluster_engine(&cluster).await;
    let sale = sale(&unique_sale("cluster-crowd"), 16);
    let setup = StockSetup {
        total_units: 100,
        per_user_limit: 1,
    };
    assert_eq!(
        engine.setup(&sale, &setup).await.unwrap(),
        SetupOutcome::Created
    );

    // Shards spread over all three nodes: that is what makes split counters add throughput.
    let owners = node_of_each_shard(&cluster, &sale).await;
    assert_eq!(owners.iter().collect::<HashSet<_>>().len(), 3, "{owners:?}");

    let attempts = (0..3_000).map(|i| {
        let (engine, sale) = (engine.clone(), sale.clone());
        tokio::spawn(async move {
            engine
                .reserve(&request(&sale, &user(format!("c{i}")), "k", 1))
                .await
                .unwrap()
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let reserved = outcomes
        .iter()
        .filter(|o| matches!(o, ReserveOutcome::Reserved(_)))
        .count();
    let sold_out = outcomes
        .iter()
        .filter(|o| **o == ReserveOutcome::SoldOut)
        .count();
    assert_eq!((reserved, sold_out), (100, 2_900));
    let levels = engine.levels(&sale).await.unwrap();
    assert_eq!(
        (levels.initial(), levels.available(), levels.held()),
        (100, 0, 100)
    );
    for level in levels.shards.iter().flatten() {
        assert_eq!(level.initial, level.available + level.held + level.sold);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_crosses_nodes_and_sold_out_comes_only_when_every_shard_is_empty() {
    let cluster = RedisCluster::start(3);
    let engine = cluster_engine(&cluster).await;
    // One unit per shard over 6 shards, limit 2.
    let sale = sale(&unique_sale("cluster-fallback"), 6);
    engine
        .setup(
            &sale,
            &StockSetup {
                total_units: 6,
                per_user_limit: 2,
            },
        )
        .await
        .unwrap();
    let owners = node_of_each_shard(&cluster, &sale).await;

    // A buyer whose home shard is 0 buys twice: the second unit must come from another shard.
    let buyer = user_with_home(sale.shards, 0, "crosser");
    let first = engine
        .reserve(&request(&sale, &buyer, "k1", 1))
        .await
        .unwrap();
    let ReserveOutcome::Reserved(first) = first else {
        panic!("{first:?}")
    };
    assert_eq!(first.shard, 0);
    let second = engine
        .reserve(&request(&sale, &buyer, "k2", 1))
        .await
        .unwrap();
    let ReserveOutcome::Reserved(second) = second else {
        panic!("{second:?}")
    };
    assert_ne!(second.shard, 0);
    // The limit holds across shards and nodes.
    let third = engine
        .reserve(&request(&sale, &buyer, "k3", 1))
        .await
        .unwrap();
    assert_eq!(
        third,
        ReserveOutcome::LimitReached {
            claimed: 2,
            limit: 2
        }
    );

    // Fallback reaches a shard on another node than the buyer's home: drain all but the shard
    // on a node other than shard 0's, then a home-0 buyer must get exactly that unit.
    let far = (1..6u16)
        .find(|&s| owners[usize::from(s)] != owners[0])
        .expect("a shard on another node");
    let mut others: Vec<u16> = (1..6u16)
        .filter(|&s| s != far && s != second.shard)
        .collect();
    if second.shard == far {
        // Already crossed nodes with the second unit; drain the rest so the point stands.
        others = (1..6u16).filter(|&s| s != far).collect();
    }
    for &shard in &others {
        let drainer = user_with_home(sale.shards, shard, &format!("drain{shard}"));
        let outcome = engine
            .reserve(&request(&sale, &drainer, "d", 1))
            .await
            .unwrap();
        assert!(
            matches!(outcome, ReserveOutcome::Reserved(_)),
            "{outcome:?}"
        );
    }
    let levels = engine.levels(&sale).await.unwrap();
    if second.shard != far {
        assert_eq!(levels.available(), 1, "{levels:?}");
        let late = user_with_home(sale.shards, 0, "late");
        let outcome = engine
            .reserve(&request(&sale, &late, "k", 1))
            .await
            .unwrap();
        let ReserveOutcome::Reserved(hold) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(hold.shard, far);
        assert_ne!(
            owners[usize::from(hold.shard)],
            owners[0],
            "crossed to another node"
        );
    }
    // Now every shard is empty: sold out.
    let last = user_with_home(sale.shards, 3, "last");
    assert_eq!(
        engine
            .reserve(&request(&sale, &last, "k", 1))
            .await
            .unwrap(),
        ReserveOutcome::SoldOut
    );

    // Release across nodes frees the claim on the home node and the unit on the far node.
    let released = engine
        .release(&sale, second.shard, second.reservation_id)
        .await
        .unwrap();
    assert!(matches!(
        released,
        ReleaseOutcome::Released { quantity: 1, .. }
    ));
    let again = engine
        .reserve(&request(&sale, &buyer, "k4", 1))
        .await
        .unwrap();
    assert!(matches!(again, ReserveOutcome::Reserved(_)), "{again:?}");
}
