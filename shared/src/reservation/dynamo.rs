//! The DynamoDB adapter of [`ReservationStore`].
//!
//! Item shape (reservations table, key `reservation_id`):
//! `sale_id, user_id, quantity, shard, status, amount_minor, currency, created_at, expires_at`
//! (ms since epoch), `ttl` (seconds; DynamoDB deletes the item a while after it expired), and,
//! only while PENDING, `expiry_bucket`: the partition key of the sparse `pending-by-expiry`
//! index the expiry cleanup queries. Spreading PENDING items over buckets keeps a flash sale
//! from writing one hot index partition.

use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::Client;

use super::{InsertOutcome, Reservation, ReservationStatus, ReservationStore, StoreError};
use crate::domain::{Currency, Money, Quantity, ReservationId, SaleId, Timestamp, UserId};
use crate::store::item::{self, num, str, Item};

/// How many index partitions PENDING reservations are spread over.
pub const EXPIRY_BUCKETS: u32 = 16;
/// How long a finished record stays before DynamoDB's TTL removes it.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn expiry_bucket(id: ReservationId) -> String {
    let digest = id
        .to_string()
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("b{:02}", digest % EXPIRY_BUCKETS)
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

pub fn to_item(r: &Reservation) -> Item {
    let mut item = Item::from([
        ("reservation_id".into(), str(r.reservation_id.to_string())),
        ("sale_id".into(), str(r.sale_id.as_str())),
        ("user_id".into(), str(r.user_id.as_str())),
        ("quantity".into(), num(r.quantity.get())),
        ("shard".into(), num(r.shard)),
        ("status".into(), str(r.status.as_str())),
        ("amount_minor".into(), num(r.amount.amount_minor)),
        ("currency".into(), str(r.amount.currency.as_str())),
        ("created_at".into(), num(r.created_at.as_millis())),
        ("expires_at".into(), num(r.expires_at.as_millis())),
        ("ttl".into(), num(r.expires_at.plus(RETENTION).as_secs())),
    ]);
    if r.status == ReservationStatus::Pending {
        item.insert("expiry_bucket".into(), str(expiry_bucket(r.reservation_id)));
    }
    item
}

pub fn from_item(item: &Item) -> Result<Reservation, String> {
    let currency = Currency::parse(&item::s(item, "currency")?).map_err(|e| e.to_string())?;
    let status = item::s(item, "status")?;
    Ok(Reservation {
        reservation_id: ReservationId::parse(&item::s(item, "reservation_id")?)
            .map_err(|e| e.to_string())?,
        sale_id: SaleId::parse(item::s(item, "sale_id")?).map_err(|e| e.to_string())?,
        user_id: UserId::parse(item::s(item, "user_id")?).map_err(|e| e.to_string())?,
        quantity: Quantity::new(item::n(item, "quantity")?).map_err(|e| e.to_string())?,
        shard: item::n(item, "shard")?,
        status: ReservationStatus::parse(&status)
            .ok_or_else(|| format!("unknown status {status}"))?,
        amount: Money::new(item::n(item, "amount_minor")?, currency).map_err(|e| e.to_string())?,
        created_at: Timestamp::from_millis(item::n(item, "created_at")?),
        expires_at: Timestamp::from_millis(item::n(item, "expires_at")?),
    })
}

fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}

impl ReservationStore for DynamoReservationStore {
    async fn insert_pending(&self, r: &Reservation) -> Result<InsertOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(r)))
            .condition_expression("attribute_not_exists(reservation_id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(InsertOutcome::Inserted),
            Err(e) if item::is_conditional_check_failed(&e) => Ok(InsertOutcome::AlreadyExists),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn get(&self, id: ReservationId) -> Result<Option<Reservation>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("reservation_id", str(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .item
            .map(|item| from_item(&item).map_err(StoreError::Malformed))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reservation(status: ReservationStatus) -> Reservation {
        Reservation {
            reservation_id: ReservationId::new(),
            sale_id: SaleId::parse("drop").unwrap(),
            user_id: UserId::parse("user|1").unwrap(),
            quantity: Quantity::new(2).unwrap(),
            shard: 3,
            status,
            amount: Money::new(1_000, Currency::parse("USD").unwrap()).unwrap(),
            created_at: Timestamp::from_millis(1_000),
            expires_at: Timestamp::from_millis(601_000),
        }
    }

    #[test]
    fn a_reservation_round_trips_through_its_item() {
        let r = reservation(ReservationStatus::Pending);
        assert_eq!(from_item(&to_item(&r)), Ok(r));
    }

    #[test]
    fn only_pending_reservations_are_in_the_expiry_index() {
        assert!(to_item(&reservation(ReservationStatus::Pending)).contains_key("expiry_bucket"));
        assert!(!to_item(&reservation(ReservationStatus::Confirmed)).contains_key("expiry_bucket"));
    }

    #[test]
    fn expiry_buckets_spread_reservations() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            seen.insert(expiry_bucket(ReservationId::new()));
        }
        assert_eq!(seen.len(), EXPIRY_BUCKETS as usize);
    }
}
