//! Domain fixtures the tests and tools share: an open sale ([`OpenSale`]) and opening it in a
//! catalog and a stock engine ([`open`]). Each caller says what matters to it (units, shards,
//! limit, price, ...); the rest are the defaults below.

use std::time::Duration;

use flashsale_core::domain::{Currency, Money, SaleId, Timestamp};
use flashsale_core::sale::{Sale, SaleCatalog};
use flashsale_core::stock::{ShardCount, StockEngine, StockSetup};
use flashsale_core::waiting_room::RoomSettings;

/// A sale that opened `opened_ago` before the `now` it is built at and closes an hour after
/// it, with 10-minute holds. Defaults: 4 shards, a limit of 1 per buyer, EUR 10.00, "drop".
#[derive(Debug, Clone)]
pub struct OpenSale {
    id: SaleId,
    units: u64,
    shards: u16,
    limit: u32,
    price_minor: i64,
    name: String,
    opened_ago: Duration,
    waiting_room: Option<RoomSettings>,
}

impl OpenSale {
    pub fn new(id: SaleId, units: u64) -> Self {
        Self {
            id,
            units,
            shards: 4,
            limit: 1,
            price_minor: 1_000,
            name: "drop".into(),
            opened_ago: Duration::from_secs(60),
            waiting_room: None,
        }
    }

    /// With a waiting room.
    pub fn waiting_room(mut self, settings: RoomSettings) -> Self {
        self.waiting_room = Some(settings);
        self
    }

    pub fn shards(mut self, shards: u16) -> Self {
        self.shards = shards;
        self
    }

    pub fn limit(mut self, per_user_limit: u32) -> Self {
        self.limit = per_user_limit;
        self
    }

    /// Price in minor units (cents) of EUR.
    pub fn price(mut self, minor: i64) -> Self {
        self.price_minor = minor;
        self
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    pub fn opened_ago(mut self, ago: Duration) -> Self {
        self.opened_ago = ago;
        self
    }

    /// The sale as of `now` (created and last updated at `now`, version 1).
    pub fn at(&self, now: Timestamp) -> Sale {
        Sale {
            sale_id: self.id.clone(),
            name: self.name.clone(),
            price: Money::new(self.price_minor, Currency::parse("EUR").expect("EUR"))
                .expect("a valid price"),
            total_stock: self.units,
            shards: ShardCount::new(self.shards).expect("1 to 256 shards"),
            per_user_limit: self.limit,
            hold: Duration::from_secs(600),
            starts_at: now.minus(self.opened_ago),
            ends_at: now.plus(Duration::from_secs(3600)),
            created_at: now,
            updated_at: now,
            version: 1,
            waiting_room: self.waiting_room,
        }
    }
}

/// Creates the sale in the catalog and sets its stock up in the engine (what put-sale does).
pub async fn open<C: SaleCatalog, S: StockEngine>(catalog: &C, stock: &S, sale: &Sale) {
    catalog.create(sale).await.expect("the sale is created");
    stock
        .setup(
            &sale.stock(),
            &StockSetup {
                total_units: sale.total_stock,
                per_user_limit: sale.per_user_limit,
            },
        )
        .await
        .expect("the stock is set up");
}
