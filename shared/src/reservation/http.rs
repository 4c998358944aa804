//! HTTP for reservations: `POST /sales/{saleId}/reservations` and `GET /reservations/{id}`.
//! Parsing refuses bad input with a problem document; [`reserve_error_problem`] is the one
//! place that maps reserve errors to statuses.

use lambda_http::http::{HeaderValue, StatusCode};

use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::reserve::{ReserveCommand, ReserveError, ReserveResponse, ReserveService, Reserved};
use super::{ReservationStore, ReservationView};
use crate::domain::Clock;
use crate::domain::Quantity;
use crate::http::problems::RETRY_SOON_SECS;
use crate::http::request::{
    body_bytes, gateway_request_id, idempotency_key, identity_of, reservation_id_of, sale_id_of,
};
use crate::http::{json, problems, set_rate_headers, Problem};
use crate::rate_limit::{RateLimiter, RequestId};
use crate::sale::SaleCatalog;
use crate::stock::repair::RepairRequests;
use crate::stock::StockEngine;

/// The reserve body. Unknown fields (a `user_id`, say) are ignored: identity comes only from
/// the authorizer.
#[derive(Debug, Deserialize)]
struct ReserveBody {
    #[serde(default)]
    quantity: Option<serde_json::Value>,
}

fn parse_quantity(value: Option<serde_json::Value>) -> Result<Quantity, Problem> {
    let Some(value) = value else {
        return Ok(Quantity::ONE);
    };
    let invalid = |detail: String| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-quantity",
            "Invalid quantity",
            detail,
        )
    };
    let Some(n) = value.as_i64() else {
        return Err(invalid(format!(
            "quantity must be a whole number, got {value}"
        )));
    };
    let n = u32::try_from(n)
        .map_err(|_| invalid(format!("quantity must be between 1 and {}", Quantity::MAX)))?;
    Quantity::new(n).map_err(|e| invalid(e.to_string()))
}

/// Reads a reserve request. The caller's identity comes from the authorizer context only.
pub fn parse_reserve(request: &Request) -> Result<ReserveCommand, Problem> {
    let identity = identity_of(request)?;
    let sale_id = sale_id_of(request)?;
    let key = idempotency_key(
        request,
        "Send an Idempotency-Key header (a UUID works well) so a retry cannot reserve twice.",
    )?;
    let bytes = body_bytes(request)?;
    let body: ReserveBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        ReserveBody { quantity: None }
    } else {
        crate::http::request::json_object(bytes).map_err(|e| {
            problems::malformed_body(format!("The body is not the expected JSON object: {e}"))
        })?
    };
    Ok(ReserveCommand {
        user: identity.user_id,
        source_ip: identity.source_ip,
        request_id: RequestId::from_gateway(gateway_request_id(request).as_deref()),
        sale_id,
        quantity: parse_quantity(body.quantity)?,
        idempotency_key: key,
        email: identity.email,
    })
}

pub fn reserve_error_problem(error: &ReserveError) -> Problem {
    use ReserveError::*;
    fn p(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem::new(status, slug, title, detail)
    }
    match error {
        RateLimited(_) => p(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests", "Slow down: retry after the time in Retry-After."),
        SaleNotFound => problems::sale_not_found(),
        SaleNotStarted { starts_at } => p(StatusCode::CONFLICT, "sale-not-started", "Sale not started", format!("The sale opens at {}.", starts_at.to_rfc3339())),
        SaleEnded => p(StatusCode::CONFLICT, "sale-ended", "Sale ended", "The sale is over."),
        SoldOut => p(StatusCode::GONE, "sold-out", "Sold out", "Every unit is reserved or sold. Units of unpaid reservations come back when they expire."),
        InsufficientStock => p(StatusCode::CONFLICT, "insufficient-stock", "Not enough units", "Fewer units than requested are left; try a smaller quantity."),
        LimitReached { claimed, limit } => p(StatusCode::CONFLICT, "limit-reached", "Per-buyer limit reached", format!("You hold {claimed} of at most {limit} units in this sale.")),
        KeyReused => p(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency-Key reused", "This Idempotency-Key was used for a different request; use a new key."),
        InProgress => p(StatusCode::CONFLICT, "request-in-progress", "Request in progress", "A request with this Idempotency-Key is still being processed; retry shortly.").with_retry_after(RETRY_SOON_SECS),
        KeySpent => p(StatusCode::CONFLICT, "idempotency-key-spent", "Idempotency-Key spent", "The reservation made with this Idempotency-Key no longer exists (its units went back on sale); send a new key to reserve again."),
        Paused => p(StatusCode::SERVICE_UNAVAILABLE, "sale-paused", "Sale paused", "Selling is paused while stock is being rebuilt; retry shortly.").with_retry_after(RETRY_SOON_SECS),
        StockNotReady => p(StatusCode::SERVICE_UNAVAILABLE, "stock-unavailable", "Stock unavailable", "This sale's stock is being restored; retry shortly.").with_retry_after(RETRY_SOON_SECS),
        Stock(_) | Catalog(_) | Store(_) | RateStore(_) => problems::dependency_unavailable("A dependency did not answer; it is safe to retry with the same Idempotency-Key."),
    }
}

pub fn reserve_response(response: ReserveResponse) -> Response<Body> {
    let mut http = match &response.result {
        Ok(Reserved {
            reservation,
            replayed,
        }) => {
            let mut r = json(StatusCode::CREATED, &ReservationView::from(reservation));
            if *replayed {
                r.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            r
        }
        Err(error) => {
            if matches!(
                error,
                ReserveError::Stock(_)
                    | ReserveError::Catalog(_)
                    | ReserveError::Store(_)
                    | ReserveError::RateStore(_)
            ) {
                tracing::error!(%error, "reserve failed on a dependency");
            }
            reserve_error_problem(error).into_response()
        }
    };
    if let Some(rate) = &response.rate {
        set_rate_headers(&mut http, rate);
    }
    http
}

/// `POST /sales/{saleId}/reservations`: parse, reserve, answer, and emit metrics.
pub async fn reserve<S, L, C, R, K, M>(
    service: &ReserveService<S, L, C, R, K, M>,
    request: &Request,
) -> Response<Body>
where
    S: StockEngine,
    L: RateLimiter,
    C: SaleCatalog,
    R: ReservationStore,
    K: Clock,
    M: RepairRequests,
{
    let started = std::time::Instant::now();
    let command = match parse_reserve(request) {
        Ok(command) => command,
        Err(problem) => return problem.into_response(),
    };
    let response = service.reserve(command).await;
    let outcome = match &response.result {
        Ok(_) => "Reserved",
        Err(ReserveError::SoldOut) => "SoldOut",
        Err(ReserveError::RateLimited(_)) => "RateLimited",
        Err(ReserveError::LimitReached { .. }) => "LimitReached",
        Err(_) => "Refused",
    };
    crate::metrics::emit(
        "reserve",
        &[(outcome, 1)],
        started.elapsed().as_secs_f64() * 1000.0,
    );
    reserve_response(response)
}

/// `GET /reservations/{id}`: the caller's own reservation; someone else's is "not found".
pub async fn get_reservation<R: ReservationStore>(store: &R, request: &Request) -> Response<Body> {
    let identity = match identity_of(request) {
        Ok(identity) => identity,
        Err(problem) => return problem.into_response(),
    };
    let id = match reservation_id_of(request) {
        Ok(id) => id,
        Err(problem) => return problem.into_response(),
    };
    match store.get(id).await {
        Ok(Some(r)) if r.user_id == identity.user_id => {
            json(StatusCode::OK, &ReservationView::from(&r))
        }
        Ok(_) => problems::reservation_not_found().into_response(),
        Err(error) => {
            tracing::error!(%error, "reading a reservation failed");
            problems::dependency_unavailable("Retry shortly.").into_response()
        }
    }
}
