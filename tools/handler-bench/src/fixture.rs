//! What both benches of the reserve handler share: an open sale and the request API Gateway
//! hands the function.

use std::collections::HashMap;

use flashsale_core::domain::{Clock, SaleId, SystemClock};
use flashsale_core::identity::context_for;
use flashsale_core::sale::Sale;
use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt};
use testkit::fixtures::OpenSale;

/// A sale open since a minute ago for an hour, 8 shards, limit 1, 10-minute holds.
pub fn open_sale(id: &str, total_stock: u64) -> anyhow::Result<Sale> {
    Ok(OpenSale::new(SaleId::parse(id)?, total_stock)
        .shards(8)
        .price(100)
        .named("bench")
        .at(SystemClock.now()))
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
