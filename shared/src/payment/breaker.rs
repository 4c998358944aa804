//! A circuit breaker in front of the payment provider, shared by every Lambda instance.
//!
//! When Stripe is failing, hundreds of concurrent Lambda instances would each keep sending it
//! charges that time out after 10 s, holding reservations and Lambda concurrency while they
//! wait. The breaker keeps its state in one Redis hash (`fs:breaker:{<name>}`, one cluster
//! slot; `breaker.lua` is the only writer) so that every instance sees the same circuit:
//!
//! ```text
//!            failure_threshold consecutive failures
//!   Closed ─────────────────────────────────────────▶ Open ◀───────────────┐
//!     ▲                                                │ cooldown over      │ probe fails
//!     │ probe succeeds                                 ▼                    │
//!     └────────────────────────────────────────── HalfOpen: exactly one caller probes
//! ```
//! - Closed: every call passes. A failure streak counts *consecutive* failures over all
//!   instances (a success resets it; a streak is also forgotten after `cooldown` without a new
//!   failure). A provider that is down fails every call, so the streak trips quickly; one that
//!   fails intermittently keeps the circuit closed and is left to per-call retries.
//! - Open: every call is refused at once with [`PaymentError::CircuitOpen`] and a
//!   `retry_after`, without touching the provider.
//! - HalfOpen (cooldown over): the first caller gets a probe permit, a lease that expires after
//!   `probe_timeout` so a probe whose Lambda crashed or timed out cannot wedge the circuit;
//!   everyone else is refused until the probe reports. Probe success closes the circuit,
//!   failure opens it for a fresh cooldown. Late answers of calls that started before the
//!   circuit opened change nothing.
//!
//! Only [`PaymentError::Transient`] counts as a failure: a declined card or a request Stripe
//! rejects is the provider working.
//!
//! # When Redis itself fails
//! [`BreakingProvider`] fails *open*: if the breaker cannot be read, the call goes through to
//! the provider and a warning is logged (target `flashsale::payment::breaker`). The breaker
//! protects the provider and our latency; a Redis blip must not stop payments, and the
//! provider call has its own timeout. The breaker's own methods still report
//! [`PaymentError::Breaker`] for callers that want to decide otherwise.
//!
//! Time is the caller's clock (`Clock`), like the stock scripts; Lambda hosts are NTP-synced
//! and the durations involved are seconds.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::Script;

use super::{
    ChargeOutcome, ChargeRequest, PaymentError, PaymentIntent, PaymentIntentId, PaymentProvider,
    RefundOutcome,
};
use crate::config::{ConfigError, Env};
use crate::domain::Clock;

/// breaker.lua (public for the test that runs every script twice).
pub static BREAKER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("breaker.lua")));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long an open circuit refuses calls before one probe is let through.
    pub cooldown: Duration,
    /// How long a probe may take before another caller may probe instead. Keep it above the
    /// provider call's own timeout (Stripe: 10 s), or a slow probe loses its lease.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(15),
        }
    }
}

impl BreakerConfig {
    /// `BREAKER_FAILURE_THRESHOLD` (5), `BREAKER_COOLDOWN_MS` (30000),
    /// `BREAKER_PROBE_TIMEOUT_MS` (15000).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let config = Self {
            failure_threshold: env
                .parsed_or("BREAKER_FAILURE_THRESHOLD", defaults.failure_threshold)?,
            cooldown: Duration::from_millis(env.parsed_or("BREAKER_COOLDOWN_MS", 30_000)?),
            probe_timeout: Duration::from_millis(
                env.parsed_or("BREAKER_PROBE_TIMEOUT_MS", 15_000)?,
            ),
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |name, reason: &str| ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        };
        if self.failure_threshold == 0 {
            return Err(invalid("BREAKER_FAILURE_THRESHOLD", "must be at least 1"));
        }
        if self.cooldown.as_millis() == 0 {
            return Err(invalid("BREAKER_COOLDOWN_MS", "must be at least 1"));
        }
        if self.probe_timeout.as_millis() == 0 {
            return Err(invalid("BREAKER_PROBE_TIMEOUT_MS", "must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// The cooldown is over: the next caller probes (or a probe is under way).
    HalfOpen,
}

/// Leave to make one call, to be handed back to [`CircuitBreaker::record`] with the verdict.
#[must_use = "a permit must be recorded, or a probe holds the circuit until its lease expires"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    kind: PermitKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PermitKind {
    /// The circuit was closed. The token names the permit, so its verdict counts once.
    Pass(String),
    /// The one call allowed through a half-open circuit, identified by its lease token.
    Probe(String),
    /// The breaker could not be asked (its store failed); the call went through anyway.
    Unchecked,
}

impl Permit {
    pub fn is_probe(&self) -> bool {
        matches!(self.kind, PermitKind::Probe(_))
    }

    /// A permit for a call made without asking the breaker (its store was unavailable). Its
    /// verdict is recorded like a closed-circuit call's.
    pub fn unchecked() -> Self {
        Self {
            kind: PermitKind::Unchecked,
        }
    }

    pub(crate) fn pass(token: String) -> Self {
        Self {
            kind: PermitKind::Pass(token),
        }
    }

    pub(crate) fn probe(token: String) -> Self {
        Self {
            kind: PermitKind::Probe(token),
        }
    }

    pub(crate) fn probe_token(&self) -> Option<&str> {
        match &self.kind {
            PermitKind::Probe(token) => Some(token),
            PermitKind::Pass(_) | PermitKind::Unchecked => None,
        }
    }

    /// The permit's own token (a fresh one for an unchecked permit).
    fn token(&self) -> String {
        match &self.kind {
            PermitKind::Pass(token) | PermitKind::Probe(token) => token.clone(),
            PermitKind::Unchecked => uuid::Uuid::now_v7().simple().to_string(),
        }
    }
}

/// The breaker port: [`RedisCircuitBreaker`] in production, [`super::memory::InMemoryCircuitBreaker`]
/// in unit tests.
pub trait CircuitBreaker: Send + Sync {
    /// A permit, or `Err(CircuitOpen { retry_after })` while the circuit refuses calls.
    fn acquire(&self) -> impl Future<Output = Result<Permit, PaymentError>> + Send;

    /// Reports how the permitted call went (`success` = the provider worked).
    fn record(
        &self,
        permit: Permit,
        success: bool,
    ) -> impl Future<Output = Result<(), PaymentError>> + Send;

    fn state(&self) -> impl Future<Output = Result<BreakerState, PaymentError>> + Send;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("breaker name must be 1 to 64 ASCII letters, digits, '-' or '_'")]
pub struct InvalidBreakerName;

/// The breaker on Redis. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisCircuitBreaker<C, K> {
    conn: C,
    key: String,
    config: BreakerConfig,
    clock: K,
}

impl<C, K> RedisCircuitBreaker<C, K>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
    K: Clock,
{
    /// `name` identifies the circuit (e.g. `stripe`): every instance using the same name shares
    /// one state. It becomes the key's hash tag, so its alphabet is closed.
    pub fn new(
        conn: C,
        name: &str,
        config: BreakerConfig,
        clock: K,
    ) -> Result<Self, InvalidBreakerName> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(InvalidBreakerName);
        }
        Ok(Self {
            conn,
            key: format!("fs:breaker:{{{name}}}"),
            config,
            clock,
        })
    }

    /// The Redis key holding this circuit's state.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Loads the script now, so the first payment does not pay for SCRIPT LOAD.
    pub async fn preload_script(&self) -> Result<(), PaymentError> {
        let mut conn = self.conn.clone();
        BREAKER
            .prepare_invoke()
            .load_async(&mut conn)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn run(
        &self,
        op: &str,
        token: &str,
        success: bool,
        probe: bool,
    ) -> Result<Vec<i64>, PaymentError> {
        let mut conn = self.conn.clone();
        BREAKER
            .key(&self.key)
            .key(format!("{}:rec:{token}", self.key))
            .arg(op)
            .arg(self.clock.now().as_millis())
            .arg(self.config.failure_threshold)
            .arg(millis(self.config.cooldown))
            .arg(millis(self.config.probe_timeout))
            .arg(token)
            .arg(if success { 1 } else { 0 })
            .arg(if probe { 1 } else { 0 })
            .invoke_async(&mut conn)
            .await
            .map_err(store_error)
    }

    pub async fn acquire(&self) -> Result<Permit, PaymentError> {
        let token = uuid::Uuid::now_v7().simple().to_string();
        let reply = self.run("acquire", &token, false, false).await?;
        match reply[..] {
            [1, 0, _] => Ok(Permit::pass(token)),
            [1, 1, _] => Ok(Permit::probe(token)),
            [0, retry_after_ms, _] => Err(PaymentError::CircuitOpen {
                retry_after: Duration::from_millis(retry_after_ms.max(0) as u64),
            }),
            _ => Err(unexpected(&reply)),
        }
    }

    pub async fn record(&self, permit: Permit, success: bool) -> Result<(), PaymentError> {
        let reply = self
            .run("record", &permit.token(), success, permit.is_probe())
            .await?;
        state_of(&reply).map(|_| ())
    }

    pub async fn state(&self) -> Result<BreakerState, PaymentError> {
        let reply = self.run("state", "", false, false).await?;
        state_of(&reply)
    }
}

impl<C, K> CircuitBreaker for RedisCircuitBreaker<C, K>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
    K: Clock,
{
    fn acquire(&self) -> impl Future<Output = Result<Permit, PaymentError>> + Send {
        RedisCircuitBreaker::acquire(self)
    }

    fn record(
        &self,
        permit: Permit,
        success: bool,
    ) -> impl Future<Output = Result<(), PaymentError>> + Send {
        RedisCircuitBreaker::record(self, permit, success)
    }

    fn state(&self) -> impl Future<Output = Result<BreakerState, PaymentError>> + Send {
        RedisCircuitBreaker::state(self)
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

fn store_error(e: redis::RedisError) -> PaymentError {
    PaymentError::Breaker(e.to_string())
}

fn unexpected(reply: &[i64]) -> PaymentError {
    PaymentError::Breaker(format!("unexpected reply from breaker.lua: {reply:?}"))
}

fn state_of(reply: &[i64]) -> Result<BreakerState, PaymentError> {
    match reply {
        [0] => Ok(BreakerState::Closed),
        [1] => Ok(BreakerState::Open),
        [2] => Ok(BreakerState::HalfOpen),
        _ => Err(unexpected(reply)),
    }
}

/// A [`PaymentProvider`] whose every call goes through a [`CircuitBreaker`]: acquire, call,
/// record (`success` unless the call failed with [`PaymentError::Transient`]).
#[derive(Debug, Clone)]
pub struct BreakingProvider<P, B> {
    provider: P,
    breaker: B,
}

impl<P, B> BreakingProvider<P, B>
where
    P: PaymentProvider,
    B: CircuitBreaker,
{
    pub fn new(provider: P, breaker: B) -> Self {
        Self { provider, breaker }
    }

    pub fn provider(&self) -> &P {
        &self.provider
    }

    pub fn breaker(&self) -> &B {
        &self.breaker
    }

    /// `call` is only invoked once the breaker let the call through.
    async fn guarded<T, F, Fut>(&self, op: &'static str, call: F) -> Result<T, PaymentError>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T, PaymentError>> + Send,
    {
        let permit = match self.breaker.acquire().await {
            Ok(permit) => permit,
            Err(open @ PaymentError::CircuitOpen { .. }) => {
                tracing::info!(target: "flashsale::payment::breaker", op, "circuit open: call refused");
                return Err(open);
            }
            Err(error) => {
                // Fail open: see the module documentation.
                tracing::warn!(
                    target: "flashsale::payment::breaker",
                    op, %error,
                    "circuit breaker unavailable; calling the provider unguarded"
                );
                Permit::unchecked()
            }
        };
        let result = call().await;
        let success = !matches!(result, Err(PaymentError::Transient(_)));
        if let Err(error) = self.breaker.record(permit, success).await {
            tracing::warn!(
                target: "flashsale::payment::breaker",
                op, success, %error,
                "could not record the call's verdict"
            );
        }
        result
    }
}

impl<P, B> PaymentProvider for BreakingProvider<P, B>
where
    P: PaymentProvider,
    B: CircuitBreaker,
{
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, PaymentError> {
        self.guarded("charge", || self.provider.charge(request))
            .await
    }

    async fn retrieve(&self, id: &PaymentIntentId) -> Result<PaymentIntent, PaymentError> {
        self.guarded("retrieve", || self.provider.retrieve(id))
            .await
    }

    async fn refund(
        &self,
        id: &PaymentIntentId,
        idempotency_key: &str,
    ) -> Result<RefundOutcome, PaymentError> {
        self.guarded("refund", || self.provider.refund(id, idempotency_key))
            .await
    }

    async fn cancel(
        &self,
        id: &PaymentIntentId,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        self.guarded("cancel", || self.provider.cancel(id, idempotency_key))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_refuses_zero_values() {
        assert!(BreakerConfig::default().validate().is_ok());
        for bad in [
            BreakerConfig {
                failure_threshold: 0,
                ..Default::default()
            },
            BreakerConfig {
                cooldown: Duration::ZERO,
                ..Default::default()
            },
            BreakerConfig {
                probe_timeout: Duration::from_micros(10),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn replies_map_to_states_and_bad_replies_are_errors() {
        assert_eq!(state_of(&[0]), Ok(BreakerState::Closed));
        assert_eq!(state_of(&[1]), Ok(BreakerState::Open));
        assert_eq!(state_of(&[2]), Ok(BreakerState::HalfOpen));
        assert!(matches!(state_of(&[7]), Err(PaymentError::Breaker(_))));
        assert!(matches!(state_of(&[]), Err(PaymentError::Breaker(_))));
    }
}
