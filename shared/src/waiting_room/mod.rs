//! The waiting room (seed 004 flow 8): a fair queue in front of reserve, per sale, opt-in.
//!
//! How it works, and why each part is shaped so:
//! - **Join** (`POST /sales/{saleId}/queue`, authenticated): one atomic Redis step
//!   ([`redis::RedisQueueStore`], `queue.lua`) gives the buyer one place per sale; joining again
//!   answers the same place, so a place is bound to a person, not to a request id a bot can make
//!   up. The answer carries the position, the time the place is admitted, and a signed
//!   **ticket** ([`ticket`]) bound to the buyer and the sale.
//! - **Admission needs no controller**: each place gets its admission time when it is given
//!   out, on a schedule that drains the queue at the sale's rate (`admit_at = max(previous
//!   place's time + 1/rate, now)`, a virtual clock). Reserve checks the ticket alone
//!   ([`room::WaitingRoom::admit`]): signature, buyer, sale, and `admit_at <= now < admit_at + window`. Nothing on
//!   that path depends on Redis, so a Redis loss mid-queue does not void admitted tickets.
//! - **Abandoned places do not stall the queue**: admission is by time, so a buyer who never
//!   comes back holds nobody up. What no-shows cost is throughput (admitted people who do not
//!   buy); the schedule makes up for them by admitting faster, bounded ([`schedule::boost`]):
//!   the queue counts the places admitted per minute and, as reserve sees their tickets, the
//!   ones that came; the rate for new places is multiplied by `admitted / came` of the last
//!   whole minute that ended at least [`NO_SHOW_GRACE`] ago, at most
//!   `1 + max_boost_percent / 100` (default 1.5), and only when that minute admitted at least
//!   [`NO_SHOW_MIN_SAMPLE`] places. Places already given out keep their times (a ticket's
//!   promise); only new places come faster. After a Redis loss the counts start again (and a
//!   place restored from its ticket is not counted as admitted), so the boost stays off until
//!   a whole minute has been measured: the safe side.
//! - **Fairness**: joins before the opening form a **pre-queue** (from `pre_queue` before the
//!   opening) whose order is random and fixed at the opening: each buyer's rank is
//!   `HMAC-SHA256(seed, buyer id)` ([`ticket::PreQueueSeed`]), with a per-sale seed derived from
//!   the ticket key; its SHA-256 is published before the opening and the seed after it, so an
//!   auditor can recompute the order. Nobody can improve their rank by joining early or often.
//!   Joins after the opening are first come, first served.
//! - **Status** (`GET /sales/{saleId}/queue`, public): serving position, queue length, rate.
//!   The same for every caller, so it is cacheable (API Gateway's stage cache on AWS, one
//!   second, plus `Cache-Control`); a client polls with a backoff proportional to its distance
//!   (`poll_after_seconds`), and needs no poll at all to be admitted (its ticket says when).
//!
//! Modes ([`RoomMode`]): `always` (every reserve needs an admitted ticket) or `threshold`
//! (buyers go straight in while nobody waits and fewer than N a second arrive without a ticket;
//! beyond that, reserve sends them to the queue).

pub mod http;
pub mod memory;
pub mod redis;
pub mod room;
pub mod schedule;
pub mod ticket;

use std::future::Future;
use std::time::Duration;

use crate::domain::{SaleId, Timestamp, UserId};

/// Admitted places that have not reserved this long after their admission count as no-shows.
pub const NO_SHOW_GRACE: Duration = Duration::from_secs(30);
/// The no-show boost starts only once this many places are past [`NO_SHOW_GRACE`].
pub const NO_SHOW_MIN_SAMPLE: u64 = 100;

/// When reserve asks for a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomMode {
    /// Every reserve needs an admitted ticket.
    Always,
    /// Without a ticket, a buyer goes straight in while nobody is waiting and fewer than
    /// `straight_in_per_sec` buyers a second have done so (Cloudflare's "new users per minute"
    /// threshold, per second); otherwise reserve answers 403 `queue-required`.
    Threshold { straight_in_per_sec: u32 },
}

/// A sale's waiting-room settings (part of the sale record; `PUT /sales/{saleId}` sets them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomSettings {
    pub mode: RoomMode,
    /// Places admitted per second (seed 004: 10,000).
    pub drain_per_sec: u32,
    /// Most places waiting at once (not yet admitted); a join beyond is 503 (seed 004: 100,000).
    pub max_queue: u64,
    /// How long an admitted ticket may reserve, from its admission time.
    pub admission_window: Duration,
    /// How long before the opening joins are taken (they form the pre-queue).
    pub pre_queue: Duration,
    /// The no-show boost's bound, in percent of the drain rate (0 turns it off).
    pub max_boost_percent: u32,
}

impl RoomSettings {
    pub const DEFAULT_DRAIN_PER_SEC: u32 = 10_000;
    pub const DEFAULT_MAX_QUEUE: u64 = 100_000;
    pub const DEFAULT_ADMISSION_WINDOW: Duration = Duration::from_secs(300);
    pub const DEFAULT_PRE_QUEUE: Duration = Duration::from_secs(30 * 60);
    pub const DEFAULT_MAX_BOOST_PERCENT: u32 = 50;

    /// The seed's numbers in `mode`.
    pub fn with_defaults(mode: RoomMode) -> Self {
        Self {
            mode,
            drain_per_sec: Self::DEFAULT_DRAIN_PER_SEC,
            max_queue: Self::DEFAULT_MAX_QUEUE,
            admission_window: Self::DEFAULT_ADMISSION_WINDOW,
            pre_queue: Self::DEFAULT_PRE_QUEUE,
            max_boost_percent: Self::DEFAULT_MAX_BOOST_PERCENT,
        }
    }
}

/// One join, as the queue store sees it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub sale: SaleId,
    pub buyer: UserId,
    pub now: Timestamp,
    pub opens_at: Timestamp,
    pub drain_per_sec: u32,
    pub max_queue: u64,
    pub max_boost_percent: u32,
    /// The buyer's pre-queue rank key (lower goes first), below 2^52 so a Redis sorted-set score
    /// holds it exactly ([`ticket::PreQueueSeed::rank_key`]).
    pub rank_key: u64,
    /// The room's keys expire then (the sale's end plus the admission window and a margin).
    pub keep_until: Timestamp,
    /// A place whose window is over when its buyer joins again is given up for a new one at
    /// the back.
    pub admission_window: Duration,
}

/// A place in the queue: 1-based position, and the time it is admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub position: u64,
    pub admit_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    /// A place (the buyer's earlier one when `rejoined`).
    Placed { place: Place, rejoined: bool },
    /// Before the opening: in the pre-queue of `size` buyers; the place is given at the opening.
    PreQueued { size: u64, rejoined: bool },
    /// `waiting` places are waiting already, the most the room holds.
    Full { waiting: u64 },
}

/// The queue as the status endpoint shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueState {
    /// Places given out (the last position).
    pub tail: u64,
    /// Places admitted by now (positions up to this one may reserve).
    pub serving: u64,
    /// Buyers in the pre-queue (before the opening: so far; after: its size at the opening).
    pub pre_queue: u64,
    /// Places a second now, the no-show boost included.
    pub rate_per_sec: f64,
}

impl QueueState {
    pub fn waiting(&self) -> u64 {
        self.tail.saturating_sub(self.serving)
    }
}

/// Whether a buyer without a ticket may go straight in (threshold mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StraightIn {
    Allowed,
    /// People are waiting, or the threshold is reached this second: join the queue.
    Queue,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue store unavailable: {0}")]
    Unavailable(String),
    #[error("unexpected queue store reply: {0}")]
    UnexpectedReply(String),
}

impl From<::redis::RedisError> for QueueError {
    fn from(error: ::redis::RedisError) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// The port: the queue's state, per sale. Every operation is one atomic step.
pub trait QueueStore: Send + Sync {
    /// Gives `buyer` a place, or answers the one it has. Running it twice answers the same
    /// place (the second run finds the first's), so a lost answer is recovered by a retry.
    fn join(
        &self,
        request: &JoinRequest,
    ) -> impl Future<Output = Result<JoinOutcome, QueueError>> + Send;
    /// The queue now. Read-only.
    fn state(
        &self,
        sale: &SaleId,
        now: Timestamp,
        drain_per_sec: u32,
        max_boost_percent: u32,
        opens_at: Timestamp,
    ) -> impl Future<Output = Result<QueueState, QueueError>> + Send;
    /// Gives `buyer` back the place of its ticket (`place`) when the store lost it, raising the
    /// tail to it so that people who join after go behind it; the stored place if there is one.
    fn restore(
        &self,
        request: &JoinRequest,
        place: Place,
    ) -> impl Future<Output = Result<Place, QueueError>> + Send;
    /// Threshold mode: lets a buyer without a ticket in (counting each buyer once a second) or
    /// sends it to the queue.
    fn straight_in(
        &self,
        sale: &SaleId,
        buyer: &UserId,
        now: Timestamp,
        drain_per_sec: u32,
        per_sec: u32,
        opens_at: Timestamp,
    ) -> impl Future<Output = Result<StraightIn, QueueError>> + Send;
    /// Records that `place` came to reserve (the no-show boost's measure); idempotent.
    fn record_show(
        &self,
        sale: &SaleId,
        place: Place,
        keep_until: Timestamp,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
}
