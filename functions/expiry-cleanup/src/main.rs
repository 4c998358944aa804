//! expiry-cleanup: the sweep an EventBridge rule starts every minute (the payload is ignored;
//! `{}` works for a direct invoke). Wiring only; the work is `flashsale_core::reconcile::sweep`:
//! expire due PENDING reservations, then per sale rebuild lost stock or reconcile holds, all
//! within a budget that ends well before the function's timeout. Returns the report as JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashsale_core::domain::SystemClock;
use flashsale_core::expiry::dynamo::{DynamoExpiryStore, ExpiryWrites};
use flashsale_core::reconcile::dynamo::DynamoDurableRecords;
use flashsale_core::reconcile::sweep::{Sweep, SweepConfig};
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use flashsale_core::{config, observability, store};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

/// Kept free before the function's deadline: batches in flight when the budget ends still
/// finish (a few hundred milliseconds), and a rebuild started just before it is not cut.
const SAFETY_MARGIN: Duration = Duration::from_secs(5);

/// The time this invocation may use: until the Lambda deadline minus the margin, and at most
/// `EXPIRY_BUDGET_MS`.
fn budget(deadline_ms: u64, cap: Duration) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
        .saturating_sub(SAFETY_MARGIN)
        .min(cap)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    let redis = RedisConnection::connect(&RedisSettings::from_env()?).await?;
    let dynamo = store::dynamo::client().await;
    let reservations = config::required("RESERVATIONS_TABLE")?;
    let expiry_store = DynamoExpiryStore::new(
        dynamo.clone(),
        reservations.clone(),
        ExpiryWrites::from_env()?,
    );
    let records = DynamoDurableRecords::new(
        dynamo.clone(),
        reservations,
        config::required("ORDERS_TABLE")?,
    );
    // Not cached: the cleanup memoizes sales per run, and a rebuild must read the current total.
    let catalog = DynamoSaleCatalog::new(dynamo, config::required("SALES_TABLE")?);
    let stock = RedisStockEngine::new(redis, RedisStockConfig::default());
    let cap = Duration::from_millis(config::parsed_or("EXPIRY_BUDGET_MS", 50_000)?);
    let sweep = Sweep {
        expiry_store: &expiry_store,
        stock: &stock,
        records: &records,
        catalog: &catalog,
        clock: &SystemClock,
        config: SweepConfig::from_env()?,
    };
    let sweep = &sweep;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let budget = budget(event.context.deadline, cap);
        let report = sweep.run(budget).await;
        tracing::info!(
            expired = report.expiry.expired,
            rebuilt = report.rebuilt.len(),
            errors = report.errors.len(),
            more_remaining = report.more_remaining,
            elapsed_ms = report.elapsed_ms,
            "sweep done"
        );
        Ok::<_, Error>(serde_json::to_value(&report)?)
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_ms(from_now: u64) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + from_now
    }

    #[test]
    fn the_budget_ends_a_margin_before_the_deadline_and_never_exceeds_the_cap() {
        let cap = Duration::from_secs(50);
        assert_eq!(budget(in_ms(900_000), cap), cap);
        let near = budget(in_ms(20_000), cap);
        assert!(
            near <= Duration::from_secs(15) && near > Duration::from_secs(14),
            "{near:?}"
        );
        assert_eq!(budget(in_ms(3_000), cap), Duration::ZERO);
        assert_eq!(budget(0, cap), Duration::ZERO);
    }
}
