//! The DynamoDB adapter of [`ReservationStore`]. The item's shape lives in [`super::item`].

use aws_sdk_dynamodb::Client;

use super::item::{attr, reconciled, to_item};
use super::{InsertOutcome, Reservation, ReservationStatus, ReservationStore, StoreError};
use crate::domain::ReservationId;
use crate::store::item::{num, str, Item};
use crate::store::write::{self, unavailable, RetryPolicy, WriteFailure};

/// Writes a new reservation item (one whose id is not taken), retried per `policy`. Ids are
/// new per attempt, so a condition failure on a retry is this write's own earlier effect whose
/// answer was lost (or a concurrent copy of it): `AlreadyExists`. `what` names it in logs.
pub(crate) async fn put_new(
    client: &Client,
    table: &str,
    item: Item,
    policy: RetryPolicy,
    what: &'static str,
) -> Result<InsertOutcome, StoreError> {
    let request = client
        .put_item()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression(format!("attribute_not_exists({})", attr::RESERVATION_ID));
    match write::with_retries(policy, what, write::classify, || request.clone().send()).await? {
        Ok(_) => Ok(InsertOutcome::Inserted),
        Err(WriteFailure::ConditionFailed { .. }) => Ok(InsertOutcome::AlreadyExists),
        Err(other) => Err(other.into_store_error()),
    }
}

/// The reservation's whole item, read consistently (what the last write left).
pub(crate) async fn get_consistent(
    client: &Client,
    table: &str,
    id: ReservationId,
) -> Result<Option<Item>, StoreError> {
    let output = client
        .get_item()
        .table_name(table)
        .key(attr::RESERVATION_ID, str(id.to_string()))
        .consistent_read(true)
        .send()
        .await
        .map_err(unavailable)?;
    Ok(output.item)
}

#[derive(Clone)]
pub struct DynamoReservationStore {
    client: Client,
    table: String,
}

impl DynamoReservationStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

impl ReservationStore for DynamoReservationStore {
    /// A conditional put on a fresh id. A retry that fails its condition found a record with
    /// this id: reservation ids are new per attempt, so it is this attempt's own write whose
    /// answer was lost (or a concurrent replay of the same hold): `AlreadyExists`.
    async fn insert_pending(&self, r: &Reservation) -> Result<InsertOutcome, StoreError> {
        put_new(
            &self.client,
            &self.table,
            to_item(r),
            RetryPolicy::INTERACTIVE,
            "insert reservation",
        )
        .await
    }

    async fn insert_pending_with_email(
        &self,
        r: &Reservation,
        email: Option<&str>,
    ) -> Result<InsertOutcome, StoreError> {
        let mut item = to_item(r);
        if let Some(email) = email {
            item.insert(attr::EMAIL.into(), crate::store::item::str(email));
        }
        put_new(
            &self.client,
            &self.table,
            item,
            RetryPolicy::INTERACTIVE,
            "insert reservation",
        )
        .await
    }

    async fn insert_void(&self, r: &Reservation) -> Result<InsertOutcome, StoreError> {
        let mut item = to_item(&Reservation {
            status: ReservationStatus::Expired,
            ..r.clone()
        });
        item.insert(attr::RECONCILED.into(), str(reconciled::ROLLED_BACK));
        item.insert(attr::EXPIRED_AT.into(), num(r.created_at.as_millis()));
        put_new(
            &self.client,
            &self.table,
            item,
            RetryPolicy::INTERACTIVE,
            "void reservation",
        )
        .await
    }

    async fn is_tombstone(&self, id: ReservationId) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::RESERVATION_ID, str(id.to_string()))
            .projection_expression("#r")
            .expression_attribute_names("#r", attr::RECONCILED)
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .item
            .and_then(|item| item.get(attr::RECONCILED).cloned())
            .and_then(|v| v.as_s().ok().cloned())
            .is_some_and(|v| reconciled::TOMBSTONES.contains(&v.as_str())))
    }

    async fn get(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        get_consistent(&self.client, &self.table, id)
            .await?
            .map(|item| Reservation::try_from(&item).map_err(StoreError::Malformed))
            .transpose()
    }
}
