//! The DynamoDB adapter of [`DurableRecords`]: the reservations table (by id, and its `by-sale`
//! index) and the orders table's `by-sale` index.
//!
//! The by-sale queries read only what the indexes project in production: reservations
//! `reservation_id, user_id, status, quantity, shard, expires_at`; orders `reservation_id,
//! user_id, quantity, shard`. Index reads are eventually consistent; decisions that change
//! anything re-read the records by id with strong consistency ([`DurableRecords::get_many`]).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::KeysAndAttributes;
use aws_sdk_dynamodb::Client;

use super::{DurableRecords, OrderSummary, ReservationSummary, Which};
use crate::domain::{Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::reservation::dynamo::{from_item, to_item};
use crate::reservation::{InsertOutcome, Reservation, ReservationStatus, StoreError};
use crate::store::item::{self, num, str, Item};

pub const BY_SALE: &str = "by-sale";
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
            .map(|id| Item::from([("reservation_id".to_string(), str(id.to_string()))]))
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
                    let r = from_item(raw).map_err(StoreError::Malformed)?;
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

    /// Runs a by-sale query to the end and parses every item.
    async fn query_by_sale<T>(
        &self,
        table: &str,
        sale: &SaleId,
        projection: &str,
        held_only: bool,
        parse: impl Fn(&Item) -> Result<T, String>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(table)
                .index_name(BY_SALE)
                .key_condition_expression("sale_id = :sale")
                .expression_attribute_values(":sale", str(sale.as_str()))
                .projection_expression(projection)
                .set_exclusive_start_key(start.take());
            // Every projected attribute goes through an alias (`shard` and `status` are
            // DynamoDB reserved words): "#name" reads attribute "name".
            for alias in projection.split(',').map(str::trim) {
                if let Some(name) = alias.strip_prefix('#') {
                    let name = if name == "s" { "status" } else { name };
                    query = query.expression_attribute_names(alias, name);
                }
            }
            if held_only {
                query = query
                    .filter_expression("#s IN (:pending, :processing)")
                    .expression_attribute_values(":pending", str("PENDING"))
                    .expression_attribute_values(":processing", str("PAYMENT_PROCESSING"));
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

fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}

fn summary_from_item(raw: &Item) -> Result<ReservationSummary, String> {
    let status = item::s(raw, "status")?;
    Ok(ReservationSummary {
        reservation_id: ReservationId::parse(&item::s(raw, "reservation_id")?)
            .map_err(|e| e.to_string())?,
        user_id: UserId::parse(item::s(raw, "user_id")?).map_err(|e| e.to_string())?,
        quantity: Quantity::new(item::n(raw, "quantity")?).map_err(|e| e.to_string())?,
        shard: item::n(raw, "shard")?,
        status: ReservationStatus::parse(&status)
            .ok_or_else(|| format!("unknown status {status}"))?,
        expires_at: Timestamp::from_millis(item::n(raw, "expires_at")?),
    })
}

fn order_from_item(raw: &Item) -> Result<OrderSummary, String> {
    Ok(OrderSummary {
        reservation_id: ReservationId::parse(&item::s(raw, "reservation_id")?)
            .map_err(|e| e.to_string())?,
        user_id: UserId::parse(item::s(raw, "user_id")?).map_err(|e| e.to_string())?,
        quantity: Quantity::new(item::n(raw, "quantity")?).map_err(|e| e.to_string())?,
        shard: item::n(raw, "shard")?,
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

    async fn reservations_of_sale(
        &self,
        sale: &SaleId,
        which: Which,
    ) -> Result<Vec<ReservationSummary>, StoreError> {
        self.query_by_sale(
            &self.reservations,
            sale,
            "#reservation_id, #user_id, #quantity, #shard, #s, #expires_at",
            which == Which::Held,
            summary_from_item,
        )
        .await
    }

    async fn orders_of_sale(&self, sale: &SaleId) -> Result<Vec<OrderSummary>, StoreError> {
        self.query_by_sale(
            &self.orders,
            sale,
            "#reservation_id, #user_id, #quantity, #shard",
            false,
            order_from_item,
        )
        .await
    }

    async fn record_orphan(
        &self,
        reservation: &Reservation,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let mut record = to_item(reservation);
        record.insert("reconciled".into(), str("orphan_hold"));
        record.insert("expired_at".into(), num(now.as_millis()));
        let result = self
            .client
            .put_item()
            .table_name(&self.reservations)
            .set_item(Some(record))
            .condition_expression("attribute_not_exists(reservation_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(e) if item::is_conditional_check_failed(&e) => Ok(InsertOutcome::AlreadyExists),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn fail_pending(
        &self,
        id: ReservationId,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.reservations)
            .key("reservation_id", str(id.to_string()))
            .update_expression(
                "SET #s = :failed, failure_reason = :reason, failed_at = :now REMOVE expiry_bucket",
            )
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":failed", str("FAILED"))
            .expression_attribute_values(":pending", str("PENDING"))
            .expression_attribute_values(":reason", str(reason))
            .expression_attribute_values(":now", num(now.as_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if item::is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}
