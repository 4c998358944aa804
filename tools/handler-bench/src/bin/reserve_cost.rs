//! reserve_cost: the CPU one reserve costs inside the handler itself, with every port answering
//! at once from memory (no network): request parsing, identity from the authorizer context,
//! both rate-limit decisions, the sale check through the catalog cache, the engine call's
//! request and answer, the reservation record, the response with its headers, and the EMF line.
//!
//! Usage: cargo run --release -p handler-bench --bin reserve_cost -- [--requests N] > /dev/null
//! (stdout carries the EMF lines, as a Lambda's does; the figures go to stderr).
//!
//! Reports wall time per request (percentiles), thread CPU time per request (mean), and heap
//! allocations and bytes per request (mean), on one thread; then the bot defence's pure costs:
//! one bot score, and issuing one challenge.

use std::time::{Duration, Instant};

use flashsale_core::bot::challenge::altcha::{AltchaChallenges, AltchaConfig};
use flashsale_core::bot::challenge::{Binding, ChallengeVerifier};
use flashsale_core::bot::score::{score, Signals, Telemetry, Weights};
use flashsale_core::domain::UserId;
use flashsale_core::domain::{Clock, SaleId, SystemClock};
use flashsale_core::rate_limit::memory::InMemoryRateLimiter;
use flashsale_core::rate_limit::BucketPolicy;
use flashsale_core::reservation::http;
use flashsale_core::reservation::memory::InMemoryReservationStore;
use flashsale_core::reservation::reserve::{RatePolicies, ReserveService};
use flashsale_core::sale::cached::CachedSaleCatalog;
use flashsale_core::sale::memory::InMemorySaleCatalog;
use flashsale_core::sale::SaleCatalog;
use flashsale_core::stock::memory::InMemoryStockEngine;
use flashsale_core::stock::repair::memory::RecordedRepairs;
use flashsale_core::stock::{SoldOutCache, SoldOutCacheConfig, StockEngine, StockSetup};
use hdrhistogram::Histogram;
use lambda_http::http::StatusCode;
use lambda_http::Request;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[path = "../fixture.rs"]
mod fixture;

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

fn requests_arg() -> anyhow::Result<u64> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--requests") {
        Some(i) => Ok(args
            .get(i + 1)
            .ok_or_else(|| anyhow::anyhow!("--requests needs a value"))?
            .parse()?),
        None => Ok(100_000),
    }
}

fn request(sale: &SaleId, i: u64) -> Request {
    fixture::reserve_request(sale, i, "cost-user")
}

/// CPU time this thread has used (CLOCK_THREAD_CPUTIME_ID, clock_gettime(2)).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn main() -> anyhow::Result<()> {
    let n = requests_arg()?;
    // One thread, as a Lambda instance serves one request at a time.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let _now = SystemClock.now();
        let sale = fixture::open_sale("cost-bench", 10_000_000)?;
        let service = ReserveService {
            stock: SoldOutCache::new(
                InMemoryStockEngine::default(),
                SystemClock,
                SoldOutCacheConfig::default(),
            ),
            limiter: InMemoryRateLimiter::new(SystemClock),
            catalog: CachedSaleCatalog::new(
                InMemorySaleCatalog::default(),
                SystemClock,
                Duration::from_secs(1),
            ),
            store: InMemoryReservationStore::default(),
            clock: SystemClock,
            repairs: RecordedRepairs::default(),
            policies: RatePolicies {
                per_user: BucketPolicy::new(5, 1.0)?,
                per_ip: BucketPolicy::new(10_000_000, 10_000_000.0)?,
            },
        };
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
        // Warm-up: the catalog cache filled, the allocator's pools grown.
        for i in 0..1_000 {
            let response = http::reserve(&service, &request(&sale.sale_id, n + i)).await;
            anyhow::ensure!(
                response.status() == StatusCode::CREATED,
                "{:?}",
                response.body()
            );
        }

        // The requests are built before the clock starts: API Gateway's work, not ours.
        let requests: Vec<Request> = (0..n).map(|i| request(&sale.sale_id, i)).collect();
        let mut wall = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
        let region = Region::new(GLOBAL);
        let cpu_before = thread_cpu();
        for req in &requests {
            let started = Instant::now();
            let response = http::reserve(&service, req).await;
            wall.record(started.elapsed().as_nanos().max(1) as u64)?;
            anyhow::ensure!(
                response.status() == StatusCode::CREATED,
                "{:?}",
                response.body()
            );
        }
        let cpu = thread_cpu() - cpu_before;
        let allocs = region.change();
        let us = |q: f64| wall.value_at_quantile(q) as f64 / 1000.0;
        eprintln!("reserve handler, in process, in-memory ports, one thread, {n} requests:");
        eprintln!("| measure | value |");
        eprintln!("|---|---:|");
        eprintln!("| wall p50 µs | {:.1} |", us(0.5));
        eprintln!("| wall p99 µs | {:.1} |", us(0.99));
        eprintln!("| wall p99.9 µs | {:.1} |", us(0.999));
        eprintln!(
            "| thread CPU per request, mean µs | {:.1} |",
            cpu.as_secs_f64() * 1e6 / n as f64
        );
        eprintln!(
            "| allocations per request, mean | {:.1} |",
            allocs.allocations as f64 / n as f64
        );
        eprintln!(
            "| bytes allocated per request, mean | {:.0} |",
            allocs.bytes_allocated as f64 / n as f64
        );

        // The bot defence's own costs (seed 004 flow 10: detection under 10 ms).
        let bot = Signals {
            user_per_minute: 120,
            ip_per_minute: 300,
            account_age: Some(Duration::from_secs(600)),
            telemetry: Some(Telemetry {
                webdriver: true,
                headless: true,
                webgl: Some(false),
                canvas: Some(false),
                pointer_events: Some(0),
                click_after_ms: Some(20),
            }),
            edge_signals: vec!["automated-browser".into()],
        };
        let weights = Weights::default();
        let scores = 1_000_000u32;
        let started = Instant::now();
        for _ in 0..scores {
            std::hint::black_box(score(std::hint::black_box(&bot), &weights));
        }
        let per_score = started.elapsed().as_secs_f64() * 1e9 / f64::from(scores);
        let challenges = AltchaChallenges::new(AltchaConfig {
            signature_secret: "bench-signature".into(),
            key_secret: "bench-key".into(),
            ttl: Duration::from_secs(120),
            base_work: 100_000,
            threshold: 80,
        });
        let binding = Binding {
            buyer: UserId::parse("bench-bot")?,
            sale: sale.sale_id.clone(),
            action: "reserve",
        };
        let issues = 10_000u32;
        let started = Instant::now();
        for _ in 0..issues {
            std::hint::black_box(challenges.issue(&binding, 95, SystemClock.now())?);
        }
        let per_issue = started.elapsed().as_secs_f64() * 1e6 / f64::from(issues);
        eprintln!("| bot score of one request, mean ns | {per_score:.0} |");
        eprintln!("| issuing one challenge (ALTCHA, deterministic), mean µs | {per_issue:.1} |");
        anyhow::Ok(())
    })
}
