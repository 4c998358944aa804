//! Ours with 1, 3, 8 and 16 shards against the single counter on a three-primary Redis Cluster
//! on loopback (shards carry one hash tag each, so they land on different slots and nodes),
//! with the CPU each node used per run.

use std::sync::Arc;
use std::time::Duration;

use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use flashsale_core::stock::{SoldOutCache, SoldOutCacheConfig};
use flashsale_core::domain::SystemClock;
use testkit::RedisCluster;

use crate::cpu;
use crate::crowd::Crowd;
use crate::designs::ours::Ours;
use crate::designs::single_counter::SingleCounter;
use crate::designs::Design;
use crate::rounds::{run_id, run_once, summarise, Summary};

pub const SHARD_COUNTS: [u16; 4] = [1, 3, 8, 16];

/// One configuration's rounds and the CPU its nodes used, averaged per run.
pub struct Scaled {
    pub label: String,
    pub shards: Option<u16>,
    pub summary: Summary,
    pub node_cpu: Vec<Duration>,
}

pub async fn run(crowd: &Crowd, rounds: usize, concurrency: usize) -> anyhow::Result<Vec<Scaled>> {
    let cluster = RedisCluster::start(3);
    let conn = cluster.connection().await;
    let pids: Vec<u32> = cluster.nodes().iter().map(|n| n.pid()).collect();
    let mut configs: Vec<(String, Option<u16>, Arc<dyn Design>)> = vec![(
        "single counter (Lua)".into(),
        None,
        Arc::new(SingleCounter::new(conn.clone())),
    )];
    for shards in SHARD_COUNTS {
        let engine = || RedisStockEngine::new(conn.clone(), RedisStockConfig::default());
        engine().preload_scripts().await?;
        configs.push((
            format!("ours, {shards} shards"),
            Some(shards),
            Arc::new(Ours::new(engine(), "ours", shards)?),
        ));
        configs.push((
            format!("ours + sold-out cache, {shards} shards"),
            Some(shards),
            Arc::new(Ours::new(
                SoldOutCache::new(engine(), SystemClock, SoldOutCacheConfig::default()),
                "ours + sold-out cache",
                shards,
            )?),
        ));
    }
    let mut runs: Vec<Vec<_>> = configs.iter().map(|_| Vec::new()).collect();
    let mut cpu_totals: Vec<Vec<Duration>> = configs.iter().map(|_| vec![Duration::ZERO; pids.len()]).collect();
    for round in 0..rounds {
        for turn in 0..configs.len() {
            let c = (round + turn) % configs.len();
            let before: Vec<Duration> = pids.iter().map(|p| cpu::used(*p)).collect::<Result<_, _>>()?;
            let result = run_once(crowd, &configs[c].2, concurrency, &run_id("cluster", round, c)).await?;
            for (n, pid) in pids.iter().enumerate() {
                cpu_totals[c][n] += cpu::used(*pid)?.saturating_sub(before[n]);
            }
            runs[c].push(result);
        }
    }
    Ok(configs
        .into_iter()
        .zip(runs)
        .zip(cpu_totals)
        .map(|(((label, shards, _), runs), cpu)| Scaled {
            label,
            shards,
            summary: summarise(runs),
            node_cpu: cpu.into_iter().map(|t| t / rounds as u32).collect(),
        })
        .collect())
}
