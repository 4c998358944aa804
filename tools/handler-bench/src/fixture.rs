//! What both benches of the reserve handler share: an open sale and the request API Gateway
//! hands the function.

use std::collections::HashMap;
use std::time::Duration;

use flashsale_core::domain::{Clock, Currency, Money, SaleId, SystemClock};
use flashsale_core::identity::context_for;
use flashsale_core::sale::Sale;
use flashsale_core::stock::ShardCount;
use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt};

/// A sale open since a minute ago for an hour, 8 shards, limit 1, 10-minute holds.
pub fn open_sale(id: &str, total_stock: u64) -> anyhow::Result<Sale> {
    let now = SystemClock.now();
    Ok(Sale {
        sale_id: SaleId::parse(id)?,
        name: "bench".into(),
        price: Money::new(100, Currency::parse("EUR")?)?,
        total_stock,
        shards: ShardCount::new(8)?,
        per_user_limit: 1,
        hold: Duration::from_secs(600),
        starts_at: now.minus(Duration::from_secs(60)),
        ends_at: now.plus(Duration::from_secs(3600)),
        created_at: now,
        updated_at: now,
        version: 1,
    })
}

/// Buyer `user_prefix-i`'s reserve request: path parameter, idempotency key, the authorizer's
/// context with the buyer's identity and source IP.
pub fn reserve_request(sale: &SaleId, i: u64, user_prefix: &str) -> Request {
    let params: HashMap<String, String> = [("saleId".to_string(), sale.to_string())].into();
    lambda_http::http::Request::builder()
        .method(Method::POST)
        .uri(format!("/sales/{sale}/reservations"))
        .header("Idempotency-Key", format!("k{i}"))
        .body(Body::Empty)
        .expect("request")
        .with_path_parameters(params)
        .with_request_context(context_for(
            &format!("{user_prefix}-{i}"),
            &[],
            "198.51.100.1",
        ))
}
