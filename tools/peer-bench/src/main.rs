//! peer-bench: our stock engine side by side with the designs teams use instead, on the same
//! crowd, in one run; then shard scaling on a real three-primary Redis Cluster. It starts its
//! own redis-server processes on 127.0.0.1 and stops them; the DynamoDB design needs LocalStack
//! (`localstack/env.sh start`) or is skipped with `--no-dynamo`.
//!
//! Usage (BENCHMARKS.md has the figures):
//!   cargo run --release -p peer-bench -- [--buyers N] [--stock N] [--rounds R] [--concurrency C]
//!       [--shards S] [--no-dynamo] [--no-cluster] [--plots DIR]
//!   cargo run --release -p peer-bench -- --costs   (where Redis's time goes; see costs.rs)
//!
//! Two runs of the same buyers: the sell-out crowd (a stock much smaller than the demand) and
//! selling only (stock for every request, so every attempt does the design's selling work).
//! Columns: attempts/s and latency of the median round (rounds alternate the order of the
//! designs); the correctness columns are the worst round: units oversold, units left unsold
//! after the whole crowd asked and went, refusals while units were left (false sold-outs, a
//! lower bound), buyers above the per-user limit, resends sold twice, resends misanswered.

mod cluster;
mod costs;
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
use crate::designs::counter_with_records::CounterWithRecords;
use crate::designs::decr_incr::DecrIncr;
use crate::designs::dynamo_conditional::DynamoConditional;
use crate::designs::ours::Ours;
use crate::designs::single_counter::SingleCounter;
use crate::designs::watch_multi::{WatchMulti, UNTIL_IT_WINS};
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
    /// Only measure where Redis's time goes: CPU per attempt of ours and of the fastest peer
    /// without a failure, and the cost of each Redis call of their selling steps.
    #[arg(long)]
    costs: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.rounds >= 1 && args.dynamo_rounds >= 1 && args.cluster_rounds >= 1,
        "rounds must be >= 1"
    );
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
    // The same buyers with stock for every request they make: nothing sells out, every
    // attempt does the design's selling work.
    let selling = crowd
        .with_stock(2 * crowd.demand() + u64::from(args.buyers) * u64::from(args.per_user_limit));

    if args.costs {
        return costs::run(&selling, args.concurrency, args.shards).await;
    }

    let server = RedisServer::start();
    let conn = server.connection().await;
    let engine = || RedisStockEngine::new(conn.clone(), RedisStockConfig::default());
    engine().preload_scripts().await?;
    let redis_designs: Vec<Arc<dyn Design>> = vec![
        Arc::new(SingleCounter::new(conn.clone())),
        Arc::new(CounterWithRecords::new(conn.clone(), args.per_user_limit)),
        Arc::new(DecrIncr::new(conn.clone())),
        Arc::new(WatchMulti::connect(&server.url(), args.concurrency, args.watch_tries).await?),
        Arc::new(WatchMulti::connect(&server.url(), args.concurrency, UNTIL_IT_WINS).await?),
        Arc::new(Buckets::new(conn.clone(), u32::from(args.shards))),
        Arc::new(Ours::new(vec![engine()], "ours", args.shards)?),
        // One sold-out cache per caller: one per Lambda instance, as the function runs it.
        Arc::new(Ours::new(
            (0..args.concurrency)
                .map(|_| SoldOutCache::new(engine(), SystemClock, SoldOutCacheConfig::default()))
                .collect(),
            "ours + sold-out cache",
            args.shards,
        )?),
    ];
    eprintln!("side by side on redis-server 127.0.0.1:{}", server.port());
    let mut sell_out = rounds::alternate(
        &crowd,
        &redis_designs,
        args.rounds,
        args.concurrency,
        "side",
    )
    .await?;
    let selling_only = rounds::alternate(
        &selling,
        &redis_designs,
        args.rounds,
        args.concurrency,
        "selling",
    )
    .await?;

    if !args.no_dynamo {
        sell_out.extend(dynamo_rounds(&crowd, &args).await?);
    }

    println!(
        "crowd: {} buyers asking for {} units of {} (limit {} per buyer; {:.0} % ask for 2, {:.0} % \
         resend (half at once, half after the answer), {:.0} % ask again for {}), {} concurrent \
         callers on one multiplexed connection (WATCH/MULTI: one connection each), {} \
         shards/buckets; Redis designs: median of {} alternating rounds",
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
    println!("\n## The sell-out crowd ({} units)\n", args.stock);
    print_sell_out(&sell_out);
    println!(
        "\n## Selling only: the same crowd, stock for every request ({} units)\n",
        selling.spec.stock
    );
    print_selling(&selling_only);
    print_goal(&sell_out, &selling_only);
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir)?;
        plot::designs(&format!("{dir}/peer-designs.svg"), &sell_out, &selling_only)?;
    }
    drop(server);

    if !args.no_cluster {
        eprintln!("scaling on a three-primary Redis Cluster");
        let scaled = cluster::run(&selling, args.cluster_rounds, args.concurrency).await?;
        println!("\n## Selling only on a three-primary Redis Cluster\n");
        print_scaling(&scaled);
        if let Some(dir) = &args.plots {
            plot::scaling(&format!("{dir}/cluster-scaling.svg"), &scaled)?;
        }
    }
    Ok(())
}

/// The DynamoDB design's rounds on a table of its own; stale tables of killed runs are
/// dropped first, and the table is dropped after (a failed drop is reported, not fatal).
async fn dynamo_rounds(crowd: &Crowd, args: &Args) -> anyhow::Result<Vec<Summary>> {
    let client = testkit::dynamo::localstack_client().await;
    let unreachable = |e: &dyn std::fmt::Display| {
        anyhow::anyhow!(
            "the DynamoDB design needs LocalStack at 127.0.0.1:4566 (localstack/env.sh start), \
             or pass --no-dynamo: {e}"
        )
    };
    DynamoConditional::drop_stale(&client)
        .await
        .map_err(|e| unreachable(&e))?;
    let dynamo = Arc::new(
        DynamoConditional::create(client)
            .await
            .map_err(|e| unreachable(&e))?,
    );
    let designs: Vec<Arc<dyn Design>> = vec![dynamo.clone()];
    let result = rounds::alternate(
        crowd,
        &designs,
        args.dynamo_rounds,
        args.concurrency,
        "dynamo",
    )
    .await;
    if let Err(error) = dynamo.delete().await {
        eprintln!("warning: could not drop the bench table: {error}");
    }
    result
}

fn print_sell_out(summaries: &[Summary]) {
    println!(
        "| design | rounds | attempts/s | run s | p50 µs | p99 µs | p99.9 µs | oversold | unsold at the end | refusals with stock left | over the limit | sold twice on resend | resends misanswered | answers: sold out / insufficient / replayed / limit / gave up |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for s in summaries {
        let m = &s.median;
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} / {} / {} / {} / {} |",
            m.design,
            s.rounds,
            m.per_sec(),
            m.elapsed.as_secs_f64(),
            m.micros(0.5),
            m.micros(0.99),
            m.micros(0.999),
            s.worst.oversold,
            s.worst.unsold,
            s.worst.refusals_with_stock_left,
            s.worst.limit_violations,
            s.worst.duplicate_grants,
            s.worst.misanswered_resends,
            m.sold_out,
            m.insufficient,
            m.replayed,
            m.limit_reached,
            m.gave_up
        );
    }
}

fn print_selling(summaries: &[Summary]) {
    println!(
        "| design | rounds | attempts/s | run s | p50 µs | p99 µs | p99.9 µs | oversold | over the limit | sold twice on resend | resends misanswered |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in summaries {
        let m = &s.median;
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} |",
            m.design,
            s.rounds,
            m.per_sec(),
            m.elapsed.as_secs_f64(),
            m.micros(0.5),
            m.micros(0.99),
            m.micros(0.999),
            s.worst.oversold,
            s.worst.limit_violations,
            s.worst.duplicate_grants,
            s.worst.misanswered_resends
        );
    }
}

/// The goal: ours within 10 % of the fastest *peer* with no correctness failure.
fn print_goal(sell_out: &[Summary], selling: &[Summary]) {
    let is_ours = |s: &&Summary| s.median.design.starts_with("ours");
    let fastest_clean_peer = |set: &[Summary], clean: fn(&Summary) -> bool| {
        set.iter()
            .filter(|s| !is_ours(s) && clean(s))
            .max_by(|a, b| a.median.per_sec().total_cmp(&b.median.per_sec()))
            .map(|s| (s.median.design, s.median.per_sec()))
    };
    for (phase, set, clean) in [
        (
            "sell-out crowd",
            sell_out,
            (|s: &Summary| s.worst.total() == 0) as fn(&Summary) -> bool,
        ),
        ("selling only", selling, |s: &Summary| {
            s.worst.record_failures() == 0
        }),
    ] {
        let Some((peer, rate)) = fastest_clean_peer(set, clean) else {
            println!("{phase}: no peer without a correctness failure");
            continue;
        };
        for s in set.iter().filter(is_ours) {
            println!(
                "{phase}: {} / {peer} (the fastest peer without a failure): {:.2}",
                s.median.design,
                s.median.per_sec() / rate
            );
        }
    }
}

fn print_scaling(scaled: &[cluster::Scaled]) {
    println!("| configuration | attempts/s | p99 µs | nodes holding the sale's keys | CPU ms per run, busiest / middle / least node | oversold | over the limit | sold twice on resend | resends misanswered |");
    println!("|---|---:|---:|---|---|---:|---:|---:|---:|");
    for s in scaled {
        let cpu: Vec<String> = s
            .node_cpu
            .iter()
            .map(|d| d.as_millis().to_string())
            .collect();
        println!(
            "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
            s.label,
            s.summary.median.per_sec(),
            s.summary.median.micros(0.99),
            s.nodes_used,
            cpu.join(" / "),
            s.summary.worst.oversold,
            s.summary.worst.limit_violations,
            s.summary.worst.duplicate_grants,
            s.summary.worst.misanswered_resends
        );
    }
    if let Some(single) = scaled.iter().find(|s| s.shards.is_none()) {
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

    /// The bench's claims, on a small crowd and a real redis-server: ours and the single
    /// counter with buyer records sell the whole stock with no failure in any column, while
    /// the single counter without them sells resends twice and lets buyers past the limit
    /// (and never oversells).
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
            Arc::new(CounterWithRecords::new(conn.clone(), 2)),
            Arc::new(
                Ours::new(
                    vec![RedisStockEngine::new(
                        conn.clone(),
                        RedisStockConfig::default(),
                    )],
                    "ours",
                    4,
                )
                .unwrap(),
            ),
        ];
        let summaries = rounds::alternate(&crowd, &designs, 1, 16, "test")
            .await
            .unwrap();
        let (counter, with_records, ours) = (&summaries[0], &summaries[1], &summaries[2]);

        assert_eq!(ours.worst.total(), 0, "{:?}", ours.worst);
        assert_eq!(ours.median.granted_units, 200);
        assert_eq!(ours.median.left_in_store, 0);
        assert!(ours.median.replayed > 0 && ours.median.limit_reached > 0);

        // The single counter with buyer records has none either: the bar ours is held to.
        assert_eq!(with_records.worst.total(), 0, "{:?}", with_records.worst);
        assert_eq!(with_records.median.granted_units, 200);

        assert_eq!(counter.worst.oversold, 0);
        assert_eq!(counter.median.left_in_store, 0);
        assert!(counter.worst.duplicate_grants > 0, "{:?}", counter.worst);
        assert!(counter.worst.limit_violations > 0, "{:?}", counter.worst);
    }
}
