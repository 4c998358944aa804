//! Where Redis's time goes (`--costs`): the server-side microseconds one attempt costs in each
//! design that has no correctness failure, and what each Redis call of their selling steps costs.
//!
//! On one core, a Redis-bound design's attempts per second are about 1e6 / (its µs per attempt):
//! this is the figure that decides the side-by-side ratio, measured without the bench's own
//! callers in it (they share the two cores). Two measurements, both on a fresh redis-server:
//! - per attempt: the selling-only crowd runs three times per design; the redis-server process's
//!   CPU time (`/proc`) over the attempts, and the scripts' own time (`INFO commandstats`);
//! - per call: each call runs 20,000 times in a loop inside one script, timed by Redis's `TIME`,
//!   less the empty loop (the calls' keys grow as they do in a sale: new buyers, new holds).

use std::sync::Arc;

use flashsale_core::stock::redis::{RedisStockConfig, RedisStockEngine};
use redis::aio::ConnectionManager;
use testkit::RedisServer;

use crate::cpu;
use crate::crowd::Crowd;
use crate::designs::counter_with_records::CounterWithRecords;
use crate::designs::ours::Ours;
use crate::designs::Design;
use crate::rounds::{run_id, run_once};

/// Loop length of the per-call measurement.
const LOOPS: u32 = 20_000;
/// Runs of the crowd per design (CPU time is counted in clock ticks of 10 ms).
const RUNS: usize = 3;

/// The calls of ours' reserve.lua (a hold on the buyer's home shard) and of the peer's script,
/// each as a Lua statement run with the loop counter `i` (KEYS[1] is a stock record).
const CALLS: &[(&str, &str)] = &[
    (
        "ours: HMGET the stock record (6 fields)",
        "redis.call('HMGET', KEYS[1], 'available', 'shards', 'limit', 'paused', 'writer', 'held')",
    ),
    (
        "ours: GET the idempotency record (absent)",
        "redis.call('GET', 'idem:' .. i)",
    ),
    (
        "ours: HVALS the buyer's claims (absent)",
        "redis.call('HVALS', 'user:' .. i)",
    ),
    (
        "ours: the fence (INFO server, plain find of the run id line)",
        "local _, e = string.find(redis.call('INFO', 'server'), '\\nrun_id:x', 1, true)",
    ),
    (
        "(the fence before: INFO server, pattern capture)",
        "local _ = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') == 'x'",
    ),
    (
        "ours: HSET available and held",
        "redis.call('HSET', KEYS[1], 'available', 1000000 - i, 'held', i)",
    ),
    (
        "ours: HSET the hold (new field)",
        "redis.call('HSET', 'holds', 'r' .. i, 'H|1|1900000000000|1800000000000|u' .. i)",
    ),
    (
        "ours: ZADD the hold's creation time (new member)",
        "redis.call('ZADD', 'hold-times', 1800000000000 + i, 'r' .. i)",
    ),
    (
        "ours: HSET the buyer's claim (new key)",
        "redis.call('HSET', 'user:' .. i, 'r' .. i, 1)",
    ),
    (
        "both: SET the idempotency record EX (new key)",
        "redis.call('SET', 'idem:' .. i, 'r|0|1|1900000000000', 'EX', 86400)",
    ),
    (
        "peer: EXISTS the idempotency key (absent)",
        "redis.call('EXISTS', 'peer-idem:' .. i)",
    ),
    (
        "peer: GET the buyer's count (absent)",
        "redis.call('GET', 'buyer:' .. i)",
    ),
    ("peer: GET the counter", "redis.call('GET', 'counter')"),
    (
        "peer: DECRBY the counter",
        "redis.call('DECRBY', 'counter', 1)",
    ),
    (
        "peer: INCRBY the buyer's count (new key)",
        "redis.call('INCRBY', 'buyer:' .. i, 1)",
    ),
];

pub async fn run(selling: &Crowd, concurrency: usize, shards: u16) -> anyhow::Result<()> {
    let server = RedisServer::start();
    let conn = server.connection().await;
    let engine = |fencing| {
        RedisStockEngine::new(
            conn.clone(),
            RedisStockConfig {
                fencing,
                ..RedisStockConfig::default()
            },
        )
    };
    engine(true).preload_scripts().await?;
    let designs: Vec<Arc<dyn Design>> = vec![
        Arc::new(CounterWithRecords::new(
            conn.clone(),
            selling.spec.per_user_limit,
        )),
        Arc::new(Ours::new(vec![engine(true)], "ours", shards)?),
        Arc::new(Ours::new(vec![engine(false)], "ours, fence off", shards)?),
    ];
    println!("\n## Where Redis's time goes (selling only, {RUNS} runs each)\n");
    println!(
        "| design | attempts | redis-server CPU µs per attempt | EVALSHA per attempt | µs per EVALSHA |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (d, design) in designs.iter().enumerate() {
        let mut c = conn.clone();
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut c)
            .await?;
        let cpu_before = cpu::used(server.pid())?;
        let mut attempts = 0;
        for run in 0..RUNS {
            attempts += run_once(selling, design, concurrency, &run_id("costs", run, d))
                .await?
                .attempts;
        }
        let cpu = cpu::used(server.pid())? - cpu_before;
        let (calls, usec) = evalsha_stats(&mut c).await?;
        let attempts_f = attempts as f64;
        println!(
            "| {} | {attempts} | {:.1} | {:.2} | {:.1} |",
            design.name(),
            cpu.as_secs_f64() * 1e6 / attempts_f,
            calls / attempts_f,
            usec / calls.max(1.0)
        );
    }
    println!("\n| call (inside a script) | µs |\n|---|---:|");
    let mut c = conn.clone();
    let empty = loop_micros(&mut c, "local _ = i").await?;
    for (label, statement) in CALLS {
        let total = loop_micros(&mut c, statement).await?;
        println!("| {label} | {:.2} |", (total - empty) / f64::from(LOOPS));
    }
    Ok(())
}

/// `calls` and `usec` of EVALSHA in `INFO commandstats`: the script's whole time, measured by
/// Redis around each call.
async fn evalsha_stats(conn: &mut ConnectionManager) -> anyhow::Result<(f64, f64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let stats = info
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
        .unwrap_or("");
    let field = |key: &str| {
        stats
            .split(',')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((field("calls"), field("usec")))
}

/// Microseconds a script spends running `statement` LOOPS times (Redis's own clock).
async fn loop_micros(conn: &mut ConnectionManager, statement: &str) -> anyhow::Result<f64> {
    let _: () = redis::cmd("FLUSHALL").query_async(conn).await?;
    let _: () = redis::cmd("HSET")
        .arg("stock")
        .arg(&[
            ("available", "1000000"),
            ("shards", "1"),
            ("limit", "2"),
            ("paused", "0"),
            ("writer", "x"),
            ("held", "0"),
        ])
        .query_async(conn)
        .await?;
    let _: () = redis::cmd("SET")
        .arg("counter")
        .arg(1_000_000)
        .query_async(conn)
        .await?;
    let script = redis::Script::new(&format!(
        "local t0 = redis.call('TIME') for i = 1, {LOOPS} do {statement} end \
         local t1 = redis.call('TIME') return (t1[1] - t0[1]) * 1000000 + (t1[2] - t0[2])"
    ));
    let micros: i64 = script.key("stock").invoke_async(conn).await?;
    Ok(micros as f64)
}
