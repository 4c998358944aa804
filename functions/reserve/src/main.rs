//! reserve: `POST /sales/{saleId}/reservations`. Wiring only; the flow is
//! `flashsale_core::reservation::reserve`, behind the bot defence (`flashsale_core::bot`) and,
//! for sales with a waiting room, the queue ticket check (`flashsale_core::waiting_room`).
//! Everything here runs once per cold start.

use std::sync::Arc;
use std::time::Duration;

use flashsale_core::domain::{SaleId, SystemClock};
use flashsale_core::http::request::path_param;
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
use flashsale_core::waiting_room::redis::RedisQueueStore;
use flashsale_core::waiting_room::room::WaitingRoom;
use flashsale_core::waiting_room::ticket::TicketKey;
use flashsale_core::{config, observability, store};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let redis = RedisConnection::connect(&RedisSettings::from_env(&env)?).await?;
    let aws = store::aws_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&aws);
    // One 1 s cache of the sales, read by the waiting-room gate and the reserve service.
    let catalog = Arc::new(CachedSaleCatalog::new(
        DynamoSaleCatalog::new(dynamo.clone(), env.required("SALES_TABLE")?),
        SystemClock,
        Duration::from_secs(1),
    ));
    let engine = RedisStockEngine::new(redis.clone(), RedisStockConfig::from_env(&env)?);
    if let Err(error) = engine.preload_scripts().await {
        tracing::warn!(%error, "could not preload scripts; they load on first use");
    }
    let sold_out_window = Duration::from_millis(env.parsed_or("SOLD_OUT_CACHE_MS", 500)?);
    let service = ReserveService {
        stock: SoldOutCache::new(
            engine,
            SystemClock,
            SoldOutCacheConfig {
                window: sold_out_window,
            },
        ),
        limiter: RedisRateLimiter::new(redis.clone()),
        catalog: catalog.clone(),
        store: DynamoReservationStore::new(dynamo, env.required("RESERVATIONS_TABLE")?),
        clock: SystemClock,
        repairs: Debounced::new(
            SqsRepairRequests::new(
                aws_sdk_sqs::Client::new(&aws),
                env.required("REPAIR_QUEUE_URL")?,
            ),
            Debounced::<SqsRepairRequests>::DEFAULT_WINDOW,
        ),
        policies: RatePolicies::from_env(&env)?,
    };
    let defence = flashsale_core::bot::config::redis_defence(&env, redis.clone())?;
    let room = WaitingRoom {
        store: RedisQueueStore::new(redis.clone()),
        catalog,
        key: TicketKey::from_env(&env)?,
        clock: SystemClock,
    };
    let (service, defence, room) = (&service, &defence, &room);
    lambda_http::run(service_fn(move |request: Request| async move {
        // A request without a valid sale id goes on to the handler, which answers it.
        let sale = path_param(&request, "saleId").and_then(|raw| SaleId::parse(raw).ok());
        if let Some(sale) = sale {
            if let Some(defence) = defence {
                if let Err(refused) =
                    flashsale_core::bot::http::guard(defence, &request, &sale, "reserve").await
                {
                    return Ok::<_, Error>(refused);
                }
            }
            if let Err(refused) =
                flashsale_core::waiting_room::http::gate(room, &request, &sale).await
            {
                return Ok::<_, Error>(refused);
            }
        }
        Ok::<_, Error>(http::reserve(service, &request).await)
    }))
    .await
}
