//! The DynamoDB adapter of [`SaleCatalog`]: one item per sale in the sales table.

use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::Client;

use super::{CatalogError, Sale, SaleCatalog};
use crate::domain::{Currency, Money, SaleId, Timestamp};
use crate::stock::ShardCount;
use crate::store::item::{self, num, str, Item};
use crate::waiting_room::{RoomMode, RoomSettings};

#[derive(Clone)]
pub struct DynamoSaleCatalog {
    client: Client,
    table: String,
}

impl DynamoSaleCatalog {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

fn to_item(sale: &Sale) -> Item {
    let mut item = Item::from([
        ("sale_id".into(), str(sale.sale_id.as_str())),
        ("name".into(), str(&sale.name)),
        ("price_minor".into(), num(sale.price.amount_minor)),
        ("currency".into(), str(sale.price.currency.as_str())),
        ("total_stock".into(), num(sale.total_stock)),
        ("shards".into(), num(sale.shards.get())),
        ("per_user_limit".into(), num(sale.per_user_limit)),
        ("hold_seconds".into(), num(sale.hold.as_secs())),
        ("starts_at".into(), num(sale.starts_at.as_millis())),
        ("ends_at".into(), num(sale.ends_at.as_millis())),
        ("created_at".into(), num(sale.created_at.as_millis())),
        ("updated_at".into(), num(sale.updated_at.as_millis())),
        ("version".into(), num(sale.version)),
    ]);
    if let Some(room) = &sale.waiting_room {
        let (mode, straight_in) = match room.mode {
            RoomMode::Always => ("always", 0),
            RoomMode::Threshold {
                straight_in_per_sec,
            } => ("threshold", straight_in_per_sec),
        };
        item.extend([
            ("room_mode".into(), str(mode)),
            ("room_straight_in_per_sec".into(), num(straight_in)),
            ("room_drain_per_sec".into(), num(room.drain_per_sec)),
            ("room_max_queue".into(), num(room.max_queue)),
            (
                "room_window_seconds".into(),
                num(room.admission_window.as_secs()),
            ),
            (
                "room_pre_queue_seconds".into(),
                num(room.pre_queue.as_secs()),
            ),
            ("room_max_boost_percent".into(), num(room.max_boost_percent)),
        ]);
    }
    item
}

fn room_from_item(item: &Item) -> Result<Option<RoomSettings>, String> {
    let mode = match item::opt_s(item, "room_mode").as_deref() {
        None => return Ok(None),
        Some("always") => RoomMode::Always,
        Some("threshold") => RoomMode::Threshold {
            straight_in_per_sec: item::n(item, "room_straight_in_per_sec")?,
        },
        Some(other) => return Err(format!("room_mode {other:?} is not always or threshold")),
    };
    Ok(Some(RoomSettings {
        mode,
        drain_per_sec: item::n(item, "room_drain_per_sec")?,
        max_queue: item::n(item, "room_max_queue")?,
        admission_window: Duration::from_secs(item::n(item, "room_window_seconds")?),
        pre_queue: Duration::from_secs(item::n(item, "room_pre_queue_seconds")?),
        max_boost_percent: item::n(item, "room_max_boost_percent")?,
    }))
}

fn from_item(item: &Item) -> Result<Sale, String> {
    let currency = Currency::parse(&item::s(item, "currency")?).map_err(|e| e.to_string())?;
    Ok(Sale {
        sale_id: SaleId::parse(item::s(item, "sale_id")?).map_err(|e| e.to_string())?,
        name: item::opt_s(item, "name").unwrap_or_default(),
        price: Money::new(item::n(item, "price_minor")?, currency).map_err(|e| e.to_string())?,
        total_stock: item::n(item, "total_stock")?,
        shards: ShardCount::new(item::n(item, "shards")?).map_err(|e| e.to_string())?,
        per_user_limit: item::n(item, "per_user_limit")?,
        hold: Duration::from_secs(item::n(item, "hold_seconds")?),
        starts_at: Timestamp::from_millis(item::n(item, "starts_at")?),
        ends_at: Timestamp::from_millis(item::n(item, "ends_at")?),
        created_at: Timestamp::from_millis(item::n(item, "created_at")?),
        updated_at: Timestamp::from_millis(item::n(item, "updated_at")?),
        version: item::n(item, "version")?,
        waiting_room: room_from_item(item)?,
    })
}

fn store_error<E, R>(error: SdkError<E, R>) -> CatalogError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    CatalogError::Store(DisplayErrorContext(&error).to_string())
}

impl DynamoSaleCatalog {
    /// Writes the whole item if `condition` holds; a lost condition is `Conflict`.
    async fn put_if(
        &self,
        sale: &Sale,
        condition: &str,
        expected_version: Option<aws_sdk_dynamodb::types::AttributeValue>,
    ) -> Result<(), CatalogError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(sale)))
            .condition_expression(condition);
        if let Some(version) = expected_version {
            put = put.expression_attribute_values(":expected", version);
        }
        // A condition failure after a lost answer looks like a conflict; the put-sale use case
        // reads the sale back and recognises its own write (sale/put.rs).
        match crate::store::write::with_retries(
            crate::store::write::RetryPolicy::INTERACTIVE,
            "put sale",
            crate::store::write::classify,
            || put.clone().send(),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(crate::store::write::WriteFailure::ConditionFailed { .. })) => {
                Err(CatalogError::Conflict)
            }
            Ok(Err(other)) => Err(CatalogError::Store(format!("{other:?}"))),
            Err(e) => Err(CatalogError::Store(e.to_string())),
        }
    }
}

impl SaleCatalog for DynamoSaleCatalog {
    async fn get(&self, id: &SaleId) -> Result<Option<Sale>, CatalogError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("sale_id", str(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(store_error)?;
        output
            .item
            .map(|item| from_item(&item).map_err(CatalogError::Malformed))
            .transpose()
    }

    async fn create(&self, sale: &Sale) -> Result<(), CatalogError> {
        self.put_if(sale, "attribute_not_exists(sale_id)", None)
            .await
    }

    async fn update(&self, sale: &Sale) -> Result<(), CatalogError> {
        let expected = num(sale.version.saturating_sub(1));
        self.put_if(sale, "version = :expected", Some(expected))
            .await
    }

    /// A paged, consistent Scan: the sales table holds one small item per sale (hundreds, not
    /// millions), and only the once-a-minute maintenance sweep lists it, so an index for this
    /// would cost more than it saves.
    async fn list(&self) -> Result<Vec<Sale>, CatalogError> {
        let mut sales = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(store_error)?;
            for item in output.items() {
                sales.push(from_item(item).map_err(CatalogError::Malformed)?);
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        sales.sort_by(|a, b| a.sale_id.cmp(&b.sale_id));
        Ok(sales)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sale_round_trips_through_its_item() {
        let sale = Sale {
            sale_id: SaleId::parse("drop").unwrap(),
            name: "Console drop".into(),
            price: Money::new(49_999, Currency::parse("EUR").unwrap()).unwrap(),
            total_stock: 100,
            shards: ShardCount::new(8).unwrap(),
            per_user_limit: 2,
            hold: Duration::from_secs(600),
            starts_at: Timestamp::from_millis(1_000),
            ends_at: Timestamp::from_millis(2_000),
            created_at: Timestamp::from_millis(10),
            updated_at: Timestamp::from_millis(20),
            version: 3,
            waiting_room: None,
        };
        assert_eq!(from_item(&to_item(&sale)), Ok(sale.clone()));
        for mode in [
            RoomMode::Always,
            RoomMode::Threshold {
                straight_in_per_sec: 50,
            },
        ] {
            let with_room = Sale {
                waiting_room: Some(RoomSettings {
                    max_queue: 7,
                    ..RoomSettings::with_defaults(mode)
                }),
                ..sale.clone()
            };
            assert_eq!(from_item(&to_item(&with_room)), Ok(with_room));
        }
    }

    #[test]
    fn a_malformed_item_is_reported_not_panicked_on() {
        let mut item = Item::new();
        item.insert("sale_id".into(), str("drop"));
        assert!(from_item(&item).unwrap_err().contains("currency"));
    }
}
