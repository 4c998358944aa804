//! HTTP for sales: `GET /sales/{saleId}` (public view) and `PUT /sales/{saleId}` (admin:
//! create or update, seeding the durable record and the stock consistently).

use std::time::Duration;

use chrono::DateTime;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::put::PutSaleError;
use super::{Sale, SaleCatalog, SaleWindow};
use crate::domain::{Clock, Currency, Money, SaleId, Timestamp};
use crate::http::request::{admin_of, body_bytes, sale_id_of};
use crate::http::{json, problems, Problem};
use crate::stock::{ShardCount, StockEngine};

#[derive(Debug, Serialize)]
pub struct SaleView {
    pub sale_id: String,
    pub name: String,
    /// upcoming, open, sold_out or ended
    pub status: &'static str,
    pub price: Money,
    pub total_stock: u64,
    /// Units not held or sold right now. Approximate: read shard by shard without a lock, and
    /// units of unpaid reservations come back when they expire.
    pub available: Option<i64>,
    pub available_is_approximate: bool,
    pub per_user_limit: u32,
    pub hold_seconds: u64,
    pub starts_at: String,
    pub ends_at: String,
}

fn view(sale: &Sale, available: Option<i64>, now: Timestamp) -> SaleView {
    let status = match sale.window_at(now) {
        SaleWindow::Upcoming => "upcoming",
        SaleWindow::Ended => "ended",
        SaleWindow::Open if available == Some(0) => "sold_out",
        SaleWindow::Open => "open",
    };
    SaleView {
        sale_id: sale.sale_id.to_string(),
        name: sale.name.clone(),
        status,
        price: sale.price,
        total_stock: sale.total_stock,
        available,
        available_is_approximate: true,
        per_user_limit: sale.per_user_limit,
        hold_seconds: sale.hold.as_secs(),
        starts_at: sale.starts_at.to_rfc3339(),
        ends_at: sale.ends_at.to_rfc3339(),
    }
}

async fn available<S: StockEngine>(stock: &S, sale: &Sale) -> Option<i64> {
    match stock.levels(&sale.stock()).await {
        Ok(levels) if levels.is_complete() => Some(levels.available()),
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(%error, "reading stock levels failed");
            None
        }
    }
}

/// `GET /sales/{saleId}`.
pub async fn get_sale<C: SaleCatalog, S: StockEngine, K: Clock>(
    catalog: &C,
    stock: &S,
    clock: &K,
    request: &Request,
) -> Response<Body> {
    let sale_id = match sale_id_of(request) {
        Ok(id) => id,
        Err(p) => return p.into_response(),
    };
    match catalog.get(&sale_id).await {
        Ok(Some(sale)) => {
            let available = available(stock, &sale).await;
            json(StatusCode::OK, &view(&sale, available, clock.now()))
        }
        Ok(None) => problems::sale_not_found().into_response(),
        Err(error) => {
            tracing::error!(%error, "reading a sale failed");
            problems::dependency_unavailable("A dependency did not answer; retry shortly.")
                .into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    amount_minor: i64,
    currency: String,
}

/// The admin's description of a sale. Strict: unknown fields are refused, so a typo cannot
/// silently leave a setting at its default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutSaleBody {
    #[serde(default)]
    name: String,
    total_stock: u64,
    #[serde(default = "default_shards")]
    shards: u16,
    per_user_limit: u32,
    price: PriceBody,
    #[serde(default = "default_hold")]
    hold_seconds: u64,
    starts_at: String,
    ends_at: String,
}

fn default_shards() -> u16 {
    8
}

fn default_hold() -> u64 {
    Sale::DEFAULT_HOLD.as_secs()
}

pub const MAX_TOTAL_STOCK: u64 = 10_000_000;

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-sale",
        "Invalid sale",
        detail,
    )
}

fn parse_time(name: &str, raw: &str) -> Result<Timestamp, Problem> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        .map_err(|_| {
            invalid(format!(
                "{name} must be an RFC 3339 timestamp, e.g. 2026-12-01T10:00:00Z"
            ))
        })
}

/// Validates the body into the sale it describes (id, times and version filled in later).
fn parse_put(sale_id: SaleId, body: &[u8], now: Timestamp) -> Result<Sale, Problem> {
    let body: PutSaleBody = crate::http::request::json_object(body)
        .map_err(|e| problems::malformed_body(format!("The body is not a valid sale: {e}")))?;
    if body.total_stock > MAX_TOTAL_STOCK {
        return Err(invalid(format!(
            "total_stock must be at most {MAX_TOTAL_STOCK}"
        )));
    }
    let shards =
        ShardCount::new(body.shards).map_err(|_| invalid("shards must be between 1 and 256"))?;
    if !(1..=100).contains(&body.per_user_limit) {
        return Err(invalid("per_user_limit must be between 1 and 100"));
    }
    if !(60..=3600).contains(&body.hold_seconds) {
        return Err(invalid("hold_seconds must be between 60 and 3600"));
    }
    if body.name.len() > 200 {
        return Err(invalid("name must be at most 200 characters"));
    }
    let currency = Currency::parse(&body.price.currency).map_err(|e| invalid(e.to_string()))?;
    let price =
        Money::new(body.price.amount_minor, currency).map_err(|e| invalid(e.to_string()))?;
    let starts_at = parse_time("starts_at", &body.starts_at)?;
    let ends_at = parse_time("ends_at", &body.ends_at)?;
    if ends_at <= starts_at {
        return Err(invalid("ends_at must be after starts_at"));
    }
    Ok(Sale {
        sale_id,
        name: body.name,
        price,
        total_stock: body.total_stock,
        shards,
        per_user_limit: body.per_user_limit,
        hold: Duration::from_secs(body.hold_seconds),
        starts_at,
        ends_at,
        created_at: now,
        updated_at: now,
        version: 1,
    })
}

/// `PUT /sales/{saleId}` (admin): parses and validates the body, then runs
/// [`super::put::put_sale`].
pub async fn put_sale<C: SaleCatalog, S: StockEngine, K: Clock>(
    catalog: &C,
    stock: &S,
    clock: &K,
    request: &Request,
) -> Response<Body> {
    match put_sale_inner(catalog, stock, clock, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    }
}

async fn put_sale_inner<C: SaleCatalog, S: StockEngine, K: Clock>(
    catalog: &C,
    stock: &S,
    clock: &K,
    request: &Request,
) -> Result<Response<Body>, Problem> {
    admin_of(request, "Managing sales needs the admin group.")?;
    let sale_id = sale_id_of(request)?;
    let now = clock.now();
    let wanted = parse_put(sale_id, body_bytes(request)?, now)?;
    let outcome = super::put::put_sale(catalog, stock, clock, wanted)
        .await
        .map_err(|e| put_error_problem(&e))?;
    let available = available(stock, &outcome.sale).await;
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &view(&outcome.sale, available, now)))
}

/// The one mapping of put-sale errors to problems.
fn put_error_problem(error: &PutSaleError) -> Problem {
    let conflict = |detail: String| {
        Problem::new(
            StatusCode::CONFLICT,
            "sale-conflict",
            "Conflicting change",
            detail,
        )
    };
    match error {
        PutSaleError::Conflict => conflict("The sale changed concurrently; retry.".into()),
        PutSaleError::ShardsFixed(_) | PutSaleError::StockCannotShrink(_) => {
            conflict(format!("{error}."))
        }
        PutSaleError::RebuildNeeded => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stock-rebuild-needed",
            "Stock must be rebuilt first",
            "The sale's stock is missing in Redis. Run POST /sales/{saleId}/stock/rebuild (the sweep also does within a minute), then retry.",
        )
        .with_retry_after(60),
        PutSaleError::Catalog(_) | PutSaleError::Stock(_) => {
            tracing::error!(%error, "put sale: dependency failed");
            problems::dependency_unavailable("A dependency did not answer; retrying the same PUT is safe and finishes the change.")
        }
    }
}
