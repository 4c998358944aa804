//! saga-steps: the payment saga's task steps, invoked by the state machine
//! (statemachines/checkout-saga.asl.json) with `{"step": ..., "reservation_id": ...}`.
//! Wiring only; the steps are `flashsale_core::saga::steps`. Errors reach Step Functions as
//! `errorType` names the definition's Retry/Catch match.

use std::time::Duration;

use flashsale_core::domain::SystemClock;
use flashsale_core::payment::breaker::{BreakerConfig, BreakingProvider, RedisCircuitBreaker};
use flashsale_core::payment::stripe::{StripeConfig, StripeProvider};
use flashsale_core::saga::dynamo::DynamoCheckoutRecords;
use flashsale_core::saga::steps::{SagaSteps, StepError, StepInput};
use flashsale_core::sale::cached::CachedSaleCatalog;
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::repair::sqs::SqsRepairRequests;
use flashsale_core::stock::repair::Debounced;
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use flashsale_core::{config, observability, store};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let redis = RedisConnection::connect(&RedisSettings::from_env(&env)?).await?;
    let aws = store::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let provider = StripeProvider::new(StripeConfig::from_env(&env)?)?;
    let breaker = RedisCircuitBreaker::new(
        redis.clone(),
        "payment-provider",
        BreakerConfig::from_env(&env)?,
        SystemClock,
    )
    .map_err(|_| "invalid circuit breaker name")?;
    let steps = SagaSteps {
        records: DynamoCheckoutRecords::new(
            dynamo.clone(),
            env.required("RESERVATIONS_TABLE")?,
            env.required("ORDERS_TABLE")?,
        ),
        charges: BreakingProvider::new(provider.clone(), breaker),
        refunds: provider,
        stock: RedisStockEngine::new(redis, RedisStockConfig::from_env(&env)?),
        catalog: CachedSaleCatalog::new(
            DynamoSaleCatalog::new(dynamo, env.required("SALES_TABLE")?),
            SystemClock,
            Duration::from_secs(5),
        ),
        clock: SystemClock,
        repairs: Debounced::new(
            SqsRepairRequests::new(
                aws_sdk_sqs::Client::new(&aws),
                env.required("REPAIR_QUEUE_URL")?,
            ),
            Debounced::<SqsRepairRequests>::DEFAULT_WINDOW,
        ),
    };
    let steps = &steps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<StepInput>| async move {
        let step = event.payload.step;
        let result: Result<Value, StepError> = steps.run(event.payload).await;
        if let Err(error) = &result {
            tracing::warn!(step = step.as_str(), error_type = error.error_type, message = %error.message, "step failed");
        }
        result
    }))
    .await
}
