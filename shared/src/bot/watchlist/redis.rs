//! The Redis adapter of [`Watchlist`]. Each subject's keys share one hash tag (one slot), so
//! its observation is one script; the block index (for the admin list) is a sorted set of its
//! own, written before the block key (the block key decides; the index only lists).

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Script, Value};

use super::{
    sliding_minute, Block, BlockList, Observation, Redeem, Redemption, Subject, Watchlist,
    WatchlistError,
};
use crate::domain::{SaleId, Timestamp, UserId};
use crate::rate_limit::RequestId;

/// observe.lua (public for the test that runs every script twice).
pub static OBSERVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("observe.lua")));
/// redeem.lua (public for the test that runs every script twice).
pub static REDEEM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("redeem.lua")));

/// The sorted set of blocked subjects' labels, scored by when their block ends (ms).
const BLOCK_INDEX: &str = "fs:{bot:blocks}";

fn tag(subject: &Subject) -> String {
    format!("fs:{{bot:{}}}", subject.label())
}

/// The block key of a subject (the same whatever the sale and the minute).
pub fn block_key(subject: &Subject) -> String {
    format!("{}:block", tag(subject))
}

/// A buyer's spent-challenge key for `nonce` (in the buyer's slot, beside its pass: the nonce
/// is bound to the buyer anyway).
pub fn spent_key(buyer: &UserId, nonce: &str) -> String {
    format!("{}:spent:{nonce}", tag(&Subject::Buyer(buyer.clone())))
}

/// The keys of one subject: block, this minute, previous minute, pass (for `sale`).
pub fn subject_keys(subject: &Subject, sale: &SaleId, now: Timestamp) -> [String; 4] {
    let t = tag(subject);
    let minute = now.as_millis().div_euclid(60_000);
    [
        block_key(subject),
        format!("{t}:count:{minute}"),
        format!("{t}:count:{}", minute - 1),
        format!("{t}:pass:{sale}"),
    ]
}

#[derive(Clone)]
pub struct RedisWatchlist<C> {
    conn: C,
}

impl<C> RedisWatchlist<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C) -> Self {
        Self { conn }
    }

    async fn observe_one(
        &self,
        subject: &Subject,
        sale: &SaleId,
        request: &RequestId,
        now: Timestamp,
    ) -> Result<(u32, Option<Block>, bool), WatchlistError> {
        let keys = subject_keys(subject, sale, now);
        let reply: Vec<Value> = OBSERVE
            .key(&keys[0])
            .key(&keys[1])
            .key(&keys[2])
            .key(&keys[3])
            .arg(request.as_str())
            .invoke_async(&mut self.conn.clone())
            .await?;
        let int = |v: &Value| match v {
            Value::Int(i) => Ok(*i),
            other => Err(WatchlistError::UnexpectedReply(format!("{other:?}"))),
        };
        let [block_left, reason, current, previous, pass_left] = &reply[..] else {
            return Err(WatchlistError::UnexpectedReply(format!("{reply:?}")));
        };
        let block_left = int(block_left)?;
        let blocked = (block_left > 0).then(|| Block {
            subject: subject.clone(),
            reason: match reason {
                Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                _ => String::new(),
            },
            remaining: Duration::from_millis(block_left as u64),
        });
        let into_minute = Duration::from_millis(now.as_millis().rem_euclid(60_000) as u64);
        let per_minute = sliding_minute(
            int(current)?.max(0) as u64,
            int(previous)?.max(0) as u64,
            into_minute,
        );
        Ok((per_minute, blocked, int(pass_left)? > 0))
    }
}

impl<C> Watchlist for RedisWatchlist<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn observe(
        &self,
        buyer: &UserId,
        address: Option<&str>,
        sale: &SaleId,
        request: &RequestId,
        now: Timestamp,
    ) -> Result<Observation, WatchlistError> {
        let buyer_subject = Subject::Buyer(buyer.clone());
        let address_subject = address.map(|a| Subject::Address(a.to_owned()));
        let (buyer_seen, address_seen) = futures::future::join(
            self.observe_one(&buyer_subject, sale, request, now),
            async {
                match &address_subject {
                    Some(subject) => self
                        .observe_one(subject, sale, request, now)
                        .await
                        .map(Some),
                    None => Ok(None),
                }
            },
        )
        .await;
        let (buyer_per_minute, buyer_block, pass) = buyer_seen?;
        let (address_per_minute, address_block) = match address_seen? {
            Some((n, block, _)) => (n, block),
            None => (0, None),
        };
        let blocked = [buyer_block, address_block]
            .into_iter()
            .flatten()
            .max_by_key(|b| b.remaining);
        Ok(Observation {
            buyer_per_minute,
            address_per_minute,
            blocked,
            pass,
        })
    }

    async fn block(
        &self,
        subject: &Subject,
        reason: &str,
        duration: Duration,
        now: Timestamp,
    ) -> Result<(), WatchlistError> {
        let mut conn = self.conn.clone();
        let ms = duration.as_millis().max(1) as u64;
        // The index first, the key second (they live in different slots, so not one step):
        // a block written half is either listed but not in force (the list reads the key, and
        // the entry is pruned when its time is up) or not written at all; never in force and
        // hidden from the admins who must be able to lift it. The index only lists: drop what
        // has ended on every write, so it does not grow without bound.
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(BLOCK_INDEX)
            .arg("-inf")
            .arg(now.as_millis())
            .query_async::<()>(&mut conn)
            .await?;
        redis::cmd("ZADD")
            .arg(BLOCK_INDEX)
            .arg(now.as_millis() + ms as i64)
            .arg(subject.label())
            .query_async::<()>(&mut conn)
            .await?;
        redis::cmd("SET")
            .arg(block_key(subject))
            .arg(reason)
            .arg("PX")
            .arg(ms)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn lift(&self, subject: &Subject) -> Result<bool, WatchlistError> {
        let mut conn = self.conn.clone();
        // The key decides, so it goes last: a lift that stops half way leaves the block in
        // force, and the admin's retry (told 503) finishes it.
        redis::cmd("ZREM")
            .arg(BLOCK_INDEX)
            .arg(subject.label())
            .query_async::<()>(&mut conn)
            .await?;
        let removed: i64 = redis::cmd("DEL")
            .arg(block_key(subject))
            .query_async(&mut conn)
            .await?;
        Ok(removed > 0)
    }

    async fn active_blocks(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<BlockList, WatchlistError> {
        let mut conn = self.conn.clone();
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(BLOCK_INDEX)
            .arg("-inf")
            .arg(now.as_millis())
            .query_async::<()>(&mut conn)
            .await?;
        let total: usize = redis::cmd("ZCARD")
            .arg(BLOCK_INDEX)
            .query_async(&mut conn)
            .await?;
        if limit == 0 {
            return Ok(BlockList {
                blocks: Vec::new(),
                total,
            });
        }
        // Longest remaining first; a bot wave can leave thousands, so the page is bounded.
        let labels: Vec<String> = redis::cmd("ZRANGE")
            .arg(BLOCK_INDEX)
            .arg(0)
            .arg(limit.saturating_sub(1))
            .arg("REV")
            .query_async(&mut conn)
            .await?;
        // Each block key is in its own slot: one small pipeline per key, all at once.
        let lookups = labels
            .iter()
            .filter_map(|l| Subject::parse_label(l))
            .map(|subject| {
                let mut conn = self.conn.clone();
                async move {
                    let key = block_key(&subject);
                    let (reason, left): (Option<String>, i64) = redis::pipe()
                        .cmd("GET")
                        .arg(&key)
                        .cmd("PTTL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await?;
                    // The key decides: a block lifted or expired is not listed, whatever the
                    // index says.
                    Ok::<_, WatchlistError>(reason.filter(|_| left > 0).map(|reason| Block {
                        subject,
                        reason,
                        remaining: Duration::from_millis(left as u64),
                    }))
                }
            });
        let blocks = futures::future::try_join_all(lookups)
            .await?
            .into_iter()
            .flatten()
            .collect();
        Ok(BlockList { blocks, total })
    }

    async fn redeem(&self, r: &Redeem<'_>, now: Timestamp) -> Result<Redemption, WatchlistError> {
        let pass_key = subject_keys(&Subject::Buyer(r.buyer.clone()), r.sale, now)[3].clone();
        let answer: i64 = REDEEM
            .key(spent_key(r.buyer, r.nonce))
            .key(pass_key)
            .arg(r.request.as_str())
            .arg(r.nonce_ttl.as_millis().max(1) as u64)
            .arg(r.pass_for.as_millis().max(1) as u64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match answer {
            1 => Ok(Redemption::Granted),
            2 => Ok(Redemption::AlreadyRedeemed { pass_stands: true }),
            0 => Ok(Redemption::AlreadyRedeemed { pass_stands: false }),
            other => Err(WatchlistError::UnexpectedReply(format!("redeem: {other}"))),
        }
    }
}
