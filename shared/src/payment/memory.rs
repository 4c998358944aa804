//! In-memory fakes for unit tests: a circuit breaker with the same state machine as
//! `breaker.lua`, and a payment provider that behaves like Stripe's test cards. The real
//! adapters are tested against real Redis and the payment sandbox; these only stand in for
//! them where a test is about something else (saga steps, handlers).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::breaker::{BreakerConfig, BreakerState, CircuitBreaker, Permit};
use super::{
    ChargeOutcome, ChargeRequest, Decline, PaymentError, PaymentIntent, PaymentIntentId,
    PaymentProvider, PaymentStatus, RefundOutcome,
};
use crate::domain::{Clock, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Circuit {
    Closed { failures: u32 },
    Open { until: Timestamp },
    HalfOpen { probe: String, until: Timestamp },
}

/// The breaker's state machine in process memory (one "instance" only).
pub struct InMemoryCircuitBreaker<K> {
    config: BreakerConfig,
    clock: K,
    circuit: Mutex<Circuit>,
    tokens: AtomicU64,
}

impl<K: Clock> InMemoryCircuitBreaker<K> {
    pub fn new(config: BreakerConfig, clock: K) -> Self {
        Self {
            config,
            clock,
            circuit: Mutex::new(Circuit::Closed { failures: 0 }),
            tokens: AtomicU64::new(0),
        }
    }

    fn open(&self, now: Timestamp) -> Circuit {
        Circuit::Open {
            until: now.plus(self.config.cooldown),
        }
    }
}

impl<K: Clock> CircuitBreaker for InMemoryCircuitBreaker<K> {
    async fn acquire(&self) -> Result<Permit, PaymentError> {
        let now = self.clock.now();
        let mut circuit = self.circuit.lock().unwrap_or_else(|p| p.into_inner());
        let refused = |until: Timestamp| PaymentError::CircuitOpen {
            retry_after: now.until(until),
        };
        match &*circuit {
            Circuit::Closed { .. } => {
                return Ok(Permit::pass(uuid::Uuid::now_v7().simple().to_string()))
            }
            Circuit::Open { until } if now < *until => return Err(refused(*until)),
            Circuit::HalfOpen { until, .. } if now < *until => return Err(refused(*until)),
            _ => {}
        }
        let token = self.tokens.fetch_add(1, Ordering::Relaxed).to_string();
        *circuit = Circuit::HalfOpen {
            probe: token.clone(),
            until: now.plus(self.config.probe_timeout),
        };
        Ok(Permit::probe(token))
    }

    async fn record(&self, permit: Permit, success: bool) -> Result<(), PaymentError> {
        let now = self.clock.now();
        let mut circuit = self.circuit.lock().unwrap_or_else(|p| p.into_inner());
        match (permit.probe_token(), &*circuit) {
            (Some(token), Circuit::HalfOpen { probe, .. }) if token == probe => {
                *circuit = if success {
                    Circuit::Closed { failures: 0 }
                } else {
                    self.open(now)
                };
            }
            (None, Circuit::Closed { failures }) => {
                let failures = if success { 0 } else { failures + 1 };
                *circuit = if failures >= self.config.failure_threshold {
                    self.open(now)
                } else {
                    Circuit::Closed { failures }
                };
            }
            // A stale probe, or a late answer once the circuit opened: changes nothing.
            _ => {}
        }
        Ok(())
    }

    async fn state(&self) -> Result<BreakerState, PaymentError> {
        let now = self.clock.now();
        let circuit = self.circuit.lock().unwrap_or_else(|p| p.into_inner());
        Ok(match &*circuit {
            Circuit::Closed { .. } => BreakerState::Closed,
            Circuit::Open { until } if now < *until => BreakerState::Open,
            Circuit::Open { .. } | Circuit::HalfOpen { .. } => BreakerState::HalfOpen,
        })
    }
}

/// Test payment methods the fake understands: Stripe's names, plus the sandbox's slow card.
pub mod test_cards {
    pub const VISA: &str = "pm_card_visa";
    pub const DECLINED: &str = "pm_card_chargeDeclined";
    pub const INSUFFICIENT_FUNDS: &str = "pm_card_chargeDeclinedInsufficientFunds";
    /// Stays `processing` until [`super::InMemoryPaymentProvider::settle`] moves it on.
    pub const SLOW: &str = "pm_card_sandbox_slow";
}

#[derive(Default)]
struct Ledger {
    intents: HashMap<String, PaymentIntent>,
    charges_by_key: HashMap<String, ChargeOutcome>,
    refunds_by_key: HashMap<String, RefundOutcome>,
    refunded: HashMap<String, String>,
    next: u64,
}

/// A payment provider in memory: idempotent charges by key, Stripe's test cards, refunds and
/// cancels with Stripe's rules, a call counter, and a switch that makes every call fail.
/// Clones share the same ledger.
#[derive(Clone, Default)]
pub struct InMemoryPaymentProvider {
    ledger: Arc<Mutex<Ledger>>,
    failure: Arc<Mutex<Option<PaymentError>>>,
    calls: Arc<AtomicU64>,
}

impl InMemoryPaymentProvider {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every later call fails with `error` (after being counted); `None` heals the provider.
    pub fn fail_with(&self, error: Option<PaymentError>) {
        *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = error;
    }

    /// Calls that reached the provider (failed ones included).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Moves an intent to `status` (a processing payment succeeding, say).
    pub fn settle(&self, id: &PaymentIntentId, status: PaymentStatus) {
        let mut ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(intent) = ledger.intents.get_mut(id.as_str()) {
            intent.status = status;
        }
    }

    /// Refunds created so far (one per refunded intent; a repeat never makes another).
    pub fn refunds(&self) -> usize {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.refunded.len()
    }

    /// Whether the intent `id` was refunded.
    pub fn is_refunded(&self, id: &PaymentIntentId) -> bool {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.refunded.contains_key(id.as_str())
    }

    /// Every intent created so far.
    pub fn intents(&self) -> Vec<PaymentIntent> {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.intents.values().cloned().collect()
    }

    fn enter(&self) -> Result<std::sync::MutexGuard<'_, Ledger>, PaymentError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(error) = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(error);
        }
        Ok(self.ledger.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn missing(id: &PaymentIntentId) -> PaymentError {
    PaymentError::Rejected {
        code: Some("resource_missing".into()),
        message: format!("No such payment_intent: '{id}'"),
    }
}

impl PaymentProvider for InMemoryPaymentProvider {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, PaymentError> {
        let mut ledger = self.enter()?;
        if let Some(outcome) = ledger.charges_by_key.get(&request.idempotency_key) {
            return Ok(outcome.clone());
        }
        let (status, decline) = match request.payment_method.as_str() {
            test_cards::VISA => (PaymentStatus::Succeeded, None),
            test_cards::SLOW => (PaymentStatus::Processing, None),
            test_cards::DECLINED | test_cards::INSUFFICIENT_FUNDS => {
                let insufficient = request.payment_method == test_cards::INSUFFICIENT_FUNDS;
                let decline = Decline {
                    code: "card_declined".into(),
                    decline_code: Some(
                        if insufficient {
                            "insufficient_funds"
                        } else {
                            "generic_decline"
                        }
                        .into(),
                    ),
                    message: if insufficient {
                        "Your card has insufficient funds."
                    } else {
                        "Your card was declined."
                    }
                    .into(),
                };
                (PaymentStatus::RequiresPaymentMethod, Some(decline))
            }
            other => {
                return Err(PaymentError::Rejected {
                    code: Some("resource_missing".into()),
                    message: format!("No such PaymentMethod: '{other}'"),
                })
            }
        };
        ledger.next += 1;
        let id = PaymentIntentId::parse(format!("pi_fake{}", ledger.next))
            .map_err(|e| PaymentError::Transient(e.to_string()))?;
        let intent = PaymentIntent {
            id: id.clone(),
            status,
            amount_minor: request.amount.amount_minor.max(0) as u64,
            currency: request.amount.currency.as_str().to_owned(),
            reservation_id: Some(request.reservation_id.to_string()),
            decline: decline.clone(),
        };
        ledger
            .intents
            .insert(id.as_str().to_owned(), intent.clone());
        let outcome = match decline {
            None => ChargeOutcome::Accepted(intent),
            Some(decline) => ChargeOutcome::Declined {
                intent: Some(intent),
                decline,
            },
        };
        ledger
            .charges_by_key
            .insert(request.idempotency_key.clone(), outcome.clone());
        Ok(outcome)
    }

    async fn retrieve(&self, id: &PaymentIntentId) -> Result<PaymentIntent, PaymentError> {
        let ledger = self.enter()?;
        ledger
            .intents
            .get(id.as_str())
            .cloned()
            .ok_or_else(|| missing(id))
    }

    async fn refund(
        &self,
        id: &PaymentIntentId,
        idempotency_key: &str,
    ) -> Result<RefundOutcome, PaymentError> {
        let mut ledger = self.enter()?;
        if let Some(outcome) = ledger.refunds_by_key.get(idempotency_key) {
            return Ok(outcome.clone());
        }
        let intent = ledger
            .intents
            .get(id.as_str())
            .cloned()
            .ok_or_else(|| missing(id))?;
        if intent.status != PaymentStatus::Succeeded {
            return Ok(RefundOutcome::NotCharged(intent.status));
        }
        if ledger.refunded.contains_key(id.as_str()) {
            return Ok(RefundOutcome::AlreadyRefunded);
        }
        ledger.next += 1;
        let refund_id = format!("re_fake{}", ledger.next);
        ledger
            .refunded
            .insert(id.as_str().to_owned(), refund_id.clone());
        let outcome = RefundOutcome::Refunded {
            refund_id,
            amount_minor: intent.amount_minor,
        };
        ledger
            .refunds_by_key
            .insert(idempotency_key.to_owned(), outcome.clone());
        Ok(outcome)
    }

    async fn cancel(
        &self,
        id: &PaymentIntentId,
        _idempotency_key: &str,
    ) -> Result<PaymentIntent, PaymentError> {
        let mut ledger = self.enter()?;
        let intent = ledger
            .intents
            .get_mut(id.as_str())
            .ok_or_else(|| missing(id))?;
        if !matches!(
            intent.status,
            PaymentStatus::Succeeded | PaymentStatus::Canceled
        ) {
            intent.status = PaymentStatus::Canceled;
        }
        Ok(intent.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{Currency, ManualClock, Money, ReservationId};
    use crate::payment::breaker::BreakingProvider;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            cooldown: Duration::from_secs(30),
            probe_timeout: Duration::from_secs(15),
        }
    }

    fn request(card: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
            reservation_id: ReservationId::new(),
            amount: Money::new(1500, Currency::parse("EUR").unwrap()).unwrap(),
            payment_method: card.into(),
            idempotency_key: key.into(),
        }
    }

    #[tokio::test]
    async fn the_breaker_opens_probes_once_and_closes_on_a_good_probe() {
        let clock = ManualClock::at(Timestamp::from_millis(1_000_000));
        let breaker = InMemoryCircuitBreaker::new(config(), clock.clone());
        for _ in 0..3 {
            let permit = breaker.acquire().await.unwrap();
            breaker.record(permit, false).await.unwrap();
        }
        assert_eq!(breaker.state().await.unwrap(), BreakerState::Open);
        assert_eq!(
            breaker.acquire().await.unwrap_err(),
            PaymentError::CircuitOpen {
                retry_after: Duration::from_secs(30)
            }
        );
        clock.advance(Duration::from_secs(30));
        assert_eq!(breaker.state().await.unwrap(), BreakerState::HalfOpen);
        let probe = breaker.acquire().await.unwrap();
        assert!(probe.is_probe());
        assert!(breaker.acquire().await.is_err(), "one probe at a time");
        breaker.record(probe, true).await.unwrap();
        assert_eq!(breaker.state().await.unwrap(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn a_success_breaks_the_failure_streak() {
        let clock = ManualClock::at(Timestamp::from_millis(0));
        let breaker = InMemoryCircuitBreaker::new(config(), clock);
        for success in [false, false, true, false, false] {
            let permit = breaker.acquire().await.unwrap();
            breaker.record(permit, success).await.unwrap();
        }
        assert_eq!(breaker.state().await.unwrap(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn breaking_provider_counts_only_transient_errors_as_failures() {
        let clock = ManualClock::at(Timestamp::from_millis(0));
        let provider = BreakingProvider::new(
            InMemoryPaymentProvider::new(),
            InMemoryCircuitBreaker::new(config(), clock.clone()),
        );
        // Declines and rejections are the provider working.
        for i in 0..5 {
            let outcome = provider
                .charge(&request(test_cards::DECLINED, &format!("d{i}")))
                .await
                .unwrap();
            assert!(matches!(outcome, ChargeOutcome::Declined { .. }));
            assert!(provider.charge(&request("pm_unknown", "u")).await.is_err());
        }
        assert_eq!(
            provider.breaker().state().await.unwrap(),
            BreakerState::Closed
        );
        // Outage: three transient failures open it; the fourth call never reaches the provider.
        provider
            .provider()
            .fail_with(Some(PaymentError::Transient("down".into())));
        for i in 0..3 {
            let err = provider
                .charge(&request(test_cards::VISA, &format!("v{i}")))
                .await
                .unwrap_err();
            assert!(matches!(err, PaymentError::Transient(_)), "{err:?}");
        }
        let calls = provider.provider().calls();
        let err = provider
            .charge(&request(test_cards::VISA, "v9"))
            .await
            .unwrap_err();
        assert!(matches!(err, PaymentError::CircuitOpen { .. }), "{err:?}");
        assert_eq!(provider.provider().calls(), calls);
    }

    #[tokio::test]
    async fn the_fake_provider_follows_stripes_rules() {
        let provider = InMemoryPaymentProvider::new();
        let ChargeOutcome::Accepted(paid) = provider
            .charge(&request(test_cards::VISA, "k1"))
            .await
            .unwrap()
        else {
            panic!("visa is accepted")
        };
        // Same key: same intent, no second charge.
        let again = provider
            .charge(&request(test_cards::VISA, "k1"))
            .await
            .unwrap();
        assert_eq!(again, ChargeOutcome::Accepted(paid.clone()));
        assert_eq!(provider.intents().len(), 1);

        assert!(matches!(
            provider.refund(&paid.id, "r1").await.unwrap(),
            RefundOutcome::Refunded {
                amount_minor: 1500,
                ..
            }
        ));
        assert_eq!(
            provider.refund(&paid.id, "r2").await.unwrap(),
            RefundOutcome::AlreadyRefunded
        );
        assert_eq!(
            provider.cancel(&paid.id, "c1").await.unwrap().status,
            PaymentStatus::Succeeded
        );

        let ChargeOutcome::Declined {
            intent: Some(declined),
            decline,
        } = provider
            .charge(&request(test_cards::INSUFFICIENT_FUNDS, "k2"))
            .await
            .unwrap()
        else {
            panic!("declined")
        };
        assert_eq!(decline.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(
            provider.refund(&declined.id, "r3").await.unwrap(),
            RefundOutcome::NotCharged(PaymentStatus::RequiresPaymentMethod)
        );
        assert_eq!(
            provider.cancel(&declined.id, "c2").await.unwrap().status,
            PaymentStatus::Canceled
        );
    }
}
