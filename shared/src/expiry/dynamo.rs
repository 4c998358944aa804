//! The DynamoDB adapter of [`ExpiryStore`]: the sparse `pending-by-expiry` index of the
//! reservations table (partition `expiry_bucket` b00..b15, sort `expires_at`), and the
//! conditional PENDING -> EXPIRED write.
//!
//! The write has the same condition and effect per reservation whichever way it is sent:
//! - [`ExpiryWrites::Transact`] (default): up to 100 conditional `Update`s per
//!   `TransactWriteItems`. If any condition fails the call is cancelled as a whole, with a
//!   reason per item: items whose condition failed are skipped (a payment claimed them first),
//!   the others are sent again in a new transaction (bounded retries). Costs 2 WCU per item on
//!   AWS instead of 1 (about $0.025 per 10,000 expiries on demand).
//! - [`ExpiryWrites::Partiql`]: up to 25 PartiQL `UPDATE`s per `BatchExecuteStatement`, each
//!   its own conditional write (1 WCU each).
//! - [`ExpiryWrites::PerItem`]: one `UpdateItem` per reservation.
//!
//! A condition that fails on a record already EXPIRED counts as expired (its hold is released):
//! that is this write's own earlier attempt whose answer was lost (the SDK retried it), or a
//! concurrent run of the cleanup; releasing is idempotent either way. Every write asks for the
//! old item on a failed condition (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) to tell.
//! Throttling, conflicts and 5xx are retried ([`crate::store::write`]).
//!
//! Why batching, and why transactions by default: on LocalStack (DynamoDB Local behind
//! LocalStack's Python gateway, 2 cores) the per-request overhead dominates. Measured with
//! tools/expiry-bench (10,000 expired reservations, concurrency 32, warm LocalStack, a machine
//! shared with other work): transactions of 100: 13.7 to 23.9 s (about 20 s typical; 34 s for
//! the first run after LocalStack starts, while DynamoDB Local's JVM warms up); PartiQL batches
//! of 25: 33 to 34 s; one UpdateItem each: 69 per second (about 145 s). Concurrency between 8
//! and 64 made no consistent difference: LocalStack is the bottleneck. On AWS all three are
//! fast; only the WCU cost differs.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, BatchStatementRequest, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use aws_sdk_dynamodb::Client;

use super::{DuePage, DueReservation, ExpireOutcome, ExpiryStore};
use crate::config::{ConfigError, Env};
use crate::domain::{Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::reservation::item::{attr, status_of, transition};
use crate::reservation::{ReservationStatus, StoreError};
use crate::store::item::{self, num, str, Item};
use crate::store::write::{self, unavailable, RetryPolicy, WriteFailure};

pub const INDEX: &str = crate::reservation::item::index::PENDING_BY_EXPIRY;

/// The outcome of a write whose condition failed, from the old item it returned.
fn condition_failed(old: Option<&Item>) -> ExpireOutcome {
    match old.map(status_of) {
        Some(Ok(ReservationStatus::Expired)) => ExpireOutcome::Expired,
        _ => ExpireOutcome::NotPending,
    }
}
/// DynamoDB's limit of statements per `BatchExecuteStatement`.
pub const MAX_STATEMENTS: usize = 25;
/// DynamoDB's limit of actions per `TransactWriteItems`.
pub const MAX_TRANSACT: usize = 100;
/// Attempts of one transaction whose items conflict or are throttled.
const TRANSACT_ATTEMPTS: u32 = 4;

/// How the conditional writes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryWrites {
    PerItem,
    /// PartiQL batches of up to this many (2..=25).
    Partiql(usize),
    /// Transactions of up to this many (2..=100).
    Transact(usize),
}

impl Default for ExpiryWrites {
    fn default() -> Self {
        Self::Transact(MAX_TRANSACT)
    }
}

impl ExpiryWrites {
    /// `EXPIRY_WRITE_MODE`: `transact` (default), `partiql` or `single`;
    /// `EXPIRY_WRITE_BATCH`: items per call (default and maximum: 100 for transact, 25 for
    /// partiql).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mode: String = env.parsed_or("EXPIRY_WRITE_MODE", "transact".to_string())?;
        let batch = |max: usize| -> Result<usize, ConfigError> {
            let n: usize = env.parsed_or("EXPIRY_WRITE_BATCH", max)?;
            if (2..=max).contains(&n) {
                Ok(n)
            } else {
                Err(ConfigError::Invalid {
                    name: "EXPIRY_WRITE_BATCH",
                    reason: format!("must be between 2 and {max} for {mode}"),
                })
            }
        };
        match mode.as_str() {
            "transact" => Ok(Self::Transact(batch(MAX_TRANSACT)?)),
            "partiql" => Ok(Self::Partiql(batch(MAX_STATEMENTS)?)),
            "single" => Ok(Self::PerItem),
            other => Err(ConfigError::Invalid {
                name: "EXPIRY_WRITE_MODE",
                reason: format!("{other:?} is not transact, partiql or single"),
            }),
        }
    }
}

#[derive(Clone)]
pub struct DynamoExpiryStore {
    client: Client,
    table: String,
    writes: ExpiryWrites,
    update_statement: String,
}

impl DynamoExpiryStore {
    pub fn new(client: Client, table: impl Into<String>, writes: ExpiryWrites) -> Self {
        let table = table.into();
        let update_statement = format!(
            "UPDATE \"{}\" SET \"{status}\" = ? SET {expired} = ? REMOVE {bucket} \
             WHERE {id} = ? AND \"{status}\" = ? AND {expires} <= ?",
            table.replace('"', ""),
            status = attr::STATUS,
            expired = attr::EXPIRED_AT,
            bucket = attr::EXPIRY_BUCKET,
            id = attr::RESERVATION_ID,
            expires = attr::EXPIRES_AT,
        );
        Self {
            client,
            table,
            writes,
            update_statement,
        }
    }

    async fn expire_one(
        &self,
        id: ReservationId,
        now: Timestamp,
    ) -> Result<ExpireOutcome, StoreError> {
        let e = expire_update(now);
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::RESERVATION_ID, str(id.to_string()))
            .update_expression(e.update)
            .condition_expression(e.condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match write::with_retries(
            RetryPolicy::BACKGROUND,
            "expire",
            write::classify_update,
            || request.clone().send(),
        )
        .await?
        {
            Ok(_) => Ok(ExpireOutcome::Expired),
            Err(WriteFailure::ConditionFailed { old, .. }) => Ok(condition_failed(old.as_ref())),
            Err(other) => Err(other.into_store_error()),
        }
    }

    async fn expire_batch(
        &self,
        ids: &[ReservationId],
        now: Timestamp,
    ) -> Vec<Result<ExpireOutcome, StoreError>> {
        let statements: Result<Vec<BatchStatementRequest>, _> = ids
            .iter()
            .map(|id| {
                BatchStatementRequest::builder()
                    .statement(&self.update_statement)
                    .parameters(str(transition("expire").to.as_str()))
                    .parameters(num(now.as_millis()))
                    .parameters(str(id.to_string()))
                    .parameters(str(transition("expire").from.as_str()))
                    .parameters(num(now.as_millis()))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
            })
            .collect();
        let statements = match statements {
            Ok(s) => s,
            Err(e) => {
                return ids
                    .iter()
                    .map(|_| Err(StoreError::Malformed(e.to_string())))
                    .collect()
            }
        };
        let request = self
            .client
            .batch_execute_statement()
            .set_statements(Some(statements));
        let output = match write::with_retries(
            RetryPolicy::BACKGROUND,
            "expire batch",
            write::classify,
            || request.clone().send(),
        )
        .await
        {
            Ok(Ok(output)) => output,
            Ok(Err(failure)) => {
                let message = format!("{failure:?}");
                return ids
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(message.clone())))
                    .collect();
            }
            Err(e) => {
                let message = e.to_string();
                return ids
                    .iter()
                    .map(|_| Err(StoreError::Unavailable(message.clone())))
                    .collect();
            }
        };
        let responses = output.responses();
        ids.iter()
            .enumerate()
            .map(|(i, _)| match responses.get(i).and_then(|r| r.error()) {
                None if i < responses.len() => Ok(ExpireOutcome::Expired),
                None => Err(StoreError::Malformed("missing statement response".into())),
                Some(error) => match error.code().map(|c| c.as_str()) {
                    Some("ConditionalCheckFailed") => Ok(condition_failed(error.item())),
                    code => Err(StoreError::Unavailable(format!(
                        "{}: {}",
                        code.unwrap_or("unknown"),
                        error.message().unwrap_or_default()
                    ))),
                },
            })
            .collect()
    }
}

impl DynamoExpiryStore {
    fn transact_update(
        &self,
        id: ReservationId,
        now: Timestamp,
    ) -> Result<TransactWriteItem, StoreError> {
        let e = expire_update(now);
        let update = Update::builder()
            .table_name(&self.table)
            .key(attr::RESERVATION_ID, str(id.to_string()))
            .update_expression(e.update)
            .condition_expression(e.condition)
            .set_expression_attribute_names(Some(e.names))
            .set_expression_attribute_values(Some(e.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn expire_transact(
        &self,
        ids: &[ReservationId],
        now: Timestamp,
    ) -> Vec<Result<ExpireOutcome, StoreError>> {
        let mut results: Vec<Option<Result<ExpireOutcome, StoreError>>> =
            (0..ids.len()).map(|_| None).collect();
        let mut pending: Vec<usize> = (0..ids.len()).collect();
        for attempt in 0..TRANSACT_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 << attempt)).await;
            }
            let items: Result<Vec<TransactWriteItem>, StoreError> = pending
                .iter()
                .map(|&i| self.transact_update(ids[i], now))
                .collect();
            let items = match items {
                Ok(items) => items,
                Err(e) => {
                    for &i in &pending {
                        results[i] = Some(Err(StoreError::Malformed(e.to_string())));
                    }
                    pending.clear();
                    break;
                }
            };
            let sent = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            match sent {
                Ok(_) => {
                    for &i in &pending {
                        results[i] = Some(Ok(ExpireOutcome::Expired));
                    }
                    pending.clear();
                }
                Err(error)
                    if matches!(write::classify(&error), WriteFailure::Transient(_))
                        && !matches!(
                            error.as_service_error(),
                            Some(TransactWriteItemsError::TransactionCanceledException(_))
                        ) =>
                {
                    // Throttled as a whole, a 5xx, or a lost answer: send them all again (a
                    // committed attempt comes back as failed conditions on EXPIRED items).
                    tracing::warn!(error = %DisplayErrorContext(&error), "expiry transaction failed transiently; retrying");
                    continue;
                }
                Err(SdkError::ServiceError(service)) => {
                    let TransactWriteItemsError::TransactionCanceledException(cancelled) =
                        service.err()
                    else {
                        let message = format!("{:?}", service.err());
                        for &i in &pending {
                            results[i] = Some(Err(StoreError::Unavailable(message.clone())));
                        }
                        pending.clear();
                        break;
                    };
                    let reasons = cancelled.cancellation_reasons();
                    if reasons.len() != pending.len() {
                        // Cannot tell who failed: try them all again.
                        continue;
                    }
                    let mut again = Vec::with_capacity(pending.len());
                    for (&i, reason) in pending.iter().zip(reasons) {
                        match reason.code() {
                            Some("ConditionalCheckFailed") => {
                                results[i] = Some(Ok(condition_failed(reason.item())))
                            }
                            // Cancelled because of another item, or a conflict or throttle
                            // on this one: send it again.
                            None
                            | Some("None")
                            | Some("TransactionConflict")
                            | Some("ThrottlingError")
                            | Some("ProvisionedThroughputExceeded") => again.push(i),
                            Some(code) => {
                                results[i] = Some(Err(StoreError::Unavailable(format!(
                                    "{code}: {}",
                                    reason.message().unwrap_or_default()
                                ))))
                            }
                        }
                    }
                    pending = again;
                }
                Err(e) => {
                    let message = DisplayErrorContext(&e).to_string();
                    for &i in &pending {
                        results[i] = Some(Err(StoreError::Unavailable(message.clone())));
                    }
                    pending.clear();
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(StoreError::Unavailable(
                        "transaction kept being cancelled; retried next run".into(),
                    ))
                })
            })
            .collect()
    }
}

/// PENDING -> EXPIRED (the `expire` transition), leaving the expiry index: the expressions and
/// their names and values, for the single update and the transaction's alike.
struct ExpireUpdate {
    update: &'static str,
    condition: &'static str,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

fn expire_update(now: Timestamp) -> ExpireUpdate {
    let t = transition("expire");
    let names = [
        ("#s", attr::STATUS),
        ("#expired", attr::EXPIRED_AT),
        ("#bucket", attr::EXPIRY_BUCKET),
        ("#expires", attr::EXPIRES_AT),
    ];
    let values = [
        (":to", str(t.to.as_str())),
        (":from", str(t.from.as_str())),
        (":now", num(now.as_millis())),
    ];
    ExpireUpdate {
        update: "SET #s = :to, #expired = :now REMOVE #bucket",
        condition: "#s = :from AND #expires <= :now",
        names: names
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        values: values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// Reads what the index projects (production: `sale_id, user_id, quantity, shard, status`
/// plus the keys).
pub fn due_from_item(item: &Item) -> Result<DueReservation, String> {
    Ok(DueReservation {
        reservation_id: ReservationId::parse(&item::s(item, attr::RESERVATION_ID)?)
            .map_err(|e| e.to_string())?,
        sale_id: SaleId::parse(item::s(item, attr::SALE_ID)?).map_err(|e| e.to_string())?,
        user_id: UserId::parse(item::s(item, attr::USER_ID)?).map_err(|e| e.to_string())?,
        quantity: Quantity::new(item::n(item, attr::QUANTITY)?).map_err(|e| e.to_string())?,
        shard: item::n(item, attr::SHARD)?,
        expires_at: Timestamp::from_millis(item::n(item, attr::EXPIRES_AT)?),
    })
}

impl ExpiryStore for DynamoExpiryStore {
    type Cursor = Item;

    async fn due(
        &self,
        bucket: &str,
        now: Timestamp,
        limit: u32,
        after: Option<Item>,
    ) -> Result<DuePage<Item>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INDEX)
            .key_condition_expression("#bucket = :b AND #exp <= :now")
            .expression_attribute_names("#bucket", attr::EXPIRY_BUCKET)
            .expression_attribute_values(":b", str(bucket))
            .expression_attribute_values(":now", num(now.as_millis()))
            // Aliases: `shard` (and others) are DynamoDB reserved words.
            .projection_expression("#id, #sale, #user, #qty, #shard, #exp")
            .expression_attribute_names("#id", attr::RESERVATION_ID)
            .expression_attribute_names("#sale", attr::SALE_ID)
            .expression_attribute_names("#user", attr::USER_ID)
            .expression_attribute_names("#qty", attr::QUANTITY)
            .expression_attribute_names("#shard", attr::SHARD)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after)
            .send()
            .await
            .map_err(unavailable)?;
        let mut items = Vec::with_capacity(output.items().len());
        for raw in output.items() {
            match due_from_item(raw) {
                Ok(due) => items.push(due),
                // One bad item must not stop the cleanup of the others; it stays in the index
                // and is reported on every run until someone fixes it.
                Err(error) => {
                    tracing::error!(%error, item = ?raw.get(attr::RESERVATION_ID), "malformed item in the expiry index")
                }
            }
        }
        let next = output.last_evaluated_key.filter(|k| !k.is_empty());
        Ok(DuePage { items, next })
    }

    async fn expire(
        &self,
        ids: &[ReservationId],
        now: Timestamp,
    ) -> Vec<Result<ExpireOutcome, StoreError>> {
        match self.writes {
            ExpiryWrites::Partiql(_) if ids.len() > 1 => self.expire_batch(ids, now).await,
            ExpiryWrites::Transact(_) if ids.len() > 1 => self.expire_transact(ids, now).await,
            _ => futures::future::join_all(ids.iter().map(|&id| self.expire_one(id, now))).await,
        }
    }

    fn max_batch(&self) -> usize {
        match self.writes {
            ExpiryWrites::PerItem => 1,
            ExpiryWrites::Partiql(n) => n.clamp(1, MAX_STATEMENTS),
            ExpiryWrites::Transact(n) => n.clamp(1, MAX_TRANSACT),
        }
    }
}
