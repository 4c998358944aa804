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
use crate::waiting_room::{RoomMode, RoomSettings};

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
    /// Present when the sale has a waiting room: reserve then needs a queue ticket (`always`),
    /// or does once people wait (`threshold`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_room: Option<RoomBody>,
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
        waiting_room: sale.waiting_room.as_ref().map(RoomBody::from),
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
    /// Absent: no waiting room.
    #[serde(default)]
    waiting_room: Option<RoomBody>,
}

/// A sale's waiting room, as the admin sets it and the public view shows it. Defaults are the
/// seed's numbers ([`RoomSettings::with_defaults`]).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomBody {
    /// `always` or `threshold`.
    pub mode: String,
    /// Threshold mode only (required there): buyers a second let in without a ticket while
    /// nobody waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub straight_in_per_sec: Option<u32>,
    #[serde(default = "default_drain")]
    pub drain_per_sec: u32,
    #[serde(default = "default_max_queue")]
    pub max_queue: u64,
    #[serde(default = "default_window")]
    pub admission_window_seconds: u64,
    #[serde(default = "default_pre_queue")]
    pub pre_queue_minutes: u64,
    #[serde(default = "default_boost")]
    pub max_no_show_boost_percent: u32,
}

fn default_drain() -> u32 {
    RoomSettings::DEFAULT_DRAIN_PER_SEC
}
fn default_max_queue() -> u64 {
    RoomSettings::DEFAULT_MAX_QUEUE
}
fn default_window() -> u64 {
    RoomSettings::DEFAULT_ADMISSION_WINDOW.as_secs()
}
fn default_pre_queue() -> u64 {
    RoomSettings::DEFAULT_PRE_QUEUE.as_secs() / 60
}
fn default_boost() -> u32 {
    RoomSettings::DEFAULT_MAX_BOOST_PERCENT
}

impl From<&RoomSettings> for RoomBody {
    fn from(room: &RoomSettings) -> Self {
        let (mode, straight_in_per_sec) = match room.mode {
            RoomMode::Always => ("always", None),
            RoomMode::Threshold {
                straight_in_per_sec,
            } => ("threshold", Some(straight_in_per_sec)),
        };
        Self {
            mode: mode.into(),
            straight_in_per_sec,
            drain_per_sec: room.drain_per_sec,
            max_queue: room.max_queue,
            admission_window_seconds: room.admission_window.as_secs(),
            pre_queue_minutes: room.pre_queue.as_secs() / 60,
            max_no_show_boost_percent: room.max_boost_percent,
        }
    }
}

fn parse_room(body: RoomBody) -> Result<RoomSettings, Problem> {
    let mode =
        match (body.mode.as_str(), body.straight_in_per_sec) {
            ("always", None) => RoomMode::Always,
            ("always", Some(_)) => {
                return Err(invalid(
                    "waiting_room.straight_in_per_sec is for the threshold mode only",
                ))
            }
            ("threshold", Some(n)) if (1..=1_000_000).contains(&n) => RoomMode::Threshold {
                straight_in_per_sec: n,
            },
            ("threshold", _) => return Err(invalid(
                "waiting_room.straight_in_per_sec (1 to 1000000) is required in the threshold mode",
            )),
            (other, _) => {
                return Err(invalid(format!(
                    "waiting_room.mode must be always or threshold, got {other:?}"
                )))
            }
        };
    if !(1..=1_000_000).contains(&body.drain_per_sec) {
        return Err(invalid(
            "waiting_room.drain_per_sec must be between 1 and 1000000",
        ));
    }
    if !(1..=10_000_000).contains(&body.max_queue) {
        return Err(invalid(
            "waiting_room.max_queue must be between 1 and 10000000",
        ));
    }
    if !(30..=3600).contains(&body.admission_window_seconds) {
        return Err(invalid(
            "waiting_room.admission_window_seconds must be between 30 and 3600",
        ));
    }
    if body.pre_queue_minutes > 1440 {
        return Err(invalid(
            "waiting_room.pre_queue_minutes must be at most 1440",
        ));
    }
    if body.max_no_show_boost_percent > 100 {
        return Err(invalid(
            "waiting_room.max_no_show_boost_percent must be between 0 and 100",
        ));
    }
    Ok(RoomSettings {
        mode,
        drain_per_sec: body.drain_per_sec,
        max_queue: body.max_queue,
        admission_window: Duration::from_secs(body.admission_window_seconds),
        pre_queue: Duration::from_secs(body.pre_queue_minutes * 60),
        max_boost_percent: body.max_no_show_boost_percent,
    })
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
    let waiting_room = body.waiting_room.map(parse_room).transpose()?;
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
        waiting_room,
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
        PutSaleError::RoomStarted { since } => conflict(format!(
            "The waiting room has taken joins since {}: starts_at, drain_per_sec and pre_queue_minutes are fixed while it is on (the places given out were timed by them); the room may be removed or its other settings changed.",
            since.to_rfc3339()
        )),
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
