//! stock-bench: reservation throughput and latency through the stock engine, against the raw
//! ceiling of the same Lua script driven by a minimal client loop, in one run on one
//! redis-server (started here, on loopback, and stopped at the end).
//!
//! Usage: cargo run --release -p stock-bench -- [--attempts N] [--concurrency C] [--shards S]
//!                                               [--rounds R]
//!
//! Scenarios (each at the same concurrency, each on a fresh sale):
//! 1. engine/reserve: `RedisStockEngine::reserve`, distinct buyers, twice the stock needed so
//!    every attempt is served by its home shard (the path the raw loop can take)
//! 2. raw/reserve:    EVALSHA of the same reserve script with prebuilt keys and arguments
//! 3. engine-unfenced/reserve: the engine with the fence against lost writes turned off
//!    (`INFO server` not called), i.e. the engine as it was before the fence: the fence's cost
//! 4. engine/sold-out: a sold-out sale through the plain engine (home script + shard reads)
//! 5. fast-path/sold-out: the same through the per-process sold-out cache
//!
//! 1-3 alternate over the rounds (the order rotates each round); the median round is reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use flashsale_core::domain::{
    Clock, IdempotencyKey, Quantity, ReservationId, SaleId, SystemClock, UserId,
};
use flashsale_core::stock::redis::{scripts, RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{
    ReserveOutcome, ReserveRequest, SaleStock, ShardCount, ShardKeys, SoldOutCache,
    SoldOutCacheConfig, StockEngine, StockSetup,
};
use hdrhistogram::Histogram;
use redis::aio::ConnectionManager;
use testkit::RedisServer;

struct Args {
    attempts: u64,
    concurrency: u64,
    shards: u16,
    rounds: u32,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        attempts: 100_000,
        concurrency: 64,
        shards: 16,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--attempts" => args.attempts = value.parse()?,
            "--concurrency" => args.concurrency = value.parse()?,
            "--shards" => args.shards = value.parse()?,
            "--rounds" => args.rounds = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    ensure!(
        args.attempts >= args.concurrency,
        "attempts must be >= concurrency"
    );
    ensure!(args.rounds >= 1, "rounds must be >= 1");
    Ok(args)
}

struct Measured {
    name: &'static str,
    ops: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Measured {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn row(&self) -> String {
        let us = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "| {:<23} | {:>9} | {:>10.0} | {:>8.3} | {:>8.3} | {:>8.3} |",
            self.name,
            self.ops,
            self.per_sec(),
            us(0.50),
            us(0.99),
            us(0.999)
        )
    }
}

/// Runs `op(i)` for i in 0..attempts over `concurrency` tasks; records each call's latency.
async fn drive<F, Fut>(name: &'static str, args: &Args, op: F) -> anyhow::Result<Measured>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let per_task = args.attempts / args.concurrency;
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
                for i in 0..per_task {
                    let begun = Instant::now();
                    op(t * per_task + i).await?;
                    hist.record(begun.elapsed().as_nanos() as u64)?;
                }
                anyhow::Ok(hist)
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for task in tasks {
        latency.add(task.await??)?;
    }
    Ok(Measured {
        name,
        ops: per_task * args.concurrency,
        elapsed: started.elapsed(),
        latency,
    })
}

fn request(sale: &SaleStock, i: u64) -> ReserveRequest {
    let now = SystemClock.now();
    ReserveRequest {
        sale: sale.clone(),
        user: UserId::parse(format!("user-{i}")).expect("valid user"),
        quantity: Quantity::ONE,
        idempotency_key: IdempotencyKey::parse("bench").expect("valid key"),
        reservation_id: ReservationId::new(),
        now,
        expires_at: now.plus(Duration::from_secs(600)),
    }
}

async fn new_sale(
    engine: &RedisStockEngine<ConnectionManager>,
    name: &str,
    shards: u16,
    units: u64,
) -> anyhow::Result<SaleStock> {
    let sale = SaleStock {
        sale_id: SaleId::parse(name)?,
        shards: ShardCount::new(shards)?,
    };
    engine
        .setup(
            &sale,
            &StockSetup {
                total_units: units,
                per_user_limit: 1,
            },
        )
        .await?;
    Ok(sale)
}

fn median(mut runs: Vec<Measured>) -> Measured {
    runs.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// Scenario 1: through the engine. Requests are built before the clock starts, as the raw
/// loop's are.
async fn engine_reserve(
    name: &'static str,
    engine: &Arc<RedisStockEngine<ConnectionManager>>,
    args: &Args,
    round: u32,
) -> anyhow::Result<Measured> {
    let sale = new_sale(
        engine,
        &format!("bench-{}-{round}", name.replace('/', "-")),
        args.shards,
        2 * args.attempts,
    )
    .await?;
    let requests: Arc<Vec<ReserveRequest>> =
        Arc::new((0..args.attempts).map(|i| request(&sale, i)).collect());
    let e = engine.clone();
    let measured = drive(name, args, move |i| {
        let (e, requests) = (e.clone(), requests.clone());
        async move {
            let outcome = e.reserve(&requests[i as usize]).await?;
            ensure!(
                matches!(outcome, ReserveOutcome::Reserved(_)),
                "{outcome:?}"
            );
            Ok(())
        }
    })
    .await?;
    let levels = engine.levels(&sale).await?;
    ensure!(
        levels.held() == measured.ops as i64,
        "every attempt held one unit"
    );
    Ok(measured)
}

/// Scenario 2, the raw ceiling: the same script, keys and arguments prepared outside the
/// timing, one EVALSHA per attempt on the same kind of connection.
async fn raw_reserve(
    server: &RedisServer,
    engine: &Arc<RedisStockEngine<ConnectionManager>>,
    args: &Args,
    round: u32,
) -> anyhow::Result<Measured> {
    let raw_sale = new_sale(
        engine,
        &format!("bench-raw-{round}"),
        args.shards,
        2 * args.attempts,
    )
    .await?;
    let shards = raw_sale.shards;
    let prepared: Arc<Vec<(Vec<String>, Vec<String>)>> = Arc::new(
        (0..args.attempts)
            .map(|i| {
                let req = request(&raw_sale, i);
                let home = shards.home_of(&req.user);
                let k = ShardKeys::new(&raw_sale.sale_id, home);
                (
                    vec![
                        k.stock(),
                        k.holds(),
                        k.hold_times(),
                        k.user(&req.user),
                        k.idempotency(&req.user, &req.idempotency_key),
                    ],
                    vec![
                        req.reservation_id.to_string(),
                        req.user.to_string(),
                        "1".into(),
                        req.expires_at.as_millis().to_string(),
                        req.now.as_millis().to_string(),
                        shards.get().to_string(),
                        home.to_string(),
                        "86400".into(),
                        // The fence on, as the engine sends it.
                        "1".into(),
                    ],
                )
            })
            .collect(),
    );
    let raw_conn = server.connection().await;
    drive("raw/reserve", args, move |i| {
        let (mut conn, prepared) = (raw_conn.clone(), prepared.clone());
        async move {
            let (keys, argv) = &prepared[i as usize];
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(scripts::RESERVE.get_hash())
                .arg(keys.len())
                .arg(keys)
                .arg(argv);
            let reply: redis::Value = cmd.query_async(&mut conn).await?;
            ensure!(format!("{reply:?}").contains("RESERVED"), "{reply:?}");
            Ok(())
        }
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let server = RedisServer::start();
    let engine = RedisStockEngine::new(server.connection().await, RedisStockConfig::default());
    engine.preload_scripts().await?;
    let engine = Arc::new(engine);
    let unfenced = Arc::new(RedisStockEngine::new(
        server.connection().await,
        RedisStockConfig {
            fencing: false,
            ..RedisStockConfig::default()
        },
    ));
    let mut results = Vec::new();

    // 1, 2 and 3 alternate over several rounds (the order rotates each round), each round on
    // fresh sales; the median round of each is reported. This machine is shared and noisy.
    let mut engine_runs = Vec::new();
    let mut raw_runs = Vec::new();
    let mut unfenced_runs = Vec::new();
    for round in 0..args.rounds {
        for turn in 0..3 {
            match (round + turn) % 3 {
                0 => {
                    engine_runs.push(engine_reserve("engine/reserve", &engine, &args, round).await?)
                }
                1 => raw_runs.push(raw_reserve(&server, &engine, &args, round).await?),
                _ => unfenced_runs.push(
                    engine_reserve("engine-unfenced/reserve", &unfenced, &args, round).await?,
                ),
            }
        }
    }
    results.push(median(engine_runs));
    results.push(median(raw_runs));
    results.push(median(unfenced_runs));

    // 3. Sold out through the plain engine.
    let gone = new_sale(&engine, "bench-sold-out", args.shards, 0).await?;
    let (e, s) = (engine.clone(), gone.clone());
    results.push(
        drive("engine/sold-out", &args, move |i| {
            let (e, s) = (e.clone(), s.clone());
            async move {
                ensure!(e.reserve(&request(&s, i)).await? == ReserveOutcome::SoldOut);
                Ok(())
            }
        })
        .await?,
    );

    // 4. Sold out through the fast path (window longer than the run).
    let cached = Arc::new(SoldOutCache::new(
        RedisStockEngine::new(server.connection().await, RedisStockConfig::default()),
        SystemClock,
        SoldOutCacheConfig {
            window: Duration::from_secs(3600),
        },
    ));
    let (e, s) = (cached.clone(), gone.clone());
    results.push(
        drive("fast-path/sold-out", &args, move |i| {
            let (e, s) = (e.clone(), s.clone());
            async move {
                ensure!(e.reserve(&request(&s, i)).await? == ReserveOutcome::SoldOut);
                Ok(())
            }
        })
        .await?,
    );

    println!(
        "redis-server on 127.0.0.1:{}, {} attempts per scenario, concurrency {}, {} shards, \
         median of {} alternating rounds for reserve",
        server.port(),
        args.attempts,
        args.concurrency,
        args.shards,
        args.rounds
    );
    println!("| scenario                |       ops |      ops/s |  p50 µs |  p99 µs | p99.9 µs |");
    println!("|-------------------------|-----------|------------|---------|---------|----------|");
    for r in &results {
        println!("{}", r.row());
    }
    println!(
        "engine/raw throughput ratio: {:.3} (goal >= 0.9)",
        results[0].per_sec() / results[1].per_sec()
    );
    println!(
        "fenced/unfenced engine throughput ratio: {:.3} (the fence's cost)",
        results[0].per_sec() / results[2].per_sec()
    );
    println!(
        "fast-path/plain sold-out throughput ratio: {:.1}x",
        results[4].per_sec() / results[3].per_sec()
    );
    Ok(())
}
