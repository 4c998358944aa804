//! The single counter with the buyer's records in the same Lua script: the idempotency key
//! (a resend is answered "already granted"), the buyer's count against the limit, and the
//! check-and-decrement. What a careful team builds on the seed's `check_and_decr` with its
//! idempotency flow (seed 004, flow 7) and the per-user check seckill projects add. It has no
//! hold (nothing expires or is given back), no shards and no fence against lost writes: the
//! fastest design here with no failure in the crowd's columns, and the one ours is held to.

use redis::aio::ConnectionLike;
use redis::Script;

use super::single_counter::stock_key;
use super::{read_counter, set_counter, Answer, Attempt, Design};
use crate::crowd::Crowd;

/// KEYS: stock, idempotency record, buyer's count (one hash tag: one slot).
/// ARGV: quantity, limit, record lifetime (s).
/// Returns 1 granted, 2 replayed, 3 limit reached, 0 sold out.
const RESERVE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
local quantity = tonumber(ARGV[1])
local have = tonumber(redis.call('GET', KEYS[3]) or '0')
if have + quantity > tonumber(ARGV[2]) then return 3 end
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left < quantity then return 0 end
redis.call('DECRBY', KEYS[1], quantity)
redis.call('INCRBY', KEYS[3], quantity)
redis.call('SET', KEYS[2], quantity, 'EX', ARGV[3])
return 1
";

pub struct CounterWithRecords<C> {
    conn: C,
    script: Script,
    limit: u32,
}

impl<C> CounterWithRecords<C> {
    pub fn new(conn: C, limit: u32) -> Self {
        Self {
            conn,
            script: Script::new(RESERVE),
            limit,
        }
    }
}

#[async_trait::async_trait]
impl<C> Design for CounterWithRecords<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "single counter + buyer records (Lua)"
    }

    async fn setup(&self, run: &str, crowd: &Crowd) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        set_counter(&mut conn, &stock_key(run), crowd.spec.stock).await?;
        self.script.prepare_invoke().load_async(&mut conn).await?;
        Ok(())
    }

    async fn attempt(&self, run: &str, _: usize, attempt: &Attempt) -> anyhow::Result<Answer> {
        let reply: i64 = self
            .script
            .key(stock_key(run))
            .key(format!("peer:{{{run}}}:idem:{}", attempt.idempotency_key()))
            .key(format!("peer:{{{run}}}:buyer:{}", attempt.buyer))
            .arg(attempt.quantity)
            .arg(self.limit)
            .arg(86_400)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match reply {
            1 => Answer::Granted,
            2 => Answer::Replayed,
            3 => Answer::LimitReached,
            _ => Answer::SoldOut,
        })
    }

    async fn left(&self, run: &str) -> anyhow::Result<i64> {
        read_counter(&mut self.conn.clone(), &stock_key(run)).await
    }
}
