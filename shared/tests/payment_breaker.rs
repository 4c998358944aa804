//! The payment circuit breaker against a real redis-server (and a real Redis Cluster): it
//! opens after the threshold, fails fast without calling the provider, lets exactly one probe
//! through a half-open circuit however many callers race for it, closes or reopens on the
//! probe's verdict, and two instances on two connections share one circuit.

use std::sync::Arc;
use std::time::Duration;

use flashsale_core::domain::{Currency, ManualClock, Money, ReservationId, Timestamp};
use flashsale_core::payment::breaker::{
    BreakerConfig, BreakerState, BreakingProvider, CircuitBreaker, RedisCircuitBreaker,
};
use flashsale_core::payment::memory::{test_cards, InMemoryPaymentProvider};
use flashsale_core::payment::{ChargeOutcome, ChargeRequest, PaymentError, PaymentProvider};
use flashsale_core::store::redis::{RedisConnection, RedisMode, RedisSettings};
use redis::aio::ConnectionManager;
use testkit::{RedisCluster, RedisServer};

const COOLDOWN: Duration = Duration::from_secs(30);
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

fn config() -> BreakerConfig {
    BreakerConfig {
        failure_threshold: 3,
        cooldown: COOLDOWN,
        probe_timeout: PROBE_TIMEOUT,
    }
}

/// A circuit name no other test uses.
fn circuit(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

fn clock() -> ManualClock {
    ManualClock::at(Timestamp::from_millis(1_700_000_000_000))
}

fn breaker(
    conn: ConnectionManager,
    name: &str,
    clock: &ManualClock,
) -> RedisCircuitBreaker<ConnectionManager, ManualClock> {
    RedisCircuitBreaker::new(conn, name, config(), clock.clone()).unwrap()
}

fn charge(key: &str) -> ChargeRequest {
    ChargeRequest {
        reservation_id: ReservationId::new(),
        amount: Money::new(2_500, Currency::parse("EUR").unwrap()).unwrap(),
        payment_method: test_cards::VISA.into(),
        idempotency_key: key.into(),
    }
}

async fn fail<B: CircuitBreaker>(breaker: &B, times: usize) {
    for _ in 0..times {
        let permit = breaker
            .acquire()
            .await
            .expect("closed circuit lets calls through");
        breaker.record(permit, false).await.unwrap();
    }
}

#[tokio::test]
async fn opens_after_the_threshold_and_then_fails_fast_without_calling_the_provider() {
    // GIVEN a provider behind a breaker with a threshold of 3, and the provider down
    let server = RedisServer::start();
    let clock = clock();
    let provider = BreakingProvider::new(
        InMemoryPaymentProvider::new(),
        breaker(server.connection().await, &circuit("open"), &clock),
    );
    provider
        .provider()
        .fail_with(Some(PaymentError::Transient("HTTP 503".into())));

    // WHEN two calls fail, the circuit is still closed; the third opens it
    for i in 0..2 {
        let err = provider
            .charge(&charge(&format!("k{i}")))
            .await
            .unwrap_err();
        assert_eq!(step_error_type(&err), "ProviderUnavailable");
        assert_eq!(
            provider.breaker().state().await.unwrap(),
            BreakerState::Closed
        );
    }
    provider.charge(&charge("k2")).await.unwrap_err();
    assert_eq!(
        provider.breaker().state().await.unwrap(),
        BreakerState::Open
    );
    assert_eq!(provider.provider().calls(), 3);

    // THEN every later call is refused at once, with the remaining cooldown, and the provider
    // is never called
    clock.advance(Duration::from_secs(10));
    for i in 0..10 {
        let err = provider
            .charge(&charge(&format!("x{i}")))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            PaymentError::CircuitOpen {
                retry_after: Duration::from_secs(20)
            }
        );
        assert_eq!(step_error_type(&err), "CircuitOpen");
    }
    let id = flashsale_core::payment::PaymentIntentId::parse("pi_123").unwrap();
    assert!(matches!(
        provider.refund(&id, "r").await,
        Err(PaymentError::CircuitOpen { .. })
    ));
    assert_eq!(
        provider.provider().calls(),
        3,
        "no call reached the provider"
    );
}

#[tokio::test]
async fn declines_and_rejections_do_not_count_and_a_success_breaks_the_streak() {
    let server = RedisServer::start();
    let clock = clock();
    let provider = BreakingProvider::new(
        InMemoryPaymentProvider::new(),
        breaker(server.connection().await, &circuit("streak"), &clock),
    );
    // Declines and rejected requests are the provider answering: never a failure.
    for i in 0..5 {
        let declined = ChargeRequest {
            payment_method: test_cards::DECLINED.into(),
            ..charge(&format!("d{i}"))
        };
        assert!(matches!(
            provider.charge(&declined).await.unwrap(),
            ChargeOutcome::Declined { .. }
        ));
        let unknown = ChargeRequest {
            payment_method: "pm_nope".into(),
            ..charge(&format!("u{i}"))
        };
        assert_eq!(
            step_error_type(&provider.charge(&unknown).await.unwrap_err()),
            "ProviderRejected"
        );
    }
    // Two failures, a success, two failures: never three in a row.
    for (i, down) in [true, true, false, true, true].into_iter().enumerate() {
        provider
            .provider()
            .fail_with(down.then(|| PaymentError::Transient("timeout".into())));
        let _ = provider.charge(&charge(&format!("s{i}"))).await;
    }
    assert_eq!(
        provider.breaker().state().await.unwrap(),
        BreakerState::Closed
    );
    assert_eq!(provider.provider().calls(), 15);
}

#[tokio::test]
async fn a_failure_streak_is_forgotten_after_a_quiet_cooldown() {
    let server = RedisServer::start();
    let clock = clock();
    let name = circuit("quiet");
    let short = BreakerConfig {
        cooldown: Duration::from_millis(300),
        ..config()
    };
    let b =
        RedisCircuitBreaker::new(server.connection().await, &name, short, clock.clone()).unwrap();
    fail(&b, 2).await;
    assert!(server
        .cli(&["EXISTS", &format!("fs:breaker:{{{name}}}")])
        .contains('1'));
    // The streak's key expires (Redis time) after the cooldown without a new failure.
    tokio::time::sleep(Duration::from_millis(450)).await;
    fail(&b, 2).await;
    assert_eq!(b.state().await.unwrap(), BreakerState::Closed);
    fail(&b, 1).await;
    assert_eq!(b.state().await.unwrap(), BreakerState::Open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_twenty_concurrent_callers_probes_a_half_open_circuit() {
    // GIVEN an open circuit whose cooldown is over
    let server = RedisServer::start();
    let clock = clock();
    let name = circuit("probe");
    let b = Arc::new(breaker(server.connection().await, &name, &clock));
    fail(b.as_ref(), 3).await;
    clock.advance(COOLDOWN);
    assert_eq!(b.state().await.unwrap(), BreakerState::HalfOpen);

    // WHEN 20 callers race for it, on 20 tasks and 4 connections
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(server.connection().await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let breaker = breaker(conns[i % 4].clone(), &name, &clock);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            breaker.acquire().await
        }));
    }
    let mut probes = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(permit) => probes.push(permit),
            Err(PaymentError::CircuitOpen { retry_after }) => {
                assert_eq!(
                    retry_after, PROBE_TIMEOUT,
                    "refused until the probe's lease ends"
                );
                refused += 1;
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    // THEN exactly one got through, as the probe
    assert_eq!(probes.len(), 1);
    assert_eq!(refused, 19);
    assert!(probes[0].is_probe());

    // AND its success closes the circuit for everyone
    b.record(probes.pop().unwrap(), true).await.unwrap();
    assert_eq!(b.state().await.unwrap(), BreakerState::Closed);
    let permit = b.acquire().await.unwrap();
    assert!(!permit.is_probe());
    b.record(permit, true).await.unwrap();
    // A closed, healthy circuit leaves no key behind.
    assert!(server
        .cli(&["EXISTS", &format!("fs:breaker:{{{name}}}")])
        .contains('0'));
}

#[tokio::test]
async fn a_failed_probe_reopens_the_circuit_for_a_fresh_cooldown() {
    let server = RedisServer::start();
    let clock = clock();
    let b = breaker(server.connection().await, &circuit("reopen"), &clock);
    fail(&b, 3).await;
    clock.advance(COOLDOWN + Duration::from_secs(5));
    let probe = b.acquire().await.unwrap();
    assert!(probe.is_probe());
    clock.advance(Duration::from_secs(2));
    b.record(probe, false).await.unwrap();

    assert_eq!(b.state().await.unwrap(), BreakerState::Open);
    assert_eq!(
        b.acquire().await.unwrap_err(),
        PaymentError::CircuitOpen {
            retry_after: COOLDOWN
        }
    );
    clock.advance(COOLDOWN);
    assert!(b.acquire().await.unwrap().is_probe(), "then probes again");
}

#[tokio::test]
async fn a_probe_that_never_reports_loses_its_lease_and_its_late_verdict_is_ignored() {
    let server = RedisServer::start();
    let clock = clock();
    let b = breaker(server.connection().await, &circuit("lease"), &clock);
    fail(&b, 3).await;
    clock.advance(COOLDOWN);
    let crashed = b.acquire().await.unwrap();
    assert!(crashed.is_probe());

    // While the lease runs, nobody else probes.
    clock.advance(PROBE_TIMEOUT - Duration::from_millis(1));
    assert!(matches!(
        b.acquire().await,
        Err(PaymentError::CircuitOpen { retry_after }) if retry_after == Duration::from_millis(1)
    ));
    // Once it ran out, the next caller probes.
    clock.advance(Duration::from_millis(1));
    let second = b.acquire().await.unwrap();
    assert!(second.is_probe());

    // The first probe finally answers (success): it no longer holds the lease, nothing changes.
    b.record(crashed, true).await.unwrap();
    assert_eq!(b.state().await.unwrap(), BreakerState::HalfOpen);
    assert!(b.acquire().await.is_err());
    // The current probe decides.
    b.record(second, false).await.unwrap();
    assert_eq!(b.state().await.unwrap(), BreakerState::Open);
}

#[tokio::test]
async fn late_answers_of_calls_started_before_the_circuit_opened_change_nothing() {
    let server = RedisServer::start();
    let clock = clock();
    let b = breaker(server.connection().await, &circuit("late"), &clock);
    let slow_call = b.acquire().await.unwrap();
    fail(&b, 3).await;
    assert_eq!(b.state().await.unwrap(), BreakerState::Open);
    b.record(slow_call, true).await.unwrap();
    assert_eq!(b.state().await.unwrap(), BreakerState::Open);
}

#[tokio::test]
async fn two_instances_on_two_connections_share_one_circuit() {
    // Two "Lambda instances": own connection, own breaker value, same circuit name.
    let server = RedisServer::start();
    let clock = clock();
    let name = circuit("shared");
    let a = BreakingProvider::new(
        InMemoryPaymentProvider::new(),
        breaker(server.connection().await, &name, &clock),
    );
    let b = BreakingProvider::new(
        InMemoryPaymentProvider::new(),
        breaker(server.connection().await, &name, &clock),
    );
    a.provider()
        .fail_with(Some(PaymentError::Transient("down".into())));
    b.provider()
        .fail_with(Some(PaymentError::Transient("down".into())));

    // Failures on both add up to one streak.
    a.charge(&charge("a1")).await.unwrap_err();
    b.charge(&charge("b1")).await.unwrap_err();
    a.charge(&charge("a2")).await.unwrap_err();
    assert_eq!(b.breaker().state().await.unwrap(), BreakerState::Open);

    // B, which saw only one failure itself, now refuses without calling its provider.
    assert_eq!(
        step_error_type(&b.charge(&charge("b2")).await.unwrap_err()),
        "CircuitOpen"
    );
    assert_eq!(b.provider().calls(), 1);

    // After the cooldown, B's probe (provider healed) closes the circuit for A as well.
    clock.advance(COOLDOWN);
    b.provider().fail_with(None);
    a.provider().fail_with(None);
    assert!(matches!(
        b.charge(&charge("b3")).await.unwrap(),
        ChargeOutcome::Accepted(_)
    ));
    assert_eq!(a.breaker().state().await.unwrap(), BreakerState::Closed);
    assert!(a.charge(&charge("a3")).await.is_ok());
    assert_eq!((a.provider().calls(), b.provider().calls()), (3, 2));

    // The whole circuit is one key, gone while closed and healthy. What remains are the
    // short-lived markers that make a failure count once per permit (a re-sent record).
    let keys = server.cli(&["KEYS", "fs:breaker:*"]);
    for key in keys.lines().filter(|k| !k.is_empty()) {
        assert!(
            key.contains(":rec:"),
            "closed and healthy: no state key; got {key}"
        );
        let ttl: i64 = server.cli(&["PTTL", key]).trim().parse().unwrap();
        assert!((1..=60_000).contains(&ttl), "{key} lives {ttl} ms");
    }
}

#[tokio::test]
async fn when_redis_is_down_the_provider_is_called_anyway() {
    // A breaker whose Redis is gone: the port is free, nothing listens.
    let settings = RedisSettings {
        url: format!("redis://127.0.0.1:{}", testkit::free_port()),
        mode: RedisMode::Standalone,
        connect_timeout: Duration::from_millis(200),
        response_timeout: Duration::from_millis(200),
        call_deadline: Duration::from_millis(500),
    };
    let conn = RedisConnection::connect(&settings).await.unwrap();
    let clock = clock();
    let provider = BreakingProvider::new(
        InMemoryPaymentProvider::new(),
        RedisCircuitBreaker::new(conn, "stripe", config(), clock).unwrap(),
    );

    // Fail open: the charge goes through.
    assert!(matches!(
        provider.charge(&charge("k")).await.unwrap(),
        ChargeOutcome::Accepted(_)
    ));
    assert_eq!(provider.provider().calls(), 1);
    // The breaker's store failure: the saga retries it like a provider that did not answer.
    let err = provider.breaker().state().await.unwrap_err();
    assert!(matches!(err, PaymentError::Breaker(_)));
    assert_eq!(step_error_type(&err), "ProviderUnavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_runs_on_a_redis_cluster_one_key_one_slot() {
    let cluster = RedisCluster::start(3);
    let clock = clock();
    let b = RedisCircuitBreaker::new(
        cluster.connection().await,
        &circuit("cluster"),
        config(),
        clock.clone(),
    )
    .unwrap();
    fail(&b, 3).await;
    assert_eq!(b.state().await.unwrap(), BreakerState::Open);
    clock.advance(COOLDOWN);
    let probe = b.acquire().await.unwrap();
    assert!(probe.is_probe());
    b.record(probe, true).await.unwrap();
    assert_eq!(b.state().await.unwrap(), BreakerState::Closed);
}

#[tokio::test]
async fn circuit_names_must_fit_in_a_hash_tag() {
    let server = RedisServer::start();
    let conn = server.connection().await;
    for bad in ["", "a}b", "a{b", "a b", &"x".repeat(65)] {
        assert!(
            RedisCircuitBreaker::new(conn.clone(), bad, config(), clock()).is_err(),
            "{bad:?}"
        );
    }
    let ok = RedisCircuitBreaker::new(conn, "stripe", config(), clock()).unwrap();
    assert_eq!(ok.key(), "fs:breaker:{stripe}");
}

/// The name the checkout saga's state machine sees for a payment error (its Retry/Catch match
/// it): the saga's vocabulary is the only one.
fn step_error_type(error: &PaymentError) -> &'static str {
    flashsale_core::saga::steps::StepError::from(error.clone()).error_type
}
