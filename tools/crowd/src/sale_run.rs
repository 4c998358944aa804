//! One sale from open to verdict: open it, watch its stock while the crowd runs, let it settle,
//! read the ledger. The demo and every chaos fault are one `SaleRun` each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::time::Instant;

use crate::api::Api;
use crate::http::Http;
use crate::ledger::{read_levels, Ledger, Promises, Verdict};
use crate::scenario::Scenario;
use crate::target::Target;
use crate::tokens::TokenSource;

/// A new sale id for this run (`<prefix>-<yyyymmdd-hhmmss>-<random>`): a second run never
/// touches the first one's records.
pub fn new_sale_id(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:04x}",
        chrono::Utc::now().format("%Y%m%d-%H%M%S"),
        fastrand::u16(..)
    )
}

/// Opens the sale: `PUT /sales/{id}` as an admin, open from a minute ago for two hours.
pub async fn open_sale(
    api: &Api,
    tokens: &TokenSource,
    scenario: &Scenario,
    sale: &str,
) -> anyhow::Result<()> {
    let admin = tokens.token("crowd-admin", true, None).await?;
    let now = chrono::Utc::now();
    let s = &scenario.sale;
    let body = json!({
        "name": scenario.name,
        "total_stock": s.stock,
        "shards": s.shards,
        "per_user_limit": s.per_user_limit,
        "hold_seconds": s.hold_seconds,
        "price": { "amount_minor": s.price_minor, "currency": s.currency },
        "starts_at": (now - chrono::Duration::minutes(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "ends_at": (now + chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    api.put_sale(sale, &admin, &body).await
}

/// The sale's stock at one moment, as Redis holds it.
#[derive(Debug, Clone, Serialize)]
pub struct StockPoint {
    pub at_ms: u64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    /// Shards paused, fenced or missing (selling stopped there until a rebuild); every shard
    /// when Redis could not be read at all.
    pub unavailable_shards: u32,
    /// False when Redis could not be read at this tick.
    pub readable: bool,
}

/// Samples the sale's Redis levels every `every` until stopped. Reads the current primary
/// directly (asked of the local Sentinels), so a fault on the endpoint does not blind it; a
/// tick that cannot read anything records nothing.
pub struct StockWatch {
    points: Arc<Mutex<Vec<StockPoint>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The local Sentinels (localstack/env.sh) and the master name they watch.
pub const SENTINELS: [&str; 3] = [
    "redis://127.0.0.1:26390",
    "redis://127.0.0.1:26391",
    "redis://127.0.0.1:26392",
];
pub const SENTINEL_MASTER: &str = "fs";

/// The primary's URL as the Sentinels see it now, if any answers.
pub async fn sentinel_primary() -> Option<String> {
    for url in SENTINELS {
        let Ok(client) = redis::Client::open(url) else {
            continue;
        };
        let Ok(Ok(mut conn)) = tokio::time::timeout(
            Duration::from_millis(500),
            client.get_multiplexed_async_connection(),
        )
        .await
        else {
            continue;
        };
        let answer = tokio::time::timeout(
            Duration::from_millis(500),
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(SENTINEL_MASTER)
                .query_async::<Option<(String, u16)>>(&mut conn),
        )
        .await;
        if let Ok(Ok(Some((host, port)))) = answer {
            return Some(format!("redis://{host}:{port}"));
        }
    }
    None
}

impl StockWatch {
    /// `fallback_url` is read when no Sentinel answers; with `cluster`, it is a cluster node and
    /// read as the cluster (the Sentinels are not asked).
    pub fn start(
        fallback_url: String,
        cluster: bool,
        sale: String,
        shards: u16,
        started: Instant,
        every: Duration,
    ) -> Self {
        let points: Arc<Mutex<Vec<StockPoint>>> = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&points);
        let task = tokio::spawn(async move {
            loop {
                let url = if cluster {
                    fallback_url.clone()
                } else {
                    sentinel_primary()
                        .await
                        .unwrap_or_else(|| fallback_url.clone())
                };
                let read = tokio::time::timeout(
                    Duration::from_secs(2),
                    read_levels(&url, cluster, &sale, shards),
                )
                .await;
                let point = match read {
                    Ok(Ok(l)) => StockPoint {
                        at_ms: started.elapsed().as_millis() as u64,
                        available: l.available,
                        held: l.held,
                        sold: l.sold,
                        unavailable_shards: l.unavailable_shards,
                        readable: true,
                    },
                    // Redis could not be read: selling from it could not have happened either;
                    // count every shard as unavailable (the last levels are carried on).
                    _ => {
                        let last = sink
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .last()
                            .cloned();
                        StockPoint {
                            at_ms: started.elapsed().as_millis() as u64,
                            available: last.as_ref().map_or(0, |p| p.available),
                            held: last.as_ref().map_or(0, |p| p.held),
                            sold: last.as_ref().map_or(0, |p| p.sold),
                            unavailable_shards: u32::from(shards),
                            readable: false,
                        }
                    }
                };
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(point);
                tokio::time::sleep(every).await;
            }
        });
        Self { points, task }
    }

    /// The live series (the progress display reads the last point).
    pub fn handle(&self) -> Arc<Mutex<Vec<StockPoint>>> {
        Arc::clone(&self.points)
    }

    pub fn points(&self) -> Vec<StockPoint> {
        self.points
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stop(self) -> Vec<StockPoint> {
        self.task.abort();
        self.points()
    }
}

/// The longest stretch (from `from_ms` on) during which some shard of the sale was paused,
/// fenced or missing, ending at the first healthy point after it; None if none was seen.
pub fn longest_pause(points: &[StockPoint], from_ms: u64) -> Option<Duration> {
    let mut longest: Option<u64> = None;
    let mut since: Option<u64> = None;
    for p in points.iter().filter(|p| p.at_ms >= from_ms) {
        match (p.unavailable_shards > 0, since) {
            (true, None) => since = Some(p.at_ms),
            (false, Some(s)) => {
                longest = Some(longest.unwrap_or(0).max(p.at_ms - s));
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(last)) = (since, points.last()) {
        longest = Some(longest.unwrap_or(0).max(last.at_ms.saturating_sub(s)));
    }
    longest.map(Duration::from_millis)
}

/// How settling went.
pub struct Settled {
    pub ledger: Ledger,
    pub verdict: Verdict,
    /// From the call until the verdict passed (or the timeout).
    pub took: Duration,
    pub cleanups: u32,
}

/// Waits until the sale is quiescent and its ledger passes, or `timeout`: payments in flight
/// finish (records and the provider's charges), expired holds are released. With
/// `until_expired`, also waits until every PENDING hold has run out and been released (the demo
/// shows the expiries).
///
/// Locally it runs the expiry cleanup (the sweep) itself: at once when a hold is overdue, and
/// every 15 s while the ledger does not pass, instead of waiting for its schedule's minute. So a
/// "settled after" figure is up to 45 s shorter than the schedule alone would give; the
/// schedule itself is tested by `e2e/test_expiry.py`. On AWS it only waits.
pub async fn settle(
    target: &Target,
    http: &Http,
    dynamodb: &aws_sdk_dynamodb::Client,
    scenario: &Scenario,
    sale: &str,
    promises: &Promises,
    until_expired: bool,
    timeout: Duration,
) -> anyhow::Result<Settled> {
    let started = Instant::now();
    let mut cleanups = 0;
    let mut last_cleanup = Instant::now() - Duration::from_secs(60);
    loop {
        let ledger = Ledger::read(
            target,
            dynamodb,
            http,
            sale,
            scenario.sale.shards,
            scenario.sale.stock,
            scenario.sale.per_user_limit,
            promises,
        )
        .await?;
        let now = chrono::Utc::now().timestamp_millis();
        let processing = ledger.count("PAYMENT_PROCESSING") + ledger.charges_in_flight();
        let pending: Vec<i64> = ledger
            .reservations
            .iter()
            .filter(|r| r.status == "PENDING")
            .map(|r| r.expires_at_ms)
            .collect();
        let overdue = pending.iter().any(|e| *e <= now);
        let waiting_for_expiry = until_expired && !pending.is_empty();
        let verdict = ledger.verdict();
        let quiet = processing == 0 && !overdue && !waiting_for_expiry;
        if (quiet && verdict.pass) || started.elapsed() >= timeout {
            return Ok(Settled {
                ledger,
                verdict,
                took: started.elapsed(),
                cleanups,
            });
        }
        if overdue && target.local && last_cleanup.elapsed() >= Duration::from_secs(3) {
            target.run_expiry_cleanup(http).await?;
            cleanups += 1;
            last_cleanup = Instant::now();
            continue;
        }
        // Quiet but not consistent: what is left is the sweep's job (orphan holds after their
        // grace, a stuck payment's saga, a fenced shard). Locally, run it every 15 s rather than
        // wait for the minute's schedule.
        if quiet
            && !verdict.pass
            && target.local
            && last_cleanup.elapsed() >= Duration::from_secs(15)
        {
            target.run_expiry_cleanup(http).await?;
            cleanups += 1;
            last_cleanup = Instant::now();
            continue;
        }
        let next_expiry = pending.iter().copied().filter(|e| *e > now).min();
        let pause = match next_expiry {
            Some(e) if waiting_for_expiry && processing == 0 => {
                Duration::from_millis((e - now + 500).clamp(500, 5_000) as u64)
            }
            _ => Duration::from_secs(2),
        };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: u64, unavailable_shards: u32) -> StockPoint {
        StockPoint {
            at_ms,
            available: 0,
            held: 0,
            sold: 0,
            unavailable_shards,
            readable: true,
        }
    }

    #[test]
    fn the_longest_pause_runs_to_the_first_healthy_point() {
        let points = vec![
            point(0, 0),
            point(500, 1),
            point(1000, 2),
            point(1800, 0),
            point(2000, 1),
            point(2200, 0),
        ];
        assert_eq!(longest_pause(&points, 0), Some(Duration::from_millis(1300)));
        assert_eq!(
            longest_pause(&points, 1900),
            Some(Duration::from_millis(200))
        );
        assert_eq!(longest_pause(&points[..1], 0), None);
        assert_eq!(
            longest_pause(&[point(0, 1), point(700, 1)], 0),
            Some(Duration::from_millis(700))
        );
    }

    #[test]
    fn sale_ids_are_new_each_run_and_valid() {
        let a = new_sale_id("demo");
        assert!(a.starts_with("demo-"));
        flashsale_core::domain::SaleId::parse(&a).unwrap();
    }
}
