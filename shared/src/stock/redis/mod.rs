//! The stock engine on Redis (ElastiCache-compatible): Lua scripts that each touch one
//! cluster slot. Works over a single node or a Redis Cluster connection alike.

mod maintenance;
mod reply;
pub mod scripts;

use std::time::Duration;

use futures::future::join_all;
use redis::aio::ConnectionLike;
use redis::{Script, Value};

use self::reply::{unexpected, Reply};
use super::{
    split_evenly, CommitOutcome, Hold, HoldSpec, HoldState, ReleaseOutcome, ReserveOutcome,
    ReserveRequest, RestoreOutcome, SaleStock, SetupOutcome, ShardKeys, ShardLevel, StockEngine,
    StockError, StockLevels, StockSetup, Unavailable,
};
use crate::domain::{IdempotencyKey, Quantity, ReservationId, Timestamp, UserId};

/// Tunables of the Redis stock engine.
#[derive(Debug, Clone)]
pub struct RedisStockConfig {
    /// How long a reserve idempotency record lives. Clients retry within minutes; a day is
    /// generous and bounded.
    pub idempotency_ttl: Duration,
    /// How long a fallback reservation may stay between claim and confirm before a retry of
    /// the same key is allowed to start over.
    pub in_progress_ttl: Duration,
    /// The fence against lost writes (see the module doc of [`crate::stock`]). On by default;
    /// turn it off only for a store that cannot lose acknowledged writes (ElastiCache for Valkey
    /// with synchronous writes) or that does not expose `INFO server` to scripts.
    pub fencing: bool,
}

impl Default for RedisStockConfig {
    fn default() -> Self {
        Self {
            idempotency_ttl: Duration::from_secs(24 * 3600),
            in_progress_ttl: Duration::from_secs(30),
            fencing: true,
        }
    }
}

impl RedisStockConfig {
    /// `STOCK_FENCING` (`on`, the default, or `off`).
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        let raw: String = env.parsed_or("STOCK_FENCING", "on".to_string())?;
        let fencing = match raw.as_str() {
            "on" => true,
            "off" => false,
            other => {
                return Err(crate::config::ConfigError::Invalid {
                    name: "STOCK_FENCING",
                    reason: format!("{other:?} is not on or off"),
                })
            }
        };
        Ok(Self {
            fencing,
            ..Self::default()
        })
    }
}

/// The Redis adapter of [`StockEngine`]. `C` is any multiplexed async connection: a
/// `ConnectionManager` for one node, a `ClusterConnection` for cluster mode. Cloning it is
/// cheap and shares the underlying socket(s).
#[derive(Clone)]
pub struct RedisStockEngine<C> {
    conn: C,
    config: RedisStockConfig,
}

impl<C> RedisStockEngine<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    pub fn new(conn: C, config: RedisStockConfig) -> Self {
        Self { conn, config }
    }

    /// Loads every script on the node(s) now, so the first reservation does not pay for
    /// SCRIPT LOAD. (Each invocation still recovers from NOSCRIPT after a failover.)
    pub async fn preload_scripts(&self) -> Result<(), StockError> {
        let mut conn = self.conn.clone();
        for script in scripts::all() {
            script.prepare_invoke().load_async(&mut conn).await?;
        }
        Ok(())
    }

    async fn run(
        &self,
        name: &'static str,
        script: &Script,
        keys: &[String],
        args: &[String],
    ) -> Result<Reply, StockError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let value: Value = invocation.invoke_async(&mut conn).await?;
        Reply::parse(name, value)
    }

    fn ttl_secs(&self) -> String {
        self.config.idempotency_ttl.as_secs().max(1).to_string()
    }

    /// Records the claim of `hold`'s buyer on their home shard (idempotent).
    async fn claim_for(&self, sale: &SaleStock, hold: &HoldSpec) -> Result<(), StockError> {
        use super::maintenance::{Claim, StockMaintenance};
        self.restore_claims(
            sale,
            &[Claim {
                user: hold.user.clone(),
                reservation_id: hold.reservation_id,
                quantity: hold.quantity.get(),
            }],
        )
        .await?;
        Ok(())
    }

    fn fence_arg(&self) -> String {
        if self.config.fencing { "1" } else { "0" }.to_string()
    }

    /// Steps 2-5 of the module diagram: find another shard with stock, claim the buyer's
    /// allowance at home, take the unit there, and confirm the claim. `home_level` is what the
    /// home shard had (too few for this request).
    async fn reserve_elsewhere(
        &self,
        req: &ReserveRequest,
        home: u16,
        home_level: i64,
    ) -> Result<ReserveOutcome, StockError> {
        let sale = &req.sale;
        let qty = i64::from(req.quantity.get());
        let others: Vec<u16> = sale.shards.ring_after(home).collect();
        // Concurrent reads ride one multiplexed connection (pipelined per node).
        let levels = join_all(others.iter().map(|&shard| self.selling_level(sale, shard))).await;
        let mut known: Vec<(u16, i64)> = Vec::with_capacity(others.len());
        let mut unknown = false;
        for (&shard, level) in others.iter().zip(levels) {
            match level? {
                Some(level) => known.push((shard, level)),
                None => unknown = true,
            }
        }
        if !known.iter().any(|&(_, level)| level >= qty) {
            return Ok(shortage(home_level, known.iter().map(|&(_, l)| l), unknown));
        }

        let home_keys = ShardKeys::new(&sale.sale_id, home);
        let claim = self
            .run(
                "claim",
                &scripts::CLAIM,
                &[
                    home_keys.stock(),
                    home_keys.user(&req.user),
                    home_keys.idempotency(&req.user, &req.idempotency_key),
                    home_keys.pending_claims(),
                ],
                &[
                    req.reservation_id.to_string(),
                    qty.to_string(),
                    req.user.to_string(),
                    req.now.as_millis().to_string(),
                    self.config.in_progress_ttl.as_secs().max(1).to_string(),
                ],
            )
            .await?;
        if claim.status != "CLAIMED" {
            return common_outcome(&claim, req);
        }

        for (shard, level) in known.iter_mut() {
            if *level < qty {
                continue;
            }
            let keys = ShardKeys::new(&sale.sale_id, *shard);
            let taken = self
                .run(
                    "take",
                    &scripts::TAKE,
                    &[keys.stock(), keys.holds(), keys.hold_times()],
                    &[
                        req.reservation_id.to_string(),
                        req.user.to_string(),
                        qty.to_string(),
                        req.expires_at.as_millis().to_string(),
                        req.now.as_millis().to_string(),
                        sale.shards.get().to_string(),
                        self.fence_arg(),
                    ],
                )
                .await?;
            match taken.status.as_str() {
                "TAKEN" => return self.confirm(req, home, *shard).await,
                // Someone else emptied it between our read and our take: try the next one.
                "EMPTY" => *level = taken.int(0)?,
                status => {
                    self.unclaim(
                        sale,
                        &req.user,
                        req.reservation_id,
                        Some(&req.idempotency_key),
                    )
                    .await?;
                    return match status {
                        "PAUSED" => Ok(ReserveOutcome::Unavailable(Unavailable::Paused)),
                        "FENCED" => Ok(ReserveOutcome::Unavailable(Unavailable::Fenced)),
                        "UNKNOWN_SALE" => Ok(ReserveOutcome::Unavailable(Unavailable::NotSetUp)),
                        "LAYOUT_MISMATCH" => Err(layout_mismatch(sale, &taken)?),
                        _ => Err(taken.unknown_status()),
                    };
                }
            }
        }
        self.unclaim(
            sale,
            &req.user,
            req.reservation_id,
            Some(&req.idempotency_key),
        )
        .await?;
        Ok(shortage(home_level, known.iter().map(|&(_, l)| l), unknown))
    }

    async fn confirm(
        &self,
        req: &ReserveRequest,
        home: u16,
        shard: u16,
    ) -> Result<ReserveOutcome, StockError> {
        let home_keys = ShardKeys::new(&req.sale.sale_id, home);
        let confirmed = self
            .run(
                "confirm",
                &scripts::CONFIRM,
                &[
                    home_keys.user(&req.user),
                    home_keys.idempotency(&req.user, &req.idempotency_key),
                    home_keys.pending_claims(),
                ],
                &[
                    req.reservation_id.to_string(),
                    req.quantity.get().to_string(),
                    shard.to_string(),
                    self.ttl_secs(),
                    req.user.to_string(),
                    req.expires_at.as_millis().to_string(),
                ],
            )
            .await?;
        if confirmed.status == "RESERVED" {
            return Ok(ReserveOutcome::Reserved(Hold {
                reservation_id: req.reservation_id,
                shard,
                quantity: req.quantity,
                expires_at: req.expires_at,
            }));
        }
        // A concurrent copy of this request won (or the claim went stale): put the unit back
        // and free the claim before answering.
        self.release_hold(&req.sale, shard, req.reservation_id)
            .await?;
        self.unclaim(
            &req.sale,
            &req.user,
            req.reservation_id,
            Some(&req.idempotency_key),
        )
        .await?;
        if confirmed.status == "CLAIM_LOST" {
            return Err(StockError::ClaimLost);
        }
        common_outcome(&confirmed, req)
    }

    /// Frees a claim; with the request's idempotency key, also drops its pending marker.
    async fn unclaim(
        &self,
        sale: &SaleStock,
        user: &UserId,
        id: ReservationId,
        key: Option<&IdempotencyKey>,
    ) -> Result<(), StockError> {
        let home = ShardKeys::new(&sale.sale_id, sale.shards.home_of(user));
        let mut invocation = scripts::UNCLAIM.prepare_invoke();
        invocation.key(home.user(user)).key(home.pending_claims());
        if let Some(key) = key {
            invocation.key(home.idempotency(user, key));
        }
        let mut conn = self.conn.clone();
        let _: i64 = invocation
            .arg(id.to_string())
            .arg(user.as_str())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    /// What a shard can sell now: `None` when that is unknown (no record, a placeholder, or
    /// paused), which must never be read as zero.
    async fn selling_level(&self, sale: &SaleStock, shard: u16) -> Result<Option<i64>, StockError> {
        let mut conn = self.conn.clone();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(ShardKeys::new(&sale.sale_id, shard).stock())
            .arg(&["initial", "available", "paused"])
            .query_async(&mut conn)
            .await?;
        Ok(match fields.as_slice() {
            [Some(_), Some(available), paused] if paused.as_deref() != Some("1") => Some(
                available
                    .parse()
                    .map_err(|_| unexpected("levels", format!("available is {available:?}")))?,
            ),
            _ => None,
        })
    }

    /// The idempotency record named a hold on another shard that a rollback voided, but the
    /// process died before the home shard's part: finish it, so the key is free.
    async fn finish_rollback(&self, req: &ReserveRequest, hold: &Hold) -> Result<(), StockError> {
        let home = ShardKeys::new(&req.sale.sale_id, req.sale.shards.home_of(&req.user));
        let reply = self
            .run(
                "rollback",
                &scripts::ROLLBACK,
                &[
                    home.stock(),
                    home.holds(),
                    home.hold_times(),
                    home.user(&req.user),
                    home.idempotency(&req.user, &req.idempotency_key),
                    home.pending_claims(),
                ],
                &[
                    hold.reservation_id.to_string(),
                    req.user.to_string(),
                    "0".to_string(),
                ],
            )
            .await?;
        match reply.status.as_str() {
            "ROLLED_BACK" => Ok(()),
            _ => Err(reply.unknown_status()),
        }
    }

    async fn reserve_once(&self, req: &ReserveRequest) -> Result<ReserveOutcome, StockError> {
        let sale = &req.sale;
        let home = sale.shards.home_of(&req.user);
        let keys = ShardKeys::new(&sale.sale_id, home);
        let reply = self
            .run(
                "reserve",
                &scripts::RESERVE,
                &[
                    keys.stock(),
                    keys.holds(),
                    keys.hold_times(),
                    keys.user(&req.user),
                    keys.idempotency(&req.user, &req.idempotency_key),
                ],
                &[
                    req.reservation_id.to_string(),
                    req.user.to_string(),
                    req.quantity.get().to_string(),
                    req.expires_at.as_millis().to_string(),
                    req.now.as_millis().to_string(),
                    sale.shards.get().to_string(),
                    home.to_string(),
                    self.ttl_secs(),
                    self.fence_arg(),
                ],
            )
            .await?;
        match reply.status.as_str() {
            "RESERVED" => Ok(ReserveOutcome::Reserved(Hold {
                reservation_id: req.reservation_id,
                shard: shard_field(&reply, 0)?,
                quantity: req.quantity,
                expires_at: req.expires_at,
            })),
            "HOME_EMPTY" => self.reserve_elsewhere(req, home, reply.int(0)?).await,
            _ => common_outcome(&reply, req),
        }
    }

    /// Runs a one-argument admin script (top_up.lua, configure.lua) on every shard that
    /// `arg_for` gives an argument; each must answer OK (the sale must be set up).
    async fn on_every_shard(
        &self,
        sale: &SaleStock,
        name: &'static str,
        script: &Script,
        arg_for: impl Fn(u16) -> Option<String>,
    ) -> Result<(), StockError> {
        for shard in sale.shards.all() {
            let Some(arg) = arg_for(shard) else { continue };
            let keys = ShardKeys::new(&sale.sale_id, shard);
            let reply = self.run(name, script, &[keys.stock()], &[arg]).await?;
            if reply.status != "OK" {
                return Err(StockError::InvalidSetup("the sale's stock is not set up"));
            }
        }
        Ok(())
    }

    /// release.lua only (no claim removal).
    async fn release_hold(
        &self,
        sale: &SaleStock,
        shard: u16,
        id: ReservationId,
    ) -> Result<Reply, StockError> {
        let keys = ShardKeys::new(&sale.sale_id, shard);
        self.run(
            "release",
            &scripts::RELEASE,
            &[keys.stock(), keys.holds(), keys.hold_times()],
            &[id.to_string()],
        )
        .await
    }
}

/// No shard can serve the request. Sold out only if every shard's level is known and none
/// has a unit; unknown levels make it Unavailable; units left somewhere make it insufficient.
fn shortage(home: i64, others: impl Iterator<Item = i64>, unknown: bool) -> ReserveOutcome {
    let mut levels = std::iter::once(home).chain(others);
    if levels.any(|level| level > 0) {
        ReserveOutcome::InsufficientStock
    } else if unknown {
        ReserveOutcome::Unavailable(Unavailable::NotSetUp)
    } else {
        ReserveOutcome::SoldOut
    }
}

/// Statuses that reserve.lua, claim.lua and confirm.lua share.
fn common_outcome(reply: &Reply, req: &ReserveRequest) -> Result<ReserveOutcome, StockError> {
    let sale = &req.sale;
    Ok(match reply.status.as_str() {
        "DUPLICATE" => {
            let hold = Hold {
                reservation_id: parse_id(reply, 0)?,
                shard: shard_field(reply, 1)?,
                quantity: Quantity::new(reply.int(2)? as u32)
                    .map_err(|e| unexpected("reserve", e.to_string()))?,
                expires_at: Timestamp::from_millis(reply.int(3)?),
            };
            // Our own record: this request ran twice (a re-sent script); it is our reservation.
            if hold.reservation_id == req.reservation_id {
                ReserveOutcome::Reserved(hold)
            } else {
                ReserveOutcome::Duplicate(hold)
            }
        }
        "KEY_REUSED" => ReserveOutcome::KeyReused {
            original: parse_id(reply, 0)?,
        },
        "IN_PROGRESS" => ReserveOutcome::InProgress {
            reservation_id: parse_id(reply, 0)?,
        },
        "LIMIT" => ReserveOutcome::LimitReached {
            claimed: reply.int(0)? as u32,
            limit: reply.int(1)? as u32,
        },
        "PAUSED" => ReserveOutcome::Unavailable(Unavailable::Paused),
        "FENCED" => ReserveOutcome::Unavailable(Unavailable::Fenced),
        "UNKNOWN_SALE" => ReserveOutcome::Unavailable(Unavailable::NotSetUp),
        "LAYOUT_MISMATCH" => return Err(layout_mismatch(sale, reply)?),
        _ => return Err(reply.unknown_status()),
    })
}

fn parse_id(reply: &Reply, index: usize) -> Result<ReservationId, StockError> {
    let raw = reply.string(index)?;
    ReservationId::parse(&raw).map_err(|_| unexpected("reserve", format!("bad id {raw}")))
}

fn shard_field(reply: &Reply, index: usize) -> Result<u16, StockError> {
    u16::try_from(reply.int(index)?).map_err(|_| unexpected("reserve", "bad shard".into()))
}

fn layout_mismatch(sale: &SaleStock, reply: &Reply) -> Result<StockError, StockError> {
    Ok(StockError::LayoutMismatch {
        expected: sale.shards.get(),
        actual: reply.int(0)? as u16,
    })
}

fn released_user(reply: &Reply) -> Result<UserId, StockError> {
    UserId::parse(reply.string(0)?).map_err(|e| unexpected("release", e.to_string()))
}

impl<C> StockEngine for RedisStockEngine<C>
where
    C: ConnectionLike + Clone + Send + Sync + 'static,
{
    async fn reserve(&self, req: &ReserveRequest) -> Result<ReserveOutcome, StockError> {
        let outcome = self.reserve_once(req).await?;
        // A duplicate whose hold lives on another shard may name an attempt that was rolled
        // back there while its key survived at home (the rollback's two steps were cut): the
        // key is then freed and the request runs as new, once.
        if let ReserveOutcome::Duplicate(hold) = &outcome {
            let home = req.sale.shards.home_of(&req.user);
            if hold.shard != home
                && self
                    .hold_state(&req.sale, hold.shard, hold.reservation_id)
                    .await?
                    == Some(HoldState::Voided)
            {
                self.finish_rollback(req, hold).await?;
                return self.reserve_once(req).await;
            }
        }
        Ok(outcome)
    }

    async fn release(
        &self,
        sale: &SaleStock,
        shard: u16,
        id: ReservationId,
    ) -> Result<ReleaseOutcome, StockError> {
        let reply = self.release_hold(sale, shard, id).await?;
        let outcome = match reply.status.as_str() {
            "RELEASED" | "ALREADY_RELEASED" => {
                let user = released_user(&reply)?;
                // The claim lives on the buyer's home shard (another slot), so it is removed in
                // a second step. unclaim.lua is idempotent: a retried release finishes the job.
                self.unclaim(sale, &user, id, None).await?;
                if reply.status == "RELEASED" {
                    ReleaseOutcome::Released {
                        user,
                        quantity: reply.int(1)? as u32,
                    }
                } else {
                    ReleaseOutcome::AlreadyReleased
                }
            }
            "COMMITTED" => ReleaseOutcome::WasCommitted,
            "NOT_FOUND" => ReleaseOutcome::NotFound,
            "UNKNOWN_SALE" => ReleaseOutcome::SaleNotSetUp,
            _ => return Err(reply.unknown_status()),
        };
        Ok(outcome)
    }

    async fn drop_claim(
        &self,
        sale: &SaleStock,
        user: &UserId,
        id: ReservationId,
    ) -> Result<bool, StockError> {
        let home = ShardKeys::new(&sale.sale_id, sale.shards.home_of(user));
        let mut conn = self.conn.clone();
        let removed: i64 = scripts::UNCLAIM
            .prepare_invoke()
            .key(home.user(user))
            .key(home.pending_claims())
            .arg(id.to_string())
            .arg(user.as_str())
            .invoke_async(&mut conn)
            .await?;
        Ok(removed > 0)
    }

    async fn commit(
        &self,
        sale: &SaleStock,
        shard: u16,
        id: ReservationId,
    ) -> Result<CommitOutcome, StockError> {
        let keys = ShardKeys::new(&sale.sale_id, shard);
        let reply = self
            .run(
                "commit",
                &scripts::COMMIT,
                &[keys.stock(), keys.holds(), keys.hold_times()],
                &[id.to_string()],
            )
            .await?;
        Ok(match reply.status.as_str() {
            "COMMITTED" => CommitOutcome::Committed,
            "ALREADY_COMMITTED" => CommitOutcome::AlreadyCommitted,
            "RELEASED" => CommitOutcome::WasReleased,
            "NOT_FOUND" => CommitOutcome::NotFound,
            "UNKNOWN_SALE" => CommitOutcome::SaleNotSetUp,
            _ => return Err(reply.unknown_status()),
        })
    }

    async fn setup(
        &self,
        sale: &SaleStock,
        setup: &StockSetup,
    ) -> Result<SetupOutcome, StockError> {
        if setup.per_user_limit == 0 {
            return Err(StockError::InvalidSetup(
                "per-user limit must be at least 1",
            ));
        }
        let parts = split_evenly(setup.total_units, sale.shards);
        let mut created_all = true;
        let mut matches = true;
        for (shard, units) in sale.shards.all().zip(parts) {
            let keys = ShardKeys::new(&sale.sale_id, shard);
            let reply = self
                .run(
                    "setup",
                    &scripts::SETUP,
                    &[keys.stock()],
                    &[
                        units.to_string(),
                        sale.shards.get().to_string(),
                        setup.per_user_limit.to_string(),
                    ],
                )
                .await?;
            match reply.status.as_str() {
                "CREATED" => {}
                "EXISTS" => {
                    created_all = false;
                    matches &= reply.int(0)? == units as i64
                        && reply.int(1)? == i64::from(sale.shards.get())
                        && reply.int(2)? == i64::from(setup.per_user_limit);
                }
                _ => return Err(reply.unknown_status()),
            }
        }
        Ok(if created_all {
            SetupOutcome::Created
        } else {
            SetupOutcome::AlreadyExists { matches }
        })
    }

    /// Each shard grows to `split_evenly(total)[i]`: a stock rebuild can then recompute every
    /// shard's initial from the sale record alone.
    async fn grow_to(&self, sale: &SaleStock, total_units: u64) -> Result<(), StockError> {
        let targets = split_evenly(total_units, sale.shards);
        self.on_every_shard(sale, "top_up", &scripts::TOP_UP, |shard| {
            Some(targets[usize::from(shard)].to_string())
        })
        .await
    }

    async fn commit_paid(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
    ) -> Result<CommitOutcome, StockError> {
        let keys = ShardKeys::new(&sale.sale_id, hold.shard);
        let reply = self
            .run(
                "commit",
                &scripts::COMMIT,
                &[keys.stock(), keys.holds(), keys.hold_times()],
                &[
                    hold.reservation_id.to_string(),
                    hold.user.to_string(),
                    hold.quantity.get().to_string(),
                    hold.expires_at.as_millis().to_string(),
                    now.as_millis().to_string(),
                ],
            )
            .await?;
        let outcome = match reply.status.as_str() {
            "COMMITTED" => CommitOutcome::Committed,
            "ALREADY_COMMITTED" => CommitOutcome::AlreadyCommitted,
            "RETAKEN" => CommitOutcome::Retaken {
                available_after: reply.int(1)?,
            },
            "PAUSED" => CommitOutcome::Paused,
            "UNKNOWN_SALE" => CommitOutcome::SaleNotSetUp,
            _ => return Err(reply.unknown_status()),
        };
        if matches!(
            outcome,
            CommitOutcome::Committed
                | CommitOutcome::AlreadyCommitted
                | CommitOutcome::Retaken { .. }
        ) {
            // A sold unit's buyer keeps its claim (idempotent; it may be what a failover lost).
            self.claim_for(sale, hold).await?;
        }
        Ok(outcome)
    }

    async fn ensure_held(
        &self,
        sale: &SaleStock,
        hold: &HoldSpec,
        now: Timestamp,
    ) -> Result<RestoreOutcome, StockError> {
        let outcome = self.restore(sale, hold, now, false).await?;
        if matches!(
            outcome,
            RestoreOutcome::Restored { .. } | RestoreOutcome::AlreadyHeld
        ) {
            // The buyer's claim lives on the home shard, another slot: a failover may have
            // lost it with or without the hold. Restoring it is idempotent.
            self.claim_for(sale, hold).await?;
        }
        Ok(outcome)
    }

    async fn rollback(
        &self,
        sale: &SaleStock,
        hold: &Hold,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<(), StockError> {
        // The home shard first: claim, key (and the hold if it lives there) in one step. If
        // the process dies before the second step, the fallback hold left on its shard has no
        // record, no claim and no key: the hold reconciler releases it after its grace period,
        // and nothing leaks (voiding it first would leave the claim and key on the home shard
        // with nothing to find them).
        let home = sale.shards.home_of(user);
        let keys = ShardKeys::new(&sale.sale_id, home);
        let reply = self
            .run(
                "rollback",
                &scripts::ROLLBACK,
                &[
                    keys.stock(),
                    keys.holds(),
                    keys.hold_times(),
                    keys.user(user),
                    keys.idempotency(user, key),
                    keys.pending_claims(),
                ],
                &[
                    hold.reservation_id.to_string(),
                    user.to_string(),
                    if hold.shard == home { "1" } else { "0" }.to_string(),
                ],
            )
            .await?;
        match reply.status.as_str() {
            "ROLLED_BACK" | "COMMITTED" => {}
            _ => return Err(reply.unknown_status()),
        }
        if hold.shard != home {
            let keys = ShardKeys::new(&sale.sale_id, hold.shard);
            self.run(
                "release",
                &scripts::RELEASE,
                &[keys.stock(), keys.holds(), keys.hold_times()],
                &[hold.reservation_id.to_string(), "void".to_string()],
            )
            .await?;
        }
        Ok(())
    }

    async fn hold_state(
        &self,
        sale: &SaleStock,
        shard: u16,
        id: ReservationId,
    ) -> Result<Option<HoldState>, StockError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = redis::cmd("HGET")
            .arg(ShardKeys::new(&sale.sale_id, shard).holds())
            .arg(id.to_string())
            .query_async(&mut conn)
            .await?;
        raw.map(|raw| maintenance::hold_state_of(&raw)).transpose()
    }

    async fn set_per_user_limit(&self, sale: &SaleStock, limit: u32) -> Result<(), StockError> {
        if limit == 0 {
            return Err(StockError::InvalidSetup(
                "per-user limit must be at least 1",
            ));
        }
        self.on_every_shard(sale, "configure", &scripts::CONFIGURE, |_| {
            Some(limit.to_string())
        })
        .await
    }

    async fn levels(&self, sale: &SaleStock) -> Result<StockLevels, StockError> {
        let reads = sale.shards.all().map(|shard| {
            let mut conn = self.conn.clone();
            async move {
                let fields: Vec<Option<i64>> = redis::cmd("HMGET")
                    .arg(ShardKeys::new(&sale.sale_id, shard).stock())
                    .arg(&["initial", "available", "held", "sold"])
                    .query_async(&mut conn)
                    .await?;
                Ok::<_, StockError>(match fields.as_slice() {
                    [Some(initial), Some(available), Some(held), Some(sold)] => Some(ShardLevel {
                        shard,
                        initial: *initial,
                        available: *available,
                        held: *held,
                        sold: *sold,
                    }),
                    _ => None,
                })
            }
        });
        let shards = join_all(reads)
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(StockLevels { shards })
    }
}
