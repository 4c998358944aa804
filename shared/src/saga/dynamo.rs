//! The DynamoDB adapter of [`CheckoutRecords`]: payment attributes live on the reservation
//! item (`payment_key`, `payment_method`, `payment_started_at`, `charge_token`,
//! `payment_intent_id`, `order_id`, `confirmed_at`, `failure_reason`); orders in the orders
//! table (key `reservation_id`, one order per reservation).

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;

use super::records::{BeginPayment, CheckoutRecord, CheckoutRecords, ConfirmOutcome, Order};
use super::webhook::{Claim, EventLogError, WebhookEventLog, EVENT_RETENTION};
use crate::domain::{ReservationId, Timestamp, UserId};
use crate::reservation::dynamo::{expiry_bucket, from_item};
use crate::reservation::{ReservationStatus, StoreError};
use crate::store::item::{self, num, str, Item};

#[derive(Clone)]
pub struct DynamoCheckoutRecords {
    client: Client,
    reservations: String,
    orders: String,
}

impl DynamoCheckoutRecords {
    pub fn new(client: Client, reservations: impl Into<String>, orders: impl Into<String>) -> Self {
        Self {
            client,
            reservations: reservations.into(),
            orders: orders.into(),
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

pub fn record_from_item(item: &Item) -> Result<CheckoutRecord, String> {
    Ok(CheckoutRecord {
        reservation: from_item(item)?,
        payment_key: item::opt_s(item, "payment_key"),
        payment_method: item::opt_s(item, "payment_method"),
        charge_token: item::opt_s(item, "charge_token"),
        payment_intent_id: item::opt_s(item, "payment_intent_id"),
        order_id: item::opt_s(item, "order_id"),
        failure_reason: item::opt_s(item, "failure_reason"),
    })
}

pub fn order_item(record: &CheckoutRecord, order: &Order) -> Item {
    let r = &record.reservation;
    Item::from([
        (
            "reservation_id".into(),
            str(order.reservation_id.to_string()),
        ),
        ("order_id".into(), str(&order.order_id)),
        ("sale_id".into(), str(r.sale_id.as_str())),
        ("user_id".into(), str(r.user_id.as_str())),
        ("quantity".into(), num(r.quantity.get())),
        ("shard".into(), num(r.shard)),
        ("amount_minor".into(), num(order.amount.amount_minor)),
        ("currency".into(), str(order.amount.currency.as_str())),
        ("payment_intent_id".into(), str(&order.payment_intent_id)),
        ("created_at".into(), num(order.created_at.as_millis())),
    ])
}

const PENDING: &str = "PENDING";
const PROCESSING: &str = "PAYMENT_PROCESSING";

impl CheckoutRecords for DynamoCheckoutRecords {
    async fn get(&self, id: ReservationId) -> Result<Option<CheckoutRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.reservations)
            .key("reservation_id", str(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .item
            .map(|item| record_from_item(&item).map_err(StoreError::Malformed))
            .transpose()
    }

    async fn begin_payment(
        &self,
        id: ReservationId,
        user: &UserId,
        payment_key: &str,
        payment_method: &str,
        now: Timestamp,
    ) -> Result<BeginPayment, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.reservations)
            .key("reservation_id", str(id.to_string()))
            .update_expression(
                "SET #s = :processing, payment_key = :key, payment_method = :pm, \
                 payment_started_at = :now REMOVE expiry_bucket",
            )
            .condition_expression("#s = :pending AND user_id = :user AND expires_at > :now")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":processing", str(PROCESSING))
            .expression_attribute_values(":pending", str(PENDING))
            .expression_attribute_values(":key", str(payment_key))
            .expression_attribute_values(":pm", str(payment_method))
            .expression_attribute_values(":user", str(user.as_str()))
            .expression_attribute_values(":now", num(now.as_millis()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(BeginPayment::Started),
            Err(e) if item::is_conditional_check_failed(&e) => Ok(BeginPayment::Refused),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn abandon_payment(
        &self,
        id: ReservationId,
        payment_key: &str,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.reservations)
            .key("reservation_id", str(id.to_string()))
            .update_expression(
                "SET #s = :pending, expiry_bucket = :bucket \
                 REMOVE payment_key, payment_method, payment_started_at",
            )
            .condition_expression(
                "#s = :processing AND payment_key = :key AND attribute_not_exists(charge_token)",
            )
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":processing", str(PROCESSING))
            .expression_attribute_values(":pending", str(PENDING))
            .expression_attribute_values(":key", str(payment_key))
            .expression_attribute_values(":bucket", str(expiry_bucket(id)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if item::is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn store_charge_token(&self, id: ReservationId, token: &str) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.reservations)
            .key("reservation_id", str(id.to_string()))
            .update_expression("SET charge_token = :token")
            .condition_expression("#s = :processing")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":processing", str(PROCESSING))
            .expression_attribute_values(":token", str(token))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if item::is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn store_payment_intent(&self, id: ReservationId, pi: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.reservations)
            .key("reservation_id", str(id.to_string()))
            .update_expression("SET payment_intent_id = :pi")
            .condition_expression("attribute_exists(reservation_id)")
            .expression_attribute_values(":pi", str(pi))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn confirm_with_order(
        &self,
        record: &CheckoutRecord,
        order: &Order,
    ) -> Result<ConfirmOutcome, StoreError> {
        let id = record.reservation.reservation_id;
        let put = Put::builder()
            .table_name(&self.orders)
            .set_item(Some(order_item(record, order)))
            .condition_expression("attribute_not_exists(reservation_id)")
            .build()
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        let update = Update::builder()
            .table_name(&self.reservations)
            .key("reservation_id", str(id.to_string()))
            .update_expression(
                "SET #s = :confirmed, order_id = :order, confirmed_at = :now REMOVE charge_token",
            )
            .condition_expression("#s = :processing")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":confirmed", str("CONFIRMED"))
            .expression_attribute_values(":processing", str(PROCESSING))
            .expression_attribute_values(":order", str(&order.order_id))
            .expression_attribute_values(":now", num(order.created_at.as_millis()))
            .build()
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            // Idempotent for 10 minutes on DynamoDB's side too (a token is at most 36 characters:
            // the reservation id, one order per reservation).
            .client_request_token(id.to_string())
            .send()
            .await;
        match result {
            Ok(_) => Ok(ConfirmOutcome::Confirmed),
            Err(e)
                if e.as_service_error().and_then(|s| s.code())
                    == Some("TransactionCanceledException") =>
            {
                // A condition failed: either an earlier attempt committed (its answer was lost)
                // or the reservation left PAYMENT_PROCESSING. The record says which.
                match self.get(id).await? {
                    Some(now) if now.reservation.status == ReservationStatus::Confirmed => {
                        Ok(ConfirmOutcome::AlreadyConfirmed)
                    }
                    _ => Ok(ConfirmOutcome::NotProcessing),
                }
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

/// The DynamoDB adapter of [`WebhookEventLog`] (table `webhook-events`, key `event_id`, `ttl`).
#[derive(Clone)]
pub struct DynamoWebhookEventLog {
    client: Client,
    table: String,
}

impl DynamoWebhookEventLog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl WebhookEventLog for DynamoWebhookEventLog {
    async fn claim(
        &self,
        event_id: &str,
        event_type: &str,
        now: Timestamp,
    ) -> Result<Claim, EventLogError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("event_id", str(event_id))
            .item("event_type", str(event_type))
            .item("state", str("received"))
            .item("received_at", num(now.as_millis()))
            .item("ttl", num(now.plus(EVENT_RETENTION).as_secs()))
            .condition_expression("attribute_not_exists(event_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::New),
            Err(e) if item::is_conditional_check_failed(&e) => {
                let existing = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("event_id", str(event_id))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| EventLogError(DisplayErrorContext(&e).to_string()))?;
                let done = existing
                    .item
                    .as_ref()
                    .and_then(|i| item::opt_s(i, "state"))
                    .is_some_and(|s| s == "done");
                Ok(if done { Claim::Done } else { Claim::Unfinished })
            }
            Err(e) => Err(EventLogError(DisplayErrorContext(&e).to_string())),
        }
    }

    async fn complete(&self, event_id: &str, outcome: &str) -> Result<(), EventLogError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("event_id", str(event_id))
            .update_expression("SET #st = :done, outcome = :outcome")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":done", str("done"))
            .expression_attribute_values(":outcome", str(outcome))
            .send()
            .await
            .map_err(|e| EventLogError(DisplayErrorContext(&e).to_string()))?;
        Ok(())
    }
}
