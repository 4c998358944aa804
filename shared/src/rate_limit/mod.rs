//! Rate limiting: a token bucket per key (per user, per source IP), checked in Redis so every
//! Lambda instance shares the same buckets. The decision carries what the API needs for
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` and `Retry-After`.

pub mod memory;
pub mod redis;

use std::future::Future;
use std::time::Duration;

/// A bucket's shape: `capacity` tokens, refilled at `refill_per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketPolicy {
    capacity: u32,
    refill_per_sec: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    #[error("refill rate must be a positive, finite number of tokens per second")]
    BadRefill,
}

impl BucketPolicy {
    pub fn new(capacity: u32, refill_per_sec: f64) -> Result<Self, PolicyError> {
        if capacity == 0 {
            return Err(PolicyError::ZeroCapacity);
        }
        if !(refill_per_sec.is_finite() && refill_per_sec > 0.0) {
            return Err(PolicyError::BadRefill);
        }
        Ok(Self {
            capacity,
            refill_per_sec,
        })
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    pub fn refill_per_sec(&self) -> f64 {
        self.refill_per_sec
    }
}

/// What to rate-limit by. Scopes keep a user id and an IP that happen to be equal apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    User(String),
    SourceIp(String),
    /// A user's joins of waiting rooms (its own bucket: joining does not spend reserve tokens).
    Join(String),
}

impl RateKey {
    /// The Redis key. Each bucket is its own hash tag, so buckets spread over cluster nodes.
    pub fn redis_key(&self) -> String {
        match self {
            RateKey::User(id) => format!("fs:{{rl:user:{id}}}"),
            RateKey::SourceIp(ip) => format!("fs:{{rl:ip:{ip}}}"),
            RateKey::Join(id) => format!("fs:{{rl:join:{id}}}"),
        }
    }

    /// The key that remembers one request's decision on this bucket (same slot).
    pub fn request_key(&self, request: &RequestId) -> String {
        format!("{}:req:{}", self.redis_key(), request.0)
    }
}

/// Names one request to the limiter, so a check that runs twice (a re-sent script) spends once
/// and a refund gives back only what that request spent. Any unique string: the API Gateway
/// request id, or a random id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// At most 128 bytes of letters, digits, '-', '_' and '.'; anything else gets a random id.
    pub fn from_gateway(raw: Option<&str>) -> Self {
        match raw {
            Some(raw)
                if !raw.is_empty()
                    && raw.len() <= 128
                    && raw
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Self(raw.to_owned())
            }
            _ => Self::random(),
        }
    }

    pub fn random() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// `X-RateLimit-Limit`.
    pub limit: u32,
    /// `X-RateLimit-Remaining`: whole tokens left after this request.
    pub remaining: u32,
    /// `X-RateLimit-Reset`: time until the bucket is full again.
    pub reset_after: Duration,
    /// `Retry-After` when refused: time until a token is available. Zero when allowed.
    pub retry_after: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    #[error("rate limit store unavailable")]
    Store(#[from] ::redis::RedisError),
    #[error("unexpected reply from the token bucket script: {0}")]
    UnexpectedReply(String),
}

/// The port.
pub trait RateLimiter: Send + Sync {
    /// Spends one token of `key`'s bucket for `request`, if there is one. Running it twice for
    /// the same request spends once and answers the same.
    fn check(
        &self,
        key: &RateKey,
        policy: BucketPolicy,
        request: &RequestId,
    ) -> impl Future<Output = Result<RateDecision, RateLimitError>> + Send;

    /// Gives back the token `request` spent on `key` (a later check refused the request, and a
    /// refused request must cost no other budget). Only once, and only if it spent one.
    fn refund(
        &self,
        key: &RateKey,
        policy: BucketPolicy,
        request: &RequestId,
    ) -> impl Future<Output = Result<(), RateLimitError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_empty_buckets_and_bad_rates() {
        assert_eq!(BucketPolicy::new(0, 1.0), Err(PolicyError::ZeroCapacity));
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(BucketPolicy::new(5, rate), Err(PolicyError::BadRefill));
        }
        assert!(BucketPolicy::new(5, 0.5).is_ok());
    }

    #[test]
    fn user_and_ip_buckets_never_share_a_key() {
        assert_ne!(
            RateKey::User("1.2.3.4".into()).redis_key(),
            RateKey::SourceIp("1.2.3.4".into()).redis_key()
        );
    }
}
