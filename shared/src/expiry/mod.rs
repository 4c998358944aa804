//! Expiry cleanup (product flow 5): PENDING reservations past `expires_at` become EXPIRED and
//! their units go back to the stock.
//!
//! ```text
//!   pending-by-expiry index, buckets b00..b15 (queried concurrently, paged, oldest first)
//!     └─ items ──▶ batches ──▶ (up to `concurrency` batches in flight)
//!          1. DynamoDB: PENDING -> EXPIRED, conditional on status = PENDING and
//!             expires_at <= now, REMOVE expiry_bucket (the item leaves the index)
//!             condition failed: a payment claimed it first, or it is done -> skipped
//!          2. Redis: release the hold and the buyer's claim (idempotent)
//! ```
//! DynamoDB first, Redis second: a unit is never back on sale before its record says EXPIRED.
//! If the release fails after the record changed, the hold stays H under an EXPIRED record;
//! the hold reconciler ([`crate::reconcile`]) releases it on a later run. The
//! `ReservationExpired` event comes from the table's stream (see [`crate::events`]), so it
//! cannot be lost between the two writes either.
//!
//! A run stops starting new work when its time budget is spent and reports
//! `more_remaining`; the next run (a minute later) resumes where the index says.

pub mod dynamo;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{stream, StreamExt};
use serde::Serialize;

use crate::config::{ConfigError, Env};
use crate::domain::{Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::reservation::item::EXPIRY_BUCKETS;
use crate::reservation::StoreError;
use crate::sale::SaleCatalog;
use crate::stock::{ReleaseOutcome, SaleStock, StockEngine, StockMaintenance};

/// A PENDING reservation past its expiry, as the index shows it. Sale, buyer, quantity and
/// shard never change after a reservation is made, so the index's copy is as good as the
/// item's for releasing the hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueReservation {
    pub reservation_id: ReservationId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub quantity: Quantity,
    pub shard: u16,
    pub expires_at: Timestamp,
}

/// One page of the index and where the next one starts.
#[derive(Debug, Clone)]
pub struct DuePage<C> {
    pub items: Vec<DueReservation>,
    pub next: Option<C>,
}

/// The result of the conditional PENDING -> EXPIRED write for one reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireOutcome {
    Expired,
    /// The condition failed: a payment moved it to PAYMENT_PROCESSING first, or it was already
    /// expired or finished (another run, a retry).
    NotPending,
}

/// The port for the durable side of the cleanup.
pub trait ExpiryStore: Send + Sync {
    /// Where a page of the index resumes (DynamoDB's LastEvaluatedKey).
    type Cursor: Send + Sync + 'static;

    /// Due reservations of one index bucket (`expires_at <= now`), oldest first, at most
    /// `limit`, after `after`.
    fn due(
        &self,
        bucket: &str,
        now: Timestamp,
        limit: u32,
        after: Option<Self::Cursor>,
    ) -> impl Future<Output = Result<DuePage<Self::Cursor>, StoreError>> + Send;

    /// The conditional PENDING -> EXPIRED write for each id, results in the same order. At
    /// most [`ExpiryStore::max_batch`] ids per call.
    fn expire(
        &self,
        ids: &[ReservationId],
        now: Timestamp,
    ) -> impl Future<Output = Vec<Result<ExpireOutcome, StoreError>>> + Send;

    /// How many writes one `expire` call may carry.
    fn max_batch(&self) -> usize;
}

/// Every bucket of the `pending-by-expiry` index: b00..b15.
pub fn buckets() -> Vec<String> {
    (0..EXPIRY_BUCKETS).map(|b| format!("b{b:02}")).collect()
}

/// Tunables of a cleanup run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryConfig {
    /// Write requests (each a batch of up to the store's `max_batch` reservations) in flight
    /// at once, and the Redis releases that follow them.
    pub concurrency: usize,
    /// Items per index query (DynamoDB `Limit`).
    pub page_size: u32,
}

impl Default for ExpiryConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            page_size: 500,
        }
    }
}

impl ExpiryConfig {
    /// `EXPIRY_CONCURRENCY` (default 32), `EXPIRY_PAGE_SIZE` (default 500).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let concurrency: usize = env.parsed_or("EXPIRY_CONCURRENCY", d.concurrency)?;
        let page_size: u32 = env.parsed_or("EXPIRY_PAGE_SIZE", d.page_size)?;
        if concurrency == 0 || concurrency > 1024 {
            return Err(ConfigError::Invalid {
                name: "EXPIRY_CONCURRENCY",
                reason: "must be between 1 and 1024".into(),
            });
        }
        if page_size == 0 || page_size > 10_000 {
            return Err(ConfigError::Invalid {
                name: "EXPIRY_PAGE_SIZE",
                reason: "must be between 1 and 10000".into(),
            });
        }
        Ok(Self {
            concurrency,
            page_size,
        })
    }
}

/// What one cleanup run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    /// Moved PENDING -> EXPIRED by this run.
    pub expired: u64,
    /// Condition failed: a payment claimed it first, or it was already done.
    pub skipped: u64,
    /// Holds returned to the stock.
    pub released: u64,
    /// Holds a previous attempt had released already.
    pub already_released: u64,
    /// No hold in Redis for an expired reservation (its claim is dropped anyway).
    pub hold_missing: u64,
    /// The hold had been committed (sold) although the record was PENDING: reported, untouched.
    pub anomalies: u64,
    /// The sale's stock record is gone in Redis: the stock rebuild accounts for these.
    pub deferred_to_rebuild: u64,
    /// The record says EXPIRED but the release failed: the hold reconciler frees it later.
    pub release_failures: u64,
    /// Index queries or writes that failed; the next run retries them.
    pub errors: u64,
    pub pages: u64,
    pub elapsed_ms: u64,
    /// The budget ran out with due reservations left; the next run resumes.
    pub more_remaining: bool,
    /// Sales whose stock record was missing while releasing (candidates for a rebuild).
    pub sales_not_set_up: Vec<String>,
}

#[derive(Default)]
struct Tally {
    expired: AtomicU64,
    skipped: AtomicU64,
    released: AtomicU64,
    already_released: AtomicU64,
    hold_missing: AtomicU64,
    anomalies: AtomicU64,
    deferred_to_rebuild: AtomicU64,
    release_failures: AtomicU64,
    errors: AtomicU64,
    pages: AtomicU64,
    not_set_up: Mutex<Vec<String>>,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The cleanup. Borrows its dependencies, so one set of clients serves every run.
pub struct ExpiryService<'a, E, S, C> {
    pub store: &'a E,
    pub stock: &'a S,
    pub catalog: &'a C,
    pub config: ExpiryConfig,
}

impl<E, S, C> ExpiryService<'_, E, S, C>
where
    E: ExpiryStore,
    S: StockEngine + StockMaintenance,
    C: SaleCatalog,
{
    /// One run: everything due at `now`, until `deadline` (no new work is started after it).
    pub async fn run(&self, now: Timestamp, deadline: Instant) -> ExpiryReport {
        let started = Instant::now();
        let tally = Tally::default();
        let cut = AtomicBool::new(false);
        let sales: Mutex<HashMap<SaleId, Option<SaleStock>>> = Mutex::new(HashMap::new());
        let batch = self.store.max_batch().max(1);

        let (tally_ref, cut_ref) = (&tally, &cut);
        let items = stream::iter(buckets())
            .map(|bucket| Box::pin(self.bucket(bucket, now, tally_ref)))
            .flatten_unordered(None)
            .take_while(|_| {
                let open = Instant::now() < deadline;
                if !open {
                    cut_ref.store(true, Ordering::Relaxed);
                }
                futures::future::ready(open)
            });
        items
            .ready_chunks(batch)
            .map(|chunk| self.expire_batch(chunk, now, tally_ref, &sales))
            .buffer_unordered(self.config.concurrency.max(1))
            .for_each(|()| futures::future::ready(()))
            .await;

        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut not_set_up = tally
            .not_set_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        not_set_up.sort();
        not_set_up.dedup();
        ExpiryReport {
            expired: load(&tally.expired),
            skipped: load(&tally.skipped),
            released: load(&tally.released),
            already_released: load(&tally.already_released),
            hold_missing: load(&tally.hold_missing),
            anomalies: load(&tally.anomalies),
            deferred_to_rebuild: load(&tally.deferred_to_rebuild),
            release_failures: load(&tally.release_failures),
            errors: load(&tally.errors),
            pages: load(&tally.pages),
            elapsed_ms: started.elapsed().as_millis() as u64,
            more_remaining: cut.load(Ordering::Relaxed),
            sales_not_set_up: not_set_up,
        }
    }

    /// The due items of one bucket, page after page; the next page is fetched only when the
    /// previous one has been taken, so a spent budget stops the queries too.
    fn bucket<'s>(
        &'s self,
        bucket: String,
        now: Timestamp,
        tally: &'s Tally,
    ) -> impl futures::Stream<Item = DueReservation> + Send + 's {
        enum Next<C> {
            Start,
            After(C),
            Done,
        }
        stream::unfold(Next::Start, move |next| {
            let bucket = bucket.clone();
            async move {
                let after = match next {
                    Next::Start => None,
                    Next::After(cursor) => Some(cursor),
                    Next::Done => return None,
                };
                match self
                    .store
                    .due(&bucket, now, self.config.page_size, after)
                    .await
                {
                    Ok(page) => {
                        bump(&tally.pages);
                        let next = page.next.map_or(Next::Done, Next::After);
                        Some((stream::iter(page.items), next))
                    }
                    Err(error) => {
                        tracing::warn!(%error, bucket, "querying the expiry index failed; the next run retries");
                        bump(&tally.errors);
                        None
                    }
                }
            }
        })
        .flatten()
    }

    async fn expire_batch(
        &self,
        batch: Vec<DueReservation>,
        now: Timestamp,
        tally: &Tally,
        sales: &Mutex<HashMap<SaleId, Option<SaleStock>>>,
    ) {
        let ids: Vec<ReservationId> = batch.iter().map(|d| d.reservation_id).collect();
        let outcomes = self.store.expire(&ids, now).await;
        let releases = batch
            .iter()
            .zip(outcomes)
            .filter_map(|(due, outcome)| match outcome {
                Ok(ExpireOutcome::Expired) => {
                    bump(&tally.expired);
                    Some(due)
                }
                Ok(ExpireOutcome::NotPending) => {
                    bump(&tally.skipped);
                    None
                }
                Err(error) => {
                    tracing::warn!(%error, reservation_id = %due.reservation_id, "expiring failed; the next run retries");
                    bump(&tally.errors);
                    None
                }
            })
            .map(|due| self.release(due, tally, sales));
        futures::future::join_all(releases).await;
    }

    async fn sale_stock(
        &self,
        sale_id: &SaleId,
        sales: &Mutex<HashMap<SaleId, Option<SaleStock>>>,
    ) -> Result<Option<SaleStock>, String> {
        if let Some(known) = sales.lock().unwrap_or_else(|p| p.into_inner()).get(sale_id) {
            return Ok(known.clone());
        }
        let stock = self
            .catalog
            .get(sale_id)
            .await
            .map_err(|e| e.to_string())?
            .map(|sale| sale.stock());
        sales
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(sale_id.clone(), stock.clone());
        Ok(stock)
    }

    /// Step 2: the record says EXPIRED; give the units back.
    async fn release(
        &self,
        due: &DueReservation,
        tally: &Tally,
        sales: &Mutex<HashMap<SaleId, Option<SaleStock>>>,
    ) {
        let id = due.reservation_id;
        let sale = match self.sale_stock(&due.sale_id, sales).await {
            Ok(Some(sale)) => sale,
            Ok(None) => {
                tracing::error!(reservation_id = %id, sale_id = %due.sale_id, "expired a reservation of an unknown sale; its hold cannot be released");
                bump(&tally.release_failures);
                return;
            }
            Err(error) => {
                tracing::warn!(%error, reservation_id = %id, "reading the sale failed; the reconciler releases the hold later");
                bump(&tally.release_failures);
                return;
            }
        };
        match self.stock.release(&sale, due.shard, id).await {
            Ok(ReleaseOutcome::Released { .. }) => bump(&tally.released),
            Ok(ReleaseOutcome::AlreadyReleased) => bump(&tally.already_released),
            Ok(ReleaseOutcome::NotFound) => {
                // No hold on that shard (e.g. lost in a failover); the buyer's claim may still
                // be there and would count against their limit: drop it.
                bump(&tally.hold_missing);
                if let Err(error) = self.stock.drop_claim(&sale, &due.user_id, id).await {
                    tracing::warn!(%error, reservation_id = %id, "dropping the claim of a missing hold failed");
                }
            }
            Ok(ReleaseOutcome::WasCommitted) => {
                tracing::error!(reservation_id = %id, sale_id = %due.sale_id, "an expired reservation's hold was committed (sold); left as is");
                bump(&tally.anomalies);
            }
            Ok(ReleaseOutcome::SaleNotSetUp) => {
                bump(&tally.deferred_to_rebuild);
                tally
                    .not_set_up
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(due.sale_id.to_string());
            }
            Err(error) => {
                tracing::warn!(%error, reservation_id = %id, "release failed after the record expired; the reconciler frees it later");
                bump(&tally.release_failures);
            }
        }
    }
}

/// Splits a total budget into the cleanup's share: the cleanup gets at most `share` of it, so
/// a large backlog cannot starve the reconciliation that follows in the same run.
pub fn share_of(budget: Duration, share: f64) -> Duration {
    budget.mul_f64(share.clamp(0.0, 1.0))
}
