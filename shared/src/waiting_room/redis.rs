//! The Redis adapter of [`QueueStore`]: `queue.lua`, every key of a sale's room in one hash
//! slot (`fs:{wr:<sale>}`), so each step is one atomic script on one node (cluster mode too).

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::{Script, Value};

use super::{
    JoinOutcome, JoinRequest, Place, QueueError, QueueState, QueueStore, StraightIn, NO_SHOW_GRACE,
    NO_SHOW_MIN_SAMPLE,
};
use crate::domain::{SaleId, Timestamp, UserId};

/// queue.lua (public for the test that runs every script twice).
pub static QUEUE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("queue.lua")));

/// The room's keys of `sale` in the order queue.lua takes them; the last one is the
/// straight-in counter of the second `now` falls in.
pub fn keys(sale: &SaleId, now: Timestamp) -> [String; 5] {
    let tag = format!("fs:{{wr:{}}}", sale.as_str());
    [
        format!("{tag}:state"),
        format!("{tag}:pre"),
        format!("{tag}:places"),
        format!("{tag}:shown"),
        format!("{tag}:in:{}", now.as_secs()),
    ]
}

#[derive(Clone)]
pub struct RedisQueueStore<C> {
    conn: C,
}

/// One queue.lua call's arguments (ARGV 1-12).
struct Call<'a> {
    op: &'a str,
    sale: &'a SaleId,
    now: Timestamp,
    drain_per_sec: u32,
    max_boost_percent: u32,
    opens_at: i64,
    buyer: &'a str,
    max_queue: u64,
    rank_key: u64,
    keep_until: i64,
    straight_in_per_sec: u32,
    window_ms: u64,
}

impl<'a> Call<'a> {
    fn new(op: &'a str, sale: &'a SaleId, now: Timestamp, drain_per_sec: u32) -> Self {
        Self {
            op,
            sale,
            now,
            drain_per_sec,
            max_boost_percent: 0,
            opens_at: 0,
            buyer: "",
            max_queue: 0,
            rank_key: 0,
            keep_until: 0,
            straight_in_per_sec: 0,
            window_ms: 0,
        }
    }
}

impl<C> RedisQueueStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C) -> Self {
        Self { conn }
    }

    pub async fn preload_script(&self) -> Result<(), QueueError> {
        let mut conn = self.conn.clone();
        QUEUE.prepare_invoke().load_async(&mut conn).await?;
        Ok(())
    }

    /// Reads a join or restore reply.
    fn join_reply(&self, reply: Vec<Value>) -> Result<JoinOutcome, QueueError> {
        let kind = reply.first().and_then(text);
        let (a, b, rejoined) = (int(reply.get(1)), int(reply.get(2)), int(reply.get(3)));
        match (kind.as_deref(), a, b, rejoined) {
            (Some("placed"), Some(pos), Some(at), Some(rejoined)) if pos > 0 => {
                Ok(JoinOutcome::Placed {
                    place: Place {
                        position: pos as u64,
                        admit_at: Timestamp::from_millis(at),
                    },
                    rejoined: rejoined == 1,
                })
            }
            (Some("pre"), Some(size), _, Some(rejoined)) => Ok(JoinOutcome::PreQueued {
                size: size.max(0) as u64,
                rejoined: rejoined == 1,
            }),
            (Some("full"), Some(waiting), _, _) => Ok(JoinOutcome::Full {
                waiting: waiting.max(0) as u64,
            }),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn run(&self, call: Call<'_>) -> Result<Vec<Value>, QueueError> {
        let mut conn = self.conn.clone();
        let mut invocation = QUEUE.prepare_invoke();
        for key in keys(call.sale, call.now) {
            invocation.key(key);
        }
        invocation
            .arg(call.op)
            .arg(call.now.as_millis())
            .arg(call.drain_per_sec)
            .arg(call.max_boost_percent)
            .arg(NO_SHOW_MIN_SAMPLE)
            .arg(NO_SHOW_GRACE.as_millis() as u64)
            .arg(call.opens_at)
            .arg(call.buyer)
            .arg(call.max_queue)
            .arg(call.rank_key)
            .arg(call.keep_until)
            .arg(call.straight_in_per_sec)
            .arg(call.window_ms);
        Ok(invocation.invoke_async(&mut conn).await?)
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn unexpected(reply: &[Value]) -> QueueError {
    QueueError::UnexpectedReply(format!("{reply:?}"))
}

impl<C> QueueStore for RedisQueueStore<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn join(&self, request: &JoinRequest) -> Result<JoinOutcome, QueueError> {
        let mut call = Call::new("join", &request.sale, request.now, request.drain_per_sec);
        call.max_boost_percent = request.max_boost_percent;
        call.opens_at = request.opens_at.as_millis();
        call.buyer = request.buyer.as_str();
        call.max_queue = request.max_queue;
        call.rank_key = request.rank_key;
        call.keep_until = request.keep_until.as_millis();
        call.window_ms = request.admission_window.as_millis() as u64;
        self.join_reply(self.run(call).await?)
    }

    async fn state(
        &self,
        sale: &SaleId,
        now: Timestamp,
        drain_per_sec: u32,
        max_boost_percent: u32,
        opens_at: Timestamp,
    ) -> Result<QueueState, QueueError> {
        let mut call = Call::new("state", sale, now, drain_per_sec);
        call.max_boost_percent = max_boost_percent;
        call.opens_at = opens_at.as_millis();
        let reply = self.run(call).await?;
        match (
            reply.first().and_then(text).as_deref(),
            int(reply.get(1)),
            int(reply.get(2)),
            int(reply.get(3)),
            int(reply.get(4)),
        ) {
            (Some("state"), Some(tail), Some(serving), Some(pre), Some(rate_milli)) => {
                Ok(QueueState {
                    tail: tail.max(0) as u64,
                    serving: serving.max(0) as u64,
                    pre_queue: pre.max(0) as u64,
                    rate_per_sec: rate_milli as f64 / 1000.0,
                })
            }
            _ => Err(unexpected(&reply)),
        }
    }

    async fn restore(&self, request: &JoinRequest, place: Place) -> Result<Place, QueueError> {
        let mut call = Call::new("restore", &request.sale, request.now, request.drain_per_sec);
        call.opens_at = request.opens_at.as_millis();
        call.buyer = request.buyer.as_str();
        call.max_queue = place.position;
        call.rank_key = place.admit_at.as_millis().max(0) as u64;
        call.keep_until = request.keep_until.as_millis();
        call.window_ms = request.admission_window.as_millis() as u64;
        match self.join_reply(self.run(call).await?)? {
            JoinOutcome::Placed { place, .. } => Ok(place),
            other => Err(QueueError::UnexpectedReply(format!("restore: {other:?}"))),
        }
    }

    async fn straight_in(
        &self,
        sale: &SaleId,
        buyer: &UserId,
        now: Timestamp,
        drain_per_sec: u32,
        per_sec: u32,
        opens_at: Timestamp,
    ) -> Result<StraightIn, QueueError> {
        let mut call = Call::new("straight_in", sale, now, drain_per_sec);
        call.buyer = buyer.as_str();
        call.straight_in_per_sec = per_sec;
        call.opens_at = opens_at.as_millis();
        let reply = self.run(call).await?;
        match reply.first().and_then(text).as_deref() {
            Some("in") => Ok(StraightIn::Allowed),
            Some("queue") => Ok(StraightIn::Queue),
            _ => Err(unexpected(&reply)),
        }
    }

    async fn record_show(
        &self,
        sale: &SaleId,
        place: Place,
        keep_until: Timestamp,
    ) -> Result<(), QueueError> {
        let mut call = Call::new("show", sale, place.admit_at, 1);
        let position = place.position.to_string();
        call.buyer = &position;
        call.rank_key = place.admit_at.as_millis().max(0) as u64;
        call.keep_until = keep_until.as_millis();
        let reply = self.run(call).await?;
        match reply.first().and_then(text).as_deref() {
            Some("shown") => Ok(()),
            _ => Err(unexpected(&reply)),
        }
    }
}
