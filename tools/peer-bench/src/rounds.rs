//! Alternating rounds: every design runs the crowd once per round, the order rotating each
//! round, so a noisy stretch of the machine hits every design in turn; the median round (by
//! attempts per second) stands for the design's speed, the worst round for its correctness.

use std::sync::Arc;

use crate::crowd::{Crowd, RunResult};
use crate::designs::Design;

/// A design's rounds, summarised.
pub struct Summary {
    /// The median round by throughput.
    pub median: RunResult,
    /// The worst value over the rounds of each correctness column.
    pub worst: Worst,
    pub rounds: usize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Worst {
    pub oversold: u64,
    pub unsold: u64,
    pub refusals_with_stock_left: u64,
    pub limit_violations: u64,
    pub duplicate_grants: u64,
    pub misanswered_resends: u64,
}

impl Worst {
    /// Failures that need no sell-out to show: oversold, over the limit, sold twice, resends
    /// misanswered (the selling-only run has stock left by design).
    pub fn record_failures(&self) -> u64 {
        self.oversold + self.limit_violations + self.duplicate_grants + self.misanswered_resends
    }

    pub fn total(&self) -> u64 {
        self.oversold
            + self.unsold
            + self.refusals_with_stock_left
            + self.limit_violations
            + self.duplicate_grants
            + self.misanswered_resends
    }
}

pub fn summarise(mut runs: Vec<RunResult>) -> Summary {
    let mut worst = Worst::default();
    for r in &runs {
        worst.oversold = worst.oversold.max(r.oversold);
        worst.unsold = worst.unsold.max(r.unsold);
        worst.refusals_with_stock_left = worst
            .refusals_with_stock_left
            .max(r.refusals_with_stock_left);
        worst.misanswered_resends = worst.misanswered_resends.max(r.misanswered_resends);
        worst.limit_violations = worst.limit_violations.max(r.limit_violations);
        worst.duplicate_grants = worst.duplicate_grants.max(r.duplicate_grants);
    }
    let rounds = runs.len();
    runs.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    let median = runs.swap_remove(rounds / 2);
    Summary {
        median,
        worst,
        rounds,
    }
}

/// Runs `designs` for `rounds` alternating rounds; `tag` keeps run ids apart between callers.
pub async fn alternate(
    crowd: &Crowd,
    designs: &[Arc<dyn Design>],
    rounds: usize,
    concurrency: usize,
    tag: &str,
) -> anyhow::Result<Vec<Summary>> {
    let mut runs: Vec<Vec<RunResult>> = designs.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for turn in 0..designs.len() {
            let d = (round + turn) % designs.len();
            let result = run_once(crowd, &designs[d], concurrency, &run_id(tag, round, d)).await?;
            runs[d].push(result);
        }
    }
    Ok(runs.into_iter().map(summarise).collect())
}

/// A run id no other run of this process or an earlier one shares.
pub fn run_id(tag: &str, round: usize, design: usize) -> String {
    format!("{tag}-r{round}-d{design}-{}", std::process::id())
}

/// One run of the crowd, with a progress line on stderr.
pub async fn run_once(
    crowd: &Crowd,
    design: &Arc<dyn Design>,
    concurrency: usize,
    run_id: &str,
) -> anyhow::Result<RunResult> {
    let result = crowd.run(design.clone(), run_id, concurrency).await?;
    eprintln!(
        "  {run_id}: {:<38} {:>9.0} attempts/s in {:.1} s, granted {}, left {}",
        result.design,
        result.per_sec(),
        result.elapsed.as_secs_f64(),
        result.granted_units,
        result.left_in_store
    );
    Ok(result)
}
