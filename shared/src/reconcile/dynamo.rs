//! The DynamoDB adapter of [`DurableRecords`]: the reservations table (by id, and its by-sale
//! index, spread over [`item::SALE_BUCKETS`] partitions per sale) and the orders table's
//! `by-sale` index.
//!
//! The by-sale queries read only what the indexes project in production
//! ([`ReservationSummary::PROJECTION`]; orders `reservation_id, user_id, quantity, shard`).
//! Index reads are eventually consistent; decisions that change anything re-read the records by
//! id with strong consistency ([`DurableRecords::get_many`]).
//!
//! Orders keep one partition per sale in their index: they are written at the payment rate,
//! which the stock bounds (a sale of 10,000 units writes at most 10,000 orders), far from a
//! partition's 1,000 writes per second for long.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{KeysAndAttributes, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use futures::future::try_join_all;

use super::{DurableRecords, OrderSummary, ReservationSummary, Which};
use crate::domain::{Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::reservation::dynamo::put_new;
use crate::reservation::item::{self, attr, status_of, to_item, transition};
use crate::reservation::{InsertOutcome, Reservation, ReservationStatus, StoreError};
use crate::store::item::{num, str, Item};
use crate::store::write::{self, unavailable, RetryPolicy, WriteFailure};

/// The orders table's index of a sale's orders (partition `sale_id`).
pub const ORDERS_BY_SALE: &str = "by-sale";
/// DynamoDB's limit of keys per BatchGetItem.
const BATCH_GET: usize = 100;
/// Unprocessed keys (throttling) are retried this many times, with a growing pause.
const BATCH_GET_ATTEMPTS: u32 = 6;

#[derive(Clone)]
pub struct DynamoDurableRecords {
    client: Client,
    reservations: String,
    orders: String,
}

impl DynamoDurableRecords {
    pub fn new(client: Client, reservations: impl Into<String>, orders: impl Into<String>) -> Self {
        Self {
            client,
            reservations: reservations.into(),
            orders: orders.into(),
        }
    }

    async fn get_chunk(
        &self,
        ids: &[ReservationId],
        found: &mut HashMap<ReservationId, Reservation>,
    ) -> Result<(), StoreError> {
        let keys: Vec<Item> = ids
            .iter()
            .map(|id| Item::from([(attr::RESERVATION_ID.to_string(), str(id.to_string()))]))
            .collect();
        let mut request = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Malformed(e.to_string()))?,
        );
        for attempt in 0..BATCH_GET_ATTEMPTS {
            let Some(keys) = request.take() else {
                return Ok(());
            };
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.reservations, keys)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(items) = output
                .responses
                .as_ref()
                .and_then(|r| r.get(&self.reservations))
            {
                for raw in items {
                    let r = Reservation::try_from(raw).map_err(StoreError::Malformed)?;
                    found.insert(r.reservation_id, r);
                }
            }
            request = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.reservations))
                .filter(|k| !k.keys().is_empty());
        }
        if request.is_some() {
            return Err(StoreError::Unavailable(
                "BatchGetItem left keys unprocessed after retries".into(),
            ));
        }
        Ok(())
    }

    /// Runs one index query (one partition) to the end and parses every item.
    #[allow(clippy::too_many_arguments)]
    async fn query_partition<T>(
        &self,
        table: &str,
        index: &str,
        key_name: &str,
        key: String,
        projection: &[&str],
        statuses: Option<&[ReservationStatus]>,
        parse: &(impl Fn(&Item) -> Result<T, String> + Sync),
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        // Every projected attribute goes through an alias (`shard` and `status` are DynamoDB
        // reserved words): "#a3" reads attribute projection[3].
        let aliases: Vec<String> = (0..projection.len()).map(|i| format!("#a{i}")).collect();
        loop {
            let mut query = self
                .client
                .query()
                .table_name(table)
                .index_name(index)
                .key_condition_expression("#k = :key")
                .expression_attribute_names("#k", key_name)
                .expression_attribute_values(":key", str(&key))
                .projection_expression(aliases.join(", "))
                .set_exclusive_start_key(start.take());
            for (alias, name) in aliases.iter().zip(projection) {
                query = query.expression_attribute_names(alias, *name);
            }
            if let Some(statuses) = statuses {
                let values: Vec<String> = (0..statuses.len()).map(|i| format!(":s{i}")).collect();
                query = query
                    .filter_expression(format!("#st IN ({})", values.join(", ")))
                    .expression_attribute_names("#st", attr::STATUS);
                for (value, status) in values.iter().zip(statuses) {
                    query = query.expression_attribute_values(value, str(status.as_str()));
                }
            }
            let output = query.send().await.map_err(unavailable)?;
            for raw in output.items() {
                out.push(parse(raw).map_err(StoreError::Malformed)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(out),
            }
        }
    }
}

fn order_from_item(raw: &Item) -> Result<OrderSummary, String> {
    use crate::store::item as field;
    Ok(OrderSummary {
        reservation_id: ReservationId::parse(&field::s(raw, "reservation_id")?)
            .map_err(|e| e.to_string())?,
        user_id: UserId::parse(field::s(raw, "user_id")?).map_err(|e| e.to_string())?,
        quantity: Quantity::new(field::n(raw, "quantity")?).map_err(|e| e.to_string())?,
        shard: field::n(raw, "shard")?,
    })
}

impl DurableRecords for DynamoDurableRecords {
    async fn get_many(
        &self,
        ids: &[ReservationId],
    ) -> Result<HashMap<ReservationId, Reservation>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut unique = ids.to_vec();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(BATCH_GET) {
            self.get_chunk(chunk, &mut found).await?;
        }
        Ok(found)
    }

    /// The sale's partitions of the by-sale index, read concurrently.
    async fn reservations_of_sale(
        &self,
        sale: &SaleId,
        which: Which,
    ) -> Result<Vec<ReservationSummary>, StoreError> {
        use ReservationStatus::*;
        let statuses: Option<&[ReservationStatus]> = match which {
            Which::All => None,
            Which::Held => Some(&[Pending, PaymentProcessing]),
            Which::Live => Some(&[Pending, PaymentProcessing, Confirmed]),
        };
        let parse = |raw: &Item| ReservationSummary::try_from(raw);
        let parts = try_join_all(item::sale_buckets(sale).map(|bucket| {
            self.query_partition(
                &self.reservations,
                item::index::BY_SALE,
                attr::SALE_BUCKET,
                bucket,
                &ReservationSummary::PROJECTION,
                statuses,
                &parse,
            )
        }))
        .await?;
        Ok(parts.into_iter().flatten().collect())
    }

    async fn orders_of_sale(&self, sale: &SaleId) -> Result<Vec<OrderSummary>, StoreError> {
        self.query_partition(
            &self.orders,
            ORDERS_BY_SALE,
            "sale_id",
            sale.to_string(),
            &["reservation_id", "user_id", "quantity", "shard"],
            None,
            &order_from_item,
        )
        .await
    }

    /// A conditional put on an id Redis chose. A condition failure means a record exists:
    /// the late write of the dying reserve, or this call's own earlier attempt.
    async fn record_orphan(
        &self,
        reservation: &Reservation,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let mut record = to_item(reservation);
        record.insert(
            attr::RECONCILED.into(),
            str(crate::reservation::item::reconciled::ORPHAN_HOLD),
        );
        record.insert(attr::EXPIRED_AT.into(), num(now.as_millis()));
        put_new(
            &self.client,
            &self.reservations,
            record,
            RetryPolicy::BACKGROUND,
            "record orphan",
        )
        .await
    }

    /// PENDING -> FAILED. The old image comes back when the condition fails: if it is already
    /// FAILED for the same reason, this is our own earlier attempt whose answer was lost.
    async fn fail_pending(
        &self,
        id: ReservationId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let t = transition("fail_pending");
        let request = self
            .client
            .update_item()
            .table_name(&self.reservations)
            .key(attr::RESERVATION_ID, str(id.to_string()))
            .update_expression(format!(
                "SET #s = :to, {reason} = :reason, {at} = :now REMOVE {bucket}",
                reason = attr::FAILURE_REASON,
                at = attr::FAILED_AT,
                bucket = attr::EXPIRY_BUCKET
            ))
            .condition_expression("#s = :from")
            .expression_attribute_names("#s", attr::STATUS)
            .expression_attribute_values(":to", str(t.to.as_str()))
            .expression_attribute_values(":from", str(t.from.as_str()))
            .expression_attribute_values(":reason", str(reason))
            .expression_attribute_values(":now", num(now.as_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match write::with_retries(
            RetryPolicy::BACKGROUND,
            "fail pending",
            write::classify_update,
            || request.clone().send(),
        )
        .await?
        {
            Ok(_) => Ok(true),
            Err(WriteFailure::ConditionFailed { old, .. }) => Ok(old.is_some_and(|old| {
                status_of(&old) == Ok(t.to)
                    && crate::store::item::opt_s(&old, attr::FAILURE_REASON).as_deref()
                        == Some(reason)
            })),
            Err(other) => Err(other.into_store_error()),
        }
    }
}
