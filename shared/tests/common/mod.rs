//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod scenarios;

use std::time::Duration;

use flashsale_core::domain::{IdempotencyKey, Quantity, ReservationId, SaleId, Timestamp, UserId};
use flashsale_core::stock::{ReserveRequest, SaleStock, ShardCount};

pub fn now() -> Timestamp {
    Timestamp::from(chrono::Utc::now())
}

/// A sale id no other test uses.
pub fn unique_sale(prefix: &str) -> SaleId {
    SaleId::parse(format!("{prefix}-{}", uuid::Uuid::now_v7().simple())).unwrap()
}

pub fn sale(id: &SaleId, shards: u16) -> SaleStock {
    SaleStock {
        sale_id: id.clone(),
        shards: ShardCount::new(shards).unwrap(),
    }
}

pub fn user(name: impl Into<String>) -> UserId {
    UserId::parse(name).unwrap()
}

pub fn request(sale: &SaleStock, user: &UserId, key: &str, quantity: u32) -> ReserveRequest {
    let now = now();
    ReserveRequest {
        sale: sale.clone(),
        user: user.clone(),
        quantity: Quantity::new(quantity).unwrap(),
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        reservation_id: ReservationId::new(),
        now,
        expires_at: now.plus(Duration::from_secs(600)),
    }
}

/// A user whose home shard is `shard` (found by trying names).
pub fn user_with_home(shards: ShardCount, shard: u16, tag: &str) -> UserId {
    (0..)
        .map(|i| user(format!("{tag}-{i}")))
        .find(|u| shards.home_of(u) == shard)
        .unwrap()
}
