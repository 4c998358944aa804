//! expiry-bench: one expiry cleanup pass over N expired reservations, with the production
//! settings, against LocalStack's DynamoDB (throwaway tables) and a redis-server started here
//! on loopback (stopped at the end).
//!
//! Usage: cargo run --release -p expiry-bench -- [--reservations N] [--shards S]
//!            [--concurrency C] [--page-size P] [--writes transact|partiql|single]
//!            [--write-batch B] [--budget-ms T]
//!
//! Seeding: N buyers reserve one unit each through the stock engine (so every unit is really
//! held in Redis), and their PENDING records, with `expires_at` in the past, are written with
//! BatchWriteItem. Then one cleanup pass runs; the bench checks that all N records are EXPIRED,
//! the index is empty and Redis is back to the initial stock, and prints time and throughput.
//! Defaults are the production ones (concurrency 32, page size 500, transactions of 100).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use aws_sdk_dynamodb::Client;
use flashsale_core::domain::{
    Clock, IdempotencyKey, Quantity, ReservationId, SaleId, SystemClock, Timestamp, UserId,
};
use flashsale_core::expiry::dynamo::{DynamoExpiryStore, ExpiryWrites};
use flashsale_core::expiry::{ExpiryConfig, ExpiryService, ExpiryStore};
use flashsale_core::reconcile::dynamo::DynamoDurableRecords;
use flashsale_core::reconcile::{DurableRecords, Which};
use flashsale_core::reservation::item::to_item;
use flashsale_core::reservation::{Reservation, ReservationStatus};
use flashsale_core::sale::dynamo::DynamoSaleCatalog;

use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{ReserveOutcome, ReserveRequest, StockEngine};
use futures::{stream, StreamExt, TryStreamExt};
use redis::aio::ConnectionManager;
use testkit::dynamo::{localstack_client, Tables};
use testkit::fixtures::{self, OpenSale};
use testkit::RedisServer;

struct Args {
    reservations: u64,
    shards: u16,
    expiry: ExpiryConfig,
    writes: ExpiryWrites,
    budget: Duration,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        reservations: 10_000,
        shards: 16,
        expiry: ExpiryConfig::default(),
        writes: ExpiryWrites::default(),
        budget: Duration::from_secs(120),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--reservations" => args.reservations = value.parse()?,
            "--shards" => args.shards = value.parse()?,
            "--concurrency" => args.expiry.concurrency = value.parse()?,
            "--page-size" => args.expiry.page_size = value.parse()?,
            "--writes" => {
                args.writes = match (value.as_str(), args.writes) {
                    ("transact", _) => ExpiryWrites::Transact(100),
                    ("partiql", _) => ExpiryWrites::Partiql(25),
                    ("single", _) => ExpiryWrites::PerItem,
                    _ => anyhow::bail!("--writes is transact, partiql or single"),
                }
            }
            "--write-batch" => {
                let n: usize = value.parse()?;
                args.writes = match args.writes {
                    ExpiryWrites::Transact(_) if (2..=100).contains(&n) => ExpiryWrites::Transact(n),
                    ExpiryWrites::Partiql(_) if (2..=25).contains(&n) => ExpiryWrites::Partiql(n),
                    _ => anyhow::bail!("--write-batch: 2..100 for transact, 2..25 for partiql (give --writes first)"),
                }
            }
            "--budget-ms" => args.budget = Duration::from_millis(value.parse()?),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    ensure!(args.reservations >= 1, "--reservations must be >= 1");
    ensure!(args.expiry.concurrency >= 1, "--concurrency must be >= 1");
    Ok(args)
}

/// BatchWriteItem in chunks of 25, a few chunks at once, retrying unprocessed items.
async fn write_all(client: &Client, table: &str, records: &[Reservation]) -> anyhow::Result<()> {
    let chunks: Vec<Vec<WriteRequest>> = records
        .chunks(25)
        .map(|chunk| {
            chunk
                .iter()
                .map(|r| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(to_item(r)))
                                .build()
                                .expect("put request"),
                        )
                        .build()
                })
                .collect()
        })
        .collect();
    stream::iter(chunks)
        .map(|mut requests| async move {
            for attempt in 0..10u32 {
                if requests.is_empty() {
                    return Ok(());
                }
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                }
                let output = client
                    .batch_write_item()
                    .request_items(table, requests.clone())
                    .send()
                    .await
                    .context("BatchWriteItem")?;
                requests = output
                    .unprocessed_items
                    .and_then(|mut u| u.remove(table))
                    .unwrap_or_default();
            }
            anyhow::bail!("BatchWriteItem left items unprocessed")
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let redis = RedisServer::start();
    let engine = RedisStockEngine::new(redis.connection().await, RedisStockConfig::default());
    engine.preload_scripts().await?;
    let client = localstack_client().await;
    let tables = Tables::create(&client, "expiry-bench").await;
    let result = run(&args, &engine, &client, &tables).await;
    tables.delete().await;
    drop(redis);
    result
}

async fn run(
    args: &Args,
    engine: &RedisStockEngine<ConnectionManager>,
    client: &Client,
    tables: &Tables,
) -> anyhow::Result<()> {
    let n = args.reservations;
    let now = SystemClock.now();
    let catalog = DynamoSaleCatalog::new(client.clone(), &tables.sales);
    let sale = OpenSale::new(
        SaleId::parse(format!("bench-{}", uuid::Uuid::now_v7().simple()))?,
        n,
    )
    .shards(args.shards)
    .named("expiry bench")
    .opened_ago(Duration::from_secs(3600))
    .at(now);
    fixtures::open(&catalog, engine, &sale).await;

    // Seed: every unit held in Redis by its own buyer, reserved 20 minutes ago.
    let seeding = Instant::now();
    let made = now.minus(Duration::from_secs(1200));
    let expires_at = made.plus(sale.hold);
    let records: Vec<Reservation> = stream::iter(0..n)
        .map(|i| {
            let sale = &sale;
            async move {
                let user = UserId::parse(format!("bench-buyer-{i}"))?;
                let request = ReserveRequest {
                    sale: sale.stock(),
                    user: user.clone(),
                    quantity: Quantity::ONE,
                    idempotency_key: IdempotencyKey::parse(format!("k{i}"))?,
                    reservation_id: ReservationId::new(),
                    now: made,
                    expires_at,
                };
                let ReserveOutcome::Reserved(hold) = engine.reserve(&request).await? else {
                    anyhow::bail!("seeding reserve {i} was refused");
                };
                Ok(Reservation {
                    reservation_id: hold.reservation_id,
                    sale_id: sale.sale_id.clone(),
                    user_id: user,
                    quantity: hold.quantity,
                    shard: hold.shard,
                    status: ReservationStatus::Pending,
                    amount: sale.price,
                    created_at: made,
                    expires_at,
                })
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    write_all(client, &tables.reservations, &records).await?;
    let levels = engine.levels(&sale.stock()).await?;
    ensure!(
        levels.held() == n as i64 && levels.available() == 0,
        "seeded {levels:?}"
    );
    println!(
        "seeded {n} held + PENDING reservations (expired 10 min ago) over {} shards in {:.1} s",
        args.shards,
        seeding.elapsed().as_secs_f64()
    );

    // One cleanup pass.
    let store = DynamoExpiryStore::new(client.clone(), &tables.reservations, args.writes);
    let service = ExpiryService {
        store: &store,
        stock: engine,
        catalog: &catalog,
        config: args.expiry,
    };
    let started = Instant::now();
    let report = service.run(SystemClock.now(), started + args.budget).await;
    let elapsed = started.elapsed();

    // Checks: every record EXPIRED, nothing left in the index, Redis back to the full stock.
    let records_now =
        DynamoDurableRecords::new(client.clone(), &tables.reservations, &tables.orders)
            .reservations_of_sale(&sale.sale_id, Which::All)
            .await?;
    let expired = records_now
        .iter()
        .filter(|r| r.status == ReservationStatus::Expired)
        .count() as u64;
    let mut left_in_index = 0;
    for bucket in flashsale_core::expiry::buckets() {
        left_in_index += store
            .due(&bucket, Timestamp::from_millis(i64::MAX), 1000, None)
            .await?
            .items
            .len();
    }
    let levels = engine.levels(&sale.stock()).await?;
    println!(
        "writes: {:?}, concurrency {}, page size {}",
        args.writes, args.expiry.concurrency, args.expiry.page_size
    );
    println!("report: {}", serde_json::to_string(&report)?);
    println!(
        "cleanup: {} expired in {:.2} s = {:.0} reservations/s (goal: 10,000 in < 30 s)",
        report.expired,
        elapsed.as_secs_f64(),
        report.expired as f64 / elapsed.as_secs_f64()
    );
    ensure!(expired == n, "{expired} of {n} records EXPIRED");
    ensure!(
        report.expired == n && report.released == n,
        "report {report:?}"
    );
    ensure!(
        left_in_index == 0,
        "{left_in_index} items left in the index"
    );
    ensure!(
        levels.available() == n as i64 && levels.held() == 0,
        "Redis levels after cleanup: {levels:?}"
    );
    println!("checked: {n} EXPIRED, index empty, Redis available back to {n}");
    Ok(())
}
