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
use crowd::chaos::{Fault, FaultPoints, Injected};
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
        Fault::ALL.to_vec()
    } else {
        args.only
            .iter()
            .map(|n| Fault::parse(n).ok_or_else(|| anyhow::anyhow!("unknown fault {n} (see --list)")))
            .collect::<anyhow::Result<_>>()?
    };
    let repo = repo_root();
    let target = Target::local(&repo, "dev")?;
    let tokens = TokenSource::local(&repo.join(".local/jwt/private.pem"))?;
    let http = Http::new()?;
    let dynamodb = target.dynamodb().await;
    let points = FaultPoints {
        http: http.clone(),
        repo: repo.clone(),
        target: target.clone(),
    };
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    for fault in faults {
        points.heal_all().await?;
        println!("\n== {} ==", fault.name());
        let row = run_one(fault, args.long, &target, &tokens, &http, &dynamodb, &points).await;
        // Whatever happened, every fault point goes back to normal before the next sale.
        let healed = points.heal_all().await;
        let row = row?;
        healed?;
        println!("{}", row_line(&row));
        rows.push(row);
    }
    let table = table(&rows, args.long, started.elapsed());
    println!("\n{table}");
    if let Some(path) = &args.record {
        record(path, args.long, &table)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&rows)?)?;
    }
    if rows.iter().all(|r| r.verdict.pass) {
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
    points: &FaultPoints,
) -> anyhow::Result<Row> {
    let scenario = fault.scenario(long);
    let recorder = Arc::new(Recorder::new(scenario.limits.max_requests));
    let api = Api::new(&target.api_url, http.clone(), Arc::clone(&recorder));
    let sale = new_sale_id("chaos");
    open_sale(&api, tokens, &scenario, &sale).await?;
    let opened = tokio::time::Instant::now();
    let watch = StockWatch::start(
        crowd::target::LOCAL_REDIS.into(),
        sale.clone(),
        scenario.sale.shards,
        opened,
        Duration::from_millis(250),
    );
    let injection = points.run(fault, long, opened, &sale, dynamodb);
    let crowd = run_crowd::run(&api, tokens, &scenario, &sale, &sale, Duration::from_secs(120));
    let (injected, reports) = tokio::join!(injection, crowd);
    let injected = injected?;
    let reports = reports?;
    let mut outcomes = std::collections::BTreeMap::new();
    for r in &reports {
        *outcomes.entry(crowd::summary::outcome_label(&r.outcome)).or_insert(0) += 1;
    }
    let crowd_end_ms = opened.elapsed().as_millis() as u64;
    points.heal_all().await?;
    let settled = settle(target, http, dynamodb, &scenario, &sale, false, Duration::from_secs(300)).await?;
    let points_seen = watch.stop();
    let samples = recorder.samples();
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
    })
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
        if r.verdict.pass { "PASS" } else { "FAIL" }
    );
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
        "| fault ({} form) | requests | reservations | orders | oversold | lost | double charges | stuck | acknowledged holds lost (repaired) | longest reserve unavailability | sale paused until verified | settled after the fault | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
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
            if r.verdict.pass { "PASS" } else { "FAIL" }
        ));
    }
    out.push_str(&format!("\n{} faults in {:.0} s.\n", rows.len(), took.as_secs_f64()));
    out
}

/// Replaces what lies between `<!-- chaos:<form>:start -->` and `<!-- chaos:<form>:end -->`.
fn record(path: &std::path::Path, long: bool, table: &str) -> anyhow::Result<()> {
    let form = if long { "long" } else { "short" };
    let (start, end) = (format!("<!-- chaos:{form}:start -->"), format!("<!-- chaos:{form}:end -->"));
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
            if long { " --long --record RELIABILITY.md" } else { " --record RELIABILITY.md" }
        ),
        &text[b..]
    );
    std::fs::write(path, updated)?;
    Ok(())
}
