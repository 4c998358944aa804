//! HTTP helpers for the `lambda_http` handlers: reading requests ([`request`]), JSON bodies,
//! and RFC 9457 problem details ([`Problem`], the shared catalogue in [`problems`]); and the
//! outbound HTTPS [`client`] of the adapters for hosted services.

pub mod client;
mod problem;
pub mod problems;
pub mod request;

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

pub use problem::Problem;

/// A JSON response. Serialising our own response types cannot fail; if it ever did, the
/// client gets a problem document rather than a panic.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_string(body) {
        Ok(text) => Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::Text(text))
            .unwrap_or_else(|_| Problem::internal().into_response()),
        Err(_) => Problem::internal().into_response(),
    }
}

/// The rate-limit headers of a token-bucket decision: `X-RateLimit-Limit` (the bucket's
/// capacity), `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds until full) and, when
/// refused, `Retry-After` (seconds, at least 1).
pub fn set_rate_headers(response: &mut Response<Body>, rate: &crate::rate_limit::RateDecision) {
    let headers = response.headers_mut();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    put("x-ratelimit-limit", rate.limit.to_string());
    put("x-ratelimit-remaining", rate.remaining.to_string());
    put(
        "x-ratelimit-reset",
        rate.reset_after.as_secs_f64().ceil().to_string(),
    );
    if !rate.allowed {
        put(
            "retry-after",
            rate.retry_after.as_secs_f64().ceil().max(1.0).to_string(),
        );
    }
}
