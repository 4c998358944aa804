//! HTTP for the waiting room: `POST /sales/{saleId}/queue` (join, authenticated),
//! `GET /sales/{saleId}/queue` (status, public and cacheable), and [`gate`], which reserve runs
//! first on every request.
//!
//! What a client does: join; if the answer is `pre_queue`, join again at `opens_at` (spread the
//! return over a second or two); otherwise wait until `admit_at` (the status's
//! `poll_after_seconds` paces a progress display, it is not needed to get in), then reserve with
//! the ticket in the `Queue-Ticket` header until `admission_ends_at`.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::room::{JoinError, Joined, Refused, Status, StatusError, WaitingRoom};
use super::ticket::TicketError;
use super::QueueStore;
use crate::domain::{Clock, SaleId, Timestamp};
use crate::http::request::{gateway_request_id, identity_of, sale_id_of};
use crate::http::{json, problems, set_rate_headers, Problem};
use crate::rate_limit::{BucketPolicy, RateKey, RateLimiter, RequestId};
use crate::sale::SaleCatalog;

/// The header reserve reads the ticket from (and join, to restore a place Redis lost).
pub const TICKET_HEADER: &str = "queue-ticket";

/// The ticket header's value (an empty one is none); a value that is not text counts as a
/// ticket that is not ours.
fn ticket_of(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(TICKET_HEADER)
        .map(|v| v.to_str().map(str::trim).unwrap_or("\u{0}"))
        .filter(|t| !t.is_empty())
}

/// The per-buyer join bucket: a person joins once and maybe again after a reload; 5 at once,
/// then one every 2 s.
pub fn default_join_policy() -> BucketPolicy {
    BucketPolicy::new(5, 0.5).expect("valid policy")
}

fn queue_path(sale: &SaleId) -> String {
    format!("/sales/{}/queue", sale.as_str())
}

#[derive(Debug, Serialize)]
struct PlaceView {
    sale_id: String,
    /// `waiting` or `admitted`.
    state: &'static str,
    position: u64,
    admit_at: String,
    admission_ends_at: String,
    estimated_wait_seconds: u64,
    poll_after_seconds: u64,
    /// Send it as the `Queue-Ticket` header to reserve.
    ticket: String,
    rejoined: bool,
    status_url: String,
}

#[derive(Debug, Serialize)]
struct PreQueueView {
    sale_id: String,
    /// Always `pre_queue`.
    state: &'static str,
    pre_queue_size: u64,
    opens_at: String,
    /// `hex(SHA-256(seed))` of the seed that orders the pre-queue (revealed by the status once
    /// the sale is open).
    seed_commitment: String,
    rejoined: bool,
    status_url: String,
}

fn join_problem(sale: &SaleId, error: &JoinError) -> Problem {
    match error {
        JoinError::SaleNotFound => problems::sale_not_found(),
        JoinError::NoRoom => Problem::new(
            StatusCode::CONFLICT,
            "no-waiting-room",
            "No waiting room",
            "This sale has no waiting room: reserve directly.",
        ),
        JoinError::SaleEnded => Problem::new(
            StatusCode::CONFLICT,
            "sale-ended",
            "Sale ended",
            "The sale is over.",
        ),
        JoinError::NotOpenYet { queue_opens_at } => Problem::new(
            StatusCode::CONFLICT,
            "queue-not-open",
            "Queue not open yet",
            format!("The queue opens at {}.", queue_opens_at.to_rfc3339()),
        )
        .with_extension("queue_opens_at", queue_opens_at.to_rfc3339().into()),
        JoinError::Full { retry_after_secs } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue-full",
            "Queue full",
            "The waiting room holds as many people as it takes; retry after the time in Retry-After.",
        )
        .with_extension("queue", queue_path(sale).into())
        .with_retry_after(*retry_after_secs),
        JoinError::Store(_) | JoinError::Catalog(_) => {
            tracing::error!(%error, "join failed on a dependency");
            problems::dependency_unavailable("A dependency did not answer; joining again is safe (it keeps your place).")
        }
    }
}

/// `POST /sales/{saleId}/queue`: the caller's place (the same one on every call) and its
/// ticket; 202 with the pre-queue before the opening.
pub async fn join<Q, C, K, L>(
    room: &WaitingRoom<Q, C, K>,
    limiter: &L,
    policy: BucketPolicy,
    request: &Request,
) -> Response<Body>
where
    Q: QueueStore,
    C: SaleCatalog,
    K: Clock,
    L: RateLimiter,
{
    let identity = match identity_of(request) {
        Ok(identity) => identity,
        Err(problem) => return problem.into_response(),
    };
    let sale = match sale_id_of(request) {
        Ok(sale) => sale,
        Err(problem) => return problem.into_response(),
    };
    let request_id = RequestId::from_gateway(gateway_request_id(request).as_deref());
    let bucket = RateKey::Join(identity.user_id.to_string());
    let rate = match limiter.check(&bucket, policy, &request_id).await {
        Ok(rate) => rate,
        Err(error) => {
            tracing::error!(%error, "join: rate limiter failed");
            return problems::dependency_unavailable("Retry shortly.").into_response();
        }
    };
    let mut response = if !rate.allowed {
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            "Slow down: your place is kept; retry after the time in Retry-After.",
        )
        .into_response()
    } else {
        match room
            .join(&sale, &identity.user_id, ticket_of(request))
            .await
        {
            Ok(Joined::Placed {
                place,
                rejoined,
                ticket,
                admission_ends_at,
                wait,
                poll_after_secs,
            }) => json(
                if rejoined {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &PlaceView {
                    sale_id: sale.to_string(),
                    state: if wait.is_zero() {
                        "admitted"
                    } else {
                        "waiting"
                    },
                    position: place.position,
                    admit_at: place.admit_at.to_rfc3339(),
                    admission_ends_at: admission_ends_at.to_rfc3339(),
                    estimated_wait_seconds: wait.as_secs_f64().ceil() as u64,
                    poll_after_seconds: poll_after_secs,
                    ticket,
                    rejoined,
                    status_url: queue_path(&sale),
                },
            ),
            Ok(Joined::PreQueued {
                size,
                rejoined,
                opens_at,
                seed_commitment,
            }) => {
                let mut r = json(
                    StatusCode::ACCEPTED,
                    &PreQueueView {
                        sale_id: sale.to_string(),
                        state: "pre_queue",
                        pre_queue_size: size,
                        opens_at: opens_at.to_rfc3339(),
                        seed_commitment,
                        rejoined,
                        status_url: queue_path(&sale),
                    },
                );
                let until = room
                    .clock
                    .now()
                    .until(opens_at)
                    .as_secs_f64()
                    .ceil()
                    .max(1.0);
                if let Ok(v) = HeaderValue::from_str(&(until as u64).to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                r
            }
            Err(error) => join_problem(&sale, &error).into_response(),
        }
    };
    set_rate_headers(&mut response, &rate);
    response
}

#[derive(Debug, Serialize)]
struct StatusView {
    sale_id: String,
    /// `pre_queue` (before the opening), `open` or `ended`.
    state: &'static str,
    /// Places admitted so far: a ticket with this position or lower may reserve.
    serving_position: u64,
    /// Places given out.
    queue_length: u64,
    /// Places not admitted yet.
    waiting: u64,
    pre_queue_size: u64,
    /// Places admitted per second now (the no-show boost included).
    rate_per_sec: f64,
    drain_per_sec: u32,
    max_queue: u64,
    opens_at: String,
    seed_commitment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<String>,
    /// How long a client at `waiting` places from the front should wait before the next poll:
    /// `min(20, max(1, distance / rate / 4))` seconds.
    poll_hint: &'static str,
    as_of: String,
}

fn status_view(status: &Status) -> StatusView {
    let state = match status.sale.window_at(status.now) {
        crate::sale::SaleWindow::Upcoming => "pre_queue",
        crate::sale::SaleWindow::Open => "open",
        crate::sale::SaleWindow::Ended => "ended",
    };
    StatusView {
        sale_id: status.sale.sale_id.to_string(),
        state,
        serving_position: status.queue.serving,
        queue_length: status.queue.tail,
        waiting: status.queue.waiting(),
        pre_queue_size: status.queue.pre_queue,
        rate_per_sec: (status.queue.rate_per_sec * 1000.0).round() / 1000.0,
        drain_per_sec: status.settings.drain_per_sec,
        max_queue: status.settings.max_queue,
        opens_at: status.sale.starts_at.to_rfc3339(),
        seed_commitment: status.seed_commitment.clone(),
        seed: status.seed.clone(),
        poll_hint: "poll again after min(20, max(1, (your position - serving_position) / rate_per_sec / 4)) seconds",
        as_of: status.now.to_rfc3339(),
    }
}

/// How long the status may be cached (API Gateway's stage cache and clients), seconds.
pub const STATUS_MAX_AGE_SECS: u64 = 1;

/// `GET /sales/{saleId}/queue`: the same answer for every caller, cacheable for
/// [`STATUS_MAX_AGE_SECS`]. It carries no per-caller rate-limit counters (a cached answer
/// would show one caller's counters to another); `RateLimit-Policy` states the polling
/// budget instead (one request a second per client, draft-ietf-httpapi-ratelimit-headers),
/// and the edge's per-IP rule enforces it on AWS.
pub async fn status<Q, C, K>(room: &WaitingRoom<Q, C, K>, request: &Request) -> Response<Body>
where
    Q: QueueStore,
    C: SaleCatalog,
    K: Clock,
{
    let sale = match sale_id_of(request) {
        Ok(sale) => sale,
        Err(problem) => return problem.into_response(),
    };
    match room.status(&sale).await {
        Ok(status) => {
            let mut r = json(StatusCode::OK, &status_view(&status));
            let headers = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={STATUS_MAX_AGE_SECS}"))
            {
                headers.insert(header::CACHE_CONTROL, v);
            }
            headers.insert(
                "ratelimit-policy",
                HeaderValue::from_static("\"poll\";q=1;w=1"),
            );
            r
        }
        Err(StatusError::SaleNotFound) => problems::sale_not_found().into_response(),
        Err(StatusError::NoRoom) => join_problem(&sale, &JoinError::NoRoom).into_response(),
        Err(error) => {
            tracing::error!(%error, "queue status failed on a dependency");
            problems::dependency_unavailable("Retry shortly.").into_response()
        }
    }
}

fn refusal_problem(refused: &Refused, now: Timestamp) -> Problem {
    let queue_required = |sale: &SaleId, detail: String| {
        Problem::new(
            StatusCode::FORBIDDEN,
            "queue-required",
            "Queue ticket required",
            detail,
        )
        .with_extension("queue", queue_path(sale).into())
    };
    let bad_ticket = |slug: &str, title: &str, detail: &str| {
        Problem::new(StatusCode::FORBIDDEN, slug, title, detail)
    };
    match refused {
        Refused::QueueRequired { sale } => queue_required(
            sale,
            format!(
                "This sale has a waiting room: join it (POST {}) and send the ticket in the Queue-Ticket header.",
                queue_path(sale)
            ),
        ),
        Refused::Ticket(TicketError::Invalid) => bad_ticket(
            "invalid-queue-ticket",
            "Invalid queue ticket",
            "The Queue-Ticket header is not a ticket this service issued.",
        ),
        Refused::Ticket(TicketError::OtherSale) => bad_ticket(
            "invalid-queue-ticket",
            "Invalid queue ticket",
            "The queue ticket is for another sale.",
        ),
        Refused::Ticket(TicketError::OtherBuyer) => bad_ticket(
            "invalid-queue-ticket",
            "Invalid queue ticket",
            "The queue ticket belongs to another buyer.",
        ),
        Refused::Ticket(TicketError::Expired) => bad_ticket(
            "queue-ticket-expired",
            "Queue ticket expired",
            "The ticket's admission window is over; join again for a new place at the back of the queue.",
        ),
        Refused::Ticket(TicketError::NotYetAdmitted { admit_at }) => {
            let wait = now.until(*admit_at);
            bad_ticket(
                "not-admitted-yet",
                "Not admitted yet",
                &format!("Your place is admitted at {}.", admit_at.to_rfc3339()),
            )
            .with_extension("admit_at", admit_at.to_rfc3339().into())
            .with_retry_after((wait.as_secs_f64().ceil() as u64).max(1))
        }
        Refused::Store(_) | Refused::Catalog(_) => {
            tracing::error!(error = %refused, "waiting room check failed on a dependency");
            problems::dependency_unavailable("Retry shortly.")
        }
    }
}

/// Reserve's admission check, run before the reserve handler: `Err` is the answer to send.
/// A request without an identity passes (the handler answers 401).
pub async fn gate<Q, C, K>(
    room: &WaitingRoom<Q, C, K>,
    request: &Request,
    sale: &SaleId,
) -> Result<(), Response<Body>>
where
    Q: QueueStore,
    C: SaleCatalog,
    K: Clock,
{
    let Ok(identity) = identity_of(request) else {
        return Ok(());
    };
    room.admit(sale, &identity.user_id, ticket_of(request))
        .await
        .map(|_| ())
        .map_err(|refused| refusal_problem(&refused, room.clock.now()).into_response())
}
