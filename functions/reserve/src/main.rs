//! reserve: `POST /sales/{saleId}/reservations`. Wiring only; the flow is
//! `flashsale_core::reservation::reserve`. Everything here runs once per cold start.

use std::time::Duration;

use flashsale_core::domain::SystemClock;
use flashsale_core::rate_limit::redis::RedisRateLimiter;
use flashsale_core::reservation::dynamo::DynamoReservationStore;
use flashsale_core::reservation::http;
use flashsale_core::reservation::reserve::{RatePolicies, ReserveService};
use flashsale_core::sale::cached::CachedSaleCatalog;
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::repair::sqs::SqsRepairRequests;
use flashsale_core::stock::repair::Debounced;
use flashsale_core::stock::{SoldOutCache, SoldOutCacheConfig};
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use flashsale_core::{config, observability, store};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    let redis = RedisConnection::connect(&RedisSettings::from_env()?).await?;
    let aws = store::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    let engine = RedisStockEngine::new(redis.clone(), RedisStockConfig::from_env()?);
    if let Err(error) = engine.preload_scripts().await {
        tracing::warn!(%error, "could not preload scripts; they load on first use");
    }
    let sold_out_window = Duration::from_millis(config::parsed_or("SOLD_OUT_CACHE_MS", 500)?);
    let service = ReserveService {
        stock: SoldOutCache::new(
            engine,
            SystemClock,
            SoldOutCacheConfig {
                window: sold_out_window,
            },
        ),
        limiter: RedisRateLimiter::new(redis),
        catalog: CachedSaleCatalog::new(
            DynamoSaleCatalog::new(dynamo.clone(), config::required("SALES_TABLE")?),
            SystemClock,
            Duration::from_secs(1),
        ),
        store: DynamoReservationStore::new(dynamo, config::required("RESERVATIONS_TABLE")?),
        clock: SystemClock,
        repairs: Debounced::new(
            SqsRepairRequests::new(
                aws_sdk_sqs::Client::new(&aws),
                config::required("REPAIR_QUEUE_URL")?,
            ),
            Debounced::<SqsRepairRequests>::DEFAULT_WINDOW,
        ),
        policies: RatePolicies::from_env()?,
    };
    let service = &service;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(http::reserve(service, &request).await)
    }))
    .await
}
