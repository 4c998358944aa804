//! The scheduled sweep (EventBridge rule, every minute): the expiry cleanup, then for every
//! sale still in its maintenance window, rebuild detection and hold reconciliation, all within
//! one time budget.
//!
//! Per sale, detection comes first: a sale with a shard whose stock record is gone (Redis lost
//! it) or fenced (served by another Redis process than the one it was verified on: a failover
//! may have lost writes) is rebuilt automatically, and so is one whose pause is older than
//! `stale_pause` (a rebuild died midway). A sale paused more recently has a rebuild running and is left alone.
//! Only sales whose shards are all present and selling are reconciled; reconciling a sale
//! whose stock is gone would only see missing holds everywhere.
//!
//! The cleanup gets at most `expiry_share` of the budget, so a large backlog of expired
//! reservations cannot starve the reconciliation; whatever is left over goes to the sales,
//! starting with a different sale each minute.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{ConfigError, Env};
use crate::domain::Clock;
use crate::expiry::{ExpiryConfig, ExpiryReport, ExpiryService, ExpiryStore};
use crate::reconcile::holds::{totals, HoldReconciler, ReconcileConfig, SaleReconcileReport};
use crate::reconcile::rebuild::{
    RebuildConfig, RebuildError, RebuildReport, StockRebuilder, Trigger,
};
use crate::reconcile::{DurableRecords, PaymentRecovery};
use crate::sale::{Sale, SaleCatalog};
use crate::stock::maintenance::ShardState;
use crate::stock::{StockEngine, StockMaintenance};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SweepConfig {
    pub expiry: ExpiryConfig,
    pub reconcile: ReconcileConfig,
    pub rebuild: RebuildConfig,
    /// The cleanup's share of the budget (0..1).
    pub expiry_share: f64,
    /// A pause older than this is left by a dead rebuild: rebuild again.
    pub stale_pause: Duration,
    /// A rebuild starts only with at least this much budget left: one cut by the function's
    /// timeout would leave the sale paused until `stale_pause`. (A rebuild asked for on the
    /// repair queue runs in an invocation of its own.)
    pub min_rebuild_budget: Duration,
}

impl Default for SweepConfig {
    fn default() -> Self {
        Self {
            expiry: ExpiryConfig::default(),
            reconcile: ReconcileConfig::default(),
            rebuild: RebuildConfig::default(),
            expiry_share: 0.6,
            stale_pause: Duration::from_secs(120),
            min_rebuild_budget: Duration::from_secs(15),
        }
    }
}

impl SweepConfig {
    /// The parts' variables, and `STALE_PAUSE_MS` (default 120000).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            expiry: ExpiryConfig::from_env(env)?,
            reconcile: ReconcileConfig::from_env(env)?,
            rebuild: RebuildConfig::from_env(env)?,
            stale_pause: Duration::from_millis(
                env.parsed_or("STALE_PAUSE_MS", d.stale_pause.as_millis() as u64)?,
            ),
            ..d
        })
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    pub expiry: ExpiryReport,
    /// Sales in their maintenance window.
    pub sales: u64,
    pub reconciled: Vec<SaleReconcileReport>,
    pub rebuilt: Vec<RebuildReport>,
    /// Sales skipped because a rebuild is running on them.
    pub rebuilding: Vec<String>,
    /// Failures, one line each (the next run retries).
    pub errors: Vec<String>,
    pub elapsed_ms: u64,
    /// The budget ran out before everything was done; the next run resumes.
    pub more_remaining: bool,
}

/// The sweep. Borrows its dependencies: `E` expiry store, `S` stock, `R` durable records,
/// `C` sale catalog, `K` clock, `P` payment recovery.
pub struct Sweep<'a, E, S, R, C, K, P> {
    pub expiry_store: &'a E,
    pub stock: &'a S,
    pub records: &'a R,
    pub catalog: &'a C,
    pub clock: &'a K,
    pub payments: &'a P,
    pub config: SweepConfig,
}

enum Verdict {
    Reconcile,
    Rebuild,
    Rebuilding,
}

impl<E, S, R, C, K, P> Sweep<'_, E, S, R, C, K, P>
where
    E: ExpiryStore,
    S: StockEngine + StockMaintenance,
    R: DurableRecords,
    C: SaleCatalog,
    K: Clock,
    P: PaymentRecovery,
{
    pub async fn run(&self, budget: Duration) -> SweepReport {
        let started = Instant::now();
        let deadline = started + budget;
        let now = self.clock.now();
        let expiry = ExpiryService {
            store: self.expiry_store,
            stock: self.stock,
            catalog: self.catalog,
            config: self.config.expiry,
        }
        .run(
            now,
            started + budget.mul_f64(self.config.expiry_share.clamp(0.0, 1.0)),
        )
        .await;
        let mut report = SweepReport {
            expiry,
            ..SweepReport::default()
        };

        let sales = match self.catalog.list().await {
            Ok(sales) => sales,
            Err(error) => {
                report.errors.push(format!("listing sales: {error}"));
                return self.finish(report, started);
            }
        };
        let mut sales: Vec<Sale> = sales
            .into_iter()
            .filter(|s| s.needs_maintenance_at(now))
            .collect();
        // Start at another sale each minute, so a budget that runs out before the last sale
        // does not leave the same sales unchecked run after run.
        if !sales.is_empty() {
            let start = (now.as_secs().max(0) / 60) as usize % sales.len();
            sales.rotate_left(start);
        }
        report.sales = sales.len() as u64;
        let reconciler = HoldReconciler {
            stock: self.stock,
            records: self.records,
            payments: self.payments,
            config: self.config.reconcile,
        };
        let rebuilder = StockRebuilder {
            stock: self.stock,
            records: self.records,
            catalog: self.catalog,
            clock: self.clock,
            config: self.config.rebuild,
        };
        for sale in &sales {
            if Instant::now() >= deadline {
                report.more_remaining = true;
                break;
            }
            let verdict = match self.stock.shard_states(&sale.stock()).await {
                Ok(states) => self.verdict(&states),
                Err(error) => {
                    report
                        .errors
                        .push(format!("{}: reading stock: {error}", sale.sale_id));
                    continue;
                }
            };
            match verdict {
                Verdict::Rebuilding => report.rebuilding.push(sale.sale_id.to_string()),
                Verdict::Rebuild
                    if deadline.saturating_duration_since(Instant::now())
                        < self.config.min_rebuild_budget =>
                {
                    report.more_remaining = true;
                }
                Verdict::Rebuild => {
                    match rebuilder.rebuild(&sale.sale_id, Trigger::Automatic).await {
                        Ok(rebuilt) => report.rebuilt.push(rebuilt),
                        Err(RebuildError::AlreadyRunning) => {
                            report.rebuilding.push(sale.sale_id.to_string())
                        }
                        Err(error) => report
                            .errors
                            .push(format!("{}: rebuild: {error}", sale.sale_id)),
                    }
                }
                Verdict::Reconcile => match reconciler.reconcile_sale(sale, now, deadline).await {
                    Ok(reconciled) => {
                        report.more_remaining |= reconciled.incomplete;
                        report.reconciled.push(reconciled);
                    }
                    Err(error) => report
                        .errors
                        .push(format!("{}: reconcile: {error}", sale.sale_id)),
                },
            }
        }
        self.finish(report, started)
    }

    /// A rebuild asked for on the repair queue: done if the sale needs one (a fenced or missing
    /// shard, or a stale pause), otherwise nothing (a duplicate request after the rebuild).
    /// Returns the report, or `None` when nothing was needed.
    pub async fn rebuild_requested(
        &self,
        sale_id: &crate::domain::SaleId,
    ) -> Result<Option<RebuildReport>, RebuildError> {
        let Some(sale) = self.catalog.get(sale_id).await? else {
            return Err(RebuildError::SaleNotFound);
        };
        let states = self.stock.shard_states(&sale.stock()).await?;
        if !matches!(self.verdict(&states), Verdict::Rebuild) {
            return Ok(None);
        }
        let rebuilder = StockRebuilder {
            stock: self.stock,
            records: self.records,
            catalog: self.catalog,
            clock: self.clock,
            config: self.config.rebuild,
        };
        rebuilder
            .rebuild(sale_id, Trigger::Requested)
            .await
            .map(Some)
    }

    fn verdict(&self, states: &[ShardState]) -> Verdict {
        let now = self.clock.now();
        let mut paused_recently = false;
        for state in states {
            // A placeholder always carries its pause time; one without is broken: rebuild.
            // A fenced shard may have lost writes: rebuild now, before its units sell again.
            if matches!(
                state,
                ShardState::Missing
                    | ShardState::Placeholder { paused_at: None }
                    | ShardState::Ready { fenced: true, .. }
            ) {
                return Verdict::Rebuild;
            }
            if let Some(since) = state.paused_at() {
                if since.until(now) >= self.config.stale_pause {
                    return Verdict::Rebuild;
                }
                paused_recently = true;
            }
        }
        if paused_recently {
            Verdict::Rebuilding
        } else {
            Verdict::Reconcile
        }
    }

    fn finish(&self, mut report: SweepReport, started: Instant) -> SweepReport {
        report.more_remaining |= report.expiry.more_remaining;
        report.elapsed_ms = started.elapsed().as_millis() as u64;
        let e = &report.expiry;
        let mut counters: Vec<(&str, u64)> = vec![
            ("Expired", e.expired),
            ("ExpirySkipped", e.skipped),
            ("HoldsReleasedOnExpiry", e.released),
            ("ExpiryReleaseFailures", e.release_failures),
            ("ExpiryErrors", e.errors),
            ("StockRebuilds", report.rebuilt.len() as u64),
            ("SweepErrors", report.errors.len() as u64),
            ("MoreRemaining", u64::from(report.more_remaining)),
        ];
        let sums = totals(&report.reconciled);
        let mut names: Vec<&&str> = sums.keys().collect();
        names.sort();
        for name in names {
            counters.push((name, sums[*name]));
        }
        let oversold: i64 = report.rebuilt.iter().map(|r| r.oversold_units).sum();
        counters.push(("RebuildOversoldUnits", oversold.max(0) as u64));
        crate::metrics::emit("expiry-cleanup", &counters, report.elapsed_ms as f64);
        report
    }
}
