//! flashsale-core: the library every flashsale Lambda is built from.
//!
//! Layout (by domain concept; each port sits beside the adapters that implement it):
//! - [`domain`]: ids, quantities, money, and the clock port. Invalid values cannot be built.
//! - [`stock`]: the stock engine port ([`stock::StockEngine`]), its Redis Lua adapter
//!   ([`stock::redis::RedisStockEngine`]) and the per-process sold-out fast path
//!   ([`stock::SoldOutCache`]).
//! - [`rate_limit`]: the token-bucket port and its Redis Lua adapter.

pub mod domain;
pub mod rate_limit;
pub mod stock;
