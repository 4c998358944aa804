//! health: `GET /health` (readiness: Redis and DynamoDB) and `GET /health/live` (liveness).
//! Wiring only; the logic is `flashsale_core::health`.

use std::time::Duration;

use flashsale_core::health::{self, DynamoTableProbe, Probe, RedisProbe};
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use flashsale_core::{config, observability, store};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let redis = RedisSettings::from_env(&env)?;
    let sales_table = env.required("SALES_TABLE")?;
    let timeout = Duration::from_millis(env.parsed_or("HEALTH_TIMEOUT_MS", 1_000)?);

    let probes: Vec<Box<dyn Probe>> = vec![
        Box::new(RedisProbe(RedisConnection::connect(&redis).await?)),
        Box::new(DynamoTableProbe {
            client: store::dynamo::client(&store::aws_config().await),
            table: sales_table,
            key_attribute: "sale_id",
        }),
    ];
    let probes = &probes;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(health::handle(probes, timeout, request).await)
    }))
    .await
}
