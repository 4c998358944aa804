//! The Redis adapter of [`StockMaintenance`]. Reads are plain commands (ZRANGEBYSCORE, HMGET);
//! writes are Lua scripts, each on one shard's slot.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::try_join_all;
use redis::aio::ConnectionLike;

use super::reply::unexpected;
use super::{scripts, RedisStockEngine};
use crate::domain::{ReservationId, Timestamp, UserId};
use crate::stock::maintenance::{
    Claim, HoldRecord, HoldSpec, HoldState, PendingClaim, RestoreOutcome, ShardPlan, ShardState,
    ShardWritten, StockMaintenance,
};
use crate::stock::{SaleStock, ShardKeys, StockError};

/// Claims restored per script call (all on one home shard, so one slot).
const CLAIMS_PER_CALL: usize = 200;

/// The state letter that starts an encoded hold.
pub(super) fn hold_state_of(raw: &str) -> Result<HoldState, StockError> {
    Ok(match raw.split('|').next() {
        Some("H") => HoldState::Held,
        Some("C") => HoldState::Committed,
        Some("R") => HoldState::Released,
        Some("X") => HoldState::Voided,
        _ => return Err(unexpected("holds", format!("malformed hold {raw:?}"))),
    })
}

/// Decodes a hold "state|qty|expires_ms|created_ms|user" (the user comes last: it may hold '|').
fn decode_hold(id: ReservationId, shard: u16, raw: &str) -> Result<HoldRecord, StockError> {
    let bad = || unexpected("holds", format!("malformed hold {raw:?}"));
    let state = hold_state_of(raw)?;
    let mut parts = raw.splitn(5, '|').skip(1);
    let mut next = || parts.next().ok_or_else(bad);
    let quantity = next()?.parse().map_err(|_| bad())?;
    let expires_at = Timestamp::from_millis(next()?.parse().map_err(|_| bad())?);
    let created_at = Timestamp::from_millis(next()?.parse().map_err(|_| bad())?);
    let user = UserId::parse(next()?).map_err(|_| bad())?;
    Ok(HoldRecord {
        reservation_id: id,
        user,
        quantity,
        shard,
        state,
        created_at,
        expires_at,
    })
}

fn encode_hold(committed: bool, hold: &HoldSpec, created: Timestamp) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        if committed { 'C' } else { 'H' },
        hold.quantity.get(),
        hold.expires_at.as_millis(),
        created.as_millis(),
        hold.user
    )
}

fn parse_id(raw: &str) -> Result<ReservationId, StockError> {
    ReservationId::parse(raw).map_err(|_| unexpected("holds", format!("bad reservation id {raw}")))
}

impl<C> RedisStockEngine<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    /// restore_hold.lua: re-takes a lost hold's units (see [`StockMaintenance::restore_hold`]).
    pub(super) async fn restore(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
        allow_debt: bool,
    ) -> Result<RestoreOutcome, StockError> {
        let keys = ShardKeys::new(&sale.sale_id, hold.shard);
        let reply = self
            .run(
                "restore_hold",
                &scripts::RESTORE_HOLD,
                &[keys.stock(), keys.holds(), keys.hold_times()],
                &[
                    hold.reservation_id.to_string(),
                    hold.user.to_string(),
                    hold.quantity.get().to_string(),
                    hold.expires_at.as_millis().to_string(),
                    now.as_millis().to_string(),
                    if allow_debt { "1" } else { "0" }.to_string(),
                    self.fence_arg(),
                ],
            )
            .await?;
        Ok(match reply.status.as_str() {
            "RESTORED" => RestoreOutcome::Restored {
                available_after: reply.int(0)?,
            },
            "HELD" => RestoreOutcome::AlreadyHeld,
            "COMMITTED" => RestoreOutcome::WasCommitted,
            "NO_UNITS" => RestoreOutcome::NoUnits {
                available: reply.int(0)?,
            },
            "PAUSED" => RestoreOutcome::Paused,
            "FENCED" => RestoreOutcome::Fenced,
            "UNKNOWN_SALE" => RestoreOutcome::SaleNotSetUp,
            _ => return Err(reply.unknown_status()),
        })
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StockError> {
        let mut conn = self.conn.clone();
        Ok(cmd.query_async(&mut conn).await?)
    }

    async fn read_holds(
        &self,
        sale: &SaleStock,
        shard: u16,
        ids: &[ReservationId],
    ) -> Result<Vec<Option<HoldRecord>>, StockError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = ShardKeys::new(&sale.sale_id, shard);
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(keys.holds());
        for id in ids {
            cmd.arg(id.to_string());
        }
        let raws: Vec<Option<String>> = self.query(&cmd).await?;
        ids.iter()
            .zip(raws)
            .map(|(&id, raw)| raw.map(|r| decode_hold(id, shard, &r)).transpose())
            .collect()
    }
}

impl<C> StockMaintenance for RedisStockEngine<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn stale_holds(
        &self,
        sale: &SaleStock,
        shard: u16,
        created_before: Timestamp,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<HoldRecord>, StockError> {
        let keys = ShardKeys::new(&sale.sale_id, shard);
        let raw_ids: Vec<String> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(keys.hold_times())
                    .arg("-inf")
                    .arg(created_before.as_millis())
                    .arg("LIMIT")
                    .arg(offset)
                    .arg(limit),
            )
            .await?;
        let ids = raw_ids
            .iter()
            .map(|raw| parse_id(raw))
            .collect::<Result<Vec<_>, _>>()?;
        // An index entry without its hold cannot be acted on; it is skipped (release.lua and
        // commit.lua remove index entries together with the state change).
        Ok(self
            .read_holds(sale, shard, &ids)
            .await?
            .into_iter()
            .flatten()
            .filter(|h| h.state == HoldState::Held)
            .collect())
    }

    async fn holds(
        &self,
        sale: &SaleStock,
        shard: u16,
        ids: &[ReservationId],
    ) -> Result<Vec<Option<HoldRecord>>, StockError> {
        self.read_holds(sale, shard, ids).await
    }

    async fn stale_claims(
        &self,
        sale: &SaleStock,
        shard: u16,
        claimed_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<PendingClaim>, StockError> {
        let keys = ShardKeys::new(&sale.sale_id, shard);
        let entries: Vec<(String, i64)> = self
            .query(
                redis::cmd("ZRANGEBYSCORE")
                    .arg(keys.pending_claims())
                    .arg("-inf")
                    .arg(claimed_before.as_millis())
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        entries
            .into_iter()
            .map(|(member, score)| {
                // "<reservation id>|<user id>": the id is a UUID, the user may contain '|'.
                let (id, user) = member
                    .split_once('|')
                    .ok_or_else(|| unexpected("pending-claims", format!("bad entry {member}")))?;
                Ok(PendingClaim {
                    reservation_id: parse_id(id)?,
                    user: UserId::parse(user)
                        .map_err(|e| unexpected("pending-claims", e.to_string()))?,
                    claimed_at: Timestamp::from_millis(score),
                })
            })
            .collect()
    }

    async fn restore_hold(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
        allow_debt: bool,
    ) -> Result<RestoreOutcome, StockError> {
        self.restore(sale, hold, now, allow_debt).await
    }

    async fn restore_claims(&self, sale: &SaleStock, claims: &[Claim]) -> Result<u64, StockError> {
        let mut by_home: BTreeMap<u16, Vec<&Claim>> = BTreeMap::new();
        for claim in claims {
            by_home
                .entry(sale.shards.home_of(&claim.user))
                .or_default()
                .push(claim);
        }
        let mut added = 0u64;
        for (home, claims) in by_home {
            let keys = ShardKeys::new(&sale.sale_id, home);
            for chunk in claims.chunks(CLAIMS_PER_CALL) {
                let mut invocation = scripts::RESTORE_CLAIMS.prepare_invoke();
                for claim in chunk {
                    invocation
                        .key(keys.user(&claim.user))
                        .arg(claim.reservation_id.to_string())
                        .arg(claim.quantity);
                }
                let mut conn = self.conn.clone();
                let n: i64 = invocation.invoke_async(&mut conn).await?;
                added += n.max(0) as u64;
            }
        }
        Ok(added)
    }

    async fn shard_states(&self, sale: &SaleStock) -> Result<Vec<ShardState>, StockError> {
        let reads = sale.shards.all().map(|shard| async move {
            let fields: Vec<Option<String>> = self
                .query(
                    redis::cmd("HMGET")
                        .arg(ShardKeys::new(&sale.sale_id, shard).stock())
                        .arg(&[
                            "initial",
                            "available",
                            "paused",
                            "paused_at",
                            "placeholder",
                            "fenced",
                        ]),
                )
                .await?;
            let get = |i: usize| fields.get(i).cloned().flatten();
            let paused = get(2).as_deref() == Some("1");
            let paused_at = get(3)
                .and_then(|v| v.parse().ok())
                .map(Timestamp::from_millis);
            // A paused shard without a time (should not happen) reads as paused long ago, so
            // the automatic rebuild picks it up.
            let paused_at = paused.then(|| paused_at.unwrap_or(Timestamp::from_millis(0)));
            Ok::<_, StockError>(match (get(0), get(1), get(4)) {
                (_, _, Some(_)) | (None, Some(_), None) => ShardState::Placeholder { paused_at },
                (Some(_), Some(_), None) => ShardState::Ready {
                    paused_at,
                    fenced: get(5).as_deref() == Some("1"),
                },
                _ => ShardState::Missing,
            })
        });
        try_join_all(reads).await
    }

    async fn pause(
        &self,
        sale: &SaleStock,
        per_user_limit: u32,
        now: Timestamp,
    ) -> Result<u16, StockError> {
        let mut placeholders = 0;
        for shard in sale.shards.all() {
            let keys = ShardKeys::new(&sale.sale_id, shard);
            let reply = self
                .run(
                    "pause",
                    &scripts::PAUSE,
                    &[keys.stock()],
                    &[
                        sale.shards.get().to_string(),
                        per_user_limit.to_string(),
                        now.as_millis().to_string(),
                    ],
                )
                .await?;
            match reply.status.as_str() {
                "PAUSED" => {}
                "PLACEHOLDER" => placeholders += 1,
                _ => return Err(reply.unknown_status()),
            }
        }
        Ok(placeholders)
    }

    async fn write_shard(
        &self,
        sale: &SaleStock,
        plan: &ShardPlan,
        now: Timestamp,
    ) -> Result<ShardWritten, StockError> {
        let keys = ShardKeys::new(&sale.sale_id, plan.shard);
        let mut args = Vec::with_capacity(4 + 2 * plan.holds.len());
        args.extend([
            plan.initial.to_string(),
            sale.shards.get().to_string(),
            plan.per_user_limit.to_string(),
            now.as_millis().to_string(),
        ]);
        for rebuilt in &plan.holds {
            args.push(rebuilt.hold.reservation_id.to_string());
            args.push(encode_hold(rebuilt.committed, &rebuilt.hold, now));
        }
        let reply = self
            .run(
                "rebuild_shard",
                &scripts::REBUILD_SHARD,
                &[keys.stock(), keys.holds(), keys.hold_times()],
                &args,
            )
            .await?;
        if reply.status != "OK" {
            return Err(reply.unknown_status());
        }
        Ok(ShardWritten {
            shard: plan.shard,
            available: reply.int(0)?,
            held: reply.int(1)?,
            sold: reply.int(2)?,
            dropped_holds: reply.int(3)? as u32,
        })
    }

    async fn resume(&self, sale: &SaleStock) -> Result<(), StockError> {
        for shard in sale.shards.all() {
            let keys = ShardKeys::new(&sale.sale_id, shard);
            let reply = self
                .run("resume", &scripts::RESUME, &[keys.stock()], &[])
                .await?;
            match reply.status.as_str() {
                "RESUMED" => {}
                "NOT_REBUILT" => {
                    return Err(StockError::InvalidSetup(
                        "a shard has no complete stock record; rebuild it before resuming",
                    ))
                }
                _ => return Err(reply.unknown_status()),
            }
        }
        Ok(())
    }

    async fn try_lock_rebuild(
        &self,
        sale: &SaleStock,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StockError> {
        let taken: Option<String> = self
            .query(
                redis::cmd("SET")
                    .arg(ShardKeys::new(&sale.sale_id, 0).rebuild_lock())
                    .arg(token)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64),
            )
            .await?;
        Ok(taken.is_some())
    }

    async fn unlock_rebuild(&self, sale: &SaleStock, token: &str) -> Result<(), StockError> {
        let mut conn = self.conn.clone();
        let _: i64 = scripts::UNLOCK
            .prepare_invoke()
            .key(ShardKeys::new(&sale.sale_id, 0).rebuild_lock())
            .arg(token)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_decode_with_a_user_id_that_contains_the_separator() {
        let id = ReservationId::new();
        let hold = decode_hold(id, 3, "H|2|600|100|user|with|bars").unwrap();
        assert_eq!(hold.user.as_str(), "user|with|bars");
        assert_eq!((hold.quantity, hold.shard), (2, 3));
        assert_eq!(hold.state, HoldState::Held);
        assert_eq!(hold.expires_at, Timestamp::from_millis(600));
        assert_eq!(
            decode_hold(id, 0, "X|1|1|1|u").unwrap().state,
            HoldState::Voided
        );
        assert!(decode_hold(id, 0, "Z|1|1|1|u").is_err());
        assert!(decode_hold(id, 0, "H|1|1").is_err());
    }
}
