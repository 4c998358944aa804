//! The stock split evenly over bucket keys, each buyer hashed to one bucket, one Lua
//! check-and-decrement on that bucket and no fallback: a buyer whose bucket is empty hears
//! "sold out" while other buckets still hold units. It spreads the hot key (and, in a cluster,
//! the load over nodes) at the price of false sold-outs, and keeps no per-buyer record.

use redis::aio::ConnectionLike;
use redis::Script;

use super::single_counter::CHECK_AND_DECR;
use super::{read_counter, set_counter, Answer, Attempt, Design};
use crate::crowd::Crowd;

pub struct Buckets<C> {
    conn: C,
    buckets: u32,
    script: Script,
}

impl<C> Buckets<C> {
    pub fn new(conn: C, buckets: u32) -> Self {
        Self {
            conn,
            buckets: buckets.max(1),
            script: Script::new(CHECK_AND_DECR),
        }
    }

    fn key(&self, run: &str, bucket: u32) -> String {
        // One hash tag per bucket: buckets spread over a cluster's slots.
        format!("peer:{{{run}:b{bucket}}}:stock")
    }

    /// Units per bucket: an even split, the first `stock % buckets` buckets one more.
    pub fn split(stock: u64, buckets: u32) -> Vec<u64> {
        let n = u64::from(buckets.max(1));
        (0..n)
            .map(|b| stock / n + u64::from(b < stock % n))
            .collect()
    }
}

#[async_trait::async_trait]
impl<C> Design for Buckets<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "buckets, no fallback"
    }

    async fn setup(&self, run: &str, crowd: &Crowd) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        for (bucket, units) in Self::split(crowd.spec.stock, self.buckets)
            .into_iter()
            .enumerate()
        {
            set_counter(&mut conn, &self.key(run, bucket as u32), units).await?;
        }
        self.script.prepare_invoke().load_async(&mut conn).await?;
        Ok(())
    }

    async fn attempt(&self, run: &str, _: usize, attempt: &Attempt) -> anyhow::Result<Answer> {
        // The buyer's bucket: a multiplicative hash of the buyer id (Knuth), stable per buyer.
        let bucket = (attempt.buyer.wrapping_mul(2_654_435_761)) % self.buckets;
        let took: i64 = self
            .script
            .key(self.key(run, bucket))
            .arg(attempt.quantity)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if took == 1 {
            Answer::Granted
        } else {
            Answer::SoldOut
        })
    }

    async fn left(&self, run: &str) -> anyhow::Result<i64> {
        let mut conn = self.conn.clone();
        let mut left = 0;
        for bucket in 0..self.buckets {
            left += read_counter(&mut conn, &self.key(run, bucket)).await?;
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_keeps_every_unit() {
        let split = Buckets::<()>::split(1003, 8);
        assert_eq!(split.iter().sum::<u64>(), 1003);
        assert_eq!(split[0], 126);
        assert_eq!(split[7], 125);
    }
}
