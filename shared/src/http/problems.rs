//! The problem types more than one endpoint sends, in one place (RFC 9457 `type`s under
//! `/problems/`). Endpoint-specific ones live beside their handler's error mapping.

use lambda_http::http::StatusCode;

use super::Problem;

/// The `Retry-After` (seconds) every "try again shortly" answer carries.
pub const RETRY_SOON_SECS: u64 = 1;

pub fn unauthenticated() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Authentication required",
        "The request has no valid bearer token.",
    )
}

/// 403 for a non-admin caller of an admin endpoint; `detail` says what needed the right.
pub fn admin_only(detail: &str) -> Problem {
    Problem::new(StatusCode::FORBIDDEN, "forbidden", "Admin only", detail)
}

pub fn sale_not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "sale-not-found",
        "Sale not found",
        "There is no sale with this id.",
    )
}

pub fn invalid_sale_id() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-sale-id",
        "Invalid sale id",
        "Sale ids are 1 to 64 letters, digits, '-' or '_'.",
    )
}

pub fn invalid_reservation_id() -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "invalid-reservation-id",
        "Invalid reservation id",
        "The reservation id must be a UUID.",
    )
}

/// 404 for a reservation that does not exist or is not the caller's (the same answer, so ids
/// of other buyers' reservations cannot be probed).
pub fn reservation_not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "reservation-not-found",
        "Reservation not found",
        "You have no reservation with this id.",
    )
}

/// 503 `temporarily-unavailable` (the payment intake's slug; clients branch on it), with
/// `Retry-After: 1`.
pub fn temporarily_unavailable(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily-unavailable",
        "Temporarily unavailable",
        detail,
    )
    .with_retry_after(RETRY_SOON_SECS)
}

/// 400 for a body that is not the JSON the endpoint expects; `detail` names what is wrong.
pub fn malformed_body(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "malformed-body",
        "Malformed JSON body",
        detail,
    )
}

pub fn body_too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
        format!("The body must be at most {max} bytes."),
    )
}

/// 503 when a dependency (Redis, DynamoDB, the workflow engine) did not answer. Sent with
/// `Retry-After: 1` (see [`Problem::with_retry_after`]).
pub fn dependency_unavailable(detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency-unavailable",
        "Temporarily unavailable",
        detail,
    )
    .with_retry_after(RETRY_SOON_SECS)
}
