//! HTTP helpers for the `lambda_http` handlers: reading requests ([`request`]), JSON bodies,
//! and RFC 9457 problem details ([`Problem`], the shared catalogue in [`problems`]); and the
//! outbound HTTPS [`client`] of the adapters for hosted services.

pub mod client;
mod problem;
pub mod problems;
pub mod request;

use lambda_http::http::{header, StatusCode};
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
