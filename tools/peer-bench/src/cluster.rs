//! Selling only on a three-primary Redis Cluster on loopback: ours with 1, 3, 8 and 16 shards
//! against the single counter and the single counter with buyer records (each one slot, one
//! node). Each shard of ours carries its own hash tag, so the shards of a sale land on slots
//! of different nodes; which nodes hold the sale's keys is read from the cluster per run, and
//! the CPU each node used is read from /proc around each run.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use flashsale_core::domain::SaleId;
use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::ShardKeys;
use testkit::RedisCluster;

use crate::cpu;
use crate::crowd::Crowd;
use crate::designs::counter_with_records::CounterWithRecords;
use crate::designs::ours::Ours;
use crate::designs::single_counter::{stock_key, SingleCounter};
use crate::designs::Design;
use crate::rounds::{run_id, run_once, summarise, Summary};

pub const SHARD_COUNTS: [u16; 4] = [1, 3, 8, 16];

/// One configuration's rounds, the nodes its keys lived on, and the CPU per node per run
/// (busiest first: the busiest node is the ceiling).
pub struct Scaled {
    pub label: String,
    pub shards: Option<u16>,
    pub summary: Summary,
    /// "n" or "n-m" over the rounds.
    pub nodes_used: String,
    pub node_cpu: Vec<Duration>,
}

/// The cluster nodes (by index) that own the keys of run `run` of a configuration.
async fn nodes_of(
    cluster: &mut RedisCluster,
    run: &str,
    shards: Option<u16>,
) -> anyhow::Result<usize> {
    let keys: Vec<String> = match shards {
        None => vec![stock_key(run)],
        Some(n) => {
            let sale = SaleId::parse(run)?;
            (0..n).map(|s| ShardKeys::new(&sale, s).stock()).collect()
        }
    };
    let mut nodes = BTreeSet::new();
    for key in keys {
        if let Some(node) = cluster.primary_for_key(&key).await {
            nodes.insert(node);
        }
    }
    Ok(nodes.len())
}

pub async fn run(crowd: &Crowd, rounds: usize, concurrency: usize) -> anyhow::Result<Vec<Scaled>> {
    let mut cluster = RedisCluster::start(3);
    let conn = cluster.connection().await;
    let pids: Vec<u32> = cluster.nodes().iter().map(|n| n.pid()).collect();
    let mut configs: Vec<(String, Option<u16>, Arc<dyn Design>)> = vec![
        (
            "single counter (Lua)".into(),
            None,
            Arc::new(SingleCounter::new(conn.clone())),
        ),
        (
            "single counter + buyer records (Lua)".into(),
            None,
            Arc::new(CounterWithRecords::new(
                conn.clone(),
                crowd.spec.per_user_limit,
            )),
        ),
    ];
    for shards in SHARD_COUNTS {
        let engine = RedisStockEngine::new(conn.clone(), RedisStockConfig::default());
        engine.preload_scripts().await?;
        configs.push((
            format!("ours, {shards} shards"),
            Some(shards),
            Arc::new(Ours::new(vec![engine], "ours", shards)?),
        ));
    }
    let mut runs: Vec<Vec<_>> = configs.iter().map(|_| Vec::new()).collect();
    let mut cpu_totals: Vec<Vec<Duration>> = configs
        .iter()
        .map(|_| vec![Duration::ZERO; pids.len()])
        .collect();
    let mut nodes: Vec<BTreeSet<usize>> = configs.iter().map(|_| BTreeSet::new()).collect();
    for round in 0..rounds {
        for turn in 0..configs.len() {
            let c = (round + turn) % configs.len();
            let id = run_id("cluster", round, c);
            let before: Vec<Duration> = pids
                .iter()
                .map(|p| cpu::used(*p))
                .collect::<Result<_, _>>()?;
            let result = run_once(crowd, &configs[c].2, concurrency, &id).await?;
            let mut used: Vec<Duration> = pids
                .iter()
                .zip(&before)
                .map(|(pid, b)| cpu::used(*pid).map(|now| now.saturating_sub(*b)))
                .collect::<Result<_, _>>()?;
            // Busiest first: the hot node moves between runs (the run id picks the slots).
            used.sort_unstable_by(|a, b| b.cmp(a));
            for (total, d) in cpu_totals[c].iter_mut().zip(used) {
                *total += d;
            }
            nodes[c].insert(nodes_of(&mut cluster, &id, configs[c].1).await?);
            runs[c].push(result);
        }
    }
    Ok(configs
        .into_iter()
        .zip(runs)
        .zip(cpu_totals)
        .zip(nodes)
        .map(|((((label, shards, _), runs), cpu), nodes)| Scaled {
            label,
            shards,
            summary: summarise(runs),
            nodes_used: match (nodes.first(), nodes.last()) {
                (Some(a), Some(b)) if a == b => a.to_string(),
                (Some(a), Some(b)) => format!("{a}-{b}"),
                _ => "?".into(),
            },
            node_cpu: cpu.into_iter().map(|t| t / rounds as u32).collect(),
        })
        .collect())
}
