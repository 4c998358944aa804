//! The reserve use case (product flow 1):
//! rate limit (per user and per source IP) → sale and window → one atomic stock step in Redis
//! → durable PENDING record → answer. Events are not sent from here: the reservations table's
//! change stream feeds the event publisher, so an event cannot be lost between two writes.
//!
//! Failure between the Redis step and the durable write:
//! 1. the write fails → the attempt is rolled back at once ([`StockEngine::rollback`]: the hold
//!    is voided, the claim dropped and the Idempotency-Key freed, in one step on the buyer's
//!    home shard); the buyer gets 503 and a retry with the same key is a new request;
//! 2. the process dies → the hold stays; a retry with the same Idempotency-Key finds it
//!    (Duplicate), checks that the hold still stands, and writes the missing record; without a
//!    retry, the hold reconciler releases holds that have no record after a grace period.
//!    Either way no unit is lost, and no replay answers for a unit that went back on sale.
//!
//! Rate limits: the per-user bucket first, then the per-IP bucket. A request the user bucket
//! refuses never touches the IP bucket, and one the IP bucket refuses gets its user token
//! back, so a refused request spends no other budget (one greedy buyer behind a carrier NAT
//! cannot drain the address's bucket for everyone else).
//!
//! A fenced shard (Redis may have lost writes in a failover) answers 503 and asks for an
//! immediate rebuild of the sale ([`crate::stock::repair`]).

use crate::domain::{Clock, IdempotencyKey, Quantity, SaleId, Timestamp, UserId};
use crate::rate_limit::{
    BucketPolicy, RateDecision, RateKey, RateLimitError, RateLimiter, RequestId,
};
use crate::sale::{CatalogError, Sale, SaleCatalog, SaleWindow};
use crate::stock::repair::RepairRequests;
use crate::stock::{
    Hold, HoldState, ReserveOutcome, ReserveRequest, StockEngine, StockError, Unavailable,
};

use super::{InsertOutcome, Reservation, ReservationStatus, ReservationStore, StoreError};
use crate::domain::ReservationId;

/// The token buckets every reserve request passes.
#[derive(Debug, Clone, Copy)]
pub struct RatePolicies {
    pub per_user: BucketPolicy,
    pub per_ip: BucketPolicy,
}

impl RatePolicies {
    /// `RATE_USER_CAPACITY`, `RATE_USER_REFILL_PER_SEC`, `RATE_IP_CAPACITY`,
    /// `RATE_IP_REFILL_PER_SEC`; each defaults to [`RatePolicies::default`].
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        use crate::config::ConfigError;
        let d = Self::default();
        let policy = |cap: &'static str, refill: &'static str, default: BucketPolicy| {
            let capacity = env.parsed_or(cap, default.capacity())?;
            let rate = env.parsed_or(refill, default.refill_per_sec())?;
            BucketPolicy::new(capacity, rate).map_err(|e| ConfigError::Invalid {
                name: cap,
                reason: e.to_string(),
            })
        };
        Ok(Self {
            per_user: policy("RATE_USER_CAPACITY", "RATE_USER_REFILL_PER_SEC", d.per_user)?,
            per_ip: policy("RATE_IP_CAPACITY", "RATE_IP_REFILL_PER_SEC", d.per_ip)?,
        })
    }
}

impl Default for RatePolicies {
    fn default() -> Self {
        Self {
            // A person clicks "buy" a few times; a script hammers. 5 at once, then 1 per second.
            per_user: BucketPolicy::new(5, 1.0).expect("valid policy"),
            // Many buyers can share an address (NAT, offices); be more generous per IP.
            per_ip: BucketPolicy::new(50, 10.0).expect("valid policy"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReserveCommand {
    pub user: UserId,
    pub source_ip: Option<String>,
    /// Names this request to the rate limiter (see [`RequestId`]).
    pub request_id: RequestId,
    pub sale_id: SaleId,
    pub quantity: Quantity,
    pub idempotency_key: IdempotencyKey,
    /// The buyer's email address from the identity, kept on the record for notifications.
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    pub reservation: Reservation,
    /// True when this answers a repeated Idempotency-Key with the original reservation.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("rate limited")]
    RateLimited(RateDecision),
    #[error("no such sale")]
    SaleNotFound,
    #[error("the sale has not started")]
    SaleNotStarted { starts_at: Timestamp },
    #[error("the sale has ended")]
    SaleEnded,
    #[error("sold out")]
    SoldOut,
    #[error("not enough units left in one place for this quantity")]
    InsufficientStock,
    #[error("per-user limit reached")]
    LimitReached { claimed: u32, limit: u32 },
    #[error("idempotency key reused with a different request")]
    KeyReused,
    #[error("a request with this idempotency key is still in progress")]
    InProgress,
    /// The key's first attempt no longer holds anything and has no record (its units went
    /// back): it cannot be replayed, and it is not free either. A new key starts over.
    #[error("the reservation made with this idempotency key no longer exists")]
    KeySpent,
    #[error("selling is paused")]
    Paused,
    #[error("sale stock is not available")]
    StockNotReady,
    #[error(transparent)]
    Stock(#[from] StockError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    RateStore(#[from] RateLimitError),
}

/// The outcome plus the rate-limit state, which every response reports in its headers.
#[derive(Debug)]
pub struct ReserveResponse {
    pub result: Result<Reserved, ReserveError>,
    pub rate: Option<RateDecision>,
}

/// The reserve use case. `S` stock engine, `L` rate limiter, `C` sale catalog, `R` reservation
/// store, `K` clock, `P` repair requests.
pub struct ReserveService<S, L, C, R, K, M> {
    pub stock: S,
    pub limiter: L,
    pub catalog: C,
    pub store: R,
    pub clock: K,
    pub repairs: M,
    pub policies: RatePolicies,
}

/// Of two decisions, the one the client must heed: a refusal, else the one with less left.
fn stricter(a: RateDecision, b: RateDecision) -> RateDecision {
    match (a.allowed, b.allowed) {
        (false, true) => a,
        (true, false) => b,
        (false, false) => {
            if a.retry_after >= b.retry_after {
                a
            } else {
                b
            }
        }
        (true, true) => {
            if a.remaining <= b.remaining {
                a
            } else {
                b
            }
        }
    }
}

impl<S, L, C, R, K, M> ReserveService<S, L, C, R, K, M>
where
    S: StockEngine,
    L: RateLimiter,
    C: SaleCatalog,
    R: ReservationStore,
    K: Clock,
    M: RepairRequests,
{
    pub async fn reserve(&self, command: ReserveCommand) -> ReserveResponse {
        let rate = match self.check_rate(&command).await {
            Ok(decision) => decision,
            Err(error) => {
                return ReserveResponse {
                    result: Err(error.into()),
                    rate: None,
                }
            }
        };
        if !rate.allowed {
            return ReserveResponse {
                result: Err(ReserveError::RateLimited(rate)),
                rate: Some(rate),
            };
        }
        ReserveResponse {
            result: self.reserve_allowed(command).await,
            rate: Some(rate),
        }
    }

    /// The user's bucket, then the IP's; a refusal by the IP bucket gives the user's token back
    /// (see the module doc).
    async fn check_rate(&self, command: &ReserveCommand) -> Result<RateDecision, RateLimitError> {
        let user_key = RateKey::User(command.user.to_string());
        let by_user = self
            .limiter
            .check(&user_key, self.policies.per_user, &command.request_id)
            .await?;
        let Some(ip) = &command.source_ip else {
            return Ok(by_user);
        };
        if !by_user.allowed {
            return Ok(by_user);
        }
        let ip_key = RateKey::SourceIp(ip.clone());
        let by_ip = self
            .limiter
            .check(&ip_key, self.policies.per_ip, &command.request_id)
            .await?;
        if !by_ip.allowed {
            self.limiter
                .refund(&user_key, self.policies.per_user, &command.request_id)
                .await?;
        }
        Ok(stricter(by_user, by_ip))
    }

    async fn reserve_allowed(&self, command: ReserveCommand) -> Result<Reserved, ReserveError> {
        let sale = self
            .catalog
            .get(&command.sale_id)
            .await?
            .ok_or(ReserveError::SaleNotFound)?;
        let now = self.clock.now();
        match sale.window_at(now) {
            SaleWindow::Upcoming => {
                return Err(ReserveError::SaleNotStarted {
                    starts_at: sale.starts_at,
                })
            }
            SaleWindow::Ended => return Err(ReserveError::SaleEnded),
            SaleWindow::Open => {}
        }
        let request = ReserveRequest {
            sale: sale.stock(),
            user: command.user.clone(),
            quantity: command.quantity,
            idempotency_key: command.idempotency_key.clone(),
            reservation_id: ReservationId::new(),
            now,
            expires_at: now.plus(sale.hold),
        };
        match self.stock.reserve(&request).await? {
            ReserveOutcome::Reserved(hold) => self.record(&sale, &command, hold, now).await,
            ReserveOutcome::Duplicate(hold) => self.replay(&sale, &command, hold, now).await,
            ReserveOutcome::SoldOut => Err(ReserveError::SoldOut),
            ReserveOutcome::InsufficientStock => Err(ReserveError::InsufficientStock),
            ReserveOutcome::LimitReached { claimed, limit } => {
                Err(ReserveError::LimitReached { claimed, limit })
            }
            ReserveOutcome::KeyReused { .. } => Err(ReserveError::KeyReused),
            ReserveOutcome::InProgress { .. } => Err(ReserveError::InProgress),
            ReserveOutcome::Unavailable(Unavailable::Paused) => Err(ReserveError::Paused),
            ReserveOutcome::Unavailable(Unavailable::Fenced) => {
                tracing::warn!(sale_id = %sale.sale_id, "stock fenced (Redis may have lost writes): asking for a rebuild now");
                self.request_rebuild(&sale.sale_id).await;
                Err(ReserveError::Paused)
            }
            ReserveOutcome::Unavailable(Unavailable::NotSetUp) => {
                // The catalog has the sale and Redis does not: its data was lost (or put-sale
                // has not set it up yet, which a rebuild from no records also does).
                tracing::warn!(sale_id = %sale.sale_id, "stock missing in Redis: asking for a rebuild now");
                self.request_rebuild(&sale.sale_id).await;
                Err(ReserveError::StockNotReady)
            }
        }
    }

    /// Asks for the sale's stock to be rebuilt now; a failure is only logged (the sweep finds a
    /// lost or fenced sale within a minute anyway).
    async fn request_rebuild(&self, sale: &SaleId) {
        if let Err(error) = self.repairs.request_rebuild(sale).await {
            tracing::error!(%error, sale_id = %sale, "could not ask for a rebuild");
        }
    }

    fn reservation(
        sale: &Sale,
        user: &UserId,
        hold: Hold,
        now: Timestamp,
    ) -> Result<Reservation, ReserveError> {
        let amount = sale
            .price
            .times(hold.quantity.get())
            .map_err(|_| StockError::InvalidSetup("price times quantity overflows"))?;
        Ok(Reservation {
            reservation_id: hold.reservation_id,
            sale_id: sale.sale_id.clone(),
            user_id: user.clone(),
            quantity: hold.quantity,
            shard: hold.shard,
            status: ReservationStatus::Pending,
            amount,
            created_at: now,
            expires_at: hold.expires_at,
        })
    }

    /// A new hold: make it durable, or give the unit back.
    async fn record(
        &self,
        sale: &Sale,
        command: &ReserveCommand,
        hold: Hold,
        now: Timestamp,
    ) -> Result<Reserved, ReserveError> {
        let (user, key) = (&command.user, &command.idempotency_key);
        let reservation = Self::reservation(sale, user, hold, now)?;
        #[cfg(feature = "fault-injection")]
        if fault::should_kill(&sale.sale_id) {
            // The process "dies" here: the hold stays, no record is written, nothing is released.
            tracing::warn!(reservation_id = %hold.reservation_id, "fault injection: reserve killed after the Redis hold");
            return Err(ReserveError::Store(StoreError::Unavailable(
                "fault injection: killed between the Redis hold and the durable write".into(),
            )));
        }
        // The store retries throttling itself; an error here is final for this request, but
        // not proof that nothing was written (a commit whose answer was lost, or a replay of
        // the same key that wrote the record meanwhile). So the id is closed first: only if
        // the tombstone lands is the attempt rolled back.
        match self
            .store
            .insert_pending_with_email(&reservation, command.email.as_deref())
            .await
        {
            Ok(InsertOutcome::Inserted) => Ok(Reserved {
                reservation,
                replayed: false,
            }),
            Ok(InsertOutcome::AlreadyExists) => self.own_record(&reservation).await,
            Err(error) => {
                tracing::warn!(%error, reservation_id = %hold.reservation_id, "durable write failed; closing the id before rolling back");
                match self.store.insert_void(&reservation).await {
                    Ok(InsertOutcome::Inserted) => {
                        if let Err(rollback_error) =
                            self.stock.rollback(&sale.stock(), &hold, user, key).await
                        {
                            // The hold stays with its tombstone: the hold reconciler releases
                            // it after its grace period (EXPIRED record, active hold).
                            tracing::error!(%rollback_error, reservation_id = %hold.reservation_id, "rollback after a failed write failed");
                        }
                        Err(error.into())
                    }
                    // The write had committed after all (or a replay wrote it): it stands.
                    Ok(InsertOutcome::AlreadyExists) => self.own_record(&reservation).await,
                    Err(void_error) => {
                        // Nothing can be known now: the hold stays. A retry with the key writes
                        // its record (replay); without one, the reconciler releases the hold
                        // after its grace period. Either way no unit is lost or sold twice.
                        tracing::warn!(%void_error, reservation_id = %hold.reservation_id, "could not close the id; the hold stays for a retry or the reconciler");
                        Err(error.into())
                    }
                }
            }
        }
    }

    /// The record with our new reservation's id exists: the reservation stands if the record
    /// is ours and PENDING; anything else (a tombstone the reconciler wrote for a hold it
    /// judged orphaned while this request was stalled) means the attempt is gone.
    async fn own_record(&self, ours: &Reservation) -> Result<Reserved, ReserveError> {
        match self.store.get(ours.reservation_id).await? {
            Some(stored) if stored.status == ReservationStatus::Pending => Ok(Reserved {
                reservation: stored,
                replayed: false,
            }),
            other => {
                tracing::warn!(reservation_id = %ours.reservation_id, status = ?other.map(|r| r.status), "the new reservation's id was closed meanwhile");
                Err(ReserveError::KeySpent)
            }
        }
    }

    /// A repeated key: answer with the original reservation, writing its record if the first
    /// attempt died before it could, but only while its hold still stands (a hold released
    /// meanwhile put its units back on sale: recording it now would sell them twice).
    async fn replay(
        &self,
        sale: &Sale,
        command: &ReserveCommand,
        hold: Hold,
        now: Timestamp,
    ) -> Result<Reserved, ReserveError> {
        let user = &command.user;
        if let Some(reservation) = self.store.get(hold.reservation_id).await? {
            // A reservation that lived (even if it expired or failed since) is the answer; a
            // tombstone is not: that attempt was answered 503 or not at all, and its id was
            // closed so that its units could go back. Its key is spent.
            if !reservation.status.is_held()
                && reservation.status != ReservationStatus::Confirmed
                && self.store.is_tombstone(hold.reservation_id).await?
            {
                tracing::info!(reservation_id = %hold.reservation_id, "replay of a key whose attempt was closed unanswered: refused");
                return Err(ReserveError::KeySpent);
            }
            return Ok(Reserved {
                reservation,
                replayed: true,
            });
        }
        let state = self
            .stock
            .hold_state(&sale.stock(), hold.shard, hold.reservation_id)
            .await?;
        if state != Some(HoldState::Held) {
            tracing::warn!(reservation_id = %hold.reservation_id, ?state, "replay of a key whose hold is gone and has no record: refused");
            return Err(ReserveError::KeySpent);
        }
        let reservation = Self::reservation(sale, user, hold, now)?;
        let reservation = match self
            .store
            .insert_pending_with_email(&reservation, command.email.as_deref())
            .await?
        {
            InsertOutcome::Inserted => {
                tracing::info!(reservation_id = %hold.reservation_id, "repaired a reservation record on replay");
                reservation
            }
            // Written concurrently by the first attempt, or closed meanwhile: read it back.
            InsertOutcome::AlreadyExists => {
                if self.store.is_tombstone(hold.reservation_id).await? {
                    return Err(ReserveError::KeySpent);
                }
                self.store
                    .get(hold.reservation_id)
                    .await?
                    .unwrap_or(reservation)
            }
        };
        Ok(Reserved {
            reservation,
            replayed: true,
        })
    }
}

/// Test-only fault injection, compiled only with the `fault-injection` feature (never enabled
/// by a production build). Switches are per sale, so tests running in parallel in one process
/// do not disturb each other.
#[cfg(feature = "fault-injection")]
pub mod fault {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use crate::domain::SaleId;

    fn kills() -> &'static Mutex<HashMap<SaleId, u32>> {
        static KILLS: OnceLock<Mutex<HashMap<SaleId, u32>>> = OnceLock::new();
        KILLS.get_or_init(Default::default)
    }

    /// The next `times` reserves of `sale` that get a new hold die right after it: the hold
    /// stays in Redis, no durable record is written, nothing is released (a crashed Lambda).
    pub fn kill_after_hold(sale: &SaleId, times: u32) {
        kills()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sale.clone(), times);
    }

    /// Disarms the switch for `sale`.
    pub fn heal(sale: &SaleId) {
        kills()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sale);
    }

    /// Consumes one armed kill for `sale`, if any.
    pub(crate) fn should_kill(sale: &SaleId) -> bool {
        let mut kills = kills().lock().unwrap_or_else(|p| p.into_inner());
        match kills.get_mut(sale) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }
}
