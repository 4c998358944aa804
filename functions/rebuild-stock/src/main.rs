//! rebuild-stock: `POST /sales/{saleId}/stock/rebuild` (admin). Wiring only; the flow is
//! `flashsale_core::reconcile::rebuild`: pause the sale, recompute every shard from the durable
//! records, resume. Everything here runs once per cold start.

use flashsale_core::domain::SystemClock;
use flashsale_core::reconcile::dynamo::DynamoDurableRecords;
use flashsale_core::reconcile::http;
use flashsale_core::reconcile::rebuild::{RebuildConfig, StockRebuilder};
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use flashsale_core::{config, observability, store};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let redis = RedisConnection::connect(&RedisSettings::from_env(&env)?).await?;
    let dynamo = store::dynamo::client(&store::aws_config().await);
    let records = DynamoDurableRecords::new(
        dynamo.clone(),
        env.required("RESERVATIONS_TABLE")?,
        env.required("ORDERS_TABLE")?,
    );
    let catalog = DynamoSaleCatalog::new(dynamo, env.required("SALES_TABLE")?);
    let stock = RedisStockEngine::new(redis, RedisStockConfig::from_env(&env)?);
    let rebuilder = StockRebuilder {
        stock: &stock,
        records: &records,
        catalog: &catalog,
        clock: &SystemClock,
        config: RebuildConfig::from_env(&env)?,
    };
    let rebuilder = &rebuilder;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(http::rebuild_stock(rebuilder, &request).await)
    }))
    .await
}
