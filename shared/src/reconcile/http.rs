//! `POST /sales/{saleId}/stock/rebuild` (admins only): rebuilds a sale's stock in Redis from
//! the durable records and answers with the report. 404 for an unknown sale, 409 while another
//! rebuild of the sale runs, 503 when a dependency fails (the sale then stays paused; retry).

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};

use super::rebuild::{RebuildError, StockRebuilder, Trigger};
use super::DurableRecords;
use crate::domain::{Clock, SaleId};
use crate::http::{json, Problem};
use crate::reservation::http::{bad_request, identity_of, path_param};
use crate::sale::SaleCatalog;
use crate::stock::{StockEngine, StockMaintenance};

pub async fn rebuild_stock<S, R, C, K>(
    rebuilder: &StockRebuilder<'_, S, R, C, K>,
    request: &Request,
) -> Response<Body>
where
    S: StockEngine + StockMaintenance,
    R: DurableRecords,
    C: SaleCatalog,
    K: Clock,
{
    let started = std::time::Instant::now();
    let response = match handle(rebuilder, request).await {
        Ok(response) => response,
        Err(problem) => problem.into_response(),
    };
    let outcome = if response.status().is_success() {
        "Rebuilt"
    } else {
        "Refused"
    };
    crate::metrics::emit(
        "rebuild-stock",
        &[(outcome, 1)],
        started.elapsed().as_secs_f64() * 1000.0,
    );
    response
}

async fn handle<S, R, C, K>(
    rebuilder: &StockRebuilder<'_, S, R, C, K>,
    request: &Request,
) -> Result<Response<Body>, Problem>
where
    S: StockEngine + StockMaintenance,
    R: DurableRecords,
    C: SaleCatalog,
    K: Clock,
{
    let identity = identity_of(request)?;
    if !identity.is_admin() {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "Admin only",
            "Rebuilding stock needs the admin group.",
        ));
    }
    let sale_id = path_param(request, "saleId")
        .and_then(|raw| SaleId::parse(raw).ok())
        .ok_or_else(|| {
            bad_request(
                "invalid-sale-id",
                "Invalid sale id",
                "Sale ids are 1 to 64 letters, digits, '-' or '_'.",
            )
        })?;
    tracing::info!(sale_id = %sale_id, admin = %identity.user_id, "stock rebuild requested");
    match rebuilder.rebuild(&sale_id, Trigger::Admin).await {
        Ok(report) => Ok(json(StatusCode::OK, &report)),
        Err(RebuildError::SaleNotFound) => Err(Problem::new(
            StatusCode::NOT_FOUND,
            "sale-not-found",
            "Sale not found",
            "There is no sale with this id.",
        )),
        Err(RebuildError::AlreadyRunning) => {
            let mut response = Problem::new(
                StatusCode::CONFLICT,
                "rebuild-in-progress",
                "Rebuild in progress",
                "A rebuild of this sale's stock is running; retry when it is done.",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            Ok(response)
        }
        Err(error) => {
            tracing::error!(%error, sale_id = %sale_id, "stock rebuild failed");
            let mut response = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "dependency-unavailable",
                "Temporarily unavailable",
                "The rebuild could not finish; the sale stays paused. Retry the rebuild.",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            Ok(response)
        }
    }
}
