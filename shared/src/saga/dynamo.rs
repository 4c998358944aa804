//! The DynamoDB adapter of [`CheckoutRecords`]: payment attributes live on the reservation
//! item (names in [`crate::reservation::item::attr`]); orders in the orders table (key
//! `reservation_id`, one order per reservation).
//!
//! Every write goes through [`crate::store::write`]: throttling, conflicts and 5xx are retried
//! with backoff, and only a failed condition is a business outcome. A retried write whose
//! first attempt committed (its answer lost) fails its condition; each method below says how
//! it tells its own earlier effect from someone else's.

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use sha2::{Digest, Sha256};

use super::records::{BeginPayment, CheckoutRecord, CheckoutRecords, ConfirmOutcome, Order};
use super::webhook::{Claim, EventLogError, WebhookEventLog, EVENT_RETENTION};
use crate::domain::{ReservationId, Timestamp, UserId};
use crate::reservation::dynamo::get_consistent;
use crate::reservation::item::{attr, transition};
use crate::reservation::{Reservation, ReservationStatus, StoreError};
use crate::store::item::{self, num, str, Item};
use crate::store::write::{self, RetryPolicy, WriteFailure};

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

    /// An UpdateItem on a reservation, retried as [`write::with_retries`] says. `Ok(true)` when
    /// it happened, `Ok(false)` when its condition failed.
    async fn conditional_update(
        &self,
        what: &'static str,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    ) -> Result<bool, StoreError> {
        match write::with_retries(RetryPolicy::BACKGROUND, what, write::classify, || {
            request.clone().send()
        })
        .await?
        {
            Ok(_) => Ok(true),
            Err(WriteFailure::ConditionFailed { .. }) => Ok(false),
            Err(other) => Err(StoreError::Unavailable(format!("{what}: {other:?}"))),
        }
    }

    fn update(
        &self,
        id: ReservationId,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.reservations)
            .key(attr::RESERVATION_ID, str(id.to_string()))
            .expression_attribute_names("#s", attr::STATUS)
    }
}

impl TryFrom<&Item> for CheckoutRecord {
    type Error = String;

    fn try_from(item: &Item) -> Result<Self, String> {
        Ok(CheckoutRecord {
            reservation: Reservation::try_from(item)?,
            payment_key: item::opt_s(item, attr::PAYMENT_KEY),
            payment_method: item::opt_s(item, attr::PAYMENT_METHOD),
            charge_token: item::opt_s(item, attr::CHARGE_TOKEN),
            payment_intent_id: item::opt_s(item, attr::PAYMENT_INTENT_ID),
            order_id: item::opt_s(item, attr::ORDER_ID),
            failure_reason: item::opt_s(item, attr::FAILURE_REASON),
            payment_started_at: item::n::<i64>(item, attr::PAYMENT_STARTED_AT)
                .ok()
                .map(Timestamp::from_millis),
            saga_attempt: item::n(item, attr::SAGA_ATTEMPT).unwrap_or(1),
        })
    }
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

/// The `ClientRequestToken` of the confirming transaction: a digest of everything it writes.
/// DynamoDB answers a repeated token within 10 minutes with the first call's result, but only
/// if the parameters are identical (otherwise `IdempotentParameterMismatchException`), so the
/// token must change whenever the parameters do: a saga step retried a second later builds an
/// order with a new `created_at`, and then its transaction is simply refused by the condition
/// (and recognised as our own by re-reading the record). At most 36 characters.
fn request_token(record: &CheckoutRecord, order: &Order) -> String {
    let mut digest = Sha256::new();
    let mut fields: Vec<(String, String)> = order_item(record, order)
        .into_iter()
        .map(|(k, v)| (k, format!("{v:?}")))
        .collect();
    fields.sort();
    for (k, v) in fields {
        digest.update(k.as_bytes());
        digest.update(b"=");
        digest.update(v.as_bytes());
        digest.update(b";");
    }
    hex::encode(digest.finalize())[..36].to_owned()
}

impl CheckoutRecords for DynamoCheckoutRecords {
    async fn get(&self, id: ReservationId) -> Result<Option<CheckoutRecord>, StoreError> {
        get_consistent(&self.client, &self.reservations, id)
            .await?
            .map(|item| CheckoutRecord::try_from(&item).map_err(StoreError::Malformed))
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
        let t = transition("begin_payment");
        let request = self
            .update(id)
            .update_expression(format!(
                "SET #s = :to, {key} = :key, {pm} = :pm, {started} = :now, {attempt} = :one \
                 REMOVE {bucket}",
                key = attr::PAYMENT_KEY,
                pm = attr::PAYMENT_METHOD,
                started = attr::PAYMENT_STARTED_AT,
                attempt = attr::SAGA_ATTEMPT,
                bucket = attr::EXPIRY_BUCKET,
            ))
            .condition_expression(format!(
                "#s = :from AND {user} = :user AND {expires} > :now",
                user = attr::USER_ID,
                expires = attr::EXPIRES_AT
            ))
            .expression_attribute_values(":to", str(t.to.as_str()))
            .expression_attribute_values(":from", str(t.from.as_str()))
            .expression_attribute_values(":key", str(payment_key))
            .expression_attribute_values(":pm", str(payment_method))
            .expression_attribute_values(":user", str(user.as_str()))
            .expression_attribute_values(":now", num(now.as_millis()))
            .expression_attribute_values(":one", num(1));
        Ok(
            if self.conditional_update("begin payment", request).await? {
                BeginPayment::Started
            } else {
                BeginPayment::Refused
            },
        )
    }

    async fn next_saga_attempt(&self, id: ReservationId, attempt: u32) -> Result<bool, StoreError> {
        let t = transition("settle_stuck");
        let request = self
            .update(id)
            .update_expression(format!("SET {a} = :next REMOVE {token}", a = attr::SAGA_ATTEMPT, token = attr::CHARGE_TOKEN))
            .condition_expression(format!(
                "#s = :from AND ({a} = :attempt OR (attribute_not_exists({a}) AND :attempt = :one))",
                a = attr::SAGA_ATTEMPT
            ))
            .expression_attribute_values(":from", str(t.from.as_str()))
            .expression_attribute_values(":attempt", num(attempt))
            .expression_attribute_values(":one", num(1))
            .expression_attribute_values(":next", num(attempt + 1));
        self.conditional_update("next saga attempt", request).await
    }

    async fn store_charge_token(&self, id: ReservationId, token: &str) -> Result<bool, StoreError> {
        let request = self
            .update(id)
            .update_expression(format!("SET {} = :token", attr::CHARGE_TOKEN))
            .condition_expression("#s = :processing")
            .expression_attribute_values(
                ":processing",
                str(ReservationStatus::PaymentProcessing.as_str()),
            )
            .expression_attribute_values(":token", str(token));
        self.conditional_update("store charge token", request).await
    }

    async fn store_payment_intent(&self, id: ReservationId, pi: &str) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.reservations)
            .key(attr::RESERVATION_ID, str(id.to_string()))
            .update_expression(format!("SET {} = :pi", attr::PAYMENT_INTENT_ID))
            .condition_expression(format!("attribute_exists({})", attr::RESERVATION_ID))
            .expression_attribute_values(":pi", str(pi));
        if self
            .conditional_update("store payment intent", request)
            .await?
        {
            Ok(())
        } else {
            Err(StoreError::Malformed(format!("no reservation {id}")))
        }
    }

    async fn confirm_with_order(
        &self,
        record: &CheckoutRecord,
        order: &Order,
    ) -> Result<ConfirmOutcome, StoreError> {
        let id = record.reservation.reservation_id;
        let t = transition("confirm");
        let put = Put::builder()
            .table_name(&self.orders)
            .set_item(Some(order_item(record, order)))
            .condition_expression("attribute_not_exists(reservation_id)")
            .build()
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        let update = Update::builder()
            .table_name(&self.reservations)
            .key(attr::RESERVATION_ID, str(id.to_string()))
            .update_expression(format!(
                "SET #s = :to, {order} = :order, {at} = :now REMOVE {token}",
                order = attr::ORDER_ID,
                at = attr::CONFIRMED_AT,
                token = attr::CHARGE_TOKEN
            ))
            .condition_expression("#s = :from")
            .expression_attribute_names("#s", attr::STATUS)
            .expression_attribute_values(":to", str(t.to.as_str()))
            .expression_attribute_values(":from", str(t.from.as_str()))
            .expression_attribute_values(":order", str(&order.order_id))
            .expression_attribute_values(":now", num(order.created_at.as_millis()))
            .build()
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        // The same parameters on every retry of this call (see request_token).
        let request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .client_request_token(request_token(record, order));
        match write::with_retries(
            RetryPolicy::BACKGROUND,
            "confirm with order",
            write::classify_transaction,
            || request.clone().send(),
        )
        .await?
        {
            Ok(_) => Ok(ConfirmOutcome::Confirmed),
            Err(WriteFailure::ConditionFailed { .. }) => {
                // Either an earlier attempt committed (its answer was lost) or the reservation
                // left PAYMENT_PROCESSING. The record says which.
                match self.get(id).await? {
                    Some(now) if now.reservation.status == ReservationStatus::Confirmed => {
                        Ok(ConfirmOutcome::AlreadyConfirmed)
                    }
                    _ => Ok(ConfirmOutcome::NotProcessing),
                }
            }
            Err(other) => Err(other.into_store_error()),
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
    /// A conditional put. A condition failure (a redelivery, or this call's own earlier attempt
    /// whose answer was lost) reads the record: `done` only once `complete` ran.
    async fn claim(
        &self,
        event_id: &str,
        event_type: &str,
        now: Timestamp,
    ) -> Result<Claim, EventLogError> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("event_id", str(event_id))
            .item("event_type", str(event_type))
            .item("state", str("received"))
            .item("received_at", num(now.as_millis()))
            .item("ttl", num(now.plus(EVENT_RETENTION).as_secs()))
            .condition_expression("attribute_not_exists(event_id)");
        let result = write::with_retries(
            RetryPolicy::INTERACTIVE,
            "claim webhook event",
            write::classify,
            || request.clone().send(),
        )
        .await
        .map_err(|e| EventLogError(e.to_string()))?;
        match result {
            Ok(_) => Ok(Claim::New),
            Err(WriteFailure::ConditionFailed { .. }) => {
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
            Err(other) => Err(EventLogError(format!("{other:?}"))),
        }
    }

    async fn complete(&self, event_id: &str, outcome: &str) -> Result<(), EventLogError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("event_id", str(event_id))
            .update_expression("SET #st = :done, outcome = :outcome")
            .expression_attribute_names("#st", "state")
            .expression_attribute_values(":done", str("done"))
            .expression_attribute_values(":outcome", str(outcome));
        match write::with_retries(
            RetryPolicy::INTERACTIVE,
            "complete webhook event",
            write::classify,
            || request.clone().send(),
        )
        .await
        .map_err(|e| EventLogError(e.to_string()))?
        {
            Ok(_) => Ok(()),
            Err(other) => Err(EventLogError(format!("{other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Currency, Money, Quantity, SaleId};

    fn record() -> CheckoutRecord {
        CheckoutRecord {
            reservation: Reservation {
                reservation_id: ReservationId::new(),
                sale_id: SaleId::parse("drop").unwrap(),
                user_id: UserId::parse("u1").unwrap(),
                quantity: Quantity::ONE,
                shard: 0,
                status: ReservationStatus::PaymentProcessing,
                amount: Money::new(500, Currency::parse("EUR").unwrap()).unwrap(),
                created_at: Timestamp::from_millis(1),
                expires_at: Timestamp::from_millis(2),
            },
            payment_key: Some("k".into()),
            payment_method: Some("pm_card_visa".into()),
            charge_token: None,
            payment_intent_id: Some("pi_1".into()),
            order_id: None,
            failure_reason: None,
            payment_started_at: None,
            saga_attempt: 1,
        }
    }

    fn order(record: &CheckoutRecord, at: i64) -> Order {
        Order {
            order_id: format!("ord_{}", record.reservation.reservation_id),
            reservation_id: record.reservation.reservation_id,
            payment_intent_id: "pi_1".into(),
            amount: record.reservation.amount,
            created_at: Timestamp::from_millis(at),
        }
    }

    #[test]
    fn the_request_token_is_stable_for_the_same_parameters_and_changes_with_them() {
        let r = record();
        let a = request_token(&r, &order(&r, 10));
        assert_eq!(a, request_token(&r, &order(&r, 10)));
        assert_ne!(a, request_token(&r, &order(&r, 11)));
        assert_eq!(a.len(), 36);
    }
}
