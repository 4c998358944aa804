//! The DynamoDB adapter of [`ExpiryStore`]: the sparse `pending-by-expiry` index of the
//! reservations table (partition `expiry_bucket` b00..b15, sort `expires_at`), and the
//! conditional PENDING -> EXPIRED write.
//!
//! The write goes one of two ways, with the same condition and effect per reservation:
//! - [`ExpiryWrites::PerItem`]: one `UpdateItem` per reservation;
//! - [`ExpiryWrites::Batched`]: up to 25 PartiQL `UPDATE` statements per
//!   `BatchExecuteStatement` call. Each statement is its own conditional write (its WHERE
//!   clause is the condition; a failed one reports `ConditionalCheckFailed` alone), so
//!   batching changes nothing but the number of round trips. Measured on LocalStack (DynamoDB
//!   Local behind LocalStack's Python gateway, 2 cores): the per-request overhead dominates,
//!   and batching is what brings 10,000 expiries within the budget (see tools/expiry-bench).

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::BatchStatementRequest;
use aws_sdk_dynamodb::Client;

use super::{DuePage, DueReservation, ExpireOutcome, ExpiryStore};
use crate::domain::{Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::reservation::StoreError;
use crate::store::item::{self, num, str, Item};

pub const INDEX: &str = "pending-by-expiry";
/// DynamoDB's limit of statements per `BatchExecuteStatement`.
pub const MAX_STATEMENTS: usize = 25;

/// How the conditional writes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryWrites {
    PerItem,
    /// Up to this many (1..=25) per call.
    Batched(usize),
}

impl ExpiryWrites {
    /// `EXPIRY_WRITE_BATCH`: 1 for one UpdateItem per reservation, 2..25 for PartiQL batches
    /// of that size (default 25).
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        let n: usize = crate::config::parsed_or("EXPIRY_WRITE_BATCH", MAX_STATEMENTS)?;
        match n {
            1 => Ok(Self::PerItem),
            2..=MAX_STATEMENTS => Ok(Self::Batched(n)),
            _ => Err(crate::config::ConfigError::Invalid {
                name: "EXPIRY_WRITE_BATCH",
                reason: format!("must be between 1 and {MAX_STATEMENTS}"),
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
            "UPDATE \"{}\" SET \"status\" = ? SET expired_at = ? REMOVE expiry_bucket \
             WHERE reservation_id = ? AND \"status\" = ? AND expires_at <= ?",
            table.replace('"', "")
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
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("reservation_id", str(id.to_string()))
            .update_expression("SET #s = :expired, expired_at = :now REMOVE expiry_bucket")
            .condition_expression("#s = :pending AND expires_at <= :now")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":expired", str("EXPIRED"))
            .expression_attribute_values(":pending", str("PENDING"))
            .expression_attribute_values(":now", num(now.as_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(ExpireOutcome::Expired),
            Err(e) if item::is_conditional_check_failed(&e) => Ok(ExpireOutcome::NotPending),
            Err(e) => Err(unavailable(e)),
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
                    .parameters(str("EXPIRED"))
                    .parameters(num(now.as_millis()))
                    .parameters(str(id.to_string()))
                    .parameters(str("PENDING"))
                    .parameters(num(now.as_millis()))
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
        let output = match self
            .client
            .batch_execute_statement()
            .set_statements(Some(statements))
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                let message = DisplayErrorContext(&e).to_string();
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
                    Some("ConditionalCheckFailed") => Ok(ExpireOutcome::NotPending),
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

fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}

/// Reads what the index projects (production: `sale_id, user_id, quantity, shard, status`
/// plus the keys).
pub fn due_from_item(item: &Item) -> Result<DueReservation, String> {
    Ok(DueReservation {
        reservation_id: ReservationId::parse(&item::s(item, "reservation_id")?)
            .map_err(|e| e.to_string())?,
        sale_id: SaleId::parse(item::s(item, "sale_id")?).map_err(|e| e.to_string())?,
        user_id: UserId::parse(item::s(item, "user_id")?).map_err(|e| e.to_string())?,
        quantity: Quantity::new(item::n(item, "quantity")?).map_err(|e| e.to_string())?,
        shard: item::n(item, "shard")?,
        expires_at: Timestamp::from_millis(item::n(item, "expires_at")?),
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
            .key_condition_expression("expiry_bucket = :b AND expires_at <= :now")
            .expression_attribute_values(":b", str(bucket))
            .expression_attribute_values(":now", num(now.as_millis()))
            // Aliases: `shard` (and others) are DynamoDB reserved words.
            .projection_expression("#id, #sale, #user, #qty, #shard, #exp")
            .expression_attribute_names("#id", "reservation_id")
            .expression_attribute_names("#sale", "sale_id")
            .expression_attribute_names("#user", "user_id")
            .expression_attribute_names("#qty", "quantity")
            .expression_attribute_names("#shard", "shard")
            .expression_attribute_names("#exp", "expires_at")
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
                    tracing::error!(%error, item = ?raw.get("reservation_id"), "malformed item in the expiry index")
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
            ExpiryWrites::Batched(_) if ids.len() > 1 => self.expire_batch(ids, now).await,
            _ => futures::future::join_all(ids.iter().map(|&id| self.expire_one(id, now))).await,
        }
    }

    fn max_batch(&self) -> usize {
        match self.writes {
            ExpiryWrites::PerItem => 1,
            ExpiryWrites::Batched(n) => n.clamp(1, MAX_STATEMENTS),
        }
    }
}
