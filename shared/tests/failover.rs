//! Redis fails over in the middle of a sale, for real (seed 004 flow 9): a primary with a
//! replica and three Sentinels behind a primary endpoint (testkit::sentinel), and a Redis
//! Cluster of three primaries with a replica each. The replica is stalled (SIGSTOP) while the
//! primary acknowledges holds and enough other writes to fill the replication socket, then the
//! primary is SIGKILLed: the holds acknowledged in that window are provably missing on the
//! promoted replica (the test counts them there). A crowd keeps reserving through all of it,
//! through the real reserve use case; the repair queue's consumer is played by a task that runs
//! the stock rebuild as soon as the reserve path asks for one.
//!
//! Each scenario asserts: holds were lost, then repaired before a unit could be sold twice (the
//! fence pauses every shard the promoted node serves until the rebuild); afterwards initial =
//! available + held + sold, every durable reservation holds its unit, nobody is above the
//! limit, nothing is oversold. It prints the figures RELIABILITY.md records (run with
//! `cargo test -p flashsale-core --test failover -- --nocapture --test-threads 1`).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use flashsale_core::domain::{IdempotencyKey, Quantity, SystemClock, UserId};
use flashsale_core::rate_limit::memory::InMemoryRateLimiter;
use flashsale_core::rate_limit::{BucketPolicy, RequestId};
use flashsale_core::reconcile::memory::InMemoryLedger;
use flashsale_core::reconcile::rebuild::{RebuildConfig, StockRebuilder, Trigger};
use flashsale_core::reservation::reserve::{
    RatePolicies, ReserveCommand, ReserveError, ReserveService,
};
use flashsale_core::reservation::{Reservation, ReservationStatus};
use flashsale_core::sale::memory::InMemorySaleCatalog;
use flashsale_core::sale::{Sale, SaleCatalog};
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::repair::memory::RecordedRepairs;
use flashsale_core::stock::{ShardKeys, StockEngine, StockMaintenance, StockSetup};
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use testkit::fixtures::OpenSale;
use testkit::sentinel::SentinelGroup;
use testkit::{RedisCluster, RedisServer};

type Service = ReserveService<
    RedisStockEngine<RedisConnection>,
    InMemoryRateLimiter<SystemClock>,
    InMemorySaleCatalog,
    InMemoryLedger,
    SystemClock,
    Arc<RecordedRepairs>,
>;

/// What one reserve attempt of the crowd ended as, and when.
#[derive(Debug, Clone)]
struct Attempt {
    at: Instant,
    outcome: Result<Reservation, String>,
}

struct Sale1 {
    service: Arc<Service>,
    ledger: InMemoryLedger,
    repairs: Arc<RecordedRepairs>,
    sale: Sale,
}

async fn open_sale(conn: RedisConnection, units: u64, shards: u16) -> Sale1 {
    let now = now();
    let sale = OpenSale::new(unique_sale("failover"), units)
        .shards(shards)
        .at(now);
    let ledger = InMemoryLedger::default();
    let repairs = Arc::new(RecordedRepairs::default());
    let service = ReserveService {
        stock: RedisStockEngine::new(conn, RedisStockConfig::default()),
        limiter: InMemoryRateLimiter::new(SystemClock),
        catalog: InMemorySaleCatalog::default(),
        store: ledger.clone(),
        clock: SystemClock,
        repairs: Arc::clone(&repairs),
        policies: RatePolicies {
            per_user: BucketPolicy::new(10, 10.0).unwrap(),
            per_ip: BucketPolicy::new(1_000_000, 1_000_000.0).unwrap(),
        },
    };
    service.catalog.create(&sale).await.unwrap();
    service
        .stock
        .setup(
            &sale.stock(),
            &StockSetup {
                total_units: units,
                per_user_limit: 1,
            },
        )
        .await
        .unwrap();
    Sale1 {
        service: Arc::new(service),
        ledger,
        repairs,
        sale,
    }
}

impl Sale1 {
    async fn reserve(&self, buyer: &str) -> Result<Reservation, ReserveError> {
        self.service
            .reserve(ReserveCommand {
                user: UserId::parse(buyer).unwrap(),
                source_ip: None,
                request_id: RequestId::random(),
                sale_id: self.sale.sale_id.clone(),
                quantity: Quantity::ONE,
                idempotency_key: IdempotencyKey::parse("k").unwrap(),
                email: None,
            })
            .await
            .result
            .map(|r| r.reservation)
    }

    /// A crowd of one buyer after another (each a new person), until `stop`.
    fn crowd(
        self: &Arc<Self>,
        tag: &'static str,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<Vec<Attempt>> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut attempts = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let outcome = this
                    .reserve(&format!("{tag}-{i}"))
                    .await
                    .map_err(|e| e.to_string());
                attempts.push(Attempt {
                    at: Instant::now(),
                    outcome,
                });
            }
            attempts
        })
    }

    /// Plays the repair queue's consumer: rebuilds the sale each time the reserve path asks,
    /// once `gate` is open. Returns (started, finished) of each rebuild.
    fn repair_consumer(
        self: &Arc<Self>,
        gate: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<Vec<(Instant, Instant)>> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut done = Vec::new();
            let mut handled = 0;
            while !stop.load(Ordering::SeqCst) {
                let asked = this.repairs.requested().len();
                // Like the production consumer (Sweep::rebuild_requested): one rebuild for a
                // burst of requests, only while a shard is still fenced.
                let fenced = this
                    .service
                    .stock
                    .shard_states(&this.sale.stock())
                    .await
                    .map(|states| {
                        states.iter().any(|s| {
                            matches!(
                                s,
                                flashsale_core::stock::maintenance::ShardState::Ready {
                                    fenced: true,
                                    ..
                                }
                            )
                        })
                    })
                    .unwrap_or(false);
                if asked > handled && !fenced {
                    handled = asked;
                }
                if gate.load(Ordering::SeqCst) && asked > handled {
                    handled = asked;
                    let started = Instant::now();
                    let rebuilt = StockRebuilder {
                        stock: &this.service.stock,
                        records: &this.ledger,
                        catalog: &this.service.catalog,
                        clock: &SystemClock,
                        config: RebuildConfig {
                            settle: Duration::from_millis(100),
                            ..RebuildConfig::default()
                        },
                    }
                    .rebuild(&this.sale.sale_id, Trigger::Requested)
                    .await;
                    match rebuilt {
                        Ok(_) => done.push((started, Instant::now())),
                        // Redis still settling: the next request (or this loop) tries again.
                        Err(_) => handled -= 1,
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            done
        })
    }

    /// The invariant after the dust settled: every shard initial = available + held + sold;
    /// Redis holds exactly the units of the durable PENDING records; each record's hold is
    /// there; nobody holds more than the limit; nothing is oversold.
    async fn assert_invariant(&self) {
        let levels = self.service.stock.levels(&self.sale.stock()).await.unwrap();
        assert!(levels.is_complete(), "{levels:?}");
        for level in levels.shards.iter().flatten() {
            assert_eq!(
                level.initial,
                level.available + level.held + level.sold,
                "{level:?}"
            );
            assert!(level.available >= 0, "oversold: {level:?}");
        }
        let records: Vec<Reservation> = self
            .ledger
            .all()
            .into_iter()
            .filter(|r| r.sale_id == self.sale.sale_id && r.status == ReservationStatus::Pending)
            .collect();
        assert_eq!(
            levels.held(),
            records.len() as i64,
            "Redis holds vs records"
        );
        assert!(records.len() as u64 <= self.sale.total_stock, "oversold");
        let mut buyers = HashSet::new();
        for r in &records {
            assert!(
                buyers.insert(r.user_id.clone()),
                "{} holds twice",
                r.user_id
            );
            let state = self
                .service
                .stock
                .hold_state(&self.sale.stock(), r.shard, r.reservation_id)
                .await
                .unwrap();
            assert_eq!(
                state,
                Some(flashsale_core::stock::HoldState::Held),
                "{}",
                r.reservation_id
            );
        }
    }
}

/// Reads, on one node directly, which of these reservations' holds it does not have.
async fn missing_on(node: &RedisServer, sale: &Sale, holds: &[Reservation]) -> usize {
    let mut conn = node.direct_connection().await;
    // A cluster replica answers reads only in READONLY mode (standalone nodes refuse the
    // command, which changes nothing there).
    let _: Result<(), _> = redis::cmd("READONLY").query_async(&mut conn).await;
    let mut missing = 0;
    let mut by_shard: std::collections::BTreeMap<u16, Vec<&Reservation>> = Default::default();
    for r in holds {
        by_shard.entry(r.shard).or_default().push(r);
    }
    for (shard, records) in by_shard {
        for chunk in records.chunks(500) {
            let mut cmd = redis::cmd("HMGET");
            cmd.arg(ShardKeys::new(&sale.sale_id, shard).holds());
            for r in chunk {
                cmd.arg(r.reservation_id.to_string());
            }
            let present: Vec<Option<String>> = cmd.query_async(&mut conn).await.unwrap();
            missing += present.iter().filter(|p| p.is_none()).count();
        }
    }
    missing
}

/// Fills the replication stream: `mb` values of 1 MiB each, on `node` directly.
async fn flood(node: &RedisServer, key_prefix: &str, mb: usize) {
    let mut conn = node.direct_connection().await;
    let value = vec![b'x'; 1 << 20];
    for i in 0..mb {
        let _: () = redis::cmd("SET")
            .arg(format!("{key_prefix}:{i}"))
            .arg(value.as_slice())
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// The figures of one failover.
#[derive(Debug)]
struct Figures {
    scenario: &'static str,
    /// Holds acknowledged by the node that then lost them (the stall window before a kill;
    /// the demoted primary after the switch in a planned failover).
    acknowledged_at_risk: usize,
    /// Of those, missing on the promoted node before the repair.
    lost: usize,
    /// The event (kill or failover request) to the endpoint's switch / the slots' promotion.
    without_primary: Duration,
    /// The promotion to the first reserve that succeeded on the promoted node.
    first_success_after_promotion: Duration,
    /// Attempts refused (503) between the event and that first success.
    refused: usize,
    /// The longest stretch of refused attempts.
    longest_unavailable: Duration,
    /// The event to the end of the rebuild that repaired the lost holds.
    repaired_after: Duration,
}

impl Figures {
    fn print(&self) {
        println!(
            "| {} | {} | {} | {:.2} s | {:.2} s | {} | {:.2} s | {:.2} s |",
            self.scenario,
            self.acknowledged_at_risk,
            self.lost,
            self.without_primary.as_secs_f64(),
            self.first_success_after_promotion.as_secs_f64(),
            self.refused,
            self.longest_unavailable.as_secs_f64(),
            self.repaired_after.as_secs_f64(),
        );
    }
}

/// The longest time between a refused attempt that follows a success and the next success.
fn longest_unavailable(attempts: &[Attempt]) -> Duration {
    let mut longest = Duration::ZERO;
    let mut down_since: Option<Instant> = None;
    let mut last_ok: Option<Instant> = None;
    for a in attempts {
        match (&a.outcome, down_since) {
            (Err(_), None) => down_since = Some(last_ok.unwrap_or(a.at)),
            (Ok(_), Some(since)) => {
                longest = longest.max(a.at - since);
                down_since = None;
                last_ok = Some(a.at);
            }
            (Ok(_), None) => last_ok = Some(a.at),
            (Err(_), Some(_)) => {}
        }
    }
    longest
}

fn first_success_after(attempts: &[Attempt], after: Instant) -> Option<Instant> {
    attempts
        .iter()
        .filter(|a| a.at > after && a.outcome.is_ok())
        .map(|a| a.at)
        .min()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_primary_killed_mid_sale_loses_holds_and_they_are_repaired_before_resale() {
    let mut group = SentinelGroup::start().await;
    let conn = RedisConnection::connect(&RedisSettings::standalone(group.endpoint_url()))
        .await
        .unwrap();
    let shop = Arc::new(open_sale(conn, 50_000, 4).await);
    let stop = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(AtomicBool::new(false));
    let repairs = shop.repair_consumer(Arc::clone(&gate), Arc::clone(&stop));
    let crowd = shop.crowd("sentinel", Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Stall the replica, fill the replication stream, keep acknowledging holds, then kill.
    group.replica().freeze(true);
    let stalled_at = Instant::now();
    flood(group.primary(), "pad", 48).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (old, killed_at) = group.kill_primary();
    group.replica().freeze(false);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The acknowledged holds of the stall window that the replica never got: lost.
    let acknowledged: Vec<Reservation> = shop
        .ledger
        .all()
        .into_iter()
        .filter(|r| {
            r.created_at.as_millis() >= chrono_ms(stalled_at)
                && r.created_at.as_millis() <= chrono_ms(killed_at)
        })
        .collect();
    let lost = missing_on(group.replica(), &shop.sale, &acknowledged).await;
    gate.store(true, Ordering::SeqCst);

    let (_, switched_at) = group.wait_for_switch(old, Duration::from_secs(30)).await;
    // Let the crowd run until it has sold again for a while.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && shop.repairs.requested().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let attempts = crowd.await.unwrap();
    let rebuilt = repairs.await.unwrap();

    let first_ok = first_success_after(&attempts, switched_at).expect("selling resumed");
    let refused = attempts
        .iter()
        .filter(|a| a.at > killed_at && a.at < first_ok && a.outcome.is_err())
        .count();
    let figures = Figures {
        scenario: "Sentinel: primary SIGKILLed, replica stalled",
        acknowledged_at_risk: acknowledged.len(),
        lost,
        without_primary: switched_at - killed_at,
        first_success_after_promotion: first_ok.saturating_duration_since(switched_at),
        refused,
        longest_unavailable: longest_unavailable(&attempts),
        repaired_after: rebuilt.first().map_or(first_ok, |r| r.1) - killed_at,
    };
    figures.print();
    timeline(&attempts, killed_at);
    assert!(
        lost > 0,
        "no acknowledged hold was lost: the test proves nothing ({figures:?})"
    );
    assert!(
        !rebuilt.is_empty(),
        "the fence asked for a rebuild and it ran"
    );
    // Nothing sold on the promoted node before the rebuild verified it.
    assert!(
        first_ok >= rebuilt[0].0,
        "a unit sold before the rebuild started"
    );
    shop.assert_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_failover_repairs_what_the_demoted_primary_acknowledged_after_the_switch() {
    // GIVEN a crowd on the primary endpoint
    let group = SentinelGroup::start().await;
    let conn = RedisConnection::connect(&RedisSettings::standalone(group.endpoint_url()))
        .await
        .unwrap();
    let shop = Arc::new(open_sale(conn, 50_000, 4).await);
    let stop = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(AtomicBool::new(false));
    let repairs = shop.repair_consumer(Arc::clone(&gate), Arc::clone(&stop));
    let crowd = shop.crowd("planned", Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // WHEN a planned failover promotes the replica
    let old = group.primary().addr();
    let asked_at = Instant::now();
    group.planned_failover();
    let (new, switched_at) = group.wait_for_switch(old, Duration::from_secs(30)).await;
    // The crowd's open connection stays on the old primary, which keeps acknowledging holds
    // until Sentinel demotes it; then it answers READONLY and the connection moves to the new
    // primary through the endpoint, where the first reserve meets the fence.
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline && shop.repairs.requested().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fenced_at = Instant::now();
    let at_risk: Vec<Reservation> = shop
        .ledger
        .all()
        .into_iter()
        .filter(|r| r.created_at.as_millis() >= chrono_ms(switched_at))
        .collect();
    let lost = missing_on(group.node_at(new).unwrap(), &shop.sale, &at_risk).await;
    gate.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let attempts = crowd.await.unwrap();
    let rebuilt = repairs.await.unwrap();
    let first_ok =
        first_success_after(&attempts, fenced_at).expect("selling resumed on the new primary");
    let refused = attempts
        .iter()
        .filter(|a| a.at > asked_at && a.at < first_ok && a.outcome.is_err())
        .count();
    let figures = Figures {
        scenario: "Sentinel: planned failover (SENTINEL FAILOVER)",
        acknowledged_at_risk: at_risk.len(),
        lost,
        without_primary: switched_at - asked_at,
        first_success_after_promotion: first_ok.saturating_duration_since(switched_at),
        refused,
        longest_unavailable: longest_unavailable(&attempts),
        repaired_after: rebuilt.first().map_or(first_ok, |r| r.1) - asked_at,
    };
    figures.print();
    timeline(&attempts, asked_at);
    // THEN what the demoted primary acknowledged is repaired, and the sale goes on there
    assert!(
        !rebuilt.is_empty(),
        "the promoted node was fenced and verified"
    );
    assert!(
        first_ok >= rebuilt[0].0,
        "a unit sold on the promoted node before the rebuild"
    );
    shop.assert_invariant().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_primary_killed_mid_sale_loses_holds_and_they_are_repaired_before_resale() {
    let mut cluster = RedisCluster::start_with_replicas(3, 1, 1_000);
    let conn = RedisConnection::connect(&RedisSettings::cluster(cluster.urls()[0].clone()))
        .await
        .unwrap();
    let shop = Arc::new(open_sale(conn, 50_000, 4).await);
    // Shard 0's primary and its replica.
    let stock_key = ShardKeys::new(&shop.sale.sale_id, 0).stock();
    let primary = cluster
        .primary_for_key(&stock_key)
        .await
        .expect("primary of shard 0");
    let primary_port = cluster.nodes()[primary].port();
    let replica = cluster
        .nodes()
        .iter()
        .position(|n| {
            n.cli(&["INFO", "replication"])
                .contains(&format!("master_port:{primary_port}"))
        })
        .expect("replica of shard 0's primary");
    let stop = Arc::new(AtomicBool::new(false));
    let gate = Arc::new(AtomicBool::new(false));
    let repairs = shop.repair_consumer(Arc::clone(&gate), Arc::clone(&stop));
    let crowd = shop.crowd("cluster", Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(500)).await;

    cluster.nodes()[replica].freeze(true);
    let stalled_at = Instant::now();
    // Padding in shard 0's slot, so it goes to the same primary and down the same stream.
    flood(
        &cluster.nodes()[primary],
        &format!("fs:{{{}:0}}:pad", shop.sale.sale_id),
        48,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.nodes_mut()[primary].kill_hard();
    let killed_at = Instant::now();
    cluster.nodes()[replica].freeze(false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let on_shard_0: Vec<Reservation> = shop
        .ledger
        .all()
        .into_iter()
        .filter(|r| {
            r.shard == 0
                && r.created_at.as_millis() >= chrono_ms(stalled_at)
                && r.created_at.as_millis() <= chrono_ms(killed_at)
        })
        .collect();
    let lost = missing_on(&cluster.nodes()[replica], &shop.sale, &on_shard_0).await;
    gate.store(true, Ordering::SeqCst);

    // The replica takes over shard 0's slots.
    let deadline = Instant::now() + Duration::from_secs(30);
    let promoted_at = loop {
        if cluster.primary_for_key(&stock_key).await == Some(replica) {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "no cluster failover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && shop.repairs.requested().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let attempts = crowd.await.unwrap();
    let rebuilt = repairs.await.unwrap();
    let first_ok = first_success_after(&attempts, promoted_at).expect("selling resumed");
    let refused = attempts
        .iter()
        .filter(|a| a.at > killed_at && a.at < first_ok && a.outcome.is_err())
        .count();
    let figures = Figures {
        scenario: "Cluster: a primary SIGKILLed, its replica stalled",
        acknowledged_at_risk: on_shard_0.len(),
        lost,
        without_primary: promoted_at - killed_at,
        first_success_after_promotion: first_ok.saturating_duration_since(promoted_at),
        refused,
        longest_unavailable: longest_unavailable(&attempts),
        repaired_after: rebuilt.first().map_or(first_ok, |r| r.1) - killed_at,
    };
    figures.print();
    timeline(&attempts, killed_at);
    assert!(
        lost > 0,
        "no acknowledged hold was lost: the test proves nothing ({figures:?})"
    );
    assert!(
        !rebuilt.is_empty(),
        "the fence asked for a rebuild and it ran"
    );
    shop.assert_invariant().await;
}

/// Prints runs of equal outcomes around `from` (ms offsets): what the crowd saw.
fn timeline(attempts: &[Attempt], from: Instant) {
    let mut last: Option<String> = None;
    for a in attempts
        .iter()
        .filter(|a| a.at + Duration::from_secs(1) > from)
    {
        let kind = match &a.outcome {
            Ok(_) => "reserved".to_string(),
            Err(e) => e.chars().take(60).collect(),
        };
        if last.as_deref() != Some(kind.as_str()) {
            let ms = if a.at >= from {
                (a.at - from).as_millis() as i64
            } else {
                -((from - a.at).as_millis() as i64)
            };
            println!("   {ms:>6} ms  {kind}");
            last = Some(kind);
        }
    }
}

/// An `Instant` as wall-clock milliseconds (the records carry wall-clock times).
fn chrono_ms(at: Instant) -> i64 {
    let ago = Instant::now().saturating_duration_since(at);
    now().as_millis() - ago.as_millis() as i64
}

#[tokio::test]
async fn a_demoted_primary_answering_readonly_makes_the_connection_move_to_the_new_one() {
    // GIVEN a client connected, through the endpoint, to a node that has become a replica
    let primary = RedisServer::start();
    let replica =
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    let endpoint = testkit::tcp_proxy::TcpProxy::start(replica.addr()).await;
    let mut ours = RedisConnection::connect(&RedisSettings::standalone(endpoint.redis_url()))
        .await
        .unwrap();
    let mut plain = redis::Client::open(endpoint.redis_url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap();
    let refused: Result<(), _> = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut plain)
        .await;
    assert_eq!(refused.unwrap_err().code(), Some("READONLY"));
    // WHEN the endpoint moves to the primary while a write is being retried
    let started = Instant::now();
    let write = tokio::spawn(async move {
        let result: Result<(), _> = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut ours)
            .await;
        (result, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    endpoint.retarget(primary.addr());
    // THEN our connection reconnects and the write lands on the primary, within its deadline
    let (result, took) = write.await.unwrap();
    result.unwrap();
    assert!(took < Duration::from_millis(1_500), "{took:?}");
    assert_eq!(primary.cli(&["GET", "k"]).trim(), "v");
    // AND a plain connection manager stays on the replica and keeps failing
    let still: Result<(), _> = redis::cmd("SET")
        .arg("k2")
        .arg("v")
        .query_async(&mut plain)
        .await;
    assert_eq!(still.unwrap_err().code(), Some("READONLY"));
}

#[tokio::test]
async fn with_no_primary_answering_a_reserve_fails_within_the_call_deadline() {
    // GIVEN an endpoint that refuses every connection (no primary)
    let server = RedisServer::start();
    let endpoint = testkit::tcp_proxy::TcpProxy::start(server.addr()).await;
    let conn = RedisConnection::connect(&RedisSettings::standalone(endpoint.redis_url()))
        .await
        .unwrap();
    let shop = open_sale(conn, 10, 2).await;
    endpoint.set_mode(testkit::tcp_proxy::Mode::Refuse);
    // WHEN a buyer reserves
    let started = Instant::now();
    let outcome = shop.reserve("nobody-home").await;
    // THEN the answer is "unavailable" (503) within the deadline, not a hang
    assert!(
        matches!(outcome, Err(ReserveError::Stock(_))),
        "{outcome:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "{:?}",
        started.elapsed()
    );
    // AND a stall (nothing answers) is bounded the same way
    endpoint.set_mode(testkit::tcp_proxy::Mode::Stall);
    let started = Instant::now();
    assert!(shop.reserve("still-nobody").await.is_err());
    assert!(
        started.elapsed() < Duration::from_millis(2_000),
        "{:?}",
        started.elapsed()
    );
}
