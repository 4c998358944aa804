//! The Redis adapter of [`RateLimiter`]: `token_bucket.lua`, one slot per bucket.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::Script;

use super::{BucketPolicy, RateDecision, RateKey, RateLimitError, RateLimiter, RequestId};

/// How long a request's decision is remembered (a re-sent script comes within a second).
const REQUEST_MEMORY: Duration = Duration::from_secs(10);

/// token_bucket.lua (public for the test that runs every script twice).
pub static TOKEN_BUCKET: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("token_bucket.lua")));

#[derive(Clone)]
pub struct RedisRateLimiter<C> {
    conn: C,
}

impl<C> RedisRateLimiter<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C) -> Self {
        Self { conn }
    }

    async fn run(
        &self,
        key: &RateKey,
        policy: BucketPolicy,
        request: &RequestId,
        op: &str,
    ) -> Result<Vec<i64>, RateLimitError> {
        let mut conn = self.conn.clone();
        Ok(TOKEN_BUCKET
            .key(key.redis_key())
            .key(key.request_key(request))
            .arg(policy.capacity())
            .arg(policy.refill_per_sec())
            .arg(1)
            .arg(op)
            .arg(REQUEST_MEMORY.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?)
    }

    pub async fn preload_script(&self) -> Result<(), RateLimitError> {
        let mut conn = self.conn.clone();
        TOKEN_BUCKET.prepare_invoke().load_async(&mut conn).await?;
        Ok(())
    }
}

impl<C> RateLimiter for RedisRateLimiter<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn check(
        &self,
        key: &RateKey,
        policy: BucketPolicy,
        request: &RequestId,
    ) -> Result<RateDecision, RateLimitError> {
        let reply = self.run(key, policy, request, "take").await?;
        let [allowed, remaining, full_in_ms, retry_after_ms] = reply[..] else {
            return Err(RateLimitError::UnexpectedReply(format!("{reply:?}")));
        };
        Ok(RateDecision {
            allowed: allowed == 1,
            limit: policy.capacity(),
            remaining: remaining.clamp(0, i64::from(u32::MAX)) as u32,
            reset_after: Duration::from_millis(full_in_ms.max(0) as u64),
            retry_after: Duration::from_millis(retry_after_ms.max(0) as u64),
        })
    }

    async fn refund(
        &self,
        key: &RateKey,
        policy: BucketPolicy,
        request: &RequestId,
    ) -> Result<(), RateLimitError> {
        self.run(key, policy, request, "refund").await?;
        Ok(())
    }
}
