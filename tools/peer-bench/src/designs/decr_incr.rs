//! `DECRBY` first, and `INCRBY` back when the result went negative: no script, two round trips
//! on a loss. It never oversells in the end, but while a loser's units are below zero, a buyer
//! asking for fewer units than are really left hears "sold out" (a false sold-out), and like
//! the single counter it has no per-buyer record.

use redis::aio::ConnectionLike;

use super::single_counter::stock_key;
use super::{read_counter, set_counter, Answer, Attempt, Design};
use crate::crowd::Crowd;

pub struct DecrIncr<C> {
    conn: C,
}

impl<C> DecrIncr<C> {
    pub fn new(conn: C) -> Self {
        Self { conn }
    }
}

#[async_trait::async_trait]
impl<C> Design for DecrIncr<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        "DECR then INCR back"
    }

    async fn setup(&self, run: &str, crowd: &Crowd) -> anyhow::Result<()> {
        set_counter(&mut self.conn.clone(), &stock_key(run), crowd.spec.stock).await
    }

    async fn attempt(&self, run: &str, _: usize, attempt: &Attempt) -> anyhow::Result<Answer> {
        let mut conn = self.conn.clone();
        let key = stock_key(run);
        let after: i64 = redis::cmd("DECRBY")
            .arg(&key)
            .arg(attempt.quantity)
            .query_async(&mut conn)
            .await?;
        if after >= 0 {
            return Ok(Answer::Granted);
        }
        redis::cmd("INCRBY")
            .arg(&key)
            .arg(attempt.quantity)
            .query_async::<i64>(&mut conn)
            .await?;
        Ok(Answer::SoldOut)
    }

    async fn left(&self, run: &str) -> anyhow::Result<i64> {
        read_counter(&mut self.conn.clone(), &stock_key(run)).await
    }
}
