//! The seed's `check_and_decr` (seed 004, flow 1: "GET stock, check > 0, DECR"), generalised to
//! a quantity: one key, one Lua script. Atomic, so it never oversells; it has no per-buyer
//! record, so a retry buys again and nothing stops a buyer from passing the limit.

use redis::aio::ConnectionLike;
use redis::Script;

use super::{read_counter, set_counter, Answer, Attempt, Design};
use crate::crowd::Crowd;

/// The seed's check-and-decrement on one key (also each bucket's, in [`super::buckets`]).
pub(crate) const CHECK_AND_DECR: &str = r"
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
local quantity = tonumber(ARGV[1])
if left < quantity then return 0 end
redis.call('DECRBY', KEYS[1], quantity)
return 1
";

pub struct SingleCounter<C> {
    conn: C,
    script: Script,
}

impl<C> SingleCounter<C> {
    pub fn new(conn: C) -> Self {
        Self {
            conn,
            script: Script::new(CHECK_AND_DECR),
        }
    }
}

/// The one stock key. The hash tag pins it to one slot (one node in a cluster).
pub(crate) fn stock_key(run: &str) -> String {
    format!("peer:{{{run}}}:stock")
}

#[async_trait::async_trait]
impl<C> Design for SingleCounter<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "single counter (Lua)"
    }

    async fn setup(&self, run: &str, crowd: &Crowd) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        set_counter(&mut conn, &stock_key(run), crowd.spec.stock).await?;
        self.script.prepare_invoke().load_async(&mut conn).await?;
        Ok(())
    }

    async fn attempt(&self, run: &str, _: usize, attempt: &Attempt) -> anyhow::Result<Answer> {
        let mut conn = self.conn.clone();
        let took: i64 = self
            .script
            .key(stock_key(run))
            .arg(attempt.quantity)
            .invoke_async(&mut conn)
            .await?;
        Ok(if took == 1 {
            Answer::Granted
        } else {
            Answer::SoldOut
        })
    }

    async fn left(&self, run: &str) -> anyhow::Result<i64> {
        read_counter(&mut self.conn.clone(), &stock_key(run)).await
    }
}
