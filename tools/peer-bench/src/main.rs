//! peer-bench: our stock engine side by side with the designs teams use instead, on the same
//! crowd, in one run; then shard scaling on a real three-primary Redis Cluster. It starts its
//! own redis-server processes on 127.0.0.1 and stops them; the DynamoDB design needs LocalStack
//! (`localstack/env.sh start`) or is skipped with `--no-dynamo`.
//!
//! Usage (BENCHMARKS.md has the figures):
//!   cargo run --release -p peer-bench -- [--buyers N] [--stock N] [--rounds R] [--concurrency C]
//!       [--shards S] [--no-dynamo] [--no-cluster] [--plots DIR]
//!
//! Columns: attempts/s and latency of the median round (rounds alternate the order of the
//! designs); the correctness columns are the worst round: units oversold, units left unsold
//! after the whole crowd asked and gave up, buyers turned away while units were left (false
//! sold-outs), buyers above the per-user limit, retries sold twice.

mod cluster;
mod cpu;
mod crowd;
mod designs;
mod plot;
mod rounds;

use std::sync::Arc;

use clap::Parser;
use flashsale_core::domain::SystemClock;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{SoldOutCache, SoldOutCacheConfig};
use testkit::RedisServer;

use crate::crowd::{Crowd, CrowdSpec};
use crate::designs::buckets::Buckets;
use crate::designs::decr_incr::DecrIncr;
use crate::designs::dynamo_conditional::DynamoConditional;
use crate::designs::ours::Ours;
use crate::designs::single_counter::SingleCounter;
use crate::designs::watch_multi::WatchMulti;
use crate::designs::Design;
use crate::rounds::Summary;

#[derive(Parser, Debug)]
#[command(about = "Our stock engine against the designs teams use instead, same crowd, one run")]
struct Args {
    /// Distinct buyers in the crowd.
    #[arg(long, default_value_t = 20_000)]
    buyers: u32,
    /// Units on sale (much smaller than the crowd's demand).
    #[arg(long, default_value_t = 2_000)]
    stock: u64,
    /// Units one buyer may hold.
    #[arg(long, default_value_t = 2)]
    per_user_limit: u32,
    /// Share of buyers asking for two units.
    #[arg(long, default_value_t = 0.2)]
    two_unit_share: f64,
    /// Share of buyers who resend their request (lost answer).
    #[arg(long, default_value_t = 0.2)]
    retry_share: f64,
    /// Share of buyers who then ask again, for the limit, with a new request.
    #[arg(long, default_value_t = 0.1)]
    greedy_share: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Alternating rounds of the Redis designs (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Rounds of the DynamoDB design (each takes far longer than a Redis round).
    #[arg(long, default_value_t = 1)]
    dynamo_rounds: usize,
    /// Shards of ours, buckets of the bucketed design.
    #[arg(long, default_value_t = 8)]
    shards: u16,
    /// Tries of the WATCH/MULTI design before it gives up on a request.
    #[arg(long, default_value_t = 3)]
    watch_tries: u32,
    /// Skip the DynamoDB design (it needs LocalStack at 127.0.0.1:4566).
    #[arg(long)]
    no_dynamo: bool,
    /// Skip the cluster scaling part.
    #[arg(long)]
    no_cluster: bool,
    /// Rounds of the cluster scaling part.
    #[arg(long, default_value_t = 3)]
    cluster_rounds: usize,
    /// Write the plots (SVG) into this folder.
    #[arg(long)]
    plots: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rounds >= 1 && args.dynamo_rounds >= 1 && args.cluster_rounds >= 1, "rounds must be >= 1");
    let crowd = Crowd::draw(CrowdSpec {
        buyers: args.buyers,
        stock: args.stock,
        per_user_limit: args.per_user_limit,
        two_unit_share: args.two_unit_share,
        retry_share: args.retry_share,
        greedy_share: args.greedy_share,
        seed: args.seed,
    });
    anyhow::ensure!(
        crowd.demand() > 2 * args.stock,
        "the crowd must ask for far more than the stock ({} units asked, {} on sale)",
        crowd.demand(),
        args.stock
    );

    let server = RedisServer::start();
    let conn = server.connection().await;
    let engine = || RedisStockEngine::new(conn.clone(), RedisStockConfig::default());
    engine().preload_scripts().await?;
    let redis_designs: Vec<Arc<dyn Design>> = vec![
        Arc::new(SingleCounter::new(conn.clone())),
        Arc::new(DecrIncr::new(conn.clone())),
        Arc::new(WatchMulti::connect(&server.url(), args.concurrency, args.watch_tries).await?),
        Arc::new(Buckets::new(conn.clone(), u32::from(args.shards))),
        Arc::new(Ours::new(engine(), "ours", args.shards)?),
        Arc::new(Ours::new(
            SoldOutCache::new(engine(), SystemClock, SoldOutCacheConfig::default()),
            "ours + sold-out cache",
            args.shards,
        )?),
    ];
    eprintln!("side by side on redis-server 127.0.0.1:{}", server.port());
    let mut summaries =
        rounds::alternate(&crowd, &redis_designs, args.rounds, args.concurrency, "side").await?;

    if !args.no_dynamo {
        let client = testkit::dynamo::localstack_client().await;
        let dynamo = DynamoConditional::create(client).await.map_err(|e| {
            anyhow::anyhow!(
                "the DynamoDB design needs LocalStack at 127.0.0.1:4566 \
                 (localstack/env.sh start), or pass --no-dynamo: {e}"
            )
        })?;
        let dynamo = Arc::new(dynamo);
        let designs: Vec<Arc<dyn Design>> = vec![dynamo.clone()];
        let result =
            rounds::alternate(&crowd, &designs, args.dynamo_rounds, args.concurrency, "dynamo").await;
        dynamo.delete().await?;
        summaries.extend(result?);
    }

    println!(
        "crowd: {} buyers asking for {} units of {} (limit {} per buyer; {:.0} % ask for 2, {:.0} % \
         resend, {:.0} % ask again for {}), {} concurrent callers, {} shards/buckets; Redis designs: \
         median of {} alternating rounds",
        args.buyers,
        crowd.demand(),
        args.stock,
        args.per_user_limit,
        args.two_unit_share * 100.0,
        args.retry_share * 100.0,
        args.greedy_share * 100.0,
        args.per_user_limit,
        args.concurrency,
        args.shards,
        args.rounds
    );
    print_side_by_side(&summaries);
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir)?;
        plot::designs(&format!("{dir}/peer-designs.svg"), &summaries)?;
    }
    drop(server);

    if !args.no_cluster {
        eprintln!("scaling on a three-primary Redis Cluster");
        let scaled = cluster::run(&crowd, args.cluster_rounds, args.concurrency).await?;
        print_scaling(&scaled);
        if let Some(dir) = &args.plots {
            plot::scaling(&format!("{dir}/cluster-scaling.svg"), &scaled)?;
        }
    }
    Ok(())
}

fn print_side_by_side(summaries: &[Summary]) {
    println!(
        "| design | rounds | attempts/s | selling phase attempts/s | p50 µs | p99 µs | p99.9 µs | oversold | unsold at the end | turned away while stock left | over limit | sold twice on retry | left in store | answers: sold out / replayed / limit / gave up |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in summaries {
        let m = &s.median;
        println!(
            "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} |",
            m.design,
            s.rounds,
            m.per_sec(),
            m.selling_per_sec.map_or("-".into(), |r| format!("{r:.0}")),
            m.micros(0.5),
            m.micros(0.99),
            m.micros(0.999),
            s.worst.oversold,
            s.worst.unsold,
            s.worst.false_sold_outs,
            s.worst.limit_violations,
            s.worst.duplicate_grants,
            m.left_in_store,
            m.sold_out,
            m.replayed,
            m.limit_reached,
            m.gave_up
        );
    }
    let fastest_correct = summaries
        .iter()
        .filter(|s| s.worst.total() == 0)
        .max_by(|a, b| a.median.per_sec().total_cmp(&b.median.per_sec()));
    let fastest = summaries
        .iter()
        .max_by(|a, b| a.median.per_sec().total_cmp(&b.median.per_sec()));
    for s in summaries.iter().filter(|s| s.median.design.starts_with("ours")) {
        if let Some(f) = fastest_correct {
            println!(
                "{} / fastest design without a correctness failure ({}): {:.2}",
                s.median.design,
                f.median.design,
                s.median.per_sec() / f.median.per_sec()
            );
        }
        if let Some(f) = fastest {
            println!(
                "{} / fastest design ({}): {:.2}",
                s.median.design,
                f.median.design,
                s.median.per_sec() / f.median.per_sec()
            );
        }
    }
}

fn print_scaling(scaled: &[cluster::Scaled]) {
    println!("| configuration | attempts/s | p99 µs | granted | CPU ms per run, node 1 / 2 / 3 |");
    println!("|---|---:|---:|---:|---|");
    for s in scaled {
        let cpu: Vec<String> = s.node_cpu.iter().map(|d| d.as_millis().to_string()).collect();
        println!(
            "| {} | {:.0} | {:.0} | {} | {} |",
            s.label,
            s.summary.median.per_sec(),
            s.summary.median.micros(0.99),
            s.summary.median.granted_units,
            cpu.join(" / ")
        );
    }
    let single = scaled.iter().find(|s| s.shards.is_none());
    if let Some(single) = single {
        for s in scaled.iter().filter(|s| s.shards.is_some()) {
            println!(
                "{} / single counter: {:.2}",
                s.label,
                s.summary.median.per_sec() / single.summary.median.per_sec()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bench's claims, on a small crowd and a real redis-server: ours sells the whole
    /// stock with no failure in any column, while the single counter, with no per-buyer record,
    /// sells retries twice and lets buyers past the limit (and never oversells).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ours_has_no_correctness_failure_where_a_counter_without_buyer_records_has_some() {
        let crowd = Crowd::draw(CrowdSpec {
            buyers: 2_000,
            stock: 200,
            per_user_limit: 2,
            two_unit_share: 0.2,
            retry_share: 0.3,
            greedy_share: 0.2,
            seed: 1,
        });
        let server = RedisServer::start();
        let conn = server.connection().await;
        let designs: Vec<Arc<dyn Design>> = vec![
            Arc::new(SingleCounter::new(conn.clone())),
            Arc::new(Ours::new(
                RedisStockEngine::new(conn.clone(), RedisStockConfig::default()),
                "ours",
                4,
            )
            .unwrap()),
        ];
        let summaries = rounds::alternate(&crowd, &designs, 1, 16, "test").await.unwrap();
        let (counter, ours) = (&summaries[0], &summaries[1]);

        assert_eq!(ours.worst.total(), 0, "{:?}", ours.worst);
        assert_eq!(ours.median.granted_units, 200);
        assert_eq!(ours.median.left_in_store, 0);
        assert!(ours.median.replayed > 0 && ours.median.limit_reached > 0);

        assert_eq!(counter.worst.oversold, 0);
        assert_eq!(counter.median.left_in_store, 0);
        assert!(counter.worst.duplicate_grants > 0, "{:?}", counter.worst);
        assert!(counter.worst.limit_violations > 0, "{:?}", counter.worst);
    }
}
