//! put-sale: `PUT /sales/{saleId}` (admin): create or update a sale, seeding DynamoDB and Redis.

use flashsale_core::domain::SystemClock;
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::sale::http;
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
    let catalog = DynamoSaleCatalog::new(
        store::dynamo::client(&store::aws_config().await),
        env.required("SALES_TABLE")?,
    );
    let stock = RedisStockEngine::new(redis, RedisStockConfig::from_env(&env)?);
    let (catalog, stock) = (&catalog, &stock);
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(http::put_sale(catalog, stock, &SystemClock, &request).await)
    }))
    .await
}
