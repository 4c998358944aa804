//! chaos: one sale per fault against the local stack, the fault injected mid-sale, each ending
//! with the ledger's verdict; prints (and with `--record`, writes into RELIABILITY.md) one table.
//!
//! ```text
//! chaos [--long] [--only NAME[,NAME...]] [--record FILE] [--json FILE]
//! ```
//! The short form (default) is what `./dev test` runs; `--long` (`./dev chaos`) runs bigger
//! crowds and longer faults. Every run is bounded (a request budget and a time limit per sale)
//! and puts every fault point back to normal at the end, even after an error. Exit status 1 if
//! any sale's ledger fails.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use crowd::api::Api;
use crowd::chaos::{ClusterStage, Fault, FaultPoints, Injected};
use crowd::crowd as run_crowd;
use crowd::http::Http;
use crowd::ledger::Verdict;
use crowd::recorder::{longest_unavailability, Recorder};
use crowd::sale_run::{longest_pause, new_sale_id, open_sale, settle, StockWatch};
use crowd::target::{repo_root, Target};
use crowd::tokens::TokenSource;
use serde::Serialize;

#[derive(Parser)]
#[command(about = "Runs a sale per fault against the local stack and proves each ledger")]
struct Args {
    /// Bigger crowds, longer faults (the recorded figures).
    #[arg(long)]
    long: bool,
    /// Only these faults (comma-separated names; see --list).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Print the fault names and stop.
    #[arg(long)]
    list: bool,
    /// Only put every fault point back to normal (and the functions back on the local Redis,
    /// after a run that died while they pointed at its cluster), then stop.
    #[arg(long)]
    heal: bool,
    /// Replace the table between the chaos markers of this file (RELIABILITY.md).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Write the rows as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
struct Row {
    fault: &'static str,
    requests: u64,
    reservations: usize,
    orders: usize,
    verdict: Verdict,
    longest_unavailable_s: f64,
    paused_s: Option<f64>,
    settled_after_heal_s: f64,
    injected: Injected,
    /// How the buyers' stories ended (outcome -> buyers).
    outcomes: std::collections::BTreeMap<String, u32>,
    /// Whether the fault provably happened (and what showed it), and whether the sale sold.
    took_effect: (bool, String),
    /// The row passes: the ledger passes, the fault took effect, and something was sold.
    pass: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.list {
        for f in Fault::ALL {
            println!("{}", f.name());
        }
        return Ok(());
    }
    let faults: Vec<Fault> = if args.only.is_empty() {
        Fault::ALL
            .into_iter()
            .filter(|f| args.long || f.in_short_form())
            .collect()
    } else {
        args.only
            .iter()
            .map(|n| {
                Fault::parse(n).ok_or_else(|| anyhow::anyhow!("unknown fault {n} (see --list)"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let repo = repo_root();
    let target = Target::local(&repo, "dev")?;
    let tokens = TokenSource::local(&repo.join(".local/jwt/private.pem"))?;
    let http = Http::new()?;
    let dynamodb = target.dynamodb().await;
    let mut points = FaultPoints {
        http: http.clone(),
        repo: repo.clone(),
        target: target.clone(),
        only_shard: None,
    };
    points.restore_redis_env().await?;
    if args.heal {
        return points.heal_all().await;
    }
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    let run = async {
        for fault in faults {
            points.heal_all().await?;
            println!("\n== {} ==", fault.name());
            let row = run_one(
                fault,
                args.long,
                &target,
                &tokens,
                &http,
                &dynamodb,
                &mut points,
            )
            .await;
            // Whatever happened, every fault point goes back to normal before the next sale.
            let healed = points.heal_all().await;
            let row = row?;
            healed?;
            println!("{}", row_line(&row));
            rows.push(row);
        }
        anyhow::Ok(())
    };
    tokio::select! {
        done = run => done?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("chaos: interrupted; putting every fault point back to normal");
            let heal = FaultPoints { http: http.clone(), repo: repo.clone(), target: target.clone(), only_shard: None };
            let _ = heal.heal_all().await;
            let _ = heal.restore_redis_env().await;
            std::process::exit(130);
        }
    }
    let table = table(&rows, args.long, started.elapsed());
    println!("\n{table}");
    if let Some(path) = &args.record {
        record(path, args.long, &table)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)?;
    }
    if rows.iter().all(|r| r.pass) {
        Ok(())
    } else {
        eprintln!("chaos: some ledgers failed (see the FAIL rows)");
        std::process::exit(1);
    }
}

async fn run_one(
    fault: Fault,
    long: bool,
    target: &Target,
    tokens: &TokenSource,
    http: &Http,
    dynamodb: &aws_sdk_dynamodb::Client,
    points: &mut FaultPoints,
) -> anyhow::Result<Row> {
    let sale = new_sale_id("chaos");
    if fault != Fault::ClusterPrimaryKilled {
        return run_sale(
            fault, long, target, tokens, http, dynamodb, points, &sale, None,
        )
        .await;
    }
    // The cluster fault: the functions go to a Redis Cluster for this sale, and come back.
    let mut stage = ClusterStage::start(http, &sale).await?;
    let mut on_cluster = target.clone();
    on_cluster.redis_url = Some(stage.seed_url.clone());
    on_cluster.redis_cluster = true;
    points.target = on_cluster.clone();
    points.only_shard = Some(0);
    let row = run_sale(
        fault,
        long,
        &on_cluster,
        tokens,
        http,
        dynamodb,
        points,
        &sale,
        Some(&mut stage),
    )
    .await;
    points.target = target.clone();
    points.only_shard = None;
    stage.restore(http).await?;
    row
}

#[allow(clippy::too_many_arguments)]
async fn run_sale(
    fault: Fault,
    long: bool,
    target: &Target,
    tokens: &TokenSource,
    http: &Http,
    dynamodb: &aws_sdk_dynamodb::Client,
    points: &FaultPoints,
    sale: &str,
    cluster: Option<&mut ClusterStage>,
) -> anyhow::Result<Row> {
    let scenario = fault.scenario(long);
    let recorder = Arc::new(Recorder::new(scenario.limits.max_requests));
    let api = Api::new(&target.api_url, http.clone(), Arc::clone(&recorder));
    open_sale(&api, tokens, &scenario, sale).await?;
    let opened = tokio::time::Instant::now();
    let watch = StockWatch::start(
        target
            .redis_url
            .clone()
            .unwrap_or_else(|| crowd::target::LOCAL_REDIS.into()),
        target.redis_cluster,
        sale.to_owned(),
        scenario.sale.shards,
        opened,
        Duration::from_millis(250),
    );
    let crowd = run_crowd::run(
        &api,
        tokens,
        &scenario,
        sale,
        sale,
        Duration::from_secs(120),
    );
    let injection = points.run(fault, long, opened, sale, dynamodb, cluster);
    tokio::pin!(crowd);
    tokio::pin!(injection);
    // Both run at once; a failed injection stops the run at once (returning drops the crowd),
    // rather than letting it run its full time under a half-set fault.
    let (mut injected, mut reports) = (None, None);
    while injected.is_none() || reports.is_none() {
        tokio::select! {
            i = &mut injection, if injected.is_none() => injected = Some(i?),
            r = &mut crowd, if reports.is_none() => reports = Some(r?),
        }
    }
    let (injected, reports) = injected
        .zip(reports)
        .ok_or_else(|| anyhow::anyhow!("the crowd or the injection did not finish"))?;
    let mut outcomes = std::collections::BTreeMap::new();
    for r in &reports {
        *outcomes
            .entry(crowd::summary::outcome_label(&r.outcome))
            .or_insert(0) += 1;
    }
    let crowd_end_ms = opened.elapsed().as_millis() as u64;
    points.heal_all().await?;
    let promises = crowd::summary::promises(&reports);
    let settled = settle(
        target,
        http,
        dynamodb,
        &scenario,
        sale,
        &promises,
        false,
        Duration::from_secs(300),
    )
    .await?;
    let points_seen = watch.stop();
    let samples = recorder.samples();
    let took_effect = evidence(fault, &injected, &samples, &outcomes);
    let pass = settled.verdict.pass && took_effect.0 && settled.verdict.figures.orders > 0;
    Ok(Row {
        fault: fault.name(),
        requests: recorder.counters.requests.load(Ordering::Relaxed),
        reservations: settled.verdict.figures.reservations,
        orders: settled.verdict.figures.orders,
        longest_unavailable_s: longest_unavailability(&samples).as_secs_f64(),
        paused_s: longest_pause(&points_seen, injected.at_ms).map(|d| d.as_secs_f64()),
        settled_after_heal_s: (crowd_end_ms.saturating_sub(injected.healed_ms)) as f64 / 1000.0
            + settled.took.as_secs_f64(),
        verdict: settled.verdict,
        injected,
        outcomes,
        took_effect,
        pass,
    })
}

/// Did the fault provably happen? Each fault's own trace: holds really lost, replies really
/// dropped, calls really faulted, reserves really refused or killed, both outcomes of the race.
fn evidence(
    fault: Fault,
    injected: &Injected,
    samples: &[crowd::recorder::Sample],
    outcomes: &std::collections::BTreeMap<String, u32>,
) -> (bool, String) {
    use crowd::recorder::Endpoint;
    let in_window = |s: &&crowd::recorder::Sample| {
        s.at_ms >= injected.at_ms && s.at_ms <= injected.healed_ms + 15_000
    };
    let refused_reserves = samples
        .iter()
        .filter(|s| s.endpoint == Endpoint::Reserve && !s.served())
        .filter(in_window)
        .count();
    let killed_reserves = samples
        .iter()
        .filter(|s| {
            s.endpoint == Endpoint::Reserve && matches!(s.status, None | Some(502) | Some(504))
        })
        .filter(in_window)
        .count();
    let faulted = injected.calls.map_or(0, |(_, f)| f);
    match fault {
        Fault::RedisPrimaryKilled | Fault::ClusterPrimaryKilled | Fault::RedisFlushed => {
            let lost = injected.holds_lost.unwrap_or(0);
            (lost > 0, format!("{lost} holds of recorded reservations gone from Redis after the fault"))
        }
        Fault::RedisRepliesDropped => {
            let dropped = injected.dropped_replies.unwrap_or(0);
            (dropped > 0, format!("{dropped} replies dropped after their command ran"))
        }
        Fault::RedisUnreachable => (
            refused_reserves > 0,
            format!("{refused_reserves} reserves refused or unanswered while Redis was unreachable"),
        ),
        Fault::DynamoDbThrottledAndFailing
        | Fault::DynamoDbAnswersLost
        | Fault::StepFunctionsFailing => (faulted > 0, format!("{faulted} calls faulted")),
        // Taking effect is the provider refusing calls; whether payments then fail (the
        // breaker opens) or are retried to success depends on how many hit the outage.
        Fault::ProviderDownSlowAndNoisy => {
            let failed = outcomes.get("payment ended FAILED").copied().unwrap_or(0);
            (
                faulted > 0,
                format!("{faulted} provider calls refused during the outage; {failed} payments ended FAILED"),
            )
        }
        Fault::LambdaKilledMidReserve => (
            faulted > 0 && killed_reserves > 0,
            format!("{faulted} reservation writes hung; {killed_reserves} reserves answered 502/504 or nothing (the function was killed)"),
        ),
        Fault::PayRacesExpiry => {
            let confirmed = outcomes.get("confirmed").copied().unwrap_or(0);
            let refused = outcomes.get("refused after expiry").copied().unwrap_or(0);
            (
                confirmed > 0 && refused > 0 && injected.cleanup_runs.unwrap_or(0) > 0,
                format!("{confirmed} paid in time, {refused} refused after the deadline, cleanup ran around it"),
            )
        }
    }
}

fn row_line(r: &Row) -> String {
    let f = &r.verdict.figures;
    let mut line = format!(
        "{}: {} requests, {} reservations, {} orders; oversold {} lost {} double charges {} stuck {}; unavailable {:.1} s; paused {}; settled {:.1} s after the fault; {}",
        r.fault,
        r.requests,
        r.reservations,
        r.orders,
        f.oversold,
        f.lost,
        f.double_charges,
        f.stuck,
        r.longest_unavailable_s,
        r.paused_s.map_or("-".into(), |p| format!("{p:.1} s")),
        r.settled_after_heal_s,
        if r.pass { "PASS" } else { "FAIL" }
    );
    line.push_str(&format!(
        "\n  fault {}: {}",
        if r.took_effect.0 {
            "took effect"
        } else {
            "DID NOT TAKE EFFECT"
        },
        r.took_effect.1
    ));
    if r.verdict.figures.orders == 0 {
        line.push_str("\n  FAIL nothing was sold");
    }
    for c in r.verdict.failures() {
        line.push_str(&format!("\n  FAIL {}: {}", c.name, c.detail));
    }
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, n)| format!("{k} {n}")).collect();
    line.push_str(&format!("\n  buyers: {}", outcomes.join(", ")));
    for n in &r.injected.notes {
        line.push_str(&format!("\n  note: {n}"));
    }
    line
}

fn table(rows: &[Row], long: bool, took: Duration) -> String {
    let mut out = format!(
        "| fault ({} form) | requests | reservations | orders | oversold | lost | double charges | stuck | holds lost in Redis (then repaired) | longest reserve unavailability | sale paused until verified | settled after the fault | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        if long { "long" } else { "short" }
    );
    for r in rows {
        let f = &r.verdict.figures;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} | {:.1} s | {} |\n",
            r.fault,
            r.requests,
            r.reservations,
            r.orders,
            f.oversold,
            f.lost,
            f.double_charges,
            f.stuck,
            r.injected.holds_lost.map_or("-".into(), |n| n.to_string()),
            r.longest_unavailable_s,
            r.paused_s.map_or("-".into(), |p| format!("{p:.1} s")),
            r.settled_after_heal_s,
            if r.pass { "PASS" } else { "FAIL" }
        ));
    }
    out.push_str(&format!(
        "\n{} faults in {:.0} s.\n",
        rows.len(),
        took.as_secs_f64()
    ));
    out
}

/// Replaces what lies between `<!-- chaos:<form>:start -->` and `<!-- chaos:<form>:end -->`.
fn record(path: &std::path::Path, long: bool, table: &str) -> anyhow::Result<()> {
    let form = if long { "long" } else { "short" };
    let (start, end) = (
        format!("<!-- chaos:{form}:start -->"),
        format!("<!-- chaos:{form}:end -->"),
    );
    let text = std::fs::read_to_string(path)?;
    let (Some(a), Some(b)) = (text.find(&start), text.find(&end)) else {
        anyhow::bail!("{} has no {start} ... {end} markers", path.display());
    };
    let updated = format!(
        "{}{start}\n{}\n{table}\n{}",
        &text[..a],
        format_args!(
            "Recorded {} with `cargo run -p crowd --bin chaos --{}`.",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
            if long {
                " --long --record RELIABILITY.md"
            } else {
                " --record RELIABILITY.md"
            }
        ),
        &text[b..]
    );
    std::fs::write(path, updated)?;
    Ok(())
}
