//! The chaos suite's faults, injected into the local stack (localstack/env.sh) mid-sale.
//!
//! Fault points: the Redis group (its data nodes' processes, the Sentinels, and the primary
//! endpoint's fault proxy), the AWS fault proxy in front of LocalStack's DynamoDB and Step
//! Functions, the payment sandbox's switches, and the expiry cleanup (invoked at a deadline).
//! Every fault has an injection and a heal; the heal always runs, even after an error.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use serde_json::{json, Value};

use crate::http::Http;
use crate::sale_run::sentinel_primary;
use crate::scenario::{CrowdSpec, Limits, Mix, SaleSpec, Scenario};
use crate::target::Target;

pub const REDIS_CONTROL: &str = "http://127.0.0.1:6398";
pub const AWS_CONTROL: &str = "http://127.0.0.1:6397";
pub const SANDBOX: &str = "http://127.0.0.1:12111";

/// The sandbox's switches as localstack/env.sh starts it (what every fault puts back).
pub fn sandbox_defaults() -> Value {
    json!({
        "duplicate_webhooks": false,
        "reorder_webhooks": false,
        "reorder_window_ms": 1500,
        "webhook_delay_ms": 0,
        "drop_webhooks": false,
        "outage": false,
        "latency_ms": [500, 2000],
        "slow_ms": 5000,
    })
}

/// The faults, in the order of the issue that named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// 1. The Redis primary SIGKILLed mid-sale with its replica stalled (acknowledged holds are
    ///    lost); Sentinel promotes the replica, the endpoint follows it.
    RedisPrimaryKilled,
    /// 2. Redis connections dropped right after a script ran (the client re-sends it).
    RedisRepliesDropped,
    /// 3a. Redis flushed mid-sale (every key of every sale gone).
    RedisFlushed,
    /// 3b. Redis unreachable for 10 s (the endpoint refuses connections).
    RedisUnreachable,
    /// 4a. DynamoDB throttling, 5xx and slow answers for a share of calls.
    DynamoDbThrottledAndFailing,
    /// 4b. DynamoDB writes that commit but lose their answer.
    DynamoDbAnswersLost,
    /// 5. Step Functions StartExecution and SendTask* failing or answering late.
    StepFunctionsFailing,
    /// 6. The payment provider down, then slow, with duplicated, reordered and late webhooks.
    ProviderDownSlowAndNoisy,
    /// 7. The reserve Lambda killed between the Redis hold and the durable write (its write
    ///    hangs 15 s, past the function's 10 s timeout: the executor kills it).
    LambdaKilledMidReserve,
    /// 8. A crowd paying right at the expiry deadline while the cleanup runs.
    PayRacesExpiry,
    /// 1b. Every function pointed at a Redis Cluster (three primaries with a replica each);
    ///     the primary of the sale's shard 0 SIGKILLed with its replica stalled. Long form only
    ///     (it re-configures every function twice).
    ClusterPrimaryKilled,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
        Fault::RedisPrimaryKilled,
        Fault::RedisRepliesDropped,
        Fault::RedisFlushed,
        Fault::RedisUnreachable,
        Fault::DynamoDbThrottledAndFailing,
        Fault::DynamoDbAnswersLost,
        Fault::StepFunctionsFailing,
        Fault::ProviderDownSlowAndNoisy,
        Fault::LambdaKilledMidReserve,
        Fault::PayRacesExpiry,
        Fault::ClusterPrimaryKilled,
    ];

    /// The faults of the short form (`./dev test`): all but the cluster's.
    pub fn in_short_form(self) -> bool {
        self != Fault::ClusterPrimaryKilled
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::RedisPrimaryKilled => "redis-primary-killed",
            Fault::RedisRepliesDropped => "redis-replies-dropped",
            Fault::RedisFlushed => "redis-flushed",
            Fault::RedisUnreachable => "redis-unreachable-10s",
            Fault::DynamoDbThrottledAndFailing => "dynamodb-throttled-5xx-slow",
            Fault::DynamoDbAnswersLost => "dynamodb-answers-lost",
            Fault::StepFunctionsFailing => "stepfunctions-failing-slow",
            Fault::ProviderDownSlowAndNoisy => "provider-down-slow-noisy-webhooks",
            Fault::LambdaKilledMidReserve => "lambda-killed-mid-reserve",
            Fault::PayRacesExpiry => "pay-races-expiry",
            Fault::ClusterPrimaryKilled => "cluster-primary-killed",
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// When the fault starts, after the sale opens.
    pub fn starts_after(self) -> Duration {
        match self {
            Fault::PayRacesExpiry => Duration::ZERO,
            _ => Duration::from_secs(3),
        }
    }

    /// How long it lasts (instant faults: zero).
    pub fn lasts(self, long: bool) -> Duration {
        let s =
            |short: u64, long_form: u64| Duration::from_secs(if long { long_form } else { short });
        match self {
            Fault::RedisPrimaryKilled | Fault::RedisFlushed | Fault::ClusterPrimaryKilled => {
                Duration::ZERO
            }
            Fault::RedisUnreachable => Duration::from_secs(10),
            Fault::PayRacesExpiry => Duration::ZERO,
            _ => s(8, 30),
        }
    }

    /// The sale and crowd this fault is tried against: a crowd that pays, spread over long
    /// enough for the fault to land mid-sale.
    pub fn scenario(self, long: bool) -> Scenario {
        // Stock for most of the crowd, most of which arrives after the opening seconds: the
        // fault (from the 3rd second) meets reserves and payments, not a sold-out sale.
        let (buyers, stock, tail) = if long {
            (150, 110, 40.0)
        } else {
            (24, 18, 10.0)
        };
        let mut mix = Mix {
            pay_now: 6,
            pay_late: 0,
            pay_after_expiry: 0,
            declined_then_retry: 1,
            abandon: 1,
            greedy: 0,
            retry_after_503: 4,
            pay_at_deadline: 0,
            bot: 0,
        };
        if self == Fault::PayRacesExpiry {
            mix = Mix {
                pay_now: 0,
                pay_late: 0,
                pay_after_expiry: 0,
                declined_then_retry: 0,
                abandon: 0,
                greedy: 0,
                retry_after_503: 0,
                pay_at_deadline: 1,
                bot: 0,
            };
        }
        Scenario {
            name: format!("chaos: {}", self.name()),
            sale: SaleSpec {
                stock,
                shards: 2,
                per_user_limit: 1,
                hold_seconds: 60,
                ..SaleSpec::default()
            },
            crowd: CrowdSpec {
                buyers: if self == Fault::PayRacesExpiry {
                    stock as u32
                } else {
                    buyers
                },
                burst_share: 0.25,
                burst_seconds: 2.0,
                tail_seconds: if self == Fault::PayRacesExpiry {
                    2.0
                } else {
                    tail
                },
                max_in_flight: 64,
            },
            mix,
            limits: Limits {
                max_requests: if long { 6000 } else { 2000 },
                max_seconds: 240,
            },
        }
    }
}

/// The local stack's fault points.
pub struct FaultPoints {
    pub http: Http,
    pub repo: PathBuf,
    pub target: Target,
    /// Lost holds are counted on this shard only (the cluster fault kills one shard's node).
    pub only_shard: Option<u16>,
}

/// The Redis Cluster of the cluster fault, with the functions pointed at it; dropping it stops
/// the nodes (the functions must be pointed back first: [`ClusterStage::restore`]).
pub struct ClusterStage {
    pub cluster: testkit::RedisCluster,
    pub env: crate::target::RedisEnv,
    /// The node the functions were given (a primary that is not the one to be killed).
    pub seed_url: String,
    victim: usize,
    replica: usize,
}

impl ClusterStage {
    /// Starts three primaries with a replica each (node timeout 1 s), finds the primary that
    /// will own `sale`'s shard 0 and its replica, and points every Redis-using function at
    /// another primary in cluster mode.
    pub async fn start(http: &Http, sale: &str) -> anyhow::Result<Self> {
        let env = crate::target::RedisEnv::read(http, "dev").await?;
        let mut cluster = testkit::RedisCluster::start_with_replicas(3, 1, 1_000);
        let sale_id =
            flashsale_core::domain::SaleId::parse(sale).map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = flashsale_core::stock::ShardKeys::new(&sale_id, 0).stock();
        let victim = cluster
            .primary_for_key(&key)
            .await
            .context("no primary for shard 0")?;
        let victim_port = cluster.nodes()[victim].port();
        let replica = cluster
            .nodes()
            .iter()
            .position(|n| {
                n.cli(&["INFO", "replication"])
                    .contains(&format!("master_port:{victim_port}"))
            })
            .context("no replica of shard 0's primary")?;
        let mut seed = None;
        for (i, node) in cluster.nodes().iter().enumerate() {
            if i != victim && i != replica && node.cli(&["ROLE"]).starts_with("master") {
                seed = Some(node.url());
                break;
            }
        }
        let seed_url = seed.context("no other primary")?;
        if let Err(error) = env.point_all(http, &seed_url, "cluster").await {
            // Half the functions may point at the cluster now: put them all back.
            env.restore(http).await?;
            return Err(error);
        }
        Ok(Self {
            cluster,
            env,
            seed_url,
            victim,
            replica,
        })
    }

    /// SIGSTOPs the replica, fills the replication stream with padding in shard 0's slot, lets
    /// the crowd run 1.5 s, SIGKILLs the primary, lets the replica go on and waits for it to
    /// take the slots over; returns its URL and a note.
    async fn kill_primary_of_shard_0(
        &mut self,
        sale: &str,
    ) -> anyhow::Result<(String, Vec<String>, tokio::time::Instant)> {
        let (victim, replica) = (self.victim, self.replica);
        let before = hold_ids(
            &mut self.cluster.nodes()[victim].direct_connection().await,
            sale,
            &[0],
        )
        .await?;
        self.cluster.nodes()[replica].freeze(true);
        let pad = "x".repeat(1 << 20);
        let flood = async {
            let mut conn = self.cluster.nodes()[victim].direct_connection().await;
            for i in 0..48 {
                let _: () = redis::cmd("SET")
                    .arg(format!("fs:{{{sale}:0}}:pad:{i}"))
                    .arg(&pad)
                    .query_async(&mut conn)
                    .await?;
            }
            anyhow::Ok(())
        }
        .await;
        let mut conn = self.cluster.nodes()[victim].direct_connection().await;
        let new_hold = stall_until_a_new_hold(&mut conn, sale, &[0], &before).await;
        self.cluster.nodes_mut()[victim].kill_hard();
        let killed_at = tokio::time::Instant::now();
        self.cluster.nodes()[replica].freeze(false);
        flood?;
        let new_hold = new_hold?;
        let sale_id =
            flashsale_core::domain::SaleId::parse(sale).map_err(|e| anyhow::anyhow!("{e}"))?;
        let key = flashsale_core::stock::ShardKeys::new(&sale_id, 0).stock();
        let started = tokio::time::Instant::now();
        while self.cluster.primary_for_key(&key).await != Some(replica) {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(30),
                "no cluster failover within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = started.elapsed();
        let promoted = self.cluster.nodes()[replica].url();
        let mut conn = self.cluster.nodes()[replica].direct_connection().await;
        let keys: Vec<String> = (0..48)
            .map(|i| format!("fs:{{{sale}:0}}:pad:{i}"))
            .collect();
        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
        Ok((
            promoted.clone(),
            vec![format!(
                "cluster: shard 0's primary SIGKILLed with its replica stalled {:.1} s; {promoted} took its slots {:.1} s later",
                new_hold.as_secs_f64(),
                took.as_secs_f64()
            )],
            killed_at,
        ))
    }

    /// Points the functions back where they were.
    pub async fn restore(&self, http: &Http) -> anyhow::Result<()> {
        self.env.restore(http).await
    }
}

/// What an injection observed (for the table's notes).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Injected {
    /// When the fault took effect (ms since the sale opened) and when it was healed.
    pub at_ms: u64,
    pub healed_ms: u64,
    /// Redis faults that lose data: holds of durable reservation records (each one a 201 the
    /// API answered, or a replay's) that the Redis serving after the fault did not have,
    /// counted right after the fault, before any repair.
    pub holds_lost: Option<u64>,
    /// AWS proxy faults: calls of the fault's target in the window, and how many got the fault.
    pub calls: Option<(u64, u64)>,
    /// `redis-replies-dropped`: replies the endpoint really swallowed.
    pub dropped_replies: Option<u64>,
    /// `pay-races-expiry`: cleanup runs around the deadline.
    pub cleanup_runs: Option<u64>,
    pub notes: Vec<String>,
}

impl FaultPoints {
    async fn redis_mode(&self, mode: &str) -> anyhow::Result<()> {
        self.http
            .post_json(&format!("{REDIS_CONTROL}/mode"), &json!({ "mode": mode }))
            .await
            .map(|_| ())
    }

    async fn aws_rules(&self, rules: Value) -> anyhow::Result<()> {
        self.http
            .post_json(&format!("{AWS_CONTROL}/rules"), &rules)
            .await
            .map(|_| ())
    }

    async fn aws_heal(&self) -> anyhow::Result<()> {
        self.http
            .post_json(&format!("{AWS_CONTROL}/heal"), &json!({}))
            .await
            .map(|_| ())
    }

    /// Calls the payment sandbox refused because its outage switch was on, since it started.
    async fn sandbox_outage_rejections(&self) -> anyhow::Result<u64> {
        let stats = self
            .http
            .get_json(&format!("{SANDBOX}/_sandbox/stats"))
            .await?;
        stats["outage_rejections"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("sandbox stats without outage_rejections: {stats}"))
    }

    pub async fn sandbox(&self, switches: Value) -> anyhow::Result<()> {
        self.http
            .post_json(&format!("{SANDBOX}/_sandbox/switches"), &switches)
            .await
            .map(|_| ())
    }

    /// Everything back to normal: no proxy fault, default sandbox switches, the Redis group
    /// whole (a killed node back as a replica). Safe to call any time.
    pub async fn heal_all(&self) -> anyhow::Result<()> {
        // Every step is tried; the first error is returned after all of them ran.
        let steps = [
            self.redis_mode("pass").await,
            self.http
                .post_json(&format!("{REDIS_CONTROL}/drop-replies"), &json!({ "n": 0 }))
                .await
                .map(|_| ()),
            self.aws_heal().await,
            self.sandbox(sandbox_defaults()).await,
            self.heal_redis_group().await,
        ];
        steps
            .into_iter()
            .collect::<anyhow::Result<Vec<()>>>()
            .map(|_| ())
    }

    /// A run that died while the functions pointed at its cluster left them there: point them
    /// back at the local stack's Redis endpoint (standalone).
    pub async fn restore_redis_env(&self) -> anyhow::Result<()> {
        let env = crate::target::RedisEnv::read(&self.http, "dev").await?;
        if env.drifted_from(crate::target::LOCAL_REDIS) {
            env.point_all(&self.http, crate::target::LOCAL_REDIS, "standalone")
                .await?;
        }
        Ok(())
    }

    async fn heal_redis_group(&self) -> anyhow::Result<()> {
        let out = tokio::process::Command::new("bash")
            .arg(self.repo.join("localstack/env.sh"))
            .arg("heal-redis")
            .output()
            .await
            .context("running env.sh heal-redis")?;
        anyhow::ensure!(
            out.status.success(),
            "env.sh heal-redis: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Starts the fault; returns when it has taken effect (and, for lasting faults, after its
    /// duration, healed). `opened` is when the sale opened.
    pub async fn run(
        &self,
        fault: Fault,
        long: bool,
        opened: tokio::time::Instant,
        sale: &str,
        dynamodb: &aws_sdk_dynamodb::Client,
        cluster: Option<&mut ClusterStage>,
    ) -> anyhow::Result<Injected> {
        tokio::time::sleep_until(opened + fault.starts_after()).await;
        let ms = || opened.elapsed().as_millis() as u64;
        let mut injected = Injected {
            at_ms: ms(),
            ..Injected::default()
        };
        let lasts = fault.lasts(long);
        match fault {
            Fault::RedisPrimaryKilled => {
                let stalled_at = chrono::Utc::now().timestamp_millis();
                let shards: Vec<u16> = (0..fault.scenario(long).sale.shards).collect();
                let (promoted, notes, killed_at) = self
                    .kill_primary_with_stalled_replica(sale, &shards)
                    .await?;
                injected.at_ms = killed_at.saturating_duration_since(opened).as_millis() as u64;
                injected.notes = notes;
                injected.holds_lost = Some(
                    self.holds_missing_on(&promoted, sale, dynamodb, stalled_at)
                        .await?,
                );
            }
            Fault::ClusterPrimaryKilled => {
                let stage = cluster.context("the cluster fault needs its cluster (prepare)")?;
                let stalled_at = chrono::Utc::now().timestamp_millis();
                let (promoted, notes, killed_at) = stage.kill_primary_of_shard_0(sale).await?;
                injected.at_ms = killed_at.saturating_duration_since(opened).as_millis() as u64;
                injected.notes = notes;
                injected.holds_lost = Some(
                    self.holds_missing_on(&promoted, sale, dynamodb, stalled_at)
                        .await?,
                );
            }
            Fault::RedisRepliesDropped => {
                let before = self
                    .http
                    .get_json(&format!("{REDIS_CONTROL}/state"))
                    .await?["dropped_replies"]
                    .as_u64()
                    .unwrap_or(0);
                let until = tokio::time::Instant::now() + lasts;
                let mut dropped = 0;
                while tokio::time::Instant::now() < until {
                    self.http
                        .post_json(&format!("{REDIS_CONTROL}/drop-replies"), &json!({ "n": 2 }))
                        .await?;
                    dropped += 2;
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
                self.http
                    .post_json(&format!("{REDIS_CONTROL}/drop-replies"), &json!({ "n": 0 }))
                    .await?;
                let after = self
                    .http
                    .get_json(&format!("{REDIS_CONTROL}/state"))
                    .await?["dropped_replies"]
                    .as_u64()
                    .unwrap_or(0);
                injected.dropped_replies = Some(after - before);
                injected.notes.push(format!(
                    "asked to drop {dropped} replies; {} dropped (the command had run, its answer was lost)",
                    after - before
                ));
            }
            Fault::RedisFlushed => {
                let primary = sentinel_primary()
                    .await
                    .context("no primary known to Sentinel")?;
                let client = redis::Client::open(primary.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await?;
                injected.notes.push(format!("FLUSHALL on {primary}"));
                injected.holds_lost =
                    Some(self.holds_missing_on(&primary, sale, dynamodb, 0).await?);
            }
            Fault::RedisUnreachable => {
                self.redis_mode("refuse").await?;
                self.http
                    .post_json(&format!("{REDIS_CONTROL}/cut"), &json!({}))
                    .await?;
                tokio::time::sleep(lasts).await;
                self.redis_mode("pass").await?;
            }
            Fault::DynamoDbThrottledAndFailing => {
                // Rules are tried in order, each on the calls the previous ones let through:
                // 15 %, 10 % and 10 % of all calls take 0.15, 0.10/0.85 and 0.10/0.75.
                self.aws_fault_window(json!([
                    { "target": "DynamoDB_20120810.", "times": { "share": 0.15 }, "fault": "throttling" },
                    { "target": "DynamoDB_20120810.", "times": { "share": 0.10 / 0.85 }, "fault": "server_error" },
                    { "target": "DynamoDB_20120810.", "times": { "share": 0.10 / 0.75 }, "fault": { "delay": 1500 } }
                ]), lasts, "DynamoDB_20120810.", &mut injected).await?;
            }
            Fault::DynamoDbAnswersLost => {
                self.aws_fault_window(json!([
                    { "target": "PutItem", "times": { "share": 0.25 }, "fault": "answer_lost" },
                    { "target": "UpdateItem", "times": { "share": 0.25 }, "fault": "answer_lost" },
                    { "target": "TransactWriteItems", "times": { "share": 0.25 }, "fault": "answer_lost" }
                ]), lasts, "DynamoDB_20120810.", &mut injected).await?;
            }
            Fault::StepFunctionsFailing => {
                // 30 % answered 500, 20 % answered late (0.2/0.7 of what the first rule lets by).
                self.aws_fault_window(json!([
                    { "target": "StartExecution", "times": { "share": 0.3 }, "fault": "states_server_error" },
                    { "target": "StartExecution", "times": { "share": 0.2 / 0.7 }, "fault": { "delay": 3000 } },
                    { "target": "SendTask", "times": { "share": 0.3 }, "fault": "states_server_error" },
                    { "target": "SendTask", "times": { "share": 0.2 / 0.7 }, "fault": { "delay": 2000 } }
                ]), lasts, "AWSStepFunctions.", &mut injected).await?;
            }
            Fault::ProviderDownSlowAndNoisy => {
                let refused_before = self.sandbox_outage_rejections().await?;
                self.sandbox(json!({ "outage": true })).await?;
                tokio::time::sleep(lasts / 2).await;
                let refused = self.sandbox_outage_rejections().await? - refused_before;
                // (calls in the window are not counted; the refused ones are the effect)
                injected.calls = Some((refused, refused));
                injected.notes.push(format!(
                    "{refused} provider calls refused (5xx) during the outage"
                ));
                self.sandbox(json!({
                    "outage": false,
                    "latency_ms": [1500, 4000],
                    "duplicate_webhooks": true,
                    "reorder_webhooks": true,
                    "webhook_delay_ms": 3000
                }))
                .await?;
                tokio::time::sleep(lasts / 2).await;
                injected.notes.push("outage for half the window, then slow answers with duplicated, reordered, 3 s late webhooks (until the crowd ends)".into());
                // The webhooks stay noisy until the crowd ends (heal_all puts them back).
            }
            Fault::LambdaKilledMidReserve => {
                self.aws_fault_window(
                    json!([{
                        "target": "PutItem",
                        "body_contains": self.target.reservations_table,
                        "times": { "share": 0.3 },
                        "fault": { "hang": 15000 }
                    }]),
                    lasts,
                    "PutItem",
                    &mut injected,
                )
                .await?;
            }
            Fault::PayRacesExpiry => {
                // The buyers pay within 0.4 s of their expiry; run the cleanup right then, as
                // the schedule might.
                let hold = Duration::from_secs(60);
                tokio::time::sleep(hold.saturating_sub(Duration::from_millis(300))).await;
                let mut runs = 0;
                let until = tokio::time::Instant::now() + Duration::from_secs(6);
                while tokio::time::Instant::now() < until {
                    self.target.run_expiry_cleanup(&self.http).await?;
                    runs += 1;
                }
                injected.cleanup_runs = Some(runs);
                injected.notes.push(format!(
                    "{runs} cleanup runs in the 6 s around the deadline"
                ));
            }
        }
        injected.healed_ms = ms();
        Ok(injected)
    }

    /// Holds of the sale's records created since `since_ms` that `redis_url` lacks.
    async fn holds_missing_on(
        &self,
        redis_url: &str,
        sale: &str,
        dynamodb: &aws_sdk_dynamodb::Client,
        since_ms: i64,
    ) -> anyhow::Result<u64> {
        let records =
            crate::ledger::read_reservations(dynamodb, &self.target.reservations_table, sale)
                .await?;
        let sale_id =
            flashsale_core::domain::SaleId::parse(sale).map_err(|e| anyhow::anyhow!("{e}"))?;
        let client = redis::Client::open(redis_url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut missing = 0;
        let owns_units = |r: &&crate::ledger::Record| {
            matches!(
                r.status.as_str(),
                "PENDING" | "PAYMENT_PROCESSING" | "CONFIRMED"
            )
        };
        for r in records
            .iter()
            .filter(|r| r.created_at_ms >= since_ms)
            .filter(owns_units)
        {
            if self.only_shard.is_some_and(|s| s != r.shard) {
                continue;
            }
            let key = flashsale_core::stock::ShardKeys::new(&sale_id, r.shard).holds();
            let there: bool = redis::cmd("HEXISTS")
                .arg(&key)
                .arg(&r.reservation_id)
                .query_async(&mut conn)
                .await?;
            missing += u64::from(!there);
        }
        Ok(missing)
    }

    /// (calls, faulted) the AWS proxy has seen for `target` since it started.
    async fn calls(&self, target: &str) -> anyhow::Result<(u64, u64)> {
        let calls = self
            .http
            .get_json(&format!("{AWS_CONTROL}/calls?target={target}"))
            .await?;
        Ok((
            calls["calls"].as_u64().unwrap_or(0),
            calls["faulted"].as_u64().unwrap_or(0),
        ))
    }

    /// Runs the proxy rules for `lasts`, then heals; notes how many `target` calls they faulted.
    async fn aws_fault_window(
        &self,
        rules: Value,
        lasts: Duration,
        target: &str,
        injected: &mut Injected,
    ) -> anyhow::Result<()> {
        let before = self.calls(target).await?;
        self.aws_rules(rules).await?;
        tokio::time::sleep(lasts).await;
        self.aws_heal().await?;
        let after = self.calls(target).await?;
        let (calls, faulted) = (after.0 - before.0, after.1 - before.1);
        injected.calls = Some((calls, faulted));
        injected.notes.push(format!(
            "{faulted} of {calls} {target} calls in the window faulted"
        ));
        Ok(())
    }

    /// SIGSTOPs the replica, fills the primary's replication stream (so the holds acknowledged
    /// next cannot reach the replica through socket buffers), lets the crowd run 1.5 s, then
    /// SIGKILLs the primary and lets the replica go on: Sentinel promotes it without those holds.
    async fn kill_primary_with_stalled_replica(
        &self,
        sale: &str,
        shards: &[u16],
    ) -> anyhow::Result<(String, Vec<String>, tokio::time::Instant)> {
        let primary = sentinel_primary()
            .await
            .context("no primary known to Sentinel")?;
        let primary_port: u16 = primary
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .context("primary port")?;
        let replica_port = if primary_port == 6390 { 6391 } else { 6390 };
        let pid = |port: u16| -> anyhow::Result<i32> {
            let file = self.repo.join(format!(".local/run/redis-{port}.pid"));
            Ok(std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .trim()
                .parse()?)
        };
        let (primary_pid, replica_pid) = (pid(primary_port)?, pid(replica_port)?);
        let client = redis::Client::open(primary.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let before = hold_ids(&mut conn, sale, shards).await?;
        signal(replica_pid, "STOP").await?;
        let result = async {
            let pad = "x".repeat(1 << 20);
            for i in 0..48 {
                let _: () = redis::cmd("SET")
                    .arg(format!("chaos:pad:{i}"))
                    .arg(&pad)
                    .query_async(&mut conn)
                    .await?;
            }
            let stalled = stall_until_a_new_hold(&mut conn, sale, shards, &before).await?;
            signal(primary_pid, "KILL").await?;
            anyhow::Ok((tokio::time::Instant::now(), stalled))
        }
        .await;
        signal(replica_pid, "CONT").await?;
        let (killed_at, stalled) = result?;
        // Wait for the promotion, then drop the padding wherever it landed.
        let started = tokio::time::Instant::now();
        let mut promoted = None;
        while started.elapsed() < Duration::from_secs(30) {
            if let Some(now) = sentinel_primary().await {
                if now != primary {
                    promoted = Some(now);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let promoted = promoted.context("Sentinel promoted no replica within 30 s")?;
        let without_primary = started.elapsed();
        if let Ok(client) = redis::Client::open(promoted.as_str()) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let keys: Vec<String> = (0..48).map(|i| format!("chaos:pad:{i}")).collect();
                let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
            }
        }
        let note = format!(
            "primary {primary} SIGKILLed with its replica stalled {:.1} s; {promoted} promoted {:.1} s later",
            stalled.as_secs_f64(),
            without_primary.as_secs_f64()
        );
        Ok((promoted, vec![note], killed_at))
    }
}

/// The reservation ids holding units on `shards` of `sale`, on one node.
async fn hold_ids(
    conn: &mut redis::aio::MultiplexedConnection,
    sale: &str,
    shards: &[u16],
) -> anyhow::Result<std::collections::HashSet<String>> {
    let sale_id =
        flashsale_core::domain::SaleId::parse(sale).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut ids = std::collections::HashSet::new();
    for shard in shards {
        let key = flashsale_core::stock::ShardKeys::new(&sale_id, *shard).holds();
        let fields: Vec<String> = redis::cmd("HKEYS").arg(&key).query_async(conn).await?;
        ids.extend(fields);
    }
    Ok(ids)
}

/// Keeps the replica stalled for at least 1.5 s and until the primary has taken a hold it did
/// not have when the stall began (so the kill loses an acknowledged hold, not only padding),
/// then 300 ms more for that hold's record to be written; at most 10 s. A crowd between two
/// arrivals could otherwise leave the window without a single reserve. Returns how long the
/// stall lasted.
async fn stall_until_a_new_hold(
    conn: &mut redis::aio::MultiplexedConnection,
    sale: &str,
    shards: &[u16],
    before: &std::collections::HashSet<String>,
) -> anyhow::Result<Duration> {
    let started = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    while started.elapsed() < Duration::from_secs(10) {
        let now = hold_ids(conn, sale, shards).await?;
        if now.iter().any(|id| !before.contains(id)) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(started.elapsed())
}

async fn signal(pid: i32, sig: &str) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_has_a_unique_name_and_a_valid_scenario() {
        let mut names: Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Fault::ALL.len());
        for fault in Fault::ALL {
            assert_eq!(Fault::parse(fault.name()), Some(fault));
            for long in [false, true] {
                fault
                    .scenario(long)
                    .validate()
                    .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            }
        }
    }
}
