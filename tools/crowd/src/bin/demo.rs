//! demo: one flash sale against the deployed API, watched live, ending with its ledger.
//!
//! ```text
//! demo [--scenario FILE] [--report FILE] [--json FILE] [--quiet]
//! demo --api-url URL --outputs FILE --token-command CMD [--stage S] ...   (a stage on AWS)
//! ```
//! Locally (`./dev demo`), the stack `./dev up` deployed on LocalStack. Exit status 0 when the
//! ledger passes every check and every behaviour ended as it should, 1 otherwise.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use crowd::api::Api;
use crowd::http::Http;
use crowd::recorder::{latencies, Recorder};
use crowd::report::{self, RunRecord};
use crowd::sale_run::{new_sale_id, open_sale, settle, StockWatch};
use crowd::scenario::Scenario;
use crowd::summary::by_behaviour;
use crowd::target::{repo_root, Target};
use crowd::tokens::TokenSource;
use crowd::{crowd as run_crowd, progress};

#[derive(Parser)]
#[command(about = "Runs one flash sale against the deployed API and proves its ledger")]
struct Args {
    /// Scenario file (TOML, see tools/crowd/scenarios/); default: the built-in demo drop.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Where to write the HTML report.
    #[arg(long, default_value = "target/demo/report.html")]
    report: PathBuf,
    /// Also write the run's figures as JSON here (for tests and scripts).
    #[arg(long)]
    json: Option<PathBuf>,
    /// No live progress bars: a line every few seconds instead (CI, logs).
    #[arg(long)]
    quiet: bool,
    /// A deployed stage's API URL (AWS); without it, the LocalStack deployment.
    #[arg(long, requires_all = ["outputs", "token_command"])]
    api_url: Option<String>,
    /// `cdk deploy --outputs-file` of that stage (table and function names).
    #[arg(long)]
    outputs: Option<PathBuf>,
    /// Prints one bearer token; `{user}` and `{role}` (buyer|admin) are substituted.
    #[arg(long)]
    token_command: Option<String>,
    /// Stage name (the stack is Flashsale-<stage>).
    #[arg(long, default_value = "dev")]
    stage: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenario = match &args.scenario {
        Some(path) => Scenario::from_file(path)?,
        None => Scenario::default_demo(),
    };
    let repo = repo_root();
    let (target, tokens) = match &args.api_url {
        Some(url) => (
            Target::aws(
                url,
                args.outputs.as_deref().context("--outputs")?,
                &args.stage,
            )?,
            TokenSource::Command(args.token_command.clone().context("--token-command")?),
        ),
        None => (
            Target::local(&repo, &args.stage)?,
            TokenSource::local(&repo.join(".local/jwt/private.pem"))?,
        ),
    };
    let http = Http::new()?;
    let recorder = Arc::new(Recorder::new(scenario.limits.max_requests));
    let api = Api::new(&target.api_url, http.clone(), Arc::clone(&recorder));
    let dynamodb = target.dynamodb().await;

    let sale = new_sale_id("demo");
    println!(
        "{}: {} units on {} shards, limit {} per buyer, holds {} s; {} buyers ({}% in the first {} s)",
        scenario.name,
        scenario.sale.stock,
        scenario.sale.shards,
        scenario.sale.per_user_limit,
        scenario.sale.hold_seconds,
        scenario.crowd.buyers,
        (scenario.crowd.burst_share * 100.0).round(),
        scenario.crowd.burst_seconds,
    );
    open_sale(&api, &tokens, &scenario, &sale).await?;
    println!("sale {sale} is open at {}", target.api_url);

    let started = tokio::time::Instant::now();
    let watch = target.redis_url.clone().map(|url| {
        StockWatch::start(
            url,
            false,
            sale.clone(),
            scenario.sale.shards,
            started,
            Duration::from_millis(500),
        )
    });
    let live = progress::Live::start(
        Arc::clone(&recorder),
        scenario.crowd.buyers as u64,
        scenario.sale.stock,
        watch.as_ref().map(|w| w.handle()),
        args.quiet,
    );
    let settle_timeout = Duration::from_secs(90);
    let reports = run_crowd::run(&api, &tokens, &scenario, &sale, &sale, settle_timeout).await?;
    let crowd_took = started.elapsed();
    live.finish(&format!(
        "crowd done in {:.1} s; settling (payments in flight, holds running out)...",
        crowd_took.as_secs_f64()
    ));

    let settled = settle(
        &target,
        &http,
        &dynamodb,
        &scenario,
        &sale,
        &crowd::summary::promises(&reports),
        true,
        Duration::from_secs(scenario.sale.hold_seconds + 180),
    )
    .await?;
    let stock_series = watch.map(StockWatch::stop).unwrap_or_default();
    let samples = recorder.samples();
    let behaviours = by_behaviour(&reports, scenario.sale.per_user_limit);
    let record = RunRecord {
        scenario: scenario.clone(),
        sale: sale.clone(),
        api_url: target.api_url.clone(),
        crowd_seconds: crowd_took.as_secs_f64(),
        settle_seconds: settled.took.as_secs_f64(),
        requests: recorder.counters.requests.load(Ordering::Relaxed),
        refusals: recorder.refusals(),
        latencies: latencies(&samples),
        behaviours,
        bots: crowd::summary::bot_figures(&reports),
        verdict: settled.verdict.clone(),
        ledger: settled.ledger.clone(),
        reports,
        samples,
        stock_series,
    };
    print!("{}", report::text(&record));
    report::write_html(&record, &args.report)?;
    println!("report: {}", args.report.display());
    if let Some(path) = &args.json {
        report::write_json(&record, path)?;
    }
    if record.passed() {
        Ok(())
    } else {
        std::process::exit(1);
    }
}
