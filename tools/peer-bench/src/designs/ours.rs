//! This project's stock engine: the stock split over shards with fallback to the others when
//! the buyer's home shard is empty, the per-user limit, the idempotency record and the hold,
//! all in the same atomic script steps (`shared/src/stock`), fenced against lost writes.
//! Optionally behind the per-process sold-out cache, as the reserve function runs it.

use std::time::Duration;

use flashsale_core::domain::{
    Clock, IdempotencyKey, Quantity, ReservationId, SaleId, SystemClock, UserId,
};
use flashsale_core::stock::{
    ReserveOutcome, ReserveRequest, SaleStock, ShardCount, StockEngine, StockSetup,
};

use super::{Answer, Attempt, Design};
use crate::crowd::Crowd;

pub struct Ours<E> {
    /// One engine per caller, or one shared by all (`attempt` picks `worker % len`). The
    /// sold-out cache lives in the engine: one per caller is one per Lambda instance, as the
    /// reserve function runs it (an instance serves one request at a time).
    engines: Vec<E>,
    name: &'static str,
    shards: ShardCount,
}

impl<E> Ours<E> {
    pub fn new(engines: Vec<E>, name: &'static str, shards: u16) -> anyhow::Result<Self> {
        anyhow::ensure!(!engines.is_empty(), "at least one engine");
        Ok(Self {
            engines,
            name,
            shards: ShardCount::new(shards)?,
        })
    }

    fn sale(&self, run: &str) -> anyhow::Result<SaleStock> {
        Ok(SaleStock {
            sale_id: SaleId::parse(run)?,
            shards: self.shards,
        })
    }
}

#[async_trait::async_trait]
impl<E: StockEngine + Send + Sync> Design for Ours<E> {
    fn name(&self) -> &'static str {
        self.name
    }

    async fn setup(&self, run: &str, crowd: &Crowd) -> anyhow::Result<()> {
        self.engines[0]
            .setup(
                &self.sale(run)?,
                &StockSetup {
                    total_units: crowd.spec.stock,
                    per_user_limit: crowd.spec.per_user_limit,
                },
            )
            .await?;
        Ok(())
    }

    async fn attempt(&self, run: &str, worker: usize, attempt: &Attempt) -> anyhow::Result<Answer> {
        let now = SystemClock.now();
        let request = ReserveRequest {
            sale: self.sale(run)?,
            user: UserId::parse(format!("buyer-{}", attempt.buyer))?,
            quantity: Quantity::new(attempt.quantity)?,
            idempotency_key: IdempotencyKey::parse(attempt.idempotency_key())?,
            reservation_id: ReservationId::new(),
            now,
            expires_at: now.plus(Duration::from_secs(600)),
        };
        let engine = &self.engines[worker % self.engines.len()];
        Ok(match engine.reserve(&request).await? {
            ReserveOutcome::Reserved(_) => Answer::Granted,
            ReserveOutcome::Duplicate(_) => Answer::Replayed,
            ReserveOutcome::LimitReached { .. } => Answer::LimitReached,
            ReserveOutcome::SoldOut => Answer::SoldOut,
            ReserveOutcome::InsufficientStock => Answer::Insufficient,
            ReserveOutcome::InProgress { .. } => Answer::InProgress,
            other => anyhow::bail!("unexpected outcome {other:?}"),
        })
    }

    async fn left(&self, run: &str) -> anyhow::Result<i64> {
        Ok(self.engines[0].levels(&self.sale(run)?).await?.available())
    }
}
