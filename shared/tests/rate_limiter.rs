//! The token bucket against a real redis-server.

use std::time::{Duration, Instant};

use flashsale_core::rate_limit::redis::RedisRateLimiter;
use flashsale_core::rate_limit::{BucketPolicy, RateKey, RateLimiter, RequestId};
use testkit::RedisServer;

fn key(name: &str) -> RateKey {
    RateKey::User(format!("{name}-{}", uuid::Uuid::now_v7().simple()))
}

#[tokio::test]
async fn admitted_requests_match_capacity_plus_refill_over_a_measured_window() {
    // GIVEN a bucket of 20 tokens refilled at 50/s
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::new(server.connection().await);
    let policy = BucketPolicy::new(20, 50.0).unwrap();
    let key = key("window");

    // WHEN a client asks as fast as it can for 1.5 s
    let started = Instant::now();
    let mut admitted = 0u32;
    let mut asked = 0u32;
    while started.elapsed() < Duration::from_millis(1_500) {
        asked += 1;
        if limiter
            .check(&key, policy, &RequestId::random())
            .await
            .unwrap()
            .allowed
        {
            admitted += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();

    // THEN admitted = capacity + rate x elapsed, within two tokens
    let expected = 20.0 + 50.0 * elapsed;
    assert!(
        asked > admitted * 3,
        "the client must actually exceed the rate ({asked} asks)"
    );
    assert!(
        (f64::from(admitted) - expected).abs() <= 2.0,
        "admitted {admitted}, expected {expected:.1} over {elapsed:.3}s"
    );
}

#[tokio::test]
async fn decisions_carry_what_the_rate_limit_headers_need() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::new(server.connection().await);
    let policy = BucketPolicy::new(3, 2.0).unwrap();
    let key = key("headers");

    let first = limiter
        .check(&key, policy, &RequestId::random())
        .await
        .unwrap();
    assert!(first.allowed);
    assert_eq!((first.limit, first.remaining), (3, 2));
    assert_eq!(first.retry_after, Duration::ZERO);
    // One token spent at 2 tokens/s: full again within 500 ms.
    assert!(first.reset_after <= Duration::from_millis(500), "{first:?}");

    limiter
        .check(&key, policy, &RequestId::random())
        .await
        .unwrap();
    limiter
        .check(&key, policy, &RequestId::random())
        .await
        .unwrap();
    let refused = limiter
        .check(&key, policy, &RequestId::random())
        .await
        .unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    // The next token comes within 1/rate = 500 ms, and the bucket is full within 1.5 s.
    assert!(
        refused.retry_after > Duration::ZERO && refused.retry_after <= Duration::from_millis(500),
        "{refused:?}"
    );
    assert!(
        refused.reset_after <= Duration::from_millis(1_500),
        "{refused:?}"
    );

    // Waiting Retry-After is enough.
    tokio::time::sleep(refused.retry_after + Duration::from_millis(20)).await;
    assert!(
        limiter
            .check(&key, policy, &RequestId::random())
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn buckets_are_independent_per_key_and_scope() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::new(server.connection().await);
    let policy = BucketPolicy::new(1, 0.1).unwrap();
    let user = RateKey::User("same".into());
    let ip = RateKey::SourceIp("same".into());
    assert!(
        limiter
            .check(&user, policy, &RequestId::random())
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !limiter
            .check(&user, policy, &RequestId::random())
            .await
            .unwrap()
            .allowed
    );
    assert!(
        limiter
            .check(&ip, policy, &RequestId::random())
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn idle_buckets_expire_from_redis() {
    let server = RedisServer::start();
    let limiter = RedisRateLimiter::new(server.connection().await);
    let key = key("expiry");
    limiter
        .check(
            &key,
            BucketPolicy::new(5, 100.0).unwrap(),
            &RequestId::random(),
        )
        .await
        .unwrap();
    let mut conn = server.connection().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(key.redis_key())
        .query_async(&mut conn)
        .await
        .unwrap();
    // Full again after 10 ms, plus a second of slack: the key never lingers.
    assert!((0..=1_100).contains(&ttl), "{ttl}");
}
