//! `POST /sales/{saleId}/stock/rebuild` (admins only): rebuilds a sale's stock in Redis from
//! the durable records and answers with the report. 404 for an unknown sale, 409 while another
//! rebuild of the sale runs, 503 when a dependency fails (the sale then stays paused; retry).

use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

use super::rebuild::{RebuildError, StockRebuilder, Trigger};
use super::DurableRecords;
use crate::domain::Clock;
use crate::http::request::{admin_of, sale_id_of};
use crate::http::{json, problems, Problem};
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
    let identity = admin_of(request, "Rebuilding stock needs the admin group.")?;
    let sale_id = sale_id_of(request)?;
    tracing::info!(sale_id = %sale_id, admin = %identity.user_id, "stock rebuild requested");
    match rebuilder.rebuild(&sale_id, Trigger::Admin).await {
        Ok(report) => Ok(json(StatusCode::OK, &report)),
        Err(RebuildError::SaleNotFound) => Err(problems::sale_not_found()),
        Err(RebuildError::AlreadyRunning) => Err(Problem::new(
            StatusCode::CONFLICT,
            "rebuild-in-progress",
            "Rebuild in progress",
            "A rebuild of this sale's stock is running; retry when it is done.",
        )
        .with_retry_after(5)),
        Err(error) => {
            tracing::error!(%error, sale_id = %sale_id, "stock rebuild failed");
            Err(problems::dependency_unavailable(
                "The rebuild could not finish; the sale stays paused. Retry the rebuild.",
            )
            .with_retry_after(5))
        }
    }
}
