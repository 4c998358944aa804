//! bot-blocks: `GET /admin/bot/blocks` and `DELETE /admin/bot/blocks?subject=...` (admin).
//! Wiring only; the handler is `flashsale_core::bot::admin`.

use flashsale_core::bot::admin;
use flashsale_core::bot::watchlist::redis::RedisWatchlist;
use flashsale_core::domain::SystemClock;
use flashsale_core::store::redis::{RedisConnection, RedisSettings};
use flashsale_core::{config, observability};
use lambda_http::{service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    observability::init();
    // The environment, read once; every part takes its settings from this snapshot.
    let env = config::Env::from_process();
    let redis = RedisConnection::connect(&RedisSettings::from_env(&env)?).await?;
    let watchlist = RedisWatchlist::new(redis);
    let watchlist = &watchlist;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(admin::blocks(watchlist, &SystemClock, &request).await)
    }))
    .await
}
