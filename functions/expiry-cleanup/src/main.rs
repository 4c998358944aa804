//! expiry-cleanup: the maintenance function, started two ways. Wiring only; the work is
//! `flashsale_core::sweep`.
//! - Every minute by an EventBridge rule (any payload but an SQS batch; `{}` works for a direct
//!   invoke): expire due PENDING reservations, then per sale rebuild lost or fenced stock or
//!   reconcile holds and stuck payments, all within a budget that ends well before the
//!   function's timeout. Returns the report as JSON.
//! - By the repair queue (an SQS event source): each message asks for one sale's stock to be
//!   rebuilt now (the reserve path met a fenced shard after a Redis failover). Failed messages
//!   are reported as batch item failures and come back; the sweep covers them anyway.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashsale_core::domain::SaleId;
use flashsale_core::domain::SystemClock;
use flashsale_core::expiry::dynamo::{DynamoExpiryStore, ExpiryWrites};
use flashsale_core::reconcile::dynamo::DynamoDurableRecords;
use flashsale_core::saga::dynamo::DynamoCheckoutRecords;
use flashsale_core::saga::recovery::SagaRecovery;
use flashsale_core::saga::sfn::StepFunctionsControl;
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::repair::RepairRequest;
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use flashsale_core::sweep::{Sweep, SweepConfig};
use flashsale_core::{config, observability, store};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde::Serialize;
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

/// SQS partial batch response: the ids of the messages to deliver again.
#[derive(Serialize)]
struct BatchResponse {
    #[serde(rename = "batchItemFailures")]
    batch_item_failures: Vec<ItemFailure>,
}

#[derive(Serialize)]
struct ItemFailure {
    #[serde(rename = "itemIdentifier")]
    item_identifier: String,
}

/// The repair requests of an SQS batch, or `None` when the event is not one.
fn repair_batch(event: &Value) -> Option<Vec<(String, Option<SaleId>)>> {
    let records = event.get("Records")?.as_array()?;
    if records
        .iter()
        .any(|r| r.get("eventSource").and_then(Value::as_str) != Some("aws:sqs"))
    {
        return None;
    }
    Some(
        records
            .iter()
            .map(|r| {
                let id = r
                    .get("messageId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let sale = r
                    .get("body")
                    .and_then(Value::as_str)
                    .and_then(|body| serde_json::from_str::<RepairRequest>(body).ok())
                    .and_then(|request| SaleId::parse(request.sale_id).ok());
                (id, sale)
            })
            .collect(),
    )
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let redis = RedisConnection::connect(&RedisSettings::from_env(&env)?).await?;
    let aws = store::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let reservations = env.required("RESERVATIONS_TABLE")?;
    let orders = env.required("ORDERS_TABLE")?;
    let expiry_store = DynamoExpiryStore::new(
        dynamo.clone(),
        reservations.clone(),
        ExpiryWrites::from_env(&env)?,
    );
    let records = DynamoDurableRecords::new(dynamo.clone(), reservations.clone(), orders.clone());
    let payments = SagaRecovery {
        records: DynamoCheckoutRecords::new(dynamo.clone(), reservations, orders),
        saga: StepFunctionsControl::new(
            aws_sdk_sfn::Client::new(&aws),
            env.required("SAGA_STATE_MACHINE_ARN")?,
        ),
    };
    // Not cached: the cleanup memoizes sales per run, and a rebuild must read the current total.
    let catalog = DynamoSaleCatalog::new(dynamo, env.required("SALES_TABLE")?);
    let stock = RedisStockEngine::new(redis, RedisStockConfig::from_env(&env)?);
    let cap = Duration::from_millis(env.parsed_or("EXPIRY_BUDGET_MS", 50_000)?);
    let sweep = Sweep {
        expiry_store: &expiry_store,
        stock: &stock,
        records: &records,
        catalog: &catalog,
        clock: &SystemClock,
        payments: &payments,
        config: SweepConfig::from_env(&env)?,
    };
    let sweep = &sweep;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        if let Some(batch) = repair_batch(&event.payload) {
            let mut failures = Vec::new();
            for (message_id, sale) in batch {
                let Some(sale) = sale else {
                    tracing::error!(message_id, "malformed repair request; dropped");
                    continue;
                };
                match sweep.rebuild_requested(&sale).await {
                    Ok(report) => tracing::info!(sale_id = %sale, rebuilt = report.is_some(), "repair request done"),
                    Err(error) => {
                        tracing::warn!(%error, sale_id = %sale, "repair request failed; it comes back");
                        failures.push(ItemFailure {
                            item_identifier: message_id,
                        });
                    }
                }
            }
            return Ok::<_, Error>(serde_json::to_value(BatchResponse {
                batch_item_failures: failures,
            })?);
        }
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
    fn an_sqs_batch_is_read_as_repair_requests_and_anything_else_is_a_sweep() {
        let batch = serde_json::json!({"Records": [
            {"eventSource": "aws:sqs", "messageId": "m1", "body": "{\"repair\":\"rebuild\",\"sale_id\":\"drop-1\"}"},
            {"eventSource": "aws:sqs", "messageId": "m2", "body": "not json"}
        ]});
        let requests = repair_batch(&batch).unwrap();
        assert_eq!(
            requests[0],
            ("m1".into(), Some(SaleId::parse("drop-1").unwrap()))
        );
        assert_eq!(requests[1], ("m2".into(), None));
        assert!(repair_batch(&serde_json::json!({})).is_none());
        assert!(repair_batch(&serde_json::json!({"source": "aws.events"})).is_none());
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
