//! Reading a `lambda_http` request: the caller's identity (from the authorizer only), path
//! parameters, the body (bounded), the `Idempotency-Key` header and API Gateway's request id.
//! Every failure is a [`Problem`] ready to send.

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};

use super::problems;
use super::Problem;
use crate::domain::{IdempotencyKey, ReservationId, SaleId};
use crate::identity::{self, Identity};

/// Request bodies are tiny; anything larger is refused before parsing.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

pub fn identity_of(request: &Request) -> Result<Identity, Problem> {
    identity::from_request(request).map_err(|_| problems::unauthenticated())
}

/// The caller, who must be in the admin group: 401 without an identity, 403 `forbidden` (with
/// `detail`, which says what needed the right) for anyone else.
pub fn admin_of(request: &Request, detail: &str) -> Result<Identity, Problem> {
    let identity = identity_of(request)?;
    if !identity.is_admin() {
        return Err(problems::admin_only(detail));
    }
    Ok(identity)
}

/// The body's bytes, at most [`MAX_BODY_BYTES`] (413 beyond).
pub fn body_bytes(request: &Request) -> Result<&[u8], Problem> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(problems::body_too_large(MAX_BODY_BYTES));
    }
    Ok(bytes)
}

pub fn path_param(request: &Request, name: &str) -> Option<String> {
    request
        .path_parameters_ref()
        .and_then(|params| params.first(name))
        .map(str::to_owned)
}

/// The `{saleId}` path parameter (400 `invalid-sale-id` if missing or malformed).
pub fn sale_id_of(request: &Request) -> Result<SaleId, Problem> {
    path_param(request, "saleId")
        .and_then(|raw| SaleId::parse(raw).ok())
        .ok_or_else(problems::invalid_sale_id)
}

/// The `{reservationId}` path parameter (400 `invalid-reservation-id` if missing or not a UUID).
pub fn reservation_id_of(request: &Request) -> Result<ReservationId, Problem> {
    path_param(request, "reservationId")
        .and_then(|raw| ReservationId::parse(&raw).ok())
        .ok_or_else(problems::invalid_reservation_id)
}

/// The required `Idempotency-Key` header; `why` tells a client that omitted it what it protects.
pub fn idempotency_key(request: &Request, why: &str) -> Result<IdempotencyKey, Problem> {
    let key = request
        .headers()
        .get("idempotency-key")
        .ok_or_else(|| bad_request("missing-idempotency-key", "Idempotency-Key required", why))?;
    key.to_str()
        .ok()
        .and_then(|k| IdempotencyKey::parse(k).ok())
        .ok_or_else(|| {
            bad_request(
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
                "The key must be 1 to 128 printable characters without spaces.",
            )
        })
}

/// API Gateway's id of this request (`requestContext.requestId`), when there is one.
pub fn gateway_request_id(request: &Request) -> Option<String> {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.clone(),
        _ => None,
    }
}

pub fn bad_request(slug: &str, title: &str, detail: impl Into<String>) -> Problem {
    Problem::new(
        lambda_http::http::StatusCode::BAD_REQUEST,
        slug,
        title,
        detail,
    )
}

/// Parses a request body that must be one JSON object into `T`. serde maps a JSON array onto
/// a struct's fields in order (`[5]` would read as `{"quantity": 5}`), so the object shape is
/// checked first. The error is serde's message, for a `malformed-body` problem's detail.
pub fn json_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if !value.is_object() {
        return Err(format!(
            "expected a JSON object, got {}",
            match value {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            }
        ));
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod json_object_tests {
    use super::json_object;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        quantity: Option<u32>,
    }

    #[test]
    fn only_objects_are_bodies() {
        assert_eq!(
            json_object::<Body>(br#"{"quantity": 2}"#),
            Ok(Body { quantity: Some(2) })
        );
        for bad in [&b"[5]"[..], b"5", b"\"x\"", b"null", b"true", b"{"] {
            assert!(
                json_object::<Body>(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(json_object::<Body>(b"[5]")
            .unwrap_err()
            .contains("an array"));
    }
}
