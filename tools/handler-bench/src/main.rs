//! handler-bench: what a cold start of the reserve function costs, and what a warm request
//! costs, measured in process against a real redis-server (started here) and DynamoDB Local
//! (LocalStack at 127.0.0.1:4566, which must be running: ./dev up).
//!
//! Usage: cargo run --release -p handler-bench -- [--cold N] [--warm N]
//!
//! - init: everything reserve's main() does before serving: AWS config, DynamoDB client,
//!   Redis connection, script preload. Repeated N times, each from scratch.
//! - first request: the first reserve after init (opens the DynamoDB HTTP connection).
//! - warm: N further reserves on the same instance (distinct buyers, ample stock).

use std::time::{Duration, Instant};

use flashsale_core::domain::{Clock, SaleId, SystemClock};
use flashsale_core::rate_limit::redis::RedisRateLimiter;
use flashsale_core::rate_limit::BucketPolicy;
use flashsale_core::reservation::dynamo::DynamoReservationStore;
use flashsale_core::reservation::http;
use flashsale_core::reservation::reserve::{RatePolicies, ReserveService};
use flashsale_core::sale::cached::CachedSaleCatalog;
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::sale::SaleCatalog;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{SoldOutCache, SoldOutCacheConfig, StockEngine, StockSetup};
use flashsale_core::store::redis::{RedisConnection, RedisMode, RedisSettings};
mod fixture;

use hdrhistogram::Histogram;
use lambda_http::http::StatusCode;
use lambda_http::Request;
use testkit::dynamo::{localstack_client, Tables, LOCALSTACK};
use testkit::RedisServer;

fn arg(name: &str, default: u64) -> anyhow::Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?
            .parse()?),
        None => Ok(default),
    }
}

fn request(sale: &SaleId, i: u64) -> Request {
    fixture::reserve_request(sale, i, "bench-user")
}

fn summary(name: &str, h: &Histogram<u64>) {
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "| {name:<15} | {:>6} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} |",
        h.len(),
        q(0.5),
        q(0.95),
        q(0.99),
        h.max() as f64 / 1000.0
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cold = arg("--cold", 20)?;
    let warm = arg("--warm", 1000)?;
    let redis = RedisServer::start();
    let tables = Tables::create(&localstack_client().await, "bench").await;
    // The function reads its endpoint and credentials from the environment, as on LocalStack.
    std::env::set_var("AWS_ENDPOINT_URL", LOCALSTACK);
    std::env::set_var("AWS_REGION", "us-east-1");
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    let settings = RedisSettings {
        url: redis.url(),
        mode: RedisMode::Standalone,
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_millis(500),
        call_deadline: Duration::from_millis(1_500),
    };

    // One open sale with more stock than the benchmark can take.
    let _now = SystemClock.now();
    let sale = fixture::open_sale(
        &format!("bench-{}", uuid::Uuid::now_v7().simple()),
        1_000_000,
    )?;

    let mut init = Histogram::<u64>::new(3)?;
    let mut first = Histogram::<u64>::new(3)?;
    let mut warm_h = Histogram::<u64>::new(3)?;
    let mut next_user = 0u64;
    for round in 0..cold {
        // --- init, as reserve's main() does it ---
        let started = Instant::now();
        let conn = RedisConnection::connect(&settings).await?;
        let dynamo =
            flashsale_core::store::dynamo::client(&flashsale_core::store::aws_config().await);
        let engine = RedisStockEngine::new(conn.clone(), RedisStockConfig::default());
        engine.preload_scripts().await?;
        let service = ReserveService {
            stock: SoldOutCache::new(engine, SystemClock, SoldOutCacheConfig::default()),
            limiter: RedisRateLimiter::new(conn),
            catalog: CachedSaleCatalog::new(
                DynamoSaleCatalog::new(dynamo.clone(), &tables.sales),
                SystemClock,
                Duration::from_secs(1),
            ),
            store: DynamoReservationStore::new(dynamo, &tables.reservations),
            clock: SystemClock,
            repairs: flashsale_core::stock::repair::memory::RecordedRepairs::default(),
            policies: RatePolicies {
                per_user: BucketPolicy::new(5, 1.0)?,
                per_ip: BucketPolicy::new(1_000_000, 1_000_000.0)?,
            },
        };
        init.record(started.elapsed().as_micros() as u64)?;
        if round == 0 {
            service.catalog.create(&sale).await?;
            service
                .stock
                .setup(
                    &sale.stock(),
                    &StockSetup {
                        total_units: sale.total_stock,
                        per_user_limit: 1,
                    },
                )
                .await?;
        }

        // --- the first request on this instance ---
        let started = Instant::now();
        let response = http::reserve(&service, &request(&sale.sale_id, next_user)).await;
        next_user += 1;
        anyhow::ensure!(
            response.status() == StatusCode::CREATED,
            "{:?}",
            response.body()
        );
        first.record(started.elapsed().as_micros() as u64)?;

        // --- warm requests on the last instance ---
        if round + 1 == cold {
            for _ in 0..warm {
                let started = Instant::now();
                let response = http::reserve(&service, &request(&sale.sale_id, next_user)).await;
                next_user += 1;
                anyhow::ensure!(
                    response.status() == StatusCode::CREATED,
                    "{:?}",
                    response.body()
                );
                warm_h.record(started.elapsed().as_micros() as u64)?;
            }
        }
    }
    tables.delete().await;
    println!(
        "reserve handler, in process: redis-server 127.0.0.1:{}, DynamoDB Local via LocalStack",
        redis.port()
    );
    println!("| phase           |      n |  p50 ms  |  p95 ms  |  p99 ms  |  max ms  |");
    println!("|-----------------|--------|----------|----------|----------|----------|");
    summary("init", &init);
    summary("first request", &first);
    summary("warm request", &warm_h);
    Ok(())
}
