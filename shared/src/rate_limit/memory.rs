//! An in-memory token bucket on the clock port, for unit tests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{BucketPolicy, RateDecision, RateKey, RateLimitError, RateLimiter, RequestId};
use crate::domain::{Clock, Timestamp};

pub struct InMemoryRateLimiter<K> {
    clock: K,
    buckets: Mutex<HashMap<RateKey, (f64, Timestamp)>>,
    /// Per (bucket, request): the decision, and whether it was refunded.
    decisions: Mutex<HashMap<(RateKey, RequestId), (RateDecision, bool)>>,
}

impl<K: Clock> InMemoryRateLimiter<K> {
    pub fn new(clock: K) -> Self {
        Self {
            clock,
            buckets: Mutex::new(HashMap::new()),
            decisions: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Clock> RateLimiter for InMemoryRateLimiter<K> {
    async fn check(
        &self,
        key: &RateKey,
        policy: BucketPolicy,
        request: &RequestId,
    ) -> Result<RateDecision, RateLimitError> {
        let mut decisions = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((decision, _)) = decisions.get(&(key.clone(), request.clone())) {
            return Ok(*decision);
        }
        let now = self.clock.now();
        let capacity = f64::from(policy.capacity());
        let rate = policy.refill_per_sec();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.get(key).copied().unwrap_or((capacity, now));
        let tokens = (tokens + at.until(now).as_secs_f64() * rate).min(capacity);
        let allowed = tokens >= 1.0;
        let left = if allowed { tokens - 1.0 } else { tokens };
        buckets.insert(key.clone(), (left, now));
        let decision = RateDecision {
            allowed,
            limit: policy.capacity(),
            remaining: left.floor() as u32,
            reset_after: Duration::from_secs_f64((capacity - left) / rate),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                Duration::from_secs_f64((1.0 - left) / rate)
            },
        };
        decisions.insert((key.clone(), request.clone()), (decision, false));
        Ok(decision)
    }

    async fn refund(
        &self,
        key: &RateKey,
        policy: BucketPolicy,
        request: &RequestId,
    ) -> Result<(), RateLimitError> {
        let mut decisions = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
        let Some((decision, refunded)) = decisions.get_mut(&(key.clone(), request.clone())) else {
            return Ok(());
        };
        if !decision.allowed || *refunded {
            return Ok(());
        }
        *refunded = true;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((tokens, _)) = buckets.get_mut(key) {
            *tokens = (*tokens + 1.0).min(f64::from(policy.capacity()));
        }
        Ok(())
    }
}
