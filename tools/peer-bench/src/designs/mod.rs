//! The designs under comparison, each written here from its published description, behind one
//! small interface so the same crowd can be sent at each.
//!
//! | design | what it is | where it comes from |
//! |---|---|---|
//! | [`single_counter`] | one key, a Lua check-and-decrement | the seed's `check_and_decr` (seed 004, flow 1) |
//! | [`counter_with_records`] | the single counter with the buyer's records in the same script: idempotency key, per-buyer count and limit | the seed's check_and_decr with its idempotency flow (seed 004, flow 7) and the per-user check seckill projects add |
//! | [`decr_incr`] | `DECRBY`, then `INCRBY` back when the result is negative | common in Java "seckill" projects |
//! | [`watch_multi`] | `WATCH`/`GET`/`MULTI`/`DECRBY`/`EXEC` on one key, retried on conflict (3 tries, or until it wins) | Redis's optimistic-locking pattern (redis.io, "Transactions") |
//! | [`buckets`] | the stock split over bucket keys, one Lua check-and-decrement on the buyer's bucket, no fallback | bucketed inventory write-ups |
//! | [`dynamo_conditional`] | one item, `UpdateItem` `SET available = available - :q` if `available >= :q` | serverless samples |
//! | [`ours`] | `RedisStockEngine::reserve`: split shards with fallback, per-user limit, idempotency and the hold record in the same atomic steps | this project |

pub mod buckets;
pub mod counter_with_records;
pub mod decr_incr;
pub mod dynamo_conditional;
pub mod ours;
pub mod single_counter;
pub mod watch_multi;

use crate::crowd::Crowd;

/// One request of one buyer. `request` numbers the buyer's distinct requests: a retry repeats
/// the same `request` (and so the same idempotency key, where a design has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub buyer: u32,
    pub request: u32,
    pub quantity: u32,
}

impl Attempt {
    /// The idempotency key a client would send with this request.
    pub fn idempotency_key(&self) -> String {
        format!("b{}-r{}", self.buyer, self.request)
    }
}

/// What a design told the buyer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The units were taken for this request now.
    Granted,
    /// The same request was seen before: its earlier answer stands, nothing taken now.
    Replayed,
    SoldOut,
    /// Units are left, but not enough in one place for this quantity (ours: no single shard
    /// has them).
    Insufficient,
    LimitReached,
    /// The design gave up on the request (a transaction lost its retries to contention).
    GaveUp,
    /// A copy of this request is still running: ask again in a moment.
    InProgress,
}

/// A stock design, driven by the crowd. `worker` is the caller's index in `0..concurrency`
/// (a design that needs a connection of its own per caller, as `WATCH` does, keys it by that).
#[async_trait::async_trait]
pub trait Design: Send + Sync {
    fn name(&self) -> &'static str;
    /// Puts the crowd's stock on sale under `run` (a fresh key space per run).
    async fn setup(&self, run: &str, crowd: &Crowd) -> anyhow::Result<()>;
    async fn attempt(&self, run: &str, worker: usize, attempt: &Attempt) -> anyhow::Result<Answer>;
    /// Units the store's own counters say are left (for designs with holds: still available).
    async fn left(&self, run: &str) -> anyhow::Result<i64>;
}

/// Sets `key` to `units` (a design's stock counter).
pub(crate) async fn set_counter<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
    units: u64,
) -> anyhow::Result<()> {
    redis::cmd("SET")
        .arg(key)
        .arg(units)
        .query_async::<()>(conn)
        .await?;
    Ok(())
}

/// Reads an integer key, 0 when absent.
pub(crate) async fn read_counter<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    key: &str,
) -> anyhow::Result<i64> {
    let value: Option<i64> = redis::cmd("GET").arg(key).query_async(conn).await?;
    Ok(value.unwrap_or(0))
}
