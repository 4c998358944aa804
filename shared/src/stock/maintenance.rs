//! The maintenance port of the stock engine: what the expiry cleanup, the hold reconciler and
//! the stock rebuild need beyond the buyer-facing [`super::StockEngine`]. Kept apart so the hot
//! path's port stays small and its fakes do not have to implement admin operations.
//!
//! Every operation touches one shard's slot (or, for claims, the buyer's home shard's slot),
//! like the rest of the engine, so it works on a Redis Cluster.

use std::future::Future;
use std::time::Duration;

pub use super::{HoldSpec, HoldState, RestoreOutcome};
use super::{SaleStock, StockError};
use crate::domain::{ReservationId, Timestamp, UserId};

/// A hold as stored on its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRecord {
    pub reservation_id: ReservationId,
    pub user: UserId,
    pub quantity: u32,
    pub shard: u16,
    pub state: HoldState,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A buyer's claim made for the fallback path and never confirmed (see claim.lua).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingClaim {
    pub reservation_id: ReservationId,
    pub user: UserId,
    pub claimed_at: Timestamp,
}

/// A buyer's claim on their home shard: reservation id -> quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub user: UserId,
    pub reservation_id: ReservationId,
    pub quantity: u32,
}

/// What Redis has for one shard of a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// No stock record: never set up, or Redis lost its data.
    Missing,
    /// A paused placeholder left by a rebuild that has not written this shard yet.
    Placeholder { paused_at: Option<Timestamp> },
    /// A complete record; `paused_at` is set while a rebuild has selling paused, `fenced` while
    /// the pause is the fence's (the data may have lost writes: rebuild at once).
    Ready {
        paused_at: Option<Timestamp>,
        fenced: bool,
    },
}

impl ShardState {
    pub fn is_ready_and_selling(self) -> bool {
        matches!(
            self,
            Self::Ready {
                paused_at: None,
                ..
            }
        )
    }

    /// When selling was paused, if it is.
    pub fn paused_at(self) -> Option<Timestamp> {
        match self {
            Self::Missing => None,
            Self::Placeholder { paused_at } | Self::Ready { paused_at, .. } => paused_at,
        }
    }
}

/// One hold a rebuilt shard must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuiltHold {
    pub hold: HoldSpec,
    /// Sold (an order exists) rather than held.
    pub committed: bool,
}

/// Everything a shard is rebuilt from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    pub shard: u16,
    pub initial: i64,
    pub per_user_limit: u32,
    pub holds: Vec<RebuiltHold>,
}

/// A rebuilt shard's counters. `available` < 0 means the shard is oversold by that much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardWritten {
    pub shard: u16,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    /// Active holds in Redis that no durable record backs; marked released.
    pub dropped_holds: u32,
}

/// The port.
pub trait StockMaintenance: Send + Sync {
    /// Active holds of a shard created at or before `created_before`, oldest first, from
    /// position `offset` of that list, at most `limit`.
    fn stale_holds(
        &self,
        sale: &SaleStock,
        shard: u16,
        created_before: Timestamp,
        offset: usize,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<HoldRecord>, StockError>> + Send;

    /// The holds with these ids on a shard (any state), `None` where there is none.
    fn holds(
        &self,
        sale: &SaleStock,
        shard: u16,
        ids: &[ReservationId],
    ) -> impl Future<Output = Result<Vec<Option<HoldRecord>>, StockError>> + Send;

    /// Fallback claims of a shard's buyers never confirmed, made at or before `claimed_before`.
    fn stale_claims(
        &self,
        sale: &SaleStock,
        shard: u16,
        claimed_before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingClaim>, StockError>> + Send;

    /// Re-creates a hold from its durable reservation (not the claim: see
    /// [`StockMaintenance::restore_claims`]). With `allow_debt`, takes the units even if the
    /// shard has fewer (it goes negative). Checks the fence like a reserve does.
    fn restore_hold(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
        allow_debt: bool,
    ) -> impl Future<Output = Result<RestoreOutcome, StockError>> + Send;

    /// Records claims on the buyers' home shards. Idempotent; returns how many were new.
    fn restore_claims(
        &self,
        sale: &SaleStock,
        claims: &[Claim],
    ) -> impl Future<Output = Result<u64, StockError>> + Send;

    fn shard_states(
        &self,
        sale: &SaleStock,
    ) -> impl Future<Output = Result<Vec<ShardState>, StockError>> + Send;

    /// Pauses selling on every shard, creating paused placeholders where records are gone.
    /// Returns how many placeholders were created.
    fn pause(
        &self,
        sale: &SaleStock,
        per_user_limit: u32,
        now: Timestamp,
    ) -> impl Future<Output = Result<u16, StockError>> + Send;

    /// Writes one shard from the durable records, atomically. The shard stays paused.
    fn write_shard(
        &self,
        sale: &SaleStock,
        plan: &ShardPlan,
        now: Timestamp,
    ) -> impl Future<Output = Result<ShardWritten, StockError>> + Send;

    /// Reopens every shard. Fails (and reopens none after the first refusal) if a shard has no
    /// complete record.
    fn resume(&self, sale: &SaleStock) -> impl Future<Output = Result<(), StockError>> + Send;

    /// Takes the sale's rebuild lock for `ttl` unless someone holds it. True if taken.
    fn try_lock_rebuild(
        &self,
        sale: &SaleStock,
        token: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StockError>> + Send;

    /// Releases the rebuild lock if `token` still owns it.
    fn unlock_rebuild(
        &self,
        sale: &SaleStock,
        token: &str,
    ) -> impl Future<Output = Result<(), StockError>> + Send;
}
