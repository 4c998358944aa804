//! An in-memory token bucket on the clock port, for unit tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{BucketPolicy, RateDecision, RateKey, RateLimitError, RateLimiter};
use crate::domain::{Clock, Timestamp};

pub struct InMemoryRateLimiter<K> {
    clock: K,
    buckets: Mutex<HashMap<RateKey, (f64, Timestamp)>>,
}

impl<K: Clock> InMemoryRateLimiter<K> {
    pub fn new(clock: K) -> Self {
        Self {
            clock,
            buckets: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Clock> RateLimiter for InMemoryRateLimiter<K> {
    async fn check(
        &self,
        key: &RateKey,
        policy: BucketPolicy,
    ) -> Result<RateDecision, RateLimitError> {
        let now = self.clock.now();
        let capacity = f64::from(policy.capacity());
        let rate = policy.refill_per_sec();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.get(key).copied().unwrap_or((capacity, now));
        let tokens = (tokens + at.until(now).as_secs_f64() * rate).min(capacity);
        let allowed = tokens >= 1.0;
        let left = if allowed { tokens - 1.0 } else { tokens };
        buckets.insert(key.clone(), (left, now));
        Ok(RateDecision {
            allowed,
            limit: policy.capacity(),
            remaining: left.floor() as u32,
            reset_after: Duration::from_secs_f64((capacity - left) / rate),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::from_secs_f64((1.0 - left) / rate)
            },
        })
    }
}
