//! waiting-room: `POST /sales/{saleId}/queue` (join, behind the bot defence) and
//! `GET /sales/{saleId}/queue` (the public, cacheable status). Wiring only; the room is
//! `flashsale_core::waiting_room`. Everything here runs once per cold start.

use std::time::Duration;

use flashsale_core::domain::{SaleId, SystemClock};
use flashsale_core::http::request::path_param;
use flashsale_core::http::Problem;
use flashsale_core::rate_limit::redis::RedisRateLimiter;
use flashsale_core::sale::cached::CachedSaleCatalog;
use flashsale_core::sale::dynamo::DynamoSaleCatalog;
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use flashsale_core::waiting_room::http;
use flashsale_core::waiting_room::redis::RedisQueueStore;
use flashsale_core::waiting_room::room::WaitingRoom;
use flashsale_core::waiting_room::ticket::TicketKey;
use flashsale_core::{config, observability, store};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let redis = RedisConnection::connect(&RedisSettings::from_env(&env)?).await?;
    let queue = RedisQueueStore::new(redis.clone());
    if let Err(error) = queue.preload_script().await {
        tracing::warn!(%error, "could not preload the queue script; it loads on first use");
    }
    let room = WaitingRoom {
        store: queue,
        catalog: CachedSaleCatalog::new(
            DynamoSaleCatalog::new(
                aws_sdk_dynamodb::Client::new(&store::aws_config().await),
                env.required("SALES_TABLE")?,
            ),
            SystemClock,
            Duration::from_secs(1),
        ),
        key: TicketKey::from_env(&env)?,
        clock: SystemClock,
    };
    let limiter = RedisRateLimiter::new(redis.clone());
    let defence = flashsale_core::bot::config::redis_defence(&env, redis)?;
    let (room, limiter, defence) = (&room, &limiter, &defence);
    lambda_http::run(service_fn(move |request: Request| async move {
        let response = match *request.method() {
            Method::GET => http::status(room, &request).await,
            Method::POST => {
                // A request without a valid sale id goes on to the handler, which answers it.
                let sale = path_param(&request, "saleId").and_then(|raw| SaleId::parse(raw).ok());
                if let (Some(defence), Some(sale)) = (defence, sale) {
                    if let Err(refused) =
                        flashsale_core::bot::http::guard(defence, &request, &sale, "join").await
                    {
                        return Ok::<_, Error>(refused);
                    }
                }
                http::join(room, limiter, http::default_join_policy(), &request).await
            }
            _ => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "The queue takes POST (join) and GET (status).",
            )
            .into_response(),
        };
        Ok::<_, Error>(response)
    }))
    .await
}
