//! Redis's optimistic locking (redis.io, "Transactions": `WATCH` the key, read it, queue the
//! decrement in `MULTI`, and `EXEC` fails if another client wrote the key meanwhile), retried a
//! bounded number of times. Every conflict costs a round of three to four round trips; under a
//! crowd most `EXEC`s lose, and a buyer whose tries run out is turned away while stock is left.
//!
//! `WATCH` belongs to a connection, so each caller has a connection of its own.

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::single_counter::stock_key;
use super::{read_counter, set_counter, Answer, Attempt, Design};
use crate::crowd::Crowd;

/// Tries that stand for "no bound": each round of contention lets one `EXEC` win, so a
/// request that keeps trying always ends, sold or sold out.
pub const UNTIL_IT_WINS: u32 = 1_000_000;

pub struct WatchMulti {
    /// One connection per caller (`worker` index).
    conns: Vec<Mutex<MultiplexedConnection>>,
    /// Tries per request before the design gives up (3, common in write-ups; or
    /// [`UNTIL_IT_WINS`], Redis's documented retry loop, which trades the refusals for
    /// latency).
    tries: u32,
}

impl WatchMulti {
    pub async fn connect(url: &str, callers: usize, tries: u32) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let mut conns = Vec::with_capacity(callers);
        for _ in 0..callers {
            conns.push(Mutex::new(client.get_multiplexed_async_connection().await?));
        }
        Ok(Self { conns, tries })
    }
}

#[async_trait::async_trait]
impl Design for WatchMulti {
    fn name(&self) -> &'static str {
        if self.tries >= UNTIL_IT_WINS {
            "WATCH/MULTI (until it wins)"
        } else {
            "WATCH/MULTI (3 tries)"
        }
    }

    async fn setup(&self, run: &str, crowd: &Crowd) -> anyhow::Result<()> {
        let mut conn = self.conns[0].lock().await;
        set_counter(&mut *conn, &stock_key(run), crowd.spec.stock).await
    }

    async fn attempt(&self, run: &str, worker: usize, attempt: &Attempt) -> anyhow::Result<Answer> {
        let mut conn = self.conns[worker].lock().await;
        let key = stock_key(run);
        for _ in 0..self.tries {
            redis::cmd("WATCH")
                .arg(&key)
                .query_async::<()>(&mut *conn)
                .await?;
            let left = read_counter(&mut *conn, &key).await?;
            if left < i64::from(attempt.quantity) {
                redis::cmd("UNWATCH").query_async::<()>(&mut *conn).await?;
                return Ok(Answer::SoldOut);
            }
            // EXEC answers nil when the watched key changed: the decrement did not run.
            let committed: Option<(i64,)> = redis::pipe()
                .atomic()
                .decr(&key, attempt.quantity)
                .query_async(&mut *conn)
                .await?;
            if committed.is_some() {
                return Ok(Answer::Granted);
            }
        }
        Ok(Answer::GaveUp)
    }

    async fn left(&self, run: &str) -> anyhow::Result<i64> {
        read_counter(&mut *self.conns[0].lock().await, &stock_key(run)).await
    }
}
