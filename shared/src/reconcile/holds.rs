//! Hold reconciliation, one sale at a time, in both directions.
//!
//! Redis -> DynamoDB: every active hold older than the grace period is checked against its
//! durable record (BatchGetItem, strongly consistent):
//!
//! | record                          | action                                              |
//! |---------------------------------|-----------------------------------------------------|
//! | none (the reserve died)         | write an EXPIRED "orphan" record, then release       |
//! | EXPIRED, FAILED                 | release (an earlier release failed)                  |
//! | CONFIRMED                       | commit (the saga's commit failed)                    |
//! | PENDING, PAYMENT_PROCESSING     | keep                                                 |
//!
//! Fallback claims never confirmed (pending-claims) older than the grace period are dropped.
//!
//! DynamoDB -> Redis: every reservation of the sale that owns units (by-sale index: PENDING,
//! PAYMENT_PROCESSING, CONFIRMED), older than the grace period, is checked in Redis:
//!
//! | record                      | hold in Redis         | action                                |
//! |-----------------------------|-----------------------|---------------------------------------|
//! | PENDING, PAYMENT_PROCESSING | held                  | keep                                  |
//! | PENDING, PAYMENT_PROCESSING | missing, released     | re-hold (below)                       |
//! | PENDING, PAYMENT_PROCESSING | sold                  | anomaly: logged, counted, alarmed     |
//! | CONFIRMED                   | sold                  | keep                                  |
//! | CONFIRMED                   | held                  | commit                                |
//! | CONFIRMED                   | missing, released     | take as sold again, into debt if need |
//! |                             |                       | be (a paid order keeps its units)     |
//! | PAYMENT_PROCESSING, payment asked for before the grace | (any) | no saga running? start one ([`super::PaymentRecovery`]) |
//!
//! A held reservation whose hold is not active (gone after a failover, or released by a
//! reserve whose durable write only looked failed) gets its hold back from `available`, with
//! the buyer's claim. If the shard has no units left, two buyers now own one unit; the safe
//! action depends on whether money is moving:
//! - PENDING (nothing charged): the reservation is cancelled, PENDING -> FAILED with
//!   `failure_reason = stock_lost` (conditional: if a payment claimed it meanwhile, the next
//!   rule applies). The buyer loses a reservation; nobody is sold a unit that does not exist.
//! - PAYMENT_PROCESSING (a charge may be under way): the hold is re-created anyway and the
//!   shard's `available` goes negative. The debt is reported loudly (`oversold`, an ERROR log);
//!   units released later on that shard pay it back instead of being sold again. A person must
//!   decide which buyer to refund: the system cannot undo it.
//!
//! The grace period matters: a reserve takes its hold a few milliseconds before it writes the
//! record, and a hold younger than the grace is never judged.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{
    is_held, DurableRecords, PaymentCheck, PaymentRecovery, ReservationSummary, Which, STOCK_LOST,
};
use crate::config::{ConfigError, Env};
use crate::domain::{ReservationId, Timestamp};
use crate::reservation::{InsertOutcome, Reservation, ReservationStatus, StoreError};
use crate::sale::Sale;
use crate::stock::maintenance::{Claim, HoldRecord, HoldSpec, HoldState, RestoreOutcome};
use crate::stock::{CommitOutcome, ReleaseOutcome, StockEngine, StockError, StockMaintenance};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// How old a hold, claim or record must be before it is judged.
    pub grace: Duration,
    /// Holds read (and records batch-read) per step.
    pub page: usize,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(60),
            page: 500,
        }
    }
}

impl ReconcileConfig {
    /// `HOLD_GRACE_MS` (default 60000).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            grace: Duration::from_millis(
                env.parsed_or("HOLD_GRACE_MS", d.grace.as_millis() as u64)?,
            ),
            ..d
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Stock(#[from] StockError),
    #[error(transparent)]
    Records(#[from] StoreError),
}

/// What reconciling one sale did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SaleReconcileReport {
    pub sale_id: String,
    /// Stale active holds checked against their records.
    pub holds_checked: u64,
    /// Holds without any record, released (after writing their orphan record).
    pub orphans_released: u64,
    /// Holds of EXPIRED or FAILED reservations, released.
    pub released: u64,
    /// Holds of CONFIRMED reservations, committed.
    pub committed: u64,
    /// Holds of PENDING / PAYMENT_PROCESSING reservations, left alone.
    pub kept: u64,
    /// Stale fallback claims dropped.
    pub claims_dropped: u64,
    /// Held reservations checked for a hold in Redis.
    pub records_checked: u64,
    /// Held reservations whose hold was re-created.
    pub repaired: u64,
    /// PENDING reservations cancelled because their shard had no unit left for them.
    pub cancelled: u64,
    /// Units re-held beyond the shard's stock (PAYMENT_PROCESSING, no unit left): oversold.
    pub oversold: u64,
    /// Units of CONFIRMED reservations whose hold Redis had lost or released, taken as sold.
    pub sold_retaken: u64,
    /// Payments with no running saga that got one (started, or restarted).
    pub payments_restarted: u64,
    /// States that should not exist (a sold hold under an unpaid record, ...): logged, untouched.
    pub anomalies: u64,
    /// The budget ran out before the sale was fully checked.
    pub incomplete: bool,
}

/// The reconciler. Borrows its dependencies: `S` stock, `R` durable records, `P` payment
/// recovery.
pub struct HoldReconciler<'a, S, R, P> {
    pub stock: &'a S,
    pub records: &'a R,
    pub payments: &'a P,
    pub config: ReconcileConfig,
}

impl<S, R, P> HoldReconciler<'_, S, R, P>
where
    S: StockEngine + StockMaintenance,
    R: DurableRecords,
    P: PaymentRecovery,
{
    /// Reconciles one sale whose shards are all set up and selling (the caller checks; a sale
    /// being rebuilt is left to the rebuild).
    pub async fn reconcile_sale(
        &self,
        sale: &Sale,
        now: Timestamp,
        deadline: Instant,
    ) -> Result<SaleReconcileReport, ReconcileError> {
        let mut report = SaleReconcileReport {
            sale_id: sale.sale_id.to_string(),
            ..Default::default()
        };
        let cutoff = now.minus(self.config.grace);
        for shard in sale.shards.all() {
            if Instant::now() >= deadline {
                report.incomplete = true;
                return Ok(report);
            }
            self.stale_holds_of_shard(sale, shard, cutoff, now, deadline, &mut report)
                .await?;
            for claim in self
                .stock
                .stale_claims(&sale.stock(), shard, cutoff, self.config.page)
                .await?
            {
                if self
                    .stock
                    .drop_claim(&sale.stock(), &claim.user, claim.reservation_id)
                    .await?
                {
                    tracing::info!(reservation_id = %claim.reservation_id, sale_id = %sale.sale_id, "dropped a stale fallback claim");
                    report.claims_dropped += 1;
                }
            }
        }
        if Instant::now() >= deadline {
            report.incomplete = true;
            return Ok(report);
        }
        self.compare_records(sale, cutoff, now, &mut report).await?;
        Ok(report)
    }

    /// Redis -> DynamoDB for one shard, page by page.
    async fn stale_holds_of_shard(
        &self,
        sale: &Sale,
        shard: u16,
        cutoff: Timestamp,
        now: Timestamp,
        deadline: Instant,
        report: &mut SaleReconcileReport,
    ) -> Result<(), ReconcileError> {
        let stock = sale.stock();
        let mut offset = 0;
        loop {
            if Instant::now() >= deadline {
                report.incomplete = true;
                return Ok(());
            }
            let holds = self
                .stock
                .stale_holds(&stock, shard, cutoff, offset, self.config.page)
                .await?;
            if holds.is_empty() {
                return Ok(());
            }
            let ids: Vec<ReservationId> = holds.iter().map(|h| h.reservation_id).collect();
            let records = self.records.get_many(&ids).await?;
            let mut still_active = 0;
            for hold in &holds {
                report.holds_checked += 1;
                let settled = self
                    .settle_hold(sale, hold, records.get(&hold.reservation_id), now, report)
                    .await?;
                if !settled {
                    still_active += 1;
                }
            }
            // Settled holds left the index; the ones kept are still ahead of the next page.
            offset += still_active;
            if holds.len() < self.config.page {
                return Ok(());
            }
        }
    }

    /// Applies the table above to one stale hold. True if the hold left the active set.
    async fn settle_hold(
        &self,
        sale: &Sale,
        hold: &HoldRecord,
        record: Option<&Reservation>,
        now: Timestamp,
        report: &mut SaleReconcileReport,
    ) -> Result<bool, ReconcileError> {
        let stock = sale.stock();
        let id = hold.reservation_id;
        let Some(record) = record else {
            let orphan = orphan_record(sale, hold);
            return match self.records.record_orphan(&orphan, now).await? {
                InsertOutcome::Inserted => {
                    tracing::warn!(reservation_id = %id, sale_id = %sale.sale_id, "released a hold with no durable record (the reserve died between its writes)");
                    let released = self.release(sale, hold, report).await?;
                    if released {
                        report.orphans_released += 1;
                    }
                    Ok(released)
                }
                // The record appeared meanwhile (a late write): judged on the next run.
                InsertOutcome::AlreadyExists => Ok(false),
            };
        };
        match record.status {
            ReservationStatus::Pending | ReservationStatus::PaymentProcessing => {
                report.kept += 1;
                Ok(false)
            }
            ReservationStatus::Expired | ReservationStatus::Failed => {
                let released = self.release(sale, hold, report).await?;
                if released {
                    tracing::info!(reservation_id = %id, status = record.status.as_str(), "released the hold of a finished reservation");
                    report.released += 1;
                }
                Ok(released)
            }
            ReservationStatus::Confirmed => {
                match self.stock.commit(&stock, hold.shard, id).await? {
                    CommitOutcome::Committed => {
                        tracing::info!(reservation_id = %id, "committed the hold of a confirmed reservation");
                        report.committed += 1;
                        Ok(true)
                    }
                    CommitOutcome::AlreadyCommitted => Ok(true),
                    CommitOutcome::WasReleased => {
                        tracing::error!(reservation_id = %id, sale_id = %sale.sale_id, "a confirmed reservation's hold was released; its unit may have been sold again");
                        report.anomalies += 1;
                        Ok(true)
                    }
                    CommitOutcome::NotFound
                    | CommitOutcome::SaleNotSetUp
                    | CommitOutcome::Paused
                    | CommitOutcome::Retaken { .. } => Ok(false),
                }
            }
        }
    }

    /// Releases a hold; true if it is no longer active.
    async fn release(
        &self,
        sale: &Sale,
        hold: &HoldRecord,
        report: &mut SaleReconcileReport,
    ) -> Result<bool, ReconcileError> {
        match self
            .stock
            .release(&sale.stock(), hold.shard, hold.reservation_id)
            .await?
        {
            ReleaseOutcome::Released { .. } | ReleaseOutcome::AlreadyReleased => Ok(true),
            ReleaseOutcome::NotFound => {
                // Redis lost the hold but maybe not the buyer's claim (another shard's slot):
                // release cannot name the buyer of a hold that is gone, so drop it here.
                self.stock
                    .drop_claim(&sale.stock(), &hold.user, hold.reservation_id)
                    .await?;
                Ok(true)
            }
            ReleaseOutcome::WasCommitted => {
                tracing::error!(reservation_id = %hold.reservation_id, sale_id = %sale.sale_id, "the hold of an unsold reservation was committed; left as is");
                report.anomalies += 1;
                Ok(true)
            }
            ReleaseOutcome::SaleNotSetUp => Ok(false),
        }
    }

    /// DynamoDB -> Redis: every reservation that owns units against its hold (the second
    /// table of the module doc), and payments with no running saga.
    async fn compare_records(
        &self,
        sale: &Sale,
        cutoff: Timestamp,
        now: Timestamp,
        report: &mut SaleReconcileReport,
    ) -> Result<(), ReconcileError> {
        let stock = sale.stock();
        let live = self
            .records
            .reservations_of_sale(&sale.sale_id, Which::Live)
            .await?;
        report.records_checked += live.len() as u64;
        let mut by_shard: BTreeMap<u16, Vec<&ReservationSummary>> = BTreeMap::new();
        for r in live
            .iter()
            .filter(|r| Which::Live.includes(r.status) && r.created_at <= cutoff)
        {
            by_shard.entry(r.shard).or_default().push(r);
        }
        // (record id, the hold's state as seen) of every disagreement, judged below on the
        // record read by id: the index may lag behind the record.
        let mut candidates: Vec<(ReservationId, Option<HoldState>)> = Vec::new();
        for (shard, records) in by_shard {
            for chunk in records.chunks(self.config.page) {
                let ids: Vec<ReservationId> = chunk.iter().map(|r| r.reservation_id).collect();
                let holds = self.stock.holds(&stock, shard, &ids).await?;
                for (record, hold) in chunk.iter().zip(holds) {
                    let state = hold.map(|h| h.state);
                    let agrees = match (record.status, state) {
                        (ReservationStatus::Confirmed, Some(HoldState::Committed)) => true,
                        (status, Some(HoldState::Held)) => status.is_held(),
                        _ => false,
                    };
                    if !agrees {
                        candidates.push((record.reservation_id, state));
                    }
                }
            }
        }
        // Payments asked for before the grace period whose saga may not run.
        let stuck: Vec<ReservationId> = live
            .iter()
            .filter(|r| {
                r.status == ReservationStatus::PaymentProcessing
                    && r.payment_started_at.is_some_and(|t| t <= cutoff)
            })
            .map(|r| r.reservation_id)
            .collect();
        for id in stuck {
            match self.payments.settle(id).await {
                Ok(PaymentCheck::Started | PaymentCheck::Restarted) => {
                    report.payments_restarted += 1
                }
                Ok(PaymentCheck::Running | PaymentCheck::NotProcessing) => {}
                Err(error) => {
                    tracing::warn!(%error, reservation_id = %id, "could not check a payment's saga; next run retries");
                }
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        // The index may lag: decide on the records themselves, read with strong consistency.
        let ids: Vec<ReservationId> = candidates.iter().map(|(id, _)| *id).collect();
        let fresh = self.records.get_many(&ids).await?;
        for (id, seen) in candidates {
            let Some(record) = fresh.get(&id) else {
                continue;
            };
            if record.created_at > cutoff {
                continue;
            }
            match (record.status, seen) {
                (ReservationStatus::Confirmed, _) => {
                    self.retake_sold(sale, record, now, report).await?
                }
                (status, Some(HoldState::Committed)) if is_held(status) => {
                    tracing::error!(reservation_id = %id, status = status.as_str(), "a held reservation's hold is committed in Redis");
                    report.anomalies += 1;
                }
                (status, _) if is_held(status) => self.repair(sale, record, now, report).await?,
                _ => {}
            }
        }
        Ok(())
    }

    /// A CONFIRMED reservation whose hold is not sold in Redis: commit it, or take its units as
    /// sold again if Redis lost or released the hold (into debt if the shard has none left).
    async fn retake_sold(
        &self,
        sale: &Sale,
        record: &Reservation,
        now: Timestamp,
        report: &mut SaleReconcileReport,
    ) -> Result<(), ReconcileError> {
        let stock = sale.stock();
        match self
            .stock
            .commit_paid(&stock, &spec_of(record), now)
            .await?
        {
            CommitOutcome::Committed => {
                tracing::info!(reservation_id = %record.reservation_id, "committed the hold of a confirmed reservation");
                report.committed += 1;
            }
            CommitOutcome::Retaken { available_after } => {
                report.sold_retaken += u64::from(record.quantity.get());
                if available_after < 0 {
                    tracing::error!(reservation_id = %record.reservation_id, sale_id = %sale.sale_id, shard = record.shard, available_after, "OVERSOLD: a paid order's hold was lost and its units had been sold again; taken into debt, a person must resolve it");
                    report.oversold += u64::from(record.quantity.get());
                } else {
                    tracing::warn!(reservation_id = %record.reservation_id, "a paid order's hold was lost: its units are sold again");
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn repair(
        &self,
        sale: &Sale,
        record: &Reservation,
        now: Timestamp,
        report: &mut SaleReconcileReport,
    ) -> Result<(), ReconcileError> {
        let stock = sale.stock();
        let spec = spec_of(record);
        let mut status = record.status;
        let mut allow_debt = status == ReservationStatus::PaymentProcessing;
        loop {
            match self
                .stock
                .restore_hold(&stock, &spec, now, allow_debt)
                .await?
            {
                RestoreOutcome::Restored { available_after } => {
                    self.stock
                        .restore_claims(&stock, &[claim_of(record)])
                        .await?;
                    if available_after < 0 {
                        tracing::error!(
                            reservation_id = %record.reservation_id,
                            sale_id = %sale.sale_id,
                            shard = record.shard,
                            available_after,
                            "OVERSOLD: a reservation being paid had lost its hold and the shard had no unit left; re-held in debt, a person must resolve it"
                        );
                        report.oversold += u64::from(record.quantity.get());
                    } else {
                        tracing::warn!(reservation_id = %record.reservation_id, status = status.as_str(), "re-created a lost hold");
                    }
                    report.repaired += 1;
                    return Ok(());
                }
                // Held already (a re-run of an earlier restore whose answer was lost): its claim
                // may be the part that is missing. Restoring a claim is idempotent.
                RestoreOutcome::AlreadyHeld => {
                    self.stock
                        .restore_claims(&stock, &[claim_of(record)])
                        .await?;
                    return Ok(());
                }
                RestoreOutcome::Paused | RestoreOutcome::Fenced | RestoreOutcome::SaleNotSetUp => {
                    return Ok(())
                }
                RestoreOutcome::WasCommitted => {
                    report.anomalies += 1;
                    return Ok(());
                }
                RestoreOutcome::NoUnits { available } => {
                    if status == ReservationStatus::Pending
                        && self
                            .records
                            .fail_pending(record.reservation_id, STOCK_LOST, now)
                            .await?
                    {
                        tracing::error!(
                            reservation_id = %record.reservation_id,
                            sale_id = %sale.sale_id,
                            available,
                            "cancelled a PENDING reservation whose hold was lost and whose shard has no unit left"
                        );
                        // Its claim may be left from before the loss.
                        self.stock
                            .drop_claim(&stock, &record.user_id, record.reservation_id)
                            .await?;
                        report.cancelled += 1;
                        return Ok(());
                    }
                    // Not PENDING any more: a payment claimed it, so it must keep its unit.
                    let now_status = self
                        .records
                        .get_many(&[record.reservation_id])
                        .await?
                        .get(&record.reservation_id)
                        .map(|r| r.status);
                    match now_status {
                        Some(ReservationStatus::PaymentProcessing) if !allow_debt => {
                            status = ReservationStatus::PaymentProcessing;
                            allow_debt = true;
                        }
                        _ => return Ok(()),
                    }
                }
            }
        }
    }
}

fn spec_of(record: &Reservation) -> HoldSpec {
    HoldSpec {
        reservation_id: record.reservation_id,
        user: record.user_id.clone(),
        quantity: record.quantity,
        shard: record.shard,
        expires_at: record.expires_at,
    }
}

fn claim_of(record: &Reservation) -> Claim {
    Claim {
        user: record.user_id.clone(),
        reservation_id: record.reservation_id,
        quantity: record.quantity.get(),
    }
}

/// The record written for a hold nobody recorded: EXPIRED, priced like the reserve would have.
fn orphan_record(sale: &Sale, hold: &HoldRecord) -> Reservation {
    let quantity =
        crate::domain::Quantity::new(hold.quantity).unwrap_or(crate::domain::Quantity::ONE);
    Reservation {
        reservation_id: hold.reservation_id,
        sale_id: sale.sale_id.clone(),
        user_id: hold.user.clone(),
        quantity,
        shard: hold.shard,
        status: ReservationStatus::Expired,
        amount: sale.price.times(quantity.get()).unwrap_or(sale.price),
        created_at: hold.created_at,
        expires_at: hold.expires_at,
    }
}

/// Sums reports of several sales.
pub fn totals<'r>(
    reports: impl IntoIterator<Item = &'r SaleReconcileReport>,
) -> HashMap<&'static str, u64> {
    let mut t: HashMap<&'static str, u64> = HashMap::new();
    for r in reports {
        for (name, value) in [
            ("HoldsChecked", r.holds_checked),
            ("OrphansReleased", r.orphans_released),
            ("HoldsReleased", r.released),
            ("HoldsCommitted", r.committed),
            ("ClaimsDropped", r.claims_dropped),
            ("HoldsRepaired", r.repaired),
            ("SoldUnitsRetaken", r.sold_retaken),
            ("PaymentsRestarted", r.payments_restarted),
            ("ReservationsCancelled", r.cancelled),
            ("UnitsOversold", r.oversold),
            ("Anomalies", r.anomalies),
        ] {
            *t.entry(name).or_default() += value;
        }
    }
    t
}
