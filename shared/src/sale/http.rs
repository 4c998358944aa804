//! HTTP for sales: `GET /sales/{saleId}` (public view) and `PUT /sales/{saleId}` (admin:
//! create or update, seeding the durable record and the stock consistently).

use std::time::Duration;

use chrono::DateTime;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::{CatalogError, Sale, SaleCatalog, SaleWindow};
use crate::domain::{Clock, Currency, Money, SaleId, Timestamp};
use crate::http::{json, Problem};
use crate::reservation::http::{bad_request, body_bytes, identity_of, path_param};
use crate::stock::{ShardCount, StockEngine, StockSetup};

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

fn unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency-unavailable",
        "Temporarily unavailable",
        "A dependency did not answer; retry shortly.",
    )
}

fn sale_not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "sale-not-found",
        "Sale not found",
        "There is no sale with this id.",
    )
}

fn sale_id_of(request: &Request) -> Result<SaleId, Problem> {
    path_param(request, "saleId")
        .and_then(|raw| SaleId::parse(raw).ok())
        .ok_or_else(|| {
            bad_request(
                "invalid-sale-id",
                "Invalid sale id",
                "Sale ids are 1 to 64 letters, digits, '-' or '_'.",
            )
        })
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
        Ok(None) => sale_not_found().into_response(),
        Err(error) => {
            tracing::error!(%error, "reading a sale failed");
            unavailable().into_response()
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
    let body: PutSaleBody = serde_json::from_slice(body).map_err(|e| {
        bad_request(
            "malformed-body",
            "Malformed JSON body",
            format!("The body is not a valid sale: {e}"),
        )
    })?;
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

/// `PUT /sales/{saleId}` (admin). Creates the sale, or updates price, window, hold time,
/// per-user limit, and stock (increase only: a top-up). The shard count is fixed at creation.
///
/// Order: the durable record first (it is the source of truth a stock rebuild reads), then
/// Redis. Every Redis step is idempotent, so a retried PUT completes a half-done one.
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
    let identity = identity_of(request)?;
    if !identity.is_admin() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Admin only",
            "Managing sales needs the admin group.",
        ));
    }
    let sale_id = sale_id_of(request)?;
    let now = clock.now();
    let wanted = parse_put(sale_id, body_bytes(request)?, now)?;
    let dependency = |error: &dyn std::fmt::Display| {
        tracing::error!(%error, "put sale: dependency failed");
        unavailable()
    };

    let existing = catalog
        .get(&wanted.sale_id)
        .await
        .map_err(|e| dependency(&e))?;
    let (sale, created, previous) = match existing {
        None => match catalog.create(&wanted).await {
            Ok(()) => (wanted, true, None),
            Err(CatalogError::Conflict) => {
                return Err(conflict("The sale was created concurrently; retry."))
            }
            Err(e) => return Err(dependency(&e)),
        },
        Some(old) => {
            // Missing shards on an existing sale mean Redis lost them (or a create died before
            // seeding them). Seeding them here would be fresh stock for units that may be held
            // or sold: only a rebuild from the durable records may restore them.
            let levels = stock
                .levels(&old.stock())
                .await
                .map_err(|e| dependency(&e))?;
            if !levels.is_complete() {
                return Err(Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stock-rebuild-needed",
                    "Stock must be rebuilt first",
                    format!(
                        "The sale's stock is missing in Redis. Run POST /sales/{}/stock/rebuild, then retry.",
                        old.sale_id
                    ),
                ));
            }
            if old.shards != wanted.shards {
                return Err(conflict(format!(
                    "shards is fixed at creation ({}).",
                    old.shards.get()
                )));
            }
            if wanted.total_stock < old.total_stock {
                return Err(conflict(format!(
                    "total_stock can only grow during a sale (now {}).",
                    old.total_stock
                )));
            }
            let updated = Sale {
                created_at: old.created_at,
                version: old.version + 1,
                ..wanted
            };
            match catalog.update(&updated).await {
                Ok(()) => (updated, false, Some(old)),
                Err(CatalogError::Conflict) => {
                    return Err(conflict("The sale changed concurrently; retry."))
                }
                Err(e) => return Err(dependency(&e)),
            }
        }
    };

    // Seed (or re-seed after a half-done PUT) the stock with the totals before this change,
    // then apply the change. setup never overwrites an existing shard.
    let base_stock = previous
        .as_ref()
        .map_or(sale.total_stock, |p| p.total_stock);
    let base_limit = previous
        .as_ref()
        .map_or(sale.per_user_limit, |p| p.per_user_limit);
    stock
        .setup(
            &sale.stock(),
            &StockSetup {
                total_units: base_stock,
                per_user_limit: base_limit,
            },
        )
        .await
        .map_err(|e| dependency(&e))?;
    if let Some(old) = &previous {
        if sale.total_stock > old.total_stock {
            stock
                .top_up(&sale.stock(), sale.total_stock - old.total_stock)
                .await
                .map_err(|e| dependency(&e))?;
        }
        if sale.per_user_limit != old.per_user_limit {
            stock
                .set_per_user_limit(&sale.stock(), sale.per_user_limit)
                .await
                .map_err(|e| dependency(&e))?;
        }
    }
    let available = available(stock, &sale).await;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json(status, &view(&sale, available, now)))
}

fn conflict(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "sale-conflict",
        "Conflicting change",
        detail,
    )
}
