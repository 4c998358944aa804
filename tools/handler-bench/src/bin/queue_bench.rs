//! queue_bench: the waiting room's costs.
//!
//! 1. Joins per second and latency through the engine (`RedisQueueStore::join`: building the
//!    request, the pre-queue rank key's HMAC, the script call, reading the answer) against a
//!    raw loop of the same step (EVALSHA of queue.lua with arguments made up front, the reply
//!    not read), on one real redis-server on 127.0.0.1, the same concurrency, each round on a
//!    fresh sale, engine and raw rounds alternating; medians of the rounds.
//! 2. The admission check reserve runs on a room sale (`WaitingRoom::admit`: the sale from the
//!    1 s catalog cache, the ticket's HS256 signature and claims), per request, in process with
//!    the show record answering at once from memory; and the ticket check alone.
//!
//! Usage: cargo run --release -p handler-bench --bin queue_bench -- [--joins N] [--rounds R]
//!   [--concurrency C]   (defaults 20000, 5, 64). Bounded: R x 2 x N joins, then 200,000
//!   admission checks; it starts its own redis-server and stops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flashsale_core::domain::{Clock, SaleId, SystemClock, Timestamp, UserId};
use flashsale_core::sale::cached::CachedSaleCatalog;
use flashsale_core::sale::memory::InMemorySaleCatalog;
use flashsale_core::sale::SaleCatalog;
use flashsale_core::waiting_room::memory::MemoryQueueStore;
use flashsale_core::waiting_room::redis::{keys, RedisQueueStore, QUEUE};
use flashsale_core::waiting_room::room::{Joined, WaitingRoom};
use flashsale_core::waiting_room::ticket::TicketKey;
use flashsale_core::waiting_room::{
    JoinRequest, QueueStore, RoomMode, RoomSettings, NO_SHOW_GRACE, NO_SHOW_MIN_SAMPLE,
};
use hdrhistogram::Histogram;
use redis::aio::ConnectionManager;
use testkit::fixtures::OpenSale;
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

struct Round {
    per_sec: f64,
    p50_us: u64,
    p99_us: u64,
}

const DRAIN: u32 = 10_000;
const MAX_QUEUE: u64 = 10_000_000;

fn join_request(key: &TicketKey, sale: &SaleId, buyer: &UserId, now: Timestamp) -> JoinRequest {
    let opens_at = now.minus(Duration::from_secs(1));
    JoinRequest {
        sale: sale.clone(),
        buyer: buyer.clone(),
        now,
        opens_at,
        drain_per_sec: DRAIN,
        max_queue: MAX_QUEUE,
        max_boost_percent: 50,
        rank_key: key.pre_queue_seed(sale, opens_at).rank_key(buyer),
        keep_until: now.plus(Duration::from_secs(3600)),
        admission_window: Duration::from_secs(300),
    }
}

/// `joins` joins of distinct buyers at `concurrency` in flight; `raw` runs the bare script.
async fn round(
    conn: &ConnectionManager,
    key: &Arc<TicketKey>,
    joins: u64,
    concurrency: u64,
    raw: bool,
    label: &str,
) -> anyhow::Result<Round> {
    let sale = SaleId::parse(format!("bench-{label}-{}", uuid::Uuid::now_v7().simple()))?;
    let store = RedisQueueStore::new(conn.clone());
    let sha = QUEUE.get_hash().to_owned();
    let per_task = joins / concurrency;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let (store, key, sale, sha, mut conn) = (
            store.clone(),
            key.clone(),
            sale.clone(),
            sha.clone(),
            conn.clone(),
        );
        // The raw loop's arguments, made before the clock starts counting for it.
        let now = SystemClock.now();
        let prepared: Vec<Vec<String>> = if raw {
            (0..per_task)
                .map(|i| {
                    let buyer = format!("b-{t}-{i}");
                    let mut a: Vec<String> = keys(&sale, now).to_vec();
                    a.extend([
                        "join".into(),
                        now.as_millis().to_string(),
                        DRAIN.to_string(),
                        "50".into(),
                        NO_SHOW_MIN_SAMPLE.to_string(),
                        NO_SHOW_GRACE.as_millis().to_string(),
                        (now.as_millis() - 1000).to_string(),
                        buyer,
                        MAX_QUEUE.to_string(),
                        "12345".into(),
                        (now.as_millis() + 3_600_000).to_string(),
                        "0".into(),
                        "300000".into(),
                    ]);
                    a
                })
                .collect()
        } else {
            Vec::new()
        };
        tasks.spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            for i in 0..per_task {
                let t0 = Instant::now();
                if raw {
                    let _: redis::Value = redis::cmd("EVALSHA")
                        .arg(&sha)
                        .arg(5)
                        .arg(&prepared[i as usize])
                        .query_async(&mut conn)
                        .await
                        .expect("raw join");
                } else {
                    let buyer = UserId::parse(format!("b-{t}-{i}")).unwrap();
                    let request = join_request(&key, &sale, &buyer, SystemClock.now());
                    store.join(&request).await.expect("join");
                }
                h.record(t0.elapsed().as_micros().max(1) as u64).unwrap();
            }
            h
        });
    }
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    while let Some(h) = tasks.join_next().await {
        all.add(h?)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Round {
        per_sec: (per_task * concurrency) as f64 / elapsed,
        p50_us: all.value_at_quantile(0.5),
        p99_us: all.value_at_quantile(0.99),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let joins = arg("--joins", 20_000)?;
    let rounds = arg("--rounds", 5)?;
    let concurrency = arg("--concurrency", 64)?;
    let server = RedisServer::start();
    let conn = server.connection().await;
    {
        let mut c = conn.clone();
        QUEUE.prepare_invoke().load_async(&mut c).await?;
    }
    let key = Arc::new(TicketKey::new(
        b"queue bench ticket key, thirty-two bytes+",
    )?);
    // Warm-up (not counted).
    round(&conn, &key, 2_000, concurrency, false, "warm").await?;
    round(&conn, &key, 2_000, concurrency, true, "warm").await?;
    let (mut engine, mut raw) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        engine.push(round(&conn, &key, joins, concurrency, false, &format!("e{r}")).await?);
        raw.push(round(&conn, &key, joins, concurrency, true, &format!("r{r}")).await?);
    }
    let summary = |label: &str, rs: &[Round]| {
        let per_sec = median(rs.iter().map(|r| r.per_sec).collect());
        let p50 = median(rs.iter().map(|r| r.p50_us as f64).collect());
        let p99 = median(rs.iter().map(|r| r.p99_us as f64).collect());
        eprintln!("{label:<28} {per_sec:>10.0} joins/s   p50 {p50:>6.0} µs   p99 {p99:>6.0} µs");
        (per_sec, p99)
    };
    eprintln!(
        "joins: {rounds} rounds x {joins} per design, {concurrency} in flight, medians of rounds"
    );
    let (e, e99) = summary("engine (RedisQueueStore)", &engine);
    let (r, r99) = summary("raw EVALSHA loop", &raw);
    eprintln!(
        "engine / raw: throughput {:.2}, p99 {:.2}",
        e / r,
        e99 / r99
    );

    // The admission check.
    let catalog = InMemorySaleCatalog::default();
    let now = SystemClock.now();
    let sale = OpenSale::new(SaleId::parse("admit-bench")?, 100)
        .waiting_room(RoomSettings::with_defaults(RoomMode::Always))
        .at(now);
    catalog.create(&sale).await?;
    let room = WaitingRoom {
        store: MemoryQueueStore::new(),
        catalog: CachedSaleCatalog::new(catalog, SystemClock, Duration::from_secs(1)),
        key: TicketKey::new(b"queue bench ticket key, thirty-two bytes+")?,
        clock: SystemClock,
    };
    let buyer = UserId::parse("admit-buyer")?;
    let ticket = match room.join(&sale.sale_id, &buyer, None).await? {
        Joined::Placed { ticket, .. } => ticket,
        other => anyhow::bail!("expected a place, got {other:?}"),
    };
    let checks = 200_000u64;
    let t0 = Instant::now();
    for _ in 0..checks {
        room.admit(&sale.sale_id, &buyer, Some(&ticket)).await?;
    }
    let per_admit = t0.elapsed().as_nanos() as f64 / checks as f64;
    let t0 = Instant::now();
    for _ in 0..checks {
        room.key
            .verify(&ticket, &sale.sale_id, sale.starts_at, &buyer, now)?;
    }
    let per_verify = t0.elapsed().as_nanos() as f64 / checks as f64;
    eprintln!(
        "admission check (WaitingRoom::admit, cached sale + ticket): {:.1} µs per request; ticket verify alone: {:.1} µs ({checks} each, one thread)",
        per_admit / 1000.0,
        per_verify / 1000.0
    );
    drop(server);
    Ok(())
}
