//! The stock engine: atomic reservations against a sale's stock, split over shards.
//!
//! [`StockEngine`] is the port the reserve, saga and expiry code depend on. The production
//! adapter is [`redis::RedisStockEngine`] (ElastiCache-compatible Lua scripts);
//! [`SoldOutCache`] wraps any engine with the per-process sold-out fast path.
//!
//! # How a reservation finds a unit
//! ```text
//!   buyer ──hash(user)──▶ home shard h
//!   1. reserve.lua on h   idempotency + per-user limit + decrement + hold, one atomic step
//!        └─ HOME_EMPTY ─▶ 2. read `available` of every other shard (concurrently)
//!                              └─ all empty ─▶ SoldOut (two round trips in all)
//!                         3. claim.lua on h: idempotency + limit, a pending claim
//!                         4. take.lua on the first shard j with enough units (ring order h+1..)
//!                         5. confirm.lua on h: the claim becomes the reservation
//!                              └─ lost a race ─▶ release.lua on j, unclaim.lua on h
//! ```
//! Each script touches the keys of exactly one shard, which share one hash tag, so each call
//! stays in one Redis Cluster slot. The buyer's claims always live on the home shard, which is
//! why the per-user limit holds across shards; claiming before taking (step 3) means one
//! buyer's concurrent requests cannot hold more units than the limit even for a moment.
//!
//! # Faults the engine is built for
//! - **A script that runs twice** (a client re-sends it after a dropped connection): every
//!   script leaves the same state after two runs as after one (`tests/script_reruns.rs` runs
//!   each one twice). A reserve, claim or confirm that finds its own idempotency record answers
//!   as its first run did.
//! - **A reserve whose durable write failed**: [`StockEngine::rollback`] voids the hold, drops
//!   the claim and frees the Idempotency-Key in one step on the home shard, so a retry with the
//!   same key is a new request rather than a replay of an attempt that left nothing behind.
//! - **Lost writes after a failover** (replication is asynchronous): the *fence*. Every shard
//!   record names the Redis process it was created or rebuilt on (its `run_id`); a selling
//!   script (reserve, take, restore) that runs on another process pauses the shard and answers
//!   [`Unavailable::Fenced`] before any answer read from the shard's data, refusals too, and
//!   nothing sells there until a rebuild from the durable records has verified it. A failover therefore costs a short pause per sale, never a unit sold twice.
//!   (A per-shard sequence number checked against the records would only notice the loss after
//!   the next durable write, by which time the lost units may have been sold again.)
//! - **"Sold out"** is said only when every shard's level is known and none can serve even one
//!   unit; a shard that is missing or paused is *unknown* (the answer is Unavailable), and a
//!   request larger than any shard's stock is [`ReserveOutcome::InsufficientStock`]. A
//!   reservation lives on one shard (its release and commit are one atomic step there), so a
//!   multi-unit request is not split over shards: near the end of a sale it may hear
//!   "insufficient" while single units remain on several shards.

mod keys;
pub mod maintenance;
pub mod memory;
pub mod redis;
pub mod repair;
mod sold_out_cache;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::domain::{IdempotencyKey, Quantity, ReservationId, SaleId, Timestamp, UserId};

pub use keys::ShardKeys;
pub use maintenance::StockMaintenance;
pub use sold_out_cache::{SoldOutCache, SoldOutCacheConfig};

/// How many shards a sale's stock is split over: 1 to [`ShardCount::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct ShardCount(u16);

impl ShardCount {
    pub const MAX: u16 = 256;
    pub const ONE: ShardCount = ShardCount(1);

    pub fn new(n: u16) -> Result<Self, StockError> {
        if n == 0 || n > Self::MAX {
            return Err(StockError::InvalidSetup(
                "shard count must be between 1 and 256",
            ));
        }
        Ok(Self(n))
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// Every shard index, in order.
    pub fn all(self) -> impl Iterator<Item = u16> {
        0..self.0
    }

    /// The shard a buyer tries first: a stable hash of the user id (FNV-1a), so one buyer's
    /// claims always live on the same shard and the per-user limit can be checked atomically.
    pub fn home_of(self, user: &UserId) -> u16 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in user.as_str().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (hash % u64::from(self.0)) as u16
    }

    /// The fallback order after the home shard: the ring h+1, h+2, ..., h-1.
    pub fn ring_after(self, home: u16) -> impl Iterator<Item = u16> {
        let n = self.0;
        (1..n).map(move |step| (home + step) % n)
    }
}

impl TryFrom<u16> for ShardCount {
    type Error = StockError;
    fn try_from(n: u16) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}

impl From<ShardCount> for u16 {
    fn from(n: ShardCount) -> u16 {
        n.0
    }
}

/// Where a sale's stock lives: its id and how many shards it is split over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SaleStock {
    pub sale_id: SaleId,
    pub shards: ShardCount,
}

/// What a new sale starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockSetup {
    pub total_units: u64,
    pub per_user_limit: u32,
}

/// One attempt to reserve. The reservation id is chosen by the caller and used only if a new
/// hold is created; a duplicate returns the original id instead.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub sale: SaleStock,
    pub user: UserId,
    pub quantity: Quantity,
    pub idempotency_key: IdempotencyKey,
    pub reservation_id: ReservationId,
    pub now: Timestamp,
    pub expires_at: Timestamp,
}

/// A hold on stock: which reservation, on which shard, how many units, until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub reservation_id: ReservationId,
    pub shard: u16,
    pub quantity: Quantity,
    pub expires_at: Timestamp,
}

/// Why a sale cannot sell right now even though it may have stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No stock record in Redis: the sale was never set up, or Redis lost its data. Selling
    /// must wait for a setup or a rebuild; missing keys are never read as zero or fresh stock.
    NotSetUp,
    /// Selling is paused while stock is rebuilt from the durable records.
    Paused,
    /// This request found that the shard's data may have lost writes (another Redis process
    /// serves it than the one it was verified on: a failover). The shard is paused now; the
    /// caller should ask for a rebuild of the sale at once (only the first caller sees this;
    /// later ones see [`Unavailable::Paused`]).
    Fenced,
}

/// The result of a reservation attempt. Expected business outcomes are values, not errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Reserved(Hold),
    /// The same idempotency key with the same request: the original hold, nothing decremented.
    Duplicate(Hold),
    /// The same idempotency key with a different request (another quantity).
    KeyReused {
        original: ReservationId,
    },
    /// A copy of this request (same key) is still running; retry shortly.
    InProgress {
        reservation_id: ReservationId,
    },
    /// The buyer already claims `claimed` units; the request would exceed `limit`.
    LimitReached {
        claimed: u32,
        limit: u32,
    },
    /// Every shard is empty.
    SoldOut,
    /// Units remain, but no single shard has `quantity` of them.
    InsufficientStock,
    Unavailable(Unavailable),
}

/// The result of releasing a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    Released {
        user: UserId,
        quantity: u32,
    },
    AlreadyReleased,
    /// The hold was committed (sold); a release changes nothing.
    WasCommitted,
    NotFound,
    SaleNotSetUp,
}

impl ReleaseOutcome {
    /// Its name in step outputs and logs (without the buyer a `Released` carries).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Released { .. } => "Released",
            Self::AlreadyReleased => "AlreadyReleased",
            Self::WasCommitted => "WasCommitted",
            Self::NotFound => "NotFound",
            Self::SaleNotSetUp => "SaleNotSetUp",
        }
    }
}

/// The result of committing a hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    Committed,
    AlreadyCommitted,
    /// The hold was released before; a commit changes nothing.
    WasReleased,
    NotFound,
    SaleNotSetUp,
    /// [`StockEngine::commit_paid`] only: the hold was missing or released (Redis lost it), and
    /// its units were taken as sold again. `available_after` < 0 means the shard is oversold by
    /// that much (a debt the next released units pay back).
    Retaken {
        available_after: i64,
    },
    /// [`StockEngine::commit_paid`] only: the hold is gone and the shard is paused for a
    /// rebuild, which counts this sale from the records; retry after it.
    Paused,
}

impl CommitOutcome {
    /// Its name in step outputs and errors.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Committed => "Committed",
            Self::AlreadyCommitted => "AlreadyCommitted",
            Self::WasReleased => "WasReleased",
            Self::NotFound => "NotFound",
            Self::SaleNotSetUp => "SaleNotSetUp",
            Self::Retaken { .. } => "Retaken",
            Self::Paused => "Paused",
        }
    }
}

/// Where a hold stands in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    Held,
    Committed,
    Released,
    /// Rolled back: the reserve's durable write failed and the attempt left nothing behind.
    Voided,
}

/// A hold to (re-)create from a durable reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldSpec {
    pub reservation_id: ReservationId,
    pub user: UserId,
    pub quantity: Quantity,
    pub shard: u16,
    pub expires_at: Timestamp,
}

/// The result of re-creating a hold ([`StockEngine::ensure_held`],
/// [`StockMaintenance::restore_hold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreOutcome {
    /// The units were taken from the shard again. `available_after` < 0 only when the restore
    /// was allowed to go into debt.
    Restored {
        available_after: i64,
    },
    /// The hold is active: nothing to do.
    AlreadyHeld,
    /// The hold was sold: nothing changed.
    WasCommitted,
    /// The shard has fewer units than the hold needs; nothing changed.
    NoUnits {
        available: i64,
    },
    Paused,
    /// The shard was fenced just now (see [`Unavailable::Fenced`]); nothing changed.
    Fenced,
    SaleNotSetUp,
}

impl RestoreOutcome {
    /// Its name in step outputs and errors.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Restored { .. } => "Restored",
            Self::AlreadyHeld => "AlreadyHeld",
            Self::WasCommitted => "WasCommitted",
            Self::NoUnits { .. } => "NoUnits",
            Self::Paused => "Paused",
            Self::Fenced => "Fenced",
            Self::SaleNotSetUp => "SaleNotSetUp",
        }
    }
}

/// The result of setting up a sale's stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupOutcome {
    Created,
    /// The stock already existed. `matches` says whether it has the requested shape.
    AlreadyExists {
        matches: bool,
    },
}

/// One shard's counters. Invariant: `initial == available + held + sold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardLevel {
    pub shard: u16,
    pub initial: i64,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
}

/// A sale's counters, shard by shard. `None` for a shard without a stock record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevels {
    pub shards: Vec<Option<ShardLevel>>,
}

impl StockLevels {
    fn sum(&self, f: impl Fn(&ShardLevel) -> i64) -> i64 {
        self.shards.iter().flatten().map(f).sum()
    }
    pub fn initial(&self) -> i64 {
        self.sum(|s| s.initial)
    }
    pub fn available(&self) -> i64 {
        self.sum(|s| s.available)
    }
    pub fn held(&self) -> i64 {
        self.sum(|s| s.held)
    }
    pub fn sold(&self) -> i64 {
        self.sum(|s| s.sold)
    }
    pub fn is_complete(&self) -> bool {
        self.shards.iter().all(Option::is_some)
    }
}

/// Failures of the stock engine itself (as opposed to business outcomes).
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("stock store unavailable")]
    Store(#[from] ::redis::RedisError),
    #[error("unexpected reply from {script}: {detail}")]
    UnexpectedReply {
        script: &'static str,
        detail: String,
    },
    #[error("sale is split over {actual} shards, not {expected}")]
    LayoutMismatch { expected: u16, actual: u16 },
    /// A pending claim was dropped (as stale) before the reservation could confirm it. The
    /// unit has been put back; the caller may retry.
    #[error("the reservation's claim expired before it was confirmed")]
    ClaimLost,
    #[error("invalid stock setup: {0}")]
    InvalidSetup(&'static str),
}

/// The port. Every operation is atomic per shard and idempotent where retried.
pub trait StockEngine: Send + Sync {
    fn reserve(
        &self,
        request: &ReserveRequest,
    ) -> impl Future<Output = Result<ReserveOutcome, StockError>> + Send;

    /// Returns a held unit to its shard and frees the buyer's claim. Safe to repeat.
    fn release(
        &self,
        sale: &SaleStock,
        shard: u16,
        reservation_id: ReservationId,
    ) -> impl Future<Output = Result<ReleaseOutcome, StockError>> + Send;

    /// Frees a buyer's claim for one reservation (and its pending-claims entry), on the buyer's
    /// home shard. For a reservation being closed whose hold Redis no longer has
    /// ([`ReleaseOutcome::NotFound`]: release cannot learn the buyer from a hold that is gone),
    /// and for holds no record backs. Idempotent; true if a claim was removed.
    fn drop_claim(
        &self,
        sale: &SaleStock,
        user: &UserId,
        reservation_id: ReservationId,
    ) -> impl Future<Output = Result<bool, StockError>> + Send;

    /// Turns a hold into sold stock. Safe to repeat.
    fn commit(
        &self,
        sale: &SaleStock,
        shard: u16,
        reservation_id: ReservationId,
    ) -> impl Future<Output = Result<CommitOutcome, StockError>> + Send;

    /// The commit of a reservation that is paid for (an order exists): like
    /// [`StockEngine::commit`], but a hold Redis lost or released is taken as sold again, even
    /// into debt ([`CommitOutcome::Retaken`]). A paid order always keeps its units. Safe to
    /// repeat.
    fn commit_paid(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
    ) -> impl Future<Output = Result<CommitOutcome, StockError>> + Send;

    /// Makes sure a reservation about to be charged still holds its units: an active hold is
    /// left alone; a lost or released one is taken again if the shard has the units, never into
    /// debt ([`RestoreOutcome::NoUnits`] then: do not charge). Safe to repeat.
    fn ensure_held(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
    ) -> impl Future<Output = Result<RestoreOutcome, StockError>> + Send;

    /// Undoes a reservation whose durable record could not be written: its hold is voided (the
    /// units go back), the buyer's claim is dropped and the Idempotency-Key is freed, so a retry
    /// with that key is a new request. A hold that was committed meanwhile is left alone. Safe
    /// to repeat.
    fn rollback(
        &self,
        sale: &SaleStock,
        hold: &Hold,
        user: &UserId,
        idempotency_key: &IdempotencyKey,
    ) -> impl Future<Output = Result<(), StockError>> + Send;

    /// The state of one hold, `None` if the shard has no hold with that id.
    fn hold_state(
        &self,
        sale: &SaleStock,
        shard: u16,
        reservation_id: ReservationId,
    ) -> impl Future<Output = Result<Option<HoldState>, StockError>> + Send;

    /// Creates a sale's stock across its shards. Safe to repeat after a partial failure.
    fn setup(
        &self,
        sale: &SaleStock,
        setup: &StockSetup,
    ) -> impl Future<Output = Result<SetupOutcome, StockError>> + Send;

    /// Grows a running sale's stock to `total_units`, each shard to its even share
    /// ([`split_evenly`]). Converges: it compares Redis with the target and adds what is
    /// missing, so running it again after a half-done change, or twice, gives the same stock.
    /// Never shrinks a shard.
    fn grow_to(
        &self,
        sale: &SaleStock,
        total_units: u64,
    ) -> impl Future<Output = Result<(), StockError>> + Send;

    fn levels(
        &self,
        sale: &SaleStock,
    ) -> impl Future<Output = Result<StockLevels, StockError>> + Send;

    /// Changes the per-user limit of a running sale.
    fn set_per_user_limit(
        &self,
        sale: &SaleStock,
        limit: u32,
    ) -> impl Future<Output = Result<(), StockError>> + Send;
}

/// Splits `total` units over `shards` as evenly as possible (the first shards get the rest).
pub fn split_evenly(total: u64, shards: ShardCount) -> Vec<u64> {
    let n = u64::from(shards.get());
    (0..n)
        .map(|i| total / n + u64::from(i < total % n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_count_accepts_one_to_max() {
        assert!(ShardCount::new(0).is_err());
        assert!(ShardCount::new(1).is_ok());
        assert!(ShardCount::new(64).is_ok());
        assert!(ShardCount::new(ShardCount::MAX + 1).is_err());
    }

    #[test]
    fn home_shard_is_stable_and_spreads_users() {
        let shards = ShardCount::new(16).unwrap();
        let user = UserId::parse("user-42").unwrap();
        assert_eq!(shards.home_of(&user), shards.home_of(&user));
        let mut seen = [0u32; 16];
        for i in 0..16_000 {
            seen[shards.home_of(&UserId::parse(format!("u{i}")).unwrap()) as usize] += 1;
        }
        // Every shard gets a fair share (expected 1000 each).
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn ring_visits_every_other_shard_once() {
        let shards = ShardCount::new(5).unwrap();
        assert_eq!(shards.ring_after(3).collect::<Vec<_>>(), vec![4, 0, 1, 2]);
        assert_eq!(ShardCount::ONE.ring_after(0).count(), 0);
    }

    #[test]
    fn split_evenly_keeps_every_unit() {
        let parts = split_evenly(100, ShardCount::new(16).unwrap());
        assert_eq!(parts.iter().sum::<u64>(), 100);
        assert_eq!(parts[0], 7);
        assert_eq!(parts[15], 6);
        assert_eq!(
            split_evenly(3, ShardCount::new(4).unwrap()),
            vec![1, 1, 1, 0]
        );
    }
}
